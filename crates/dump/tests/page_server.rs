//! Dumps whose pages go to a page server (`DumpOptions::page_server`): the
//! server receives exactly the pagemaps and pages a local dump writes, the
//! dump directory gets every other image, and the merged directory restores.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use criu_dump::{dump, DumpError, DumpOptions, PageServerAddr};
use criu_image::{ImageDir, ImageKind, ImageWriter, PagemapReader, PagemapTarget};
use criu_pages::page_server::{self, PageServerTarget, PagemapId, ServeSummary};
use criu_proto::{PagemapEntry, PagemapHead};

/// Stores a page stream the way CRIU 4.2's page server does
/// (page_server_open/page_server_add): a pagemap is closed when the next one
/// opens, every ADD_F becomes one pagemap entry, pages ids start at 0x10001.
struct CriuLikeTarget {
    dir: ImageDir,
    next_pages_id: u32,
    open: Option<(ImageWriter, ImageWriter)>,
}

impl CriuLikeTarget {
    fn new(dir: ImageDir) -> Self {
        Self {
            dir,
            next_pages_id: 0x10001,
            open: None,
        }
    }

    fn close_current(&mut self) -> std::io::Result<()> {
        if let Some((pagemap, pages)) = self.open.take() {
            pages.finish().map_err(std::io::Error::other)?;
            pagemap.finish().map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        vaddr: u64,
        nr_pages: u64,
        flags: u32,
    ) -> std::io::Result<&mut ImageWriter> {
        let (pagemap, pages) = self
            .open
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no pagemap open"))?;
        pagemap
            .write_entry(&PagemapEntry {
                vaddr,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(flags),
                nr_pages: Some(nr_pages),
            })
            .map_err(std::io::Error::other)?;
        Ok(pages)
    }
}

impl PageServerTarget for CriuLikeTarget {
    fn open(&mut self, dst: PagemapId) -> std::io::Result<bool> {
        self.close_current()?;
        let target = match dst {
            PagemapId::Pid(pid) => PagemapTarget::Process(pid as u32),
            PagemapId::Shmem(id) => PagemapTarget::Shmem(id),
        };
        let pages_id = self.next_pages_id;
        self.next_pages_id += 1;
        let mut pagemap = self
            .dir
            .writer(target.kind(), target.id())
            .map_err(std::io::Error::other)?;
        pagemap
            .write_entry(&PagemapHead { pages_id })
            .map_err(std::io::Error::other)?;
        let mut pages = self
            .dir
            .writer(ImageKind::Pages, u64::from(pages_id))
            .map_err(std::io::Error::other)?;
        pages.ensure_created().map_err(std::io::Error::other)?;
        self.open = Some((pagemap, pages));
        Ok(false)
    }

    fn has_parent(&mut self, _dst: PagemapId) -> std::io::Result<bool> {
        Ok(false)
    }

    fn add_pages(
        &mut self,
        vaddr: u64,
        nr_pages: u64,
        flags: u32,
        data: &mut dyn Read,
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; nr_pages as usize * 4096];
        data.read_exact(&mut buf)?;
        self.entry(vaddr, nr_pages, flags)?
            .write_extra(&buf)
            .map_err(std::io::Error::other)
    }

    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> std::io::Result<()> {
        self.entry(vaddr, nr_pages, flags).map(drop)
    }

    fn close(&mut self) -> std::io::Result<()> {
        self.close_current()
    }
}

/// A CRIU-like page server on 127.0.0.1 serving one connection into `dir`.
fn start_tcp_server(dir: &Path) -> (u16, std::thread::JoinHandle<ServeSummary>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().unwrap().port();
    let images = ImageDir::open(dir).unwrap();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut target = CriuLikeTarget::new(images);
        page_server::serve(&mut stream, &mut target).expect("serve")
    });
    (port, handle)
}

/// The pages program as a session leader, its stdout in `out`.
fn spawn_pages_program(program: &Path, out: &Path) -> Child {
    let child = session_command()
        .arg(program)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn()
        .expect("spawn the pages program");
    wait_for_lines(out, "ready", 1);
    wait_in_pause(child.id() as i32);
    child
}

/// Dumps `pid` into `dir` and leaves it running, back in pause().
fn dump_leaving_running(pid: i32, dir: &Path) -> criu_dump::DumpReport {
    let mut opts = DumpOptions::new(pid, ImageDir::open(dir).unwrap());
    opts.leave_running = true;
    let report = dump(&opts, &mut |_, _| Ok(())).expect("dump leaving the tree running");
    wait_in_pause(pid);
    report
}

