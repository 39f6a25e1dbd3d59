//! VMAs of a process from `/proc/PID/smaps`, classified the way CRIU classifies them.
//!
//! CRIU facts mirrored here (CRIU-FACTS 3.8): the `vma_entry` status bits, the MAP_* flags it
//! records (MAP_SHARED/PRIVATE from the maps line, GROWSDOWN/LOCKED/NORESERVE/HUGETLB/DROPPABLE
//! from VmFlags, MAP_ANONYMOUS for memory with no file), the madvise bitmap from VmFlags, and the
//! merge of `[vvar]` + `[vvar_vclock]` (kernel >= 6.13) into one VMA.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Errors while reading or parsing a process's VMAs.
#[derive(Debug, thiserror::Error)]
pub enum VmaError {
    /// Reading `/proc/<pid>/smaps` failed.
    #[error("cannot read /proc/{pid}/smaps: {source}")]
    Read {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    /// A VMA header line of smaps could not be parsed.
    #[error("/proc/{pid}/smaps line {line_no}: cannot parse VMA header {line:?}")]
    BadHeader {
        pid: i32,
        line_no: usize,
        line: String,
    },
    /// A `VmFlags:` line appeared before any VMA header.
    #[error("/proc/{pid}/smaps line {line_no}: VmFlags before any VMA header")]
    FlagsWithoutVma { pid: i32, line_no: usize },
    /// Two vvar VMAs (`[vvar]`, `[vvar_vclock]`) that do not touch each other.
    #[error("pid {pid}: two nonconsecutive vvar VMAs {first_start:#x}-{first_end:#x} and {second_start:#x}-{second_end:#x}")]
    VvarNotContiguous {
        pid: i32,
        first_start: u64,
        first_end: u64,
        second_start: u64,
        second_end: u64,
    },
}

/// CRIU `VMA_AREA_REGULAR`.
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
/// CRIU `VMA_AREA_STACK` (defined by CRIU but never set by its dump).
pub const VMA_AREA_STACK: u32 = 1 << 1;
/// CRIU `VMA_AREA_VSYSCALL`.
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
/// CRIU `VMA_AREA_VDSO`.
pub const VMA_AREA_VDSO: u32 = 1 << 3;
/// CRIU `VMA_AREA_HEAP`.
pub const VMA_AREA_HEAP: u32 = 1 << 5;
/// CRIU `VMA_FILE_PRIVATE`.
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
/// CRIU `VMA_FILE_SHARED`.
pub const VMA_FILE_SHARED: u32 = 1 << 7;
/// CRIU `VMA_ANON_SHARED`.
pub const VMA_ANON_SHARED: u32 = 1 << 8;
/// CRIU `VMA_ANON_PRIVATE`.
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
/// CRIU `VMA_AREA_SYSVIPC`.
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
/// CRIU `VMA_AREA_SOCKET`.
pub const VMA_AREA_SOCKET: u32 = 1 << 11;
/// CRIU `VMA_AREA_VVAR`.
pub const VMA_AREA_VVAR: u32 = 1 << 12;
/// CRIU `VMA_AREA_AIORING`.
pub const VMA_AREA_AIORING: u32 = 1 << 13;
/// CRIU `VMA_AREA_MEMFD`.
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
/// CRIU `VMA_AREA_SHSTK`.
pub const VMA_AREA_SHSTK: u32 = 1 << 15;
/// CRIU `VMA_AREA_GUARD`.
pub const VMA_AREA_GUARD: u32 = 1 << 16;
/// CRIU `VMA_AREA_UPROBES`.
pub const VMA_AREA_UPROBES: u32 = 1 << 17;
/// CRIU `VMA_UNSUPP` (internal: never written to images; the dump must refuse the VMA).
pub const VMA_UNSUPP: u32 = 1 << 31;

/// Highest user address on x86_64 with 5-level paging; CRIU's "end <= TASK_SIZE" check.
const TASK_SIZE_MAX: u64 = (1 << 56) - 4096;

/// What a VMA maps, decided from its name, device and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaKind {
    /// Private anonymous memory (including `[anon:name]` and private `/dev/zero`-less memory).
    AnonPrivate,
    /// MAP_SHARED|MAP_ANONYMOUS memory: a `/dev/zero (deleted)` file on the internal shmem mount.
    /// CRIU dumps it through the memfd route.
    AnonShared,
    /// A private mapping of a regular file (or of a character device such as `/dev/zero`).
    FilePrivate,
    /// A shared mapping of a regular file (or of a character device).
    FileShared,
    /// A mapping of a memfd (`/memfd:name (deleted)` on the shmem mount); `shared` is MAP_SHARED.
    Memfd { shared: bool },
    /// A SysV shared memory segment (`/SYSV%08x`).
    SysvShm,
    /// `[heap]`.
    Heap,
    /// `[stack]` (the main thread's stack; thread stacks are plain anonymous memory).
    Stack,
    /// `[vdso]`.
    Vdso,
    /// `[vvar]`, merged with a following `[vvar_vclock]`.
    Vvar,
    /// `[vsyscall]`.
    Vsyscall,
    /// `[uprobes]`.
    Uprobes,
    /// An AIO ring (`/[aio] (deleted)`).
    AioRing,
    /// Anything else with a name that is not a path: another kernel special mapping (e.g.
    /// `[vectors]` elsewhere), treated as anonymous memory, or a mapped kernel object such as
    /// `anon_inode:[io_uring]` or `socket:[123]`, which gets [`VMA_UNSUPP`].
    Special(String),
}

