//! The restore engine: brings a dumped process tree back, with the same pids
//! and tids, driven entirely from the tracer by ptrace remote system calls
//! (no restorer blob is injected).
//!
//! The order of a restore (see `docs/architecture.md`):
//! 1. every image is read and validated, every file is opened in the tracer:
//!    a bad or unsupported dump is refused while no process exists;
//! 2. the root is cloned with `clone3(set_tid)`, every other task is cloned
//!    inside its parent by a remote clone3; sessions, groups and zombies;
//! 3. per task: memory (unmap the blank copy, move the vdso, map every VMA,
//!    fill pages with one remote `preadv` per contiguous run, PR_SET_MM_MAP),
//!    threads (remote clone3 with CLONE_THREAD and set_tid), fds, cwd/root,
//!    signal actions, timers, rlimits, per-thread state;
//! 4. a shell job's terminal gets the job's group as its foreground group;
//!    seccomp filters (before the credentials, as CRIU does: installing one
//!    may need CAP_SYS_ADMIN; the threads are traced with
//!    PTRACE_O_SUSPEND_SECCOMP so the remaining remote calls are not
//!    filtered); credentials, then the dumpable flag (a uid change resets
//!    it); pending signals; final registers (the trampoline is unmapped under
//!    PTRACE_SYSCALL); detach.
//!
//! Any failure after the first task exists kills and reaps every task
//! created so far: nothing half-restored remains.
//!
//! ```no_run
//! use criu_image::ImageDir;
//! use criu_restore::{restore, RestoreOptions};
//!
//! let opts = RestoreOptions::new(ImageDir::open("/tmp/dump").unwrap());
//! let report = restore(&opts, &mut |action, pid| {
//!     println!("{action} {pid:?}");
//!     Ok(())
//! })
//! .unwrap();
//! println!("restored {}", report.root_pid);
//! ```
#![deny(unsafe_code)]

mod anon;
mod files;
mod images;
mod layout;
mod memory;
#[allow(unsafe_code)]
mod sys;
mod task;
mod tree;
mod tty;
mod unix;
mod vdso;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criu_image::ImageDir;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

pub use files::FileError;
pub use images::ImageLoadError;
pub use layout::LayoutError;
pub use memory::{MemoryError, PageFill};
pub use task::RemoteError;
pub use tree::TreeError;

use images::{RestoreImages, TaskState};
use task::Proc;
use tree::SessionStep;

/// The stages a restore can be made to fail at, for testing that a failure
/// leaves nothing behind (`RestoreOptions::fail_at`, or the environment
/// variable `CRIU_RS_RESTORE_FAIL_AT=<stage>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStage {
    /// After the images are read, before any process exists.
    Images,
    /// Right after the root task is cloned.
    Root,
    /// After every task of the tree exists.
    Tree,
    /// After the first task's memory is restored.
    Memory,
    /// After the threads of the first task exist.
    Threads,
    /// After the fds of the first task are installed.
    Fds,
    /// After credentials are restored.
    Creds,
    /// Just before the tasks are resumed.
    PreResume,
}

impl FailStage {
    /// Every stage, in restore order.
    pub const ALL: [FailStage; 8] = [
        FailStage::Images,
        FailStage::Root,
        FailStage::Tree,
        FailStage::Memory,
        FailStage::Threads,
        FailStage::Fds,
        FailStage::Creds,
        FailStage::PreResume,
    ];

