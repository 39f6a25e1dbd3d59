//! The error type of crit.

use criu_image::ImageError;

/// Why an image could not be decoded, encoded or explored.
#[derive(Debug, thiserror::Error)]
pub enum CritError {
    /// Framing or magic errors from the image layer.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The magic is not one crit knows (raw data such as pages images).
    #[error("Unknown magic {magic:#x}.\nMaybe you are feeding me an image with raw data(i.e. pages.img)?")]
    UnknownMagic {
        /// The magic word found.
        magic: u32,
    },
    /// The descriptor set compiled into criu-proto is unusable.
    #[error("protobuf descriptors: {0}")]
    Descriptors(String),
    /// A message type the descriptors do not have.
    #[error("no message type {0} in the image descriptors")]
    NoMessage(String),
    /// The protobuf bytes of an entry do not decode.
    #[error("{file}: entry at offset {offset} is not a valid {message}: {reason}")]
    Decode {
        /// The file name.
        file: String,
        /// Offset of the entry.
        offset: u64,
        /// The message type.
        message: String,
        /// What went wrong.
        reason: String,
    },
    /// JSON that does not describe an image.
    #[error("bad image JSON at {path}: {reason}")]
    Json {
        /// Where in the document (`entries[3].tc.comm`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Input that is not JSON at all.
    #[error("Cannot read JSON.\nMaybe you are feeding me an image with protobuf data? Encode expects JSON input. ({0})")]
    NotJson(String),
    /// A file of an images directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An image a directory explorer needs is not what it expects.
    #[error("{file}: {reason}")]
    Explore {
        /// The image file.
        file: String,
        /// What is missing.
        reason: String,
    },
}
