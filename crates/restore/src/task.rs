//! One task being restored ([`Proc`]) and the per-thread and per-task state
//! that is not memory or files: registers and xstate, signal actions, timers,
//! rlimits, credentials and small per-task attributes.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

use criu_compel::{
    CompelError, ProcMem, RemoteCall, RemoteOptions, RemoteSession, SeizeOptions, Tracee, UserRegs,
    XState,
};
use criu_proto::{CoreEntry, CredsEntry, SaEntry, UserX86FpregsEntry, UserX86RegsEntry};
use nix::errno::Errno;
use nix::unistd::Pid;
use tracing::{debug, warn};

use crate::images::SeccompInstall;
use crate::sys;

/// A remote call or a ptrace request in a task under restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
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
    /// The ptrace layer failed (a request, a stop, the memory of the task).
    #[error("{call} in thread {tid}: {source}")]
    Ptrace {
        /// The thread.
        tid: i32,
        /// What was being done.
        call: String,
        /// What failed.
        #[source]
        source: CompelError,
    },
    /// A call did something else than the restore asked for.
    #[error("thread {tid} {what} during the remote {call}")]
    UnexpectedStop {
        /// The thread.
        tid: i32,
        /// The call being made.
        call: String,
        /// What happened.
        what: String,
    },
}

impl RemoteError {
    fn from_compel(tid: i32, call: &str, source: CompelError) -> RemoteError {
        match source {
            CompelError::RemoteSyscall { errno, .. } => RemoteError::Syscall {
                tid,
                call: call.to_string(),
                errno: Errno::from_raw(errno),
            },
            source => RemoteError::Ptrace {
                tid,
                call: call.to_string(),
                source,
            },
        }
    }
}

/// Where one traced thread of a task is in the restore.
#[derive(Debug)]
enum ThreadState {
    /// Remote calls run in it through a session on the trampoline.
    Working(Box<RemoteSession<'static>>),
    /// Its final state is set; it waits in a stop for the detach.
    Finished(Tracee),
    /// Detached, dead or handed back.
    Released,
}

/// One traced thread of a task being restored.
#[derive(Debug)]
pub(crate) struct Thread {
    /// Its id.
    pub tid: Pid,
    state: RefCell<ThreadState>,
}

/// A task (thread group) under restore: its traced threads, its memory and
/// the trampoline the remote calls run through.
#[derive(Debug)]
pub(crate) struct Proc {
    /// The pid.
    pub pid: i32,
    /// The parent's pid (0 for the root, which the tracer reaps itself).
    pub ppid: i32,
    /// Index of the task in the images.
    pub task: usize,
    /// Traced threads, the leader first.
    pub threads: Vec<Thread>,
    /// /proc/PID/mem.
    pub mem: ProcMem,
    /// Address of the `syscall` instruction of the trampoline.
    pub gadget: u64,
    /// Start of the scratch area (after the trampoline page).
    pub scratch: u64,
    /// Number of the fd transport in the task, while it is open.
    pub transport_fd: Option<i32>,
}

/// Bytes of scratch memory.
pub(crate) const SCRATCH_LEN: u64 = crate::layout::TRAMPOLINE_LEN - crate::images::PAGE_SIZE;

/// The ptrace options every restored task is traced with: creations of
/// threads and processes are followed, and every task dies if the tracer does.
pub(crate) fn trace_options() -> SeizeOptions {
    SeizeOptions {
        trace_clone: true,
        trace_fork: true,
        exit_kill: true,
        ..SeizeOptions::default()
    }
}

fn session_options(gadget: u64) -> RemoteOptions {
    RemoteOptions {
        gadget: Some(gadget),
        // The scratch area is the rest of the trampoline mapping, which the
        // final munmap removes together with the trampoline page.
        borrowed_scratch: Some((gadget + crate::images::PAGE_SIZE, SCRATCH_LEN as usize)),
        trampoline_len: crate::layout::TRAMPOLINE_LEN as usize,
        ..RemoteOptions::default()
    }
}

impl Thread {
    /// Starts remote calls in a stopped thread of a task whose trampoline is
    /// at `gadget`; every signal is blocked until the final mask is set.
    /// `mem` is the task's /proc/PID/mem, shared by its threads.
    pub fn start(tracee: Tracee, gadget: u64, mem: &ProcMem) -> Result<Thread, RemoteError> {
        let tid = tracee.tid();
        let session = mem
            .try_clone()
            .and_then(|mem| RemoteSession::owning_with_mem(tracee, session_options(gadget), mem))
            .map_err(|e| RemoteError::from_compel(tid, "starting remote calls", e))?;
        Ok(Thread {
            tid: Pid::from_raw(tid),
            state: RefCell::new(ThreadState::Working(Box::new(session))),
        })
    }

