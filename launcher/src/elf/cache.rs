//! /etc/ld.so.cache, read from the file itself (the "glibc-ld.so.cache1.1"
//! format, alone or after the old "ld.so-1.7.0" table, with its
//! glibc-hwcaps extension), looked up the way elf/dl-cache.c does.

use std::path::Path;

use super::object::Want;
use crate::input::Mapped;

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
const EXTENSION_MAGIC: u32 = 0xEAA4_2174;
const EXTENSION_TAG_HWCAPS: u32 = 1;
/// Bit 62 of an entry's hwcap: the low 32 bits index the glibc-hwcaps names.
const HWCAP_EXTENSION: u64 = 1 << 62;
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry<'a> {
    flags: i32,
    key: &'a [u8],
    value: &'a [u8],
    hwcap: u64,
}

/// The cache file's bytes; entries are read where a lookup lands (a binary
/// search, as elf/dl-cache.c does), not parsed up front.
pub struct Cache {
    data: Bytes,
    /// Where the new-format table starts.
    start: usize,
    nlibs: usize,
    hwcaps_names: Vec<Vec<u8>>,
    /// `_DL_CACHE_DEFAULT_ID` of the target (sysdeps/…/dl-cache.h).
    id: i32,
}

/// The file mapped, as the loader maps it: a `deps` of a small closure
/// would otherwise spend a tenth of its time copying the cache into fresh
/// heap pages.
enum Bytes {
    Mapped(Mapped),
    #[cfg(test)]
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m.bytes(),
            #[cfg(test)]
            Bytes::Owned(v) => v,
        }
    }
}

impl Cache {
    pub fn read(path: &Path) -> Option<Cache> {
        Cache::parse_owned(Bytes::Mapped(Mapped::open(path, false).ok()?))
    }

    /// `None` for anything that is not a cache this culaunch understands;
    /// never panics on a truncated or hostile file.
    #[cfg(test)]
    pub fn parse(data: &[u8]) -> Option<Cache> {
        Cache::parse_owned(Bytes::Owned(data.to_vec()))
    }

    fn parse_owned(data: Bytes) -> Option<Cache> {
        let start = if data.starts_with(MAGIC_NEW) {
            0
        } else if data.starts_with(MAGIC_OLD) {
            // Old header: magic, nlibs; entries of 12 bytes; then the new table, 8-aligned.
            let nlibs = u32_at(&data, MAGIC_OLD.len() + 1)? as usize;
            let end = (MAGIC_OLD.len() + 1 + 4).checked_add(nlibs.checked_mul(12)?)?;
            let aligned = (end + 7) & !7;
            data.get(aligned..)?.starts_with(MAGIC_NEW).then_some(aligned)?
        } else {
            return None;
        };
        let new = data.get(start..)?;
        let nlibs = u32_at(new, 20)? as usize;
        let extension = u32_at(new, 32)? as usize;
        // Every entry must lie inside the file.
        NEW_HEADER.checked_add(nlibs.checked_mul(NEW_ENTRY)?).filter(|&end| end <= new.len())?;
        let string = |offset: u32| -> Option<Vec<u8>> { string_at(new, offset).map(<[u8]>::to_vec) };
        let hwcaps_names = if extension != 0 { parse_hwcaps_extension(new, extension, &string) } else { Vec::new() };
        let c = Cache { data, start, nlibs, hwcaps_names, id: default_id(Want::native()) };
        // A table whose strings do not resolve is not a cache. A string
        // resolves when a NUL follows its offset: one scan for the last NUL
        // instead of one per string (a thousand entries on a desktop).
        let table = c.data.get(c.start..)?;
        let last_nul = table.iter().rposition(|&b| b == 0);
        let resolves = |at: usize| u32_at(table, at).is_some_and(|o| last_nul.is_some_and(|n| o as usize <= n));
        (0..c.nlibs)
            .all(|i| {
                let at = NEW_HEADER + i * NEW_ENTRY;
                resolves(at + 4) && resolves(at + 8)
            })
            .then_some(c)
    }

    /// The same cache, looked up for a program of `want`'s class and machine.
    pub fn for_target(mut self, want: Want) -> Cache {
        self.id = default_id(want);
        self
    }

