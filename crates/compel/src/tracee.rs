//! One seized thread: stops, registers, signal state, and resuming.

use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::regs::{FxSave, RseqConfig, SigInfo, SyscallInfo, UserRegs, XState};
use crate::sys;
use crate::{CompelError, Pid};

/// Default upper bound for waiting on a stop that must come promptly (an interrupt trap).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for PTRACE_SEIZE. PTRACE_O_TRACESYSGOOD is always set so syscall stops are recognisable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeizeOptions {
    /// PTRACE_O_TRACECLONE: threads created by clone(CLONE_THREAD...) / clone3 are auto-attached.
    pub trace_clone: bool,
    /// PTRACE_O_TRACEFORK (and TRACEVFORK): forked children are auto-attached.
    pub trace_fork: bool,
    /// PTRACE_O_TRACEEXIT: a stop just before the thread exits.
    pub trace_exit: bool,
    /// PTRACE_O_EXITKILL: the tracee is SIGKILLed if the tracer exits (use during restore).
    pub exit_kill: bool,
    /// PTRACE_O_SUSPEND_SECCOMP: injected syscalls bypass the tracee's seccomp filters.
    pub suspend_seccomp: bool,
}

impl SeizeOptions {
    /// The PTRACE_O_* bits.
    pub fn bits(&self) -> u64 {
        let mut bits = libc::PTRACE_O_TRACESYSGOOD as u64;
        if self.trace_clone {
            bits |= libc::PTRACE_O_TRACECLONE as u64;
        }
        if self.trace_fork {
            bits |= (libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEVFORK) as u64;
        }
        if self.trace_exit {
            bits |= libc::PTRACE_O_TRACEEXIT as u64;
        }
        if self.exit_kill {
            bits |= libc::PTRACE_O_EXITKILL as u64;
        }
        if self.suspend_seccomp {
            bits |= libc::PTRACE_O_SUSPEND_SECCOMP as u64;
        }
        bits
    }
}

/// What `waitpid` reported for a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopEvent {
    /// PTRACE_EVENT_STOP with SIGTRAP: the stop PTRACE_INTERRUPT asked for (or the first stop of an
    /// auto-attached child).
    Interrupted,
    /// PTRACE_EVENT_STOP with a stop signal: the thread is in group-stop (SIGSTOP, SIGTSTP, ...).
    GroupStop { signal: i32 },
    /// Signal-delivery-stop: `signal` is about to be delivered. Resuming with 0 discards it; resume
    /// with `signal` (see [`Tracee::pending_delivery`]) to deliver it. A single-step trap also
    /// reports as `Signal { signal: SIGTRAP }`.
    Signal { signal: i32 },
    /// PTRACE_EVENT_CLONE: the thread created a thread (or a process with a non-SIGCHLD exit signal).
    Clone { new_tid: Pid },
    /// PTRACE_EVENT_FORK.
    Fork { new_pid: Pid },
    /// PTRACE_EVENT_VFORK.
    Vfork { new_pid: Pid },
    /// PTRACE_EVENT_VFORK_DONE.
    VforkDone,
    /// PTRACE_EVENT_EXEC; `former_tid` is the tid the execing thread had.
    Exec { former_tid: Pid },
    /// PTRACE_EVENT_EXIT: about to exit with wait status `status`.
    ExitPending { status: i32 },
    /// PTRACE_EVENT_SECCOMP.
    Seccomp,
    /// A syscall-entry or syscall-exit stop (PTRACE_SYSCALL).
    Syscall,
    /// The thread exited with `code` (it is gone and reaped from the tracer's point of view).
    Exited { code: i32 },
    /// The thread was killed by `signal`.
    Killed { signal: i32 },
}

impl StopEvent {
    /// Whether the thread no longer exists.
    pub fn is_gone(&self) -> bool {
        matches!(self, StopEvent::Exited { .. } | StopEvent::Killed { .. })
    }
}

