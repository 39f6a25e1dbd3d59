//! Decodes every image of a dump written by CRIU 4.2 (tests/fixtures/
//! criu42-sleep, a copy of the project's reference dump) into our types.
//!
//! Three checks per entry:
//! - the typed prost struct re-encodes to exactly the bytes CRIU wrote (so no
//!   field is unknown to us and the field order matches protobuf-c);
//! - decoded through `FILE_DESCRIPTOR_SET` and printed as JSON, the entry
//!   equals what CRIU 4.2's own `crit decode` printed (X.json beside X.img);
//! - the file is consumed exactly, entry by entry.

use std::path::{Path, PathBuf};

use criu_proto::*;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value as Json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/criu42-sleep")
}

/// Decodes one entry into its typed struct and encodes it again.
type Reencoder = fn(&[u8]) -> Vec<u8>;

/// How an image file is laid out: magic words, then entry types in order
/// (the last type repeats until the end of the file).
struct ImageLayout {
    file: &'static str,
    magic_words: usize,
    crit_magic: &'static str,
    entry_types: &'static [&'static str],
    reencode: &'static [Reencoder],
}

fn reencode<M: Message + Default>(bytes: &[u8]) -> Vec<u8> {
    M::decode(bytes)
        .unwrap_or_else(|err| panic!("{}: {err}", std::any::type_name::<M>()))
        .encode_to_vec()
}

const LAYOUTS: &[ImageLayout] = &[
    ImageLayout {
        file: "inventory.img",
        magic_words: 1,
        crit_magic: "INVENTORY",
        entry_types: &["inventory_entry"],
        reencode: &[reencode::<InventoryEntry>],
    },
    ImageLayout {
        file: "pstree.img",
        magic_words: 2,
        crit_magic: "PSTREE",
        entry_types: &["pstree_entry"],
        reencode: &[reencode::<PstreeEntry>],
    },
    ImageLayout {
        file: "core-31202.img",
        magic_words: 2,
        crit_magic: "CORE",
        entry_types: &["core_entry"],
        reencode: &[reencode::<CoreEntry>],
    },
    ImageLayout {
        file: "ids-31202.img",
        magic_words: 2,
        crit_magic: "IDS",
        entry_types: &["task_kobj_ids_entry"],
        reencode: &[reencode::<TaskKobjIdsEntry>],
    },
    ImageLayout {
        file: "mm-31202.img",
        magic_words: 2,
        crit_magic: "MM",
        entry_types: &["mm_entry"],
        reencode: &[reencode::<MmEntry>],
    },
    ImageLayout {
        file: "pagemap-31202.img",
        magic_words: 2,
        crit_magic: "PAGEMAP",
        entry_types: &["pagemap_head", "pagemap_entry"],
        reencode: &[reencode::<PagemapHead>, reencode::<PagemapEntry>],
    },
    ImageLayout {
        file: "fs-31202.img",
        magic_words: 2,
        crit_magic: "FS",
        entry_types: &["fs_entry"],
        reencode: &[reencode::<FsEntry>],
    },
    ImageLayout {
        file: "fdinfo-2.img",
        magic_words: 2,
        crit_magic: "FDINFO",
        entry_types: &["fdinfo_entry"],
        reencode: &[reencode::<FdinfoEntry>],
    },
    ImageLayout {
        file: "files.img",
        magic_words: 2,
        crit_magic: "FILES",
        entry_types: &["file_entry"],
        reencode: &[reencode::<FileEntry>],
    },
    ImageLayout {
        file: "seccomp.img",
        magic_words: 2,
        crit_magic: "SECCOMP",
        entry_types: &["seccomp_entry"],
        reencode: &[reencode::<SeccompEntry>],
    },
    ImageLayout {
        file: "timens-0.img",
        magic_words: 2,
        crit_magic: "TIMENS",
        entry_types: &["timens_entry"],
        reencode: &[reencode::<TimensEntry>],
    },
    ImageLayout {
        file: "stats-dump",
        magic_words: 2,
        crit_magic: "STATS",
        entry_types: &["stats_entry"],
        reencode: &[reencode::<StatsEntry>],
    },
];

/// Splits an image into its entries' raw bytes (after the magic words).
fn split_entries(layout: &ImageLayout, image: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = &image[4 * layout.magic_words..];
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .unwrap_or_else(|| panic!("{}: truncated size word", layout.file));
        let len = usize::try_from(u32::from_le_bytes(*len)).expect("u32 fits usize");
        assert!(
            tail.len() >= len,
            "{}: entry of {len} bytes with {} left",
            layout.file,
            tail.len()
        );
        entries.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    entries
}

