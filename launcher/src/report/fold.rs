//! Stage 1, events → facts: a pure fold of the trace. No file, record or
//! driver of any machine is read here; what the trace says is all there is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use culaunch_protocol::event::How;

use super::events::{Envelope, Event, FileFacts, Load};
use super::provenance::{self, Origin};
use super::summary::{process_name, Conflict, Denial, Library, PinUse, Probe, Process, Summary, Untraced};
use crate::vocab::{Tag, VersionSource};

/// What the trace alone says: the summary without origins, version calls or
/// diagnoses, and each process's loads for the rules.
pub struct Facts {
    pub summary: Summary,
    /// Per process, its successful loads in trace order. One copy of
    /// each distinct load, shared: the ranks of a job load the same files.
    pub loads: BTreeMap<Key, Vec<Rc<Load>>>,
    /// Per process, its failed loads, each with how many of `loads`
    /// came before it: what a failed load is explained against.
    pub failures: BTreeMap<Key, Vec<Failed>>,
    /// Per process, the variables its start recorded (LD_LIBRARY_PATH,
    /// CUDA_HOME, …).
    pub env: BTreeMap<Key, BTreeMap<String, String>>,
}

/// A process of the trace: host, pid, and which of the processes seen
/// under that host and pid (1, 2, …; `Process::instance`).
pub type Key = (String, i64, u32);

/// A failed load, and how many of its process's `loads` came before it.
pub type Failed = (usize, Rc<Load>);

impl Facts {
    /// The hosts the trace came from (empty names left out).
    pub fn hosts(&self) -> BTreeSet<&str> {
        self.summary.processes.iter().map(|p| p.host.as_str()).filter(|h| !h.is_empty()).collect()
    }
}

/// `pins` are the run's (SONAME, canonical path), to report which were used.
#[cfg(test)]
pub fn fold(events: &[Envelope], malformed_lines: usize, pins: &[(String, String)]) -> Facts {
    let mut f = Folder::new(pins, None);
    events.iter().for_each(|e| f.push(e));
    f.finish(malformed_lines)
}

/// The fold one event at a time, so that a report over many files never
/// holds their events at once.
pub struct Folder {
    s: Summary,
    pin_uses: Vec<PinUse>,
    processes: BTreeMap<Key, Process>,
    seen: BTreeMap<Key, Seen>,
    libraries: BTreeMap<String, Library>,
    loads: BTreeMap<Key, Vec<Rc<Load>>>,
    distinct: HashSet<Rc<Load>>,
    /// Per process, how many of its loads of each file no failure took
    /// back.
    mapped: BTreeMap<Key, BTreeMap<String, usize>>,
    /// Per (host, path), the last facts written: every rank's culaunch
    /// writes its own, and they say the same.
    facts: BTreeMap<(String, String), FileFacts>,
    /// Only this process tree, when set: (host, pid) of its root.
    scope: Option<(String, i64)>,
    /// The pid that started the root (culaunch, for a live run).
    root_parent: Option<i64>,
    failures: BTreeMap<Key, Vec<Failed>>,
    env: BTreeMap<Key, BTreeMap<String, String>>,
    /// Which trace file the events come from (`next_file`): one culaunch
    /// writes one file, so a pid in two files is two processes (ranks each
    /// in a pid namespace of its own, on one host name).
    file: usize,
    /// Per (file, host, pid), the instance its events now belong to.
    current: HashMap<(usize, String, i64), u32>,
    /// Per (host, pid), how many processes the trace showed under it.
    instances: HashMap<(String, i64), u32>,
}

/// What decides whether a process was traced, or only passed through.
#[derive(Default)]
struct Seen {
    started: bool,
    /// Wrote an event of its own (a load, an exit, …) beyond `untraced`: the
    /// module ran in it, even if its start is not in the trace.
    acted: bool,
    /// Loads of its own (not inherited at fork).
    own_loads: bool,
    /// The last thing it did was exec a program culaunch does not run in.
    exec_untraced: bool,
    /// Its image got past the loader's start-up: it said so
    /// (`process_loaded`), was forked, exited, was refused (the refusal
    /// says why it ended) or loaded something after start-up.
    past_start: bool,
    /// Wrote its `process_exit`: a start after it is another process's,
    /// under the same pid.
    exited: bool,
    /// Started with LD_TRACE_LOADED_OBJECTS: the loader lists its
    /// libraries and ends it before `main`, by design.
    listing: bool,
}

