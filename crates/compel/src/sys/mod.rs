//! The syscall-facing layer: raw ptrace requests, waitpid, pidfd, signals, CPUID and SCM_RIGHTS.
//!
//! Everything here is a thin, typed wrapper; buffers passed to the kernel are owned Rust slices whose
//! length is checked against what the request writes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_long, c_void};

/// A process or thread id.
pub use crate::Pid;

pub const PTRACE_EVENT_STOP: i32 = 128;
pub const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
pub const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
pub const NT_PRSTATUS: u32 = 1;
pub const NT_PRFPREG: u32 = 2;
pub const NT_X86_XSTATE: u32 = 0x202;

/// Size of `struct ptrace_rseq_configuration`.
pub const RSEQ_CONFIG_SIZE: usize = 24;
/// Size of `struct ptrace_syscall_info` we ask for (the seccomp variant is the largest, 84 -> 88 bytes).
pub const SYSCALL_INFO_SIZE: usize = 88;
/// Size of a raw kernel `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;

fn check(ret: c_long) -> io::Result<c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A ptrace request whose `addr` and `data` are plain integers (no memory is read or written).
fn ptrace_scalar(request: u32, tid: Pid, addr: u64, data: u64) -> io::Result<c_long> {
    // SAFETY: the requests routed here (SEIZE, INTERRUPT, CONT, SYSCALL, SINGLESTEP, DETACH, SETOPTIONS,
    // LISTEN) interpret addr/data as integers, so no memory of ours is touched.
    let ret = unsafe { libc::ptrace(request, tid, addr as *mut c_void, data as *mut c_void) };
    check(ret)
}

pub fn seize(tid: Pid, options: u64) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_SEIZE, tid, 0, options).map(drop)
}

pub fn interrupt(tid: Pid) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

pub fn set_options(tid: Pid, options: u64) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_SETOPTIONS, tid, 0, options).map(drop)
}

pub fn cont(tid: Pid, sig: i32) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_CONT, tid, 0, sig as u64).map(drop)
}

pub fn syscall(tid: Pid, sig: i32) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_SYSCALL, tid, 0, sig as u64).map(drop)
}

pub fn single_step(tid: Pid, sig: i32) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_SINGLESTEP, tid, 0, sig as u64).map(drop)
}

pub fn detach(tid: Pid, sig: i32) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_DETACH, tid, 0, sig as u64).map(drop)
}

pub fn listen(tid: Pid) -> io::Result<()> {
    ptrace_scalar(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
}

/// PTRACE_GETREGSET: fills `buf` and returns how many bytes the kernel wrote.
pub fn get_regset(tid: Pid, note: u32, buf: &mut [u8]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the iovec describes `buf`, which is valid for writes of its full length; the kernel writes
    // at most iov_len bytes and updates iov_len in our local iovec.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            note as usize as *mut c_void,
            (&mut iov as *mut libc::iovec).cast::<c_void>(),
        )
    };
    check(ret)?;
    Ok(iov.iov_len)
}

/// PTRACE_SETREGSET from `buf`.
pub fn set_regset(tid: Pid, note: u32, buf: &[u8]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the iovec describes `buf`, valid for reads of its full length; SETREGSET only reads it.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            note as usize as *mut c_void,
            (&mut iov as *mut libc::iovec).cast::<c_void>(),
        )
    };
    check(ret).map(drop)
}

pub fn get_sigmask(tid: Pid) -> io::Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: data points to a u64 and addr says 8 bytes, the kernel's sigset size on x86_64.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            tid,
            8usize as *mut c_void,
            (&mut mask as *mut u64).cast::<c_void>(),
        )
    };
    check(ret)?;
    Ok(mask)
}

pub fn set_sigmask(tid: Pid, mask: u64) -> io::Result<()> {
    // SAFETY: data points to a u64 and addr says 8 bytes; the kernel only reads it.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGMASK,
            tid,
            8usize as *mut c_void,
            (&mask as *const u64) as *mut c_void,
        )
    };
    check(ret).map(drop)
}

