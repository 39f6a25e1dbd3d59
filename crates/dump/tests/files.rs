//! File kinds: pipes (with data, read without consuming), unix sockets
//! (pairs, queues, listeners, in-flight connections, abstract names, the
//! RPC service socket, external peers), memfds and shared anonymous memory,
//! eventfd/signalfd/timerfd/epoll/inotify, and refusals with pid/fd/kind.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use criu_image::ImageKind;
use criu_proto::{FdTypes, FdinfoEntry, FileEntry, MemfdInodeEntry, PipeDataEntry};

fn fdinfo_of(dir: &Path, files_id: u64) -> Vec<FdinfoEntry> {
    read_entries(dir, ImageKind::Fdinfo, files_id)
}

fn file_by_id(files: &[FileEntry], id: u32) -> &FileEntry {
    files.iter().find(|f| f.id == id).expect("file entry")
}

#[test]
fn pipes_and_unix_sockets_with_queued_data() {
    let script = r#"
import socket, os, time, sys
a, b = socket.socketpair()
a.send(b'hello'); a.send(b' world')
d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
d1.send(b'dgram1'); d1.send(b'dgram22')
r, w = os.pipe(); os.write(w, b'pipedata')
ab = socket.socket(socket.AF_UNIX); ab.bind(b'\0criu-rs-test-abstract-%d' % os.getpid())
print('ready', flush=True)
time.sleep(1000)
"#;
    let child = python_session(script);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");

    // Nothing was consumed: the data is still there for the task.
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let fdinfo = fdinfo_of(dir.path(), 2);
    let usk: Vec<_> = files.iter().filter_map(|f| f.usk.as_ref()).collect();
    assert_eq!(usk.len(), 5);
    for s in &usk {
        if s.peer != 0 {
            let peer = usk.iter().find(|p| p.ino == s.peer).expect("peer dumped");
            assert_eq!(peer.peer, s.ino);
        }
        assert_eq!(s.ns_id, Some(2));
    }
    let abs = usk.iter().find(|s| !s.name.is_empty()).unwrap();
    assert_eq!(abs.name[0], 0);
    assert_eq!((abs.state, abs.peer), (7, 0));
    let queues: Vec<Vec<u8>> = {
        let images = criu_image::ImageDir::open(dir.path()).unwrap();
        let mut r = images.reader(ImageKind::SkQueues, 0).unwrap();
        let mut out = Vec::new();
        while let Some(e) = r.next_entry::<criu_proto::SkPacketEntry>().unwrap() {
            out.push(r.read_extra(u64::from(e.length)).unwrap());
        }
        out
    };
    assert_eq!(
        queues,
        vec![
            b"hello world".to_vec(),
            b"dgram1".to_vec(),
            b"dgram22".to_vec()
        ]
    );
    let images = criu_image::ImageDir::open(dir.path()).unwrap();
    let mut r = images.reader(ImageKind::PipesData, 0).unwrap();
    let pd: PipeDataEntry = r.next_entry().unwrap().unwrap();
    assert_eq!(r.read_extra(u64::from(pd.bytes)).unwrap(), b"pipedata");
    assert!(
        fdinfo
            .iter()
            .filter(|f| f.r#type == FdTypes::Pipe as i32)
            .count()
            >= 2
    );
    for name in [
        "files.img",
        "sk-queues.img",
        "pipes-data.img",
        "fdinfo-2.img",
    ] {
        crit_decode(&dir.path().join(name));
    }
    // The pipe still holds its data: read it through /proc.
    let read_end = fdinfo
        .iter()
        .find(|f| {
            f.r#type == FdTypes::Pipe as i32
                && file_by_id(&files, f.id).pipe.as_ref().unwrap().flags & 1 == 0
        })
        .unwrap();
    let mut pipe = std::fs::File::open(format!("/proc/{pid}/fd/{}", read_end.fd)).unwrap();
    let mut buf = [0u8; 8];
    std::io::Read::read_exact(&mut pipe, &mut buf).unwrap();
    assert_eq!(&buf, b"pipedata");
    reap(child);
}

/// Path-bound names: sock_diag (and CRIU's image) keep the kernel's
/// terminating NUL; relative names get the directory they were bound in as
/// `name_dir`, cut from the socket file's path like CRIU, or found from the
/// task's cwd when the name has `..` in it.
#[test]
fn unix_socket_names_keep_the_nul_and_relative_ones_get_name_dir() {
    let work = tempfile::tempdir().unwrap();
    let work_path = std::fs::canonicalize(work.path()).unwrap();
    std::fs::create_dir(work_path.join("sub")).unwrap();
    let script = format!(
        r#"
import socket, os, time
os.chdir({dir:?})
rel = socket.socket(socket.AF_UNIX); rel.bind('conf.sock'); rel.listen(4)
dot = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); dot.bind('./dot.sock')
up = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); up.bind('sub/../up.sock')
absolute = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); absolute.bind({dir:?} + '/abs.sock')
gone = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); gone.bind('gone.sock'); os.unlink('gone.sock')
print('ready', flush=True)
time.sleep(1000)
"#,
        dir = work_path.to_str().unwrap()
    );
    let child = python_session(&script);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let dumped = dump_to(pid, dir.path(), |o| o.leave_running = true);
    reap(child);
    dumped.expect("dump");
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let by_name = |name: &[u8]| {
        files
            .iter()
            .filter_map(|f| f.usk.as_ref())
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no socket named {:?}", String::from_utf8_lossy(name)))
    };
    let work_dir = work_path.to_str().unwrap();
    for name in [&b"conf.sock\0"[..], b"./dot.sock\0", b"sub/../up.sock\0"] {
        let usk = by_name(name);
        assert_eq!(usk.name_dir.as_deref(), Some(work_dir), "{usk:?}");
        assert_eq!(usk.deleted, None);
        assert_eq!(
            usk.file_perms.as_ref().unwrap().mode & libc::S_IFMT,
            libc::S_IFSOCK
        );
    }
    let listener = by_name(b"conf.sock\0");
    assert_eq!(listener.state, 10);
    let absolute = by_name(format!("{work_dir}/abs.sock\0").as_bytes());
    assert_eq!(absolute.name_dir, None);
    let gone = by_name(b"gone.sock\0");
    assert_eq!(gone.deleted, Some(true));
    assert_eq!(gone.name_dir.as_deref(), Some(work_dir));
    crit_decode(&dir.path().join("files.img"));
}

