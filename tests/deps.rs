//! `culaunch deps` against the loader: each rule of glibc's search has a
//! fixture, and for each the answer must equal ldd's (the loader itself, in
//! trace mode) and name the rule that found the library.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use std::process::Command;

use common::{fixtures, Dir, CULAUNCH};
use serde_json::Value;

fn ldd_lines(file: &Path, env: &[(&str, &OsStr)]) -> Vec<String> {
    let mut cmd = Command::new("ldd");
    cmd.arg(file).env_remove("LD_LIBRARY_PATH").envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" => "))
        .map(|l| l.trim().split(" (0x").next().unwrap().to_owned())
        .collect();
    lines.sort();
    lines
}

fn culaunch_lines(file: &Path, env: &[(&str, &OsStr)]) -> Vec<String> {
    let out = Command::new(CULAUNCH)
        .args(["deps", "--ldd"])
        .arg(file)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" => "))
        .map(|l| l.trim().to_owned())
        .collect();
    lines.sort();
    lines
}

fn json(file: &Path, env: &[(&str, &OsStr)]) -> Value {
    let out = Command::new(CULAUNCH)
        .args(["deps", "--json"])
        .arg(file)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The loader's answer equals ours; returns the JSON entry for `name`.
fn agree(file: &Path, env: &[(&str, &OsStr)], name: &str) -> Value {
    let (want, got) = (ldd_lines(file, env), culaunch_lines(file, env));
    assert_eq!(got, want, "culaunch deps --ldd vs ldd for {}", file.display());
    let j = json(file, env);
    j["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name && l["repeat"] == false)
        .cloned()
        .unwrap_or(Value::Null)
}

fn rule(entry: &Value) -> String {
    entry["found_by"]["rule"].as_str().unwrap_or("missing").to_owned()
}

#[test]
fn rpath_is_inherited_through_two_levels() {
    let d = Dir::new("rpath-inherit");
    d.build("deep/libc3.so", false, &[], &[]);
    d.build("mid/libb2.so", false, &["deep/libc3.so"], &[]);
    d.build("mid/liba1.so", false, &["mid/libb2.so"], &[]);
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}:{}", d.path("mid").display(), d.path("deep").display());
    let exe = d.build("bin/prog", true, &["mid/liba1.so"], &[&rpath]);
    let e = agree(&exe, &[], "libc3.so");
    assert_eq!(rule(&e), "rpath");
    assert!(e["found_by"]["of"].as_str().unwrap().ends_with("bin/prog"), "{e}");
}

#[test]
fn runpath_is_not_inherited() {
    let d = Dir::new("runpath-not-inherited");
    d.build("x/libb2.so", false, &[], &[]);
    d.build("x/liba1.so", false, &["x/libb2.so"], &[]);
    let runpath = format!("-Wl,--enable-new-dtags,-rpath,{}", d.path("x").display());
    let exe = d.build("bin/prog", true, &["x/liba1.so"], &[&runpath]);
    assert_eq!(rule(&agree(&exe, &[], "liba1.so")), "runpath");
    assert_eq!(rule(&agree(&exe, &[], "libb2.so")), "missing");
}

/// Retags the DT_SONAME entry of an ELF64 little-endian file as DT_RUNPATH:
/// a file with both DT_RPATH and DT_RUNPATH, which today's linkers no longer
/// write but old binaries carry.
fn soname_to_runpath(file: &Path) {
    let mut b = std::fs::read(file).unwrap();
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(&b, 0x20), u16_at(&b, 0x36), u16_at(&b, 0x38));
    let ph = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&o| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 2)
        .unwrap();
    let (off, size) = (u64_at(&b, ph + 8), u64_at(&b, ph + 32));
    for e in (off..off + size).step_by(16) {
        if u64_at(&b, e) == 14 {
            b[e..e + 8].copy_from_slice(&29u64.to_le_bytes());
        }
    }
    std::fs::write(file, b).unwrap();
}

#[test]
fn rpath_is_ignored_when_runpath_is_present() {
    let d = Dir::new("rpath-vs-runpath");
    d.build("r/libx.so", false, &[], &[]);
    d.build("n/libx.so", false, &[], &[]);
    // DT_RPATH r/, and (after retagging the SONAME "<n>") DT_RUNPATH n/.
    let soname = format!("-Wl,-soname,{}", d.path("n").display());
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", d.path("r").display());
    let lib = d.build("liby.so", false, &["r/libx.so"], &[&rpath, &soname]);
    soname_to_runpath(&lib);
    let e = agree(&lib, &[], "libx.so");
    assert_eq!(rule(&e), "runpath");
    assert!(e["path"].as_str().unwrap().contains("/n/"), "{e}");
}

#[test]
fn ld_library_path_comes_after_rpath_and_before_runpath() {
    let d = Dir::new("llp-order");
    d.build("rp/libx.so", false, &[], &[]);
    d.build("llp/libx.so", false, &[], &[]);
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", d.path("rp").display());
    let runpath = format!("-Wl,--enable-new-dtags,-rpath,{}", d.path("rp").display());
    let with_rpath = d.build("bin/rpath-prog", true, &["rp/libx.so"], &[&rpath]);
    let with_runpath = d.build("bin/runpath-prog", true, &["rp/libx.so"], &[&runpath]);
    let llp = d.path("llp");
    let env = [("LD_LIBRARY_PATH", llp.as_os_str())];
    assert_eq!(rule(&agree(&with_rpath, &env, "libx.so")), "rpath");
    assert_eq!(rule(&agree(&with_runpath, &env, "libx.so")), "ld_library_path");
    assert_eq!(rule(&agree(&with_runpath, &[], "libx.so")), "runpath");
}

#[test]
fn origin_through_a_symlinked_directory_and_lib_token() {
    let d = Dir::new("origin-symlink");
    d.build("real/lib/libx.so", false, &[], &[]);
    // What $LIB is, from the loader itself: the last entry of its search path.
    let debug = Command::new("/bin/true").env("LD_LIBRARY_PATH", "/p/$LIB").env("LD_DEBUG", "libs").output().unwrap();
    let debug = String::from_utf8_lossy(&debug.stderr).into_owned();
    let list = debug.split("search path=").nth(1).unwrap().split_whitespace().next().unwrap();
    let lib_dir = list.split(':').next_back().unwrap().strip_prefix("/p/").unwrap().to_owned();
    d.build(&format!("real/{lib_dir}/liby.so"), false, &[], &[]);
    let exe = d.build(
        "real/bin/prog",
        true,
        &["real/lib/libx.so", &format!("real/{lib_dir}/liby.so")],
        &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib:$ORIGIN/../$LIB"],
    );
    std::os::unix::fs::symlink(d.path("real/bin"), d.path("linked-bin")).unwrap();
    let via_link = d.path("linked-bin/prog");
    assert_eq!(rule(&agree(&via_link, &[], "libx.so")), "runpath");
    assert_eq!(rule(&agree(&exe, &[], "liby.so")), "runpath");
}

#[test]
fn a_candidate_of_another_machine_is_passed_over() {
    let d = Dir::new("wrong-machine");
    let good = d.build("good/libx.so", false, &[], &[]);
    std::fs::create_dir_all(d.path("bad")).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[0x12..0x14].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    std::fs::write(d.path("bad/libx.so"), bytes).unwrap();
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}:{}", d.path("bad").display(), d.path("good").display());
    let exe = d.build("bin/prog", true, &["good/libx.so"], &[&rpath]);
    let e = agree(&exe, &[], "libx.so");
    assert!(e["path"].as_str().unwrap().contains("/good/"), "{e}");
}

#[test]
fn a_glibc_hwcaps_subdirectory_is_preferred() {
    let d = Dir::new("hwcaps");
    d.build("lib/libx.so", false, &[], &[]);
    d.build("lib/glibc-hwcaps/x86-64-v2/libx.so", false, &[], &[]);
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", d.path("lib").display());
    let exe = d.build("bin/prog", true, &["lib/libx.so"], &[&rpath]);
    let e = agree(&exe, &[], "libx.so");
    let v2_supported = Command::new("/lib64/ld-linux-x86-64.so.2")
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("x86-64-v2 (supported"))
        .unwrap_or(false);
    assert_eq!(e["path"].as_str().unwrap().contains("glibc-hwcaps/x86-64-v2"), v2_supported, "{e}");
}

