//! Whether the loader finished relocating an object, asked of the kernel.
//!
//! glibc write-protects an object's PT_GNU_RELRO at the very end of
//! `_dl_relocate_object` (`_dl_protect_relro`, on every release culaunch
//! supports), and the objects of a `dlopen` are relocated dependencies
//! first, the object asked for last. A teardown leaves the protection as it
//! was. So when the first object of a batch is unmapped right after the
//! batch became consistent, its RELRO tells what the loader's notifications
//! cannot: still writable, relocation failed (an undefined symbol under
//! `RTLD_NOW` or `-z now`); read-only, relocation finished, and the
//! teardown is a `dlopen` the program closed at once or a failure after
//! relocation (out of memory), which only `dlerror`'s text tells apart.
//!
//! Runs only for such a teardown outside the program's `dlclose`: it reads
//! the object's program headers where the loader mapped them, not from its
//! file, which may since have been replaced (`memory::read_own`, which
//! reports an unreadable address instead of faulting), and /proc/self/maps
//! up to the page asked about. No allocation: everything lives in fixed
//! buffers on the stack.

use crate::memory;

const PT_DYNAMIC: u32 = 2;
const PT_GNU_RELRO: u32 = 0x6474_e552;
/// Program headers read; more than any real object has.
const MAX_PHDRS: usize = 64;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PHDRS_AT_ONCE: usize = 8;

/// `Some(true)`: the object at `l_addr` whose dynamic section is at `l_ld`
/// was fully relocated; `Some(false)`: it was not; `None`: this cannot
/// tell (no RELRO, one smaller than a page, headers not where a shared
/// object has them, memory or /proc unreadable).
pub fn relocation_finished(l_addr: usize, l_ld: usize) -> Option<bool> {
    let (vaddr, memsz) = relro_in_memory(l_addr, l_ld)?;
    let (start, _end) = protected_range(l_addr, vaddr, memsz, page_size())?;
    writable_at(start).map(|w| !w)
}

fn page_size() -> usize {
    // SAFETY: getauxval reads the auxiliary vector; 0 when absent.
    match unsafe { libc::getauxval(libc::AT_PAGESZ) } {
        0 => 4096,
        n => n as usize,
    }
}

/// The pages `_dl_protect_relro` makes read-only: from the page holding
/// the RELRO's start to the page holding its end, exclusive (glibc rounds
/// both down); `None` when that is empty, as glibc then protects nothing.
fn protected_range(l_addr: usize, vaddr: u64, memsz: u64, page: usize) -> Option<(usize, usize)> {
    let start = l_addr.wrapping_add(vaddr as usize);
    let end = start.checked_add(memsz as usize)?;
    let down = |a: usize| a & !(page - 1);
    (down(start) < down(end)).then(|| (down(start), down(end)))
}

/// (p_vaddr, p_memsz) of the PT_GNU_RELRO the loader used (the last one,
/// as `_dl_map_object_from_fd` keeps it) of the object mapped with bias
/// `l_addr`. A shared object's first PT_LOAD, at file offset 0, maps the
/// ELF header: at `l_addr` when its address is 0, else at the start of the
/// file's first mapping (/proc/self/maps). Headers count only if their
/// PT_DYNAMIC is the object's `l_ld`.
fn relro_in_memory(l_addr: usize, l_ld: usize) -> Option<(u64, u64)> {
    headers_at(l_addr, l_addr, l_ld).or_else(|| headers_at(first_mapping_of_file_at(l_ld)?, l_addr, l_ld)).flatten()
}

fn headers_at(base: usize, l_addr: usize, l_ld: usize) -> Option<Option<(u64, u64)>> {
    let (mut dynamic, mut relro) = (None, None);
    each_phdr_at(base, |p| {
        match u32_at(p, 0) {
            Some(PT_DYNAMIC) => dynamic = u64_at(p, 16),
            Some(PT_GNU_RELRO) => relro = Some((u64_at(p, 16)?, u64_at(p, 40)?)),
            _ => {}
        }
        Some(())
    })?;
    // The object's own headers: with or without a RELRO, the answer is here.
    (l_addr.wrapping_add(usize::try_from(dynamic?).ok()?) == l_ld).then_some(relro)
}

