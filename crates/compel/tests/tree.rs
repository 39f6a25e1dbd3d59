//! Freezing whole process trees.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use criu_compel::{freeze_tree, CompelError, FreezeOptions, FrozenTree};

const T: Duration = Duration::from_secs(5);

/// Every pid reachable from `root` through /proc children (live walk).
fn walk(root: i32) -> Vec<i32> {
    let mut out = vec![];
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        out.push(pid);
        stack.extend(children(pid));
    }
    out.sort_unstable();
    out
}

fn assert_fully_frozen(tree: &FrozenTree, root: i32) {
    assert_eq!(tree.tasks[0].pid, root, "root first");
    let mut seen = HashSet::new();
    for task in &tree.tasks {
        assert!(
            task.pid == root || seen.contains(&task.ppid),
            "pre-order: parent of {} listed before it",
            task.pid
        );
        seen.insert(task.pid);
        if task.zombie {
            assert!(task.threads.is_empty());
            continue;
        }
        let mut frozen: Vec<i32> = task.threads.iter().map(|t| t.tid()).collect();
        frozen.sort_unstable();
        assert_eq!(
            frozen,
            tids(task.pid),
            "every thread of {} seized",
            task.pid
        );
        for t in &task.threads {
            assert_eq!(
                thread_state(task.pid, t.tid()),
                Some('t'),
                "thread {} stopped",
                t.tid()
            );
            assert!(task.initial_state(t.tid()).is_some());
        }
    }
    let mut pids = tree.pids();
    pids.sort_unstable();
    assert_eq!(
        pids,
        walk(root),
        "the frozen set is the whole (now static) tree"
    );
}

#[test]
fn freezing_a_forking_multithreaded_tree_is_stable_and_resumable() {
    let target = spawn(&["tree-root"]);
    let root = target.pid();
    // root (main, waiter, spinner) -> mid (main, waiter, spinner) -> leaf (main, spinner), and root
    // keeps forking short-lived sleepers.
    wait_until("the tree to build", T, || {
        let kids = children(root);
        let mid = kids.iter().copied().find(|&k| !children(k).is_empty());
        tids(root).len() >= 3
            && mid.is_some_and(|m| {
                tids(m).len() >= 3 && children(m).iter().any(|&l| tids(l).len() >= 2)
            })
    });
    for round in 0..3 {
        let tree = freeze_tree(root, &FreezeOptions::default()).expect("freeze");
        assert!(tree.tasks.len() >= 3, "round {round}: {:?}", tree.pids());
        assert_fully_frozen(&tree, root);
        let ticks: Vec<(i32, u64)> = tree
            .tasks
            .iter()
            .filter(|t| !t.zombie)
            .map(|t| (t.pid, cpu_ticks(t.pid)))
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        for &(pid, before) in &ticks {
            assert!(cpu_ticks(pid) <= before + 1, "{pid} ran while frozen");
        }
        let spinners: Vec<i32> = tree
            .tasks
            .iter()
            .filter(|t| t.threads.len() >= 2)
            .map(|t| t.pid)
            .collect();
        tree.resume().expect("resume");
        for pid in spinners {
            assert_makes_progress(pid, cpu_ticks(pid));
        }
    }
    let tree = freeze_tree(root, &FreezeOptions::default()).expect("freeze");
    let pids = tree.pids();
    tree.kill_and_wait_gone(Duration::from_secs(10))
        .expect("kill");
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}

#[test]
fn freezing_a_missing_pid_gives_esrch() {
    let err = freeze_tree(unused_pid(), &FreezeOptions::default()).expect_err("no such pid");
    assert_eq!(err.errno(), Some(libc::ESRCH), "{err}");
    assert!(matches!(err, CompelError::NoSuchProcess { .. }));
}

#[test]
fn freezing_ourselves_is_refused() {
    let err = freeze_tree(std::process::id() as i32, &FreezeOptions::default()).expect_err("self");
    assert!(
        err.to_string()
            .contains("The criu itself is within dumped tree"),
        "{err}"
    );
    // A tree that contains the caller further down: the testee freezes its own parent.
    let out = Command::new(TESTEE)
        .arg("spawn-freeze-parent")
        .stdout(Stdio::piped())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("The criu itself is within dumped tree"),
        "{text}"
    );
}

