//! Compiles the `.proto` files in `<workspace>/proto` with protox (pure Rust, no
//! system `protoc`) and generates one flat prost module from them.
//!
//! Two artefacts land in `OUT_DIR`:
//! - `_.rs`: the prost code (CRIU's protos have no `package`, so prost names the
//!   file `_`);
//! - `criu_descriptor_set.bin`: the encoded `FileDescriptorSet`, imports
//!   included, with custom field options (extension 1018, `(criu)`) kept so that
//!   crit can read them back through prost-reflect.

use std::path::{Path, PathBuf};

/// Files whose descriptors we keep but for which no Rust code is generated:
/// - `opts.proto` only declares the `(criu)` field option; its message would be
///   named `CriuOpts` by prost and clash with the RPC `criu_opts`;
/// - `google/...` is protox's bundled `descriptor.proto`.
fn wants_rust_code(file_name: &str) -> bool {
    file_name != "opts.proto" && !file_name.starts_with("google/")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("../../proto").canonicalize()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let mut proto_files: Vec<PathBuf> = std::fs::read_dir(&proto_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    proto_files.sort();
    for path in &proto_files {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let relative: Vec<&Path> = proto_files
        .iter()
        .map(|p| p.strip_prefix(&proto_dir))
        .collect::<Result<_, _>>()?;

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(relative)?;

    std::fs::write(
        out_dir.join("criu_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    let mut fds = compiler.file_descriptor_set();
    fds.file
        .retain(|file| wants_rust_code(file.name.as_deref().unwrap_or_default()));

    prost_build::Config::new()
        .out_dir(&out_dir)
        .compile_fds(fds)?;
    Ok(())
}
