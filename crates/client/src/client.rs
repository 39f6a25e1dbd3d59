//! [`Client`]: typed CRIU RPC requests over a service socket or a spawned `criu swrk`.
//!
//! CRIU serves one request per connection, except that a request with `keep_open` (allowed for VERSION,
//! FEATURE_CHECK, CPUINFO_*, PAGE_SERVER*) leaves the connection open for the next one, and a PRE_DUMP
//! leaves it open for the next PRE_DUMP or the final DUMP. The client follows these rules itself: it
//! keeps the connection while the server does, and opens a new one (a new `connect`, or a new `criu
//! swrk` child) when the previous one is spent.

use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use criu_proto::{CriuFeatures, CriuReq, CriuReqType, CriuResp};
use nix::errno::Errno;
use thiserror::Error;

use crate::connection::{notify_answer, Connection, ConnectionError};
use crate::options::Options;

/// Why a request failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The transport failed: connect, spawn, send, receive or decode.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The server closed the connection without answering (CRIU does this for a request it cannot
    /// decode, for keep_open on a type that does not allow it, and after a successful self-dump).
    #[error("the server closed the connection without answering the {request} request{}",
        swrk_status.map(|status| format!(" (criu swrk {status})")).unwrap_or_default())]
    Closed {
        /// The request that went unanswered.
        request: RequestName,
        /// How the swrk child ended, when there was one.
        swrk_status: Option<ExitStatus>,
    },
    /// The server answered EMPTY with success=false: it does not accept this request here (an unknown
    /// type, NOTIFY outside a notification, a request out of sequence after PRE_DUMP).
    #[error("the server refused the {request} request as invalid{}", describe_error(*cr_errno, cr_errmsg.as_deref()))]
    Invalid {
        /// The refused request.
        request: RequestName,
        /// The server's errno, when it sent one.
        cr_errno: Option<i32>,
        /// The first error the server logged, when it sent one.
        cr_errmsg: Option<String>,
    },
    /// The server answered a different request type.
    #[error("the server answered {answer} to the {request} request")]
    UnexpectedAnswer {
        /// What was asked.
        request: RequestName,
        /// The type of the answer.
        answer: RequestName,
    },
    /// The request was understood and failed (success=false).
    #[error("the {request} request failed{}", describe_error(*cr_errno, cr_errmsg.as_deref()))]
    Failed {
        /// The failed request.
        request: RequestName,
        /// The server's errno (ESRCH: no such process to dump, EEXIST: pid taken at restore,
        /// EBADRQC: bad options, ENOTSUP: cpuinfo mismatch).
        cr_errno: Option<i32>,
        /// The first error line the server logged for this request.
        cr_errmsg: Option<String>,
    },
    /// A successful answer lacks the part it must carry (e.g. VERSION without `version`).
    #[error("the server's {request} answer has no {field}")]
    MissingField {
        /// The request.
        request: RequestName,
        /// The absent field.
        field: &'static str,
    },
}

fn describe_error(cr_errno: Option<i32>, cr_errmsg: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(errno) = cr_errno {
        text.push_str(&format!(
            ": cr_errno {errno} ({})",
            nix::errno::Errno::from_raw(errno).desc()
        ));
    }
    if let Some(message) = cr_errmsg {
        text.push_str(if cr_errno.is_some() { ", " } else { ": " });
        text.push_str(message.trim_end());
    }
    text
}

impl ClientError {
    /// The server's `cr_errno`, when the server answered with one.
    pub fn cr_errno(&self) -> Option<i32> {
        match self {
            ClientError::Invalid { cr_errno, .. } | ClientError::Failed { cr_errno, .. } => {
                *cr_errno
            }
            _ => None,
        }
    }

    /// The server's `cr_errmsg` (the first error it logged), when it sent one.
    pub fn cr_errmsg(&self) -> Option<&str> {
        match self {
            ClientError::Invalid { cr_errmsg, .. } | ClientError::Failed { cr_errmsg, .. } => {
                cr_errmsg.as_deref()
            }
            _ => None,
        }
    }
}