/// Search-list directories are listed once, and the listing answers which
/// of the loader's subdirectories exist: one that is a link to a directory,
/// and a file where a subdirectory would be, must be judged as the loader
/// judges them, and a name no directory holds must still end not found.
#[test]
fn subdirectories_seen_through_a_listing_are_judged_as_the_loader_judges_them() {
    let d = Dir::new("listed");
    d.build("lib-a/libx.so", false, &[], &[]);
    d.build("real-hwcaps/x86-64-v2/libx.so", false, &[], &[]);
    std::os::unix::fs::symlink("../real-hwcaps", d.path("lib-a/glibc-hwcaps")).unwrap();
    std::fs::write(d.path("lib-a/tls"), b"a file, not a directory").unwrap();
    d.build("lib-b/liby.so", false, &[], &[]);
    d.build("lib-c/libz.so", false, &[], &[]);
    d.build("real-x86_64/libz.so", false, &[], &[]);
    std::os::unix::fs::symlink("../real-x86_64", d.path("lib-c/x86_64")).unwrap();
    d.build("lib-c/libgone.so", false, &[], &[]);
    let rpath = format!(
        "-Wl,--disable-new-dtags,-rpath,{}:{}:{}",
        d.path("lib-a").display(),
        d.path("lib-b").display(),
        d.path("lib-c").display()
    );
    let exe =
        d.build("bin/prog", true, &["lib-a/libx.so", "lib-b/liby.so", "lib-c/libz.so", "lib-c/libgone.so"], &[&rpath]);
    std::fs::remove_file(d.path("lib-c/libgone.so")).unwrap();
    let lines = ldd_lines(&exe, &[]);
    assert!(lines.iter().any(|l| l == "libgone.so => not found"), "{lines:?}");
    for name in ["libx.so", "liby.so", "libz.so"] {
        assert_eq!(rule(&agree(&exe, &[], name)), "rpath", "{name}");
    }
}

#[test]
fn nodeflib_skips_the_cache_and_default_directories() {
    let d = Dir::new("nodeflib");
    let exe = d.build("bin/prog", true, &[], &["-lz", "-Wl,-z,nodefaultlib"]);
    assert_eq!(rule(&agree(&exe, &[], "libz.so.1")), "missing");
    let plain = d.build("bin/plain", true, &[], &["-lz"]);
    assert_eq!(rule(&agree(&plain, &[], "libz.so.1")), "ld.so.cache");
}

#[test]
fn a_name_loaded_earlier_breadth_first_is_reused() {
    let d = Dir::new("bfs");
    d.build("one/libc3.so", false, &[], &[]);
    d.build("two/libc3.so", false, &[], &[]);
    let one = format!("-Wl,--enable-new-dtags,-rpath,{}", d.path("one").display());
    let two = format!("-Wl,--enable-new-dtags,-rpath,{}", d.path("two").display());
    d.build("a/liba1.so", false, &["one/libc3.so"], &[&one]);
    d.build("b/libb2.so", false, &["two/libc3.so"], &[&two]);
    let rp = format!("-Wl,--enable-new-dtags,-rpath,{}:{}", d.path("a").display(), d.path("b").display());
    let exe = d.build("bin/prog", true, &["a/liba1.so", "b/libb2.so"], &[&rp]);
    let e = agree(&exe, &[], "libc3.so");
    assert!(e["path"].as_str().unwrap().contains("/one/"), "{e}");
    let j = json(&exe, &[]);
    let repeats =
        j["libraries"].as_array().unwrap().iter().filter(|l| l["name"] == "libc3.so" && l["repeat"] == true).count();
    assert_eq!(repeats, 1, "libb2's request is the object already loaded");
}

#[test]
fn system_and_fixture_files_match_ldd_on_a_sample() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deps-oracle");
    let out = Command::new(script)
        .args(["--sample", "120", "--culaunch", CULAUNCH])
        .arg(&fixtures().root)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" 0 different"), "{text}");
}

