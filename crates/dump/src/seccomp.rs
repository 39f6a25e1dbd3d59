//! seccomp filters (seccomp.img), laid out as CRIU does: threads in tid
//! order; each thread's chain written from its newest filter to its oldest
//! (PTRACE_SECCOMP_GET_FILTER index 0 is the oldest), each entry's `prev`
//! pointing at the entry written just before it; a thread's core records the
//! index of its last-written (oldest) filter. When every thread of a process has the same
//! chain as its leader, only the leader keeps it, flagged TSYNC.

use std::collections::BTreeMap;

use criu_compel::FrozenTree;
use criu_proto::{SeccompEntry, SeccompFilter};

use crate::proc;
use crate::sys;

const SECCOMP_MODE_FILTER: u32 = 2;
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;

/// Why filters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Reading a filter failed.
    #[error("cannot read seccomp filter {index} of thread {tid}: {source}")]
    Filter {
        /// Thread.
        tid: i32,
        /// Filter index.
        index: u64,
        /// Cause.
        source: criu_compel::CompelError,
    },
    /// Reading /proc failed.
    #[error(transparent)]
    Proc(#[from] proc::ProcError),
}

/// The seccomp state of one thread for its core entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSeccomp {
    /// 0 disabled, 1 strict, 2 filter (after TSYNC merging).
    pub mode: u32,
    /// Index of the thread's last-written (oldest) filter in seccomp.img.
    pub filter: Option<u32>,
}

/// Filters of every thread of the tree and their image layout.
#[derive(Debug, Default)]
pub struct SeccompLayout {
    /// Per thread.
    pub threads: BTreeMap<i32, ThreadSeccomp>,
    /// seccomp.img's single entry.
    pub image: SeccompEntry,
}

/// A thread's chain in PTRACE_SECCOMP_GET_FILTER order (oldest first), with flags.
type Chain = Vec<(Vec<u8>, u32)>;

fn read_chain(tracee: &criu_compel::Tracee) -> Result<Chain, SeccompError> {
    let tid = tracee.tid();
    let mut chain = Vec::new();
    for index in 0.. {
        let Some(filter) = tracee
            .seccomp_filter(index)
            .map_err(|source| SeccompError::Filter { tid, index, source })?
        else {
            break;
        };
        let flags = sys::seccomp_filter_flags(tid, index).unwrap_or(0) as u32;
        chain.push((filter, flags));
    }
    Ok(chain)
}

/// Reads the filters of every live thread of `tree` and lays them out.
pub fn collect(tree: &FrozenTree) -> Result<SeccompLayout, SeccompError> {
    let mut per_thread: BTreeMap<i32, (u32, Chain)> = BTreeMap::new();
    for task in tree.tasks.iter().filter(|t| !t.zombie) {
        let mut chains = Vec::new();
        for tracee in &task.threads {
            let tid = tracee.tid();
            let path = format!("/proc/{}/task/{tid}/status", task.pid);
            let status = proc::parse_status(&proc::read_text(path.clone())?, &path)?;
            let chain = if status.seccomp_mode == SECCOMP_MODE_FILTER {
                read_chain(tracee)?
            } else {
                Vec::new()
            };
            chains.push((tid, status.seccomp_mode, chain));
        }
        // TSYNC merging (CRIU's try_use_tsync).
        let leader = chains.iter().position(|(tid, _, _)| *tid == task.pid);
        if let Some(l) = leader {
            let (_, lmode, lchain) = chains[l].clone();
            let all_same = lmode == SECCOMP_MODE_FILTER
                && chains.iter().all(|(_, mode, chain)| {
                    *mode == lmode
                        && chain.len() == lchain.len()
                        && chain.iter().zip(&lchain).all(|(a, b)| a.0 == b.0)
                });
            if all_same {
                for (tid, mode, chain) in chains.iter_mut() {
                    if *tid == task.pid {
                        for f in chain.iter_mut() {
                            f.1 |= SECCOMP_FILTER_FLAG_TSYNC;
                        }
                    } else {
                        *mode = 0;
                        chain.clear();
                    }
                }
            }
        }
        for (tid, mode, chain) in chains {
            per_thread.insert(tid, (mode, chain));
        }
    }
    let mut layout = SeccompLayout::default();
    for (tid, (mode, chain)) in per_thread {
        let mut filter = None;
        // Newest first; each entry points back at the one written before it.
        for (i, (bytes, flags)) in chain.iter().rev().enumerate() {
            let pos = layout.image.seccomp_filters.len() as u32;
            layout.image.seccomp_filters.push(SeccompFilter {
                filter: bytes.clone(),
                prev: (i > 0).then(|| pos - 1),
                flags: Some(*flags),
            });
            filter = Some(pos);
        }
        layout.threads.insert(tid, ThreadSeccomp { mode, filter });
    }
    Ok(layout)
}
