//! Per-thread and per-process state that only ptrace or the task itself can
//! report: registers, FPU state, signal masks and queues, rseq, TLS, robust
//! list, scheduler, and (through remote syscalls in the stopped thread)
//! sigactions, timers, tid address, sigaltstack, pdeath signal, securebits,
//! brk, dumpable, THP and subreaper flags.

use criu_compel::{RemoteCall, RemoteSession, RseqConfig, SigInfo, Tracee, UserRegs, XState};

use crate::proc::{read_status, read_text, PosixTimerInfo, ProcError, ProcStatus};
use crate::sys;

/// Why a thread's state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    /// A ptrace or remote-syscall operation failed.
    #[error("cannot read {what} of thread {tid}: {source}")]
    Compel {
        /// Thread.
        tid: i32,
        /// What was being read.
        what: &'static str,
        /// The compel error.
        source: criu_compel::CompelError,
    },
    /// A direct syscall about the thread failed.
    #[error("cannot read {what} of thread {tid}: {source}")]
    Os {
        /// Thread.
        tid: i32,
        /// What was being read.
        what: &'static str,
        /// OS error.
        source: std::io::Error,
    },
    /// A /proc file.
    #[error(transparent)]
    Proc(#[from] ProcError),
}

impl ThreadError {
    /// The errno behind the failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ThreadError::Compel { source, .. } => source.errno(),
            ThreadError::Os { source, .. } => source.raw_os_error(),
            ThreadError::Proc(e) => e.raw_os_error(),
        }
    }
}

fn compel(tid: i32, what: &'static str) -> impl FnOnce(criu_compel::CompelError) -> ThreadError {
    move |source| ThreadError::Compel { tid, what, source }
}

fn os(tid: i32, what: &'static str) -> impl FnOnce(std::io::Error) -> ThreadError {
    move |source| ThreadError::Os { tid, what, source }
}

/// Scheduler settings of a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sched {
    /// Policy (with SCHED_RESET_ON_FORK if set).
    pub policy: u32,
    /// Nice value.
    pub nice: i32,
    /// RT priority, for SCHED_FIFO/SCHED_RR.
    pub prio: Option<u32>,
}

/// sigaltstack of a thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AltStack {
    /// ss_sp.
    pub sp: u64,
    /// ss_flags.
    pub flags: u32,
    /// ss_size.
    pub size: u64,
}

/// Everything dumped for one thread.
#[derive(Debug, Clone)]
pub struct ThreadState {
    /// Thread id.
    pub tid: i32,
    /// Registers with CRIU's dump-time restart fixup applied (orig_ax kept).
    pub regs: UserRegs,
    /// Raw XSAVE area.
    pub xstate: XState,
    /// Blocked signals.
    pub sigmask: u64,
    /// Thread-private pending signals.
    pub signals: Vec<SigInfo>,
    /// rseq registration.
    pub rseq: RseqConfig,
    /// Robust futex list head and length.
    pub robust_list: (u64, u64),
    /// Scheduler settings.
    pub sched: Sched,
    /// GDT TLS slots (entries 12, 13, 14).
    pub tls: Vec<sys::UserDesc>,
    /// /proc/PID/task/TID/status (credentials, seccomp).
    pub status: ProcStatus,
    /// Thread name.
    pub comm: String,
    /// set_tid_address value.
    pub clear_tid_addr: u64,
    /// Alternate signal stack.
    pub altstack: AltStack,
    /// PR_GET_PDEATHSIG.
    pub pdeath_sig: u32,
    /// PR_GET_SECUREBITS.
    pub secbits: u32,
}

/// The GDT TLS entries on x86_64 (GDT_ENTRY_TLS_MIN..MAX).
const GDT_TLS: [u32; 3] = [12, 13, 14];

/// CRIU's dump-time restart fixup: a thread stopped inside an interrupted
/// syscall is saved so that it re-executes it (ERESTARTSYS, ERESTARTNOINTR,
/// ERESTARTNOHAND: ip back over `syscall`, ax = the syscall number) or sees
/// EINTR (ERESTART_RESTARTBLOCK). Unlike a restore, orig_ax is kept: CRIU's
/// images carry the syscall number there.
pub fn dump_time_regs(regs: &UserRegs) -> UserRegs {
    let mut fixed = *regs;
    if (regs.orig_ax as i64) >= 0 {
        criu_compel::fixup_syscall_restart(&mut fixed);
        fixed.orig_ax = regs.orig_ax;
    }
    fixed
}

