//! Our dump of `env -i setsid sleep` compared with the dump CRIU 4.2 made of
//! the same program on the same kind of machine
//! (tests/fixtures/criu42-sleep): same image set, same ids, same file
//! entries, same VMA layout and statuses, same core fields.

mod common;

use std::path::Path;

use common::*;
use criu_image::{ImageDir, ImageKind};
use criu_proto::{
    CoreEntry, FdinfoEntry, FileEntry, FsEntry, InventoryEntry, MmEntry, TaskKobjIdsEntry,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/criu42-sleep"
);
const FIXTURE_PID: u64 = 31202;

fn fixture<M: prost::Message + Default>(kind: ImageKind, id: u64) -> Vec<M> {
    read_entries(Path::new(FIXTURE), kind, id)
}

#[test]
fn sleep_dump_matches_criu_4_2_fixture() {
    // As the fixture was made: stdin, stdout and stderr on /dev/null, 1 and 2 one open file.
    let child = std::process::Command::new("/bin/bash")
        .args([
            "-c",
            r#"cd / && for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done; exec /usr/bin/env -i setsid /usr/bin/sleep 100000 </dev/null >/dev/null 2>&1"#,
        ])
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_until(|| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.ends_with("sleep"))
            .unwrap_or(false)
    });
    // Its mappings are final once it sleeps.
    wait_in_nanosleep(pid);
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |_| {}).expect("dump");
    reap(child);
    ImageDir::open(dir.path()).expect("images dir stays readable");

    // Same image set (pid substituted). The fixture's task also held fds 10
    // (/dev/null) and 251 (a pipe's write end) from its launcher; ours has
    // only 0-2, which changes no image file.
    let fixture_names: Vec<String> = file_names(Path::new(FIXTURE))
        .into_iter()
        .filter(|n| !n.ends_with(".json") && n != "README.md")
        .map(|n| n.replace(&FIXTURE_PID.to_string(), &pid.to_string()))
        .collect();
    assert_eq!(file_names(dir.path()), fixture_names);

    // Inventory and ids.
    let inv: Vec<InventoryEntry> = read_entries(dir.path(), ImageKind::Inventory, 0);
    let finv: Vec<InventoryEntry> = fixture(ImageKind::Inventory, 0);
    assert_eq!(inv[0].img_version, finv[0].img_version);
    assert_eq!(inv[0].root_ids, finv[0].root_ids);
    assert_eq!(inv[0].fdinfo_per_id, finv[0].fdinfo_per_id);
    assert_eq!(inv[0].ns_per_id, finv[0].ns_per_id);
    assert_eq!(inv[0].root_cg_set, finv[0].root_cg_set);
    assert_eq!(inv[0].lsmtype, finv[0].lsmtype);
    assert_eq!(inv[0].network_lock_method, finv[0].network_lock_method);
    assert_eq!(inv[0].plugins_entry, finv[0].plugins_entry);
    assert_eq!(inv[0].dump_criu_run_id.as_ref().map(|s| s.len()), Some(36));
    let ids: Vec<TaskKobjIdsEntry> = read_entries(dir.path(), ImageKind::Ids, pid as u64);
    assert_eq!(
        ids,
        fixture::<TaskKobjIdsEntry>(ImageKind::Ids, FIXTURE_PID)
    );

    // Files: the mapped files first, with the same entries.
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let ffiles: Vec<FileEntry> = fixture(ImageKind::Files, 0);
    assert_eq!(files[..3], ffiles[..3]);
    // stdio: /dev/null REG entries with the same flags and mode.
    for (ours, theirs) in files[3..5].iter().zip(&ffiles[3..5]) {
        assert_eq!(ours, theirs);
    }
    // cwd and root: the last two entries, two distinct ids for "/".
    let fs: Vec<FsEntry> = read_entries(dir.path(), ImageKind::Fs, pid as u64);
    let n = files.len() as u32;
    assert_eq!(
        (fs[0].cwd_id, fs[0].root_id, fs[0].umask),
        (n - 1, n, Some(0o22))
    );
    assert_eq!(
        files[(n - 2) as usize].reg,
        Some(criu_proto::RegFileEntry {
            id: n - 1,
            ..ffiles[7].reg.clone().unwrap()
        })
    );

    let fdinfo: Vec<FdinfoEntry> = read_entries(dir.path(), ImageKind::Fdinfo, 2);
    let ffdinfo: Vec<FdinfoEntry> = fixture(ImageKind::Fdinfo, 2);
    assert_eq!(fdinfo[..3], ffdinfo[..3]);

    // mm: same VMA sequence (sizes, prot, flags, status, file ids, madv).
    let mm: Vec<MmEntry> = read_entries(dir.path(), ImageKind::Mm, pid as u64);
    let fmm: Vec<MmEntry> = fixture(ImageKind::Mm, FIXTURE_PID);
    assert_eq!(mm[0].vmas.len(), fmm[0].vmas.len());
    for (a, b) in mm[0].vmas.iter().zip(&fmm[0].vmas) {
        assert_eq!(
            (
                a.end - a.start,
                a.pgoff,
                a.shmid,
                a.prot,
                a.flags,
                a.status,
                a.fd,
                a.madv,
                a.fdflags
            ),
            (
                b.end - b.start,
                b.pgoff,
                b.shmid,
                b.prot,
                b.flags,
                b.status,
                b.fd,
                b.madv,
                b.fdflags
            ),
            "VMA {:#x} vs fixture {:#x}",
            a.start,
            b.start
        );
    }
    assert_eq!(mm[0].exe_file_id, fmm[0].exe_file_id);
    assert_eq!(mm[0].mm_saved_auxv.len(), fmm[0].mm_saved_auxv.len());
    assert_eq!(
        (mm[0].dumpable, mm[0].thp_disabled),
        (fmm[0].dumpable, fmm[0].thp_disabled)
    );

    // core: same shape and the same values where the machine does not matter.
    let core: Vec<CoreEntry> = read_entries(dir.path(), ImageKind::Core, pid as u64);
    let fcore: Vec<CoreEntry> = fixture(ImageKind::Core, FIXTURE_PID);
    let (c, f) = (&core[0], &fcore[0]);
    assert_eq!(c.mtype, f.mtype);
    let (ti, fti) = (
        c.thread_info.as_ref().unwrap(),
        f.thread_info.as_ref().unwrap(),
    );
    assert_eq!(ti.tls, fti.tls);
    assert_eq!(
        (
            ti.gpregs.orig_ax,
            ti.gpregs.ax,
            ti.gpregs.cs,
            ti.gpregs.ss,
            ti.gpregs.mode
        ),
        (
            fti.gpregs.orig_ax,
            fti.gpregs.ax,
            fti.gpregs.cs,
            fti.gpregs.ss,
            fti.gpregs.mode
        )
    );
    assert_eq!(ti.fpregs.st_space.len(), 32);
    assert_eq!(ti.fpregs.xmm_space.len(), 64);
    assert_eq!(ti.fpregs.xsave.as_ref().unwrap().ymmh_space.len(), 64);
    let (tc, ftc) = (c.tc.as_ref().unwrap(), f.tc.as_ref().unwrap());
    assert_eq!(
        (
            tc.task_state,
            tc.exit_code,
            tc.personality,
            tc.flags,
            tc.blk_sigset,
            &tc.comm
        ),
        (
            ftc.task_state,
            ftc.exit_code,
            ftc.personality,
            ftc.flags,
            ftc.blk_sigset,
            &ftc.comm
        )
    );
    assert_eq!(tc.timers, ftc.timers);
    assert_eq!(tc.signals_s, ftc.signals_s);
    assert_eq!(tc.sigactions.len(), ftc.sigactions.len());
    assert_eq!(
        (tc.loginuid, tc.oom_score_adj, tc.child_subreaper),
        (ftc.loginuid, ftc.oom_score_adj, ftc.child_subreaper)
    );
    assert_eq!(
        tc.rlimits.as_ref().unwrap().rlimits.len(),
        ftc.rlimits.as_ref().unwrap().rlimits.len()
    );
    let (th, fth) = (
        c.thread_core.as_ref().unwrap(),
        f.thread_core.as_ref().unwrap(),
    );
    assert_eq!(th.futex_rla_len, fth.futex_rla_len);
    assert_eq!(
        (th.sched_nice, th.sched_policy, th.sched_prio, th.blk_sigset),
        (
            fth.sched_nice,
            fth.sched_policy,
            fth.sched_prio,
            fth.blk_sigset
        )
    );
    assert_eq!(th.sas, fth.sas);
    assert_eq!(
        (th.pdeath_sig, &th.signals_p, &th.creds),
        (fth.pdeath_sig, &fth.signals_p, &fth.creds)
    );
    assert_eq!(
        (th.seccomp_mode, th.seccomp_filter, &th.comm, th.cg_set),
        (fth.seccomp_mode, fth.seccomp_filter, &fth.comm, fth.cg_set)
    );
    let (r, fr) = (
        th.rseq_entry.as_ref().unwrap(),
        fth.rseq_entry.as_ref().unwrap(),
    );
    assert_eq!(
        (r.rseq_abi_size, r.signature, r.rseq_cs_pointer),
        (fr.rseq_abi_size, fr.signature, fr.rseq_cs_pointer)
    );
    // clear_tid_addr and the robust list live in the TLS block, 16 bytes apart as in the fixture.
    assert_eq!(
        th.futex_rla - ti.clear_tid_addr,
        fth.futex_rla - fti.clear_tid_addr
    );
}
