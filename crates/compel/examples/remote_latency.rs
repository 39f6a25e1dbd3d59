//! Measures the latency of one remote syscall (getpid) and of an interrupt+wait in a child process:
//! `cargo run --release -p criu-compel --example remote_latency [CALLS]`.

use std::time::{Duration, Instant};

use criu_compel::{RemoteSession, SeizeOptions, Tracee};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let mut child = std::process::Command::new("sleep").arg("100").spawn()?;
    let pid = child.id() as i32;
    let mut tracee = Tracee::seize(pid, SeizeOptions::default())?;
    tracee.interrupt_and_wait(Duration::from_secs(5))?;
    let mut session = RemoteSession::new(&mut tracee)?;
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        session.syscall(libc::SYS_getpid, [0; 6])?;
        samples.push(started.elapsed());
    }
    session.close()?;
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "remote getpid x{calls}: p10 {:?} p50 {:?} p90 {:?} p99 {:?}",
        at(0.1),
        at(0.5),
        at(0.9),
        at(0.99)
    );
    tracee.detach(0)?;
    child.kill()?;
    child.wait()?;
    Ok(())
}
