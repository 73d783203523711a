//! Puts the audit module where the loader can open it, and builds the
//! environment that injects it into the command and all its descendants.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use culaunch_protocol::env as proto;

use crate::error::Error;

/// The audit module, built from `preload/` by build.rs.
static MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libculaunch_preload.so"));

/// Overrides the embedded module (for developing the module itself).
const MODULE_OVERRIDE: &str = "CULAUNCH_AUDIT_MODULE";

/// The path of the audit module on disk, writing it out the first time.
///
/// The file name carries a hash of its bytes, so versions never overwrite each
/// other and a file found there is already the right one.
pub fn module_path() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(MODULE_OVERRIDE) {
        return Ok(PathBuf::from(p));
    }
    // build.rs hashed the module once; hashing 1 MB here would cost every run.
    let name = format!("libculaunch_audit-{}-{}.so", env!("CARGO_PKG_VERSION"), env!("CULAUNCH_MODULE_HASH"));
    let mut last_error = None;
    // A directory every uid can read comes first: a job that switches to
    // another uid (`subprocess.run(..., user=…)` as root) must still be
    // able to open the module, or the loader prints an error in its stderr.
    if let Some(dir) = crate::dirs::shared_module_dir() {
        let path = dir.join(&name);
        match install_shared(&dir, &path).and_then(|()| crate::preflight::mappable(&path)) {
            Ok(()) => return Ok(path),
            Err(e) => last_error = Some((path, e)),
        }
    }
    for dir in crate::dirs::cache_dirs() {
        let path = dir.join(&name);
        if path.as_os_str().as_bytes().contains(&b':') {
            // LD_AUDIT is a colon-separated list.
            continue;
        }
        // A directory whose filesystem is mounted noexec takes the file but
        // not the loader's mapping of it: try the next one.
        match install(&dir, &path).and_then(|()| crate::preflight::mappable(&path)) {
            Ok(()) => return Ok(path),
            Err(e) => last_error = Some((path, e)),
        }
    }
    let (path, source) = last_error.unwrap_or_else(|| (PathBuf::from(name), io::ErrorKind::NotFound.into()));
    Err(Error::AuditModule { path, source })
}

fn install(dir: &Path, path: &Path) -> io::Result<()> {
    // Compared whole: a truncated or altered file must not be injected.
    if fs::read(path).is_ok_and(|existing| existing == MODULE) {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    write_beside(dir, path, 0o755)
}

/// Writes the module beside `path`, then renames it there: concurrent
/// culaunch runs never see half a file.
fn write_beside(dir: &Path, path: &Path, mode: u32) -> io::Result<()> {
    let tmp = dir.join(format!(
        ".{}.{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    f.write_all(MODULE)?;
    f.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)
}

/// Installs into `dir`, readable by all and writable by us alone: the
/// directory is created 0755 or, if it exists, must be a real directory
/// (not a link) owned by us that nobody else can write; the module is 0444.
fn install_shared(dir: &Path, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let refused = |why: &str| io::Error::new(io::ErrorKind::PermissionDenied, format!("{}: {why}", dir.display()));
    if !meta.file_type().is_dir() {
        return Err(refused("not a directory"));
    }
    if meta.uid() != uid {
        return Err(refused("owned by another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refused("writable by group or others"));
    }
    if meta.mode() & 0o555 != 0o555 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    // The directory is ours and nobody else's to write: what is in it is
    // what we put there.
    if fs::read(path).is_ok_and(|existing| existing == MODULE) {
        let mode = fs::symlink_metadata(path)?.mode();
        if mode & 0o444 != 0o444 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o444))?;
        }
        return Ok(());
    }
    write_beside(dir, path, 0o444)
}

/// What the command's environment gains.
pub struct Injection {
    pub module: PathBuf,
    pub trace: PathBuf,
    pub all_libs: bool,
    pub strict: bool,
    /// Validated: no tabs or newlines.
    pub pins: Vec<crate::plan::pins::Pin>,
    /// The run's token directory (`trace_file::LossToken`), if made.
    pub warn_token: Option<PathBuf>,
}

/// The variables to set in the command's environment, given the current
/// values of those it extends.
pub fn environment(inj: &Injection, current_ld_audit: Option<&OsStr>) -> Vec<(&'static str, OsString)> {
    let mut flags = Vec::new();
    if inj.all_libs {
        flags.push(proto::FLAG_ALL_LIBS);
    }
    if inj.strict {
        flags.push(proto::FLAG_STRICT);
    }
    let mut pins = Vec::new();
    for pin in &inj.pins {
        if !pins.is_empty() {
            pins.push(b'\n');
        }
        pins.extend_from_slice(pin.soname.as_bytes());
        pins.push(b'\t');
        pins.extend_from_slice(pin.path.as_os_str().as_bytes());
        if let Some(file) = pin.locked_file {
            pins.extend_from_slice(format!("\t{file}").as_bytes());
        }
    }
    vec![
        (proto::LD_AUDIT, prepend_to_list(inj.module.as_os_str(), current_ld_audit)),
        (proto::TRACE, inj.trace.clone().into_os_string()),
        (proto::FLAGS, flags.join(",").into()),
        (proto::PINS, OsString::from_vec(pins)),
        // Set even when empty: an outer culaunch's token is not this run's.
        (proto::WARN_TOKEN, inj.warn_token.clone().map(PathBuf::into_os_string).unwrap_or_default()),
    ]
}

/// `ours` first, then the user's own entries, without a duplicate of ours
/// (culaunch inside culaunch).
fn prepend_to_list(ours: &OsStr, current: Option<&OsStr>) -> OsString {
    let mut out = ours.as_bytes().to_vec();
    for entry in current.map(OsStr::as_bytes).unwrap_or_default().split(|&b| b == b':') {
        if !entry.is_empty() && entry != ours.as_bytes() {
            out.push(b':');
            out.extend_from_slice(entry);
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_module_goes_first_and_the_users_stay() {
        let ours = OsStr::new("/c/m.so");
        assert_eq!(prepend_to_list(ours, None), "/c/m.so");
        assert_eq!(prepend_to_list(ours, Some(OsStr::new("/u/a.so"))), "/c/m.so:/u/a.so");
        assert_eq!(prepend_to_list(ours, Some(OsStr::new("/c/m.so::/u/a.so"))), "/c/m.so:/u/a.so");
    }

    #[test]
    fn the_embedded_module_is_an_elf_shared_object() {
        assert_eq!(&MODULE[..4], b"\x7fELF");
    }
}
