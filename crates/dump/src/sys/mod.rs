//! Syscall wrappers the dump needs that no lower crate exposes: kcmp,
//! get_robust_list, scheduler queries, TLS descriptors, seccomp filter flags,
//! timerfd_gettime, fcntl/ioctl/socket option calls on borrowed fds.
//! (pidfd helpers live in `criu_compel::steal_fd`; rlimits come from
//! /proc/PID/limits.)
//!
//! Each wrapper takes typed arguments, owns every buffer the kernel writes,
//! and returns `io::Result`.

use std::io;
#[cfg(test)]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub mod keeper;
pub mod unix_diag;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// kcmp(2) comparison types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KcmpType {
    /// Same `struct file` (idx1/idx2 are fds).
    File = 0,
    /// Same address space.
    Vm = 1,
    /// Same fd table.
    Files = 2,
    /// Same fs_struct (cwd/root/umask).
    Fs = 3,
    /// Same signal handler table.
    Sighand = 4,
}

/// kcmp(2): 0 equal, 1 or 2 ordered unequal, 3 incomparable.
pub fn kcmp(pid1: i32, pid2: i32, kind: KcmpType, idx1: u64, idx2: u64) -> io::Result<i32> {
    // SAFETY: kcmp takes only integer arguments; no memory of ours is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1 as libc::c_long,
            pid2 as libc::c_long,
            kind as libc::c_long,
            idx1 as libc::c_ulong,
            idx2 as libc::c_ulong,
        )
    };
    check(ret).map(|r| r as i32)
}

/// get_robust_list(tid): (head pointer, length).
pub fn get_robust_list(tid: i32) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: head and len are valid writable locals of the kernel's pointer and size_t sizes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid as libc::c_long,
            &mut head as *mut u64,
            &mut len as *mut libc::size_t,
        )
    };
    check(ret)?;
    Ok((head, len as u64))
}

/// sched_getscheduler(tid) (may include SCHED_RESET_ON_FORK).
pub fn sched_getscheduler(tid: i32) -> io::Result<i32> {
    // SAFETY: integer-only syscall.
    let ret = unsafe { libc::syscall(libc::SYS_sched_getscheduler, tid as libc::c_long) };
    check(ret).map(|r| r as i32)
}

/// sched_getparam(tid).sched_priority.
pub fn sched_getparam(tid: i32) -> io::Result<i32> {
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid writable sched_param for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_getparam,
            tid as libc::c_long,
            &mut param as *mut libc::sched_param,
        )
    };
    check(ret)?;
    Ok(param.sched_priority)
}

/// The nice value of a thread (getpriority(PRIO_PROCESS, tid), decoded).
pub fn get_nice(tid: i32) -> io::Result<i32> {
    // The raw syscall returns 20 - nice, so that it is never negative.
    // SAFETY: integer-only syscall.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getpriority,
            libc::PRIO_PROCESS as libc::c_long,
            tid as libc::c_long,
        )
    };
    check(ret).map(|r| 20 - r as i32)
}

/// timerfd_gettime(fd): ((value sec, nsec), (interval sec, nsec)). For a
/// periodic timer that expired and was not read yet, the kernel first
/// forwards it past now (counting the missed periods as unread ticks, what a
/// read would do), so the value is the real time to the next expiry.
pub fn timerfd_gettime(fd: BorrowedFd<'_>) -> io::Result<((u64, u64), (u64, u64))> {
    // SAFETY: itimerspec is plain old data; all-zero is a valid value.
    let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: spec is a valid writable itimerspec for the duration of the call.
    let ret = unsafe { libc::timerfd_gettime(fd.as_raw_fd(), &mut spec) };
    check(ret as libc::c_long)?;
    Ok((
        (spec.it_value.tv_sec as u64, spec.it_value.tv_nsec as u64),
        (
            spec.it_interval.tv_sec as u64,
            spec.it_interval.tv_nsec as u64,
        ),
    ))
}

/// getsockopt(fd, level, name) for an int-sized option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value/len are valid writable locals; len holds value's size.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    check(ret as libc::c_long)?;
    Ok(value)
}

/// getsockopt(fd, level, name) for a `struct timeval` option: (sec, usec).
pub fn getsockopt_timeval(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<(u64, u64)> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: tv/len are valid writable locals; len holds tv's size.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &mut tv as *mut libc::timeval as *mut libc::c_void,
            &mut len,
        )
    };
    check(ret as libc::c_long)?;
    Ok((tv.tv_sec as u64, tv.tv_usec as u64))
}

