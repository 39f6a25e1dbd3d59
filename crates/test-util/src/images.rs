//! What a dump wrote, as incremental-dump tests check it: per page of a
//! process, whether this dump holds its data or leaves it in the parent
//! images, and the dump statistics.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use criu_image::inventory::read_stats;
use criu_image::{
    ImageDir, ImageKind, PagemapReader, PagemapTarget, PAGE_SIZE, PE_PARENT, PE_PRESENT,
};
use criu_proto::DumpStatsEntry;

/// The pages of one process's pagemap, by page address, split by where
/// their contents are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageKinds {
    /// Pages whose data this dump's pages image holds (PE_PRESENT, possibly
    /// with PE_LAZY).
    pub data: BTreeSet<u64>,
    /// Pages left in the parent images (a PE_PARENT hole).
    pub parent: BTreeSet<u64>,
}

impl PageKinds {
    /// Reads `pagemap-PID.img` in `dir`.
    ///
    /// Panics when there is none, when it does not read, and on a run that
    /// is neither data (PE_PRESENT) nor a hole carrying PE_PARENT and no
    /// other flag: a (pre-)dump never writes one, so it is a bug to report,
    /// not a page to count on either side.
    pub fn read(dir: &Path, pid: i32) -> PageKinds {
        let images = ImageDir::open(dir)
            .unwrap_or_else(|e| panic!("open images dir {}: {e}", dir.display()));
        let mut reader = PagemapReader::open(&images, PagemapTarget::Process(pid as u32))
            .unwrap_or_else(|e| panic!("pagemap-{pid}.img in {}: {e}", dir.display()))
            .unwrap_or_else(|| panic!("no pagemap-{pid}.img in {}", dir.display()));
        let runs = reader
            .read_all()
            .unwrap_or_else(|e| panic!("pagemap-{pid}.img in {}: {e}", dir.display()));
        let mut kinds = PageKinds::default();
        for run in runs {
            let set = if run.flags & PE_PARENT != 0 {
                assert_eq!(
                    run.flags, PE_PARENT,
                    "a hole carries PE_PARENT only (run at {:#x})",
                    run.vaddr
                );
                &mut kinds.parent
            } else {
                assert!(
                    run.flags & PE_PRESENT != 0,
                    "a run that is not in the parent has PE_PRESENT (run at {:#x}, flags {:#x})",
                    run.vaddr,
                    run.flags
                );
                &mut kinds.data
            };
            set.extend((0..run.nr_pages).map(|i| run.vaddr + i * PAGE_SIZE));
        }
        kinds
    }

    /// The pages whose address lies in `range`.
    pub fn within(&self, range: Range<u64>) -> PageKinds {
        PageKinds {
            data: self.data.range(range.clone()).copied().collect(),
            parent: self.parent.range(range).copied().collect(),
        }
    }
}

/// The `dump` part of `stats-dump.img` in `dir`; panics when it is missing
/// or has no dump statistics.
pub fn dump_stats(dir: &Path) -> DumpStatsEntry {
    let images =
        ImageDir::open(dir).unwrap_or_else(|e| panic!("open images dir {}: {e}", dir.display()));
    read_stats(&images, ImageKind::StatsDump)
        .unwrap_or_else(|e| panic!("stats-dump.img in {}: {e}", dir.display()))
        .and_then(|stats| stats.dump)
        .unwrap_or_else(|| panic!("no dump stats in {}", dir.display()))
}
