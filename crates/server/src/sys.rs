//! The syscall-facing layer of criu-server: every `unsafe` block of the crate
//! lives here, each with the invariant that makes it sound.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use nix::unistd::{ForkResult, Pid};

/// Why a [`SharedMemory`] access was refused.
#[derive(Debug, thiserror::Error)]
pub enum SharedMemoryError {
    /// The mapping could not be created.
    #[error("can't map {len} shared bytes: {source}")]
    Map {
        /// Requested size.
        len: usize,
        /// What mmap said.
        #[source]
        source: io::Error,
    },
    /// `offset..offset + len` does not fit in the mapping (or overflows).
    #[error("shared range at offset {offset} of {len} bytes is outside the {size}-byte mapping")]
    OutOfBounds {
        /// Start of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Size of the mapping.
        size: usize,
    },
    /// An atomic word must be 4-aligned.
    #[error("shared atomic at offset {offset} is not 4-aligned")]
    Misaligned {
        /// The offset asked for.
        offset: usize,
    },
}

/// Why [`fork_process`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// Other threads exist: a forked child could inherit a lock one of them
    /// holds (allocator, stdio) and deadlock.
    #[error("refusing to fork: the process has {threads} threads, fork is only sound with 1")]
    Multithreaded {
        /// `Threads:` of /proc/self/status.
        threads: u64,
    },
    /// /proc/self/status could not be read or has no `Threads:` line.
    #[error("can't count this process's threads in /proc/self/status: {0}")]
    ThreadCount(String),
    /// fork() itself failed.
    #[error("fork: {0}")]
    Fork(#[from] nix::Error),
}

/// The number of threads of this process (`Threads:` in /proc/self/status).
pub fn thread_count() -> Result<u64, ForkError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| ForkError::ThreadCount(e.to_string()))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .ok_or_else(|| ForkError::ThreadCount("no Threads: line".into()))?
        .trim()
        .parse()
        .map_err(|e| ForkError::ThreadCount(format!("bad Threads: value: {e}")))
}

/// `fork()`, only while this process is single-threaded (checked, not
/// assumed): the service loop and the swrk worker never start threads, so
/// their children are faithful copies that may run arbitrary code. Anything
/// else (a libtest thread, a future logging thread) gets
/// [`ForkError::Multithreaded`] instead of a child that may deadlock.
pub fn fork_process() -> Result<ForkResult, ForkError> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(ForkError::Multithreaded { threads });
    }
    // SAFETY: the process has exactly one thread (checked just above; only
    // this thread could start another, and it is busy here), so no lock can
    // be held by another thread at fork time and the child may run
    // arbitrary code.
    Ok(unsafe { nix::unistd::fork() }?)
}

/// An anonymous `MAP_SHARED` mapping: forked children write into the same
/// memory as their parent (used for the first error of a request).
///
/// Invariant: every byte of the mapping is accessed either through the
/// atomics of [`SharedMemory::atomic_u32`] / [`SharedMemory::atomic_i32`] or
/// through a write-once record ([`SharedMemory::publish_once`] /
/// [`SharedMemory::read_published`]), whose bytes are written only by the one
/// process that won the record's claim word, and read only after an Acquire
/// load saw the record published. There is no other way to touch the bytes,
/// so no plain copy can race with a write.
#[derive(Debug)]
pub struct SharedMemory {
    base: NonNull<u8>,
    len: usize,
}

/// Claim-word states of a write-once record.
const RECORD_EMPTY: u32 = 0;
const RECORD_WRITING: u32 = 1;
const RECORD_PUBLISHED: u32 = 2;
/// A record is: claim word (u32), length (u32), then the bytes.
const RECORD_HEADER: usize = 8;

impl SharedMemory {
    /// Maps `len` zeroed bytes shared with future children.
    pub fn new(len: usize) -> Result<SharedMemory, SharedMemoryError> {
        // SAFETY: an anonymous mapping at a kernel-chosen address touches no
        // existing memory; the result is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(SharedMemoryError::Map {
                len,
                source: io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(addr.cast::<u8>()).ok_or_else(|| SharedMemoryError::Map {
            len,
            source: io::Error::other("mmap gave NULL"),
        })?;
        Ok(SharedMemory { base, len })
    }

