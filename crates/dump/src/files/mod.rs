//! File objects: every fd of every task, plus the "special" files a task
//! references without an fd (mapped files, exe, cwd, root). Each distinct open
//! file becomes one `file_entry` in files.img; each fd one `fdinfo_entry`.
//!
//! Unsupported kinds fail the dump with a message naming the pid, the fd and
//! the kind; nothing is ever written for them.

mod anon;
mod ghost;
mod inet;
mod memfd;
mod reg;
mod tcp;
mod tty;
mod unix;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use criu_proto::{
    FdTypes, FdinfoEntry, FifoEntry, FileEntry, FownEntry, MemfdInodeEntry, PipeDataEntry,
    PipeEntry, RemapFilePathEntry,
};

use crate::ids::{FileIds, FileKey, IdError};
use crate::proc::{read_fdinfo, FdInfo, ProcError};
use crate::sys;

pub use anon::EVENTFD_SEMAPHORE_FLAG;
pub use memfd::{memfd_name, ShmemOut};
pub use reg::{build_id_words, RegFile};
pub use tcp::RepairedSocket;
pub use tty::{owner_view, TtyOwnerView, TtyState};
pub use unix::{socket_opts, UnixState, USK_EXTERN, USK_SERVICE};

const PIPEFS_MAGIC: i64 = 0x5049_5045;
const ANON_INODE_FS_MAGIC: i64 = 0x0904_1934;
const MEM_MAJOR: u32 = 1;

/// Why a file could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A kind of file we do not (yet) dump.
    #[error("Cannot dump {} of pid {pid}: {what} is not supported yet.", fd_label(*.fd))]
    Unsupported {
        /// Owner.
        pid: i32,
        /// The fd (-1 for a file without fd, e.g. a mapping).
        fd: i32,
        /// What the file is.
        what: String,
    },
    /// An OS call on the file failed.
    #[error("Cannot dump {} of pid {pid}: {what}: {source}.", fd_label(*.fd))]
    Io {
        /// Owner.
        pid: i32,
        /// The fd (-1 for a file without fd).
        fd: i32,
        /// What failed, with the path if known.
        what: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Taking the fd from the task failed.
    #[error("Cannot take fd {fd} of pid {pid}: {source}.")]
    Steal {
        /// Owner.
        pid: i32,
        /// The fd.
        fd: i32,
        /// The compel error.
        source: criu_compel::CompelError,
    },
    /// A task holds file locks and the dump was not asked to handle them.
    #[error("Some file locks are hold by dumping tasks (fd {fd} of pid {pid})! You can try --file-locks to dump them.")]
    FileLocks {
        /// Owner.
        pid: i32,
        /// The fd with the lock.
        fd: i32,
    },
    /// A terminal configuration CRIU refuses too.
    #[error("{what}.")]
    Tty {
        /// CRIU's message.
        what: String,
    },
    /// A /proc file.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// kcmp-based id allocation.
    #[error(transparent)]
    Id(#[from] IdError),
}

/// "fd N", or "a file without fd" for mappings, exe, cwd and root.
fn fd_label(fd: i32) -> String {
    if fd < 0 {
        "a file without fd (mapping, exe, cwd or root)".to_string()
    } else {
        format!("fd {fd}")
    }
}

impl FileError {
    fn io(pid: i32, fd: i32, what: impl Into<String>, source: std::io::Error) -> Self {
        FileError::Io {
            pid,
            fd,
            what: what.into(),
            source,
        }
    }
}

/// Everything known about one open file while it is dumped.
#[derive(Debug)]
pub struct FileParams {
    /// Owner pid.
    pub pid: i32,
    /// The fd, or -1.
    pub fd: i32,
    /// fstat of the file.
    pub stat: std::fs::Metadata,
    /// statfs f_type.
    pub fs_type: i64,
    /// fdinfo (pos, flags without O_CLOEXEC, mnt_id).
    pub info: FdInfo,
    /// The link text (path, `pipe:[N]`, `anon_inode:[eventfd]`...).
    pub link: String,
    /// Owner settings.
    pub fown: FownEntry,
}

/// The global file table of a dump (files.img and the per-type data images).
#[derive(Debug, Default)]
pub struct FileTable {
    /// Id allocation.
    pub ids: FileIds,
    /// files.img entries in creation order.
    pub entries: Vec<FileEntry>,
    /// pipes-data.img entries with their bytes.
    pub pipe_data: Vec<(PipeDataEntry, Vec<u8>)>,
    /// fifo-data.img entries with their bytes.
    pub fifo_data: Vec<(PipeDataEntry, Vec<u8>)>,
    fifos_with_data: HashSet<u64>,
    pipes_with_data: HashSet<u64>,
    /// memfd inode ids by (dev, ino).
    memfd_inodes: HashMap<(u64, u64), u32>,
    /// memfd.img entries.
    pub memfd_inode_entries: Vec<MemfdInodeEntry>,
    /// Where shmem contents go (set by the dump before tasks are dumped).
    pub shmem: Option<ShmemOut>,
    /// Unix sockets.
    pub unix: UnixState,
    /// Network namespace id of the task whose fds are being dumped.
    pub net_ns_id: Option<u32>,
    /// --file-locks was given.
    pub file_locks: bool,
    /// Terminals.
    pub ttys: TtyState,
    /// inet sockets.
    inet: inet::InetState,
    /// --tcp-established was given.
    pub tcp_established: bool,
    /// Connections left in repair mode until the dump ends.
    pub repaired: Vec<RepairedSocket>,
    /// `tcp-stream-<ino>.img` contents: (ino, entry, receive queue, send queue).
    pub tcp_streams: Vec<(u32, criu_proto::TcpStreamEntry, Vec<u8>, Vec<u8>)>,
    /// Ghost file ids by (dev, ino).
    ghosts: HashMap<(u64, u64), u32>,
    /// remap-fpath.img entries.
    pub remaps: Vec<RemapFilePathEntry>,
}

fn readlink(path: &str) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)) as u32
}

