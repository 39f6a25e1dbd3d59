//! Process trees, zombies and threads.

mod common;

use common::*;
use criu_image::ImageKind;
use criu_proto::{CoreEntry, PstreeEntry};

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect()
}

#[test]
fn tree_with_a_zombie_is_dumped_in_pre_order() {
    // Root `sleep` (exec'd by sh) with a zombie child (sleep 0) and a live child.
    let child = spawn_session("/bin/sh", &["-c", "sleep 0 & sleep 1000 & exec sleep 1000"]);
    let root = child.id() as i32;
    wait_until(|| {
        let kids = children_of(root);
        kids.len() == 2
            && kids.iter().any(|k| proc_state(*k) == 'Z')
            && std::fs::read_link(format!("/proc/{root}/exe"))
                .map(|p| p.ends_with("sleep"))
                .unwrap_or(false)
    });
    let kids = children_of(root);
    let zombie = *kids.iter().find(|k| proc_state(**k) == 'Z').unwrap();
    let live = *kids.iter().find(|k| **k != zombie).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let report = dump_to(root, dir.path(), |_| {}).expect("dump");
    reap(child);
    assert_eq!(report.pids[0], root);
    assert_eq!(report.pids.len(), 3);
    for pid in [root, live] {
        wait_until(|| !alive(pid));
    }

    let pstree: Vec<PstreeEntry> = read_entries(dir.path(), ImageKind::Pstree, 0);
    assert_eq!(pstree[0].pid, root as u32);
    assert_eq!(pstree[0].ppid, 0);
    for e in &pstree[1..] {
        assert_eq!(
            (e.ppid, e.pgid, e.sid),
            (root as u32, root as u32, root as u32)
        );
        assert_eq!(e.threads, vec![e.pid]);
    }
    let zcore: Vec<CoreEntry> = read_entries(dir.path(), ImageKind::Core, zombie as u64);
    let tc = zcore[0].tc.as_ref().unwrap();
    assert_eq!(
        (tc.task_state, tc.exit_code, tc.comm.as_str()),
        (2, 0, "sleep")
    );
    assert!(zcore[0].thread_info.is_none());
    assert!(!dir.path().join(format!("ids-{zombie}.img")).exists());
    assert!(dir.path().join(format!("mm-{live}.img")).exists());
    // Separate processes get separate object ids (fork, no CLONE_*).
    let ids: Vec<criu_proto::TaskKobjIdsEntry> =
        read_entries(dir.path(), ImageKind::Ids, live as u64);
    assert_eq!((ids[0].vm_id, ids[0].files_id), (3, 3));
    assert!(dir.path().join("fdinfo-3.img").exists());
    for name in file_names(dir.path()) {
        if !name.starts_with("pages-") {
            crit_decode(&dir.path().join(name));
        }
    }
}

#[test]
fn threads_get_one_core_each() {
    let script = "import threading,time\nfor i in range(3):\n    threading.Thread(target=time.sleep, args=(1000,)).start()\ntime.sleep(1000)\n";
    let child = spawn_session("/usr/bin/python3", &["-c", script]);
    let pid = child.id() as i32;
    wait_until(|| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
            == 4
    });
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    tids.sort();
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    // Still 4 threads, still running.
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count(),
        4
    );
    assert_ne!(proc_state(pid), 'T');
    reap(child);

    let pstree: Vec<PstreeEntry> = read_entries(dir.path(), ImageKind::Pstree, 0);
    assert_eq!(pstree[0].threads, tids);
    let mut clear_tids = Vec::new();
    for tid in &tids {
        let core: Vec<CoreEntry> = read_entries(dir.path(), ImageKind::Core, u64::from(*tid));
        let th = core[0].thread_core.as_ref().unwrap();
        assert_eq!(
            core[0].tc.is_some(),
            *tid == pid as u32,
            "only the leader has tc"
        );
        assert_eq!(
            th.blk_sigset.is_some(),
            *tid != pid as u32,
            "threads carry their own sigmask"
        );
        assert_eq!(th.comm.as_deref(), Some("python3"));
        clear_tids.push(core[0].thread_info.as_ref().unwrap().clear_tid_addr);
        crit_decode(&dir.path().join(format!("core-{tid}.img")));
    }
    // glibc sets a distinct clear_child_tid for every thread.
    clear_tids.sort();
    clear_tids.dedup();
    assert_eq!(clear_tids.len(), 4);
    assert!(clear_tids.iter().all(|a| *a != 0));
}