    fn with_session<R>(
        &self,
        call: &str,
        f: impl FnOnce(&mut RemoteSession<'static>) -> Result<R, CompelError>,
    ) -> Result<R, RemoteError> {
        let tid = self.tid.as_raw();
        match &mut *self.state.borrow_mut() {
            ThreadState::Working(session) => {
                f(session).map_err(|e| RemoteError::from_compel(tid, call, e))
            }
            _ => Err(RemoteError::UnexpectedStop {
                tid,
                call: call.to_string(),
                what: "has no remote session any more".into(),
            }),
        }
    }

    fn take_session(&self, call: &str) -> Result<Box<RemoteSession<'static>>, RemoteError> {
        let mut state = self.state.borrow_mut();
        match std::mem::replace(&mut *state, ThreadState::Released) {
            ThreadState::Working(session) => Ok(session),
            other => {
                *state = other;
                Err(RemoteError::UnexpectedStop {
                    tid: self.tid.as_raw(),
                    call: call.to_string(),
                    what: "has no remote session any more".into(),
                })
            }
        }
    }

    /// Runs a remote system call; a negative result becomes an error.
    pub fn call(&self, call: &str, nr: i64, args: &[u64]) -> Result<u64, RemoteError> {
        let args = six(args);
        self.with_session(call, |s| s.syscall(nr, args))
            .map(|ret| ret as u64)
    }

    /// Runs a remote system call and returns the raw result (-errno on failure).
    pub fn call_raw(&self, call: &str, nr: i64, args: &[u64]) -> Result<i64, RemoteError> {
        let args = six(args);
        self.with_session(call, |s| s.syscall_raw(nr, args))
    }

    /// Runs `calls` (label, number, arguments) in order in one remote batch (see
    /// [`RemoteSession::syscall_batch`]); the first failing call is the error, named by its label.
    pub fn call_batch(&self, calls: &[BatchCall]) -> Result<Vec<u64>, RemoteError> {
        let tid = self.tid.as_raw();
        let remote: Vec<RemoteCall> = calls
            .iter()
            .map(|call| RemoteCall::new(call.nr, six(&call.args)))
            .collect();
        let results = self.with_session("a batch of remote calls", |s| s.syscall_batch(&remote))?;
        results
            .into_iter()
            .zip(calls)
            .map(|(result, call)| {
                result
                    .map(|ret| ret as u64)
                    .map_err(|e| RemoteError::from_compel(tid, &call.label, e))
            })
            .collect()
    }

    /// Runs a remote clone3 that creates a traced task; returns the new task,
    /// stopped at its first stop.
    pub fn call_clone(&self, call: &str, args: &[u64]) -> Result<Tracee, RemoteError> {
        let args = six(args);
        self.with_session(call, |s| s.syscall_expect_clone(libc::SYS_clone3, args))
            .map(|(_, child)| child)
    }

    /// The thread's rseq registration: (area, size, signature); size 0 if none.
    pub fn rseq(&self) -> Result<(u64, u32, u32), RemoteError> {
        let conf = self.with_session("GET_RSEQ_CONFIGURATION", |s| s.tracee().rseq_config())?;
        Ok((conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature))
    }

    /// Adds PTRACE_O_SUSPEND_SECCOMP to the thread's options: its seccomp
    /// filters do not act while it is traced, so the remote calls that follow
    /// the installation of a filter are not filtered; they act again once
    /// the thread is detached.
    pub fn suspend_seccomp(&self) -> Result<(), RemoteError> {
        self.with_session("SETOPTIONS(SUSPEND_SECCOMP)", |s| {
            let options = SeizeOptions {
                suspend_seccomp: true,
                ..s.tracee().options()
            };
            s.set_tracee_options(options)
        })
    }

    /// Ends the thread's process with a raw wait status (see
    /// [`RemoteSession::exit_with_status`]).
    pub fn die(&self, wait_status: u32) -> Result<(), RemoteError> {
        let call = format!("exit with wait status {wait_status:#x}");
        let session = self.take_session(&call)?;
        session
            .exit_with_status(wait_status)
            .map(drop)
            .map_err(|e| RemoteError::from_compel(self.tid.as_raw(), &call, e))
    }

    /// Sets the final registers, FPU state (from `fp`, on top of the thread's
    /// current XSAVE area) and signal mask; the leader (`unmap_trampoline`)
    /// first unmaps the trampoline and its scratch area as its very last
    /// remote call, under PTRACE_SYSCALL, and gets its state at the exit stop.
    pub fn finish(
        &self,
        regs: &UserRegs,
        fp: &UserX86FpregsEntry,
        sigmask: u64,
        unmap_trampoline: bool,
    ) -> Result<(), RemoteError> {
        let tid = self.tid.as_raw();
        let call = "setting the final state";
        let template = self.with_session(call, |s| s.tracee().xstate())?;
        let xstate =
            XState::from_bytes(build_xstate(template.as_bytes(), fp)).ok_or_else(|| {
                RemoteError::UnexpectedStop {
                    tid,
                    call: call.into(),
                    what: format!("has an XSAVE area of {} bytes", template.len()),
                }
            })?;
        let mut session = self.take_session(call)?;
        let (tracee, result) = if unmap_trampoline {
            session.finish_into_tracee(regs, Some(&xstate), sigmask)
        } else {
            session.set_saved_regs(*regs);
            session.set_saved_sigmask(sigmask);
            match session.tracee().set_xstate(&xstate) {
                Ok(()) => session.close_into_tracee(),
                Err(e) => (session.abandon(), Err(e)),
            }
        };
        if let Some(tracee) = tracee {
            *self.state.borrow_mut() = ThreadState::Finished(tracee);
        }
        result
            .map_err(|e| RemoteError::from_compel(tid, "munmap(trampoline) and the final state", e))
    }

