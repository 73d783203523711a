//! Can the loader use culaunch's audit module at all? When it cannot (the
//! file cannot be mapped executable, it is of another class, or a library it
//! needs lacks a version node it names, e.g. `GLIBC_2.34` on a glibc 2.31),
//! the loader prints one line on the job's stderr (`cannot be loaded as audit
//! interface … ignored`) and runs the job untraced. These checks see the same
//! facts before the start, so culaunch can say so and stop instead.

pub mod elfver;
pub mod stub32;

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::elf;
use crate::input::Mapped;

/// The loader must be able to map the module's code: readable, and on a
/// filesystem that allows execution.
pub fn mappable(module: &Path) -> io::Result<()> {
    Mapped::open(module, true).map(drop).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            io::Error::new(e.kind(), format!("{e} (cannot be mapped executable: is its filesystem mounted noexec?)"))
        }
        _ => e,
    })
}

/// Why the loader could not use the module: each kind has its own remedy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// It cannot be opened, or mapped executable, or it is not an ELF shared object.
    Unreadable,
    /// Another class or machine than the programs culaunch traces.
    OtherClass,
    /// A library it needs is missing or lacks a version node (an older glibc).
    Libraries,
}

/// Says why the loader could not use `module` in a process started now, in
/// this environment (its LD_LIBRARY_PATH, this machine's cache and
/// libraries): the module's own libraries are found as the loader finds them
/// for it, and each must define every version node the module needs.
/// `interp` is the loader the command runs under (its PT_INTERP).
pub fn module_unusable(module: &Path, interp: Option<&[u8]>) -> Option<(Unusable, String)> {
    if let Err(e) = mappable(module) {
        return Some((Unusable::Unreadable, format!("cannot read it: {e}")));
    }
    match elf::read_header(module) {
        Ok(Some(h)) if !h.matches_this_build() => {
            return Some((
                Unusable::OtherClass,
                format!("it is a {} object, not one for this culaunch", h.describe_machine()),
            ))
        }
        Ok(Some(h)) if !h.shared => return Some((Unusable::Unreadable, "it is not a shared object".to_owned())),
        Ok(Some(_)) => {}
        Ok(None) => return Some((Unusable::Unreadable, "it is not an ELF file".to_owned())),
        Err(e) => return Some((Unusable::Unreadable, format!("cannot read it: {e}"))),
    }
    let needs = match Mapped::open(module, false).map(|m| elfver::read(m.bytes())) {
        Ok(Ok(v)) => v.needed,
        Ok(Err(e)) => return Some((Unusable::Unreadable, e.to_owned())),
        Err(e) => return Some((Unusable::Unreadable, format!("cannot read it: {e}"))),
    };
    if covered_by_our_own(&needs, interp) {
        return None;
    }
    let closure = match elf::closure(module) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(module = %module.display(), error = %e, "cannot resolve the module's libraries");
            return None;
        }
    };
    for edge in &closure.edges {
        if let elf::Target::Missing { .. } = edge.to {
            if edge.from == elf::ROOT {
                let name = String::from_utf8_lossy(&edge.name);
                return Some((Unusable::Libraries, format!("the library it needs, {name}, is not found")));
            }
        }
    }
    let mut problems = Vec::new();
    let mut files: Vec<&str> = needs.iter().map(|n| n.file.as_str()).collect();
    files.dedup();
    for file in files {
        let Some(node) = closure.nodes.iter().skip(1).find(|n| {
            n.names.iter().any(|m| m == file.as_bytes()) || n.header.soname.as_deref() == Some(file.as_bytes())
        }) else {
            continue;
        };
        let provider = Path::new(std::ffi::OsStr::from_bytes(&node.path));
        let defined = match Mapped::open(provider, false).map(|m| elfver::read(m.bytes())) {
            Ok(Ok(v)) => v.defined,
            _ => continue,
        };
        let missing: Vec<&str> = needs
            .iter()
            .filter(|n| n.file == file && !defined.contains(&n.version))
            .map(|n| n.version.as_str())
            .collect();
        if missing.is_empty() {
            continue;
        }
        let newest = elfver::newest_glibc(defined.iter().map(String::as_str))
            .map(|v| format!(" (its newest is GLIBC_{v})"))
            .unwrap_or_default();
        problems.push(format!(
            "it needs {} of {file}, which {} does not define{newest}",
            missing.join(", "),
            provider.display()
        ));
    }
    (!problems.is_empty()).then(|| (Unusable::Libraries, problems.join("; ")))
}

