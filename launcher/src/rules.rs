//! The one rules engine's vocabulary and its shared checks: every finding of
//! `run`'s pre-flight, of `doctor` and of the report is a [`Diagnosis`] of a
//! [`Kind`]. A check used in more than one place (two majors of a library,
//! the driver a runtime needs) is written here once; the rules that only one
//! of them has live beside the facts they read (`report::diagnose`,
//! `doctor`), and these are the pre-flight's.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

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
    /// A load that failed (mapped, then undone): glibc's words, the
    /// provider lacking what was needed, the file that has it.
    LoadFailed,
}

impl Kind {
    pub fn severity(self) -> Severity {
        match self {
            Kind::DriverStub
            | Kind::DriverTooOld
            | Kind::RuntimeNewerThanDriver
            | Kind::NeededNotFound
            | Kind::PinOtherMajor
            | Kind::LoadFailed => Severity::Error,
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
            Kind::LoadFailed => "load_failed",
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
    /// As a process's `instance`: which process under that host and pid.
    #[serde(skip_serializing_if = "is_first_instance")]
    pub instance: u32,
    pub message: String,
    pub files: Vec<String>,
    pub requester: Option<String>,
    /// The loader rule or release rule that explains it.
    pub rule: String,
    /// A failed load's facts and explanation (`load_failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Box<FailedLoad>>,
}

fn is_first_instance(instance: &u32) -> bool {
    *instance <= 1
}

impl Diagnosis {
    pub fn new(kind: Kind, message: String) -> Diagnosis {
        Diagnosis {
            kind,
            severity: kind.severity(),
            host: String::new(),
            pid: None,
            instance: 1,
            message,
            files: Vec::new(),
            requester: None,
            rule: String::new(),
            failure: None,
        }
    }

    pub fn in_process(mut self, host: &str, pid: i64, instance: u32) -> Diagnosis {
        self.host = host.to_owned();
        self.pid = Some(pid);
        self.instance = instance;
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

// ---- Failed loads: why, and the file to load instead ----

/// Why a load failed: the trace's `reason` (the audit module's names),
/// else read from glibc's words.
pub use culaunch_protocol::event::FailReason;

fn reason_name<S: serde::Serializer>(r: &FailReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

/// One failed load as glibc words it (dlerror's text): the trace's fields,
/// and what `error` says where they are missing (traces written before the
/// module recorded them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    #[serde(serialize_with = "reason_name")]
    pub reason: FailReason,
    /// glibc's words: dlerror's exact text, or rebuilt (`reconstructed`).
    pub error: Option<String>,
    /// `error` was rebuilt from the ELF files, not read from the loader.
    pub reconstructed: bool,
    /// The name glibc's text starts with: the object whose reference is
    /// undefined, the provider lacking a version, the name found nowhere,
    /// the file of the wrong class.
    pub object: Option<String>,
    pub symbol: Option<String>,
    pub version: Option<String>,
    /// The object that needed it, as glibc's text names it.
    pub required_by: Option<String>,
    /// `ELFCLASS32` or `ELFCLASS64`: the class of the file found.
    pub class_found: Option<String>,
}

const NO_FILE: &str = ": cannot open shared object file: No such file or directory";

impl Failure {
    /// A failure known by its reason alone; the rest is filled in by who
    /// knows it.
    pub fn new(reason: FailReason) -> Failure {
        Failure {
            reason,
            error: None,
            reconstructed: false,
            object: None,
            symbol: None,
            version: None,
            required_by: None,
            class_found: None,
        }
    }

    /// glibc's words taken apart (elf/dl-lookup.c, dl-version.c,
    /// dl-load.c). `mapped`: the request itself was mapped, so "cannot
    /// open" is about a dependency.
    pub fn parse(error: &str, mapped: bool) -> Failure {
        let own = |s: &str| Some(s.to_owned());
        let mut f = Failure::new(FailReason::Failed);
        f.error = own(error);
        if error.starts_with("culaunch:") {
            f.reason = FailReason::Refused;
        } else if let Some((x, rest)) = error.split_once(": undefined symbol: ") {
            f.reason = FailReason::UndefinedSymbol;
            let (symbol, version) = match rest.split_once(", version ") {
                Some((s, v)) => (s, Some(v)),
                None => (rest, None),
            };
            (f.object, f.required_by, f.symbol) = (own(x), own(x), own(symbol));
            f.version = version.map(str::to_owned);
        } else if let Some((x, rest)) = error.split_once(": version `") {
            if let Some((v, by)) = rest.split_once("' not found (required by ") {
                f.reason = FailReason::MissingVersion;
                (f.object, f.version) = (own(x), own(v));
                f.required_by = own(by.strip_suffix(')').unwrap_or(by));
            }
        } else if let Some((x, _)) = error.split_once(": cannot open shared object file") {
            f.reason = if mapped { FailReason::MissingDependency } else { FailReason::NotFound };
            f.object = own(x);
        } else if let Some((x, class)) = error.split_once(": wrong ELF class: ") {
            f.reason = FailReason::WrongClass;
            (f.object, f.class_found) = (own(x), own(class));
        }
        f
    }

    /// The trace's fields first; `error` parsed for whatever they lack.
    pub fn from_trace(
        reason: Option<&str>,
        error: Option<&str>,
        symbol: Option<&str>,
        version: Option<&str>,
        required_by: Option<&str>,
        mapped: bool,
    ) -> Failure {
        let mut f = match error {
            Some(e) => Failure::parse(e, mapped),
            None => Failure::new(FailReason::Failed),
        };
        if let Some(r) = reason.and_then(FailReason::parse) {
            f.reason = r;
        }
        let keep = |field: &mut Option<String>, given: Option<&str>| {
            if let Some(g) = given {
                *field = Some(g.to_owned());
            }
        };
        keep(&mut f.symbol, symbol);
        keep(&mut f.version, version);
        keep(&mut f.required_by, required_by);
        f
    }

    /// glibc names an object as it was opened, so a relative name is
    /// relative to the traced process's working directory, which the trace
    /// does not record and which is not ours: each is replaced by the file
    /// `path_of` knows it as (the trace's canonical path), or dropped, so
    /// that no file is read from our own directory in its place. The error
    /// text stays glibc's.
    pub fn anchor_relative(&mut self, path_of: impl Fn(&str) -> Option<String>) {
        for field in [&mut self.object, &mut self.required_by] {
            if let Some(name) = field.as_deref().filter(|n| n.contains('/') && !n.starts_with('/')) {
                *field = path_of(name);
            }
        }
    }

    /// The text glibc gives for this failure, rebuilt from what the ELF
    /// analysis found when the trace does not carry the loader's own (a
    /// reconstruction: paths are as culaunch knows them, which may differ
    /// from the name the loader opened).
    fn reconstruct(&mut self, e: &Explanation) {
        if self.error.is_some() {
            return;
        }
        let by = self.required_by.clone().or_else(|| e.requester.clone());
        let text = match self.reason {
            FailReason::UndefinedSymbol => by.zip(self.symbol.as_ref()).map(|(by, s)| {
                let v = self.version.as_ref().map(|v| format!(", version {v}")).unwrap_or_default();
                format!("{by}: undefined symbol: {s}{v}")
            }),
            FailReason::MissingVersion => {
                let provider = self.object.clone().or_else(|| e.provider.clone());
                match (provider, self.version.as_ref(), by) {
                    (Some(p), Some(v), Some(by)) => Some(format!("{p}: version `{v}' not found (required by {by})")),
                    _ => None,
                }
            }
            FailReason::MissingDependency | FailReason::NotFound => {
                self.object.clone().or_else(|| e.wanted.clone()).map(|x| format!("{x}{NO_FILE}"))
            }
            FailReason::WrongClass => {
                let x = self.object.clone().or_else(|| e.provider.clone());
                x.zip(self.class_found.as_ref()).map(|(x, c)| format!("{x}: wrong ELF class: {c}"))
            }
            FailReason::Refused | FailReason::Failed => None,
        };
        if text.is_some() {
            (self.error, self.reconstructed) = (text, true);
        }
    }
}

/// How to get the right file loaded instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fix {
    /// Drop this LD_LIBRARY_PATH entry: the loader then finds `path`.
    RemoveFromLdLibraryPath {
        entry: String,
        /// Other entries that name the same directory (another spelling, a
        /// link): all must go.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        also: Vec<String>,
        path: String,
    },
    /// `culaunch --pin SONAME=PATH`.
    Pin { soname: String, path: String },
}

impl std::fmt::Display for Fix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fix::RemoveFromLdLibraryPath { entry, also, .. } => {
                write!(f, "remove {entry}")?;
                for a in also {
                    write!(f, " and {a}")?;
                }
                write!(f, " from LD_LIBRARY_PATH")
            }
            Fix::Pin { soname, path } => write!(f, "--pin {soname}={path}"),
        }
    }
}

