//! The report's vocabulary as types: the trace's `how` and `search` values,
//! CUDA family names, where a version came from. Each serialises to exactly
//! the string the trace and the summary have always carried.

use std::cmp::Ordering;
use std::fmt;

use culaunch_protocol::catalogue;
use culaunch_protocol::event::{FailReason, How, SearchStep};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A closed set of names, each with one spelling.
pub trait Name: Copy + Eq + 'static {
    fn as_str(self) -> &'static str;
    fn parse(s: &str) -> Option<Self>;
}

impl Name for How {
    fn as_str(self) -> &'static str {
        How::as_str(self)
    }
    fn parse(s: &str) -> Option<Self> {
        How::parse(s)
    }
}

impl Name for SearchStep {
    fn as_str(self) -> &'static str {
        SearchStep::as_str(self)
    }
    fn parse(s: &str) -> Option<Self> {
        SearchStep::parse(s)
    }
}

impl Name for FailReason {
    fn as_str(self) -> &'static str {
        FailReason::as_str(self)
    }
    fn parse(s: &str) -> Option<Self> {
        FailReason::parse(s)
    }
}

/// A value from a trace: one this version knows, or (from a newer writer) one
/// it does not, kept as written so that it is still shown, never dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tag<T> {
    Known(T),
    Other(String),
}

impl<T: Name> Tag<T> {
    pub fn as_str(&self) -> &str {
        match self {
            Tag::Known(t) => t.as_str(),
            Tag::Other(s) => s,
        }
    }

    pub fn from_str(s: &str) -> Tag<T> {
        T::parse(s).map_or_else(|| Tag::Other(s.to_owned()), Tag::Known)
    }

    pub fn is(&self, t: T) -> bool {
        matches!(self, Tag::Known(k) if *k == t)
    }
}

impl<T: Name> fmt::Display for Tag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hashed by spelling, as it is compared.
impl<T: Name> std::hash::Hash for Tag<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

/// Ordered by spelling, as the summary's sets have always been.
impl<T: Name> Ord for Tag<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl<T: Name> PartialOrd for Tag<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Name> Serialize for Tag<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: Name> Deserialize<'de> for Tag<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Tag::from_str(&String::deserialize(d)?))
    }
}

macro_rules! names {
    ($(#[$m:meta])* $ty:ident { $($variant:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty { $($variant),* }

        #[cfg(test)]
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];
        }

        impl Name for $ty {
            fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $s),* }
            }
            fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($ty::$variant),)* _ => None }
            }
        }
    };
}

names! {
    /// A CUDA library family, as `catalogue::MEMBERS` names it.
    Family {
        Cudart = "cudart",
        Cuda = "cuda",
        Cublas = "cublas",
        Cudnn = "cudnn",
        Cufft = "cufft",
        Curand = "curand",
        Cusolver = "cusolver",
        Cusparse = "cusparse",
        Cusparselt = "cusparselt",
        Nccl = "nccl",
        Nvrtc = "nvrtc",
        Nvjitlink = "nvjitlink",
        Cupti = "cupti",
        Nvtx = "nvtx",
        Nvml = "nvml",
        Cufile = "cufile",
        Nvshmem = "nvshmem",
        Npp = "npp",
        Nvjpeg = "nvjpeg",
        Cutensor = "cutensor",
        Tensorrt = "tensorrt",
    }
}

impl Family {
    /// The family of a library name, SONAME or path.
    pub fn of(name: &[u8]) -> Option<Family> {
        Family::parse(catalogue::family(name)?)
    }

    /// All its members must come from one release.
    pub fn same_release(self) -> bool {
        catalogue::SAME_RELEASE.contains(&self.as_str())
    }

    /// The machine's rather than the job's (`--strict` and locks leave it alone).
    pub fn strict_exempt(self) -> bool {
        catalogue::STRICT_EXEMPT.contains(&self.as_str())
    }
}

/// Where a library's `version` came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSource {
    Pip,
    Conda,
    ToolkitVersionJson,
    Dpkg,
    FileName,
    /// The library's own version call (`cudaRuntimeGetVersion`, …).
    Call(String),
}

impl VersionSource {
    pub fn as_str(&self) -> &str {
        match self {
            VersionSource::Pip => "pip",
            VersionSource::Conda => "conda",
            VersionSource::ToolkitVersionJson => "toolkit version.json",
            VersionSource::Dpkg => "dpkg",
            VersionSource::FileName => "file name",
            VersionSource::Call(c) => c,
        }
    }

    /// An installer's record or the file name: a release, comparable across
    /// the libraries of one family (a version call answers in its own terms).
    pub fn is_release(&self) -> bool {
        !matches!(self, VersionSource::Call(_))
    }
}

impl<'de> Deserialize<'de> for VersionSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "pip" => VersionSource::Pip,
            "conda" => VersionSource::Conda,
            "toolkit version.json" => VersionSource::ToolkitVersionJson,
            "dpkg" => VersionSource::Dpkg,
            "file name" => VersionSource::FileName,
            _ => VersionSource::Call(s),
        })
    }
}

impl Serialize for VersionSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The last component of a path (bytes, as ELF headers and the loader have
/// them); the whole of it when there is no slash.
pub fn basename_bytes(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// The last component of a path as the trace carries it.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_family_is_a_family_variant() {
        for (_, family) in catalogue::MEMBERS {
            assert!(Family::parse(family).is_some(), "{family}");
        }
        for family in catalogue::SAME_RELEASE.iter().chain(catalogue::STRICT_EXEMPT) {
            assert!(Family::parse(family).is_some(), "{family}");
        }
        for f in Family::ALL {
            assert_eq!(Family::parse(f.as_str()), Some(*f));
        }
    }

    #[test]
    fn unknown_trace_values_are_kept_and_sets_order_by_spelling() {
        let t: Tag<How> = serde_json::from_str("\"teleported\"").unwrap();
        assert_eq!(t, Tag::Other("teleported".into()));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"teleported\"");
        let set: std::collections::BTreeSet<Tag<How>> =
            [How::Needed, How::Inherited, How::Dlopen].into_iter().map(Tag::Known).collect();
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["dlopen","inherited","needed"]"#);
        let s: Tag<SearchStep> = serde_json::from_str("\"ld.so.cache\"").unwrap();
        assert!(s.is(SearchStep::LdSoCache));
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("/a/b/libx.so.1"), "libx.so.1");
        assert_eq!(basename("libx.so.1"), "libx.so.1");
        assert_eq!(basename_bytes(b"/a/b"), b"b");
    }
}