/// Whether culaunch's own start already proves the module's libraries
/// define what it needs, sparing the resolution (about 0.7 ms): the command
/// runs under culaunch's own loader and no LD_LIBRARY_PATH applies, so the
/// loader finds the module's libraries (it has no DT_RPATH or DT_RUNPATH)
/// where it found culaunch's, through the same cache and default
/// directories; culaunch runs, so they define every node culaunch needs.
fn covered_by_our_own(needs: &[elfver::Need], interp: Option<&[u8]>) -> bool {
    if std::env::var_os("LD_LIBRARY_PATH").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    let own = Path::new("/proc/self/exe");
    let Ok(Some(header)) = elf::read_header(own) else { return false };
    let info = &header.dynamic_info;
    if header.interp.is_none() || header.interp.as_deref() != interp || info.rpath.is_some() || info.runpath.is_some() {
        return false;
    }
    match Mapped::open(own, false).map(|m| elfver::read(m.bytes())) {
        Ok(Ok(ours)) => needs.iter().all(|n| ours.needed.contains(n)),
        _ => false,
    }
}

/// The 32-bit x86 loader: where it is absent no 32-bit dynamic program can
/// run, so none can print the wrong-class line.
const I386_LOADER: &str = "/lib/ld-linux.so.2";
/// What `$PLATFORM` expands to in a 64-bit x86 process: the kernel's
/// AT_PLATFORM, or glibc's own names for some Intel CPUs (sysdeps/x86/cpu-features.c).
const X86_64_PLATFORMS: [&str; 3] = ["x86_64", "haswell", "xeon_phi"];
/// And in a 32-bit one (i686 on any CPU of this century).
const I386_PLATFORMS: [&str; 4] = ["i386", "i486", "i586", "i686"];

/// The LD_AUDIT entry for `module`. Where 32-bit programs can run, it is
/// `NAME.d/$PLATFORM/NAME` beside the module: a 64-bit loader expands it to
/// a link to the module, a 32-bit one to a module that declines
/// ([`stub32`]), so a 32-bit descendant runs untraced without the loader's
/// `wrong ELF class` line on its stderr. The layout is used only once the
/// loader has been seen to map the module through it without a word;
/// otherwise (and on other machines) the entry is the module itself.
pub fn audit_entry(module: &Path) -> PathBuf {
    // A module of the developer's own (CULAUNCH_AUDIT_MODULE) is used as
    // given: nothing is written beside it.
    let overridden = std::env::var_os("CULAUNCH_AUDIT_MODULE").is_some();
    if overridden || !cfg!(target_arch = "x86_64") || !Path::new(I386_LOADER).exists() {
        return module.to_path_buf();
    }
    platform_layout(module).unwrap_or_else(|e| {
        tracing::debug!(module = %module.display(), error = %e, "no $PLATFORM layout");
        module.to_path_buf()
    })
}

