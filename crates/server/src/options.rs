//! One model of CRIU's options, filled from config files, the command line and
//! RPC `criu_opts`, with CRIU's option names and semantics.

use std::path::PathBuf;

use thiserror::Error;

use crate::getopt::{self, ArgKind, GetoptError, LongOption, ShortOption};

/// What happens to the dumped tree after a dump (`opts.final_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalState {
    /// Killed (the default).
    #[default]
    Dead,
    /// Resumed (`--leave-running`, pre-dump).
    Alive,
    /// Left stopped (`--leave-stopped`).
    Stopped,
}

/// Cgroup management mode (`--manage-cgroups`, `criu_cg_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupMode {
    /// Do not touch cgroups.
    Ignore,
    /// `none`.
    None,
    /// `props`.
    Props,
    /// `soft`.
    Soft,
    /// `full`.
    Full,
    /// `strict`.
    Strict,
    /// Whatever the images say (the default).
    #[default]
    Default,
}

/// How a pre-dump reads memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreDumpMode {
    /// vmsplice (CRIU's default name; the engine decides how).
    #[default]
    Splice,
    /// process_vm_readv.
    Read,
}

/// Network locking method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkLock {
    /// iptables (CRIU's default).
    #[default]
    Iptables,
    /// nftables.
    Nftables,
    /// No locking.
    Skip,
}

/// A `--join-ns NS:FILE[,EXTRA]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinNamespace {
    /// Namespace name (net, uts, ipc, ...).
    pub ns: String,
    /// Path or pid of the namespace to join.
    pub ns_file: String,
    /// Extra options (user namespaces: uid,gid).
    pub extra: Option<String>,
}

/// An `--inherit-fd fd[N]:KEY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritFd {
    /// Descriptor in criu that replaces the resource.
    pub fd: i32,
    /// Resource key (e.g. `pipe:[1234]`, a path).
    pub key: String,
}

/// A `--cgroup-root [CTRL:]PATH` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    /// Controller, or all of them.
    pub controller: Option<String>,
    /// New root path.
    pub path: String,
}

