//! Memory images: `pagemap-<id>.img` (which pages) and `pages-<n>.img` (their
//! contents).
//!
//! A pagemap starts with a `pagemap_head` naming its pages image, then has one
//! `pagemap_entry` per run of pages in increasing address order. The pages image
//! is the plain concatenation of the runs that carry [`PE_PRESENT`]; nothing
//! records offsets, so readers keep a running one. Runs flagged [`PE_PARENT`]
//! live in the previous dump, reached through the `parent` symlink.

use std::fs::File;
use std::io::IoSlice;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

use criu_proto::{PagemapEntry, PagemapHead};

use crate::dir::ImageDir;
use crate::error::ImageError;
use crate::kind::ImageKind;
use crate::reader::ImageReader;
use crate::writer::ImageWriter;

/// Page size of the images (x86_64).
pub const PAGE_SIZE: u64 = 4096;
/// The pages are in the parent images.
pub const PE_PARENT: u32 = 1 << 0;
/// The pages may be restored lazily (userfaultfd).
pub const PE_LAZY: u32 = 1 << 1;
/// The pages are in this dump's pages image.
pub const PE_PRESENT: u32 = 1 << 2;

/// Write buffer of pages images: page-sized appends are copied into it, larger
/// ones go straight to the kernel.
const PAGES_WRITE_BUFFER: usize = 4 * 1024 * 1024;

/// Errors of memory images.
#[derive(Debug, thiserror::Error)]
pub enum PagemapError {
    /// Opening, reading or writing an image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Data or an address is not a whole number of pages.
    #[error("{file}: run at {vaddr:#x} of {len} bytes is not page aligned")]
    Unaligned {
        /// The pagemap file.
        file: String,
        /// Start address.
        vaddr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// Runs must come in increasing, non-overlapping address order.
    #[error(
        "{file}: run at {vaddr:#x} starts before the end {previous_end:#x} of the previous run"
    )]
    OutOfOrder {
        /// The pagemap file.
        file: String,
        /// Start of the offending run.
        vaddr: u64,
        /// End of the run before it.
        previous_end: u64,
    },
    /// A flag combination that makes no sense for the call or the image.
    #[error("{file}: run at {vaddr:#x} has flags {flags:#x}: {reason}")]
    BadFlags {
        /// The pagemap file.
        file: String,
        /// Start of the run.
        vaddr: u64,
        /// The flags.
        flags: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A run whose end does not fit in 64 bits.
    #[error("{file}: run at {vaddr:#x} of {nr_pages} pages overflows the address space")]
    Overflow {
        /// The pagemap file.
        file: String,
        /// Start of the run.
        vaddr: u64,
        /// Its page count.
        nr_pages: u64,
    },
    /// The pagemap has no `pagemap_head`.
    #[error("{file}: no pagemap_head entry")]
    MissingHead {
        /// The pagemap file.
        file: String,
    },
    /// The pages image is shorter than the present runs of its pagemap need.
    #[error("{file}: holds {len} bytes but {pagemap} needs {needed}")]
    PagesTooShort {
        /// The pages file.
        file: String,
        /// Its length.
        len: u64,
        /// The pagemap naming it.
        pagemap: String,
        /// Bytes its present runs need.
        needed: u64,
    },
    /// Pages marked as in the parent that no parent image has.
    #[error("{file}: pages {vaddr:#x}..{end:#x} are marked PE_PARENT but the parent chain does not hold them")]
    NotInParent {
        /// The pagemap with the PE_PARENT run.
        file: String,
        /// Start of the missing range.
        vaddr: u64,
        /// End of the missing range.
        end: u64,
    },
    /// An address range the pagemap does not cover.
    #[error("{file}: pages {vaddr:#x}..{end:#x} are not in this pagemap")]
    NotInPagemap {
        /// The pagemap file.
        file: String,
        /// Start of the range.
        vaddr: u64,
        /// End of the range.
        end: u64,
    },
    /// Lazy pages without local data (they live on a page server).
    #[error("{file}: pages {vaddr:#x}..{end:#x} are lazy and not in any local pages image")]
    LazyNotLocal {
        /// The pagemap file.
        file: String,
        /// Start of the range.
        vaddr: u64,
        /// End of the range.
        end: u64,
    },
    /// A buffer that does not match the range asked for.
    #[error("buffer of {len} bytes for {nr_pages} pages")]
    BufferSize {
        /// Buffer length.
        len: usize,
        /// Pages asked for.
        nr_pages: u64,
    },
}

