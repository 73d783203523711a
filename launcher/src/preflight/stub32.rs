//! A 32-bit x86 audit module that declines: its `la_version` returns 0.
//!
//! The loader of a 32-bit program that finds culaunch's 64-bit module in
//! LD_AUDIT prints `cannot be loaded as audit interface: wrong ELF class:
//! ELFCLASS64; ignored.` on that program's stderr. A module whose
//! `la_version` returns 0 is unloaded without a word ("this can happen
//! deliberately", glibc's elf/rtld.c, `load_audit_module`). Placed where
//! `$PLATFORM` of the LD_AUDIT entry leads a 32-bit loader
//! (`NAME.d/i686/NAME`, while `NAME.d/x86_64/NAME` links to the real
//! module; see `audit_entry`), it keeps the job's stderr clean; the parent's
//! `untraced` event still names the program.
//!
//! The object is 264 bytes written here, not compiled: no 32-bit toolchain
//! is needed to build culaunch. One read-write-execute PT_LOAD holding a
//! SysV hash table, two symbols, their strings, `xor eax, eax; ret`, and the
//! dynamic section; PT_GNU_STACK says the stack stays non-executable (glibc
//! 2.41 refuses to dlopen an object that asks otherwise).

const EHDR: u32 = 52;
const PHDR: u32 = 32;
const PHNUM: u32 = 3;
const HASH: u32 = EHDR + PHNUM * PHDR; // 0x94
const SYMTAB: u32 = HASH + 5 * 4;
const STRTAB: u32 = SYMTAB + 2 * 16;
const STRINGS: &[u8] = b"\0la_version\0";
const CODE: u32 = STRTAB + STRINGS.len() as u32;
/// xor eax, eax; ret; and a pad byte so the dynamic section is aligned.
const CODE_BYTES: [u8; 4] = [0x31, 0xc0, 0xc3, 0x90];
const DYNAMIC: u32 = CODE + CODE_BYTES.len() as u32;
const DYN_ENTRIES: u32 = 6;
const SIZE: u32 = DYNAMIC + DYN_ENTRIES * 8;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_STACK: u32 = 0x6474_e551;
const DT_NULL: u32 = 0;
const DT_HASH: u32 = 4;
const DT_STRTAB: u32 = 5;
const DT_SYMTAB: u32 = 6;
const DT_STRSZ: u32 = 10;
const DT_SYMENT: u32 = 11;

/// The bytes of the declining i386 module.
pub fn declining_i386_module() -> Vec<u8> {
    let mut b = Vec::with_capacity(SIZE as usize);
    let w16 = |b: &mut Vec<u8>, v: u16| b.extend_from_slice(&v.to_le_bytes());
    let w32 = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes());
    // ELF header: ELFCLASS32, little-endian, ET_DYN, EM_386.
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    w16(&mut b, 3);
    w16(&mut b, 3);
    w32(&mut b, 1);
    w32(&mut b, 0); // e_entry
    w32(&mut b, EHDR); // e_phoff
    w32(&mut b, 0); // e_shoff: no section headers
    w32(&mut b, 0); // e_flags
    for v in [EHDR as u16, PHDR as u16, PHNUM as u16, 40, 0, 0] {
        w16(&mut b, v);
    }
    // Program headers: type, offset, vaddr, paddr, filesz, memsz, flags, align.
    for ph in [
        [PT_LOAD, 0, 0, 0, SIZE, SIZE, 7, 0x1000],
        [PT_DYNAMIC, DYNAMIC, DYNAMIC, DYNAMIC, DYN_ENTRIES * 8, DYN_ENTRIES * 8, 6, 4],
        [PT_GNU_STACK, 0, 0, 0, 0, 0, 6, 16],
    ] {
        ph.iter().for_each(|&v| w32(&mut b, v));
    }
    // SysV hash: one bucket holding symbol 1; chains end at once.
    for v in [1, 2, 1, 0, 0] {
        w32(&mut b, v);
    }
    // Symbols: the null one, then la_version (global function, defined).
    b.extend_from_slice(&[0; 16]);
    w32(&mut b, 1); // st_name
    w32(&mut b, CODE); // st_value
    w32(&mut b, 3); // st_size
    b.push(0x12); // STB_GLOBAL, STT_FUNC
    b.push(0); // st_other: default visibility
    w16(&mut b, 1); // st_shndx: any section but SHN_UNDEF
    b.extend_from_slice(STRINGS);
    b.extend_from_slice(&CODE_BYTES);
    for (tag, val) in [
        (DT_HASH, HASH),
        (DT_STRTAB, STRTAB),
        (DT_SYMTAB, SYMTAB),
        (DT_STRSZ, STRINGS.len() as u32),
        (DT_SYMENT, 16),
        (DT_NULL, 0),
    ] {
        w32(&mut b, tag);
        w32(&mut b, val);
    }
    debug_assert_eq!(b.len(), SIZE as usize);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_layout_is_what_the_headers_say() {
        let b = declining_i386_module();
        assert_eq!(b.len(), SIZE as usize);
        assert_eq!(&b[STRTAB as usize..CODE as usize], STRINGS);
        assert_eq!(&b[CODE as usize..CODE as usize + 3], &[0x31, 0xc0, 0xc3]);
        assert_eq!(DYNAMIC % 4, 0);
    }

    /// Ground truth from a real 32-bit loader: with the stub in LD_AUDIT, a
    /// 32-bit program runs as bare, nothing reaches its stderr, and the
    /// loader's own debug output says why (la_version returned zero).
    #[test]
    fn a_32_bit_loader_unloads_the_declining_module_without_a_word() {
        let dir = std::env::temp_dir().join(format!("culaunch-stub32-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, prog, stub) = (dir.join("p.c"), dir.join("p32"), dir.join("stub.so"));
        std::fs::write(&src, "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 3; }\n").unwrap();
        let built = Command::new("cc").arg("-m32").arg(&src).arg("-o").arg(&prog).status().is_ok_and(|s| s.success());
        if !built {
            eprintln!("skipped: cc -m32 cannot build (gcc-multilib missing)");
            return;
        }
        std::fs::write(&stub, declining_i386_module()).unwrap();
        let bare = Command::new(&prog).output().unwrap();
        let with = Command::new(&prog).env("LD_AUDIT", &stub).output().unwrap();
        assert_eq!((with.status.code(), &with.stdout), (bare.status.code(), &bare.stdout));
        assert_eq!(String::from_utf8_lossy(&with.stderr), "");
        let debug = Command::new(&prog).env("LD_AUDIT", &stub).env("LD_DEBUG", "files").output().unwrap();
        let said = String::from_utf8_lossy(&debug.stderr);
        assert!(said.contains("la_version returned zero"), "{said}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
