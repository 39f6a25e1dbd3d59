//! Corrupted images never make crit's decoder panic: every mutation of every
//! fixture ends in JSON or in a typed error.

use criu_crit::{decode_image, image_info, DecodeOptions, Schema};

fn fixture_images() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/criu42-sleep"
    ));
    assert!(
        dir.is_dir(),
        "fixture directory {} is missing",
        dir.display()
    );
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".json") || name.ends_with(".md") || name.starts_with("pages-") {
            continue;
        }
        images.push((name, std::fs::read(&path).unwrap()));
    }
    images
}

#[test]
fn mutated_fixtures_decode_or_fail_cleanly() {
    let schema = Schema::load().unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    let mut decoded = 0;
    for (name, original) in fixture_images() {
        for round in 0..300 {
            let mut bytes = original.clone();
            match round % 4 {
                0 => {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] ^= 1 << (next() % 8);
                }
                1 => bytes.truncate((next() as usize) % bytes.len()),
                2 if bytes.len() > 12 => {
                    // Corrupt the first entry's size word.
                    let size = (next() as u32).to_le_bytes();
                    bytes[8..12].copy_from_slice(&size);
                }
                _ => {
                    for _ in 0..4 {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] = next() as u8;
                    }
                }
            }
            let pretty = round % 2 == 0;
            match decode_image(
                &schema,
                &name,
                bytes.clone(),
                DecodeOptions {
                    pretty,
                    no_payload: false,
                },
            ) {
                Ok(json) => {
                    decoded += 1;
                    let _ = json.to_python_string(pretty.then_some(4));
                }
                Err(err) => {
                    errors += 1;
                    assert!(!err.to_string().is_empty());
                }
            }
            let _ = image_info(&schema, &name, bytes);
        }
    }
    assert!(
        errors > 100 && decoded > 100,
        "errors {errors}, decoded {decoded}"
    );
}