/// Whose memory a pagemap describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PagemapTarget {
    /// Private memory of a process: `pagemap-<pid>.img`.
    Process(u32),
    /// A shared memory object (memfd route, SysV): `pagemap-shmem-<shmid>.img`,
    /// vaddr = offset in the object.
    Shmem(u64),
}

impl PagemapTarget {
    /// The image kind of the pagemap.
    pub fn kind(self) -> ImageKind {
        match self {
            PagemapTarget::Process(_) => ImageKind::Pagemap,
            PagemapTarget::Shmem(_) => ImageKind::ShmemPagemap,
        }
    }

    /// The id in the pagemap's file name.
    pub fn id(self) -> u64 {
        match self {
            PagemapTarget::Process(pid) => u64::from(pid),
            PagemapTarget::Shmem(shmid) => shmid,
        }
    }
}

/// Hands out pages image ids: one counter per dump, shared by every pagemap
/// (process and shmem) written into the same directory. CRIU starts at 1; its
/// page server starts at `1 + 0x10000` so the two never collide.
#[derive(Debug)]
pub struct PagesIdAllocator {
    next: AtomicU32,
}

impl Default for PagesIdAllocator {
    fn default() -> Self {
        PagesIdAllocator::new()
    }
}

impl PagesIdAllocator {
    /// Ids 1, 2, 3...
    pub fn new() -> PagesIdAllocator {
        PagesIdAllocator::starting_at(1)
    }

    /// Ids from `first` on.
    pub fn starting_at(first: u32) -> PagesIdAllocator {
        PagesIdAllocator {
            next: AtomicU32::new(first),
        }
    }

    /// The next id.
    pub fn allocate(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// What a finished pagemap holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagemapStats {
    /// Pages written to the pages image (runs with [`PE_PRESENT`]).
    pub pages_written: u64,
    /// Pages left in the parent ([`PE_PARENT`]).
    pub pages_in_parent: u64,
    /// Pages flagged [`PE_LAZY`] (present or not).
    pub pages_lazy: u64,
    /// `pagemap_entry` records written (after merging adjacent runs).
    pub entries: u64,
}

#[derive(Clone, Copy, Debug)]
struct Run {
    vaddr: u64,
    nr_pages: u64,
    flags: u32,
}

impl Run {
    fn end(&self) -> u64 {
        self.vaddr + self.nr_pages * PAGE_SIZE
    }
}

/// Writes `pagemap-<id>.img` and its `pages-<n>.img`.
///
/// ```no_run
/// # use criu_image::{ImageDir, PagemapWriter, PagemapTarget, PagesIdAllocator};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = ImageDir::open("/tmp/dump")?;
/// let ids = PagesIdAllocator::new();
/// let mut pagemap = PagemapWriter::create(&dir, PagemapTarget::Process(42), &ids)?;
/// pagemap.add_pages(0x7f00_0000_0000, &[0u8; 8192])?;
/// let stats = pagemap.finish()?;
/// assert_eq!(stats.pages_written, 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PagemapWriter {
    target: PagemapTarget,
    pages_id: u32,
    pagemap: ImageWriter,
    pages: ImageWriter,
    pending: Option<Run>,
    /// End of the last run accepted; the next must not start below it.
    min_next: u64,
    stats: PagemapStats,
}

