//! The one rules engine's vocabulary and its shared checks: every finding of
//! `run`'s pre-flight, of `doctor` and of the report is a [`Diagnosis`] of a
//! [`Kind`]. A check used in more than one place (two majors of a library,
//! the driver a runtime needs) is written here once; the rules that only one
//! of them has live beside the facts they read (`report::diagnose`,
//! `doctor`), and these are the pre-flight's.

use std::collections::{BTreeMap, BTreeSet};

use culaunch_protocol::catalogue;
use serde::Serialize;

use crate::cuda;
use crate::elf;
use crate::plan::pins::Pin;
use crate::vocab::basename_bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing is wrong yet.
    Info,
    /// Will bite some runs, or already bit this one without stopping it.
    Warning,
    /// CUDA cannot work this way.
    Error,
}

/// What was found. [`Kind::as_str`] is the `kind` string readers match, and
/// the only spelling of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    // The report, from a run's loads.
    Shadowing,
    FirstLoadedWins,
    VersionSkew,
    EmptySearchEntry,
    DriverStub,
    DriverCompat,
    DriverTooOld,
    ModifiedWheelFile,
    /// A loaded file is what another wheel than the one a framework
    /// declares installed, or of a release outside what it declares.
    RequirementMismatch,
    /// A file two installed wheels both claim (the last installed wins).
    WheelClash,
    // `doctor`, from what is installed.
    LdLibraryPathShadowsWheel,
    TwoMajorsOnSearchPath,
    NoDriver,
    RuntimeNewerThanDriver,
    /// One site holds frameworks built for different CUDA majors.
    FrameworksCudaMajors,
    // `run`'s pre-flight, from the program's static closure.
    NeededNotFound,
    TwoMajorsInClosure,
    PinOtherMajor,
}

impl Kind {
    pub fn severity(self) -> Severity {
        match self {
            Kind::DriverStub
            | Kind::DriverTooOld
            | Kind::RuntimeNewerThanDriver
            | Kind::NeededNotFound
            | Kind::PinOtherMajor => Severity::Error,
            Kind::NoDriver => Severity::Info,
            _ => Severity::Warning,
        }
    }

    /// The name readers match (`version_skew`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shadowing => "shadowing",
            Kind::FirstLoadedWins => "first_loaded_wins",
            Kind::VersionSkew => "version_skew",
            Kind::EmptySearchEntry => "empty_search_entry",
            Kind::DriverStub => "driver_stub",
            Kind::DriverCompat => "driver_compat",
            Kind::DriverTooOld => "driver_too_old",
            Kind::ModifiedWheelFile => "modified_wheel_file",
            Kind::RequirementMismatch => "requirement_mismatch",
            Kind::WheelClash => "wheel_clash",
            Kind::FrameworksCudaMajors => "frameworks_cuda_majors",
            Kind::LdLibraryPathShadowsWheel => "ld_library_path_shadows_wheel",
            Kind::TwoMajorsOnSearchPath => "two_majors_on_search_path",
            Kind::NoDriver => "no_driver",
            Kind::RuntimeNewerThanDriver => "runtime_newer_than_driver",
            Kind::NeededNotFound => "needed_not_found",
            Kind::TwoMajorsInClosure => "two_majors_in_closure",
            Kind::PinOtherMajor => "pin_other_major",
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One finding: what, where (host and pid when it is about one process),
/// the files involved, and the loader or release rule behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub kind: Kind,
    pub severity: Severity,
    /// Empty when it is about files rather than one process.
    pub host: String,
    pub pid: Option<i64>,
    pub message: String,
    pub files: Vec<String>,
    pub requester: Option<String>,
    /// The loader rule or release rule that explains it.
    pub rule: String,
}

impl Diagnosis {
    pub fn new(kind: Kind, message: String) -> Diagnosis {
        Diagnosis {
            kind,
            severity: kind.severity(),
            host: String::new(),
            pid: None,
            message,
            files: Vec::new(),
            requester: None,
            rule: String::new(),
        }
    }

    pub fn in_process(mut self, host: &str, pid: i64) -> Diagnosis {
        self.host = host.to_owned();
        self.pid = Some(pid);
        self
    }

    pub fn files(mut self, files: Vec<String>) -> Diagnosis {
        self.files = files;
        self
    }

    pub fn requester(mut self, requester: &str) -> Diagnosis {
        self.requester = Some(requester.to_owned());
        self
    }

    pub fn rule(mut self, rule: impl Into<String>) -> Diagnosis {
        self.rule = rule.into();
        self
    }
}

/// Where a set of library names was seen, for [`two_majors`].
#[derive(Clone, Copy)]
pub enum Place {
    /// The DT_NEEDED closure of the program about to run.
    Closure,
    /// LD_LIBRARY_PATH and ld.so.cache: where any program searches.
    SearchPath,
}

