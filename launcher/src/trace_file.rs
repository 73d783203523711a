//! The trace file of one run: the user's (`-t`, a path template), appended
//! to, or a private temporary one that only feeds the summary.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::input;

pub struct TraceFile {
    /// Absolute, so that processes that change directory append to the same file.
    pub path: PathBuf,
    /// Where this run's events start (the file may hold earlier runs).
    pub start: u64,
    /// Held for the whole run (close-on-exec: the job never sees it), so the
    /// summary reads the file this run started with even if the name is
    /// deleted or replaced meanwhile.
    file: File,
    temporary: bool,
}

/// The name of the temporary trace in the run's directory.
const TEMPORARY_TRACE: &str = "trace.jsonl";

impl TraceFile {
    /// Opens (creating) the user's trace file, or makes a temporary one in
    /// the run's directory. Failing here is culaunch's failure: nothing has
    /// started yet.
    pub fn prepare(user: Option<&Path>, run_dir: Option<&RunDir>) -> Result<TraceFile, Error> {
        match user {
            Some(p) => {
                let path = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
                let err = |source| Error::TraceFile { path: path.clone(), source };
                let file = open_append(&path, false).map_err(err)?;
                let start = file.metadata().map(|m| m.len()).map_err(err)?;
                Ok(TraceFile { path, start, file, temporary: false })
            }
            None => {
                // The caller makes a run directory or fails when there is no
                // trace of the user's.
                let Some(dir) = run_dir else {
                    return Err(Error::TraceFile {
                        path: TEMPORARY_TRACE.into(),
                        source: io::ErrorKind::NotFound.into(),
                    });
                };
                let path = dir.path.join(TEMPORARY_TRACE);
                let file =
                    open_append(&path, true).map_err(|source| Error::TraceFile { path: path.clone(), source })?;
                Ok(TraceFile { path, start: 0, file, temporary: true })
            }
        }
    }

    /// The name to read this run's events through: the trace's own path while
    /// it still names the file opened at the start, else culaunch's
    /// descriptor of that file (said once on stderr).
    pub fn read_path(&self) -> PathBuf {
        let same = match (fs::metadata(&self.path), self.file.metadata()) {
            (Ok(now), Ok(ours)) => now.dev() == ours.dev() && now.ino() == ours.ino(),
            _ => false,
        };
        if same {
            return self.path.clone();
        }
        if !self.temporary {
            eprintln!(
                "culaunch: warning: the trace file {} was deleted or replaced during the run; the summary covers the file the run started with",
                self.path.display()
            );
        }
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The files a run may put in its directory: the only ones a removal of
/// the directory (here or by a later run's sweep) takes, so that it is
/// never a recursive removal.
const RUN_FILES: [&str; 3] =
    [TEMPORARY_TRACE, culaunch_protocol::env::TOKEN_INTACT, culaunch_protocol::env::TOKEN_UNWARNED];

/// A private directory made for one run (`culaunch-run-PID-STAMP`, 0700, in
/// `$TMPDIR` or `/tmp`), holding the temporary trace when the user asked for
/// none and the job's loss tokens. Everything a run leaves behind is in it,
/// so the sweep of a killed run's leftovers never touches a file of the
/// user's, whatever its name.
pub struct RunDir {
    path: PathBuf,
    /// The directory, locked while the run lives (`sweep`).
    _lock: Option<File>,
}

impl RunDir {
    pub fn create() -> Result<RunDir, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!("culaunch-run-{}-{stamp}", std::process::id());
        let mut first = None;
        for (dir, ours) in temporary_dirs() {
            let path = dir.join(&name);
            // Only culaunch's own cache directory is created: a missing
            // TMPDIR is the user's to make, not root's. 0700, and new:
            // nobody else can read the trace, remove a token or plant one.
            let made = if ours { fs::create_dir_all(&dir) } else { Ok(()) }
                .and_then(|()| fs::DirBuilder::new().mode(0o700).create(&path));
            match made {
                Ok(()) => {
                    // Held while the run lives: a later run sweeping
                    // leftovers knows this one is not.
                    let held = File::open(&path).ok();
                    held.iter().for_each(lock);
                    sweep(&dir);
                    return Ok(RunDir { path, _lock: held });
                }
                // The first place's reason: $TMPDIR's, or /tmp's.
                Err(source) => _ = first.get_or_insert(Error::RunDirectory { path, source }),
            }
        }
        Err(first.unwrap_or_else(|| Error::RunDirectory { path: name.into(), source: io::ErrorKind::NotFound.into() }))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        remove_run_dir(&self.path);
    }
}

fn remove_run_dir(path: &Path) {
    for f in RUN_FILES {
        let _ = fs::remove_file(path.join(f));
    }
    let _ = fs::remove_dir(path);
}

/// The job's two tokens (`CULAUNCH_AUDIT_WARN_TOKEN`), in the run's
/// directory: every process of the job that loses an event removes
/// `intact`, so the run can say the trace is incomplete; the first one that
/// can speak removes `unwarned` (an unlink succeeds once) and is the only
/// one to warn. The run's directory removes them.
pub struct LossToken {
    dir: PathBuf,
}

impl LossToken {
    /// `None` when the tokens cannot be made: every process then warns for
    /// itself, as before tokens.
    pub fn create(run_dir: &RunDir) -> Option<LossToken> {
        use culaunch_protocol::env::{TOKEN_INTACT, TOKEN_UNWARNED};
        let dir = run_dir.path.clone();
        let made = [TOKEN_INTACT, TOKEN_UNWARNED]
            .iter()
            .all(|t| OpenOptions::new().write(true).create_new(true).mode(0o600).open(dir.join(t)).is_ok());
        made.then_some(LossToken { dir })
    }

