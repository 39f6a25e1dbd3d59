//! Register sets and small kernel records: `user_regs_struct`, the XSAVE area, siginfo, rseq
//! configuration, syscall info, and the syscall-restart fixup for dumped registers.

use std::sync::OnceLock;

use crate::sys;

macro_rules! user_regs {
    ($($field:ident),* $(,)?) => {
        /// x86_64 `struct user_regs_struct` (NT_PRSTATUS, 216 bytes), field for field.
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct UserRegs {
            $(pub $field: u64,)*
        }

        impl UserRegs {
            /// Size of the kernel structure in bytes.
            pub const SIZE: usize = 27 * 8;

            /// Decodes the NT_PRSTATUS byte layout.
            pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
                let mut words = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
                UserRegs { $($field: words.next().unwrap_or(0),)* }
            }

            /// Encodes into the NT_PRSTATUS byte layout.
            pub fn to_bytes(&self) -> [u8; Self::SIZE] {
                let mut out = [0u8; Self::SIZE];
                let words = [$(self.$field,)*];
                for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
                out
            }
        }
    };
}

user_regs!(
    r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp,
    ss, fs_base, gs_base, ds, es, fs, gs,
);

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// What [`fixup_syscall_restart`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartFixup {
    /// Not stopped inside a syscall (orig_ax = -1): nothing to do.
    NotInSyscall,
    /// In a syscall that completed or failed normally: only orig_ax was cleared.
    Completed,
    /// ERESTARTSYS/ERESTARTNOINTR/ERESTARTNOHAND: ip moved back over `syscall`, ax = the syscall number.
    Restart,
    /// ERESTART_RESTARTBLOCK: the syscall now returns -EINTR (the restart block is not restorable).
    Interrupted,
}

/// Rewrites registers captured inside an interrupted syscall so that setting them on a *new* task (a
/// restored one) re-runs the syscall the way the kernel would have: ERESTARTSYS, ERESTARTNOINTR and
/// ERESTARTNOHAND go back two bytes to the `syscall` instruction with ax = orig_ax; ERESTART_RESTARTBLOCK
/// becomes -EINTR (the kernel-side restart block does not survive a dump). orig_ax is set to -1 so the
/// kernel applies no restart logic of its own. A task that is simply resumed after a dump needs none of
/// this: restoring the original registers and detaching re-runs the kernel's own restart logic.
pub fn fixup_syscall_restart(regs: &mut UserRegs) -> RestartFixup {
    if regs.orig_ax as i64 == -1 {
        return RestartFixup::NotInSyscall;
    }
    let ret = regs.ax as i64;
    let outcome = match -ret {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.ip = regs.ip.wrapping_sub(2);
            regs.ax = regs.orig_ax;
            RestartFixup::Restart
        }
        ERESTART_RESTARTBLOCK => {
            regs.ax = (-(libc::EINTR as i64)) as u64;
            RestartFixup::Interrupted
        }
        _ => RestartFixup::Completed,
    };
    regs.orig_ax = u64::MAX;
    outcome
}

/// The legacy 512-byte FXSAVE region (also the first 512 bytes of the XSAVE area, and NT_PRFPREG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxSave {
    pub cwd: u16,
    pub swd: u16,
    /// Abridged tag word as stored by FXSAVE (low byte meaningful).
    pub twd: u16,
    pub fop: u16,
    pub rip: u64,
    pub rdp: u64,
    pub mxcsr: u32,
    pub mxcsr_mask: u32,
    /// ST0..ST7 / MM0..MM7, 16 bytes each, as 32 little-endian words.
    pub st_space: [u32; 32],
    /// XMM0..XMM15, 16 bytes each, as 64 little-endian words.
    pub xmm_space: [u32; 64],
    /// Bytes 416..464 (reserved).
    pub padding: [u32; 12],
    /// Bytes 464..512: software-reserved area (the kernel's fpx_sw_bytes).
    pub sw_reserved: [u32; 12],
}

impl Default for FxSave {
    fn default() -> Self {
        FxSave {
            cwd: 0,
            swd: 0,
            twd: 0,
            fop: 0,
            rip: 0,
            rdp: 0,
            mxcsr: 0,
            mxcsr_mask: 0,
            st_space: [0; 32],
            xmm_space: [0; 64],
            padding: [0; 12],
            sw_reserved: [0; 12],
        }
    }
}

impl FxSave {
    pub const SIZE: usize = 512;