    /// Detaches a finished thread, letting it run.
    pub fn detach(&self) -> Result<(), RemoteError> {
        let state = std::mem::replace(&mut *self.state.borrow_mut(), ThreadState::Released);
        let tid = self.tid.as_raw();
        match state {
            ThreadState::Finished(tracee) => tracee
                .detach(0)
                .map_err(|e| RemoteError::from_compel(tid, "PTRACE_DETACH", e)),
            ThreadState::Working(session) => match session.abandon() {
                Some(tracee) => tracee
                    .detach(0)
                    .map_err(|e| RemoteError::from_compel(tid, "PTRACE_DETACH", e)),
                None => Ok(()),
            },
            ThreadState::Released => Ok(()),
        }
    }

    /// Waits until a killed thread is gone (its exit seen by the tracer).
    pub fn wait_gone(&self) {
        let state = std::mem::replace(&mut *self.state.borrow_mut(), ThreadState::Released);
        let mut tracee = match state {
            ThreadState::Finished(tracee) => tracee,
            ThreadState::Working(session) => match session.abandon() {
                Some(tracee) => tracee,
                None => return,
            },
            ThreadState::Released => return,
        };
        while !tracee.is_gone() {
            match tracee.wait_stop() {
                Ok(_) => {}
                Err(CompelError::ThreadGone { .. }) => break,
                Err(e) => {
                    warn!(tid = self.tid.as_raw(), error = %e, "waiting for a killed task");
                    break;
                }
            }
        }
    }
}

/// One call of [`Proc::call_batch`]: what it does (for errors), its number and arguments.
#[derive(Debug, Clone)]
pub(crate) struct BatchCall {
    pub label: String,
    pub nr: i64,
    pub args: Vec<u64>,
}

impl BatchCall {
    pub fn new(label: String, nr: i64, args: &[u64]) -> Self {
        Self {
            label,
            nr,
            args: args.to_vec(),
        }
    }
}

fn six(args: &[u64]) -> [u64; 6] {
    let mut all = [0u64; 6];
    for (slot, value) in all.iter_mut().zip(args) {
        *slot = *value;
    }
    all
}

impl Proc {
    /// A blank task stopped in the tracer's hands, its trampoline at `gadget`;
    /// its end of the fd transport is `transport` (the tracer's end, its number
    /// in the task).
    pub fn blank(
        tracee: Tracee,
        ppid: i32,
        task: usize,
        gadget: u64,
        transport: (OwnedFd, i32),
    ) -> Result<Proc, RemoteError> {
        let pid = tracee.tid();
        let mem = ProcMem::open(pid)
            .map_err(|e| RemoteError::from_compel(pid, "opening /proc/PID/mem", e))?;
        let leader = Thread::start(tracee, gadget, &mem)?;
        let (tracer_end, transport_fd) = transport;
        leader.with_session("adopting the fd transport", |s| {
            s.adopt_transport(tracer_end, transport_fd)
        })?;
        Ok(Proc {
            pid,
            ppid,
            task,
            threads: vec![leader],
            mem,
            gadget,
            scratch: gadget + crate::images::PAGE_SIZE,
            transport_fd: Some(transport_fd),
        })
    }

    /// A remote call in the leader.
    pub fn call(&self, call: &str, nr: i64, args: &[u64]) -> Result<u64, RemoteError> {
        self.threads[0].call(call, nr, args)
    }

    /// Remote calls in the leader, in one batch.
    pub fn call_batch(&self, calls: &[BatchCall]) -> Result<Vec<u64>, RemoteError> {
        self.threads[0].call_batch(calls)
    }

    /// A remote call in thread `index`.
    pub fn call_in(
        &self,
        index: usize,
        call: &str,
        nr: i64,
        args: &[u64],
    ) -> Result<u64, RemoteError> {
        self.threads[index].call(call, nr, args)
    }

    /// A remote call in the leader whose raw result (maybe -errno) is returned.
    pub fn call_raw(&self, call: &str, nr: i64, args: &[u64]) -> Result<i64, RemoteError> {
        self.threads[0].call_raw(call, nr, args)
    }

    /// Sends `fds` to the task and returns their numbers there, in order. They
    /// arrive close-on-exec.
    pub fn install(&self, fds: &[BorrowedFd<'_>]) -> Result<Vec<i32>, RemoteError> {
        self.threads[0].with_session(&format!("installing {} fds", fds.len()), |s| {
            s.install_fds(fds, true)
        })
    }

    /// Closes the task's end of the fd transport.
    pub fn close_transport(&mut self) -> Result<(), RemoteError> {
        if let Some(fd) = self.transport_fd.take() {
            self.threads[0].with_session(&format!("close(transport fd {fd})"), |s| {
                s.close_transport()
            })?;
        }
        Ok(())
    }

    /// Writes `data` into the scratch area at `offset`; returns its remote address.
    pub fn put(&self, offset: u64, data: &[u8]) -> Result<u64, RemoteError> {
        debug_assert!(offset + data.len() as u64 <= SCRATCH_LEN);
        let addr = self.scratch + offset;
        self.write(addr, data)?;
        Ok(addr)
    }

    /// Writes `data` at `addr` of the task.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), RemoteError> {
        self.mem.write_all_at(addr, data).map_err(|e| {
            RemoteError::from_compel(
                self.pid,
                &format!("writing {} bytes at {addr:#x}", data.len()),
                e,
            )
        })
    }

