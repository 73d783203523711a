//! Test support: C fixtures built with `cc` at test time, runs with and
//! without culaunch, and the ground truth read from `/proc/PID/maps`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub const CULAUNCH: &str = env!("CARGO_BIN_EXE_culaunch");

/// Where every fixture lives; see `build` for the layout.
pub struct Fixtures {
    pub root: PathBuf,
    pub loader: PathBuf,
    pub needs_cudart: PathBuf,
    pub static_prog: Option<PathBuf>,
    pub naive_hook: PathBuf,
    /// A pip-wheel layout: `<site>/nvidia/cuda_runtime/lib/…` with RECORDs.
    pub site: PathBuf,
    pub wheel_cudart12: PathBuf,
    pub wheel_cudart11: PathBuf,
    pub wheel_cudart13: PathBuf,
    /// PyTorch-like: DT_RPATH `$ORIGIN/../../nvidia/cuda_runtime/lib`, DT_NEEDED libcudart.so.12.
    pub torchish: PathBuf,
    /// cuDNN-9-like dispatcher (RUNPATH `$ORIGIN`) that dlopens `libcudnn_ops.so.9`.
    pub cudnn: PathBuf,
    pub cudnn_ops: PathBuf,
    /// A toolkit root with version.json and full-version file names.
    pub toolkit_cudart: PathBuf,
    /// A conda env with conda-meta.
    pub conda_cublas: PathBuf,
    /// `libnvrtc.so.12` with DT_RPATH / DT_RUNPATH `$ORIGIN/private`, which
    /// dlopens `libnvrtc-builtins.so.12` by bare name.
    pub nvrtc_rpath: PathBuf,
    pub nvrtc_runpath: PathBuf,
    /// A `libnvrtc-builtins.so.12` meant to be found on LD_LIBRARY_PATH.
    pub decoy_dir: PathBuf,
    /// Another build of libcudart.so.12 (`which=pinned-12`, version 12990),
    /// in a directory of its own: what the pin tests pin to.
    pub pinned_cudart: PathBuf,
    /// Two builds of the driver, `libcuda.so.1` (`which=driver-a`, `-b`),
    /// in directories of their own: CUDA libraries `--strict` allows.
    pub drivers: [PathBuf; 2],
    /// `tests/fixtures/thread_loads.c`: loads from threads in corners of
    /// the thread API.
    pub thread_loads: PathBuf,
    /// A user's own rtld-audit module (`tests/fixtures/audit_probe.c`).
    pub audit_probe: PathBuf,
}

pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| build(&Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fixtures-{}", std::process::id()))))
}

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn cc(args: &[&OsStr]) {
    let out = Command::new("cc").args(args).output().expect("cc runs");
    assert!(out.status.success(), "cc {:?} failed:\n{}", args, String::from_utf8_lossy(&out.stderr));
}

/// A shared library from `source`, with `soname`, built as `build`.
fn lib(out: &Path, source: &str, soname: &str, build: &str, extra: &[&str]) {
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let define = format!("-DFIXTURE_BUILD=\"{build}\"");
    let soname_flag = format!("-Wl,-soname,{soname}");
    let mut args: Vec<&OsStr> = vec!["-shared".as_ref(), "-fPIC".as_ref(), "-o".as_ref(), out.as_os_str()];
    args.push(src(source).into_os_string().leak());
    args.push(define.as_ref());
    args.push(soname_flag.as_ref());
    args.extend(extra.iter().map(OsStr::new));
    cc(&args);
}

