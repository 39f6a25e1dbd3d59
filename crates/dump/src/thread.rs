//! Per-thread and per-process state that only ptrace or the task itself can
//! report: registers, FPU state, signal masks and queues, rseq, TLS, robust
//! list, scheduler, and (through remote syscalls in the stopped thread)
//! sigactions, timers, tid address, sigaltstack, pdeath signal, securebits,
//! brk, dumpable, THP and subreaper flags.

use criu_compel::{RemoteSession, RseqConfig, SigInfo, Tracee, UserRegs, XState};

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

fn read_u64(session: &RemoteSession<'_>, tid: i32, offset: usize) -> Result<u64, ThreadError> {
    let bytes = session
        .scratch_read(offset, 8)
        .map_err(compel(tid, "remote scratch memory"))?;
    Ok(u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8])))
}

fn remote(
    session: &mut RemoteSession<'_>,
    tid: i32,
    what: &'static str,
    nr: i64,
    args: [u64; 6],
) -> Result<i64, ThreadError> {
    session.syscall(nr, args).map_err(compel(tid, what))
}

/// Fills the fields only the thread itself can report, by remote syscalls.
pub fn collect_thread_remote(
    session: &mut RemoteSession<'_>,
    state: &mut ThreadState,
) -> Result<(), ThreadError> {
    let tid = state.tid;
    let scratch = session.scratch_addr();
    session
        .scratch_write(0, &[0u8; 32])
        .map_err(compel(tid, "remote scratch memory"))?;
    remote(
        session,
        tid,
        "tid address",
        libc::SYS_prctl,
        [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0],
    )?;
    state.clear_tid_addr = read_u64(session, tid, 0)?;
    remote(
        session,
        tid,
        "sigaltstack",
        libc::SYS_sigaltstack,
        [0, scratch, 0, 0, 0, 0],
    )?;
    let sas = session
        .scratch_read(0, 24)
        .map_err(compel(tid, "remote scratch memory"))?;
    state.altstack = AltStack {
        sp: u64::from_le_bytes(sas[0..8].try_into().unwrap_or([0; 8])),
        flags: u32::from_le_bytes(sas[8..12].try_into().unwrap_or([0; 4])),
        size: u64::from_le_bytes(sas[16..24].try_into().unwrap_or([0; 8])),
    };
    session
        .scratch_write(0, &[0u8; 8])
        .map_err(compel(tid, "remote scratch memory"))?;
    remote(
        session,
        tid,
        "parent death signal",
        libc::SYS_prctl,
        [libc::PR_GET_PDEATHSIG as u64, scratch, 0, 0, 0, 0],
    )?;
    state.pdeath_sig = read_u64(session, tid, 0)? as u32;
    state.secbits = remote(
        session,
        tid,
        "securebits",
        libc::SYS_prctl,
        [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0],
    )? as u32;
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

/// Reads process-wide state through remote syscalls in the (stopped) leader.
pub fn collect_process_remote(
    session: &mut RemoteSession<'_>,
    timers: &[PosixTimerInfo],
) -> Result<ProcessState, ThreadError> {
    let tid = session.tracee().tid();
    let scratch = session.scratch_addr();
    let mut st = ProcessState::default();
    for sig in 1..=64u64 {
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        remote(
            session,
            tid,
            "signal action",
            libc::SYS_rt_sigaction,
            [sig, 0, scratch, 8, 0, 0],
        )?;
        let raw = session
            .scratch_read(0, 32)
            .map_err(compel(tid, "remote scratch memory"))?;
        let (handler, flags, restorer, mask) = words4(&raw);
        st.sigactions.push(SigAction {
            handler,
            flags,
            restorer,
            mask,
        });
    }
    for (which, slot) in st.itimers.iter_mut().enumerate() {
        remote(
            session,
            tid,
            "interval timer",
            libc::SYS_getitimer,
            [which as u64, scratch, 0, 0, 0, 0],
        )?;
        let raw = session
            .scratch_read(0, 32)
            .map_err(compel(tid, "remote scratch memory"))?;
        *slot = words4(&raw);
    }
    for info in timers {
        remote(
            session,
            tid,
            "POSIX timer",
            libc::SYS_timer_gettime,
            [info.id as u64, scratch, 0, 0, 0, 0],
        )?;
        let raw = session
            .scratch_read(0, 32)
            .map_err(compel(tid, "remote scratch memory"))?;
        let overrun = remote(
            session,
            tid,
            "POSIX timer overrun",
            libc::SYS_timer_getoverrun,
            [info.id as u64, 0, 0, 0, 0, 0],
        )?;
        st.posix_timers.push(PosixTimerState {
            info: info.clone(),
            overrun: overrun as u32,
            setting: words4(&raw),
        });
    }
    st.brk = remote(session, tid, "program break", libc::SYS_brk, [0; 6])? as u64;
    st.dumpable = remote(
        session,
        tid,
        "dumpable flag",
        libc::SYS_prctl,
        [libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0, 0],
    )? as i32;
    st.thp_disabled = remote(
        session,
        tid,
        "THP-disable flag",
        libc::SYS_prctl,
        [libc::PR_GET_THP_DISABLE as u64, 0, 0, 0, 0, 0],
    )? != 0;
    session
        .scratch_write(0, &[0u8; 8])
        .map_err(compel(tid, "remote scratch memory"))?;
    remote(
        session,
        tid,
        "child-subreaper flag",
        libc::SYS_prctl,
        [libc::PR_GET_CHILD_SUBREAPER as u64, scratch, 0, 0, 0, 0],
    )?;
    st.child_subreaper = read_u64(session, tid, 0)? as u32 != 0;
    const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;
    st.membarrier_mask = session
        .syscall(
            libc::SYS_membarrier,
            [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0],
        )
        .unwrap_or(0) as u32;
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
