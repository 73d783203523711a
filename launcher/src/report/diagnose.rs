//! Stage 3 for the report, facts → diagnoses: what in a run's loads will
//! bite, each naming the files, the requesting object and the loader rule
//! behind it. Rules that need this machine's files ask the [`Machine`], and
//! run only for processes on this machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::rc::Rc;

use culaunch_protocol::catalogue;
use culaunch_protocol::event::How;

use super::events::Load;
use super::machine::Machine;
use super::provenance::{Origin, RecordHash};
use super::summary::Library;
use crate::rules::{self, Diagnosis, Kind};
use crate::vocab::{Family, Tag};
use crate::{cuda, elf};

/// A failed load left to the probes, not explained: found nowhere, refused
/// (its `deny` says why), or of an unknown cause with nothing mapped.
fn is_probe(l: &Load, f: &rules::Failure) -> bool {
    use rules::FailReason;
    matches!(f.reason, FailReason::NotFound | FailReason::Refused)
        || (f.reason == FailReason::Failed && l.path.is_empty())
}

/// A failed load's cause, from its fields or glibc's words.
fn failure_of(l: &Load) -> rules::Failure {
    rules::Failure::from_trace(
        // As spelled in the trace (a name this version does not know falls
        // back to glibc's words).
        l.reason.as_ref().map(ToString::to_string).as_deref(),
        l.error.as_deref(),
        l.symbol.as_deref(),
        l.version.as_deref(),
        l.required_by.as_deref(),
        !l.path.is_empty(),
    )
}

