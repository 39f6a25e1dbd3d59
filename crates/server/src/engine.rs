//! The narrow interface between the server (options, RPC, CLI) and the
//! checkpoint/restore engines. The server composes the engines through these
//! traits so each side can be tested alone; [`Engines::builtin`] wires in the
//! engines compiled into this build.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use thiserror::Error;

use crate::options::{FinalState, Options};

/// The notify hook handed to the engines: action name and optional pid;
/// `Err` fails the operation (e.g. "RPC client reported script error").
pub type Notify<'n> = dyn FnMut(&str, Option<i32>) -> Result<(), String> + 'n;

/// An engine failure, with the errno the RPC reply carries as `cr_errno`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct EngineError {
    /// ESRCH, EEXIST, EBADRQC, ... when the failure has one.
    pub errno: Option<i32>,
    /// What went wrong, naming the failing object.
    pub message: String,
}

impl EngineError {
    /// An error without an errno.
    pub fn new(message: impl Into<String>) -> EngineError {
        EngineError {
            errno: None,
            message: message.into(),
        }
    }
}

/// Everything a dump or pre-dump needs besides the options.
#[derive(Debug)]
pub struct DumpJob<'a> {
    /// The resolved options (tree, final state, track_mem, parent, ...).
    pub options: &'a Options,
    /// Root pid of the tree.
    pub pid: i32,
    /// The images directory, open.
    pub images_dir: &'a OwnedFd,
    /// Its path as resolved (for messages).
    pub images_dir_path: PathBuf,
    /// Inode of the RPC socket: a unix socket whose peer has this inode is
    /// the service socket (written as closed with USK_SERVICE).
    pub service_socket_ino: Option<u64>,
    /// A pre-dump (memory only, tree left running).
    pub pre_dump: bool,
}

/// What a dump reports back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOutcome {
    /// Tasks dumped.
    pub tasks: u32,
}

/// Everything a restore needs besides the options.
#[derive(Debug)]
pub struct RestoreJob<'a> {
    /// The resolved options.
    pub options: &'a Options,
    /// The images directory, open.
    pub images_dir: &'a OwnedFd,
    /// Its path as resolved.
    pub images_dir_path: PathBuf,
}

/// What a restore reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// The root task's pid as seen from criu.
    pub root_pid: i32,
}

/// A page server to start.
#[derive(Debug)]
pub struct PageServerJob<'a> {
    /// Address and port come from `options.address` / `options.port`.
    pub options: &'a Options,
    /// Where received pages are written.
    pub images_dir: &'a OwnedFd,
}

/// Dumps and pre-dumps.
pub trait DumpEngine {
    /// Dumps (or pre-dumps) the tree described by `job`.
    fn dump(&self, job: &DumpJob<'_>, notify: &mut Notify<'_>) -> Result<DumpOutcome, EngineError>;
}

/// Restores.
pub trait RestoreEngine {
    /// Restores the tree from `job.images_dir`; the root task becomes a child
    /// of the calling process.
    fn restore(
        &self,
        job: &RestoreJob<'_>,
        notify: &mut Notify<'_>,
    ) -> Result<RestoreOutcome, EngineError>;
}

/// Page server.
pub trait PageServerEngine {
    /// Binds, calls `listening(port)` once it accepts connections, then
    /// serves until the page transfer ends.
    fn serve(
        &self,
        job: &PageServerJob<'_>,
        listening: &mut dyn FnMut(u16),
    ) -> Result<(), EngineError>;
}

/// The engines a server composes.
pub struct Engines {
    /// Dump engine.
    pub dump: Box<dyn DumpEngine>,
    /// Restore engine.
    pub restore: Box<dyn RestoreEngine>,
    /// Page server.
    pub page_server: Box<dyn PageServerEngine>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engines")
    }
}