/// Whether the mapping `lo..hi` is the loader's first mapping of an object
/// it is loading: one that spans exactly the object's PT_LOAD segments,
/// page-rounded (`_dl_map_segments` maps the whole span from the first
/// segment, then the others over it). Read through the kernel: a mapping
/// past its file's end answers an error, not SIGBUS.
pub fn is_loader_reservation(lo: usize, hi: usize) -> bool {
    span_of_object_at(lo) == Some(hi.wrapping_sub(lo))
}

/// Whether the mapping `lo..hi`, from its file's start, is the loader's
/// mapping of the object's first PT_LOAD segment: exactly its page-rounded
/// extent (NVIDIA's libraries start with their text; a program's own
/// mapping of the file has its own length).
pub fn is_first_segment(lo: usize, hi: usize) -> bool {
    let Some((vaddr, filesz, memsz)) = first_load_at(lo) else { return false };
    let page = page_size() as u64;
    let extent =
        |size: u64| (vaddr.checked_add(size)?.checked_add(page - 1)? / page * page).checked_sub(vaddr / page * page);
    let len = hi.wrapping_sub(lo) as u64;
    extent(filesz) == Some(len) || extent(memsz) == Some(len)
}

/// (p_vaddr, p_filesz, p_memsz) of the first PT_LOAD of the object whose
/// headers are at `base`.
fn first_load_at(base: usize) -> Option<(u64, u64, u64)> {
    let mut found = None;
    each_phdr_at(base, |p| {
        if found.is_none() && u32_at(p, 0) == Some(1) {
            found = Some((u64_at(p, 16)?, u64_at(p, 32)?, u64_at(p, 40)?));
        }
        Some(())
    })?;
    found
}

/// Hands each program header of the object at `base` to `each` (read
/// through the kernel); `None` when they cannot be read.
fn each_phdr_at(base: usize, mut each: impl FnMut(&[u8]) -> Option<()>) -> Option<()> {
    let mut ehdr = [0u8; EHDR_SIZE];
    if !memory::read_own(base, &mut ehdr) {
        return None;
    }
    let (phoff, n) = program_headers(&ehdr)?;
    let at = base.checked_add(usize::try_from(phoff).ok()?)?;
    let mut chunk = [0u8; PHDRS_AT_ONCE * PHDR_SIZE];
    for first in (0..n).step_by(PHDRS_AT_ONCE) {
        let len = (n - first).min(PHDRS_AT_ONCE) * PHDR_SIZE;
        if !memory::read_own(at.checked_add(first * PHDR_SIZE)?, &mut chunk[..len]) {
            return None;
        }
        for p in chunk[..len].chunks_exact(PHDR_SIZE) {
            each(p)?;
        }
    }
    Some(())
}

fn span_of_object_at(base: usize) -> Option<usize> {
    const PT_LOAD: u32 = 1;
    let (mut start, mut end) = (u64::MAX, 0u64);
    each_phdr_at(base, |p| {
        if u32_at(p, 0) == Some(PT_LOAD) {
            let (vaddr, memsz) = (u64_at(p, 16)?, u64_at(p, 40)?);
            start = start.min(vaddr);
            end = end.max(vaddr.checked_add(memsz)?);
        }
        Some(())
    })?;
    let page = page_size() as u64;
    let span = end.checked_add(page - 1)? / page * page - start / page * page;
    (start < end).then_some(usize::try_from(span).ok()?)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// (e_phoff, e_phnum) of a 64-bit little-endian ELF header, the only kind
/// this module runs among.
fn program_headers(ehdr: &[u8; EHDR_SIZE]) -> Option<(u64, usize)> {
    if ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(ehdr, 32)?, u16_at(ehdr, 54)?, u16_at(ehdr, 56)?);
    let phnum = usize::from(phnum);
    (usize::from(phentsize) == PHDR_SIZE && (1..=MAX_PHDRS).contains(&phnum)).then_some((phoff, phnum))
}

