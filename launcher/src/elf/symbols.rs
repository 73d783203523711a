//! Dynamic symbols and symbol versions, read the way the loader reads them
//! (elf/dl-lookup.c, elf/dl-version.c): `.dynsym` through DT_GNU_HASH or
//! DT_HASH, DT_VERSYM, DT_VERNEED, DT_VERDEF, and the relocation tables
//! that say which symbols are looked up. The file is mapped, not read.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use crate::input::Mapped;

fn bad(e: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt ELF file: {e}"))
}

/// One version a symbol can carry: a definition (DT_VERDEF) or a need
/// (DT_VERNEED) — glibc's `struct r_found_version`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Version {
    pub name: Vec<u8>,
    pub hash: u32,
    /// The file a needed version must come from (`vn_file`); `None` for
    /// the object's own definitions.
    pub file: Option<Vec<u8>>,
    pub hidden: bool,
    /// VER_FLG_WEAK on a need: its absence is not an error.
    pub weak: bool,
    /// VER_FLG_BASE on a definition: the object's own name.
    pub base: bool,
}

/// A symbol as a relocation or a lookup sees it, its name left as a string
/// table offset: most symbols a lookup meets are rejected before their name
/// is needed.
#[derive(Clone, Copy, Debug)]
struct Sym {
    name: u32,
    value: u64,
    info: u8,
    other: u8,
    shndx: u16,
}

impl Sym {
    fn bind(&self) -> u8 {
        self.info >> 4
    }
    fn kind(&self) -> u8 {
        self.info & 0xf
    }
}

const STB_LOCAL: u8 = 0;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;
const STB_GNU_UNIQUE: u8 = 10;
const SHN_UNDEF: u16 = 0;
const SHN_ABS: u16 = 0xfff1;
const STT_TLS: u8 = 6;
/// NOTYPE, OBJECT, FUNC, COMMON, TLS, GNU_IFUNC (dl-lookup.c ALLOWED_STT).
const ALLOWED_STT: u32 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 10);

/// Relocation type classes (elf_machine_type_class).
pub const CLASS_PLT: u8 = 1;
pub const CLASS_COPY: u8 = 2;

/// One relocation that names a symbol, in the order the loader applies
/// them: DT_RELA/DT_REL first, then DT_JMPREL.
#[derive(Clone, Copy, Debug)]
pub struct Reloc {
    pub sym: u32,
    pub class: u8,
    /// A GLOB_DAT relocation (x86-64, i386), which glibc before 2.36 gave
    /// a class of its own (ELF_RTYPE_CLASS_EXTERN_PROTECTED_DATA).
    pub glob_dat: bool,
}

/// glibc < 2.36's class for GLOB_DAT: it changes no lookup's outcome, only
/// the one-entry lookup cache's key (a GLOB_DAT and an R_X86_64_64 of the
/// same missing symbol, in a row, are two reports there, one from 2.36 on).
const CLASS_EXTERN_PROTECTED_DATA: u8 = 4;

/// The dynamic symbol view of one object.
pub struct DynObject {
    map: Mapped,
    is_64: bool,
    le: bool,
    machine: u16,
    symtab: usize,
    /// How many symbols the hash table counts: where the memo of a
    /// check starts, not a bound (see `sym`).
    nsyms: usize,
    strtab: usize,
    strsz: usize,
    gnu_hash: Option<usize>,
    gnu: Option<GnuHash>,
    sysv_hash: Option<usize>,
    versym: Option<usize>,
    /// Indexed by version index (glibc's `l_versions`).
    versions: Vec<Version>,
    /// Every DT_VERDEF entry, the base one included (what a needed version
    /// is matched against).
    defs: Vec<Version>,
    has_verdef: bool,
    /// DT_VERNEED in file order: (vn_file, its versions).
    needs: Vec<(Vec<u8>, Vec<Version>)>,
    /// The highest version index of each DT_VERNEED file, and of
    /// DT_VERDEF: how long the loader makes `l_versions`.
    need_high: Vec<u16>,
    def_high: u16,
    /// (start, size, RELA?, leading relative entries to pass over).
    relocs: Vec<(usize, usize, bool, usize)>,
}

const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_STRSZ: u64 = 10;
const DT_REL: u64 = 17;
const DT_RELSZ: u64 = 18;
const DT_PLTREL: u64 = 20;
const DT_PLTRELSZ: u64 = 2;
const DT_JMPREL: u64 = 23;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const DT_RELACOUNT: u64 = 0x6fff_fff9;
const DT_RELCOUNT: u64 = 0x6fff_fffa;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERDEFNUM: u64 = 0x6fff_fffd;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;

