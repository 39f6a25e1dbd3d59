//! The catalogue of CRIU image kinds: file names, magics and entry messages.
//!
//! Every image file CRIU 4.2 knows (`criu/image-desc.c`) has a row here. The
//! numbers are interoperability facts from `criu/include/magic.h`; the names of
//! the kinds are the ones `crit` prints in its `"magic"` field.

use std::fmt;

/// The first word of every image except `inventory.img` (images v1.1).
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// The first word of service files: `stats-dump`, `stats-restore`, `irmap-cache`.
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// `inventory.img_version` of images with a head magic (CRTOOLS_IMAGES_V1_1).
pub const IMAGES_V1_1: u32 = 2;

/// What precedes the type magic in a file of this kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeadMagic {
    /// No head magic: `inventory.img` and raw images.
    None,
    /// [`IMG_COMMON_MAGIC`].
    Common,
    /// [`IMG_SERVICE_MAGIC`].
    Service,
}

impl HeadMagic {
    /// The on-disk value, if the kind has a head magic at all.
    pub fn value(self) -> Option<u32> {
        match self {
            HeadMagic::None => None,
            HeadMagic::Common => Some(IMG_COMMON_MAGIC),
            HeadMagic::Service => Some(IMG_SERVICE_MAGIC),
        }
    }
}

/// How the id is spelled in the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdFormat {
    /// A global image: one file per dump, no id (`files.img`).
    None,
    /// Decimal id: pids, ns ids, pages ids (`core-42.img`).
    Decimal,
    /// Lower-case hex id without `0x` (`tcp-stream-1f.img`, `ghost-file-a.img`).
    Hex,
}

/// Error of this module: a file name or magic that names no image kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindError {
    /// A global image kind was given an id, which would name a file CRIU never reads.
    #[error("{kind} images have no id in their file name, but id {id} was given")]
    UnexpectedId {
        /// The kind.
        kind: ImageKind,
        /// The id that was passed.
        id: u64,
    },
    /// A name that no row of the magic table carries.
    #[error("unknown image magic name {0:?}")]
    UnknownName(String),
}

/// One row of the table.
struct Row {
    kind: ImageKind,
    /// `CR_FD_*` name without the prefix; for non-raw kinds also crit's magic name
    /// unless `crit_name` says otherwise.
    name: &'static str,
    prefix: &'static str,
    id: IdFormat,
    suffix: &'static str,
    head: HeadMagic,
    /// 0 = raw image (no magic at all).
    magic: u32,
    /// Proto message name of each entry (the first entry of pagemaps is a `pagemap_head`).
    message: Option<&'static str>,
    /// The magic name crit prints when it differs from `name` (aliased magics).
    crit_name: Option<&'static str>,
}

macro_rules! image_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $prefix:literal, $id:ident, $suffix:literal,
        $head:ident, $magic:literal, $msg:expr, $crit:expr; )*) => {
        /// An image kind: one row of CRIU's image table (`CR_FD_*`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ImageKind {
            $( $(#[$doc])* $variant, )*
        }

        const ROWS: &[Row] = &[
            $( Row {
                kind: ImageKind::$variant,
                name: $name,
                prefix: $prefix,
                id: IdFormat::$id,
                suffix: $suffix,
                head: HeadMagic::$head,
                magic: $magic,
                message: $msg,
                crit_name: $crit,
            }, )*
        ];
    };
}