#[test]
fn service_socket_is_written_closed_with_usk_service() {
    use std::os::unix::fs::MetadataExt;
    // The task holds one end of a pair; we hold the other (the "RPC socket").
    let listener_path = tempfile::tempdir().unwrap();
    let sock_path = listener_path.path().join("svc");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.connect('{}')\nprint('ready',flush=True)\ntime.sleep(1000)\n",
        sock_path.display()
    );
    let child = python_session(&script);
    let (ours, _) = listener.accept().unwrap();
    let our_ino = std::fs::File::from(std::os::fd::OwnedFd::from(ours.try_clone().unwrap()))
        .metadata()
        .unwrap()
        .ino();
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.service_socket_ino = Some(our_ino)).expect("dump");
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let usk = files.iter().find_map(|f| f.usk.as_ref()).unwrap();
    assert_eq!((usk.state, usk.peer, usk.uflags), (7, 0, 2));
    reap(child);
}

#[test]
fn external_stream_peer_is_refused_naming_pid_and_fd() {
    let script = "import socket,time\ns=socket.fromfd(0, socket.AF_UNIX, socket.SOCK_STREAM)\nprint('ready',flush=True)\ntime.sleep(1000)\n";
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (child, _ready) = spawn_reading_first_line(
        session_command().args(["/usr/bin/python3", "-c", script]),
        Stdio::from(std::os::fd::OwnedFd::from(theirs)),
    );
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let err = dump_to(pid, dir.path(), |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {pid}"))
            && msg.contains("fd 0")
            && msg.contains("outside the dumped tree"),
        "{msg}"
    );
    assert!(!dir.path().join("inventory.img").exists());
    assert_ne!(proc_state(pid), 'T');
    drop(ours);
    reap(child);
}

