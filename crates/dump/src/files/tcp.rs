//! Established TCP connections (`tcp_established`), as CRIU's sk-tcp.c and
//! libsoccr dump them: the socket is put in TCP_REPAIR mode through our copy
//! of it, its sequence numbers, options, window and both queues go to
//! `tcp-stream-<ino>.img`, and it stays in repair mode until the dump ends:
//! a killed tree then closes it silently (no FIN, no RST), a resumed one gets
//! repair mode switched off again. No network lock is taken (there is no
//! iptables/nft here): the inventory records the lock method as "skip".

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_proto::TcpStreamEntry;

use crate::sys;

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const SIOCINQ: u64 = 0x541b;
const SIOCOUTQ: u64 = 0x5411;
const SIOCOUTQNSD: u64 = 0x894b;
const TCPI_OPT_TIMESTAMPS: u32 = 1;
const TCPI_OPT_WSCALE: u32 = 4;

/// TCP states (as bit positions).
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_FIN_WAIT1: u8 = 4;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_CLOSE: u8 = 7;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

/// A connection in repair mode, held until the dump ends.
#[derive(Debug)]
pub struct RepairedSocket {
    fd: OwnedFd,
    reuseaddr: bool,
}

impl RepairedSocket {
    /// Leaves repair mode (the task keeps running) and restores SO_REUSEADDR,
    /// which leaving repair mode may change.
    pub fn release(self) {
        let fd = self.fd.as_fd();
        if let Err(e) = sys::setsockopt_int(fd, libc::SOL_TCP, TCP_REPAIR, 0) {
            tracing::warn!("Cannot turn TCP repair mode off on a dumped connection: {e}");
        }
        let _ = sys::setsockopt_int(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            i32::from(self.reuseaddr),
        );
    }
}

/// What the dump of one connection produced.
#[derive(Debug)]
pub struct TcpDump {
    /// The socket state libsoccr read (replaces the inet_diag one).
    pub state: u8,
    /// tcp-stream entry.
    pub entry: TcpStreamEntry,
    /// Receive then send queue bytes.
    pub queues: (Vec<u8>, Vec<u8>),
    /// The socket, in repair mode.
    pub repaired: RepairedSocket,
}

fn int(fd: BorrowedFd<'_>, name: i32) -> std::io::Result<i32> {
    sys::getsockopt_int(fd, libc::SOL_TCP, name)
}

fn ioctl_int(fd: BorrowedFd<'_>, request: u64) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    sys::ioctl_read(fd, request, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn queue(fd: BorrowedFd<'_>, which: i32, len: u32) -> std::io::Result<(u32, Vec<u8>)> {
    sys::setsockopt_int(fd, libc::SOL_TCP, TCP_REPAIR_QUEUE, which)?;
    let seq = int(fd, TCP_QUEUE_SEQ)? as u32;
    if len == 0 {
        return Ok((seq, Vec::new()));
    }
    // One byte more than expected, to be sure there are exactly len bytes.
    let mut buf = vec![0u8; len as usize + 1];
    let n = sys::recv_peek(fd, &mut buf, 0)?;
    if n != len as usize {
        return Err(std::io::Error::other(format!(
            "queue {which} holds {n} bytes, expected {len}"
        )));
    }
    buf.truncate(n);
    Ok((seq, buf))
}

/// Puts the connection behind `file` in repair mode and reads its state.
pub fn dump_connection(file: &OwnedFd, reuseaddr: bool) -> std::io::Result<TcpDump> {
    let fd = file.try_clone()?;
    sys::setsockopt_int(fd.as_fd(), libc::SOL_TCP, TCP_REPAIR, 1)?;
    let repaired = RepairedSocket { fd, reuseaddr };
    match save(repaired.fd.as_fd()) {
        Ok((state, entry, queues)) => Ok(TcpDump {
            state,
            entry,
            queues,
            repaired,
        }),
        Err(e) => {
            repaired.release();
            Err(e)
        }
    }
}

/// libsoccr_save.
/// What libsoccr_save returns: state, stream entry, (receive, send) queues.
type Saved = (u8, TcpStreamEntry, (Vec<u8>, Vec<u8>));

fn save(fd: BorrowedFd<'_>) -> std::io::Result<Saved> {
    let mut info = [0u8; 8];
    sys::getsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_INFO, &mut info)?;
    let state = info[0];
    let known = [
        TCP_ESTABLISHED,
        TCP_FIN_WAIT1,
        TCP_FIN_WAIT2,
        TCP_LAST_ACK,
        TCP_CLOSE_WAIT,
        TCP_CLOSING,
        TCP_CLOSE,
        TCP_SYN_SENT,
    ];
    if !known.contains(&state) {
        return Err(std::io::Error::other(format!("unknown TCP state {state}")));
    }
    let mut outq_len = ioctl_int(fd, SIOCOUTQ)?;
    let mut unsq_len = ioctl_int(fd, SIOCOUTQNSD)?;
    if state == TCP_CLOSE {
        outq_len = 0;
        unsq_len = 0;
    }
    // The FIN in the send queue is not data.
    let bit = 1u32 << state;
    let first_fin = (1 << TCP_FIN_WAIT1) | (1 << TCP_FIN_WAIT2) | (1 << TCP_CLOSING);
    let second_fin = (1 << TCP_LAST_ACK) | (1 << TCP_CLOSE);
    if bit & (first_fin | second_fin) != 0 {
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    let inq_len = ioctl_int(fd, SIOCINQ)?;
    let mss_clamp = int(fd, libc::TCP_MAXSEG)? as u32;
    let opt_mask = u32::from(info[5]);
    let mut entry = TcpStreamEntry {
        inq_len,
        outq_len,
        unsq_len: Some(unsq_len),
        mss_clamp,
        opt_mask,
        ..TcpStreamEntry::default()
    };
    if opt_mask & TCPI_OPT_WSCALE != 0 {
        entry.snd_wscale = u32::from(info[6] & 0xf);
        entry.rcv_wscale = Some(u32::from(info[6] >> 4));
    }
    if opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        entry.timestamp = Some(int(fd, TCP_TIMESTAMP)? as u32);
    }
    let mut window = [0u8; 20];
    match sys::getsockopt_bytes(fd, libc::SOL_TCP, TCP_REPAIR_WINDOW, &mut window) {
        Ok(_) => {
            let w = |i: usize| {
                u32::from_le_bytes(window[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]))
            };
            entry.snd_wl1 = Some(w(0));
            entry.snd_wnd = Some(w(1));
            entry.max_window = Some(w(2));
            entry.rcv_wnd = Some(w(3));
            entry.rcv_wup = Some(w(4));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
        Err(e) => return Err(e),
    }
    let (inq_seq, inq) = queue(fd, TCP_RECV_QUEUE, inq_len)?;
    let (outq_seq, outq) = queue(fd, TCP_SEND_QUEUE, outq_len)?;
    entry.inq_seq = inq_seq;
    entry.outq_seq = outq_seq;
    Ok((state, entry, (inq, outq)))
}
