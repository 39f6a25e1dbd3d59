//! Remote syscalls in a stopped thread: a `syscall` gadget, a scratch mapping, and fd transport.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::procmem::ProcMem;
use crate::regs::{UserRegs, XState};
use crate::sys::{self, MAX_FDS_PER_MESSAGE};
use crate::tracee::{StopEvent, Tracee};
use crate::{CompelError, Pid};

/// Default size of the scratch area callers can use.
pub const DEFAULT_SCRATCH_SIZE: usize = 64 * 1024;
/// Bytes past the caller's scratch area that the session uses itself (fd transport messages, clone args).
const INTERNAL_SCRATCH: usize = 4096;
const PAGE_SIZE: usize = 4096;
const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
/// Trampoline page contents: `syscall; int3`.
const TRAMPOLINE_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];

/// Where [`BATCH_CODE`] sits in a trampoline page (after [`TRAMPOLINE_CODE`]).
const BATCH_CODE_OFFSET: u64 = 16;
/// One record of a batch table: nr, six arguments, result.
const BATCH_RECORD: usize = 64;
/// Records per run of the batch code: the table lives in the session's internal scratch page.
const BATCH_RECORDS_PER_RUN: usize = INTERNAL_SCRATCH / BATCH_RECORD;
/// The loop [`RemoteSession::syscall_batch`] runs in the target: for r13 records at r12, load rax and
/// the six argument registers from the record, `syscall`, store rax into the record's last word, next;
/// then `int3`, which stops the thread for us. Hand-assembled x86-64 (offsets in the comments):
const BATCH_CODE: [u8; 51] = [
    0x49, 0x8b, 0x04, 0x24, //       0: mov rax, [r12]
    0x49, 0x8b, 0x7c, 0x24, 0x08, // 4: mov rdi, [r12+8]
    0x49, 0x8b, 0x74, 0x24, 0x10, // 9: mov rsi, [r12+16]
    0x49, 0x8b, 0x54, 0x24, 0x18, // 14: mov rdx, [r12+24]
    0x4d, 0x8b, 0x54, 0x24, 0x20, // 19: mov r10, [r12+32]
    0x4d, 0x8b, 0x44, 0x24, 0x28, // 24: mov r8, [r12+40]
    0x4d, 0x8b, 0x4c, 0x24, 0x30, // 29: mov r9, [r12+48]
    0x0f, 0x05, //                   34: syscall
    0x49, 0x89, 0x44, 0x24, 0x38, // 36: mov [r12+56], rax
    0x49, 0x83, 0xc4, 0x40, //       41: add r12, 64
    0x49, 0xff, 0xcd, //             45: dec r13
    0x75, 0xce, //                   48: jnz 0 (rel8 -50)
    0xcc, //                         50: int3
];
/// What a trampoline page holds from its start: `syscall; int3` (the gadget, at offset 0) and the
/// loop of [`RemoteSession::syscall_batch`] at offset 16. A caller that maps a trampoline itself (a
/// restore maps it in the tracer before the task exists, so that the task inherits it) copies this to
/// the start of the page; [`RemoteSession::install_trampoline`] writes the same.
pub const TRAMPOLINE_PAGE_CODE: [u8; BATCH_CODE_OFFSET as usize + BATCH_CODE.len()] = {
    let mut code = [0xcc; BATCH_CODE_OFFSET as usize + BATCH_CODE.len()];
    let mut i = 0;
    while i < TRAMPOLINE_CODE.len() {
        code[i] = TRAMPOLINE_CODE[i];
        i += 1;
    }
    let mut j = 0;
    while j < BATCH_CODE.len() {
        code[BATCH_CODE_OFFSET as usize + j] = BATCH_CODE[j];
        j += 1;
    }
    code
};

/// Syscalls a batch refuses: they create tasks, replace the program or never return to the loop.
const BATCH_FORBIDDEN: [i64; 9] = [
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigreturn,
];

/// One syscall of a [`RemoteSession::syscall_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteCall {
    /// Syscall number.
    pub nr: i64,
    /// Its six arguments (unused ones 0).
    pub args: [u64; 6],
}

impl RemoteCall {
    /// Syscall `nr` with `args`.
    pub fn new(nr: i64, args: [u64; 6]) -> Self {
        Self { nr, args }
    }
}

/// How a [`RemoteSession`] is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Usable scratch bytes (0: no scratch mapping; fd installation and clone helpers then fail).
    pub scratch_size: usize,
    /// Fixed address for the scratch mapping (MAP_FIXED_NOREPLACE); `None` lets the kernel choose.
    pub scratch_addr: Option<u64>,
    /// Use an existing read-write mapping `(address, length)` as the scratch area instead of mapping a
    /// new one, e.g. the one a forked child inherited from its parent's session
    /// ([`RemoteSession::scratch_mapping`]). Its last page is the session's internal page; it is unmapped
    /// on close like an own one. Overrides `scratch_size` and `scratch_addr`.
    pub inherited_scratch: Option<(u64, usize)>,
    /// Use a caller-owned read-write mapping `(address, length)` as the scratch area; unlike
    /// `inherited_scratch` it stays mapped when the session closes or finishes. Its last page is the
    /// session's internal page. Overrides `scratch_size`, `scratch_addr` and `inherited_scratch`.
    pub borrowed_scratch: Option<(u64, usize)>,
    /// Address of a `syscall` instruction to use instead of searching for one.
    pub gadget: Option<u64>,
    /// Bytes `finish_with_state` unmaps from the trampoline page on (a page, or the trampoline page and
    /// a borrowed scratch area right behind it, so that one call removes both).
    pub trampoline_len: usize,
    /// Upper bound for one remote syscall (a remote pread of a large image may take a while).
    pub syscall_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            scratch_size: DEFAULT_SCRATCH_SIZE,
            scratch_addr: None,
            inherited_scratch: None,
            borrowed_scratch: None,
            gadget: None,
            trampoline_len: PAGE_SIZE,
            syscall_timeout: Duration::from_secs(60),
        }
    }
}

/// Which `syscall` instruction a session executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gadget {
    /// The instruction the thread is stopped in (ip - 2).
    InterruptedSyscall(u64),
    /// A `0f 05` byte pair inside the `[vdso]` mapping.
    Vdso(u64),
    /// A trampoline page (ours or the caller's).
    Trampoline(u64),
}

