//! Pages of shared memory objects (MAP_SHARED|MAP_ANONYMOUS memory, memfds, SysV segments),
//! which CRIU dumps once per object into `pagemap-shmem-<shmid>.img`, addressed by offset.
//!
//! Like CRIU (shmem.c), the pages to dump are the data segments of the object's file
//! (SEEK_DATA/SEEK_HOLE): holes were never written and read as zeroes. The file is usually
//! opened through `/proc/PID/map_files/<start>-<end>` of a task that maps it.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use crate::reader::{PageSink, ReadError, ReadStats};
use crate::scan::PageRange;
use crate::sys;
use crate::PAGE_SIZE;

/// Errors while finding the data of a shared memory object.
#[derive(Debug, thiserror::Error)]
pub enum ShmemError {
    /// SEEK_DATA/SEEK_HOLE failed.
    #[error("SEEK_DATA/SEEK_HOLE at offset {offset:#x} of a shmem object failed: {source}")]
    Seek {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// The data segments of a shmem file within its first `size` bytes, as page ranges whose
/// `start` is a byte offset (page aligned; a partial last page counts as a page).
pub fn shmem_data_ranges(file: &File, size: u64) -> Result<Vec<PageRange>, ShmemError> {
    let end = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let mut ranges: Vec<PageRange> = Vec::new();
    let mut offset = 0;
    while offset < end {
        let seek = |at: u64, data: bool| {
            sys::seek_data_or_hole(file.as_fd(), at, data)
                .map_err(|source| ShmemError::Seek { offset: at, source })
        };
        let Some(data) = seek(offset, true)? else {
            break;
        };
        if data >= end {
            break;
        }
        let hole = seek(data, false)?.unwrap_or(end).min(end);
        let start = data / PAGE_SIZE * PAGE_SIZE;
        let stop = hole.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        match ranges.last_mut() {
            Some(last) if last.end() >= start => {
                last.nr_pages = (stop.max(last.end()) - last.start) / PAGE_SIZE
            }
            _ => ranges.push(PageRange::new(start, (stop - start) / PAGE_SIZE)),
        }
        offset = stop;
    }
    Ok(ranges)
}

/// Reads `ranges` (byte offsets, from [`shmem_data_ranges`]) of a shmem file into `sink`, with
/// `vaddr` = offset, in batches of `chunk_bytes`. Bytes past the end of the file read as zero.
pub fn read_shmem_pages(
    file: &File,
    ranges: &[PageRange],
    chunk_bytes: usize,
    sink: &mut dyn PageSink,
) -> Result<ReadStats, ReadError> {
    if chunk_bytes == 0 || chunk_bytes as u64 % PAGE_SIZE != 0 {
        return Err(ReadError::BadChunkSize(chunk_bytes));
    }
    let mut buffer = vec![0u8; chunk_bytes];
    let mut stats = ReadStats::default();
    for range in ranges {
        let mut offset = range.start;
        while offset < range.end() {
            let len = ((range.end() - offset) as usize).min(chunk_bytes);
            let chunk = &mut buffer[..len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut chunk[filled..], offset + filled as u64) {
                    Ok(0) => {
                        chunk[filled..].fill(0);
                        filled = len;
                    }
                    Ok(n) => filled += n,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(ReadError::ShmemRead {
                            offset: offset + filled as u64,
                            source,
                        })
                    }
                }
            }
            sink.add_pages(offset, chunk)
                .map_err(|source| ReadError::Sink {
                    vaddr: offset,
                    source,
                })?;
            stats.pages += len as u64 / PAGE_SIZE;
            stats.batches += 1;
            offset += len as u64;
        }
    }
    Ok(stats)
}
