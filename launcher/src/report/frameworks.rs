//! Stage 3 for Python frameworks, facts → findings: for each process, the
//! frameworks present (the distributions whose RECORD lists a caller or a
//! loaded file), and for each CUDA library loaded, whether it is what the
//! framework declares (`Requires-Dist`). Also loaded files that two wheels
//! both claim (wheel clashes). Every site is read through the [`Machine`]:
//! a trace from another host reads nothing here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::events::Load;
use super::machine::{site_root, Machine};
use super::summary::Requirement;
use crate::python::site::{DistRef, Loaded};
use crate::rules::{Diagnosis, Kind};

/// The RECORD form of a file's sha256, the one the sites compare.
fn record_hash(p: &Path) -> Option<String> {
    crate::digest::record_sha256(p).ok()
}

/// `loads` are each process's successful loads, as the fold keeps them.
pub fn check(
    loads: &BTreeMap<super::fold::Key, Vec<std::rc::Rc<Load>>>,
    m: &mut Machine,
) -> (Vec<Requirement>, Vec<Diagnosis>) {
    let mut verdicts: BTreeMap<(String, String, PathBuf), Requirement> = BTreeMap::new();
    // The pair of distributions → each loaded file both claim, and whose
    // bytes it holds.
    let mut clashes: BTreeMap<[DistRef; 2], BTreeMap<String, Option<String>>> = BTreeMap::new();
    let mut first_seen: BTreeMap<(String, String, PathBuf), (String, i64, u32)> = BTreeMap::new();
    for ((host, pid, instance), loads) in loads {
        let Some(mut here) = m.on(host) else { continue };
        // The frameworks present: owners of any object this process mapped
        // or that asked for a library.
        let mut present: BTreeSet<(PathBuf, String)> = BTreeSet::new();
        let objects: BTreeSet<&str> =
            loads.iter().flat_map(|l| std::iter::once(l.path.as_str()).chain(l.caller.as_deref())).collect();
        for object in &objects {
            let Some(root) = site_root(Path::new(object)).map(Path::to_path_buf) else { continue };
            let site = here.site(&root);
            let Some(rel) = site.relative(Path::new(object)) else { continue };
            for owner in site.owners(&rel) {
                if site.is_framework(owner) {
                    present.insert((root.clone(), owner.name.clone()));
                }
            }
            let pairs = site.clashing_owners(&rel);
            if !pairs.is_empty() {
                let whose = site.owner_on_disk(&rel, &record_hash).map(|d| d.name.clone());
                for pair in pairs {
                    clashes.entry(pair).or_default().insert((*object).to_owned(), whose.clone());
                }
            }
        }
        for l in loads.iter().filter(|l| l.cuda) {
            let Some(soname) = l.soname.as_deref() else { continue };
            for (root, name) in &present {
                let site = here.site(root);
                let Some(framework) = site.get(name) else { continue };
                for need in site.cuda_needs(framework) {
                    if !site.concerns(&need, Path::new(&l.path), soname) {
                        continue;
                    }
                    let loaded = Loaded { soname: soname.to_owned(), path: PathBuf::from(&l.path), version: None };
                    let verdict = site.judge(framework, &need, &loaded, &record_hash);
                    let key = (framework.name.clone(), verdict.requirement.clone(), loaded.path.clone());
                    first_seen.entry(key.clone()).or_insert_with(|| (host.clone(), *pid, *instance));
                    verdicts
                        .entry(key)
                        .or_insert_with(|| Requirement { verdict, processes: BTreeSet::new() })
                        .processes
                        .insert(super::summary::process_name(host, *pid, *instance));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (key, r) in &verdicts {
        if r.verdict.satisfied {
            continue;
        }
        let (host, pid, instance) = &first_seen[key];
        out.push(
            Diagnosis::new(Kind::RequirementMismatch, r.verdict.message.clone())
                .in_process(host, *pid, *instance)
                .files(vec![r.verdict.path.display().to_string()])
                .rule("a framework's Requires-Dist names the CUDA wheels it was built and tested with"),
        );
    }
    out.extend(clashes.iter().map(|(pair, files)| clash_diagnosis(pair, files)));
    (verdicts.into_values().collect(), out)
}

/// One wheel clash among loaded files: both distributions, and for each
/// file whose bytes are on disk.
pub fn clash_diagnosis(pair: &[DistRef; 2], files: &BTreeMap<String, Option<String>>) -> Diagnosis {
    let [a, b] = pair;
    let on_disk: Vec<String> = files
        .iter()
        .map(|(f, whose)| match whose {
            Some(w) => format!("{f} holds {w}'s bytes"),
            None => format!("{f} holds neither's bytes (modified since)"),
        })
        .collect();
    Diagnosis::new(
        Kind::WheelClash,
        format!(
            "{} {} and {} {} both install the loaded {}, so the wheel installed last overwrote the other's: {}",
            a.name,
            a.version,
            b.name,
            b.version,
            if files.len() == 1 { "file" } else { "files" },
            on_disk.join("; ")
        ),
    )
    .files(files.keys().cloned().collect())
    .rule("pip writes a wheel's files over any already there; both RECORDs keep their claim")
}
