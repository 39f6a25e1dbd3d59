//! Terminals. A shell job's terminal (a pty slave whose session is outside
//! the dump) becomes, as with CRIU, the terminal the restore runs on: the
//! restoring process's own stdin, which gets the dumped termios, locked
//! termios, window size and owner; the job's process group is then made the
//! foreground group of that terminal.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use criu_proto::{TermiosEntry, TtyInfoEntry};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use crate::files::FileError;
use crate::sys;

/// The majors of Unix98 pty slaves (`/dev/pts/N`): 136 to 143.
const UNIX98_PTY_SLAVE_MAJORS: std::ops::Range<u32> = 136..144;

/// Whether `rdev` (the kernel's encoding) is a Unix98 pty slave.
pub(crate) fn is_pty_slave(rdev: u32) -> bool {
    UNIX98_PTY_SLAVE_MAJORS.contains(&((rdev >> 8) & 0xfff))
}

fn sys_err(id: u32, op: impl Into<String>) -> impl FnOnce(Errno) -> FileError {
    let op = op.into();
    move |errno| FileError::Sys { id, op, errno }
}

/// The kernel's `struct termios` from a dumped one. `c_cc` holds the raw
/// bytes of the control characters, four to a word (CRIU copies glibc's
/// `c_cc` array into the words with memcpy).
fn kernel_termios(entry: &TermiosEntry) -> [u8; 36] {
    let mut raw = [0u8; 36];
    for (at, word) in [entry.c_iflag, entry.c_oflag, entry.c_cflag, entry.c_lflag]
        .into_iter()
        .enumerate()
    {
        raw[at * 4..at * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    raw[16] = entry.c_line as u8;
    let cc: Vec<u8> = entry.c_cc.iter().flat_map(|w| w.to_le_bytes()).collect();
    let len = cc.len().min(19);
    raw[17..17 + len].copy_from_slice(&cc[..len]);
    raw
}

/// The restoring process's terminal (its stdin) for tty file `id`, set up
/// with the dumped parameters of `info`.
pub(crate) fn inherit(id: u32, info: &TtyInfoEntry) -> Result<OwnedFd, FileError> {
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| FileError::Sys {
            id,
            op: "duplicating stdin, the terminal of the shell job".into(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
        })?;
    if !nix::unistd::isatty(&stdin).unwrap_or(false) {
        return Err(FileError::Sys {
            id,
            op: "inheriting the terminal of a shell job: stdin is not a terminal".into(),
            errno: Errno::ENOTTY,
        });
    }
    if let Some(locked) = &info.termios_locked {
        let raw = kernel_termios(locked);
        // All zero is the kernel's default: nothing is locked.
        if raw.iter().any(|&b| b != 0) {
            sys::local::tty_set_locked_termios(stdin.as_fd(), &raw)
                .map_err(sys_err(id, "TIOCSLCKTRMIOS"))?;
        }
    }
    if let Some(termios) = &info.termios {
        sys::local::tty_set_termios(stdin.as_fd(), &kernel_termios(termios))
            .map_err(sys_err(id, "TCSETS"))?;
    }
    if let Some(w) = &info.winsize {
        let mut raw = [0u8; 8];
        for (at, v) in [w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel]
            .into_iter()
            .enumerate()
        {
            raw[at * 2..at * 2 + 2].copy_from_slice(&(v as u16).to_le_bytes());
        }
        sys::local::tty_set_winsize(stdin.as_fd(), &raw).map_err(sys_err(id, "TIOCSWINSZ"))?;
    }
    if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
        let file = std::fs::File::from(stdin.try_clone().map_err(|e| FileError::Sys {
            id,
            op: "duplicating the terminal".into(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
        })?);
        let meta = file.metadata().map_err(|e| FileError::Sys {
            id,
            op: "fstat of the terminal".into(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            nix::unistd::fchown(
                &file,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(sys_err(
                id,
                format!("fchown of the terminal to {uid}:{gid}"),
            ))?;
        }
    }
    Ok(stdin)
}

/// Makes `pgid` the foreground process group of `terminal` (the caller's
/// controlling terminal). SIGTTOU is blocked in this thread for the call:
/// the caller may itself be in a background group of the terminal.
pub(crate) fn set_foreground(terminal: &OwnedFd, pgid: i32) -> Result<(), Errno> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
    let result = nix::unistd::tcsetpgrp(terminal, Pid::from_raw(pgid));
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    result
}