#[test]
fn memfd_and_shared_anonymous_memory_take_the_memfd_route() {
    let script = r#"
import mmap, os, time
m = mmap.mmap(-1, 3 * 4096, mmap.MAP_SHARED)
m[4096:4100] = b'abcd'
fd = os.memfd_create('criu-rs-memfd')
os.write(fd, b'x' * 5000)
print('ready', flush=True)
time.sleep(1000)
"#;
    let child = python_session(script);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |_| {}).expect("dump");
    reap(child);
    let inodes: Vec<MemfdInodeEntry> = read_entries(dir.path(), ImageKind::MemfdInode, 0);
    assert_eq!(inodes.len(), 2);
    assert_eq!(
        (inodes[0].name.as_str(), inodes[0].size),
        ("/dev/zero", 3 * 4096)
    );
    assert_eq!(
        (inodes[1].name.as_str(), inodes[1].size),
        ("criu-rs-memfd", 5000)
    );
    // The shared page's content is in pagemap-shmem-<ino> at offset 4096.
    let images = criu_image::ImageDir::open(dir.path()).unwrap();
    let read = criu_image::PageRead::open(
        &images,
        criu_image::PagemapTarget::Shmem(u64::from(inodes[0].shmid)),
    )
    .unwrap()
    .unwrap();
    let mut page = vec![0u8; 4096];
    read.read_pages(4096, &mut page).unwrap();
    assert_eq!(&page[..4], b"abcd");
    let read = criu_image::PageRead::open(
        &images,
        criu_image::PagemapTarget::Shmem(u64::from(inodes[1].shmid)),
    )
    .unwrap()
    .unwrap();
    let mut two = vec![0u8; 8192];
    read.read_pages(0, &mut two).unwrap();
    assert!(two[..5000].iter().all(|b| *b == b'x') && two[5000..].iter().all(|b| *b == 0));
    // The mapping refers to a MEMFD file entry.
    let mm: Vec<criu_proto::MmEntry> = read_entries(dir.path(), ImageKind::Mm, pid as u64);
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let vma = mm[0]
        .vmas
        .iter()
        .find(|v| v.status & (1 << 14) != 0)
        .expect("memfd VMA");
    assert_eq!(vma.status, 1 | (1 << 7) | (1 << 14));
    assert!(file_by_id(&files, vma.shmid as u32).memfd.is_some());
    for name in file_names(dir.path()) {
        if !name.starts_with("pages-") {
            crit_decode(&dir.path().join(name));
        }
    }
}

