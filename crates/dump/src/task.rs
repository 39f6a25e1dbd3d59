//! Dumping one live (frozen) process: its threads' cores, ids, mm with VMAs
//! and pages, fds and fs, in CRIU's order so file ids come out the same.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use criu_compel::{FrozenTask, RemoteSession};
use criu_image::{ImageDir, ImageKind, PagemapTarget};
use criu_pages::{PageRange, PageReader, PageSink, Vma, VmaKind, PAGE_SIZE};
use criu_proto::{FsEntry, MmEntry, TaskKobjIdsEntry, VmaEntry};

use crate::core::{leader_core, thread_core_entry, TaskFacts, TASK_ALIVE, TASK_STOPPED};
use crate::files::FileTable;
use crate::ids::{KcmpIds, NsIds};
use crate::proc::{self, ProcStat, ProcStatus};
use crate::sys::KcmpType;
use crate::thread::{collect_process_remote, collect_thread, collect_thread_remote, ThreadState};
use crate::{DumpError, FailPoint};

/// CRIU's AT_VECTOR_SIZE on x86_64: it reads at most this many auxv words.
const AT_VECTOR_SIZE: usize = 44;

/// Id spaces shared by all tasks of one dump.
#[derive(Debug)]
pub struct IdSpaces {
    /// mm ids.
    pub vm: KcmpIds,
    /// fd table ids.
    pub files: KcmpIds,
    /// fs_struct ids.
    pub fs: KcmpIds,
    /// sighand ids.
    pub sighand: KcmpIds,
    /// Namespace ids.
    pub ns: NsIds,
}

impl IdSpaces {
    /// Fresh id spaces, comparing objects with kcmp against those of `me` (criu-rs itself).
    pub fn new(me: i32, ns: NsIds) -> Self {
        Self {
            vm: KcmpIds::new(KcmpType::Vm, me),
            files: KcmpIds::new(KcmpType::Files, me),
            fs: KcmpIds::new(KcmpType::Fs, me),
            sighand: KcmpIds::new(KcmpType::Sighand, me),
            ns,
        }
    }
}

/// Counters for stats-dump.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageCounters {
    /// Loop iterations of CRIU's page scan (pages considered).
    pub scanned: u64,
    /// Pages written to pages images.
    pub written: u64,
    /// Page pipes CRIU would have created.
    pub pipes: u64,
    /// Page pipe buffers CRIU would have allocated.
    pub pipe_bufs: u64,
    /// Pages left in the parent images (PE_PARENT).
    pub skipped_parent: u64,
    /// Time spent dumping private memory, per process from finding the present pages to the last
    /// page stored (CRIU's memdump_time).
    pub memdump: Duration,
    /// The part of `memdump` spent handing pages to the images or the page server (CRIU's
    /// memwrite_time). With the pipelined reader, reading overlaps it rather than adding to it.
    pub memwrite: Duration,
    /// Pages stored through a mapped region of the pages image (see `pagepipe::MAPPED_FILL_MIN`)
    /// rather than through the image writer; included in `written`.
    pub filled_in_place: u64,
    /// Of `filled_in_place`, those `pwrite`n into their place rather than filled through memory.
    pub written_in_place: u64,
}

/// What one task contributed to the tree-wide images.
#[derive(Debug, Clone)]
pub struct TaskSummary {
    /// pid.
    pub pid: i32,
    /// Thread ids, leader first.
    pub threads: Vec<i32>,
    /// pgid.
    pub pgid: i32,
    /// sid.
    pub sid: i32,
}

/// Shared dump context.
pub struct Context<'a> {
    /// Images directory.
    pub images: &'a ImageDir,
    /// Object ids.
    pub ids: IdSpaces,
    /// Files table.
    pub files: FileTable,
    /// Where pagemaps go (images dir or page server).
    pub page_store: crate::pagepipe::PageStore,
    /// Page counters.
    pub pages: PageCounters,
    /// cgroup set id to record in thread cores.
    pub cg_set: u32,
    /// Failure injection point.
    pub fail_at: Option<FailPoint>,
    /// seccomp state per thread (from the tree-wide pre-pass).
    pub seccomp: std::collections::BTreeMap<i32, crate::seccomp::ThreadSeccomp>,
    /// criu's own namespace ids (NS_KINDS order).
    pub own_ns: crate::ids::TaskNsIds,
    /// The time namespace of the dumped tree when it is not ours: (id, a pid in it).
    pub time_ns: Option<(u32, i32)>,
    /// Dirty-memory tracking handed over by the parent's keeper (empty: full dump).
    pub tracking: crate::track::Tracking,
    /// Register memory not tracked yet (pre-dumps into the images directory).
    pub track_new: bool,
    /// Filled pages-image mappings being unmapped off the dump's path.
    pub unmapping: BackgroundUnmap,
}

