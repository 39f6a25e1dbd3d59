//! Remote system calls in a seized thread, through a `syscall` gadget.
//!
//! A call sets the thread's registers (rip on the gadget, the number in rax,
//! the arguments, `orig_rax = -1` so that no restart logic runs), single-steps
//! over the `syscall` instruction and reads rax back. That is one ptrace stop
//! per call. A `clone3` that creates a traced child reports a fork/clone event
//! stop first; the new task's pid is returned with the result.

use std::fs::File;
use std::os::unix::fs::FileExt;

use libc::user_regs_struct;
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys;

/// A remote call or a ptrace request failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A ptrace request on a thread failed.
    #[error("ptrace {op} on thread {tid} failed: {errno}")]
    Ptrace {
        /// The request.
        op: &'static str,
        /// The thread.
        tid: i32,
        /// The error.
        errno: Errno,
    },
    /// The thread stopped, exited or was killed in a way the call did not expect.
    #[error("thread {tid} {what} during the remote {call}")]
    UnexpectedStop {
        /// The thread.
        tid: i32,
        /// The call being made.
        call: String,
        /// What happened.
        what: String,
    },
    /// The remote system call returned an error.
    #[error("remote {call} in thread {tid} failed: {errno}")]
    Syscall {
        /// The thread the call ran in.
        tid: i32,
        /// The call, with its key arguments.
        call: String,
        /// The error it returned.
        errno: Errno,
    },
    /// The memory of the task could not be accessed.
    #[error("{op} {len} bytes at {addr:#x} of pid {pid} through /proc/{pid}/mem: {source}")]
    Memory {
        /// `"writing"` or `"reading"`.
        op: &'static str,
        /// The process.
        pid: i32,
        /// The remote address.
        addr: u64,
        /// The length.
        len: usize,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn ptrace_err(op: &'static str, tid: Pid) -> impl FnOnce(Errno) -> RemoteError {
    move |errno| RemoteError::Ptrace {
        op,
        tid: tid.as_raw(),
        errno,
    }
}

/// Waits for the next state change of one thread (retrying on EINTR).
pub(crate) fn wait_thread(tid: Pid) -> Result<WaitStatus, RemoteError> {
    loop {
        match waitpid(tid, Some(WaitPidFlag::__WALL)) {
            Ok(status) => return Ok(status),
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(RemoteError::Ptrace {
                    op: "waitpid",
                    tid: tid.as_raw(),
                    errno,
                })
            }
        }
    }
}

/// The ptrace options every restored task is traced with: creations of
/// threads and processes are followed, and every task dies if the tracer does.
pub(crate) fn trace_options() -> ptrace::Options {
    ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_EXITKILL
}

/// `PTRACE_O_SUSPEND_SECCOMP` (nix does not name it).
const PTRACE_O_SUSPEND_SECCOMP: libc::c_int = 1 << 21;

/// Seizes a task and stops it (PTRACE_SEIZE + PTRACE_INTERRUPT).
pub(crate) fn seize_and_stop(tid: Pid) -> Result<(), RemoteError> {
    ptrace::seize(tid, trace_options()).map_err(ptrace_err("SEIZE", tid))?;
    ptrace::interrupt(tid).map_err(ptrace_err("INTERRUPT", tid))?;
    wait_for_event_stop(tid, "PTRACE_INTERRUPT")
}

/// Waits until a thread reports PTRACE_EVENT_STOP (interrupt, or the first
/// stop of an auto-attached task).
pub(crate) fn wait_for_event_stop(tid: Pid, call: &str) -> Result<(), RemoteError> {
    match wait_thread(tid)? {
        WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP) => Ok(()),
        // A seized task can also report a plain signal stop before the
        // interrupt is seen; the interrupt stop then follows.
        WaitStatus::Stopped(_, sig) => {
            ptrace::cont(tid, None).map_err(ptrace_err("CONT", tid))?;
            let _ = sig;
            wait_for_event_stop(tid, call)
        }
        other => Err(unexpected(tid, call, other)),
    }
}

fn unexpected(tid: Pid, call: &str, status: WaitStatus) -> RemoteError {
    let what = match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("was killed by {sig}"),
        WaitStatus::Stopped(_, sig) => format!("stopped with {sig}"),
        WaitStatus::PtraceEvent(_, sig, event) => format!("reported ptrace event {event} ({sig})"),
        WaitStatus::PtraceSyscall(_) => "made a syscall stop".to_string(),
        other => format!("changed state unexpectedly ({other:?})"),
    };
    RemoteError::UnexpectedStop {
        tid: tid.as_raw(),
        call: call.to_string(),
        what,
    }
}

/// One stopped, traced thread of a task being restored.
#[derive(Debug)]
pub(crate) struct Thread {
    /// Its id.
    pub tid: Pid,
    /// Registers taken at its first stop: segment selectors and flags for
    /// every remote call.
    base: user_regs_struct,
}

impl Thread {
    /// Takes a thread that is in a ptrace stop.
    pub fn stopped(tid: Pid) -> Result<Thread, RemoteError> {
        let base = ptrace::getregs(tid).map_err(ptrace_err("GETREGS", tid))?;
        Ok(Thread { tid, base })
    }