    /// The directory the job is told of.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A process of the job lost an event.
    pub fn taken(&self) -> bool {
        fs::symlink_metadata(self.dir.join(culaunch_protocol::env::TOKEN_INTACT))
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
    }
}

/// A run's directory outlives it when the run is killed before it can
/// remove it: mpirun sends SIGTERM and, moments later, SIGKILL to every
/// rank when one fails; the OOM killer sends SIGKILL. Each run locks its own
/// (`flock`: the kernel drops the lock with the last descriptor, whatever
/// killed the process, and it holds across pid namespaces sharing the
/// directory) and removes those of this uid in `dir` that no live run
/// holds. One younger than a minute is left alone: its run may not have
/// locked it yet.
const SWEEP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

fn lock(file: &File) {
    // SAFETY: flock on an open descriptor; failure leaves it unlocked, and
    // the sweep then spares it only for its first minute.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
}

/// Removes the run directories in `dir` that runs of this uid killed before
/// their end left behind (`SWEEP_AGE`). Only `culaunch-run-*` directories:
/// a file of any other name, even one like culaunch's temporary traces of
/// old, may be the user's. Best effort.
fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().starts_with(b"culaunch-run-") {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let old = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age > SWEEP_AGE);
        if meta.uid() != uid || !old || !meta.file_type().is_dir() {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY).open(&path)
        else {
            continue;
        };
        // SAFETY: flock on the descriptor just opened.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // a live run holds it
        }
        remove_run_dir(&path);
    }
}

/// Where a temporary trace may go, best first: `$TMPDIR` when it is set to
/// an absolute path, `/tmp`, then culaunch's cache directories (true: may
/// be created).
fn temporary_dirs() -> Vec<(PathBuf, bool)> {
    let tmpdir = std::env::var_os("TMPDIR").map(PathBuf::from).filter(|d| d.is_absolute());
    let mut dirs: Vec<(PathBuf, bool)> =
        tmpdir.into_iter().chain([PathBuf::from("/tmp")]).map(|d| (d, false)).collect();
    dirs.extend(crate::dirs::cache_dirs().into_iter().filter(|d| d.is_absolute()).map(|d| (d, true)));
    dirs
}

/// Read and append, never blocking (a FIFO without a reader would block the
/// open), and only a regular file: a FIFO or a device is no trace to read
/// back (`/dev/zero` reads forever).
fn open_append(path: &Path, exclusive: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).append(true).mode(0o644).custom_flags(libc::O_NONBLOCK);
    if exclusive {
        o.create_new(true);
    } else {
        o.create(true);
    }
    let file = o.open(path)?;
    input::check_regular(&file)?;
    input::clear_nonblock(&file)?;
    Ok(file)
}

/// Why a trace path template cannot be expanded.
#[derive(Debug, PartialEq, Eq)]
pub enum TemplateError {
    Unknown(String),
    Unterminated,
    Unset(String),
    Empty(String),
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Unknown(s) => {
                write!(f, "unknown `{s}` (known: %h host, %p culaunch's pid, %q{{VAR}} a variable, %% a %)")
            }
            TemplateError::Unterminated => write!(f, "`%q{{` without its closing `}}`"),
            TemplateError::Unset(v) => write!(f, "%q{{{v}}}: {v} is not set"),
            TemplateError::Empty(v) => write!(f, "%q{{{v}}}: {v} is empty"),
        }
    }
}

