//! File objects, opened (or created) by the tracer before any process
//! exists, then installed into each task at its dumped fd numbers.
//!
//! Opening in the tracer keeps sharing right for free: an open file description
//! used by several fds or several tasks is one tracer fd sent to each of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use criu_proto::{FdTypes, FileEntry, RegFileEntry};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use tracing::debug;

use criu_image::{ImageDir, ImageKind};
use criu_proto::{GhostChunkEntry, GhostFileEntry, RemapType};

use crate::images::{RestoreImages, TaskImages};
use crate::memory::close_fds;
use crate::task::{Proc, RemoteError};

/// A file object could not be opened or installed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A regular file could not be opened.
    #[error("file id {id}: cannot open {path} (flags {flags:#o}): {errno}")]
    Open {
        /// The file id in files.img.
        id: u32,
        /// The path.
        path: String,
        /// The open flags.
        flags: i32,
        /// The error.
        errno: Errno,
    },
    /// The file on disk is not the one that was dumped.
    #[error("file id {id}: {path} {reason}")]
    Changed {
        /// The file id.
        id: u32,
        /// The path.
        path: String,
        /// What differs.
        reason: String,
    },
    /// A system call on a tracer-side object failed.
    #[error("file id {id}: {op}: {errno}")]
    Sys {
        /// The file id (or pipe inode).
        id: u32,
        /// What failed.
        op: String,
        /// The error.
        errno: Errno,
    },
    /// A ghost (unlinked at dump time) file could not be re-created.
    #[error("ghost-file-{id:x}.img: {reason}")]
    Ghost {
        /// The ghost id.
        id: u32,
        /// What failed.
        reason: String,
    },
    /// An inherited fd given by the caller could not be duplicated.
    #[error("inherit-fd {key}: {errno}")]
    Inherit {
        /// The key.
        key: String,
        /// The error.
        errno: Errno,
    },
    /// A remote call failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Every file object the restore needs, open in the tracer.
#[derive(Debug, Default)]
pub(crate) struct TracerFiles {
    /// By file id: the object fds refer to.
    by_id: HashMap<u32, OwnedFd>,
    /// By (file id, access mode): files opened for mmap.
    mappings: HashMap<(u32, i32), OwnedFd>,
    /// Links of link-remapped files, removed once the restore succeeded.
    linked: Vec<String>,
    /// memfd objects by inode id.
    memfd_inodes: HashMap<u32, OwnedFd>,
    /// A read-write fd per FIFO, keeping it and its data alive.
    fifo_helpers: HashMap<u32, OwnedFd>,
    /// The terminal a shell job inherits (the restoring process's stdin).
    shell_job_tty: Option<OwnedFd>,
}

/// A new open file description of the object behind `fd`, with `flags`.
fn reopen(fd: BorrowedFd<'_>, id: u32, flags: i32) -> Result<OwnedFd, FileError> {
    let strip = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    open(
        path.as_str(),
        OFlag::from_bits_retain((flags & !strip) | libc::O_CLOEXEC),
        Mode::empty(),
    )
    .map_err(sys_err(id, "reopening a memfd"))
}

fn sys_err(id: u32, op: impl Into<String>) -> impl FnOnce(Errno) -> FileError {
    let op = op.into();
    move |errno| FileError::Sys { id, op, errno }
}

/// The key CRIU's `--inherit-fd` matches a file by.
fn inherit_key(file: &FileEntry) -> Option<String> {
    if let Some(reg) = &file.reg {
        return Some(reg.name.clone());
    }
    file.pipe
        .as_ref()
        .map(|pipe| format!("pipe:[{}]", pipe.pipe_id))
}

impl TracerFiles {
    /// Makes `pgid` the foreground group of the shell job's terminal, if a
    /// task has one.
    pub fn set_shell_job_foreground(&self, pgid: i32) -> Result<(), FileError> {
        let Some(tty) = &self.shell_job_tty else {
            return Ok(());
        };
        crate::tty::set_foreground(tty, pgid).map_err(|errno| FileError::Sys {
            id: 0,
            op: format!("TIOCSPGRP({pgid}) on the shell job's terminal"),
            errno,
        })
    }

