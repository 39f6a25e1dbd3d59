//! Project automation for criu-rs: `cargo xtask <demo|test|test-rpc|bench|fuzz>`.
//!
//! The README's two commands for a fresh machine are `cargo xtask demo` and `cargo xtask test`; CI's
//! `.ci/run` calls the latter. Everything here shells out to cargo and to the binaries the workspace
//! builds, always by their path in the target directory, never through `PATH` (Debian's own `criu`
//! is on `PATH` on our machines and does not run on this kernel).

mod bench;
mod conformance;
mod demo;
mod fuzz;
mod limits;
mod rpc;
mod setup;
mod suite;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command> [args]

commands:
  demo       checkpoint and restore a sample process with the criu binary
  test       every test: unit and integration tests, the conformance suite, the RPC suite
  test-rpc   the RPC suite alone (service and swrk, Rust and pycriu clients)
  conformance  the conformance suite alone (args go to its runner, e.g. --only pipe_data)
  bench      benchmarks against the machine's own limits (Markdown + JSON in target/bench/)
  fuzz       a short bounded fuzz run of the image reader";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "demo" => demo::run(rest),
        "test" => suite::run_all(rest),
        "fuzz" => fuzz::run(rest),
        "test-rpc" => rpc::run(rest),
        "conformance" => conformance::run(rest),
        "bench" => bench::run(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {command}: {message}");
            ExitCode::FAILURE
        }
    }
}
