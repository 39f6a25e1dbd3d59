//! Reading page contents out of another process and handing them to a [`PageSink`].
//!
//! process_vm_readv moves many ranges per call (one local buffer, up to 1024 remote iovecs) into
//! a reusable chunk buffer. Pages it cannot read (PROT_NONE, write-only) make it stop short or
//! fail with EFAULT; the rest of that range is then read through `/proc/PID/mem`, which uses
//! FOLL_FORCE. By default a reader thread fills one buffer while the calling thread hands the
//! other to the sink (double buffering), so reading overlaps writing; the sink itself never
//! leaves the calling thread and need not be `Send`.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, TryRecvError};

use crate::scan::PageRange;
use crate::sys::{self, RemoteSegment, IOV_MAX};
use crate::PAGE_SIZE;

/// Errors while reading pages.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening `/proc/<pid>/mem` failed.
    #[error("cannot open /proc/{pid}/mem: {source}")]
    OpenMem {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// process_vm_readv failed for a reason other than an unreadable page.
    #[error("process_vm_readv of pid {pid} at {addr:#x} failed: {source}")]
    ProcessVmRead {
        pid: i32,
        addr: u64,
        #[source]
        source: io::Error,
    },
    /// Neither process_vm_readv nor `/proc/<pid>/mem` could read these bytes.
    #[error(
        "cannot read {len:#x} bytes at {addr:#x} of pid {pid} through /proc/{pid}/mem: {source}"
    )]
    Unreadable {
        pid: i32,
        addr: u64,
        len: u64,
        #[source]
        source: io::Error,
    },
    /// A range that is not page aligned, or empty, or wraps around.
    #[error("page range start {start:#x} nr_pages {nr_pages} is not a valid page range")]
    BadRange { start: u64, nr_pages: u64 },
    /// The sink refused data.
    #[error("page sink failed at {vaddr:#x}: {source}")]
    Sink {
        vaddr: u64,
        #[source]
        source: io::Error,
    },
    /// [`PageReader::read_into`]'s writer could not store the pages read from `vaddr` on.
    #[error("storing the pages read at {vaddr:#x} failed: {source}")]
    Write {
        vaddr: u64,
        #[source]
        source: io::Error,
    },
    /// Reading a shmem object's file failed.
    #[error("reading shmem object at offset {offset:#x} failed: {source}")]
    ShmemRead {
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The chunk size is smaller than a page or not a multiple of it.
    #[error("chunk size {0} is not a non-zero multiple of the page size")]
    BadChunkSize(usize),
    /// [`PageReader::read_into`] got a destination of another size than the ranges.
    #[error("the ranges hold {ranges} bytes but the destination has room for {destination}")]
    DestinationSize { ranges: u64, destination: usize },
}

/// Where dumped pages go: image files, a page server, a test buffer.
///
/// Calls arrive in increasing `vaddr` order for one [`PageReader::read`].
pub trait PageSink {
    /// `data.len() / 4096` pages of content starting at `vaddr`.
    fn add_pages(&mut self, vaddr: u64, data: &[u8]) -> io::Result<()>;

    /// `nr_pages` pages at `vaddr` whose content is not sent (e.g. PE_PARENT pages, found in the
    /// parent images); `flags` are the PE_* flags for the pagemap entry.
    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> io::Result<()>;

    /// Several runs whose contents lie back to back in `data` (a batch filled by one
    /// process_vm_readv). Sinks that write a file override this to issue one write for the
    /// whole batch; the default calls [`PageSink::add_pages`] per run.
    fn add_page_runs(&mut self, runs: &[PageRange], data: &[u8]) -> io::Result<()> {
        let mut offset = 0usize;
        for run in runs {
            let len = run.len_bytes() as usize;
            self.add_pages(run.start, &data[offset..offset + len])?;
            offset += len;
        }
        Ok(())
    }
}

impl<S: PageSink + ?Sized> PageSink for &mut S {
    fn add_pages(&mut self, vaddr: u64, data: &[u8]) -> io::Result<()> {
        (**self).add_pages(vaddr, data)
    }
    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> io::Result<()> {
        (**self).add_hole(vaddr, nr_pages, flags)
    }
    fn add_page_runs(&mut self, runs: &[PageRange], data: &[u8]) -> io::Result<()> {
        (**self).add_page_runs(runs, data)
    }
}

