//! Trace files to summaries: after a run, and for `culaunch report`.

mod events;
mod provenance;
mod render;
mod summary;

use std::path::Path;

pub use summary::Summary;

use crate::cli::ReportArgs;
use crate::error::Error;

/// The summary of the events in `trace` from byte `start` on.
pub fn from_trace(trace: &Path, start: u64) -> Result<Summary, Error> {
    let (events, bad) = events::read(trace, start)?;
    Ok(summary::summarise(&events, bad))
}

pub fn text(s: &Summary) -> String {
    render::text(s)
}

pub fn write_json(s: &Summary, path: &Path) -> Result<(), Error> {
    let err = |source| Error::SummaryFile {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(s).map_err(|e| err(e.into()))?;
    std::fs::write(path, json).map_err(err)
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
    let s = summary::summarise(&all, bad);
    if args.json {
        let json = serde_json::to_string_pretty(&s).unwrap_or_default();
        println!("{json}");
    } else {
        print!("{}", render::text(&s));
    }
    Ok(())
}