/// Whether the page at `addr` is mapped writable, from /proc/self/maps.
fn writable_at(addr: usize) -> Option<bool> {
    scan_maps(|l| {
        if l.lo <= addr && addr < l.hi {
            Some(Some(l.writable))
        } else {
            // Lines are in address order: past it, it is not mapped.
            (l.lo > addr).then_some(None)
        }
    })
    .flatten()
}

/// Whether the file with inode `inode` is mapped at `addr`, from
/// /proc/self/maps.
pub fn file_mapped_at(addr: usize, inode: u64) -> bool {
    scan_maps(|l| if l.lo <= addr && addr < l.hi { Some(l.inode == inode) } else { (l.lo > addr).then_some(false) })
        .unwrap_or(false)
}

/// The start of the first mapping of the file mapped at `addr`: the last
/// mapping at file offset 0 below it, if it is of the same file.
fn first_mapping_of_file_at(addr: usize) -> Option<usize> {
    let mut first: Option<Line> = None;
    scan_maps(|l| {
        if l.offset == 0 {
            first = Some(*l);
        }
        if l.lo <= addr && addr < l.hi {
            let same = first.is_some_and(|f| l.inode != 0 && (f.dev, f.inode) == (l.dev, l.inode));
            return Some(first.filter(|f| same && f.readable).map(|f| f.lo));
        }
        (l.lo > addr).then_some(None)
    })
    .flatten()
}

/// One line of /proc/PID/maps: `lo-hi perms offset major:minor inode path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Line {
    lo: usize,
    hi: usize,
    readable: bool,
    writable: bool,
    executable: bool,
    offset: u64,
    dev: (u32, u32),
    inode: u64,
}

fn parse_line(head: &[u8]) -> Option<Line> {
    let mut f = head.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (range, perms, offset, dev, inode) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let hex = |s: &[u8]| core::str::from_utf8(s).ok().and_then(|s| u64::from_str_radix(s, 16).ok());
    let decimal = |s: &[u8]| core::str::from_utf8(s).ok().and_then(|s| s.parse::<u64>().ok());
    let (lo, hi) = range.split_at(range.iter().position(|&b| b == b'-')?);
    let (major, minor) = dev.split_at(dev.iter().position(|&b| b == b':')?);
    Some(Line {
        lo: usize::try_from(hex(lo)?).ok()?,
        hi: usize::try_from(hex(&hi[1..])?).ok()?,
        readable: *perms.first()? == b'r',
        writable: *perms.get(1)? == b'w',
        executable: *perms.get(2)? == b'x',
        offset: hex(offset)?,
        dev: (u32::try_from(hex(major)?).ok()?, u32::try_from(hex(&minor[1..])?).ok()?),
        inode: decimal(inode)?,
    })
}

/// The path field of a maps line: what follows the inode, spaces skipped.
fn path_of(line: &[u8]) -> &[u8] {
    let mut rest = line;
    for _ in 0..5 {
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        rest = &rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    &rest[start..]
}

/// Splits what /proc/PID/maps gives, in chunks of any size, into lines,
/// keeping of each only its first `N` bytes (128: the fields before the
/// path).
struct Lines<const N: usize = 128> {
    head: [u8; N],
    len: usize,
}

impl<const N: usize> Lines<N> {
    const fn new() -> Lines<N> {
        Lines { head: [0; N], len: 0 }
    }

    /// Hands each line this chunk completes to `each`, until it answers.
    fn feed<T>(&mut self, chunk: &[u8], each: &mut impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
        for &b in chunk {
            if b != b'\n' {
                if self.len < self.head.len() {
                    self.head[self.len] = b;
                    self.len += 1;
                }
                continue;
            }
            let len = core::mem::replace(&mut self.len, 0);
            if let Some(answer) = each(&self.head[..len]) {
                return Some(answer);
            }
        }
        None
    }
}

/// Reads /proc/self/maps line by line until `each` answers.
fn scan_maps<T>(mut each: impl FnMut(&Line) -> Option<T>) -> Option<T> {
    read_maps::<128, T>(|head| parse_line(head).and_then(|l| each(&l)))
}

/// A mapping of a file, as /proc/self/maps lists it.
pub struct FileMapping<'a> {
    pub lo: usize,
    pub hi: usize,
    pub readable: bool,
    pub offset: u64,
    pub executable: bool,
    /// `st_dev` as stat(2) gives it.
    pub dev: u64,
    pub inode: u64,
    /// As the kernel names it (a replaced file ends in " (deleted)").
    pub path: &'a [u8],
}

