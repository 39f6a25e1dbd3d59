//! [`ImageReader`]: validated, bounded reading of one image file.
//!
//! Layout: `[head magic] type magic { u32 size, protobuf[size], [extra] }`.
//! Every length read from the file is checked against what is left of the file
//! before anything is allocated, so a corrupt size field is an error naming the
//! file and offset, never an out-of-memory abort.

use std::fs::File;
use std::io::{self, BufReader, Read};

use crate::error::ImageError;
use crate::kind::{HeadMagic, ImageKind, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};

/// Read buffer of file-backed readers. Entries are small; big extra payloads
/// bypass the buffer.
const READ_BUFFER: usize = 64 * 1024;

enum Source {
    /// The file does not exist: no entries.
    Empty,
    File(BufReader<File>),
    Memory(Vec<u8>),
}

/// Reads the entries of one image.
pub struct ImageReader {
    file: String,
    kind: ImageKind,
    source: Source,
    /// Offset of the next unread byte.
    offset: u64,
    /// Total file length (fixed at open).
    len: u64,
    /// Offset of the size word of the entry returned last.
    entry_offset: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for ImageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageReader")
            .field("file", &self.file)
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

impl ImageReader {
    /// A reader of a missing image: no entries.
    pub fn empty(file: impl Into<String>, kind: ImageKind) -> ImageReader {
        ImageReader {
            file: file.into(),
            kind,
            source: Source::Empty,
            offset: 0,
            len: 0,
            entry_offset: 0,
            scratch: Vec::new(),
        }
    }

    /// Reads an image of a known kind from an open file and checks its magics.
    pub fn from_file(
        file: impl Into<String>,
        kind: ImageKind,
        handle: File,
    ) -> Result<ImageReader, ImageError> {
        let mut reader = ImageReader::file_source(file.into(), kind, handle)?;
        reader.check_magics()?;
        Ok(reader)
    }

    /// Reads an image of a known kind held in memory and checks its magics.
    pub fn from_bytes(
        file: impl Into<String>,
        kind: ImageKind,
        bytes: Vec<u8>,
    ) -> Result<ImageReader, ImageError> {
        let mut reader = ImageReader::memory_source(file.into(), kind, bytes);
        reader.check_magics()?;
        Ok(reader)
    }

    /// Reads an image of any kind from memory, recognising the kind by its magic
    /// the way crit does: a head magic is optional, the type magic decides.
    pub fn detect_bytes(
        file: impl Into<String>,
        bytes: Vec<u8>,
    ) -> Result<ImageReader, ImageError> {
        let mut reader = ImageReader::memory_source(file.into(), ImageKind::Inventory, bytes);
        reader.detect_kind()?;
        Ok(reader)
    }

    /// Like [`ImageReader::detect_bytes`], for an open file.
    pub fn detect_file(file: impl Into<String>, handle: File) -> Result<ImageReader, ImageError> {
        let mut reader = ImageReader::file_source(file.into(), ImageKind::Inventory, handle)?;
        reader.detect_kind()?;
        Ok(reader)
    }

    fn file_source(file: String, kind: ImageKind, handle: File) -> Result<ImageReader, ImageError> {
        let len = handle
            .metadata()
            .map_err(|e| ImageError::io(file.clone(), "fstat", e))?
            .len();
        Ok(ImageReader {
            file,
            kind,
            source: Source::File(BufReader::with_capacity(READ_BUFFER, handle)),
            offset: 0,
            len,
            entry_offset: 0,
            scratch: Vec::new(),
        })
    }

    fn memory_source(file: String, kind: ImageKind, bytes: Vec<u8>) -> ImageReader {
        ImageReader {
            file,
            kind,
            len: bytes.len() as u64,
            source: Source::Memory(bytes),
            offset: 0,
            entry_offset: 0,
            scratch: Vec::new(),
        }
    }

    fn check_magics(&mut self) -> Result<(), ImageError> {
        if self.kind.is_raw() {
            return Err(ImageError::RawImage {
                file: self.file.clone(),
                kind: self.kind,
            });
        }
        let needed = self.kind.magic_len();
        if self.len < needed {
            return Err(ImageError::TooShortForMagic {
                file: self.file.clone(),
                len: self.len,
                needed,
            });
        }
        if let Some(expected) = self.kind.head_magic().value() {
            self.expect_word("head magic", expected)?;
        }
        if let Some(expected) = self.kind.type_magic() {
            self.expect_word("magic", expected)?;
        }
        Ok(())
    }

    fn expect_word(&mut self, which: &'static str, expected: u32) -> Result<(), ImageError> {
        let offset = self.offset;
        let found = self.read_word()?;
        if found != expected {
            return Err(ImageError::BadMagic {
                file: self.file.clone(),
                which,
                offset,
                expected,
                found,
            });
        }
        Ok(())
    }

    fn detect_kind(&mut self) -> Result<(), ImageError> {
        if self.len < 4 {
            return Err(ImageError::TooShortForMagic {
                file: self.file.clone(),
                len: self.len,
                needed: 4,
            });
        }
        let mut offset = self.offset;
        let mut word = self.read_word()?;
        let mut head = HeadMagic::None;
        if word == IMG_COMMON_MAGIC || word == IMG_SERVICE_MAGIC {
            head = if word == IMG_COMMON_MAGIC {
                HeadMagic::Common
            } else {
                HeadMagic::Service
            };
            if self.len < 8 {
                return Err(ImageError::TooShortForMagic {
                    file: self.file.clone(),
                    len: self.len,
                    needed: 8,
                });
            }
            offset = self.offset;
            word = self.read_word()?;
        }
        let kind = ImageKind::from_type_magic(word).ok_or_else(|| ImageError::UnknownMagic {
            file: self.file.clone(),
            offset,
            found: word,
        })?;
        // A head magic of the wrong class (service vs common) is as wrong as a bad type magic.
        if head != HeadMagic::None && head != kind.head_magic() {
            return Err(ImageError::BadMagic {
                file: self.file.clone(),
                which: "head magic",
                offset: 0,
                expected: kind.head_magic().value().unwrap_or(0),
                found: head.value().unwrap_or(0),
            });
        }
        self.kind = kind;
        Ok(())
    }

