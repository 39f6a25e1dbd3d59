//! Image framing: round trips through real files in a temporary directory, and
//! every kind of broken input ending in a typed error that names file and offset.

use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;

use criu_image::{
    ImageDir, ImageError, ImageKind, ImageReader, ImageWriter, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC,
};
use criu_proto::{PipeDataEntry, PstreeEntry, StatsEntry};
use prost::Message;

fn temp_dir() -> (tempfile::TempDir, ImageDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    (tmp, dir)
}

fn task(pid: u32) -> PstreeEntry {
    PstreeEntry {
        pid,
        ppid: pid.saturating_sub(1),
        pgid: pid,
        sid: 1,
        threads: vec![pid, pid + 1],
    }
}

#[test]
fn entries_round_trip_through_a_file() {
    let (tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::Pstree, 0).unwrap();
    for pid in 1..=100 {
        writer.write_entry(&task(pid)).unwrap();
    }
    assert_eq!(writer.entries(), 100);
    writer.finish().unwrap();

    let bytes = std::fs::read(tmp.path().join("pstree.img")).unwrap();
    assert_eq!(&bytes[..4], &IMG_COMMON_MAGIC.to_le_bytes());
    assert_eq!(&bytes[4..8], &0x5027_3030u32.to_le_bytes());
    let first_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    assert_eq!(
        &bytes[12..12 + first_len],
        task(1).encode_to_vec().as_slice()
    );

    let mut reader = dir.reader(ImageKind::Pstree, 0).unwrap();
    let read: Vec<PstreeEntry> = reader.read_all().unwrap();
    assert_eq!(read, (1..=100).map(task).collect::<Vec<_>>());
    assert_eq!(reader.next_entry::<PstreeEntry>().unwrap(), None);
}

#[test]
fn files_are_created_with_criu_permissions() {
    let (tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::Pstree, 0).unwrap();
    writer.write_entry(&task(1)).unwrap();
    writer.finish().unwrap();
    let mode = std::fs::metadata(tmp.path().join("pstree.img"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    // CR_FD_PERM is 0644 before the umask; the umask can only remove bits.
    assert_eq!(mode & !0o644, 0, "mode {mode:o}");
    assert!(mode & 0o600 == 0o600, "mode {mode:o}");
}

#[test]
fn image_is_invisible_until_finish_and_discarded_if_dropped() {
    let (tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::Pstree, 0).unwrap();
    writer.write_entry(&task(1)).unwrap();
    assert!(!tmp.path().join("pstree.img").exists());
    drop(writer);
    assert!(!tmp.path().join("pstree.img").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "temporary file left behind: {leftovers:?}"
    );
}

#[test]
fn writer_without_entries_creates_nothing_and_removes_stale_image() {
    let (tmp, dir) = temp_dir();
    std::fs::write(tmp.path().join("files.img"), b"stale").unwrap();
    dir.writer(ImageKind::Files, 0).unwrap().finish().unwrap();
    assert!(!tmp.path().join("files.img").exists());

    let mut writer = dir.writer(ImageKind::Files, 0).unwrap();
    writer.ensure_created().unwrap();
    writer.finish().unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("files.img")).unwrap().len(),
        8
    );
    assert_eq!(
        dir.reader(ImageKind::Files, 0)
            .unwrap()
            .next_payload()
            .unwrap(),
        None
    );
}

#[test]
fn missing_image_reads_empty_unless_required() {
    let (_tmp, dir) = temp_dir();
    let mut reader = dir.reader(ImageKind::Core, 7).unwrap();
    assert!(reader.is_missing());
    assert_eq!(reader.next_entry::<PstreeEntry>().unwrap(), None);
    let err = dir.reader_required(ImageKind::Core, 7).unwrap_err();
    assert!(matches!(err, ImageError::Missing { .. }));
    assert_eq!(err.to_string(), "core-7.img: image is missing");
    assert!(!dir.exists(ImageKind::Core, 7).unwrap());
}