impl DynObject {
    pub fn open(path: &Path) -> io::Result<DynObject> {
        let map = Mapped::open(path, false)?;
        let b = map.bytes();
        if b.len() < 64 || &b[..4] != b"\x7fELF" {
            return Err(bad("not ELF"));
        }
        let is_64 = b[4] == 2;
        let le = b[5] == 1;
        let r = Reader { b, le, is_64 };
        let machine = r.u16(18).ok_or_else(|| bad("header"))?;
        let (phoff, phentsize, phnum) = if is_64 {
            (r.u64(0x20), r.u16(0x36), r.u16(0x38))
        } else {
            (r.u32(0x1c).map(u64::from), r.u16(0x2a), r.u16(0x2c))
        };
        let (phoff, phentsize, phnum) = (
            phoff.ok_or_else(|| bad("header"))? as usize,
            usize::from(phentsize.ok_or_else(|| bad("header"))?),
            usize::from(phnum.ok_or_else(|| bad("header"))?),
        );
        let mut loads = Vec::new();
        let mut dynamic = None;
        for i in 0..phnum {
            let at =
                phoff.checked_add(i.checked_mul(phentsize).ok_or_else(|| bad("phdr"))?).ok_or_else(|| bad("phdr"))?;
            let p_type = r.u32(at).ok_or_else(|| bad("program headers are truncated"))?;
            let (offset, vaddr, filesz) = if is_64 {
                (r.u64(at + 8), r.u64(at + 16), r.u64(at + 32))
            } else {
                (r.u32(at + 4).map(u64::from), r.u32(at + 8).map(u64::from), r.u32(at + 16).map(u64::from))
            };
            let (offset, vaddr, filesz) = (
                offset.ok_or_else(|| bad("phdr"))?,
                vaddr.ok_or_else(|| bad("phdr"))?,
                filesz.ok_or_else(|| bad("phdr"))?,
            );
            match p_type {
                PT_LOAD => loads.push((vaddr, offset, filesz)),
                PT_DYNAMIC => dynamic = Some((offset, filesz)),
                _ => {}
            }
        }
        let to_off = |addr: u64| -> Option<usize> {
            loads
                .iter()
                .find(|&&(v, _, f)| addr >= v && addr - v < f)
                .and_then(|&(v, o, _)| usize::try_from(addr - v + o).ok())
                .filter(|&o| o < b.len())
        };
        let (doff, dsz) = dynamic.ok_or_else(|| bad("no dynamic section"))?;
        let mut d: HashMap<u64, u64> = HashMap::new();
        let entsize = if is_64 { 16 } else { 8 };
        let mut at = doff as usize;
        let end = (doff.saturating_add(dsz) as usize).min(b.len());
        while at + entsize <= end {
            let (tag, val) = if is_64 {
                (r.u64(at).unwrap_or(0), r.u64(at + 8).unwrap_or(0))
            } else {
                (u64::from(r.u32(at).unwrap_or(0)), u64::from(r.u32(at + 4).unwrap_or(0)))
            };
            if tag == DT_NULL {
                break;
            }
            d.entry(tag).or_insert(val);
            at += entsize;
        }
        let addr = |tag| d.get(&tag).copied().and_then(to_off);
        let symtab = addr(DT_SYMTAB).ok_or_else(|| bad("no DT_SYMTAB"))?;
        let strtab = addr(DT_STRTAB).ok_or_else(|| bad("no DT_STRTAB"))?;
        let strsz = (d.get(&DT_STRSZ).copied().unwrap_or(0) as usize).min(b.len() - strtab);
        let gnu_hash = addr(DT_GNU_HASH);
        let sysv_hash = addr(DT_HASH);
        let versym = addr(DT_VERSYM);
        let verneed = addr(DT_VERNEED).zip(d.get(&DT_VERNEEDNUM).copied());
        let verdef = addr(DT_VERDEF).zip(d.get(&DT_VERDEFNUM).copied());
        let rela = d.contains_key(&DT_RELA) || !d.contains_key(&DT_REL);
        let (main_tag, main_sz) = if d.contains_key(&DT_RELA) { (DT_RELA, DT_RELASZ) } else { (DT_REL, DT_RELSZ) };
        let mut ranges = Vec::new();
        if let (Some(start), Some(&size)) = (addr(main_tag), d.get(&main_sz)) {
            // DT_RELACOUNT/DT_RELCOUNT: the loader applies that many
            // leading entries as relative ones, without reading a symbol
            // (elf/do-rel.h).
            let count = if main_tag == DT_RELA { DT_RELACOUNT } else { DT_RELCOUNT };
            let relative = d.get(&count).map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX));
            ranges.push((start, size as usize, main_tag == DT_RELA, relative));
        }
        if let (Some(start), Some(&size)) = (addr(DT_JMPREL), d.get(&DT_PLTRELSZ)) {
            let plt_rela = d.get(&DT_PLTREL).map_or(rela, |&t| t == DT_RELA);
            // elf/dynamic-link.h: a DT_JMPREL at the end of the DT_RELA
            // range is done once, after it.
            if let Some(first) = ranges.first_mut() {
                if first.0 <= start && first.0 + first.1 == start + size as usize {
                    first.1 -= size as usize;
                }
            }
            ranges.push((start, size as usize, plt_rela, 0));
        }
        let mut o = DynObject {
            is_64,
            le,
            machine,
            symtab,
            nsyms: 0,
            strtab,
            strsz,
            gnu_hash,
            gnu: gnu_hash.and_then(|h| GnuHash::read(&Reader { b: map.bytes(), le, is_64 }, h)),
            sysv_hash,
            versym,
            versions: Vec::new(),
            defs: Vec::new(),
            has_verdef: false,
            needs: Vec::new(),
            need_high: Vec::new(),
            def_high: 0,
            relocs: ranges,
            map,
        };
        o.nsyms = o.count_symbols();
        o.read_versions(verneed, verdef);
        Ok(o)
    }

    fn r(&self) -> Reader<'_> {
        Reader { b: self.map.bytes(), le: self.le, is_64: self.is_64 }
    }

    fn string(&self, off: u32) -> &[u8] {
        let b = self.map.bytes();
        let start = self.strtab.saturating_add(off as usize);
        let limit = if self.strsz > 0 { self.strtab + self.strsz } else { b.len() };
        let tail = b.get(start..limit.max(start)).unwrap_or_default();
        match std::ffi::CStr::from_bytes_until_nul(tail) {
            Ok(c) => c.to_bytes(),
            Err(_) => tail,
        }
    }

    fn count_symbols(&self) -> usize {
        let r = self.r();
        if let Some(h) = self.sysv_hash {
            return r.u32(h + 4).unwrap_or(0) as usize;
        }
        let Some(g) = self.gnu.as_ref() else { return 0 };
        // The highest symbol index any chain reaches, plus one. A damaged
        // count of buckets or a chain without its end stops at the file's
        // end: a few reads past it, not four billion.
        let mut max = 0u32;
        for i in 0..g.nbuckets as usize {
            let Some(b) = i.checked_mul(4).and_then(|o| g.buckets.checked_add(o)).and_then(|at| r.u32(at)) else {
                break;
            };
            max = max.max(b);
        }
        if max < g.symoffset {
            return g.symoffset as usize;
        }
        let mut i = max;
        while let Some(c) =
            ((i - g.symoffset) as usize).checked_mul(4).and_then(|o| g.chains.checked_add(o)).and_then(|at| r.u32(at))
        {
            if c & 1 != 0 {
                break;
            }
            let Some(next) = i.checked_add(1) else { break };
            i = next;
        }
        i as usize + 1
    }

    /// Symbol `i` of DT_SYMTAB, wherever it lies in the file: the loader
    /// reads a relocation's symbol without a bound, and the hash tables do
    /// not always count every symbol (an executable's undefined ones can
    /// sit past DT_GNU_HASH's hashed ones, in no chain).
    fn sym(&self, i: usize) -> Option<Sym> {
        let r = self.r();
        let (name, value, info, other, shndx) = if self.is_64 {
            let at = self.symtab.checked_add(i.checked_mul(24)?)?;
            (r.u32(at)?, r.u64(at + 8)?, *r.b.get(at + 4)?, *r.b.get(at + 5)?, r.u16(at + 6)?)
        } else {
            let at = self.symtab.checked_add(i.checked_mul(16)?)?;
            (r.u32(at)?, u64::from(r.u32(at + 4)?), *r.b.get(at + 12)?, *r.b.get(at + 13)?, r.u16(at + 14)?)
        };
        Some(Sym { name, value, info, other, shndx })
    }

    /// Whether the string at `off` is `name`, without measuring it first.
    fn string_is(&self, off: u32, name: &[u8]) -> bool {
        let b = self.map.bytes();
        let start = self.strtab.saturating_add(off as usize);
        let limit = if self.strsz > 0 { self.strtab + self.strsz } else { b.len() };
        if start >= limit {
            return name.is_empty();
        }
        match start.checked_add(name.len()) {
            Some(end) if end < limit => b.get(start..end) == Some(name) && b.get(end) == Some(&0),
            // The name runs to the table's end, unterminated (`string` stops there too).
            Some(end) if end == limit => b.get(start..end) == Some(name),
            _ => false,
        }
    }

    /// The raw DT_VERSYM entry of symbol `i` (0 when there is none).
    pub fn versym(&self, i: usize) -> u16 {
        self.versym.and_then(|v| self.r().u16(v + i * 2)).unwrap_or(0)
    }

    /// glibc's `l_versions[i]`; hash 0 means "no version".
    pub fn version(&self, i: u16) -> Option<&Version> {
        self.versions.get(usize::from(i & 0x7fff)).filter(|v| v.hash != 0)
    }

    pub fn has_verdef(&self) -> bool {
        self.has_verdef
    }

    /// The object's own version definitions, base included.
    pub fn definitions(&self) -> impl Iterator<Item = &Version> {
        self.defs.iter()
    }

    /// DT_VERNEED in file order.
    pub fn needs(&self) -> &[(Vec<u8>, Vec<Version>)] {
        &self.needs
    }

    /// The length of the loader's `l_versions` for this object when the
    /// files of DT_VERNEED for which `found` is false are missing: in
    /// trace mode (ldd) `_dl_check_map_versions` sizes the table from the
    /// needs of files it found and the definitions only, and a needed
    /// version past that end is not entered, so a reference to it is
    /// looked up, and reported, unversioned.
    pub fn versions_len(&self, found: impl Fn(&[u8]) -> bool) -> usize {
        let needs = self.needs.iter().zip(&self.need_high).filter(|((file, _), _)| found(file)).map(|(_, &h)| h);
        usize::from(needs.fold(self.def_high, u16::max)) + 1
    }

    fn read_versions(&mut self, verneed: Option<(usize, u64)>, verdef: Option<(usize, u64)>) {
        let r = self.r();
        let mut versions: Vec<Version> = Vec::new();
        let mut set = |i: usize, v: Version| {
            if i > 0xffff {
                return;
            }
            if versions.len() <= i {
                versions.resize(i + 1, Version::default());
            }
            versions[i] = v;
        };
        let mut needs = Vec::new();
        let mut need_high = Vec::new();
        if let Some((mut at, num)) = verneed {
            for _ in 0..num.min(4096) {
                let (Some(cnt), Some(file), Some(aux), Some(next)) =
                    (r.u16(at + 2), r.u32(at + 4), r.u32(at + 8), r.u32(at + 12))
                else {
                    break;
                };
                let file = self.string(file).to_vec();
                let mut list = Vec::new();
                let mut high = 0u16;
                let mut a = at + aux as usize;
                for _ in 0..cnt {
                    let (Some(hash), Some(flags), Some(other), Some(name), Some(anext)) =
                        (r.u32(a), r.u16(a + 4), r.u16(a + 6), r.u32(a + 8), r.u32(a + 12))
                    else {
                        break;
                    };
                    let v = Version {
                        name: self.string(name).to_vec(),
                        hash,
                        file: Some(file.clone()),
                        hidden: other & 0x8000 != 0,
                        weak: flags & 2 != 0,
                        base: false,
                    };
                    set(usize::from(other & 0x7fff), v.clone());
                    high = high.max(other & 0x7fff);
                    list.push(v);
                    if anext == 0 {
                        break;
                    }
                    a += anext as usize;
                }
                needs.push((file, list));
                need_high.push(high);
                if next == 0 {
                    break;
                }
                at += next as usize;
            }
        }
        let mut has_verdef = false;
        let mut defs = Vec::new();
        let mut def_high = 0u16;
        if let Some((mut at, num)) = verdef {
            has_verdef = true;
            for _ in 0..num.min(4096) {
                let (Some(flags), Some(ndx), Some(hash), Some(aux), Some(next)) =
                    (r.u16(at + 2), r.u16(at + 4), r.u32(at + 8), r.u32(at + 12), r.u32(at + 16))
                else {
                    break;
                };
                if let Some(name) = r.u32(at + aux as usize) {
                    let v = Version {
                        name: self.string(name).to_vec(),
                        hash,
                        file: None,
                        hidden: false,
                        weak: false,
                        base: flags & 1 != 0,
                    };
                    // The base version's name is not there for matching a
                    // versioned symbol (elf/dl-version.c).
                    if !v.base {
                        set(usize::from(ndx & 0x7fff), v.clone());
                    }
                    def_high = def_high.max(ndx & 0x7fff);
                    defs.push(v);
                }
                if next == 0 {
                    break;
                }
                at += next as usize;
            }
        }
        self.versions = versions;
        self.defs = defs;
        self.needs = needs;
        self.need_high = need_high;
        self.def_high = def_high;
        self.has_verdef = has_verdef;
    }

    /// Every relocation that names a symbol, in application order.
    pub fn for_each_relocation(&self, mut f: impl FnMut(Reloc)) {
        let r = self.r();
        for &(start, size, rela, relative) in &self.relocs {
            let ent = match (self.is_64, rela) {
                (true, true) => 24,
                (true, false) => 16,
                (false, true) => 12,
                (false, false) => 8,
            };
            let mut at = start.saturating_add(relative.min(size / ent).saturating_mul(ent));
            while at + ent <= start + size && at + ent <= r.b.len() {
                let (sym, ty) = if self.is_64 {
                    let info = r.u64(at + 8).unwrap_or(0);
                    ((info >> 32) as u32, (info & 0xffff_ffff) as u32)
                } else {
                    let info = r.u32(at + 4).unwrap_or(0);
                    (info >> 8, info & 0xff)
                };
                if sym != 0 {
                    let glob_dat =
                        matches!((self.machine, ty), (super::machine::EM_X86_64, 6) | (super::machine::EM_386, 6));
                    f(Reloc { sym, class: type_class(self.machine, ty), glob_dat });
                }
                at += ent;
            }
        }
    }

    /// A definition of `name` in this object that a reference with
    /// `version` (None: unversioned) binds to, as `do_lookup_x` and
    /// `check_match` decide: its symbol index.
    pub fn lookup(&self, name: &[u8], version: Option<&Version>, class: u8, is_main: bool) -> Option<usize> {
        self.lookup_key(&Key::new(name), version, class, is_main)
    }

    /// `lookup` with the name's hashes computed once by the caller, as
    /// `_dl_lookup_symbol_x` does for a walk of the whole scope.
    pub fn lookup_key(&self, key: &Key<'_>, version: Option<&Version>, class: u8, is_main: bool) -> Option<usize> {
        let name = key.name;
        if class & CLASS_COPY != 0 && is_main {
            return None;
        }
        let mut versioned: Option<usize> = None;
        let mut num_versions = 0;
        let mut check = |i: usize| -> bool {
            let Some(s) = self.sym(i) else { return false };
            if (s.value == 0 && s.shndx != SHN_ABS && s.kind() != STT_TLS)
                || (class & CLASS_PLT != 0 && s.shndx == SHN_UNDEF)
            {
                return false;
            }
            if (1u32 << s.kind()) & ALLOWED_STT == 0 || !self.string_is(s.name, name) {
                return false;
            }
            let vs = self.versym(i);
            match version {
                Some(want) if self.versym.is_some() => {
                    let mine = self.versions.get(usize::from(vs & 0x7fff));
                    let same = mine.is_some_and(|m| m.hash == want.hash && m.name == want.name);
                    let mine_hash = mine.map_or(0, |m| m.hash);
                    if !same && (want.hidden || mine_hash != 0 || vs & 0x8000 != 0) {
                        return false;
                    }
                }
                Some(_) => {}
                None if self.versym.is_some() && (vs & 0x7fff) >= 3 => {
                    if vs & 0x8000 == 0 {
                        num_versions += 1;
                        if num_versions == 1 {
                            versioned = Some(i);
                        }
                    }
                    return false;
                }
                None => {}
            }
            matches!(s.bind(), STB_GLOBAL | STB_WEAK | STB_GNU_UNIQUE)
        };
        let found = self.hash_chain(key, &mut check);
        if found.is_some() {
            return found;
        }
        if num_versions == 1 {
            return versioned;
        }
        None
    }

    /// The GNU hash of symbol `i`, `name`, when this object's own table
    /// holds it: its chain entry is the hash with the low bit reused as
    /// the end-of-chain mark, and that bit is the parity of 5381 plus the
    /// name's bytes (33 is odd). This spares hashing the names of the
    /// symbols an object defines and binds to itself (most of a C++
    /// library's); it trusts the linker's table, which every linker writes
    /// from the names.
    fn own_hash(&self, i: usize, name: &[u8]) -> Option<u32> {
        let g = self.gnu.as_ref()?;
        let k = i.checked_sub(g.symoffset as usize)?;
        let c = self.r().u32(g.chains.checked_add(k.checked_mul(4)?)?)?;
        let words = name.chunks_exact(8);
        let tail = words.remainder().iter().fold(0u8, |p, &b| p ^ b);
        let x = words.fold(0u64, |x, w| x ^ u64::from_ne_bytes(w.try_into().unwrap_or_default()));
        let odd = ((x & 0x0101_0101_0101_0101).count_ones() as u8 ^ tail ^ 1) & 1;
        Some((c & !1) | u32::from(odd))
    }

    /// The first symbol of `key`'s hash chain that `check` accepts.
    fn hash_chain(&self, key: &Key<'_>, check: &mut impl FnMut(usize) -> bool) -> Option<usize> {
        let r = self.r();
        if self.gnu_hash.is_some() {
            let g = self.gnu.as_ref()?;
            let hash = key.gnu;
            let bits = if self.is_64 { 64 } else { 32 };
            // The loader masks (l_gnu_bitmask_idxbits): the word count is a
            // power of two in every table a linker writes.
            let word_at = g.bloom + ((hash / bits) & (g.bloom_size - 1)) as usize * (bits / 8) as usize;
            let word = if self.is_64 { r.u64(word_at)? } else { u64::from(r.u32(word_at)?) };
            // A damaged shift past the hash's width: glibc's `new_hash >>
            // l_gnu_shift` shifts the hash as the loader holds it (see
            // `Key::wide`), and the CPU takes the count modulo that width.
            let shifted = if self.is_64 && key.wide {
                u64::from(hash).wrapping_shr(g.shift)
            } else {
                u64::from(hash.wrapping_shr(g.shift))
            };
            let mask = (1u64 << (hash % bits)) | (1u64 << (shifted % u64::from(bits)));
            if word & mask != mask {
                return None;
            }
            let mut i = r.u32(g.buckets + (hash % g.nbuckets) as usize * 4)?;
            if i == 0 || i < g.symoffset {
                return None;
            }
            loop {
                let c = r.u32(g.chains + (i - g.symoffset) as usize * 4)?;
                if (c | 1) == (hash | 1) && check(i as usize) {
                    return Some(i as usize);
                }
                if c & 1 != 0 {
                    return None;
                }
                i = i.checked_add(1)?;
            }
        }
        let h = self.sysv_hash?;
        let nbucket = r.u32(h)?;
        let nchain = r.u32(h + 4)?;
        if nbucket == 0 {
            return None;
        }
        let hash = key.elf();
        let mut i = r.u32(h + 8 + (hash % nbucket) as usize * 4)?;
        let mut steps = 0;
        while i != 0 && i < nchain && steps <= nchain {
            if check(i as usize) {
                return Some(i as usize);
            }
            i = r.u32(h + 8 + (nbucket as usize + i as usize) * 4)?;
            steps += 1;
        }
        None
    }
}