fn wait_for_lines(out: &Path, line: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if text.lines().filter(|l| *l == line).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} {line:?} lines in time; output: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (vaddr, nr_pages, flags) of every entry, and the pages image contents, of
/// each pagemap in `dir`, by file name.
type Pagemaps = BTreeMap<String, (Vec<(u64, u64, u32)>, Vec<u8>)>;

fn pagemaps(dir: &Path) -> Pagemaps {
    let images = ImageDir::open(dir).unwrap();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name
            .strip_prefix("pagemap-")
            .and_then(|n| n.strip_suffix(".img"))
        else {
            continue;
        };
        let target = match stem.strip_prefix("shmem-") {
            Some(id) => PagemapTarget::Shmem(id.parse().unwrap()),
            None => PagemapTarget::Process(stem.parse().unwrap()),
        };
        let mut reader = PagemapReader::open(&images, target).unwrap().unwrap();
        let runs = reader.read_all().unwrap();
        let pages = std::fs::read(dir.join(format!("pages-{}.img", reader.pages_id()))).unwrap();
        let runs = runs
            .iter()
            .map(|r| (r.vaddr, r.nr_pages, r.flags))
            .collect();
        out.insert(name, (runs, pages));
    }
    out
}

/// The address of the first byte where two pages images of the same
/// entries differ, and how many bytes differ.
fn first_difference(runs: &[(u64, u64, u32)], a: &[u8], b: &[u8]) -> Option<(u64, usize)> {
    let at = a.iter().zip(b).position(|(x, y)| x != y)?;
    let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
    let mut offset = at as u64;
    for &(vaddr, nr, _) in runs {
        if offset < nr * 4096 {
            return Some((vaddr + offset, differing));
        }
        offset -= nr * 4096;
    }
    Some((u64::MAX, differing))
}

fn image_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn is_page_image(name: &str) -> bool {
    name.starts_with("pagemap-") || name.starts_with("pages-")
}

fn wait_gone(pid: i32) {
    wait_until(|| !alive(pid));
}

/// Local dump (tree left running) and page-server dump (tree killed) of the
/// same frozen-still memory: same pagemaps entry for entry, same page bytes,
/// same stats; the dump dir has everything else; merged, it restores.
#[test]
fn page_server_receives_what_a_local_dump_writes_and_it_restores() {
    let work = tempfile::tempdir().unwrap();
    let program = compile_program("pages.c", work.path());
    let out = work.path().join("out.txt");
    let mut child = spawn_pages_program(&program, &out);
    let pid = child.id() as i32;
    // The check itself works before any dump.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    wait_for_lines(&out, "intact", 1);
    wait_in_pause(pid);

    let local = work.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let local_report = dump_leaving_running(pid, &local);

    let received = work.path().join("received");
    let dumped = work.path().join("dumped");
    std::fs::create_dir(&received).unwrap();
    std::fs::create_dir(&dumped).unwrap();
    let (port, server) = start_tcp_server(&received);
    let mut opts = DumpOptions::new(pid, ImageDir::open(&dumped).unwrap());
    opts.page_server = Some(PageServerAddr::Tcp {
        address: "127.0.0.1".into(),
        port,
    });
    let report = dump(&opts, &mut |_, _| Ok(())).expect("page-server dump");
    let summary = server.join().expect("page server thread");
    let _ = child.wait();
    wait_gone(pid);

    // The page images are on the server side only; the rest is identical.
    let local_names = image_names(&local);
    let dumped_names = image_names(&dumped);
    assert!(
        dumped_names.iter().all(|n| !is_page_image(n)),
        "{dumped_names:?}"
    );
    let other: Vec<&String> = local_names.iter().filter(|n| !is_page_image(n)).collect();
    assert_eq!(other, dumped_names.iter().collect::<Vec<_>>());
    assert!(image_names(&received).iter().all(|n| is_page_image(n)));

    let local_maps = pagemaps(&local);
    let received_maps = pagemaps(&received);
    assert_eq!(
        local_maps.keys().collect::<Vec<_>>(),
        received_maps.keys().collect::<Vec<_>>()
    );
    assert!(local_maps.contains_key(&format!("pagemap-{pid}.img")));
    assert!(
        local_maps.keys().any(|k| k.starts_with("pagemap-shmem-")),
        "the shared mapping must give a shmem pagemap: {:?}",
        local_maps.keys()
    );
    let (task_runs, _) = &local_maps[&format!("pagemap-{pid}.img")];
    // Holes and 256-page pipes cut the 3 MiB region into many entries, and
    // PE_LAZY ones sit next to others.
    assert!(task_runs.len() > 20, "{task_runs:?}");
    assert!(task_runs.iter().any(|r| r.2 & criu_image::PE_LAZY != 0));
    assert!(task_runs.iter().any(|r| r.2 & criu_image::PE_LAZY == 0));
    for (name, (runs, pages)) in &local_maps {
        let (got_runs, got_pages) = &received_maps[name];
        assert_eq!(runs, got_runs, "entries of {name}");
        assert!(
            pages == got_pages,
            "page contents of {name} differ at {:?}",
            first_difference(runs, pages, got_pages)
        );
    }

    // Stats stay exact: the same counts as the local dump, matching what
    // the server received.
    let (local_stats, ps_stats) = (dump_stats(&local), dump_stats(&dumped));
    assert_eq!(local_stats.pages_written, ps_stats.pages_written);
    assert_eq!(local_stats.pages_scanned, ps_stats.pages_scanned);
    assert_eq!(local_stats.page_pipes, ps_stats.page_pipes);
    assert_eq!(local_stats.page_pipe_bufs, ps_stats.page_pipe_bufs);
    assert_eq!(local_stats.shpages_written, ps_stats.shpages_written);
    assert_eq!(report.pages_written, local_report.pages_written);
    let received_pages: u64 = received_maps
        .values()
        .flat_map(|(runs, _)| runs.iter().map(|r| r.1))
        .sum();
    assert_eq!(summary.pages_received, received_pages);
    assert_eq!(
        received_pages,
        ps_stats.pages_written + ps_stats.shpages_written.unwrap_or(0)
    );
    assert_eq!(summary.opens as usize, received_maps.len());
    assert!(!summary.forced_close);

    merge_restore_and_check(&received, &dumped, pid, &out);
}

