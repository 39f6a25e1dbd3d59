//! Our crit against what CRIU 4.2's crit printed for the fixture images, and
//! the command line behaviours of crit (stdin/stdout, errors, show, info, x).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CRIT: &str = env!("CARGO_BIN_EXE_crit");

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

/// Every fixture image with the JSON CRIU's crit printed for it.
fn fixture_pairs() -> Vec<(PathBuf, PathBuf)> {
    let mut pairs = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".json") || name.ends_with(".md") {
            continue;
        }
        let json = fixtures().join(format!("{}.json", name.trim_end_matches(".img")));
        if json.exists() {
            pairs.push((path, json));
        }
    }
    assert!(
        pairs.len() >= 12,
        "expected at least 12 fixture images, found {}",
        pairs.len()
    );
    pairs
}

fn crit(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(CRIT)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(output: Output, what: &str) -> Vec<u8> {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn debian_crit(args: &[&str]) -> Output {
    assert!(
        Path::new("/usr/bin/crit").exists(),
        "/usr/bin/crit (Debian package criu) is required for this comparison: apt-get install -y criu"
    );
    Command::new("/usr/bin/python3")
        .arg("/usr/bin/crit")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn decode_prints_exactly_what_criu_crit_printed() {
    for (image, json) in fixture_pairs() {
        let ours = ok(
            crit(&["decode", "-i", image.to_str().unwrap()], None),
            image.to_str().unwrap(),
        );
        let expected = std::fs::read(&json).unwrap();
        let ours_value: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        let expected_value: serde_json::Value = serde_json::from_slice(&expected).unwrap();
        assert_eq!(ours_value, expected_value, "{}", image.display());
        assert!(
            ours == expected,
            "{}: same values but different text",
            image.display()
        );
    }
}

#[test]
fn encode_of_decode_gives_back_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    for (image, _) in fixture_pairs() {
        let original = std::fs::read(&image).unwrap();
        for pretty in [false, true] {
            let mut args = vec!["decode", "-i", image.to_str().unwrap()];
            if pretty {
                args.push("--pretty");
            }
            let json = ok(crit(&args, None), "decode");
            // encode from stdin to stdout
            let encoded = ok(crit(&["encode"], Some(&json)), "encode");
            assert!(
                encoded == original,
                "{} (pretty={pretty}): re-encoded bytes differ",
                image.display()
            );
            // and from a file to a file
            let json_path = tmp.path().join("in.json");
            let out_path = tmp.path().join("out.img");
            std::fs::write(&json_path, &json).unwrap();
            ok(
                crit(
                    &[
                        "encode",
                        "-i",
                        json_path.to_str().unwrap(),
                        "-o",
                        out_path.to_str().unwrap(),
                    ],
                    None,
                ),
                "encode",
            );
            assert!(std::fs::read(&out_path).unwrap() == original);
        }
    }
}

#[test]
fn decode_reads_stdin_and_writes_files_without_newline() {
    let image = fixtures().join("pstree.img");
    let bytes = std::fs::read(&image).unwrap();
    let from_stdin = ok(crit(&["decode"], Some(&bytes)), "decode stdin");
    assert_eq!(
        from_stdin,
        std::fs::read(fixtures().join("pstree.json")).unwrap()
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p.json");
    ok(
        crit(
            &[
                "decode",
                "-i",
                image.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            None,
        ),
        "decode -o",
    );
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written, from_stdin[..from_stdin.len() - 1]);
}

#[test]
fn raw_data_is_rejected_like_crit_does() {
    let pages = fixtures().join("pages-1.img");
    let output = crit(&["decode", "-i", pages.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("Unknown magic 0x"), "{stderr}");
    assert!(
        stderr.contains("Maybe you are feeding me an image with raw data(i.e. pages.img)?"),
        "{stderr}"
    );
    let output = crit(&["encode"], Some(b"\x19\x43\x56\x54"));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("Cannot read JSON."));
}

#[test]
fn truncated_image_is_an_error_naming_the_offset() {
    let mut bytes = std::fs::read(fixtures().join("core-31202.img")).unwrap();
    bytes.truncate(bytes.len() - 10);
    let output = crit(&["decode"], Some(&bytes));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("entry at offset 8 claims 1819 bytes but only 1809 remain"),
        "{stderr}"
    );
}

#[test]
fn encode_rejects_missing_required_fields() {
    let output = crit(
        &["encode"],
        Some(br#"{"magic": "PSTREE", "entries": [{"pid": 1}]}"#),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Message pstree_entry is missing required fields: ppid,pgid,sid"),
        "{stderr}"
    );
}

#[test]
fn info_counts_entries() {
    let out = ok(
        crit(
            &[
                "info",
                fixtures().join("pagemap-31202.img").to_str().unwrap(),
            ],
            None,
        ),
        "info",
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\n    \"magic\": \"PAGEMAP\",\n    \"count\": 12\n}\n"
    );
    let out = ok(
        crit(
            &["info", fixtures().join("fdinfo-2.img").to_str().unwrap()],
            None,
        ),
        "info",
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\n    \"magic\": \"FDINFO\",\n    \"count\": 5\n}\n"
    );
}

#[test]
fn show_and_explorers_match_debian_crit_on_criu_images() {
    // Debian's crit (3.17) knows every field of these images.
    for name in [
        "mm-31202.img",
        "files.img",
        "fdinfo-2.img",
        "pstree.img",
        "fs-31202.img",
        "ids-31202.img",
    ] {
        let path = fixtures().join(name);
        let theirs = debian_crit(&["show", path.to_str().unwrap()]);
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = ok(crit(&["show", path.to_str().unwrap()], None), name);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs.stdout).unwrap(),
            "{name}"
        );
    }
    for what in ["ps", "fds", "mems"] {
        let dir = fixtures();
        let theirs = debian_crit(&["x", dir.to_str().unwrap(), what]);
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = ok(crit(&["x", dir.to_str().unwrap(), what], None), what);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs.stdout).unwrap(),
            "x {what}"
        );
    }
}

