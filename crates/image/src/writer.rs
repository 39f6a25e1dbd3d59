//! [`ImageWriter`]: buffered writing of one image file.
//!
//! Like CRIU, an image is created only when something is written to it: a
//! writer that got no entries leaves no file behind (and removes a stale one).
//! Unlike CRIU, the data goes to a hidden temporary name first and is renamed
//! into place by [`ImageWriter::finish`], so a reader never sees a half-written
//! image and an aborted dump leaves no truncated ones.

use std::fs::File;
use std::io::{BufWriter, IoSlice, Seek, SeekFrom, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::dir::{ImageDir, IMAGE_FILE_MODE};
use crate::error::ImageError;
use crate::kind::ImageKind;

/// Default write buffer: large enough that entries never cost a syscall each.
const WRITE_BUFFER: usize = 256 * 1024;

/// Appends at least this large skip the write buffer (after flushing it): the
/// extra copy costs more than the syscall it would save.
const DIRECT_WRITE_MIN: usize = 128 * 1024;

/// [`ImageWriter::append_mapped`] maps from offsets that are a multiple of this (the page size).
const MAPPING_ALIGN: u64 = 4096;

/// Bytes appended by [`ImageWriter::append_mapped`], mapped for the caller to fill. The mapping
/// goes when this is dropped; it borrows the writer, so the image cannot be finished (renamed
/// into place) while it is still being filled.
pub struct MappedExtra<'w> {
    map: memmap2::MmapMut,
    /// The image file and where the mapped bytes start in it, for [`MappedExtraWriter`].
    file: &'w File,
    start: u64,
}

impl std::fmt::Debug for MappedExtra<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedExtra")
            .field("len", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl MappedExtra<'_> {
    /// The mapped bytes, and a writer that stores bytes into a part of them with `pwrite`
    /// instead of through memory, for callers that fill part of the region one way and part the
    /// other. On tmpfs the two differ: a page first touched through the mapping is zeroed by the
    /// kernel, then filled, a fault each, and its page-table entry is to be torn down again; one
    /// that `pwrite` creates is only copied into, but `pwrite`s to one file take turns on its
    /// lock while faults run on every CPU at once. The writer takes the part it fills as
    /// `&mut [u8]`, so the compiler knows those bytes may have changed, as they have.
    pub fn split(&mut self) -> (&mut [u8], MappedExtraWriter<'_>) {
        let writer = MappedExtraWriter {
            file: self.file,
            start: self.start,
            base: self.map.as_ptr() as usize,
            len: self.map.len(),
        };
        (&mut self.map, writer)
    }

    /// Gives up access to the bytes (filled by now) and keeps only the mapping, which goes when the
    /// returned value is dropped, possibly on another thread: unmapping is not free (about 85 ns a
    /// page here, 90 ms for 4 GiB) and need not hold up what comes next. The image may be finished
    /// meanwhile: nothing reads or writes through the mapping any more.
    pub fn into_unmapper(self) -> Unmapper {
        Unmapper(self.map)
    }
}

/// Stores bytes into parts of a [`MappedExtra`] region with `pwrite` ([`MappedExtra::split`]).
#[derive(Clone, Copy, Debug)]
pub struct MappedExtraWriter<'a> {
    file: &'a File,
    /// Where the region starts in the file.
    start: u64,
    /// Where the region is mapped, and its length.
    base: usize,
    len: usize,
}

impl MappedExtraWriter<'_> {
    /// Stores `data` into `part` (a part of the region, exactly as long) by writing it to the
    /// file at the same place, not through memory; afterwards `part` reads as `data`.
    pub fn write_into(&self, part: &mut [u8], data: &[u8]) -> std::io::Result<()> {
        let offset = (part.as_ptr() as usize).wrapping_sub(self.base);
        let inside = offset
            .checked_add(part.len())
            .is_some_and(|end| end <= self.len);
        if !inside || part.len() != data.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes for a part of {} bytes at {:#x}, which is not inside the {} mapped \
                     bytes at {:#x}, or not as long",
                    data.len(),
                    part.len(),
                    part.as_ptr() as usize,
                    self.len,
                    self.base
                ),
            ));
        }
        self.file.write_all_at(data, self.start + offset as u64)
    }
}

/// A mapping of image bytes that nobody accesses any more, unmapped when dropped
/// ([`MappedExtra::into_unmapper`]).
pub struct Unmapper(memmap2::MmapMut);

