//! Loads that map and then fail: an undefined symbol, a missing version
//! node, a missing dependency, the wrong ELF class, and cuDNN 8's shape.
//! The oracle is the same program run without culaunch: what dlerror()
//! told it, byte for byte, and its /proc/self/maps after the failure (the
//! trace says "not loaded" exactly when the loader unmapped the file).

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn fixture_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn cc(args: &[&OsStr]) {
    let o = Command::new("cc").args(args).output().unwrap();
    assert!(o.status.success(), "cc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// `cc -shared -fPIC SOURCE -o OUT` with `flags` after.
fn shared(out: &Path, source: &str, flags: &[&str]) -> PathBuf {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut args: Vec<&OsStr> = vec!["-shared".as_ref(), "-fPIC".as_ref(), "-o".as_ref(), out.as_os_str()];
    let src = fixture_src(source);
    args.push(src.as_os_str());
    args.extend(flags.iter().map(OsStr::new));
    cc(&args);
    out.to_path_buf()
}

/// `shared`, with a DT_NEEDED on the file `needed` (by its file name),
/// and `flags` after (an RPATH to find it by).
fn needing(out: &Path, source: &str, needed: &Path, flags: &[&str]) -> PathBuf {
    let dir = format!("-L{}", p(needed.parent().unwrap()));
    let name = format!("-l:{}", needed.file_name().unwrap().to_str().unwrap());
    let mut all = vec!["-Wl,--no-as-needed", &dir, &name];
    all.extend_from_slice(flags);
    shared(out, source, &all)
}

fn program(d: &Dir) -> PathBuf {
    let out = d.path("bin/dlfail");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    cc(&[fixture_src("dlfail.c").as_os_str(), "-o".as_ref(), out.as_os_str(), "-ldl".as_ref()]);
    out
}

/// The program run bare and traced (with `--all-libs`, quiet), `env` for
/// both.
struct Both {
    bare: Run,
    traced: Run,
}

fn run_both(prog: &Path, actions: &[String], env: &[(&str, &OsStr)]) -> Both {
    let mut argv: Vec<&OsStr> = vec![prog.as_os_str()];
    argv.extend(actions.iter().map(OsStr::new));
    let bare = plain(&argv, env);
    let traced = traced(&["--all-libs", "-q"], &argv, env);
    // Nothing of culaunch's on the program's stdout or stderr.
    assert_eq!(traced.stdout(), bare.stdout(), "stdout differs");
    assert_eq!(traced.stderr(), bare.stderr(), "stderr differs");
    assert!(traced.out.status.success() && bare.out.status.success());
    Both { bare, traced }
}

/// What dlerror() told the bare program for `action`.
fn dlerror_text(run: &Run, action: &str) -> String {
    let prefix = format!("{action}: fail: ");
    let line = run.stdout().lines().find(|l| l.starts_with(&prefix)).map(str::to_owned);
    line.unwrap_or_else(|| panic!("{action} did not fail bare:\n{}", run.stdout()))[prefix.len()..].to_owned()
}

fn pid_of(run: &Run) -> i64 {
    *run.maps.keys().next().expect("the program wrote its maps")
}

/// The trace's failed load events.
fn failures(run: &Run) -> Vec<&Value> {
    run.events_of("load").into_iter().filter(|e| e["ok"] == false).collect()
}

/// What the trace says `pid` has mapped at the end: each file of an
/// ok:true load, less those a later ok:false load took back (its `path`
/// and its `unmapped`).
fn loaded_per_trace(run: &Run, pid: i64) -> BTreeSet<String> {
    let mut loaded = BTreeSet::new();
    for e in run.events_of("load").into_iter().filter(|e| e["pid"] == pid) {
        if e["ok"] == true {
            loaded.insert(s(&e["path"]));
        } else {
            loaded.remove(&s(&e["path"]));
            for u in e["unmapped"].as_array().into_iter().flatten() {
                loaded.remove(&s(u));
            }
        }
    }
    loaded
}

/// For each of `files`: mapped at the end (bare and traced alike) exactly
/// when the trace says loaded.
fn assert_trace_matches_maps(b: &Both, files: &[&Path]) {
    let pid = pid_of(&b.traced);
    let traced_maps = &b.traced.maps[&pid];
    let bare_maps = &b.bare.maps[&pid_of(&b.bare)];
    let said = loaded_per_trace(&b.traced, pid);
    for f in files {
        let c = canonical(f);
        assert_eq!(traced_maps.contains(&c), bare_maps.contains(&c), "{c}: traced and bare map it differently");
        assert_eq!(said.contains(&c), traced_maps.contains(&c), "{c}: the trace and /proc/self/maps disagree");
    }
}

/// The one failure of the run, checked against the bare run's dlerror().
fn the_failure<'r>(b: &'r Both, action: &str) -> &'r Value {
    let f = failures(&b.traced);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["error"], dlerror_text(&b.bare, action).as_str(), "error is not glibc's text");
    f[0]
}

#[test]
fn an_undefined_symbol_under_z_now_is_a_failed_load_with_glibcs_words() {
    let d = Dir::new("failed-z-now");
    let lib = shared(&d.path("lib/libzn.so"), "undefined.c", &["-Wl,-z,now"]);
    let prog = program(&d);
    let action = format!("lazy:{}", p(&lib));
    let b = run_both(&prog, std::slice::from_ref(&action), &[]);
    let e = the_failure(&b, &action);
    assert_eq!(e["reason"], "undefined_symbol");
    assert_eq!(e["symbol"], "not_defined_anywhere");
    assert_eq!(e["version"], Value::Null);
    assert_eq!(e["path"], canonical(&lib).as_str());
    assert_eq!(e["required_by"], p(&lib).as_str(), "as glibc names it");
    assert_eq!(e["how"], "dlopen");
    assert_trace_matches_maps(&b, &[&lib]);
}

#[test]
fn an_undefined_symbol_under_rtld_now_is_a_failed_load() {
    let d = Dir::new("failed-rtld-now");
    let lib = shared(&d.path("lib/liblazy.so"), "undefined.c", &[]);
    let prog = program(&d);
    let action = format!("now:{}", p(&lib));
    let b = run_both(&prog, std::slice::from_ref(&action), &[]);
    let e = the_failure(&b, &action);
    assert_eq!((s(&e["reason"]), s(&e["symbol"])), ("undefined_symbol".into(), "not_defined_anywhere".into()));
    assert_trace_matches_maps(&b, &[&lib]);
}