/// DT_GNU_HASH's header, read once: where its bloom filter, buckets and
/// chains are.
struct GnuHash {
    nbuckets: u32,
    symoffset: u32,
    bloom_size: u32,
    shift: u32,
    bloom: usize,
    buckets: usize,
    chains: usize,
}

impl GnuHash {
    /// `None` when the table is empty or its header unreadable: no lookup
    /// in it finds anything.
    fn read(r: &Reader<'_>, h: usize) -> Option<GnuHash> {
        let (nbuckets, symoffset, bloom_size, shift) = (r.u32(h)?, r.u32(h + 4)?, r.u32(h + 8)?, r.u32(h + 12)?);
        if nbuckets == 0 || bloom_size == 0 {
            return None;
        }
        let word = if r.is_64 { 8 } else { 4 };
        let bloom = h.checked_add(16)?;
        let buckets = bloom.checked_add((bloom_size as usize).checked_mul(word)?)?;
        let chains = buckets.checked_add((nbuckets as usize).checked_mul(4)?)?;
        Some(GnuHash { nbuckets, symoffset, bloom_size, shift, bloom, buckets, chains })
    }
}

fn type_class(machine: u16, ty: u32) -> u8 {
    use super::machine::*;
    let (plt, copy): (&[u32], u32) = match machine {
        EM_X86_64 => (&[7, 16, 17, 18, 36], 5),
        EM_386 => (&[7, 35, 36, 37, 14, 41], 5),
        EM_AARCH64 => (&[1026, 1028, 1029, 1030, 1031], 1024),
        _ => (&[], u32::MAX),
    };
    (if plt.contains(&ty) { CLASS_PLT } else { 0 }) | (if ty == copy { CLASS_COPY } else { 0 })
}

