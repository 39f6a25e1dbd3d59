//! CRIU 4.2's page-server protocol (criu/page-xfer.c), both ends.
//!
//! Every command is a 32-byte little-endian `page_server_iov`:
//! `u32 cmd; u32 pad; u64 nr_pages; u64 vaddr; u64 dst_id`, with `cmd = flags << 16 | op` and
//! `dst_id = id << 8 | type` (type 1 = a task's pagemap, 2 = a shmem pagemap). CRIU before 4.2
//! used a 24-byte form with a u32 nr_pages; the two do not interoperate.
//!
//! A dump talks to a page server like this: `OPEN2(dst)` → the server answers one byte
//! (`has_parent`); then `ADD_F(flags, vaddr, nr_pages)` per run, followed by `nr_pages * 4096`
//! bytes when `flags` has PE_PRESENT; finally `CLOSE` (or `FORCE_CLOSE`) → the server answers
//! an `i32` status (0) once everything is stored. `PARENT(dst)` asks whether the parent images
//! have that pagemap (answer: `i32`). `ADD`/`HOLE` are the pre-`ADD_F` forms (PE_PRESENT /
//! PE_PARENT); `OPEN` opens without an answer. `GET` belongs to lazy-pages restore and is not
//! served here.

use std::io::{self, Read, Write};

use crate::reader::PageSink;
use crate::scan::PageRange;
use crate::PAGE_SIZE;

/// `PS_IOV_ADD`: pages with data (PE_PRESENT implied).
pub const PS_IOV_ADD: u32 = 1;
/// `PS_IOV_HOLE`: pages in the parent (PE_PARENT implied).
pub const PS_IOV_HOLE: u32 = 2;
/// `PS_IOV_OPEN`: open a pagemap, no answer.
pub const PS_IOV_OPEN: u32 = 3;
/// `PS_IOV_OPEN2`: open a pagemap, answered by one `has_parent` byte.
pub const PS_IOV_OPEN2: u32 = 4;
/// `PS_IOV_PARENT`: does the parent have this pagemap? Answered by an i32.
pub const PS_IOV_PARENT: u32 = 5;
/// `PS_IOV_ADD_F`: pages with explicit PE_* flags in the upper 16 bits of `cmd`.
pub const PS_IOV_ADD_F: u32 = 6;
/// `PS_IOV_GET`: lazy-pages request (not served here).
pub const PS_IOV_GET: u32 = 7;
/// `PS_IOV_CLOSE`: end of the session, answered by an i32 status.
pub const PS_IOV_CLOSE: u32 = 0x1023;
/// `PS_IOV_FORCE_CLOSE`: like CLOSE, used when the socket is shared with a parent process.
pub const PS_IOV_FORCE_CLOSE: u32 = 0x1024;

/// PE_PARENT pagemap flag.
pub const PE_PARENT: u32 = 1;
/// PE_LAZY pagemap flag.
pub const PE_LAZY: u32 = 2;
/// PE_PRESENT pagemap flag.
pub const PE_PRESENT: u32 = 4;

/// Size of `struct page_server_iov` in CRIU 4.2.
pub const PAGE_SERVER_IOV_SIZE: usize = 32;

const PS_CMD_BITS: u32 = 16;
const PS_CMD_MASK: u32 = (1 << PS_CMD_BITS) - 1;
const PS_TYPE_BITS: u32 = 8;
const PS_TYPE_MASK: u64 = (1 << PS_TYPE_BITS) - 1;
const PS_TYPE_PID: u64 = 1;
const PS_TYPE_SHMEM: u64 = 2;