/// Unmaps filled pages-image mappings on threads of their own: for 4 GiB that takes about 90 ms,
/// which would otherwise keep the tree frozen that much longer. Dropping this waits for them, so no
/// thread outlives the dump.
#[derive(Debug, Default)]
pub struct BackgroundUnmap(Vec<std::thread::JoinHandle<()>>);

impl BackgroundUnmap {
    /// Unmaps `mapping` on a new thread (or here, if no thread can be started).
    pub fn push(&mut self, mapping: criu_image::Unmapper) {
        // The closure owns the mapping: if spawning fails it is dropped, i.e. unmapped, here.
        if let Ok(handle) = std::thread::Builder::new()
            .name("criu-unmap".into())
            .spawn(move || drop(mapping))
        {
            self.0.push(handle);
        }
    }
}

impl Drop for BackgroundUnmap {
    fn drop(&mut self) {
        for handle in self.0.drain(..) {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("pages", &self.pages)
            .finish()
    }
}

impl Context<'_> {
    pub(crate) fn check_fail(&self, point: FailPoint) -> Result<(), DumpError> {
        if self.fail_at == Some(point) {
            tracing::error!("Injected failure at stage {point:?}.");
            return Err(DumpError::Injected { stage: point });
        }
        Ok(())
    }

    pub(crate) fn write_one<M: prost::Message>(
        &self,
        kind: ImageKind,
        id: u64,
        message: &M,
    ) -> Result<(), DumpError> {
        let mut w = self.images.writer(kind, id)?;
        w.write_entry(message)?;
        w.finish()?;
        Ok(())
    }
}

fn unsupported_vma(pid: i32, vma: &Vma, what: &str) -> DumpError {
    DumpError::Unsupported {
        pid,
        what: format!(
            "{what} mapping {:#x}-{:#x} ({})",
            vma.start,
            vma.end,
            vma.path
                .as_ref()
                .map(|p| p.display().to_string())
                .or_else(|| vma.label.clone())
                .unwrap_or_default()
        ),
    }
}

/// The VMAs of `pid`, each checked to be something we can dump.
fn read_vmas(pid: i32) -> Result<Vec<Vma>, DumpError> {
    let vmas = criu_pages::read_vmas(pid).map_err(|source| DumpError::Pages {
        pid,
        what: "reading its mappings".into(),
        source: Box::new(source),
    })?;
    check_vmas(pid, &vmas)?;
    Ok(vmas)
}

/// Checks every VMA is something we can dump.
fn check_vmas(pid: i32, vmas: &[Vma]) -> Result<(), DumpError> {
    for vma in vmas {
        if vma.status() & criu_pages::VMA_UNSUPP != 0 {
            return Err(unsupported_vma(pid, vma, "an I/O or PFN"));
        }
        match &vma.kind {
            VmaKind::SysvShm => return Err(unsupported_vma(pid, vma, "a SysV shared memory")),
            VmaKind::AioRing => return Err(unsupported_vma(pid, vma, "an AIO ring")),
            VmaKind::Uprobes => {
                return Err(DumpError::Unsupported {
                    pid,
                    what: "an [uprobes] mapping (consider --allow-uprobes)".into(),
                })
            }
            VmaKind::Special(name) => return Err(unsupported_vma(pid, vma, name)),
            _ => {}
        }
    }
    Ok(())
}

fn is_file_vma(vma: &Vma) -> bool {
    matches!(vma.kind, VmaKind::FilePrivate | VmaKind::FileShared)
}

fn is_memfd_vma(vma: &Vma) -> bool {
    matches!(vma.kind, VmaKind::AnonShared | VmaKind::Memfd { .. })
}

