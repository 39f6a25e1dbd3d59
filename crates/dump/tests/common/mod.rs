//! Helpers shared by the dump integration tests: spawning real target
//! processes and decoding images with Debian's crit and our reader.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criu_dump::{dump, DumpError, DumpOptions, DumpReport};
use criu_image::{ImageDir, ImageKind};
use criu_test_util::process::in_pause_and_untraced;

// Each test binary includes this module and uses a different subset.
#[allow(unused_imports)]
pub use criu_test_util::{images::dump_stats, process::alive};

/// (bash: dash cannot close fds above 9.) Closes every fd above 2 (whatever the test runner leaked to us), then
/// execs `setsid "$@"`.
pub const CLEAN_SETSID: &str = r#"for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done 2>/dev/null; exec setsid "$@""#;

/// A command that runs its arguments as a new session leader with only fds
/// 0-2 open: append the program and its arguments with `.arg()`/`.args()`.
pub fn session_command() -> Command {
    let mut cmd = Command::new("/bin/bash");
    cmd.args(["-c", CLEAN_SETSID, "sh"]);
    cmd
}

/// Spawns `program args` as a session leader with stdio on /dev/null and no
/// other fds.
pub fn spawn_session(program: &str, args: &[&str]) -> Child {
    let child = session_command()
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn()
        .expect("spawn setsid");
    // Wait until sh and setsid have exec'd the program (which may exec further).
    let setsid = std::fs::canonicalize("/usr/bin/setsid").expect("setsid path");
    let sh = std::fs::canonicalize("/bin/bash").expect("bash path");
    wait_until(|| {
        std::fs::read_link(format!("/proc/{}/exe", child.id()))
            .map(|p| p != setsid && p != sh)
            .unwrap_or(false)
    });
    child
}

/// Spawns `setsid sleep 1000` and waits until it sleeps in clock_nanosleep
/// (so its mappings are final).
pub fn spawn_sleeper() -> Child {
    let child = spawn_session("/usr/bin/sleep", &["1000"]);
    wait_in_nanosleep(child.id() as i32);
    child
}

/// Waits until `pid` is blocked in clock_nanosleep (syscall 230).
pub fn wait_in_nanosleep(pid: i32) {
    wait_until(|| {
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .map(|s| s.starts_with("230 "))
            .unwrap_or(false)
    });
}

/// Polls `cond` for up to 10 s.
pub fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition not met in 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// State letter from /proc/PID/stat.
pub fn proc_state(pid: i32) -> char {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 1..];
    rest.split_whitespace()
        .next()
        .unwrap()
        .chars()
        .next()
        .unwrap()
}

/// Dumps `pid` into `dir` with options adjusted by `adjust`.
pub fn dump_to(
    pid: i32,
    dir: &Path,
    adjust: impl FnOnce(&mut DumpOptions),
) -> Result<DumpReport, DumpError> {
    let mut opts = DumpOptions::new(pid, ImageDir::open(dir).unwrap());
    adjust(&mut opts);
    dump(&opts, &mut |_, _| Ok(()))
}

/// Decodes an image with Debian's crit (python3 + pycriu 3.17); panics loudly
/// when crit is missing or fails.
pub fn crit_decode(path: &Path) -> serde_json::Value {
    assert!(
        Path::new("/usr/bin/crit").exists(),
        "/usr/bin/crit (Debian criu package) is required for these tests"
    );
    let out = Command::new("/usr/bin/python3")
        .arg("/usr/bin/crit")
        .arg("decode")
        .arg("-i")
        .arg(path)
        .output()
        .expect("run crit");
    assert!(
        out.status.success(),
        "crit decode {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("crit JSON")
}

/// The entries of an image decoded by crit.
pub fn crit_entries(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    crit_decode(&dir.join(name))["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Reads every entry of an image with our reader.
pub fn read_entries<M: prost::Message + Default>(dir: &Path, kind: ImageKind, id: u64) -> Vec<M> {
    let images = ImageDir::open(dir).unwrap();
    images.reader(kind, id).unwrap().read_all::<M>().unwrap()
}

/// Sorted names of the files in `dir`.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Reaps a child that may already have been reaped by the dump's kill.
pub fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Spawns `command` (stdout piped, stderr discarded, stdin as given) and reads the first line it prints,
/// the "I am set up" signal of the test programs.
pub fn spawn_reading_first_line(command: &mut Command, stdin: Stdio) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// A python script in its own session, once it has printed "ready".
pub fn python_session(script: &str) -> Child {
    let (child, line) = spawn_reading_first_line(
        session_command().args(["/usr/bin/python3", "-c", script]),
        Stdio::null(),
    );
    assert_eq!(line.trim(), "ready");
    child
}

/// Builds the C program `tests/programs/<source>` into `out_dir`; returns the binary.
pub fn compile_program(source: &str, out_dir: &Path) -> PathBuf {
    let out = out_dir.join(Path::new(source).file_stem().expect("a file name"));
    let status = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&out)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/programs")
                .join(source),
        )
        .status()
        .expect("gcc is required to build the test programs");
    assert!(status.success(), "gcc failed on {source}");
    out
}

/// Waits until `pid` sleeps in pause() (syscall 34) and nobody traces it:
/// its memory no longer changes, and a signal reaches its handler.
pub fn wait_in_pause(pid: i32) {
    wait_until(|| in_pause_and_untraced(pid));
}