/// getsockopt(fd, level, name) into a byte buffer; returns the bytes written.
pub fn getsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is a valid writable slice of `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    check(ret as libc::c_long)?;
    Ok(len as usize)
}

/// setsockopt(fd, level, name, int).
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value is a valid readable int of the given size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret as libc::c_long).map(drop)
}

/// recv(fd, buf, MSG_PEEK | MSG_DONTWAIT | extra): peeks the next message (with
/// SO_PEEK_OFF set, the next one after the previous peek).
pub fn recv_peek(fd: BorrowedFd<'_>, buf: &mut [u8], extra_flags: i32) -> io::Result<usize> {
    // SAFETY: buf is a valid writable slice of buf.len() bytes.
    let ret = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT | extra_flags,
        )
    };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// ioctl(fd, request, &int) for requests that return an int (FIONREAD, SIOCOUTQ, TIOCGPGRP...).
pub fn ioctl_get_int(fd: BorrowedFd<'_>, request: u64) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    // SAFETY: the requests routed here write one int to the pointer we pass.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut value as *mut libc::c_int) };
    check(ret as libc::c_long)?;
    Ok(value)
}

/// The owner of an open file (F_GETOWN_EX): (owner type F_OWNER_*, pid), or None if unset.
pub fn file_owner(fd: BorrowedFd<'_>) -> io::Result<Option<(i32, i32)>> {
    #[repr(C)]
    struct FOwnerEx {
        kind: libc::c_int,
        pid: libc::pid_t,
    }
    const F_GETOWN_EX: libc::c_int = 16;
    let mut owner = FOwnerEx { kind: 0, pid: 0 };
    // SAFETY: F_GETOWN_EX writes one `struct f_owner_ex` (two ints) to the pointer.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut owner as *mut FOwnerEx) };
    check(ret as libc::c_long)?;
    Ok((owner.pid != 0).then_some((owner.kind, owner.pid)))
}

/// The uid and euid recorded with the file owner (F_GETOWNER_UIDS = 17).
pub fn file_owner_uids(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    const F_GETOWNER_UIDS: libc::c_int = 17;
    let mut uids: [libc::uid_t; 2] = [0, 0];
    // SAFETY: F_GETOWNER_UIDS writes two uid_t values to the pointer.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWNER_UIDS, uids.as_mut_ptr()) };
    check(ret as libc::c_long)?;
    Ok((uids[0], uids[1]))
}

/// fcntl F_GETSIG (not exported by the libc crate).
pub const F_GETSIG: i32 = 11;

/// fcntl(fd, cmd) for integer-returning commands without an argument
/// (F_GETSIG, F_GETPIPE_SZ, F_GETFL, F_GET_SEALS...).
pub fn fcntl_get(fd: BorrowedFd<'_>, cmd: i32) -> io::Result<i32> {
    // SAFETY: the commands routed here take no pointer argument.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), cmd) };
    check(ret as libc::c_long).map(|r| r as i32)
}

/// fcntl(fd, cmd, value) for integer-argument commands (F_SETPIPE_SZ...).
pub fn fcntl_set(fd: BorrowedFd<'_>, cmd: i32, value: i32) -> io::Result<i32> {
    // SAFETY: the commands routed here take an int argument, no pointer.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, value) };
    check(ret as libc::c_long).map(|r| r as i32)
}

/// statfs f_type of an open file.
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: buf is a valid writable statfs.
    let ret = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut buf) };
    check(ret as libc::c_long)?;
    Ok(buf.f_type as i64)
}

/// A GDT TLS slot as PTRACE_GET_THREAD_AREA returns it (`struct user_desc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserDesc {
    /// GDT index.
    pub entry_number: u32,
    /// Segment base.
    pub base_addr: u32,
    /// Segment limit.
    pub limit: u32,
    /// The packed flag bits (seg_32bit:1 contents:2 read_exec_only:1
    /// limit_in_pages:1 seg_not_present:1 useable:1 lm:1).
    pub flags: u32,
}

