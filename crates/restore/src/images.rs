//! Reading and validating every image of a dump before any process exists.
//!
//! [`load`] turns an images directory into [`RestoreImages`]: the process tree
//! in creation order, each task's cores, memory map, resolved page runs and
//! fds, and the global file table. Everything a later stage relies on is
//! checked here (magics and framing by criu-image; tree consistency, id
//! references, pagemap against pages sizes, supported kinds by this module), so
//! that a bad or unsupported dump is refused while nothing has been created.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;

use criu_image::{ImageDir, ImageError, ImageKind, ImageReader};
use criu_proto::{
    CoreEntry, FdTypes, FdinfoEntry, FileEntry, FsEntry, InventoryEntry, MemfdInodeEntry, MmEntry,
    PagemapEntry, PagemapHead, PipeDataEntry, PstreeEntry, RemapFilePathEntry, SeccompEntry,
    SeccompFilter, TaskKobjIdsEntry, VmaEntry,
};

/// Size of a page on x86_64.
pub(crate) const PAGE_SIZE: u64 = 4096;
/// The largest user address on x86_64 with 4-level paging (`TASK_SIZE`).
pub(crate) const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// `vma_entry.status` bits (CRIU's `VMA_*`).
pub(crate) mod status {
    pub const REGULAR: u32 = 1 << 0;
    pub const VSYSCALL: u32 = 1 << 2;
    pub const VDSO: u32 = 1 << 3;
    pub const FILE_PRIVATE: u32 = 1 << 6;
    pub const FILE_SHARED: u32 = 1 << 7;
    pub const ANON_SHARED: u32 = 1 << 8;
    pub const ANON_PRIVATE: u32 = 1 << 9;
    pub const SYSVIPC: u32 = 1 << 10;
    pub const SOCKET: u32 = 1 << 11;
    pub const VVAR: u32 = 1 << 12;
    pub const AIORING: u32 = 1 << 13;
    pub const MEMFD: u32 = 1 << 14;
    pub const SHSTK: u32 = 1 << 15;
    pub const GUARD: u32 = 1 << 16;
    pub const UPROBES: u32 = 1 << 17;
}

/// `pagemap_entry.flags` bits.
const PE_PARENT: u32 = 1;
const PE_LAZY: u32 = 2;
const PE_PRESENT: u32 = 4;

/// `task_core_entry.task_state` values.
const TASK_ALIVE: u32 = 1;
const TASK_DEAD: u32 = 2;
const TASK_STOPPED: u32 = 3;

/// `core_entry.mtype` of x86_64.
const MARCH_X86_64: i32 = 1;
/// `user_x86_regs_entry.mode` of a 32-bit task.
const REGS_MODE_COMPAT: i32 = 2;

/// The images could not be used: unreadable, inconsistent or unsupported.
#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    /// An image file could not be read or decoded (the message names file and offset).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An image is readable but its content is inconsistent.
    #[error("{file}: {reason}")]
    Invalid {
        /// The image file (with the directory label).
        file: String,
        /// What is wrong, naming the entry.
        reason: String,
    },
    /// The dump holds a state this restore cannot bring back yet.
    #[error("{file}: {what} is not supported by this restore yet")]
    Unsupported {
        /// The image file the state was found in.
        file: String,
        /// The entry and kind of state.
        what: String,
    },
    /// A pages image could not be inspected.
    #[error("{file}: {op}: {source}")]
    PagesIo {
        /// The pages file.
        file: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageLoadError {
    fn invalid(file: impl Into<String>, reason: impl Into<String>) -> ImageLoadError {
        ImageLoadError::Invalid {
            file: file.into(),
            reason: reason.into(),
        }
    }

    fn unsupported(file: impl Into<String>, what: impl Into<String>) -> ImageLoadError {
        ImageLoadError::Unsupported {
            file: file.into(),
            what: what.into(),
        }
    }
}

/// A pages image the page runs point into.
#[derive(Debug)]
pub(crate) struct PagesFile {
    /// Label for messages (`dir/pages-1.img`, `dir/parent/pages-1.img`).
    pub label: String,
    /// The open file (read-only).
    pub file: File,
}

/// A run of pages whose contents are contiguous in one pages file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRun {
    /// First virtual address.
    pub vaddr: u64,
    /// Number of pages.
    pub nr_pages: u64,
    /// Index into [`RestoreImages::pages_files`].
    pub file: usize,
    /// Byte offset of the first page in that file.
    pub offset: u64,
}

/// What a task of the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// A live task; `stopped` if it was in a group stop.
    Alive { stopped: bool },
    /// A zombie, with the raw wait status it exited with.
    Zombie { exit_code: u32 },
}

/// One seccomp filter to install with `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeccompInstall {
    /// The BPF program (`struct sock_filter` array).
    pub program: Vec<u8>,
    /// The flags to install it with (SECCOMP_FILTER_FLAG_*, e.g. TSYNC, LOG).
    pub flags: u32,
}

/// The largest BPF program the kernel accepts (BPF_MAXINSNS instructions of
/// 8 bytes each).
pub(crate) const SECCOMP_MAX_PROGRAM: usize = 4096 * 8;
const SECCOMP_MODE_STRICT: u32 = 1;
const SECCOMP_MODE_FILTER: u32 = 2;

/// Everything about one task (thread group) of the tree.
#[derive(Debug)]
pub(crate) struct TaskImages {
    /// The pid (in the dumped, and restored, pid namespace).
    pub pid: i32,
    /// Parent pid (0 for the root).
    pub ppid: i32,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Alive or zombie.
    pub state: TaskState,
    /// Thread ids, the leader first.
    pub tids: Vec<i32>,
    /// One core per thread, aligned with `tids` (the leader's carries `tc`).
    pub cores: Vec<CoreEntry>,
    /// Kernel object ids (which files table, fs, ... the task uses).
    pub ids: Option<TaskKobjIdsEntry>,
    /// Memory map (absent for zombies).
    pub mm: Option<MmEntry>,
    /// Page contents, sorted by address.
    pub pages: Vec<PageRun>,
    /// cwd/root/umask (absent for zombies).
    pub fs: Option<FsEntry>,
    /// The task's fds.
    pub fds: Vec<FdinfoEntry>,
    /// Per thread (aligned with `tids`), the seccomp filters to install,
    /// oldest first; empty for a thread without filters.
    pub seccomp: Vec<Vec<SeccompInstall>>,
}

