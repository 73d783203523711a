//! The summary: the one value the report's stages fill in turn (the fold,
//! then the machine's enrichment, then the rules) and both renderings read.
//! One row per CUDA library file, the processes, the conflicts. Field names
//! and values are the readers' contract (docs/trace-schema.md, "Summary").

use std::collections::{BTreeMap, BTreeSet};

use culaunch_protocol::event::{FailReason, How, SearchStep};
use serde::Serialize;

use super::provenance::Origin;
use crate::rules::Diagnosis;
use crate::vocab::{Family, Tag, VersionSource};

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub processes: Vec<Process>,
    pub libraries: Vec<Library>,
    pub conflicts: Vec<Conflict>,
    /// Loads refused under --strict/--locked.
    pub denials: Vec<Denial>,
    /// The run's pins and where each was used (empty for `report`, which
    /// does not know them).
    pub pins: Vec<PinUse>,
    /// What will bite, with the rule behind it.
    pub diagnoses: Vec<Diagnosis>,
    /// Each framework requirement a loaded CUDA library meets, satisfied or
    /// not (the unmet ones are diagnoses too).
    pub requirements: Vec<Requirement>,
    /// Loads that failed (the library was found nowhere); programs often
    /// tolerate them, probing for optional libraries.
    pub probes: Vec<Probe>,
    /// Programs started by traced processes that the loader does not run
    /// culaunch in, and why.
    pub untraced: Vec<Untraced>,
    /// Library families the ranks of a job disagree on: the majority and
    /// the outliers.
    pub divergences: Vec<crate::compare::divergence::Divergence>,
    /// Trace lines that were not valid events.
    pub malformed_lines: usize,
    /// A process of the run could not write some of its events (a full
    /// filesystem, `ulimit -f`, a trace it may not write): what is above
    /// is true but not all. Known to the run that wrote the trace.
    pub trace_incomplete: bool,
    /// What of this machine the summary consulted.
    pub machine: Consulted,
}

/// What of this machine a summary consulted, so that no reader takes a
/// finding about another host's trace for one about this machine.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Consulted {
    pub reads: Reads,
    /// This machine's node name.
    pub host: String,
    /// Whether the driver rules ran, for this machine's processes (they read
    /// this machine's driver).
    pub driver_judged: bool,
    /// Hosts in the trace that are not this machine: for their processes
    /// nothing of this machine was read.
    pub not_consulted: Vec<String>,
    /// The same, in words, when there are any.
    pub note: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reads {
    /// Right after a run here: the files, the installers' records, the
    /// driver, and each library's own version call (in a helper process).
    Live,
    /// Traces written on this machine: its files, records and driver, but no
    /// library is ever loaded.
    Files,
    /// Traces from other hosts only: nothing of this machine; only what the
    /// trace itself says.
    #[default]
    Nothing,
}