impl Gadget {
    pub fn addr(&self) -> u64 {
        match *self {
            Gadget::InterruptedSyscall(a) | Gadget::Vdso(a) | Gadget::Trampoline(a) => a,
        }
    }
}

/// The socket pair (inside the target) that carries SCM_RIGHTS messages from us to it.
#[derive(Debug)]
struct FdTransport {
    /// Our duplicate of the target's sending end.
    local_send: OwnedFd,
    remote_send: i32,
    remote_recv: i32,
}

/// The thread a session runs in: borrowed from the caller, or owned by the session (a session that must
/// outlive the scope that created its thread, e.g. one per task kept across the phases of a restore).
#[derive(Debug)]
enum Held<'a> {
    Borrowed(&'a mut Tracee),
    Owned(Box<Tracee>),
    /// The owned thread was handed back by `close_into_tracee` (the session is closed then).
    Released,
}

impl std::ops::Deref for Held<'_> {
    type Target = Tracee;
    fn deref(&self) -> &Tracee {
        match self {
            Held::Borrowed(t) => t,
            Held::Owned(t) => t,
            Held::Released => unreachable!("a closed session never touches its thread"),
        }
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Tracee {
        match self {
            Held::Borrowed(t) => t,
            Held::Owned(t) => t,
            Held::Released => unreachable!("a closed session never touches its thread"),
        }
    }
}

/// A remote-syscall session on one stopped thread.
///
/// On creation it saves the thread's registers and signal mask, blocks all signals in the thread (so no
/// handler can run on injected state; signals stay queued), finds a `syscall` gadget and maps a scratch
/// area. [`RemoteSession::close`] (or drop) unmaps the scratch area and restores registers and mask
/// exactly. Signals that still produce a signal-delivery-stop during injection (synchronous ones) are
/// suppressed and re-sent when the [`Tracee`] is detached.
///
/// ```no_run
/// # use criu_compel::{Tracee, SeizeOptions, RemoteSession};
/// # fn demo(pid: i32) -> Result<(), criu_compel::CompelError> {
/// let mut t = Tracee::seize(pid, SeizeOptions::default())?;
/// t.interrupt_and_wait(std::time::Duration::from_secs(1))?;
/// let mut s = RemoteSession::new(&mut t)?;
/// assert_eq!(s.syscall(libc::SYS_getpid, [0; 6])?, i64::from(pid));
/// s.close()?;
/// t.detach(0)
/// # }
/// ```
#[derive(Debug)]
pub struct RemoteSession<'a> {
    tracee: Held<'a>,
    mem: ProcMem,
    saved_regs: UserRegs,
    saved_sigmask: u64,
    gadget: Gadget,
    /// Whole mapping (caller part + internal part); (0, 0) if none.
    scratch_base: u64,
    scratch_mapped: usize,
    scratch_user: usize,
    /// The scratch mapping belongs to the caller: close and finish leave it mapped.
    scratch_borrowed: bool,
    /// Length unmapped from the trampoline page by `finish_with_state`.
    trampoline_len: usize,
    pidfd: Option<OwnedFd>,
    transport: Option<FdTransport>,
    timeout: Duration,
    closed: bool,
    /// Address of [`BATCH_CODE`] in the target, once known.
    batch_code: Option<u64>,
    /// A page mapped only to hold [`BATCH_CODE`] (no trampoline page of ours had room): unmapped with
    /// the scratch area.
    batch_page: Option<u64>,
}

fn round_up_page(n: usize) -> usize {
    n.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

fn vdso_range(pid: Pid) -> Result<Option<(u64, u64)>, CompelError> {
    let path = format!("/proc/{pid}/maps");
    let maps = std::fs::read_to_string(&path).map_err(|e| CompelError::proc(&path, e))?;
    Ok(maps.lines().find_map(|line| {
        if !line.trim_end().ends_with("[vdso]") {
            return None;
        }
        let range = line.split_whitespace().next()?;
        let (start, end) = range.split_once('-')?;
        Some((
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        ))
    }))
}

fn nofile_soft_limit(pid: Pid) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl RemoteSession<'static> {
    /// Starts a session that owns its thread, so that it can be stored (e.g. one per task under
    /// restore) independently of the scope that seized or adopted the thread. Get the thread back with
    /// [`RemoteSession::close_into_tracee`]; dropping the session tears it down and detaches the thread.
    pub fn owning(tracee: Tracee, options: RemoteOptions) -> Result<Self, CompelError> {
        Self::start(Held::Owned(Box::new(tracee)), options, None)
    }

    /// [`RemoteSession::owning`] that works through `mem`, an open /proc/PID/mem of the thread's process
    /// (e.g. a [`ProcMem::try_clone`] of one shared by every thread of a task under restore), instead of
    /// opening its own.
    pub fn owning_with_mem(
        tracee: Tracee,
        options: RemoteOptions,
        mem: ProcMem,
    ) -> Result<Self, CompelError> {
        if mem.pid() != tracee.tgid() {
            return Err(CompelError::InvalidArgument(format!(
                "memory of process {} given for a session in thread {} of process {}",
                mem.pid(),
                tracee.tid(),
                tracee.tgid()
            )));
        }
        Self::start(Held::Owned(Box::new(tracee)), options, Some(mem))
    }
}

impl<'a> RemoteSession<'a> {
    /// Starts a session with default options (gadget searched, 64 KiB scratch).
    pub fn new(tracee: &'a mut Tracee) -> Result<Self, CompelError> {
        Self::with_options(tracee, RemoteOptions::default())
    }

    /// Starts a session that executes syscalls at `trampoline`, which must already hold a `syscall`
    /// instruction (see [`RemoteSession::install_trampoline`]); used when the thread's own code and vdso
    /// are being replaced, e.g. in a restore.
    pub fn with_trampoline(tracee: &'a mut Tracee, trampoline: u64) -> Result<Self, CompelError> {
        Self::with_options(
            tracee,
            RemoteOptions {
                gadget: Some(trampoline),
                ..RemoteOptions::default()
            },
        )
    }