#[test]
fn anonymous_inode_files() {
    let work = tempfile::tempdir().unwrap();
    let prog = compile_program("anon_fds.c", work.path());
    let (mut child, line) =
        spawn_reading_first_line(session_command().arg(&prog).arg(work.path()), Stdio::null());
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let fdinfo = fdinfo_of(dir.path(), 2);
    let at = |fd: u32| file_by_id(&files, fdinfo.iter().find(|f| f.fd == fd).unwrap().id);
    let plain = at(3).efd.as_ref().unwrap();
    assert_eq!(plain.counter, 42);
    assert_eq!(plain.flags, (libc::O_RDWR | libc::O_NONBLOCK) as u32);
    // EFD_SEMAPHORE rides in `flags` (see criu_dump::files::EVENTFD_SEMAPHORE_FLAG).
    let sem = at(8).efd.as_ref().unwrap();
    assert_eq!(sem.counter, 3);
    assert_eq!(
        sem.flags,
        (libc::O_RDWR | libc::O_NONBLOCK | libc::EFD_SEMAPHORE) as u32
    );
    assert_eq!(
        criu_dump::files::EVENTFD_SEMAPHORE_FLAG,
        libc::EFD_SEMAPHORE as u32
    );
    // Fired periodic timers are dumped re-armed: the real time to the next
    // expiry, the missed periods as unread ticks.
    let slow = at(9).tfd.as_ref().unwrap();
    assert_eq!((slow.isec, slow.insec, slow.ticks), (30, 0, 1));
    assert!(slow.vsec >= 28 && slow.vsec < 30, "{slow:?}");
    let fast = at(10).tfd.as_ref().unwrap();
    assert_eq!((fast.isec, fast.insec), (0, 10_000_000));
    assert!(fast.ticks >= 9, "{fast:?}");
    assert!(
        fast.vsec == 0 && fast.vnsec > 0 && fast.vnsec <= 10_000_000,
        "{fast:?}"
    );
    assert_eq!(at(4).sgfd.as_ref().unwrap().sigmask, (1 << 9) | (1 << 11));
    let t = at(5).tfd.as_ref().unwrap();
    assert_eq!((t.clockid, t.isec, t.insec), (1, 7, 0));
    assert!(t.vsec >= 90 && t.vsec <= 100);
    let ep = at(6).epfd.as_ref().unwrap();
    let tfds: Vec<(u32, u64)> = ep.tfd.iter().map(|t| (t.tfd, t.data)).collect();
    assert!(tfds.contains(&(3, 0x1234)) && tfds.contains(&(5, 0x5678)));
    let ify = at(7).ify.as_ref().unwrap();
    assert_eq!(ify.wd.len(), 1);
    assert_eq!(ify.wd[0].mask & 0x300, 0x300);
    assert_eq!(ify.wd[0].f_handle.handle.len(), 16);
    assert_eq!(
        ify.wd[0].f_handle.path.as_deref(),
        Some(work.path().to_str().unwrap())
    );
    crit_decode(&dir.path().join("files.img"));
    // Still running, counter untouched.
    assert_ne!(proc_state(pid), 'T');
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn unlinked_files_become_ghosts_and_fifos_keep_their_data() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display();
    let script = format!(
        r#"
import os, time, mmap
small = os.open('{w}/small', os.O_RDWR | os.O_CREAT, 0o640)
os.write(small, b'ghost data'); os.unlink('{w}/small')
big = os.open('{w}/big', os.O_RDWR | os.O_CREAT, 0o600)
os.pwrite(big, b'A' * 4096, 0); os.pwrite(big, b'B' * 4096, 16384); os.unlink('{w}/big')
m = os.open('{w}/mapped', os.O_RDWR | os.O_CREAT, 0o600)
os.write(m, b'M' * 4096)
mm = mmap.mmap(m, 4096, mmap.MAP_SHARED)
os.close(m); os.unlink('{w}/mapped')
os.mkfifo('{w}/fifo')
f = os.open('{w}/fifo', os.O_RDWR)
os.write(f, b'fifo bytes')
print('ready', flush=True)
time.sleep(1000)
"#
    );
    let child = python_session(&script);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let remaps: Vec<criu_proto::RemapFilePathEntry> =
        read_entries(dir.path(), ImageKind::RemapFpath, 0);
    // small, big, and the mapped file twice (the mapping and python's dup of its fd).
    assert_eq!(remaps.len(), 4);
    let mut ghost_ids: Vec<u32> = remaps.iter().map(|r| r.remap_id).collect();
    ghost_ids.sort();
    ghost_ids.dedup();
    assert_eq!(ghost_ids.len(), 3, "one ghost per unlinked inode");
    let images = criu_image::ImageDir::open(dir.path()).unwrap();
    for r in &remaps {
        assert_eq!(r.remap_type, Some(1));
        let reg = file_by_id(&files, r.orig_id).reg.as_ref().unwrap();
        let mut g = images
            .reader(ImageKind::GhostFile, u64::from(r.remap_id))
            .unwrap();
        let ghost: criu_proto::GhostFileEntry = g.next_entry().unwrap().unwrap();
        if reg.name.ends_with("/small") {
            assert_eq!(ghost.mode & 0o777, 0o640);
            assert_eq!(ghost.chunks, None);
            assert_eq!(g.read_to_end().unwrap(), b"ghost data");
        } else if reg.name.ends_with("/big") {
            assert_eq!((ghost.chunks, ghost.size), (Some(true), Some(20480)));
            let mut content = vec![0u8; 20480];
            while let Some(c) = g.next_entry::<criu_proto::GhostChunkEntry>().unwrap() {
                let data = g.read_extra(c.len).unwrap();
                content[c.off as usize..(c.off + c.len) as usize].copy_from_slice(&data);
            }
            assert!(content[..4096].iter().all(|b| *b == b'A'));
            assert!(content[16384..].iter().all(|b| *b == b'B'));
            assert!(content[4096..16384].iter().all(|b| *b == 0));
        } else {
            assert!(reg.name.ends_with("/mapped"), "{}", reg.name);
            assert_eq!(g.read_to_end().unwrap(), vec![b'M'; 4096]);
        }
        assert!(!reg.name.contains("deleted"));
        crit_decode(&dir.path().join(format!("ghost-file-{:x}.img", r.remap_id)));
    }
    let fifo = files
        .iter()
        .find_map(|f| f.fifo.as_ref())
        .expect("fifo entry");
    let regf = file_by_id(&files, fifo.regf_id.unwrap())
        .reg
        .as_ref()
        .unwrap();
    assert_eq!(regf.name, format!("{w}/fifo"));
    let mut r = images.reader(ImageKind::FifoData, 0).unwrap();
    let pd: PipeDataEntry = r.next_entry().unwrap().unwrap();
    assert_eq!(pd.pipe_id, fifo.pipe_id);
    assert_eq!(r.read_extra(u64::from(pd.bytes)).unwrap(), b"fifo bytes");
    for name in ["files.img", "remap-fpath.img", "fifo-data.img"] {
        crit_decode(&dir.path().join(name));
    }
    reap(child);
}