/// libusesv.so needs f2@V2 of libversioned.so; an older build without the
/// V2 node comes first on LD_LIBRARY_PATH.
fn versioned(d: &Dir) -> (PathBuf, PathBuf) {
    for (dir, map, new) in [("new", "versioned-new.map", true), ("old", "versioned-old.map", false)] {
        let script = format!("-Wl,--version-script={}", p(&fixture_src(map)));
        let mut flags = vec!["-Wl,-soname,libversioned.so", &script];
        if new {
            flags.push("-DFIXTURE_NEW");
        }
        shared(&d.path(&format!("{dir}/libversioned.so")), "versioned.c", &flags);
    }
    let new_dir = format!("-L{}", p(&d.path("new")));
    let user =
        shared(&d.path("new/libusesv.so"), "uses-versioned.c", &[&new_dir, "-l:libversioned.so", "-Wl,-rpath,$ORIGIN"]);
    (user, d.path("old/libversioned.so"))
}

#[test]
fn a_missing_version_node_names_the_node_and_who_required_it() {
    let d = Dir::new("failed-version");
    let (user, old) = versioned(&d);
    let prog = program(&d);
    let action = format!("now:{}", p(&user));
    let b = run_both(&prog, std::slice::from_ref(&action), &[("LD_LIBRARY_PATH", d.path("old").as_os_str())]);
    let e = the_failure(&b, &action);
    assert_eq!(e["reason"], "missing_version");
    assert_eq!(e["version"], "V2");
    assert_eq!(e["symbol"], Value::Null);
    assert_eq!(e["required_by"], p(&user).as_str());
    assert_eq!(e["path"], canonical(&user).as_str());
    // The old provider was mapped for the attempt and unmapped with it.
    assert_eq!(e["unmapped"], serde_json::json!([canonical(&old)]));
    assert_trace_matches_maps(&b, &[&user, &old, &d.path("new/libversioned.so")]);
}

/// The old copy is loaded first (by path); the plugin's own RUNPATH would
/// find the new one, but the loader gives it the copy already loaded under
/// that SONAME. Never asked, the cause is the version that copy lacks, in
/// glibc's words.
#[test]
fn a_version_the_copy_already_loaded_lacks_is_the_cause_of_a_quiet_failure() {
    let d = Dir::new("failed-version-loaded");
    let (user, old) = versioned(&d);
    let prog = program(&d);
    let first = format!("now:{}", p(&old));
    let asked = format!("now:{}", p(&user));
    let bare = plain(&[prog.as_os_str(), OsStr::new(&first), OsStr::new(&asked)], &[]);
    let words = dlerror_text(&bare, &asked);
    assert!(words.contains("version `V2' not found"), "{words}");
    let b = run_both(&prog, &[first, format!("quiet:{}", p(&user))], &[]);
    let d = load_failed(&b);
    assert_eq!(
        (&d["failure"]["error"], &d["failure"]["reconstructed"]),
        (&Value::from(words), &Value::Bool(true)),
        "{d:#}"
    );
}

#[test]
fn a_missing_dependency_of_a_dlopened_library() {
    let d = Dir::new("failed-dependency");
    let gone = shared(&d.path("lib/libgone.so"), "fakelib.c", &["-Wl,-soname,libgone.so"]);
    let needy = needing(&d.path("lib/libneedy.so"), "fakelib.c", &gone, &[]);
    std::fs::remove_file(&gone).unwrap();
    let prog = program(&d);
    let action = format!("now:{}", p(&needy));
    let b = run_both(&prog, std::slice::from_ref(&action), &[]);
    let e = the_failure(&b, &action);
    assert_eq!(e["reason"], "missing_dependency");
    assert_eq!(e["error"], "libgone.so: cannot open shared object file: No such file or directory");
    assert_eq!(e["path"], canonical(&needy).as_str());
    // One event for the load, not a second not-found for its dependency.
    assert!(b.traced.events_of("load").iter().all(|e| e["request"] != "libgone.so"));
    assert_trace_matches_maps(&b, &[&needy]);
}

#[test]
fn a_library_of_the_wrong_class_by_path() {
    let d = Dir::new("failed-class");
    let lib = shared(&d.path("lib/lib32.so"), "fakelib.c", &["-m32"]);
    let prog = program(&d);
    let action = format!("now:{}", p(&lib));
    let b = run_both(&prog, std::slice::from_ref(&action), &[]);
    let e = the_failure(&b, &action);
    assert_eq!(e["reason"], "wrong_class");
    assert_eq!(e["path"], Value::Null, "nothing was mapped");
    assert_eq!(e["request"], p(&lib).as_str());
    assert_trace_matches_maps(&b, &[&lib]);
}

/// cuDNN 8: libcudnn_cnn_infer.so.8, linked `-z now` against the version
/// node `libcudnn_ops_infer.so.8` of its sibling, needs
/// `_ZN11nvrtcHelper4loadEb`; an older libcudnn_ops_infer.so.8 (the node,
/// not the symbol) comes first through LD_LIBRARY_PATH.
fn cudnn8(d: &Dir) -> (PathBuf, PathBuf, PathBuf) {
    let script = format!("-Wl,--version-script={}", p(&fixture_src("cudnn-ops.map")));
    let soname = "-Wl,-soname,libcudnn_ops_infer.so.8";
    let new_ops =
        shared(&d.path("wheel/lib/libcudnn_ops_infer.so.8"), "cudnn-ops.c", &[soname, &script, "-DFIXTURE_NEW"]);
    let old_ops = shared(&d.path("old/lib/libcudnn_ops_infer.so.8"), "cudnn-ops.c", &[soname, &script]);
    let wheel = format!("-L{}", p(&d.path("wheel/lib")));
    let cnn = shared(
        &d.path("wheel/lib/libcudnn_cnn_infer.so.8"),
        "cudnn-cnn.c",
        &[
            "-Wl,-soname,libcudnn_cnn_infer.so.8",
            "-Wl,-z,now",
            &wheel,
            "-l:libcudnn_ops_infer.so.8",
            "-Wl,-rpath,$ORIGIN",
        ],
    );
    (cnn, new_ops, old_ops)
}

