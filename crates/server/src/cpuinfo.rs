//! `cpuinfo.img`: the CPU description a dump records (CPUID vendor, family,
//! model, stepping, the capability words in CRIU's order, XSAVE features and
//! sizes) and the check a restore host makes against it.

use std::os::fd::{AsFd, OwnedFd};

use criu_image::{ImageDir, ImageError, ImageKind};
use criu_proto::{cpuinfo_x86_entry::Vendor, CpuinfoEntry, CpuinfoX86Entry};
use thiserror::Error;

use crate::options::cpu_cap;

/// Capability layout version CRIU writes (NCAPINTS_V2 words).
pub const CAPABILITY_VERSION: u32 = 2;
/// Number of capability words in version 2.
pub const CAPABILITY_WORDS: usize = 19;

/// Errors dumping or checking cpuinfo.
#[derive(Debug, Error)]
pub enum CpuinfoError {
    /// Reading or writing the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The images dir descriptor cannot be duplicated.
    #[error("Can't duplicate the images dir fd: {0}")]
    Dup(#[source] std::io::Error),
    /// cpuinfo.img has no x86 entry.
    #[error("cpuinfo.img holds no x86 CPU entry")]
    NoEntry,
    /// The CPU differs from the one recorded.
    #[error("CPU mismatch: {0}")]
    Mismatch(String),
}

impl CpuinfoError {
    /// Whether the failure is a CPU mismatch (RPC cr_errno ENOTSUP).
    pub fn is_mismatch(&self) -> bool {
        matches!(self, CpuinfoError::Mismatch(_))
    }
}

#[cfg(target_arch = "x86_64")]
fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    crate::sys::cpuid(leaf, subleaf)
}

/// Describes this CPU the way CRIU's `cpuinfo_x86_entry` does.
#[cfg(target_arch = "x86_64")]
pub fn current() -> CpuinfoX86Entry {
    let [max_leaf, vb, vc, vd] = cpuid(0, 0);
    let mut vendor_bytes = Vec::with_capacity(12);
    for word in [vb, vd, vc] {
        vendor_bytes.extend_from_slice(&word.to_le_bytes());
    }
    let vendor = match vendor_bytes.as_slice() {
        b"GenuineIntel" => Vendor::Intel,
        b"AuthenticAMD" => Vendor::Amd,
        _ => Vendor::Unknown,
    };
    let mut caps = vec![0u32; CAPABILITY_WORDS];
    let (mut family, mut model, mut stepping) = (0, 0, 0);
    if max_leaf >= 1 {
        let [eax, _, ecx, edx] = cpuid(1, 0);
        stepping = eax & 0xf;
        family = (eax >> 8) & 0xf;
        model = (eax >> 4) & 0xf;
        if family == 0xf {
            family += (eax >> 20) & 0xff;
        }
        if family >= 6 {
            model += ((eax >> 16) & 0xf) << 4;
        }
        caps[0] = edx;
        caps[4] = ecx;
    }
    if max_leaf >= 6 {
        caps[14] = cpuid(6, 0)[0];
    }
    if max_leaf >= 7 {
        let [_, ebx, ecx, edx] = cpuid(7, 0);
        caps[9] = ebx;
        caps[11] = ecx;
        caps[18] = edx;
    }
    if max_leaf >= 0xd {
        caps[10] = cpuid(0xd, 1)[0];
    }
    if max_leaf >= 0xf {
        let [_, _, _, edx] = cpuid(0xf, 0);
        caps[16] = edx;
        if edx & (1 << 1) != 0 {
            caps[12] = cpuid(0xf, 1)[3];
        }
    }
    let max_ext = cpuid(0x8000_0000, 0)[0];
    if max_ext >= 0x8000_0001 {
        let [_, _, ecx, edx] = cpuid(0x8000_0001, 0);
        caps[6] = ecx;
        caps[1] = edx;
    }
    let mut model_id = None;
    if max_ext >= 0x8000_0004 {
        let mut brand = Vec::with_capacity(48);
        for leaf in 0x8000_0002..=0x8000_0004 {
            for word in cpuid(leaf, 0) {
                brand.extend_from_slice(&word.to_le_bytes());
            }
        }
        let text = String::from_utf8_lossy(&brand);
        model_id = Some(text.trim_matches(char::from(0)).trim().to_string());
    }
    if max_ext >= 0x8000_0007 {
        caps[17] = cpuid(0x8000_0007, 0)[1];
    }
    if max_ext >= 0x8000_0008 {
        caps[13] = cpuid(0x8000_0008, 0)[1];
    }
    if max_ext >= 0x8000_000a {
        caps[15] = cpuid(0x8000_000a, 0)[3];
    }
    let (mut xfeatures_mask, mut xsave_size, mut xsave_size_max) = (None, None, None);
    if max_leaf >= 0xd {
        let [eax, ebx, ecx, edx] = cpuid(0xd, 0);
        let supported = (u64::from(edx) << 32) | u64::from(eax);
        xfeatures_mask = Some(crate::sys::xcr0() & supported);
        xsave_size = Some(ebx);
        xsave_size_max = Some(ecx);
    }
    CpuinfoX86Entry {
        vendor_id: vendor as i32,
        cpu_family: family,
        model,
        stepping,
        capability_ver: CAPABILITY_VERSION,
        capability: caps,
        model_id,
        xfeatures_mask,
        xsave_size,
        xsave_size_max,
    }
}

