//! `criu service`: a SOCK_SEQPACKET listener that forks one worker process per
//! connection (isolation: a crash in one request never takes the service
//! down, and each worker owns its ptrace relationships), reaps the workers,
//! signals readiness on `--status-fd`, and removes its socket on SIGTERM.
//!
//! Signals are handled synchronously through a signalfd, so the server stays
//! single-threaded with no async-signal handlers.

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::ForkResult;
use thiserror::Error;

use crate::engine::Engines;
use crate::options::Options;
use crate::rpc::conn::RpcSocket;
use crate::rpc::worker::{Worker, WorkerKind};
use crate::sys;

/// Where the service listens when `--address` is not given (relative to
/// the work dir).
pub const DEFAULT_ADDRESS: &str = "./criu_service.socket";

/// Errors starting or running the service.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// Socket setup failed.
    #[error("Can't {what} service socket {path}: {errno}")]
    Socket {
        /// socket, bind, listen, chmod...
        what: &'static str,
        /// Socket path.
        path: PathBuf,
        /// Why.
        errno: nix::Error,
    },
    /// Daemonizing failed.
    #[error("Can't run service server in the background: {0}")]
    Daemon(nix::Error),
    /// The pidfile cannot be written.
    #[error("Can't write pidfile {path}: {source}")]
    Pidfile {
        /// Path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The status fd cannot be written.
    #[error("Can't signal readiness on status fd {fd}: {source}")]
    StatusFd {
        /// Descriptor.
        fd: i32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Signal handling setup failed.
    #[error("Can't set up signal handling: {0}")]
    Signals(nix::Error),
    /// The accept loop failed.
    #[error("Service loop failed: {0}")]
    Loop(nix::Error),
}

/// Writes `pid` to `path` (CRIU's write_pidfile: truncate, decimal, no
/// newline).
pub fn write_pidfile(path: &Path, pid: i32) -> Result<(), ServiceError> {
    std::fs::write(path, pid.to_string()).map_err(|source| ServiceError::Pidfile {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the readiness byte `\0` to `fd` and closes it, as CRIU does: callers (CRIU's test
/// scripts, our RPC suite) wait for the byte and for end-of-file. The descriptor was handed to us by
/// number on the command line, so we take ownership of it (see `sys::take_inherited_fd`).
pub fn signal_status_fd(fd: i32) -> Result<(), ServiceError> {
    let owned =
        sys::take_inherited_fd(fd).map_err(|source| ServiceError::StatusFd { fd, source })?;
    let mut file = std::fs::File::from(owned);
    file.write_all(&[0])
        .map_err(|source| ServiceError::StatusFd { fd, source })
}

fn bind_listener(address: &Path) -> Result<OwnedFd, ServiceError> {
    let fail = |what: &'static str| {
        let path = address.to_path_buf();
        move |errno| ServiceError::Socket { what, path, errno }
    };
    let listener = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail("create"))?;
    let _ = std::fs::remove_file(address);
    let addr = UnixAddr::new(address).map_err(fail("name"))?;
    bind(listener.as_raw_fd(), &addr).map_err(fail("bind"))?;
    tracing::info!("The service socket is bound to {}", address.display());
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| fail("chmod")(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    listen(&listener, Backlog::new(16).map_err(fail("listen"))?).map_err(fail("listen"))?;
    Ok(listener)
}

/// Signals the service handles itself.
fn service_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(signal);
    }
    set
}

fn reap_workers() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                tracing::info!("Worker(pid {pid}) exited with {code}")
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                tracing::info!(
                    "Worker(pid {pid}) was killed by {}: {signal}",
                    signal as i32
                )
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Runs the service until SIGTERM/SIGINT. `options` are the service's own
/// (address, daemon, pidfile, status fd); `base` the options each request
/// starts from.
pub fn run(options: &Options, base: &Options, engines: &Engines) -> Result<(), ServiceError> {
    let address = PathBuf::from(
        options
            .address
            .clone()
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string()),
    );
    if options.address.is_none() {
        tracing::warn!("Binding to local dir address!");
    }
    let listener = bind_listener(&address)?;
    // A relative address must still be removable after daemon(): keep the
    // absolute form.
    let address = std::env::current_dir()
        .map(|cwd| cwd.join(&address))
        .unwrap_or(address);

    if options.restore_detached {
        nix::unistd::daemon(true, false).map_err(ServiceError::Daemon)?;
    }
    if let Some(pidfile) = &options.pidfile {
        write_pidfile(pidfile, nix::unistd::getpid().as_raw())?;
    }

    let signals = service_signals();
    signals.thread_block().map_err(ServiceError::Signals)?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(ServiceError::Signals)?;

    if let Some(fd) = options.status_fd {
        signal_status_fd(fd)?;
    }

    let result = accept_loop(listener, signal_fd, &signals, base, engines);
    let _ = std::fs::remove_file(&address);
    result
}

/// Owns the listener and the signalfd so that a forked worker can drop
/// (close) its copies before serving its connection.
fn accept_loop(
    listener: OwnedFd,
    signal_fd: SignalFd,
    signals: &SigSet,
    base: &Options,
    engines: &Engines,
) -> Result<(), ServiceError> {
    loop {
        tracing::info!("Waiting for connection...");
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(ServiceError::Loop(errno)),
        }
        let signal_ready = fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let client_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        if signal_ready {
            while let Ok(Some(info)) = signal_fd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => reap_workers(),
                    Ok(signal) => {
                        tracing::info!("Service stopped by {signal}");
                        return Ok(());
                    }
                    Err(_) => {}
                }
            }
            reap_workers();
        }
        if !client_ready {
            continue;
        }
        let connection = match sys::accept_connection(&listener) {
            Ok(connection) => connection,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNABORTED) => continue,
            Err(errno) => {
                tracing::error!("Can't accept connection: {errno}");
                continue;
            }
        };
        tracing::info!("Connected.");
        match sys::fork_process() {
            Ok(ForkResult::Child) => {
                // The worker must not keep the service's sockets open.
                drop(listener);
                drop(signal_fd);
                let _ = signals.thread_unblock();
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut worker = Worker::new(
                        RpcSocket::new(connection),
                        WorkerKind::Service,
                        base.clone(),
                        engines,
                    );
                    i32::from(!worker.serve())
                }))
                .unwrap_or(1);
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                tracing::debug!("Worker {child} serves the connection");
                drop(connection);
            }
            Err(error) => {
                tracing::error!("Can't fork a child: {error}");
                drop(connection);
            }
        }
    }
}
