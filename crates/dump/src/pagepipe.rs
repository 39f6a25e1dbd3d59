//! A model of CRIU's page pipe (criu/page-pipe.c), used only to
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

    fn flush(&mut self) {
        for &i in &self.bufs {
            self.out.extend(self.all[i].iovs.iter().copied());
        }
    }

    /// Entries completed so far (drained).
    pub fn take_runs(&mut self) -> Vec<Run> {
        std::mem::take(&mut self.out)
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

/// Writes `pagemap-*.img` and its `pages-<id>.img`, cutting entries where
/// CRIU's page pipe would.
#[derive(Debug)]
pub struct PagemapOut {
    pagemap: criu_image::ImageWriter,
    pages: criu_image::ImageWriter,
    model: PagePipeModel,
    /// Pages written.
    pub written: u64,
    /// Entries written.
    pub entries: u64,
}

impl PagemapOut {
    /// Starts `pagemap-<target>.img` with a new pages id from `ids`.
    pub fn create(
        dir: &criu_image::ImageDir,
        target: criu_image::PagemapTarget,
        ids: &criu_image::PagesIdAllocator,
    ) -> Result<Self, criu_image::ImageError> {
        Self::create_with(dir, target, ids, true)
    }

    /// [`PagemapOut::create`] for a full dump (chunk mode) or a pre-dump.
    pub fn create_with(
        dir: &criu_image::ImageDir,
        target: criu_image::PagemapTarget,
        ids: &criu_image::PagesIdAllocator,
        chunk_mode: bool,
    ) -> Result<Self, criu_image::ImageError> {
        let pages_id = ids.allocate();
        let mut pagemap = dir.writer(target.kind(), target.id())?;
        pagemap.write_entry(&criu_proto::PagemapHead { pages_id })?;
        let mut pages = dir.writer(criu_image::ImageKind::Pages, u64::from(pages_id))?;
        // CRIU creates the pages image even when no page is dumped.
        pages.ensure_created()?;
        Ok(Self {
            pagemap,
            pages,
            model: PagePipeModel::for_this_machine_with(chunk_mode),
            written: 0,
            entries: 0,
        })
    }

    fn write_runs(&mut self, runs: Vec<Run>) -> Result<(), criu_image::ImageError> {
        for run in runs {
            let flags = criu_image::PE_PRESENT | if run.lazy { criu_image::PE_LAZY } else { 0 };
            self.pagemap.write_entry(&criu_proto::PagemapEntry {
                vaddr: run.vaddr,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(flags),
                nr_pages: Some(run.nr_pages),
            })?;
            self.entries += 1;
        }
        Ok(())
    }

    /// Appends page contents (address order across calls); `lazy(vaddr)` says
    /// whether each page gets PE_LAZY.
    pub fn add(
        &mut self,
        vaddr: u64,
        data: &[u8],
        lazy: impl Fn(u64) -> bool,
    ) -> Result<(), criu_image::ImageError> {
        self.pages.write_extra(data)?;
        let n = data.len() as u64 / 4096;
        for i in 0..n {
            let va = vaddr + i * 4096;
            self.model.add_page(va, lazy(va));
        }
        self.written += n;
        let runs = self.model.take_runs();
        self.write_runs(runs)
    }

    /// Writes the last entries and publishes both images; returns
    /// (pages written, entries, pipes created, pipe buffers allocated).
    pub fn finish(mut self) -> Result<(u64, u64, u64, u64), criu_image::ImageError> {
        let model = std::mem::replace(&mut self.model, PagePipeModel::new(1 << 20));
        let (runs, pipes, bufs) = model.finish();
        self.write_runs(runs)?;
        self.pages.finish()?;
        self.pagemap.finish()?;
        Ok((self.written, self.entries, pipes, bufs))
    }
}
