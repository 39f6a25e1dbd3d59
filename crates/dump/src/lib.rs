//! Dump engine: freezes a process tree with ptrace (no parasite) and writes
//! CRIU 4.2 images: the same image set, ids, entries and even pagemap entry
//! cuts as CRIU 4.2 (checked byte for byte against CRIU 4.2's own dump of the
//! same state, and CRIU 4.2 restores what we write: see
//! `tests/criu42_interop.rs`). Then it kills the tree, leaves it running or
//! leaves it stopped.
//!
//! ```no_run
//! use criu_dump::{dump, DumpOptions};
//! use criu_image::ImageDir;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = DumpOptions::new(1234, ImageDir::open("/tmp/dump")?);
//! let report = dump(&opts, &mut |_action, _pid| Ok(()))?;
//! println!("dumped {:?}, {} pages", report.pids, report.pages_written);
//! # Ok(()) }
//! ```
//!
//! What is dumped: process trees (pre-order pstree, zombies as DEAD cores with
//! their pgid/sid), threads (one core each), registers with CRIU's dump-time
//! restart fixup, FPU/XSAVE state, signal masks, shared and private pending
//! signals, 62 sigactions, itimers, POSIX timers, rlimits (from
//! /proc/PID/limits, so tasks of other uids work), creds and caps,
//! sigaltstack, rseq, robust lists, tid addresses, pdeath signals, scheduler
//! settings, seccomp filters (CRIU's layout and TSYNC merging), mm with VMAs,
//! auxv and exe, private pages (PE_LAZY as CRIU sets it), fs (cwd, root,
//! umask), a time namespace (`timens-<id>.img`), and these files: regular files
//! and directories (build-ids, sizes), /dev/null-like memory devices,
//! unlinked files (ghost files), pipes and FIFOs with their data, unix
//! sockets (stream, dgram, seqpacket; pairs, listeners, in-flight
//! connections, queued data, the RPC service socket, external datagram
//! peers with `ext_unix_sk`), TCP listening/closed and UDP/UDP-lite sockets
//! (IPv4 and IPv6), established TCP connections with `tcp_established` (TCP
//! repair, `tcp-stream-<ino>.img`; no network lock is taken), Unix98 ptys (slaves and masters; an external slave with
//! `shell_job`, tty-info.img), memfds and shared anonymous memory (memfd
//! route), eventfd (EFD_SEMAPHORE kept in `flags`, see
//! [`files::EVENTFD_SEMAPHORE_FLAG`]), eventpoll, signalfd, timerfd (a fired
//! periodic timer is recorded re-armed, with its missed periods as ticks),
//! inotify.
//!
//! Refused with an error naming the pid, the fd and the kind (nothing wrong is
//! ever written): established TCP connections without `tcp_established`, raw/ICMP,
//! netlink and packet sockets, pty pairs with queued data inside the tree,
//! other terminals and character devices, file locks (CRIU's advice text
//! without `file_locks`), SysV shm and AIO mappings, processes in their own
//! mnt/net/pid/ipc/uts/user/cgroup namespace, nested time namespaces.
//!
//! Pre-dumps (`pre_dump`) write every live task's private memory while
//! frozen, resume the tree and write a pre-dump inventory. Dirty memory is
//! tracked with userfaultfd write-protection in async mode (these kernels
//! have no soft-dirty; see [`track`]): a pre-dump registers the tasks'
//! private VMAs and leaves the uffds with a keeper process; a pre-dump or
//! dump with `parent_img` takes them over and writes only the pages written
//! since, recording the others as PE_PARENT entries (`pages_skipped_parent`
//! in stats-dump). Shared memory is written whole every time. Without a
//! keeper (or with a page server) the dump is full.
//!
//! With [`DumpOptions::page_server`] the pages go to a CRIU 4.2 page server
//! (`criu page-server`, or CRIU's own) as CRIU sends them: OPEN2 per pagemap
//! (task pagemaps in pstree order, shmem pagemaps when their object is first
//! seen), one ADD_F with PE_PRESENT (| PE_LAZY) plus data per pagemap entry,
//! and CLOSE (FORCE_CLOSE on an adopted `ps.fd` socket) once the inventory
//! is written, before post-dump. The server writes `pagemap-*.img` and
//! `pages-*.img`; this side writes every other image and the same stats.
//!
//! Failure safety: on any error every task is resumed exactly as it was
//! (registers, signal mask, running or stopped), nothing is killed, and the
//! images directory holds no `inventory.img` (it is written last and removed
//! on failure). [`FailPoint`] injects failures at each stage for tests
//! (`DumpOptions::fail_at`, or the `CRIU_RS_FAIL_AT` environment variable).