fn minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)) as u32
}

fn file_fown(pid: i32, fd: i32, file: BorrowedFd<'_>, flags: u32) -> Result<FownEntry, FileError> {
    let mut fown = FownEntry::default();
    if flags & libc::O_PATH as u32 != 0 {
        return Ok(fown);
    }
    fown.signum = sys::fcntl_get(file, sys::F_GETSIG)
        .map_err(|e| FileError::io(pid, fd, "F_GETSIG", e))? as u32;
    if let Some((kind, owner)) =
        sys::file_owner(file).map_err(|e| FileError::io(pid, fd, "F_GETOWN_EX", e))?
    {
        let (uid, euid) =
            sys::file_owner_uids(file).map_err(|e| FileError::io(pid, fd, "F_GETOWNER_UIDS", e))?;
        fown.pid = owner as u32;
        fown.pid_type = kind as u32;
        fown.uid = uid;
        fown.euid = euid;
    }
    Ok(fown)
}

impl FileTable {
    /// Dumps every fd of `pid` (ascending), returning its fdinfo entries.
    pub fn dump_fds(&mut self, pid: i32) -> Result<Vec<FdinfoEntry>, FileError> {
        let dir = format!("/proc/{pid}/fd");
        let mut fds: Vec<i32> = std::fs::read_dir(&dir)
            .map_err(|e| FileError::io(pid, -1, format!("listing {dir}"), e))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        let mut out = Vec::with_capacity(fds.len());
        for fd in fds {
            out.push(self.dump_fd(pid, fd)?);
        }
        Ok(out)
    }