image_kinds! {
    /// `inventory.img`: one `inventory_entry`; no head magic.
    Inventory = "INVENTORY", "inventory", None, ".img", None, 0x5831_3116, Some("inventory_entry"), None;
    /// `fdinfo-<files_id>.img`: one `fdinfo_entry` per fd.
    Fdinfo = "FDINFO", "fdinfo-", Decimal, ".img", Common, 0x5621_3732, Some("fdinfo_entry"), None;
    /// `pagemap-<pid>.img`: `pagemap_head`, then `pagemap_entry` per run.
    Pagemap = "PAGEMAP", "pagemap-", Decimal, ".img", Common, 0x5608_4025, Some("pagemap_entry"), None;
    /// `pagemap-shmem-<shmid>.img`: like `Pagemap`, vaddr = offset in the shmem object.
    ShmemPagemap = "SHMEM_PAGEMAP", "pagemap-shmem-", Decimal, ".img", Common, 0x5608_4025, Some("pagemap_entry"), Some("PAGEMAP");
    /// `reg-files.img` (legacy; 4.x puts regular files in `files.img`).
    RegFiles = "REG_FILES", "reg-files", None, ".img", Common, 0x5036_3636, Some("reg_file_entry"), None;
    /// `ext-files.img`.
    ExtFiles = "EXT_FILES", "ext-files", None, ".img", Common, 0x5925_5641, Some("ext_file_entry"), None;
    /// `ns-files.img`.
    NsFiles = "NS_FILES", "ns-files", None, ".img", Common, 0x6139_4011, Some("ns_file_entry"), None;
    /// `eventfd.img`.
    EventfdFile = "EVENTFD_FILE", "eventfd", None, ".img", Common, 0x4452_3722, Some("eventfd_file_entry"), None;
    /// `eventpoll.img`.
    EventpollFile = "EVENTPOLL_FILE", "eventpoll", None, ".img", Common, 0x4502_3858, Some("eventpoll_file_entry"), None;
    /// `eventpoll-tfd.img`.
    EventpollTfd = "EVENTPOLL_TFD", "eventpoll-tfd", None, ".img", Common, 0x4443_3746, Some("eventpoll_tfd_entry"), None;
    /// `signalfd.img`.
    Signalfd = "SIGNALFD", "signalfd", None, ".img", Common, 0x5732_3820, Some("signalfd_entry"), None;
    /// `inotify.img`.
    InotifyFile = "INOTIFY_FILE", "inotify", None, ".img", Common, 0x4842_4431, Some("inotify_file_entry"), None;
    /// `inotify-wd.img`.
    InotifyWd = "INOTIFY_WD", "inotify-wd", None, ".img", Common, 0x5456_2009, Some("inotify_wd_entry"), None;
    /// `fanotify.img`.
    FanotifyFile = "FANOTIFY_FILE", "fanotify", None, ".img", Common, 0x5509_6122, Some("fanotify_file_entry"), None;
    /// `fanotify-mark.img`.
    FanotifyMark = "FANOTIFY_MARK", "fanotify-mark", None, ".img", Common, 0x5650_6035, Some("fanotify_mark_entry"), None;
    /// `core-<tid>.img`: one `core_entry` per thread.
    Core = "CORE", "core-", Decimal, ".img", Common, 0x5505_3847, Some("core_entry"), None;
    /// `ids-<pid>.img`: `task_kobj_ids_entry`.
    Ids = "IDS", "ids-", Decimal, ".img", Common, 0x5443_2030, Some("task_kobj_ids_entry"), None;
    /// `mm-<pid>.img`: `mm_entry` with the VMAs inline.
    Mm = "MM", "mm-", Decimal, ".img", Common, 0x5749_2820, Some("mm_entry"), None;
    /// `vmas-<pid>.img` (legacy).
    Vmas = "VMAS", "vmas-", Decimal, ".img", Common, 0x5412_3737, Some("vma_entry"), None;
    /// `pipes.img` (legacy).
    Pipes = "PIPES", "pipes", None, ".img", Common, 0x5651_3555, Some("pipe_entry"), None;
    /// `pipes-data.img`: `pipe_data_entry` followed by `bytes` raw bytes.
    PipesData = "PIPES_DATA", "pipes-data", None, ".img", Common, 0x5645_3709, Some("pipe_data_entry"), None;
    /// `fifo.img`.
    Fifo = "FIFO", "fifo", None, ".img", Common, 0x5836_4939, Some("fifo_entry"), None;
    /// `fifo-data.img`: like `PipesData`.
    FifoData = "FIFO_DATA", "fifo-data", None, ".img", Common, 0x5933_3054, Some("pipe_data_entry"), None;
    /// `pstree.img`: one `pstree_entry` per task, pre-order.
    Pstree = "PSTREE", "pstree", None, ".img", Common, 0x5027_3030, Some("pstree_entry"), None;
    /// `sigacts-<pid>.img` (legacy; now in `core`).
    Sigact = "SIGACT", "sigacts-", Decimal, ".img", Common, 0x5534_4201, Some("sa_entry"), None;
    /// `unixsk.img` (legacy).
    Unixsk = "UNIXSK", "unixsk", None, ".img", Common, 0x5437_3943, Some("unix_sk_entry"), None;
    /// `inetsk.img` (legacy).
    Inetsk = "INETSK", "inetsk", None, ".img", Common, 0x5644_3851, Some("inet_sk_entry"), None;
    /// `packetsk.img`.
    Packetsk = "PACKETSK", "packetsk", None, ".img", Common, 0x6045_4618, Some("packet_sock_entry"), None;
    /// `netlinksk.img`.
    NetlinkSk = "NETLINK_SK", "netlinksk", None, ".img", Common, 0x5800_5614, Some("netlink_sk_entry"), None;
    /// `sk-queues.img`: `sk_packet_entry` followed by `length` bytes.
    SkQueues = "SK_QUEUES", "sk-queues", None, ".img", Common, 0x5626_4026, Some("sk_packet_entry"), None;
    /// `itimers-<pid>.img` (legacy).
    Itimers = "ITIMERS", "itimers-", Decimal, ".img", Common, 0x5746_4056, Some("itimer_entry"), None;
    /// `posix-timers-<pid>.img` (legacy).
    PosixTimers = "POSIX_TIMERS", "posix-timers-", Decimal, ".img", Common, 0x5260_3957, Some("posix_timer_entry"), None;
    /// `creds-<pid>.img` (legacy).
    Creds = "CREDS", "creds-", Decimal, ".img", Common, 0x5402_3547, Some("creds_entry"), None;
    /// `utsns-<id>.img`.
    Utsns = "UTSNS", "utsns-", Decimal, ".img", Common, 0x5447_3203, Some("utsns_entry"), None;
    /// `ipcns-var-<id>.img`.
    IpcVar = "IPC_VAR", "ipcns-var-", Decimal, ".img", Common, 0x5311_5007, Some("ipc_var_entry"), None;
    /// `ipcns-shm-<id>.img`: `ipc_shm_entry` + `size` bytes rounded up to 4.
    IpcnsShm = "IPCNS_SHM", "ipcns-shm-", Decimal, ".img", Common, 0x4628_3044, Some("ipc_shm_entry"), None;
    /// `ipcns-msg-<id>.img`: `ipc_msg_entry`, then per message `ipc_msg` + data rounded up to 8.
    IpcnsMsg = "IPCNS_MSG", "ipcns-msg-", Decimal, ".img", Common, 0x5545_3737, Some("ipc_msg_entry"), None;
    /// `ipcns-sem-<id>.img`: `ipc_sem_entry` + nsems u16 values rounded up to 8 bytes.
    IpcnsSem = "IPCNS_SEM", "ipcns-sem-", Decimal, ".img", Common, 0x5957_3019, Some("ipc_sem_entry"), None;
    /// `fs-<pid>.img`: `fs_entry`.
    Fs = "FS", "fs-", Decimal, ".img", Common, 0x5140_3912, Some("fs_entry"), None;
    /// `remap-fpath.img`.
    RemapFpath = "REMAP_FPATH", "remap-fpath", None, ".img", Common, 0x5913_3954, Some("remap_file_path_entry"), None;
    /// `ghost-file-<id hex>.img`: `ghost_file_entry` + contents (or chunks).
    GhostFile = "GHOST_FILE", "ghost-file-", Hex, ".img", Common, 0x5258_3605, Some("ghost_file_entry"), None;
    /// `memfd.img`: `memfd_inode_entry`.
    MemfdInode = "MEMFD_INODE", "memfd", None, ".img", Common, 0x4845_3499, Some("memfd_inode_entry"), None;
    /// `tcp-stream-<ino hex>.img`: `tcp_stream_entry` + inq + outq bytes.
    TcpStream = "TCP_STREAM", "tcp-stream-", Hex, ".img", Common, 0x5146_5506, Some("tcp_stream_entry"), None;
    /// `mountpoints-<nsid>.img`.
    Mnts = "MNTS", "mountpoints-", Decimal, ".img", Common, 0x5556_3928, Some("mnt_entry"), None;
    /// `netdev-<id>.img`.
    Netdev = "NETDEV", "netdev-", Decimal, ".img", Common, 0x5737_3951, Some("net_device_entry"), None;
    /// `netns-<id>.img`.
    Netns = "NETNS", "netns-", Decimal, ".img", Common, 0x5593_3752, Some("netns_entry"), None;
    /// `ifaddr-<id>.img`: raw `ip addr save` output.
    Ifaddr = "IFADDR", "ifaddr-", Decimal, ".img", None, 0, None, None;
    /// `route-<id>.img`: raw.
    Route = "ROUTE", "route-", Decimal, ".img", None, 0, None, None;
    /// `route6-<id>.img`: raw.
    Route6 = "ROUTE6", "route6-", Decimal, ".img", None, 0, None, None;
    /// `rule-<id>.img`: raw.
    Rule = "RULE", "rule-", Decimal, ".img", None, 0, None, None;
    /// `iptables-<id>.img`: raw.
    Iptables = "IPTABLES", "iptables-", Decimal, ".img", None, 0, None, None;
    /// `ip6tables-<id>.img`: raw.
    Ip6tables = "IP6TABLES", "ip6tables-", Decimal, ".img", None, 0, None, None;
    /// `nftables-<id>.img`: raw.
    Nftables = "NFTABLES", "nftables-", Decimal, ".img", None, 0, None, None;
    /// `tmpfs-<id>.tar.gz.img`: raw tarball.
    TmpfsImg = "TMPFS_IMG", "tmpfs-", Decimal, ".tar.gz.img", None, 0, None, None;
    /// `tmpfs-dev-<id>.tar.gz.img`: raw tarball.
    TmpfsDev = "TMPFS_DEV", "tmpfs-dev-", Decimal, ".tar.gz.img", None, 0, None, None;
    /// `autofs-<id>.img`.
    Autofs = "AUTOFS", "autofs-", Decimal, ".img", Common, 0x4935_3943, Some("autofs_entry"), None;
    /// `binfmt-misc-<id>.img` (legacy).
    BinfmtMiscOld = "BINFMT_MISC_OLD", "binfmt-misc-", Decimal, ".img", Common, 0x6734_3323, Some("binfmt_misc_entry"), Some("BINFMT_MISC");
    /// `binfmt-misc.img`.
    BinfmtMisc = "BINFMT_MISC", "binfmt-misc", None, ".img", Common, 0x6734_3323, Some("binfmt_misc_entry"), None;
    /// `tty.img`.
    TtyFiles = "TTY_FILES", "tty", None, ".img", Common, 0x5943_3025, Some("tty_file_entry"), None;
    /// `tty-info.img`.
    TtyInfo = "TTY_INFO", "tty-info", None, ".img", Common, 0x5945_3036, Some("tty_info_entry"), None;
    /// `tty-data.img`.
    TtyData = "TTY_DATA", "tty-data", None, ".img", Common, 0x5941_3026, Some("tty_data_entry"), None;
    /// `filelocks.img`.
    FileLocks = "FILE_LOCKS", "filelocks", None, ".img", Common, 0x5432_3616, Some("file_lock_entry"), None;
    /// `rlimit-<pid>.img` (legacy).
    Rlimit = "RLIMIT", "rlimit-", Decimal, ".img", Common, 0x5711_3925, Some("rlimit_entry"), None;
    /// `pages-<pages_id>.img`: raw 4 KiB pages in pagemap order.
    Pages = "PAGES", "pages-", Decimal, ".img", None, 0, None, None;
    /// `pages-<id>.img` of ancient dumps (with a pagemap magic; read only).
    PagesOld = "PAGES_OLD", "pages-", Decimal, ".img", Common, 0x5608_4025, None, Some("PAGEMAP");
    /// `pages-shmem-<shmid>.img` of ancient dumps (read only).
    ShmPagesOld = "SHM_PAGES_OLD", "pages-shmem-", Decimal, ".img", Common, 0x5608_4025, None, Some("PAGEMAP");
    /// `signal-s-<pid>.img` (legacy shared pending signals).
    Signal = "SIGNAL", "signal-s-", Decimal, ".img", Common, 0x5925_5647, Some("siginfo_entry"), None;
    /// `signal-p-<tid>.img` (legacy per-thread pending signals).
    Psignal = "PSIGNAL", "signal-p-", Decimal, ".img", Common, 0x5925_5647, Some("siginfo_entry"), Some("SIGNAL");
    /// `tunfile.img`.
    Tunfile = "TUNFILE", "tunfile", None, ".img", Common, 0x5714_3751, Some("tunfile_entry"), None;
    /// `cgroup.img`.
    Cgroup = "CGROUP", "cgroup", None, ".img", Common, 0x5938_3330, Some("cgroup_entry"), None;
    /// `timerfd.img`.
    Timerfd = "TIMERFD", "timerfd", None, ".img", Common, 0x5049_3712, Some("timerfd_entry"), None;
    /// `cpuinfo.img`.
    Cpuinfo = "CPUINFO", "cpuinfo", None, ".img", Common, 0x6140_4013, Some("cpuinfo_entry"), None;
    /// `seccomp.img`.
    Seccomp = "SECCOMP", "seccomp", None, ".img", Common, 0x6441_3049, Some("seccomp_entry"), None;
    /// `userns-<id>.img`.
    Userns = "USERNS", "userns-", Decimal, ".img", Common, 0x5547_4906, Some("userns_entry"), None;
    /// `netns-ct-<id>.img`: raw conntrack dump.
    NetnfCt = "NETNF_CT", "netns-ct-", Decimal, ".img", None, 0, None, None;
    /// `netns-exp-<id>.img`: raw conntrack expectations.
    NetnfExp = "NETNF_EXP", "netns-exp-", Decimal, ".img", None, 0, None, None;
    /// `files.img`: every file object, all types (`file_entry`).
    Files = "FILES", "files", None, ".img", Common, 0x5630_3138, Some("file_entry"), None;
    /// `timens-<id>.img`.
    Timens = "TIMENS", "timens-", Decimal, ".img", Common, 0x4311_4433, Some("timens_entry"), None;
    /// `pidns-<id>.img`.
    Pidns = "PIDNS", "pidns-", Decimal, ".img", Common, 0x6115_7326, Some("pidns_entry"), None;
    /// `bpfmap-file.img`.
    BpfmapFile = "BPFMAP_FILE", "bpfmap-file", None, ".img", Common, 0x5750_6142, Some("bpfmap_file_entry"), None;
    /// `bpfmap-data.img`: `bpfmap_data_entry` + keys_bytes + values_bytes.
    BpfmapData = "BPFMAP_DATA", "bpfmap-data", None, ".img", Common, 0x6432_4033, Some("bpfmap_data_entry"), None;
    /// `apparmor.img`.
    Apparmor = "APPARMOR", "apparmor", None, ".img", Common, 0x5942_3047, Some("apparmor_entry"), None;
    /// `pidfd.img`.
    Pidfd = "PIDFD", "pidfd", None, ".img", Common, 0x5443_5556, Some("pidfd_entry"), None;
    /// `stats-dump` (service file, no `.img` suffix).
    StatsDump = "STATS", "stats-dump", None, "", Service, 0x5709_3306, Some("stats_entry"), None;
    /// `stats-restore` (service file, no `.img` suffix).
    StatsRestore = "STATS", "stats-restore", None, "", Service, 0x5709_3306, Some("stats_entry"), None;
    /// `irmap-cache` (service file, kept in the work dir by CRIU).
    IrmapCache = "IRMAP_CACHE", "irmap-cache", None, "", Service, 0x5700_4059, Some("irmap_cache_entry"), None;
}

