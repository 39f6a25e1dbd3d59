//! Rebuilding the address space of a blank task: drop its rseq, unmap
//! everything but the trampoline and the vdso, move the vdso to the dumped
//! place, map every dumped VMA, fill the pages, restore protections and madvise
//! bits, and set the mm fields with PR_SET_MM_MAP.

use std::collections::HashMap;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use criu_proto::{MmEntry, VmaEntry};
use tracing::debug;

use crate::files::TracerFiles;
use crate::images::{status, vma_takes_pages, PageRun, RestoreImages, TaskImages, PAGE_SIZE};
use crate::layout::{self, LayoutError, VdsoLayout, TRAMPOLINE_LEN};
use crate::task::{BatchCall, Proc, RemoteError};
use crate::vdso::VdsoIdentity;

/// How page contents get into the restored task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageFill {
    /// One remote `preadv` per contiguous run of the pages image, executed by
    /// the task itself from the pages image fd installed in it.
    #[default]
    RemotePreadv,
    /// The tracer reads the pages image and writes with process_vm_writev.
    ProcessVmWritev,
}

/// The address space could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A remote call failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Planning failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Fewer bytes than needed came from a pages image.
    #[error("pid {pid}: reading {len} bytes for {vaddr:#x} from {file} at offset {offset} returned {got}")]
    ShortRead {
        /// The task.
        pid: i32,
        /// The pages image.
        file: String,
        /// The file offset.
        offset: u64,
        /// First address of the run.
        vaddr: u64,
        /// Bytes wanted.
        len: u64,
        /// Bytes read.
        got: u64,
    },
    /// The tracer could not read a pages image or write to the task.
    #[error("pid {pid}: {op} ({file} offset {offset}): {source}")]
    Io {
        /// The task.
        pid: i32,
        /// What failed.
        op: &'static str,
        /// The pages image.
        file: String,
        /// The file offset.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
/// Most iovecs in one preadv (UIO_MAXIOV).
const MAX_IOVECS: usize = 1024;
/// Most bytes in one preadv (below MAX_RW_COUNT, and CRIU's 128 MiB cap).
const MAX_READ: u64 = 128 << 20;

/// Bits of mmap flags a VMA is mapped again with.
fn mmap_flags(vma: &VmaEntry) -> u64 {
    let mut keep = (libc::MAP_SHARED
        | libc::MAP_PRIVATE
        | libc::MAP_ANONYMOUS
        | libc::MAP_GROWSDOWN
        | libc::MAP_NORESERVE
        | libc::MAP_LOCKED) as u32;
    if is_file_backed(vma) {
        // Shared anonymous memory comes back as a memfd mapping.
        keep &= !(libc::MAP_ANONYMOUS as u32);
    }
    u64::from(vma.flags & keep) | MAP_FIXED_NOREPLACE
}

/// Whether the VMA maps a file (regular or memfd) rather than anonymous memory.
pub(crate) fn is_file_backed(vma: &VmaEntry) -> bool {
    vma.status & (status::FILE_PRIVATE | status::FILE_SHARED) != 0
}

/// Whether a VMA is one of the kernel's special mappings handled by moving.
fn is_special(vma: &VmaEntry) -> bool {
    vma.status & (status::VDSO | status::VVAR | status::VSYSCALL) != 0
}

/// Restores the address space of `proc` (a blank task) from `task`.
pub(crate) fn restore_memory(
    proc: &Proc,
    task: &TaskImages,
    images: &RestoreImages,
    files: &TracerFiles,
    fill: PageFill,
) -> Result<(), MemoryError> {
    let mm = task.mm.as_ref().expect("alive tasks have an mm");
    let started = Instant::now();
    let pid = proc.pid;

    // 1. The rseq registration the blank task may have inherited (see
    // `drop_rseq`).
    drop_rseq(proc)?;

    // 2. Unmap everything but the trampoline and the running vdso.
    let maps = layout::read_maps(&pid.to_string())?;
    let running = VdsoLayout::from_maps(&maps);
    let trampoline = proc.gadget..proc.gadget + TRAMPOLINE_LEN;
    let mut keep = vec![trampoline.clone()];
    let moves = match &running {
        Some(running) => {
            let moves = layout::plan_vdso(running, &mm.vmas)?;
            if moves.is_some() {
                keep.push(running.span());
            }
            moves
        }
        None => None,
    };
    unmap_all_but(proc, &maps, &keep)?;

    // 3. Move vvar, vvar_vclock and vdso together to the dumped addresses.
    if let (Some(moves), Some(running)) = (moves, &running) {
        move_vdso(proc, &moves, running, mm, &trampoline)?;
    }

    // 4. The files the VMAs map, the exe and the pages images, in the task.
    let mut wanted: Vec<(u32, i32)> = Vec::new();
    for vma in mm.vmas.iter().filter(|v| !is_special(v)) {
        if is_file_backed(vma) {
            let key = (vma.shmid as u32, mapping_access(vma));
            if !wanted.contains(&key) {
                wanted.push(key);
            }
        }
    }
    if mm.exe_file_id != 0 && !wanted.iter().any(|&(id, _)| id == mm.exe_file_id) {
        wanted.push((mm.exe_file_id, libc::O_RDONLY));
    }
    let mut send: Vec<BorrowedFd<'_>> = wanted
        .iter()
        .map(|&(id, access)| files.mapping_fd(id, access))
        .collect();
    let mut pages_files: Vec<usize> = task.pages.iter().map(|r| r.file).collect();
    pages_files.sort_unstable();
    pages_files.dedup();
    if fill == PageFill::RemotePreadv {
        send.extend(
            pages_files
                .iter()
                .map(|&i| images.pages_files[i].file.as_fd()),
        );
    }
    let numbers = proc.install(&send)?;
    let mapping_fds: HashMap<(u32, i32), i32> = wanted
        .iter()
        .copied()
        .zip(numbers.iter().copied())
        .collect();
    let pages_fds: HashMap<usize, i32> = pages_files
        .iter()
        .copied()
        .zip(numbers[wanted.len()..].iter().copied())
        .collect();

    // 5. Map every VMA, writable where pages are to be filled.
    let filled = |vma: &VmaEntry| {
        task.pages
            .iter()
            .any(|r| r.vaddr < vma.end && r.vaddr + r.nr_pages * PAGE_SIZE > vma.start)
    };
    // One remote batch for all of them (a task has dozens of VMAs; one ptrace round trip each was
    // most of a small restore).
    let mut reprotect = Vec::new();
    let mut maps = Vec::new();
    let mut mapped = Vec::new();
    for vma in mm.vmas.iter().filter(|v| !is_special(v)) {
        let len = vma.end - vma.start;
        let mut prot = u64::from(vma.prot);
        if filled(vma) && vma.prot & libc::PROT_WRITE as u32 == 0 {
            prot |= libc::PROT_WRITE as u64;
            reprotect.push(vma);
        }
        let (fd, offset) = if is_file_backed(vma) {
            (
                mapping_fds[&(vma.shmid as u32, mapping_access(vma))] as u64,
                vma.pgoff,
            )
        } else {
            (u64::MAX, 0)
        };
        maps.push(BatchCall::new(
            format!(
                "mmap({:#x}-{:#x}, prot {prot:#x}, flags {:#x})",
                vma.start,
                vma.end,
                mmap_flags(vma)
            ),
            libc::SYS_mmap,
            &[vma.start, len, prot, mmap_flags(vma), fd, offset],
        ));
        mapped.push(vma.start);
    }
    for (got, want) in proc.call_batch(&maps)?.into_iter().zip(mapped) {
        if got != want {
            return Err(RemoteError::UnexpectedStop {
                tid: pid,
                call: format!("mmap({want:#x})"),
                what: format!("mapped at {got:#x}"),
            }
            .into());
        }
    }

    // 6. Page contents.
    let runs: Vec<PageRun> = task
        .pages
        .iter()
        .copied()
        .filter(|r| !in_special(mm, r))
        .collect();
    let fill_started = Instant::now();
    match fill {
        PageFill::RemotePreadv => fill_remote(proc, images, &runs, &pages_fds)?,
        PageFill::ProcessVmWritev => fill_pvw(proc, images, &runs)?,
    }
    let fill_time = fill_started.elapsed();

    // 7. Final protections and madvise bits (one batch).
    let mut finals: Vec<BatchCall> = reprotect
        .into_iter()
        .map(|vma| {
            BatchCall::new(
                format!("mprotect({:#x})", vma.start),
                libc::SYS_mprotect,
                &[vma.start, vma.end - vma.start, vma.prot.into()],
            )
        })
        .collect();
    for (range, advice) in madvise_runs(mm.vmas.iter().filter(|v| !is_special(v))) {
        finals.push(BatchCall::new(
            format!("madvise({:#x}-{:#x}, {advice})", range.start, range.end),
            libc::SYS_madvise,
            &[range.start, range.end - range.start, advice],
        ));
    }
    proc.call_batch(&finals)?;

    // 8. mm fields, auxv and exe.
    let exe_fd = if mm.exe_file_id != 0 {
        mapping_fds[&(mm.exe_file_id, libc::O_RDONLY)]
    } else {
        -1
    };
    // The kernel refuses to replace the exe while the old one is mapped, and
    // the old one is mapped when it is the same file as the dumped exe (a
    // task restored by a process running the same program): keep it then.
    let same_file = |a: &str, b: &str| {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    };
    let exe_fd = if exe_fd >= 0
        && same_file(
            &format!("/proc/{pid}/exe"),
            &format!("/proc/{pid}/fd/{exe_fd}"),
        ) {
        -1
    } else {
        exe_fd
    };
    set_mm_map(proc, mm, exe_fd)?;

    // 9. Close the fds installed for this.
    let mut temps: Vec<i32> = numbers;
    temps.sort_unstable();
    close_fds(proc, &temps)?;
    debug!(pid, elapsed = ?started.elapsed(), fill = ?fill_time, runs = runs.len(), "memory restored");
    Ok(())
}

/// Drops the rseq registration a blank task inherited from the tracer thread
/// it was cloned from: the kernel would write into that area once it is
/// unmapped (and a child cloned later inherits the registration again).
fn drop_rseq(proc: &Proc) -> Result<(), RemoteError> {
    let (rseq_ptr, rseq_len, rseq_sig) = proc.threads[0].rseq()?;
    if rseq_len != 0 {
        proc.call(
            "rseq(unregister)",
            libc::SYS_rseq,
            &[rseq_ptr, rseq_len.into(), 1, rseq_sig.into()],
        )?;
    }
    Ok(())
}

/// Unmaps every range below TASK_SIZE outside `keep`; a range that holds no
/// mapping in `maps` (the task's current /proc/PID/maps) costs no remote call.
fn unmap_all_but(
    proc: &Proc,
    maps: &[layout::MapsLine],
    keep: &[Range<u64>],
) -> Result<(), RemoteError> {
    for range in layout::complement(keep) {
        if !maps.iter().any(|m| layout::overlaps(&m.range, &range)) {
            continue;
        }
        proc.call(
            &format!("munmap({:#x}-{:#x})", range.start, range.end),
            libc::SYS_munmap,
            &[range.start, range.end - range.start],
        )?;
    }
    Ok(())
}

/// Sheds the copy of the tracer's address space a blank root starts with:
/// everything but the trampoline and the running vdso is unmapped right after
/// the root exists. Every task of the tree is cloned from the root or from its
/// descendants, so each clone then copies almost no page tables (a fork of the
/// tracer copy cost about 0.5 ms per task here) and each task's own
/// [`restore_memory`] finds nothing left to unmap.
pub(crate) fn shed_tracer_copy(proc: &Proc) -> Result<(), MemoryError> {
    drop_rseq(proc)?;
    let maps = layout::read_maps(&proc.pid.to_string())?;
    let trampoline = proc.gadget..proc.gadget + TRAMPOLINE_LEN;
    let mut keep = vec![trampoline];
    keep.extend(VdsoLayout::from_maps(&maps).map(|running| running.span()));
    unmap_all_but(proc, &maps, &keep)?;
    Ok(())
}

/// The madvise calls that give `vmas` (in address order) their dumped
/// advice bits: one call per advice and run of adjacent VMAs that all carry
/// it, instead of one per VMA and bit (a thread stack and its guard page
/// carry the same bits, and the stacks of a process's threads lie next to
/// each other). Each VMA still gets its bits in increasing order.
fn madvise_runs<'v>(vmas: impl Iterator<Item = &'v VmaEntry>) -> Vec<(Range<u64>, u64)> {
    let vmas: Vec<&VmaEntry> = vmas.collect();
    let mut calls = Vec::new();
    for advice in 0..64u64 {
        let mut run: Option<Range<u64>> = None;
        for vma in &vmas {
            if vma.madv.unwrap_or(0) & (1 << advice) == 0 {
                calls.extend(run.take().map(|r| (r, advice)));
                continue;
            }
            run = match run.take() {
                Some(r) if r.end == vma.start => Some(r.start..vma.end),
                Some(r) => {
                    calls.push((r, advice));
                    Some(vma.start..vma.end)
                }
                None => Some(vma.start..vma.end),
            };
        }
        calls.extend(run.map(|r| (r, advice)));
    }
    calls
}

