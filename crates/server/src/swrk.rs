//! `criu swrk FD`: serve the RPC connection on an inherited socket, one
//! request (or several with keep_open), then exit. Clients (libcriu, pycriu,
//! go-criu, runc) spawn it over a socketpair; pycriu closes fds 0-2 first.

use crate::engine::Engines;
use crate::logging;
use crate::options::{atoi, Options};
use crate::rpc::conn::RpcSocket;
use crate::rpc::worker::{Worker, WorkerKind};
use crate::sys;

/// Serves the socket `fd_arg` (C `atoi` semantics, like CRIU). Returns the
/// process exit code: 0 when the last request succeeded, 1 otherwise.
pub fn run(fd_arg: &str, base: &Options, engines: &Engines) -> i32 {
    let raw = atoi(fd_arg);
    let fd = match i32::try_from(raw)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))
        // A close-on-exec copy: the socket must not leak into exec_cmd or
        // restored tasks.
        .and_then(sys::dup_inherited_fd)
    {
        Ok(fd) => fd,
        Err(error) => {
            tracing::error!("swrk: bad socket fd {fd_arg}: {error}");
            return 1;
        }
    };
    logging::set_level(base.log_level);
    let mut worker = Worker::new(RpcSocket::new(fd), WorkerKind::Swrk, base.clone(), engines);
    i32::from(!worker.serve())
}
