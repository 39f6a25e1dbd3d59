//! Our `.proto` files against CRIU's own `images/*.proto`: compiled with
//! protox (no source info, no imports), the two descriptor sets must be
//! byte-identical: same files, imports, messages, fields, numbers, types,
//! labels, defaults, enums and `(criu)` options, in the same order.
//!
//! Needs a CRIU git checkout, so it is ignored by default. Run it with
//! `CRIU_GIT_DIR=/path/to/criu(.git) cargo test -p criu-proto --test upstream -- --ignored`
//! (default: the project machines' mirror, /work/.mirror/checkpoint-restore+criu/repo)
//! and optionally `CRIU_GIT_REF` (default `v4.2`).

use std::path::Path;
use std::process::Command;

fn git(dir: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("git {args:?} in {dir}: {err}"));
    assert!(
        output.status.success(),
        "git {args:?} in {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn compile(dir: &Path) -> Vec<u8> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".proto"))
        .collect();
    files.sort();
    let mut compiler = protox::Compiler::new([dir]).expect("include dir");
    compiler.include_imports(false).include_source_info(false);
    compiler
        .open_files(&files)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    compiler.encode_file_descriptor_set()
}

#[test]
#[ignore = "needs a CRIU git checkout (CRIU_GIT_DIR)"]
fn descriptor_set_is_byte_identical_to_criu_upstream() {
    let git_dir = std::env::var("CRIU_GIT_DIR")
        .unwrap_or_else(|_| "/work/.mirror/checkpoint-restore+criu/repo".to_owned());
    let git_ref = std::env::var("CRIU_GIT_REF").unwrap_or_else(|_| "v4.2".to_owned());
    let upstream = tempfile::tempdir().expect("tempdir");
    let listing = git(&git_dir, &["ls-tree", "--name-only", &git_ref, "images/"]);
    let mut count = 0;
    for path in String::from_utf8(listing).expect("utf-8").lines() {
        if let Some(name) = path
            .strip_prefix("images/")
            .filter(|n| n.ends_with(".proto"))
        {
            let text = git(&git_dir, &["show", &format!("{git_ref}:{path}")]);
            std::fs::write(upstream.path().join(name), text).expect("write upstream proto");
            count += 1;
        }
    }
    assert!(count > 70, "only {count} upstream protos at {git_ref}");

    let ours_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let ours_count = std::fs::read_dir(&ours_dir)
        .expect("proto dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".proto"))
        })
        .count();
    assert_eq!(ours_count, count, "number of .proto files");
    assert!(
        compile(&ours_dir) == compile(upstream.path()),
        "descriptor sets differ from CRIU {git_ref}"
    );
}
