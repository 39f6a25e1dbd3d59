//! Unix sockets (`unix_sk_entry`) and their queued data (sk-queues.img), as
//! CRIU's sk-unix.c writes them: peers by inode from sock_diag, entries of
//! sockets whose peer is not dumped yet deferred until it is, the RPC
//! service socket written closed with USK_SERVICE, in-flight connections
//! pointed at their listener, external datagram peers with USK_EXTERN.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use criu_proto::{FdTypes, FileEntry, FilePermsEntry, SkOptsEntry, SkPacketEntry, UnixSkEntry};

use super::{FileError, FileParams, FileTable};
use crate::sys::{self, unix_diag::UnixSocketDiag};

const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u8 = 10;
/// unix_sk_entry.uflags.
pub const USK_EXTERN: u32 = 1;
/// The RPC service socket.
pub const USK_SERVICE: u32 = 2;
const SO_BUF_LOCK: i32 = 72;
const SIOCUNIXFILE: u64 = 0x89e0;

/// An entry waiting for its peer to be dumped.
#[derive(Debug)]
pub struct DeferredUnix {
    /// Owner pid and fd (for error messages).
    pub pid: i32,
    /// The fd.
    pub fd: i32,
    /// Socket type.
    pub kind: u32,
    /// The entry.
    pub entry: FileEntry,
}

/// Unix socket state of a dump.
#[derive(Debug, Default)]
pub struct UnixState {
    diag: Option<HashMap<u32, UnixSocketDiag>>,
    dumped: std::collections::HashSet<u32>,
    /// Entries waiting for the peer inode (key).
    pub deferred: Vec<(u32, DeferredUnix)>,
    /// sk-queues.img entries with their data.
    pub queues: Vec<(SkPacketEntry, Vec<u8>)>,
    /// Inode of the RPC socket whose peers are "service" sockets.
    pub service_ino: Option<u64>,
    /// Allow external (datagram) peers.
    pub ext_unix_sk: bool,
}

fn opt_int(fd: BorrowedFd<'_>, name: i32) -> std::io::Result<i32> {
    sys::getsockopt_int(fd, libc::SOL_SOCKET, name)
}