#[test]
fn bad_input_exits_125_with_one_line_never_a_panic() {
    let d = Dir::new("bad-input");
    let cases: Vec<(PathBuf, Vec<u8>)> = vec![
        (d.path("empty"), vec![]),
        (d.path("text"), b"hello".to_vec()),
        (d.path("truncated"), std::fs::read(&fixtures().loader).unwrap()[..100].to_vec()),
    ];
    for (p, bytes) in &cases {
        std::fs::write(p, bytes).unwrap();
    }
    let mut paths: Vec<PathBuf> = cases.into_iter().map(|(p, _)| p).collect();
    paths.push(d.0.clone());
    let fifo = d.path("fifo.so");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    paths.push(fifo);
    paths.push(d.path("does-not-exist"));
    for p in paths {
        let out = Command::new(CULAUNCH).arg("deps").arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{}: {err}", p.display());
        assert_eq!(err.lines().count(), 1, "{}: {err}", p.display());
        assert!(err.starts_with("culaunch: ") && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn run_warns_before_starting_about_what_the_closure_shows() {
    let d = Dir::new("preflight");
    d.build("gone/libcudart.so.12", false, &[], &[]);
    let exe = d.build("bin/prog", true, &["gone/libcudart.so.12"], &[]);
    std::fs::remove_dir_all(d.path("gone")).unwrap();
    let out = Command::new(CULAUNCH).args(["-q", "--"]).arg(&exe).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("culaunch: warning: libcudart.so.12, DT_NEEDED of prog, is not found"), "{err}");
    assert_eq!(out.status.code(), Some(127), "the loader's own failure, as without culaunch: {err}");
    let strict = Command::new(CULAUNCH).args(["-q", "--strict", "--"]).arg(&exe).output().unwrap();
    assert_eq!(strict.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&strict.stderr).starts_with("culaunch: strict mode: "));

    let f = fixtures();
    let pin = format!("--pin=libcudart.so.11.0={}", f.wheel_cudart11.display());
    let out = Command::new(CULAUNCH).args(["-q", &pin, "--"]).arg(&f.needs_cudart).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pin libcudart.so.11.0 cannot serve libcudart.so.12, DT_NEEDED of needs_cudart"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "version=12090\n", "the job still runs");
}

#[test]
fn deps_never_runs_the_interpreter_a_file_names() {
    // Outside the fixtures tree, which the ldd-oracle test walks: ldd shows
    // a foreign PT_INTERP in a way of its own.
    let d = Dir(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("evil-interp-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&d.0);
    std::fs::create_dir_all(&d.0).unwrap();
    let marker = d.path("ran");
    let evil = d.path("evil-ld.sh");
    std::fs::write(&evil, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let interp = format!("-Wl,--dynamic-linker={}", evil.display());
    let exe = d.build("bin/prog", true, &[], &[&interp]);
    let out = Command::new(CULAUNCH).args(["deps", "--ldd"]).arg(&exe).output().unwrap();
    assert!(!marker.exists(), "culaunch deps ran the file's PT_INTERP");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("libc.so.6 => "));
}

/// A directory outside the fixtures tree (which the ldd-oracle test walks):
/// for files ldd refuses, and for the very large ones.
fn scratch(name: &str) -> Dir {
    let d = Dir(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deps-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&d.0);
    std::fs::create_dir_all(&d.0).unwrap();
    d
}

fn cc(args: &[&OsStr]) {
    let out = Command::new("cc").args(args).output().unwrap();
    assert!(out.status.success(), "cc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn fixture_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

/// `ldd -r FILE` as culaunch prints it: addresses and the vDSO line left
/// out, everything else (its reports and their order) kept.
fn ldd_r(file: &Path, env: &[(&str, &OsStr)]) -> (String, Option<i32>) {
    let out = Command::new("ldd")
        .arg("-r")
        .arg(file)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (ldd_text(&out), out.status.code())
}

/// What ldd printed (stdout, then stderr), without the vDSO line and the
/// load addresses, which differ between runs.
fn ldd_text(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let kept: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("linux-vdso.so.1") && !l.contains("linux-gate.so.1"))
        .map(|l| l.split(" (0x").next().unwrap().to_owned())
        .collect();
    kept.join("\n") + "\n"
}

fn check_ldd(file: &Path, env: &[(&str, &OsStr)]) -> (String, Option<i32>) {
    let out = Command::new(CULAUNCH)
        .args(["deps", "--check", "--ldd"])
        .arg(file)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

#[test]
fn a_shared_object_without_needed_prints_an_empty_closure_like_ldd() {
    let d = scratch("no-needed");
    let lib = d.path("libnoneeded.so");
    cc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-nostdlib".as_ref(),
        "-o".as_ref(),
        lib.as_os_str(),
        fixture_src("versioned.c").as_os_str(),
    ]);
    for file in [lib.as_path(), Path::new("/lib64/ld-linux-x86-64.so.2")] {
        let ldd = Command::new("ldd").arg(file).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&ldd.stdout), "\tstatically linked\n", "{}", file.display());
        let out = Command::new(CULAUNCH).args(["deps", "--ldd"]).arg(file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "\tstatically linked\n");
        let j = json(file, &[]);
        assert_eq!(j["libraries"].as_array().map(Vec::len), Some(0), "{j}");
        let tree = Command::new(CULAUNCH).arg("deps").arg(file).output().unwrap();
        assert_eq!(tree.status.code(), Some(0));
    }
}

/// Files that ldd and the real run stop at with an error (glibc's
/// `open_verify` and `_dl_map_object_from_fd`), first on LD_LIBRARY_PATH.
#[test]
fn candidates_the_loader_refuses_stop_the_load_with_glibcs_words() {
    let d = scratch("refused");
    let good = d.build("good/libx.so", false, &[], &[]);
    let exe = d.build("bin/prog", true, &["good/libx.so"], &[&format!("-Wl,-rpath,{}", d.path("good").display())]);
    let patched = |dir: &str, at: usize, bytes: &[u8]| {
        std::fs::create_dir_all(d.path(dir)).unwrap();
        let mut b = std::fs::read(&good).unwrap();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        std::fs::write(d.path(&format!("{dir}/libx.so")), b).unwrap();
    };
    std::fs::create_dir_all(d.path("object")).unwrap();
    cc(&[
        "-c".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        d.path("object/libx.so").as_os_str(),
        fixture_src("fakelib.c").as_os_str(),
    ]);
    std::fs::create_dir_all(d.path("exec")).unwrap();
    cc(&[
        "-no-pie".as_ref(),
        "-o".as_ref(),
        d.path("exec/libx.so").as_os_str(),
        fixture_src("needs.c").as_os_str(),
        "-DFIXTURE_MAIN".as_ref(),
        fixture_src("fakelib.c").as_os_str(),
    ]);
    patched("big-endian", 5, &[2]);
    patched("osabi", 7, &[5]);
    patched("abiversion", 7, &[3, 4]);
    patched("ident-version", 6, &[0]);
    patched("e-version", 0x14, &[2]);
    std::fs::create_dir_all(d.path("empty")).unwrap();
    std::fs::write(d.path("empty/libx.so"), b"").unwrap();
    std::fs::create_dir_all(d.path("a-directory/libx.so")).unwrap();
    std::fs::create_dir_all(d.path("pie")).unwrap();
    cc(&[
        "-pie".as_ref(),
        "-fPIE".as_ref(),
        "-o".as_ref(),
        d.path("pie/libx.so").as_os_str(),
        fixture_src("needs.c").as_os_str(),
        "-DFIXTURE_MAIN".as_ref(),
        fixture_src("fakelib.c").as_os_str(),
    ]);
    let cases = [
        "object",
        "exec",
        "pie",
        "big-endian",
        "osabi",
        "abiversion",
        "ident-version",
        "e-version",
        "empty",
        "a-directory",
    ];
    for case in cases {
        let dir = d.path(case);
        let env = [("LD_LIBRARY_PATH", dir.as_os_str())];
        let real = Command::new(&exe).env("LD_LIBRARY_PATH", &dir).output().unwrap();
        assert_eq!(real.status.code(), Some(127), "{case}: the real run fails");
        let real_err = String::from_utf8_lossy(&real.stderr).into_owned();
        let ldd = Command::new("ldd").arg(&exe).env("LD_LIBRARY_PATH", &dir).output().unwrap();
        assert_eq!(ldd.status.code(), Some(1), "{case}: ldd fails too");
        let j = json(&exe, &env);
        let entry = j["libraries"].as_array().unwrap().iter().find(|l| l["name"] == "libx.so").unwrap().clone();
        let refused = &entry["refused"];
        assert!(refused["path"].as_str().unwrap().starts_with(dir.to_str().unwrap()), "{case}: {entry}");
        let error = refused["error"].as_str().unwrap();
        assert!(
            real_err.trim_end().ends_with(&format!(": {error}")),
            "{case}: loader said {real_err:?}, culaunch {error:?}"
        );
    }
    // A file of another class is passed over silently.
    patched("class", 4, &[1]);
    let class = d.path("class");
    let e = agree(&exe, &[("LD_LIBRARY_PATH", class.as_os_str())], "libx.so");
    assert!(e["path"].as_str().unwrap().contains("/good/"), "{e}");
}

#[test]
fn a_long_rpath_is_read_like_the_loader_reads_it() {
    let d = scratch("long-rpath");
    d.build("lib/libx.so", false, &[], &[]);
    // Spack/Nix style: hundreds of store directories, 20 KB in all.
    let mut rpath: Vec<String> = (0..400).map(|i| format!("/nix/store/{i:032}-not-here/lib")).collect();
    rpath.push(d.path("lib").display().to_string());
    let rpath = rpath.join(":");
    assert!(rpath.len() > 4096);
    let exe = d.build("bin/prog", true, &["lib/libx.so"], &[&format!("-Wl,--disable-new-dtags,-rpath,{rpath}")]);
    assert_eq!(rule(&agree(&exe, &[], "libx.so")), "rpath");
}

#[test]
fn a_32_bit_program_finds_its_32_bit_libraries_like_ldd() {
    let d = scratch("m32");
    let exe = d.path("m32");
    let built = Command::new("cc")
        .args(["-m32", "-o"])
        .arg(&exe)
        .arg(fixture_src("needs.c"))
        .arg("-DFIXTURE_MAIN")
        .arg(fixture_src("fakelib.c"))
        .output()
        .unwrap();
    if !built.status.success() {
        eprintln!(
            "SKIPPED: `cc -m32` cannot build here (install gcc-multilib): {}",
            String::from_utf8_lossy(&built.stderr)
        );
        return;
    }
    let e = agree(&exe, &[], "libc.so.6");
    assert_ne!(rule(&e), "missing", "{e}");
    let j = json(&exe, &[]);
    assert!(j["interpreter"].as_str().unwrap().contains("ld-linux.so.2"), "{j}");
    // The 32-bit search really is the 32-bit loader's: $LIB.
    d.build("unused/libz.so", false, &[], &[]);
    let (want, _) = ldd_r(&exe, &[]);
    let (got, _) = check_ldd(&exe, &[]);
    assert_eq!(got, want);
}

/// The issue's hostile file: 5000 RPATH entries (half of them existing,
/// empty directories) and 4000 DT_NEEDED, which took 150 s.
#[test]
fn five_thousand_rpath_entries_and_four_thousand_needed_take_linear_time() {
    let d = scratch("quadratic");
    let stub = d.path("stub/libstub.so");
    std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
    cc(&["-shared".as_ref(), "-fPIC".as_ref(), "-o".as_ref(), stub.as_os_str(), fixture_src("fakelib.c").as_os_str()]);
    let names = d.path("names");
    std::fs::create_dir_all(&names).unwrap();
    let mut args = vec!["-Wl,--no-as-needed".to_owned(), format!("-L{}", names.display())];
    for i in 0..4000 {
        std::os::unix::fs::symlink(&stub, names.join(format!("libn{i}.so"))).unwrap();
        args.push(format!("-l:libn{i}.so"));
    }
    let mut rpath = Vec::new();
    for i in 0..5000 {
        let dir = d.path(&format!("rp/{i}"));
        if i % 2 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        rpath.push(dir.display().to_string());
    }
    // The libraries are found only past every RPATH entry, through
    // LD_LIBRARY_PATH.
    args.push(format!("-Wl,--disable-new-dtags,-rpath,{}", rpath.join(":")));
    let response = d.path("args");
    std::fs::write(&response, args.join("\n")).unwrap();
    let exe = d.path("prog");
    cc(&[
        "-o".as_ref(),
        exe.as_os_str(),
        fixture_src("needs.c").as_os_str(),
        "-DFIXTURE_MAIN".as_ref(),
        fixture_src("fakelib.c").as_os_str(),
        format!("@{}", response.display()).as_ref(),
    ]);
    assert!(std::fs::metadata(&exe).unwrap().len() > 100_000);
    let started = std::time::Instant::now();
    let out = Command::new(CULAUNCH).args(["deps", "--ldd"]).arg(&exe).env("LD_LIBRARY_PATH", &names).output().unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took < std::time::Duration::from_secs(2), "deps took {took:?}");
    // All 4000 names are one file (one inode): the loader maps it once.
    let text = String::from_utf8_lossy(&out.stdout);
    // (ldd itself needs a minute of system time here: not run.)
    let libn: Vec<&str> = text.lines().filter(|l| l.contains("libn")).collect();
    assert_eq!(libn, vec![format!("\tlibn0.so => {}/libn0.so", names.display())], "{text}");
    // A traced run pays the same closure before the start (pre-flight):
    // bounded, it ends as the bare run does (the loader finds no libn0.so
    // without LD_LIBRARY_PATH: 127 and its own line), in seconds, not the
    // minutes a quadratic closure took.
    let bare = Command::new(&exe).output().unwrap();
    assert_eq!(bare.status.code(), Some(127), "{}", String::from_utf8_lossy(&bare.stderr));
    let started = std::time::Instant::now();
    let traced = Command::new(CULAUNCH).args(["-q", "--"]).arg(&exe).output().unwrap();
    let took = started.elapsed();
    assert_eq!(traced.status.code(), bare.status.code(), "{}", String::from_utf8_lossy(&traced.stderr));
    assert_eq!(String::from_utf8_lossy(&traced.stderr), String::from_utf8_lossy(&bare.stderr));
    assert!(took < std::time::Duration::from_secs(5), "a traced start took {took:?} (the pre-flight has a 1 s budget)");
}

