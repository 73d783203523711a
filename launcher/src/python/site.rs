//! The distributions installed in one site-packages directory, read from
//! their `*.dist-info` (METADATA, RECORD), and what can be judged from them
//! alone: files two distributions both claim (wheel clashes), and whether a
//! framework got the CUDA wheels it declares.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use super::requirement::{normalise, Environment, Requirement};

#[derive(Debug, Clone)]
pub struct Dist {
    /// As METADATA spells it (`nvidia-cudnn-cu12`).
    pub name: String,
    pub version: String,
    pub requires: Vec<Requirement>,
    pub extras: Vec<String>,
    pub files: Vec<RecordEntry>,
}

#[derive(Debug, Clone)]
pub struct RecordEntry {
    /// Relative to the site directory, as RECORD writes it.
    pub path: String,
    /// `sha256=<urlsafe base64, no padding>`, as RECORD writes it.
    pub hash: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug)]
pub struct Site {
    pub root: PathBuf,
    pub env: Environment,
    pub dists: Vec<Dist>,
    owners: HashMap<String, Vec<usize>>,
}

/// How a file's bytes are identified: RECORD's own form of its sha256.
pub type HashFn<'a> = &'a dyn Fn(&Path) -> Option<String>;

impl Site {
    /// Reads every distribution in `root`; unreadable or malformed parts
    /// are skipped (an installer's records are outside input).
    pub fn read(root: &Path) -> Site {
        let mut dists = Vec::new();
        if let Ok(entries) = fs::read_dir(root) {
            let mut dirs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "dist-info"))
                .collect();
            dirs.sort();
            for dir in dirs {
                let metadata = fs::read_to_string(dir.join("METADATA")).unwrap_or_default();
                let record = fs::read_to_string(dir.join("RECORD")).unwrap_or_default();
                if let Some(d) = Dist::parse(&metadata, &record) {
                    dists.push(d);
                }
            }
        }
        Site::new(root.to_path_buf(), environment_of(root), dists)
    }

    pub fn new(root: PathBuf, env: Environment, dists: Vec<Dist>) -> Site {
        let mut owners: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in dists.iter().enumerate() {
            for f in &d.files {
                owners.entry(f.path.clone()).or_default().push(i);
            }
        }
        Site { root, env, dists, owners }
    }

    pub fn get(&self, name: &str) -> Option<&Dist> {
        let name = normalise(name);
        self.dists.iter().find(|d| normalise(&d.name) == name)
    }

    /// The distributions whose RECORD lists `rel`.
    pub fn owners(&self, rel: &str) -> impl Iterator<Item = &Dist> {
        self.owners.get(rel).into_iter().flatten().map(|&i| &self.dists[i])
    }

    /// `path` relative to this site, when it lies inside it.
    pub fn relative(&self, path: &Path) -> Option<String> {
        path.strip_prefix(&self.root).ok()?.to_str().map(str::to_owned)
    }

    /// Which of the distributions claiming `rel` put the bytes now on disk:
    /// by size where that tells them apart, else by sha256.
    pub fn owner_on_disk(&self, rel: &str, hash: HashFn) -> Option<&Dist> {
        let owners: Vec<&Dist> = self.owners(rel).collect();
        let entry = |d: &Dist| d.files.iter().find(|f| f.path == rel).cloned();
        let path = self.root.join(rel);
        let size = fs::metadata(&path).ok()?.len();
        let by_size: Vec<&Dist> =
            owners.iter().copied().filter(|d| entry(d).is_some_and(|e| e.size.is_none_or(|s| s == size))).collect();
        if by_size.len() == 1 && entry(by_size[0]).is_some_and(|e| e.size.is_some()) {
            return Some(by_size[0]);
        }
        let on_disk = hash(&path)?;
        by_size.into_iter().find(|d| entry(d).and_then(|e| e.hash).is_some_and(|h| h == on_disk))
    }

    /// The pairs of distributions that claim `rel` with different contents.
    pub fn clashing_owners(&self, rel: &str) -> Vec<[DistRef; 2]> {
        let owners: Vec<&Dist> = self.owners(rel).collect();
        let hash = |d: &Dist| d.files.iter().find(|f| f.path == rel).and_then(|f| f.hash.clone());
        let mut out = Vec::new();
        for (i, a) in owners.iter().enumerate() {
            for b in &owners[i + 1..] {
                if hash(a) != hash(b) {
                    out.push([a.reference(), b.reference()]);
                }
            }
        }
        out
    }

    /// Whether `d` is a framework: it declares CUDA wheels and is not one
    /// of NVIDIA's own packages (`nvidia-*` wheels, `cuda-*` bindings and
    /// meta-packages), which are parts of CUDA rather than users of it.
    pub fn is_framework(&self, d: &Dist) -> bool {
        let name = normalise(&d.name);
        !d.is_meta() && !name.starts_with("nvidia-") && !name.starts_with("cuda-") && !self.cuda_needs(d).is_empty()
    }

    /// Paths that two distributions both claim with different contents,
    /// grouped by the pair. Identical claims (the empty `nvidia/__init__.py`
    /// every NVIDIA wheel ships) are harmless and left out.
    pub fn clashes(&self, hash: HashFn) -> Vec<Clash> {
        let mut pairs: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
        for (path, owners) in &self.owners {
            for (i, &a) in owners.iter().enumerate() {
                for &b in &owners[i + 1..] {
                    let h =
                        |d: usize| self.dists[d].files.iter().find(|f| &f.path == path).and_then(|f| f.hash.clone());
                    if a != b && h(a) != h(b) {
                        pairs.entry((a.min(b), a.max(b))).or_default().push(path.clone());
                    }
                }
            }
        }
        pairs
            .into_iter()
            .map(|((a, b), mut paths)| {
                paths.sort();
                let libraries: Vec<String> = paths.iter().filter(|p| is_shared_object(p)).cloned().collect();
                // Which one's bytes are on disk, judged on the libraries
                // (what a job maps), else on every file.
                let judged = if libraries.is_empty() { &paths } else { &libraries };
                let on_disk = judged
                    .iter()
                    .map(|p| OnDisk { path: p.clone(), dist: self.owner_on_disk(p, hash).map(|d| d.name.clone()) })
                    .collect();
                Clash { dists: [self.dists[a].reference(), self.dists[b].reference()], paths, libraries, on_disk }
            })
            .collect()
    }

    /// The CUDA wheels `framework` declares, following meta-packages such as
    /// `cuda-toolkit[cudart,…]` with the
    /// extras asked of them. A framework's own extras are all taken: the
    /// installer does not record which were asked for, and an extra's CUDA
    /// wheels matter exactly when they are installed.
    pub fn cuda_needs(&self, framework: &Dist) -> Vec<Need> {
        let mut out: Vec<Need> = Vec::new();
        self.collect_needs(framework, &framework.extras, None, false, 0, &mut out);
        // Several extras of one meta-package name the same wheel.
        let mut seen = std::collections::HashSet::new();
        out.retain(|n| seen.insert(n.requirement.text.clone()));
        out
    }

    fn collect_needs(
        &self,
        dist: &Dist,
        extras: &[String],
        via: Option<&str>,
        optional: bool,
        depth: usize,
        out: &mut Vec<Need>,
    ) {
        for req in dist.requires.iter().filter(|r| r.applies(&self.env, extras)) {
            let target = self.get(&req.name);
            // Asked for only through one of the framework's own extras:
            // the installer does not record whether that extra was asked.
            let optional = optional || (depth == 0 && !req.applies(&self.env, &[]));
            if req.name.starts_with("nvidia-") {
                out.push(Need {
                    requirement: req.clone(),
                    via: via.map(str::to_owned),
                    installed: target.map(Dist::reference),
                    optional,
                });
            } else if let Some(t) = target.filter(|t| depth < 3 && t.is_meta()) {
                let via = via.map_or_else(|| req.text.clone(), str::to_owned);
                self.collect_needs(t, &req.extras, Some(&via), optional, depth + 1, out);
            }
        }
    }

    /// Does `need` concern the library file at `path` (SONAME `soname`)? It
    /// does when the required wheel lists that very file, or a file of that
    /// name (the same library found elsewhere, e.g. on LD_LIBRARY_PATH).
    pub fn concerns(&self, need: &Need, path: &Path, soname: &str) -> bool {
        let Some(target) = need.installed.as_ref().and_then(|r| self.get(&r.name)) else { return false };
        let rel = self.relative(path);
        target.files.iter().any(|f| Some(&f.path) == rel.as_ref() || base(&f.path) == soname)
    }

    /// The verdict on one loaded library against one need that concerns it.
    pub fn judge(&self, framework: &Dist, need: &Need, loaded: &Loaded, hash: HashFn) -> Expectation {
        let provider = self.relative(&loaded.path).and_then(|rel| self.owner_on_disk(&rel, hash)).map(Dist::reference);
        // The framework's own bundled copy (torch 1.13's
        // `libcudart-e409450e.so.11.0`) is what it was built with, whatever
        // wheel it also declares; its version is the framework's, not the
        // library's.
        let own = provider.as_ref().is_some_and(|p| p.name == framework.name);
        let required = need.installed.as_ref();
        let satisfied = own
            || match (required, &provider) {
                (Some(req), Some(p)) => req.name == p.name && need.requirement.specifiers.contains(&p.version),
                _ => false,
            };
        let version = match &provider {
            Some(p) if !own => Some(p.version.clone()),
            _ => loaded.version.clone(),
        };
        let via = need.via.as_ref().map(|v| format!(" (through {v})")).unwrap_or_default();
        let head = format!("{} {} requires {}{via}", framework.name, framework.version, need.requirement.text);
        let message = match &provider {
            Some(_) if own => {
                let file = self.relative(&loaded.path).unwrap_or_else(|| loaded.path.display().to_string());
                format!("{head}; {} loaded is {}'s own copy, {file}", loaded.soname, framework.name)
            }
            _ => {
                let from = provider.as_ref().map_or_else(|| loaded.path.display().to_string(), |p| p.name.clone());
                let version = version.as_deref().unwrap_or("of unknown release");
                format!("{head}; {} loaded is {version} from {from}", loaded.soname)
            }
        };
        Expectation {
            framework: framework.reference(),
            requirement: need.requirement.text.clone(),
            via: need.via.clone(),
            soname: loaded.soname.clone(),
            path: loaded.path.clone(),
            loaded_version: version,
            provider,
            satisfied,
            message,
        }
    }

    /// What can be told of `framework`'s CUDA wheels without a run: each one
    /// it declares is installed, of a release it accepts, and the libraries
    /// that wheel lists are its own bytes, not a clashing wheel's. One line
    /// per unmet requirement.
    pub fn unmet(&self, framework: &Dist, hash: HashFn) -> Vec<String> {
        let mut out = Vec::new();
        for need in self.cuda_needs(framework) {
            let via = need.via.as_ref().map(|v| format!(" (through {v})")).unwrap_or_default();
            let head = format!("{} {} requires {}{via}", framework.name, framework.version, need.requirement.text);
            let Some(installed) = need.installed.as_ref().and_then(|r| self.get(&r.name)) else {
                if !need.optional {
                    out.push(format!("{head}; it is not installed"));
                }
                continue;
            };
            if !need.requirement.specifiers.contains(&installed.version) {
                out.push(format!("{head}; {} {} is installed", installed.name, installed.version));
                continue;
            }
            let overwritten: Vec<(String, String)> = installed
                .files
                .iter()
                .filter(|f| is_shared_object(&f.path) && self.owners(&f.path).nth(1).is_some())
                .filter_map(|f| {
                    let whose = self.owner_on_disk(&f.path, hash);
                    (whose.map(|d| &d.name) != Some(&installed.name)).then(|| {
                        let whose =
                            whose.map_or_else(|| "neither wheel".to_owned(), |d| format!("{} {}", d.name, d.version));
                        (base(&f.path).to_owned(), whose)
                    })
                })
                .collect();
            if let Some((_, whose)) = overwritten.first() {
                let names: Vec<&str> = overwritten.iter().map(|(n, _)| n.as_str()).collect();
                let what = match names[..] {
                    [one] => format!("its {one} holds"),
                    _ => format!("{} of its libraries ({}) hold", names.len(), names.join(", ")),
                };
                out.push(format!("{head}; {what} the bytes of {whose}, installed over it"));
            }
        }
        out
    }

    /// Frameworks of this site built for different CUDA majors, as
    /// (framework, majors), when there are such.
    pub fn cuda_major_split(&self) -> Vec<(DistRef, Vec<u32>)> {
        let built: Vec<(DistRef, Vec<u32>)> =
            self.frameworks().map(|d| (d.reference(), self.cuda_majors(d))).filter(|(_, m)| !m.is_empty()).collect();
        let majors: std::collections::BTreeSet<u32> = built.iter().flat_map(|(_, m)| m.iter().copied()).collect();
        if majors.len() > 1 {
            built
        } else {
            Vec::new()
        }
    }

    /// The distributions that declare CUDA wheels (torch, tensorflow,
    /// jax-cuda plugins, cupy builds that do).
    pub fn frameworks(&self) -> impl Iterator<Item = &Dist> {
        self.dists.iter().filter(|d| self.is_framework(d))
    }

    /// The CUDA majors a framework was built for, from the wheels it
    /// declares: a `-cuNN` suffix, else the release of a wheel whose
    /// release carries the CUDA major (the runtime, nvrtc, cuBLAS, …).
    pub fn cuda_majors(&self, framework: &Dist) -> Vec<u32> {
        let mut majors: Vec<u32> = self
            .cuda_needs(framework)
            .iter()
            .filter_map(|n| {
                let name = &n.requirement.name;
                if let Some(m) = name.rsplit_once("-cu").and_then(|(_, m)| m.parse().ok()) {
                    return Some(m);
                }
                // These wheels' releases carry the CUDA major (cuFFT's do not).
                const SAME_MAJOR: [&str; 6] = [
                    "nvidia-cuda-runtime",
                    "nvidia-cuda-nvrtc",
                    "nvidia-nvjitlink",
                    "nvidia-cublas",
                    "nvidia-cuda-cupti",
                    "nvidia-nvtx",
                ];
                if SAME_MAJOR.contains(&name.as_str()) {
                    let v = n.installed.as_ref().map(|d| d.version.clone())?;
                    return v.split('.').next()?.parse().ok();
                }
                None
            })
            .collect();
        majors.sort_unstable();
        majors.dedup();
        majors
    }
}

