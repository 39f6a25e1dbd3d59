//! Remote syscalls, scratch memory and fd transport in real processes.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use criu_compel::{
    fixup_syscall_restart, CompelError, Gadget, RemoteCall, RemoteOptions, RemoteSession,
    SeizeOptions, StopEvent, Tracee,
};

const T: Duration = Duration::from_secs(5);

fn seize_stopped(pid: i32) -> Tracee {
    let mut t = Tracee::seize(pid, SeizeOptions::default()).expect("seize");
    assert_eq!(
        t.interrupt_and_wait(T).expect("stop"),
        StopEvent::Interrupted
    );
    t
}

fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps")
}

fn mapped_at(pid: i32, addr: u64) -> bool {
    maps(pid).lines().any(|l| {
        let range = l.split_whitespace().next().unwrap_or("");
        let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap_or(0),
            u64::from_str_radix(b, 16).unwrap_or(0),
        );
        a <= addr && addr < b
    })
}

#[test]
fn remote_getpid_in_a_busy_loop_uses_the_vdso_gadget() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    assert!(matches!(s.gadget(), Gadget::Vdso(_)), "{:?}", s.gadget());
    assert_eq!(
        s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
        i64::from(pid)
    );
    assert_eq!(
        s.syscall(libc::SYS_gettid, [0; 6]).expect("gettid"),
        i64::from(pid)
    );
    s.close().expect("close");
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn remote_syscalls_in_a_sleeping_task_keep_its_sleep_on_time() {
    let start = Instant::now();
    let mut target = spawn(&["sleep", "400"]);
    let pid = target.pid();
    wait_sleeping(pid);
    let mut t = seize_stopped(pid);
    let before = t.regs().expect("regs");
    let mask_before = t.sigmask().expect("mask");
    {
        let mut s = RemoteSession::new(&mut t).expect("session");
        assert_eq!(s.gadget(), Gadget::InterruptedSyscall(before.ip - 2));
        for _ in 0..20 {
            assert_eq!(
                s.syscall(libc::SYS_getppid, [0; 6]).expect("getppid"),
                i64::from(std::process::id() as i32)
            );
        }
        // An error comes back typed, with its errno.
        match s.syscall(libc::SYS_close, [9999, 0, 0, 0, 0, 0]) {
            Err(e @ CompelError::RemoteSyscall { .. }) => assert_eq!(e.errno(), Some(libc::EBADF)),
            other => panic!("close(9999): {other:?}"),
        }
        assert_eq!(
            s.syscall_raw(libc::SYS_close, [9999, 0, 0, 0, 0, 0])
                .expect("raw"),
            -i64::from(libc::EBADF)
        );
        s.close().expect("close");
    }
    assert_eq!(
        t.regs().expect("regs"),
        before,
        "registers restored exactly"
    );
    assert_eq!(
        t.sigmask().expect("mask"),
        mask_before,
        "signal mask restored"
    );
    t.detach(0).expect("detach");
    assert!(target.child.wait().expect("wait").success());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
}

#[test]
fn remote_mmap_and_munmap() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    let addr = s
        .syscall(
            libc::SYS_mmap,
            [
                0,
                8192,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )
        .expect("mmap") as u64;
    assert!(mapped_at(pid, addr) && mapped_at(pid, addr + 4096));
    s.mem().write_all_at(addr + 100, b"compel").expect("write");
    assert_eq!(s.mem().read_vec(addr + 100, 6).expect("read"), b"compel");
    // /proc/PID/mem uses FOLL_FORCE: a PROT_NONE page is still readable and writable through it.
    s.syscall(
        libc::SYS_mprotect,
        [addr, 8192, libc::PROT_NONE as u64, 0, 0, 0],
    )
    .expect("mprotect");
    s.mem()
        .write_all_at(addr + 4096, b"forced")
        .expect("forced write");
    assert_eq!(
        s.mem().read_vec(addr + 100, 6).expect("forced read"),
        b"compel"
    );
    assert_eq!(
        s.mem().read_vec(addr + 4096, 6).expect("forced read"),
        b"forced"
    );
    s.syscall(libc::SYS_munmap, [addr, 8192, 0, 0, 0, 0])
        .expect("munmap");
    assert!(!mapped_at(pid, addr));
    s.close().expect("close");
    t.detach(0).expect("detach");
}

