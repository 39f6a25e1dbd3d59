//! Pagemap and pages images: writing, merging, reading back, and resolving
//! PE_PARENT runs through chains of real `parent` symlinks.

use std::io::{IoSlice, Write};
use std::os::fd::AsFd;
use std::path::Path;

use criu_image::{
    ImageDir, ImageKind, PageRead, PagemapError, PagemapReader, PagemapTarget, PagemapWriter,
    PagesIdAllocator, PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT,
};
use criu_proto::{PagemapEntry, PagemapHead};

const BASE: u64 = 0x7f00_0000_0000;

fn page(fill: u8) -> Vec<u8> {
    vec![fill; PAGE_SIZE as usize]
}

fn pages(fills: &[u8]) -> Vec<u8> {
    fills.iter().flat_map(|f| page(*f)).collect()
}

fn make_dir(root: &Path, name: &str, parent: Option<&str>) -> ImageDir {
    std::fs::create_dir(root.join(name)).unwrap();
    let dir = ImageDir::open(root.join(name)).unwrap();
    if let Some(parent) = parent {
        dir.set_parent(format!("../{parent}")).unwrap();
    }
    dir
}

#[test]
fn adjacent_runs_merge_and_read_back_with_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let ids = PagesIdAllocator::new();
    let mut writer = PagemapWriter::create(&dir, PagemapTarget::Process(42), &ids).unwrap();
    assert_eq!(writer.pages_id(), 1);
    writer.add_pages(BASE, &page(1)).unwrap();
    writer.add_pages(BASE + PAGE_SIZE, &pages(&[2, 3])).unwrap(); // merges
    writer
        .add_pages_flagged(BASE + 3 * PAGE_SIZE, &page(4), PE_PRESENT | PE_LAZY)
        .unwrap(); // new flags
    writer
        .add_hole(BASE + 10 * PAGE_SIZE, 5, PE_PARENT)
        .unwrap();
    writer.add_pages(BASE + 20 * PAGE_SIZE, &page(5)).unwrap();
    let stats = writer.finish().unwrap();
    assert_eq!(stats.pages_written, 5);
    assert_eq!(stats.pages_in_parent, 5);
    assert_eq!(stats.pages_lazy, 1);
    assert_eq!(stats.entries, 4);

    // The raw entries are what CRIU 4.2 writes: flags + nr_pages, compat 0.
    let mut raw = dir.reader(ImageKind::Pagemap, 42).unwrap();
    assert_eq!(
        raw.next_entry::<PagemapHead>().unwrap(),
        Some(PagemapHead { pages_id: 1 })
    );
    let first: PagemapEntry = raw.next_entry().unwrap().unwrap();
    assert_eq!(
        first,
        PagemapEntry {
            vaddr: BASE,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(PE_PRESENT),
            nr_pages: Some(3)
        }
    );

    let mut reader = PagemapReader::open(&dir, PagemapTarget::Process(42))
        .unwrap()
        .unwrap();
    let runs = reader.read_all().unwrap();
    let summary: Vec<_> = runs
        .iter()
        .map(|r| (r.vaddr, r.nr_pages, r.flags, r.pages_offset))
        .collect();
    assert_eq!(
        summary,
        vec![
            (BASE, 3, PE_PRESENT, Some(0)),
            (
                BASE + 3 * PAGE_SIZE,
                1,
                PE_PRESENT | PE_LAZY,
                Some(3 * PAGE_SIZE)
            ),
            (BASE + 10 * PAGE_SIZE, 5, PE_PARENT, None),
            (BASE + 20 * PAGE_SIZE, 1, PE_PRESENT, Some(4 * PAGE_SIZE)),
        ]
    );
    assert_eq!(
        std::fs::read(tmp.path().join("pages-1.img")).unwrap(),
        pages(&[1, 2, 3, 4, 5])
    );
}

