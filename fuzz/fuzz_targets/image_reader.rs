//! Feeds arbitrary bytes to the image layer as every image kind: the framing
//! reader (with and without the kind's magics in front), dynamic decoding of
//! each entry as the kind's message, extra payload reads, pagemap parsing, and
//! crit's whole-image decoder. Nothing may panic or allocate beyond the input.
#![no_main]

use std::sync::OnceLock;

use criu_crit::{decode_image, DecodeOptions, Schema};
use criu_image::{ImageKind, ImageReader, PagemapReader};
use libfuzzer_sys::fuzz_target;
use prost_reflect::DynamicMessage;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::load().expect("descriptor set loads"))
}

fn with_magics(kind: ImageKind, data: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(data.len() + 8);
    for word in [kind.head_magic().value(), kind.type_magic()]
        .into_iter()
        .flatten()
    {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn drain(kind: ImageKind, mut reader: ImageReader) {
    if matches!(kind, ImageKind::Pagemap | ImageKind::ShmemPagemap) {
        if let Ok(mut pagemap) = PagemapReader::from_reader(reader) {
            while let Ok(Some(_)) = pagemap.next_run() {}
        }
        return;
    }
    let desc = kind
        .entry_message()
        .and_then(|name| schema().message(name).ok());
    loop {
        let payload = match reader.next_payload() {
            Ok(Some(payload)) => payload.to_vec(),
            _ => return,
        };
        if let Some(desc) = &desc {
            let _ = DynamicMessage::decode(desc.clone(), payload.as_slice());
        }
        // Pretend the entry announced an extra payload of a length taken from it.
        if let Some(first) = payload.first() {
            let _ = reader.read_extra(u64::from(*first) * 16);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_image(
        schema(),
        "fuzz.img",
        data.to_vec(),
        DecodeOptions {
            pretty: true,
            no_payload: false,
        },
    );
    let _ = decode_image(
        schema(),
        "fuzz.img",
        data.to_vec(),
        DecodeOptions {
            pretty: false,
            no_payload: true,
        },
    );
    if let Ok(reader) = ImageReader::detect_bytes("fuzz.img", data.to_vec()) {
        drain(reader.kind(), reader);
    }
    for kind in ImageKind::all().filter(|k| !k.is_raw()) {
        if let Ok(reader) = ImageReader::from_bytes("fuzz.img", kind, with_magics(kind, data)) {
            drain(kind, reader);
        }
        if let Ok(reader) = ImageReader::from_bytes("fuzz.img", kind, data.to_vec()) {
            drain(kind, reader);
        }
    }
});
