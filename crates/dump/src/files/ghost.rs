//! Unlinked files ("ghost files"): a file that is open or mapped but has no
//! name left (st_nlink == 0) is saved whole in `ghost-file-<id>.img`
//! (small files as one blob, files of 3 pages or more as SEEK_DATA chunks),
//! and `remap-fpath.img` maps its file id to the ghost id, as CRIU does.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use criu_image::ImageKind;
use criu_proto::{GhostChunkEntry, GhostFileEntry, RemapFilePathEntry, Timeval};

use super::{FileError, FileParams, FileTable};

/// CRIU's default `--ghost-limit` (1 MiB of allocated blocks).
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;
const GHOST_CHUNKS_THRESH: u64 = 3 * 4096;
/// remap_file_path_entry.remap_type GHOST.
const REMAP_TYPE_GHOST: i32 = 1;

fn read_range(file: &File, off: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut done = 0usize;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

fn data_segments(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut hole = 0u64;
    while hole < size {
        let data =
            match nix::unistd::lseek(file.as_fd(), hole as i64, nix::unistd::Whence::SeekData) {
                Ok(d) => d as u64,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(_) if hole == 0 => {
                    out.push((0, size));
                    break;
                }
                Err(e) => return Err(e.into()),
            };
        hole = nix::unistd::lseek(file.as_fd(), data as i64, nix::unistd::Whence::SeekHole)? as u64;
        out.push((data, hole - data));
    }
    Ok(out)
}

fn kernel_dev(dev: u64) -> u32 {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    ((major << 20) | minor) as u32
}

impl FileTable {
    /// Handles a file whose path is gone. Returns the name to record (the
    /// path without " (deleted)").
    pub(super) fn remap_unlinked(
        &mut self,
        p: &FileParams,
        file: BorrowedFd<'_>,
        id: u32,
    ) -> Result<String, FileError> {
        let name = p
            .link
            .strip_suffix(" (deleted)")
            .unwrap_or(&p.link)
            .to_string();
        if p.stat.nlink() != 0 {
            return Err(Self::unsupported(
                p,
                format!(
                    "the file {} that was unlinked but is still linked elsewhere (link remaps)",
                    p.link
                ),
            ));
        }
        let allocated = p.stat.blocks() * 512;
        if allocated > DEFAULT_GHOST_LIMIT {
            return Err(Self::unsupported(
                p,
                format!("the unlinked file {name} of {allocated} bytes (over the {DEFAULT_GHOST_LIMIT}-byte ghost limit)"),
            ));
        }
        let key = (p.stat.dev(), p.stat.ino());
        let ghost_id = match self.ghosts.get(&key) {
            Some(&g) => g,
            None => {
                let g = self.ghosts.len() as u32 + 1;
                self.write_ghost(p, file, g)?;
                self.ghosts.insert(key, g);
                g
            }
        };
        self.remaps.push(RemapFilePathEntry {
            orig_id: id,
            remap_id: ghost_id,
            remap_type: Some(REMAP_TYPE_GHOST),
        });
        Ok(name)
    }

    fn write_ghost(
        &mut self,
        p: &FileParams,
        file: BorrowedFd<'_>,
        ghost_id: u32,
    ) -> Result<(), FileError> {
        let st = &p.stat;
        let fmt = st.mode() & libc::S_IFMT;
        let io = |what: &str, e: std::io::Error| {
            FileError::io(
                p.pid,
                p.fd,
                format!("{what} of the unlinked file {}", p.link),
                e,
            )
        };
        let chunks = fmt == libc::S_IFREG && st.size() >= GHOST_CHUNKS_THRESH;
        let entry = GhostFileEntry {
            uid: st.uid(),
            gid: st.gid(),
            mode: st.mode(),
            // The kernel-internal encoding (major << 20 | minor), as CRIU's
            // phys_stat_resolve_dev gives it.
            dev: Some(kernel_dev(st.dev())),
            ino: Some(st.ino()),
            rdev: (fmt == libc::S_IFCHR || fmt == libc::S_IFBLK).then_some(st.rdev() as u32),
            atim: Some(Timeval {
                tv_sec: st.atime() as u64,
                tv_usec: (st.atime_nsec() / 1000) as u64,
            }),
            mtim: Some(Timeval {
                tv_sec: st.mtime() as u64,
                tv_usec: (st.mtime_nsec() / 1000) as u64,
            }),
            chunks: chunks.then_some(true),
            size: chunks.then_some(st.size()),
            symlnk_target: None,
        };
        let images = &self
            .shmem
            .as_ref()
            .ok_or_else(|| Self::unsupported(p, "an unlinked file without an images directory"))?
            .images;
        let mut w = images
            .writer(ImageKind::GhostFile, u64::from(ghost_id))
            .map_err(|e| {
                io(
                    "creating the ghost image",
                    std::io::Error::other(e.to_string()),
                )
            })?;
        let werr = |e: criu_image::ImageError| {
            io(
                "writing the ghost image",
                std::io::Error::other(e.to_string()),
            )
        };
        w.write_entry(&entry).map_err(werr)?;
        if fmt == libc::S_IFREG {
            // Reopen for reading: the fd may be write-only.
            let readable = File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .map_err(|e| io("reopening", e))?;
            if chunks {
                for (off, len) in
                    data_segments(&readable, st.size()).map_err(|e| io("SEEK_DATA", e))?
                {
                    let data = read_range(&readable, off, len).map_err(|e| io("reading", e))?;
                    w.write_entry(&GhostChunkEntry {
                        len: data.len() as u64,
                        off,
                    })
                    .map_err(werr)?;
                    w.write_extra(&data).map_err(werr)?;
                }
            } else {
                let data = read_range(&readable, 0, st.size()).map_err(|e| io("reading", e))?;
                w.write_extra(&data).map_err(werr)?;
            }
        }
        w.finish().map_err(werr)?;
        Ok(())
    }
}
