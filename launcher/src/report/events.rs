//! Reading trace files: the JSON Lines the audit module writes.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use culaunch_protocol::event::{FailReason, How, SearchStep};
use serde::Deserialize;

use crate::error::Error;
use crate::vocab::{Family, Tag};

/// One trace line. Fields this version does not know are ignored
/// (docs/trace-schema.md).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub pid: i64,
    #[serde(default)]
    pub ppid: i64,
    #[serde(default)]
    pub host: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ProcessStart {
        #[serde(default)]
        exe: Option<String>,
        #[serde(default)]
        argv: Vec<String>,
        #[serde(default)]
        forked: bool,
        #[serde(default)]
        rank: Option<i64>,
        #[serde(default)]
        local_rank: Option<i64>,
        #[serde(default)]
        world_size: Option<i64>,
        /// The recorded variables (launchers' rank variables among them).
        #[serde(default)]
        env: Option<std::collections::BTreeMap<String, String>>,
    },
    Load(Box<Load>),
    Conflict {
        family: String,
        paths: Vec<String>,
        #[serde(default)]
        reason: Option<String>,
    },
    Deny {
        request: String,
        #[serde(default)]
        caller: Option<String>,
        reason: String,
    },
    Untraced {
        exe: String,
        reason: String,
    },
    /// The loader has mapped and relocated the program and the libraries
    /// it needs: constructors and `main` come next.
    ProcessLoaded {},
    ProcessExit {
        #[serde(default)]
        status: Option<i64>,
    },
    /// What a live run learned of one library file after the run (its
    /// release, its installer), appended by the launcher so that the trace
    /// says it wherever it is read.
    Facts(FileFacts),
    /// The run that wrote this trace lost events (the launcher says so
    /// after the run).
    Incomplete {},
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub struct Load {
    pub how: Tag<How>,
    #[serde(default)]
    pub caller: Option<String>,
    /// The file mapped; empty for a failed load (`null` in the trace).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub path: String,
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default = "yes")]
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub soname: Option<String>,
    #[serde(default)]
    pub cuda: bool,
    #[serde(default)]
    pub family: Option<Tag<Family>>,
    #[serde(default)]
    pub search: Option<Tag<SearchStep>>,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default)]
    pub redirected_from: Option<String>,
    /// The mapped file's identity, when the module could ask.
    #[serde(default)]
    pub file: Option<FileId>,
    /// For `ok:false`: why (`not_found`, `undefined_symbol`, …), and the
    /// symbol, version node and requiring object glibc's text names.
    #[serde(default)]
    pub reason: Option<Tag<FailReason>>,
    #[serde(default)]
    pub symbol: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub required_by: Option<String>,
    /// For `ok:false` with a `path`: the other files the failure unmapped.
    #[serde(default)]
    pub unmapped: Vec<String>,
}

/// A file's (st_dev, st_ino) on the host that mapped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

#[derive(Clone, Debug, serde::Serialize, Deserialize)]
pub struct FileFacts {
    pub path: String,
    /// The file at `path` when the facts were read was not the one the job
    /// mapped: they are not about it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_source: Option<crate::vocab::VersionSource>,
    #[serde(default)]
    pub origin: Option<super::provenance::Origin>,
}

fn yes() -> bool {
    true
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// The trace from byte `start` on.
// Through the one reader of outside files: regular files only, never a
// blocking open, never past the size the file had when opened.
fn open(path: &Path, start: u64) -> std::io::Result<impl std::io::Read> {
    crate::input::open_trace(path, start)
}

/// Calls `each` with every event of a trace from byte `start` on, one at a
/// time; returns how many lines were not valid events.
pub fn read_each(path: &Path, start: u64, mut each: impl FnMut(Envelope)) -> Result<usize, Error> {
    let err = |source| Error::ReadTrace { path: path.to_path_buf(), source };
    let mut reader = BufReader::with_capacity(1 << 16, open(path, start).map_err(err)?);
    let mut line = Vec::new();
    let mut bad = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(err)? == 0 {
            return Ok(bad);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Envelope>(&line) {
            Ok(e) => each(e),
            Err(e) => {
                tracing::debug!(error = %e, "skipping a trace line that is not an event");
                bad += 1;
            }
        }
    }
}

pub fn parse(reader: impl Read) -> std::io::Result<(Vec<Envelope>, usize)> {
    let mut events = Vec::new();
    let mut bad = 0;
    for line in BufReader::new(reader).split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Envelope>(&line) {
            Ok(e) => events.push(e),
            Err(e) => {
                tracing::debug!(error = %e, "skipping a trace line that is not an event");
                bad += 1;
            }
        }
    }
    Ok((events, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_events_and_fields_are_ignored_torn_lines_counted() {
        let trace = concat!(
            r#"{"v":1,"pid":1,"ppid":0,"host":"h","ts":"t","event":"process_start","exe":"/bin/x","argv":["x"],"new":1}"#,
            "\n",
            r#"{"v":1,"pid":1,"event":"from_the_future","x":2}"#,
            "\n",
            r#"{"v":1,"pid":1,"event":"load","how":"dlopen","path":"/a/libcudart.so.12","cuda":true,"family":"cudart"}"#,
            "\n",
            r#"{"v":1,"pid":1,"event":"lo"#,
        );
        let (events, bad) = parse(trace.as_bytes()).unwrap();
        assert_eq!((events.len(), bad), (3, 1));
        assert!(matches!(events[1].event, Event::Unknown));
        assert!(matches!(&events[2].event, Event::Load(l) if l.family == Some(Tag::Known(Family::Cudart))));
    }
}