/// A symbol name with its hashes: the GNU hash at once, the SysV one when
/// an object without DT_GNU_HASH first asks for it.
pub struct Key<'a> {
    pub name: &'a [u8],
    gnu: u32,
    elf: std::cell::Cell<Option<u32>>,
    /// The loader keeps the GNU hash in 64 bits (glibc < 2.36 on a 64-bit
    /// loader: a `uint_fast32_t`), which only a damaged bloom shift of 32
    /// to 63 can tell.
    wide: bool,
}

impl<'a> Key<'a> {
    pub fn new(name: &'a [u8]) -> Key<'a> {
        Key { name, gnu: gnu_hash(name), elf: std::cell::Cell::new(None), wide: false }
    }

    fn with_gnu(name: &'a [u8], gnu: u32) -> Key<'a> {
        Key { name, gnu, elf: std::cell::Cell::new(None), wide: false }
    }

    fn wide(self, wide: bool) -> Key<'a> {
        Key { wide, ..self }
    }

    fn elf(&self) -> u32 {
        match self.elf.get() {
            Some(h) => h,
            None => {
                let h = elf_hash(self.name);
                self.elf.set(Some(h));
                h
            }
        }
    }
}

pub fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(u32::from(c)))
}

pub fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

struct Reader<'a> {
    b: &'a [u8],
    le: bool,
    is_64: bool,
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let s: [u8; 2] = self.b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.le { u16::from_le_bytes(s) } else { u16::from_be_bytes(s) })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let s: [u8; 4] = self.b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.le { u32::from_le_bytes(s) } else { u32::from_be_bytes(s) })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let s: [u8; 8] = self.b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if self.le { u64::from_le_bytes(s) } else { u64::from_be_bytes(s) })
    }
}