/// Every option CRIU knows, with CRIU's defaults (`init_opts`).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `-t/--tree`: root pid to dump.
    pub tree: Option<i32>,
    /// `-R` / `-s`.
    pub final_state: FinalState,
    /// `-d/--restore-detached` (also the daemon flag of service/page-server).
    pub restore_detached: bool,
    /// `-S/--restore-sibling`.
    pub restore_sibling: bool,
    /// `-D/--images-dir`.
    pub images_dir: Option<PathBuf>,
    /// `-W/--work-dir`.
    pub work_dir: Option<PathBuf>,
    /// `-o/--log-file` (None: the default "criu.log" where a log is needed).
    pub log_file: Option<String>,
    /// Log to stderr instead of a file (RPC `log_to_stderr`).
    pub log_to_stderr: bool,
    /// `-v`: 0 msg, 1 error, 2 warn (default), 3 info, 4 debug.
    pub log_level: i32,
    /// `--log-pid`.
    pub log_pid: bool,
    /// `-J/--join-ns`.
    pub join_ns: Vec<JoinNamespace>,
    /// `-r/--root`.
    pub root: Option<PathBuf>,
    /// `--tcp-established`.
    pub tcp_established: bool,
    /// `--skip-in-flight`.
    pub tcp_skip_in_flight: bool,
    /// `--tcp-close`.
    pub tcp_close: bool,
    /// `-x/--ext-unix-sk`.
    pub ext_unix_sk: bool,
    /// Inodes given to `--ext-unix-sk` or RPC `unix_sk_ino`.
    pub ext_unix_sk_inodes: Vec<u32>,
    /// `--evasive-devices`.
    pub evasive_devices: bool,
    /// `--link-remap`.
    pub link_remap: bool,
    /// `-j/--shell-job`.
    pub shell_job: bool,
    /// `-l/--file-locks`.
    pub file_locks: bool,
    /// `--page-server` (send pages to a page server).
    pub use_page_server: bool,
    /// `--address`.
    pub address: Option<String>,
    /// `--port`.
    pub port: u16,
    /// `--ps-socket`.
    pub ps_socket: Option<i32>,
    /// `--prev-images-dir` / RPC `parent_img`.
    pub prev_images_dir: Option<String>,
    /// `--track-mem`.
    pub track_mem: bool,
    /// `--auto-dedup`.
    pub auto_dedup: bool,
    /// `--cpu-cap` bits (CRIU's CPU_CAP_* values).
    pub cpu_cap: u32,
    /// `--force-irmap`.
    pub force_irmap: bool,
    /// `-M/--ext-mount-map KEY:VAL` (and `auto`).
    pub ext_mount_map: Vec<(String, String)>,
    /// `--ext-mount-map auto` / RPC auto_ext_mnt.
    pub auto_ext_mnt: bool,
    /// `--exec-cmd` (the command itself comes after the operands).
    pub exec_cmd: Vec<String>,
    /// `--manage-cgroups`.
    pub manage_cgroups: CgroupMode,
    /// `--cgroup-root`.
    pub cgroup_roots: Vec<CgroupRoot>,
    /// `--inherit-fd`.
    pub inherit_fds: Vec<InheritFd>,
    /// `--feature` (check).
    pub feature: Option<String>,
    /// `--skip-mnt`.
    pub skip_mnt: Vec<String>,
    /// `--enable-fs`.
    pub enable_fs: Vec<String>,
    /// `--enable-external-sharing`.
    pub ext_sharing: bool,
    /// `--enable-external-masters`.
    pub ext_masters: bool,
    /// `--freeze-cgroup`.
    pub freeze_cgroup: Option<String>,
    /// `--ghost-limit` in bytes.
    pub ghost_limit: u64,
    /// `--irmap-scan-path`.
    pub irmap_scan_paths: Vec<String>,
    /// `--lsm-profile`.
    pub lsm_profile: Option<String>,
    /// `--lsm-mount-context`.
    pub lsm_mount_context: Option<String>,
    /// `--timeout` in seconds (default 10).
    pub timeout: u32,
    /// `--external`.
    pub external: Vec<String>,
    /// `--empty-ns` (CLONE_NEW* bits; only net is allowed).
    pub empty_ns: u32,
    /// `--lazy-pages`.
    pub lazy_pages: bool,
    /// `--extra` (check category 2).
    pub check_extra: bool,
    /// `--experimental` (check category 3).
    pub check_experimental: bool,
    /// `--cgroup-props`.
    pub cgroup_props: Option<String>,
    /// `--cgroup-props-file`.
    pub cgroup_props_file: Option<String>,
    /// `--cgroup-dump-controller`.
    pub cgroup_dump_controllers: Vec<String>,
    /// `--cgroup-yard`.
    pub cgroup_yard: Option<String>,
    /// `--deprecated`.
    pub deprecated: bool,
    /// `--display-stats`.
    pub display_stats: bool,
    /// `--weak-sysctls`.
    pub weak_sysctls: bool,
    /// `--status-fd`.
    pub status_fd: Option<i32>,
    /// `--stream`.
    pub stream: bool,
    /// `--tls`.
    pub tls: bool,
    /// `--tls-no-cn-verify`.
    pub tls_no_cn_verify: bool,
    /// `--tls-cacert`, `--tls-cacrl`, `--tls-cert`, `--tls-key`.
    pub tls_files: [Option<String>; 4],
    /// `--pre-dump-mode`.
    pub pre_dump_mode: PreDumpMode,
    /// `--file-validation` (filesize or buildid).
    pub file_validation: Option<String>,
    /// `--skip-file-rwx-check`.
    pub skip_file_rwx_check: bool,
    /// `--network-lock`.
    pub network_lock: NetworkLock,
    /// `--mntns-compat-mode`.
    pub mntns_compat_mode: bool,
    /// `--unprivileged`.
    pub unprivileged: bool,
    /// `--ghost-fiemap`.
    pub ghost_fiemap: bool,
    /// `--allow-uprobes`.
    pub allow_uprobes: bool,
    /// `--pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `--action-script`.
    pub action_scripts: Vec<String>,
    /// `--veth-pair IN=OUT`.
    pub veth_pairs: Vec<(String, String)>,
    /// `-L/--libdir`.
    pub libdir: Option<String>,
    /// `--orphan-pts-master` (RPC only).
    pub orphan_pts_master: bool,
    /// `--config FILE` given on the command line.
    pub config_file: Option<PathBuf>,
    /// `--no-default-config`.
    pub no_default_config: bool,
}

/// CRIU's CPU_CAP_* bits.
pub mod cpu_cap {
    /// Check the FPU.
    pub const FPU: u32 = 1 << 0;
    /// Check CPU features.
    pub const CPU: u32 = 1 << 1;
    /// Check instructions.
    pub const INS: u32 = 1 << 2;
    /// Write/compare cpuinfo.img.
    pub const IMAGE: u32 = 1 << 3;
    /// No checks.
    pub const NONE: u32 = 0;
    /// FPU | CPU | INS.
    pub const ALL: u32 = FPU | CPU | INS;
    /// `init_opts` value.
    pub const DEFAULT: u32 = FPU;
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tree: None,
            final_state: FinalState::Dead,
            restore_detached: false,
            restore_sibling: false,
            images_dir: None,
            work_dir: None,
            log_file: None,
            log_to_stderr: false,
            log_level: 2,
            log_pid: false,
            join_ns: Vec::new(),
            root: None,
            tcp_established: false,
            tcp_skip_in_flight: false,
            tcp_close: false,
            ext_unix_sk: false,
            ext_unix_sk_inodes: Vec::new(),
            evasive_devices: false,
            link_remap: false,
            shell_job: false,
            file_locks: false,
            use_page_server: false,
            address: None,
            port: 0,
            ps_socket: None,
            prev_images_dir: None,
            track_mem: false,
            auto_dedup: false,
            cpu_cap: cpu_cap::DEFAULT,
            force_irmap: false,
            ext_mount_map: Vec::new(),
            auto_ext_mnt: false,
            exec_cmd: Vec::new(),
            manage_cgroups: CgroupMode::Default,
            cgroup_roots: Vec::new(),
            inherit_fds: Vec::new(),
            feature: None,
            skip_mnt: Vec::new(),
            enable_fs: Vec::new(),
            ext_sharing: false,
            ext_masters: false,
            freeze_cgroup: None,
            ghost_limit: 1 << 20,
            irmap_scan_paths: Vec::new(),
            lsm_profile: None,
            lsm_mount_context: None,
            timeout: 10,
            external: Vec::new(),
            empty_ns: 0,
            lazy_pages: false,
            check_extra: false,
            check_experimental: false,
            cgroup_props: None,
            cgroup_props_file: None,
            cgroup_dump_controllers: Vec::new(),
            cgroup_yard: None,
            deprecated: false,
            display_stats: false,
            weak_sysctls: false,
            status_fd: None,
            stream: false,
            tls: false,
            tls_no_cn_verify: false,
            tls_files: [None, None, None, None],
            pre_dump_mode: PreDumpMode::Splice,
            file_validation: None,
            skip_file_rwx_check: false,
            network_lock: NetworkLock::Iptables,
            mntns_compat_mode: false,
            unprivileged: false,
            ghost_fiemap: true,
            allow_uprobes: false,
            pidfile: None,
            action_scripts: Vec::new(),
            veth_pairs: Vec::new(),
            libdir: None,
            orphan_pts_master: false,
            config_file: None,
            no_default_config: false,
        }
    }
}

