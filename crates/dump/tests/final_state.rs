//! What happens to the tree after a dump (kill, leave running, leave stopped),
//! the errors for bad roots, and failure safety: after a failure injected at
//! any stage the task keeps running correctly and no inventory exists.

mod common;

use std::time::{Duration, Instant};

use common::*;
use criu_dump::{DumpError, FailPoint};

/// A single-threaded python counter: writes an increasing number to `path`
/// every 20 ms.
fn spawn_counter(path: &std::path::Path) -> std::process::Child {
    let script = format!(
        "import time\ni=0\nwhile True:\n    i+=1\n    open('{p}.tmp','w').write(str(i))\n    import os\n    os.rename('{p}.tmp','{p}')\n    time.sleep(0.02)\n",
        p = path.display()
    );
    let child = spawn_session("/usr/bin/python3", &["-c", &script]);
    wait_until(|| read_counter(path) > 2);
    child
}

fn read_counter(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn assert_counter_advances(path: &std::path::Path) {
    let before = read_counter(path);
    wait_until(|| read_counter(path) > before + 3);
}

#[test]
fn leave_running_resumes_the_task() {
    let work = tempfile::tempdir().unwrap();
    let counter = work.path().join("counter");
    let child = spawn_counter(&counter);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    assert!(dir.path().join("inventory.img").exists());
    assert_counter_advances(&counter);
    assert_ne!(proc_state(pid), 'T');
    reap(child);
}

#[test]
fn leave_stopped_stops_the_task_until_sigcont() {
    let work = tempfile::tempdir().unwrap();
    let counter = work.path().join("counter");
    let child = spawn_counter(&counter);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_stopped = true).expect("dump");
    wait_until(|| proc_state(pid) == 'T');
    let frozen = read_counter(&counter);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read_counter(&counter), frozen);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert_counter_advances(&counter);
    reap(child);
}

#[test]
fn interrupted_sleep_finishes_on_time_after_leave_running() {
    let child = spawn_session("/usr/bin/sleep", &["1.5"]);
    let start = Instant::now();
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(status.success(), "sleep exited with {status:?}");
    assert!(start.elapsed() >= Duration::from_millis(1400));
}

#[test]
fn missing_pid_is_esrch() {
    let dir = tempfile::tempdir().unwrap();
    let err = dump_to(4_000_000, dir.path(), |_| {}).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ESRCH));
    assert!(matches!(err, DumpError::NoSuchProcess { .. }));
}

#[test]
fn root_outside_its_own_session_needs_shell_job() {
    let mut child = std::process::Command::new("/usr/bin/sleep")
        .arg("1000")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let err = dump_to(pid, dir.path(), |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "The root process {pid} is not a session leader. Consider using --shell-job option"
        )
    );
    assert!(!dir.path().join("inventory.img").exists());
    assert_ne!(proc_state(pid), 'T');
    assert!(alive(pid));
    // With shell_job the same task dumps fine.
    dump_to(pid, dir.path(), |o| o.shell_job = true).expect("dump with shell_job");
    let _ = child.wait();
    wait_until(|| !alive(pid));
}

#[test]
fn dumping_ourselves_is_refused_with_criu_text() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id() as i32;
    let err = dump_to(me, dir.path(), |o| o.shell_job = true).unwrap_err();
    assert!(
        err.to_string()
            .contains("The criu itself is within dumped tree"),
        "{err}"
    );
}