#[test]
fn extra_payloads_follow_their_entries() {
    let (_tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::PipesData, 0).unwrap();
    let payloads: [&[u8]; 3] = [b"hello", b"", &[0xAB; 70000]];
    for (i, data) in payloads.iter().enumerate() {
        writer
            .write_entry(&PipeDataEntry {
                pipe_id: i as u32,
                bytes: data.len() as u32,
                size: Some(65536),
            })
            .unwrap();
        writer.write_extra(data).unwrap();
    }
    writer.finish().unwrap();
    let mut reader = dir.reader(ImageKind::PipesData, 0).unwrap();
    for (i, data) in payloads.iter().enumerate() {
        let entry: PipeDataEntry = reader.next_entry().unwrap().unwrap();
        assert_eq!(entry.pipe_id, i as u32);
        assert_eq!(reader.read_extra(u64::from(entry.bytes)).unwrap(), *data);
    }
    assert_eq!(reader.next_entry::<PipeDataEntry>().unwrap(), None);
}

#[test]
fn service_files_carry_the_service_magic() {
    let (tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::StatsDump, 0).unwrap();
    writer.write_entry(&StatsEntry::default()).unwrap();
    writer.finish().unwrap();
    let bytes = std::fs::read(tmp.path().join("stats-dump")).unwrap();
    assert_eq!(&bytes[..4], &IMG_SERVICE_MAGIC.to_le_bytes());
    assert_eq!(&bytes[4..8], &0x5709_3306u32.to_le_bytes());
    // Inventory has no head magic.
    let mut writer = dir.writer(ImageKind::Inventory, 0).unwrap();
    writer.ensure_created().unwrap();
    writer.finish().unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("inventory.img")).unwrap(),
        0x5831_3116u32.to_le_bytes()
    );
}

#[test]
fn directory_from_fd_and_parent_links() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("1")).unwrap();
    std::fs::create_dir(tmp.path().join("2")).unwrap();
    let fd: OwnedFd = std::fs::File::open(tmp.path().join("2")).unwrap().into();
    let two = ImageDir::from_fd(fd).unwrap();
    assert!(two.parent().unwrap().is_none());
    two.set_parent("../1").unwrap();
    // An existing link is left alone, as CRIU does (EEXIST is fine).
    two.set_parent("../elsewhere").unwrap();
    assert_eq!(
        two.parent_link().unwrap().unwrap(),
        std::path::PathBuf::from("../1")
    );
    let one = two.parent().unwrap().unwrap();
    let mut writer = one.writer(ImageKind::Pstree, 0).unwrap();
    writer.write_entry(&task(5)).unwrap();
    writer.finish().unwrap();
    assert!(tmp.path().join("1/pstree.img").exists());
    assert_eq!(one.label("pstree.img"), "parent/pstree.img");
    assert_eq!(two.parent_chain().unwrap().len(), 2);

    let file: OwnedFd = std::fs::File::open(tmp.path().join("1/pstree.img"))
        .unwrap()
        .into();
    assert!(matches!(
        ImageDir::from_fd(file),
        Err(ImageError::NotADirectory { .. })
    ));
}

#[test]
fn parent_loops_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("a")).unwrap();
    std::fs::create_dir(tmp.path().join("b")).unwrap();
    let a = ImageDir::open(tmp.path().join("a")).unwrap();
    let b = ImageDir::open(tmp.path().join("b")).unwrap();
    a.set_parent("../b").unwrap();
    b.set_parent("../a").unwrap();
    assert!(matches!(
        a.parent_chain(),
        Err(ImageError::ParentLoop { .. })
    ));
}

#[test]
fn dangling_parent_link_is_an_error() {
    let (_tmp, dir) = temp_dir();
    dir.set_parent("../does-not-exist").unwrap();
    let err = dir.parent().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_enoent()));
}

fn libc_enoent() -> i32 {
    std::io::Error::from(std::io::ErrorKind::NotFound)
        .raw_os_error()
        .unwrap_or(2)
}

fn image_bytes(entries: &[PstreeEntry]) -> Vec<u8> {
    let mut writer = ImageWriter::in_memory(ImageKind::Pstree);
    for entry in entries {
        writer.write_entry(entry).unwrap();
    }
    writer.into_bytes().unwrap()
}

