//! Unix sockets, created by the tracer: connected pairs (with their queued
//! data), listening and unconnected sockets, and the self-dump service socket,
//! which comes back as a pair whose other end holds the "restored" reply.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_proto::{CriuDumpResp, CriuResp, UnixSkEntry};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{
    bind, listen, send, socket, socketpair, AddressFamily, Backlog, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use prost::Message;

use crate::files::FileError;

/// `unix_sk_entry.uflags`: the self-dump RPC socket.
pub(crate) const USK_SERVICE: u32 = 2;
/// TCP-like socket states the kernel reports for unix sockets.
pub(crate) const STATE_ESTABLISHED: u32 = 1;
pub(crate) const STATE_CLOSE: u32 = 7;
pub(crate) const STATE_LISTEN: u32 = 10;
/// `criu_req_type` DUMP.
const CRIU_REQ_DUMP: i32 = 1;

fn sys_err(id: u32, op: impl Into<String>) -> impl FnOnce(Errno) -> FileError {
    let op = op.into();
    move |errno| FileError::Sys { id, op, errno }
}

fn sock_type(id: u32, kind: u32) -> Result<SockType, FileError> {
    match kind as i32 {
        libc::SOCK_STREAM => Ok(SockType::Stream),
        libc::SOCK_DGRAM => Ok(SockType::Datagram),
        libc::SOCK_SEQPACKET => Ok(SockType::SeqPacket),
        other => Err(FileError::Sys {
            id,
            op: format!("unix socket type {other}"),
            errno: Errno::EINVAL,
        }),
    }
}

/// Why a unix socket cannot be restored, or `None` if it can.
pub(crate) fn unsupported_reason(
    entry: &UnixSkEntry,
    by_ino: &HashMap<u32, &UnixSkEntry>,
) -> Option<String> {
    if entry.uflags & USK_SERVICE != 0 {
        return None;
    }
    if entry.uflags & !USK_SERVICE != 0 {
        return Some(format!(
            "unix socket {} with flags {:#x} (external or inherited)",
            entry.ino, entry.uflags
        ));
    }
    match entry.state {
        // A connected pair comes back as a socketpair. An accepted connection
        // carries its listener's name, which only getsockname() would show.
        STATE_ESTABLISHED if entry.peer != 0 => match by_ino.get(&entry.peer) {
            Some(peer) if peer.peer == entry.ino => None,
            Some(peer) => one_way_reason(entry, peer),
            None => Some(format!(
                "unix socket {} whose peer {} is outside the dump",
                entry.ino, entry.peer
            )),
        },
        STATE_LISTEN => None,
        STATE_CLOSE if entry.peer == 0 => None,
        // A datagram socket others connect to reports ESTABLISHED without a
        // peer of its own: it is a bound, unconnected socket.
        STATE_ESTABLISHED if entry.r#type == libc::SOCK_DGRAM as u32 => None,
        state => Some(format!(
            "unix socket {} in state {state} with peer {}",
            entry.ino, entry.peer
        )),
    }
}

/// Whether `entry` is connected to `peer` without `peer` being connected
/// back: a stream or seqpacket client whose connection still waits in the
/// accept queue of the listener `peer`, or a datagram socket connected to
/// `peer`. Such a socket is restored by connecting a new socket to the
/// peer's name, as CRIU does.
fn is_one_way(entry: &UnixSkEntry, peer: &UnixSkEntry) -> bool {
    peer.peer != entry.ino
        && (peer.state == STATE_LISTEN || entry.r#type == libc::SOCK_DGRAM as u32)
}

/// Why a one-way connection cannot be restored, or `None` if it can.
fn one_way_reason(entry: &UnixSkEntry, peer: &UnixSkEntry) -> Option<String> {
    if !is_one_way(entry, peer) {
        return Some(format!(
            "unix socket {} connected one-way to peer {} in state {}",
            entry.ino, entry.peer, peer.state
        ));
    }
    if peer.r#type != entry.r#type {
        return Some(format!(
            "unix socket {} of type {} connected to peer {} of type {}",
            entry.ino, entry.r#type, entry.peer, peer.r#type
        ));
    }
    if peer.name.is_empty() || peer.deleted == Some(true) {
        return Some(format!(
            "unix socket {} connected one-way to peer {}, which has no name to connect to",
            entry.ino, entry.peer
        ));
    }
    None
}

