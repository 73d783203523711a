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