    /// Starts a session with explicit options.
    pub fn with_options(
        tracee: &'a mut Tracee,
        options: RemoteOptions,
    ) -> Result<Self, CompelError> {
        Self::start(Held::Borrowed(tracee), options, None)
    }

    fn start(
        mut tracee: Held<'a>,
        options: RemoteOptions,
        mem: Option<ProcMem>,
    ) -> Result<Self, CompelError> {
        if !tracee.is_stopped() {
            return Err(CompelError::InvalidArgument(format!(
                "thread {} must be in a ptrace-stop to start a remote session",
                tracee.tid()
            )));
        }
        if let Some(signal) = tracee.pending_delivery() {
            // Single-stepping from a signal-delivery-stop would discard the signal.
            if signal != libc::SIGTRAP {
                tracee.defer_signal(signal);
            }
        }
        let mem = match mem {
            Some(mem) => mem,
            None => ProcMem::open(tracee.tgid())?,
        };
        let saved_regs = tracee.regs()?;
        let saved_sigmask = tracee.sigmask()?;
        let gadget = match options.gadget {
            Some(addr) => {
                let found = mem.read_vec(addr, 2)?;
                if found != SYSCALL_INSN {
                    return Err(CompelError::BadTrampoline {
                        tid: tracee.tid(),
                        addr,
                        found,
                    });
                }
                Gadget::Trampoline(addr)
            }
            None => find_gadget(&tracee, &mem, &saved_regs)?,
        };
        tracee.set_sigmask(!0u64)?;
        let mut session = RemoteSession {
            tracee,
            mem,
            saved_regs,
            saved_sigmask,
            gadget,
            scratch_base: 0,
            scratch_mapped: 0,
            scratch_user: 0,
            scratch_borrowed: false,
            trampoline_len: options.trampoline_len,
            pidfd: None,
            transport: None,
            timeout: options.syscall_timeout,
            closed: false,
            batch_code: None,
            batch_page: None,
        };
        if let Some((addr, len)) = options.borrowed_scratch.or(options.inherited_scratch) {
            if len <= INTERNAL_SCRATCH || len % PAGE_SIZE != 0 || addr % PAGE_SIZE as u64 != 0 {
                return Err(CompelError::InvalidArgument(format!(
                    "inherited scratch {addr:#x}+{len:#x} is not a page-aligned mapping larger than one page"
                )));
            }
            session.scratch_base = addr;
            session.scratch_mapped = len;
            session.scratch_user = len - INTERNAL_SCRATCH;
            session.scratch_borrowed = options.borrowed_scratch.is_some();
        } else if options.scratch_size > 0 {
            let len = round_up_page(options.scratch_size + INTERNAL_SCRATCH);
            let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
            if options.scratch_addr.is_some() {
                flags |= libc::MAP_FIXED_NOREPLACE;
            }
            let addr = session.syscall(
                libc::SYS_mmap,
                [
                    options.scratch_addr.unwrap_or(0),
                    len as u64,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    flags as u64,
                    u64::MAX,
                    0,
                ],
            )?;
            session.scratch_base = addr as u64;
            session.scratch_mapped = len;
            session.scratch_user = options.scratch_size;
        }
        Ok(session)
    }

    /// The thread this session runs in (read-only while the session lives).
    pub fn tracee(&self) -> &Tracee {
        &self.tracee
    }

    /// Registers as they were when the session started (restored by `close`).
    pub fn saved_regs(&self) -> &UserRegs {
        &self.saved_regs
    }

    /// Signal mask as it was when the session started (restored by `close`).
    pub fn saved_sigmask(&self) -> u64 {
        self.saved_sigmask
    }

    /// Replaces the registers `close` will restore (e.g. to leave the thread with dumped state).
    pub fn set_saved_regs(&mut self, regs: UserRegs) {
        self.saved_regs = regs;
    }

    /// Replaces the signal mask `close` will restore.
    pub fn set_saved_sigmask(&mut self, mask: u64) {
        self.saved_sigmask = mask;
    }

    /// The `syscall` instruction in use.
    pub fn gadget(&self) -> Gadget {
        self.gadget
    }

    /// The target's memory (/proc/PID/mem).
    pub fn mem(&self) -> &ProcMem {
        &self.mem
    }

    /// Start of the caller's scratch area in the target (0 if none).
    pub fn scratch_addr(&self) -> u64 {
        self.scratch_base
    }

    /// Usable scratch bytes.
    pub fn scratch_size(&self) -> usize {
        self.scratch_user
    }

    /// The whole scratch mapping (address, length), including the session's internal page.
    pub fn scratch_mapping(&self) -> (u64, usize) {
        (self.scratch_base, self.scratch_mapped)
    }

