//! Where a dump's pages go ([`PageStore`]: the images directory or a page
//! server, each behind the [`PagemapDest`] trait object of a [`PagemapOut`]),
//! and a model of CRIU's page pipe (criu/page-pipe.c), used only to
//! cut pagemap entries exactly where CRIU 4.2 cuts them. CRIU moves pages
//! through pipe buffers ("ppb"): a new buffer starts when the PE_LAZY-ness of
//! pages changes or the pipe is full and cannot grow; contiguous pages merge
//! into one iovec only inside one buffer, and each iovec becomes one
//! `pagemap_entry`. In chunk mode (every full dump) each buffer has a pipe of
//! its own and after 8 pipes the chunk is flushed and the buffers reused; in
//! a pre-dump a new buffer shares the previous buffer's pipe while it can grow.

/// CRIU's PIPE_MAX_SIZE in pages: (1 << PAGE_ALLOC_COSTLY_ORDER) pages of
/// 40-byte `pipe_buffer`s.
const PIPE_MAX_PAGES: u32 = 8 * 4096 / 40;
/// NR_PIPES_PER_CHUNK.
const PIPES_PER_CHUNK: u32 = 8;
/// A fresh pipe holds 16 pages.
const DEFAULT_PIPE_PAGES: u32 = 16;

/// One pagemap entry the model emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First page.
    pub vaddr: u64,
    /// Pages.
    pub nr_pages: u64,
    /// PE_LAZY-capable pages.
    pub lazy: bool,
}

#[derive(Debug, Clone)]
struct Ppb {
    lazy: bool,
    pages_in: u32,
    pipe_off: u32,
    pipe_size: u32,
    iovs: Vec<Run>,
}

/// The page-pipe model.
#[derive(Debug, Clone)]
pub struct PagePipeModel {
    all: Vec<Ppb>,
    bufs: Vec<usize>,
    free: Vec<usize>,
    prev: Option<usize>,
    chunk_mode: bool,
    nr_pipes: u32,
    max_pipe_pages: u32,
    /// Pipes created (stats-dump page_pipes).
    pub pipes_created: u64,
    /// Buffers allocated (stats-dump page_pipe_bufs).
    pub bufs_allocated: u64,
    out: Vec<Run>,
    /// Runs of the current chunk already handed out by `take_settled_runs`.
    settled: usize,
}

impl PagePipeModel {
    /// A page pipe whose pipes can grow to `max_pipe_bytes` (what F_SETPIPE_SZ
    /// allows us: /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE).
    pub fn new(max_pipe_bytes: u64) -> Self {
        Self::with_mode(max_pipe_bytes, true)
    }

    /// A page pipe in chunk mode (full dumps) or not (pre-dumps).
    pub fn with_mode(max_pipe_bytes: u64, chunk_mode: bool) -> Self {
        let mut model = Self {
            all: Vec::new(),
            bufs: Vec::new(),
            free: Vec::new(),
            prev: None,
            chunk_mode,
            nr_pipes: 0,
            max_pipe_pages: (max_pipe_bytes / 4096) as u32,
            pipes_created: 0,
            bufs_allocated: 0,
            out: Vec::new(),
            settled: 0,
        };
        // create_page_pipe grows once with flags 0.
        let grown = model.grow(false);
        debug_assert!(grown);
        model
    }

    /// The pipe size CRIU gets on this machine, from pipe-max-size and
    /// whether we hold CAP_SYS_RESOURCE.
    pub fn for_this_machine() -> Self {
        Self::for_this_machine_with(true)
    }

