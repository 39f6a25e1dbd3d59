//! One RPC connection's worker: reads requests, answers each with CRIU's
//! observable behaviour (response types, keep_open whitelist, the PRE_DUMP →
//! DUMP sequence, self-dump reply rule, notify round trips, cr_errno and
//! cr_errmsg), and never panics on bad input.
//!
//! Requests the C server cannot parse are closed without an answer; we do
//! the same for undecodable packets. A request missing a `required` field
//! decodes with that field's default (e.g. `type` = EMPTY), which gets the
//! usual "Invalid req" answer.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;

use criu_proto::{
    CriuDumpResp, CriuFeatures, CriuNotify, CriuPageServerInfo, CriuReq, CriuReqType, CriuResp,
    CriuRestoreResp, CriuVersion,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

use crate::check::{self, Features};
use crate::cpuinfo;
use crate::engine::{DumpJob, Engines, PageServerJob, RestoreJob};
use crate::logging;
use crate::options::{FinalState, Options};
use crate::rpc::conn::{Peer, RpcSocket};
use crate::rpc::setup::{self, RequestMode, RequestSetup};
use crate::security;
use crate::sys;

/// Version reported to clients: CRIU 4.2 (clients compute
/// major*10000 + minor*100 + sublevel; no gitid, which would round up).
pub const VERSION_MAJOR: i32 = 4;
/// See [`VERSION_MAJOR`].
pub const VERSION_MINOR: i32 = 2;
/// `criu_version.name`.
pub const VERSION_NAME: &str = "criu-rs";

/// Whether this worker serves `criu swrk` (allows the swrk-only options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// A forked service worker.
    Service,
    /// `criu swrk FD`.
    Swrk,
}

/// Serves one connection.
pub struct Worker<'e> {
    sock: RpcSocket,
    kind: WorkerKind,
    base: Options,
    engines: &'e Engines,
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("kind", &self.kind).finish()
    }
}

fn response(kind: CriuReqType, success: bool) -> CriuResp {
    CriuResp {
        r#type: kind as i32,
        success,
        ..CriuResp::default()
    }
}

/// Adds cr_errno / cr_errmsg of the current request.
fn with_error(mut resp: CriuResp) -> CriuResp {
    let errno = logging::cr_errno();
    if errno != 0 {
        resp.cr_errno = Some(errno);
    }
    resp.cr_errmsg = logging::first_error();
    resp
}

fn keep_open_allowed(kind: Option<CriuReqType>) -> bool {
    matches!(
        kind,
        Some(
            CriuReqType::PageServer
                | CriuReqType::PageServerChld
                | CriuReqType::CpuinfoDump
                | CriuReqType::CpuinfoCheck
                | CriuReqType::FeatureCheck
                | CriuReqType::Version
        )
    )
}

/// Runs `body` in a forked child and returns its wait status. A panic in the
/// child becomes exit status 1; the child never returns into our caller.
fn run_in_child(body: impl FnOnce() -> i32) -> std::io::Result<WaitStatus> {
    match sys::fork_process().map_err(std::io::Error::other)? {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
                tracing::error!("internal error: request helper panicked");
                1
            });
            std::process::exit(code);
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => return other.map_err(std::io::Error::from),
            }
        },
    }
}

fn exited_zero(status: &std::io::Result<WaitStatus>) -> bool {
    matches!(status, Ok(WaitStatus::Exited(_, 0)))
}

impl<'e> Worker<'e> {
    /// A worker for `sock`. `base` holds the options every request starts
    /// from (defaults and default config files).
    pub fn new(sock: RpcSocket, kind: WorkerKind, base: Options, engines: &'e Engines) -> Self {
        // cr_errmsg comes from the log: make sure the subscriber exists.
        logging::install();
        Worker {
            sock,
            kind,
            base,
            engines,
        }
    }