#[test]
fn explore_rss_lists_pagemap_runs_against_vmas() {
    let out = String::from_utf8(ok(
        crit(&["x", fixtures().to_str().unwrap(), "rss"], None),
        "rss",
    ))
    .unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("31202"));
    // First run: one page of the executable's text mapping (5 pages, /usr/bin/sleep).
    assert_eq!(
        lines.next(),
        Some("\t55c1cedba000 / 1        55c1cedba000 / 5        /usr/bin/sleep")
    );
    assert!(out.matches(" / ").count() >= 24, "{out}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        crit(&["x", "/tmp", "nonsense"], None).status.code(),
        Some(2)
    );
    assert_eq!(crit(&["frobnicate"], None).status.code(), Some(2));
    assert_eq!(crit(&["info"], None).status.code(), Some(2));
}

#[test]
fn show_nopl_replaces_payloads_by_their_size() {
    use criu_image::{ImageDir, ImageKind};
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut writer = dir.writer(ImageKind::PipesData, 0).unwrap();
    for (id, len) in [(1u32, 5usize), (2, 3000)] {
        writer
            .write_entry(&criu_proto::PipeDataEntry {
                pipe_id: id,
                bytes: len as u32,
                size: None,
            })
            .unwrap();
        writer.write_extra(&vec![b'x'; len]).unwrap();
    }
    writer.finish().unwrap();
    let path = tmp.path().join("pipes-data.img");
    let shown = String::from_utf8(ok(
        crit(&["show", path.to_str().unwrap(), "--nopl"], None),
        "show",
    ))
    .unwrap();
    assert!(shown.contains("\"extra\": \"... <5B>\""), "{shown}");
    assert!(shown.contains("\"extra\": \"... <2.9KB>\""), "{shown}");
    let theirs = debian_crit(&["show", path.to_str().unwrap(), "--nopl"]);
    assert_eq!(shown, String::from_utf8(theirs.stdout).unwrap());
    let full = String::from_utf8(ok(
        crit(&["decode", "-i", path.to_str().unwrap()], None),
        "decode",
    ))
    .unwrap();
    assert!(full.contains("\"extra\": \"eHh4eHg=\\n\""), "{full}");
}

#[test]
fn explorer_on_a_missing_directory_fails_cleanly() {
    let output = crit(&["x", "/nonexistent-images-dir", "ps"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent-images-dir/pstree.img"));
}
