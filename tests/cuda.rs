//! CUDA knowledge: versions and where each library came from, and the
//! diagnoses, each shown in the human summary and in the JSON with its rule.
//! Ground truth is the loader (what it mapped, what it refused) and the
//! installers' own records.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn diagnoses<'a>(run: &'a Run, kind: &str) -> Vec<&'a Value> {
    run.summary.as_ref().unwrap()["diagnoses"].as_array().unwrap().iter().filter(|d| d["kind"] == kind).collect()
}

/// The diagnosis is in the JSON (returned) and in the human summary, with its rule.
fn diagnosed<'a>(run: &'a Run, kind: &str) -> &'a Value {
    let found = diagnoses(run, kind);
    assert_eq!(found.len(), 1, "{kind}: {:#?}\n{}", run.summary.as_ref().unwrap()["diagnoses"], run.stderr());
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("[{kind}]")), "{stderr}");
    assert!(stderr.contains(&format!("rule: {}", found[0]["rule"].as_str().unwrap())), "{stderr}");
    found[0]
}

/// A wheel's `dep` (DT_RUNPATH or DT_RPATH `$ORIGIN`) needing its `lib`, which
/// has `symbol`; a toolkit's older `lib` without it.
fn shadow_layout(d: &Dir, tags: &str, dir: &str, dep: &str, lib: &str, symbol: &str) -> PathBuf {
    let sym = format!("-DSYMBOL={symbol}");
    let wheel_lib = format!("wheel/{dir}/{lib}");
    d.build_from("cublas.c", &wheel_lib, false, &[], &["-DFIXTURE_NEW", &sym]);
    d.build_from("cublas.c", &format!("toolkit/lib64/{lib}"), false, &[], &[&sym]);
    let flag = format!("-Wl,{tags},-rpath,$ORIGIN");
    d.build_from("cublas.c", &format!("wheel/{dir}/{dep}"), false, &[&wheel_lib], &["-DFIXTURE_DEP", &sym, &flag])
}

fn cublas_layout(d: &Dir, tags: &str) -> PathBuf {
    shadow_layout(d, tags, "nvidia/cublas/lib", "libcublas.so.12", "libcublasLt.so.12", "cublasLtGetStatusString")
}

