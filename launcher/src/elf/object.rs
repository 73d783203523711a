//! What culaunch needs from an ELF file's headers, parsed with goblin: only
//! the ELF header, the program headers, the dynamic section and the strings
//! it names are read, so a 500 MB library costs a few small reads.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::dynamic::{
    DF_1_NODEFLIB, DF_1_NOW, DF_1_PIE, DF_BIND_NOW, DF_STATIC_TLS, DT_BIND_NOW, DT_FLAGS, DT_FLAGS_1, DT_GNU_HASH,
    DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRTAB,
};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{ProgramHeader, PT_DYNAMIC, PT_INTERP, PT_LOAD, PT_TLS};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfHeader {
    pub is_64: bool,
    pub big_endian: bool,
    pub machine: u16,
    /// ET_DYN: a shared object (or a PIE executable).
    pub shared: bool,
    /// ET_EXEC: a position-dependent executable, which the loader refuses
    /// to map as a library.
    pub executable: bool,
    /// Has PT_INTERP: the dynamic loader runs in it.
    pub dynamic: bool,
    /// Has PT_DYNAMIC: the loader can link it (ldd's "dynamic executable"
    /// test, `l_ld != NULL` in rtld.c).
    pub has_dynamic: bool,
    /// Has a PT_LOAD segment.
    pub loadable: bool,
    /// DT_SONAME, when the file has one.
    pub soname: Option<Vec<u8>>,
    /// PT_INTERP: the loader this program asks for.
    pub interp: Option<Vec<u8>>,
    /// What the loader reads from the dynamic section.
    pub dynamic_info: DynamicInfo,
    /// (st_dev, st_ino) of the file read: how the loader tells two paths to
    /// one file apart from two files.
    pub file_id: (u64, u64),
    /// PT_TLS's size in memory: its thread-local storage, 0 without.
    pub tls_size: u64,
}

/// The dynamic-section entries that steer library search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    pub needed: Vec<Vec<u8>>,
    /// DT_RPATH; glibc ignores it when DT_RUNPATH is present
    /// (elf/get-dynamic-info.h), and so do we: it is `None` then.
    pub rpath: Option<Vec<u8>>,
    pub runpath: Option<Vec<u8>>,
    /// DF_1_NODEFLIB: no ld.so.cache, no default directories.
    pub nodeflib: bool,
    /// DF_1_PIE: a position-independent executable, which glibc (2.30 on)
    /// refuses to load as a library.
    pub pie: bool,
    /// The word count of DT_GNU_HASH's bloom filter, when the file has the
    /// table and it lies in the file.
    pub bloom_words: Option<u32>,
    /// `-z now` (DT_BIND_NOW, DF_BIND_NOW or DF_1_NOW): every symbol is
    /// bound when the object is loaded, so an undefined one fails the load.
    pub bind_now: bool,
    /// DF_STATIC_TLS: its code uses the initial-exec TLS model, so its
    /// thread-local storage must come from the static TLS block.
    pub static_tls: bool,
}

impl ElfHeader {
    /// The class and machine culaunch's audit module is built for.
    pub fn matches_this_build(&self) -> bool {
        self.is_64 == cfg!(target_pointer_width = "64") && self.machine == native_machine()
    }

    /// The dynamic loader itself, which runs a program given as its
    /// argument (`ld.so PROGRAM`): a shared object with no PT_INTERP whose
    /// DT_SONAME is a glibc loader's (`ld-linux-x86-64.so.2`,
    /// `ld-linux-aarch64.so.1`, `ld64.so.2`, `ld.so.1`, …).
    pub fn is_dynamic_loader(&self) -> bool {
        let loader_name = |s: &[u8]| [&b"ld-linux"[..], b"ld64.so.", b"ld.so."].iter().any(|p| s.starts_with(p));
        !self.dynamic && self.shared && self.soname.as_deref().is_some_and(loader_name)
    }

    pub fn describe_machine(&self) -> String {
        let bits = if self.is_64 { 64 } else { 32 };
        format!("{bits}-bit {}", header::machine_to_str(self.machine))
    }
}

pub fn native_machine() -> u16 {
    if cfg!(target_arch = "x86_64") {
        header::EM_X86_64
    } else if cfg!(target_arch = "aarch64") {
        header::EM_AARCH64
    } else if cfg!(target_arch = "powerpc64") {
        header::EM_PPC64
    } else {
        header::EM_NONE
    }
}

/// Reads the ELF header and program headers of `path`. `Ok(None)` means the
/// file is not ELF (a script, say); a truncated or corrupt ELF is an error.
pub fn read_header(path: &Path) -> io::Result<Option<ElfHeader>> {
    let file = open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let source = Source::new(&file, meta.len())?;
    parse(&source, (meta.dev(), meta.ino()))
}

