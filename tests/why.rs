//! Whether what a process loaded is what its framework declares, and which
//! wheel's bytes a file two wheels claim holds: fake site-packages trees
//! with METADATA and RECORD written here, and C-built libraries in them.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const SITE: &str = "venv/lib/python3.11/site-packages";

fn dist_info(site: &Path, dir: &str, metadata: &str, record: &[(&str, String, u64)]) {
    let info = site.join(format!("{dir}.dist-info"));
    fs::create_dir_all(&info).unwrap();
    fs::write(info.join("METADATA"), metadata).unwrap();
    let lines: String = record.iter().map(|(p, h, n)| format!("{p},{h},{n}\n")).collect();
    fs::write(info.join("RECORD"), lines).unwrap();
}

/// A torch-like framework pinning cuDNN for CUDA 13, whose cuDNN file was
/// overwritten by a CUDA 12 cuDNN wheel installed after it, as pip leaves it
/// when TensorFlow[and-cuda] is installed second.
fn clashing_site(rule: &str) -> (Dir, std::path::PathBuf, std::path::PathBuf) {
    let d = Dir::new(rule);
    let site = d.path(SITE);
    let lib = d.build(&format!("{SITE}/nvidia/cudnn/lib/libcudnn.so.9"), false, &[], &[]);
    let rpath = format!("-Wl,-rpath,{}", lib.parent().unwrap().display());
    let prog = d.build(
        &format!("{SITE}/torch/bin/prog"),
        true,
        &[&format!("{SITE}/nvidia/cudnn/lib/libcudnn.so.9")],
        &[&rpath],
    );
    let size = fs::metadata(&lib).unwrap().len();
    let rel = "nvidia/cudnn/lib/libcudnn.so.9";
    dist_info(
        &site,
        "torch-2.15.0",
        "Name: torch\nVersion: 2.15.0\nRequires-Dist: nvidia-cudnn-cu13==9.26.0.51; platform_system == \"Linux\"\n",
        &[("torch/bin/prog", "sha256=p".into(), fs::metadata(&prog).unwrap().len())],
    );
    // The cu13 wheel's own build had another size: the bytes on disk are
    // the cu12 wheel's (RECORDs are read in directory order, cu12 first,
    // so a last-read-wins map would name cu13).
    dist_info(
        &site,
        "nvidia_cudnn_cu12-9.28.0.42",
        "Name: nvidia-cudnn-cu12\nVersion: 9.28.0.42\n",
        &[(rel, "sha256=a".into(), size)],
    );
    dist_info(
        &site,
        "nvidia_cudnn_cu13-9.26.0.51",
        "Name: nvidia-cudnn-cu13\nVersion: 9.26.0.51\n",
        &[(rel, "sha256=b".into(), size + 1)],
    );
    dist_info(
        &site,
        "tensorflow-2.21.0",
        "Name: tensorflow\nVersion: 2.21.0\nProvides-Extra: and-cuda\nRequires-Dist: nvidia-cudnn-cu12<10.0,>=9.3.0.75; extra == \"and-cuda\"\n",
        &[("tensorflow/libtensorflow_framework.so.2", "sha256=t".into(), 1)],
    );
    (d, prog, lib)
}

