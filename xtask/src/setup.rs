//! Shared plumbing: where the workspace and its binaries are, running cargo, and the Debian packages the
//! tests need (pycriu and crit from Debian's `criu` package, which test our RPC and images against real
//! CRIU clients and decoders).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// The cargo target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The reference images CRIU 4.2 wrote (tests/fixtures/criu42-sleep), used to seed fuzzing.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/criu42-sleep")
}

/// Path of a binary built by the workspace in the given profile directory ("debug" or "release").
pub fn built_binary(profile: &str, name: &str) -> PathBuf {
    target_dir().join(profile).join(name)
}

/// Builds our `criu`, `crit` and the xtask binaries (bench workloads, demo program) in release
/// mode; returns the paths of `criu` and `crit`.
pub fn build_release_tools() -> Result<(PathBuf, PathBuf), String> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "criu-cli",
        "-p",
        "criu-crit",
        "-p",
        "xtask",
    ])?;
    Ok((
        built_binary("release", "criu"),
        built_binary("release", "crit"),
    ))
}

/// Runs a command in the workspace root, failing with the command line when it fails.
pub fn run(command: &mut Command) -> Result<(), String> {
    command.current_dir(workspace_root());
    let status = command
        .status()
        .map_err(|error| format!("cannot start {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

/// Builds every target of the workspace (debug). Every stage builds through this one invocation: a
/// build of a subset of packages resolves features differently and would recompile shared
/// dependencies, while this one is a no-op after the first.
pub fn build_workspace() -> Result<(), String> {
    cargo(&["build", "--workspace", "--all-targets"])
}

/// `cargo` with the given arguments.
pub fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(cargo).args(args))
}

/// The Debian packages the test suites use, with a file each one provides.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("criu", "/usr/bin/crit"),
    (
        "python3-protobuf",
        "/usr/lib/python3/dist-packages/google/protobuf/__init__.py",
    ),
];

/// Installs the Debian packages the tests need when they are missing and we are root.
///
/// A non-root run cannot install them; it says which are missing so that the tests that need them fail
/// with a reason instead of silently passing.
pub fn ensure_debian_packages() -> Result<(), String> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, probe)| !Path::new(probe).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix_is_root() {
        return Err(format!(
            "Debian packages {missing:?} are missing and only root can install them"
        ));
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn nix_is_root() -> bool {
    // The effective uid is in /proc/self/status; reading it avoids an unsafe geteuid() call here.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
