//! criu-pages against real processes (the `criu-pages-testee` binary).

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use common::{pagemap_entry, pattern_byte, proc_mem, Testee, PAGE};
use criu_pages::*;

fn vma_at(vmas: &[Vma], addr: u64) -> &Vma {
    vmas.iter()
        .find(|vma| vma.start <= addr && addr < vma.end)
        .unwrap_or_else(|| panic!("no VMA at {addr:#x}"))
}

fn pages_of(ranges: &[PageRange]) -> BTreeSet<u64> {
    ranges
        .iter()
        .flat_map(|range| (0..range.nr_pages).map(move |page| range.start + page * PAGE))
        .collect()
}

const PRESENT: u64 = 1 << 63;

#[test]
fn read_vmas_classifies_every_kind_of_mapping() {
    let testee = Testee::layout();
    let vmas = read_vmas(testee.pid()).unwrap();

    let (anon, _) = testee.region("anon");
    let vma = vma_at(&vmas, anon);
    assert_eq!(vma.kind, VmaKind::AnonPrivate);
    assert_eq!(vma.status(), VMA_AREA_REGULAR | VMA_ANON_PRIVATE);
    assert_eq!(vma.flags as i32, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS);
    assert_eq!(vma.prot as i32, libc::PROT_READ | libc::PROT_WRITE);
    assert!(vma.dumps_private_pages());
    assert!(vma.can_be_lazy());

    let (none, _) = testee.region("protnone");
    let vma = vma_at(&vmas, none);
    assert_eq!(vma.prot, 0);
    assert_eq!(vma.kind, VmaKind::AnonPrivate);

    let (private, _) = testee.region("fileprivate");
    let vma = vma_at(&vmas, private);
    assert_eq!(vma.kind, VmaKind::FilePrivate);
    assert_eq!(vma.status(), VMA_AREA_REGULAR | VMA_FILE_PRIVATE);
    assert_eq!(vma.flags as i32, libc::MAP_PRIVATE);
    let path = vma.path.as_ref().unwrap();
    assert!(path.ends_with("private file with spaces"), "{path:?}");
    assert!(!vma.deleted);
    assert_ne!(vma.inode, 0);
    assert!(vma.dumps_private_pages());
    assert!(!vma.can_be_lazy());
    assert_eq!(
        vma.map_files_name(),
        format!("{:x}-{:x}", vma.start, vma.end)
    );
    assert!(std::fs::symlink_metadata(format!(
        "/proc/{}/map_files/{}",
        testee.pid(),
        vma.map_files_name()
    ))
    .is_ok());

    let (shared, _) = testee.region("fileshared");
    let vma = vma_at(&vmas, shared);
    assert_eq!(vma.kind, VmaKind::FileShared);
    assert_eq!(vma.status(), VMA_AREA_REGULAR | VMA_FILE_SHARED);
    assert!(!vma.dumps_private_pages());

    let (shanon, _) = testee.region("anonshared");
    let vma = vma_at(&vmas, shanon);
    assert_eq!(vma.kind, VmaKind::AnonShared);
    assert_eq!(
        vma.status(),
        VMA_AREA_REGULAR | VMA_AREA_MEMFD | VMA_FILE_SHARED
    );
    assert_eq!(vma.flags as i32, libc::MAP_SHARED);
    assert!(vma.deleted);
    assert!(!vma.dumps_private_pages());

    let (heap, _) = testee.region("heapblock");
    let vma = vma_at(&vmas, heap);
    assert_eq!(vma.kind, VmaKind::Heap);
    assert_eq!(vma.label.as_deref(), Some("[heap]"));
    assert_eq!(
        vma.status(),
        VMA_AREA_REGULAR | VMA_AREA_HEAP | VMA_ANON_PRIVATE
    );

    let stack = vmas.iter().find(|vma| vma.kind == VmaKind::Stack).unwrap();
    assert_eq!(stack.status(), VMA_AREA_REGULAR | VMA_ANON_PRIVATE);
    assert_eq!(
        stack.flags as i32,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN
    );

    let vdso = vmas.iter().find(|vma| vma.kind == VmaKind::Vdso).unwrap();
    assert_eq!(
        vdso.status(),
        VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE
    );
    assert!(vdso.dumps_private_pages() && vdso.dumps_entire_vma());

    let vvars: Vec<&Vma> = vmas
        .iter()
        .filter(|vma| vma.kind == VmaKind::Vvar)
        .collect();
    assert_eq!(vvars.len(), 1, "vvar and vvar_vclock must be merged");
    let vvar = vvars[0];
    assert_eq!(
        vvar.status(),
        VMA_AREA_REGULAR | VMA_AREA_VVAR | VMA_ANON_PRIVATE
    );
    assert!(!vvar.dumps_private_pages());
    assert_ne!(vvar.madv & (1 << libc::MADV_DONTDUMP), 0);
    // smaps of this kernel lists [vvar] and [vvar_vclock]: the merged VMA covers both.
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", testee.pid())).unwrap();
    let raw_vvar_pages: u64 = smaps
        .lines()
        .filter(|line| line.ends_with("[vvar]") || line.ends_with("[vvar_vclock]"))
        .map(|line| {
            let (start, rest) = line.split_once('-').unwrap();
            let end = rest.split_once(' ').unwrap().0;
            (u64::from_str_radix(end, 16).unwrap() - u64::from_str_radix(start, 16).unwrap()) / PAGE
        })
        .sum();
    assert_eq!(vvar.nr_pages(), raw_vvar_pages);

    let vsyscall = vmas.iter().find(|vma| vma.kind == VmaKind::Vsyscall);
    if let Some(vsyscall) = vsyscall {
        assert_eq!(vsyscall.status(), VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE);
        assert!(!vsyscall.dumps_private_pages());
    }

    // Sorted and non-overlapping.
    for pair in vmas.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "{:?} / {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// The pages the layout testee wrote, i.e. exactly what must be dumped from its own regions.
fn expected_layout_pages(testee: &Testee) -> BTreeSet<u64> {
    let mut expected = BTreeSet::new();
    let (anon, _) = testee.region("anon");
    for page in [0u64, 1, 2, 10, 30, 40, 63] {
        expected.insert(anon + page * PAGE);
    }
    let (none, _) = testee.region("protnone");
    expected.insert(none);
    expected.insert(none + 2 * PAGE);
    let (private, _) = testee.region("fileprivate");
    expected.insert(private + PAGE);
    // The guard marker on page 2 is neither data nor readable.
    let (guard, _) = testee.region("guard");
    for page in [0u64, 1, 3] {
        expected.insert(guard + page * PAGE);
    }
    // THP: the half mapped to the huge zero page is out, the written huge page is all in.
    let (thp, len) = testee.region("thp");
    for page in 0..(len / 2 / PAGE) {
        expected.insert(thp + len / 2 + page * PAGE);
    }
    expected
}

fn layout_region_pages(testee: &Testee, ranges: &[PageRange]) -> BTreeSet<u64> {
    let regions = [
        "anon",
        "protnone",
        "fileprivate",
        "fileshared",
        "anonshared",
        "guard",
        "thp",
    ];
    pages_of(ranges)
        .into_iter()
        .filter(|page| {
            regions.iter().any(|name| {
                let (start, len) = testee.region(name);
                (start..start + len).contains(page)
            })
        })
        .collect()
}

#[test]
fn present_ranges_are_exactly_the_written_pages() {
    let testee = Testee::layout();
    let pid = testee.pid();
    let vmas = read_vmas(pid).unwrap();
    let ranges = present_ranges_with(pid, &vmas, ScanMethod::PagemapScan).unwrap();

    // Preconditions that make this test meaningful: the zero page and the unwritten file pages
    // really are mapped (pagemap says present), so only the filters keep them out.
    let (anon, _) = testee.region("anon");
    assert_ne!(pagemap_entry(pid, anon + 20 * PAGE) & PRESENT, 0);
    let (private, _) = testee.region("fileprivate");
    assert_ne!(pagemap_entry(pid, private) & PRESENT, 0);
    let (guard, _) = testee.region("guard");
    assert_ne!(
        pagemap_entry(pid, guard + 2 * PAGE) & (1 << 62 | 1 << 58),
        0,
        "the guard marker looks like a swap entry"
    );
    let (thp, _) = testee.region("thp");
    assert_ne!(
        pagemap_entry(pid, thp) & PRESENT,
        0,
        "huge zero page mapped"
    );
    let vma = vma_at(&vmas, thp);
    assert!(vma.vm_flags.contains(VmFlags::HUGEPAGE));
    assert_eq!(vma.madv, 1 << libc::MADV_HUGEPAGE);

    assert_eq!(
        layout_region_pages(&testee, &ranges),
        expected_layout_pages(&testee)
    );

    // The heap block and the whole vdso are in; nothing of the vvar or shared mappings is.
    let pages = pages_of(&ranges);
    let (heap, heap_len) = testee.region("heapblock");
    let first_full = heap.div_ceil(PAGE) * PAGE;
    assert!(pages.contains(&first_full) && pages.contains(&(first_full + 8 * PAGE)));
    let _ = heap_len;
    let vdso = vmas.iter().find(|vma| vma.kind == VmaKind::Vdso).unwrap();
    assert!((vdso.start..vdso.end)
        .step_by(PAGE as usize)
        .all(|page| pages.contains(&page)));
    let vvar = vmas.iter().find(|vma| vma.kind == VmaKind::Vvar).unwrap();
    assert!(!pages
        .iter()
        .any(|page| (vvar.start..vvar.end).contains(page)));

    // Ranges are sorted, disjoint, and do not cross VMA boundaries.
    for pair in ranges.windows(2) {
        assert!(pair[0].end() <= pair[1].start);
    }
    for range in &ranges {
        let vma = vma_at(&vmas, range.start);
        assert!(range.end() <= vma.end, "{range:?} crosses {vma:?}");
    }
}

#[test]
fn pagemap_fallback_gives_the_same_ranges_as_pagemap_scan() {
    let testee = Testee::layout();
    let pid = testee.pid();
    let vmas = read_vmas(pid).unwrap();
    let scanned = present_ranges_with(pid, &vmas, ScanMethod::PagemapScan).unwrap();
    let read = present_ranges_with(pid, &vmas, ScanMethod::PagemapRead).unwrap();
    let auto = present_ranges(pid, &vmas).unwrap();
    assert_eq!(scanned, read);
    assert_eq!(scanned, auto);
    assert_eq!(
        layout_region_pages(&testee, &read),
        expected_layout_pages(&testee)
    );
    assert!(zero_page_pfn().unwrap().is_some(), "root sees PFNs here");
}

/// The reader settings the byte-exact tests run with: the default, serial 2-page chunks, and
/// pipelined 3-page chunks (batches that cut ranges in odd places, on several threads).
fn reader_settings() -> [ReaderOptions; 3] {
    [
        ReaderOptions::default(),
        ReaderOptions {
            chunk_bytes: 2 * PAGE as usize,
            pipelined: false,
        },
        ReaderOptions {
            chunk_bytes: 3 * PAGE as usize,
            pipelined: true,
        },
    ]
}

/// The layout testee, its VMAs and its present pages.
fn layout_with_pages() -> (Testee, Vec<Vma>, Vec<PageRange>) {
    let testee = Testee::layout();
    let vmas = read_vmas(testee.pid()).unwrap();
    let ranges = present_ranges(testee.pid(), &vmas).unwrap();
    (testee, vmas, ranges)
}

fn read_all(pid: i32, ranges: &[PageRange], options: ReaderOptions) -> (VecSink, ReadStats) {
    let reader = PageReader::with_options(pid, options).unwrap();
    let mut sink = VecSink::new();
    let stats = reader.read(ranges, &mut sink).unwrap();
    (sink, stats)
}

#[test]
fn page_reader_returns_the_exact_bytes_including_prot_none() {
    let (testee, vmas, ranges) = layout_with_pages();
    let pid = testee.pid();
    let total: u64 = ranges.iter().map(|range| range.nr_pages).sum();

    for options in reader_settings() {
        let (sink, stats) = read_all(pid, &ranges, options);
        assert_eq!(sink.nr_pages(), total, "{options:?}");
        assert_eq!(stats.pages, total);
        assert_eq!(pages_of(&sink.ranges()), pages_of(&ranges));
        assert_eq!(stats.mem_fallback_pages, 2, "the two PROT_NONE pages");

        let (anon, _) = testee.region("anon");
        for page in [0usize, 1, 2, 10, 40, 63] {
            let data = sink.page(anon + page as u64 * PAGE).unwrap();
            assert_eq!(data[0], page as u8);
            assert!(data[1..].iter().all(|b| *b == pattern_byte(0xa0, page)));
        }
        assert!(sink.page(anon + 30 * PAGE).unwrap().iter().all(|b| *b == 0));
        let (none, _) = testee.region("protnone");
        assert!(sink.page(none).unwrap().iter().all(|b| *b == 0x5a));
        assert!(sink
            .page(none + 2 * PAGE)
            .unwrap()
            .iter()
            .all(|b| *b == 0xa5));
        let (private, _) = testee.region("fileprivate");
        assert!(sink
            .page(private + PAGE)
            .unwrap()
            .iter()
            .all(|b| *b == 0xc0));
        let (heap, _) = testee.region("heapblock");
        let heap_page = heap.div_ceil(PAGE) * PAGE;
        assert!(sink.page(heap_page).unwrap().iter().all(|b| *b == 0x99));
        let (guard, _) = testee.region("guard");
        assert!(sink
            .page(guard + 3 * PAGE)
            .unwrap()
            .iter()
            .all(|b| *b == 0x6b));
        let (thp, len) = testee.region("thp");
        let written_half = sink.page(thp + len / 2).unwrap();
        assert_eq!(written_half[0], 0x3c);
        assert!(written_half[1..].iter().all(|b| *b == 0));

        // Everything else matches /proc/PID/mem byte for byte.
        for (start, data) in &sink.runs {
            let reference = proc_mem(pid, *start, data.len());
            if let Some(offset) = (0..data.len()).find(|at| reference[*at] != data[*at]) {
                let addr = start + offset as u64;
                panic!(
                    "byte {addr:#x} differs: read {:#x}, /proc/PID/mem {:#x}, in {:?}",
                    data[offset],
                    reference[offset],
                    vma_at(&vmas, addr)
                );
            }
        }
    }
}

#[test]
fn page_reader_reports_unmapped_addresses_and_bad_ranges() {
    let testee = Testee::layout();
    let pid = testee.pid();
    let reader = PageReader::new(pid).unwrap();
    let mut sink = VecSink::new();
    // The page right after the PROT_NONE region is not mapped by the testee... find a hole.
    let vmas = read_vmas(pid).unwrap();
    let hole = vmas
        .windows(2)
        .find(|pair| pair[1].start - pair[0].end >= PAGE)
        .map(|pair| pair[0].end)
        .unwrap();
    let error = reader
        .read(&[PageRange::new(hole, 1)], &mut sink)
        .unwrap_err();
    match error {
        ReadError::Unreadable { pid: p, addr, .. } => {
            assert_eq!(p, pid);
            assert_eq!(addr, hole);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(matches!(
        reader.read(&[PageRange::new(hole + 1, 1)], &mut sink),
        Err(ReadError::BadRange { .. })
    ));
    assert!(matches!(
        PageReader::with_options(
            pid,
            ReaderOptions {
                chunk_bytes: 100,
                pipelined: true
            }
        ),
        Err(ReadError::BadChunkSize(100))
    ));
}

#[test]
fn page_reader_stops_at_the_first_sink_error() {
    struct FailAfter(usize);
    impl PageSink for FailAfter {
        fn add_pages(&mut self, vaddr: u64, _data: &[u8]) -> std::io::Result<()> {
            if self.0 == 0 {
                return Err(std::io::Error::other(format!("full at {vaddr:#x}")));
            }
            self.0 -= 1;
            Ok(())
        }
        fn add_hole(&mut self, _: u64, _: u64, _: u32) -> std::io::Result<()> {
            Ok(())
        }
    }
    let testee = Testee::spawn(&["bench", "4"]);
    let (start, len) = testee.region("bench");
    for pipelined in [false, true] {
        let reader = PageReader::with_options(
            testee.pid(),
            ReaderOptions {
                chunk_bytes: 64 * PAGE as usize,
                pipelined,
            },
        )
        .unwrap();
        let error = reader
            .read(&[PageRange::new(start, len / PAGE)], &mut FailAfter(3))
            .unwrap_err();
        match error {
            ReadError::Sink { vaddr, .. } => assert_eq!(vaddr, start + 3 * 64 * PAGE),
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn missing_process_gives_typed_errors() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    assert!(matches!(read_vmas(pid), Err(VmaError::Read { pid: p, .. }) if p == pid));
    assert!(matches!(
        present_ranges(pid, &[]),
        Err(ScanError::Open { pid: p, .. }) if p == pid
    ));
    assert!(matches!(
        PageReader::new(pid),
        Err(ReadError::OpenMem { pid: p, .. }) if p == pid
    ));
}

#[test]
fn written_ranges_track_writes_through_uffd_wp() {
    let mut testee = Testee::spawn(&["uffd", "16"]);
    let pid = testee.pid();
    let vmas = vec![testee.region_vma("uffd")];
    let start = vmas[0].start;
    assert!(vmas[0].vm_flags.contains(VmFlags::UFFD_WP));
    let pagemap = Pagemap::open(pid).unwrap();
    let fd = std::fs::File::open(format!("/proc/{pid}/pagemap")).unwrap();
    use std::os::fd::AsFd;

    // Never protected yet: everything counts as written; the scan re-arms.
    let first = written_ranges(fd.as_fd(), pid, &vmas, true).unwrap();
    assert_eq!(first, vec![PageRange::new(start, 16)]);
    assert!(written_ranges(fd.as_fd(), pid, &vmas, false)
        .unwrap()
        .is_empty());

    testee.write_page(start + 3 * PAGE, 0x42);
    testee.write_page(start + 7 * PAGE, 0x43);
    testee.write_page(start + 8 * PAGE, 0x44);
    let dirty = written_ranges(fd.as_fd(), pid, &vmas, true).unwrap();
    assert_eq!(
        dirty,
        vec![
            PageRange::new(start + 3 * PAGE, 1),
            PageRange::new(start + 7 * PAGE, 2)
        ]
    );
    assert!(written_ranges(fd.as_fd(), pid, &vmas, true)
        .unwrap()
        .is_empty());
    assert_eq!(pagemap.pid(), pid);
    testee.write_page(start + 15 * PAGE, 0x45);
    assert_eq!(
        pagemap.written_ranges(&vmas, true).unwrap(),
        vec![PageRange::new(start + 15 * PAGE, 1)]
    );

    // The ioctl refuses VMAs not registered with uffd-wp when re-arming.
    let all = read_vmas(pid).unwrap();
    assert!(matches!(
        written_ranges(fd.as_fd(), pid, &all, true),
        Err(ScanError::Scan { .. })
    ));
}

#[test]
fn scans_with_more_regions_than_one_batch_list_each_page_once() {
    // 1 GiB with a hole every 64 pages: 4096 regions, four batches of PAGEMAP_SCAN output.
    let testee = Testee::spawn(&["sparse", "262144"]);
    let pid = testee.pid();
    let (start, len) = testee.region("sparse");
    let vmas: Vec<Vma> = read_vmas(pid)
        .unwrap()
        .into_iter()
        .filter(|vma| vma.start == start && vma.end == start + len)
        .collect();
    assert_eq!(vmas.len(), 1);
    let expected: Vec<PageRange> = (0..len / PAGE / 64)
        .map(|block| PageRange::new(start + block * 64 * PAGE, 63))
        .collect();
    assert!(expected.len() >= 4 * 1024);
    for method in [ScanMethod::PagemapScan, ScanMethod::PagemapRead] {
        let ranges = present_ranges_with(pid, &vmas, method).unwrap();
        assert_eq!(ranges.len(), expected.len(), "{method:?}");
        assert!(ranges == expected, "{method:?}");
    }
}

#[test]
fn uffd_wp_markers_on_untouched_pages_are_not_present() {
    let mut testee = Testee::spawn(&["uffd-sparse", "32"]);
    let pid = testee.pid();
    let vmas = vec![testee.region_vma("uffd")];
    let start = vmas[0].start;
    let pagemap = Pagemap::open(pid).unwrap();
    let before = pagemap
        .present_ranges(&vmas, ScanMethod::PagemapScan)
        .unwrap();
    assert_eq!(before, vec![PageRange::new(start, 16)]);
    // Arming write-protects everything and puts WP_UNPOPULATED markers on the 16 untouched
    // pages, which PAGEMAP_SCAN reports as swapped.
    pagemap.written_ranges(&vmas, true).unwrap();
    testee.write_page(start + 20 * PAGE, 0x42);
    let expected = vec![
        PageRange::new(start, 16),
        PageRange::new(start + 20 * PAGE, 1),
    ];
    for method in [ScanMethod::PagemapScan, ScanMethod::PagemapRead] {
        assert_eq!(
            pagemap.present_ranges(&vmas, method).unwrap(),
            expected,
            "{method:?}"
        );
    }
    assert_eq!(
        pagemap.written_ranges(&vmas, true).unwrap(),
        vec![PageRange::new(start + 20 * PAGE, 1)]
    );
}

#[test]
fn page_reader_batches_more_ranges_than_one_iovec_array_holds() {
    let testee = Testee::spawn(&["bench", "16"]);
    let (start, len) = testee.region("bench");
    // Every other page: 2048 one-page ranges, more than the 1024 iovecs of one call.
    let ranges: Vec<PageRange> = (0..len / PAGE)
        .step_by(2)
        .map(|page| PageRange::new(start + page * PAGE, 1))
        .collect();
    assert!(ranges.len() > 1024);
    for pipelined in [false, true] {
        let options = ReaderOptions {
            // Larger than 1024 pages but smaller than the total, so pipelining stays on.
            chunk_bytes: 6 << 20,
            pipelined,
        };
        let (sink, stats) = read_all(testee.pid(), &ranges, options);
        assert_eq!(
            stats.batches, 2,
            "split at 1024 runs, not at the chunk size"
        );
        assert_eq!(stats.pvr_calls, 2);
        assert_eq!(stats.mem_fallback_pages, 0);
        assert_eq!(sink.ranges(), ranges);
        for range in &ranges {
            let page = ((range.start - start) / PAGE) as usize;
            let data = sink.page(range.start).unwrap();
            assert!(data.iter().all(|b| *b == pattern_byte(0x40, page)));
        }
    }
}

/// `read_into` fills one destination with the same bytes, in the same order, as `read` hands to a
/// sink, whether one thread or several share the chunks, PROT_NONE pages included; with a
/// positional writer, the chunks it was given hold the right bytes there and were never touched
/// through memory, and the others were filled through memory.
#[test]
fn read_into_fills_the_destination_exactly_as_read_delivers() {
    let (testee, _, ranges) = layout_with_pages();
    let pid = testee.pid();
    let (sink, _) = read_all(pid, &ranges, ReaderOptions::default());
    let expected: Vec<u8> = sink
        .runs
        .iter()
        .flat_map(|(_, data)| data.iter().copied())
        .collect();
    let total: u64 = ranges.iter().map(|range| range.nr_pages).sum();

    for options in reader_settings() {
        let reader = PageReader::with_options(pid, options).unwrap();
        let mut destination = vec![0xeeu8; expected.len()];
        let stats = reader.read_into(&ranges, &mut destination, None).unwrap();
        assert_eq!(stats.written_pages, 0, "no writer, nothing written");
        assert_eq!(stats.pages, total, "{options:?}");
        assert_eq!(stats.mem_fallback_pages, 2, "the two PROT_NONE pages");
        assert_eq!(
            stats.batches,
            total.div_ceil(options.chunk_bytes as u64 / PAGE),
            "one job per chunk: {options:?}"
        );
        if let Some(at) = (0..expected.len()).find(|&at| destination[at] != expected[at]) {
            panic!("{options:?}: byte {at} of the destination differs from read()'s");
        }

        // The same with a writer into a separate copy standing in for the file behind a mapping.
        // Its first chunk takes a while, so that helpers, if any, surely get some of the rest.
        let file = Mutex::new(vec![0xeeu8; expected.len()]);
        let written = Mutex::new(Vec::new());
        let mut destination = vec![0xeeu8; expected.len()];
        let base = destination.as_ptr() as usize;
        let write_at = |part: &mut [u8], data: &[u8]| {
            let offset = part.as_ptr() as usize - base;
            let mut written = written.lock().unwrap();
            if written.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
            file.lock().unwrap()[offset..offset + data.len()].copy_from_slice(data);
            written.push(offset..offset + data.len());
            Ok(())
        };
        let stats = reader
            .read_into(&ranges, &mut destination, Some(&write_at))
            .unwrap();
        assert_eq!(stats.pages, total, "{options:?}");
        let written = written.into_inner().unwrap();
        let written_bytes: usize = written.iter().map(|chunk| chunk.len()).sum();
        assert_eq!(stats.written_pages * PAGE, written_bytes as u64);
        assert!(
            stats.written_pages > 0,
            "the calling thread writes: {options:?}"
        );
        let helpers = options.pipelined
            && std::thread::available_parallelism().map_or(1, usize::from) > 1
            && stats.batches > 1;
        assert_eq!(
            stats.written_pages < total,
            helpers,
            "helpers fill through memory, a lone writer writes everything: {options:?}"
        );
        let file = file.into_inner().unwrap();
        let mut by_writer = vec![false; expected.len()];
        for chunk in &written {
            by_writer[chunk.clone()].fill(true);
        }
        if let Some(at) = (0..expected.len()).find(|&at| {
            let (got, untouched) = if by_writer[at] {
                (file[at], destination[at])
            } else {
                (destination[at], file[at])
            };
            got != expected[at] || untouched != 0xee
        }) {
            panic!(
                "{options:?}: byte {at} (written: {}) is wrong",
                by_writer[at]
            );
        }
    }
}

/// A destination of the wrong size is refused before anything is read; an unreadable page in
/// the middle fails the whole fill, from any worker, without hanging the others.
#[test]
fn read_into_refuses_a_wrong_destination_and_reports_unreadable_pages() {
    let (testee, vmas, ranges) = layout_with_pages();
    let pid = testee.pid();
    let total: u64 = ranges.iter().map(|range| range.len_bytes()).sum();
    let reader = PageReader::with_options(
        pid,
        ReaderOptions {
            chunk_bytes: PAGE as usize,
            pipelined: true,
        },
    )
    .unwrap();
    let mut short = vec![0u8; total as usize - PAGE as usize];
    match reader.read_into(&ranges, &mut short, None) {
        Err(ReadError::DestinationSize {
            ranges: bytes,
            destination,
        }) => assert_eq!((bytes, destination), (total, short.len())),
        other => panic!("expected DestinationSize, got {other:?}"),
    }

    let hole = vmas
        .windows(2)
        .find(|pair| pair[1].start - pair[0].end >= PAGE)
        .map(|pair| pair[0].end)
        .unwrap();
    let mut with_hole: Vec<PageRange> = ranges.clone();
    with_hole.push(PageRange::new(hole, 1));
    with_hole.sort_by_key(|range| range.start);
    let mut destination = vec![0u8; total as usize + PAGE as usize];
    match reader.read_into(&with_hole, &mut destination, None) {
        Err(ReadError::Unreadable { addr, .. }) => assert_eq!(addr, hole),
        other => panic!("expected Unreadable at {hole:#x}, got {other:?}"),
    }

    // The same beside a writer, whichever of them meets the hole.
    let keep = |_: &mut [u8], _: &[u8]| Ok(());
    match reader.read_into(&with_hole, &mut destination, Some(&keep)) {
        Err(ReadError::Unreadable { addr, .. }) => assert_eq!(addr, hole),
        other => panic!("expected Unreadable at {hole:#x} with a writer, got {other:?}"),
    }

    // A writer that fails (a full filesystem) fails the fill with its error, naming the first
    // address of the chunk it refused.
    let full = |_: &mut [u8], _: &[u8]| Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    let mut destination = vec![0u8; total as usize];
    match reader.read_into(&ranges, &mut destination, Some(&full)) {
        Err(ReadError::Write { vaddr, source }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            assert!(ranges
                .iter()
                .any(|range| range.start <= vaddr && vaddr < range.end()));
        }
        other => panic!("expected the writer's ENOSPC, got {other:?}"),
    }
}