impl TaskImages {
    /// The leader's core.
    pub fn leader_core(&self) -> &CoreEntry {
        &self.cores[0]
    }
}

/// Data queued in a pipe: the bytes and the pipe capacity if recorded.
pub(crate) type PipeData = (Vec<u8>, Option<u32>);

/// A validated dump, ready to be restored.
#[derive(Debug)]
pub(crate) struct RestoreImages {
    /// The tasks in pstree order (pre-order: every parent before its children).
    pub tasks: Vec<TaskImages>,
    /// Every file object of `files.img`, by id.
    pub files: BTreeMap<u32, FileEntry>,
    /// Queued pipe data by pipe inode.
    pub pipe_data: HashMap<u32, PipeData>,
    /// Ghost/linked remaps by original file id.
    pub remaps: HashMap<u32, RemapFilePathEntry>,
    /// The pages images page runs refer to.
    pub pages_files: Vec<PagesFile>,
    /// memfd and shared anonymous memory objects by inode id.
    pub memfds: HashMap<u32, MemfdInode>,
    /// Queued unix socket messages: (receiving socket file id, data), in order.
    pub sk_queues: Vec<(u32, Vec<u8>)>,
    /// Queued FIFO data by pipe inode.
    pub fifo_data: HashMap<u32, PipeData>,
    /// The dumped CLOCK_MONOTONIC and CLOCK_BOOTTIME (timens-0.img).
    pub timens: Option<criu_proto::TimensEntry>,
    /// Terminals (tty-info.img) by id.
    pub tty_infos: HashMap<u32, criu_proto::TtyInfoEntry>,
}

/// A memfd (or shared anonymous memory) object and its contents.
#[derive(Debug)]
pub(crate) struct MemfdInode {
    /// Name, size, owner, mode, seals.
    pub entry: MemfdInodeEntry,
    /// Contents; `vaddr` is the offset in the object.
    pub runs: Vec<PageRun>,
}

impl RestoreImages {
    /// The task with this pid.
    pub fn task(&self, pid: i32) -> Option<&TaskImages> {
        self.tasks.iter().find(|t| t.pid == pid)
    }
}

fn read_single<M: prost::Message + Default>(
    reader: &mut ImageReader,
) -> Result<Option<M>, ImageLoadError> {
    Ok(reader.next_entry::<M>()?)
}

fn fd_type_name(kind: i32) -> String {
    FdTypes::try_from(kind).map_or_else(
        |_| format!("fd type {kind}"),
        |t| t.as_str_name().to_string(),
    )
}

/// Reads and validates every image of the dump in `dir`.
pub(crate) fn load(dir: &ImageDir) -> Result<RestoreImages, ImageLoadError> {
    check_inventory(dir)?;

    let pstree_label = dir.label("pstree.img");
    let entries: Vec<PstreeEntry> = dir.reader_required(ImageKind::Pstree, 0)?.read_all()?;
    check_pstree(&pstree_label, &entries)?;

    let files = load_files(dir)?;
    let remaps = load_remaps(dir)?;
    let pipe_data = load_pipe_data(dir, ImageKind::PipesData)?;
    let fifo_data = load_pipe_data(dir, ImageKind::FifoData)?;
    let sk_queues = load_sk_queues(dir)?;
    let timens = dir
        .reader(ImageKind::Timens, 0)?
        .next_entry::<criu_proto::TimensEntry>()?;
    let seccomp_filters = load_seccomp(dir)?;
    let tty_infos: HashMap<u32, criu_proto::TtyInfoEntry> = dir
        .reader(ImageKind::TtyInfo, 0)?
        .read_all::<criu_proto::TtyInfoEntry>()?
        .into_iter()
        .map(|info| (info.id, info))
        .collect();

    let chain = dir.parent_chain()?;
    let mut pages = PagesLoader {
        chain: &chain,
        files: Vec::new(),
        opened: HashMap::new(),
        pagemaps: HashMap::new(),
    };
    let inventory_ids =
        read_single::<InventoryEntry>(&mut dir.reader_required(ImageKind::Inventory, 0)?)?
            .and_then(|inv| inv.root_ids);

    let mut memfds = HashMap::new();
    let memfd_label = dir.label("memfd.img");
    for entry in dir
        .reader(ImageKind::MemfdInode, 0)?
        .read_all::<MemfdInodeEntry>()?
    {
        let inode_id = u32::try_from(entry.inode_id).map_err(|_| {
            ImageLoadError::invalid(
                &memfd_label,
                format!("inode id {} is too large", entry.inode_id),
            )
        })?;
        let runs = pages.load_shmem(u64::from(entry.shmid), entry.size)?;
        if memfds
            .insert(inode_id, MemfdInode { entry, runs })
            .is_some()
        {
            return Err(ImageLoadError::invalid(
                &memfd_label,
                format!("inode id {inode_id} appears twice"),
            ));
        }
    }
    for file in files.values() {
        if let Some(memfd) = &file.memfd {
            if !memfds.contains_key(&memfd.inode_id) {
                return Err(ImageLoadError::invalid(
                    dir.label("files.img"),
                    format!(
                        "memfd file id {} refers to inode {}, which is not in memfd.img",
                        file.id, memfd.inode_id
                    ),
                ));
            }
        }
    }

    let mut tasks = Vec::with_capacity(entries.len());
    let mut seen_ids: HashMap<(&'static str, u32), i32> = HashMap::new();
    for entry in &entries {
        let mut task = load_task(dir, entry, &files, &mut pages, inventory_ids.as_ref())?;
        if let TaskState::Alive { .. } = task.state {
            task.seccomp = task
                .cores
                .iter()
                .zip(&task.tids)
                .map(|(core, &tid)| seccomp_chain(dir, &seccomp_filters, tid, core))
                .collect::<Result<_, _>>()?;
        }
        if let Some(ids) = &task.ids {
            for (name, id) in [
                ("files", ids.files_id),
                ("vm", ids.vm_id),
                ("fs", ids.fs_id),
                ("sighand", ids.sighand_id),
            ] {
                if let Some(other) = seen_ids.insert((name, id), task.pid) {
                    return Err(ImageLoadError::unsupported(
                        dir.label(&format!("ids-{}.img", task.pid)),
                        format!(
                            "a {name} table (id {id}) shared between pids {other} and {}",
                            task.pid
                        ),
                    ));
                }
            }
        }
        tasks.push(task);
    }
    Ok(RestoreImages {
        tasks,
        files,
        pipe_data,
        remaps,
        pages_files: pages.files,
        memfds,
        sk_queues,
        fifo_data,
        timens,
        tty_infos,
    })
}

fn check_inventory(dir: &ImageDir) -> Result<(), ImageLoadError> {
    let file = dir.label("inventory.img");
    let inventory =
        read_single::<InventoryEntry>(&mut dir.reader_required(ImageKind::Inventory, 0)?)?
            .ok_or_else(|| ImageLoadError::invalid(&file, "the inventory has no entry"))?;
    match inventory.img_version {
        2 => {}
        0 => {
            return Err(ImageLoadError::invalid(
                &file,
                "this is a pre-dump (img_version 0), which cannot be restored",
            ))
        }
        v => {
            return Err(ImageLoadError::unsupported(
                &file,
                format!("image version {v} (only version 2, CRIU v1.1 images)"),
            ))
        }
    }
    if inventory.fdinfo_per_id != Some(true) {
        return Err(ImageLoadError::unsupported(
            &file,
            "images without fdinfo_per_id (pre-1.x layout)",
        ));
    }
    Ok(())
}

fn check_pstree(file: &str, entries: &[PstreeEntry]) -> Result<(), ImageLoadError> {
    if entries.is_empty() {
        return Err(ImageLoadError::invalid(
            file,
            "the process tree has no entry",
        ));
    }
    let mut pids = HashSet::new();
    let mut tids = HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let pid = entry.pid;
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(ImageLoadError::invalid(
                file,
                format!("entry {index} has an invalid pid {pid}"),
            ));
        }
        if index > 0 && !pids.contains(&entry.ppid) {
            return Err(ImageLoadError::invalid(
                file,
                format!("entry {index} (pid {pid}) has parent {} which does not come before it in the tree", entry.ppid),
            ));
        }
        if !pids.insert(pid) {
            return Err(ImageLoadError::invalid(
                file,
                format!("pid {pid} appears twice"),
            ));
        }
        for &tid in &entry.threads {
            if !tids.insert(tid) {
                return Err(ImageLoadError::invalid(
                    file,
                    format!("thread id {tid} appears twice"),
                ));
            }
        }
        if !entry.threads.is_empty() && !entry.threads.contains(&pid) {
            return Err(ImageLoadError::invalid(
                file,
                format!("pid {pid} is not among its own threads {:?}", entry.threads),
            ));
        }
    }
    Ok(())
}

