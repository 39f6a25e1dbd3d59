//! Shared memory objects of a live process, read through /proc/PID/map_files.

mod common;

use common::{Testee, PAGE};
use criu_pages::{read_shmem_pages, read_vmas, shmem_data_ranges, PageRange, VecSink, VmaKind};

#[test]
fn shmem_pages_are_the_written_data_segments() {
    let testee = Testee::layout();
    let pid = testee.pid();
    let (start, len) = testee.region("shmemholes");
    let vmas = read_vmas(pid).unwrap();
    let vma = vmas.iter().find(|vma| vma.start == start).unwrap();
    assert_eq!(vma.kind, VmaKind::AnonShared);
    let file =
        std::fs::File::open(format!("/proc/{pid}/map_files/{}", vma.map_files_name())).unwrap();

    let ranges = shmem_data_ranges(&file, len).unwrap();
    assert_eq!(
        ranges,
        vec![PageRange::new(PAGE, 1), PageRange::new(5 * PAGE, 2)]
    );
    // Limiting the size cuts the ranges.
    assert_eq!(
        shmem_data_ranges(&file, 6 * PAGE).unwrap(),
        vec![PageRange::new(PAGE, 1), PageRange::new(5 * PAGE, 1)]
    );

    let mut sink = VecSink::new();
    let stats = read_shmem_pages(&file, &ranges, PAGE as usize, &mut sink).unwrap();
    assert_eq!(stats.pages, 3);
    assert_eq!(sink.ranges(), ranges);
    for page in [1u64, 5, 6] {
        let data = sink.page(page * PAGE).unwrap();
        assert!(data.iter().all(|b| *b == 0x80 + page as u8), "page {page}");
    }
}