/// The access mode the file of a file-backed VMA is opened with for mmap.
pub(crate) fn mapping_access(vma: &VmaEntry) -> i32 {
    if vma.status & status::MEMFD != 0 {
        libc::O_RDWR
    } else if vma.status & status::FILE_SHARED != 0 {
        match vma.fdflags {
            Some(flags) => flags as i32 & libc::O_ACCMODE,
            None if vma.prot & libc::PROT_WRITE as u32 != 0 => libc::O_RDWR,
            None => libc::O_RDONLY,
        }
    } else {
        libc::O_RDONLY
    }
}

fn in_special(mm: &MmEntry, run: &PageRun) -> bool {
    mm.vmas
        .iter()
        .any(|v| is_special(v) && v.start <= run.vaddr && run.vaddr < v.end)
}

/// mremaps the running vvar/vclock/vdso to their dumped places, through a
/// temporary spot if the destination overlaps where they are now.
fn move_vdso(
    proc: &Proc,
    moves: &[(u64, u64, u64)],
    running: &VdsoLayout,
    mm: &MmEntry,
    trampoline: &Range<u64>,
) -> Result<(), MemoryError> {
    if moves.iter().all(|&(from, _, to)| from == to) {
        return Ok(());
    }
    let span = running.span();
    let target_start = moves.iter().map(|m| m.2).min().unwrap_or(0);
    let target = target_start..target_start + (span.end - span.start);
    let mut current: Vec<(u64, u64, u64)> = moves.to_vec();
    if layout::overlaps(&target, &span) {
        let mut occupied: Vec<Range<u64>> = mm.vmas.iter().map(|v| v.start..v.end).collect();
        occupied.push(span.clone());
        occupied.push(trampoline.clone());
        let temp = layout::find_hole(&occupied, span.end - span.start, "temporary vdso spot")?;
        for entry in current.iter_mut() {
            let to = temp + (entry.0 - span.start);
            mremap(proc, entry.0, entry.1, to)?;
            entry.0 = to;
        }
    }
    for &(from, len, to) in &current {
        if from != to {
            mremap(proc, from, len, to)?;
        }
    }
    Ok(())
}