/// Which loaded file lacks what a failed load needed, and which file has
/// it: the same answer for a run's failed load and `deps --check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The object that needed it.
    pub requester: Option<String>,
    /// The file name that should provide it (a version's `vn_file`, a
    /// DT_NEEDED).
    pub wanted: Option<String>,
    /// The loaded file that lacks it (for a wrong class: the file found).
    pub provider: Option<String>,
    /// The search step that found the provider (`ld_library_path`, …).
    pub provider_search: Option<String>,
    /// A file of that name that has it.
    pub alternative: Option<String>,
    /// Where the alternative is: "the directory of …", "DT_RUNPATH of …",
    /// "pip wheels in …", …
    pub found_in: Option<String>,
    pub fix: Option<Fix>,
    /// The pin that loads the alternative, whatever `fix` is.
    pub pin: Option<Fix>,
    /// One sentence for the user.
    pub advice: String,
}

/// What failed loads are explained against.
pub struct Scene<'a> {
    /// The objects mapped, in load order, as the loader named them, each
    /// with the search step that found it when known.
    pub loaded: Vec<(PathBuf, Option<String>)>,
    /// Those of `loaded` that came after start-up (a dlopen, or its
    /// DT_NEEDED): in other objects' scope only if opened RTLD_GLOBAL, which
    /// the trace does not say. The rest (the program's own closure,
    /// LD_PRELOAD, what a forked child inherited) are taken as global.
    pub dlopened: std::collections::BTreeSet<PathBuf>,
    /// Who asked for each of `loaded`, and by what name (a run's trace:
    /// the load's caller and request). A fix must hold for each of them,
    /// not only for the failed request: the first to load a SONAME decides
    /// the copy every later one gets.
    pub requests: Vec<Request>,
    /// Whose closure the failure is in: the file the failed request mapped
    /// (a run), the program checked (`deps`).
    pub top: Option<PathBuf>,
    /// The process's program (a run): its start-up closure, like every
    /// dlopened object's, must survive a fix.
    pub program: Option<PathBuf>,
    /// The programs of the job's other processes on this host started with
    /// the same LD_LIBRARY_PATH: a fix to it must hold for them too.
    pub job_programs: Vec<PathBuf>,
    /// The files the failed request mapped and the failure unmapped (a
    /// run): new in it, though `loaded` may list them.
    pub undone: BTreeSet<PathBuf>,
    /// The process's LD_LIBRARY_PATH and `deps --root`.
    pub ctx: elf::Context,
    /// Installations known (pip wheels, toolkits, conda envs).
    pub installations: Vec<elf::Place>,
    /// The closure's loader rules (`None`: this machine's).
    pub platform: Option<&'a elf::Platform>,
    /// What was read of the files, once however many failures are explained.
    pub files: Files,
}

/// One load of a run: the file mapped, the object that asked, the name
/// it asked by.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: PathBuf,
    pub caller: PathBuf,
    pub name: Vec<u8>,
}

/// Headers, search places and candidate files, each read once: `deps
/// --check` on a Python extension explains hundreds of symbols against the
/// same few files.
#[derive(Default)]
pub struct Files {
    headers: RefCell<HashMap<PathBuf, Option<Rc<elf::ElfHeader>>>>,
    places: RefCell<HashMap<PathBuf, Rc<Vec<elf::Place>>>>,
    /// Per (requester, file name).
    candidates: RefCell<HashMap<(PathBuf, Vec<u8>), Candidates>>,
    objects: RefCell<HashMap<PathBuf, Option<Rc<elf::symbols::DynObject>>>>,
    /// What the loader finds for (top, name): one closure per pair, not per
    /// symbol.
    resolved: RefCell<HashMap<(PathBuf, Vec<u8>), Resolved>>,
    /// Each host path's (device, inode) and canonical form: asked afresh
    /// per report, they were 6,280 `statx` calls for libtorch_python.so's
    /// 333 undefined symbols.
    ids: RefCell<elf::FastMap<PathBuf, Option<(u64, u64)>>>,
    canonical: RefCell<elf::FastMap<PathBuf, Option<PathBuf>>>,
    /// Which of `loaded` (its index) answers to a name: asked per report and
    /// per DT_NEEDED name, the search hashed every loaded object's path, a
    /// third of that `deps --check`.
    loaded_as: RefCell<elf::FastMap<Vec<u8>, Option<usize>>>,
}

type Resolved = Option<(PathBuf, Option<String>)>;

type Candidates = Rc<Vec<elf::symbols::Candidate>>;

fn search_name(r: &elf::Reason) -> &'static str {
    match r {
        elf::Reason::Direct => "direct",
        elf::Reason::Rpath { .. } | elf::Reason::Runpath => "rpath_runpath",
        elf::Reason::LdLibraryPath => "ld_library_path",
        elf::Reason::LdSoCache => "ld.so.cache",
        elf::Reason::Default => "default",
    }
}