/// Reads the ptrace-side state of a stopped thread of process `pid`.
pub fn collect_thread(pid: i32, tracee: &Tracee) -> Result<ThreadState, ThreadError> {
    let tid = tracee.tid();
    let regs = dump_time_regs(&tracee.regs().map_err(compel(tid, "registers"))?);
    let xstate = tracee.xstate().map_err(compel(tid, "xstate"))?;
    let sigmask = tracee.sigmask().map_err(compel(tid, "signal mask"))?;
    let signals = tracee
        .pending_signals(false)
        .map_err(compel(tid, "pending signals"))?;
    let rseq = tracee
        .rseq_config()
        .map_err(compel(tid, "rseq configuration"))?;
    let robust_list = sys::get_robust_list(tid).map_err(os(tid, "robust futex list"))?;
    let policy = sys::sched_getscheduler(tid).map_err(os(tid, "scheduler policy"))?;
    let base_policy = policy & !libc::SCHED_RESET_ON_FORK;
    let prio = if base_policy == libc::SCHED_FIFO || base_policy == libc::SCHED_RR {
        Some(sys::sched_getparam(tid).map_err(os(tid, "scheduler priority"))? as u32)
    } else {
        None
    };
    let nice = sys::get_nice(tid).map_err(os(tid, "nice value"))?;
    let mut tls = Vec::with_capacity(GDT_TLS.len());
    for index in GDT_TLS {
        tls.push(sys::get_thread_area(tid, index).map_err(os(tid, "TLS descriptors"))?);
    }
    let status = read_status_of(pid, tid)?;
    let comm = read_text(format!("/proc/{pid}/task/{tid}/comm"))?
        .trim_end_matches('\n')
        .to_string();
    Ok(ThreadState {
        tid,
        regs,
        xstate,
        sigmask,
        signals,
        rseq,
        robust_list,
        sched: Sched {
            policy: policy as u32,
            nice,
            prio,
        },
        tls,
        status,
        comm,
        clear_tid_addr: 0,
        altstack: AltStack::default(),
        pdeath_sig: 0,
        secbits: 0,
    })
}

fn read_status_of(pid: i32, tid: i32) -> Result<ProcStatus, ThreadError> {
    if pid == tid {
        return Ok(read_status(pid)?);
    }
    let path = format!("/proc/{pid}/task/{tid}/status");
    let text = read_text(path.clone())?;
    Ok(crate::proc::parse_status(&text, &path)?)
}

/// Fills the fields only the thread itself can report, by remote syscalls (one batch; answers in
/// consecutive scratch slots, zeroed first because the kernel writes only an int or a pointer).
pub fn collect_thread_remote(
    session: &mut RemoteSession<'_>,
    state: &mut ThreadState,
) -> Result<(), ThreadError> {
    let tid = state.tid;
    let scratch = session.scratch_addr();
    let slot = |index: usize| scratch + (index * ANSWER_SLOT) as u64;
    session
        .scratch_write(0, &[0u8; 3 * ANSWER_SLOT])
        .map_err(compel(tid, "remote scratch memory"))?;
    let calls = [
        RemoteCall::new(
            libc::SYS_prctl,
            [libc::PR_GET_TID_ADDRESS as u64, slot(0), 0, 0, 0, 0],
        ),
        RemoteCall::new(libc::SYS_sigaltstack, [0, slot(1), 0, 0, 0, 0]),
        RemoteCall::new(
            libc::SYS_prctl,
            [libc::PR_GET_PDEATHSIG as u64, slot(2), 0, 0, 0, 0],
        ),
        RemoteCall::new(
            libc::SYS_prctl,
            [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0],
        ),
    ];
    let whats = [
        "tid address",
        "sigaltstack",
        "parent death signal",
        "securebits",
    ];
    let results = remote_batch(session, tid, &calls, &whats)?;
    let answers = session
        .scratch_read(0, 3 * ANSWER_SLOT)
        .map_err(compel(tid, "remote scratch memory"))?;
    let word = |at: usize| u64::from_le_bytes(answers[at..at + 8].try_into().unwrap_or([0; 8]));
    state.clear_tid_addr = word(0);
    let sas = &answers[ANSWER_SLOT..2 * ANSWER_SLOT];
    state.altstack = AltStack {
        sp: u64::from_le_bytes(sas[0..8].try_into().unwrap_or([0; 8])),
        flags: u32::from_le_bytes(sas[8..12].try_into().unwrap_or([0; 4])),
        size: u64::from_le_bytes(sas[16..24].try_into().unwrap_or([0; 8])),
    };
    state.pdeath_sig = word(2 * ANSWER_SLOT) as u32;
    state.secbits = results[3] as u32;
    Ok(())
}