    /// Opens every file the tasks' fds, VMAs, exe, cwd and root refer to.
    pub fn open_all(
        dir: &ImageDir,
        images: &RestoreImages,
        inherit: &[(String, OwnedFd)],
    ) -> Result<TracerFiles, FileError> {
        let mut remapper = Remapper {
            dir,
            images,
            ghosts: HashMap::new(),
            unlink: Vec::new(),
            linked: Vec::new(),
        };
        let result = TracerFiles::open_all_with(images, inherit, &mut remapper);
        remapper.cleanup();
        let mut files = result?;
        files.linked = remapper.linked;
        Ok(files)
    }

    fn open_all_with(
        images: &RestoreImages,
        inherit: &[(String, OwnedFd)],
        remapper: &mut Remapper<'_>,
    ) -> Result<TracerFiles, FileError> {
        let mut files = TracerFiles::default();
        let mut fd_ids: HashSet<u32> = HashSet::new();
        let mut mapping_keys: HashSet<(u32, i32)> = HashSet::new();
        for task in &images.tasks {
            fd_ids.extend(task.fds.iter().map(|f| f.id));
            if let Some(fs) = &task.fs {
                fd_ids.insert(fs.cwd_id);
                fd_ids.insert(fs.root_id);
            }
            if let Some(mm) = &task.mm {
                for vma in &mm.vmas {
                    if crate::memory::is_file_backed(vma)
                        && vma.status & (crate::images::status::VDSO | crate::images::status::VVAR)
                            == 0
                    {
                        mapping_keys.insert((vma.shmid as u32, crate::memory::mapping_access(vma)));
                    }
                }
                if mm.exe_file_id != 0 {
                    mapping_keys.insert((mm.exe_file_id, libc::O_RDONLY));
                }
            }
        }
        let mut pipes: BTreeMap<u32, Vec<&FileEntry>> = BTreeMap::new();
        let mut unix_ids: Vec<u32> = Vec::new();
        for id in fd_ids
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<u32>>()
        {
            let file = &images.files[&id];
            if let Some(key) = inherit_key(file) {
                if let Some((_, fd)) = inherit.iter().find(|(k, _)| *k == key) {
                    let dup = fd.try_clone().map_err(|e| FileError::Inherit {
                        key: key.clone(),
                        errno: errno_of(&e),
                    })?;
                    debug!(id, key, "using an inherited fd");
                    files.by_id.insert(id, dup);
                    continue;
                }
            }
            match FdTypes::try_from(file.r#type) {
                Ok(FdTypes::Reg) => {
                    let reg = file.reg.as_ref().expect("validated");
                    let fd = remapper.open(id, reg, reg.flags as i32)?;
                    files.by_id.insert(id, fd);
                }
                Ok(FdTypes::Pipe) => {
                    let pipe = file.pipe.as_ref().expect("validated");
                    pipes.entry(pipe.pipe_id).or_default().push(file);
                }
                Ok(FdTypes::Memfd) => {
                    let memfd = file.memfd.as_ref().expect("validated");
                    let inode = files.memfd_inode(images, memfd.inode_id)?;
                    let fd = reopen(inode, id, memfd.flags as i32)?;
                    if memfd.pos != 0 {
                        nix::unistd::lseek(&fd, memfd.pos as i64, nix::unistd::Whence::SeekSet)
                            .map_err(sys_err(id, "lseek of a memfd"))?;
                    }
                    files.by_id.insert(id, fd);
                }
                Ok(FdTypes::Eventfd) => {
                    files.by_id.insert(
                        id,
                        crate::anon::eventfd(id, file.efd.as_ref().expect("validated"))?,
                    );
                }
                Ok(FdTypes::Signalfd) => {
                    files.by_id.insert(
                        id,
                        crate::anon::signalfd(id, file.sgfd.as_ref().expect("validated"))?,
                    );
                }
                Ok(FdTypes::Timerfd) => {
                    files.by_id.insert(
                        id,
                        crate::anon::timerfd(id, file.tfd.as_ref().expect("validated"))?,
                    );
                }
                Ok(FdTypes::Eventpoll) => {
                    files.by_id.insert(
                        id,
                        crate::anon::epoll(id, file.epfd.as_ref().expect("validated").flags)?,
                    );
                }
                Ok(FdTypes::Inotify) => {
                    files.by_id.insert(
                        id,
                        crate::anon::inotify(id, file.ify.as_ref().expect("validated"))?,
                    );
                }
                Ok(FdTypes::Fifo) => {
                    let fifo = file.fifo.as_ref().expect("validated");
                    let reg = images.files[&fifo.regf_id.expect("validated")]
                        .reg
                        .as_ref()
                        .expect("validated");
                    let fd = files.open_fifo(
                        id,
                        fifo.pipe_id,
                        reg,
                        images.fifo_data.get(&fifo.pipe_id),
                    )?;
                    files.by_id.insert(id, fd);
                }
                Ok(FdTypes::Unixsk) => unix_ids.push(id),
                Ok(FdTypes::Tty) => {
                    let tty = file.tty.as_ref().expect("validated");
                    let info = &images.tty_infos[&tty.tty_info_id];
                    let fd = crate::tty::inherit(id, info)?;
                    if files.shell_job_tty.is_none() {
                        files.shell_job_tty = Some(fd.try_clone().map_err(|e| FileError::Sys {
                            id,
                            op: "duplicating the terminal".into(),
                            errno: errno_of(&e),
                        })?);
                    }
                    files.by_id.insert(id, fd);
                }
                _ => unreachable!("unsupported kinds are refused while loading"),
            }
        }
        for (pipe_id, entries) in pipes {
            files.open_pipe(pipe_id, &entries, images.pipe_data.get(&pipe_id))?;
        }
        if !unix_ids.is_empty() {
            files.open_unix(images, &unix_ids)?;
        }
        for (id, access) in mapping_keys {
            let file = &images.files[&id];
            let fd = match (&file.reg, &file.memfd) {
                (Some(reg), _) => remapper.open(id, reg, access)?,
                (None, Some(memfd)) => {
                    let inode = files.memfd_inode(images, memfd.inode_id)?;
                    reopen(inode, id, access)?
                }
                _ => unreachable!("validated: mappings are regular files or memfds"),
            };
            files.mappings.insert((id, access), fd);
        }
        Ok(files)
    }

