//! The session features a restore engine needs: sessions that own their thread, a caller-owned
//! scratch area, a caller-made fd transport, batched fd installation and a one-call final unmap of
//! trampoline and scratch.

mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use common::*;
use criu_compel::{
    CompelError, RemoteOptions, RemoteSession, SeizeOptions, StopEvent, Tracee, MAX_FDS_PER_MESSAGE,
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

fn mapped_at(pid: i32, addr: u64) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap_or("");
        let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
        let a = u64::from_str_radix(a, 16).unwrap_or(0);
        let b = u64::from_str_radix(b, 16).unwrap_or(0);
        a <= addr && addr < b
    })
}

fn link(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .expect("fd link")
        .to_string_lossy()
        .into_owned()
}

fn cloexec(pid: i32, fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("flags");
    u32::from_str_radix(flags.trim(), 8).expect("octal") & libc::O_CLOEXEC as u32 != 0
}

/// Maps `len` read-write bytes in the target with a short-lived session of its own.
fn remote_map(t: &mut Tracee, len: usize) -> u64 {
    let mut s = RemoteSession::with_options(
        t,
        RemoteOptions {
            scratch_size: 0,
            ..RemoteOptions::default()
        },
    )
    .expect("session");
    let addr = s
        .syscall(
            libc::SYS_mmap,
            [
                0,
                len as u64,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )
        .expect("mmap") as u64;
    s.close().expect("close");
    addr
}

#[test]
fn owning_sessions_outlive_the_scope_that_seized_their_threads() {
    let targets = [spawn_busy(), spawn_busy()];
    let sessions: Vec<RemoteSession<'static>> = targets
        .iter()
        .map(|target| {
            RemoteSession::owning(seize_stopped(target.pid()), RemoteOptions::default())
                .expect("session")
        })
        .collect();
    for (mut s, target) in sessions.into_iter().zip(&targets) {
        assert_eq!(
            s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(target.pid())
        );
        let scratch = s.scratch_addr();
        let (tracee, closed) = s.close_into_tracee();
        closed.expect("close");
        let tracee = tracee.expect("an owning session hands its thread back");
        assert_eq!(tracee.tid(), target.pid());
        assert!(!mapped_at(target.pid(), scratch), "own scratch unmapped");
        tracee.detach(0).expect("detach");
        assert_makes_progress(target.pid(), cpu_ticks(target.pid()));
    }
    // A borrowing session has no thread to hand back.
    let target = spawn_busy();
    let mut t = seize_stopped(target.pid());
    let (none, closed) = RemoteSession::new(&mut t)
        .expect("session")
        .close_into_tracee();
    closed.expect("close");
    assert!(none.is_none());
    t.detach(0).expect("detach");
}

#[test]
fn borrowed_scratch_stays_mapped_and_inherited_scratch_does_not() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    for (borrow, stays) in [(true, true), (false, false)] {
        let area = remote_map(&mut t, 4 * 4096);
        let (borrowed, inherited) = if borrow {
            (Some((area, 4 * 4096)), None)
        } else {
            (None, Some((area, 4 * 4096)))
        };
        let mut s = RemoteSession::with_options(
            &mut t,
            RemoteOptions {
                borrowed_scratch: borrowed,
                inherited_scratch: inherited,
                ..RemoteOptions::default()
            },
        )
        .expect("session");
        assert_eq!(s.scratch_addr(), area);
        assert_eq!(s.scratch_size(), 3 * 4096);
        s.scratch_write(0, b"scratch").expect("write");
        s.close().expect("close");
        assert_eq!(mapped_at(pid, area), stays, "borrowed: {borrow}");
    }
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn install_fds_sends_more_than_one_message_worth_and_returns_the_numbers() {
    let target = spawn_busy();
    let pid = target.pid();
    let dir = tempfile::tempdir().expect("tempdir");
    let count = MAX_FDS_PER_MESSAGE + 47;
    let files: Vec<std::fs::File> = (0..count)
        .map(|i| std::fs::File::create(dir.path().join(format!("f{i}"))).expect("create"))
        .collect();
    let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    let numbers = s.install_fds(&fds, true).expect("install");
    let plain = s.install_fds(&fds[..2], false).expect("install");
    assert_eq!(
        s.install_fds(&[], false).expect("nothing"),
        Vec::<i32>::new()
    );
    s.close().expect("close");
    t.detach(0).expect("detach");
    assert_eq!(numbers.len(), count);
    for (i, &fd) in numbers.iter().enumerate() {
        assert!(
            link(pid, fd).ends_with(&format!("/f{i}")),
            "fd {fd} is file {i}"
        );
        assert!(cloexec(pid, fd));
    }
    for (i, &fd) in plain.iter().enumerate() {
        assert!(link(pid, fd).ends_with(&format!("/f{i}")));
        assert!(!cloexec(pid, fd));
    }
}

#[test]
fn an_adopted_transport_carries_fds_and_is_closed_on_request() {
    let target = spawn_busy();
    let pid = target.pid();
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().expect("socketpair");
    let payload = tempfile::tempfile().expect("tempfile");
    let payload_link = link(std::process::id() as i32, payload.as_raw_fd());
    let mut t = seize_stopped(pid);
    let mut s = RemoteSession::new(&mut t).expect("session");
    // Give the target its end at a known number, as a fork would.
    s.install_fd(&theirs, 77, false)
        .expect("install the transport end");
    s.adopt_transport(OwnedFd::from(ours), 77).expect("adopt");
    assert!(matches!(
        s.adopt_transport(OwnedFd::from(tempfile::tempfile().expect("f")), -1),
        Err(CompelError::InvalidArgument(_))
    ));
    let numbers = s.install_fds(&[payload.as_fd()], true).expect("install");
    s.close_transport().expect("close transport");
    s.close().expect("close");
    t.detach(0).expect("detach");
    assert_eq!(link(pid, numbers[0]), payload_link);
    assert!(
        std::fs::read_link(format!("/proc/{pid}/fd/77")).is_err(),
        "the adopted end is closed"
    );
}

#[test]
fn finish_with_state_unmaps_trampoline_and_borrowed_scratch_in_one_call() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let original = t.regs().expect("regs");
    let mask = t.sigmask().expect("mask");
    // One mapping: a trampoline page (`syscall; int3`, made r-x) followed by three scratch pages.
    let trampoline = remote_map(&mut t, 4 * 4096);
    {
        let mut s = RemoteSession::new(&mut t).expect("session");
        s.mem()
            .write_all_at(trampoline, &[0x0f, 0x05, 0xcc])
            .expect("code");
        s.syscall(
            libc::SYS_mprotect,
            [
                trampoline,
                4096,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                0,
                0,
                0,
            ],
        )
        .expect("mprotect");
        s.close().expect("close");
    }
    let mut s = RemoteSession::with_options(
        &mut t,
        RemoteOptions {
            gadget: Some(trampoline),
            borrowed_scratch: Some((trampoline + 4096, 3 * 4096)),
            trampoline_len: 4 * 4096,
            ..RemoteOptions::default()
        },
    )
    .expect("session");
    s.scratch_write(0, b"x").expect("write");
    s.finish_with_state(&original, None, mask).expect("finish");
    for page in 0..4 {
        assert!(!mapped_at(pid, trampoline + page * 4096), "page {page}");
    }
    assert_eq!(t.last_stop(), Some(StopEvent::Syscall));
    assert_eq!(t.regs().expect("regs").ip, original.ip);
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn exit_with_status_ends_the_process_with_the_code_or_the_signal_asked_for() {
    for (wait_status, expected) in [
        (3 << 8, StopEvent::Exited { code: 3 }),
        (
            libc::SIGUSR1 as u32,
            StopEvent::Killed {
                signal: libc::SIGUSR1,
            },
        ),
    ] {
        let target = spawn_busy();
        let pid = target.pid();
        let mut t = seize_stopped(pid);
        let s = RemoteSession::new(&mut t).expect("session");
        let exit = s.exit_with_status(wait_status).expect("exit");
        assert_eq!(exit, expected, "wait status {wait_status:#x}");
        assert!(t.is_gone());
        drop(t);
        wait_until("the process to vanish", T, || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || state(pid) == Some('Z')
        });
    }
}

