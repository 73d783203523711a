//! The public part of glibc's `struct link_map` (`<link.h>`) and what we read
//! from it, decoded once per entry point into an [`Object`]: the name the
//! loader recorded, the object's DT_SONAME, and its DT_NEEDED on demand.

use core::ffi::{c_char, CStr};

// `struct link_map` and `Elf64_Dyn` below are the 64-bit layouts.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("the audit module reads 64-bit link maps and dynamic sections only");

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

/// `Elf64_Sym` (`<elf.h>`), as `la_symbind64` receives it.
#[repr(C)]
pub struct Elf64Sym {
    pub st_name: u32,
    pub st_info: u8,
    pub st_other: u8,
    pub st_shndx: u16,
    pub st_value: u64,
    pub st_size: u64,
}

#[repr(C)]
pub struct Elf64Dyn {
    pub d_tag: i64,
    pub d_val: u64,
}

const DT_NULL: i64 = 0;
const DT_NEEDED: i64 = 1;
const DT_STRTAB: i64 = 5;
const DT_STRSZ: i64 = 10;
const DT_SONAME: i64 = 14;
/// Far more entries than any real dynamic section holds; stops a walk over a
/// corrupt one.
const MAX_DYN: usize = 4096;

/// Whether `pred` holds for any object in `map`'s namespace (its list,
/// walked from the head). A null `map` holds none.
///
/// # Safety
/// `map` is null or a live link map whose list the loader is not changing
/// (its lock is held, as in `la_objsearch`).
pub unsafe fn any_in_namespace(map: *const LinkMap, mut pred: impl FnMut(*const LinkMap) -> bool) -> bool {
    let mut head = map;
    // Bounded: a corrupted list must not hang the job.
    for _ in 0..100_000 {
        // SAFETY: the caller's contract: each list element is live.
        match unsafe { head.as_ref() } {
            Some(m) if !m.l_prev.is_null() => head = m.l_prev,
            _ => break,
        }
    }
    let mut at = head;
    for _ in 0..100_000 {
        // SAFETY: as above.
        let Some(m) = (unsafe { at.as_ref() }) else { return false };
        if pred(at) {
            return true;
        }
        at = m.l_next;
    }
    false
}

/// The name the loader recorded for `map`.
///
/// # Safety
/// `map` must be a live link map handed to us by the loader.
pub unsafe fn name<'a>(map: *const LinkMap) -> &'a CStr {
    // SAFETY: the caller guarantees `map` is live; l_name is never null in glibc.
    unsafe {
        match map.as_ref() {
            Some(m) if !m.l_name.is_null() => CStr::from_ptr(m.l_name),
            _ => c"",
        }
    }
}

/// What the module reads of one mapped object, decoded from its link map
/// and dynamic section in one walk, at the entry point that received it.
#[derive(Clone, Copy)]
pub struct Object<'a> {
    /// The link map, as an address: the loader's handle for the object.
    pub map: usize,
    /// The path the loader opened; "" for the main program.
    pub name: &'a CStr,
    /// Where the object lies in memory: `l_addr`.
    pub l_addr: usize,
    pub soname: Option<&'a [u8]>,
    dynamic: *const Elf64Dyn,
    /// DT_STRTAB (relocated) and DT_STRSZ.
    strings: Option<(usize, usize)>,
}

