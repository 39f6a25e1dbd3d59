//! Cross-checks with Debian's crit (CRIU 3.17, Python): for every image kind
//! it has a handler for, an image written by OUR ImageWriter must decode to
//! exactly the JSON our crit prints (compact and --pretty), and the JSON
//! Debian's crit encodes must give back the very bytes we wrote, readable by
//! our reader. 3.17's protos predate some 4.2 fields, so the sample entries
//! use only the fields (same name and number) and enum values both know.
//! These tests FAIL if /usr/bin/crit is missing: install the criu package.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use criu_crit::{decode_image, encode_image, DecodeOptions, Schema};
use criu_image::{ImageDir, ImageKind, ImageWriter};
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};
use serde_json::Value as JsonValue;

const DUMP_DESCRIPTORS: &str = r#"
import json, sys
from pycriu.images import pb, images
from google.protobuf.descriptor import FieldDescriptor as FD
out = {}
def walk(d):
    if d.full_name in out:
        return
    fields = {}
    out[d.full_name] = fields
    for f in d.fields:
        info = {"number": f.number}
        if f.type == FD.TYPE_ENUM:
            info["enum"] = [v.name for v in f.enum_type.values]
        if f.type == FD.TYPE_MESSAGE:
            info["message"] = f.message_type.full_name
            walk(f.message_type)
        fields[f.name] = info
for name in dir(pb):
    d = getattr(getattr(pb, name), 'DESCRIPTOR', None)
    if d is not None and hasattr(d, 'fields'):
        walk(d)
print(json.dumps({"messages": out, "handlers": sorted(images.handlers.keys())}))
"#;

fn require_debian_crit() {
    assert!(
        Path::new("/usr/bin/crit").exists() && Path::new("/usr/bin/python3").exists(),
        "Debian's crit is required for these cross-checks (/usr/bin/crit with /usr/bin/python3): apt-get install -y criu"
    );
}

/// What Debian's pycriu knows: message name -> field name -> (number, enum names, message type).
struct Theirs {
    messages: HashMap<String, HashMap<String, JsonValue>>,
    handlers: Vec<String>,
}

fn theirs() -> Theirs {
    require_debian_crit();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(DUMP_DESCRIPTORS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pycriu descriptor dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: JsonValue = serde_json::from_slice(&out.stdout).unwrap();
    let messages = value["messages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, fields)| {
            let fields = fields
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (name.clone(), fields)
        })
        .collect();
    let handlers = value["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    Theirs { messages, handlers }
}

struct Sampler<'a> {
    schema: &'a Schema,
    theirs: &'a Theirs,
}

impl Sampler<'_> {
    /// A message with every field both sides know set to a non-default value.
    fn message(&self, desc: &MessageDescriptor, seed: u64, depth: usize) -> DynamicMessage {
        let mut message = DynamicMessage::new(desc.clone());
        let Some(their_fields) = self.theirs.messages.get(desc.full_name()) else {
            return message;
        };
        for (i, field) in desc.fields().enumerate() {
            let Some(theirs) = their_fields.get(field.name()) else {
                continue;
            };
            if theirs["number"].as_u64() != Some(u64::from(field.number())) {
                continue;
            }
            let seed = seed.wrapping_mul(31).wrapping_add(i as u64);
            let ipadd = self.schema.field_options(&field).is_some_and(|o| o.ipadd);
            let count = if ipadd { 4 } else { 2 };
            let mut values = Vec::new();
            for n in 0..if field.is_list() { count } else { 1 } {
                if let Some(v) = self.value(&field.kind(), theirs, seed.wrapping_add(n), depth) {
                    values.push(v);
                }
            }
            if values.is_empty() {
                continue;
            }
            // Flag bits named only by the 4.2 tables (MAP_DROPPABLE, VMA_AREA_MEMFD,
            // _SHSTK, _UPROBES) would print differently in 3.17: leave them out.
            let version_specific = match self
                .schema
                .field_options(&field)
                .and_then(|o| o.flags.as_deref())
            {
                Some("mmap.flags") => 0x08,
                Some("mmap.status") => (1 << 14) | (1 << 15) | (1 << 17),
                _ => 0,
            };
            if version_specific != 0 {
                for value in &mut values {
                    if let Value::U32(bits) = value {
                        *bits &= !version_specific;
                    }
                }
            }
            if field.is_list() {
                message.set_field(&field, Value::List(values));
            } else {
                message.set_field(&field, values.remove(0));
            }
        }
        message
    }

    fn value(&self, kind: &Kind, theirs: &JsonValue, seed: u64, depth: usize) -> Option<Value> {
        Some(match kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-((seed % 1000) as i32) - 3),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                Value::I64(-((seed % 1_000_000) as i64) * 1_000_003)
            }
            Kind::Uint32 | Kind::Fixed32 => {
                Value::U32(0x8000_0000 | (seed as u32).wrapping_mul(2654435761))
            }
            Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::MAX - (seed % 1_000_000) * 977),
            Kind::Bool => Value::Bool(seed % 2 == 0),
            Kind::String => Value::String(format!("name-{seed} \"quoted\" é")),
            Kind::Bytes => Value::Bytes(
                (0..(seed % 90) as u8 + 1)
                    .map(|b| b.wrapping_mul(37) ^ b'=')
                    .collect::<Vec<u8>>()
                    .into(),
            ),
            Kind::Enum(e) => {
                let names: Vec<&str> = theirs["enum"]
                    .as_array()?
                    .iter()
                    .filter_map(|n| n.as_str())
                    .collect();
                let value = e
                    .values()
                    .filter(|v| names.contains(&v.name()))
                    .nth((seed % 2) as usize)
                    .or_else(|| e.values().find(|v| names.contains(&v.name())))?;
                Value::EnumNumber(value.number())
            }
            Kind::Message(sub) => {
                if depth >= 4 {
                    return None;
                }
                Value::Message(self.message(sub, seed.wrapping_add(7), depth + 1))
            }
            Kind::Double | Kind::Float => return None,
        })
    }
}