/// The two-letter `VmFlags:` codes of smaps, as a bit set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VmFlags(u64);

/// The known VmFlags codes, in bit order of [`VmFlags`].
const VMFLAG_CODES: [&str; 39] = [
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "lo", "io", "sr", "rr", "dc", "de",
    "ac", "nr", "ht", "sf", "nl", "ar", "wf", "dd", "pp", "mm", "hg", "nh", "mg", "um", "uw", "ss",
    "sd", "bt", "mt", "ui", "sl", "dp", "lf",
];

impl VmFlags {
    /// `rd`: readable.
    pub const READ: Self = Self::code(0);
    /// `wr`: writable.
    pub const WRITE: Self = Self::code(1);
    /// `ex`: executable.
    pub const EXEC: Self = Self::code(2);
    /// `sh`: shared.
    pub const SHARED: Self = Self::code(3);
    /// `gd`: grows down.
    pub const GROWSDOWN: Self = Self::code(8);
    /// `pf`: pure PFN range.
    pub const PFNMAP: Self = Self::code(9);
    /// `lo`: pages are locked in memory.
    pub const LOCKED: Self = Self::code(10);
    /// `io`: memory-mapped I/O area.
    pub const IO: Self = Self::code(11);
    /// `sr`: MADV_SEQUENTIAL.
    pub const SEQ_READ: Self = Self::code(12);
    /// `rr`: MADV_RANDOM.
    pub const RAND_READ: Self = Self::code(13);
    /// `dc`: MADV_DONTFORK.
    pub const DONTCOPY: Self = Self::code(14);
    /// `de`: do not expand on remap.
    pub const DONTEXPAND: Self = Self::code(15);
    /// `nr`: swap space not reserved (MAP_NORESERVE).
    pub const NORESERVE: Self = Self::code(17);
    /// `ht`: hugetlb area.
    pub const HUGETLB: Self = Self::code(18);
    /// `wf`: MADV_WIPEONFORK.
    pub const WIPEONFORK: Self = Self::code(22);
    /// `dd`: MADV_DONTDUMP.
    pub const DONTDUMP: Self = Self::code(23);
    /// `mm`: mixed map.
    pub const MIXEDMAP: Self = Self::code(25);
    /// `hg`: MADV_HUGEPAGE.
    pub const HUGEPAGE: Self = Self::code(26);
    /// `nh`: MADV_NOHUGEPAGE.
    pub const NOHUGEPAGE: Self = Self::code(27);
    /// `mg`: MADV_MERGEABLE.
    pub const MERGEABLE: Self = Self::code(28);
    /// `um`: userfaultfd missing-page tracking.
    pub const UFFD_MISSING: Self = Self::code(29);
    /// `uw`: userfaultfd write-protect tracking.
    pub const UFFD_WP: Self = Self::code(30);
    /// `ss`: shadow stack.
    pub const SHADOW_STACK: Self = Self::code(31);
    /// `sd`: soft-dirty.
    pub const SOFT_DIRTY: Self = Self::code(32);
    /// `ui`: userfaultfd minor-fault tracking.
    pub const UFFD_MINOR: Self = Self::code(35);
    /// `dp`: MAP_DROPPABLE.
    pub const DROPPABLE: Self = Self::code(37);

