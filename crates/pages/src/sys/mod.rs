//! The syscall-facing layer: the PAGEMAP_SCAN ioctl, process_vm_readv, and the two probes
//! (zero-page PFN, shmem device) that need raw memory mappings. Everything above this module is
//! safe Rust.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `PAGEMAP_SCAN` = `_IOWR('f', 16, struct pm_scan_arg)` (linux/fs.h).
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;

/// `struct pm_scan_arg` from linux/fs.h (96 bytes, every field a u64).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PmScanArg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// `struct page_region` from linux/fs.h: `[start, end)` with the categories of every page in it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// Runs one PAGEMAP_SCAN over `[start, end)` of the process whose pagemap is `pagemap`.
/// Returns the number of regions written into `regions` and the address where the walk stopped
/// (`end` when the whole range was walked).
pub(crate) fn pagemap_scan(
    pagemap: BorrowedFd<'_>,
    template: &PmScanArg,
    start: u64,
    end: u64,
    regions: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        start,
        end,
        walk_end: 0,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        ..*template
    };
    // SAFETY: `arg` is a properly sized and initialised pm_scan_arg; `vec`/`vec_len` describe
    // `regions`, a live, exclusively borrowed buffer of `page_region`s the kernel may fill. The
    // kernel writes back only `walk_end` in `arg`.
    let ret = unsafe {
        libc::ioctl(
            pagemap.as_raw_fd(),
            PAGEMAP_SCAN as _,
            &mut arg as *mut PmScanArg,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ret as usize, arg.walk_end))
}

/// One remote segment for [`process_vm_readv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemoteSegment {
    pub addr: u64,
    pub len: usize,
}

/// The kernel's per-call iovec limit (UIO_MAXIOV).
pub(crate) const IOV_MAX: usize = 1024;

/// process_vm_readv of up to [`IOV_MAX`] remote segments into the front of `local`, filled
/// sequentially. Returns the number of bytes read, which stops short at the first remote page
/// that cannot be read (EFAULT is returned only when nothing at all could be read).
pub(crate) fn process_vm_readv(
    pid: i32,
    local: &mut [u8],
    remote: &[RemoteSegment],
) -> io::Result<usize> {
    let total: usize = remote.iter().map(|seg| seg.len).sum();
    assert!(
        total <= local.len() && remote.len() <= IOV_MAX,
        "remote segments exceed the local buffer"
    );
    let local_iov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: total,
    };
    let remote_iov: Vec<libc::iovec> = remote
        .iter()
        .map(|seg| libc::iovec {
            iov_base: seg.addr as usize as *mut libc::c_void,
            iov_len: seg.len,
        })
        .collect();
    // SAFETY: the local iovec covers `total` bytes of `local`, which is exclusively borrowed and
    // at least that long (checked above). Remote iovecs are addresses in the other process and
    // are never dereferenced here; the kernel validates them.
    let ret = unsafe {
        libc::process_vm_readv(
            pid,
            &local_iov,
            1,
            remote_iov.as_ptr(),
            remote_iov.len() as libc::c_ulong,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// An anonymous private mapping owned by this process, unmapped on drop.
struct AnonMapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl AnonMapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address touches no existing memory.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { addr, len })
    }
}

impl Drop for AnonMapping {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` describe a mapping created by `new` and never handed out.
        unsafe {
            libc::munmap(self.addr, self.len);
        }
    }
}

/// Maps a fresh anonymous page, reads it so the kernel installs the shared zero page there, and
/// returns the mapping's address (the caller reads its pagemap entry while `hold` keeps it alive).
pub(crate) fn with_zero_page_mapped<T>(f: impl FnOnce(u64) -> io::Result<T>) -> io::Result<T> {
    let page = AnonMapping::new(4096)?;
    // SAFETY: `page.addr` is a readable, page-sized mapping we own; a volatile read faults in the
    // zero page and cannot be optimised away.
    let _ = unsafe { std::ptr::read_volatile(page.addr.cast::<u8>()) };
    f(page.addr as u64)
}

/// Creates a memfd, the way to learn the device number of the kernel-internal shmem mount that
/// backs MAP_SHARED|MAP_ANONYMOUS memory and memfds.
pub(crate) fn memfd_create(name: &std::ffi::CStr) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the result is a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `lseek(fd, offset, SEEK_DATA or SEEK_HOLE)`; `Ok(None)` for ENXIO (no more data / offset
/// past the end).
pub(crate) fn seek_data_or_hole(
    fd: BorrowedFd<'_>,
    offset: u64,
    data: bool,
) -> io::Result<Option<u64>> {
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    // SAFETY: lseek only moves the file offset of a descriptor we borrow; no memory is passed.
    let ret = unsafe { libc::lseek(fd.as_raw_fd(), offset as libc::off_t, whence) };
    if ret < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(error);
    }
    Ok(Some(ret as u64))
}