/// `deps --check --ldd` prints what `ldd -r` prints, byte for byte (its
/// addresses and the vDSO aside), and exits 1 when that holds a report.
fn check_agrees(file: &Path, env: &[(&str, &OsStr)]) -> String {
    let (want, _) = ldd_r(file, env);
    let (got, code) = check_ldd(file, env);
    assert_eq!(got, want, "culaunch deps --check --ldd vs ldd -r for {}", file.display());
    let reports = want.lines().any(|l| !l.starts_with('\t'));
    assert_eq!(code, Some(if reports { 1 } else { 0 }), "{got}");
    got
}

fn versioned_lib(d: &Dir, rel: &str, new: bool) -> PathBuf {
    versioned_lib_with(d, rel, new, &[])
}

/// `versioned_lib` built with `extra` flags (`-m32`, `-Wl,--hash-style=sysv`).
fn versioned_lib_with(d: &Dir, rel: &str, new: bool, extra: &[&str]) -> PathBuf {
    let out = d.path(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let map = fixture_src(if new { "versioned-new.map" } else { "versioned-old.map" });
    let mut args: Vec<std::ffi::OsString> = vec!["-shared".into(), "-fPIC".into(), "-o".into(), out.clone().into()];
    args.extend(extra.iter().map(std::ffi::OsString::from));
    args.push(fixture_src("versioned.c").into());
    if new {
        args.push("-DFIXTURE_NEW".into());
    }
    args.push(format!("-Wl,--version-script={}", map.display()).into());
    args.push("-Wl,-soname,libversioned.so".into());
    cc(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    out
}

#[test]
fn check_reports_missing_version_nodes_and_symbols_as_ldd_r_does() {
    let d = scratch("check-versions");
    versioned_lib(&d, "new/libversioned.so", true);
    versioned_lib(&d, "old/libversioned.so", false);
    let exe = d.path("bin/prog");
    std::fs::create_dir_all(d.path("bin")).unwrap();
    cc(&[
        "-o".as_ref(),
        exe.as_os_str(),
        fixture_src("uses-versioned.c").as_os_str(),
        format!("-L{}", d.path("new").display()).as_ref(),
        "-l:libversioned.so".as_ref(),
        format!("-Wl,-rpath,{}", d.path("new").display()).as_ref(),
    ]);
    // Fine as built; the older copy first on LD_LIBRARY_PATH lacks V2.
    check_agrees(&exe, &[]);
    let old = d.path("old");
    let got = check_agrees(&exe, &[("LD_LIBRARY_PATH", old.as_os_str())]);
    assert!(got.contains("version `V2' not found (required by "), "{got}");
    assert!(got.contains("undefined symbol: f2, version V2\t("), "{got}");
    assert!(!got.contains("nowhere"), "a weak undefined symbol is not reported: {got}");
    // The explanation names the provider that lacks it and the copy that has it.
    let j = json_check(&exe, &[("LD_LIBRARY_PATH", old.as_os_str())]);
    let p = j["problems"].as_array().unwrap();
    let missing = p.iter().find(|p| p["kind"] == "missing_version").unwrap();
    assert_eq!(missing["provider"].as_str().unwrap(), old.join("libversioned.so").to_str().unwrap());
    assert_eq!(
        missing["explanation"]["alternative"].as_str().unwrap(),
        d.path("new/libversioned.so").to_str().unwrap()
    );
    // A library with no version definitions at all: ld.so's own warning.
    std::fs::create_dir_all(d.path("plain")).unwrap();
    let plain_lib = d.path("plain/libversioned.so");
    cc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        plain_lib.as_os_str(),
        fixture_src("versioned.c").as_os_str(),
        "-DFIXTURE_NEW".as_ref(),
        "-Wl,-soname,libversioned.so".as_ref(),
    ]);
    // (ld.so then trips an assertion of its own while relocating: what it
    // printed before that must be ours.)
    let plain = d.path("plain");
    let env = [("LD_LIBRARY_PATH", plain.as_os_str())];
    let ((want, _), (got, _)) = (ldd_r(&exe, &env), check_ldd(&exe, &env));
    assert!(got.contains("no version information available (required by "), "{got}");
    let got_lines: Vec<&str> = got.lines().collect();
    assert_eq!(&want.lines().collect::<Vec<_>>()[..got_lines.len()], &got_lines[..], "{want}");
}

/// The missing-version shape of the test above, built with `extra` flags:
/// `deps --check --ldd` must print what `ldd -r` prints, with the good copy
/// and with the older one first on LD_LIBRARY_PATH. `false` when `cc`
/// cannot build with those flags here.
fn versioned_case_agrees(name: &str, extra: &[&str]) -> bool {
    let d = scratch(name);
    let probe = Command::new("cc")
        .args(extra)
        .args(["-shared", "-fPIC", "-o"])
        .arg(d.path("probe.so"))
        .arg(fixture_src("versioned.c"))
        .output()
        .unwrap();
    if !probe.status.success() {
        eprintln!("SKIPPED: `cc {}` cannot build here: {}", extra.join(" "), String::from_utf8_lossy(&probe.stderr));
        return false;
    }
    versioned_lib_with(&d, "new/libversioned.so", true, extra);
    versioned_lib_with(&d, "old/libversioned.so", false, extra);
    let exe = d.path("bin/prog");
    std::fs::create_dir_all(d.path("bin")).unwrap();
    let mut args: Vec<std::ffi::OsString> = extra.iter().map(std::ffi::OsString::from).collect();
    args.extend([
        "-o".into(),
        exe.clone().into(),
        fixture_src("uses-versioned.c").into(),
        format!("-L{}", d.path("new").display()).into(),
        "-l:libversioned.so".into(),
        format!("-Wl,-rpath,{}", d.path("new").display()).into(),
    ]);
    cc(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    check_agrees(&exe, &[]);
    let old = d.path("old");
    let got = check_agrees(&exe, &[("LD_LIBRARY_PATH", old.as_os_str())]);
    assert!(got.contains("version `V2' not found (required by "), "{got}");
    assert!(got.contains("undefined symbol: f2, version V2\t("), "{got}");
    true
}

/// 32-bit files: ELF32 structures and i386's DT_REL relocations.
#[test]
fn check_equals_ldd_r_on_32_bit_files_with_rel_relocations() {
    if versioned_case_agrees("check-m32", &["-m32"]) {
        let d = scratch("check-m32-kind");
        versioned_lib_with(&d, "lib.so", true, &["-m32"]);
        let h = Command::new("readelf").args(["-d"]).arg(d.path("lib.so")).output().unwrap();
        let dynamic = String::from_utf8_lossy(&h.stdout);
        assert!(dynamic.contains("(REL)") && !dynamic.contains("(RELA)"), "the fixture uses DT_REL: {dynamic}");
    }
}

/// Objects with only the SysV hash table (DT_HASH, no DT_GNU_HASH).
#[test]
fn check_equals_ldd_r_on_files_with_only_a_sysv_hash_table() {
    assert!(versioned_case_agrees("check-sysv", &["-Wl,--hash-style=sysv"]), "cc builds 64-bit files here");
}

/// A library whose DT_GNU_HASH says a bloom shift of 32 or more. The
/// loader then finds a symbol only where the bloom word happens to have
/// the bit the damaged shift picks, and ldd -r reports the others as
/// undefined: glibc 2.36 on shifts a 32-bit hash, so 40 means 8; before,
/// a 64-bit one, so 40 leaves 0; the CPU takes the count modulo the width.
/// deps --check must find and miss the same ones, here and, when the glibc
/// matrix's bullseye root is cached, under glibc 2.31.
#[test]
fn check_equals_ldd_r_on_a_library_whose_gnu_hash_has_a_damaged_bloom_shift() {
    let d = scratch("check-bloom-shift");
    bloom_shift_case(&d.0, &d.0, |exe| check_agrees(exe, &[]));
    let Some(root) = bullseye_chroot("the glibc 2.31 half") else { return };
    let inside = PathBuf::from(format!("/tmp/culaunch-bloom-shift-{}", std::process::id()));
    let host = root.join(inside.strip_prefix("/").unwrap());
    bloom_shift_case(&host, &inside, |exe| {
        let exe = inside.join(exe.strip_prefix(&host).unwrap());
        let want = ldd_text(&Command::new("chroot").arg(&root).arg("ldd").arg("-r").arg(&exe).output().unwrap());
        let got = Command::new(CULAUNCH)
            .args(["deps", "--check", "--ldd", "--root"])
            .arg(&root)
            .arg(&exe)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&got.stdout).into_owned();
        assert_eq!(got, want, "culaunch deps --check --ldd --root vs ldd -r under glibc 2.31");
        got
    });
    let _ = std::fs::remove_dir_all(&host);
}

