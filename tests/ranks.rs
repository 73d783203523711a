//! Many ranks on a real launcher: Debian's Open MPI starts four ranks, each
//! under its own culaunch with a per-rank trace file, and one rank loads
//! another libcudart (the real cu11 wheel where the others load cu12). The
//! ranks themselves say which library they loaded; the report must name the
//! same rank as the outlier.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn venv() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/wheels-venv");
    let out = Command::new(script).output().expect("scripts/wheels-venv runs");
    assert!(out.status.success(), "scripts/wheels-venv failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
}

fn mpirun() -> Option<PathBuf> {
    let found = Command::new("sh").args(["-c", "command -v mpirun"]).output().ok()?;
    found.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&found.stdout).trim()))
}

/// `mpirun -np 4 culaunch -t DIR/trace.%q{OMPI_COMM_WORLD_RANK}.jsonl -- python py_wheels.py rank ODD`.
fn four_ranks(dir: &Path, odd: u32) -> (std::process::Output, BTreeMap<u32, String>) {
    let Some(mpirun) = mpirun() else {
        panic!("mpirun not found: .ci/run installs Debian's openmpi-bin");
    };
    let py = venv().join("bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/py_wheels.py");
    let template = dir.join("trace.%q{OMPI_COMM_WORLD_RANK}.jsonl");
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).expect("maps dir");
    let out = Command::new(mpirun)
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "4", "-x", "FIXTURE_MAPS_DIR"])
        .arg(CULAUNCH)
        .arg("-q")
        .arg("-t")
        .arg(&template)
        .arg("--")
        .arg(&py)
        .arg(script)
        .args(["rank", &odd.to_string()])
        .env("FIXTURE_MAPS_DIR", &maps)
        .env("OMPI_MCA_plm_rsh_agent", "false")
        .output()
        .expect("mpirun runs");
    // What each rank says it loaded, in its own words.
    let said: BTreeMap<u32, String> = ranks_said(&maps)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 6 && w[0] == "rank").then(|| (w[1].parse().expect("rank number"), w[5].to_owned()))
        })
        .collect();
    (out, said)
}

/// The "rank R pid P loaded SONAME" lines the ranks wrote to `maps/said.R`
/// (mpirun's merged stdout may split a line between two ranks).
fn ranks_said(maps: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(maps).expect("maps dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("said.") {
            all += &std::fs::read_to_string(entry.path()).expect("a rank's statement");
        }
    }
    all
}

