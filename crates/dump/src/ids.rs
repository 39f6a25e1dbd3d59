//! Identifier allocation, following CRIU's schemes so that our images number
//! objects exactly as CRIU 4.2 does:
//!
//! - kernel objects shared between tasks (mm, fd table, fs_struct, signal
//!   handlers) get ids per kind from kcmp comparisons; criu itself takes id 1
//!   of every kind (it is `inventory.root_ids`), so the first dumped task gets 2;
//! - namespaces get ids from one counter, keyed by namespace inode; criu's own
//!   namespaces are numbered first, in the order pid, net, ipc, uts, time,
//!   mnt, user, cgroup (the fixture shows exactly this);
//! - file objects get ids from one counter shared by fds (compared with
//!   KCMP_FILE among candidates with the same dev/ino/pos key) and "special"
//!   files (mapped files, exe, cwd, root), which are deduplicated by
//!   (dev, ino, mnt_id) except for directories and devices.

use std::collections::HashMap;

use criu_proto::TaskKobjIdsEntry;

use crate::sys::{kcmp, KcmpType};

/// Failure to compute an id.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// kcmp failed.
    #[error("kcmp({kind:?}) between pid {pid1} and pid {pid2} failed: {source}")]
    Kcmp {
        /// Comparison kind.
        kind: KcmpType,
        /// First pid.
        pid1: i32,
        /// Second pid.
        pid2: i32,
        /// OS error.
        source: std::io::Error,
    },
    /// A namespace link could not be read.
    #[error("cannot read namespace link {path}: {source}")]
    NsLink {
        /// The /proc path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// One kcmp-keyed id space (CRIU's kcmp tree with genid 0).
#[derive(Debug)]
pub struct KcmpIds {
    kind: KcmpType,
    next: u32,
    members: Vec<(i32, u32)>,
}

impl KcmpIds {
    /// A new id space in which `criu_pid` already holds id 1.
    pub fn new(kind: KcmpType, criu_pid: i32) -> Self {
        Self {
            kind,
            next: 2,
            members: vec![(criu_pid, 1)],
        }
    }

    /// The id of `pid`'s object of this kind, and whether it is new.
    pub fn id_for(&mut self, pid: i32) -> Result<(u32, bool), IdError> {
        let kind = self.kind;
        let place = kcmp_search(&self.members, |&(other, _)| {
            kcmp(pid, other, kind, 0, 0).map_err(|source| IdError::Kcmp {
                kind,
                pid1: pid,
                pid2: other,
                source,
            })
        })?;
        match place {
            Ok(index) => Ok((self.members[index].1, false)),
            Err(at) => {
                let id = self.next;
                self.next += 1;
                self.members.insert(at, (pid, id));
                Ok((id, true))
            }
        }
    }
}

/// Where an object belongs among `sorted` objects kept in kcmp's order: `Ok(index)` of the member
/// it equals, or `Err(position)` to insert it at. `compare(member)` is kcmp(object, member): 0 equal,
/// 1 the object sorts before the member, 2 after it.
///
/// Why: kcmp orders objects (by obfuscated kernel pointer, consistently per kind), so a sorted list
/// finds an object in log2(n) calls; the linear scan made a tree of 100 processes with their own
/// /dev/null fds cost 65,000 kcmp calls. Should a kernel answer 3 ("different, no order"), that kind
/// is searched linearly, and new members are appended.
fn kcmp_search<T>(
    sorted: &[T],
    mut compare: impl FnMut(&T) -> Result<i32, IdError>,
) -> Result<Result<usize, usize>, IdError> {
    let (mut low, mut high) = (0, sorted.len());
    while low < high {
        let middle = low + (high - low) / 2;
        match compare(&sorted[middle])? {
            0 => return Ok(Ok(middle)),
            1 => high = middle,
            2 => low = middle + 1,
            _ => {
                for (index, member) in sorted.iter().enumerate() {
                    if compare(member)? == 0 {
                        return Ok(Ok(index));
                    }
                }
                return Ok(Err(sorted.len()));
            }
        }
    }
    Ok(Err(low))
}

/// The namespace kinds in CRIU's numbering order, with their /proc/PID/ns names.
pub const NS_KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "time", "mnt", "user", "cgroup"];