/// One kernel `struct sigaction` (x86_64 layout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigAction {
    /// sa_handler / sa_sigaction.
    pub handler: u64,
    /// sa_flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// sa_mask.
    pub mask: u64,
}

/// An itimer: (interval sec, interval usec, value sec, value usec).
pub type ITimer = (u64, u64, u64, u64);

/// A POSIX timer with its current setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTimerState {
    /// From /proc/PID/timers.
    pub info: PosixTimerInfo,
    /// timer_getoverrun.
    pub overrun: u32,
    /// (interval sec, interval nsec, value sec, value nsec).
    pub setting: (u64, u64, u64, u64),
}

/// Process-wide state read by remote syscalls in the leader.
#[derive(Debug, Clone, Default)]
pub struct ProcessState {
    /// Signal dispositions for signals 1..=64 except SIGKILL and SIGSTOP (62).
    pub sigactions: Vec<SigAction>,
    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub itimers: [ITimer; 3],
    /// POSIX timers.
    pub posix_timers: Vec<PosixTimerState>,
    /// Current program break.
    pub brk: u64,
    /// PR_GET_DUMPABLE.
    pub dumpable: i32,
    /// PR_GET_THP_DISABLE.
    pub thp_disabled: bool,
    /// PR_GET_CHILD_SUBREAPER.
    pub child_subreaper: bool,
    /// MEMBARRIER_CMD_GET_REGISTRATIONS (0 if unsupported).
    pub membarrier_mask: u32,
}

fn words4(b: &[u8]) -> (u64, u64, u64, u64) {
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    (w(0), w(1), w(2), w(3))
}

/// Bytes of scratch memory each answer of [`collect_process_remote`] gets (a `struct sigaction`, an
/// `itimerval` and an `itimerspec` are 32 bytes each).
const ANSWER_SLOT: usize = 32;

