//! Workloads for `cargo xtask bench`. Each one builds its state, writes "ready" to the file named by its
//! second argument, then sleeps until killed, so the benchmark checkpoints a quiet, known process.
//!
//! - `memory BYTES READY`: holds BYTES of pseudo-random data (incompressible, every page distinct);
//! - `touch BYTES READY`: holds BYTES of private memory, every page written (quick to build; for
//!   measuring what killing such a process costs);
//! - `threads N READY`: N threads in total (the main thread and N-1 sleeping threads);
//! - `tree N READY`: N processes in total (this one and N-1 sleeping children).

use std::process::{Command, Stdio};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(count), Some(ready)) = (args.get(1), args.get(2), args.get(3)) else {
        if args.get(1).map(String::as_str) == Some("sleeper") {
            sleep_forever();
        }
        eprintln!("usage: bench-workload memory|touch|threads|tree COUNT READY-FILE");
        std::process::exit(2);
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("bench-workload: {count:?} is not a number");
        std::process::exit(2);
    };
    // Kept alive until the process dies: the state being checkpointed.
    let mut memory = Vec::new();
    let mut children = Vec::new();
    match mode.as_str() {
        "memory" => memory = pseudo_random_bytes(count),
        "touch" => memory = vec![0x5a; count],
        "threads" => {
            for _ in 1..count {
                std::thread::spawn(sleep_forever);
            }
        }
        "tree" => {
            let me = std::env::current_exe().unwrap_or_else(|error| fail(&error.to_string()));
            for _ in 1..count {
                let child = Command::new(&me)
                    .arg("sleeper")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|error| fail(&error.to_string()));
                children.push(child);
            }
        }
        other => fail(&format!("unknown mode {other:?}")),
    }
    if let Err(error) = std::fs::write(ready, b"ready") {
        fail(&format!("cannot write {ready}: {error}"));
    }
    std::hint::black_box(&memory);
    sleep_forever();
}

fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in bytes.chunks_mut(8) {
        // xorshift64: fast, and no two pages come out equal.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = state.to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    bytes
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench-workload: {message}");
    std::process::exit(1);
}