    /// Reads `len` bytes at `addr` of the task.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, RemoteError> {
        self.mem.read_vec(addr, len).map_err(|e| {
            RemoteError::from_compel(self.pid, &format!("reading {len} bytes at {addr:#x}"), e)
        })
    }

    /// Writes a NUL-terminated string into the scratch area.
    pub fn put_cstr(&self, offset: u64, text: &str) -> Result<u64, RemoteError> {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.put(offset, &bytes)
    }
}

/// The registers a thread resumes with: the dumped ones with the syscall
/// restart fixup applied (a restartable call is re-run, a restart-block one
/// returns EINTR) and `orig_rax = -1`, so that the kernel runs no restart
/// logic of its own on the restored task.
pub(crate) fn final_regs(gp: &UserX86RegsEntry) -> UserRegs {
    let mut regs = UserRegs {
        r15: gp.r15,
        r14: gp.r14,
        r13: gp.r13,
        r12: gp.r12,
        bp: gp.bp,
        bx: gp.bx,
        r11: gp.r11,
        r10: gp.r10,
        r9: gp.r9,
        r8: gp.r8,
        ax: gp.ax,
        cx: gp.cx,
        dx: gp.dx,
        si: gp.si,
        di: gp.di,
        orig_ax: gp.orig_ax,
        ip: gp.ip,
        cs: gp.cs,
        flags: gp.flags,
        sp: gp.sp,
        ss: gp.ss,
        fs_base: gp.fs_base,
        gs_base: gp.gs_base,
        ds: gp.ds,
        es: gp.es,
        fs: gp.fs,
        gs: gp.gs,
    };
    criu_compel::fixup_syscall_restart(&mut regs);
    regs
}

/// Builds the XSAVE area of a thread from its dumped FPU state, on top of
/// `template` (the thread's current area, which has the right size and
/// software-reserved bytes).
pub(crate) fn build_xstate(template: &[u8], fp: &UserX86FpregsEntry) -> Vec<u8> {
    let mut x = template.to_vec();
    if x.len() < 576 {
        return x;
    }
    let put =
        |x: &mut Vec<u8>, at: usize, bytes: &[u8]| x[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut x, 0, &(fp.cwd as u16).to_le_bytes());
    put(&mut x, 2, &(fp.swd as u16).to_le_bytes());
    put(&mut x, 4, &(fp.twd as u16).to_le_bytes());
    put(&mut x, 6, &(fp.fop as u16).to_le_bytes());
    put(&mut x, 8, &fp.rip.to_le_bytes());
    put(&mut x, 16, &fp.rdp.to_le_bytes());
    put(&mut x, 24, &fp.mxcsr.to_le_bytes());
    put(&mut x, 28, &fp.mxcsr_mask.to_le_bytes());
    let words = |v: &[u32]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let st = words(&fp.st_space);
    put(&mut x, 32, &st[..st.len().min(128)]);
    let xmm = words(&fp.xmm_space);
    put(&mut x, 160, &xmm[..xmm.len().min(256)]);
    // In the ptrace layout the first software-reserved word (offset 464) is
    // the XCR0 of the running kernel: the features it accepts.
    let supported = u64::from_le_bytes(x[464..472].try_into().expect("8 bytes"));
    let mut bv = 0x3u64; // x87 and SSE are always valid in the legacy area
    if let Some(xs) = &fp.xsave {
        bv = xs.xstate_bv;
        let qwords = |v: &[u64]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
        let components: [(u32, Vec<u8>); 6] = [
            (2, words(&xs.ymmh_space)),
            (3, qwords(&xs.bndreg_state)),
            (4, qwords(&xs.bndcsr_state)),
            (5, qwords(&xs.opmask_reg)),
            (6, qwords(&xs.zmm_upper)),
            (7, qwords(&xs.hi16_zmm)),
        ];
        for (component, bytes) in components
            .iter()
            .chain(std::iter::once(&(9, words(&xs.pkru))))
        {
            if bytes.is_empty() || supported & (1 << component) == 0 {
                continue;
            }
            let (offset, size) = sys::local::xsave_component(*component);
            let (offset, size) = (offset as usize, size as usize);
            let len = bytes.len().min(size);
            if offset + len <= x.len() {
                put(&mut x, offset, &bytes[..len]);
            }
        }
    }
    if supported != 0 {
        bv &= supported;
    }
    put(&mut x, 512, &bv.to_le_bytes());
    put(&mut x, 520, &0u64.to_le_bytes());
    x
}