fn crit_json(layout: &ImageLayout) -> Vec<Json> {
    let json_name = format!("{}.json", layout.file.trim_end_matches(".img"));
    let text = std::fs::read_to_string(fixtures().join(&json_name))
        .unwrap_or_else(|err| panic!("{json_name}: {err}"));
    let json: Json = serde_json::from_str(&text).expect("crit JSON parses");
    assert_eq!(json["magic"], layout.crit_magic, "{json_name}");
    json["entries"].as_array().expect("entries array").clone()
}

#[test]
fn criu_4_2_images_decode_and_reencode_identically() {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("descriptor set");
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(true);
    for layout in LAYOUTS {
        let image = std::fs::read(fixtures().join(layout.file))
            .unwrap_or_else(|err| panic!("{}: {err}", layout.file));
        let entries = split_entries(layout, &image);
        let expected = crit_json(layout);
        assert_eq!(
            entries.len(),
            expected.len(),
            "{}: entry count",
            layout.file
        );
        assert!(!entries.is_empty(), "{}: no entries", layout.file);
        for (index, (raw, crit)) in entries.iter().zip(&expected).enumerate() {
            let kind = index.min(layout.entry_types.len() - 1);
            assert_eq!(
                (layout.reencode[kind])(raw),
                *raw,
                "{} entry {index}: typed re-encoding differs from CRIU's bytes",
                layout.file
            );
            let descriptor = pool
                .get_message_by_name(layout.entry_types[kind])
                .expect("entry type in the pool");
            let dynamic = DynamicMessage::decode(descriptor, raw.as_slice())
                .unwrap_or_else(|err| panic!("{} entry {index}: {err}", layout.file));
            let ours = dynamic
                .serialize_with_options(serde_json::value::Serializer, &options)
                .expect("serialize to JSON");
            assert_eq!(
                &ours, crit,
                "{} entry {index}: JSON differs from crit's",
                layout.file
            );
        }
    }
}

#[test]
fn typed_fields_hold_what_crit_shows() {
    let read_one = |layout_file: &str| -> Vec<Vec<u8>> {
        let layout = LAYOUTS
            .iter()
            .find(|l| l.file == layout_file)
            .expect("layout");
        let image = std::fs::read(fixtures().join(layout.file)).expect("fixture");
        split_entries(layout, &image)
    };

    let pstree = PstreeEntry::decode(read_one("pstree.img")[0].as_slice()).expect("pstree");
    assert_eq!(
        (pstree.pid, pstree.ppid, pstree.threads.as_slice()),
        (31202, 0, &[31202][..])
    );

    let core = CoreEntry::decode(read_one("core-31202.img")[0].as_slice()).expect("core");
    assert_eq!(core.mtype(), core_entry::March::X8664);
    let tc = core.tc.as_ref().expect("task core");
    assert_eq!(tc.comm, "sleep");
    let thread_info = core.thread_info.as_ref().expect("x86 thread info");
    assert_eq!(thread_info.gpregs.mode(), UserX86RegsMode::Native);
    assert_eq!(thread_info.gpregs.orig_ax, 230, "clock_nanosleep");
    let xsave = thread_info.fpregs.xsave.as_ref().expect("xsave");
    assert!(xsave.cet.is_some(), "CRIU 4.2 writes the CET component");
    assert!(core
        .thread_core
        .as_ref()
        .and_then(|t| t.rseq_entry.as_ref())
        .is_some());

    let inventory =
        InventoryEntry::decode(read_one("inventory.img")[0].as_slice()).expect("inventory");
    assert_eq!(inventory.img_version, 2);
    assert_eq!(inventory.lsmtype(), Lsmtype::NoLsm);
    assert!(inventory
        .plugins_entry
        .is_some_and(|p| p.plugins.is_empty()));

    let files: Vec<FileEntry> = read_one("files.img")
        .iter()
        .map(|raw| FileEntry::decode(raw.as_slice()).expect("file entry"))
        .collect();
    let sleep = files
        .iter()
        .find_map(|f| f.reg.as_ref().filter(|r| r.name == "/usr/bin/sleep"))
        .expect("the executable is a regular file entry");
    assert_eq!(sleep.build_id.len(), 5);
    assert!(files
        .iter()
        .any(|f| f.r#type() == FdTypes::Pipe && f.pipe.is_some()));

    let pagemap = read_one("pagemap-31202.img");
    let head = PagemapHead::decode(pagemap[0].as_slice()).expect("head");
    assert_eq!(head.pages_id, 1);
    let pages: u64 = pagemap[1..]
        .iter()
        .map(|raw| {
            PagemapEntry::decode(raw.as_slice())
                .expect("pagemap entry")
                .nr_pages()
        })
        .sum();
    assert_eq!(pages, 27, "stats-dump says 27 pages were written");
}