#[repr(C)]
struct PeekSigInfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// PTRACE_PEEKSIGINFO: copies up to `out.len()` queued siginfos starting at `offset`, without dequeuing.
pub fn peek_siginfo(
    tid: Pid,
    offset: u64,
    shared: bool,
    out: &mut [[u8; SIGINFO_SIZE]],
) -> io::Result<usize> {
    let args = PeekSigInfoArgs {
        off: offset,
        flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
        nr: i32::try_from(out.len()).unwrap_or(i32::MAX),
    };
    // SAFETY: addr points to a correctly laid-out ptrace_peeksiginfo_args, data to `nr` contiguous
    // 128-byte siginfo buffers that we own.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_PEEKSIGINFO,
            tid,
            (&args as *const PeekSigInfoArgs) as *mut c_void,
            out.as_mut_ptr().cast::<c_void>(),
        )
    };
    Ok(check(ret)? as usize)
}

pub fn get_siginfo(tid: Pid) -> io::Result<[u8; SIGINFO_SIZE]> {
    let mut buf = [0u8; SIGINFO_SIZE];
    // SAFETY: data points to a 128-byte buffer, the size of the kernel siginfo_t.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            tid,
            std::ptr::null_mut::<c_void>(),
            buf.as_mut_ptr().cast::<c_void>(),
        )
    };
    check(ret)?;
    Ok(buf)
}

pub fn set_siginfo(tid: Pid, info: &[u8; SIGINFO_SIZE]) -> io::Result<()> {
    // SAFETY: data points to a 128-byte siginfo the kernel only reads.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGINFO,
            tid,
            std::ptr::null_mut::<c_void>(),
            info.as_ptr() as *mut c_void,
        )
    };
    check(ret).map(drop)
}

pub fn get_event_msg(tid: Pid) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: data points to an unsigned long, which GETEVENTMSG writes.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            std::ptr::null_mut::<c_void>(),
            (&mut msg as *mut libc::c_ulong).cast::<c_void>(),
        )
    };
    check(ret)?;
    Ok(msg)
}

pub fn get_rseq_configuration(tid: Pid) -> io::Result<[u8; RSEQ_CONFIG_SIZE]> {
    let mut buf = [0u8; RSEQ_CONFIG_SIZE];
    // SAFETY: addr is the buffer size and data the buffer; the kernel writes at most that many bytes.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            RSEQ_CONFIG_SIZE as *mut c_void,
            buf.as_mut_ptr().cast::<c_void>(),
        )
    };
    check(ret)?;
    Ok(buf)
}

/// PTRACE_GET_SYSCALL_INFO; returns the buffer and the size the kernel reported.
pub fn get_syscall_info(tid: Pid) -> io::Result<([u8; SYSCALL_INFO_SIZE], usize)> {
    let mut buf = [0u8; SYSCALL_INFO_SIZE];
    // SAFETY: addr is the buffer size and data the buffer; the kernel copies at most that many bytes.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            tid,
            SYSCALL_INFO_SIZE as *mut c_void,
            buf.as_mut_ptr().cast::<c_void>(),
        )
    };
    let full = check(ret)? as usize;
    Ok((buf, full))
}

/// PTRACE_SECCOMP_GET_FILTER for filter `index`: the BPF program as raw 8-byte instructions.
pub fn seccomp_get_filter(tid: Pid, index: u64) -> io::Result<Vec<u8>> {
    // SAFETY: with a null data pointer the kernel only returns the instruction count.
    let count = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            index as usize as *mut c_void,
            std::ptr::null_mut::<c_void>(),
        )
    })? as usize;
    let mut buf = vec![0u8; count * 8];
    // SAFETY: buf holds `count` sock_filter entries (8 bytes each), as many as the kernel reported.
    let written = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            index as usize as *mut c_void,
            buf.as_mut_ptr().cast::<c_void>(),
        )
    })? as usize;
    buf.truncate(written.min(count) * 8);
    Ok(buf)
}

/// waitpid with `flags`; `Ok(None)` when WNOHANG found nothing. EINTR is retried.
pub fn waitpid(pid: Pid, flags: i32) -> io::Result<Option<(Pid, i32)>> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer for the duration of the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        if ret == 0 {
            return Ok(None);
        }
        return Ok(Some((ret, status)));
    }
}