/// Signal numbers in the order of `task_core_entry.sigactions` (1..64 without
/// SIGKILL and SIGSTOP).
pub(crate) fn sigaction_signals() -> impl Iterator<Item = i32> {
    (1..=64).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

/// Restores the dumped signal actions that are not the default (the blank
/// task has every action at SIG_DFL already).
pub(crate) fn restore_sigactions(proc: &Proc, actions: &[SaEntry]) -> Result<(), RemoteError> {
    // Each action gets its own 32-byte slot of the scratch area, and all are set in one batch.
    let mut structs = Vec::new();
    let mut calls = Vec::new();
    for (signo, sa) in sigaction_signals().zip(actions) {
        if sa.sigaction == 0 && sa.flags == 0 && sa.mask == 0 && sa.restorer == 0 {
            continue;
        }
        let addr = proc.scratch + structs.len() as u64;
        for word in [sa.sigaction, sa.flags, sa.restorer, sa.mask] {
            structs.extend_from_slice(&word.to_le_bytes());
        }
        calls.push(BatchCall::new(
            format!("rt_sigaction({signo})"),
            libc::SYS_rt_sigaction,
            &[signo as u64, addr, 0, 8],
        ));
    }
    if calls.is_empty() {
        return Ok(());
    }
    proc.put(0, &structs)?;
    proc.call_batch(&calls).map(drop)
}

/// The uids, gids, groups and capabilities of a thread, from /proc.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcCreds {
    uids: [u32; 4],
    gids: [u32; 4],
    groups: Vec<u32>,
    cap_inh: u64,
    cap_prm: u64,
    cap_eff: u64,
    cap_bnd: u64,
    cap_amb: u64,
    no_new_privs: bool,
}

fn read_proc_creds(pid: i32, tid: Pid) -> Option<ProcCreds> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let mut creds = ProcCreds::default();
    for line in text.lines() {
        let (key, value) = line.split_once(':')?;
        let nums = || {
            value
                .split_whitespace()
                .filter_map(|v| v.parse::<u32>().ok())
                .collect::<Vec<u32>>()
        };
        let hex = || u64::from_str_radix(value.trim(), 16).unwrap_or(0);
        match key {
            "Uid" => creds.uids.copy_from_slice(nums().get(..4)?),
            "Gid" => creds.gids.copy_from_slice(nums().get(..4)?),
            "Groups" => creds.groups = nums(),
            "CapInh" => creds.cap_inh = hex(),
            "CapPrm" => creds.cap_prm = hex(),
            "CapEff" => creds.cap_eff = hex(),
            "CapBnd" => creds.cap_bnd = hex(),
            "CapAmb" => creds.cap_amb = hex(),
            "NoNewPrivs" => creds.no_new_privs = value.trim() == "1",
            _ => {}
        }
    }
    Some(creds)
}

fn caps(words: &[u32]) -> u64 {
    u64::from(words.first().copied().unwrap_or(0))
        | u64::from(words.get(1).copied().unwrap_or(0)) << 32
}

const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
const SECBIT_KEEP_CAPS: u64 = 1 << 4;

