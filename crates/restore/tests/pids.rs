//! A pid the dump needs that is taken makes the restore fail with EEXIST,
//! naming the pid, and saying when a zombie holds it.

mod common;

use std::process::Command;

use criu_image::ImageDir;
use criu_restore::{restore, RestoreOptions};

#[test]
fn pid_in_use_fails_with_eexist_naming_the_pid() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let busy = child.id() as i32;
    let dir = common::copy_images(&common::fixture_dir());
    common::relocate_pid(dir.path(), 31202, busy);
    let opts = RestoreOptions::new(ImageDir::open(dir.path()).unwrap());
    let err = restore(&opts, &mut |_, _| Ok(())).unwrap_err();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(err.errno(), Some(libc::EEXIST));
    let text = err.to_string();
    assert!(
        text.contains(&busy.to_string()) && text.contains("in use"),
        "{text}"
    );
}

#[test]
fn pid_held_by_a_zombie_says_so() {
    let child = Command::new("true").spawn().unwrap();
    let zombie = child.id() as i32;
    // Not reaped yet: it stays a zombie of this test process.
    while common::state(zombie) != Some('Z') {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let dir = common::copy_images(&common::fixture_dir());
    common::relocate_pid(dir.path(), 31202, zombie);
    let opts = RestoreOptions::new(ImageDir::open(dir.path()).unwrap());
    let err = restore(&opts, &mut |_, _| Ok(())).unwrap_err();
    let mut child = child;
    child.wait().unwrap();
    assert_eq!(err.errno(), Some(libc::EEXIST));
    let text = err.to_string();
    assert!(
        text.contains(&zombie.to_string()) && text.contains("zombie"),
        "{text}"
    );
}

#[test]
fn pid_at_or_above_pid_max_is_refused_with_a_hint() {
    let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = common::copy_images(&common::fixture_dir());
    common::relocate_pid(dir.path(), 31202, max);
    let opts = RestoreOptions::new(ImageDir::open(dir.path()).unwrap());
    let err = restore(&opts, &mut |_, _| Ok(())).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&max.to_string()) && text.contains("pid_max"),
        "{text}"
    );
    assert_eq!(err.errno(), Some(libc::EINVAL));
}

/// Run as a helper process by `rst_sibling_makes_the_root_a_child_of_the_callers_parent`:
/// restores with rst_sibling and exits, printing the pid.
#[test]
#[ignore = "helper process of rst_sibling_makes_the_root_a_child_of_the_callers_parent"]
fn rst_sibling_helper() {
    let Ok(dir) = std::env::var("CRIU_RS_SIBLING_HELPER_DIR") else {
        return;
    };
    let mut opts = RestoreOptions::new(ImageDir::open(dir).unwrap());
    opts.rst_sibling = true;
    let report = restore(&opts, &mut |_, _| Ok(())).expect("restore with rst_sibling");
    println!("SIBLING {}", report.root_pid);
}

#[test]
fn rst_sibling_makes_the_root_a_child_of_the_callers_parent() {
    let (dir, pid) = common::fixture_at_free_pid();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rst_sibling_helper",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("CRIU_RS_SIBLING_HELPER_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let restored: i32 = text
        .split("SIBLING ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("helper output: {text}"));
    if restored != pid {
        common::kill_and_reap(restored);
    }
    assert_eq!(restored, pid);
    let ppid = criu_dump::proc::read_stat(pid).unwrap().ppid;
    // Kill it first so that a failed check leaves nothing behind.
    common::kill_and_reap(pid);
    // The helper was our child; its restored sibling is our child too.
    assert_eq!(ppid, std::process::id() as i32);
    assert!(!common::pid_exists(pid));
}