    /// Checks that `offset..offset + len` lies inside the mapping.
    fn check_range(&self, offset: usize, len: usize) -> Result<(), SharedMemoryError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(SharedMemoryError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    fn word_ptr(&self, offset: usize) -> Result<*mut u8, SharedMemoryError> {
        if offset % 4 != 0 {
            return Err(SharedMemoryError::Misaligned { offset });
        }
        self.check_range(offset, 4)?;
        // SAFETY: offset + 4 <= len (checked), so the pointer stays inside
        // the mapping.
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }

    /// The 32-bit atomic at byte `offset` (4-aligned, in bounds).
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, SharedMemoryError> {
        let ptr = self.word_ptr(offset)?;
        // SAFETY: in bounds and 4-aligned (checked; the mapping is page
        // aligned); the mapping lives as long as `self`, and these bytes are
        // only ever accessed through atomics (type invariant).
        Ok(unsafe { &*ptr.cast::<AtomicU32>() })
    }

    /// The signed 32-bit atomic at byte `offset`.
    pub fn atomic_i32(&self, offset: usize) -> Result<&AtomicI32, SharedMemoryError> {
        let ptr = self.word_ptr(offset)?;
        // SAFETY: as in `atomic_u32`.
        Ok(unsafe { &*ptr.cast::<AtomicI32>() })
    }

    /// Publishes `data` in the write-once record at `offset` (4-aligned):
    /// the first caller, in this process or any forked child, wins the claim
    /// word and writes; later callers get `Ok(false)` and write nothing.
    pub fn publish_once(&self, offset: usize, data: &[u8]) -> Result<bool, SharedMemoryError> {
        let claim = self.atomic_u32(offset)?;
        let length = self.atomic_u32(offset + 4)?;
        let text = offset + RECORD_HEADER;
        self.check_range(text, data.len())?;
        let len = u32::try_from(data.len()).map_err(|_| SharedMemoryError::OutOfBounds {
            offset: text,
            len: data.len(),
            size: self.len,
        })?;
        if claim
            .compare_exchange(
                RECORD_EMPTY,
                RECORD_WRITING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return Ok(false);
        }
        // SAFETY: the destination range is inside the mapping (checked) and
        // cannot overlap `data`, which lives in private memory. Winning the
        // claim makes this the only writer these bytes will ever have, and
        // readers copy them only after seeing RECORD_PUBLISHED (below).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(text), data.len())
        }
        length.store(len, Ordering::Relaxed);
        // Release: the bytes and the length happen-before any Acquire load
        // that sees RECORD_PUBLISHED.
        claim.store(RECORD_PUBLISHED, Ordering::Release);
        Ok(true)
    }

    /// The bytes of the record at `offset` once it is published, `None`
    /// before (including while its writer is still copying).
    pub fn read_published(&self, offset: usize) -> Result<Option<Vec<u8>>, SharedMemoryError> {
        let claim = self.atomic_u32(offset)?;
        let length = self.atomic_u32(offset + 4)?;
        if claim.load(Ordering::Acquire) != RECORD_PUBLISHED {
            return Ok(None);
        }
        let len = length.load(Ordering::Relaxed) as usize;
        let text = offset + RECORD_HEADER;
        self.check_range(text, len)?;
        let mut out = vec![0u8; len];
        // SAFETY: the source range is inside the mapping (checked); the
        // Acquire load above saw the record published, after which its single
        // writer never touches these bytes again, so the copy races with
        // nothing.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(text), out.as_mut_ptr(), len)
        }
        Ok(Some(out))
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: base/len describe exactly the mapping created in `new`, and
        // no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

// SAFETY: the mapping is only accessed through atomics or write-once
// records (type invariant); the pointer itself is plain data.
unsafe impl Send for SharedMemory {}
// SAFETY: see `Send`.
unsafe impl Sync for SharedMemory {}

/// `kcmp(pid1, pid2, KCMP_FILE, fd1, fd2)`: 0 when both name the same file.
pub fn kcmp_file(pid: Pid, fd1: RawFd, fd2: RawFd) -> io::Result<i64> {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid.as_raw(),
            pid.as_raw(),
            KCMP_FILE,
            fd1,
            fd2,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size)`: the kernel's
/// `struct prctl_mm_map` size, proving PR_SET_MM_MAP exists.
pub fn prctl_mm_map_size() -> io::Result<u32> {
    const PR_SET_MM: libc::c_int = 35;
    const PR_SET_MM_MAP_SIZE: libc::c_ulong = 15;
    let mut size: libc::c_uint = 0;
    // SAFETY: the kernel writes one unsigned int through the pointer, which
    // points at a live local.
    let ret = unsafe {
        libc::prctl(
            PR_SET_MM,
            PR_SET_MM_MAP_SIZE,
            &mut size as *mut libc::c_uint as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// `setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, value)`.
pub fn set_peek_off(fd: &OwnedFd, value: i32) -> io::Result<()> {
    set_int_sockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, value)
}

/// `setsockopt` with an int value.
pub fn set_int_sockopt(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the kernel reads sizeof(int) bytes from a live local.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_GETOWNER_UIDS, uids)` (CONFIG_CHECKPOINT_RESTORE only).
pub fn getowner_uids(fd: &OwnedFd) -> io::Result<[u32; 2]> {
    const F_GETOWNER_UIDS: libc::c_int = 17;
    let mut uids = [0u32; 2];
    // SAFETY: the kernel writes two uid_t values into the live local array.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWNER_UIDS, uids.as_mut_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uids)
}

