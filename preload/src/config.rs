//! What the launcher asked for, read once when the loader first calls us and
//! immutable afterwards.

use culaunch_protocol::{env, rank};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::global::PROCESS;

pub struct Config {
    pub trace: CString,
    /// The job's tokens (`env::WARN_TOKEN`), when the launcher made them.
    pub tokens: Option<Tokens>,
    pub all_libs: bool,
    pub strict: bool,
    pub pins: Vec<Pin>,
    /// The node name, for the `host` field.
    pub host: Vec<u8>,
    /// Selected environment variables at start-up, for `process_start`.
    pub env: Vec<(&'static str, Vec<u8>)>,
    /// Rank, local rank, world size and node, when a launcher's variables
    /// say so.
    pub identity: rank::Identity,
}

/// The files `env::TOKEN_INTACT` and `env::TOKEN_UNWARNED` of the run.
pub struct Tokens {
    pub intact: CString,
    pub unwarned: CString,
}

fn tokens(dir: OsString) -> Option<Tokens> {
    let file = |name: &str| {
        let mut path = dir.as_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(name.as_bytes());
        CString::new(path).ok()
    };
    Some(Tokens { intact: file(env::TOKEN_INTACT)?, unwarned: file(env::TOKEN_UNWARNED)? })
}

impl Config {
    /// A recorded variable of this process's environment (`RECORDED_ENV`).
    pub fn recorded(&self, key: &str) -> Option<&[u8]> {
        self.env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_slice())
    }
}

/// Every request for `soname` maps `path`.
pub struct Pin {
    pub soname: Vec<u8>,
    /// Canonical, NUL-terminated: handed to the loader as is.
    pub path: CString,
    /// Identity of the pinned file, to recognise it once mapped.
    pub dev: u64,
    pub ino: u64,
    /// A lock file's pin: the file whose sha256 the launcher checked (`dev`
    /// and `ino` are its); a path that then holds another, or a changed
    /// one, is refused.
    pub locked: Option<env::LockedFile>,
}

/// Reads the configuration from the environment; `None` means culaunch did not
/// ask for tracing and the module stays out of the way.
pub fn init() -> Option<&'static Config> {
    PROCESS.config.get_or_init(|| from_env(|k| std::env::var_os(k))).as_ref()
}

pub fn get() -> Option<&'static Config> {
    PROCESS.config.get().and_then(Option::as_ref)
}

fn from_env(var: impl Fn(&str) -> Option<OsString>) -> Option<Config> {
    let trace = var(env::TRACE).filter(|t| !t.is_empty())?;
    let trace = CString::new(trace.into_vec()).ok()?;
    let tokens = var(env::WARN_TOKEN).filter(|t| !t.is_empty()).and_then(tokens);
    let flags = var(env::FLAGS).unwrap_or_default();
    let recorded: Vec<(&'static str, Vec<u8>)> = env::RECORDED_ENV
        .iter()
        .chain(env::RANK_VARIABLES)
        .filter_map(|&k| var(k).map(|v| (k, v.into_vec())))
        .collect();
    let identity = rank::identity(|k| recorded.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_slice()));
    let pins = var(env::PINS).map(|p| parse_pins(p.as_bytes())).unwrap_or_default();
    Some(Config {
        trace,
        tokens,
        all_libs: env::has_flag(flags.as_bytes(), env::FLAG_ALL_LIBS),
        strict: env::has_flag(flags.as_bytes(), env::FLAG_STRICT),
        pins,
        host: hostname(),
        env: recorded,
        identity,
    })
}

/// `SONAME<TAB>PATH[<TAB>DEV:INO]` lines; the launcher validated them, so a
/// malformed line is skipped rather than trusted.
fn parse_pins(text: &[u8]) -> Vec<Pin> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b'\t');
            let (soname, path) = (fields.next()?, fields.next()?);
            let path = CString::new(path).ok()?;
            let locked = match fields.next() {
                Some(text) => Some(env::LockedFile::parse(text)?),
                None => None,
            };
            let (dev, ino) = locked.map(|f| (f.dev, f.ino)).or_else(|| file_id(&path)).unwrap_or((0, 0));
            (!soname.is_empty()).then(|| Pin { soname: soname.to_vec(), path, dev, ino, locked })
        })
        .collect()
}

fn file_id(path: &std::ffi::CStr) -> Option<(u64, u64)> {
    // SAFETY: plain-data out-pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path and a valid out-pointer.
    (unsafe { libc::stat(path.as_ptr(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

fn hostname() -> Vec<u8> {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Vec::new();
    }
    uts.nodename.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn no_trace_means_inert() {
        assert!(from_env(vars(&[])).is_none());
        assert!(from_env(vars(&[(env::TRACE, "")])).is_none());
    }

    #[test]
    fn pins_are_read_and_malformed_lines_skipped() {
        let pins = parse_pins(
            b"libcudart.so.12\t/opt/cu/libcudart.so.12\nno-tab-here\n\t/x\nlibcublas.so.12\t/opt/cu/libcublas.so.12",
        );
        let names: Vec<&[u8]> = pins.iter().map(|p| p.soname.as_slice()).collect();
        assert_eq!(names, [&b"libcudart.so.12"[..], b"libcublas.so.12"]);
        assert_eq!(pins[0].path.as_bytes(), b"/opt/cu/libcudart.so.12");
        assert!(pins[0].locked.is_none());
    }

    #[test]
    fn a_lock_pin_carries_the_checked_files_identity_and_a_bad_one_is_skipped() {
        let pins =
            parse_pins(b"libcudart.so.12\t/nonexistent/libcudart.so.12\t2049:77:5:6:7\nlibcublas.so.12\t/x\t2049\n");
        assert_eq!(pins.len(), 1);
        assert_eq!((pins[0].dev, pins[0].ino, pins[0].locked.map(|f| f.size)), (2049, 77, Some(5)));
    }

    #[test]
    fn reads_trace_flags_and_recorded_env() {
        let c = from_env(vars(&[
            (env::TRACE, "/tmp/t.jsonl"),
            (env::FLAGS, "all-libs,strict"),
            ("RANK", "3"),
            ("HOME", "/root"),
        ]));
        let c = c.as_ref();
        assert_eq!(c.map(|c| c.trace.as_bytes()), Some(&b"/tmp/t.jsonl"[..]));
        assert_eq!(c.map(|c| (c.all_libs, c.strict)), Some((true, true)));
        assert_eq!(c.map(|c| c.env.clone()), Some(vec![("RANK", b"3".to_vec())]));
        assert_eq!(c.and_then(|c| c.identity.rank), Some(3));
        assert!(c.is_some_and(|c| c.tokens.is_none()));
        let c = from_env(vars(&[(env::TRACE, "/t"), (env::WARN_TOKEN, "/tmp/culaunch-run-1")])).and_then(|c| c.tokens);
        assert_eq!(c.as_ref().map(|t| t.intact.as_c_str()), Some(c"/tmp/culaunch-run-1/intact"));
        assert_eq!(c.as_ref().map(|t| t.unwarned.as_c_str()), Some(c"/tmp/culaunch-run-1/unwarned"));
    }
}