/// CRIU's `dump_socket_opts`; SO_PASSCRED/SO_PASSSEC only for unix (and
/// netlink) sockets.
pub fn socket_opts(fd: BorrowedFd<'_>, unix: bool) -> std::io::Result<SkOptsEntry> {
    let (snd_sec, snd_usec) = sys::getsockopt_timeval(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO)?;
    let (rcv_sec, rcv_usec) = sys::getsockopt_timeval(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO)?;
    let mark = opt_int(fd, libc::SO_MARK)? as u32;
    let mut linger = [0u8; 8];
    sys::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &mut linger)?;
    let l_onoff = i32::from_le_bytes(linger[0..4].try_into().unwrap_or([0; 4]));
    let l_linger = u32::from_le_bytes(linger[4..8].try_into().unwrap_or([0; 4]));
    let mut dev = [0u8; 64];
    let dev_len = sys::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &mut dev)?;
    let bound_dev = dev[..dev_len].split(|b| *b == 0).next().unwrap_or(&[]);
    Ok(SkOptsEntry {
        so_sndbuf: opt_int(fd, libc::SO_SNDBUF)? as u32,
        so_rcvbuf: opt_int(fd, libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        reuseaddr: Some(opt_int(fd, libc::SO_REUSEADDR)? != 0),
        so_priority: Some(opt_int(fd, libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(opt_int(fd, libc::SO_RCVLOWAT)? as u32),
        so_mark: (mark != 0).then_some(mark),
        so_passcred: if unix {
            Some(opt_int(fd, libc::SO_PASSCRED)? != 0)
        } else {
            None
        },
        so_passsec: if unix {
            Some(opt_int(fd, libc::SO_PASSSEC)? != 0)
        } else {
            None
        },
        so_dontroute: Some(opt_int(fd, libc::SO_DONTROUTE)? != 0),
        so_no_check: Some(opt_int(fd, libc::SO_NO_CHECK)? != 0),
        so_bound_dev: (!bound_dev.is_empty())
            .then(|| String::from_utf8_lossy(bound_dev).into_owned()),
        so_filter: Vec::new(),
        so_reuseport: Some(opt_int(fd, libc::SO_REUSEPORT)? != 0),
        so_broadcast: Some(opt_int(fd, libc::SO_BROADCAST)? != 0),
        so_keepalive: Some(opt_int(fd, libc::SO_KEEPALIVE)? != 0),
        tcp_keepcnt: None,
        tcp_keepidle: None,
        tcp_keepintvl: None,
        so_oobinline: Some(u32::from(opt_int(fd, libc::SO_OOBINLINE)? != 0)),
        so_linger: (l_onoff != 0).then_some(l_linger),
        so_buf_lock: Some(opt_int(fd, SO_BUF_LOCK)? as u32),
    })
}

/// Copies the receive queue of a socket without consuming it (SO_PEEK_OFF +
/// MSG_PEEK), one entry per message (datagram) or per chunk (stream).
fn peek_queue(fd: BorrowedFd<'_>, id: u32) -> std::io::Result<Vec<(SkPacketEntry, Vec<u8>)>> {
    let orig = opt_int(fd, libc::SO_PEEK_OFF)?;
    let size = (opt_int(fd, libc::SO_SNDBUF)? - 32).max(4096) as usize;
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; size];
    let result = loop {
        match sys::recv_peek(fd, &mut buf, libc::MSG_TRUNC) {
            Ok(0) => break Ok(()),
            Ok(n) if n > buf.len() => {
                break Err(std::io::Error::other(format!(
                    "a queued datagram of {n} bytes is larger than the {size}-byte buffer"
                )))
            }
            Ok(n) => out.push((
                SkPacketEntry {
                    id_for: id,
                    length: n as u32,
                    scm: Vec::new(),
                },
                buf[..n].to_vec(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, orig)?;
    result.map(|()| out)
}

impl FileTable {
    fn unix_diag(&mut self, p: &FileParams) -> Result<&HashMap<u32, UnixSocketDiag>, FileError> {
        if self.unix.diag.is_none() {
            let all = sys::unix_diag::unix_sockets()
                .map_err(|e| FileError::io(p.pid, p.fd, "sock_diag of unix sockets", e))?;
            self.unix.diag = Some(all.into_iter().map(|d| (d.ino, d)).collect());
        }
        Ok(self.unix.diag.as_ref().unwrap_or_else(|| unreachable!()))
    }

    pub(super) fn dump_unix(
        &mut self,
        p: &FileParams,
        file: &OwnedFd,
    ) -> Result<(FdTypes, u32), FileError> {
        let ino = p.stat.ino() as u32;
        let diag = self.unix_diag(p)?.get(&ino).cloned().ok_or_else(|| {
            Self::unsupported(p, format!("unix socket {ino} of another network namespace"))
        })?;
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if !new {
            return Ok((FdTypes::Unixsk, id));
        }
        let diags = self.unix.diag.as_ref().unwrap_or_else(|| unreachable!());
        let mut entry = UnixSkEntry {
            id,
            ino,
            r#type: u32::from(diag.kind),
            state: u32::from(diag.state),
            flags: p.info.flags,
            uflags: 0,
            backlog: diag.rqlen.map(|r| r.1).unwrap_or(0),
            peer: diag.peer.unwrap_or(0),
            fown: p.fown,
            opts: SkOptsEntry::default(),
            name: diag.name.clone().unwrap_or_default(),
            shutdown: diag.shutdown.filter(|s| *s != 0).map(i32::from),
            file_perms: None,
            name_dir: None,
            deleted: None,
            ns_id: self.net_ns_id,
            mnt_id: None,
        };
        if !entry.name.is_empty() && entry.name[0] != 0 {
            self.resolve_unix_name(p, file.as_fd(), diag.vfs, &mut entry)?;
        }
        if self
            .unix
            .service_ino
            .is_some_and(|s| s == u64::from(entry.peer))
        {
            entry.state = TCP_CLOSE;
            entry.peer = 0;
            entry.uflags |= USK_SERVICE;
        }
        if diag.rqlen.is_some_and(|r| r.0 != 0) && diag.state != TCP_LISTEN {
            let queue = peek_queue(file.as_fd(), id).map_err(|e| {
                FileError::io(
                    p.pid,
                    p.fd,
                    format!("copying the queue of unix socket {ino}"),
                    e,
                )
            })?;
            self.unix.queues.extend(queue);
        }
        let mut wait_for_peer = None;
        if entry.peer != 0 {
            let peer = diags.get(&entry.peer).ok_or_else(|| {
                Self::unsupported(
                    p,
                    format!("unix socket {ino} whose peer {} is not visible", entry.peer),
                )
            })?;
            if peer.peer != Some(ino) && peer.name.is_none() {
                return Err(Self::unsupported(
                    p,
                    format!("unix socket {ino} with unreachable peer {}", entry.peer),
                ));
            }
            if !self.unix.dumped.contains(&entry.peer) {
                wait_for_peer = Some(entry.peer);
            }
        } else if entry.state == u32::from(TCP_ESTABLISHED)
            && i32::from(diag.kind) != libc::SOCK_DGRAM
        {
            let listener = diags.values().find(|d| d.icons.contains(&ino));
            match listener {
                Some(l) if l.state == TCP_LISTEN => {
                    if diag.rqlen.is_some_and(|r| r.1 != 0) {
                        return Err(Self::unsupported(
                            p,
                            format!("in-flight unix connection {ino} with queued data"),
                        ));
                    }
                    entry.peer = l.ino;
                }
                Some(_) => {
                    return Err(Self::unsupported(
                        p,
                        format!("in-flight unix connection {ino} on a non-listening socket"),
                    ))
                }
                None if entry.shutdown == Some(3) => {}
                None => {
                    return Err(Self::unsupported(
                        p,
                        format!("dangling unix connection {ino}"),
                    ))
                }
            }
        } else if entry.state == u32::from(TCP_LISTEN) && diag.icons.contains(&0) {
            return Err(Self::unsupported(
                p,
                format!("listening unix socket {ino} with a closed in-flight connection"),
            ));
        }
        entry.opts = socket_opts(file.as_fd(), true).map_err(|e| {
            FileError::io(
                p.pid,
                p.fd,
                format!("socket options of unix socket {ino}"),
                e,
            )
        })?;
        let file_entry = FileEntry {
            r#type: FdTypes::Unixsk as i32,
            id,
            usk: Some(entry),
            ..Default::default()
        };
        match wait_for_peer {
            Some(peer) => self.unix.deferred.push((
                peer,
                DeferredUnix {
                    pid: p.pid,
                    fd: p.fd,
                    kind: u32::from(diag.kind),
                    entry: file_entry,
                },
            )),
            None => self.entries.push(file_entry),
        }
        self.unix.dumped.insert(ino);
        // Entries that waited for this socket can be written now.
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unix.deferred)
            .into_iter()
            .partition(|(peer, _)| *peer == ino);
        self.unix.deferred = waiting;
        self.entries.extend(ready.into_iter().map(|(_, d)| d.entry));
        Ok((FdTypes::Unixsk, id))
    }

    /// Path-bound sockets: mode/owner of the socket file and whether it was
    /// unlinked, through SIOCUNIXFILE; relative names get `name_dir`, the
    /// directory the name was bound in (a restore binds the name from there).
    ///
    /// `entry.name` keeps the bytes sock_diag reports, as CRIU writes them:
    /// for a path the kernel stores the bound name with its terminating NUL
    /// (`conf.sock\0`), for an abstract name exactly the bytes given. Every
    /// path operation here uses the name up to that NUL.
    fn resolve_unix_name(
        &self,
        p: &FileParams,
        sock: BorrowedFd<'_>,
        vfs: Option<(u32, u32)>,
        entry: &mut UnixSkEntry,
    ) -> Result<(), FileError> {
        let raw = sys::ioctl_open(sock, SIOCUNIXFILE)
            .map_err(|e| FileError::io(p.pid, p.fd, "SIOCUNIXFILE", e))?;
        let file = File::from(raw);
        let st = file
            .metadata()
            .map_err(|e| FileError::io(p.pid, p.fd, "fstat of the socket file", e))?;
        entry.file_perms = Some(FilePermsEntry {
            mode: st.mode(),
            uid: st.uid(),
            gid: st.gid(),
        });
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|e| FileError::io(p.pid, p.fd, "reading the socket file's path", e))?;
        let path = path.as_os_str().as_bytes();
        let (path, deleted) = match path.strip_suffix(b" (deleted)") {
            Some(stripped) => (stripped, true),
            None => (path, false),
        };
        if deleted {
            entry.deleted = Some(true);
        }
        let name = bound_path(&entry.name);
        if name.first() == Some(&b'/') {
            return Ok(());
        }
        let dir = match dir_of_relative_name(path, name) {
            Some(dir) => dir,
            None => bound_from_task_dir(p.pid, name, vfs).ok_or_else(|| {
                Self::unsupported(
                    p,
                    format!(
                        "unix socket bound to the relative name {:?}, found neither in {:?} nor in the cwd or root of the task",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(path)
                    ),
                )
            })?,
        };
        entry.name_dir = Some(String::from_utf8_lossy(&dir).into_owned());
        Ok(())
    }

    /// After all tasks: sockets whose peers were never dumped are connected
    /// outside the tree. Datagram ones are allowed with `ext_unix_sk` (the peer
    /// is written as an external entry); anything else fails the dump.
    pub fn finish_unix(&mut self) -> Result<(), FileError> {
        let deferred = std::mem::take(&mut self.unix.deferred);
        let mut by_peer: Vec<(u32, Vec<DeferredUnix>)> = Vec::new();
        for (peer, d) in deferred {
            match by_peer.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, v)) => v.push(d),
                None => by_peer.push((peer, vec![d])),
            }
        }
        for (peer, waiting) in by_peer {
            let first = &waiting[0];
            if !self.unix.ext_unix_sk {
                return Err(FileError::Unsupported {
                    pid: first.pid,
                    fd: first.fd,
                    what: format!("a unix socket connected to socket {peer} outside the dumped tree (consider --ext-unix-sk)"),
                });
            }
            if let Some(stream) = waiting.iter().find(|d| d.kind != libc::SOCK_DGRAM as u32) {
                return Err(FileError::Unsupported {
                    pid: stream.pid,
                    fd: stream.fd,
                    what: format!(
                        "half of a stream unix connection (peer {peer} is outside the dumped tree)"
                    ),
                });
            }
            let name = self
                .unix
                .diag
                .as_ref()
                .and_then(|d| d.get(&peer))
                .and_then(|d| d.name.clone())
                .unwrap_or_default();
            let id = self.ids.unique_id();
            self.entries.push(FileEntry {
                r#type: FdTypes::Unixsk as i32,
                id,
                usk: Some(UnixSkEntry {
                    id,
                    ino: peer,
                    r#type: libc::SOCK_DGRAM as u32,
                    state: u32::from(TCP_LISTEN),
                    name,
                    uflags: USK_EXTERN,
                    ..Default::default()
                }),
                ..Default::default()
            });
            self.entries.extend(waiting.into_iter().map(|d| d.entry));
        }
        Ok(())
    }
}