/// Restores the credentials of thread `index` (the last privileged step: after
/// it the thread may have lost the capabilities the other steps need).
/// Returns whether they already matched (nothing was changed).
pub(crate) fn restore_creds(
    proc: &Proc,
    index: usize,
    creds: &CredsEntry,
) -> Result<bool, RemoteError> {
    let tid = proc.threads[index].tid;
    let current = read_proc_creds(proc.pid, tid).unwrap_or_default();
    let mut groups = creds.groups.clone();
    groups.sort_unstable();
    let mut current_groups = current.groups.clone();
    current_groups.sort_unstable();
    let uids = [creds.uid, creds.euid, creds.suid, creds.fsuid];
    let gids = [creds.gid, creds.egid, creds.sgid, creds.fsgid];
    let wanted_caps = (
        caps(&creds.cap_inh),
        caps(&creds.cap_prm),
        caps(&creds.cap_eff),
    );
    let same = current.uids == uids
        && current.gids == gids
        && current_groups == groups
        && (current.cap_inh, current.cap_prm, current.cap_eff) == wanted_caps
        && current.cap_bnd == caps(&creds.cap_bnd)
        && current.cap_amb == caps(&creds.cap_amb)
        && creds.secbits == 0
        && current.no_new_privs == (creds.no_new_privs.unwrap_or(0) != 0);
    if same {
        debug!(
            pid = proc.pid,
            tid = tid.as_raw(),
            "credentials already match"
        );
        return Ok(true);
    }
    let call = |name: &str, nr: i64, args: &[u64]| proc.call_in(index, name, nr, args);
    if current_groups != groups {
        let bytes: Vec<u8> = creds.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
        let addr = proc.put(0, &bytes)?;
        call(
            "setgroups",
            libc::SYS_setgroups,
            &[creds.groups.len() as u64, addr],
        )?;
    }
    if current.gids != gids {
        call(
            "setresgid",
            libc::SYS_setresgid,
            &[creds.gid.into(), creds.egid.into(), creds.sgid.into()],
        )?;
        call("setfsgid", libc::SYS_setfsgid, &[creds.fsgid.into()])?;
    }
    if current.uids != uids {
        // Keep the capabilities across the uid change; they are set below.
        call(
            "prctl(PR_SET_SECUREBITS, KEEP_CAPS|NO_SETUID_FIXUP)",
            libc::SYS_prctl,
            &[
                libc::PR_SET_SECUREBITS as u64,
                SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP,
            ],
        )?;
        call(
            "setresuid",
            libc::SYS_setresuid,
            &[creds.uid.into(), creds.euid.into(), creds.suid.into()],
        )?;
        call("setfsuid", libc::SYS_setfsuid, &[creds.fsuid.into()])?;
    }
    let bounding = caps(&creds.cap_bnd);
    for cap in 0..64u64 {
        if current.cap_bnd & (1 << cap) != 0 && bounding & (1 << cap) == 0 {
            call(
                &format!("prctl(PR_CAPBSET_DROP, {cap})"),
                libc::SYS_prctl,
                &[libc::PR_CAPBSET_DROP as u64, cap],
            )?;
        }
    }
    call(
        &format!("prctl(PR_SET_SECUREBITS, {:#x})", creds.secbits),
        libc::SYS_prctl,
        &[libc::PR_SET_SECUREBITS as u64, creds.secbits.into()],
    )?;
    // capset v3: header {version, pid}, then two {effective, permitted, inheritable}.
    let (inh, prm, eff) = wanted_caps;
    let mut data = Vec::with_capacity(32);
    data.extend_from_slice(&0x2008_0522u32.to_le_bytes());
    data.extend_from_slice(&0i32.to_le_bytes());
    for shift in [0, 32] {
        for word in [eff, prm, inh] {
            data.extend_from_slice(&((word >> shift) as u32).to_le_bytes());
        }
    }
    let addr = proc.put(0, &data)?;
    call("capset", libc::SYS_capset, &[addr, addr + 8])?;
    let ambient = caps(&creds.cap_amb);
    for cap in 0..64u64 {
        if ambient & (1 << cap) != 0 {
            call(
                &format!("prctl(PR_CAP_AMBIENT_RAISE, {cap})"),
                libc::SYS_prctl,
                &[
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap,
                ],
            )?;
        }
    }
    if creds.no_new_privs.unwrap_or(0) != 0 && !current.no_new_privs {
        call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            &[libc::PR_SET_NO_NEW_PRIVS as u64, 1],
        )?;
    }
    Ok(false)
}

/// Sets the dumpable flag of the task's mm to its dumped value. It must run
/// after the credentials: changing uids or gids resets the flag to the
/// `suid_dumpable` sysctl value (0 here), which would leave a task that was
/// dumpable undumpable (and its /proc files owned by root).
pub(crate) fn restore_dumpable(proc: &Proc, dumpable: i32) -> Result<(), RemoteError> {
    let current = proc.call(
        "prctl(PR_GET_DUMPABLE)",
        libc::SYS_prctl,
        &[libc::PR_GET_DUMPABLE as u64],
    )?;
    if current != dumpable as u64 {
        proc.call(
            &format!("prctl(PR_SET_DUMPABLE, {dumpable})"),
            libc::SYS_prctl,
            &[libc::PR_SET_DUMPABLE as u64, dumpable as u64],
        )?;
    }
    Ok(())
}

const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;

/// Installs the seccomp filters of every thread (`chains`, aligned with the
/// threads, oldest filter first) by remote `seccomp(SECCOMP_SET_MODE_FILTER)`.
/// As CRIU does, this runs before the credentials: installing a filter
/// without no_new_privs needs CAP_SYS_ADMIN, which the task may lose with
/// them. Every thread is first given PTRACE_O_SUSPEND_SECCOMP, so the
/// filters do not act on the remote calls that remain; they act once the
/// threads are detached.
pub(crate) fn restore_seccomp(
    proc: &Proc,
    chains: &[Vec<SeccompInstall>],
) -> Result<(), RemoteError> {
    if chains.iter().all(Vec::is_empty) {
        return Ok(());
    }
    for thread in &proc.threads {
        thread.suspend_seccomp()?;
    }
    for (index, chain) in chains.iter().enumerate() {
        for (position, filter) in chain.iter().enumerate() {
            // struct sock_fprog { u16 len; u64 filter; } then the program.
            let program = proc.put(16, &filter.program)?;
            let mut fprog = Vec::with_capacity(16);
            fprog.extend_from_slice(&((filter.program.len() / 8) as u16).to_le_bytes());
            fprog.extend_from_slice(&[0u8; 6]);
            fprog.extend_from_slice(&program.to_le_bytes());
            let fprog = proc.put(0, &fprog)?;
            let call = format!(
                "seccomp(SET_MODE_FILTER, flags {:#x}) of filter {position}",
                filter.flags
            );
            let ret = proc.call_in(
                index,
                &call,
                libc::SYS_seccomp,
                &[SECCOMP_SET_MODE_FILTER, filter.flags.into(), fprog],
            )?;
            // With TSYNC a positive result is the tid of a thread that could
            // not be synchronized.
            if ret != 0 && filter.flags & SECCOMP_FILTER_FLAG_TSYNC != 0 {
                return Err(RemoteError::UnexpectedStop {
                    tid: proc.threads[index].tid.as_raw(),
                    call,
                    what: format!("could not synchronize thread {ret}"),
                });
            }
        }
        debug!(
            pid = proc.pid,
            tid = proc.threads[index].tid.as_raw(),
            filters = chain.len(),
            "seccomp filters installed"
        );
    }
    Ok(())
}

