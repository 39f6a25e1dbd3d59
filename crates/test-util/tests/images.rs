//! Page kinds and dump statistics read back from images written with
//! criu-image's own writers.

use std::collections::BTreeSet;
use std::path::Path;

use criu_image::inventory::write_dump_stats;
use criu_image::{
    ImageDir, PagemapTarget, PagemapWriter, PagesIdAllocator, PAGE_SIZE, PE_LAZY, PE_PARENT,
    PE_PRESENT,
};
use criu_proto::DumpStatsEntry;
use criu_test_util::images::{dump_stats, PageKinds};

const BASE: u64 = 0x7f00_0000_0000;
const PID: i32 = 42;

/// Writes `pagemap-42.img` with the runs `write` adds.
fn write_pagemap(dir: &Path, write: impl FnOnce(&mut PagemapWriter)) {
    let images = ImageDir::open(dir).unwrap();
    let ids = PagesIdAllocator::new();
    let mut writer =
        PagemapWriter::create(&images, PagemapTarget::Process(PID as u32), &ids).unwrap();
    write(&mut writer);
    writer.finish().unwrap();
}

fn pages(indexes: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
    indexes.into_iter().map(|i| BASE + i * PAGE_SIZE).collect()
}

#[test]
fn data_and_parent_pages_are_split_and_can_be_cut_to_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let page = vec![7u8; PAGE_SIZE as usize];
    write_pagemap(dir.path(), |writer| {
        writer
            .add_pages(BASE, &[page.clone(), page.clone()].concat())
            .unwrap();
        writer
            .add_pages_flagged(BASE + 2 * PAGE_SIZE, &page, PE_PRESENT | PE_LAZY)
            .unwrap();
        writer
            .add_hole(BASE + 10 * PAGE_SIZE, 3, PE_PARENT)
            .unwrap();
    });
    let kinds = PageKinds::read(dir.path(), PID);
    assert_eq!(kinds.data, pages(0..3));
    assert_eq!(kinds.parent, pages(10..13));
    let cut = kinds.within(BASE + PAGE_SIZE..BASE + 11 * PAGE_SIZE);
    assert_eq!(cut.data, pages(1..3));
    assert_eq!(cut.parent, pages([10]));
}

#[test]
#[should_panic(expected = "a hole carries PE_PARENT only")]
fn a_parent_hole_with_another_flag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_pagemap(dir.path(), |writer| {
        writer.add_hole(BASE, 1, PE_PARENT | PE_LAZY).unwrap();
    });
    PageKinds::read(dir.path(), PID);
}

#[test]
#[should_panic(expected = "has PE_PRESENT")]
fn a_lazy_hole_is_neither_data_nor_parent() {
    let dir = tempfile::tempdir().unwrap();
    write_pagemap(dir.path(), |writer| {
        writer.add_hole(BASE, 1, PE_LAZY).unwrap();
    });
    PageKinds::read(dir.path(), PID);
}

#[test]
#[should_panic(expected = "no pagemap-42.img")]
fn a_missing_pagemap_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    PageKinds::read(dir.path(), PID);
}

#[test]
fn dump_stats_are_the_dump_part_of_stats_dump() {
    let dir = tempfile::tempdir().unwrap();
    let written = DumpStatsEntry {
        pages_written: 12,
        pages_skipped_parent: 34,
        ..DumpStatsEntry::default()
    };
    write_dump_stats(&ImageDir::open(dir.path()).unwrap(), &written).unwrap();
    let read = dump_stats(dir.path());
    assert_eq!(read.pages_written, 12);
    assert_eq!(read.pages_skipped_parent, 34);
}

#[test]
#[should_panic(expected = "no dump stats")]
fn missing_dump_stats_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    dump_stats(dir.path());
}
