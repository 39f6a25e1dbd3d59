//! Incremental dumps with uffd-wp tracking: pre-dump, pre-dump, dump with
//! parents write only the pages written in between (the rest PE_PARENT), the
//! keeper hands tracking over only to its own uid and goes away with the
//! process, and a restore of the chain gives the process its memory back.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use criu_dump::{dump, track, DumpOptions, DumpReport, FailPoint};
use criu_image::{ImageDir, PE_PARENT};
use criu_test_util::images::PageKinds;

const PAGE: u64 = 4096;

/// The incremental program, its output file and command file.
struct Program {
    child: Child,
    pid: i32,
    out: PathBuf,
    cmd: PathBuf,
    region: u64,
    pages: u64,
}

impl Program {
    fn spawn(work: &Path, pages: u64) -> Self {
        let binary = common::compile_program("incremental.c", work);
        let out = work.join("out.txt");
        let cmd = work.join("cmd");
        let child = session_command()
            .arg(&binary)
            .arg(pages.to_string())
            .arg(&cmd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .current_dir("/")
            .spawn()
            .expect("spawn the incremental program");
        let pid = child.id() as i32;
        let line = wait_for_line(&out, |l| l.starts_with("ready "), 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let region = u64::from_str_radix(words[1], 16).unwrap();
        wait_in_pause(pid);
        Self {
            child,
            pid,
            out,
            cmd,
            region,
            pages,
        }
    }

    /// Runs one command and returns its output lines before "done".
    fn run(&self, command: &str) -> Vec<String> {
        let done_before = self.lines().iter().filter(|l| *l == "done").count();
        std::fs::write(&self.cmd, format!("{command}\n")).unwrap();
        wait_in_pause(self.pid);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        wait_for_line(&self.out, |l| l == "done", done_before + 1);
        wait_in_pause(self.pid);
        let lines = self.lines();
        let mut seen = 0;
        let end = lines
            .iter()
            .position(|l| {
                if l == "done" {
                    seen += 1;
                }
                seen == done_before + 1
            })
            .unwrap();
        let start = lines[..end]
            .iter()
            .rposition(|l| l == "done" || l.starts_with("ready "))
            .map_or(0, |i| i + 1);
        lines[start..end].to_vec()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn page(&self, index: u64) -> u64 {
        self.region + index * PAGE
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_line(out: &Path, want: impl Fn(&str) -> bool, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let matching: Vec<&str> = text.lines().filter(|l| want(l)).collect();
        if matching.len() >= count {
            return matching[count - 1].to_owned();
        }
        assert!(Instant::now() < deadline, "output so far: {text:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pre_dump(pid: i32, dir: &Path, parent: Option<&str>) -> criu_dump::DumpReport {
    let mut opts = DumpOptions::new(pid, ImageDir::open(dir).unwrap());
    opts.pre_dump = true;
    opts.track_mem = true;
    opts.parent_img = parent.map(str::to_owned);
    let report = dump(&opts, &mut |_, _| Ok(())).expect("pre-dump");
    wait_in_pause(pid);
    report
}

/// Per page of `pid`'s pagemap in `dir`: PE_PRESENT (data) or PE_PARENT
/// (a hole carrying PE_PARENT only).
fn page_kinds(dir: &Path, pid: i32) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let kinds = PageKinds::read(dir, pid);
    (kinds.data, kinds.parent)
}

fn in_range(pages: &BTreeSet<u64>, start: u64, end: u64) -> BTreeSet<u64> {
    pages.range(start..end).copied().collect()
}

fn images_dir(work: &Path, name: &str) -> PathBuf {
    let dir = work.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// pre-dump (full), pre-dump (only what was written, the rest PE_PARENT,
/// a new mapping whole, a kernel-mode write seen), dump (the same against
/// the second pre-dump); stats exact; crit reads it; the chain restores.
#[test]
fn pre_dump_chain_writes_only_written_pages_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let program = Program::spawn(work.path(), 2048);
    let pid = program.pid;
    let (start, end) = (program.region, program.page(program.pages));

    let d1 = images_dir(work.path(), "1");
    let first = pre_dump(pid, &d1, None);
    let (data1, parent1) = page_kinds(&d1, pid);
    assert!(parent1.is_empty(), "a first pre-dump has no parent");
    let touched: BTreeSet<u64> = (0..program.pages)
        .filter(|p| p % 64 != 63)
        .map(|p| program.page(p))
        .collect();
    assert_eq!(in_range(&data1, start, end), touched);
    assert_eq!(first.pages_skipped_parent, 0);
    assert!(track::keeper_listening(&ImageDir::open(&d1).unwrap()));

    program.run("write 10 2");
    program.run("write 500 1");
    program.run("kread 700");
    let mapped = program.run("mmap 16");
    let extra = u64::from_str_radix(mapped[0].strip_prefix("mapped ").unwrap(), 16).unwrap();

    let d2 = images_dir(work.path(), "2");
    let second = pre_dump(pid, &d2, Some("../1"));
    assert!(
        !track::keeper_listening(&ImageDir::open(&d1).unwrap()),
        "the first keeper handed over and left"
    );
    assert!(track::keeper_listening(&ImageDir::open(&d2).unwrap()));
    let (data2, parent2) = page_kinds(&d2, pid);
    let written: BTreeSet<u64> = [10, 11, 500, 700].map(|p| program.page(p)).into();
    assert_eq!(in_range(&data2, start, end), written);
    assert_eq!(
        in_range(&parent2, start, end),
        touched.difference(&written).copied().collect()
    );
    let extra_pages: BTreeSet<u64> = (0..16).map(|p| extra + p * PAGE).collect();
    assert_eq!(in_range(&data2, extra, extra + 16 * PAGE), extra_pages);
    let stats2 = dump_stats(&d2);
    assert_eq!(stats2.pages_written, data2.len() as u64);
    assert_eq!(stats2.pages_skipped_parent, parent2.len() as u64);
    assert_eq!(second.pages_skipped_parent, parent2.len() as u64);
    // Far fewer pages than the whole region: only writes, new memory, stack etc.
    assert!(data2.len() < 200, "{} pages written", data2.len());

    program.run("write 1000 1");
    program.run("write 5 1");
    let d3 = images_dir(work.path(), "3");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&d3).unwrap());
    opts.parent_img = Some("../2".into());
    opts.track_mem = true;
    let last = dump(&opts, &mut |_, _| Ok(())).expect("dump");
    let (data3, parent3) = page_kinds(&d3, pid);
    let written: BTreeSet<u64> = [5, 1000].map(|p| program.page(p)).into();
    assert_eq!(in_range(&data3, start, end), written);
    assert!(in_range(&data3, extra, extra + 16 * PAGE).is_empty());
    assert_eq!(in_range(&parent3, extra, extra + 16 * PAGE), extra_pages);
    let stats3 = dump_stats(&d3);
    assert_eq!(stats3.pages_written, data3.len() as u64);
    assert_eq!(stats3.pages_skipped_parent, parent3.len() as u64);
    assert_eq!(last.pages_skipped_parent, parent3.len() as u64);
    assert!(!track::keeper_listening(&ImageDir::open(&d2).unwrap()));

    // crit reads what we wrote (pages images are raw).
    for dir in [&d1, &d2, &d3] {
        for name in file_names(dir) {
            if !name.starts_with("pages-") && name != "parent" {
                crit_decode(&dir.join(&name));
            }
        }
    }
    let pagemap = crit_entries(&d3, &format!("pagemap-{pid}.img"));
    assert!(
        pagemap
            .iter()
            .any(|e| e["flags"].as_u64() == Some(u64::from(PE_PARENT))),
        "{pagemap:?}"
    );

    restore_and_check(program, &d3);
}

/// Waits for the (killed) program to be gone, restores it from `dir` with the same pid, and has
/// the restored process check its memory ("intact"); kills and reaps it afterwards.
fn restore_and_check(mut program: Program, dir: &Path) {
    let pid = program.pid;
    let _ = program.child.wait();
    wait_until(|| !alive(pid));
    let restored = criu_restore::restore(
        &criu_restore::RestoreOptions::new(ImageDir::open(dir).unwrap()),
        &mut |_, _| Ok(()),
    )
    .unwrap_or_else(|e| panic!("restore from {}: {e}", dir.display()));
    assert_eq!(restored.root_pid, pid);
    let result = std::panic::catch_unwind(|| program.run("check"));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    let lines = result.expect("the restored process answers");
    assert_eq!(lines, vec!["intact".to_owned()]);
}

/// Images on tmpfs with more than `MAPPED_FILL_MIN` of pages: the pages image is filled in place
/// (through a mapping by the helper threads, by `pwrite` into its place by the dumping thread)
/// instead of appended to, the pagemap comes out as from a dump written with `write` to a disk
/// directory, and the process restores with its memory intact.
#[test]
fn a_large_dump_to_tmpfs_fills_its_pages_image_in_place_and_restores_intact() {
    let work = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let program = Program::spawn(work.path(), 8192);
    let pid = program.pid;
    let region_bytes = program.pages * PAGE;
    assert!(region_bytes > criu_dump::pagepipe::MAPPED_FILL_MIN as u64);

    let on_disk = images_dir(work.path(), "disk");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&on_disk).unwrap());
    opts.leave_running = true;
    let written = dump(&opts, &mut |_, _| Ok(())).expect("leave-running dump to disk");
    assert_eq!(written.pages_filled_in_place, 0, "not on tmpfs: written");
    wait_in_pause(pid);

    let on_tmpfs = images_dir(shm.path(), "tmpfs");
    let filled = dump(
        &DumpOptions::new(pid, ImageDir::open(&on_tmpfs).unwrap()),
        &mut |_, _| Ok(()),
    )
    .expect("dump to tmpfs");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let still_mapped: Vec<&str> = maps
        .lines()
        .filter(|line| line.contains(on_tmpfs.to_str().unwrap()))
        .collect();
    assert!(
        still_mapped.is_empty(),
        "the pages image is unmapped by the time the dump returns: {still_mapped:?}"
    );
    assert_eq!(filled.pages_filled_in_place, filled.pages_written);
    assert_written_and_filled(&filled);
    assert_eq!(filled.pages_written, written.pages_written);
    assert_eq!(page_kinds(&on_tmpfs, pid), page_kinds(&on_disk, pid));
    let pages_file = |dir: &Path| std::fs::metadata(dir.join("pages-1.img")).unwrap().len();
    assert_eq!(pages_file(&on_tmpfs), filled.pages_written * PAGE);
    assert_eq!(pages_file(&on_tmpfs), pages_file(&on_disk));

    restore_and_check(program, &on_tmpfs);
}

/// Of the pages stored in place, the dumping thread wrote some; with a second CPU its helper may
/// fill others through the mapping (which chunks it gets is up to the scheduler).
fn assert_written_and_filled(report: &DumpReport) {
    assert!(report.pages_written_in_place > 0, "{report:?}");
    assert!(
        report.pages_written_in_place <= report.pages_filled_in_place,
        "{report:?}"
    );
}

/// The same in place fill for a pre-dump on tmpfs; the final dump on top of it writes only what
/// changed, and the chain restores intact.
#[test]
fn a_large_pre_dump_to_tmpfs_fills_in_place_and_its_chain_restores_intact() {
    let work = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let program = Program::spawn(work.path(), 8192);
    let pid = program.pid;

    let first = images_dir(shm.path(), "1");
    let pre = pre_dump(pid, &first, None);
    assert!(pre.pages_written > 8000, "{} pages", pre.pages_written);
    assert_eq!(pre.pages_filled_in_place, pre.pages_written);
    assert_written_and_filled(&pre);
    let (data, _) = page_kinds(&first, pid);
    assert_eq!(data.len() as u64, pre.pages_written);

    program.run("write 100 3");
    let last = images_dir(shm.path(), "2");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&last).unwrap());
    opts.parent_img = Some("../1".into());
    opts.track_mem = true;
    let report = dump(&opts, &mut |_, _| Ok(())).expect("dump on the pre-dump");
    assert!(report.pages_written < 200, "{} pages", report.pages_written);
    assert_eq!(report.pages_filled_in_place, 0, "too few pages to map");
    restore_and_check(program, &last);
}

