//! End-to-end dumps of a single-threaded `setsid sleep`, checked with crit and
//! against the CRIU 4.2 fixture.

mod common;

use common::*;
use criu_image::ImageKind;
use criu_proto::{CoreEntry, MmEntry, PstreeEntry};

/// Dumps a fresh `setsid sleep` into `dir` and waits until the dump's kill took it; its pid and the
/// report.
fn dump_a_sleeper(dir: &std::path::Path) -> (i32, criu_dump::DumpReport) {
    let child = spawn_sleeper();
    let pid = child.id() as i32;
    let report = dump_to(pid, dir, |_| {}).expect("dump");
    reap(child);
    wait_until(|| !alive(pid));
    (pid, report)
}

#[test]
fn sleep_dump_has_criu_image_set_and_kills_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let (pid, report) = dump_a_sleeper(dir.path());
    assert_eq!(report.pids, vec![pid]);

    let names = file_names(dir.path());
    let expected: Vec<String> = [
        format!("core-{pid}.img"),
        "fdinfo-2.img".into(),
        "files.img".into(),
        format!("fs-{pid}.img"),
        format!("ids-{pid}.img"),
        "inventory.img".into(),
        format!("mm-{pid}.img"),
        format!("pagemap-{pid}.img"),
        "pages-1.img".into(),
        "pstree.img".into(),
        "seccomp.img".into(),
        "stats-dump".into(),
        "timens-0.img".into(),
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected);

    for name in &names {
        if name != "pages-1.img" {
            crit_decode(&dir.path().join(name));
        }
    }
    let pstree: Vec<PstreeEntry> = read_entries(dir.path(), ImageKind::Pstree, 0);
    assert_eq!(pstree.len(), 1);
    assert_eq!(
        (pstree[0].pid, pstree[0].ppid, pstree[0].pgid, pstree[0].sid),
        (pid as u32, 0, pid as u32, pid as u32)
    );
    assert_eq!(pstree[0].threads, vec![pid as u32]);

    let core: Vec<CoreEntry> = read_entries(dir.path(), ImageKind::Core, pid as u64);
    let mm: Vec<MmEntry> = read_entries(dir.path(), ImageKind::Mm, pid as u64);
    let ip = core[0].thread_info.as_ref().unwrap().gpregs.ip;
    assert!(
        mm[0]
            .vmas
            .iter()
            .any(|v| v.start <= ip && ip < v.end && v.prot & 4 != 0),
        "ip {ip:#x} in an executable VMA"
    );
    let tc = core[0].tc.as_ref().unwrap();
    assert_eq!(tc.comm, "sleep");
    assert_eq!(tc.sigactions.len(), 62);
    assert_eq!(tc.rlimits.as_ref().unwrap().rlimits.len(), 16);

    let pages_bytes = std::fs::metadata(dir.path().join("pages-1.img"))
        .unwrap()
        .len();
    let stats = crit_entries(dir.path(), "stats-dump");
    assert_eq!(
        stats[0]["dump"]["pages_written"].as_u64().unwrap() * 4096,
        pages_bytes
    );
    assert_eq!(report.pages_written * 4096, pages_bytes);
    assert!(pages_bytes > 0);
}

/// stats-dump says, as CRIU's does, how long the memory took (memdump_time) and how much of that
/// was storing it (memwrite_time): the figures `cargo xtask bench` judges the data path by.
#[test]
fn stats_dump_times_the_memory_phase_within_the_frozen_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_, report) = dump_a_sleeper(dir.path());

    let stats = crit_entries(dir.path(), "stats-dump");
    let micros = |field: &str| {
        stats[0]["dump"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("stats-dump has no dump.{field}: {}", stats[0]))
    };
    let (memdump, memwrite, frozen) = (
        micros("memdump_time"),
        micros("memwrite_time"),
        micros("frozen_time"),
    );
    assert!(memwrite > 0, "memwrite_time {memwrite}");
    assert!(
        memwrite <= memdump && memdump <= frozen,
        "memwrite {memwrite} <= memdump {memdump} <= frozen {frozen} µs"
    );
    assert_eq!(report.memdump_time.as_micros() as u64, memdump);
    assert_eq!(report.memwrite_time.as_micros() as u64, memwrite);
}