#[test]
fn a_pty_slave_needs_shell_job_and_is_dumped_like_criu() {
    // A pty pair: the task gets the slave as stdin; the master stays with us.
    let master = nix::pty::posix_openpt(
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
    )
    .unwrap();
    nix::pty::grantpt(&master).unwrap();
    nix::pty::unlockpt(&master).unwrap();
    let slave_name = nix::pty::ptsname_r(&master).unwrap();
    let index: u32 = slave_name.trim_start_matches("/dev/pts/").parse().unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_name)
        .unwrap();
    let mut child = session_command()
        .args(["/usr/bin/sleep", "1000"])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_until(|| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.ends_with("sleep"))
            .unwrap_or(false)
    });
    let dir = tempfile::tempdir().unwrap();
    let err = dump_to(pid, dir.path(), |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Found slave peer index {index} without correspond master peer.")
    );
    assert!(!dir.path().join("inventory.img").exists());
    assert_ne!(proc_state(pid), 'T');

    dump_to(pid, dir.path(), |o| o.shell_job = true).expect("dump with shell_job");
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let fdinfo = fdinfo_of(dir.path(), 2);
    let tty_fd = fdinfo.iter().find(|f| f.fd == 0).unwrap();
    assert_eq!(tty_fd.r#type, FdTypes::Tty as i32);
    let tty = file_by_id(&files, tty_fd.id).tty.as_ref().unwrap();
    assert_eq!(tty.tty_info_id, index << 1);
    let reg = file_by_id(&files, tty.regf_id.unwrap())
        .reg
        .as_ref()
        .unwrap();
    assert_eq!(reg.name, slave_name);
    let infos: Vec<criu_proto::TtyInfoEntry> = read_entries(dir.path(), ImageKind::TtyInfo, 0);
    assert_eq!(infos.len(), 1);
    let info = &infos[0];
    assert_eq!(
        (info.id, info.r#type, info.pty.map(|p| p.index)),
        (index << 1, 1, Some(index))
    );
    // Not its controlling terminal (setsid without TIOCSCTTY): no session.
    assert_eq!((info.sid, info.pgrp), (0, 0));
    assert_eq!(info.termios.as_ref().unwrap().c_cc.len(), 19);
    crit_decode(&dir.path().join("tty-info.img"));
    crit_decode(&dir.path().join("files.img"));
    let _ = child.kill();
    let _ = child.wait();
    drop(master);
}

#[test]
fn file_locks_are_refused_with_criu_advice() {
    let work = tempfile::tempdir().unwrap();
    let script = format!(
        "import fcntl,time\nf=open('{}/locked','w')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('ready',flush=True)\ntime.sleep(1000)\n",
        work.path().display()
    );
    let child = python_session(&script);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let err = dump_to(pid, dir.path(), |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("Some file locks are hold by dumping tasks")
            && msg.contains(&format!("pid {pid}")),
        "{msg}"
    );
    assert!(msg.contains("--file-locks"));
    let err = dump_to(pid, dir.path(), |o| o.file_locks = true).unwrap_err();
    assert!(err.to_string().contains("file lock"), "{err}");
    assert_ne!(proc_state(pid), 'T');
    reap(child);
}

#[test]
fn inet_listeners_and_datagram_sockets_connected_tcp_refused() {
    let script = r#"
import socket, time
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(7)
l6 = socket.socket(socket.AF_INET6); l6.bind(('::1', 0)); l6.listen(3)
c = socket.socket()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u2.connect(('127.0.0.1', 9))
print('ready', l.getsockname()[1], flush=True)
time.sleep(1000)
"#;
    let (child, line) = spawn_reading_first_line(
        session_command().args(["/usr/bin/python3", "-c", script]),
        Stdio::null(),
    );
    let port: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| o.leave_running = true).expect("dump");
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let isk: Vec<_> = files.iter().filter_map(|f| f.isk.as_ref()).collect();
    assert_eq!(isk.len(), 5);
    let l = isk.iter().find(|s| s.src_port == port).expect("listener");
    assert_eq!(
        (l.family, l.r#type, l.proto, l.state, l.backlog),
        (2, 1, 6, 10, 7)
    );
    assert_eq!(l.src_addr, vec![u32::from_le_bytes([127, 0, 0, 1])]);
    assert_eq!(l.ns_id, Some(2));
    let l6 = isk.iter().find(|s| s.family == 10).unwrap();
    // Binding to a specific IPv6 address makes the kernel set v6only.
    assert_eq!(
        (l6.state, l6.v6only, l6.src_addr.len()),
        (10, Some(true), 4)
    );
    let unbound = isk.iter().find(|s| s.proto == 6 && s.state == 7).unwrap();
    assert_eq!((unbound.src_port, unbound.ns_id), (0, None));
    let connected_udp = isk
        .iter()
        .find(|s| s.proto == 17 && s.dst_port == 9)
        .unwrap();
    assert_eq!(connected_udp.state, 1);
    crit_decode(&dir.path().join("files.img"));
    reap(child);

    // An established connection needs TCP repair: refused by name.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let script = format!(
        "import socket,time\ns=socket.create_connection(('127.0.0.1',{}))\nprint('ready',flush=True)\ntime.sleep(1000)\n",
        addr.port()
    );
    let child = python_session(&script);
    let (_conn, _) = server.accept().unwrap();
    let pid = child.id() as i32;
    let err = dump_to(pid, dir.path(), |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("connected TCP socket")
            && err.to_string().contains(&format!("pid {pid}")),
        "{err}"
    );
    assert_ne!(proc_state(pid), 'T');
    reap(child);
}

