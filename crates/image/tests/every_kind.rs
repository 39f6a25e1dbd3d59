//! Every image kind round-trips through ImageDir: entries of its own message
//! type (filled with non-default values for every field, built from the proto
//! descriptors), written, read back and compared; and the magic table agrees
//! with the one Debian's pycriu was generated from.

use criu_image::{HeadMagic, IdFormat, ImageDir, ImageKind};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};

fn pool() -> DescriptorPool {
    DescriptorPool::decode(criu_proto::FILE_DESCRIPTOR_SET).unwrap()
}

fn sample_value(kind: &Kind, seed: u64, depth: usize) -> Option<Value> {
    Some(match kind {
        Kind::Double => Value::F64(seed as f64),
        Kind::Float => Value::F32(seed as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-(seed as i32) - 1),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-(seed as i64) * 1_000_000_007),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(seed as u32 + 1),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::MAX - seed),
        Kind::Bool => Value::Bool(true),
        Kind::String => Value::String(format!("value-{seed}")),
        Kind::Bytes => Value::Bytes(vec![seed as u8; 3].into()),
        Kind::Enum(e) => Value::EnumNumber(e.values().last().map(|v| v.number()).unwrap_or(0)),
        Kind::Message(m) => {
            if depth > 4 {
                return None;
            }
            Value::Message(sample_message(m, seed, depth + 1))
        }
    })
}

fn sample_message(desc: &MessageDescriptor, seed: u64, depth: usize) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    for (i, field) in desc.fields().enumerate() {
        let seed = seed + i as u64;
        if field.is_list() {
            let values: Vec<Value> = (0..2)
                .filter_map(|n| sample_value(&field.kind(), seed + n, depth))
                .collect();
            if !values.is_empty() {
                message.set_field(&field, Value::List(values));
            }
        } else if let Some(value) = sample_value(&field.kind(), seed, depth) {
            if field.containing_oneof().is_some() && i % 2 == 1 {
                continue;
            }
            message.set_field(&field, value);
        }
    }
    message
}

#[test]
fn every_entry_message_exists_in_the_descriptors() {
    let pool = pool();
    for kind in ImageKind::all() {
        match kind.entry_message() {
            Some(name) => assert!(
                pool.get_message_by_name(name).is_some(),
                "{kind}: no message {name}"
            ),
            None => assert!(
                kind.is_raw() || matches!(kind, ImageKind::PagesOld | ImageKind::ShmPagesOld),
                "{kind} has a magic but no message"
            ),
        }
    }
}

#[test]
fn every_kind_round_trips_through_a_directory() {
    let pool = pool();
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    for (n, kind) in ImageKind::all().enumerate() {
        if matches!(
            kind,
            ImageKind::PagesOld | ImageKind::ShmPagesOld | ImageKind::BinfmtMiscOld
        ) {
            // Read-only legacy kinds (ancient page formats, names shared with current kinds).
            continue;
        }
        let id = match kind.id_format() {
            IdFormat::None => 0,
            _ => 1000 + n as u64,
        };
        let mut writer = dir.writer(kind, id).unwrap();
        let Some(message_name) = kind.entry_message() else {
            // Raw images: bytes in, the same bytes out.
            let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + n as u32) as u8).collect();
            writer.write_extra(&data).unwrap();
            writer.finish().unwrap();
            let name = kind.file_name(id).unwrap();
            assert!(
                std::fs::read(tmp.path().join(&name)).unwrap() == data,
                "{name}: raw content differs"
            );
            continue;
        };
        let desc = pool.get_message_by_name(message_name).unwrap();
        let entries: Vec<DynamicMessage> =
            (0..3).map(|i| sample_message(&desc, i * 10, 0)).collect();
        for entry in &entries {
            writer.write_entry(entry).unwrap();
            writer.write_extra(b"xyz").unwrap();
        }
        writer.finish().unwrap();

        let name = kind.file_name(id).unwrap();
        let bytes = std::fs::read(tmp.path().join(&name)).unwrap();
        let magic_len = kind.magic_len() as usize;
        match kind.head_magic() {
            HeadMagic::None => assert_eq!(magic_len, 4, "{kind}"),
            head => assert_eq!(bytes[..4], head.value().unwrap().to_le_bytes(), "{kind}"),
        }
        assert_eq!(
            bytes[magic_len - 4..magic_len],
            kind.type_magic().unwrap().to_le_bytes(),
            "{kind}"
        );

        let mut reader = dir.reader_required(kind, id).unwrap();
        for (i, expected) in entries.iter().enumerate() {
            let payload = reader
                .next_payload()
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: entry {i} missing"));
            let decoded = DynamicMessage::decode(desc.clone(), payload).unwrap();
            assert_eq!(
                decoded.encode_to_vec(),
                expected.encode_to_vec(),
                "{name}: entry {i}"
            );
            assert_eq!(&decoded, expected, "{name}: entry {i}");
            assert_eq!(reader.read_extra(3).unwrap(), b"xyz");
        }
        assert!(
            reader.next_payload().unwrap().is_none(),
            "{name}: trailing data"
        );
    }
}

/// pycriu's magic.py is generated from CRIU's magic.h (3.17 here); every name
/// in it must have the same value in our table. This checks our table against
/// an independent copy of magic.h.
#[test]
fn magic_table_matches_debian_pycriu() {
    let path = "/usr/lib/python3/dist-packages/pycriu/images/magic.py";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path} is needed to cross-check magics (install the criu package): {e}")
    });
    let mut checked = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("by_name['") else {
            continue;
        };
        let (name, value) = rest.split_once("'] = ").unwrap();
        let value: u32 = value.trim().parse().unwrap();
        match name {
            "IMG_COMMON" => assert_eq!(value, criu_image::IMG_COMMON_MAGIC),
            "IMG_SERVICE" => assert_eq!(value, criu_image::IMG_SERVICE_MAGIC),
            "CRTOOLS_IMAGES_V1_1" | "KDAT" => continue,
            _ => {
                let kind = ImageKind::from_magic_name(name).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(kind.type_magic(), Some(value), "{name}");
            }
        }
        checked += 1;
    }
    assert!(checked > 60, "only {checked} magics found in {path}");
}