    fn dump_fd(&mut self, pid: i32, fd: i32) -> Result<FdinfoEntry, FileError> {
        let owned = criu_compel::steal_fd(pid, fd).map_err(|source| FileError::Steal {
            pid,
            fd,
            source,
        })?;
        let file = File::from(owned);
        let stat = file
            .metadata()
            .map_err(|e| FileError::io(pid, fd, "fstat", e))?;
        let fs_type =
            sys::fs_type(file.as_fd()).map_err(|e| FileError::io(pid, fd, "fstatfs", e))?;
        let mut info = read_fdinfo(pid, fd)?;
        if !info.locks.is_empty() {
            if !self.file_locks {
                return Err(FileError::FileLocks { pid, fd });
            }
            return Err(FileError::Unsupported {
                pid,
                fd,
                what: "a file lock (filelocks.img)".into(),
            });
        }
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        info.flags &= !(libc::O_CLOEXEC as u32);
        let link = readlink(&format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
        let fown = file_fown(pid, fd, file.as_fd(), info.flags)?;
        let params = FileParams {
            pid,
            fd,
            stat,
            fs_type,
            info,
            link,
            fown,
        };
        let (kind, id) = self.dump_open_file(&params, file.into())?;
        Ok(FdinfoEntry {
            id,
            flags: u32::from(cloexec),
            r#type: kind as i32,
            fd: fd as u32,
            xattr_security_selinux: None,
        })
    }

    fn unsupported(p: &FileParams, what: impl Into<String>) -> FileError {
        FileError::Unsupported {
            pid: p.pid,
            fd: p.fd,
            what: what.into(),
        }
    }

    /// Classifies one open file and writes its file entry if it is new.
    fn dump_open_file(
        &mut self,
        p: &FileParams,
        file: OwnedFd,
    ) -> Result<(FdTypes, u32), FileError> {
        let mode = p.stat.mode();
        let fmt = mode & libc::S_IFMT;
        if fmt == libc::S_IFSOCK {
            let domain = sys::getsockopt_int(file.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                .map_err(|e| FileError::io(p.pid, p.fd, "SO_DOMAIN", e))?;
            return match domain {
                libc::AF_UNIX => self.dump_unix(p, &file),
                libc::AF_INET | libc::AF_INET6 => self.dump_inet(p, &file, domain),
                libc::AF_NETLINK => Err(Self::unsupported(p, "AF_NETLINK socket")),
                libc::AF_PACKET => Err(Self::unsupported(p, "AF_PACKET socket")),
                other => Err(Self::unsupported(p, format!("socket of family {other}"))),
            };
        }
        if fmt == libc::S_IFCHR {
            let maj = major(p.stat.rdev());
            if maj == MEM_MAJOR {
                return self.dump_reg(p, &file);
            }
            if tty::is_pty(maj, minor(p.stat.rdev())) {
                return self.dump_tty(p, &file, maj);
            }
            // TTY_MAJOR 4, TTYAUX_MAJOR 5 (/dev/tty, /dev/console, /dev/ptmx),
            // UNIX98 pty slaves 136..=143.
            let what = if maj == 4 || maj == 5 || (136..=143).contains(&maj) {
                format!("the terminal {} ({}:{})", p.link, maj, minor(p.stat.rdev()))
            } else {
                format!(
                    "character device {}:{} ({})",
                    maj,
                    minor(p.stat.rdev()),
                    p.link
                )
            };
            return Err(Self::unsupported(p, what));
        }
        if p.fs_type == ANON_INODE_FS_MAGIC {
            return self.dump_anon(p, &file);
        }
        if fmt == libc::S_IFREG || fmt == libc::S_IFDIR || fmt == libc::S_IFLNK {
            if p.link.starts_with("/memfd:") {
                return self.memfd_fd(p, &file);
            }
            if p.link.starts_with('/') {
                return self.dump_reg(p, &file);
            }
            return Err(Self::unsupported(p, format!("file {}", p.link)));
        }
        if fmt == libc::S_IFIFO {
            if p.fs_type == PIPEFS_MAGIC {
                return self.dump_pipe(p, &file);
            }
            return self.dump_fifo(p, &file);
        }
        Err(Self::unsupported(p, format!("file {}", p.link)))
    }

    fn file_key(p: &FileParams) -> FileKey {
        FileKey {
            dev: p.stat.dev(),
            ino: p.stat.ino(),
            mnt_id: p.info.mnt_id,
        }
    }

    fn dump_reg(&mut self, p: &FileParams, file: &OwnedFd) -> Result<(FdTypes, u32), FileError> {
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if new {
            let mut reg = RegFile::describe(p, file.as_fd())?;
            if p.stat.nlink() == 0 || p.link.ends_with(" (deleted)") {
                reg.name = self.remap_unlinked(p, file.as_fd(), id)?;
            }
            self.entries
                .push(reg.into_file_entry(id, p.info.flags, p.info.pos, p.fown));
        }
        Ok((FdTypes::Reg, id))
    }

    fn dump_pipe(&mut self, p: &FileParams, file: &OwnedFd) -> Result<(FdTypes, u32), FileError> {
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if !new {
            return Ok((FdTypes::Pipe, id));
        }
        if p.info.flags & libc::O_DIRECT as u32 != 0 {
            return Err(Self::unsupported(p, "a packetized (O_DIRECT) pipe"));
        }
        let pipe_id = p.stat.ino();
        self.entries.push(FileEntry {
            r#type: FdTypes::Pipe as i32,
            id,
            pipe: Some(PipeEntry {
                id,
                pipe_id: pipe_id as u32,
                flags: p.info.flags & !(libc::O_DIRECT as u32),
                fown: p.fown,
            }),
            ..Default::default()
        });
        if p.info.flags & libc::O_WRONLY as u32 == 0 && self.pipes_with_data.insert(pipe_id) {
            let queued = queued_data(p, file, pipe_id, "")?;
            self.pipe_data.push(queued);
        }
        Ok((FdTypes::Pipe, id))
    }

    fn dump_fifo(&mut self, p: &FileParams, file: &OwnedFd) -> Result<(FdTypes, u32), FileError> {
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if !new {
            return Ok((FdTypes::Fifo, id));
        }
        // CRIU records the FIFO's path as a REG entry of its own id first.
        let regf_id = self.ids.unique_id();
        let mut reg = RegFile::describe(p, file.as_fd())?;
        if p.stat.nlink() == 0 || p.link.ends_with(" (deleted)") {
            reg.name = self.remap_unlinked(p, file.as_fd(), regf_id)?;
        }
        self.entries
            .push(reg.into_file_entry(regf_id, p.info.flags, p.info.pos, p.fown));
        let pipe_id = p.stat.ino();
        self.entries.push(FileEntry {
            r#type: FdTypes::Fifo as i32,
            id,
            fifo: Some(FifoEntry {
                id,
                pipe_id: pipe_id as u32,
                regf_id: Some(regf_id),
            }),
            ..Default::default()
        });
        if p.info.flags & libc::O_WRONLY as u32 == 0 && self.fifos_with_data.insert(pipe_id) {
            let queued = queued_data(p, file, pipe_id, "FIFO ")?;
            self.fifo_data.push(queued);
        }
        Ok((FdTypes::Fifo, id))
    }

    /// A special file (exe, cwd, root, a mapped file) opened by the dumper
    /// through `/proc/PID/...`: its id, writing its REG entry when new.
    /// Directories and devices always get a fresh id (as in CRIU).
    pub fn special_file(&mut self, pid: i32, proc_link: &str) -> Result<u32, FileError> {
        let (file, params) = Self::open_special(pid, proc_link)?;
        let (id, new) = self
            .ids
            .special_id(Self::file_key(&params), params.stat.mode());
        if new {
            if !params.link.starts_with('/') {
                return Err(Self::unsupported(
                    &params,
                    format!("{proc_link} -> {}", params.link),
                ));
            }
            let mut reg = RegFile::describe(&params, file.as_fd())?;
            if params.stat.nlink() == 0 || params.link.ends_with(" (deleted)") {
                reg.name = self.remap_unlinked(&params, file.as_fd(), id)?;
            }
            self.entries
                .push(reg.into_file_entry(id, 0, 0, FownEntry::default()));
        }
        Ok(id)
    }

    /// Opens a special file through its /proc link and describes it.
    fn open_special(pid: i32, proc_link: &str) -> Result<(File, FileParams), FileError> {
        let file = File::open(proc_link)
            .map_err(|e| FileError::io(pid, -1, format!("opening {proc_link}"), e))?;
        let stat = file
            .metadata()
            .map_err(|e| FileError::io(pid, -1, format!("fstat of {proc_link}"), e))?;
        let info = read_fdinfo(std::process::id() as i32, file.as_raw_fd())?;
        let link = readlink(proc_link).unwrap_or_default();
        let params = FileParams {
            pid,
            fd: -1,
            stat,
            fs_type: 0,
            info: FdInfo {
                mnt_id: info.mnt_id,
                ..FdInfo::default()
            },
            link,
            fown: FownEntry::default(),
        };
        Ok((file, params))
    }

    /// Path of the proc link for a mapping `start-end` of `pid`.
    pub fn map_files_path(pid: i32, start: u64, end: u64) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"))
    }
}

/// The pipe-data entry of the pipe or FIFO `p` (`kind` names which in errors, "" or "FIFO ") with
/// its queued bytes, copied without consuming them.
fn queued_data(
    p: &FileParams,
    file: &OwnedFd,
    pipe_id: u64,
    kind: &str,
) -> Result<(PipeDataEntry, Vec<u8>), FileError> {
    let (size, data) = peek_pipe(file.as_fd()).map_err(|e| {
        FileError::io(
            p.pid,
            p.fd,
            format!("copying the data of {kind}{}", p.link),
            e,
        )
    })?;
    let entry = PipeDataEntry {
        pipe_id: pipe_id as u32,
        bytes: data.len() as u32,
        size: Some(size),
    };
    Ok((entry, data))
}

/// Copies the bytes queued in a pipe without consuming them: tee() into a
/// private pipe of the same capacity, then read that. Returns (capacity, bytes).
fn peek_pipe(read_end: BorrowedFd<'_>) -> std::io::Result<(u32, Vec<u8>)> {
    let size = sys::fcntl_get(read_end, libc::F_GETPIPE_SZ)?;
    let (rx, tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    sys::fcntl_set(tx.as_fd(), libc::F_SETPIPE_SZ, size)?;
    let copied = match nix::fcntl::tee(
        read_end,
        tx.as_fd(),
        size as usize,
        nix::fcntl::SpliceFFlags::SPLICE_F_NONBLOCK,
    ) {
        Ok(n) => n,
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => return Err(e.into()),
    };
    drop(tx);
    let mut data = vec![0u8; copied];
    let mut rx = File::from(rx);
    std::io::Read::read_exact(&mut rx, &mut data)?;
    Ok((size as u32, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pipe_data_is_copied_without_consuming_it() {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let mut tx = File::from(tx);
        tx.write_all(b"hello pipe").unwrap();
        let (size, data) = peek_pipe(rx.as_fd()).unwrap();
        assert_eq!(data, b"hello pipe");
        assert!(size >= 4096);
        let mut again = [0u8; 10];
        std::io::Read::read_exact(&mut File::from(rx), &mut again).unwrap();
        assert_eq!(&again, b"hello pipe");
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        let rdev = nix::sys::stat::makedev(136, 3);
        assert_eq!(major(rdev), 136);
        assert_eq!(minor(rdev), 3);
    }
}
