//! Single-thread ptrace behaviour on real processes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use criu_compel::{
    send_signal, send_thread_signal, CompelError, SeizeOptions, StopEvent, SyscallState, Tracee,
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

#[test]
fn seize_interrupt_detach_leaves_busy_loop_running() {
    let target = spawn_busy();
    let pid = target.pid();
    assert_makes_progress(pid, cpu_ticks(pid));
    let t = seize_stopped(pid);
    assert_eq!(
        state(pid),
        Some('t'),
        "interrupted thread is in tracing stop"
    );
    let frozen_ticks = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(60));
    assert!(
        cpu_ticks(pid) <= frozen_ticks + 1,
        "stopped thread kept running"
    );
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn interrupted_nanosleep_still_ends_on_time() {
    let start = Instant::now();
    let mut target = spawn(&["sleep", "400"]);
    let pid = target.pid();
    wait_sleeping(pid);
    let t = seize_stopped(pid);
    let regs = t.regs().expect("regs");
    assert!(
        [libc::SYS_nanosleep as u64, libc::SYS_clock_nanosleep as u64].contains(&regs.orig_ax),
        "stopped inside the sleep syscall, orig_ax={}",
        regs.orig_ax
    );
    assert_eq!(t.syscall_info().expect("info").state, SyscallState::None);
    std::thread::sleep(Duration::from_millis(100));
    t.detach(0).expect("detach");
    let status = target.child.wait().expect("wait");
    let took = start.elapsed();
    assert!(status.success());
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(1500),
        "sleep 400 ms took {took:?}"
    );
}

#[test]
fn blocking_read_continues_after_detach() {
    let mut target = spawn_with(&["read"], Stdio::piped(), Stdio::piped());
    let pid = target.pid();
    wait_sleeping(pid);
    let t = seize_stopped(pid);
    assert_eq!(t.regs().expect("regs").orig_ax, libc::SYS_read as u64);
    t.detach(0).expect("detach");
    let mut stdin = target.child.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").expect("write");
    let mut line = String::new();
    BufReader::new(target.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim_end(), "got:hello");
}

#[test]
fn registers_round_trip_and_are_applied() {
    let target = spawn_busy();
    let t = seize_stopped(target.pid());
    let original = t.regs().expect("regs");
    assert_ne!(original.ip, 0);
    assert_eq!(
        original.orig_ax,
        u64::MAX,
        "a busy loop is not in a syscall"
    );
    let mut changed = original;
    changed.r12 = 0x1234_5678_9abc_def0;
    changed.r13 = 42;
    t.set_regs(&changed).expect("set");
    assert_eq!(t.regs().expect("regs"), changed);
    t.set_regs(&original).expect("restore");
    assert_eq!(t.regs().expect("regs"), original);
    t.detach(0).expect("detach");
    assert_makes_progress(target.pid(), cpu_ticks(target.pid()));
}

#[test]
fn xstate_is_sized_by_the_kernel_and_matches_fpregs() {
    let target = spawn_busy();
    let t = seize_stopped(target.pid());
    let xstate = t.xstate().expect("xstate");
    assert!(xstate.len() > 512, "XSAVE area is {} bytes", xstate.len());
    let fx = t.fpregs().expect("fpregs");
    let legacy = xstate.legacy();
    assert_eq!(legacy.mxcsr, fx.mxcsr);
    assert_eq!(legacy.xmm_space, fx.xmm_space);
    assert_eq!(legacy.cwd, fx.cwd);
    assert_ne!(xstate.xstate_bv() & 0b11, 0, "x87/SSE state present");
    // XCR0 always enables x87 and SSE, and every component with state must be enabled in it.
    assert_eq!(
        xstate.xfeatures() & 0b11,
        0b11,
        "XCR0 {:#x}",
        xstate.xfeatures()
    );
    assert_eq!(
        xstate.xstate_bv() & !xstate.xfeatures(),
        0,
        "XSTATE_BV outside XCR0"
    );
    // Write back a changed XMM15 and read it again.
    let mut changed = xstate.clone();
    let mut legacy2 = changed.legacy();
    legacy2.xmm_space[60..64].copy_from_slice(&[1, 2, 3, 4]);
    changed.set_legacy(&legacy2);
    changed.set_xstate_bv(changed.xstate_bv() | 0b10);
    t.set_xstate(&changed).expect("set xstate");
    assert_eq!(
        t.xstate().expect("xstate").legacy().xmm_space[60..64],
        [1, 2, 3, 4]
    );
    t.set_xstate(&xstate).expect("restore xstate");
    assert_eq!(t.xstate().expect("xstate").legacy(), xstate.legacy());
    t.detach(0).expect("detach");
}