/// Builds, in `dir` (which the loader sees as `seen`), a program calling
/// 48 functions of libmany.so (no libc: it may run under another glibc),
/// damages the library's bloom shift in turn to 32, 40, 63 and 70, and
/// has `agrees` compare culaunch with ldd -r on the program.
fn bloom_shift_case(dir: &Path, seen: &Path, agrees: impl Fn(&Path) -> String) {
    let n = 48;
    std::fs::create_dir_all(dir).unwrap();
    let (lib_src, prog_src) = (dir.join("many.c"), dir.join("prog.c"));
    std::fs::write(&lib_src, (0..n).map(|i| format!("int fn_{i}(void) {{ return {i}; }}\n")).collect::<String>())
        .unwrap();
    let decls: String = (0..n).map(|i| format!("int fn_{i}(void);\n")).collect();
    let calls: String = (0..n).map(|i| format!("fn_{i}() + ")).collect();
    std::fs::write(&prog_src, format!("{decls}int x;\nvoid _start(void) {{ x = {calls}0; }}\n")).unwrap();
    let lib = dir.join("libmany.so");
    let nolibc = ["-nostdlib".as_ref(), "-Wl,--dynamic-linker=/lib64/ld-linux-x86-64.so.2".as_ref()];
    cc(&[&nolibc[..], &["-shared".as_ref(), "-fPIC".as_ref(), "-o".as_ref(), lib.as_os_str(), lib_src.as_os_str()]]
        .concat());
    let exe = dir.join("prog");
    cc(&[
        &nolibc[..],
        &[
            "-o".as_ref(),
            exe.as_os_str(),
            prog_src.as_os_str(),
            format!("-L{}", dir.display()).as_ref(),
            "-lmany".as_ref(),
            format!("-Wl,-rpath,{}", seen.display()).as_ref(),
        ],
    ]
    .concat());
    let good = std::fs::read(&lib).unwrap();
    let shift_at = gnu_hash_offset(&good) + 12;
    let mut missed = Vec::new();
    for shift in [32u32, 40, 63, 70] {
        let mut bytes = good.clone();
        bytes[shift_at..shift_at + 4].copy_from_slice(&shift.to_le_bytes());
        std::fs::write(&lib, &bytes).unwrap();
        missed.push(agrees(&exe).matches("undefined symbol: fn_").count());
    }
    std::fs::write(&lib, &good).unwrap();
    // The case means something only if the damage hid some symbols, and
    // not every one every time.
    assert!(missed.iter().any(|&m| m > 0) && missed.iter().any(|&m| m < n), "missed per shift: {missed:?}");
}

/// A DT_GNU_HASH that claims two billion buckets (the loader reads past
/// its mapping and crashes, so ldd says nothing useful): deps --check reads
/// up to the file's end and answers at once, never hangs or panics.
#[test]
fn check_answers_at_once_on_a_gnu_hash_claiming_two_billion_buckets() {
    let d = scratch("check-huge-nbuckets");
    bloom_shift_case(&d.0, &d.0, |exe| check_agrees(exe, &[]));
    let lib = d.path("libmany.so");
    let mut bytes = std::fs::read(&lib).unwrap();
    let at = gnu_hash_offset(&bytes);
    bytes[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    std::fs::write(&lib, &bytes).unwrap();
    for file in [&lib, &d.path("prog")] {
        let start = std::time::Instant::now();
        let out = Command::new(CULAUNCH).args(["deps", "--check"]).arg(file).output().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?} for {}", start.elapsed(), file.display());
    }
}

/// The file offset of the SHT_GNU_HASH section of a 64-bit little-endian
/// ELF file (what DT_GNU_HASH points at, in a file as linked).
fn gnu_hash_offset(elf: &[u8]) -> usize {
    const SHT_GNU_HASH: u32 = 0x6fff_fff6;
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&sh| u32_at(sh + 4) == SHT_GNU_HASH)
        .map(|sh| u64_at(sh + 0x18))
        .expect("cc links a DT_GNU_HASH table")
}

fn json_check(file: &Path, env: &[(&str, &OsStr)]) -> Value {
    let out = Command::new(CULAUNCH)
        .args(["deps", "--check", "--json"])
        .arg(file)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn check_reports_an_undefined_symbol_of_a_library_as_ldd_r_does() {
    let d = scratch("check-undefined");
    let lib = d.path("libplugin.so");
    cc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        lib.as_os_str(),
        fixture_src("undefined.c").as_os_str(),
        "-Wl,-z,now".as_ref(),
    ]);
    let got = check_agrees(&lib, &[]);
    assert!(got.contains("undefined symbol: not_defined_anywhere\t("), "{got}");
    // And by a bare name, which ldd calls ./NAME.
    let bare =
        Command::new(CULAUNCH).args(["deps", "--check", "--ldd", "libplugin.so"]).current_dir(&d.0).output().unwrap();
    assert!(String::from_utf8_lossy(&bare.stdout).contains("(./libplugin.so)"));
}

/// A versioned library that is missing, needed by the program and by two
/// of its libraries: `ldd -r` lists the interpreter right after the last
/// library found before it (a missing one is not in the search list), and
/// names the missing version only where the object's version table, sized
/// from the files the loader found, holds it. Run by a relative name, as
/// the loader's `$ORIGIN` is then `DIR/.`.
#[test]
fn check_with_a_missing_versioned_library_matches_ldd_r_line_for_line() {
    let d = scratch("check-missing-versioned");
    versioned_lib(&d, "gone/libversioned.so", true);
    let lib = d.path("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let build = |name: &str, memcpy: bool, needs: &[&str]| {
        let out = lib.join(format!("lib{name}.so"));
        let mut args: Vec<std::ffi::OsString> =
            ["-shared", "-fPIC", "-O0", "-fno-builtin", "-o"].map(Into::into).into();
        args.push(out.into());
        args.push(fixture_src("uses-f1.c").into());
        args.push(format!("-DNAME=uses_{name}").into());
        if memcpy {
            args.push("-DWITH_MEMCPY".into());
        }
        args.push(format!("-L{}", lib.display()).into());
        args.push(format!("-L{}", d.path("gone").display()).into());
        args.extend(needs.iter().map(Into::into));
        args.push("-Wl,-rpath,$ORIGIN".into());
        cc(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    };
    build("a", false, &["-l:libversioned.so"]);
    build("b", true, &["-l:libversioned.so"]);
    build("top", false, &["-Wl,--no-as-needed", "-la", "-lb", "-l:libversioned.so"]);
    let ldd = Command::new("ldd")
        .args(["-r", "./libtop.so"])
        .current_dir(&lib)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert_eq!(ldd.status.code(), Some(0), "{}", String::from_utf8_lossy(&ldd.stderr));
    let want = ldd_text(&ldd);
    // The fixture has the shape this test is about.
    let dot = format!("{}/.", lib.display());
    assert!(want.contains(&format!("undefined symbol: f1\t({dot}/liba.so)")), "{want}");
    assert!(want.contains(&format!("undefined symbol: f1, version V1\t({dot}/libb.so)")), "{want}");
    let lines: Vec<&str> = want.lines().collect();
    let interp = lines.iter().position(|l| l.starts_with("\t/") && l.contains("ld-linux")).unwrap();
    let last_missing = lines.iter().rposition(|l| l.ends_with("libversioned.so => not found")).unwrap();
    assert!(interp < last_missing, "{want}");
    let got = Command::new(CULAUNCH)
        .args(["deps", "--check", "--ldd", "./libtop.so"])
        .current_dir(&lib)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), want);
    assert_eq!(got.status.code(), Some(1));
}