    /// The name used by `CRIU_RS_RESTORE_FAIL_AT`.
    pub fn name(self) -> &'static str {
        match self {
            FailStage::Images => "images",
            FailStage::Root => "root",
            FailStage::Tree => "tree",
            FailStage::Memory => "memory",
            FailStage::Threads => "threads",
            FailStage::Fds => "fds",
            FailStage::Creds => "creds",
            FailStage::PreResume => "pre-resume",
        }
    }

    /// Parses a stage name.
    pub fn from_name(name: &str) -> Option<FailStage> {
        FailStage::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What to restore and how.
#[derive(Debug)]
pub struct RestoreOptions {
    /// The images directory.
    pub images: ImageDir,
    /// `--restore-detached`. The engine never waits for the restored tree: with
    /// `false` the caller waits for the root (it is the caller's child).
    pub detach: bool,
    /// `--shell-job`: the root may be outside its dumped session; it stays in
    /// the caller's session and process group. Its terminal (a pty slave of
    /// a session outside the dump) is the caller's stdin terminal, which gets
    /// the dumped termios and window size and the job's group in the
    /// foreground.
    pub shell_job: bool,
    /// Leave every task stopped (SIGSTOP) instead of running.
    pub leave_stopped: bool,
    /// Write the root pid here.
    pub pidfile: Option<PathBuf>,
    /// Restore the root as a sibling of the caller (CLONE_PARENT).
    pub rst_sibling: bool,
    /// `--inherit-fd`: files whose key (a path, or `pipe:[ino]`) matches are
    /// replaced by these fds.
    pub inherit_fd: Vec<(String, OwnedFd)>,
    /// How page contents are written.
    pub page_fill: PageFill,
    /// Put the tree in a new time namespace whose CLOCK_MONOTONIC and
    /// CLOCK_BOOTTIME continue from the dumped values (timens-0.img), as CRIU
    /// does; without it those clocks jump forward by the downtime.
    pub time_namespace: bool,
    /// Fail on purpose at a stage (testing).
    pub fail_at: Option<FailStage>,
}

impl RestoreOptions {
    /// Options with defaults: not detached, no shell job, running at the end.
    pub fn new(images: ImageDir) -> RestoreOptions {
        RestoreOptions {
            images,
            detach: false,
            shell_job: false,
            leave_stopped: false,
            pidfile: None,
            rst_sibling: false,
            inherit_fd: Vec::new(),
            page_fill: PageFill::default(),
            time_namespace: true,
            fail_at: None,
        }
    }
}

/// The restored tree.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The root task's pid.
    pub root_pid: i32,
    /// Every restored pid (zombies included), in tree order.
    pub pids: Vec<i32>,
    /// Wall time of the restore, from reading images to detaching.
    pub elapsed: Duration,
}

/// A restore failed; no task of the dump is left behind.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The images are unreadable, inconsistent or hold an unsupported state.
    #[error(transparent)]
    Images(#[from] ImageLoadError),
    /// The tree cannot be rebuilt, or a pid is taken.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A file could not be opened or installed.
    #[error(transparent)]
    Files(#[from] FileError),
    /// The address space plan failed (e.g. another kernel's vdso).
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Memory of a task could not be restored.
    #[error("restoring the memory of pid {pid}: {source}")]
    Memory {
        /// The task.
        pid: i32,
        /// What failed.
        #[source]
        source: MemoryError,
    },
    /// A remote call failed while restoring a task.
    #[error("restoring pid {pid}: {source}")]
    Task {
        /// The task.
        pid: i32,
        /// What failed.
        #[source]
        source: RemoteError,
    },
    /// Resource limits could not be set.
    #[error("setting the resource limits of pid {pid}: {errno}")]
    Rlimits {
        /// The task.
        pid: i32,
        /// The error.
        errno: Errno,
    },
    /// A notify hook refused to continue.
    #[error("the {action} notify hook failed: {message}")]
    Notify {
        /// The action.
        action: &'static str,
        /// What the hook said.
        message: String,
    },
    /// The pidfile could not be written.
    #[error("writing the pidfile {path}: {source}")]
    Pidfile {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A restored thread could not get back the CPU affinity the tracer had
    /// before it pinned itself (and the tasks it created) to one CPU.
    #[error("pid {pid}: giving thread {tid} the tracer's CPU affinity back (pinned to CPU {cpu}): {source}")]
    Affinity {
        /// The task.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The CPU it was pinned to.
        cpu: usize,
        /// The error of sched_setaffinity.
        #[source]
        source: std::io::Error,
    },
    /// A failure injected on purpose (`fail_at`).
    #[error("restore failed on purpose at stage {}", .0.name())]
    Injected(FailStage),
}

impl RestoreError {
    /// The errno for RPC `cr_errno`: EEXIST when a pid is taken, EINVAL for bad
    /// images, EOPNOTSUPP for states not supported, else the underlying errno.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RestoreError::Tree(TreeError::PidTaken { .. }) => Some(libc::EEXIST),
            RestoreError::Tree(TreeError::Sessions(_)) => Some(libc::EOPNOTSUPP),
            RestoreError::Tree(TreeError::PidAboveMax { .. }) => Some(libc::EINVAL),
            RestoreError::Images(ImageLoadError::Unsupported { .. }) => Some(libc::EOPNOTSUPP),
            RestoreError::Images(_) => Some(libc::EINVAL),
            RestoreError::Layout(LayoutError::VdsoMismatch { .. }) => Some(libc::EOPNOTSUPP),
            RestoreError::Files(FileError::Changed { .. }) => Some(libc::EINVAL),
            RestoreError::Files(FileError::Open { errno, .. }) => Some(*errno as i32),
            RestoreError::Rlimits { errno, .. } => Some(*errno as i32),
            RestoreError::Affinity { source, .. } => source.raw_os_error(),
            RestoreError::Task {
                source: RemoteError::Syscall { errno, .. },
                ..
            } => Some(*errno as i32),
            _ => None,
        }
    }
}