/// Copies the page server's images into the dump dir (as a migration does),
/// restores, and has the restored pages program check its memory.
fn merge_restore_and_check(received: &Path, dumped: &Path, pid: i32, out: &Path) {
    // Two restores at once in one test process interfere (criu-restore's
    // tracer); restores here run one at a time.
    static RESTORES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = RESTORES.lock().unwrap_or_else(|e| e.into_inner());
    for name in image_names(received) {
        std::fs::copy(received.join(&name), dumped.join(&name)).unwrap();
    }
    let restore_opts = criu_restore::RestoreOptions::new(ImageDir::open(dumped).unwrap());
    let restored = criu_restore::restore(&restore_opts, &mut |_, _| Ok(())).expect("restore");
    assert_eq!(restored.root_pid, pid);
    let restored_pid = nix::unistd::Pid::from_raw(pid);
    let intact_before = std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == "intact")
        .count();
    wait_in_pause(pid);
    nix::sys::signal::kill(restored_pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    let checked = std::panic::catch_unwind(|| wait_for_lines(out, "intact", intact_before + 1));
    let _ = nix::sys::signal::kill(restored_pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(restored_pid, None);
    checked.expect("the restored process must find its memory intact");
}

/// Our `criu` binary next to the test executable (`cargo build -p criu-cli`).
fn criu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CRIU_RS_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("criu");
    path.exists().then_some(path)
}

/// The real page server listens on 127.0.0.2: the in-process servers of
/// other tests take ephemeral ports on 127.0.0.1, one of which may be the
/// port picked (and released) for the real one.
const REAL_SERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Whether something listens on 127.0.0.2:`port` (/proc/net/tcp, state 0A).
fn listening(port: u16) -> bool {
    let local = format!("0200007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == local && f[3] == "0A"
        })
}

/// Entries with adjacent runs of equal flags joined (what a page server that
/// merges entries writes).
fn coalesced(runs: &[(u64, u64, u32)]) -> Vec<(u64, u64, u32)> {
    let mut out: Vec<(u64, u64, u32)> = Vec::new();
    for &(vaddr, nr, flags) in runs {
        match out.last_mut() {
            Some(last) if last.0 + last.1 * 4096 == vaddr && last.2 == flags => last.1 += nr,
            _ => out.push((vaddr, nr, flags)),
        }
    }
    out
}