fn mremap(proc: &Proc, from: u64, len: u64, to: u64) -> Result<(), RemoteError> {
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    proc.call(
        &format!("mremap({from:#x}+{len:#x} -> {to:#x})"),
        libc::SYS_mremap,
        &[from, len, len, flags, to],
    )?;
    Ok(())
}

/// One remote preadv per group of runs that are contiguous in one pages file.
fn fill_remote(
    proc: &Proc,
    images: &RestoreImages,
    runs: &[PageRun],
    pages_fds: &HashMap<usize, i32>,
) -> Result<(), MemoryError> {
    let mut index = 0;
    while index < runs.len() {
        let first = runs[index];
        let mut iovecs: Vec<(u64, u64)> = Vec::new();
        let mut total = 0u64;
        let mut next_offset = first.offset;
        while index < runs.len() {
            let run = runs[index];
            let len = run.nr_pages * PAGE_SIZE;
            if run.file != first.file
                || run.offset != next_offset
                || total + len > MAX_READ && total > 0
            {
                break;
            }
            let count = iovecs.len();
            match iovecs.last_mut() {
                Some(last) if last.0 + last.1 == run.vaddr => last.1 += len,
                _ if count == MAX_IOVECS => break,
                _ => iovecs.push((run.vaddr, len)),
            }
            total += len;
            next_offset += len;
            index += 1;
        }
        let bytes: Vec<u8> = iovecs
            .iter()
            .flat_map(|&(base, len)| base.to_le_bytes().into_iter().chain(len.to_le_bytes()))
            .collect();
        let addr = proc.put(0, &bytes)?;
        let fd = pages_fds[&first.file];
        let got = proc.call(
            &format!(
                "preadv({}, {} iovecs, offset {})",
                images.pages_files[first.file].label,
                iovecs.len(),
                first.offset
            ),
            libc::SYS_preadv,
            &[fd as u64, addr, iovecs.len() as u64, first.offset, 0],
        )?;
        if got != total {
            return Err(MemoryError::ShortRead {
                pid: proc.pid,
                file: images.pages_files[first.file].label.clone(),
                offset: first.offset,
                vaddr: first.vaddr,
                len: total,
                got,
            });
        }
    }
    Ok(())
}