fn load_files(dir: &ImageDir) -> Result<BTreeMap<u32, FileEntry>, ImageLoadError> {
    let file = dir.label("files.img");
    let mut reader = dir.reader(ImageKind::Files, 0)?;
    let mut files = BTreeMap::new();
    while let Some(entry) = reader.next_entry::<FileEntry>()? {
        let offset = reader.last_entry_offset();
        let id = entry.id;
        if files.insert(id, entry).is_some() {
            return Err(ImageLoadError::invalid(
                &file,
                format!("file id {id} appears twice (entry at offset {offset})"),
            ));
        }
    }
    Ok(files)
}

fn load_remaps(dir: &ImageDir) -> Result<HashMap<u32, RemapFilePathEntry>, ImageLoadError> {
    let mut reader = dir.reader(ImageKind::RemapFpath, 0)?;
    let mut remaps = HashMap::new();
    while let Some(entry) = reader.next_entry::<RemapFilePathEntry>()? {
        remaps.insert(entry.orig_id, entry);
    }
    Ok(remaps)
}

fn load_sk_queues(dir: &ImageDir) -> Result<Vec<(u32, Vec<u8>)>, ImageLoadError> {
    let mut reader = dir.reader(ImageKind::SkQueues, 0)?;
    let mut queues = Vec::new();
    while let Some(entry) = reader.next_entry::<criu_proto::SkPacketEntry>()? {
        let at = reader.last_entry_offset();
        if !entry.scm.is_empty() {
            return Err(ImageLoadError::unsupported(
                dir.label("sk-queues.img"),
                format!("a queued message with {} control message(s) (passed fds or credentials), entry at offset {at}", entry.scm.len()),
            ));
        }
        let data = reader.read_extra(u64::from(entry.length))?;
        queues.push((entry.id_for, data));
    }
    Ok(queues)
}

fn load_pipe_data(
    dir: &ImageDir,
    kind: ImageKind,
) -> Result<HashMap<u32, PipeData>, ImageLoadError> {
    let mut reader = dir.reader(kind, 0)?;
    let mut data = HashMap::new();
    while let Some(entry) = reader.next_entry::<PipeDataEntry>()? {
        let bytes = reader.read_extra(u64::from(entry.bytes))?;
        data.insert(entry.pipe_id, (bytes, entry.size));
    }
    Ok(data)
}

