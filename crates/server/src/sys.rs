//! The syscall-facing layer of criu-server: every `unsafe` block of the crate
//! lives here, each with the invariant that makes it sound.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32};

use nix::unistd::{ForkResult, Pid};

/// `fork()`. criu-server never starts threads (no async runtime, no logging
/// thread), so the child is a faithful single-threaded copy.
pub fn fork_process() -> io::Result<ForkResult> {
    // SAFETY: the server process is single-threaded by construction (see the
    // crate docs), so no lock can be held by another thread at fork time and
    // the child may run arbitrary code.
    unsafe { nix::unistd::fork() }.map_err(io::Error::from)
}

/// An anonymous `MAP_SHARED` mapping: forked children write into the same
/// memory as their parent (used for the first error of a request).
#[derive(Debug)]
pub struct SharedMemory {
    base: NonNull<u8>,
    len: usize,
}

impl SharedMemory {
    /// Maps `len` zeroed bytes shared with future children.
    pub fn new(len: usize) -> io::Result<SharedMemory> {
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
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(SharedMemory { base, len })
    }

    /// The 32-bit atomic at byte `offset` (4-aligned, in bounds).
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "atomic at {offset} out of bounds"
        );
        // SAFETY: in bounds and 4-aligned (asserted; the mapping is page
        // aligned); the mapping lives as long as `self`, and all access to
        // shared words goes through atomics.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The signed 32-bit atomic at byte `offset`.
    pub fn atomic_i32(&self, offset: usize) -> &AtomicI32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "atomic at {offset} out of bounds"
        );
        // SAFETY: as in `atomic_u32`.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicI32>() }
    }

    /// Copies `data` to byte `offset`. Callers serialize writers with an
    /// atomic claim, so no two writers touch the same bytes.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        assert!(
            offset + data.len() <= self.len,
            "write past the shared mapping"
        );
        // SAFETY: the destination range is inside the mapping (asserted) and
        // cannot overlap `data`, which lives in private memory.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(offset), data.len())
        }
    }

    /// Copies `len` bytes from byte `offset`.
    pub fn read_bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset + len <= self.len, "read past the shared mapping");
        let mut out = vec![0u8; len];
        // SAFETY: the source range is inside the mapping (asserted).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(offset), out.as_mut_ptr(), len)
        }
        out
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

// SAFETY: the mapping is only accessed through atomics or by the single
// writer that claimed it; the pointer itself is plain data.
unsafe impl Send for SharedMemory {}
// SAFETY: see `Send`.
unsafe impl Sync for SharedMemory {}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, target_fd, 0)`: a duplicate of another process's fd.
pub fn pidfd_getfd(pidfd: &OwnedFd, target_fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

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

/// One `PAGEMAP_SCAN` ioctl over `[start, end)` of this process asking for
/// present pages; returns the number of ranges the kernel reported.
pub fn pagemap_scan_self(pagemap: &std::fs::File, start: u64, end: u64) -> io::Result<usize> {
    #[repr(C)]
    struct PageRegion {
        start: u64,
        end: u64,
        categories: u64,
    }
    #[repr(C)]
    struct PmScanArg {
        size: u64,
        flags: u64,
        start: u64,
        end: u64,
        walk_end: u64,
        vec: u64,
        vec_len: u64,
        max_pages: u64,
        category_inverted: u64,
        category_mask: u64,
        category_anyof_mask: u64,
        return_mask: u64,
    }
    const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;
    const PAGE_IS_PRESENT: u64 = 1 << 3;
    let mut regions: [PageRegion; 8] = std::array::from_fn(|_| PageRegion {
        start: 0,
        end: 0,
        categories: 0,
    });
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        flags: 0,
        start,
        end,
        walk_end: 0,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        max_pages: 0,
        category_inverted: 0,
        category_mask: PAGE_IS_PRESENT,
        category_anyof_mask: 0,
        return_mask: PAGE_IS_PRESENT,
    };
    // SAFETY: `arg` (96 bytes, matching the ioctl number) and the `regions`
    // array it points to are live locals sized as declared in `vec_len`.
    let ret = unsafe {
        libc::ioctl(
            pagemap.as_raw_fd(),
            PAGEMAP_SCAN,
            &mut arg as *mut PmScanArg,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// `PTRACE_PEEKSIGINFO` of up to one queued signal of a stopped tracee.
pub fn ptrace_peeksiginfo(pid: Pid) -> io::Result<usize> {
    #[repr(C)]
    struct PeekSiginfoArgs {
        off: u64,
        flags: u32,
        nr: i32,
    }
    const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
    let args = PeekSiginfoArgs {
        off: 0,
        flags: 0,
        nr: 1,
    };
    let mut buffer = [0u8; 128];
    // SAFETY: the kernel reads `args` and writes at most `nr` (1) siginfo of
    // 128 bytes into the live local buffer.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_PEEKSIGINFO,
            pid.as_raw(),
            &args as *const PeekSiginfoArgs,
            buffer.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
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

/// `prctl(PR_SET_PDEATHSIG, sig)`: used for helpers that must not outlive
/// their worker.
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: integer-only prctl.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            signal as libc::c_ulong,
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

/// Takes ownership of a descriptor number given on the command line
/// (`criu swrk FD`), after checking that it is open.
pub fn adopt_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this
    // process by its parent for our exclusive use; nothing else in the
    // process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Closes an inherited descriptor number in a forked child that will leave
/// through `std::process::exit` without dropping the descriptor's owner.
pub fn close_in_child(raw: RawFd) {
    // SAFETY: called only in a forked worker, which never touches the
    // parent's owner of `raw` again (it exits without unwinding past it), so
    // no double close or use-after-close can happen.
    unsafe {
        libc::close(raw);
    }
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` of a stopped tracee: the size the
/// kernel filled in.
pub fn ptrace_rseq_configuration(pid: Pid) -> io::Result<usize> {
    const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
    // struct ptrace_rseq_configuration: u64 rseq_abi_pointer; u32 rseq_abi_size;
    // u32 signature; u32 flags; u32 pad.
    let mut config = [0u8; 24];
    // SAFETY: the kernel writes at most `addr` (24) bytes into the live
    // local buffer.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            pid.as_raw(),
            config.len(),
            config.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// `PTRACE_SECCOMP_GET_FILTER` of filter 0 of a stopped tracee, with no
/// buffer (only the instruction count is asked for).
pub fn ptrace_seccomp_filter_len(pid: Pid) -> io::Result<usize> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    // SAFETY: a NULL data pointer asks for the filter length only; nothing
    // is written.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            pid.as_raw(),
            0usize,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}