    const fn code(bit: u32) -> Self {
        Self(1 << bit)
    }

    /// Parses the value of a `VmFlags:` line; unknown codes are ignored.
    pub fn parse(text: &str) -> Self {
        let mut bits = 0;
        for token in text.split_ascii_whitespace() {
            if let Some(bit) = VMFLAG_CODES.iter().position(|code| *code == token) {
                bits |= 1 << bit;
            }
        }
        Self(bits)
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bit set (bit n = the n-th known code).
    pub fn bits(self) -> u64 {
        self.0
    }
}

impl std::ops::BitOr for VmFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Debug for VmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<&str> = (0..VMFLAG_CODES.len())
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| VMFLAG_CODES[bit])
            .collect();
        write!(f, "VmFlags({})", codes.join(" "))
    }
}

/// One virtual memory area of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    /// First byte of the area.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// `PROT_READ | PROT_WRITE | PROT_EXEC` bits.
    pub prot: u32,
    /// The MAP_* flags CRIU records in `vma_entry.flags`: MAP_SHARED or MAP_PRIVATE, MAP_ANONYMOUS
    /// for memory without a file, plus GROWSDOWN/LOCKED/NORESERVE/HUGETLB/DROPPABLE from VmFlags.
    pub flags: u32,
    /// Offset into the mapped file, in bytes.
    pub pgoff: u64,
    /// Device (major, minor) of the mapped file, (0, 0) for anonymous memory.
    pub dev: (u32, u32),
    /// Inode of the mapped file, 0 for anonymous memory.
    pub inode: u64,
    /// The path of the mapped file when the name column is a path, with ` (deleted)` removed.
    pub path: Option<PathBuf>,
    /// The raw name column when it is not a path: `[heap]`, `[stack]`, `[vdso]`, `[anon:name]`...
    pub label: Option<String>,
    /// The mapped file was unlinked (` (deleted)` suffix).
    pub deleted: bool,
    /// Classification.
    pub kind: VmaKind,
    /// The smaps `VmFlags:` line.
    pub vm_flags: VmFlags,
    /// CRIU's `vma_entry.madv`: bit n set when MADV_n is in effect.
    pub madv: u64,
}

impl Vma {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the area is empty (never true for a VMA read from the kernel).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Number of 4 KiB pages.
    pub fn nr_pages(&self) -> u64 {
        self.len() / crate::PAGE_SIZE
    }

    /// The entry name in `/proc/PID/map_files`: `start-end` in lowercase hex, no leading zeros.
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }

    /// CRIU's `vma_entry.status` for this VMA, see [`vma_status_bits`].
    pub fn status(&self) -> u32 {
        vma_status_bits(self)
    }

    /// Whether CRIU dumps this VMA's private pages into pagemap/pages (CRIU's
    /// `vma_area_is_private`, minus the vvar which is excluded explicitly).
    pub fn dumps_private_pages(&self) -> bool {
        is_private_dumpable(vma_status_bits(self), self.end)
    }

    /// Whether every page of the VMA is dumped, present or not (CRIU's `should_dump_entire_vma`:
    /// the vdso, which a restore may need to proxy, and AIO rings).
    pub fn dumps_entire_vma(&self) -> bool {
        matches!(self.kind, VmaKind::Vdso | VmaKind::AioRing)
    }

    /// CRIU's `vma_entry_can_be_lazy`: pages of this VMA may get PE_LAZY.
    pub fn can_be_lazy(&self) -> bool {
        let status = vma_status_bits(self);
        let flags = self.flags as i32;
        flags & libc::MAP_ANONYMOUS != 0
            && flags & libc::MAP_PRIVATE != 0
            && flags & libc::MAP_LOCKED == 0
            && flags & libc::MAP_HUGETLB == 0
            && status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) == 0
    }
}

