//! [`Options`]: a builder for `criu_opts`, the options of one request.
//!
//! Directories are passed the way CRIU clients pass them: as descriptor numbers in the client's own
//! table, which the server reopens through `/proc/<client pid>/fd/<n>`. The builder borrows those
//! descriptors for its lifetime `'fd`, so they cannot be closed while a request that names them is
//! still being served.

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};

use criu_proto::{CriuCgMode, CriuOpts};

/// The options of one request (`criu_opts`), built from a default where `images_dir_fd` is -1 ("not
/// given"), as pycriu and libcriu start.
///
/// ```
/// use std::os::fd::AsFd;
/// let images = std::fs::File::open("/tmp").unwrap();
/// let options = criu_client::Options::new()
///     .images_dir_fd(images.as_fd())
///     .pid(1234)
///     .leave_running(true)
///     .log_file("dump.log")
///     .log_level(4);
/// assert_eq!(options.as_proto().pid, Some(1234));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options<'fd> {
    proto: CriuOpts,
    borrowed: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> Options<'fd> {
    /// Options with nothing set (`images_dir_fd` = -1, everything else absent).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from a raw `criu_opts`. Any descriptor numbers in it are the caller's to keep open.
    pub fn from_proto(proto: CriuOpts) -> Self {
        Options {
            proto,
            borrowed: PhantomData,
        }
    }

    /// The message that will be sent.
    pub fn as_proto(&self) -> &CriuOpts {
        &self.proto
    }

    /// Gives the message back.
    pub fn into_proto(self) -> CriuOpts {
        self.proto
    }

    /// Sets any field this builder has no method for.
    pub fn with_proto(mut self, edit: impl FnOnce(&mut CriuOpts)) -> Self {
        edit(&mut self.proto);
        self
    }

    /// The images directory, as an open directory descriptor of this process (field 1).
    pub fn images_dir_fd(mut self, dir: BorrowedFd<'fd>) -> Self {
        self.proto.images_dir_fd = dir.as_raw_fd();
        self
    }

    /// The images directory as a path on the server's side (field 68; used only without
    /// `images_dir_fd`).
    pub fn images_dir(mut self, path: impl Into<String>) -> Self {
        self.proto.images_dir = Some(path.into());
        self
    }

    /// The work directory (logs, and the server's current directory), as a descriptor of this process.
    pub fn work_dir_fd(mut self, dir: BorrowedFd<'fd>) -> Self {
        self.proto.work_dir_fd = Some(dir.as_raw_fd());
        self
    }

    /// The root of the tree to dump; absent means the calling process itself (a self-dump).
    pub fn pid(mut self, pid: i32) -> Self {
        self.proto.pid = Some(pid);
        self
    }

    /// Leaves the tree running after a dump.
    pub fn leave_running(mut self, yes: bool) -> Self {
        self.proto.leave_running = Some(yes);
        self
    }

    /// Leaves the tree stopped after a dump or restore (wins over `leave_running`).
    pub fn leave_stopped(mut self, yes: bool) -> Self {
        self.proto.leave_stopped = Some(yes);
        self
    }

    /// The tree is a shell job (its session or process group leader is outside it).
    pub fn shell_job(mut self, yes: bool) -> Self {
        self.proto.shell_job = Some(yes);
        self
    }

    /// Dumps unix sockets connected to the outside as external.
    pub fn ext_unix_sk(mut self, yes: bool) -> Self {
        self.proto.ext_unix_sk = Some(yes);
        self
    }

    /// Dumps and restores established TCP connections.
    pub fn tcp_established(mut self, yes: bool) -> Self {
        self.proto.tcp_established = Some(yes);
        self
    }

    /// Dumps and restores file locks.
    pub fn file_locks(mut self, yes: bool) -> Self {
        self.proto.file_locks = Some(yes);
        self
    }

    /// Log verbosity, 0 (messages only) to 4 (debug); the server's default is 2.
    pub fn log_level(mut self, level: i32) -> Self {
        self.proto.log_level = Some(level);
        self
    }

    /// Log file name, created in the work directory. It may not contain '/': the server rejects that
    /// with EBADRQC.
    pub fn log_file(mut self, name: impl Into<String>) -> Self {
        self.proto.log_file = Some(name.into());
        self
    }

    /// Logs to the server's stderr instead of a file.
    pub fn log_to_stderr(mut self, yes: bool) -> Self {
        self.proto.log_to_stderr = Some(yes);
        self
    }

    /// The previous (pre-)dump's directory, relative to the images directory; becomes the `parent`
    /// symlink for incremental dumps.
    pub fn parent_img(mut self, path: impl Into<String>) -> Self {
        self.proto.parent_img = Some(path.into());
        self
    }

    /// Tracks memory changes (soft-dirty) for later incremental dumps.
    pub fn track_mem(mut self, yes: bool) -> Self {
        self.proto.track_mem = Some(yes);
        self
    }

    /// Root directory to restore into.
    pub fn root(mut self, path: impl Into<String>) -> Self {
        self.proto.root = Some(path.into());
        self
    }

    /// A CRIU config file read by the server after the request's options, so it overrides them.
    pub fn config_file(mut self, path: impl Into<String>) -> Self {
        self.proto.config_file = Some(path.into());
        self
    }

    /// Adds one `--external` resource description.
    pub fn external(mut self, resource: impl Into<String>) -> Self {
        self.proto.external.push(resource.into());
        self
    }

    /// Cgroup handling mode.
    pub fn manage_cgroups_mode(mut self, mode: CriuCgMode) -> Self {
        self.proto.manage_cgroups_mode = Some(mode as i32);
        self
    }

    /// Command the server execs after a successful restore.
    pub fn exec_cmd<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.proto.exec_cmd = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Where a page server listens (PAGE_SERVER*: port 0 picks a free port) or where a dump sends
    /// its pages (DUMP/PRE_DUMP with a page server on the other side).
    pub fn page_server(mut self, address: Option<&str>, port: u16) -> Self {
        let ps = self.proto.ps.get_or_insert_with(Default::default);
        ps.address = address.map(str::to_owned);
        ps.port = Some(i32::from(port));
        self
    }

    /// Asks the server for NOTIFY round trips at each action point. [`crate::Client`] sets this itself
    /// when a notify callback is registered.
    pub fn notify_scripts(mut self, yes: bool) -> Self {
        self.proto.notify_scripts = Some(yes);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use prost::Message;

    use super::*;

    #[test]
    fn new_options_send_images_dir_fd_minus_one_like_pycriu() {
        let encoded = Options::new().into_proto().encode_to_vec();
        // Field 1, varint -1: sign-extended to ten bytes, as every proto2 int32 is.
        assert_eq!(encoded[0], 0x08);
        assert_eq!(
            CriuOpts::decode(encoded.as_slice()).unwrap().images_dir_fd,
            -1
        );
    }

    #[test]
    fn images_dir_fd_is_the_descriptor_number_in_this_process() {
        let dir = std::fs::File::open("/").unwrap();
        let options = Options::new()
            .images_dir_fd(dir.as_fd())
            .work_dir_fd(dir.as_fd());
        assert_eq!(options.as_proto().images_dir_fd, dir.as_raw_fd());
        assert_eq!(options.as_proto().work_dir_fd, Some(dir.as_raw_fd()));
    }

    #[test]
    fn setters_fill_exactly_their_fields() {
        let options = Options::new()
            .pid(42)
            .leave_running(true)
            .shell_job(true)
            .log_file("x.log")
            .log_level(4)
            .parent_img("../pre")
            .external("mnt[]:m")
            .external("dev[1/2]:d")
            .exec_cmd(["/bin/true", "arg"])
            .manage_cgroups_mode(CriuCgMode::Soft)
            .page_server(Some("10.0.0.1"), 1234);
        let proto = options.into_proto();
        assert_eq!(proto.pid, Some(42));
        assert_eq!(proto.leave_running, Some(true));
        assert_eq!(proto.shell_job, Some(true));
        assert_eq!(proto.log_file.as_deref(), Some("x.log"));
        assert_eq!(proto.log_level, Some(4));
        assert_eq!(proto.parent_img.as_deref(), Some("../pre"));
        assert_eq!(proto.external, ["mnt[]:m", "dev[1/2]:d"]);
        assert_eq!(proto.exec_cmd, ["/bin/true", "arg"]);
        assert_eq!(proto.manage_cgroups_mode, Some(CriuCgMode::Soft as i32));
        let ps = proto.ps.as_ref().unwrap();
        assert_eq!(
            (ps.address.as_deref(), ps.port),
            (Some("10.0.0.1"), Some(1234))
        );
        assert_eq!(proto.images_dir_fd, -1);
        assert_eq!(proto.tcp_established, None);
    }
}
