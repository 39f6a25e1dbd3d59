//! `cargo xtask test`: every test of the project, in one command, ending with one plain
//! "N passed, N failed, N skipped" line that adds up every test of every stage.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::{conformance, rpc, setup};

/// Test counts of a stage. `skipped` counts what did not run as a test: conformance cells that are
/// not-yet (the engine refused the state with a clear error) or not applicable, ignored cargo tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

/// One named stage of the test run: its counts and whether it passed.
struct StageResult {
    name: &'static str,
    tally: Tally,
    outcome: Result<(), String>,
}

/// Runs every stage even after a failure, so one run shows everything that is broken, then reports.
pub fn run_all(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("`test` takes no arguments, got {args:?}"));
    }
    let mut results = vec![
        StageResult {
            name: "debian packages",
            tally: Tally::default(),
            outcome: setup::ensure_debian_packages(),
        },
        StageResult {
            name: "build",
            tally: Tally::default(),
            outcome: setup::build_workspace(),
        },
    ];
    let (tally, outcome) = cargo_test(&["test", "--workspace", "--no-fail-fast"]);
    results.push(StageResult {
        name: "unit and integration tests",
        tally,
        outcome,
    });
    let (tally, outcome) = conformance::run_counted(&[]);
    results.push(StageResult {
        name: "conformance suite",
        tally,
        outcome,
    });
    let (tally, outcome) = rpc::run_counted(&[]);
    results.push(StageResult {
        name: "RPC suite",
        tally,
        outcome,
    });

    println!("\nxtask test summary:");
    let mut total = Tally::default();
    let mut failed_stages = 0;
    for result in &results {
        total.add(result.tally);
        let counts = format!(
            "{} passed, {} failed, {} skipped",
            result.tally.passed, result.tally.failed, result.tally.skipped
        );
        match &result.outcome {
            Ok(()) => println!("  ok    {:<28} {counts}", result.name),
            Err(message) => {
                failed_stages += 1;
                println!("  FAIL  {:<28} {counts}: {message}", result.name);
            }
        }
    }
    // A stage that failed without a failed test (a build error, a crash) still counts as a failure.
    let failed = total.failed.max(failed_stages);
    println!(
        "{} passed, {failed} failed, {} skipped",
        total.passed, total.skipped
    );
    if failed_stages == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failed_stages} of {} stages failed",
            results.len()
        ))
    }
}

/// Runs `cargo test ...`, echoing its output, and adds up its "test result:" lines.
fn cargo_test(args: &[&str]) -> (Tally, Result<(), String>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(args)
        // The build stage already built every binary the tests start; a nested build of a package
        // subset would recompile shared dependencies with other features.
        .env("CRIU_RS_NO_BUILD", "1")
        .current_dir(setup::workspace_root())
        .stdout(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return (
                Tally::default(),
                Err(format!("cannot start {command:?}: {error}")),
            )
        }
    };
    let mut tally = Tally::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(counts) = parse_test_result(&line) {
                tally.add(counts);
            }
        }
    }
    let outcome = match child.wait() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{command:?} failed: {status}")),
        Err(error) => Err(format!("{command:?}: {error}")),
    };
    (tally, outcome)
}

/// Parses libtest's "test result: ok. 9 passed; 0 failed; 1 ignored; ..." line.
fn parse_test_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |label: &str| {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(label)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    Some(Tally {
        passed: count("passed")?,
        failed: count("failed")?,
        skipped: count("ignored").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_result_lines_are_counted() {
        let line = "test result: FAILED. 9 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            parse_test_result(line),
            Some(Tally {
                passed: 9,
                failed: 2,
                skipped: 1
            })
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
