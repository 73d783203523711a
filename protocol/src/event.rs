//! The trace schema (docs/trace-schema.md): one JSON object per line.
//!
//! Field and value names live here so that the writer (the audit module) and
//! the reader (the launcher's report) cannot drift apart.

/// Schema version written in every event's `v`.
pub const VERSION: u32 = 1;

pub const PROCESS_START: &str = "process_start";
pub const LOAD: &str = "load";
pub const CONFLICT: &str = "conflict";
pub const DENY: &str = "deny";
/// A traced process started a program that the loader will not run
/// culaunch in (`exe`, `reason`).
pub const UNTRACED: &str = "untraced";
/// The loader has mapped and relocated the program and the libraries it
/// needs (`la_preinit`); constructors and `main` come next. A process
/// whose start is recorded without it (and without an exit) ended before
/// `main`: the loader would not start the program.
pub const PROCESS_LOADED: &str = "process_loaded";
pub const PROCESS_EXIT: &str = "process_exit";
/// Written by the launcher after a run, one per library file: what it
/// learned of the file (release, installer), so the trace stands alone.
pub const FACTS: &str = "facts";
/// Written by the launcher after a run in which a process could not write
/// some of its events (`reason`), so that a report of the trace says it is
/// incomplete too.
pub const INCOMPLETE: &str = "incomplete";

/// How an object came to be mapped (the `how` field of a `load` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Mapped by the loader before `main`: the executable's DT_NEEDED closure
    /// and LD_PRELOAD.
    Initial,
    /// DT_NEEDED of an object loaded after start-up.
    Needed,
    /// The object a `dlopen` asked for.
    Dlopen,
    /// The object a `dlmopen` into a new or other namespace asked for.
    Dlmopen,
    /// Already mapped in the parent when this process was forked.
    Inherited,
}

impl How {
    pub const fn as_str(self) -> &'static str {
        match self {
            How::Initial => "initial",
            How::Needed => "needed",
            How::Dlopen => "dlopen",
            How::Dlmopen => "dlmopen",
            How::Inherited => "inherited",
        }
    }

    pub fn parse(s: &str) -> Option<How> {
        [How::Initial, How::Needed, How::Dlopen, How::Dlmopen, How::Inherited].into_iter().find(|h| h.as_str() == s)
    }
}

/// Which step of the loader's search found the file (the `search` field).
///
/// rtld-audit reports one flag for DT_RPATH and DT_RUNPATH alike, so they
/// share `rpath_runpath`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchStep {
    /// The request contained a slash and named the file itself.
    Direct,
    RpathRunpath,
    LdLibraryPath,
    LdSoCache,
    Default,
}

impl SearchStep {
    pub const fn as_str(self) -> &'static str {
        match self {
            SearchStep::Direct => "direct",
            SearchStep::RpathRunpath => "rpath_runpath",
            SearchStep::LdLibraryPath => "ld_library_path",
            SearchStep::LdSoCache => "ld.so.cache",
            SearchStep::Default => "default",
        }
    }

    pub fn parse(s: &str) -> Option<SearchStep> {
        [
            SearchStep::Direct,
            SearchStep::RpathRunpath,
            SearchStep::LdLibraryPath,
            SearchStep::LdSoCache,
            SearchStep::Default,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Why a load failed (the `reason` field of a `load` event with `ok:false`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// The request named no file the loader could open.
    NotFound,
    /// Relocation needed a symbol no loaded object defines (as the program's
    /// `-z now` or `RTLD_NOW` binds at once).
    UndefinedSymbol,
    /// A version node a DT_VERNEED names is not defined by its provider.
    MissingVersion,
    /// A DT_NEEDED of the object asked for was not found.
    MissingDependency,
    /// The file is of another ELF class (a 32-bit library in a 64-bit
    /// process).
    WrongClass,
    /// `--strict` or `--locked` refused a library the load needed.
    Refused,
    /// The load failed; the module does not know why.
    Failed,
}

impl FailReason {
    pub const ALL: [FailReason; 7] = [
        FailReason::NotFound,
        FailReason::UndefinedSymbol,
        FailReason::MissingVersion,
        FailReason::MissingDependency,
        FailReason::WrongClass,
        FailReason::Refused,
        FailReason::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            FailReason::NotFound => "not_found",
            FailReason::UndefinedSymbol => "undefined_symbol",
            FailReason::MissingVersion => "missing_version",
            FailReason::MissingDependency => "missing_dependency",
            FailReason::WrongClass => "wrong_class",
            FailReason::Refused => "refused",
            FailReason::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<FailReason> {
        FailReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}