/// Each failed load that mapped something, or failed for a cause other
/// than being found nowhere, explained from this machine's files: which
/// loaded provider lacks what was needed, which file has it, and how to
/// get that one loaded. `failures` are each process's failed loads with
/// how many of its `loads` came before; `env` the variables each process's
/// start recorded.
pub fn failed_loads(
    loads: &BTreeMap<super::fold::Key, Vec<Rc<Load>>>,
    failures: &BTreeMap<super::fold::Key, Vec<super::fold::Failed>>,
    env: &BTreeMap<super::fold::Key, BTreeMap<String, String>>,
    processes: &[super::summary::Process],
    m: &mut Machine,
) -> Vec<Diagnosis> {
    use std::path::PathBuf;
    let programs: HashMap<super::fold::Key, &str> =
        processes.iter().filter_map(|p| Some(((p.host.clone(), p.pid, p.instance), p.exe.as_deref()?))).collect();
    // The other programs of the job on one host that share a process's
    // LD_LIBRARY_PATH, each once.
    let llp_of = |k: &super::fold::Key| env.get(k).and_then(|e| e.get("LD_LIBRARY_PATH"));
    let job_programs = |key: &super::fold::Key| -> Vec<PathBuf> {
        let own = programs.get(key);
        let mut out: Vec<PathBuf> = Vec::new();
        for (k, exe) in &programs {
            if k.0 == key.0 && Some(exe) != own && llp_of(k) == llp_of(key) && !out.iter().any(|p| p == Path::new(exe))
            {
                out.push(PathBuf::from(exe));
            }
        }
        out.sort();
        out
    };
    let parents: HashMap<super::fold::Key, super::fold::Key> = processes
        .iter()
        .filter(|p| p.forked)
        .map(|p| ((p.host.clone(), p.pid, p.instance), (p.host.clone(), p.ppid, p.parent_instance)))
        .collect();
    // Whether a process got a load's object after start-up: a forked child
    // has its parent's objects as the parent got them (one dlopened
    // without RTLD_GLOBAL stays out of the global scope across fork). An
    // inherited object whose parent is not in the trace counts as global.
    let late = |key: &super::fold::Key, load: &Load| -> bool {
        let (mut key, mut how) = (key.clone(), load.how.clone());
        for _ in 0..64 {
            if !how.is(How::Inherited) {
                return !how.is(How::Initial);
            }
            let Some(parent) = parents.get(&key) else { return false };
            let Some(l) = loads.get(parent).and_then(|ls| ls.iter().find(|l| l.path == load.path)) else {
                return false;
            };
            (key, how) = (parent.clone(), l.how.clone());
        }
        false
    };
    let mut out = Vec::new();
    for (key, failed) in failures {
        let (host, pid, instance) = key;
        if m.on(host).is_none() {
            continue;
        }
        let var = |k: &str| job_var(env.get(key), k);
        let before = loads.get(key).map(Vec::as_slice).unwrap_or_default();
        let mut said = BTreeSet::new();
        for (i, (at, l)) in failed.iter().enumerate() {
            let mut failure = failure_of(l);
            if is_probe(l, &failure) {
                continue;
            }
            failure.anchor_relative(|name| traced_path(name, l, loads.get(key)));
            // One failure is one diagnosis, however many of the objects
            // the loader undid the trace records.
            if !said.insert(failure.error.clone().unwrap_or_else(|| l.path.clone())) {
                continue;
            }
            // What the process had mapped: its loads before the failure
            // (the failed batch's own, where the trace records them as
            // mapped first), then the rest of the batch where the trace
            // records each undone object as a failure of its own.
            let batch = failed[i + 1..].iter().take_while(|(next, f)| next == at && !f.path.is_empty());
            let mapped: Vec<&Load> = before[..(*at).min(before.len())]
                .iter()
                .chain(batch.map(|(_, f)| f))
                .map(|b| &**b)
                .filter(|b| !b.path.is_empty())
                .collect();
            let loaded: Vec<(PathBuf, Option<String>)> = mapped
                .iter()
                .map(|b| (PathBuf::from(&b.path), b.search.as_ref().map(|s| s.as_str().to_owned())))
                .collect();
            let dlopened = mapped.iter().filter(|b| late(key, b)).map(|b| PathBuf::from(&b.path)).collect();
            let requests = mapped
                .iter()
                .filter_map(|b| {
                    Some(rules::Request {
                        path: PathBuf::from(&b.path),
                        caller: PathBuf::from(b.caller.as_deref()?),
                        name: b.request.as_deref()?.as_bytes().to_vec(),
                    })
                })
                .collect();
            let top = (!l.path.is_empty()).then(|| PathBuf::from(&l.path));
            let undone = std::iter::once(&l.path)
                .chain(&l.unmapped)
                .chain(failed[i + 1..].iter().take_while(|(next, _)| next == at).map(|(_, f)| &f.path))
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
            let mut sites: Vec<PathBuf> = Vec::new();
            for p in loaded.iter().map(|(p, _)| p.as_path()).chain(top.as_deref()) {
                if let Some(site) = super::machine::site_root(p) {
                    if !sites.iter().any(|s| s == site) {
                        sites.push(site.to_path_buf());
                    }
                }
            }
            let scene = rules::Scene {
                loaded,
                dlopened,
                requests,
                top,
                program: programs.get(key).map(PathBuf::from),
                job_programs: job_programs(key),
                undone,
                ctx: job_context(&var),
                installations: crate::doctor::installation_places(&var, &sites),
                platform: None,
                files: Default::default(),
            };
            let explanation = rules::explain(&mut failure, &scene);
            let failed = rules::FailedLoad {
                request: l.request.clone(),
                path: (!l.path.is_empty()).then(|| l.path.clone()),
                before_main: false,
                failure,
                explanation,
            };
            out.push(rules::load_failed(failed).in_process(host, *pid, *instance));
        }
    }
    out
}

/// The canonical path the trace gives the object glibc named `name`
/// (relative to the traced process's directory): the load that asked for
/// it by that name, else the one loaded file of that file name.
fn traced_path(name: &str, failed: &Load, loads: Option<&Vec<Rc<Load>>>) -> Option<String> {
    let all = || {
        std::iter::once(failed).chain(loads.into_iter().flatten().map(|l| l.as_ref())).filter(|l| !l.path.is_empty())
    };
    if let Some(l) = all().find(|l| l.request.as_deref() == Some(name)) {
        return Some(l.path.clone());
    }
    let file = |p: &str| p.rsplit('/').next().map(str::to_owned);
    let mut same = all().filter(|l| file(&l.path) == file(name)).map(|l| &l.path);
    let first = same.next()?;
    same.all(|p| p == first).then(|| first.clone())
}

