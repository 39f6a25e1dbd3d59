//! Driving OUR criu: `criu dump` / `criu restore` on the command line, and the same over RPC with
//! pycriu (`criu swrk` spawned by pycriu's `use_binary`). A failed operation is classified as
//! "not yet" only when the engine refused with a clear "unsupported" error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::launch::{self, Pty};
use crate::process::Exit;

/// Why a criu operation did not succeed, already classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The engine refused a state it does not support yet (not a bug).
    pub not_yet: bool,
    /// What happened, with the first error line of the log.
    pub message: String,
}

/// The exact phrases by which our engines refuse a state they do not support yet (case-insensitive):
/// criu-dump's "... is not supported yet." and criu-restore's "... is not supported by this restore
/// yet". Kept narrow on purpose: a looser match such as "not supported" would also catch the kernel's
/// strerror(EOPNOTSUPP), "Operation not supported", and hide a real failure as not-yet.
const REFUSAL_PHRASES: &[&str] = &[
    "is not supported yet",
    "is not supported by this restore yet",
];

/// Classifies a failed `action` from its exit, log file and stderr.
pub fn classify(action: &str, outcome: &str, log: &Path, stderr: &str) -> Failure {
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let first_error = first_error_line(&log_text)
        .or_else(|| first_error_line(stderr))
        .or_else(|| {
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("no error line in {} or stderr", log.display()));
    let lower = first_error.to_lowercase();
    let not_yet = REFUSAL_PHRASES.iter().any(|phrase| lower.contains(phrase));
    // The first error decides; the next different one often names the real cause when the first
    // is a side issue (CRIU 4.2 logs an RLIMIT_NOFILE error on every run on these machines).
    let next_error = log_text
        .lines()
        .filter(|line| line.contains("Error") || line.to_lowercase().contains("error"))
        .map(str::trim)
        .find(|line| *line != first_error.trim());
    let message = match next_error {
        Some(next) => format!("{action} {outcome}: {} (next: {next})", first_error.trim()),
        None => format!("{action} {outcome}: {}", first_error.trim()),
    };
    Failure {
        not_yet,
        message: printable(&message),
    }
}

/// The text with control characters (e.g. a NUL inside a socket name) shown as escapes.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The first line that reports an error (CRIU style "Error (file:line): ..." or any "error").
pub fn first_error_line(text: &str) -> Option<String> {
    text.lines()
        .find(|line| line.contains("Error") || line.to_lowercase().contains("error"))
        .map(str::to_string)
}

/// The criu binary under test and how long one operation may take.
#[derive(Debug, Clone)]
pub struct Criu {
    /// Our criu binary.
    pub bin: PathBuf,
    /// The Python interpreter that has pycriu (Debian: /usr/bin/python3).
    pub python: PathBuf,
    /// Per-operation timeout.
    pub timeout: Duration,
}

/// Output of a finished command.
struct Finished {
    exit: Option<Exit>,
    stdout: String,
    stderr: String,
}

fn run(mut command: Command, timeout: Duration, stdout_file: &Path) -> Result<Finished, String> {
    let stderr_file = stdout_file.with_extension("stderr");
    let out = std::fs::File::create(stdout_file)
        .map_err(|e| format!("create {}: {e}", stdout_file.display()))?;
    let err = std::fs::File::create(&stderr_file)
        .map_err(|e| format!("create {}: {e}", stderr_file.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    let deadline = Instant::now() + timeout;
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                break Some(match (status.code(), status.signal()) {
                    (Some(code), _) => Exit::Code(code),
                    (None, Some(sig)) => Exit::Signal(sig),
                    _ => Exit::Unknown,
                });
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(format!("waiting for {:?}: {e}", command.get_program())),
        }
    };
    Ok(Finished {
        exit,
        stdout: std::fs::read_to_string(stdout_file).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_file).unwrap_or_default(),
    })
}

fn describe(exit: Option<Exit>, timeout: Duration) -> String {
    match exit {
        None => format!("timed out after {timeout:?}"),
        Some(exit) => format!("failed ({exit})"),
    }
}

fn read_pidfile(path: &Path) -> Result<i32, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Failure {
        not_yet: false,
        message: format!("restore succeeded but pidfile {}: {e}", path.display()),
    })?;
    text.trim().parse().map_err(|_| Failure {
        not_yet: false,
        message: format!(
            "pidfile {} holds '{}', not a pid",
            path.display(),
            text.trim()
        ),
    })
}

