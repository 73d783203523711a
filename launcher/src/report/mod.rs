//! Trace files to summaries: after a run, and for `culaunch report`. One way
//! through, each stage a module with one job:
//!
//! 1. [`events`]: trace lines → typed events (reading the trace is the input);
//! 2. [`fold`]: events → facts, a pure fold;
//! 3. [`enrich`] with a [`machine::Machine`]: facts → enriched facts, every
//!    read of the outside world (installers' records, version probes);
//! 4. [`diagnose`] (on [`crate::rules`]): the findings;
//! 5. [`render`]: the one [`Summary`] value as text or JSON.

pub(crate) mod diagnose;
pub(crate) mod events;
pub(crate) mod fold;
pub(crate) mod frameworks;
pub(crate) mod machine;
pub(crate) mod provenance;
pub(crate) mod render;
pub(crate) mod summary;

use std::path::{Path, PathBuf};

pub use summary::Summary;

use crate::error::Error;
use crate::messages::{note, warning};
use crate::plan::lock::{self, LockEntry, LockFile};
use crate::vocab::basename;
use machine::Machine;
use summary::Reads;

/// The whole pipeline over parsed events. `reads` is how much of this
/// machine may be consulted for the processes that ran on it; another
/// host's processes are judged against nothing here whatever `reads` says.
#[cfg(test)]
pub fn summarise(events: &[events::Envelope], malformed: usize, pins: &[(String, String)], reads: Reads) -> Summary {
    finish(fold::fold(events, malformed, pins), reads)
}

/// The stages after the fold.
fn finish(facts: fold::Facts, reads: Reads) -> Summary {
    let mut machine = Machine::for_trace(facts.hosts(), reads);
    let mut summary = facts.summary;
    enrich(&mut summary, &mut machine);
    summary.diagnoses =
        diagnose::failed_loads(&facts.loads, &facts.failures, &facts.env, &summary.processes, &mut machine);
    let pinned = summary.pins.iter().map(|p| p.soname.as_str()).collect();
    summary.diagnoses.extend(diagnose::startup_failures(&summary.processes, &facts.env, &pinned, &mut machine));
    summary.diagnoses.extend(diagnose::diagnose(&facts.loads, &summary.libraries, &mut machine));
    summary.divergences = divergences(&summary);
    let (requirements, found) = frameworks::check(&facts.loads, &mut machine);
    summary.requirements = requirements;
    summary.diagnoses.extend(found);
    summary
}

/// The compare module's view of the summary: each process's rank, each
/// CUDA file in each process with its release and installer.
fn divergences(s: &Summary) -> Vec<crate::compare::divergence::Divergence> {
    use crate::compare::divergence::{self, Mapped, Proc};
    if !s.processes.iter().any(|p| p.rank.is_some()) {
        return Vec::new();
    }
    let procs: Vec<Proc> = s.processes.iter().map(summary::Process::as_proc).collect();
    let labels: Vec<(String, String)> = s
        .libraries
        .iter()
        .map(|l| (l.origin.label(), l.soname.clone().unwrap_or_else(|| basename(&l.path).to_owned())))
        .collect();
    let families: Vec<String> = s.libraries.iter().map(|l| l.family.to_string()).collect();
    let mut mapped = Vec::new();
    for ((lib, (provenance, soname)), family) in s.libraries.iter().zip(&labels).zip(&families) {
        for name in &lib.processes {
            let Some((host, pid, instance)) = summary::parse_process_name(name) else { continue };
            mapped.push(Mapped {
                host,
                pid,
                instance,
                family,
                soname,
                path: &lib.path,
                version: lib.version.as_deref(),
                provenance,
            });
        }
    }
    divergence::divergences(&procs, &mapped)
}