#[test]
fn the_cudnn_8_shape_names_symbol_version_and_is_not_in_the_summary_as_loaded() {
    let d = Dir::new("failed-cudnn8");
    let (cnn, new_ops, old_ops) = cudnn8(&d);
    let prog = program(&d);
    let action = format!("lazy:{}", p(&cnn));
    let b = run_both(&prog, std::slice::from_ref(&action), &[("LD_LIBRARY_PATH", d.path("old/lib").as_os_str())]);
    let text = dlerror_text(&b.bare, &action);
    assert!(text.ends_with("undefined symbol: _ZN11nvrtcHelper4loadEb, version libcudnn_ops_infer.so.8"), "{text}");
    let e = the_failure(&b, &action);
    assert_eq!(e["reason"], "undefined_symbol");
    assert_eq!(e["symbol"], "_ZN11nvrtcHelper4loadEb");
    assert_eq!(e["version"], "libcudnn_ops_infer.so.8");
    assert_eq!(e["required_by"], p(&cnn).as_str());
    assert_eq!(e["path"], canonical(&cnn).as_str());
    assert_eq!((e["cuda"].as_bool(), s(&e["family"])), (Some(true), "cudnn".into()));
    assert_eq!(e["unmapped"], serde_json::json!([canonical(&old_ops)]));
    assert_trace_matches_maps(&b, &[&cnn, &old_ops, &new_ops]);
    // The summary: neither file is a loaded library; the failure is listed
    // with glibc's words.
    let summary = b.traced.summary.as_ref().unwrap();
    let paths: Vec<String> = summary["libraries"].as_array().unwrap().iter().map(|l| s(&l["path"])).collect();
    assert!(!paths.contains(&canonical(&cnn)) && !paths.contains(&canonical(&old_ops)), "{paths:?}");
    let failed = summary["probes"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["error"], text.as_str());
    assert_eq!(failed[0]["path"], canonical(&cnn).as_str());
    assert_eq!(failed[0]["reason"], "undefined_symbol");
}

#[test]
fn the_text_summary_shows_the_failure_with_its_error_not_the_file_as_loaded() {
    let d = Dir::new("failed-cudnn8-text");
    let (cnn, _, old_ops) = cudnn8(&d);
    let prog = program(&d);
    let action = format!("lazy:{}", p(&cnn));
    let out = Command::new(CULAUNCH)
        .args(["--"])
        .arg(&prog)
        .arg(&action)
        .env("LD_LIBRARY_PATH", d.path("old/lib"))
        .env("COLUMNS", "400")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // No library row: the process ended with neither file mapped.
    assert!(err.starts_with("culaunch: 1 process traced, 0 CUDA libraries\n"), "{err}");
    let failed: Vec<&str> = err.lines().skip_while(|l| !l.starts_with("failed loads")).collect();
    assert!(failed.len() >= 3, "{err}");
    assert!(failed[1].trim_start().starts_with(&p(&cnn)), "{err}");
    let words = failed[2].trim_start();
    assert_eq!(words, dlerror_text(&plain_run(&prog, &action, &d), &action), "{err}");
    // The shadowing that caused it is explained, naming the old provider.
    assert!(err.contains(&format!("came from {} (ld_library_path)", canonical(&old_ops))), "{err}");
}

fn plain_run(prog: &Path, action: &str, d: &Dir) -> Run {
    plain(&[prog.as_os_str(), OsStr::new(action)], &[("LD_LIBRARY_PATH", d.path("old/lib").as_os_str())])
}

#[test]
fn a_dlopen_followed_at_once_by_dlclose_is_no_failure() {
    let d = Dir::new("failed-close");
    let lib = shared(&d.path("lib/libok.so"), "fakelib.c", &[]);
    let prog = program(&d);
    // Then a load that fails and is asked about: its text is not the
    // closed library's.
    let missing = d.path("lib/libnothere.so");
    let actions = [format!("close:{}", p(&lib)), format!("now:{}", p(&missing))];
    let b = run_both(&prog, &actions, &[]);
    let f = failures(&b.traced);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!((f[0]["request"].as_str(), &f[0]["path"]), (Some(p(&missing).as_str()), &Value::Null));
    assert_eq!(f[0]["reason"], "not_found");
    assert_eq!(f[0]["error"], dlerror_text(&b.bare, &actions[1]).as_str());
    let e = b.traced.load_event(&lib);
    assert_eq!(e["ok"], true);
}

#[test]
fn failures_the_program_never_asks_dlerror_about_are_recorded() {
    let d = Dir::new("failed-quiet");
    let gone = shared(&d.path("lib/libgone.so"), "fakelib.c", &["-Wl,-soname,libgone.so"]);
    let needy = needing(&d.path("lib/libneedy.so"), "fakelib.c", &gone, &[]);
    std::fs::remove_file(&gone).unwrap();
    let (user, old) = versioned(&d);
    let prog = program(&d);
    let actions = [format!("quiet:{}", p(&needy)), format!("quiet:{}", p(&user))];
    let b = run_both(&prog, &actions, &[("LD_LIBRARY_PATH", d.path("old").as_os_str())]);
    let f = failures(&b.traced);
    assert_eq!(f.len(), 2, "{f:#?}");
    // The first is written when the next load starts, the second at exit.
    assert_eq!(f[0]["path"], canonical(&needy).as_str());
    assert_eq!(f[0]["reason"], "missing_dependency");
    assert_eq!(f[0]["error"], "libgone.so: cannot open shared object file: No such file or directory");
    assert_eq!(f[1]["path"], canonical(&user).as_str());
    assert_eq!(f[1]["reason"], "failed", "without dlerror the module knows it failed, not why");
    assert_eq!(f[1]["error"], Value::Null);
    let exit = b.traced.events.iter().position(|e| e["event"] == "process_exit").unwrap();
    let last = b.traced.events.iter().rposition(|e| e["event"] == "load" && e["ok"] == false).unwrap();
    assert!(last < exit, "written before the process's exit event");
    assert_trace_matches_maps(&b, &[&needy, &user, &old]);
}

