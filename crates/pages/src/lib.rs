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
//! # Speed (measured with `criu-pages-bench`, see its source for the method)
//! PAGEMAP_SCAN lists 1 GiB of present anonymous memory in about 1.2 ms (reading pagemap
//! entries takes 4-40 ms). Reading with process_vm_readv runs at 4.4-4.5 GiB/s whatever the
//! chunk size (1, 4, 16 MiB). Writing into a fresh tmpfs file is the real limit in these VMs
//! (every destination page is a fresh allocation): on a quiet machine a serial read-then-write
//! loop reached 57 % of the plain write() bandwidth, the pipelined default (4 MiB chunks, one
//! reader thread, double buffering) 98 % (3.41 of 3.46 GiB/s). With both cores busy with other
//! work the pipeline cannot overlap and both modes fall to about 55 %.
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

pub use reader::{Hole, PageReader, PageSink, ReadError, ReadStats, ReaderOptions, VecSink};
pub use scan::{
    category, present_ranges, present_ranges_with, written_ranges, zero_page_pfn, PageRange,
    Pagemap, ScanError, ScanMethod,
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
