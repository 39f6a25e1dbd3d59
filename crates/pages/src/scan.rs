//! Which pages of a process hold data worth dumping: PAGEMAP_SCAN ranges, with a fallback that
//! reads `/proc/PID/pagemap` entries and applies the same rules.
//!
//! A page is dumped when it is present or swapped, is not the shared zero page, is not a
//! guard-region marker, and is not a page-cache page (in a private file mapping only the
//! copied-on-write anonymous pages count). The whole of the vdso is dumped regardless, as CRIU
//! does, because a restore may need to build a proxy from it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use crate::sys::{self, PageRegion, PmScanArg};
use crate::vma::{VmFlags, Vma};
use crate::PAGE_SIZE;

/// PAGEMAP_SCAN page categories (linux/fs.h).
pub mod category {
    /// The page is write-protect enabled (uffd-wp async registered).
    pub const WPALLOWED: u64 = 1 << 0;
    /// The page was written since it was last write-protected.
    pub const WRITTEN: u64 = 1 << 1;
    /// The page is file-backed (page cache), not anonymous.
    pub const FILE: u64 = 1 << 2;
    /// The page is present in memory.
    pub const PRESENT: u64 = 1 << 3;
    /// The page is swapped out (or a swap-type marker).
    pub const SWAPPED: u64 = 1 << 4;
    /// The page is the shared zero page.
    pub const PFNZERO: u64 = 1 << 5;
    /// The page is part of a huge page.
    pub const HUGE: u64 = 1 << 6;
    /// Soft-dirty (never set on kernels without CONFIG_MEM_SOFT_DIRTY).
    pub const SOFT_DIRTY: u64 = 1 << 7;
    /// A MADV_GUARD_INSTALL guard marker (kernel 6.14+).
    pub const GUARD: u64 = 1 << 8;
}

/// PAGEMAP_SCAN flag: write-protect the matched pages (re-arm dirty tracking).
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// PAGEMAP_SCAN flag: fail if a page in range is not registered for async uffd-wp.
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
const PM_GUARD_REGION: u64 = 1 << 58;
const PM_PFN_MASK: u64 = (1 << 55) - 1;
/// The swap "type" bits of a non-present pagemap entry (the low MAX_SWAPFILES_SHIFT bits of the
/// frame field, shown only with CAP_SYS_ADMIN).
const PM_SWAP_TYPE_MASK: u64 = (1 << 5) - 1;
/// The swap type of PTE markers (SWP_PTE_MARKER, always the last of the 32 types). A
/// uffd-wp marker has marker bit 0 set, a guard marker another bit.
const SWP_PTE_MARKER: u64 = PM_SWAP_TYPE_MASK;

/// Errors while finding present pages.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Opening `/proc/<pid>/pagemap` failed.
    #[error("cannot open /proc/{pid}/pagemap: {source}")]
    Open {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// The PAGEMAP_SCAN ioctl failed on a range.
    #[error("PAGEMAP_SCAN of pid {pid} range {start:#x}-{end:#x} failed: {source}")]
    Scan {
        pid: i32,
        start: u64,
        end: u64,
        #[source]
        source: io::Error,
    },
    /// Reading pagemap entries failed.
    #[error("reading /proc/{pid}/pagemap at offset {offset:#x} failed: {source}")]
    Read {
        pid: i32,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The kernel reported a region outside the requested range.
    #[error(
        "PAGEMAP_SCAN of pid {pid} returned region {start:#x}-{end:#x} outside the scanned range"
    )]
    BogusRegion { pid: i32, start: u64, end: u64 },
    /// PAGEMAP_SCAN was explicitly requested but the kernel does not support it.
    #[error("PAGEMAP_SCAN is not supported for pid {pid}: {source}")]
    Unsupported {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// Probing the zero page's PFN failed.
    #[error("cannot find the zero page PFN through /proc/self/pagemap: {0}")]
    ZeroPfn(#[source] io::Error),
}

/// A run of whole pages: `nr_pages` pages starting at `start` (page aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageRange {
    /// First address (page aligned).
    pub start: u64,
    /// Number of 4 KiB pages.
    pub nr_pages: u64,
}

