//! Facts of ELF machines, in one home: their numbers (elf.h, spelled here
//! so that no goblin type leaks) and the loader each names by default.

use super::object::Want;
pub(crate) use numbers::*;

/// The loader a program of this machine gets when it names none, and that
/// ldd uses (sysdeps/unix/sysv/linux/*/ldd-rewrite.sed, RTLDLIST).
pub fn default_interp(want: Want) -> &'static [u8] {
    match (want.machine, want.is_64) {
        (EM_X86_64, true) => b"/lib64/ld-linux-x86-64.so.2",
        (EM_X86_64, false) => b"/libx32/ld-linux-x32.so.2",
        (EM_386, _) => b"/lib/ld-linux.so.2",
        (EM_AARCH64, _) => b"/lib/ld-linux-aarch64.so.1",
        (EM_PPC64, _) => b"/lib64/ld64.so.2",
        (EM_S390, _) => b"/lib/ld64.so.1",
        (EM_RISCV, _) => b"/lib/ld-linux-riscv64-lp64d.so.1",
        (EM_ARM, _) => b"/lib/ld-linux-armhf.so.3",
        _ => b"/lib64/ld-linux-x86-64.so.2",
    }
}

/// Machine numbers (elf.h), spelled here so that no goblin type leaks.
pub(crate) mod numbers {
    pub const EM_386: u16 = 3;
    pub const EM_ARM: u16 = 40;
    pub const EM_PPC64: u16 = 21;
    pub const EM_S390: u16 = 22;
    pub const EM_X86_64: u16 = 62;
    pub const EM_AARCH64: u16 = 183;
    pub const EM_RISCV: u16 = 243;
}