#[test]
fn injected_failures_leave_the_task_running_and_no_inventory() {
    let work = tempfile::tempdir().unwrap();
    let counter = work.path().join("counter");
    let child = spawn_counter(&counter);
    let pid = child.id() as i32;
    for point in [
        FailPoint::Frozen,
        FailPoint::Mappings,
        FailPoint::Files,
        FailPoint::Threads,
        FailPoint::Pages,
        FailPoint::Tasks,
        FailPoint::Inventory,
        FailPoint::PostInventory,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err = dump_to(pid, dir.path(), |o| o.fail_at = Some(point)).unwrap_err();
        assert!(
            matches!(err, DumpError::Injected { stage } if stage == point),
            "{point:?}: {err}"
        );
        assert!(
            !dir.path().join("inventory.img").exists(),
            "{point:?} left an inventory"
        );
        assert!(alive(pid), "{point:?} killed the task");
        assert_ne!(proc_state(pid), 'T', "{point:?} left the task stopped");
        assert_counter_advances(&counter);
    }
    reap(child);
}

#[test]
fn failing_post_dump_notify_resumes_the_task() {
    let work = tempfile::tempdir().unwrap();
    let counter = work.path().join("counter");
    let child = spawn_counter(&counter);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let opts = criu_dump::DumpOptions::new(pid, criu_image::ImageDir::open(dir.path()).unwrap());
    let mut seen = Vec::new();
    let err = criu_dump::dump(&opts, &mut |action, _| {
        seen.push(action.to_string());
        if action == "post-dump" {
            Err("client said no".into())
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert_eq!(seen, vec!["pre-dump", "post-dump"]);
    assert!(err.to_string().contains("client said no"));
    assert!(!dir.path().join("inventory.img").exists());
    assert_counter_advances(&counter);
    reap(child);
}

#[test]
fn a_stopped_task_is_dumped_stopped_and_stays_stopped() {
    let child = spawn_sleeper();
    let pid = child.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    wait_until(|| proc_state(pid) == 'T');
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        proc_state(pid),
        'T',
        "a stopped task stays stopped with leave_running"
    );
    let core: Vec<criu_proto::CoreEntry> =
        read_entries(dir.path(), criu_image::ImageKind::Core, pid as u64);
    let tc = core[0].tc.as_ref().unwrap();
    assert_eq!(
        (tc.task_state, tc.stop_signo),
        (3, Some(libc::SIGSTOP as u32))
    );
    reap(child);
}

#[test]
fn pre_dump_writes_memory_only_and_keeps_the_task_running() {
    let work = tempfile::tempdir().unwrap();
    let counter = work.path().join("counter");
    let child = spawn_counter(&counter);
    let pid = child.id() as i32;
    let root = tempfile::tempdir().unwrap();
    let pre = root.path().join("1");
    let full = root.path().join("2");
    std::fs::create_dir(&pre).unwrap();
    std::fs::create_dir(&full).unwrap();
    let report = dump_to(pid, &pre, |o| o.pre_dump = true).expect("pre-dump");
    assert!(report.pages_written > 0);
    assert_counter_advances(&counter);
    assert_ne!(proc_state(pid), 'T');
    let names = file_names(&pre);
    assert_eq!(
        names,
        vec![
            "inventory.img".to_string(),
            format!("pagemap-{pid}.img"),
            "pages-1.img".into(),
            "stats-dump".into()
        ]
    );
    let inv: Vec<criu_proto::InventoryEntry> =
        read_entries(&pre, criu_image::ImageKind::Inventory, 0);
    assert_eq!((inv[0].img_version, inv[0].pre_dump_mode), (0, Some(1)));
    assert!(inv[0].dump_uptime.is_some());
    for name in &names {
        if !name.starts_with("pages-") {
            crit_decode(&pre.join(name));
        }
    }
    // The final dump on top of it: a parent link, every page written again.
    dump_to(pid, &full, |o| {
        o.parent_img = Some("../1".into());
        o.track_mem = true;
    })
    .expect("dump");
    assert_eq!(
        std::fs::read_link(full.join("parent")).unwrap(),
        std::path::Path::new("../1")
    );
    let inv: Vec<criu_proto::InventoryEntry> =
        read_entries(&full, criu_image::ImageKind::Inventory, 0);
    assert_eq!(inv[0].img_version, 2);
    assert!(inv[0].dump_uptime.is_some());
    reap(child);
}