/// Stage 2: what the machine knows of each library that the trace does not
/// say: the installer that put it there, and a version (its records', else
/// the file name's from the fold, else the library's own call). Only for
/// files mapped on this machine: another host's are left as the trace says.
fn enrich(s: &mut Summary, m: &mut Machine) {
    for lib in &mut s.libraries {
        let mapped_here = lib.files.iter().find(|(host, _)| m.is_local(host)).map(|(_, id)| *id);
        let Some(mut here) = m.on_any(lib.hosts()) else { continue };
        // A file put in the mapped one's place is not what the job ran:
        // its installer's records and its own answer are not asked.
        lib.replaced |= mapped_here.is_some_and(|id| here.is_another_file(&lib.path, id));
        if lib.replaced {
            continue;
        }
        // What the trace's own facts say stands when this machine knows
        // nothing of the file (it was deleted, or never was here).
        let found = here.origin(&lib.path);
        if found != provenance::Origin::Unknown || lib.origin == provenance::Origin::Unknown {
            lib.origin = found;
        }
        if let Some(v) = lib.origin.library_version(lib.family.as_str()) {
            (lib.version, lib.version_source) = (Some(v.to_owned()), lib.origin.version_source());
        } else if lib.version.is_none() {
            if let Some((v, call)) = here.version_call(&lib.path) {
                (lib.version, lib.version_source) = (Some(v), Some(crate::vocab::VersionSource::Call(call)));
            }
        }
    }
    s.machine = m.consulted();
}

/// The summary of the events in `trace` from byte `start` on, right after
/// the run; `pins` are the run's, as (SONAME, canonical path).
/// Only the process tree of `root` (the run's command, on this host) is
/// summarised: other runs and other ranks may append to the same file.
pub fn from_trace(trace: &Path, start: u64, pins: &[(String, String)], root: Option<i64>) -> Result<Summary, Error> {
    let mut folder = fold::Folder::new(pins, root.map(|pid| (machine::this_host(), pid)))
        .with_root_parent(i64::from(std::process::id()));
    let bad = events::read_each(trace, start, |e| folder.push(&e))?;
    Ok(finish(folder.finish(bad), Reads::Live))
}

/// A lock of every CUDA library the run loaded, hashed now. One entry per
/// SONAME: a second file with the same SONAME (a conflict) is left out, and
/// said so. The driver and NVML belong to the machine, not the job: locking
/// them would refuse every node with another driver.
pub fn lock_from(s: &Summary) -> Result<LockFile, Error> {
    let mut libs: Vec<LockEntry> = Vec::new();
    for lib in s.libraries.iter().filter(|l| !matches!(&l.family, crate::vocab::Tag::Known(f) if f.strict_exempt())) {
        let Some(soname) = &lib.soname else { continue };
        if let Some(first) = libs.iter().find(|l| &l.soname == soname) {
            warning!("{soname} came from two files; the lock keeps {}", first.path.display());
            continue;
        }
        let path = PathBuf::from(&lib.path);
        if lib.replaced {
            warning!("{} was replaced on disk after the job loaded it; it is not locked", path.display());
            continue;
        }
        // A path the trace could not carry exactly (bytes that are not
        // UTF-8) cannot be locked; say so rather than fail the run.
        match crate::digest::sha256_file(&path) {
            Ok(sha256) => libs.push(LockEntry { soname: soname.clone(), path, sha256, version: lib.version.clone() }),
            Err(e) => warning!("cannot hash {}: {e}; it is not locked", path.display()),
        }
    }
    Ok(LockFile { version: lock::LOCK_VERSION, libs })
}

/// The end-of-run text for stderr. A rank of a many-rank job other than
/// rank 0 prints one line, unless something is wrong in its own tree or
/// `verbose` asks for the table: 64 ranks must not print 64 tables.
pub fn stderr_text(s: &Summary, own_rank: Option<i64>, verbose: bool) -> String {
    let wrong = !s.conflicts.is_empty()
        || !s.denials.is_empty()
        || !s.divergences.is_empty()
        || s.diagnoses.iter().any(|d| d.severity >= crate::rules::Severity::Warning);
    match own_rank {
        Some(rank) if rank != 0 && !verbose && !wrong => render::rank_line(s, rank),
        Some(0) if !verbose => {
            format!(
                "{}note: other ranks print one line each, the table only where something is wrong (-v: all)\n",
                text(s)
            )
        }
        _ => text(s),
    }
}

