//! The conformance programs: what each one sets up, how it is started, and for some of them a way
//! to break their state from outside (used by the self-checks to prove each check can fail).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How a program is started and checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Started directly; it makes itself a session leader.
    Plain,
    /// Plain, but its size comes from `CONF_BIG_MB` and it gets a longer timeout.
    Big,
    /// Started under `pty_shell` on a pty and dumped/restored with `--shell-job`.
    ShellJob,
    /// Checkpoints itself through `criu swrk` (args: criu path, images dir, kill|leave-running).
    SelfDump,
}

/// A way to break a running program's state from outside before it verifies.
#[derive(Debug, Clone, Copy)]
pub struct Tamper {
    /// What is changed, for messages.
    pub what: &'static str,
    /// A piece of the FAIL line the program must then print.
    pub expect: &'static str,
    /// Breaks the state; `Err` names what could not be done.
    pub apply: fn(&TamperTarget) -> Result<(), String>,
}

/// The running program a [`Tamper`] acts on.
#[derive(Debug)]
pub struct TamperTarget<'a> {
    /// Root pid of the test.
    pub pid: i32,
    /// The program's starting working directory.
    pub work_dir: &'a Path,
    /// The out file so far (its `note[...]` lines carry addresses and pids).
    pub out_text: &'a str,
}

/// One conformance program.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// Name of the executable and of the test.
    pub name: &'static str,
    /// The state it creates.
    pub about: &'static str,
    /// How it is started.
    pub kind: Kind,
    /// Extra arguments after OUT_FILE and READY_FILE.
    pub args: &'static [&'static str],
    /// Extra environment.
    pub env: &'static [(&'static str, &'static str)],
    /// Optional outside breakage for the self-checks.
    pub tamper: Option<Tamper>,
}

impl Program {
    /// Path of the compiled executable.
    pub fn path(&self) -> PathBuf {
        programs_dir().join(self.name)
    }
}

/// Directory holding the compiled programs (`CONFORMANCE_PROGRAMS_DIR` at run time overrides the
/// build-time location).
pub fn programs_dir() -> PathBuf {
    std::env::var_os("CONFORMANCE_PROGRAMS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CONFORMANCE_PROGRAMS_DIR")))
}

/// The `pty_shell` helper (not a test).
pub fn pty_shell_path() -> PathBuf {
    programs_dir().join("pty_shell")
}

/// Finds a program by name.
pub fn find(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|program| program.name == name)
}

const fn tamper(
    what: &'static str,
    expect: &'static str,
    apply: fn(&TamperTarget) -> Result<(), String>,
) -> Option<Tamper> {
    Some(Tamper {
        what,
        expect,
        apply,
    })
}

const fn plain(name: &'static str, about: &'static str, tamper: Option<Tamper>) -> Program {
    Program {
        name,
        about,
        kind: Kind::Plain,
        args: &[],
        env: &[],
        tamper,
    }
}