/// The vma_entry list, assigning file ids to file mappings (in VMA order).
fn vma_entries(ctx: &mut Context<'_>, pid: i32, vmas: &[Vma]) -> Result<Vec<VmaEntry>, DumpError> {
    let mut out = Vec::with_capacity(vmas.len());
    for vma in vmas {
        let mut entry = VmaEntry {
            start: vma.start,
            end: vma.end,
            pgoff: vma.pgoff,
            shmid: 0,
            prot: vma.prot,
            flags: vma.flags,
            status: vma.status(),
            fd: -1,
            madv: (vma.madv != 0).then_some(vma.madv),
            fdflags: None,
        };
        if is_file_vma(vma) || is_memfd_vma(vma) {
            let link = FileTable::map_files_path(pid, vma.start, vma.end);
            let link_str = link.to_string_lossy().into_owned();
            entry.shmid = u64::from(if is_memfd_vma(vma) {
                ctx.files.memfd_mapping(pid, &link_str)?
            } else {
                ctx.files.special_file(pid, &link_str)?
            });
            let meta = std::fs::symlink_metadata(&link).map_err(|source| DumpError::Io {
                what: format!("lstat of {link_str}"),
                source,
            })?;
            entry.fdflags = Some(match meta.mode() & 0o600 {
                0o200 => libc::O_WRONLY as u32,
                0o600 => libc::O_RDWR as u32,
                _ => libc::O_RDONLY as u32,
            });
        }
        out.push(entry);
    }
    Ok(out)
}

/// A page sink writing pagemap/pages with CRIU's per-page flags and entry cuts.
struct PagemapSink<'v> {
    out: crate::pagepipe::PagemapOut,
    /// Private-dumpable VMAs (sorted), with their lazy capability.
    vmas: Vec<(&'v Vma, bool)>,
    /// Stack pointers of the threads (for CRIU's `is_stack` test).
    sps: Vec<u64>,
    error: Option<crate::pagepipe::PagesOutError>,
    /// Time spent in `out` (stats-dump memwrite_time).
    writing: Duration,
}

impl PagemapSink<'_> {
    fn lazy_for(vmas: &[(&Vma, bool)], sps: &[u64], vaddr: u64) -> bool {
        let Some((_, lazy)) = vmas.iter().find(|(v, _)| v.start <= vaddr && vaddr < v.end) else {
            return false;
        };
        // CRIU's is_stack() compares the low 12 bits of sp and the page address
        // (it masks with ~PAGE_MASK), so only a page-aligned sp excludes a page.
        *lazy && !sps.iter().any(|sp| (sp ^ vaddr) & 0xfff == 0)
    }
}

impl PageSink for PagemapSink<'_> {
    fn add_pages(&mut self, vaddr: u64, data: &[u8]) -> std::io::Result<()> {
        let (vmas, sps) = (&self.vmas, &self.sps);
        let started = Instant::now();
        let added = self
            .out
            .add(vaddr, data, |va| Self::lazy_for(vmas, sps, va));
        self.writing += started.elapsed();
        if let Err(e) = added {
            let msg = e.to_string();
            self.error = Some(e);
            return Err(std::io::Error::other(msg));
        }
        Ok(())
    }

    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, _flags: u32) -> std::io::Result<()> {
        Err(std::io::Error::other(format!(
            "unexpected hole of {nr_pages} pages at {vaddr:#x} in a full dump"
        )))
    }
}

/// CRIU's pages_scanned: one per dumped page plus one per skipped gap in each VMA.
fn scanned_pages(vmas: &[Vma], ranges: &[PageRange]) -> u64 {
    let mut total = 0;
    for vma in vmas.iter().filter(|v| v.dumps_private_pages()) {
        let mut cursor = vma.start;
        for r in ranges
            .iter()
            .filter(|r| r.start >= vma.start && r.start < vma.end)
        {
            if r.start > cursor {
                total += 1;
            }
            total += r.nr_pages;
            cursor = r.end();
        }
        if cursor < vma.end {
            total += 1;
        }
    }
    total
}