/// An undefined symbol fails in relocation, after the loader called the
/// batch consistent: its notifications are those of a `dlopen` followed
/// at once by `dlclose`. The object's RELRO, still writable, tells them
/// apart; the bare run says which loads failed and which were mapped.
#[test]
fn an_undefined_symbol_the_program_never_asks_about_is_a_failed_load() {
    let d = Dir::new("failed-quiet-symbol");
    let lib = shared(&d.path("lib/libquiet.so"), "undefined.c", &[]);
    let deep = shared(&d.path("lib/libdeep.so"), "undefined.c", &["-Wl,-soname,libdeep.so"]);
    let above = needing(&d.path("lib/libabove.so"), "fakelib.c", &deep, &["-Wl,-rpath,$ORIGIN"]);
    let ok = shared(&d.path("lib/libok.so"), "fakelib.c", &[]);
    let prog = program(&d);
    let actions = [format!("quiet:{}", p(&lib)), format!("quiet:{}", p(&above)), format!("close:{}", p(&ok))];
    let b = run_both(&prog, &actions, &[]);
    for a in &actions[..2] {
        assert!(b.bare.stdout().contains(&format!("{a}: fail\n")), "{a} fails bare:\n{}", b.bare.stdout());
    }
    let f = failures(&b.traced);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0]["path"], canonical(&lib).as_str());
    // A dependency that failed to relocate fails the load it came with.
    assert_eq!(f[1]["path"], canonical(&above).as_str());
    assert_eq!(f[1]["unmapped"], serde_json::json!([canonical(&deep)]));
    for e in &f {
        assert_eq!(
            (s(&e["reason"]), &e["error"]),
            ("failed".into(), &Value::Null),
            "never asked: known to fail, not why"
        );
    }
    // Loaded, then closed (the trace has no unload events): ok.
    assert_eq!(b.traced.load_event(&ok)["ok"], true);
    assert_trace_matches_maps(&b, &[&lib, &above, &deep]);
    // Why, worked out from the files: glibc's words as dlerror() gives
    // them to a program that asks (the bare run of `now:`).
    let asked: Vec<String> = [&lib, &above].iter().map(|l| format!("now:{}", p(l))).collect();
    let bare = plain(&[prog.as_os_str(), OsStr::new(&asked[0]), OsStr::new(&asked[1])], &[]);
    let words: Vec<Value> = asked.iter().map(|a| Value::from(dlerror_text(&bare, a))).collect();
    let diagnoses = b.traced.summary.as_ref().unwrap()["diagnoses"].as_array().unwrap();
    let rebuilt: Vec<(&Value, &Value)> = diagnoses
        .iter()
        .filter(|d| d["kind"] == "load_failed")
        .map(|d| (&d["failure"]["error"], &d["failure"]["reconstructed"]))
        .collect();
    assert_eq!(rebuilt, words.iter().map(|w| (w, &Value::Bool(true))).collect::<Vec<_>>(), "{diagnoses:#?}");
}

/// The run's one `load_failed` diagnosis.
fn load_failed(b: &Both) -> Value {
    let diagnoses = b.traced.summary.as_ref().unwrap()["diagnoses"].as_array().unwrap();
    diagnoses.iter().find(|d| d["kind"] == "load_failed").unwrap_or_else(|| panic!("{diagnoses:#?}")).clone()
}

/// A provider of `not_defined_anywhere`, a plugin that needs it and names
/// no library for it, and the program.
fn local_definer(d: &Dir) -> (PathBuf, PathBuf, PathBuf) {
    let provider = shared(&d.path("lib/libprov.so"), "fakelib.c", &["-DFIXTURE_DEFINES=not_defined_anywhere"]);
    let plugin = shared(&d.path("plugin/libplugin.so"), "undefined.c", &[]);
    (provider, plugin, program(d))
}

/// The run's failed load carries glibc's `words` and names `provider` as
/// defining the symbol out of `plugin`'s scope.
fn said_out_of_scope(b: &Both, words: &str, provider: &Path, plugin: &Path) {
    let d = load_failed(b);
    assert_eq!(d["failure"]["error"], words, "{d:#}");
    let advice = s(&d["failure"]["explanation"]["advice"]);
    let said = format!("{} defines it, but is outside {}'s scope", canonical(provider), canonical(plugin));
    assert!(advice.contains(&said), "{advice}");
}

/// A plugin that names no library for a symbol an object dlopened before
/// it defines: glibc binds it only if that object was opened RTLD_GLOBAL,
/// which the trace does not record. Never asked, the failure's cause is
/// not asserted: the object is named as a possible cause, with glibc's
/// words for it. Asked, the words say the symbol did not bind, and the
/// object is named as out of scope, not called absent.
#[test]
fn a_symbol_only_an_object_dlopened_before_defines_is_named_and_never_asserted_as_the_cause() {
    let d = Dir::new("failed-local-definer");
    let (provider, plugin, prog) = local_definer(&d);
    let asked = format!("now:{}", p(&plugin));
    let quiet = format!("quiet:{}", p(&plugin));
    let b = run_both(&prog, &[format!("now:{}", p(&provider)), quiet.clone()], &[]);
    assert!(b.bare.stdout().contains(&format!("{quiet}: fail\n")), "{}", b.bare.stdout());
    // Ground truth: glibc's words for it, and the fix the advice names.
    let bare = plain(&[prog.as_os_str(), OsStr::new(&format!("now:{}", p(&provider))), OsStr::new(&asked)], &[]);
    let words = dlerror_text(&bare, &asked);
    assert_eq!(words, format!("{}: undefined symbol: not_defined_anywhere", p(&plugin)));
    let global = format!("global:{}", p(&provider));
    let fixed = plain(&[prog.as_os_str(), OsStr::new(&global), OsStr::new(&asked)], &[]);
    assert!(fixed.stdout().contains(&format!("{asked}: ok")), "RTLD_GLOBAL fixes it: {}", fixed.stdout());
    let d = load_failed(&b);
    assert_eq!(d["failure"]["error"], Value::Null, "no cause asserted: {d:#}");
    assert_eq!(d["failure"]["reason"], "failed");
    let advice = s(&d["failure"]["explanation"]["advice"]);
    let said = format!("one possible cause, for which glibc says \"{words}\"");
    assert!(advice.contains(&said), "{advice}");
    assert!(advice.contains(&format!("which only {} defines", canonical(&provider))), "{advice}");
    assert!(advice.contains("only if it was opened with RTLD_GLOBAL"), "{advice}");
    // Asked: the words are the trace's, and the object is out of scope.
    let b = run_both(&prog, &[format!("now:{}", p(&provider)), asked.clone()], &[]);
    said_out_of_scope(&b, &words, &provider, &plugin);
}

/// The same, in a forked child: the object its parent dlopened is
/// inherited, and as much out of the global scope as in the parent.
#[test]
fn an_object_a_forked_child_inherited_from_a_dlopen_is_named_as_out_of_scope() {
    let d = Dir::new("failed-inherited-definer");
    let (provider, plugin, prog) = local_definer(&d);
    let asked = format!("now:{}", p(&plugin));
    let opened = format!("now:{}", p(&provider));
    let b = run_both(&prog, &[opened, "fork:_".into(), asked.clone()], &[]);
    let words = dlerror_text(&b.bare, &asked);
    assert_eq!(words, format!("{}: undefined symbol: not_defined_anywhere", p(&plugin)));
    said_out_of_scope(&b, &words, &provider, &plugin);
}

