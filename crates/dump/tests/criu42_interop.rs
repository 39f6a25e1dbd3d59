//! Interoperability with a real CRIU 4.2 binary (not installed by default:
//! Debian's criu 3.17 cannot run on this kernel). Run with
//! `CRIU42=/path/to/criu cargo test -p criu-dump --test criu42_interop -- --ignored`;
//! without CRIU42 these tests fail loudly.
//!
//! - CRIU 4.2 restores what we dump (same pid, the program keeps working);
//! - CRIU 4.2's own dump (`-R`) of the same frozen state and ours are
//!   byte-identical image for image, except the run id, clocks and timings.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn criu42() -> PathBuf {
    let path = std::env::var_os("CRIU42")
        .map(PathBuf::from)
        .expect("set CRIU42 to a CRIU 4.2 binary to run the interop tests");
    assert!(path.exists(), "CRIU42={} does not exist", path.display());
    path
}

const COUNTER_SCRIPT: &str = r#"
import socket, os, time, mmap, threading, sys
out = sys.argv[1]
a, b = socket.socketpair(); a.send(b'hello')
r, w = os.pipe(); os.write(w, b'pipedata')
m = mmap.mmap(-1, 3 * 4096, mmap.MAP_SHARED); m[4096:4100] = b'abcd'
g = os.open(out + '.ghost', os.O_RDWR | os.O_CREAT, 0o600); os.write(g, b'ghost'); os.unlink(out + '.ghost')
threading.Thread(target=time.sleep, args=(1000,)).start()
if os.fork() == 0:
    os._exit(0)
for i in range(10**9):
    time.sleep(0.02)
    assert b.recv(5, socket.MSG_PEEK) == b'hello'
    assert m[4096:4100] == b'abcd'
    assert os.pread(g, 5, 0) == b'ghost'
    open(out + '.tmp', 'w').write(str(i)); os.rename(out + '.tmp', out)
"#;

/// The same state, then every thread just sleeps (so two dumps in a row see
/// the same memory and registers).
const QUIET_SCRIPT: &str = r#"
import socket, os, time, mmap, threading, sys
out = sys.argv[1]
a, b = socket.socketpair(); a.send(b'hello')
r, w = os.pipe(); os.write(w, b'pipedata')
m = mmap.mmap(-1, 3 * 4096, mmap.MAP_SHARED); m[4096:4100] = b'abcd'
g = os.open(out + '.ghost', os.O_RDWR | os.O_CREAT, 0o600); os.write(g, b'ghost'); os.unlink(out + '.ghost')
threading.Thread(target=time.sleep, args=(1000,)).start()
if os.fork() == 0:
    os._exit(0)
open(out, 'w').write('ready')
time.sleep(1000)
"#;

fn counter(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs a CRIU 4.2 binary in $CRIU42"]
fn criu42_restores_our_dump() {
    let criu = criu42();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("counter");
    let child = spawn_session(
        "/usr/bin/python3",
        &["-c", COUNTER_SCRIPT, out.to_str().unwrap()],
    );
    let pid = child.id() as i32;
    wait_until(|| counter(&out) > 3);
    let dir = tempfile::tempdir().unwrap();
    let report = dump_to(pid, dir.path(), |_| {}).expect("dump");
    reap(child);
    for p in &report.pids {
        wait_until(|| !alive(*p));
    }
    let frozen = counter(&out);
    let status = Command::new(&criu)
        .args(["restore", "-d", "-v4", "-o", "restore.log", "-D"])
        .arg(dir.path())
        .current_dir(dir.path())
        .status()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("restore.log")).unwrap_or_default();
    assert!(status.success(), "criu restore failed:\n{log}");
    assert!(alive(pid), "restored pid {pid} is not alive");
    wait_until(|| counter(&out) > frozen + 5);
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count(),
        2
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
#[ignore = "needs a CRIU 4.2 binary in $CRIU42"]
fn criu42_and_our_dump_of_the_same_state_are_identical() {
    let criu = criu42();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("counter");
    let child = spawn_session(
        "/usr/bin/python3",
        &["-c", QUIET_SCRIPT, out.to_str().unwrap()],
    );
    let pid = child.id() as i32;
    wait_until(|| out.exists());
    std::thread::sleep(Duration::from_millis(100));
    let theirs = tempfile::tempdir().unwrap();
    let status = Command::new(&criu)
        .args([
            "dump",
            "-R",
            "-v4",
            "-o",
            "dump.log",
            "-t",
            &pid.to_string(),
            "-D",
        ])
        .arg(theirs.path())
        .current_dir(theirs.path())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "criu dump failed: {}",
        std::fs::read_to_string(theirs.path().join("dump.log")).unwrap_or_default()
    );
    let ours = tempfile::tempdir().unwrap();
    dump_to(pid, ours.path(), |_| {}).expect("dump");
    reap(child);
    let images = |d: &Path| -> Vec<String> {
        file_names(d)
            .into_iter()
            .filter(|n| n.ends_with(".img") || n == "stats-dump")
            .collect()
    };
    assert_eq!(images(ours.path()), images(theirs.path()));
    for name in images(ours.path()) {
        // Run id, clocks and timings differ by nature; CRIU writes garbage
        // thread ids for zombies in pstree.img (we write the zombie's pid).
        if ["inventory.img", "timens-0.img", "stats-dump", "pstree.img"].contains(&name.as_str()) {
            continue;
        }
        if name.starts_with("pages-") {
            // CRIU's parasite runs in the task and leaves a few bytes behind
            // on its stack before our dump; sizes must still match.
            let a = std::fs::metadata(theirs.path().join(&name)).unwrap().len();
            let b = std::fs::metadata(ours.path().join(&name)).unwrap().len();
            assert_eq!(a, b, "{name}");
            continue;
        }
        if let Some(tid) = name
            .strip_prefix("core-")
            .and_then(|n| n.strip_suffix(".img"))
        {
            // The parasite's sigreturn also marks the x87 state in use
            // (xstate_bv bit 0); everything else must be equal.
            let tid: u64 = tid.parse().unwrap();
            let norm = |d: &Path| {
                let mut c: Vec<criu_proto::CoreEntry> =
                    read_entries(d, criu_image::ImageKind::Core, tid);
                if let Some(x) = c[0]
                    .thread_info
                    .as_mut()
                    .and_then(|t| t.fpregs.xsave.as_mut())
                {
                    x.xstate_bv |= 1;
                }
                c
            };
            assert_eq!(norm(theirs.path()), norm(ours.path()), "{name}");
            continue;
        }
        if name.starts_with("ghost-file-") {
            // Reading the ghost's content for CRIU's dump updated its atime.
            let id = u64::from_str_radix(
                name.trim_start_matches("ghost-file-")
                    .trim_end_matches(".img"),
                16,
            )
            .unwrap();
            let entry = |d: &Path| {
                let dir = criu_image::ImageDir::open(d).unwrap();
                let mut r = dir.reader(criu_image::ImageKind::GhostFile, id).unwrap();
                let mut e: criu_proto::GhostFileEntry = r.next_entry().unwrap().unwrap();
                e.atim = None;
                (e, r.read_to_end().unwrap())
            };
            assert_eq!(entry(theirs.path()), entry(ours.path()), "{name}");
            continue;
        }
        let a = std::fs::read(theirs.path().join(&name)).unwrap();
        let b = std::fs::read(ours.path().join(&name)).unwrap();
        assert!(a == b, "{name} differs from CRIU 4.2's");
    }
}