impl ImageKind {
    /// Every kind, in table order.
    pub fn all() -> impl Iterator<Item = ImageKind> {
        ROWS.iter().map(|row| row.kind)
    }

    fn row(self) -> &'static Row {
        // The table is generated in declaration order, so the discriminant is the index.
        &ROWS[self as usize]
    }

    /// The `CR_FD_*` name without its prefix (`"SHMEM_PAGEMAP"`, `"PAGES"`).
    pub fn fd_name(self) -> &'static str {
        self.row().name
    }

    /// The magic name crit prints in `"magic"` (`"PAGEMAP"` for shmem pagemaps too).
    /// Raw kinds have no magic; their `CR_FD_*` name is returned.
    pub fn magic_name(self) -> &'static str {
        let row = self.row();
        row.crit_name.unwrap_or(row.name)
    }

    /// What precedes the type magic.
    pub fn head_magic(self) -> HeadMagic {
        self.row().head
    }

    /// The type magic, or `None` for raw images (pages, tarballs, ip tool dumps).
    pub fn type_magic(self) -> Option<u32> {
        match self.row().magic {
            0 => None,
            magic => Some(magic),
        }
    }

    /// True for images without any magic (their content is not protobuf entries).
    pub fn is_raw(self) -> bool {
        self.row().magic == 0
    }

    /// Size in bytes of the magics at the start of the file.
    pub fn magic_len(self) -> u64 {
        let head = if self.head_magic().value().is_some() {
            4
        } else {
            0
        };
        let typ = if self.type_magic().is_some() { 4 } else { 0 };
        head + typ
    }

    /// The proto name of the message each entry holds (`"core_entry"`). For
    /// pagemaps this is `pagemap_entry`; their first entry is a `pagemap_head`.
    pub fn entry_message(self) -> Option<&'static str> {
        self.row().message
    }

    /// How the id is spelled in the file name.
    pub fn id_format(self) -> IdFormat {
        self.row().id
    }

    /// The file name for `id` (`core-42.img`, `ghost-file-1f.img`, `files.img`).
    /// Global kinds take id 0; any other id is an error there.
    pub fn file_name(self, id: u64) -> Result<String, KindError> {
        let row = self.row();
        match row.id {
            IdFormat::None if id != 0 => Err(KindError::UnexpectedId { kind: self, id }),
            IdFormat::None => Ok(format!("{}{}", row.prefix, row.suffix)),
            IdFormat::Decimal => Ok(format!("{}{}{}", row.prefix, id, row.suffix)),
            IdFormat::Hex => Ok(format!("{}{:x}{}", row.prefix, id, row.suffix)),
        }
    }

    /// The kind whose type magic is `magic` (the canonical one for aliased magics:
    /// `Pagemap` for the pagemap magic, `Signal`, `BinfmtMisc`, `StatsDump`).
    pub fn from_type_magic(magic: u32) -> Option<ImageKind> {
        if magic == 0 {
            return None;
        }
        ROWS.iter()
            .find(|row| row.magic == magic && row.crit_name.is_none())
            .map(|row| row.kind)
    }

    /// The kind crit calls `name` (`"CORE"`); canonical kind for aliases.
    pub fn from_magic_name(name: &str) -> Result<ImageKind, KindError> {
        ROWS.iter()
            .find(|row| row.magic != 0 && row.crit_name.is_none() && row.name == name)
            .map(|row| row.kind)
            .ok_or_else(|| KindError::UnknownName(name.to_owned()))
    }

    /// Parses an image file name back into its kind and id (`"core-42.img"` →
    /// `(Core, 42)`). Legacy kinds that share a name pattern with a current one
    /// (`pages-N.img`) resolve to the current kind.
    pub fn from_file_name(file_name: &str) -> Option<(ImageKind, u64)> {
        // Longest prefix first, so `pagemap-shmem-1.img` is not taken for `pagemap-`.
        let mut best: Option<(usize, ImageKind, u64)> = None;
        for row in ROWS {
            if matches!(row.kind, ImageKind::PagesOld | ImageKind::BinfmtMiscOld) {
                continue;
            }
            let Some(rest) = file_name.strip_prefix(row.prefix) else {
                continue;
            };
            let Some(id_text) = rest.strip_suffix(row.suffix) else {
                continue;
            };
            let id = match row.id {
                IdFormat::None if id_text.is_empty() => Some(0),
                IdFormat::None => None,
                IdFormat::Decimal if is_canonical_number(id_text, 10) => id_text.parse().ok(),
                IdFormat::Hex if is_canonical_number(id_text, 16) => {
                    u64::from_str_radix(id_text, 16).ok()
                }
                _ => None,
            };
            if let Some(id) = id {
                if best.is_none_or(|(len, _, _)| row.prefix.len() > len) {
                    best = Some((row.prefix.len(), row.kind, id));
                }
            }
        }
        best.map(|(_, kind, id)| (kind, id))
    }
}

