//! Per-task state read by ptrace and remote syscalls: sigactions, blocked and
//! pending signals, sigaltstack, itimers, POSIX timers, pdeath signal,
//! umask, nice, rseq, creds.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use criu_image::ImageKind;
use criu_proto::{CoreEntry, FsEntry};

#[test]
fn signals_timers_and_misc_task_state() {
    let work = tempfile::tempdir().unwrap();
    let prog = work.path().join("signals");
    let status = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&prog)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/signals.c"))
        .status()
        .expect("gcc is required");
    assert!(status.success());
    let (mut child, line) = spawn_reading_first_line(session_command().arg(&prog), Stdio::null());
    let mut words = line
        .split_whitespace()
        .map(|w| u64::from_str_radix(w, 16).unwrap());
    let (handler, altstack) = (words.next().unwrap(), words.next().unwrap());
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    // The pending signals are still pending and the task still runs.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("ShdPnd:\t0000000000000800"), "{status}");
    assert!(status.contains("SigPnd:\t0000000000000800"), "{status}");
    assert_ne!(proc_state(pid), 'T');
    let _ = child.kill();
    let _ = child.wait();

    let core: Vec<CoreEntry> = read_entries(dir.path(), ImageKind::Core, pid as u64);
    let tc = core[0].tc.as_ref().unwrap();
    let th = core[0].thread_core.as_ref().unwrap();
    // sigactions: index = signo - 1, minus SIGKILL (9) and SIGSTOP (19).
    let sig_index = |signo: usize| {
        let mut i = signo - 1;
        if signo > 9 {
            i -= 1;
        }
        if signo > 19 {
            i -= 1;
        }
        i
    };
    let usr1 = &tc.sigactions[sig_index(10)];
    assert_eq!(usr1.sigaction, handler);
    assert_eq!(
        usr1.flags & (libc::SA_SIGINFO | libc::SA_RESTART) as u64,
        (libc::SA_SIGINFO | libc::SA_RESTART) as u64
    );
    assert_ne!(usr1.restorer, 0);
    assert_eq!(usr1.mask, 1 << (libc::SIGINT - 1));
    assert_eq!(tc.sigactions[sig_index(13)].sigaction, 1, "SIGPIPE ignored");
    assert_eq!(tc.blk_sigset, 1 << (libc::SIGUSR2 - 1));
    let shared = &tc.signals_s.as_ref().unwrap().signals;
    let private = &th.signals_p.as_ref().unwrap().signals;
    assert_eq!(shared.len(), 1);
    assert_eq!(private.len(), 1);
    for si in shared.iter().chain(private) {
        assert_eq!(si.siginfo.len(), 128);
        assert_eq!(
            i32::from_le_bytes(si.siginfo[0..4].try_into().unwrap()),
            libc::SIGUSR2
        );
    }
    let sas = th.sas.as_ref().unwrap();
    assert_eq!((sas.ss_sp, sas.ss_size, sas.ss_flags), (altstack, 65536, 0));
    let timers = tc.timers.as_ref().unwrap();
    assert_eq!((timers.real.isec, timers.real.iusec), (5, 0));
    assert!(timers.real.vsec >= 90 && timers.real.vsec <= 100);
    assert_eq!(timers.posix.len(), 1);
    let pt = &timers.posix[0];
    assert_eq!(
        (pt.clock_id, pt.si_signo, pt.it_sigev_notify, pt.sival_ptr),
        (1, 34, 0, 0xabc)
    );
    assert_eq!((pt.isec, pt.insec), (3, 0));
    assert!(pt.vsec >= 40 && pt.vsec <= 50);
    assert_eq!(th.pdeath_sig, Some(libc::SIGTERM as u32));
    assert_eq!(th.sched_nice, Some(5));
    let fs: Vec<FsEntry> = read_entries(dir.path(), ImageKind::Fs, pid as u64);
    assert_eq!(fs[0].umask, Some(0o027));
    let rseq = th.rseq_entry.as_ref().unwrap();
    assert_ne!(rseq.rseq_abi_pointer, 0);
    assert_eq!(rseq.signature, 0x53053053);
    let creds = th.creds.as_ref().unwrap();
    assert_eq!((creds.uid, creds.euid), (0, 0));
    assert_eq!(creds.cap_eff.len(), 2);
    crit_decode(&dir.path().join(format!("core-{pid}.img")));
}