/// Checks the terminals the fds refer to: a pty slave whose session is not
/// restored with the tree (a shell job's terminal) comes back, with
/// `shell_job`, as the terminal the restore runs on; other terminals are
/// not supported yet.
pub(crate) fn check_ttys(images: &RestoreImages, shell_job: bool) -> Result<(), ImageLoadError> {
    for task in &images.tasks {
        for fd in &task.fds {
            let Some(tty) = images.files.get(&fd.id).and_then(|f| f.tty.as_ref()) else {
                continue;
            };
            let label = format!("fdinfo of pid {}", task.pid);
            let what = |reason: String| {
                ImageLoadError::unsupported(
                    &label,
                    format!("fd {} (file id {}): {reason}", fd.fd, fd.id),
                )
            };
            let info = images.tty_infos.get(&tty.tty_info_id).ok_or_else(|| {
                ImageLoadError::invalid(
                    "tty-info.img",
                    format!(
                        "fd {} of pid {} uses terminal {}, which is not in tty-info.img",
                        fd.fd, task.pid, tty.tty_info_id
                    ),
                )
            })?;
            if info.r#type != criu_proto::TtyType::Pty as i32
                || !crate::tty::is_pty_slave(info.rdev)
            {
                return Err(what(format!(
                    "terminal {} of type {} (rdev {:#x}; only a shell job's pty slave)",
                    info.id, info.r#type, info.rdev
                )));
            }
            let session_in_dump = images
                .tasks
                .iter()
                .any(|t| t.pid == info.sid as i32 && t.sid == t.pid);
            if session_in_dump {
                return Err(what(format!(
                    "a pty controlled by session {} of the dump",
                    info.sid
                )));
            }
            if !shell_job {
                return Err(what(format!(
                    "terminal {} of session {}, outside the dump, without --shell-job",
                    info.id, info.sid
                )));
            }
        }
    }
    Ok(())
}

fn load_seccomp(dir: &ImageDir) -> Result<Vec<SeccompFilter>, ImageLoadError> {
    let mut reader = dir.reader(ImageKind::Seccomp, 0)?;
    let mut filters = Vec::new();
    while let Some(entry) = reader.next_entry::<SeccompEntry>()? {
        filters.extend(entry.seccomp_filters);
    }
    Ok(filters)
}

/// The filters of thread `tid`, oldest first. The core names the entry of
/// the thread's oldest filter; each entry's `prev` names the next newer one
/// (CRIU writes a chain newest first, each entry pointing at the one written
/// before it).
fn seccomp_chain(
    dir: &ImageDir,
    filters: &[SeccompFilter],
    tid: i32,
    core: &CoreEntry,
) -> Result<Vec<SeccompInstall>, ImageLoadError> {
    let Some(tc) = core.thread_core.as_ref() else {
        return Ok(Vec::new());
    };
    if tc.seccomp_mode.unwrap_or(0) != SECCOMP_MODE_FILTER as i32 {
        return Ok(Vec::new());
    }
    let label = dir.label("seccomp.img");
    let mut index = tc.seccomp_filter.ok_or_else(|| {
        ImageLoadError::invalid(
            dir.label(&format!("core-{tid}.img")),
            "seccomp filter mode without a filter index",
        )
    })?;
    let mut chain = Vec::new();
    loop {
        let filter = filters.get(index as usize).ok_or_else(|| {
            ImageLoadError::invalid(
                &label,
                format!(
                    "thread {tid} uses filter {index}, but there are {} filter(s)",
                    filters.len()
                ),
            )
        })?;
        if chain.len() >= filters.len() {
            return Err(ImageLoadError::invalid(
                &label,
                format!("the filter chain of thread {tid} loops at filter {index}"),
            ));
        }
        let len = filter.filter.len();
        if len == 0 || len % 8 != 0 || len > SECCOMP_MAX_PROGRAM {
            return Err(ImageLoadError::invalid(
                &label,
                format!("filter {index} of thread {tid} has a bad length of {len} bytes"),
            ));
        }
        chain.push(SeccompInstall {
            program: filter.filter.clone(),
            flags: filter.flags.unwrap_or(0),
        });
        match filter.prev {
            Some(prev) => index = prev,
            None => break,
        }
    }
    Ok(chain)
}