/// Runs `calls` as one remote batch and returns their results; the first failing call (labelled by
/// its entry in `whats`) fails the whole read.
fn remote_batch(
    session: &mut RemoteSession<'_>,
    tid: i32,
    calls: &[RemoteCall],
    whats: &[&'static str],
) -> Result<Vec<i64>, ThreadError> {
    let results = session
        .syscall_batch(calls)
        .map_err(compel(tid, "process state (remote syscall batch)"))?;
    results
        .into_iter()
        .zip(whats)
        .map(|(result, what)| result.map_err(compel(tid, what)))
        .collect()
}

/// Reads process-wide state through remote syscalls in the (stopped) leader: all of them in one
/// batch (one ptrace round trip instead of about 70), answers in consecutive scratch slots.
pub fn collect_process_remote(
    session: &mut RemoteSession<'_>,
    timers: &[PosixTimerInfo],
) -> Result<ProcessState, ThreadError> {
    let tid = session.tracee().tid();
    let scratch = session.scratch_addr();
    let slot = |index: usize| scratch + (index * ANSWER_SLOT) as u64;
    let signals: Vec<u64> = (1..=64u64)
        .filter(|&sig| sig != libc::SIGKILL as u64 && sig != libc::SIGSTOP as u64)
        .collect();
    let mut calls = Vec::with_capacity(signals.len() + 8);
    let mut whats = Vec::with_capacity(signals.len() + 8);
    for (index, &sig) in signals.iter().enumerate() {
        calls.push(RemoteCall::new(
            libc::SYS_rt_sigaction,
            [sig, 0, slot(index), 8, 0, 0],
        ));
        whats.push("signal action");
    }
    let itimer_slots = signals.len();
    for which in 0..3 {
        calls.push(RemoteCall::new(
            libc::SYS_getitimer,
            [which as u64, slot(itimer_slots + which), 0, 0, 0, 0],
        ));
        whats.push("interval timer");
    }
    // PR_GET_CHILD_SUBREAPER stores an int: its slot is zeroed first.
    let subreaper_slot = itimer_slots + 3;
    session
        .scratch_write(subreaper_slot * ANSWER_SLOT, &[0u8; ANSWER_SLOT])
        .map_err(compel(tid, "remote scratch memory"))?;
    let scalars = calls.len();
    for (nr, arg0, arg1, what) in [
        (libc::SYS_brk, 0, 0, "program break"),
        (
            libc::SYS_prctl,
            libc::PR_GET_DUMPABLE as u64,
            0,
            "dumpable flag",
        ),
        (
            libc::SYS_prctl,
            libc::PR_GET_THP_DISABLE as u64,
            0,
            "THP-disable flag",
        ),
        (
            libc::SYS_prctl,
            libc::PR_GET_CHILD_SUBREAPER as u64,
            slot(subreaper_slot),
            "child-subreaper flag",
        ),
    ] {
        calls.push(RemoteCall::new(nr, [arg0, arg1, 0, 0, 0, 0]));
        whats.push(what);
    }
    let results = remote_batch(session, tid, &calls, &whats)?;
    // Not every kernel knows MEMBARRIER_CMD_GET_REGISTRATIONS: its failure means "none", so it runs
    // on its own.
    const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;
    let membarrier_mask = session
        .syscall(
            libc::SYS_membarrier,
            [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0],
        )
        .unwrap_or(0) as u32;
    let answers = session
        .scratch_read(0, (subreaper_slot + 1) * ANSWER_SLOT)
        .map_err(compel(tid, "remote scratch memory"))?;
    let answer = |index: usize| words4(&answers[index * ANSWER_SLOT..(index + 1) * ANSWER_SLOT]);
    let mut st = ProcessState {
        sigactions: (0..signals.len())
            .map(|index| {
                let (handler, flags, restorer, mask) = answer(index);
                SigAction {
                    handler,
                    flags,
                    restorer,
                    mask,
                }
            })
            .collect(),
        itimers: [
            answer(itimer_slots),
            answer(itimer_slots + 1),
            answer(itimer_slots + 2),
        ],
        posix_timers: Vec::with_capacity(timers.len()),
        brk: results[scalars] as u64,
        dumpable: results[scalars + 1] as i32,
        thp_disabled: results[scalars + 2] != 0,
        child_subreaper: answer(subreaper_slot).0 as u32 != 0,
        membarrier_mask,
    };
    // POSIX timers: as many per batch as the scratch area has slots for.
    let per_batch = (session.scratch_size() / ANSWER_SLOT).max(1);
    for group in timers.chunks(per_batch) {
        let mut calls = Vec::with_capacity(group.len() * 2);
        let mut whats = Vec::with_capacity(group.len() * 2);
        for (index, info) in group.iter().enumerate() {
            let id = info.id as u64;
            calls.push(RemoteCall::new(
                libc::SYS_timer_gettime,
                [id, slot(index), 0, 0, 0, 0],
            ));
            calls.push(RemoteCall::new(
                libc::SYS_timer_getoverrun,
                [id, 0, 0, 0, 0, 0],
            ));
            whats.extend(["POSIX timer", "POSIX timer overrun"]);
        }
        let results = remote_batch(session, tid, &calls, &whats)?;
        let settings = session
            .scratch_read(0, group.len() * ANSWER_SLOT)
            .map_err(compel(tid, "remote scratch memory"))?;
        for (index, info) in group.iter().enumerate() {
            st.posix_timers.push(PosixTimerState {
                info: info.clone(),
                overrun: results[index * 2 + 1] as u32,
                setting: words4(&settings[index * ANSWER_SLOT..(index + 1) * ANSWER_SLOT]),
            });
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_fixup_keeps_orig_ax_like_criu() {
        let regs = UserRegs {
            orig_ax: 230,
            ax: (-516i64) as u64,
            ip: 0x1000,
            ..UserRegs::default()
        };
        let fixed = dump_time_regs(&regs);
        assert_eq!(fixed.ax as i64, -(libc::EINTR as i64));
        assert_eq!(fixed.orig_ax, 230);
        assert_eq!(fixed.ip, 0x1000);

        let regs = UserRegs {
            orig_ax: 7,
            ax: (-512i64) as u64,
            ip: 0x1002,
            ..UserRegs::default()
        };
        let fixed = dump_time_regs(&regs);
        assert_eq!((fixed.ax, fixed.ip, fixed.orig_ax), (7, 0x1000, 7));

        let regs = UserRegs {
            orig_ax: u64::MAX,
            ax: 5,
            ..UserRegs::default()
        };
        assert_eq!(dump_time_regs(&regs), regs);
    }
}
