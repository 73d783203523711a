//! Symbol versions of an ELF file: the version nodes it needs from each
//! library (`.gnu.version_r`) and the ones it defines (`.gnu.version_d`), as
//! `readelf -V` lists them. The loader refuses an object whose needed node
//! its provider does not define (`_dl_check_map_versions`), so these decide
//! whether an audit module can be loaded at all.
//!
//! Only the standard library: build.rs includes this file too, to learn the
//! glibc floor of the module it embeds.

/// What `needed` names: a version node of a library, e.g. `GLIBC_2.17` of
/// `libc.so.6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub file: String,
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    pub needed: Vec<Need>,
    /// The version nodes defined, without the base entry (the file's own name).
    pub defined: Vec<String>,
}

const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const VER_FLG_BASE: u16 = 1;
/// More entries than any real file has; a loop in corrupt data stops here.
const MAX_ENTRIES: usize = 1 << 16;

struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn slice(&self, off: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(off).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }
    fn u16(&self, off: u64) -> Option<u16> {
        let b: [u8; 2] = self.slice(off, 2)?.try_into().ok()?;
        Some(if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }
    fn u32(&self, off: u64) -> Option<u32> {
        let b: [u8; 4] = self.slice(off, 4)?.try_into().ok()?;
        Some(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    fn u64(&self, off: u64) -> Option<u64> {
        let b: [u8; 8] = self.slice(off, 8)?.try_into().ok()?;
        Some(if self.big_endian { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    }
    fn c_str(&self, off: u64) -> Option<String> {
        let start = usize::try_from(off).ok()?;
        let rest = self.bytes.get(start..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

struct Section {
    kind: u32,
    link: u32,
    offset: u64,
    info: u32,
}

/// Reads the version sections of an ELF file held in `bytes`. A file with
/// none gives empty lists; anything out of bounds is an error.
pub fn read(bytes: &[u8]) -> Result<Versions, &'static str> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file");
    }
    let is_64 = match bytes.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF class"),
    };
    let big_endian = match bytes.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF byte order"),
    };
    let r = Reader { bytes, big_endian };
    let bad = "truncated or corrupt ELF section headers";
    let (shoff, shentsize, shnum) = if is_64 {
        (r.u64(0x28), r.u16(0x3a), r.u16(0x3c))
    } else {
        (r.u32(0x20).map(u64::from), r.u16(0x2e), r.u16(0x30))
    };
    let (shoff, shentsize, shnum) = (shoff.ok_or(bad)?, u64::from(shentsize.ok_or(bad)?), shnum.ok_or(bad)?);
    let mut sections = Vec::with_capacity(usize::from(shnum));
    for i in 0..u64::from(shnum) {
        let at = shoff.checked_add(i.checked_mul(shentsize).ok_or(bad)?).ok_or(bad)?;
        let section = if is_64 {
            Section {
                kind: r.u32(at.saturating_add(4)).ok_or(bad)?,
                offset: r.u64(at.saturating_add(0x18)).ok_or(bad)?,
                link: r.u32(at.saturating_add(0x28)).ok_or(bad)?,
                info: r.u32(at.saturating_add(0x2c)).ok_or(bad)?,
            }
        } else {
            Section {
                kind: r.u32(at.saturating_add(4)).ok_or(bad)?,
                offset: r.u32(at.saturating_add(0x10)).ok_or(bad)?.into(),
                link: r.u32(at.saturating_add(0x18)).ok_or(bad)?,
                info: r.u32(at.saturating_add(0x1c)).ok_or(bad)?,
            }
        };
        sections.push(section);
    }
    let mut out = Versions::default();
    let bad = "corrupt ELF version section";
    for s in &sections {
        if s.kind != SHT_GNU_VERNEED && s.kind != SHT_GNU_VERDEF {
            continue;
        }
        let strtab = sections.get(s.link as usize).ok_or(bad)?.offset;
        let name = |off: u32| r.c_str(strtab.checked_add(u64::from(off))?);
        // sh_info is the number of entries; vn_next / vd_next chain them.
        let count = (s.info as usize).min(MAX_ENTRIES);
        let mut at = s.offset;
        for _ in 0..count {
            if s.kind == SHT_GNU_VERNEED {
                // Elf_Verneed: vn_version, vn_cnt, vn_file, vn_aux, vn_next.
                let cnt = r.u16(at.saturating_add(2)).ok_or(bad)?;
                let file = name(r.u32(at.saturating_add(4)).ok_or(bad)?).ok_or(bad)?;
                let mut aux = at.checked_add(u64::from(r.u32(at.saturating_add(8)).ok_or(bad)?)).ok_or(bad)?;
                for _ in 0..cnt {
                    // Elf_Vernaux: vna_hash, vna_flags, vna_other, vna_name, vna_next.
                    let version = name(r.u32(aux.saturating_add(8)).ok_or(bad)?).ok_or(bad)?;
                    out.needed.push(Need { file: file.clone(), version });
                    aux = aux.checked_add(u64::from(r.u32(aux.saturating_add(12)).ok_or(bad)?)).ok_or(bad)?;
                }
                let next = r.u32(at.saturating_add(12)).ok_or(bad)?;
                if next == 0 {
                    break;
                }
                at = at.checked_add(u64::from(next)).ok_or(bad)?;
            } else {
                // Elf_Verdef: vd_version, vd_flags, vd_ndx, vd_cnt, vd_hash, vd_aux, vd_next;
                // its first Elf_Verdaux names the node.
                let flags = r.u16(at.saturating_add(2)).ok_or(bad)?;
                let aux = at.checked_add(u64::from(r.u32(at.saturating_add(12)).ok_or(bad)?)).ok_or(bad)?;
                if flags & VER_FLG_BASE == 0 {
                    out.defined.push(name(r.u32(aux).ok_or(bad)?).ok_or(bad)?);
                }
                let next = r.u32(at.saturating_add(16)).ok_or(bad)?;
                if next == 0 {
                    break;
                }
                at = at.checked_add(u64::from(next)).ok_or(bad)?;
            }
        }
    }
    Ok(out)
}

/// `GLIBC_2.2.5` → `[2, 2, 5]`; other nodes (`GLIBC_PRIVATE`, `GCC_3.0`) → None.
pub fn glibc_version(node: &str) -> Option<Vec<u32>> {
    let numbers = node.strip_prefix("GLIBC_")?;
    numbers.split('.').map(|n| n.parse().ok()).collect()
}

/// The newest `GLIBC_x.y` among `nodes`, as `2.34`.
pub fn newest_glibc<'a>(nodes: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let newest = nodes.into_iter().filter_map(glibc_version).max()?;
    Some(newest.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
}