/// Every conformance program, in run order.
pub static PROGRAMS: &[Program] = &[
    Program {
        name: "env_args",
        about: "argv, env area, a variable set at run time, /proc/self/cmdline and environ",
        kind: Kind::Plain,
        args: &["alpha", "two words", "", "\u{fc}nicode"],
        env: &[("CONF_ENV_MARKER", "conformance-env-42")],
        tamper: None,
    },
    plain(
        "fpu_counter",
        "counters, YMM/XMM and callee-saved registers live across C/R, MXCSR, x87, busy thread",
        tamper(
            "heap counter via /proc/PID/mem",
            "heap counter",
            tamper_heap_counter,
        ),
    ),
    plain(
        "threads8",
        "8 threads in FUTEX_WAIT with TLS values, woken and joined after restore",
        None,
    ),
    plain(
        "fork_tree",
        "a 3-level process tree with new process groups and a nested session",
        tamper(
            "a SIGKILLed grandchild",
            "ended with status",
            tamper_kill_grandchild,
        ),
    ),
    plain("zombie", "an unreaped zombie child with exit code 7", None),
    plain(
        "stopped",
        "a child stopped by SIGSTOP stays stopped, then continues on SIGCONT",
        tamper(
            "SIGCONT sent to the stopped child",
            "expected stopped",
            tamper_continue_child,
        ),
    ),
    plain(
        "nanosleep",
        "a child in a 3 s nanosleep: restart and total time",
        None,
    ),
    plain(
        "pipe_block",
        "a child blocked in read() on a pipe",
        tamper("data injected into the pipe", "reader", tamper_pipe_block),
    ),
    plain(
        "pipe_data",
        "96 KiB of unread data in a resized non-blocking pipe",
        tamper("bytes drained from the pipe", "pipe held", tamper_pipe_data),
    ),
    plain(
        "fifo",
        "a FIFO open both ways with queued data",
        tamper("extra data written into the FIFO", "fifo held", tamper_fifo),
    ),
    plain(
        "file_offsets",
        "regular files: offsets, O_APPEND, O_RDONLY, FD_CLOEXEC, contents",
        tamper("truncated file", "conf.rw size", tamper_truncate_rw),
    ),
    plain(
        "unlinked_file",
        "an open file whose path was unlinked",
        tamper("overwritten ghost content", "content differs", tamper_ghost),
    ),
    plain(
        "dir_fd",
        "a directory fd used with openat",
        tamper("removed marker file", "openat", tamper_dir_marker),
    ),
    plain(
        "file_shared",
        "one open file description shared by a dup and a child (offset, flags)",
        None,
    ),
    plain("dev_null", "/dev/null read-write and append", None),
    plain(
        "file_mmap",
        "private (COW-modified) and shared mappings of one file",
        tamper(
            "file rewritten under the shared mapping",
            "shared page 0",
            tamper_mapped_file,
        ),
    ),
    plain(
        "shared_anon",
        "MAP_SHARED anonymous memory between parent and child",
        tamper(
            "shared memory via /proc/PID/mem",
            "shared data differs",
            tamper_shared_anon,
        ),
    ),
    plain(
        "memfd",
        "a sealed memfd, read and mapped shared",
        tamper(
            "memfd content via /proc/PID/fd",
            "memfd content differs",
            tamper_memfd,
        ),
    ),
    Program {
        name: "big_memory",
        about: "random data in MADV_HUGEPAGE memory, checksummed (CONF_BIG_MB, default 1024)",
        kind: Kind::Big,
        args: &[],
        env: &[],
        tamper: tamper("one byte via /proc/PID/mem", "checksum", tamper_big_memory),
    },
    plain(
        "prot_none",
        "PROT_NONE data, read-only data, guard pages inside a read-write region",
        tamper(
            "read-only data via /proc/PID/mem",
            "read-only data differs",
            tamper_read_only,
        ),
    ),
    plain(
        "signals",
        "SA_SIGINFO handlers, sigaltstack, pending SIGUSR2, twice-queued SIGRTMIN+3",
        tamper(
            "an extra queued SIGRTMIN+3",
            "delivered 3 times",
            tamper_extra_rt3,
        ),
    ),
    plain(
        "itimers",
        "ITIMER_REAL firing every 200 ms and an armed ITIMER_VIRTUAL",
        None,
    ),
    plain(
        "posix_timers",
        "a periodic CLOCK_MONOTONIC timer with a sigev value and a far one-shot",
        None,
    ),
    plain(
        "rlimits",
        "every rlimit, with NOFILE/CORE/NPROC/STACK changed",
        tamper(
            "RLIMIT_NOFILE lowered by prlimit",
            "rlimit 7",
            tamper_rlimit,
        ),
    ),
    plain(
        "cwd_umask",
        "working directory and umask 0345",
        tamper("renamed working directory", "cwd is", tamper_rename_cwd),
    ),
    plain(
        "prctl_state",
        "thread names, parent-death signal, child-subreaper, no_new_privs, THP disable",
        tamper(
            "the pdeath-signal child SIGKILLed",
            "child ended with status",
            tamper_kill_pdeath_child,
        ),
    ),
    plain(
        "seccomp",
        "a seccomp BPF filter making sysinfo() fail with errno 77",
        None,
    ),
    plain(
        "creds",
        "uid 18943, gid 58467, supplementary groups, kept capabilities, bounding set",
        None,
    ),
    plain(
        "socketpair",
        "unix stream and dgram socketpairs with queued data both ways",
        None,
    ),
    plain(
        "unix_listen",
        "a listening unix socket with a pending (not yet accepted) connection",
        tamper(
            "a second pending connection",
            "second connection",
            tamper_connect,
        ),
    ),
    plain(
        "eventfd",
        "a non-blocking eventfd with counter 42 and a blocking one with 7",
        None,
    ),
    plain(
        "eventfd_sem",
        "an EFD_SEMAPHORE eventfd handing out one unit per read",
        None,
    ),
    plain(
        "epoll",
        "an epoll set over a pipe, an edge-triggered eventfd and a socket",
        tamper("pipe drained", "pipe readiness", tamper_epoll_pipe),
    ),
    plain(
        "timerfd",
        "periodic, absolute one-shot and disarmed timerfds",
        None,
    ),
    plain(
        "timerfd_pending",
        "a periodic timerfd holding an unread tick (it_value 0 at checkpoint)",
        None,
    ),
    plain(
        "signalfd",
        "a signalfd with one queued realtime signal",
        tamper(
            "a second queued SIGRTMIN+2",
            "second signal",
            tamper_signalfd,
        ),
    ),
    plain(
        "inotify",
        "an inotify watch on a directory",
        tamper(
            "a file created in the watched directory",
            "events were queued",
            tamper_inotify,
        ),
    ),
    plain(
        "vdso_clock",
        "vDSO clocks after restore: monotonic increases, realtime sane",
        None,
    ),
    plain(
        "rseq",
        "glibc's rseq registration, same area, still updated by the kernel",
        None,
    ),
    Program {
        name: "selfdump_rpc",
        about: "self-dump by a hand-encoded RPC DUMP to `criu swrk`; expects restored=true",
        kind: Kind::SelfDump,
        args: &[],
        env: &[],
        tamper: None,
    },
    Program {
        name: "shell_job",
        about: "a job on a pty, not a session leader, foreground group, ECHO off (--shell-job)",
        kind: Kind::ShellJob,
        args: &[],
        env: &[],
        tamper: tamper(
            "no line typed on the terminal",
            "from the terminal",
            tamper_nothing,
        ),
    },
];