fn build(root: &Path) -> Fixtures {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("bin")).unwrap();
    let p = |s: &str| root.join(s);

    // A pip wheel layout, as nvidia-cuda-runtime-cu11/cu12 and a
    // torch-like framework install it.
    let site = p("venv/lib/python3.11/site-packages");
    let rt = site.join("nvidia/cuda_runtime/lib");
    lib(&rt.join("libcudart.so.12"), "fakelib.c", "libcudart.so.12", "wheel-12", &["-DFIXTURE_VERSION=12090"]);
    lib(&rt.join("libcudart.so.11.0"), "fakelib.c", "libcudart.so.11.0", "wheel-11", &["-DFIXTURE_VERSION=11080"]);
    let rt13 = site.join("nvidia/cu13/lib");
    lib(&rt13.join("libcudart.so.13"), "fakelib.c", "libcudart.so.13", "wheel-13", &["-DFIXTURE_VERSION=13000"]);
    for (dist, files) in [
        ("nvidia_cuda_runtime_cu12-12.9.79", vec!["nvidia/cuda_runtime/lib/libcudart.so.12"]),
        ("nvidia_cuda_runtime_cu11-11.8.89", vec!["nvidia/cuda_runtime/lib/libcudart.so.11.0"]),
        ("nvidia_cuda_runtime-13.0.96", vec!["nvidia/cu13/lib/libcudart.so.13"]),
    ] {
        let info = site.join(format!("{dist}.dist-info"));
        fs::create_dir_all(&info).unwrap();
        let record: String = files.iter().map(|f| format!("{f},sha256=unchecked,1\n")).collect();
        fs::write(info.join("RECORD"), record).unwrap();
    }
    let torchish = site.join("torchish/lib/libtorch_cuda.so");
    let rt_str = rt.to_str().unwrap().to_owned();
    lib(
        &torchish,
        "needs.c",
        "libtorch_cuda.so",
        "torchish",
        &["-L", &rt_str, "-l:libcudart.so.12", "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../../nvidia/cuda_runtime/lib"],
    );
    let cudnn_dir = site.join("nvidia/cudnn/lib");
    let cudnn = cudnn_dir.join("libcudnn.so.9");
    lib(&cudnn, "opener.c", "libcudnn.so.9", "cudnn-9", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    let cudnn_ops = cudnn_dir.join("libcudnn_ops.so.9");
    lib(&cudnn_ops, "fakelib.c", "libcudnn_ops.so.9", "cudnn-ops-9", &[]);

    // A CUDA toolkit: real file named by full version, SONAME and dev symlinks.
    let tk = p("cuda-12.4");
    let tk_lib = tk.join("targets/x86_64-linux/lib");
    lib(
        &tk_lib.join("libcudart.so.12.4.127"),
        "fakelib.c",
        "libcudart.so.12",
        "toolkit-12.4",
        &["-DFIXTURE_VERSION=12040"],
    );
    std::os::unix::fs::symlink("libcudart.so.12.4.127", tk_lib.join("libcudart.so.12")).unwrap();
    std::os::unix::fs::symlink("libcudart.so.12", tk_lib.join("libcudart.so")).unwrap();
    std::os::unix::fs::symlink("targets/x86_64-linux/lib", tk.join("lib64")).unwrap();
    fs::write(tk.join("version.json"), r#"{"cuda": {"name": "CUDA SDK", "version": "12.4.1"}}"#).unwrap();

    // A conda env.
    let conda = p("conda");
    lib(&conda.join("lib/libcublas.so.12.4.5.8"), "fakelib.c", "libcublas.so.12", "conda-cublas", &[]);
    std::os::unix::fs::symlink("libcublas.so.12.4.5.8", conda.join("lib/libcublas.so.12")).unwrap();
    fs::create_dir_all(conda.join("conda-meta")).unwrap();
    fs::write(
        conda.join("conda-meta/libcublas-12.4.5.8-0.json"),
        r#"{"name": "libcublas", "version": "12.4.5.8", "files": ["lib/libcublas.so.12", "lib/libcublas.so.12.4.5.8"]}"#,
    )
    .unwrap();

    // The transparency fixture: a library that dlopens its private
    // sub-library by bare name, and a decoy of it for LD_LIBRARY_PATH.
    for (dir, tags) in [("nvrtc-rpath", "--disable-new-dtags"), ("nvrtc-runpath", "--enable-new-dtags")] {
        let flag = format!("-Wl,{tags},-rpath,$ORIGIN/private");
        lib(&p(dir).join("libnvrtc.so.12"), "opener.c", "libnvrtc.so.12", dir, &[&flag]);
        lib(&p(dir).join("private/libnvrtc-builtins.so.12"), "fakelib.c", "libnvrtc-builtins.so.12", "private", &[]);
    }
    lib(&p("decoy/libnvrtc-builtins.so.12"), "fakelib.c", "libnvrtc-builtins.so.12", "decoy", &[]);
    lib(&p("naive/libnaivehook.so"), "naive_hook.c", "libnaivehook.so", "naive", &["-ldl"]);
    lib(&p("pinned/libcudart.so.12"), "fakelib.c", "libcudart.so.12", "pinned-12", &["-DFIXTURE_VERSION=12990"]);

    for d in ["driver-a", "driver-b"] {
        lib(&p(d).join("libcuda.so.1"), "fakelib.c", "libcuda.so.1", d, &[]);
    }

    let loader = p("bin/loader");
    cc(&[src("loader.c").as_os_str(), "-o".as_ref(), loader.as_os_str(), "-ldl".as_ref()]);
    let thread_loads = p("bin/thread_loads");
    let args = [
        src("thread_loads.c").into_os_string(),
        "-o".into(),
        thread_loads.clone().into(),
        "-pthread".into(),
        "-ldl".into(),
    ];
    cc(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let audit_probe = p("audit-probe/libauditprobe.so");
    lib(&audit_probe, "audit_probe.c", "libauditprobe.so", "audit-probe", &[]);
    let needs_cudart = p("bin/needs_cudart");
    let rpath = format!("-Wl,-rpath,{rt_str}");
    cc(&[
        src("needs.c").as_os_str(),
        "-DFIXTURE_MAIN".as_ref(),
        "-o".as_ref(),
        needs_cudart.as_os_str(),
        "-L".as_ref(),
        rt_str.as_ref(),
        "-l:libcudart.so.12".as_ref(),
        rpath.as_ref(),
    ]);
    let static_prog = p("bin/static_prog");
    // A static program needs libc.a; where the toolchain lacks it the
    // static-program test says so and fails.
    let static_ok = Command::new("cc")
        .args([src("needs.c"), src("fakelib.c")])
        .args(["-DFIXTURE_MAIN", "-static", "-o"])
        .arg(&static_prog)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);

    Fixtures {
        root: root.to_path_buf(),
        loader,
        needs_cudart,
        static_prog: static_ok.then_some(static_prog),
        naive_hook: p("naive/libnaivehook.so"),
        wheel_cudart12: rt.join("libcudart.so.12"),
        wheel_cudart11: rt.join("libcudart.so.11.0"),
        wheel_cudart13: rt13.join("libcudart.so.13"),
        site,
        torchish,
        cudnn,
        cudnn_ops,
        toolkit_cudart: tk_lib.join("libcudart.so.12.4.127"),
        conda_cublas: conda.join("lib/libcublas.so.12.4.5.8"),
        nvrtc_rpath: p("nvrtc-rpath/libnvrtc.so.12"),
        nvrtc_runpath: p("nvrtc-runpath/libnvrtc.so.12"),
        decoy_dir: p("decoy"),
        pinned_cudart: p("pinned/libcudart.so.12"),
        drivers: [p("driver-a/libcuda.so.1"), p("driver-b/libcuda.so.1")],
        thread_loads,
        audit_probe,
    }
}

/// The outcome of one run, and what the loader says it mapped.
pub struct Run {
    pub out: Output,
    /// Every trace event (empty for a plain run).
    pub events: Vec<Value>,
    /// pid → canonical paths of the shared objects in its /proc/PID/maps.
    pub maps: BTreeMap<i64, BTreeSet<String>>,
    pub summary: Option<Value>,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    /// Paths the trace reports as loaded in `pid`'s current image: after its
    /// last `process_start` (an exec starts the same pid afresh).
    pub fn loads(&self, pid: i64) -> BTreeSet<String> {
        let of_pid: Vec<&Value> = self.events.iter().filter(|e| e["pid"] == pid).collect();
        let start = of_pid.iter().rposition(|e| e["event"] == "process_start").unwrap_or(0);
        of_pid[start..].iter().filter(|e| e["event"] == "load").map(|e| s(&e["path"])).collect()
    }

    /// CUDA-family paths the loader had mapped in `pid`, by file name.
    pub fn mapped_cuda(&self, pid: i64) -> BTreeSet<String> {
        self.maps.get(&pid).into_iter().flatten().filter(|p| looks_cuda(p)).cloned().collect()
    }

    pub fn load_event(&self, path: &Path) -> &Value {
        let want = canonical(path);
        self.events_of("load")
            .into_iter()
            .find(|e| e["path"] == want.as_str())
            .unwrap_or_else(|| panic!("no load event for {want}; events:\n{:#?}", self.events))
    }
}

/// The test's own idea of "CUDA library", independent of culaunch's catalogue.
pub fn looks_cuda(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    ["libcudart.", "libcublas", "libcudnn", "libnvrtc", "libnccl", "libcuda."].iter().any(|p| name.starts_with(p))
}

pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

pub fn canonical(p: &Path) -> String {
    fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).to_string_lossy().into_owned()
}