/// `status` private-dumpable test (CRIU `vma_entry_is_private` + vvar exclusion).
fn is_private_dumpable(status: u32, end: u64) -> bool {
    if status & VMA_AREA_VVAR != 0 || status & VMA_UNSUPP != 0 {
        return false;
    }
    let regular_private = status & VMA_AREA_REGULAR != 0
        && status & (VMA_ANON_PRIVATE | VMA_FILE_PRIVATE) != 0
        && end <= TASK_SIZE_MAX;
    regular_private || status & (VMA_AREA_SHSTK | VMA_AREA_AIORING) != 0
}

/// CRIU's `vma_entry.status` for `vma` (CRIU-FACTS 3.8): e.g. `[vdso]` → REGULAR|VDSO|ANON_PRIVATE,
/// `[heap]` → REGULAR|HEAP|ANON_PRIVATE, shared anonymous memory → REGULAR|MEMFD|FILE_SHARED,
/// `[vsyscall]` → VSYSCALL|ANON_PRIVATE. VM_IO/VM_PFNMAP areas other than the vvar and shared
/// file mappings get [`VMA_UNSUPP`].
pub fn vma_status_bits(vma: &Vma) -> u32 {
    let shared = vma.flags as i32 & libc::MAP_SHARED != 0;
    let file_bit = if shared {
        VMA_FILE_SHARED
    } else {
        VMA_FILE_PRIVATE
    };
    let anon_bit = if shared {
        VMA_ANON_SHARED
    } else {
        VMA_ANON_PRIVATE
    };
    let mut status = match &vma.kind {
        VmaKind::AnonPrivate | VmaKind::Stack => VMA_AREA_REGULAR | anon_bit,
        VmaKind::AnonShared | VmaKind::Memfd { .. } => VMA_AREA_REGULAR | VMA_AREA_MEMFD | file_bit,
        VmaKind::FilePrivate | VmaKind::FileShared => VMA_AREA_REGULAR | file_bit,
        VmaKind::SysvShm => VMA_AREA_REGULAR | VMA_ANON_SHARED | VMA_AREA_SYSVIPC,
        VmaKind::Heap => VMA_AREA_REGULAR | VMA_AREA_HEAP | anon_bit,
        VmaKind::Vdso => VMA_AREA_REGULAR | VMA_AREA_VDSO | anon_bit,
        VmaKind::Vvar => VMA_AREA_REGULAR | VMA_AREA_VVAR | anon_bit,
        VmaKind::Vsyscall => VMA_AREA_VSYSCALL | anon_bit,
        VmaKind::Uprobes => VMA_AREA_UPROBES | anon_bit,
        VmaKind::AioRing => VMA_AREA_AIORING,
        VmaKind::Special(_) => VMA_AREA_REGULAR | anon_bit,
    };
    if let VmaKind::Special(label) = &vma.kind {
        // Kernel objects mapped through a file CRIU cannot reopen: "anon_inode:[io_uring]",
        // "socket:[123]", ... (CRIU fails on them too). Bracketed names are kernel mappings
        // without a file and are treated as anonymous memory, as CRIU does.
        if vma.inode != 0 || !label.starts_with('[') {
            status |= VMA_UNSUPP;
        }
    }
    if vma.vm_flags.contains(VmFlags::SHADOW_STACK) {
        status |= VMA_AREA_SHSTK;
    }
    let io_or_pfn = vma.vm_flags.contains(VmFlags::IO) || vma.vm_flags.contains(VmFlags::PFNMAP);
    if io_or_pfn
        && !matches!(vma.kind, VmaKind::Vvar | VmaKind::Uprobes)
        && status & VMA_FILE_SHARED == 0
    {
        status |= VMA_UNSUPP;
    }
    status
}

/// Reads and classifies the VMAs of `pid` from `/proc/<pid>/smaps`, merging `[vvar]` and
/// `[vvar_vclock]` into one [`VmaKind::Vvar`] VMA.
pub fn read_vmas(pid: i32) -> Result<Vec<Vma>, VmaError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .map_err(|source| VmaError::Read { pid, source })?;
    parse_smaps(pid, &text)
}

