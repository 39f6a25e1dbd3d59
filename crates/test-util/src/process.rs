//! Real target processes for the tests: started detached, watched through
//! `/proc`, killed.
//!
//! A process a test dumps should look like one a user dumps: the leader of
//! its own session (a dump root without `--shell-job` must be one), not a
//! child of the test (the dump may kill it and the restore recreates it
//! under another parent, so the test deals in pids, never `Child`), and
//! holding no descriptor but 0-2 (libtest runs tests on threads of one
//! process; a socket or pipe another test is passing to its own child would
//! otherwise leak in, be dumped, and keep that other test's pipe open).
//! [`DetachedCommand`] starts such a process with a small launcher run by
//! `/usr/bin/python3`, which double-forks, calls `setsid`, closes every
//! other descriptor and execs the program.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The interpreter that runs [`LAUNCHER`]; the tests need it anyway.
const PYTHON: &str = "/usr/bin/python3";

/// argv: pidfile, stdout file ("" for /dev/null), program, argv of the program.
/// Forks so the process is not our child, becomes a session leader, keeps only
/// 0-2 (the caller gives /dev/null), publishes its pid atomically, then execs.
const LAUNCHER: &str = r#"
import os, sys
pidfile, stdout, program = sys.argv[1], sys.argv[2], sys.argv[3]
if os.fork():
    os._exit(0)
os.setsid()
if stdout:
    fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
os.closerange(3, 1 << 16)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
os.execv(program, sys.argv[4:])
"#;

/// How long [`DetachedCommand::spawn`] waits for the launcher to publish the pid.
const PID_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`spawn_detached_sleep_as`] waits for the launcher to exec `sleep`.
const EXEC_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`kill_and_wait_gone`] waits for `/proc/PID` to go away.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// A program to start detached: session leader, not our child, stdin and
/// stderr on /dev/null, stdout on /dev/null or appended to a file, no other
/// descriptor.
#[derive(Debug, Clone)]
pub struct DetachedCommand {
    program: PathBuf,
    args: Vec<OsString>,
    stdout: Option<PathBuf>,
    user: Option<u32>,
}

impl DetachedCommand {
    /// Runs `program` (an absolute path: it is exec'd without a PATH search);
    /// its `argv[0]` is the file name of `program`.
    pub fn new(program: impl Into<PathBuf>) -> DetachedCommand {
        DetachedCommand {
            program: program.into(),
            args: Vec::new(),
            stdout: None,
            user: None,
        }
    }

    /// Appends one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut DetachedCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut DetachedCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Appends the program's stdout to `path` (created 0644 when missing)
    /// instead of sending it to /dev/null.
    pub fn stdout_to(&mut self, path: impl Into<PathBuf>) -> &mut DetachedCommand {
        self.stdout = Some(path.into());
        self
    }

    /// Runs the launcher, hence the program, with uid and gid `id`. A
    /// [`stdout_to`](Self::stdout_to) file must be writable by that user.
    pub fn user(&mut self, id: u32) -> &mut DetachedCommand {
        self.user = Some(id);
        self
    }

    /// Starts the program and returns its pid once the launcher has
    /// published it. The pid is final (exec keeps it), but the program may
    /// not have exec'd yet: wait for whatever state the test needs.
    ///
    /// Panics when /usr/bin/python3 is missing or the launch fails.
    pub fn spawn(&self) -> i32 {
        let dir = tempfile::tempdir().expect("a temporary directory for the pid file");
        let pidfile = dir.path().join("pid");
        let mut launcher = Command::new(PYTHON);
        if let Some(id) = self.user {
            launcher.uid(id).gid(id);
            std::os::unix::fs::chown(dir.path(), Some(id), Some(id))
                .expect("hand the pid file's directory to the user");
        }
        let argv0 = self.program.file_name().unwrap_or(self.program.as_os_str());
        let status = launcher
            .arg("-c")
            .arg(LAUNCHER)
            .arg(&pidfile)
            .arg(self.stdout.as_deref().unwrap_or(Path::new("")))
            .arg(&self.program)
            .arg(argv0)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("/usr/bin/python3 is needed to launch test processes");
        assert!(
            status.success(),
            "the launcher of {} failed: {status}",
            self.program.display()
        );
        let mut pid = 0;
        assert!(
            wait_until(PID_TIMEOUT, || {
                pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0);
                pid != 0
            }),
            "{} did not start within {PID_TIMEOUT:?}",
            self.program.display()
        );
        pid
    }
}

/// A detached `sleep 1000` (see [`spawn_detached_sleep`]): a dump target
/// that stays put for the whole test.
pub fn spawn_sleeper() -> i32 {
    spawn_detached_sleep(1000)
}

/// A detached `sleep SECONDS` ([`DetachedCommand`]), returned once it runs
/// `sleep` (its comm says so).
pub fn spawn_detached_sleep(seconds: u32) -> i32 {
    spawn_detached_sleep_as(seconds, None)
}

/// Same, running as uid and gid `user` when given.
pub fn spawn_detached_sleep_as(seconds: u32, user: Option<u32>) -> i32 {
    let mut command = DetachedCommand::new("/bin/sleep");
    command.arg(seconds.to_string());
    if let Some(id) = user {
        command.user(id);
    }
    let pid = command.spawn();
    assert!(
        wait_until(EXEC_TIMEOUT, || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|comm| comm.trim() == "sleep")
                .unwrap_or(false)
        }),
        "pid {pid} did not exec sleep within {EXEC_TIMEOUT:?}"
    );
    pid
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` has passed
/// (then whatever one last call says).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether `/proc/PID` exists (a zombie still does).
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends SIGKILL to `pid` and waits up to 10 s for it to be gone (reaped by
/// its parent, which for a detached process is init or a subreaper). Does not
/// fail when it is already gone or stays.
pub fn kill_and_wait_gone(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_until(GONE_TIMEOUT, || !alive(pid));
}

/// Whether `pid` sleeps in pause(2) (x86_64 syscall 34) with no tracer: its
/// memory does not change, and a signal sent now reaches its handler
/// (rather than a dumper that still has it stopped).
pub fn in_pause_and_untraced(pid: i32) -> bool {
    let in_pause = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .map(|syscall| syscall.starts_with("34 "))
        .unwrap_or(false);
    let untraced = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|status| status.contains("TracerPid:\t0\n"))
        .unwrap_or(false);
    in_pause && untraced
}
