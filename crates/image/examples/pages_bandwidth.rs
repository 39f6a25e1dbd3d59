//! Measures how fast PagemapWriter streams pages into a directory compared with
//! plain large `write`s of the same bytes to the same filesystem.
//!
//! `cargo run --release -p criu-image --example pages_bandwidth -- [DIR] [MiB] [CHUNK_KiB]`
//! (default /dev/shm, 512 MiB, 4 KiB appends: the worst case, one page per call).

use std::io::Write;
use std::time::Instant;

use criu_image::{ImageDir, PagemapTarget, PagemapWriter, PAGE_SIZE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).cloned().unwrap_or_else(|| "/dev/shm".into());
    let mib: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(512);
    let chunk_kib: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(4);
    let total = mib * 1024 * 1024;
    let chunk = vec![0x5au8; chunk_kib * 1024];
    let tmp = tempfile::tempdir_in(&base)?;

    // Baseline: 4 MiB writes straight to a file.
    let big = vec![0x5au8; 4 * 1024 * 1024];
    let start = Instant::now();
    let mut file = std::fs::File::create(tmp.path().join("baseline"))?;
    let mut left = total;
    while left > 0 {
        let n = left.min(big.len() as u64) as usize;
        file.write_all(&big[..n])?;
        left -= n as u64;
    }
    drop(file);
    let baseline = start.elapsed();
    std::fs::remove_file(tmp.path().join("baseline"))?;

    let dir = ImageDir::open(tmp.path())?;
    let start = Instant::now();
    let mut writer = PagemapWriter::new(&dir, PagemapTarget::Process(1), 1)?;
    let mut vaddr = 0x7f00_0000_0000u64;
    let mut written = 0;
    while written < total {
        // Skip a page now and then so that runs do not all merge.
        writer.add_pages(vaddr, &chunk)?;
        vaddr += chunk.len() as u64
            + if written % (1 << 20) == 0 {
                PAGE_SIZE
            } else {
                0
            };
        written += chunk.len() as u64;
    }
    let stats = writer.finish()?;
    let ours = start.elapsed();

    let rate = |d: std::time::Duration| total as f64 / d.as_secs_f64() / (1024.0 * 1024.0);
    println!(
        "baseline {:.0} MiB/s, PagemapWriter ({} KiB appends, {} entries) {:.0} MiB/s = {:.0}%",
        rate(baseline),
        chunk_kib,
        stats.entries,
        rate(ours),
        100.0 * baseline.as_secs_f64() / ours.as_secs_f64()
    );
    Ok(())
}
