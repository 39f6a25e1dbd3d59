//! `cargo xtask test-rpc`: the RPC suite. Builds the workspace, starts one `criu-server
//! service` on a temporary socket (readiness through `--status-fd`), then runs every RPC test against
//! it and against `criu swrk`: the Rust client's tests (`cargo test -p criu-client`) and each Python
//! script in tests/rpc (raw sockets and Debian's pycriu, with /usr/bin/python3), ending with the load
//! test. Prints one row per test (name, result, seconds), stops the service with SIGTERM and fails if
//! any test failed or the service did not stop cleanly.
//!
//! Arguments select stages by name (`rust`, `test_raw`, `test_robustness`, `test_pycriu`, `load`);
//! none means all of them.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::setup;
use crate::suite::Tally;

/// The Python interpreter that has Debian's pycriu and protobuf (the PATH one may not).
const PYTHON: &str = "/usr/bin/python3";

/// The Python stages, in order; each is a script in tests/rpc.
const PYTHON_STAGES: &[&str] = &["test_raw", "test_robustness", "test_pycriu", "load"];

/// How long the service may take to signal readiness, and to stop after SIGTERM.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// One row of the result table.
struct Row {
    name: String,
    passed: bool,
    seconds: Option<f64>,
    note: String,
}

/// `cargo xtask test-rpc`.
pub fn run(args: &[String]) -> Result<(), String> {
    run_counted(args).1
}

/// The RPC suite with its test counts, for `cargo xtask test`'s closing line.
pub fn run_counted(args: &[String]) -> (Tally, Result<(), String>) {
    let mut rows = Vec::new();
    let outcome = run_rows(args, &mut rows);
    let failed = rows.iter().filter(|row| !row.passed).count();
    let tally = Tally {
        passed: rows.len() - failed,
        failed,
        skipped: 0,
    };
    (tally, outcome)
}

fn run_rows(args: &[String], rows: &mut Vec<Row>) -> Result<(), String> {
    let known: Vec<&str> = std::iter::once("rust")
        .chain(PYTHON_STAGES.iter().copied())
        .collect();
    if let Some(unknown) = args.iter().find(|arg| !known.contains(&arg.as_str())) {
        return Err(format!(
            "unknown RPC stage {unknown:?}; stages: {}",
            known.join(", ")
        ));
    }
    let wanted = |stage: &str| args.is_empty() || args.iter().any(|arg| arg == stage);

    setup::build_workspace()?;
    let criu = setup::built_binary("debug", "criu");
    let server = setup::built_binary("debug", "criu-server");
    if !Path::new(PYTHON).exists() {
        return Err(format!(
            "{PYTHON} is missing: the RPC suite needs Debian's python3 with pycriu"
        ));
    }

    let work = setup::target_dir().join("rpc-suite");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .map_err(|error| format!("cannot clear {}: {error}", work.display()))?;
    }
    std::fs::create_dir_all(&work)
        .map_err(|error| format!("cannot create {}: {error}", work.display()))?;

    let suite_started = Instant::now();
    let mut service = Service::start(&server, &work.join("service"))?;
    let env = [
        ("CRIU_RS_CRIU", criu.display().to_string()),
        ("CRIU_RS_SERVER", server.display().to_string()),
        ("CRIU_RS_SOCKET", service.socket.display().to_string()),
        ("CRIU_RS_SERVICE_PID", service.child.id().to_string()),
        // The client's integration tests use the binaries built above instead of building them.
        ("CRIU_RS_NO_BUILD", "1".to_owned()),
    ];

    if wanted("rust") {
        rows.extend(run_rust_tests(&env));
    }
    for stage in PYTHON_STAGES.iter().filter(|stage| wanted(stage)) {
        let scratch = work.join(stage);
        rows.extend(run_python_stage(stage, &scratch, &env));
    }
    rows.push(service.stop());

    print_table(rows, suite_started.elapsed());
    let failed = rows.iter().filter(|row| !row.passed).count();
    if failed == 0 {
        let _ = std::fs::remove_dir_all(&work);
        Ok(())
    } else {
        Err(format!(
            "{failed} of {} RPC tests failed; logs and images are in {}",
            rows.len(),
            work.display()
        ))
    }
}

/// `criu-server service` on a socket in a scratch directory.
struct Service {
    child: Child,
    socket: PathBuf,
}

