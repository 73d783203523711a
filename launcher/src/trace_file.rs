//! The trace file of one run: the user's (`-t`), appended to, or a private
//! temporary one that only feeds the summary.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

pub struct TraceFile {
    /// Absolute, so that processes that change directory append to the same file.
    pub path: PathBuf,
    /// Where this run's events start (the file may hold earlier runs).
    pub start: u64,
    temporary: bool,
}

impl TraceFile {
    /// Opens (creating) the user's trace file, or makes a temporary one.
    /// Failing here is culaunch's failure: nothing has started yet.
    pub fn prepare(user: Option<&Path>) -> Result<TraceFile, Error> {
        match user {
            Some(p) => {
                let path = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
                let file =
                    open_append(&path, false).map_err(|source| Error::TraceFile { path: path.clone(), source })?;
                let start = file.metadata().map(|m| m.len()).unwrap_or(0);
                Ok(TraceFile { path, start, temporary: false })
            }
            None => {
                let path = std::env::temp_dir().join(format!(
                    "culaunch-trace-{}-{}.jsonl",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0)
                ));
                open_append(&path, true).map_err(|source| Error::TraceFile { path: path.clone(), source })?;
                Ok(TraceFile { path, start: 0, temporary: true })
            }
        }
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn open_append(path: &Path, exclusive: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).mode(0o644);
    if exclusive {
        o.create_new(true);
    } else {
        o.create(true);
    }
    o.open(path)
}