/// Sets the per-thread kernel state of thread `index`: clear-tid address,
/// robust futex list, alternate signal stack, name, pdeath signal, rseq.
pub(crate) fn restore_thread_state(
    proc: &Proc,
    index: usize,
    core: &CoreEntry,
    leader_comm: &str,
) -> Result<(), RemoteError> {
    let ti = core
        .thread_info
        .as_ref()
        .expect("validated: every core has thread_info");
    let tc = core.thread_core.as_ref();
    let call = |name: &str, nr: i64, args: &[u64]| proc.call_in(index, name, nr, args);
    call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        &[ti.clear_tid_addr],
    )?;
    if let Some(tc) = tc {
        if tc.futex_rla_len != 0 {
            call(
                "set_robust_list",
                libc::SYS_set_robust_list,
                &[tc.futex_rla, tc.futex_rla_len.into()],
            )?;
        }
    }
    // The leader was cloned from a tracer thread and inherited its alternate
    // stack; new threads start without one.
    let sas = tc.and_then(|tc| tc.sas);
    let enabled = sas.is_some_and(|s| s.ss_flags & libc::SS_DISABLE as u32 == 0);
    if enabled || index == 0 {
        let (sp, size, flags) = match sas {
            Some(s) if enabled => (s.ss_sp, s.ss_size, s.ss_flags),
            _ => (0, 0, libc::SS_DISABLE as u32),
        };
        let mut stack = Vec::with_capacity(24);
        stack.extend_from_slice(&sp.to_le_bytes());
        stack.extend_from_slice(&flags.to_le_bytes());
        stack.extend_from_slice(&0u32.to_le_bytes());
        stack.extend_from_slice(&size.to_le_bytes());
        let addr = proc.put(0, &stack)?;
        call("sigaltstack", libc::SYS_sigaltstack, &[addr, 0])?;
    }
    let comm = tc
        .and_then(|tc| tc.comm.clone())
        .unwrap_or_else(|| leader_comm.to_string());
    let mut name = comm.into_bytes();
    name.truncate(15);
    name.push(0);
    let addr = proc.put(0, &name)?;
    call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, addr],
    )?;
    if let Some(sig) = tc.and_then(|tc| tc.pdeath_sig).filter(|&s| s != 0) {
        call(
            "prctl(PR_SET_PDEATHSIG)",
            libc::SYS_prctl,
            &[libc::PR_SET_PDEATHSIG as u64, sig.into()],
        )?;
    }
    if let Some(nice) = tc.and_then(|tc| tc.sched_nice).filter(|&n| n != 0) {
        call(
            "setpriority",
            libc::SYS_setpriority,
            &[libc::PRIO_PROCESS as u64, 0, nice as i64 as u64],
        )?;
    }
    if let Some(rseq) = tc
        .and_then(|tc| tc.rseq_entry)
        .filter(|r| r.rseq_abi_size != 0)
    {
        call(
            "rseq(register)",
            libc::SYS_rseq,
            &[
                rseq.rseq_abi_pointer,
                rseq.rseq_abi_size.into(),
                0,
                rseq.signature.into(),
            ],
        )?;
    }
    Ok(())
}

