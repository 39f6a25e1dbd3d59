//! Protobuf types wire-compatible with CRIU 4.2: the RPC messages (`rpc.proto`)
//! and every image entry (`core.proto`, `mm.proto`, ...).
//!
//! CRIU's `.proto` files have no `package`, so every message lives in this one
//! flat module under its prost name: `criu_req` is [`CriuReq`], `core_entry` is
//! [`CoreEntry`], and so on. Nested messages and enums live in the snake_case
//! module named after their parent, as prost lays them out.
#![deny(unsafe_code)]

#[allow(clippy::all, missing_docs, rustdoc::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

pub use generated::*;

/// The encoded `google.protobuf.FileDescriptorSet` of all our `.proto` files
/// (plus `google/protobuf/descriptor.proto`, which `opts.proto` imports). Custom
/// field options, extension 1018 `(criu)` of `FieldOptions`, are preserved.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/criu_descriptor_set.bin"));