fn image_dir(dir: &OwnedFd) -> Result<ImageDir, CpuinfoError> {
    let dup = dir
        .as_fd()
        .try_clone_to_owned()
        .map_err(CpuinfoError::Dup)?;
    Ok(ImageDir::from_fd(dup)?)
}

/// Writes cpuinfo.img for this CPU into `dir`.
pub fn dump(dir: &OwnedFd) -> Result<(), CpuinfoError> {
    let images = image_dir(dir)?;
    let entry = CpuinfoEntry {
        x86_entry: vec![current()],
        ..CpuinfoEntry::default()
    };
    let mut writer = images.writer(ImageKind::Cpuinfo, 0)?;
    writer.write_entry(&entry)?;
    writer.finish()?;
    Ok(())
}

/// Reads cpuinfo.img from `dir` and compares it with this CPU under the
/// `cpu_cap` bits (FPU: XSAVE features and size must fit; CPU: capability
/// words must be equal; INS: recorded capabilities must be present here).
pub fn check(dir: &OwnedFd, caps: u32) -> Result<(), CpuinfoError> {
    let images = image_dir(dir)?;
    let mut reader = images.reader_required(ImageKind::Cpuinfo, 0)?;
    let entry: CpuinfoEntry = reader.next_entry()?.ok_or(CpuinfoError::NoEntry)?;
    let recorded = entry.x86_entry.first().ok_or(CpuinfoError::NoEntry)?;
    compare(recorded, &current(), caps)
}

/// The comparison behind [`check`].
pub fn compare(
    recorded: &CpuinfoX86Entry,
    here: &CpuinfoX86Entry,
    caps: u32,
) -> Result<(), CpuinfoError> {
    if recorded.vendor_id != here.vendor_id {
        return Err(CpuinfoError::Mismatch(format!(
            "vendor {} recorded, {} here",
            recorded.vendor_id, here.vendor_id
        )));
    }
    if caps & cpu_cap::FPU != 0 {
        let want = recorded.xfeatures_mask.unwrap_or(0);
        let have = here.xfeatures_mask.unwrap_or(0);
        if want & !have != 0 {
            return Err(CpuinfoError::Mismatch(format!(
                "XSAVE features {want:#x} recorded, only {have:#x} here"
            )));
        }
        if recorded.xsave_size_max.unwrap_or(0) > here.xsave_size_max.unwrap_or(0) {
            return Err(CpuinfoError::Mismatch(format!(
                "XSAVE area of {} bytes recorded, at most {} here",
                recorded.xsave_size_max.unwrap_or(0),
                here.xsave_size_max.unwrap_or(0)
            )));
        }
    }
    let words = recorded.capability.len().min(here.capability.len());
    if caps & cpu_cap::CPU != 0 && recorded.capability[..words] != here.capability[..words] {
        return Err(CpuinfoError::Mismatch("CPU capability words differ".into()));
    }
    if caps & cpu_cap::INS != 0 {
        for (index, (want, have)) in recorded.capability.iter().zip(&here.capability).enumerate() {
            if want & !have != 0 {
                return Err(CpuinfoError::Mismatch(format!(
                    "capability word {index}: bits {:#x} missing here",
                    want & !have
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_cpu_is_described_and_matches_itself() {
        let here = current();
        assert_ne!(here.cpu_family, 0);
        assert_eq!(here.capability.len(), CAPABILITY_WORDS);
        assert_ne!(here.capability[0] & 1, 0, "x86_64 always has an FPU");
        assert!(here.xsave_size.unwrap() >= 576);
        compare(&here, &here, cpu_cap::ALL).unwrap();
    }

    #[test]
    fn a_richer_recorded_cpu_is_a_mismatch() {
        let here = current();
        let mut richer = here.clone();
        richer.xfeatures_mask = Some(here.xfeatures_mask.unwrap() | (1 << 62));
        assert!(compare(&richer, &here, cpu_cap::FPU)
            .unwrap_err()
            .is_mismatch());
        let mut other = here.clone();
        other.capability[4] ^= 1 << 30;
        assert!(compare(&other, &here, cpu_cap::CPU)
            .unwrap_err()
            .is_mismatch());
        compare(&other, &here, cpu_cap::FPU).unwrap();
    }

    #[test]
    fn dump_then_check_round_trips_through_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let fd: OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        dump(&fd).unwrap();
        assert!(dir.path().join("cpuinfo.img").exists());
        check(&fd, cpu_cap::ALL).unwrap();
    }
}