/// Parses the text of `/proc/<pid>/smaps` (or `/proc/<pid>/maps`, which then yields no
/// VmFlags). `pid` only names the source in errors.
pub fn parse_smaps(pid: i32, text: &str) -> Result<Vec<Vma>, VmaError> {
    let shmem_dev = shmem_device();
    let mut vmas: Vec<Vma> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let vma = vmas
                .last_mut()
                .ok_or(VmaError::FlagsWithoutVma { pid, line_no })?;
            apply_vm_flags(vma, VmFlags::parse(flags));
            continue;
        }
        if !is_vma_header(line) {
            continue;
        }
        let vma = parse_header(line, shmem_dev).ok_or_else(|| VmaError::BadHeader {
            pid,
            line_no,
            line: line.to_owned(),
        })?;
        if vma.kind == VmaKind::Vvar {
            if let Some(prev) = vmas.last_mut().filter(|prev| prev.kind == VmaKind::Vvar) {
                if prev.end != vma.start {
                    return Err(VmaError::VvarNotContiguous {
                        pid,
                        first_start: prev.start,
                        first_end: prev.end,
                        second_start: vma.start,
                        second_end: vma.end,
                    });
                }
                prev.end = vma.end;
                continue;
            }
        }
        vmas.push(vma);
    }
    Ok(vmas)
}

/// A VMA header starts with `<hex>-<hex> `; smaps key lines start with a capitalised key.
fn is_vma_header(line: &str) -> bool {
    let Some((range, _)) = line.split_once(' ') else {
        return false;
    };
    let Some((start, end)) = range.split_once('-') else {
        return false;
    };
    !start.is_empty()
        && !end.is_empty()
        && start.bytes().all(|b| b.is_ascii_hexdigit())
        && end.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Splits off the next space-separated field, skipping leading spaces.
fn next_field(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() {
        return None;
    }
    Some(match rest.split_once(' ') {
        Some((field, tail)) => (field, tail),
        None => (rest, ""),
    })
}

fn parse_header(line: &str, shmem_dev: Option<(u32, u32)>) -> Option<Vma> {
    let (range, rest) = next_field(line)?;
    let (perms, rest) = next_field(rest)?;
    let (offset, rest) = next_field(rest)?;
    let (dev, rest) = next_field(rest)?;
    let (inode, rest) = next_field(rest)?;
    // The name column is padded with spaces; a path may itself contain spaces.
    let name = rest.trim_start_matches(' ');

    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end < start {
        return None;
    }
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return None;
    }
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= libc::PROT_READ;
    }
    if perms[1] == b'w' {
        prot |= libc::PROT_WRITE;
    }
    if perms[2] == b'x' {
        prot |= libc::PROT_EXEC;
    }
    let shared = match perms[3] {
        b's' => true,
        b'p' => false,
        _ => return None,
    };
    let pgoff = u64::from_str_radix(offset, 16).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode: u64 = inode.parse().ok()?;

    let (path, label, deleted) = split_name(name);
    let kind = classify(
        shared,
        dev,
        inode,
        path.as_deref(),
        label.as_deref(),
        shmem_dev,
    );
    let mut flags = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    if matches!(
        kind,
        VmaKind::AnonPrivate
            | VmaKind::Stack
            | VmaKind::Heap
            | VmaKind::Vdso
            | VmaKind::Vvar
            | VmaKind::Vsyscall
            | VmaKind::Uprobes
            | VmaKind::SysvShm
            | VmaKind::Special(_)
    ) {
        flags |= libc::MAP_ANONYMOUS;
    }
    Some(Vma {
        start,
        end,
        prot: prot as u32,
        flags: flags as u32,
        pgoff,
        dev,
        inode,
        path,
        label,
        deleted,
        kind,
        vm_flags: VmFlags::default(),
        madv: 0,
    })
}

/// Splits the name column into (path, label, deleted). seq_file escapes `\n` in paths as `\012`.
fn split_name(name: &str) -> (Option<PathBuf>, Option<String>, bool) {
    if name.is_empty() {
        return (None, None, false);
    }
    if !name.starts_with('/') {
        return (None, Some(name.to_owned()), false);
    }
    let (name, deleted) = match name.strip_suffix(" (deleted)") {
        Some(stripped) => (stripped, true),
        None => (name, false),
    };
    (
        Some(PathBuf::from(name.replace("\\012", "\n"))),
        None,
        deleted,
    )
}

