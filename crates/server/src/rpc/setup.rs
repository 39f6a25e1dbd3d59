//! Turning a request's `criu_opts` into [`Options`], then resolving the
//! images dir, work dir and log file the way CRIU's `setup_opts_from_req`
//! does (precedence: default configs < `$CRIU_CONFIG_FILE` < RPC options <
//! `opts.config_file`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use criu_proto::{CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuPreDumpMode};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use thiserror::Error;

use crate::config::{self, ConfigError};
use crate::logging;
use crate::options::{
    cpu_cap, CgroupMode, CgroupRoot, FinalState, InheritFd, JoinNamespace, NetworkLock, Options,
    PreDumpMode,
};
use crate::rpc::conn::Peer;

/// Default log name when the request does not give one.
pub const DEFAULT_LOG_FILE: &str = "criu.log";

/// Why a request's options were refused (answered with cr_errno EBADRQC).
#[derive(Debug, Error)]
pub enum SetupError {
    /// log_file must be a plain name.
    #[error("No subdirs are allowed in log_file name: {0}")]
    LogFileSubdir(String),
    /// An enum field carries a value we do not know.
    #[error("Invalid value {value} for criu_opts.{field}")]
    BadEnum {
        /// Field name.
        field: &'static str,
        /// The value.
        value: i32,
    },
    /// A swrk-only option sent to the standalone service.
    #[error("{0} is not allowed in standalone service")]
    SwrkOnly(&'static str),
    /// empty_ns with something other than CLONE_NEWNET.
    #[error("Unsupported empty_ns flags {0:#x} (only CLONE_NEWNET is allowed)")]
    EmptyNs(u32),
    /// The RPC config file is bad.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No images dir.
    #[error("Neither images_dir_fd nor images_dir was passed by RPC client.")]
    NoImagesDir,
    /// The images dir cannot be opened.
    #[error("Can't open images directory {path}: {source}")]
    OpenImagesDir {
        /// Path tried.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// No work dir could be derived.
    #[error("images-dir or work-dir is required when using log file")]
    NoWorkDir,
    /// chdir failed.
    #[error("Can't chdir to work_dir {path}: {source}")]
    Chdir {
        /// Path tried.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The log file cannot be opened.
    #[error(transparent)]
    Log(#[from] logging::LogError),
    /// The parent symlink cannot be created.
    #[error("Can't link parent snapshot {target} in {dir}: {source}")]
    ParentLink {
        /// Target.
        target: String,
        /// Images dir.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A client asked for a directory it does not own.
    #[error("{what} {path} is not owned by the client (uid {uid})")]
    NotOwned {
        /// "images dir" or "work dir".
        what: &'static str,
        /// Path.
        path: PathBuf,
        /// Client uid.
        uid: u32,
    },
}

/// Which request the options are set up for (CRIU's `opts.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMode {
    /// DUMP.
    Dump,
    /// PRE_DUMP / SINGLE_PRE_DUMP.
    PreDump,
    /// RESTORE.
    Restore,
    /// CHECK: no images dir needed.
    Check,
    /// PAGE_SERVER(_CHLD).
    PageServer,
    /// CPUINFO_DUMP / CPUINFO_CHECK.
    Cpuinfo,
}

/// A request's fully resolved setup.
#[derive(Debug)]
pub struct RequestSetup {
    /// The options after every layer.
    pub options: Options,
    /// The images dir, open (None for CHECK).
    pub images_dir: Option<OwnedFd>,
    /// The images dir path used to open it.
    pub images_dir_path: Option<PathBuf>,
    /// The work dir we chdir'ed to (None in CHECK without a log file).
    pub work_dir: Option<PathBuf>,
    /// Pid to dump (RPC pid or the peer).
    pub pid: i32,
}

/// Applies the RPC options onto `options` (CRIU's "has_" semantics: an
/// absent field leaves the lower layer's value).
pub fn apply_rpc_options(
    options: &mut Options,
    req: &CriuOpts,
    swrk: bool,
) -> Result<(), SetupError> {
    if let Some(v) = req.unprivileged {
        options.unprivileged = v;
    }
    if req.leave_running == Some(true) {
        options.final_state = FinalState::Alive;
    }
    if req.leave_stopped == Some(true) {
        options.final_state = FinalState::Stopped;
    }
    if let Some(v) = req.ext_unix_sk {
        options.ext_unix_sk = v;
        options
            .ext_unix_sk_inodes
            .extend(req.unix_sk_ino.iter().map(|u| u.inode));
    }
    if let Some(root) = &req.root {
        options.root = Some(PathBuf::from(root));
    }
    if let Some(v) = req.rst_sibling {
        if !swrk {
            return Err(SetupError::SwrkOnly("rst_sibling"));
        }
        options.restore_sibling = v;
    }
    let bools: [(Option<bool>, &mut bool); 13] = [
        (req.tcp_established, &mut options.tcp_established),
        (req.tcp_skip_in_flight, &mut options.tcp_skip_in_flight),
        (req.tcp_close, &mut options.tcp_close),
        (req.weak_sysctls, &mut options.weak_sysctls),
        (req.evasive_devices, &mut options.evasive_devices),
        (req.shell_job, &mut options.shell_job),
        (req.skip_file_rwx_check, &mut options.skip_file_rwx_check),
        (req.file_locks, &mut options.file_locks),
        (req.track_mem, &mut options.track_mem),
        (req.link_remap, &mut options.link_remap),
        (req.auto_dedup, &mut options.auto_dedup),
        (req.force_irmap, &mut options.force_irmap),
        (req.lazy_pages, &mut options.lazy_pages),
    ];
    for (value, slot) in bools {
        if let Some(v) = value {
            *slot = v;
        }
    }
    if !req.exec_cmd.is_empty() {
        options.exec_cmd = req.exec_cmd.clone();
    }
    if let Some(mode) = req.pre_dump_mode {
        options.pre_dump_mode = match CriuPreDumpMode::try_from(mode) {
            Ok(CriuPreDumpMode::Splice) => PreDumpMode::Splice,
            Ok(CriuPreDumpMode::VmRead) => PreDumpMode::Read,
            Err(_) => {
                return Err(SetupError::BadEnum {
                    field: "pre_dump_mode",
                    value: mode,
                })
            }
        };
    }
    if let Some(method) = req.network_lock {
        options.network_lock = match CriuNetworkLockMethod::try_from(method) {
            Ok(CriuNetworkLockMethod::Iptables) => NetworkLock::Iptables,
            Ok(CriuNetworkLockMethod::Nftables) => NetworkLock::Nftables,
            Ok(CriuNetworkLockMethod::Skip) => NetworkLock::Skip,
            Err(_) => {
                return Err(SetupError::BadEnum {
                    field: "network_lock",
                    value: method,
                })
            }
        };
    }
    if let Some(ps) = &req.ps {
        options.port = ps.port.unwrap_or(0) as u16;
        if !options.lazy_pages {
            options.use_page_server = true;
            options.address = ps.address.clone();
            if let Some(fd) = ps.fd {
                if !swrk {
                    return Err(SetupError::SwrkOnly("ps.fd"));
                }
                options.ps_socket = Some(fd);
            }
        }
    }
    for veth in &req.veths {
        options
            .veth_pairs
            .push((veth.if_in.clone(), veth.if_out.clone()));
    }
    for mount in &req.ext_mnt {
        options
            .ext_mount_map
            .push((mount.key.clone(), mount.val.clone()));
    }
    for join in &req.join_ns {
        options.join_ns.push(JoinNamespace {
            ns: join.ns.clone(),
            ns_file: join.ns_file.clone(),
            extra: join.extra_opt.clone(),
        });
    }
    if !req.inherit_fd.is_empty() && !swrk {
        return Err(SetupError::SwrkOnly("inherit_fd"));
    }
    for inherit in &req.inherit_fd {
        options.inherit_fds.push(InheritFd {
            fd: inherit.fd,
            key: inherit.key.clone(),
        });
    }
    options.external.extend(req.external.iter().cloned());
    for root in &req.cg_root {
        options.cgroup_roots.push(CgroupRoot {
            controller: root.ctrl.clone(),
            path: root.path.clone(),
        });
    }
    options.enable_fs.extend(req.enable_fs.iter().cloned());
    options.skip_mnt.extend(req.skip_mnt.iter().cloned());
    if let Some(cap) = req.cpu_cap {
        options.cpu_cap = cap | cpu_cap::IMAGE;
    }
    if let Some(manage) = req.manage_cgroups {
        options.manage_cgroups = if manage {
            CgroupMode::Soft
        } else {
            CgroupMode::Ignore
        };
    }
    if let Some(mode) = req.manage_cgroups_mode {
        options.manage_cgroups = match CriuCgMode::try_from(mode) {
            Ok(CriuCgMode::Ignore) => CgroupMode::Ignore,
            Ok(CriuCgMode::CgNone) => CgroupMode::None,
            Ok(CriuCgMode::Props) => CgroupMode::Props,
            Ok(CriuCgMode::Soft) => CgroupMode::Soft,
            Ok(CriuCgMode::Full) => CgroupMode::Full,
            Ok(CriuCgMode::Strict) => CgroupMode::Strict,
            Ok(CriuCgMode::Default) => CgroupMode::Default,
            Err(_) => {
                return Err(SetupError::BadEnum {
                    field: "manage_cgroups_mode",
                    value: mode,
                })
            }
        };
    }
    let strings: [(&Option<String>, &mut Option<String>); 7] = [
        (&req.freeze_cgroup, &mut options.freeze_cgroup),
        (&req.lsm_profile, &mut options.lsm_profile),
        (&req.lsm_mount_context, &mut options.lsm_mount_context),
        (&req.cgroup_props, &mut options.cgroup_props),
        (&req.cgroup_props_file, &mut options.cgroup_props_file),
        (&req.cgroup_yard, &mut options.cgroup_yard),
        (&req.tls_cacert, &mut options.tls_files[0]),
    ];
    for (value, slot) in strings {
        if value.is_some() {
            slot.clone_from(value);
        }
    }
    for (index, value) in [&req.tls_cacrl, &req.tls_cert, &req.tls_key]
        .into_iter()
        .enumerate()
    {
        if value.is_some() {
            options.tls_files[index + 1].clone_from(value);
        }
    }
    if req.tls == Some(true) {
        options.tls = true;
    }
    if req.tls_no_cn_verify == Some(true) {
        options.tls_no_cn_verify = true;
    }
    if let Some(timeout) = req.timeout {
        options.timeout = timeout;
    }
    options
        .cgroup_dump_controllers
        .extend(req.cgroup_dump_controller.iter().cloned());
    if let Some(v) = req.auto_ext_mnt {
        options.auto_ext_mnt = v;
    }
    if let Some(v) = req.ext_sharing {
        options.ext_sharing = v;
    }
    if let Some(v) = req.ext_masters {
        options.ext_masters = v;
    }
    if let Some(limit) = req.ghost_limit {
        options.ghost_limit = u64::from(limit);
    }
    if let Some(flags) = req.empty_ns {
        if flags & !(libc::CLONE_NEWNET as u32) != 0 {
            return Err(SetupError::EmptyNs(flags));
        }
        options.empty_ns = flags;
    }
    if let Some(fd) = req.status_fd {
        tracing::warn!("status_fd {fd} is obsoleted and not supported by criu-rs; use the status-ready notification");
    }
    if let Some(fd) = req.pidfd_store_sk {
        tracing::warn!("pidfd_store_sk {fd} is not supported by criu-rs; pid reuse between pre-dumps is not detected");
    }
    if req.orphan_pts_master == Some(true) {
        options.orphan_pts_master = true;
    }
    if let Some(v) = req.display_stats {
        options.display_stats = v;
    }
    options
        .irmap_scan_paths
        .extend(req.irmap_scan_paths.iter().cloned());
    if req.mntns_compat_mode == Some(true) {
        options.mntns_compat_mode = true;
    }
    options.log_level = req.log_level.unwrap_or(2);
    if req.parent_img.is_some() {
        options.prev_images_dir.clone_from(&req.parent_img);
    }
    Ok(())
}

/// Path of another process's descriptor, reopened by path as CRIU does.
pub fn peer_fd_path(peer: &Peer, fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{}/fd/{}", peer.pid, fd))
}

/// Resolves everything for one request. `base` already holds the default
/// config files (and is cloned, so requests never leak into each other).
pub fn setup(
    base: &Options,
    req: Option<&CriuOpts>,
    mode: RequestMode,
    peer: &Peer,
    swrk: bool,
) -> Result<RequestSetup, SetupError> {
    let mut options = base.clone();
    let default_opts = CriuOpts {
        images_dir_fd: -1,
        ..CriuOpts::default()
    };
    let absent = req.is_none();
    let req = req.unwrap_or(&default_opts);
    let pid = match req.pid {
        Some(pid) if pid != 0 => pid,
        _ => peer.pid,
    };

    // CHECK needs nothing unless a log file is asked for.
    if mode == RequestMode::Check
        && (absent || req.log_file.is_none() || req.log_to_stderr == Some(true))
    {
        options.log_level = req.log_level.unwrap_or(2);
        logging::set_level(options.log_level);
        if req.log_to_stderr == Some(true) {
            logging::set_output(logging::Output::Stderr);
        }
        return Ok(RequestSetup {
            options,
            images_dir: None,
            images_dir_path: None,
            work_dir: None,
            pid,
        });
    }

    apply_rpc_options(&mut options, req, swrk)?;

    // The RPC config file overrides everything so far, including the log
    // file, work dir and images dir; those three count only if the file
    // itself sets them.
    let mut conf_log = None;
    let mut conf_work = None;
    let mut conf_images = None;
    if let Some(file) = &req.config_file {
        let saved = (
            options.log_file.take(),
            options.work_dir.take(),
            options.images_dir.take(),
        );
        tracing::debug!("Would overwrite RPC settings with values from {file}");
        config::apply_file(&mut options, Path::new(file))?;
        conf_log = options.log_file.take();
        conf_work = options.work_dir.take();
        conf_images = options.images_dir.take();
        options.log_file = saved.0;
        options.work_dir = saved.1;
        options.images_dir = saved.2;
    }

    let images_dir_path = if let Some(path) = conf_images.clone() {
        Some(path)
    } else if req.images_dir_fd != -1 {
        Some(peer_fd_path(peer, req.images_dir_fd))
    } else if let Some(dir) = &req.images_dir {
        Some(PathBuf::from(dir))
    } else if mode == RequestMode::Check {
        None
    } else {
        return Err(SetupError::NoImagesDir);
    };

    let images_dir = match (&images_dir_path, mode) {
        (Some(path), m) if m != RequestMode::Check => Some(
            nix::fcntl::open(
                path.as_path(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|source| SetupError::OpenImagesDir {
                path: path.clone(),
                source,
            })?,
        ),
        _ => None,
    };
    if let Some(dir) = &images_dir {
        check_owner(dir, peer, "images dir", images_dir_path.as_deref())?;
    }

    if let (Some(parent), Some(dir)) = (&req.parent_img, &images_dir_path) {
        if mode != RequestMode::Check {
            let link = dir.join("parent");
            match std::os::unix::fs::symlink(parent, &link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(SetupError::ParentLink {
                        target: parent.clone(),
                        dir: dir.clone(),
                        source,
                    })
                }
            }
        }
    }

    let work_dir = if let Some(path) = conf_work.clone() {
        Some(path)
    } else if let Some(fd) = req.work_dir_fd {
        Some(peer_fd_path(peer, fd))
    } else if let Some(path) = options.work_dir.clone() {
        Some(path)
    } else {
        images_dir_path.clone()
    };
    let work_dir = work_dir.ok_or(SetupError::NoWorkDir)?;
    std::env::set_current_dir(&work_dir).map_err(|source| SetupError::Chdir {
        path: work_dir.clone(),
        source,
    })?;
    if peer.uid != 0 {
        let here = nix::fcntl::open(
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| SetupError::OpenImagesDir {
            path: work_dir.clone(),
            source,
        })?;
        check_owner(&here, peer, "work dir", Some(&work_dir))?;
    }

    // Logging, CRIU order: config-file log name, RPC log_file (plain name
    // only), log_to_stderr, the lower layers' name, "criu.log".
    let log_target = if let Some(name) = conf_log {
        Some(name)
    } else if let Some(name) = &req.log_file {
        if name.contains('/') {
            return Err(SetupError::LogFileSubdir(name.clone()));
        }
        Some(name.clone())
    } else if req.log_to_stderr == Some(true) {
        None
    } else {
        Some(
            options
                .log_file
                .clone()
                .unwrap_or_else(|| DEFAULT_LOG_FILE.to_string()),
        )
    };
    logging::set_level(options.log_level);
    match &log_target {
        Some(name) => logging::open_file(Path::new(name))?,
        None => logging::set_output(logging::Output::Stderr),
    }
    options.log_file = log_target;
    options.log_to_stderr = options.log_file.is_none();
    options.images_dir.clone_from(&images_dir_path);
    options.work_dir = Some(work_dir.clone());
    options.tree = Some(pid);

    Ok(RequestSetup {
        options,
        images_dir,
        images_dir_path,
        work_dir: Some(work_dir),
        pid,
    })
}

/// A non-root client may only use directories it owns.
fn check_owner(
    dir: &OwnedFd,
    peer: &Peer,
    what: &'static str,
    path: Option<&Path>,
) -> Result<(), SetupError> {
    if peer.uid == 0 {
        return Ok(());
    }
    let owner = nix::sys::stat::fstat(dir).map(|st| st.st_uid).ok();
    if owner == Some(peer.uid) {
        return Ok(());
    }
    Err(SetupError::NotOwned {
        what,
        path: path.map(Path::to_path_buf).unwrap_or_default(),
        uid: peer.uid,
    })
}
