//! Where a library file came from: the pip wheel, conda package, CUDA toolkit
//! or distribution package that installed it. Each answer comes from that
//! installer's own records, never from the path's shape alone.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::vocab::{basename, VersionSource};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordHash {
    Matches,
    /// The file differs from what the package installed.
    Differs,
    /// Over the size culaunch hashes at the end of a run.
    NotChecked,
    /// RECORD lists no hash for it.
    Absent,
}

/// Files larger than this are not hashed at the end of a run (a 500 MB
/// cuBLASLt takes seconds).
const HASH_LIMIT: u64 = 128 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Listed in a `*.dist-info/RECORD`; `record_hash` says whether the
    /// file still has the sha256 the wheel installed.
    Pip {
        package: String,
        version: String,
        record_hash: RecordHash,
    },
    /// Listed in a `conda-meta/*.json` file list.
    Conda {
        package: String,
        version: String,
    },
    /// Under a CUDA toolkit root with a `version.json`.
    Toolkit {
        root: String,
        version: Option<String>,
    },
    /// Owned by a dpkg package.
    Distro {
        package: String,
    },
    Unknown,
}

impl Origin {
    pub fn version(&self) -> Option<&str> {
        match self {
            Origin::Pip { version, .. } | Origin::Conda { version, .. } => Some(version),
            Origin::Toolkit { version, .. } => version.as_deref(),
            _ => None,
        }
    }

    /// The release of a library of `family` that this record gives: a pip
    /// wheel's version is its library's only when the wheel is that
    /// library's own (NVIDIA's `nvidia-*` and `cuda-*` wheels, or one named
    /// for the family, as `tensorrt-cu12-libs`). A framework that bundles a
    /// copy (torch 1.13's `torch/lib/libcudart-e409450e.so.11.0`) gives it
    /// its own version, not the library's.
    pub fn library_version(&self, family: &str) -> Option<&str> {
        match self {
            Origin::Pip { package, .. } => {
                let name = package.to_ascii_lowercase().replace('_', "-");
                let own = name.starts_with("nvidia-") || name.starts_with("cuda-") || name.contains(family);
                self.version().filter(|_| own)
            }
            _ => self.version(),
        }
    }

    /// Which record the version came from.
    pub fn version_source(&self) -> Option<VersionSource> {
        match self {
            Origin::Pip { .. } => Some(VersionSource::Pip),
            Origin::Conda { .. } => Some(VersionSource::Conda),
            Origin::Toolkit { .. } => Some(VersionSource::ToolkitVersionJson),
            Origin::Distro { .. } => Some(VersionSource::Dpkg),
            Origin::Unknown => None,
        }
    }

    /// A short label for the summary table.
    pub fn label(&self) -> String {
        match self {
            Origin::Pip { package, .. } => format!("pip {package}"),
            Origin::Conda { package, .. } => format!("conda {package}"),
            Origin::Toolkit { root, .. } => format!("toolkit {root}"),
            Origin::Distro { package } => format!("deb {package}"),
            Origin::Unknown => "unknown".to_owned(),
        }
    }
}

/// Looks origins up, reading each installer's records once.
#[derive(Default)]
pub struct Finder {
    /// site-packages dir → its RECORDs.
    pip: HashMap<PathBuf, Records>,
    /// dpkg's file lists, path → package, read on first use.
    dpkg: Option<HashMap<String, String>>,
}

impl Finder {
    pub fn origin(&mut self, path: &Path) -> Origin {
        self.pip(path)
            .or_else(|| conda(path))
            .or_else(|| toolkit(path))
            .or_else(|| self.distro(path))
            .unwrap_or(Origin::Unknown)
    }

    fn pip(&mut self, path: &Path) -> Option<Origin> {
        let site = path
            .ancestors()
            .find(|a| matches!(a.file_name().and_then(OsStr::to_str), Some("site-packages" | "dist-packages")))?;
        let rel = path.strip_prefix(site).ok()?.to_str()?.to_owned();
        let records = self.pip.entry(site.to_path_buf()).or_insert_with(|| read_records(site));
        let r = on_disk(path, records.get(&rel)?)?;
        Some(Origin::Pip {
            package: r.package.clone(),
            version: r.version.clone(),
            record_hash: check_record_hash(path, &r.hash),
        })
    }

    fn distro(&mut self, path: &Path) -> Option<Origin> {
        let owners = self.dpkg.get_or_insert_with(read_dpkg_lists);
        let p = path.to_str()?;
        // Debian merged /usr: a file under /usr/lib is listed as /lib, too.
        let alt = p.strip_prefix("/usr").map(str::to_owned);
        let package = owners.get(p).or_else(|| alt.as_ref().and_then(|a| owners.get(a)))?;
        Some(Origin::Distro { package: package.clone() })
    }
}