fn classify(
    shared: bool,
    dev: (u32, u32),
    inode: u64,
    path: Option<&std::path::Path>,
    label: Option<&str>,
    shmem_dev: Option<(u32, u32)>,
) -> VmaKind {
    if let Some(label) = label {
        return match label {
            "[heap]" => VmaKind::Heap,
            "[stack]" => VmaKind::Stack,
            "[vdso]" => VmaKind::Vdso,
            "[vvar]" | "[vvar_vclock]" => VmaKind::Vvar,
            "[vsyscall]" => VmaKind::Vsyscall,
            "[uprobes]" => VmaKind::Uprobes,
            _ if label.starts_with("[anon:") || label.starts_with("[anon_shmem:") => {
                if inode != 0 || shared {
                    VmaKind::AnonShared
                } else {
                    VmaKind::AnonPrivate
                }
            }
            _ => VmaKind::Special(label.to_owned()),
        };
    }
    let Some(path) = path else {
        return if shared {
            // A shared mapping always has a (shmem) file; be conservative if the name is missing.
            VmaKind::AnonShared
        } else {
            VmaKind::AnonPrivate
        };
    };
    let text = path.to_string_lossy();
    let on_shmem = Some(dev) == shmem_dev || (shmem_dev.is_none() && dev.0 == 0);
    if text == "/[aio]" {
        return VmaKind::AioRing;
    }
    if on_shmem && inode != 0 {
        if text.starts_with("/SYSV") {
            return VmaKind::SysvShm;
        }
        if text.starts_with("/memfd:") {
            return VmaKind::Memfd { shared };
        }
        if text == "/dev/zero" {
            return VmaKind::AnonShared;
        }
        // Any other file on the internal shmem mount is reached through the memfd route too.
        return VmaKind::Memfd { shared };
    }
    if shared {
        VmaKind::FileShared
    } else {
        VmaKind::FilePrivate
    }
}

