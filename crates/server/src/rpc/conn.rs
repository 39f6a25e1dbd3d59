//! One RPC connection: a SOCK_SEQPACKET socket carrying one protobuf message
//! per packet, no framing.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use criu_proto::{CriuReq, CriuResp};
use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, recv, sendmsg, sockopt::PeerCredentials, ControlMessage, MsgFlags,
};
use prost::Message;
use thiserror::Error;

/// Errors on the RPC socket.
#[derive(Debug, Error)]
pub enum ConnError {
    /// recv failed.
    #[error("Can't read request from fd {fd}: {errno}")]
    Recv {
        /// The socket.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// The packet is not a valid `criu_req`.
    #[error("Failed unpacking request ({len} bytes): {source}")]
    Decode {
        /// Packet size.
        len: usize,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
    /// send failed (client gone or not reading).
    #[error("Can't send response on fd {fd}: {errno}")]
    Send {
        /// The socket.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// SO_PEERCRED failed.
    #[error("Can't get peer credentials of fd {fd}: {errno}")]
    PeerCred {
        /// The socket.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
}

/// Credentials of the process at the other end (SO_PEERCRED: the connecting
/// process for `criu service`, the socketpair creator for `criu swrk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its pid.
    pub pid: i32,
    /// Its effective uid at connect time.
    pub uid: u32,
    /// Its effective gid at connect time.
    pub gid: u32,
}

/// The server end of an RPC connection.
#[derive(Debug)]
pub struct RpcSocket {
    fd: OwnedFd,
}

impl RpcSocket {
    /// Wraps a connected SOCK_SEQPACKET socket.
    pub fn new(fd: OwnedFd) -> RpcSocket {
        RpcSocket { fd }
    }

    /// The descriptor (for notify `dup`, fstat, exec_cmd close).
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Gives the descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Receives one request. `Ok(None)` means the client closed its end (a
    /// zero-length read, as in CRIU). The size is peeked first, so requests of
    /// any size are read whole.
    pub fn recv_request(&self) -> Result<Option<CriuReq>, ConnError> {
        let raw = self.fd.as_raw_fd();
        let len = loop {
            match recv(raw, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Ok(len) => break len,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(ConnError::Recv { fd: raw, errno }),
            }
        };
        let mut buffer = vec![0u8; len.max(1)];
        let got = loop {
            match recv(raw, &mut buffer, MsgFlags::MSG_TRUNC) {
                Ok(got) => break got,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(ConnError::Recv { fd: raw, errno }),
            }
        };
        if got == 0 {
            return Ok(None);
        }
        buffer.truncate(got.min(len.max(1)));
        CriuReq::decode(buffer.as_slice())
            .map(Some)
            .map_err(|source| ConnError::Decode { len: got, source })
    }

    /// Sends one response in a single packet.
    pub fn send(&self, resp: &CriuResp) -> Result<(), ConnError> {
        self.send_with_fd(resp, None)
    }

    /// Sends one response, with one descriptor attached (SCM_RIGHTS).
    pub fn send_with_fd(
        &self,
        resp: &CriuResp,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ConnError> {
        let raw = self.fd.as_raw_fd();
        let bytes = resp.encode_to_vec();
        let iov = [IoSlice::new(&bytes)];
        let fds: Vec<RawFd> = fd.map(|f| f.as_raw_fd()).into_iter().collect();
        let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(&fds)]
        };
        loop {
            match sendmsg::<()>(raw, &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(ConnError::Send { fd: raw, errno }),
            }
        }
    }

    /// SO_PEERCRED of the socket.
    pub fn peer(&self) -> Result<Peer, ConnError> {
        let creds = getsockopt(&self.fd, PeerCredentials).map_err(|errno| ConnError::PeerCred {
            fd: self.fd.as_raw_fd(),
            errno,
        })?;
        Ok(Peer {
            pid: creds.pid(),
            uid: creds.uid(),
            gid: creds.gid(),
        })
    }

    /// Inode of the socket (CRIU's `service_sk_ino`).
    pub fn inode(&self) -> Option<u64> {
        nix::sys::stat::fstat(&self.fd).ok().map(|st| st.st_ino)
    }
}