impl Scene<'_> {
    /// The loaded objects whose dynamic symbols define `symbol` (any
    /// version), in load order.
    fn definers(&self, symbol: &str) -> Vec<PathBuf> {
        let defines = |o: Rc<elf::symbols::DynObject>| o.lookup(symbol.as_bytes(), None, 0, false).is_some();
        self.loaded.iter().filter(|(p, _)| self.object(p).is_some_and(defines)).map(|(p, _)| p.clone()).collect()
    }

    /// The objects the process had mapped before the failed request: what
    /// it loaded, less what the failure took back.
    fn loaded_before(&self) -> Vec<&PathBuf> {
        self.loaded.iter().map(|(p, _)| p).filter(|p| !self.undone.contains(*p)).collect()
    }

    /// Their (device, inode) pairs.
    fn ids_before(&self) -> BTreeSet<(u64, u64)> {
        self.loaded_before().into_iter().filter_map(|p| self.file_id(&self.host(p))).collect()
    }

    /// A path as named inside the root, on this machine.
    fn host(&self, p: &Path) -> PathBuf {
        match &self.ctx.root {
            Some(r) => {
                let mut h = r.as_os_str().to_owned();
                h.push(p.as_os_str());
                PathBuf::from(h)
            }
            None => p.to_path_buf(),
        }
    }

    /// The ELF headers of `p` (as named inside the root), read once.
    fn header(&self, p: &Path) -> Option<Rc<elf::ElfHeader>> {
        let mut headers = self.files.headers.borrow_mut();
        headers
            .entry(p.to_path_buf())
            .or_insert_with(|| elf::read_header(&self.host(p)).ok().flatten().map(Rc::new))
            .clone()
    }

    /// The dynamic symbols and versions of `p`, read once.
    fn object(&self, p: &Path) -> Option<Rc<elf::symbols::DynObject>> {
        let mut objects = self.files.objects.borrow_mut();
        let read = || elf::symbols::DynObject::open(&self.host(p)).ok().map(Rc::new);
        objects.entry(p.to_path_buf()).or_insert_with(read).clone()
    }

    /// The file the loader maps for `name` in `top`'s closure, and the step
    /// that finds it, worked out once.
    fn resolved(&self, top: &Path, name: &[u8]) -> Resolved {
        let key = (top.to_path_buf(), name.to_vec());
        if let Some(r) = self.files.resolved.borrow().get(&key) {
            return r.clone();
        }
        let r = elf::resolves_to(top, name, &self.ctx).map(|(p, r)| (p, r.as_ref().map(|r| search_name(r).to_owned())));
        self.files.resolved.borrow_mut().insert(key, r.clone());
        r
    }

    /// The last object loaded under `name` (its file name or SONAME).
    fn loaded_as(&self, name: &[u8]) -> Option<&(PathBuf, Option<String>)> {
        use std::os::unix::ffi::OsStrExt;
        if let Some(&i) = self.files.loaded_as.borrow().get(name) {
            return i.map(|i| &self.loaded[i]);
        }
        let i = self.loaded.iter().rposition(|(p, _)| {
            p.file_name().is_some_and(|f| f.as_bytes() == name)
                || self.header(p).and_then(|h| h.soname.clone()).as_deref() == Some(name)
        });
        self.files.loaded_as.borrow_mut().insert(name.to_vec(), i);
        i.map(|i| &self.loaded[i])
    }

    /// Where to look for what `anchor` (the requester) lacked.
    fn places(&self, anchor: Option<&Path>) -> Rc<Vec<elf::Place>> {
        use std::os::unix::ffi::OsStrExt;
        let key = anchor.map(Path::to_path_buf).unwrap_or_default();
        if let Some(p) = self.files.places.borrow().get(&key) {
            return p.clone();
        }
        let beside: Vec<Vec<u8>> = self.loaded.iter().map(|(p, _)| p.as_os_str().as_bytes().to_vec()).collect();
        let places = match anchor.zip(anchor.and_then(|a| self.header(a))) {
            Some((a, h)) => elf::places(&elf::Seen {
                requester: a.as_os_str().as_bytes(),
                header: &h,
                ld_library_path: self.ctx.ld_library_path.as_deref(),
                installations: &self.installations,
                beside: &beside,
                root: self.ctx.root.as_deref(),
                platform: self.platform,
            }),
            None => self.installations.clone(),
        };
        let places = Rc::new(places);
        self.files.places.borrow_mut().insert(key, places.clone());
        places
    }

    /// The (device, inode) of a host path, asked once.
    fn file_id(&self, host: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        if let Some(id) = self.files.ids.borrow().get(host) {
            return *id;
        }
        let id = std::fs::metadata(host).ok().map(|m| (m.dev(), m.ino()));
        self.files.ids.borrow_mut().insert(host.to_path_buf(), id);
        id
    }

    /// Whether two host paths name one file.
    fn same_file(&self, a: &Path, b: &Path) -> bool {
        let a = self.file_id(a);
        a.is_some() && a == self.file_id(b)
    }

    /// A host path with its links resolved, asked once.
    fn canonical(&self, host: &Path) -> Option<PathBuf> {
        if let Some(c) = self.files.canonical.borrow().get(host) {
            return c.clone();
        }
        let c = std::fs::canonicalize(host).ok();
        self.files.canonical.borrow_mut().insert(host.to_path_buf(), c.clone());
        c
    }

    /// The files named `name` in the places of `anchor`.
    fn candidates(&self, anchor: Option<&Path>, name: &[u8]) -> Candidates {
        let key = (anchor.map(Path::to_path_buf).unwrap_or_default(), name.to_vec());
        if let Some(c) = self.files.candidates.borrow().get(&key) {
            return c.clone();
        }
        let found = Rc::new(elf::symbols::candidates(name, &self.places(anchor)));
        self.files.candidates.borrow_mut().insert(key, found.clone());
        found
    }
}

fn text(p: &Path) -> String {
    p.display().to_string()
}

/// A dependency found nowhere or of the wrong class, as the failed
/// request's closure shows it (the loader's order): its name when the trace
/// does not say it, who needed it, and the wrong-class file (returned),
/// which the loader skipped in its search and names only by the request.
fn from_closure(f: &mut Failure, scene: &Scene<'_>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let base = |s: &str| -> Vec<u8> { s.rsplit('/').next().unwrap_or(s).as_bytes().to_vec() };
    let unnamed = f.object.is_none();
    if f.reason == FailReason::WrongClass || (f.reason == FailReason::MissingDependency && unnamed) {
        if let Some(c) = scene.top.as_ref().and_then(|t| elf::closure_in(t, &scene.ctx).ok()) {
            let other_class = |p: &[u8]| {
                let p = scene.host(Path::new(std::ffi::OsStr::from_bytes(p)));
                let h = elf::read_header(&p).ok().flatten()?;
                let (is_64, machine) = elf::symbols::native_class();
                (h.is_64 != is_64 || h.machine != machine)
                    .then_some((p, if h.is_64 { "ELFCLASS64" } else { "ELFCLASS32" }))
            };
            let named = f.object.as_deref().map(base);
            let found = c.edges.iter().filter(|e| named.as_ref().is_none_or(|n| *n == e.name)).find_map(|e| {
                match (&e.to, f.reason) {
                    (elf::Target::Missing { .. }, FailReason::MissingDependency) => Some((e, None)),
                    (elf::Target::Missing { tried }, FailReason::WrongClass) => {
                        tried.iter().find_map(|t| other_class(t)).map(|w| (e, Some(w)))
                    }
                    (elf::Target::Rejected { path, .. }, FailReason::WrongClass) => {
                        other_class(path).map(|w| (e, Some(w)))
                    }
                    _ => None,
                }
            });
            if let Some((e, wrong)) = found {
                f.object.get_or_insert_with(|| String::from_utf8_lossy(&e.name).into_owned());
                f.required_by.get_or_insert_with(|| String::from_utf8_lossy(&c.nodes[e.from].path).into_owned());
                if let Some((p, class)) = wrong {
                    f.class_found.get_or_insert_with(|| class.to_owned());
                    return Some(p);
                }
            }
        }
    }
    None
}

/// A cause the files point at but the trace cannot confirm: it records
/// neither how each object was opened nor how much static TLS was left.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Suspect {
    /// `object`, new in the failed request, uses the initial-exec TLS
    /// model (DF_STATIC_TLS) for `size` bytes: a library loaded after
    /// start-up gets static TLS only from the small reserve left, of which
    /// those dlopened before took `earlier` bytes. `preload`: loading it at
    /// start-up would not itself stop the start (no `-z now` object of its
    /// closure has a symbol its closure does not define).
    StaticTls { object: PathBuf, size: u64, earlier: u64, preload: bool },
    /// `requester` needs `symbol`, which only `definer`, dlopened before,
    /// defines: in scope only if it was opened RTLD_GLOBAL (and is still
    /// open).
    OutOfScope { symbol: String, version: Option<String>, requester: String, definer: PathBuf },
    /// `requester` needs `symbol`, which nothing loaded defines: the cause
    /// unless another suspect comes first.
    Undefined { symbol: String, version: Option<String>, requester: String },
}

