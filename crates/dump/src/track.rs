//! Dirty-memory tracking for incremental dumps, with userfaultfd write-protection in async mode
//! and PAGEMAP_SCAN (these kernels have no soft-dirty; KERNEL.md, "Incremental dumps").
//!
//! - **Setting up** (pre-dump, per live process, while frozen): injected
//!   `userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)` (user-mode-only so that
//!   unprivileged targets work with `vm.unprivileged_userfaultfd = 0`; async write-protect faults
//!   never reach the fault handler, so writes by the kernel on the task's behalf, e.g. `read()`
//!   into tracked memory, are tracked too), `UFFDIO_API` with `WP_ASYNC | WP_UNPOPULATED`, and
//!   `UFFDIO_REGISTER(MODE_WP)` over every VMA whose private pages are dumped (the ioctls only
//!   work from inside the target). A VMA the kernel refuses (EBUSY: the application uses uffd on
//!   it itself) stays untracked and is always dumped whole. The fd is then moved to us
//!   (pidfd_getfd) and closed in the target, and a PAGEMAP_SCAN `WP_MATCHING` pass arms it. A
//!   process whose VMAs are already tracked gets one more uffd for its new VMAs only.
//! - **Between iterations** the uffds must stay open (closing the last reference drops
//!   tracking). A pre-dump ends by forking a **keeper** process that holds them, plus a pidfd
//!   per process, and listens on the abstract unix socket `criu-rs-track/<dev>/<ino>` of its
//!   images directory. It hands everything to the first connection from its own uid and exits;
//!   it also exits when every tracked process is gone, or after [`KEEPER_TIMEOUT`].
//! - **Using it**: a pre-dump or dump with a parent connects to the parent directory's keeper.
//!   For each process still there (same pidfd), a page present now becomes a PE_PARENT hole
//!   when it lies in a VMA we track, was not written since the previous iteration, and is
//!   present in the parent's pagemap (data or PE_PARENT); every other present page is written.
//!   No keeper (first iteration, timed out, another machine, a page server) means a full dump.
//!
//! Only private memory is tracked: shared memory (memfd, shared anonymous) is written whole at
//! every iteration.

use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use criu_compel::{FrozenTask, RemoteSession};
use criu_image::{ImageDir, PagemapReader, PagemapTarget, PE_PARENT, PE_PRESENT};
use criu_pages::{
    intersect_ranges, subtract_ranges, PageRange, Pagemap, VmFlags, Vma, VmaKind, PAGE_SIZE,
};

use crate::sys::keeper::{self, KeeperPlan};
use crate::DumpError;

/// How long a keeper waits for the next iteration before it drops tracking.
pub const KEEPER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// SCM_RIGHTS carries at most 253 fds per message; the keeper sends them in batches of this.
const FDS_PER_MESSAGE: usize = 250;
/// Bytes of payload per message.
const DATA_PER_MESSAGE: usize = 32 * 1024;
/// How long we wait for a keeper's answer.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);
const MAGIC: &[u8; 8] = b"CRIURSK1";

/// userfaultfd(2) flag: only faults from user mode are handled (no privilege needed).
const UFFD_USER_MODE_ONLY: u64 = 1;
const UFFD_API: u64 = 0xaa;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: u64 = 0xc018_aa3f;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: u64 = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;

/// The tracking state of one process.
#[derive(Debug)]
struct Process {
    pidfd: OwnedFd,
    uffds: Vec<OwnedFd>,
    /// Registered address ranges (the extents of the VMAs last seen registered), sorted.
    ranges: Vec<PageRange>,
}

/// Tracking state of a tree: what the parent's keeper handed over, plus what this iteration
/// registers. Dropping it closes every uffd, which ends tracking.
#[derive(Debug, Default)]
pub struct Tracking {
    processes: BTreeMap<i32, Process>,
    /// The parent images directory, when a keeper handed tracking over.
    parent: Option<ImageDir>,
}

/// The abstract socket name (without the leading NUL) of the keeper for `dir`.
pub fn keeper_name(dir: &ImageDir) -> std::io::Result<String> {
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()))?;
    Ok(format!("criu-rs-track/{}/{}", meta.dev(), meta.ino()))
}

/// A new close-on-exec unix SOCK_SEQPACKET socket (the keeper's transport).
fn seqpacket_socket() -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn connect(name: &str) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{connect, UnixAddr};
    let sock = seqpacket_socket()?;
    connect(sock.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
    nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(RECEIVE_TIMEOUT.as_secs() as i64, 0),
    )?;
    Ok(sock)
}

