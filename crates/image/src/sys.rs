//! The one place this crate needs `unsafe`: mapping part of an image file being written, so that
//! page contents can be copied into the file's page cache by the kernel in a single copy (see
//! [`crate::ImageWriter::append_mapped`]).

use std::fs::File;
use std::io;

/// A writable shared mapping of `len` bytes of `file` from `offset` (a multiple of the page size),
/// not inherited by children: a process forked meanwhile (the dump's tracking keeper lives for many
/// minutes) would otherwise keep the image's pages alive after the images are deleted.
pub(crate) fn map_shared_writable(
    file: &File,
    offset: u64,
    len: usize,
) -> io::Result<memmap2::MmapMut> {
    // SAFETY: memmap2 requires that nobody else changes the file's size or contents while the
    // mapping is accessed. The file is the writer's private temporary (a hidden
    // `.NAME.PID-N.part` created with O_TRUNC in the images directory), sized to cover the whole
    // mapping before this call, and only ever grown; while the bytes are accessible
    // (`MappedExtra`) the writer is mutably borrowed, so it cannot be written or finished. The
    // one other way in is `MappedExtraWriter::write_into` (pwrite into the mapped range), which
    // takes the bytes it changes as `&mut [u8]`, so whoever holds them lends them for the write
    // and sees them changed only after it, as if the write went through memory. Once
    // `into_unmapper` gave up that access, the mapping is only unmapped, never read or written,
    // so what happens to the file afterwards cannot be observed through it.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_mut(file)?
    };
    map.advise(memmap2::Advice::DontFork)?;
    Ok(map)
}
