//! Pins: checked before anything starts, and found under `--toolkit DIR`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use culaunch_protocol::catalogue;

use crate::elf;
use crate::error::Error;

/// A validated pin: `path` is canonical and carries DT_SONAME `soname`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub soname: String,
    pub path: PathBuf,
    pub source: Source,
    /// For a lock's pin: the file whose sha256 was checked. The module
    /// refuses the pin if the path then holds another, or it changed.
    pub locked_file: Option<culaunch_protocol::env::LockedFile>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    Config,
    Lock,
    Toolkit,
}

/// Checks that `path` exists, is an ELF shared object this build can inject
/// into, and carries DT_SONAME `soname` (docs/trace-schema.md, "Pins").
pub fn validate(soname: &str, path: &Path, source: Source) -> Result<Pin, Error> {
    let fail = |reason: String| Error::Pin { soname: soname.to_owned(), path: path.to_path_buf(), reason };
    if soname.contains(['\t', '\n', '/']) || path.as_os_str().as_bytes().iter().any(|b| matches!(b, b'\t' | b'\n')) {
        return Err(fail("SONAME and PATH must not contain tabs, newlines (or, in SONAME, slashes)".into()));
    }
    let canonical = fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    match elf::read_header(&canonical) {
        Ok(Some(h)) => check(soname, path, canonical, h, source),
        Ok(None) => Err(fail("not an ELF file".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// The checks on a pin's ELF headers.
fn check(soname: &str, path: &Path, canonical: PathBuf, header: elf::ElfHeader, source: Source) -> Result<Pin, Error> {
    let fail = |reason: String| Error::Pin { soname: soname.to_owned(), path: path.to_path_buf(), reason };
    if !header.shared {
        return Err(fail("not an ELF shared object".into()));
    }
    if !header.matches_this_build() {
        return Err(fail(format!(
            "a {} library; culaunch runs {} programs",
            header.describe_machine(),
            std::env::consts::ARCH
        )));
    }
    match header.soname {
        Some(s) if s == soname.as_bytes() => {
            Ok(Pin { soname: soname.to_owned(), path: canonical, source, locked_file: None })
        }
        Some(s) => Err(fail(format!("its SONAME is {}", String::from_utf8_lossy(&s)))),
        None => Err(fail("it has no SONAME".into())),
    }
}

/// Every CUDA-family library under a toolkit root (`lib64/`, `lib/`,
/// `targets/*/lib/`), a conda env (`lib/`), or a pip site-packages or
/// `nvidia/` tree (`nvidia/*/lib/`), by SONAME. Link-time stubs
/// (`lib64/stubs/`) are not searched: they must never load at run time.
pub fn scan_toolkit(dir: &Path) -> Result<Vec<Pin>, Error> {
    if !dir.is_dir() {
        return Err(Error::Toolkit { dir: dir.to_path_buf(), reason: "not a directory".into() });
    }
    let mut found: BTreeMap<String, Pin> = BTreeMap::new();
    for canonical_dir in library_dirs(dir) {
        let mut entries: Vec<PathBuf> =
            fs::read_dir(&canonical_dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        entries.sort();
        for file in entries {
            let name = file.file_name().map(OsStr::as_bytes).unwrap_or_default();
            if !name.windows(3).any(|w| w == b".so") || catalogue::family(name).is_none() || !file.is_file() {
                continue;
            }
            let Ok(Some(h)) = elf::read_header(&file) else { continue };
            let Some(soname) = h.soname.clone().and_then(|s| String::from_utf8(s).ok()) else { continue };
            if catalogue::family(soname.as_bytes()).is_none() || found.contains_key(&soname) {
                continue;
            }
            let Ok(canonical) = fs::canonicalize(&file) else { continue };
            if let Ok(pin) = check(&soname, &file, canonical, h, Source::Toolkit) {
                found.insert(soname, pin);
            }
        }
    }
    if found.is_empty() {
        return Err(Error::Toolkit { dir: dir.to_path_buf(), reason: "no CUDA library found in it".into() });
    }
    Ok(found.into_values().collect())
}

/// The directories under an installation root that hold its libraries, in
/// search order, canonical and each once: the root itself, `lib64/`, `lib/`,
/// `targets/*/lib/` (a toolkit, whatever its architecture), `nvidia/*/lib/`
/// (a pip site-packages) and `*/lib/` (an `nvidia/` tree). Not `stubs/`.
pub fn library_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf(), root.join("lib64"), root.join("lib")];
    for parent in [root.join("targets"), root.join("nvidia"), root.to_path_buf()] {
        let mut subs: Vec<PathBuf> =
            fs::read_dir(&parent).into_iter().flatten().flatten().map(|e| e.path().join("lib")).collect();
        subs.sort();
        dirs.extend(subs);
    }
    let mut seen = Vec::new();
    for d in dirs {
        if let Ok(c) = fs::canonicalize(&d) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_dirs_cover_every_target_architecture_once() {
        let root = std::env::temp_dir().join(format!("culaunch-libdirs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in ["targets/x86_64-linux/lib", "targets/sbsa-linux/lib", "lib64/stubs"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        // A toolkit's lib/ is often a link to its target's directory.
        std::os::unix::fs::symlink("targets/x86_64-linux/lib", root.join("lib")).unwrap();
        let root = fs::canonicalize(&root).unwrap();
        let dirs = library_dirs(&root);
        let want = [
            root.clone(),
            root.join("lib64"),
            root.join("targets/x86_64-linux/lib"),
            root.join("targets/sbsa-linux/lib"),
        ];
        for w in &want {
            assert_eq!(dirs.iter().filter(|d| *d == w).count(), 1, "{w:?} in {dirs:?}");
        }
        assert_eq!(dirs.len(), want.len(), "{dirs:?}");
        fs::remove_dir_all(&root).unwrap();
    }
}
