//! The few ELF facts both sides check (`<elf.h>`): which class and machine
//! the audit module is built for, so that a program of another kind is
//! recognised as one the loader will not run the module in.

/// `e_ident[EI_CLASS]` of a 32-bit and a 64-bit object.
pub const ELFCLASS32: u8 = 1;
pub const ELFCLASS64: u8 = 2;

/// `e_machine` values of the machines culaunch is built for.
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;

/// Program header type of the interpreter request: a dynamically linked
/// program has one, a static one has none.
pub const PT_INTERP: u32 = 3;

/// The machine this build (and so its audit module) is for; 0 on others.
pub const NATIVE_MACHINE: u16 = if cfg!(target_arch = "x86_64") {
    EM_X86_64
} else if cfg!(target_arch = "aarch64") {
    EM_AARCH64
} else {
    0
};

/// The class this build's objects have.
pub const NATIVE_CLASS: u8 = if cfg!(target_pointer_width = "64") { ELFCLASS64 } else { ELFCLASS32 };
