//! Address-space planning: where the trampoline goes, which ranges of the
//! blank child are unmapped, and how the running kernel's vvar/vdso get to the
//! dumped addresses.

use std::ops::Range;

use criu_proto::VmaEntry;

use crate::images::{status, PAGE_SIZE, TASK_SIZE};

/// Pages of the trampoline region: one page of code, the rest scratch.
pub(crate) const TRAMPOLINE_PAGES: u64 = 16;
/// Bytes of the trampoline region.
pub(crate) const TRAMPOLINE_LEN: u64 = TRAMPOLINE_PAGES * PAGE_SIZE;
/// Lowest address the planner hands out (above mmap_min_addr, away from NULL).
const LOWEST_HOLE: u64 = 0x10_0000;

/// The address space could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// /proc/PID/maps could not be read.
    #[error("reading /proc/{pid}/maps: {source}")]
    Maps {
        /// The process.
        pid: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No free range of the needed size exists.
    #[error("no free {len:#x}-byte range in the address space for the {what}")]
    NoHole {
        /// The size.
        len: u64,
        /// What it was for.
        what: &'static str,
    },
    /// The running kernel's vdso is not like the dumped one.
    #[error("the vdso/vvar of the running kernel ({running}) differ from the dumped ones ({dumped}); a vdso proxy is not supported")]
    VdsoMismatch {
        /// Running layout.
        running: String,
        /// Dumped layout.
        dumped: String,
    },
}

/// One line of /proc/PID/maps: the range and the name (`[vdso]`, a path, or empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapsLine {
    /// The address range.
    pub range: Range<u64>,
    /// The pathname column.
    pub name: String,
}

/// Parses /proc/`pid`/maps (`pid` may be `"self"`).
pub(crate) fn read_maps(pid: &str) -> Result<Vec<MapsLine>, LayoutError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
        LayoutError::Maps {
            pid: pid.to_string(),
            source,
        }
    })?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let (start, end) = range.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            let name = fields.nth(4).unwrap_or("").trim().to_string();
            Some(MapsLine {
                range: start..end,
                name,
            })
        })
        .collect())
}

/// Finds a free range of `len` bytes (plus a guard page on each side) that
/// overlaps none of `occupied`, searching from the top of the address space.
pub(crate) fn find_hole(
    occupied: &[Range<u64>],
    len: u64,
    what: &'static str,
) -> Result<u64, LayoutError> {
    let mut ranges: Vec<Range<u64>> = occupied
        .iter()
        .filter(|r| r.start < TASK_SIZE)
        .cloned()
        .collect();
    ranges.sort_by_key(|r| r.start);
    let needed = len + 2 * PAGE_SIZE;
    // Walk the gaps from the highest down.
    let mut top = TASK_SIZE - 0x1000_0000; // stay clear of the stack top
    for range in ranges.iter().rev() {
        if range.end <= top && top - range.end >= needed {
            return Ok(top - PAGE_SIZE - len);
        }
        top = top.min(range.start);
    }
    if top >= LOWEST_HOLE + needed {
        return Ok(top - PAGE_SIZE - len);
    }
    Err(LayoutError::NoHole { len, what })
}

/// The running kernel's vvar, vvar_vclock and vdso in a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VdsoLayout {
    /// `[vvar]` and, contiguous after it, `[vvar_vclock]` (the latter may be empty).
    pub vvar: Range<u64>,
    /// `[vvar_vclock]`.
    pub vclock: Range<u64>,
    /// `[vdso]`.
    pub vdso: Range<u64>,
}

impl VdsoLayout {
    /// Finds the special mappings in a maps listing.
    pub fn from_maps(maps: &[MapsLine]) -> Option<VdsoLayout> {
        let find = |name: &str| {
            maps.iter()
                .find(|m| m.name == name)
                .map(|m| m.range.clone())
        };
        let vvar = find("[vvar]")?;
        let vdso = find("[vdso]")?;
        let vclock = find("[vvar_vclock]").unwrap_or(vvar.end..vvar.end);
        Some(VdsoLayout { vvar, vclock, vdso })
    }

    /// The whole span (vvar start to vdso end, whatever order).
    pub fn span(&self) -> Range<u64> {
        let start = self.vvar.start.min(self.vdso.start);
        let end = self.vclock.end.max(self.vdso.end).max(self.vvar.end);
        start..end
    }

    fn describe(&self) -> String {
        format!(
            "vvar {:#x}+{:#x}, vvar_vclock +{:#x}, vdso {:#x}+{:#x}",
            self.vvar.start,
            self.vvar.end - self.vvar.start,
            self.vclock.end - self.vclock.start,
            self.vdso.start,
            self.vdso.end - self.vdso.start
        )
    }
}

/// Where the running vvar/vclock/vdso must go: each (from, len, to).
pub(crate) type VdsoMoves = Vec<(u64, u64, u64)>;