/// A plugin with 1 MiB of initial-exec TLS, opened after start-up, and
/// whose one undefined symbol an object opened RTLD_GLOBAL defines: glibc
/// fails it for static TLS. Never asked, static TLS is named first of the
/// possible causes with glibc's words, and the symbol only as a possible
/// one; asked, the words are explained. The oracle: the bare run's
/// dlerror, and both fixes the advice names, applied bare.
#[test]
fn a_library_that_needs_more_static_tls_than_is_left_is_named_with_both_fixes() {
    let d = Dir::new("failed-static-tls");
    let provider = shared(&d.path("lib/libprov.so"), "fakelib.c", &["-DFIXTURE_DEFINES=not_defined_anywhere"]);
    let plugin = shared(&d.path("plugin/libtls.so"), "static_tls.c", &[]);
    let prog = program(&d);
    let global = format!("global:{}", p(&provider));
    let asked = format!("now:{}", p(&plugin));
    let bare = plain(&[prog.as_os_str(), OsStr::new(&global), OsStr::new(&asked)], &[]);
    let words = dlerror_text(&bare, &asked);
    assert_eq!(words, format!("{}: cannot allocate memory in static TLS block", p(&plugin)));
    let quiet = format!("quiet:{}", p(&plugin));
    let d = load_failed(&run_both(&prog, &[global.clone(), quiet], &[]));
    assert_eq!(d["failure"]["error"], Value::Null, "no cause asserted: {d:#}");
    let advice = s(&d["failure"]["explanation"]["advice"]).to_owned();
    assert!(advice.contains(&format!("(1) \"{words}\"")), "static TLS first, in glibc's words: {advice}");
    assert!(!advice.contains("dlopened without RTLD_GLOBAL"), "{advice}");
    let d = load_failed(&run_both(&prog, &[global.clone(), asked.clone()], &[]));
    assert_eq!(d["failure"]["error"], words.as_str(), "{d:#}");
    let explained = s(&d["failure"]["explanation"]["advice"]).to_owned();
    assert!(explained.contains("1048576 bytes"), "{explained}");
    // Both fixes, as the advice words them, applied to the bare program.
    let tunable = explained.split("GLIBC_TUNABLES=").nth(1).expect("a tunable").split_whitespace().next().unwrap();
    let preload = explained.split("LD_PRELOAD=").nth(1).expect("a preload").split([',', ' ']).next().unwrap();
    assert_eq!(preload, canonical(&plugin));
    for env in [("GLIBC_TUNABLES", tunable), ("LD_PRELOAD", preload)] {
        let fixed = plain(&[prog.as_os_str(), OsStr::new(&global), OsStr::new(&asked)], &[(env.0, OsStr::new(env.1))]);
        assert!(fixed.stdout().contains(&format!("{asked}: ok")), "{}={} fixes it: {}", env.0, env.1, fixed.stdout());
    }
}

/// The object's headers are found where `process_vm_readv` is refused (a
/// seccomp sandbox) and where they are not at its load bias (a first
/// PT_LOAD that is not at address 0).
#[test]
fn a_failed_relocation_is_found_in_a_sandbox_and_in_a_library_not_based_at_zero() {
    let d = Dir::new("failed-quiet-places");
    let based = shared(&d.path("lib/libbased.so"), "undefined.c", &["-Wl,-Ttext-segment=0x200000"]);
    let sandboxed = shared(&d.path("lib/libsandboxed.so"), "undefined.c", &[]);
    let prog = program(&d);
    let deny = d.path("bin/deny_process_vm");
    cc(&[fixture_src("deny_process_vm.c").as_os_str(), "-o".as_ref(), deny.as_os_str()]);
    for (wrapper, lib) in [(None, &based), (Some(&deny), &sandboxed)] {
        let action = format!("quiet:{}", p(lib));
        let argv: Vec<&OsStr> =
            wrapper.iter().map(|w| w.as_os_str()).chain([prog.as_os_str(), OsStr::new(&action)]).collect();
        let bare = plain(&argv, &[]);
        assert_eq!(bare.stdout(), format!("{action}: fail\n"), "{}", bare.stderr());
        let traced = traced(&["--all-libs", "-q"], &argv, &[]);
        assert_eq!((traced.stdout(), traced.stderr()), (bare.stdout(), bare.stderr()));
        let f = failures(&traced);
        let got: Vec<(String, String)> = f.iter().map(|e| (s(&e["path"]), s(&e["reason"]))).collect();
        assert_eq!(got, [(canonical(lib), "failed".to_owned())], "{f:#?}");
    }
}

/// A `dlopen` closed at once is no failure, whatever the program did in
/// between: made the library's RELRO writable again (as a GOT hook does),
/// or put another build of it in its place and closed it through a pointer
/// (no PLT: culaunch's `dlclose` wrapper does not see that call). The
/// oracle: the bare run's answers and maps.
#[test]
fn a_dlopen_closed_at_once_is_no_failure_whatever_became_of_its_pages_or_its_file() {
    let d = Dir::new("failed-close-changed");
    let hooked = shared(&d.path("lib/libhooked.so"), "fakelib.c", &[]);
    let swapped = d.path("lib/libswapped.so");
    let prog = program(&d);
    let actions = [format!("unprotect:{}", p(&hooked)), format!("rawclose:{}", p(&swapped))];
    let argv: Vec<&OsStr> = std::iter::once(prog.as_os_str()).chain(actions.iter().map(OsStr::new)).collect();
    // Each run renames the other build (its RELRO a page further on, over
    // a page that is writable in the first) over the library it opened.
    let fresh = || {
        shared(&swapped, "fakelib.c", &[]);
        shared(&d.path("lib/libswapped.so.new"), "fakelib.c", &["-DFIXTURE_PAD=4096"]);
    };
    fresh();
    let bare = plain(&argv, &[]);
    fresh();
    let traced = traced(&["--all-libs", "-q"], &argv, &[]);
    assert_eq!(traced.stdout(), bare.stdout());
    assert!(bare.stdout().lines().filter(|l| l.ends_with(": ok")).count() == 2, "{}", bare.stdout());
    assert_eq!(failures(&traced), Vec::<&Value>::new());
    let loads = traced.events_of("load");
    for lib in [&hooked, &swapped] {
        let mine: Vec<&Value> = loads.iter().copied().filter(|e| e["request"] == p(lib).as_str()).collect();
        assert_eq!(mine.iter().map(|e| &e["ok"]).collect::<Vec<_>>(), [&Value::Bool(true)], "{mine:#?}");
    }
    // The dlclose a program looks up is the real one, in libc.
    let identity = d.path("bin/dlclose_identity");
    cc(&[fixture_src("dlclose_identity.c").as_os_str(), "-o".as_ref(), identity.as_os_str(), "-ldl".as_ref()]);
    let bare = plain(&[identity.as_os_str()], &[]);
    assert!(bare.stdout().starts_with("1 "), "{}", bare.stdout());
    assert_eq!(common::traced(&["-q"], &[identity.as_os_str()], &[]).stdout(), bare.stdout());
}

