//! Incremental dumps end to end through the server: RPC PRE_DUMP, PRE_DUMP,
//! DUMP with `parent_img` on one swrk connection, and the CLI `pre-dump`
//! then `dump --prev-images-dir`; each dump leaves unwritten pages in its
//! parent (PE_PARENT) and the chain restores with the memory intact.

mod common;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use criu_proto::CriuReqType;
use criu_test_util::images::{dump_stats, PageKinds};
use criu_test_util::process::{alive, in_pause_and_untraced, DetachedCommand};

const PAGE: u64 = 4096;
const PAGES: u64 = 512;

/// A python process in its own session (not our child) with PAGES pages of
/// private anonymous memory holding a (page, generation) pattern. On SIGUSR1
/// it runs the command in its command file (`write FIRST COUNT` or `check`)
/// and prints "done".
const PROGRAM: &str = r#"
import ctypes, mmap, signal, sys
N = int(sys.argv[2])
m = mmap.mmap(-1, N * 4096, flags=mmap.MAP_PRIVATE)
base = bytes(range(256)) * 17
gen = [1] * N
def content(p, g):
    k = (g * 37 + p * 31) % 256
    return base[k:k + 4096]
for p in range(N):
    m[p * 4096:(p + 1) * 4096] = content(p, 1)
def on_usr1(sig, frame):
    words = open(sys.argv[1]).read().split()
    if words[0] == "write":
        for p in range(int(words[1]), int(words[1]) + int(words[2])):
            gen[p] += 1
            m[p * 4096:(p + 1) * 4096] = content(p, gen[p])
    elif words[0] == "check":
        bad = [p for p in range(N) if m[p * 4096:(p + 1) * 4096] != content(p, gen[p])]
        print("intact" if not bad else "damaged %r" % bad[:8])
    print("done", flush=True)
signal.signal(signal.SIGUSR1, on_usr1)
print("ready %x" % ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
while True:
    signal.pause()
"#;

struct Program {
    pid: i32,
    out: PathBuf,
    cmd: PathBuf,
    region: u64,
}

impl Program {
    /// Starts PROGRAM detached (its own session, not our child) with its
    /// stdout on a file.
    fn spawn(work: &Path) -> Self {
        let out = work.join("out.txt");
        let cmd = work.join("cmd");
        let pid = DetachedCommand::new("/usr/bin/python3")
            .arg("-c")
            .arg(PROGRAM)
            .arg(&cmd)
            .arg(PAGES.to_string())
            .stdout_to(&out)
            .spawn();
        let mut region = 0;
        assert!(wait_until(Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            region = text
                .lines()
                .find_map(|l| l.strip_prefix("ready "))
                .map(|a| u64::from_str_radix(a, 16).unwrap())
                .unwrap_or(0);
            region != 0
        }));
        let program = Self {
            pid,
            out,
            cmd,
            region,
        };
        program.wait_idle();
        program
    }

    /// In pause() and untraced.
    fn wait_idle(&self) {
        assert!(wait_until(Duration::from_secs(20), || {
            in_pause_and_untraced(self.pid)
        }));
    }

    /// Runs a command; returns the line printed before "done" (if any).
    fn run(&self, command: &str) -> Option<String> {
        let lines = || -> Vec<String> {
            std::fs::read_to_string(&self.out)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        };
        let before = lines().iter().filter(|l| *l == "done").count();
        std::fs::write(&self.cmd, command).unwrap();
        self.wait_idle();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        assert!(wait_until(Duration::from_secs(20), || lines()
            .iter()
            .filter(|l| *l == "done")
            .count()
            > before));
        self.wait_idle();
        let all = lines();
        let done = all
            .iter()
            .enumerate()
            .filter(|(_, l)| *l == "done")
            .nth(before)
            .unwrap()
            .0;
        (done > 0 && all[done - 1] != "done" && !all[done - 1].starts_with("ready"))
            .then(|| all[done - 1].clone())
    }

    fn page(&self, index: u64) -> u64 {
        self.region + index * PAGE
    }

    fn region_end(&self) -> u64 {
        self.page(PAGES)
    }
}

/// Data pages and PE_PARENT pages of `pid`'s pagemap in `dir`, within
/// [start, end).
fn page_kinds(dir: &Path, pid: i32, start: u64, end: u64) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let kinds = PageKinds::read(dir, pid).within(start..end);
    (kinds.data, kinds.parent)
}

fn pages(program: &Program, indexes: &[u64]) -> BTreeSet<u64> {
    indexes.iter().map(|&p| program.page(p)).collect()
}