/// A `criu_req_type` value as the wire carries it, printed with CRIU's name ("DUMP", "VERSION") or as
/// the bare number when it is none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestName(pub i32);

impl From<CriuReqType> for RequestName {
    fn from(kind: CriuReqType) -> Self {
        RequestName(kind as i32)
    }
}

impl std::fmt::Display for RequestName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match CriuReqType::try_from(self.0) {
            Ok(kind) => f.write_str(kind.as_str_name()),
            Err(_) => write!(f, "type {}", self.0),
        }
    }
}

/// The server's version (`criu_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major number (4 for CRIU 4.2).
    pub major: i32,
    /// Minor number.
    pub minor: i32,
    /// Sublevel, when the release has one.
    pub sublevel: Option<i32>,
    /// Extra number (development releases).
    pub extra: Option<i32>,
    /// The git id, only for builds from a git tree.
    pub gitid: Option<String>,
    /// The release name.
    pub name: Option<String>,
}

impl Version {
    /// The number runc, go-criu and libcriu compare against: major*10000 + minor*100 + sublevel,
    /// rounded up to the next minor when `gitid` is present (a git build is newer than its release).
    pub fn code(&self) -> i64 {
        let mut code = i64::from(self.major) * 10_000
            + i64::from(self.minor) * 100
            + i64::from(self.sublevel.unwrap_or(0));
        if self.gitid.is_some() {
            code = (code / 100 + 1) * 100;
        }
        code
    }
}

/// The optional kernel features FEATURE_CHECK can test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Memory change tracking (soft-dirty), needed for incremental dumps.
    pub mem_track: bool,
    /// Lazy pages (userfaultfd, non-cooperative).
    pub lazy_pages: bool,
    /// Keeping pidfds of dumped tasks across pre-dumps (pidfd_open + pidfd_getfd).
    pub pidfd_store: bool,
}

impl Features {
    /// Every feature.
    pub fn all() -> Self {
        Features {
            mem_track: true,
            lazy_pages: true,
            pidfd_store: true,
        }
    }

    fn to_proto(self) -> CriuFeatures {
        CriuFeatures {
            mem_track: Some(self.mem_track),
            lazy_pages: Some(self.lazy_pages),
            pidfd_store: Some(self.pidfd_store),
        }
    }

    fn from_proto(proto: &CriuFeatures) -> Self {
        Features {
            mem_track: proto.mem_track == Some(true),
            lazy_pages: proto.lazy_pages == Some(true),
            pidfd_store: proto.pidfd_store == Some(true),
        }
    }
}

/// What a successful DUMP reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpOutcome {
    /// True when this answer is the one a restore plants on a restored self-dumper's socket: the
    /// caller is the restored copy.
    pub restored: bool,
}

/// A page server the service started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageServerInfo {
    /// Its pid.
    pub pid: Option<i32>,
    /// The TCP port it listens on (the bound one when port 0 was asked for).
    pub port: Option<i32>,
}

/// One NOTIFY message from the server: the action point reached, the root task's pid for
/// `setup-namespaces` and `post-restore`, and a descriptor for `orphan-pts-master`.
#[derive(Debug)]
pub struct Notification {
    /// The action name (`pre-dump`, `post-dump`, `pre-restore`, `post-restore`, ...).
    pub script: String,
    /// The pid the server attached.
    pub pid: Option<i32>,
    /// The descriptor the server attached.
    pub fd: Option<OwnedFd>,
}

type NotifyCallback = Box<dyn FnMut(Notification) -> bool + Send>;

/// Where new connections come from.
enum Endpoint {
    /// `criu service` listening on this path.
    Service(PathBuf),
    /// A `criu swrk` child per connection, from this command (without the `swrk N` arguments).
    Swrk(Box<dyn Fn() -> Command + Send>),
    /// One given socket; no new connection once it is spent.
    Socket,
}

