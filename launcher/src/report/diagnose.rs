//! Diagnoses: what in a run's loads will bite, each naming the files, the
//! requesting object and the loader rule behind it. Computed after the run
//! from the trace and the files themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use culaunch_protocol::catalogue;
use serde::Serialize;

use super::events::{Envelope, Event, Load};
use super::provenance::{Origin, RecordHash};
use super::summary::Library;
use crate::{cuda, elf};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// `shadowing`, `first_loaded_wins`, `version_skew`, `empty_search_entry`,
    /// `driver_stub`, `driver_compat`, `driver_too_old`, `modified_wheel_file`.
    pub kind: &'static str,
    pub host: String,
    pub pid: Option<i64>,
    pub message: String,
    pub files: Vec<String>,
    pub requester: Option<String>,
    /// The loader rule or release rule that explains it.
    pub rule: String,
}

pub fn diagnose(events: &[Envelope], libraries: &[Library]) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let mut by_process: BTreeMap<(String, i64), Vec<&Load>> = BTreeMap::new();
    for e in events {
        match &e.event {
            Event::Load(l) if l.ok => by_process.entry((e.host.clone(), e.pid)).or_default().push(l),
            _ => {}
        }
    }
    let lib_of: HashMap<&str, &Library> = libraries.iter().map(|l| (l.path.as_str(), l)).collect();
    let mut files = elf::ShippedWith::new();
    let mut empty_seen = BTreeSet::new();
    for ((host, pid), loads) in &by_process {
        requester_mismatches(host, *pid, loads, &mut files, &mut out);
        version_skew(host, *pid, loads, &lib_of, &mut out);
        for path in
            loads.iter().filter(|l| l.cuda).flat_map(|l| std::iter::once(l.path.as_str()).chain(l.caller.as_deref()))
        {
            if empty_seen.insert(path.to_owned()) {
                for (tag, list) in files.empty_search_entries(Path::new(path)) {
                    out.push(Diagnosis {
                        kind: "empty_search_entry",
                        host: host.clone(),
                        pid: Some(*pid),
                        message: format!("{tag} of {path} is \"{list}\": its empty entry means the current directory, so a file there can be loaded"),
                        files: vec![path.to_owned()],
                        requester: None,
                        rule: format!("an empty {tag} entry is the working directory (elf/dl-load.c fillin_rpath)"),
                    });
                }
            }
        }
    }
    driver(libraries, &mut out);
    for lib in libraries {
        if let Origin::Pip { package, record_hash: RecordHash::Differs, .. } = &lib.origin {
            out.push(Diagnosis {
                kind: "modified_wheel_file",
                host: String::new(),
                pid: None,
                message: format!(
                    "{} is not the file pip package {package} installed (its sha256 differs from RECORD)",
                    lib.path
                ),
                files: vec![lib.path.clone()],
                requester: None,
                rule: "RECORD lists the sha256 of every installed file".into(),
            });
        }
    }
    out
}

/// For each object that asked for CUDA libraries in this process: did the
/// copy its own DT_RUNPATH/DT_RPATH points to answer? If not, either another
/// search step won over it (shadowing) or a copy loaded earlier by someone
/// else answered its bare name (first-loaded-wins).
fn requester_mismatches(host: &str, pid: i64, loads: &[&Load], files: &mut elf::ShippedWith, out: &mut Vec<Diagnosis>) {
    let mapped: HashMap<&str, &Load> =
        loads.iter().filter(|l| l.cuda).filter_map(|l| Some((l.soname.as_deref()?, *l))).collect();
    // Objects that asked for something, and objects that need CUDA libraries
    // (the module reports those even when they are not CUDA themselves).
    let requesters: BTreeSet<&str> = loads
        .iter()
        .filter_map(|l| l.caller.as_deref())
        .chain(loads.iter().filter(|l| !l.cuda).map(|l| l.path.as_str()))
        .collect();
    for requester in requesters {
        let Some(needed_list) = files.header(Path::new(requester)).map(|h| h.dynamic_info.needed.clone()) else {
            continue;
        };
        for needed in &needed_list {
            if catalogue::family(needed).is_none() {
                continue;
            }
            let name = String::from_utf8_lossy(needed);
            let Some(actual) = mapped.get(name.as_ref()) else { continue };
            let Some((own, reason)) = files.own_copy(Path::new(requester), needed) else { continue };
            let own = String::from_utf8_lossy(&own).into_owned();
            let own_canonical = std::fs::canonicalize(&own).map(|p| p.display().to_string()).unwrap_or(own.clone());
            if own_canonical == actual.path {
                continue;
            }
            let tag = match reason {
                elf::Reason::Runpath => "DT_RUNPATH",
                _ => "DT_RPATH",
            };
            let search = actual.search.as_deref().unwrap_or("?");
            let (kind, message, rule) = if actual.caller.as_deref() == Some(requester) {
                (
                    "shadowing",
                    format!(
                        "{name} for {requester} came from {} ({search}), although its own {tag} holds {own}",
                        actual.path
                    ),
                    format!("{search} is searched before {tag}"),
                )
            } else {
                let first = actual.caller.as_deref().unwrap_or("an earlier load");
                (
                    "first_loaded_wins",
                    format!(
                        "{name} for {requester} is {}, which {first} loaded first; its own {tag} holds {own}",
                        actual.path
                    ),
                    "a name already loaded is never searched again (elf/dl-load.c _dl_map_object)".to_owned(),
                )
            };
            out.push(Diagnosis {
                kind,
                host: host.to_owned(),
                pid: Some(pid),
                message,
                files: vec![actual.path.clone(), own],
                requester: Some(requester.to_owned()),
                rule,
            });
        }
    }
}