/// A hole recorded by [`VecSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// First address.
    pub vaddr: u64,
    /// Number of pages.
    pub nr_pages: u64,
    /// PE_* flags.
    pub flags: u32,
}

/// A [`PageSink`] that keeps everything in memory (tests, small dumps). Contiguous pages are
/// merged into one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VecSink {
    /// (start address, contents) per contiguous run, in arrival order.
    pub runs: Vec<(u64, Vec<u8>)>,
    /// Holes in arrival order.
    pub holes: Vec<Hole>,
}

impl VecSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total number of pages received with content.
    pub fn nr_pages(&self) -> u64 {
        self.runs
            .iter()
            .map(|(_, data)| data.len() as u64 / PAGE_SIZE)
            .sum()
    }

    /// The page ranges received with content.
    pub fn ranges(&self) -> Vec<PageRange> {
        self.runs
            .iter()
            .map(|(start, data)| PageRange::new(*start, data.len() as u64 / PAGE_SIZE))
            .collect()
    }

    /// The received content of the page containing `vaddr`, if any.
    pub fn page(&self, vaddr: u64) -> Option<&[u8]> {
        let page = vaddr - vaddr % PAGE_SIZE;
        self.runs.iter().find_map(|(start, data)| {
            let end = start + data.len() as u64;
            (page >= *start && page < end).then(|| {
                let offset = (page - start) as usize;
                &data[offset..offset + PAGE_SIZE as usize]
            })
        })
    }
}

impl PageSink for VecSink {
    fn add_pages(&mut self, vaddr: u64, data: &[u8]) -> io::Result<()> {
        if vaddr % PAGE_SIZE != 0 || data.len() as u64 % PAGE_SIZE != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unaligned pages at {vaddr:#x}, {} bytes", data.len()),
            ));
        }
        if let Some((start, last)) = self.runs.last_mut() {
            if *start + last.len() as u64 == vaddr {
                last.extend_from_slice(data);
                return Ok(());
            }
        }
        self.runs.push((vaddr, data.to_vec()));
        Ok(())
    }

    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> io::Result<()> {
        self.holes.push(Hole {
            vaddr,
            nr_pages,
            flags,
        });
        Ok(())
    }
}

/// How long one side of the reader pipeline spins for the other before it sleeps.
///
/// Why: each hand-over of a buffer is a few hundred microseconds of work on either side, and on
/// these VMs a sleeping vCPU costs tens of microseconds to wake (an IPI through the host), paid twice
/// per buffer when both threads sleep. Spinning a little longer than one buffer's work keeps both
/// vCPUs awake for the whole transfer; the sleep after it keeps a stalled sink from burning a core.
const HANDOVER_SPIN: Duration = Duration::from_millis(5);

