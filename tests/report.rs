//! `culaunch report` on trace files written by hand: the summary's JSON as
//! readers see it (every field name and value pinned), and what a trace from
//! another host may and may not be judged against.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CULAUNCH: &str = env!("CARGO_BIN_EXE_culaunch");

/// This machine's node name, as the audit module writes it in `host`.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("culaunch-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn report_json(trace: &Path) -> Value {
    let out = Command::new(CULAUNCH).args(["report", "--json"]).arg(trace).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn report_text(trace: &Path) -> String {
    let out = Command::new(CULAUNCH).arg("report").arg(trace).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every kind of event and field the summary carries, with files laid out so
/// that the answers do not depend on this machine: a pip wheel whose file no
/// longer matches RECORD, two cuBLAS files from different releases (by file
/// name), the driver's link-time stub.
#[test]
fn summary_json_field_names_and_values_are_pinned() {
    let d = scratch("golden");
    let site = d.join("lib/python3.11/site-packages");
    let lib = site.join("nvidia/cuda_runtime/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("libcudart.so.12"), b"not the wheel's bytes").unwrap();
    let info = site.join("nvidia_cuda_runtime_cu12-12.9.79.dist-info");
    std::fs::create_dir_all(&info).unwrap();
    std::fs::write(info.join("RECORD"), "nvidia/cuda_runtime/lib/libcudart.so.12,sha256=AAAA,1\n").unwrap();
    let host = this_host();
    let trace = format!(
        r#"{{"v":1,"pid":10,"ppid":1,"host":"{host}","ts":"t","event":"process_start","exe":"/usr/bin/python3","argv":["python3","train.py"]}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"load","how":"needed","caller":"/usr/bin/python3","path":"{D}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12","soname":"libcudart.so.12","cuda":true,"family":"cudart","search":"rpath_runpath","lmid":0}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"load","how":"dlopen","request":"libcublas.so.12","caller":"{D}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12","path":"{D}/blas/libcublas.so.12.4.5.8","soname":"libcublas.so.12","cuda":true,"family":"cublas","search":"ld_library_path"}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"load","how":"dlopen","request":"libcublasLt.so.12","path":"{D}/blas/libcublasLt.so.12.3.4.1","soname":"libcublasLt.so.12","cuda":true,"family":"cublas","search":"ld_library_path"}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"load","how":"initial","path":"/lib/x86_64-linux-gnu/libc.so.6","soname":"libc.so.6","cuda":false}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"load","how":"dlopen","request":"libcudnn.so.9","caller":"/usr/bin/python3","path":null,"ok":false,"error":"libcudnn.so.9: cannot open shared object file","cuda":true,"family":"cudnn"}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"load","how":"dlopen","request":"{D}/stubs/libcuda.so","path":"{D}/stubs/libcuda.so","soname":"libcuda.so.1","cuda":true,"family":"cuda","search":"direct"}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"conflict","family":"cublas","paths":["{D}/blas/libcublas.so.12.4.5.8","{D}/other/libcublas.so.12"],"reason":"second copy"}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"deny","request":"libcudart.so.11","caller":"/usr/bin/python3","reason":"--strict: another major of pinned libcudart.so.12"}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"untraced","exe":"/bin/static-tool","reason":"it is statically linked: no loader runs in it"}}
{{"v":1,"pid":11,"ppid":10,"host":"{host}","event":"process_start","exe":"/usr/bin/python3","argv":["python3","train.py"],"forked":true}}
{{"v":1,"pid":11,"ppid":10,"host":"{host}","event":"load","how":"inherited","path":"{D}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12","soname":"libcudart.so.12","cuda":true,"family":"cudart"}}
{{"v":1,"pid":10,"ppid":1,"host":"{host}","event":"process_exit","status":0}}
{{"v":1,"pid":10,"event":"lo
"#,
        D = d.display()
    );
    let path = d.join("trace.jsonl");
    std::fs::write(&path, trace).unwrap();
    let got = report_json(&path);
    let expected = GOLDEN.replace("{D}", &d.display().to_string()).replace("{HOST}", &host);
    let expected: Value = serde_json::from_str(&expected).unwrap();
    // Readers may see fields added, never one renamed, removed or changed.
    assert_subset(&expected, &got, "$");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Every value in `want` is in `got` under the same name, arrays element by
/// element; objects in `got` may carry more fields.
fn assert_subset(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let Some(gv) = g.get(k) else { panic!("{at}.{k} is missing from {got:#}") };
                assert_subset(v, gv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{at}: {got:#}");
            for (i, (w, g)) in w.iter().zip(g).enumerate() {
                assert_subset(w, g, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{at}"),
    }
}

const GOLDEN: &str = r#"{
  "conflicts": [
    {
      "family": "cublas",
      "host": "{HOST}",
      "paths": [
        "{D}/blas/libcublas.so.12.4.5.8",
        "{D}/other/libcublas.so.12"
      ],
      "pid": 10,
      "reason": "second copy"
    }
  ],
  "denials": [
    {
      "caller": "/usr/bin/python3",
      "host": "{HOST}",
      "pid": 10,
      "reason": "--strict: another major of pinned libcudart.so.12",
      "request": "libcudart.so.11"
    }
  ],
  "diagnoses": [
    {
      "files": [
        "{D}/blas/libcublasLt.so.12.3.4.1",
        "{D}/blas/libcublas.so.12.4.5.8"
      ],
      "host": "{HOST}",
      "kind": "version_skew",
      "message": "cublas libraries from different releases in one process: 12.3.4.1 ({D}/blas/libcublasLt.so.12.3.4.1); 12.4.5.8 ({D}/blas/libcublas.so.12.4.5.8)",
      "pid": 10,
      "requester": null,
      "rule": "all cublas libraries must come from one release"
    },
    {
      "files": [
        "{D}/stubs/libcuda.so"
      ],
      "host": "",
      "kind": "driver_stub",
      "message": "{D}/stubs/libcuda.so is the link-time stub of the driver: it must never be loaded at run time",
      "pid": null,
      "requester": null,
      "rule": "stubs/libcuda.so is for linking only"
    },
    {
      "files": [
        "{D}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12"
      ],
      "host": "",
      "kind": "modified_wheel_file",
      "message": "{D}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12 is not the file pip package nvidia-cuda-runtime-cu12 installed (its sha256 differs from RECORD)",
      "pid": null,
      "requester": null,
      "rule": "RECORD lists the sha256 of every installed file"
    }
  ],
  "libraries": [
    {
      "callers": [
        "{D}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12"
      ],
      "family": "cublas",
      "how": [
        "dlopen"
      ],
      "origin": {
        "kind": "unknown"
      },
      "path": "{D}/blas/libcublas.so.12.4.5.8",
      "pinned": false,
      "processes": [
        "{HOST}:10"
      ],
      "search": [
        "ld_library_path"
      ],
      "soname": "libcublas.so.12",
      "version": "12.4.5.8",
      "version_source": "file name"
    },
    {
      "callers": [],
      "family": "cublas",
      "how": [
        "dlopen"
      ],
      "origin": {
        "kind": "unknown"
      },
      "path": "{D}/blas/libcublasLt.so.12.3.4.1",
      "pinned": false,
      "processes": [
        "{HOST}:10"
      ],
      "search": [
        "ld_library_path"
      ],
      "soname": "libcublasLt.so.12",
      "version": "12.3.4.1",
      "version_source": "file name"
    },
    {
      "callers": [],
      "family": "cuda",
      "how": [
        "dlopen"
      ],
      "origin": {
        "kind": "unknown"
      },
      "path": "{D}/stubs/libcuda.so",
      "pinned": false,
      "processes": [
        "{HOST}:10"
      ],
      "search": [
        "direct"
      ],
      "soname": "libcuda.so.1",
      "version": null,
      "version_source": null
    },
    {
      "callers": [
        "/usr/bin/python3"
      ],
      "family": "cudart",
      "how": [
        "inherited",
        "needed"
      ],
      "origin": {
        "kind": "pip",
        "package": "nvidia-cuda-runtime-cu12",
        "record_hash": "differs",
        "version": "12.9.79"
      },
      "path": "{D}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12",
      "pinned": false,
      "processes": [
        "{HOST}:10",
        "{HOST}:11"
      ],
      "search": [
        "rpath_runpath"
      ],
      "soname": "libcudart.so.12",
      "version": "12.9.79",
      "version_source": "pip"
    }
  ],
  "malformed_lines": 1,
  "pins": [],
  "probes": [
    {
      "caller": "/usr/bin/python3",
      "error": "libcudnn.so.9: cannot open shared object file",
      "host": "{HOST}",
      "pid": 10,
      "request": "libcudnn.so.9"
    }
  ],
  "processes": [
    {
      "argv": [
        "python3",
        "train.py"
      ],
      "exe": "/usr/bin/python3",
      "exit_status": 0,
      "forked": false,
      "host": "{HOST}",
      "pid": 10,
      "ppid": 1
    },
    {
      "argv": [
        "python3",
        "train.py"
      ],
      "exe": "/usr/bin/python3",
      "exit_status": null,
      "forked": true,
      "host": "{HOST}",
      "pid": 11,
      "ppid": 10
    }
  ],
  "trace_incomplete": false,
  "untraced": [
    {
      "exe": "/bin/static-tool",
      "host": "{HOST}",
      "pid": 10,
      "reason": "it is statically linked: no loader runs in it"
    }
  ]
}
"#;

/// A trace from another host is never judged against this machine's driver:
/// the same trace, with this host's name, does get a driver finding from the
/// files here (so the check would fire), and with another host's name the
/// summary has no driver finding and says the driver was not judged.
#[test]
fn report_on_another_hosts_trace_makes_no_claim_about_this_machines_driver() {
    let d = scratch("foreign");
    let drv = d.join("drv");
    std::fs::create_dir_all(&drv).unwrap();
    // Here, libcuda.so.1 is a driver older than any CUDA 12 runtime needs.
    std::fs::write(drv.join("libcuda.so.470.57.02"), b"x").unwrap();
    std::os::unix::fs::symlink("libcuda.so.470.57.02", drv.join("libcuda.so.1")).unwrap();
    let trace_from = |host: &str| {
        let t = format!(
            r#"{{"v":1,"pid":7,"ppid":1,"host":"{host}","event":"process_start","exe":"/usr/bin/python3","argv":["python3"]}}
{{"v":1,"pid":7,"ppid":1,"host":"{host}","event":"load","how":"dlopen","path":"{D}/rt/libcudart.so.12","soname":"libcudart.so.12","cuda":true,"family":"cudart","search":"ld_library_path"}}
{{"v":1,"pid":7,"ppid":1,"host":"{host}","event":"load","how":"dlopen","path":"{D}/drv/libcuda.so.1","soname":"libcuda.so.1","cuda":true,"family":"cuda","search":"ld.so.cache"}}
"#,
            D = d.display()
        );
        let path = d.join(format!("{host}.jsonl"));
        std::fs::write(&path, t).unwrap();
        path
    };
    let kinds = |v: &Value| -> Vec<String> {
        v["diagnoses"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect()
    };

    let here = report_json(&trace_from(&this_host()));
    assert_eq!(kinds(&here), ["driver_too_old"], "{here:#}");
    assert_eq!(here["machine"]["driver_judged"], true);

    let elsewhere = "gpu-node-elsewhere-0042";
    assert_ne!(elsewhere, this_host());
    let trace = trace_from(elsewhere);
    let there = report_json(&trace);
    assert!(!kinds(&there).iter().any(|k| k.starts_with("driver")), "{there:#}");
    assert_eq!(there["machine"]["driver_judged"], false);
    assert_eq!(there["machine"]["reads"], "nothing");
    assert_eq!(there["machine"]["not_consulted"], serde_json::json!([elsewhere]));
    // What the trace itself says is still reported.
    assert_eq!(there["libraries"].as_array().unwrap().len(), 2);
    let text = report_text(&trace);
    assert!(text.contains("the driver was not judged") && text.contains(elsewhere), "{text}");
    assert!(!text.contains("driver_too_old"), "{text}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// A trace from two hosts, read on one of them: this machine's files are
/// read for the processes that ran here and for nothing else. A wheel file
/// that no longer matches RECORD is found when a process here mapped it,
/// not when only the other host's did; the other host's driver (whose path
/// here holds an old driver) is not judged.
#[test]
fn report_on_a_two_host_trace_reads_this_machine_for_its_own_processes_only() {
    let d = scratch("mixed");
    let site = d.join("site-packages");
    for (dir, file) in [("nvidia/cuda_runtime/lib", "libcudart.so.12"), ("nvidia/cublas/lib", "libcublas.so.12")] {
        std::fs::create_dir_all(site.join(dir)).unwrap();
        std::fs::write(site.join(dir).join(file), b"changed").unwrap();
    }
    let info = site.join("nvidia_stack-12.9.79.dist-info");
    std::fs::create_dir_all(&info).unwrap();
    std::fs::write(
        info.join("RECORD"),
        "nvidia/cuda_runtime/lib/libcudart.so.12,sha256=AAAA,1\nnvidia/cublas/lib/libcublas.so.12,sha256=AAAA,1\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("drv")).unwrap();
    std::fs::write(d.join("drv/libcuda.so.470.57.02"), b"x").unwrap();
    std::os::unix::fs::symlink("libcuda.so.470.57.02", d.join("drv/libcuda.so.1")).unwrap();
    let (here, there) = (this_host(), "gpu-node-elsewhere-0043".to_owned());
    let load = |host: &str, pid: u32, path: String, soname: &str, family: &str| {
        format!(
            r#"{{"v":1,"pid":{pid},"ppid":1,"host":"{host}","event":"load","how":"dlopen","path":"{path}","soname":"{soname}","cuda":true,"family":"{family}"}}"#
        )
    };
    let lines = [
        load(
            &here,
            7,
            format!("{}/nvidia/cuda_runtime/lib/libcudart.so.12", site.display()),
            "libcudart.so.12",
            "cudart",
        ),
        load(
            &there,
            8,
            format!("{}/nvidia/cuda_runtime/lib/libcudart.so.12", site.display()),
            "libcudart.so.12",
            "cudart",
        ),
        load(&there, 8, format!("{}/nvidia/cublas/lib/libcublas.so.12", site.display()), "libcublas.so.12", "cublas"),
        load(&there, 8, format!("{}/drv/libcuda.so.1", d.display()), "libcuda.so.1", "cuda"),
    ];
    let trace = d.join("two-hosts.jsonl");
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let v = report_json(&trace);
    let diagnoses = v["diagnoses"].as_array().unwrap();
    let modified: Vec<&str> = diagnoses
        .iter()
        .filter(|d| d["kind"] == "modified_wheel_file")
        .map(|d| d["files"][0].as_str().unwrap())
        .collect();
    assert_eq!(modified.len(), 1, "{v:#}");
    assert!(modified[0].ends_with("/libcudart.so.12"), "{v:#}");
    assert!(!diagnoses.iter().any(|d| d["kind"].as_str().unwrap().starts_with("driver")), "{v:#}");
    let origin_of = |file: &str| {
        v["libraries"].as_array().unwrap().iter().find(|l| l["path"].as_str().unwrap().ends_with(file)).unwrap()
            ["origin"]["kind"]
            .clone()
    };
    assert_eq!((origin_of("/libcudart.so.12"), origin_of("/libcublas.so.12")), ("pip".into(), "unknown".into()));
    assert_eq!(v["machine"]["not_consulted"], serde_json::json!([there]));
    assert_eq!(v["machine"]["reads"], "files");
    std::fs::remove_dir_all(&d).unwrap();
}

/// The launcher's modules import one another without a loop (the report's
/// stages in particular flow one way): every `crate::…` and `super::…`
/// path outside tests is an edge, and the graph has no cycle.
#[test]
fn launcher_modules_import_each_other_without_a_loop() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let module_of = |p: &Path| -> String {
        let rel = p.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|l| l == "mod" || l == "main") {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let resolve = |path: &str| -> Option<String> {
        let mut p = path.to_owned();
        loop {
            if modules.contains(&p) {
                return Some(p);
            }
            p = p.rsplit_once("::")?.0.to_owned();
        }
    };
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect::<String>();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(f);
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let parent = m.rsplit_once("::").map(|(p, _)| p.to_owned()).unwrap_or_default();
        let mut targets = Vec::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", parent.clone())] {
            for (i, _) in code.match_indices(prefix) {
                let rest = &code[i + prefix.len()..];
                let heads: Vec<String> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap().split(',').map(|s| ident(s.trim())).collect(),
                    None => vec![ident(rest)],
                };
                for h in heads.into_iter().filter(|h| !h.is_empty()) {
                    let full = if base.is_empty() { h } else { format!("{base}::{h}") };
                    targets.extend(resolve(full.trim_end_matches(':')));
                }
            }
        }
        for t in targets.into_iter().filter(|t| *t != m && !t.is_empty()) {
            edges.entry(m.clone()).or_default().insert(t);
        }
    }
    // Depth-first search for a cycle.
    fn visit<'a>(
        n: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) {
        match state.get(n) {
            Some(true) => panic!("import loop: {} -> {n}", path.join(" -> ")),
            Some(false) => return,
            None => {}
        }
        state.insert(n, true);
        path.push(n);
        for t in edges.get(n).into_iter().flatten() {
            visit(t, edges, state, path);
        }
        path.pop();
        state.insert(n, false);
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        visit(m, &edges, &mut state, &mut Vec::new());
    }
    // The search sees the report's stages at all.
    assert!(edges["report::diagnose"].contains("rules"), "{edges:?}");
    assert!(edges["report::fold"].contains("report::events"), "{edges:?}");
}

/// `scripts/test` (README's test command) runs every step even after one
/// fails, and names each failed step at the end: a failing test binary
/// never hides the later tiers. A stand-in `cargo` records its calls and
/// fails clippy and test; debootstrap is kept off PATH, so the wheel step
/// says it is skipped, which proves it was reached.
#[test]
fn scripts_test_runs_every_step_after_a_failure_and_names_each_failed_one() {
    use std::os::unix::fs::PermissionsExt;
    let d = std::env::temp_dir().join(format!("culaunch-scripts-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let log = d.join("calls");
    let cargo = d.join("cargo");
    std::fs::write(
        &cargo,
        format!("#!/bin/sh\necho \"$*\" >> {}\ncase $1 in clippy|test) exit 101;; esac\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test");
    // The peer-suites step gets one suite that does not exist: it fails
    // at once, and is named too.
    let out = Command::new(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", d.display()))
        .env("CULAUNCH_PEER_SUITES", "test_culaunch_no_such_suite")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[2], "test --workspace --locked --no-fail-fast");
    assert!(calls[3].starts_with("build -q --locked --bin culaunch"), "{calls:?}");
    assert!(stdout.contains("skipped the wheel and the glibc matrix"), "the last step was reached: {stdout}");
    assert_eq!(
        stderr.lines().last(),
        Some("scripts/test: failed: cargo clippy, cargo test, scripts/peer-suites"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
