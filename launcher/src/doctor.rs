//! `culaunch doctor`: the CUDA installations a job on this machine could pick
//! up, the driver, and what will bite — without running the job. Works, and
//! says so plainly, on a machine without a GPU or driver.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use culaunch_protocol::catalogue;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::cuda;
use crate::elf;
use crate::elf::cache::Cache;
use crate::error::Error;
use crate::plan::pins;
use crate::python::site::{Clash, Site};
use crate::report::provenance;
use crate::rules::{self, Diagnosis, Kind, Place};
use crate::vocab::basename;

#[derive(Debug, Serialize)]
struct Doctor {
    /// The Python whose site-packages were inspected, and the sites.
    python: Option<PythonInspected>,
    driver: Driver,
    installations: Vec<Installation>,
    /// Files two installed wheels both claim with different contents.
    clashes: Vec<SiteClash>,
    problems: Vec<Diagnosis>,
}

#[derive(Debug, Serialize)]
struct PythonInspected {
    /// As given (`--python`) or found (`python3` on PATH).
    interpreter: String,
    sites: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SiteClash {
    site: String,
    #[serde(flatten)]
    clash: Clash,
}

#[derive(Debug, Serialize)]
struct Driver {
    /// From /proc/driver/nvidia/version: the kernel module that is loaded.
    kernel_module: Option<String>,
    /// libcuda.so.1 as the loader would find it (ld.so.cache).
    libcuda: Option<String>,
    libcuda_version: Option<String>,
}

#[derive(Debug, Serialize)]
struct Installation {
    kind: InstallKind,
    location: String,
    /// Why culaunch looked there (`CUDA_HOME`, `/usr/local/cuda*`, …).
    found_via: String,
    version: Option<String>,
    /// CUDA-family SONAMEs it provides.
    libraries: BTreeSet<String>,
    /// For a pip wheel, its site-packages directory and name (the text
    /// groups wheels by site).
    #[serde(skip)]
    wheel: Option<(String, String)>,
}

/// Where an installation was found; `as_str` is the name readers match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InstallKind {
    Toolkit,
    Pip,
    Conda,
    LdLibraryPath,
    LdSoCache,
}

impl Serialize for InstallKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl InstallKind {
    fn as_str(self) -> &'static str {
        match self {
            InstallKind::Toolkit => "toolkit",
            InstallKind::Pip => "pip",
            InstallKind::Conda => "conda",
            InstallKind::LdLibraryPath => "ld_library_path",
            InstallKind::LdSoCache => "ld.so.cache",
        }
    }
}

pub fn command(args: DoctorArgs) -> Result<(), Error> {
    let d = inspect(args.python.as_deref());
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&d).map_err(Error::Json)?);
    } else {
        out!("{}", text(&d));
    }
    Ok(())
}

fn inspect(python: Option<&Path>) -> Doctor {
    let cache = Cache::read(Path::new("/etc/ld.so.cache"));
    let driver = driver(cache.as_ref());
    let mut installations: Vec<Installation> = Vec::new();
    for (dir, via) in toolkit_roots(&|k| std::env::var_os(k)) {
        if !installations.iter().any(|i| same_dir(&i.location, &dir)) {
            installations.extend(toolkit(&dir, &via));
        }
    }
    if let Some(llp) = std::env::var_os("LD_LIBRARY_PATH") {
        for dir in llp.as_bytes().split(|&b| b == b':' || b == b';').filter(|d| !d.is_empty()) {
            let dir = Path::new(OsStr::from_bytes(dir));
            let libs = cuda_sonames_in(dir);
            if !libs.is_empty() {
                installations.push(Installation {
                    kind: InstallKind::LdLibraryPath,
                    location: dir.display().to_string(),
                    found_via: "LD_LIBRARY_PATH".into(),
                    version: None,
                    libraries: libs,
                    wheel: None,
                });
            }
        }
    }
    if let Some(c) = &cache {
        let mut by_dir: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, path) in c.entries() {
            if catalogue::family(name).is_some() {
                let path = String::from_utf8_lossy(path).into_owned();
                let dir = path.rsplit_once('/').map(|(d, _)| d.to_owned()).unwrap_or_default();
                by_dir.entry(dir).or_default().insert(String::from_utf8_lossy(name).into_owned());
            }
        }
        for (dir, libs) in by_dir {
            installations.push(Installation {
                kind: InstallKind::LdSoCache,
                location: dir,
                found_via: "/etc/ld.so.cache".into(),
                version: None,
                libraries: libs,
                wheel: None,
            });
        }
    }
    let (python, pip_installs, sites) = pip(python);
    installations.extend(pip_installs);
    if let Some(prefix) = std::env::var_os("CONDA_PREFIX").filter(|v| !v.is_empty()) {
        let lib = Path::new(&prefix).join("lib");
        let libs = cuda_sonames_in(&lib);
        if !libs.is_empty() {
            installations.push(Installation {
                kind: InstallKind::Conda,
                location: lib.display().to_string(),
                found_via: "CONDA_PREFIX".into(),
                version: None,
                libraries: libs,
                wheel: None,
            });
        }
    }
    let mut problems = problems(&driver, &installations);
    let mut clashes = Vec::new();
    for site in &sites {
        let (found, c) = site_problems(site);
        problems.extend(found);
        let root = site.root.display().to_string();
        clashes.extend(c.into_iter().map(|clash| SiteClash { site: root.clone(), clash }));
    }
    Doctor { python, driver, installations, clashes, problems }
}