/// The path part of a sock_diag name: the bytes before the first NUL.
fn bound_path(name: &[u8]) -> &[u8] {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    &name[..end]
}

/// The directory a relative name was bound in, cut from the socket file's
/// absolute path as CRIU does (`cut_path_ending`): a leading `./` of the name
/// is ignored, the path must end with `/` + name, and a name bound in `/`
/// gives `/`. None when the path does not end with the name (`..` or
/// symlinks in the name).
fn dir_of_relative_name(path: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let name = name.strip_prefix(b"./").unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let dir = path.strip_suffix(name)?.strip_suffix(b"/")?;
    if dir.is_empty() {
        // The path was "/" + name.
        return Some(b"/".to_vec());
    }
    Some(dir.to_vec())
}

/// CRIU's resolution of relative names for kernels without SIOCUNIXFILE
/// (`resolve_rel_name`), used when the path cut fails: the name is looked up
/// from the task's cwd, then its root, and taken only if it leads to the very
/// socket file sock_diag reports (inode and device).
fn bound_from_task_dir(pid: i32, name: &[u8], vfs: Option<(u32, u32)>) -> Option<Vec<u8>> {
    let (vfs_ino, vfs_dev) = vfs?;
    // sock_diag reports the kernel's internal dev_t: major << 20 | minor.
    let (vfs_major, vfs_minor) = (vfs_dev >> 20, vfs_dev & 0xf_ffff);
    for link in ["cwd", "root"] {
        let Ok(dir) = std::fs::read_link(format!("/proc/{pid}/{link}")) else {
            continue;
        };
        let candidate = dir.join(std::ffi::OsStr::from_bytes(name));
        let Ok(st) = std::fs::metadata(&candidate) else {
            continue;
        };
        let dev = st.dev();
        if st.ino() == u64::from(vfs_ino)
            && libc::major(dev) == vfs_major
            && libc::minor(dev) == vfs_minor
        {
            return Some(dir.as_os_str().as_bytes().to_vec());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_path_stops_at_the_kernels_nul() {
        assert_eq!(bound_path(b"conf.sock\0"), b"conf.sock");
        assert_eq!(bound_path(b"/run/x.sock"), b"/run/x.sock");
        assert_eq!(bound_path(b""), b"");
    }

    #[test]
    fn relative_names_are_cut_like_criu() {
        let cut = |path: &str, name: &str| {
            dir_of_relative_name(path.as_bytes(), name.as_bytes())
                .map(|d| String::from_utf8(d).unwrap())
        };
        assert_eq!(
            cut("/tmp/w/conf.sock", "conf.sock").as_deref(),
            Some("/tmp/w")
        );
        assert_eq!(
            cut("/tmp/w/conf.sock", "./conf.sock").as_deref(),
            Some("/tmp/w")
        );
        assert_eq!(
            cut("/tmp/w/a/b.sock", "a/b.sock").as_deref(),
            Some("/tmp/w")
        );
        assert_eq!(cut("/conf.sock", "conf.sock").as_deref(), Some("/"));
        // Not a whole path component, or not the ending at all.
        assert_eq!(cut("/tmp/wconf.sock", "conf.sock"), None);
        assert_eq!(cut("/tmp/x.sock", "sub/../x.sock"), None);
        assert_eq!(cut("conf.sock", "conf.sock"), None);
    }
}