fn report_json(files: &[PathBuf]) -> Value {
    let out = Command::new(CULAUNCH).args(["report", "--json"]).args(files).output().expect("report runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("report --json is JSON")
}

#[test]
fn open_mpi_ranks_get_one_trace_each_and_the_rank_with_another_libcudart_is_the_outlier() {
    let dir = std::env::temp_dir().join(format!("culaunch-ranks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (out, said) = four_ranks(&dir, 2);
    assert!(out.status.success(), "mpirun failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(said.len(), 4, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(said[&2], "libcudart.so.11.0");

    // One file per rank, each holding that rank's process and no other's.
    let files: Vec<PathBuf> = (0..4).map(|r| dir.join(format!("trace.{r}.jsonl"))).collect();
    for (r, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let ranks: Vec<i64> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("valid line"))
            .filter(|e| e["event"] == "process_start" && e["exe"].as_str().is_some_and(|x| x.contains("python")))
            .map(|e| e["rank"].as_i64().expect("process_start carries rank"))
            .collect();
        assert_eq!(ranks, [r as i64], "{}", f.display());
    }

    let report = report_json(&files);
    let mut ranks: Vec<i64> =
        report["processes"].as_array().expect("processes").iter().filter_map(|p| p["rank"].as_i64()).collect();
    ranks.sort_unstable();
    ranks.dedup();
    assert_eq!(ranks, [0, 1, 2, 3]);

    let divergences = report["divergences"].as_array().expect("divergences");
    let cudart: Vec<&Value> = divergences.iter().filter(|d| d["family"] == "cudart").collect();
    assert_eq!(cudart.len(), 1, "{divergences:#?}");
    let d = cudart[0];
    let outliers = d["outliers"].as_array().expect("outliers");
    let outlier_ranks: Vec<i64> = outliers.iter().filter_map(|o| o["rank"].as_i64()).collect();
    let odd: Vec<i64> =
        said.iter().filter(|(_, soname)| *soname == "libcudart.so.11.0").map(|(r, _)| *r as i64).collect();
    assert_eq!(outlier_ranks, odd, "{d:#}");
    assert!(s(&outliers[0]["path"]).ends_with("libcudart.so.11.0"), "{d:#}");
    assert!(s(&d["majority"]["path"]).ends_with("libcudart.so.12"), "{d:#}");
    assert_eq!(d["majority"]["ranks"], serde_json::json!([0, 1, 3]), "{d:#}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("culaunch-ranks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn site_packages(venv: &Path) -> PathBuf {
    let lib = venv.join("lib");
    let py = std::fs::read_dir(&lib)
        .expect("venv lib")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("python"));
    py.expect("lib/python3.*").path().join("site-packages")
}

/// `python -c` loading `lib` with ctypes, printing its pid first.
fn load_with_python(culaunch: &[&str], lib: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let py = venv().join("bin/python");
    let code =
        format!("import ctypes, os; print(os.getpid(), flush=True); ctypes.CDLL({:?})", lib.display().to_string());
    Command::new(CULAUNCH)
        .args(culaunch)
        .arg("--")
        .arg(&py)
        .args(["-c", &code])
        .envs(env.iter().copied())
        .output()
        .expect("culaunch runs")
}

fn cudart(soname: &str) -> PathBuf {
    site_packages(&venv()).join("nvidia/cuda_runtime/lib").join(soname)
}

fn wheel_version(dist: &str) -> String {
    let sp = site_packages(&venv());
    let name = std::fs::read_dir(&sp)
        .expect("site-packages")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(dist) && n.ends_with(".dist-info"))
        .expect("dist-info");
    name.trim_start_matches(dist).trim_start_matches('-').trim_end_matches(".dist-info").to_owned()
}

#[test]
fn report_of_a_trace_whose_library_was_deleted_shows_the_live_release_and_package() {
    // A private copy of the cu12 wheel (file and records), so it can be deleted.
    let dir = scratch("facts");
    let sp = dir.join("site-packages");
    let lib_dir = sp.join("nvidia/cuda_runtime/lib");
    std::fs::create_dir_all(&lib_dir).expect("lib dir");
    let version = wheel_version("nvidia_cuda_runtime_cu12");
    let dist = format!("nvidia_cuda_runtime_cu12-{version}.dist-info");
    let status = Command::new("cp").arg("-r").arg(site_packages(&venv()).join(&dist)).arg(&sp).status().expect("cp");
    assert!(status.success());
    let lib = lib_dir.join("libcudart.so.12");
    std::fs::copy(cudart("libcudart.so.12"), &lib).expect("copy libcudart");
    let trace = dir.join("t.jsonl");
    let out = load_with_python(&["-q", "-t", trace.to_str().unwrap()], &lib, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let before = report_json(std::slice::from_ref(&trace));
    std::fs::remove_file(&lib).expect("delete the library");
    std::fs::remove_dir_all(sp.join(&dist)).expect("delete its records");
    let after = report_json(std::slice::from_ref(&trace));
    for r in [&before, &after] {
        let libs = r["libraries"].as_array().expect("libraries");
        assert_eq!(libs.len(), 1, "{r:#}");
        // The wheel's own records (its dist-info name) are the ground truth.
        assert_eq!(libs[0]["version"], version.as_str(), "{r:#}");
        assert_eq!(libs[0]["origin"]["kind"], "pip", "{r:#}");
        assert_eq!(libs[0]["origin"]["package"], "nvidia-cuda-runtime-cu12", "{r:#}");
    }
    let facts = std::fs::read_to_string(&trace).unwrap().lines().filter(|l| l.contains(r#""event":"facts""#)).count();
    assert_eq!(facts, 1);
}

#[test]
fn diff_exits_0_for_the_same_libraries_1_naming_what_differs_and_125_for_bad_input() {
    let dir = scratch("diff");
    let t = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    for (name, soname) in
        [("a.jsonl", "libcudart.so.12"), ("a2.jsonl", "libcudart.so.12"), ("b.jsonl", "libcudart.so.11.0")]
    {
        let out = load_with_python(&["-q", "-t", &t(name)], &cudart(soname), &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let diff = |args: &[&str]| Command::new(CULAUNCH).arg("diff").args(args).output().expect("diff runs");
    let same = diff(&[&t("a.jsonl"), &t("a2.jsonl")]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&same.stdout),
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(same.stdout.is_empty());

    let differ = diff(&["--json", &t("a.jsonl"), &t("b.jsonl")]);
    assert_eq!(differ.status.code(), Some(1), "{}", String::from_utf8_lossy(&differ.stderr));
    let j: Value = serde_json::from_slice(&differ.stdout).expect("json");
    assert_eq!(j["same"], false);
    let sonames: Vec<String> = j["differences"].as_array().unwrap().iter().map(|d| s(&d["soname"])).collect();
    assert_eq!(sonames, ["libcudart.so.11.0", "libcudart.so.12"], "{j:#}");
    let text = diff(&[&t("a.jsonl"), &t("b.jsonl")]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("libcudart.so.12 (cudart): differs in presence"));

    // A directory of traces is one run.
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::copy(t("a.jsonl"), run_dir.join("trace.0.jsonl")).unwrap();
    assert_eq!(diff(&[run_dir.to_str().unwrap(), &t("a2.jsonl")]).status.code(), Some(0));

    // Bad input: missing, empty directory, not a trace.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(dir.join("junk.jsonl"), "hello\n").unwrap();
    for bad in [t("missing.jsonl"), empty.to_str().unwrap().to_owned(), t("junk.jsonl")] {
        let out = diff(&[&t("a.jsonl"), &bad]);
        assert_eq!(out.status.code(), Some(125), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&bad), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // After `--`, `diff` is the diff program (exit 1 and its own output).
    let prog = Command::new(CULAUNCH).args(["-q", "--", "diff"]).arg(t("a.jsonl")).arg(t("b.jsonl")).output().unwrap();
    let bare = Command::new("diff").arg(t("a.jsonl")).arg(t("b.jsonl")).output().unwrap();
    assert_eq!(prog.status.code(), bare.status.code());
    assert_eq!(prog.stdout, bare.stdout);
}

fn summary(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("summary json")
}

fn pids(summary: &Value) -> Vec<i64> {
    summary["processes"].as_array().expect("processes").iter().map(|p| p["pid"].as_i64().unwrap()).collect()
}

#[test]
fn concurrent_runs_on_one_trace_file_each_summarise_only_their_own_tree() {
    let dir = scratch("concurrent");
    let trace = dir.join("shared.jsonl");
    let py = venv().join("bin/python");
    // Each run loads its library, then waits so that the runs overlap. B
    // also writes a lock: it must lock only what B's own tree loaded.
    let lock = dir.join("b.lock");
    let start = |soname: &str, json: &Path, lock: Option<&Path>| {
        let code = format!(
            "import ctypes, os, time; print(os.getpid(), flush=True); ctypes.CDLL({:?}); time.sleep(1.5)",
            cudart(soname).display().to_string()
        );
        let mut cmd = Command::new(CULAUNCH);
        if let Some(lock) = lock {
            cmd.arg("lock").arg("-o").arg(lock);
        }
        cmd.args(["-q", "-t"])
            .arg(&trace)
            .arg("--summary-json")
            .arg(json)
            .arg("--")
            .arg(&py)
            .args(["-c", &code])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("culaunch starts")
    };
    let a = start("libcudart.so.12", &dir.join("a.json"), None);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = start("libcudart.so.11.0", &dir.join("b.json"), Some(&lock));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    for (out, json, soname) in [(&a, "a.json", "libcudart.so.12"), (&b, "b.json", "libcudart.so.11.0")] {
        let pid: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the python's pid");
        let s = summary(&dir.join(json));
        assert_eq!(pids(&s), [pid], "{json}: {s:#}");
        let sonames: Vec<String> = s["libraries"].as_array().unwrap().iter().map(|l| s_(&l["soname"])).collect();
        assert_eq!(sonames, [soname], "{json}");
    }
    let locked = std::fs::read_to_string(&lock).unwrap();
    let sonames: Vec<&str> = locked.lines().filter_map(|l| l.strip_prefix("soname = ")).collect();
    assert_eq!(sonames, ["\"libcudart.so.11.0\""], "{locked}");
    // The file holds both runs; `report` of it shows both.
    assert_eq!(report_json(&[trace])["processes"].as_array().unwrap().len(), 2);
}

fn s_(v: &Value) -> String {
    s(v)
}

#[test]
fn ctypes_ldconfig_children_are_listed_untraced_and_not_counted() {
    let dir = scratch("ldconfig");
    let json = dir.join("s.json");
    let py = venv().join("bin/python");
    // find_library runs `ldconfig -p` with a cleared environment.
    let code = "import ctypes.util, os; print(os.getpid(), flush=True); print(ctypes.util.find_library('m'))";
    let out =
        Command::new(CULAUNCH).arg("--summary-json").arg(&json).arg("--").arg(&py).args(["-c", code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: i64 = stdout.lines().next().unwrap().parse().unwrap();
    assert!(stdout.contains("libm.so"), "find_library found nothing: {stdout}");
    let s = summary(&json);
    assert_eq!(pids(&s), [pid], "{s:#}");
    let untraced: Vec<String> = s["untraced"].as_array().unwrap().iter().map(|u| s_(&u["exe"])).collect();
    assert!(untraced.iter().any(|e| e.ends_with("ldconfig") || e.ends_with("ldconfig.real")), "{untraced:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("culaunch: 1 process traced"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_rank_other_than_zero_prints_one_line_rank_zero_and_verbose_the_table() {
    let lib = cudart("libcudart.so.12");
    // COLUMNS: the width of the terminal a rank's stderr would reach.
    let stderr = |args: &[&str], rank: &str| {
        let env = [("OMPI_COMM_WORLD_RANK", rank), ("OMPI_COMM_WORLD_SIZE", "64"), ("COLUMNS", "100")];
        let out = load_with_python(args, &lib, &env);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let three = stderr(&[], "3");
    assert_eq!(three.lines().count(), 1, "{three}");
    assert!(three.starts_with("culaunch: rank 3: 1 process traced, 1 CUDA library (libcudart.so.12 "), "{three}");
    let zero = stderr(&[], "0");
    assert!(zero.contains("FAMILY") && zero.lines().all(|l| l.chars().count() <= 100), "{zero}");
    assert!(stderr(&["-v"], "3").contains("FAMILY"));
    assert!(stderr(&["-q"], "3").is_empty());
}

#[test]
fn mpirun_ranks_sharing_one_trace_each_summarise_their_own_rank() {
    let Some(mpirun) = mpirun() else { panic!("mpirun not found: .ci/run installs Debian's openmpi-bin") };
    let dir = scratch("shared");
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let py = venv().join("bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/py_wheels.py");
    // One shared trace; the per-rank summary file named by the rank's shell.
    let inner = format!(
        "exec {CULAUNCH} -q -t {dir}/shared.jsonl --summary-json {dir}/s.$OMPI_COMM_WORLD_RANK.json -- {py} {script} rank 2",
        dir = dir.display(),
        py = py.display()
    );
    let out = Command::new(mpirun)
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "4", "-x", "FIXTURE_MAPS_DIR", "sh", "-c", &inner])
        .env("FIXTURE_MAPS_DIR", &maps)
        .env("OMPI_MCA_plm_rsh_agent", "false")
        .output()
        .expect("mpirun runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // "rank R pid P loaded SONAME", in each rank's own words.
    let said: BTreeMap<i64, (i64, String)> = ranks_said(&maps)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 6 && w[0] == "rank").then(|| (w[1].parse().unwrap(), (w[3].parse().unwrap(), w[5].to_owned())))
        })
        .collect();
    assert_eq!(said.len(), 4);
    for (rank, (pid, soname)) in &said {
        let s = summary(&dir.join(format!("s.{rank}.json")));
        assert_eq!(pids(&s), [*pid], "rank {rank}: {s:#}");
        assert_eq!(s["processes"][0]["rank"], *rank, "rank {rank}");
        let sonames: Vec<String> = s["libraries"].as_array().unwrap().iter().map(|l| s_(&l["soname"])).collect();
        assert_eq!(&sonames, std::slice::from_ref(soname), "rank {rank}");
    }
    let report = report_json(&[dir.join("shared.jsonl")]);
    let d: Vec<&Value> = report["divergences"].as_array().unwrap().iter().filter(|d| d["family"] == "cudart").collect();
    assert_eq!(d.len(), 1, "{report:#}");
    assert_eq!(d[0]["outliers"][0]["rank"], 2);
    assert_eq!(d[0]["outliers"][0]["pid"], said[&2].0);
    assert_eq!(d[0]["majority"]["ranks"], serde_json::json!([0, 1, 3]));
    let text = Command::new(CULAUNCH).arg("report").arg(dir.join("shared.jsonl")).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with("culaunch: 4 processes traced"), "{text}");
    assert!(text.contains("rank 2 on "), "{text}");
    assert!(text.find("divergences").unwrap() < text.find("FAMILY").unwrap(), "{text}");
}

/// `unshare` for a pid namespace of its own: root and util-linux. `None`
/// (the test says it is skipped) elsewhere.
fn unshare_pid() -> Option<Command> {
    let id = Command::new("id").arg("-u").output().expect("id runs");
    let root = String::from_utf8_lossy(&id.stdout).trim() == "0";
    let ok = root
        && Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: a pid namespace of its own needs root and util-linux's unshare");
        return None;
    }
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc"]);
    Some(c)
}

/// The canonical paths of the CUDA files in the one maps file under `dir`.
fn mapped_in(dir: &Path) -> Vec<String> {
    let entries: Vec<_> = std::fs::read_dir(dir).expect("maps dir").flatten().collect();
    assert_eq!(entries.len(), 1, "one process wrote its maps in {}", dir.display());
    let text = std::fs::read_to_string(entries[0].path()).unwrap();
    parse_maps(&text).into_iter().filter(|p| looks_cuda(p)).collect()
}

/// The processes each library row names, by file name.
fn rows(summary: &Value) -> BTreeMap<String, Vec<String>> {
    let libs = summary["libraries"].as_array().expect("libraries");
    libs.iter()
        .map(|l| {
            let names = l["processes"].as_array().unwrap().iter().map(s).collect();
            (s(&l["path"]).rsplit('/').next().unwrap().to_owned(), names)
        })
        .collect()
}

#[test]
fn ranks_in_pid_namespaces_of_their_own_on_one_host_are_told_apart() {
    // Enroot/pyxis containers under Slurm: each rank in its own pid
    // namespace, all with the node's host name, one trace file each. Both
    // loaders get the same pid.
    let dir = scratch("pidns");
    let f = fixtures();
    let (mut traces, mut pids) = (Vec::new(), Vec::new());
    for (rank, lib) in [(0, &f.wheel_cudart12), (1, &f.wheel_cudart11)] {
        let Some(mut unshare) = unshare_pid() else { return };
        let (trace, maps) = (dir.join(format!("trace.{rank}.jsonl")), dir.join(format!("maps.{rank}")));
        std::fs::create_dir_all(&maps).unwrap();
        let out = unshare
            .arg(CULAUNCH)
            .args(["-q", "-t"])
            .arg(&trace)
            .arg("--")
            .args(loader(&[format!("dlopen:{}", p(lib))]))
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", "2")
            .env("FIXTURE_MAPS_DIR", &maps)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The loader's own word: what this rank mapped.
        assert_eq!(mapped_in(&maps), [canonical(lib)]);
        let pid = std::fs::read_dir(&maps).unwrap().flatten().next().unwrap().file_name();
        pids.push(pid.to_string_lossy().trim_end_matches(".maps").parse::<i64>().unwrap());
        traces.push(trace);
    }
    assert_eq!(pids[0], pids[1], "the same pid in each namespace");
    let pid = pids[0];
    let j = report_json(&traces);
    let ranks: Vec<(i64, i64)> = j["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_i64().unwrap(), p["rank"].as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(ranks, [(pid, 0), (pid, 1)], "{:#}", j["processes"]);
    let host = &j["processes"][0]["host"];
    let (one, two) = (format!("{}:{pid}", s(host)), format!("{}:{pid}#2", s(host)));
    let want: BTreeMap<String, Vec<String>> =
        [("libcudart.so.11.0".to_owned(), vec![two]), ("libcudart.so.12".to_owned(), vec![one])].into();
    assert_eq!(rows(&j), want);
    let d = &j["divergences"][0];
    assert_eq!(d["outliers"][0]["rank"], 1, "{:#}", j["divergences"]);
}

#[test]
fn a_pid_the_kernel_gives_again_within_one_run_is_another_process() {
    // In a pid namespace of its own, ns_last_pid is ours alone: two loader
    // runs, one after the other, both get pid 100.
    let dir = scratch("pidreuse");
    let f = fixtures();
    let Some(mut unshare) = unshare_pid() else { return };
    let (a, b) = (dir.join("maps.a"), dir.join("maps.b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let one = |maps: &Path, lib: &Path| {
        format!(
            "echo 99 > /proc/sys/kernel/ns_last_pid && FIXTURE_MAPS_DIR={} {} dlopen:{}",
            p(maps),
            p(&f.loader),
            p(lib)
        )
    };
    let script = format!("{}; {}", one(&a, &f.wheel_cudart11), one(&b, &f.wheel_cudart12));
    let summary_file = dir.join("summary.json");
    let out = unshare
        .arg(CULAUNCH)
        .args(["-q", "-t"])
        .arg(dir.join("trace.jsonl"))
        .arg("--summary-json")
        .arg(&summary_file)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (maps, lib) in [(&a, &f.wheel_cudart11), (&b, &f.wheel_cudart12)] {
        assert_eq!(mapped_in(maps), [canonical(lib)]);
        let pid = std::fs::read_dir(maps).unwrap().flatten().next().unwrap().file_name();
        assert_eq!(pid.to_string_lossy(), "100.maps");
    }
    let j = summary(&summary_file);
    let host = s(&j["processes"][0]["host"]);
    let pids: Vec<(i64, i64)> = j["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_i64().unwrap(), p["instance"].as_i64().unwrap_or(1)))
        .collect();
    assert_eq!(pids.iter().filter(|(pid, _)| *pid == 100).collect::<Vec<_>>(), [&(100, 1), &(100, 2)]);
    let want: BTreeMap<String, Vec<String>> = [
        ("libcudart.so.11.0".to_owned(), vec![format!("{host}:100")]),
        ("libcudart.so.12".to_owned(), vec![format!("{host}:100#2")]),
    ]
    .into();
    assert_eq!(rows(&j), want);
    // Each process mapped one libcudart: no process had two.
    assert_eq!(j["conflicts"], serde_json::json!([]), "{:#}", j["conflicts"]);
    assert!(!j["diagnoses"].to_string().contains("two majors"), "{:#}", j["diagnoses"]);
}