/// Errors of the page-server protocol.
#[derive(Debug, thiserror::Error)]
pub enum PageServerError {
    /// The socket failed.
    #[error("page server socket {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
    /// A command this implementation does not handle (e.g. GET, or garbage).
    #[error("page server: unsupported command {cmd:#x} (op {op})")]
    UnsupportedCommand { cmd: u32, op: u32 },
    /// A `dst_id` whose type byte is neither a task nor a shmem pagemap.
    #[error("page server: unknown pagemap type in dst_id {0:#x}")]
    BadDestination(u64),
    /// Pages arrived before any OPEN.
    #[error("page server: pages for {vaddr:#x} before any OPEN")]
    NotOpen { vaddr: u64 },
    /// `nr_pages` does not fit in memory arithmetic.
    #[error("page server: absurd nr_pages {nr_pages} at {vaddr:#x}")]
    BadLength { vaddr: u64, nr_pages: u64 },
    /// The peer closed the connection without CLOSE.
    #[error("page server: connection closed before CLOSE (data not flushed)")]
    NotFlushed,
    /// The server answered a close with a non-zero status.
    #[error("page server answered CLOSE with status {0}")]
    CloseStatus(i32),
    /// The storage behind the server failed.
    #[error("page server target failed at {vaddr:#x}: {source}")]
    Target {
        vaddr: u64,
        #[source]
        source: io::Error,
    },
    /// The target did not consume all the page data of an ADD.
    #[error("page server target consumed {consumed} of {expected} bytes at {vaddr:#x}")]
    ShortConsume {
        vaddr: u64,
        consumed: u64,
        expected: u64,
    },
}

/// Which pagemap image a page stream is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PagemapId {
    /// `pagemap-<pid>.img` of a task (PS_TYPE_PID).
    Pid(u64),
    /// `pagemap-shmem-<shmid>.img` (PS_TYPE_SHMEM).
    Shmem(u64),
}

impl PagemapId {
    /// The wire `dst_id`.
    pub fn encode(self) -> u64 {
        match self {
            Self::Pid(id) => id << PS_TYPE_BITS | PS_TYPE_PID,
            Self::Shmem(id) => id << PS_TYPE_BITS | PS_TYPE_SHMEM,
        }
    }

    /// Decodes a wire `dst_id`, accepting the type numbers older CRIUs sent.
    pub fn decode(dst_id: u64) -> Result<Self, PageServerError> {
        let id = dst_id >> PS_TYPE_BITS;
        match dst_id & PS_TYPE_MASK {
            PS_TYPE_PID | 10 | 11 | 16 | 17 => Ok(Self::Pid(id)),
            PS_TYPE_SHMEM | 27 | 28 | 29 | 32 | 33 | 34 => Ok(Self::Shmem(id)),
            _ => Err(PageServerError::BadDestination(dst_id)),
        }
    }
}

/// One `page_server_iov`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageServerIov {
    /// `flags << 16 | op`.
    pub cmd: u32,
    /// Number of pages.
    pub nr_pages: u64,
    /// First address.
    pub vaddr: u64,
    /// `id << 8 | type`.
    pub dst_id: u64,
}

impl PageServerIov {
    /// A command with an op and PE_* flags.
    pub fn new(op: u32, flags: u32, nr_pages: u64, vaddr: u64, dst_id: u64) -> Self {
        Self {
            cmd: flags << PS_CMD_BITS | op,
            nr_pages,
            vaddr,
            dst_id,
        }
    }

    /// The operation (low 16 bits of cmd).
    pub fn op(&self) -> u32 {
        self.cmd & PS_CMD_MASK
    }

    /// The PE_* flags (high 16 bits of cmd).
    pub fn flags(&self) -> u32 {
        self.cmd >> PS_CMD_BITS
    }

    /// The 32-byte wire form.
    pub fn to_bytes(&self) -> [u8; PAGE_SERVER_IOV_SIZE] {
        let mut bytes = [0u8; PAGE_SERVER_IOV_SIZE];
        bytes[0..4].copy_from_slice(&self.cmd.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.nr_pages.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.dst_id.to_le_bytes());
        bytes
    }

