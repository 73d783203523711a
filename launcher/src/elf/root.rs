//! Paths inside an image or sysroot (`deps --root DIR`): every lookup is
//! re-rooted at DIR, symbolic links are followed inside it, and an absolute
//! link target means DIR's own `/` — what `chroot DIR` would see.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Links followed before giving up, as the kernel does (ELOOP).
const MAX_LINKS: usize = 40;

/// The host path of `path` as seen inside `root`. A path that cannot be
/// resolved (a loop, a missing component) still comes back re-rooted, so
/// that opening it fails as it would inside.
pub fn resolve(root: &[u8], path: &[u8]) -> Vec<u8> {
    let root = root.strip_suffix(b"/").unwrap_or(root);
    let mut pending: Vec<Vec<u8>> = components(path).rev().map(<[u8]>::to_vec).collect();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_slice() {
            b"." => continue,
            // `..` never climbs above the root.
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut at = join(root, &done);
        at.push(b'/');
        at.extend_from_slice(&c);
        let link = match std::fs::symlink_metadata(Path::new(OsStr::from_bytes(&at))) {
            Ok(m) if m.file_type().is_symlink() => std::fs::read_link(Path::new(OsStr::from_bytes(&at))).ok(),
            _ => None,
        };
        match link {
            Some(target) if links < MAX_LINKS => {
                links += 1;
                let target = target.as_os_str().as_bytes();
                if target.starts_with(b"/") {
                    done.clear();
                }
                pending.extend(components(target).rev().map(<[u8]>::to_vec));
            }
            _ => done.push(c),
        }
    }
    let mut out = join(root, &done);
    if out.is_empty() {
        out.push(b'/');
    }
    // Keep a trailing slash: callers append names to directories.
    if path.ends_with(b"/") && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out
}

fn components(p: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

fn join(root: &[u8], parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = root.to_vec();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_root_and_never_above_it() {
        let d = std::env::temp_dir().join(format!("culaunch-root-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("usr/lib/x")).unwrap();
        std::os::unix::fs::symlink("usr/lib", d.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/x", d.join("usr/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", d.join("usr/lib/up")).unwrap();
        let r = d.as_os_str().as_bytes();
        let under = |s: &str| [r, s.as_bytes()].concat();
        assert_eq!(resolve(r, b"/lib/x/libc.so.6"), under("/usr/lib/x/libc.so.6"));
        assert_eq!(resolve(r, b"/usr/abs/f"), under("/usr/lib/x/f"));
        assert_eq!(resolve(r, b"/usr/lib/up/passwd"), under("/etc/passwd"));
        assert_eq!(resolve(r, b"/lib/"), under("/usr/lib/"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