#[test]
fn established_tcp_with_tcp_established_is_dumped_in_repair_mode_and_released() {
    let work = tempfile::tempdir().unwrap();
    let alive = work.path().join("alive");
    let script = format!(
        r#"
import socket, time
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
c = socket.create_connection(l.getsockname())
s, _ = l.accept()
c.send(b'hello from client')
print('ready', flush=True)
i = 0
while True:
    time.sleep(0.02)
    assert s.recv(17, socket.MSG_PEEK) == b'hello from client'
    c.send(b'x'); s.send(b'y')
    assert c.recv(1) == b'y'
    i += 1
    open('{a}.tmp', 'w').write(str(i)); __import__('os').rename('{a}.tmp', '{a}')
"#,
        a = alive.display()
    );
    let child = python_session(&script);
    let pid = child.id() as i32;
    let count = || {
        std::fs::read_to_string(&alive)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until(|| count() > 2);
    let dir = tempfile::tempdir().unwrap();
    dump_to(pid, dir.path(), |o| {
        o.tcp_established = true;
        o.leave_running = true;
    })
    .expect("dump");
    // Repair mode was switched off: the connection keeps working.
    let before = count();
    wait_until(|| count() > before + 5);
    let files: Vec<FileEntry> = read_entries(dir.path(), ImageKind::Files, 0);
    let connected: Vec<_> = files
        .iter()
        .filter_map(|f| f.isk.as_ref())
        .filter(|s| s.dst_port != 0)
        .collect();
    assert_eq!(connected.len(), 2);
    let images = criu_image::ImageDir::open(dir.path()).unwrap();
    let mut queued = Vec::new();
    for s in &connected {
        assert_eq!(s.state, 1);
        let mut r = images
            .reader(ImageKind::TcpStream, u64::from(s.ino))
            .unwrap();
        let e: criu_proto::TcpStreamEntry = r.next_entry().unwrap().unwrap();
        let inq = r.read_extra(u64::from(e.inq_len)).unwrap();
        queued.push(inq);
        crit_decode(&dir.path().join(format!("tcp-stream-{:x}.img", s.ino)));
    }
    assert!(
        queued.iter().any(|q| q.starts_with(b"hello from client")),
        "{queued:?}"
    );
    let inv: Vec<criu_proto::InventoryEntry> = read_entries(dir.path(), ImageKind::Inventory, 0);
    assert_eq!(inv[0].network_lock_method, Some(2), "no lock taken: skip");
    reap(child);
}