#[test]
fn finish_into_tracee_and_abandon_hand_back_an_owned_thread() {
    let target = spawn_busy();
    let pid = target.pid();
    let mut t = seize_stopped(pid);
    let original = t.regs().expect("regs");
    let mask = t.sigmask().expect("mask");
    let trampoline = {
        let mut s = RemoteSession::new(&mut t).expect("session");
        let addr = s.install_trampoline(None).expect("trampoline");
        s.close().expect("close");
        addr
    };
    // Abandoning changes nothing in the thread: the session's blocked mask stays.
    let s = RemoteSession::owning(t, RemoteOptions::default()).expect("session");
    let scratch = s.scratch_addr();
    let blocked = s.tracee().sigmask().expect("mask");
    assert_ne!(blocked, mask);
    let t = s.abandon().expect("owned thread");
    assert_eq!(
        t.sigmask().expect("mask"),
        blocked,
        "abandon restores no mask"
    );
    assert!(mapped_at(pid, scratch), "abandon unmaps nothing");
    let mut s = RemoteSession::owning(
        t,
        RemoteOptions {
            gadget: Some(trampoline),
            ..RemoteOptions::default()
        },
    )
    .expect("session");
    s.set_tracee_options(SeizeOptions {
        suspend_seccomp: true,
        ..SeizeOptions::default()
    })
    .expect("options");
    assert!(s.tracee().options().suspend_seccomp);
    let (t, finished) = s.finish_into_tracee(&original, None, mask);
    finished.expect("finish");
    let t = t.expect("owned thread");
    assert_eq!(t.last_stop(), Some(StopEvent::Syscall));
    assert!(!mapped_at(pid, trampoline));
    assert_eq!(t.regs().expect("regs").ip, original.ip);
    assert_eq!(t.sigmask().expect("mask"), mask);
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn owning_sessions_share_one_open_proc_mem() {
    let target = spawn_busy();
    let other = spawn_busy();
    let pid = target.pid();
    let mem = criu_compel::ProcMem::open(pid).expect("mem");
    // Memory of another process is refused, and the thread comes back detached (dropped).
    let wrong = criu_compel::ProcMem::open(other.pid()).expect("other mem");
    let refused =
        RemoteSession::owning_with_mem(seize_stopped(pid), RemoteOptions::default(), wrong);
    assert!(
        matches!(refused, Err(CompelError::InvalidArgument(_))),
        "{refused:?}"
    );
    let mut s = RemoteSession::owning_with_mem(
        seize_stopped(pid),
        RemoteOptions::default(),
        mem.try_clone().expect("dup"),
    )
    .expect("session");
    assert_eq!(
        s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
        i64::from(pid)
    );
    // Both handles reach the same memory: what the session writes, the original reads.
    let addr = s.scratch_write(0, b"shared").expect("write");
    assert_eq!(mem.read_vec(addr, 6).expect("read"), b"shared");
    let (tracee, closed) = s.close_into_tracee();
    closed.expect("close");
    tracee.expect("owned thread").detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}