/// RECORD's `sha256=<urlsafe base64, unpadded>` against the file.
fn check_record_hash(path: &Path, record: &str) -> RecordHash {
    let Some(want) = record.strip_prefix("sha256=") else { return RecordHash::Absent };
    if fs::metadata(path).map(|m| m.len() > HASH_LIMIT).unwrap_or(true) {
        return RecordHash::NotChecked;
    }
    let Ok(bytes) = crate::digest::sha256_bytes_of(path) else { return RecordHash::NotChecked };
    if crate::digest::base64_url(&bytes) == want.trim_end_matches('=') {
        RecordHash::Matches
    } else {
        RecordHash::Differs
    }
}

/// Every file the wheels in a site-packages directory installed: path
/// relative to it → each wheel whose RECORD lists it, with the hash and size
/// it gives. Two wheels can claim one path (a wheel clash); the file on disk
/// is the one whose bytes it holds, never simply the record read last.
pub type Records = HashMap<String, Vec<Record>>;

pub struct Record {
    pub package: String,
    pub version: String,
    pub hash: String,
    pub size: Option<u64>,
}

/// Of the records claiming `path`, the one whose bytes are on disk: the only
/// one, else the only one of the file's size, else the one with its sha256.
/// None when several claim it and none matches (modified since): reporting
/// one of them would name a wheel whose file this is not.
fn on_disk<'a>(path: &Path, claims: &'a [Record]) -> Option<&'a Record> {
    if let [only] = claims {
        return Some(only);
    }
    let size = fs::metadata(path).ok()?.len();
    let sized: Vec<&Record> = claims.iter().filter(|r| r.size.is_none_or(|s| s == size)).collect();
    if let [only] = sized[..] {
        if only.size.is_some() {
            return Some(only);
        }
    }
    let hash = crate::digest::record_sha256(path).ok()?;
    sized.into_iter().find(|r| r.hash.trim_end_matches('=') == hash)
}

pub fn read_records(site: &Path) -> Records {
    let mut map = HashMap::new();
    let Ok(entries) = fs::read_dir(site) else {
        return map;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".dist-info")) else {
            continue;
        };
        // `{name}-{version}.dist-info`; neither part contains '-' (PEP 427).
        let Some((package, version)) = stem.split_once('-') else {
            continue;
        };
        let Ok(record) = fs::read_to_string(entry.path().join("RECORD")) else {
            continue;
        };
        for line in record.lines() {
            let mut fields = line.splitn(3, ',');
            if let (Some(file), Some(hash)) = (fields.next(), fields.next()) {
                let record = Record {
                    package: package.replace('_', "-"),
                    version: version.to_owned(),
                    hash: hash.to_owned(),
                    size: fields.next().and_then(|s| s.trim().parse().ok()),
                };
                map.entry(file.to_owned()).or_insert_with(Vec::new).push(record);
            }
        }
    }
    map
}

