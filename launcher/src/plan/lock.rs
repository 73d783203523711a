//! Lock files (docs/trace-schema.md, "Lock file"): what a run loaded, to be
//! enforced later.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::sha256_and_identity;
use crate::error::Error;

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, rename = "lib")]
    pub libs: Vec<LockEntry>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    pub soname: String,
    pub path: PathBuf,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

pub fn read(path: &Path) -> Result<LockFile, Error> {
    let err = |message: String| Error::Lock { path: path.to_path_buf(), message };
    let text = crate::input::read_to_string(path, crate::input::SMALL_FILE_LIMIT).map_err(|e| err(e.to_string()))?;
    parse(&text).map_err(err)
}

pub(crate) fn parse(text: &str) -> Result<LockFile, String> {
    let lock: LockFile = toml::from_str(text).map_err(|e| super::config::toml_message(&e))?;
    if lock.version != LOCK_VERSION {
        return Err(format!("version {} is not supported (this culaunch writes {LOCK_VERSION})", lock.version));
    }
    Ok(lock)
}

/// The lock file can be created or replaced (its directory is writable).
pub fn check_writable(path: &Path) -> Result<(), Error> {
    crate::input::check_output(path).map_err(|e| Error::Lock { path: path.to_path_buf(), message: e.to_string() })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".culaunch-lock-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| Error::Lock { path: path.to_path_buf(), message: format!("cannot write there: {e}") })
}

pub fn write(path: &Path, lock: &LockFile) -> Result<(), Error> {
    let err = |message: String| Error::Lock { path: path.to_path_buf(), message };
    let text = toml::to_string(lock).map_err(|e| err(e.to_string()))?;
    crate::input::write_output(path, text.as_bytes()).map_err(|e| err(e.to_string()))
}

/// Checks every locked file before anything starts: each file is hashed once
/// per run, not once per process or per dlopen.
pub fn verify(lock: &LockFile) -> Result<Vec<culaunch_protocol::env::LockedFile>, Error> {
    let mut files = Vec::with_capacity(lock.libs.len());
    for e in &lock.libs {
        let (found, file) = sha256_and_identity(&e.path).map_err(|source| Error::LockedFileMissing {
            soname: e.soname.clone(),
            path: e.path.clone(),
            source,
        })?;
        files.push(file);
        if !found.eq_ignore_ascii_case(&e.sha256) {
            return Err(Error::LockMismatch {
                soname: e.soname.clone(),
                path: e.path.clone(),
                expected: e.sha256.clone(),
                found,
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_round_trips_and_rejects_unknown_keys() {
        let lock = LockFile {
            version: 1,
            libs: vec![LockEntry {
                soname: "libcudart.so.12".into(),
                path: "/x/libcudart.so.12".into(),
                sha256: "ab".into(),
                version: Some("12.9.79".into()),
            }],
        };
        let text = toml::to_string(&lock).unwrap();
        assert!(text.contains("[[lib]]"), "{text}");
        let back: LockFile = toml::from_str(&text).unwrap();
        assert_eq!(back.libs[0].soname, "libcudart.so.12");
        assert!(toml::from_str::<LockFile>(
            "version = 1\n[[lib]]\nsoname = \"a\"\npath = \"b\"\nsha256 = \"c\"\nextra = 1\n"
        )
        .is_err());
    }
}