    /// Decodes the first 512 bytes of `bytes`; `None` if it is shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..Self::SIZE)?;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        let words = |start: usize, out: &mut [u32]| {
            for (i, w) in out.iter_mut().enumerate() {
                *w = u32_at(start + 4 * i);
            }
        };
        let mut fx = FxSave {
            cwd: u16_at(0),
            swd: u16_at(2),
            twd: u16_at(4),
            fop: u16_at(6),
            rip: u64_at(8),
            rdp: u64_at(16),
            mxcsr: u32_at(24),
            mxcsr_mask: u32_at(28),
            st_space: [0; 32],
            xmm_space: [0; 64],
            padding: [0; 12],
            sw_reserved: [0; 12],
        };
        words(32, &mut fx.st_space);
        words(160, &mut fx.xmm_space);
        words(416, &mut fx.padding);
        words(464, &mut fx.sw_reserved);
        Some(fx)
    }

    /// Encodes into the first 512 bytes of `out` (which must be at least 512 bytes long).
    pub fn write_to(&self, out: &mut [u8]) -> Option<()> {
        let b = out.get_mut(..Self::SIZE)?;
        b[0..2].copy_from_slice(&self.cwd.to_le_bytes());
        b[2..4].copy_from_slice(&self.swd.to_le_bytes());
        b[4..6].copy_from_slice(&self.twd.to_le_bytes());
        b[6..8].copy_from_slice(&self.fop.to_le_bytes());
        b[8..16].copy_from_slice(&self.rip.to_le_bytes());
        b[16..24].copy_from_slice(&self.rdp.to_le_bytes());
        b[24..28].copy_from_slice(&self.mxcsr.to_le_bytes());
        b[28..32].copy_from_slice(&self.mxcsr_mask.to_le_bytes());
        let mut put = |start: usize, words: &[u32]| {
            for (i, w) in words.iter().enumerate() {
                b[start + 4 * i..start + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
            }
        };
        put(32, &self.st_space);
        put(160, &self.xmm_space);
        put(416, &self.padding);
        put(464, &self.sw_reserved);
        Some(())
    }
}

/// XSAVE state components, numbered as in XCR0 / CPUID leaf 0xD.
pub mod xfeature {
    pub const X87: u32 = 0;
    pub const SSE: u32 = 1;
    /// Upper halves of YMM0..15 (256 bytes).
    pub const YMM: u32 = 2;
    pub const BNDREGS: u32 = 3;
    pub const BNDCSR: u32 = 4;
    pub const OPMASK: u32 = 5;
    pub const ZMM_HI256: u32 = 6;
    pub const HI16_ZMM: u32 = 7;
    pub const PKRU: u32 = 9;
}

/// Offset of the XSAVE header (xstate_bv, xcomp_bv) in the standard-format area.
pub const XSAVE_HEADER_OFFSET: usize = 512;

/// Offset of the software-reserved bytes in the legacy FXSAVE region.
const SW_RESERVED_OFFSET: usize = 464;

/// (offset, size) of each user state component in the standard (non-compacted) XSAVE format, from CPUID
/// leaf 0xD. Components 0 and 1 live in the legacy region.
pub fn xfeature_layout(feature: u32) -> Option<(usize, usize)> {
    static LAYOUT: OnceLock<Vec<Option<(usize, usize)>>> = OnceLock::new();
    let table = LAYOUT.get_or_init(|| {
        let (xcr0_lo, _, _, xcr0_hi) = sys::cpuid(0xd, 0);
        let supported = u64::from(xcr0_lo) | (u64::from(xcr0_hi) << 32);
        (0..64u32)
            .map(|i| match i {
                0 => Some((0, 160)),
                1 => Some((160, 256)),
                _ if supported & (1u64 << i) != 0 => {
                    let (size, offset, _, _) = sys::cpuid(0xd, i);
                    Some((offset as usize, size as usize))
                }
                _ => None,
            })
            .collect()
    });
    table.get(feature as usize).copied().flatten()
}

/// The raw NT_X86_XSTATE area of one thread, exactly as the kernel returned it (its size is the
/// kernel's, e.g. 2440 bytes with x87+SSE+AVX+PKRU), with accessors for the parts CRIU images store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XState {
    bytes: Vec<u8>,
}

impl XState {
    /// Wraps raw XSAVE bytes; they must at least hold the legacy region and the XSAVE header.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= XSAVE_HEADER_OFFSET + 64).then_some(XState { bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The legacy FXSAVE fields.
    pub fn legacy(&self) -> FxSave {
        // XState::from_bytes guaranteed at least 576 bytes, so this never falls back.
        FxSave::from_bytes(&self.bytes).unwrap_or_default()
    }

    /// Overwrites the legacy FXSAVE region.
    pub fn set_legacy(&mut self, fx: &FxSave) {
        let _ = fx.write_to(&mut self.bytes);
    }

    /// XSTATE_BV: which components hold non-init state.
    pub fn xstate_bv(&self) -> u64 {
        self.u64_at(XSAVE_HEADER_OFFSET)
    }