#[test]
fn scratch_area_is_mapped_bounded_and_unmapped_on_close() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::with_options(
        &mut t,
        RemoteOptions {
            scratch_size: 8192,
            ..RemoteOptions::default()
        },
    )
    .expect("session");
    let base = s.scratch_addr();
    assert!(mapped_at(pid, base));
    assert_eq!(s.scratch_size(), 8192);
    let at = s.scratch_write(100, b"hello scratch").expect("write");
    assert_eq!(at, base + 100);
    assert_eq!(s.scratch_read(100, 13).expect("read"), b"hello scratch");
    // The target sees the same bytes: let it write into its scratch with a remote syscall.
    let path = s.scratch_write(0, b"/proc/self/comm\0").expect("path");
    let fd = s
        .syscall(libc::SYS_open, [path, libc::O_RDONLY as u64, 0, 0, 0, 0])
        .expect("open");
    let n = s
        .syscall(libc::SYS_read, [fd as u64, base + 512, 64, 0, 0, 0])
        .expect("read");
    s.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])
        .expect("close");
    assert_eq!(
        s.scratch_read(512, n as usize).expect("read"),
        b"criu-compel-tes\n"
    );
    match s.scratch_write(8190, b"xyz") {
        Err(CompelError::ScratchRange {
            offset: 8190,
            len: 3,
            size: 8192,
        }) => {}
        other => panic!("out of range write: {other:?}"),
    }
    assert!(s.scratch_read(usize::MAX, 2).is_err());
    s.close().expect("close");
    assert!(!mapped_at(pid, base), "scratch unmapped");
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn steal_fd_duplicates_a_pipe_end() {
    let mut target = spawn_with(&["sleep", "5000"], Stdio::piped(), Stdio::null());
    let pid = target.pid();
    let mut stdin = target.child.stdin.take().expect("stdin");
    stdin.write_all(b"through the pipe").expect("write");
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    let stolen = s.steal_fd(0).expect("steal fd 0");
    assert!(matches!(
        s.steal_fd(777),
        Err(CompelError::Fd { fd: 777, .. })
    ));
    s.close().expect("close");
    t.detach(0).expect("detach");
    drop(stdin);
    let mut text = String::new();
    std::fs::File::from(stolen)
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(text, "through the pipe");
    // The free function works without a session too.
    let again = criu_compel::steal_fd(pid, 0).expect("steal");
    assert!(std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&again)
    ))
    .expect("link")
    .to_string_lossy()
    .starts_with("pipe:"));
}

