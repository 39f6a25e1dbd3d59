//! The machine's own limits, measured in the same run as the benchmarks they judge.
//!
//! Our machines are noisy virtual machines where a first-touch page fault costs microseconds, so an
//! absolute GiB/s figure means little. Every dump or restore figure is reported as a ratio to the limit
//! that bounds it, measured here in the same run:
//! - memcpy between two hot buffers: the ceiling of any in-memory copy;
//! - writing fresh pages into a new tmpfs file: what a dump to tmpfs cannot beat (the page cache must
//!   allocate every destination page);
//! - copying into fresh anonymous memory: what a restore cannot beat (every restored page is a first
//!   touch in the new process).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// One measurement repeated a few times: median, min and max, in GiB/s.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Rate {
    /// Summarises bandwidth samples (GiB/s).
    pub fn from_samples(mut samples: Vec<f64>) -> Rate {
        samples.sort_by(f64::total_cmp);
        let min = samples.first().copied().unwrap_or(0.0);
        let max = samples.last().copied().unwrap_or(0.0);
        let median = samples.get(samples.len() / 2).copied().unwrap_or(0.0);
        Rate { median, min, max }
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// GiB/s for `bytes` moved in `elapsed`.
pub fn gib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / GIB / elapsed.as_secs_f64().max(1e-9)
}

/// Copy chunk for the file write: large enough that syscall cost is negligible, as a dump writes.
const WRITE_CHUNK: usize = 4 << 20;

/// Bandwidth of memcpy between two buffers that are already faulted in.
pub fn memcpy_bandwidth(bytes: usize, runs: usize) -> Rate {
    let source = vec![0x5au8; bytes];
    let mut destination = vec![0xa5u8; bytes];
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            destination.copy_from_slice(&source);
            std::hint::black_box(&mut destination);
            gib_per_second(bytes as u64, start.elapsed())
        })
        .collect();
    Rate::from_samples(samples)
}

/// Bandwidth of writing `bytes` of fresh data into a new file in `tmpfs_dir` with large write()s.
pub fn tmpfs_write_bandwidth(tmpfs_dir: &Path, bytes: usize, runs: usize) -> std::io::Result<Rate> {
    let chunk = vec![0x3cu8; WRITE_CHUNK];
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let path = tmpfs_dir.join(format!("criu-rs-limit-{}-{run}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let start = Instant::now();
        let mut written = 0;
        while written < bytes {
            let len = WRITE_CHUNK.min(bytes - written);
            file.write_all(&chunk[..len])?;
            written += len;
        }
        samples.push(gib_per_second(bytes as u64, start.elapsed()));
        drop(file);
        std::fs::remove_file(&path)?;
    }
    Ok(Rate::from_samples(samples))
}

/// Bandwidth of copying data into freshly allocated anonymous memory (every page a first touch).
pub fn anon_populate_bandwidth(bytes: usize, runs: usize) -> Rate {
    let source = vec![0x77u8; bytes];
    let samples = (0..runs)
        .map(|_| {
            // A large zeroed Vec comes from calloc, i.e. a fresh anonymous mapping whose pages are not
            // faulted in yet: the copy below faults every page exactly as a restore does.
            let mut fresh = vec![0u8; bytes];
            let start = Instant::now();
            fresh.copy_from_slice(&source);
            std::hint::black_box(&mut fresh);
            gib_per_second(bytes as u64, start.elapsed())
        })
        .collect();
    Rate::from_samples(samples)
}