/// The job's own variable `k`: what its start recorded (a recorded name
/// that is absent was unset), else culaunch's, which a live run passed on
/// (CONDA_PREFIX is never recorded).
fn job_var(recorded: Option<&BTreeMap<String, String>>, k: &str) -> Option<std::ffi::OsString> {
    match recorded {
        Some(v) if culaunch_protocol::env::RECORDED_ENV.contains(&k) => v.get(k).map(Into::into),
        _ => std::env::var_os(k),
    }
}

/// The loader context of the job's processes: their LD_LIBRARY_PATH.
fn job_context(var: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> elf::Context {
    use std::os::unix::ffi::OsStringExt;
    elf::Context { root: None, ld_library_path: var("LD_LIBRARY_PATH").map(OsStringExt::into_vec), deadline: None }
}

/// A program as one start reads it: host, executable, argv[0] and the
/// job's variables the explanation reads ([`START_VARS`]).
type StartKey = (String, String, String, Vec<Option<std::ffi::OsString>>);

/// What a start's explanation reads of the job's environment: the search
/// path, and where the installations known are.
const START_VARS: [&str; 4] = ["LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "CONDA_PREFIX"];

/// Each process that ended before its `main` (its start is recorded and
/// nothing after the loader's start-up): where the loader gave up starting
/// its program, worked out from this machine's files, in glibc's words
/// rebuilt. Nothing is said where the files show nothing that stops a
/// start (the process was killed that early), where LD_PRELOAD may have
/// provided what the files lack, or for a name a pin provides.
pub fn startup_failures(
    processes: &[super::summary::Process],
    env: &BTreeMap<super::fold::Key, BTreeMap<String, String>>,
    pinned: &BTreeSet<&str>,
    m: &mut Machine,
) -> Vec<Diagnosis> {
    use std::path::PathBuf;
    let mut out = Vec::new();
    // The ranks of a job start one program: it is read once.
    let mut known: HashMap<StartKey, Option<(rules::Failure, rules::Explanation)>> = HashMap::new();
    for p in processes.iter().filter(|p| p.ended_before_main) {
        let Some(exe) = p.exe.as_deref() else { continue };
        if m.on(&p.host).is_none() {
            continue;
        }
        let key = (p.host.clone(), p.pid, p.instance);
        let var = |k: &str| job_var(env.get(&key), k);
        if var("LD_PRELOAD").is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let argv0 = p.argv.first().cloned().unwrap_or_else(|| exe.to_owned());
        let found = known
            .entry((p.host.clone(), exe.to_owned(), argv0.clone(), START_VARS.map(var).into()))
            .or_insert_with(|| {
                let ctx = job_context(&var);
                let closure = elf::closure_in(Path::new(exe), &ctx).ok()?;
                let skip = |name: &[u8]| pinned.contains(String::from_utf8_lossy(name).as_ref());
                let mut failure = rules::start_stop(&closure, &argv0, &skip)?;
                let sites: Vec<PathBuf> =
                    super::machine::site_root(Path::new(exe)).map(Path::to_path_buf).into_iter().collect();
                let scene = rules::Scene {
                    loaded: Vec::new(),
                    dlopened: Default::default(),
                    requests: Vec::new(),
                    top: Some(PathBuf::from(exe)),
                    program: Some(PathBuf::from(exe)),
                    job_programs: Vec::new(),
                    undone: Default::default(),
                    ctx,
                    installations: crate::doctor::installation_places(&var, &sites),
                    platform: None,
                    files: Default::default(),
                };
                let explanation = rules::explain(&mut failure, &scene);
                Some((failure, explanation))
            });
        let Some((failure, explanation)) = found.clone() else { continue };
        // What the loader was loading: the library it gave up on, else the
        // program itself (a version or symbol it lacks).
        let request = match failure.reason {
            rules::FailReason::MissingDependency | rules::FailReason::Failed => failure.object.clone(),
            _ => Some(argv0),
        };
        let failed = rules::FailedLoad { request, path: None, before_main: true, failure, explanation };
        out.push(rules::load_failed(failed).in_process(&p.host, p.pid, p.instance));
    }
    out
}

/// `loads` are each process's successful loads, as the fold keeps them.
pub fn diagnose(
    loads: &BTreeMap<super::fold::Key, Vec<Rc<Load>>>,
    libraries: &[Library],
    m: &mut Machine,
) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let lib_of: HashMap<&str, &Library> = libraries.iter().map(|l| (l.path.as_str(), l)).collect();
    let mut empty_seen = BTreeSet::new();
    for ((host, pid, instance), loads) in loads {
        let loads: Vec<&Load> = loads.iter().map(|l| &**l).collect();
        version_skew((host, *pid, *instance), &loads, &lib_of, &mut out);
        // The rest read the files the process mapped: this machine's only.
        let Some(mut here) = m.on(host) else { continue };
        let files = here.elf();
        requester_mismatches((host, *pid, *instance), &loads, files, &mut out);
        for path in
            loads.iter().filter(|l| l.cuda).flat_map(|l| std::iter::once(l.path.as_str()).chain(l.caller.as_deref()))
        {
            if empty_seen.insert(path.to_owned()) {
                for (tag, list) in files.empty_search_entries(Path::new(path)) {
                    out.push(
                        Diagnosis::new(
                            Kind::EmptySearchEntry,
                            format!("{tag} of {path} is \"{list}\": its empty entry means the current directory, so a file there can be loaded"),
                        )
                        .in_process(host, *pid, *instance)
                        .files(vec![path.to_owned()])
                        .rule(format!("an empty {tag} entry is the working directory (elf/dl-load.c fillin_rpath)")),
                    );
                }
            }
        }
    }
    driver(libraries, m, &mut out);
    for lib in libraries {
        if let Origin::Pip { package, record_hash: RecordHash::Differs, .. } = &lib.origin {
            out.push(
                Diagnosis::new(
                    Kind::ModifiedWheelFile,
                    format!(
                        "{} is not the file pip package {package} installed (its sha256 differs from RECORD)",
                        lib.path
                    ),
                )
                .files(vec![lib.path.clone()])
                .rule("RECORD lists the sha256 of every installed file"),
            );
        }
    }
    out
}

/// For each object that asked for CUDA libraries in this process: did the
/// copy its own DT_RUNPATH/DT_RPATH points to answer? If not, either another
/// search step won over it (shadowing) or a copy loaded earlier by someone
/// else answered its bare name (first-loaded-wins).
fn requester_mismatches(
    (host, pid, instance): (&str, i64, u32),
    loads: &[&Load],
    files: &mut elf::ShippedWith,
    out: &mut Vec<Diagnosis>,
) {
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
            // `files` are this machine's, so is the copy they point to.
            let own_canonical = std::fs::canonicalize(&own).map(|p| p.display().to_string()).unwrap_or(own.clone());
            if own_canonical == actual.path {
                continue;
            }
            let tag = match reason {
                elf::Reason::Runpath => "DT_RUNPATH",
                _ => "DT_RPATH",
            };
            let search = actual.search.as_ref().map(Tag::as_str).unwrap_or("?");
            let d = if actual.caller.as_deref() == Some(requester) {
                Diagnosis::new(
                    Kind::Shadowing,
                    format!(
                        "{name} for {requester} came from {} ({search}), although its own {tag} holds {own}",
                        actual.path
                    ),
                )
                .rule(format!("{search} is searched before {tag}"))
            } else {
                let first = actual.caller.as_deref().unwrap_or("an earlier load");
                Diagnosis::new(
                    Kind::FirstLoadedWins,
                    format!(
                        "{name} for {requester} is {}, which {first} loaded first; its own {tag} holds {own}",
                        actual.path
                    ),
                )
                .rule("a name already loaded is never searched again (elf/dl-load.c _dl_map_object)")
            };
            out.push(d.in_process(host, pid, instance).files(vec![actual.path.clone(), own]).requester(requester));
        }
    }
}