impl Service {
    /// Starts the service with `--status-fd 3`, fd 3 being a pipe we read (set up by `sh`, as std
    /// cannot map descriptors), and waits for the readiness byte `\0` followed by the close of that
    /// descriptor. Its stdout is /dev/null: a status fd on 1 would, once closed, leave fd 1 free for
    /// the next socket the service opens.
    fn start(server: &Path, dir: &Path) -> Result<Service, String> {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        let socket = dir.join("criu_service.socket");
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"exec "$0" service --address "$1" --status-fd 3 -v4 -o "$2" -W "$3" 3>&1 1>/dev/null"#)
            .arg(server)
            .arg(&socket)
            .arg(dir.join("service.log"))
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", server.display()))?;
        let mut status = child
            .stdout
            .take()
            .ok_or("the service has no stdout pipe")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let outcome = status.read_to_end(&mut bytes).map(|_| bytes);
            let _ = sender.send(outcome);
        });
        let readiness = match receiver.recv_timeout(SERVICE_TIMEOUT) {
            Ok(Ok(bytes)) if bytes == [0] => Ok(()),
            Ok(Ok(bytes)) => Err(format!(
                "the service wrote {bytes:?} on --status-fd instead of one \\0 byte"
            )),
            Ok(Err(error)) => Err(format!("cannot read the service's --status-fd: {error}")),
            Err(_) => Err(format!(
                "the service did not write \\0 and close --status-fd within {SERVICE_TIMEOUT:?}"
            )),
        };
        if let Err(error) = readiness {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{error} (log: {})",
                dir.join("service.log").display()
            ));
        }
        Ok(Service { child, socket })
    }

    /// SIGTERM, then waits: the service must exit 0 and remove its socket.
    fn stop(&mut self) -> Row {
        let started = Instant::now();
        let outcome = self.terminate();
        Row {
            name: "service: SIGTERM stops it and removes the socket".to_owned(),
            passed: outcome.is_ok(),
            seconds: Some(started.elapsed().as_secs_f64()),
            note: outcome.err().unwrap_or_default(),
        }
    }

    fn terminate(&mut self) -> Result<(), String> {
        let pid = self.child.id();
        let sent = i32::try_from(pid)
            .map_err(|_| nix::errno::Errno::ESRCH)
            .and_then(|raw| {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGTERM,
                )
            });
        if sent.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Err(format!(
                "cannot send SIGTERM to the service (pid {pid}): {sent:?}"
            ));
        }
        let deadline = Instant::now() + SERVICE_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "the service (pid {pid}) ignored SIGTERM for {SERVICE_TIMEOUT:?}"
                    ));
                }
                Err(error) => {
                    return Err(format!("cannot wait for the service (pid {pid}): {error}"))
                }
            }
        };
        if !status.success() {
            return Err(format!("the service exited with {status} after SIGTERM"));
        }
        if self.socket.exists() {
            return Err(format!(
                "the service left its socket {}",
                self.socket.display()
            ));
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command with its output echoed line by line, returning every line and whether it exited 0.
fn run_streaming(command: &mut Command) -> Result<(Vec<String>, bool), String> {
    let mut child = command
        .current_dir(setup::workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {command:?}: {error}"))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    // stderr is echoed as it comes (cargo's progress, tracebacks) but not parsed.
    let echo_stderr = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
        }
    });
    let mut lines = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            lines.push(line);
        }
    }
    let _ = echo_stderr.join();
    let status = child
        .wait()
        .map_err(|error| format!("cannot wait for {command:?}: {error}"))?;
    Ok((lines, status.success()))
}

/// `cargo test -p criu-client`: one row per libtest `test NAME ... ok|FAILED` line.
fn run_rust_tests(env: &[(&str, String)]) -> Vec<Row> {
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["test", "-p", "criu-client", "--no-fail-fast"]);
    command.envs(env.iter().map(|(key, value)| (key, value)));
    let (lines, success) = match run_streaming(&mut command) {
        Ok(result) => result,
        Err(error) => return vec![stage_failure("criu-client tests", started, error)],
    };
    let mut rows: Vec<Row> = lines
        .iter()
        .filter_map(|line| parse_libtest_line(line))
        .collect();
    for (test, message) in panic_messages(&lines) {
        let name = format!("criu-client: {test}");
        if let Some(row) = rows.iter_mut().find(|row| !row.passed && row.name == name) {
            row.note = message;
        }
    }
    if !success && rows.iter().all(|row| row.passed) {
        rows.push(stage_failure(
            "criu-client tests",
            started,
            "cargo test failed outside any test (build error?)".to_owned(),
        ));
    }
    if rows.is_empty() {
        rows.push(stage_failure(
            "criu-client tests",
            started,
            "no test ran".to_owned(),
        ));
    }
    rows
}

/// `test path::name ... ok` → a row; ignored tests and other lines → nothing.
fn parse_libtest_line(line: &str) -> Option<Row> {
    let rest = line.strip_prefix("test ")?;
    let (name, result) = rest.rsplit_once(" ... ")?;
    let passed = match result.trim() {
        "ok" => true,
        "FAILED" => false,
        _ => return None,
    };
    Some(Row {
        name: format!("criu-client: {name}"),
        passed,
        seconds: None,
        note: String::new(),
    })
}

/// `(test name, first line of its panic message)` from libtest's failure report, where each failed
/// test shows `thread '<test name>' (<tid>) panicked at <file:line:col>:` then the message.
fn panic_messages(lines: &[String]) -> Vec<(String, String)> {
    lines
        .windows(2)
        .filter_map(|pair| {
            let rest = pair[0].strip_prefix("thread '")?;
            let (test, tail) = rest.split_once('\'')?;
            tail.contains("panicked at")
                .then(|| (test.to_owned(), pair[1].trim().to_owned()))
        })
        .collect()
}