#[test]
fn a_framework_given_a_clashing_wheels_cudnn_is_a_requirement_mismatch_naming_both() {
    let (_d, prog, lib) = clashing_site("why-run");
    let r = traced(&[], &[prog.as_os_str()], &[]);
    assert!(r.out.status.success(), "{}", r.stderr());
    let lib = canonical(&lib);
    // Ground truth: the process mapped this very file.
    assert!(r.maps.values().any(|m| m.contains(&lib)) || r.loads(r.events[0]["pid"].as_i64().unwrap()).contains(&lib));
    let s = r.summary.expect("summary");
    let reqs = s["requirements"].as_array().expect("requirements[]");
    let torch: Vec<&Value> = reqs.iter().filter(|x| x["framework"]["name"] == "torch").collect();
    assert_eq!(torch.len(), 1, "{reqs:?}");
    assert_eq!(torch[0]["satisfied"], false);
    assert_eq!(torch[0]["soname"], "libcudnn.so.9");
    assert_eq!(torch[0]["provider"]["name"], "nvidia-cudnn-cu12");
    assert_eq!(
        torch[0]["message"],
        "torch 2.15.0 requires nvidia-cudnn-cu13==9.26.0.51; libcudnn.so.9 loaded is 9.28.0.42 from nvidia-cudnn-cu12"
    );
    let kinds: Vec<&str> = s["diagnoses"].as_array().unwrap().iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains(&"requirement_mismatch"), "{kinds:?}");
    let clash = s["diagnoses"].as_array().unwrap().iter().find(|d| d["kind"] == "wheel_clash").expect("wheel_clash");
    let m = clash["message"].as_str().unwrap();
    assert!(
        m.contains("nvidia-cudnn-cu12 9.28.0.42")
            && m.contains("nvidia-cudnn-cu13 9.26.0.51")
            && m.contains("holds nvidia-cudnn-cu12's bytes"),
        "{m}"
    );
    // The library row names the wheel whose bytes are on disk.
    let row = s["libraries"].as_array().unwrap().iter().find(|l| l["path"] == lib.as_str()).expect("row");
    assert_eq!(row["origin"]["package"], "nvidia-cudnn-cu12", "{row}");
}

#[test]
fn doctor_names_the_clash_the_cuda_major_split_and_the_overwritten_requirement() {
    let (d, _prog, _lib) = clashing_site("why-doctor");
    // A `python` that answers doctor's one question: its site directories.
    let py = d.path("venv/bin/python");
    fs::create_dir_all(py.parent().unwrap()).unwrap();
    fs::write(&py, format!("#!/bin/sh\necho '[\"{}\"]'\n", d.path(SITE).display())).unwrap();
    Command::new("chmod").arg("+x").arg(&py).status().unwrap();
    let out = Command::new(CULAUNCH).args(["doctor", "--json", "--python"]).arg(&py).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let clashes = doc["clashes"].as_array().unwrap();
    assert_eq!(clashes.len(), 1, "{clashes:?}");
    let names: Vec<&str> = clashes[0]["dists"].as_array().unwrap().iter().filter_map(|x| x["name"].as_str()).collect();
    assert_eq!(names, ["nvidia-cudnn-cu12", "nvidia-cudnn-cu13"]);
    assert_eq!(clashes[0]["on_disk"][0]["dist"], "nvidia-cudnn-cu12");
    let problems = doc["problems"].as_array().unwrap();
    let of = |k: &str| {
        problems.iter().filter(|p| p["kind"] == k).map(|p| p["message"].as_str().unwrap()).collect::<Vec<_>>()
    };
    let split = of("frameworks_cuda_majors");
    assert_eq!(split.len(), 1, "{problems:?}");
    assert!(
        split[0].contains("tensorflow 2.21.0 (CUDA 12) and torch 2.15.0 (CUDA 13)")
            && split[0].contains("one venv per framework"),
        "{}",
        split[0]
    );
    assert_eq!(
        of("requirement_mismatch"),
        ["torch 2.15.0 requires nvidia-cudnn-cu13==9.26.0.51; its libcudnn.so.9 holds the bytes of nvidia-cudnn-cu12 9.28.0.42, installed over it"]
    );
    let text = Command::new(CULAUNCH).args(["doctor", "--python"]).arg(&py).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with(&format!("python: {}", py.display())), "{text}");
    assert!(
        text.contains("wheel clashes") && text.contains("nvidia/cudnn/lib/libcudnn.so.9: nvidia-cudnn-cu12's bytes"),
        "{text}"
    );
    // Wheels grouped under their site, named once.
    assert_eq!(text.matches(&format!("pip wheels in {}", d.path(SITE).display())).count(), 1, "{text}");
    // …and no wheel's own line repeats it (nor "via site-packages of").
    let site = d.path(SITE).display().to_string();
    let installs =
        text.split("installations a job could pick up:").nth(1).unwrap().split("wheel clashes").next().unwrap();
    let wheel_lines: Vec<&str> = installs.lines().filter(|l| l.starts_with("    ")).collect();
    assert!(wheel_lines.len() >= 4, "{installs}");
    assert!(wheel_lines.iter().all(|l| !l.contains(&site) && !l.contains("via ")), "{installs}");
}