    /// [`PagePipeModel::for_this_machine`] in chunk mode or not.
    pub fn for_this_machine_with(chunk_mode: bool) -> Self {
        let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20);
        let has_sys_resource = crate::proc::read_status(std::process::id() as i32)
            .map(|s| s.cap_eff & (1 << 24) /* CAP_SYS_RESOURCE */ != 0)
            .unwrap_or(false);
        Self::with_mode(if has_sys_resource { u64::MAX } else { max }, chunk_mode)
    }

    /// ppb_resize_pipe: true if the buffer has room (possibly after growing).
    fn resize(&mut self, i: usize) -> bool {
        let ppb = &mut self.all[i];
        if ppb.pages_in + ppb.pipe_off < ppb.pipe_size {
            return true;
        }
        let mut new_size = ppb.pipe_size << 1;
        if new_size > PIPE_MAX_PAGES {
            if ppb.pipe_size < PIPE_MAX_PAGES {
                new_size = PIPE_MAX_PAGES;
            } else {
                return false;
            }
        }
        // The kernel rounds pipe sizes up to a power of two pages.
        let rounded = new_size.next_power_of_two();
        if rounded > self.max_pipe_pages {
            return false;
        }
        ppb.pipe_size = rounded;
        true
    }

    /// page_pipe_grow; false means -EAGAIN (chunk full).
    fn grow(&mut self, lazy: bool) -> bool {
        let i = if !self.free.is_empty() {
            let i = self.free.remove(0);
            self.bufs.push(i);
            i
        } else {
            if self.chunk_mode && self.nr_pipes == PIPES_PER_CHUNK {
                return false;
            }
            self.bufs_allocated += 1;
            // pp_prev_ppb(): in chunk mode a pipe is never shared by two
            // buffers; otherwise the previous buffer's pipe is reused while
            // it has room (or can grow).
            let prev = if self.chunk_mode { None } else { self.prev };
            let shared = match prev {
                Some(p) if self.resize(p) => {
                    let prev = &self.all[p];
                    Some((prev.pages_in + prev.pipe_off, prev.pipe_size))
                }
                _ => None,
            };
            let (pipe_off, pipe_size) = match shared {
                Some(shared) => shared,
                None => {
                    self.pipes_created += 1;
                    self.nr_pipes += 1;
                    (0, DEFAULT_PIPE_PAGES)
                }
            };
            self.all.push(Ppb {
                lazy,
                pages_in: 0,
                pipe_off,
                pipe_size,
                iovs: Vec::new(),
            });
            let i = self.all.len() - 1;
            self.bufs.push(i);
            self.prev = Some(i);
            i
        };
        let ppb = &mut self.all[i];
        ppb.lazy = lazy;
        ppb.pages_in = 0;
        ppb.iovs.clear();
        true
    }

    fn try_add(&mut self, vaddr: u64, lazy: bool) -> bool {
        let Some(&i) = self.bufs.last() else {
            return false;
        };
        if self.all[i].lazy != lazy || !self.resize(i) {
            return false;
        }
        let ppb = &mut self.all[i];
        match ppb.iovs.last_mut() {
            Some(run) if run.vaddr + run.nr_pages * 4096 == vaddr => run.nr_pages += 1,
            _ => ppb.iovs.push(Run {
                vaddr,
                nr_pages: 1,
                lazy,
            }),
        }
        ppb.pages_in += 1;
        true
    }

    /// Adds one page; returns the entries completed by a chunk flush, if any.
    pub fn add_page(&mut self, vaddr: u64, lazy: bool) {
        loop {
            if self.try_add(vaddr, lazy) {
                return;
            }
            if self.grow(lazy) {
                let added = self.try_add(vaddr, lazy);
                debug_assert!(added);
                return;
            }
            // -EAGAIN: flush the chunk, reinit (buffers reused in reverse
            // order, the first one with flags 0), and retry this page.
            self.flush();
            let mut bufs = std::mem::take(&mut self.bufs);
            bufs.reverse();
            self.free = bufs;
            let grown = self.grow(false);
            debug_assert!(grown);
        }
    }

    /// The runs of the current chunk, in buffer order (= address order).
    fn chunk_runs(&self) -> impl Iterator<Item = Run> + '_ {
        self.bufs
            .iter()
            .flat_map(move |&i| self.all[i].iovs.iter().copied())
    }

    fn flush(&mut self) {
        let unsettled: Vec<Run> = self.chunk_runs().skip(self.settled).collect();
        self.out.extend(unsettled);
        self.settled = 0;
    }

    /// Entries completed by chunk flushes so far (drained).
    pub fn take_runs(&mut self) -> Vec<Run> {
        std::mem::take(&mut self.out)
    }

    /// Every entry that can no longer change, in order (drained): the
    /// flushed ones and, in the current chunk, all runs but the last (only
    /// the last run of the last buffer ever grows). Emitting them early keeps
    /// what a page-server destination must hold back to one run.
    pub fn take_settled_runs(&mut self) -> Vec<Run> {
        let mut runs = std::mem::take(&mut self.out);
        let total = self.chunk_runs().count();
        let settled = total.saturating_sub(1);
        if settled > self.settled {
            runs.extend(
                self.chunk_runs()
                    .skip(self.settled)
                    .take(settled - self.settled),
            );
            self.settled = settled;
        }
        runs
    }

    /// Flushes what is left and returns every remaining entry.
    pub fn finish(mut self) -> (Vec<Run>, u64, u64) {
        self.flush();
        (self.out, self.pipes_created, self.bufs_allocated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(model: &mut PagePipeModel, start: u64, n: u64, lazy: bool) {
        for i in 0..n {
            model.add_page(start + i * 4096, lazy);
        }
    }

    #[test]
    fn lazy_changes_split_and_pipes_are_shared() {
        let mut m = PagePipeModel::new(1 << 20);
        pages(&mut m, 0x1000, 2, false);
        pages(&mut m, 0x3000, 1, true);
        pages(&mut m, 0x4000, 1, false);
        let (runs, pipes, bufs) = m.finish();
        assert_eq!(
            runs,
            vec![
                Run {
                    vaddr: 0x1000,
                    nr_pages: 2,
                    lazy: false
                },
                Run {
                    vaddr: 0x3000,
                    nr_pages: 1,
                    lazy: true
                },
                Run {
                    vaddr: 0x4000,
                    nr_pages: 1,
                    lazy: false
                },
            ]
        );
        assert_eq!((pipes, bufs), (3, 3));
    }

    #[test]
    fn outside_chunk_mode_buffers_share_pipes() {
        let mut m = PagePipeModel::with_mode(1 << 20, false);
        pages(&mut m, 0x1000, 2, false);
        pages(&mut m, 0x3000, 1, true);
        pages(&mut m, 0x4000, 300, false);
        let (runs, pipes, bufs) = m.finish();
        assert_eq!(bufs, 4);
        assert!(pipes < bufs);
        assert_eq!(runs.iter().map(|r| r.nr_pages).sum::<u64>(), 303);
    }

    #[test]
    fn a_full_pipe_splits_a_contiguous_run() {
        // 16 -> 32 -> ... -> 256 pages, then a second pipe.
        let mut m = PagePipeModel::new(1 << 20);
        pages(&mut m, 0x10_0000, 300, false);
        let (runs, pipes, _) = m.finish();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].nr_pages, 256);
        assert_eq!(runs[1].nr_pages, 44);
        assert_eq!(pipes, 2);
    }

    #[test]
    fn settled_runs_are_the_same_entries_earlier() {
        // Lazy flips, gaps and pipe-full cuts, over more than one chunk.
        let mut pattern = Vec::new();
        let mut vaddr = 0x4000_0000u64;
        for i in 0..3000u64 {
            vaddr += if i % 97 == 0 { 3 * 4096 } else { 4096 };
            pattern.push((vaddr, (i / 50) % 3 == 0));
        }
        let mut whole = PagePipeModel::new(1 << 20);
        let mut early = PagePipeModel::new(1 << 20);
        let mut early_runs = Vec::new();
        for &(va, lazy) in &pattern {
            whole.add_page(va, lazy);
            early.add_page(va, lazy);
            let settled = early.take_settled_runs();
            // Settled runs never include the run still being filled.
            if let Some(last) = settled.last() {
                assert!(last.vaddr + last.nr_pages * 4096 <= va);
            }
            early_runs.extend(settled);
        }
        let (rest, pipes, bufs) = early.finish();
        early_runs.extend(rest);
        let (runs, whole_pipes, whole_bufs) = whole.finish();
        assert!(runs.len() > 20, "the pattern must cut many entries");
        assert_eq!(early_runs, runs);
        assert_eq!((pipes, bufs), (whole_pipes, whole_bufs));
    }

    #[test]
    fn chunk_flush_after_eight_pipes_keeps_every_page() {
        let mut m = PagePipeModel::new(1 << 20);
        pages(&mut m, 0x1000_0000, 256 * 9 + 5, false);
        let (runs, _, _) = m.finish();
        let total: u64 = runs.iter().map(|r| r.nr_pages).sum();
        assert_eq!(total, 256 * 9 + 5);
        let mut next = 0x1000_0000;
        for r in &runs {
            assert_eq!(r.vaddr, next);
            next += r.nr_pages * 4096;
        }
    }
}