/// One Python script: one row per `PASS name (1.23s)` / `FAIL name (1.23s): why` line.
fn run_python_stage(stage: &str, scratch: &Path, env: &[(&str, String)]) -> Vec<Row> {
    let started = Instant::now();
    let script = setup::workspace_root()
        .join("tests/rpc")
        .join(format!("{stage}.py"));
    if let Err(error) = std::fs::create_dir_all(scratch) {
        return vec![stage_failure(
            stage,
            started,
            format!("cannot create {}: {error}", scratch.display()),
        )];
    }
    let mut command = Command::new(PYTHON);
    command
        .arg(&script)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("CRIU_RS_WORK", scratch)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (lines, success) = match run_streaming(&mut command) {
        Ok(result) => result,
        Err(error) => return vec![stage_failure(stage, started, error)],
    };
    let mut rows: Vec<Row> = lines
        .iter()
        .filter_map(|line| parse_harness_line(stage, line))
        .collect();
    let saw_result = lines.iter().any(|line| line.starts_with("RESULT "));
    if !success && rows.iter().all(|row| row.passed) {
        rows.push(stage_failure(
            stage,
            started,
            "the script failed outside any test".to_owned(),
        ));
    } else if !saw_result {
        rows.push(stage_failure(
            stage,
            started,
            "the script ended without its RESULT line".to_owned(),
        ));
    }
    rows
}

/// Parses the harness's `PASS name (0.12s)` and `FAIL name (0.12s): reason` lines.
fn parse_harness_line(stage: &str, line: &str) -> Option<Row> {
    let (passed, rest) = if let Some(rest) = line.strip_prefix("PASS ") {
        (true, rest)
    } else if let Some(rest) = line.strip_prefix("FAIL ") {
        (false, rest)
    } else {
        return None;
    };
    let (name, rest) = rest.split_once(" (")?;
    let (seconds, note) = rest.split_once("s)")?;
    Some(Row {
        name: format!("{stage}: {name}"),
        passed,
        seconds: seconds.parse().ok(),
        note: note.trim_start_matches(':').trim().to_owned(),
    })
}

fn stage_failure(stage: &str, started: Instant, note: String) -> Row {
    Row {
        name: stage.to_owned(),
        passed: false,
        seconds: Some(started.elapsed().as_secs_f64()),
        note,
    }
}

fn print_table(rows: &[Row], elapsed: Duration) {
    let width = rows
        .iter()
        .map(|row| row.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("\nRPC suite:");
    println!("  {:<width$}  result  seconds", "test");
    for row in rows {
        let seconds = row
            .seconds
            .map(|seconds| format!("{seconds:7.2}"))
            .unwrap_or_else(|| "      -".to_owned());
        let result = if row.passed { "ok  " } else { "FAIL" };
        println!("  {:<width$}  {result}    {seconds}", row.name);
        if !row.passed && !row.note.is_empty() {
            let first_line = row.note.lines().next().unwrap_or_default();
            println!("  {:<width$}    ^ {first_line}", "");
        }
    }
    let failed = rows.iter().filter(|row| !row.passed).count();
    println!(
        "  {} passed, {failed} failed, {:.1} s",
        rows.len() - failed,
        elapsed.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_lines_become_rows_with_seconds_and_reason() {
        let row =
            parse_harness_line("test_raw", "FAIL pre_dump (0.25s): PRE_DUMP: no answer").unwrap();
        assert_eq!(row.name, "test_raw: pre_dump");
        assert!(!row.passed);
        assert_eq!(row.seconds, Some(0.25));
        assert_eq!(row.note, "PRE_DUMP: no answer");
        let row = parse_harness_line("load", "PASS load_all_requests_answered (1.50s)").unwrap();
        assert!(row.passed && row.note.is_empty());
        assert!(parse_harness_line("load", "load: 500 connections").is_none());
        assert!(parse_harness_line("load", "RESULT load: 1 passed, 0 failed").is_none());
    }

    #[test]
    fn libtest_lines_become_rows_and_ignored_tests_do_not() {
        let row = parse_libtest_line("test service::version_is_4_2 ... ok").unwrap();
        assert_eq!(row.name, "criu-client: service::version_is_4_2");
        assert!(row.passed);
        assert!(
            !parse_libtest_line("test swrk::dump ... FAILED")
                .unwrap()
                .passed
        );
        assert!(parse_libtest_line("test slow ... ignored").is_none());
        assert!(parse_libtest_line("test result: ok. 3 passed").is_none());
    }

    #[test]
    fn panic_messages_are_matched_to_their_test() {
        let lines: Vec<String> = [
            "---- pre_dump_is_refused stdout ----",
            "thread 'pre_dump_is_refused' (9213) panicked at crates/client/tests/service.rs:290:31:",
            "called `Result::unwrap()` on an `Err` value: Failed",
            "note: run with `RUST_BACKTRACE=1`",
        ]
        .iter()
        .map(|line| line.to_string())
        .collect();
        assert_eq!(
            panic_messages(&lines),
            [(
                "pre_dump_is_refused".to_owned(),
                "called `Result::unwrap()` on an `Err` value: Failed".to_owned()
            )]
        );
    }
}
