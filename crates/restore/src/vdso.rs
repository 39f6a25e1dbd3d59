//! What makes two vDSO images interchangeable for a restored process.
//!
//! A restore maps the running kernel's vDSO where the dumped one was. That is only right if the
//! process cannot tell the difference: every function symbol at the same offset (code calls the
//! vDSO through the addresses it resolved at start-up) and the same machine code (a thread frozen
//! inside a vDSO function resumes at the same offset). Other bytes may differ without harm, and do
//! between two builds of the same kernel: the build-id note and other non-code sections. So the
//! comparison is on the executable sections and the dynamic function symbols, not on every byte
//! (which refused dumps taken on a rebuilt kernel of the same version).
//!
//! The dumped image comes from an image file: every offset is bounds-checked, and anything that
//! does not parse as a 64-bit little-endian ELF is "not comparable" rather than a panic.

use std::collections::BTreeMap;

/// The parts of a vDSO image that must match.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VdsoIdentity {
    /// (section name, contents) of every executable section, in section order.
    code: Vec<(String, Vec<u8>)>,
    /// Function symbols of `.dynsym`: name → (offset, size).
    functions: BTreeMap<String, (u64, u64)>,
}

/// Why an image could not be read as a vDSO.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a readable 64-bit ELF image: {0}")]
pub(crate) struct NotElf(&'static str);

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const SECTION_HEADER_SIZE: usize = 64;
const SYMBOL_SIZE: usize = 24;
const SHT_DYNSYM: u32 = 11;
const SHF_EXECINSTR: u64 = 0x4;
const STT_FUNC: u8 = 2;

fn bytes_at(image: &[u8], offset: u64, len: u64) -> Result<&[u8], NotElf> {
    let start = usize::try_from(offset).map_err(|_| NotElf("offset out of range"))?;
    let len = usize::try_from(len).map_err(|_| NotElf("length out of range"))?;
    let end = start
        .checked_add(len)
        .ok_or(NotElf("offset + length overflows"))?;
    image.get(start..end).ok_or(NotElf("points past the image"))
}

fn u16_at(image: &[u8], offset: usize) -> Result<u16, NotElf> {
    let bytes = bytes_at(image, offset as u64, 2)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(image: &[u8], offset: usize) -> Result<u32, NotElf> {
    let bytes = bytes_at(image, offset as u64, 4)?;
    Ok(u32::from_le_bytes(
        bytes.try_into().map_err(|_| NotElf("short read"))?,
    ))
}

fn u64_at(image: &[u8], offset: usize) -> Result<u64, NotElf> {
    let bytes = bytes_at(image, offset as u64, 8)?;
    Ok(u64::from_le_bytes(
        bytes.try_into().map_err(|_| NotElf("short read"))?,
    ))
}

/// A NUL-terminated name at `offset` of the string table `table`.
fn name_at(table: &[u8], offset: u32) -> Result<String, NotElf> {
    let rest = table
        .get(offset as usize..)
        .ok_or(NotElf("name offset past its string table"))?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(NotElf("unterminated name"))?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

struct Section {
    name: u32,
    kind: u32,
    flags: u64,
    offset: u64,
    size: u64,
    link: u32,
}

fn sections(image: &[u8]) -> Result<Vec<Section>, NotElf> {
    if image.get(..4) != Some(ELF_MAGIC.as_slice()) {
        return Err(NotElf("no ELF magic"));
    }
    if image.get(4) != Some(&ELFCLASS64) || image.get(5) != Some(&ELFDATA2LSB) {
        return Err(NotElf("not 64-bit little-endian"));
    }
    let table = u64_at(image, 0x28)?;
    let entry_size = usize::from(u16_at(image, 0x3a)?);
    let count = usize::from(u16_at(image, 0x3c)?);
    if entry_size != SECTION_HEADER_SIZE {
        return Err(NotElf("unexpected section header size"));
    }
    (0..count)
        .map(|index| {
            let at = usize::try_from(table)
                .ok()
                .and_then(|table| table.checked_add(index * SECTION_HEADER_SIZE))
                .ok_or(NotElf("section table out of range"))?;
            Ok(Section {
                name: u32_at(image, at)?,
                kind: u32_at(image, at + 4)?,
                flags: u64_at(image, at + 8)?,
                offset: u64_at(image, at + 0x18)?,
                size: u64_at(image, at + 0x20)?,
                link: u32_at(image, at + 0x28)?,
            })
        })
        .collect()
}

impl VdsoIdentity {
    /// Reads the code and the function symbols of a vDSO image (the bytes of the `[vdso]` VMA).
    pub(crate) fn parse(image: &[u8]) -> Result<VdsoIdentity, NotElf> {
        let sections = sections(image)?;
        let names_index = usize::from(u16_at(image, 0x3e)?);
        let names = sections
            .get(names_index)
            .ok_or(NotElf("no section name table"))
            .and_then(|s| bytes_at(image, s.offset, s.size))?;
        let mut code = Vec::new();
        let mut functions = BTreeMap::new();
        for section in &sections {
            if section.flags & SHF_EXECINSTR != 0 {
                code.push((
                    name_at(names, section.name)?,
                    bytes_at(image, section.offset, section.size)?.to_vec(),
                ));
            }
            if section.kind != SHT_DYNSYM {
                continue;
            }
            let strings = sections
                .get(section.link as usize)
                .ok_or(NotElf("dynsym links to no string table"))
                .and_then(|s| bytes_at(image, s.offset, s.size))?;
            let symbols = bytes_at(image, section.offset, section.size)?;
            for symbol in symbols.chunks_exact(SYMBOL_SIZE) {
                if symbol[4] & 0xf != STT_FUNC {
                    continue;
                }
                let name = name_at(strings, u32_at(symbol, 0)?)?;
                functions.insert(name, (u64_at(symbol, 8)?, u64_at(symbol, 16)?));
            }
        }
        if functions.is_empty() {
            return Err(NotElf("no function symbols"));
        }
        Ok(VdsoIdentity { code, functions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's own vDSO image.
    fn own_vdso() -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps.lines().find(|l| l.ends_with("[vdso]")).unwrap();
        let (start, end) = line
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut image = vec![0u8; (end - start) as usize];
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        mem.read_exact_at(&mut image, start).unwrap();
        image
    }

    fn section_named(image: &[u8], wanted: &str) -> Section {
        let all = sections(image).unwrap();
        let names = &all[usize::from(u16_at(image, 0x3e).unwrap())];
        let names = bytes_at(image, names.offset, names.size).unwrap();
        all.into_iter()
            .find(|s| name_at(names, s.name).unwrap() == wanted)
            .unwrap()
    }

    #[test]
    fn the_running_vdso_has_code_and_clock_gettime() {
        let identity = VdsoIdentity::parse(&own_vdso()).unwrap();
        assert!(identity.functions.contains_key("__vdso_clock_gettime"));
        assert!(identity.code.iter().any(|(name, _)| name == ".text"));
    }

    #[test]
    fn a_different_build_id_keeps_the_identity() {
        let image = own_vdso();
        let mut rebuilt = image.clone();
        // The build-id is the last note of `.note`.
        let note = section_named(&image, ".note");
        let end = (note.offset + note.size) as usize;
        rebuilt[end - 4..end].iter_mut().for_each(|b| *b ^= 0xff);
        assert_ne!(image, rebuilt);
        assert_eq!(
            VdsoIdentity::parse(&image).unwrap(),
            VdsoIdentity::parse(&rebuilt).unwrap()
        );
    }

    #[test]
    fn changed_code_changes_the_identity() {
        let image = own_vdso();
        let mut patched = image.clone();
        let text = section_named(&image, ".text");
        patched[text.offset as usize + 1] ^= 0xff;
        assert_ne!(
            VdsoIdentity::parse(&image).unwrap(),
            VdsoIdentity::parse(&patched).unwrap()
        );
    }

    #[test]
    fn garbage_and_truncated_images_are_not_elf() {
        let image = own_vdso();
        assert!(VdsoIdentity::parse(&[]).is_err());
        assert!(VdsoIdentity::parse(&[0u8; 4096]).is_err());
        for len in [3, 64, 1000, image.len() / 2] {
            // Any prefix either parses or errors; none panics.
            let _ = VdsoIdentity::parse(&image[..len]);
        }
        let mut bad_table = image.clone();
        bad_table[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(VdsoIdentity::parse(&bad_table).is_err());
    }
}