type Notify<'a> = &'a mut dyn FnMut(&str, Option<i32>) -> Result<(), String>;

fn notify_hook(
    notify: Notify<'_>,
    action: &'static str,
    pid: Option<i32>,
) -> Result<(), RestoreError> {
    debug!(action, ?pid, "notify");
    notify(action, pid).map_err(|message| RestoreError::Notify { action, message })
}

/// Restores the tree dumped in `opts.images`. Returns once every task runs
/// (or is stopped, with `leave_stopped`); the engine never waits for them.
pub fn restore(opts: &RestoreOptions, notify: Notify<'_>) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let fail_at = opts.fail_at.or_else(|| {
        std::env::var("CRIU_RS_RESTORE_FAIL_AT")
            .ok()
            .and_then(|s| FailStage::from_name(&s))
    });
    let images = images::load(&opts.images)?;
    images::check_ttys(&images, opts.shell_job)?;
    let sessions = tree::plan_sessions(&images, opts.shell_job)?;
    tree::check_pids_free(&images)?;
    if let Some(running) = layout::VdsoLayout::from_maps(&layout::read_maps("self")?) {
        memory::check_vdso_contents(&images, &running)?;
    }
    let files = files::TracerFiles::open_all(&opts.images, &images, &opts.inherit_fd)?;
    let transport = tree::Transport::new()?;
    debug!(elapsed = ?started.elapsed(), tasks = images.tasks.len(), "images loaded and files opened");
    if fail_at == Some(FailStage::Images) {
        return Err(RestoreError::Injected(FailStage::Images));
    }
    notify_hook(notify, "pre-restore", None)?;

    let forking_started = Instant::now();
    // The tracer runs pinned to its CPU for the whole restore, and the blank tasks, cloned from it,
    // inherit that single-CPU mask, as do their threads. Why: every remote call resumes a stopped
    // task and waits for its next stop; with the task on another CPU each resume is an
    // inter-processor interrupt and each stop wakes the tracer back, both exits to the hypervisor
    // in a VM, and they were most of a remote call's time (profile of a 100-process restore: the
    // ptrace resume and the scheduler took two thirds of the tracer's CPU). Pinned, a 100-thread
    // restore took 27 ms instead of 39 and a 100-process one 153 ms instead of 209 on our 2-CPU VM
    // (with both CPUs busy with other work: 37 ms instead of 429, 229 ms instead of 753). Each
    // restored thread gets the tracer's original mask back before it is detached (`Run::resume`);
    // the tracer gets its own back when this is dropped, at the end of the restore.
    let cpu_pin = criu_compel::CpuPin::current_cpu();
    let mut run = Run {
        images: &images,
        files: &files,
        transport: &transport,
        opts,
        fail_at,
        cpu_pin: cpu_pin.as_ref(),
        procs: Vec::new(),
        epolls_done: Default::default(),
    };
    let mut run_forking_time = Duration::ZERO;
    match run.restore_tree(
        &sessions,
        notify,
        &mut |d| run_forking_time = d,
        forking_started,
    ) {
        Ok(()) => {}
        Err(error) => {
            let killed = tree::kill_all(&mut run.procs);
            warn!(%error, ?killed, "restore failed; every task created was killed");
            return Err(error);
        }
    }
    files.remove_links();
    let root_pid = images.tasks[0].pid;
    let report = RestoreReport {
        root_pid,
        pids: images.tasks.iter().map(|t| t.pid).collect(),
        elapsed: started.elapsed(),
    };
    write_stats(&opts.images, &images, run_forking_time, report.elapsed);
    notify_hook(notify, "post-resume", Some(root_pid))?;
    info!(root_pid, tasks = report.pids.len(), elapsed = ?report.elapsed, "restored");
    Ok(report)
}

