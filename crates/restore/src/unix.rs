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
            Some(_) => Some(format!(
                "unix socket {} connected one-way to peer {}",
                entry.ino, entry.peer
            )),
            None => Some(format!(
                "unix socket {} whose peer {} is outside the dump",
                entry.ino, entry.peer
            )),
        },
        STATE_LISTEN => None,
        STATE_CLOSE if entry.peer == 0 => None,
        state => Some(format!(
            "unix socket {} in state {state} with peer {}",
            entry.ino, entry.peer
        )),
    }
}

/// Creates the sockets of `entries` (all the unix sockets of the dump), by
/// file id; queued data is added by the caller through [`queue`].
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
            STATE_ESTABLISHED => {
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
    Ok(by_id)
}

fn bind_name(entry: &UnixSkEntry, fd: &OwnedFd) -> Result<(), FileError> {
    let addr = if entry.name[0] == 0 {
        UnixAddr::new_abstract(&entry.name[1..])
            .map_err(sys_err(entry.id, "abstract unix address"))?
    } else {
        let path = std::ffi::OsStr::from_bytes_compat(&entry.name);
        if entry.deleted != Some(true) {
            // A socket file left by the dead task holds the name: replace it.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        UnixAddr::new(path).map_err(sys_err(entry.id, "unix address"))?
    };
    bind(fd.as_raw_fd(), &addr).map_err(sys_err(
        entry.id,
        format!("bind({})", String::from_utf8_lossy(&entry.name)),
    ))?;
    if let Some(perms) = &entry.file_perms {
        if entry.name[0] != 0 {
            let path = std::ffi::OsStr::from_bytes_compat(&entry.name);
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                path,
                std::fs::Permissions::from_mode(perms.mode & 0o7777),
            );
            let _ = std::os::unix::fs::chown(path, Some(perms.uid), Some(perms.gid));
        }
    }
    if entry.deleted == Some(true) && entry.name[0] != 0 {
        let _ = std::fs::remove_file(std::ffi::OsStr::from_bytes_compat(&entry.name));
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