/// The next message of `rx`, spinning up to [`HANDOVER_SPIN`] before blocking; `None` once every
/// sender is gone.
fn recv_spinning<T>(rx: &Receiver<T>) -> Option<T> {
    let deadline = Instant::now() + HANDOVER_SPIN;
    loop {
        match rx.try_recv() {
            Ok(message) => return Some(message),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < deadline => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// Tuning of a [`PageReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Bytes per process_vm_readv call and per sink batch (a multiple of 4096).
    pub chunk_bytes: usize,
    /// Overlap reading (a helper thread) with the sink (the calling thread).
    pub pipelined: bool,
}

impl Default for ReaderOptions {
    /// 4 MiB chunks, pipelined: the fastest measured setting (see the crate docs).
    fn default() -> Self {
        Self {
            chunk_bytes: 4 << 20,
            pipelined: true,
        }
    }
}

/// What one [`PageReader::read`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Pages handed to the sink.
    pub pages: u64,
    /// process_vm_readv calls made.
    pub pvr_calls: u64,
    /// Pages read through `/proc/PID/mem` because process_vm_readv could not.
    pub mem_fallback_pages: u64,
    /// Sink batches (one [`PageSink::add_page_runs`] each).
    pub batches: u64,
    /// Of [`ReadStats::pages`], those [`PageReader::read_into`] gave to its positional writer
    /// instead of filling them through memory.
    pub written_pages: u64,
}

/// Reads page contents of one process.
pub struct PageReader {
    pid: i32,
    mem: File,
    options: ReaderOptions,
    /// Chunk buffers kept between reads (allocating them faults pages in, which is slow here).
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for PageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the buffers: they are megabytes of another process's memory.
        f.debug_struct("PageReader")
            .field("pid", &self.pid)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One batch: the runs it covers and where their bytes go in the chunk buffer.
struct Batch {
    runs: Vec<PageRange>,
    bytes: usize,
}

impl Batch {
    /// The address of its first page, to name the batch in errors.
    fn first_vaddr(&self) -> u64 {
        self.runs.first().map_or(0, |run| run.start)
    }
}

impl ReadStats {
    /// Counts `batch` as read and stored; returns its pages.
    fn add_batch(&mut self, batch: &Batch) -> u64 {
        let pages = batch.bytes as u64 / PAGE_SIZE;
        self.pages += pages;
        self.batches += 1;
        pages
    }
}

/// Stores bytes (the second argument) into a part of a [`PageReader::read_into`] destination (the
/// first, exactly as long) by a way other than its memory: `pwrite` into the file behind a shared
/// mapping (`criu_image::MappedExtraWriter::write_into`).
pub type PositionalWrite<'a> = dyn Fn(&mut [u8], &[u8]) -> io::Result<()> + Sync + 'a;

/// A chunk of [`PageReader::read_into`]: the pages to read and the part of the destination their
/// bytes go to.
struct FillJob<'d> {
    batch: Batch,
    slot: &'d mut [u8],
}

/// A filled buffer travelling from the reader thread to the sink.
struct Filled {
    buffer: Vec<u8>,
    batch: Batch,
    stats: ReadStats,
}

impl PageReader {
    /// A reader for `pid` with default options. Opens `/proc/<pid>/mem` now, so the caller
    /// needs ptrace-read access to the target.
    pub fn new(pid: i32) -> Result<Self, ReadError> {
        Self::with_options(pid, ReaderOptions::default())
    }

    /// A reader with explicit options.
    pub fn with_options(pid: i32, options: ReaderOptions) -> Result<Self, ReadError> {
        if options.chunk_bytes == 0 || options.chunk_bytes as u64 % PAGE_SIZE != 0 {
            return Err(ReadError::BadChunkSize(options.chunk_bytes));
        }
        let mem = File::open(format!("/proc/{pid}/mem"))
            .map_err(|source| ReadError::OpenMem { pid, source })?;
        Ok(Self {
            pid,
            mem,
            options,
            buffers: Mutex::new(Vec::new()),
        })
    }

    /// The target pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The options in use.
    pub fn options(&self) -> ReaderOptions {
        self.options
    }

    /// Reads every page of `ranges` (sorted, as [`crate::present_ranges`] returns them) and
    /// gives the contents to `sink` in address order, in batches of up to `chunk_bytes`.
    pub fn read(
        &self,
        ranges: &[PageRange],
        sink: &mut dyn PageSink,
    ) -> Result<ReadStats, ReadError> {
        let total_bytes = check_ranges(ranges)?;
        // A single batch has nothing to overlap with; skip the thread.
        if self.options.pipelined && total_bytes > self.options.chunk_bytes as u64 {
            self.read_pipelined(ranges, sink)
        } else {
            self.read_serial(ranges, sink)
        }
    }

    /// Reads every page of `ranges` (sorted) into `destination`, which holds exactly their bytes
    /// back to back, in chunks of `chunk_bytes` shared out among worker threads: one per CPU (at
    /// most [`MAX_FILL_WORKERS`]) when pipelined, else the calling thread alone.
    ///
    /// This is for a destination whose filling is the expensive part: a shared mapping of an
    /// image file on tmpfs (`criu_image::ImageWriter::append_mapped`), where the kernel allocates
    /// the file's pages as process_vm_readv copies into them, on several workers at once, where
    /// `write`s of one file take turns on its lock.
    ///
    /// With `write_at` (a way to store into part of the destination other than through memory:
    /// `pwrite` into the file behind the mapping), the calling thread takes chunks from the front,
    /// reads each into a buffer and has `write_at` store it into the chunk's part, while the
    /// other workers fill chunks from the back through memory until they meet. Why: a page the
    /// kernel creates for `pwrite` is copied into, not zeroed first and faulted in, and has no
    /// page-table entry to tear down afterwards; but writes to one file take turns on its lock,
    /// so one writer is all that pays. Measured on this 2-CPU VM, 4 GiB dumps to tmpfs that kill
    /// the tree (two runs of 16 each, alternating binaries): whole command medians 1.97 and 2.00 s
    /// against 2.12 and 2.05 s for fillers alone, the part after the fill 36-50 ms shorter in
    /// every round (fewer page-table entries to tear down), the fill itself unchanged. On error,
    /// part of `destination` may be filled.
    pub fn read_into(
        &self,
        ranges: &[PageRange],
        destination: &mut [u8],
        write_at: Option<&PositionalWrite<'_>>,
    ) -> Result<ReadStats, ReadError> {
        let total_bytes = check_ranges(ranges)?;
        if total_bytes != destination.len() as u64 {
            return Err(ReadError::DestinationSize {
                ranges: total_bytes,
                destination: destination.len(),
            });
        }
        let mut jobs = VecDeque::new();
        let mut rest = destination;
        for batch in Batches::new(ranges, self.options.chunk_bytes) {
            let (slot, tail) = std::mem::take(&mut rest).split_at_mut(batch.bytes);
            jobs.push_back(FillJob { batch, slot });
            rest = tail;
        }
        let workers = if self.options.pipelined {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .clamp(1, MAX_FILL_WORKERS)
                .min(jobs.len())
        } else {
            1
        };
        let queue = Mutex::new(jobs);
        let failed = AtomicBool::new(false);
        let results: Vec<Result<ReadStats, ReadError>> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..workers)
                .map(|_| scope.spawn(|| self.fill_jobs(&queue, &failed)))
                .collect();
            let mut results = vec![match write_at {
                Some(write_at) => self.write_jobs(&queue, &failed, write_at),
                None => self.fill_jobs(&queue, &failed),
            }];
            results.extend(helpers.into_iter().map(|helper| {
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }));
            results
        });
        let mut stats = ReadStats::default();
        for result in results {
            let part = result?;
            stats.pages += part.pages;
            stats.pvr_calls += part.pvr_calls;
            stats.mem_fallback_pages += part.mem_fallback_pages;
            stats.batches += part.batches;
            stats.written_pages += part.written_pages;
        }
        Ok(stats)
    }

    /// A worker of [`PageReader::read_into`] filling through memory: takes chunks from the back
    /// of `queue` until none is left or a worker failed.
    fn fill_jobs(
        &self,
        queue: &Mutex<VecDeque<FillJob<'_>>>,
        failed: &AtomicBool,
    ) -> Result<ReadStats, ReadError> {
        let mut stats = ReadStats::default();
        while !failed.load(Ordering::Relaxed) {
            let Some(job) = queue.lock().map(|mut jobs| jobs.pop_back()).unwrap_or(None) else {
                break;
            };
            if let Err(error) = self.fill(&job.batch, job.slot, &mut stats) {
                failed.store(true, Ordering::Relaxed);
                return Err(error);
            }
            stats.add_batch(&job.batch);
        }
        Ok(stats)
    }

    /// The worker of [`PageReader::read_into`] that writes: takes chunks from the front of
    /// `queue`, reads each into a buffer and has `write_at` store it into the chunk's slot.
    fn write_jobs(
        &self,
        queue: &Mutex<VecDeque<FillJob<'_>>>,
        failed: &AtomicBool,
        write_at: &PositionalWrite<'_>,
    ) -> Result<ReadStats, ReadError> {
        let mut stats = ReadStats::default();
        let mut buffer = self.take_buffer();
        while !failed.load(Ordering::Relaxed) {
            let Some(job) = queue
                .lock()
                .map(|mut jobs| jobs.pop_front())
                .unwrap_or(None)
            else {
                break;
            };
            let FillJob { batch, slot } = job;
            let data = &mut buffer[..batch.bytes];
            let written = self.fill(&batch, data, &mut stats).and_then(|()| {
                write_at(slot, data).map_err(|source| ReadError::Write {
                    vaddr: batch.first_vaddr(),
                    source,
                })
            });
            if let Err(error) = written {
                failed.store(true, Ordering::Relaxed);
                return Err(error);
            }
            stats.written_pages += stats.add_batch(&batch);
        }
        self.return_buffer(buffer);
        Ok(stats)
    }

    fn take_buffer(&self) -> Vec<u8> {
        let pooled = self
            .buffers
            .lock()
            .map(|mut pool| pool.pop())
            .unwrap_or(None);
        pooled.unwrap_or_else(|| vec![0; self.options.chunk_bytes])
    }

    fn return_buffer(&self, buffer: Vec<u8>) {
        if let Ok(mut pool) = self.buffers.lock() {
            if pool.len() < 2 {
                pool.push(buffer);
            }
        }
    }

    fn read_serial(
        &self,
        ranges: &[PageRange],
        sink: &mut dyn PageSink,
    ) -> Result<ReadStats, ReadError> {
        let mut buffer = self.take_buffer();
        let mut stats = ReadStats::default();
        let mut result = Ok(());
        for batch in Batches::new(ranges, self.options.chunk_bytes) {
            if let Err(error) = self.fill(&batch, &mut buffer, &mut stats) {
                result = Err(error);
                break;
            }
            if let Err(error) = deliver(sink, &batch, &buffer, &mut stats) {
                result = Err(error);
                break;
            }
        }
        self.return_buffer(buffer);
        result.map(|()| stats)
    }

    fn read_pipelined(
        &self,
        ranges: &[PageRange],
        sink: &mut dyn PageSink,
    ) -> Result<ReadStats, ReadError> {
        let (full_tx, full_rx) = bounded::<Result<Filled, ReadError>>(1);
        let (empty_tx, empty_rx) = bounded::<Vec<u8>>(2);
        for _ in 0..2 {
            empty_tx
                .send(self.take_buffer())
                .expect("the receiver is alive");
        }
        let mut stats = ReadStats::default();
        let mut result = Ok(());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let full_tx = full_tx;
                for batch in Batches::new(ranges, self.options.chunk_bytes) {
                    let Some(mut buffer) = recv_spinning(&empty_rx) else {
                        return;
                    };
                    let mut batch_stats = ReadStats::default();
                    let message =
                        self.fill(&batch, &mut buffer, &mut batch_stats)
                            .map(|()| Filled {
                                buffer,
                                batch,
                                stats: batch_stats,
                            });
                    let failed = message.is_err();
                    if full_tx.send(message).is_err() || failed {
                        return;
                    }
                }
            });
            while let Some(message) = recv_spinning(&full_rx) {
                let filled = match message {
                    Ok(filled) => filled,
                    Err(error) => {
                        result = Err(error);
                        break;
                    }
                };
                stats.pvr_calls += filled.stats.pvr_calls;
                stats.mem_fallback_pages += filled.stats.mem_fallback_pages;
                if let Err(error) = deliver(sink, &filled.batch, &filled.buffer, &mut stats) {
                    result = Err(error);
                    break;
                }
                // The reader may have finished; then the buffer simply goes back to the pool.
                if let Err(returned) = empty_tx.send(filled.buffer) {
                    self.return_buffer(returned.into_inner());
                }
            }
            // Unblock the reader thread if we stopped early.
            drop(full_rx);
            drop(empty_tx);
        });
        for buffer in empty_rx.try_iter() {
            self.return_buffer(buffer);
        }
        result.map(|()| stats)
    }

    /// Fills the front of `buffer` with the contents of `batch`'s runs.
    fn fill(
        &self,
        batch: &Batch,
        buffer: &mut [u8],
        stats: &mut ReadStats,
    ) -> Result<(), ReadError> {
        let segments: Vec<RemoteSegment> = batch
            .runs
            .iter()
            .map(|run| RemoteSegment {
                addr: run.start,
                len: run.len_bytes() as usize,
            })
            .collect();
        let mut filled = 0usize;
        let mut index = 0usize;
        // Bytes of segments[index] already read.
        let mut within = 0usize;
        while index < segments.len() {
            let current = RemoteSegment {
                addr: segments[index].addr + within as u64,
                len: segments[index].len - within,
            };
            let mut remote = Vec::with_capacity(segments.len() - index);
            remote.push(current);
            remote.extend_from_slice(&segments[index + 1..]);
            let wanted: usize = remote.iter().map(|seg| seg.len).sum();
            stats.pvr_calls += 1;
            let read = match sys::process_vm_readv(self.pid, &mut buffer[filled..], &remote) {
                Ok(read) => read,
                Err(error) if error.raw_os_error() == Some(libc::EFAULT) => 0,
                Err(source) => {
                    return Err(ReadError::ProcessVmRead {
                        pid: self.pid,
                        addr: current.addr,
                        source,
                    })
                }
            };
            filled += read;
            // Advance (index, within) by `read` bytes.
            let mut left = read;
            while left > 0 {
                let remaining_in_segment = segments[index].len - within;
                if left >= remaining_in_segment {
                    left -= remaining_in_segment;
                    index += 1;
                    within = 0;
                } else {
                    within += left;
                    left = 0;
                }
            }
            if read == wanted {
                break;
            }
            // process_vm_readv stopped at an unreadable page: read the rest of this segment
            // through /proc/PID/mem, then carry on with the next segment.
            let addr = segments[index].addr + within as u64;
            let len = segments[index].len - within;
            self.mem
                .read_exact_at(&mut buffer[filled..filled + len], addr)
                .map_err(|source| ReadError::Unreadable {
                    pid: self.pid,
                    addr,
                    len: len as u64,
                    source,
                })?;
            stats.mem_fallback_pages += len as u64 / PAGE_SIZE;
            filled += len;
            index += 1;
            within = 0;
        }
        debug_assert_eq!(filled, batch.bytes);
        Ok(())
    }
}