#[test]
fn cublaslt_shadowed_through_ld_library_path_fails_and_is_explained() {
    let d = Dir::new("shadow-runpath");
    let cublas = cublas_layout(&d, "--enable-new-dtags");
    let llp = d.path("toolkit/lib64");
    let env = [("LD_LIBRARY_PATH", llp.as_os_str())];
    let a = vec![format!("dlopen:{}", p(&cublas))];
    // The loader itself: the toolkit's older cuBLASLt wins, and the load fails.
    let bare = plain(&loader(&a), &env);
    assert!(bare.stdout().contains("undefined symbol: cublasLtGetStatusString"), "{}", bare.stdout());
    let run = traced(&[], &loader(&a), &env);
    assert_eq!(run.stdout(), bare.stdout());
    let diag = diagnosed(&run, "shadowing");
    assert_eq!(diag["requester"], canonical(&cublas).as_str());
    let files: Vec<String> = diag["files"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(files[0], canonical(&d.path("toolkit/lib64/libcublasLt.so.12")));
    assert!(files[1].ends_with("wheel/nvidia/cublas/lib/libcublasLt.so.12"), "{files:?}");
    assert_eq!(diag["rule"], "ld_library_path is searched before DT_RUNPATH");
}

#[test]
fn nvjitlink_shadowed_by_an_older_toolkit_is_explained_too() {
    let d = Dir::new("shadow-nvjitlink");
    let cusparse = shadow_layout(
        &d,
        "--enable-new-dtags",
        "nvidia/cusparse/lib",
        "libcusparse.so.12",
        "libnvJitLink.so.12",
        "__nvJitLinkComplete_12_4",
    );
    let llp = d.path("toolkit/lib64");
    let env = [("LD_LIBRARY_PATH", llp.as_os_str())];
    let a = vec![format!("dlopen:{}", p(&cusparse))];
    let bare = plain(&loader(&a), &env);
    assert!(bare.stdout().contains("undefined symbol: __nvJitLinkComplete_12_4"), "{}", bare.stdout());
    let run = traced(&[], &loader(&a), &env);
    let diag = diagnosed(&run, "shadowing");
    assert_eq!(diag["files"][0], canonical(&d.path("toolkit/lib64/libnvJitLink.so.12")).as_str());
    assert_eq!(diag["requester"], canonical(&cusparse).as_str());
}

#[test]
fn an_rpath_requester_with_the_same_ld_library_path_is_not_shadowed() {
    let d = Dir::new("shadow-rpath");
    let cublas = cublas_layout(&d, "--disable-new-dtags");
    let llp = d.path("toolkit/lib64");
    let a = vec![format!("dlopen:{}", p(&cublas))];
    let run = traced(&[], &loader(&a), &[("LD_LIBRARY_PATH", llp.as_os_str())]);
    assert!(run.stdout().contains(": ok"), "DT_RPATH wins over LD_LIBRARY_PATH: {}", run.stdout());
    assert!(diagnoses(&run, "shadowing").is_empty());
    let pid = *run.maps.keys().next().unwrap();
    assert!(run.maps[&pid].iter().any(|m| m.ends_with("wheel/nvidia/cublas/lib/libcublasLt.so.12")));
}

#[test]
fn a_second_framework_gets_the_cudnn_the_first_one_loaded() {
    let d = Dir::new("first-loaded-wins");
    d.build("fw-a/cudnn/libcudnn.so.9", false, &[], &["-DFIXTURE_BUILD=\"cudnn-a\""]);
    d.build("fw-b/cudnn/libcudnn.so.9", false, &[], &["-DFIXTURE_BUILD=\"cudnn-b\""]);
    let fa = d.build(
        "fw-a/lib/libfwa.so",
        false,
        &["fw-a/cudnn/libcudnn.so.9"],
        &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../cudnn"],
    );
    let fb = d.build(
        "fw-b/lib/libfwb.so",
        false,
        &["fw-b/cudnn/libcudnn.so.9"],
        &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../cudnn"],
    );
    let a = vec![format!("dlopen:{}", p(&fa)), format!("dlopen:{}", p(&fb)), "call:libcudnn.so.9".into()];
    let run = traced(&[], &loader(&a), &[]);
    assert!(run.stdout().contains("call:libcudnn.so.9: ok which=cudnn-a"), "{}", run.stdout());
    let pid = *run.maps.keys().next().unwrap();
    assert_eq!(run.mapped_cuda(pid), [canonical(&d.path("fw-a/cudnn/libcudnn.so.9"))].into());
    let diag = diagnosed(&run, "first_loaded_wins");
    assert_eq!(diag["requester"], canonical(&fb).as_str());
    assert!(diag["message"].as_str().unwrap().contains(&format!("which {} loaded first", canonical(&fa))), "{diag}");
}

#[test]
fn cublas_and_cublaslt_from_different_releases_are_skew() {
    let f = fixtures();
    let d = Dir::new("skew");
    let lt = d.build("cuda-12.1/lib64/libcublasLt.so.12", false, &[], &[]);
    std::fs::write(d.path("cuda-12.1/version.json"), r#"{"cuda": {"version": "12.1.0"}}"#).unwrap();
    let a = vec![format!("dlopen:{}", p(&f.conda_cublas)), format!("dlopen:{}", p(&lt))];
    let run = traced(&[], &loader(&a), &[]);
    let diag = diagnosed(&run, "version_skew");
    let msg = diag["message"].as_str().unwrap();
    assert!(msg.contains("12.4.5.8") && msg.contains("12.1.0"), "{msg}");
    assert_eq!(diag["rule"], "all cublas libraries must come from one release");
}

#[test]
fn an_empty_runpath_entry_and_a_driver_stub_are_flagged() {
    let d = Dir::new("empty-entry");
    let lib = d.build("lib/libnvJitLink.so.12", false, &[], &["-Wl,--enable-new-dtags,-rpath,$ORIGIN:"]);
    let stub = d.build("cuda/lib64/stubs/libcuda.so", false, &[], &["-Wl,-soname,libcuda.so.1"]);
    let a = vec![format!("dlopen:{}", p(&lib)), format!("dlopen:{}", p(&stub))];
    let run = traced(&[], &loader(&a), &[]);
    let empty = diagnosed(&run, "empty_search_entry");
    assert!(empty["message"].as_str().unwrap().contains("\"$ORIGIN:\""), "{empty}");
    let stub_diag = diagnosed(&run, "driver_stub");
    assert_eq!(stub_diag["files"][0], canonical(&stub).as_str());
}

/// urlsafe base64 of the sha256 of `file`, as RECORD writes it.
fn record_hash(file: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", "import base64, hashlib, sys; print(base64.urlsafe_b64encode(hashlib.sha256(open(sys.argv[1], 'rb').read()).digest()).rstrip(b'=').decode())"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_wheel_file_is_proven_by_its_record_and_a_changed_one_is_flagged() {
    let d = Dir::new("record");
    let site = d.path("venv/lib/python3.11/site-packages");
    let lib = d.build("venv/lib/python3.11/site-packages/nvidia/cu13/lib/libcublas.so.13", false, &[], &[]);
    let info = site.join("nvidia_cublas-13.0.0.19.dist-info");
    std::fs::create_dir_all(&info).unwrap();
    let record = format!("nvidia/cu13/lib/libcublas.so.13,sha256={},1\n", record_hash(&lib));
    std::fs::write(info.join("RECORD"), record).unwrap();
    let a = vec![format!("dlopen:{}", p(&lib))];
    let run = traced(&[], &loader(&a), &[]);
    let libs = run.summary.as_ref().unwrap()["libraries"].as_array().unwrap().clone();
    assert_eq!(libs[0]["origin"]["package"], "nvidia-cublas");
    assert_eq!(libs[0]["origin"]["record_hash"], "matches");
    assert_eq!((s(&libs[0]["version"]), s(&libs[0]["version_source"])), ("13.0.0.19".into(), "pip".into()));
    assert!(diagnoses(&run, "modified_wheel_file").is_empty());

    let mut bytes = std::fs::read(&lib).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&lib, bytes).unwrap();
    let run = traced(&[], &loader(&a), &[]);
    assert_eq!(run.summary.as_ref().unwrap()["libraries"][0]["origin"]["record_hash"], "differs");
    diagnosed(&run, "modified_wheel_file");
}

#[test]
fn without_any_record_the_version_comes_from_the_library_itself() {
    let d = Dir::new("api-version");
    let lib = d.build("bare/libcudart.so.12", false, &[], &["-DFIXTURE_VERSION=12080"]);
    let a = vec![format!("dlopen:{}", p(&lib))];
    let run = traced(&[], &loader(&a), &[]);
    let l = &run.summary.as_ref().unwrap()["libraries"][0];
    assert_eq!((s(&l["version"]), s(&l["version_source"])), ("12.8".into(), "cudaRuntimeGetVersion".into()));
    // The call ran in a helper process, not in the job: the job's maps show
    // the library once, and its trace shows no extra process.
    assert_eq!(run.events_of("process_start").len(), 1);
}

/// The job loads a library, then its file is replaced on disk (as a
/// `pip install -U` during a long job does) and the job loads the new one
/// through another name. What answered each load is the ground truth: the
/// old build, then the new one. Neither the version nor the installer of
/// the file there now may be claimed for what the job mapped first.
#[test]
fn a_library_replaced_on_disk_after_its_load_is_never_given_the_new_files_version() {
    let d = Dir::new("replaced");
    let lib = d.build("lib/libcudart.so.12", false, &[], &["-DFIXTURE_VERSION=12080", "-DFIXTURE_BUILD=\"old-12\""]);
    let new = d.build("new/libcudart.so.12", false, &[], &["-DFIXTURE_VERSION=12040", "-DFIXTURE_BUILD=\"new-12\""]);
    std::os::unix::fs::symlink("libcudart.so.12", d.path("lib/libcudart.so")).unwrap();
    let a = vec![
        format!("dlopen:{}", p(&lib)),
        format!("rename:{}:{}", p(&new), p(&lib)),
        format!("dlopen:{}", p(&d.path("lib/libcudart.so"))),
    ];
    let run = traced(&[], &loader(&a), &[]);
    let out = run.stdout();
    assert!(out.contains(&format!("dlopen:{}: ok which=old-12", p(&lib))), "{out}");
    assert!(out.contains("libcudart.so: ok which=new-12"), "the second load mapped the new file: {out}");
    let libs = run.summary.as_ref().unwrap()["libraries"].as_array().unwrap().clone();
    assert_eq!(libs.len(), 1, "{libs:#?}");
    assert_eq!(libs[0]["replaced"], true, "{:#}", libs[0]);
    assert_ne!(s(&libs[0]["version"]), "12.4", "the new file's answer is not the mapped file's: {:#}", libs[0]);
    let stderr = run.stderr();
    assert!(stderr.contains("replaced on disk after the job loaded it"), "{stderr}");
    assert!(stderr.contains("one path, two files"), "the conflict names one path twice: {stderr}");
    // A later report of the same trace says the same.
    let trace = run.events.iter().map(|e| e.to_string() + "\n").collect::<String>();
    let file = d.path("trace.jsonl");
    std::fs::write(&file, trace).unwrap();
    let report = Command::new(CULAUNCH).args(["report", "--json"]).arg(&file).output().unwrap();
    let later: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(later["libraries"][0]["replaced"], true, "{later:#}");
    assert_ne!(s(&later["libraries"][0]["version"]), "12.4");

    // Replaced after the job, before the summary: the same (the file
    // there now is another).
    let d = Dir::new("replaced-after");
    let lib = d.build("lib/libcudart.so.12", false, &[], &["-DFIXTURE_VERSION=12080"]);
    d.build("new/libcudart.so.12", false, &[], &["-DFIXTURE_VERSION=12040"]);
    let run = traced(&[], &loader(&[format!("dlopen:{}", p(&lib))]), &[]);
    assert_eq!(s(&run.summary.as_ref().unwrap()["libraries"][0]["version"]), "12.8", "not replaced: the call answers");
    let trace = run.events.iter().map(|e| e.to_string() + "\n").collect::<String>();
    std::fs::write(d.path("trace.jsonl"), trace).unwrap();
    std::fs::rename(d.path("new/libcudart.so.12"), &lib).unwrap();
    let report = Command::new(CULAUNCH).args(["report", "--json"]).arg(d.path("trace.jsonl")).output().unwrap();
    let later: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(later["libraries"][0]["replaced"], true, "{later:#}");
}

#[test]
fn a_forward_compatibility_driver_is_named_with_its_version() {
    let d = Dir::new("compat");
    d.build("cuda/compat/libcuda.so.550.54.15", false, &[], &["-Wl,-soname,libcuda.so.1"]);
    std::os::unix::fs::symlink("libcuda.so.550.54.15", d.path("cuda/compat/libcuda.so.1")).unwrap();
    let a = vec![format!("dlopen:{}", p(&d.path("cuda/compat/libcuda.so.1")))];
    let run = traced(&[], &loader(&a), &[]);
    let diag = diagnosed(&run, "driver_compat");
    assert!(diag["message"].as_str().unwrap().contains("550.54.15"), "{diag}");
}

#[test]
fn cudnn_sub_libraries_from_two_releases_are_skew() {
    let d = Dir::new("cudnn-skew");
    let site = "venv/lib/python3.11/site-packages";
    let main = d.build(&format!("{site}/nvidia/cudnn/lib/libcudnn.so.9"), false, &[], &[]);
    let ops = d.build(&format!("{site}/nvidia/cudnn/lib/libcudnn_ops.so.9"), false, &[], &[]);
    let info = d.path(&format!("{site}/nvidia_cudnn_cu12-9.1.0.70.dist-info"));
    std::fs::create_dir_all(&info).unwrap();
    std::fs::write(
        info.join("RECORD"),
        "nvidia/cudnn/lib/libcudnn.so.9,sha256=x,1\nnvidia/cudnn/lib/libcudnn_ops.so.9,sha256=x,1\n",
    )
    .unwrap();
    // A cuDNN sub-library of another release, from a conda env.
    let adv = d.build("conda/lib/libcudnn_adv.so.9", false, &[], &[]);
    std::fs::create_dir_all(d.path("conda/conda-meta")).unwrap();
    std::fs::write(
        d.path("conda/conda-meta/cudnn-9.0.0.312-0.json"),
        r#"{"name": "cudnn", "version": "9.0.0.312", "files": ["lib/libcudnn_adv.so.9"]}"#,
    )
    .unwrap();
    let a: Vec<String> = [&main, &ops, &adv].iter().map(|l| format!("dlopen:{}", p(l))).collect();
    let run = traced(&[], &loader(&a), &[]);
    let diag = diagnosed(&run, "version_skew");
    let msg = diag["message"].as_str().unwrap();
    assert!(msg.starts_with("cudnn libraries from different releases"), "{msg}");
    assert!(msg.contains("9.1.0.70") && msg.contains("9.0.0.312"), "{msg}");
}

#[test]
fn a_dispatcher_trying_the_exact_version_first_shows_a_probe_and_follows_a_pin() {
    let f = fixtures();
    // Like cuDNN 9: ask for the exact release first, then the SONAME.
    let a =
        vec![format!("via:{}:libcudnn_ops.so.9.1.0", p(&f.cudnn)), format!("via:{}:libcudnn_ops.so.9", p(&f.cudnn))];
    let run = traced(&[], &loader(&a), &[]);
    assert!(run.stdout().contains("libcudnn_ops.so.9.1.0: fail: "), "{}", run.stdout());
    let probes = run.summary.as_ref().unwrap()["probes"].as_array().unwrap().clone();
    assert_eq!(probes.len(), 1);
    assert_eq!(
        (s(&probes[0]["request"]), s(&probes[0]["caller"])),
        ("libcudnn_ops.so.9.1.0".into(), canonical(&f.cudnn))
    );
    // Pinned, the exact-version name follows the pin at the first try.
    let d = Dir::new("cudnn-exact-pin");
    let pinned = d.build("pinned/libcudnn_ops.so.9", false, &[], &["-DFIXTURE_BUILD=\"pinned-ops\""]);
    let run = traced(&[&format!("--pin=libcudnn_ops.so.9={}", p(&pinned))], &loader(&a), &[]);
    assert!(run.stdout().contains("libcudnn_ops.so.9.1.0: ok which=pinned-ops"), "{}", run.stdout());
    let pid = *run.maps.keys().next().unwrap();
    assert!(run.mapped_cuda(pid).contains(&canonical(&pinned)));
    assert!(!run.mapped_cuda(pid).contains(&canonical(&f.cudnn_ops)));
}