fn is_canonical_number(text: &str, radix: u32) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_digit(radix) && !c.is_ascii_uppercase())
        && (text == "0" || !text.starts_with('0'))
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fd_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_index_matches_discriminant() {
        for (index, row) in ROWS.iter().enumerate() {
            assert_eq!(row.kind as usize, index, "{}", row.name);
        }
    }

    #[test]
    fn magics_match_criu_magic_h() {
        // Spot checks of values copied independently from criu/include/magic.h.
        assert_eq!(ImageKind::Inventory.type_magic(), Some(0x58313116));
        assert_eq!(ImageKind::Core.type_magic(), Some(0x55053847));
        assert_eq!(ImageKind::Pagemap.type_magic(), Some(0x56084025));
        assert_eq!(ImageKind::ShmemPagemap.type_magic(), Some(0x56084025));
        assert_eq!(ImageKind::StatsDump.type_magic(), Some(0x57093306));
        assert_eq!(ImageKind::StatsDump.head_magic(), HeadMagic::Service);
        assert_eq!(ImageKind::Inventory.head_magic(), HeadMagic::None);
        assert_eq!(ImageKind::Pages.type_magic(), None);
        assert_eq!(ImageKind::Pidfd.type_magic(), Some(0x54435556));
    }

    #[test]
    fn file_names_follow_criu_formats() {
        assert_eq!(ImageKind::Core.file_name(31202).unwrap(), "core-31202.img");
        assert_eq!(
            ImageKind::ShmemPagemap.file_name(7).unwrap(),
            "pagemap-shmem-7.img"
        );
        assert_eq!(
            ImageKind::TcpStream.file_name(0x1f).unwrap(),
            "tcp-stream-1f.img"
        );
        assert_eq!(
            ImageKind::GhostFile.file_name(10).unwrap(),
            "ghost-file-a.img"
        );
        assert_eq!(ImageKind::Files.file_name(0).unwrap(), "files.img");
        assert_eq!(ImageKind::StatsDump.file_name(0).unwrap(), "stats-dump");
        assert_eq!(
            ImageKind::TmpfsDev.file_name(3).unwrap(),
            "tmpfs-dev-3.tar.gz.img"
        );
        assert_eq!(
            ImageKind::Files.file_name(3),
            Err(KindError::UnexpectedId {
                kind: ImageKind::Files,
                id: 3
            })
        );
    }

    #[test]
    fn file_names_parse_back_for_every_kind() {
        for kind in ImageKind::all() {
            if matches!(kind, ImageKind::PagesOld | ImageKind::BinfmtMiscOld) {
                continue;
            }
            let id = if kind.id_format() == IdFormat::None {
                0
            } else {
                4711
            };
            let name = kind.file_name(id).unwrap();
            assert_eq!(ImageKind::from_file_name(&name), Some((kind, id)), "{name}");
        }
        assert_eq!(ImageKind::from_file_name("core-01.img"), None);
        assert_eq!(ImageKind::from_file_name("core-.img"), None);
        assert_eq!(ImageKind::from_file_name("files2.img"), None);
    }

    #[test]
    fn magic_names_resolve_to_canonical_kinds() {
        assert_eq!(
            ImageKind::from_magic_name("PAGEMAP"),
            Ok(ImageKind::Pagemap)
        );
        assert_eq!(
            ImageKind::from_magic_name("STATS"),
            Ok(ImageKind::StatsDump)
        );
        assert_eq!(ImageKind::ShmemPagemap.magic_name(), "PAGEMAP");
        assert_eq!(
            ImageKind::from_type_magic(0x59255647),
            Some(ImageKind::Signal)
        );
        assert!(ImageKind::from_magic_name("PAGES").is_err());
        // Every non-raw kind round-trips through its magic.
        for kind in ImageKind::all().filter(|k| !k.is_raw()) {
            let canonical = ImageKind::from_type_magic(kind.type_magic().unwrap()).unwrap();
            assert_eq!(canonical.magic_name(), kind.magic_name());
        }
    }
}
