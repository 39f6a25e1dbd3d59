//! [`ImageDir`]: an images directory held open as a file descriptor.
//!
//! Every file is opened relative to the directory fd (`openat`, `O_CLOEXEC`),
//! so a directory passed in by an RPC client as an fd works exactly like one
//! opened by path, and renaming the directory under us does not matter.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, readlinkat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

use crate::error::ImageError;
use crate::kind::ImageKind;
use crate::reader::ImageReader;
use crate::writer::ImageWriter;

/// Name of the symlink to the previous (pre-)dump's images directory.
pub const PARENT_LINK: &str = "parent";

/// Permissions of image files CRIU creates (`CR_FD_PERM`, before the umask).
pub const IMAGE_FILE_MODE: u32 = 0o644;

/// Deepest `parent` chain followed before giving up (pre-dump chains are short;
/// this only bounds damage from a corrupt directory tree).
const MAX_PARENT_DEPTH: usize = 4096;

/// An open images directory. Cheap to clone (the fd is shared).
#[derive(Clone, Debug)]
pub struct ImageDir {
    fd: Arc<OwnedFd>,
    /// Prefix put before file names in messages: empty for the directory the
    /// caller opened, `parent/` for its parent, and so on.
    label: String,
    path: Option<PathBuf>,
}

fn errno_io(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

impl ImageDir {
    /// Opens an existing directory (`O_RDONLY | O_DIRECTORY | O_CLOEXEC`).
    pub fn open(path: impl AsRef<Path>) -> Result<ImageDir, ImageError> {
        let path = path.as_ref();
        let fd = openat(
            AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageError::io(path.display().to_string(), "open images dir", errno_io(e)))?;
        Ok(ImageDir {
            fd: Arc::new(fd),
            label: String::new(),
            path: Some(path.to_owned()),
        })
    }

    /// Opens `path`, creating it (mode 0755, one level) if it does not exist.
    pub fn create(path: impl AsRef<Path>) -> Result<ImageDir, ImageError> {
        let path = path.as_ref();
        match mkdirat(AT_FDCWD, path, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(ImageError::io(
                    path.display().to_string(),
                    "create images dir",
                    errno_io(e),
                ))
            }
        }
        ImageDir::open(path)
    }

    /// Takes ownership of a directory fd (e.g. one an RPC client passed).
    pub fn from_fd(fd: OwnedFd) -> Result<ImageDir, ImageError> {
        let label = "images dir fd".to_owned();
        let stat = fstat(&fd).map_err(|e| ImageError::io(label.clone(), "fstat", errno_io(e)))?;
        if !is_dir(&stat) {
            return Err(ImageError::NotADirectory { file: label });
        }
        Ok(ImageDir {
            fd: Arc::new(fd),
            label: String::new(),
            path: None,
        })
    }

    /// The directory fd.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path it was opened by, if it was opened by path.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How `name` in this directory is called in messages (`parent/pages-1.img`).
    pub fn label(&self, name: &str) -> String {
        format!("{}{}", self.label, name)
    }

    pub(crate) fn shared_fd(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.fd)
    }

    /// Whether the image file exists.
    pub fn exists(&self, kind: ImageKind, id: u64) -> Result<bool, ImageError> {
        let name = kind.file_name(id)?;
        match fstatat(self.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(ImageError::io(self.label(&name), "stat", errno_io(e))),
        }
    }

    /// Opens an image for reading and checks its magics. A missing file reads as
    /// an image without entries, as CRIU treats it.
    pub fn reader(&self, kind: ImageKind, id: u64) -> Result<ImageReader, ImageError> {
        let name = kind.file_name(id)?;
        let label = self.label(&name);
        match self.open_file(&name)? {
            Some(file) => ImageReader::from_file(label, kind, file),
            None => Ok(ImageReader::empty(label, kind)),
        }
    }

    /// Like [`ImageDir::reader`], but a missing file is an error.
    pub fn reader_required(&self, kind: ImageKind, id: u64) -> Result<ImageReader, ImageError> {
        let name = kind.file_name(id)?;
        let label = self.label(&name);
        match self.open_file(&name)? {
            Some(file) => ImageReader::from_file(label, kind, file),
            None => Err(ImageError::Missing { file: label }),
        }
    }

    /// Starts writing an image. The file appears (atomically, complete) at
    /// [`ImageWriter::finish`]; an image that got no entries is not created, and
    /// an old file of that name is removed, as CRIU does.
    pub fn writer(&self, kind: ImageKind, id: u64) -> Result<ImageWriter, ImageError> {
        let name = kind.file_name(id)?;
        Ok(ImageWriter::for_dir(self, kind, name))
    }

    /// Removes an image file; a missing one is fine.
    pub fn remove(&self, kind: ImageKind, id: u64) -> Result<(), ImageError> {
        let name = kind.file_name(id)?;
        self.remove_file(&name)
    }

    /// Removes any file in the directory; a missing one is fine.
    pub fn remove_file(&self, name: &str) -> Result<(), ImageError> {
        match unlinkat(self.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(ImageError::io(self.label(name), "unlink", errno_io(e))),
        }
    }

    /// Opens any file of the directory for reading (`None` if it does not exist).
    /// This is the raw access used for pages images.
    pub fn open_file(&self, name: &str) -> Result<Option<File>, ImageError> {
        match openat(
            self.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(ImageError::io(self.label(name), "open", errno_io(e))),
        }
    }

    /// Creates (or truncates) any file of the directory for writing, mode 0644
    /// like CRIU's images. Not atomic: prefer [`ImageDir::writer`] for images.
    pub fn create_file(&self, name: &str) -> Result<File, ImageError> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
        let fd = openat(
            self.as_fd(),
            name,
            flags,
            Mode::from_bits_truncate(IMAGE_FILE_MODE),
        )
        .map_err(|e| ImageError::io(self.label(name), "create", errno_io(e)))?;
        Ok(File::from(fd))
    }

    /// Renames a file inside the directory (replacing the target).
    pub(crate) fn rename_in(dir: &OwnedFd, from: &str, to: &str) -> Result<(), Errno> {
        renameat(dir, from, dir, to)
    }

    /// Opens the raw pages image `pages-<pages_id>.img`, if it exists.
    pub fn open_pages(&self, pages_id: u32) -> Result<Option<File>, ImageError> {
        let name = ImageKind::Pages.file_name(u64::from(pages_id))?;
        self.open_file(&name)
    }

    /// The target of the `parent` symlink, if there is one.
    pub fn parent_link(&self) -> Result<Option<PathBuf>, ImageError> {
        match readlinkat(self.as_fd(), PARENT_LINK) {
            Ok(target) => Ok(Some(PathBuf::from(target))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(ImageError::io(
                self.label(PARENT_LINK),
                "readlink",
                errno_io(e),
            )),
        }
    }

    /// The images directory the `parent` symlink points at, if there is a link.
    /// The link is resolved relative to this directory. A dangling link is an
    /// error (CRIU fails the same way).
    pub fn parent(&self) -> Result<Option<ImageDir>, ImageError> {
        match fstatat(self.as_fd(), PARENT_LINK, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(ImageError::io(self.label(PARENT_LINK), "stat", errno_io(e))),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = openat(self.as_fd(), PARENT_LINK, flags, Mode::empty())
            .map_err(|e| ImageError::io(self.label(PARENT_LINK), "open parent dir", errno_io(e)))?;
        Ok(Some(ImageDir {
            fd: Arc::new(fd),
            label: format!("{}{}/", self.label, PARENT_LINK),
            path: self.path.as_ref().map(|p| p.join(PARENT_LINK)),
        }))
    }

    /// This directory followed by its parents, nearest first. Stops at the first
    /// directory without a `parent` link; a loop is an error.
    pub fn parent_chain(&self) -> Result<Vec<ImageDir>, ImageError> {
        let mut chain = vec![self.clone()];
        let mut seen = vec![self.identity()?];
        while let Some(parent) = chain[chain.len() - 1].parent()? {
            let identity = parent.identity()?;
            if seen.contains(&identity) || chain.len() >= MAX_PARENT_DEPTH {
                return Err(ImageError::ParentLoop {
                    file: parent.label("."),
                });
            }
            seen.push(identity);
            chain.push(parent);
        }
        Ok(chain)
    }

    fn identity(&self) -> Result<(u64, u64), ImageError> {
        let stat = fstat(self.as_fd())
            .map_err(|e| ImageError::io(self.label("."), "fstat", errno_io(e)))?;
        Ok((stat.st_dev, stat.st_ino))
    }

    /// Creates the `parent` symlink pointing at `target` (relative to this
    /// directory, e.g. `../1`). An existing link is left alone, as CRIU does.
    pub fn set_parent(&self, target: impl AsRef<Path>) -> Result<(), ImageError> {
        match symlinkat(target.as_ref(), self.as_fd(), PARENT_LINK) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(ImageError::io(
                self.label(PARENT_LINK),
                "symlink",
                errno_io(e),
            )),
        }
    }
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

impl AsFd for ImageDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
