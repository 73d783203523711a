//! Pins, --toolkit, --strict, lock files and config files, against the
//! loader's ground truth: /proc/PID/maps, and the build that answers.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn pin_arg(soname: &str, path: &Path) -> String {
    format!("--pin={soname}={}", p(path))
}

/// Every file named libcudart.so.12* in the only process's maps.
fn mapped_cudart12(run: &Run) -> BTreeSet<String> {
    assert_eq!(run.maps.len(), 1, "one process; stderr:\n{}", run.stderr());
    let all = run.maps.values().next().unwrap();
    all.iter().filter(|p| p.rsplit('/').next().unwrap().starts_with("libcudart.so.12")).cloned().collect()
}

struct Route {
    name: &'static str,
    actions: Vec<String>,
    env: Vec<(&'static str, PathBuf)>,
    /// The files mapped without the pin.
    original: Vec<PathBuf>,
}

fn routes() -> Vec<Route> {
    let f = fixtures();
    let wheel_dir = f.wheel_cudart12.parent().unwrap().to_path_buf();
    let tk_dir = f.toolkit_cudart.parent().unwrap().to_path_buf();
    vec![
        Route {
            name: "dlopen by bare name",
            actions: vec!["dlopen:libcudart.so.12".into()],
            env: vec![("LD_LIBRARY_PATH", wheel_dir.clone())],
            original: vec![f.wheel_cudart12.clone()],
        },
        Route {
            name: "dlopen by the absolute path of another copy",
            actions: vec![format!("dlopen:{}", p(&f.wheel_cudart12))],
            env: vec![],
            original: vec![f.wheel_cudart12.clone()],
        },
        Route {
            name: "DT_NEEDED of a dlopened library, through its DT_RPATH $ORIGIN",
            actions: vec![format!("dlopen:{}", p(&f.torchish))],
            env: vec![],
            original: vec![f.wheel_cudart12.clone()],
        },
        Route {
            name: "the unversioned development name",
            actions: vec!["dlopen:libcudart.so".into()],
            env: vec![("LD_LIBRARY_PATH", tk_dir.clone())],
            original: vec![f.toolkit_cudart.clone()],
        },
        Route {
            name: "the full-version name",
            actions: vec!["dlopen:libcudart.so.12.4.127".into()],
            env: vec![("LD_LIBRARY_PATH", tk_dir)],
            original: vec![f.toolkit_cudart.clone()],
        },
        Route {
            name: "two other copies by absolute path, one after the other",
            actions: vec![format!("dlopen:{}", p(&f.wheel_cudart12)), format!("dlopen:{}", p(&f.toolkit_cudart))],
            env: vec![],
            original: vec![f.wheel_cudart12.clone(), f.toolkit_cudart.clone()],
        },
    ]
}

#[test]
fn a_pin_holds_for_every_route_and_maps_exactly_one_copy() {
    let f = fixtures();
    let pinned = canonical(&f.pinned_cudart);
    for route in routes() {
        let mut actions = route.actions.clone();
        actions.push("call:libcudart.so.12".into());
        let env: Vec<(&str, &OsStr)> = route.env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let bare = traced(&[], &loader(&actions), &env);
        let original: BTreeSet<String> = route.original.iter().map(|o| canonical(o)).collect();
        assert_eq!(mapped_cudart12(&bare), original, "{} without a pin", route.name);
        let pin = pin_arg("libcudart.so.12", &f.pinned_cudart);
        let run = traced(&[&pin], &loader(&actions), &env);
        assert_eq!(mapped_cudart12(&run), [pinned.clone()].into(), "{}: maps\n{}", route.name, run.stderr());
        assert!(run.stdout().contains("call:libcudart.so.12: ok which=pinned-12"), "{}: {}", route.name, run.stdout());
        let e = run.load_event(&f.pinned_cudart);
        assert_eq!(e["pinned"], true, "{}", route.name);
        assert!(e["redirected_from"].is_string(), "{}: {e}", route.name);
        let pins = run.summary.as_ref().unwrap()["pins"].as_array().unwrap().clone();
        assert_eq!(pins[0]["used_in"].as_array().unwrap().len(), 1, "{}", route.name);
    }
}

/// `dlmopen` of a path: glibc asks the audit interface nothing about it
/// (no requester, no `la_objsearch`), in a new namespace or the base one.
#[test]
fn a_pin_holds_for_dlmopen_of_a_path_into_any_namespace() {
    let f = fixtures();
    let pinned = canonical(&f.pinned_cudart);
    let pin = pin_arg("libcudart.so.12", &f.pinned_cudart);
    for action in ["dlmopen", "basedlmopen"] {
        let a = vec![format!("{action}:{}", p(&f.wheel_cudart12))];
        let bare = plain(&loader(&a), &[]);
        assert!(bare.stdout().contains(": ok which=wheel-12"), "{action} bare: {}", bare.stdout());
        let run = traced(&[&pin], &loader(&a), &[]);
        assert!(run.stdout().contains(": ok which=pinned-12"), "{action}: {}\n{}", run.stdout(), run.stderr());
        assert_eq!(mapped_cudart12(&run), [pinned.clone()].into(), "{action}: the pinned file, and no other copy");
        let e = run.load_event(&f.pinned_cudart);
        assert_eq!(e["pinned"], true, "{action}: {e}");
        assert_eq!(e["redirected_from"], canonical(&f.wheel_cudart12).as_str(), "{action}: {e}");
    }
}

#[test]
fn strict_refuses_a_dlmopen_of_a_path_with_a_culaunch_dlerror() {
    let f = fixtures();
    for action in ["dlmopen", "basedlmopen"] {
        let a = vec![format!("{action}:{}", p(&f.conda_cublas))];
        let run = traced(&["--strict"], &loader(&a), &[]);
        let out = run.stdout();
        assert!(out.contains(&format!("{action}:{}: fail: culaunch: refused", p(&f.conda_cublas))), "{action}: {out}");
        assert!(out.contains("no pin or lock entry allows it"), "{action}: {out}");
        assert!(run.mapped_cuda(*run.maps.keys().next().unwrap()).is_empty(), "{action}: nothing mapped");
        assert_eq!(run.events_of("deny").len(), 1, "{action}");
    }
}

/// A redirected `dlmopen` that maps nothing (the pinned file is mapped
/// already) leaves nothing behind for a later load to be blamed with.
#[test]
fn a_redirect_of_a_dlmopen_ends_with_its_call() {
    let f = fixtures();
    let pin = pin_arg("libcudart.so.12", &f.pinned_cudart);
    let a = vec![
        format!("dlopen:{}", p(&f.pinned_cudart)),
        format!("basedlmopen:{}", p(&f.wheel_cudart12)),
        format!("symdlmopen:{}", p(&f.pinned_cudart)),
    ];
    let run = traced(&[&pin], &loader(&a), &[]);
    let out = run.stdout();
    assert!(out.contains(&format!("basedlmopen:{}: ok which=pinned-12", p(&f.wheel_cudart12))), "{out}");
    assert!(out.contains(&format!("symdlmopen:{}: ok which=pinned-12", p(&f.pinned_cudart))), "{out}");
    let late: Vec<_> = run.events_of("load").into_iter().filter(|e| e["lmid"] != 0).collect();
    assert_eq!(late.len(), 1, "{late:#?}");
    assert_eq!(late[0]["redirected_from"], serde_json::Value::Null, "nothing redirected it: {}", late[0]);
    assert_eq!(late[0]["request"], canonical(&f.pinned_cudart).as_str(), "{}", late[0]);
}

/// Refusals at once in eight threads, through `dlopen` and `dlmopen`: each
/// `dlerror()` names its own request, and each refusal is a `deny` event.
#[test]
fn concurrent_refusals_each_keep_their_own_text() {
    let f = fixtures();
    let exe = f.root.join("bin/refuse_race");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/refuse_race.c");
    let built = Command::new("cc").arg(&src).arg("-o").arg(&exe).args(["-pthread", "-ldl"]).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let run = traced(&["--strict"], &[exe.as_os_str()], &[]);
    assert_eq!(run.stdout(), "asked=2400 wrong=0\n", "{}", run.stderr());
    assert_eq!(run.events_of("deny").len(), 2400);
    assert!(run.events_of("deny").iter().all(|e| e["caller"] == canonical(&exe).as_str()));
}

/// A thread whose `dlmopen`s `--strict` refuses, beside one that loads and
/// unloads two allowed libraries: every mapping of the other thread is in
/// the trace, and no unmapping is missed (a refusal holds the module's
/// state outside the loader's lock; the loader's callbacks wait for it).
#[test]
fn refusals_in_one_thread_cost_the_loads_of_another_nothing() {
    let f = fixtures();
    let [a, b] = &f.drivers;
    let refused = os("/nonexistent/libcublas.so.12");
    let argv = [f.thread_loads.as_os_str(), os("beside"), os("400"), a.as_os_str(), b.as_os_str(), refused];
    let run = traced(&["--strict"], &argv, &[]);
    let out = run.stdout();
    let count = |key: &str| -> usize {
        let word = out.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in {out}"));
        word.parse().unwrap()
    };
    assert_eq!((count("fresh="), count("wrong=")), (800, 0), "each dlopen mapped its file anew: {out}");
    let (a, b) = (canonical(a), canonical(b));
    let loads =
        run.events_of("load").into_iter().filter(|e| e["path"] == a.as_str() || e["path"] == b.as_str()).count();
    assert_eq!(loads, 800, "{out}");
    assert_eq!(run.events_of("conflict"), Vec::<&serde_json::Value>::new(), "the two never were mapped at once");
    assert_eq!(run.events_of("deny").len(), count("refusals="));
}

/// Loads from the program's constructor, which runs before `main` (and
/// before `la_preinit`): a refusal is the caller's failed call, not the
/// end of the process, and a redirect is reported as the `dlopen` or
/// `dlmopen` it was.
#[test]
fn loads_from_a_constructor_are_refused_and_redirected_as_calls() {
    let f = fixtures();
    let cublas = p(&f.conda_cublas);
    let ctor = format!("dlmopen:{cublas} dlopen:{cublas}");
    let run = traced(&["--strict"], &loader(&["dlopen:libm.so.6".into()]), &[("FIXTURE_CTOR", os(&ctor))]);
    let out = run.stdout();
    assert!(run.out.status.success(), "{out}\n{}", run.stderr());
    for action in ["dlmopen", "dlopen"] {
        assert!(out.contains(&format!("ctor {action}:{cublas}: fail: culaunch: refused {cublas}")), "{action}: {out}");
    }
    assert!(out.ends_with("dlopen:libm.so.6: ok\n"), "main ran: {out}");
    assert_eq!(run.events_of("deny").len(), 2);

    let wheel = p(&f.wheel_cudart12);
    let ctor = format!("dlmopen:{wheel} dlopen:{wheel}");
    let run = traced(&[&pin_arg("libcudart.so.12", &f.pinned_cudart)], &loader(&[]), &[("FIXTURE_CTOR", os(&ctor))]);
    let out = run.stdout();
    assert_eq!(out, format!("ctor dlmopen:{wheel}: ok which=pinned-12\nctor dlopen:{wheel}: ok which=pinned-12\n"));
    let pinned = canonical(&f.pinned_cudart);
    let loads: Vec<_> = run.events_of("load").into_iter().filter(|e| e["path"] == pinned.as_str()).collect();
    let hows: Vec<_> = loads.iter().map(|e| s(&e["how"])).collect();
    assert_eq!(hows, ["dlmopen", "dlopen"], "{loads:#?}");
    for e in loads {
        assert_eq!(e["redirected_from"], canonical(&f.wheel_cudart12).as_str(), "{e}");
    }
}

/// A `dlmopen` that loads nothing whatever culaunch says (RTLD_NOLOAD of a
/// file not loaded, a mode glibc rejects) ends under `--strict` exactly as
/// without culaunch: no refusal, no `deny`.
#[test]
fn strict_leaves_a_dlmopen_that_would_load_nothing_as_it_is() {
    let f = fixtures();
    let a = vec![format!("mnoload:{}", p(&f.conda_cublas)), format!("mnomode:{}", p(&f.conda_cublas))];
    let bare = plain(&loader(&a), &[]);
    assert!(bare.stdout().contains("invalid mode"), "{}", bare.stdout());
    let run = traced(&["--strict"], &loader(&a), &[]);
    assert_eq!(run.stdout(), bare.stdout());
    assert_eq!(run.events_of("deny").len(), 0);
}

/// A `dlmopen` of a path from a thread with the smallest stack the system
/// allows works under pins and `--strict` as without them.
#[test]
fn a_dlmopen_from_the_smallest_thread_stack_works_under_pins_and_strict() {
    let f = fixtures();
    let argv = [f.thread_loads.as_os_str(), os("smallstack"), f.drivers[0].as_os_str()];
    assert_eq!(plain(&argv, &[]).stdout(), "smallstack: ok\n");
    for opt in ["--strict".to_owned(), pin_arg("libcudart.so.12", &f.pinned_cudart)] {
        let run = traced(&[&opt], &argv, &[]);
        assert_eq!(run.stdout(), "smallstack: ok\n", "{opt}: {}", run.stderr());
    }
    // Refused, with its text.
    let argv = [f.thread_loads.as_os_str(), os("smallstack"), f.conda_cublas.as_os_str()];
    let run = traced(&["--strict"], &argv, &[]);
    let refused = format!("smallstack: culaunch: refused {}", p(&f.conda_cublas));
    assert!(run.stdout().starts_with(&refused), "{}\n{}", run.stdout(), run.stderr());
}

#[test]
fn a_pin_holds_for_dt_needed_of_the_executable() {
    let f = fixtures();
    let bare = traced(&[], &[f.needs_cudart.as_os_str()], &[]);
    assert_eq!(bare.stdout(), "version=12090\n");
    let run = traced(&[&pin_arg("libcudart.so.12", &f.pinned_cudart)], &[f.needs_cudart.as_os_str()], &[]);
    assert_eq!(run.stdout(), "version=12990\n", "the pinned build answers");
    assert_eq!(mapped_cudart12(&run), [canonical(&f.pinned_cudart)].into());
    assert_eq!(run.load_event(&f.pinned_cudart)["how"], "initial");
}

#[test]
fn another_major_is_not_redirected_but_reported_and_refused_when_strict() {
    let f = fixtures();
    let pin = pin_arg("libcudart.so.12", &f.pinned_cudart);
    let a = vec![format!("dlopen:{}", p(&f.wheel_cudart11))];
    let run = traced(&[&pin], &loader(&a), &[]);
    assert!(run.stdout().contains("ok which=wheel-11"), "{}", run.stdout());
    let c = run.events_of("conflict");
    assert_eq!(c.len(), 1, "{:#?}", run.events);
    assert_eq!(c[0]["family"], "cudart");
    let strict = traced(&[&pin, "--strict"], &loader(&a), &[]);
    let out = strict.stdout();
    assert!(out.contains(": fail: culaunch: refused"), "{out}");
    assert!(out.contains("libcudart.so.11.0") && out.contains("another major of pinned libcudart.so.12"), "{out}");
    assert!(out.contains(&format!("requested by {}", canonical(&f.loader))), "{out}");
    assert!(strict.mapped_cuda(*strict.maps.keys().next().unwrap()).is_empty());
    assert_eq!(strict.events_of("deny").len(), 1);
}

#[test]
fn strict_refuses_an_unpinned_cuda_library_with_a_culaunch_dlerror() {
    let f = fixtures();
    let a = vec![
        format!("dlopen:{}", p(&f.conda_cublas)),
        format!("dlopen:{}", p(&f.wheel_cudart12)),
        "dlopen:libm.so.6".into(),
    ];
    let run = traced(&["--strict", &pin_arg("libcudart.so.12", &f.pinned_cudart)], &loader(&a), &[]);
    let out = run.stdout();
    assert!(out.contains(&format!("dlopen:{}: fail: culaunch: refused", p(&f.conda_cublas))), "{out}");
    assert!(out.contains("no pin or lock entry allows it"), "{out}");
    assert!(out.contains("ok which=pinned-12"), "the pinned library still loads: {out}");
    assert!(out.contains("dlopen:libm.so.6: ok"), "non-CUDA libraries are not affected: {out}");
    assert!(run.stderr().contains("refused:"), "{}", run.stderr());
}

#[test]
fn strict_refusal_before_main_ends_the_process_with_125() {
    let f = fixtures();
    // A user's own audit module beside culaunch's: its namespace becomes
    // consistent before the program's DT_NEEDED are mapped.
    for user_audit in [None, Some(&f.audit_probe)] {
        let mut cmd = Command::new(CULAUNCH);
        cmd.args(["-q", "--strict", "--"]).arg(&f.needs_cudart);
        if let Some(m) = user_audit {
            cmd.env("LD_AUDIT", m);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{user_audit:?}");
        assert_eq!(out.stdout, b"", "main never ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("culaunch: refused libcudart.so.12"), "{user_audit:?}: {err}");
        assert!(err.contains(&canonical(&f.needs_cudart)), "{err}");
    }
    let run = traced(&[], &[f.needs_cudart.as_os_str()], &[("LD_AUDIT", f.audit_probe.as_os_str())]);
    assert_eq!(run.load_event(&f.wheel_cudart12)["how"], "initial");
}

#[test]
fn bad_pins_fail_before_starting_naming_the_pin() {
    let f = fixtures();
    let text = f.root.join("not-elf.so");
    std::fs::write(&text, "hello").unwrap();
    let marker = f.root.join("pin-marker");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![pin_arg("libcudart.so.12", Path::new("/nonexistent/libcudart.so.12"))], "No such file"),
        (vec![pin_arg("libcudart.so.12", &text)], "not an ELF file"),
        (vec![pin_arg("libcudart.so.12", &f.conda_cublas)], "its SONAME is libcublas.so.12"),
        (vec![pin_arg("libcudart.so.12", &f.loader)], "it has no SONAME"),
        (
            vec![pin_arg("libcudart.so.12", f.static_prog.as_ref().expect("cc -static works"))],
            "not an ELF shared object",
        ),
        (
            vec![pin_arg("libcudart.so.12", &f.pinned_cudart), pin_arg("libcudart.so.12", &f.wheel_cudart12)],
            "two pins for libcudart.so.12",
        ),
    ];
    for (args, want) in cases {
        let _ = std::fs::remove_file(&marker);
        let out = Command::new(CULAUNCH).args(&args).arg("--").arg("touch").arg(&marker).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(want) && err.contains("libcudart.so.12"), "{args:?}: {err}");
        assert!(!marker.exists(), "nothing was started");
    }
}