#[derive(Debug, Serialize)]
pub struct Denial {
    pub host: String,
    pub pid: i64,
    /// As `Process::instance`: which process under that host and pid.
    #[serde(skip_serializing_if = "is_first")]
    pub instance: u32,
    pub request: String,
    pub caller: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Untraced {
    pub host: String,
    /// The process that started it.
    pub pid: i64,
    /// As `Process::instance`: which process under that host and pid.
    #[serde(skip_serializing_if = "is_first")]
    pub instance: u32,
    pub exe: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Probe {
    pub host: String,
    pub pid: i64,
    /// As `Process::instance`: which process under that host and pid.
    #[serde(skip_serializing_if = "is_first")]
    pub instance: u32,
    pub request: String,
    pub caller: Option<String>,
    pub error: Option<String>,
    /// The file mapped and then unmapped by the failure; `None` when
    /// nothing was mapped (not found, wrong class).
    pub path: Option<String>,
    /// The trace's `reason`; `None` from a trace written before it was.
    pub reason: Option<Tag<FailReason>>,
    pub symbol: Option<String>,
    pub version: Option<String>,
    pub required_by: Option<String>,
    /// The other files the failure unmapped.
    pub unmapped: Vec<String>,
}

impl Probe {
    /// A load that failed after mapping something, or for another reason
    /// than finding no file: not a probe the program may have tolerated.
    pub fn is_failure(&self) -> bool {
        self.path.is_some() || self.reason.as_ref().is_some_and(|r| !r.is(FailReason::NotFound))
    }
}

#[derive(Debug, Serialize)]
pub struct PinUse {
    pub soname: String,
    pub path: String,
    /// `host:pid` of the processes that mapped the pinned file.
    pub used_in: BTreeSet<String>,
    /// Requests the pin redirected (names or other copies' paths).
    pub redirected: BTreeSet<String>,
}

#[derive(Debug, Serialize)]
pub struct Process {
    pub host: String,
    pub pid: i64,
    pub ppid: i64,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    /// Started by fork without exec: it inherited its parent's libraries.
    pub forked: bool,
    pub exit_status: Option<i64>,
    /// Its rank in a multi-rank job, its rank on its node, and the job's
    /// size, when a launcher's variables said so.
    pub rank: Option<i64>,
    pub local_rank: Option<i64>,
    pub world_size: Option<i64>,
    /// Its start is recorded and nothing after the loader's start-up: the
    /// loader did not start the program (or it was killed that early).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ended_before_main: bool,
    /// 1 for the first process the trace shows under its host and pid; 2,
    /// 3, … for the later ones (the pid reused, or ranks each in a pid
    /// namespace of its own), named `host:pid#N` wherever processes are
    /// named.
    #[serde(skip_serializing_if = "is_first")]
    pub instance: u32,
    /// The instance of its parent's pid that was running when it started.
    #[serde(skip)]
    pub parent_instance: u32,
}

impl Process {
    /// What the rank comparison knows of it.
    pub fn as_proc(&self) -> crate::compare::divergence::Proc {
        crate::compare::divergence::Proc {
            host: self.host.clone(),
            pid: self.pid,
            instance: self.instance,
            ppid: self.ppid,
            parent_instance: self.parent_instance,
            rank: self.rank,
            world_size: self.world_size,
        }
    }
}

fn is_first(instance: &u32) -> bool {
    *instance <= 1
}

/// `host:pid`, and `host:pid#N` for the Nth process (N ≥ 2) under that
/// host and pid.
pub fn process_name(host: &str, pid: i64, instance: u32) -> String {
    if instance <= 1 {
        format!("{host}:{pid}")
    } else {
        format!("{host}:{pid}#{instance}")
    }
}

/// Host, pid and instance back from `process_name`'s words.
pub fn parse_process_name(name: &str) -> Option<(&str, i64, u32)> {
    let (host, rest) = name.rsplit_once(':')?;
    let (pid, instance) = match rest.split_once('#') {
        Some((pid, n)) => (pid, n.parse().ok()?),
        None => (rest, 1),
    };
    Some((host, pid.parse().ok()?, instance))
}

#[derive(Debug, Serialize)]
pub struct Library {
    pub family: Tag<Family>,
    pub soname: Option<String>,
    pub path: String,
    pub version: Option<String>,
    /// Where `version` came from: `pip`, `conda`, `toolkit version.json`,
    /// `file name`, or the library's own call (`cudaRuntimeGetVersion`, …).
    pub version_source: Option<VersionSource>,
    pub origin: Origin,
    /// `how` values seen, e.g. `needed`, `dlopen`.
    pub how: BTreeSet<Tag<How>>,
    /// Objects that asked for it.
    pub callers: BTreeSet<String>,
    /// Search steps that found it (`rpath_runpath`, `ld_library_path`, …).
    pub search: BTreeSet<Tag<SearchStep>>,
    /// The name (`process_name`) of every process that had it mapped.
    pub processes: BTreeSet<String>,
    /// Mapped because a pin asked for this file.
    pub pinned: bool,
    /// The file the job mapped, as the first load on each host saw it:
    /// another host (or an NFS client) has its own device numbers.
    #[serde(skip)]
    pub files: BTreeMap<String, super::events::FileId>,
    /// The file at `path` is not (or not only) the one the job mapped: it
    /// was replaced on disk after a load (two files were mapped from this
    /// path, or the one there now is another). `version` and `origin` are
    /// then only what the file name and the trace say.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
}

impl Library {
    /// The hosts of the processes that had it mapped.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.processes.iter().map(|p| parse_process_name(p).map_or(p.as_str(), |(h, _, _)| h))
    }

    /// The release this file belongs to, when an installer's records or the
    /// file name say so (a version call answers in its own terms, which do
    /// not compare across libraries).
    pub fn release(&self) -> Option<&str> {
        self.version.as_deref().filter(|_| self.version_source.as_ref().is_some_and(VersionSource::is_release))
    }
}

#[derive(Debug, Serialize)]
pub struct Conflict {
    pub host: String,
    pub pid: i64,
    /// As `Process::instance`: which process under that host and pid.
    #[serde(skip_serializing_if = "is_first")]
    pub instance: u32,
    pub family: String,
    pub paths: Vec<String>,
    pub reason: Option<String>,
}

/// One framework requirement met by a loaded library: satisfied or not, so
/// that a CI job can assert either.
#[derive(Debug, Serialize)]
pub struct Requirement {
    #[serde(flatten)]
    pub verdict: crate::python::site::Expectation,
    /// `host:pid` of the processes that loaded it with the framework there.
    pub processes: BTreeSet<String>,
}