/// The tracer reads the pages and writes them with process_vm_writev.
fn fill_pvw(proc: &Proc, images: &RestoreImages, runs: &[PageRun]) -> Result<(), MemoryError> {
    use nix::sys::uio::{process_vm_writev, RemoteIoVec};
    use std::io::IoSlice;
    let mut buf = Vec::new();
    for run in runs {
        let len = (run.nr_pages * PAGE_SIZE) as usize;
        buf.resize(len, 0);
        let pages = &images.pages_files[run.file];
        pages
            .file
            .read_exact_at(&mut buf, run.offset)
            .map_err(|source| MemoryError::Io {
                pid: proc.pid,
                op: "reading pages",
                file: pages.label.clone(),
                offset: run.offset,
                source,
            })?;
        let local = [IoSlice::new(&buf)];
        let remote = [RemoteIoVec {
            base: run.vaddr as usize,
            len,
        }];
        let written = process_vm_writev(nix::unistd::Pid::from_raw(proc.pid), &local, &remote)
            .map_err(|e| MemoryError::Io {
                pid: proc.pid,
                op: "process_vm_writev",
                file: pages.label.clone(),
                offset: run.offset,
                source: e.into(),
            })?;
        if written != len {
            return Err(MemoryError::ShortRead {
                pid: proc.pid,
                file: pages.label.clone(),
                offset: run.offset,
                vaddr: run.vaddr,
                len: len as u64,
                got: written as u64,
            });
        }
    }
    Ok(())
}

