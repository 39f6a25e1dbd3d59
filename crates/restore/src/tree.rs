//! The process tree: which sessions and groups can be rebuilt, the blank
//! tasks with their exact pids (the root cloned by the tracer, every other
//! task cloned inside its parent), sessions, groups, zombies, and killing
//! everything again when a restore fails.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use criu_compel::{Tracee, DEFAULT_STOP_TIMEOUT};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, warn};

use crate::images::{RestoreImages, TaskImages, TaskState};
use crate::layout::{self, TRAMPOLINE_LEN};
use crate::sys;
use crate::task::{Proc, RemoteError};

/// The socketpair that carries fds from the tracer into the tasks being
/// restored: every blank task inherits the child end at the same number; the
/// tracer sends a batch of fds with SCM_RIGHTS on its end and the task
/// receives them with a remote `recvmsg`.
#[derive(Debug)]
pub(crate) struct Transport {
    tracer_end: OwnedFd,
    child_end: OwnedFd,
}

impl Transport {
    /// Creates the socketpair (both ends close-on-exec in the tracer).
    pub fn new() -> Result<Transport, TreeError> {
        let (tracer_end, child_end) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|errno| TreeError::Local {
            op: "creating the fd transport socketpair",
            errno,
        })?;
        Ok(Transport {
            tracer_end,
            child_end,
        })
    }

    /// The number the blank tasks have their end at (inherited from the tracer).
    pub fn child_fd(&self) -> RawFd {
        self.child_end.as_raw_fd()
    }

    /// A task's view of the transport: a duplicate of the tracer's end and
    /// the number of the task's end.
    fn for_task(&self, transport_fd: i32) -> Result<(OwnedFd, i32), TreeError> {
        let tracer_end = self.tracer_end.try_clone().map_err(|e| TreeError::Local {
            op: "duplicating the fd transport",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        Ok((tracer_end, transport_fd))
    }
}

/// The tree cannot be rebuilt as dumped, or a task could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A pid the dump needs is in use.
    #[error("{}", pid_taken_message(*pid, *zombie))]
    PidTaken {
        /// The pid (or tid).
        pid: i32,
        /// Whether it is held by a zombie (/proc/PID/stat state Z).
        zombie: bool,
    },
    /// A pid of the dump is beyond this system's pid_max.
    #[error("pid {pid} of the dump is not below /proc/sys/kernel/pid_max ({max}); raise pid_max to restore it")]
    PidAboveMax {
        /// The pid.
        pid: i32,
        /// The current pid_max.
        max: i32,
    },
    /// Sessions or groups that need helper tasks, or a root that is not a
    /// session leader without shell_job.
    #[error("pstree.img: {0}")]
    Sessions(String),
    /// The trampoline could not be placed.
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    /// Creating the root failed.
    #[error("cloning the root task with pid {pid}: {errno}")]
    Spawn {
        /// The wanted pid.
        pid: i32,
        /// The error.
        errno: Errno,
    },
    /// The root did not come up.
    #[error("the blank root task {pid} exited before it was ready")]
    RootDied {
        /// The pid.
        pid: i32,
    },
    /// A remote call failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A ready-pipe or trampoline step in the tracer failed.
    #[error("{op}: {errno}")]
    Local {
        /// What failed.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

fn pid_taken_message(pid: i32, zombie: bool) -> String {
    if zombie {
        format!(
            "pid {pid} is needed by the dump but is still held by a zombie (/proc/{pid}/stat state Z); \
             wait until its parent (or init) reaps it and retry"
        )
    } else {
        format!("pid {pid} is needed by the dump but is already in use by a running process")
    }
}

/// Whether `pid` is a zombie now.
pub(crate) fn is_zombie(pid: i32) -> bool {
    criu_compel::proc::read_stat(pid).is_ok_and(|stat| stat.state == 'Z')
}

/// Fails with EEXIST if any pid or tid of the dump is in use, and refuses
/// pids the kernel cannot hand out (at or above pid_max).
pub(crate) fn check_pids_free(images: &RestoreImages) -> Result<(), TreeError> {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    for task in &images.tasks {
        for &tid in &task.tids {
            if let Some(max) = pid_max.filter(|&max| tid >= max) {
                return Err(TreeError::PidAboveMax { pid: tid, max });
            }
            if std::path::Path::new(&format!("/proc/{tid}")).exists() {
                return Err(TreeError::PidTaken {
                    pid: tid,
                    zombie: is_zombie(tid),
                });
            }
        }
    }
    Ok(())
}

/// How the session and group of each task are rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionStep {
    /// setsid() in the task (it leads its session and group).
    Setsid,
    /// Inherited from the parent (or, for a shell job root, from the tracer).
    Inherit,
}

/// Checks that every session and group can be rebuilt without helper tasks;
/// returns the session step of each task (in tree order).
pub(crate) fn plan_sessions(
    images: &RestoreImages,
    shell_job: bool,
) -> Result<Vec<SessionStep>, TreeError> {
    let by_pid: HashMap<i32, &TaskImages> = images.tasks.iter().map(|t| (t.pid, t)).collect();
    let root = &images.tasks[0];
    if root.sid != root.pid && !shell_job {
        return Err(TreeError::Sessions(format!(
            "the root process {} is not a session leader (session {}); restore it as a shell job",
            root.pid, root.sid
        )));
    }
    let mut steps = Vec::with_capacity(images.tasks.len());
    for task in &images.tasks {
        let is_root = task.pid == root.pid;
        if task.sid == task.pid {
            steps.push(SessionStep::Setsid);
        } else {
            if !is_root && task.sid != by_pid[&task.ppid].sid {
                return Err(TreeError::Sessions(format!(
                    "pid {} is in session {} but its parent {} is in session {} (this needs a helper task, not supported yet)",
                    task.pid, task.sid, task.ppid, by_pid[&task.ppid].sid
                )));
            }
            steps.push(SessionStep::Inherit);
        }
        if task.pgid != task.pid && task.pgid != task.sid {
            let shell_group = shell_job && task.pgid == root.pgid && root.pgid != root.pid;
            match by_pid.get(&task.pgid) {
                Some(leader) if leader.sid == task.sid => {}
                _ if shell_group => {}
                _ => {
                    return Err(TreeError::Sessions(format!(
                        "pid {} is in process group {} whose leader is not a task of its session in the dump (this needs a helper task, not supported yet)",
                        task.pid, task.pgid
                    )))
                }
            }
        }
    }
    Ok(steps)
}

/// The trampoline address: free in the tracer and in every dumped layout.
pub(crate) fn choose_trampoline(images: &RestoreImages) -> Result<u64, TreeError> {
    let mut occupied: Vec<std::ops::Range<u64>> = layout::read_maps("self")?
        .into_iter()
        .map(|m| m.range)
        .collect();
    for task in &images.tasks {
        if let Some(mm) = &task.mm {
            occupied.extend(mm.vmas.iter().map(|v| v.start..v.end));
        }
    }
    Ok(layout::find_hole(&occupied, TRAMPOLINE_LEN, "trampoline")?)
}

/// The offsets that make CLOCK_MONOTONIC and CLOCK_BOOTTIME of a new time
/// namespace continue from the dumped values: "dumped - now" against the
/// host clocks, as /proc/PID/timens_offsets wants them.
fn timens_offsets(dumped: &criu_proto::TimensEntry) -> Result<String, Errno> {
    use nix::time::{clock_gettime, ClockId};
    // If the tracer is itself in a time namespace, its clocks are shifted.
    let own = std::fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
    let own_offset = |name: &str| -> i128 {
        own.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(
                    f.get(1)?.parse::<i128>().ok()? * 1_000_000_000
                        + f.get(2)?.parse::<i128>().ok()?,
                )
            })
            .unwrap_or(0)
    };
    let mut text = String::new();
    for (name, clock, value) in [
        ("monotonic", ClockId::CLOCK_MONOTONIC, dumped.monotonic),
        ("boottime", ClockId::CLOCK_BOOTTIME, dumped.boottime),
    ] {
        let now = clock_gettime(clock)?;
        let host_now =
            i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec()) - own_offset(name);
        let wanted = i128::from(value.tv_sec) * 1_000_000_000 + i128::from(value.tv_nsec);
        let offset = wanted - host_now;
        let (sec, nsec) = (
            offset.div_euclid(1_000_000_000),
            offset.rem_euclid(1_000_000_000),
        );
        text.push_str(&format!("{name} {sec} {nsec}\n"));
    }
    Ok(text)
}

