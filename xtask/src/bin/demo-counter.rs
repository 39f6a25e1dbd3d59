//! The sample process of `cargo xtask demo`: counts up forever, appending one line every 200 ms to the
//! file named by its first argument, with a heap buffer and a floating-point accumulator that must both
//! survive a checkpoint/restore. Each line shows the pid, so a restore with the same pid is visible.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: demo-counter OUTPUT-FILE");
        std::process::exit(2);
    };
    let mut output = match OpenOptions::new().append(true).create(true).open(&path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("demo-counter: cannot open {path}: {error}");
            std::process::exit(1);
        }
    };
    let heap_marker = String::from("heap intact");
    let mut accumulator = 0.0f64;
    for count in 1u64.. {
        accumulator += 0.5;
        let line = format!(
            "pid {} count {count} accumulator {accumulator:.1} {heap_marker}\n",
            std::process::id()
        );
        if output.write_all(line.as_bytes()).is_err() {
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