#[test]
fn empty_pagemap_still_creates_both_images() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let writer = PagemapWriter::new(&dir, PagemapTarget::Process(7), 9).unwrap();
    writer.finish().unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("pages-9.img")).unwrap().len(),
        0
    );
    let mut reader = PagemapReader::open(&dir, PagemapTarget::Process(7))
        .unwrap()
        .unwrap();
    assert_eq!(reader.pages_id(), 9);
    assert!(reader.next_run().unwrap().is_none());
    assert!(PagemapReader::open(&dir, PagemapTarget::Process(8))
        .unwrap()
        .is_none());
}

#[test]
fn pages_ids_are_shared_between_process_and_shmem_pagemaps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let ids = PagesIdAllocator::new();
    let mut process = PagemapWriter::create(&dir, PagemapTarget::Process(1), &ids).unwrap();
    let mut shmem = PagemapWriter::create(&dir, PagemapTarget::Shmem(123456), &ids).unwrap();
    process.add_pages(BASE, &page(1)).unwrap();
    shmem.add_pages(0, &pages(&[8, 9])).unwrap();
    process.finish().unwrap();
    shmem.finish().unwrap();
    assert!(tmp.path().join("pagemap-shmem-123456.img").exists());
    let shm = PageRead::open(&dir, PagemapTarget::Shmem(123456))
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; 2 * PAGE_SIZE as usize];
    shm.read_pages(0, &mut buf).unwrap();
    assert_eq!(buf, pages(&[8, 9]));
    assert_eq!(shm.pages_file_name(0), Some("pages-2.img"));
    assert_eq!(
        PagesIdAllocator::starting_at(1 + 0x10000).allocate(),
        0x10001
    );
}

#[test]
fn parent_runs_resolve_through_two_levels() {
    let tmp = tempfile::tempdir().unwrap();
    let one = make_dir(tmp.path(), "1", None);
    let two = make_dir(tmp.path(), "2", Some("1"));
    let three = make_dir(tmp.path(), "3", Some("2"));
    let target = PagemapTarget::Process(100);

    // 1: pages A..A+4 = [1,2,3,4]
    let mut w = PagemapWriter::new(&one, target, 1).unwrap();
    w.add_pages(BASE, &pages(&[1, 2, 3, 4])).unwrap();
    w.finish().unwrap();
    // 2: A..A+2 unchanged (parent), A+2..A+4 rewritten [30,40]
    let mut w = PagemapWriter::new(&two, target, 1).unwrap();
    w.add_hole(BASE, 2, PE_PARENT).unwrap();
    w.add_pages(BASE + 2 * PAGE_SIZE, &pages(&[30, 40]))
        .unwrap();
    w.finish().unwrap();
    // 3: A..A+3 parent, A+3 rewritten [44], plus a new page far away
    let mut w = PagemapWriter::new(&three, target, 1).unwrap();
    w.add_hole(BASE, 3, PE_PARENT).unwrap();
    w.add_pages(BASE + 3 * PAGE_SIZE, &page(44)).unwrap();
    w.add_pages(BASE + 100 * PAGE_SIZE, &page(99)).unwrap();
    w.finish().unwrap();

    let read = PageRead::open(&three, target).unwrap().unwrap();
    assert_eq!(read.depth(), 3);
    assert_eq!(read.pages_file_name(2), Some("parent/parent/pages-1.img"));
    let mut buf = vec![0u8; 4 * PAGE_SIZE as usize];
    read.read_pages(BASE, &mut buf).unwrap();
    assert_eq!(buf, pages(&[1, 2, 30, 44]));

    let segments = read.segments().unwrap();
    let summary: Vec<_> = segments
        .iter()
        .map(|s| (s.vaddr, s.len / PAGE_SIZE, s.level, s.offset))
        .collect();
    assert_eq!(
        summary,
        vec![
            (BASE, 2, 2, 0),
            (BASE + 2 * PAGE_SIZE, 1, 1, 0),
            (BASE + 3 * PAGE_SIZE, 1, 0, 0),
            (BASE + 100 * PAGE_SIZE, 1, 0, PAGE_SIZE),
        ]
    );
    // The tuples point into real files: pread through them gives the data.
    use std::os::unix::fs::FileExt;
    let mut one_page = page(0);
    segments[1]
        .file
        .read_exact_at(&mut one_page, segments[1].offset)
        .unwrap();
    assert_eq!(one_page, page(30));
}

