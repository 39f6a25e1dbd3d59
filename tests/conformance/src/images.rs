//! Checks on a freshly written images directory: every image decodes with crit, and the dump
//! statistics agree with the page files (`pages_written + shpages_written` = Σ size(pages-*.img)/4096)
//! and with the pagemaps (`pages_skipped_parent` = the pages of task pagemap entries marked PE_PARENT,
//! `shpages_skipped_parent` the same for pagemap-shmem). The pagemaps are counted with our image
//! crate: Debian's crit 3.17 predates `pagemap_entry.nr_pages` (field 5, CRIU 4.x writes
//! `compat_nr_pages` = 0 beside it) and so reads every entry as 0 pages.
//!
//! With Debian's crit (`/usr/bin/crit`, a pycriu script) all images of a dump are decoded in ONE
//! Python process through the same call `crit decode` makes (`pycriu.images.load`), which saves a
//! Python start per image. Any other crit is run as `crit decode -i FILE` per image.
//! `pages-*.img` files hold raw page data without a magic and are not decoded (crit refuses them too).

use std::path::{Path, PathBuf};
use std::process::Command;

use criu_image::{ImageDir, ImageKind, PagemapReader, PE_PARENT};

/// Where crit lives and how to run it.
#[derive(Debug, Clone)]
pub struct Crit {
    /// The crit executable or script.
    pub bin: PathBuf,
    /// The Python interpreter with pycriu.
    pub python: PathBuf,
}

const DEBIAN_CRIT: &str = "/usr/bin/crit";

/// Images to decode and the page files, from a directory listing.
fn list(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let mut decodable = Vec::new();
    let mut pages = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("pages-") && name.ends_with(".img") {
            pages.push(path);
        } else if name.ends_with(".img") || name == "stats-dump" {
            decodable.push(path);
        }
    }
    decodable.sort();
    pages.sort();
    Ok((decodable, pages))
}

const BATCH_DECODE: &str = r#"
import json, os, sys
from pycriu import images
result = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            img = images.load(f, False, False)
        json.dumps(img)
        result[path] = {"ok": True, "img": img if path.endswith("stats-dump") else None}
    except Exception as e:
        result[path] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
print(json.dumps(result))
"#;

/// The decoded images the checks look into.
#[derive(Debug, Default)]
struct Decoded {
    stats: Option<serde_json::Value>,
}

impl Decoded {
    fn keep(&mut self, file: &Path, image: serde_json::Value) {
        if file_name(file) == "stats-dump" {
            self.stats = Some(image);
        }
    }
}

/// Pages that the pagemaps of `dir` leave to the parent images (PE_PARENT): (task pagemaps,
/// shmem pagemaps).
fn parent_pages(dir: &Path) -> Result<(u64, u64), String> {
    let images = ImageDir::open(dir).map_err(|e| e.to_string())?;
    let mut totals = (0u64, 0u64);
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".img")
            .and_then(|stem| stem.strip_prefix("pagemap-"))
        else {
            continue;
        };
        let (kind, id, total) = match id.strip_prefix("shmem-") {
            Some(shmid) => (ImageKind::ShmemPagemap, shmid, &mut totals.1),
            None => (ImageKind::Pagemap, id, &mut totals.0),
        };
        let id: u64 = id
            .parse()
            .map_err(|_| format!("{name}: not a pagemap id"))?;
        let mut reader = images
            .reader(kind, id)
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|reader| {
                PagemapReader::from_reader(reader).map_err(|e| format!("{name}: {e}"))
            })?;
        while let Some(run) = reader.next_run().map_err(|e| format!("{name}: {e}"))? {
            if run.flags & PE_PARENT != 0 {
                *total += run.nr_pages;
            }
        }
    }
    Ok(totals)
}

impl Crit {
    fn is_script(&self) -> bool {
        std::fs::read(&self.bin)
            .map(|bytes| {
                bytes.starts_with(b"#!") && bytes.windows(6).take(80).any(|w| w == b"python")
            })
            .unwrap_or(false)
    }