fn conda(path: &Path) -> Option<Origin> {
    let prefix = path.ancestors().skip(1).find(|a| a.join("conda-meta").is_dir())?;
    let rel = path.strip_prefix(prefix).ok()?.to_str()?;
    for entry in fs::read_dir(prefix.join("conda-meta")).ok()?.flatten() {
        if entry.path().extension() != Some(OsStr::new("json")) {
            continue;
        }
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        if !text.contains(&format!("\"{rel}\"")) {
            continue;
        }
        let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let listed = meta["files"].as_array().is_some_and(|files| files.iter().any(|f| f.as_str() == Some(rel)));
        if listed {
            return Some(Origin::Conda {
                package: meta["name"].as_str().unwrap_or_default().to_owned(),
                version: meta["version"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    None
}

fn toolkit(path: &Path) -> Option<Origin> {
    // lib64/, targets/x86_64-linux/lib/: the root is at most three levels up.
    let root = path.ancestors().skip(1).take(4).find(|a| a.join("version.json").is_file())?;
    Some(Origin::Toolkit { root: root.display().to_string(), version: crate::cuda::toolkit_version(root) })
}

fn read_dpkg_lists() -> HashMap<String, String> {
    let mut owners = HashMap::new();
    let Ok(entries) = fs::read_dir("/var/lib/dpkg/info") else {
        return owners;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(package) = name.to_str().and_then(|n| n.strip_suffix(".list")) else {
            continue;
        };
        let package = package.split(':').next().unwrap_or(package).to_owned();
        let Ok(list) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for file in list.lines().filter(|l| l.contains(".so")) {
            owners.insert(file.to_owned(), package.clone());
        }
    }
    owners
}

/// The release a file name spells out: `libcudart.so.12.4.127` → `12.4.127`.
/// A file named by its SONAME (`libcudart.so.12`, `libcudart.so.11.0`) spells
/// out the ABI version, not a release.
pub fn version_from_file_name(path: &str, soname: Option<&str>) -> Option<String> {
    let name = basename(path);
    if Some(name) == soname {
        return None;
    }
    let (_, version) = name.split_once(".so.")?;
    // A wheel's hashed copy (`libcudart-e409450e.so.11.0`) spells only its
    // SONAME's version.
    if soname.and_then(|s| s.split_once(".so.")).is_some_and(|(_, v)| v == version) {
        return None;
    }
    (version.matches('.').count() >= 1
        && version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_version_names_give_a_release_majors_do_not() {
        let v = |p, s| version_from_file_name(p, Some(s));
        assert_eq!(v("/t/lib64/libcudart.so.12.4.127", "libcudart.so.12").as_deref(), Some("12.4.127"));
        assert_eq!(v("/w/libcudart.so.12", "libcudart.so.12"), None);
        assert_eq!(v("/w/libcudart.so.11.0", "libcudart.so.11.0"), None);
        assert_eq!(v("/t/torch/lib/libcudart-e409450e.so.11.0", "libcudart.so.11.0"), None);
        assert_eq!(v("/w/libfoo.so", "libfoo.so"), None);
    }

    #[test]
    fn a_wheels_version_is_its_librarys_only_when_the_wheel_is_the_librarys_own() {
        let pip = |package: &str| Origin::Pip {
            package: package.into(),
            version: "1.13.1".into(),
            record_hash: RecordHash::Matches,
        };
        assert_eq!(pip("nvidia-cuda-runtime-cu11").library_version("cudart"), Some("1.13.1"));
        assert_eq!(pip("cuda_toolkit").library_version("cudart"), Some("1.13.1"));
        assert_eq!(pip("tensorrt-cu12-libs").library_version("tensorrt"), Some("1.13.1"));
        assert_eq!(pip("torch").library_version("cudart"), None);
        assert_eq!(pip("jaxlib").library_version("cudnn"), None);
    }

    #[test]
    fn pip_origin_comes_from_record() {
        let site =
            std::env::temp_dir().join(format!("culaunch-prov-{}/lib/python3.11/site-packages", std::process::id()));
        let lib = site.join("nvidia/cuda_runtime/lib");
        fs::create_dir_all(&lib).unwrap();
        fs::write(lib.join("libcudart.so.12"), b"x").unwrap();
        let info = site.join("nvidia_cuda_runtime_cu12-12.9.79.dist-info");
        fs::create_dir_all(&info).unwrap();
        fs::write(info.join("RECORD"), "nvidia/cuda_runtime/lib/libcudart.so.12,sha256=abc,1\n").unwrap();
        let origin = Finder::default().origin(&lib.join("libcudart.so.12"));
        assert_eq!(
            origin,
            Origin::Pip {
                package: "nvidia-cuda-runtime-cu12".into(),
                version: "12.9.79".into(),
                record_hash: RecordHash::Differs
            }
        );
        let stray = Finder::default().origin(&lib.join("libother.so.1"));
        assert_ne!(stray, origin);
        fs::remove_dir_all(site.ancestors().nth(3).unwrap()).unwrap();
    }

    #[test]
    fn a_path_two_wheels_claim_is_attributed_to_the_one_whose_bytes_are_on_disk() {
        let site = std::env::temp_dir()
            .join(format!("culaunch-prov-clash-{}/lib/python3.11/site-packages", std::process::id()));
        let lib = site.join("nvidia/cudnn/lib");
        fs::create_dir_all(&lib).unwrap();
        let file = lib.join("libcudnn.so.9");
        // Same size, told apart by sha256; then a size only one claims.
        fs::write(&file, b"cu12").unwrap();
        let hash12 = crate::digest::record_sha256(&file).unwrap();
        for (dist, hash, size) in
            [("nvidia_cudnn_cu12-9.28.0.42", hash12.as_str(), 4), ("nvidia_cudnn_cu13-9.26.0.51", "sha256=other", 4)]
        {
            let info = site.join(format!("{dist}.dist-info"));
            fs::create_dir_all(&info).unwrap();
            fs::write(info.join("RECORD"), format!("nvidia/cudnn/lib/libcudnn.so.9,{hash},{size}\n")).unwrap();
        }
        let package = |o: Origin| match o {
            Origin::Pip { package, record_hash, .. } => (package, record_hash),
            o => panic!("{o:?}"),
        };
        assert_eq!(package(Finder::default().origin(&file)), ("nvidia-cudnn-cu12".into(), RecordHash::Matches));
        let info = site.join("nvidia_cudnn_cu13-9.26.0.51.dist-info");
        fs::write(info.join("RECORD"), "nvidia/cudnn/lib/libcudnn.so.9,sha256=other,9\n").unwrap();
        fs::write(&file, b"cu13 file").unwrap();
        assert_eq!(package(Finder::default().origin(&file)).0, "nvidia-cudnn-cu13");
        fs::remove_dir_all(site.ancestors().nth(3).unwrap()).unwrap();
    }
}