/// What glibc reserves at least for the static TLS of libraries loaded
/// after start-up (`glibc.rtld.optional_static_tls`; it keeps a little
/// more spare): more than this, with what was dlopened before, is a
/// suspect when the cause is unknown.
const OPTIONAL_STATIC_TLS: u64 = 512;

const NO_STATIC_TLS: &str = ": cannot allocate memory in static TLS block";

impl Suspect {
    /// glibc's words for it.
    fn words(&self) -> String {
        match self {
            Suspect::StaticTls { object, .. } => format!("{}{NO_STATIC_TLS}", text(object)),
            Suspect::OutOfScope { symbol, version, requester, .. }
            | Suspect::Undefined { symbol, version, requester } => {
                let v = version.as_ref().map(|v| format!(", version {v}")).unwrap_or_default();
                format!("{requester}: undefined symbol: {symbol}{v}")
            }
        }
    }

    /// What it is, and how to get the load through.
    fn advice(&self) -> String {
        match self {
            Suspect::StaticTls { object, size, earlier, preload } => {
                let o = text(object);
                // Whole KiB above what the late libraries need together.
                let reserve = (size + earlier).div_ceil(1024) * 1024 + 1024;
                let before = match earlier {
                    0 => String::new(),
                    e => format!(", of which the libraries dlopened before it took {e} bytes"),
                };
                let preload = if *preload {
                    format!("load it at start-up, with LD_PRELOAD={o} (added to any LD_PRELOAD already set), or ")
                } else {
                    String::new()
                };
                format!(
                    "{o} keeps {size} bytes of thread-local storage in the static TLS block (initial-exec model, DF_STATIC_TLS), and a library loaded after start-up gets static TLS only from the small reserve left (at least {OPTIONAL_STATIC_TLS} bytes, glibc.rtld.optional_static_tls){before}: {preload}reserve more: GLIBC_TUNABLES=glibc.rtld.optional_static_tls={reserve} (added to any GLIBC_TUNABLES already set, with a colon)"
                )
            }
            Suspect::OutOfScope { symbol, requester, definer, .. } => format!(
                "{requester} needs {symbol}, which only {} defines, and that was dlopened: it is in {requester}'s scope only if it was opened with RTLD_GLOBAL (the trace does not record how) and is still open; open it with RTLD_GLOBAL, or have {requester} list it in DT_NEEDED",
                text(definer)
            ),
            Suspect::Undefined { symbol, requester, .. } => {
                format!("{requester} needs {symbol}, which no loaded object defines")
            }
        }
    }
}

/// The objects the failed request maps that were not there before (not in
/// the program's start-up closure, not loaded) and keep thread-local
/// storage in the static TLS block, with its size; and how much of it the
/// objects dlopened before and still loaded keep.
fn static_tls_objects(closure: &elf::Closure, scene: &Scene<'_>) -> (Vec<(PathBuf, u64)>, u64) {
    use std::os::unix::ffi::OsStrExt;
    let path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
    let started: BTreeSet<(u64, u64)> = scene
        .program
        .as_ref()
        .and_then(|p| elf::closure_in(p, &scene.ctx).ok())
        .map(|c| c.nodes.iter().map(|n| n.header.file_id).collect())
        .unwrap_or_default();
    let before = scene.loaded_before();
    let loaded = scene.ids_before();
    let static_tls = |h: &elf::ElfHeader| h.dynamic_info.static_tls && h.tls_size > 0;
    let mut seen = BTreeSet::new();
    let earlier = before
        .iter()
        .filter(|p| scene.dlopened.contains(**p))
        .filter_map(|p| scene.header(p))
        .filter(|h| static_tls(h) && !started.contains(&h.file_id) && seen.insert(h.file_id))
        .map(|h| h.tls_size)
        .sum();
    let new = closure
        .nodes
        .iter()
        .filter(|n| static_tls(&n.header))
        .filter(|n| !started.contains(&n.header.file_id) && !loaded.contains(&n.header.file_id))
        .map(|n| (path(&n.path), n.header.tls_size))
        .collect();
    (new, earlier)
}

/// A version that an object of the failed request needs from a file the
/// process already has loaded under that name, and that the loaded copy
/// lacks: the loader uses the loaded copy, whatever the request's own
/// search would find (the closure the files show), and checks versions
/// first. (provider, version, requester), as glibc names them.
fn version_missing_from_loaded(closure: &elf::Closure, scene: &Scene<'_>) -> Option<(String, String, String)> {
    use std::os::unix::ffi::OsStrExt;
    let path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
    let before = scene.ids_before();
    // The objects new in the request: those loaded before passed their
    // check when they came.
    for node in closure.nodes.iter().filter(|n| !before.contains(&n.header.file_id)) {
        let Some(object) = scene.object(&path(&node.path)) else { continue };
        for (file, versions) in object.needs() {
            let Some((loaded, _)) = scene.loaded_as(file) else { continue };
            if scene.file_id(&scene.host(loaded)) == Some(node.header.file_id) {
                continue;
            }
            // Without version definitions glibc only notes the need.
            let Some(provider) = scene.object(loaded).filter(|o| o.has_verdef()) else { continue };
            let defined = |name: &[u8]| provider.definitions().any(|d| d.name == name);
            if let Some(v) = versions.iter().find(|v| !v.weak && !defined(&v.name)) {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                return Some((text(loaded), s(&v.name), s(&node.path)));
            }
        }
    }
    None
}

/// Whether loading `object` at start-up (LD_PRELOAD) would not itself stop
/// the start: no `-z now` object of its closure has a symbol the closure
/// does not define.
fn preloadable(object: &Path, scene: &Scene<'_>) -> bool {
    use elf::symbols::Finding;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = elf::closure_in(object, &scene.ctx) else { return false };
    let Ok(problems) = elf::symbols::check(&c, object.as_os_str().as_bytes()) else { return false };
    !problems.iter().any(|p| match p.finding {
        Finding::UndefinedSymbol { .. } => c.nodes[p.requester_node].header.dynamic_info.bind_now,
        Finding::MissingVersion { weak, .. } => !weak,
        _ => false,
    })
}