    pub fn set_xstate_bv(&mut self, bv: u64) {
        self.bytes[XSAVE_HEADER_OFFSET..XSAVE_HEADER_OFFSET + 8].copy_from_slice(&bv.to_le_bytes());
    }

    /// The XCR0 value the kernel reported in the software-reserved bytes.
    ///
    /// ptrace's NT_X86_XSTATE puts XCR0 in the FIRST u64 of the software-reserved area (the kernel's
    /// `xstate_fx_sw_bytes[USER_XSTATE_XCR0_WORD]`, word 0, byte 464). That differs from the signal
    /// frame's `_fpx_sw_bytes`, where `xfeatures` follows two u32 fields (byte 472).
    pub fn xfeatures(&self) -> u64 {
        self.u64_at(SW_RESERVED_OFFSET)
    }

    /// Bytes of component `feature` (standard format), if this area contains it.
    pub fn component(&self, feature: u32) -> Option<&[u8]> {
        let (offset, size) = xfeature_layout(feature)?;
        self.bytes.get(offset..offset + size)
    }

    /// Overwrites component `feature`; `None` if the area does not contain it or `data` has the wrong size.
    pub fn set_component(&mut self, feature: u32, data: &[u8]) -> Option<()> {
        let (offset, size) = xfeature_layout(feature)?;
        if data.len() != size {
            return None;
        }
        self.bytes
            .get_mut(offset..offset + size)?
            .copy_from_slice(data);
        Some(())
    }

    /// Upper 128 bits of YMM0..15 as 64 words (CRIU `xsave.ymmh_space`).
    pub fn ymmh_space(&self) -> Option<Vec<u32>> {
        self.component(xfeature::YMM).map(words)
    }

    /// PKRU register value, if present.
    pub fn pkru(&self) -> Option<u32> {
        self.component(xfeature::PKRU)
            .and_then(|b| b.get(..4))
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_at(&self, offset: usize) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.bytes[offset..offset + 8]);
        u64::from_le_bytes(word)
    }
}

/// Little-endian 32-bit words of a byte slice (CRIU stores register areas as `repeated uint32`).
pub fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A raw kernel `siginfo_t` (128 bytes), as PTRACE_PEEKSIGINFO / GETSIGINFO return it. CRIU images store
/// exactly these bytes (`siginfo_entry.siginfo`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigInfo(pub [u8; 128]);

impl SigInfo {
    fn i32_at(&self, offset: usize) -> i32 {
        i32::from_le_bytes([
            self.0[offset],
            self.0[offset + 1],
            self.0[offset + 2],
            self.0[offset + 3],
        ])
    }

    pub fn signo(&self) -> i32 {
        self.i32_at(0)
    }

    pub fn errno(&self) -> i32 {
        self.i32_at(4)
    }

    pub fn code(&self) -> i32 {
        self.i32_at(8)
    }

    /// si_pid for signals sent by kill/tgkill/sigqueue.
    pub fn sender_pid(&self) -> i32 {
        self.i32_at(16)
    }

    /// si_value (sival_int / low half of sival_ptr) for sigqueue'd signals.
    pub fn value(&self) -> u64 {
        let lo = self.i32_at(24) as u32;
        let hi = self.i32_at(28) as u32;
        u64::from(lo) | (u64::from(hi) << 32)
    }
}

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigInfo")
            .field("signo", &self.signo())
            .field("code", &self.code())
            .field("errno", &self.errno())
            .finish_non_exhaustive()
    }
}

/// `struct ptrace_rseq_configuration` of one thread (PTRACE_GET_RSEQ_CONFIGURATION).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RseqConfig {
    /// Address of the registered `struct rseq` (0: none registered).
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
}

impl RseqConfig {
    pub(crate) fn from_bytes(b: &[u8; sys::RSEQ_CONFIG_SIZE]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        RseqConfig {
            rseq_abi_pointer: u64::from(u32_at(0)) | (u64::from(u32_at(4)) << 32),
            rseq_abi_size: u32_at(8),
            signature: u32_at(12),
            flags: u32_at(16),
        }
    }

    /// Whether the thread has an rseq area registered.
    pub fn is_registered(&self) -> bool {
        self.rseq_abi_pointer != 0
    }
}

/// What PTRACE_GET_SYSCALL_INFO says about the current stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallState {
    /// Not a syscall stop (an interrupt, signal or event stop): op = 0.
    None,
    /// Syscall-entry stop: the syscall number and arguments.
    Entry { nr: u64, args: [u64; 6] },
    /// Syscall-exit stop: the return value.
    Exit { rval: i64, is_error: bool },
    /// PTRACE_EVENT_SECCOMP stop.
    Seccomp {
        nr: u64,
        args: [u64; 6],
        ret_data: u32,
    },
}

