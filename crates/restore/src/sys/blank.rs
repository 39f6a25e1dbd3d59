//! The blank child: a `clone3(set_tid)` copy of the tracer that drops every fd
//! but two, resets its signal dispositions and then sleeps in `pause()` until
//! the tracer seizes it and rebuilds it by remote system calls.

use std::os::fd::RawFd;

use nix::errno::Errno;

/// What the blank child needs to know; copied into it by the clone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlankSpec {
    /// The pid the child must get (in the tracer's pid namespace).
    pub pid: i32,
    /// `CLONE_PARENT`: the child becomes a sibling of the tracer.
    pub clone_parent: bool,
    /// The child's end of the fd transport socket; kept open.
    pub transport_fd: RawFd,
    /// Write end of the readiness pipe: one byte is written, then it is closed.
    pub ready_fd: RawFd,
}

/// Creates the blank child with exactly `spec.pid` and returns that pid.
///
/// EEXIST means the pid is taken.
pub(crate) fn spawn_blank(spec: &BlankSpec) -> Result<i32, Errno> {
    let set_tid: [libc::pid_t; 1] = [spec.pid];
    let args = libc::clone_args {
        flags: if spec.clone_parent {
            libc::CLONE_PARENT as u64
        } else {
            0
        },
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        // With CLONE_PARENT the exit signal must be 0: the child gets the one
        // the tracer has towards its own parent.
        exit_signal: if spec.clone_parent {
            0
        } else {
            libc::SIGCHLD as u64
        },
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        cgroup: 0,
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of
    // this thread's stack and of the address space; `args` and `set_tid` outlive
    // the call. The child only runs `blank_child_body`, which makes raw system
    // calls (no allocation, no locks) and never returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        0 => blank_child_body(spec.transport_fd, spec.ready_fd),
        r if r < 0 => Err(Errno::last()),
        pid => Ok(pid as i32),
    }
}

fn close_range(first: u32, last: u32) {
    if first <= last {
        // SAFETY: close_range only closes descriptors of this (child) process.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    }
}

/// The kernel's `struct sigaction` for x86_64 `rt_sigaction`.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

fn blank_child_body(transport_fd: RawFd, ready_fd: RawFd) -> ! {
    let low = transport_fd.min(ready_fd) as u32;
    let high = transport_fd.max(ready_fd) as u32;
    if low > 0 {
        close_range(0, low - 1);
    }
    if high > low + 1 {
        close_range(low + 1, high - 1);
    }
    close_range(high + 1, u32::MAX);
    let default = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signo in 1..=64 {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installs SIG_DFL from a valid struct; the old action is not read.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    let byte = [1u8];
    // SAFETY: writes one byte from a valid buffer to our copy of the pipe, then
    // closes it; pause() has no arguments. The loop never ends: the tracer takes
    // this process over, or kills it.
    unsafe {
        libc::write(ready_fd, byte.as_ptr().cast(), 1);
        libc::close(ready_fd);
        loop {
            libc::pause();
        }
    }
}