    /// Every unix socket of the dump, then the queued messages (sent from each
    /// receiver's peer), then shutdowns; keeps the ones fds use.
    fn open_unix(&mut self, images: &RestoreImages, used: &[u32]) -> Result<(), FileError> {
        let entries: Vec<&criu_proto::UnixSkEntry> = images
            .files
            .values()
            .filter_map(|f| f.usk.as_ref())
            .collect();
        let mut sockets = crate::unix::create_all(&entries)?;
        let by_id: HashMap<u32, &criu_proto::UnixSkEntry> =
            entries.iter().map(|e| (e.id, *e)).collect();
        let by_ino: HashMap<u32, &criu_proto::UnixSkEntry> =
            entries.iter().map(|e| (e.ino, *e)).collect();
        for (receiver, data) in &images.sk_queues {
            // The data is sent from the receiver's peer; a datagram socket
            // that others connect to one-way gets it from one of them.
            let receiver_ino = by_id.get(receiver).map(|r| r.ino);
            let peer = by_id
                .get(receiver)
                .and_then(|r| by_ino.get(&r.peer))
                .filter(|p| Some(p.peer) == receiver_ino)
                .or_else(|| {
                    entries
                        .iter()
                        .find(|e| Some(e.peer) == receiver_ino && e.peer != 0)
                })
                .ok_or_else(|| FileError::Changed {
                    id: *receiver,
                    path: "sk-queues.img".into(),
                    reason:
                        "holds data queued on a socket without a peer in the dump (not supported)"
                            .into(),
                })?;
            crate::unix::queue(*receiver, &sockets[&peer.id], data)?;
        }
        for entry in &entries {
            crate::unix::shutdown(entry, &sockets[&entry.id])?;
        }
        for &id in used {
            let fd = sockets.remove(&id).expect("every unix socket was created");
            self.by_id.insert(id, fd);
        }
        Ok(())
    }

