//! Self-checks of the conformance protocol, WITHOUT checkpointing: every program passes when it is
//! simply told to verify, and breaking a program's state from outside makes it report exactly that.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use criu_conformance::catalog::{Kind, Program, PROGRAMS};
use criu_conformance::launch::LaunchOptions;
use criu_conformance::process;
use criu_conformance::runner::run_plain;

/// The runner kills every descendant between programs, so tests that start programs run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn scratch(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("selfcheck")
        .join(name)
}

fn options(criu: &str) -> LaunchOptions {
    LaunchOptions {
        big_mb: 64,
        criu: PathBuf::from(criu),
        selfdump_mode: "kill",
        timeout: Duration::from_secs(30),
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    process::become_subreaper().expect("PR_SET_CHILD_SUBREAPER");
    guard
}

#[test]
fn every_program_passes_when_only_told_to_verify() {
    let _serial = lock();
    let mut failures = Vec::new();
    let checked: Vec<&Program> = PROGRAMS
        .iter()
        .filter(|p| p.kind != Kind::SelfDump)
        .collect();
    for program in &checked {
        if let Err(err) = run_plain(
            program,
            &scratch(&format!("plain-{}", program.name)),
            &options("/nonexistent"),
            false,
        ) {
            failures.push(format!("{}: {err}", program.name));
        }
    }
    assert!(
        failures.is_empty(),
        "programs failing without checkpoint/restore:\n{}",
        failures.join("\n")
    );
    assert!(
        checked.len() >= 30,
        "only {} programs checked",
        checked.len()
    );
}

#[test]
fn every_tampered_program_reports_the_broken_state() {
    let _serial = lock();
    let mut problems = Vec::new();
    let mut tampered = 0;
    for program in PROGRAMS.iter().filter(|p| p.tamper.is_some()) {
        let Some(spec) = program.tamper else { continue };
        tampered += 1;
        match run_plain(
            program,
            &scratch(&format!("tamper-{}", program.name)),
            &options("/nonexistent"),
            true,
        ) {
            Ok(()) => problems.push(format!(
                "{}: PASSED although {} was broken",
                program.name, spec.what
            )),
            Err(err) if err.contains(spec.expect) => {}
            Err(err) => problems.push(format!(
                "{}: failed, but not with '{}': {err}",
                program.name, spec.expect
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        tampered >= 15,
        "only {tampered} programs can be tampered with"
    );
}

#[test]
fn self_dump_program_fails_when_criu_swrk_does_not_answer() {
    let _serial = lock();
    let program =
        criu_conformance::catalog::find("selfdump_rpc").expect("selfdump_rpc in the catalog");
    // /bin/false as "criu": swrk exits at once, the socket closes, so there is no DUMP answer.
    let err = run_plain(
        program,
        &scratch("selfdump-false"),
        &options("/bin/false"),
        false,
    )
    .expect_err("must fail");
    assert!(err.contains("no answer to the self-dump request"), "{err}");
}

#[test]
fn every_c_program_is_in_the_catalog_and_back() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("programs");
    let mut sources: Vec<String> = std::fs::read_dir(&dir)
        .expect("programs/")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".c"))
                .map(str::to_string)
        })
        .filter(|name| name != "conf" && name != "pty_shell")
        .collect();
    sources.sort();
    let mut names: Vec<String> = PROGRAMS.iter().map(|p| p.name.to_string()).collect();
    names.sort();
    assert_eq!(sources, names);
    for program in PROGRAMS {
        assert!(
            program.path().exists(),
            "{} was not built",
            program.path().display()
        );
    }
}