fn rpc_dump_request(
    kind: CriuReqType,
    dir: &std::os::fd::OwnedFd,
    pid: i32,
    parent: Option<&str>,
) -> criu_proto::CriuReq {
    let mut req = request(kind);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    options.pid = Some(pid);
    options.parent_img = parent.map(str::to_owned);
    options.track_mem = Some(true);
    options.log_level = Some(4);
    req.opts = Some(options);
    req
}

#[test]
fn rpc_pre_dump_pre_dump_dump_writes_only_changes_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let program = Program::spawn(work.path());
    let pid = program.pid;
    let dirs: Vec<PathBuf> = (0..3).map(|i| work.path().join(i.to_string())).collect();
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap();
    }
    let fds: Vec<_> = dirs.iter().map(|d| dir_fd(d)).collect();
    let (start, end) = (program.region, program.region_end());

    let swrk = Swrk::start();
    let resp = swrk
        .client
        .call(&rpc_dump_request(CriuReqType::PreDump, &fds[0], pid, None));
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    program.wait_idle();
    let (data0, parent0) = page_kinds(&dirs[0], pid, start, end);
    assert_eq!(data0.len() as u64, PAGES);
    assert!(parent0.is_empty());

    program.run("write 3 2");
    let resp = swrk.client.call(&rpc_dump_request(
        CriuReqType::PreDump,
        &fds[1],
        pid,
        Some("../0"),
    ));
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    program.wait_idle();
    let (data1, parent1) = page_kinds(&dirs[1], pid, start, end);
    assert_eq!(data1, pages(&program, &[3, 4]));
    assert_eq!(parent1.len() as u64, PAGES - 2);
    assert!(dump_stats(&dirs[1]).pages_skipped_parent >= PAGES - 2);

    program.run("write 100 1");
    let resp = swrk.client.call(&rpc_dump_request(
        CriuReqType::Dump,
        &fds[2],
        pid,
        Some("../1"),
    ));
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(swrk.wait(), 0);
    let (data2, parent2) = page_kinds(&dirs[2], pid, start, end);
    assert_eq!(data2, pages(&program, &[100]));
    assert_eq!(parent2.len() as u64, PAGES - 1);
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));

    let swrk = Swrk::start();
    let mut req = request(CriuReqType::Restore);
    let mut options = opts();
    options.images_dir_fd = fds[2].as_raw_fd();
    options.log_file = Some("restore.log".into());
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(resp.restore.unwrap().pid, pid);
    assert_eq!(swrk.wait(), 0);
    let checked = program.run("check");
    kill_and_wait_gone(pid);
    assert_eq!(checked.as_deref(), Some("intact"));
}

#[test]
fn cli_pre_dump_then_dump_with_prev_images_dir() {
    let work = tempfile::tempdir().unwrap();
    let program = Program::spawn(work.path());
    let pid = program.pid;
    let (first, second) = (work.path().join("1"), work.path().join("2"));
    std::fs::create_dir(&first).unwrap();
    std::fs::create_dir(&second).unwrap();
    let criu = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("CRIU_CONFIG_FILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let pid_arg = pid.to_string();
    // `output()` returns only once nobody holds criu's stdout: the keeper
    // must not keep it open.
    criu(&[
        "pre-dump",
        "--no-default-config",
        "-t",
        &pid_arg,
        "-D",
        first.to_str().unwrap(),
        "-o",
        "pre.log",
    ]);
    program.wait_idle();
    program.run("write 7 1");
    criu(&[
        "dump",
        "--no-default-config",
        "-t",
        &pid_arg,
        "-D",
        second.to_str().unwrap(),
        "--prev-images-dir",
        "../1",
        "--track-mem",
        "-v4",
        "-o",
        "dump.log",
    ]);
    let (data, parent) = page_kinds(&second, pid, program.region, program.region_end());
    assert_eq!(data, pages(&program, &[7]));
    assert_eq!(parent.len() as u64, PAGES - 1);
    // At -v4 the log says what was frozen and, per process, what went where.
    let log = std::fs::read_to_string(second.join("dump.log")).unwrap();
    for wanted in [
        "Froze the tree: 1 processes, 1 threads",
        &format!("pid {pid}: "),
        "left in the parent images",
        "The tree was frozen for",
    ] {
        assert!(
            log.contains(wanted),
            "{wanted:?} is not in dump.log:\n{log}"
        );
    }
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    criu(&[
        "restore",
        "--no-default-config",
        "-D",
        second.to_str().unwrap(),
        "-o",
        "restore.log",
        "--restore-detached",
    ]);
    let checked = program.run("check");
    kill_and_wait_gone(pid);
    assert_eq!(checked.as_deref(), Some("intact"));
}