fn load_task(
    dir: &ImageDir,
    entry: &PstreeEntry,
    files: &BTreeMap<u32, FileEntry>,
    pages: &mut PagesLoader<'_>,
    inventory_ids: Option<&TaskKobjIdsEntry>,
) -> Result<TaskImages, ImageLoadError> {
    let pid = entry.pid as i32;
    let mut tids: Vec<i32> = vec![pid];
    tids.extend(
        entry
            .threads
            .iter()
            .map(|&t| t as i32)
            .filter(|&t| t != pid),
    );

    let core_label = |tid: i32| dir.label(&format!("core-{tid}.img"));
    let read_core = |tid: i32| -> Result<CoreEntry, ImageLoadError> {
        let mut reader = dir.reader_required(ImageKind::Core, tid as u64)?;
        read_single::<CoreEntry>(&mut reader)?
            .ok_or_else(|| ImageLoadError::invalid(core_label(tid), "the core image has no entry"))
    };
    let leader = read_core(pid)?;
    let tc = leader.tc.as_ref().ok_or_else(|| {
        ImageLoadError::invalid(core_label(pid), "the leader's core has no task_core (tc)")
    })?;
    let state = match tc.task_state {
        TASK_ALIVE => TaskState::Alive { stopped: false },
        TASK_STOPPED => TaskState::Alive { stopped: true },
        TASK_DEAD => TaskState::Zombie {
            exit_code: tc.exit_code,
        },
        other => {
            return Err(ImageLoadError::invalid(
                core_label(pid),
                format!("unknown task state {other}"),
            ))
        }
    };
    let mut task = TaskImages {
        pid,
        ppid: entry.ppid as i32,
        pgid: entry.pgid as i32,
        sid: entry.sid as i32,
        state,
        tids,
        cores: vec![leader],
        ids: None,
        mm: None,
        pages: Vec::new(),
        fs: None,
        fds: Vec::new(),
        seccomp: Vec::new(),
    };
    if let TaskState::Zombie { .. } = state {
        task.tids.truncate(1);
        return Ok(task);
    }
    for &tid in &task.tids[1..] {
        let core = read_core(tid)?;
        task.cores.push(core);
    }
    for (core, &tid) in task.cores.iter().zip(&task.tids) {
        check_core(&core_label(tid), core)?;
    }
    let tc = task.cores[0].tc.clone();
    if let Some(tc) = tc {
        for timer in tc.timers.iter().flat_map(|t| &t.posix) {
            let notify = timer.it_sigev_notify as i32 & !libc::SIGEV_THREAD_ID;
            if notify != libc::SIGEV_SIGNAL && notify != libc::SIGEV_NONE {
                return Err(ImageLoadError::unsupported(
                    core_label(pid),
                    format!(
                        "POSIX timer {} with notify mode {:#x}",
                        timer.it_id, timer.it_sigev_notify
                    ),
                ));
            }
            if timer.it_sigev_notify as i32 & libc::SIGEV_THREAD_ID != 0
                && !task.tids.contains(&timer.notify_thread_id.unwrap_or(0))
            {
                return Err(ImageLoadError::invalid(
                    core_label(pid),
                    format!(
                        "POSIX timer {} notifies thread {:?}, which is not a thread of pid {pid}",
                        timer.it_id, timer.notify_thread_id
                    ),
                ));
            }
        }
        if tc.old_seccomp_mode.unwrap_or(0) != 0 {
            return Err(ImageLoadError::unsupported(core_label(pid), "seccomp"));
        }
        if tc.membarrier_registration_mask.unwrap_or(0) != 0 {
            return Err(ImageLoadError::unsupported(
                core_label(pid),
                "membarrier registrations",
            ));
        }
        if tc.sigactions.len() > 64 {
            return Err(ImageLoadError::invalid(
                core_label(pid),
                format!("{} sigactions (at most 62 expected)", tc.sigactions.len()),
            ));
        }
    }

    let ids_label = dir.label(&format!("ids-{pid}.img"));
    let ids =
        read_single::<TaskKobjIdsEntry>(&mut dir.reader_required(ImageKind::Ids, pid as u64)?)?
            .ok_or_else(|| ImageLoadError::invalid(&ids_label, "the ids image has no entry"))?;
    if let Some(root) = inventory_ids {
        let pairs = [
            ("pid", ids.pid_ns_id, root.pid_ns_id),
            ("net", ids.net_ns_id, root.net_ns_id),
            ("ipc", ids.ipc_ns_id, root.ipc_ns_id),
            ("uts", ids.uts_ns_id, root.uts_ns_id),
            ("mnt", ids.mnt_ns_id, root.mnt_ns_id),
            ("user", ids.user_ns_id, root.user_ns_id),
            ("cgroup", ids.cgroup_ns_id, root.cgroup_ns_id),
        ];
        for (name, task_ns, root_ns) in pairs {
            if let (Some(a), Some(b)) = (task_ns, root_ns) {
                if a != b {
                    return Err(ImageLoadError::unsupported(
                        &ids_label,
                        format!("pid {pid} in its own {name} namespace (id {a})"),
                    ));
                }
            }
        }
    }

    let mm_label = dir.label(&format!("mm-{pid}.img"));
    let mm = read_single::<MmEntry>(&mut dir.reader_required(ImageKind::Mm, pid as u64)?)?
        .ok_or_else(|| ImageLoadError::invalid(&mm_label, "the mm image has no entry"))?;
    check_mm(&mm_label, &mm, files)?;

    let fs_label = dir.label(&format!("fs-{pid}.img"));
    let fs = read_single::<FsEntry>(&mut dir.reader_required(ImageKind::Fs, pid as u64)?)?
        .ok_or_else(|| ImageLoadError::invalid(&fs_label, "the fs image has no entry"))?;
    for (what, id) in [("cwd", fs.cwd_id), ("root", fs.root_id)] {
        match files.get(&id) {
            Some(f) if f.reg.is_some() => {}
            _ => {
                return Err(ImageLoadError::invalid(
                    &fs_label,
                    format!(
                        "{what} refers to file id {id}, which is not a regular file in files.img"
                    ),
                ))
            }
        }
    }

    let fdinfo_label = dir.label(&format!("fdinfo-{}.img", ids.files_id));
    let fds: Vec<FdinfoEntry> = dir
        .reader(ImageKind::Fdinfo, u64::from(ids.files_id))?
        .read_all()?;
    let mut seen_fds = HashSet::new();
    for fd in &fds {
        if !seen_fds.insert(fd.fd) {
            return Err(ImageLoadError::invalid(
                &fdinfo_label,
                format!("fd {} appears twice", fd.fd),
            ));
        }
        let Some(file) = files.get(&fd.id) else {
            return Err(ImageLoadError::invalid(
                &fdinfo_label,
                format!(
                    "fd {} refers to file id {}, which is not in files.img",
                    fd.fd, fd.id
                ),
            ));
        };
        if file.r#type != fd.r#type {
            return Err(ImageLoadError::invalid(
                &fdinfo_label,
                format!(
                    "fd {} has type {} but file id {} is a {}",
                    fd.fd,
                    fd_type_name(fd.r#type),
                    fd.id,
                    fd_type_name(file.r#type)
                ),
            ));
        }
        check_file_supported(&fdinfo_label, fd, file, files)?;
        if let Some(epoll) = &file.epfd {
            for target in &epoll.tfd {
                if !fds.iter().any(|f| f.fd == target.tfd) {
                    return Err(ImageLoadError::unsupported(
                        &fdinfo_label,
                        format!(
                            "epoll fd {} watching fd {}, which is not an fd of pid {pid}",
                            fd.fd, target.tfd
                        ),
                    ));
                }
            }
        }
    }

    task.pages = pages.load_task(pid, &mm)?;
    task.ids = Some(ids);
    task.mm = Some(mm);
    task.fs = Some(fs);
    task.fds = fds;
    Ok(task)
}

fn check_core(file: &str, core: &CoreEntry) -> Result<(), ImageLoadError> {
    if core.mtype != MARCH_X86_64 {
        return Err(ImageLoadError::unsupported(
            file,
            format!("machine type {} (only x86_64)", core.mtype),
        ));
    }
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| ImageLoadError::invalid(file, "the core has no x86 thread_info"))?;
    if ti.gpregs.mode == Some(REGS_MODE_COMPAT) {
        return Err(ImageLoadError::unsupported(file, "a 32-bit (compat) task"));
    }
    if ti.tls.iter().any(|d| !d.seg_not_present) {
        return Err(ImageLoadError::unsupported(
            file,
            "GDT TLS entries (set_thread_area)",
        ));
    }
    if let Some(tcore) = &core.thread_core {
        match tcore.seccomp_mode.unwrap_or(0) as u32 {
            0 | SECCOMP_MODE_FILTER => {}
            SECCOMP_MODE_STRICT => {
                return Err(ImageLoadError::unsupported(file, "seccomp strict mode"))
            }
            other => {
                return Err(ImageLoadError::invalid(
                    file,
                    format!("unknown seccomp mode {other}"),
                ))
            }
        }
    }
    Ok(())
}