fn scratch(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = fixtures().root.join(format!("runs/{tag}-{n}"));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("maps")).unwrap();
    d
}

/// Runs `argv` under culaunch (with `culaunch_args` before `--`).
pub fn traced(culaunch_args: &[&str], argv: &[&OsStr], env: &[(&str, &OsStr)]) -> Run {
    let dir = scratch("traced");
    let trace = dir.join("trace.jsonl");
    let summary = dir.join("summary.json");
    let mut cmd = Command::new(CULAUNCH);
    cmd.arg("-t").arg(&trace).arg("--summary-json").arg(&summary).args(culaunch_args).arg("--").args(argv);
    let out = run_with(&mut cmd, &dir, env);
    let events = fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid trace line {l:?}: {e}")))
        .collect();
    let summary = fs::read(&summary).ok().map(|b| serde_json::from_slice(&b).unwrap());
    Run { out, events, maps: read_maps(&dir.join("maps")), summary }
}

/// Runs `argv` as is, for comparison.
pub fn plain(argv: &[&OsStr], env: &[(&str, &OsStr)]) -> Run {
    let dir = scratch("plain");
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let out = run_with(&mut cmd, &dir, env);
    Run { out, events: Vec::new(), maps: read_maps(&dir.join("maps")), summary: None }
}