/// Creates the sockets of `entries` (all the unix sockets of the dump), by
/// file id; queued data is added by the caller through [`queue`]. Sockets
/// connected one-way are created last, by connecting to their peer's name,
/// once every peer is bound and listening.
pub(crate) fn create_all(entries: &[&UnixSkEntry]) -> Result<HashMap<u32, OwnedFd>, FileError> {
    let mut by_id = HashMap::new();
    let by_ino: HashMap<u32, &UnixSkEntry> = entries.iter().map(|e| (e.ino, *e)).collect();
    for entry in entries {
        if by_id.contains_key(&entry.id) {
            continue;
        }
        let kind = sock_type(entry.id, entry.r#type)?;
        if entry.uflags & USK_SERVICE != 0 {
            let (mine, theirs) =
                socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC)
                    .map_err(sys_err(entry.id, "socketpair"))?;
            let reply = CriuResp {
                r#type: CRIU_REQ_DUMP,
                success: true,
                dump: Some(CriuDumpResp {
                    restored: Some(true),
                }),
                ..Default::default()
            };
            nix::unistd::write(&theirs, &reply.encode_to_vec()).map_err(sys_err(
                entry.id,
                "writing the restored reply to the service socket",
            ))?;
            drop(theirs);
            by_id.insert(entry.id, finish(entry, mine)?);
            continue;
        }
        match entry.state {
            STATE_ESTABLISHED if entry.peer != 0 && is_one_way(entry, by_ino[&entry.peer]) => {}
            STATE_ESTABLISHED if entry.peer != 0 => {
                let peer = by_ino[&entry.peer];
                let (a, b) = socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC)
                    .map_err(sys_err(entry.id, "socketpair"))?;
                by_id.insert(entry.id, finish(entry, a)?);
                by_id.insert(peer.id, finish(peer, b)?);
            }
            _ => {
                let fd = socket(AddressFamily::Unix, kind, SockFlag::SOCK_CLOEXEC, None)
                    .map_err(sys_err(entry.id, "socket"))?;
                if !entry.name.is_empty() {
                    bind_name(entry, &fd)?;
                }
                if entry.state == STATE_LISTEN {
                    let backlog = Backlog::new(entry.backlog.clamp(1, 4096) as i32)
                        .unwrap_or(Backlog::MAXCONN);
                    listen(&fd, backlog).map_err(sys_err(entry.id, "listen"))?;
                }
                by_id.insert(entry.id, finish(entry, fd)?);
            }
        }
    }
    for entry in entries {
        if by_id.contains_key(&entry.id) || entry.state != STATE_ESTABLISHED {
            continue;
        }
        let Some(peer) = by_ino.get(&entry.peer) else {
            continue;
        };
        let kind = sock_type(entry.id, entry.r#type)?;
        // Non-blocking, so that a full accept queue is an error, not a hang.
        let fd = socket(
            AddressFamily::Unix,
            kind,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(sys_err(entry.id, "socket"))?;
        if !entry.name.is_empty() {
            bind_name(entry, &fd)?;
        }
        with_name(peer, |addr| {
            nix::sys::socket::connect(fd.as_raw_fd(), addr).map_err(sys_err(
                entry.id,
                format!(
                    "connect to peer {} ({})",
                    peer.ino,
                    String::from_utf8_lossy(&peer.name)
                ),
            ))
        })?;
        let status = OFlag::from_bits_truncate(entry.flags as i32) & OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(status)).map_err(sys_err(entry.id, "F_SETFL"))?;
        by_id.insert(entry.id, fd);
    }
    Ok(by_id)
}