impl Folder {
    /// `scope`: fold only the processes descending from this (host, pid)
    /// (a run's own command), whatever else appended to the same file.
    pub fn new(pins: &[(String, String)], scope: Option<(String, i64)>) -> Folder {
        let pin_uses = pins
            .iter()
            .map(|(soname, path)| PinUse {
                soname: soname.clone(),
                path: path.clone(),
                used_in: BTreeSet::new(),
                redirected: BTreeSet::new(),
            })
            .collect();
        Folder {
            s: Summary::default(),
            pin_uses,
            processes: BTreeMap::new(),
            seen: BTreeMap::new(),
            libraries: BTreeMap::new(),
            loads: BTreeMap::new(),
            distinct: HashSet::new(),
            mapped: BTreeMap::new(),
            facts: BTreeMap::new(),
            scope,
            root_parent: None,
            failures: BTreeMap::new(),
            env: BTreeMap::new(),
            file: 0,
            current: HashMap::new(),
            instances: HashMap::new(),
        }
    }

    /// The events pushed from now on come from another trace file.
    pub fn next_file(&mut self) {
        self.file += 1;
    }

    /// The process `e` is from. A pid is one process until its exit, or
    /// until a forked child's start shows it is a new one (the old one was
    /// killed without a word); then the pid was reused.
    fn key_of(&mut self, e: &Envelope) -> Key {
        let slot = (self.file, e.host.clone(), e.pid);
        if let Some(&n) = self.current.get(&slot) {
            let key = (e.host.clone(), e.pid, n);
            let seen = self.seen.get(&key);
            let anew = match &e.event {
                Event::ProcessStart { forked, .. } => {
                    seen.is_some_and(|s| s.exited || (*forked && (s.started || s.acted)))
                }
                _ => false,
            };
            if !anew {
                return key;
            }
        }
        let n = self.instances.entry((e.host.clone(), e.pid)).or_default();
        *n += 1;
        self.current.insert(slot, *n);
        (e.host.clone(), e.pid, *n)
    }

    /// The instance of `pid` now running in the current file.
    fn running(&self, host: &str, pid: i64) -> Option<u32> {
        self.current.get(&(self.file, host.to_owned(), pid)).copied()
    }

    /// Whether the event belongs to the scope. A process joins when it
    /// starts as the root or as a child of a member; the root's pid is a
    /// member from the start, so the children of an untraced command (a
    /// static program) still join.
    fn in_scope(&mut self, e: &Envelope) -> bool {
        let Some((host, root)) = &self.scope else { return true };
        if !(e.host.is_empty() || host.is_empty() || e.host == *host) {
            return false;
        }
        if e.pid == *root || self.running(&e.host, e.pid).is_some() {
            return true;
        }
        // culaunch itself writes the `untraced` event of a command it
        // cannot trace (another ELF class): the root's parent speaks for it.
        if matches!(e.event, Event::Untraced { .. }) && self.root_parent == Some(e.pid) {
            return true;
        }
        // A vfork child that exec'd an untraced program writes only its
        // `untraced` event: it joins to be listed, not counted.
        matches!(e.event, Event::ProcessStart { .. } | Event::Untraced { .. })
            && (e.ppid == *root || self.running(&e.host, e.ppid).is_some())
    }

    /// The process that started the scope's root, whose `untraced` events
    /// about the root belong to the scope.
    pub fn with_root_parent(mut self, pid: i64) -> Folder {
        self.root_parent = Some(pid);
        self
    }

