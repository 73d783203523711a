//! Trace files to summaries: after a run, and for `culaunch report`.

pub(crate) mod diagnose;
pub(crate) mod events;
pub(crate) mod provenance;
pub(crate) mod render;
pub(crate) mod summary;

use std::path::Path;

pub use summary::Summary;

use crate::cli::ReportArgs;
use crate::error::Error;
use crate::plan::lock::{self, LockEntry, LockFile};
use culaunch_protocol::catalogue;

/// The summary of the events in `trace` from byte `start` on; `pins` are the
/// run's, as (SONAME, canonical path).
pub fn from_trace(trace: &Path, start: u64, pins: &[(String, String)]) -> Result<Summary, Error> {
    let (events, bad) = events::read(trace, start)?;
    Ok(summary::summarise(&events, bad, pins, summary::Source::ThisRun))
}

/// A lock of every CUDA library the run loaded, hashed now. One entry per
/// SONAME: a second file with the same SONAME (a conflict) is left out, and
/// said so. The driver and NVML belong to the machine, not the job: locking
/// them would refuse every node with another driver.
pub fn lock_from(s: &Summary) -> Result<LockFile, Error> {
    let mut libs: Vec<LockEntry> = Vec::new();
    for lib in s.libraries.iter().filter(|l| !catalogue::STRICT_EXEMPT.contains(&l.family.as_str())) {
        let Some(soname) = &lib.soname else { continue };
        if let Some(first) = libs.iter().find(|l| &l.soname == soname) {
            eprintln!("culaunch: warning: {soname} came from two files; the lock keeps {}", first.path.display());
            continue;
        }
        let path = std::path::PathBuf::from(&lib.path);
        // A path the trace could not carry exactly (bytes that are not
        // UTF-8) cannot be locked; say so rather than fail the run.
        match lock::sha256_file(&path) {
            Ok(sha256) => libs.push(LockEntry { soname: soname.clone(), path, sha256, version: lib.version.clone() }),
            Err(e) => eprintln!("culaunch: warning: cannot hash {}: {e}; it is not locked", path.display()),
        }
    }
    Ok(LockFile { version: lock::LOCK_VERSION, libs })
}

pub fn text(s: &Summary) -> String {
    render::text(s)
}

pub fn write_json(s: &Summary, path: &Path) -> Result<(), Error> {
    let err = |source| Error::SummaryFile { path: path.to_path_buf(), source };
    let json = serde_json::to_vec_pretty(s).map_err(|e| err(e.into()))?;
    std::fs::write(path, json).map_err(err)
}

/// Follows a trace while the job runs and prints each CUDA load, for
/// `--verbose`: a job may run for days before the summary.
pub struct Follower {
    path: std::path::PathBuf,
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
            if let events::Event::Load(l) = &e.event {
                if l.cuda && !l.ok {
                    let by = l
                        .caller
                        .as_deref()
                        .map(|c| format!(" by {}", c.rsplit('/').next().unwrap_or(c)))
                        .unwrap_or_default();
                    eprintln!(
                        "culaunch: pid {} {} not found ({}{by})",
                        e.pid,
                        l.request.as_deref().unwrap_or("?"),
                        l.how
                    );
                } else if l.cuda {
                    let by = l
                        .caller
                        .as_deref()
                        .map(|c| format!(" by {}", c.rsplit('/').next().unwrap_or(c)))
                        .unwrap_or_default();
                    let soname = l.soname.as_deref().unwrap_or("?");
                    eprintln!("culaunch: pid {} {soname} {} ({}{by})", e.pid, l.path, l.how);
                }
            }
        }
    }
}

/// `culaunch report [--json] TRACE...`: the summary on stdout, since here it
/// is the output asked for, not a side note to someone else's job.
pub fn command(args: ReportArgs) -> Result<(), Error> {
    let mut all = Vec::new();
    let mut bad = 0;
    for t in &args.traces {
        let (events, b) = events::read(t, 0)?;
        all.extend(events);
        bad += b;
    }
    let s = summary::summarise(&all, bad, &[], summary::Source::Files);
    if args.json {
        let json = serde_json::to_string_pretty(&s).unwrap_or_default();
        outln!("{json}");
    } else {
        out!("{}", render::text(&s));
    }
    Ok(())
}