/// PTRACE_GET_THREAD_AREA for GDT entry `index` of a thread we trace.
pub fn get_thread_area(tid: i32, index: u32) -> io::Result<UserDesc> {
    const PTRACE_GET_THREAD_AREA: libc::c_uint = 25;
    let mut desc = [0u32; 4];
    // SAFETY: the request writes one 16-byte `struct user_desc` to `desc`, which is 16 bytes.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GET_THREAD_AREA,
            tid,
            index as usize as *mut libc::c_void,
            desc.as_mut_ptr() as *mut libc::c_void,
        )
    };
    check(ret)?;
    Ok(UserDesc {
        entry_number: desc[0],
        base_addr: desc[1],
        limit: desc[2],
        flags: desc[3],
    })
}

/// ioctl(fd, request) for requests that return a new fd (SIOCUNIXFILE...).
pub fn ioctl_open(fd: BorrowedFd<'_>, request: u64) -> io::Result<OwnedFd> {
    // SAFETY: the requests routed here take no argument and return a new fd.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, 0) };
    let new = check(ret as libc::c_long)? as i32;
    // SAFETY: `new` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// open_by_handle_at(mount_fd, handle, O_PATH): opens an inode from a file
/// handle (as inotify fdinfo prints it).
pub fn open_by_handle(
    mount: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
) -> io::Result<OwnedFd> {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: buf holds a complete struct file_handle with handle.len() bytes of handle.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd() as libc::c_long,
            buf.as_mut_ptr(),
            (libc::O_PATH | libc::O_CLOEXEC) as libc::c_long,
        )
    };
    let fd = check(ret)? as i32;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// PTRACE_SECCOMP_GET_METADATA: the flags (SECCOMP_FILTER_FLAG_*) of the
/// `index`th filter of a thread we trace.
pub fn seccomp_filter_flags(tid: i32, index: u64) -> io::Result<u64> {
    const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
    let mut meta: [u64; 2] = [index, 0];
    // SAFETY: the request reads filter_off and writes flags into the 16-byte
    // `struct seccomp_metadata` we pass, whose size is given as addr.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_METADATA,
            tid,
            std::mem::size_of_val(&meta) as *mut libc::c_void,
            meta.as_mut_ptr() as *mut libc::c_void,
        )
    };
    check(ret)?;
    Ok(meta[1])
}

/// ioctl(fd, request, buf) for requests that fill a caller buffer (TCGETS,
/// TIOCGWINSZ, TIOCGPTN...). `buf` must be at least as large as the kernel's
/// structure for the request.
pub fn ioctl_read(fd: BorrowedFd<'_>, request: u64, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: the requests routed here write at most buf.len() bytes (callers
    // pass buffers sized for the kernel structure) to the pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, buf.as_mut_ptr()) };
    check(ret as libc::c_long).map(drop)
}

/// getsockname (or getpeername with `peer`) into `buf` (a sockaddr of at most
/// buf.len() bytes).
pub fn sockaddr_of(fd: BorrowedFd<'_>, peer: bool, buf: &mut [u8]) -> io::Result<()> {
    let mut len = buf.len() as libc::socklen_t;
    let ptr = buf.as_mut_ptr() as *mut libc::sockaddr;
    // SAFETY: buf is a writable buffer of `len` bytes for the kernel's sockaddr.
    let ret = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), ptr, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), ptr, &mut len)
        }
    };
    check(ret as libc::c_long).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcmp_self_is_equal() {
        let me = std::process::id() as i32;
        assert_eq!(kcmp(me, me, KcmpType::Vm, 0, 0).unwrap(), 0);
    }

    #[test]
    fn sched_and_robust_list_of_self() {
        let me = std::process::id() as i32;
        assert_eq!(
            sched_getscheduler(me).unwrap() & !libc::SCHED_RESET_ON_FORK,
            0
        );
        let nice = get_nice(me).unwrap();
        assert!((-20..=19).contains(&nice));
        let (head, len) = get_robust_list(me).unwrap();
        assert!(head != 0 && len == 24);
    }

    #[test]
    fn timerfd_gettime_rearms_an_expired_periodic_timer() {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
        use std::time::Duration;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK).unwrap();
        timer
            .set(
                Expiration::IntervalDelayed(
                    TimeSpec::from_duration(Duration::from_millis(1)),
                    TimeSpec::from_duration(Duration::from_secs(50)),
                ),
                TimerSetTimeFlags::empty(),
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (value, interval) = timerfd_gettime(timer.as_fd()).unwrap();
        assert_eq!(interval, (50, 0));
        assert!(value.0 >= 49 && value != (0, 0), "{value:?}");
    }
}
