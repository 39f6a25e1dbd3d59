//! NETLINK_SOCK_DIAG for AF_UNIX (and AF_INET/AF_INET6 through inet_diag): every unix socket of our network namespace
//! with its name, inode/device of the bound file, peer inode, pending
//! connections, queue lengths, shutdown state and owner (what `ss -x` shows).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_UID: u32 = 0x40;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const UNIX_DIAG_UID: u16 = 7;

/// One unix socket as sock_diag reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSocketDiag {
    /// Socket inode.
    pub ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub kind: u8,
    /// TCP_* state (1 established, 7 close, 10 listen).
    pub state: u8,
    /// Bound name (abstract names start with a NUL byte).
    pub name: Option<Vec<u8>>,
    /// Inode and device of the bound socket file.
    pub vfs: Option<(u32, u32)>,
    /// Peer socket inode.
    pub peer: Option<u32>,
    /// Inodes of connections waiting in accept() (listening sockets).
    pub icons: Vec<u32>,
    /// (receive queue, write queue): for listeners (pending, backlog), else bytes.
    pub rqlen: Option<(u32, u32)>,
    /// Shutdown bits (1 read, 2 write).
    pub shutdown: Option<u8>,
    /// Owner uid.
    pub uid: Option<u32>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
        .unwrap_or(0)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes(s.try_into().unwrap_or([0; 2])))
        .unwrap_or(0)
}

fn parse_diag(msg: &[u8]) -> Option<UnixSocketDiag> {
    // struct unix_diag_msg: family, type, state, pad, ino, cookie[2].
    if msg.len() < 16 {
        return None;
    }
    let mut d = UnixSocketDiag {
        kind: msg[1],
        state: msg[2],
        ino: u32_at(msg, 4),
        ..Default::default()
    };
    let mut off = 16;
    while off + 4 <= msg.len() {
        let len = u16_at(msg, off) as usize;
        let kind = u16_at(msg, off + 2);
        if len < 4 || off + len > msg.len() {
            break;
        }
        let data = &msg[off + 4..off + len];
        match kind {
            UNIX_DIAG_NAME => d.name = Some(data.to_vec()),
            UNIX_DIAG_VFS => d.vfs = Some((u32_at(data, 0), u32_at(data, 4))),
            UNIX_DIAG_PEER => d.peer = Some(u32_at(data, 0)),
            UNIX_DIAG_ICONS => d.icons = data.chunks_exact(4).map(|c| u32_at(c, 0)).collect(),
            UNIX_DIAG_RQLEN => d.rqlen = Some((u32_at(data, 0), u32_at(data, 4))),
            UNIX_DIAG_SHUTDOWN => d.shutdown = data.first().copied(),
            UNIX_DIAG_UID => d.uid = Some(u32_at(data, 0)),
            _ => {}
        }
        off += len.div_ceil(4) * 4;
    }
    Some(d)
}

/// Sends one SOCK_DIAG_BY_FAMILY dump request (`request` is the family's
/// request structure, without the netlink header) and returns the payload of
/// every answer message.
pub fn sock_diag_dump(request: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: plain socket(2) call; the fd is owned right below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = vec![0u8; 16 + request.len()];
    let total = req.len() as u32;
    req[0..4].copy_from_slice(&total.to_le_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_le_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_le_bytes());
    req[8..12].copy_from_slice(&1u32.to_le_bytes());
    req[16..].copy_from_slice(request);
    // SAFETY: req is a valid readable buffer of req.len() bytes.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            req.as_ptr() as *const libc::c_void,
            req.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        if n == 0 {
            return Ok(out);
        }
        let mut off = 0;
        while off + 16 <= n {
            let len = u32_at(&buf, off) as usize;
            let kind = u16_at(&buf, off + 4);
            if len < 16 || off + len > n {
                break;
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = u32_at(&buf, off + 16) as i32;
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                _ => out.push(buf[off + 16..off + len].to_vec()),
            }
            off += len.div_ceil(4) * 4;
        }
    }
}

