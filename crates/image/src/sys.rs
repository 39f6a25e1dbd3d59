//! The one place this crate needs `unsafe`: mapping part of an image file being written, so that
//! page contents can be copied into the file's page cache by the kernel in a single copy (see
//! [`crate::ImageWriter::append_mapped`]).

use std::fs::File;
use std::io;

/// A writable shared mapping of `len` bytes of `file` from `offset` (a multiple of the page size).
pub(crate) fn map_shared_writable(
    file: &File,
    offset: u64,
    len: usize,
) -> io::Result<memmap2::MmapMut> {
    // SAFETY: memmap2 requires that nobody else changes the file's size or contents while it is
    // mapped. The file is the writer's private temporary (a hidden `.NAME.PID-N.part` created
    // with O_TRUNC in the images directory, renamed into place only by `finish`, after every
    // mapping of it is gone: `MappedExtra` borrows the writer mutably), and it is sized to cover
    // the whole mapping before this call, so no access through the mapping is past its end.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_mut(file)
    }
}