/// Errors turning option words into [`Options`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionsError {
    /// getopt rejected the words.
    #[error(transparent)]
    Getopt(#[from] GetoptError),
    /// An option's argument is malformed.
    #[error("invalid argument for {option}: {value}")]
    BadArgument {
        /// The option as spelled.
        option: String,
        /// The argument.
        value: String,
    },
    /// `--ms` and other removed options.
    #[error("{0}")]
    Rejected(String),
}

/// Which option a word was (the getopt id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionId {
    Tree,
    LeaveStopped,
    LeaveRunning,
    ExtUnixSk,
    Root,
    Detach,
    Sibling,
    ImagesDir,
    WorkDir,
    LogFile,
    JoinNs,
    Verbosity,
    Close,
    Pidfile,
    VethPair,
    ActionScript,
    Address,
    Port,
    PrevImagesDir,
    Ms,
    Libdir,
    CpuCap,
    ExtMountMap,
    ExecCmd,
    ManageCgroups,
    CgroupRoot,
    InheritFd,
    Feature,
    SkipMnt,
    EnableFs,
    FreezeCgroup,
    GhostLimit,
    IrmapScanPath,
    LsmProfile,
    Timeout,
    External,
    EmptyNs,
    LazyPages,
    All,
    CgroupProps,
    CgroupPropsFile,
    CgroupDumpController,
    StatusFd,
    PsSocket,
    Config,
    NoDefaultConfig,
    TlsCacert,
    TlsCacrl,
    TlsCert,
    TlsKey,
    CgroupYard,
    PreDumpMode,
    FileValidation,
    LsmMountContext,
    NetworkLock,
    Version,
    Help,
    ShellJob,
    FileLocks,
    /// A CRIU `BOOL_OPT`: the flag and its `--no-` form.
    Bool(BoolOption, bool),
}

/// The `BOOL_OPT` options of CRIU (each also has a `--no-NAME` form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoolOption {
    RestoreDetached,
    RestoreSibling,
    Daemon,
    TcpEstablished,
    LogPid,
    EvasiveDevices,
    LinkRemap,
    ShellJob,
    FileLocks,
    PageServer,
    TrackMem,
    AutoDedup,
    ForceIrmap,
    ExtSharing,
    ExtMasters,
    Extra,
    Experimental,
    SkipInFlight,
    Deprecated,
    DisplayStats,
    WeakSysctls,
    TcpClose,
    Stream,
    Tls,
    TlsNoCnVerify,
    SkipFileRwxCheck,
    MntnsCompatMode,
    Unprivileged,
    GhostFiemap,
    AllowUprobes,
}

const SHORT_OPTIONS: &[ShortOption<OptionId>] = &[
    short('d', ArgKind::None, OptionId::Detach),
    short('S', ArgKind::None, OptionId::Sibling),
    short('s', ArgKind::None, OptionId::LeaveStopped),
    short('R', ArgKind::None, OptionId::LeaveRunning),
    short('t', ArgKind::Required, OptionId::Tree),
    short('h', ArgKind::None, OptionId::Help),
    short('D', ArgKind::Required, OptionId::ImagesDir),
    short('o', ArgKind::Required, OptionId::LogFile),
    short('v', ArgKind::Optional, OptionId::Verbosity),
    short('x', ArgKind::Optional, OptionId::ExtUnixSk),
    short('V', ArgKind::None, OptionId::Version),
    short('r', ArgKind::Required, OptionId::Root),
    short('j', ArgKind::None, OptionId::ShellJob),
    short('J', ArgKind::Required, OptionId::JoinNs),
    short('l', ArgKind::None, OptionId::FileLocks),
    short('W', ArgKind::Required, OptionId::WorkDir),
    short('L', ArgKind::Required, OptionId::Libdir),
    short('M', ArgKind::Required, OptionId::ExtMountMap),
];