fn set_u32(message: &mut DynamicMessage, name: &str, value: u32) {
    message.set_field_by_name(name, Value::U32(value));
}

fn set_u64(message: &mut DynamicMessage, name: &str, value: u64) {
    message.set_field_by_name(name, Value::U64(value));
}

/// Writes a sample image of `kind` into `dir` with our ImageWriter and returns its file name.
fn write_sample(dir: &ImageDir, sampler: &Sampler<'_>, kind: ImageKind) -> String {
    let schema = sampler.schema;
    let id = if kind.id_format() == criu_image::IdFormat::None {
        0
    } else {
        77
    };
    let mut writer = dir.writer(kind, id).unwrap();
    let sample = |name: &str, seed: u64| sampler.message(&schema.message(name).unwrap(), seed, 0);
    let payload = |len: usize, seed: u8| {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed) ^ 0x5a)
            .collect::<Vec<u8>>()
    };
    match kind {
        ImageKind::Pagemap => {
            writer.write_entry(&sample("pagemap_head", 1)).unwrap();
            for seed in 2..5 {
                writer.write_entry(&sample("pagemap_entry", seed)).unwrap();
            }
        }
        ImageKind::GhostFile => {
            let mut head = sample("ghost_file_entry", 1);
            head.set_field_by_name("chunks", Value::Bool(false));
            writer.write_entry(&head).unwrap();
            writer.write_extra(&payload(300, 3)).unwrap();
        }
        _ => {
            let message_name = kind.entry_message().unwrap();
            for seed in 1..3u64 {
                let mut entry = sample(message_name, seed);
                let n = seed as usize * 5;
                let extra: Vec<u8> = match kind {
                    ImageKind::PipesData | ImageKind::FifoData => {
                        set_u32(&mut entry, "bytes", n as u32);
                        payload(n, 7)
                    }
                    ImageKind::SkQueues => {
                        set_u32(&mut entry, "length", n as u32);
                        payload(n, 9)
                    }
                    ImageKind::TcpStream => {
                        set_u32(&mut entry, "inq_len", n as u32);
                        set_u32(&mut entry, "outq_len", 3);
                        payload(n + 3, 11)
                    }
                    ImageKind::BpfmapData => {
                        set_u32(&mut entry, "keys_bytes", n as u32);
                        set_u32(&mut entry, "values_bytes", 4);
                        payload(n + 4, 13)
                    }
                    ImageKind::IpcnsSem => {
                        set_u32(&mut entry, "nsems", 3);
                        let mut data: Vec<u8> = [7u16, 0xffff, 300]
                            .iter()
                            .flat_map(|v| v.to_le_bytes())
                            .collect();
                        data.resize(8, 0);
                        data
                    }
                    ImageKind::IpcnsShm => {
                        set_u64(&mut entry, "size", 6);
                        let mut data = payload(6, 5);
                        data.resize(8, 0);
                        data
                    }
                    ImageKind::IpcnsMsg => {
                        set_u32(&mut entry, "qnum", 2);
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                writer.write_entry(&entry).unwrap();
                writer.write_extra(&extra).unwrap();
                if kind == ImageKind::IpcnsMsg {
                    for m in 0..2u64 {
                        let mut msg = sample("ipc_msg", 40 + m);
                        set_u32(&mut msg, "msize", 5 + m as u32);
                        writer.write_entry(&msg).unwrap();
                        let mut data = payload(5 + m as usize, 3);
                        data.resize(8, 0);
                        writer.write_extra(&data).unwrap();
                    }
                }
            }
        }
    }
    writer.finish().unwrap();
    kind.file_name(id).unwrap()
}

fn debian(args: &[&str]) -> Vec<u8> {
    let out = Command::new("/usr/bin/python3")
        .arg("/usr/bin/crit")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debian crit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn images_we_write_decode_identically_in_debian_crit() {
    let theirs = theirs();
    let schema = Schema::load().unwrap();
    let sampler = Sampler {
        schema: &schema,
        theirs: &theirs,
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut checked = Vec::new();
    for handler in &theirs.handlers {
        // MEMFD_FILE has a handler but no magic, so no image can carry it.
        let Ok(kind) = ImageKind::from_magic_name(handler) else {
            assert_eq!(
                handler, "MEMFD_FILE",
                "Debian crit knows {handler}, we do not"
            );
            continue;
        };
        let name = write_sample(&dir, &sampler, kind);
        let path = tmp.path().join(&name);
        let path_str = path.to_str().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for pretty in [false, true] {
            let mut args = vec!["decode", "-i", path_str];
            if pretty {
                args.push("--pretty");
            }
            let their_json = String::from_utf8(debian(&args)).unwrap();
            let ours = decode_image(
                &schema,
                &name,
                bytes.clone(),
                DecodeOptions {
                    pretty,
                    no_payload: false,
                },
            )
            .unwrap();
            let our_json = format!("{}\n", ours.to_python_string(pretty.then_some(4)));
            if our_json != their_json {
                let keep = std::env::temp_dir().join(format!("crit-mismatch-{name}-{pretty}"));
                std::fs::write(keep.with_extension("ours"), &our_json).unwrap();
                std::fs::write(keep.with_extension("theirs"), &their_json).unwrap();
                panic!(
                    "{name} (pretty={pretty}): outputs differ, kept in {}.{{ours,theirs}}",
                    keep.display()
                );
            }
            // Their JSON, encoded by them, is our image byte for byte, and reads back.
            // (pycriu's bpfmap-data and ipcns-shm encoders crash: base64.decodebytes(str).)
            if matches!(kind, ImageKind::BpfmapData | ImageKind::IpcnsShm) {
                continue;
            }
            let json_path = tmp.path().join(format!("{name}.{pretty}.json"));
            std::fs::write(&json_path, &their_json).unwrap();
            let out_path = tmp.path().join(format!("{name}.{pretty}.back"));
            let encoded = Command::new("/usr/bin/python3")
                .args([
                    "/usr/bin/crit",
                    "encode",
                    "-i",
                    json_path.to_str().unwrap(),
                    "-o",
                    out_path.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            if !encoded.status.success() {
                // 3.17 calls pagemap_entry field 2 `nr_pages` (required); 4.2 renamed it
                // `compat_nr_pages`, so JSON with the 4.2 name lacks it for 3.17.
                let stderr = String::from_utf8_lossy(&encoded.stderr);
                assert!(
                    kind == ImageKind::Pagemap
                        && stderr.contains("pagemap_entry is missing required fields: nr_pages"),
                    "debian crit encode of {name}: {stderr}"
                );
                continue;
            }
            let their_bytes = std::fs::read(&out_path).unwrap();
            assert!(
                their_bytes == bytes,
                "{name} (pretty={pretty}): Debian's encoding differs from our image"
            );
            let json_value: JsonValue = serde_json::from_str(&their_json).unwrap();
            let our_bytes = encode_image(&schema, &json_value);
            // Our encoder checks required fields, which these partial samples may lack.
            if let Ok(our_bytes) = our_bytes {
                assert!(
                    our_bytes == bytes,
                    "{name} (pretty={pretty}): our encoding of their JSON differs"
                );
            }
        }
        checked.push(handler.clone());
    }
    assert!(
        checked.len() >= 60,
        "only {} kinds checked: {checked:?}",
        checked.len()
    );
}

#[test]
fn debian_encoded_fixture_json_reads_back_with_our_reader() {
    require_debian_crit();
    let fixtures = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/criu42-sleep"
    ));
    let tmp = tempfile::tempdir().unwrap();
    let schema = Schema::load().unwrap();
    // Images whose fields all exist in 3.17 (core/pagemap/inventory have 4.2-only fields).
    for name in [
        "pstree",
        "fdinfo-2",
        "files",
        "fs-31202",
        "ids-31202",
        "mm-31202",
        "seccomp",
        "timens-0",
    ] {
        let json = fixtures.join(format!("{name}.json"));
        let out = tmp.path().join(format!("{name}.img"));
        debian(&[
            "encode",
            "-i",
            json.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        let bytes = std::fs::read(&out).unwrap();
        let original = std::fs::read(fixtures.join(format!("{name}.img"))).unwrap();
        assert!(
            bytes == original,
            "{name}: Debian's crit re-encoded differently"
        );
        let ours = decode_image(&schema, name, bytes, DecodeOptions::default()).unwrap();
        let expected: JsonValue = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(ours.to_serde(), expected, "{name}");
    }
    // And through the typed reader.
    let dir = ImageDir::open(tmp.path()).unwrap();
    let tasks: Vec<criu_proto::PstreeEntry> = dir
        .reader_required(ImageKind::Pstree, 0)
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(tasks[0].pid, 31202);
    let mut writer = ImageWriter::in_memory(ImageKind::Pstree);
    writer.write_entry(&tasks[0]).unwrap();
    assert_eq!(
        writer.into_bytes().unwrap(),
        std::fs::read(tmp.path().join("pstree.img")).unwrap()
    );
}
