//! Bad or unsupported images are refused before any process is created,
//! with errors that name the file and offset.

mod common;

use std::path::Path;

use criu_image::{ImageDir, ImageKind};
use criu_restore::{restore, RestoreError, RestoreOptions};

fn try_restore(dir: &Path) -> Result<criu_restore::RestoreReport, RestoreError> {
    let opts = RestoreOptions::new(ImageDir::open(dir).unwrap());
    restore(&opts, &mut |_, _| Ok(()))
}

/// Restores and expects a refusal; checks that no process got the pid.
fn expect_refusal(dir: &Path, pid: i32) -> RestoreError {
    let result = try_restore(dir);
    let err = match result {
        Ok(report) => {
            common::kill_and_reap(report.root_pid);
            panic!("a bad image was restored as pid {}", report.root_pid);
        }
        Err(e) => e,
    };
    assert!(
        !common::pid_exists(pid),
        "pid {pid} exists after a refused restore"
    );
    err
}

#[test]
fn truncated_core_image_names_the_file_and_offset() {
    let (dir, pid) = common::fixture_at_free_pid();
    let core = dir.path().join(format!("core-{pid}.img"));
    let len = std::fs::metadata(&core).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&core).unwrap();
    file.set_len(len - 100).unwrap();
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(text.contains(&format!("core-{pid}.img")), "{text}");
    assert!(text.contains("offset"), "{text}");
    assert_eq!(err.errno(), Some(libc::EINVAL), "{text}");
}

#[test]
fn corrupt_magic_is_refused() {
    let (dir, pid) = common::fixture_at_free_pid();
    let mm = dir.path().join(format!("mm-{pid}.img"));
    let mut bytes = std::fs::read(&mm).unwrap();
    bytes[4] ^= 0xff;
    std::fs::write(&mm, bytes).unwrap();
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(
        text.contains(&format!("mm-{pid}.img")) && text.contains("magic"),
        "{text}"
    );
    assert_eq!(err.errno(), Some(libc::EINVAL));
}

#[test]
fn pagemap_running_past_the_pages_file_is_refused() {
    let (dir, pid) = common::fixture_at_free_pid();
    let pages = dir.path().join("pages-1.img");
    let len = std::fs::metadata(&pages).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(
        text.contains(&format!("pagemap-{pid}.img")) && text.contains("pages-1.img"),
        "{text}"
    );
    assert!(
        text.contains(&format!("only {} bytes", len - 4096)),
        "{text}"
    );
    assert_eq!(err.errno(), Some(libc::EINVAL));
}

#[test]
fn fd_referring_to_a_missing_file_id_is_refused() {
    let (dir, pid) = common::fixture_at_free_pid();
    let images = ImageDir::open(dir.path()).unwrap();
    let mut fds: Vec<criu_proto::FdinfoEntry> = images
        .reader(ImageKind::Fdinfo, 2)
        .unwrap()
        .read_all()
        .unwrap();
    fds[0].id = 999;
    let mut writer = images.writer(ImageKind::Fdinfo, 2).unwrap();
    for fd in &fds {
        writer.write_entry(fd).unwrap();
    }
    writer.finish().unwrap();
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(
        text.contains("fdinfo-2.img") && text.contains("999"),
        "{text}"
    );
    assert_eq!(err.errno(), Some(libc::EINVAL));
}

#[test]
fn unsupported_fd_kind_is_refused_naming_the_kind() {
    let (dir, pid) = common::fixture_at_free_pid();
    let images = ImageDir::open(dir.path()).unwrap();
    let mut files: Vec<criu_proto::FileEntry> = images
        .reader(ImageKind::Files, 0)
        .unwrap()
        .read_all()
        .unwrap();
    let mut fds: Vec<criu_proto::FdinfoEntry> = images
        .reader(ImageKind::Fdinfo, 2)
        .unwrap()
        .read_all()
        .unwrap();
    // A packet socket: not something this restore knows.
    files.push(criu_proto::FileEntry {
        r#type: criu_proto::FdTypes::Packetsk as i32,
        id: 77,
        ..Default::default()
    });
    fds.push(criu_proto::FdinfoEntry {
        id: 77,
        flags: 0,
        r#type: criu_proto::FdTypes::Packetsk as i32,
        fd: 40,
        ..Default::default()
    });
    let mut writer = images.writer(ImageKind::Files, 0).unwrap();
    for f in &files {
        writer.write_entry(f).unwrap();
    }
    writer.finish().unwrap();
    let mut writer = images.writer(ImageKind::Fdinfo, 2).unwrap();
    for fd in &fds {
        writer.write_entry(fd).unwrap();
    }
    writer.finish().unwrap();
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(
        text.contains("PACKETSK") && text.contains("fd 40") && text.contains("not supported"),
        "{text}"
    );
    assert_eq!(err.errno(), Some(libc::EOPNOTSUPP));
}

