//! What this machine's loader does that culaunch must not guess: its default
//! directories, the subdirectories it tries in each search directory
//! (glibc-hwcaps, legacy hwcaps), and what `$LIB` and `$PLATFORM` expand to.
//! Asked of the loader itself, once per run; fixed defaults only if asking
//! fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::object::Want;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The loader's default directories ("system search path"), in order.
    pub system_dirs: Vec<Vec<u8>>,
    /// Subdirectories tried in every search directory, best first, ending
    /// with "" (the directory itself). Each non-empty one ends with '/'.
    pub subdirs: Vec<Vec<u8>>,
    /// glibc-hwcaps subdirectory names this CPU supports, best first.
    pub hwcaps: Vec<Vec<u8>>,
    pub lib: Vec<u8>,
    pub platform: Vec<u8>,
    /// The glibc version the rules were decided from (`None`: this
    /// machine's loader was asked).
    pub glibc: Option<(u32, u32)>,
}

/// The first line of a loader-answers cache file (see [`Platform::encode`]).
const CACHE_TAG: &[u8] = b"culaunch loader answers 1\n";
const PROBE_LIB: &str = "/culaunch-probe-lib";
const DEFAULT_INTERP: &str = "/lib64/ld-linux-x86-64.so.2";
const PROBE_PLATFORM: &str = "/culaunch-probe-platform";

impl Platform {
    /// The answers of this machine's loader: the one culaunch itself runs
    /// under. Never the interpreter a file under inspection names, which
    /// would run a program of that file's choosing.
    pub fn of_this_machine() -> Platform {
        let interp = own_interpreter().unwrap_or_else(|| PathBuf::from(DEFAULT_INTERP));
        Platform::for_interpreter(&interp)
    }

    /// The loader's answers, from a cache keyed by everything they depend on
    /// (the loader file, and the CPU's hwcap words and platform as the kernel
    /// hands them to the loader); asked afresh when that key changes.
    pub fn for_interpreter(interpreter: &Path) -> Platform {
        let Some(file) = cache_file(interpreter) else { return Platform::ask(interpreter) };
        if let Some(p) = std::fs::read(&file).ok().and_then(|b| Platform::decode(&b)) {
            return p;
        }
        let p = Platform::ask(interpreter);
        if let Some(dir) = file.parent() {
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            let written = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&tmp, p.encode()))
                .and_then(|()| std::fs::rename(&tmp, &file));
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        p
    }

    /// Asks `interpreter` (the program's PT_INTERP) with `--help` and with a
    /// traced `--list` of a probe.
    pub fn ask(interpreter: &Path) -> Platform {
        let mut p = Platform::fallback();
        if let Ok(out) = Command::new(interpreter).arg("--help").output() {
            let help = String::from_utf8_lossy(&out.stdout);
            let dirs = parse_system_dirs(&help);
            if !dirs.is_empty() {
                p.system_dirs = dirs;
            }
            p.hwcaps = parse_hwcaps(&help);
        }
        // Any program with a DT_NEEDED makes the loader print its search path.
        let program = ["/bin/true", "/bin/sh", "/usr/bin/env"].into_iter().find(|p| Path::new(p).exists());
        let probe = Command::new(interpreter)
            .arg("--list")
            .arg(program.unwrap_or("/bin/sh"))
            .env("LD_DEBUG", "libs")
            .env("LD_LIBRARY_PATH", format!("{PROBE_LIB}/$LIB:{PROBE_PLATFORM}/$PLATFORM"))
            .output();
        if let Ok(out) = probe {
            if let Some((subdirs, lib, platform)) = parse_probe(&String::from_utf8_lossy(&out.stderr)) {
                (p.subdirs, p.lib, p.platform) = (subdirs, lib, platform);
            }
        }
        p
    }

    /// The cache file's bytes: a tag line, then each field as items of
    /// `LEN:BYTES\n`, each list led by its count. Paths stay bytes; reading
    /// it back costs a tenth of what JSON arrays of numbers did, a sizeable
    /// part of a `culaunch deps` of a small library.
    fn encode(&self) -> Vec<u8> {
        let mut out = CACHE_TAG.to_vec();
        let item = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(format!("{}:", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.push(b'\n');
        };
        for list in [&self.system_dirs, &self.subdirs, &self.hwcaps] {
            item(&mut out, list.len().to_string().as_bytes());
            for b in list {
                item(&mut out, b);
            }
        }
        item(&mut out, &self.lib);
        item(&mut out, &self.platform);
        let glibc = self.glibc.map(|(a, b)| format!("{a}.{b}")).unwrap_or_default();
        item(&mut out, glibc.as_bytes());
        out
    }

    /// The inverse of [`Platform::encode`]; `None` for anything else (an
    /// older cache, a torn write), which is then asked afresh.
    fn decode(bytes: &[u8]) -> Option<Platform> {
        let mut rest = bytes.strip_prefix(CACHE_TAG)?;
        let mut item = || -> Option<Vec<u8>> {
            let colon = rest.iter().position(|&c| c == b':')?;
            let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
            let body = rest.get(colon + 1..colon + 1 + len)?.to_vec();
            rest = rest.get(colon + 1 + len..)?.strip_prefix(b"\n")?;
            Some(body)
        };
        let mut lists = Vec::with_capacity(3);
        for _ in 0..3 {
            let n: usize = String::from_utf8(item()?).ok()?.parse().ok()?;
            lists.push((0..n).map(|_| item()).collect::<Option<Vec<_>>>()?);
        }
        let (lib, platform, glibc) = (item()?, item()?, item()?);
        let glibc = match std::str::from_utf8(&glibc).ok()? {
            "" => None,
            v => {
                let (a, b) = v.split_once('.')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            }
        };
        if !rest.is_empty() {
            return None;
        }
        let hwcaps = lists.pop()?;
        let subdirs = lists.pop()?;
        let system_dirs = lists.pop()?;
        Some(Platform { system_dirs, subdirs, hwcaps, lib, platform, glibc })
    }

    fn fallback() -> Platform {
        Platform {
            system_dirs: [
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib",
            ]
            .iter()
            .filter(|d| Path::new(d).is_dir())
            .map(|d| d.as_bytes().to_vec())
            .collect(),
            subdirs: vec![Vec::new()],
            hwcaps: Vec::new(),
            lib: b"lib64".to_vec(),
            platform: std::env::consts::ARCH.as_bytes().to_vec(),
            glibc: None,
        }
    }
}

