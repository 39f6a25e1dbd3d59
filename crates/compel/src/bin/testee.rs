//! A small target program for criu-compel's integration tests. Modes:
//! - `busy`: spin forever.
//! - `sleep MS`: sleep MS milliseconds in one nanosleep, then exit 0.
//! - `read`: block reading one line from stdin, print `got:<line>`, exit 0.
//! - `threads N`: start N spinning threads, the main thread sleeps forever.
//! - `tree-root`: start `tree-mid` as a child (plus a thread waiting for it) and one spinning thread, then fork short-lived
//!   `sleep 20` children back to back forever (a tree that changes while it is frozen).
//! - `tree-mid`: start `threads 1` as a child and one spinning thread, then sleep forever.
//! - `thread-churn`: start and join short-lived threads forever.
//! - `zombie-parent`: start `sleep 0` and never wait for it (it stays a zombie), sleep forever.
//! - `spawn-freeze-parent`: start `freeze-parent` and exit with its status.
//! - `freeze-parent`: call `freeze_tree` on the parent, whose tree contains this process; print the
//!   error and errno and exit 0 if it was refused, 1 otherwise.
#![deny(unsafe_code)]

use std::hint::black_box;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static SPINS: AtomicU64 = AtomicU64::new(0);

fn spin() -> ! {
    loop {
        SPINS.fetch_add(1, Ordering::Relaxed);
        black_box(&SPINS);
    }
}

fn spawn_spinners(n: usize) {
    for _ in 0..n {
        std::thread::spawn(|| spin());
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn spawn_self(args: &[&str]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}")));
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn {args:?}: {e}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("criu-compel-testee: {msg}");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "busy" => spin(),
        "sleep" => {
            let ms: u64 = arg(1)
                .parse()
                .unwrap_or_else(|_| fail("sleep needs milliseconds"));
            std::thread::sleep(Duration::from_millis(ms));
        }
        "read" => {
            let mut line = String::new();
            match std::io::stdin().lock().read_line(&mut line) {
                Ok(_) => println!("got:{}", line.trim_end()),
                Err(e) => fail(&format!("read: {e}")),
            }
        }
        "threads" => {
            let n: usize = arg(1)
                .parse()
                .unwrap_or_else(|_| fail("threads needs a count"));
            spawn_spinners(n);
            sleep_forever();
        }
        "tree-root" => {
            let mut mid = spawn_self(&["tree-mid"]);
            std::thread::spawn(move || mid.wait());
            spawn_spinners(1);
            loop {
                let mut child = spawn_self(&["sleep", "20"]);
                let _ = child.wait();
            }
        }
        "tree-mid" => {
            let mut leaf = spawn_self(&["threads", "1"]);
            std::thread::spawn(move || leaf.wait());
            spawn_spinners(1);
            sleep_forever();
        }
        "thread-churn" => loop {
            let workers: Vec<_> = (0..4)
                .map(|i| std::thread::spawn(move || black_box(i * 2)))
                .collect();
            for w in workers {
                let _ = w.join();
            }
        },
        "zombie-parent" => {
            let unreaped = vec![spawn_self(&["sleep", "0"])];
            black_box(&unreaped);
            sleep_forever();
        }
        "spawn-freeze-parent" => {
            let status = spawn_self(&["freeze-parent"])
                .wait()
                .unwrap_or_else(|e| fail(&format!("wait: {e}")));
            std::process::exit(status.code().unwrap_or(3));
        }
        "freeze-parent" => {
            let parent = std::os::unix::process::parent_id() as i32;
            match criu_compel::freeze_tree(parent, &criu_compel::FreezeOptions::default()) {
                Ok(tree) => {
                    let _ = tree.resume();
                    println!("froze a tree that contains us");
                    std::process::exit(1);
                }
                Err(e) => {
                    println!("error: {e}; errno={:?}", e.errno());
                }
            }
        }
        other => fail(&format!("unknown mode {other:?}")),
    }
}
