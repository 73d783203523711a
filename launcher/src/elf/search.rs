//! Where the loader finds a library, emulated (glibc 2.36, elf/dl-load.c
//! `_dl_map_object`): a name with a slash is opened as is; otherwise the
//! search runs DT_RPATH of the requester and of its loaders up to the main
//! program (only while the requester has no DT_RUNPATH), LD_LIBRARY_PATH,
//! the requester's DT_RUNPATH, /etc/ld.so.cache, then the default
//! directories (those two skipped under DF_1_NODEFLIB). Every directory is
//! tried with its glibc-hwcaps and legacy subdirectories first, and a
//! candidate of another class or machine is passed over.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use super::cache::Cache;
use super::object::{read_header, ElfHeader};
use super::platform::Platform;

/// Which rule found a library (the tree's "why").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// The request was a path.
    Direct,
    /// DT_RPATH of `of` (the requester or one of its loaders).
    Rpath {
        of: String,
    },
    LdLibraryPath,
    Runpath,
    #[serde(rename = "ld.so.cache")]
    LdSoCache,
    Default,
}

/// What the resolver needs to know about an object already in the closure.
pub struct Requester<'a> {
    /// Directory of the object as the loader named it (`$ORIGIN`).
    pub origin: &'a [u8],
    pub path: &'a [u8],
    pub header: &'a ElfHeader,
}

pub enum Outcome {
    Found { path: Vec<u8>, header: ElfHeader, reason: Reason },
    Missing { tried: Vec<Vec<u8>> },
}

/// The target's loader context: its environment, not the launcher's.
pub struct Resolver {
    platform: Platform,
    cache: Option<Cache>,
    ld_library_path: Option<Vec<u8>>,
    /// The class and machine of the program; others are passed over.
    want: (bool, u16),
    dir_exists: HashMap<Vec<u8>, bool>,
}

impl Resolver {
    pub fn new(
        platform: Platform,
        cache: Option<Cache>,
        ld_library_path: Option<Vec<u8>>,
        want: (bool, u16),
    ) -> Resolver {
        Resolver { platform, cache, ld_library_path, want, dir_exists: HashMap::new() }
    }