    /// A FIFO end: a read-write helper keeps the FIFO open (and lets a
    /// read-only or write-only open proceed without a partner), gets the data,
    /// and lives as long as the restore.
    fn open_fifo(
        &mut self,
        id: u32,
        pipe_id: u32,
        reg: &RegFileEntry,
        data: Option<&crate::images::PipeData>,
    ) -> Result<OwnedFd, FileError> {
        let path = reg.name.as_str();
        if let std::collections::hash_map::Entry::Vacant(slot) = self.fifo_helpers.entry(pipe_id) {
            let helper =
                open(path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| {
                    FileError::Open {
                        id,
                        path: path.to_string(),
                        flags: libc::O_RDWR,
                        errno,
                    }
                })?;
            if let Some((bytes, _)) = data {
                let written = nix::unistd::write(&helper, bytes)
                    .map_err(sys_err(id, "writing the FIFO data"))?;
                if written != bytes.len() {
                    return Err(FileError::Sys {
                        id,
                        op: format!(
                            "writing {} bytes of FIFO data (wrote {written})",
                            bytes.len()
                        ),
                        errno: Errno::EAGAIN,
                    });
                }
            }
            slot.insert(helper);
        }
        let flags = OFlag::from_bits_truncate(
            reg.flags as i32 & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC),
        );
        let fd = open(
            path,
            flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| FileError::Open {
            id,
            path: path.to_string(),
            flags: flags.bits(),
            errno,
        })?;
        if !flags.contains(OFlag::O_NONBLOCK) {
            fcntl(
                &fd,
                FcntlArg::F_SETFL(flags & (OFlag::O_APPEND | OFlag::O_DIRECT)),
            )
            .map_err(sys_err(id, "F_SETFL on a FIFO"))?;
        }
        Ok(fd)
    }

    /// The memfd object `inode_id`, created with its contents, owner, mode and
    /// seals the first time.
    fn memfd_inode(
        &mut self,
        images: &RestoreImages,
        inode_id: u32,
    ) -> Result<BorrowedFd<'_>, FileError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.memfd_inodes.entry(inode_id) {
            let inode = &images.memfds[&inode_id];
            let entry = &inode.entry;
            let name = CString::new(entry.name.clone())
                .unwrap_or_else(|_| CString::new("memfd").expect("no NUL"));
            let fd = nix::sys::memfd::memfd_create(
                name.as_c_str(),
                nix::sys::memfd::MFdFlags::MFD_CLOEXEC
                    | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
            )
            .map_err(sys_err(inode_id, format!("memfd_create({})", entry.name)))?;
            let file = File::from(fd);
            file.set_len(entry.size).map_err(|e| FileError::Sys {
                id: inode_id,
                op: "ftruncate of a memfd".into(),
                errno: errno_of(&e),
            })?;
            use std::os::unix::fs::FileExt;
            let mut buf = Vec::new();
            for run in &inode.runs {
                let pages = &images.pages_files[run.file];
                buf.resize((run.nr_pages * crate::images::PAGE_SIZE) as usize, 0);
                pages
                    .file
                    .read_exact_at(&mut buf, run.offset)
                    .map_err(|e| FileError::Sys {
                        id: inode_id,
                        op: format!("reading {} at offset {}", pages.label, run.offset),
                        errno: errno_of(&e),
                    })?;
                let end = (run.vaddr + buf.len() as u64)
                    .min(entry.size.div_ceil(crate::images::PAGE_SIZE) * crate::images::PAGE_SIZE);
                let len = (end - run.vaddr) as usize;
                file.write_all_at(&buf[..len], run.vaddr)
                    .map_err(|e| FileError::Sys {
                        id: inode_id,
                        op: format!("writing memfd contents at offset {}", run.vaddr),
                        errno: errno_of(&e),
                    })?;
            }
            if entry.size % crate::images::PAGE_SIZE != 0 {
                // The last page was written whole: cut the file back to its size.
                file.set_len(entry.size).map_err(|e| FileError::Sys {
                    id: inode_id,
                    op: "ftruncate of a memfd".into(),
                    errno: errno_of(&e),
                })?;
            }
            if let Some(mode) = entry.mode {
                nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode & 0o7777))
                    .map_err(sys_err(inode_id, "fchmod of a memfd"))?;
            }
            nix::unistd::fchown(&file, Some(entry.uid.into()), Some(entry.gid.into()))
                .map_err(sys_err(inode_id, "fchown of a memfd"))?;
            if entry.seals != 0 {
                fcntl(
                    &file,
                    FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::from_bits_truncate(
                        entry.seals as i32,
                    )),
                )
                .map_err(sys_err(
                    inode_id,
                    format!("F_ADD_SEALS({:#x})", entry.seals),
                ))?;
            }
            slot.insert(OwnedFd::from(file));
        }
        Ok(self.memfd_inodes[&inode_id].as_fd())
    }

    fn open_pipe(
        &mut self,
        pipe_id: u32,
        entries: &[&FileEntry],
        data: Option<&crate::images::PipeData>,
    ) -> Result<(), FileError> {
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err(pipe_id, "pipe2"))?;
        if let Some((bytes, size)) = data {
            if let Some(size) = size.filter(|&s| s > 0) {
                fcntl(&write_end, FcntlArg::F_SETPIPE_SZ(size as i32))
                    .map_err(sys_err(pipe_id, format!("F_SETPIPE_SZ({size})")))?;
            }
            let written = nix::unistd::write(&write_end, bytes)
                .map_err(sys_err(pipe_id, "writing the pipe data"))?;
            if written != bytes.len() {
                return Err(FileError::Sys {
                    id: pipe_id,
                    op: format!(
                        "writing {} bytes of pipe data (wrote {written})",
                        bytes.len()
                    ),
                    errno: Errno::EAGAIN,
                });
            }
        }
        let first_raw = [read_end.as_raw_fd(), write_end.as_raw_fd()];
        let mut ends = [Some(read_end), Some(write_end)];
        for file in entries {
            let pipe = file.pipe.as_ref().expect("validated");
            let side = if pipe.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY {
                0
            } else {
                1
            };
            let fd = match ends[side].take() {
                Some(fd) => fd,
                None => {
                    // A second open file description of the same pipe end.
                    let path = format!("/proc/self/fd/{}", first_raw[side]);
                    open(
                        path.as_str(),
                        OFlag::from_bits_truncate(pipe.flags as i32) | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(sys_err(file.id, "reopening a pipe end"))?
                }
            };
            let status = OFlag::from_bits_truncate(pipe.flags as i32)
                & (OFlag::O_NONBLOCK | OFlag::O_DIRECT);
            if !status.is_empty() {
                fcntl(&fd, FcntlArg::F_SETFL(status)).map_err(sys_err(file.id, "F_SETFL"))?;
            }
            self.by_id.insert(file.id, fd);
        }
        Ok(())
    }

    /// Removes the links of link-remapped files: the restored tasks hold them
    /// open, unlinked, as at dump time.
    pub fn remove_links(&self) {
        for path in &self.linked {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path, error = %e, "cannot remove a link-remap file");
            }
        }
    }

    /// The tracer fd of a file id used by fds, cwd or root.
    pub fn fd(&self, id: u32) -> BorrowedFd<'_> {
        self.by_id[&id].as_fd()
    }

    /// The tracer fd opened for mapping file `id` with `access`.
    pub fn mapping_fd(&self, id: u32, access: i32) -> BorrowedFd<'_> {
        self.mappings[&(id, access)].as_fd()
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Opens a dumped regular file with `flags` (creation flags stripped), at its
/// dumped position, after checking it is the same kind and size as dumped.
fn open_reg(
    id: u32,
    reg: &RegFileEntry,
    flags: i32,
    path: &str,
    check_size: bool,
) -> Result<OwnedFd, FileError> {
    let strip = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;
    let flags = (flags & !strip) | libc::O_CLOEXEC;
    let path = path.to_string();
    let c_path = CString::new(path.clone()).map_err(|_| FileError::Changed {
        id,
        path: path.clone(),
        reason: "has a NUL byte in its name".into(),
    })?;
    let fd = open(
        c_path.as_c_str(),
        OFlag::from_bits_retain(flags),
        Mode::empty(),
    )
    .map_err(|errno| FileError::Open {
        id,
        path: path.clone(),
        flags,
        errno,
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| FileError::Sys {
        id,
        op: format!("fstat {path}"),
        errno: errno_of(&e),
    })?;
    if let Some(mode) = reg.mode {
        if mode & libc::S_IFMT != meta.mode() & libc::S_IFMT {
            return Err(FileError::Changed {
                id,
                path,
                reason: format!(
                    "is of type {:#o}, but a {:#o} was dumped",
                    meta.mode() & libc::S_IFMT,
                    mode & libc::S_IFMT
                ),
            });
        }
    }
    if let Some(size) = reg.size.filter(|_| check_size) {
        if meta.is_file() && meta.len() != size {
            return Err(FileError::Changed {
                id,
                path,
                reason: format!("has bad size {} (dumped with {size})", meta.len()),
            });
        }
    }
    if reg.pos != 0 {
        nix::unistd::lseek(&file, reg.pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(sys_err(id, format!("lseek({}) {path}", reg.pos)))?;
    }
    Ok(OwnedFd::from(file))
}

/// Installs the task's fds at their numbers, sets cwd, root and umask, and
/// closes the fd transport of the task.
pub(crate) fn install_fds(
    proc: &mut Proc,
    task: &TaskImages,
    images: &RestoreImages,
    files: &TracerFiles,
    epolls_done: &mut HashSet<u32>,
) -> Result<(), FileError> {
    let fs = task.fs.as_ref().expect("alive tasks have fs");
    // One transfer per distinct file object, then cwd and root.
    let mut objects: Vec<u32> = Vec::new();
    for fd in &task.fds {
        if !objects.contains(&fd.id) {
            objects.push(fd.id);
        }
    }
    let cwd_index = objects.len();
    objects.push(fs.cwd_id);
    let root_name = images.files[&fs.root_id]
        .reg
        .as_ref()
        .map(|r| r.name.as_str())
        .unwrap_or("/");
    let change_root = root_name != "/";
    if change_root {
        objects.push(fs.root_id);
    }
    let send: Vec<BorrowedFd<'_>> = objects.iter().map(|&id| files.fd(id)).collect();
    let temps = proc.install(&send)?;
    proc.close_transport()?;
    if change_root {
        let root = temps[cwd_index + 1];
        proc.call("fchdir(root)", libc::SYS_fchdir, &[root as u64])?;
        let dot = proc.put_cstr(0, ".")?;
        proc.call(&format!("chroot({root_name})"), libc::SYS_chroot, &[dot])?;
    }
    proc.call("fchdir(cwd)", libc::SYS_fchdir, &[temps[cwd_index] as u64])?;
    if let Some(mask) = fs.umask {
        proc.call(
            &format!("umask({mask:#o})"),
            libc::SYS_umask,
            &[mask.into()],
        )?;
    }

    // Parallel move: temp -> target for every fd, never clobbering a temp
    // that is still to be moved.
    let temp_of = |id: u32| temps[objects.iter().position(|&o| o == id).expect("sent")];
    let mut pending: Vec<(i32, i32, bool)> = task
        .fds
        .iter()
        .map(|f| {
            (
                temp_of(f.id),
                f.fd as i32,
                f.flags & libc::FD_CLOEXEC as u32 != 0,
            )
        })
        .collect();
    let high = temps
        .iter()
        .copied()
        .chain(task.fds.iter().map(|f| f.fd as i32))
        .max()
        .unwrap_or(0)
        + 1;
    let mut extra_temps: Vec<i32> = Vec::new();
    while !pending.is_empty() {
        let ready = (0..pending.len()).find(|&i| {
            let dst = pending[i].1;
            !pending
                .iter()
                .enumerate()
                .any(|(j, p)| j != i && p.0 == dst && p.0 != pending[i].0)
        });
        match ready {
            Some(i) => {
                let (src, dst, cloexec) = pending.remove(i);
                if src == dst {
                    if !cloexec {
                        proc.call(
                            &format!("fcntl({dst}, F_SETFD, 0)"),
                            libc::SYS_fcntl,
                            &[dst as u64, libc::F_SETFD as u64, 0],
                        )?;
                    }
                } else {
                    let flags = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
                    proc.call(
                        &format!("dup3({src}, {dst})"),
                        libc::SYS_dup3,
                        &[src as u64, dst as u64, flags],
                    )?;
                }
            }
            None => {
                // A cycle: move one source out of the way.
                let src = pending[0].0;
                let moved = proc.call(
                    &format!("fcntl({src}, F_DUPFD_CLOEXEC, {high})"),
                    libc::SYS_fcntl,
                    &[src as u64, libc::F_DUPFD_CLOEXEC as u64, high as u64],
                )? as i32;
                extra_temps.push(moved);
                for p in pending.iter_mut().filter(|p| p.0 == src) {
                    p.0 = moved;
                }
            }
        }
    }
    let targets: HashSet<i32> = task.fds.iter().map(|f| f.fd as i32).collect();
    let mut close: Vec<i32> = temps
        .iter()
        .chain(&extra_temps)
        .copied()
        .filter(|t| !targets.contains(t))
        .collect();
    close.sort_unstable();
    close.dedup();
    close_fds(proc, &close)?;

    // Epoll watches are keyed by (file, fd number): add them inside the task,
    // once per epoll, with the fd numbers of the first task that has it.
    for fd in &task.fds {
        let Some(epoll) = images.files[&fd.id].epfd.as_ref() else {
            continue;
        };
        if !epolls_done.insert(fd.id) {
            continue;
        }
        for target in &epoll.tfd {
            let mut event = Vec::with_capacity(12);
            event.extend_from_slice(&target.events.to_le_bytes());
            event.extend_from_slice(&target.data.to_le_bytes());
            let addr = proc.put(0, &event)?;
            proc.call(
                &format!("epoll_ctl({}, ADD, {})", fd.fd, target.tfd),
                libc::SYS_epoll_ctl,
                &[
                    u64::from(fd.fd),
                    libc::EPOLL_CTL_ADD as u64,
                    u64::from(target.tfd),
                    addr,
                ],
            )?;
        }
    }
    Ok(())
}

/// Opens regular files, following `remap-fpath.img`: a file unlinked at dump
/// time comes back from its ghost image (re-created for the time of the
/// restore, then unlinked again), a link-remapped one through its link.
struct Remapper<'a> {
    dir: &'a ImageDir,
    images: &'a RestoreImages,
    /// Ghost id -> the path it was re-created at.
    ghosts: HashMap<u32, String>,
    /// Re-created ghosts, removed once every file is open: (path, is a directory).
    unlink: Vec<(String, bool)>,
    /// Links of link-remapped files.
    linked: Vec<String>,
}

impl Remapper<'_> {
    fn open(&mut self, id: u32, reg: &RegFileEntry, flags: i32) -> Result<OwnedFd, FileError> {
        let Some(remap) = self.images.remaps.get(&id) else {
            return open_reg(id, reg, flags, &reg.name, true);
        };
        match RemapType::try_from(remap.remap_type.unwrap_or(0)) {
            Ok(RemapType::Ghost) => {
                let path = self.ghost(remap.remap_id, reg)?;
                open_reg(id, reg, flags, &path, false)
            }
            Ok(RemapType::Linked) => {
                let linked = self
                    .images
                    .files
                    .get(&remap.remap_id)
                    .and_then(|f| f.reg.as_ref())
                    .ok_or_else(|| FileError::Changed {
                        id,
                        path: reg.name.clone(),
                        reason: format!(
                            "is link-remapped to file id {}, which is not a regular file",
                            remap.remap_id
                        ),
                    })?;
                let fd = open_reg(id, reg, flags, &linked.name, false)?;
                if !self.linked.contains(&linked.name) {
                    self.linked.push(linked.name.clone());
                }
                Ok(fd)
            }
            _ => Err(FileError::Changed {
                id,
                path: reg.name.clone(),
                reason: "is a /proc remap, which is not supported".into(),
            }),
        }
    }

    /// Re-creates ghost file `ghost_id` (once) and returns its path: the
    /// original name if it is free, else a name next to it.
    fn ghost(&mut self, ghost_id: u32, reg: &RegFileEntry) -> Result<String, FileError> {
        if let Some(path) = self.ghosts.get(&ghost_id) {
            return Ok(path.clone());
        }
        let image_err = |e: criu_image::ImageError| FileError::Ghost {
            id: ghost_id,
            reason: e.to_string(),
        };
        let mut reader = self
            .dir
            .reader_required(ImageKind::GhostFile, u64::from(ghost_id))
            .map_err(image_err)?;
        let entry = reader
            .next_entry::<GhostFileEntry>()
            .map_err(image_err)?
            .ok_or_else(|| FileError::Ghost {
                id: ghost_id,
                reason: "the ghost image has no entry".into(),
            })?;
        let kind = entry.mode & libc::S_IFMT;
        let path = if std::path::Path::new(&reg.name).symlink_metadata().is_err() {
            reg.name.clone()
        } else {
            format!("{}.criu-rs-ghost.{ghost_id}", reg.name)
        };
        let c_path = CString::new(path.clone()).map_err(|_| FileError::Ghost {
            id: ghost_id,
            reason: "NUL in the path".into(),
        })?;
        let perm = Mode::from_bits_truncate(entry.mode & 0o7777);
        match kind {
            libc::S_IFREG => {
                let fd = open(
                    c_path.as_c_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    perm,
                )
                .map_err(sys_err(ghost_id, format!("creating the ghost file {path}")))?;
                self.unlink.push((path.clone(), false));
                let file = File::from(fd);
                use std::os::unix::fs::FileExt;
                let write_err = |e: std::io::Error| FileError::Sys {
                    id: ghost_id,
                    op: format!("writing the ghost file {path}"),
                    errno: errno_of(&e),
                };
                if entry.chunks == Some(true) {
                    while let Some(chunk) =
                        reader.next_entry::<GhostChunkEntry>().map_err(image_err)?
                    {
                        let data = reader.read_extra(chunk.len).map_err(image_err)?;
                        file.write_all_at(&data, chunk.off).map_err(write_err)?;
                    }
                } else {
                    let data = reader.read_to_end().map_err(image_err)?;
                    file.write_all_at(&data, 0).map_err(write_err)?;
                }
                if let Some(size) = entry.size {
                    file.set_len(size).map_err(write_err)?;
                }
                nix::unistd::fchown(&file, Some(entry.uid.into()), Some(entry.gid.into()))
                    .map_err(sys_err(ghost_id, format!("chown of the ghost file {path}")))?;
                if let (Some(atim), Some(mtim)) = (entry.atim, entry.mtim) {
                    let ts = |t: criu_proto::Timeval| {
                        nix::sys::time::TimeSpec::new(t.tv_sec as i64, (t.tv_usec * 1000) as i64)
                    };
                    nix::sys::stat::futimens(&file, &ts(atim), &ts(mtim))
                        .map_err(sys_err(ghost_id, "setting the ghost file times"))?;
                }
            }
            libc::S_IFDIR => {
                nix::unistd::mkdir(c_path.as_c_str(), perm).map_err(sys_err(
                    ghost_id,
                    format!("creating the ghost directory {path}"),
                ))?;
                self.unlink.push((path.clone(), true));
            }
            other => {
                return Err(FileError::Ghost {
                    id: ghost_id,
                    reason: format!("ghost files of type {other:#o} are not supported"),
                });
            }
        }
        self.ghosts.insert(ghost_id, path.clone());
        Ok(path)
    }

    /// Removes the re-created ghosts.
    fn cleanup(&mut self) {
        for (path, is_dir) in self.unlink.drain(..) {
            let result = if is_dir {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = result {
                tracing::warn!(path, error = %e, "cannot remove a remapped file after opening it");
            }
        }
    }
}
