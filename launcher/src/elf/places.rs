//! Where a file that a failed load needed may be: the requester's own
//! directory and DT_RUNPATH/DT_RPATH, LD_LIBRARY_PATH, the installations the
//! caller knows, the loader's cache and default directories, and beside
//! everything loaded. One list for `deps --check` and for a run's failed
//! loads, so both explain a failure the same way.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::cache::Cache;
use super::object::{ElfHeader, Want};
use super::platform::Platform;
use super::{closure_in, Context, Reason, Target};

/// One directory to look in, and why it is on the list (said to the user).
pub type Place = (PathBuf, String);

/// What the places of one requester are decided from.
pub struct Seen<'a> {
    /// The requester as the loader named it (its directory is `$ORIGIN`).
    pub requester: &'a [u8],
    pub header: &'a ElfHeader,
    pub ld_library_path: Option<&'a [u8]>,
    /// Installation directories (toolkits, wheels, conda), searched after
    /// LD_LIBRARY_PATH, labelled.
    pub installations: &'a [Place],
    /// Objects loaded with it: their directories come last.
    pub beside: &'a [Vec<u8>],
    /// `deps --root`: every path is inside it.
    pub root: Option<&'a Path>,
    /// The loader rules of the closure (`None`: this machine's loader).
    pub platform: Option<&'a Platform>,
}

fn dir_of(p: &[u8]) -> Vec<u8> {
    match p.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/".to_vec(),
        Some(i) => p[..i].to_vec(),
        None => b".".to_vec(),
    }
}

/// The places, in the order they are searched for an alternative: the
/// requester's directory, its own DT_RUNPATH/DT_RPATH, LD_LIBRARY_PATH, the
/// installations, the loader's cache directories and default directories,
/// then the directories of everything loaded. Each directory once.
pub fn places(s: &Seen<'_>) -> Vec<Place> {
    let here;
    let platform = match s.platform {
        Some(p) => p,
        None => {
            here = Platform::of_this_machine();
            &here
        }
    };
    let name = String::from_utf8_lossy(s.requester.rsplit(|&b| b == b'/').next().unwrap_or(s.requester)).into_owned();
    let origin = dir_of(s.requester);
    let expand = |e: &[u8]| -> Vec<u8> {
        let mut v = e.to_vec();
        for (tok, val) in [
            (&b"${ORIGIN}"[..], &origin[..]),
            (b"$ORIGIN", &origin[..]),
            (b"${LIB}", &platform.lib[..]),
            (b"$LIB", &platform.lib[..]),
            (b"${PLATFORM}", &platform.platform[..]),
            (b"$PLATFORM", &platform.platform[..]),
        ] {
            while let Some(at) = v.windows(tok.len()).position(|w| w == tok) {
                v.splice(at..at + tok.len(), val.iter().copied());
            }
        }
        v
    };
    let root = s.root.map(|r| r.as_os_str().as_bytes().to_vec());
    let host = |d: &[u8]| -> PathBuf {
        let h = match &root {
            Some(r) => [&r[..], d].concat(),
            None => d.to_vec(),
        };
        let p = PathBuf::from(OsStr::from_bytes(&h));
        std::path::absolute(&p).unwrap_or(p)
    };
    let mut out: Vec<Place> = vec![(host(&origin), format!("the directory of {name}"))];
    let info = &s.header.dynamic_info;
    for (list, tag) in [(&info.runpath, "DT_RUNPATH"), (&info.rpath, "DT_RPATH")] {
        for e in list.iter().flat_map(|l| l.split(|&b| b == b':')).filter(|e| !e.is_empty()) {
            out.push((host(&expand(e)), format!("{tag} of {name}")));
        }
    }
    for e in s.ld_library_path.into_iter().flat_map(|l| l.split(|&b| b == b':' || b == b';')).filter(|e| !e.is_empty())
    {
        out.push((host(e), "LD_LIBRARY_PATH".into()));
    }
    out.extend(s.installations.iter().cloned());
    let want = Want::of(s.header);
    let cache_file = host(b"/etc/ld.so.cache");
    if let Some(c) = Cache::read(&cache_file).map(|c| c.for_target(want)) {
        let mut dirs: Vec<Vec<u8>> = Vec::new();
        for (_, path) in c.entries() {
            let d = dir_of(path);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        out.extend(dirs.iter().map(|d| (host(d), "a directory of ld.so.cache".to_owned())));
    }
    for d in &platform.system_dirs {
        out.push((host(d), "a default directory".into()));
    }
    for n in s.beside {
        out.push((host(&dir_of(n)), "beside a loaded library".into()));
    }
    let mut seen = HashSet::new();
    out.into_iter().filter(|(d, _)| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))).collect()
}

/// The file the loader would map for `name` in the closure of `top` under
/// `ctx` (its LD_LIBRARY_PATH, its root), and the rule that found it: what
/// a fix that changes the environment would get. A host path; `None` when
/// it is found nowhere. (A requester deep in a dlopened tree is seen from
/// `top`, not from the program: its loaders' DT_RPATH is `top`'s chain.)
pub fn resolves_to(top: &Path, name: &[u8], ctx: &Context) -> Option<(PathBuf, Option<Reason>)> {
    let c = closure_in(top, ctx).ok()?;
    let i = c.edges.iter().find_map(|e| match e.to {
        Target::New(i) | Target::Repeat(i) if e.name == name => Some(i),
        _ => None,
    })?;
    let path = &c.nodes[i].path;
    let host = match &c.root {
        Some(r) => [r.as_os_str().as_bytes(), &path[..]].concat(),
        None => path.clone(),
    };
    Some((PathBuf::from(OsStr::from_bytes(&host)), c.nodes[i].reason.clone()))
}