    fn check_scratch(&self, offset: usize, len: usize) -> Result<u64, CompelError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.scratch_user => Ok(self.scratch_base + offset as u64),
            _ => Err(CompelError::ScratchRange {
                offset,
                len,
                size: self.scratch_user,
            }),
        }
    }

    /// Writes `data` at `offset` of the scratch area; returns its address in the target.
    pub fn scratch_write(&mut self, offset: usize, data: &[u8]) -> Result<u64, CompelError> {
        let addr = self.check_scratch(offset, data.len())?;
        self.mem.write_all_at(addr, data)?;
        Ok(addr)
    }

    /// Reads `len` bytes at `offset` of the scratch area.
    pub fn scratch_read(&self, offset: usize, len: usize) -> Result<Vec<u8>, CompelError> {
        let addr = self.check_scratch(offset, len)?;
        self.mem.read_vec(addr, len)
    }

    fn internal_addr(&self) -> Result<u64, CompelError> {
        if self.scratch_mapped == 0 {
            return Err(CompelError::InvalidArgument(format!(
                "remote session on thread {} has no scratch area",
                self.tracee.tid()
            )));
        }
        Ok(self.scratch_base + (self.scratch_mapped - INTERNAL_SCRATCH) as u64)
    }

    /// Runs syscall `nr` with `args` in the thread and returns its result; a result in -4095..-1 is
    /// returned as [`CompelError::RemoteSyscall`] carrying the errno.
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, CompelError> {
        let ret = self.syscall_raw(nr, args)?;
        self.check_ret(nr, ret)
    }

    fn check_ret(&self, nr: i64, ret: i64) -> Result<i64, CompelError> {
        if (-4095..0).contains(&ret) {
            Err(CompelError::RemoteSyscall {
                tid: self.tracee.tid(),
                nr,
                errno: (-ret) as i32,
            })
        } else {
            Ok(ret)
        }
    }

    /// Runs syscall `nr` and returns the raw value of rax (negative errno on failure).
    pub fn syscall_raw(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, CompelError> {
        self.run(nr, args).map(|(ret, _)| ret)
    }

    fn injected_regs(&self, nr: i64, args: [u64; 6]) -> UserRegs {
        let mut regs = self.saved_regs;
        regs.ax = nr as u64;
        // Not "inside a syscall": keeps the kernel from applying restart logic to the injected call.
        regs.orig_ax = u64::MAX;
        regs.di = args[0];
        regs.si = args[1];
        regs.dx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        regs.ip = self.gadget.addr();
        // No single-step flag left over from the saved state; keep the rest of rflags.
        regs.flags &= !0x100;
        regs
    }

    /// Executes one syscall at the gadget by single-stepping. Returns rax and the id of a task created
    /// by it (reported through a PTRACE_EVENT_CLONE/FORK/VFORK stop).
    fn run(&mut self, nr: i64, args: [u64; 6]) -> Result<(i64, Option<Pid>), CompelError> {
        if self.closed {
            return Err(CompelError::InvalidArgument(
                "remote session already closed".into(),
            ));
        }
        let regs = self.injected_regs(nr, args);
        self.tracee.set_regs(&regs)?;
        let gadget = self.gadget.addr();
        let mut created = None;
        loop {
            self.tracee.single_step(0)?;
            let event = self.tracee.wait_stop_timeout(self.timeout)?;
            match event {
                StopEvent::Exited { .. } | StopEvent::Killed { .. } => {
                    return Err(CompelError::ThreadGone {
                        tid: self.tracee.tid(),
                        how: format!("{event} during remote syscall {nr}"),
                    })
                }
                StopEvent::ExitPending { .. } => {
                    return Err(CompelError::ThreadGone {
                        tid: self.tracee.tid(),
                        how: format!("exiting during remote syscall {nr}"),
                    })
                }
                StopEvent::Clone { new_tid } => {
                    created = Some(new_tid);
                    continue;
                }
                StopEvent::Fork { new_pid } | StopEvent::Vfork { new_pid } => {
                    created = Some(new_pid);
                    continue;
                }
                StopEvent::Signal { signal } if signal != libc::SIGTRAP => {
                    self.tracee.defer_signal(signal);
                }
                _ => {}
            }
            let now = self.tracee.regs()?;
            if now.ip == gadget + 2 {
                return Ok((now.ax as i64, created));
            }
            if now.ip != gadget {
                return Err(CompelError::UnexpectedStop {
                    tid: self.tracee.tid(),
                    event: format!("{event} at ip {:#x} (gadget {gadget:#x})", now.ip),
                    during: "a remote syscall",
                });
            }
            // Still before the syscall (a stale trap, a group-stop or an interrupt): step again.
        }
    }

    /// Runs a clone/clone3/fork-type syscall and returns its result together with the new task, which
    /// the kernel auto-attached (PTRACE_O_TRACECLONE/TRACEFORK are switched on for the call if needed).
    /// The child is stopped at its first instruction after the syscall (ip = gadget + 2, rax = 0), with
    /// the parent's options and the session's all-blocked signal mask: set its registers and mask
    /// before resuming it.
    pub fn syscall_expect_clone(
        &mut self,
        nr: i64,
        args: [u64; 6],
    ) -> Result<(i64, Tracee), CompelError> {
        let original = self.tracee.options();
        let tracing = crate::SeizeOptions {
            trace_clone: true,
            trace_fork: true,
            ..original
        };
        if tracing != original {
            self.tracee.set_options(tracing)?;
        }
        let outcome = self.run(nr, args);
        if tracing != original {
            self.tracee.set_options(original)?;
        }
        let (ret, created) = outcome?;
        let ret = self.check_ret(nr, ret)?;
        let new_tid = created.ok_or_else(|| CompelError::UnexpectedStop {
            tid: self.tracee.tid(),
            event: format!("syscall {nr} returned {ret} without a clone event"),
            during: "a remote clone",
        })?;
        let mut child = Tracee::adopt_auto_attached(new_tid, &self.tracee)?;
        if child.options() != original {
            child.set_options(original)?;
        }
        Ok((ret, child))
    }

    /// Maps a one-page trampoline (`syscall; int3`, r-x, written through /proc/PID/mem) at `addr` (or
    /// anywhere when `None`) and switches the session to it. Returns its address.
    pub fn install_trampoline(&mut self, addr: Option<u64>) -> Result<u64, CompelError> {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if addr.is_some() {
            flags |= libc::MAP_FIXED_NOREPLACE;
        }
        let page = self.syscall(
            libc::SYS_mmap,
            [
                addr.unwrap_or(0),
                PAGE_SIZE as u64,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                flags as u64,
                u64::MAX,
                0,
            ],
        )? as u64;
        self.mem.write_all_at(page, &TRAMPOLINE_PAGE_CODE)?;
        self.gadget = Gadget::Trampoline(page);
        self.batch_code = Some(page + BATCH_CODE_OFFSET);
        Ok(page)
    }

    /// Runs `calls` in the thread with one resume per [`BATCH_RECORDS_PER_RUN`] calls instead of one
    /// single-step each, and returns each call's result as [`RemoteSession::syscall`] would. The outer
    /// error means the batch could not run (the thread's registers are then still the session's).
    ///
    /// Why: every remote syscall costs a ptrace round trip (set registers, single-step, wait, read
    /// registers: about 10-40 us here), and a dump or restore makes dozens per process (62 signal
    /// actions alone). A batch writes the calls into the internal scratch page, points the thread at a
    /// small loop ([`BATCH_CODE`]: in our trampoline page, or in a page mapped for it once), lets it run
    /// to the loop's `int3` and reads the results back: one round trip for up to 64 calls.
    ///
    /// Calls run in order and each sees the effects of the ones before; a failing call does not stop
    /// the others. Task-creating, exec and exit syscalls are refused. Arguments pointing into the
    /// scratch area are the caller's business, as with [`RemoteSession::syscall`].
    pub fn syscall_batch(
        &mut self,
        calls: &[RemoteCall],
    ) -> Result<Vec<Result<i64, CompelError>>, CompelError> {
        if self.closed {
            return Err(CompelError::InvalidArgument(
                "remote session already closed".into(),
            ));
        }
        if let Some(call) = calls.iter().find(|c| BATCH_FORBIDDEN.contains(&c.nr)) {
            return Err(CompelError::InvalidArgument(format!(
                "syscall {} cannot run in a batch",
                call.nr
            )));
        }
        let mut results = Vec::with_capacity(calls.len());
        for run in calls.chunks(BATCH_RECORDS_PER_RUN) {
            for (call, raw) in run.iter().zip(self.run_batch(run)?) {
                results.push(self.check_ret(call.nr, raw));
            }
        }
        Ok(results)
    }

    /// The address of [`BATCH_CODE`] in the target: in the trampoline page (which must then start
    /// with [`TRAMPOLINE_PAGE_CODE`]), else in a page mapped now (r-x, written through /proc/PID/mem).
    ///
    /// A session on a trampoline never maps a page of its own: its owner lays out the address space
    /// (a restore maps VMAs at fixed addresses), and a page placed by the kernel could be in the way.
    fn batch_code_addr(&mut self) -> Result<u64, CompelError> {
        if let Some(addr) = self.batch_code {
            return Ok(addr);
        }
        if let Gadget::Trampoline(gadget) = self.gadget {
            let page = gadget & !(PAGE_SIZE as u64 - 1);
            let candidate = page + BATCH_CODE_OFFSET;
            if self.mem.read_vec(candidate, BATCH_CODE.len())? != BATCH_CODE {
                return Err(CompelError::InvalidArgument(format!(
                    "the trampoline page at {page:#x} does not start with TRAMPOLINE_PAGE_CODE: \
                     no syscall batches there"
                )));
            }
            self.batch_code = Some(candidate);
            return Ok(candidate);
        }
        let page = self.syscall(
            libc::SYS_mmap,
            [
                0,
                PAGE_SIZE as u64,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )? as u64;
        self.batch_page = Some(page);
        self.mem.write_all_at(page, &BATCH_CODE)?;
        self.batch_code = Some(page);
        Ok(page)
    }

    /// Runs up to [`BATCH_RECORDS_PER_RUN`] calls; returns the raw rax of each.
    fn run_batch(&mut self, calls: &[RemoteCall]) -> Result<Vec<i64>, CompelError> {
        let code = self.batch_code_addr()?;
        let table = self.internal_addr()?;
        let mut records = vec![0u8; calls.len() * BATCH_RECORD];
        for (record, call) in records.chunks_exact_mut(BATCH_RECORD).zip(calls) {
            record[..8].copy_from_slice(&call.nr.to_le_bytes());
            for (slot, arg) in record[8..56].chunks_exact_mut(8).zip(call.args) {
                slot.copy_from_slice(&arg.to_le_bytes());
            }
        }
        self.mem.write_all_at(table, &records)?;
        let mut regs = self.injected_regs(-1, [0; 6]);
        regs.ip = code;
        regs.r12 = table;
        regs.r13 = calls.len() as u64;
        self.tracee.set_regs(&regs)?;
        let end = code + BATCH_CODE.len() as u64;
        let tid = self.tracee.tid();
        loop {
            self.tracee.cont(0)?;
            let event = match self.tracee.wait_stop_timeout(self.timeout) {
                Ok(event) => event,
                Err(e) => {
                    // Stop it again, so that the session can still put its registers back.
                    if !matches!(e, CompelError::ThreadGone { .. }) {
                        let _ = self.tracee.interrupt_and_wait(self.timeout);
                    }
                    return Err(e);
                }
            };
            match event {
                event if event.is_gone() => {
                    return Err(CompelError::ThreadGone {
                        tid,
                        how: format!("{event} during a remote syscall batch"),
                    })
                }
                StopEvent::ExitPending { .. } => {
                    return Err(CompelError::ThreadGone {
                        tid,
                        how: "exiting during a remote syscall batch".into(),
                    })
                }
                StopEvent::Signal {
                    signal: libc::SIGTRAP,
                } if self.tracee.regs()?.ip == end => break,
                // A trap left over from an earlier stop: carry on.
                StopEvent::Signal {
                    signal: libc::SIGTRAP,
                } => {}
                StopEvent::Signal {
                    signal: libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE,
                } => {
                    return Err(CompelError::UnexpectedStop {
                        tid,
                        event: format!("{event} at ip {:#x}", self.tracee.regs()?.ip),
                        during: "a remote syscall batch",
                    })
                }
                StopEvent::Signal { signal } => self.tracee.defer_signal(signal),
                StopEvent::Clone { .. } | StopEvent::Fork { .. } | StopEvent::Vfork { .. } => {
                    return Err(CompelError::UnexpectedStop {
                        tid,
                        event: event.to_string(),
                        during: "a remote syscall batch",
                    })
                }
                // Group-stops, interrupts: resume the loop.
                _ => {}
            }
        }
        let back = self.mem.read_vec(table, records.len())?;
        Ok(back
            .chunks_exact(BATCH_RECORD)
            .map(|record| i64::from_le_bytes(record[56..64].try_into().unwrap_or([0; 8])))
            .collect())
    }

    fn pidfd(&mut self) -> Result<&OwnedFd, CompelError> {
        let pidfd = match self.pidfd.take() {
            Some(fd) => fd,
            None => {
                let tgid = self.tracee.tgid();
                sys::pidfd_open(tgid, 0).map_err(|source| CompelError::Fd {
                    op: "pidfd_open",
                    pid: tgid,
                    fd: -1,
                    source,
                })?
            }
        };
        Ok(self.pidfd.insert(pidfd))
    }

    /// A duplicate of the target's fd `target_fd` (pidfd_getfd: same open file description).
    pub fn steal_fd(&mut self, target_fd: i32) -> Result<OwnedFd, CompelError> {
        let pid = self.tracee.tgid();
        let pidfd = self.pidfd()?;
        sys::pidfd_getfd(pidfd.as_fd(), target_fd).map_err(|source| CompelError::Fd {
            op: "pidfd_getfd",
            pid,
            fd: target_fd,
            source,
        })
    }

    /// Moves a transport fd of the target up to the first free number at or above RLIMIT_NOFILE - 64,
    /// away from the low numbers callers install files at; keeps it where it is if nothing is free there.
    fn relocate_remote_fd(&mut self, fd: i32) -> Result<i32, CompelError> {
        let base = nofile_soft_limit(self.tracee.tgid())
            .map(|limit| limit.saturating_sub(64).max(3))
            .unwrap_or(3);
        match self.syscall(
            libc::SYS_fcntl,
            [fd as u64, libc::F_DUPFD_CLOEXEC as u64, base, 0, 0, 0],
        ) {
            Ok(moved) => {
                self.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
                Ok(moved as i32)
            }
            // Nothing free up there: keep the low number (install_fd still relocates on collision).
            Err(CompelError::RemoteSyscall { errno, .. })
                if errno == libc::EMFILE || errno == libc::EINVAL =>
            {
                Ok(fd)
            }
            Err(e) => Err(e),
        }
    }

    fn ensure_transport(&mut self) -> Result<(), CompelError> {
        if self.transport.is_some() {
            return Ok(());
        }
        let area = self.internal_addr()?;
        self.mem.write_all_at(area, &[0u8; 8])?;
        self.syscall(
            libc::SYS_socketpair,
            [
                libc::AF_UNIX as u64,
                (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64,
                0,
                area,
                0,
                0,
            ],
        )?;
        let raw = self.mem.read_vec(area, 8)?;
        let send = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let recv = i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let remote_send = self.relocate_remote_fd(send)?;
        let remote_recv = self.relocate_remote_fd(recv)?;
        let local_send = self.steal_fd(remote_send)?;
        self.transport = Some(FdTransport {
            local_send,
            remote_send,
            remote_recv,
        });
        Ok(())
    }

    /// Installs a duplicate of our `fd` in the target as fd number `target_fd` (replacing whatever was
    /// there), with FD_CLOEXEC set iff `cloexec`. The file travels over SCM_RIGHTS through a socket pair
    /// the target creates by remote syscalls (kept at high fd numbers until `close`), is received with a
    /// remote recvmsg and moved into place with a remote dup3.
    pub fn install_fd(
        &mut self,
        fd: impl AsFd,
        target_fd: i32,
        cloexec: bool,
    ) -> Result<(), CompelError> {
        if target_fd < 0 {
            return Err(CompelError::InvalidArgument(format!(
                "target fd {target_fd}"
            )));
        }
        self.ensure_transport()?;
        // The wanted number may be one of our transport fds: move that one out of the way first.
        if let Some(t) = self.transport.as_ref() {
            let (send, recv) = (t.remote_send, t.remote_recv);
            if send == target_fd {
                let moved = self.relocate_away(send, target_fd)?;
                if let Some(t) = self.transport.as_mut() {
                    t.remote_send = moved;
                }
            } else if recv == target_fd {
                let moved = self.relocate_away(recv, target_fd)?;
                if let Some(t) = self.transport.as_mut() {
                    t.remote_recv = moved;
                }
            }
        }
        let (local_send, remote_recv) = match self.transport.as_ref() {
            Some(t) => (t.local_send.as_fd(), t.remote_recv),
            None => return Err(CompelError::InvalidArgument("fd transport missing".into())),
        };
        let pid = self.tracee.tgid();
        sys::send_fd(local_send, fd.as_fd()).map_err(|source| CompelError::Fd {
            op: "sendmsg(SCM_RIGHTS)",
            pid,
            fd: target_fd,
            source,
        })?;
        let received = self.remote_recv_fd(remote_recv, cloexec)?;
        if received != target_fd {
            let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
            let dup = self.syscall(
                libc::SYS_dup3,
                [received as u64, target_fd as u64, flags as u64, 0, 0, 0],
            );
            self.syscall(libc::SYS_close, [received as u64, 0, 0, 0, 0, 0])?;
            dup?;
        }
        Ok(())
    }

    fn relocate_away(&mut self, fd: i32, avoid: i32) -> Result<i32, CompelError> {
        let moved = self.syscall(
            libc::SYS_fcntl,
            [
                fd as u64,
                libc::F_DUPFD_CLOEXEC as u64,
                (avoid + 1) as u64,
                0,
                0,
                0,
            ],
        )?;
        self.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
        Ok(moved as i32)
    }

    /// Remote recvmsg of one SCM_RIGHTS message on `sock`; returns the fd number it got in the target.
    fn remote_recv_fd(&mut self, sock: i32, cloexec: bool) -> Result<i32, CompelError> {
        Ok(self.remote_recv_fds(sock, 1, cloexec)?[0])
    }

    /// Remote recvmsg of one SCM_RIGHTS message with `count` fds on `sock`; returns their numbers.
    fn remote_recv_fds(
        &mut self,
        sock: i32,
        count: usize,
        cloexec: bool,
    ) -> Result<Vec<i32>, CompelError> {
        let base = self.internal_addr()?;
        // Layout in the internal page: msghdr @0 (56 bytes), iovec @64, 1 data byte @80, cmsg @96
        // (CMSG_SPACE(4 * 253) = 1032 bytes at most).
        let iov_addr = base + 64;
        let data_addr = base + 80;
        let control_addr = base + 96;
        let control_len = 16 + (4 * count as u64).div_ceil(8) * 8;
        let mut page = vec![0u8; 96 + control_len as usize];
        page[16..24].copy_from_slice(&iov_addr.to_le_bytes()); // msg_iov
        page[24..32].copy_from_slice(&1u64.to_le_bytes()); // msg_iovlen
        page[32..40].copy_from_slice(&control_addr.to_le_bytes()); // msg_control
        page[40..48].copy_from_slice(&control_len.to_le_bytes()); // msg_controllen
        page[64..72].copy_from_slice(&data_addr.to_le_bytes()); // iov_base
        page[72..80].copy_from_slice(&1u64.to_le_bytes()); // iov_len
        self.mem.write_all_at(base, &page)?;
        let mut flags = libc::MSG_DONTWAIT;
        if cloexec {
            flags |= libc::MSG_CMSG_CLOEXEC;
        }
        self.syscall(
            libc::SYS_recvmsg,
            [sock as u64, base, flags as u64, 0, 0, 0],
        )?;
        let back = self.mem.read_vec(base, page.len())?;
        let msg_flags = i32::from_le_bytes([back[48], back[49], back[50], back[51]]);
        let cmsg = &back[96..];
        let word =
            |at: usize| i32::from_le_bytes([cmsg[at], cmsg[at + 1], cmsg[at + 2], cmsg[at + 3]]);
        let cmsg_len = u64::from_le_bytes(cmsg[..8].try_into().unwrap_or([0; 8]));
        let got = (cmsg_len.saturating_sub(16) / 4) as usize;
        if word(8) != libc::SOL_SOCKET
            || word(12) != libc::SCM_RIGHTS
            || msg_flags & libc::MSG_CTRUNC != 0
            || got != count
        {
            return Err(CompelError::Fd {
                op: "remote recvmsg(SCM_RIGHTS)",
                pid: self.tracee.tgid(),
                fd: sock,
                source: std::io::Error::from_raw_os_error(libc::EPROTO),
            });
        }
        Ok((0..count).map(|i| word(16 + 4 * i)).collect())
    }

    fn unmap_batch_page(&mut self) -> Result<(), CompelError> {
        if let Some(page) = self.batch_page.take() {
            self.batch_code = None;
            self.syscall(libc::SYS_munmap, [page, PAGE_SIZE as u64, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<(), CompelError> {
        let mut first_error = None;
        if let Some(t) = self.transport.take() {
            if let Err(e) = self.close_remote_transport(&t) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.unmap_batch_page() {
            first_error.get_or_insert(e);
        }
        if self.scratch_mapped > 0 && !self.scratch_borrowed {
            if let Err(e) = self.syscall(
                libc::SYS_munmap,
                [self.scratch_base, self.scratch_mapped as u64, 0, 0, 0, 0],
            ) {
                first_error.get_or_insert(e);
            }
            self.scratch_mapped = 0;
            self.scratch_user = 0;
        }
        self.closed = true;
        if let Err(e) = self.tracee.set_sigmask(self.saved_sigmask) {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.tracee.set_regs(&self.saved_regs) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Ends the session: closes the fd transport in the target, unmaps the scratch area and restores
    /// the registers and signal mask saved at the start (or set with `set_saved_*`).
    pub fn close(mut self) -> Result<(), CompelError> {
        self.teardown()
    }

    /// Like [`RemoteSession::close`], and hands back the thread of a session made with
    /// [`RemoteSession::owning`] (`None` for a session on a borrowed thread). The thread is returned
    /// even when the teardown failed, together with the first error.
    pub fn close_into_tracee(mut self) -> (Option<Tracee>, Result<(), CompelError>) {
        let result = self.teardown();
        let held = std::mem::replace(&mut self.tracee, Held::Released);
        match held {
            Held::Owned(tracee) => (Some(*tracee), result),
            Held::Borrowed(_) | Held::Released => (None, result),
        }
    }

    /// Uses a transport the caller set up instead of one made by remote syscalls: `local_send` is our
    /// end of a connected socket pair and `remote_recv` the number at which the target holds the other
    /// end (e.g. inherited across fork). The target's end is closed by [`RemoteSession::close_transport`]
    /// or when the session ends.
    pub fn adopt_transport(
        &mut self,
        local_send: OwnedFd,
        remote_recv: i32,
    ) -> Result<(), CompelError> {
        if remote_recv < 0 {
            return Err(CompelError::InvalidArgument(format!(
                "transport fd {remote_recv} of thread {}",
                self.tracee.tid()
            )));
        }
        if let Some(old) = self.transport.replace(FdTransport {
            local_send,
            remote_send: -1,
            remote_recv,
        }) {
            self.close_remote_transport(&old)?;
        }
        Ok(())
    }

    fn close_remote_transport(&mut self, t: &FdTransport) -> Result<(), CompelError> {
        for fd in [t.remote_send, t.remote_recv] {
            if fd >= 0 {
                self.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
            }
        }
        Ok(())
    }

    /// Closes the target's ends of the fd transport now (it is made again if fds are installed later).
    pub fn close_transport(&mut self) -> Result<(), CompelError> {
        match self.transport.take() {
            Some(t) => self.close_remote_transport(&t),
            None => Ok(()),
        }
    }

    /// Installs duplicates of `fds` in the target at whatever numbers the kernel picks (the lowest free
    /// ones) and returns those numbers, in order. The fds travel in SCM_RIGHTS messages of at most
    /// [`MAX_FDS_PER_MESSAGE`] each, one remote recvmsg per message. FD_CLOEXEC is set iff `cloexec`.
    pub fn install_fds(
        &mut self,
        fds: &[std::os::fd::BorrowedFd<'_>],
        cloexec: bool,
    ) -> Result<Vec<i32>, CompelError> {
        self.ensure_transport()?;
        let mut numbers = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(MAX_FDS_PER_MESSAGE) {
            let (local_send, remote_recv) = match self.transport.as_ref() {
                Some(t) => (t.local_send.as_fd(), t.remote_recv),
                None => return Err(CompelError::InvalidArgument("fd transport missing".into())),
            };
            let pid = self.tracee.tgid();
            sys::send_fds(local_send, chunk).map_err(|source| CompelError::Fd {
                op: "sendmsg(SCM_RIGHTS)",
                pid,
                fd: remote_recv,
                source,
            })?;
            numbers.extend(self.remote_recv_fds(remote_recv, chunk.len(), cloexec)?);
        }
        Ok(numbers)
    }

    /// Ends a restore: unmaps the scratch area, then unmaps the trampoline page under PTRACE_SYSCALL and,
    /// at that munmap's syscall-exit stop, sets `regs` (apply [`crate::fixup_syscall_restart`] first),
    /// `xstate` and `sigmask`. The thread is left in that stop; detach it to let it run. Requires a
    /// trampoline gadget (a page of its own).
    pub fn finish_with_state(
        mut self,
        regs: &UserRegs,
        xstate: Option<&XState>,
        sigmask: u64,
    ) -> Result<(), CompelError> {
        self.finish(regs, xstate, sigmask)
    }

    fn finish(
        &mut self,
        regs: &UserRegs,
        xstate: Option<&XState>,
        sigmask: u64,
    ) -> Result<(), CompelError> {
        let Gadget::Trampoline(trampoline) = self.gadget else {
            return Err(CompelError::InvalidArgument(format!(
                "thread {}: finish_with_state needs a trampoline gadget, not {:?}",
                self.tracee.tid(),
                self.gadget
            )));
        };
        if let Some(t) = self.transport.take() {
            self.close_remote_transport(&t)?;
        }
        self.unmap_batch_page()?;
        if self.scratch_mapped > 0 && !self.scratch_borrowed {
            self.syscall(
                libc::SYS_munmap,
                [self.scratch_base, self.scratch_mapped as u64, 0, 0, 0, 0],
            )?;
        }
        self.scratch_mapped = 0;
        self.closed = true;
        let page = trampoline & !(PAGE_SIZE as u64 - 1);
        let len = round_up_page(self.trampoline_len.max(1)) as u64;
        let mut call = self.injected_regs(libc::SYS_munmap, [page, len, 0, 0, 0, 0]);
        call.ip = trampoline;
        self.tracee.set_regs(&call)?;
        let tid = self.tracee.tid();
        let mut exits_seen = 0;
        // Entry stop, then exit stop; anything else (interrupt traps, stale signals) is stepped over.
        while exits_seen < 2 {
            self.tracee.syscall_step(0)?;
            match self.tracee.wait_stop_timeout(self.timeout)? {
                StopEvent::Syscall => exits_seen += 1,
                event if event.is_gone() => {
                    return Err(CompelError::ThreadGone {
                        tid,
                        how: format!("{event} while unmapping the trampoline"),
                    })
                }
                StopEvent::Signal { signal } if signal != libc::SIGTRAP => {
                    self.tracee.defer_signal(signal)
                }
                _ => {}
            }
        }
        let after = self.tracee.regs()?;
        if after.ax != 0 {
            return Err(CompelError::RemoteSyscall {
                tid,
                nr: libc::SYS_munmap,
                errno: (-(after.ax as i64)) as i32,
            });
        }
        self.tracee.set_regs(regs)?;
        if let Some(x) = xstate {
            self.tracee.set_xstate(x)?;
        }
        self.tracee.set_sigmask(sigmask)?;
        Ok(())
    }

    /// [`RemoteSession::finish_with_state`] that hands back the thread of a session made with
    /// [`RemoteSession::owning`] (`None` for a borrowed thread), left in the munmap's syscall-exit stop.
    pub fn finish_into_tracee(
        mut self,
        regs: &UserRegs,
        xstate: Option<&XState>,
        sigmask: u64,
    ) -> (Option<Tracee>, Result<(), CompelError>) {
        let result = self.finish(regs, xstate, sigmask);
        (self.release(), result)
    }

    /// Gives up the session without any remote call or register change (the thread was killed, or
    /// is about to be), handing back the thread of an owning session.
    pub fn abandon(mut self) -> Option<Tracee> {
        self.release()
    }

    /// Marks the session closed and takes an owned thread out of it.
    fn release(&mut self) -> Option<Tracee> {
        self.closed = true;
        match std::mem::replace(&mut self.tracee, Held::Released) {
            Held::Owned(tracee) => Some(*tracee),
            Held::Borrowed(_) | Held::Released => None,
        }
    }

    /// Changes the ptrace options of the thread (e.g. adds `suspend_seccomp` once a filter is in place).
    pub fn set_tracee_options(&mut self, options: crate::SeizeOptions) -> Result<(), CompelError> {
        self.tracee.set_options(options)
    }

    /// Ends the thread's process as if it had exited with the raw wait status `wait_status`: the low
    /// seven bits name a signal (0: a normal exit with code `(wait_status >> 8) & 0xff`, by
    /// `exit_group`), otherwise the signal is unblocked and sent to the thread, and its default action
    /// ends the process. Returns once the tracer saw the exit; the process is then a zombie of its
    /// parent. Signal stops on the way are resumed with their signal. Returns the exit the tracer saw
    /// ([`StopEvent::Exited`] or [`StopEvent::Killed`]).
    pub fn exit_with_status(mut self, wait_status: u32) -> Result<StopEvent, CompelError> {
        let tid = self.tracee.tid();
        let signal = (wait_status & 0x7f) as i32;
        let call = if signal == 0 {
            self.injected_regs(
                libc::SYS_exit_group,
                [u64::from((wait_status >> 8) & 0xff), 0, 0, 0, 0, 0],
            )
        } else {
            self.tracee.set_sigmask(0)?;
            self.injected_regs(libc::SYS_kill, [tid as u64, signal as u64, 0, 0, 0, 0])
        };
        // Nothing to tear down in a task that is going away.
        self.closed = true;
        self.tracee.set_regs(&call)?;
        let mut resume_with = 0;
        loop {
            self.tracee.cont(resume_with)?;
            match self.tracee.wait_stop_timeout(self.timeout)? {
                event if event.is_gone() => return Ok(event),
                StopEvent::Signal { signal } => resume_with = signal,
                _ => resume_with = 0,
            }
        }
    }
}

impl Drop for RemoteSession<'_> {
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.teardown() {
                tracing::warn!(tid = self.tracee.tid(), error = %e, "remote session teardown failed");
            }
        }
    }
}

fn find_gadget(tracee: &Tracee, mem: &ProcMem, regs: &UserRegs) -> Result<Gadget, CompelError> {
    if regs.orig_ax as i64 != -1 && regs.ip >= 2 {
        let mut insn = [0u8; 2];
        if mem.read_exact_at(regs.ip - 2, &mut insn).is_ok() && insn == SYSCALL_INSN {
            return Ok(Gadget::InterruptedSyscall(regs.ip - 2));
        }
    }
    if let Some((start, end)) = vdso_range(tracee.tgid())? {
        let code = mem.read_vec(start, (end - start) as usize)?;
        if let Some(pos) = code.windows(2).position(|w| w == SYSCALL_INSN) {
            return Ok(Gadget::Vdso(start + pos as u64));
        }
    }
    Err(CompelError::NoSyscallGadget { tid: tracee.tid() })
}