/// The cuDNN 8 failure: libcudnn_cnn_infer.so.8, linked -z now against
/// libcudnn_ops_infer.so.8's version node, with an older ops library first
/// on LD_LIBRARY_PATH.
#[test]
fn check_explains_the_cudnn_8_shadowing_and_names_the_copy_beside_the_requester() {
    let d = scratch("check-cudnn8");
    let wheel = d.path("site-packages/nvidia/cudnn/lib");
    let system = d.path("usr/local/cuda-old/lib64");
    std::fs::create_dir_all(&wheel).unwrap();
    std::fs::create_dir_all(&system).unwrap();
    let ops = |dir: &Path, new: bool| {
        let out = dir.join("libcudnn_ops_infer.so.8");
        let mut args: Vec<std::ffi::OsString> = vec!["-shared".into(), "-fPIC".into(), "-o".into(), out.into()];
        args.push(fixture_src("cudnn-ops.c").into());
        if new {
            args.push("-DFIXTURE_NEW".into());
        }
        args.push(format!("-Wl,--version-script={}", fixture_src("cudnn-ops.map").display()).into());
        args.push("-Wl,-soname,libcudnn_ops_infer.so.8".into());
        cc(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    };
    ops(&wheel, true);
    ops(&system, false);
    let cnn = wheel.join("libcudnn_cnn_infer.so.8");
    cc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        cnn.as_os_str(),
        fixture_src("cudnn-cnn.c").as_os_str(),
        "-Wl,-soname,libcudnn_cnn_infer.so.8".as_ref(),
        "-Wl,-z,now".as_ref(),
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN".as_ref(),
        format!("-L{}", wheel.display()).as_ref(),
        "-l:libcudnn_ops_infer.so.8".as_ref(),
    ]);
    check_agrees(&cnn, &[]);
    let env = [("LD_LIBRARY_PATH", system.as_os_str())];
    let got = check_agrees(&cnn, &env);
    assert!(got.contains("undefined symbol: _ZN11nvrtcHelper4loadEb, version libcudnn_ops_infer.so.8\t("), "{got}");
    let j = json_check(&cnn, &env);
    let p = j["problems"].as_array().unwrap().iter().find(|p| p["kind"] == "undefined_symbol").unwrap().clone();
    assert_eq!(p["provider"].as_str().unwrap(), system.join("libcudnn_ops_infer.so.8").to_str().unwrap(), "{p}");
    let e = &p["explanation"];
    assert_eq!(e["alternative"].as_str().unwrap(), wheel.join("libcudnn_ops_infer.so.8").to_str().unwrap(), "{e}");
    assert!(e["found_in"].as_str().unwrap().contains("libcudnn_cnn_infer.so.8"), "{e}");
    assert!(e["advice"].as_str().unwrap().contains("--pin libcudnn_ops_infer.so.8="), "{e}");
}

#[test]
fn check_equals_ldd_r_on_a_sample_of_system_files() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deps-oracle");
    let mut cmd = Command::new(script);
    cmd.args(["--check", "--sample", "40", "--culaunch", CULAUNCH]);
    // The real torch wheel's libraries too, where the real-framework tier
    // left its venv (libtorch_cuda.so: 25 libraries, 190,000 relocations).
    if let Some(torch) = torch_lib_dir() {
        cmd.arg(torch);
    }
    let out = cmd.env_remove("LD_LIBRARY_PATH").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" 0 different"), "{text}");
}

/// torch/lib of the real-framework tier's venv (`CULAUNCH_TORCH_VENV`, else
/// its cache), when torch is installed there.
fn torch_lib_dir() -> Option<PathBuf> {
    let venv = std::env::var_os("CULAUNCH_TORCH_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/culaunch-tier/torch")))?;
    std::fs::read_dir(venv.join("lib")).ok()?.flatten().find_map(|e| {
        let d = e.path().join("site-packages/torch/lib");
        d.join("libtorch_cuda.so").exists().then_some(d)
    })
}

/// A Debian bullseye (glibc 2.31) root made by debootstrap, when there is
/// one: `CULAUNCH_BULLSEYE_ROOT`, or the cache the glibc matrix fills.
fn bullseye_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("CULAUNCH_BULLSEYE_ROOT").map(PathBuf::from).into_iter().collect();
    for name in ["bullseye", "bullseye-elf"] {
        candidates.push(home.join(".cache/culaunch-roots").join(name));
    }
    candidates.into_iter().find(|r| r.join(".complete").exists() && r.join("usr/bin/ldd").exists())
}

fn chroot_available() -> bool {
    Command::new("chroot").arg("/").arg("true").status().is_ok_and(|s| s.success())
}

/// The bullseye root when there is one and this user may chroot into it;
/// otherwise says why `what` is skipped.
fn bullseye_chroot(what: &str) -> Option<PathBuf> {
    let Some(root) = bullseye_root() else {
        eprintln!("SKIPPED {what}: no bullseye root (set CULAUNCH_BULLSEYE_ROOT, or `debootstrap --variant=minbase bullseye ~/.cache/culaunch-roots/bullseye && touch …/.complete`)");
        return None;
    };
    if !chroot_available() {
        eprintln!("SKIPPED {what}: chroot needs root");
        return None;
    }
    Some(root)
}

#[test]
fn deps_root_equals_ldd_inside_a_bullseye_root() {
    let Some(root) = bullseye_chroot("this test") else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deps-oracle");
    for extra in [&["--sample", "30"][..], &["--check", "--sample", "15"]] {
        let out = Command::new(&script)
            .args(extra)
            .arg("--root")
            .arg(&root)
            .args(["--culaunch", CULAUNCH])
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(" 0 different"),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // glibc 2.31 gives GLOB_DAT a relocation class of its own: _testcapi's
    // GLOB_DAT of the missing PyObject_Free, then its R_X86_64_64s, are two
    // reports there (one under 2.36).
    let testcapi = "/usr/lib/python3.9/lib-dynload/_testcapi.cpython-39-x86_64-linux-gnu.so";
    if root.join(testcapi.trim_start_matches('/')).exists() {
        let ldd = Command::new("chroot").arg(&root).args(["ldd", "-r", testcapi]).output().unwrap();
        let want = ldd_text(&ldd);
        let free = format!("undefined symbol: PyObject_Free\t({testcapi})\n");
        assert_eq!(want.matches(&free).count(), 2, "{want}");
        let got = Command::new(CULAUNCH)
            .args(["deps", "--check", "--ldd", "--root"])
            .arg(&root)
            .arg(testcapi)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got.stdout), want);
    }

    // glibc 2.31's own rules: the legacy `x86_64` subdirectory is searched,
    // glibc-hwcaps (2.33 on) is not — where this machine's loader does the
    // opposite.
    let inside = format!("/tmp/culaunch-deps-root-{}", std::process::id());
    let host = root.join(inside.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&host);
    let lib = |sub: &str| {
        let dir = host.join("lib").join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        cc(&[
            "-shared".as_ref(),
            "-fPIC".as_ref(),
            "-nostdlib".as_ref(),
            "-o".as_ref(),
            dir.join("libx.so").as_os_str(),
            fixture_src("versioned.c").as_os_str(),
            "-Wl,-soname,libx.so".as_ref(),
        ]);
    };
    for sub in ["", "x86_64", "glibc-hwcaps/x86-64-v2"] {
        lib(sub);
    }
    let prog = host.join("prog");
    cc(&[
        "-nostdlib".as_ref(),
        "-o".as_ref(),
        prog.as_os_str(),
        fixture_src("nostart.c").as_os_str(),
        format!("-L{}", host.join("lib").display()).as_ref(),
        "-l:libx.so".as_ref(),
        "-Wl,--dynamic-linker=/lib64/ld-linux-x86-64.so.2".as_ref(),
    ]);
    let llp = format!("{inside}/lib");
    let ldd = Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/env", &format!("LD_LIBRARY_PATH={llp}"), "/usr/bin/ldd", &format!("{inside}/prog")])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let want: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter(|l| l.contains(" => "))
        .map(|l| l.split(" (0x").next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(want, vec![format!("libx.so => {inside}/lib/x86_64/libx.so")], "bullseye's ldd");
    let ours = Command::new(CULAUNCH)
        .args(["deps", "--ldd", "--root"])
        .arg(&root)
        .arg(format!("{inside}/prog"))
        .env("LD_LIBRARY_PATH", &llp)
        .output()
        .unwrap();
    let got: Vec<String> = String::from_utf8_lossy(&ours.stdout)
        .lines()
        .filter(|l| l.contains(" => "))
        .map(|l| l.trim().to_owned())
        .collect();
    let _ = std::fs::remove_dir_all(&host);
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&ours.stderr));
}