fn platform_layout(module: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::symlink;
    let name = module.file_name().ok_or(io::ErrorKind::InvalidInput)?;
    let mut dir_name = name.to_os_string();
    dir_name.push(".d");
    let dir = module.with_file_name(dir_name);
    let entry = dir.join("$PLATFORM").join(name);
    // Verified per loader and CPU: a home shared by many machines holds one
    // layout, and each machine's loader is asked once.
    let verified = dir.join(format!(".verified-{:016x}", loader_and_cpu()));
    if verified.exists() {
        return Ok(entry);
    }
    let exists_ok = |r: io::Result<()>| match r {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    };
    for platform in X86_64_PLATFORMS {
        std::fs::create_dir_all(dir.join(platform))?;
        exists_ok(symlink(Path::new("../..").join(name), dir.join(platform).join(name)))?;
    }
    let stub = stub32::declining_i386_module();
    for platform in I386_PLATFORMS {
        let sub = dir.join(platform);
        std::fs::create_dir_all(&sub)?;
        if std::fs::read(sub.join(name)).ok().as_deref() != Some(&stub[..]) {
            // Beside, then renamed: a concurrent run never sees half a file.
            let tmp = sub.join(format!(".stub.{}", std::process::id()));
            std::fs::write(&tmp, &stub)?;
            std::fs::rename(&tmp, sub.join(name))?;
        }
    }
    // The loader's own answer, once: a 64-bit program with the entry in
    // LD_AUDIT maps the module through it without a word (the module,
    // without culaunch's other variables, then unloads itself).
    let probe = std::process::Command::new("/proc/self/exe")
        .arg("--version")
        .env("LD_AUDIT", &entry)
        .env_remove(culaunch_protocol::env::TRACE)
        .env_remove(culaunch_protocol::env::FLAGS)
        .env_remove(culaunch_protocol::env::PINS)
        .output()?;
    if !probe.status.success() || !probe.stderr.is_empty() {
        let said = String::from_utf8_lossy(&probe.stderr).into_owned();
        return Err(io::Error::other(format!("the loader did not take {}: {said}", entry.display())));
    }
    std::fs::write(verified, b"")?;
    Ok(entry)
}

/// What the loader's `$PLATFORM` depends on: the loader file and the CPU as
/// the kernel describes it.
fn loader_and_cpu() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut key = Vec::new();
    if let Ok(m) = std::fs::metadata("/lib64/ld-linux-x86-64.so.2") {
        key.extend_from_slice(format!("{}:{}:{}:{}", m.dev(), m.ino(), m.size(), m.mtime()).as_bytes());
    }
    // SAFETY: getauxval has no preconditions; 0 means "absent".
    let (hwcap, hwcap2, platform) = unsafe {
        (libc::getauxval(libc::AT_HWCAP), libc::getauxval(libc::AT_HWCAP2), libc::getauxval(libc::AT_PLATFORM))
    };
    key.extend_from_slice(format!(":{hwcap:x}:{hwcap2:x}:").as_bytes());
    if platform != 0 {
        // SAFETY: AT_PLATFORM points to a NUL-terminated string the kernel placed on our stack.
        key.extend_from_slice(unsafe { std::ffi::CStr::from_ptr(platform as *const libc::c_char) }.to_bytes());
    }
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The glibc the embedded module needs at least (from build.rs), for hints.
pub fn module_glibc_floor() -> &'static str {
    env!("CULAUNCH_MODULE_GLIBC")
}

/// An `untraced` trace line for a process culaunch itself starts untraced,
/// written as the audit module writes them for descendants: by the parent
/// (culaunch, so its own pid), naming the program and why.
pub fn untraced_event(exe: &Path, reason: &str) -> String {
    let ppid = std::os::unix::process::parent_id();
    // uname's nodename, as the audit module names the host.
    let host = nix::sys::utsname::uname().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default();
    let line = serde_json::json!({
        "v": 1,
        "ts": rfc3339_now(),
        "pid": std::process::id(),
        "ppid": ppid,
        "host": host,
        "event": culaunch_protocol::event::UNTRACED,
        "exe": exe.to_string_lossy(),
        "reason": reason,
    });
    format!("{line}\n")
}

/// Now in UTC, `2026-12-02T20:41:07.123456Z` (the trace's `ts` format).
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_micros())
}

