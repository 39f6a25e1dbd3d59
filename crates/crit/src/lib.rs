//! crit: decode, encode and inspect CRIU images, printing the same JSON as
//! CRIU's Python crit (`{"magic": "CORE", "entries": [...]}`).
//!
//! ```no_run
//! use criu_crit::{decode_image, DecodeOptions, Schema};
//! # fn main() -> Result<(), criu_crit::CritError> {
//! let schema = Schema::load()?;
//! let bytes = std::fs::read("/tmp/dump/pstree.img").unwrap();
//! let json = decode_image(&schema, "pstree.img", bytes, DecodeOptions::default())?;
//! println!("{}", json.to_python_string(None));
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod convert;
mod error;
pub mod explore;
pub mod images;
pub mod json;

pub use convert::Schema;
pub use error::CritError;
pub use explore::{explore, Explorer};
pub use images::{decode_image, encode_image, image_info, DecodeOptions};
pub use json::Json;