/// Each mapping of a file in /proc/self/maps, in address order. Nothing
/// mapped is read: a mapping past its file's end would raise SIGBUS.
pub fn each_file_mapping(mut each: impl FnMut(&FileMapping<'_>)) {
    const LINE: usize = crate::paths::PATH_MAX + 128;
    read_maps::<LINE, ()>(|line| {
        let l = parse_line(line)?;
        if l.inode != 0 {
            let dev = libc::makedev(l.dev.0, l.dev.1);
            each(&FileMapping {
                lo: l.lo,
                hi: l.hi,
                readable: l.readable,
                offset: l.offset,
                executable: l.executable,
                dev,
                inode: l.inode,
                path: path_of(line),
            });
        }
        None
    });
}

fn read_maps<const N: usize, T>(mut on_line: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    // SAFETY: NUL-terminated path.
    let fd = unsafe { crate::sys::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let mut lines = Lines::<N>::new();
    let mut buf = [0u8; 1024];
    let answer = loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { crate::sys::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break None;
        }
        if let Some(a) = lines.feed(&buf[..n as usize], &mut on_line) {
            break Some(a);
        }
    };
    // SAFETY: closing what we opened.
    unsafe { crate::sys::close(fd) };
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &[u8] = b"55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 123 /usr/bin/prog\n\
55d0c0a02000-55d0c0a04000 rw-p 00002000 08:01 123 /usr/bin/prog\n\
7f0000000000-7f0000001000 r--p 00000000 08:01 9 /a/very/long/path/that/goes/on/and/on/past/the/kept/head/libx.so\n\
7f0000001000-7f0000003000 rw-p 00001000 08:01 9 /a/very/long/path/that/goes/on/and/on/past/the/kept/head/libx.so\n\
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n";

    /// This test binary's own first mapping is the loader's span of it.
    #[test]
    fn an_objects_first_mapping_spans_exactly_its_segments() {
        let mut first = None;
        each_file_mapping(|m| {
            if first.is_none() && m.offset == 0 {
                first = Some((m.lo, m.hi));
            }
        });
        let Some((lo, hi)) = first else { panic!("no file mapping") };
        assert_eq!(span_of_object_at(lo).map(|s| s >= hi - lo), Some(true));
        assert!(!is_loader_reservation(lo, lo + 4096) || hi - lo == 4096);
        assert!(!is_loader_reservation(8, 4096), "nothing mapped there: an answer, not a fault");
    }

    #[test]
    fn the_path_is_everything_after_the_inode() {
        let lines: Vec<&[u8]> = MAPS.split(|&b| b == b'\n').collect();
        assert_eq!(path_of(lines[0]), b"/usr/bin/prog");
        assert_eq!(path_of(b"7f00-7f01 r--p 00000000 08:01 9    /a b/libx.so (deleted)"), b"/a b/libx.so (deleted)");
        assert_eq!(path_of(b"7f00-7f01 rw-p 00000000 00:00 0"), b"");
    }

    /// `writable_at`'s question, asked of `MAPS` fed in chunks of `size`.
    fn scan_in_chunks(addr: usize, size: usize) -> Option<bool> {
        let mut lines = Lines::<128>::new();
        let mut each = |head: &[u8]| {
            let l = parse_line(head)?;
            if l.lo <= addr && addr < l.hi {
                Some(Some(l.writable))
            } else {
                (l.lo > addr).then_some(None)
            }
        };
        MAPS.chunks(size).find_map(|c| lines.feed(c, &mut each)).flatten()
    }

    #[test]
    fn the_line_holding_an_address_says_whether_it_is_writable_at_any_chunk_size() {
        for size in 1..=MAPS.len() {
            assert_eq!(scan_in_chunks(0x55d0_c0a0_1fff, size), Some(false), "chunk {size}");
            assert_eq!(scan_in_chunks(0x55d0_c0a0_2000, size), Some(true), "chunk {size}");
            assert_eq!(scan_in_chunks(0x7f00_0000_0000, size), Some(false), "chunk {size}");
            assert_eq!(scan_in_chunks(0x7f00_0000_2fff, size), Some(true), "chunk {size}");
            // Between mappings, and past the last one: not mapped.
            assert_eq!(scan_in_chunks(0x6000_0000_0000, size), None, "chunk {size}");
            assert_eq!(scan_in_chunks(0x7fff_0000_0000, size), None, "chunk {size}");
        }
    }

    #[test]
    fn a_line_gives_its_fields_and_garbage_none() {
        let l = parse_line(b"7f0000001000-7f0000003000 rw-p 00001000 fd:01 1234567");
        let want = Line {
            lo: 0x7f00_0000_1000,
            hi: 0x7f00_0000_3000,
            readable: true,
            writable: true,
            executable: false,
            offset: 0x1000,
            dev: (0xfd, 1),
            inode: 1_234_567,
        };
        assert_eq!(l, Some(want));
        for bad in [&b""[..], b"-", b"zz-yy rw-p 0 0:0 0", b"1000-3000 rw-p 0 0 0", b"1000-3000 rw-p 0 0:0"] {
            assert_eq!(parse_line(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn the_protected_range_is_glibcs_rounding() {
        // Ends on a page boundary, as linkers lay RELRO out.
        assert_eq!(protected_range(0x7f00_0000_0000, 0x2d10, 0x2f0, 4096), Some((0x7f00_0000_2000, 0x7f00_0000_3000)));
        // Shorter than the page it starts in: glibc protects nothing.
        assert_eq!(protected_range(0x7f00_0000_0000, 0x2d10, 0x100, 4096), None);
        assert_eq!(protected_range(usize::MAX - 10, 0, 100, 4096), None);
    }

    /// An ELF header and `n` program headers in memory, with PT_DYNAMIC
    /// at `dynamic` and PT_GNU_RELROs where `relro` says.
    fn image(n: u64, dynamic: u64, relro: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut elf = vec![0u8; EHDR_SIZE];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        elf[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        elf[56..58].copy_from_slice(&(n as u16).to_le_bytes());
        for i in 0..n {
            let mut ph = [0u8; PHDR_SIZE];
            let (kind, vaddr, memsz) = match relro.iter().find(|r| r.0 == i) {
                Some(&(_, v, m)) => (PT_GNU_RELRO, v, m),
                None if i == 2 => (PT_DYNAMIC, dynamic, 0x100),
                None => (1, 0x1000 * i, 0x10),
            };
            ph[..4].copy_from_slice(&kind.to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            elf.extend_from_slice(&ph);
        }
        elf
    }

    #[test]
    fn the_last_relro_counts_past_the_first_headers_and_only_with_the_objects_dynamic() {
        let elf = image(20, 0x3e00, &[(5, 0x1000, 0x10), (13, 0xd000, 0xd0)]);
        let base = elf.as_ptr() as usize;
        assert_eq!(relro_in_memory(base, base + 0x3e00), Some((0xd000, 0xd0)));
        // Headers that are another object's: their PT_DYNAMIC is elsewhere.
        assert_eq!(relro_in_memory(base, base + 0x4000), None);
        // No RELRO at all.
        let bare = image(4, 0x3e00, &[]);
        assert_eq!(relro_in_memory(bare.as_ptr() as usize, bare.as_ptr() as usize + 0x3e00), None);
        // A header that is not 64-bit little-endian, or claims odd sizes.
        for (at, byte) in [(4, 1u8), (5, 2), (54, 55), (56, 0)] {
            let mut bad = elf.clone();
            bad[at] = byte;
            let b = bad.as_ptr() as usize;
            assert_eq!(relro_in_memory(b, b + 0x3e00), None, "byte {at} = {byte}");
        }
        // Nothing mapped there: an answer, not a fault.
        assert_eq!(relro_in_memory(8, 0x3e08), None);
    }

    #[test]
    fn the_kernel_answers_for_pages_made_read_only() {
        let page = page_size();
        // SAFETY: a fresh anonymous mapping of one page, ours alone.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(writable_at(p as usize), Some(true));
        // SAFETY: the page mapped above.
        assert_eq!(unsafe { libc::mprotect(p, page, libc::PROT_READ) }, 0);
        assert_eq!(writable_at(p as usize + page - 1), Some(false));
        // SAFETY: as above.
        unsafe { libc::munmap(p, page) };
        assert_eq!(writable_at(p as usize), None);
    }

    /// An object whose first PT_LOAD is not at address 0: its headers are
    /// at the start of the file's first mapping, not at `l_addr`.
    #[test]
    fn headers_not_at_l_addr_are_found_at_the_files_first_mapping() {
        let page = page_size();
        let mut file = image(4, 0x20_1010, &[(3, 0x20_1000, page as u64)]);
        file.resize(2 * page, 0);
        let dir = std::env::temp_dir();
        let (path, other) =
            (dir.join(format!("culaunch-relro-{}", std::process::id())), dir.join("culaunch-relro-other"));
        std::fs::write(&path, &file).unwrap_or_default();
        std::fs::write(&other, &file).unwrap_or_default();
        let map = |f: &std::path::Path, at: usize, offset: usize, flags: libc::c_int| {
            let fd = std::fs::File::open(f).map(std::os::fd::IntoRawFd::into_raw_fd).unwrap_or(-1);
            // SAFETY: a private read-only mapping of our own file, at a
            // place this test reserved (or anywhere).
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | flags,
                    fd,
                    offset as libc::off_t,
                )
            };
            // SAFETY: the descriptor opened above.
            unsafe { crate::sys::close(fd) };
            p as usize
        };
        // Two pages reserved, then the file's two pages mapped as glibc
        // maps segments: page 0 at offset 0, page 1 at offset `page`.
        let base = map(&path, 0, 0, 0);
        let _ = map(&path, base, 0, libc::MAP_FIXED);
        assert_eq!(map(&path, base + page, page, libc::MAP_FIXED), base + page);
        let l_addr = base - 0x20_0000;
        assert_eq!(relro_in_memory(l_addr, base + 0x1010), Some((0x20_1000, page as u64)));
        // The page holding `l_ld` from another file: not this object's.
        assert_eq!(map(&other, base + page, page, libc::MAP_FIXED), base + page);
        assert_eq!(relro_in_memory(l_addr, base + 0x1010), None);
        // SAFETY: the pages mapped above.
        unsafe { libc::munmap(base as *mut libc::c_void, 2 * page) };
        let _ = (std::fs::remove_file(&path), std::fs::remove_file(&other));
    }

    /// The RELRO read from memory is the one the loader used for this test
    /// program's own libc (the oracle is `dl_iterate_phdr`), and the
    /// loader protected it.
    #[test]
    fn the_relro_read_from_memory_is_the_loaders() {
        #[derive(Default)]
        struct Found {
            addr: usize,
            dynamic: Option<usize>,
            relro: Option<(u64, u64)>,
        }
        unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut libc::c_void) -> libc::c_int {
            // SAFETY: the loader hands a valid info; `data` is our `Found`.
            let (info, found) = unsafe { (&*info, &mut *(data as *mut Found)) };
            // SAFETY: dlpi_name is a NUL-terminated string.
            let name = unsafe { core::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes();
            if !name.windows(7).any(|w| w == b"libc.so") {
                return 0;
            }
            // SAFETY: dlpi_phdr points at dlpi_phnum headers.
            let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
            found.addr = info.dlpi_addr as usize;
            found.relro = phdrs.iter().filter(|p| p.p_type == PT_GNU_RELRO).map(|p| (p.p_vaddr, p.p_memsz)).next_back();
            found.dynamic = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC).map(|p| found.addr + p.p_vaddr as usize);
            1
        }
        let mut found = Found::default();
        // SAFETY: `each` only writes into `found`.
        unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut Found).cast()) };
        let l_ld = found.dynamic.unwrap_or_default();
        assert!(found.relro.is_some() && l_ld != 0, "this test's libc has a RELRO and a dynamic section");
        assert_eq!(relro_in_memory(found.addr, l_ld), found.relro);
        // Relocated long ago, and protected.
        assert_eq!(relocation_finished(found.addr, l_ld), Some(true));
    }
}