impl PageRange {
    /// A range of `nr_pages` pages at `start`.
    pub fn new(start: u64, nr_pages: u64) -> Self {
        Self { start, nr_pages }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.nr_pages * PAGE_SIZE
    }

    /// Length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.nr_pages * PAGE_SIZE
    }
}

/// How [`present_ranges_with`] finds pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMethod {
    /// PAGEMAP_SCAN, falling back to reading pagemap when the kernel lacks the ioctl.
    Auto,
    /// PAGEMAP_SCAN only; [`ScanError::Unsupported`] without it.
    PagemapScan,
    /// Read 8-byte `/proc/PID/pagemap` entries.
    PagemapRead,
}

/// The pages of every private-dumpable VMA in `vmas` ([`Vma::dumps_private_pages`]) that hold
/// data: present or swapped, not the zero page, not unwritten file pages. Ranges are sorted,
/// never cross a VMA boundary, and adjacent pages within a VMA are merged.
pub fn present_ranges(pid: i32, vmas: &[Vma]) -> Result<Vec<PageRange>, ScanError> {
    present_ranges_with(pid, vmas, ScanMethod::Auto)
}

/// [`present_ranges`] with an explicit method (the fallback is tested against the ioctl).
pub fn present_ranges_with(
    pid: i32,
    vmas: &[Vma],
    method: ScanMethod,
) -> Result<Vec<PageRange>, ScanError> {
    let pagemap = Pagemap::open(pid)?;
    pagemap.present_ranges(vmas, method)
}

/// Dirty-page tracking for pre-dumps, through uffd-wp async (CONFIG_MEM_SOFT_DIRTY is off on
/// our kernels, see KERNEL.md 2).
///
/// Preconditions, set up by the caller inside the target (remote syscalls):
/// `userfaultfd()`, `UFFDIO_API` with `UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED`,
/// `UFFDIO_REGISTER` with `UFFDIO_REGISTER_MODE_WP` on every VMA to track; then the uffd is moved
/// to the dumper (pidfd_getfd) and **kept open** for as long as tracking is wanted (closing the
/// last reference drops tracking and the next scan fails with EPERM). VMAs created later must
/// be registered before each iteration.
///
/// Returns the pages of `vmas` (private-dumpable ones, except the vdso) written since they were last
/// write-protected; with `rearm` the same ioctl write-protects them again atomically
/// (`PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC`), so the next call reports only newer writes.
/// `pagemap` is an open `/proc/PID/pagemap` of the target; `pid` only names it in errors.
///
/// With `WP_UNPOPULATED`, re-arming puts a uffd-wp PTE marker on never-touched pages, which
/// PAGEMAP_SCAN reports as "swapped"; [`present_ranges`] recognises those markers through their
/// pagemap entries and leaves them out (it cannot when PFNs are hidden, i.e. without
/// CAP_SYS_ADMIN: they are then listed and read as zero pages).
pub fn written_ranges(
    pagemap: BorrowedFd<'_>,
    pid: i32,
    vmas: &[Vma],
    rearm: bool,
) -> Result<Vec<PageRange>, ScanError> {
    let template = PmScanArg {
        flags: if rearm {
            PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC
        } else {
            0
        },
        category_mask: category::WRITTEN,
        return_mask: category::WRITTEN,
        ..PmScanArg::default()
    };
    let mut out = Vec::new();
    let mut regions = vec![PageRegion::default(); SCAN_BATCH];
    // The vdso is dumped whole every time and cannot be registered with userfaultfd.
    let tracked = vmas
        .iter()
        .filter(|vma| vma.dumps_private_pages() && !vma.dumps_entire_vma());
    for vma in tracked {
        scan_range(
            pagemap,
            &template,
            vma.start,
            vma.end,
            &mut regions,
            &mut out,
        )
        .map_err(|error| error.into_scan_error(pid, vma))?;
    }
    Ok(out)
}