fn fd_flags(pid: i32, fd: i32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("flags");
    u32::from_str_radix(flags.trim(), 8).expect("octal")
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

#[test]
fn install_fd_places_our_file_at_the_wanted_number() {
    let dir = std::env::temp_dir().join(format!("criu-compel-install-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file_path = dir.join("payload");
    std::fs::write(&file_path, b"payload").expect("file");
    let file = std::fs::File::open(&file_path).expect("open");
    let target = spawn_busy();
    let pid = target.pid();
    let fds_before = fd_count(pid);
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    s.install_fd(file.as_fd(), 42, false).expect("install 42");
    s.install_fd(&file, 43, true).expect("install 43");
    // Replacing an fd the target already has (its stdout, /dev/null).
    s.install_fd(&file, 1, false).expect("install 1");
    s.close().expect("close");
    t.detach(0).expect("detach");
    for fd in [42, 43, 1] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("link"),
            file_path
        );
    }
    assert_eq!(fd_flags(pid, 42) & libc::O_CLOEXEC as u32, 0);
    assert_ne!(fd_flags(pid, 43) & libc::O_CLOEXEC as u32, 0);
    assert_eq!(
        fd_count(pid),
        fds_before + 2,
        "transport sockets closed, only 42 and 43 added"
    );
    assert_makes_progress(pid, cpu_ticks(pid));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn install_fd_at_a_transport_fd_number_moves_the_transport() {
    let target = spawn_busy();
    let pid = target.pid();
    let limit: u64 = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .expect("limits")
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(3)
                .map(|v| v.parse().expect("limit"))
        })
        .expect("nofile");
    // The transport lives at the first free numbers from limit - 64.
    let wanted = (limit - 64) as i32;
    let file = std::fs::File::open("/proc/version").expect("open");
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    s.install_fd(&file, 20, false)
        .expect("first install sets up the transport");
    assert!(
        std::fs::read_link(format!("/proc/{pid}/fd/{wanted}")).is_ok(),
        "transport at {wanted}"
    );
    s.install_fd(&file, wanted, false)
        .expect("install over the transport");
    s.install_fd(&file, 21, false)
        .expect("transport still works");
    s.close().expect("close");
    t.detach(0).expect("detach");
    for fd in [20, wanted, 21] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .expect("link")
                .to_str(),
            Some("/proc/version")
        );
    }
}

fn free_tid() -> i32 {
    unused_pid()
}

#[test]
fn syscall_expect_clone_creates_a_thread_with_set_tid() {
    let target = spawn(&["sleep", "5000"]);
    let pid = target.pid();
    wait_sleeping(pid);
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    let wanted = free_tid();
    // struct clone_args at offset 0, set_tid array at 128, a small stack at the end of the scratch.
    let base = s.scratch_addr();
    s.scratch_write(128, &(wanted as u64).to_le_bytes()[..4])
        .expect("set_tid");
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let mut args = Vec::new();
    for v in [flags, 0, 0, 0, 0, base + 4096, 8192, 0, base + 128, 1, 0] {
        args.extend_from_slice(&v.to_le_bytes());
    }
    s.scratch_write(0, &args).expect("clone_args");
    let (ret, mut child) = s
        .syscall_expect_clone(libc::SYS_clone3, [base, args.len() as u64, 0, 0, 0, 0])
        .expect("clone3");
    assert_eq!(ret, i64::from(wanted));
    assert_eq!(child.tid(), wanted);
    assert_eq!(child.tgid(), pid);
    assert!(
        tids(pid).contains(&wanted),
        "new thread visible in /proc/{pid}/task"
    );
    let child_regs = child.regs().expect("child regs");
    assert_eq!(child_regs.ax, 0, "the child sees clone3 return 0");
    assert_eq!(child_regs.ip, s.gadget().addr() + 2);
    // Let the new thread exit through the same gadget.
    let mut exit_regs = child_regs;
    exit_regs.ip = s.gadget().addr();
    exit_regs.ax = libc::SYS_exit as u64;
    exit_regs.orig_ax = u64::MAX;
    exit_regs.di = 0;
    child.set_regs(&exit_regs).expect("set child regs");
    child.cont(0).expect("cont");
    assert_eq!(
        child.wait_stop_timeout(T).expect("exit"),
        StopEvent::Exited { code: 0 }
    );
    s.close().expect("close");
    t.detach(0).expect("detach");
    wait_until("thread gone", T, || !tids(pid).contains(&wanted));
    // The main thread goes back into its sleep.
    wait_sleeping(pid);
    assert_eq!(tids(pid), vec![pid]);
}

