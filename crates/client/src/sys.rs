//! The two places where the client needs `unsafe`: keeping one descriptor open across the `exec` of
//! `criu swrk`, and taking ownership of a descriptor the kernel just installed (SCM_RIGHTS, F_DUPFD).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `fd` (open with `FD_CLOEXEC` in this process) survive the `exec` of `command`, and only of
/// that command: the flag is cleared in the forked child, never in this process, so other threads that
/// spawn programs at the same time do not inherit it.
pub(crate) fn inherit_on_exec(command: &mut Command, fd: RawFd) {
    let clear_cloexec = move || {
        // SAFETY: fcntl(F_SETFD) on a plain integer descriptor reads and writes no memory of ours; the
        // descriptor was inherited from the parent, which keeps it open until spawn() returns.
        let result = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        if result == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe calls
    // are allowed: it makes one fcntl(2) call and reads errno, allocating nothing and taking no lock.
    unsafe {
        command.pre_exec(clear_cloexec);
    }
}

/// Takes ownership of a descriptor the kernel just created for us (received with SCM_RIGHTS, or
/// returned by F_DUPFD_CLOEXEC).
pub(crate) fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed `fd` into our table in the call that returned it; nothing else
    // knows its number yet, so wrapping it once makes this `OwnedFd` its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