#[test]
fn a_stopped_process_is_recorded_and_stays_stopped() {
    let target = spawn(&["threads", "2"]);
    let pid = target.pid();
    wait_threads(pid, 3);
    criu_compel::send_signal(pid, libc::SIGSTOP).expect("SIGSTOP");
    wait_until("group stop", T, || state(pid) == Some('T'));
    let mut tree = freeze_tree(pid, &FreezeOptions::default()).expect("freeze");
    assert!(tree.tasks[0].was_stopped);
    assert_eq!(tree.tasks[0].threads.len(), 3);
    {
        let leader = tree.tasks[0].leader_mut().expect("leader");
        let mut s = criu_compel::RemoteSession::new(leader).expect("session in a stopped task");
        assert_eq!(
            s.syscall(libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(pid)
        );
        s.close().expect("close");
    }
    tree.resume().expect("resume");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(state(pid), Some('T'), "still stopped after resume");
    let ticks = cpu_ticks(pid);
    criu_compel::send_signal(pid, libc::SIGCONT).expect("SIGCONT");
    assert_makes_progress(pid, ticks);
}

/// A `zombie-parent` testee once its child is a zombie, and the frozen tree of the two.
fn frozen_zombie_parent() -> (Target, FrozenTree) {
    let target = spawn(&["zombie-parent"]);
    let pid = target.pid();
    wait_until("a zombie child", T, || {
        children(pid).iter().any(|&c| state(c) == Some('Z'))
    });
    let tree = freeze_tree(pid, &FreezeOptions::default()).expect("freeze");
    assert_eq!(tree.tasks.len(), 2);
    (target, tree)
}

#[test]
fn zombies_are_recorded_not_seized() {
    let (target, tree) = frozen_zombie_parent();
    let pid = target.pid();
    let zombie = &tree.tasks[1];
    assert!(zombie.zombie && zombie.threads.is_empty());
    assert_eq!(zombie.ppid, pid);
    tree.resume().expect("resume");
}

#[test]
fn kill_reaps_a_frozen_multithreaded_child() {
    let target = spawn(&["threads", "3"]);
    let pid = target.pid();
    wait_threads(pid, 4);
    let tree = freeze_tree(pid, &FreezeOptions::default()).expect("freeze");
    assert_eq!(tree.tasks[0].threads.len(), 4);
    let report = tree.kill().expect("kill");
    // We are the parent as well as the tracer: the process is fully reaped already.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    // Its memory was freed by us (process_mrelease), or by its exit already when that was quicker.
    assert_eq!(report.memory_handled(), 1);
}

#[test]
fn kill_releases_the_memory_of_live_processes_but_not_of_zombies() {
    let (_target, tree) = frozen_zombie_parent();
    assert!(tree.tasks[1].zombie);
    let report = tree.kill().expect("kill");
    assert_eq!(report.memory_handled(), 1, "the parent only");
}

fn make_cgroup(root: &str, name: &str) -> Option<PathBuf> {
    let dir = Path::new(root).join(name);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

fn freeze_in_cgroup(root: &str, state_file: &str) {
    let name = format!("criu-compel-test-{}-{state_file}", std::process::id());
    let dir = make_cgroup(root, &name)
        .unwrap_or_else(|| panic!("this test needs a writable cgroup hierarchy at {root}"));
    let target = spawn(&["threads", "2"]);
    let pid = target.pid();
    wait_threads(pid, 3);
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    let options = FreezeOptions {
        freezer: Some(dir.clone()),
        ..FreezeOptions::default()
    };
    let tree = freeze_tree(pid, &options).expect("freeze with cgroup");
    assert_fully_frozen(&tree, pid);
    let state = std::fs::read_to_string(dir.join(state_file)).expect("state");
    assert!(
        state.trim() == "0" || state.trim() == "THAWED",
        "thawed after seizing: {state}"
    );
    tree.resume().expect("resume");
    assert_makes_progress(pid, cpu_ticks(pid));
    drop(target);
    wait_until("cgroup empty", T, || {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)
    });
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn cgroup_v1_freezer_then_seize() {
    freeze_in_cgroup("/sys/fs/cgroup/freezer", "freezer.state");
}

#[test]
fn cgroup_v2_freeze_then_seize() {
    freeze_in_cgroup("/sys/fs/cgroup/unified", "cgroup.freeze");
}

#[test]
fn freezing_a_task_that_creates_and_ends_threads_all_the_time() {
    let target = spawn(&["thread-churn"]);
    let pid = target.pid();
    wait_threads(pid, 2);
    for _ in 0..5 {
        let tree = freeze_tree(pid, &FreezeOptions::default()).expect("freeze");
        assert_fully_frozen(&tree, pid);
        tree.resume().expect("resume");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = |pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("voluntary_ctxt_switches"))
                    .map(str::to_string)
            })
    };
    let before = started(pid);
    wait_until("the churn to continue", T, || started(pid) != before);
}