/// Number of `page_region`s per PAGEMAP_SCAN call.
const SCAN_BATCH: usize = 1024;

/// Number of pagemap entries read per pread in the fallback.
const PAGEMAP_READ_BATCH: usize = 64 * 1024;

/// An open `/proc/PID/pagemap`.
#[derive(Debug)]
pub struct Pagemap {
    pid: i32,
    file: File,
}

enum ScanFailure {
    Ioctl(io::Error),
    Bogus { start: u64, end: u64 },
}

impl ScanFailure {
    /// The public error for a failed scan of `vma` of `pid`.
    fn into_scan_error(self, pid: i32, vma: &Vma) -> ScanError {
        match self {
            ScanFailure::Ioctl(source) => ScanError::Scan {
                pid,
                start: vma.start,
                end: vma.end,
                source,
            },
            ScanFailure::Bogus { start, end } => ScanError::BogusRegion { pid, start, end },
        }
    }
}

impl Pagemap {
    /// Opens `/proc/<pid>/pagemap`.
    pub fn open(pid: i32) -> Result<Self, ScanError> {
        let file = File::open(format!("/proc/{pid}/pagemap"))
            .map_err(|source| ScanError::Open { pid, source })?;
        Ok(Self { pid, file })
    }

    /// The pid this pagemap belongs to.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// See [`written_ranges`].
    pub fn written_ranges(&self, vmas: &[Vma], rearm: bool) -> Result<Vec<PageRange>, ScanError> {
        written_ranges(self.file.as_fd(), self.pid, vmas, rearm)
    }

    /// See [`present_ranges`].
    pub fn present_ranges(
        &self,
        vmas: &[Vma],
        method: ScanMethod,
    ) -> Result<Vec<PageRange>, ScanError> {
        let mut out = Vec::new();
        let mut scanner = match method {
            ScanMethod::PagemapRead => Scanner::Read(PagemapReadState::new()?),
            ScanMethod::Auto | ScanMethod::PagemapScan => Scanner::Ioctl {
                template: present_scan_template(true),
                regions: vec![PageRegion::default(); SCAN_BATCH],
                probed: false,
            },
        };
        for vma in vmas.iter().filter(|vma| vma.dumps_private_pages()) {
            if vma.dumps_entire_vma() {
                push_merged(&mut out, vma.start, vma.start, vma.end);
                continue;
            }
            self.scan_vma(&mut scanner, vma, method, &mut out)?;
        }
        Ok(out)
    }

    fn scan_vma(
        &self,
        scanner: &mut Scanner,
        vma: &Vma,
        method: ScanMethod,
        out: &mut Vec<PageRange>,
    ) -> Result<(), ScanError> {
        let pid = self.pid;
        loop {
            match scanner {
                Scanner::Read(state) => return self.read_entries(state, vma, out),
                Scanner::Ioctl {
                    template,
                    regions,
                    probed,
                } => {
                    let mark = out.len();
                    let mut effective = *template;
                    if vma.inode == 0 && vma.path.is_none() {
                        // Anonymous memory has no page-cache pages; skipping the FILE test
                        // spares the kernel a page lookup per PTE (about 2x faster scans).
                        effective.category_inverted &= !category::FILE;
                        effective.category_mask &= !category::FILE;
                    }
                    match scan_range(
                        self.file.as_fd(),
                        &effective,
                        vma.start,
                        vma.end,
                        regions,
                        out,
                    ) {
                        Ok(()) => {
                            *probed = true;
                            if vma.vm_flags.contains(VmFlags::UFFD_WP) {
                                self.drop_uffd_wp_markers(vma, regions, mark, out)?;
                            }
                            return Ok(());
                        }
                        Err(ScanFailure::Bogus { start, end }) => {
                            return Err(ScanError::BogusRegion { pid, start, end })
                        }
                        Err(ScanFailure::Ioctl(source)) => {
                            out.truncate(mark);
                            let unsupported = matches!(
                                source.raw_os_error(),
                                Some(libc::ENOTTY) | Some(libc::EINVAL)
                            );
                            if !unsupported || *probed {
                                return Err(ScanError::Scan {
                                    pid,
                                    start: vma.start,
                                    end: vma.end,
                                    source,
                                });
                            }
                            if template.category_mask & category::GUARD != 0 {
                                // Kernels before 6.14 reject the GUARD category: retry without.
                                *template = present_scan_template(false);
                                continue;
                            }
                            if method == ScanMethod::PagemapScan {
                                return Err(ScanError::Unsupported { pid, source });
                            }
                            *scanner = Scanner::Read(PagemapReadState::new()?);
                        }
                    }
                }
            }
        }
    }