/// python_version from `…/lib/pythonX.Y/site-packages`; the machine is
/// culaunch's own (a site is inspected on the machine that runs it).
fn environment_of(root: &Path) -> Environment {
    let python_version = root
        .components()
        .filter_map(|c| c.as_os_str().to_str()?.strip_prefix("python").map(str::to_owned))
        .find(|v| v.split('.').all(|p| p.parse::<u32>().is_ok()))
        .unwrap_or_else(|| "3".to_owned());
    Environment { python_version, platform_machine: std::env::consts::ARCH.to_owned() }
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_shared_object(path: &str) -> bool {
    let b = base(path);
    b.ends_with(".so") || b.contains(".so.")
}

impl Dist {
    /// A distribution from its METADATA and RECORD texts.
    pub fn parse(metadata: &str, record: &str) -> Option<Dist> {
        let mut name = None;
        let mut version = None;
        let mut requires = Vec::new();
        let mut extras = Vec::new();
        // The headers end at the first empty line; the description follows.
        for line in metadata.lines().take_while(|l| !l.is_empty()) {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key {
                "Name" => name = Some(value.to_owned()),
                "Version" => version = Some(value.to_owned()),
                "Requires-Dist" => requires.extend(Requirement::parse(value)),
                "Provides-Extra" => extras.push(normalise(value)),
                _ => {}
            }
        }
        let files = record
            .lines()
            .filter_map(|line| {
                // RECORD is CSV; wheel paths with commas are quoted.
                let (path, rest) = match line.strip_prefix('"') {
                    Some(q) => {
                        let (p, r) = q.split_once("\",")?;
                        (p.to_owned(), r)
                    }
                    None => {
                        let (p, r) = line.split_once(',')?;
                        (p.to_owned(), r)
                    }
                };
                let (hash, size) = rest.split_once(',').unwrap_or((rest, ""));
                Some(RecordEntry {
                    path,
                    hash: (!hash.is_empty()).then(|| hash.to_owned()),
                    size: size.trim().parse().ok(),
                })
            })
            .collect();
        Some(Dist { name: name?, version: version?, requires, extras, files })
    }

    /// A distribution that installs nothing but its own records, only to
    /// pull in others (`cuda-toolkit`): followed, never a framework.
    pub fn is_meta(&self) -> bool {
        self.files.iter().all(|f| f.path.split('/').next().is_some_and(|top| top.ends_with(".dist-info")))
    }

    pub fn reference(&self) -> DistRef {
        DistRef { name: self.name.clone(), version: self.version.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct DistRef {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Clash {
    pub dists: [DistRef; 2],
    /// Every path both claim with different contents.
    pub paths: Vec<String>,
    /// The shared objects among them.
    pub libraries: Vec<String>,
    /// For each judged file, the distribution whose bytes it holds (none:
    /// neither's, e.g. modified since).
    pub on_disk: Vec<OnDisk>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OnDisk {
    pub path: String,
    /// The distribution whose bytes the file holds; none: neither's.
    pub dist: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Need {
    pub requirement: Requirement,
    /// The meta-package it came through (`cuda-toolkit[…]==13.2.2`).
    pub via: Option<String>,
    pub installed: Option<DistRef>,
    /// Declared through one of the framework's extras only
    /// (`tensorflow[and-cuda]`): when it is not installed, the extra was
    /// likely not asked for, which is no fault.
    pub optional: bool,
}

/// A library a process loaded, as the verdict needs it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub soname: String,
    pub path: PathBuf,
    /// Its release, where something else (a toolkit, the library's own
    /// call) said so.
    pub version: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Expectation {
    pub framework: DistRef,
    pub requirement: String,
    pub via: Option<String>,
    pub soname: String,
    pub path: PathBuf,
    pub loaded_version: Option<String>,
    /// The wheel whose bytes were loaded (none: from outside this site).
    pub provider: Option<DistRef>,
    pub satisfied: bool,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TORCH: &str = "Metadata-Version: 2.1\nName: torch\nVersion: 2.15.0\n\
        Requires-Dist: nvidia-cudnn-cu13==9.26.0.51; platform_system == \"Linux\"\n\
        Requires-Dist: cuda-toolkit[cudart]==13.2.2; platform_system == \"Linux\"\n\
        Requires-Dist: optree>=0.13.0; extra == \"optree\"\nProvides-Extra: optree\n\ndescription";
    const TOOLKIT: &str = "Name: cuda-toolkit\nVersion: 13.2.2\nProvides-Extra: cudart\n\
        Requires-Dist: nvidia-cuda-runtime==13.2.86.*; extra == 'cudart'\n\
        Requires-Dist: nvidia-cublas==13.4.1.3.*; extra == 'cublas'\n";
    const TF: &str = "Name: tensorflow\nVersion: 2.21.0\nProvides-Extra: and-cuda\n\
        Requires-Dist: nvidia-cudnn-cu12<10.0,>=9.3.0.75; extra == \"and-cuda\"\n\
        Requires-Dist: nvidia-nccl-cu12==2.32.3; extra == \"and-cuda\"\n";

    fn dist(meta: &str, files: &[(&str, &str, u64)]) -> Dist {
        let record: String = files.iter().map(|(p, h, s)| format!("{p},sha256={h},{s}\n")).collect();
        Dist::parse(meta, &record).expect("parses")
    }

    fn site(dir: &Path) -> Site {
        let cudnn = "nvidia/cudnn/lib/libcudnn.so.9";
        Site::new(
            dir.to_path_buf(),
            Environment { python_version: "3.11".into(), platform_machine: "x86_64".into() },
            vec![
                dist(TORCH, &[("torch/lib/libtorch_cuda.so", "t", 1)]),
                dist(TOOLKIT, &[]),
                dist("Name: nvidia-cuda-runtime\nVersion: 13.2.86\n", &[("nvidia/cu13/lib/libcudart.so.13", "r", 3)]),
                dist(
                    "Name: nvidia-cudnn-cu13\nVersion: 9.26.0.51\n",
                    &[(cudnn, "old", 4), ("nvidia/__init__.py", "e", 0)],
                ),
                dist(
                    "Name: nvidia-cudnn-cu12\nVersion: 9.28.0.42\n",
                    &[(cudnn, "new", 5), ("nvidia/__init__.py", "e", 0)],
                ),
                dist(TF, &[("tensorflow/libtensorflow_framework.so.2", "f", 2)]),
            ],
        )
    }

    fn write(dir: &Path, rel: &str, len: usize) -> PathBuf {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        fs::write(&p, vec![0u8; len]).expect("write");
        p
    }

    #[test]
    fn a_file_two_wheels_claim_is_a_clash_and_the_bytes_on_disk_name_the_winner() {
        let dir = tempdir();
        write(&dir, "nvidia/cudnn/lib/libcudnn.so.9", 5);
        let s = site(&dir);
        let no_hash = |_: &Path| None;
        let clashes = s.clashes(&no_hash);
        assert_eq!(clashes.len(), 1, "{clashes:?}");
        let names: Vec<&str> = clashes[0].dists.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["nvidia-cudnn-cu13", "nvidia-cudnn-cu12"]);
        assert_eq!(clashes[0].paths, ["nvidia/cudnn/lib/libcudnn.so.9"]);
        assert_eq!(
            clashes[0].on_disk,
            [OnDisk { path: "nvidia/cudnn/lib/libcudnn.so.9".into(), dist: Some("nvidia-cudnn-cu12".into()) }]
        );
        // Without a run: torch's cuDNN wheel is installed, of the release it
        // pins, but its library holds the other wheel's bytes.
        let torch = s.get("torch").expect("torch");
        assert_eq!(
            s.unmet(torch, &no_hash),
            [
                "torch 2.15.0 requires nvidia-cudnn-cu13==9.26.0.51; its libcudnn.so.9 holds the bytes of nvidia-cudnn-cu12 9.28.0.42, installed over it"
            ]
        );
        let tf = s.get("tensorflow").expect("tf");
        assert_eq!(s.unmet(tf, &no_hash), Vec::<String>::new());
        let split: Vec<(String, Vec<u32>)> = s.cuda_major_split().into_iter().map(|(d, m)| (d.name, m)).collect();
        assert_eq!(split, [("torch".to_owned(), vec![13]), ("tensorflow".to_owned(), vec![12])]);
    }

    #[test]
    fn a_framework_given_another_wheels_cudnn_is_a_mismatch_its_own_runtime_is_satisfied() {
        let dir = tempdir();
        let cudnn = write(&dir, "nvidia/cudnn/lib/libcudnn.so.9", 5);
        let cudart = write(&dir, "nvidia/cu13/lib/libcudart.so.13", 3);
        let s = site(&dir);
        let torch = s.get("torch").expect("torch");
        let needs = s.cuda_needs(torch);
        assert_eq!(needs.len(), 2, "{needs:?}");
        let no_hash = |_: &Path| None;
        let verdict = |path: &Path, soname: &str| {
            let need = needs.iter().find(|n| s.concerns(n, path, soname)).expect("a need concerns it");
            s.judge(torch, need, &Loaded { soname: soname.into(), path: path.into(), version: None }, &no_hash)
        };
        let e = verdict(&cudnn, "libcudnn.so.9");
        assert!(!e.satisfied);
        assert_eq!(
            e.message,
            "torch 2.15.0 requires nvidia-cudnn-cu13==9.26.0.51; libcudnn.so.9 loaded is 9.28.0.42 from nvidia-cudnn-cu12"
        );
        let e = verdict(&cudart, "libcudart.so.13");
        assert!(e.satisfied, "{e:?}");
        assert_eq!(e.via.as_deref(), Some("cuda-toolkit[cudart]==13.2.2"));

        let tf = s.get("tensorflow").expect("tf");
        assert_eq!(s.cuda_majors(torch), [13]);
        assert_eq!(s.cuda_majors(tf), [12]);
        assert_eq!(s.frameworks().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["torch", "tensorflow"]);
    }

    /// torch 1.13's layout: the wheel bundles its own libcudart under a
    /// hashed name and also declares NVIDIA's runtime wheel.
    #[test]
    fn a_frameworks_own_bundled_copy_is_what_it_was_built_with_and_has_no_release_of_its_own() {
        let dir = tempdir();
        let own = write(&dir, "torch/lib/libcudart-e409450e.so.13", 7);
        let torch = dist(TORCH, &[("torch/lib/libcudart-e409450e.so.13", "x", 7)]);
        let s = Site::new(
            dir.clone(),
            Environment { python_version: "3.11".into(), platform_machine: "x86_64".into() },
            vec![
                torch,
                dist(TOOLKIT, &[]),
                dist("Name: nvidia-cuda-runtime\nVersion: 13.2.86\n", &[("nvidia/cu13/lib/libcudart.so.13", "r", 3)]),
            ],
        );
        let torch = s.get("torch").expect("torch");
        let needs = s.cuda_needs(torch);
        let need = needs.iter().find(|n| s.concerns(n, &own, "libcudart.so.13")).expect("the runtime need concerns it");
        let no_hash = |_: &Path| None;
        let e = s.judge(torch, need, &Loaded { soname: "libcudart.so.13".into(), path: own, version: None }, &no_hash);
        assert!(e.satisfied, "{e:?}");
        assert_eq!(e.loaded_version, None, "torch's version is not the library's");
        assert_eq!(
            e.message,
            "torch 2.15.0 requires nvidia-cuda-runtime==13.2.86.* (through cuda-toolkit[cudart]==13.2.2); libcudart.so.13 loaded is torch's own copy, torch/lib/libcudart-e409450e.so.13"
        );
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "culaunch-site-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }
}
