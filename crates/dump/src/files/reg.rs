//! Regular files, directories and memory devices (`reg_file_entry`).

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileExt, MetadataExt};

use criu_proto::{FdTypes, FileEntry, FownEntry, RegFileEntry};

use super::{FileError, FileParams};

/// How much of a file CRIU inspects for an ELF build-id.
const BUILD_ID_MAP_SIZE: u64 = 1 << 20;
const NT_GNU_BUILD_ID: u32 = 3;
const PT_NOTE: u32 = 4;

/// What a `reg_file_entry` records about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegFile {
    /// Absolute path.
    pub name: String,
    /// st_size, for regular files not opened write-only-append.
    pub size: Option<u64>,
    /// st_mode.
    pub mode: u32,
    /// ELF build-id as little-endian words.
    pub build_id: Vec<u32>,
}

impl RegFile {
    /// Describes the file of `p`, readable through `file`.
    pub fn describe(p: &FileParams, file: BorrowedFd<'_>) -> Result<RegFile, FileError> {
        let mode = p.stat.mode();
        let flags = p.info.flags;
        let write_only_append = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32
            && flags & libc::O_APPEND as u32 != 0;
        let mut reg = RegFile {
            name: p.link.clone(),
            size: None,
            mode,
            build_id: Vec::new(),
        };
        if mode & libc::S_IFMT == libc::S_IFREG && !write_only_append {
            reg.size = Some(p.stat.size());
            if p.stat.size() >= 5 {
                reg.build_id = read_build_id(file, p.stat.size()).unwrap_or_default();
            }
        }
        Ok(reg)
    }

    /// The files.img entry.
    pub fn into_file_entry(self, id: u32, flags: u32, pos: u64, fown: FownEntry) -> FileEntry {
        FileEntry {
            r#type: FdTypes::Reg as i32,
            id,
            reg: Some(RegFileEntry {
                id,
                flags,
                pos,
                fown,
                name: self.name,
                mnt_id: None,
                size: self.size,
                ext: None,
                mode: Some(self.mode),
                build_id: self.build_id,
                checksum: None,
                checksum_config: None,
                checksum_parameter: None,
            }),
            ..Default::default()
        }
    }
}

/// Reads the file again through `/proc/self/fd` (the fd may be write-only)
/// and extracts its build-id.
fn read_build_id(file: BorrowedFd<'_>, size: u64) -> Option<Vec<u32>> {
    use std::os::fd::AsRawFd;
    let reopened = File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let len = size.min(BUILD_ID_MAP_SIZE) as usize;
    let mut head = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match reopened.read_at(&mut head[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(_) => return None,
        }
    }
    head.truncate(done);
    build_id_words(&head)
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The GNU build-id of a 64-bit ELF image (its first bytes), as CRIU stores
/// it: the note descriptor padded to whole little-endian u32 words. Like CRIU,
/// the first note of type NT_GNU_BUILD_ID in a PT_NOTE segment wins.
pub fn build_id_words(elf: &[u8]) -> Option<Vec<u32>> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return None;
    }
    let phoff = u64_at(elf, 32)? as usize;
    let phnum = u16_at(elf, 56)? as usize;
    const PHDR: usize = 56;
    const NHDR: usize = 12;
    for i in 0..phnum {
        let ph = phoff.checked_add(i * PHDR)?;
        if ph + PHDR > elf.len() {
            break;
        }
        if u32_at(elf, ph)? != PT_NOTE {
            continue;
        }
        let offset = u64_at(elf, ph + 8)? as usize;
        let filesz = u64_at(elf, ph + 32)? as usize;
        let end = offset
            .saturating_add(filesz)
            .min(elf.len().saturating_sub(NHDR));
        let mut note = offset;
        while note <= end && note + NHDR <= elf.len() {
            let namesz = u32_at(elf, note)? as usize;
            let descsz = u32_at(elf, note + 4)? as usize;
            let kind = u32_at(elf, note + 8)?;
            if kind == NT_GNU_BUILD_ID {
                if descsz == 0 || descsz > 512 {
                    return None;
                }
                let desc = note + NHDR + namesz.div_ceil(4) * 4;
                let bytes = elf.get(desc..desc + descsz)?;
                let mut padded = bytes.to_vec();
                padded.resize(descsz.div_ceil(4) * 4, 0);
                return Some(
                    padded
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                );
            }
            note += NHDR + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_of_sleep_matches_the_criu_fixture() {
        // tests/fixtures/criu42-sleep/files.json: /usr/bin/sleep's build_id.
        let elf = std::fs::read("/usr/bin/sleep").unwrap();
        let words = build_id_words(&elf[..elf.len().min(1 << 20)]).unwrap();
        assert_eq!(
            words,
            vec![1614549219, 423715391, 633398697, 1138550244, 2954462479]
        );
    }

    #[test]
    fn non_elf_has_no_build_id() {
        assert_eq!(
            build_id_words(
                b"#!/bin/sh\necho hello world, not an elf file at all......................"
            ),
            None
        );
    }
}