impl std::fmt::Display for StopEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// One thread seized with PTRACE_SEIZE, by tid.
///
/// ptrace binds a tracee to the tracer *thread*, so a `Tracee` is neither `Send` nor `Sync`: use it on
/// the thread that seized it.
///
/// Dropping a `Tracee` that is still attached detaches it: if it is running it is first interrupted
/// (waiting up to 1 s for the stop), then PTRACE_DETACH is issued with the signal of a pending
/// signal-delivery-stop (so no signal is lost), and signals deferred during remote syscalls are sent
/// again with tgkill. Registers are *not* restored by `Drop` (a [`crate::RemoteSession`] restores its
/// own changes when it is closed or dropped). A thread is therefore never left in a ptrace-stop after
/// its `Tracee` is gone; the worst case is a thread that already exited.
#[derive(Debug)]
pub struct Tracee {
    tid: Pid,
    tgid: Pid,
    options: SeizeOptions,
    stopped: bool,
    gone: bool,
    detached: bool,
    last_stop: Option<StopEvent>,
    /// The last resume was PTRACE_SINGLESTEP/SYSCALL, so a SIGTRAP stop is our own trap, not a signal.
    stepping: bool,
    deferred_signals: Vec<i32>,
    _bound_to_tracer_thread: PhantomData<*const ()>,
}

pub(crate) fn read_status_field(tid: Pid, field: &str) -> Result<Option<String>, CompelError> {
    let path = format!("/proc/{tid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::ESRCH) {
            CompelError::NoSuchProcess { pid: tid }
        } else {
            CompelError::proc(&path, e)
        }
    })?;
    Ok(text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_string())
    }))
}

fn read_tgid(tid: Pid) -> Result<Pid, CompelError> {
    let value = read_status_field(tid, "Tgid")?.ok_or_else(|| CompelError::ProcParse {
        path: format!("/proc/{tid}/status").into(),
        detail: "no Tgid line".into(),
    })?;
    value.parse().map_err(|_| CompelError::ProcParse {
        path: format!("/proc/{tid}/status").into(),
        detail: format!("bad Tgid {value:?}"),
    })
}

/// Bytes to offer PTRACE_GETREGSET(NT_X86_XSTATE): the largest XSAVE area of every feature the CPU
/// supports (CPUID 0xD.0 ECX), at least a page. Asked once per process: CPUID traps to the hypervisor in
/// a VM and costs 6-10 µs there, once per thread of every dump and restore otherwise.
fn xsave_buffer_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        let (_, _, max_size, _) = sys::cpuid(0xd, 0);
        (max_size as usize).max(4096)
    })
}

/// How many times [`Tracee::wait_stop_timeout`] yields the CPU before it starts sleeping (about
/// 100-200 µs of checks on our machines).
const YIELDS_BEFORE_SLEEPING: u32 = 64;

impl Tracee {
    /// PTRACE_SEIZE of thread `tid`. The thread keeps running; call [`Tracee::interrupt`] and
    /// [`Tracee::wait_stop`] (or [`Tracee::interrupt_and_wait`]) to stop it.
    pub fn seize(tid: Pid, options: SeizeOptions) -> Result<Tracee, CompelError> {
        if tid <= 0 {
            return Err(CompelError::InvalidArgument(format!("thread id {tid}")));
        }
        let tgid = read_tgid(tid)?;
        Tracee::seize_in_group(tid, tgid, options)
    }