/// A load known to have failed, but not why (the program never asked
/// `dlerror`), or why in words this module does not take apart: the first
/// of the loader's checks that the failed request's closure does not pass,
/// as `deps --check` finds it (version nodes, then each relocation's
/// symbol), leaving out symbols an object the process had mapped at start
/// defines. glibc's words are then rebuilt from it. What the files only
/// suggest (a symbol that only a dlopened object defines, static TLS that
/// may not fit) is returned, and no cause is set.
fn cause_from_files(f: &mut Failure, scene: &Scene<'_>) -> Vec<Suspect> {
    use elf::symbols::Finding;
    use std::os::unix::ffi::OsStrExt;
    if f.reason != FailReason::Failed {
        return Vec::new();
    }
    let Some(top) = &scene.top else { return Vec::new() };
    let Ok(closure) = elf::closure_in(top, &scene.ctx) else { return Vec::new() };
    let (tls, earlier) = static_tls_objects(&closure, scene);
    let suspect = |object: PathBuf, size| {
        let preload = preloadable(&object, scene);
        Suspect::StaticTls { object, size, earlier, preload }
    };
    if let Some(error) = &f.error {
        // glibc names the object it could not place.
        let Some((named, _)) = error.split_once(NO_STATIC_TLS) else { return Vec::new() };
        let named = Path::new(named);
        let size = tls.iter().find(|(p, _)| scene.same_file(&scene.host(p), &scene.host(named))).map(|(_, s)| *s);
        let size = size.or_else(|| scene.header(named).map(|h| h.tls_size).filter(|s| *s > 0));
        return size.map(|size| suspect(named.to_path_buf(), size)).into_iter().collect();
    }
    if let Some((provider, version, requester)) = version_missing_from_loaded(&closure, scene) {
        f.reason = FailReason::MissingVersion;
        (f.version, f.object, f.required_by) = (Some(version), Some(provider), Some(requester));
        return Vec::new();
    }
    let Ok(problems) = elf::symbols::check(&closure, top.as_os_str().as_bytes()) else { return Vec::new() };
    // What the request adds, with what was dlopened before, may not fit.
    let late_total = earlier + tls.iter().map(|(_, size)| size).sum::<u64>();
    let mut suspects: Vec<Suspect> = if late_total > OPTIONAL_STATIC_TLS {
        tls.into_iter().map(|(object, size)| suspect(object, size)).collect()
    } else {
        Vec::new()
    };
    let mut symbols = Vec::new();
    for p in problems {
        match p.finding {
            // rtld checks every version before it places TLS or relocates.
            Finding::MissingVersion { version, weak: false } => {
                f.reason = FailReason::MissingVersion;
                (f.version, f.object, f.required_by) = (Some(version), p.provider, Some(p.requester));
                return Vec::new();
            }
            Finding::UndefinedSymbol { symbol, version } => {
                // A symbol an object mapped at start defines binds: not
                // the cause.
                let definers = scene.definers(&symbol);
                if !definers.iter().all(|d| scene.dlopened.contains(d)) {
                    continue;
                }
                let requester = p.requester;
                symbols.push(match definers.into_iter().next() {
                    Some(definer) => Suspect::OutOfScope { symbol, version, requester, definer },
                    None => Suspect::Undefined { symbol, version, requester },
                });
            }
            _ => {}
        }
    }
    // Nothing defines it and nothing else may come first: the cause.
    let undefined = symbols.iter().find(|s| matches!(s, Suspect::Undefined { .. }));
    if let (true, Some(Suspect::Undefined { symbol, version, requester })) = (suspects.is_empty(), undefined) {
        f.reason = FailReason::UndefinedSymbol;
        (f.symbol, f.version) = (Some(symbol.clone()), version.clone());
        (f.object, f.required_by) = (Some(requester.clone()), Some(requester.clone()));
        return Vec::new();
    }
    // The first of each kind, in the loader's order: one is enough to fail
    // the load.
    let mut kinds = std::collections::HashSet::new();
    suspects.extend(symbols.into_iter().filter(|s| kinds.insert(std::mem::discriminant(s))));
    suspects
}

/// Where the loader gives up starting the program whose closure `c` is,
/// in glibc's words (`argv0` is how it names the program): the first
/// DT_NEEDED found nowhere, or whose file it refuses, in load order; else
/// the first missing version node; else the first undefined symbol of a
/// `-z now` object. `None`: the files show nothing that stops a start
/// (an undefined symbol of a lazily bound object fails only when called).
/// `skip`: names something else provides (a pin).
pub fn start_stop(c: &elf::Closure, argv0: &str, skip: &dyn Fn(&[u8]) -> bool) -> Option<Failure> {
    use elf::symbols::Finding;
    use elf::Target;
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // The program is named by its argv[0] (rtld's `_dl_argv[0]`), the
    // libraries by the paths they were found at.
    let name_of = |i: usize| if i == elf::ROOT { argv0.to_owned() } else { s(&c.nodes[i].path) };
    let failed = |reason, object: String, by: String, text: String| {
        let mut f = Failure::new(reason);
        (f.object, f.required_by, f.error, f.reconstructed) = (Some(object), Some(by), Some(text), true);
        f
    };
    for e in &c.edges {
        match &e.to {
            Target::Missing { .. } if !skip(&e.name) => {
                let name = s(&e.name);
                let text = format!("{argv0}: error while loading shared libraries: {name}{NO_FILE}");
                return Some(failed(FailReason::MissingDependency, name, name_of(e.from), text));
            }
            Target::Rejected { path, rejection, .. } if !skip(&e.name) => {
                let named = s(if rejection.names_request { &e.name } else { path });
                let text = format!("{argv0}: error while loading shared libraries: {named}: {}", rejection.message);
                return Some(failed(FailReason::Failed, named, name_of(e.from), text));
            }
            _ => {}
        }
    }
    let problems = elf::symbols::check(c, argv0.as_bytes()).ok()?;
    // rtld checks every version before it relocates anything.
    if let Some(p) = problems.iter().find(|p| matches!(p.finding, Finding::MissingVersion { weak: false, .. })) {
        let Finding::MissingVersion { version, .. } = &p.finding else { return None };
        let provider = p.provider.clone().unwrap_or_default();
        if !skip(provider.rsplit('/').next().unwrap_or_default().as_bytes()) {
            let mut f = failed(FailReason::MissingVersion, provider, p.requester.clone(), p.line.clone());
            f.version = Some(version.clone());
            return Some(f);
        }
    }
    problems.iter().find_map(|p| {
        let Finding::UndefinedSymbol { symbol, version } = &p.finding else { return None };
        if !c.nodes[p.requester_node].header.dynamic_info.bind_now {
            return None;
        }
        let v = version.as_ref().map(|v| format!(", version {v}")).unwrap_or_default();
        let text = format!("{argv0}: symbol lookup error: {}: undefined symbol: {symbol}{v}", p.requester);
        let mut f = failed(FailReason::UndefinedSymbol, p.requester.clone(), p.requester.clone(), text);
        (f.symbol, f.version) = (Some(symbol.clone()), version.clone());
        Some(f)
    })
}

