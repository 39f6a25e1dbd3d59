//! TCP and UDP sockets (`inet_sk_entry`) as CRIU's sk-inet.c writes them,
//! for what needs no TCP repair: listening and closed TCP sockets, UDP and
//! UDP-lite sockets (connected or not). Sockets inet_diag lists get the
//! network namespace id; unbound ones (not listed) are described from the
//! socket itself, as CRIU's `gen_uncon_sk` does. Established TCP connections,
//! in-flight connections, raw and ICMP sockets are refused.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use criu_proto::{FdTypes, FileEntry, InetSkEntry, IpOptsEntry, TcpOptsEntry};

use super::{FileError, FileParams, FileTable};
use crate::sys::{self, unix_diag::InetSocketDiag};

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;
/// The TCP states CRIU asks inet_diag for (not CLOSE).
const TCP_DIAG_STATES: u32 =
    (1 << 10) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11) | (1 << 2);

/// inet_diag results per (family, protocol), loaded on first use.
#[derive(Debug, Default)]
pub struct InetState {
    diag: HashMap<(i32, i32), HashMap<u32, InetSocketDiag>>,
}

fn opt(fd: BorrowedFd<'_>, level: i32, name: i32) -> std::io::Result<i32> {
    sys::getsockopt_int(fd, level, name)
}

/// (port, address words) from a sockaddr the kernel filled; words hold the
/// address bytes as they are in memory (network order), like CRIU's memcpy.
fn parse_sockaddr(buf: &[u8], family: i32) -> (u32, [u32; 4]) {
    let port = u32::from(u16::from_be_bytes([buf[2], buf[3]]));
    let word = |off: usize| u32::from_le_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4]));
    if family == libc::AF_INET {
        (port, [word(4), 0, 0, 0])
    } else {
        (port, [word(8), word(12), word(16), word(20)])
    }
}