const fn short(letter: char, arg: ArgKind, id: OptionId) -> ShortOption<OptionId> {
    ShortOption { letter, arg, id }
}

const fn long(name: &'static str, arg: ArgKind, id: OptionId) -> LongOption<OptionId> {
    LongOption { name, arg, id }
}

const BOOL_OPTIONS: &[(&str, BoolOption)] = &[
    ("restore-detached", BoolOption::RestoreDetached),
    ("restore-sibling", BoolOption::RestoreSibling),
    ("daemon", BoolOption::Daemon),
    ("tcp-established", BoolOption::TcpEstablished),
    ("log-pid", BoolOption::LogPid),
    ("evasive-devices", BoolOption::EvasiveDevices),
    ("link-remap", BoolOption::LinkRemap),
    ("shell-job", BoolOption::ShellJob),
    ("file-locks", BoolOption::FileLocks),
    ("page-server", BoolOption::PageServer),
    ("track-mem", BoolOption::TrackMem),
    ("auto-dedup", BoolOption::AutoDedup),
    ("force-irmap", BoolOption::ForceIrmap),
    ("extra", BoolOption::Extra),
    ("experimental", BoolOption::Experimental),
    ("skip-in-flight", BoolOption::SkipInFlight),
    ("deprecated", BoolOption::Deprecated),
    ("display-stats", BoolOption::DisplayStats),
    ("weak-sysctls", BoolOption::WeakSysctls),
    ("tcp-close", BoolOption::TcpClose),
    ("stream", BoolOption::Stream),
    ("tls", BoolOption::Tls),
    ("skip-file-rwx-check", BoolOption::SkipFileRwxCheck),
    ("mntns-compat-mode", BoolOption::MntnsCompatMode),
    ("unprivileged", BoolOption::Unprivileged),
    ("ghost-fiemap", BoolOption::GhostFiemap),
    ("allow-uprobes", BoolOption::AllowUprobes),
];

const VALUE_OPTIONS: &[LongOption<OptionId>] = &[
    long("tree", ArgKind::Required, OptionId::Tree),
    long("leave-stopped", ArgKind::None, OptionId::LeaveStopped),
    long("leave-running", ArgKind::None, OptionId::LeaveRunning),
    long("images-dir", ArgKind::Required, OptionId::ImagesDir),
    long("work-dir", ArgKind::Required, OptionId::WorkDir),
    long("log-file", ArgKind::Required, OptionId::LogFile),
    long("join-ns", ArgKind::Required, OptionId::JoinNs),
    long("root", ArgKind::Required, OptionId::Root),
    long("ext-unix-sk", ArgKind::Optional, OptionId::ExtUnixSk),
    long("help", ArgKind::None, OptionId::Help),
    long("close", ArgKind::Required, OptionId::Close),
    long("version", ArgKind::None, OptionId::Version),
    long("pidfile", ArgKind::Required, OptionId::Pidfile),
    long("veth-pair", ArgKind::Required, OptionId::VethPair),
    long("action-script", ArgKind::Required, OptionId::ActionScript),
    long("address", ArgKind::Required, OptionId::Address),
    long("port", ArgKind::Required, OptionId::Port),
    long(
        "prev-images-dir",
        ArgKind::Required,
        OptionId::PrevImagesDir,
    ),
    long("ms", ArgKind::None, OptionId::Ms),
    long("libdir", ArgKind::Required, OptionId::Libdir),
    long("cpu-cap", ArgKind::Optional, OptionId::CpuCap),
    long("ext-mount-map", ArgKind::Required, OptionId::ExtMountMap),
    long("exec-cmd", ArgKind::None, OptionId::ExecCmd),
    long("manage-cgroups", ArgKind::Optional, OptionId::ManageCgroups),
    long("cgroup-root", ArgKind::Required, OptionId::CgroupRoot),
    long("inherit-fd", ArgKind::Required, OptionId::InheritFd),
    long("feature", ArgKind::Required, OptionId::Feature),
    long("skip-mnt", ArgKind::Required, OptionId::SkipMnt),
    long("enable-fs", ArgKind::Required, OptionId::EnableFs),
    long(
        "enable-external-sharing",
        ArgKind::None,
        OptionId::Bool(BoolOption::ExtSharing, true),
    ),
    long(
        "enable-external-masters",
        ArgKind::None,
        OptionId::Bool(BoolOption::ExtMasters, true),
    ),
    long("freeze-cgroup", ArgKind::Required, OptionId::FreezeCgroup),
    long("ghost-limit", ArgKind::Required, OptionId::GhostLimit),
    long(
        "irmap-scan-path",
        ArgKind::Required,
        OptionId::IrmapScanPath,
    ),
    long("lsm-profile", ArgKind::Required, OptionId::LsmProfile),
    long("timeout", ArgKind::Required, OptionId::Timeout),
    long("external", ArgKind::Required, OptionId::External),
    long("empty-ns", ArgKind::Required, OptionId::EmptyNs),
    long("lazy-pages", ArgKind::None, OptionId::LazyPages),
    long("all", ArgKind::None, OptionId::All),
    long("cgroup-props", ArgKind::Required, OptionId::CgroupProps),
    long(
        "cgroup-props-file",
        ArgKind::Required,
        OptionId::CgroupPropsFile,
    ),
    long(
        "cgroup-dump-controller",
        ArgKind::Required,
        OptionId::CgroupDumpController,
    ),
    long("status-fd", ArgKind::Required, OptionId::StatusFd),
    long("verbosity", ArgKind::Optional, OptionId::Verbosity),
    long("ps-socket", ArgKind::Required, OptionId::PsSocket),
    long("config", ArgKind::Required, OptionId::Config),
    long(
        "no-default-config",
        ArgKind::None,
        OptionId::NoDefaultConfig,
    ),
    long("tls-cacert", ArgKind::Required, OptionId::TlsCacert),
    long("tls-cacrl", ArgKind::Required, OptionId::TlsCacrl),
    long("tls-cert", ArgKind::Required, OptionId::TlsCert),
    long("tls-key", ArgKind::Required, OptionId::TlsKey),
    long(
        "tls-no-cn-verify",
        ArgKind::None,
        OptionId::Bool(BoolOption::TlsNoCnVerify, true),
    ),
    long("cgroup-yard", ArgKind::Required, OptionId::CgroupYard),
    long("pre-dump-mode", ArgKind::Required, OptionId::PreDumpMode),
    long(
        "file-validation",
        ArgKind::Required,
        OptionId::FileValidation,
    ),
    long(
        "lsm-mount-context",
        ArgKind::Required,
        OptionId::LsmMountContext,
    ),
    long("network-lock", ArgKind::Required, OptionId::NetworkLock),
];