fn check_mm(
    file: &str,
    mm: &MmEntry,
    files: &BTreeMap<u32, FileEntry>,
) -> Result<(), ImageLoadError> {
    let is_reg = |id: u64| {
        u32::try_from(id)
            .ok()
            .and_then(|id| files.get(&id))
            .is_some_and(|f| f.reg.is_some())
    };
    let is_memfd = |id: u64| {
        u32::try_from(id)
            .ok()
            .and_then(|id| files.get(&id))
            .is_some_and(|f| f.memfd.is_some())
    };
    if mm.exe_file_id != 0 && !is_reg(u64::from(mm.exe_file_id)) {
        return Err(ImageLoadError::invalid(
            file,
            format!(
                "exe_file_id {} is not a regular file in files.img",
                mm.exe_file_id
            ),
        ));
    }
    if mm.mm_saved_auxv.len() % 2 != 0 || mm.mm_saved_auxv.len() > 2 * 64 {
        return Err(ImageLoadError::invalid(
            file,
            format!(
                "{} auxv words (an even number up to 128 expected)",
                mm.mm_saved_auxv.len()
            ),
        ));
    }
    if !mm.aios.is_empty() {
        return Err(ImageLoadError::unsupported(file, "AIO rings"));
    }
    let mut previous_end = 0;
    for (index, vma) in mm.vmas.iter().enumerate() {
        let what = |reason: String| {
            ImageLoadError::invalid(
                file,
                format!("VMA {index} ({:#x}-{:#x}): {reason}", vma.start, vma.end),
            )
        };
        if vma.start >= vma.end || vma.start % PAGE_SIZE != 0 || vma.end % PAGE_SIZE != 0 {
            return Err(what("not a page-aligned non-empty range".into()));
        }
        if vma.start < previous_end {
            return Err(what(format!(
                "overlaps or precedes the previous VMA ending at {previous_end:#x}"
            )));
        }
        previous_end = vma.end;
        let s = vma.status;
        if s & status::VSYSCALL != 0 {
            continue;
        }
        if vma.end > TASK_SIZE {
            return Err(what("beyond the user address space".into()));
        }
        let unsupported = [
            (status::SYSVIPC, "a SysV shared memory mapping"),
            (status::SOCKET, "a socket mapping"),
            (status::AIORING, "an AIO ring"),
            (status::SHSTK, "a shadow stack"),
            (status::GUARD, "a guard region"),
            (status::UPROBES, "a uprobes area"),
        ];
        for (bit, name) in unsupported {
            if s & bit != 0 {
                return Err(ImageLoadError::unsupported(
                    file,
                    format!("VMA {index} ({:#x}-{:#x}) is {name}", vma.start, vma.end),
                ));
            }
        }
        if s & status::REGULAR == 0 {
            return Err(what(format!("status {s:#x} has no REGULAR bit")));
        }
        if s & status::MEMFD != 0 {
            if s & status::FILE_SHARED == 0 || !is_memfd(vma.shmid) {
                return Err(what(format!(
                    "is a memfd mapping of file id {}, which is not a shared memfd in files.img",
                    vma.shmid
                )));
            }
        } else if s & status::ANON_SHARED != 0 {
            return Err(ImageLoadError::unsupported(
                file,
                format!("VMA {index} ({:#x}-{:#x}) is shared anonymous memory in the legacy (non-memfd) format", vma.start, vma.end),
            ));
        } else if s & (status::FILE_PRIVATE | status::FILE_SHARED) != 0 && !is_reg(vma.shmid) {
            return Err(what(format!(
                "maps file id {}, which is not a regular file in files.img",
                vma.shmid
            )));
        }
        if vma.flags & libc::MAP_HUGETLB as u32 != 0 {
            return Err(ImageLoadError::unsupported(
                file,
                format!(
                    "VMA {index} ({:#x}-{:#x}) is a hugetlb mapping",
                    vma.start, vma.end
                ),
            ));
        }
    }
    Ok(())
}

fn check_file_supported(
    fdinfo_label: &str,
    fd: &FdinfoEntry,
    file: &FileEntry,
    files: &BTreeMap<u32, FileEntry>,
) -> Result<(), ImageLoadError> {
    let supported = match FdTypes::try_from(file.r#type) {
        Ok(FdTypes::Reg) => file.reg.is_some(),
        Ok(FdTypes::Pipe) => file.pipe.is_some(),
        Ok(FdTypes::Memfd) => file.memfd.is_some(),
        Ok(FdTypes::Eventfd) => file.efd.is_some(),
        Ok(FdTypes::Signalfd) => file.sgfd.is_some(),
        Ok(FdTypes::Timerfd) => file.tfd.is_some(),
        // Which terminals can come back depends on --shell-job: see check_ttys.
        Ok(FdTypes::Tty) => file.tty.is_some(),
        Ok(FdTypes::Eventpoll) => file.epfd.is_some(),
        Ok(FdTypes::Inotify) => file
            .ify
            .as_ref()
            .is_some_and(|i| i.wd.iter().all(|w| w.f_handle.path.is_some())),
        Ok(FdTypes::Fifo) => file
            .fifo
            .as_ref()
            .and_then(|f| f.regf_id)
            .is_some_and(|regf| files.get(&regf).is_some_and(|r| r.reg.is_some())),
        Ok(FdTypes::Unixsk) => match &file.usk {
            Some(usk) => {
                let by_ino: HashMap<u32, &criu_proto::UnixSkEntry> = files
                    .values()
                    .filter_map(|f| f.usk.as_ref())
                    .map(|u| (u.ino, u))
                    .collect();
                if let Some(reason) = crate::unix::unsupported_reason(usk, &by_ino) {
                    return Err(ImageLoadError::unsupported(
                        fdinfo_label,
                        format!("fd {} (file id {}): {reason}", fd.fd, fd.id),
                    ));
                }
                true
            }
            None => false,
        },
        _ => false,
    };
    if supported {
        Ok(())
    } else {
        Err(ImageLoadError::unsupported(
            fdinfo_label,
            format!(
                "fd {} (file id {}) of kind {}",
                fd.fd,
                fd.id,
                fd_type_name(file.r#type)
            ),
        ))
    }
}

/// One decoded pagemap: its pages file and its entries with file offsets.
#[derive(Debug)]
struct Pagemap {
    label: String,
    pages_file: Option<usize>,
    /// (vaddr, nr_pages, flags, offset in the pages file for PE_PRESENT entries)
    entries: Vec<(u64, u64, u32, u64)>,
}

struct PagesLoader<'a> {
    chain: &'a [ImageDir],
    files: Vec<PagesFile>,
    opened: HashMap<(usize, u32), usize>,
    pagemaps: HashMap<(usize, MapKey), Pagemap>,
}

