//! Calls the tracer makes on itself or on another process without ptrace:
//! the trampoline mapping the blank child inherits, `prlimit`, CPUID.

use nix::errno::Errno;

/// Maps `len` bytes at exactly `addr` in the tracer (failing with EEXIST if
/// anything is there), writes compel's trampoline code (the `syscall` gadget and
/// the syscall-batch loop) at its start and makes the first page read+exec; the
/// rest stays read+write (scratch).
pub(crate) fn map_trampoline(addr: u64, len: usize) -> Result<(), Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no
    // memory this process uses can be affected; the result is checked.
    let ptr = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    if ptr as u64 != addr {
        // Old kernels ignore the flag and treat the address as a hint.
        unmap(ptr as u64, len);
        return Err(Errno::EEXIST);
    }
    let code = &criu_compel::TRAMPOLINE_PAGE_CODE;
    // SAFETY: the mapping was just created, is writable and at least one page long (the code is
    // shorter than a page).
    unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), ptr.cast::<u8>(), code.len());
    }
    // SAFETY: changes the protection of the first page of our own new mapping.
    let ret = unsafe { libc::mprotect(ptr, 4096, libc::PROT_READ | libc::PROT_EXEC) };
    if ret != 0 {
        let err = Errno::last();
        unmap(addr, len);
        return Err(err);
    }
    Ok(())
}

/// Unmaps a range of the tracer that `map_trampoline` created.
pub(crate) fn unmap(addr: u64, len: usize) {
    // SAFETY: only called on a range this module mapped and nothing else uses.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

/// `prlimit64(pid, resource, new, old)`: sets a resource limit of another
/// process and returns the previous one.
pub(crate) fn prlimit(
    pid: i32,
    resource: u32,
    new: Option<(u64, u64)>,
) -> Result<(u64, u64), Errno> {
    let new_limit = new.map(|(cur, max)| libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: max,
    });
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new_ptr = new_limit
        .as_ref()
        .map_or(std::ptr::null(), |l| l as *const libc::rlimit64);
    // SAFETY: both pointers are valid (or null for "do not set") for the call.
    let ret = unsafe {
        libc::prlimit64(
            pid,
            resource as libc::__rlimit_resource_t,
            new_ptr,
            &mut old,
        )
    };
    Errno::result(ret)?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// The offset and size of XSAVE component `component` in the standard
/// (non-compacted) layout, from CPUID leaf 0xD.
pub(crate) fn xsave_component(component: u32) -> (u32, u32) {
    let leaf = std::arch::x86_64::__cpuid_count(0xd, component);
    (leaf.ebx, leaf.eax)
}

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn owned(ret: libc::c_int) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(ret)?;
    // SAFETY: the kernel just returned this new fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `eventfd(0, EFD_CLOEXEC)`, with EFD_SEMAPHORE when asked.
pub(crate) fn eventfd(semaphore: bool) -> Result<OwnedFd, Errno> {
    let mode = if semaphore { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: no pointers; the result is checked.
    owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | mode) })
}

/// `signalfd(-1, mask, SFD_CLOEXEC)` for a 64-bit signal mask.
pub(crate) fn signalfd(mask: u64) -> Result<OwnedFd, Errno> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initializes the set; sigaddset only touches it.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for signo in 1..=64 {
            if mask & (1u64 << (signo - 1)) != 0 {
                libc::sigaddset(set.as_mut_ptr(), signo);
            }
        }
        set.assume_init()
    };
    // SAFETY: `set` is a valid, initialized sigset for the call.
    owned(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })
}

/// `timerfd_create(clockid, TFD_CLOEXEC)`.
pub(crate) fn timerfd(clockid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: no pointers; the result is checked.
    owned(unsafe { libc::timerfd_create(clockid, libc::TFD_CLOEXEC) })
}

/// `timerfd_settime(fd, flags, {interval, value})`, times as (sec, nsec).
pub(crate) fn timerfd_settime(
    fd: BorrowedFd<'_>,
    flags: i32,
    interval: (u64, u64),
    value: (u64, u64),
) -> Result<(), Errno> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: interval.0 as i64,
            tv_nsec: interval.1 as i64,
        },
        it_value: libc::timespec {
            tv_sec: value.0 as i64,
            tv_nsec: value.1 as i64,
        },
    };
    // SAFETY: `spec` is valid for the call; the old value is not requested.
    Errno::result(unsafe {
        libc::timerfd_settime(fd.as_raw_fd(), flags, &spec, std::ptr::null_mut())
    })
    .map(drop)
}

/// `ioctl(TFD_IOC_SET_TICKS)`: the expirations not yet read.
pub(crate) fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<(), Errno> {
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
    // SAFETY: the ioctl reads one u64 from a valid pointer.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) })
        .map(drop)
}

/// `inotify_init1(IN_CLOEXEC | flags)`.
pub(crate) fn inotify(flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: no pointers; the result is checked.
    owned(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | flags) })
}

/// `inotify_add_watch(fd, path, mask)`; returns the watch descriptor.
pub(crate) fn inotify_add_watch(fd: BorrowedFd<'_>, path: &CStr, mask: u32) -> Result<i32, Errno> {
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    Errno::result(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) })
}

/// `inotify_rm_watch(fd, wd)`.
pub(crate) fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) }).map(drop)
}

/// `unshare(CLONE_NEWTIME)`: the calling thread's future children get a new
/// time namespace (the thread itself stays in its own).
pub(crate) fn unshare_time_namespace() -> Result<(), Errno> {
    // SAFETY: no pointers; only the calling thread's nsproxy changes.
    Errno::result(unsafe { libc::unshare(libc::CLONE_NEWTIME) }).map(drop)
}

/// `ioctl(fd, request, buf)` for the terminal requests that take a pointer
/// to a structure the kernel reads (TCSETS, TIOCSLCKTRMIOS, TIOCSWINSZ).
fn tty_ioctl_write(fd: BorrowedFd<'_>, request: libc::c_ulong, buf: &[u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads at most the size of the structure of the
    // request from `buf`, which the callers size exactly (36-byte kernel
    // termios, 8-byte winsize); nothing is written to it.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, buf.as_ptr()) };
    Errno::result(ret).map(drop)
}

/// TCSETS with a kernel `struct termios` (4 flag words, c_line, c_cc[19]).
pub(crate) fn tty_set_termios(fd: BorrowedFd<'_>, termios: &[u8; 36]) -> Result<(), Errno> {
    tty_ioctl_write(fd, libc::TCSETS, termios)
}

/// TIOCSLCKTRMIOS with a kernel `struct termios`.
pub(crate) fn tty_set_locked_termios(fd: BorrowedFd<'_>, termios: &[u8; 36]) -> Result<(), Errno> {
    tty_ioctl_write(fd, libc::TIOCSLCKTRMIOS, termios)
}

/// TIOCSWINSZ with a `struct winsize` (rows, columns, x and y pixels).
pub(crate) fn tty_set_winsize(fd: BorrowedFd<'_>, winsize: &[u8; 8]) -> Result<(), Errno> {
    tty_ioctl_write(fd, libc::TIOCSWINSZ, winsize)
}