/// The CUDA toolkit roots doctor inspects: $CUDA_HOME, $CUDA_PATH (in the
/// environment `env` reads), then /usr/local/cuda*; each with how it was
/// found.
fn toolkit_roots(env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(dir) = env(var).filter(|v| !v.is_empty()) {
            out.push((PathBuf::from(dir), var.to_owned()));
        }
    }
    let mut local: Vec<PathBuf> = std::fs::read_dir("/usr/local")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(OsStr::to_str).is_some_and(|n| n.starts_with("cuda")))
        .collect();
    local.sort();
    out.extend(local.into_iter().map(|d| (d, "/usr/local/cuda*".to_owned())));
    let mut seen = Vec::new();
    out.retain(|(d, _)| {
        let c = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        !seen.contains(&c) && {
            seen.push(c);
            true
        }
    });
    out
}

/// The library directories of the installations doctor knows, for
/// explaining a failed load: the pip wheels of `sites` (the job's
/// site-packages), the CUDA toolkits, the conda env ($CONDA_PREFIX), in the
/// environment `env` reads. Each labelled for the user.
pub fn installation_places(env: &dyn Fn(&str) -> Option<std::ffi::OsString>, sites: &[PathBuf]) -> Vec<elf::Place> {
    let mut out = Vec::new();
    for site in sites {
        out.extend(pins::library_dirs(site).into_iter().map(|d| (d, format!("a pip wheel in {}", site.display()))));
    }
    for (root, via) in toolkit_roots(env) {
        let label = format!("the CUDA toolkit {} ({via})", root.display());
        out.extend(pins::library_dirs(&root).into_iter().map(|d| (d, label.clone())));
    }
    if let Some(prefix) = env("CONDA_PREFIX").filter(|v| !v.is_empty()) {
        let prefix = PathBuf::from(prefix);
        out.push((prefix.join("lib"), format!("the conda env {}", prefix.display())));
    }
    out
}

fn same_dir(a: &str, b: &Path) -> bool {
    std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
}

fn driver(cache: Option<&Cache>) -> Driver {
    let kernel_module = cuda::kernel_driver_version();
    let libcuda = cache.and_then(|c| c.lookup(b"libcuda.so.1", &[])).map(|p| String::from_utf8_lossy(p).into_owned());
    let libcuda_version = libcuda.as_ref().and_then(|p| cuda::libcuda_version(Path::new(p)));
    Driver { kernel_module, libcuda, libcuda_version }
}

fn toolkit(dir: &Path, via: &str) -> Option<Installation> {
    if !dir.is_dir() {
        return None;
    }
    let version = cuda::toolkit_version(dir);
    let mut libs = BTreeSet::new();
    for sub in pins::library_dirs(dir) {
        libs.extend(cuda_sonames_in(&sub));
    }
    Some(Installation {
        kind: InstallKind::Toolkit,
        location: dir.display().to_string(),
        found_via: via.into(),
        version,
        libraries: libs,
        wheel: None,
    })
}

/// CUDA-family library names (by file name) in `dir`.
fn cuda_sonames_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.contains(".so") && catalogue::family(n.as_bytes()).is_some())
        .collect()
}

