//! Restores the images CRIU 4.2 itself wrote for `setsid sleep 100000`
//! (pid 31202, stdio on /dev/null, cwd /).

mod common;

use std::time::Duration;

use criu_image::ImageDir;
use criu_restore::{restore, RestoreOptions};

const FIXTURE_PID: i32 = 31202;

/// Waits (5 s at most) for the fixture's pid to be free. A pid that stays taken fails the test with the
/// reason, rather than letting it pass without having restored anything.
fn wait_for_fixture_pid() {
    assert!(
        !common::pid_exists(FIXTURE_PID) || common::wait_gone(FIXTURE_PID, Duration::from_secs(5)),
        "pid {FIXTURE_PID}, the pid the CRIU 4.2 fixture must be restored with, is in use on this machine"
    );
}

#[test]
fn restores_the_criu42_sleep_fixture_with_the_same_pid_and_state() {
    common::init_logging();
    wait_for_fixture_pid();
    let images = common::copy_images(&common::fixture_dir());
    let opts = RestoreOptions::new(ImageDir::open(images.path()).unwrap());
    let mut actions = Vec::new();
    let report = restore(&opts, &mut |action, pid| {
        actions.push((action.to_string(), pid));
        Ok(())
    })
    .expect("restore of the CRIU 4.2 fixture");
    let pid = report.root_pid;
    eprintln!("restored pid {pid} in {:?}", report.elapsed);
    assert_eq!(pid, FIXTURE_PID);
    assert_eq!(report.pids, vec![FIXTURE_PID]);
    assert_eq!(
        actions.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["pre-restore", "post-restore", "pre-resume", "post-resume"]
    );
    assert_eq!(actions[1].1, Some(FIXTURE_PID));

    let check = || -> Result<(), String> {
        let comm =
            std::fs::read_to_string(format!("/proc/{pid}/comm")).map_err(|e| e.to_string())?;
        if comm.trim() != "sleep" {
            return Err(format!("comm is {comm:?}"));
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| e.to_string())?;
        if exe.to_str() != Some("/usr/bin/sleep") {
            return Err(format!("exe is {exe:?}"));
        }
        if !common::wait_sleeping(pid, Duration::from_secs(2)) {
            return Err(format!("state is {:?}, not S", common::state(pid)));
        }
        let nr = common::blocked_syscall(pid);
        if nr != Some(libc::SYS_clock_nanosleep) && nr != Some(libc::SYS_nanosleep) {
            return Err(format!("blocked in syscall {nr:?}, not nanosleep"));
        }
        for fd in 0..=2 {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map_err(|e| format!("fd {fd}: {e}"))?;
            if target.to_str() != Some("/dev/null") {
                return Err(format!("fd {fd} points to {target:?}"));
            }
        }
        // Every dumped VMA is mapped at its address with its protection.
        let mm: criu_proto::MmEntry = ImageDir::open(images.path())
            .unwrap()
            .reader(criu_image::ImageKind::Mm, FIXTURE_PID as u64)
            .unwrap()
            .next_entry()
            .unwrap()
            .unwrap();
        let maps =
            std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| e.to_string())?;
        let lines: Vec<(u64, u64, String, String)> = maps
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (a, b) = f[0].split_once('-').unwrap();
                (
                    u64::from_str_radix(a, 16).unwrap(),
                    u64::from_str_radix(b, 16).unwrap(),
                    f[1].to_string(),
                    f.get(5).unwrap_or(&"").to_string(),
                )
            })
            .collect();
        for vma in mm.vmas.iter().filter(|v| v.end <= 0x7fff_ffff_f000) {
            let perms = format!(
                "{}{}{}",
                if vma.prot & 1 != 0 { 'r' } else { '-' },
                if vma.prot & 2 != 0 { 'w' } else { '-' },
                if vma.prot & 4 != 0 { 'x' } else { '-' }
            );
            // Adjacent lines may together cover one VMA ([vvar] + [vvar_vclock]).
            let mut at = vma.start;
            while let Some(line) = lines
                .iter()
                .find(|(a, b, p, _)| *a <= at && at < *b && p[..3] == perms)
            {
                at = line.1;
                if at >= vma.end {
                    break;
                }
            }
            let covered = at >= vma.end;
            if !covered {
                return Err(format!(
                    "VMA {:#x}-{:#x} {perms} is not mapped as dumped:\n{maps}",
                    vma.start, vma.end
                ));
            }
        }
        let vdso = lines.iter().find(|l| l.3 == "[vdso]").ok_or("no [vdso]")?;
        let dumped_vdso = mm.vmas.iter().find(|v| v.status & (1 << 3) != 0).unwrap();
        if vdso.0 != dumped_vdso.start {
            return Err(format!(
                "[vdso] at {:#x}, dumped at {:#x}",
                vdso.0, dumped_vdso.start
            ));
        }
        let fd251 = std::fs::read_link(format!("/proc/{pid}/fd/251"))
            .map_err(|e| format!("fd 251: {e}"))?;
        if !fd251.to_string_lossy().starts_with("pipe:[") {
            return Err(format!("fd 251 is {fd251:?}, not a pipe"));
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|e| e.to_string())?;
        if cwd.to_str() != Some("/") {
            return Err(format!("cwd is {cwd:?}"));
        }
        // Still sleeping a while later: nanosleep restarted rather than returned.
        std::thread::sleep(Duration::from_millis(300));
        if common::state(pid) != Some('S') {
            return Err(format!(
                "after 300 ms the state is {:?}",
                common::state(pid)
            ));
        }
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        if fields[2] != FIXTURE_PID.to_string() || fields[3] != FIXTURE_PID.to_string() {
            return Err(format!(
                "pgid {} sid {} (both should be {FIXTURE_PID})",
                fields[2], fields[3]
            ));
        }
        Ok(())
    };
    let result = check();
    common::kill_and_reap(pid);
    result.unwrap();
}
