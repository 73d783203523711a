//! `culaunch diff A B`: which CUDA libraries two runs mapped differently.
//! A library is known by its family and SONAME; two runs differ in it when
//! the file, the release, the installer or the search step that found it
//! differ, or when only one run mapped it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One CUDA library file of one run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Lib {
    pub family: String,
    pub soname: String,
    pub path: String,
    pub version: Option<String>,
    /// The installer, in the summary's words (`pip nvidia-cuda-runtime-cu12`).
    pub origin: String,
    /// The loader's search steps that found it (`rpath_runpath`, …).
    pub search: Vec<String>,
}

/// What differs between the two runs' copies of one library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    /// Mapped by one run only.
    Presence,
    File,
    Release,
    Provenance,
    Search,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub family: String,
    pub soname: String,
    pub differs_in: Vec<Aspect>,
    pub a: Vec<Lib>,
    pub b: Vec<Lib>,
}

/// One facet of a copy, as compared.
type Facet = fn(&Lib) -> String;

pub fn diff(a: &[Lib], b: &[Lib]) -> Vec<Difference> {
    let group = |libs: &[Lib]| {
        let mut m: BTreeMap<(String, String), Vec<Lib>> = BTreeMap::new();
        for l in libs {
            let v = m.entry((l.family.clone(), l.soname.clone())).or_default();
            if !v.contains(l) {
                v.push(l.clone());
            }
        }
        m.values_mut().for_each(|v| v.sort());
        m
    };
    let (ga, gb) = (group(a), group(b));
    let keys: BTreeSet<&(String, String)> = ga.keys().chain(gb.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (la, lb) = (ga.get(key).cloned().unwrap_or_default(), gb.get(key).cloned().unwrap_or_default());
        let mut differs_in = Vec::new();
        if la.is_empty() || lb.is_empty() {
            differs_in.push(Aspect::Presence);
        } else {
            let set = |f: fn(&Lib) -> String, l: &[Lib]| l.iter().map(f).collect::<BTreeSet<String>>();
            let aspects: [(Aspect, Facet); 4] = [
                (Aspect::File, |l| l.path.clone()),
                (Aspect::Release, |l| l.version.clone().unwrap_or_default()),
                (Aspect::Provenance, |l| l.origin.clone()),
                (Aspect::Search, |l| l.search.join(",")),
            ];
            for (aspect, f) in aspects {
                if set(f, &la) != set(f, &lb) {
                    differs_in.push(aspect);
                }
            }
        }
        if !differs_in.is_empty() {
            out.push(Difference { family: key.0.clone(), soname: key.1.clone(), differs_in, a: la, b: lb });
        }
    }
    out
}

impl Aspect {
    pub fn as_str(self) -> &'static str {
        match self {
            Aspect::Presence => "presence",
            Aspect::File => "file",
            Aspect::Release => "release",
            Aspect::Provenance => "provenance",
            Aspect::Search => "search",
        }
    }
}

/// The differences as text: one block per library, the two runs' copies
/// under it.
pub fn text(diffs: &[Difference], a_name: &str, b_name: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if diffs.is_empty() {
        return out;
    }
    let _ = writeln!(out, "A: {a_name}\nB: {b_name}");
    for d in diffs {
        let what: Vec<&str> = d.differs_in.iter().map(|a| a.as_str()).collect();
        let _ = writeln!(out, "{} ({}): differs in {}", d.soname, d.family, what.join(", "));
        for (side, libs) in [("A", &d.a), ("B", &d.b)] {
            if libs.is_empty() {
                let _ = writeln!(out, "  {side}: not loaded");
            }
            for l in libs {
                let version = l.version.as_deref().unwrap_or("?");
                let search =
                    if l.search.is_empty() { String::new() } else { format!(", found by {}", l.search.join(",")) };
                let _ = writeln!(out, "  {side}: {version} {}{search}", l.origin);
                let _ = writeln!(out, "     {}", l.path);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(soname: &str, path: &str, version: &str, origin: &str, search: &str) -> Lib {
        Lib {
            family: "cudart".into(),
            soname: soname.into(),
            path: path.into(),
            version: Some(version.into()),
            origin: origin.into(),
            search: vec![search.into()],
        }
    }

    #[test]
    fn identical_runs_do_not_differ() {
        let a = [lib("libcudart.so.12", "/v/libcudart.so.12", "12.9.79", "pip x", "rpath_runpath")];
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn each_aspect_that_differs_is_named() {
        let a = [lib("libcudart.so.12", "/v/libcudart.so.12", "12.9.79", "pip x", "rpath_runpath")];
        let b = [lib("libcudart.so.12", "/w/libcudart.so.12", "12.8.90", "pip x", "ld_library_path")];
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].differs_in, [Aspect::File, Aspect::Release, Aspect::Search]);
        let t = text(&d, "a.jsonl", "b.jsonl");
        assert!(t.contains("libcudart.so.12 (cudart): differs in file, release, search"), "{t}");
    }

    #[test]
    fn a_library_only_one_run_mapped_is_a_difference() {
        let a = [lib("libcudart.so.12", "/v/libcudart.so.12", "12.9.79", "pip x", "direct")];
        let b = [lib("libcudart.so.11.0", "/v/libcudart.so.11.0", "11.8.89", "pip y", "direct")];
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|d| d.differs_in == [Aspect::Presence]));
    }
}
