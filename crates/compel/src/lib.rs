//! criu-compel: the ptrace layer of criu-rs (x86_64).
//!
//! - [`freeze_tree`] seizes and stops a whole process tree ([`FrozenTree`]), and resumes or kills it.
//! - [`Tracee`] is one seized thread: stops, registers ([`UserRegs`], [`XState`]), signal mask, pending
//!   signals, rseq configuration, syscall info.
//! - [`RemoteSession`] runs syscalls inside a stopped thread by single-stepping a `syscall` gadget, with a
//!   scratch mapping, and moves file descriptors in both directions.
//! - [`ProcMem`] reads and writes another process's memory through /proc/PID/mem.
//! - [`proc`] parses /proc/PID/stat ([`proc::ProcStat`]) for the dump and restore engines alike.
//! - [`CpuPin`] pins the tracer to its CPU (restore; [`FreezeOptions::colocate`]).
//! - [`fixup_syscall_restart`] prepares dumped registers of a thread stopped inside a syscall.
//!
//! Unsafe code is confined to the `sys` module.
#![deny(unsafe_code)]

mod affinity;
mod error;
pub mod proc;
mod procmem;
mod regs;
mod remote;
#[allow(unsafe_code)]
mod sys;
mod tracee;
mod tree;

pub use affinity::CpuPin;
pub use error::CompelError;
pub use procmem::ProcMem;
pub use regs::{
    fixup_syscall_restart, words, xfeature, xfeature_layout, FxSave, RestartFixup, RseqConfig,
    SigInfo, SyscallInfo, SyscallState, UserRegs, XState, XSAVE_HEADER_OFFSET,
};
pub use remote::{
    Gadget, RemoteCall, RemoteOptions, RemoteSession, DEFAULT_SCRATCH_SIZE, TRAMPOLINE_PAGE_CODE,
};
pub use sys::MAX_FDS_PER_MESSAGE;
pub use tracee::{SeizeOptions, StopEvent, Tracee, DEFAULT_STOP_TIMEOUT};
pub use tree::{freeze_tree, FreezeOptions, FrozenTask, FrozenThreadState, FrozenTree, KillReport};

/// A process or thread id.
pub type Pid = i32;

/// A duplicate of fd `target_fd` of process `pid` (pidfd_open + pidfd_getfd), without stopping it.
pub fn steal_fd(pid: Pid, target_fd: i32) -> Result<std::os::fd::OwnedFd, CompelError> {
    use std::os::fd::AsFd;
    let pidfd = sys::pidfd_open(pid, 0).map_err(|source| match source.raw_os_error() {
        Some(libc::ESRCH) => CompelError::NoSuchProcess { pid },
        _ => CompelError::Fd {
            op: "pidfd_open",
            pid,
            fd: -1,
            source,
        },
    })?;
    sys::pidfd_getfd(pidfd.as_fd(), target_fd).map_err(|source| CompelError::Fd {
        op: "pidfd_getfd",
        pid,
        fd: target_fd,
        source,
    })
}

/// The calling thread's id (the tracer thread that owns the [`Tracee`]s it seizes).
pub fn current_tid() -> Pid {
    sys::gettid()
}

/// kill(2): sends `sig` to process `pid` (0 only checks that it exists).
pub fn send_signal(pid: Pid, sig: i32) -> Result<(), CompelError> {
    sys::kill(pid, sig).map_err(|source| match source.raw_os_error() {
        Some(libc::ESRCH) => CompelError::NoSuchProcess { pid },
        _ => CompelError::InvalidArgument(format!("kill({pid}, {sig}): {source}")),
    })
}

/// tgkill(2): sends `sig` to thread `tid` of process `tgid` (it lands in the thread's private queue).
pub fn send_thread_signal(tgid: Pid, tid: Pid, sig: i32) -> Result<(), CompelError> {
    sys::tgkill(tgid, tid, sig).map_err(|source| match source.raw_os_error() {
        Some(libc::ESRCH) => CompelError::NoSuchProcess { pid: tid },
        _ => CompelError::InvalidArgument(format!("tgkill({tgid}, {tid}, {sig}): {source}")),
    })
}