/// PTRACE_GET_SYSCALL_INFO result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallInfo {
    /// AUDIT_ARCH_* of the syscall ABI (AUDIT_ARCH_X86_64 = 0xc000003e, or i386 for int80/compat).
    pub arch: u32,
    pub instruction_pointer: u64,
    pub stack_pointer: u64,
    pub state: SyscallState,
}

impl SyscallInfo {
    pub(crate) fn from_bytes(b: &[u8; sys::SYSCALL_INFO_SIZE]) -> Self {
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let args = || {
            let mut a = [0u64; 6];
            for (i, v) in a.iter_mut().enumerate() {
                *v = u64_at(32 + 8 * i);
            }
            a
        };
        let state = match b[0] {
            1 => SyscallState::Entry {
                nr: u64_at(24),
                args: args(),
            },
            2 => SyscallState::Exit {
                rval: u64_at(24) as i64,
                is_error: b[32] != 0,
            },
            3 => SyscallState::Seccomp {
                nr: u64_at(24),
                args: args(),
                ret_data: u32_at(80),
            },
            _ => SyscallState::None,
        };
        SyscallInfo {
            arch: u32_at(4),
            instruction_pointer: u64_at(8),
            stack_pointer: u64_at(16),
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_regs_bytes_round_trip_in_kernel_field_order() {
        let mut bytes = [0u8; UserRegs::SIZE];
        for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&(i as u64 + 100).to_le_bytes());
        }
        let regs = UserRegs::from_bytes(&bytes);
        assert_eq!(regs.r15, 100);
        assert_eq!(regs.ax, 110);
        assert_eq!(regs.orig_ax, 115);
        assert_eq!(regs.ip, 116);
        assert_eq!(regs.sp, 119);
        assert_eq!(regs.fs_base, 121);
        assert_eq!(regs.gs, 126);
        assert_eq!(regs.to_bytes(), bytes);
    }

    fn in_syscall(ret: i64, nr: u64) -> UserRegs {
        UserRegs {
            ax: ret as u64,
            orig_ax: nr,
            ip: 0x1002,
            ..UserRegs::default()
        }
    }

    #[test]
    fn restart_fixup_rewinds_restartable_syscalls() {
        for code in [ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND] {
            let mut regs = in_syscall(-code, 35);
            assert_eq!(fixup_syscall_restart(&mut regs), RestartFixup::Restart);
            assert_eq!((regs.ip, regs.ax, regs.orig_ax), (0x1000, 35, u64::MAX));
        }
    }

    #[test]
    fn restart_fixup_turns_restart_block_into_eintr() {
        let mut regs = in_syscall(-ERESTART_RESTARTBLOCK, 230);
        assert_eq!(fixup_syscall_restart(&mut regs), RestartFixup::Interrupted);
        assert_eq!(regs.ax as i64, -(libc::EINTR as i64));
        assert_eq!((regs.ip, regs.orig_ax), (0x1002, u64::MAX));
    }

    #[test]
    fn restart_fixup_leaves_completed_and_non_syscall_state() {
        let mut regs = in_syscall(5, 0);
        assert_eq!(fixup_syscall_restart(&mut regs), RestartFixup::Completed);
        assert_eq!((regs.ip, regs.ax, regs.orig_ax), (0x1002, 5, u64::MAX));
        let mut user = UserRegs {
            orig_ax: u64::MAX,
            ax: (-ERESTARTSYS) as u64,
            ip: 0x2000,
            ..UserRegs::default()
        };
        assert_eq!(fixup_syscall_restart(&mut user), RestartFixup::NotInSyscall);
        assert_eq!(user.ip, 0x2000);
    }

    #[test]
    fn fxsave_round_trips() {
        let mut raw = vec![0u8; 512];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let fx = FxSave::from_bytes(&raw).expect("512 bytes");
        let mut out = vec![0u8; 512];
        fx.write_to(&mut out).expect("512 bytes");
        assert_eq!(out, raw);
        assert_eq!(
            fx.mxcsr,
            u32::from_le_bytes([raw[24], raw[25], raw[26], raw[27]])
        );
    }

    #[test]
    fn xsave_layout_matches_cpuid_for_avx() {
        // Every x86_64 CPU this runs on has AVX here (XCR0 = 0x207); YMM state sits at 576 in the
        // standard format on all known implementations.
        if let Some((offset, size)) = xfeature_layout(xfeature::YMM) {
            assert_eq!((offset, size), (576, 256));
        }
        assert_eq!(xfeature_layout(xfeature::SSE), Some((160, 256)));
    }
}