/// Explains one failed load (or one line of `deps --check`): which loaded
/// provider lacks the symbol or version, which file has it (the
/// requester's directory and RPATH/RUNPATH first, then LD_LIBRARY_PATH,
/// the installations, the loader's directories), and how to get it loaded:
/// drop the LD_LIBRARY_PATH entry the provider came from when the loader
/// would then find the good file, else pin it. Fills in glibc's words when
/// the trace lacks them.
pub fn explain(f: &mut Failure, scene: &Scene<'_>) -> Explanation {
    let suspects = cause_from_files(f, scene);
    let base = |s: &str| -> Vec<u8> { s.rsplit('/').next().unwrap_or(s).as_bytes().to_vec() };
    let header = |p: &Path| scene.header(p);
    let wrong_file = from_closure(f, scene);
    // The object that needed it: named by glibc, else the first mapped
    // object whose DT_NEEDED names the missing file.
    let requester: Option<PathBuf> = f.required_by.as_ref().map(PathBuf::from).or_else(|| {
        let name = base(f.object.as_deref()?);
        scene
            .top
            .iter()
            .chain(scene.loaded.iter().map(|(p, _)| p))
            .find_map(|p| header(p).filter(|h| h.dynamic_info.needed.contains(&name)).map(|_| p.clone()))
    });
    let requester_header = requester.as_deref().and_then(header);
    let dynobj = requester.as_deref().and_then(|r| scene.object(r));
    // The file names that should provide it.
    let vn_file = |v: &str| dynobj.as_ref().and_then(|o| o.needed_version_file(v.as_bytes())).map(<[u8]>::to_vec);
    let names: Vec<Vec<u8>> = match f.reason {
        FailReason::UndefinedSymbol => match f.version.as_deref().and_then(vn_file) {
            Some(file) => vec![file],
            // Unversioned: whichever DT_NEEDED has it.
            None => requester_header.as_ref().map(|h| h.dynamic_info.needed.clone()).unwrap_or_default(),
        },
        FailReason::MissingVersion => {
            f.version.as_deref().and_then(vn_file).or_else(|| f.object.as_deref().map(base)).into_iter().collect()
        }
        FailReason::MissingDependency | FailReason::WrongClass => f.object.as_deref().map(base).into_iter().collect(),
        _ => Vec::new(),
    };
    // The class the file must be of: the requester's (this build's when
    // the request itself was of the wrong class).
    let class = Some(requester_header.as_ref().map_or_else(elf::symbols::native_class, |h| (h.is_64, h.machine)));
    let anchor = requester.clone().or_else(|| f.object.as_ref().map(PathBuf::from)).or_else(|| scene.top.clone());
    let top = scene.top.clone().or_else(|| requester.clone());
    let mut chosen = None;
    for name in &names {
        // The loaded file that lacks it, and the step that found it.
        let named_path = f.object.as_ref().filter(|o| o.contains('/')).map(PathBuf::from);
        let given = match f.reason {
            FailReason::WrongClass if named_path.is_none() => wrong_file.clone().map(|p| (p, None)),
            FailReason::MissingVersion | FailReason::WrongClass => named_path.map(|p| {
                let step = scene.loaded.iter().find(|(l, _)| scene.same_file(&scene.host(l), &scene.host(&p)));
                (p, step.and_then(|(_, s)| s.clone()))
            }),
            _ => None,
        };
        // What the loader finds for the name from the failed request: the
        // provider when the trace does not name it, and the step that found
        // it when the trace does not say.
        let resolved = || scene.resolved(top.as_deref()?, name);
        let provider: Option<(PathBuf, Option<String>)> = match given.or_else(|| scene.loaded_as(name).cloned()) {
            Some((p, None)) => {
                let step = resolved().filter(|(r, _)| scene.same_file(r, &scene.host(&p))).and_then(|(_, s)| s);
                Some((p, step))
            }
            Some(known) => Some(known),
            None if f.reason == FailReason::MissingDependency => None,
            None => resolved(),
        };
        let wanted = elf::symbols::Wanted {
            symbol: f.symbol.as_deref().map(str::as_bytes),
            version: f.version.as_deref().map(str::as_bytes),
            class,
        };
        let provider_id = provider.as_ref().and_then(|(p, _)| scene.file_id(&scene.host(p)));
        let candidates = scene.candidates(anchor.as_deref(), name);
        let alt = elf::symbols::find_alternative(&wanted, provider_id, &candidates);
        // The trace's paths are canonical; so is the file named to load.
        let alt = alt.map(|c| match scene.ctx.root {
            None => (scene.canonical(&c.path).unwrap_or_else(|| c.path.clone()), c.label.clone()),
            Some(_) => (c.path.clone(), c.label.clone()),
        });
        let found = alt.is_some();
        chosen = Some((name.clone(), provider, alt));
        if found {
            break;
        }
    }
    // An unversioned symbol none of the requester's libraries has, in any
    // copy: no provider is to blame (the program itself, or an object
    // loaded before with RTLD_GLOBAL, is expected to define it).
    let unversioned = f.reason == FailReason::UndefinedSymbol && f.version.is_none();
    if unversioned && chosen.as_ref().is_some_and(|(_, _, alt)| alt.is_none()) {
        chosen = None;
    }
    let wanted_name = chosen.as_ref().map(|(n, _, _)| String::from_utf8_lossy(n).into_owned());
    let (provider, provider_search, mut alt) = match chosen {
        Some((_, p, a)) => (p.as_ref().map(|(p, _)| p.clone()), p.and_then(|(_, s)| s), a),
        None => (None, None, None),
    };
    let what = match (&f.symbol, &f.version) {
        (Some(s), Some(v)) => format!("{s}@{v}"),
        (Some(s), None) => s.clone(),
        (None, Some(v)) => format!("version {v}"),
        (None, None) => "it".into(),
    };
    // A file of that name where the loader looks that it could not open is
    // no fix to pin: its mode is the cause.
    let mut barred = None;
    if f.reason == FailReason::MissingDependency {
        match &alt {
            Some((a, label)) if loader_place(label) => {
                if let Some(why) = unreadable(&scene.host(a), false) {
                    barred = Some((a.clone(), label.clone(), why));
                    alt = None;
                }
            }
            Some(_) => {}
            None => {
                let places = scene.places(anchor.as_deref());
                barred = names.iter().find_map(|n| {
                    places.iter().find_map(|(dir, label)| {
                        let p = dir.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(n));
                        unreadable(&p, true).map(|why| (p, label.clone(), why))
                    })
                });
            }
        }
    }
    // A pin keyed by the good file's SONAME, which a pin must carry.
    let pin = alt.as_ref().map(|(a, _)| {
        let soname = elf::read_header(&scene.host(a)).ok().flatten().and_then(|h| h.soname);
        Fix::Pin {
            soname: soname
                .map_or(wanted_name.clone().unwrap_or_default(), |s| String::from_utf8_lossy(&s).into_owned()),
            path: text(a),
        }
    });
    let fix = alt.as_ref().zip(pin.clone()).map(|((a, _), pin)| {
        let name = wanted_name.clone().unwrap_or_default();
        match (&provider, provider_search.as_deref(), &top) {
            (Some(p), Some("ld_library_path"), Some(top)) => {
                drop_entry(scene, top, name.as_bytes(), p, a).unwrap_or(pin)
            }
            _ => pin,
        }
    });
    let provider_text = provider.as_deref().map(text);
    let name = wanted_name.clone().unwrap_or_else(|| "the file".into());
    let quoted = |fix: &Fix| match fix {
        Fix::Pin { .. } => format!("`{fix}`"),
        Fix::RemoveFromLdLibraryPath { .. } => fix.to_string(),
    };
    let advice = match (&alt, &fix, f.reason) {
        (Some((a, label)), Some(fix), FailReason::MissingDependency) => format!(
            "{name} is found nowhere the loader looks; {} ({label}) is a file of that name: {}",
            text(a),
            quoted(fix)
        ),
        (Some((a, label)), Some(fix), FailReason::WrongClass) => format!(
            "{} is {}; {} ({label}) is of the right class: {}",
            provider_text.as_deref().unwrap_or(&name),
            f.class_found.as_deref().unwrap_or("of another class"),
            text(a),
            quoted(fix)
        ),
        (Some((a, label)), Some(fix), _) => {
            let or_pin = match (fix, &pin) {
                (Fix::RemoveFromLdLibraryPath { .. }, Some(pin)) => format!(" (or {})", quoted(pin)),
                _ => String::new(),
            };
            format!(
                "{} ({label}) has {what}; load it instead of {}: {}{or_pin}",
                text(a),
                provider_text.as_deref().unwrap_or("the copy found first"),
                quoted(fix)
            )
        }
        (None, _, FailReason::MissingDependency) => match &barred {
            Some((p, label, why)) => format!(
                "{} ({label}) is a file of that name, where the loader looks, but {why}: the loader passes over a file it cannot open; make it readable to the job's user",
                text(p)
            ),
            None => format!("no file named {name} in the requester's directory, its RPATH/RUNPATH, LD_LIBRARY_PATH, the installations known or the loader's directories"),
        },
        (None, _, FailReason::WrongClass) => {
            format!("no {name} of the right class where the loader looks or in the installations known")
        }
        (None, _, FailReason::UndefinedSymbol | FailReason::MissingVersion) if wanted_name.is_some() => {
            format!("no other {name} on the search path or in the installations known has {what}")
        }
        (None, _, FailReason::Failed) => match (f.error.is_some(), suspects.as_slice()) {
            (true, [s, ..]) => s.advice(),
            (true, []) => "culaunch works out no cause of these words of the loader's from the files".into(),
            (false, []) => "the trace does not say why the load failed (the program did not ask dlerror), and the files show no missing library, version or symbol".into(),
            (false, [s]) => format!(
                "the trace does not say why the load failed (the program did not ask dlerror); the files show one possible cause, for which glibc says \"{}\": {}",
                s.words(),
                s.advice()
            ),
            (false, all) => {
                let each: Vec<String> =
                    all.iter().enumerate().map(|(i, s)| format!("({}) \"{}\": {}", i + 1, s.words(), s.advice())).collect();
                format!(
                    "the trace does not say why the load failed (the program did not ask dlerror); the files show {} possible causes: {}",
                    all.len(),
                    each.join("; ")
                )
            }
        },
        _ if unversioned => {
            let by = requester.as_deref().map(text).unwrap_or_else(|| "the requester".into());
            let mut advice = format!(
                "none of the libraries {by} needs defines {what}, in any copy where the loader looks: the program, or an object loaded before it with RTLD_GLOBAL, must define it"
            );
            // A dlopened object that defines it was opened RTLD_LOCAL, or
            // the symbol would have bound.
            if let Some(d) =
                f.symbol.as_deref().and_then(|s| scene.definers(s).into_iter().find(|d| scene.dlopened.contains(d)))
            {
                advice.push_str(&format!(
                    "; {} defines it, but is outside {by}'s scope: it was dlopened without RTLD_GLOBAL (or closed since); open it with RTLD_GLOBAL, or have {by} list it in DT_NEEDED",
                    text(&d)
                ));
            }
            advice
        }
        _ => "no loaded object defines it, and the requester names no library that could".into(),
    };
    let e = Explanation {
        requester: requester.as_deref().map(text),
        wanted: wanted_name,
        provider: provider_text,
        provider_search,
        alternative: alt.as_ref().map(|(a, _)| text(a)),
        found_in: alt.map(|(_, l)| l),
        fix,
        pin,
        advice,
    };
    f.reconstruct(&e);
    e
}