#[test]
fn syscall_expect_clone_reports_the_errno_of_a_taken_tid() {
    let target = spawn(&["sleep", "5000"]);
    let pid = target.pid();
    wait_sleeping(pid);
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    let base = s.scratch_addr();
    // set_tid = the target's own pid: taken.
    s.scratch_write(128, &pid.to_le_bytes()).expect("set_tid");
    let flags = (libc::CLONE_VM | libc::CLONE_SIGHAND | libc::CLONE_THREAD) as u64;
    let mut args = Vec::new();
    for v in [flags, 0, 0, 0, 0, base + 4096, 8192, 0, base + 128, 1, 0] {
        args.extend_from_slice(&v.to_le_bytes());
    }
    s.scratch_write(0, &args).expect("clone_args");
    let err = s
        .syscall_expect_clone(libc::SYS_clone3, [base, args.len() as u64, 0, 0, 0, 0])
        .expect_err("tid in use");
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
    assert_eq!(
        s.syscall(libc::SYS_getpid, [0; 6]).expect("still usable"),
        i64::from(pid)
    );
    s.close().expect("close");
    t.detach(0).expect("detach");
}

#[test]
fn trampoline_sessions_and_finish_with_state() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let original = t.regs().expect("regs");
    let mask = t.sigmask().expect("mask");
    let trampoline = {
        let mut s = RemoteSession::new(&mut t).expect("session");
        let addr = s.install_trampoline(None).expect("trampoline");
        assert_eq!(s.gadget(), Gadget::Trampoline(addr));
        assert_eq!(
            s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(pid)
        );
        s.close().expect("close");
        addr
    };
    assert!(
        mapped_at(pid, trampoline),
        "trampoline stays mapped after close"
    );
    // A bad trampoline address is refused with what was found there.
    match RemoteSession::with_trampoline(&mut t, trampoline + 2) {
        Err(CompelError::BadTrampoline { addr, .. }) => assert_eq!(addr, trampoline + 2),
        other => panic!("bad trampoline: {other:?}"),
    }
    let mut regs = original;
    let fixup = fixup_syscall_restart(&mut regs);
    assert_eq!(fixup, criu_compel::RestartFixup::NotInSyscall);
    {
        let mut s = RemoteSession::with_trampoline(&mut t, trampoline).expect("session");
        assert_eq!(
            s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(pid)
        );
        s.finish_with_state(&regs, None, mask).expect("finish");
    }
    assert!(
        !mapped_at(pid, trampoline),
        "trampoline unmapped by finish_with_state"
    );
    assert_eq!(
        t.last_stop(),
        Some(StopEvent::Syscall),
        "left at the munmap exit stop"
    );
    assert_eq!(t.regs().expect("regs").ip, original.ip);
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

/// `struct sigaction` as rt_sigaction reads and writes it (handler, flags, restorer, mask).
fn sigaction_bytes(handler: u64, flags: u64, restorer: u64, mask: u64) -> Vec<u8> {
    [handler, flags, restorer, mask]
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .collect()
}

