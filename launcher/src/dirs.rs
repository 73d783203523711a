//! Where culaunch keeps its per-user files: the audit module it writes out,
//! and the loader's answers it caches.

use std::path::{Path, PathBuf};

/// Best first: `$XDG_CACHE_HOME/culaunch` (else `~/.cache/culaunch`), then
/// `$TMPDIR/culaunch-$UID` for a home that cannot be written.
pub fn cache_dirs() -> Vec<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let tmp = std::env::temp_dir().join(format!("culaunch-{uid}"));
    cache.map(|c| c.join("culaunch")).into_iter().chain([tmp]).collect()
}

/// Where the audit module goes so that every uid the job may switch to can
/// read it: `/tmp/culaunch-modules-$UID` (not `$TMPDIR`, which may be
/// private to this user). `None` when /tmp is not a searchable directory.
pub fn shared_module_dir() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = Path::new("/tmp");
    let searchable = std::fs::metadata(tmp).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0);
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    searchable.then(|| tmp.join(format!("culaunch-modules-{uid}")))
}