/// Appends what this run learned of each CUDA library file (its release
/// and where it came from) to the trace, one `facts` event per file, so
/// that a report elsewhere, where the file is gone, says the same; and,
/// after a run that lost events, that the trace is incomplete.
pub fn append_facts(trace: &Path, s: &Summary) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| Error::TraceFile { path: trace.to_path_buf(), source };
    let mut file = std::fs::OpenOptions::new().append(true).mode(0o644).open(trace).map_err(err)?;
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let ts = culaunch_protocol::clock::rfc3339_micros(ns);
    let host = machine::this_host();
    if s.trace_incomplete {
        let event = serde_json::json!({
            "v": culaunch_protocol::event::VERSION,
            "ts": String::from_utf8_lossy(&ts),
            "pid": std::process::id(),
            "ppid": std::os::unix::process::parent_id(),
            "host": host,
            "event": culaunch_protocol::event::INCOMPLETE,
            "reason": "some events could not be written",
        });
        let mut line = serde_json::to_vec(&event).map_err(Error::Json)?;
        line.push(b'\n');
        file.write_all(&line).map_err(err)?;
    }
    for lib in &s.libraries {
        if lib.origin == provenance::Origin::Unknown && lib.version.is_none() && !lib.replaced {
            continue;
        }
        let facts = events::FileFacts {
            path: lib.path.clone(),
            replaced: lib.replaced,
            version: lib.version.clone(),
            version_source: lib.version_source.clone(),
            origin: Some(lib.origin.clone()),
        };
        let mut event = serde_json::json!({
            "v": culaunch_protocol::event::VERSION,
            "ts": String::from_utf8_lossy(&ts),
            "pid": std::process::id(),
            "ppid": std::os::unix::process::parent_id(),
            "host": host,
            "event": culaunch_protocol::event::FACTS,
        });
        if let (Some(map), Ok(serde_json::Value::Object(more))) = (event.as_object_mut(), serde_json::to_value(&facts))
        {
            map.extend(more);
        }
        let mut line = serde_json::to_vec(&event).map_err(Error::Json)?;
        line.push(b'\n');
        // One write per line, as every writer of the trace does.
        file.write_all(&line).map_err(err)?;
    }
    Ok(())
}

/// The summary as text for culaunch's stderr (after a run), as wide as
/// that terminal, uncut when it is not one.
pub fn text(s: &Summary) -> String {
    render::text_in(s, render::width_for(2))
}

pub fn write_json(s: &Summary, path: &Path) -> Result<(), Error> {
    let json = render::json(s)?;
    crate::input::write_output(path, json.as_bytes())
        .map_err(|source| Error::SummaryFile { path: path.to_path_buf(), source })
}

/// Follows a trace while the job runs and prints each CUDA load, for
/// `--verbose`: a job may run for days before the summary.
pub struct Follower {
    path: PathBuf,
    offset: u64,
    /// The run's own process tree on this host, as far as seen: only its
    /// loads are printed, whatever else appends to the file.
    host: String,
    members: std::collections::HashSet<i64>,
}

impl Follower {
    pub fn new(path: &Path, offset: u64, root: i64) -> Follower {
        Follower { path: path.to_path_buf(), offset, host: machine::this_host(), members: [root].into() }
    }

    /// Prints the CUDA loads of the lines completed since the last call.
    pub fn print_new(&mut self) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else { return };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return;
        }
        // Only whole lines: a process may be writing the next one now.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else { return };
        self.offset += end as u64 + 1;
        let Ok((events, _)) = events::parse(&buf[..=end]) else { return };
        for e in events {
            if !(e.host.is_empty() || e.host == self.host) {
                continue;
            }
            if matches!(e.event, events::Event::ProcessStart { .. }) && self.members.contains(&e.ppid) {
                self.members.insert(e.pid);
            }
            let events::Event::Load(l) = &e.event else { continue };
            if !l.cuda || !self.members.contains(&e.pid) {
                continue;
            }
            let by = l.caller.as_deref().map(|c| format!(" by {}", basename(c))).unwrap_or_default();
            if l.ok {
                let soname = l.soname.as_deref().unwrap_or("?");
                note!("pid {} {soname} {} ({}{by})", e.pid, l.path, l.how);
            } else {
                note!("pid {} {} not found ({}{by})", e.pid, l.request.as_deref().unwrap_or("?"), l.how);
            }
        }
    }
}

/// The summary of trace files written earlier, read one event at a time.
pub fn of_files(traces: &[PathBuf]) -> Result<Summary, Error> {
    let mut folder = fold::Folder::new(&[], None);
    let mut bad = 0;
    for t in traces {
        bad += events::read_each(t, 0, |e| folder.push(&e))?;
        folder.next_file();
    }
    Ok(finish(folder.finish(bad), Reads::Files))
}

/// `culaunch report [--json] TRACE...`: the summary on stdout, since here it
/// is the output asked for, not a side note to someone else's job.
pub fn command(traces: &[PathBuf], json: bool) -> Result<(), Error> {
    let s = of_files(traces)?;
    if json {
        outln!("{}", render::json(&s)?);
    } else {
        out!("{}", render::text_in(&s, render::width_for(1)));
    }
    Ok(())
}