#[test]
fn a_syscall_batch_runs_every_call_in_order_with_its_own_result() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let original = t.regs().expect("regs");
    let mask = t.sigmask().expect("mask");
    let before = maps(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    // More calls than one run of the batch loop takes (64), a failing call in the middle, and calls
    // that depend on an earlier one's effect (SIGUSR1's action set, then read back).
    let scratch = s.scratch_addr();
    s.scratch_write(
        0,
        &sigaction_bytes(0x1234_5000, 0x0400_0000, 0x5678_9000, 0b1010),
    )
    .expect("write");
    let mut calls = vec![RemoteCall::new(libc::SYS_getpid, [0; 6]); 70];
    calls[10] = RemoteCall::new(libc::SYS_close, [u64::from(u32::MAX >> 1), 0, 0, 0, 0, 0]);
    calls[66] = RemoteCall::new(
        libc::SYS_rt_sigaction,
        [libc::SIGUSR1 as u64, scratch, scratch + 64, 8, 0, 0],
    );
    calls[67] = RemoteCall::new(
        libc::SYS_rt_sigaction,
        [libc::SIGUSR1 as u64, 0, scratch + 128, 8, 0, 0],
    );
    let results = s.syscall_batch(&calls).expect("batch");
    assert_eq!(results.len(), 70);
    for (i, result) in results.iter().enumerate() {
        match i {
            10 => assert!(
                matches!(result, Err(CompelError::RemoteSyscall { errno: libc::EBADF, nr, .. }) if *nr == libc::SYS_close),
                "{result:?}"
            ),
            66 | 67 => assert_eq!(result.as_ref().ok(), Some(&0), "call {i}"),
            _ => assert_eq!(result.as_ref().ok(), Some(&i64::from(pid)), "call {i}"),
        }
    }
    let old = s.scratch_read(64, 32).expect("read");
    assert_eq!(old, sigaction_bytes(0, 0, 0, 0), "SIGUSR1 was SIG_DFL");
    let now = s.scratch_read(128, 32).expect("read");
    assert_eq!(
        now,
        sigaction_bytes(0x1234_5000, 0x0400_0000, 0x5678_9000, 0b1010)
    );
    // Put the default action back before the task runs again.
    s.scratch_write(0, &sigaction_bytes(0, 0, 0, 0))
        .expect("write");
    s.syscall(
        libc::SYS_rt_sigaction,
        [libc::SIGUSR1 as u64, scratch, 0, 8, 0, 0],
    )
    .expect("reset");
    s.close().expect("close");
    assert_eq!(maps(pid), before, "the code page went with the session");
    assert_eq!(t.regs().expect("regs"), original);
    assert_eq!(t.sigmask().expect("mask"), mask);
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn a_batch_in_a_trampoline_session_needs_no_page_of_its_own() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    s.install_trampoline(None).expect("trampoline");
    let with_trampoline = maps(pid);
    let results = s
        .syscall_batch(&[RemoteCall::new(libc::SYS_gettid, [0; 6]); 3])
        .expect("batch");
    assert!(results
        .iter()
        .all(|r| r.as_ref().ok() == Some(&i64::from(pid))));
    assert_eq!(maps(pid), with_trampoline, "no mapping added");
    s.close().expect("close");
    t.detach(0).expect("detach");
}