#[test]
fn changed_file_size_is_refused() {
    let (dir, pid) = common::fixture_at_free_pid();
    let images = ImageDir::open(dir.path()).unwrap();
    let mut files: Vec<criu_proto::FileEntry> = images
        .reader(ImageKind::Files, 0)
        .unwrap()
        .read_all()
        .unwrap();
    let reg = files[0].reg.as_mut().unwrap();
    reg.size = Some(reg.size.unwrap() + 1);
    let mut writer = images.writer(ImageKind::Files, 0).unwrap();
    for f in &files {
        writer.write_entry(f).unwrap();
    }
    writer.finish().unwrap();
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(
        text.contains("/usr/bin/sleep") && text.contains("bad size"),
        "{text}"
    );
}

/// Puts the leader of the fixture in seccomp filter mode with `filter` as
/// its filter index, over the filters of `entry`.
fn with_seccomp(dir: &Path, pid: i32, filter: u32, entry: criu_proto::SeccompEntry) {
    let images = ImageDir::open(dir).unwrap();
    let mut core: criu_proto::CoreEntry = images
        .reader(ImageKind::Core, pid as u64)
        .unwrap()
        .next_entry()
        .unwrap()
        .unwrap();
    let tc = core.thread_core.as_mut().unwrap();
    tc.seccomp_mode = Some(2);
    tc.seccomp_filter = Some(filter);
    let mut writer = images.writer(ImageKind::Core, pid as u64).unwrap();
    writer.write_entry(&core).unwrap();
    writer.finish().unwrap();
    let mut writer = images.writer(ImageKind::Seccomp, 0).unwrap();
    writer.write_entry(&entry).unwrap();
    writer.finish().unwrap();
}

fn allow_all_filter(prev: Option<u32>) -> criu_proto::SeccompFilter {
    // BPF_RET|BPF_K SECCOMP_RET_ALLOW
    let mut insn = vec![0x06, 0, 0, 0];
    insn.extend_from_slice(&0x7fff_0000u32.to_le_bytes());
    criu_proto::SeccompFilter {
        filter: insn,
        prev,
        flags: Some(0),
    }
}

#[test]
fn seccomp_filter_index_out_of_range_is_refused() {
    let (dir, pid) = common::fixture_at_free_pid();
    let entry = criu_proto::SeccompEntry {
        seccomp_filters: vec![allow_all_filter(None)],
    };
    with_seccomp(dir.path(), pid, 3, entry);
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(
        text.contains("seccomp.img") && text.contains("filter 3"),
        "{text}"
    );
    assert_eq!(err.errno(), Some(libc::EINVAL), "{text}");
}

#[test]
fn seccomp_filter_chain_that_loops_is_refused() {
    let (dir, pid) = common::fixture_at_free_pid();
    let entry = criu_proto::SeccompEntry {
        seccomp_filters: vec![allow_all_filter(Some(1)), allow_all_filter(Some(0))],
    };
    with_seccomp(dir.path(), pid, 0, entry);
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(text.contains("loops"), "{text}");
}

#[test]
fn seccomp_filter_of_a_bad_length_is_refused() {
    let (dir, pid) = common::fixture_at_free_pid();
    let mut filter = allow_all_filter(None);
    filter.filter.push(0);
    let entry = criu_proto::SeccompEntry {
        seccomp_filters: vec![filter],
    };
    with_seccomp(dir.path(), pid, 0, entry);
    let err = expect_refusal(dir.path(), pid);
    let text = err.to_string();
    assert!(text.contains("bad length of 9 bytes"), "{text}");
}