#![deny(unsafe_code)]

mod core;
pub mod files;
pub mod ids;
pub mod pagepipe;
pub mod proc;
mod seccomp;
#[allow(unsafe_code)]
pub mod sys;
mod task;
pub mod thread;
pub mod track;

pub use pagepipe::PageServerAddr;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criu_compel::{freeze_tree, CompelError, FreezeOptions, FrozenTree};
use criu_image::{inventory, ImageDir, ImageError, ImageKind, PagemapError};
use criu_proto::{DumpStatsEntry, PstreeEntry, TaskKobjIdsEntry, TimensEntry, Timespec};

use crate::files::{FileError, FileTable};
use crate::ids::{IdError, NsIds};
use crate::proc::ProcError;
use crate::task::{Context, IdSpaces, PageCounters, TaskSummary};
use crate::thread::ThreadError;

/// The notify hook: called with an action name ("pre-dump", "post-dump")
/// and a pid; an `Err` fails the dump.
pub type NotifyHook<'a> = dyn FnMut(&str, Option<i32>) -> Result<(), String> + 'a;

/// A stage at which a failure can be injected (tests of failure safety).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// Right after the tree is frozen.
    Frozen,
    /// After the VMAs of a task were collected.
    Mappings,
    /// After the fds of a task were dumped.
    Files,
    /// After thread state was read (remote syscalls done).
    Threads,
    /// After the pages of a task were written.
    Pages,
    /// After every task, before the tree-wide images.
    Tasks,
    /// Just before inventory.img is written.
    Inventory,
    /// After inventory.img is written, before post-dump.
    PostInventory,
}

impl std::str::FromStr for FailPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "frozen" => FailPoint::Frozen,
            "mappings" => FailPoint::Mappings,
            "files" => FailPoint::Files,
            "threads" => FailPoint::Threads,
            "pages" => FailPoint::Pages,
            "tasks" => FailPoint::Tasks,
            "inventory" => FailPoint::Inventory,
            "post-inventory" => FailPoint::PostInventory,
            other => return Err(format!("unknown failure point {other:?}")),
        })
    }
}

/// What to dump and how.
#[derive(Debug)]
pub struct DumpOptions {
    /// Root of the tree to dump.
    pub pid: i32,
    /// Where the images go.
    pub images: ImageDir,
    /// Resume the tree after a successful dump (CRIU `-R`).
    pub leave_running: bool,
    /// Leave the tree stopped (SIGSTOP) after a successful dump; wins over `leave_running`.
    pub leave_stopped: bool,
    /// Allow a root that is not a session leader (CRIU `--shell-job`).
    pub shell_job: bool,
    /// Allow unix sockets connected outside the tree.
    pub ext_unix_sk: bool,
    /// Dump established TCP connections.
    pub tcp_established: bool,
    /// Dump file locks.
    pub file_locks: bool,
    /// Memory tracking for incremental dumps (recorded as dump_uptime).
    pub track_mem: bool,
    /// The `parent` images directory, relative to the images dir.
    pub parent_img: Option<String>,
    /// Inode of the RPC socket: a unix socket whose peer has this inode is the
    /// service socket (written closed with USK_SERVICE).
    pub service_socket_ino: Option<u64>,
    /// Freeze this cgroup before seizing.
    pub freeze_cgroup: Option<PathBuf>,
    /// Timeout for freezing.
    pub timeout: Option<Duration>,
    /// Pre-dump (memory only, the tree is always resumed).
    pub pre_dump: bool,
    /// Failure injection (tests); `CRIU_RS_FAIL_AT=<stage>` also sets it.
    pub fail_at: Option<FailPoint>,
    /// Send memory pages to this page server (`--page-server --address A
    /// --port P`, RPC `opts.ps`) instead of writing `pagemap-*.img` and
    /// `pages-*.img` here: the server writes both; every other image still
    /// goes to `images`.
    pub page_server: Option<PageServerAddr>,
}

impl DumpOptions {
    /// Default options for dumping `pid` into `images` (kill after dump).
    pub fn new(pid: i32, images: ImageDir) -> Self {
        Self {
            pid,
            images,
            leave_running: false,
            leave_stopped: false,
            shell_job: false,
            ext_unix_sk: false,
            tcp_established: false,
            file_locks: false,
            track_mem: false,
            parent_img: None,
            service_socket_ino: None,
            freeze_cgroup: None,
            timeout: None,
            pre_dump: false,
            fail_at: None,
            page_server: None,
        }
    }
}