/// What the loader of a glibc of this version does, decided from rules
/// (elf/dl-hwcaps.c, elf/dl-load.c), never by running it: for a program of
/// another class on this machine, and for an image or sysroot.
impl Platform {
    pub fn from_rules(root: &Path, want: Want) -> Platform {
        use super::machine::*;
        let root_b = root.as_os_str().as_bytes();
        let (triplet, biarch, platform_name) = match (want.machine, want.is_64) {
            (EM_X86_64, true) => ("x86_64-linux-gnu", "lib64", "x86_64"),
            (EM_X86_64, false) => ("x86_64-linux-gnux32", "libx32", "x86_64"),
            (EM_386, _) => ("i386-linux-gnu", "lib32", "i686"),
            (EM_AARCH64, _) => ("aarch64-linux-gnu", "lib64", "aarch64"),
            (EM_PPC64, _) => ("powerpc64le-linux-gnu", "lib64", "powerpc64le"),
            (EM_S390, _) => ("s390x-linux-gnu", "lib64", "s390x"),
            (EM_ARM, _) => ("arm-linux-gnueabihf", "lib", "v7l"),
            (EM_RISCV, _) => ("riscv64-linux-gnu", "lib64", "riscv64"),
            _ => ("", "lib64", ""),
        };
        // Where this class's libc lives says how the distribution builds
        // glibc: Debian's multiarch (/lib/<triplet>), a biarch directory
        // (/lib32, /lib64), or plain /lib.
        let multiarch = format!("lib/{triplet}");
        let libc_in = |dir: &str| -> Option<Vec<u8>> {
            let p = super::root::resolve(root_b, format!("/{dir}/libc.so.6").as_bytes());
            match super::object::open_verify(Path::new(OsStr::from_bytes(&p)), want) {
                super::object::Verdict::Take(_) => Some(p),
                _ => None,
            }
        };
        let (lib, system_dirs, libc): (String, Vec<String>, Option<Vec<u8>>) =
            if let Some(l) = (!triplet.is_empty()).then(|| libc_in(&multiarch)).flatten() {
                (
                    multiarch.clone(),
                    vec![format!("/{multiarch}"), format!("/usr/{multiarch}"), "/lib".into(), "/usr/lib".into()],
                    Some(l),
                )
            } else if let Some(l) = libc_in(biarch).or_else(|| libc_in(&format!("usr/{biarch}"))) {
                let dirs = if biarch == "lib64" {
                    vec!["/lib64".into(), "/usr/lib64".into()]
                } else {
                    vec![format!("/{biarch}"), format!("/usr/{biarch}"), "/lib".into(), "/usr/lib".into()]
                };
                (biarch.to_owned(), dirs, Some(l))
            } else {
                ("lib".to_owned(), vec!["/lib".into(), "/usr/lib".into()], libc_in("lib"))
            };
        let glibc = libc.as_deref().and_then(|l| super::symbols::glibc_version(Path::new(OsStr::from_bytes(l))));
        Platform::for_glibc(glibc.unwrap_or(GLIBC_ASSUMED), want, lib, system_dirs, platform_name)
    }