/// The part of the system this build has no engine for yet: every call fails
/// with a message that says so (never a fake success).
#[derive(Debug, Clone, Copy)]
pub struct Missing(pub &'static str);

impl Missing {
    fn error(&self) -> EngineError {
        EngineError::new(format!(
            "the {} engine is not available in this build of criu-rs",
            self.0
        ))
    }
}

impl DumpEngine for Missing {
    fn dump(
        &self,
        _job: &DumpJob<'_>,
        _notify: &mut Notify<'_>,
    ) -> Result<DumpOutcome, EngineError> {
        Err(self.error())
    }
}

impl RestoreEngine for Missing {
    fn restore(
        &self,
        _job: &RestoreJob<'_>,
        _notify: &mut Notify<'_>,
    ) -> Result<RestoreOutcome, EngineError> {
        Err(self.error())
    }
}

impl PageServerEngine for Missing {
    fn serve(
        &self,
        _job: &PageServerJob<'_>,
        _listening: &mut dyn FnMut(u16),
    ) -> Result<(), EngineError> {
        Err(self.error())
    }
}

impl Engines {
    /// The engines compiled into this build: criu-dump, criu-restore and
    /// the TCP page server.
    pub fn builtin() -> Engines {
        Engines {
            dump: Box::new(PtraceDump),
            restore: Box::new(PtraceRestore),
            page_server: Box::new(crate::page_server::TcpPageServer),
        }
    }
}

fn image_dir(fd: &OwnedFd) -> Result<criu_image::ImageDir, EngineError> {
    let dup = fd
        .try_clone()
        .map_err(|e| EngineError::new(format!("Can't duplicate the images dir fd: {e}")))?;
    criu_image::ImageDir::from_fd(dup).map_err(|e| EngineError {
        errno: e.raw_os_error(),
        message: e.to_string(),
    })
}

/// criu-dump behind [`DumpEngine`].
#[derive(Debug, Clone, Copy)]
pub struct PtraceDump;

impl DumpEngine for PtraceDump {
    fn dump(&self, job: &DumpJob<'_>, notify: &mut Notify<'_>) -> Result<DumpOutcome, EngineError> {
        let options = job.options;
        let mut dump_options = criu_dump::DumpOptions::new(job.pid, image_dir(job.images_dir)?);
        dump_options.leave_running = options.final_state == FinalState::Alive;
        dump_options.leave_stopped = options.final_state == FinalState::Stopped;
        dump_options.shell_job = options.shell_job;
        dump_options.ext_unix_sk = options.ext_unix_sk;
        dump_options.tcp_established = options.tcp_established;
        dump_options.file_locks = options.file_locks;
        dump_options.track_mem = options.track_mem;
        dump_options.parent_img = options.prev_images_dir.clone();
        dump_options.service_socket_ino = job.service_socket_ino;
        dump_options.freeze_cgroup = options.freeze_cgroup.as_ref().map(PathBuf::from);
        dump_options.timeout = Some(std::time::Duration::from_secs(u64::from(options.timeout)));
        dump_options.pre_dump = job.pre_dump;
        if options.use_page_server {
            dump_options.page_server = Some(match options.ps_socket {
                // A socket the caller connected and handed us by number (`--ps-socket`, RPC ps.fd):
                // the dump uses our own copy.
                Some(fd) => criu_dump::PageServerAddr::Connected(
                    crate::sys::dup_inherited_fd(fd).map_err(|e| EngineError {
                        errno: Some(libc::EBADF),
                        message: format!("page-server socket fd {fd}: {e}"),
                    })?,
                ),
                // Without --address CRIU resolves a NULL host, i.e. the loopback address.
                None => criu_dump::PageServerAddr::Tcp {
                    address: options
                        .address
                        .clone()
                        .unwrap_or_else(|| "localhost".to_owned()),
                    port: options.port,
                },
            });
        }
        match criu_dump::dump(&dump_options, notify) {
            Ok(report) => Ok(DumpOutcome {
                tasks: report.pids.len() as u32,
            }),
            Err(error) => Err(EngineError {
                errno: error.errno(),
                message: error.to_string(),
            }),
        }
    }
}

/// criu-restore behind [`RestoreEngine`].
#[derive(Debug, Clone, Copy)]
pub struct PtraceRestore;

impl RestoreEngine for PtraceRestore {
    fn restore(
        &self,
        job: &RestoreJob<'_>,
        notify: &mut Notify<'_>,
    ) -> Result<RestoreOutcome, EngineError> {
        let options = job.options;
        let mut restore_options = criu_restore::RestoreOptions::new(image_dir(job.images_dir)?);
        restore_options.detach = options.restore_detached;
        restore_options.shell_job = options.shell_job;
        restore_options.leave_stopped = options.final_state == FinalState::Stopped;
        restore_options.rst_sibling = options.restore_sibling;
        for inherit in &options.inherit_fds {
            // Our own copy: the number stays valid for the caller.
            let fd = crate::sys::dup_inherited_fd(inherit.fd).map_err(|e| EngineError {
                errno: Some(libc::EBADF),
                message: format!("inherit fd {} for {}: {e}", inherit.fd, inherit.key),
            })?;
            restore_options.inherit_fd.push((inherit.key.clone(), fd));
        }
        match criu_restore::restore(&restore_options, notify) {
            Ok(report) => Ok(RestoreOutcome {
                root_pid: report.root_pid,
            }),
            Err(error) => Err(EngineError {
                errno: error.errno(),
                message: error.to_string(),
            }),
        }
    }
}