/// What a successful dump did.
#[derive(Debug, Clone, Default)]
pub struct DumpReport {
    /// Dumped processes, pre-order.
    pub pids: Vec<i32>,
    /// Time spent freezing.
    pub freezing_time: Duration,
    /// Time the tree stayed frozen.
    pub frozen_time: Duration,
    /// Pages written to pages images.
    pub pages_written: u64,
    /// Pages scanned.
    pub pages_scanned: u64,
    /// Pages left in the parent images (PE_PARENT entries).
    pub pages_skipped_parent: u64,
    /// Time spent dumping private memory, all processes together (stats-dump memdump_time).
    pub memdump_time: Duration,
    /// The part of it spent storing pages (stats-dump memwrite_time).
    pub memwrite_time: Duration,
    /// Pages stored straight into their place in a mapped region of the pages image (large dumps
    /// to tmpfs); part of `pages_written`.
    pub pages_filled_in_place: u64,
    /// Of `pages_filled_in_place`, those the dumping thread `pwrite`s there while its helpers
    /// fill the rest through the mapping (`criu_pages::PageReader::read_into`).
    pub pages_written_in_place: u64,
}

/// Why a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The pid does not exist.
    #[error("No process with pid {pid} to dump.")]
    NoSuchProcess {
        /// pid.
        pid: i32,
    },
    /// We are part of the tree.
    #[error("The criu itself is within dumped tree (pid {pid}).")]
    CriuInsideTree {
        /// Our pid.
        pid: i32,
    },
    /// The root is not a session leader and shell_job is off.
    #[error("The root process {pid} is not a session leader. Consider using --shell-job option")]
    NotSessionLeader {
        /// Root pid.
        pid: i32,
    },
    /// Something in the tree cannot be dumped yet.
    #[error("Cannot dump pid {pid}: {what} is not supported yet.")]
    Unsupported {
        /// Owner.
        pid: i32,
        /// What.
        what: String,
    },
    /// A process has no live thread.
    #[error("Process {pid} has no live thread to dump.")]
    NoThreads {
        /// pid.
        pid: i32,
    },
    /// A ptrace-level operation failed.
    #[error("Cannot dump pid {pid}: {what}: {source}")]
    Compel {
        /// pid.
        pid: i32,
        /// What was being done.
        what: String,
        /// Cause.
        source: CompelError,
    },
    /// Freezing the tree failed.
    #[error("Cannot freeze the process tree of pid {pid}: {source}")]
    Freeze {
        /// Root pid.
        pid: i32,
        /// Cause.
        source: CompelError,
    },
    /// Memory scanning or reading.
    #[error("Cannot dump memory of pid {pid}: {what}: {source}")]
    Pages {
        /// pid.
        pid: i32,
        /// What was being done.
        what: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A thread.
    #[error("Cannot dump a thread: {0}")]
    Thread(#[from] ThreadError),
    /// A file.
    #[error("{0}")]
    File(#[from] FileError),
    /// /proc.
    #[error("Cannot dump: {0}")]
    Proc(#[from] ProcError),
    /// seccomp filters.
    #[error("Cannot dump seccomp state: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
    /// Ids.
    #[error("Cannot compute object ids: {0}")]
    Id(#[from] IdError),
    /// Image writing.
    #[error("Cannot write images: {0}")]
    Image(#[from] ImageError),
    /// Pagemap writing.
    #[error("Cannot write pages: {0}")]
    Pagemap(#[from] PagemapError),
    /// Storing pages (images or page server).
    #[error("Cannot store pages: {0}")]
    PagesOut(#[from] pagepipe::PagesOutError),
    /// Inventory/stats writing.
    #[error("Cannot write the inventory: {0}")]
    Inventory(#[from] inventory::InventoryError),
    /// Another OS call.
    #[error("Cannot dump: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A notify hook refused.
    #[error("The {action} notification failed: {message}")]
    Notify {
        /// Action name.
        action: String,
        /// The client's message.
        message: String,
    },
    /// An injected failure.
    #[error("Injected failure at stage {stage:?}.")]
    Injected {
        /// Where.
        stage: FailPoint,
    },
    /// Resuming or killing the tree after the dump failed.
    #[error("Cannot {what} the dumped tree: {source}")]
    Finish {
        /// kill/resume/stop.
        what: &'static str,
        /// Cause.
        source: CompelError,
    },
}

impl DumpError {
    /// The errno to report (RPC `cr_errno`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            DumpError::NoSuchProcess { .. } => Some(libc::ESRCH),
            DumpError::Freeze { source, .. } => match source {
                CompelError::NoSuchProcess { .. } => Some(libc::ESRCH),
                other => other.errno(),
            },
            DumpError::Compel { source, .. } | DumpError::Finish { source, .. } => source.errno(),
            DumpError::Thread(e) => e.errno(),
            DumpError::Proc(e) => e.raw_os_error(),
            DumpError::Io { source, .. } => source.raw_os_error(),
            DumpError::Image(e) => e.raw_os_error(),
            DumpError::PagesOut(pagepipe::PagesOutError::Connect { source, .. })
            | DumpError::PagesOut(pagepipe::PagesOutError::Socket { source, .. }) => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}

fn notify(hook: &mut NotifyHook<'_>, action: &str) -> Result<(), DumpError> {
    hook(action, None).map_err(|message| DumpError::Notify {
        action: action.to_string(),
        message,
    })
}

fn fail_point_from_env() -> Option<FailPoint> {
    std::env::var("CRIU_RS_FAIL_AT").ok()?.parse().ok()
}

/// Reads our own cgroup membership and the task's; equal sets get id 1 (criu's own).
fn cgroup_set(pid: i32) -> u32 {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if own != theirs {
        tracing::warn!(
            "Process {pid} is in other cgroups than criu; cgroup.img is not written yet, the restored tree will live in the restorer's cgroups."
        );
    }
    1
}

fn timespec(clock: nix::time::ClockId) -> Result<Timespec, DumpError> {
    let ts = nix::time::clock_gettime(clock).map_err(|e| DumpError::Io {
        what: "clock_gettime".into(),
        source: e.into(),
    })?;
    Ok(Timespec {
        tv_sec: ts.tv_sec() as u64,
        tv_nsec: ts.tv_nsec() as u64,
    })
}

/// Offsets of a time namespace, (monotonic, boottime) in nanoseconds.
fn timens_offsets(pid: i32) -> Result<(i128, i128), DumpError> {
    let path = format!("/proc/{pid}/timens_offsets");
    let text = proc::read_text(path.clone())?;
    let mut out = (0i128, 0i128);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let secs: i128 = f[1].parse().unwrap_or(0);
        let nsecs: i128 = f[2].parse().unwrap_or(0);
        let total = secs * 1_000_000_000 + nsecs;
        match f[0] {
            "monotonic" | "1" => out.0 = total,
            "boottime" | "7" => out.1 = total,
            _ => {}
        }
    }
    Ok(out)
}

fn shift(ts: &mut Timespec, offset_ns: i128) {
    let total = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec) + offset_ns;
    let total = total.max(0);
    ts.tv_sec = (total / 1_000_000_000) as u64;
    ts.tv_nsec = (total % 1_000_000_000) as u64;
}

fn root_ids(ns: &ids::TaskNsIds) -> TaskKobjIdsEntry {
    ids::kobj_ids_entry(1, 1, 1, 1, ns)
}

fn run_id() -> String {
    // A random v4-style UUID from /dev/urandom (CRIU's run id is a uuid).
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Dumps the tree rooted at `opts.pid`. `notify` is called with "pre-dump"
/// at the start and "post-dump" once the images are written; an `Err` from
/// it fails the dump (the tree is then resumed).
pub fn dump(opts: &DumpOptions, notify_hook: &mut NotifyHook<'_>) -> Result<DumpReport, DumpError> {
    let result = dump_inner(opts, notify_hook);
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result
}

fn dump_inner(
    opts: &DumpOptions,
    notify_hook: &mut NotifyHook<'_>,
) -> Result<DumpReport, DumpError> {
    let pid = opts.pid;
    if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::NoSuchProcess { pid });
    }
    if opts.pre_dump {
        return pre_dump_inner(opts);
    }
    notify(notify_hook, "pre-dump")?;
    let fail_at = opts.fail_at.or_else(fail_point_from_env);
    // A stale inventory from an earlier dump must not make a failed dump look valid.
    remove_inventory(&opts.images);

    let me = std::process::id() as i32;
    let (ns, own_ns) = NsIds::new(me)?;
    let id_spaces = IdSpaces::new(me, ns);
    if let Some(parent) = &opts.parent_img {
        opts.images.set_parent(parent)?;
    }
    // Like CRIU: connect before freezing, so an unreachable server costs nothing.
    let page_store = page_store(opts)?;
    // The uffds end with this dump (closed when `ctx` drops, whatever happens).
    let tracking = parent_tracking(opts);

    let (mut tree, freezing_time) = freeze(opts)?;
    let frozen_start = Instant::now();

    let shmem_dir = opts
        .images
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| DumpError::Io {
            what: "duplicating the images directory fd".into(),
            source,
        })
        .and_then(|fd| Ok(ImageDir::from_fd(fd)?));
    let shmem_dir = match shmem_dir {
        Ok(dir) => dir,
        Err(e) => {
            let _ = tree.resume();
            return Err(e);
        }
    };
    let mut ctx = Context {
        images: &opts.images,
        ids: id_spaces,
        files: FileTable::default(),
        page_store: page_store.clone(),
        pages: PageCounters::default(),
        cg_set: cgroup_set(pid),
        fail_at,
        seccomp: Default::default(),
        own_ns,
        time_ns: None,
        tracking,
        track_new: false,
        unmapping: Default::default(),
    };
    ctx.tracking.retain_pids(&tree.pids());
    ctx.files.unix.service_ino = opts.service_socket_ino;
    ctx.files.unix.ext_unix_sk = opts.ext_unix_sk;
    ctx.files.file_locks = opts.file_locks;
    ctx.files.tcp_established = opts.tcp_established;
    ctx.files.shmem = Some(files::ShmemOut {
        images: shmem_dir,
        store: page_store.clone(),
        scanned: 0,
        written: 0,
        pipes: 0,
        pipe_bufs: 0,
    });
    let dumped = dump_frozen(opts, &mut ctx, &mut tree, &own_ns).and_then(|pids| {
        // CRIU ends the page-server session after the inventory and before
        // post-dump: the server's answer confirms the pages are stored.
        page_store.close()?;
        notify(notify_hook, "post-dump")?;
        Ok(pids)
    });
    let pids = match dumped {
        Ok(pids) => pids,
        Err(e) => {
            close_after_failure(&page_store);
            remove_inventory(&opts.images);
            for socket in ctx.files.repaired.drain(..) {
                socket.release();
            }
            if let Err(resume) = tree.resume() {
                tracing::error!("Cannot resume the tree after a failed dump: {resume}");
            }
            return Err(e);
        }
    };
    let frozen_time = frozen_start.elapsed();
    tracing::info!(
        "The tree was frozen for {:.1} ms",
        frozen_time.as_secs_f64() * 1e3
    );

    // Connections leave repair mode before a resumed task can use them; for
    // a killed tree they stay in repair mode and close silently when dropped.
    let repaired = std::mem::take(&mut ctx.files.repaired);
    let resumes = opts.leave_running || opts.leave_stopped;
    let repaired = if resumes {
        for socket in repaired {
            socket.release();
        }
        Vec::new()
    } else {
        repaired
    };
    finish_tree(opts, tree)?;
    drop(repaired);

    let shmem = ctx.files.shmem.as_ref();
    let (stats, report) = dump_results(pids, freezing_time, frozen_time, &ctx.pages, shmem);
    inventory::write_dump_stats(&opts.images, &stats)?;
    Ok(report)
}

/// The parent's tracking when dumping on top of a parent into local images:
/// with a page server the parent's pagemaps are not here to check against,
/// so such dumps stay full.
fn parent_tracking(opts: &DumpOptions) -> track::Tracking {
    if opts.parent_img.is_none() {
        return track::Tracking::new();
    }
    if opts.page_server.is_some() {
        tracing::info!("No memory tracking with a page server: dumping every page");
        return track::Tracking::new();
    }
    track::Tracking::from_parent_keeper(&opts.images)
}

/// A stats-dump time field: microseconds in a u32, as CRIU stores them; a dump frozen for more than
/// 71 minutes reads as the maximum instead of wrapping to a small number.
fn saturating_micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// Freezes the tree of `opts.pid` as the options say, logs what was frozen, and returns the
/// tree and how long freezing took.
fn freeze(opts: &DumpOptions) -> Result<(FrozenTree, Duration), DumpError> {
    let started = Instant::now();
    let mut freeze_opts = FreezeOptions {
        freezer: opts.freeze_cgroup.clone(),
        ..FreezeOptions::default()
    };
    if let Some(t) = opts.timeout {
        freeze_opts.timeout = t;
    }
    let pid = opts.pid;
    let tree = freeze_tree(pid, &freeze_opts).map_err(|source| match source {
        CompelError::NoSuchProcess { pid } => DumpError::NoSuchProcess { pid },
        CompelError::CriuInsideTree { pid } => DumpError::CriuInsideTree { pid },
        source => DumpError::Freeze { pid, source },
    })?;
    let took = started.elapsed();
    let threads: usize = tree.tasks.iter().map(|task| task.threads.len()).sum();
    tracing::info!(
        "Froze the tree: {} processes, {} threads, in {:.1} ms",
        tree.tasks.len(),
        threads,
        took.as_secs_f64() * 1e3
    );
    Ok((tree, took))
}

/// stats-dump and the report of a dump or pre-dump that froze the tree for `frozen_time`
/// (`freezing_time` to freeze it), with the shared memory's counters (`shmem`, none for a
/// pre-dump) beside the private memory's (`counters`).
fn dump_results(
    pids: Vec<i32>,
    freezing_time: Duration,
    frozen_time: Duration,
    counters: &task::PageCounters,
    shmem: Option<&files::ShmemOut>,
) -> (DumpStatsEntry, DumpReport) {
    let (shpages_scanned, shpages_written, sh_pipes, sh_bufs) = shmem.map_or((0, 0, 0, 0), |s| {
        (s.scanned, s.written, s.pipes, s.pipe_bufs)
    });
    let stats = DumpStatsEntry {
        freezing_time: saturating_micros(freezing_time),
        frozen_time: saturating_micros(frozen_time),
        memdump_time: saturating_micros(counters.memdump),
        memwrite_time: saturating_micros(counters.memwrite),
        pages_scanned: counters.scanned,
        pages_skipped_parent: counters.skipped_parent,
        pages_written: counters.written,
        irmap_resolve: Some(0),
        pages_lazy: 0,
        page_pipes: Some(counters.pipes + sh_pipes),
        page_pipe_bufs: Some(counters.pipe_bufs + sh_bufs),
        shpages_scanned: Some(shpages_scanned),
        shpages_skipped_parent: Some(0),
        shpages_written: Some(shpages_written),
    };
    let report = DumpReport {
        pids,
        freezing_time,
        frozen_time,
        pages_written: counters.written,
        pages_scanned: counters.scanned,
        pages_skipped_parent: counters.skipped_parent,
        memdump_time: counters.memdump,
        memwrite_time: counters.memwrite,
        pages_filled_in_place: counters.filled_in_place,
        pages_written_in_place: counters.written_in_place,
    };
    (stats, report)
}

/// Pre-dump: freeze, write every live task's private memory (only what
/// changed since the parent when its keeper hands tracking over), register
/// what is not tracked yet, resume (always), then a pre-dump inventory
/// (img_version 0, uptime, pre-dump mode 1 = splice) and stats-dump, and
/// finally hand the uffds to a keeper for the next iteration. No
/// notifications, like CRIU.
fn pre_dump_inner(opts: &DumpOptions) -> Result<DumpReport, DumpError> {
    let fail_at = opts.fail_at.or_else(fail_point_from_env);
    remove_inventory(&opts.images);
    if let Some(parent) = &opts.parent_img {
        opts.images.set_parent(parent)?;
    }
    let me = std::process::id() as i32;
    let (ns, own_ns) = NsIds::new(me)?;
    let page_store = page_store(opts)?;
    let tracking = parent_tracking(opts);
    let (mut tree, freezing_time) = freeze(opts)?;
    let frozen_start = Instant::now();
    let mut ctx = Context {
        images: &opts.images,
        ids: IdSpaces::new(me, ns),
        files: FileTable::default(),
        page_store: page_store.clone(),
        pages: PageCounters::default(),
        cg_set: 1,
        fail_at,
        seccomp: Default::default(),
        own_ns,
        time_ns: None,
        tracking,
        // A page server keeps the pages elsewhere: no tracking against them.
        track_new: opts.page_server.is_none(),
        unmapping: Default::default(),
    };
    ctx.tracking.retain_pids(&tree.pids());
    let result = (|| -> Result<(), DumpError> {
        ctx.check_fail(FailPoint::Frozen)?;
        for task in tree.tasks.iter_mut().filter(|t| !t.zombie) {
            task::pre_dump_task(&mut ctx, task)?;
        }
        ctx.check_fail(FailPoint::Pages)
    })();
    let frozen_time = frozen_start.elapsed();
    let pids = tree.pids();
    let resumed = tree.resume();
    let result = result.and_then(|()| Ok(page_store.close()?));
    if let Err(e) = result {
        close_after_failure(&page_store);
        remove_inventory(&opts.images);
        if let Err(r) = resumed {
            tracing::error!("Cannot resume the tree after a failed pre-dump: {r}");
        }
        return Err(e);
    }
    resumed.map_err(|source| DumpError::Finish {
        what: "resume",
        source,
    })?;
    ctx.check_fail(FailPoint::Inventory)?;
    let inv = inventory::pre_dump_inventory(Some(proc::read_uptime_us()?), 1);
    inventory::write_inventory(&opts.images, &inv)?;
    // A pre-dump leaves shared memory to the dump (CRIU too).
    let (stats, report) = dump_results(pids, freezing_time, frozen_time, &ctx.pages, None);
    inventory::write_dump_stats(&opts.images, &stats)?;
    // Only a complete pre-dump passes tracking on; on every error path above
    // `ctx` drops and the uffds close, which ends tracking.
    std::mem::take(&mut ctx.tracking).hand_to_keeper(&opts.images);
    Ok(report)
}

/// The pagemaps' destination: the page server when one is given.
fn page_store(opts: &DumpOptions) -> Result<pagepipe::PageStore, DumpError> {
    Ok(match &opts.page_server {
        Some(addr) => pagepipe::PageStore::server(addr)?,
        None => pagepipe::PageStore::images(opts.images.clone()),
    })
}

/// CRIU ends the page-server session on failure too (the dump's own result
/// tells whether the images are usable); a broken connection is only logged.
fn close_after_failure(store: &pagepipe::PageStore) {
    if let Err(e) = store.close() {
        tracing::warn!("Cannot end the page-server session after a failed dump: {e}");
    }
}

fn remove_inventory(images: &ImageDir) {
    if let Err(e) = images.remove(ImageKind::Inventory, 0) {
        if e.raw_os_error() != Some(libc::ENOENT) {
            tracing::warn!("Cannot remove a stale inventory.img: {e}");
        }
    }
}

/// Kills, resumes or stops the tree as asked, after a successful dump.
fn finish_tree(opts: &DumpOptions, tree: FrozenTree) -> Result<(), DumpError> {
    if opts.leave_stopped {
        for task in &tree.tasks {
            if !task.zombie {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(task.pid),
                    nix::sys::signal::Signal::SIGSTOP,
                );
            }
        }
        return tree.resume().map_err(|source| DumpError::Finish {
            what: "stop",
            source,
        });
    }
    if opts.leave_running {
        return tree.resume().map_err(|source| DumpError::Finish {
            what: "resume",
            source,
        });
    }
    let report = tree.kill().map_err(|source| DumpError::Finish {
        what: "kill",
        source,
    })?;
    tracing::debug!(
        released = report.address_spaces_released,
        already_freed = report.already_freed,
        "tree killed; memory freed alongside the exits"
    );
    Ok(())
}

/// Everything done while the tree is frozen; returns the dumped pids.
fn dump_frozen(
    opts: &DumpOptions,
    ctx: &mut Context<'_>,
    tree: &mut FrozenTree,
    own_ns: &ids::TaskNsIds,
) -> Result<Vec<i32>, DumpError> {
    ctx.check_fail(FailPoint::Frozen)?;
    let root = opts.pid;
    let root_stat = proc::read_stat(root)?;
    if root_stat.sid != root && !opts.shell_job {
        return Err(DumpError::NotSessionLeader { pid: root });
    }

    let layout = seccomp::collect(tree)?;
    ctx.seccomp = layout.threads;
    let mut summaries: Vec<(i32, i32, Option<TaskSummary>, bool)> = Vec::new();
    for task in tree.tasks.iter_mut() {
        if task.zombie {
            summaries.push((task.pid, task.ppid, None, true));
            continue;
        }
        let summary = task::dump_task(ctx, task)?;
        summaries.push((task.pid, task.ppid, Some(summary), false));
    }
    ctx.check_fail(FailPoint::Tasks)?;

    // Zombies: only stat is left; CRIU needs their pgid/sid.
    let mut pstree = Vec::with_capacity(summaries.len());
    for (pid, ppid, summary, zombie) in &summaries {
        let ppid = if *pid == root { 0 } else { *ppid as u32 };
        if *zombie {
            let st = proc::read_stat(*pid)?;
            ctx.write_one(
                ImageKind::Core,
                *pid as u64,
                &crate::core::zombie_core(&st.comm, st.exit_code as u32),
            )?;
            pstree.push(PstreeEntry {
                pid: *pid as u32,
                ppid,
                pgid: st.pgid as u32,
                sid: st.sid as u32,
                threads: vec![*pid as u32],
            });
        } else if let Some(s) = summary {
            pstree.push(PstreeEntry {
                pid: s.pid as u32,
                ppid,
                pgid: s.pgid as u32,
                sid: s.sid as u32,
                threads: s.threads.iter().map(|&t| t as u32).collect(),
            });
        }
    }
    let mut w = ctx.images.writer(ImageKind::Pstree, 0)?;
    for e in &pstree {
        w.write_entry(e)?;
    }
    w.finish()?;

    let mut timens = TimensEntry {
        monotonic: timespec(nix::time::ClockId::CLOCK_MONOTONIC)?,
        boottime: timespec(nix::time::ClockId::CLOCK_BOOTTIME)?,
    };
    match ctx.time_ns {
        // The tree's clocks as seen inside its time namespace.
        Some((id, pid)) => {
            let (mono, boot) = timens_offsets(pid)?;
            shift(&mut timens.monotonic, mono);
            shift(&mut timens.boottime, boot);
            ctx.write_one(ImageKind::Timens, u64::from(id), &timens)?;
        }
        None => ctx.write_one(ImageKind::Timens, 0, &timens)?,
    }
    ctx.write_one(ImageKind::Seccomp, 0, &layout.image)?;

    let tree_pids: Vec<i32> = summaries.iter().map(|s| s.0).collect();
    ctx.files.finish_ttys(&tree_pids, opts.shell_job)?;
    write_files(ctx)?;

    ctx.check_fail(FailPoint::Inventory)?;
    let dump_uptime = if opts.track_mem {
        Some(proc::read_uptime_us()?)
    } else {
        None
    };
    let inv = inventory::DumpInventory {
        root_ids: root_ids(own_ns),
        root_cg_set: Some(1),
        lsmtype: criu_proto::Lsmtype::NoLsm,
        // We take no network lock; say so when it matters (connections).
        network_lock: if ctx.files.tcp_streams.is_empty() {
            inventory::NetworkLockMethod::Iptables
        } else {
            inventory::NetworkLockMethod::Skip
        },
        criu_run_id: run_id(),
        tcp_close: false,
        dump_uptime,
        plugins: Vec::new(),
        allow_uprobes: false,
    };
    inventory::write_inventory(ctx.images, &inv.to_entry())?;
    ctx.check_fail(FailPoint::PostInventory)?;
    Ok(summaries.iter().map(|s| s.0).collect())
}

fn write_files(ctx: &mut Context<'_>) -> Result<(), DumpError> {
    ctx.files.finish_unix()?;
    if !ctx.files.entries.is_empty() {
        let mut w = ctx.images.writer(ImageKind::Files, 0)?;
        for e in &ctx.files.entries {
            w.write_entry(e)?;
        }
        w.finish()?;
    }
    if !ctx.files.memfd_inode_entries.is_empty() {
        let mut w = ctx.images.writer(ImageKind::MemfdInode, 0)?;
        for e in &ctx.files.memfd_inode_entries {
            w.write_entry(e)?;
        }
        w.finish()?;
    }
    if !ctx.files.ttys.infos.is_empty() {
        let mut w = ctx.images.writer(ImageKind::TtyInfo, 0)?;
        for e in &ctx.files.ttys.infos {
            w.write_entry(e)?;
        }
        w.finish()?;
    }
    for (ino, entry, inq, outq) in &ctx.files.tcp_streams {
        let mut w = ctx.images.writer(ImageKind::TcpStream, u64::from(*ino))?;
        w.write_entry(entry)?;
        w.write_extra(inq)?;
        w.write_extra(outq)?;
        w.finish()?;
    }
    if !ctx.files.remaps.is_empty() {
        let mut w = ctx.images.writer(ImageKind::RemapFpath, 0)?;
        for e in &ctx.files.remaps {
            w.write_entry(e)?;
        }
        w.finish()?;
    }
    if !ctx.files.unix.queues.is_empty() {
        let mut w = ctx.images.writer(ImageKind::SkQueues, 0)?;
        for (e, data) in &ctx.files.unix.queues {
            w.write_entry(e)?;
            w.write_extra(data)?;
        }
        w.finish()?;
    }
    if !ctx.files.fifo_data.is_empty() {
        let mut w = ctx.images.writer(ImageKind::FifoData, 0)?;
        for (e, data) in &ctx.files.fifo_data {
            w.write_entry(e)?;
            w.write_extra(data)?;
        }
        w.finish()?;
    }
    if !ctx.files.pipe_data.is_empty() {
        let mut w = ctx.images.writer(ImageKind::PipesData, 0)?;
        for (e, data) in &ctx.files.pipe_data {
            w.write_entry(e)?;
            w.write_extra(data)?;
        }
        w.finish()?;
    }
    Ok(())
}