/// A task of another uid: prlimit64 on it needs CAP_SYS_RESOURCE even to
/// read (this machine's root lacks it), so its rlimits must come from
/// /proc/PID/limits, exactly, with RLIM_INFINITY kept.
#[test]
fn rlimits_and_creds_of_a_task_of_another_uid() {
    let script = r#"
import ctypes, os, resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (123, 456))
resource.setrlimit(resource.RLIMIT_MSGQUEUE, (4096, resource.getrlimit(resource.RLIMIT_MSGQUEUE)[1]))
os.setgroups([27495])
os.setresgid(58467, 58467, 58467)
os.setresuid(18943, 18943, 18943)
# setuid cleared dumpable; a tracer without CAP_SYS_PTRACE-over-it needs it back.
ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)
print('ready', flush=True)
time.sleep(1000)
"#;
    let (mut child, line) = spawn_reading_first_line(
        session_command().args(["/usr/bin/python3", "-c", script]),
        Stdio::null(),
    );
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let dumped = dump_to(pid, dir.path(), |o| o.leave_running = true);
    let _ = child.kill();
    let _ = child.wait();
    dumped.expect("dump of a task of another uid");

    let core: Vec<CoreEntry> = read_entries(dir.path(), ImageKind::Core, pid as u64);
    let creds = core[0]
        .thread_core
        .as_ref()
        .unwrap()
        .creds
        .as_ref()
        .unwrap();
    assert_eq!((creds.uid, creds.euid, creds.suid), (18943, 18943, 18943));
    assert_eq!((creds.gid, creds.egid, creds.sgid), (58467, 58467, 58467));
    assert_eq!(creds.groups, vec![27495]);
    let rlimits: Vec<(u64, u64)> = core[0]
        .tc
        .as_ref()
        .unwrap()
        .rlimits
        .as_ref()
        .unwrap()
        .rlimits
        .iter()
        .map(|r| (r.cur, r.max))
        .collect();
    use nix::sys::resource::{getrlimit, Resource};
    // The child inherited ours, except the two it lowered.
    let ours = |r: Resource| getrlimit(r).unwrap();
    assert_eq!(rlimits.len(), 16);
    assert_eq!(rlimits[libc::RLIMIT_NOFILE as usize], (123, 456));
    assert_eq!(
        rlimits[libc::RLIMIT_MSGQUEUE as usize],
        (4096, ours(Resource::RLIMIT_MSGQUEUE).1)
    );
    assert_eq!(
        rlimits[libc::RLIMIT_CPU as usize],
        ours(Resource::RLIMIT_CPU)
    );
    assert_eq!(
        rlimits[libc::RLIMIT_STACK as usize],
        ours(Resource::RLIMIT_STACK)
    );
    assert_eq!(
        rlimits[libc::RLIMIT_RTTIME as usize],
        ours(Resource::RLIMIT_RTTIME)
    );
    // RLIM_INFINITY round-trips as the all-ones value CRIU stores.
    assert_eq!(ours(Resource::RLIMIT_CPU), (u64::MAX, u64::MAX));
    crit_decode(&dir.path().join(format!("core-{pid}.img")));
}