/// Whether a keeper listens for `dir` (tests, diagnostics), from /proc/net/unix: connecting
/// would make it hand everything over.
pub fn keeper_listening(dir: &ImageDir) -> bool {
    let Ok(name) = keeper_name(dir) else {
        return false;
    };
    let wanted = format!("@{name}");
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split_whitespace().nth(7) == Some(wanted.as_str()))
}

/// One message from the keeper: its bytes and the fds it carried.
fn receive(sock: &OwnedFd) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; DATA_PER_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            fds.extend(raw.into_iter().map(keeper::own_received));
        }
    }
    let len = msg.bytes;
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    if truncated {
        return Err(std::io::Error::other("keeper message truncated"));
    }
    buf.truncate(len);
    Ok((buf, fds))
}

impl Tracking {
    /// No tracking (full dump); new registrations may be added by a pre-dump.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes tracking over from the keeper of `images`' parent directory (the `parent` link must
    /// exist). Anything missing or broken means no tracking: a full dump, logged, never an
    /// error.
    pub fn from_parent_keeper(images: &ImageDir) -> Self {
        let parent = match images.parent() {
            Ok(Some(parent)) => parent,
            Ok(None) => return Self::new(),
            Err(e) => {
                tracing::info!("No memory tracking: cannot open the parent images: {e}");
                return Self::new();
            }
        };
        match Self::receive_from(&parent) {
            Ok(Some(mut tracking)) => {
                tracing::info!(
                    "Memory tracking handed over for {} processes",
                    tracking.processes.len()
                );
                tracking.parent = Some(parent);
                tracking
            }
            Ok(None) => {
                tracing::info!(
                    "No memory tracking for the parent images (no keeper): dumping every page"
                );
                Self::new()
            }
            Err(e) => {
                tracing::info!("No memory tracking: the parent's keeper failed: {e}");
                Self::new()
            }
        }
    }

    /// Connects to the keeper of `dir` and receives its state; `None` when nobody listens.
    fn receive_from(dir: &ImageDir) -> std::io::Result<Option<Self>> {
        let name = keeper_name(dir)?;
        let sock = match connect(&name) {
            Ok(sock) => sock,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNREFUSED) | Some(libc::ENOENT)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut data = Vec::new();
        let mut fds = Vec::new();
        let mut wanted_data = None;
        let mut wanted_fds = 0usize;
        loop {
            if let Some(total) = wanted_data {
                if data.len() >= total && fds.len() >= wanted_fds {
                    break;
                }
            }
            let (bytes, got) = receive(&sock)?;
            if bytes.is_empty() && got.is_empty() {
                return Err(std::io::Error::other(
                    "the keeper closed the connection early (refused?)",
                ));
            }
            if wanted_data.is_some_and(|total| data.len() >= total) {
                fds.extend(got);
                continue;
            }
            data.extend_from_slice(&bytes);
            fds.extend(got);
            if wanted_data.is_none() && data.len() >= 24 {
                if &data[..8] != MAGIC {
                    return Err(std::io::Error::other("not a keeper"));
                }
                wanted_data = Some(u64_at(&data, 8) as usize);
                wanted_fds = u64_at(&data, 16) as usize;
            }
        }
        let mut tracking = decode(&data, fds)?;
        // A process that died (its pid may be reused) is no longer the one we tracked.
        tracking
            .processes
            .retain(|_, process| !keeper::pidfd_exited(&process.pidfd));
        Ok(Some(tracking))
    }

    /// Keeps only the processes in `pids` (the frozen tree); the others' uffds are closed.
    pub fn retain_pids(&mut self, pids: &[i32]) {
        self.processes.retain(|pid, _| pids.contains(pid));
    }

    /// Whether anything is tracked.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// The present pages of `pid` that can be left in the parent (PE_PARENT holes): in a VMA we
    /// track, not written since the last iteration, and present in the parent's pagemap.
    /// `rearm` write-protects the written pages again (pre-dumps). Updates the registered ranges
    /// to the VMAs found registered.
    pub fn parent_holes(
        &mut self,
        pid: i32,
        vmas: &[Vma],
        present: &[PageRange],
        rearm: bool,
    ) -> Result<Vec<PageRange>, DumpError> {
        let Some(process) = self.processes.get_mut(&pid) else {
            return Ok(Vec::new());
        };
        let pagemap = Pagemap::open(pid).map_err(|source| DumpError::Pages {
            pid,
            what: "opening its pagemap".into(),
            source: Box::new(source),
        })?;
        let mut tracked = Vec::new();
        let mut written = Vec::new();
        for vma in vmas.iter().filter(|vma| is_ours(vma, &process.ranges)) {
            match pagemap.written_ranges(std::slice::from_ref(vma), rearm) {
                Ok(ranges) => {
                    written.extend(ranges);
                    tracked.push(PageRange::new(vma.start, vma.len() / PAGE_SIZE));
                }
                // Not ours after all (another uffd on a reused range): dump it whole.
                Err(e) => tracing::info!("Not using tracking for {pid}: {e}"),
            }
        }
        process.ranges = tracked.clone();
        let Some(parent) = &self.parent else {
            return Ok(Vec::new());
        };
        let in_parent = parent_pages(parent, pid)?;
        let candidates = intersect_ranges(&intersect_ranges(present, &tracked), &in_parent);
        Ok(subtract_ranges(&candidates, &written))
    }

