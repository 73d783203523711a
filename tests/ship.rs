//! What shipping needs from the build and from the launcher's preflight: the
//! embedded module needs no newer glibc than the launcher (binutils' readelf
//! says so), and a module the loader cannot use is never silent — culaunch
//! stops with 125 before the start where the loader would print its
//! `cannot be loaded as audit interface` line and run the job untraced. The
//! ground truth is the loader itself: the same module in LD_AUDIT of a bare
//! run. (The wheel and the glibc matrix are `scripts/wheel` and
//! `scripts/glibc-matrix`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{os, CULAUNCH};

const LOADER_SKIPS: &str = "cannot be loaded as audit interface";

fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ship-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn cc(args: &[&std::ffi::OsStr]) -> bool {
    Command::new("cc").args(args).output().is_ok_and(|o| o.status.success())
}

/// The newest GLIBC_x.y node `file` needs, as readelf lists them.
fn newest_glibc_needed(file: &Path) -> Vec<u32> {
    let out = Command::new("readelf").args(["-V", "--wide"]).arg(file).output().expect("readelf (binutils) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("Name: GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            v.split('.').map(|n| n.parse().ok()).collect::<Option<Vec<u32>>>()
        })
        .max()
        .unwrap_or_else(|| panic!("{} needs no GLIBC node:\n{text}", file.display()))
}

/// culaunch with the module override, running `touch MARK`: MARK exists only
/// if the command was started.
fn run_with_module(module: &Path, dir: &Path) -> (Output, bool) {
    let mark = dir.join("started");
    let out = Command::new(CULAUNCH)
        .env("CULAUNCH_AUDIT_MODULE", module)
        .args(["--", "touch"])
        .arg(&mark)
        .output()
        .expect("culaunch runs");
    (out, mark.exists())
}