/// The full long-option table (value options, then each BOOL_OPT and its
/// `no-` twin), built once.
pub fn long_options() -> &'static [LongOption<OptionId>] {
    static TABLE: std::sync::OnceLock<Vec<LongOption<OptionId>>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = VALUE_OPTIONS.to_vec();
        for &(name, which) in BOOL_OPTIONS {
            table.push(long(name, ArgKind::None, OptionId::Bool(which, true)));
            let negated: &'static str = Box::leak(format!("no-{name}").into_boxed_str());
            table.push(long(negated, ArgKind::None, OptionId::Bool(which, false)));
        }
        table
    })
}

/// What the command line asked for besides options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// The operands (command, subcommand, exec-cmd words), in order.
    pub operands: Vec<String>,
    /// `-V/--version` was given.
    pub version: bool,
    /// `-h/--help` was given.
    pub help: bool,
    /// `--exec-cmd` was given.
    pub exec_cmd: bool,
}

/// Parses option words and applies them onto `options`, in order.
pub fn apply_words(options: &mut Options, words: &[String]) -> Result<CommandLine, OptionsError> {
    let parsed = getopt::parse(words, SHORT_OPTIONS, long_options())?;
    let mut command = CommandLine {
        operands: parsed.operands,
        ..CommandLine::default()
    };
    for occurrence in parsed.options {
        apply_one(
            options,
            &mut command,
            occurrence.id,
            occurrence.arg,
            &occurrence.spelled,
        )?;
    }
    Ok(command)
}

/// C `atoi`: leading blanks, optional sign, digits; anything else stops it.
pub fn atoi(text: &str) -> i64 {
    let trimmed = text.trim_start();
    let (sign, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (-1, &trimmed[1..]),
        Some(b'+') => (1, &trimmed[1..]),
        _ => (1, trimmed),
    };
    let mut value: i64 = 0;
    for byte in digits.bytes() {
        if !byte.is_ascii_digit() {
            break;
        }
        value = value
            .saturating_mul(10)
            .saturating_add(i64::from(byte - b'0'));
    }
    sign * value
}

fn parse_size(text: &str) -> u64 {
    let number = atoi(text).max(0) as u64;
    if text.contains('K') {
        number << 10
    } else if text.contains('M') {
        number << 20
    } else if text.contains('G') {
        number << 30
    } else {
        number
    }
}