/// A parent without a keeper (here: a plain dump's directory) gives a full
/// dump, not an error; a failed pre-dump leaves no keeper and the process
/// running untraced.
#[test]
fn no_keeper_means_full_dump_and_a_failed_pre_dump_keeps_nothing() {
    let work = tempfile::tempdir().unwrap();
    let program = Program::spawn(work.path(), 256);
    let pid = program.pid;

    let failed = images_dir(work.path(), "failed");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&failed).unwrap());
    opts.pre_dump = true;
    opts.fail_at = Some(FailPoint::Inventory);
    assert!(dump(&opts, &mut |_, _| Ok(())).is_err());
    wait_in_pause(pid);
    assert!(!track::keeper_listening(&ImageDir::open(&failed).unwrap()));
    // Tracking was dropped: no VMA is left registered in the process.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    assert!(
        !smaps
            .lines()
            .any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw")),
        "no uffd-wp registration may remain"
    );

    let plain = images_dir(work.path(), "plain");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&plain).unwrap());
    opts.leave_running = true;
    dump(&opts, &mut |_, _| Ok(())).expect("plain dump");
    wait_in_pause(pid);

    let next = images_dir(work.path(), "next");
    let report = pre_dump(pid, &next, Some("../plain"));
    let (data, parent) = page_kinds(&next, pid);
    assert!(parent.is_empty());
    assert_eq!(report.pages_skipped_parent, 0);
    assert_eq!(dump_stats(&next).pages_written, data.len() as u64);
    assert!(in_range(&data, program.region, program.page(program.pages)).len() >= 250);
}