    fn read_word(&mut self) -> Result<u32, ImageError> {
        let mut word = [0u8; 4];
        self.read_exact_at_offset(&mut word)?;
        Ok(u32::from_le_bytes(word))
    }

    /// Reads exactly `buf.len()` bytes; the caller has checked they exist.
    fn read_exact_at_offset(&mut self, buf: &mut [u8]) -> Result<(), ImageError> {
        let offset = self.offset;
        let result = match &mut self.source {
            Source::Empty => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Source::File(reader) => reader.read_exact(buf),
            Source::Memory(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                match start
                    .checked_add(buf.len())
                    .and_then(|end| bytes.get(start..end))
                {
                    Some(src) => {
                        buf.copy_from_slice(src);
                        Ok(())
                    }
                    None => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                }
            }
        };
        result.map_err(|source| ImageError::Read {
            file: self.file.clone(),
            offset,
            source,
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The image kind (for detected readers: the kind the magic named).
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The file name used in messages.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// True if the file did not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self.source, Source::Empty)
    }

    /// Offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Offset of the size word of the entry returned last.
    pub fn last_entry_offset(&self) -> u64 {
        self.entry_offset
    }

    /// Bytes left after the current offset.
    pub fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.offset)
    }

    /// The protobuf bytes of the next entry, or `None` at a clean end of file.
    /// The slice stays valid until the next call.
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, ImageError> {
        let remaining = self.remaining();
        if remaining == 0 {
            return Ok(None);
        }
        let entry_offset = self.offset;
        if remaining < 4 {
            return Err(ImageError::TruncatedSize {
                file: self.file.clone(),
                offset: entry_offset,
                remaining,
            });
        }
        let size = u64::from(self.read_word()?);
        let remaining = self.remaining();
        if size > remaining {
            return Err(ImageError::PastEnd {
                file: self.file.clone(),
                what: "entry",
                offset: entry_offset,
                claimed: size,
                remaining,
            });
        }
        self.entry_offset = entry_offset;
        // `size <= remaining <= file length`, so this allocation is justified by the input.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.resize(size as usize, 0);
        let result = self.read_exact_at_offset(&mut scratch);
        self.scratch = scratch;
        result?;
        Ok(Some(&self.scratch))
    }

    /// Decodes the next entry as `M`, or `None` at a clean end of file.
    pub fn next_entry<M: prost::Message + Default>(&mut self) -> Result<Option<M>, ImageError> {
        let Some(payload) = self.next_payload()? else {
            return Ok(None);
        };
        let len = payload.len() as u64;
        match M::decode(payload) {
            Ok(message) => Ok(Some(message)),
            Err(source) => Err(ImageError::Decode {
                file: self.file.clone(),
                offset: self.entry_offset,
                len,
                message: short_type_name::<M>(),
                source,
            }),
        }
    }

    /// Reads every remaining entry as `M`.
    pub fn read_all<M: prost::Message + Default>(&mut self) -> Result<Vec<M>, ImageError> {
        let mut entries = Vec::new();
        while let Some(entry) = self.next_entry()? {
            entries.push(entry);
        }
        Ok(entries)
    }

    fn check_extra(&self, len: u64) -> Result<(), ImageError> {
        let remaining = self.remaining();
        if len > remaining {
            return Err(ImageError::PastEnd {
                file: self.file.clone(),
                what: "extra payload",
                offset: self.offset,
                claimed: len,
                remaining,
            });
        }
        Ok(())
    }

    /// Reads the `len` raw bytes that follow an entry (pipe data, socket queues...).
    pub fn read_extra(&mut self, len: u64) -> Result<Vec<u8>, ImageError> {
        self.check_extra(len)?;
        let mut data = vec![0u8; len as usize];
        self.read_exact_at_offset(&mut data)?;
        Ok(data)
    }

    /// Fills `buf` with the raw bytes that follow.
    pub fn read_extra_into(&mut self, buf: &mut [u8]) -> Result<(), ImageError> {
        self.check_extra(buf.len() as u64)?;
        self.read_exact_at_offset(buf)
    }

    /// Skips `len` raw bytes.
    pub fn skip_extra(&mut self, len: u64) -> Result<(), ImageError> {
        self.check_extra(len)?;
        let offset = self.offset;
        let result = match &mut self.source {
            Source::Empty => Ok(()),
            Source::Memory(_) => Ok(()),
            Source::File(reader) => match i64::try_from(len) {
                Ok(delta) => reader.seek_relative(delta),
                Err(_) => Err(io::Error::from(io::ErrorKind::InvalidInput)),
            },
        };
        result.map_err(|source| ImageError::Read {
            file: self.file.clone(),
            offset,
            source,
        })?;
        self.offset += len;
        Ok(())
    }

    /// Reads everything left (a ghost file's contents).
    pub fn read_to_end(&mut self) -> Result<Vec<u8>, ImageError> {
        let remaining = self.remaining();
        self.read_extra(remaining)
    }
}