/// Writes `stats-restore` as CRIU does; a read-only images directory only
/// gets a debug message.
fn write_stats(dir: &ImageDir, images: &RestoreImages, forking: Duration, total: Duration) {
    let pages: u64 = images
        .tasks
        .iter()
        .flat_map(|t| &t.pages)
        .map(|r| r.nr_pages)
        .sum();
    let entry = criu_proto::StatsEntry {
        dump: None,
        restore: Some(criu_proto::RestoreStatsEntry {
            pages_compared: 0,
            pages_skipped_cow: 0,
            forking_time: forking.as_micros() as u32,
            restore_time: total.as_micros() as u32,
            pages_restored: Some(pages),
        }),
    };
    let result = dir
        .writer(criu_image::ImageKind::StatsRestore, 0)
        .and_then(|mut w| {
            w.write_entry(&entry)?;
            w.finish()
        });
    if let Err(e) = result {
        debug!(error = %e, "stats-restore not written");
    }
}

/// The state of one restore in progress.
struct Run<'a> {
    images: &'a RestoreImages,
    files: &'a files::TracerFiles,
    transport: &'a tree::Transport,
    opts: &'a RestoreOptions,
    fail_at: Option<FailStage>,
    /// The tracer and the tasks it creates share one CPU until the detach
    /// (see where `restore` pins the tracer).
    cpu_pin: Option<&'a criu_compel::CpuPin>,
    /// Every task created so far, tree order; alive tasks stay traced.
    procs: Vec<Proc>,
    /// Epolls whose watches are in place.
    epolls_done: std::collections::HashSet<u32>,
}

