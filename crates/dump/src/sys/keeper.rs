//! The raw side of the tracking keeper (see `crate::track`): pidfds, and forking a process
//! that holds userfaultfds between pre-dumps.
//!
//! The dumper may be multi-threaded (a page reader thread, a test harness), so after `fork` the
//! child must not allocate or take locks. Everything it uses (poll set, the messages with their
//! SCM_RIGHTS control blocks, the sorted list of fds to keep) is built in [`KeeperPlan::new`]
//! before the fork; the child only runs raw syscalls on it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Takes ownership of an fd received over SCM_RIGHTS.
pub fn own_received(fd: RawFd) -> OwnedFd {
    // SAFETY: SCM_RIGHTS installed `fd` in our table for the receiver alone; nothing else
    // refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether the process behind `pidfd` has exited (the pidfd polls readable).
pub fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
    ret != 0
}

/// A duplicate of `fd` numbered 3 or above, so that the keeper's stdio redirection cannot
/// clobber it (returns `fd` itself when it already is).
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd or -1.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl just returned this new fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// One prebuilt SCM_RIGHTS (or data-only) message.
struct Message {
    _data: Vec<u8>,
    _control: Vec<u8>,
    _iov: Box<libc::iovec>,
    header: libc::msghdr,
}

impl Message {
    fn new(data: Vec<u8>, fds: &[RawFd]) -> Self {
        let control_len = if fds.is_empty() {
            0
        } else {
            // SAFETY: CMSG_SPACE only computes a size.
            unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize }
        };
        let mut control = vec![0u8; control_len];
        let mut iov = Box::new(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut *iov;
        header.msg_iovlen = 1;
        if !fds.is_empty() {
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = control_len;
            // SAFETY: `control` is CMSG_SPACE(len) bytes, so the first header and its data fit;
            // CMSG_FIRSTHDR/CMSG_DATA only compute addresses inside it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&header);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
                std::ptr::copy_nonoverlapping(
                    fds.as_ptr(),
                    libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                    fds.len(),
                );
            }
        }
        // The Vec and Box heap buffers do not move when the Message does.
        Self {
            _data: data,
            _control: control,
            _iov: iov,
            header,
        }
    }
}

/// Everything the keeper child needs, built before fork.
pub struct KeeperPlan {
    listener: OwnedFd,
    devnull: OwnedFd,
    /// The fds the keeper keeps (listener, pidfds, uffds), sorted, all above 2.
    keep: Vec<RawFd>,
    /// `[listener, pidfd...]`.
    poll_set: Vec<libc::pollfd>,
    messages: Vec<Message>,
    timeout_ms: i64,
    /// Owners of the fds the messages carry; closed in the dumper once the keeper is forked.
    _carried: Vec<OwnedFd>,
}

impl KeeperPlan {
    /// A keeper serving `listener` (bound and listening): it sends `data` in messages of at most
    /// `chunk` bytes, then `fds` in messages of at most `fds_per_message`, each with one byte.
    /// `pidfds` (a subset of `fds`) are watched: the keeper exits once all have exited, or after
    /// `timeout`.
    pub fn new(
        listener: OwnedFd,
        data: &[u8],
        chunk: usize,
        fds: Vec<OwnedFd>,
        fds_per_message: usize,
        pidfds: &[RawFd],
        timeout: Duration,
    ) -> io::Result<Self> {
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let listener = above_stdio(listener)?;
        let mut messages = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            messages.push(Message::new(piece.to_vec(), &[]));
        }
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        for batch in raw.chunks(fds_per_message.max(1)) {
            messages.push(Message::new(vec![0u8], batch));
        }
        let mut keep = raw.clone();
        keep.push(listener.as_raw_fd());
        keep.sort_unstable();
        keep.dedup();
        if keep.first().is_some_and(|&fd| fd <= 2) {
            return Err(io::Error::other("keeper fds must be numbered above 2"));
        }
        let mut poll_set = vec![libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        poll_set.extend(pidfds.iter().map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        Ok(Self {
            listener,
            devnull: devnull.into(),
            keep,
            poll_set,
            messages,
            timeout_ms: timeout.as_millis().min(i64::MAX as u128) as i64,
            _carried: fds,
        })
    }
}

/// Forks the keeper (double fork, so it is nobody's child to reap but init's) and returns once
/// the intermediate child has exited. The plan's fds are closed here on return; the keeper has
/// its own copies.
pub fn spawn_keeper(mut plan: KeeperPlan) -> io::Result<()> {
    // SAFETY: fork in a possibly multi-threaded process: the child only runs
    // `intermediate`, which calls fork, _exit and (in the grandchild) `keeper_main`, all
    // async-signal-safe raw syscalls on memory prepared before the fork.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        intermediate(&mut plan);
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        let ret = unsafe { libc::waitpid(child, &mut status, 0) };
        if ret == child {
            break;
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            return Err(error);
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the keeper's launcher ended with wait status {status:#x}"
        )))
    }
}

fn intermediate(plan: &mut KeeperPlan) -> ! {
    // SAFETY: see spawn_keeper; fork and _exit are async-signal-safe.
    unsafe {
        let keeper = libc::fork();
        if keeper == 0 {
            keeper_main(plan);
        }
        libc::_exit(if keeper < 0 { 1 } else { 0 });
    }
}

fn monotonic_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

fn errno() -> i32 {
    // SAFETY: reads the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// The keeper: allocation-free raw syscalls only.
fn keeper_main(plan: &mut KeeperPlan) -> ! {
    // SAFETY: every call below is a raw syscall on fds and buffers owned by `plan`, which was
    // fully built before fork and is not touched by anyone else in this process.
    unsafe {
        libc::setsid();
        for stdio in 0..3 {
            libc::dup2(plan.devnull.as_raw_fd(), stdio);
        }
        let mut next: RawFd = 3;
        for &fd in &plan.keep {
            if fd > next {
                libc::syscall(libc::SYS_close_range, next as u32, (fd - 1) as u32, 0u32);
            }
            next = fd + 1;
        }
        libc::syscall(libc::SYS_close_range, next as u32, u32::MAX, 0u32);

        let euid = libc::geteuid();
        let deadline = monotonic_ms().saturating_add(plan.timeout_ms);
        let mut alive = plan.poll_set.len() - 1;
        loop {
            let left = deadline - monotonic_ms();
            if left <= 0 {
                libc::_exit(0);
            }
            let ready = libc::poll(
                plan.poll_set.as_mut_ptr(),
                plan.poll_set.len() as libc::nfds_t,
                left.min(i32::MAX as i64) as i32,
            );
            if ready < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                libc::_exit(2);
            }
            for pfd in plan.poll_set.iter_mut().skip(1) {
                if pfd.fd >= 0 && pfd.revents != 0 {
                    pfd.fd = -1;
                    alive -= 1;
                }
            }
            if alive == 0 {
                libc::_exit(0);
            }
            if plan.poll_set[0].revents & libc::POLLIN == 0 {
                continue;
            }
            let conn = libc::accept4(
                plan.listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            if conn < 0 {
                continue;
            }
            let mut cred = libc::ucred {
                pid: 0,
                uid: u32::MAX,
                gid: u32::MAX,
            };
            let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
            let got = libc::getsockopt(
                conn,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            );
            if got != 0 || cred.uid != euid {
                // A uffd in other hands could register MISSING mode and feed the target data.
                libc::close(conn);
                continue;
            }
            for message in &plan.messages {
                if libc::sendmsg(conn, &message.header, libc::MSG_NOSIGNAL) < 0 {
                    break;
                }
            }
            libc::_exit(0);
        }
    }
}