#[test]
fn a_batch_on_a_foreign_trampoline_without_the_batch_code_maps_nothing() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    // A page holding only `syscall; int3`, as an older trampoline would.
    let page = {
        let mut s = RemoteSession::new(&mut t).expect("session");
        let page = s
            .syscall(
                libc::SYS_mmap,
                [
                    0,
                    4096,
                    (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
            )
            .expect("mmap") as u64;
        s.close().expect("close");
        page
    };
    let mem = criu_compel::ProcMem::open(pid).expect("mem");
    mem.write_all_at(page, &[0x0f, 0x05, 0xcc]).expect("write");
    let before = maps(pid);
    let mut s = RemoteSession::with_trampoline(&mut t, page).expect("session");
    match s.syscall_batch(&[RemoteCall::new(libc::SYS_getpid, [0; 6])]) {
        Err(CompelError::InvalidArgument(message)) => {
            assert!(message.contains("TRAMPOLINE_PAGE_CODE"), "{message}")
        }
        other => panic!("batch on a bare trampoline: {other:?}"),
    }
    assert_eq!(
        s.syscall(libc::SYS_getpid, [0; 6]).expect("single call"),
        i64::from(pid)
    );
    s.close().expect("close");
    assert_eq!(maps(pid), before, "no page mapped behind the owner's back");
    t.detach(0).expect("detach");
}

#[test]
fn a_batch_refuses_task_creating_and_exiting_syscalls() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    for nr in [
        libc::SYS_clone,
        libc::SYS_fork,
        libc::SYS_execve,
        libc::SYS_exit_group,
    ] {
        let calls = [
            RemoteCall::new(libc::SYS_getpid, [0; 6]),
            RemoteCall::new(nr, [0; 6]),
        ];
        assert!(
            matches!(
                s.syscall_batch(&calls),
                Err(CompelError::InvalidArgument(_))
            ),
            "syscall {nr} accepted"
        );
    }
    assert!(s.syscall_batch(&[]).expect("empty batch").is_empty());
    s.close().expect("close");
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn session_requires_a_stopped_thread() {
    let target = spawn_busy();
    let mut t = Tracee::seize(target.pid(), SeizeOptions::default()).expect("seize");
    assert!(matches!(
        RemoteSession::new(&mut t),
        Err(CompelError::InvalidArgument(_))
    ));
}

#[test]
fn suspend_seccomp_is_requested_on_seize() {
    // Without a filter in the target this only checks that the kernel accepts the option for us.
    let target = spawn_busy();
    let mut t = Tracee::seize(
        target.pid(),
        SeizeOptions {
            suspend_seccomp: true,
            exit_kill: true,
            ..SeizeOptions::default()
        },
    )
    .expect("seize with SUSPEND_SECCOMP|EXITKILL");
    t.interrupt_and_wait(T).expect("stop");
    assert_eq!(t.seccomp_filter(0).expect("filter"), None);
    t.detach(0).expect("detach");
}

#[test]
fn remote_syscalls_cost_about_one_stop_each() {
    let target = spawn_busy();
    let mut t = seize_stopped(target.pid());
    let mut s = RemoteSession::new(&mut t).expect("session");
    let start = Instant::now();
    let n = 300;
    for _ in 0..n {
        s.syscall(libc::SYS_getppid, [0; 6]).expect("getppid");
    }
    let per_call = start.elapsed() / n;
    eprintln!("remote syscall: {per_call:?} per call");
    // KERNEL.md measured 25-42 us for the stop itself on this VM; allow for a loaded CI machine.
    assert!(
        per_call < Duration::from_millis(2),
        "{per_call:?} per remote syscall"
    );
    s.close().expect("close");
}

/// A classic BPF program: getpid -> EPERM, everything else allowed.
fn deny_getpid_filter() -> Vec<u8> {
    let insns: [(u16, u8, u8, u32); 4] = [
        (0x20, 0, 0, 0),                                // ld [0] (syscall nr)
        (0x15, 0, 1, libc::SYS_getpid as u32),          // jeq getpid ? next : skip
        (0x06, 0, 0, 0x0005_0000 | libc::EPERM as u32), // ret ERRNO(EPERM)
        (0x06, 0, 0, 0x7fff_0000),                      // ret ALLOW
    ];
    let mut out = Vec::new();
    for (code, jt, jf, k) in insns {
        out.extend_from_slice(&code.to_le_bytes());
        out.push(jt);
        out.push(jf);
        out.extend_from_slice(&k.to_le_bytes());
    }
    out
}

#[test]
fn suspend_seccomp_lets_injected_syscalls_bypass_the_targets_filter() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    {
        let mut s = RemoteSession::new(&mut t).expect("session");
        let prog = deny_getpid_filter();
        let prog_addr = s.scratch_write(64, &prog).expect("prog");
        let mut fprog = Vec::new();
        fprog.extend_from_slice(&((prog.len() / 8) as u64).to_le_bytes());
        fprog.extend_from_slice(&prog_addr.to_le_bytes());
        let fprog_addr = s.scratch_write(0, &fprog).expect("fprog");
        s.syscall(
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )
        .expect("no_new_privs");
        s.syscall(
            libc::SYS_seccomp,
            [1 /* SET_MODE_FILTER */, 0, fprog_addr, 0, 0, 0],
        )
        .expect("install filter");
        let err = s.syscall(libc::SYS_getpid, [0; 6]).expect_err("filtered");
        assert_eq!(err.errno(), Some(libc::EPERM));
        s.close().expect("close");
    }
    assert_eq!(
        t.seccomp_filter(0).expect("filter"),
        Some(deny_getpid_filter())
    );
    assert_eq!(t.seccomp_filter(1).expect("no second filter"), None);
    t.set_options(SeizeOptions {
        suspend_seccomp: true,
        ..t.options()
    })
    .expect("SUSPEND_SECCOMP");
    let mut s = RemoteSession::new(&mut t).expect("session");
    assert_eq!(
        s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
        i64::from(pid)
    );
    s.close().expect("close");
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn a_signal_sent_during_a_session_waits_until_the_task_runs_again() {
    let mut target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    criu_compel::send_thread_signal(pid, pid, libc::SIGTERM).expect("tgkill");
    for _ in 0..5 {
        assert_eq!(
            s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(pid)
        );
    }
    s.close().expect("close");
    let queued: Vec<i32> = t
        .pending_signals(false)
        .expect("peek")
        .iter()
        .map(|i| i.signo())
        .collect();
    assert_eq!(
        queued,
        vec![libc::SIGTERM],
        "blocked during the session, still queued"
    );
    t.detach(0).expect("detach");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        target.child.wait().expect("wait").signal(),
        Some(libc::SIGTERM)
    );
}