/// A place of the loader's own search for the requester (not one culaunch
/// adds: its directory, the installations known, beside a loaded library).
fn loader_place(label: &str) -> bool {
    ["DT_RUNPATH of ", "DT_RPATH of ", "LD_LIBRARY_PATH", "a default directory"].iter().any(|l| label.starts_with(l))
}

/// Why the job's loader may not have opened `p`, a file that is there:
/// this user may not read it, or (`strict` false: a file this user reads,
/// found where the job's loader looked and said it found nothing) its
/// mode keeps some users out, who may have included the job's.
fn unreadable(p: &Path, strict: bool) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(p).ok().filter(std::fs::Metadata::is_file)?;
    match std::fs::File::open(p) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Some(format!(
                "this user may not read it (mode {:04o}: permission denied)",
                meta.permissions().mode() & 0o7777
            ));
        }
        Err(_) => return None,
        Ok(_) if strict => return None,
        Ok(_) => {}
    }
    // This user reads it, and who the job's user was is not in the trace:
    // the mode makes it likely, not certain, that they could not.
    let mode = meta.permissions().mode() & 0o7777;
    (mode & 0o004 == 0).then(|| {
        format!(
            "it is there now with mode {mode:04o} (owner uid {}, gid {}), which lets only some users read it: it was unreadable to the job's user, or absent, when the job ran",
            meta.uid(),
            meta.gid()
        )
    })
}

/// The LD_LIBRARY_PATH entry to drop when `provider` (found there) lacks
/// what `top`'s closure needs and, without the entries that hold its
/// directory, the loader would map `good` for `name` instead, for every
/// request that got the provider, and the same file as before for every
/// other load and every name in the closures of the job's programs and
/// dlopened objects.
fn drop_entry(scene: &Scene<'_>, top: &Path, name: &[u8], provider: &Path, good: &Path) -> Option<Fix> {
    use std::os::unix::ffi::OsStrExt;
    let dir = scene.host(provider).parent().and_then(|d| scene.canonical(d))?;
    let llp = scene.ctx.ld_library_path.clone().unwrap_or_default();
    let (drop, keep): (Vec<&[u8]>, Vec<&[u8]>) =
        llp.split(|&b| b == b':' || b == b';').filter(|e| !e.is_empty()).partition(|e| {
            let e = scene.host(Path::new(std::ffi::OsStr::from_bytes(e)));
            scene.canonical(&e).as_ref() == Some(&dir)
        });
    let entry = drop.first()?;
    let ctx = elf::Context { root: scene.ctx.root.clone(), ld_library_path: Some(keep.join(&b':')), deadline: None };
    let id = |p: &Path| scene.file_id(p);
    let (provider_id, good_id) = (id(&scene.host(provider)), id(good));
    // Dropping the entry may change one thing only: the copy that lacks it
    // becomes the good one. Any other file that moves (an older copy of a
    // library found only there, lacking a version the job needs) or goes
    // missing moves the failure elsewhere.
    let same_but_the_fix = |before: Option<(u64, u64)>, after: Option<(u64, u64)>| match before {
        None => true,
        b if b == provider_id => after == good_id,
        b => after == b,
    };
    let resolved =
        |from: &Path, name: &[u8], ctx: &elf::Context| elf::resolves_to(from, name, ctx).and_then(|(got, _)| id(&got));
    // The trace records CUDA libraries only unless `--all-libs`: what else
    // came from that directory shows in the files, in the closures of the
    // program, of every object it dlopened, and of the job's other programs
    // started with the same LD_LIBRARY_PATH.
    type FileId = Option<(u64, u64)>;
    let targets = |root: &Path, ctx: &elf::Context| -> Option<Vec<(Vec<u8>, FileId)>> {
        let c = elf::closure_in(root, ctx).ok()?;
        let of = |e: &elf::Edge| match e.to {
            elf::Target::New(i) | elf::Target::Repeat(i) => Some(c.nodes[i].header.file_id),
            _ => None,
        };
        Some(c.edges.iter().map(|e| (e.name.clone(), of(e))).collect())
    };
    let roots = scene.program.iter().chain(&scene.job_programs).chain(scene.dlopened.iter());
    let closures_hold = roots.into_iter().all(|r| match (targets(r, &scene.ctx), targets(r, &ctx)) {
        (Some(before), Some(after)) => before.iter().all(|(n, b)| {
            let a = after.iter().find(|(m, _)| m == n).and_then(|(_, a)| *a);
            same_but_the_fix(*b, a)
        }),
        _ => true,
    });
    let holds = closures_hold
        && resolved(top, name, &ctx) == good_id
        && scene.requests.iter().all(|r| {
            let mapped = scene.host(&r.path);
            let from_dir = mapped.parent().and_then(|d| scene.canonical(d)).as_ref() == Some(&dir);
            !from_dir || same_but_the_fix(id(&mapped), resolved(&scene.host(&r.caller), &r.name, &ctx))
        });
    let shown = |e: &&[u8]| String::from_utf8_lossy(e).into_owned();
    let mut also: Vec<String> = Vec::new();
    for e in drop[1..].iter().filter(|e| *e != entry).map(shown) {
        if !also.contains(&e) {
            also.push(e);
        }
    }
    holds.then(|| Fix::RemoveFromLdLibraryPath { entry: shown(entry), also, path: text(good) })
}

