//! Throughput of criu-pages against a live process: scanning, reading, and reading + writing an
//! image file, for several chunk sizes, serial and pipelined. Prints GiB/s (best of N runs).
//!
//! `criu-pages-bench [MiB=1024] [DIR=/dev/shm] [RUNS=3] [fresh|reuse]`; `criu-pages-testee` must sit next to
//! this binary (cargo builds both).
#![deny(unsafe_code)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_pages::{
    present_ranges_with, read_vmas, PageRange, PageReader, PageSink, ReaderOptions, ScanMethod,
};

/// Writes every batch to a file with one write(), as an image writer would.
struct FileSink(File);

impl PageSink for FileSink {
    fn add_pages(&mut self, _vaddr: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn add_hole(&mut self, _vaddr: u64, _nr_pages: u64, _flags: u32) -> io::Result<()> {
        Ok(())
    }
    fn add_page_runs(&mut self, _runs: &[PageRange], data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
}

/// Discards data (measures the read side alone).
struct NullSink(u64);

impl PageSink for NullSink {
    fn add_pages(&mut self, _vaddr: u64, data: &[u8]) -> io::Result<()> {
        self.0 += data.len() as u64;
        Ok(())
    }
    fn add_hole(&mut self, _vaddr: u64, _nr_pages: u64, _flags: u32) -> io::Result<()> {
        Ok(())
    }
}

fn gib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1u64 << 30) as f64 / elapsed.as_secs_f64()
}

fn best_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().expect("at least one run")
}

/// The image file for one run: a new file, or (`reuse`) the same file overwritten in place, so
/// that its pages are already allocated (this removes the dominant, noisy cost of allocating
/// destination pages in these VMs and shows the read/write overlap itself).
fn image_file(dir: &Path, reuse: bool) -> (File, PathBuf) {
    let path = dir.join("criu-pages-bench.img");
    if reuse {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("open image file");
        return (file, path);
    }
    let _ = std::fs::remove_file(&path);
    (File::create(&path).expect("create image file"), path)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map_or(1024, |v| v.parse().expect("MiB"));
    let dir = PathBuf::from(args.get(2).map_or("/dev/shm", String::as_str));
    let runs: usize = args.get(3).map_or(3, |v| v.parse().expect("runs"));
    let reuse = match args.get(4).map_or("fresh", String::as_str) {
        "fresh" => false,
        "reuse" => true,
        other => panic!("unknown file mode {other:?}: fresh or reuse"),
    };
    let bytes = mib << 20;

    let testee = std::env::current_exe()
        .expect("current exe")
        .with_file_name("criu-pages-testee");
    let mut child = Command::new(&testee)
        .args(["bench", &mib.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {testee:?}: {error}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let started = Instant::now();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).expect("read") > 0,
            "testee died"
        );
        if line.trim() == "ready" {
            break;
        }
    }
    println!(
        "target: {mib} MiB of written anonymous memory (setup {:.2} s), images in {} ({})",
        started.elapsed().as_secs_f64(),
        dir.display(),
        if reuse {
            "overwritten in place"
        } else {
            "fresh files"
        }
    );
    let pid = child.id() as i32;
    let mut vmas = Vec::new();
    let elapsed = best_of(runs, || {
        let start = Instant::now();
        vmas = read_vmas(pid).expect("read_vmas");
        start.elapsed()
    });
    println!(
        "read_vmas (smaps): {:.1} ms ({} VMAs)",
        elapsed.as_secs_f64() * 1e3,
        vmas.len()
    );

    let mut ranges = Vec::new();
    for method in [ScanMethod::PagemapScan, ScanMethod::PagemapRead] {
        let elapsed = best_of(runs, || {
            let start = Instant::now();
            ranges = present_ranges_with(pid, &vmas, method).expect("scan");
            start.elapsed()
        });
        println!(
            "present_ranges {method:?}: {:.1} ms ({} ranges)",
            elapsed.as_secs_f64() * 1e3,
            ranges.len()
        );
    }
    let total: u64 = ranges.iter().map(PageRange::len_bytes).sum();
    assert!(
        total >= bytes,
        "scan found {total} bytes, expected >= {bytes}"
    );

    // Every run measures every variant once, so that load from other processes on the machine
    // hits all variants alike; each variant then reports its best run.
    let buffer = vec![0x5au8; 4 << 20];
    let baseline_run = || {
        let (mut file, path) = image_file(&dir, reuse);
        let start = Instant::now();
        let mut left = total;
        while left > 0 {
            let n = left.min(buffer.len() as u64) as usize;
            file.write_all(&buffer[..n]).expect("write");
            left -= n as u64;
        }
        let elapsed = start.elapsed();
        drop(file);
        if !reuse {
            let _ = std::fs::remove_file(path);
        }
        elapsed
    };
    let read_only_run = |reader: &PageReader| {
        let mut sink = NullSink(0);
        let start = Instant::now();
        reader.read(&ranges, &mut sink).expect("read");
        assert_eq!(sink.0, total);
        start.elapsed()
    };
    let read_write_run = |reader: &PageReader| {
        let (file, path) = image_file(&dir, reuse);
        let mut sink = FileSink(file);
        let start = Instant::now();
        reader.read(&ranges, &mut sink).expect("read");
        let elapsed = start.elapsed();
        drop(sink);
        if !reuse {
            let _ = std::fs::remove_file(path);
        }
        elapsed
    };
    let chunk_sizes_kib = [256usize, 512, 1024, 2048, 4096, 16384];
    let mut readers = Vec::new();
    for pipelined in [false, true] {
        for chunk_kib in chunk_sizes_kib {
            let options = ReaderOptions {
                chunk_bytes: chunk_kib << 10,
                pipelined,
            };
            readers.push(PageReader::with_options(pid, options).expect("reader"));
        }
    }
    let mut best_baseline = Duration::MAX;
    let mut best_read_only = vec![Duration::MAX; chunk_sizes_kib.len()];
    let mut best_read_write = vec![Duration::MAX; readers.len()];
    for run in 0..runs {
        best_baseline = best_baseline.min(baseline_run());
        for (index, reader) in readers.iter().take(chunk_sizes_kib.len()).enumerate() {
            best_read_only[index] = best_read_only[index].min(read_only_run(reader));
        }
        // Each run starts at another setting: on this VM a run's speed depends on what the run
        // before it freed, so a fixed order would favour the same settings every time.
        for step in 0..readers.len() {
            let index = (run + step) % readers.len();
            best_read_write[index] = best_read_write[index].min(read_write_run(&readers[index]));
        }
    }
    let baseline = gib_per_s(total, best_baseline);
    println!("baseline write() of own memory, 4 MiB: {baseline:.2} GiB/s");
    for (index, chunk_kib) in chunk_sizes_kib.iter().enumerate() {
        println!(
            "read only, {chunk_kib:>5} KiB chunks: {:.2} GiB/s",
            gib_per_s(total, best_read_only[index])
        );
    }
    for (index, reader) in readers.iter().enumerate() {
        let options = reader.options();
        let rate = gib_per_s(total, best_read_write[index]);
        println!(
            "read + write, {} {:>5} KiB chunks: {rate:.2} GiB/s ({:.0}% of baseline)",
            if options.pipelined {
                "pipelined"
            } else {
                "serial   "
            },
            options.chunk_bytes >> 10,
            rate / baseline * 100.0
        );
    }
    let _ = std::fs::remove_file(dir.join("criu-pages-bench.img"));
    let _ = child.kill();
    let _ = child.wait();
}
