//! Shared by the integration tests: our `criu` and `criu-server` binaries (built on first use), a
//! `criu-server service` per test, and dumpable test processes.
//!
//! Binaries: `$CRIU_RS_CRIU` / `$CRIU_RS_SERVER` when set, else the target directory this test runs
//! from (`target/<profile>/`). Unless `$CRIU_RS_NO_BUILD` is set (`cargo xtask test-rpc` builds them
//! first), the first test runs `cargo build -p criu-cli -p criu-server` into that target directory, so
//! the tests never run against stale binaries.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Paths of the binaries under test.
pub struct Binaries {
    pub criu: PathBuf,
    pub server: PathBuf,
}

fn profile_dir() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn build(profile_dir: &Path) -> Result<(), String> {
    let target_dir = profile_dir.parent().ok_or("no target dir")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["build", "-p", "criu-cli", "-p", "criu-server"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let status = command
        .status()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

/// The binaries, built once per test process.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    let result = BINARIES.get_or_init(|| {
        let dir = profile_dir();
        if std::env::var_os("CRIU_RS_NO_BUILD").is_none() {
            build(&dir)?;
        }
        let pick = |variable: &str, name: &str| {
            std::env::var_os(variable)
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join(name))
        };
        let binaries = Binaries {
            criu: pick("CRIU_RS_CRIU", "criu"),
            server: pick("CRIU_RS_SERVER", "criu-server"),
        };
        for path in [&binaries.criu, &binaries.server] {
            if !path.exists() {
                return Err(format!(
                    "{} does not exist: build it with `cargo build -p criu-cli -p criu-server`",
                    path.display()
                ));
            }
        }
        Ok(binaries)
    });
    match result {
        Ok(binaries) => binaries,
        Err(error) => panic!("{error}"),
    }
}

/// A `criu-server service` in its own temporary directory, stopped with SIGTERM on drop.
pub struct Service {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Service {
    /// Starts the service and waits for its `--status-fd` readiness byte (fd 3 is a pipe to us,
    /// arranged by `sh` since std cannot map descriptors).
    pub fn start() -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("criu_service.socket");
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"exec "$0" service --address "$1" --status-fd 3 -v4 -o "$2" -W "$3" 3>&1 1>/dev/null"#)
            .arg(&binaries().server)
            .arg(&socket)
            .arg(dir.path().join("service.log"))
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start criu-server service");
        let mut status = child.stdout.take().expect("status pipe");
        let mut byte = [1u8];
        status
            .read_exact(&mut byte)
            .expect("readiness byte on --status-fd");
        assert_eq!(byte, [0], "readiness byte");
        Service { child, dir, socket }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `sleep` in its own session (a dumpable tree root without shell_job), killed on drop.
pub struct Sleeper {
    child: Child,
}

impl Sleeper {
    pub fn start() -> Sleeper {
        let child = Command::new("setsid")
            .args(["sleep", "300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sleep");
        let sleeper = Sleeper { child };
        // setsid execs sleep in place (we are not a group leader's child): wait for the exec.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", sleeper.pid()))
                .unwrap_or_default();
            if comm.trim() == "sleep" {
                return sleeper;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("sleep {} did not start", sleeper.pid());
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reaps the sleeper after a dump killed it, then waits until its pid is free again.
    pub fn reap_after_dump(&mut self) {
        let status = self.child.wait().expect("wait for the dumped sleep");
        assert!(
            !status.success(),
            "the dumped sleep exited by itself: {status}"
        );
        assert!(wait_gone(self.pid()), "pid {} still taken", self.pid());
    }

    /// Alive and sleeping (not stopped, traced or dead); a sleep that just started may need a
    /// moment to get from running to sleeping.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None)) && wait_state(self.pid(), 'S') == Some('S')
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// State letter of a process (`S`, `T`, `Z`...), `None` when it does not exist.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits up to 10 s for /proc/PID to vanish.
pub fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Kills a process we are not the parent of (a restored tree) and waits for its pid to be free.
pub fn kill_and_wait(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_gone(pid);
}

/// A fresh images directory and an open descriptor of it.
pub fn images_dir() -> (tempfile::TempDir, std::fs::File) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fd = std::fs::File::open(dir.path()).expect("open images dir");
    (dir, fd)
}

/// Waits up to 5 s for a process to reach `state` (a just-restored task may still be running its
/// last instructions before it sleeps); returns the last state seen.
pub fn wait_state(pid: i32, state: char) -> Option<char> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = process_state(pid);
        if seen == Some(state) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
