//! Small programs the round-trip tests dump and restore. Each becomes a
//! session leader, sets up one precise state, writes `ready` to stdout, and
//! reports through stdout what it sees after the restore.
//!
//! Modes: `counter`, `threads N`, `sleeper SECS`, `reader PATH`, `tree`,
//! `zombie`, `pipe`, `ghost PATH`, `shmem`, `semaphore`, `seccomp main|tsync`,
//! `fired-itimer`, `pending DIR`, `shell-job` (run under `pty-run`), and the
//! helpers `pty-run CMD...` and `restore-shell-job DIR`; see each function.

#[allow(unsafe_code)]
mod sys;

use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{getpid, getppid, gettid, Pid};

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Blocks SIGUSR1 and waits for it (sigwaitinfo restarts across a restore).
fn wait_usr1() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    set.thread_block().expect("block SIGUSR1");
    let _ = set.wait();
}

fn block_usr1() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    set.thread_block().expect("block SIGUSR1");
}

fn counter() {
    // A heap pattern checked on every step: memory must come back intact.
    let pattern: Vec<u64> = (0..4096u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let mut count: u64 = 0;
    out("ready");
    loop {
        count += 1;
        let sum: u64 = pattern.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        let expected: u64 = (0..4096u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .fold(0u64, |a, b| a.wrapping_add(b));
        if sum != expected {
            out("CORRUPT");
        }
        out(&format!("{count}"));
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn threads(n: usize) {
    let mut handles = Vec::new();
    for _ in 0..n {
        handles.push(std::thread::spawn(|| {
            let tid = gettid();
            let mut count = 0u64;
            loop {
                count += 1;
                out(&format!("thread {tid} {count}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(50));
    out("ready");
    for h in handles {
        let _ = h.join();
    }
}

fn sleeper(secs: u64) {
    let start = Instant::now();
    out("ready");
    std::thread::sleep(Duration::from_secs(secs));
    out(&format!("woke after {} ms", start.elapsed().as_millis()));
}

fn reader(path: &str) {
    let mut file = File::open(path).expect("open the data file");
    let mut first = [0u8; 10];
    file.read_exact(&mut first).expect("first read");
    block_usr1();
    out("ready");
    wait_usr1();
    let mut next = [0u8; 10];
    file.read_exact(&mut next).expect("second read");
    out(&format!("next {}", String::from_utf8_lossy(&next)));
}

fn child() {
    loop {
        out(&format!("child {} {}", getpid(), getppid()));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts this program in another mode; the caller reaps it with waitpid
/// (after the restore), which is what the tests check.
#[allow(clippy::zombie_processes)]
fn spawn_self(mode: &[&str]) -> nix::unistd::Pid {
    let exe = std::env::current_exe().expect("current exe");
    let child = std::process::Command::new(exe)
        .args(mode)
        .spawn()
        .expect("spawn a child");
    nix::unistd::Pid::from_raw(child.id() as i32)
}

/// A child in its own process group (same session), which the parent waits for.
fn groups() {
    block_usr1();
    let child = spawn_self(&["pgchild"]);
    std::thread::sleep(Duration::from_millis(100));
    out(&format!("parent {} child {child}", getpid()));
    out("ready");
    let _ = waitpid(child, None);
}

fn tree() {
    block_usr1();
    let child = spawn_self(&["child"]);
    std::thread::sleep(Duration::from_millis(50));
    out(&format!("parent {} child {child}", getpid()));
    out("ready");
    match waitpid(child, None) {
        Ok(WaitStatus::Signaled(pid, sig, _)) => out(&format!("reaped {pid} signal {sig}")),
        other => out(&format!("wait returned {other:?}")),
    }
}

fn zombie() {
    block_usr1();
    let child = spawn_self(&["exit", "7"]);
    // Let it die and stay a zombie.
    std::thread::sleep(Duration::from_millis(100));
    out(&format!("zombie {child}"));
    out("ready");
    wait_usr1();
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(pid, code)) => out(&format!("reaped {pid} exit {code}")),
        other => out(&format!("wait returned {other:?}")),
    }
}

fn pipe() {
    block_usr1();
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    nix::unistd::write(&write_end, b"queued data").expect("write into the pipe");
    out("ready");
    wait_usr1();
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(&read_end, &mut buf).expect("read the pipe");
    out(&format!("pipe {}", String::from_utf8_lossy(&buf[..n])));
    drop(write_end);
}

fn ghost(path: &str) {
    block_usr1();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create");
    file.write_all(b"ghost contents").expect("write");
    std::fs::remove_file(path).expect("unlink");
    out("ready");
    wait_usr1();
    let mut text = String::new();
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0)).expect("seek");
    file.read_to_string(&mut text).expect("read");
    out(&format!("ghost {text}"));
}

/// A shared anonymous page shared with a forked child, and a memfd: after
/// SIGUSR1 the child writes into the page; after a second SIGUSR1 the parent
/// prints what it sees in both.
fn shmem() {
    block_usr1();
    let page = sys::shared_page();
    page[..6].copy_from_slice(b"before");
    let memfd = nix::sys::memfd::memfd_create(c"testee-memfd", nix::sys::memfd::MFdFlags::empty())
        .expect("memfd_create");
    nix::unistd::write(&memfd, b"memfd data").expect("write the memfd");
    match sys::fork() {
        None => {
            wait_usr1();
            page[..6].copy_from_slice(b"after!");
            out("child wrote");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Some(child) => {
            out(&format!("shmem child {child}"));
            out("ready");
            wait_usr1();
            let mut buf = [0u8; 10];
            let n = nix::sys::uio::pread(&memfd, &mut buf, 0).expect("pread the memfd");
            out(&format!(
                "shared {} memfd {}",
                String::from_utf8_lossy(&page[..6]),
                String::from_utf8_lossy(&buf[..n])
            ));
        }
    }
}

/// eventfd, signalfd, timerfd, epoll, a unix socketpair with queued data and a
/// FIFO with data: after SIGUSR1 each is read back.
fn fds(fifo_path: &str) {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    block_usr1();
    let mut usr2 = SigSet::empty();
    usr2.add(Signal::SIGUSR2);
    usr2.thread_block().expect("block SIGUSR2");
    let efd =
        nix::sys::eventfd::EventFd::from_value_and_flags(5, nix::sys::eventfd::EfdFlags::empty())
            .expect("eventfd");
    let sfd = nix::sys::signalfd::SignalFd::new(&usr2).expect("signalfd");
    let tfd = nix::sys::timerfd::TimerFd::new(
        nix::sys::timerfd::ClockId::CLOCK_MONOTONIC,
        nix::sys::timerfd::TimerFlags::empty(),
    )
    .expect("timerfd");
    tfd.set(
        nix::sys::timerfd::Expiration::Interval(nix::sys::time::TimeSpec::from_duration(
            Duration::from_millis(50),
        )),
        nix::sys::timerfd::TimerSetTimeFlags::empty(),
    )
    .expect("arm the timerfd");
    let epoll = Epoll::new(EpollCreateFlags::empty()).expect("epoll");
    epoll
        .add(&efd, EpollEvent::new(EpollFlags::EPOLLIN, 42))
        .expect("epoll add");
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )
    .expect("socketpair");
    nix::unistd::write(&a, b"sock data").expect("queue on the socket");
    nix::unistd::mkfifo(fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("mkfifo");
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo_path)
        .expect("open the fifo");
    nix::unistd::write(&fifo, b"fifo data").expect("write the fifo");
    out("ready");
    wait_usr1();
    let mut events = [EpollEvent::empty(); 4];
    let n = epoll.wait(&mut events, 1000u16).expect("epoll_wait");
    let epoll_data = if n > 0 { events[0].data() } else { 0 };
    let counter = efd.read().expect("eventfd read");
    let mut buf = [0u8; 64];
    let got = nix::unistd::read(&b, &mut buf).expect("socket read");
    let sock = String::from_utf8_lossy(&buf[..got]).to_string();
    let got = nix::unistd::read(&fifo, &mut buf).expect("fifo read");
    let fifo_text = String::from_utf8_lossy(&buf[..got]).to_string();
    let ticks = tfd.wait().map(|_| "ok").unwrap_or("failed");
    nix::sys::signal::raise(Signal::SIGUSR2).expect("raise");
    let signo = sfd
        .read_signal()
        .ok()
        .flatten()
        .map(|s| s.ssi_signo)
        .unwrap_or(0);
    out(&format!("fds eventfd {counter} epoll {epoll_data} sock {sock} fifo {fifo_text} timer {ticks} signal {signo}"));
    drop(a);
}

/// An EFD_SEMAPHORE eventfd with a count of 3: after SIGUSR1 one read must
/// return 1 (a plain eventfd would return the whole count).
fn semaphore() {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    block_usr1();
    let efd = EventFd::from_value_and_flags(3, EfdFlags::EFD_SEMAPHORE).expect("eventfd");
    out("ready");
    wait_usr1();
    let first = efd.read().expect("eventfd read");
    let second = efd.read().expect("eventfd read");
    out(&format!("semaphore reads {first} {second}"));
}

/// A seccomp filter denying sysinfo() with errno 77 (on two threads with
/// TSYNC, or on the main thread only): after SIGUSR1 each thread reports
/// the errno of sysinfo() and whether getpid() still works.
fn seccomp(tsync: bool) {
    block_usr1();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        ready_tx.send(()).expect("signal the main thread");
        let _ = go_rx.recv();
        sys::sysinfo_errno()
    });
    ready_rx.recv().expect("the worker started");
    sys::deny_sysinfo(tsync);
    out("ready");
    wait_usr1();
    let main_errno = sys::sysinfo_errno();
    go_tx.send(()).expect("wake the worker");
    let worker_errno = worker.join().expect("join");
    out(&format!(
        "seccomp main {main_errno} worker {worker_errno} getpid {}",
        getpid().as_raw() > 0
    ));
}

/// A periodic ITIMER_REAL (10 s interval) whose first expiry has fired while
/// SIGALRM is blocked: the kernel re-arms a periodic real timer only when
/// SIGALRM is dequeued, so until then getitimer reports a value of 0 with
/// the interval. After SIGUSR1 the timer is reported.
fn fired_itimer() {
    block_usr1();
    let mut alrm = SigSet::empty();
    alrm.add(Signal::SIGALRM);
    alrm.thread_block().expect("block SIGALRM");
    sys::set_periodic_real_timer(10, 10);
    // Fired: the value reads 0 until SIGALRM is dequeued.
    while sys::real_timer() != (0, 10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    out("ready");
    wait_usr1();
    let (left, interval) = sys::real_timer();
    out(&format!("itimer interval {interval} armed {}", left > 0));
}

/// In `dir` (the cwd): a listening stream socket bound to the relative name
/// `pending.sock` with one connection still in its accept queue, and a
/// datagram socket bound to `dgram.sock` with a client connected to it
/// one-way and one datagram queued. After SIGUSR1 the connection is
/// accepted and used, and the datagrams are read.
fn pending(dir: &str) {
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
    block_usr1();
    std::env::set_current_dir(dir).expect("chdir");
    let listener = UnixListener::bind("pending.sock").expect("bind");
    let mut client = UnixStream::connect("pending.sock").expect("connect");
    let server = UnixDatagram::bind("dgram.sock").expect("bind dgram");
    let sender = UnixDatagram::unbound().expect("dgram socket");
    sender.connect("dgram.sock").expect("connect dgram");
    sender.send(b"queued").expect("send dgram");
    out("ready");
    wait_usr1();
    let name = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_default();
    listener.set_nonblocking(true).expect("nonblocking");
    let accepted = listener.accept();
    let stream = match accepted {
        Ok((mut conn, _)) => {
            client.write_all(b"ping").expect("client write");
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).expect("server read");
            String::from_utf8_lossy(&buf).to_string()
        }
        Err(e) => format!("none({e})"),
    };
    let second = listener.accept().is_ok();
    sender.send(b"again").expect("send dgram");
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = server.recv(&mut buf).expect("recv dgram");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    out(&format!(
        "pending name {name} stream {stream} second {second} dgram {}",
        got.join("+")
    ));
}

/// `pty-run CMD ARGS...`: a session leader whose controlling terminal is a
/// new pty, running CMD with the pty slave as stdin (a shell running a job).
/// Prints the exit of CMD.
fn pty_run(command: &[String]) {
    use std::os::fd::AsFd;
    nix::unistd::setsid().expect("setsid");
    let pty = nix::pty::openpty(None, None).expect("openpty");
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .expect("FD_CLOEXEC");
    }
    sys::take_controlling_terminal(pty.slave.as_fd());
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(std::process::Stdio::from(pty.slave))
        .status()
        .expect("run the command on the pty");
    out(&format!("pty-run exit {status}"));
    drop(pty.master);
}

/// A shell job: not a session leader, in its own process group, the
/// foreground group of its terminal (stdin), with ECHO off. After SIGUSR1 it
/// reports its terminal and how it stands in it.
fn shell_job() {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    block_usr1();
    let stdin = std::io::stdin();
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid");
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    ttou.thread_block().expect("block SIGTTOU");
    nix::unistd::tcsetpgrp(&stdin, getpid()).expect("tcsetpgrp");
    let mut termios = tcgetattr(&stdin).expect("tcgetattr");
    termios.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &termios).expect("tcsetattr");
    out(&format!("job {}", getpid()));
    out("ready");
    wait_usr1();
    let tty = nix::unistd::ttyname(&stdin)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("none({e})"));
    let echo = tcgetattr(&stdin)
        .map(|t| t.local_flags.contains(LocalFlags::ECHO))
        .unwrap_or(true);
    let foreground = nix::unistd::tcgetpgrp(&stdin).ok() == Some(getpid());
    let sid = nix::unistd::getsid(None).expect("getsid");
    out(&format!(
        "shell-job tty {tty} echo {echo} foreground {foreground} leader {} own group {} terminal session {}",
        sid == getpid(),
        nix::unistd::getpgrp() == getpid(),
        sys::terminal_session() == sid.as_raw()
    ));
}

/// `restore-shell-job DIR`: restores the images in DIR as a shell job on
/// this process's terminal, prints that terminal, waits for the job.
fn restore_shell_job(dir: &str) {
    let tty = nix::unistd::ttyname(std::io::stdin())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let images = criu_image::ImageDir::open(dir).expect("images");
    let mut opts = criu_restore::RestoreOptions::new(images);
    opts.shell_job = true;
    match criu_restore::restore(&opts, &mut |_, _| Ok(())) {
        Ok(report) => {
            out(&format!("restored {} on {tty}", report.root_pid));
            let status = waitpid(Pid::from_raw(report.root_pid), None);
            out(&format!("job ended {status:?}"));
        }
        Err(e) => out(&format!("restore failed: {e}")),
    }
}

/// An inotify watch on a directory: after SIGUSR1, a file is created there
/// and the event is read.
fn inotify(dir: &str) {
    block_usr1();
    let fd = sys::inotify_watch_creates(dir);
    out("ready");
    wait_usr1();
    std::fs::write(format!("{dir}/created"), b"x").expect("create a file");
    let mut buf = [0u8; 4096];
    let n = nix::unistd::read(&fd, &mut buf).expect("read events");
    // struct inotify_event: wd, mask, cookie, len, then the name.
    let len = u32::from_ne_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    let name: String = String::from_utf8_lossy(&buf[16..(16 + len).min(n)])
        .trim_end_matches('\0')
        .to_string();
    out(&format!("inotify {name}"));
}

/// Stdin is a socket to the "criu service": after SIGUSR1, read one reply.
fn service() {
    use prost::Message;
    block_usr1();
    out("ready");
    wait_usr1();
    let mut buf = [0u8; 256];
    let n = nix::unistd::read(std::io::stdin(), &mut buf).expect("read the service socket");
    match criu_proto::CriuResp::decode(&buf[..n]) {
        Ok(resp) => out(&format!(
            "service type {} success {} restored {}",
            resp.r#type,
            resp.success,
            resp.dump.and_then(|d| d.restored).unwrap_or(false)
        )),
        Err(e) => out(&format!("service undecodable {e}")),
    }
}

static HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HANDLER_SP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn record_handler(_signo: i32) {
    let marker = 0u8;
    HANDLER_SP.store(
        &marker as *const u8 as usize,
        std::sync::atomic::Ordering::SeqCst,
    );
    HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// A SIGUSR2 handler on an alternate stack, SIGUSR2 pending and blocked, an
/// interval timer: after SIGUSR1 SIGUSR2 is unblocked and the handler runs.
fn signals() {
    block_usr1();
    let (stack, size) = sys::set_altstack(64 * 1024);
    sys::on_altstack_handler(libc::SIGUSR2, record_handler);
    let mut usr2 = SigSet::empty();
    usr2.add(Signal::SIGUSR2);
    usr2.thread_block().expect("block SIGUSR2");
    nix::sys::signal::raise(Signal::SIGUSR2).expect("raise SIGUSR2");
    sys::set_real_timer(100);
    out("ready");
    wait_usr1();
    usr2.thread_unblock().expect("unblock SIGUSR2");
    let sp = HANDLER_SP.load(std::sync::atomic::Ordering::SeqCst);
    let on_stack = sp >= stack && sp < stack + size;
    out(&format!(
        "signals handled {} on altstack {on_stack} timer {}",
        HANDLED.load(std::sync::atomic::Ordering::SeqCst),
        (1..=100).contains(&sys::real_timer_left())
    ));
}

/// A cwd, a umask and a lowered rlimit (the test gives the dumped task
/// other credentials by editing its core image).
fn creds(dir: &str) {
    block_usr1();
    std::env::set_current_dir(dir).expect("chdir");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 100, 200)
        .expect("setrlimit");
    out("ready");
    wait_usr1();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let dumpable = nix::sys::prctl::get_dumpable().map(u8::from).unwrap_or(9);
    out(&format!(
        "creds cwd {cwd} umask {:o} dumpable {dumpable}",
        sys::umask_now()
    ));
}

/// `mib` MiB of heap filled with a pattern; after SIGUSR1 the pattern is
/// checked.
fn memory(mib: usize) {
    block_usr1();
    let words = mib * 1024 * 1024 / 8;
    let data: Vec<u64> = (0..words as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555)
        .collect();
    out("ready");
    loop {
        wait_usr1();
        let bad = data
            .iter()
            .enumerate()
            .filter(|(i, &v)| v != (*i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555)
            .count();
        out(&format!("memory bad words {bad}"));
    }
}

/// Two POSIX timers (the second one armed); after SIGUSR1 their state is read.
fn ptimer() {
    block_usr1();
    let mut usr2 = SigSet::empty();
    usr2.add(Signal::SIGUSR2);
    usr2.thread_block().expect("block SIGUSR2");
    let first = sys::posix_timer(libc::SIGUSR2, 0);
    let second = sys::posix_timer(libc::SIGUSR2, 100);
    out(&format!("timers {first} {second}"));
    out("ready");
    wait_usr1();
    let left = sys::posix_timer_left(second);
    out(&format!(
        "ptimer left ok {} first exists {}",
        (1..=100).contains(&left),
        sys::posix_timer_left(first) == 0
    ));
}

/// Prints CLOCK_MONOTONIC at start and after each SIGUSR1.
fn monotonic() {
    block_usr1();
    let now = || {
        let t =
            nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
        t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
    };
    out(&format!("mono {:.3}", now()));
    out("ready");
    loop {
        wait_usr1();
        out(&format!("mono {:.3}", now()));
    }
}

/// A listening unix socket with an accepted connection from a client of the
/// same process: after SIGUSR1 the client sends and the server end reads.
fn unixserver(path: &str) {
    use std::os::unix::net::{UnixListener, UnixStream};
    block_usr1();
    let listener = UnixListener::bind(path).expect("bind");
    let mut client = UnixStream::connect(path).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    out("ready");
    wait_usr1();
    client.write_all(b"ping").expect("client write");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).expect("server read");
    let second = UnixStream::connect(path).map(|_| "yes").unwrap_or("no");
    out(&format!(
        "unix {} listener accepts {second}",
        String::from_utf8_lossy(&buf)
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str);
    // TESTEE_SHELL_JOB=1: stay in the caller's session (a shell job).
    if !matches!(
        mode,
        Some("child")
            | Some("pgchild")
            | Some("exit")
            | Some("pty-run")
            | Some("shell-job")
            | Some("restore-shell-job")
    ) && std::env::var_os("TESTEE_SHELL_JOB").is_none()
    {
        let _ = nix::unistd::setsid();
    }
    match mode {
        Some("child") => child(),
        Some("pgchild") => {
            nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
                .expect("setpgid");
            child()
        }
        Some("groups") => groups(),
        Some("exit") => std::process::exit(args[2].parse().expect("exit code")),
        Some("counter") => counter(),
        Some("threads") => threads(args[2].parse().expect("thread count")),
        Some("sleeper") => sleeper(args[2].parse().expect("seconds")),
        Some("reader") => reader(&args[2]),
        Some("tree") => tree(),
        Some("zombie") => zombie(),
        Some("pipe") => pipe(),
        Some("ghost") => ghost(&args[2]),
        Some("shmem") => shmem(),
        Some("fds") => fds(&args[2]),
        Some("inotify") => inotify(&args[2]),
        Some("semaphore") => semaphore(),
        Some("pty-run") => pty_run(&args[2..]),
        Some("shell-job") => shell_job(),
        Some("restore-shell-job") => restore_shell_job(&args[2]),
        Some("pending") => pending(&args[2]),
        Some("fired-itimer") => fired_itimer(),
        Some("seccomp") => seccomp(args[2] == "tsync"),
        Some("service") => service(),
        Some("signals") => signals(),
        Some("ptimer") => ptimer(),
        Some("monotonic") => monotonic(),
        Some("unixserver") => unixserver(&args[2]),
        Some("memory") => memory(args[2].parse().expect("MiB")),
        Some("creds") => creds(&args[2]),
        _ => {
            eprintln!("usage: testee counter|threads N|sleeper SECS|reader PATH|tree|zombie|pipe|ghost PATH");
            std::process::exit(2);
        }
    }
}