#[test]
fn a_process_whose_leader_exited_is_frozen_through_its_live_threads() {
    let target = spawn(&["threads", "1"]);
    let pid = target.pid();
    wait_threads(pid, 2);
    // Make the leader call exit(0) (not exit_group): it becomes a zombie, the spinner lives on.
    {
        let mut leader =
            criu_compel::Tracee::seize(pid, criu_compel::SeizeOptions::default()).expect("seize");
        leader.interrupt_and_wait(T).expect("stop");
        let gadget = {
            let s = criu_compel::RemoteSession::new(&mut leader).expect("session");
            let g = s.gadget().addr();
            s.close().expect("close");
            g
        };
        let mut regs = leader.regs().expect("regs");
        regs.ip = gadget;
        regs.ax = libc::SYS_exit as u64;
        regs.orig_ax = u64::MAX;
        regs.di = 0;
        leader.set_regs(&regs).expect("set regs");
        leader.detach(0).expect("detach");
    }
    wait_until("the leader to be a zombie", T, || state(pid) == Some('Z'));
    let tree = freeze_tree(pid, &FreezeOptions::default()).expect("freeze");
    let task = &tree.tasks[0];
    assert!(!task.zombie, "live threads: not a zombie process");
    assert_eq!(task.zombie_threads, vec![pid]);
    assert_eq!(task.threads.len(), 1);
    assert_ne!(task.threads[0].tid(), pid);
    tree.resume().expect("resume");
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn freezing_a_thread_id_instead_of_a_process_is_refused() {
    let target = spawn(&["threads", "1"]);
    let pid = target.pid();
    wait_threads(pid, 2);
    let tid = *tids(pid)
        .iter()
        .find(|&&t| t != pid)
        .expect("second thread");
    let err = freeze_tree(tid, &FreezeOptions::default()).expect_err("a thread id");
    assert!(
        err.to_string()
            .contains(&format!("thread of process {pid}")),
        "{err}"
    );
}

#[test]
fn dropping_a_frozen_tree_lets_every_thread_run_again() {
    let target = spawn(&["threads", "2"]);
    let pid = target.pid();
    wait_threads(pid, 3);
    let tree = freeze_tree(pid, &FreezeOptions::default()).expect("freeze");
    let ticks = cpu_ticks(pid);
    drop(tree);
    for tid in tids(pid) {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("status");
        assert!(
            status.contains("TracerPid:\t0"),
            "thread {tid} still traced"
        );
    }
    assert_makes_progress(pid, ticks);
}

fn cpus_allowed(status: &str) -> String {
    std::fs::read_to_string(status)
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string()
}

fn thread_cpus(pid: i32, tid: i32) -> String {
    cpus_allowed(&format!("/proc/{pid}/task/{tid}/status"))
}

#[test]
fn colocate_moves_every_thread_to_the_tracers_cpu_until_resume() {
    let own_tracer = cpus_allowed("/proc/thread-self/status");
    let target = spawn(&["threads", "2"]);
    let pid = target.pid();
    wait_threads(pid, 3);
    // A mask of the target's own, to be given back: the highest CPU we may use.
    let last_cpu = (0..1024)
        .rev()
        .find(|cpu| {
            own_tracer
                .split(',')
                .any(|part| match part.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).contains(cpu),
                    None => part.parse::<i32>().ok() == Some(*cpu),
                })
        })
        .expect("a CPU");
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &last_cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset");
    assert!(status.success());
    let options = FreezeOptions {
        colocate: true,
        ..FreezeOptions::default()
    };
    let tree = freeze_tree(pid, &options).expect("freeze");
    assert_fully_frozen(&tree, pid);
    let pinned = cpus_allowed("/proc/thread-self/status");
    if own_tracer.contains(['-', ',']) {
        assert!(
            !pinned.contains(['-', ',']),
            "tracer pinned to one CPU: {pinned}"
        );
    }
    for tid in tids(pid) {
        assert_eq!(thread_cpus(pid, tid), pinned, "thread {tid} co-located");
    }
    tree.resume().expect("resume");
    assert_eq!(cpus_allowed("/proc/thread-self/status"), own_tracer);
    for tid in tids(pid) {
        assert_eq!(
            thread_cpus(pid, tid),
            last_cpu.to_string(),
            "thread {tid} has its own mask back"
        );
    }
    assert_makes_progress(pid, cpu_ticks(pid));
}

#[test]
fn colocated_tree_killed_unpins_the_tracer() {
    let own_tracer = cpus_allowed("/proc/thread-self/status");
    let target = spawn(&["threads", "2"]);
    let pid = target.pid();
    wait_threads(pid, 3);
    let options = FreezeOptions {
        colocate: true,
        ..FreezeOptions::default()
    };
    let tree = freeze_tree(pid, &options).expect("freeze");
    tree.kill().expect("kill");
    assert_eq!(cpus_allowed("/proc/thread-self/status"), own_tracer);
}
