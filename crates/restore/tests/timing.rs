//! Restore time of a small process and of a large one, with both ways of
//! filling pages (remote preadv by the task, process_vm_writev by the tracer).
//! Run with `--release --nocapture` for meaningful numbers.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_image::ImageDir;
use criu_restore::{restore, PageFill, RestoreOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const TESTEE: &str = env!("CARGO_BIN_EXE_criu-restore-testee");

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_line(path: &std::path::Path, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read_lines(path).iter().any(|l| l == want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} in {:?}",
            read_lines(path)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts the testee, dumps it and returns (pid, temp dir, output file).
fn dumped(args: &[&str]) -> (i32, tempfile::TempDir, std::path::PathBuf) {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let mut child = Command::new(TESTEE)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_line(&out, "ready");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    criu_dump::dump(
        &criu_dump::DumpOptions::new(pid, ImageDir::create(&images).unwrap()),
        &mut |_, _| Ok(()),
    )
    .expect("dump");
    let _ = child.wait();
    assert!(common::wait_gone(pid, Duration::from_secs(10)));
    (pid, dir, out)
}

fn restore_once(dir: &std::path::Path, fill: PageFill) -> Duration {
    let mut opts = RestoreOptions::new(ImageDir::open(dir.join("images")).unwrap());
    opts.page_fill = fill;
    restore(&opts, &mut |_, _| Ok(())).expect("restore").elapsed
}

#[test]
fn small_process_restores_in_a_few_milliseconds() {
    let (pid, dir, _out) = dumped(&["sleeper", "1000"]);
    for fill in [PageFill::RemotePreadv, PageFill::ProcessVmWritev] {
        let mut times = Vec::new();
        for _ in 0..5 {
            times.push(restore_once(dir.path(), fill));
            common::kill_and_reap(pid);
        }
        times.sort();
        eprintln!(
            "small process ({fill:?}): min {:?} median {:?} max {:?}",
            times[0], times[2], times[4]
        );
        assert!(
            times[2] < Duration::from_millis(100),
            "median restore time {:?}",
            times[2]
        );
    }
}

#[test]
fn large_process_memory_comes_back_with_both_fill_methods() {
    let mib = 256;
    let (pid, dir, out) = dumped(&["memory", &mib.to_string()]);
    let dumped_len = std::fs::metadata(&out).unwrap().len();
    for fill in [PageFill::RemotePreadv, PageFill::ProcessVmWritev] {
        // The output file must have its dumped size again.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&out)
            .unwrap()
            .set_len(dumped_len)
            .unwrap();
        let elapsed = restore_once(dir.path(), fill);
        let before = read_lines(&out).len();
        kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = read_lines(&out);
            if lines.len() > before {
                assert_eq!(lines[before], "memory bad words 0", "{fill:?}");
                break;
            }
            assert!(Instant::now() < deadline, "no check line");
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "{mib} MiB process ({fill:?}): restored in {elapsed:?} ({:.2} GiB/s)",
            mib as f64 / 1024.0 / elapsed.as_secs_f64()
        );
        common::kill_and_reap(pid);
    }
}