/// An arm64 sysroot unpacked from Debian packages (`scripts/arm64-sysroot`).
fn arm64_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    let candidates = [
        std::env::var_os("CULAUNCH_ARM64_ROOT").map(PathBuf::from),
        Some(home.join(".cache/culaunch-roots/arm64-elf")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|r| r.join(".complete").exists() && r.join("lib/ld-linux-aarch64.so.1").exists())
}

/// What arm64's own loader, run by qemu-user, lists for `file` (a path in
/// the root), as `deps --ldd` prints it.
fn qemu_list(root: &Path, file: &str, llp: Option<&str>) -> Option<String> {
    let mut cmd = Command::new("qemu-aarch64");
    if let Some(l) = llp {
        cmd.arg("-E").arg(format!("LD_LIBRARY_PATH={l}"));
    }
    let out =
        cmd.arg("-L").arg(root).arg(root.join("lib/ld-linux-aarch64.so.1")).arg("--list").arg(file).output().ok()?;
    let host_prefix = root.display().to_string();
    let text = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim_start().starts_with("(0x"))
        .map(|l| l.split(" (0x").next().unwrap().replace(&host_prefix, ""))
        // qemu runs the loader by its host path, so ld.so's own name differs
        // from the name it is needed as; on the machine they are one.
        .map(|l| match l.split_once(" => ") {
            Some((a, b)) if a.trim() == b => format!("\t{b}\n"),
            _ => l + "\n",
        })
        .collect();
    Some(text)
}

#[test]
fn deps_root_reads_an_arm64_sysroot_as_its_loader_under_qemu_does() {
    let Some(root) = arm64_root() else {
        eprintln!("SKIPPED: no arm64 sysroot (run scripts/arm64-sysroot, or set CULAUNCH_ARM64_ROOT)");
        return;
    };
    if Command::new("qemu-aarch64").arg("--version").output().is_err() {
        eprintln!("SKIPPED: qemu-aarch64 (qemu-user) is not installed");
        return;
    }
    let ours = |file: &str, llp: Option<&str>| -> String {
        let mut cmd = Command::new(CULAUNCH);
        cmd.args(["deps", "--ldd", "--root"]).arg(&root).arg(file).env_remove("LD_LIBRARY_PATH");
        if let Some(l) = llp {
            cmd.env("LD_LIBRARY_PATH", l);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut compared = 0;
    for dir in ["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.contains(".so") || e.file_type().is_ok_and(|t| t.is_symlink()) || !e.path().is_file() {
                continue;
            }
            let file = format!("/{dir}/{name}");
            let Some(want) = qemu_list(&root, &file, None) else { continue };
            if want.contains("statically linked") || want.trim().is_empty() {
                continue;
            }
            assert_eq!(ours(&file, None), want, "{file}");
            compared += 1;
        }
    }
    assert!(compared >= 5, "only {compared} arm64 files compared");
    // glibc 2.36's legacy subdirectories on arm64: AT_PLATFORM and the
    // "atomics" hwcap, under each directory.
    let inside = format!("/tmp/culaunch-deps-arm64-{}", std::process::id());
    let host = root.join(inside.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&host);
    let gcc_s = root.join("lib/aarch64-linux-gnu/libgcc_s.so.1");
    for sub in ["lib", "lib/aarch64/atomics"] {
        std::fs::create_dir_all(host.join(sub)).unwrap();
        std::fs::copy(&gcc_s, host.join(sub).join("libgcc_s.so.1")).unwrap();
    }
    let llp = format!("{inside}/lib");
    let file = "/usr/lib/aarch64-linux-gnu/libstdc++.so.6";
    let want = qemu_list(&root, file, Some(&llp)).unwrap();
    let got = ours(file, Some(&llp));
    let _ = std::fs::remove_dir_all(&host);
    assert!(want.contains(&format!("{inside}/lib/aarch64/atomics/libgcc_s.so.1")), "{want}");
    assert_eq!(got, want);
}

#[test]
fn paths_that_are_not_utf8_print_as_their_bytes_like_ldd() {
    use std::os::unix::ffi::OsStrExt;
    let d = scratch("bytes");
    let lib = d.build("lib/libx.so", false, &[], &[]);
    // A directory whose name is not UTF-8 (Latin-1 "é"), reached by RPATH.
    let odd = d.0.join(OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::rename(&lib, odd.join("libx.so")).unwrap();
    let exe = d.path("bin/prog");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    let rpath = [&b"-Wl,--disable-new-dtags,-rpath,"[..], odd.as_os_str().as_bytes()].concat();
    cc(&[
        fixture_src("needs.c").as_os_str(),
        OsStr::new("-DFIXTURE_MAIN"),
        fixture_src("fakelib.c").as_os_str(),
        OsStr::new("-o"),
        exe.as_os_str(),
        OsStr::new("-Wl,--no-as-needed"),
        odd.join("libx.so").as_os_str(),
        OsStr::from_bytes(&rpath),
    ]);
    let ldd = Command::new("ldd").arg(&exe).output().unwrap();
    let want: Vec<&[u8]> = ldd
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.windows(4).any(|w| w == b" => ") || l.starts_with(b"\t/"))
        .map(|l| l.split(|&b| b == b'(').next().unwrap().trim_ascii_end())
        .collect();
    assert!(want.iter().any(|l| l.windows(5).any(|w| w == b"caf\xe9/")), "{:?}", String::from_utf8_lossy(&ldd.stdout));
    let ours = Command::new(CULAUNCH).args(["deps", "--ldd"]).arg(&exe).output().unwrap();
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let got: Vec<&[u8]> =
        ours.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::trim_ascii_end).collect();
    assert_eq!(got, want);
    // The tree names the same bytes.
    let tree = Command::new(CULAUNCH).arg("deps").arg(&exe).output().unwrap();
    let path = odd.join("libx.so");
    assert!(tree.stdout.windows(path.as_os_str().len()).any(|w| w == path.as_os_str().as_bytes()));
}