/// PR_SET_MM_MAP with the dumped mm fields, auxv and exe.
fn set_mm_map(proc: &Proc, mm: &MmEntry, exe_fd: i32) -> Result<(), RemoteError> {
    const AUXV_OFFSET: u64 = 1024;
    let auxv: Vec<u8> = mm
        .mm_saved_auxv
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let auxv_addr = proc.put(AUXV_OFFSET, &auxv)?;
    let mut map = Vec::with_capacity(104);
    for field in [
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
    ] {
        map.extend_from_slice(&field.to_le_bytes());
    }
    map.extend_from_slice(&(if auxv.is_empty() { 0 } else { auxv_addr }).to_le_bytes());
    map.extend_from_slice(&(auxv.len() as u32).to_le_bytes());
    map.extend_from_slice(&(exe_fd as u32).to_le_bytes());
    let addr = proc.put(0, &map)?;
    proc.call(
        "prctl(PR_SET_MM, PR_SET_MM_MAP)",
        libc::SYS_prctl,
        &[
            libc::PR_SET_MM as u64,
            libc::PR_SET_MM_MAP as u64,
            addr,
            map.len() as u64,
            0,
        ],
    )?;
    Ok(())
}

/// Closes the given (sorted) fds of the task, a contiguous range per call.
pub(crate) fn close_fds(proc: &Proc, sorted: &[i32]) -> Result<(), RemoteError> {
    let mut index = 0;
    while index < sorted.len() {
        let first = sorted[index];
        let mut last = first;
        while index + 1 < sorted.len() && sorted[index + 1] <= last + 1 {
            index += 1;
            last = sorted[index];
        }
        index += 1;
        proc.call(
            &format!("close_range({first}, {last})"),
            libc::SYS_close_range,
            &[first as u64, last as u64, 0],
        )?;
    }
    Ok(())
}

