//! Failed loads explained: for each failure kind a C fixture, the program
//! run bare for glibc's own words (dlerror's text), the diagnosis culaunch
//! gives, and the decisive oracle: the fix it suggests, applied, makes the
//! same program load (dlerror NULL, the good file in /proc/self/maps).
//!
//! The trace lines are the ones a traced run writes for such a failure
//! (`load` with `ok:false`, the file mapped then undone, `error` in glibc's
//! words): built from the bare run's dlerror text, since recording them is
//! the audit module's part and is tested with the module (tests/failed.rs).
//! Every shape is read: with the fields (`reason`, `symbol`, `version`,
//! `required_by`) and without them, as older traces are; the undone
//! objects recorded as mapped before the failure, or not at all. One test
//! runs the job traced and explains its own trace (completed with the
//! failure line where the module does not record it yet).

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{parse_maps, CULAUNCH};
use serde_json::{json, Value};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("explain-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        // Canonical, so that the loader's names and the trace's agree.
        Dir(fs::canonicalize(&d).unwrap())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn cc<S: AsRef<OsStr>>(args: &[S]) -> bool {
    let out = Command::new("cc").args(args).output().unwrap();
    if !out.status.success() {
        eprintln!(
            "cc {:?}: {}",
            args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// A shared library `out` (SONAME its file name) from `source`, linked
/// against each of `needs` by file name, with `flags`.
fn lib(out: &Path, source: &str, needs: &[&Path], flags: &[&str]) {
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let soname = out.file_name().unwrap().to_str().unwrap();
    let mut args: Vec<OsString> = vec!["-shared".into(), "-fPIC".into(), "-o".into(), out.into(), src(source).into()];
    args.push(format!("-Wl,-soname,{soname}").into());
    for n in needs {
        args.push(format!("-L{}", n.parent().unwrap().display()).into());
        args.push(format!("-l:{}", n.file_name().unwrap().to_str().unwrap()).into());
    }
    args.extend(flags.iter().map(OsString::from));
    assert!(cc(&args), "building {}", out.display());
}

/// The loader fixture: performs `dlopen:NAME` actions, prints dlerror's
/// text, writes its /proc/self/maps to $FIXTURE_MAPS_DIR.
fn loader(d: &Dir) -> PathBuf {
    let out = d.path("bin/loader");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    assert!(cc(&[OsString::from("-o"), out.clone().into(), src("loader.c").into(), "-ldl".into()]));
    out
}

/// One run of the loader fixture: what each action printed and the files
/// the process had mapped.
struct Ran {
    lines: Vec<String>,
    maps: std::collections::BTreeSet<String>,
}

impl Ran {
    /// dlerror's text for `action`, or `None` when it loaded.
    fn error(&self, action: &str) -> Option<String> {
        let line = self.lines.iter().find(|l| l.starts_with(&format!("{action}: "))).unwrap_or_else(|| {
            panic!("no line for {action} in {:?}", self.lines);
        });
        line.strip_prefix(&format!("{action}: fail: ")).map(str::to_owned)
    }
}

/// Runs `prog` (under `culaunch_args` when given) with LD_LIBRARY_PATH
/// `llp` (unset when `None`) and `env`.
fn run(prog: &[&OsStr], llp: Option<&OsStr>, env: &[(&str, &OsStr)], culaunch_args: Option<&[&str]>) -> Ran {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let maps = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("explain-maps-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&maps);
    fs::create_dir_all(&maps).unwrap();
    let mut cmd = match culaunch_args {
        Some(args) => {
            let mut c = Command::new(CULAUNCH);
            c.args(args).arg("-q").arg("--").args(prog);
            c
        }
        None => {
            let mut c = Command::new(prog[0]);
            c.args(&prog[1..]);
            c
        }
    };
    cmd.env_remove("LD_LIBRARY_PATH").env_remove("CULAUNCH_TRACE").env("FIXTURE_MAPS_DIR", &maps);
    if let Some(l) = llp {
        cmd.env("LD_LIBRARY_PATH", l);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let mut all = std::collections::BTreeSet::new();
    for e in fs::read_dir(&maps).unwrap().flatten() {
        all.extend(parse_maps(&fs::read_to_string(e.path()).unwrap()));
    }
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
    Ran { lines, maps: all }
}

fn host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned()
}

/// `reason`, `symbol`, `version`, `required_by` of a failed load.
type Fields<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// A failed load as the trace records it.
struct Failed<'a> {
    request: &'a str,
    /// The file mapped then undone (canonical), if any.
    path: Option<&'a Path>,
    error: Option<&'a str>,
    /// `reason`, `symbol`, `version`, `required_by`; `None`: an older trace
    /// without them.
    fields: Option<Fields<'a>>,
}

/// The trace of one process of `prog` with LD_LIBRARY_PATH `llp` whose
/// loads are `ok` (earlier successful loads: path, search step; from the
/// failed request's own file on, the objects its batch mapped) and then
/// `failed`.
fn trace(d: &Dir, name: &str, prog: &Path, env: &[(&str, &str)], ok: &[(&Path, &str)], failed: &Failed<'_>) -> PathBuf {
    let base = || json!({"v": 1, "ts": "2026-12-03T00:00:00.000000Z", "pid": 4242, "ppid": 1, "host": host()});
    let with = |mut v: Value, more: Value| {
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        v
    };
    let env: serde_json::Map<String, Value> = env.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let mut lines = vec![with(base(), json!({"event": "process_start", "exe": prog, "argv": [prog], "env": env}))];
    // Before the failed request's own file: the program's dlopens by path;
    // from it on: the failed dlopen's batch, its DT_NEEDED by file name.
    let mut in_batch = false;
    for (path, search) in ok {
        let name = path.file_name().unwrap().to_str().unwrap();
        let own = Some(*path) == failed.path;
        in_batch |= own;
        let (how, request, caller) = match (own, in_batch) {
            (false, true) => ("needed", json!(name), json!(failed.path)),
            _ => ("dlopen", json!(path), json!(prog)),
        };
        lines.push(with(
            base(),
            json!({"event": "load", "how": how, "request": request, "caller": caller, "path": path,
                   "soname": name, "cuda": true, "family": "cudnn", "pinned": false, "redirected_from": null,
                   "ok": true, "error": null, "dur_us": 5, "search": search, "lmid": 0}),
        ));
    }
    let mut l = json!({"event": "load", "how": "dlopen", "request": failed.request, "caller": prog,
                       "path": failed.path, "soname": null, "cuda": true, "family": "cudnn", "pinned": false,
                       "redirected_from": null, "ok": false, "error": failed.error, "dur_us": 5,
                       "search": if failed.path.is_some() { json!("direct") } else { json!(null) }, "lmid": 0});
    if let Some((reason, symbol, version, required_by)) = failed.fields {
        l = with(l, json!({"reason": reason, "symbol": symbol, "version": version, "required_by": required_by}));
    }
    lines.push(with(base(), l));
    lines.push(with(base(), json!({"event": "process_exit", "status": 0})));
    let file = d.path(&format!("{name}.jsonl"));
    let text: String = lines.iter().map(|v| v.to_string() + "\n").collect();
    fs::write(&file, text).unwrap();
    file
}

/// `culaunch report`'s one `load_failed` diagnosis, as JSON and as text.
fn diagnosis(trace: &Path) -> (Value, String) {
    let out = Command::new(CULAUNCH).args(["report", "--json"]).arg(trace).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<&Value> = j["diagnoses"].as_array().unwrap().iter().filter(|d| d["kind"] == "load_failed").collect();
    assert_eq!(found.len(), 1, "{:#}", j["diagnoses"]);
    let text = Command::new(CULAUNCH).arg("report").arg(trace).env("COLUMNS", "1000").output().unwrap();
    (found[0].clone(), String::from_utf8_lossy(&text.stdout).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// LD_LIBRARY_PATH without `entry`.
fn without(llp: &str, entry: &str) -> OsString {
    llp.split(':').filter(|e| *e != entry).collect::<Vec<_>>().join(":").into()
}

/// The cuDNN 8 layout: a pip wheel's `nvidia/cudnn/lib` holding
/// libcudnn_cnn_infer.so.8 (RUNPATH `$ORIGIN`, linked `-z now` against
/// libcudnn_ops_infer.so.8's version node) beside the new ops library, and
/// an older ops library (the node, not `_ZN11nvrtcHelper4loadEb`) in a
/// system toolkit.
struct Cudnn8 {
    d: Dir,
    wheel_ops: PathBuf,
    old_dir: PathBuf,
    old_ops: PathBuf,
    cnn: PathBuf,
    loader: PathBuf,
}

fn cudnn8(name: &str) -> Cudnn8 {
    let d = Dir::new(name);
    let wheel = d.path("venv/lib/python3.11/site-packages/nvidia/cudnn/lib");
    let old_dir = d.path("usr/local/cuda-11.2/lib64");
    let map = format!("-Wl,--version-script={}", src("cudnn-ops.map").display());
    let wheel_ops = wheel.join("libcudnn_ops_infer.so.8");
    lib(&wheel_ops, "cudnn-ops.c", &[], &["-DFIXTURE_NEW", &map]);
    let old_ops = old_dir.join("libcudnn_ops_infer.so.8");
    lib(&old_ops, "cudnn-ops.c", &[], &[&map]);
    let cnn = wheel.join("libcudnn_cnn_infer.so.8");
    lib(&cnn, "cudnn-cnn.c", &[&wheel_ops], &["-Wl,-z,now", "-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    let loader = loader(&d);
    Cudnn8 { d, wheel_ops, old_dir, old_ops, cnn, loader }
}

#[test]
fn cudnn8_shadowed_by_ld_library_path_names_both_files_and_dropping_the_entry_loads_it() {
    let c = cudnn8("cudnn8-llp");
    let llp = format!("{}:{}", c.d.path("empty").display(), c.old_dir.display());
    let action = format!("dlopen:{}", c.cnn.display());
    let prog = [c.loader.as_os_str(), OsStr::new(&action)];
    // Ground truth: the program run bare.
    let bare = run(&prog, Some(OsStr::new(&llp)), &[], None);
    let error = bare.error(&action).expect("the bare run fails");
    assert_eq!(
        error,
        format!("{}: undefined symbol: _ZN11nvrtcHelper4loadEb, version libcudnn_ops_infer.so.8", c.cnn.display())
    );
    let fields =
        Some(("undefined_symbol", Some("_ZN11nvrtcHelper4loadEb"), Some("libcudnn_ops_infer.so.8"), Some(s(&c.cnn))));
    // The objects the failure undid, recorded as mapped before it (as the
    // audit module writes them) or not at all.
    let mapped: &[(&Path, &str)] = &[(&c.cnn, "direct"), (&c.old_ops, "ld_library_path")];
    // All fields; glibc's words only (an older trace); the fields only;
    // only that it failed (the program never asked dlerror), the cause
    // then worked out from the files.
    let unknown = Some(("failed", None, None, None));
    for (words, fields, ok) in [
        (Some(error.as_str()), fields, mapped),
        (Some(error.as_str()), fields, &[][..]),
        (Some(&error), None, &[][..]),
        (None, fields, &[][..]),
        (None, unknown, mapped),
    ] {
        let failed = Failed { request: s(&c.cnn), path: Some(&c.cnn), error: words, fields };
        let t = trace(&c.d, "cudnn8", &c.loader, &[("LD_LIBRARY_PATH", &llp)], ok, &failed);
        let (d, text) = diagnosis(&t);
        assert_eq!(d["severity"], "error");
        assert_eq!(d["files"], json!([s(&c.old_ops), s(&c.wheel_ops)]), "{d:#}");
        assert_eq!(d["requester"], s(&c.cnn));
        let f = &d["failure"];
        assert_eq!(f["error"], error.as_str(), "glibc's words, read or rebuilt: {f:#}");
        assert_eq!(f["reconstructed"], words.is_none());
        let e = &f["explanation"];
        assert_eq!(e["provider_search"], "ld_library_path", "{e:#}");
        assert_eq!(e["fix"]["kind"], "remove_from_ld_library_path", "{e:#}");
        let entry = e["fix"]["entry"].as_str().unwrap();
        assert_eq!(entry, s(&c.old_dir));
        for needle in [s(&c.old_ops), s(&c.wheel_ops), &format!("remove {entry} from LD_LIBRARY_PATH")] {
            assert!(d["message"].as_str().unwrap().contains(needle), "{needle} in {d:#}");
            assert!(text.contains(needle), "{needle} in the text report:\n{text}");
        }
        // The oracle: the fix applied, the same program loads the good file.
        let fixed = run(&prog, Some(&without(&llp, entry)), &[], None);
        assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
        assert!(fixed.maps.contains(s(&c.wheel_ops)) && !fixed.maps.contains(s(&c.old_ops)), "{:?}", fixed.maps);
    }
}

#[test]
fn cudnn8_with_the_old_library_loaded_first_is_fixed_by_the_suggested_pin() {
    // The older ops library is already mapped (the program dlopened it by
    // path) when cnn_infer asks for it: no LD_LIBRARY_PATH entry to drop.
    let c = cudnn8("cudnn8-first");
    let first = format!("dlopen:{}", c.old_ops.display());
    let action = format!("dlopen:{}", c.cnn.display());
    let prog = [c.loader.as_os_str(), OsStr::new(&first), OsStr::new(&action)];
    let bare = run(&prog, None, &[], None);
    assert_eq!(bare.error(&first), None);
    let error = bare.error(&action).expect("the bare run fails");
    let failed = Failed { request: s(&c.cnn), path: Some(&c.cnn), error: Some(&error), fields: None };
    let t = trace(&c.d, "first", &c.loader, &[], &[(&c.old_ops, "direct")], &failed);
    let (d, _) = diagnosis(&t);
    assert_eq!(d["files"], json!([s(&c.old_ops), s(&c.wheel_ops)]), "{d:#}");
    let fix = &d["failure"]["explanation"]["fix"];
    assert_eq!(fix["kind"], "pin", "{d:#}");
    assert_eq!(fix["soname"], "libcudnn_ops_infer.so.8");
    assert_eq!(fix["path"], s(&c.wheel_ops));
    let pin = format!("libcudnn_ops_infer.so.8={}", fix["path"].as_str().unwrap());
    assert!(d["message"].as_str().unwrap().contains(&format!("--pin {pin}")), "{d:#}");
    let fixed = run(&prog, None, &[], Some(&["--pin", &pin]));
    assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
    assert!(fixed.maps.contains(s(&c.wheel_ops)) && !fixed.maps.contains(s(&c.old_ops)), "{:?}", fixed.maps);
}

#[test]
fn every_spelling_of_the_entry_to_drop_is_named() {
    // The old toolkit twice on LD_LIBRARY_PATH, once through a link: the
    // fix must name both, or applied it changes nothing.
    let c = cudnn8("cudnn8-two-spellings");
    let link = c.d.path("oldlink");
    std::os::unix::fs::symlink(&c.old_dir, &link).unwrap();
    let llp = format!("{}:{}", c.old_dir.display(), link.display());
    let action = format!("dlopen:{}", c.cnn.display());
    let prog = [c.loader.as_os_str(), OsStr::new(&action)];
    let trace = c.d.path("two.jsonl");
    let traced = run(&prog, Some(OsStr::new(&llp)), &[], Some(&["-t", s(&trace)]));
    assert!(traced.error(&action).is_some());
    let (d, _) = diagnosis(&trace);
    let fix = &d["failure"]["explanation"]["fix"];
    assert_eq!(fix["kind"], "remove_from_ld_library_path", "{d:#}");
    let named: Vec<&str> = std::iter::once(&fix["entry"])
        .chain(fix["also"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(named, [s(&c.old_dir), s(&link)], "{fix:#}");
    // The oracle: without one of them the load still fails; without both
    // it loads the good file.
    let one = run(&prog, Some(&without(&llp, s(&c.old_dir))), &[], None);
    assert!(one.error(&action).is_some(), "{:?}", one.lines);
    let both = run(&prog, Some(OsStr::new("")), &[], None);
    assert_eq!(both.error(&action), None, "{:?}", both.lines);
    assert!(both.maps.contains(s(&c.wheel_ops)), "{:?}", both.maps);
}

#[test]
fn an_entry_the_program_itself_needs_is_never_the_fix_to_drop() {
    // The program's own DT_NEEDED is the older ops library, found only on
    // LD_LIBRARY_PATH: it is mapped first, and cnn_infer gets that copy.
    // Dropping the entry would have cnn_infer's RUNPATH find the good one,
    // and the program not start at all.
    let c = cudnn8("cudnn8-needed");
    let prog_path = loader_needing(&c, "bin/needs-old", "libcudnn_ops_infer.so.8");
    pin_not_drop(&c, &prog_path, &[]);
}

/// The loader fixture at `rel`, with a DT_NEEDED on `name` in the old
/// toolkit.
fn loader_needing(c: &Cudnn8, rel: &str, name: &str) -> PathBuf {
    let prog = c.d.path(rel);
    let dir = format!("-L{}", c.old_dir.display());
    let needed = format!("-l:{name}");
    assert!(cc(&["-o", s(&prog), s(&src("loader.c")), "-ldl", "-Wl,--no-as-needed", &dir, &needed]));
    prog
}

/// `prog` dlopens cnn_infer with the old toolkit on LD_LIBRARY_PATH and
/// fails as bare; the fix named is the pin. The oracle: the entry dropped,
/// the program does not start (the loader says so); the pin, it loads the
/// good file and keeps `kept`.
fn pin_not_drop(c: &Cudnn8, prog_path: &Path, kept: &[&Path]) {
    pin_not_drop_with(c, prog_path, None, 127, kept);
}

/// The same with `rest` on LD_LIBRARY_PATH after the old toolkit, and the
/// program's status bare once the old toolkit is dropped.
fn pin_not_drop_with(c: &Cudnn8, prog_path: &Path, rest: Option<&Path>, dropped_status: i32, kept: &[&Path]) {
    let action = format!("dlopen:{}", c.cnn.display());
    let prog = [prog_path.as_os_str(), OsStr::new(&action)];
    let mut llp = c.old_dir.as_os_str().to_owned();
    if let Some(r) = rest {
        llp.push(":");
        llp.push(r);
    }
    let llp = llp.as_os_str();
    let bare = run(&prog, Some(llp), &[], None).error(&action).expect("the bare run fails");
    let trace = c.d.path("needed.jsonl");
    let traced = run(&prog, Some(llp), &[], Some(&["-t", s(&trace)]));
    assert_eq!(traced.error(&action).as_deref(), Some(bare.as_str()));
    let (d, _) = diagnosis(&trace);
    assert_eq!(d["files"], json!([s(&c.old_ops), s(&c.wheel_ops)]), "{d:#}");
    let fix = &d["failure"]["explanation"]["fix"];
    assert_eq!(fix["kind"], "pin", "{d:#}");
    let mut dropped = Command::new(prog_path);
    match rest {
        Some(r) => dropped.env("LD_LIBRARY_PATH", r),
        None => dropped.env_remove("LD_LIBRARY_PATH"),
    };
    let dropped = dropped.arg(&action).output().unwrap();
    assert_eq!(dropped.status.code(), Some(dropped_status), "{}", String::from_utf8_lossy(&dropped.stderr));
    let pin = format!("libcudnn_ops_infer.so.8={}", fix["path"].as_str().unwrap());
    let fixed = run(&prog, Some(llp), &[], Some(&["--pin", &pin]));
    assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
    assert!(fixed.maps.contains(s(&c.wheel_ops)) && !fixed.maps.contains(s(&c.old_ops)), "{:?}", fixed.maps);
    for k in kept {
        assert!(fixed.maps.contains(s(k)), "{}: {:?}", k.display(), fixed.maps);
    }
}

#[test]
fn an_entry_another_library_is_found_only_in_is_never_the_fix_to_drop() {
    // The program's own DT_NEEDED is another library, found only in the old
    // toolkit on LD_LIBRARY_PATH; the ops library the failure is about has
    // a good copy beside cnn_infer. Dropping the entry would fix cnn_infer
    // and stop the program's start.
    let c = cudnn8("cudnn8-other");
    let other = c.old_dir.join("libcudart-old.so.11");
    lib(&other, "fakelib.c", &[], &[]);
    let prog_path = loader_needing(&c, "bin/needs-other", "libcudart-old.so.11");
    pin_not_drop(&c, &prog_path, &[&other]);
}

#[test]
fn an_entry_whose_library_has_only_an_older_copy_elsewhere_is_never_the_fix_to_drop() {
    // The program's library needs f2@V2 of libversioned.so, found in the old
    // toolkit; a system directory after it has an older copy with V1 only.
    // Dropping the entry would have the program find that one and not start.
    let c = cudnn8("cudnn8-older-copy");
    let map = |m: &str| format!("-Wl,--version-script={}", src(m).display());
    let new = c.old_dir.join("libversioned.so");
    lib(&new, "versioned.c", &[], &["-DFIXTURE_NEW", &map("versioned-new.map")]);
    let sys = c.d.path("sys");
    lib(&sys.join("libversioned.so"), "versioned.c", &[], &[&map("versioned-old.map")]);
    let uses = c.d.path("bin/libuses.so");
    lib(&uses, "uses-versioned.c", &[&new], &[]);
    let prog = c.d.path("bin/needs-v2");
    let (dir, needed) = (format!("-L{}", s(uses.parent().unwrap())), "-l:libuses.so");
    let link = format!("-Wl,-rpath-link,{}", s(&c.old_dir));
    let loader = src("loader.c");
    let args = ["-o", s(&prog), s(&loader), "-ldl", "-Wl,--no-as-needed", &dir, needed, "-Wl,-rpath,$ORIGIN", &link];
    assert!(cc(&args));
    pin_not_drop_with(&c, &prog, Some(&sys), 1, &[&new]);
}

#[test]
fn an_entry_another_program_of_the_job_needs_is_never_the_fix_to_drop() {
    // A shell runs a helper whose DT_NEEDED is found only in the old
    // toolkit, then the program that fails: the entry is the whole job's.
    let c = cudnn8("cudnn8-job");
    let only = c.old_dir.join("libonly.so.1");
    lib(&only, "fakelib.c", &[], &[]);
    let helper = loader_needing(&c, "bin/helper", "libonly.so.1");
    let action = format!("dlopen:{}", c.cnn.display());
    let script = format!("{} && {} {action}", s(&helper), s(&c.loader));
    let prog = [OsStr::new("sh"), OsStr::new("-c"), OsStr::new(&script)];
    let llp = c.old_dir.as_os_str();
    let bare = run(&prog, Some(llp), &[], None).error(&action).expect("the bare run fails");
    let trace = c.d.path("job.jsonl");
    let traced = run(&prog, Some(llp), &[], Some(&["-t", s(&trace)]));
    assert_eq!(traced.error(&action).as_deref(), Some(bare.as_str()));
    let (d, _) = diagnosis(&trace);
    assert_eq!(d["failure"]["explanation"]["fix"]["kind"], "pin", "{d:#}");
    // The oracle: without the entry the helper does not start.
    let dropped = Command::new(&helper).env_remove("LD_LIBRARY_PATH").output().unwrap();
    assert_eq!(dropped.status.code(), Some(127), "{}", String::from_utf8_lossy(&dropped.stderr));
}

#[test]
fn a_dependency_the_jobs_user_may_not_read_is_named_with_its_mode_and_never_pinned() {
    use std::os::unix::fs::PermissionsExt;
    // The job runs as nobody; the one file of that name, in the RUNPATH,
    // is mode 0000. Needs root (to switch the uid) and util-linux' setpriv.
    let id = Command::new("id").arg("-u").output().unwrap();
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if String::from_utf8_lossy(&id.stdout).trim() != "0" || !setpriv {
        eprintln!("skipped: switching the job to nobody needs root and setpriv");
        return;
    }
    let d = std::env::temp_dir().join(format!("culaunch-explain-unreadable-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("tr")).unwrap();
    for dir in [&d, &d.join("tr")] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let prov = d.join("unread/libprov.so.1");
    lib(&prov, "fakelib.c", &[], &[]);
    let user = d.join("libuser.so");
    let fakelib = src("fakelib.c");
    let needs_prov = [
        "-shared",
        "-fPIC",
        "-o",
        s(&user),
        s(&fakelib),
        "-Wl,--no-as-needed,--enable-new-dtags,-rpath,$ORIGIN/unread",
        &format!("-L{}", prov.parent().unwrap().display()),
        "-l:libprov.so.1",
    ];
    assert!(cc(&needs_prov));
    fs::set_permissions(d.join("unread"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&prov, fs::Permissions::from_mode(0o000)).unwrap();
    let loader = d.join("loader");
    assert!(cc(&[OsString::from("-o"), loader.clone().into(), src("loader.c").into(), "-ldl".into()]));
    let action = format!("dlopen:{}", user.display());
    let nobody = |args: &[&OsStr], env: &[(&str, &str)]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).args(args).env_remove("LD_LIBRARY_PATH");
        c.envs(env.iter().copied()).env("FIXTURE_MAPS_DIR", d.join("tr"));
        c.output().unwrap()
    };
    // Ground truth: the job's loader tried that very file and said it found
    // nothing.
    let bare = nobody(&[loader.as_os_str(), OsStr::new(&action)], &[("LD_DEBUG", "libs")]);
    let debug = String::from_utf8_lossy(&bare.stderr);
    assert!(debug.contains(&format!("trying file={}", prov.display())), "{debug}");
    let words = "libprov.so.1: cannot open shared object file: No such file or directory";
    assert!(String::from_utf8_lossy(&bare.stdout).contains(words), "{}", String::from_utf8_lossy(&bare.stdout));
    let (trace, summary) = (d.join("tr/t.jsonl"), d.join("tr/s.json"));
    let mut args: Vec<&OsStr> = vec![OsStr::new(CULAUNCH), OsStr::new("-q"), OsStr::new("-t"), trace.as_os_str()];
    args.extend([OsStr::new("--summary-json"), summary.as_os_str(), OsStr::new("--all-libs"), OsStr::new("--")]);
    args.extend([loader.as_os_str(), OsStr::new(&action)]);
    let traced = nobody(&args, &[]);
    assert!(String::from_utf8_lossy(&traced.stdout).contains(words));
    let live: Value = serde_json::from_slice(&fs::read(&summary).unwrap()).unwrap();
    let (by_root, _) = diagnosis(&trace);
    let found = live["diagnoses"].as_array().unwrap().iter().find(|d| d["kind"] == "load_failed").cloned();
    for (who, d, says) in [("the job's user", found.unwrap(), "permission denied"), ("root", by_root, "mode 0000")] {
        let e = &d["failure"]["explanation"];
        let advice = s_(&e["advice"]);
        assert!(advice.contains(&format!("{} (DT_RUNPATH of libuser.so)", prov.display())), "{who}: {advice}");
        assert!(advice.contains(says), "{who}: {advice}");
        assert_eq!((&e["fix"], &e["pin"]), (&Value::Null, &Value::Null), "{who}: no pin to a file it cannot read");
    }
    // The advice applied: readable, the same job loads it.
    fs::set_permissions(&prov, fs::Permissions::from_mode(0o644)).unwrap();
    let fixed = nobody(&[loader.as_os_str(), OsStr::new(&action)], &[]);
    assert!(
        String::from_utf8_lossy(&fixed.stdout).contains(&format!("{action}: ok")),
        "{}",
        String::from_utf8_lossy(&fixed.stdout)
    );
    let _ = fs::remove_dir_all(&d);
}

fn s_(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_missing_version_node_is_explained_and_glibc_s_words_rebuilt_when_the_trace_lacks_them() {
    let d = Dir::new("version");
    let map_new = format!("-Wl,--version-script={}", src("versioned-new.map").display());
    let map_old = format!("-Wl,--version-script={}", src("versioned-old.map").display());
    let new = d.path("app/lib/libversioned.so");
    lib(&new, "versioned.c", &[], &["-DFIXTURE_NEW", &map_new]);
    let old = d.path("opt/old/lib/libversioned.so");
    lib(&old, "versioned.c", &[], &[&map_old]);
    // A plugin using f1@V1, f2@V2, g2@V2, found through RUNPATH.
    let plugin = d.path("app/plugins/libuser.so");
    lib(&plugin, "uses-versioned.c", &[&new], &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"]);
    let loader = loader(&d);
    let old_dir = old.parent().unwrap();
    let llp = s(old_dir).to_owned();
    let action = format!("dlopen:{}", plugin.display());
    let prog = [loader.as_os_str(), OsStr::new(&action)];
    let error = run(&prog, Some(OsStr::new(&llp)), &[], None).error(&action).expect("the bare run fails");
    assert_eq!(error, format!("{}: version `V2' not found (required by {})", old.display(), plugin.display()));
    // With glibc's words, with the fields alone (error unknown), and with
    // neither (the program never asked dlerror).
    for (words, fields) in [
        (Some(error.as_str()), None),
        (None, Some(("missing_version", None, Some("V2"), Some(s(&plugin))))),
        (None, Some(("failed", None, None, None))),
    ] {
        let failed = Failed { request: s(&plugin), path: Some(&plugin), error: words, fields };
        let t = trace(&d, "version", &loader, &[("LD_LIBRARY_PATH", &llp)], &[], &failed);
        let (diag, _) = diagnosis(&t);
        assert_eq!(diag["files"], json!([s(&old), s(&new)]), "{diag:#}");
        let f = &diag["failure"];
        assert_eq!(f["error"], error.as_str(), "glibc's words, read or rebuilt: {f:#}");
        assert_eq!(f["reconstructed"], words.is_none());
        let fix = &f["explanation"]["fix"];
        assert_eq!(fix["kind"], "remove_from_ld_library_path", "{diag:#}");
        let fixed = run(&prog, Some(&without(&llp, fix["entry"].as_str().unwrap())), &[], None);
        assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
        assert!(fixed.maps.contains(s(&new)) && !fixed.maps.contains(s(&old)), "{:?}", fixed.maps);
    }
}

#[test]
fn a_missing_dependency_names_who_needed_it_and_the_toolkit_that_has_it() {
    let d = Dir::new("dependency");
    let toolkit = d.path("cuda-12.4");
    let dep = toolkit.join("lib64/libexplaindep.so");
    lib(&dep, "explain-dep.c", &[], &[]);
    let top = d.path("plugins/libexplaintop.so");
    lib(&top, "explain-top.c", &[&dep], &[]);
    let loader = loader(&d);
    let action = format!("dlopen:{}", top.display());
    let prog = [loader.as_os_str(), OsStr::new(&action)];
    let error = run(&prog, None, &[], None).error(&action).expect("the bare run fails");
    assert_eq!(error, "libexplaindep.so: cannot open shared object file: No such file or directory");
    for (words, fields) in [(Some(error.as_str()), None), (None, Some(("missing_dependency", None, None, None)))] {
        let failed = Failed { request: s(&top), path: Some(&top), error: words, fields };
        let t = trace(&d, "dependency", &loader, &[("CUDA_HOME", s(&toolkit))], &[], &failed);
        let (diag, text) = diagnosis(&t);
        assert_eq!(diag["requester"], s(&top), "{diag:#}");
        assert_eq!(diag["files"], json!([s(&dep)]), "{diag:#}");
        let f = &diag["failure"];
        assert_eq!(f["error"], error.as_str(), "{f:#}");
        assert!(f["explanation"]["found_in"].as_str().unwrap().contains("CUDA toolkit"), "{f:#}");
        assert!(text.contains(s(&dep)) && text.contains("libexplaindep.so"), "{text}");
        let fix = &f["explanation"]["fix"];
        assert_eq!(fix["kind"], "pin", "{diag:#}");
        let pin = format!("{}={}", fix["soname"].as_str().unwrap(), fix["path"].as_str().unwrap());
        let fixed = run(&prog, None, &[], Some(&["--pin", &pin]));
        assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
        assert!(fixed.maps.contains(s(&dep)), "{:?}", fixed.maps);
    }
}

#[test]
fn a_dependency_of_the_wrong_class_names_the_class_and_a_right_class_file() {
    let d = Dir::new("class");
    let dep = d.path("cuda-12.4/lib64/libexplaindep.so");
    lib(&dep, "explain-dep.c", &[], &[]);
    let dep32 = d.path("lib32/libexplaindep.so");
    fs::create_dir_all(dep32.parent().unwrap()).unwrap();
    let built = cc(&[
        OsString::from("-m32"),
        "-shared".into(),
        "-fPIC".into(),
        "-o".into(),
        dep32.clone().into(),
        src("explain-dep.c").into(),
        "-Wl,-soname,libexplaindep.so".into(),
    ]);
    if !built {
        eprintln!("skipped: no 32-bit toolchain (gcc-multilib)");
        return;
    }
    let top = d.path("plugins/libexplaintop.so");
    lib(&top, "explain-top.c", &[&dep], &[]);
    let loader = loader(&d);
    let llp = s(dep32.parent().unwrap()).to_owned();
    let action = format!("dlopen:{}", top.display());
    let prog = [loader.as_os_str(), OsStr::new(&action)];
    let error = run(&prog, Some(OsStr::new(&llp)), &[], None).error(&action).expect("the bare run fails");
    assert_eq!(error, "libexplaindep.so: wrong ELF class: ELFCLASS32");
    let toolkit = d.path("cuda-12.4");
    let env = [("LD_LIBRARY_PATH", llp.as_str()), ("CUDA_HOME", s(&toolkit))];
    for (words, fields) in [(Some(error.as_str()), None), (None, Some(("wrong_class", None, None, None)))] {
        let failed = Failed { request: s(&top), path: Some(&top), error: words, fields };
        let t = trace(&d, "class", &loader, &env, &[], &failed);
        let (diag, _) = diagnosis(&t);
        let f = &diag["failure"];
        assert_eq!(f["error"], error.as_str(), "glibc's words, read or rebuilt: {f:#}");
        assert_eq!(f["class_found"], "ELFCLASS32", "{f:#}");
        assert_eq!(diag["requester"], s(&top), "{diag:#}");
        assert_eq!(diag["files"], json!([s(&dep32), s(&dep)]), "the file found and the right one: {diag:#}");
        let fix = &f["explanation"]["fix"];
        let pin = format!("{}={}", fix["soname"].as_str().unwrap(), fix["path"].as_str().unwrap());
        let fixed = run(&prog, Some(OsStr::new(&llp)), &[], Some(&["--pin", &pin]));
        assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
        assert!(fixed.maps.contains(s(&dep)), "{:?}", fixed.maps);
    }
}

/// `ldd -r`'s output, its addresses and the vDSO aside.
fn ldd_r(file: &Path, llp: &OsStr) -> String {
    let out = Command::new("ldd").arg("-r").arg(file).env("LD_LIBRARY_PATH", llp).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let kept: Vec<&str> =
        text.lines().filter(|l| !l.contains("linux-vdso.so.1")).map(|l| l.split(" (0x").next().unwrap()).collect();
    kept.join("\n") + "\n"
}

#[test]
fn deps_check_explains_each_line_with_the_provider_and_the_good_file_and_keeps_ldd_s_lines() {
    let c = cudnn8("deps-check");
    let llp = c.old_dir.as_os_str();
    let deps = |args: &[&str]| {
        Command::new(CULAUNCH).arg("deps").args(args).arg(&c.cnn).env("LD_LIBRARY_PATH", llp).output().unwrap()
    };
    // --ldd: ldd -r's lines, byte for byte; the explanation on stderr.
    let out = deps(&["--check", "--ldd"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), ldd_r(&c.cnn, llp));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(s(&c.old_ops)) && err.contains(s(&c.wheel_ops)), "{err}");
    // The tree: ldd's line, then the provider and the file that has it.
    let out = deps(&["--check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        format!("undefined symbol: _ZN11nvrtcHelper4loadEb, version libcudnn_ops_infer.so.8\t({})", c.cnn.display());
    assert!(text.lines().any(|l| l == line), "{text}");
    assert!(text.contains(&format!("provider loaded: {} (found by ld_library_path)", c.old_ops.display())), "{text}");
    assert!(text.contains(&format!("has it: {}", c.wheel_ops.display())), "{text}");
    // JSON: the same explanation as a run's diagnosis.
    let j: Value = serde_json::from_slice(&deps(&["--check", "--json"]).stdout).unwrap();
    let p = &j["problems"][0];
    assert_eq!(p["line"], line.as_str());
    let e = &p["explanation"];
    assert_eq!(e["provider"], s(&c.old_ops), "{e:#}");
    assert_eq!(e["alternative"], s(&c.wheel_ops), "{e:#}");
    assert_eq!(
        e["fix"],
        json!({"kind": "remove_from_ld_library_path", "entry": s(&c.old_dir), "path": s(&c.wheel_ops)})
    );
    // And the fix holds for the loader: ldd -r without the entry is clean.
    assert!(!ldd_r(&c.cnn, OsStr::new("")).contains("undefined symbol"));
}

#[test]
fn a_traced_run_of_the_cudnn8_failure_is_explained_from_its_own_trace() {
    let c = cudnn8("traced");
    let trace = c.d.path("traced.jsonl");
    let summary = c.d.path("summary.json");
    let action = format!("dlopen:{}", c.cnn.display());
    let prog = [c.loader.as_os_str(), OsStr::new(&action)];
    let llp = c.old_dir.as_os_str();
    let bare = run(&prog, Some(llp), &[], None).error(&action).expect("the bare run fails");
    let args = ["-t", s(&trace), "--summary-json", s(&summary)];
    let traced = run(&prog, Some(llp), &[], Some(&args));
    assert_eq!(traced.error(&action).as_deref(), Some(bare.as_str()), "the job sees the loader's own words");
    let lines: Vec<Value> =
        fs::read_to_string(&trace).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let recorded = lines.iter().any(|l| l["event"] == "load" && l["ok"] == false && !l["path"].is_null());
    if recorded {
        // The audit module records the failure: the run's own summary
        // explains it.
        let j: Value = serde_json::from_slice(&fs::read(&summary).unwrap()).unwrap();
        let d = j["diagnoses"].as_array().unwrap().iter().find(|d| d["kind"] == "load_failed").cloned();
        let d = d.unwrap_or_else(|| panic!("no load_failed in {:#}", j["diagnoses"]));
        assert_eq!(d["files"], json!([s(&c.old_ops), s(&c.wheel_ops)]), "{d:#}");
    } else {
        // A module that does not record failures yet: the line it would
        // write, from the job's dlerror text, joins the run's real trace.
        let pid = lines.iter().find(|l| l["event"] == "process_start").unwrap()["pid"].clone();
        let line = json!({"v": 1, "ts": "2026-12-03T00:00:00.000000Z", "pid": pid, "ppid": 1, "host": host(),
                          "event": "load", "how": "dlopen", "request": c.cnn, "path": c.cnn, "ok": false,
                          "error": bare, "cuda": true, "family": "cudnn", "search": null});
        let mut text = fs::read_to_string(&trace).unwrap();
        text.push_str(&(line.to_string() + "\n"));
        fs::write(&trace, text).unwrap();
    }
    let (d, _) = diagnosis(&trace);
    assert_eq!(d["files"], json!([s(&c.old_ops), s(&c.wheel_ops)]), "{d:#}");
    assert_eq!(d["failure"]["error"], bare.as_str());
    let fix = &d["failure"]["explanation"]["fix"];
    assert_eq!(fix["entry"], s(&c.old_dir), "{d:#}");
    let fixed = run(&prog, Some(&without(s(&c.old_dir), fix["entry"].as_str().unwrap())), &[], None);
    assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
    assert!(fixed.maps.contains(s(&c.wheel_ops)), "{:?}", fixed.maps);
}

#[test]
fn a_library_the_job_named_relative_to_its_own_directory_is_explained_from_any_directory() {
    // The job cd's into the wheel's directory and dlopens ./NAME: glibc's
    // words say ./NAME, which is the job's, never report's directory.
    let c = cudnn8("relative");
    let trace = c.d.path("relative.jsonl");
    let script = format!("cd {} && exec {} dlopen:./libcudnn_cnn_infer.so.8", s(c.cnn.parent().unwrap()), s(&c.loader));
    let prog = [OsStr::new("sh"), OsStr::new("-c"), OsStr::new(&script)];
    let action = "dlopen:./libcudnn_cnn_infer.so.8";
    let llp = c.old_dir.as_os_str();
    let bare = run(&prog, Some(llp), &[], None).error(action).expect("the bare run fails");
    assert!(bare.starts_with("./libcudnn_cnn_infer.so.8: undefined symbol: "), "{bare}");
    let traced = run(&prog, Some(llp), &[], Some(&["-t", s(&trace)]));
    assert_eq!(traced.error(action).as_deref(), Some(bare.as_str()));
    // Read from the job's directory's parent, from / and from here: one
    // explanation, which names the files the loader used.
    for cwd in [c.d.path(""), PathBuf::from("/"), std::env::current_dir().unwrap()] {
        let out = Command::new(CULAUNCH).args(["report", "--json"]).arg(&trace).current_dir(&cwd).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = j["diagnoses"].as_array().unwrap().iter().find(|d| d["kind"] == "load_failed").cloned();
        let d = d.unwrap_or_else(|| panic!("no load_failed from {}: {:#}", cwd.display(), j["diagnoses"]));
        assert_eq!(d["files"], json!([s(&c.old_ops), s(&c.wheel_ops)]), "from {}: {d:#}", cwd.display());
        assert_eq!(d["failure"]["error"], bare.as_str());
        assert_eq!(d["failure"]["explanation"]["fix"]["entry"], s(&c.old_dir), "{d:#}");
    }
    // The oracle: the fix applied, the same job loads the wheel's library.
    let fixed = run(&prog, Some(&without(s(&c.old_dir), s(&c.old_dir))), &[], None);
    assert_eq!(fixed.error(action), None, "{:?}", fixed.lines);
    assert!(fixed.maps.contains(s(&c.wheel_ops)), "{:?}", fixed.maps);
}

#[test]
fn an_entry_whose_removal_would_not_reach_the_good_file_is_not_the_fix_the_pin_is() {
    // Two older copies on LD_LIBRARY_PATH: dropping the first leaves the
    // second in the way, so the fix is the pin.
    let c = cudnn8("cudnn8-two-old");
    let second = c.d.path("opt/cuda-11.0/lib64");
    fs::create_dir_all(&second).unwrap();
    fs::copy(&c.old_ops, second.join("libcudnn_ops_infer.so.8")).unwrap();
    let llp = format!("{}:{}", c.old_dir.display(), second.display());
    let action = format!("dlopen:{}", c.cnn.display());
    let prog = [c.loader.as_os_str(), OsStr::new(&action)];
    let error = run(&prog, Some(OsStr::new(&llp)), &[], None).error(&action).expect("the bare run fails");
    // Dropping the first entry alone does not help: the loader says so.
    let dropped = run(&prog, Some(&without(&llp, s(&c.old_dir))), &[], None);
    assert!(dropped.error(&action).is_some(), "{:?}", dropped.lines);
    let failed = Failed { request: s(&c.cnn), path: Some(&c.cnn), error: Some(&error), fields: None };
    let t = trace(&c.d, "two-old", &c.loader, &[("LD_LIBRARY_PATH", &llp)], &[], &failed);
    let (d, _) = diagnosis(&t);
    assert_eq!(d["files"], json!([s(&c.old_ops), s(&c.wheel_ops)]), "{d:#}");
    let fix = &d["failure"]["explanation"]["fix"];
    assert_eq!(fix["kind"], "pin", "{d:#}");
    let pin = format!("{}={}", fix["soname"].as_str().unwrap(), fix["path"].as_str().unwrap());
    let fixed = run(&prog, Some(OsStr::new(&llp)), &[], Some(&["--pin", &pin]));
    assert_eq!(fixed.error(&action), None, "{:?}", fixed.lines);
    assert!(fixed.maps.contains(s(&c.wheel_ops)) && !fixed.maps.contains(s(&c.old_ops)), "{:?}", fixed.maps);
}