/// The pip `nvidia-*` wheels (and the frameworks that use them) in the
/// site-packages of `python`, or of the first `python3` on PATH.
fn pip(python: Option<&Path>) -> (Option<PythonInspected>, Vec<Installation>, Vec<Site>) {
    let py = python.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("python3"));
    let code = "import json, site, sys; print(json.dumps(site.getsitepackages() + [site.getusersitepackages()]))";
    let Ok(out) = Command::new(&py).args(["-c", code]).output() else { return (None, Vec::new(), Vec::new()) };
    let Ok(dirs) = serde_json::from_slice::<Vec<String>>(&out.stdout) else { return (None, Vec::new(), Vec::new()) };
    let dirs: Vec<String> = dirs.into_iter().filter(|d| Path::new(d).is_dir()).collect();
    let inspected = PythonInspected { interpreter: py.display().to_string(), sites: dirs.clone() };
    let sites = dirs.iter().map(|d| Site::read(Path::new(d))).collect();
    let mut found = Vec::new();
    for site in dirs {
        let records = provenance::read_records(Path::new(&site));
        let framework = |pkg: &str| {
            pkg.starts_with("nvidia-")
                || ["torch", "jax", "jaxlib", "tensorflow", "cupy"]
                    .iter()
                    .any(|f| pkg == *f || pkg.starts_with(&format!("{f}-")))
        };
        let dists: BTreeSet<(String, String)> = records
            .values()
            .flatten()
            .map(|r| (r.package.to_lowercase(), r.version.clone()))
            .filter(|(pkg, _)| framework(pkg))
            .collect();
        for (pkg, ver) in dists {
            found.push(Installation {
                kind: InstallKind::Pip,
                location: format!("{site} ({pkg})"),
                found_via: format!("site-packages of {}", py.display()),
                version: Some(ver),
                libraries: pip_libraries(&records, &pkg),
                wheel: Some((site.clone(), pkg.clone())),
            });
        }
    }
    (Some(inspected), found, sites)
}

/// The RECORD form of a file's sha256.
fn record_hash(p: &Path) -> Option<String> {
    crate::digest::record_sha256(p).ok()
}

/// What one site's records show, without a run: wheel clashes, frameworks
/// built for different CUDA majors side by side, and each framework's
/// declared CUDA wheels (installed, of an accepted release, its own bytes).
fn site_problems(site: &Site) -> (Vec<Diagnosis>, Vec<Clash>) {
    let root = site.root.display().to_string();
    let clashes = site.clashes(&record_hash);
    let mut out = Vec::new();
    for c in &clashes {
        let [a, b] = &c.dists;
        let on_disk: Vec<String> = c
            .on_disk
            .iter()
            .map(|o| format!("{} is {}", o.path, o.dist.as_ref().map_or("neither's".to_owned(), |d| format!("{d}'s"))))
            .take(3)
            .collect();
        let more = c.on_disk.len().saturating_sub(3);
        out.push(
            Diagnosis::new(
                Kind::WheelClash,
                format!(
                    "{} {} and {} {} both install {} files in {root} ({} libraries): the one installed last overwrote the other's; {}{}",
                    a.name,
                    a.version,
                    b.name,
                    b.version,
                    c.paths.len(),
                    c.libraries.len(),
                    on_disk.join(", "),
                    if more > 0 { format!(" and {more} more") } else { String::new() }
                ),
            )
            .files(c.libraries.iter().map(|l| site.root.join(l).display().to_string()).collect())
            .rule("pip writes a wheel's files over any already there; both RECORDs keep their claim"),
        );
    }
    let split = site.cuda_major_split();
    if !split.is_empty() {
        let built: Vec<String> = split
            .iter()
            .map(|(d, m)| {
                let majors: Vec<String> = m.iter().map(u32::to_string).collect();
                format!("{} {} (CUDA {})", d.name, d.version, majors.join(", "))
            })
            .collect();
        out.push(
            Diagnosis::new(
                Kind::FrameworksCudaMajors,
                format!(
                    "{root} holds frameworks built for different CUDA majors: {}. Their CUDA wheels overwrite each other's files, and a process importing both loads two runtimes. Use one venv per framework, or pin each job's libraries (`--toolkit {root}/nvidia`, `--pin SONAME=PATH`)",
                    built.join(" and ")
                ),
            )
            .rule("one process can use one CUDA major per library; one site has one file per path"),
        );
    }
    for framework in site.frameworks() {
        for unmet in site.unmet(framework, &record_hash) {
            out.push(
                Diagnosis::new(Kind::RequirementMismatch, unmet)
                    .rule("a framework's Requires-Dist names the CUDA wheels it was built and tested with"),
            );
        }
    }
    (out, clashes)
}

/// CUDA-family files a wheel installed, from its RECORD.
fn pip_libraries(records: &provenance::Records, pkg: &str) -> BTreeSet<String> {
    records
        .iter()
        .filter(|(_, r)| r.iter().any(|r| r.package.eq_ignore_ascii_case(pkg)))
        .map(|(file, _)| basename(file))
        .filter(|n| n.contains(".so") && catalogue::family(n.as_bytes()).is_some())
        .map(str::to_owned)
        .collect()
}

