//! Dump (criu-dump) and restore round trips of small programs: each test
//! creates a precise state, checkpoints and restores it, then checks that the
//! state came back.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criu_image::ImageDir;
use criu_restore::{restore, RestoreOptions, RestoreReport};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const TESTEE: &str = env!("CARGO_BIN_EXE_criu-restore-testee");

struct Testee {
    pid: i32,
    child: Child,
    dir: tempfile::TempDir,
    out: PathBuf,
    /// Every pid of the dumped tree.
    tree: Vec<i32>,
}

impl Testee {
    fn start(args: &[&str]) -> Testee {
        Testee::start_with(args, |_| {})
    }

    fn start_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Testee {
        common::init_logging();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        let file = File::create(&out).unwrap();
        let mut command = Command::new(TESTEE);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null());
        configure(&mut command);
        let child = command.spawn().unwrap();
        let testee = Testee {
            pid: child.id() as i32,
            child,
            dir,
            out,
            tree: Vec::new(),
        };
        testee.wait_for(|l| l == "ready", Duration::from_secs(10));
        testee
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn wait_for(&self, pred: impl Fn(&str) -> bool, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "the testee did not print the expected line; output: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the testee to check its state (SIGUSR1) and waits up to 5 s for it to print
    /// `expected`, the line saying all is as before the checkpoint.
    fn poke_and_expect(&self, expected: &str) {
        kill(Pid::from_raw(self.pid), Signal::SIGUSR1).unwrap();
        self.wait_for(|l| l == expected, Duration::from_secs(5));
    }

    fn images(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// Dumps the tree (which kills it) and waits until every pid is free.
    fn dump(&mut self) {
        self.dump_with(|_| {});
    }

    fn dump_with(&mut self, configure: impl FnOnce(&mut criu_dump::DumpOptions)) {
        std::fs::create_dir(self.images()).unwrap();
        let mut opts =
            criu_dump::DumpOptions::new(self.pid, ImageDir::create(self.images()).unwrap());
        configure(&mut opts);
        let report = criu_dump::dump(&opts, &mut |_, _| Ok(())).expect("dump");
        let _ = self.child.wait();
        self.tree = report.pids.clone();
        for &pid in &report.pids {
            assert!(
                common::wait_gone(pid, Duration::from_secs(10)),
                "pid {pid} did not go away after the dump"
            );
        }
    }

    fn restore_with(&self, configure: impl FnOnce(&mut RestoreOptions)) -> RestoreReport {
        let mut opts = RestoreOptions::new(ImageDir::open(self.images()).unwrap());
        configure(&mut opts);
        let report = restore(&opts, &mut |_, _| Ok(())).expect("restore");
        assert_eq!(report.root_pid, self.pid);
        report
    }

    fn dump_and_restore(&mut self) -> RestoreReport {
        self.dump();
        self.restore_with(|_| {})
    }
}

impl Drop for Testee {
    fn drop(&mut self) {
        for &pid in self.tree.iter().rev() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        common::kill_and_reap(self.pid);
    }
}

fn numbers(lines: &[String]) -> Vec<u64> {
    lines.iter().filter_map(|l| l.parse().ok()).collect()
}

#[test]
fn counter_in_memory_keeps_counting() {
    let mut t = Testee::start(&["counter"]);
    t.wait_for(|l| l == "20", Duration::from_secs(5));
    let report = t.dump_and_restore();
    eprintln!("restore of the counter took {:?}", report.elapsed);
    let stats: criu_proto::StatsEntry = ImageDir::open(t.images())
        .unwrap()
        .reader(criu_image::ImageKind::StatsRestore, 0)
        .unwrap()
        .next_entry()
        .unwrap()
        .expect("stats-restore is written");
    let restore_stats = stats.restore.unwrap();
    assert!(
        restore_stats.pages_restored.unwrap() > 0 && restore_stats.restore_time > 0,
        "{restore_stats:?}"
    );
    let before = *numbers(&t.lines()).last().unwrap();
    t.wait_for(
        |l| l.parse::<u64>().is_ok_and(|n| n > before + 10),
        Duration::from_secs(5),
    );
    let lines = t.lines();
    assert!(
        !lines.iter().any(|l| l == "CORRUPT"),
        "heap pattern corrupted"
    );
    let seq = numbers(&lines);
    for pair in seq.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "the counter jumped from {} to {}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn threads_keep_their_tids_and_run() {
    let mut t = Testee::start(&["threads", "3"]);
    let tids = |pid: i32| -> Vec<i32> {
        let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect();
        v.sort();
        v
    };
    let before = tids(t.pid);
    assert_eq!(before.len(), 4);
    t.dump_and_restore();
    assert_eq!(tids(t.pid), before, "tids changed");
    let printed_before = t.lines().len();
    for &tid in &before[1..] {
        let seen = |lines: &[String]| {
            lines[printed_before..]
                .iter()
                .any(|l| l.starts_with(&format!("thread {tid} ")))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen(&t.lines()) {
            assert!(
                Instant::now() < deadline,
                "thread {tid} does not run after the restore"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn cpus_allowed(status_path: &str) -> String {
    std::fs::read_to_string(status_path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

/// The restore pins itself and the tasks it creates to one CPU while it
/// runs; afterwards every restored thread and the tracer thread have the
/// tracer's mask again (what a blank task inherits without the pin).
#[test]
fn restored_threads_and_the_tracer_keep_the_tracers_cpu_affinity() {
    let own = cpus_allowed("/proc/thread-self/status");
    let mut t = Testee::start(&["threads", "3"]);
    t.dump_and_restore();
    assert_eq!(
        cpus_allowed("/proc/thread-self/status"),
        own,
        "tracer left pinned"
    );
    for entry in std::fs::read_dir(format!("/proc/{}/task", t.pid)).unwrap() {
        let tid = entry.unwrap().file_name().into_string().unwrap();
        assert_eq!(
            cpus_allowed(&format!("/proc/{}/task/{tid}/status", t.pid)),
            own,
            "thread {tid} left pinned"
        );
    }
}

#[test]
fn nanosleep_restarts_with_the_remaining_time() {
    let mut t = Testee::start(&["sleeper", "2"]);
    std::thread::sleep(Duration::from_millis(300));
    t.dump_and_restore();
    let restored = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !t.lines().iter().any(|l| l.starts_with("woke")),
        "the sleep ended at once after the restore"
    );
    assert_eq!(common::state(t.pid), Some('S'));
    t.wait_for(|l| l.starts_with("woke"), Duration::from_secs(6));
    assert!(
        restored.elapsed() >= Duration::from_millis(1000),
        "woke after {:?}",
        restored.elapsed()
    );
}

#[test]
fn file_offset_survives() {
    let data = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(data.path(), b"0123456789abcdefghijXYZ").unwrap();
    let mut t = Testee::start(&["reader", data.path().to_str().unwrap()]);
    t.dump_and_restore();
    t.poke_and_expect("next abcdefghij");
}

#[test]
fn process_tree_keeps_pids_and_parent_links() {
    let mut t = Testee::start(&["tree"]);
    let line = t.wait_for(|l| l.starts_with("parent "), Duration::from_secs(5));
    let child: i32 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    t.dump_and_restore();
    assert!(t.tree.contains(&child));
    let ppid = criu_dump::proc::read_stat(child).unwrap().ppid;
    assert_eq!(ppid, t.pid, "the child's parent changed");
    kill(Pid::from_raw(child), Signal::SIGTERM).unwrap();
    t.wait_for(
        |l| l == format!("reaped {child} signal SIGTERM"),
        Duration::from_secs(5),
    );
}

#[test]
fn zombie_keeps_its_exit_status() {
    let mut t = Testee::start(&["zombie"]);
    let line = t.wait_for(|l| l.starts_with("zombie "), Duration::from_secs(5));
    let zombie: i32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    t.dump_and_restore();
    assert_eq!(common::state(zombie), Some('Z'));
    t.poke_and_expect(&format!("reaped {zombie} exit 7"));
}

#[test]
fn pipe_keeps_its_queued_data() {
    let mut t = Testee::start(&["pipe"]);
    t.dump_and_restore();
    t.poke_and_expect("pipe queued data");
}

#[test]
fn unlinked_file_comes_back_from_its_ghost_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ghost.txt");
    let mut t = Testee::start(&["ghost", path.to_str().unwrap()]);
    t.dump_and_restore();
    assert!(!path.exists(), "the ghost file was left on disk");
    t.poke_and_expect("ghost ghost contents");
}

#[test]
fn leave_stopped_leaves_the_task_stopped() {
    let mut t = Testee::start(&["counter"]);
    t.dump();
    t.restore_with(|o| o.leave_stopped = true);
    let deadline = Instant::now() + Duration::from_secs(2);
    while common::state(t.pid) != Some('T') {
        assert!(
            Instant::now() < deadline,
            "state {:?}",
            common::state(t.pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let count = t.lines().len();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(t.lines().len(), count, "a stopped task kept printing");
    kill(Pid::from_raw(t.pid), Signal::SIGCONT).unwrap();
    t.wait_for(
        |l| l.parse::<u64>().is_ok_and(|n| n as usize > count + 5),
        Duration::from_secs(5),
    );
}

#[test]
fn shared_anonymous_memory_stays_shared_between_processes_and_memfd_keeps_data() {
    let mut t = Testee::start(&["shmem"]);
    let line = t.wait_for(|l| l.starts_with("shmem child "), Duration::from_secs(5));
    let child: i32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    t.dump_and_restore();
    kill(Pid::from_raw(child), Signal::SIGUSR1).unwrap();
    t.wait_for(|l| l == "child wrote", Duration::from_secs(5));
    t.poke_and_expect("shared after! memfd memfd data");
}

#[test]
fn eventfd_signalfd_timerfd_epoll_socketpair_and_fifo_come_back() {
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("fifo");
    let mut t = Testee::start(&["fds", fifo.to_str().unwrap()]);
    t.dump_and_restore();
    t.poke_and_expect("fds eventfd 5 epoll 42 sock sock data fifo fifo data timer ok signal 12");
}

#[test]
fn semaphore_eventfd_keeps_its_mode() {
    let mut t = Testee::start(&["semaphore"]);
    t.dump_and_restore();
    t.poke_and_expect("semaphore reads 1 1");
}

#[test]
fn seccomp_filter_keeps_denying_on_its_thread_only() {
    let mut t = Testee::start(&["seccomp", "main"]);
    t.dump_and_restore();
    t.poke_and_expect("seccomp main 77 worker 0 getpid true");
}

#[test]
fn seccomp_filter_synchronized_over_threads_keeps_denying_on_all() {
    let mut t = Testee::start(&["seccomp", "tsync"]);
    t.dump_and_restore();
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid)).unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("Seccomp_filters:\t1"), "{status}");
    t.poke_and_expect("seccomp main 77 worker 77 getpid true");
}

#[test]
fn periodic_itimer_caught_between_expiry_and_rearm_stays_armed() {
    let mut t = Testee::start(&["fired-itimer"]);
    t.dump_and_restore();
    t.poke_and_expect("itimer interval 10 armed true");
}

#[test]
fn pending_connection_and_one_way_datagram_socket_come_back() {
    let cwd = tempfile::tempdir().unwrap();
    let mut t = Testee::start(&["pending", cwd.path().to_str().unwrap()]);
    t.dump_and_restore();
    t.poke_and_expect("pending name pending.sock stream ping second false dgram queued+again");
}

#[test]
fn inotify_watch_keeps_watching() {
    let watched = tempfile::tempdir().unwrap();
    let mut t = Testee::start(&["inotify", watched.path().to_str().unwrap()]);
    t.dump_and_restore();
    t.poke_and_expect("inotify created");
}

#[test]
fn self_dump_service_socket_gets_the_restored_reply() {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    common::init_logging();
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let ino = File::from(ours.as_fd().try_clone_to_owned().unwrap())
        .metadata()
        .unwrap()
        .ino();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let child = Command::new(TESTEE)
        .arg("service")
        .stdin(Stdio::from(theirs))
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut t = Testee {
        pid: child.id() as i32,
        child,
        dir,
        out,
        tree: Vec::new(),
    };
    t.wait_for(|l| l == "ready", Duration::from_secs(5));
    std::fs::create_dir(t.images()).unwrap();
    let mut opts = criu_dump::DumpOptions::new(t.pid, ImageDir::create(t.images()).unwrap());
    opts.service_socket_ino = Some(ino);
    criu_dump::dump(&opts, &mut |_, _| Ok(())).expect("dump");
    let _ = t.child.wait();
    assert!(common::wait_gone(t.pid, Duration::from_secs(10)));
    drop(ours);
    t.restore_with(|_| {});
    t.poke_and_expect("service type 1 success true restored true");
}

#[test]
fn signal_handler_altstack_pending_signal_and_itimer_come_back() {
    let mut t = Testee::start(&["signals"]);
    t.dump_and_restore();
    t.poke_and_expect("signals handled 1 on altstack true timer true");
}

#[test]
fn credentials_cwd_umask_and_rlimits_come_back() {
    let cwd = tempfile::tempdir().unwrap();
    let mut t = Testee::start(&["creds", cwd.path().to_str().unwrap()]);
    t.dump();
    // Another uid, gids, groups and no capabilities, as if the task had
    // dropped them (dumping a task of another uid needs CAP_SYS_RESOURCE,
    // which these machines lack).
    let images = ImageDir::open(t.images()).unwrap();
    let mut core: criu_proto::CoreEntry = images
        .reader(criu_image::ImageKind::Core, t.pid as u64)
        .unwrap()
        .next_entry()
        .unwrap()
        .unwrap();
    let creds = core.thread_core.as_mut().unwrap().creds.as_mut().unwrap();
    (creds.uid, creds.euid, creds.suid, creds.fsuid) = (4321, 4321, 4321, 4321);
    (creds.gid, creds.egid, creds.sgid, creds.fsgid) = (1234, 1234, 1234, 1234);
    creds.groups = vec![2001, 2002];
    creds.cap_eff = vec![0, 0];
    creds.cap_prm = vec![0, 0];
    creds.cap_inh = vec![0, 0];
    let mut writer = images
        .writer(criu_image::ImageKind::Core, t.pid as u64)
        .unwrap();
    writer.write_entry(&core).unwrap();
    writer.finish().unwrap();
    t.restore_with(|_| {});
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid)).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), "4321 4321 4321 4321");
    assert_eq!(field("Gid:"), "1234 1234 1234 1234");
    assert_eq!(field("Groups:"), "2001 2002");
    assert_eq!(field("CapEff:"), "0000000000000000");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", t.pid)).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..5],
        ["100", "200"],
        "{nofile}"
    );
    // The task was dumpable: changing its uid must not leave it undumpable.
    t.poke_and_expect(&format!(
        "creds cwd {} umask 27 dumpable 1",
        cwd.path().display()
    ));
}

#[test]
fn failure_at_every_stage_leaves_no_task_of_a_threaded_tree() {
    use criu_restore::{FailStage, RestoreError};
    let mut tree = Testee::start(&["tree"]);
    tree.dump();
    let mut threads = Testee::start(&["threads", "2"]);
    threads.dump();
    for t in [&tree, &threads] {
        for stage in FailStage::ALL {
            let mut opts = RestoreOptions::new(ImageDir::open(t.images()).unwrap());
            opts.fail_at = Some(stage);
            let err = restore(&opts, &mut |_, _| Ok(())).unwrap_err();
            assert!(
                matches!(err, RestoreError::Injected(s) if s == stage),
                "{err}"
            );
            for &pid in &t.tree {
                assert!(
                    common::wait_gone(pid, Duration::from_secs(5)),
                    "pid {pid} remains after a failure at {}",
                    stage.name()
                );
            }
        }
    }
    // And a real restore still works afterwards.
    let report = tree.restore_with(|_| {});
    assert_eq!(report.pids, tree.tree);
}

fn stat_fields(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn session_and_process_groups_come_back() {
    let mut t = Testee::start(&["groups"]);
    let line = t.wait_for(|l| l.starts_with("parent "), Duration::from_secs(5));
    let child: i32 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    let before = (
        stat_fields(t.pid)[2..4].to_vec(),
        stat_fields(child)[2..4].to_vec(),
    );
    assert_eq!(
        before.1,
        [child.to_string(), t.pid.to_string()],
        "setup: the child leads its own group in the parent's session"
    );
    t.dump_and_restore();
    assert_eq!(
        (
            stat_fields(t.pid)[2..4].to_vec(),
            stat_fields(child)[2..4].to_vec()
        ),
        before
    );
}

#[test]
fn inherit_fd_replaces_a_dumped_file_and_pidfile_gets_the_root_pid() {
    use std::os::fd::OwnedFd;
    let mut t = Testee::start(&["counter"]);
    t.wait_for(|l| l == "5", Duration::from_secs(5));
    t.dump();
    let other = t.dir.path().join("other.txt");
    let replacement = OwnedFd::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&other)
            .unwrap(),
    );
    let pidfile = t.dir.path().join("pid");
    let key = t.out.to_str().unwrap().to_string();
    t.restore_with(|o| {
        o.inherit_fd = vec![(key, replacement)];
        o.pidfile = Some(pidfile.clone());
    });
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        t.pid.to_string()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&other).unwrap().lines().count() < 3 {
        assert!(
            Instant::now() < deadline,
            "the restored task does not write to the inherited fd"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let target = std::fs::read_link(format!("/proc/{}/fd/1", t.pid)).unwrap();
    assert_eq!(target, other);
}

#[test]
fn posix_timers_keep_their_ids_and_remaining_time() {
    let mut t = Testee::start(&["ptimer"]);
    t.dump_and_restore();
    t.poke_and_expect("ptimer left ok true first exists true");
}

#[test]
fn shell_job_root_rejoins_the_callers_session_and_group() {
    let mut t = Testee::start_with(&["counter"], |c| {
        c.env("TESTEE_SHELL_JOB", "1");
    });
    let ours = stat_fields(std::process::id() as i32)[2..4].to_vec();
    assert_eq!(
        stat_fields(t.pid)[2..4].to_vec(),
        ours,
        "setup: the testee is in our group and session"
    );
    t.dump_with(|o| o.shell_job = true);
    let opts = RestoreOptions::new(ImageDir::open(t.images()).unwrap());
    let err = restore(&opts, &mut |_, _| Ok(())).unwrap_err();
    assert!(err.to_string().contains("not a session leader"), "{err}");
    assert_eq!(err.errno(), Some(libc::EOPNOTSUPP));
    t.restore_with(|o| o.shell_job = true);
    assert_eq!(stat_fields(t.pid)[2..4].to_vec(), ours);
}

#[test]
fn a_task_dumped_stopped_comes_back_stopped() {
    let mut t = Testee::start(&["counter"]);
    kill(Pid::from_raw(t.pid), Signal::SIGSTOP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while common::state(t.pid) != Some('T') {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    t.dump_and_restore();
    let deadline = Instant::now() + Duration::from_secs(2);
    while common::state(t.pid) != Some('T') {
        assert!(
            Instant::now() < deadline,
            "state {:?}",
            common::state(t.pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let count = t.lines().len();
    kill(Pid::from_raw(t.pid), Signal::SIGCONT).unwrap();
    t.wait_for(
        |l| l.parse::<u64>().is_ok_and(|n| n as usize > count + 3),
        Duration::from_secs(5),
    );
}

/// The CLOCK_MONOTONIC values the testee printed.
fn mono_values(t: &Testee) -> Vec<f64> {
    t.lines()
        .iter()
        .filter_map(|l| l.strip_prefix("mono ")?.parse().ok())
        .collect()
}

fn monotonic_gap(time_namespace: bool) -> f64 {
    let mut t = Testee::start(&["monotonic"]);
    t.dump();
    std::thread::sleep(Duration::from_millis(1500));
    t.restore_with(|o| o.time_namespace = time_namespace);
    let own = std::fs::read_link("/proc/self/ns/time").unwrap();
    let theirs = std::fs::read_link(format!("/proc/{}/ns/time", t.pid)).unwrap();
    assert_eq!(
        own != theirs,
        time_namespace,
        "time namespace {theirs:?} (ours {own:?})"
    );
    kill(Pid::from_raw(t.pid), Signal::SIGUSR1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while mono_values(&t).len() < 2 {
        assert!(Instant::now() < deadline, "no second clock reading");
        std::thread::sleep(Duration::from_millis(10));
    }
    let values = mono_values(&t);
    values[1] - values[0]
}

#[test]
fn monotonic_clock_continues_from_the_dump_in_a_time_namespace() {
    let gap = monotonic_gap(true);
    assert!(
        gap < 1.0,
        "CLOCK_MONOTONIC advanced {gap} s across a 1.5 s downtime"
    );
}

#[test]
fn without_a_time_namespace_the_monotonic_clock_counts_the_downtime() {
    let gap = monotonic_gap(false);
    assert!(
        gap >= 1.5,
        "CLOCK_MONOTONIC advanced only {gap} s across a 1.5 s downtime"
    );
}

#[test]
fn listening_unix_socket_and_accepted_connection_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let mut t = Testee::start(&["unixserver", path.to_str().unwrap()]);
    t.dump_and_restore();
    t.poke_and_expect("unix ping listener accepts yes");
}