impl PagemapWriter {
    /// Starts a pagemap whose pages go to `pages-<pages_id>.img`.
    pub fn new(
        dir: &ImageDir,
        target: PagemapTarget,
        pages_id: u32,
    ) -> Result<PagemapWriter, PagemapError> {
        let mut pagemap = dir.writer(target.kind(), target.id())?;
        pagemap.write_entry(&PagemapHead { pages_id })?;
        let mut pages = dir
            .writer(ImageKind::Pages, u64::from(pages_id))?
            .with_buffer_capacity(PAGES_WRITE_BUFFER);
        // CRIU creates the pages image even when no page is present.
        pages.ensure_created()?;
        Ok(PagemapWriter {
            target,
            pages_id,
            pagemap,
            pages,
            pending: None,
            min_next: 0,
            stats: PagemapStats::default(),
        })
    }

    /// Starts a pagemap with the next pages id of `ids`.
    pub fn create(
        dir: &ImageDir,
        target: PagemapTarget,
        ids: &PagesIdAllocator,
    ) -> Result<PagemapWriter, PagemapError> {
        PagemapWriter::new(dir, target, ids.allocate())
    }

    /// Whose memory this is.
    pub fn target(&self) -> PagemapTarget {
        self.target
    }

    /// The id of the pages image (`pages-<id>.img`).
    pub fn pages_id(&self) -> u32 {
        self.pages_id
    }

    /// Counters so far (runs still being merged included).
    pub fn stats(&self) -> PagemapStats {
        self.stats
    }

    fn check_run(&self, vaddr: u64, len: u64, flags: u32) -> Result<u64, PagemapError> {
        let file = || self.pagemap.file_name().to_owned();
        if vaddr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 {
            return Err(PagemapError::Unaligned {
                file: file(),
                vaddr,
                len,
            });
        }
        let nr_pages = len / PAGE_SIZE;
        if vaddr.checked_add(len).is_none() {
            return Err(PagemapError::Overflow {
                file: file(),
                vaddr,
                nr_pages,
            });
        }
        if vaddr < self.min_next {
            return Err(PagemapError::OutOfOrder {
                file: file(),
                vaddr,
                previous_end: self.min_next,
            });
        }
        if flags & !(PE_PARENT | PE_LAZY | PE_PRESENT) != 0 {
            return Err(PagemapError::BadFlags {
                file: file(),
                vaddr,
                flags,
                reason: "unknown flag bits",
            });
        }
        if flags & PE_PRESENT != 0 && flags & PE_PARENT != 0 {
            return Err(PagemapError::BadFlags {
                file: file(),
                vaddr,
                flags,
                reason: "pages cannot be both present and in the parent",
            });
        }
        Ok(nr_pages)
    }

