//! One RPC connection: a `SOCK_SEQPACKET` socket carrying one `criu_req` or `criu_resp` per packet, with
//! no length prefix. The other end is a `criu service` worker (after `connect`) or a `criu swrk` child
//! (over a socketpair), which this module also starts and reaps.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use criu_proto::{CriuReq, CriuResp};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::socket::{
    connect, recv, recvmsg, sendmsg, setsockopt, socket, socketpair, sockopt, AddressFamily,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use prost::Message;
use thiserror::Error;

use crate::sys;

/// Failures of the transport itself (the socket, the swrk process, the bytes on the wire).
#[derive(Debug, Error)]
pub enum ConnectionError {
    /// `socket()` or `connect()` to the service failed.
    #[error("cannot connect to the CRIU service socket {path}: {errno}")]
    Connect {
        /// The service socket path.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// The socketpair for `criu swrk` could not be created.
    #[error("cannot create the socketpair for criu swrk: {0}")]
    Socketpair(Errno),
    /// `criu swrk` could not be started.
    #[error("cannot start {program} swrk: {source}")]
    Spawn {
        /// The criu binary.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting the receive timeout failed.
    #[error("cannot set a {timeout:?} receive timeout on RPC socket fd {fd}: {errno}")]
    Timeout {
        /// The socket.
        fd: RawFd,
        /// The timeout asked for.
        timeout: Duration,
        /// Why.
        errno: Errno,
    },
    /// Sending a request failed (typically EPIPE: the server is gone).
    #[error("cannot send a {len}-byte request on RPC socket fd {fd}: {errno}")]
    Send {
        /// The socket.
        fd: RawFd,
        /// Encoded request size.
        len: usize,
        /// Why.
        errno: Errno,
    },
    /// Receiving a response failed (EAGAIN here means the receive timeout expired).
    #[error("cannot receive a response on RPC socket fd {fd}: {errno}")]
    Recv {
        /// The socket.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// The packet is not a `criu_resp`.
    #[error("cannot decode the server's {len}-byte response: {source}")]
    Decode {
        /// Packet size.
        len: usize,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
}

/// A response and the descriptor that came with it, if any (only the `orphan-pts-master` notification
/// carries one).
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) resp: CriuResp,
    pub(crate) fd: Option<OwnedFd>,
}

/// A live connection; dropping it closes the socket and reaps the swrk child.
#[derive(Debug)]
pub(crate) struct Connection {
    socket: OwnedFd,
    swrk: Option<Child>,
}

impl Connection {
    /// Connects to a `criu service` socket.
    pub(crate) fn connect(path: &Path) -> Result<Connection, ConnectionError> {
        let fail = |errno| ConnectionError::Connect {
            path: path.to_path_buf(),
            errno,
        };
        let socket = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(fail)?;
        let address = UnixAddr::new(path).map_err(fail)?;
        loop {
            match connect(socket.as_raw_fd(), &address) {
                Ok(()) => break,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(fail(errno)),
            }
        }
        Ok(Connection { socket, swrk: None })
    }

    /// Wraps an already connected socket (for example one a parent process handed down).
    pub(crate) fn from_socket(socket: OwnedFd) -> Connection {
        Connection { socket, swrk: None }
    }

    /// Starts `command swrk N` with the other end of a fresh socketpair as its descriptor N, as libcriu
    /// and pycriu do.
    pub(crate) fn spawn_swrk(mut command: Command) -> Result<Connection, ConnectionError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(ConnectionError::Socketpair)?;
        // With our own stdio closed, the pair could land on 0-2, where the child's stdio setup would
        // overwrite it: move it above 2 first.
        let theirs = if theirs.as_raw_fd() <= 2 {
            let above_stdio = fcntl(&theirs, FcntlArg::F_DUPFD_CLOEXEC(3))
                .map_err(ConnectionError::Socketpair)?;
            sys::adopt_fd(above_stdio)
        } else {
            theirs
        };
        let number = theirs.as_raw_fd();
        command.arg("swrk").arg(number.to_string());
        sys::inherit_on_exec(&mut command, number);
        let child = command.spawn().map_err(|source| ConnectionError::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        drop(theirs);
        Ok(Connection {
            socket: ours,
            swrk: Some(child),
        })
    }

    /// The pid of the swrk child, when this connection started one.
    pub(crate) fn swrk_pid(&self) -> Option<u32> {
        self.swrk.as_ref().map(Child::id)
    }

    /// The socket, for callers that want to poll it.
    pub(crate) fn socket(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Bounds every later receive (`None`: wait forever, the default).
    pub(crate) fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), ConnectionError> {
        let value = timeout.unwrap_or(Duration::ZERO);
        let timeval = TimeVal::new(
            i64::try_from(value.as_secs()).unwrap_or(i64::MAX),
            i64::from(value.subsec_micros()),
        );
        setsockopt(&self.socket, sockopt::ReceiveTimeout, &timeval).map_err(|errno| {
            ConnectionError::Timeout {
                fd: self.socket.as_raw_fd(),
                timeout: value,
                errno,
            }
        })
    }

    /// Sends one request as one packet. MSG_NOSIGNAL: a server that went away is an error, not SIGPIPE.
    pub(crate) fn send(&self, req: &CriuReq) -> Result<(), ConnectionError> {
        self.send_bytes(&req.encode_to_vec())
    }

    /// Sends raw bytes as one packet.
    pub(crate) fn send_bytes(&self, bytes: &[u8]) -> Result<(), ConnectionError> {
        let fd = self.socket.as_raw_fd();
        let iov = [IoSlice::new(bytes)];
        loop {
            match sendmsg::<()>(fd, &iov, &[], MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(ConnectionError::Send {
                        fd,
                        len: bytes.len(),
                        errno,
                    })
                }
            }
        }
    }

    /// Receives one response; `Ok(None)` when the server closed the connection. The packet size is
    /// peeked first (MSG_PEEK|MSG_TRUNC returns the full length), so responses of any size are read whole.
    pub(crate) fn recv(&self) -> Result<Option<Received>, ConnectionError> {
        let fd = self.socket.as_raw_fd();
        let recv_error = |errno| ConnectionError::Recv { fd, errno };
        let size = loop {
            match recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Ok(size) => break size,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(recv_error(errno)),
            }
        };
        if size == 0 {
            // End of stream (a zero-length packet is no valid criu_resp either: `type` is required).
            return Ok(None);
        }
        let mut buffer = vec![0u8; size];
        let mut control = nix::cmsg_space!([RawFd; 4]);
        let (got, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            match recvmsg::<()>(fd, &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(message) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = message.cmsgs() {
                        for cmsg in cmsgs {
                            if let ControlMessageOwned::ScmRights(received) = cmsg {
                                fds.extend(received.into_iter().map(sys::adopt_fd));
                            }
                        }
                    }
                    break (message.bytes, fds);
                }
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(recv_error(errno)),
            }
        };
        if got == 0 {
            return Ok(None);
        }
        let resp = CriuResp::decode(&buffer[..got.min(size)])
            .map_err(|source| ConnectionError::Decode { len: got, source })?;
        // The protocol attaches at most one descriptor; any extra ones are closed here.
        let fd = fds.into_iter().next();
        Ok(Some(Received { resp, fd }))
    }

    /// Closes the socket and waits for the swrk child, returning its exit status.
    pub(crate) fn close(mut self) -> Option<ExitStatus> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Option<ExitStatus> {
        // Closing our end first is what makes a keep_open swrk see end-of-stream and exit.
        let _ =
            nix::sys::socket::shutdown(self.socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let mut child = self.swrk.take()?;
        child.wait().ok()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// Sends a NOTIFY answer without a [`Connection`] borrow conflict (used by the client's notify loop).
pub(crate) fn notify_answer(success: bool) -> CriuReq {
    CriuReq {
        r#type: criu_proto::CriuReqType::Notify as i32,
        notify_success: Some(success),
        ..CriuReq::default()
    }
}