/// A relocation that fails after every dependency was answered (one by a
/// file the process had already mapped) is no missing dependency, and a
/// later `dlsym` error, about something else, is not its text.
#[test]
fn a_failed_relocation_is_reported_with_what_is_known_of_it_and_no_more() {
    let d = Dir::new("failed-quiet-known");
    let dep = shared(&d.path("dep/libdep.so"), "fakelib.c", &[]);
    let rpath = format!("-Wl,-rpath,{}", p(&d.path("dep")));
    let lib = needing(&d.path("lib/libundef.so"), "undefined.c", &dep, &[&rpath]);
    let prog = program(&d);
    let actions = [format!("now:{}", p(&dep)), format!("quiet:{}", p(&lib)), "sym:no_such_symbol".to_owned()];
    let b = run_both(&prog, &actions, &[]);
    assert!(b.bare.stdout().contains("sym:no_such_symbol: fail: "), "{}", b.bare.stdout());
    let f = failures(&b.traced);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["path"], canonical(&lib).as_str());
    let known = (s(&f[0]["reason"]), &f[0]["error"], &f[0]["symbol"]);
    assert_eq!(known, ("failed".into(), &Value::Null, &Value::Null), "{:#?}", f[0]);
    assert_trace_matches_maps(&b, &[&dep, &lib]);
}

/// A process that execs or calls `_exit` runs no exit handler, where a
/// failure never asked about is otherwise written.
#[test]
fn failures_never_asked_about_are_recorded_when_the_program_execs_or_calls_exit() {
    for (n, end) in ["_exit:0", "exec:/bin/true"].into_iter().enumerate() {
        let d = Dir::new(&format!("failed-ends-{n}"));
        let gone = shared(&d.path("lib/libgone.so"), "fakelib.c", &["-Wl,-soname,libgone.so"]);
        let needy = needing(&d.path("lib/libneedy.so"), "fakelib.c", &gone, &[]);
        std::fs::remove_file(&gone).unwrap();
        let missing = d.path("lib/libnothere.so");
        let prog = program(&d);
        let actions = [format!("quiet:{}", p(&needy)), format!("quiet:{}", p(&missing)), end.to_owned()];
        let b = run_both(&prog, &actions, &[]);
        let f = failures(&b.traced);
        assert_eq!(f.len(), 2, "{end}: {f:#?}");
        assert_eq!(f[0]["path"], canonical(&needy).as_str(), "{end}");
        assert_eq!(f[0]["reason"], "missing_dependency", "{end}");
        assert_eq!(f[0]["error"], "libgone.so: cannot open shared object file: No such file or directory");
        assert_eq!((f[1]["request"].as_str(), &f[1]["path"]), (Some(p(&missing).as_str()), &Value::Null), "{end}");
        assert_eq!(f[1]["reason"], "not_found", "{end}");
        assert_trace_matches_maps(&b, &[&needy]);
    }
}

/// An exec in a `vfork` child shares the parent's memory: the parent, which
/// goes on, writes its own failure, under its own pid, once.
#[test]
fn an_exec_in_a_vfork_child_leaves_the_parents_failure_to_the_parent() {
    let d = Dir::new("failed-vfork");
    let missing = d.path("lib/libnothere.so");
    let prog = program(&d);
    let actions = [format!("quiet:{}", p(&missing)), "vfork:/bin/true".to_owned()];
    let b = run_both(&prog, &actions, &[]);
    let f = failures(&b.traced);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["request"], p(&missing).as_str());
    assert_eq!(f[0]["pid"], pid_of(&b.traced), "the parent's failure, under the parent's pid");
}

#[test]
fn a_dependency_refused_under_strict_fails_the_load_with_the_refusal() {
    let d = Dir::new("failed-refused");
    let cudart = shared(&d.path("lib/libcudart.so.12"), "fakelib.c", &["-Wl,-soname,libcudart.so.12"]);
    let user = needing(&d.path("lib/libuser.so"), "fakelib.c", &cudart, &["-Wl,-rpath,$ORIGIN"]);
    let prog = program(&d);
    let action = format!("now:{}", p(&user));
    let run = traced(&["--strict", "-q"], &[prog.as_os_str(), OsStr::new(&action)], &[]);
    // What dlerror() told the traced program is the ground truth here: bare,
    // nothing refuses.
    let f = failures(&run);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["error"], dlerror_text(&run, &action).as_str());
    assert_eq!(f[0]["reason"], "refused");
    assert_eq!(f[0]["path"], canonical(&user).as_str());
    assert_eq!(run.events_of("deny").len(), 1);
    let pid = pid_of(&run);
    assert!(!run.maps[&pid].contains(&canonical(&user)) && !run.maps[&pid].contains(&canonical(&cudart)));
    assert!(!loaded_per_trace(&run, pid).contains(&canonical(&user)));
}