/// Why pages could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PagesOutError {
    /// Writing a local pagemap or pages image.
    #[error("{0}")]
    Image(#[from] criu_image::ImageError),
    /// Connecting to the page server.
    #[error("cannot connect to the page server at {address}:{port}: {source}")]
    Connect {
        /// Address as given.
        address: String,
        /// TCP port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// The page-server socket fd given by the caller (`ps.fd`) is unusable.
    #[error("cannot use the page-server socket fd {fd}: {source}")]
    Socket {
        /// The fd number.
        fd: i32,
        /// Cause.
        source: std::io::Error,
    },
    /// The page-server protocol (OPEN2, CLOSE) failed.
    #[error("page server, {what}: {source}")]
    Protocol {
        /// What was being done, naming the pagemap.
        what: String,
        /// Cause.
        source: criu_pages::page_server::PageServerError,
    },
    /// Sending page data failed.
    #[error("page server, sending {nr_pages} pages at {vaddr:#x} of {dst:?}: {source}")]
    Send {
        /// The pagemap.
        dst: criu_pages::page_server::PagemapId,
        /// First page of the entry.
        vaddr: u64,
        /// Its length.
        nr_pages: u64,
        /// Cause.
        source: std::io::Error,
    },
    /// The connection was already closed (CLOSE sent) when more pages came.
    #[error("page server connection already closed when opening {0:?}")]
    Closed(criu_pages::page_server::PagemapId),
    /// Page data was left that no entry covers (a bug in the caller).
    #[error("{bytes} bytes of page data at the end of {dst:?} belong to no pagemap entry")]
    Uncovered {
        /// The pagemap.
        dst: criu_pages::page_server::PagemapId,
        /// Left over.
        bytes: usize,
    },
}

/// Where one pagemap's entries and page contents go: the images directory
/// (`pagemap-*.img` + `pages-*.img`) or a page server (OPEN2 + ADD_F per
/// entry; the server writes both images). [`PagemapOut`] does the page-pipe
/// bookkeeping once for both.
pub trait PagemapDest: std::fmt::Debug {
    /// Page contents, in address order, before the entries covering them.
    fn pages(&mut self, data: &[u8]) -> Result<(), PagesOutError>;
    /// Entries that are final, in order; together they cover the page
    /// contents given so far, in the same order.
    fn entries(&mut self, runs: &[Run]) -> Result<(), PagesOutError>;
    /// A PE_PARENT entry (pages left in the parent images), in address
    /// order with the other entries.
    fn parent_hole(&mut self, vaddr: u64, nr_pages: u64) -> Result<(), PagesOutError>;
    /// Every entry was given.
    fn finish(self: Box<Self>) -> Result<(), PagesOutError>;
    /// Room for the next `len` bytes of page contents, mapped for the caller to fill in place,
    /// where that is faster than [`PagemapDest::pages`]; `None` (the default) where it is not.
    fn map_pages(
        &mut self,
        _len: usize,
    ) -> Result<Option<criu_image::MappedExtra<'_>>, PagesOutError> {
        Ok(None)
    }
}