impl Criu {
    fn command(&self) -> Command {
        Command::new(&self.bin)
    }

    /// `criu dump -t PID -D DIR -o dump.log -v4 [--leave-running] [--shell-job]
    /// [--prev-images-dir PARENT]` (PARENT relative to DIR, as CRIU takes it).
    pub fn dump(
        &self,
        pid: i32,
        images: &Path,
        leave_running: bool,
        shell_job: bool,
        parent: Option<&str>,
    ) -> Result<(), Failure> {
        let mut extra = Vec::new();
        if leave_running {
            extra.push("--leave-running");
        }
        if let Some(parent) = parent {
            extra.extend(["--prev-images-dir", parent]);
        }
        self.run_dump("dump", pid, images, shell_job, &extra)
    }

    /// `criu pre-dump -t PID -D DIR -o dump.log -v4 [--shell-job]`: the tree keeps running.
    pub fn pre_dump(&self, pid: i32, images: &Path, shell_job: bool) -> Result<(), Failure> {
        self.run_dump("pre-dump", pid, images, shell_job, &[])
    }

    fn run_dump(
        &self,
        action: &str,
        pid: i32,
        images: &Path,
        shell_job: bool,
        extra: &[&str],
    ) -> Result<(), Failure> {
        let mut command = self.command();
        command
            .arg(action)
            .arg("-t")
            .arg(pid.to_string())
            .arg("-D")
            .arg(images)
            .args(["-o", "dump.log", "-v4"])
            .args(extra);
        if shell_job {
            command.arg("--shell-job");
        }
        let stdout = images.with_file_name(format!("criu-{action}.stdout"));
        let finished = run(command, self.timeout, &stdout).map_err(|message| Failure {
            not_yet: false,
            message,
        })?;
        if finished.exit == Some(Exit::Code(0)) {
            return Ok(());
        }
        Err(classify(
            action,
            &describe(finished.exit, self.timeout),
            &images.join("dump.log"),
            &finished.stderr,
        ))
    }

