//! The conformance stage of `cargo xtask test`: build our `criu` and the conformance suite, then run
//! its runner (every program × every mode, see tests/conformance). Extra arguments go to the runner
//! unchanged (e.g. `--only fpu_counter,pipe_data`, `--modes dump,rpc`, `--big-mb 256`).

use std::process::Command;

use crate::setup;
use crate::suite::Tally;

/// Builds the workspace (so `criu` and `criu-conformance`), then runs the runner against that `criu`.
/// Returns `Err` when the build fails or any cell of the table is `fail`; `not-yet` cells (the engine
/// clearly refused a state it does not support yet) do not fail the stage.
pub fn run(args: &[String]) -> Result<(), String> {
    run_counted(args).1
}

/// The conformance run with its cell counts from results.json: pass, fail, and not-yet or not
/// applicable as skipped.
pub fn run_counted(args: &[String]) -> (Tally, Result<(), String>) {
    let outcome = run_runner(args);
    let results = setup::target_dir().join("conformance").join("results.json");
    let tally = std::fs::read(&results)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .map(|json| count_cells(&json))
        .unwrap_or_default();
    (tally, outcome)
}

fn count_cells(results: &serde_json::Value) -> Tally {
    let mut tally = Tally::default();
    for cell in results["cells"].as_array().into_iter().flatten() {
        match cell["outcome"].as_str() {
            Some("pass") => tally.passed += 1,
            Some("fail") => tally.failed += 1,
            _ => tally.skipped += 1,
        }
    }
    tally
}

fn run_runner(args: &[String]) -> Result<(), String> {
    setup::build_workspace()?;
    let mut runner = Command::new(setup::built_binary("debug", "criu-conformance"));
    if !args.iter().any(|arg| arg == "--criu") {
        runner
            .arg("--criu")
            .arg(setup::built_binary("debug", "criu"));
    }
    if !args.iter().any(|arg| arg == "--out-dir") {
        runner
            .arg("--out-dir")
            .arg(setup::target_dir().join("conformance"));
    }
    runner.args(args);
    setup::run(&mut runner).map_err(|error| {
        format!(
            "{error}\nthe table is above; per-cell logs and results.json are in {}",
            setup::target_dir().join("conformance").display()
        )
    })
}