fn version_skew(host: &str, pid: i64, loads: &[&Load], lib_of: &HashMap<&str, &Library>, out: &mut Vec<Diagnosis>) {
    let mut by_family: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for l in loads.iter().filter(|l| l.cuda) {
        let Some(family) = l.family.as_deref().filter(|f| catalogue::SAME_RELEASE.contains(f)) else { continue };
        let Some(version) = lib_of.get(l.path.as_str()).and_then(|lib| lib.release()) else { continue };
        by_family.entry(family).or_default().entry(version.to_owned()).or_default().push(l.path.clone());
    }
    for (family, versions) in by_family.into_iter().filter(|(_, v)| v.len() > 1) {
        let listed: Vec<String> = versions.iter().map(|(v, paths)| format!("{v} ({})", paths.join(", "))).collect();
        out.push(Diagnosis {
            kind: "version_skew",
            host: host.to_owned(),
            pid: Some(pid),
            message: format!("{family} libraries from different releases in one process: {}", listed.join("; ")),
            files: versions.into_values().flatten().collect(),
            requester: None,
            rule: format!("all {family} libraries must come from one release"),
        });
    }
}

fn driver(libraries: &[Library], out: &mut Vec<Diagnosis>) {
    let runtimes: BTreeSet<u32> = libraries
        .iter()
        .filter(|l| l.family == "cudart")
        .filter_map(|l| cuda::cudart_major(l.soname.as_deref()?))
        .collect();
    for lib in libraries.iter().filter(|l| l.family == "cuda") {
        if lib.path.contains("/stubs/") {
            out.push(Diagnosis {
                kind: "driver_stub",
                host: String::new(),
                pid: None,
                message: format!(
                    "{} is the link-time stub of the driver: it must never be loaded at run time",
                    lib.path
                ),
                files: vec![lib.path.clone()],
                requester: None,
                rule: "stubs/libcuda.so is for linking only".into(),
            });
            continue;
        }
        // The driver's version: its file name, else the kernel module's.
        let driver = cuda::libcuda_version(Path::new(&lib.path)).or_else(cuda::kernel_driver_version);
        if lib.path.contains("/compat/") {
            out.push(Diagnosis {
                kind: "driver_compat",
                host: String::new(),
                pid: None,
                message: format!(
                    "libcuda.so.1 is the forward-compatibility driver {} ({}): it works only on data-center GPUs with a supported kernel driver branch",
                    driver.as_deref().unwrap_or("of unknown version"),
                    lib.path
                ),
                files: vec![lib.path.clone()],
                requester: None,
                rule: "cuda-compat replaces the user-mode driver, not the kernel module".into(),
            });
        }
        let Some(driver) = driver else { continue };
        for major in &runtimes {
            let Some(min) = cuda::min_driver(*major) else { continue };
            if cuda::version_lt(&driver, min) {
                out.push(Diagnosis {
                    kind: "driver_too_old",
                    host: String::new(),
                    pid: None,
                    message: format!(
                        "driver {driver} ({}) is older than {min}, the minimum for CUDA {major} runtimes",
                        lib.path
                    ),
                    files: vec![lib.path.clone()],
                    requester: None,
                    rule: format!("CUDA {major}.x needs driver >= {min}"),
                });
            }
        }
    }
}