fn dump_pages(
    ctx: &mut Context<'_>,
    pid: i32,
    vmas: &[Vma],
    sps: Vec<u64>,
    chunk_mode: bool,
) -> Result<(), DumpError> {
    let started = Instant::now();
    let ranges = criu_pages::present_ranges(pid, vmas).map_err(|source| DumpError::Pages {
        pid,
        what: "finding present pages".into(),
        source: Box::new(source),
    })?;
    // A pre-dump (no chunk mode) re-arms tracking for the next iteration.
    let holes = ctx.tracking.parent_holes(pid, vmas, &ranges, !chunk_mode)?;
    let data = criu_pages::subtract_ranges(&ranges, &holes);
    let mut out = ctx
        .page_store
        .open(PagemapTarget::Process(pid as u32), chunk_mode)?;
    let in_parent: u64 = holes.iter().map(|hole| hole.nr_pages).sum();
    out.set_parent_holes(holes);
    let mut sink = PagemapSink {
        out,
        vmas: vmas
            .iter()
            .filter(|v| v.dumps_private_pages())
            .map(|v| (v, v.can_be_lazy()))
            .collect(),
        sps,
        error: None,
        writing: Duration::ZERO,
    };
    let reader = PageReader::new(pid).map_err(|source| DumpError::Pages {
        pid,
        what: "opening its memory".into(),
        source: Box::new(source),
    })?;
    let data_bytes: u64 = data.iter().map(PageRange::len_bytes).sum();
    let filling = Instant::now();
    let mapped = usize::try_from(data_bytes)
        .ok()
        .map(|len| sink.out.map_pages(len))
        .transpose()?
        .flatten();
    if let Some(mut area) = mapped {
        // Straight into the pages image (see MAPPED_FILL_MIN): this thread reads chunks from the
        // front into a buffer and `pwrite`s them into place, the others read the rest from the
        // back straight into the mapping (`PageReader::read_into` says why both).
        let (bytes, positional) = area.split();
        let write_at = |part: &mut [u8], chunk: &[u8]| positional.write_into(part, chunk);
        let filled = reader
            .read_into(&data, bytes, Some(&write_at))
            .map_err(|source| DumpError::Pages {
                pid,
                // Out of room shows as ENOSPC (or ENOMEM in a memory cgroup) from `pwrite`, but
                // as a fault (EFAULT) from the kernel copy into the mapping, which an unreadable
                // page of the target gives too.
                what: "storing pages in the pages image on tmpfs (\"Bad address\" here can also \
                       mean that the images filesystem or a memory cgroup ran out of room)"
                    .into(),
                source: Box::new(source),
            })?;
        ctx.unmapping.push(area.into_unmapper());
        ctx.pages.written_in_place += filled.written_pages;
        let (vmas, sps) = (&sink.vmas, &sink.sps);
        for range in &data {
            sink.out.add_stored(range.start, range.nr_pages, |va| {
                PagemapSink::lazy_for(vmas, sps, va)
            })?;
        }
        // Reading and storing overlap here (each chunk is read and stored by one thread, one
        // copy straight into the mapping or one into a buffer and one by `pwrite`): all of it
        // counts as storing.
        sink.writing += filling.elapsed();
        ctx.pages.filled_in_place += data_bytes / PAGE_SIZE;
    } else if let Err(source) = reader.read(&data, &mut sink) {
        if let Some(e) = sink.error.take() {
            return Err(e.into());
        }
        return Err(DumpError::Pages {
            pid,
            what: "reading pages".into(),
            source: Box::new(source),
        });
    }
    let finishing = Instant::now();
    let (written, _entries, pipes, bufs) = sink.out.finish()?;
    ctx.pages.memwrite += sink.writing + finishing.elapsed();
    ctx.pages.memdump += started.elapsed();
    ctx.pages.scanned += scanned_pages(vmas, &ranges);
    ctx.pages.written += written;
    ctx.pages.skipped_parent += in_parent;
    ctx.pages.pipes += pipes;
    ctx.pages.pipe_bufs += bufs;
    Ok(())
}

fn kobj_ids(ctx: &mut Context<'_>, pid: i32) -> Result<(TaskKobjIdsEntry, bool), DumpError> {
    let (vm_id, _) = ctx.ids.vm.id_for(pid)?;
    let (files_id, new_files) = ctx.ids.files.id_for(pid)?;
    let (fs_id, _) = ctx.ids.fs.id_for(pid)?;
    let (sighand_id, _) = ctx.ids.sighand.id_for(pid)?;
    let ns = ctx.ids.ns.ids_for(pid)?;
    Ok((
        crate::ids::kobj_ids_entry(vm_id, files_id, fs_id, sighand_id, &ns),
        new_files,
    ))
}