/// Families that must come from one release, with files of two releases in
/// one process. Releases come from installers' records or file names.
fn version_skew(
    (host, pid, instance): (&str, i64, u32),
    loads: &[&Load],
    lib_of: &HashMap<&str, &Library>,
    out: &mut Vec<Diagnosis>,
) {
    let mut by_family: BTreeMap<Family, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for l in loads.iter().filter(|l| l.cuda) {
        let Some(Tag::Known(family)) = l.family.as_ref().filter(|f| matches!(f, Tag::Known(f) if f.same_release()))
        else {
            continue;
        };
        let Some(version) = lib_of.get(l.path.as_str()).and_then(|lib| lib.release()) else { continue };
        by_family.entry(*family).or_default().entry(version.to_owned()).or_default().push(l.path.clone());
    }
    for (family, versions) in by_family.into_iter().filter(|(_, v)| v.len() > 1) {
        let family = crate::vocab::Name::as_str(family);
        let listed: Vec<String> = versions.iter().map(|(v, paths)| format!("{v} ({})", paths.join(", "))).collect();
        out.push(
            Diagnosis::new(
                Kind::VersionSkew,
                format!("{family} libraries from different releases in one process: {}", listed.join("; ")),
            )
            .in_process(host, pid, instance)
            .files(versions.into_values().flatten().collect())
            .rule(format!("all {family} libraries must come from one release")),
        );
    }
}