    fn record(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> Result<(), PagemapError> {
        if flags & PE_PRESENT != 0 {
            self.stats.pages_written += nr_pages;
        }
        if flags & PE_PARENT != 0 {
            self.stats.pages_in_parent += nr_pages;
        }
        if flags & PE_LAZY != 0 {
            self.stats.pages_lazy += nr_pages;
        }
        let run = Run {
            vaddr,
            nr_pages,
            flags,
        };
        self.min_next = run.end();
        match &mut self.pending {
            Some(pending) if pending.end() == vaddr && pending.flags == flags => {
                pending.nr_pages += nr_pages;
                Ok(())
            }
            _ => {
                if let Some(done) = self.pending.replace(run) {
                    self.write_run(done)?;
                }
                Ok(())
            }
        }
    }

    fn write_run(&mut self, run: Run) -> Result<(), PagemapError> {
        // Like CRIU 4.2: flags and the 64-bit nr_pages always, compat_nr_pages 0.
        let entry = PagemapEntry {
            vaddr: run.vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(run.flags),
            nr_pages: Some(run.nr_pages),
        };
        self.pagemap.write_entry(&entry)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Appends present pages starting at `vaddr` (page aligned, whole pages).
    pub fn add_pages(&mut self, vaddr: u64, data: &[u8]) -> Result<(), PagemapError> {
        self.add_pages_flagged(vaddr, data, PE_PRESENT)
    }

    /// Appends pages with explicit flags, which must include [`PE_PRESENT`]
    /// (CRIU 4.2 writes `PE_PRESENT | PE_LAZY` for anonymous private memory).
    pub fn add_pages_flagged(
        &mut self,
        vaddr: u64,
        data: &[u8],
        flags: u32,
    ) -> Result<(), PagemapError> {
        self.add_pages_vectored(vaddr, &[IoSlice::new(data)], flags)
    }

    /// Appends pages whose contents are spread over several buffers (one
    /// `writev` when they are large).
    pub fn add_pages_vectored(
        &mut self,
        vaddr: u64,
        bufs: &[IoSlice<'_>],
        flags: u32,
    ) -> Result<(), PagemapError> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let nr_pages = self.check_present(vaddr, len, flags)?;
        self.pages.write_extra_vectored(bufs)?;
        self.record(vaddr, nr_pages, flags)
    }

    /// Appends `len` bytes of pages that wait in a pipe (e.g. vmspliced), moved
    /// into the pages image with `splice`.
    pub fn add_pages_from_pipe(
        &mut self,
        vaddr: u64,
        pipe: BorrowedFd<'_>,
        len: u64,
        flags: u32,
    ) -> Result<(), PagemapError> {
        let nr_pages = self.check_present(vaddr, len, flags)?;
        self.pages.splice_extra_from(pipe, len)?;
        self.record(vaddr, nr_pages, flags)
    }

    fn check_present(&self, vaddr: u64, len: u64, flags: u32) -> Result<u64, PagemapError> {
        let nr_pages = self.check_run(vaddr, len, flags)?;
        if flags & PE_PRESENT == 0 {
            return Err(PagemapError::BadFlags {
                file: self.pagemap.file_name().to_owned(),
                vaddr,
                flags,
                reason: "pages with data need PE_PRESENT",
            });
        }
        Ok(nr_pages)
    }

    /// Records pages without data here: [`PE_PARENT`] (unchanged since the
    /// parent dump) and/or [`PE_LAZY`] (served later by a page server).
    pub fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> Result<(), PagemapError> {
        let len = nr_pages
            .checked_mul(PAGE_SIZE)
            .ok_or_else(|| PagemapError::Overflow {
                file: self.pagemap.file_name().to_owned(),
                vaddr,
                nr_pages,
            })?;
        self.check_run(vaddr, len, flags)?;
        if flags & PE_PRESENT != 0 || flags & (PE_PARENT | PE_LAZY) == 0 {
            return Err(PagemapError::BadFlags {
                file: self.pagemap.file_name().to_owned(),
                vaddr,
                flags,
                reason: "a hole needs PE_PARENT or PE_LAZY and no PE_PRESENT",
            });
        }
        self.record(vaddr, nr_pages, flags)
    }

    /// Writes the last run and publishes both images.
    pub fn finish(mut self) -> Result<PagemapStats, PagemapError> {
        if let Some(run) = self.pending.take() {
            self.write_run(run)?;
        }
        let PagemapWriter {
            pagemap,
            pages,
            stats,
            ..
        } = self;
        pages.finish()?;
        pagemap.finish()?;
        Ok(stats)
    }
}

/// One run of a pagemap, as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// First address (offset in the object for shmem).
    pub vaddr: u64,
    /// Number of pages.
    pub nr_pages: u64,
    /// `PE_*` flags, after CRIU's compatibility rules.
    pub flags: u32,
    /// Offset of the run's data in the pages image (runs with [`PE_PRESENT`]).
    pub pages_offset: Option<u64>,
}

impl PageRun {
    /// First address after the run.
    pub fn end(&self) -> u64 {
        self.vaddr + self.nr_pages * PAGE_SIZE
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.nr_pages * PAGE_SIZE
    }