    /// Removes, from the ranges `out[mark..]` found in `vma` (registered for uffd-wp), the pages
    /// that hold a uffd-wp PTE marker rather than swapped-out data: PAGEMAP_SCAN cannot tell
    /// them apart, their pagemap entries can.
    fn drop_uffd_wp_markers(
        &self,
        vma: &Vma,
        regions: &mut [PageRegion],
        mark: usize,
        out: &mut Vec<PageRange>,
    ) -> Result<(), ScanError> {
        let pid = self.pid;
        let swapped_only = PmScanArg {
            category_mask: category::SWAPPED,
            return_mask: category::SWAPPED,
            ..PmScanArg::default()
        };
        let mut swapped = Vec::new();
        scan_range(
            self.file.as_fd(),
            &swapped_only,
            vma.start,
            vma.end,
            regions,
            &mut swapped,
        )
        .map_err(|error| error.into_scan_error(pid, vma))?;
        if swapped.is_empty() {
            return Ok(());
        }
        let mut markers = Vec::new();
        let mut buf = Vec::new();
        for range in &swapped {
            buf.resize(range.nr_pages as usize * 8, 0);
            let offset = range.start / PAGE_SIZE * 8;
            self.file
                .read_exact_at(&mut buf, offset)
                .map_err(|source| ScanError::Read {
                    pid,
                    offset,
                    source,
                })?;
            for (index, entry) in buf.chunks_exact(8).enumerate() {
                let entry = u64::from_ne_bytes(entry.try_into().expect("8-byte chunk"));
                if is_pte_marker(entry) {
                    let addr = range.start + index as u64 * PAGE_SIZE;
                    push_merged(&mut markers, vma.start, addr, addr + PAGE_SIZE);
                }
            }
        }
        if markers.is_empty() {
            return Ok(());
        }
        let kept = subtract_ranges(&out[mark..], &markers);
        out.truncate(mark);
        out.extend(kept);
        Ok(())
    }

    fn read_entries(
        &self,
        state: &mut PagemapReadState,
        vma: &Vma,
        out: &mut Vec<PageRange>,
    ) -> Result<(), ScanError> {
        let first_page = vma.start / PAGE_SIZE;
        let last_page = vma.end / PAGE_SIZE;
        let mut page = first_page;
        while page < last_page {
            let count = ((last_page - page) as usize).min(PAGEMAP_READ_BATCH);
            let bytes = &mut state.buf[..count * 8];
            let offset = page * 8;
            self.file
                .read_exact_at(bytes, offset)
                .map_err(|source| ScanError::Read {
                    pid: self.pid,
                    offset,
                    source,
                })?;
            for (index, entry) in bytes.chunks_exact(8).enumerate() {
                let entry = u64::from_ne_bytes(entry.try_into().expect("8-byte chunk"));
                if entry_holds_data(entry, state.zero_pfn) {
                    let addr = (page + index as u64) * PAGE_SIZE;
                    push_merged(out, vma.start, addr, addr + PAGE_SIZE);
                }
            }
            page += count as u64;
        }
        Ok(())
    }
}

enum Scanner {
    Ioctl {
        template: PmScanArg,
        regions: Vec<PageRegion>,
        /// A scan succeeded already, so EINVAL is a real error, not "unsupported".
        probed: bool,
    },
    Read(PagemapReadState),
}