    /// Serves requests until one fails, a request without keep_open is done,
    /// or the client goes away. Returns whether the last request succeeded.
    pub fn serve(&mut self) -> bool {
        let mut last_ok = false;
        loop {
            let req = match self.sock.recv_request() {
                Ok(Some(req)) => req,
                Ok(None) => {
                    tracing::info!("Client exited");
                    return last_ok;
                }
                Err(error) => {
                    tracing::error!("{error}");
                    return false;
                }
            };
            if let Err(error) = logging::begin_request() {
                tracing::error!("{error}");
                return false;
            }
            let kind = CriuReqType::try_from(req.r#type).ok();
            if req.keep_open == Some(true) && !keep_open_allowed(kind) {
                tracing::error!(
                    "keep_open is not allowed for request type {}; closing the connection",
                    req.r#type
                );
                return false;
            }
            let keep_open = req.keep_open == Some(true);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.handle(req)));
            let ok = match outcome {
                Ok(ok) => ok,
                Err(_) => {
                    tracing::error!("internal error: request handler panicked");
                    let resp = with_error(response(CriuReqType::Empty, false));
                    let _ = self.sock.send(&resp);
                    false
                }
            };
            last_ok = ok;
            if !(ok && keep_open) {
                return ok;
            }
        }
    }

    fn send(&self, resp: &CriuResp) -> bool {
        match self.sock.send(resp) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!("{error}");
                false
            }
        }
    }

    fn send_invalid(&self, what: &str) -> bool {
        tracing::error!("RPC error: {what}");
        self.send(&with_error(response(CriuReqType::Empty, false)));
        false
    }

    fn peer(&self) -> Option<Peer> {
        match self.sock.peer() {
            Ok(peer) => Some(peer),
            Err(error) => {
                tracing::error!("{error}");
                None
            }
        }
    }

    fn handle(&mut self, req: CriuReq) -> bool {
        match CriuReqType::try_from(req.r#type) {
            Ok(CriuReqType::Version) => self.handle_version(),
            Ok(CriuReqType::Check) => self.handle_check(&req),
            Ok(CriuReqType::FeatureCheck) => self.handle_feature_check(&req),
            Ok(CriuReqType::WaitPid) => self.handle_wait_pid(&req),
            Ok(kind @ (CriuReqType::CpuinfoDump | CriuReqType::CpuinfoCheck)) => {
                self.handle_cpuinfo(&req, kind)
            }
            Ok(CriuReqType::Dump) => self.handle_dump(&req),
            Ok(CriuReqType::PreDump) => self.handle_pre_dump_loop(req),
            Ok(CriuReqType::SinglePreDump) => self.handle_pre_dump(&req, true),
            Ok(CriuReqType::Restore) => self.handle_restore(&req),
            Ok(CriuReqType::PageServer) => self.handle_page_server(&req, true),
            Ok(CriuReqType::PageServerChld) => self.handle_page_server(&req, false),
            Ok(CriuReqType::Empty | CriuReqType::Notify) | Err(_) => {
                self.send_invalid("Invalid req")
            }
        }
    }

    fn handle_version(&self) -> bool {
        let mut resp = response(CriuReqType::Version, true);
        resp.version = Some(CriuVersion {
            major_number: VERSION_MAJOR,
            minor_number: VERSION_MINOR,
            gitid: None,
            sublevel: None,
            extra: None,
            name: Some(VERSION_NAME.to_string()),
        });
        self.send(&resp)
    }

    fn handle_feature_check(&self, req: &CriuReq) -> bool {
        let wanted = req
            .features
            .as_ref()
            .map_or(Features::default(), |f| Features {
                mem_track: f.mem_track == Some(true),
                lazy_pages: f.lazy_pages == Some(true),
                pidfd_store: f.pidfd_store == Some(true),
            });
        let found = check::feature_check(wanted);
        let mut resp = response(CriuReqType::FeatureCheck, true);
        resp.features = Some(CriuFeatures {
            mem_track: Some(found.mem_track),
            lazy_pages: Some(found.lazy_pages),
            pidfd_store: Some(found.pidfd_store),
        });
        self.send(&resp)
    }

    fn handle_wait_pid(&self, req: &CriuReq) -> bool {
        let mut resp = response(CriuReqType::WaitPid, false);
        // Only a positive pid: 0 or -1 would wait for any child (e.g. an
        // unrelated page server) and could block forever.
        let pid = req
            .pid
            .and_then(|p| i32::try_from(p).ok())
            .filter(|&p| p > 0);
        let Some(pid) = pid else {
            tracing::error!("WAIT_PID needs a positive pid, got {:?}", req.pid);
            let _ = self.send(&with_error(resp));
            return false;
        };
        match sys::wait_raw(pid) {
            Ok(status) => {
                resp.success = true;
                resp.status = Some(status);
            }
            Err(error) => {
                tracing::error!("Unable to wait {pid}: {error}");
                resp = with_error(resp);
            }
        }
        self.send(&resp)
    }

    /// Runs `setup` for a request, logging and recording EBADRQC on failure.
    fn setup(&self, req: &CriuReq, mode: RequestMode) -> Option<(RequestSetup, Peer)> {
        let peer = self.peer()?;
        match setup::setup(
            &self.base,
            req.opts.as_ref(),
            mode,
            &peer,
            self.kind == WorkerKind::Swrk,
        ) {
            Ok(setup) => Some((setup, peer)),
            Err(error) => {
                tracing::error!("{error}");
                logging::set_cr_errno(libc::EBADRQC);
                None
            }
        }
    }

    fn handle_check(&self, req: &CriuReq) -> bool {
        let status = run_in_child(|| {
            if self.setup(req, RequestMode::Check).is_none() {
                return 1;
            }
            let failed = check::check_all();
            if failed.is_empty() {
                tracing::info!("Looks good.");
                0
            } else {
                tracing::warn!("Does not look good.");
                1
            }
        });
        let resp = with_error(response(CriuReqType::Check, exited_zero(&status)));
        self.send(&resp)
    }

    fn handle_cpuinfo(&self, req: &CriuReq, kind: CriuReqType) -> bool {
        let status = run_in_child(|| {
            let Some((setup, _peer)) = self.setup(req, RequestMode::Cpuinfo) else {
                return 1;
            };
            let Some(dir) = setup.images_dir.as_ref() else {
                return 1;
            };
            let result = if kind == CriuReqType::CpuinfoDump {
                cpuinfo::dump(dir)
            } else {
                cpuinfo::check(dir, setup.options.cpu_cap)
            };
            match result {
                Ok(()) => 0,
                Err(error) => {
                    tracing::error!("{error}");
                    if error.is_mismatch() {
                        -libc::ENOTSUP & 0xff
                    } else {
                        1
                    }
                }
            }
        });
        let mut resp = response(kind, false);
        match status {
            Ok(WaitStatus::Exited(_, 0)) => resp.success = true,
            Ok(WaitStatus::Exited(_, code)) if code == (-libc::ENOTSUP & 0xff) => {
                logging::set_cr_errno(libc::ENOTSUP);
            }
            _ => {}
        }
        self.send(&with_error(resp))
    }

    /// The notify hook: RPC round trips when the client asked for them, then
    /// any `--action-script` from the config files.
    fn notify_hook<'a>(
        sock: &'a RpcSocket,
        rpc: bool,
        scripts: &'a [String],
    ) -> impl FnMut(&str, Option<i32>) -> Result<(), String> + 'a {
        move |action: &str, pid: Option<i32>| {
            if rpc {
                rpc_notify(sock, action, pid)?;
            }
            crate::action_script::run(scripts, action, pid).map_err(|error| {
                tracing::error!("{error}");
                error.to_string()
            })
        }
    }

    fn dump_job_run(&self, req: &CriuReq, pre_dump: bool) -> Result<(), ()> {
        let mode = if pre_dump {
            RequestMode::PreDump
        } else {
            RequestMode::Dump
        };
        let Some((mut setup, peer)) = self.setup(req, mode) else {
            return Err(());
        };
        if pre_dump {
            setup.options.track_mem = true;
            setup.options.final_state = FinalState::Alive;
        }
        if let Err(error) = security::check_may_dump(&peer, setup.pid) {
            tracing::error!("{error}");
            logging::set_cr_errno(libc::EPERM);
            return Err(());
        }
        let Some(images_dir) = setup.images_dir.as_ref() else {
            return Err(());
        };
        let job = DumpJob {
            options: &setup.options,
            pid: setup.pid,
            images_dir,
            images_dir_path: setup.images_dir_path.clone().unwrap_or_default(),
            service_socket_ino: self.sock.inode(),
            pre_dump,
        };
        let rpc_notify = req.opts.as_ref().and_then(|o| o.notify_scripts) == Some(true);
        let mut notify = Self::notify_hook(&self.sock, rpc_notify, &setup.options.action_scripts);
        match self.engines.dump.dump(&job, &mut notify) {
            Ok(outcome) => {
                tracing::info!("Dumped {} task(s) of tree {}", outcome.tasks, setup.pid);
                Ok(())
            }
            Err(error) => {
                tracing::error!("Dumping FAILED: {error}");
                if let Some(errno) = error.errno {
                    logging::set_cr_errno(errno);
                }
                Err(())
            }
        }
    }

    fn handle_dump(&self, req: &CriuReq) -> bool {
        let opts = req.opts.as_ref();
        let self_dump = opts.and_then(|o| o.pid).unwrap_or(0) == 0;
        let leave_running = opts.and_then(|o| o.leave_running) == Some(true);
        let success = self.dump_job_run(req, false).is_ok();
        if leave_running || !self_dump || !success {
            let mut resp = with_error(response(CriuReqType::Dump, success));
            resp.dump = Some(CriuDumpResp {
                restored: Some(false),
            });
            return self.send(&resp) && success;
        }
        success
    }

    fn handle_pre_dump(&self, req: &CriuReq, single: bool) -> bool {
        let status = run_in_child(|| match self.dump_job_run(req, true) {
            Ok(()) => 0,
            Err(()) => 1,
        });
        let kind = if single {
            CriuReqType::SinglePreDump
        } else {
            CriuReqType::PreDump
        };
        let success = exited_zero(&status);
        self.send(&with_error(response(kind, success))) && success
    }

    fn handle_pre_dump_loop(&self, first: CriuReq) -> bool {
        let mut req = first;
        loop {
            if !self.handle_pre_dump(&req, false) {
                return false;
            }
            req = match self.sock.recv_request() {
                Ok(Some(next)) => next,
                Ok(None) => {
                    tracing::error!("Can't recv request: client exited during the pre-dump loop");
                    return false;
                }
                Err(error) => {
                    tracing::error!("Can't recv request: {error}");
                    return false;
                }
            };
            if let Err(error) = logging::begin_request() {
                tracing::error!("{error}");
                return false;
            }
            match CriuReqType::try_from(req.r#type) {
                Ok(CriuReqType::PreDump) => continue,
                Ok(CriuReqType::Dump) => return self.handle_dump(&req),
                _ => return self.send_invalid("Bad req seq"),
            }
        }
    }

    fn handle_restore(&self, req: &CriuReq) -> bool {
        let mut root_pid = -1;
        let mut setup_kept = None;
        let success = (|| {
            let (mut setup, peer) = self.setup(req, RequestMode::Restore)?;
            setup.options.restore_detached = true;
            if let Err(error) = security::become_client(&peer) {
                tracing::error!("{error}");
                logging::set_cr_errno(libc::EPERM);
                return None;
            }
            let images_dir = setup.images_dir.as_ref()?;
            let job = RestoreJob {
                options: &setup.options,
                images_dir,
                images_dir_path: setup.images_dir_path.clone().unwrap_or_default(),
            };
            let rpc_notify = req.opts.as_ref().and_then(|o| o.notify_scripts) == Some(true);
            let mut notify =
                Self::notify_hook(&self.sock, rpc_notify, &setup.options.action_scripts);
            let result = self.engines.restore.restore(&job, &mut notify);
            drop(notify);
            match result {
                Ok(outcome) => {
                    root_pid = outcome.root_pid;
                    setup_kept = Some(setup);
                    Some(())
                }
                Err(error) => {
                    tracing::error!("Restoring FAILED: {error}");
                    if let Some(errno) = error.errno {
                        logging::set_cr_errno(errno);
                    }
                    None
                }
            }
        })()
        .is_some();
        let mut resp = with_error(response(CriuReqType::Restore, success));
        resp.restore = Some(CriuRestoreResp { pid: root_pid });
        let sent = self.send(&resp);
        if success && sent {
            if let Some(setup) = setup_kept {
                if !setup.options.exec_cmd.is_empty() {
                    return exec_command(&setup.options.exec_cmd);
                }
            }
        }
        success && sent
    }

    fn handle_page_server(&self, req: &CriuReq, daemon: bool) -> bool {
        let (reader, writer) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::error!("No start pipe: {error}");
                let _ = self.send(&with_error(response(CriuReqType::PageServer, false)));
                return false;
            }
        };
        let forked = sys::fork_process();
        match forked {
            Ok(ForkResult::Child) => {
                drop(reader);
                let code = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    self.page_server_child(req, daemon, writer)
                }))
                .unwrap_or(1);
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                drop(writer);
                if daemon {
                    match waitpid(child, None) {
                        Ok(WaitStatus::Exited(_, 0)) => {}
                        other => tracing::error!("Page server starter {child} failed: {other:?}"),
                    }
                }
                let mut info = [0u8; 6];
                let mut file = std::fs::File::from(reader);
                let ok = file.read_exact(&mut info).is_ok();
                let mut resp = response(CriuReqType::PageServer, ok);
                if ok {
                    let pid = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                    let port = u16::from_ne_bytes([info[4], info[5]]);
                    tracing::debug!("Page server started: pid {pid} port {port}");
                    resp.ps = Some(CriuPageServerInfo {
                        address: None,
                        port: Some(i32::from(port)),
                        pid: Some(pid),
                        fd: None,
                    });
                }
                let resp = with_error(resp);
                self.send(&resp) && ok
            }
            Err(error) => {
                tracing::error!("Can't fork: {error}");
                let _ = self.send(&with_error(response(CriuReqType::PageServer, false)));
                false
            }
        }
    }

    /// In the forked child: set up, then serve (daemon: from a grandchild).
    fn page_server_child(&self, req: &CriuReq, daemon: bool, writer: OwnedFd) -> i32 {
        let Some((setup, _peer)) = self.setup(req, RequestMode::PageServer) else {
            return 1;
        };
        let Some(images_dir) = setup.images_dir.as_ref() else {
            return 1;
        };
        if daemon {
            match sys::fork_process() {
                Ok(ForkResult::Parent { .. }) => return 0,
                Ok(ForkResult::Child) => {
                    let _ = nix::unistd::setsid();
                }
                Err(error) => {
                    tracing::error!("Can't fork the page server: {error}");
                    return 1;
                }
            }
        }
        let mut writer = Some(std::fs::File::from(writer));
        let mut listening = |port: u16| {
            if let Some(mut file) = writer.take() {
                let mut info = Vec::with_capacity(6);
                info.extend_from_slice(&nix::unistd::getpid().as_raw().to_ne_bytes());
                info.extend_from_slice(&port.to_ne_bytes());
                let _ = file.write_all(&info);
            }
        };
        let job = PageServerJob {
            options: &setup.options,
            images_dir,
        };
        match self.engines.page_server.serve(&job, &mut listening) {
            Ok(()) => 0,
            Err(error) => {
                tracing::error!("Page server failed: {error}");
                1
            }
        }
    }
}

