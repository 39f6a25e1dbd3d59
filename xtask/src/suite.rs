//! `cargo xtask test`: every test of the project, in one command, with one closing summary line.

use crate::{conformance, rpc, setup};

/// One named stage of the test run and whether it passed.
struct StageResult {
    name: &'static str,
    outcome: Result<(), String>,
}

/// Runs every stage even after a failure, so one run shows everything that is broken, then reports.
pub fn run_all(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("`test` takes no arguments, got {args:?}"));
    }
    let mut results = vec![StageResult {
        name: "debian packages",
        outcome: setup::ensure_debian_packages(),
    }];
    results.push(StageResult {
        name: "build",
        outcome: setup::cargo(&["build", "--workspace", "--all-targets"]),
    });
    results.push(StageResult {
        name: "unit and integration tests",
        outcome: setup::cargo(&["test", "--workspace", "--no-fail-fast"]),
    });

    results.push(StageResult {
        name: "conformance suite",
        outcome: conformance::run(&[]),
    });

    results.push(StageResult {
        name: "RPC suite",
        outcome: rpc::run(&[]),
    });

    println!("\nxtask test summary:");
    let mut failed = 0;
    for result in &results {
        match &result.outcome {
            Ok(()) => println!("  ok    {}", result.name),
            Err(message) => {
                failed += 1;
                println!("  FAIL  {}: {message}", result.name);
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} of {} stages failed", results.len()))
    }
}