    /// True for a run of zero pages (never produced by a writer).
    pub fn is_empty(&self) -> bool {
        self.nr_pages == 0
    }
}

/// Reads the runs of a pagemap in order, with running offsets into its pages image.
#[derive(Debug)]
pub struct PagemapReader {
    reader: ImageReader,
    pages_id: u32,
    pages_offset: u64,
    previous_end: u64,
}

impl PagemapReader {
    /// Opens the pagemap of `target`; `None` if the image does not exist.
    pub fn open(
        dir: &ImageDir,
        target: PagemapTarget,
    ) -> Result<Option<PagemapReader>, PagemapError> {
        let reader = dir.reader(target.kind(), target.id())?;
        if reader.is_missing() {
            return Ok(None);
        }
        PagemapReader::from_reader(reader).map(Some)
    }

    /// Reads the `pagemap_head` of an opened pagemap image.
    pub fn from_reader(mut reader: ImageReader) -> Result<PagemapReader, PagemapError> {
        let head: PagemapHead = reader
            .next_entry()?
            .ok_or_else(|| PagemapError::MissingHead {
                file: reader.file_name().to_owned(),
            })?;
        Ok(PagemapReader {
            reader,
            pages_id: head.pages_id,
            pages_offset: 0,
            previous_end: 0,
        })
    }

    /// The pages image id from the head.
    pub fn pages_id(&self) -> u32 {
        self.pages_id
    }

    /// The pagemap file name.
    pub fn file_name(&self) -> &str {
        self.reader.file_name()
    }

    /// Bytes of the pages image used so far by present runs.
    pub fn pages_bytes(&self) -> u64 {
        self.pages_offset
    }

    /// The next run, or `None` at the end.
    pub fn next_run(&mut self) -> Result<Option<PageRun>, PagemapError> {
        let Some(entry) = self.reader.next_entry::<PagemapEntry>()? else {
            return Ok(None);
        };
        let file = || self.reader.file_name().to_owned();
        // CRIU's compatibility rules for entries of older writers.
        let flags = if entry.in_parent == Some(true) {
            entry.flags.unwrap_or(0) | PE_PARENT
        } else {
            entry.flags.unwrap_or(PE_PRESENT)
        };
        let nr_pages = entry.nr_pages.unwrap_or(u64::from(entry.compat_nr_pages));
        let vaddr = entry.vaddr;
        let len = nr_pages
            .checked_mul(PAGE_SIZE)
            .filter(|len| vaddr.checked_add(*len).is_some())
            .ok_or_else(|| PagemapError::Overflow {
                file: file(),
                vaddr,
                nr_pages,
            })?;
        if vaddr % PAGE_SIZE != 0 {
            return Err(PagemapError::Unaligned {
                file: file(),
                vaddr,
                len,
            });
        }
        if vaddr < self.previous_end {
            return Err(PagemapError::OutOfOrder {
                file: file(),
                vaddr,
                previous_end: self.previous_end,
            });
        }
        if flags & PE_PRESENT != 0 && flags & PE_PARENT != 0 {
            return Err(PagemapError::BadFlags {
                file: file(),
                vaddr,
                flags,
                reason: "pages cannot be both present and in the parent",
            });
        }
        self.previous_end = vaddr + len;
        let pages_offset = if flags & PE_PRESENT != 0 {
            let offset = self.pages_offset;
            self.pages_offset = offset
                .checked_add(len)
                .ok_or_else(|| PagemapError::Overflow {
                    file: file(),
                    vaddr,
                    nr_pages,
                })?;
            Some(offset)
        } else {
            None
        };
        Ok(Some(PageRun {
            vaddr,
            nr_pages,
            flags,
            pages_offset,
        }))
    }