/// Doctor's rules: what the installations and the driver show will bite.
fn problems(driver: &Driver, installs: &[Installation]) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let pip_libs: BTreeMap<&str, &Installation> = installs
        .iter()
        .filter(|i| i.kind == InstallKind::Pip)
        .flat_map(|i| i.libraries.iter().map(move |l| (l.as_str(), i)))
        .collect();
    for i in installs.iter().filter(|i| i.kind == InstallKind::LdLibraryPath) {
        for lib in &i.libraries {
            if let Some(wheel) = pip_libs.get(lib.as_str()) {
                out.push(
                    Diagnosis::new(
                        Kind::LdLibraryPathShadowsWheel,
                        format!(
                            "LD_LIBRARY_PATH entry {} holds {lib}, which a library with DT_RUNPATH will load instead of the copy in {}",
                            i.location, wheel.location
                        ),
                    )
                    .rule("LD_LIBRARY_PATH is searched before DT_RUNPATH"),
                );
            }
        }
    }
    // Two majors of one library where any program searches: LD_LIBRARY_PATH and the cache.
    let searched = installs.iter().filter(|i| matches!(i.kind, InstallKind::LdLibraryPath | InstallKind::LdSoCache));
    out.extend(rules::two_majors(searched.flat_map(|i| i.libraries.iter().map(|l| l.as_bytes())), Place::SearchPath));
    let drv = driver.kernel_module.clone().or_else(|| driver.libcuda_version.clone());
    match &drv {
        None => out.push(Diagnosis::new(
            Kind::NoDriver,
            "no NVIDIA driver on this machine (no /proc/driver/nvidia/version, no libcuda.so.1 in ld.so.cache): jobs can be traced and pinned, but CUDA calls fail (cudart 11 reports error 35)".into(),
        )),
        Some(v) => {
            let runtimes: BTreeSet<u32> =
                installs.iter().flat_map(|i| i.libraries.iter()).filter_map(|l| cuda::cudart_major(l)).collect();
            for (major, min) in rules::driver_too_old_for(v, &runtimes) {
                out.push(
                    Diagnosis::new(
                        Kind::RuntimeNewerThanDriver,
                        format!("a CUDA {major} runtime is installed, but driver {v} is older than {min}, its minimum"),
                    )
                    .rule(format!("CUDA {major}.x needs driver >= {min}")),
                );
            }
        }
    }
    out
}

fn text(d: &Doctor) -> String {
    let mut out = String::new();
    match &d.python {
        Some(p) => {
            let _ = writeln!(out, "python: {} (site-packages: {})", p.interpreter, p.sites.join(", "));
        }
        None => {
            let _ = writeln!(out, "python: none inspected (no python3 on PATH; --python names one)");
        }
    }
    let _ = writeln!(out, "driver:");
    match (&d.driver.kernel_module, &d.driver.libcuda) {
        (None, None) => {
            let _ = writeln!(out, "  none: no GPU driver on this machine");
        }
        (k, l) => {
            let _ = writeln!(out, "  kernel module: {}", k.as_deref().unwrap_or("not loaded"));
            let _ = writeln!(
                out,
                "  libcuda.so.1: {}{}",
                l.as_deref().unwrap_or("not in ld.so.cache"),
                d.driver.libcuda_version.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "installations a job could pick up:");
    if d.installations.is_empty() {
        let _ = writeln!(out, "  none found");
    }
    let mut site_shown: Option<&str> = None;
    for i in &d.installations {
        let version = i.version.as_ref().map(|v| format!(" {v}")).unwrap_or_default();
        let list: Vec<&str> = i.libraries.iter().map(String::as_str).collect();
        // Wheels under one heading per site-packages directory, named once.
        if let Some((site, pkg)) = &i.wheel {
            if site_shown != Some(site.as_str()) {
                let _ = writeln!(out, "  pip wheels in {site}  (via {}):", i.found_via);
                site_shown = Some(site);
            }
            let _ = writeln!(out, "    {pkg}{version}{}{}", if list.is_empty() { "" } else { ": " }, list.join(" "));
            continue;
        }
        site_shown = None;
        let _ = writeln!(out, "  {}{version}: {}  (via {})", i.kind.as_str(), i.location, i.found_via);
        if !list.is_empty() {
            let _ = writeln!(out, "    {}", list.join(" "));
        }
    }
    if !d.clashes.is_empty() {
        let _ = writeln!(out, "wheel clashes (files two installed wheels both claim):");
    }
    for c in &d.clashes {
        let [a, b] = &c.clash.dists;
        let _ = writeln!(
            out,
            "  {} {} and {} {} in {}: {} files, {} of them libraries",
            a.name,
            a.version,
            b.name,
            b.version,
            c.site,
            c.clash.paths.len(),
            c.clash.libraries.len()
        );
        for o in &c.clash.on_disk {
            let whose =
                o.dist.as_deref().map_or("neither's bytes (modified since)".to_owned(), |n| format!("{n}'s bytes"));
            let _ = writeln!(out, "    {}: {whose}", o.path);
        }
    }
    let _ = writeln!(out, "problems:");
    if d.problems.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for p in &d.problems {
        let _ = writeln!(out, "  [{}] {}", p.kind.as_str(), p.message);
    }
    out
}
