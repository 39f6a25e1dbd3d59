//! The page-server engine: a TCP listener speaking CRIU 4.2's page-server
//! protocol (criu-pages) that stores what it receives as pagemap/pages
//! images (criu-image) in the images dir. One connection is served, as CRIU
//! does without lazy pages.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::OwnedFd;

use criu_image::{ImageDir, PagemapTarget, PagemapWriter, PagesIdAllocator, PE_PRESENT};
use criu_pages::page_server::{self, PageServerTarget, PagemapId};

use crate::engine::{EngineError, PageServerEngine, PageServerJob};

/// Pages image ids of a page server start here so they never collide with
/// the dumping side's own ids (CRIU does the same).
const FIRST_PAGES_ID: u32 = 1 + 0x10000;
/// Page data is moved in chunks of this many bytes.
const CHUNK: usize = 1 << 20;
const PAGE_SIZE: usize = 4096;

fn image_target(dst: PagemapId) -> PagemapTarget {
    match dst {
        PagemapId::Pid(pid) => PagemapTarget::Process(pid as u32),
        PagemapId::Shmem(id) => PagemapTarget::Shmem(id),
    }
}

fn io_err(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// Stores a page stream into an images dir.
struct ImagesTarget {
    dir: ImageDir,
    ids: PagesIdAllocator,
    current: Option<PagemapId>,
    writers: HashMap<PagemapId, PagemapWriter>,
}

impl ImagesTarget {
    fn writer(&mut self) -> io::Result<&mut PagemapWriter> {
        let dst = self
            .current
            .ok_or_else(|| io::Error::other("pages before any OPEN"))?;
        self.writers
            .get_mut(&dst)
            .ok_or_else(|| io::Error::other(format!("pagemap {dst:?} is not open")))
    }
}

impl PageServerTarget for ImagesTarget {
    fn open(&mut self, dst: PagemapId) -> io::Result<bool> {
        if !self.writers.contains_key(&dst) {
            let writer =
                PagemapWriter::create(&self.dir, image_target(dst), &self.ids).map_err(io_err)?;
            self.writers.insert(dst, writer);
        }
        self.current = Some(dst);
        self.has_parent(dst)
    }

    fn has_parent(&mut self, dst: PagemapId) -> io::Result<bool> {
        let target = image_target(dst);
        match self.dir.parent().map_err(io_err)? {
            Some(parent) => parent.exists(target.kind(), target.id()).map_err(io_err),
            None => Ok(false),
        }
    }

    fn add_pages(
        &mut self,
        vaddr: u64,
        nr_pages: u64,
        flags: u32,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let writer = self.writer()?;
        let total = nr_pages.checked_mul(PAGE_SIZE as u64).ok_or_else(|| {
            io::Error::other(format!("absurd page count {nr_pages} at {vaddr:#x}"))
        })?;
        let mut buffer = vec![0u8; CHUNK.min(total as usize)];
        let mut done = 0u64;
        while done < total {
            let len = (total - done).min(buffer.len() as u64) as usize;
            data.read_exact(&mut buffer[..len])?;
            writer
                .add_pages_flagged(vaddr + done, &buffer[..len], flags | PE_PRESENT)
                .map_err(io_err)?;
            done += len as u64;
        }
        Ok(())
    }

    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> io::Result<()> {
        self.writer()?
            .add_hole(vaddr, nr_pages, flags)
            .map_err(io_err)
    }

    fn close(&mut self) -> io::Result<()> {
        for (_, writer) in self.writers.drain() {
            writer.finish().map_err(io_err)?;
        }
        Ok(())
    }
}

/// The TCP page server.
#[derive(Debug, Clone, Copy)]
pub struct TcpPageServer;

impl PageServerEngine for TcpPageServer {
    fn serve(
        &self,
        job: &PageServerJob<'_>,
        listening: &mut dyn FnMut(u16),
    ) -> Result<(), EngineError> {
        let options = job.options;
        let address = options.address.as_deref().unwrap_or("0.0.0.0");
        let listener = match address.parse::<Ipv4Addr>() {
            Ok(ip) => TcpListener::bind((ip, options.port)),
            Err(_) => TcpListener::bind((address, options.port)),
        }
        .map_err(|e| EngineError {
            errno: e.raw_os_error(),
            message: format!("Can't bind page server to {address}:{}: {e}", options.port),
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| EngineError::new(format!("page server address: {e}")))?
            .port();
        tracing::info!("Page server listening on {address}:{port}");
        listening(port);
        let (mut stream, peer) = listener
            .accept()
            .map_err(|e| EngineError::new(format!("page server accept: {e}")))?;
        tracing::info!("Page server connection from {peer}");
        let dup: OwnedFd = job
            .images_dir
            .try_clone()
            .map_err(|e| EngineError::new(format!("images dir fd: {e}")))?;
        let dir = ImageDir::from_fd(dup).map_err(|e| EngineError::new(e.to_string()))?;
        let mut target = ImagesTarget {
            dir,
            ids: PagesIdAllocator::starting_at(FIRST_PAGES_ID),
            current: None,
            writers: HashMap::new(),
        };
        let summary = page_server::serve(&mut stream, &mut target)
            .map_err(|e| EngineError::new(format!("page server: {e}")))?;
        tracing::info!(
            "Page server done: {} pages received, {} without data, {} pagemaps",
            summary.pages_received,
            summary.hole_pages,
            summary.opens
        );
        Ok(())
    }
}