/// Clones the blank root from a short-lived thread that first moves its
/// future children into a new time namespace whose clocks continue from the
/// dumped ones (as CRIU does); the tracer's own threads are not affected.
fn spawn_in_time_namespace(
    spec: &sys::blank::BlankSpec,
    dumped: &criu_proto::TimensEntry,
) -> Result<i32, Errno> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let entered = sys::local::unshare_time_namespace().and_then(|()| {
                    let offsets = timens_offsets(dumped)?;
                    // /proc/self would name the thread group leader, whose
                    // namespace for children is not the one just created.
                    std::fs::write(format!("/proc/{}/timens_offsets", nix::unistd::gettid()), offsets)
                        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
                });
                if let Err(errno) = entered {
                    warn!(%errno, "no new time namespace: the restored clocks jump by the downtime");
                }
                sys::blank::spawn_blank(spec)
            })
            .join()
            .unwrap_or(Err(Errno::EIO))
    })
}

/// Clones the blank root with its exact pid, seizes and stops it.
pub(crate) fn spawn_root(
    images: &RestoreImages,
    transport: &Transport,
    clone_parent: bool,
    time_namespace: bool,
) -> Result<Proc, TreeError> {
    let root = &images.tasks[0];
    let mut gadget = choose_trampoline(images)?;
    let mut attempts = 0;
    loop {
        match sys::local::map_trampoline(gadget, TRAMPOLINE_LEN as usize) {
            Ok(()) => break,
            Err(Errno::EEXIST) if attempts < 8 => {
                // Another thread of the tracer mapped something there meanwhile.
                attempts += 1;
                gadget = choose_trampoline(images)?;
            }
            Err(errno) => {
                return Err(TreeError::Local {
                    op: "mapping the trampoline in the tracer",
                    errno,
                })
            }
        }
    }
    let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
    let (ready_read, ready_write) = match pipe {
        Ok(p) => p,
        Err(errno) => {
            sys::local::unmap(gadget, TRAMPOLINE_LEN as usize);
            return Err(TreeError::Local {
                op: "creating the ready pipe",
                errno,
            });
        }
    };
    let spec = sys::blank::BlankSpec {
        pid: root.pid,
        clone_parent,
        transport_fd: transport.child_fd(),
        ready_fd: ready_write.as_raw_fd(),
    };
    let spawned = match (&images.timens, time_namespace) {
        (Some(dumped), true) => spawn_in_time_namespace(&spec, dumped),
        _ => sys::blank::spawn_blank(&spec),
    };
    // The child has its own copy of the trampoline now.
    sys::local::unmap(gadget, TRAMPOLINE_LEN as usize);
    drop(ready_write);
    let pid = match spawned {
        Ok(pid) => pid,
        Err(Errno::EEXIST) => {
            return Err(TreeError::PidTaken {
                pid: root.pid,
                zombie: is_zombie(root.pid),
            })
        }
        Err(errno) => {
            return Err(TreeError::Spawn {
                pid: root.pid,
                errno,
            })
        }
    };
    let mut byte = [0u8; 1];
    let ready = loop {
        match nix::unistd::read(&ready_read, &mut byte) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    if ready != Ok(1) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        return Err(TreeError::RootDied { pid });
    }
    let tid = Pid::from_raw(pid);
    let seized = Tracee::seize(pid, crate::task::trace_options()).and_then(|mut tracee| {
        tracee.interrupt_and_wait(DEFAULT_STOP_TIMEOUT)?;
        Ok(tracee)
    });
    let tracee = match seized {
        Ok(tracee) => tracee,
        Err(source) => {
            let _ = kill(tid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(tid, None);
            return Err(RemoteError::Ptrace {
                tid: pid,
                call: "seizing the blank root".into(),
                source,
            }
            .into());
        }
    };
    // Every signal stays blocked in the task until the final mask is set.
    let proc = transport
        .for_task(transport.child_fd())
        .and_then(|t| Ok(Proc::blank(tracee, 0, 0, gadget, t)?));
    match proc {
        Ok(proc) => Ok(proc),
        Err(e) => {
            let _ = kill(tid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(tid, Some(nix::sys::wait::WaitPidFlag::__WALL));
            Err(e)
        }
    }
}

/// The clone_args of a remote clone3 with one set_tid, written at the start
/// of the scratch area; returns the arguments of the call.
pub(crate) fn put_clone_args(
    proc: &Proc,
    flags: u64,
    exit_signal: u64,
    tid: i32,
) -> Result<[u64; 2], RemoteError> {
    const SET_TID_OFFSET: u64 = 128;
    let set_tid = proc.put(SET_TID_OFFSET, &tid.to_le_bytes())?;
    let fields: [u64; 11] = [flags, 0, 0, 0, exit_signal, 0, 0, 0, set_tid, 1, 0];
    let bytes: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
    let addr = proc.put(0, &bytes)?;
    Ok([addr, bytes.len() as u64])
}

/// Clones a blank child task with pid `task.pid` inside its (blank) parent.
pub(crate) fn spawn_child(
    parent: &Proc,
    transport: &Transport,
    task: &TaskImages,
    index: usize,
) -> Result<Proc, TreeError> {
    let args = put_clone_args(parent, 0, libc::SIGCHLD as u64, task.pid)?;
    let child = match parent.threads[0].call_clone(&format!("clone3(set_tid {})", task.pid), &args)
    {
        Ok(child) => child,
        Err(RemoteError::Syscall {
            errno: Errno::EEXIST,
            ..
        }) => {
            return Err(TreeError::PidTaken {
                pid: task.pid,
                zombie: is_zombie(task.pid),
            })
        }
        Err(e) => return Err(e.into()),
    };
    debug!(
        pid = child.tid(),
        parent = parent.pid,
        "blank child created"
    );
    let transport_fd = parent
        .transport_fd
        .expect("blank parents still hold the transport");
    Ok(Proc::blank(
        child,
        parent.pid,
        index,
        parent.gadget,
        transport.for_task(transport_fd)?,
    )?)
}

/// setsid() in a blank task.
pub(crate) fn setsid(proc: &Proc) -> Result<(), RemoteError> {
    proc.call("setsid", libc::SYS_setsid, &[])?;
    Ok(())
}

/// setpgid(0, pgid) in a blank task.
pub(crate) fn setpgid(proc: &Proc, pgid: i32) -> Result<(), RemoteError> {
    proc.call(
        &format!("setpgid(0, {pgid})"),
        libc::SYS_setpgid,
        &[0, pgid as u64],
    )?;
    Ok(())
}

/// Makes a blank task exit with the dumped wait status, so that its parent
/// holds it as a zombie; then takes the SIGCHLD this queued off the parent.
pub(crate) fn make_zombie(
    proc: &Proc,
    parent: &Proc,
    task: &TaskImages,
) -> Result<(), RemoteError> {
    let TaskState::Zombie { exit_code } = task.state else {
        return Ok(());
    };
    // A signal death must not write a core of the blank task.
    let _ = sys::local::prlimit(proc.pid, libc::RLIMIT_CORE, Some((0, 0)));
    proc.threads[0].die(exit_code)?;
    // The SIGCHLD of a zombie was delivered before the dump: drop the new one.
    let timeout = proc_put_timeout(parent)?;
    let set = parent.put(64, &(1u64 << (libc::SIGCHLD - 1)).to_le_bytes())?;
    loop {
        let ret = parent.call_raw(
            "rt_sigtimedwait(SIGCHLD)",
            libc::SYS_rt_sigtimedwait,
            &[set, 0, timeout, 8],
        )?;
        if ret < 0 {
            break;
        }
    }
    Ok(())
}

fn proc_put_timeout(proc: &Proc) -> Result<u64, RemoteError> {
    proc.put(32, &[0u8; 16])
}

/// Kills every task created so far and waits until the tracer holds none of
/// them; returns the pids that were killed. Children go first, and each is
/// reaped by its (still traced) parent with a remote wait4 where possible, so
/// that no zombie is left for init to collect.
pub(crate) fn kill_all(procs: &mut Vec<Proc>) -> Vec<i32> {
    let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
    for index in (0..procs.len()).rev() {
        let proc = &procs[index];
        let _ = kill(Pid::from_raw(proc.pid), Signal::SIGKILL);
        // Non-leader threads first: a leader is reported only once every other
        // thread of its group is gone.
        for thread in proc.threads.iter().rev() {
            thread.wait_gone();
        }
        if let Some(parent) = procs[..index].iter().find(|p| p.pid == proc.ppid) {
            let reaped = parent.call_raw(
                &format!("wait4({})", proc.pid),
                libc::SYS_wait4,
                &[proc.pid as u64, 0, libc::__WALL as u64, 0],
            );
            debug!(
                pid = proc.pid,
                parent = parent.pid,
                ?reaped,
                "killed task reaped by its parent"
            );
        }
    }
    procs.clear();
    pids
}
