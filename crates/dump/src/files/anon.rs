//! Anonymous-inode files: eventfd, eventpoll, signalfd, timerfd, inotify.
//! Everything comes from the owner's fdinfo (already parsed into
//! [`FileParams::info`]); inotify watches also get the watched path.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_proto::{
    EventfdFileEntry, EventpollFileEntry, EventpollTfdEntry, FdTypes, FhEntry, FileEntry,
    InotifyFileEntry, InotifyWdEntry, SignalfdEntry, TimerfdEntry,
};

use super::{FileError, FileParams, FileTable};
use crate::proc::{read_fdinfo, FdInfoExtra, InotifyWatch, TimerfdState};

/// CRIU's `FH_ENTRY_SIZES__min_entries`: handles are stored as 16 words.
const FH_WORDS: usize = 16;

/// How EFD_SEMAPHORE is recorded: CRIU 4.2's `eventfd_file_entry` has no
/// field for it (upstream dumps `flags` and `counter` only and recreates
/// every eventfd with `eventfd(counter, 0)`, losing the mode), so it goes
/// into `flags` as the kernel's EFD_SEMAPHORE bit (1). That bit is O_WRONLY
/// as an open flag, which an eventfd never has (eventfds are always O_RDWR,
/// so an access mode of 3 can only mean "semaphore"); CRIU's restore passes
/// `flags` to F_SETFL, which ignores access-mode bits, so the image stays
/// valid for CRIU, which just keeps losing the mode. Our restore must create
/// the eventfd with EFD_SEMAPHORE when this bit is set.
pub const EVENTFD_SEMAPHORE_FLAG: u32 = libc::EFD_SEMAPHORE as u32;

/// How many times a fired periodic timerfd is re-armed and its fdinfo re-read
/// before the dump settles for the value timerfd_gettime returned (only a
/// timer whose period is shorter than one fdinfo read can need more than one).
const TIMERFD_REFRESH_ATTEMPTS: usize = 5;

impl FileTable {
    pub(super) fn dump_anon(
        &mut self,
        p: &FileParams,
        file: &OwnedFd,
    ) -> Result<(FdTypes, u32), FileError> {
        let kind = match p.link.as_str() {
            "anon_inode:[eventfd]" => FdTypes::Eventfd,
            "anon_inode:[eventpoll]" => FdTypes::Eventpoll,
            "anon_inode:[signalfd]" => FdTypes::Signalfd,
            "anon_inode:[timerfd]" => FdTypes::Timerfd,
            "anon_inode:inotify" => FdTypes::Inotify,
            other => {
                return Err(Self::unsupported(
                    p,
                    format!("anonymous inode file {other}"),
                ))
            }
        };
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if !new {
            return Ok((kind, id));
        }
        let (flags, fown) = (p.info.flags, p.fown);
        let mut entry = FileEntry {
            r#type: kind as i32,
            id,
            ..Default::default()
        };
        match (kind, &p.info.extra) {
            (FdTypes::Eventfd, FdInfoExtra::Eventfd { counter, semaphore }) => {
                let mode = if *semaphore {
                    EVENTFD_SEMAPHORE_FLAG
                } else {
                    0
                };
                entry.efd = Some(EventfdFileEntry {
                    id,
                    flags: flags | mode,
                    fown,
                    counter: *counter,
                });
            }
            (FdTypes::Signalfd, FdInfoExtra::Signalfd { sigmask }) => {
                entry.sgfd = Some(SignalfdEntry {
                    id,
                    flags,
                    fown,
                    sigmask: *sigmask,
                });
            }
            (FdTypes::Timerfd, FdInfoExtra::Timerfd(t)) => {
                let t = &settled_timerfd(p, file.as_fd(), t)?;
                entry.tfd = Some(TimerfdEntry {
                    id,
                    flags,
                    fown,
                    clockid: t.clockid,
                    ticks: t.ticks,
                    settime_flags: t.settime_flags,
                    vsec: t.value.0,
                    vnsec: t.value.1,
                    isec: t.interval.0,
                    insec: t.interval.1,
                });
            }
            (FdTypes::Eventpoll, extra) => {
                let targets = match extra {
                    FdInfoExtra::Epoll(t) => t.clone(),
                    _ => Vec::new(),
                };
                let mut tfd = Vec::with_capacity(targets.len());
                for t in targets {
                    // The target must still be an fd of the owner (CRIU refuses
                    // escaped or closed targets the same way).
                    if !std::path::Path::new(&format!("/proc/{}/fd/{}", p.pid, t.tfd)).exists() {
                        return Err(Self::unsupported(
                            p,
                            format!("an epoll watching fd {} that is closed or belongs to another process", t.tfd),
                        ));
                    }
                    // CRIU leaves the per-target id at 0.
                    tfd.push(EventpollTfdEntry {
                        id: 0,
                        tfd: t.tfd as u32,
                        events: t.events,
                        data: t.data,
                        dev: t.dev,
                        inode: t.inode,
                        pos: t.pos,
                    });
                }
                entry.epfd = Some(EventpollFileEntry {
                    id,
                    flags,
                    fown,
                    tfd,
                });
            }
            (FdTypes::Inotify, extra) => {
                let watches = match extra {
                    FdInfoExtra::Inotify(w) => w.clone(),
                    _ => Vec::new(),
                };
                let mut wd = Vec::with_capacity(watches.len());
                for w in &watches {
                    // CRIU leaves the per-watch id at 0.
                    wd.push(InotifyWdEntry {
                        id: 0,
                        i_ino: w.ino,
                        mask: w.mask,
                        ignored_mask: w.ignored_mask,
                        s_dev: w.s_dev,
                        wd: w.wd as u32,
                        f_handle: fh_entry(w, watch_path(w)),
                    });
                }
                entry.ify = Some(InotifyFileEntry {
                    id,
                    flags,
                    fown,
                    wd,
                });
            }
            (kind, _) => {
                return Err(Self::unsupported(
                    p,
                    format!("{kind:?} file without its fdinfo fields"),
                ));
            }
        }
        self.entries.push(entry);
        Ok((kind, id))
    }
}