/// PE_* flags of an entry, as CRIU's ppb_xfer_flags gives them in a dump
/// that transfers lazy pages too.
fn entry_flags(run: &Run) -> u32 {
    criu_image::PE_PRESENT | if run.lazy { criu_image::PE_LAZY } else { 0 }
}

/// `pagemap-<target>.img` and its `pages-<id>.img` in the images directory.
#[derive(Debug)]
struct LocalPagemap {
    pagemap: criu_image::ImageWriter,
    pages: criu_image::ImageWriter,
    /// The images are on tmpfs: large contents are filled through a mapping (see
    /// [`MAPPED_FILL_MIN`]).
    on_tmpfs: bool,
}

/// Page contents at least this large go to a pages image on tmpfs through a shared mapping of
/// the file that the dump's helper threads fill with process_vm_readv at once, beside the dumping
/// thread's own buffer and `pwrite` (`PageReader::read_into`), instead of a buffer and `write`s
/// alone: on tmpfs `write` holds the inode lock, so the kernel's page allocation and copy for one
/// file run on one CPU, and it is the whole cost of a large dump. Measured on this 2-CPU VM at
/// 4 GiB (C model of both, 4 runs each): the mapped fill took 1.82-2.19 s, the buffer + `write`
/// pipeline 2.15-2.26 s, a plain tmpfs `write` of the same bytes 1.75-2.15 s. Below this size the mapping and page-table setup are not worth it. Other
/// filesystems keep `write`, which suits their writeback better than dirty shared mappings.
pub const MAPPED_FILL_MIN: usize = 16 << 20;

