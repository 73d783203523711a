//! Finds the program a command line will execute: PATH lookup as `execvp`
//! does it, then `#!` lines down to the ELF file the kernel will load.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// `execvp`'s search path when PATH is unset (glibc's confstr(_CS_PATH)).
const DEFAULT_PATH: &str = "/bin:/usr/bin";
/// The kernel follows at most this many interpreters (BINPRM_MAX_RECURSION).
const MAX_INTERPRETERS: usize = 4;

/// The file to execute for `argv0`, searched on `path` when it has no slash,
/// with glibc's `execvp` rules (posix/execvpe.c), so that culaunch runs the
/// same file `env` would: a candidate the caller may not execute (EACCES:
/// no execute permission for this user, a directory, a FIFO, a `noexec`
/// mount) is remembered and the search goes on; a missing one (ENOENT,
/// ENOTDIR, ESTALE, ENODEV, ETIMEDOUT) is skipped; any other error ends the
/// search with that error. Only EACCES seen and nothing found: 126.
pub fn resolve(argv0: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    if argv0.as_bytes().contains(&b'/') {
        let program = PathBuf::from(argv0);
        // execve refuses what is not a regular file with EACCES; say so now
        // rather than open a FIFO to look for `#!` and block there.
        return match std::fs::metadata(&program) {
            Ok(m) if !m.is_file() => Err(cannot_execute(program, libc::EACCES)),
            _ => Ok(program),
        };
    }
    if argv0.is_empty() {
        return Err(Error::CommandNotFound(argv0.to_owned()));
    }
    let search = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = None;
    for dir in search.as_bytes().split(|&b| b == b':') {
        // An empty entry means the current directory, as for execvp.
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = dir.join(argv0);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(libc::EACCES) => denied = denied.or(Some(candidate)),
            Err(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT) => {}
            Err(errno) => return Err(cannot_execute(candidate, errno)),
        }
    }
    match denied {
        Some(path) => Err(cannot_execute(path, libc::EACCES)),
        None => Err(Error::CommandNotFound(argv0.to_owned())),
    }
}

fn cannot_execute(path: PathBuf, errno: i32) -> Error {
    Error::CannotExecute { path, source: io::Error::from_raw_os_error(errno) }
}

/// What `execve` would say about the file's execute permission, as an errno:
/// a regular file the effective user may execute (root too needs one `x`
/// bit, which `faccessat` knows), on a mount that allows it.
fn executable(file: &Path) -> Result<(), i32> {
    let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let meta = std::fs::metadata(file).map_err(errno)?;
    if !meta.is_file() {
        return Err(libc::EACCES);
    }
    let c_path = std::ffi::CString::new(file.as_os_str().as_bytes()).map_err(|_| libc::ENOENT)?;
    // SAFETY: a NUL-terminated path; faccessat only reads it.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c_path.as_ptr(), libc::X_OK, libc::AT_EACCESS) };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno(io::Error::last_os_error()))
    }
}

/// The chain of files the kernel will load for `program`: the program, then
/// each `#!` interpreter in turn; the last one is the ELF file that runs.
pub fn interpreter_chain(program: &Path, path: Option<&OsStr>) -> Vec<PathBuf> {
    let mut chain = vec![program.to_path_buf()];
    while chain.len() <= MAX_INTERPRETERS {
        let Some(current) = chain.last() else { break };
        let Some((interp, arg)) = read_shebang(current) else {
            break;
        };
        // `#!/usr/bin/env python3`: the program that runs is python3 on PATH.
        let next = if interp.file_name() == Some(OsStr::new("env")) {
            match arg.as_deref().and_then(env_program) {
                Some(prog) => resolve(&prog, path).ok(),
                None => Some(interp),
            }
        } else {
            Some(interp)
        };
        match next {
            Some(n) => chain.push(n),
            None => break,
        }
    }
    chain
}

/// The program `env` will run given its argument: the first word that is not
/// an option or an assignment (`env -S python3 -u` → `python3`).
fn env_program(arg: &OsStr) -> Option<OsString> {
    arg.as_bytes()
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty() && !w.starts_with(b"-") && !w.contains(&b'='))
        .map(|w| OsStr::from_bytes(w).to_owned())
}

/// The interpreter and its optional argument from a `#!` line.
fn read_shebang(file: &Path) -> Option<(PathBuf, Option<OsString>)> {
    let mut head = [0u8; 256];
    // Only a regular file can be executed; never block opening a FIFO.
    let mut f = crate::input::open_regular(file).ok()?;
    let n = f.read(&mut head).ok()?;
    parse_shebang(&head[..n])
}

fn parse_shebang(head: &[u8]) -> Option<(PathBuf, Option<OsString>)> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.trim_ascii();
    // Like Linux: the interpreter ends at the first blank; the rest, trimmed,
    // is one argument.
    let split = line.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(line.len());
    let (interp, rest) = line.split_at(split);
    if interp.is_empty() {
        return None;
    }
    let rest = rest.trim_ascii();
    let arg = (!rest.is_empty()).then(|| OsStr::from_bytes(rest).to_owned());
    Some((PathBuf::from(OsStr::from_bytes(interp)), arg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines_split_like_the_kernel() {
        let (i, a) = parse_shebang(b"#!/usr/bin/env python3 -u\nprint()").unwrap();
        assert_eq!(i, Path::new("/usr/bin/env"));
        assert_eq!(a, Some(OsString::from("python3 -u")));
        let (i, a) = parse_shebang(b"#! /bin/sh\n").unwrap();
        assert_eq!((i.as_path(), a), (Path::new("/bin/sh"), None));
        assert!(parse_shebang(b"\x7fELF").is_none());
        assert!(parse_shebang(b"#!\n").is_none());
    }

    #[test]
    fn env_runs_the_first_word_that_is_a_program() {
        assert_eq!(env_program(OsStr::new("-S python3 -u")), Some("python3".into()));
        assert_eq!(env_program(OsStr::new("A=1 python3")), Some("python3".into()));
        assert_eq!(env_program(OsStr::new("-i")), None);
    }

    #[test]
    fn path_lookup_finds_executables_and_reports_the_rest() {
        let found = resolve(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin")));
        assert_eq!(found.ok(), Some(PathBuf::from("/bin/sh")));
        let missing = resolve(OsStr::new("no-such-command-x"), Some(OsStr::new("/bin")));
        assert!(matches!(missing, Err(Error::CommandNotFound(_))));
        // /etc/passwd exists but is not executable.
        let denied = resolve(OsStr::new("passwd"), Some(OsStr::new("/etc")));
        assert!(matches!(denied, Err(Error::CannotExecute { .. })));
    }
}