fn bare_with_audit(module: &Path) -> String {
    let out = Command::new("true").env("LD_AUDIT", module).output().expect("true runs");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_module_culaunch_writes_needs_no_newer_glibc_than_culaunch_itself() {
    let dir = scratch("floor");
    let out = Command::new(CULAUNCH)
        .env("XDG_CACHE_HOME", &dir)
        .args(["--quiet", "--", "sh", "-c", "echo \"$LD_AUDIT\""])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The module as the command's loader was told of it (before any
    // `NAME.d/$PLATFORM/NAME` layout: the file itself).
    let entry = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned();
    let module = PathBuf::from(entry.split(".so.d/").next().map(|p| format!("{p}.so")).unwrap_or(entry));
    assert!(module.is_file(), "culaunch wrote its module: {}", module.display());
    let (launcher, module) = (newest_glibc_needed(Path::new(CULAUNCH)), newest_glibc_needed(&module));
    assert!(module <= launcher, "the module needs GLIBC {module:?}, the launcher only {launcher:?}");
}

#[test]
fn a_module_needing_a_version_node_libc_lacks_stops_the_run_with_125_and_the_loader_never_speaks() {
    let dir = scratch("version");
    let stub = dir.join("stub/libc.so.6");
    std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
    let map = dir.join("stub.map");
    std::fs::write(&map, "GLIBC_2.99 { global: culaunch_fixture_symbol; };\n").unwrap();
    let src = fixture("versioned_module.c");
    assert!(cc(&[
        os("-shared"),
        os("-fPIC"),
        os("-DSTUB_PROVIDER"),
        src.as_os_str(),
        os(&format!("-Wl,--version-script={}", map.display())),
        os("-Wl,-soname,libc.so.6"),
        os("-o"),
        stub.as_os_str()
    ]));
    let module = dir.join("needs_glibc_2_99.so");
    assert!(cc(&[
        os("-shared"),
        os("-fPIC"),
        src.as_os_str(),
        os(&format!("-L{}", stub.parent().unwrap().display())),
        os("-l:libc.so.6"),
        os("-o"),
        module.as_os_str()
    ]));
    // Ground truth: the loader skips it, saying so on the job's stderr.
    let bare = bare_with_audit(&module);
    assert!(bare.contains(LOADER_SKIPS) && bare.contains("GLIBC_2.99"), "bare run: {bare}");

    let (out, started) = run_with_module(&module, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(!started, "the command must not start untraced");
    assert!(stderr.contains("GLIBC_2.99") && stderr.contains("libc.so.6"), "{stderr}");
    assert!(!stderr.contains(LOADER_SKIPS), "{stderr}");
}

#[test]
fn a_module_of_another_elf_class_stops_the_run_with_125() {
    let dir = scratch("class");
    let module = dir.join("module32.so");
    let src = fixture("versioned_module.c");
    let built = cc(&[
        os("-m32"),
        os("-shared"),
        os("-fPIC"),
        os("-DSTUB_PROVIDER"),
        src.as_os_str(),
        os("-o"),
        module.as_os_str(),
    ]);
    if !built {
        eprintln!("skipped: cc -m32 cannot build (gcc-multilib missing)");
        return;
    }
    let bare = bare_with_audit(&module);
    assert!(bare.contains(LOADER_SKIPS) && bare.contains("wrong ELF class"), "bare run: {bare}");
    let (out, started) = run_with_module(&module, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(!started && stderr.contains("32-bit") && !stderr.contains(LOADER_SKIPS), "{stderr}");
}

#[test]
fn an_unreadable_module_stops_the_run_with_125() {
    let dir = scratch("unreadable");
    for module in [dir.join("absent.so"), dir.clone()] {
        let bare = bare_with_audit(&module);
        assert!(bare.contains(LOADER_SKIPS), "bare run: {bare}");
        let (out, started) = run_with_module(&module, &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert!(!started && stderr.contains(&*module.to_string_lossy()), "{stderr}");
    }
}

#[test]
fn a_32_bit_command_keeps_its_exit_status_and_the_summary_lists_it_as_not_traced() {
    let dir = scratch("cmd32");
    let prog = dir.join("exit3");
    let src = dir.join("exit3.c");
    std::fs::write(&src, "int main(void) { return 3; }\n").unwrap();
    if !cc(&[os("-m32"), src.as_os_str(), os("-o"), prog.as_os_str()]) {
        eprintln!("skipped: cc -m32 cannot build (gcc-multilib missing)");
        return;
    }
    let bare = Command::new(&prog).output().unwrap();
    let summary = dir.join("summary.json");
    let out = Command::new(CULAUNCH).arg("--summary-json").arg(&summary).arg("--").arg(&prog).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), bare.status.code(), "{stderr}");
    assert!(!stderr.contains(LOADER_SKIPS), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let untraced = s["untraced"].as_array().expect("an untraced list");
    assert!(
        untraced
            .iter()
            .any(|u| u["exe"] == prog.to_string_lossy().as_ref() && u["reason"].as_str().unwrap().contains("32-bit")),
        "{s:#}"
    );
    assert_eq!(s["processes"].as_array().map(Vec::len), Some(0), "culaunch is no traced process: {s:#}");
}

/// A tmpfs mounted `noexec` for the test's life (root only; the test is
/// skipped where mounting is not allowed).
struct NoexecMount(PathBuf);

impl NoexecMount {
    fn new(at: &Path) -> Option<NoexecMount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "noexec,size=16m", "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| NoexecMount(at.to_path_buf()))
    }
}

impl Drop for NoexecMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_cache_directory_on_a_noexec_mount_never_serves_the_module() {
    let dir = scratch("noexec");
    let Some(mount) = NoexecMount::new(&dir.join("cache")) else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new(CULAUNCH)
        .env("XDG_CACHE_HOME", &mount.0)
        .env("TMPDIR", &tmp)
        .args(["--quiet", "--", "sh", "-c", "echo \"$LD_AUDIT\"; grep -c libculaunch_audit /proc/self/maps"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !stderr.contains(LOADER_SKIPS), "{stderr}");
    let module = PathBuf::from(stdout.lines().next().unwrap_or_default());
    assert!(!module.starts_with(&mount.0), "the module must not come from the noexec cache: {stdout}");
    // Ground truth: the loader refuses a module on that mount, and maps the one culaunch chose.
    let name = module.to_string_lossy().split(".so.d/").next().map(|p| format!("{p}.so")).unwrap_or_default();
    let refused = mount.0.join(Path::new(&name).file_name().unwrap());
    std::fs::copy(&name, &refused).unwrap();
    assert!(bare_with_audit(&refused).contains(LOADER_SKIPS));
    assert_ne!(stdout.lines().nth(1), Some("0"), "the shell mapped the module: {stdout}");
}

#[test]
fn a_32_bit_descendant_runs_as_bare_without_the_loaders_line_and_its_parent_names_it() {
    let dir = scratch("child32");
    let prog = dir.join("says-hi-32");
    let src = dir.join("says-hi.c");
    std::fs::write(&src, "#include <stdio.h>\nint main(void) { fprintf(stderr, \"hi\\n\"); return 3; }\n").unwrap();
    if !cc(&[os("-m32"), src.as_os_str(), os("-o"), prog.as_os_str()]) {
        eprintln!("skipped: cc -m32 cannot build (gcc-multilib missing)");
        return;
    }
    // The shell execs the program (execve), so the parent can name it.
    let script = format!("exec {}", prog.display());
    let bare = Command::new("sh").args(["-c", &script]).output().unwrap();
    let summary = dir.join("summary.json");
    let out = Command::new(CULAUNCH)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--quiet", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), bare.status.code());
    // Exactly the program's own stderr: no `wrong ELF class` line from its loader.
    assert_eq!(String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&bare.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let named = s["untraced"].as_array().into_iter().flatten().any(|u| u["exe"] == prog.to_string_lossy().as_ref());
    assert!(named, "{s:#}");
}