/// Namespace ids keyed by namespace inode.
#[derive(Debug, Default)]
pub struct NsIds {
    next: u32,
    by_inode: HashMap<(usize, u64), u32>,
}

/// The ids of one task's namespaces, in [`NS_KINDS`] order (None: unsupported here).
pub type TaskNsIds = [Option<u32>; 8];

/// A task's ids entry: its mm, fd table, fs and sighand ids and its namespaces' ids (taken from
/// `ns` in [`NS_KINDS`] order).
pub fn kobj_ids_entry(
    vm_id: u32,
    files_id: u32,
    fs_id: u32,
    sighand_id: u32,
    ns: &TaskNsIds,
) -> TaskKobjIdsEntry {
    let [pid_ns_id, net_ns_id, ipc_ns_id, uts_ns_id, time_ns_id, mnt_ns_id, user_ns_id, cgroup_ns_id] =
        *ns;
    TaskKobjIdsEntry {
        vm_id,
        files_id,
        fs_id,
        sighand_id,
        pid_ns_id,
        net_ns_id,
        ipc_ns_id,
        uts_ns_id,
        mnt_ns_id,
        user_ns_id,
        cgroup_ns_id,
        time_ns_id,
    }
}

fn ns_inode(pid: i32, name: &str) -> Result<Option<u64>, IdError> {
    let path = format!("/proc/{pid}/ns/{name}");
    match std::fs::read_link(&path) {
        Ok(target) => {
            let text = target.to_string_lossy();
            let inode = text
                .rsplit_once('[')
                .and_then(|(_, rest)| rest.strip_suffix(']'))
                .and_then(|n| n.parse().ok());
            Ok(inode)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(source) => Err(IdError::NsLink { path, source }),
    }
}

impl NsIds {
    /// A new id space with `criu_pid`'s namespaces registered first.
    pub fn new(criu_pid: i32) -> Result<(Self, TaskNsIds), IdError> {
        let mut ids = Self {
            next: 1,
            by_inode: HashMap::new(),
        };
        let own = ids.ids_for(criu_pid)?;
        Ok((ids, own))
    }

    /// The namespace ids of `pid`, allocating new ones for unseen namespaces.
    pub fn ids_for(&mut self, pid: i32) -> Result<TaskNsIds, IdError> {
        let mut out = [None; 8];
        for (kind, name) in NS_KINDS.iter().enumerate() {
            let Some(inode) = ns_inode(pid, name)? else {
                continue;
            };
            let next = &mut self.next;
            let id = *self.by_inode.entry((kind, inode)).or_insert_with(|| {
                let id = *next;
                *next += 1;
                id
            });
            out[kind] = Some(id);
        }
        Ok(out)
    }

    /// Whether `pid`'s namespace of `kind` (index in [`NS_KINDS`]) is the one with id `id`.
    pub fn inode_of(&self, id: u32) -> Option<(usize, u64)> {
        self.by_inode
            .iter()
            .find(|(_, &v)| v == id)
            .map(|(&k, _)| k)
    }
}

/// Identity of a file for the "special files" cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// st_dev.
    pub dev: u64,
    /// st_ino.
    pub ino: u64,
    /// Mount id.
    pub mnt_id: i32,
}

/// File object ids (files.img ids), shared by fds and special files.
#[derive(Debug)]
pub struct FileIds {
    next: u32,
    special: HashMap<FileKey, u32>,
    /// fd candidates by CRIU's gen id (dev ^ ino ^ pos halves): (pid, fd, id).
    fds: HashMap<u32, Vec<(i32, i32, u32)>>,
}

impl Default for FileIds {
    fn default() -> Self {
        Self {
            next: 1,
            special: HashMap::new(),
            fds: HashMap::new(),
        }
    }
}

/// CRIU's `make_gen_id`.
pub fn make_gen_id(dev: u64, ino: u64, pos: u64) -> u32 {
    (dev as u32) ^ (ino as u32) ^ ((pos >> 32) as u32) ^ (pos as u32)
}

