//! What culaunch knows about CUDA releases and drivers, in one place: the
//! minimum driver of each runtime major, where a driver's and a toolkit's
//! versions are written, and how to compare them.

use std::path::Path;

/// Minimum driver for each CUDA major (NVIDIA's CUDA compatibility guide:
/// minor-version compatibility within a major).
const MIN_DRIVER: &[(u32, &str)] = &[(11, "450.80.02"), (12, "525.60.13"), (13, "580.0")];

/// The minimum driver for runtimes of CUDA `major`, if culaunch knows it.
pub fn min_driver(major: u32) -> Option<&'static str> {
    MIN_DRIVER.iter().find(|(m, _)| *m == major).map(|(_, v)| *v)
}

/// The major of a libcudart SONAME (`libcudart.so.12` → 12).
pub fn cudart_major(soname: &str) -> Option<u32> {
    soname.strip_prefix("libcudart.so.")?.split('.').next()?.parse().ok()
}

/// The loaded kernel module's version, from /proc/driver/nvidia/version.
pub fn kernel_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    text.split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_owned)
}

/// A user-mode driver's version from its file name (`libcuda.so.535.104.05`),
/// following links.
pub fn libcuda_version(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name()?.to_str()?;
    name.strip_prefix("libcuda.so.").filter(|v| v.contains('.')).map(str::to_owned)
}

/// A toolkit root's release: `version.json` (CUDA 11.1 and later), else
/// `version.txt` ("CUDA Version 10.2.89").
pub fn toolkit_version(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("version.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["cuda"]["version"].as_str().map(str::to_owned))
        .or_else(|| {
            std::fs::read_to_string(root.join("version.txt")).ok()?.split_whitespace().last().map(str::to_owned)
        })
}

/// Dotted versions compared numerically (`525.60.9` < `525.60.13`).
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |s: &str| s.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    parse(a) < parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_versions_compare_numerically() {
        assert!(version_lt("470.57.02", "525.60.13"));
        assert!(!version_lt("535.104.05", "525.60.13"));
        assert!(version_lt("525.60.9", "525.60.13"));
    }

    #[test]
    fn majors_and_minimum_drivers() {
        assert_eq!(cudart_major("libcudart.so.11.0"), Some(11));
        assert_eq!(cudart_major("libcudart.so.12"), Some(12));
        assert_eq!(min_driver(12), Some("525.60.13"));
        assert_eq!(min_driver(9), None);
    }
}
