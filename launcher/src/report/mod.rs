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
pub fn summarise(events: &[events::Envelope], malformed: usize, pins: &[(String, String)], reads: Reads) -> Summary {
    let facts = fold::fold(events, malformed, pins);
    let mut machine = Machine::for_trace(facts.hosts(), reads);
    let mut summary = facts.summary;
    enrich(&mut summary, &mut machine);
    summary.diagnoses = diagnose::diagnose(&facts.loads, &summary.libraries, &mut machine);
    let (requirements, found) = frameworks::check(&facts.loads, &mut machine);
    summary.requirements = requirements;
    summary.diagnoses.extend(found);
    summary
}

/// Stage 2: what the machine knows of each library that the trace does not
/// say: the installer that put it there, and a version (its records', else
/// the file name's from the fold, else the library's own call). Only for
/// files mapped on this machine: another host's are left as the trace says.
fn enrich(s: &mut Summary, m: &mut Machine) {
    for lib in &mut s.libraries {
        let Some(mut here) = m.on_any(lib.hosts()) else { continue };
        lib.origin = here.origin(&lib.path);
        if let Some(v) = lib.origin.version() {
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
pub fn from_trace(trace: &Path, start: u64, pins: &[(String, String)]) -> Result<Summary, Error> {
    let (events, bad) = events::read(trace, start)?;
    Ok(summarise(&events, bad, pins, Reads::Live))
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
        // A path the trace could not carry exactly (bytes that are not
        // UTF-8) cannot be locked; say so rather than fail the run.
        match crate::digest::sha256_file(&path) {
            Ok(sha256) => libs.push(LockEntry { soname: soname.clone(), path, sha256, version: lib.version.clone() }),
            Err(e) => warning!("cannot hash {}: {e}; it is not locked", path.display()),
        }
    }
    Ok(LockFile { version: lock::LOCK_VERSION, libs })
}

/// The summary as text for culaunch's stderr (after a run), as wide as
/// that terminal, uncut when it is not one.
pub fn text(s: &Summary) -> String {
    render::text_in(s, render::width_for(2))
}

pub fn write_json(s: &Summary, path: &Path) -> Result<(), Error> {
    let json = render::json(s)?;
    std::fs::write(path, json).map_err(|source| Error::SummaryFile { path: path.to_path_buf(), source })
}

/// Follows a trace while the job runs and prints each CUDA load, for
/// `--verbose`: a job may run for days before the summary.
pub struct Follower {
    path: PathBuf,
    offset: u64,
}

impl Follower {
    pub fn new(path: &Path, offset: u64) -> Follower {
        Follower { path: path.to_path_buf(), offset }
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
            let events::Event::Load(l) = &e.event else { continue };
            if !l.cuda {
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

/// `culaunch report [--json] TRACE...`: the summary on stdout, since here it
/// is the output asked for, not a side note to someone else's job.
pub fn command(traces: &[PathBuf], json: bool) -> Result<(), Error> {
    let mut all = Vec::new();
    let mut bad = 0;
    for t in traces {
        let (events, b) = events::read(t, 0)?;
        all.extend(events);
        bad += b;
    }
    let s = summarise(&all, bad, &[], Reads::Files);
    if json {
        println!("{}", render::json(&s)?);
    } else {
        print!("{}", render::text_in(&s, render::width_for(1)));
    }
    Ok(())
}