    /// The rules of glibc `version` for `want` on this CPU (when it is this
    /// machine's kind; another machine's CPU is not known, so none of its
    /// optional subdirectories are assumed).
    fn for_glibc(
        version: (u32, u32),
        want: Want,
        lib: String,
        system_dirs: Vec<String>,
        platform_name: &str,
    ) -> Platform {
        use super::machine::*;
        let this_cpu = native_x86() && matches!(want.machine, EM_X86_64 | EM_386);
        let mut platform = platform_name.to_owned();
        let mut legacy: Vec<&str> = Vec::new();
        let mut hwcaps: Vec<Vec<u8>> = Vec::new();
        if this_cpu {
            let f = X86::detect();
            if want.machine == EM_X86_64 && want.is_64 {
                // sysdeps/x86/cpu-features.c (2.26 on): "haswell" replaces
                // AT_PLATFORM, and the legacy hwcap bits, highest first.
                if f.haswell {
                    platform = "haswell".into();
                }
                if f.avx512_1 {
                    legacy.push("avx512_1");
                }
                legacy.push("x86_64");
                // sysdeps/x86_64/dl-hwcaps-subdirs.c, 2.33 on.
                if version >= (2, 33) {
                    for (name, ok) in [("x86-64-v4", f.v4), ("x86-64-v3", f.v3), ("x86-64-v2", f.v2)] {
                        if ok {
                            hwcaps.push(name.as_bytes().to_vec());
                        }
                    }
                }
            } else if want.machine == EM_386 && f.sse2 {
                legacy.push("sse2");
            }
        }
        if want.machine == EM_AARCH64 {
            // sysdeps/unix/sysv/linux/aarch64/dl-procinfo.h: the one
            // important hwcap, LSE atomics (ARMv8.1 on: every Neoverse and
            // Grace). This CPU is not asked: it is assumed.
            legacy.push("atomics");
        }
        let mut subdirs: Vec<Vec<u8>> = hwcaps.iter().map(|h| [b"glibc-hwcaps/", &h[..], b"/"].concat()).collect();
        // Legacy subdirectories (tls, AT_PLATFORM, hwcap names) were
        // searched until glibc 2.37 removed them: every subset, "tls" the
        // most significant, in elf/dl-hwcaps.c's order.
        if version < (2, 37) {
            let mut names: Vec<&str> = vec!["tls"];
            if !platform.is_empty() {
                names.push(&platform);
            }
            names.extend(legacy.iter().copied());
            let n = names.len();
            for mask in (1..(1u32 << n)).rev() {
                let parts: Vec<&str> = (0..n).filter(|i| mask & (1 << (n - 1 - i)) != 0).map(|i| names[i]).collect();
                subdirs.push(format!("{}/", parts.join("/")).into_bytes());
            }
        }
        subdirs.push(Vec::new());
        Platform {
            system_dirs: system_dirs.into_iter().map(String::into_bytes).collect(),
            subdirs,
            hwcaps,
            lib: lib.into_bytes(),
            platform: platform.into_bytes(),
            glibc: Some(version),
        }
    }
}

/// The glibc version assumed when a root's cannot be read.
const GLIBC_ASSUMED: (u32, u32) = (2, 36);

fn native_x86() -> bool {
    cfg!(any(target_arch = "x86_64", target_arch = "x86"))
}

/// The x86 CPU features the loader's rules turn on.
#[derive(Default)]
struct X86 {
    haswell: bool,
    avx512_1: bool,
    sse2: bool,
    v2: bool,
    v3: bool,
    v4: bool,
}

