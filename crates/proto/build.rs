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

    std::fs::write(out_dir.join("criu_names.rs"), names_module_body(&fds))?;

    prost_build::Config::new()
        .out_dir(&out_dir)
        .enable_type_names()
        .compile_fds(fds)?;
    Ok(())
}

/// Renders the constants of `criu_proto::names`: every proto file, message
/// and enum name, in file order then declaration order. Nested types are
/// written `outer.inner`, their full name in a package-less descriptor pool.
fn names_module_body(fds: &prost_types::FileDescriptorSet) -> String {
    fn walk_message(
        prefix: &str,
        message: &prost_types::DescriptorProto,
        messages: &mut Vec<String>,
        enums: &mut Vec<String>,
    ) {
        let name = format!("{prefix}{}", message.name.as_deref().unwrap_or_default());
        for nested_enum in &message.enum_type {
            enums.push(format!(
                "{name}.{}",
                nested_enum.name.as_deref().unwrap_or_default()
            ));
        }
        let nested_prefix = format!("{name}.");
        messages.push(name);
        for nested in &message.nested_type {
            walk_message(&nested_prefix, nested, messages, enums);
        }
    }

    let mut files = Vec::new();
    let mut messages = Vec::new();
    let mut enums = Vec::new();
    for file in &fds.file {
        files.push(file.name.clone().unwrap_or_default());
        for top_enum in &file.enum_type {
            enums.push(top_enum.name.clone().unwrap_or_default());
        }
        for message in &file.message_type {
            walk_message("", message, &mut messages, &mut enums);
        }
    }
    let list = |items: &[String]| -> String {
        items
            .iter()
            .map(|item| format!("    {item:?},\n"))
            .collect()
    };
    format!(
        "/// Every `.proto` file with generated Rust code (all but `opts.proto`).\n\
         pub const FILES: &[&str] = &[\n{}];\n\n\
         /// Every message's proto name (nested ones as `outer.inner`).\n\
         pub const MESSAGES: &[&str] = &[\n{}];\n\n\
         /// Every enum's proto name (nested ones as `outer.inner`).\n\
         pub const ENUMS: &[&str] = &[\n{}];\n",
        list(&files),
        list(&messages),
        list(&enums)
    )
}