#[test]
fn pending_signals_are_visible_and_not_consumed() {
    // SIGPIPE is ignored by Rust programs, SIGWINCH/SIGURG by default: none of them kill the testee.
    let target = spawn_busy();
    let pid = target.pid();
    let t = seize_stopped(pid);
    send_signal(pid, libc::SIGPIPE).expect("kill");
    send_signal(pid, libc::SIGWINCH).expect("kill");
    send_thread_signal(pid, pid, libc::SIGURG).expect("tgkill");
    let shared: Vec<i32> = t
        .pending_signals(true)
        .expect("peek")
        .iter()
        .map(|s| s.signo())
        .collect();
    let private: Vec<i32> = t
        .pending_signals(false)
        .expect("peek")
        .iter()
        .map(|s| s.signo())
        .collect();
    assert_eq!(shared, vec![libc::SIGPIPE, libc::SIGWINCH]);
    assert_eq!(private, vec![libc::SIGURG]);
    let again = t.pending_signals(true).expect("peek");
    assert_eq!(again.len(), 2, "peeking does not dequeue");
    assert_eq!(again[0].sender_pid(), std::process::id() as i32);
    t.detach(0).expect("detach");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn signal_delivery_stop_is_not_lost_when_dropped() {
    let mut target = spawn_busy();
    let pid = target.pid();
    let mut t = Tracee::seize(pid, SeizeOptions::default()).expect("seize");
    send_thread_signal(pid, pid, libc::SIGTERM).expect("tgkill");
    assert_eq!(
        t.wait_stop_timeout(T).expect("stop"),
        StopEvent::Signal {
            signal: libc::SIGTERM
        }
    );
    assert_eq!(t.pending_delivery(), Some(libc::SIGTERM));
    drop(t);
    let status = target.child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "SIGTERM was delivered after detach"
    );
}

#[test]
fn interrupt_and_wait_delivers_a_signal_that_came_first() {
    let mut target = spawn_busy();
    let pid = target.pid();
    let mut t = Tracee::seize(pid, SeizeOptions::default()).expect("seize");
    send_thread_signal(pid, pid, libc::SIGTERM).expect("tgkill");
    // Let the signal-delivery-stop happen before the interrupt.
    wait_until("signal-delivery-stop", T, || state(pid) == Some('t'));
    match t.interrupt_and_wait(T) {
        // We are tracer and parent, so the wait inside reaped it: the error carries the kill.
        Err(CompelError::ThreadGone { how, .. }) => {
            assert!(
                how.contains(&format!("Killed {{ signal: {} }}", libc::SIGTERM)),
                "{how}"
            )
        }
        other => panic!("expected the SIGTERM to kill the thread, got {other:?}"),
    }
    assert!(
        target.child.try_wait().is_err(),
        "already reaped by the tracer"
    );
}

#[test]
fn rseq_configuration_of_a_glibc_thread() {
    let target = spawn_busy();
    let t = seize_stopped(target.pid());
    let rseq = t.rseq_config().expect("rseq");
    assert!(rseq.is_registered(), "glibc registers rseq: {rseq:?}");
    assert_eq!(rseq.signature, 0x5305_3053);
    assert!(rseq.rseq_abi_size >= 20);
    let fs_base = t.regs().expect("regs").fs_base;
    assert!(rseq.rseq_abi_pointer > fs_base && rseq.rseq_abi_pointer - fs_base < 0x10000);
    t.detach(0).expect("detach");
}

#[test]
fn sigmask_round_trips() {
    let target = spawn_busy();
    let t = seize_stopped(target.pid());
    let original = t.sigmask().expect("mask");
    let wanted = original | (1 << (libc::SIGUSR2 - 1));
    t.set_sigmask(wanted).expect("set");
    assert_eq!(t.sigmask().expect("mask"), wanted);
    t.set_sigmask(original).expect("restore");
    assert_eq!(t.sigmask().expect("mask"), original);
    t.detach(0).expect("detach");
}

#[test]
fn seizing_a_missing_or_traced_thread_fails_clearly() {
    let err = Tracee::seize(unused_pid(), SeizeOptions::default()).expect_err("no such pid");
    assert_eq!(err.errno(), Some(libc::ESRCH));
    let target = spawn_busy();
    let t = Tracee::seize(target.pid(), SeizeOptions::default()).expect("seize");
    match Tracee::seize(target.pid(), SeizeOptions::default()) {
        Err(CompelError::AlreadyTraced { tracer, .. }) => {
            assert_eq!(tracer, criu_compel::current_tid())
        }
        other => panic!("second seize: {other:?}"),
    }
    drop(t);
    assert_makes_progress(target.pid(), cpu_ticks(target.pid()));
}

#[test]
fn dropping_a_running_tracee_detaches_it() {
    let target = spawn_busy();
    let pid = target.pid();
    let t = Tracee::seize(pid, SeizeOptions::default()).expect("seize");
    drop(t);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("TracerPid:\t0"), "still traced: {status}");
    assert_makes_progress(pid, cpu_ticks(pid));
}