/// Most threads [`PageReader::read_into`] fills with: past the point where the page allocator and
/// memory bandwidth, not the number of copiers, limit it.
pub const MAX_FILL_WORKERS: usize = 4;

/// Checks that every range is page aligned, not empty and does not wrap; returns their bytes.
fn check_ranges(ranges: &[PageRange]) -> Result<u64, ReadError> {
    let mut total: u64 = 0;
    for range in ranges {
        let len = range.nr_pages.checked_mul(PAGE_SIZE);
        let valid = range.start % PAGE_SIZE == 0
            && range.nr_pages != 0
            && len.and_then(|len| range.start.checked_add(len)).is_some();
        match len.and_then(|len| total.checked_add(len)) {
            Some(sum) if valid => total = sum,
            _ => {
                return Err(ReadError::BadRange {
                    start: range.start,
                    nr_pages: range.nr_pages,
                })
            }
        }
    }
    Ok(total)
}

fn deliver(
    sink: &mut dyn PageSink,
    batch: &Batch,
    buffer: &[u8],
    stats: &mut ReadStats,
) -> Result<(), ReadError> {
    sink.add_page_runs(&batch.runs, &buffer[..batch.bytes])
        .map_err(|source| ReadError::Sink {
            vaddr: batch.first_vaddr(),
            source,
        })?;
    stats.add_batch(batch);
    Ok(())
}