    /// Decodes each file; returns per-file errors and the decoded stats-dump and pagemaps.
    fn decode(&self, files: &[PathBuf]) -> (Vec<String>, Decoded) {
        let mut problems = Vec::new();
        let mut decoded = Decoded::default();
        if self.bin == Path::new(DEBIAN_CRIT) {
            let output = Command::new(&self.python)
                .arg("-c")
                .arg(BATCH_DECODE)
                .args(files)
                .output();
            let reply: serde_json::Value = match output {
                Ok(out) => match serde_json::from_slice(&out.stdout) {
                    Ok(value) => value,
                    Err(_) => {
                        return (
                            vec![format!(
                                "pycriu batch decode failed: {}",
                                String::from_utf8_lossy(&out.stderr).trim()
                            )],
                            Decoded::default(),
                        )
                    }
                },
                Err(e) => {
                    return (
                        vec![format!("cannot run {}: {e}", self.python.display())],
                        Decoded::default(),
                    )
                }
            };
            for file in files {
                let entry = &reply[file.to_string_lossy().as_ref()];
                if entry["ok"].as_bool() != Some(true) {
                    problems.push(format!(
                        "crit decode {}: {}",
                        file_name(file),
                        entry["error"].as_str().unwrap_or("no result")
                    ));
                } else {
                    decoded.keep(file, entry["img"].clone());
                }
            }
            return (problems, decoded);
        }
        for file in files {
            let mut command = if self.is_script() {
                let mut command = Command::new(&self.python);
                command.arg(&self.bin);
                command
            } else {
                Command::new(&self.bin)
            };
            match command.args(["decode", "-i"]).arg(file).output() {
                Ok(out) if out.status.success() => {
                    if let Ok(image) = serde_json::from_slice(&out.stdout) {
                        decoded.keep(file, image);
                    }
                }
                Ok(out) => problems.push(format!(
                    "crit decode {}: {}",
                    file_name(file),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => problems.push(format!("cannot run crit {}: {e}", self.bin.display())),
            }
        }
        (problems, decoded)
    }

    /// Every problem found in the images directory (empty: all good).
    pub fn check_dir(&self, dir: &Path) -> Vec<String> {
        let (decodable, pages) = match list(dir) {
            Ok(lists) => lists,
            Err(e) => return vec![e],
        };
        if decodable.is_empty() {
            return vec![format!("no images in {}", dir.display())];
        }
        let (mut problems, decoded) = self.decode(&decodable);
        let has_stats = decodable.iter().any(|f| f.ends_with("stats-dump"));
        if !has_stats {
            problems.push("stats-dump is missing".into());
        }
        let mut page_bytes = 0u64;
        for page_file in &pages {
            let size = std::fs::metadata(page_file).map(|m| m.len()).unwrap_or(0);
            if size % 4096 != 0 {
                problems.push(format!(
                    "{} is {size} bytes, not whole pages",
                    file_name(page_file)
                ));
            }
            page_bytes += size;
        }
        if let Some(stats) = &decoded.stats {
            let dump = &stats["entries"][0]["dump"];
            match parent_pages(dir) {
                Ok((task, shmem)) => {
                    for (counter, in_pagemaps) in [
                        ("pages_skipped_parent", task),
                        ("shpages_skipped_parent", shmem),
                    ] {
                        let in_stats = dump[counter].as_u64().unwrap_or(0);
                        if in_stats != in_pagemaps {
                            problems.push(format!(
                                "stats-dump says {counter} = {in_stats}, the pagemaps mark {in_pagemaps} pages PE_PARENT"
                            ));
                        }
                    }
                }
                Err(e) => problems.push(format!("pagemap: {e}")),
            }
            let written = dump["pages_written"].as_u64().unwrap_or(0)
                + dump["shpages_written"].as_u64().unwrap_or(0);
            if written != page_bytes / 4096 {
                problems.push(format!(
                    "stats-dump says {written} pages written (pages_written+shpages_written), pages-*.img hold {}",
                    page_bytes / 4096
                ));
            }
        } else if has_stats && problems.is_empty() {
            problems.push("stats-dump decoded to nothing".into());
        }
        problems
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images written by real CRIU 4.2, kept in the repository (tests/fixtures; earlier under
    /// crates/proto/tests/fixtures).
    fn fixture_dir() -> PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let candidates = [
            manifest.join("../fixtures/criu42-sleep"),
            manifest.join("../../crates/proto/tests/fixtures/criu42-sleep"),
        ];
        candidates
            .iter()
            .find(|dir| dir.join("inventory.img").exists())
            .cloned()
            .unwrap_or_else(|| panic!("no CRIU 4.2 fixture in any of {candidates:?}"))
    }

    fn debian_crit() -> Crit {
        Crit {
            bin: DEBIAN_CRIT.into(),
            python: "/usr/bin/python3".into(),
        }
    }

    /// A copy of the images CRIU 4.2 wrote, without the crit JSON files. The repository copy has no
    /// raw pages-1.img, so one is recreated with as many (zero) pages as CRIU's pagemap says it
    /// wrote: its size is all these checks look at.
    fn fixture_copy() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for entry in std::fs::read_dir(fixture_dir())
            .expect("fixture dir")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".img") || name == "stats-dump" {
                std::fs::copy(entry.path(), dir.path().join(&name)).expect("copy fixture image");
            }
        }
        let pages = dir.path().join("pages-1.img");
        if !pages.exists() {
            let pagemap: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fixture_dir().join("pagemap-31202.json"))
                    .expect("pagemap json"),
            )
            .expect("pagemap json parses");
            const PE_PRESENT: u64 = 4;
            let present: u64 = pagemap["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .filter(|e| e["flags"].as_u64().is_some_and(|f| f & PE_PRESENT != 0))
                .map(|e| e["nr_pages"].as_u64().unwrap_or(0))
                .sum();
            std::fs::File::create(&pages)
                .expect("create pages-1.img")
                .set_len(present * 4096)
                .expect("size pages-1.img");
        }
        dir
    }

    #[test]
    fn criu_4_2_images_pass_every_check() {
        let dir = fixture_copy();
        assert_eq!(debian_crit().check_dir(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn per_file_crit_runs_agree_with_the_batch_decode() {
        let dir = fixture_copy();
        // A crit path other than /usr/bin/crit is run once per image, here the same script by a symlink.
        let link = dir.path().join("crit-link");
        std::os::unix::fs::symlink(DEBIAN_CRIT, &link).expect("symlink crit");
        let crit = Crit {
            bin: link,
            python: "/usr/bin/python3".into(),
        };
        assert_eq!(crit.check_dir(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_page_count_mismatch_is_reported() {
        let dir = fixture_copy();
        let pages = dir.path().join("pages-1.img");
        let len = std::fs::metadata(&pages).expect("pages-1.img").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&pages)
            .expect("open")
            .set_len(len - 4096)
            .expect("truncate");
        let problems = debian_crit().check_dir(dir.path());
        assert!(
            problems.iter().any(|p| p.contains("pages written")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_undecodable_image_and_a_missing_stats_file_are_reported() {
        let dir = fixture_copy();
        std::fs::write(dir.path().join("core-31202.img"), b"garbage!").expect("corrupt core");
        std::fs::remove_file(dir.path().join("stats-dump")).expect("remove stats");
        let problems = debian_crit().check_dir(dir.path());
        assert!(
            problems.iter().any(|p| p.contains("core-31202.img")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("stats-dump is missing")),
            "{problems:?}"
        );
    }
}
