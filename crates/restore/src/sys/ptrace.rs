//! ptrace requests nix does not wrap.

use nix::errno::Errno;
use nix::unistd::Pid;

const NT_X86_XSTATE: libc::c_int = 0x202;

/// Reads the XSAVE area of a stopped thread into `buf` (sized by the caller,
/// e.g. 4096 bytes); returns the length the kernel filled.
pub(crate) fn get_xstate(tid: Pid, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the iovec points at `buf`, which is valid for `buf.len()` bytes
    // for the whole call; the kernel shrinks iov_len to what it wrote.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid.as_raw(),
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(ret)?;
    Ok(iov.iov_len)
}

/// Writes the XSAVE area of a stopped thread.
pub(crate) fn set_xstate(tid: Pid, data: &[u8]) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: the kernel only reads `data.len()` bytes from the iovec.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid.as_raw(),
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(ret).map(drop)
}

/// Sets the blocked signal mask of a stopped thread.
pub(crate) fn set_sigmask(tid: Pid, mask: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads exactly 8 bytes (the size argument) from `mask`.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGMASK,
            tid.as_raw(),
            8usize,
            &mask as *const u64,
        )
    };
    Errno::result(ret).map(drop)
}

/// The rseq registration of a stopped thread: (pointer, size, signature).
pub(crate) fn rseq_config(tid: Pid) -> Result<(u64, u32, u32), Errno> {
    let mut conf = libc::ptrace_rseq_configuration {
        rseq_abi_pointer: 0,
        rseq_abi_size: 0,
        signature: 0,
        flags: 0,
        pad: 0,
    };
    // SAFETY: the kernel writes at most the given size into `conf`.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_RSEQ_CONFIGURATION,
            tid.as_raw(),
            std::mem::size_of::<libc::ptrace_rseq_configuration>(),
            &mut conf as *mut libc::ptrace_rseq_configuration,
        )
    };
    Errno::result(ret)?;
    Ok((conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature))
}
