//! Helpers shared by the integration tests: spawning the testee and looking at /proc.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TESTEE: &str = env!("CARGO_BIN_EXE_criu-compel-testee");

/// A running testee, killed (and reaped) when dropped.
pub struct Target {
    pub child: Child,
}

impl Target {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(args: &[&str]) -> Target {
    spawn_with(args, Stdio::null(), Stdio::null())
}

pub fn spawn_with(args: &[&str], stdin: Stdio, stdout: Stdio) -> Target {
    let child = Command::new(TESTEE)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .spawn()
        .expect("spawn criu-compel-testee");
    Target { child }
}

/// A spinning testee that has reached `main` (it already burnt CPU time, so the runtime set SIGPIPE to
/// ignored and glibc registered rseq).
pub fn spawn_busy() -> Target {
    let target = spawn(&["busy"]);
    let pid = target.pid();
    wait_until("the busy testee to run", Duration::from_secs(5), || {
        cpu_ticks(pid) >= 2
    });
    target
}

fn stat_fields(path: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// State letter of a process (R, S, T, t, Z, ...).
pub fn state(pid: i32) -> Option<char> {
    stat_fields(&format!("/proc/{pid}/stat"))?
        .first()?
        .chars()
        .next()
}

pub fn thread_state(pid: i32, tid: i32) -> Option<char> {
    stat_fields(&format!("/proc/{pid}/task/{tid}/stat"))?
        .first()?
        .chars()
        .next()
}

/// utime + stime in clock ticks (all threads).
pub fn cpu_ticks(pid: i32) -> u64 {
    let fields = stat_fields(&format!("/proc/{pid}/stat")).expect("stat");
    // fields[0] is state (stat field 3); utime/stime are stat fields 14/15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

pub fn tids(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for tid in tids(pid) {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `pid` has used at least `ticks` more CPU ticks than `since` (it is running).
pub fn assert_makes_progress(pid: i32, since: u64) {
    wait_until(
        &format!("process {pid} to use CPU again"),
        Duration::from_secs(5),
        || cpu_ticks(pid) > since + 1,
    );
}

/// Waits until the process has at least `n` threads.
pub fn wait_threads(pid: i32, n: usize) {
    wait_until(
        &format!("{n} threads in {pid}"),
        Duration::from_secs(5),
        || tids(pid).len() >= n,
    );
}

/// Waits until the process is blocked in a syscall (state S).
pub fn wait_sleeping(pid: i32) {
    wait_until(&format!("{pid} to sleep"), Duration::from_secs(5), || {
        state(pid) == Some('S')
    });
}

/// A pid that is not in use right now.
pub fn unused_pid() -> i32 {
    let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (300..max)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}