#[test]
fn a_sigstop_during_a_session_is_kept_for_after_the_detach() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    criu_compel::send_signal(pid, libc::SIGSTOP).expect("SIGSTOP");
    for _ in 0..3 {
        assert_eq!(
            s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(pid)
        );
    }
    s.close().expect("close");
    t.detach(0).expect("detach");
    wait_until("the process to stop", T, || state(pid) == Some('T'));
    let ticks = cpu_ticks(pid);
    criu_compel::send_signal(pid, libc::SIGCONT).expect("SIGCONT");
    assert_makes_progress(pid, ticks);
}

#[test]
fn syscall_expect_clone_creates_a_process_with_set_tid() {
    let target = spawn(&["sleep", "5000"]);
    let pid = target.pid();
    wait_sleeping(pid);
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    let wanted = free_tid();
    let base = s.scratch_addr();
    s.scratch_write(128, &wanted.to_le_bytes())
        .expect("set_tid");
    let mut args = Vec::new();
    for v in [0, 0, 0, 0, libc::SIGCHLD as u64, 0, 0, 0, base + 128, 1, 0] {
        args.extend_from_slice(&v.to_le_bytes());
    }
    s.scratch_write(0, &args).expect("clone_args");
    let (ret, mut child) = s
        .syscall_expect_clone(libc::SYS_clone3, [base, args.len() as u64, 0, 0, 0, 0])
        .expect("clone3");
    assert_eq!(ret, i64::from(wanted));
    assert_eq!((child.tid(), child.tgid()), (wanted, wanted));
    assert_eq!(children(pid), vec![wanted]);
    assert_eq!(
        t_options_of(&child),
        SeizeOptions::default(),
        "child got the parent's options back"
    );
    // The child inherited the parent's scratch mapping: run a session in it on that mapping.
    let (scratch, scratch_len) = s.scratch_mapping();
    let gadget = s.gadget().addr();
    {
        let mut cs = RemoteSession::with_options(
            &mut child,
            RemoteOptions {
                gadget: Some(gadget),
                inherited_scratch: Some((scratch, scratch_len)),
                ..RemoteOptions::default()
            },
        )
        .expect("child session");
        assert_eq!(
            cs.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(wanted)
        );
        assert_eq!(
            cs.scratch_read(128, 4).expect("inherited bytes"),
            wanted.to_le_bytes()
        );
        cs.close().expect("close");
    }
    assert!(!mapped_at(wanted, scratch), "the child's copy is unmapped");
    assert!(mapped_at(pid, scratch), "the parent's scratch is untouched");
    let mut regs = child.regs().expect("regs");
    regs.ip = gadget;
    regs.ax = libc::SYS_exit_group as u64;
    regs.orig_ax = u64::MAX;
    regs.di = 7;
    child.set_regs(&regs).expect("set regs");
    child.cont(0).expect("cont");
    assert_eq!(
        child.wait_stop_timeout(T).expect("exit"),
        StopEvent::Exited { code: 7 }
    );
    s.close().expect("close");
    t.detach(0).expect("detach");
    wait_sleeping(pid);
}

fn t_options_of(t: &Tracee) -> SeizeOptions {
    t.options()
}