/// The state of a timerfd as a restore must recreate it.
///
/// A periodic timer that fired is re-armed by the kernel only when it is read
/// (or queried with timerfd_gettime): until then fdinfo shows `it_value` 0
/// with the tick pending, and recreating that (CRIU does) leaves the timer
/// disarmed. So for a periodic timer showing value 0, the dump calls
/// timerfd_gettime on its own copy of the fd: the kernel forwards the timer
/// past now and adds the missed periods to the unread ticks — exactly what
/// the task's next read would do, so the task sees no difference — and
/// fdinfo, re-read, then holds the real time to the next expiry and the
/// ticks, both taken under one lock.
fn settled_timerfd(
    p: &FileParams,
    file: BorrowedFd<'_>,
    first: &TimerfdState,
) -> Result<TimerfdState, FileError> {
    let mut state = first.clone();
    // One-shot timers are never re-armed: value 0 means expired or disarmed.
    if state.interval == (0, 0) || state.value != (0, 0) {
        return Ok(state);
    }
    let mut gettime_value = (0, 0);
    for _ in 0..TIMERFD_REFRESH_ATTEMPTS {
        (gettime_value, _) = crate::sys::timerfd_gettime(file)
            .map_err(|e| FileError::io(p.pid, p.fd, "timerfd_gettime", e))?;
        state = match read_fdinfo(p.pid, p.fd)?.extra {
            FdInfoExtra::Timerfd(now) => now,
            other => {
                return Err(FileTable::unsupported(
                    p,
                    format!("a timerfd whose fdinfo changed kind while frozen ({other:?})"),
                ))
            }
        };
        if state.value != (0, 0) || state.interval == (0, 0) {
            return Ok(state);
        }
    }
    // Every re-read caught the timer expired again: its period is shorter
    // than one fdinfo read. Keep the ticks just read and the value
    // timerfd_gettime returned, or the smallest value that still arms the
    // timer (the next expiry is due about now anyway).
    state.value = if gettime_value == (0, 0) {
        (0, 1)
    } else {
        gettime_value
    };
    Ok(state)
}

fn fh_entry(w: &InotifyWatch, path: Option<String>) -> FhEntry {
    let mut words = vec![0u64; FH_WORDS];
    for (i, chunk) in w.fhandle.chunks(8).enumerate().take(FH_WORDS) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        words[i] = u64::from_le_bytes(b);
    }
    FhEntry {
        bytes: w.fhandle_bytes,
        r#type: w.fhandle_type as u32,
        handle: words,
        path,
        mnt_id: None,
    }
}

/// The path of a watched inode: open it by handle through a mount of its
/// device and read the link back (CRIU stores it so a restore can use it).
fn watch_path(w: &InotifyWatch) -> Option<String> {
    // fdinfo prints the kernel's internal dev_t: major << 20 | minor.
    let (major, minor) = (w.s_dev >> 20, w.s_dev & 0xf_ffff);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount_point = mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2)? == &format!("{major}:{minor}").as_str()).then(|| fields[4].to_string())
    })?;
    let mount_dir = std::fs::File::open(&mount_point).ok()?;
    let fd = crate::sys::open_by_handle(mount_dir.as_fd(), w.fhandle_type, &w.fhandle).ok()?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    Some(path.to_string_lossy().into_owned())
}