    /// [`Tracee::seize`] of a thread known to belong to process `tgid` (e.g. listed in
    /// /proc/TGID/task), without reading its /proc status for the tgid.
    pub(crate) fn seize_in_group(
        tid: Pid,
        tgid: Pid,
        options: SeizeOptions,
    ) -> Result<Tracee, CompelError> {
        if let Err(e) = sys::seize(tid, options.bits()) {
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => CompelError::NoSuchProcess { pid: tid },
                Some(libc::EPERM) => match read_status_field(tid, "TracerPid")
                    .ok()
                    .flatten()
                    .and_then(|t| t.parse::<Pid>().ok())
                {
                    Some(tracer) if tracer != 0 => CompelError::AlreadyTraced { tid, tracer },
                    _ => CompelError::ptrace("PTRACE_SEIZE", tid, e),
                },
                _ => CompelError::ptrace("PTRACE_SEIZE", tid, e),
            });
        }
        Ok(Tracee::attached(tid, tgid, options, false))
    }

    fn attached(tid: Pid, tgid: Pid, options: SeizeOptions, stopped: bool) -> Tracee {
        Tracee {
            tid,
            tgid,
            options,
            stopped,
            gone: false,
            detached: false,
            last_stop: None,
            stepping: false,
            deferred_signals: Vec::new(),
            _bound_to_tracer_thread: PhantomData,
        }
    }

    /// Takes over a thread or process the kernel auto-attached because `parent` reported a
    /// PTRACE_EVENT_CLONE/FORK/VFORK with `new_tid`, and waits for its first stop.
    pub fn adopt_auto_attached(new_tid: Pid, parent: &Tracee) -> Result<Tracee, CompelError> {
        // The new task inherits the parent's ptrace options. It is a thread of the parent's group, listed
        // under /proc/TGID/task, or a new process whose tgid is its own id: one stat instead of reading
        // and parsing /proc/TID/status for every thread a restore creates.
        let in_parent_group =
            std::path::Path::new(&format!("/proc/{}/task/{new_tid}", parent.tgid)).exists();
        let tgid = if in_parent_group {
            parent.tgid
        } else {
            new_tid
        };
        let mut child = Tracee::attached(new_tid, tgid, parent.options, false);
        match child.wait_stop_timeout(DEFAULT_STOP_TIMEOUT)? {
            StopEvent::Interrupted | StopEvent::GroupStop { .. } => Ok(child),
            StopEvent::Signal {
                signal: libc::SIGSTOP,
            } => Ok(child),
            event if event.is_gone() => Err(CompelError::ThreadGone {
                tid: new_tid,
                how: event.to_string(),
            }),
            event => Err(CompelError::UnexpectedStop {
                tid: new_tid,
                event: event.to_string(),
                during: "waiting for the first stop of an auto-attached task",
            }),
        }
    }

    pub fn tid(&self) -> Pid {
        self.tid
    }

    /// The thread-group id (process id) of this thread.
    pub fn tgid(&self) -> Pid {
        self.tgid
    }

    pub fn options(&self) -> SeizeOptions {
        self.options
    }

    /// Whether the thread is in a ptrace-stop (as far as this tracer resumed it).
    pub fn is_stopped(&self) -> bool {
        self.stopped && !self.gone
    }

    /// Whether the thread has exited (reported by waitpid).
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// The last stop waitpid reported, if the thread has not been resumed since.
    pub fn last_stop(&self) -> Option<StopEvent> {
        if self.stopped {
            self.last_stop
        } else {
            None
        }
    }

    /// The signal of the current signal-delivery-stop, if the thread sits in one: resume with it to
    /// deliver it (with its original siginfo), or with 0 to discard it. The SIGTRAP that ends one of our
    /// own single-steps is not a signal to deliver and gives `None`.
    pub fn pending_delivery(&self) -> Option<i32> {
        match self.last_stop() {
            Some(StopEvent::Signal { signal }) if !(self.stepping && signal == libc::SIGTRAP) => {
                Some(signal)
            }
            _ => None,
        }
    }

    /// Changes the ptrace options (PTRACE_SETOPTIONS); the thread must be stopped.
    pub fn set_options(&mut self, options: SeizeOptions) -> Result<(), CompelError> {
        sys::set_options(self.tid, options.bits())
            .map_err(|e| CompelError::ptrace("PTRACE_SETOPTIONS", self.tid, e))?;
        self.options = options;
        Ok(())
    }

    /// PTRACE_INTERRUPT: asks for a PTRACE_EVENT_STOP; collect it with [`Tracee::wait_stop`].
    pub fn interrupt(&self) -> Result<(), CompelError> {
        sys::interrupt(self.tid).map_err(|e| self.gone_or("PTRACE_INTERRUPT", e))
    }

    fn gone_or(&self, request: &'static str, e: std::io::Error) -> CompelError {
        if e.raw_os_error() == Some(libc::ESRCH)
            && !std::path::Path::new(&format!("/proc/{}", self.tid)).exists()
        {
            CompelError::ThreadGone {
                tid: self.tid,
                how: format!("{request}: no such thread"),
            }
        } else {
            CompelError::ptrace(request, self.tid, e)
        }
    }

    fn decode(&mut self, status: i32) -> Result<StopEvent, CompelError> {
        let event = if libc::WIFEXITED(status) {
            StopEvent::Exited {
                code: libc::WEXITSTATUS(status),
            }
        } else if libc::WIFSIGNALED(status) {
            StopEvent::Killed {
                signal: libc::WTERMSIG(status),
            }
        } else {
            let sig = libc::WSTOPSIG(status);
            let ptrace_event = (status >> 16) & 0xffff;
            let msg = || {
                sys::get_event_msg(self.tid)
                    .map_err(|e| CompelError::ptrace("PTRACE_GETEVENTMSG", self.tid, e))
            };
            match ptrace_event {
                0 if sig == (libc::SIGTRAP | 0x80) => StopEvent::Syscall,
                0 => StopEvent::Signal { signal: sig },
                sys::PTRACE_EVENT_STOP if is_stop_signal(sig) => {
                    StopEvent::GroupStop { signal: sig }
                }
                sys::PTRACE_EVENT_STOP => StopEvent::Interrupted,
                libc::PTRACE_EVENT_CLONE => StopEvent::Clone {
                    new_tid: msg()? as Pid,
                },
                libc::PTRACE_EVENT_FORK => StopEvent::Fork {
                    new_pid: msg()? as Pid,
                },
                libc::PTRACE_EVENT_VFORK => StopEvent::Vfork {
                    new_pid: msg()? as Pid,
                },
                libc::PTRACE_EVENT_VFORK_DONE => StopEvent::VforkDone,
                libc::PTRACE_EVENT_EXEC => StopEvent::Exec {
                    former_tid: msg()? as Pid,
                },
                libc::PTRACE_EVENT_EXIT => StopEvent::ExitPending {
                    status: msg()? as i32,
                },
                libc::PTRACE_EVENT_SECCOMP => StopEvent::Seccomp,
                other => {
                    return Err(CompelError::UnexpectedStop {
                        tid: self.tid,
                        event: format!("ptrace event {other} signal {sig}"),
                        during: "decoding a wait status",
                    })
                }
            }
        };
        if event.is_gone() {
            self.gone = true;
            self.stopped = false;
        } else {
            self.stopped = true;
        }
        self.last_stop = Some(event);
        Ok(event)
    }

    /// Blocks until the thread reports a stop (or exits).
    pub fn wait_stop(&mut self) -> Result<StopEvent, CompelError> {
        if self.gone {
            return Err(CompelError::ThreadGone {
                tid: self.tid,
                how: "already reported as exited".into(),
            });
        }
        match sys::waitpid(self.tid, libc::__WALL) {
            Ok(Some((_, status))) => self.decode(status),
            Ok(None) => Err(CompelError::UnexpectedStop {
                tid: self.tid,
                event: "nothing".into(),
                during: "a blocking waitpid",
            }),
            Err(e) => Err(self.wait_error(e)),
        }
    }

    fn wait_error(&mut self, e: std::io::Error) -> CompelError {
        if e.raw_os_error() == Some(libc::ECHILD) {
            // Not (or no longer) our tracee: it exited and was reaped, or someone else detached it.
            self.gone = true;
            self.stopped = false;
            CompelError::ThreadGone {
                tid: self.tid,
                how: "waitpid: no such child".into(),
            }
        } else {
            CompelError::Wait {
                tid: self.tid,
                source: e,
            }
        }
    }

    /// Like [`Tracee::wait_stop`] but gives up with [`CompelError::Timeout`] after `timeout`.
    ///
    /// It polls (WNOHANG) so that it can time out: first yielding the CPU between checks, then
    /// sleeping with a growing pause. Profiling showed sleeps alone cost 45 of the 73 ms of a
    /// 100-thread restore. A blocking wait on a SIGCHLD signalfd would remove the polling entirely.
    pub fn wait_stop_timeout(&mut self, timeout: Duration) -> Result<StopEvent, CompelError> {
        if self.gone {
            return Err(CompelError::ThreadGone {
                tid: self.tid,
                how: "already reported as exited".into(),
            });
        }
        let start = Instant::now();
        let mut pause = Duration::from_micros(5);
        let mut checks = 0u32;
        loop {
            match sys::waitpid(self.tid, libc::__WALL | libc::WNOHANG) {
                Ok(Some((_, status))) => return self.decode(status),
                Ok(None) => {}
                Err(e) => return Err(self.wait_error(e)),
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Err(CompelError::Timeout {
                    tid: self.tid,
                    millis: timeout.as_millis(),
                    during: "waiting for a ptrace stop",
                });
            }
            checks += 1;
            if checks <= YIELDS_BEFORE_SLEEPING {
                // Most stops (a single-stepped remote syscall, an interrupt) arrive within a few µs,
                // while the shortest sleep lasts 80-110 µs on our VMs (timer slack): yield first.
                std::thread::yield_now();
                continue;
            }
            std::thread::sleep(pause.min(timeout - elapsed));
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// Interrupts the thread and waits until it sits in a PTRACE_EVENT_STOP (returns `Interrupted` or
    /// `GroupStop`). A signal-delivery-stop that comes first is not lost: the signal is delivered
    /// (PTRACE_CONT with it, so the handler frame is set up or the default action runs) and the thread is
    /// interrupted again. A thread that exits meanwhile gives [`CompelError::ThreadGone`].
    pub fn interrupt_and_wait(&mut self, timeout: Duration) -> Result<StopEvent, CompelError> {
        if matches!(
            self.last_stop(),
            Some(StopEvent::Interrupted | StopEvent::GroupStop { .. })
        ) {
            return Ok(self.last_stop.unwrap_or(StopEvent::Interrupted));
        }
        let deadline = Instant::now() + timeout;
        if !self.stopped {
            self.interrupt()?;
        }
        loop {
            let event = if self.stopped {
                // Already in some other stop (e.g. a signal-delivery-stop reported earlier).
                self.last_stop.unwrap_or(StopEvent::Interrupted)
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                self.wait_stop_timeout(left)?
            };
            match event {
                StopEvent::Interrupted | StopEvent::GroupStop { .. } => return Ok(event),
                StopEvent::Signal { .. } => {
                    let signal = self.pending_delivery().unwrap_or(0);
                    self.cont(signal)?;
                    self.interrupt()?;
                }
                StopEvent::Exited { .. } | StopEvent::Killed { .. } => {
                    return Err(CompelError::ThreadGone {
                        tid: self.tid,
                        how: event.to_string(),
                    })
                }
                StopEvent::ExitPending { .. } => {
                    // The thread is exiting: let it go and report it as gone.
                    self.cont(0)?;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let last = self.wait_stop_timeout(left)?;
                    return Err(CompelError::ThreadGone {
                        tid: self.tid,
                        how: last.to_string(),
                    });
                }
                StopEvent::Clone { .. }
                | StopEvent::Fork { .. }
                | StopEvent::Vfork { .. }
                | StopEvent::VforkDone
                | StopEvent::Exec { .. }
                | StopEvent::Seccomp
                | StopEvent::Syscall => {
                    // Event stops are stops too; a further PTRACE_INTERRUPT trap is pending. The caller
                    // decides about auto-attached children (seized trees do not set TRACECLONE/FORK).
                    return Ok(event);
                }
            }
        }
    }

    fn ensure_stopped(&self, what: &'static str) -> Result<(), CompelError> {
        if self.gone {
            return Err(CompelError::ThreadGone {
                tid: self.tid,
                how: format!("{what}: thread already exited"),
            });
        }
        Ok(())
    }

    /// The general-purpose registers (NT_PRSTATUS).
    pub fn regs(&self) -> Result<UserRegs, CompelError> {
        self.ensure_stopped("GETREGSET")?;
        let mut buf = [0u8; UserRegs::SIZE];
        let got = sys::get_regset(self.tid, sys::NT_PRSTATUS, &mut buf)
            .map_err(|e| self.gone_or("PTRACE_GETREGSET(NT_PRSTATUS)", e))?;
        if got != UserRegs::SIZE {
            return Err(CompelError::RegsetSize {
                tid: self.tid,
                what: "NT_PRSTATUS",
                got,
                expected: UserRegs::SIZE,
            });
        }
        Ok(UserRegs::from_bytes(&buf))
    }

    pub fn set_regs(&self, regs: &UserRegs) -> Result<(), CompelError> {
        self.ensure_stopped("SETREGSET")?;
        sys::set_regset(self.tid, sys::NT_PRSTATUS, &regs.to_bytes())
            .map_err(|e| self.gone_or("PTRACE_SETREGSET(NT_PRSTATUS)", e))
    }

    /// The XSAVE area (NT_X86_XSTATE), exactly as large as the kernel reports.
    pub fn xstate(&self) -> Result<XState, CompelError> {
        self.ensure_stopped("GETREGSET")?;
        let mut buf = vec![0u8; xsave_buffer_size()];
        let got = sys::get_regset(self.tid, sys::NT_X86_XSTATE, &mut buf)
            .map_err(|e| self.gone_or("PTRACE_GETREGSET(NT_X86_XSTATE)", e))?;
        buf.truncate(got);
        XState::from_bytes(buf).ok_or(CompelError::RegsetSize {
            tid: self.tid,
            what: "NT_X86_XSTATE",
            got,
            expected: 576,
        })
    }

    /// Sets the XSAVE area; `xstate` should have the size [`Tracee::xstate`] returned.
    pub fn set_xstate(&self, xstate: &XState) -> Result<(), CompelError> {
        self.ensure_stopped("SETREGSET")?;
        sys::set_regset(self.tid, sys::NT_X86_XSTATE, xstate.as_bytes())
            .map_err(|e| self.gone_or("PTRACE_SETREGSET(NT_X86_XSTATE)", e))
    }

    /// The legacy FXSAVE area (NT_PRFPREG, 512 bytes).
    pub fn fpregs(&self) -> Result<FxSave, CompelError> {
        self.ensure_stopped("GETREGSET")?;
        let mut buf = [0u8; FxSave::SIZE];
        let got = sys::get_regset(self.tid, sys::NT_PRFPREG, &mut buf)
            .map_err(|e| self.gone_or("PTRACE_GETREGSET(NT_PRFPREG)", e))?;
        if got != FxSave::SIZE {
            return Err(CompelError::RegsetSize {
                tid: self.tid,
                what: "NT_PRFPREG",
                got,
                expected: FxSave::SIZE,
            });
        }
        Ok(FxSave::from_bytes(&buf).unwrap_or_default())
    }

    /// The blocked-signal mask (bit n-1 = signal n).
    pub fn sigmask(&self) -> Result<u64, CompelError> {
        self.ensure_stopped("GETSIGMASK")?;
        sys::get_sigmask(self.tid).map_err(|e| self.gone_or("PTRACE_GETSIGMASK", e))
    }

    pub fn set_sigmask(&self, mask: u64) -> Result<(), CompelError> {
        self.ensure_stopped("SETSIGMASK")?;
        sys::set_sigmask(self.tid, mask).map_err(|e| self.gone_or("PTRACE_SETSIGMASK", e))
    }

    /// Queued signals without dequeuing them (PTRACE_PEEKSIGINFO): the thread's private queue, or the
    /// process-wide shared queue when `shared`.
    pub fn pending_signals(&self, shared: bool) -> Result<Vec<SigInfo>, CompelError> {
        self.ensure_stopped("PEEKSIGINFO")?;
        let mut all = Vec::new();
        let mut batch = vec![[0u8; sys::SIGINFO_SIZE]; 32];
        loop {
            let got = sys::peek_siginfo(self.tid, all.len() as u64, shared, &mut batch)
                .map_err(|e| self.gone_or("PTRACE_PEEKSIGINFO", e))?;
            all.extend(batch[..got].iter().map(|raw| SigInfo(*raw)));
            if got < batch.len() {
                return Ok(all);
            }
        }
    }

    /// The siginfo of the current signal-delivery-stop (PTRACE_GETSIGINFO).
    pub fn siginfo(&self) -> Result<SigInfo, CompelError> {
        self.ensure_stopped("GETSIGINFO")?;
        sys::get_siginfo(self.tid)
            .map(SigInfo)
            .map_err(|e| self.gone_or("PTRACE_GETSIGINFO", e))
    }

    /// Replaces the siginfo of the current signal-delivery-stop (PTRACE_SETSIGINFO).
    pub fn set_siginfo(&self, info: &SigInfo) -> Result<(), CompelError> {
        self.ensure_stopped("SETSIGINFO")?;
        sys::set_siginfo(self.tid, &info.0).map_err(|e| self.gone_or("PTRACE_SETSIGINFO", e))
    }

    /// The registered rseq area (PTRACE_GET_RSEQ_CONFIGURATION; there is no /proc file for it).
    pub fn rseq_config(&self) -> Result<RseqConfig, CompelError> {
        self.ensure_stopped("GET_RSEQ_CONFIGURATION")?;
        sys::get_rseq_configuration(self.tid)
            .map(|raw| RseqConfig::from_bytes(&raw))
            .map_err(|e| self.gone_or("PTRACE_GET_RSEQ_CONFIGURATION", e))
    }

    /// What syscall, if any, the stop is in (PTRACE_GET_SYSCALL_INFO).
    pub fn syscall_info(&self) -> Result<SyscallInfo, CompelError> {
        self.ensure_stopped("GET_SYSCALL_INFO")?;
        sys::get_syscall_info(self.tid)
            .map(|(raw, _)| SyscallInfo::from_bytes(&raw))
            .map_err(|e| self.gone_or("PTRACE_GET_SYSCALL_INFO", e))
    }

    /// The `index`th seccomp filter of the thread as raw `struct sock_filter` bytes
    /// (PTRACE_SECCOMP_GET_FILTER), or `None` past the last filter / without seccomp.
    pub fn seccomp_filter(&self, index: u64) -> Result<Option<Vec<u8>>, CompelError> {
        self.ensure_stopped("SECCOMP_GET_FILTER")?;
        match sys::seccomp_get_filter(self.tid, index) {
            Ok(prog) => Ok(Some(prog)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(self.gone_or("PTRACE_SECCOMP_GET_FILTER", e)),
        }
    }

    /// PTRACE_GETEVENTMSG of the current event stop.
    pub fn event_msg(&self) -> Result<u64, CompelError> {
        sys::get_event_msg(self.tid).map_err(|e| self.gone_or("PTRACE_GETEVENTMSG", e))
    }

    fn resumed(&mut self, stepping: bool) {
        self.stopped = false;
        self.last_stop = None;
        self.stepping = stepping;
    }

    /// PTRACE_CONT, delivering `sig` if the thread is in a signal-delivery-stop (0 = none).
    pub fn cont(&mut self, sig: i32) -> Result<(), CompelError> {
        self.ensure_stopped("CONT")?;
        sys::cont(self.tid, sig).map_err(|e| self.gone_or("PTRACE_CONT", e))?;
        self.resumed(false);
        Ok(())
    }

    /// PTRACE_SYSCALL: resume until the next syscall entry or exit.
    pub fn syscall_step(&mut self, sig: i32) -> Result<(), CompelError> {
        self.ensure_stopped("SYSCALL")?;
        sys::syscall(self.tid, sig).map_err(|e| self.gone_or("PTRACE_SYSCALL", e))?;
        self.resumed(true);
        Ok(())
    }

    /// PTRACE_SINGLESTEP: execute one instruction (a `syscall` counts as one).
    pub fn single_step(&mut self, sig: i32) -> Result<(), CompelError> {
        self.ensure_stopped("SINGLESTEP")?;
        sys::single_step(self.tid, sig).map_err(|e| self.gone_or("PTRACE_SINGLESTEP", e))?;
        self.resumed(true);
        Ok(())
    }

    /// PTRACE_LISTEN: for a thread in group-stop, wait for SIGCONT without resuming.
    pub fn listen(&mut self) -> Result<(), CompelError> {
        sys::listen(self.tid).map_err(|e| self.gone_or("PTRACE_LISTEN", e))?;
        self.resumed(false);
        Ok(())
    }

    /// Remembers a signal that arrived while we ran injected code and had to be suppressed; it is sent
    /// again (tgkill) right after the thread is detached.
    pub(crate) fn defer_signal(&mut self, sig: i32) {
        if !self.deferred_signals.contains(&sig) {
            self.deferred_signals.push(sig);
        }
    }

    /// Signals suppressed during remote syscalls that will be re-sent on detach.
    pub fn deferred_signals(&self) -> &[i32] {
        &self.deferred_signals
    }

    /// PTRACE_DETACH with `sig` (delivered if the thread is in a signal-delivery-stop). A running thread
    /// is interrupted first. A thread that sits in group-stop stays stopped after the detach. Signals
    /// deferred during remote syscalls are re-sent with tgkill afterwards.
    pub fn detach(mut self, sig: i32) -> Result<(), CompelError> {
        self.detach_inner(sig, DEFAULT_STOP_TIMEOUT)
    }

    fn detach_inner(&mut self, sig: i32, timeout: Duration) -> Result<(), CompelError> {
        if self.detached || self.gone {
            self.detached = true;
            return Ok(());
        }
        let mut sig = sig;
        if !self.stopped {
            self.interrupt()?;
            match self.wait_stop_timeout(timeout)? {
                StopEvent::Signal { .. } if sig == 0 => sig = self.pending_delivery().unwrap_or(0),
                event if event.is_gone() => {
                    self.detached = true;
                    return Ok(());
                }
                _ => {}
            }
        }
        let result = sys::detach(self.tid, sig);
        self.detached = true;
        self.stopped = false;
        match result {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                // Gone meanwhile (e.g. SIGKILLed while stopped): nothing to detach from.
                return Ok(());
            }
            Err(e) => return Err(CompelError::ptrace("PTRACE_DETACH", self.tid, e)),
        }
        for signal in std::mem::take(&mut self.deferred_signals) {
            let _ = sys::tgkill(self.tgid, self.tid, signal);
        }
        Ok(())
    }

    /// Marks the thread as no longer ours without any ptrace request (used after it was reaped).
    pub(crate) fn forget(&mut self) {
        self.detached = true;
        self.gone = true;
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if self.detached || self.gone {
            return;
        }
        let sig = self.pending_delivery().unwrap_or(0);
        if let Err(e) = self.detach_inner(sig, Duration::from_secs(1)) {
            tracing::warn!(tid = self.tid, error = %e, "could not detach a dropped tracee");
        }
    }
}