    pub fn push(&mut self, e: &Envelope) {
        if let Event::Facts(f) = &e.event {
            // About a file, not a process: kept whoever wrote it.
            self.facts.insert((e.host.clone(), f.path.clone()), f.clone());
            return;
        }
        if let Event::Incomplete {} = &e.event {
            // About the trace, from the launcher: a run's own summary takes
            // its own launcher's word only.
            if self.scope.is_none() || self.root_parent == Some(e.pid) {
                self.s.trace_incomplete = true;
            }
            return;
        }
        if !self.in_scope(e) {
            return;
        }
        let key = self.key_of(e);
        // 0: its parent is not among this file's processes (a file is one
        // culaunch's: a pid in another file is another process).
        let parent_instance = self.running(&e.host, e.ppid).unwrap_or(0);
        self.keep_for_failures(&key, e);
        let s = &mut self.s;
        let name = process_name(&key.0, key.1, key.2);
        let seen = self.seen.entry(key.clone()).or_default();
        let process = self.processes.entry(key.clone()).or_insert_with(|| Process {
            host: e.host.clone(),
            pid: e.pid,
            ppid: e.ppid,
            exe: None,
            argv: Vec::new(),
            forked: false,
            exit_status: None,
            rank: None,
            local_rank: None,
            world_size: None,
            ended_before_main: false,
            instance: key.2,
            parent_instance,
        });
        if !matches!(e.event, Event::Unknown) {
            seen.exec_untraced = false;
        }
        seen.acted |= !matches!(e.event, Event::Untraced { .. } | Event::ProcessStart { .. } | Event::Unknown);
        match &e.event {
            Event::ProcessStart { exe, argv, forked, rank, local_rank, world_size, env } => {
                // After exec the same pid starts again: the last image wins.
                process.exe.clone_from(exe);
                process.argv.clone_from(argv);
                process.forked = *forked;
                process.ppid = e.ppid;
                process.parent_instance = parent_instance;
                // The numbers when the audit module wrote them, else the
                // recorded variables.
                let from_env = crate::compare::identity(|k| env.as_ref()?.get(k).cloned());
                process.rank = rank.or(from_env.rank);
                process.local_rank = local_rank.or(from_env.local_rank);
                process.world_size = world_size.or(from_env.world_size);
                seen.started = true;
                seen.past_start = *forked;
                let listing = culaunch_protocol::env::LD_TRACE_LOADED_OBJECTS;
                seen.listing = env.as_ref().is_some_and(|e| e.contains_key(listing));
            }
            Event::ProcessLoaded {} | Event::Deny { .. } => seen.past_start = true,
            Event::Load(l) if !(l.how.is(How::Initial) || l.how.is(How::Inherited)) => seen.past_start = true,
            _ => {}
        }
        match &e.event {
            Event::ProcessExit { status } => {
                process.exit_status = *status;
                seen.past_start = true;
                seen.exited = true;
            }
            Event::Load(l) if !l.ok => {
                s.probes.push(Probe {
                    host: e.host.clone(),
                    pid: e.pid,
                    instance: key.2,
                    request: l.request.clone().unwrap_or_default(),
                    caller: l.caller.clone(),
                    error: l.error.clone(),
                    path: (!l.path.is_empty()).then(|| l.path.clone()),
                    reason: l.reason.clone(),
                    symbol: l.symbol.clone(),
                    version: l.version.clone(),
                    required_by: l.required_by.clone(),
                    unmapped: l.unmapped.clone(),
                });
                // Mapped, then unmapped by the failure: not loaded. Its loads
                // stay in `loads`, for the rules that explain the failure.
                for path in std::iter::once(&l.path).chain(&l.unmapped).filter(|p| !p.is_empty()) {
                    let mapped = self.mapped.entry(key.clone()).or_default();
                    unload(mapped, &mut self.libraries, &mut s.conflicts, &key, &name, path);
                }
            }
            Event::Load(l) => {
                let l: &Load = l;
                seen.own_loads |= !l.how.is(How::Inherited);
                let shared = match self.distinct.get(l) {
                    Some(known) => known.clone(),
                    None => {
                        let new = Rc::new(l.clone());
                        self.distinct.insert(new.clone());
                        new
                    }
                };
                *self.mapped.entry(key.clone()).or_default().entry(l.path.clone()).or_default() += 1;
                self.loads.entry(key).or_default().push(shared);
                if l.cuda {
                    add_load(&mut self.libraries, &mut self.pin_uses, &name, l);
                } else {
                    // A pin may name any library (`--pin libz.so.1=…`):
                    // its use counts though the file has no CUDA row.
                    use_pin(&mut self.pin_uses, &name, l);
                }
            }
            Event::Conflict { family, paths, reason } => s.conflicts.push(Conflict {
                host: e.host.clone(),
                pid: e.pid,
                instance: key.2,
                family: family.clone(),
                paths: paths.clone(),
                reason: reason.clone(),
            }),
            Event::Untraced { exe, reason } => {
                seen.exec_untraced = true;
                s.untraced.push(Untraced {
                    host: e.host.clone(),
                    pid: e.pid,
                    instance: key.2,
                    exe: exe.clone(),
                    reason: reason.clone(),
                })
            }
            Event::Deny { request, caller, reason } => s.denials.push(Denial {
                host: e.host.clone(),
                pid: e.pid,
                instance: key.2,
                request: request.clone(),
                caller: caller.clone(),
                reason: reason.clone(),
            }),
            Event::ProcessStart { .. }
            | Event::ProcessLoaded {}
            | Event::Facts(_)
            | Event::Incomplete {}
            | Event::Unknown => {}
        }
    }

