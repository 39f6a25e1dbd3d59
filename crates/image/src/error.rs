//! The error type of image files: every variant names the file and, where it
//! applies, the byte offset in it.

use std::io;

use crate::kind::{ImageKind, KindError};

/// An image file could not be opened, read, decoded or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A system call on the images directory or a file in it failed.
    #[error("{file}: {op}: {source}")]
    Io {
        /// The file (or directory) name.
        file: String,
        /// What was being done (`"open"`, `"read"`, `"rename"`...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A read failed at a known offset.
    #[error("{file}: read at offset {offset}: {source}")]
    Read {
        /// The file name.
        file: String,
        /// Byte offset of the read.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The image a caller required does not exist.
    #[error("{file}: image is missing")]
    Missing {
        /// The file name.
        file: String,
    },
    /// The file ends before its magics.
    #[error("{file}: {len} bytes is too short for the {needed}-byte magic header")]
    TooShortForMagic {
        /// The file name.
        file: String,
        /// File length.
        len: u64,
        /// Bytes the magics need.
        needed: u64,
    },
    /// A magic word does not match the kind being opened.
    #[error(
        "{file}: bad {which} at offset {offset}: expected {expected:#010x}, found {found:#010x}"
    )]
    BadMagic {
        /// The file name.
        file: String,
        /// `"head magic"` or `"magic"`.
        which: &'static str,
        /// Offset of the word (0 or 4).
        offset: u64,
        /// The magic this kind has.
        expected: u32,
        /// What the file holds.
        found: u32,
    },
    /// The magic names no image kind (e.g. raw pages fed to crit).
    #[error("{file}: unknown magic {found:#010x} at offset {offset}")]
    UnknownMagic {
        /// The file name.
        file: String,
        /// Offset of the word.
        offset: u64,
        /// The word found.
        found: u32,
    },
    /// The file ends in the middle of an entry's 4-byte size.
    #[error("{file}: truncated entry size at offset {offset}: only {remaining} of 4 bytes remain")]
    TruncatedSize {
        /// The file name.
        file: String,
        /// Offset of the size word.
        offset: u64,
        /// Bytes left in the file.
        remaining: u64,
    },
    /// An entry (or its extra payload) claims more bytes than the file has left.
    #[error(
        "{file}: {what} at offset {offset} claims {claimed} bytes but only {remaining} remain"
    )]
    PastEnd {
        /// The file name.
        file: String,
        /// `"entry"` or `"extra payload"`.
        what: &'static str,
        /// Offset where the payload starts (entries: offset of the size word).
        offset: u64,
        /// The claimed length.
        claimed: u64,
        /// Bytes left in the file after the size word.
        remaining: u64,
    },
    /// The protobuf bytes of an entry do not decode as the expected message.
    #[error("{file}: entry at offset {offset} ({len} bytes) is not a valid {message}: {source}")]
    Decode {
        /// The file name.
        file: String,
        /// Offset of the entry's size word.
        offset: u64,
        /// Payload length.
        len: u64,
        /// The message type expected.
        message: &'static str,
        /// What prost said.
        #[source]
        source: prost::DecodeError,
    },
    /// An entry is too large for the u32 size prefix.
    #[error("{file}: entry at offset {offset} is {len} bytes, more than a u32 size can say")]
    EntryTooLarge {
        /// The file name.
        file: String,
        /// Offset where it would be written.
        offset: u64,
        /// Encoded length.
        len: usize,
    },
    /// Entries were asked of a raw image, or raw access of a protobuf image.
    #[error("{file}: {kind} is a raw image without entries")]
    RawImage {
        /// The file name.
        file: String,
        /// The kind.
        kind: ImageKind,
    },
    /// The path given as an images directory is not a directory.
    #[error("{file}: not a directory")]
    NotADirectory {
        /// The path or fd description.
        file: String,
    },
    /// The `parent` links loop.
    #[error("{file}: parent images chain loops back to a directory already visited")]
    ParentLoop {
        /// The directory where the loop was found.
        file: String,
    },
    /// A kind/id pair that names no file.
    #[error(transparent)]
    Kind(#[from] KindError),
}

impl ImageError {
    pub(crate) fn io(file: impl Into<String>, op: &'static str, source: io::Error) -> Self {
        ImageError::Io {
            file: file.into(),
            op,
            source,
        }
    }

    /// The errno behind this error, if a system call failed.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ImageError::Io { source, .. } | ImageError::Read { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}
