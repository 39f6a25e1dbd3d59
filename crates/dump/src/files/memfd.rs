//! memfds and shared anonymous memory, dumped the way CRIU 4.2 does ("memfd
//! route"): a MEMFD `file_entry` per open file, one `memfd_inode_entry` per
//! inode in memfd.img, and the inode's contents in
//! `pagemap-shmem-<ino>.img` + its own pages image (data segments found with
//! SEEK_DATA/SEEK_HOLE, offsets as vaddr), written when the inode is first seen.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use criu_image::{ImageDir, PagemapTarget};

use crate::pagepipe::PageStore;
use criu_proto::{FdTypes, FileEntry, MemfdFileEntry, MemfdInodeEntry};

use super::{FileError, FileParams, FileTable};
use crate::sys;

const PAGE: u64 = 4096;
/// Bytes read per pread when copying shmem contents.
const CHUNK: u64 = 4 << 20;

/// Where shmem contents go.
#[derive(Debug)]
pub struct ShmemOut {
    /// The images directory (ghost files go there too).
    pub images: ImageDir,
    /// Where the dump's pagemaps go (images dir or page server).
    pub store: PageStore,
    /// Pages scanned (whole objects).
    pub scanned: u64,
    /// Pages written.
    pub written: u64,
    /// Page pipes CRIU would have created.
    pub pipes: u64,
    /// Page pipe buffers CRIU would have allocated.
    pub pipe_bufs: u64,
}

/// The name CRIU records for a memfd or shmem link: without " (deleted)" and
/// without the "/memfd:" prefix.
pub fn memfd_name(link: &str) -> &str {
    let link = link.strip_suffix(" (deleted)").unwrap_or(link);
    link.strip_prefix("/memfd:").unwrap_or(link)
}