impl PagemapDest for LocalPagemap {
    fn pages(&mut self, data: &[u8]) -> Result<(), PagesOutError> {
        Ok(self.pages.write_extra(data)?)
    }

    fn entries(&mut self, runs: &[Run]) -> Result<(), PagesOutError> {
        for run in runs {
            self.pagemap.write_entry(&criu_proto::PagemapEntry {
                vaddr: run.vaddr,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(entry_flags(run)),
                nr_pages: Some(run.nr_pages),
            })?;
        }
        Ok(())
    }

    fn parent_hole(&mut self, vaddr: u64, nr_pages: u64) -> Result<(), PagesOutError> {
        self.pagemap.write_entry(&criu_proto::PagemapEntry {
            vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(criu_image::PE_PARENT),
            nr_pages: Some(nr_pages),
        })?;
        Ok(())
    }

    fn map_pages(
        &mut self,
        len: usize,
    ) -> Result<Option<criu_image::MappedExtra<'_>>, PagesOutError> {
        if !self.on_tmpfs || len < MAPPED_FILL_MIN {
            return Ok(None);
        }
        Ok(self.pages.append_mapped(len)?)
    }

    fn finish(self: Box<Self>) -> Result<(), PagesOutError> {
        let LocalPagemap {
            pagemap,
            pages,
            on_tmpfs: _,
        } = *self;
        pages.finish()?;
        pagemap.finish()?;
        Ok(())
    }
}

/// A page-server socket shared by the protocol client and the data path
/// (both write to it in turn, from one thread).
#[derive(Debug, Clone)]
struct SharedSocket(std::sync::Arc<std::fs::File>);