fn rfc3339(secs: u64, micros: u32) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_the_civil_utc_dates_of_known_instants() {
        // `date -u -d @N +%FT%T` gives these.
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(rfc3339(1_796_244_067, 123_456), "2026-12-02T20:41:07.123456Z");
    }

    #[test]
    fn glibc_versions_compare_as_numbers() {
        assert_eq!(
            elfver::newest_glibc(["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.3.4", "GLIBC_PRIVATE"]).as_deref(),
            Some("2.17")
        );
        assert_eq!(elfver::newest_glibc(["GCC_3.0"]), None);
        assert!(elfver::glibc_version("GLIBC_2.9") < elfver::glibc_version("GLIBC_2.17"));
    }

    /// What `readelf -V` (binutils) lists: (needed (file, node), defined nodes).
    fn readelf_versions(file: &str) -> (Vec<(String, String)>, Vec<String>) {
        let out = std::process::Command::new("readelf").args(["-V", "--wide", file]).output().expect("readelf runs");
        let (mut needed, mut defined, mut in_needs, mut from) = (Vec::new(), Vec::new(), false, String::new());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let field = |key: &str| line.split(key).nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_owned);
            if line.starts_with("Version needs section") {
                in_needs = true;
            } else if line.starts_with("Version definition section") || line.starts_with("Version symbols section") {
                in_needs = false;
            } else if in_needs {
                if let Some(f) = field("File: ") {
                    from = f;
                } else if let Some(n) = field("Name: ") {
                    needed.push((from.clone(), n));
                }
            } else if line.contains("Flags: none") || line.contains("Flags: WEAK") {
                defined.extend(field("Name: "));
            }
        }
        (needed, defined)
    }

    #[test]
    fn version_nodes_read_from_elf_files_equal_what_readelf_lists() {
        let candidates = [
            "/proc/self/exe",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
            "/usr/bin/ls",
            "/usr/bin/perl",
        ];
        let mut compared = 0;
        for file in candidates.iter().filter(|f| Path::new(f).exists()) {
            let file = std::fs::canonicalize(file).unwrap();
            let file = file.to_str().unwrap();
            let ours = elfver::read(&std::fs::read(file).unwrap()).unwrap();
            let (mut needed, mut defined) = readelf_versions(file);
            let mut ours_needed: Vec<(String, String)> = ours.needed.into_iter().map(|n| (n.file, n.version)).collect();
            let mut ours_defined = ours.defined;
            for v in [&mut needed, &mut ours_needed] {
                v.sort();
            }
            for v in [&mut defined, &mut ours_defined] {
                v.sort();
            }
            assert_eq!(ours_needed, needed, "{file}: needed");
            assert_eq!(ours_defined, defined, "{file}: defined");
            compared += 1;
        }
        assert!(compared >= 3, "too few sample files");
    }

    #[test]
    fn corrupt_version_sections_are_errors_not_panics() {
        let mut elf = std::fs::read("/proc/self/exe").expect("this test binary");
        assert!(elfver::read(&elf).is_ok());
        for cut in [0, 16, 64, elf.len() / 2] {
            let _ = elfver::read(&elf[..cut]);
        }
        // Mutations where the reader looks: the section headers and the
        // version sections (byte at a time, restored after each parse).
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").or_else(|_| std::fs::read("/proc/self/exe"));
        let mut bytes = libc.unwrap();
        let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..8_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let region = if seed & 1 == 0 { shoff..bytes.len() } else { 0..bytes.len().min(0x4000) };
            let at = region.start + (seed >> 8) as usize % region.len().max(1);
            let old = bytes[at];
            bytes[at] = (seed >> 40) as u8;
            let _ = elfver::read(&bytes);
            bytes[at] = old;
        }
        // Section header offset beyond the file.
        elf[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(elfver::read(&elf).is_err());
    }
}
