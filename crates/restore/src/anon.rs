//! Anonymous-inode files, created by the tracer: eventfd, signalfd, timerfd,
//! epoll (its watches are added later, inside the task, with the task's fd
//! numbers) and inotify (watches re-added until each gets its dumped number).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

use criu_proto::{EventfdFileEntry, InotifyFileEntry, SignalfdEntry, TimerfdEntry};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::files::FileError;
use crate::sys;

fn sys_err(id: u32, op: impl Into<String>) -> impl FnOnce(Errno) -> FileError {
    let op = op.into();
    move |errno| FileError::Sys { id, op, errno }
}

/// Applies the status flags that matter for these files (O_NONBLOCK).
fn set_status(id: u32, fd: &OwnedFd, flags: u32) -> Result<(), FileError> {
    let status = OFlag::from_bits_truncate(flags as i32) & OFlag::O_NONBLOCK;
    if !status.is_empty() {
        fcntl(fd, FcntlArg::F_SETFL(status)).map_err(sys_err(id, "F_SETFL(O_NONBLOCK)"))?;
    }
    Ok(())
}

/// The bit of `eventfd_file_entry.flags` that records EFD_SEMAPHORE. CRIU
/// 4.2's entry has no field for the mode; our dump puts the kernel's
/// EFD_SEMAPHORE bit (1, which as an open flag is O_WRONLY, an access mode
/// an eventfd never has since eventfds are always O_RDWR) into `flags`.
const EVENTFD_SEMAPHORE_FLAG: u32 = libc::EFD_SEMAPHORE as u32;

/// An eventfd with its counter and mode (EFD_SEMAPHORE).
pub(crate) fn eventfd(id: u32, entry: &EventfdFileEntry) -> Result<OwnedFd, FileError> {
    let semaphore = entry.flags & EVENTFD_SEMAPHORE_FLAG != 0;
    let fd = sys::local::eventfd(semaphore).map_err(sys_err(id, "eventfd"))?;
    if entry.counter != 0 {
        nix::unistd::write(&fd, &entry.counter.to_ne_bytes()).map_err(sys_err(
            id,
            format!("setting the eventfd counter {}", entry.counter),
        ))?;
    }
    set_status(id, &fd, entry.flags)?;
    Ok(fd)
}

/// A signalfd with its mask.
pub(crate) fn signalfd(id: u32, entry: &SignalfdEntry) -> Result<OwnedFd, FileError> {
    let fd = sys::local::signalfd(entry.sigmask)
        .map_err(sys_err(id, format!("signalfd({:#x})", entry.sigmask)))?;
    set_status(id, &fd, entry.flags)?;
    Ok(fd)
}

/// A timerfd armed with its remaining time and interval, and its unread
/// expirations.
pub(crate) fn timerfd(id: u32, entry: &TimerfdEntry) -> Result<OwnedFd, FileError> {
    let fd = sys::local::timerfd(entry.clockid as i32)
        .map_err(sys_err(id, format!("timerfd_create({})", entry.clockid)))?;
    if entry.vsec != 0 || entry.vnsec != 0 {
        let mut value = (entry.vsec, entry.vnsec);
        if entry.settime_flags as i32 & libc::TFD_TIMER_ABSTIME != 0 {
            // The dump holds the time left; an absolute timer needs "now + left".
            let now = nix::time::clock_gettime(nix::time::ClockId::from_raw(entry.clockid as i32))
                .map_err(sys_err(id, "clock_gettime"))?;
            let nsec = now.tv_nsec() as u64 + entry.vnsec;
            value = (
                now.tv_sec() as u64 + entry.vsec + nsec / 1_000_000_000,
                nsec % 1_000_000_000,
            );
        }
        sys::local::timerfd_settime(
            fd.as_fd(),
            entry.settime_flags as i32,
            (entry.isec, entry.insec),
            value,
        )
        .map_err(sys_err(id, "timerfd_settime"))?;
    }
    if entry.ticks != 0 {
        sys::local::timerfd_set_ticks(fd.as_fd(), entry.ticks)
            .map_err(sys_err(id, format!("TFD_IOC_SET_TICKS({})", entry.ticks)))?;
    }
    set_status(id, &fd, entry.flags)?;
    Ok(fd)
}

/// An empty epoll; its watches are added inside the task.
pub(crate) fn epoll(id: u32, flags: u32) -> Result<OwnedFd, FileError> {
    let epoll = nix::sys::epoll::Epoll::new(nix::sys::epoll::EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(sys_err(id, "epoll_create1"))?;
    let fd = epoll.0;
    set_status(id, &fd, flags)?;
    Ok(fd)
}

/// An inotify with every watch at its dumped watch descriptor.
pub(crate) fn inotify(id: u32, entry: &InotifyFileEntry) -> Result<OwnedFd, FileError> {
    let nonblock = if entry.flags as i32 & libc::O_NONBLOCK != 0 {
        libc::IN_NONBLOCK
    } else {
        0
    };
    let fd = sys::local::inotify(nonblock).map_err(sys_err(id, "inotify_init1"))?;
    let mut watches: Vec<_> = entry.wd.iter().collect();
    watches.sort_by_key(|w| w.wd);
    for watch in watches {
        let path = watch
            .f_handle
            .path
            .clone()
            .ok_or_else(|| FileError::Changed {
                id,
                path: format!("inotify watch {}", watch.wd),
                reason: "has no path recorded (watches by file handle only are not supported)"
                    .into(),
            })?;
        let c_path = CString::new(path.clone()).map_err(|_| FileError::Changed {
            id,
            path: path.clone(),
            reason: "has a NUL byte".into(),
        })?;
        // Watch descriptors are handed out in increasing order: add and drop
        // watches until the dumped number comes up.
        loop {
            let wd = sys::local::inotify_add_watch(fd.as_fd(), &c_path, watch.mask)
                .map_err(sys_err(id, format!("inotify_add_watch({path})")))?;
            if wd == watch.wd as i32 {
                break;
            }
            if wd > watch.wd as i32 {
                return Err(FileError::Changed {
                    id,
                    path,
                    reason: format!("got inotify watch {wd}, past the dumped {}", watch.wd),
                });
            }
            sys::local::inotify_rm_watch(fd.as_fd(), wd)
                .map_err(sys_err(id, "inotify_rm_watch"))?;
        }
    }
    Ok(fd)
}