    /// Parses the 32-byte wire form.
    pub fn from_bytes(bytes: &[u8; PAGE_SERVER_IOV_SIZE]) -> Self {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Self {
            cmd: u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")),
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> PageServerError {
    move |source| PageServerError::Io { context, source }
}

/// The dump side of a page-server connection.
#[derive(Debug)]
pub struct PageServerClient<S: Read + Write> {
    stream: S,
}

impl<S: Read + Write> PageServerClient<S> {
    /// Wraps a connected stream (TCP with TCP_NODELAY advisable, or a unix socket).
    pub fn new(stream: S) -> Self {
        Self { stream }
    }

    /// `PARENT`: whether the server's parent images hold pagemap `dst`.
    pub fn has_parent(&mut self, dst: PagemapId) -> Result<bool, PageServerError> {
        let iov = PageServerIov::new(PS_IOV_PARENT, 0, 0, 0, dst.encode());
        self.stream
            .write_all(&iov.to_bytes())
            .map_err(io_error("sending PARENT"))?;
        let mut answer = [0u8; 4];
        self.stream
            .read_exact(&mut answer)
            .map_err(io_error("reading the PARENT answer"))?;
        Ok(i32::from_le_bytes(answer) > 0)
    }

    /// `OPEN2`: starts pagemap `dst` and returns a sink for its pages; `has_parent` on the sink
    /// tells whether the server has parent images for it.
    pub fn open(&mut self, dst: PagemapId) -> Result<PageServerSink<'_, S>, PageServerError> {
        let iov = PageServerIov::new(PS_IOV_OPEN2, 0, 0, 0, dst.encode());
        self.stream
            .write_all(&iov.to_bytes())
            .map_err(io_error("sending OPEN2"))?;
        let mut has_parent = [0u8; 1];
        self.stream
            .read_exact(&mut has_parent)
            .map_err(io_error("reading the OPEN2 answer"))?;
        Ok(PageServerSink {
            stream: &mut self.stream,
            dst_id: dst.encode(),
            has_parent: has_parent[0] != 0,
            page_flags: Box::new(|_| PE_PRESENT),
        })
    }

    /// `CLOSE` (or `FORCE_CLOSE` when the socket is shared with another process that keeps it
    /// open); waits for the server's status, which confirms everything was stored.
    pub fn close(mut self, force: bool) -> Result<S, PageServerError> {
        let op = if force {
            PS_IOV_FORCE_CLOSE
        } else {
            PS_IOV_CLOSE
        };
        let iov = PageServerIov::new(op, 0, 0, 0, 0);
        self.stream
            .write_all(&iov.to_bytes())
            .map_err(io_error("sending CLOSE"))?;
        let mut status = [0u8; 4];
        self.stream
            .read_exact(&mut status)
            .map_err(io_error("reading the CLOSE answer"))?;
        match i32::from_le_bytes(status) {
            0 => Ok(self.stream),
            status => Err(PageServerError::CloseStatus(status)),
        }
    }
}

/// Sends one pagemap's pages to a page server (`ADD_F` + data per run).
pub struct PageServerSink<'a, S: Read + Write> {
    stream: &'a mut S,
    dst_id: u64,
    has_parent: bool,
    page_flags: Box<dyn FnMut(u64) -> u32 + 'a>,
}

impl<S: Read + Write> std::fmt::Debug for PageServerSink<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageServerSink")
            .field("dst_id", &self.dst_id)
            .field("has_parent", &self.has_parent)
            .finish_non_exhaustive()
    }
}

impl<'a, S: Read + Write> PageServerSink<'a, S> {
    /// Whether the server has parent images for this pagemap (the OPEN2 answer).
    pub fn has_parent(&self) -> bool {
        self.has_parent
    }

    /// Chooses the PE_* flags of data runs by start address (default: PE_PRESENT for all); the
    /// dump uses it to add PE_LAZY for lazily restorable VMAs. PE_PRESENT is always added.
    pub fn set_page_flags(&mut self, flags: impl FnMut(u64) -> u32 + 'a) {
        self.page_flags = Box::new(flags);
    }
}

