//! The raw calls of the testee: fork and a shared anonymous mapping.

use nix::unistd::Pid;

/// fork(); `None` in the child.
pub fn fork() -> Option<Pid> {
    // SAFETY: the testee is single-threaded when it forks, so the child may
    // run any code.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => None,
        nix::unistd::ForkResult::Parent { child } => Some(child),
    }
}

/// A MAP_SHARED|MAP_ANONYMOUS page, valid for the life of the process.
pub fn shared_page() -> &'static mut [u8] {
    // SAFETY: a fresh anonymous mapping; it is never unmapped, so the slice
    // stays valid; only this process (and its forks) use it.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        std::slice::from_raw_parts_mut(ptr.cast::<u8>(), 4096)
    }
}

/// inotify_init1(0) + inotify_add_watch(dir, IN_CREATE); returns the fd.
pub fn inotify_watch_creates(dir: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let path = std::ffi::CString::new(dir).expect("path");
    // SAFETY: plain syscalls; the path is a valid C string; the new fd is
    // owned by the returned OwnedFd only.
    unsafe {
        let fd = libc::inotify_init1(0);
        assert!(fd >= 0, "inotify_init1");
        assert!(
            libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_CREATE) >= 0,
            "inotify_add_watch"
        );
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

/// Installs `handler` for `signo` with SA_ONSTACK.
pub fn on_altstack_handler(signo: i32, handler: extern "C" fn(i32)) {
    // SAFETY: a plain sigaction with a valid extern "C" handler that only
    // stores into atomics.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as usize;
        act.sa_flags = libc::SA_ONSTACK;
        assert_eq!(
            libc::sigaction(signo, &act, std::ptr::null_mut()),
            0,
            "sigaction"
        );
    }
}

/// An alternate signal stack of `size` bytes (leaked: lives as long as the process).
pub fn set_altstack(size: usize) -> (usize, usize) {
    let stack: &'static mut [u8] = Box::leak(vec![0u8; size].into_boxed_slice());
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: the stack memory is valid for the rest of the process.
    let ret = unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    assert_eq!(ret, 0, "sigaltstack");
    (stack.as_ptr() as usize, size)
}

/// setitimer(ITIMER_REAL) to `secs`; getitimer's remaining seconds (rounded up).
pub fn set_real_timer(secs: i64) {
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: secs,
            tv_usec: 0,
        },
    };
    // SAFETY: valid pointers for the call.
    let ret = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    assert_eq!(ret, 0, "setitimer");
}

/// The seconds left on ITIMER_REAL.
pub fn real_timer_left() -> i64 {
    let mut it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: valid pointer for the call.
    let ret = unsafe { libc::getitimer(libc::ITIMER_REAL, &mut it) };
    assert_eq!(ret, 0, "getitimer");
    it.it_value.tv_sec
}

/// The current umask (set back right away).
pub fn umask_now() -> u32 {
    // SAFETY: umask has no memory effects.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old
    }
}

/// Creates a CLOCK_MONOTONIC POSIX timer signalling `signo`, armed for
/// `secs`; returns its id.
pub fn posix_timer(signo: i32, secs: i64) -> usize {
    // SAFETY: sigevent and itimerspec are valid for the calls; the timer id
    // is written by the kernel into `id`.
    unsafe {
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = signo;
        let mut id: libc::timer_t = std::ptr::null_mut();
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id),
            0,
            "timer_create"
        );
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
        };
        assert_eq!(
            libc::timer_settime(id, 0, &spec, std::ptr::null_mut()),
            0,
            "timer_settime"
        );
        id as usize
    }
}

/// Seconds left on the POSIX timer `id` (-1 on error).
pub fn posix_timer_left(id: usize) -> i64 {
    // SAFETY: `spec` is valid for the call; an unknown id just fails.
    unsafe {
        let mut spec: libc::itimerspec = std::mem::zeroed();
        if libc::timer_gettime(id as libc::timer_t, &mut spec) != 0 {
            return -1;
        }
        spec.it_value.tv_sec
    }
}

/// Sets no_new_privs and installs a seccomp filter that makes sysinfo()
/// fail with errno 77 and allows everything else; with `tsync`, on every
/// thread of the process.
pub fn deny_sysinfo(tsync: bool) {
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let program = [
        // A = seccomp_data.nr
        stmt((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_sysinfo as u32,
        },
        stmt((libc::BPF_RET | libc::BPF_K) as u16, SECCOMP_RET_ERRNO | 77),
        stmt((libc::BPF_RET | libc::BPF_K) as u16, SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    let flags = if tsync { SECCOMP_FILTER_FLAG_TSYNC } else { 0 };
    // SAFETY: prctl with integer arguments; seccomp reads `fprog` and the
    // program it points at, both alive for the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const libc::sock_fprog
            ),
            0,
            "seccomp"
        );
    }
}

/// The errno sysinfo() fails with in this thread (0 if it succeeds).
pub fn sysinfo_errno() -> i32 {
    // SAFETY: sysinfo writes into a zeroed struct it is given.
    unsafe {
        let mut info: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut info) == 0 {
            0
        } else {
            *libc::__errno_location()
        }
    }
}

/// Arms ITIMER_REAL: first expiry after `value_ms`, then every `interval_s`.
pub fn set_periodic_real_timer(value_ms: i64, interval_s: i64) {
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: interval_s,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: value_ms * 1000,
        },
    };
    // SAFETY: valid pointers for the call.
    let ret = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    assert_eq!(ret, 0, "setitimer");
}

/// ITIMER_REAL as (microseconds left, interval seconds). Microseconds, not seconds: an armed timer
/// with less than a second left must not read as disarmed.
pub fn real_timer() -> (i64, i64) {
    // SAFETY: getitimer fills the zeroed struct it is given.
    unsafe {
        let mut it: libc::itimerval = std::mem::zeroed();
        assert_eq!(libc::getitimer(libc::ITIMER_REAL, &mut it), 0, "getitimer");
        (
            it.it_value.tv_sec * 1_000_000 + it.it_value.tv_usec,
            it.it_interval.tv_sec,
        )
    }
}

/// Makes the terminal `fd` the controlling terminal of the calling session
/// leader (TIOCSCTTY).
pub fn take_controlling_terminal(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCSCTTY takes an integer argument; no memory is passed.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    assert_eq!(ret, 0, "TIOCSCTTY");
}

/// The session of the terminal on fd 0 (tcgetsid), or -1.
pub fn terminal_session() -> i32 {
    // SAFETY: tcgetsid has no memory arguments.
    unsafe { libc::tcgetsid(0) }
}