fn apply_one(
    options: &mut Options,
    command: &mut CommandLine,
    id: OptionId,
    arg: Option<String>,
    spelled: &str,
) -> Result<(), OptionsError> {
    let bad = |value: &str| OptionsError::BadArgument {
        option: spelled.to_string(),
        value: value.to_string(),
    };
    let value = arg.clone().unwrap_or_default();
    match id {
        OptionId::Tree => {
            let pid = atoi(&value);
            if pid <= 0 || pid > i64::from(i32::MAX) {
                return Err(bad(&value));
            }
            options.tree = Some(pid as i32);
        }
        OptionId::LeaveStopped => options.final_state = FinalState::Stopped,
        OptionId::LeaveRunning => options.final_state = FinalState::Alive,
        OptionId::ExtUnixSk => {
            if let Some(list) = arg {
                for item in list.split(',') {
                    let inode: u32 = item.trim().parse().map_err(|_| bad(&list))?;
                    options.ext_unix_sk_inodes.push(inode);
                }
            }
            options.ext_unix_sk = true;
        }
        OptionId::Root => options.root = Some(PathBuf::from(value)),
        OptionId::Detach => options.restore_detached = true,
        OptionId::Sibling => options.restore_sibling = true,
        OptionId::ImagesDir => options.images_dir = Some(PathBuf::from(value)),
        OptionId::WorkDir => options.work_dir = Some(PathBuf::from(value)),
        OptionId::LogFile => options.log_file = Some(value),
        OptionId::JoinNs => {
            let (ns, rest) = value.split_once(':').ok_or_else(|| bad(&value))?;
            let (ns_file, extra) = match rest.split_once(',') {
                Some((file, extra)) => (file.to_string(), Some(extra.to_string())),
                None => (rest.to_string(), None),
            };
            options.join_ns.push(JoinNamespace {
                ns: ns.to_string(),
                ns_file,
                extra,
            });
        }
        OptionId::Verbosity => match arg {
            Some(text) if text.starts_with('v') => {
                options.log_level += text.len() as i32 + 1;
            }
            Some(text) => options.log_level = atoi(&text) as i32,
            None => options.log_level += 1,
        },
        OptionId::Close => {
            // CRIU closes the descriptor right away; we only accept the form.
            if atoi(&value) < 0 {
                return Err(bad(&value));
            }
        }
        OptionId::Pidfile => options.pidfile = Some(PathBuf::from(value)),
        OptionId::VethPair => {
            let (inside, outside) = value.split_once('=').ok_or_else(|| bad(&value))?;
            options
                .veth_pairs
                .push((inside.to_string(), outside.to_string()));
        }
        OptionId::ActionScript => options.action_scripts.push(value),
        OptionId::Address => options.address = Some(value),
        OptionId::Port => {
            let port = atoi(&value);
            if port == 0 || !(0..=65535).contains(&port) {
                return Err(bad(&value));
            }
            options.port = port as u16;
        }
        OptionId::PrevImagesDir => options.prev_images_dir = Some(value),
        OptionId::Ms => {
            return Err(OptionsError::Rejected(
                "--ms is deprecated; see \"Check options\" of criu --help".into(),
            ))
        }
        OptionId::Libdir => options.libdir = Some(value),
        OptionId::CpuCap => {
            options.cpu_cap = parse_cpu_cap(options.cpu_cap, arg.as_deref()).ok_or_else(|| {
                OptionsError::Rejected(format!("Unknown FPU mode `{value}' selected"))
            })?
        }
        OptionId::ExtMountMap => {
            if value == "auto" {
                options.auto_ext_mnt = true;
            } else {
                let (key, val) = value.split_once(':').ok_or_else(|| bad(&value))?;
                options
                    .ext_mount_map
                    .push((key.to_string(), val.to_string()));
            }
        }
        OptionId::ExecCmd => command.exec_cmd = true,
        OptionId::ManageCgroups => {
            options.manage_cgroups = match arg.as_deref() {
                None | Some("soft") => CgroupMode::Soft,
                Some("none") => CgroupMode::None,
                Some("props") => CgroupMode::Props,
                Some("full") => CgroupMode::Full,
                Some("strict") => CgroupMode::Strict,
                Some("ignore") => CgroupMode::Ignore,
                Some(other) => {
                    return Err(OptionsError::Rejected(format!(
                        "Unknown cgroups mode `{other}' selected"
                    )))
                }
            }
        }
        OptionId::CgroupRoot => {
            let root = match value.split_once(':') {
                Some((ctrl, path)) => CgroupRoot {
                    controller: Some(ctrl.to_string()),
                    path: path.to_string(),
                },
                None => CgroupRoot {
                    controller: None,
                    path: value,
                },
            };
            options.cgroup_roots.push(root);
        }
        OptionId::InheritFd => options.inherit_fds.push(parse_inherit_fd(&value)?),
        OptionId::Feature => {
            if value != "list" && !crate::check::is_known_feature(&value) {
                return Err(OptionsError::Rejected(format!("Unknown feature {value}")));
            }
            options.feature = Some(value);
        }
        OptionId::SkipMnt => options.skip_mnt.push(value),
        OptionId::EnableFs => options.enable_fs.push(value),
        OptionId::FreezeCgroup => options.freeze_cgroup = Some(value),
        OptionId::GhostLimit => options.ghost_limit = parse_size(&value),
        OptionId::IrmapScanPath => options.irmap_scan_paths.push(value),
        OptionId::LsmProfile => options.lsm_profile = Some(value),
        OptionId::Timeout => options.timeout = atoi(&value).clamp(0, i64::from(u32::MAX)) as u32,
        OptionId::External => options.external.push(value),
        OptionId::EmptyNs => {
            if value != "net" {
                return Err(OptionsError::Rejected(format!(
                    "Unsupported empty namespace: {value}"
                )));
            }
            options.empty_ns |= libc::CLONE_NEWNET as u32;
        }
        OptionId::LazyPages => options.lazy_pages = true,
        OptionId::All => {
            options.check_extra = true;
            options.check_experimental = true;
        }
        OptionId::CgroupProps => options.cgroup_props = Some(value),
        OptionId::CgroupPropsFile => options.cgroup_props_file = Some(value),
        OptionId::CgroupDumpController => options.cgroup_dump_controllers.push(value),
        OptionId::StatusFd => {
            let fd: i32 = value.trim().parse().map_err(|_| {
                OptionsError::Rejected("Unable to parse a value of --status-fd".into())
            })?;
            options.status_fd = Some(fd);
        }
        OptionId::PsSocket => options.ps_socket = Some(atoi(&value) as i32),
        OptionId::Config => options.config_file = Some(PathBuf::from(value)),
        OptionId::NoDefaultConfig => options.no_default_config = true,
        OptionId::TlsCacert => options.tls_files[0] = Some(value),
        OptionId::TlsCacrl => options.tls_files[1] = Some(value),
        OptionId::TlsCert => options.tls_files[2] = Some(value),
        OptionId::TlsKey => options.tls_files[3] = Some(value),
        OptionId::CgroupYard => options.cgroup_yard = Some(value),
        OptionId::PreDumpMode => {
            options.pre_dump_mode = match value.as_str() {
                "read" => PreDumpMode::Read,
                "splice" => PreDumpMode::Splice,
                _ => {
                    return Err(OptionsError::Rejected(
                        "Unable to parse value of --pre-dump-mode".into(),
                    ))
                }
            }
        }
        OptionId::FileValidation => {
            if value != "filesize" && value != "buildid" {
                return Err(OptionsError::Rejected(format!(
                    "Unknown file validation method `{value}' selected"
                )));
            }
            options.file_validation = Some(value);
        }
        OptionId::LsmMountContext => options.lsm_mount_context = Some(value),
        OptionId::NetworkLock => {
            options.network_lock = match value.as_str() {
                "iptables" => NetworkLock::Iptables,
                "nftables" => NetworkLock::Nftables,
                "skip" | "none" => NetworkLock::Skip,
                _ => {
                    return Err(OptionsError::Rejected(format!(
                        "Invalid value for --network-lock: {value}"
                    )))
                }
            }
        }
        OptionId::Version => command.version = true,
        OptionId::Help => command.help = true,
        OptionId::ShellJob => options.shell_job = true,
        OptionId::FileLocks => options.file_locks = true,
        OptionId::Bool(which, on) => apply_bool(options, which, on),
    }
    Ok(())
}