    /// What a failed load is explained against: where it came among the
    /// process's loads, and the environment its start recorded.
    fn keep_for_failures(&mut self, key: &Key, e: &Envelope) {
        match &e.event {
            Event::Load(l) if !l.ok => {
                let at = self.loads.get(key).map_or(0, Vec::len);
                self.failures.entry(key.clone()).or_default().push((at, Rc::new(Load::clone(l))));
            }
            Event::ProcessStart { env: Some(env), .. } => {
                self.env.insert(key.clone(), env.clone());
            }
            _ => {}
        }
    }

    pub fn finish(mut self, malformed_lines: usize) -> Facts {
        // Not traced: a pid that only said it exec'd an untraced program (a
        // vfork child exec'ing one with a cleared environment), or a forked
        // child that did nothing of its own before exec'ing one (ctypes'
        // ldconfig). They are listed under `untraced`, never counted.
        let passed: BTreeSet<Key> = self
            .seen
            .iter()
            .filter(|(k, s)| {
                (!s.started && !s.acted)
                    || (s.exec_untraced && !s.own_loads && self.processes.get(*k).is_some_and(|p| p.forked))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &passed {
            self.processes.remove(k);
            self.loads.remove(k);
            self.failures.remove(k);
            self.env.remove(k);
        }
        let passed_names: BTreeSet<String> = passed.iter().map(|(h, p, n)| process_name(h, *p, *n)).collect();
        for lib in self.libraries.values_mut() {
            lib.processes.retain(|p| !passed_names.contains(p));
        }
        self.libraries.retain(|_, l| !l.processes.is_empty());
        for pin in &mut self.pin_uses {
            pin.used_in.retain(|p| !passed_names.contains(p));
        }
        for ((host, _), f) in std::mem::take(&mut self.facts) {
            let Some(lib) = self.libraries.get_mut(&f.path) else { continue };
            if !host.is_empty() && !lib.hosts().any(|h| h == host || h.is_empty()) {
                continue;
            }
            lib.replaced |= f.replaced;
            if let Some(origin) = f.origin {
                lib.origin = origin;
            }
            if f.version.is_some() {
                (lib.version, lib.version_source) = (f.version, f.version_source);
            }
        }
        for (key, seen) in &self.seen {
            if let Some(p) = self.processes.get_mut(key) {
                p.ended_before_main = seen.started && !seen.past_start && !seen.listing;
            }
        }
        let mut s = self.s;
        s.malformed_lines = malformed_lines;
        s.libraries = self.libraries.into_values().collect();
        s.libraries.sort_by(|a, b| (&a.family, &a.soname, &a.path).cmp(&(&b.family, &b.soname, &b.path)));
        s.processes = self.processes.into_values().collect();
        s.pins = self.pin_uses;
        Facts { summary: s, loads: self.loads, failures: self.failures, env: self.env }
    }
}

/// Takes back a load of `path` in the process `e` is from: when it was
/// the process's only one, the file leaves its library row, and the
/// conflicts it took part in go.
fn unload(
    mapped: &mut BTreeMap<String, usize>,
    libraries: &mut BTreeMap<String, Library>,
    conflicts: &mut Vec<Conflict>,
    key: &Key,
    name: &str,
    path: &str,
) {
    let Some(n) = mapped.get_mut(path) else { return };
    *n -= 1;
    if *n > 0 {
        return;
    }
    mapped.remove(path);
    if let Some(lib) = libraries.get_mut(path) {
        lib.processes.remove(name);
    }
    conflicts
        .retain(|c| !((&c.host, c.pid, c.instance) == (&key.0, key.1, key.2) && c.paths.iter().any(|p| p == path)));
}

fn add_load(libraries: &mut BTreeMap<String, Library>, pin_uses: &mut [PinUse], name: &str, l: &Load) {
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
            files: BTreeMap::new(),
            replaced: false,
        }
    });
    // Another file mapped from the same path on one host: it was replaced
    // in between.
    if let Some(this) = l.file {
        let host = super::summary::parse_process_name(name).map_or("", |(h, _, _)| h);
        lib.replaced |= *lib.files.entry(host.to_owned()).or_insert(this) != this;
    }
    lib.pinned |= l.pinned;
    lib.how.insert(l.how.clone());
    lib.callers.extend(l.caller.clone());
    lib.search.extend(l.search.clone());
    lib.processes.insert(name.to_owned());
    use_pin(pin_uses, name, l);
}