/// The keeper answers only its own uid, and exits once the process is gone.
#[test]
fn keeper_refuses_other_uids_and_leaves_with_the_process() {
    let work = tempfile::tempdir().unwrap();
    let program = Program::spawn(work.path(), 64);
    let pid = program.pid;
    let dir = images_dir(work.path(), "1");
    pre_dump(pid, &dir, None);
    let images = ImageDir::open(&dir).unwrap();
    let name = track::keeper_name(&images).unwrap();

    // A child of another uid connects: the keeper closes without a word.
    assert_eq!(
        connect_as_nobody(&name),
        Ok(0),
        "the keeper must close on uid 65534 without sending anything"
    );
    assert!(track::keeper_listening(&images), "still there for us");

    let mut program = program;
    let _ = program.child.kill();
    let _ = program.child.wait();
    wait_until(|| !track::keeper_listening(&images));
}

/// Runs a helper process as uid 65534 that connects to the abstract socket
/// `name` and reports how many bytes it got (0: closed on it).
fn connect_as_nobody(name: &str) -> Result<usize, String> {
    let script = format!(
        "import os, socket\nos.setgid(65534)\nos.setuid(65534)\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n\
         s.connect('\\0{name}')\ns.settimeout(5)\n\
         data = s.recv(65536)\nprint(len(data))\n"
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<usize>()
        .map_err(|e| e.to_string())
}

/// Pre-dump of a 1 GiB process, then a dump after it wrote 1 % of it (images
/// on /dev/shm): pages written and wall time of each step. Run with
/// `cargo test --release -p criu-dump --test incremental -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: 1 GiB of memory and about 2 GiB of /dev/shm"]
fn measure_one_gib_pre_dump_then_one_percent_dump() {
    let work = tempfile::tempdir_in("/dev/shm").unwrap();
    let pages = 262_144;
    let program = Program::spawn(work.path(), pages);
    let pid = program.pid;
    let d1 = images_dir(work.path(), "1");
    let started = Instant::now();
    let first = pre_dump(pid, &d1, None);
    let first_time = started.elapsed();
    program.run(&format!("write 1000 {}", pages / 100));
    let d2 = images_dir(work.path(), "2");
    let started = Instant::now();
    let second = pre_dump(pid, &d2, Some("../1"));
    let second_time = started.elapsed();
    println!(
        "second pre-dump after writing {} pages: {} pages written, {} left in the parent, in {:?}",
        pages / 100,
        second.pages_written,
        second.pages_skipped_parent,
        second_time
    );
    program.run(&format!("write 50000 {}", pages / 100));
    let d3 = images_dir(work.path(), "3");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&d3).unwrap());
    opts.parent_img = Some("../2".into());
    opts.track_mem = true;
    let started = Instant::now();
    let last = dump(&opts, &mut |_, _| Ok(())).expect("dump");
    let last_time = started.elapsed();
    println!(
        "pre-dump: {} pages written in {:?} (frozen {:?}); dump after writing {} pages: \
         {} pages written, {} left in the parent, in {:?} (frozen {:?})",
        first.pages_written,
        first_time,
        first.frozen_time,
        pages / 100,
        last.pages_written,
        last.pages_skipped_parent,
        last_time,
        last.frozen_time
    );
    assert!(last.pages_written < pages / 50);
}