impl<'a> Object<'a> {
    /// Decodes `map`.
    ///
    /// # Safety
    /// `map` must be null or a live link map whose object the loader has
    /// mapped; the view must not outlive the object.
    pub unsafe fn decode(map: *const LinkMap) -> Object<'a> {
        // SAFETY: the caller guarantees `map` is live.
        let m = unsafe { map.as_ref() };
        let dynamic = m.map_or(core::ptr::null(), |m| m.l_ld);
        let (mut strtab, mut strsz, mut soname_at) = (None, None, None);
        if let Some(m) = m {
            // SAFETY: as above.
            for (tag, val) in unsafe { dyn_entries(dynamic) } {
                match tag {
                    DT_STRTAB => strtab = Some(relocated(m.l_addr, val)),
                    DT_STRSZ => strsz = Some(val),
                    DT_SONAME => soname_at = Some(val),
                    _ => {}
                }
            }
        }
        let strings = strtab.zip(strsz);
        // SAFETY: the string table of a live object.
        let soname = strings.zip(soname_at).and_then(|((t, n), at)| unsafe { string_at(t, n, at) });
        // SAFETY: as above.
        Object {
            map: map as usize,
            name: unsafe { name(map) },
            l_addr: m.map_or(0, |m| m.l_addr),
            soname,
            dynamic,
            strings,
        }
    }

    /// The object's dynamic section in memory: `l_ld`.
    pub fn l_ld(&self) -> usize {
        self.dynamic as usize
    }

    /// A file the loader opened: not the program itself ("") nor the vDSO.
    pub fn is_file(&self) -> bool {
        self.name.to_bytes().contains(&b'/')
    }

    /// Whether any DT_NEEDED entry satisfies `pred` (a framework library
    /// that needs CUDA libraries is worth reporting even when it is not one
    /// itself). Walks the dynamic section again, for DT_NEEDED only, and
    /// only when asked.
    pub fn any_needed(&self, pred: impl Fn(&[u8]) -> bool) -> bool {
        let Some((strtab, size)) = self.strings else { return false };
        // SAFETY: `decode`'s contract: the object is still mapped.
        unsafe {
            dyn_entries(self.dynamic)
                .filter(|d| d.0 == DT_NEEDED)
                .any(|d| string_at(strtab, size, d.1).is_some_and(&pred))
        }
    }
}

/// The string at `offset` of a string table of `size` bytes, or `None` when
/// the offset lies outside it.
///
/// # Safety
/// `strtab` must be the mapped string table of a live object.
unsafe fn string_at<'a>(strtab: usize, size: usize, offset: usize) -> Option<&'a [u8]> {
    if offset >= size {
        return None;
    }
    // SAFETY: inside the table; the loader checked that it is NUL-terminated.
    Some(unsafe { CStr::from_ptr(strtab.wrapping_add(offset) as *const c_char) }.to_bytes())
}

/// (d_tag, d_val) of every entry before DT_NULL.
///
/// # Safety
/// `ld` must be null or the dynamic section of a live, mapped object.
unsafe fn dyn_entries<'a>(ld: *const Elf64Dyn) -> impl Iterator<Item = (i64, usize)> + 'a {
    (0..if ld.is_null() { 0 } else { MAX_DYN })
        // SAFETY: the dynamic section ends with DT_NULL, within MAX_DYN
        // entries for any object the loader accepted.
        .map(move |i| unsafe { &*ld.add(i) })
        .take_while(|d| d.d_tag != DT_NULL)
        .map(|d| (d.d_tag, d.d_val as usize))
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
        // An object loaded below its link address has a "negative" l_addr;
        // the sum wraps as the loader's own arithmetic does.
        l_addr.wrapping_add(ptr)
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
        let strtab = b"\0libcudart.so.12\0libc.so.6\0";
        let dyns = [
            Elf64Dyn { d_tag: DT_SONAME, d_val: 1 },
            Elf64Dyn { d_tag: DT_NEEDED, d_val: 17 },
            Elf64Dyn { d_tag: DT_NEEDED, d_val: 999 },
            Elf64Dyn { d_tag: DT_STRTAB, d_val: strtab.as_ptr() as u64 },
            Elf64Dyn { d_tag: DT_STRSZ, d_val: strtab.len() as u64 },
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
        let object = unsafe { Object::decode(&map) };
        assert_eq!(object.soname, Some(&b"libcudart.so.12"[..]));
        assert_eq!(object.name.to_bytes(), b"/x/libcudart.so.12");
        assert!(object.is_file());
        assert!(object.any_needed(|n| n == b"libc.so.6"));
        // An offset past DT_STRSZ is never read.
        assert!(!object.any_needed(|n| n.is_empty()));
    }
}