impl std::fmt::Debug for Unmapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unmapper")
            .field("len", &self.0.len())
            .finish()
    }
}

impl Deref for MappedExtra<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl DerefMut for MappedExtra<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// Distinguishes temporary names of writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

enum Sink {
    /// Nothing written yet; the file does not exist.
    Pending,
    File(BufWriter<File>),
    Memory(Vec<u8>),
    Done,
}

struct DirTarget {
    dir: Arc<OwnedFd>,
    /// Final file name.
    name: String,
    /// Hidden name written until `finish`.
    temp: String,
}

/// Writes the entries of one image.
#[must_use = "an image becomes visible only when finish() succeeds"]
pub struct ImageWriter {
    kind: ImageKind,
    file: String,
    target: Option<DirTarget>,
    sink: Sink,
    capacity: usize,
    offset: u64,
    entries: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for ImageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageWriter")
            .field("file", &self.file)
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("entries", &self.entries)
            .finish()
    }
}

fn errno_io(errno: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno as i32)
}

impl ImageWriter {
    pub(crate) fn for_dir(dir: &ImageDir, kind: ImageKind, name: String) -> ImageWriter {
        let serial = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = format!(".{name}.{}-{serial}.part", std::process::id());
        ImageWriter {
            kind,
            file: dir.label(&name),
            target: Some(DirTarget {
                dir: dir.shared_fd(),
                name,
                temp,
            }),
            sink: Sink::Pending,
            capacity: WRITE_BUFFER,
            offset: 0,
            entries: 0,
            scratch: Vec::new(),
        }
    }

    /// A writer that builds the image in memory ([`ImageWriter::into_bytes`]).
    pub fn in_memory(kind: ImageKind) -> ImageWriter {
        ImageWriter {
            kind,
            file: format!("<{} in memory>", kind.magic_name()),
            target: None,
            sink: Sink::Pending,
            capacity: 0,
            offset: 0,
            entries: 0,
            scratch: Vec::new(),
        }
    }

    /// Sets the write buffer size (before the first write). Pages images use a
    /// few MiB so that page-sized appends never cost a syscall each.
    pub fn with_buffer_capacity(mut self, capacity: usize) -> ImageWriter {
        self.capacity = capacity.max(4096);
        self
    }

    /// The image kind.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The file name used in messages.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// Bytes written so far, magics included (the offset of the next byte).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Creates the file and writes the magics now, so that the image exists
    /// even if no entry follows.
    pub fn ensure_created(&mut self) -> Result<(), ImageError> {
        if !matches!(self.sink, Sink::Pending) {
            return Ok(());
        }
        self.sink = match &self.target {
            None => Sink::Memory(Vec::new()),
            Some(target) => {
                // Read and write: a shared mapping (`append_mapped`) needs a readable fd.
                let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
                let fd = openat(
                    &target.dir,
                    target.temp.as_str(),
                    flags,
                    Mode::from_bits_truncate(IMAGE_FILE_MODE),
                )
                .map_err(|e| ImageError::io(self.file.clone(), "create", errno_io(e)))?;
                Sink::File(BufWriter::with_capacity(self.capacity, File::from(fd)))
            }
        };
        let mut magics = [0u8; 8];
        let mut len = 0;
        for word in [self.kind.head_magic().value(), self.kind.type_magic()]
            .into_iter()
            .flatten()
        {
            magics[len..len + 4].copy_from_slice(&word.to_le_bytes());
            len += 4;
        }
        self.put(&magics[..len])
    }

    fn put(&mut self, data: &[u8]) -> Result<(), ImageError> {
        let result = match &mut self.sink {
            Sink::File(out) => out.write_all(data),
            Sink::Memory(bytes) => {
                bytes.extend_from_slice(data);
                Ok(())
            }
            Sink::Pending | Sink::Done => Err(std::io::Error::other("image writer is not open")),
        };
        result.map_err(|source| ImageError::Io {
            file: self.file.clone(),
            op: "write",
            source,
        })?;
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Writes an already-encoded protobuf payload as the next entry.
    pub fn write_entry_bytes(&mut self, payload: &[u8]) -> Result<(), ImageError> {
        if self.kind.is_raw() {
            return Err(ImageError::RawImage {
                file: self.file.clone(),
                kind: self.kind,
            });
        }
        self.ensure_created()?;
        let size = u32::try_from(payload.len()).map_err(|_| ImageError::EntryTooLarge {
            file: self.file.clone(),
            offset: self.offset,
            len: payload.len(),
        })?;
        self.put(&size.to_le_bytes())?;
        self.put(payload)?;
        self.entries += 1;
        Ok(())
    }

    /// Encodes `message` as the next entry.
    pub fn write_entry<M: prost::Message>(&mut self, message: &M) -> Result<(), ImageError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.reserve(message.encoded_len());
        // Encoding into a Vec with enough room cannot fail.
        let encoded = message.encode(&mut scratch);
        let result = match encoded {
            Ok(()) => self.write_entry_bytes(&scratch),
            Err(e) => Err(ImageError::io(
                self.file.clone(),
                "encode",
                std::io::Error::other(e),
            )),
        };
        self.scratch = scratch;
        result
    }