/// Tasks must share criu's namespaces, except a time namespace (a restored
/// tree lives in one), which must then be the same for the whole tree and
/// not nested.
fn check_namespaces(
    ctx: &mut Context<'_>,
    pid: i32,
    ids: &TaskKobjIdsEntry,
) -> Result<(), DumpError> {
    let theirs = [
        ids.pid_ns_id,
        ids.net_ns_id,
        ids.ipc_ns_id,
        ids.uts_ns_id,
        ids.time_ns_id,
        ids.mnt_ns_id,
        ids.user_ns_id,
        ids.cgroup_ns_id,
    ];
    for (kind, (ours, theirs)) in ctx.own_ns.iter().zip(theirs).enumerate() {
        if *ours == theirs {
            continue;
        }
        let name = crate::ids::NS_KINDS[kind];
        if name != "time" {
            return Err(DumpError::Unsupported {
                pid,
                what: format!("a process in its own {name} namespace"),
            });
        }
        let id = theirs.unwrap_or(0);
        let own = std::fs::read_link(format!("/proc/{pid}/ns/time")).ok();
        let children = std::fs::read_link(format!("/proc/{pid}/ns/time_for_children")).ok();
        if own != children {
            return Err(DumpError::Unsupported {
                pid,
                what: "a nested time namespace".into(),
            });
        }
        match ctx.time_ns {
            None => ctx.time_ns = Some((id, pid)),
            Some((known, _)) if known == id => {}
            Some(_) => {
                return Err(DumpError::Unsupported {
                    pid,
                    what: "processes in different time namespaces".into(),
                })
            }
        }
    }
    Ok(())
}

fn task_facts(
    pid: i32,
    stat: &ProcStat,
    task: &FrozenTask,
    cg_set: u32,
) -> Result<TaskFacts, DumpError> {
    // From /proc (see proc::limits): prlimit64 on a task of another uid
    // needs CAP_SYS_RESOURCE, even to read.
    let rlimits = proc::read_limits(pid)?;
    let leader = task.threads.first().ok_or(DumpError::NoThreads { pid })?;
    let shared_signals = leader
        .pending_signals(true)
        .map_err(|source| DumpError::Compel {
            pid,
            what: "shared pending signals".into(),
            source,
        })?;
    let stop_signo = if task.was_stopped {
        Some(libc::SIGSTOP as u32)
    } else {
        None
    };
    Ok(TaskFacts {
        state: if task.was_stopped {
            TASK_STOPPED
        } else {
            TASK_ALIVE
        },
        stop_signo,
        personality: proc::read_personality(pid)?,
        flags: stat.flags,
        comm: stat.comm.clone(),
        rlimits,
        shared_signals,
        loginuid: proc::read_decimal::<u32>(proc::proc_path(pid, "loginuid")).ok(),
        oom_score_adj: proc::read_decimal::<i32>(proc::proc_path(pid, "oom_score_adj")).ok(),
        cg_set,
    })
}