#[test]
fn parent_range_missing_from_parent_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let one = make_dir(tmp.path(), "1", None);
    let two = make_dir(tmp.path(), "2", Some("1"));
    let target = PagemapTarget::Process(5);
    let mut w = PagemapWriter::new(&one, target, 1).unwrap();
    w.add_pages(BASE, &page(1)).unwrap();
    w.finish().unwrap();
    let mut w = PagemapWriter::new(&two, target, 1).unwrap();
    w.add_hole(BASE, 2, PE_PARENT).unwrap();
    w.finish().unwrap();
    let read = PageRead::open(&two, target).unwrap().unwrap();
    let err = read.segments().unwrap_err();
    assert!(
        matches!(err, PagemapError::NotInParent { vaddr, end, .. } if vaddr == BASE + PAGE_SIZE && end == BASE + 2 * PAGE_SIZE),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(
            "pagemap-5.img: pages 0x7f0000001000..0x7f0000002000 are marked PE_PARENT"
        ),
        "{err}"
    );

    // Without any parent directory at all.
    let lone = make_dir(tmp.path(), "lone", None);
    let mut w = PagemapWriter::new(&lone, target, 1).unwrap();
    w.add_hole(BASE, 1, PE_PARENT).unwrap();
    w.finish().unwrap();
    let read = PageRead::open(&lone, target).unwrap().unwrap();
    assert!(matches!(
        read.segments(),
        Err(PagemapError::NotInParent { .. })
    ));
    // A range outside the pagemap.
    assert!(matches!(
        read.resolve(BASE + 50 * PAGE_SIZE, 1),
        Err(PagemapError::NotInPagemap { .. })
    ));
}

#[test]
fn writer_rejects_bad_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut w = PagemapWriter::new(&dir, PagemapTarget::Process(1), 1).unwrap();
    assert!(matches!(
        w.add_pages(BASE + 1, &page(0)),
        Err(PagemapError::Unaligned { .. })
    ));
    assert!(matches!(
        w.add_pages(BASE, &[0u8; 100]),
        Err(PagemapError::Unaligned { .. })
    ));
    assert!(matches!(
        w.add_pages(BASE, &[]),
        Err(PagemapError::Unaligned { .. })
    ));
    assert!(matches!(
        w.add_pages_flagged(BASE, &page(0), PE_PARENT),
        Err(PagemapError::BadFlags { .. })
    ));
    assert!(matches!(
        w.add_hole(BASE, 1, PE_PRESENT),
        Err(PagemapError::BadFlags { .. })
    ));
    assert!(matches!(
        w.add_hole(BASE, 1, 0),
        Err(PagemapError::BadFlags { .. })
    ));
    assert!(matches!(
        w.add_hole(BASE, u64::MAX, PE_PARENT),
        Err(PagemapError::Overflow { .. })
    ));
    w.add_pages(BASE + 4 * PAGE_SIZE, &page(1)).unwrap();
    let err = w.add_pages(BASE, &page(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pagemap-1.img: run at 0x7f0000000000 starts before the end 0x7f0000005000 of the previous run"
    );
    assert_eq!(w.finish().unwrap().pages_written, 1);
}

