//! The public part of glibc's `struct link_map` (`<link.h>`) and what we read
//! from it: the name the loader recorded and the object's DT_SONAME.

use core::ffi::{c_char, CStr};

#[repr(C)]
pub struct LinkMap {
    /// Difference between the addresses in the ELF file and in memory.
    pub l_addr: usize,
    /// Path the loader opened; "" for the main program.
    pub l_name: *const c_char,
    /// The object's PT_DYNAMIC in memory.
    pub l_ld: *const Elf64Dyn,
    pub l_next: *mut LinkMap,
    pub l_prev: *mut LinkMap,
}

#[repr(C)]
pub struct Elf64Dyn {
    pub d_tag: i64,
    pub d_val: u64,
}

const DT_NULL: i64 = 0;
const DT_NEEDED: i64 = 1;
const DT_STRTAB: i64 = 5;
const DT_SONAME: i64 = 14;
/// Far more entries than any real dynamic section holds; stops a walk over a
/// corrupt one.
const MAX_DYN: usize = 4096;

/// The name the loader recorded for `map`.
///
/// # Safety
/// `map` must be a live link map handed to us by the loader.
pub unsafe fn name<'a>(map: *const LinkMap) -> &'a [u8] {
    // SAFETY: the caller guarantees `map` is live; l_name is never null in glibc.
    unsafe {
        match map.as_ref() {
            Some(m) if !m.l_name.is_null() => CStr::from_ptr(m.l_name).to_bytes(),
            _ => b"",
        }
    }
}

/// The DT_SONAME of a mapped object, read from its dynamic section in memory.
///
/// # Safety
/// `map` must be a live link map whose object the loader has mapped.
pub unsafe fn soname<'a>(map: *const LinkMap) -> Option<&'a [u8]> {
    // SAFETY: the caller guarantees the object is mapped; the loader has already
    // read this same dynamic section and string table.
    unsafe {
        let m = map.as_ref()?;
        if m.l_ld.is_null() {
            return None;
        }
        let (mut strtab, mut soname) = (None, None);
        for i in 0..MAX_DYN {
            let d = &*m.l_ld.add(i);
            match d.d_tag {
                DT_NULL => break,
                DT_STRTAB => strtab = Some(d.d_val as usize),
                DT_SONAME => soname = Some(d.d_val as usize),
                _ => {}
            }
        }
        let strtab = relocated(m.l_addr, strtab?);
        Some(CStr::from_ptr((strtab + soname?) as *const c_char).to_bytes())
    }
}

/// Whether any DT_NEEDED entry of a mapped object satisfies `pred` (a
/// framework library that needs CUDA libraries is worth reporting even when
/// it is not one itself).
///
/// # Safety
/// `map` must be a live link map whose object the loader has mapped.
pub unsafe fn any_needed(map: *const LinkMap, pred: impl Fn(&[u8]) -> bool) -> bool {
    // SAFETY: as for `soname`: the loader has read these same entries.
    unsafe {
        let Some(m) = map.as_ref() else { return false };
        if m.l_ld.is_null() {
            return false;
        }
        let mut strtab = None;
        for i in 0..MAX_DYN {
            let d = &*m.l_ld.add(i);
            match d.d_tag {
                DT_NULL => break,
                DT_STRTAB => strtab = Some(relocated(m.l_addr, d.d_val as usize)),
                _ => {}
            }
        }
        let Some(strtab) = strtab else { return false };
        for i in 0..MAX_DYN {
            let d = &*m.l_ld.add(i);
            match d.d_tag {
                DT_NULL => break,
                DT_NEEDED if pred(CStr::from_ptr((strtab + d.d_val as usize) as *const c_char).to_bytes()) => {
                    return true
                }
                _ => {}
            }
        }
        false
    }
}

/// glibc rewrites address entries of a writable dynamic section in place when
/// it maps an object (elf/get-dynamic-info.h) but leaves read-only ones as in
/// the file (`l_ld_readonly`), so an entry may or may not include `l_addr`.
/// Mapped addresses are never below `l_addr`, file addresses of a shared
/// object always are: that tells the two apart.
fn relocated(l_addr: usize, ptr: usize) -> usize {
    if ptr >= l_addr {
        ptr
    } else {
        l_addr + ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocated_adds_base_only_to_file_addresses() {
        assert_eq!(relocated(0x7f00_0000_0000, 0x1234), 0x7f00_0000_1234);
        assert_eq!(relocated(0x7f00_0000_0000, 0x7f00_0000_1234), 0x7f00_0000_1234);
        // A non-PIE executable has l_addr 0: both forms are the same.
        assert_eq!(relocated(0, 0x40_1234), 0x40_1234);
    }

    #[test]
    fn reads_soname_from_a_dynamic_section() {
        let strtab = b"\0libcudart.so.12\0";
        let dyns = [
            Elf64Dyn { d_tag: DT_SONAME, d_val: 1 },
            Elf64Dyn { d_tag: DT_STRTAB, d_val: strtab.as_ptr() as u64 },
            Elf64Dyn { d_tag: DT_NULL, d_val: 0 },
        ];
        let map = LinkMap {
            l_addr: 0,
            l_name: c"/x/libcudart.so.12".as_ptr(),
            l_ld: dyns.as_ptr(),
            l_next: core::ptr::null_mut(),
            l_prev: core::ptr::null_mut(),
        };
        // SAFETY: `map` and what it points to live on this stack frame.
        unsafe {
            assert_eq!(soname(&map), Some(&b"libcudart.so.12"[..]));
            assert_eq!(name(&map), b"/x/libcudart.so.12");
        }
    }
}