#[test]
fn toolkit_pins_every_cuda_library_it_holds_and_an_explicit_pin_wins() {
    let f = fixtures();
    let tk = f.toolkit_cudart.ancestors().nth(3).unwrap();
    let a = vec![format!("dlopen:{}", p(&f.wheel_cudart12)), "call:libcudart.so.12".into()];
    let run = traced(&["--toolkit", &p(tk)], &loader(&a), &[]);
    assert_eq!(mapped_cudart12(&run), [canonical(&f.toolkit_cudart)].into());
    assert!(run.stdout().contains("which=toolkit-12.4"));
    let both = traced(&["--toolkit", &p(tk), &pin_arg("libcudart.so.12", &f.pinned_cudart)], &loader(&a), &[]);
    assert_eq!(mapped_cudart12(&both), [canonical(&f.pinned_cudart)].into());
    let empty = Command::new(CULAUNCH).args(["--toolkit", "/tmp", "--", "true"]).output().unwrap();
    assert_eq!(empty.status.code(), Some(125));
}

#[test]
fn lock_then_locked_replays_and_a_changed_byte_is_refused_naming_both_hashes() {
    let f = fixtures();
    let dir = f.root.join("lock-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libcudart.so.12");
    std::fs::copy(&f.pinned_cudart, &lib).unwrap();
    let lock = dir.join("culaunch.lock");
    let a = vec![format!("dlopen:{}", p(&lib))];
    let out = Command::new(CULAUNCH).args(["lock", "-q", "-o"]).arg(&lock).arg("--").args(loader(&a)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&lock).unwrap();
    let sha = Command::new("sha256sum").arg(&lib).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_owned();
    assert!(text.contains("soname = \"libcudart.so.12\"") && text.contains(&sha), "{text}");
    assert!(text.contains(&canonical(&lib)), "{text}");

    // Replayed: the locked copy is pinned (another copy is redirected to it)
    // and anything else of the CUDA family is refused.
    let locked = format!("--locked={}", p(&lock));
    let other = vec![format!("dlopen:{}", p(&f.wheel_cudart12)), format!("dlopen:{}", p(&f.conda_cublas))];
    let run = traced(&[&locked], &loader(&other), &[]);
    assert_eq!(mapped_cudart12(&run), [canonical(&lib)].into());
    assert!(run.stdout().contains(": fail: culaunch: refused"), "{}", run.stdout());

    // One byte changed.
    let mut bytes = std::fs::read(&lib).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&lib, &bytes).unwrap();
    let out = Command::new(CULAUNCH).arg(&locked).args(["--", "true"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    let new_sha = Command::new("sha256sum").arg(&lib).output().unwrap();
    let new_sha = String::from_utf8_lossy(&new_sha.stdout).split_whitespace().next().unwrap().to_owned();
    assert!(err.contains(&sha) && err.contains(&new_sha) && err.contains(&p(&lib)), "{err}");

    // Gone.
    std::fs::remove_file(&lib).unwrap();
    let out = Command::new(CULAUNCH).arg(&locked).args(["--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn config_file_sets_pins_a_typo_is_named_with_line_and_column_and_the_command_line_wins() {
    let f = fixtures();
    let dir = f.root.join("config-test");
    std::fs::create_dir_all(&dir).unwrap();
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "strict = true\nstirct = false\n").unwrap();
    let out = Command::new(CULAUNCH).arg("-c").arg(&typo).args(["--", "true"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125));
    assert!(err.contains("stirct") && err.contains("line 2, column 1") && err.contains(&p(&typo)), "{err}");

    let good = dir.join("job.toml");
    let config_trace = dir.join("from-config.jsonl");
    std::fs::write(
        &good,
        format!("trace = \"{}\"\n[pins]\n\"libcudart.so.12\" = \"{}\"\n", p(&config_trace), p(&f.pinned_cudart)),
    )
    .unwrap();
    let a = vec![format!("dlopen:{}", p(&f.wheel_cudart12))];
    // traced() passes -t itself: the command line wins over the config's trace.
    let run = traced(&["-c", &p(&good)], &loader(&a), &[]);
    assert_eq!(mapped_cudart12(&run), [canonical(&f.pinned_cudart)].into());
    assert!(!run.events.is_empty());
    assert!(!config_trace.exists(), "the -t given on the command line won");
}

/// `to` relative to the current directory, with `..` as needed.
fn relative(to: &Path) -> PathBuf {
    let here = std::env::current_dir().unwrap();
    let common = here.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in here.components().skip(common) {
        rel.push("..");
    }
    rel.extend(to.components().skip(common));
    rel
}

#[test]
fn a_pin_holds_for_a_relative_path_and_in_every_descendant() {
    let f = fixtures();
    let rel = relative(&f.wheel_cudart12);
    assert!(rel.is_relative() && rel.exists());
    let a = vec![
        format!("dlopen:{}", p(&rel)),
        "fork".into(),
        format!("dlopen:{}", p(&f.torchish)),
        "spawn".into(),
        format!("dlopen:{}", p(&f.wheel_cudart12)),
        "call:libcudart.so.12".into(),
    ];
    let run = traced(&[&pin_arg("libcudart.so.12", &f.pinned_cudart)], &loader(&a), &[]);
    assert_eq!(run.maps.len(), 3, "{}", run.stderr());
    for (pid, maps) in &run.maps {
        let cudart: BTreeSet<&String> = maps.iter().filter(|p| p.contains("libcudart.so.12")).collect();
        assert_eq!(cudart, [&canonical(&f.pinned_cudart)].into(), "pid {pid}");
    }
    assert!(run.stdout().contains("which=pinned-12"));
    let used = &run.summary.as_ref().unwrap()["pins"][0]["used_in"];
    assert_eq!(used.as_array().unwrap().len(), 3, "the pin was used in all three processes");
}

#[test]
fn a_pinned_library_loading_another_pinned_one_gets_that_pin_not_itself() {
    let f = fixtures();
    // Copies of the cuDNN-style dispatcher and its sub-library elsewhere.
    let dir = f.root.join("pinned-cudnn");
    std::fs::create_dir_all(&dir).unwrap();
    let (cudnn, ops) = (dir.join("libcudnn.so.9"), dir.join("libcudnn_ops.so.9"));
    std::fs::copy(&f.cudnn, &cudnn).unwrap();
    std::fs::copy(&f.cudnn_ops, &ops).unwrap();
    let a = vec![format!("via:{}:libcudnn_ops.so.9", p(&f.cudnn))];
    let run = traced(&[&pin_arg("libcudnn.so.9", &cudnn), &pin_arg("libcudnn_ops.so.9", &ops)], &loader(&a), &[]);
    assert!(run.stdout().contains("ok which=cudnn-ops-9"), "{}", run.stdout());
    let pid = *run.maps.keys().next().unwrap();
    assert_eq!(run.mapped_cuda(pid), [canonical(&cudnn), canonical(&ops)].into());
    let e = run.load_event(&ops);
    assert_eq!((e["caller"].as_str(), e["pinned"].as_bool()), (Some(canonical(&cudnn).as_str()), Some(true)));
}

/// A wheel's own copies of libcudart under auditwheel's hashed names (as
/// PyTorch's builds bundle them: `libcudart-d0da41ae.so.11.0`). Bare, both
/// copies map beside the other library; traced, the 11.0 copy is cudart (a
/// conflict with libcudart.so.12, refused under `--strict`), and a pin of
/// libcudart.so.12 takes the place of the hashed 12 copy.
#[test]
fn a_vendored_copy_under_a_hashed_name_is_cudart_and_a_pin_of_its_major_takes_its_place() {
    let f = fixtures();
    let d = Dir::new("vendored");
    let v11 = d.build("torch/lib/libcudart-d0da41ae.so.11.0", false, &[], &["-DFIXTURE_BUILD=\"vendored-11\""]);
    let v12 = d.build("torch/lib/libcudart-0123abcd.so.12", false, &[], &["-DFIXTURE_BUILD=\"vendored-12\""]);
    let mapped = |run: &Run| -> BTreeSet<String> {
        assert_eq!(run.maps.len(), 1, "one process; stderr:\n{}", run.stderr());
        let all = run.maps.values().next().unwrap();
        all.iter().filter(|p| p.rsplit('/').next().unwrap().starts_with("libcudart")).cloned().collect()
    };

    let two = vec![format!("dlopen:{}", p(&v11)), format!("dlopen:{}", p(&f.wheel_cudart12))];
    let bare = plain(&loader(&two), &[]);
    let both: BTreeSet<String> = [canonical(&v11), canonical(&f.wheel_cudart12)].into();
    assert_eq!(mapped(&bare), both, "bare: both copies map");
    let run = traced(&[], &loader(&two), &[]);
    assert_eq!(mapped(&run), both);
    let e = run.load_event(&v11);
    assert_eq!((&e["cuda"], &e["family"]), (&true.into(), &"cudart".into()), "{e}");
    let c = run.events_of("conflict");
    assert_eq!(c.len(), 1, "{:#?}", run.events);
    let paths: BTreeSet<String> = c[0]["paths"].as_array().unwrap().iter().map(s).collect();
    assert_eq!((s(&c[0]["family"]), paths), ("cudart".into(), both));
    let summary = run.summary.as_ref().unwrap();
    assert_eq!(summary["conflicts"].as_array().unwrap().len(), 1, "{summary:#}");

    let pin = pin_arg("libcudart.so.12", &f.pinned_cudart);
    let a = vec![format!("dlopen:{}", p(&v12)), format!("dlopen:{}", p(&v11))];
    let bare = plain(&loader(&a), &[]);
    assert!(bare.stdout().contains(&format!("dlopen:{}: ok which=vendored-12", p(&v12))), "{}", bare.stdout());
    let strict = traced(&[&pin, "--strict"], &loader(&a), &[]);
    let out = strict.stdout();
    assert_eq!(mapped(&strict), [canonical(&f.pinned_cudart)].into(), "{out}");
    assert!(out.contains(&format!("dlopen:{}: ok which=pinned-12", p(&v12))), "{out}");
    assert!(out.contains(&format!("dlopen:{}: fail: culaunch: refused", p(&v11))), "{out}");
    assert_eq!(strict.load_event(&f.pinned_cudart)["redirected_from"], canonical(&v12).as_str());
}

/// A locked file replaced on disk while the job runs (after culaunch
/// checked its sha256): the lock vouches for the file it hashed, so the
/// job's later request is refused, in a process started before the swap and
/// in one started after it. Bare, the same job loads the new build.
#[test]
fn a_locked_file_replaced_during_the_run_is_refused_not_loaded() {
    let f = fixtures();
    let d = Dir::new("locked-replaced");
    let lib = d.path("lib/libcudart.so.12");
    std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
    std::fs::copy(&f.pinned_cudart, &lib).unwrap();
    let new = d.build("new/libcudart.so.12", false, &[], &["-DFIXTURE_BUILD=\"new-12\""]);
    let lock = d.path("culaunch.lock");
    let a = vec![format!("dlopen:{}", p(&lib))];
    let out = Command::new(CULAUNCH).args(["lock", "-q", "-o"]).arg(&lock).arg("--").args(loader(&a)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let locked = format!("--locked={}", p(&lock));

    // The swap, then a request by bare name, in this process and in a
    // child started (exec) after the swap.
    let keep = d.path("keep.so");
    std::fs::copy(&new, &keep).unwrap();
    let a = vec![
        format!("rename:{}:{}", p(&new), p(&lib)),
        "dlopen:libcudart.so.12".into(),
        "exec".into(),
        "dlopen:libcudart.so.12".into(),
    ];
    let env = [("LD_LIBRARY_PATH", lib.parent().unwrap().as_os_str())];
    let run = traced(&[&locked], &loader(&a), &env);
    let out = run.stdout();
    let refused: Vec<&str> =
        out.lines().filter(|l| l.starts_with("dlopen:libcudart.so.12: fail: culaunch: refused")).collect();
    assert_eq!(refused.len(), 2, "{out}\n{}", run.stderr());
    assert!(refused[0].contains("--locked:") && refused[0].contains("replaced or changed after the check"), "{out}");
    for (pid, maps) in &run.maps {
        assert!(!maps.iter().any(|m| m.contains("libcudart")), "pid {pid} mapped {maps:?}");
    }
    assert_eq!(run.events_of("deny").len(), 2, "{:#?}", run.events);

    // Bare: the same steps load the new build.
    std::fs::copy(&f.pinned_cudart, &lib).unwrap();
    std::fs::copy(&keep, &new).unwrap();
    let bare = plain(&loader(&a), &env);
    assert_eq!(bare.stdout().matches("dlopen:libcudart.so.12: ok which=new-12").count(), 2, "{}", bare.stdout());

    // Written over in place (`cp` keeps the inode): changed after the
    // check, refused too; bare, the new build loads.
    std::fs::copy(&f.pinned_cudart, &lib).unwrap();
    let script = format!("cp {} {} && exec {} dlopen:libcudart.so.12", p(&keep), p(&lib), p(&f.loader));
    let sh = ["/bin/sh".as_ref(), "-c".as_ref(), OsStr::new(&script)];
    let run = traced(&[&locked], &sh, &env);
    assert!(
        run.stdout().contains("dlopen:libcudart.so.12: fail: culaunch: refused"),
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(run.stdout().contains("replaced or changed after the check"), "{}", run.stdout());
    std::fs::copy(&f.pinned_cudart, &lib).unwrap();
    let bare = plain(&sh, &env);
    assert!(bare.stdout().contains("dlopen:libcudart.so.12: ok which=new-12"), "{}", bare.stdout());

    // The same asked for by the locked file's own path (another build of
    // the same size and mtime, written over it by cp): refused too.
    std::fs::copy(&f.pinned_cudart, &lib).unwrap();
    let same = d.path("same-size.so");
    let mut bytes = std::fs::read(&lib).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&same, &bytes).unwrap();
    let touch = Command::new("touch").arg("-r").arg(&lib).arg(&same).status().unwrap();
    assert!(touch.success());
    let script = format!("cp {} {} && exec {} dlopen:{}", p(&same), p(&lib), p(&f.loader), p(&lib));
    let sh = ["/bin/sh".as_ref(), "-c".as_ref(), OsStr::new(&script)];
    let out = traced(&[&locked], &sh, &env).stdout();
    assert!(out.contains(&format!("dlopen:{}: fail: culaunch: refused", p(&lib))), "{out}");
}

/// A framework library that needs a wheel's hashed copy of libcudart, with
/// symbol versions naming the copy, asked for after the pinned libcudart
/// is loaded: redirecting it then made glibc stop on an assertion
/// (`_dl_check_map_versions`, status 127). The copy now loads as bare (a
/// conflict), and under `--strict` it is refused in culaunch's words.
#[test]
fn a_vendored_copy_asked_for_after_the_pin_is_loaded_is_not_redirected() {
    let f = fixtures();
    let d = Dir::new("vendored-after");
    let script = d.path("cudart.map");
    std::fs::write(&script, "libcudart.so.12 { global: *; };\n").unwrap();
    let versioned = format!("-Wl,--version-script={}", p(&script));
    d.build("sys/libcudart.so.12", false, &[], &[&versioned, "-DFIXTURE_BUILD=\"system-12\""]);
    d.build("wheel/libcudart-d0da41ae.so.12", false, &[], &[&versioned, "-DFIXTURE_BUILD=\"vendored-12\""]);
    let user = d.build_from(
        "vendored_user.c",
        "wheel/libuser.so",
        false,
        &["wheel/libcudart-d0da41ae.so.12"],
        &["-Wl,-rpath,$ORIGIN"],
    );
    let readelf = Command::new("readelf").arg("-V").arg(&user).output().unwrap();
    assert!(
        String::from_utf8_lossy(&readelf.stdout).contains("File: libcudart-d0da41ae.so.12"),
        "a verneed on the copy"
    );
    let a = vec!["dlopen:libcudart.so.12".to_owned(), format!("dlopen:{}", p(&user))];
    let env = [("LD_LIBRARY_PATH", d.path("sys").into_os_string())];
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let bare = plain(&loader(&a), &env);
    assert!(bare.out.status.success(), "{}", bare.stderr());
    assert!(bare.stdout().contains(&format!("dlopen:{}: ok which=vendored-12", p(&user))), "{}", bare.stdout());

    let pin = pin_arg("libcudart.so.12", &f.pinned_cudart);
    let run = traced(&[&pin], &loader(&a), &env);
    assert_eq!(run.out.status.code(), bare.out.status.code(), "{}", run.stderr());
    let out = run.stdout();
    assert!(out.contains("dlopen:libcudart.so.12: ok which=pinned-12"), "{out}");
    assert!(out.contains(&format!("dlopen:{}: ok which=vendored-12", p(&user))), "{out}");
    let c = run.events_of("conflict");
    assert_eq!(c.len(), 1, "{:#?}", run.events);
    assert_eq!(c[0]["family"], "cudart");

    let strict = traced(&[&pin, "--strict"], &loader(&a), &env);
    let out = strict.stdout();
    assert!(out.contains(&format!("dlopen:{}: fail: culaunch: refused libcudart-d0da41ae.so.12", p(&user))), "{out}");
    assert!(out.contains("hashed copy of pinned libcudart.so.12"), "{out}");
    assert_eq!(strict.events_of("deny").len(), 1);

    // The pinned file loaded by a relative path, then a chdir: its name no
    // longer leads to it, and it is still known as mapped.
    let relative_pin = relative(&f.pinned_cudart);
    let a = vec![format!("dlopen:{}", p(&relative_pin)), "chdir:/".to_owned(), format!("dlopen:{}", p(&user))];
    let bare = plain(&loader(&a), &[]);
    assert!(bare.out.status.success(), "{}", bare.stderr());
    let run = traced(&[&pin], &loader(&a), &[]);
    assert_eq!(run.out.status.code(), bare.out.status.code(), "{}", run.stderr());
    assert!(run.stdout().contains(&format!("dlopen:{}: ok which=vendored-12", p(&user))), "{}", run.stdout());
}