/// The running vdso compared with the dumped one, so that a dump from another kernel is refused
/// before anything is created. They must have the same code and function symbols
/// ([`crate::vdso`]); other bytes (the build-id of a rebuilt kernel) may differ.
pub(crate) fn check_vdso_contents(
    images: &RestoreImages,
    running: &VdsoLayout,
) -> Result<(), LayoutError> {
    let own = std::fs::File::open("/proc/self/mem").ok();
    let mut running_identity = None;
    for task in &images.tasks {
        let Some(mm) = &task.mm else { continue };
        let Some(vdso) = mm
            .vmas
            .iter()
            .find(|v| v.status & status::VDSO != 0 && v.status & status::VVAR == 0)
        else {
            continue;
        };
        layout::plan_vdso(running, &mm.vmas)?;
        let (Some(own), true) = (&own, vma_takes_pages(vdso)) else {
            continue;
        };
        let len = (vdso.end - vdso.start) as usize;
        let mut dumped = vec![0u8; len];
        let mut any_dumped = false;
        for run in task
            .pages
            .iter()
            .filter(|r| r.vaddr >= vdso.start && r.vaddr < vdso.end)
        {
            let at = (run.vaddr - vdso.start) as usize;
            let Some(slice) = at
                .checked_add((run.nr_pages * PAGE_SIZE) as usize)
                .and_then(|end| dumped.get_mut(at..end))
            else {
                continue;
            };
            if images.pages_files[run.file]
                .file
                .read_exact_at(slice, run.offset)
                .is_ok()
            {
                any_dumped = true;
            }
        }
        if !any_dumped {
            continue;
        }
        let mismatch = |why: String| LayoutError::VdsoMismatch {
            running: format!("vdso at {:#x} of this kernel", running.vdso.start),
            dumped: format!("vdso of pid {} at {:#x}: {why}", task.pid, vdso.start),
        };
        if running_identity.is_none() {
            let mut live = vec![0u8; len];
            own.read_exact_at(&mut live, running.vdso.start)
                .map_err(|e| mismatch(format!("cannot read the running vdso: {e}")))?;
            running_identity = Some((
                VdsoIdentity::parse(&live)
                    .map_err(|e| mismatch(format!("the running vdso is {e}")))?,
                live,
            ));
        }
        let Some((identity, live)) = &running_identity else {
            continue;
        };
        if dumped == *live {
            continue;
        }
        let dumped_identity = VdsoIdentity::parse(&dumped)
            .map_err(|e| mismatch(format!("the dumped vdso is {e}")))?;
        if dumped_identity != *identity {
            return Err(mismatch(
                "its code or function symbols differ (a dump from another kernel)".into(),
            ));
        }
        tracing::info!(
            "The vdso of pid {} differs from this kernel's outside its code and symbols (another build of the same kernel); using this kernel's",
            task.pid
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, madv: Option<u64>) -> VmaEntry {
        VmaEntry {
            start,
            end,
            madv,
            ..VmaEntry::default()
        }
    }

    #[test]
    fn madvise_runs_merge_adjacent_vmas_with_the_same_advice() {
        let nohuge = 1 << libc::MADV_NOHUGEPAGE;
        let dontfork = 1 << libc::MADV_DONTFORK;
        let vmas = [
            vma(0x1000, 0x2000, Some(nohuge)),
            vma(0x2000, 0x5000, Some(nohuge | dontfork)),
            vma(0x5000, 0x6000, Some(nohuge)),
            // A hole before the next one: a new run.
            vma(0x8000, 0x9000, Some(nohuge)),
            vma(0x9000, 0xa000, None),
            vma(0xa000, 0xb000, Some(dontfork)),
        ];
        let calls = madvise_runs(vmas.iter());
        assert_eq!(
            calls,
            vec![
                (0x2000..0x5000, libc::MADV_DONTFORK as u64),
                (0xa000..0xb000, libc::MADV_DONTFORK as u64),
                (0x1000..0x6000, libc::MADV_NOHUGEPAGE as u64),
                (0x8000..0x9000, libc::MADV_NOHUGEPAGE as u64),
            ]
        );
    }
}