/// Cuts ranges into batches of at most `chunk_bytes` and [`IOV_MAX`] runs, splitting large
/// ranges.
struct Batches<'a> {
    ranges: &'a [PageRange],
    chunk_pages: u64,
    index: usize,
    /// Pages of ranges[index] already batched.
    offset_pages: u64,
}

impl<'a> Batches<'a> {
    fn new(ranges: &'a [PageRange], chunk_bytes: usize) -> Self {
        Self {
            ranges,
            chunk_pages: chunk_bytes as u64 / PAGE_SIZE,
            index: 0,
            offset_pages: 0,
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut runs = Vec::new();
        let mut pages = 0u64;
        while self.index < self.ranges.len() && pages < self.chunk_pages && runs.len() < IOV_MAX {
            let range = self.ranges[self.index];
            let take = (range.nr_pages - self.offset_pages).min(self.chunk_pages - pages);
            runs.push(PageRange::new(
                range.start + self.offset_pages * PAGE_SIZE,
                take,
            ));
            pages += take;
            self.offset_pages += take;
            if self.offset_pages == range.nr_pages {
                self.index += 1;
                self.offset_pages = 0;
            }
        }
        (!runs.is_empty()).then(|| Batch {
            runs,
            bytes: (pages * PAGE_SIZE) as usize,
        })
    }
}