/// Per-task attributes set by remote calls in the leader: umask is done with
/// the fs; here personality, subreaper, THP, interval timers (dumpable is
/// set after the credentials, see [`restore_dumpable`]).
pub(crate) fn restore_task_misc(
    proc: &Proc,
    core: &CoreEntry,
    thp_disabled: Option<bool>,
) -> Result<(), RemoteError> {
    let Some(tc) = core.tc.as_ref() else {
        return Ok(());
    };
    let current_personality = std::fs::read_to_string(format!("/proc/{}/personality", proc.pid))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 16).ok());
    if current_personality != Some(tc.personality) {
        proc.call(
            &format!("personality({:#x})", tc.personality),
            libc::SYS_personality,
            &[tc.personality.into()],
        )?;
    }
    if tc.child_subreaper == Some(true) {
        proc.call(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            libc::SYS_prctl,
            &[libc::PR_SET_CHILD_SUBREAPER as u64, 1],
        )?;
    }
    // The blank task inherited the tracer's THP setting (fork copies it).
    let wanted_disabled = thp_disabled == Some(true);
    let now_disabled = std::fs::read_to_string(format!("/proc/{}/status", proc.pid))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("THP_enabled:"))
                .map(|l| l.trim_end().ends_with('0'))
        });
    if now_disabled.is_some_and(|now| now != wanted_disabled) {
        proc.call(
            &format!("prctl(PR_SET_THP_DISABLE, {wanted_disabled})"),
            libc::SYS_prctl,
            &[libc::PR_SET_THP_DISABLE as u64, u64::from(wanted_disabled)],
        )?;
    }
    if let Some(timers) = &tc.timers {
        for (which, it) in [
            (libc::ITIMER_REAL, timers.real),
            (libc::ITIMER_VIRTUAL, timers.virt),
            (libc::ITIMER_PROF, timers.prof),
        ] {
            if it.vsec == 0 && it.vusec == 0 && it.isec == 0 && it.iusec == 0 {
                continue;
            }
            // A value of 0 with an interval is a periodic timer caught after
            // an expiry and before its re-arm (for ITIMER_REAL the kernel
            // re-arms only when SIGALRM is dequeued, so this is the state of a
            // task frozen with SIGALRM pending). It is still armed: it starts
            // again with a full interval, as CRIU does. A zero value given
            // to setitimer would disarm it and lose the interval.
            let (vsec, vusec) = if it.vsec == 0 && it.vusec == 0 {
                (it.isec, it.iusec)
            } else {
                (it.vsec, it.vusec)
            };
            let mut val = Vec::with_capacity(32);
            for word in [it.isec, it.iusec, vsec, vusec] {
                val.extend_from_slice(&word.to_le_bytes());
            }
            let addr = proc.put(0, &val)?;
            proc.call(
                &format!("setitimer({which})"),
                libc::SYS_setitimer,
                &[which as u64, addr, 0],
            )?;
        }
    }
    if let Some(timers) = tc.timers.as_ref().filter(|t| !t.posix.is_empty()) {
        restore_posix_timers(proc, &timers.posix)?;
    }
    if let Some(adj) = tc.oom_score_adj {
        let path = format!("/proc/{}/oom_score_adj", proc.pid);
        let current = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if current != Some(adj) {
            if let Err(e) = std::fs::write(&path, adj.to_string()) {
                warn!(pid = proc.pid, adj, error = %e, "cannot restore oom_score_adj");
            }
        }
    }
    Ok(())
}

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, ...)`: timer_create takes the id to use
/// from its timer_id argument.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// POSIX timers with their dumped ids, clocks, notifications and times.
fn restore_posix_timers(
    proc: &Proc,
    timers: &[criu_proto::PosixTimerEntry],
) -> Result<(), RemoteError> {
    proc.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0],
    )?;
    for timer in timers {
        // struct sigevent: value, signo, notify, then the thread id.
        let mut sigev = vec![0u8; 64];
        sigev[0..8].copy_from_slice(&timer.sival_ptr.to_le_bytes());
        sigev[8..12].copy_from_slice(&timer.si_signo.to_le_bytes());
        sigev[12..16].copy_from_slice(&timer.it_sigev_notify.to_le_bytes());
        sigev[16..20].copy_from_slice(&timer.notify_thread_id.unwrap_or(0).to_le_bytes());
        let sigev_addr = proc.put(0, &sigev)?;
        let id_addr = proc.put(64, &timer.it_id.to_le_bytes())?;
        proc.call(
            &format!("timer_create(clock {}, id {})", timer.clock_id, timer.it_id),
            libc::SYS_timer_create,
            &[timer.clock_id.into(), sigev_addr, id_addr],
        )?;
        let got = u32::from_le_bytes(proc.read(id_addr, 4)?.try_into().expect("4 bytes"));
        if got != timer.it_id {
            return Err(RemoteError::UnexpectedStop {
                tid: proc.pid,
                call: format!("timer_create(id {})", timer.it_id),
                what: format!("created timer {got}"),
            });
        }
        if timer.vsec != 0 || timer.vnsec != 0 {
            let mut spec = Vec::with_capacity(32);
            for word in [timer.isec, timer.insec, timer.vsec, timer.vnsec] {
                spec.extend_from_slice(&word.to_le_bytes());
            }
            let spec_addr = proc.put(128, &spec)?;
            proc.call(
                &format!("timer_settime({})", timer.it_id),
                libc::SYS_timer_settime,
                &[timer.it_id.into(), 0, spec_addr, 0],
            )?;
        }
    }
    proc.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// Restores resource limits from the tracer with prlimit. A hard limit above
/// the current one cannot be raised without CAP_SYS_RESOURCE: it is kept at
/// the current hard limit, with a warning.
pub(crate) fn restore_rlimits(pid: i32, core: &CoreEntry) -> Result<(), nix::errno::Errno> {
    let Some(limits) = core.tc.as_ref().and_then(|tc| tc.rlimits.as_ref()) else {
        return Ok(());
    };
    for (resource, limit) in limits.rlimits.iter().enumerate() {
        let resource = resource as u32;
        let (cur0, max0) = sys::local::prlimit(pid, resource, None)?;
        let (mut cur, mut max) = (limit.cur, limit.max);
        if (cur, max) == (cur0, max0) {
            continue;
        }
        if max > max0 {
            warn!(
                pid,
                resource,
                wanted = max,
                kept = max0,
                "cannot raise a hard rlimit without CAP_SYS_RESOURCE"
            );
            max = max0;
            cur = cur.min(max);
        }
        match sys::local::prlimit(pid, resource, Some((cur, max))) {
            Ok(_) => {}
            Err(nix::errno::Errno::EPERM) => {
                warn!(pid, resource, cur, max, "rlimit not restored (EPERM)");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