/// Which pagemap: a task's (`pagemap-<pid>.img`) or a shmem object's
/// (`pagemap-shmem-<shmid>.img`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MapKey {
    Task(i32),
    Shmem(u64),
}

impl MapKey {
    fn file_name(self) -> String {
        match self {
            MapKey::Task(pid) => format!("pagemap-{pid}.img"),
            MapKey::Shmem(id) => format!("pagemap-shmem-{id}.img"),
        }
    }

    fn kind_and_id(self) -> (ImageKind, u64) {
        match self {
            MapKey::Task(pid) => (ImageKind::Pagemap, pid as u64),
            MapKey::Shmem(id) => (ImageKind::ShmemPagemap, id),
        }
    }
}

impl PagesLoader<'_> {
    fn open_pages(
        &mut self,
        level: usize,
        pages_id: u32,
        pagemap_label: &str,
    ) -> Result<usize, ImageLoadError> {
        if let Some(&index) = self.opened.get(&(level, pages_id)) {
            return Ok(index);
        }
        let dir = &self.chain[level];
        let label = dir.label(&format!("pages-{pages_id}.img"));
        let file = dir.open_pages(pages_id)?.ok_or_else(|| {
            ImageLoadError::invalid(pagemap_label, format!("its pages image {label} is missing"))
        })?;
        self.files.push(PagesFile { label, file });
        let index = self.files.len() - 1;
        self.opened.insert((level, pages_id), index);
        Ok(index)
    }

    fn pagemap(&mut self, level: usize, key: MapKey) -> Result<&Pagemap, ImageLoadError> {
        if !self.pagemaps.contains_key(&(level, key)) {
            let pagemap = self.read_pagemap(level, key)?;
            self.pagemaps.insert((level, key), pagemap);
        }
        Ok(&self.pagemaps[&(level, key)])
    }

    fn read_pagemap(&mut self, level: usize, key: MapKey) -> Result<Pagemap, ImageLoadError> {
        let dir = &self.chain[level];
        let label = dir.label(&key.file_name());
        let (kind, id) = key.kind_and_id();
        let mut reader = dir.reader(kind, id)?;
        let Some(head) = reader.next_entry::<PagemapHead>()? else {
            return Ok(Pagemap {
                label,
                pages_file: None,
                entries: Vec::new(),
            });
        };
        let mut entries = Vec::new();
        let mut offset = 0u64;
        let mut previous_end = 0u64;
        while let Some(entry) = reader.next_entry::<PagemapEntry>()? {
            let at = reader.last_entry_offset();
            let flags = if entry.in_parent == Some(true) {
                PE_PARENT
            } else {
                entry.flags.unwrap_or(PE_PRESENT)
            };
            let nr_pages = entry.nr_pages.unwrap_or(u64::from(entry.compat_nr_pages));
            let bad = |reason: String| {
                ImageLoadError::invalid(
                    &label,
                    format!("entry at offset {at} (vaddr {:#x}): {reason}", entry.vaddr),
                )
            };
            if entry.vaddr % PAGE_SIZE != 0 || nr_pages == 0 {
                return Err(bad(format!(
                    "{nr_pages} pages at an unaligned or empty range"
                )));
            }
            let end = nr_pages
                .checked_mul(PAGE_SIZE)
                .and_then(|len| entry.vaddr.checked_add(len))
                .filter(|&end| end <= TASK_SIZE)
                .ok_or_else(|| bad(format!("{nr_pages} pages run past the user address space")))?;
            if entry.vaddr < previous_end {
                return Err(bad(format!(
                    "overlaps or precedes the previous entry ending at {previous_end:#x}"
                )));
            }
            previous_end = end;
            if flags & PE_PRESENT != 0 && flags & PE_PARENT != 0 {
                return Err(bad("both PRESENT and PARENT".into()));
            }
            if flags & (PE_PRESENT | PE_PARENT) == 0 {
                if flags & PE_LAZY != 0 {
                    return Err(ImageLoadError::unsupported(
                        &label,
                        format!("lazy pages (entry at offset {at})"),
                    ));
                }
                return Err(bad(format!(
                    "flags {flags:#x} say neither PRESENT nor PARENT"
                )));
            }
            entries.push((entry.vaddr, nr_pages, flags, offset));
            if flags & PE_PRESENT != 0 {
                offset += nr_pages * PAGE_SIZE;
            }
        }
        let pages_file = if offset > 0 {
            Some(self.open_pages(level, head.pages_id, &label)?)
        } else {
            None
        };
        if let Some(index) = pages_file {
            let pages = &self.files[index];
            let size = pages
                .file
                .metadata()
                .map_err(|source| ImageLoadError::PagesIo {
                    file: pages.label.clone(),
                    op: "stat",
                    source,
                })?
                .len();
            if size < offset {
                // Name the first entry that runs past the end of the data.
                let culprit = entries
                    .iter()
                    .find(|e| e.2 & PE_PRESENT != 0 && e.3 + e.1 * PAGE_SIZE > size)
                    .copied()
                    .unwrap_or((0, 0, 0, 0));
                return Err(ImageLoadError::invalid(
                    &label,
                    format!(
                        "the entry for {:#x} ({} pages) needs bytes {}..{} of {}, which has only {size} bytes",
                        culprit.0,
                        culprit.1,
                        culprit.3,
                        culprit.3 + culprit.1 * PAGE_SIZE,
                        pages.label
                    ),
                ));
            }
        }
        Ok(Pagemap {
            label,
            pages_file,
            entries,
        })
    }

    /// Resolves `[vaddr, vaddr + nr_pages)` at `level` into runs of file data.
    fn resolve(
        &mut self,
        level: usize,
        key: MapKey,
        vaddr: u64,
        nr_pages: u64,
        out: &mut Vec<PageRun>,
    ) -> Result<(), ImageLoadError> {
        let pagemap = self.pagemap(level, key)?;
        let label = pagemap.label.clone();
        let pages_file = pagemap.pages_file;
        let end = vaddr + nr_pages * PAGE_SIZE;
        let mut covered = vaddr;
        let pieces: Vec<(u64, u64, u32, u64)> = pagemap
            .entries
            .iter()
            .filter(|e| e.0 < end && e.0 + e.1 * PAGE_SIZE > vaddr)
            .copied()
            .collect();
        for (e_vaddr, e_nr, flags, e_offset) in pieces {
            let start = e_vaddr.max(vaddr);
            let stop = (e_vaddr + e_nr * PAGE_SIZE).min(end);
            if start != covered {
                break;
            }
            let n = (stop - start) / PAGE_SIZE;
            if flags & PE_PRESENT != 0 {
                let file = pages_file.expect("a present entry implies a pages file");
                out.push(PageRun {
                    vaddr: start,
                    nr_pages: n,
                    file,
                    offset: e_offset + (start - e_vaddr),
                });
            } else {
                if level + 1 >= self.chain.len() {
                    return Err(ImageLoadError::invalid(&label, format!("pages at {start:#x} are in the parent dump, but there is no parent link")));
                }
                self.resolve(level + 1, key, start, n, out)?;
            }
            covered = stop;
        }
        if covered != end {
            let where_ = if level == 0 {
                label
            } else {
                format!("{label} (parent level {level})")
            };
            return Err(ImageLoadError::invalid(
                where_,
                format!("pages {covered:#x}..{end:#x} are not in this pagemap"),
            ));
        }
        Ok(())
    }

    fn load_task(&mut self, pid: i32, mm: &MmEntry) -> Result<Vec<PageRun>, ImageLoadError> {
        self.load_runs(MapKey::Task(pid), |label, vaddr, nr_pages| {
            check_pages_in_vmas(label, mm, vaddr, nr_pages)
        })
    }

    /// The contents of a shmem object of `size` bytes, as runs whose vaddr is
    /// the offset in the object.
    fn load_shmem(&mut self, shmid: u64, size: u64) -> Result<Vec<PageRun>, ImageLoadError> {
        self.load_runs(MapKey::Shmem(shmid), |label, offset, nr_pages| {
            if offset + nr_pages * PAGE_SIZE > size.div_ceil(PAGE_SIZE) * PAGE_SIZE {
                return Err(ImageLoadError::invalid(
                    label,
                    format!("pages at offset {offset:#x} ({nr_pages} pages) lie beyond the object's {size} bytes"),
                ));
            }
            Ok(())
        })
    }

    fn load_runs(
        &mut self,
        key: MapKey,
        check: impl Fn(&str, u64, u64) -> Result<(), ImageLoadError>,
    ) -> Result<Vec<PageRun>, ImageLoadError> {
        let entries = self.pagemap(0, key)?.entries.clone();
        let label = self.pagemap(0, key)?.label.clone();
        let mut runs = Vec::new();
        for (vaddr, nr_pages, flags, offset) in entries {
            check(&label, vaddr, nr_pages)?;
            if flags & PE_PRESENT != 0 {
                let file = self
                    .pagemap(0, key)?
                    .pages_file
                    .expect("present pages have a file");
                runs.push(PageRun {
                    vaddr,
                    nr_pages,
                    file,
                    offset,
                });
            } else {
                if self.chain.len() < 2 {
                    return Err(ImageLoadError::invalid(
                        &label,
                        format!("pages at {vaddr:#x} are in the parent dump, but there is no parent link"),
                    ));
                }
                self.resolve(1, key, vaddr, nr_pages, &mut runs)?;
            }
        }
        Ok(runs)
    }
}

fn check_pages_in_vmas(
    label: &str,
    mm: &MmEntry,
    vaddr: u64,
    nr_pages: u64,
) -> Result<(), ImageLoadError> {
    let end = vaddr + nr_pages * PAGE_SIZE;
    let mut at = vaddr;
    for vma in mm.vmas.iter().filter(|v| v.end > vaddr && v.start < end) {
        if vma.start > at {
            break;
        }
        if !vma_takes_pages(vma) {
            return Err(ImageLoadError::invalid(
                label,
                format!("pages at {at:#x} fall in VMA {:#x}-{:#x} (status {:#x}), which holds no dumped pages", vma.start, vma.end, vma.status),
            ));
        }
        at = vma.end;
        if at >= end {
            return Ok(());
        }
    }
    Err(ImageLoadError::invalid(
        label,
        format!("pages {at:#x}..{end:#x} are outside every VMA of mm"),
    ))
}

/// Whether page contents of this VMA are in the pagemap (private memory and the vdso).
pub(crate) fn vma_takes_pages(vma: &VmaEntry) -> bool {
    vma.status & status::VDSO != 0
        || vma.status & (status::ANON_PRIVATE | status::FILE_PRIVATE) != 0
            && vma.status & status::VVAR == 0
}