/// A CRIU RPC client.
///
/// ```no_run
/// # fn main() -> Result<(), criu_client::ClientError> {
/// use std::os::fd::AsFd;
/// let mut client = criu_client::Client::spawn_swrk("/usr/local/sbin/criu")?;
/// println!("criu {}", client.version()?.code());
/// let images = std::fs::File::open("/tmp/images").expect("images dir");
/// let options = criu_client::Options::new().images_dir_fd(images.as_fd()).pid(1234);
/// client.on_notify(|action, _pid| { println!("reached {action}"); true });
/// client.dump(&options)?;
/// # Ok(()) }
/// ```
pub struct Client {
    endpoint: Endpoint,
    connection: Option<Connection>,
    notify: Option<NotifyCallback>,
    timeout: Option<Duration>,
    reuse: bool,
    last_swrk_status: Option<ExitStatus>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = match &self.endpoint {
            Endpoint::Service(path) => format!("service {}", path.display()),
            Endpoint::Swrk(_) => "swrk".to_owned(),
            Endpoint::Socket => "socket".to_owned(),
        };
        f.debug_struct("Client")
            .field("endpoint", &endpoint)
            .field("connection", &self.connection)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    fn with_endpoint(endpoint: Endpoint, connection: Connection) -> Client {
        Client {
            endpoint,
            connection: Some(connection),
            notify: None,
            timeout: None,
            reuse: true,
            last_swrk_status: None,
        }
    }