impl<S: Read + Write> PageSink for PageServerSink<'_, S> {
    fn add_pages(&mut self, vaddr: u64, data: &[u8]) -> io::Result<()> {
        let flags = (self.page_flags)(vaddr) | PE_PRESENT;
        let iov = PageServerIov::new(
            PS_IOV_ADD_F,
            flags,
            data.len() as u64 / PAGE_SIZE,
            vaddr,
            self.dst_id,
        );
        self.stream.write_all(&iov.to_bytes())?;
        self.stream.write_all(data)
    }

    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> io::Result<()> {
        let flags = flags & !PE_PRESENT;
        let iov = PageServerIov::new(PS_IOV_ADD_F, flags, nr_pages, vaddr, self.dst_id);
        self.stream.write_all(&iov.to_bytes())
    }

    fn add_page_runs(&mut self, runs: &[PageRange], data: &[u8]) -> io::Result<()> {
        // Headers and data interleave on the wire: send them with writev, up to 512 runs (1024
        // iovecs) per call, so many small runs cost few syscalls and no copies.
        let mut offset = 0usize;
        for group in runs.chunks(512) {
            let headers: Vec<[u8; PAGE_SERVER_IOV_SIZE]> = group
                .iter()
                .map(|run| {
                    let flags = (self.page_flags)(run.start) | PE_PRESENT;
                    PageServerIov::new(PS_IOV_ADD_F, flags, run.nr_pages, run.start, self.dst_id)
                        .to_bytes()
                })
                .collect();
            let mut slices = Vec::with_capacity(group.len() * 2);
            for (run, header) in group.iter().zip(&headers) {
                let len = run.len_bytes() as usize;
                slices.push(io::IoSlice::new(header));
                slices.push(io::IoSlice::new(&data[offset..offset + len]));
                offset += len;
            }
            write_all_vectored(&mut *self.stream, &mut slices)?;
        }
        Ok(())
    }
}

/// `write_all` for a list of slices (std's version is unstable).
fn write_all_vectored<W: Write + ?Sized>(
    writer: &mut W,
    mut slices: &mut [io::IoSlice<'_>],
) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match writer.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => io::IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Where a page server stores what it receives (the image-writing side lives elsewhere).
pub trait PageServerTarget {
    /// A pagemap is opened (`OPEN`/`OPEN2`, or implicitly by data for a new `dst`); returns
    /// whether parent images hold it (sent back for `OPEN2`).
    fn open(&mut self, dst: PagemapId) -> io::Result<bool>;
    /// `PARENT`: whether parent images hold pagemap `dst`.
    fn has_parent(&mut self, dst: PagemapId) -> io::Result<bool>;
    /// A run with data: exactly `nr_pages * 4096` bytes must be read from `data`.
    fn add_pages(
        &mut self,
        vaddr: u64,
        nr_pages: u64,
        flags: u32,
        data: &mut dyn Read,
    ) -> io::Result<()>;
    /// A run without data (PE_PARENT and/or PE_LAZY only).
    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> io::Result<()>;
    /// The session ends (`CLOSE`): flush everything; an error is reported to the client.
    fn close(&mut self) -> io::Result<()>;
}

/// What [`serve`] saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServeSummary {
    /// Pages received with data.
    pub pages_received: u64,
    /// Pages announced without data.
    pub hole_pages: u64,
    /// Pagemaps opened.
    pub opens: u64,
    /// The client used FORCE_CLOSE.
    pub forced_close: bool,
}