struct PagemapReadState {
    buf: Vec<u8>,
    zero_pfn: Option<u64>,
}

impl PagemapReadState {
    fn new() -> Result<Self, ScanError> {
        Ok(Self {
            buf: vec![0; PAGEMAP_READ_BATCH * 8],
            zero_pfn: zero_page_pfn()?,
        })
    }
}

/// The pagemap-entry version of the PAGEMAP_SCAN rule in [`present_scan_template`].
fn entry_holds_data(entry: u64, zero_pfn: Option<u64>) -> bool {
    if entry & (PM_PRESENT | PM_SWAP) == 0 || entry & (PM_FILE | PM_GUARD_REGION) != 0 {
        return false;
    }
    let is_zero_page = entry & PM_PRESENT != 0 && Some(entry & PM_PFN_MASK) == zero_pfn;
    !is_zero_page && !is_pte_marker(entry)
}

/// Whether a pagemap entry is a PTE marker (uffd-wp on a never-populated page, or a guard
/// region on kernels that do not flag those), not a swapped-out page. Only recognisable when the
/// kernel shows the frame field (CAP_SYS_ADMIN); otherwise `false`, so the page is kept.
fn is_pte_marker(entry: u64) -> bool {
    entry & PM_PRESENT == 0 && entry & PM_SWAP != 0 && entry & PM_SWAP_TYPE_MASK == SWP_PTE_MARKER
}

/// PAGEMAP_SCAN arguments selecting present-or-swapped pages that are neither the zero page nor
/// page-cache pages (nor guard markers, when the kernel knows that category).
fn present_scan_template(with_guard: bool) -> PmScanArg {
    let mut excluded = category::PFNZERO | category::FILE;
    if with_guard {
        excluded |= category::GUARD;
    }
    PmScanArg {
        category_inverted: excluded,
        category_mask: excluded,
        category_anyof_mask: category::PRESENT | category::SWAPPED,
        return_mask: category::PRESENT | category::SWAPPED,
        ..PmScanArg::default()
    }
}

/// Scans `[start, end)` to completion, appending merged ranges to `out`.
fn scan_range(
    pagemap: BorrowedFd<'_>,
    template: &PmScanArg,
    start: u64,
    end: u64,
    regions: &mut [PageRegion],
    out: &mut Vec<PageRange>,
) -> Result<(), ScanFailure> {
    let mut cursor = start;
    while cursor < end {
        let (count, walk_end) = sys::pagemap_scan(pagemap, template, cursor, end, regions)
            .map_err(ScanFailure::Ioctl)?;
        for region in &regions[..count] {
            if region.start < cursor || region.end > end || region.start >= region.end {
                return Err(ScanFailure::Bogus {
                    start: region.start,
                    end: region.end,
                });
            }
            push_merged(out, start, region.start, region.end);
        }
        // When the regions fill the buffer exactly, 6.18 can report a walk_end before the end of
        // the last region it returned (measured: 1024 regions up to the end of the range with
        // walk_end half-way); resuming there would list the same pages twice.
        let walk_end = match regions[..count].last() {
            Some(last) => walk_end.max(last.end),
            None => walk_end,
        };
        if walk_end <= cursor {
            // No progress would loop forever; the kernel always advances, but be defensive.
            break;
        }
        cursor = walk_end;
    }
    Ok(())
}

/// `ranges` minus `removed` (both sorted and non-overlapping within themselves).
pub fn subtract_ranges(ranges: &[PageRange], removed: &[PageRange]) -> Vec<PageRange> {
    let mut out = Vec::with_capacity(ranges.len());
    let mut cut = removed.iter().peekable();
    for range in ranges {
        let mut start = range.start;
        let end = range.end();
        while let Some(next) = cut.peek() {
            if next.end() <= start {
                cut.next();
                continue;
            }
            if next.start >= end {
                break;
            }
            if next.start > start {
                out.push(PageRange::new(start, (next.start - start) / PAGE_SIZE));
            }
            start = start.max(next.end());
            if next.end() > end {
                break;
            }
            cut.next();
        }
        if start < end {
            out.push(PageRange::new(start, (end - start) / PAGE_SIZE));
        }
    }
    out
}