fn apply_bool(options: &mut Options, which: BoolOption, on: bool) {
    let slot = match which {
        BoolOption::RestoreDetached | BoolOption::Daemon => &mut options.restore_detached,
        BoolOption::RestoreSibling => &mut options.restore_sibling,
        BoolOption::TcpEstablished => &mut options.tcp_established,
        BoolOption::LogPid => &mut options.log_pid,
        BoolOption::EvasiveDevices => &mut options.evasive_devices,
        BoolOption::LinkRemap => &mut options.link_remap,
        BoolOption::ShellJob => &mut options.shell_job,
        BoolOption::FileLocks => &mut options.file_locks,
        BoolOption::PageServer => &mut options.use_page_server,
        BoolOption::TrackMem => &mut options.track_mem,
        BoolOption::AutoDedup => &mut options.auto_dedup,
        BoolOption::ForceIrmap => &mut options.force_irmap,
        BoolOption::ExtSharing => &mut options.ext_sharing,
        BoolOption::ExtMasters => &mut options.ext_masters,
        BoolOption::Extra => &mut options.check_extra,
        BoolOption::Experimental => &mut options.check_experimental,
        BoolOption::SkipInFlight => &mut options.tcp_skip_in_flight,
        BoolOption::Deprecated => &mut options.deprecated,
        BoolOption::DisplayStats => &mut options.display_stats,
        BoolOption::WeakSysctls => &mut options.weak_sysctls,
        BoolOption::TcpClose => &mut options.tcp_close,
        BoolOption::Stream => &mut options.stream,
        BoolOption::Tls => &mut options.tls,
        BoolOption::TlsNoCnVerify => &mut options.tls_no_cn_verify,
        BoolOption::SkipFileRwxCheck => &mut options.skip_file_rwx_check,
        BoolOption::MntnsCompatMode => &mut options.mntns_compat_mode,
        BoolOption::Unprivileged => &mut options.unprivileged,
        BoolOption::GhostFiemap => &mut options.ghost_fiemap,
        BoolOption::AllowUprobes => &mut options.allow_uprobes,
    };
    *slot = on;
}

/// `--inherit-fd fd[N]:KEY`.
fn parse_inherit_fd(value: &str) -> Result<InheritFd, OptionsError> {
    let bad = || OptionsError::Rejected(format!("Inherit fd DSC should be fd[N]:KEY, got {value}"));
    let rest = value.strip_prefix("fd[").ok_or_else(bad)?;
    let (number, rest) = rest.split_once("]:").ok_or_else(bad)?;
    let fd: i32 = number.parse().map_err(|_| bad())?;
    if fd < 0 || rest.is_empty() {
        return Err(bad());
    }
    Ok(InheritFd {
        fd,
        key: rest.to_string(),
    })
}