/// Lists every unix socket of the caller's network namespace.
pub fn unix_sockets() -> io::Result<Vec<UnixSocketDiag>> {
    let mut req = [0u8; 24];
    req[0] = libc::AF_UNIX as u8;
    req[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let show = UDIAG_SHOW_NAME
        | UDIAG_SHOW_VFS
        | UDIAG_SHOW_PEER
        | UDIAG_SHOW_ICONS
        | UDIAG_SHOW_RQLEN
        | UDIAG_SHOW_UID;
    req[12..16].copy_from_slice(&show.to_le_bytes());
    Ok(sock_diag_dump(&req)?
        .iter()
        .filter_map(|m| parse_diag(m))
        .collect())
}

/// One inet socket as inet_diag reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InetSocketDiag {
    /// Socket inode.
    pub ino: u32,
    /// TCP_* state.
    pub state: u8,
    /// Source port (host order).
    pub src_port: u16,
    /// Destination port (host order).
    pub dst_port: u16,
    /// Source address, 4 words in network byte order as stored in memory.
    pub src_addr: [u32; 4],
    /// Destination address, same encoding.
    pub dst_addr: [u32; 4],
    /// Receive queue (listeners: pending connections).
    pub rqueue: u32,
    /// Write queue (listeners: backlog).
    pub wqueue: u32,
    /// Shutdown bits.
    pub shutdown: Option<u8>,
}

/// Lists the inet sockets of one family and protocol in the given states
/// (a TCP_* bit mask).
pub fn inet_sockets(family: u8, protocol: u8, states: u32) -> io::Result<Vec<InetSocketDiag>> {
    const INET_DIAG_SHUTDOWN: u16 = 8;
    let mut req = [0u8; 56];
    req[0] = family;
    req[1] = protocol;
    req[4..8].copy_from_slice(&states.to_le_bytes());
    let mut out = Vec::new();
    for m in sock_diag_dump(&req)? {
        if m.len() < 72 {
            continue;
        }
        let word = |off: usize| u32::from_le_bytes(m[off..off + 4].try_into().unwrap_or([0; 4]));
        let mut d = InetSocketDiag {
            state: m[1],
            src_port: u16::from_be_bytes([m[4], m[5]]),
            dst_port: u16::from_be_bytes([m[6], m[7]]),
            src_addr: [word(8), word(12), word(16), word(20)],
            dst_addr: [word(24), word(28), word(32), word(36)],
            rqueue: word(56),
            wqueue: word(60),
            ino: word(68),
            shutdown: None,
        };
        let mut off = 72;
        while off + 4 <= m.len() {
            let len = u16_at(&m, off) as usize;
            let kind = u16_at(&m, off + 2);
            if len < 4 || off + len > m.len() {
                break;
            }
            if kind == INET_DIAG_SHUTDOWN {
                d.shutdown = m.get(off + 4).copied();
            }
            off += len.div_ceil(4) * 4;
        }
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;

    #[test]
    fn socketpair_peers_point_at_each_other() {
        let (a, b) = UnixStream::pair().unwrap();
        let ino_a = std::fs::File::from(OwnedFd::from(a.try_clone().unwrap()))
            .metadata()
            .unwrap()
            .ino() as u32;
        let ino_b = std::fs::File::from(OwnedFd::from(b.try_clone().unwrap()))
            .metadata()
            .unwrap()
            .ino() as u32;
        std::io::Write::write_all(&mut &a, b"12345").unwrap();
        let all = unix_sockets().unwrap();
        let da = all.iter().find(|d| d.ino == ino_a).unwrap();
        let db = all.iter().find(|d| d.ino == ino_b).unwrap();
        assert_eq!(da.peer, Some(ino_b));
        assert_eq!(db.peer, Some(ino_a));
        assert_eq!(da.kind, libc::SOCK_STREAM as u8);
        assert_eq!(da.state, 1);
        assert_eq!(db.rqlen.map(|r| r.0), Some(5));
        assert_eq!(da.name, None);
    }
}