/// The glibc version a libc.so.6 provides: its newest `GLIBC_2.N`
/// definition, read from the file (never by running it).
pub fn glibc_version(libc: &Path) -> Option<(u32, u32)> {
    DynObject::open(libc).ok()?.newest_glibc()
}

impl DynObject {
    /// The newest `GLIBC_2.N` this object defines (a libc.so.6's release).
    fn newest_glibc(&self) -> Option<(u32, u32)> {
        self.definitions()
            .filter_map(|v| {
                let s = std::str::from_utf8(&v.name).ok()?.strip_prefix("GLIBC_")?;
                let mut it = s.split('.');
                let major = it.next()?.parse().ok()?;
                let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
                Some((major, minor))
            })
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_abi() {
        assert_eq!(gnu_hash(b""), 5381);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(elf_hash(b"printf"), 0x0779_05a6);
    }

    #[test]
    fn this_machines_libc_says_its_version() {
        let v = glibc_version(Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
            .or_else(|| glibc_version(Path::new("/lib64/libc.so.6")));
        let (major, minor) = v.expect("libc.so.6 with GLIBC_ versions");
        assert_eq!(major, 2);
        assert!(minor >= 17);
    }
}

/// What `ldd -r` reports, found from the files alone.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A needed version node the providing file does not define.
    MissingVersion { version: String, weak: bool },
    /// The provider has no version definitions at all (ld.so's warning).
    NoVersionInformation { version: String },
    /// A relocation's symbol that no object in the scope defines.
    UndefinedSymbol { symbol: String, version: Option<String> },
}

/// One line of `ldd -r`'s report, with what it is about.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    #[serde(flatten)]
    pub finding: Finding,
    /// The object that asked (its path as the loader names it).
    pub requester: String,
    /// For a version: the loaded file that lacks it. For a versioned
    /// symbol: the loaded file its version comes from.
    pub provider: Option<String>,
    /// ldd's line, byte for byte.
    pub line: String,
    #[serde(skip)]
    pub requester_node: usize,
    #[serde(skip)]
    pub provider_node: Option<usize>,
    #[serde(skip)]
    pub vn_file: Option<Vec<u8>>,
    #[serde(skip)]
    pub symbol_bytes: Option<Vec<u8>>,
    #[serde(skip)]
    pub version_bytes: Option<Vec<u8>>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The loader's checks of a closure, in ldd -r's order: version checks of
/// every object in load order (elf/dl-version.c), then the symbol lookups of
/// every relocation, objects in reverse initialisation order
/// (rtld.c, `_dl_relocate_object` under LD_BIND_NOW), each reference looked
/// up in the global scope, breadth-first load order (elf/dl-lookup.c).
/// `progname` is the program as ldd names it.
pub fn check(c: &super::Closure, progname: &[u8]) -> io::Result<Vec<Problem>> {
    use super::{Target, INTERP, ROOT};
    // The global scope: breadth-first, the loader where first needed.
    let mut scope = vec![ROOT];
    let mut in_scope = vec![false; c.nodes.len()];
    in_scope[ROOT] = true;
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); c.nodes.len()];
    for e in &c.edges {
        if let Target::New(i) | Target::Repeat(i) = e.to {
            if !deps[e.from].contains(&i) {
                deps[e.from].push(i);
            }
            if !in_scope[i] {
                in_scope[i] = true;
                scope.push(i);
            }
        }
    }
    let host = |i: usize| -> std::path::PathBuf {
        let p = &c.nodes[i].path;
        let p = match &c.root {
            Some(r) => {
                use std::os::unix::ffi::OsStrExt;
                super::root::resolve(r.as_os_str().as_bytes(), p)
            }
            None => p.clone(),
        };
        use std::os::unix::ffi::OsStringExt;
        std::path::PathBuf::from(std::ffi::OsString::from_vec(p))
    };
    let name_of = |i: usize| -> Vec<u8> {
        if i == ROOT {
            progname.to_vec()
        } else {
            c.nodes[i].path.clone()
        }
    };
    // The scope's objects, in scope order; `at[node]` is a node's place.
    let mut at = vec![usize::MAX; c.nodes.len()];
    let mut objs = Vec::with_capacity(scope.len());
    for (k, &i) in scope.iter().enumerate() {
        at[i] = k;
        objs.push(DynObject::open(&host(i))?);
    }
    let object = |i: usize| &objs[at[i]];
    let by_name = |name: &[u8]| -> Option<usize> {
        scope.iter().copied().find(|&i| c.nodes[i].names.iter().any(|n| n == name) || c.nodes[i].path == name)
    };
    let prog = lossy(progname);
    let mut out = Vec::new();
    for &i in &scope {
        let o = object(i);
        for (file, versions) in o.needs() {
            let Some(p) = by_name(file) else { continue };
            let provider = object(p);
            for v in versions {
                let finding = if !provider.has_verdef() {
                    Finding::NoVersionInformation { version: lossy(&v.name) }
                } else if provider.definitions().any(|d| d.hash == v.hash && d.name == v.name) {
                    continue;
                } else {
                    Finding::MissingVersion { version: lossy(&v.name), weak: v.weak }
                };
                let what = match &finding {
                    Finding::NoVersionInformation { .. } => "no version information available".to_owned(),
                    Finding::MissingVersion { weak: true, .. } => {
                        format!("weak version `{}' not found", lossy(&v.name))
                    }
                    _ => format!("version `{}' not found", lossy(&v.name)),
                };
                let line = format!("{prog}: {}: {what} (required by {})", lossy(&name_of(p)), lossy(&name_of(i)));
                out.push(Problem {
                    finding,
                    requester: lossy(&name_of(i)),
                    provider: Some(lossy(&name_of(p))),
                    line,
                    requester_node: i,
                    provider_node: Some(p),
                    vn_file: Some(file.clone()),
                    symbol_bytes: None,
                    version_bytes: Some(v.name.clone()),
                });
            }
        }
    }
    // Initialisation order (elf/dl-sort-maps.c, the DFS sort): relocation
    // runs it backwards.
    let mut visited = vec![false; c.nodes.len()];
    let mut rpo: Vec<usize> = Vec::new();
    fn dfs(i: usize, deps: &[Vec<usize>], visited: &mut [bool], rpo: &mut Vec<usize>) {
        visited[i] = true;
        for &d in &deps[i] {
            if !visited[d] && d != ROOT {
                dfs(d, deps, visited, rpo);
            }
        }
        rpo.push(i);
    }
    for &i in scope.iter().rev() {
        if !visited[i] {
            dfs(i, &deps, &mut visited, &mut rpo);
        }
    }
    // `rpo` is postorder: dependencies first, which is the order of
    // relocation; the main program is forced first in init order, so last.
    rpo.retain(|&i| i != ROOT);
    rpo.push(ROOT);
    // The loader's release, read from the libc.so.6 of the closure.
    let libc = scope.iter().find(|&&i| c.nodes[i].names.iter().any(|n| n == b"libc.so.6"));
    // A program without libc: the release the loader rules were decided
    // from (a root's), else this machine's.
    let release = libc.and_then(|&i| object(i).newest_glibc()).or(c.platform.glibc);
    // Before 2.36: GLOB_DAT has a class of its own, and the GNU hash is
    // held in 64 bits (`Key::wide`).
    let before_2_36 = release.is_some_and(|v| v < (2, 36));
    // The scope as (object, is it the main program), walked per lookup.
    let walk: Vec<(&DynObject, bool)> = scope.iter().map(|&m| (object(m), m == ROOT)).collect();
    for &i in &rpo {
        if i == INTERP {
            continue;
        }
        let o = object(i);
        // Whether a lookup succeeded depends only on the symbol and the
        // relocation's class: each (symbol, class) is looked up once per
        // object. Bit `class` = looked up, bit `4 + class` = found.
        let mut memo = vec![0u8; o.nsyms.max(1)];
        // glibc's one-entry `l_lookup_cache`: the same symbol and class as
        // the previous lookup of this object is not looked up (nor
        // reported) again.
        let mut last: Option<(u32, u8)> = None;
        let versions_len = o.versions_len(|file| by_name(file).is_some());
        let version_of = |sym: u32| {
            let vs = o.versym(sym as usize);
            o.version(vs).filter(|_| usize::from(vs & 0x7fff) < versions_len)
        };
        let problem = |mut r: Reloc| {
            if r.glob_dat && before_2_36 {
                r.class |= CLASS_EXTERN_PROTECTED_DATA;
            }
            if last == Some((r.sym, r.class)) {
                return;
            }
            let Some(s) = o.sym(r.sym as usize) else { return };
            // Local binding and hidden/internal/protected visibility bind
            // within the object: no lookup (and the cache is untouched).
            if s.bind() == STB_LOCAL || s.other & 3 != 0 {
                return;
            }
            last = Some((r.sym, r.class));
            // A weak reference that resolves to nothing is not reported.
            if s.bind() == STB_WEAK {
                return;
            }
            let bit = 1u8 << (r.class & 3);
            // `sym` read the symbol from the file: the memo grows at most
            // to the file's size over a symbol's.
            if memo.len() <= r.sym as usize {
                memo.resize(r.sym as usize + 1, 0);
            }
            let slot = &mut memo[r.sym as usize];
            let found = if *slot & bit != 0 {
                *slot & (bit << 4) != 0
            } else {
                let version = version_of(r.sym);
                let name = o.string(s.name);
                let own = if s.shndx != SHN_UNDEF { o.own_hash(r.sym as usize, name) } else { None };
                let key = match own {
                    Some(h) => Key::with_gnu(name, h),
                    None => Key::new(name),
                }
                .wide(before_2_36);
                // Found or not does not depend on the order of the walk: a
                // symbol the object defines itself is tried there first.
                let found = (s.shndx != SHN_UNDEF && o.lookup_key(&key, version, r.class, i == ROOT).is_some())
                    || walk.iter().any(|&(m, main)| m.lookup_key(&key, version, r.class, main).is_some());
                *slot |= bit | if found { bit << 4 } else { 0 };
                found
            };
            if found {
                return;
            }
            let name = o.string(s.name);
            let version = version_of(r.sym);
            let vtext = version.map(|v| format!(", version {}", lossy(&v.name))).unwrap_or_default();
            let provider_node = version.and_then(|v| v.file.as_deref()).and_then(by_name);
            out.push(Problem {
                finding: Finding::UndefinedSymbol { symbol: lossy(name), version: version.map(|v| lossy(&v.name)) },
                requester: lossy(&name_of(i)),
                provider: provider_node.map(|p| lossy(&name_of(p))),
                line: format!("undefined symbol: {}{vtext}\t({})", lossy(name), lossy(&name_of(i))),
                requester_node: i,
                provider_node,
                vn_file: version.and_then(|v| v.file.clone()),
                symbol_bytes: Some(name.to_vec()),
                version_bytes: version.map(|v| v.name.clone()),
            });
        };
        o.for_each_relocation(problem);
    }
    Ok(out)
}