fn read_all(bytes: Vec<u8>) -> Result<Vec<PstreeEntry>, ImageError> {
    ImageReader::from_bytes("pstree.img", ImageKind::Pstree, bytes)?.read_all()
}

#[test]
fn wrong_magics_name_expected_and_found() {
    let mut bytes = image_bytes(&[task(1)]);
    bytes[0] ^= 0xff;
    let err = read_all(bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pstree.img: bad head magic at offset 0: expected 0x54564319, found 0x545643e6"
    );

    let bytes = image_bytes(&[task(1)]);
    let err = ImageReader::from_bytes("core-1.img", ImageKind::Core, bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "core-1.img: bad magic at offset 4: expected 0x55053847, found 0x50273030"
    );
}

#[test]
fn too_short_for_magic_is_an_error() {
    let err = read_all(vec![0x19, 0x43]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pstree.img: 2 bytes is too short for the 8-byte magic header"
    );
    assert!(read_all(Vec::new()).is_err());
}

#[test]
fn truncated_size_word() {
    let mut bytes = image_bytes(&[task(1)]);
    let good_len = bytes.len() as u64;
    bytes.extend_from_slice(&[1, 0]);
    let err = read_all(bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pstree.img: truncated entry size at offset {good_len}: only 2 of 4 bytes remain")
    );
}

#[test]
fn truncated_entry() {
    let bytes = image_bytes(&[task(1), task(2)]);
    let cut = bytes[..bytes.len() - 3].to_vec();
    assert!(matches!(
        read_all(cut),
        Err(ImageError::PastEnd { what: "entry", .. })
    ));
}

#[test]
fn four_gib_length_field_errors_without_allocating() {
    let mut bytes = image_bytes(&[]);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 22]);
    let err = read_all(bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pstree.img: entry at offset 8 claims 4294967295 bytes but only 22 remain"
    );
}

#[test]
fn four_gib_length_in_a_file_errors_too() {
    let (tmp, dir) = temp_dir();
    let mut bytes = image_bytes(&[task(1)]);
    bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(tmp.path().join("pstree.img"), &bytes).unwrap();
    let err = dir
        .reader(ImageKind::Pstree, 0)
        .unwrap()
        .read_all::<PstreeEntry>()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("claims 4294967280 bytes but only 0 remain"),
        "{err}"
    );
}

