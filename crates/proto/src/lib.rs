//! Protobuf types wire-compatible with CRIU 4.2: the RPC messages (`rpc.proto`)
//! and every image entry (`core.proto`, `mm.proto`, ...).
//!
//! CRIU's `.proto` files have no `package`, so every message lives in this one
//! flat module under its prost name: `criu_req` is [`CriuReq`], `core_entry` is
//! [`CoreEntry`], and so on. Nested enums live in the snake_case module named
//! after their parent message (`core_entry::March`), as prost lays them out.
//! Every message implements [`prost::Name`], so `CoreEntry::full_name()` is the
//! name to look it up by in a descriptor pool built from
//! [`FILE_DESCRIPTOR_SET`].
//!
//! The `.proto` sources (in `proto/` at the workspace root) carry exactly
//! CRIU's message, field and enum names, numbers, types and labels; repeated
//! scalars are unpacked, as in proto2 by default.
#![deny(unsafe_code)]

#[allow(clippy::all, missing_docs, rustdoc::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

pub use generated::*;

/// The encoded `google.protobuf.FileDescriptorSet` of all our `.proto` files,
/// plus `google/protobuf/descriptor.proto`, which `opts.proto` imports.
///
/// Custom field options are kept: extension 1018 of `FieldOptions`, the
/// `(criu)` option declared in `opts.proto` as message `CRIU_Opts`
/// (`hex`, `ipadd`, `flags`, `dev`, `odev`, `dict`, `conv`). No source info.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/criu_descriptor_set.bin"));

/// Proto-level names of everything generated here, for reflection users
/// (crit) and for tests that want to walk every message.
pub mod names {
    include!(concat!(env!("OUT_DIR"), "/criu_names.rs"));

    /// File that declares the `(criu)` field option; it is in
    /// [`FILE_DESCRIPTOR_SET`](crate::FILE_DESCRIPTOR_SET) but has no Rust
    /// code (its message would clash with `criu_opts` as `CriuOpts`).
    pub const OPTIONS_FILE: &str = "opts.proto";

    /// Full name of the extension carrying CRIU's field options.
    pub const OPTIONS_EXTENSION: &str = "criu";

    /// Field number of that extension in `google.protobuf.FieldOptions`.
    pub const OPTIONS_EXTENSION_NUMBER: u32 = 1018;
}
