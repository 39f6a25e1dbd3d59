//! Shared helpers: start the real `criu-server` binary (service or swrk) and
//! talk raw SOCK_SEQPACKET protobuf to it. The target-process helpers
//! (detached sleepers, waiting, killing) are criu-test-util's, re-exported.
#![allow(dead_code)]

use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criu_proto::{CriuOpts, CriuReq, CriuReqType, CriuResp};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    connect, recv, send, socket, socketpair, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use prost::Message;

// Each test binary includes this module and uses a different subset.
#[allow(unused_imports)]
pub use criu_test_util::process::{
    kill_and_wait_gone, spawn_detached_sleep, spawn_detached_sleep_as, spawn_sleeper, wait_until,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_criu-server");

/// A client end of an RPC connection.
pub struct Client {
    pub fd: OwnedFd,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        Client { fd }
    }

    pub fn send_raw(&self, bytes: &[u8]) -> nix::Result<usize> {
        send(self.fd.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL)
    }

    pub fn send(&self, req: &CriuReq) {
        self.send_raw(&req.encode_to_vec()).unwrap();
    }

    /// The next response, or None when the server closed the connection.
    pub fn recv(&self) -> Option<CriuResp> {
        self.set_timeout(Duration::from_secs(60));
        let mut buffer = vec![0u8; 1 << 16];
        let len = match recv(self.fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(len) => len,
            Err(nix::errno::Errno::EINTR) => return self.recv(),
            // The server exited with our request unread.
            Err(nix::errno::Errno::ECONNRESET) => return None,
            Err(other) => panic!("recv: {other}"),
        };
        if len == 0 {
            return None;
        }
        Some(CriuResp::decode(&buffer[..len]).unwrap())
    }

    pub fn set_timeout(&self, timeout: Duration) {
        let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(&self.fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .unwrap();
    }

    pub fn call(&self, req: &CriuReq) -> CriuResp {
        self.send(req);
        self.recv()
            .expect("server closed the connection instead of answering")
    }
}

pub fn request(kind: CriuReqType) -> CriuReq {
    CriuReq {
        r#type: kind as i32,
        ..CriuReq::default()
    }
}

pub fn opts() -> CriuOpts {
    CriuOpts {
        images_dir_fd: -1,
        ..CriuOpts::default()
    }
}

/// A running `criu-server service`.
pub struct Service {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Service {
    pub fn start() -> Service {
        Service::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("criu.sock");
        // Status pipe without CLOEXEC on the write end, so the service
        // inherits it; we wait for the readiness byte.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        fcntl(reader.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("service")
            .arg("--no-default-config")
            .arg("--address")
            .arg(&socket)
            .arg("-W")
            .arg(dir.path())
            .arg("-o")
            .arg("service.log")
            .arg("-v4")
            .arg("--status-fd")
            .arg(writer.as_raw_fd().to_string())
            .args(extra)
            .stdin(Stdio::null());
        let child = command.spawn().unwrap();
        drop(writer);
        let mut byte = [0xffu8; 1];
        let mut file = std::fs::File::from(reader);
        file.read_exact(&mut byte)
            .expect("service never signalled readiness");
        assert_eq!(byte[0], 0, "readiness byte must be \\0");
        Service { child, dir, socket }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A `criu-server swrk FD` on a socketpair.
pub struct Swrk {
    pub child: Child,
    pub client: Client,
}

impl Swrk {
    pub fn start() -> Swrk {
        Swrk::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Swrk {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        fcntl(theirs.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let mut command = Command::new(BIN);
        command.arg("swrk").arg(theirs.as_raw_fd().to_string());
        command.env_remove("CRIU_CONFIG_FILE");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap();
        drop(theirs);
        Swrk {
            child,
            client: Client { fd: ours },
        }
    }

    /// Same, but the server starts with fds 0, 1 and 2 closed (as pycriu
    /// spawns it).
    pub fn start_with_stdio_closed() -> Swrk {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        fcntl(theirs.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let script = format!("exec {BIN} swrk {} 0<&- 1>&- 2>&-", theirs.as_raw_fd());
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env_remove("CRIU_CONFIG_FILE")
            .spawn()
            .unwrap();
        drop(theirs);
        Swrk {
            child,
            client: Client { fd: ours },
        }
    }

    pub fn wait(mut self) -> i32 {
        drop(self.client);
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

/// Children of `pid` (from /proc/PID/task/*/children) and their states.
pub fn children_states(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in text
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                let stat =
                    std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next())
                    .unwrap_or('?');
                out.push((child, state));
            }
        }
    }
    out
}

pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

pub fn dir_fd(path: &Path) -> OwnedFd {
    std::fs::File::open(path).unwrap().into()
}