fn use_pin(pin_uses: &mut [PinUse], name: &str, l: &Load) {
    if let Some(pin) = pin_uses.iter_mut().find(|p| p.path == l.path) {
        pin.used_in.insert(name.to_owned());
        pin.redirected.extend(l.redirected_from.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::events::parse;

    /// A CUDA library's load event by `pid` on host h (`extra`: more fields).
    fn load(pid: i64, path: &str, ok: bool, extra: &str) -> String {
        format!(
            r#"{{"pid":{pid},"host":"h","event":"load","how":"dlopen","path":"{path}","soname":"libcudnn_ops_infer.so.8","cuda":true,"family":"cudnn","ok":{ok}{extra}}}"#
        )
    }

    #[test]
    fn a_load_that_failed_after_mapping_is_not_loaded_nor_a_conflict() {
        let trace = [
            r#"{"pid":1,"ppid":0,"host":"h","event":"process_start","exe":"/bin/p"}"#.to_owned(),
            r#"{"pid":2,"ppid":0,"host":"h","event":"process_start","exe":"/bin/p"}"#.to_owned(),
            load(1, "/new/libcudnn_ops_infer.so.8", true, ""),
            load(1, "/w/libcudnn_cnn_infer.so.8", true, ""),
            load(1, "/old/libcudnn_ops_infer.so.8", true, ""),
            r#"{"pid":1,"host":"h","event":"conflict","family":"cudnn","paths":["/new/libcudnn_ops_infer.so.8","/old/libcudnn_ops_infer.so.8"]}"#.to_owned(),
            load(
                1,
                "/w/libcudnn_cnn_infer.so.8",
                false,
                r#","error":"/w/libcudnn_cnn_infer.so.8: undefined symbol: S, version V","reason":"undefined_symbol","symbol":"S","version":"V","unmapped":["/old/libcudnn_ops_infer.so.8"]"#,
            ),
            // Another process has the old file mapped for good.
            load(2, "/old/libcudnn_ops_infer.so.8", true, ""),
        ]
        .join("\n");
        let (events, bad) = parse(trace.as_bytes()).unwrap();
        let f = fold(&events, bad, &[]);
        let rows: Vec<(&str, Vec<&String>)> =
            f.summary.libraries.iter().map(|l| (l.path.as_str(), l.processes.iter().collect())).collect();
        assert_eq!(
            rows,
            [
                ("/new/libcudnn_ops_infer.so.8", vec![&"h:1".to_owned()]),
                ("/old/libcudnn_ops_infer.so.8", vec![&"h:2".to_owned()])
            ]
        );
        assert!(f.summary.conflicts.is_empty());
        let p = &f.summary.probes[0];
        assert!(p.is_failure());
        assert_eq!(
            (p.path.as_deref(), p.reason.as_ref().map(Tag::as_str)),
            (Some("/w/libcudnn_cnn_infer.so.8"), Some("undefined_symbol"))
        );
        assert_eq!((p.symbol.as_deref(), p.version.as_deref()), (Some("S"), Some("V")));
        // The rules still see what was mapped for the attempt.
        assert_eq!(f.loads[&("h".to_owned(), 1, 1)].len(), 3);
    }

    /// A pid reused: a failure in the second process takes back nothing of
    /// the first's, and what each says is its own.
    #[test]
    fn what_a_process_says_stays_its_own_when_its_pid_is_reused() {
        let trace = [
            r#"{"pid":2,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#.to_owned(),
            load(2, "/w/A/libcudart.so.12", true, ""),
            load(2, "/w/B/libcudart.so.12", true, ""),
            r#"{"pid":2,"host":"h","event":"conflict","family":"cudart","paths":["/w/A/libcudart.so.12","/w/B/libcudart.so.12"]}"#.to_owned(),
            r#"{"pid":2,"host":"h","event":"process_exit","status":0}"#.to_owned(),
            r#"{"pid":2,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#.to_owned(),
            load(2, "/w/A/libcudart.so.12", true, ""),
            load(2, "/w/A/libplug.so", false, r#","error":"x","unmapped":["/w/A/libcudart.so.12"]"#),
            r#"{"pid":2,"host":"h","event":"deny","request":"libz.so","reason":"r"}"#.to_owned(),
        ]
        .join("\n");
        let (events, bad) = parse(trace.as_bytes()).unwrap();
        let f = fold(&events, bad, &[]);
        let conflicts: Vec<(i64, u32)> = f.summary.conflicts.iter().map(|c| (c.pid, c.instance)).collect();
        assert_eq!(conflicts, [(2, 1)], "the first process's conflict stays");
        assert_eq!(f.summary.probes.iter().map(|p| p.instance).collect::<Vec<_>>(), [2]);
        assert_eq!(f.summary.denials.iter().map(|d| d.instance).collect::<Vec<_>>(), [2]);
        let rows: Vec<(&str, Vec<&str>)> = f
            .summary
            .libraries
            .iter()
            .map(|l| (l.path.as_str(), l.processes.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(rows, [("/w/A/libcudart.so.12", vec!["h:2"]), ("/w/B/libcudart.so.12", vec!["h:2"])]);
    }

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

    fn lines(lines: &[&str]) -> Vec<Envelope> {
        parse(lines.join("\n").as_bytes()).unwrap().0
    }

    fn cudart(pid: i64, major: u32) -> String {
        format!(
            r#"{{"pid":{pid},"host":"h","event":"load","how":"dlopen","path":"/w/libcudart.so.{major}","soname":"libcudart.so.{major}","cuda":true,"family":"cudart"}}"#
        )
    }

    /// One path mapped as two files is a replacement only on one host: two
    /// nodes (or NFS clients) give one file other device numbers.
    #[test]
    fn one_path_as_two_files_is_replaced_only_within_a_host() {
        let load = |host: &str, pid: i64, ino: u64| {
            format!(
                r#"{{"pid":{pid},"host":"{host}","event":"load","how":"dlopen","path":"/w/libcudart.so.12","soname":"libcudart.so.12","cuda":true,"family":"cudart","file":{{"dev":2049,"ino":{ino}}}}}"#
            )
        };
        let fold_of = |l: &[String]| {
            let l: Vec<&str> = l.iter().map(String::as_str).collect();
            fold(&lines(&l), 0, &[]).summary.libraries.into_iter().map(|lib| lib.replaced).collect::<Vec<_>>()
        };
        assert_eq!(fold_of(&[load("a", 1, 10), load("b", 1, 99)]), [false]);
        assert_eq!(fold_of(&[load("a", 1, 10), load("a", 2, 10)]), [false]);
        assert_eq!(fold_of(&[load("a", 1, 10), load("b", 1, 99), load("a", 2, 11)]), [true]);
    }

    #[test]
    fn a_parent_is_looked_for_in_the_childs_own_file_only() {
        let mut f = Folder::new(&[], None);
        let events = lines(&[
            r#"{"pid":1,"ppid":0,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#,
            r#"{"pid":2,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#,
        ]);
        events.iter().for_each(|e| f.push(e));
        f.next_file();
        f.push(&events[1]);
        let parents: Vec<(u32, u32)> = f
            .finish(0)
            .summary
            .processes
            .iter()
            .filter(|p| p.pid == 2)
            .map(|p| (p.instance, p.parent_instance))
            .collect();
        assert_eq!(parents, [(1, 1), (2, 0)], "the second file's pid 2 is not h:1's child");
    }

    #[test]
    fn a_pid_used_again_after_its_exit_or_by_a_forked_child_is_another_process() {
        let (a, b, c) = (cudart(7, 11), cudart(7, 12), cudart(7, 13));
        let events = lines(&[
            r#"{"pid":1,"ppid":0,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#,
            r#"{"pid":7,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#,
            &a,
            // exec: the same process
            r#"{"pid":7,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/env"}"#,
            r#"{"pid":7,"host":"h","event":"process_exit","status":0}"#,
            r#"{"pid":7,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#,
            &b,
            // killed without a word; a forked child gets its pid
            r#"{"pid":7,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3","forked":true}"#,
            &c,
        ]);
        let f = fold(&events, 0, &[]);
        let names: Vec<String> = f.summary.processes.iter().map(|p| process_name(&p.host, p.pid, p.instance)).collect();
        assert_eq!(names, ["h:1", "h:7", "h:7#2", "h:7#3"]);
        assert_eq!(f.summary.processes[1].exe.as_deref(), Some("/usr/bin/env"));
        assert_eq!(f.summary.processes[1].exit_status, Some(0));
        let mapped: Vec<Vec<&str>> =
            f.summary.libraries.iter().map(|l| l.processes.iter().map(String::as_str).collect()).collect();
        assert_eq!(mapped, [["h:7"], ["h:7#2"], ["h:7#3"]]);
        assert_eq!(f.loads.keys().map(|k| k.2).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(f.summary.processes.iter().all(|p| p.pid != 7 || p.parent_instance == 1));
    }

    #[test]
    fn one_pid_in_two_trace_files_is_two_processes() {
        // Two ranks, each in a pid namespace of its own on one host name:
        // one culaunch, one trace file each.
        let rank = |r: i64, major: u32| {
            lines(&[
                &format!(
                    r#"{{"pid":2,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3","rank":{r}}}"#
                ),
                &cudart(2, major),
            ])
        };
        let mut f = Folder::new(&[], None);
        rank(0, 12).iter().for_each(|e| f.push(e));
        f.next_file();
        rank(1, 11).iter().for_each(|e| f.push(e));
        let s = f.finish(0).summary;
        let ranks: Vec<(Option<i64>, u32)> = s.processes.iter().map(|p| (p.rank, p.instance)).collect();
        assert_eq!(ranks, [(Some(0), 1), (Some(1), 2)]);
        let mapped: Vec<Vec<&str>> =
            s.libraries.iter().map(|l| l.processes.iter().map(String::as_str).collect()).collect();
        assert_eq!(mapped, [["h:2#2"], ["h:2"]]);
        assert_eq!(super::super::summary::parse_process_name("h:2#2"), Some(("h", 2, 2)));
        assert_eq!(super::super::summary::parse_process_name("a:b:2"), Some(("a:b", 2, 1)));
    }

    #[test]
    fn a_forked_child_that_only_execs_an_untraced_program_is_listed_not_counted() {
        let events = lines(&[
            r#"{"pid":1,"ppid":0,"host":"h","event":"process_start","exe":"/usr/bin/python3"}"#,
            r#"{"pid":1,"host":"h","event":"load","how":"dlopen","path":"/w/libcudart.so.12","cuda":true,"family":"cudart"}"#,
            // fork, then exec of ldconfig with a cleared environment
            r#"{"pid":2,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3","forked":true}"#,
            r#"{"pid":2,"ppid":1,"host":"h","event":"load","how":"inherited","path":"/w/libcudart.so.12","cuda":true,"family":"cudart"}"#,
            r#"{"pid":2,"ppid":1,"host":"h","event":"untraced","exe":"/sbin/ldconfig","reason":"cleared"}"#,
            // vfork, then the same: no process_start at all
            r#"{"pid":3,"ppid":1,"host":"h","event":"untraced","exe":"/sbin/ldconfig","reason":"cleared"}"#,
            // a forked worker that spawns an untraced program and goes on
            r#"{"pid":4,"ppid":1,"host":"h","event":"process_start","exe":"/usr/bin/python3","forked":true}"#,
            r#"{"pid":4,"ppid":1,"host":"h","event":"untraced","exe":"/bin/static","reason":"static"}"#,
            r#"{"pid":4,"ppid":1,"host":"h","event":"process_exit","status":0}"#,
        ]);
        let s = fold(&events, 0, &[]).summary;
        assert_eq!(s.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(s.untraced.len(), 3);
        assert_eq!(s.libraries[0].processes.iter().collect::<Vec<_>>(), ["h:1"]);
    }

    #[test]
    fn a_scoped_fold_keeps_only_the_roots_tree_on_its_host() {
        let events = lines(&[
            r#"{"pid":10,"ppid":9,"host":"a","event":"process_start","exe":"/bin/x","rank":0}"#,
            r#"{"pid":20,"ppid":19,"host":"a","event":"process_start","exe":"/bin/other-run"}"#,
            r#"{"pid":11,"ppid":10,"host":"a","event":"process_start","exe":"/bin/child"}"#,
            r#"{"pid":12,"ppid":11,"host":"a","event":"process_start","exe":"/bin/grandchild"}"#,
            r#"{"pid":21,"ppid":20,"host":"a","event":"process_start","exe":"/bin/other-child"}"#,
            r#"{"pid":11,"ppid":10,"host":"b","event":"process_start","exe":"/bin/same-pid-elsewhere"}"#,
            r#"{"pid":20,"host":"a","event":"load","how":"dlopen","path":"/w/libcudart.so.11.0","cuda":true,"family":"cudart"}"#,
            r#"{"pid":12,"host":"a","event":"load","how":"dlopen","path":"/w/libcudart.so.12","cuda":true,"family":"cudart"}"#,
        ]);
        let mut f = Folder::new(&[], Some(("a".into(), 10)));
        events.iter().for_each(|e| f.push(e));
        let s = f.finish(0).summary;
        let got: Vec<(&str, i64)> = s.processes.iter().map(|p| (p.host.as_str(), p.pid)).collect();
        assert_eq!(got, [("a", 10), ("a", 11), ("a", 12)]);
        assert_eq!(s.processes[0].rank, Some(0));
        assert_eq!(s.libraries.len(), 1);
        assert_eq!(s.libraries[0].path, "/w/libcudart.so.12");
    }

    #[test]
    fn rank_comes_from_the_numbers_else_the_recorded_variables() {
        let events = lines(&[
            r#"{"pid":1,"host":"h","event":"process_start","rank":5,"world_size":8,"env":{"RANK":"1"}}"#,
            r#"{"pid":2,"host":"h","event":"process_start","env":{"OMPI_COMM_WORLD_RANK":"3"}}"#,
        ]);
        let s = fold(&events, 0, &[]).summary;
        assert_eq!((s.processes[0].rank, s.processes[0].world_size), (Some(5), Some(8)));
        assert_eq!(s.processes[1].rank, Some(3));
    }
}
