//! Memory of a live process, for dumping: its VMAs, which pages hold data, and their contents.
//!
//! - [`read_vmas`] parses `/proc/PID/smaps` into [`Vma`]s classified like CRIU does
//!   ([`vma_status_bits`], `[vvar]` + `[vvar_vclock]` merged).
//! - [`present_ranges`] finds the pages to dump with the PAGEMAP_SCAN ioctl (or, on kernels
//!   without it, by reading `/proc/PID/pagemap`).
//! - [`PageReader`] copies them out with process_vm_readv (falling back to `/proc/PID/mem` for
//!   unreadable pages) into a [`PageSink`].
//! - [`shmem_data_ranges`] / [`read_shmem_pages`] do the same for shared memory objects
//!   (memfds, shared anonymous memory), addressed by offset as in `pagemap-shmem-*.img`.
//! - [`page_server`] speaks CRIU 4.2's page-server protocol, as a sink and as a server.
//!
//! # Rules mirrored from CRIU
//! - VMA status bits, MAP_* flags and the madvise bitmap are computed as CRIU 4.2 does, so a
//!   `vma_entry` can be filled straight from a [`Vma`]; [`VMA_UNSUPP`] marks VM_IO/VM_PFNMAP
//!   areas a dump must refuse.
//! - Pages dumped into `pagemap-<pid>.img`: private anonymous and private file VMAs (present or
//!   swapped pages that are not the zero page, not page-cache pages, not guard markers), the
//!   whole vdso; never the vvar, vsyscall or shared mappings (shared memory goes through
//!   [`shmem_data_ranges`]). [`Vma::can_be_lazy`] says which runs get PE_LAZY.
//!
//! # Speed (measured with `criu-pages-bench`, 2-vCPU PVM guest, images on /dev/shm)
//! - PAGEMAP_SCAN lists 1 GiB of present anonymous memory in 1.2 ms (4 GiB: 5-11 ms); reading
//!   pagemap entries instead takes 4-40 ms per GiB. Parsing smaps costs 6-90 ms per GiB of
//!   resident memory (the kernel walks page tables for the Rss fields), the largest fixed cost.
//! - process_vm_readv alone: 4-5.8 GiB/s, with little difference between 1, 4 and 16 MiB
//!   chunks (16 MiB is never better; 1 MiB is often marginally best).
//! - Read + write into a fresh tmpfs file is bounded by allocating the destination pages
//!   (plain write() of our own memory: 1.5-3.5 GiB/s depending on the run). On a quiet
//!   machine the pipelined default (4 MiB chunks, a reader thread, double buffering) reached
//!   98 % of that bandwidth (3.41 of 3.46 GiB/s) against 57 % for a serial read-then-write
//!   loop. When other work keeps the second core busy, there is nothing to overlap with and
//!   both modes land at 50-80 %.
//!
//! ```no_run
//! use criu_pages::{present_ranges, read_vmas, PageReader, VecSink};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pid = 1234;
//! let vmas = read_vmas(pid)?;
//! let ranges = present_ranges(pid, &vmas)?;
//! let mut sink = VecSink::new();
//! PageReader::new(pid)?.read(&ranges, &mut sink)?;
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

pub mod page_server;
mod reader;
mod scan;
mod shmem;
#[allow(unsafe_code)]
mod sys;
mod vma;

pub use reader::{
    Hole, PageReader, PageSink, PositionalWrite, ReadError, ReadStats, ReaderOptions, VecSink,
    MAX_FILL_WORKERS,
};
pub use scan::{
    category, intersect_ranges, present_ranges, present_ranges_with, subtract_ranges,
    written_ranges, zero_page_pfn, PageRange, Pagemap, ScanError, ScanMethod,
};
pub use shmem::{read_shmem_pages, shmem_data_ranges, ShmemError};
pub use vma::{
    parse_smaps, read_vmas, vma_status_bits, VmFlags, Vma, VmaError, VmaKind, VMA_ANON_PRIVATE,
    VMA_ANON_SHARED, VMA_AREA_AIORING, VMA_AREA_GUARD, VMA_AREA_HEAP, VMA_AREA_MEMFD,
    VMA_AREA_REGULAR, VMA_AREA_SHSTK, VMA_AREA_SOCKET, VMA_AREA_STACK, VMA_AREA_SYSVIPC,
    VMA_AREA_UPROBES, VMA_AREA_VDSO, VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE,
    VMA_FILE_SHARED, VMA_UNSUPP,
};

/// The page size everything here works in (x86_64).
pub const PAGE_SIZE: u64 = 4096;