/// O_NONBLOCK: a FIFO in a search directory must not hang us.
fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

/// The class, machine and byte order the loader links: those of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Want {
    pub is_64: bool,
    pub machine: u16,
    pub big_endian: bool,
}

impl Want {
    pub fn of(h: &ElfHeader) -> Want {
        Want { is_64: h.is_64, machine: h.machine, big_endian: h.big_endian }
    }

    /// What culaunch itself is built for.
    pub fn native() -> Want {
        Want {
            is_64: cfg!(target_pointer_width = "64"),
            machine: native_machine(),
            big_endian: cfg!(target_endian = "big"),
        }
    }
}

/// What the loader does with a file found on a search path
/// (elf/dl-load.c, `open_verify` and `_dl_map_object_from_fd`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Take(ElfHeader),
    /// Passed over silently: absent, unreadable, another class or machine.
    Skip,
    /// open(2) failed otherwise than with ENOENT or EACCES (a link loop, a
    /// socket, a name too long): ld.so gives up the rest of that search
    /// list (`open_path`), elsewhere it passes over the file.
    GiveUp,
    /// The loader stops the whole load with this error (the program does not
    /// start; ldd prints it and exits 1).
    Reject(Rejection),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// glibc's words (its `errstring`, with errno where it adds one).
    pub message: String,
    /// glibc names the request in the message, not the file (ET_EXEC).
    pub names_request: bool,
}

/// glibc's `LIBC_ABI_MAX` (the highest EI_ABIVERSION it accepts for
/// ELFOSABI_GNU, plus one): UNIQUE, IFUNC, ABSOLUTE since 2.28.
const LIBC_ABI_MAX: u8 = 4;

