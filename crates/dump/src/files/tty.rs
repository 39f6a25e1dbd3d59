//! Unix98 pseudo terminals: pts slaves and /dev/ptmx masters, as CRIU's
//! tty.c dumps them. Each fd gets a REG entry for its path, then a TTY
//! `file_entry`; each terminal (master and slave are distinct) gets one
//! `tty_info_entry` in tty-info.img. Session, process group and the
//! exclusive/packet/lock flags are asked from the owning task itself (remote
//! ioctls, see [`FileTable::pending_ttys`]); termios and window size are read
//! through our copy of the fd. A slave whose master is outside the tree is
//! allowed with `shell_job` (one at most), as in CRIU.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use criu_proto::{
    FdTypes, FileEntry, TermiosEntry, TtyFileEntry, TtyInfoEntry, TtyPtyEntry, TtyType,
    WinsizeEntry,
};

use super::{FileError, FileParams, FileTable, RegFile};

const UNIX98_PTY_SLAVE_MAJOR: u32 = 136;
const TTYAUX_MAJOR: u32 = 5;
const TIOCGPTN: u64 = 0x8004_5430;
const TCGETS: u64 = 0x5401;
const TIOCGLCKTRMIOS: u64 = 0x5456;
const TIOCGWINSZ: u64 = 0x5413;
const FIONREAD: u64 = 0x541b;
/// CRIU's TERMIOS_NCC.
const TERMIOS_NCC: usize = 19;

/// Terminal state of a dump.
#[derive(Debug, Default)]
pub struct TtyState {
    /// tty-info.img entries, in order of first appearance.
    pub infos: Vec<TtyInfoEntry>,
    /// Infos that still need the owner's remote ioctls: (pid, fd, index in `infos`).
    pub pending: Vec<(i32, i32, usize)>,
    /// Terminal ids (CRIU's `index << 1 | master`) that are live (not hung up).
    active: HashSet<u32>,
    /// Terminal ids with bytes waiting to be read.
    queued: HashSet<u32>,
}

/// What the owner task reports about a terminal fd (remote ioctls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtyOwnerView {
    /// TIOCGSID (0 if not its controlling terminal).
    pub sid: u32,
    /// TIOCGPGRP.
    pub pgrp: u32,
    /// TIOCGEXCL.
    pub exclusive: bool,
    /// TIOCGPKT.
    pub packet_mode: bool,
    /// TIOCGPTLCK.
    pub locked: bool,
    /// The terminal reported EIO (a pty without its pair).
    pub hangup: bool,
}

fn ioctl_buf(fd: BorrowedFd<'_>, request: u64, buf: &mut [u8]) -> std::io::Result<()> {
    crate::sys::ioctl_read(fd, request, buf)
}

/// CRIU copies glibc's 32-byte `c_cc` raw into the first 8 of its 19 words.
fn termios_entry(raw: &[u8; 60]) -> TermiosEntry {
    let word = |off: usize| u32::from_le_bytes(raw[off..off + 4].try_into().unwrap_or([0; 4]));
    let mut c_cc = vec![0u32; TERMIOS_NCC];
    for (i, chunk) in raw[17..49].chunks(4).enumerate() {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        c_cc[i] = u32::from_le_bytes(b);
    }
    TermiosEntry {
        c_iflag: word(0),
        c_oflag: word(4),
        c_cflag: word(8),
        c_lflag: word(12),
        c_line: u32::from(raw[16]),
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc,
    }
}

fn read_termios(fd: BorrowedFd<'_>, request: u64) -> std::io::Result<TermiosEntry> {
    // glibc's struct termios: 4 flags, c_line, c_cc[32], (pad), ispeed, ospeed.
    let mut raw = [0u8; 60];
    ioctl_buf(fd, request, &mut raw)?;
    Ok(termios_entry(&raw))
}

/// Whether a character device is a terminal we handle (pts slave or ptmx).
pub fn is_pty(major: u32, minor: u32) -> bool {
    (UNIX98_PTY_SLAVE_MAJOR..UNIX98_PTY_SLAVE_MAJOR + 8).contains(&major)
        || (major == TTYAUX_MAJOR && minor == 2)
}