impl std::io::Read for SharedSocket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl std::io::Write for SharedSocket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        (&*self.0).write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How to reach the page server (`--page-server --address A --port P`, or
/// RPC `opts.ps` with an already connected `fd`).
#[derive(Debug)]
pub enum PageServerAddr {
    /// Connect over TCP.
    Tcp {
        /// Host name or IP address.
        address: String,
        /// Port.
        port: u16,
    },
    /// A connected stream socket (RPC `ps.fd`); it is duplicated, and the
    /// session ends with FORCE_CLOSE because the caller keeps it open.
    Connected(std::os::fd::OwnedFd),
}

/// One dump's connection to a page server.
#[derive(Debug)]
pub struct PageServerConn {
    client: Option<criu_pages::page_server::PageServerClient<SharedSocket>>,
    socket: SharedSocket,
    force_close: bool,
}

impl PageServerConn {
    /// Connects (or adopts a duplicate of the connected socket).
    pub fn connect(addr: &PageServerAddr) -> Result<Self, PagesOutError> {
        let (file, force_close) = match addr {
            PageServerAddr::Tcp { address, port } => {
                let connect_error = |source| PagesOutError::Connect {
                    address: address.clone(),
                    port: *port,
                    source,
                };
                let stream = std::net::TcpStream::connect((address.as_str(), *port))
                    .map_err(connect_error)?;
                // Headers that wait for an answer (OPEN2, CLOSE) must not sit in Nagle's queue.
                stream.set_nodelay(true).map_err(connect_error)?;
                (
                    std::fs::File::from(std::os::fd::OwnedFd::from(stream)),
                    false,
                )
            }
            PageServerAddr::Connected(fd) => {
                let socket_error = |source| PagesOutError::Socket {
                    fd: std::os::fd::AsRawFd::as_raw_fd(fd),
                    source,
                };
                (
                    std::fs::File::from(fd.try_clone().map_err(socket_error)?),
                    true,
                )
            }
        };
        let socket = SharedSocket(std::sync::Arc::new(file));
        Ok(Self {
            client: Some(criu_pages::page_server::PageServerClient::new(
                socket.clone(),
            )),
            socket,
            force_close,
        })
    }

    /// `OPEN2` for `dst`.
    fn open(&mut self, dst: criu_pages::page_server::PagemapId) -> Result<(), PagesOutError> {
        let client = self.client.as_mut().ok_or(PagesOutError::Closed(dst))?;
        let sink = client.open(dst).map_err(|source| PagesOutError::Protocol {
            what: format!("opening {dst:?}"),
            source,
        })?;
        // has_parent only matters for incremental dumps, which never refer
        // to parent pages here (no memory tracking).
        tracing::debug!(
            "page server opened {dst:?} (has parent: {})",
            sink.has_parent()
        );
        Ok(())
    }

    /// Ends the session (`CLOSE`, or `FORCE_CLOSE` on an adopted socket) and
    /// waits for the server to confirm everything is stored.
    pub fn close(&mut self) -> Result<(), PagesOutError> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        client
            .close(self.force_close)
            .map(drop)
            .map_err(|source| PagesOutError::Protocol {
                what: "closing the session".into(),
                source,
            })
    }
}

/// One pagemap sent to a page server: contents wait until the entry
/// covering them is final, then go out as `ADD_F` header + data.
#[derive(Debug)]
struct ServerPagemap {
    conn: std::sync::Arc<std::sync::Mutex<PageServerConn>>,
    dst: criu_pages::page_server::PagemapId,
    held: Vec<u8>,
}

impl PagemapDest for ServerPagemap {
    fn pages(&mut self, data: &[u8]) -> Result<(), PagesOutError> {
        self.held.extend_from_slice(data);
        Ok(())
    }

    fn entries(&mut self, runs: &[Run]) -> Result<(), PagesOutError> {
        use criu_pages::page_server::{PageServerIov, PS_IOV_ADD_F};
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut socket = conn.socket.clone();
        drop(conn);
        let mut offset = 0usize;
        for run in runs {
            let len = run.nr_pages as usize * 4096;
            let data = self
                .held
                .get(offset..offset + len)
                .ok_or(PagesOutError::Uncovered {
                    dst: self.dst,
                    bytes: self.held.len() - offset,
                })?;
            let header = PageServerIov::new(
                PS_IOV_ADD_F,
                entry_flags(run),
                run.nr_pages,
                run.vaddr,
                self.dst.encode(),
            )
            .to_bytes();
            let send_error = |source| PagesOutError::Send {
                dst: self.dst,
                vaddr: run.vaddr,
                nr_pages: run.nr_pages,
                source,
            };
            write_all_vectored(
                &mut socket,
                &mut [std::io::IoSlice::new(&header), std::io::IoSlice::new(data)],
            )
            .map_err(send_error)?;
            offset += len;
        }
        self.held.drain(..offset);
        Ok(())
    }

    fn parent_hole(&mut self, vaddr: u64, nr_pages: u64) -> Result<(), PagesOutError> {
        use criu_pages::page_server::{PageServerIov, PS_IOV_ADD_F};
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut socket = conn.socket.clone();
        drop(conn);
        let header = PageServerIov::new(
            PS_IOV_ADD_F,
            criu_image::PE_PARENT,
            nr_pages,
            vaddr,
            self.dst.encode(),
        )
        .to_bytes();
        write_all_vectored(&mut socket, &mut [std::io::IoSlice::new(&header)]).map_err(|source| {
            PagesOutError::Send {
                dst: self.dst,
                vaddr,
                nr_pages,
                source,
            }
        })
    }