/// Expands a trace path template, as Nsight Systems' `-o`: `%h` the host
/// name, `%p` culaunch's pid, `%q{VAR}` the variable VAR, `%%` a `%`. Works
/// on bytes, so a path that is not UTF-8 survives. An empty or unset
/// variable is an error: ranks would silently share one file.
pub fn expand(
    template: &OsStr,
    host: &OsStr,
    pid: u32,
    var: impl Fn(&OsStr) -> Option<OsString>,
) -> Result<OsString, TemplateError> {
    let t = template.as_bytes();
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if t[i] != b'%' {
            out.push(t[i]);
            i += 1;
            continue;
        }
        match t.get(i + 1) {
            Some(b'%') => out.push(b'%'),
            Some(b'h') => out.extend_from_slice(host.as_bytes()),
            Some(b'p') => out.extend_from_slice(pid.to_string().as_bytes()),
            Some(b'q') => {
                let rest = &t[i + 2..];
                let body = rest.strip_prefix(b"{").ok_or_else(|| TemplateError::Unknown("%q".into()))?;
                let close = body.iter().position(|&b| b == b'}').ok_or(TemplateError::Unterminated)?;
                let name = OsStr::from_bytes(&body[..close]);
                let shown = name.to_string_lossy().into_owned();
                let value = var(name).ok_or_else(|| TemplateError::Unset(shown.clone()))?;
                if value.is_empty() {
                    return Err(TemplateError::Empty(shown));
                }
                out.extend_from_slice(value.as_bytes());
                i += 2 + 1 + close + 1;
                continue;
            }
            Some(&c) => return Err(TemplateError::Unknown(format!("%{}", String::from_utf8_lossy(&[c])))),
            None => return Err(TemplateError::Unknown("%".into())),
        }
        i += 2;
    }
    Ok(OsString::from_vec(out))
}

/// [`expand`] with this machine's host name, culaunch's pid and environment.
pub fn expand_here(template: &Path) -> Result<PathBuf, Error> {
    if !template.as_os_str().as_bytes().contains(&b'%') {
        return Ok(template.to_path_buf());
    }
    expand(template.as_os_str(), &host_name(), std::process::id(), |v| std::env::var_os(v))
        .map(PathBuf::from)
        .map_err(|e| Error::TraceTemplate { template: template.to_path_buf(), reason: e.to_string() })
}

fn host_name() -> OsString {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length are valid; gethostname NUL-terminates
    // when the name fits, and the last byte stays 0.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let len = if rc == 0 { buf.iter().position(|&b| b == 0).unwrap_or(0) } else { 0 };
    OsStr::from_bytes(&buf[..len]).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_token_is_private_taken_once_and_leaves_nothing_behind() {
        use std::os::unix::fs::PermissionsExt;
        let run_dir = RunDir::create().expect("a temporary directory");
        let token = LossToken::create(&run_dir).expect("tokens");
        let dir = token.path().to_path_buf();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!token.taken());
        let unwarned = dir.join(culaunch_protocol::env::TOKEN_UNWARNED);
        assert!(fs::remove_file(&unwarned).is_ok());
        assert!(fs::remove_file(&unwarned).is_err(), "a second taker must fail");
        assert!(!token.taken(), "warning is not losing");
        assert!(fs::remove_file(dir.join(culaunch_protocol::env::TOKEN_INTACT)).is_ok());
        assert!(token.taken());
        drop(run_dir);
        assert!(!dir.exists());
    }

    fn ex(t: &[u8], vars: &[(&str, &[u8])]) -> Result<Vec<u8>, TemplateError> {
        let var =
            |n: &OsStr| vars.iter().find(|(k, _)| OsStr::new(k) == n).map(|(_, v)| OsStr::from_bytes(v).to_owned());
        expand(OsStr::from_bytes(t), OsStr::new("node07"), 4242, var).map(OsString::into_vec)
    }

    #[test]
    fn templates_expand_host_pid_variables_and_percent() {
        assert_eq!(ex(b"trace.jsonl", &[]).unwrap(), b"trace.jsonl");
        assert_eq!(ex(b"t.%h.%p.jsonl", &[]).unwrap(), b"t.node07.4242.jsonl");
        assert_eq!(ex(b"t.%q{OMPI_COMM_WORLD_RANK}.jsonl", &[("OMPI_COMM_WORLD_RANK", b"3")]).unwrap(), b"t.3.jsonl");
        assert_eq!(ex(b"100%%-%q{A}%q{B}", &[("A", b"x"), ("B", b"y")]).unwrap(), b"100%-xy");
        assert_eq!(ex(b"%%q{A}", &[]).unwrap(), b"%q{A}");
    }

    #[test]
    fn templates_keep_bytes_that_are_not_utf8() {
        assert_eq!(ex(b"/d\xff/t.%q{R}.\xfe", &[("R", b"\xfd1")]).unwrap(), b"/d\xff/t.\xfd1.\xfe");
    }

    #[test]
    fn an_unset_or_empty_variable_or_an_unknown_escape_is_an_error_naming_it() {
        assert_eq!(ex(b"t.%q{RANK}", &[]), Err(TemplateError::Unset("RANK".into())));
        assert_eq!(ex(b"t.%q{RANK}", &[("RANK", b"")]), Err(TemplateError::Empty("RANK".into())));
        assert_eq!(ex(b"t.%x", &[]), Err(TemplateError::Unknown("%x".into())));
        assert_eq!(ex(b"t.%", &[]), Err(TemplateError::Unknown("%".into())));
        assert_eq!(ex(b"t.%q", &[]), Err(TemplateError::Unknown("%q".into())));
        assert_eq!(ex(b"t.%q{RANK", &[("RANK", b"1")]), Err(TemplateError::Unterminated));
        assert!(TemplateError::Unset("RANK".into()).to_string().contains("RANK is not set"));
    }
}