    /// Runs `nr(args)` at `gadget` and returns the raw result (negative errno
    /// on failure) and, for a clone that created a traced task, its pid.
    fn raw_call(
        &self,
        gadget: u64,
        call: &str,
        nr: i64,
        args: &[u64],
    ) -> Result<(i64, Option<Pid>), RemoteError> {
        let tid = self.tid;
        let mut regs = self.base;
        let arg = |i: usize| args.get(i).copied().unwrap_or(0);
        regs.rip = gadget;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = arg(0);
        regs.rsi = arg(1);
        regs.rdx = arg(2);
        regs.r10 = arg(3);
        regs.r8 = arg(4);
        regs.r9 = arg(5);
        ptrace::setregs(tid, regs).map_err(ptrace_err("SETREGS", tid))?;
        ptrace::step(tid, None).map_err(ptrace_err("SINGLESTEP", tid))?;
        let mut child = None;
        loop {
            match wait_thread(tid)? {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => break,
                WaitStatus::PtraceEvent(_, Signal::SIGTRAP, event)
                    if event == libc::PTRACE_EVENT_FORK || event == libc::PTRACE_EVENT_CLONE =>
                {
                    let new = ptrace::getevent(tid).map_err(ptrace_err("GETEVENTMSG", tid))?;
                    child = Some(Pid::from_raw(new as i32));
                    ptrace::step(tid, None).map_err(ptrace_err("SINGLESTEP", tid))?;
                }
                other => return Err(unexpected(tid, call, other)),
            }
        }
        let after = ptrace::getregs(tid).map_err(ptrace_err("GETREGS", tid))?;
        if after.rip != gadget + 2 {
            return Err(RemoteError::UnexpectedStop {
                tid: tid.as_raw(),
                call: call.to_string(),
                what: format!(
                    "stopped at {:#x} instead of after the syscall at {gadget:#x}",
                    after.rip
                ),
            });
        }
        Ok((after.rax as i64, child))
    }

    /// Runs a remote system call; a negative result becomes an error.
    pub fn call(&self, gadget: u64, call: &str, nr: i64, args: &[u64]) -> Result<u64, RemoteError> {
        let (ret, _) = self.raw_call(gadget, call, nr, args)?;
        check(self.tid, call, ret)
    }

    /// Runs a remote system call and returns the raw result (-errno on failure).
    pub fn call_raw(
        &self,
        gadget: u64,
        call: &str,
        nr: i64,
        args: &[u64],
    ) -> Result<i64, RemoteError> {
        Ok(self.raw_call(gadget, call, nr, args)?.0)
    }

    /// Runs a remote clone3 that creates a traced task; returns the new pid
    /// once the new task has reached its first stop.
    pub fn call_clone(&self, gadget: u64, call: &str, args: &[u64]) -> Result<Pid, RemoteError> {
        let (ret, child) = self.raw_call(gadget, call, libc::SYS_clone3, args)?;
        let ret = check(self.tid, call, ret)?;
        let child = child.ok_or_else(|| RemoteError::UnexpectedStop {
            tid: self.tid.as_raw(),
            call: call.to_string(),
            what: format!("returned {ret} without a clone event"),
        })?;
        if child.as_raw() as u64 != ret {
            return Err(RemoteError::UnexpectedStop {
                tid: self.tid.as_raw(),
                call: call.to_string(),
                what: format!("returned {ret} but the clone event named {child}"),
            });
        }
        wait_for_event_stop(child, call)?;
        Ok(child)
    }

    /// Runs the last call of a thread (munmap of the trampoline, which holds
    /// the gadget) under PTRACE_SYSCALL and stops at its syscall exit, where the
    /// final registers can be set.
    pub fn final_call(
        &self,
        gadget: u64,
        call: &str,
        nr: i64,
        args: &[u64],
    ) -> Result<i64, RemoteError> {
        let tid = self.tid;
        let mut regs = self.base;
        regs.rip = gadget;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args.first().copied().unwrap_or(0);
        regs.rsi = args.get(1).copied().unwrap_or(0);
        regs.rdx = args.get(2).copied().unwrap_or(0);
        ptrace::setregs(tid, regs).map_err(ptrace_err("SETREGS", tid))?;
        for stage in ["entry", "exit"] {
            ptrace::syscall(tid, None).map_err(ptrace_err("SYSCALL", tid))?;
            match wait_thread(tid)? {
                WaitStatus::PtraceSyscall(_) => {}
                other => {
                    return Err(RemoteError::UnexpectedStop {
                        tid: tid.as_raw(),
                        call: format!("{call} (waiting for the syscall {stage} stop)"),
                        what: format!("{other:?}"),
                    })
                }
            }
        }
        let after = ptrace::getregs(tid).map_err(ptrace_err("GETREGS", tid))?;
        Ok(after.rax as i64)
    }