/// `a` intersected with `b` (both sorted and non-overlapping within themselves).
pub fn intersect_ranges(a: &[PageRange], b: &[PageRange]) -> Vec<PageRange> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end().min(b[j].end());
        if start < end {
            out.push(PageRange::new(start, (end - start) / PAGE_SIZE));
        }
        if a[i].end() < b[j].end() {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Appends `[start, end)` to `out`, extending the last range when they touch and the last range
/// starts at or after `floor` (the start of the current VMA: ranges never cross VMAs).
fn push_merged(out: &mut Vec<PageRange>, floor: u64, start: u64, end: u64) {
    if let Some(last) = out.last_mut() {
        if last.end() == start && last.start >= floor {
            last.nr_pages += (end - start) / PAGE_SIZE;
            return;
        }
    }
    out.push(PageRange::new(start, (end - start) / PAGE_SIZE));
}

/// The PFN of the shared zero page, found by faulting it into a private page of our own and
/// reading our pagemap entry. `None` when PFNs are hidden (no CAP_SYS_ADMIN): then the zero
/// page cannot be told apart and is dumped like any page.
pub fn zero_page_pfn() -> Result<Option<u64>, ScanError> {
    static ZERO_PFN: OnceLock<Option<u64>> = OnceLock::new();
    if let Some(pfn) = ZERO_PFN.get() {
        return Ok(*pfn);
    }
    let pfn = sys::with_zero_page_mapped(|addr| {
        let pagemap = File::open("/proc/self/pagemap")?;
        let mut entry = [0u8; 8];
        pagemap.read_exact_at(&mut entry, addr / PAGE_SIZE * 8)?;
        let entry = u64::from_ne_bytes(entry);
        let pfn = entry & PM_PFN_MASK;
        Ok((entry & PM_PRESENT != 0 && pfn != 0).then_some(pfn))
    })
    .map_err(ScanError::ZeroPfn)?;
    Ok(*ZERO_PFN.get_or_init(|| pfn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start_page: u64, nr_pages: u64) -> PageRange {
        PageRange::new(start_page * PAGE_SIZE, nr_pages)
    }

    #[test]
    fn subtract_cuts_holes_and_edges() {
        let ranges = [r(0, 10), r(20, 5), r(30, 2)];
        let removed = [r(2, 3), r(9, 12), r(24, 1), r(40, 1)];
        assert_eq!(
            subtract_ranges(&ranges, &removed),
            vec![r(0, 2), r(5, 4), r(21, 3), r(30, 2)]
        );
        assert_eq!(subtract_ranges(&ranges, &[]), ranges.to_vec());
        assert!(subtract_ranges(&ranges, &[r(0, 100)]).is_empty());
    }

    #[test]
    fn intersect_keeps_common_pages() {
        let a = [r(0, 10), r(20, 5)];
        let b = [r(5, 17), r(24, 3)];
        assert_eq!(intersect_ranges(&a, &b), vec![r(5, 5), r(20, 2), r(24, 1)]);
    }

    #[test]
    fn markers_are_told_from_swapped_pages() {
        // A uffd-wp marker as the kernel shows it to CAP_SYS_ADMIN: PM_SWAP | PM_UFFD_WP,
        // swap type 31, marker bit 0.
        let marker = (1u64 << 62) | (1 << 57) | 0x3f;
        assert!(is_pte_marker(marker));
        assert!(!entry_holds_data(marker, None));
        // A page in swap file 0 at offset 5, write-protected.
        let swapped = (1u64 << 62) | (1 << 57) | (5 << 5);
        assert!(!is_pte_marker(swapped));
        assert!(entry_holds_data(swapped, None));
        // PFNs hidden: indistinguishable, kept.
        assert!(entry_holds_data((1u64 << 62) | (1 << 57), None));
    }
}
