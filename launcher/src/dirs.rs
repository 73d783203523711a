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