/// The number after `prefix` in the out file's notes (hex with 0x, or decimal).
pub fn note_number(out_text: &str, prefix: &str) -> Option<u64> {
    out_text
        .lines()
        .filter(|line| line.starts_with("note["))
        .find_map(|line| {
            let rest = &line[line.find(prefix)? + prefix.len()..];
            let token: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            match token.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => token.parse().ok(),
            }
        })
}

fn note(target: &TamperTarget, prefix: &str) -> Result<u64, String> {
    note_number(target.out_text, prefix)
        .ok_or_else(|| format!("no note '{prefix}' in the out file"))
}

fn write_mem(pid: i32, addr: u64, bytes: &[u8]) -> Result<(), String> {
    let path = format!("/proc/{pid}/mem");
    let mut mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))?;
    mem.seek(SeekFrom::Start(addr))
        .map_err(|e| format!("seek {path} to {addr:#x}: {e}"))?;
    mem.write_all(bytes)
        .map_err(|e| format!("write {path} at {addr:#x}: {e}"))
}

fn open_fd(pid: i32, fd: i32, write: bool) -> Result<std::fs::File, String> {
    let path = format!("/proc/{pid}/fd/{fd}");
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags_nonblock()
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(nix::libc::O_NONBLOCK)
    }
}

fn send_signal(pid: i32, signal: i32) -> Result<(), String> {
    // SIGRTMIN+n has no nix `Signal` variant, so use the kill(1) utility for realtime signals.
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid} failed: {status}"))
    }
}

fn sigrtmin() -> i32 {
    nix::libc::SIGRTMIN()
}

fn tamper_heap_counter(t: &TamperTarget) -> Result<(), String> {
    let addr = note(t, "heap_counter at ")?;
    write_mem(t.pid, addr, &12345u64.to_ne_bytes())
}

fn tamper_kill_grandchild(t: &TamperTarget) -> Result<(), String> {
    let below = crate::process::descendants(t.pid);
    let grandchild = below
        .iter()
        .copied()
        .find(|&pid| crate::process::proc_stat(pid).is_some_and(|stat| stat.ppid != t.pid))
        .ok_or_else(|| format!("no grandchild below {}", t.pid))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(grandchild),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("kill {grandchild}: {e}"))
}

fn tamper_pipe_block(t: &TamperTarget) -> Result<(), String> {
    let child = note(t, "reader child ")? as i32;
    open_fd(child, 11, true)?
        .write_all(b"intruder")
        .map_err(|e| format!("write pipe: {e}"))
}

fn tamper_pipe_data(t: &TamperTarget) -> Result<(), String> {
    let mut buf = [0u8; 100];
    open_fd(t.pid, 10, false)?
        .read_exact(&mut buf)
        .map_err(|e| format!("drain pipe: {e}"))
}

fn tamper_fifo(t: &TamperTarget) -> Result<(), String> {
    let path = t.work_dir.join("conf.fifo");
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock()
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    fifo.write_all(b"intruder")
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn tamper_truncate_rw(t: &TamperTarget) -> Result<(), String> {
    let path = t.work_dir.join("conf.rw");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    file.set_len(100)
        .map_err(|e| format!("truncate {}: {e}", path.display()))
}

fn tamper_ghost(t: &TamperTarget) -> Result<(), String> {
    let path = format!("/proc/{}/fd/10", t.pid);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))?;
    std::os::unix::fs::FileExt::write_all_at(&file, b"intruder", 0)
        .map_err(|e| format!("write {path}: {e}"))
}

