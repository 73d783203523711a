//! `culaunch diff [--json] A B`: each side is one run, given as a trace file
//! or a directory of trace files (its `*.jsonl`, one per rank say). Exit 0
//! when the runs' CUDA libraries match, 1 when they differ (as diff(1)
//! does), 125 on bad input.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::diff::{self, Difference, Lib};
use crate::cli::DiffArgs;
use crate::error::Error;
use crate::report::{self, Summary};
use crate::vocab::basename;

/// Exit status when the runs differ, like diff(1).
const EXIT_DIFFERENT: u8 = 1;

#[derive(Serialize)]
struct Json<'a> {
    a: &'a Path,
    b: &'a Path,
    same: bool,
    differences: &'a [Difference],
}

pub fn diff(args: &DiffArgs) -> Result<u8, Error> {
    let a = libs(&summary_of(&args.a)?);
    let b = libs(&summary_of(&args.b)?);
    let diffs = diff::diff(&a, &b);
    if args.json {
        let json = Json { a: &args.a, b: &args.b, same: diffs.is_empty(), differences: &diffs };
        println!("{}", serde_json::to_string_pretty(&json).map_err(Error::Json)?);
    } else {
        print!("{}", diff::text(&diffs, &args.a.display().to_string(), &args.b.display().to_string()));
    }
    Ok(if diffs.is_empty() { 0 } else { EXIT_DIFFERENT })
}

/// The trace files of one side: the file itself, or a directory's `*.jsonl`.
fn files(side: &Path) -> Result<Vec<PathBuf>, Error> {
    let bad = |message: String| Error::DiffInput { path: side.to_path_buf(), message };
    let meta = std::fs::metadata(side).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Ok(vec![side.to_path_buf()]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(side)
        .map_err(|e| bad(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && p.is_file())
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(bad("no *.jsonl trace files in this directory".to_owned()));
    }
    Ok(found)
}

fn summary_of(side: &Path) -> Result<Summary, Error> {
    let s = report::of_files(&files(side)?)?;
    if s.processes.is_empty() {
        let message = if s.malformed_lines > 0 {
            format!("no trace events ({} lines that are not events)", s.malformed_lines)
        } else {
            "no traced process: not a culaunch trace, or an empty one".to_owned()
        };
        return Err(Error::DiffInput { path: side.to_path_buf(), message });
    }
    Ok(s)
}

fn libs(s: &Summary) -> Vec<Lib> {
    s.libraries
        .iter()
        .map(|l| Lib {
            family: l.family.to_string(),
            soname: l.soname.clone().unwrap_or_else(|| basename(&l.path).to_owned()),
            path: l.path.clone(),
            version: l.version.clone(),
            origin: l.origin.label(),
            search: l.search.iter().map(|s| s.as_str().to_owned()).collect(),
        })
        .collect()
}