    /// Appends raw bytes: the extra payload of the entry just written, or the
    /// contents of a raw image.
    pub fn write_extra(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.ensure_created()?;
        self.put(data)
    }

    /// Appends `len` bytes to a file image and maps them writable, so that a caller filling many
    /// megabytes (pages read with process_vm_readv) has the kernel copy straight into the file's
    /// page cache: one copy instead of a copy into a buffer plus `write`, and on tmpfs several
    /// threads can fill one file at once, where `write` holds the inode lock. The bytes read as
    /// zeros until filled; whatever is written next goes after them.
    ///
    /// `None` (nothing appended, the caller writes instead) when `len` is 0, when the image is not a
    /// raw one or is built in memory, when the next byte is not at a page-aligned offset (a mapping
    /// starts on a page), when the filesystem has less room than `len` left or cannot say, or when
    /// the mapping itself fails (the file is cut back first). Room matters because a mapping cannot
    /// say ENOSPC: filling a page the filesystem has no room for fails as a fault (EFAULT from the
    /// kernel copy), far from the cause, where `write` fails clearly. The check cannot see other
    /// writers filling the filesystem meanwhile, nor a memory cgroup limit.
    pub fn append_mapped(&mut self, len: usize) -> Result<Option<MappedExtra<'_>>, ImageError> {
        if len == 0 || !self.kind.is_raw() {
            return Ok(None);
        }
        self.ensure_created()?;
        if self.offset % MAPPING_ALIGN != 0 {
            return Ok(None);
        }
        let file_label = self.file.clone();
        let Sink::File(out) = &mut self.sink else {
            return Ok(None);
        };
        let io_err = |op, source| ImageError::Io {
            file: file_label.clone(),
            op,
            source,
        };
        let start = self.offset;
        let end = start
            .checked_add(len as u64)
            .ok_or_else(|| io_err("append_mapped", errno_io(Errno::EFBIG)))?;
        out.flush().map_err(|source| io_err("write", source))?;
        let file = out.get_mut();
        let Ok(room) = nix::sys::statvfs::fstatvfs(&*file) else {
            return Ok(None);
        };
        // A tmpfs mounted without a size limit reports no blocks at all.
        let limited = room.blocks() != 0;
        let available = room.blocks_available().saturating_mul(room.fragment_size());
        if limited && available < len as u64 {
            return Ok(None);
        }
        file.set_len(end)
            .map_err(|source| io_err("ftruncate", source))?;
        let mapped = file
            .seek(SeekFrom::Start(end))
            .and_then(|_| crate::sys::map_shared_writable(file, start, len));
        let map = match mapped {
            Ok(map) => map,
            Err(_) => {
                // Back to where the writes left off; the caller writes the bytes instead.
                file.set_len(start)
                    .and_then(|()| file.seek(SeekFrom::Start(start)))
                    .map_err(|source| io_err("ftruncate back", source))?;
                return Ok(None);
            }
        };
        self.offset = end;
        Ok(Some(MappedExtra {
            map,
            file: out.get_ref(),
            start,
        }))
    }

    /// Appends several buffers; large ones go to the kernel in one `writev`
    /// without passing through the write buffer.
    pub fn write_extra_vectored(&mut self, bufs: &[IoSlice<'_>]) -> Result<(), ImageError> {
        self.ensure_created()?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let direct =
            matches!(self.sink, Sink::File(_)) && total >= DIRECT_WRITE_MIN.min(self.capacity);
        if !direct {
            for buf in bufs {
                self.put(buf)?;
            }
            return Ok(());
        }
        let file_label = self.file.clone();
        let Sink::File(out) = &mut self.sink else {
            return Ok(());
        };
        let io_err = |source| ImageError::Io {
            file: file_label.clone(),
            op: "write",
            source,
        };
        out.flush().map_err(io_err)?;
        let file = out.get_mut();
        let mut storage: Vec<IoSlice<'_>> =
            bufs.iter().filter(|b| !b.is_empty()).copied().collect();
        let mut slices: &mut [IoSlice<'_>] = &mut storage;
        while !slices.is_empty() {
            let written = file.write_vectored(slices).map_err(io_err)?;
            if written == 0 {
                return Err(io_err(std::io::Error::from(std::io::ErrorKind::WriteZero)));
            }
            IoSlice::advance_slices(&mut slices, written);
        }
        self.offset += total as u64;
        Ok(())
    }

    /// Moves `len` bytes from a pipe into the image with `splice` (no copy
    /// through user space).
    pub fn splice_extra_from(&mut self, pipe: BorrowedFd<'_>, len: u64) -> Result<(), ImageError> {
        self.ensure_created()?;
        let file_label = self.file.clone();
        match &mut self.sink {
            Sink::File(out) => {
                out.flush().map_err(|source| ImageError::Io {
                    file: file_label.clone(),
                    op: "write",
                    source,
                })?;
                let mut left = len;
                while left > 0 {
                    let chunk = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
                    let moved = nix::fcntl::splice(
                        pipe,
                        None,
                        out.get_ref().as_fd(),
                        None,
                        chunk,
                        nix::fcntl::SpliceFFlags::SPLICE_F_MOVE,
                    )
                    .map_err(|e| ImageError::io(file_label.clone(), "splice", errno_io(e)))?;
                    if moved == 0 {
                        return Err(ImageError::io(
                            file_label,
                            "splice",
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("pipe ran dry with {left} of {len} bytes still expected"),
                            ),
                        ));
                    }
                    left -= moved as u64;
                    self.offset += moved as u64;
                }
                Ok(())
            }
            _ => {
                // In-memory images read the pipe the ordinary way.
                let mut data = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
                let mut filled = 0;
                while filled < data.len() {
                    let n = nix::unistd::read(pipe, &mut data[filled..]).map_err(|e| {
                        ImageError::io(file_label.clone(), "read pipe", errno_io(e))
                    })?;
                    if n == 0 {
                        return Err(ImageError::io(
                            file_label,
                            "read pipe",
                            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                        ));
                    }
                    filled += n;
                }
                self.put(&data)
            }
        }
    }

    /// Flushes and publishes the image under its final name. An image that got
    /// nothing written is not created, and an old file of that name is removed.
    pub fn finish(mut self) -> Result<(), ImageError> {
        self.finish_in_place()
    }

    fn finish_in_place(&mut self) -> Result<(), ImageError> {
        let sink = std::mem::replace(&mut self.sink, Sink::Done);
        let Some(target) = &self.target else {
            return Ok(());
        };
        match sink {
            Sink::Done | Sink::Memory(_) => Ok(()),
            Sink::Pending => match unlinkat(
                &target.dir,
                target.name.as_str(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(ImageError::io(
                    self.file.clone(),
                    "unlink stale image",
                    errno_io(e),
                )),
            },
            Sink::File(out) => {
                let result = out
                    .into_inner()
                    .map_err(|e| ImageError::Io {
                        file: self.file.clone(),
                        op: "write",
                        source: e.into_error(),
                    })
                    .and_then(|_file| {
                        ImageDir::rename_in(&target.dir, &target.temp, &target.name).map_err(|e| {
                            ImageError::io(self.file.clone(), "rename into place", errno_io(e))
                        })
                    });
                if result.is_err() {
                    let _ = unlinkat(
                        &target.dir,
                        target.temp.as_str(),
                        UnlinkatFlags::NoRemoveDir,
                    );
                }
                result
            }
        }
    }

    /// The image bytes of an in-memory writer (magics included, even without
    /// entries). For a directory writer this publishes the file and returns
    /// nothing.
    pub fn into_bytes(mut self) -> Result<Vec<u8>, ImageError> {
        if self.target.is_none() {
            self.ensure_created()?;
            if let Sink::Memory(bytes) = std::mem::replace(&mut self.sink, Sink::Done) {
                return Ok(bytes);
            }
            return Ok(Vec::new());
        }
        self.finish_in_place()?;
        Ok(Vec::new())
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        // Not finished: discard the partial image so that it never becomes visible.
        if let (Some(target), Sink::File(_)) = (&self.target, &self.sink) {
            let _ = unlinkat(
                &target.dir,
                target.temp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}
