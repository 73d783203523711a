//! The real NVIDIA runtime wheels from PyPI (nvidia-cuda-runtime-cu11 and
//! -cu12), in a cached venv that scripts/wheels-venv creates. The loader's
//! /proc/PID/maps and pip's own metadata are the ground truth.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn venv() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/wheels-venv");
    let out = Command::new(script).output().expect("scripts/wheels-venv runs");
    assert!(
        out.status.success(),
        "scripts/wheels-venv failed (PyPI reachable?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn python_in_venv(code: &str) -> String {
    let out = Command::new(venv().join("bin/python")).args(["-c", code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/py_wheels.py"))
}

fn wheel_lib(soname: &str) -> String {
    let dir = python_in_venv(
        "import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], 'lib'))",
    );
    canonical(&PathBuf::from(dir).join(soname))
}

fn run_script(mode: &str) -> Run {
    run_script_with(&[], mode)
}

fn run_script_with(culaunch_args: &[&str], mode: &str) -> Run {
    let py = venv().join("bin/python");
    traced(culaunch_args, &[py.as_os_str(), script().as_os_str(), os(mode)], &[])
}

#[test]
fn real_cu11_and_cu12_runtimes_in_one_process_are_reported_with_their_conflict() {
    let run = run_script("both");
    assert!(run.out.status.success(), "{}", run.stderr());
    // libcudart 12.9 answers without a GPU; this is the library speaking.
    assert!(run.stdout().contains("libcudart.so.12: status=0 version=12090"), "{}", run.stdout());
    let (cu11, cu12) = (wheel_lib("libcudart.so.11.0"), wheel_lib("libcudart.so.12"));
    let pid = *run.maps.keys().next().unwrap();
    assert_eq!(run.mapped_cuda(pid), [cu11.clone(), cu12.clone()].into());
    assert_eq!(
        run.loads(pid).into_iter().filter(|p| looks_cuda(p)).collect::<std::collections::BTreeSet<_>>(),
        run.mapped_cuda(pid)
    );
    let conflicts = run.events_of("conflict");
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["paths"], serde_json::json!([cu11, cu12]));
    // Provenance against pip's own metadata.
    let libs = run.summary.as_ref().unwrap()["libraries"].as_array().unwrap().clone();
    for (path, dist) in [(&cu11, "nvidia-cuda-runtime-cu11"), (&cu12, "nvidia-cuda-runtime-cu12")] {
        let lib = libs.iter().find(|l| l["path"] == path.as_str()).unwrap();
        let pip_version = python_in_venv(&format!("import importlib.metadata as m; print(m.version('{dist}'))"));
        assert_eq!(lib["origin"]["kind"], "pip");
        assert_eq!(lib["origin"]["package"], dist);
        assert_eq!(lib["version"], pip_version.as_str());
    }
    assert!(run.stderr().contains("conflicts"), "{}", run.stderr());
}

#[test]
fn real_runtimes_in_two_child_processes_are_reported_per_process_without_conflict() {
    let run = run_script("children");
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.maps.len(), 3, "parent and two children wrote maps");
    for &pid in run.maps.keys() {
        let reported: std::collections::BTreeSet<String> =
            run.loads(pid).into_iter().filter(|p| looks_cuda(p)).collect();
        assert_eq!(reported, run.mapped_cuda(pid), "pid {pid}");
    }
    assert!(run.events_of("conflict").is_empty());
    let starts = run.events_of("process_start");
    let parent = starts.iter().find(|e| e["argv"].as_array().unwrap().iter().any(|a| a == "children")).unwrap();
    let children: Vec<_> = starts.iter().filter(|e| e["ppid"] == parent["pid"]).collect();
    assert_eq!(children.len(), 2, "both children name the parent as ppid");
    let libs = run.summary.as_ref().unwrap()["libraries"].as_array().unwrap().clone();
    assert_eq!(libs.len(), 2);
    assert!(libs.iter().all(|l| l["processes"].as_array().unwrap().len() == 1));
}