/// The loader's checks of a candidate, in its order: `open_verify` first
/// (ELF identification, class and machine skip, the rest is fatal), then the
/// mapping's own refusals (an executable, no loadable segment, no dynamic
/// section).
pub fn open_verify(path: &Path, want: Want) -> Verdict {
    let reject = |message: &str| Verdict::Reject(Rejection { message: message.to_owned(), names_request: false });
    let file = match open(path) {
        Ok(file) => file,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EACCES) | None) => return Verdict::Skip,
        Err(_) => return Verdict::GiveUp,
    };
    let Ok(meta) = file.metadata() else { return Verdict::Skip };
    if meta.is_dir() {
        // open(2) succeeds on a directory; read(2) fails with EISDIR, and
        // ld.so prints errno as a number.
        return reject("cannot read file data: Error 21");
    }
    if !meta.is_file() {
        // The loader would block on a FIFO, or read a device.
        return reject("not a regular file");
    }
    let Ok(src) = Source::new(&file, meta.len()) else { return reject("cannot read file data") };
    let ehdr_size = if want.is_64 { 64 } else { 52 };
    let id = &src.head;
    if id.len() < ehdr_size {
        return reject("file too short");
    }
    let expected_data = if want.big_endian { header::ELFDATA2MSB } else { header::ELFDATA2LSB };
    if &id[..4] != header::ELFMAG {
        return reject("invalid ELF header");
    }
    let class = if want.is_64 { header::ELFCLASS64 } else { header::ELFCLASS32 };
    if id[header::EI_CLASS] != class {
        return Verdict::Skip;
    }
    if id[header::EI_DATA] != expected_data {
        return reject(if want.big_endian {
            "ELF file data encoding not big-endian"
        } else {
            "ELF file data encoding not little-endian"
        });
    }
    if id[header::EI_VERSION] != 1 {
        return reject("ELF file version ident does not match current one");
    }
    let (osabi, abiversion) = (id[header::EI_OSABI], id[header::EI_ABIVERSION]);
    if osabi != header::ELFOSABI_NONE && osabi != header::ELFOSABI_GNU {
        return reject("ELF file OS ABI invalid");
    }
    if abiversion != 0 && !(osabi == header::ELFOSABI_GNU && abiversion < LIBC_ABI_MAX) {
        return reject("ELF file ABI version invalid");
    }
    if id[header::EI_ABIVERSION + 1..header::SIZEOF_IDENT].iter().any(|&b| b != 0) {
        return reject("nonzero padding in e_ident");
    }
    let half = |at: usize| -> u16 {
        let b = [id[at], id[at + 1]];
        if want.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let word = |at: usize| -> u32 {
        let b = [id[at], id[at + 1], id[at + 2], id[at + 3]];
        if want.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    if word(0x14) != 1 {
        return reject("ELF file version does not match current one");
    }
    if half(0x12) != want.machine {
        return Verdict::Skip;
    }
    let e_type = half(0x10);
    if e_type != header::ET_DYN && e_type != header::ET_EXEC {
        return reject("only ET_DYN and ET_EXEC can be loaded");
    }
    let phentsize_at = if want.is_64 { 0x36 } else { 0x2a };
    if usize::from(half(phentsize_at)) != if want.is_64 { 56 } else { 32 } {
        return reject("ELF file's phentsize not the expected size");
    }
    let h = match parse(&src, (meta.dev(), meta.ino())) {
        Ok(Some(h)) => h,
        Ok(None) => return reject("invalid ELF header"),
        Err(e) => return Verdict::Reject(Rejection { message: e.to_string(), names_request: false }),
    };
    if h.executable {
        return Verdict::Reject(Rejection {
            message: "cannot dynamically load executable".to_owned(),
            names_request: true,
        });
    }
    if h.dynamic_info.pie {
        return Verdict::Reject(Rejection {
            message: "cannot dynamically load position-independent executable".to_owned(),
            names_request: true,
        });
    }
    if !h.loadable {
        return reject("object file has no loadable segments");
    }
    if !h.has_dynamic {
        return reject("object file has no dynamic section");
    }
    if let Some(message) = bloom_assertion(&h.dynamic_info) {
        return reject(&message);
    }
    Verdict::Take(h)
}

/// The loader's words when it would die on this object once mapped:
/// `_dl_setup_hash` asserts that the bloom filter's word count is a power
/// of two (0 passes), and a failed assertion ends the process, a dlopen's
/// included.
pub fn bloom_assertion(info: &DynamicInfo) -> Option<String> {
    let n = info.bloom_words.filter(|n| n & n.wrapping_sub(1) != 0)?;
    Some(format!(
        "_dl_setup_hash: Assertion `(bitmask_nwords & (bitmask_nwords - 1)) == 0' failed! \
         (DT_GNU_HASH's bloom filter has {n} words, not a power of two)"
    ))
}

fn parse(src: &Source<'_>, file_id: (u64, u64)) -> io::Result<Option<ElfHeader>> {
    let ident = src.at(0, src.len.min(header::header64::SIZEOF_EHDR as u64) as usize)?;
    if ident.len() < 4 || &ident[..4] != header::ELFMAG {
        return Ok(None);
    }
    let header: Header = goblin::elf::Elf::parse_header(&ident).map_err(corrupt)?;
    let container =
        if header.e_ident[header::EI_CLASS] == header::ELFCLASS64 { Container::Big } else { Container::Little };
    let endian = Endian::from(header.e_ident[header::EI_DATA] == header::ELFDATA2LSB);
    let ctx = Ctx::new(container, endian);
    // As glibc does: a program header entry has exactly the size of the
    // class's Phdr (which also bounds the table to 64 KiB entries).
    let phdr_size = if container == Container::Big { 56 } else { 32 };
    if usize::from(header.e_phentsize) != phdr_size {
        return Err(corrupt("program header entries have the wrong size"));
    }
    let table_len = usize::from(header.e_phnum) * phdr_size;
    let table = src.at(header.e_phoff, table_len).map_err(|_| corrupt("program header table is truncated"))?;
    let phdrs = ProgramHeader::parse(&table, 0, usize::from(header.e_phnum), ctx).map_err(corrupt)?;
    let dynamic = read_dynamic(src, &phdrs, ctx)?;
    let interp = phdrs.iter().find(|p| p.p_type == PT_INTERP).map(|p| src.string(p.p_offset)).transpose()?;
    Ok(Some(ElfHeader {
        is_64: container == Container::Big,
        big_endian: !endian.is_little(),
        machine: header.e_machine,
        shared: header.e_type == header::ET_DYN,
        executable: header.e_type == header::ET_EXEC,
        dynamic: interp.is_some(),
        has_dynamic: phdrs.iter().any(|p| p.p_type == PT_DYNAMIC),
        loadable: phdrs.iter().any(|p| p.p_type == PT_LOAD),
        soname: dynamic.soname,
        interp,
        dynamic_info: dynamic.info,
        file_id,
        tls_size: phdrs.iter().find(|p| p.p_type == PT_TLS).map_or(0, |p| p.p_memsz),
    }))
}

struct Dynamic {
    soname: Option<Vec<u8>>,
    info: DynamicInfo,
}

/// The dynamic section and the strings it names.
fn read_dynamic(src: &Source<'_>, phdrs: &[ProgramHeader], ctx: Ctx) -> io::Result<Dynamic> {
    let mut out = Dynamic { soname: None, info: DynamicInfo::default() };
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else { return Ok(out) };
    // No real dynamic section comes near this; a corrupt size must not make
    // us allocate gigabytes.
    const MAX_DYNAMIC: u64 = 1 << 20;
    let section = src
        .at(dynamic.p_offset, dynamic.p_filesz.min(MAX_DYNAMIC) as usize)
        .map_err(|_| corrupt("dynamic section is truncated"))?;
    let (mut strtab, mut soname, mut rpath, mut runpath, mut needed) = (None, None, None, None, Vec::new());
    let mut gnu_hash = None;
    let entry = if ctx.container == Container::Big { 16 } else { 8 };
    for chunk in section.chunks_exact(entry) {
        let (tag, val) = decode_dyn(chunk, ctx);
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(val),
            DT_SONAME => soname = Some(val),
            DT_NEEDED => needed.push(val),
            DT_RPATH => rpath = Some(val),
            DT_RUNPATH => runpath = Some(val),
            DT_GNU_HASH => gnu_hash = Some(val),
            DT_FLAGS_1 => {
                out.info.nodeflib = val & DF_1_NODEFLIB != 0;
                out.info.pie = val & DF_1_PIE != 0;
                out.info.bind_now |= val & DF_1_NOW != 0;
            }
            DT_FLAGS => {
                out.info.bind_now |= val & DF_BIND_NOW != 0;
                out.info.static_tls = val & DF_STATIC_TLS != 0;
            }
            DT_BIND_NOW => out.info.bind_now = true,
            _ => {}
        }
    }
    out.info.bloom_words = gnu_hash.and_then(|addr| {
        // The third word of the table's header (nbuckets, symoffset, bloom_size, bloom_shift).
        let at = file_offset(phdrs, addr)?.checked_add(8)?;
        let b: [u8; 4] = src.at(at, 4).ok()?.as_ref().try_into().ok()?;
        Some(if ctx.le.is_little() { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    });
    if soname.is_none() && needed.is_empty() && rpath.is_none() && runpath.is_none() {
        return Ok(out);
    }
    let strtab = strtab.ok_or_else(|| corrupt("dynamic section without DT_STRTAB"))?;
    let Some(base) = file_offset(phdrs, strtab) else {
        return Err(corrupt("DT_STRTAB lies outside every loadable segment"));
    };
    // The strings we need usually sit close together: one read for all.
    let offsets = || soname.iter().chain(&needed).chain(&rpath).chain(&runpath).copied();
    let (lo, hi) = (offsets().min().unwrap_or(0), offsets().max().unwrap_or(0));
    let span_len = (hi - lo).saturating_add(512).min(src.len.saturating_sub(base.saturating_add(lo)));
    let span = if hi - lo < 64 * 1024 { src.at(base.saturating_add(lo), span_len as usize).ok() } else { None };
    let string = |offset: u64| -> io::Result<Vec<u8>> {
        if let Some(tail) = span.as_deref().and_then(|s| s.get((offset - lo) as usize..)) {
            if let Some(end) = tail.iter().position(|&b| b == 0) {
                return Ok(tail[..end].to_vec());
            }
        }
        src.string(base.saturating_add(offset))
    };
    out.soname = soname.map(string).transpose()?;
    // Real objects need tens of libraries; a corrupt one must not make us
    // read gigabytes of strings.
    if needed.len() > MAX_NEEDED {
        return Err(corrupt("implausibly many DT_NEEDED entries"));
    }
    out.info.needed = needed.into_iter().map(string).collect::<io::Result<_>>()?;
    out.info.runpath = runpath.map(string).transpose()?;
    // glibc drops DT_RPATH when DT_RUNPATH is present (elf/get-dynamic-info.h).
    out.info.rpath = if out.info.runpath.is_some() { None } else { rpath.map(string).transpose()? };
    Ok(out)
}

/// The file offset of address `addr` (a DT_* pointer), through the loadable
/// segment whose file bytes hold it.
fn file_offset(phdrs: &[ProgramHeader], addr: u64) -> Option<u64> {
    let load = phdrs.iter().find(|p| p.p_type == PT_LOAD && addr >= p.p_vaddr && addr - p.p_vaddr < p.p_filesz)?;
    (addr - load.p_vaddr).checked_add(load.p_offset)
}

/// Reads a file in pieces: its head once (which holds the headers and, in
/// most libraries, the dynamic strings), anything else on demand. A 500 MB
/// library costs a few reads, and memory does not grow with its size.
struct Source<'f> {
    file: &'f File,
    len: u64,
    head: Vec<u8>,
}

const HEAD: u64 = 4 * 1024;
/// 1 MiB of dynamic section holds at most 64 Ki entries.
const MAX_NEEDED: usize = 1 << 16;

/// Parses an ELF image held in memory (the fuzz tests' entry point).
#[cfg(test)]
pub fn parse_bytes(bytes: &[u8]) -> io::Result<Option<ElfHeader>> {
    let dir = std::env::temp_dir().join(format!("culaunch-elf-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), ""));
    std::fs::write(&path, bytes)?;
    read_header(&path)
}

impl<'f> Source<'f> {
    fn new(file: &'f File, len: u64) -> io::Result<Source<'f>> {
        let head = read_exact_at(file, len.min(HEAD) as usize, 0)?;
        Ok(Source { file, len, head })
    }

    /// `len` bytes at `offset`, or an error if the file is shorter.
    fn at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        let end = offset.checked_add(len as u64).filter(|&e| e <= self.len).ok_or_else(|| corrupt("truncated"))?;
        if end <= self.head.len() as u64 {
            return Ok(Cow::Borrowed(&self.head[offset as usize..end as usize]));
        }
        Ok(Cow::Owned(read_exact_at(self.file, len, offset)?))
    }

    /// A NUL-terminated string at `offset`.
    fn string(&self, offset: u64) -> io::Result<Vec<u8>> {
        // The loader sets no limit; Spack and Nix write RPATHs of many
        // kilobytes. This bound only stops a corrupt file from making us read
        // all of it.
        const MAX: u64 = 1 << 20;
        let mut out = Vec::new();
        let mut at = offset;
        while at < self.len && at - offset < MAX {
            let piece = self.at(at, (self.len - at).min(if at == offset { 256 } else { 16384 }) as usize)?;
            if let Some(end) = piece.iter().position(|&b| b == 0) {
                out.extend_from_slice(&piece[..end]);
                return Ok(out);
            }
            out.extend_from_slice(&piece);
            at += piece.len() as u64;
        }
        Err(corrupt("a dynamic string is not terminated"))
    }
}

/// `len` bytes of `file` at `offset`, or an error if it has fewer. The
/// buffer is not zeroed first: `deps` reads a 16 KiB head of every
/// candidate, and clearing them cost more than reading them.
fn read_exact_at(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::io::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset.checked_add(buf.len() as u64).and_then(|a| libc::off_t::try_from(a).ok());
        let at = at.ok_or_else(|| corrupt("offset out of range"))?;
        // SAFETY: pread writes at most `len - buf.len()` bytes into the
        // vector's spare capacity, which is that large.
        let n = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().add(buf.len()).cast(), len - buf.len(), at) };
        match n {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // SAFETY: pread initialised the `n` bytes after the old length.
            n => unsafe { buf.set_len(buf.len() + n as usize) },
        }
    }
    Ok(buf)
}