    /// Ends the thread's process with a raw wait status: `exit_group` for a
    /// normal exit, or the signal delivered with its default action. Returns
    /// once the tracer has seen the exit (the task is then a zombie of its
    /// parent).
    pub fn die(&self, gadget: u64, wait_status: u32) -> Result<(), RemoteError> {
        let tid = self.tid;
        let call = format!("exit with wait status {wait_status:#x}");
        let signal = (wait_status & 0x7f) as i32;
        let mut regs = self.base;
        regs.rip = gadget;
        regs.orig_rax = u64::MAX;
        if signal == 0 {
            regs.rax = libc::SYS_exit_group as u64;
            regs.rdi = u64::from((wait_status >> 8) & 0xff);
        } else {
            self.set_sigmask(0)?;
            regs.rax = libc::SYS_kill as u64;
            regs.rdi = tid.as_raw() as u64;
            regs.rsi = signal as u64;
        }
        ptrace::setregs(tid, regs).map_err(ptrace_err("SETREGS", tid))?;
        ptrace::cont(tid, None).map_err(ptrace_err("CONT", tid))?;
        loop {
            match wait_thread(tid)? {
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return Ok(()),
                WaitStatus::Stopped(_, sig) => {
                    ptrace::cont(tid, Some(sig)).map_err(ptrace_err("CONT", tid))?
                }
                WaitStatus::PtraceEvent(..) | WaitStatus::PtraceSyscall(_) => {
                    ptrace::cont(tid, None).map_err(ptrace_err("CONT", tid))?
                }
                other => return Err(unexpected(tid, &call, other)),
            }
        }
    }

    /// Sets the general registers.
    pub fn set_regs(&self, regs: user_regs_struct) -> Result<(), RemoteError> {
        ptrace::setregs(self.tid, regs).map_err(ptrace_err("SETREGS", self.tid))
    }

    /// Reads the XSAVE area (sized by the kernel).
    pub fn xstate(&self) -> Result<Vec<u8>, RemoteError> {
        let mut buf = vec![0u8; 16384];
        let len = sys::ptrace::get_xstate(self.tid, &mut buf)
            .map_err(ptrace_err("GETREGSET(NT_X86_XSTATE)", self.tid))?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Writes the XSAVE area.
    pub fn set_xstate(&self, data: &[u8]) -> Result<(), RemoteError> {
        sys::ptrace::set_xstate(self.tid, data)
            .map_err(ptrace_err("SETREGSET(NT_X86_XSTATE)", self.tid))
    }

    /// Sets the blocked signal mask.
    pub fn set_sigmask(&self, mask: u64) -> Result<(), RemoteError> {
        sys::ptrace::set_sigmask(self.tid, mask).map_err(ptrace_err("SETSIGMASK", self.tid))
    }

    /// The thread's rseq registration: (area, size, signature); size 0 if none.
    pub fn rseq(&self) -> Result<(u64, u32, u32), RemoteError> {
        sys::ptrace::rseq_config(self.tid).map_err(ptrace_err("GET_RSEQ_CONFIGURATION", self.tid))
    }

    /// Adds PTRACE_O_SUSPEND_SECCOMP to the thread's options: its seccomp
    /// filters do not act while it is traced, so the remote calls that follow
    /// the installation of a filter are not filtered; they act again once
    /// the thread is detached.
    pub fn suspend_seccomp(&self) -> Result<(), RemoteError> {
        let options = trace_options() | ptrace::Options::from_bits_retain(PTRACE_O_SUSPEND_SECCOMP);
        ptrace::setoptions(self.tid, options).map_err(ptrace_err("SETOPTIONS", self.tid))
    }

    /// Detaches, letting the thread run (with `signal` delivered, if any).
    pub fn detach(&self, signal: Option<Signal>) -> Result<(), RemoteError> {
        ptrace::detach(self.tid, signal).map_err(ptrace_err("DETACH", self.tid))
    }
}

fn check(tid: Pid, call: &str, ret: i64) -> Result<u64, RemoteError> {
    if (-4095..0).contains(&ret) {
        Err(RemoteError::Syscall {
            tid: tid.as_raw(),
            call: call.to_string(),
            errno: Errno::from_raw(-ret as i32),
        })
    } else {
        Ok(ret as u64)
    }
}

/// The memory of a traced process, through `/proc/PID/mem` (which also
/// reaches read-only and PROT_NONE pages).
#[derive(Debug)]
pub(crate) struct Memory {
    pid: i32,
    file: File,
}

impl Memory {
    /// Opens the memory of `pid`.
    pub fn open(pid: i32) -> Result<Memory, RemoteError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|source| RemoteError::Memory {
                op: "opening",
                pid,
                addr: 0,
                len: 0,
                source,
            })?;
        Ok(Memory { pid, file })
    }

    /// Writes `data` at `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), RemoteError> {
        self.file
            .write_all_at(data, addr)
            .map_err(|source| RemoteError::Memory {
                op: "writing",
                pid: self.pid,
                addr,
                len: data.len(),
                source,
            })
    }

    /// Reads `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, RemoteError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, addr)
            .map_err(|source| RemoteError::Memory {
                op: "reading",
                pid: self.pid,
                addr,
                len,
                source,
            })?;
        Ok(buf)
    }
}
