//! Moving file descriptors from the tracer into a task being restored.
//!
//! Before the blank root is cloned, the tracer makes a SOCK_SEQPACKET
//! socketpair; every blank task inherits the child end at the same number.
//! The tracer sends a batch of fds with SCM_RIGHTS on its end and the task
//! receives them with a remote `recvmsg` into its scratch memory.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};

use crate::remote::RemoteError;
use crate::task::Proc;

/// At most this many fds go in one SCM_RIGHTS message (the kernel's SCM_MAX_FD).
const MAX_FDS_PER_MESSAGE: usize = 253;

/// The fd transport could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socketpair could not be made.
    #[error("creating the fd transport socketpair: {0}")]
    Create(nix::errno::Errno),
    /// Sending fds failed.
    #[error("sending {count} fds to pid {pid}: {errno}")]
    Send {
        /// The receiving task.
        pid: i32,
        /// How many fds.
        count: usize,
        /// The error.
        errno: nix::errno::Errno,
    },
    /// The task received something else than the fds sent.
    #[error("pid {pid} received {got} fds instead of {expected} (message flags {flags:#x})")]
    Mismatch {
        /// The task.
        pid: i32,
        /// Fds sent.
        expected: usize,
        /// Fds received.
        got: usize,
        /// msg_flags of the remote recvmsg.
        flags: i32,
    },
    /// A remote call failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// The tracer's end of the transport and the number of the tasks' end.
#[derive(Debug)]
pub(crate) struct Transport {
    tracer_end: OwnedFd,
    child_end: OwnedFd,
}

impl Transport {
    /// Creates the socketpair (both ends close-on-exec in the tracer).
    pub fn new() -> Result<Transport, TransportError> {
        let (tracer_end, child_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(TransportError::Create)?;
        Ok(Transport {
            tracer_end,
            child_end,
        })
    }

    /// The number the blank tasks have their end at (inherited from the tracer).
    pub fn child_fd(&self) -> RawFd {
        self.child_end.as_raw_fd()
    }

    /// Sends `fds` to `proc` and returns their numbers there, in order. They
    /// arrive close-on-exec.
    pub fn install(&self, proc: &Proc, fds: &[BorrowedFd<'_>]) -> Result<Vec<i32>, TransportError> {
        let mut numbers = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(MAX_FDS_PER_MESSAGE) {
            let raw: Vec<RawFd> = chunk.iter().map(|fd| fd.as_raw_fd()).collect();
            let payload = [0u8; 1];
            let iov = [IoSlice::new(&payload)];
            let cmsg = [ControlMessage::ScmRights(&raw)];
            sendmsg::<()>(
                self.tracer_end.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::empty(),
                None,
            )
            .map_err(|errno| TransportError::Send {
                pid: proc.pid,
                count: raw.len(),
                errno,
            })?;
            numbers.extend(receive(proc, chunk.len())?);
        }
        Ok(numbers)
    }
}

/// Runs `recvmsg` in the task and parses the SCM_RIGHTS fds out of its scratch.
fn receive(proc: &Proc, count: usize) -> Result<Vec<i32>, TransportError> {
    const MSGHDR: u64 = 0;
    const IOVEC: u64 = 64;
    const DATA: u64 = 80;
    const CONTROL: u64 = 96;
    let control_len = 16 + (4 * count as u64).div_ceil(8) * 8;
    let base = proc.scratch;
    let mut msghdr = Vec::with_capacity(56);
    msghdr.extend_from_slice(&0u64.to_le_bytes()); // msg_name
    msghdr.extend_from_slice(&0u64.to_le_bytes()); // msg_namelen + padding
    msghdr.extend_from_slice(&(base + IOVEC).to_le_bytes()); // msg_iov
    msghdr.extend_from_slice(&1u64.to_le_bytes()); // msg_iovlen
    msghdr.extend_from_slice(&(base + CONTROL).to_le_bytes()); // msg_control
    msghdr.extend_from_slice(&control_len.to_le_bytes()); // msg_controllen
    msghdr.extend_from_slice(&0u64.to_le_bytes()); // msg_flags + padding
    let mut block = vec![0u8; (CONTROL + control_len) as usize];
    block[..56].copy_from_slice(&msghdr);
    block[IOVEC as usize..IOVEC as usize + 8].copy_from_slice(&(base + DATA).to_le_bytes());
    block[IOVEC as usize + 8..IOVEC as usize + 16].copy_from_slice(&1u64.to_le_bytes());
    proc.mem.write(base + MSGHDR, &block)?;
    let transport = proc
        .transport_fd
        .ok_or_else(|| RemoteError::UnexpectedStop {
            tid: proc.pid,
            call: "recvmsg".into(),
            what: "has already closed its fd transport".into(),
        })?;
    proc.call(
        &format!("recvmsg(transport fd {transport}) of {count} fds"),
        libc::SYS_recvmsg,
        &[
            transport as u64,
            base + MSGHDR,
            libc::MSG_CMSG_CLOEXEC as u64,
        ],
    )?;
    let back = proc.mem.read(base, block.len())?;
    let flags = i32::from_le_bytes(back[48..52].try_into().expect("4 bytes"));
    let cmsg_len = u64::from_le_bytes(
        back[CONTROL as usize..CONTROL as usize + 8]
            .try_into()
            .expect("8 bytes"),
    );
    let got = (cmsg_len.saturating_sub(16) / 4) as usize;
    if got != count || flags & libc::MSG_CTRUNC != 0 {
        return Err(TransportError::Mismatch {
            pid: proc.pid,
            expected: count,
            got,
            flags,
        });
    }
    let data = &back[CONTROL as usize + 16..];
    Ok((0..count)
        .map(|i| i32::from_le_bytes(data[4 * i..4 * i + 4].try_into().expect("4 bytes")))
        .collect())
}