/// Two majors of one library (`libcudnn.so.8` and `libcudnn.so.9`) among
/// `names` (SONAMEs or file names): a bare-name request gets whichever is
/// found first, and two in one process clash.
pub fn two_majors<'a>(names: impl IntoIterator<Item = &'a [u8]>, place: Place) -> Vec<Diagnosis> {
    let mut by_stem: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for name in names {
        let text = String::from_utf8_lossy(basename_bytes(name)).into_owned();
        let Some((_, version)) = text.split_once(".so.") else { continue };
        let major = version.split('.').next().unwrap_or(version).to_owned();
        let stem = String::from_utf8_lossy(catalogue::stem(name)).into_owned();
        by_stem.entry(stem).or_default().entry(major).or_default().insert(text);
    }
    by_stem
        .into_iter()
        .filter(|(_, majors)| majors.len() > 1)
        .map(|(stem, majors)| match place {
            Place::Closure => {
                let names: Vec<String> = majors.into_values().flatten().collect();
                Diagnosis::new(Kind::TwoMajorsInClosure, format!("two majors of {stem} in the closure: {}", names.join(", ")))
                    .rule("one process can use one major of a library")
            }
            Place::SearchPath => {
                let list: Vec<String> = majors.into_keys().collect();
                Diagnosis::new(
                    Kind::TwoMajorsOnSearchPath,
                    format!(
                        "{stem} majors {} are both on the search path (LD_LIBRARY_PATH or ld.so.cache): a bare-name dlopen gets whichever is found first",
                        list.join(" and ")
                    ),
                )
                .rule("a bare name is answered by the first directory that holds it")
            }
        })
        .collect()
}

/// The runtime majors in `runtimes` that driver `driver` is too old for, with
/// the minimum each needs.
pub fn driver_too_old_for(driver: &str, runtimes: &BTreeSet<u32>) -> Vec<(u32, &'static str)> {
    runtimes
        .iter()
        .filter_map(|&major| Some((major, cuda::min_driver(major)?)))
        .filter(|(_, min)| cuda::version_lt(driver, min))
        .collect()
}

/// The pre-flight's rules: CUDA-family trouble visible in a program's static
/// closure before anything runs: a DT_NEEDED that cannot be found, two
/// majors of one library, a pin that cannot serve the major asked for.
pub fn closure(c: &elf::Closure, pins: &[Pin]) -> Vec<Diagnosis> {
    let name = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let by = |from: usize| name(basename_bytes(&c.nodes[from].path));
    let mut out = Vec::new();
    let mut sonames: Vec<Vec<u8>> = Vec::new();
    for e in &c.edges {
        if catalogue::family(&e.name).is_none() {
            continue;
        }
        match &e.to {
            elf::Target::Missing { tried } => out.push(
                Diagnosis::new(
                    Kind::NeededNotFound,
                    format!(
                        "{}, DT_NEEDED of {}, is not found ({} places tried; `culaunch deps` lists them)",
                        name(&e.name),
                        by(e.from),
                        tried.len()
                    ),
                )
                .requester(&name(&c.nodes[e.from].path))
                .rule("the loader stops the program when a DT_NEEDED is found nowhere"),
            ),
            elf::Target::Rejected { path, rejection, .. } => out.push(
                Diagnosis::new(
                    Kind::NeededNotFound,
                    format!(
                        "{}, DT_NEEDED of {}, is refused by the loader: {}: {}",
                        name(&e.name),
                        by(e.from),
                        name(path),
                        rejection.message
                    ),
                )
                .requester(&name(&c.nodes[e.from].path))
                .rule("the loader stops at a candidate its open_verify refuses"),
            ),
            elf::Target::New(i) => sonames.push(c.nodes[*i].header.soname.clone().unwrap_or_else(|| e.name.clone())),
            elf::Target::Repeat(_) => {}
        }
        for pin in pins {
            if catalogue::pin_match(&e.name, pin.soname.as_bytes()) == catalogue::PinMatch::OtherMajor {
                out.push(
                    Diagnosis::new(
                        Kind::PinOtherMajor,
                        format!(
                            "pin {} cannot serve {}, DT_NEEDED of {} (another major)",
                            pin.soname,
                            name(&e.name),
                            by(e.from)
                        ),
                    )
                    .files(vec![pin.path.display().to_string()])
                    .requester(&name(&c.nodes[e.from].path))
                    .rule("a pin serves requests for its own major only"),
                );
            }
        }
    }
    out.extend(two_majors(sonames.iter().map(Vec::as_slice), Place::Closure));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_names() {
        for (k, name) in [
            (Kind::Shadowing, "shadowing"),
            (Kind::LdLibraryPathShadowsWheel, "ld_library_path_shadows_wheel"),
            (Kind::DriverTooOld, "driver_too_old"),
            (Kind::RequirementMismatch, "requirement_mismatch"),
            (Kind::WheelClash, "wheel_clash"),
            (Kind::FrameworksCudaMajors, "frameworks_cuda_majors"),
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), name);
        }
        assert_eq!(serde_json::to_value(Severity::Warning).unwrap(), "warning");
    }

    #[test]
    fn two_majors_of_one_stem_only() {
        let names: [&[u8]; 4] = [b"libcudnn.so.8", b"/x/libcudnn.so.9.1.0", b"libcublas.so.12", b"libcublasLt.so.11"];
        let found = two_majors(names, Place::SearchPath);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.starts_with("libcudnn majors 8 and 9 "), "{}", found[0].message);
        let found = two_majors(names, Place::Closure);
        assert_eq!(found[0].message, "two majors of libcudnn in the closure: libcudnn.so.8, libcudnn.so.9.1.0");
    }

    #[test]
    fn a_driver_is_judged_against_each_runtime_major() {
        let majors: BTreeSet<u32> = [11, 12, 99].into();
        assert_eq!(driver_too_old_for("470.57.02", &majors), [(12, "525.60.13")]);
        assert!(driver_too_old_for("535.104.05", &majors).is_empty());
    }
}