fn sockname(
    fd: BorrowedFd<'_>,
    family: i32,
    peer: bool,
) -> std::io::Result<Option<(u32, [u32; 4])>> {
    let mut buf = [0u8; 28];
    match sys::sockaddr_of(fd, peer, &mut buf) {
        Ok(()) => Ok(Some(parse_sockaddr(&buf, family))),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// POLLRDHUP (nix exposes it only on some targets).
fn pollrdhup() -> nix::poll::PollFlags {
    nix::poll::PollFlags::from_bits_retain(libc::POLLRDHUP)
}

impl FileTable {
    fn inet_diag(
        &mut self,
        family: i32,
        proto: i32,
    ) -> std::io::Result<&HashMap<u32, InetSocketDiag>> {
        match self.inet.diag.entry((family, proto)) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let states = if proto == libc::IPPROTO_TCP {
                    TCP_DIAG_STATES
                } else {
                    u32::MAX
                };
                let list = sys::unix_diag::inet_sockets(family as u8, proto as u8, states)?;
                Ok(e.insert(list.into_iter().map(|d| (d.ino, d)).collect()))
            }
        }
    }

    pub(super) fn dump_inet(
        &mut self,
        p: &FileParams,
        file: &OwnedFd,
        family: i32,
    ) -> Result<(FdTypes, u32), FileError> {
        let fd = file.as_fd();
        let io = |what: &str, e: std::io::Error| FileError::io(p.pid, p.fd, what.to_string(), e);
        let proto =
            opt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).map_err(|e| io("SO_PROTOCOL", e))?;
        let kind = opt(fd, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| io("SO_TYPE", e))?;
        let fam = if family == libc::AF_INET {
            "AF_INET"
        } else {
            "AF_INET6"
        };
        if kind == libc::SOCK_RAW {
            return Err(Self::unsupported(p, format!("{fam} raw socket")));
        }
        if ![libc::IPPROTO_TCP, libc::IPPROTO_UDP, libc::IPPROTO_UDPLITE].contains(&proto) {
            return Err(Self::unsupported(
                p,
                format!("{fam} socket of protocol {proto}"),
            ));
        }
        let ino = p.stat.ino() as u32;
        let found = self
            .inet_diag(family, proto)
            .map_err(|e| io("inet_diag", e))?
            .get(&ino)
            .cloned();
        let (desc, ns_id) = match found {
            Some(d) => (d, self.net_ns_id),
            None => (self.unconnected(p, fd, family, proto)?, None),
        };
        if (proto == libc::IPPROTO_UDP || proto == libc::IPPROTO_UDPLITE)
            && opt(fd, libc::SOL_UDP, libc::UDP_CORK).map_err(|e| io("UDP_CORK", e))? != 0
        {
            return Err(Self::unsupported(
                p,
                format!("corked {fam} datagram socket {ino}"),
            ));
        }
        if kind == libc::SOCK_STREAM {
            match desc.state {
                TCP_LISTEN if desc.rqueue != 0 => {
                    return Err(Self::unsupported(
                        p,
                        format!("{fam} listening socket {ino} with in-flight connections"),
                    ))
                }
                TCP_LISTEN | TCP_CLOSE => {}
                TCP_ESTABLISHED..=9 | 11 if !self.tcp_established => {
                    return Err(Self::unsupported(
                        p,
                        format!("connected TCP socket {ino} (consider --tcp-established)"),
                    ))
                }
                TCP_ESTABLISHED..=9 | 11 => {}
                other => {
                    return Err(Self::unsupported(
                        p,
                        format!("{fam} socket {ino} in state {other}"),
                    ))
                }
            }
        } else if kind != libc::SOCK_DGRAM {
            return Err(Self::unsupported(p, format!("{fam} socket of type {kind}")));
        }
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if !new {
            return Ok((FdTypes::Inetsk, id));
        }
        let words = if family == libc::AF_INET { 1 } else { 4 };
        let opts = super::unix::socket_opts(fd, false).map_err(|e| io("socket options", e))?;
        let mut ip_opts = IpOptsEntry::default();
        if family == libc::AF_INET6 {
            let freebind =
                opt(fd, libc::SOL_IPV6, libc::IPV6_FREEBIND).map_err(|e| io("IPV6_FREEBIND", e))?;
            let pktinfo = opt(fd, libc::SOL_IPV6, libc::IPV6_RECVPKTINFO)
                .map_err(|e| io("IPV6_RECVPKTINFO", e))?;
            ip_opts.freebind = (freebind != 0).then_some(true);
            ip_opts.pktinfo = (pktinfo != 0).then_some(true);
        } else {
            let freebind =
                opt(fd, libc::SOL_IP, libc::IP_FREEBIND).map_err(|e| io("IP_FREEBIND", e))?;
            let pktinfo =
                opt(fd, libc::SOL_IP, libc::IP_PKTINFO).map_err(|e| io("IP_PKTINFO", e))?;
            let tos = opt(fd, libc::SOL_IP, libc::IP_TOS).map_err(|e| io("IP_TOS", e))?;
            let ttl = opt(fd, libc::SOL_IP, libc::IP_TTL).map_err(|e| io("IP_TTL", e))?;
            ip_opts.freebind = (freebind != 0).then_some(true);
            ip_opts.pktinfo = (pktinfo != 0).then_some(true);
            ip_opts.tos = (tos != 0).then_some(tos as u32);
            ip_opts.ttl = (ttl != 0).then_some(ttl as u32);
        }
        let mut tcp_opts = TcpOptsEntry::default();
        if proto == libc::IPPROTO_TCP {
            let get = |name: i32| opt(fd, libc::SOL_TCP, name).map_err(|e| io("TCP options", e));
            let (nodelay, cork) = (get(libc::TCP_NODELAY)?, get(libc::TCP_CORK)?);
            let (cnt, idle, intvl) = (
                get(libc::TCP_KEEPCNT)?,
                get(libc::TCP_KEEPIDLE)?,
                get(libc::TCP_KEEPINTVL)?,
            );
            tcp_opts.nodelay = (nodelay != 0).then_some(true);
            tcp_opts.cork = (cork != 0).then_some(true);
            tcp_opts.keepcnt = (cnt != 0).then_some(cnt as u32);
            tcp_opts.keepidle = (idle != 0).then_some(idle as u32);
            tcp_opts.keepintvl = (intvl != 0).then_some(intvl as u32);
        }
        let v6only = if family == libc::AF_INET6 {
            Some(opt(fd, libc::SOL_IPV6, libc::IPV6_V6ONLY).map_err(|e| io("IPV6_V6ONLY", e))? != 0)
        } else {
            None
        };
        if family == libc::AF_INET6 && desc.src_port != 0 {
            let first = desc.src_addr[0].to_le_bytes();
            let link_local = first[0] == 0xfe && first[1] & 0xc0 == 0x80;
            let mc_link_local = first[0] == 0xff && first[1] & 0x0f == 0x02;
            if link_local || mc_link_local {
                return Err(Self::unsupported(
                    p,
                    format!("IPv6 socket {ino} bound to a link-local address"),
                ));
            }
        }
        let mut state = desc.state;
        if proto == libc::IPPROTO_TCP && desc.dst_port != 0 {
            let dumped = super::tcp::dump_connection(file, opts.reuseaddr.unwrap_or(false))
                .map_err(|e| io(&format!("dumping TCP connection {ino} in repair mode"), e))?;
            state = dumped.state;
            self.tcp_streams
                .push((ino, dumped.entry, dumped.queues.0, dumped.queues.1));
            self.repaired.push(dumped.repaired);
        }
        self.entries.push(FileEntry {
            r#type: FdTypes::Inetsk as i32,
            id,
            isk: Some(InetSkEntry {
                id,
                ino,
                family: family as u32,
                r#type: kind as u32,
                proto: proto as u32,
                state: u32::from(state),
                src_port: u32::from(desc.src_port),
                dst_port: u32::from(desc.dst_port),
                flags: p.info.flags,
                backlog: desc.wqueue,
                src_addr: desc.src_addr[..words].to_vec(),
                dst_addr: desc.dst_addr[..words].to_vec(),
                fown: p.fown,
                opts,
                v6only,
                ip_opts: Some(ip_opts),
                ifname: None,
                ns_id,
                shutdown: desc.shutdown.filter(|s| *s != 0).map(i32::from),
                tcp_opts: Some(tcp_opts),
            }),
            ..Default::default()
        });
        Ok((FdTypes::Inetsk, id))
    }

    /// CRIU's `gen_uncon_sk`: a socket inet_diag does not list.
    fn unconnected(
        &self,
        p: &FileParams,
        fd: BorrowedFd<'_>,
        family: i32,
        proto: i32,
    ) -> Result<InetSocketDiag, FileError> {
        let io = |what: &str, e: std::io::Error| FileError::io(p.pid, p.fd, what.to_string(), e);
        let mut d = InetSocketDiag {
            ino: p.stat.ino() as u32,
            state: TCP_CLOSE,
            ..Default::default()
        };
        if let Some((port, addr)) = sockname(fd, family, true).map_err(|e| io("getpeername", e))? {
            d.dst_port = port as u16;
            d.dst_addr = addr;
        }
        if let Some((port, addr)) = sockname(fd, family, false).map_err(|e| io("getsockname", e))? {
            d.src_port = port as u16;
            d.src_addr = addr;
        }
        if proto == libc::IPPROTO_TCP {
            let mut info = [0u8; 8];
            sys::getsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_INFO, &mut info)
                .map_err(|e| io("TCP_INFO", e))?;
            if info[0] != TCP_CLOSE {
                return Err(Self::unsupported(
                    p,
                    format!(
                        "TCP socket {} in state {} not listed by inet_diag",
                        d.ino, info[0]
                    ),
                ));
            }
            d.wqueue = u32::from(info[4]);
            let mut pfd = [nix::poll::PollFd::new(
                fd,
                pollrdhup() | nix::poll::PollFlags::POLLHUP,
            )];
            let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO)
                .map_err(|e| io("poll", e.into()))?;
            if n != 1 {
                return Err(Self::unsupported(
                    p,
                    format!("TCP socket {} that does not poll as closed", d.ino),
                ));
            }
            let revents = pfd[0].revents().unwrap_or(nix::poll::PollFlags::empty());
            let mut shutdown = 0u8;
            if revents.contains(nix::poll::PollFlags::POLLHUP) && revents.contains(pollrdhup()) {
                shutdown |= 1;
            }
            d.shutdown = Some(shutdown);
        }
        Ok(d)
    }
}
