//! Process bookkeeping for the runner: it is a child subreaper, so every test process that loses its
//! parent (a dumped-and-killed tree, a restored tree whose `criu` exited) becomes its child. These
//! helpers find, signal, reap and wait for such processes by pid.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Errors of the process helpers.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// prctl(PR_SET_CHILD_SUBREAPER) failed.
    #[error("cannot become a child subreaper: {0}")]
    Subreaper(Errno),
    /// Processes were still present after the deadline.
    #[error("pids {pids:?} still exist {waited:?} after they were killed")]
    StillAlive { pids: Vec<i32>, waited: Duration },
}

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
    /// It is gone but was reaped by someone else, so its status is unknown.
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => write!(f, "killed by signal {sig}"),
            Exit::Unknown => write!(f, "unknown exit status (reaped elsewhere)"),
        }
    }
}

/// Makes this process the subreaper of everything it starts.
pub fn become_subreaper() -> Result<(), ProcessError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(ProcessError::Subreaper)
}

/// Parsed fields of /proc/PID/stat that the runner uses.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// Parent pid.
    pub ppid: i32,
    /// Session id.
    pub sid: i32,
    /// One-letter state (R, S, Z, ...).
    pub state: char,
}

/// Reads /proc/PID/stat; `None` when the process does not exist.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &text[text.rfind(')')? + 2..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let sid = fields.next()?.parse().ok()?;
    Some(ProcStat { ppid, sid, state })
}

/// True while /proc/PID exists and the process is not a zombie.
pub fn is_running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// True while /proc/PID exists (zombies included).
pub fn exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Every process below `root` (not including it), from a /proc snapshot.
pub fn descendants(root: i32) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(stat) = proc_stat(pid) {
                children.entry(stat.ppid).or_default().push(pid);
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if found.insert(child) {
                queue.push(child);
            }
        }
    }
    found
}

/// Reaps every exited child without blocking; returns what was reaped.
pub fn reap_exited() -> Vec<(i32, Exit)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) => reaped.push((pid.as_raw(), Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                reaped.push((pid.as_raw(), Exit::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(_) => continue,
        }
    }
}

/// Waits until `pid` exits, reaping it when it is (or becomes) our child.
/// Returns `None` on timeout.
pub fn wait_exit(pid: i32, timeout: Duration) -> Option<Exit> {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(
            Pid::from_raw(pid),
            Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
        ) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(Exit::Signal(sig as i32)),
            Ok(_) => {}
            // Not (yet) our child: a restored root until `criu` exits, or already reaped.
            Err(Errno::ECHILD) if !exists(pid) => return Some(Exit::Unknown),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs every process in `pids` that still exists.
pub fn kill_all(pids: &BTreeSet<i32>) {
    for &pid in pids {
        // ESRCH is fine: it is already gone.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Reaps what we can and waits until none of `pids` exists any more.
pub fn wait_gone(pids: &BTreeSet<i32>, timeout: Duration) -> Result<(), ProcessError> {
    let start = Instant::now();
    loop {
        reap_exited();
        let left: Vec<i32> = pids.iter().copied().filter(|&pid| exists(pid)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(ProcessError::StillAlive {
                pids: left,
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills every descendant of this process (and `extra` pids), then waits until all are gone.
pub fn kill_everything_below_us(extra: &BTreeSet<i32>) -> Result<(), ProcessError> {
    let me = std::process::id() as i32;
    let mut all = extra.clone();
    // New orphans may appear while we kill (a child's children are reparented to us), so repeat.
    for _ in 0..20 {
        let below = descendants(me);
        let alive: BTreeSet<i32> = below
            .iter()
            .copied()
            .filter(|&pid| is_running(pid))
            .collect();
        all.extend(below);
        if alive.is_empty() && extra.iter().all(|&pid| !is_running(pid)) {
            break;
        }
        kill_all(&alive);
        kill_all(extra);
        reap_exited();
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_gone(&all, Duration::from_secs(10))
}