#[test]
fn seccomp_filters_are_dumped_in_criu_layout() {
    let work = tempfile::tempdir().unwrap();
    let prog = work.path().join("seccomp");
    let status = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&prog)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/seccomp.c"))
        .status()
        .expect("gcc is required");
    assert!(status.success());
    let (mut child, line) = spawn_reading_first_line(session_command().arg(&prog), Stdio::null());
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    // The filter denies prctl: the remote prctl calls of the dump must bypass it.
    dump_to(pid, dir.path(), |_| {}).expect("dump");
    let _ = child.kill();
    let _ = child.wait();
    let se: Vec<criu_proto::SeccompEntry> = read_entries(dir.path(), ImageKind::Seccomp, 0);
    let filters = &se[0].seccomp_filters;
    assert_eq!(filters.len(), 2);
    // CRIU's order: newest first, each older filter's prev pointing at the one before it.
    assert_eq!(
        filters[0].filter.len(),
        32,
        "newest: the 4-insn prctl filter"
    );
    assert_eq!(
        filters[1].filter.len(),
        8,
        "oldest: the 1-insn allow-all filter"
    );
    assert_eq!((filters[0].prev, filters[1].prev), (None, Some(0)));
    assert!(
        filters.iter().all(|f| f.flags == Some(1)),
        "single thread: TSYNC"
    );
    let core: Vec<CoreEntry> = read_entries(dir.path(), ImageKind::Core, pid as u64);
    let th = core[0].thread_core.as_ref().unwrap();
    assert_eq!((th.seccomp_mode, th.seccomp_filter), (Some(2), Some(1)));
    let creds = th.creds.as_ref().unwrap();
    assert_eq!(creds.no_new_privs, Some(1));
    crit_decode(&dir.path().join("seccomp.img"));
}

fn spawn_unshare(args: &[&str]) -> (std::process::Child, i32) {
    let child = session_command()
        .arg("unshare")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parent = child.id() as i32;
    let mut pid = 0;
    wait_until(|| {
        pid = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pid != 0
            && std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|p| p.ends_with("sleep"))
                .unwrap_or(false)
    });
    (child, pid)
}

#[test]
fn a_time_namespace_is_dumped_with_its_clocks() {
    let (child, pid) = spawn_unshare(&[
        "-T",
        "--monotonic",
        "1000",
        "--boottime",
        "2000",
        "--fork",
        "/usr/bin/sleep",
        "1000",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let before = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    dump_to(pid, dir.path(), |o| o.shell_job = true).expect("dump");
    reap(child);
    let ids: Vec<criu_proto::TaskKobjIdsEntry> =
        read_entries(dir.path(), ImageKind::Ids, pid as u64);
    let inv: Vec<criu_proto::InventoryEntry> = read_entries(dir.path(), ImageKind::Inventory, 0);
    let tid = ids[0].time_ns_id.unwrap();
    assert_ne!(Some(tid), inv[0].root_ids.unwrap().time_ns_id);
    assert!(!dir.path().join("timens-0.img").exists());
    let t: Vec<criu_proto::TimensEntry> =
        read_entries(dir.path(), ImageKind::Timens, u64::from(tid));
    let mono = t[0].monotonic.tv_sec as i64 - before.tv_sec();
    assert!((1000..1005).contains(&mono), "monotonic offset {mono}");
    assert!(t[0].boottime.tv_sec > t[0].monotonic.tv_sec + 900);
    crit_decode(&dir.path().join(format!("timens-{tid}.img")));
}

#[test]
fn other_namespaces_are_refused_by_name() {
    for (flag, name) in [("-m", "mnt"), ("-u", "uts"), ("-i", "ipc")] {
        let (child, pid) = spawn_unshare(&[flag, "--fork", "/usr/bin/sleep", "1000"]);
        let dir = tempfile::tempdir().unwrap();
        let err = dump_to(pid, dir.path(), |o| o.shell_job = true).unwrap_err();
        assert!(
            err.to_string().contains(&format!("pid {pid}"))
                && err.to_string().contains(&format!("own {name} namespace")),
            "{err}"
        );
        assert_ne!(proc_state(pid), 'T');
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        reap(child);
    }
}
