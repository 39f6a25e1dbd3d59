//! A shell job on a terminal: dumped with shell_job, restored from another
//! terminal, it comes back on the restoring process's terminal with its
//! dumped termios, in the restorer's session, in its own group, in the
//! foreground.

mod common;

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_image::ImageDir;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const TESTEE: &str = env!("CARGO_BIN_EXE_criu-restore-testee");

fn lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_line(out: &Path, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = lines(out).into_iter().find(|l| pred(l)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "expected line missing; output: {:?}",
            lines(out)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `testee pty-run testee ARGS...` with stdout and stderr appended to `out`.
fn pty_run(out: &Path, args: &[&str]) -> std::process::Child {
    let file = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap()
    };
    Command::new(TESTEE)
        .arg("pty-run")
        .arg(TESTEE)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file())
        .stderr(file())
        .spawn()
        .unwrap()
}

#[test]
fn shell_job_comes_back_on_the_restoring_terminal() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let mut shell = pty_run(&out, &["shell-job"]);
    wait_line(&out, |l| l == "ready");
    let job: i32 = wait_line(&out, |l| l.starts_with("job "))[4..]
        .parse()
        .unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut opts = criu_dump::DumpOptions::new(job, ImageDir::create(&images).unwrap());
    opts.shell_job = true;
    let dumped = criu_dump::dump(&opts, &mut |_, _| Ok(()));
    if dumped.is_err() {
        let _ = kill(Pid::from_raw(job), Signal::SIGKILL);
    }
    dumped.expect("dump");
    let _ = shell.wait();
    assert!(common::wait_gone(job, Duration::from_secs(10)));

    let mut restorer = pty_run(&out, &["restore-shell-job", images.to_str().unwrap()]);
    let restored = wait_line(&out, |l| {
        l.starts_with("restored ") || l.starts_with("restore failed")
    });
    let Some(tty) = restored.strip_prefix(&format!("restored {job} on ")) else {
        let _ = restorer.kill();
        panic!("{restored}");
    };
    let tty = tty.to_string();
    kill(Pid::from_raw(job), Signal::SIGUSR1).unwrap();
    let report = wait_line(&out, |l| l.starts_with("shell-job "));
    let _ = restorer.wait();
    assert_eq!(
        report,
        format!(
            "shell-job tty {tty} echo false foreground true leader false own group true terminal session true"
        )
    );
}