    fn entry(&self, i: usize) -> Option<Entry<'_>> {
        let new = self.data.get(self.start..)?;
        let at = NEW_HEADER.checked_add(i.checked_mul(NEW_ENTRY)?)?;
        let e = new.get(at..at.checked_add(NEW_ENTRY)?)?;
        Some(Entry {
            flags: i32::from_le_bytes(e[0..4].try_into().ok()?),
            key: string_at(new, u32::from_le_bytes(e[4..8].try_into().ok()?))?,
            value: string_at(new, u32::from_le_bytes(e[8..12].try_into().ok()?))?,
            hwcap: u64::from_le_bytes(e[16..24].try_into().ok()?),
        })
    }

    /// Every (name, path) entry for this architecture.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.nlibs).filter_map(|i| self.entry(i)).filter(|e| e.flags == self.id).map(|e| (e.key, e.value))
    }

    /// The path the loader takes from the cache for `name`: among entries for
    /// this architecture, a glibc-hwcaps entry for the best supported
    /// subdirectory wins, else the first plain entry. Entries tagged with
    /// legacy hwcap bits are skipped (glibc 2.36 no longer selects them on
    /// x86-64).
    pub fn lookup(&self, name: &[u8], hwcaps_supported: &[Vec<u8>]) -> Option<&[u8]> {
        // The table is sorted by `_dl_cache_libcmp`, greatest first.
        let (mut left, mut right) = (0isize, self.nlibs as isize - 1);
        let mut first = None;
        while left <= right {
            let middle = (left + right) / 2;
            let key = self.entry(middle as usize)?.key;
            match libcmp(name, key) {
                std::cmp::Ordering::Equal => {
                    let mut m = middle as usize;
                    while m > 0 && self.entry(m - 1).is_some_and(|e| e.key == name) {
                        m -= 1;
                    }
                    first = Some(m);
                    break;
                }
                std::cmp::Ordering::Less => left = middle + 1,
                std::cmp::Ordering::Greater => right = middle - 1,
            }
        }
        let mut best: Option<(usize, Entry<'_>)> = None;
        let same = (first?..self.nlibs).map_while(|i| self.entry(i).filter(|e| e.key == name));
        for e in same.filter(|e| e.flags == self.id) {
            let priority = if e.hwcap & HWCAP_EXTENSION != 0 {
                let Some(sub) = self.hwcaps_names.get((e.hwcap & 0xffff_ffff) as usize) else { continue };
                let Some(p) = hwcaps_supported.iter().position(|h| h == sub) else { continue };
                p
            } else if e.hwcap == 0 {
                usize::MAX
            } else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| priority < *b) {
                best = Some((priority, e));
            }
        }
        best.map(|(_, e)| e.value)
    }
}