impl X86 {
    #[cfg(target_arch = "x86_64")]
    fn detect() -> X86 {
        use std::arch::is_x86_feature_detected as has;
        let v2 =
            has!("cmpxchg16b") && has!("popcnt") && has!("sse3") && has!("sse4.1") && has!("sse4.2") && has!("ssse3");
        let v3 = v2
            && has!("avx")
            && has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("f16c")
            && has!("fma")
            && has!("lzcnt")
            && has!("movbe")
            && has!("xsave");
        let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512cd") && has!("avx512dq") && has!("avx512vl");
        X86 {
            haswell: has!("avx2") && has!("bmi1") && has!("bmi2") && has!("lzcnt") && has!("movbe") && has!("popcnt"),
            avx512_1: avx512,
            sse2: has!("sse2"),
            v2,
            v3,
            v4: v3 && avx512,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> X86 {
        X86::default()
    }
}

/// culaunch's own PT_INTERP, read from its program headers in memory (the
/// kernel names them in the auxiliary vector): no file to open, where
/// reading /proc/self/exe cost five system calls of every `deps`.
fn own_interpreter() -> Option<PathBuf> {
    #[cfg(target_pointer_width = "64")]
    type Phdr = libc::Elf64_Phdr;
    #[cfg(target_pointer_width = "32")]
    type Phdr = libc::Elf32_Phdr;
    // SAFETY: getauxval has no preconditions; 0 means "absent".
    let (phdr, phnum) = unsafe { (libc::getauxval(libc::AT_PHDR), libc::getauxval(libc::AT_PHNUM)) };
    if phdr == 0 || phnum == 0 || phnum > 0xffff {
        return None;
    }
    // SAFETY: the kernel maps the program headers of the running program
    // at AT_PHDR, AT_PHNUM entries of this machine's own class.
    let headers = unsafe { std::slice::from_raw_parts(phdr as *const Phdr, phnum as usize) };
    // PT_PHDR gives the headers' own link-time address: the difference is
    // where the program was loaded (a PIE's base).
    let self_entry = headers.iter().find(|h| h.p_type == libc::PT_PHDR)?;
    let base = (phdr as usize).wrapping_sub(usize::try_from(self_entry.p_vaddr).ok()?);
    let interp = headers.iter().find(|h| h.p_type == libc::PT_INTERP)?;
    let (at, len) = (usize::try_from(interp.p_vaddr).ok()?, usize::try_from(interp.p_filesz).ok()?);
    if len == 0 || len > 4096 {
        return None;
    }
    // SAFETY: PT_INTERP lies in the first loaded segment, mapped for as long
    // as the program runs; the loader itself read it there.
    let bytes = unsafe { std::slice::from_raw_parts(base.wrapping_add(at) as *const u8, len) };
    let path = bytes.split(|&b| b == 0).next().filter(|p| !p.is_empty())?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(path.to_vec())))
}

fn cache_file(interpreter: &Path) -> Option<PathBuf> {
    let m = std::fs::metadata(interpreter).ok()?;
    // SAFETY: getauxval has no preconditions; 0 means "absent".
    let (hwcap, hwcap2, platform) = unsafe {
        (libc::getauxval(libc::AT_HWCAP), libc::getauxval(libc::AT_HWCAP2), libc::getauxval(libc::AT_PLATFORM))
    };
    let platform = if platform == 0 {
        String::new()
    } else {
        // SAFETY: AT_PLATFORM points to a NUL-terminated string the kernel placed on our stack.
        unsafe { std::ffi::CStr::from_ptr(platform as *const libc::c_char) }.to_string_lossy().into_owned()
    };
    let mut key = interpreter.as_os_str().as_bytes().to_vec();
    key.extend_from_slice(
        format!(":{}:{}:{}:{}:{hwcap:x}:{hwcap2:x}:{platform}", m.dev(), m.ino(), m.size(), m.mtime()).as_bytes(),
    );
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Some(crate::dirs::cache_dirs().into_iter().next()?.join(format!("loader-{hash:016x}")))
}

fn parse_system_dirs(help: &str) -> Vec<Vec<u8>> {
    help.lines()
        .filter_map(|l| l.trim().strip_suffix("(system search path)"))
        .map(|d| d.trim().as_bytes().to_vec())
        .collect()
}