    /// Registers every trackable VMA of the frozen `task` that is not tracked yet with a new
    /// uffd made inside the task, and arms it. Refused VMAs stay untracked; a task where nothing
    /// can be registered stays untracked (logged).
    pub fn register_new(&mut self, task: &mut FrozenTask, vmas: &[Vma]) -> Result<(), DumpError> {
        let pid = task.pid;
        let known = self
            .processes
            .get(&pid)
            .map(|p| p.ranges.clone())
            .unwrap_or_default();
        let candidates: Vec<&Vma> = vmas
            .iter()
            .filter(|vma| trackable(vma) && !is_ours(vma, &known))
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let Some(tracee) = task.threads.first_mut() else {
            return Ok(());
        };
        let compel = |what: &str| {
            let what = what.to_string();
            move |source| DumpError::Compel {
                pid,
                what: what.clone(),
                source,
            }
        };
        let mut session = RemoteSession::new(tracee)
            .map_err(compel("starting remote syscalls to track memory"))?;
        let result = register_in(&mut session, &candidates);
        session
            .close()
            .map_err(compel("ending remote syscalls after tracking setup"))?;
        let Some((uffd, registered)) = result.map_err(compel("setting up memory tracking"))? else {
            return Ok(());
        };
        // Arm: write-protect everything registered, so only later writes show up.
        let armed: Vec<Vma> = vmas
            .iter()
            .filter(|vma| registered.contains(&(vma.start, vma.end)))
            .cloned()
            .collect();
        let pagemap = Pagemap::open(pid).map_err(|source| DumpError::Pages {
            pid,
            what: "opening its pagemap".into(),
            source: Box::new(source),
        })?;
        pagemap
            .written_ranges(&armed, true)
            .map_err(|source| DumpError::Pages {
                pid,
                what: "arming memory tracking".into(),
                source: Box::new(source),
            })?;
        let mut process = match self.processes.remove(&pid) {
            Some(process) => process,
            None => match keeper::pidfd_open(pid) {
                Ok(pidfd) => Process {
                    pidfd,
                    uffds: Vec::new(),
                    ranges: Vec::new(),
                },
                Err(e) => {
                    // Dropping `uffd` unregisters everything again.
                    tracing::warn!("Memory of {pid} is not tracked: pidfd_open: {e}");
                    return Ok(());
                }
            },
        };
        process.uffds.push(uffd);
        process.ranges.extend(
            registered
                .iter()
                .map(|&(start, end)| PageRange::new(start, (end - start) / PAGE_SIZE)),
        );
        process.ranges.sort();
        self.processes.insert(pid, process);
        Ok(())
    }

    /// Starts the keeper of `images` with every uffd (pre-dump success). Failing to start it
    /// only loses tracking (the next dump is full): logged, not an error. An older keeper of
    /// the same directory is drained first.
    pub fn hand_to_keeper(self, images: &ImageDir) {
        if self.processes.is_empty() {
            return;
        }
        if let Err(e) = self.start_keeper(images) {
            tracing::warn!("Cannot keep memory tracking for the next dump: {e}");
        }
    }

    fn start_keeper(self, images: &ImageDir) -> std::io::Result<()> {
        let name = keeper_name(images)?;
        let listener = bind_listener(&name)?;
        let (data, fds, pidfds) = self.encode();
        let plan = KeeperPlan::new(
            listener,
            &data,
            DATA_PER_MESSAGE,
            fds,
            FDS_PER_MESSAGE,
            &pidfds,
            KEEPER_TIMEOUT,
        )?;
        keeper::spawn_keeper(plan)?;
        tracing::info!("Memory tracking kept by a keeper at @{name}");
        Ok(())
    }

