//! Helpers shared by the restore integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// Logs to the test output with RUST_LOG (default: warnings).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The CRIU 4.2 fixture directory.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/criu42-sleep"
    ))
}

/// Copies every file of `from` into a new temporary directory (writable).
pub fn copy_images(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy image");
        }
    }
    for entry in std::fs::read_dir(dir.path()).expect("read copy") {
        let path = entry.expect("entry").path();
        let mut perms = std::fs::metadata(&path).expect("meta").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).expect("chmod");
    }
    dir
}

/// Whether /proc/PID exists.
pub fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (up to `limit`) until /proc/PID is gone; PID 1 reaps orphans only
/// every ~2 s on these machines.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pid_exists(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_exists(pid)
}

/// The state letter of /proc/PID/stat.
pub fn state(pid: i32) -> Option<char> {
    criu_dump::proc::read_stat(pid).ok().map(|stat| stat.state)
}

/// The syscall number the task is blocked in (/proc/PID/syscall), if any.
pub fn blocked_syscall(pid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Kills a task and reaps it if it is our child.
pub fn kill_and_reap(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = waitpid(Pid::from_raw(pid), None);
}

/// Waits until the task sleeps (state S) in a syscall, up to `limit`.
pub fn wait_sleeping(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if state(pid) == Some('S') {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Renames the fixture's task (pid `from`, single-threaded) to pid `to` in
/// the images of `dir`: pstree ids and the per-pid image names.
pub fn relocate_pid(dir: &Path, from: i32, to: i32) {
    use criu_image::{ImageDir, ImageKind};
    use criu_proto::PstreeEntry;
    let images = ImageDir::open(dir).unwrap();
    let mut entries: Vec<PstreeEntry> = images
        .reader(ImageKind::Pstree, 0)
        .unwrap()
        .read_all()
        .unwrap();
    let map = |v: u32| if v == from as u32 { to as u32 } else { v };
    for e in entries.iter_mut() {
        e.pid = map(e.pid);
        e.ppid = map(e.ppid);
        e.pgid = map(e.pgid);
        e.sid = map(e.sid);
        for t in e.threads.iter_mut() {
            *t = map(*t);
        }
    }
    let mut writer = images.writer(ImageKind::Pstree, 0).unwrap();
    for e in &entries {
        writer.write_entry(e).unwrap();
    }
    writer.finish().unwrap();
    for prefix in ["core", "mm", "pagemap", "ids", "fs"] {
        std::fs::rename(
            dir.join(format!("{prefix}-{from}.img")),
            dir.join(format!("{prefix}-{to}.img")),
        )
        .unwrap();
    }
}

/// A pid that is free now, distinct per call in this process.
pub fn free_pid() -> i32 {
    use std::sync::atomic::{AtomicI32, Ordering};
    static NEXT: AtomicI32 = AtomicI32::new(0);
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
    };
    let pid_max = read("/proc/sys/kernel/pid_max").unwrap_or(32768);
    // Pick pids a third of the pid space ahead of where the kernel hands them out now: the kernel
    // allocates upwards, so the processes the tests start meanwhile (helpers, other tests' children)
    // do not take a pid between the check below and the restore.
    let last = read("/proc/sys/kernel/ns_last_pid").unwrap_or(300);
    let span = pid_max - 1300;
    loop {
        let offset = NEXT.fetch_add(7, Ordering::Relaxed);
        let pid = 300 + (last - 300 + pid_max / 3 + offset).rem_euclid(span);
        if !pid_exists(pid) && !pid_exists(pid + 1) {
            return pid;
        }
    }
}

/// The fixture images copied to a temp dir, moved to a free pid.
pub fn fixture_at_free_pid() -> (tempfile::TempDir, i32) {
    let dir = copy_images(&fixture_dir());
    let pid = free_pid();
    relocate_pid(dir.path(), 31202, pid);
    (dir, pid)
}