/// The real `criu page-server` (crates/server) receives a dump: same pages as
/// a local dump at the same addresses, and the merged directory restores.
/// Needs the criu binary built beside the tests (`cargo xtask test` builds the whole workspace first);
/// without it the test fails saying so, rather than passing without having run.
#[test]
fn real_criu_page_server_receives_a_restorable_dump() {
    let criu = criu_binary().expect(
        "no criu binary next to the tests: run `cargo build -p criu-cli` first (cargo xtask test does)",
    );
    let work = tempfile::tempdir().unwrap();
    let program = compile_program("pages.c", work.path());
    let out = work.path().join("out.txt");
    let mut child = spawn_pages_program(&program, &out);
    let pid = child.id() as i32;

    let local = work.path().join("local");
    std::fs::create_dir(&local).unwrap();
    dump_leaving_running(pid, &local);

    let received = work.path().join("received");
    let dumped = work.path().join("dumped");
    std::fs::create_dir(&received).unwrap();
    std::fs::create_dir(&dumped).unwrap();
    let port = {
        let listener = TcpListener::bind((REAL_SERVER_IP, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut server = Command::new(&criu)
        .arg("page-server")
        .arg("-D")
        .arg(&received)
        .args(["--address", "127.0.0.2", "--port", &port.to_string()])
        .arg("-o")
        .arg(work.path().join("page-server.log"))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn criu page-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port) {
        if let Some(status) = server.try_wait().unwrap() {
            panic!("criu page-server exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "criu page-server does not listen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut opts = DumpOptions::new(pid, ImageDir::open(&dumped).unwrap());
    opts.page_server = Some(PageServerAddr::Tcp {
        address: REAL_SERVER_IP.to_string(),
        port,
    });
    let dumped_ok = dump(&opts, &mut |_, _| Ok(()));
    let status = server.wait().unwrap();
    dumped_ok.expect("page-server dump");
    assert!(status.success(), "criu page-server: {status}");
    let _ = child.wait();
    wait_gone(pid);

    let local_maps = pagemaps(&local);
    let received_maps = pagemaps(&received);
    assert_eq!(
        local_maps.keys().collect::<Vec<_>>(),
        received_maps.keys().collect::<Vec<_>>()
    );
    for (name, (runs, pages)) in &local_maps {
        let (got_runs, got_pages) = &received_maps[name];
        assert_eq!(coalesced(runs), coalesced(got_runs), "entries of {name}");
        assert!(
            pages == got_pages,
            "page contents of {name} differ at {:?}",
            first_difference(runs, pages, got_pages)
        );
        if runs != got_runs {
            eprintln!(
                "note: criu page-server merged entries of {name}: {} sent, {} written",
                runs.len(),
                got_runs.len()
            );
        }
    }
    merge_restore_and_check(&received, &dumped, pid, &out);
}

/// RPC `ps.fd`: an already connected socket is used (duplicated) and the
/// session ends with FORCE_CLOSE, as CRIU does when the caller owns the socket.
#[test]
fn connected_socket_ends_with_force_close() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let received = tempfile::tempdir().unwrap();
    let images = ImageDir::open(received.path()).unwrap();
    let server = std::thread::spawn(move || {
        let mut stream = theirs;
        let mut target = CriuLikeTarget::new(images);
        page_server::serve(&mut stream, &mut target).expect("serve")
    });
    let mut sleeper = spawn_sleeper();
    let pid = sleeper.id() as i32;
    let dumped = tempfile::tempdir().unwrap();
    let mut opts = DumpOptions::new(pid, ImageDir::open(dumped.path()).unwrap());
    opts.page_server = Some(PageServerAddr::Connected(ours.into()));
    let report = dump(&opts, &mut |_, _| Ok(())).expect("dump");
    let summary = server.join().unwrap();
    let _ = sleeper.wait();
    assert!(summary.forced_close);
    assert!(report.pages_written > 0);
    assert_eq!(summary.pages_received, report.pages_written);
    let maps = pagemaps(received.path());
    assert!(maps.contains_key(&format!("pagemap-{pid}.img")), "{maps:?}");
    assert!(image_names(dumped.path()).iter().all(|n| !is_page_image(n)));
    assert!(dumped.path().join("inventory.img").exists());
}

/// An unreachable page server fails the dump before anything is frozen: the
/// process keeps running and no inventory is written.
#[test]
fn unreachable_page_server_fails_before_freezing() {
    // 127.0.0.3, where no other test listens: the released port stays free.
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut sleeper = spawn_sleeper();
    let pid = sleeper.id() as i32;
    let dumped = tempfile::tempdir().unwrap();
    let mut opts = DumpOptions::new(pid, ImageDir::open(dumped.path()).unwrap());
    opts.page_server = Some(PageServerAddr::Tcp {
        address: "127.0.0.3".into(),
        port,
    });
    let error = dump(&opts, &mut |_, _| Ok(())).expect_err("nobody listens");
    assert!(matches!(error, DumpError::PagesOut(_)), "{error:?}");
    assert!(
        error.to_string().contains(&format!("127.0.0.3:{port}")),
        "{error}"
    );
    assert_eq!(error.errno(), Some(libc::ECONNREFUSED));
    assert!(!dumped.path().join("inventory.img").exists());
    // Still sleeping, not stopped or traced.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("State:\tS (sleeping)"), "{status}");
    assert!(status.contains("TracerPid:\t0"), "{status}");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// A page server that cannot store what it got answers CLOSE with an error:
/// the dump fails, the tree is resumed (not killed) and no inventory stays.
#[test]
fn failed_close_fails_the_dump_and_resumes_the_tree() {
    struct RefusingTarget(CriuLikeTarget);
    impl PageServerTarget for RefusingTarget {
        fn open(&mut self, dst: PagemapId) -> std::io::Result<bool> {
            self.0.open(dst)
        }
        fn has_parent(&mut self, dst: PagemapId) -> std::io::Result<bool> {
            self.0.has_parent(dst)
        }
        fn add_pages(
            &mut self,
            vaddr: u64,
            nr_pages: u64,
            flags: u32,
            data: &mut dyn Read,
        ) -> std::io::Result<()> {
            self.0.add_pages(vaddr, nr_pages, flags, data)
        }
        fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> std::io::Result<()> {
            self.0.add_hole(vaddr, nr_pages, flags)
        }
        fn close(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let received = tempfile::tempdir().unwrap();
    let images = ImageDir::open(received.path()).unwrap();
    let server = std::thread::spawn(move || {
        let mut stream = theirs;
        let mut target = RefusingTarget(CriuLikeTarget::new(images));
        page_server::serve(&mut stream, &mut target)
    });
    let mut sleeper = spawn_sleeper();
    let pid = sleeper.id() as i32;
    let dumped = tempfile::tempdir().unwrap();
    let mut opts = DumpOptions::new(pid, ImageDir::open(dumped.path()).unwrap());
    opts.page_server = Some(PageServerAddr::Connected(ours.into()));
    let error = dump(&opts, &mut |_, _| Ok(())).expect_err("CLOSE is refused");
    assert!(
        error.to_string().contains("answered CLOSE with status -1"),
        "{error}"
    );
    assert!(server.join().unwrap().is_err());
    assert!(!dumped.path().join("inventory.img").exists());
    // Resumed: sleeping again (in restart_syscall after the interruption),
    // untraced, not stopped.
    wait_until(|| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.contains("State:\tS (sleeping)") && status.contains("TracerPid:\t0\n")
    });
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// A pre-dump sends its pages to the page server too (not in chunk mode) and
/// ends the session; the pre-dump inventory stays local.
#[test]
fn pre_dump_sends_pages_to_the_page_server() {
    let received = tempfile::tempdir().unwrap();
    let (port, server) = start_tcp_server(received.path());
    let mut sleeper = spawn_sleeper();
    let pid = sleeper.id() as i32;
    let dumped = tempfile::tempdir().unwrap();
    let mut opts = DumpOptions::new(pid, ImageDir::open(dumped.path()).unwrap());
    opts.pre_dump = true;
    opts.page_server = Some(PageServerAddr::Tcp {
        address: "127.0.0.1".into(),
        port,
    });
    let report = dump(&opts, &mut |_, _| Ok(())).expect("pre-dump");
    let summary = server.join().unwrap();
    assert!(alive(pid), "a pre-dump leaves the tree running");
    assert!(report.pages_written > 0);
    assert_eq!(summary.pages_received, report.pages_written);
    let maps = pagemaps(received.path());
    let (runs, pages) = &maps[&format!("pagemap-{pid}.img")];
    assert_eq!(
        runs.iter().map(|r| r.1).sum::<u64>() * 4096,
        pages.len() as u64
    );
    assert!(dumped.path().join("inventory.img").exists());
    assert!(image_names(dumped.path()).iter().all(|n| !is_page_image(n)));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}