    fn restore_args(images: &Path, log: &str, pidfile: &Path, shell_job: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "restore".into(),
            "-D".into(),
            images.into(),
            "-d".into(),
            "-o".into(),
            log.into(),
            "-v4".into(),
            "--pidfile".into(),
            pidfile.into(),
        ];
        if shell_job {
            args.push("--shell-job".into());
        }
        args
    }

    /// `criu restore -D DIR -d -o LOG -v4 --pidfile F`; returns the restored root pid.
    pub fn restore(&self, images: &Path, log: &str, pidfile: &Path) -> Result<i32, Failure> {
        let _ = std::fs::remove_file(pidfile);
        let mut command = self.command();
        command.args(Self::restore_args(images, log, pidfile, false));
        let stdout = images.with_file_name(format!("criu-{log}.stdout"));
        let finished = run(command, self.timeout, &stdout).map_err(|message| Failure {
            not_yet: false,
            message,
        })?;
        if finished.exit != Some(Exit::Code(0)) {
            return Err(classify(
                "restore",
                &describe(finished.exit, self.timeout),
                &images.join(log),
                &finished.stderr,
            ));
        }
        read_pidfile(pidfile)
    }

    /// `criu restore --shell-job ...` run from a new pty_shell session on the job's terminal, as a
    /// user's shell would. Returns (restored root pid, pty_shell pid).
    pub fn restore_shell_job(
        &self,
        images: &Path,
        log: &str,
        pidfile: &Path,
        pty: &Pty,
    ) -> Result<(i32, i32), Failure> {
        let _ = std::fs::remove_file(pidfile);
        let mut argv: Vec<OsString> = vec![self.bin.clone().into()];
        argv.extend(Self::restore_args(images, log, pidfile, true));
        let status = images.with_file_name(format!("{log}.shell-status"));
        let (shell, exit) =
            launch::run_in_pty_shell(pty, &status, &argv, self.timeout).map_err(|e| Failure {
                not_yet: false,
                message: e.to_string(),
            })?;
        if exit != Exit::Code(0) {
            return Err(classify(
                "restore --shell-job",
                &format!("failed ({exit})"),
                &images.join(log),
                "",
            ));
        }
        Ok((read_pidfile(pidfile)?, shell))
    }

    fn rpc(
        &self,
        transport: &Transport,
        action: &str,
        images: &Path,
        log: &str,
        pid: Option<i32>,
    ) -> Result<i32, Failure> {
        let (how, label) = match transport {
            Transport::Swrk => (format!("bin:{}", self.bin.display()), "pycriu swrk"),
            Transport::Service(socket) => (format!("sk:{}", socket.display()), "pycriu service"),
        };
        let mut command = Command::new(&self.python);
        command
            .arg("-c")
            .arg(PYCRIU_CLIENT)
            .arg(how)
            .arg(action)
            .arg(images)
            .arg(log)
            .arg(pid.unwrap_or(0).to_string());
        let stdout = images.with_file_name(format!("rpc-{log}.stdout"));
        let finished = run(command, self.timeout, &stdout).map_err(|message| Failure {
            not_yet: false,
            message,
        })?;
        let reply: serde_json::Value = match serde_json::from_str(finished.stdout.trim()) {
            Ok(value) => value,
            Err(_) => {
                let what = describe(finished.exit, self.timeout);
                return Err(classify(
                    &format!("rpc {action} ({label})"),
                    &format!("{what}, no JSON reply"),
                    &images.join(log),
                    &finished.stderr,
                ));
            }
        };
        if reply["ok"].as_bool() == Some(true) {
            return Ok(reply["pid"].as_i64().unwrap_or(0) as i32);
        }
        let error = reply["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string();
        Err(classify(
            &format!("rpc {action} ({label})"),
            &format!("failed: {error}"),
            &images.join(log),
            &finished.stderr,
        ))
    }

    /// DUMP over RPC through pycriu (`use_binary` → `criu swrk`).
    pub fn rpc_dump(&self, pid: i32, images: &Path) -> Result<(), Failure> {
        self.rpc(&Transport::Swrk, "dump", images, "dump.log", Some(pid))
            .map(drop)
    }

    /// RESTORE over RPC through pycriu; returns the restored root pid from the reply.
    pub fn rpc_restore(&self, images: &Path, log: &str) -> Result<i32, Failure> {
        self.rpc(&Transport::Swrk, "restore", images, log, None)
    }

    /// DUMP through a `criu service` started for this one request (pycriu `use_sk`).
    pub fn service_dump(&self, pid: i32, images: &Path) -> Result<(), Failure> {
        self.with_service(images, "dump", |socket| {
            self.rpc(
                &Transport::Service(socket.to_path_buf()),
                "dump",
                images,
                "dump.log",
                Some(pid),
            )
        })
        .map(drop)
    }

    /// RESTORE through a `criu service` started for this one request; returns the root pid.
    pub fn service_restore(&self, images: &Path, log: &str) -> Result<i32, Failure> {
        self.with_service(images, log, |socket| {
            self.rpc(
                &Transport::Service(socket.to_path_buf()),
                "restore",
                images,
                log,
                None,
            )
        })
    }

    /// Starts `criu service --address SOCKET -o service.log -v4 -W DIR` in the foreground as our
    /// child, runs `request` against its socket, then stops it (SIGTERM, as CRIU's own tests do).
    fn with_service<T>(
        &self,
        images: &Path,
        name: &str,
        request: impl FnOnce(&Path) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let fail = |message: String| Failure {
            not_yet: false,
            message,
        };
        let dir = images.with_file_name(format!("service-{name}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("create {}: {e}", dir.display())))?;
        // sun_path holds 108 bytes: the socket goes to a short path in /tmp, not in the cell.
        let socket = std::env::temp_dir().join(format!("criu-conf-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let stdout = std::fs::File::create(dir.join("service.stdout"))
            .map_err(|e| fail(format!("create service.stdout: {e}")))?;
        let stderr = std::fs::File::create(dir.join("service.stderr"))
            .map_err(|e| fail(format!("create service.stderr: {e}")))?;
        let mut service = Command::new(&self.bin)
            .arg("service")
            .arg("--address")
            .arg(&socket)
            .args(["-o", "service.log", "-v4", "-W"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| fail(format!("cannot start {} service: {e}", self.bin.display())))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = loop {
            if socket.exists() {
                break Ok(());
            }
            if let Ok(Some(status)) = service.try_wait() {
                let err = std::fs::read_to_string(dir.join("service.stderr")).unwrap_or_default();
                break Err(classify(
                    "criu service",
                    &format!("exited ({status}) before listening"),
                    &dir.join("service.log"),
                    &err,
                ));
            }
            if Instant::now() >= deadline {
                break Err(fail(format!(
                    "criu service did not create {} within 10 s",
                    socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let result = ready.and_then(|()| request(&socket));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(service.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while service.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if service.try_wait().ok().flatten().is_none() {
            let _ = service.kill();
            let _ = service.wait();
        }
        let _ = std::fs::remove_file(&socket);
        result
    }
}

/// How the pycriu client reaches criu.
enum Transport {
    /// `use_binary`: pycriu spawns `criu swrk`.
    Swrk,
    /// `use_sk`: a running `criu service` socket.
    Service(PathBuf),
}

/// A pycriu client: argv = (bin:CRIU | sk:SOCKET) action images_dir log_file pid. Prints one JSON line.
const PYCRIU_CLIENT: &str = r#"
import json, os, sys
import pycriu
how, action, images, log_file, pid = sys.argv[1:6]
c = pycriu.criu()
if how.startswith("sk:"):
    c.use_sk(how[3:])
else:
    c.use_binary(how[4:])
fd = os.open(images, os.O_DIRECTORY)
c.opts.images_dir_fd = fd
c.opts.log_file = log_file
c.opts.log_level = 4
try:
    if action == "dump":
        c.opts.pid = int(pid)
        c.dump()
        print(json.dumps({"ok": True}))
    else:
        resp = c.restore()
        print(json.dumps({"ok": True, "pid": resp.pid}))
except pycriu.CRIUExceptionExternal as e:
    print(json.dumps({"ok": False, "error": str(e), "errno": getattr(e, "errno", None)}))
except pycriu.CRIUException as e:
    print(json.dumps({"ok": False, "error": str(e)}))
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp log");
        std::fs::write(file.path(), text).expect("write log");
        file
    }

    #[test]
    fn a_clear_refusal_is_not_yet_with_the_first_error_line() {
        let log = log_with("(00.1) Info: seizing 42\n(00.2) Error (dump/files.rs:10): timerfd fd 5 is not supported yet\n(00.3) Error (cli.rs:1): Dumping FAILED\n");
        let failure = classify("dump", "failed (exit code 1)", log.path(), "");
        assert!(failure.not_yet);
        assert!(
            failure
                .message
                .contains("timerfd fd 5 is not supported yet"),
            "{}",
            failure.message
        );
        // The first error leads; the next different one follows as context.
        assert!(
            failure.message.find("not supported yet") < failure.message.find("(next: "),
            "{}",
            failure.message
        );
        assert!(failure
            .message
            .contains("(next: (00.3) Error (cli.rs:1): Dumping FAILED)"));
    }

    #[test]
    fn a_refusal_after_another_error_is_still_a_failure() {
        let log = log_with(
            "(00.1) Error (util.c:1): rlimit: Operation not permitted
(00.2) Error (files.rs:3): eventfd semaphore is not supported
",
        );
        let failure = classify("dump", "failed (exit code 1)", log.path(), "");
        assert!(
            !failure.not_yet,
            "only the first error line may make a cell not-yet"
        );
    }

    #[test]
    fn a_kernel_eopnotsupp_is_a_failure_not_a_refusal() {
        let log = log_with(
            "(00.2) Error (restore/files.rs:9): setsockopt(SO_PEEK_OFF) on fd 4: Operation not supported (os error 95)\n",
        );
        let failure = classify("restore", "failed (exit code 1)", log.path(), "");
        assert!(
            !failure.not_yet,
            "strerror(EOPNOTSUPP) must not read as a refusal"
        );
    }

    #[test]
    fn any_other_error_is_a_failure() {
        let log = log_with("(00.2) Error (restore/mm.rs:3): mmap at 0x7f00 failed: EINVAL\n");
        let failure = classify("restore", "failed (exit code 1)", log.path(), "");
        assert!(!failure.not_yet);
        assert!(failure.message.contains("mmap at 0x7f00"));
    }

    #[test]
    fn a_crash_without_a_log_uses_stderr() {
        let failure = classify(
            "dump",
            "failed (killed by signal 11)",
            Path::new("/nonexistent/dump.log"),
            "thread 'main' panicked at x.rs:1\n",
        );
        assert!(!failure.not_yet);
        assert!(failure.message.contains("killed by signal 11"));
        assert!(failure.message.contains("panicked"));
    }
}
