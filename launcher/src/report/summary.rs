//! From events to the end-of-run summary (SPEC.md, "The summary"): one row per
//! CUDA library file, the processes, and the conflicts.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::diagnose::{self, Diagnosis};
use super::events::{Envelope, Event};
use super::provenance::{self, Origin};

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub processes: Vec<Process>,
    pub libraries: Vec<Library>,
    pub conflicts: Vec<Conflict>,
    /// Loads refused under --strict/--locked.
    pub denials: Vec<Denial>,
    /// The run's pins and where each was used (empty for `report`, which
    /// does not know them).
    pub pins: Vec<PinUse>,
    /// What will bite, with the rule behind it.
    pub diagnoses: Vec<Diagnosis>,
    /// Loads that failed (the library was found nowhere); programs often
    /// tolerate them, probing for optional libraries.
    pub probes: Vec<Probe>,
    /// Programs started by traced processes that the loader does not run
    /// culaunch in, and why.
    pub untraced: Vec<Untraced>,
    /// Trace lines that were not valid events.
    pub malformed_lines: usize,
}

#[derive(Debug, Serialize)]
pub struct Denial {
    pub host: String,
    pub pid: i64,
    pub request: String,
    pub caller: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Untraced {
    pub host: String,
    /// The process that started it.
    pub pid: i64,
    pub exe: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Probe {
    pub host: String,
    pub pid: i64,
    pub request: String,
    pub caller: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PinUse {
    pub soname: String,
    pub path: String,
    /// `host:pid` of the processes that mapped the pinned file.
    pub used_in: BTreeSet<String>,
    /// Requests the pin redirected (names or other copies' paths).
    pub redirected: BTreeSet<String>,
}

#[derive(Debug, Serialize)]
pub struct Process {
    pub host: String,
    pub pid: i64,
    pub ppid: i64,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    /// Started by fork without exec: it inherited its parent's libraries.
    pub forked: bool,
    pub exit_status: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Library {
    pub family: String,
    pub soname: Option<String>,
    pub path: String,
    pub version: Option<String>,
    /// Where `version` came from: `pip`, `conda`, `toolkit version.json`,
    /// `file name`, or the library's own call (`cudaRuntimeGetVersion`, …).
    pub version_source: Option<String>,
    pub origin: Origin,
    /// `how` values seen, e.g. `needed`, `dlopen`.
    pub how: BTreeSet<String>,
    /// Objects that asked for it.
    pub callers: BTreeSet<String>,
    /// Search steps that found it (`rpath_runpath`, `ld_library_path`, …).
    pub search: BTreeSet<String>,
    /// `host:pid` of every process that had it mapped.
    pub processes: BTreeSet<String>,
    /// Mapped because a pin asked for this file.
    pub pinned: bool,
}

impl Library {
    /// The release this file belongs to, when an installer's records or the
    /// file name say so (a version call answers in its own terms, which do
    /// not compare across libraries).
    pub fn release(&self) -> Option<&str> {
        const RECORDS: &[&str] = &["pip", "conda", "toolkit version.json", "file name"];
        self.version.as_deref().filter(|_| self.version_source.as_deref().is_some_and(|s| RECORDS.contains(&s)))
    }
}

#[derive(Debug, Serialize)]
pub struct Conflict {
    pub host: String,
    pub pid: i64,
    pub family: String,
    pub paths: Vec<String>,
    pub reason: Option<String>,
}

/// How much of this machine a summary may consult.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Right after a run here: the files are this machine's, and a
    /// library's own version call may be made (in a helper process).
    ThisRun,
    /// Trace files from anywhere (`culaunch report`): installers' records
    /// are read, but no library named in them is ever loaded.
    Files,
}

/// `pins` are the run's (SONAME, canonical path), to report which were used.
pub fn summarise(events: &[Envelope], malformed_lines: usize, pins: &[(String, String)], source: Source) -> Summary {
    let mut pin_uses: Vec<PinUse> = pins
        .iter()
        .map(|(soname, path)| PinUse {
            soname: soname.clone(),
            path: path.clone(),
            used_in: BTreeSet::new(),
            redirected: BTreeSet::new(),
        })
        .collect();
    let mut denials = Vec::new();
    let mut probes = Vec::new();
    let mut untraced = Vec::new();
    let mut processes: BTreeMap<(String, i64), Process> = BTreeMap::new();
    let mut libraries: BTreeMap<String, Library> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for e in events {
        // Written by the parent about a child: not a process of its own
        // (culaunch writes one for a command it cannot trace).
        if let Event::Untraced { exe, reason } = &e.event {
            untraced.push(Untraced { host: e.host.clone(), pid: e.pid, exe: exe.clone(), reason: reason.clone() });
            continue;
        }
        let key = (e.host.clone(), e.pid);
        let process = processes.entry(key).or_insert_with(|| Process {
            host: e.host.clone(),
            pid: e.pid,
            ppid: e.ppid,
            exe: None,
            argv: Vec::new(),
            forked: false,
            exit_status: None,
        });
        match &e.event {
            Event::ProcessStart { exe, argv, forked } => {
                // After exec the same pid starts again: the last image wins.
                process.exe.clone_from(exe);
                process.argv.clone_from(argv);
                process.forked = *forked;
                process.ppid = e.ppid;
            }
            Event::ProcessExit { status } => process.exit_status = *status,
            Event::Load(l) if !l.ok => probes.push(Probe {
                host: e.host.clone(),
                pid: e.pid,
                request: l.request.clone().unwrap_or_default(),
                caller: l.caller.clone(),
                error: l.error.clone(),
            }),
            Event::Load(l) if l.cuda => {
                let lib = libraries.entry(l.path.clone()).or_insert_with(|| Library {
                    family: l.family.clone().unwrap_or_default(),
                    soname: l.soname.clone(),
                    path: l.path.clone(),
                    version: None,
                    version_source: None,
                    origin: Origin::Unknown,
                    how: BTreeSet::new(),
                    callers: BTreeSet::new(),
                    search: BTreeSet::new(),
                    processes: BTreeSet::new(),
                    pinned: false,
                });
                lib.pinned |= l.pinned;
                lib.how.insert(l.how.clone());
                lib.callers.extend(l.caller.clone());
                lib.search.extend(l.search.clone());
                lib.processes.insert(format!("{}:{}", e.host, e.pid));
                if let Some(pin) = pin_uses.iter_mut().find(|p| p.path == l.path) {
                    pin.used_in.insert(format!("{}:{}", e.host, e.pid));
                    pin.redirected.extend(l.redirected_from.clone());
                }
            }
            Event::Conflict { family, paths, reason } => conflicts.push(Conflict {
                host: e.host.clone(),
                pid: e.pid,
                family: family.clone(),
                paths: paths.clone(),
                reason: reason.clone(),
            }),
            Event::Untraced { .. } => {}
            Event::Deny { request, caller, reason } => denials.push(Denial {
                host: e.host.clone(),
                pid: e.pid,
                request: request.clone(),
                caller: caller.clone(),
                reason: reason.clone(),
            }),
            Event::Load(_) | Event::Unknown => {}
        }
    }
    let mut libraries: Vec<Library> = libraries.into_values().collect();
    let mut origins = provenance::Finder::default();
    for lib in &mut libraries {
        lib.origin = origins.origin(std::path::Path::new(&lib.path));
        let found = match lib.origin.version() {
            Some(v) => Some((v.to_owned(), lib.origin.version_source().to_owned())),
            None => provenance::version_from_file_name(&lib.path, lib.soname.as_deref())
                .map(|v| (v, "file name".to_owned()))
                .or_else(|| {
                    (source == Source::ThisRun).then(|| crate::probe::version_of(std::path::Path::new(&lib.path)))?
                }),
        };
        (lib.version, lib.version_source) = found.unzip();
    }
    libraries.sort_by(|a, b| (&a.family, &a.soname, &a.path).cmp(&(&b.family, &b.soname, &b.path)));
    let diagnoses = diagnose::diagnose(events, &libraries);
    Summary {
        processes: processes.into_values().collect(),
        libraries,
        conflicts,
        denials,
        pins: pin_uses,
        diagnoses,
        probes,
        untraced,
        malformed_lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::events::parse;

    #[test]
    fn one_row_per_file_counting_processes_and_ways() {
        let trace = concat!(
            r#"{"pid":1,"ppid":0,"host":"h","event":"process_start","exe":"/usr/bin/python3","argv":["python3"]}"#,
            "\n",
            r#"{"pid":1,"host":"h","event":"load","how":"dlopen","caller":"/usr/bin/python3","path":"/w/libcudart.so.12","soname":"libcudart.so.12","cuda":true,"family":"cudart"}"#,
            "\n",
            r#"{"pid":2,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3","forked":true}"#,
            "\n",
            r#"{"pid":2,"host":"h","event":"load","how":"inherited","path":"/w/libcudart.so.12","cuda":true,"family":"cudart"}"#,
            "\n",
            r#"{"pid":1,"host":"h","event":"load","how":"initial","path":"/lib/libc.so.6","cuda":false}"#,
            "\n",
            r#"{"pid":1,"host":"h","event":"conflict","family":"cudart","paths":["/a","/b"]}"#,
            "\n",
            r#"{"pid":1,"host":"h","event":"process_exit","status":3}"#,
            "\n",
        );
        let (events, bad) = parse(trace.as_bytes()).unwrap();
        let s = summarise(&events, bad, &[], Source::Files);
        assert_eq!(s.processes.len(), 2);
        assert_eq!(s.processes[0].exit_status, Some(3));
        assert!(s.processes[1].forked);
        assert_eq!(s.libraries.len(), 1);
        let lib = &s.libraries[0];
        assert_eq!(lib.processes.len(), 2);
        assert_eq!(lib.how.iter().map(String::as_str).collect::<Vec<_>>(), ["dlopen", "inherited"]);
        assert_eq!(s.conflicts.len(), 1);
    }
}