/// `starts.c` linked against `lib` (by its file name) with `flags`.
fn starts(d: &Dir, rel: &str, lib: &Path, flags: &[&str]) -> PathBuf {
    let out = d.path(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let include = format!("-I{}", p(&fixture_src("")));
    let dir = format!("-L{}", p(lib.parent().unwrap()));
    let name = format!("-l:{}", lib.file_name().unwrap().to_str().unwrap());
    let mut args: Vec<&OsStr> = vec![fixture_src("starts.c").into_os_string().leak(), "-o".as_ref(), out.as_os_str()];
    args.extend([&include, &dir, &name].map(OsStr::new));
    args.extend(flags.iter().map(OsStr::new));
    cc(&args);
    out
}

/// A program whose fake runtime (found through `$ORIGIN/../lib`) needs
/// libgone.so.1, and that file, for the caller to take away: the program,
/// the file, the runtime.
fn needs_gone(d: &Dir) -> (PathBuf, PathBuf, PathBuf) {
    let gone = d.build("gone/libgone.so.1", false, &[], &[]);
    let runtime = d.build("lib/libcudart.so.12", false, &["gone/libgone.so.1"], &[]);
    let rpath_link = format!("-Wl,-rpath-link,{}", p(&d.path("gone")));
    let missing = starts(d, "bin/missing", &runtime, &["-Wl,-rpath,$ORIGIN/../lib", &rpath_link]);
    (missing, gone, runtime)
}

/// `prog ARGS` bare and traced (`-q`): the same status, stdout and stderr.
fn start_both(prog: &Path, args: &[&str]) -> Both {
    let mut argv: Vec<&OsStr> = vec![prog.as_os_str()];
    argv.extend(args.iter().map(OsStr::new));
    let bare = plain(&argv, &[]);
    let traced = traced(&["-q"], &argv, &[]);
    assert_eq!(traced.out.status.code(), bare.out.status.code(), "status differs");
    assert_eq!(traced.stdout(), bare.stdout(), "stdout differs");
    assert_eq!(traced.stderr(), bare.stderr(), "stderr differs");
    Both { bare, traced }
}

/// The diagnoses of a process that ended before main, in the run's own
/// summary and in `culaunch report --json` of its trace.
fn before_main(run: &Run, d: &Dir) -> [Vec<Value>; 2] {
    let trace = d.path("trace.jsonl");
    let lines: Vec<String> = run.events.iter().map(Value::to_string).collect();
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let out = Command::new(common::CULAUNCH).args(["report", "--json"]).arg(&trace).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("report --json");
    [run.summary.as_ref().expect("summary"), &report].map(|s| {
        let all = s["diagnoses"].as_array().cloned().unwrap_or_default();
        all.into_iter().filter(|d| d["failure"]["before_main"] == true).collect()
    })
}

#[test]
fn a_program_the_loader_will_not_start_is_explained_in_glibcs_own_words() {
    let d = Dir::new("failed-start");
    // Found nowhere: the fake runtime's own dependency, gone since the link.
    let (missing, gone, runtime) = needs_gone(&d);
    std::fs::remove_file(&gone).unwrap();
    // A version node the file found lacks: linked against the new build,
    // run with the old.
    versioned(&d);
    let new = d.path("new/libversioned.so");
    let version = starts(&d, "bin/version", &new, &["-DFIXTURE_VERSIONED", "-Wl,-rpath,$ORIGIN/../old"]);
    // An undefined symbol of a `-z now` program: linked against the fake
    // runtime, run with a library of its SONAME that lacks the function.
    let linked = d.build("link/libcudart.so.12", false, &[], &[]);
    let lacking = shared(&d.path("run/libcudart.so.12"), "versioned.c", &["-Wl,-soname,libcudart.so.12"]);
    let now = starts(&d, "bin/now", &linked, &["-Wl,-z,now", "-Wl,-rpath,$ORIGIN/../run"]);
    for (prog, status, reason, why) in [
        (&missing, 127, "missing_dependency", "libgone.so.1"),
        (&version, 1, "missing_version", "/bin/../old/libversioned.so"),
        (&now, 127, "undefined_symbol", p(&now).leak() as &str),
    ] {
        let b = start_both(prog, &[]);
        assert!(b.bare.maps.is_empty() && b.traced.maps.is_empty(), "{prog:?}: main ran");
        assert_eq!(b.bare.out.status.code(), Some(status), "{prog:?}");
        // glibc's line, as the loader printed it to the bare program's stderr.
        let words = b.bare.stderr().trim_end().to_owned();
        assert!(words.contains(why), "{words}");
        let pid = b.traced.events_of("process_start")[0]["pid"].clone();
        assert!(b.traced.events_of("process_loaded").is_empty(), "{prog:?}");
        for found in before_main(&b.traced, &d) {
            assert_eq!(found.len(), 1, "{prog:?}: {found:#?}");
            let f = &found[0];
            assert_eq!((&f["pid"], &f["failure"]["error"]), (&pid, &Value::from(words.as_str())), "{f:#?}");
            assert_eq!(f["failure"]["reason"], reason);
            assert_eq!(f["failure"]["reconstructed"], true);
        }
    }
    // The text summary says where and why.
    let text = Command::new(common::CULAUNCH).arg("--").arg(&missing).env("COLUMNS", "200").output().unwrap();
    let text = String::from_utf8_lossy(&text.stderr);
    assert!(text.contains("the process ended before main"), "{text}");
    // The requester as the loader named it: found through $ORIGIN/../lib.
    assert!(text.contains(&format!("needed by: {}", p(&d.path("bin/../lib/libcudart.so.12")))), "{text}");
    assert!(runtime.exists());
    assert!(lacking.exists());
}

/// Two ranks that could not start one program, one with CUDA_HOME naming a
/// toolkit that has the missing library: each is explained with its own
/// environment, not the first rank's.
#[test]
fn ranks_that_did_not_start_are_each_explained_with_their_own_variables() {
    let d = Dir::new("failed-start-vars");
    let (missing, gone, _) = needs_gone(&d);
    let toolkit = d.path("toolkit");
    std::fs::create_dir_all(toolkit.join("lib64")).unwrap();
    std::fs::rename(&gone, toolkit.join("lib64/libgone.so.1")).unwrap();
    // The ground truth: bare, the program does not start.
    let bare = plain(&[missing.as_os_str()], &[]);
    assert_eq!(bare.out.status.code(), Some(127), "{}", bare.stderr());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let start = |pid: u32, env: Value| {
        json!({"v": 1, "pid": pid, "ppid": 1, "host": host, "event": "process_start",
               "exe": p(&missing), "argv": [p(&missing)], "env": env})
        .to_string()
    };
    let trace = d.path("ranks.jsonl");
    let lines = [start(10, json!({"CUDA_HOME": p(&toolkit), "RANK": "0"})), start(11, json!({"RANK": "1"}))];
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let out = Command::new(common::CULAUNCH).args(["report", "--json"]).arg(&trace).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("report --json");
    let alternative = |pid: u32| {
        let all = report["diagnoses"].as_array().cloned().unwrap_or_default();
        let d = all.into_iter().find(|d| d["pid"] == pid && d["failure"]["before_main"] == true);
        d.unwrap_or_else(|| panic!("pid {pid}: {report:#}"))["failure"]["explanation"]["alternative"].clone()
    };
    assert_eq!(alternative(10), Value::from(canonical(&toolkit.join("lib64/libgone.so.1"))));
    assert_eq!(alternative(11), Value::Null);
    // And it is the file that lets the program start.
    let found = plain(&[missing.as_os_str()], &[("LD_LIBRARY_PATH", toolkit.join("lib64").as_os_str())]);
    assert_eq!(found.out.status.code(), Some(0), "{}", found.stderr());
}

/// Static TLS used up by a library dlopened before: the next one, small,
/// fails for it, though it also needs a symbol nothing defines. Never
/// asked, the symbol is not asserted; static TLS is named, with what the
/// earlier one took. A `-z now` library whose symbol a dlopened object
/// provides is never advised to be preloaded: that would stop the start.
#[test]
fn static_tls_taken_by_earlier_dlopens_is_counted_and_a_preload_that_cannot_start_is_never_advised() {
    let d = Dir::new("failed-static-tls-earlier");
    let first =
        shared(&d.path("lib/libfirst.so"), "static_tls.c", &["-DTLS_SIZE=1400", "-Dnot_defined_anywhere=getpid"]);
    let small = shared(&d.path("lib/libsmall.so"), "static_tls.c", &["-DTLS_SIZE=400"]);
    let prog = program(&d);
    let opened = format!("now:{}", p(&first));
    let asked = format!("now:{}", p(&small));
    let bare = plain(&[prog.as_os_str(), OsStr::new(&opened), OsStr::new(&asked)], &[]);
    let words = dlerror_text(&bare, &asked);
    assert_eq!(words, format!("{}: cannot allocate memory in static TLS block", p(&small)));
    let d1 = load_failed(&run_both(&prog, &[opened.clone(), format!("quiet:{}", p(&small))], &[]));
    assert_eq!(d1["failure"]["error"], Value::Null, "no cause asserted: {d1:#}");
    let advice = s(&d1["failure"]["explanation"]["advice"]).to_owned();
    assert!(advice.contains(&format!("(1) \"{words}\"")), "{advice}");
    assert!(advice.contains("dlopened before it took 1400 bytes"), "{advice}");
    // A `-z now` plugin whose symbol an RTLD_GLOBAL provider defines.
    let provider = shared(&d.path("lib/libprov.so"), "fakelib.c", &["-DFIXTURE_DEFINES=not_defined_anywhere"]);
    let now = shared(&d.path("plugin/libnow.so"), "static_tls.c", &["-Wl,-z,now"]);
    let global = format!("global:{}", p(&provider));
    let asked = format!("now:{}", p(&now));
    let d2 = load_failed(&run_both(&prog, &[global.clone(), asked.clone()], &[]));
    let advice = s(&d2["failure"]["explanation"]["advice"]).to_owned();
    assert!(!advice.contains("LD_PRELOAD="), "{advice}");
    // The oracle: preloaded, it stops the start; the tunable fixes it.
    let argv = [prog.as_os_str(), OsStr::new(&global), OsStr::new(&asked)];
    let preloaded = plain(&argv, &[("LD_PRELOAD", now.as_os_str())]);
    assert_eq!(preloaded.out.status.code(), Some(127), "{}", preloaded.stderr());
    let tunable = advice.split("GLIBC_TUNABLES=").nth(1).expect("a tunable").split_whitespace().next().unwrap();
    let fixed = plain(&argv, &[("GLIBC_TUNABLES", OsStr::new(tunable))]);
    assert!(fixed.stdout().contains(&format!("{asked}: ok")), "{}", fixed.stdout());
}

/// `LD_TRACE_LOADED_OBJECTS` (what `ldd` sets): the loader lists the
/// libraries, a missing one as "not found", and ends the process before
/// main with status 0. That is no failed start.
#[test]
fn a_listing_run_of_the_loader_is_never_said_to_have_ended_before_main() {
    let d = Dir::new("failed-listing");
    let (missing, gone, _) = needs_gone(&d);
    std::fs::remove_file(&gone).unwrap();
    let argv = [OsStr::new("env"), OsStr::new("LD_TRACE_LOADED_OBJECTS=1"), missing.as_os_str()];
    let b = Both { bare: plain(&argv, &[]), traced: traced(&["-q"], &argv, &[]) };
    // The oracle: the loader's own listing (the same, addresses aside), and
    // its status.
    let listed = |r: &Run| -> Vec<String> {
        r.stdout().lines().map(|l| l.split(" (0x").next().unwrap_or(l).to_owned()).collect()
    };
    assert_eq!(listed(&b.traced), listed(&b.bare));
    assert_eq!(b.traced.out.status.code(), Some(0));
    assert_eq!(b.bare.out.status.code(), Some(0));
    assert!(b.bare.stdout().contains("libgone.so.1 => not found"), "{}", b.bare.stdout());
    assert!(b.bare.maps.is_empty() && b.traced.maps.is_empty(), "main never ran");
    for found in before_main(&b.traced, &d) {
        assert!(found.is_empty(), "{found:#?}");
    }
    let processes = b.traced.summary.as_ref().unwrap()["processes"].as_array().unwrap().clone();
    assert!(processes.iter().all(|p| p.get("ended_before_main").is_none()), "{processes:#?}");
}

#[test]
fn a_program_that_reached_main_is_never_said_to_have_ended_before_it() {
    let d = Dir::new("failed-started");
    let linked = d.build("link/libcudart.so.12", false, &[], &[]);
    let lacking = shared(&d.path("run/libcudart.so.12"), "versioned.c", &["-Wl,-soname,libcudart.so.12"]);
    // Lazily bound: the missing function fails only when main calls it.
    let lazy = starts(&d, "bin/lazy", &linked, &["-Wl,-z,lazy", "-Wl,-rpath,$ORIGIN/../run"]);
    let fine = starts(&d, "bin/fine", &linked, &["-Wl,-rpath,$ORIGIN/../link"]);
    for (prog, args) in [(&lazy, &[][..]), (&fine, &["kill"][..]), (&fine, &[][..])] {
        let b = start_both(prog, args);
        assert_eq!(b.bare.maps.len(), 1, "{prog:?} {args:?}: main ran bare");
        assert_eq!(b.traced.maps.len(), 1, "{prog:?} {args:?}: main ran traced");
        assert_eq!(b.traced.events_of("process_loaded").len(), 1, "{prog:?} {args:?}");
        for found in before_main(&b.traced, &d) {
            assert!(found.is_empty(), "{prog:?} {args:?}: {found:#?}");
        }
    }
    assert!(lacking.exists());
}
