//! The conformance stage of `cargo xtask test`: build our `criu` and the conformance suite, then run
//! its runner (every program × every mode, see tests/conformance). Extra arguments go to the runner
//! unchanged (e.g. `--only fpu_counter,pipe_data`, `--modes dump,rpc`, `--big-mb 256`).

use std::process::Command;

use crate::setup;

/// Builds `criu` (crates/cli) and `criu-conformance`, then runs the runner against that `criu`.
/// Returns `Err` when the build fails or any cell of the table is `fail`; `not-yet` cells (the engine
/// clearly refused a state it does not support yet) do not fail the stage.
pub fn run(args: &[String]) -> Result<(), String> {
    setup::cargo(&["build", "-p", "criu-cli", "-p", "criu-conformance"])?;
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