#[test]
fn reader_applies_criu_compat_rules_and_rejects_nonsense() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut w = dir.writer(ImageKind::Pagemap, 3).unwrap();
    w.write_entry(&PagemapHead { pages_id: 4 }).unwrap();
    // Old writer: no flags, 32-bit count only → PE_PRESENT, compat count.
    w.write_entry(&PagemapEntry {
        vaddr: BASE,
        compat_nr_pages: 2,
        ..Default::default()
    })
    .unwrap();
    // Legacy in_parent.
    w.write_entry(&PagemapEntry {
        vaddr: BASE + 2 * PAGE_SIZE,
        compat_nr_pages: 1,
        in_parent: Some(true),
        ..Default::default()
    })
    .unwrap();
    // Overlaps the previous one.
    w.write_entry(&PagemapEntry {
        vaddr: BASE,
        compat_nr_pages: 1,
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let mut reader = PagemapReader::open(&dir, PagemapTarget::Process(3))
        .unwrap()
        .unwrap();
    let a = reader.next_run().unwrap().unwrap();
    assert_eq!(
        (a.nr_pages, a.flags, a.pages_offset),
        (2, PE_PRESENT, Some(0))
    );
    let b = reader.next_run().unwrap().unwrap();
    assert_eq!((b.nr_pages, b.flags, b.pages_offset), (1, PE_PARENT, None));
    assert!(matches!(
        reader.next_run(),
        Err(PagemapError::OutOfOrder { .. })
    ));

    // Pages image shorter than the pagemap needs.
    let mut w = dir.writer(ImageKind::Pagemap, 4).unwrap();
    w.write_entry(&PagemapHead { pages_id: 5 }).unwrap();
    w.write_entry(&PagemapEntry {
        vaddr: BASE,
        compat_nr_pages: 0,
        flags: Some(PE_PRESENT),
        nr_pages: Some(3),
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    std::fs::write(tmp.path().join("pages-5.img"), page(1)).unwrap();
    let err = PageRead::open(&dir, PagemapTarget::Process(4)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pages-5.img: holds 4096 bytes but pagemap-4.img needs 12288"
    );

    // A huge nr_pages overflows instead of wrapping.
    let mut w = dir.writer(ImageKind::Pagemap, 5).unwrap();
    w.write_entry(&PagemapHead { pages_id: 6 }).unwrap();
    w.write_entry(&PagemapEntry {
        vaddr: BASE,
        compat_nr_pages: 0,
        flags: Some(PE_PRESENT),
        nr_pages: Some(u64::MAX / 2),
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let mut reader = PagemapReader::open(&dir, PagemapTarget::Process(5))
        .unwrap()
        .unwrap();
    assert!(matches!(
        reader.next_run(),
        Err(PagemapError::Overflow { .. })
    ));

    // A pagemap without its head.
    let mut w = dir.writer(ImageKind::Pagemap, 6).unwrap();
    w.ensure_created().unwrap();
    w.finish().unwrap();
    assert!(matches!(
        PagemapReader::open(&dir, PagemapTarget::Process(6)),
        Err(PagemapError::MissingHead { .. })
    ));
}

#[test]
fn vectored_and_pipe_sources_land_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut w = PagemapWriter::new(&dir, PagemapTarget::Process(9), 1).unwrap();
    // Large vectored write (bypasses the buffer) after a small buffered one.
    w.add_pages(BASE, &page(1)).unwrap();
    let big_a = vec![2u8; 3 * 1024 * 1024];
    let big_b = vec![3u8; 2 * 1024 * 1024];
    w.add_pages_vectored(
        BASE + PAGE_SIZE,
        &[IoSlice::new(&big_a), IoSlice::new(&big_b)],
        PE_PRESENT,
    )
    .unwrap();
    // Pages waiting in a pipe.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut writer = std::fs::File::from(write_end);
    writer.write_all(&pages(&[4, 5])).unwrap();
    drop(writer);
    let vaddr = BASE + PAGE_SIZE + (5 * 1024 * 1024) as u64;
    w.add_pages_from_pipe(vaddr, read_end.as_fd(), 2 * PAGE_SIZE, PE_PRESENT)
        .unwrap();
    let stats = w.finish().unwrap();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.pages_written, 1 + 1280 + 2);

    let data = std::fs::read(tmp.path().join("pages-1.img")).unwrap();
    let mut expected = page(1);
    expected.extend_from_slice(&big_a);
    expected.extend_from_slice(&big_b);
    expected.extend_from_slice(&pages(&[4, 5]));
    assert!(data == expected, "pages image content differs");
}

#[test]
fn a_pipe_that_runs_dry_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut w = PagemapWriter::new(&dir, PagemapTarget::Process(9), 1).unwrap();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    std::fs::File::from(write_end).write_all(&page(1)).unwrap();
    let err = w
        .add_pages_from_pipe(BASE, read_end.as_fd(), 2 * PAGE_SIZE, PE_PRESENT)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("pipe ran dry with 4096 of 8192 bytes still expected"),
        "{err}"
    );
}