/// The driver the job loaded: the link-time stub, the forward-compatibility
/// package, or one older than a loaded runtime needs. Its version is this
/// machine's to read; on a machine that is not the trace's it is not judged.
fn driver(libraries: &[Library], m: &mut Machine, out: &mut Vec<Diagnosis>) {
    // The runtimes loaded here, to judge this machine's driver against.
    let runtimes: BTreeSet<u32> = libraries
        .iter()
        .filter(|l| l.family.is(Family::Cudart))
        .filter(|l| m.on_any(l.hosts()).is_some())
        .filter_map(|l| cuda::cudart_major(l.soname.as_deref()?))
        .collect();
    for lib in libraries.iter().filter(|l| l.family.is(Family::Cuda)) {
        if lib.path.contains("/stubs/") {
            out.push(
                Diagnosis::new(
                    Kind::DriverStub,
                    format!("{} is the link-time stub of the driver: it must never be loaded at run time", lib.path),
                )
                .files(vec![lib.path.clone()])
                .rule("stubs/libcuda.so is for linking only"),
            );
            continue;
        }
        // Not judged for a driver loaded on another host.
        let driver = m.on_any(lib.hosts()).and_then(|mut here| here.driver_version(&lib.path));
        if lib.path.contains("/compat/") {
            out.push(
                Diagnosis::new(
                    Kind::DriverCompat,
                    format!(
                        "libcuda.so.1 is the forward-compatibility driver {} ({}): it works only on data-center GPUs with a supported kernel driver branch",
                        driver.as_deref().unwrap_or("of unknown version"),
                        lib.path
                    ),
                )
                .files(vec![lib.path.clone()])
                .rule("cuda-compat replaces the user-mode driver, not the kernel module"),
            );
        }
        let Some(driver) = driver else { continue };
        for (major, min) in rules::driver_too_old_for(&driver, &runtimes) {
            out.push(
                Diagnosis::new(
                    Kind::DriverTooOld,
                    format!(
                        "driver {driver} ({}) is older than {min}, the minimum for CUDA {major} runtimes",
                        lib.path
                    ),
                )
                .files(vec![lib.path.clone()])
                .rule(format!("CUDA {major}.x needs driver >= {min}")),
            );
        }
    }
}