#[test]
fn a_pin_moves_the_real_runtime_for_absolute_path_and_bare_name_loads() {
    let wheel = wheel_lib("libcudart.so.12");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pinned-real-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("libcudart.so.12");
    std::fs::copy(&wheel, &copy).unwrap();
    let pin = format!("--pin=libcudart.so.12={}", copy.display());

    // Without the pin the bare name is on no search path: ctypes fails.
    let bare = run_script("routes");
    assert!(!bare.out.status.success());
    assert!(bare.stderr().contains("libcudart.so.12: cannot open shared object file"), "{}", bare.stderr());

    let run = run_script_with(&[&pin], "routes");
    assert!(run.out.status.success(), "{}", run.stderr());
    // Both loads answer, from the one pinned copy.
    assert_eq!(run.stdout().matches("status=0 version=12090").count(), 2, "{}", run.stdout());
    let pid = *run.maps.keys().next().unwrap();
    assert_eq!(run.mapped_cuda(pid), [canonical(&copy)].into(), "the wheel's own file is never mapped");
    let e = run.load_event(&copy);
    assert_eq!((e["pinned"].as_bool(), e["redirected_from"].as_str()), (Some(true), Some("libcudart.so.12")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn real_wheel_files_are_proven_by_record_and_the_version_call_is_the_fallback() {
    let run = run_script("both");
    let libs = run.summary.as_ref().unwrap()["libraries"].as_array().unwrap().clone();
    assert!(libs.iter().all(|l| l["origin"]["record_hash"] == "matches"), "{libs:#?}");
    assert!(libs.iter().all(|l| l["version_source"] == "pip"));

    // Copies without any installer record: the library itself is asked, in a
    // helper process. cu12 answers without a GPU; cu11 returns error 35
    // (no driver), so no version is claimed.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bare-real-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for soname in ["libcudart.so.12", "libcudart.so.11.0"] {
        std::fs::copy(wheel_lib(soname), dir.join(soname)).unwrap();
    }
    let loader = &fixtures().loader;
    let a: Vec<String> =
        ["libcudart.so.12", "libcudart.so.11.0"].iter().map(|n| format!("dlopen:{}", dir.join(n).display())).collect();
    let argv: Vec<&std::ffi::OsStr> =
        std::iter::once(loader.as_os_str()).chain(a.iter().map(std::ffi::OsStr::new)).collect();
    let run = traced(&[], &argv, &[]);
    let libs = run.summary.as_ref().unwrap()["libraries"].as_array().unwrap().clone();
    let of = |n: &str| libs.iter().find(|l| l["soname"] == n).cloned().unwrap();
    let cu12 = of("libcudart.so.12");
    assert_eq!((s(&cu12["version"]), s(&cu12["version_source"])), ("12.9".into(), "cudaRuntimeGetVersion".into()));
    assert!(of("libcudart.so.11.0")["version"].is_null());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn doctor_on_the_real_venv_finds_both_wheels_and_what_will_bite() {
    let f = fixtures();
    let venv = venv();
    // An LD_LIBRARY_PATH holding a libcudart.so.12 (a toolkit's) and a
    // libcudart.so.11.0 (a wheel's directory).
    let tk = f.toolkit_cudart.parent().unwrap();
    let llp = format!("{}:{}", tk.display(), f.wheel_cudart11.parent().unwrap().display());
    let out = Command::new(CULAUNCH)
        .args(["doctor", "--json", "--python"])
        .arg(venv.join("bin/python"))
        .env("LD_LIBRARY_PATH", &llp)
        .env("CUDA_HOME", tk.ancestors().nth(3).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let installs = d["installations"].as_array().unwrap();
    for dist in ["nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime-cu12"] {
        let pip_version = python_in_venv(&format!("import importlib.metadata as m; print(m.version('{dist}'))"));
        let found =
            installs.iter().find(|i| i["kind"] == "pip" && i["location"].as_str().unwrap().contains(dist)).unwrap();
        assert_eq!(found["version"], pip_version.as_str());
    }
    let toolkit = installs.iter().find(|i| i["kind"] == "toolkit").unwrap();
    assert_eq!((s(&toolkit["version"]), s(&toolkit["found_via"])), ("12.4.1".into(), "CUDA_HOME".into()));
    let kinds: Vec<String> = d["problems"].as_array().unwrap().iter().map(|p| s(&p["kind"])).collect();
    assert!(kinds.contains(&"ld_library_path_shadows_wheel".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"two_majors_on_search_path".to_owned()), "{kinds:?}");
    let has_driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
    assert_eq!(kinds.contains(&"no_driver".to_owned()), !has_driver, "{kinds:?}");
    let text = Command::new(CULAUNCH).args(["doctor", "--python"]).arg(venv.join("bin/python")).output().unwrap();
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("nvidia-cuda-runtime-cu12"));
}