#[test]
fn extra_past_end_is_an_error() {
    let mut writer = ImageWriter::in_memory(ImageKind::PipesData);
    writer
        .write_entry(&PipeDataEntry {
            pipe_id: 1,
            bytes: 1 << 30,
            size: None,
        })
        .unwrap();
    writer.write_extra(b"short").unwrap();
    let bytes = writer.into_bytes().unwrap();
    let mut reader =
        ImageReader::from_bytes("pipes-data.img", ImageKind::PipesData, bytes).unwrap();
    let entry: PipeDataEntry = reader.next_entry().unwrap().unwrap();
    let err = reader.read_extra(u64::from(entry.bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::PastEnd {
                what: "extra payload",
                claimed: 1073741824,
                remaining: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn garbage_protobuf_is_a_decode_error() {
    let mut bytes = image_bytes(&[]);
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
    let err = read_all(bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Decode {
                offset: 8,
                len: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("pstree.img: entry at offset 8 (3 bytes) is not a valid PstreeEntry"),
        "{err}"
    );
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator: the point is many shapes of garbage.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = image_bytes(&[task(1), task(2), task(3)]);
    for round in 0..5000 {
        let mut bytes = if round % 2 == 0 {
            let len = (next() % 128) as usize;
            (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
        } else {
            valid.clone()
        };
        if !bytes.is_empty() {
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            bytes.truncate((next() as usize) % (bytes.len() + 1));
        }
        if let Ok(mut reader) = ImageReader::detect_bytes("fuzz.img", bytes.clone()) {
            while let Ok(Some(_)) = reader.next_payload() {}
        }
        let _ = read_all(bytes);
    }
}

#[test]
fn detect_recognises_kinds_and_rejects_raw_data() {
    let bytes = image_bytes(&[task(1)]);
    let reader = ImageReader::detect_bytes("x", bytes).unwrap();
    assert_eq!(reader.kind(), ImageKind::Pstree);
    let err = ImageReader::detect_bytes("pages-1.img", vec![0u8; 4096]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pages-1.img: unknown magic 0x00000000 at offset 0"
    );
    // A service head with a common type magic is wrong.
    let mut bytes = image_bytes(&[]);
    bytes[..4].copy_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
    assert!(matches!(
        ImageReader::detect_bytes("x", bytes),
        Err(ImageError::BadMagic { .. })
    ));
}

#[test]
fn raw_kinds_refuse_entries_but_take_extra() {
    let (tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::Pages, 3).unwrap();
    assert!(matches!(
        writer.write_entry(&task(1)),
        Err(ImageError::RawImage { .. })
    ));
    writer.write_extra(&[7u8; 4096]).unwrap();
    writer.finish().unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("pages-3.img")).unwrap(),
        vec![7u8; 4096]
    );
    assert!(matches!(
        dir.reader(ImageKind::Pages, 3),
        Err(ImageError::RawImage { .. })
    ));
    assert!(dir.open_pages(3).unwrap().is_some());
    assert!(dir.open_pages(4).unwrap().is_none());
}

#[test]
fn global_kinds_reject_ids() {
    let (_tmp, dir) = temp_dir();
    let err = dir.writer(ImageKind::Files, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "FILES images have no id in their file name, but id 3 was given"
    );
}

/// A raw image can be grown by a mapped region that the caller fills in place; writes before and
/// after it land around it, and the file is published only by finish.
#[test]
fn mapped_appends_sit_between_writes_in_a_raw_image() {
    let (tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::Pages, 1).unwrap();
    writer.write_extra(&[1u8; 4096]).unwrap();
    {
        let mut mapped = writer
            .append_mapped(3 * 4096)
            .unwrap()
            .expect("a file image at a page-aligned offset maps");
        assert_eq!(mapped.len(), 3 * 4096);
        assert!(mapped.iter().all(|&byte| byte == 0), "reads as zeros");
        // Not inherited by a fork (the dump's long-lived tracking keeper): VmFlags "dc".
        let flags = vm_flags_of_mapping(tmp.path(), "pages-1.img");
        assert!(flags.split_whitespace().any(|flag| flag == "dc"), "{flags}");
        mapped[..4096].fill(2);
        mapped[2 * 4096..].fill(3);
    }
    assert_eq!(writer.offset(), 4 * 4096);
    writer.write_extra(&[4u8; 4096]).unwrap();
    assert!(!tmp.path().join("pages-1.img").exists());
    writer.finish().unwrap();

    assert_pages_of(tmp.path(), &[1, 2, 0, 3, 4]);
}

/// A mapped region filled partly through memory and partly with `pwrite` (`split`): both land in
/// their place in the file, and a write that would leave the region is refused, not done.
#[test]
fn mapped_region_takes_positional_writes_beside_memory_fills() {
    let (tmp, dir) = temp_dir();
    let mut writer = dir.writer(ImageKind::Pages, 1).unwrap();
    writer.write_extra(&[1u8; 4096]).unwrap();
    {
        let mut mapped = writer.append_mapped(3 * 4096).unwrap().unwrap();
        let (bytes, positional) = mapped.split();
        let (first, rest) = bytes.split_at_mut(4096);
        let (middle, last) = rest.split_at_mut(4096);
        first.fill(2);
        // The last part, ending exactly where the region does, written into its place.
        positional.write_into(last, &[3u8; 4096]).unwrap();
        assert!(last.iter().all(|&byte| byte == 3), "reads as written");
        let error = positional.write_into(middle, &[9u8; 4095]).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
        let mut elsewhere = [0u8; 4096];
        assert!(positional.write_into(&mut elsewhere, &[9u8; 4096]).is_err());
        assert!(
            middle.iter().all(|&byte| byte == 0),
            "refused writes wrote nothing"
        );
    }
    writer.write_extra(&[4u8; 4096]).unwrap();
    writer.finish().unwrap();

    assert_pages_of(tmp.path(), &[1, 2, 0, 3, 4]);
}

/// `pages-1.img` in `dir` holds a page of each of `values`, every byte of a page the same.
fn assert_pages_of(dir: &std::path::Path, values: &[u8]) {
    let bytes = std::fs::read(dir.join("pages-1.img")).unwrap();
    let expected: Vec<u8> = values.iter().flat_map(|&value| [value; 4096]).collect();
    assert_eq!(bytes, expected);
}

/// The VmFlags line of our one mapping of a file in `dir` whose name contains `name`.
fn vm_flags_of_mapping(dir: &std::path::Path, name: &str) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let dir = dir.to_string_lossy();
    let mut lines = smaps.lines();
    while let Some(line) = lines.next() {
        if line.contains(dir.as_ref()) && line.contains(name) {
            return lines
                .find_map(|l| l.strip_prefix("VmFlags:"))
                .unwrap_or_default()
                .to_owned();
        }
    }
    panic!("no mapping of {name} in {dir}");
}

/// Where a mapping cannot start (a framed image, a byte off the page) or there is no file,
/// nothing is appended and the caller is told to write instead; an unfinished image with a mapped
/// region still disappears.
#[test]
fn mapped_appends_decline_without_a_page_aligned_file_offset() {
    let (tmp, dir) = temp_dir();
    let mut in_memory = ImageWriter::in_memory(ImageKind::Pages);
    assert!(in_memory.append_mapped(4096).unwrap().is_none());
    assert_eq!(in_memory.offset(), 0);

    // Entries and their payloads are framed: no mapping in the middle of them.
    let mut framed = dir.writer(ImageKind::PipesData, 0).unwrap();
    framed.ensure_created().unwrap();
    let before = framed.offset();
    assert!(framed.append_mapped(4096).unwrap().is_none());
    assert_eq!(framed.offset(), before);
    drop(framed);

    // A raw image whose next byte is off the page.
    let mut off_page = dir.writer(ImageKind::Pages, 3).unwrap();
    off_page.write_extra(&[1u8; 100]).unwrap();
    assert!(off_page.append_mapped(4096).unwrap().is_none());
    assert_eq!(off_page.offset(), 100);
    drop(off_page);

    let mut pages = dir.writer(ImageKind::Pages, 2).unwrap();
    assert!(pages.append_mapped(0).unwrap().is_none());
    pages.append_mapped(4096).unwrap().unwrap().fill(9);
    drop(pages);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "temporary file left behind: {leftovers:?}"
    );
}

/// A tmpfs mounted on a directory for one test, detached when dropped.
struct TmpfsMount<'p>(&'p std::path::Path);

impl<'p> TmpfsMount<'p> {
    fn new(path: &'p std::path::Path, options: &str) -> Self {
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(options),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", path.display()));
        TmpfsMount(path)
    }
}

impl Drop for TmpfsMount<'_> {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Without room for the whole mapping nothing is mapped, so the caller writes and gets ENOSPC
/// from `write`, instead of a fill that faults half way with EFAULT.
#[test]
fn mapped_appends_decline_when_the_filesystem_lacks_room() {
    let tmp = tempfile::tempdir().unwrap();
    let _mount = TmpfsMount::new(tmp.path(), "size=256k");
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut pages = dir.writer(ImageKind::Pages, 1).unwrap();
    assert!(pages.append_mapped(1 << 20).unwrap().is_none());
    assert_eq!(pages.offset(), 0);
    pages
        .append_mapped(64 << 10)
        .unwrap()
        .expect("64 KiB fit in 256 KiB")
        .fill(7);
    let error = pages.write_extra(&vec![1u8; 1 << 20]).unwrap_err();
    assert!(
        error.to_string().contains("No space left on device"),
        "{error}"
    );
}
