//! The detached launcher gives what the helpers promise: a session leader
//! that is not our child, only /dev/null on 0-2 (or stdout on a file), the
//! wanted uid and argv; and the /proc watchers tell the states apart.

use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::time::Duration;

use criu_test_util::process::{
    alive, in_pause_and_untraced, kill_and_wait_gone, spawn_detached_sleep,
    spawn_detached_sleep_as, wait_until, DetachedCommand,
};
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getsid, Pid};

/// The value of `Field:` in /proc/PID/status.
fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_owned()
}

/// Descriptor numbers of `pid` and where they point.
fn descriptors(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let number = entry.file_name().to_string_lossy().parse().unwrap();
            let target = std::fs::read_link(entry.path()).unwrap();
            (number, target.to_string_lossy().into_owned())
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn detached_sleep_leads_its_session_is_not_our_child_and_holds_only_dev_null() {
    // A descriptor without CLOEXEC in this process must not reach the target.
    let (reader, _writer) = nix::unistd::pipe().unwrap();
    nix::fcntl::fcntl(
        &reader,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let pid = spawn_detached_sleep(1000);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "sleep\n"
    );
    assert_eq!(getsid(Some(Pid::from_raw(pid))).unwrap().as_raw(), pid);
    assert_ne!(
        status_field(pid, "PPid"),
        std::process::id().to_string(),
        "the target must not be our child"
    );
    let null = "/dev/null".to_owned();
    assert_eq!(
        descriptors(pid),
        vec![(0, null.clone()), (1, null.clone()), (2, null)],
        "our fd {} leaked or stdio is not /dev/null",
        reader.as_raw_fd()
    );
    assert_eq!(
        std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        b"sleep\x001000\x00",
        "argv[0] is the program's file name"
    );
    kill_and_wait_gone(pid);
    assert!(!alive(pid));
}

#[test]
fn detached_sleep_as_a_user_runs_with_its_uid_and_gid() {
    let pid = spawn_detached_sleep_as(1000, Some(65534));
    let uid = status_field(pid, "Uid");
    let gid = status_field(pid, "Gid");
    kill_and_wait_gone(pid);
    assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
    assert_eq!(gid.split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
}

#[test]
fn a_sleep_that_ends_is_gone_by_itself() {
    let pid = spawn_detached_sleep(1);
    assert!(alive(pid));
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
}

/// A python program that prints "ready" and waits in pause(); its pid.
fn paused_python(out: &Path) -> i32 {
    let pid = DetachedCommand::new("/usr/bin/python3")
        .args([
            "-c",
            "import signal\nprint('ready', flush=True)\nwhile True:\n    signal.pause()\n",
        ])
        .stdout_to(out)
        .spawn();
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(out).unwrap_or_default() == "ready\n"
        }),
        "no ready line in {}",
        out.display()
    );
    pid
}

#[test]
fn stdout_goes_to_the_file_and_pause_is_told_from_sleep_and_from_traced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let paused = paused_python(&out);
    let sleeping = spawn_detached_sleep(1000);
    assert!(wait_until(Duration::from_secs(10), || {
        in_pause_and_untraced(paused)
    }));
    assert!(!in_pause_and_untraced(sleeping), "sleep is not pause");

    let target = Pid::from_raw(paused);
    ptrace::seize(target, ptrace::Options::empty()).unwrap();
    let traced = in_pause_and_untraced(paused);
    // Stop it so that it can be detached, then let it go back to pause().
    ptrace::interrupt(target).unwrap();
    let stop = waitpid(target, Some(WaitPidFlag::__WALL)).unwrap();
    ptrace::detach(target, None).unwrap();
    let back = wait_until(Duration::from_secs(10), || in_pause_and_untraced(paused));

    kill_and_wait_gone(paused);
    kill_and_wait_gone(sleeping);
    assert!(!traced, "a traced process is not untraced");
    assert!(matches!(stop, WaitStatus::PtraceEvent(..)), "{stop:?}");
    assert!(back, "detached, it pauses untraced again");
}

#[test]
fn wait_until_says_whether_the_condition_came_true_in_time() {
    let mut calls = 0;
    assert!(wait_until(Duration::from_secs(5), || {
        calls += 1;
        calls == 3
    }));
    assert_eq!(calls, 3);
    let started = std::time::Instant::now();
    assert!(!wait_until(Duration::from_millis(100), || false));
    assert!(started.elapsed() >= Duration::from_millis(100));
}
