//! The launcher's one error type, and the exit statuses it maps to.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use crate::preflight::Unusable;

/// culaunch itself failed before starting the command (bad option, trace
/// file not writable, …), like `env` and `timeout`.
pub const EXIT_CULAUNCH: u8 = 125;
/// The command was found but could not be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: command not found", .0.to_string_lossy())]
    CommandNotFound(OsString),
    #[error("{}: cannot execute: {source}", .path.display())]
    CannotExecute {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the trace file {}: {source}", .path.display())]
    TraceFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the run's private directory {} (nor one in $TMPDIR, /tmp or the cache directory): {source}", .path.display())]
    RunDirectory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("trace path {}: {reason}", .template.display())]
    TraceTemplate { template: PathBuf, reason: String },
    #[error("cannot read the trace file {}: {source}", .path.display())]
    ReadTrace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the summary {}: {source}", .path.display())]
    SummaryFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot install the audit module in {}: {source}", .path.display())]
    AuditModule {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {}: {source}", .path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for the command: {0}")]
    Wait(#[source] nix::Error),
    #[error("{}: {source}", .path.display())]
    Deps {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the loader cannot use culaunch's audit module {}: {reason}; the command would run untraced", .path.display())]
    ModuleUnusable { path: PathBuf, kind: Unusable, reason: String },
    #[error("strict mode: {}: {problems}", .file.display())]
    Preflight { file: PathBuf, problems: String },
    #[error("cannot write the summary as JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("no summary of the run, so no lock was written")]
    NoSummary,
    #[error("cannot set up signal handling: {0}")]
    Signals(#[source] nix::Error),
    #[error("config file {}: {message}", .path.display())]
    Config { path: PathBuf, message: String },
    #[error("pin {soname}={}: {reason}", .path.display())]
    Pin { soname: String, path: PathBuf, reason: String },
    #[error("two pins for {soname}: {} and {}", .first.display(), .second.display())]
    DuplicatePin { soname: String, first: PathBuf, second: PathBuf },
    #[error("--toolkit {}: {reason}", .dir.display())]
    Toolkit { dir: PathBuf, reason: String },
    #[error("lock file {}: {message}", .path.display())]
    Lock { path: PathBuf, message: String },
    #[error("locked {soname}: cannot read {}: {source}", .path.display())]
    LockedFileMissing {
        soname: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("diff: {}: {message}", .path.display())]
    DiffInput { path: PathBuf, message: String },
    #[error("locked {soname}: {} has changed: sha256 {found}, the lock says {expected}", .path.display())]
    LockMismatch { soname: String, path: PathBuf, expected: String, found: String },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CommandNotFound(_) => EXIT_NOT_FOUND,
            Error::CannotExecute { .. } => EXIT_CANNOT_EXECUTE,
            _ => EXIT_CULAUNCH,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::AuditModule { .. } => Some("set XDG_CACHE_HOME or TMPDIR to a writable directory".to_owned()),
            Error::CommandNotFound(_) => Some("check the command's name and PATH".to_owned()),
            Error::RunDirectory { .. } => {
                Some("set TMPDIR to a writable directory, or name a trace file with -t".to_owned())
            }
            Error::ModuleUnusable { kind, .. } => Some(match kind {
                Unusable::Libraries if std::env::var_os("CULAUNCH_AUDIT_MODULE").is_some() => format!(
                    "CULAUNCH_AUDIT_MODULE names a module built for another system; unset it to use culaunch's own (glibc {} or newer)",
                    match crate::preflight::module_glibc_floor() {
                        "" => "?",
                        v => v,
                    }
                ),
                Unusable::Libraries => format!(
                    "culaunch's manylinux wheel needs glibc 2.17 or newer; this build's own module needs glibc {} or newer",
                    match crate::preflight::module_glibc_floor() {
                        "" => "?",
                        v => v,
                    }
                ),
                Unusable::Unreadable if std::env::var_os("CULAUNCH_AUDIT_MODULE").is_some() => {
                    "CULAUNCH_AUDIT_MODULE names it; unset it to use culaunch's own module".to_owned()
                }
                Unusable::Unreadable => {
                    "set XDG_CACHE_HOME or TMPDIR to a readable directory whose filesystem allows execution".to_owned()
                }
                Unusable::OtherClass => "unset CULAUNCH_AUDIT_MODULE, or point it at a module built with culaunch".to_owned(),
            }),
            Error::LockMismatch { .. } | Error::LockedFileMissing { .. } => {
                Some("restore the file, or write a new lock with `culaunch lock`".to_owned())
            }
            _ => None,
        }
    }
}