    /// Finds `name` for `chain[0]`, whose loaders are `chain[1..]` (the last
    /// is the main program).
    pub fn find(&mut self, name: &[u8], chain: &[Requester<'_>]) -> Outcome {
        let Some(requester) = chain.first() else { return Outcome::Missing { tried: Vec::new() } };
        let main = chain.last().unwrap_or(requester);
        let mut tried = Vec::new();
        if name.contains(&b'/') {
            let path = self.expand(name, requester.origin);
            return match self.check(&path) {
                Some(header) => Outcome::Found { path, header, reason: Reason::Direct },
                None => Outcome::Missing { tried: vec![path] },
            };
        }
        let info = &requester.header.dynamic_info;
        if info.runpath.is_none() {
            for l in chain {
                if let Some(rpath) = &l.header.dynamic_info.rpath {
                    let dirs = self.dirs(rpath, b":", l.origin);
                    if let Some((path, header)) = self.in_dirs(name, &dirs, &mut tried) {
                        let of = String::from_utf8_lossy(l.path).into_owned();
                        return Outcome::Found { path, header, reason: Reason::Rpath { of } };
                    }
                }
            }
        }
        if let Some(llp) = self.ld_library_path.clone() {
            let dirs = self.dirs(&llp, b":;", main.origin);
            if let Some((path, header)) = self.in_dirs(name, &dirs, &mut tried) {
                return Outcome::Found { path, header, reason: Reason::LdLibraryPath };
            }
        }
        if let Some(runpath) = &info.runpath {
            let dirs = self.dirs(runpath, b":", requester.origin);
            if let Some((path, header)) = self.in_dirs(name, &dirs, &mut tried) {
                return Outcome::Found { path, header, reason: Reason::Runpath };
            }
        }
        if !info.nodeflib {
            let cached = self.cache.as_ref().and_then(|c| c.lookup(name, &self.platform.hwcaps)).map(<[u8]>::to_vec);
            if let Some(path) = cached {
                tried.push(path.clone());
                if let Some(header) = self.check(&path) {
                    return Outcome::Found { path, header, reason: Reason::LdSoCache };
                }
            }
        } else if let Some(path) = self.cache.as_ref().and_then(|c| c.lookup(name, &self.platform.hwcaps)) {
            // DF_1_NODEFLIB still takes cache entries outside the default
            // directories (elf/dl-load.c, `_dl_is_system_library`).
            let path = path.to_vec();
            let dir = &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)];
            if !self.platform.system_dirs.iter().any(|d| d == dir) {
                tried.push(path.clone());
                if let Some(header) = self.check(&path) {
                    return Outcome::Found { path, header, reason: Reason::LdSoCache };
                }
            }
        }
        if !info.nodeflib {
            let defaults: Vec<Vec<u8>> = self.platform.system_dirs.iter().map(|d| with_slash(d)).collect();
            if let Some((path, header)) = self.in_dirs(name, &defaults, &mut tried) {
                return Outcome::Found { path, header, reason: Reason::Default };
            }
        }
        Outcome::Missing { tried }
    }

    /// Where the requester's own DT_RPATH (or DT_RUNPATH) alone would find
    /// `name`: what the requester was shipped to load.
    pub fn in_own_path(&mut self, name: &[u8], requester: &Requester<'_>) -> Option<(Vec<u8>, Reason)> {
        let info = &requester.header.dynamic_info;
        let (list, reason) = match (&info.runpath, &info.rpath) {
            (Some(r), _) => (r, Reason::Runpath),
            (None, Some(r)) => (r, Reason::Rpath { of: String::from_utf8_lossy(requester.path).into_owned() }),
            (None, None) => return None,
        };
        let dirs = self.dirs(list, b":", requester.origin);
        self.in_dirs(name, &dirs, &mut Vec::new()).map(|(path, _)| (path, reason))
    }

    /// A search list split and expanded like `fillin_rpath`: `$ORIGIN`,
    /// `$LIB`, `$PLATFORM` substituted, trailing slashes reduced to one, an
    /// empty entry meaning the current directory, duplicates dropped.
    fn dirs(&self, list: &[u8], separators: &[u8], origin: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for entry in list.split(|b| separators.contains(b)) {
            let dir = if entry.is_empty() { Vec::new() } else { with_slash(&self.expand(entry, origin)) };
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
        out
    }

    /// Substitutes the dynamic string tokens in `s`.
    fn expand(&self, s: &[u8], origin: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'$' {
                if let Some((value, len)) = self.token(&s[i + 1..], origin) {
                    out.extend_from_slice(value);
                    i += 1 + len;
                    continue;
                }
            }
            out.push(s[i]);
            i += 1;
        }
        out
    }

    fn token<'a>(&'a self, rest: &[u8], origin: &'a [u8]) -> Option<(&'a [u8], usize)> {
        for (name, value) in
            [("ORIGIN", origin), ("LIB", &self.platform.lib[..]), ("PLATFORM", &self.platform.platform[..])]
        {
            let n = name.as_bytes();
            if rest.starts_with(b"{") && rest[1..].starts_with(n) && rest.get(1 + n.len()) == Some(&b'}') {
                return Some((value, n.len() + 2));
            }
            // `$ORIGIN` must not run on into an identifier (`$ORIGINAL`).
            let ends = rest.get(n.len()).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
            if rest.starts_with(n) && ends {
                return Some((value, n.len()));
            }
        }
        None
    }

    fn in_dirs(&mut self, name: &[u8], dirs: &[Vec<u8>], tried: &mut Vec<Vec<u8>>) -> Option<(Vec<u8>, ElfHeader)> {
        for dir in dirs {
            for sub in self.platform.subdirs.clone() {
                let mut d = dir.clone();
                d.extend_from_slice(&sub);
                if !self.exists(&d) {
                    continue;
                }
                let mut path = d;
                path.extend_from_slice(name);
                if let Some(h) = self.check(&path) {
                    return Some((path, h));
                }
                tried.push(path);
            }
        }
        None
    }

    fn exists(&mut self, dir: &[u8]) -> bool {
        let probe = if dir.is_empty() { &b"."[..] } else { dir };
        *self.dir_exists.entry(dir.to_vec()).or_insert_with(|| Path::new(OsStr::from_bytes(probe)).is_dir())
    }

    /// The ELF header of `path` if the loader would take it: an ELF file of
    /// the program's class and machine. Anything else is passed over.
    fn check(&self, path: &[u8]) -> Option<ElfHeader> {
        match read_header(Path::new(OsStr::from_bytes(path))) {
            Ok(Some(h)) if (h.is_64, h.machine) == self.want => Some(h),
            _ => None,
        }
    }
}

fn with_slash(dir: &[u8]) -> Vec<u8> {
    let mut d = dir.to_vec();
    while d.len() > 1 && d.ends_with(b"/") {
        d.pop();
    }
    if !d.ends_with(b"/") {
        d.push(b'/');
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> Resolver {
        let platform = Platform {
            system_dirs: vec![],
            subdirs: vec![Vec::new()],
            hwcaps: vec![],
            lib: b"lib/x86_64-linux-gnu".to_vec(),
            platform: b"haswell".to_vec(),
        };
        Resolver::new(platform, None, None, (true, 62))
    }

    #[test]
    fn tokens_expand_in_both_spellings_and_only_whole() {
        let r = resolver();
        assert_eq!(r.expand(b"$ORIGIN/../lib", b"/a/b"), b"/a/b/../lib");
        assert_eq!(r.expand(b"${ORIGIN}/x/$LIB/${PLATFORM}", b"/o"), b"/o/x/lib/x86_64-linux-gnu/haswell");
        assert_eq!(r.expand(b"$ORIGINAL/$FOO", b"/o"), b"$ORIGINAL/$FOO");
    }

    #[test]
    fn search_lists_split_trim_and_dedupe_like_fillin_rpath() {
        let r = resolver();
        let dirs = r.dirs(b"$ORIGIN:/x//:/x/::/y", b":", b"/o");
        assert_eq!(dirs, vec![b"/o/".to_vec(), b"/x/".to_vec(), Vec::new(), b"/y/".to_vec()]);
        assert_eq!(r.dirs(b"/a;/b:/c", b":;", b"/o").len(), 3);
        assert_eq!(r.dirs(b"/", b":", b"/o"), vec![b"/".to_vec()]);
    }
}
