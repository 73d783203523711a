//! Stage 1, events → facts: a pure fold of the trace. No file, record or
//! driver of any machine is read here; what the trace says is all there is.

use std::collections::{BTreeMap, BTreeSet};

use super::events::{Envelope, Event, Load};
use super::provenance::{self, Origin};
use super::summary::{Conflict, Denial, Library, PinUse, Probe, Process, Summary, Untraced};
use crate::vocab::{Tag, VersionSource};

/// What the trace alone says: the summary without origins, version calls or
/// diagnoses, and each process's loads for the rules.
pub struct Facts {
    pub summary: Summary,
    /// Per (host, pid), its successful loads in trace order.
    pub loads: BTreeMap<(String, i64), Vec<Load>>,
}

impl Facts {
    /// The hosts the trace came from (empty names left out).
    pub fn hosts(&self) -> BTreeSet<&str> {
        self.summary.processes.iter().map(|p| p.host.as_str()).filter(|h| !h.is_empty()).collect()
    }
}

/// `pins` are the run's (SONAME, canonical path), to report which were used.
pub fn fold(events: &[Envelope], malformed_lines: usize, pins: &[(String, String)]) -> Facts {
    let mut pin_uses: Vec<PinUse> = pins
        .iter()
        .map(|(soname, path)| PinUse {
            soname: soname.clone(),
            path: path.clone(),
            used_in: BTreeSet::new(),
            redirected: BTreeSet::new(),
        })
        .collect();
    let mut s = Summary { malformed_lines, ..Summary::default() };
    let mut processes: BTreeMap<(String, i64), Process> = BTreeMap::new();
    let mut libraries: BTreeMap<String, Library> = BTreeMap::new();
    let mut loads: BTreeMap<(String, i64), Vec<Load>> = BTreeMap::new();
    for e in events {
        let key = (e.host.clone(), e.pid);
        let process = processes.entry(key.clone()).or_insert_with(|| Process {
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
            Event::Load(l) if !l.ok => s.probes.push(Probe {
                host: e.host.clone(),
                pid: e.pid,
                request: l.request.clone().unwrap_or_default(),
                caller: l.caller.clone(),
                error: l.error.clone(),
            }),
            Event::Load(l) => {
                loads.entry(key).or_default().push(l.clone());
                if l.cuda {
                    add_load(&mut libraries, &mut pin_uses, e, l);
                } else {
                    // A pin may name any library (`--pin libz.so.1=…`):
                    // its use counts though the file has no CUDA row.
                    use_pin(&mut pin_uses, e, l);
                }
            }
            Event::Conflict { family, paths, reason } => s.conflicts.push(Conflict {
                host: e.host.clone(),
                pid: e.pid,
                family: family.clone(),
                paths: paths.clone(),
                reason: reason.clone(),
            }),
            Event::Untraced { exe, reason } => {
                s.untraced.push(Untraced { host: e.host.clone(), pid: e.pid, exe: exe.clone(), reason: reason.clone() })
            }
            Event::Deny { request, caller, reason } => s.denials.push(Denial {
                host: e.host.clone(),
                pid: e.pid,
                request: request.clone(),
                caller: caller.clone(),
                reason: reason.clone(),
            }),
            Event::Unknown => {}
        }
    }
    s.libraries = libraries.into_values().collect();
    s.libraries.sort_by(|a, b| (&a.family, &a.soname, &a.path).cmp(&(&b.family, &b.soname, &b.path)));
    s.processes = processes.into_values().collect();
    s.pins = pin_uses;
    Facts { summary: s, loads }
}

fn add_load(libraries: &mut BTreeMap<String, Library>, pin_uses: &mut [PinUse], e: &Envelope, l: &Load) {
    let lib = libraries.entry(l.path.clone()).or_insert_with(|| {
        // The file name is part of the trace: a release it spells out is
        // known without reading anything.
        let version = provenance::version_from_file_name(&l.path, l.soname.as_deref());
        Library {
            family: l.family.clone().unwrap_or_else(|| Tag::Other(String::new())),
            soname: l.soname.clone(),
            path: l.path.clone(),
            version_source: version.as_ref().map(|_| VersionSource::FileName),
            version,
            origin: Origin::Unknown,
            how: BTreeSet::new(),
            callers: BTreeSet::new(),
            search: BTreeSet::new(),
            processes: BTreeSet::new(),
            pinned: false,
        }
    });
    lib.pinned |= l.pinned;
    lib.how.insert(l.how.clone());
    lib.callers.extend(l.caller.clone());
    lib.search.extend(l.search.clone());
    lib.processes.insert(format!("{}:{}", e.host, e.pid));
    use_pin(pin_uses, e, l);
}

fn use_pin(pin_uses: &mut [PinUse], e: &Envelope, l: &Load) {
    if let Some(pin) = pin_uses.iter_mut().find(|p| p.path == l.path) {
        pin.used_in.insert(format!("{}:{}", e.host, e.pid));
        pin.redirected.extend(l.redirected_from.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::events::parse;
    use culaunch_protocol::event::How;

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
        let s = fold(&events, bad, &[]).summary;
        assert_eq!(s.processes.len(), 2);
        assert_eq!(s.processes[0].exit_status, Some(3));
        assert!(s.processes[1].forked);
        assert_eq!(s.libraries.len(), 1);
        let lib = &s.libraries[0];
        assert_eq!(lib.processes.len(), 2);
        assert_eq!(lib.how.iter().cloned().collect::<Vec<_>>(), [Tag::Known(How::Dlopen), Tag::Known(How::Inherited)]);
        assert_eq!(s.conflicts.len(), 1);
    }
}