/// `_dl_cache_libcmp`: runs of digits compare as numbers.
fn libcmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() {
        if digit(a, i) {
            if !digit(b, j) {
                return Ordering::Greater;
            }
            let (mut x, mut y) = (0u64, 0u64);
            while digit(a, i) {
                x = x.saturating_mul(10).saturating_add(u64::from(a[i] - b'0'));
                i += 1;
            }
            while digit(b, j) {
                y = y.saturating_mul(10).saturating_add(u64::from(b[j] - b'0'));
                j += 1;
            }
            if x != y {
                return x.cmp(&y);
            }
        } else if digit(b, j) {
            return Ordering::Less;
        } else if b.get(j) != Some(&a[i]) {
            return a[i].cmp(b.get(j).unwrap_or(&0));
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(b.get(j).unwrap_or(&0))
}

fn string_at(new: &[u8], offset: u32) -> Option<&[u8]> {
    let tail = new.get(offset as usize..)?;
    std::ffi::CStr::from_bytes_until_nul(tail).ok().map(std::ffi::CStr::to_bytes)
}

fn parse_hwcaps_extension(new: &[u8], at: usize, string: &dyn Fn(u32) -> Option<Vec<u8>>) -> Vec<Vec<u8>> {
    (|| {
        if u32_at(new, at)? != EXTENSION_MAGIC {
            return None;
        }
        let count = u32_at(new, at + 4)? as usize;
        for i in 0..count.min(64) {
            let s = at + 8 + i * 16;
            if u32_at(new, s)? == EXTENSION_TAG_HWCAPS {
                let (offset, size) = (u32_at(new, s + 8)? as usize, u32_at(new, s + 12)? as usize);
                return (0..size / 4).map(|k| string(u32_at(new, offset + 4 * k)?)).collect();
            }
        }
        None
    })()
    .unwrap_or_default()
}

/// `_DL_CACHE_DEFAULT_ID` (sysdeps/…/dl-cache.h): FLAG_ELF_LIBC6 with the
/// architecture's own bits.
fn default_id(want: Want) -> i32 {
    use super::machine::*;
    const ELF_LIBC6: i32 = 0x0003;
    ELF_LIBC6
        | match (want.machine, want.is_64) {
            (EM_X86_64, true) => 0x0300,
            (EM_X86_64, false) => 0x0800,
            (EM_AARCH64, _) => 0x0a00,
            (EM_PPC64, _) => 0x0500,
            (EM_S390, _) => 0x0400,
            (EM_ARM, _) => 0x0900,
            (EM_RISCV, _) => 0x1000,
            _ => 0,
        }
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache with `entries` (key, value, hwcap) and hwcaps names.
    pub fn build(entries: &[(&str, &str, u64)], hwcaps: &[&str]) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut offsets = Vec::new();
        let table_end = NEW_HEADER + entries.len() * NEW_ENTRY;
        let ext_len = if hwcaps.is_empty() { 0 } else { 8 + 16 + 4 * hwcaps.len() };
        let strings_at = table_end + ext_len;
        let mut add = |s: &str| {
            let off = strings_at + strings.len();
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            off as u32
        };
        for (k, v, _) in entries {
            offsets.push((add(k), add(v)));
        }
        let hw_offsets: Vec<u32> = hwcaps.iter().map(|h| add(h)).collect();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC_NEW);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&[2, 0, 0, 0]);
        out.extend_from_slice(&(if hwcaps.is_empty() { 0 } else { table_end as u32 }).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        for ((_, _, hwcap), (k, v)) in entries.iter().zip(&offsets) {
            out.extend_from_slice(&0x0303i32.to_le_bytes());
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&hwcap.to_le_bytes());
        }
        if !hwcaps.is_empty() {
            out.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            let names_at = (table_end + 8 + 16) as u32;
            for w in [EXTENSION_TAG_HWCAPS, 0, names_at, 4 * hwcaps.len() as u32] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            for o in hw_offsets {
                out.extend_from_slice(&o.to_le_bytes());
            }
        }
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn plain_entries_are_found_and_hwcaps_entries_preferred_when_supported() {
        let data = build(
            &[
                ("libz.so.1", "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1", HWCAP_EXTENSION),
                ("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", 0),
                ("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6", 0),
            ],
            &["x86-64-v3"],
        );
        if !cfg!(target_arch = "x86_64") {
            return;
        }
        let c = Cache::parse(&data).unwrap();
        let v3 = vec![b"x86-64-v3".to_vec()];
        assert_eq!(c.lookup(b"libz.so.1", &v3), Some(&b"/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1"[..]));
        assert_eq!(c.lookup(b"libz.so.1", &[]), Some(&b"/lib/x86_64-linux-gnu/libz.so.1"[..]));
        assert_eq!(c.lookup(b"libm.so.6", &v3), Some(&b"/lib/x86_64-linux-gnu/libm.so.6"[..]));
        assert_eq!(c.lookup(b"libnone.so", &v3), None);
    }

    #[test]
    fn truncated_and_garbage_caches_are_refused_without_panic() {
        let data = build(&[("libm.so.6", "/lib/libm.so.6", 0)], &["x86-64-v3"]);
        for n in 0..data.len() {
            let _ = Cache::parse(&data[..n]);
        }
        let mut flipped = data.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = Cache::parse(&flipped);
            flipped[i] ^= 0xff;
        }
        assert!(Cache::parse(b"not a cache").is_none());
    }

    #[test]
    fn this_machines_cache_has_libc() {
        let Some(c) = Cache::read(Path::new("/etc/ld.so.cache")) else { return };
        assert!(c.lookup(b"libc.so.6", &[]).is_some());
    }
}