/// Runs `op` with the address of `entry`'s name. A relative path name
/// (CRIU records it with `name_dir`, the directory it was bound in) is used
/// as is, from a helper thread whose own working directory is `name_dir`, so
/// that the socket gets the same name and the tracer's cwd is untouched.
fn with_name<T>(
    entry: &UnixSkEntry,
    op: impl FnOnce(&UnixAddr) -> Result<T, FileError> + Send,
) -> Result<T, FileError>
where
    T: Send,
{
    if entry.name[0] == 0 {
        let addr = UnixAddr::new_abstract(&entry.name[1..])
            .map_err(sys_err(entry.id, "abstract unix address"))?;
        return op(&addr);
    }
    let path = std::ffi::OsStr::from_bytes_compat(&entry.name);
    let addr = UnixAddr::new(path).map_err(sys_err(entry.id, "unix address"))?;
    let Some(dir) = relative_dir(entry) else {
        return op(&addr);
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .map_err(sys_err(entry.id, "unshare(CLONE_FS)"))?;
                nix::unistd::chdir(dir).map_err(sys_err(
                    entry.id,
                    format!("chdir({dir}) for a relative socket name"),
                ))?;
                op(&addr)
            })
            .join()
            .expect("the socket name helper thread does not panic")
    })
}

/// The directory a relative path name of `entry` is relative to.
fn relative_dir(entry: &UnixSkEntry) -> Option<&str> {
    let dir = entry.name_dir.as_deref().filter(|d| !d.is_empty())?;
    (entry.name[0] != 0 && entry.name[0] != b'/').then_some(dir)
}

/// The file system path of `entry`'s path name, made absolute with
/// `name_dir` when it is relative.
fn name_path(entry: &UnixSkEntry) -> std::path::PathBuf {
    let name = std::path::Path::new(std::ffi::OsStr::from_bytes_compat(&entry.name));
    match relative_dir(entry) {
        Some(dir) => std::path::Path::new(dir).join(name),
        None => name.to_path_buf(),
    }
}

fn bind_name(entry: &UnixSkEntry, fd: &OwnedFd) -> Result<(), FileError> {
    let abstract_name = entry.name[0] == 0;
    let path = name_path(entry);
    if !abstract_name && entry.deleted != Some(true) {
        // A socket file left by the dead task holds the name: replace it.
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    with_name(entry, |addr| {
        bind(fd.as_raw_fd(), addr).map_err(sys_err(
            entry.id,
            format!("bind({})", String::from_utf8_lossy(&entry.name)),
        ))
    })?;
    if abstract_name {
        return Ok(());
    }
    if let Some(perms) = &entry.file_perms {
        use std::os::unix::fs::PermissionsExt;
        let _ =
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perms.mode & 0o7777));
        let _ = std::os::unix::fs::chown(&path, Some(perms.uid), Some(perms.gid));
    }
    if entry.deleted == Some(true) {
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

trait FromBytesCompat {
    fn from_bytes_compat(bytes: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(bytes: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::ffi::OsStr::from_bytes(&bytes[..end])
    }
}

/// Status flags and shutdown state.
fn finish(entry: &UnixSkEntry, fd: OwnedFd) -> Result<OwnedFd, FileError> {
    let status = OFlag::from_bits_truncate(entry.flags as i32) & OFlag::O_NONBLOCK;
    if !status.is_empty() {
        fcntl(&fd, FcntlArg::F_SETFL(status)).map_err(sys_err(entry.id, "F_SETFL"))?;
    }
    Ok(fd)
}

/// Puts one dumped message back into the receive queue of socket `to` by
/// sending it from its peer `from`.
pub(crate) fn queue(id: u32, from: &OwnedFd, data: &[u8]) -> Result<(), FileError> {
    let sent = send(from.as_fd().as_raw_fd(), data, MsgFlags::MSG_DONTWAIT)
        .map_err(sys_err(id, format!("re-queueing {} bytes", data.len())))?;
    if sent != data.len() {
        return Err(FileError::Sys {
            id,
            op: format!("re-queueing {} bytes (sent {sent})", data.len()),
            errno: Errno::EAGAIN,
        });
    }
    Ok(())
}

/// Applies the dumped shutdown state (after the queues are refilled).
pub(crate) fn shutdown(entry: &UnixSkEntry, fd: &OwnedFd) -> Result<(), FileError> {
    use nix::sys::socket::Shutdown;
    let how = match entry.shutdown.unwrap_or(0) {
        1 => Shutdown::Read,
        2 => Shutdown::Write,
        3 => Shutdown::Both,
        _ => return Ok(()),
    };
    nix::sys::socket::shutdown(fd.as_raw_fd(), how).map_err(sys_err(entry.id, "shutdown"))
}
