//! Compiles every C program in `programs/` (each linked with the shared `conf.c` protocol helper)
//! into an executable in OUT_DIR, using the C compiler the `cc` crate detects.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let programs_dir = manifest_dir.join("programs");
    let bin_dir = out_dir.join("programs");
    std::fs::create_dir_all(&bin_dir).expect("create OUT_DIR/programs");

    let helper = programs_dir.join("conf.c");
    println!("cargo:rerun-if-changed={}", programs_dir.display());
    println!("cargo:rerun-if-changed={}", helper.display());
    println!(
        "cargo:rerun-if-changed={}",
        programs_dir.join("conf.h").display()
    );

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&programs_dir)
        .expect("read programs/")
        .map(|entry| entry.expect("programs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "c") && path != &helper)
        .collect();
    sources.sort();

    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
        let name = source.file_stem().expect("program file stem");
        let output = bin_dir.join(name);
        compile(&compiler, source, &helper, &output);
    }
    println!(
        "cargo:rustc-env=CONFORMANCE_PROGRAMS_DIR={}",
        bin_dir.display()
    );
}

fn compile(compiler: &cc::Tool, source: &Path, helper: &Path, output: &Path) {
    let mut command: Command = compiler.to_command();
    command
        .args(["-O1", "-g", "-pthread", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(output)
        .arg(source)
        .arg(helper);
    let result = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run the C compiler for {}: {err}", source.display()));
    if !result.status.success() {
        panic!(
            "compiling {} failed ({}):\n{}{}",
            source.display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
}
