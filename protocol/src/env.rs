//! Environment variables through which the launcher configures the audit module.
//!
//! They travel in the environment so that every descendant process — fork,
//! exec, posix_spawn, Python's `subprocess` and `multiprocessing` — inherits
//! them without help.

/// Absolute path of the JSON Lines trace file; every process appends to it.
pub const TRACE: &str = "CULAUNCH_AUDIT_TRACE";

/// Comma-separated flags; see [`FLAG_ALL_LIBS`].
pub const FLAGS: &str = "CULAUNCH_AUDIT_FLAGS";

/// Record every shared object, not only the CUDA family.
pub const FLAG_ALL_LIBS: &str = "all-libs";

/// Refuse CUDA-family objects that no pin allows.
pub const FLAG_STRICT: &str = "strict";

/// The pins: one `SONAME<TAB>PATH` per line, PATH canonical, and for a lock
/// file's pin `<TAB>` and the [`LockedFile`] whose sha256 the launcher
/// checked. The launcher refuses pins whose SONAME or PATH contains a tab
/// or a newline.
pub const PINS: &str = "CULAUNCH_AUDIT_PINS";

/// The file a lock's sha256 check read, as `DEV:INO:SIZE:SEC:NSEC` (stat's
/// st_dev, st_ino, st_size and st_mtime): a file renamed over the path has
/// another inode, one written over in place another size or mtime. Not the
/// ctime: a hard link made or removed elsewhere (uv and conda install from
/// their caches so) changes it and not the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockedFile {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

impl LockedFile {
    pub fn parse(text: &[u8]) -> Option<LockedFile> {
        let mut f = text.split(|&b| b == b':');
        let mut next = || core::str::from_utf8(f.next()?).ok();
        let file = LockedFile {
            dev: next()?.parse().ok()?,
            ino: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            mtime_sec: next()?.parse().ok()?,
            mtime_nsec: next()?.parse().ok()?,
        };
        next().is_none().then_some(file)
    }
}

impl core::fmt::Display for LockedFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let LockedFile { dev, ino, size, mtime_sec, mtime_nsec } = self;
        write!(f, "{dev}:{ino}:{size}:{mtime_sec}:{mtime_nsec}")
    }
}

/// A private directory the launcher made for this run, holding two token
/// files: a process of the job that loses an event removes
/// [`TOKEN_INTACT`] (the launcher, finding it gone, says the trace is
/// incomplete), and the first one able to speak removes [`TOKEN_UNWARNED`]
/// and is the only one to warn (an unlink succeeds once). Empty or unset:
/// every process warns for itself.
pub const WARN_TOKEN: &str = "CULAUNCH_AUDIT_WARN_TOKEN";

/// In the [`WARN_TOKEN`] directory: present while no event was lost.
pub const TOKEN_INTACT: &str = "intact";

/// In the [`WARN_TOKEN`] directory: present while no process has warned.
pub const TOKEN_UNWARNED: &str = "unwarned";

/// The loader variable culaunch injects its module through.
pub const LD_AUDIT: &str = "LD_AUDIT";

/// Environment variables copied into `process_start` when set: these, and
/// every rank variable ([`RANK_VARIABLES`]).
pub const RECORDED_ENV: &[&str] =
    &["CUDA_HOME", "CUDA_PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "CUDA_VISIBLE_DEVICES", LD_TRACE_LOADED_OBJECTS];

/// Set, the loader only lists the program's libraries (what `ldd` does)
/// and ends without running it: a process that never reaches `main` and
/// did not fail.
pub const LD_TRACE_LOADED_OBJECTS: &str = "LD_TRACE_LOADED_OBJECTS";

/// The launchers' rank variables (`rank.rs`), recorded as well.
pub use crate::rank::VARIABLES as RANK_VARIABLES;

/// True when the comma-separated `flags` contain `flag`.
pub fn has_flag(flags: &[u8], flag: &str) -> bool {
    flags.split(|&b| b == b',').any(|f| f == flag.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_file_reads_back_what_was_written_and_nothing_else() {
        extern crate std;
        use std::string::ToString;
        let f = LockedFile { dev: 2049, ino: 77, size: 123, mtime_sec: 1_700_000_000, mtime_nsec: 5 };
        assert_eq!(LockedFile::parse(f.to_string().as_bytes()), Some(f));
        for bad in [&b"2049:77"[..], b"2049:77:1:2:3:4", b"a:77:1:2:3", b""] {
            assert_eq!(LockedFile::parse(bad), None);
        }
    }

    #[test]
    fn flags_match_whole_words_only() {
        assert!(has_flag(b"all-libs", FLAG_ALL_LIBS));
        assert!(has_flag(b"x,all-libs,y", FLAG_ALL_LIBS));
        assert!(!has_flag(b"all-libsx", FLAG_ALL_LIBS));
        assert!(!has_flag(b"", FLAG_ALL_LIBS));
    }
}
