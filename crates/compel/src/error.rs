//! The error type of every compel operation.

use std::io;
use std::path::PathBuf;

use crate::Pid;

/// Why a ptrace, freeze or remote-syscall operation failed. Each variant names the thread, address or
/// path involved; [`CompelError::errno`] gives the errno a caller should report (RPC `cr_errno`).
#[derive(Debug, thiserror::Error)]
pub enum CompelError {
    /// A ptrace request failed.
    #[error("ptrace {request} on thread {tid} failed: {source}")]
    Ptrace {
        request: &'static str,
        tid: Pid,
        #[source]
        source: io::Error,
    },
    /// waitpid on a traced thread failed.
    #[error("waitpid on thread {tid} failed: {source}")]
    Wait {
        tid: Pid,
        #[source]
        source: io::Error,
    },
    /// The process does not exist.
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: Pid },
    /// The thread exited or was killed while we were operating on it.
    #[error("thread {tid} is gone ({how})")]
    ThreadGone { tid: Pid, how: String },
    /// The caller itself is part of the tree it asked to freeze.
    #[error("The criu itself is within dumped tree (pid {pid} is ours)")]
    CriuInsideTree { pid: Pid },
    /// The thread is already traced by another tracer.
    #[error("thread {tid} is already traced by pid {tracer}")]
    AlreadyTraced { tid: Pid, tracer: Pid },
    /// A stop we cannot handle in this state.
    #[error("thread {tid}: unexpected stop {event} while {during}")]
    UnexpectedStop {
        tid: Pid,
        event: String,
        during: &'static str,
    },
    /// An operation did not finish in time.
    #[error("thread {tid}: timed out after {millis} ms while {during}")]
    Timeout {
        tid: Pid,
        millis: u128,
        during: &'static str,
    },
    /// Reading a /proc (or cgroup) file failed.
    #[error("cannot access {path}: {source}")]
    Proc {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A /proc file had content we could not parse.
    #[error("cannot parse {path}: {detail}")]
    ProcParse { path: PathBuf, detail: String },
    /// No `syscall` instruction was found to run remote syscalls with.
    #[error(
        "thread {tid}: no syscall gadget (not stopped in a syscall, no [vdso]); use a trampoline"
    )]
    NoSyscallGadget { tid: Pid },
    /// The bytes at a trampoline address are not a `syscall` instruction.
    #[error("thread {tid}: no syscall instruction at trampoline {addr:#x} (found {found:02x?})")]
    BadTrampoline { tid: Pid, addr: u64, found: Vec<u8> },
    /// A remote syscall returned an error.
    #[error("remote syscall {nr} in thread {tid} failed with errno {errno}")]
    RemoteSyscall { tid: Pid, nr: i64, errno: i32 },
    /// Reading or writing the target's memory through /proc/PID/mem failed.
    #[error("{op} of {len} bytes at {addr:#x} in process {pid} failed: {source}")]
    Mem {
        op: &'static str,
        pid: Pid,
        addr: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    /// A short read or write through /proc/PID/mem.
    #[error("short {op} at {addr:#x} in process {pid}: {done} of {len} bytes")]
    ShortMem {
        op: &'static str,
        pid: Pid,
        addr: u64,
        len: usize,
        done: usize,
    },
    /// An access outside the scratch area.
    #[error("scratch access at offset {offset} length {len} exceeds the scratch size {size}")]
    ScratchRange {
        offset: usize,
        len: usize,
        size: usize,
    },
    /// Moving a file descriptor between processes failed.
    #[error("{op} of fd {fd} for process {pid} failed: {source}")]
    Fd {
        op: &'static str,
        pid: Pid,
        fd: i32,
        #[source]
        source: io::Error,
    },
    /// A register set had a size the kernel or this crate does not accept.
    #[error("thread {tid}: {what} has {got} bytes, expected {expected}")]
    RegsetSize {
        tid: Pid,
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// The cgroup freezer did not reach the wanted state.
    #[error("cgroup freezer {path}: {detail}")]
    Freezer { path: PathBuf, detail: String },
    /// A request that makes no sense (bad argument).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl CompelError {
    /// The errno that best describes this error, for RPC `cr_errno` and similar.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CompelError::Ptrace { source, .. }
            | CompelError::Wait { source, .. }
            | CompelError::Proc { source, .. }
            | CompelError::Mem { source, .. }
            | CompelError::Fd { source, .. } => source.raw_os_error(),
            CompelError::NoSuchProcess { .. } | CompelError::ThreadGone { .. } => Some(libc::ESRCH),
            CompelError::CriuInsideTree { .. } => Some(libc::EINVAL),
            CompelError::AlreadyTraced { .. } => Some(libc::EPERM),
            CompelError::Timeout { .. } => Some(libc::ETIMEDOUT),
            CompelError::RemoteSyscall { errno, .. } => Some(*errno),
            CompelError::ScratchRange { .. }
            | CompelError::RegsetSize { .. }
            | CompelError::InvalidArgument(_) => Some(libc::EINVAL),
            CompelError::ShortMem { .. } => Some(libc::EIO),
            CompelError::UnexpectedStop { .. }
            | CompelError::ProcParse { .. }
            | CompelError::NoSyscallGadget { .. }
            | CompelError::BadTrampoline { .. }
            | CompelError::Freezer { .. } => None,
        }
    }

    pub(crate) fn ptrace(request: &'static str, tid: Pid, source: io::Error) -> Self {
        CompelError::Ptrace {
            request,
            tid,
            source,
        }
    }

    pub(crate) fn proc(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CompelError::Proc {
            path: path.into(),
            source,
        }
    }
}