fn seek(fd: BorrowedFd<'_>, offset: u64, whence: i32) -> std::io::Result<Option<u64>> {
    match nix::unistd::lseek(
        fd,
        offset as i64,
        match whence {
            libc::SEEK_DATA => nix::unistd::Whence::SeekData,
            _ => nix::unistd::Whence::SeekHole,
        },
    ) {
        Ok(off) => Ok(Some(off as u64)),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the data segments of a shmem object into pagemap-shmem-<shmid>.img.
fn dump_shmem_contents(
    out: &mut ShmemOut,
    file: &File,
    shmid: u64,
    size: u64,
) -> Result<(), FileError> {
    let io = |what: &str, e: std::io::Error| FileError::Io {
        pid: 0,
        fd: -1,
        what: format!("{what} of shared memory {shmid}"),
        source: e,
    };
    let mut writer = out
        .store
        .open(PagemapTarget::Shmem(shmid), true)
        .map_err(|e| io("creating the pagemap", std::io::Error::other(e.to_string())))?;
    let end = size.div_ceil(PAGE) * PAGE;
    let mut offset = 0u64;
    let mut buf = Vec::new();
    while offset < end {
        let Some(data) = seek(std::os::fd::AsFd::as_fd(file), offset, libc::SEEK_DATA)
            .map_err(|e| io("SEEK_DATA", e))?
        else {
            break;
        };
        let data = data / PAGE * PAGE;
        if data >= end {
            break;
        }
        let hole = seek(std::os::fd::AsFd::as_fd(file), data, libc::SEEK_HOLE)
            .map_err(|e| io("SEEK_HOLE", e))?
            .unwrap_or(end);
        let hole = (hole.div_ceil(PAGE) * PAGE).min(end);
        let mut pos = data;
        while pos < hole {
            let len = (hole - pos).min(CHUNK) as usize;
            buf.resize(len, 0);
            let mut done = 0;
            while done < len {
                let n = file
                    .read_at(&mut buf[done..], pos + done as u64)
                    .map_err(|e| io("reading", e))?;
                if n == 0 {
                    // Past EOF inside the last page: the rest reads as zeroes.
                    buf[done..].fill(0);
                    break;
                }
                done += n;
            }
            writer
                .add(pos, &buf, |_| false)
                .map_err(|e| io("writing", std::io::Error::other(e.to_string())))?;
            out.written += len as u64 / PAGE;
            pos += len as u64;
        }
        offset = hole;
    }
    let (_, _, pipes, bufs) = writer.finish().map_err(|e| {
        io(
            "finishing the pagemap",
            std::io::Error::other(e.to_string()),
        )
    })?;
    out.pipes += pipes;
    out.pipe_bufs += bufs;
    out.scanned += end / PAGE;
    Ok(())
}

impl FileTable {
    /// The memfd inode id of `file`, dumping the inode (memfd.img entry and
    /// contents) the first time it is seen.
    fn memfd_inode(&mut self, p: &FileParams, file: &File) -> Result<u32, FileError> {
        let key = (p.stat.dev(), p.stat.ino());
        if let Some(&id) = self.memfd_inodes.get(&key) {
            return Ok(id);
        }
        let inode_id = self.memfd_inodes.len() as u32 + 1;
        self.memfd_inodes.insert(key, inode_id);
        let shmid = p.stat.ino();
        let out = self.shmem.as_mut().ok_or_else(|| FileError::Unsupported {
            pid: p.pid,
            fd: p.fd,
            what: "shared memory without an images directory".into(),
        })?;
        dump_shmem_contents(out, file, shmid, p.stat.size())?;
        let seals =
            sys::fcntl_get(std::os::fd::AsFd::as_fd(file), libc::F_GET_SEALS).map_err(|e| {
                FileError::Io {
                    pid: p.pid,
                    fd: p.fd,
                    what: format!("F_GET_SEALS of {}", p.link),
                    source: e,
                }
            })?;
        self.memfd_inode_entries.push(MemfdInodeEntry {
            name: memfd_name(&p.link).to_string(),
            uid: p.stat.uid(),
            gid: p.stat.gid(),
            size: p.stat.size(),
            shmid: shmid as u32,
            seals: seals as u32,
            inode_id: u64::from(inode_id),
            hugetlb_flag: None,
            mode: Some(p.stat.mode()),
        });
        Ok(inode_id)
    }

    /// Writes the MEMFD file entry for a new id.
    pub(super) fn push_memfd(
        &mut self,
        p: &FileParams,
        file: &File,
        id: u32,
    ) -> Result<(), FileError> {
        let inode_id = self.memfd_inode(p, file)?;
        self.entries.push(FileEntry {
            r#type: FdTypes::Memfd as i32,
            id,
            memfd: Some(MemfdFileEntry {
                id,
                flags: p.info.flags,
                pos: p.info.pos,
                fown: p.fown,
                inode_id,
            }),
            ..Default::default()
        });
        Ok(())
    }

    /// A shared anonymous or memfd mapping of `pid` (opened through
    /// map_files): its MEMFD file id, as CRIU's `dump_one_memfd_cond`.
    pub fn memfd_mapping(&mut self, pid: i32, proc_link: &str) -> Result<u32, FileError> {
        let (file, params) = Self::open_special(pid, proc_link)?;
        let (id, new) = self
            .ids
            .special_id(Self::file_key(&params), params.stat.mode());
        if new {
            self.push_memfd(&params, &file, id)?;
        }
        Ok(id)
    }

    pub(super) fn memfd_fd(
        &mut self,
        p: &FileParams,
        file: &std::os::fd::OwnedFd,
    ) -> Result<(FdTypes, u32), FileError> {
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if new {
            // Read through /proc/self/fd: the fd may be write-only.
            let readable =
                File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|e| {
                    FileError::Io {
                        pid: p.pid,
                        fd: p.fd,
                        what: format!("reopening {}", p.link),
                        source: e,
                    }
                })?;
            self.push_memfd(p, &readable, id)?;
        }
        Ok((FdTypes::Memfd, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_criu_records_them() {
        assert_eq!(memfd_name("/dev/zero (deleted)"), "/dev/zero");
        assert_eq!(memfd_name("/memfd:shm (deleted)"), "shm");
        assert_eq!(memfd_name("/memfd:a b"), "a b");
    }
}