#[test]
fn a_library_constructor_that_forks_cannot_hold_the_version_probe_past_its_limit() {
    let d = Dir::new("why-probe-fork");
    // Named as a CUDA runtime with no version in its name or records: the
    // summary asks the library itself, in the probe.
    let lib = d.build_from("forking_ctor.c", "lib/libcudart.so.12", false, &[], &[]);
    let rpath = format!("-Wl,-rpath,{}", lib.parent().unwrap().display());
    let prog = d.build("bin/prog", true, &["lib/libcudart.so.12"], &[&rpath]);
    let started = std::time::Instant::now();
    let r = traced(&[], &[prog.as_os_str()], &[]);
    let took = started.elapsed();
    assert!(r.out.status.success(), "{}", r.stderr());
    // Bare, the constructor's child sleeps 30 s holding the pipe; the probe
    // kills its group and reads what the helper wrote.
    assert!(took < std::time::Duration::from_secs(8), "culaunch took {took:?}");
    let s = r.summary.expect("summary");
    assert!(s["libraries"].as_array().unwrap().iter().any(|l| l["path"] == canonical(&lib).as_str()));
}

#[test]
fn a_pin_of_a_library_outside_cuda_is_reported_used_where_the_process_mapped_it() {
    let d = Dir::new("why-pin-noncuda");
    let lib = d.build("lib/libzz.so.1", false, &[], &[]);
    let rpath = format!("-Wl,-rpath,{}", lib.parent().unwrap().display());
    let prog = d.build("bin/prog", true, &["lib/libzz.so.1"], &[&rpath]);
    let copy = d.path("pinned/libzz.so.1");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    fs::copy(&lib, &copy).unwrap();
    let pin = format!("libzz.so.1={}", copy.display());
    let r = traced(&["--pin", &pin], &[prog.as_os_str()], &[]);
    assert!(r.out.status.success(), "{}", r.stderr());
    // Ground truth: the process mapped the copy, not the original.
    let copy = canonical(&copy);
    let maps: Vec<_> = r.maps.values().collect();
    assert!(!maps.is_empty() && maps.iter().all(|m| m.contains(&copy) && !m.contains(&canonical(&lib))), "{maps:?}");
    let summary = r.summary.clone().expect("summary");
    let pins = summary["pins"].as_array().unwrap();
    assert_eq!(pins.len(), 1, "{pins:?}");
    let pid = *r.maps.keys().next().unwrap();
    let used: Vec<String> = pins[0]["used_in"].as_array().unwrap().iter().map(common::s).collect();
    assert!(used.iter().any(|u| u.ends_with(&format!(":{pid}"))), "{used:?}");
    assert!(!r.stderr().contains("UNUSED"), "{}", r.stderr());
}

#[test]
fn report_text_is_uncut_in_a_pipe_and_fits_columns_when_set() {
    let d = Dir::new("why-width");
    let venv = |name: &str| {
        format!(
            "/home/me/.cache/virtualenvs/{name}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12"
        )
    };
    let (a, b) = (venv("project-alpha-training-env"), venv("project-bravo-training-env"));
    let mut trace = String::from(
        r#"{"pid":1,"ppid":0,"host":"","event":"process_start","exe":"/usr/bin/python3","argv":["python3"]}"#,
    );
    for (pid, path) in [(1, &a), (1, &b)] {
        trace += &format!(
            "\n{{\"pid\":{pid},\"host\":\"\",\"event\":\"load\",\"how\":\"dlopen\",\"path\":\"{path}\",\"soname\":\"libcudart.so.12\",\"cuda\":true,\"family\":\"cudart\"}}"
        );
    }
    trace.push('\n');
    let t = d.path("trace.jsonl");
    fs::write(&t, trace).unwrap();
    let report = |columns: Option<&str>| {
        let mut c = Command::new(CULAUNCH);
        c.arg("report").arg(&t).env_remove("COLUMNS");
        if let Some(n) = columns {
            c.env("COLUMNS", n);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // A pipe has no width: every path whole.
    let piped = report(None);
    assert!(piped.contains(&a) && piped.contains(&b), "{piped}");
    // COLUMNS is honoured both ways: narrow cuts, keeping the venv names;
    // wide leaves everything whole.
    let narrow = report(Some("80"));
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    assert!(narrow.contains("project-alpha-training-env") && narrow.contains("project-bravo-training-env"), "{narrow}");
    assert_eq!(report(Some("250")), piped);
}