impl Run<'_> {
    fn inject(&self, stage: FailStage) -> Result<(), RestoreError> {
        if self.fail_at == Some(stage) {
            return Err(RestoreError::Injected(stage));
        }
        Ok(())
    }

    fn proc_index(&self, pid: i32) -> usize {
        self.procs
            .iter()
            .position(|p| p.pid == pid)
            .expect("parents are created before children")
    }

    fn restore_tree(
        &mut self,
        sessions: &[SessionStep],
        notify: Notify<'_>,
        forking_time: &mut dyn FnMut(Duration),
        forking_started: Instant,
    ) -> Result<(), RestoreError> {
        let images = self.images;
        let task_err = |pid: i32| move |source: RemoteError| RestoreError::Task { pid, source };

        // The tree of blank tasks, sessions first (a child inherits its
        // parent's session at clone time).
        let root = tree::spawn_root(
            images,
            self.transport,
            self.opts.rst_sibling,
            self.opts.time_namespace,
        )?;
        self.procs.push(root);
        self.inject(FailStage::Root)?;
        memory::shed_tracer_copy(&self.procs[0]).map_err(|source| RestoreError::Memory {
            pid: images.tasks[0].pid,
            source,
        })?;
        for (index, task) in images.tasks.iter().enumerate() {
            if index > 0 {
                let parent = &self.procs[self.proc_index(task.ppid)];
                let child = tree::spawn_child(parent, self.transport, task, index)?;
                self.procs.push(child);
            }
            if sessions[index] == SessionStep::Setsid {
                tree::setsid(&self.procs[index]).map_err(task_err(task.pid))?;
            }
        }
        self.restore_groups()?;
        forking_time(forking_started.elapsed());
        self.inject(FailStage::Tree)?;

        // Zombies exit now, before any parent restores its SIGCHLD action.
        for (index, task) in images.tasks.iter().enumerate() {
            if let TaskState::Zombie { .. } = task.state {
                let parent = &self.procs[self.proc_index(task.ppid)];
                tree::make_zombie(&self.procs[index], parent, task).map_err(task_err(task.pid))?;
            }
        }

        for index in 0..images.tasks.len() {
            if let TaskState::Alive { .. } = images.tasks[index].state {
                self.restore_task(index)?;
            }
        }

        // A shell job's terminal follows the job: its group is the
        // foreground one (CRIU does this unless the root leads its session).
        let root = &images.tasks[0];
        if self.opts.shell_job && root.sid != root.pid {
            let pgid = nix::unistd::getpgid(Some(Pid::from_raw(root.pid)))
                .map(Pid::as_raw)
                .unwrap_or(root.pgid);
            self.files.set_shell_job_foreground(pgid)?;
        }

        if let Some(path) = &self.opts.pidfile {
            std::fs::write(path, images.tasks[0].pid.to_string()).map_err(|source| {
                RestoreError::Pidfile {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        notify_hook(notify, "post-restore", Some(images.tasks[0].pid))?;

        // seccomp filters before the credentials (installing one may need
        // CAP_SYS_ADMIN); the remote calls after them are not filtered.
        for proc in self.alive() {
            task::restore_seccomp(proc, &images.tasks[proc.task].seccomp)
                .map_err(task_err(proc.pid))?;
        }

        // Credentials last: they may drop what the steps above needed.
        for proc in self.alive() {
            let task = &images.tasks[proc.task];
            fn creds_of(core: &criu_proto::CoreEntry) -> Option<&criu_proto::CredsEntry> {
                core.thread_core.as_ref()?.creds.as_ref()
            }
            let leader_creds = creds_of(task.leader_core());
            // Threads were cloned from the leader and got its credentials;
            // nothing changed them since unless seccomp filters were installed
            // (which may set no_new_privs per thread). When the leader's
            // already match, a thread dumped with the same ones matches too:
            // its /proc status need not be read.
            let same_as_leader_ok = task.seccomp.iter().all(Vec::is_empty);
            let mut leader_matched = false;
            for (index, core) in task.cores.iter().enumerate() {
                let Some(creds) = creds_of(core) else {
                    continue;
                };
                if index > 0 && leader_matched && same_as_leader_ok && Some(creds) == leader_creds {
                    continue;
                }
                let matched =
                    task::restore_creds(proc, index, creds).map_err(task_err(proc.pid))?;
                if index == 0 {
                    leader_matched = matched;
                }
            }
            // Changing credentials resets the dumpable flag: set it afterwards.
            if let Some(dumpable) = task.mm.as_ref().and_then(|mm| mm.dumpable) {
                task::restore_dumpable(proc, dumpable).map_err(task_err(proc.pid))?;
            }
        }
        self.inject(FailStage::Creds)?;

        for proc in self.alive() {
            self.finish_task(proc).map_err(task_err(proc.pid))?;
        }
        notify_hook(notify, "pre-resume", Some(images.tasks[0].pid))?;
        self.inject(FailStage::PreResume)?;
        self.resume()
    }

    fn alive(&self) -> impl Iterator<Item = &Proc> {
        self.procs
            .iter()
            .filter(|p| matches!(self.images.tasks[p.task].state, TaskState::Alive { .. }))
    }

    /// Process groups: leaders first, then members (a group must exist before
    /// anyone joins it).
    fn restore_groups(&self) -> Result<(), RestoreError> {
        let tracer_pgid = nix::unistd::getpgrp().as_raw();
        let current_pgid =
            |pid: i32| -> Option<i32> { criu_compel::proc::read_stat(pid).ok().map(|s| s.pgid) };
        let root = &self.images.tasks[0];
        for leaders_pass in [true, false] {
            for (index, task) in self.images.tasks.iter().enumerate() {
                if (task.pgid == task.pid) != leaders_pass {
                    continue;
                }
                let in_tree = self.images.task(task.pgid).is_some();
                let target = if in_tree {
                    task.pgid
                } else if self.opts.shell_job && task.pgid == root.pgid {
                    tracer_pgid
                } else {
                    continue;
                };
                if current_pgid(task.pid) != Some(target) {
                    let proc = &self.procs[index];
                    let target = if target == task.pid { 0 } else { target };
                    tree::setpgid(proc, target).map_err(|source| RestoreError::Task {
                        pid: task.pid,
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }

    fn restore_task(&mut self, index: usize) -> Result<(), RestoreError> {
        let images = self.images;
        let task = &images.tasks[index];
        let pid = task.pid;
        let task_err = |source: RemoteError| RestoreError::Task { pid, source };
        let started = Instant::now();
        memory::restore_memory(
            &self.procs[index],
            task,
            images,
            self.files,
            self.opts.page_fill,
        )
        .map_err(|source| RestoreError::Memory { pid, source })?;
        self.inject(FailStage::Memory)?;

        // Threads, with their exact tids, cloned by the leader.
        let flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM) as u64;
        for &tid in &task.tids[1..] {
            let proc = &self.procs[index];
            let args = tree::put_clone_args(proc, flags, 0, tid).map_err(task_err)?;
            let new = match proc.threads[0]
                .call_clone(&format!("clone3(CLONE_THREAD, set_tid {tid})"), &args)
            {
                Ok(new) => new,
                Err(RemoteError::Syscall {
                    errno: Errno::EEXIST,
                    ..
                }) => {
                    return Err(TreeError::PidTaken {
                        pid: tid,
                        zombie: tree::is_zombie(tid),
                    }
                    .into())
                }
                Err(e) => return Err(task_err(e)),
            };
            let thread = task::Thread::start(new, proc.gadget, &proc.mem).map_err(task_err)?;
            self.procs[index].threads.push(thread);
        }
        self.inject(FailStage::Threads)?;

        files::install_fds(
            &mut self.procs[index],
            task,
            images,
            self.files,
            &mut self.epolls_done,
        )
        .map_err(|e| match e {
            FileError::Remote(source) => RestoreError::Task { pid, source },
            other => RestoreError::Files(other),
        })?;
        self.inject(FailStage::Fds)?;

        let proc = &self.procs[index];
        let leader = task.leader_core();
        let tc = leader.tc.as_ref().expect("validated");
        task::restore_sigactions(proc, &tc.sigactions).map_err(task_err)?;
        let mm = task.mm.as_ref().expect("alive");
        task::restore_task_misc(proc, leader, mm.thp_disabled).map_err(task_err)?;
        for (thread, core) in task.cores.iter().enumerate() {
            task::restore_thread_state(proc, thread, core, &tc.comm).map_err(task_err)?;
        }
        task::restore_rlimits(pid, leader).map_err(|errno| RestoreError::Rlimits { pid, errno })?;
        debug!(pid, threads = task.tids.len(), elapsed = ?started.elapsed(), "task restored");
        Ok(())
    }

    /// Pending signals, then the final registers and signal masks; the
    /// leader unmaps the trampoline as its very last call.
    fn finish_task(&self, proc: &Proc) -> Result<(), RemoteError> {
        let task = &self.images.tasks[proc.task];
        let leader = task.leader_core();
        let tc = leader.tc.as_ref().expect("validated");
        let queue = |tid: Option<i32>, info: &[u8]| -> Result<(), RemoteError> {
            if info.len() < 128 {
                return Ok(());
            }
            let signo = i32::from_le_bytes(info[..4].try_into().expect("4 bytes"));
            let addr = proc.put(256, &info[..128])?;
            match tid {
                None => proc.call(
                    &format!("rt_sigqueueinfo({signo})"),
                    libc::SYS_rt_sigqueueinfo,
                    &[proc.pid as u64, signo as u64, addr],
                )?,
                Some(tid) => proc.call(
                    &format!("rt_tgsigqueueinfo({tid}, {signo})"),
                    libc::SYS_rt_tgsigqueueinfo,
                    &[proc.pid as u64, tid as u64, signo as u64, addr],
                )?,
            };
            Ok(())
        };
        for info in tc.signals_s.iter().flat_map(|q| &q.signals) {
            queue(None, &info.siginfo)?;
        }
        for (core, &tid) in task.cores.iter().zip(&task.tids) {
            for info in core
                .thread_core
                .iter()
                .flat_map(|t| &t.signals_p)
                .flat_map(|q| &q.signals)
            {
                queue(Some(tid), &info.siginfo)?;
            }
        }
        let mut order: Vec<usize> = (1..proc.threads.len()).collect();
        order.push(0);
        for index in order {
            let thread = &proc.threads[index];
            let core = &task.cores[index];
            let ti = core.thread_info.as_ref().expect("validated");
            let mask = core
                .thread_core
                .as_ref()
                .and_then(|t| t.blk_sigset)
                .unwrap_or(tc.blk_sigset);
            thread.finish(&task::final_regs(&ti.gpregs), &ti.fpregs, mask, index == 0)?;
        }
        Ok(())
    }

    fn resume(&mut self) -> Result<(), RestoreError> {
        let images = self.images;
        if let Some(pin) = self.cpu_pin {
            for proc in self.alive() {
                for thread in &proc.threads {
                    let tid = thread.tid.as_raw();
                    pin.release(tid).map_err(|source| RestoreError::Affinity {
                        pid: proc.pid,
                        tid,
                        cpu: pin.cpu(),
                        source,
                    })?;
                }
            }
        }
        for proc in self.procs.iter() {
            let task = &images.tasks[proc.task];
            let TaskState::Alive { stopped } = task.state else {
                continue;
            };
            if stopped || self.opts.leave_stopped {
                let signo = task
                    .leader_core()
                    .tc
                    .as_ref()
                    .and_then(|tc| tc.stop_signo)
                    .filter(|&s| s != 0);
                let signal = signo
                    .and_then(|s| Signal::try_from(s as i32).ok())
                    .unwrap_or(Signal::SIGSTOP);
                let _ = kill(Pid::from_raw(proc.pid), signal);
            }
        }
        let mut first_error = None;
        for proc in self.procs.iter() {
            if !matches!(images.tasks[proc.task].state, TaskState::Alive { .. }) {
                continue;
            }
            for thread in &proc.threads {
                if let Err(e) = thread.detach() {
                    warn!(pid = proc.pid, tid = thread.tid.as_raw(), error = %e, "detach failed");
                    first_error.get_or_insert(RestoreError::Task {
                        pid: proc.pid,
                        source: e,
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                self.procs.clear();
                Ok(())
            }
        }
    }
}