/// `--cpu-cap [LIST]` as CRIU's `parse_cpu_cap`; None on a syntax error.
fn parse_cpu_cap(current: u32, arg: Option<&str>) -> Option<u32> {
    let Some(mut text) = arg else {
        return Some(current | cpu_cap::ALL | cpu_cap::IMAGE);
    };
    let mut caps = current;
    let mut inverse = false;
    while !text.is_empty() {
        if let Some(rest) = text.strip_prefix('^') {
            inverse = !inverse;
            text = rest;
            continue;
        }
        if let Some(rest) = text.strip_prefix(',') {
            inverse = false;
            text = rest;
            continue;
        }
        let (bits, len) = if text.starts_with("fpu") {
            (cpu_cap::FPU, 3)
        } else if text.starts_with("all") {
            (cpu_cap::ALL, 3)
        } else if text.starts_with("none") {
            caps = if inverse { cpu_cap::ALL } else { cpu_cap::NONE };
            text = &text[4..];
            continue;
        } else if text.starts_with("cpu") {
            (cpu_cap::CPU, 3)
        } else if text.starts_with("ins") {
            (cpu_cap::INS, 3)
        } else {
            return None;
        };
        if inverse {
            caps &= !bits;
        } else {
            caps |= bits;
        }
        text = &text[len..];
    }
    if caps != cpu_cap::NONE {
        caps |= cpu_cap::IMAGE;
    }
    Some(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn parse(line: &str) -> Result<(Options, CommandLine), OptionsError> {
        let mut options = Options::default();
        let command = apply_words(&mut options, &words(line))?;
        Ok((options, command))
    }

    #[test]
    fn zdtm_dump_command_line() {
        let (options, command) = parse(
            "dump --no-default-config --log-file dump.log --images-dir d/1 --verbosity=4 \
             --tree 4242 --prev-images-dir ../0 --track-mem --pidfile /t/x.pid --timeout 10",
        )
        .unwrap();
        assert_eq!(command.operands, vec!["dump"]);
        assert!(options.no_default_config);
        assert_eq!(options.log_file.as_deref(), Some("dump.log"));
        assert_eq!(options.images_dir, Some(PathBuf::from("d/1")));
        assert_eq!(options.log_level, 4);
        assert_eq!(options.tree, Some(4242));
        assert_eq!(options.prev_images_dir.as_deref(), Some("../0"));
        assert!(options.track_mem);
        assert_eq!(options.pidfile, Some(PathBuf::from("/t/x.pid")));
        assert_eq!(options.timeout, 10);
    }

    #[test]
    fn verbosity_forms() {
        assert_eq!(parse("check -verbosity=0").unwrap().0.log_level, 0);
        assert_eq!(parse("-v4").unwrap().0.log_level, 4);
        assert_eq!(parse("-v").unwrap().0.log_level, 3);
        assert_eq!(parse("-vvv").unwrap().0.log_level, 5);
        assert_eq!(parse("--verbosity=1").unwrap().0.log_level, 1);
    }

    #[test]
    fn bool_options_have_negations_and_last_wins() {
        let (options, _) = parse("--tcp-established --no-tcp-established --shell-job").unwrap();
        assert!(!options.tcp_established);
        assert!(options.shell_job);
        let (options, _) = parse("-R -s").unwrap();
        assert_eq!(options.final_state, FinalState::Stopped);
    }

    #[test]
    fn bad_arguments_are_rejected_with_the_option_name() {
        assert!(matches!(
            parse("-t 0"),
            Err(OptionsError::BadArgument { option, .. }) if option == "-t"
        ));
        assert!(matches!(
            parse("--port 0"),
            Err(OptionsError::BadArgument { .. })
        ));
        assert!(parse("--feature no_such_feature").is_err());
        assert!(parse("--unknown-flag").is_err());
        assert!(parse("--ms").is_err());
    }

    #[test]
    fn inherit_fd_and_external_and_cpu_cap() {
        let (options, _) =
            parse("--inherit-fd fd[3]:pipe:[123] --external mnt[/dev]:ZDTM_DEV --cpu-cap=^fpu,cpu")
                .unwrap();
        assert_eq!(
            options.inherit_fds,
            vec![InheritFd {
                fd: 3,
                key: "pipe:[123]".into()
            }]
        );
        assert_eq!(options.external, vec!["mnt[/dev]:ZDTM_DEV"]);
        assert_eq!(options.cpu_cap, cpu_cap::CPU | cpu_cap::IMAGE);
        assert_eq!(parse("--cpu-cap=^fpu").unwrap().0.cpu_cap, cpu_cap::NONE);
        assert_eq!(
            parse("--cpu-cap").unwrap().0.cpu_cap,
            cpu_cap::ALL | cpu_cap::IMAGE
        );
        assert!(parse("--inherit-fd 3:x").is_err());
    }

    #[test]
    fn exec_cmd_words_stay_operands() {
        let (_, command) = parse("restore -D d --exec-cmd -- /bin/sh -c true").unwrap();
        assert!(command.exec_cmd);
        assert_eq!(command.operands, vec!["restore", "/bin/sh", "-c", "true"]);
    }
}
