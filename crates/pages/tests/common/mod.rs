//! A running `criu-pages-testee` with its printed layout.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub const PAGE: u64 = 4096;

pub struct Testee {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub regions: HashMap<String, (u64, u64)>,
    pub values: HashMap<String, String>,
    _dir: Option<tempfile::TempDir>,
}

impl Testee {
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_in(args, None)
    }

    pub fn layout() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_str().unwrap().to_owned();
        Self::spawn_in(&["layout", &path], Some(dir))
    }

    fn spawn_in(args: &[&str], dir: Option<tempfile::TempDir>) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_criu-pages-testee"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn criu-pages-testee");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut regions = HashMap::new();
        let mut values = HashMap::new();
        loop {
            let mut line = String::new();
            let n = stdout.read_line(&mut line).expect("read testee stdout");
            assert!(n > 0, "testee exited before ready");
            let line = line.trim();
            if line == "ready" {
                break;
            }
            let (name, value) = line.split_once('=').expect("name=value");
            if let Some((start, len)) = value.split_once(',') {
                let parse =
                    |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap();
                regions.insert(name.to_owned(), (parse(start), parse(len)));
            } else {
                values.insert(name.to_owned(), value.to_owned());
            }
        }
        let testee = Self {
            child,
            stdin,
            stdout,
            regions,
            values,
            _dir: dir,
        };
        testee.wait_blocked_on_stdin();
        testee
    }

    /// Waits until the testee sleeps in read(0, ...), so its memory no longer changes (it may
    /// still be releasing the stdout lock right after printing).
    pub fn wait_blocked_on_stdin(&self) {
        let path = format!("/proc/{}/syscall", self.pid());
        for _ in 0..5000 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.starts_with("0 0x0 ") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("testee {} never blocked reading stdin", self.pid());
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn region(&self, name: &str) -> (u64, u64) {
        self.regions[name]
    }

    /// The one VMA that is exactly the region `name`.
    pub fn region_vma(&self, name: &str) -> criu_pages::Vma {
        let (start, len) = self.region(name);
        let mut vmas: Vec<criu_pages::Vma> = criu_pages::read_vmas(self.pid())
            .unwrap()
            .into_iter()
            .filter(|vma| vma.start == start && vma.end == start + len)
            .collect();
        assert_eq!(vmas.len(), 1, "region {name} is not one VMA");
        vmas.remove(0)
    }

    /// Makes the testee fill the page at `addr` with `byte`.
    pub fn write_page(&mut self, addr: u64, byte: u8) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "write {addr:x} {byte:x}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok");
        self.wait_blocked_on_stdin();
    }
}

impl Drop for Testee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pattern the testee writes (keep in sync with the binary).
pub fn pattern_byte(region_seed: u8, page: usize) -> u8 {
    region_seed.wrapping_add((page as u8).wrapping_mul(7)) | 1
}

/// Reads target memory through /proc/PID/mem (the reference for content checks).
pub fn proc_mem(pid: i32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, addr).unwrap();
    buf
}

/// The raw /proc/PID/pagemap entry of the page at `addr`.
pub fn pagemap_entry(pid: i32, addr: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(format!("/proc/{pid}/pagemap")).unwrap();
    let mut entry = [0u8; 8];
    file.read_exact_at(&mut entry, addr / PAGE * 8).unwrap();
    u64::from_ne_bytes(entry)
}