impl FileTable {
    pub(super) fn dump_tty(
        &mut self,
        p: &FileParams,
        file: &OwnedFd,
        major: u32,
    ) -> Result<(FdTypes, u32), FileError> {
        let master = major == TTYAUX_MAJOR;
        let index = if master {
            let mut n = [0u8; 4];
            ioctl_buf(file.as_fd(), TIOCGPTN, &mut n)
                .map_err(|e| FileError::io(p.pid, p.fd, "TIOCGPTN", e))?;
            u32::from_le_bytes(n)
        } else {
            p.link
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    Self::unsupported(p, format!("the terminal {} (no pts index)", p.link))
                })?
        };
        let info_id = (index << 1) | u32::from(master);
        let (id, new) = self.ids.fd_id(p.pid, p.fd, Self::file_key(p), p.info.pos)?;
        if !new {
            return Ok((FdTypes::Tty, id));
        }
        // CRIU records the terminal's path as a REG entry of its own id first.
        let regf_id = self.ids.unique_id();
        let reg = RegFile::describe(p, file.as_fd())?;
        self.entries
            .push(reg.into_file_entry(regf_id, p.info.flags, p.info.pos, p.fown));
        if !self.ttys.infos.iter().any(|i| i.id == info_id) {
            let io = |what: &'static str| move |e| FileError::io(p.pid, p.fd, what, e);
            let mut winsize = [0u8; 8];
            ioctl_buf(file.as_fd(), TIOCGWINSZ, &mut winsize).map_err(io("TIOCGWINSZ"))?;
            let ws = |i: usize| u32::from(u16::from_le_bytes([winsize[i], winsize[i + 1]]));
            self.ttys.infos.push(TtyInfoEntry {
                id: info_id,
                r#type: TtyType::Pty as i32,
                locked: false,
                exclusive: false,
                packet_mode: false,
                sid: 0,
                pgrp: 0,
                rdev: p.stat.rdev() as u32,
                termios: Some(read_termios(file.as_fd(), TCGETS).map_err(io("TCGETS"))?),
                termios_locked: Some(
                    read_termios(file.as_fd(), TIOCGLCKTRMIOS).map_err(io("TIOCGLCKTRMIOS"))?,
                ),
                winsize: Some(WinsizeEntry {
                    ws_row: ws(0),
                    ws_col: ws(2),
                    ws_xpixel: ws(4),
                    ws_ypixel: ws(6),
                }),
                pty: Some(TtyPtyEntry { index }),
                dev: Some(p.stat.dev() as u32),
                uid: Some(p.stat.uid()),
                gid: Some(p.stat.gid()),
            });
            self.ttys
                .pending
                .push((p.pid, p.fd, self.ttys.infos.len() - 1));
            let mut inq = [0u8; 4];
            if ioctl_buf(file.as_fd(), FIONREAD, &mut inq).is_ok() && u32::from_le_bytes(inq) > 0 {
                self.ttys.queued.insert(info_id);
            }
        }
        self.entries.push(FileEntry {
            r#type: FdTypes::Tty as i32,
            id,
            tty: Some(TtyFileEntry {
                id,
                tty_info_id: info_id,
                flags: p.info.flags,
                fown: p.fown,
                regf_id: Some(regf_id),
            }),
            ..Default::default()
        });
        Ok((FdTypes::Tty, id))
    }

    /// Terminal fds of `pid` whose owner view is still needed.
    pub fn pending_ttys(&self, pid: i32) -> Vec<i32> {
        self.ttys
            .pending
            .iter()
            .filter(|(p, _, _)| *p == pid)
            .map(|(_, fd, _)| *fd)
            .collect()
    }

    /// Records what the owner reported for fd `fd` of `pid`.
    pub fn set_tty_owner_view(&mut self, pid: i32, fd: i32, view: TtyOwnerView) {
        let Some(pos) = self
            .ttys
            .pending
            .iter()
            .position(|(p, f, _)| *p == pid && *f == fd)
        else {
            return;
        };
        let (_, _, index) = self.ttys.pending.remove(pos);
        let info = &mut self.ttys.infos[index];
        info.sid = view.sid;
        info.pgrp = view.pgrp;
        info.exclusive = view.exclusive;
        info.packet_mode = view.packet_mode;
        info.locked = view.locked;
        if view.hangup {
            // CRIU writes only the minimal information for a hung-up terminal.
            info.termios = None;
            info.termios_locked = None;
            info.winsize = None;
        } else {
            self.ttys.active.insert(info.id);
        }
    }

    /// CRIU's post-dump checks: every live slave needs its master in the tree,
    /// except one with `shell_job`; a terminal's session must be led by a task
    /// of the tree unless `shell_job`.
    pub fn finish_ttys(&self, tree_pids: &[i32], shell_job: bool) -> Result<(), FileError> {
        let mut unpaired = 0;
        for id in self.ttys.active.iter().filter(|id| *id & 1 == 0) {
            if self.ttys.active.contains(&(id | 1)) {
                continue;
            }
            if !shell_job {
                return Err(FileError::Tty {
                    what: format!(
                        "Found slave peer index {} without correspond master peer",
                        id >> 1
                    ),
                });
            }
            unpaired += 1;
            if unpaired > 1 {
                return Err(FileError::Tty {
                    what: format!(
                        "Only one slave external peer is allowed (index {})",
                        id >> 1
                    ),
                });
            }
        }
        for info in &self.ttys.infos {
            if info.sid != 0 && !tree_pids.contains(&(info.sid as i32)) && !shell_job {
                return Err(FileError::Tty {
                    what: format!(
                        "Found dangling tty with sid {} pgid {} (pts {}). Task attached to shell terminal. Consider using --shell-job option",
                        info.sid,
                        info.pgrp,
                        info.pty.map(|p| p.index).unwrap_or(0)
                    ),
                });
            }
        }
        // Queued data between two ends inside the tree is not copied yet.
        for info in self.ttys.infos.iter().filter(|i| i.id & 1 == 1) {
            let pair = [info.id, info.id & !1];
            if self.ttys.active.contains(&(info.id & !1))
                && pair.iter().any(|id| self.ttys.queued.contains(id))
            {
                return Err(FileError::Tty {
                    what: format!("Cannot dump pty {}: both ends are in the tree and data is queued (tty-data.img is not written yet)", info.id >> 1),
                });
            }
        }
        Ok(())
    }
}