#[test]
fn a_bloom_filter_whose_word_count_is_not_a_power_of_two_stops_the_load_like_the_loaders_assertion() {
    let d = scratch("bloom-words");
    let good = d.build("good/libx.so", false, &[], &[]);
    let exe = d.build("bin/prog", true, &["good/libx.so"], &[&format!("-Wl,-rpath,{}", d.path("good").display())]);
    let bytes = std::fs::read(&good).unwrap();
    let words_at = gnu_hash_offset(&bytes) + 8;
    for words in [0u32, 3, 6] {
        let dir = d.path(&format!("words-{words}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = bytes.clone();
        b[words_at..words_at + 4].copy_from_slice(&words.to_le_bytes());
        std::fs::write(dir.join("libx.so"), b).unwrap();
        let env = [("LD_LIBRARY_PATH", dir.as_os_str())];
        let ldd = Command::new("ldd").arg(&exe).env("LD_LIBRARY_PATH", &dir).output().unwrap();
        if words == 0 {
            // 0 passes glibc's test (0 & (0 - 1) == 0): ldd lists the closure.
            assert_eq!(ldd.status.code(), Some(0));
            let e = agree(&exe, &env, "libx.so");
            assert!(e["refused"].is_null() && e["path"].as_str().unwrap().starts_with(dir.to_str().unwrap()), "{e}");
            continue;
        }
        let real = Command::new(&exe).env("LD_LIBRARY_PATH", &dir).output().unwrap();
        assert_eq!(real.status.code(), Some(127), "{words} words: the real run fails");
        assert_eq!(ldd.status.code(), Some(1), "{words} words: ldd fails too");
        let real_err = String::from_utf8_lossy(&real.stderr).into_owned();
        let j = json(&exe, &env);
        let entry = j["libraries"].as_array().unwrap().iter().find(|l| l["name"] == "libx.so").unwrap().clone();
        let error = entry["refused"]["error"].as_str().unwrap_or_else(|| panic!("{words} words: not refused: {entry}"));
        let glibc_words = error.split(" (DT_GNU_HASH").next().unwrap();
        assert!(
            glibc_words.contains("Assertion") && real_err.trim_end().ends_with(glibc_words),
            "{words} words: loader said {real_err:?}, culaunch {error:?}"
        );
        assert!(error.contains(&format!("{words} words")), "{error}");
        // The damaged file itself: ldd, which maps it, dies on the same assertion.
        let lib = dir.join("libx.so");
        let ldd = Command::new("ldd").arg(&lib).output().unwrap();
        assert_eq!(ldd.status.code(), Some(1), "{words} words: ldd of the library fails");
        assert!(String::from_utf8_lossy(&ldd.stderr).contains(glibc_words), "{ldd:?}");
        let ours = Command::new(CULAUNCH).arg("deps").arg(&lib).output().unwrap();
        let warning = String::from_utf8_lossy(&ours.stderr);
        assert!(warning.contains("the loader stops at") && warning.contains(glibc_words), "{warning}");
    }
}

/// `ldd FILE` and `culaunch deps --ldd FILE` run in `cwd`, each as printed
/// (ldd's addresses and vDSO line left out).
fn both_in(cwd: &Path, file: &Path, env: &[(&str, &OsStr)]) -> (String, String) {
    let run = |cmd: &mut Command| cmd.current_dir(cwd).env_remove("LD_LIBRARY_PATH").envs(env.iter().copied()).output();
    let ldd = run(Command::new("ldd").arg(file)).unwrap();
    let ours = run(Command::new(CULAUNCH).args(["deps", "--ldd"]).arg(file)).unwrap();
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    (ldd_text(&ldd), String::from_utf8_lossy(&ours.stdout).into_owned())
}

/// ld.so gives up the rest of a search list when a candidate fails to
/// open otherwise than with ENOENT or EACCES (`open_path`): a link loop, a
/// socket. A later list still answers.
#[test]
fn a_candidate_that_fails_to_open_otherwise_ends_the_search_of_its_list() {
    let d = scratch("give-up");
    d.build("good/libgu.so", false, &[], &[]);
    std::fs::create_dir_all(d.path("loop")).unwrap();
    std::os::unix::fs::symlink("libgu.so", d.path("loop/libgu.so")).unwrap();
    std::fs::create_dir_all(d.path("sock")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(d.path("sock/libgu.so")).unwrap();
    let rpath = |first: &str| {
        format!("-Wl,--disable-new-dtags,-rpath,{}:{}", d.path(first).display(), d.path("good").display())
    };
    for first in ["loop", "sock"] {
        let exe = d.build(&format!("bin/{first}"), true, &["good/libgu.so"], &[&rpath(first)]);
        assert!(ldd_lines(&exe, &[]).contains(&"libgu.so => not found".to_owned()), "the loader gives up at {first}/");
        assert_eq!(rule(&agree(&exe, &[], "libgu.so")), "missing", "{first}");
    }
    // On LD_LIBRARY_PATH the loop ends that list only: RUNPATH finds it.
    let runpath = format!("-Wl,--enable-new-dtags,-rpath,{}", d.path("good").display());
    let exe = d.build("bin/runpath", true, &["good/libgu.so"], &[&runpath]);
    let llp = d.path("loop");
    assert_eq!(rule(&agree(&exe, &[("LD_LIBRARY_PATH", llp.as_os_str())], "libgu.so")), "runpath");
}

/// An empty LD_LIBRARY_PATH is none (`_dl_init_paths`); an empty entry in
/// a list is the current directory, and a library found there is named
/// without `=>`, its path being its name.
#[test]
fn an_empty_ld_library_path_is_none_and_an_empty_entry_the_current_directory() {
    let d = scratch("empty-entry");
    d.build("here/libhere.so", false, &[], &[]);
    let exe = d.build("bin/prog", true, &["here/libhere.so"], &[]);
    let here = d.path("here");
    for llp in ["", "/nonexistent:", ":/nonexistent", "/nonexistent::/nonexistent2"] {
        let (ldd, ours) = both_in(&here, &exe, &[("LD_LIBRARY_PATH", OsStr::new(llp))]);
        assert_eq!(ours, ldd, "LD_LIBRARY_PATH={llp:?}");
        let found = ldd.contains("\tlibhere.so\n");
        assert_eq!(found, !llp.is_empty(), "LD_LIBRARY_PATH={llp:?}: {ldd}");
    }
}

/// A DT_NEEDED of `..` opens the directory above the search entry, and
/// the loader stops at reading it. A listing never shows `.` or `..`; the
/// search must still find them.
#[test]
fn a_needed_dot_dot_is_the_directory_above_as_the_loader_finds_it() {
    let d = scratch("dot-dot");
    std::fs::create_dir_all(d.path("A")).unwrap();
    let lib = d.path("libdots.so");
    library_named(&lib, "..");
    let exe = d.path("prog");
    program_needing(&exe, &lib, &format!("-Wl,-rpath,{}", d.path("A").display()));
    let ldd = Command::new("ldd").arg(&exe).env_remove("LD_LIBRARY_PATH").output().unwrap();
    let above = format!("{}/..", d.path("A").display());
    assert!(ldd_text(&ldd).contains(&format!("{above}: cannot read file data: Error 21")), "{}", ldd_text(&ldd));
    let out = Command::new(CULAUNCH).args(["deps", "--ldd"]).arg(&exe).env_remove("LD_LIBRARY_PATH").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("\t.. => {above} (refused: cannot read file data: Error 21)")), "{text}");
}

/// A name the directory's listing lacks may still open where lookups fold
/// case (vfat, CIFS, an ext4 directory with casefolding): modelled by a
/// FUSE file system that lists `libcase.so` and opens `libCASE.so`. Needs
/// root and /dev/fuse; says so and passes over otherwise.
#[test]
fn where_lookups_fold_case_a_name_the_listing_lacks_is_still_tried() {
    if !is_root() || !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: needs root and /dev/fuse");
        return;
    }
    let d = scratch("casefold");
    let server = d.path("casefold_fuse");
    cc(&[fixture_src("casefold_fuse.c").as_os_str(), "-o".as_ref(), server.as_os_str()]);
    let lib = d.path("src/libcase.so");
    std::fs::create_dir_all(d.path("src")).unwrap();
    library_named(&lib, "libCASE.so");
    let mnt = d.path("ci");
    std::fs::create_dir_all(&mnt).unwrap();
    let served = Command::new(&server).arg(&mnt).arg("libcase.so").arg(&lib).status().unwrap();
    if !served.success() {
        eprintln!("skipped: cannot mount a FUSE file system here");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _mounted = Unmount(mnt.clone());
    for (name, dtags) in [("rpath", "--disable-new-dtags"), ("runpath", "--enable-new-dtags")] {
        let exe = d.path(name);
        program_needing(&exe, &lib, &format!("-Wl,{dtags},-rpath,{}", mnt.display()));
        let want = format!("libCASE.so => {}/libCASE.so", mnt.display());
        assert!(ldd_lines(&exe, &[]).contains(&want), "the loader opens it: {:?}", ldd_lines(&exe, &[]));
        assert_eq!(rule(&agree(&exe, &[], "libCASE.so")), name);
    }
}

/// A fake library at `lib` whose SONAME is `soname`.
fn library_named(lib: &Path, soname: &str) {
    let (flag, src) = (format!("-Wl,-soname,{soname}"), fixture_src("fakelib.c"));
    cc(&["-shared".as_ref(), "-fPIC".as_ref(), flag.as_ref(), "-o".as_ref(), lib.as_os_str(), src.as_os_str()]);
}

/// A program whose DT_NEEDED is `lib`'s SONAME, linked with `flags`.
fn program_needing(exe: &Path, lib: &Path, flags: &str) {
    let (needs, fakelib) = (fixture_src("needs.c"), fixture_src("fakelib.c"));
    let args: [&OsStr; 8] = [
        needs.as_ref(),
        "-DFIXTURE_MAIN".as_ref(),
        fakelib.as_ref(),
        "-o".as_ref(),
        exe.as_ref(),
        "-Wl,--no-as-needed".as_ref(),
        lib.as_ref(),
        flags.as_ref(),
    ];
    cc(&args);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
