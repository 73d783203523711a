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
    let said: BTreeMap<u32, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 6 && w[0] == "rank").then(|| (w[1].parse().expect("rank number"), w[5].to_owned()))
        })
        .collect();
    (out, said)
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
