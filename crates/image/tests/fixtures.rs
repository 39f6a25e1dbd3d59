//! Reads every image CRIU 4.2 wrote in tests/fixtures/criu42-sleep and
//! checks it field for field against what CRIU's own crit printed, and that
//! re-encoding each entry with prost reproduces CRIU's bytes exactly.

use std::path::PathBuf;

use criu_image::inventory::{read_inventory, read_restore_inventory, read_stats};
use criu_image::{
    ImageDir, ImageKind, ImageReader, PageRead, PagemapReader, PagemapTarget, PAGE_SIZE, PE_LAZY,
    PE_PRESENT,
};
use criu_proto::{
    CoreEntry, FdinfoEntry, FileEntry, FsEntry, InventoryEntry, MmEntry, PagemapEntry, PagemapHead,
    PstreeEntry, SeccompEntry, StatsEntry, TaskKobjIdsEntry, TimensEntry,
};
use prost::Message;
use serde_json::Value;

const PID: u64 = 31202;

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/criu42-sleep"
    ));
    assert!(
        dir.is_dir(),
        "fixture directory {} is missing",
        dir.display()
    );
    dir
}

fn json(name: &str) -> Value {
    let text =
        std::fs::read_to_string(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Reads all entries of an image as `M`, checks that re-encoding each gives
/// the original bytes, and returns them.
fn read_exact_entries<M: Message + Default>(kind: ImageKind, id: u64) -> Vec<M> {
    let dir = ImageDir::open(fixtures()).unwrap();
    let mut reader = dir.reader_required(kind, id).unwrap();
    let mut entries = Vec::new();
    while let Some(payload) = reader.next_payload().unwrap() {
        let payload = payload.to_vec();
        let entry = M::decode(payload.as_slice()).unwrap();
        assert_eq!(
            entry.encode_to_vec(),
            payload,
            "{kind} entry {} re-encodes differently",
            entries.len()
        );
        entries.push(entry);
    }
    entries
}

#[test]
fn pstree_matches_crit() {
    let entries: Vec<PstreeEntry> = read_exact_entries(ImageKind::Pstree, 0);
    let expected = json("pstree.json");
    assert_eq!(expected["magic"], "PSTREE");
    assert_eq!(entries.len(), 1);
    let e = &expected["entries"][0];
    assert_eq!(u64::from(entries[0].pid), e["pid"].as_u64().unwrap());
    assert_eq!(u64::from(entries[0].sid), e["sid"].as_u64().unwrap());
    assert_eq!(entries[0].threads, vec![31202]);
}

#[test]
fn core_matches_crit() {
    let entries: Vec<CoreEntry> = read_exact_entries(ImageKind::Core, PID);
    let expected = json("core-31202.json");
    assert_eq!(entries.len(), 1);
    let core = &entries[0];
    let e = &expected["entries"][0];
    let regs = &core.thread_info.as_ref().unwrap().gpregs;
    assert_eq!(regs.ip, e["thread_info"]["gpregs"]["ip"].as_u64().unwrap());
    assert_eq!(regs.ax, e["thread_info"]["gpregs"]["ax"].as_u64().unwrap());
    let tc = core.tc.as_ref().unwrap();
    assert_eq!(tc.comm, e["tc"]["comm"].as_str().unwrap());
    assert_eq!(
        tc.sigactions.len(),
        e["tc"]["sigactions"].as_array().unwrap().len()
    );
}

#[test]
fn small_images_match_crit() {
    let fs: Vec<FsEntry> = read_exact_entries(ImageKind::Fs, PID);
    assert_eq!(
        u64::from(fs[0].cwd_id),
        json("fs-31202.json")["entries"][0]["cwd_id"]
            .as_u64()
            .unwrap()
    );
    assert_eq!(fs[0].umask, Some(18));

    let ids: Vec<TaskKobjIdsEntry> = read_exact_entries(ImageKind::Ids, PID);
    assert_eq!(
        u64::from(ids[0].files_id),
        json("ids-31202.json")["entries"][0]["files_id"]
            .as_u64()
            .unwrap()
    );

    let fds: Vec<FdinfoEntry> = read_exact_entries(ImageKind::Fdinfo, u64::from(ids[0].files_id));
    let expected = json("fdinfo-2.json");
    let expected_fds: Vec<u64> = expected["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fd"].as_u64().unwrap())
        .collect();
    assert_eq!(
        fds.iter().map(|f| u64::from(f.fd)).collect::<Vec<_>>(),
        expected_fds
    );

    let files: Vec<FileEntry> = read_exact_entries(ImageKind::Files, 0);
    assert_eq!(
        files.len(),
        json("files.json")["entries"].as_array().unwrap().len()
    );
    assert_eq!(files[0].reg.as_ref().unwrap().name, "/usr/bin/sleep");

    let mm: Vec<MmEntry> = read_exact_entries(ImageKind::Mm, PID);
    assert_eq!(
        mm[0].vmas.len(),
        json("mm-31202.json")["entries"][0]["vmas"]
            .as_array()
            .unwrap()
            .len()
    );

    let seccomp: Vec<SeccompEntry> = read_exact_entries(ImageKind::Seccomp, 0);
    assert_eq!(seccomp, vec![SeccompEntry::default()]);

    let timens: Vec<TimensEntry> = read_exact_entries(ImageKind::Timens, 0);
    assert_eq!(
        timens[0].monotonic.tv_sec,
        json("timens-0.json")["entries"][0]["monotonic"]["tv_sec"]
            .as_u64()
            .unwrap()
    );

    let stats: Vec<StatsEntry> = read_exact_entries(ImageKind::StatsDump, 0);
    let dump = stats[0].dump.unwrap();
    assert_eq!(
        dump.pages_written,
        json("stats-dump.json")["entries"][0]["dump"]["pages_written"]
            .as_u64()
            .unwrap()
    );

    let inventory: Vec<InventoryEntry> = read_exact_entries(ImageKind::Inventory, 0);
    assert_eq!(inventory[0].img_version, 2);
}

#[test]
fn inventory_helpers_accept_criu_inventory() {
    let dir = ImageDir::open(fixtures()).unwrap();
    let inventory = read_restore_inventory(&dir).unwrap();
    assert_eq!(inventory, read_inventory(&dir).unwrap());
    assert_eq!(inventory.network_lock_method, Some(0));
    assert!(inventory.plugins_entry.is_some());
    let stats = read_stats(&dir, ImageKind::StatsDump).unwrap().unwrap();
    assert_eq!(stats.dump.unwrap().pages_written, 27);
    assert!(read_stats(&dir, ImageKind::StatsRestore).unwrap().is_none());
}

#[test]
fn pagemap_matches_crit_and_pages_size() {
    let _: Vec<PagemapEntry> = Vec::new();
    let dir = ImageDir::open(fixtures()).unwrap();
    let mut reader = PagemapReader::open(&dir, PagemapTarget::Process(PID as u32))
        .unwrap()
        .unwrap();
    assert_eq!(reader.pages_id(), 1);
    let runs = reader.read_all().unwrap();
    let expected = json("pagemap-31202.json");
    let expected_entries = expected["entries"].as_array().unwrap();
    assert_eq!(expected_entries[0]["pages_id"], 1);
    assert_eq!(runs.len(), expected_entries.len() - 1);
    for (run, e) in runs.iter().zip(&expected_entries[1..]) {
        assert_eq!(run.vaddr, e["vaddr"].as_u64().unwrap());
        assert_eq!(run.nr_pages, e["nr_pages"].as_u64().unwrap());
        assert_eq!(u64::from(run.flags), e["flags"].as_u64().unwrap());
        assert!(run.flags & PE_PRESENT != 0);
    }
    assert!(runs.iter().any(|r| r.flags & PE_LAZY != 0));
    let pages_len = std::fs::metadata(fixtures().join("pages-1.img"))
        .unwrap()
        .len();
    assert_eq!(reader.pages_bytes(), pages_len);
    // stats-dump agrees with the pages image, as zdtm checks.
    assert_eq!(pages_len / PAGE_SIZE, 27);

    // The head re-encodes identically.
    let mut raw = dir.reader(ImageKind::Pagemap, PID).unwrap();
    let head = raw.next_payload().unwrap().unwrap().to_vec();
    assert_eq!(
        PagemapHead::decode(head.as_slice())
            .unwrap()
            .encode_to_vec(),
        head
    );
    while let Some(payload) = raw.next_payload().unwrap() {
        let payload = payload.to_vec();
        assert_eq!(
            PagemapEntry::decode(payload.as_slice())
                .unwrap()
                .encode_to_vec(),
            payload
        );
    }
}

#[test]
fn page_read_reads_the_pages_criu_wrote() {
    let dir = ImageDir::open(fixtures()).unwrap();
    let pages = std::fs::read(fixtures().join("pages-1.img")).unwrap();
    let page_read = PageRead::open(&dir, PagemapTarget::Process(PID as u32))
        .unwrap()
        .unwrap();
    assert_eq!(page_read.depth(), 1);
    let segments = page_read.segments().unwrap();
    let total: u64 = segments.iter().map(|s| s.len).sum();
    assert_eq!(total, pages.len() as u64);
    // Segments are consecutive in the single pages file.
    let mut expected_offset = 0;
    for segment in &segments {
        assert_eq!(segment.offset, expected_offset);
        expected_offset += segment.len;
    }
    // The last run (the stack) reads back as the last bytes of pages-1.img.
    let last = *page_read.runs().last().unwrap();
    let mut buf = vec![0u8; last.len() as usize];
    page_read.read_pages(last.vaddr, &mut buf).unwrap();
    assert_eq!(buf, pages[pages.len() - buf.len()..]);
}

#[test]
fn every_fixture_is_recognised_by_its_magic() {
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".json") || name.ends_with(".md") {
            continue;
        }
        let (kind, _id) =
            ImageKind::from_file_name(&name).unwrap_or_else(|| panic!("{name}: unknown file name"));
        let bytes = std::fs::read(&path).unwrap();
        if kind.is_raw() {
            assert!(
                ImageReader::detect_bytes(name.clone(), bytes).is_err(),
                "{name}"
            );
            continue;
        }
        let mut reader = ImageReader::detect_bytes(name.clone(), bytes).unwrap();
        assert_eq!(reader.kind().magic_name(), kind.magic_name(), "{name}");
        let json_name = format!("{}.json", name.trim_end_matches(".img"));
        let expected = json(&json_name);
        assert_eq!(expected["magic"], kind.magic_name(), "{name}");
        let mut count = 0;
        while reader.next_payload().unwrap().is_some() {
            count += 1;
        }
        assert_eq!(
            count,
            expected["entries"].as_array().unwrap().len(),
            "{name}"
        );
    }
}
