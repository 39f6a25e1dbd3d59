//! `cargo xtask fuzz [SECONDS]`: a short, bounded libFuzzer run of the image
//! reader (`fuzz/`, target `image_reader`), seeded with the CRIU 4.2 fixture
//! images. Needs the nightly toolchain; installs cargo-fuzz when it is missing.

use std::path::Path;
use std::process::Command;

use crate::setup;

const TARGET: &str = "image_reader";
const DEFAULT_SECONDS: u64 = 60;

fn succeeds(command: &mut Command) -> bool {
    command
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

/// Copies the fixture images into the corpus so the fuzzer starts from real
/// CRIU files instead of random bytes.
fn seed_corpus(corpus: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let Ok(entries) = std::fs::read_dir(setup::fixtures_dir()) else {
        return Ok(0);
    };
    let mut seeded = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") || name.ends_with(".md") || name.starts_with("pages-") {
            continue;
        }
        let target = corpus.join(format!("fixture-{name}"));
        std::fs::copy(&path, &target)
            .map_err(|e| format!("{} -> {}: {e}", path.display(), target.display()))?;
        seeded += 1;
    }
    Ok(seeded)
}

/// Runs the bounded fuzz session. `args`: optional run time in seconds.
pub fn run(args: &[String]) -> Result<(), String> {
    let seconds = match args.first() {
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| format!("fuzz: {text:?} is not a number of seconds"))?,
        None => DEFAULT_SECONDS,
    };
    if !succeeds(Command::new("cargo").args(["+nightly", "--version"])) {
        return Err(
            "fuzzing needs the nightly toolchain (rustup toolchain install nightly)".into(),
        );
    }
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        eprintln!(
            "xtask fuzz: cargo-fuzz is missing, installing it with `cargo install cargo-fuzz`"
        );
        setup::cargo(&["install", "cargo-fuzz"])?;
    }
    let root = setup::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(TARGET);
    let seeded = seed_corpus(&corpus)?;
    eprintln!("xtask fuzz: {seeded} fixture seeds, running {TARGET} for {seconds} s");
    setup::run(
        Command::new("cargo")
            .env_remove("CARGO_TARGET_DIR")
            .args(["+nightly", "fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(TARGET)
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .arg("-max_len=65536"),
    )
}