/// Plans the moves of the running vvar/vvar_vclock/vdso onto the dumped
/// `[vvar]` (one merged VMA in CRIU images) and `[vdso]`. `None` if the dump
/// has no vdso (the running one is then unmapped with the rest).
pub(crate) fn plan_vdso(
    running: &VdsoLayout,
    vmas: &[VmaEntry],
) -> Result<Option<VdsoMoves>, LayoutError> {
    let dumped_vdso = vmas
        .iter()
        .find(|v| v.status & status::VDSO != 0 && v.status & status::VVAR == 0);
    let dumped_vvar = vmas.iter().find(|v| v.status & status::VVAR != 0);
    let Some(vdso) = dumped_vdso else {
        return Ok(None);
    };
    let len = |r: &Range<u64>| r.end - r.start;
    let running_vvar_len = len(&running.vvar) + len(&running.vclock);
    let mismatch = || LayoutError::VdsoMismatch {
        running: running.describe(),
        dumped: format!(
            "vvar {}, vdso {:#x}+{:#x}",
            dumped_vvar.map_or("none".to_string(), |v| format!(
                "{:#x}+{:#x}",
                v.start,
                v.end - v.start
            )),
            vdso.start,
            vdso.end - vdso.start
        ),
    };
    if vdso.end - vdso.start != len(&running.vdso) {
        return Err(mismatch());
    }
    let mut moves = vec![(running.vdso.start, len(&running.vdso), vdso.start)];
    match dumped_vvar {
        Some(vvar) => {
            if vvar.end - vvar.start != running_vvar_len
                || vdso.start.wrapping_sub(vvar.start)
                    != running.vdso.start.wrapping_sub(running.vvar.start)
            {
                return Err(mismatch());
            }
            moves.push((running.vvar.start, len(&running.vvar), vvar.start));
            if len(&running.vclock) > 0 {
                moves.push((
                    running.vclock.start,
                    len(&running.vclock),
                    vvar.start + len(&running.vvar),
                ));
            }
        }
        None => return Err(mismatch()),
    }
    Ok(Some(moves))
}

/// The ranges to unmap so that only `keep` remains below TASK_SIZE.
pub(crate) fn complement(keep: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut keep: Vec<Range<u64>> = keep.iter().filter(|r| r.start < r.end).cloned().collect();
    keep.sort_by_key(|r| r.start);
    let mut out = Vec::new();
    let mut at = 0u64;
    for range in keep {
        if range.start > at {
            out.push(at..range.start);
        }
        at = at.max(range.end);
    }
    if at < TASK_SIZE {
        out.push(at..TASK_SIZE);
    }
    out
}

/// Whether two ranges overlap.
pub(crate) fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_leaves_only_the_kept_ranges() {
        let keep = [0x5000..0x6000, 0x1000..0x2000];
        assert_eq!(
            complement(&keep),
            vec![0..0x1000, 0x2000..0x5000, 0x6000..TASK_SIZE]
        );
    }

    #[test]
    fn hole_avoids_every_occupied_range() {
        let top = TASK_SIZE - 0x1000_0000;
        let occupied = [top - 0x10000..top, 0x1000..0x2000];
        let hole = find_hole(&occupied, 0x4000, "test").unwrap();
        let range = hole..hole + 0x4000;
        assert!(occupied.iter().all(|o| !overlaps(o, &range)));
        assert!(hole + 0x4000 <= top - 0x10000);
    }

    #[test]
    fn vdso_plan_refuses_a_different_vdso_size() {
        let running = VdsoLayout {
            vvar: 0x1000..0x5000,
            vclock: 0x5000..0x7000,
            vdso: 0x7000..0x9000,
        };
        let vdso = VmaEntry {
            start: 0x20000,
            end: 0x23000,
            status: status::VDSO | status::REGULAR,
            ..Default::default()
        };
        assert!(matches!(
            plan_vdso(&running, &[vdso]),
            Err(LayoutError::VdsoMismatch { .. })
        ));
    }

    #[test]
    fn vdso_plan_moves_all_three_pieces() {
        let running = VdsoLayout {
            vvar: 0x1000..0x5000,
            vclock: 0x5000..0x7000,
            vdso: 0x7000..0x9000,
        };
        let vvar = VmaEntry {
            start: 0x20000,
            end: 0x26000,
            status: status::VVAR | status::REGULAR,
            ..Default::default()
        };
        let vdso = VmaEntry {
            start: 0x26000,
            end: 0x28000,
            status: status::VDSO | status::REGULAR,
            ..Default::default()
        };
        let moves = plan_vdso(&running, &[vvar, vdso]).unwrap().unwrap();
        assert_eq!(
            moves,
            vec![
                (0x7000, 0x2000, 0x26000),
                (0x1000, 0x4000, 0x20000),
                (0x5000, 0x2000, 0x24000)
            ]
        );
    }
}