/// Runs the owner-side ioctls in a remote session: the task's own view of
/// its terminal fds (CRIU's parasite_dump_tty).
pub fn owner_view(
    session: &mut criu_compel::RemoteSession<'_>,
    fd: i32,
) -> Result<TtyOwnerView, criu_compel::CompelError> {
    const TIOCGSID: u64 = 0x5429;
    const TIOCGPGRP: u64 = 0x540f;
    const TIOCGEXCL: u64 = 0x8004_5440;
    const TIOCGPKT: u64 = 0x8004_5438;
    const TIOCGPTLCK: u64 = 0x8004_5439;
    let mut view = TtyOwnerView::default();
    let scratch = session.scratch_addr();
    let ask = |session: &mut criu_compel::RemoteSession<'_>,
               request: u64|
     -> Result<Option<u32>, criu_compel::CompelError> {
        session.scratch_write(0, &[0u8; 4])?;
        let ret = session.syscall_raw(libc::SYS_ioctl, [fd as u64, request, scratch, 0, 0, 0])?;
        match ret {
            r if r >= 0 => {
                let b = session.scratch_read(0, 4)?;
                Ok(Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            r if r == -(libc::ENOTTY as i64) => Ok(Some(0)),
            r if r == -(libc::EIO as i64) => Ok(None),
            r => Err(criu_compel::CompelError::RemoteSyscall {
                tid: session.tracee().tid(),
                nr: libc::SYS_ioctl,
                errno: (-r) as i32,
            }),
        }
    };
    for (request, slot) in [
        (TIOCGSID, 0),
        (TIOCGPGRP, 1),
        (TIOCGEXCL, 2),
        (TIOCGPKT, 3),
        (TIOCGPTLCK, 4),
    ] {
        let Some(value) = ask(session, request)? else {
            // EIO: a pty without its pair; keep what was read so far.
            view.hangup = true;
            return Ok(view);
        };
        match slot {
            0 => view.sid = value,
            1 => view.pgrp = value,
            2 => view.exclusive = value != 0,
            3 => view.packet_mode = value != 0,
            _ => view.locked = value != 0,
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termios_cc_is_packed_like_criu() {
        let mut raw = [0u8; 60];
        raw[0..4].copy_from_slice(&0x500u32.to_le_bytes());
        raw[16] = 0;
        for i in 0..19 {
            raw[17 + i] = i as u8 + 1;
        }
        let t = termios_entry(&raw);
        assert_eq!(t.c_iflag, 0x500);
        assert_eq!(t.c_cc.len(), 19);
        assert_eq!(t.c_cc[0], u32::from_le_bytes([1, 2, 3, 4]));
        assert_eq!(t.c_cc[4], u32::from_le_bytes([17, 18, 19, 0]));
        assert!(t.c_cc[8..].iter().all(|w| *w == 0));
    }
}