/// What a failed load lacked, to be looked for in other files.
pub struct Wanted<'a> {
    pub symbol: Option<&'a [u8]>,
    pub version: Option<&'a [u8]>,
    /// The ELF class (64-bit?) and machine the file must be of: the
    /// requester's. `None`: any.
    pub class: Option<(bool, u16)>,
}

impl DynObject {
    /// The file DT_VERNEED says `version` must come from (`vn_file`).
    pub fn needed_version_file(&self, version: &[u8]) -> Option<&[u8]> {
        self.needs.iter().find(|(_, vs)| vs.iter().any(|v| v.name == version)).map(|(f, _)| f.as_slice())
    }

    /// Whether this object has what `wanted` asks for: the symbol (with
    /// its version, as a reference bound to that version would match), else
    /// the version node, else just being of the right class.
    pub fn has(&self, wanted: &Wanted<'_>) -> bool {
        if wanted.class.is_some_and(|(is_64, machine)| is_64 != self.is_64 || machine != self.machine) {
            return false;
        }
        match (wanted.symbol, wanted.version) {
            (Some(s), v) => {
                let want = v.map(|v| Version { name: v.to_vec(), hash: elf_hash(v), ..Version::default() });
                self.lookup(s, want.as_ref(), 0, false).is_some()
            }
            (None, Some(v)) => self.definitions().any(|d| d.name == v),
            (None, None) => true,
        }
    }
}

