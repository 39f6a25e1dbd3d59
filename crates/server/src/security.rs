//! Who may ask for what. A root client may do anything. A non-root client may
//! only dump processes it could ptrace itself (every task of the tree has all
//! four uids equal to the client's uid and all four gids equal to its gid, or
//! the client holds CAP_SYS_PTRACE), and its restores run with its identity.

use std::path::PathBuf;

use nix::unistd::{Gid, Uid};
use thiserror::Error;

use crate::rpc::conn::Peer;
use crate::sys;

/// CAP_SYS_PTRACE bit number.
const CAP_SYS_PTRACE: u32 = 19;
/// CAP_CHECKPOINT_RESTORE bit number.
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// Refusals (answered with cr_errno EPERM, nothing touched).
#[derive(Debug, Error)]
pub enum SecurityError {
    /// A task belongs to someone else.
    #[error("Permission denied: client pid {client_pid} (uid {client_uid}) may not dump pid {pid}: {why}")]
    NotTraceable {
        /// Client pid.
        client_pid: i32,
        /// Client uid.
        client_uid: u32,
        /// The task refused.
        pid: i32,
        /// Why.
        why: String,
    },
    /// The task list cannot be read.
    #[error("Can't read {path}: {source}")]
    Proc {
        /// Path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Dropping to the client's identity failed.
    #[error("Can't switch to the client's identity uid {uid} gid {gid}: {why}")]
    Identity {
        /// Client uid.
        uid: u32,
        /// Client gid.
        gid: u32,
        /// Why.
        why: String,
    },
}

fn status_ids(text: &str, key: &str) -> Vec<u32> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn has_capability(pid: i32, cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << cap) != 0)
}

/// Every pid of the tree rooted at `root` (root first), from
/// /proc/PID/task/TID/children.
pub fn tree_pids(root: i32) -> Result<Vec<i32>, SecurityError> {
    let mut pids = vec![root];
    let mut next = 0;
    while next < pids.len() {
        let pid = pids[next];
        next += 1;
        let tasks = PathBuf::from(format!("/proc/{pid}/task"));
        let entries = match std::fs::read_dir(&tasks) {
            Ok(entries) => entries,
            Err(source) if next == 1 => {
                return Err(SecurityError::Proc {
                    path: tasks,
                    source,
                })
            }
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let children = entry.path().join("children");
            if let Ok(text) = std::fs::read_to_string(&children) {
                pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    Ok(pids)
}

/// Checks that `peer` may dump the tree rooted at `pid`.
pub fn check_may_dump(peer: &Peer, pid: i32) -> Result<(), SecurityError> {
    if peer.uid == 0 || has_capability(peer.pid, CAP_SYS_PTRACE) {
        return Ok(());
    }
    for task in tree_pids(pid)? {
        let path = PathBuf::from(format!("/proc/{task}/status"));
        let status = match std::fs::read_to_string(&path) {
            Ok(status) => status,
            Err(source) if task == pid => return Err(SecurityError::Proc { path, source }),
            Err(_) => continue,
        };
        let uids = status_ids(&status, "Uid:");
        let gids = status_ids(&status, "Gid:");
        let uid_ok = uids.len() == 4 && uids.iter().all(|&u| u == peer.uid);
        let gid_ok = gids.len() == 4 && gids.iter().all(|&g| g == peer.gid);
        if !(uid_ok && gid_ok) {
            return Err(SecurityError::NotTraceable {
                client_pid: peer.pid,
                client_uid: peer.uid,
                pid: task,
                why: format!("task uids {uids:?} gids {gids:?} differ from the client's"),
            });
        }
    }
    Ok(())
}

/// For a non-root client, switches this worker to the client's uid/gid,
/// keeping only CAP_CHECKPOINT_RESTORE (needed to choose pids), so the
/// kernel refuses anything the client could not do itself.
pub fn become_client(peer: &Peer) -> Result<(), SecurityError> {
    if peer.uid == 0 {
        return Ok(());
    }
    let fail = |why: String| SecurityError::Identity {
        uid: peer.uid,
        gid: peer.gid,
        why,
    };
    let gid = Gid::from_raw(peer.gid);
    let uid = Uid::from_raw(peer.uid);
    nix::unistd::setgroups(&[gid]).map_err(|e| fail(format!("setgroups: {e}")))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| fail(format!("setresgid: {e}")))?;
    sys::set_keepcaps(true).map_err(|e| fail(format!("PR_SET_KEEPCAPS: {e}")))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| fail(format!("setresuid: {e}")))?;
    sys::capset_keep(&[CAP_CHECKPOINT_RESTORE]).map_err(|e| fail(format!("capset: {e}")))?;
    // Changing uids cleared the dumpable flag; without it the worker could
    // not even ptrace the tasks it creates.
    nix::sys::prctl::set_dumpable(true).map_err(|e| fail(format!("PR_SET_DUMPABLE: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_may_dump_anything_and_others_only_their_own() {
        let me = std::process::id() as i32;
        let root = Peer {
            pid: me,
            uid: 0,
            gid: 0,
        };
        check_may_dump(&root, 1).unwrap();
        // A made-up unprivileged client (pid 1 has no CAP_SYS_PTRACE lookup
        // problem: we use a pid whose status says it lacks it).
        let stranger = Peer {
            pid: i32::MAX,
            uid: 4242,
            gid: 4242,
        };
        let error = check_may_dump(&stranger, me).unwrap_err();
        assert!(error.to_string().contains(&format!("pid {me}")), "{error}");
    }

    #[test]
    fn tree_lists_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // The spawning thread's children file may lag the spawn briefly.
        let found = (0..100).any(|_| {
            let pids = tree_pids(std::process::id() as i32).unwrap();
            pids.contains(&(child.id() as i32))
                || (
                    std::thread::sleep(std::time::Duration::from_millis(20)),
                    false,
                )
                    .1
        });
        assert!(found, "child {} not listed", child.id());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
