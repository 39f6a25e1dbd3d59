//! `criu-conformance`: runs the conformance programs against our criu and prints program × mode.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use criu_conformance::catalog::{self, PROGRAMS};
use criu_conformance::engine::Criu;
use criu_conformance::images::Crit;
use criu_conformance::report::Mode;
use criu_conformance::runner::{self, Config};

const USAGE: &str =
    "usage: criu-conformance [--criu PATH] [--crit PATH] [--python PATH] [--only a,b] [--skip a,b]
                        [--modes dump,leave-running,rpc,rpc-service,restore-twice,pre-dump] [--timeout SECS] [--verdict-timeout SECS]
                        [--budget SECS] [--big-mb N]
                        [--out-dir DIR] [--keep-pages] [--list]
  --criu      our criu binary (default: $CARGO_TARGET_DIR/debug/criu, else target/debug/criu)
  --crit      crit used to decode every image (default /usr/bin/crit, run with --python)
  --python    Python with pycriu (default /usr/bin/python3)
  --timeout   per step: ready, one criu dump/restore (default 30; big_memory gets more)
  --verdict-timeout  how long a program may take to verify after SIGTERM (default 20)
  --budget    total seconds; cells left after it are not run and count as failures (default 900)
  --big-mb    size of big_memory (default $CONF_BIG_MB or 1024)
  --out-dir   cells and results.json (default <target>/conformance)
  --keep-pages  keep pages-*.img of passed cells (by default only failed cells keep them)";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn parse(args: &[String]) -> Result<Option<Config>, String> {
    let mut criu = target_dir().join("debug/criu");
    let mut crit = PathBuf::from("/usr/bin/crit");
    let mut python = PathBuf::from("/usr/bin/python3");
    let mut only: Option<Vec<String>> = None;
    let mut skip: Vec<String> = Vec::new();
    let mut modes = Mode::ALL.to_vec();
    let mut timeout = Duration::from_secs(30);
    let mut verdict_timeout = Duration::from_secs(20);
    let mut budget = Duration::from_secs(900);
    let mut big_mb: u64 = std::env::var("CONF_BIG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut out_dir = target_dir().join("conformance");
    let mut keep_pages = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--criu" => criu = value()?.into(),
            "--crit" => crit = value()?.into(),
            "--python" => python = value()?.into(),
            "--only" => only = Some(value()?.split(',').map(str::to_string).collect()),
            "--skip" => skip = value()?.split(',').map(str::to_string).collect(),
            "--modes" => {
                modes = value()?
                    .split(',')
                    .map(|name| Mode::parse(name).ok_or_else(|| format!("unknown mode '{name}'")))
                    .collect::<Result<_, _>>()?;
            }
            "--timeout" => {
                timeout = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|_| "--timeout needs seconds".to_string())?,
                )
            }
            "--verdict-timeout" => {
                verdict_timeout = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|_| "--verdict-timeout needs seconds".to_string())?,
                )
            }
            "--budget" => {
                budget = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|_| "--budget needs seconds".to_string())?,
                )
            }
            "--big-mb" => {
                big_mb = value()?
                    .parse()
                    .map_err(|_| "--big-mb needs a number".to_string())?
            }
            "--out-dir" => out_dir = value()?.into(),
            "--keep-pages" => keep_pages = true,
            "--list" => {
                for program in PROGRAMS {
                    println!("{:14} {}", program.name, program.about);
                }
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    for name in only.iter().flatten().chain(&skip) {
        if catalog::find(name).is_none() {
            return Err(format!("unknown program '{name}' (see --list)"));
        }
    }
    let programs = PROGRAMS
        .iter()
        .filter(|p| {
            only.as_ref()
                .is_none_or(|names| names.iter().any(|n| n == p.name))
        })
        .filter(|p| !skip.iter().any(|n| n == p.name))
        .collect();
    let criu =
        std::fs::canonicalize(&criu).map_err(|e| format!("criu binary {}: {e}", criu.display()))?;
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    // Canonical, so cell paths stay short and free of `..` (they end up in logs and socket names).
    let out_dir = std::fs::canonicalize(&out_dir)
        .map_err(|e| format!("out dir {}: {e}", out_dir.display()))?;
    Ok(Some(Config {
        criu: Criu {
            bin: criu,
            python: python.clone(),
            timeout,
        },
        crit: Crit { bin: crit, python },
        programs,
        modes,
        timeout,
        verdict_timeout,
        budget,
        big_mb,
        out_dir,
        keep_pages,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(Some(config)) => config,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("criu-conformance: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = criu_conformance::process::become_subreaper() {
        eprintln!("criu-conformance: {err}");
        return ExitCode::from(2);
    }
    eprintln!(
        "criu-conformance: criu {}, {} programs × {} modes, cells in {}",
        config.criu.bin.display(),
        config.programs.len(),
        config.modes.len(),
        config.out_dir.display()
    );
    let report = runner::run(&config, |cell| {
        let reason = cell
            .outcome
            .reason()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        eprintln!(
            "  {:14} {:14} {:8} {:6.1}s{}",
            cell.program,
            cell.mode.name(),
            cell.outcome.label(),
            cell.seconds,
            reason
        );
    });
    println!("{}", report.table());
    let json = config.out_dir.join("results.json");
    if let Err(err) = report.write_json(&json) {
        eprintln!("criu-conformance: {err}");
        return ExitCode::from(2);
    }
    println!("results: {}", json.display());
    if report.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