fn tamper_dir_marker(t: &TamperTarget) -> Result<(), String> {
    let path = t.work_dir.join("conf.dir/marker");
    std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))
}

fn tamper_mapped_file(t: &TamperTarget) -> Result<(), String> {
    let path = t.work_dir.join("conf.mapped");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    std::os::unix::fs::FileExt::write_all_at(&file, b"intruder", 16)
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn tamper_shared_anon(t: &TamperTarget) -> Result<(), String> {
    let addr = note(t, "shared mapping ")?;
    write_mem(t.pid, addr + 100, b"intruder")
}

fn tamper_memfd(t: &TamperTarget) -> Result<(), String> {
    let path = format!("/proc/{}/fd/10", t.pid);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))?;
    std::os::unix::fs::FileExt::write_all_at(&file, b"intruder", 200)
        .map_err(|e| format!("write {path}: {e}"))
}

fn tamper_big_memory(t: &TamperTarget) -> Result<(), String> {
    let addr = note(t, "MiB at ")?;
    let mut byte = [0u8; 1];
    let path = format!("/proc/{}/mem", t.pid);
    let mut mem = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    mem.seek(SeekFrom::Start(addr + 4097))
        .map_err(|e| format!("seek {path}: {e}"))?;
    mem.read_exact(&mut byte)
        .map_err(|e| format!("read {path}: {e}"))?;
    write_mem(t.pid, addr + 4097, &[byte[0] ^ 0x40])
}

fn tamper_read_only(t: &TamperTarget) -> Result<(), String> {
    let addr = note(t, "read-only ")?;
    write_mem(t.pid, addr + 8, b"intruder")
}

fn tamper_extra_rt3(t: &TamperTarget) -> Result<(), String> {
    send_signal(t.pid, sigrtmin() + 3)
}

fn tamper_signalfd(t: &TamperTarget) -> Result<(), String> {
    send_signal(t.pid, sigrtmin() + 2)
}

fn tamper_rlimit(t: &TamperTarget) -> Result<(), String> {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", t.pid))
        .arg("--nofile=900:2000")
        .status()
        .map_err(|e| format!("run prlimit: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("prlimit --pid={} failed: {status}", t.pid))
    }
}

fn tamper_rename_cwd(t: &TamperTarget) -> Result<(), String> {
    let from = t.work_dir.join("conf.cwd");
    std::fs::rename(&from, t.work_dir.join("conf.cwd-moved"))
        .map_err(|e| format!("rename {}: {e}", from.display()))
}

fn tamper_connect(t: &TamperTarget) -> Result<(), String> {
    let path = t.work_dir.join("conf.sock");
    // A connection stays in the listener's accept queue even after the client end is closed.
    std::os::unix::net::UnixStream::connect(&path)
        .map(drop)
        .map_err(|e| format!("connect {}: {e}", path.display()))
}

fn tamper_epoll_pipe(t: &TamperTarget) -> Result<(), String> {
    let mut buf = [0u8; 4];
    open_fd(t.pid, 11, false)?
        .read_exact(&mut buf)
        .map_err(|e| format!("drain pipe: {e}"))
}

fn tamper_inotify(t: &TamperTarget) -> Result<(), String> {
    let path = t.work_dir.join("conf.watched/intruder");
    std::fs::write(&path, b"x").map_err(|e| format!("create {}: {e}", path.display()))
}

fn tamper_continue_child(t: &TamperTarget) -> Result<(), String> {
    let child = note(t, "stopped child ")? as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child),
        nix::sys::signal::Signal::SIGCONT,
    )
    .map_err(|e| format!("SIGCONT {child}: {e}"))
}

fn tamper_kill_pdeath_child(t: &TamperTarget) -> Result<(), String> {
    let child = note(t, "pdeath child ")? as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("SIGKILL {child}: {e}"))
}

fn tamper_nothing(_: &TamperTarget) -> Result<(), String> {
    // The shell job expects a line typed on its terminal; the launcher skips typing it when this
    // tamper is selected, so there is nothing else to do here.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_give_hex_addresses_and_decimal_pids() {
        let out = "note[12]: heap_counter at 0x562c217e52a0\nnote[12]: reader child 4711\nPASS\n";
        assert_eq!(note_number(out, "heap_counter at "), Some(0x562c_217e_52a0));
        assert_eq!(note_number(out, "reader child "), Some(4711));
        assert_eq!(note_number(out, "shared mapping "), None);
    }

    #[test]
    fn program_names_are_unique() {
        let mut names: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROGRAMS.len());
    }
}