    /// Connects to a `criu service` socket. Later requests reconnect to the same path when the
    /// server has closed the previous connection.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref().to_path_buf();
        let connection = Connection::connect(&path)?;
        Ok(Client::with_endpoint(Endpoint::Service(path), connection))
    }

    /// Starts `<criu> swrk N` over a socketpair (N = the child's end); later requests start a new
    /// swrk when the previous one has served its last request. Each swrk is reaped when its
    /// connection ends, at the latest when the client is dropped.
    ///
    /// The swrk is a child of this process, so the client cannot dump itself through it (the
    /// server would be inside the dumped tree).
    pub fn spawn_swrk(criu: impl AsRef<OsStr>) -> Result<Client, ClientError> {
        let criu = criu.as_ref().to_os_string();
        Client::spawn_swrk_with(move || Command::new(&criu))
    }

    /// Like [`spawn_swrk`](Client::spawn_swrk), with the command (program, environment, stdio,
    /// leading arguments) built by `command`; `swrk N` is appended to it.
    pub fn spawn_swrk_with(
        command: impl Fn() -> Command + Send + 'static,
    ) -> Result<Client, ClientError> {
        let connection = Connection::spawn_swrk(command())?;
        Ok(Client::with_endpoint(
            Endpoint::Swrk(Box::new(command)),
            connection,
        ))
    }

    /// Uses an already connected SOCK_SEQPACKET socket (for example one inherited from a parent).
    /// Once the server closes it, later requests fail.
    pub fn from_socket(socket: OwnedFd) -> Client {
        Client::with_endpoint(Endpoint::Socket, Connection::from_socket(socket))
    }

    /// Bounds how long each response may take (`None`, the default, waits forever). An expired
    /// timeout fails the request with a receive error (EAGAIN) and drops the connection.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.timeout = timeout;
        if let Some(connection) = &self.connection {
            connection.set_timeout(timeout)?;
        }
        Ok(())
    }

    /// Whether VERSION, FEATURE_CHECK and CPUINFO_* ask the server to keep the connection open
    /// (`keep_open`), so that the next request needs no new connection or swrk process. On by default.
    pub fn reuse_connections(&mut self, reuse: bool) {
        self.reuse = reuse;
    }

    /// Registers the notify callback: called with the action name and pid at each action point of a
    /// dump, pre-dump or restore; returning `false` makes the server fail the operation. Requests
    /// sent while a callback is registered set `notify_scripts` themselves.
    pub fn on_notify(
        &mut self,
        mut callback: impl FnMut(&str, Option<i32>) -> bool + Send + 'static,
    ) {
        self.notify = Some(Box::new(move |notification: Notification| {
            callback(&notification.script, notification.pid)
        }));
    }

    /// Like [`on_notify`](Client::on_notify), with the whole [`Notification`], including the
    /// descriptor the server may attach (`orphan-pts-master`).
    pub fn on_notification(&mut self, callback: impl FnMut(Notification) -> bool + Send + 'static) {
        self.notify = Some(Box::new(callback));
    }

    /// Removes the notify callback.
    pub fn clear_notify(&mut self) {
        self.notify = None;
    }

    /// The pid of the current swrk child, when there is a live swrk connection.
    pub fn swrk_pid(&self) -> Option<u32> {
        self.connection.as_ref().and_then(Connection::swrk_pid)
    }

    /// The socket of the current connection, if one is open.
    pub fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.connection.as_ref().map(Connection::socket)
    }

    /// How the last swrk child ended (reaped when its connection ended).
    pub fn last_swrk_status(&self) -> Option<ExitStatus> {
        self.last_swrk_status
    }

    /// Ends the current connection now (a keep_open swrk exits), reaping its swrk child.
    pub fn disconnect(&mut self) -> Option<ExitStatus> {
        let status = self.connection.take().and_then(Connection::close);
        if status.is_some() {
            self.last_swrk_status = status;
        }
        status
    }

    /// VERSION: the server's version.
    pub fn version(&mut self) -> Result<Version, ClientError> {
        let resp = self.request(self.kept_open(CriuReqType::Version))?;
        let version = resp.version.ok_or(ClientError::MissingField {
            request: CriuReqType::Version.into(),
            field: "version",
        })?;
        Ok(Version {
            major: version.major_number,
            minor: version.minor_number,
            sublevel: version.sublevel,
            extra: version.extra,
            gitid: version.gitid,
            name: version.name,
        })
    }

    /// CHECK: whether the kernel supports checkpoint/restore (`Failed` lists the first problem).
    pub fn check(&mut self) -> Result<(), ClientError> {
        self.request(request(CriuReqType::Check)).map(drop)
    }

    /// CHECK with options (a log file needs an images or work directory).
    pub fn check_with(&mut self, options: &Options<'_>) -> Result<(), ClientError> {
        self.request(with_options(CriuReqType::Check, options))
            .map(drop)
    }

    /// FEATURE_CHECK: tests the features set in `wanted`; the others come back false.
    pub fn feature_check(&mut self, wanted: Features) -> Result<Features, ClientError> {
        let mut req = self.kept_open(CriuReqType::FeatureCheck);
        req.features = Some(wanted.to_proto());
        let resp = self.request(req)?;
        let features = resp.features.ok_or(ClientError::MissingField {
            request: CriuReqType::FeatureCheck.into(),
            field: "features",
        })?;
        Ok(Features::from_proto(&features))
    }

    /// DUMP. Without `pid` in `options` the server dumps this process; then, unless
    /// `leave_running` is set, a successful dump ends this process and only a restored copy returns,
    /// with `restored` = true.
    pub fn dump(&mut self, options: &Options<'_>) -> Result<DumpOutcome, ClientError> {
        let req = self.with_notify(with_options(CriuReqType::Dump, options));
        let resp = self.request(req)?;
        Ok(DumpOutcome {
            restored: resp.dump.and_then(|dump| dump.restored) == Some(true),
        })
    }

    /// PRE_DUMP: one memory pre-dump iteration. The server keeps the connection for the next
    /// `pre_dump` (with new options, usually a new images dir and `parent_img`) or the final
    /// [`dump`](Client::dump); any other request in between is refused ("Bad req seq").
    pub fn pre_dump(&mut self, options: &Options<'_>) -> Result<(), ClientError> {
        let req = self.with_notify(with_options(CriuReqType::PreDump, options));
        self.request(req).map(drop)
    }

    /// SINGLE_PRE_DUMP: one pre-dump on its own connection (what libcriu's `criu_pre_dump` sends).
    pub fn single_pre_dump(&mut self, options: &Options<'_>) -> Result<(), ClientError> {
        let req = self.with_notify(with_options(CriuReqType::SinglePreDump, options));
        self.request(req).map(drop)
    }

    /// RESTORE: returns the pid of the restored tree's root.
    pub fn restore(&mut self, options: &Options<'_>) -> Result<i32, ClientError> {
        let req = self.with_notify(with_options(CriuReqType::Restore, options));
        let resp = self.request(req)?;
        let restored = resp.restore.ok_or(ClientError::MissingField {
            request: CriuReqType::Restore.into(),
            field: "restore",
        })?;
        Ok(restored.pid)
    }

    /// WAIT_PID: waits for `pid`, a child of the server's worker for this connection (the page
    /// server of [`page_server_chld`](Client::page_server_chld)); returns the raw wait status.
    pub fn wait_pid(&mut self, pid: u32) -> Result<i32, ClientError> {
        let mut req = request(CriuReqType::WaitPid);
        req.pid = Some(pid);
        let resp = self.request(req)?;
        resp.status.ok_or(ClientError::MissingField {
            request: CriuReqType::WaitPid.into(),
            field: "status",
        })
    }

    /// CPUINFO_DUMP: writes `cpuinfo.img` into the images directory.
    pub fn cpuinfo_dump(&mut self, options: &Options<'_>) -> Result<(), ClientError> {
        let mut req = with_options(CriuReqType::CpuinfoDump, options);
        req.keep_open = self.kept_open(CriuReqType::CpuinfoDump).keep_open;
        self.request(req).map(drop)
    }

    /// CPUINFO_CHECK: checks this CPU against `cpuinfo.img` (ENOTSUP in `cr_errno` on a mismatch).
    pub fn cpuinfo_check(&mut self, options: &Options<'_>) -> Result<(), ClientError> {
        let mut req = with_options(CriuReqType::CpuinfoCheck, options);
        req.keep_open = self.kept_open(CriuReqType::CpuinfoCheck).keep_open;
        self.request(req).map(drop)
    }

    /// PAGE_SERVER: starts a daemonized page server.
    pub fn page_server(&mut self, options: &Options<'_>) -> Result<PageServerInfo, ClientError> {
        self.page_server_request(CriuReqType::PageServer, options)
    }

    /// PAGE_SERVER_CHLD: starts a page server as a child of this connection's worker and keeps the
    /// connection, so that [`wait_pid`](Client::wait_pid) can collect it.
    pub fn page_server_chld(
        &mut self,
        options: &Options<'_>,
    ) -> Result<PageServerInfo, ClientError> {
        self.page_server_request(CriuReqType::PageServerChld, options)
    }

    fn page_server_request(
        &mut self,
        kind: CriuReqType,
        options: &Options<'_>,
    ) -> Result<PageServerInfo, ClientError> {
        let mut req = with_options(kind, options);
        req.keep_open = Some(true);
        let resp = self.request(req)?;
        let ps = resp.ps.unwrap_or_default();
        Ok(PageServerInfo {
            pid: ps.pid,
            port: ps.port,
        })
    }

    /// Sends any request and returns the final answer (NOTIFY messages before it go to the notify
    /// callback). The answer is checked like the typed requests check theirs: EMPTY+failure, a
    /// different type or success=false are errors.
    pub fn request(&mut self, req: CriuReq) -> Result<CriuResp, ClientError> {
        let sent = RequestName(req.r#type);
        let resp = self.exchange(req)?;
        classify(sent, resp)
    }

    /// Sends any request and returns the final answer unchecked.
    pub fn exchange(&mut self, req: CriuReq) -> Result<CriuResp, ClientError> {
        let sent = RequestName(req.r#type);
        let keeps_connection =
            req.keep_open == Some(true) || req.r#type == CriuReqType::PreDump as i32;
        let connection = self.ensure_connection(sent)?;
        if let Err(error) = connection.send(&req) {
            return Err(self.fail_connection(sent, error));
        }
        let resp = loop {
            let Some(connection) = self.connection.as_ref() else {
                return Err(ClientError::Closed {
                    request: sent,
                    swrk_status: None,
                });
            };
            let received = match connection.recv() {
                Ok(Some(received)) => received,
                Ok(None) => {
                    let swrk_status = self.disconnect();
                    return Err(ClientError::Closed {
                        request: sent,
                        swrk_status,
                    });
                }
                Err(error) => return Err(self.fail_connection(sent, error)),
            };
            if received.resp.r#type != CriuReqType::Notify as i32 {
                break received.resp;
            }
            let notify = received.resp.notify.unwrap_or_default();
            let notification = Notification {
                script: notify.script.unwrap_or_default(),
                pid: notify.pid,
                fd: received.fd,
            };
            // Without a callback the client asked for no notifications; accept whatever arrives.
            let accepted = self
                .notify
                .as_mut()
                .is_none_or(|callback| callback(notification));
            if let Err(error) = connection.send(&notify_answer(accepted)) {
                return Err(self.fail_connection(sent, error));
            }
        };
        if !(keeps_connection && resp.success) {
            self.disconnect();
        }
        Ok(resp)
    }

    /// Drops the connection after a transport error. A peer that went away (EPIPE on send,
    /// ECONNRESET when it closed with our request unread) is reported as [`ClientError::Closed`].
    fn fail_connection(&mut self, request: RequestName, error: ConnectionError) -> ClientError {
        let swrk_status = self.disconnect();
        match error {
            ConnectionError::Send {
                errno: Errno::EPIPE | Errno::ECONNRESET,
                ..
            }
            | ConnectionError::Recv {
                errno: Errno::ECONNRESET,
                ..
            } => ClientError::Closed {
                request,
                swrk_status,
            },
            other => other.into(),
        }
    }

    /// The live connection, opening a new one when the previous one is spent.
    fn ensure_connection(&mut self, request: RequestName) -> Result<&Connection, ClientError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => match &self.endpoint {
                Endpoint::Service(path) => Connection::connect(path)?,
                Endpoint::Swrk(command) => Connection::spawn_swrk(command())?,
                Endpoint::Socket => {
                    return Err(ClientError::Closed {
                        request,
                        swrk_status: None,
                    })
                }
            },
        };
        connection.set_timeout(self.timeout)?;
        Ok(self.connection.insert(connection))
    }

    fn kept_open(&self, kind: CriuReqType) -> CriuReq {
        let mut req = request(kind);
        if self.reuse {
            req.keep_open = Some(true);
        }
        req
    }

    fn with_notify(&self, mut req: CriuReq) -> CriuReq {
        if self.notify.is_some() {
            if let Some(opts) = req.opts.as_mut() {
                opts.notify_scripts.get_or_insert(true);
            }
        }
        req
    }
}

