//! CRIU image files, wire-compatible with CRIU 4.2.
//!
//! - [`ImageKind`]: every image CRIU knows, with its file name pattern, magics and
//!   entry message.
//! - [`ImageDir`]: an images directory held as an fd; [`ImageDir::reader`] and
//!   [`ImageDir::writer`] open one image.
//! - [`ImageReader`] / [`ImageWriter`]: the `u32 size + protobuf [+ extra]` framing,
//!   bounded and validated on read, buffered and atomically published on write.
//! - [`PagemapWriter`], [`PagemapReader`], [`PageRead`]: memory contents, with
//!   `PE_PARENT` runs resolved through the `parent` chain.
//! - [`inventory`]: the inventory and stats images as CRIU 4.2 writes them.
//!
//! ```no_run
//! use criu_image::{ImageDir, ImageKind};
//! use criu_proto::PstreeEntry;
//! # fn main() -> Result<(), criu_image::ImageError> {
//! let dir = ImageDir::open("/tmp/dump")?;
//! let mut pstree = dir.reader(ImageKind::Pstree, 0)?;
//! while let Some(task) = pstree.next_entry::<PstreeEntry>()? {
//!     println!("pid {} ppid {}", task.pid, task.ppid);
//! }
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dir;
mod error;
pub mod inventory;
mod kind;
mod pagemap;
mod reader;
#[allow(unsafe_code)]
mod sys;
mod writer;

pub use dir::{ImageDir, IMAGE_FILE_MODE, PARENT_LINK};
pub use error::ImageError;
pub use kind::{
    HeadMagic, IdFormat, ImageKind, KindError, IMAGES_V1_1, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC,
};
pub use pagemap::{
    PageRead, PageRun, PageSegment, PagemapError, PagemapReader, PagemapStats, PagemapTarget,
    PagemapWriter, PagesIdAllocator, PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT,
};
pub use reader::ImageReader;
pub use writer::{ImageWriter, MappedExtra, MappedExtraWriter, Unmapper};