pub fn pidfd_open(pid: Pid, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    let fd = check(ret)? as i32;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes integers only and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    let fd = check(ret)? as i32;
    // SAFETY: the kernel just installed this fd in our table; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Frees the memory of a process that is being killed, from the caller's side (the oom reaper's work,
/// done now): the dying task's own exit then finds its page tables mostly empty, so the two halves of
/// the teardown run on two CPUs. Fails with EINVAL unless every user of the address space is dying.
pub fn process_mrelease(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: process_mrelease takes an fd and a flags integer (0) and touches no user memory.
    let ret = unsafe { libc::syscall(libc::SYS_process_mrelease, pidfd.as_raw_fd(), 0) };
    check(ret).map(drop)
}

pub fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes integers only.
    let ret = unsafe { libc::kill(pid, sig) };
    check(ret as c_long).map(drop)
}

pub fn tgkill(tgid: Pid, tid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: tgkill takes integers only.
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    check(ret).map(drop)
}

pub fn gettid() -> Pid {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// A CPU affinity mask (the kernel's cpumask as sched_getaffinity returns it).
#[derive(Clone, Copy)]
pub struct CpuMask(libc::cpu_set_t);

impl std::fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| self.contains(cpu))
            .collect();
        write!(f, "CpuMask({cpus:?})")
    }
}

impl CpuMask {
    /// A mask with only `cpu` set.
    pub fn single(cpu: usize) -> CpuMask {
        // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        if cpu < libc::CPU_SETSIZE as usize {
            // SAFETY: CPU_SET only writes the bit for `cpu`, checked to be inside the set above.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        CpuMask(set)
    }

    pub fn contains(&self, cpu: usize) -> bool {
        // SAFETY: CPU_ISSET only reads the bit for `cpu`, which the check keeps inside the set.
        cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(cpu, &self.0) }
    }

    pub fn count(&self) -> usize {
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| self.contains(cpu))
            .count()
    }
}

/// sched_getaffinity of thread `tid` (0: the calling thread).
pub fn get_affinity(tid: Pid) -> io::Result<CpuMask> {
    let mut mask = CpuMask::single(usize::MAX);
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `mask.0`, which we own.
    let ret = unsafe {
        libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut mask.0)
    };
    check(ret as c_long)?;
    Ok(mask)
}

/// sched_setaffinity of thread `tid` (0: the calling thread).
pub fn set_affinity(tid: Pid, mask: &CpuMask) -> io::Result<()> {
    // SAFETY: the kernel only reads size_of::<cpu_set_t>() bytes of `mask.0`.
    let ret =
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mask.0) };
    check(ret as c_long).map(drop)
}

/// The CPU the calling thread runs on.
pub fn current_cpu() -> io::Result<usize> {
    // SAFETY: sched_getcpu takes no arguments.
    let ret = unsafe { libc::sched_getcpu() };
    check(ret as c_long).map(|cpu| cpu as usize)
}

/// CPUID leaf/subleaf -> (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 CPU and has no memory effects.
    let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, subleaf) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Most fds one SCM_RIGHTS message can carry (the kernel's SCM_MAX_FD).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Sends one byte with `fd` attached as SCM_RIGHTS on the (connected) socket `sock`.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    send_fds(sock, &[fd])
}

/// Sends one byte with `fds` (1..=[`MAX_FDS_PER_MESSAGE`]) attached as one SCM_RIGHTS message.
pub fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut payload = [0x5au8; 1];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let raw: Vec<i32> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let data_len = std::mem::size_of_val(raw.as_slice()) as u32;
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(data_len) as usize,
            libc::CMSG_LEN(data_len) as usize,
        )
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain old data; zeroed is a valid initial value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points to `space` bytes we own, so CMSG_FIRSTHDR returns a pointer into it (non
    // null since controllen >= sizeof(cmsghdr)) and CMSG_DATA has room for `raw.len()` ints.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = len;
        std::ptr::copy_nonoverlapping(
            raw.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            data_len as usize,
        );
    }
    loop {
        // SAFETY: msg and everything it points to (iov, payload, control) live until the call returns.
        let ret = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        return Ok(());
    }
}