    /// Header (magic, payload length, fd count), then per process: pid, uffd count, range
    /// count, ranges as (start, end). The fds follow in process order: pidfd, then uffds.
    fn encode(self) -> (Vec<u8>, Vec<OwnedFd>, Vec<RawFd>) {
        let mut body = Vec::new();
        let mut fds = Vec::new();
        let mut pidfds = Vec::new();
        for (pid, process) in self.processes {
            put(&mut body, pid as u64);
            put(&mut body, process.uffds.len() as u64);
            put(&mut body, process.ranges.len() as u64);
            for range in &process.ranges {
                put(&mut body, range.start);
                put(&mut body, range.end());
            }
            pidfds.push(process.pidfd.as_raw_fd());
            fds.push(process.pidfd);
            fds.extend(process.uffds);
        }
        let mut data = Vec::with_capacity(body.len() + 24);
        data.extend_from_slice(MAGIC);
        put(&mut data, (body.len() + 24) as u64);
        put(&mut data, fds.len() as u64);
        data.extend_from_slice(&body);
        (data, fds, pidfds)
    }
}

fn put(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn u64_at(data: &[u8], offset: usize) -> u64 {
    data.get(offset..offset + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0)
}

fn decode(data: &[u8], fds: Vec<OwnedFd>) -> std::io::Result<Tracking> {
    let bad = || std::io::Error::other("malformed keeper payload");
    let mut fds = fds.into_iter();
    let mut offset = 24;
    let mut processes = BTreeMap::new();
    let next = |offset: &mut usize| -> std::io::Result<u64> {
        if *offset + 8 > data.len() {
            return Err(bad());
        }
        let value = u64_at(data, *offset);
        *offset += 8;
        Ok(value)
    };
    while offset < data.len() {
        let pid = next(&mut offset)? as i32;
        let nr_uffds = next(&mut offset)? as usize;
        let nr_ranges = next(&mut offset)? as usize;
        let mut ranges = Vec::with_capacity(nr_ranges.min(1 << 16));
        for _ in 0..nr_ranges {
            let start = next(&mut offset)?;
            let end = next(&mut offset)?;
            if end <= start || start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
                return Err(bad());
            }
            ranges.push(PageRange::new(start, (end - start) / PAGE_SIZE));
        }
        let pidfd = fds.next().ok_or_else(bad)?;
        let uffds: Vec<OwnedFd> = (0..nr_uffds)
            .map(|_| fds.next().ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        processes.insert(
            pid,
            Process {
                pidfd,
                uffds,
                ranges,
            },
        );
    }
    Ok(Tracking {
        processes,
        parent: None,
    })
}

/// A bound, listening SOCK_SEQPACKET socket at the abstract `name`; an older keeper there is
/// drained (its fds received and closed) so that it exits.
fn bind_listener(name: &str) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{bind, listen, Backlog, UnixAddr};
    let addr = UnixAddr::new_abstract(name.as_bytes())?;
    for _ in 0..3 {
        let sock = seqpacket_socket()?;
        match bind(sock.as_raw_fd(), &addr) {
            Ok(()) => {
                listen(&sock, Backlog::new(16)?)?;
                return Ok(sock);
            }
            Err(nix::errno::Errno::EADDRINUSE) => {
                if let Ok(sock) = connect(name) {
                    // Whatever it sends is closed on arrival; errors only mean it is gone.
                    let _ = drain_all(&sock);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::other(format!(
        "another keeper holds @{name} and does not let go"
    )))
}

fn drain_all(sock: &OwnedFd) -> std::io::Result<()> {
    loop {
        let (bytes, fds) = receive(sock)?;
        if bytes.is_empty() && fds.is_empty() {
            return Ok(());
        }
    }
}

/// A VMA whose private pages are dumped and can be registered (not the vdso/vvar).
fn trackable(vma: &Vma) -> bool {
    vma.dumps_private_pages()
        && !vma.dumps_entire_vma()
        && !matches!(vma.kind, VmaKind::Vvar | VmaKind::Vsyscall)
}

/// A trackable VMA registered for uffd-wp that overlaps what we registered (it may have grown,
/// e.g. the heap).
fn is_ours(vma: &Vma, ranges: &[PageRange]) -> bool {
    trackable(vma)
        && vma.vm_flags.contains(VmFlags::UFFD_WP)
        && ranges
            .iter()
            .any(|range| range.start < vma.end && vma.start < range.end())
}

/// The pages the parent's pagemap of `pid` holds (data or PE_PARENT), merged and sorted.
fn parent_pages(parent: &ImageDir, pid: i32) -> Result<Vec<PageRange>, DumpError> {
    let mut out: Vec<PageRange> = Vec::new();
    let Some(mut reader) = PagemapReader::open(parent, PagemapTarget::Process(pid as u32))? else {
        return Ok(out);
    };
    while let Some(run) = reader.next_run()? {
        if run.flags & (PE_PRESENT | PE_PARENT) == 0 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end() == run.vaddr => last.nr_pages += run.nr_pages,
            _ => out.push(PageRange::new(run.vaddr, run.nr_pages)),
        }
    }
    Ok(out)
}

/// A uffd moved out of a task and the (start, end) of the VMAs registered with it.
type Registration = (OwnedFd, Vec<(u64, u64)>);

/// In the target: creates a uffd, enables async WP, registers `vmas` (skipping refused ones),
/// and moves the fd to us. `None` when the kernel or the task refuses tracking altogether.
fn register_in(
    session: &mut RemoteSession<'_>,
    vmas: &[&Vma],
) -> Result<Option<Registration>, criu_compel::CompelError> {
    let pid = session.tracee().tgid();
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64 | UFFD_USER_MODE_ONLY;
    let fd = session.syscall_raw(libc::SYS_userfaultfd, [flags, 0, 0, 0, 0, 0])?;
    if fd < 0 {
        tracing::info!(
            "Memory of {pid} is not tracked: userfaultfd failed ({})",
            std::io::Error::from_raw_os_error(-fd as i32)
        );
        return Ok(None);
    }
    let result = (|| {
        let mut api = Vec::with_capacity(24);
        put(&mut api, UFFD_API);
        put(
            &mut api,
            UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
        );
        put(&mut api, 0);
        let addr = session.scratch_write(0, &api)?;
        let ret = session.syscall_raw(libc::SYS_ioctl, [fd as u64, UFFDIO_API, addr, 0, 0, 0])?;
        if ret < 0 {
            tracing::info!(
                "Memory of {pid} is not tracked: UFFDIO_API failed ({})",
                std::io::Error::from_raw_os_error(-ret as i32)
            );
            return Ok(None);
        }
        let mut registered = Vec::new();
        for vma in vmas {
            let mut arg = Vec::with_capacity(32);
            put(&mut arg, vma.start);
            put(&mut arg, vma.end - vma.start);
            put(&mut arg, UFFDIO_REGISTER_MODE_WP);
            put(&mut arg, 0);
            let addr = session.scratch_write(0, &arg)?;
            let ret = session
                .syscall_raw(libc::SYS_ioctl, [fd as u64, UFFDIO_REGISTER, addr, 0, 0, 0])?;
            if ret < 0 {
                tracing::info!(
                    "Not tracking {pid}'s mapping {:#x}-{:#x}: {}",
                    vma.start,
                    vma.end,
                    std::io::Error::from_raw_os_error(-ret as i32)
                );
                continue;
            }
            registered.push((vma.start, vma.end));
        }
        if registered.is_empty() {
            return Ok(None);
        }
        match session.steal_fd(fd as i32) {
            Ok(local) => Ok(Some((local, registered))),
            // E.g. EMFILE in a large tree: this process stays untracked (its uffd closes with
            // the target's copy below), the dump goes on.
            Err(e) => {
                tracing::warn!("Memory of {pid} is not tracked: {e}");
                Ok(None)
            }
        }
    })();
    // The target keeps no uffd: closing ours drops everything.
    let closed = session.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
    let result = result?;
    closed?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More fds than one SCM_RIGHTS message carries (253) go through the keeper in several
    /// messages, and what comes back decodes to the same processes and ranges.
    #[test]
    fn keeper_round_trip_with_more_fds_than_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let images = ImageDir::open(dir.path()).unwrap();
        let me = std::process::id() as i32;
        let mut tracking = Tracking::new();
        for pid in 1..=200 {
            let uffds = (0..2)
                .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap()))
                .collect();
            tracking.processes.insert(
                pid,
                Process {
                    pidfd: keeper::pidfd_open(me).unwrap(),
                    uffds,
                    ranges: vec![PageRange::new(pid as u64 * PAGE_SIZE * 16, pid as u64)],
                },
            );
        }
        tracking.start_keeper(&images).unwrap();
        assert!(keeper_listening(&images));
        let back = Tracking::receive_from(&images).unwrap().unwrap();
        assert_eq!(back.processes.len(), 200);
        for (pid, process) in &back.processes {
            assert_eq!(process.uffds.len(), 2);
            assert_eq!(
                process.ranges,
                vec![PageRange::new(*pid as u64 * PAGE_SIZE * 16, *pid as u64)]
            );
        }
        // It handed everything over and left.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while keeper_listening(&images) {
            assert!(std::time::Instant::now() < deadline, "the keeper stays");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(Tracking::receive_from(&images).unwrap().is_none());
    }
}