fn run_with(cmd: &mut Command, dir: &Path, env: &[(&str, &OsStr)]) -> Output {
    cmd.env("FIXTURE_MAPS_DIR", dir.join("maps")).env_remove("LD_LIBRARY_PATH").env_remove("CULAUNCH_TRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("command runs")
}

fn read_maps(dir: &Path) -> BTreeMap<i64, BTreeSet<String>> {
    let mut all = BTreeMap::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_suffix(".maps").and_then(|p| p.parse().ok()) else {
            continue;
        };
        all.insert(pid, parse_maps(&fs::read_to_string(entry.path()).unwrap()));
    }
    all
}

/// File-backed shared objects in a /proc/PID/maps text.
pub fn parse_maps(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/') && p.contains(".so"))
        .map(|p| fs::canonicalize(p).map(|c| c.to_string_lossy().into_owned()).unwrap_or_else(|_| p.to_owned()))
        .collect()
}

/// The loader fixture's argv for `actions`.
pub fn loader(actions: &[String]) -> Vec<&OsStr> {
    std::iter::once(fixtures().loader.as_os_str()).chain(actions.iter().map(OsStr::new)).collect()
}

/// A path as a string, for building fixture arguments.
pub fn p(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

pub fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

/// The real `python3` binary (not a shim script), or None.
pub fn python() -> Option<PathBuf> {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().ok()?;
    let p = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// A directory of fixtures for one rule.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(rule: &str) -> Dir {
        let d = fixtures().root.join("deps").join(rule);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Builds `rel` (a shared library with SONAME its file name, or with
    /// `exe: true` a program) that needs each of `needs` (paths of
    /// libraries built before), with extra linker flags.
    pub fn build(&self, rel: &str, exe: bool, needs: &[&str], flags: &[&str]) -> PathBuf {
        self.build_from("fakelib.c", rel, exe, needs, flags)
    }

    /// The same from another fixture source.
    pub fn build_from(&self, source: &str, rel: &str, exe: bool, needs: &[&str], flags: &[&str]) -> PathBuf {
        let out = self.path(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let mut cmd = Command::new("cc");
        if exe {
            cmd.arg(src.join("needs.c")).arg("-DFIXTURE_MAIN").arg(src.join("fakelib.c"));
        } else {
            let soname = out.file_name().unwrap().to_str().unwrap();
            cmd.args(["-shared", "-fPIC"]).arg(src.join(source)).arg(format!("-Wl,-soname,{soname}"));
        }
        cmd.arg("-o").arg(&out).arg("-Wl,--no-as-needed");
        for n in needs {
            let p = self.path(n);
            cmd.arg(format!("-L{}", p.parent().unwrap().display()));
            cmd.arg(format!("-l:{}", p.file_name().unwrap().to_str().unwrap()));
        }
        cmd.args(flags);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    }
}