fn request(kind: CriuReqType) -> CriuReq {
    CriuReq {
        r#type: kind as i32,
        ..CriuReq::default()
    }
}

fn with_options(kind: CriuReqType, options: &Options<'_>) -> CriuReq {
    CriuReq {
        opts: Some(options.as_proto().clone()),
        ..request(kind)
    }
}

/// The answer type each request expects (both page server requests are answered PAGE_SERVER).
fn expected_answer(sent: RequestName) -> RequestName {
    if sent.0 == CriuReqType::PageServerChld as i32 {
        CriuReqType::PageServer.into()
    } else {
        sent
    }
}

/// Turns an answer into the typed outcome of the request `sent`.
fn classify(sent: RequestName, resp: CriuResp) -> Result<CriuResp, ClientError> {
    let answer = RequestName(resp.r#type);
    if answer.0 == CriuReqType::Empty as i32 && !resp.success {
        return Err(ClientError::Invalid {
            request: sent,
            cr_errno: resp.cr_errno,
            cr_errmsg: resp.cr_errmsg,
        });
    }
    if answer != expected_answer(sent) {
        return Err(ClientError::UnexpectedAnswer {
            request: sent,
            answer,
        });
    }
    if !resp.success {
        return Err(ClientError::Failed {
            request: sent,
            cr_errno: resp.cr_errno,
            cr_errmsg: resp.cr_errmsg,
        });
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(kind: CriuReqType, success: bool) -> CriuResp {
        CriuResp {
            r#type: kind as i32,
            success,
            ..CriuResp::default()
        }
    }

    #[test]
    fn empty_failure_is_an_invalid_request_with_the_servers_errno() {
        let mut resp = answer(CriuReqType::Empty, false);
        resp.cr_errno = Some(libc::EBADRQC);
        resp.cr_errmsg = Some("Error (cr-service): Bad req seq\n".into());
        let error = classify(CriuReqType::Version.into(), resp).unwrap_err();
        assert!(matches!(error, ClientError::Invalid { .. }), "{error:?}");
        assert_eq!(error.cr_errno(), Some(libc::EBADRQC));
        assert_eq!(error.cr_errmsg(), Some("Error (cr-service): Bad req seq\n"));
        let text = error.to_string();
        assert!(
            text.contains("VERSION") && text.contains("Bad req seq") && text.contains("56"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_request_refused_with_empty_is_invalid_too() {
        let error =
            classify(CriuReqType::Empty.into(), answer(CriuReqType::Empty, false)).unwrap_err();
        assert!(matches!(error, ClientError::Invalid { .. }), "{error:?}");
    }

    #[test]
    fn failure_of_the_right_type_carries_errno_and_message() {
        let mut resp = answer(CriuReqType::Dump, false);
        resp.cr_errno = Some(libc::ESRCH);
        resp.cr_errmsg = Some("No process 77\n".into());
        let error = classify(CriuReqType::Dump.into(), resp).unwrap_err();
        assert!(matches!(error, ClientError::Failed { .. }));
        assert_eq!(error.cr_errno(), Some(libc::ESRCH));
        assert!(error
            .to_string()
            .contains("DUMP request failed: cr_errno 3"));
    }

    #[test]
    fn answer_of_another_type_is_unexpected() {
        let error = classify(
            CriuReqType::Check.into(),
            answer(CriuReqType::Version, true),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ClientError::UnexpectedAnswer { request, answer }
                if request == CriuReqType::Check.into() && answer == CriuReqType::Version.into()
        ));
    }

    #[test]
    fn page_server_chld_is_answered_as_page_server() {
        assert!(classify(
            CriuReqType::PageServerChld.into(),
            answer(CriuReqType::PageServer, true)
        )
        .is_ok());
        assert!(classify(
            CriuReqType::PageServerChld.into(),
            answer(CriuReqType::PageServerChld, true)
        )
        .is_err());
    }

    #[test]
    fn unknown_request_types_print_as_numbers() {
        assert_eq!(RequestName(77).to_string(), "type 77");
        assert_eq!(RequestName(13).to_string(), "SINGLE_PRE_DUMP");
    }

    #[test]
    fn version_code_rounds_git_builds_up_to_the_next_minor() {
        let mut version = Version {
            major: 4,
            minor: 2,
            sublevel: None,
            extra: None,
            gitid: None,
            name: Some("CRIUTIBILITY".into()),
        };
        assert_eq!(version.code(), 40200);
        version.sublevel = Some(1);
        assert_eq!(version.code(), 40201);
        version.gitid = Some("v4.2-22-g2cf8f13ca".into());
        assert_eq!(version.code(), 40300);
    }

    #[test]
    fn features_round_trip_through_the_wire_message() {
        let wanted = Features {
            mem_track: true,
            lazy_pages: false,
            pidfd_store: true,
        };
        assert_eq!(Features::from_proto(&wanted.to_proto()), wanted);
        assert_eq!(
            Features::from_proto(&CriuFeatures::default()),
            Features::default()
        );
    }
}