/// Dumps one live process of the frozen tree.
pub fn dump_task(ctx: &mut Context<'_>, task: &mut FrozenTask) -> Result<TaskSummary, DumpError> {
    let pid = task.pid;
    tracing::info!("Dumping task (pid: {pid})");
    let stat = proc::read_stat(pid)?;
    let status: ProcStatus = proc::read_status(pid)?;
    let vmas = read_vmas(pid)?;
    let vma_list = vma_entries(ctx, pid, &vmas)?;
    tracing::debug!("pid {pid}: {} mappings", vmas.len());
    ctx.check_fail(FailPoint::Mappings)?;

    let (ids, new_files) = kobj_ids(ctx, pid)?;
    check_namespaces(ctx, pid, &ids)?;
    if new_files {
        ctx.files.net_ns_id = ids.net_ns_id;
        let fdinfo = ctx.files.dump_fds(pid)?;
        let mut w = ctx
            .images
            .writer(ImageKind::Fdinfo, u64::from(ids.files_id))?;
        for e in &fdinfo {
            w.write_entry(e)?;
        }
        w.finish()?;
        tracing::debug!("pid {pid}: {} file descriptors", fdinfo.len());
    }
    ctx.check_fail(FailPoint::Files)?;

    let timers = proc::read_timers(pid)?;
    let facts = task_facts(pid, &stat, task, ctx.cg_set)?;

    // Thread state: ptrace side first, then remote syscalls per thread.
    let mut threads: Vec<ThreadState> = Vec::with_capacity(task.threads.len());
    let mut process = None;
    for tracee in task.threads.iter_mut() {
        let mut state = collect_thread(pid, tracee)?;
        let is_leader = tracee.tid() == pid;
        let mut session = RemoteSession::new(tracee).map_err(|source| DumpError::Compel {
            pid,
            what: format!("starting remote syscalls in thread {}", state.tid),
            source,
        })?;
        let result = (|| -> Result<(), DumpError> {
            collect_thread_remote(&mut session, &mut state)?;
            if is_leader {
                process = Some(collect_process_remote(&mut session, &timers)?);
                for fd in ctx.files.pending_ttys(pid) {
                    let view = crate::files::owner_view(&mut session, fd).map_err(|source| {
                        DumpError::Compel {
                            pid,
                            what: format!("reading the terminal state of fd {fd}"),
                            source,
                        }
                    })?;
                    ctx.files.set_tty_owner_view(pid, fd, view);
                }
            }
            Ok(())
        })();
        let closed = session.close().map_err(|source| DumpError::Compel {
            pid,
            what: format!("ending remote syscalls in thread {}", state.tid),
            source,
        });
        result?;
        closed?;
        threads.push(state);
    }
    ctx.check_fail(FailPoint::Threads)?;
    let process = process.ok_or(DumpError::NoThreads { pid })?;
    let leader = threads
        .iter()
        .find(|t| t.tid == pid)
        .ok_or(DumpError::NoThreads { pid })?;

    ctx.write_one(ImageKind::Ids, pid as u64, &ids)?;
    let seccomp_of = |tid: i32| {
        ctx.seccomp
            .get(&tid)
            .copied()
            .unwrap_or(crate::seccomp::ThreadSeccomp {
                mode: 0,
                filter: None,
            })
    };
    ctx.write_one(
        ImageKind::Core,
        pid as u64,
        &leader_core(leader, &process, &facts, seccomp_of(pid)),
    )?;
    for t in threads.iter().filter(|t| t.tid != pid) {
        ctx.write_one(
            ImageKind::Core,
            t.tid as u64,
            &thread_core_entry(t, ctx.cg_set, seccomp_of(t.tid)),
        )?;
    }

    tracing::debug!("pid {pid}: state of {} threads collected", threads.len());
    let sps = threads.iter().map(|t| t.regs.sp).collect();
    let before = ctx.pages;
    dump_pages(ctx, pid, &vmas, sps, true)?;
    tracing::debug!(
        "pid {pid}: {} pages written ({} filled in place, {} of them by pwrite), {} left in \
         the parent images, in {:.1} ms ({:.1} ms storing)",
        ctx.pages.written - before.written,
        ctx.pages.filled_in_place - before.filled_in_place,
        ctx.pages.written_in_place - before.written_in_place,
        ctx.pages.skipped_parent - before.skipped_parent,
        (ctx.pages.memdump - before.memdump).as_secs_f64() * 1e3,
        (ctx.pages.memwrite - before.memwrite).as_secs_f64() * 1e3,
    );
    ctx.check_fail(FailPoint::Pages)?;

    let mut auxv = proc::parse_auxv(&proc::read_bytes(proc::proc_path(pid, "auxv"))?);
    auxv.truncate(AT_VECTOR_SIZE);
    let exe_file_id = ctx.files.special_file(pid, &format!("/proc/{pid}/exe"))?;
    let mm = MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: process.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id,
        mm_saved_auxv: auxv,
        vmas: vma_list,
        dumpable: Some(process.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(process.thp_disabled),
    };
    ctx.write_one(ImageKind::Mm, pid as u64, &mm)?;

    let cwd_id = ctx.files.special_file(pid, &format!("/proc/{pid}/cwd"))?;
    let root_id = ctx.files.special_file(pid, &format!("/proc/{pid}/root"))?;
    let fs = FsEntry {
        cwd_id,
        root_id,
        umask: status.umask,
    };
    ctx.write_one(ImageKind::Fs, pid as u64, &fs)?;

    Ok(TaskSummary {
        pid,
        threads: threads.iter().map(|t| t.tid).collect(),
        pgid: stat.pgid,
        sid: stat.sid,
    })
}

/// Pre-dump of one process: its private memory only (pagemap + pages), read
/// while frozen, in CRIU's pre-dump page-pipe layout. Stopped processes are
/// skipped, as CRIU does.
pub fn pre_dump_task(ctx: &mut Context<'_>, task: &mut FrozenTask) -> Result<(), DumpError> {
    let pid = task.pid;
    if task.was_stopped {
        tracing::warn!("Pre-dump skips the stopped process {pid}.");
        return Ok(());
    }
    let vmas = read_vmas(pid)?;
    let mut sps = Vec::with_capacity(task.threads.len());
    for t in &task.threads {
        let regs = t.regs().map_err(|source| DumpError::Compel {
            pid,
            what: format!("reading the registers of thread {}", t.tid()),
            source,
        })?;
        sps.push(regs.sp);
    }
    dump_pages(ctx, pid, &vmas, sps, false)?;
    if ctx.track_new {
        ctx.tracking.register_new(task, &vmas)?;
    }
    Ok(())
}