/// A failed load and its explanation, as a diagnosis's `failure`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailedLoad {
    pub request: Option<String>,
    /// The file the failed request mapped (then unmapped), if any.
    pub path: Option<String>,
    /// The loader gave up on the program's own start (its DT_NEEDED
    /// closure): the process ended before `main`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub before_main: bool,
    #[serde(flatten)]
    pub failure: Failure,
    pub explanation: Explanation,
}

/// The diagnosis of one failed load: glibc's words, the provider that
/// lacks it, the file that has it, and the fix. `files`: the provider,
/// then the alternative.
pub fn load_failed(failed: FailedLoad) -> Diagnosis {
    let f = &failed.failure;
    let e = &failed.explanation;
    let said =
        f.error.clone().unwrap_or_else(|| format!("loading {} failed", failed.request.as_deref().unwrap_or("?")));
    let lacks = match (&e.provider, f.reason) {
        (Some(p), FailReason::UndefinedSymbol | FailReason::MissingVersion) => {
            let step = e.provider_search.as_ref().map(|s| format!(" (found by {s})")).unwrap_or_default();
            format!(" {p}{step} lacks it.")
        }
        _ => String::new(),
    };
    let rule = match f.reason {
        FailReason::UndefinedSymbol => "every reference must bind to a definition in the scope, with the version it was linked against (elf/dl-lookup.c)",
        FailReason::MissingVersion => "a needed version node must be defined by the file named in DT_VERNEED (elf/dl-version.c)",
        FailReason::MissingDependency => "every DT_NEEDED of a loaded object must be found (elf/dl-load.c)",
        FailReason::WrongClass => "the loader maps only files of its own ELF class and machine (elf/dl-load.c open_verify)",
        FailReason::NotFound => "a name is searched in DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH, ld.so.cache, the default directories",
        FailReason::Refused => "a pin or --strict refused it",
        FailReason::Failed => "the loader's own error",
    };
    let reconstructed = match (failed.before_main, f.reconstructed) {
        (true, _) => " (the process ended before main; glibc's words rebuilt from the files)",
        (false, true) => " (glibc's words rebuilt from the files)",
        (false, false) => "",
    };
    let mut d = Diagnosis::new(Kind::LoadFailed, format!("{said}{reconstructed}.{lacks} {}", e.advice))
        .files(e.provider.iter().chain(e.alternative.iter()).cloned().collect())
        .rule(rule);
    if let Some(r) = &e.requester {
        d = d.requester(r);
    }
    d.failure = Some(Box::new(failed));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who the job's user was is not in the trace: a file this user reads
    /// is said to be possibly unreadable to them, never certainly.
    #[test]
    fn a_file_this_user_reads_is_never_said_to_have_kept_the_job_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("culaunch-unreadable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("libx.so.1");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let why = unreadable(&f, false).expect("a mode that keeps others out");
        assert!(why.contains("mode 0640") && why.contains("unreadable to the job's user, or absent"), "{why}");
        assert_eq!(unreadable(&f, true), None, "strict: only what this user may not read");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(unreadable(&f, false), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
    fn glibc_s_words_are_taken_apart_for_each_failure() {
        let f = Failure::parse(
            "/w/libcudnn_cnn_infer.so.8: undefined symbol: _ZN11nvrtcHelper4loadEb, version libcudnn_ops_infer.so.8",
            true,
        );
        assert_eq!(f.reason, FailReason::UndefinedSymbol);
        assert_eq!(f.symbol.as_deref(), Some("_ZN11nvrtcHelper4loadEb"));
        assert_eq!(f.version.as_deref(), Some("libcudnn_ops_infer.so.8"));
        assert_eq!(f.required_by.as_deref(), Some("/w/libcudnn_cnn_infer.so.8"));
        let f = Failure::parse("/p/libplugin.so: undefined symbol: not_defined_anywhere", true);
        assert_eq!(
            (f.reason, f.symbol.as_deref(), f.version),
            (FailReason::UndefinedSymbol, Some("not_defined_anywhere"), None)
        );
        let f = Failure::parse("/old/libv.so: version `V2' not found (required by /app/libuser.so)", true);
        assert_eq!(f.reason, FailReason::MissingVersion);
        assert_eq!((f.object.as_deref(), f.version.as_deref()), (Some("/old/libv.so"), Some("V2")));
        assert_eq!(f.required_by.as_deref(), Some("/app/libuser.so"));
        let missing = "libdep.so: cannot open shared object file: No such file or directory";
        assert_eq!(Failure::parse(missing, true).reason, FailReason::MissingDependency);
        assert_eq!(Failure::parse(missing, false).reason, FailReason::NotFound);
        assert_eq!(Failure::parse(missing, true).object.as_deref(), Some("libdep.so"));
        let f = Failure::parse("libdep.so: wrong ELF class: ELFCLASS32", true);
        assert_eq!((f.reason, f.class_found.as_deref()), (FailReason::WrongClass, Some("ELFCLASS32")));
        assert_eq!(Failure::parse("culaunch: refused libcudart.so.11 (--strict)", false).reason, FailReason::Refused);
        assert_eq!(Failure::parse("something else", true).reason, FailReason::Failed);
    }

    #[test]
    fn a_relative_name_is_the_traced_process_s_never_ours() {
        let mut f = Failure::parse("./libuser.so: undefined symbol: prov_new", true);
        f.anchor_relative(|n| (n == "./libuser.so").then(|| "/job/libuser.so".to_owned()));
        assert_eq!((f.object.as_deref(), f.required_by.as_deref()), (Some("/job/libuser.so"), Some("/job/libuser.so")));
        assert_eq!(f.error.as_deref(), Some("./libuser.so: undefined symbol: prov_new"));
        let mut f = Failure::parse("lib/libv.so: version `V2' not found (required by /app/libuser.so)", true);
        f.anchor_relative(|_| None);
        assert_eq!((f.object, f.required_by.as_deref()), (None, Some("/app/libuser.so")));
        let mut f = Failure::parse("libdep.so: cannot open shared object file: No such file or directory", true);
        f.anchor_relative(|_| unreachable!("a bare name is not a path"));
        assert_eq!(f.object.as_deref(), Some("libdep.so"));
    }

    #[test]
    fn the_trace_s_fields_win_over_what_the_words_say() {
        let f = Failure::from_trace(Some("missing_version"), None, None, Some("V2"), Some("/app/libuser.so"), true);
        assert_eq!((f.reason, f.error), (FailReason::MissingVersion, None));
        assert_eq!(f.required_by.as_deref(), Some("/app/libuser.so"));
        let f = Failure::from_trace(
            Some("from_the_future"),
            Some("x: wrong ELF class: ELFCLASS32"),
            None,
            None,
            None,
            true,
        );
        assert_eq!(f.reason, FailReason::WrongClass, "an unknown reason falls back to the words");
    }

    #[test]
    fn a_driver_is_judged_against_each_runtime_major() {
        let majors: BTreeSet<u32> = [11, 12, 99].into();
        assert_eq!(driver_too_old_for("470.57.02", &majors), [(12, "525.60.13")]);
        assert!(driver_too_old_for("535.104.05", &majors).is_empty());
    }
}