/// Probes clone3 `set_tid` support the way CRIU's kerndat does: a set_tid of
/// -1 must be rejected with EINVAL (an old kernel says E2BIG or ENOSYS). No
/// process is ever created.
pub fn clone3_set_tid_probe() -> io::Error {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let invalid_tid: libc::pid_t = -1;
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: &invalid_tid as *const libc::pid_t as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: set_tid = {-1} is rejected by the kernel before any task is
    // created (checked below: a success would be a bug we report, and the
    // child would exit immediately).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // A child was created after all: make it vanish without running
        // any of our code.
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(0) };
    }
    if ret > 0 {
        let _ = nix::sys::wait::waitpid(Pid::from_raw(ret as i32), None);
        return io::Error::other("clone3 accepted set_tid -1");
    }
    io::Error::last_os_error()
}

/// `userfaultfd(flags)`, falling back to `/dev/userfaultfd`.
pub fn userfaultfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd >= 0 {
        // SAFETY: fresh descriptor from the kernel.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    let syscall_error = io::Error::last_os_error();
    let device = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/userfaultfd")
    {
        Ok(device) => device,
        Err(_) => return Err(syscall_error),
    };
    const USERFAULTFD_IOC_NEW: libc::c_ulong = 0xAA00;
    // SAFETY: the ioctl takes the flags by value and returns a new fd.
    let fd = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            USERFAULTFD_IOC_NEW,
            libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `UFFDIO_API` with no requested features: returns every feature bit the
/// kernel supports.
pub fn uffd_api_features(uffd: &OwnedFd) -> io::Result<u64> {
    #[repr(C)]
    struct UffdioApi {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    const UFFD_API: u64 = 0xAA;
    const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: the kernel reads and writes one `struct uffdio_api` (24 bytes,
    // matching the ioctl number) in a live local.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(api.features)
}

/// Keeps only the capabilities in `keep` (bit numbers) in the permitted and
/// effective sets of this process, and clears the inheritable set.
pub fn capset_keep(keep: &[u32]) -> io::Result<()> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let word = (cap / 32) as usize;
        let bit = 1u32 << (cap % 32);
        if word < 2 {
            data[word].effective |= bit;
            data[word].permitted |= bit;
        }
    }
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: v3 capset reads one header and two data structs from live
    // locals of exactly those layouts.
    let ret =
        unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(PR_SET_KEEPCAPS, on)`.
pub fn set_keepcaps(on: bool) -> io::Result<()> {
    // SAFETY: integer-only prctl.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_KEEPCAPS,
            libc::c_ulong::from(on),
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `cpuid(leaf, subleaf)` as `[eax, ebx, ecx, edx]`.
#[cfg(target_arch = "x86_64")]
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    // SAFETY: CPUID exists on every x86_64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    let regs = unsafe { std::arch::x86_64::__cpuid_count(leaf, subleaf) };
    [regs.eax, regs.ebx, regs.ecx, regs.edx]
}

/// `xgetbv(0)` (XCR0), or 0 when the OS has not enabled XSAVE.
#[cfg(target_arch = "x86_64")]
pub fn xcr0() -> u64 {
    const OSXSAVE: u32 = 1 << 27;
    if cpuid(1, 0)[2] & OSXSAVE == 0 {
        return 0;
    }
    let (eax, edx): (u32, u32);
    // SAFETY: CPUID.1:ECX.OSXSAVE is set (checked above), so XGETBV with
    // ECX=0 is a valid, side-effect-free instruction.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") eax, out("edx") edx, options(nomem, nostack));
    }
    (u64::from(edx) << 32) | u64::from(eax)
}

/// `openat2(AT_FDCWD, "/", {O_PATH|O_CLOEXEC})`, closed right away.
pub fn openat2_probe() -> io::Result<()> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: 0,
    };
    let root = c"/";
    // SAFETY: the kernel reads a NUL-terminated path and a 24-byte open_how
    // from live locals.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            root.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor from the kernel, closed when dropped.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(())
}

/// `waitpid(pid, &status, 0)` returning the raw wait status (RPC WAIT_PID
/// sends it unchanged).
pub fn wait_raw(pid: i32) -> io::Result<i32> {
    let mut status: libc::c_int = 0;
    // SAFETY: the kernel writes one int into a live local.
    let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(status)
}

/// A descriptor of our own for a descriptor *number* this process was handed
/// by its parent (`criu swrk FD`, `--status-fd`, `--inherit-fd`).
///
/// Ownership stays explicit: the number itself is never adopted (something
/// else in the process could already own it, and two owners would
/// double-close), so the caller gets a fresh close-on-exec duplicate it owns
/// alone. The original is marked close-on-exec so it cannot leak into
/// exec_cmd or restored tasks, and is otherwise left alone (it goes away
/// when the process exits).
pub fn dup_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table and returns a
    // new descriptor; it neither closes nor takes ownership of `raw`.
    let fd = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor the kernel just created for this
    // call; nothing else refers to it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD changes only the close-on-exec flag of `raw` (which is
    // open: the dup above succeeded); no memory and no ownership involved.
    if unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// Takes ownership of a descriptor that our parent handed us by number on the command line and that
/// we are meant to close (`--status-fd`: CRIU writes its byte and closes it, and callers wait for
/// end-of-file). Call it at most once per number.
pub fn take_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only reads the descriptor flags; it fails with EBADF if `raw` is not open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is open (checked above) and came to us across exec, named on the command line
    // for this purpose: no object of this process was created for that number, so the OwnedFd made
    // here is its only owner. The callers (the readiness signal, run once per process) take each
    // number once.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `accept4(listener, SOCK_CLOEXEC)`: the new connection, owned.
pub fn accept_connection(listener: &OwnedFd) -> nix::Result<OwnedFd> {
    let raw = nix::sys::socket::accept4(
        listener.as_raw_fd(),
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )?;
    // SAFETY: accept4 returned a fresh descriptor created for this call;
    // nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_is_refused_while_other_threads_exist() {
        // libtest runs this on a spawned thread, so there are at least two.
        assert!(thread_count().unwrap() >= 2);
        match fork_process() {
            Err(ForkError::Multithreaded { threads }) => assert!(threads >= 2),
            Ok(ForkResult::Child) => std::process::exit(0),
            other => panic!("fork from a multithreaded process: {other:?}"),
        }
    }

    #[test]
    fn shared_ranges_that_overflow_or_overrun_are_errors() {
        let memory = SharedMemory::new(4096).unwrap();
        assert!(matches!(
            memory.atomic_u32(usize::MAX - 1),
            Err(SharedMemoryError::Misaligned { .. })
        ));
        assert!(matches!(
            memory.atomic_u32(usize::MAX - 3),
            Err(SharedMemoryError::OutOfBounds { .. })
        ));
        assert!(matches!(
            memory.atomic_i32(4096),
            Err(SharedMemoryError::OutOfBounds { offset: 4096, .. })
        ));
        assert!(matches!(
            memory.publish_once(4, &[7u8; 4096]),
            Err(SharedMemoryError::OutOfBounds { .. })
        ));
        // The refused record was not claimed.
        assert_eq!(memory.read_published(4).unwrap(), None);
    }

    #[test]
    fn records_are_published_once() {
        let memory = SharedMemory::new(4096).unwrap();
        assert_eq!(memory.read_published(8).unwrap(), None);
        assert!(memory.publish_once(8, b"first").unwrap());
        assert!(!memory.publish_once(8, b"second").unwrap());
        assert_eq!(
            memory.read_published(8).unwrap().as_deref(),
            Some(&b"first"[..])
        );
    }

    #[test]
    fn inherited_fds_are_duplicated_not_adopted() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let copy = dup_inherited_fd(writer.as_raw_fd()).unwrap();
        assert_ne!(copy.as_raw_fd(), writer.as_raw_fd());
        let flags = nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "the original is now close-on-exec"
        );
        drop(copy);
        // The original is still open and still ours to use.
        nix::unistd::write(&writer, b"x").unwrap();
        let mut byte = [0u8];
        nix::unistd::read(&reader, &mut byte).unwrap();
        assert_eq!(&byte, b"x");
        assert_eq!(
            dup_inherited_fd(-1).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