    /// Every remaining run.
    pub fn read_all(&mut self) -> Result<Vec<PageRun>, PagemapError> {
        let mut runs = Vec::new();
        while let Some(run) = self.next_run()? {
            runs.push(run);
        }
        Ok(runs)
    }
}

#[derive(Debug)]
struct Level {
    pagemap_file: String,
    pages_file: String,
    runs: Vec<PageRun>,
    /// `None` when the level has no present pages (the file may then be missing).
    pages: Option<File>,
}

/// A contiguous piece of memory contents and where its bytes are: `len` bytes
/// for addresses `vaddr..vaddr+len` at `offset` in `file`.
#[derive(Clone, Copy, Debug)]
pub struct PageSegment<'a> {
    /// First address.
    pub vaddr: u64,
    /// Length in bytes (whole pages).
    pub len: u64,
    /// The pages image holding the bytes.
    pub file: &'a File,
    /// Offset of the first byte in `file`.
    pub offset: u64,
    /// 0 = this dump's pages image, 1 = the parent's, and so on.
    pub level: usize,
}

/// Page contents of one pagemap, with [`PE_PARENT`] runs resolved through the
/// chain of `parent` images.
#[derive(Debug)]
pub struct PageRead {
    levels: Vec<Level>,
}

impl PageRead {
    /// Opens the pagemap of `target` and, as far as its runs need them, the
    /// pagemaps of the parent chain. `None` if this dump has no such pagemap.
    pub fn open(dir: &ImageDir, target: PagemapTarget) -> Result<Option<PageRead>, PagemapError> {
        let Some(top) = PageRead::open_level(dir, target)? else {
            return Ok(None);
        };
        let mut levels = vec![top];
        let mut current = dir.clone();
        let mut visited = 1usize;
        while levels[levels.len() - 1]
            .runs
            .iter()
            .any(|r| r.flags & PE_PARENT != 0)
        {
            let Some(parent) = current.parent()? else {
                break;
            };
            visited += 1;
            if visited > 4096 {
                return Err(ImageError::ParentLoop {
                    file: parent.label("."),
                }
                .into());
            }
            match PageRead::open_level(&parent, target)? {
                Some(level) => levels.push(level),
                None => break,
            }
            current = parent;
        }
        Ok(Some(PageRead { levels }))
    }

    fn open_level(dir: &ImageDir, target: PagemapTarget) -> Result<Option<Level>, PagemapError> {
        let Some(mut reader) = PagemapReader::open(dir, target)? else {
            return Ok(None);
        };
        let runs = reader.read_all()?;
        let needed = reader.pages_bytes();
        let pages_name = ImageKind::Pages
            .file_name(u64::from(reader.pages_id()))
            .map_err(ImageError::from)?;
        let pages_file = dir.label(&pages_name);
        let pages = match dir.open_file(&pages_name)? {
            Some(file) => {
                let len = file
                    .metadata()
                    .map_err(|e| ImageError::io(pages_file.clone(), "fstat", e))?
                    .len();
                if len < needed {
                    return Err(PagemapError::PagesTooShort {
                        file: pages_file,
                        len,
                        pagemap: reader.file_name().to_owned(),
                        needed,
                    });
                }
                Some(file)
            }
            None if needed == 0 => None,
            None => return Err(ImageError::Missing { file: pages_file }.into()),
        };
        Ok(Some(Level {
            pagemap_file: reader.file_name().to_owned(),
            pages_file,
            runs,
            pages,
        }))
    }

    /// The runs of this dump's pagemap.
    pub fn runs(&self) -> &[PageRun] {
        &self.levels[0].runs
    }

    /// How many images of the chain are open (1 = no parent needed).
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The pages image file name at `level` (`parent/pages-3.img`).
    pub fn pages_file_name(&self, level: usize) -> Option<&str> {
        self.levels.get(level).map(|l| l.pages_file.as_str())
    }