/// One NOTIFY round trip: send the action, wait for the client's NOTIFY
/// request with notify_success.
fn rpc_notify(sock: &RpcSocket, action: &str, pid: Option<i32>) -> Result<(), String> {
    let mut resp = response(CriuReqType::Notify, true);
    let pid = match action {
        "setup-namespaces" | "post-restore" => pid,
        _ => None,
    };
    resp.notify = Some(CriuNotify {
        script: Some(action.to_string()),
        pid,
    });
    sock.send(&resp).map_err(|e| e.to_string())?;
    match sock.recv_request() {
        Ok(Some(reply))
            if reply.r#type == CriuReqType::Notify as i32 && reply.notify_success == Some(true) =>
        {
            Ok(())
        }
        Ok(_) => {
            tracing::error!("RPC client reported script error");
            Err("RPC client reported script error".into())
        }
        Err(error) => {
            tracing::error!("{error}");
            Err(error.to_string())
        }
    }
}

/// exec_cmd after a successful restore: stdout and stderr go to the log.
fn exec_command(argv: &[String]) -> bool {
    if let Some(log) = logging::output_fd() {
        let _ = nix::unistd::dup2_stdout(log.as_fd());
        let _ = nix::unistd::dup2_stderr(log.as_fd());
    }
    let args: Vec<std::ffi::CString> = match argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
    {
        Ok(args) => args,
        Err(error) => {
            tracing::error!("Bad exec_cmd {argv:?}: {error}");
            return false;
        }
    };
    let error = nix::unistd::execvp(&args[0], &args).unwrap_err();
    tracing::error!("Failed to exec cmd {}: {error}", argv[0]);
    false
}