/// This build's ELF class and machine: what a process of it loads.
pub fn native_class() -> (bool, u16) {
    let w = super::object::Want::native();
    (w.is_64, w.machine)
}

/// A file that may have what a failed load lacked: where it is, the label
/// of that place, its identity, and its dynamic symbols.
pub struct Candidate {
    pub path: std::path::PathBuf,
    pub label: String,
    pub id: (u64, u64),
    pub object: DynObject,
}

/// The ELF files named `file` in `places` (directory, label), in the order
/// the places are searched, each file once.
pub fn candidates(file: &[u8], places: &[(std::path::PathBuf, String)]) -> Vec<Candidate> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let file = std::ffi::OsStr::from_bytes(file);
    let mut out: Vec<Candidate> = Vec::new();
    for (dir, label) in places {
        let path = dir.join(file);
        let Some(id) = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino())) else { continue };
        if out.iter().any(|c| c.id == id) {
            continue;
        }
        if let Ok(object) = DynObject::open(&path) {
            out.push(Candidate { path, label: label.clone(), id, object });
        }
    }
    out
}

/// The first of `candidates` that has what `wanted` asks for and is not
/// the file `provider` (the loaded file that lacks it, by identity): the
/// file to get loaded instead. Used by `deps --check` and by the run's
/// diagnoses of failed loads (`rules::explain`).
pub fn find_alternative<'c>(
    wanted: &Wanted<'_>,
    provider: Option<(u64, u64)>,
    candidates: &'c [Candidate],
) -> Option<&'c Candidate> {
    candidates.iter().find(|c| Some(c.id) != provider && c.object.has(wanted))
}