fn apply_vm_flags(vma: &mut Vma, vm_flags: VmFlags) {
    vma.vm_flags = vm_flags;
    let mut flags = vma.flags as i32;
    let map_flag_sources = [
        (VmFlags::GROWSDOWN, libc::MAP_GROWSDOWN),
        (VmFlags::LOCKED, libc::MAP_LOCKED),
        (VmFlags::NORESERVE, libc::MAP_NORESERVE),
        (VmFlags::HUGETLB, libc::MAP_HUGETLB),
        (VmFlags::DROPPABLE, MAP_DROPPABLE),
    ];
    for (flag, map_flag) in map_flag_sources {
        if vm_flags.contains(flag) {
            flags |= map_flag;
        }
    }
    // MAP_DROPPABLE is its own mapping type; CRIU drops MAP_PRIVATE for it.
    if flags & MAP_DROPPABLE != 0 {
        flags &= !libc::MAP_PRIVATE;
    }
    vma.flags = flags as u32;
    let madv_sources = [
        (VmFlags::SEQ_READ, libc::MADV_SEQUENTIAL),
        (VmFlags::RAND_READ, libc::MADV_RANDOM),
        (VmFlags::DONTCOPY, libc::MADV_DONTFORK),
        (VmFlags::DONTDUMP, libc::MADV_DONTDUMP),
        (VmFlags::MERGEABLE, libc::MADV_MERGEABLE),
        (VmFlags::HUGEPAGE, libc::MADV_HUGEPAGE),
        (VmFlags::NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
        (VmFlags::WIPEONFORK, libc::MADV_WIPEONFORK),
    ];
    let mut madv = 0u64;
    for (flag, advice) in madv_sources {
        if vm_flags.contains(flag) {
            madv |= 1 << advice;
        }
    }
    vma.madv = madv;
}

/// MAP_DROPPABLE (linux/mman.h, 6.11+).
const MAP_DROPPABLE: i32 = 0x08;

/// Device number of the kernel-internal shmem mount (memfds, shared anonymous memory), probed
/// once by creating a memfd. `None` if memfd_create is unavailable.
fn shmem_device() -> Option<(u32, u32)> {
    static DEVICE: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *DEVICE.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let memfd = crate::sys::memfd_create(c"criu-pages-shmem-probe").ok()?;
        let dev = memfd.metadata().ok()?.dev();
        Some((libc::major(dev), libc::minor(dev)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 1234                       /usr/bin/my prog (deleted)
Size:                  8 kB
VmFlags: rd mr mw me dw sd
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]
VmFlags: rd wr mr mw me ac hg
7f0000000000-7f0000001000 rw-s 00000000 00:01 77                         /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms dd
7f0000001000-7f0000002000 rw-s 00000000 00:01 78                         /memfd:buf\\012x (deleted)
7f0000002000-7f0000003000 rw-p 00000000 00:01 79                         /SYSV00000001 (deleted)
7f0000003000-7f0000004000 rw-p 00000000 00:00 0                          [anon:my name]
VmFlags: rd wr mr mw me ac dc wf lo nr dp
7f0000004000-7f0000005000 ---p 00000000 00:00 0 
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac
7ffd00100000-7ffd00104000 r--p 00000000 00:00 0                          [vvar]
VmFlags: rd mr pf io de dd
7ffd00104000-7ffd00106000 r--p 00000000 00:00 0                          [vvar_vclock]
VmFlags: rd mr pf io de dd
7ffd00106000-7ffd00108000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    fn parse(text: &str) -> Vec<Vma> {
        parse_smaps(1, text).expect("parse")
    }

    #[test]
    fn parses_paths_with_spaces_deleted_and_escaped_newlines() {
        let vmas = parse(SMAPS);
        assert_eq!(vmas[0].path.as_deref(), Some(Path::new("/usr/bin/my prog")));
        assert!(vmas[0].deleted);
        assert_eq!(vmas[0].dev, (0xfe, 0));
        assert_eq!(vmas[0].inode, 1234);
        assert_eq!(vmas[0].kind, VmaKind::FilePrivate);
        assert_eq!(vmas[0].prot as i32, libc::PROT_READ);
        assert_eq!(vmas[3].path.as_deref(), Some(Path::new("/memfd:buf\nx")));
    }

    #[test]
    fn classifies_shmem_backed_mappings_by_name_on_the_shmem_device() {
        // This machine's internal shmem mount is device 00:01 (as smaps shows for /dev/zero).
        assert_eq!(shmem_device(), Some((0, 1)));
        let vmas = parse(SMAPS);
        assert_eq!(vmas[2].kind, VmaKind::AnonShared);
        assert_eq!(vmas[3].kind, VmaKind::Memfd { shared: true });
        assert_eq!(vmas[4].kind, VmaKind::SysvShm);
        assert_eq!(
            vmas[2].status(),
            VMA_AREA_REGULAR | VMA_AREA_MEMFD | VMA_FILE_SHARED
        );
        assert_eq!(vmas[3].flags as i32, libc::MAP_SHARED);
    }

    #[test]
    fn vm_flags_become_map_flags_and_madvise_bits() {
        let vmas = parse(SMAPS);
        let heap = &vmas[1];
        assert_eq!(heap.kind, VmaKind::Heap);
        assert_eq!(heap.madv, 1 << libc::MADV_HUGEPAGE);
        assert!(heap.vm_flags.contains(VmFlags::HUGEPAGE | VmFlags::WRITE));
        let named = &vmas[5];
        assert_eq!(named.kind, VmaKind::AnonPrivate);
        assert_eq!(named.label.as_deref(), Some("[anon:my name]"));
        assert_eq!(
            named.madv,
            1 << libc::MADV_DONTFORK | 1 << libc::MADV_WIPEONFORK
        );
        // MAP_DROPPABLE replaces MAP_PRIVATE, as in CRIU.
        assert_eq!(
            named.flags as i32,
            libc::MAP_ANONYMOUS | libc::MAP_LOCKED | libc::MAP_NORESERVE | MAP_DROPPABLE
        );
        assert!(!named.can_be_lazy(), "locked memory is not lazy");
        let guard_like = &vmas[6];
        assert_eq!(guard_like.prot, 0);
        assert_eq!(guard_like.label, None);
        assert_eq!(guard_like.kind, VmaKind::AnonPrivate);
        let stack = &vmas[7];
        assert_eq!(
            stack.flags as i32,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN
        );
    }

    #[test]
    fn merges_vvar_and_vvar_vclock() {
        let vmas = parse(SMAPS);
        let vvar = vmas.iter().find(|vma| vma.kind == VmaKind::Vvar).unwrap();
        assert_eq!((vvar.start, vvar.end), (0x7ffd00100000, 0x7ffd00106000));
        assert_eq!(
            vmas.iter().filter(|vma| vma.kind == VmaKind::Vvar).count(),
            1
        );
        // pf/io on the vvar is expected and not "unsupported".
        assert_eq!(
            vvar.status(),
            VMA_AREA_REGULAR | VMA_AREA_VVAR | VMA_ANON_PRIVATE
        );
        assert_eq!(vvar.madv, 1 << libc::MADV_DONTDUMP);
        assert_eq!(vmas.len(), 11);
    }

    #[test]
    fn rejects_nonadjacent_vvars() {
        let text = "\
7ffd00100000-7ffd00104000 r--p 00000000 00:00 0                          [vvar]
7ffd00105000-7ffd00106000 r--p 00000000 00:00 0                          [vvar_vclock]
";
        match parse_smaps(42, text) {
            Err(VmaError::VvarNotContiguous {
                pid: 42,
                first_end: 0x7ffd00104000,
                second_start: 0x7ffd00105000,
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn status_bits_of_special_mappings() {
        let vmas = parse(SMAPS);
        let vdso = vmas.iter().find(|vma| vma.kind == VmaKind::Vdso).unwrap();
        assert_eq!(
            vdso.status(),
            VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE
        );
        assert!(vdso.dumps_private_pages() && vdso.dumps_entire_vma());
        let vsyscall = vmas.last().unwrap();
        assert_eq!(vsyscall.kind, VmaKind::Vsyscall);
        assert_eq!(vsyscall.status(), VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE);
        assert_eq!(
            vsyscall.flags as i32,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS
        );
        assert!(!vsyscall.dumps_private_pages());
        assert!(
            !vmas[2].dumps_private_pages(),
            "shared memory goes the memfd way"
        );
    }

    #[test]
    fn mapped_kernel_objects_are_unsupported() {
        let text = "\
7f0000000000-7f0000001000 rw-s 00000000 00:0f 2080                       anon_inode:[io_uring]
7f0000001000-7f0000002000 r--p 00000000 00:00 0                          [vectors]
";
        let vmas = parse(text);
        assert_eq!(
            vmas[0].kind,
            VmaKind::Special("anon_inode:[io_uring]".into())
        );
        assert_ne!(vmas[0].status() & VMA_UNSUPP, 0);
        assert_eq!(vmas[1].status(), VMA_AREA_REGULAR | VMA_ANON_PRIVATE);
    }

    #[test]
    fn io_mappings_are_unsupported() {
        let text = "\
7f0000000000-7f0000001000 rw-p 00000000 00:05 9                          /dev/mydev
VmFlags: rd wr mr mw me io pf
";
        let vma = &parse(text)[0];
        assert_ne!(vma.status() & VMA_UNSUPP, 0);
        assert!(!vma.dumps_private_pages());
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        assert!(matches!(
            parse_smaps(7, "VmFlags: rd\n"),
            Err(VmaError::FlagsWithoutVma { pid: 7, line_no: 1 })
        ));
        assert!(matches!(
            parse_smaps(7, "1000-2000 rw-x 00000000 00:00 0\n"),
            Err(VmaError::BadHeader {
                pid: 7,
                line_no: 1,
                ..
            })
        ));
        assert!(matches!(
            parse_smaps(7, "2000-1000 rw-p 00000000 00:00 0\n"),
            Err(VmaError::BadHeader { .. })
        ));
        assert!(matches!(
            parse_smaps(7, "1000-2000 rw-p 00000000 00:00\n"),
            Err(VmaError::BadHeader { .. })
        ));
        // Key lines are skipped, not mistaken for headers.
        assert!(parse_smaps(7, "Size: 4 kB\nRss: 0 kB\n")
            .unwrap()
            .is_empty());
    }

    use std::path::Path;
}