fn parse_hwcaps(help: &str) -> Vec<Vec<u8>> {
    help.lines()
        .skip_while(|l| !l.starts_with("Subdirectories of glibc-hwcaps"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.contains("(supported, searched)"))
        .filter_map(|l| l.split_whitespace().next().map(|s| s.as_bytes().to_vec()))
        .collect()
}

/// From the `search path=…(LD_LIBRARY_PATH)` line: the subdirectories the
/// loader expands each directory into, and the values of $LIB and $PLATFORM.
/// (subdirectories, $LIB, $PLATFORM) as the probe showed them.
type Probe = (Vec<Vec<u8>>, Vec<u8>, Vec<u8>);

fn parse_probe(stderr: &str) -> Option<Probe> {
    let line = stderr.lines().find(|l| l.contains("search path=") && l.contains("(LD_LIBRARY_PATH)"))?;
    let list = line.split("search path=").nth(1)?.split_whitespace().next()?;
    let entries: Vec<&str> = list.split(':').collect();
    let base_of = |prefix: &str| -> Option<(String, Vec<&str>)> {
        let mine: Vec<&str> = entries.iter().copied().filter(|e| e.starts_with(prefix)).collect();
        Some((mine.last()?.to_string(), mine))
    };
    let (lib_base, lib_entries) = base_of(&format!("{PROBE_LIB}/"))?;
    let (platform_base, _) = base_of(&format!("{PROBE_PLATFORM}/"))?;
    let mut subdirs: Vec<Vec<u8>> = lib_entries
        .iter()
        .filter_map(|e| e.strip_prefix(&format!("{lib_base}/")))
        .map(|s| format!("{s}/").into_bytes())
        .collect();
    subdirs.push(Vec::new());
    let lib = lib_base.strip_prefix(&format!("{PROBE_LIB}/"))?.as_bytes().to_vec();
    let platform = platform_base.strip_prefix(&format!("{PROBE_PLATFORM}/"))?.as_bytes().to_vec();
    Some((subdirs, lib, platform))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_glibc_2_36_prints() {
        let help = "Shared library search path:\n  (libraries located via /etc/ld.so.cache)\n  /lib/x86_64-linux-gnu (system search path)\n  /usr/lib (system search path)\n\nSubdirectories of glibc-hwcaps directories, in priority order:\n  x86-64-v4 (supported, searched)\n  x86-64-v3 (supported, searched)\n  x86-64-v2\n\nLegacy HWCAP subdirectories\n";
        assert_eq!(parse_system_dirs(help), vec![b"/lib/x86_64-linux-gnu".to_vec(), b"/usr/lib".to_vec()]);
        assert_eq!(parse_hwcaps(help), vec![b"x86-64-v4".to_vec(), b"x86-64-v3".to_vec()]);
        let probe = "  1:\t search path=/culaunch-probe-lib/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3:/culaunch-probe-lib/lib/x86_64-linux-gnu/tls:/culaunch-probe-lib/lib/x86_64-linux-gnu:/culaunch-probe-platform/haswell/glibc-hwcaps/x86-64-v3:/culaunch-probe-platform/haswell/tls:/culaunch-probe-platform/haswell\t\t(LD_LIBRARY_PATH)\n";
        let (subdirs, lib, platform) = parse_probe(probe).unwrap();
        assert_eq!(subdirs, vec![b"glibc-hwcaps/x86-64-v3/".to_vec(), b"tls/".to_vec(), Vec::new()]);
        assert_eq!((lib.as_slice(), platform.as_slice()), (&b"lib/x86_64-linux-gnu"[..], &b"haswell"[..]));
    }

    #[test]
    fn the_cache_format_reads_back_what_it_wrote_and_nothing_else() {
        let mut p = Platform::ask(Path::new("/lib64/ld-linux-x86-64.so.2"));
        p.system_dirs.push(b"/odd/\xff\n:dir".to_vec());
        for glibc in [None, Some((2, 31))] {
            p.glibc = glibc;
            let bytes = p.encode();
            assert_eq!(Platform::decode(&bytes), Some(p.clone()));
            for cut in 0..bytes.len() {
                assert_eq!(Platform::decode(&bytes[..cut]), None, "cut at {cut}");
            }
        }
        assert_eq!(Platform::decode(b"{\"system_dirs\":[[47]]}"), None);
    }

    #[test]
    fn this_machines_loader_answers() {
        let p = Platform::ask(Path::new("/lib64/ld-linux-x86-64.so.2"));
        assert!(!p.system_dirs.is_empty());
        assert_eq!(p.subdirs.last(), Some(&Vec::new()));
        assert!(!p.lib.is_empty() && !p.platform.is_empty());
    }

    #[test]
    fn own_interpreter_from_memory_is_the_one_the_file_names() {
        let on_disk = crate::elf::object::read_header(Path::new("/proc/self/exe")).unwrap().unwrap().interp;
        assert!(on_disk.is_some(), "a test binary is dynamically linked");
        assert_eq!(own_interpreter().map(|p| p.into_os_string().into_vec()), on_disk);
    }
}