impl FileIds {
    fn fresh(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        id
    }

    /// The id of a special file (mapping, exe, cwd, root) and whether it is new
    /// (so its file entry must be written). Like CRIU, a cache hit on a
    /// directory or device (`st_mode & (S_IFCHR|S_IFBLK)` is non-zero) still
    /// yields a new id, and such new ids are not cached.
    pub fn special_id(&mut self, key: FileKey, st_mode: u32) -> (u32, bool) {
        if let Some(&id) = self.special.get(&key) {
            if st_mode & (libc::S_IFCHR | libc::S_IFBLK) != 0 {
                return (self.fresh(), true);
            }
            return (id, false);
        }
        let id = self.fresh();
        self.special.insert(key, id);
        (id, true)
    }

    /// A new id that is never shared (CRIU's `fd_id_generate_special(NULL)`).
    pub fn unique_id(&mut self) -> u32 {
        self.fresh()
    }

    /// The id of fd `fd` of `pid` and whether it is new: fds that refer to the
    /// same open file (KCMP_FILE) share one id.
    pub fn fd_id(
        &mut self,
        pid: i32,
        fd: i32,
        key: FileKey,
        pos: u64,
    ) -> Result<(u32, bool), IdError> {
        let gen = make_gen_id(key.dev, key.ino, pos);
        let candidates = self.fds.entry(gen).or_default();
        let place = kcmp_search(candidates, |&(other_pid, other_fd, _)| {
            kcmp(pid, other_pid, KcmpType::File, fd as u64, other_fd as u64).map_err(|source| {
                IdError::Kcmp {
                    kind: KcmpType::File,
                    pid1: pid,
                    pid2: other_pid,
                    source,
                }
            })
        })?;
        let at = match place {
            Ok(index) => return Ok((candidates[index].2, false)),
            Err(at) => at,
        };
        let id = self.next;
        self.next += 1;
        candidates.insert(at, (pid, fd, id));
        self.special.entry(key).or_insert(id);
        Ok((id, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Each namespace id lands in the entry's field named after its kind in [`NS_KINDS`].
    #[test]
    fn kobj_ids_entry_places_namespaces_by_kind() {
        let ns: TaskNsIds = std::array::from_fn(|index| Some(index as u32 + 10));
        let entry = kobj_ids_entry(1, 2, 3, 4, &ns);
        assert_eq!(
            (entry.vm_id, entry.files_id, entry.fs_id, entry.sighand_id),
            (1, 2, 3, 4)
        );
        for (index, kind) in NS_KINDS.iter().enumerate() {
            let field = match *kind {
                "pid" => entry.pid_ns_id,
                "net" => entry.net_ns_id,
                "ipc" => entry.ipc_ns_id,
                "uts" => entry.uts_ns_id,
                "time" => entry.time_ns_id,
                "mnt" => entry.mnt_ns_id,
                "user" => entry.user_ns_id,
                "cgroup" => entry.cgroup_ns_id,
                other => panic!("unknown namespace kind {other}"),
            };
            assert_eq!(field, ns[index], "{kind}");
        }
    }

    #[test]
    fn special_files_dedup_except_dirs_and_devices() {
        let mut ids = FileIds::default();
        let exe = FileKey {
            dev: 1,
            ino: 10,
            mnt_id: 5,
        };
        let root = FileKey {
            dev: 1,
            ino: 2,
            mnt_id: 5,
        };
        assert_eq!(ids.special_id(exe, libc::S_IFREG | 0o755), (1, true));
        assert_eq!(ids.special_id(exe, libc::S_IFREG | 0o755), (1, false));
        // cwd and root on the same directory: two ids, as in CRIU's fixture.
        assert_eq!(ids.special_id(root, libc::S_IFDIR | 0o755), (2, true));
        assert_eq!(ids.special_id(root, libc::S_IFDIR | 0o755), (3, true));
        assert_eq!(ids.unique_id(), 4);
    }

    #[test]
    fn dup_fds_share_an_id_and_reopened_files_do_not() {
        let me = std::process::id() as i32;
        let a = std::fs::File::open("/proc/self/stat").unwrap();
        let b = a.try_clone().unwrap();
        let c = std::fs::File::open("/proc/self/stat").unwrap();
        let key = FileKey {
            dev: 3,
            ino: 4,
            mnt_id: 1,
        };
        let mut ids = FileIds::default();
        let (ia, new_a) = ids.fd_id(me, a.as_raw_fd(), key, 0).unwrap();
        let (ib, new_b) = ids.fd_id(me, b.as_raw_fd(), key, 0).unwrap();
        let (ic, new_c) = ids.fd_id(me, c.as_raw_fd(), key, 0).unwrap();
        assert!(new_a && !new_b && new_c);
        assert_eq!(ia, ib);
        assert_ne!(ia, ic);
    }

    #[test]
    fn own_namespaces_are_numbered_in_criu_order() {
        let me = std::process::id() as i32;
        let (mut ns, own) = NsIds::new(me).unwrap();
        assert_eq!(own[0], Some(1));
        assert_eq!(own[1], Some(2));
        assert_eq!(own[7], Some(8));
        assert_eq!(ns.ids_for(me).unwrap(), own);
        let mut vm = KcmpIds::new(KcmpType::Vm, me);
        assert_eq!(vm.id_for(me).unwrap(), (1, false));
    }

    #[test]
    fn many_reopened_files_in_one_bucket_keep_dups_together_in_few_kcmp_calls() {
        let me = std::process::id() as i32;
        // 64 separate opens of one file (one gen-id bucket), and a dup of every fourth.
        let files: Vec<std::fs::File> = (0..64)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let dups: Vec<(usize, std::fs::File)> = (0..64)
            .step_by(4)
            .map(|i| (i, files[i].try_clone().unwrap()))
            .collect();
        let key = FileKey {
            dev: 5,
            ino: 6,
            mnt_id: 1,
        };
        let mut ids = FileIds::default();
        let first: Vec<u32> = files
            .iter()
            .map(|f| {
                let (id, new) = ids.fd_id(me, f.as_raw_fd(), key, 0).unwrap();
                assert!(new);
                id
            })
            .collect();
        let distinct: std::collections::BTreeSet<u32> = first.iter().copied().collect();
        assert_eq!(distinct.len(), 64);
        for (i, dup) in &dups {
            assert_eq!(
                ids.fd_id(me, dup.as_raw_fd(), key, 0).unwrap(),
                (first[*i], false)
            );
        }
    }

    #[test]
    fn kcmp_search_is_a_binary_search_in_kcmp_order() {
        let sorted = [10, 20, 30, 40];
        let order = |probe: i32| {
            move |member: &i32| -> Result<i32, IdError> {
                Ok(match probe.cmp(member) {
                    std::cmp::Ordering::Equal => 0,
                    std::cmp::Ordering::Less => 1,
                    std::cmp::Ordering::Greater => 2,
                })
            }
        };
        assert_eq!(kcmp_search(&sorted, order(30)).unwrap(), Ok(2));
        assert_eq!(kcmp_search(&sorted, order(5)).unwrap(), Err(0));
        assert_eq!(kcmp_search(&sorted, order(25)).unwrap(), Err(2));
        assert_eq!(kcmp_search(&sorted, order(99)).unwrap(), Err(4));
        let mut calls = 0;
        let _ = kcmp_search(&[0; 1024], |_: &i32| -> Result<i32, IdError> {
            calls += 1;
            Ok(2)
        });
        assert_eq!(calls, 10, "log2(1024) comparisons");
        // "Different, no order" (3): every member is compared, a new one goes last.
        let unordered = |probe: i32| {
            move |member: &i32| -> Result<i32, IdError> { Ok(if probe == *member { 0 } else { 3 }) }
        };
        assert_eq!(kcmp_search(&sorted, unordered(10)).unwrap(), Ok(0));
        assert_eq!(kcmp_search(&sorted, unordered(11)).unwrap(), Err(4));
    }
}