    /// Where the contents of every page of this pagemap are, in address order,
    /// adjacent pieces of one file merged. Lazy-only runs are an error (no local data).
    pub fn segments(&self) -> Result<Vec<PageSegment<'_>>, PagemapError> {
        let mut out = Vec::new();
        for run in &self.levels[0].runs {
            self.resolve_in_level(0, run.vaddr, run.end(), &mut out)?;
        }
        Ok(out)
    }

    /// Where the contents of `nr_pages` pages from `vaddr` are. The range must
    /// be covered by this dump's pagemap.
    pub fn resolve(&self, vaddr: u64, nr_pages: u64) -> Result<Vec<PageSegment<'_>>, PagemapError> {
        let end = nr_pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| vaddr.checked_add(len))
            .ok_or_else(|| PagemapError::Overflow {
                file: self.levels[0].pagemap_file.clone(),
                vaddr,
                nr_pages,
            })?;
        let mut out = Vec::new();
        self.resolve_in_level(0, vaddr, end, &mut out)?;
        Ok(out)
    }

    fn resolve_in_level<'a>(
        &'a self,
        level_index: usize,
        start: u64,
        end: u64,
        out: &mut Vec<PageSegment<'a>>,
    ) -> Result<(), PagemapError> {
        let missing = |vaddr: u64, end: u64| {
            if level_index == 0 {
                PagemapError::NotInPagemap {
                    file: self.levels[0].pagemap_file.clone(),
                    vaddr,
                    end,
                }
            } else {
                PagemapError::NotInParent {
                    file: self.levels[level_index - 1].pagemap_file.clone(),
                    vaddr,
                    end,
                }
            }
        };
        let Some(level) = self.levels.get(level_index) else {
            return Err(missing(start, end));
        };
        // First run that ends after `start`.
        let mut index = level.runs.partition_point(|run| run.end() <= start);
        let mut cursor = start;
        while cursor < end {
            let Some(run) = level.runs.get(index) else {
                return Err(missing(cursor, end));
            };
            if run.vaddr > cursor {
                return Err(missing(cursor, run.vaddr.min(end)));
            }
            let piece_end = run.end().min(end);
            if let (Some(base), Some(file)) = (run.pages_offset, level.pages.as_ref()) {
                let segment = PageSegment {
                    vaddr: cursor,
                    len: piece_end - cursor,
                    file,
                    offset: base + (cursor - run.vaddr),
                    level: level_index,
                };
                push_merged(out, segment);
            } else if run.flags & PE_PARENT != 0 {
                self.resolve_in_level(level_index + 1, cursor, piece_end, out)?;
            } else {
                return Err(PagemapError::LazyNotLocal {
                    file: level.pagemap_file.clone(),
                    vaddr: cursor,
                    end: piece_end,
                });
            }
            cursor = piece_end;
            index += 1;
        }
        Ok(())
    }

    /// Reads the contents of the pages at `vaddr` into `buf` (whole pages).
    pub fn read_pages(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), PagemapError> {
        let len = buf.len() as u64;
        if len % PAGE_SIZE != 0 {
            return Err(PagemapError::BufferSize {
                len: buf.len(),
                nr_pages: len / PAGE_SIZE,
            });
        }
        let segments = self.resolve(vaddr, len / PAGE_SIZE)?;
        for segment in segments {
            let start = (segment.vaddr - vaddr) as usize;
            let piece = &mut buf[start..start + segment.len as usize];
            segment
                .file
                .read_exact_at(piece, segment.offset)
                .map_err(|source| ImageError::Read {
                    file: self.levels[segment.level].pages_file.clone(),
                    offset: segment.offset,
                    source,
                })?;
        }
        Ok(())
    }
}

fn push_merged<'a>(out: &mut Vec<PageSegment<'a>>, segment: PageSegment<'a>) {
    if let Some(last) = out.last_mut() {
        if last.level == segment.level
            && last.vaddr + last.len == segment.vaddr
            && last.offset + last.len == segment.offset
        {
            last.len += segment.len;
            return;
        }
    }
    out.push(segment);
}