/// One dynamic entry: (d_tag, d_val), in the file's class and byte order.
fn decode_dyn(chunk: &[u8], ctx: Ctx) -> (u64, u64) {
    let little = ctx.le.is_little();
    let word = |b: &[u8]| -> u64 {
        let mut buf = [0u8; 8];
        if little {
            buf[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(buf)
        } else {
            buf[8 - b.len()..].copy_from_slice(b);
            u64::from_be_bytes(buf)
        }
    };
    let half = chunk.len() / 2;
    (word(&chunk[..half]), word(&chunk[half..]))
}

fn corrupt(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt ELF file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_system_program_is_traceable() {
        let h = read_header(Path::new("/bin/sh")).unwrap().unwrap();
        assert!(h.dynamic);
        assert!(h.matches_this_build());
    }

    #[test]
    fn reads_the_soname_of_a_system_library() {
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib/libc.so.6"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        let h = read_header(Path::new(libc)).unwrap().unwrap();
        assert!(h.shared);
        assert_eq!(h.soname.as_deref(), Some(&b"libc.so.6"[..]));
        assert_eq!(read_header(Path::new("/bin/sh")).unwrap().unwrap().soname, None);
        assert!(h.dynamic_info.needed.iter().any(|n| n.starts_with(b"ld-linux")));
    }

    #[test]
    fn scripts_are_not_elf_and_garbage_is_an_error() {
        let dir = std::env::temp_dir().join(format!("culaunch-elf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(read_header(&script).unwrap(), None);
        let bad = dir.join("bad");
        std::fs::write(&bad, b"\x7fELF\x02\x01\x01").unwrap();
        assert!(read_header(&bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