    fn finish(self: Box<Self>) -> Result<(), PagesOutError> {
        // CRIU sends nothing when a pagemap ends: the server closes it at
        // the next OPEN or at CLOSE.
        if self.held.is_empty() {
            Ok(())
        } else {
            Err(PagesOutError::Uncovered {
                dst: self.dst,
                bytes: self.held.len(),
            })
        }
    }
}

fn write_all_vectored(
    writer: &mut impl std::io::Write,
    mut slices: &mut [std::io::IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        match writer.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Where a dump's pagemaps go; cheap to clone (task and shmem dumping share it).
#[derive(Debug, Clone)]
pub enum PageStore {
    /// The images directory, with the dump's pages id counter.
    Images {
        /// Images directory.
        dir: criu_image::ImageDir,
        /// pages-<id>.img ids.
        ids: std::sync::Arc<criu_image::PagesIdAllocator>,
        /// The directory is on tmpfs (see [`MAPPED_FILL_MIN`]).
        on_tmpfs: bool,
    },
    /// A page server.
    Server(std::sync::Arc<std::sync::Mutex<PageServerConn>>),
}

impl PageStore {
    /// Pagemaps written into `dir`, pages ids from 1.
    pub fn images(dir: criu_image::ImageDir) -> Self {
        // Unknown counts as not tmpfs: `write` works everywhere.
        let on_tmpfs = crate::sys::fs_type(std::os::fd::AsFd::as_fd(&dir))
            .is_ok_and(|fs| fs == libc::TMPFS_MAGIC);
        Self::Images {
            dir,
            ids: std::sync::Arc::new(criu_image::PagesIdAllocator::new()),
            on_tmpfs,
        }
    }

    /// Pagemaps sent to a page server.
    pub fn server(addr: &PageServerAddr) -> Result<Self, PagesOutError> {
        Ok(Self::Server(std::sync::Arc::new(std::sync::Mutex::new(
            PageServerConn::connect(addr)?,
        ))))
    }

    /// Starts a pagemap for a full dump (chunk mode) or a pre-dump.
    pub fn open(
        &self,
        target: criu_image::PagemapTarget,
        chunk_mode: bool,
    ) -> Result<PagemapOut, PagesOutError> {
        let dest: Box<dyn PagemapDest> = match self {
            Self::Images { dir, ids, on_tmpfs } => {
                let pages_id = ids.allocate();
                let mut pagemap = dir.writer(target.kind(), target.id())?;
                pagemap.write_entry(&criu_proto::PagemapHead { pages_id })?;
                let mut pages = dir.writer(criu_image::ImageKind::Pages, u64::from(pages_id))?;
                // CRIU creates the pages image even when no page is dumped.
                pages.ensure_created()?;
                Box::new(LocalPagemap {
                    pagemap,
                    pages,
                    on_tmpfs: *on_tmpfs,
                })
            }
            Self::Server(conn) => {
                let dst = match target {
                    criu_image::PagemapTarget::Process(pid) => {
                        criu_pages::page_server::PagemapId::Pid(u64::from(pid))
                    }
                    criu_image::PagemapTarget::Shmem(id) => {
                        criu_pages::page_server::PagemapId::Shmem(id)
                    }
                };
                conn.lock().unwrap_or_else(|e| e.into_inner()).open(dst)?;
                Box::new(ServerPagemap {
                    conn: conn.clone(),
                    dst,
                    held: Vec::new(),
                })
            }
        };
        Ok(PagemapOut {
            dest,
            model: PagePipeModel::for_this_machine_with(chunk_mode),
            written: 0,
            entries: 0,
            holes: std::collections::VecDeque::new(),
            in_parent: 0,
        })
    }

    /// Ends the page-server session (nothing to do for the images directory).
    pub fn close(&self) -> Result<(), PagesOutError> {
        match self {
            Self::Images { .. } => Ok(()),
            Self::Server(conn) => conn.lock().unwrap_or_else(|e| e.into_inner()).close(),
        }
    }
}

/// One pagemap being dumped: cuts entries where CRIU's page pipe would and
/// hands contents and entries to its [`PagemapDest`].
#[derive(Debug)]
pub struct PagemapOut {
    dest: Box<dyn PagemapDest>,
    model: PagePipeModel,
    /// Pages written.
    pub written: u64,
    /// Entries written.
    pub entries: u64,
    /// PE_PARENT runs not written yet, sorted.
    holes: std::collections::VecDeque<criu_pages::PageRange>,
    /// Pages recorded as PE_PARENT.
    pub in_parent: u64,
}

impl PagemapOut {
    /// Pages to record as PE_PARENT (sorted, disjoint from the pages added);
    /// they are interleaved with the data entries in address order.
    pub fn set_parent_holes(&mut self, holes: Vec<criu_pages::PageRange>) {
        self.holes = holes.into();
    }

    fn holes_before(&mut self, vaddr: u64) -> Result<(), PagesOutError> {
        while let Some(hole) = self.holes.front().copied() {
            if hole.start >= vaddr {
                break;
            }
            self.holes.pop_front();
            self.dest.parent_hole(hole.start, hole.nr_pages)?;
            self.entries += 1;
            self.in_parent += hole.nr_pages;
        }
        Ok(())
    }

    fn send_runs(&mut self, runs: &[Run]) -> Result<(), PagesOutError> {
        self.entries += runs.len() as u64;
        let mut from = 0;
        for (i, run) in runs.iter().enumerate() {
            if self
                .holes
                .front()
                .is_some_and(|hole| hole.start < run.vaddr)
            {
                self.dest.entries(&runs[from..i])?;
                from = i;
                self.holes_before(run.vaddr)?;
            }
        }
        self.dest.entries(&runs[from..])
    }

    fn send_settled(&mut self) -> Result<(), PagesOutError> {
        let runs = self.model.take_settled_runs();
        self.send_runs(&runs)
    }

    /// Appends page contents (address order across calls); `lazy(vaddr)` says
    /// whether each page gets PE_LAZY.
    pub fn add(
        &mut self,
        vaddr: u64,
        data: &[u8],
        lazy: impl Fn(u64) -> bool,
    ) -> Result<(), PagesOutError> {
        self.dest.pages(data)?;
        self.add_stored(vaddr, data.len() as u64 / 4096, lazy)
    }

    /// Room for the next `len` bytes of contents, to fill in place, where the destination is
    /// faster that way (see [`MAPPED_FILL_MIN`]); the pages are then announced, in address
    /// order, with [`PagemapOut::add_stored`] once filled.
    pub fn map_pages(
        &mut self,
        len: usize,
    ) -> Result<Option<criu_image::MappedExtra<'_>>, PagesOutError> {
        self.dest.map_pages(len)
    }

    /// Appends `nr_pages` pages at `vaddr` whose contents are already in place (filled through
    /// [`PagemapOut::map_pages`]): the entries only.
    pub fn add_stored(
        &mut self,
        vaddr: u64,
        nr_pages: u64,
        lazy: impl Fn(u64) -> bool,
    ) -> Result<(), PagesOutError> {
        for i in 0..nr_pages {
            let va = vaddr + i * 4096;
            self.model.add_page(va, lazy(va));
        }
        self.written += nr_pages;
        self.send_settled()
    }

    /// Writes the last entries and publishes the pagemap; returns
    /// (pages written, entries, pipes created, pipe buffers allocated).
    pub fn finish(mut self) -> Result<(u64, u64, u64, u64), PagesOutError> {
        self.send_settled()?;
        let (runs, pipes, bufs) =
            std::mem::replace(&mut self.model, PagePipeModel::with_mode(1 << 16, true)).finish();
        self.send_runs(&runs)?;
        self.holes_before(u64::MAX)?;
        self.dest.finish()?;
        Ok((self.written, self.entries, pipes, bufs))
    }
}