/// Serves one page-server connection until `CLOSE`/`FORCE_CLOSE`, storing into `target`.
pub fn serve<S: Read + Write>(
    stream: &mut S,
    target: &mut dyn PageServerTarget,
) -> Result<ServeSummary, PageServerError> {
    let mut summary = ServeSummary::default();
    let mut current: Option<u64> = None;
    loop {
        let mut bytes = [0u8; PAGE_SERVER_IOV_SIZE];
        if !read_header(stream, &mut bytes)? {
            return Err(PageServerError::NotFlushed);
        }
        let iov = PageServerIov::from_bytes(&bytes);
        match iov.op() {
            PS_IOV_OPEN | PS_IOV_OPEN2 => {
                let dst = PagemapId::decode(iov.dst_id)?;
                let has_parent = target
                    .open(dst)
                    .map_err(|source| PageServerError::Target { vaddr: 0, source })?;
                current = Some(iov.dst_id);
                summary.opens += 1;
                if iov.op() == PS_IOV_OPEN2 {
                    stream
                        .write_all(&[u8::from(has_parent)])
                        .map_err(io_error("answering OPEN2"))?;
                }
            }
            PS_IOV_PARENT => {
                let dst = PagemapId::decode(iov.dst_id)?;
                let has_parent = target
                    .has_parent(dst)
                    .map_err(|source| PageServerError::Target { vaddr: 0, source })?;
                stream
                    .write_all(&i32::from(has_parent).to_le_bytes())
                    .map_err(io_error("answering PARENT"))?;
            }
            PS_IOV_ADD | PS_IOV_HOLE | PS_IOV_ADD_F => {
                let flags = match iov.op() {
                    PS_IOV_ADD => PE_PRESENT,
                    PS_IOV_HOLE => PE_PARENT,
                    _ => iov.flags(),
                };
                if current != Some(iov.dst_id) {
                    // CRIU accepts data without OPEN ("deprecated IO w/o open") by opening.
                    let dst = PagemapId::decode(iov.dst_id)?;
                    target.open(dst).map_err(|source| PageServerError::Target {
                        vaddr: iov.vaddr,
                        source,
                    })?;
                    current = Some(iov.dst_id);
                    summary.opens += 1;
                }
                receive_run(stream, target, &iov, flags, &mut summary)?;
            }
            PS_IOV_CLOSE | PS_IOV_FORCE_CLOSE => {
                let status: i32 = match target.close() {
                    Ok(()) => 0,
                    Err(_) => -1,
                };
                stream
                    .write_all(&status.to_le_bytes())
                    .map_err(io_error("answering CLOSE"))?;
                summary.forced_close = iov.op() == PS_IOV_FORCE_CLOSE;
                return if status == 0 {
                    Ok(summary)
                } else {
                    Err(PageServerError::CloseStatus(status))
                };
            }
            op => return Err(PageServerError::UnsupportedCommand { cmd: iov.cmd, op }),
        }
    }
}

/// Reads a full header; `false` on a clean EOF before its first byte.
fn read_header<S: Read>(
    stream: &mut S,
    bytes: &mut [u8; PAGE_SERVER_IOV_SIZE],
) -> Result<bool, PageServerError> {
    let mut got = 0;
    while got < bytes.len() {
        match stream.read(&mut bytes[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(PageServerError::Io {
                    context: "reading a command",
                    source: io::ErrorKind::UnexpectedEof.into(),
                })
            }
            Ok(n) => got += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(PageServerError::Io {
                    context: "reading a command",
                    source,
                })
            }
        }
    }
    Ok(true)
}

fn receive_run<S: Read>(
    stream: &mut S,
    target: &mut dyn PageServerTarget,
    iov: &PageServerIov,
    flags: u32,
    summary: &mut ServeSummary,
) -> Result<(), PageServerError> {
    let target_error = |source| PageServerError::Target {
        vaddr: iov.vaddr,
        source,
    };
    if flags & PE_PRESENT == 0 {
        target
            .add_hole(iov.vaddr, iov.nr_pages, flags)
            .map_err(target_error)?;
        summary.hole_pages += iov.nr_pages;
        return Ok(());
    }
    let expected = iov
        .nr_pages
        .checked_mul(PAGE_SIZE)
        .ok_or(PageServerError::BadLength {
            vaddr: iov.vaddr,
            nr_pages: iov.nr_pages,
        })?;
    let mut data = (&mut *stream).take(expected);
    target
        .add_pages(iov.vaddr, iov.nr_pages, flags, &mut data)
        .map_err(target_error)?;
    let consumed = expected - data.limit();
    if consumed != expected {
        return Err(PageServerError::ShortConsume {
            vaddr: iov.vaddr,
            consumed,
            expected,
        });
    }
    summary.pages_received += iov.nr_pages;
    Ok(())
}
