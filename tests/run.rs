//! `culaunch run` against the loader's ground truth: every test compares what
//! culaunch reports with /proc/PID/maps of the traced process, and with the
//! same command run without culaunch.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use common::*;

fn actions(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every process's reported CUDA loads are exactly what its maps show.
fn assert_trace_matches_maps(run: &Run) {
    assert!(!run.maps.is_empty(), "the fixture wrote no maps; stderr:\n{}", run.stderr());
    for &pid in run.maps.keys() {
        let reported: std::collections::BTreeSet<String> =
            run.loads(pid).into_iter().filter(|p| looks_cuda(p)).collect();
        assert_eq!(reported, run.mapped_cuda(pid), "pid {pid}: trace vs /proc/{pid}/maps\n{}", run.stderr());
    }
}

/// `ld.so PROGRAM`: the loader is the command, and it audits the program
/// it runs as any other. No "statically linked" warning, and the trace is
/// the program's maps.
#[test]
fn a_program_run_by_the_loader_itself_is_traced_without_a_warning() {
    let f = fixtures();
    let bytes = std::fs::read(&f.loader).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    let ld_so = std::ffi::OsString::from(elf.interpreter.unwrap());
    let a = actions(&[&format!("dlopen:{}", p(&f.wheel_cudart12))]);
    let argv: Vec<&OsStr> = std::iter::once(ld_so.as_os_str()).chain(loader(&a)).collect();
    let run = traced(&[], &argv, &[]);
    assert!(run.stdout().contains("ok which=wheel-12"), "{}", run.stdout());
    assert!(!run.stderr().contains("warning"), "{}", run.stderr());
    assert_trace_matches_maps(&run);
    assert_eq!(run.load_event(&f.wheel_cudart12)["how"], "dlopen");
}

#[test]
fn echo_output_is_exactly_the_commands() {
    let out = Command::new(CULAUNCH).args(["--", "echo", "hi"]).output().unwrap();
    assert_eq!(out.stdout, b"hi\n");
    assert!(out.status.success());
}

#[test]
fn bare_name_dlopen_from_an_rpath_library_loads_its_private_copy_not_the_decoy() {
    let f = fixtures();
    let a = actions(&[&format!("via:{}:libnvrtc-builtins.so.12", p(&f.nvrtc_rpath))]);
    let env = [("LD_LIBRARY_PATH", f.decoy_dir.as_os_str())];
    let bare = plain(&loader(&a), &env);
    assert!(bare.stdout().contains("which=private"), "{}", bare.stdout());
    // The toy design: a forwarding dlopen hook silently loads the decoy.
    let naive = plain(&loader(&a), &[env[0], ("LD_PRELOAD", f.naive_hook.as_os_str())]);
    assert!(naive.stdout().contains("which=decoy"), "naive hook: {}", naive.stdout());
    let run = traced(&[], &loader(&a), &env);
    assert_eq!(run.stdout(), bare.stdout());
    let private = f.nvrtc_rpath.parent().unwrap().join("private/libnvrtc-builtins.so.12");
    let e = run.load_event(&private);
    assert_eq!(e["how"], "dlopen");
    assert_eq!(e["caller"], canonical(&f.nvrtc_rpath).as_str());
    assert_eq!(e["search"], "rpath_runpath");
    assert_trace_matches_maps(&run);
}

/// With a pin, the program's `dlmopen` calls go through culaunch's
/// trampoline; a bare name must still be searched from the caller's
/// DT_RPATH, not from the module's.
#[test]
fn bare_name_dlmopen_from_an_rpath_library_under_a_pin_loads_its_private_copy() {
    let f = fixtures();
    let a = actions(&[&format!("mvia:{}:libnvrtc-builtins.so.12", p(&f.nvrtc_rpath))]);
    let env = [("LD_LIBRARY_PATH", f.decoy_dir.as_os_str())];
    let bare = plain(&loader(&a), &env);
    assert!(bare.stdout().contains("which=private"), "{}", bare.stdout());
    let pin = format!("--pin=libcudart.so.12={}", p(&f.pinned_cudart));
    let run = traced(&[&pin], &loader(&a), &env);
    assert_eq!(run.stdout(), bare.stdout(), "{}", run.stderr());
    let private = f.nvrtc_rpath.parent().unwrap().join("private/libnvrtc-builtins.so.12");
    assert_eq!(run.load_event(&private)["search"], "rpath_runpath");
    assert_trace_matches_maps(&run);
}

#[test]
fn bare_name_dlopen_from_a_runpath_library_loads_its_private_copy() {
    let f = fixtures();
    let a = actions(&[&format!("via:{}:libnvrtc-builtins.so.12", p(&f.nvrtc_runpath))]);
    let bare = plain(&loader(&a), &[]);
    assert!(bare.stdout().contains("which=private"), "{}", bare.stdout());
    let naive = plain(&loader(&a), &[("LD_PRELOAD", f.naive_hook.as_os_str())]);
    assert!(naive.stdout().contains(": fail"), "naive hook: {}", naive.stdout());
    let run = traced(&[], &loader(&a), &[]);
    assert_eq!(run.stdout(), bare.stdout());
    assert_trace_matches_maps(&run);
}

#[test]
fn dt_needed_of_a_dlopened_library_is_reported_with_its_requester_and_rpath() {
    let f = fixtures();
    let a = actions(&[&format!("dlopen:{}", p(&f.torchish))]);
    let run = traced(&[], &loader(&a), &[]);
    let e = run.load_event(&f.wheel_cudart12);
    assert_eq!(e["how"], "needed");
    assert_eq!(e["request"], "libcudart.so.12");
    assert_eq!(e["caller"], canonical(&f.torchish).as_str());
    assert_eq!(e["search"], "rpath_runpath");
    assert_eq!(e["soname"], "libcudart.so.12");
    assert_eq!(e["family"], "cudart");
    assert_trace_matches_maps(&run);
}

#[test]
fn dt_needed_of_the_executable_is_reported_as_initial() {
    let f = fixtures();
    let run = traced(&[], &[f.needs_cudart.as_os_str()], &[]);
    assert_eq!(run.stdout(), "version=12090\n");
    let e = run.load_event(&f.wheel_cudart12);
    assert_eq!(e["how"], "initial");
    assert_eq!(e["caller"], canonical(&f.needs_cudart).as_str());
    let pid = e["pid"].as_i64().unwrap();
    // needs_cudart writes no maps; for DT_NEEDED the loader's own answer is ldd's.
    let ldd = Command::new("ldd").arg(&f.needs_cudart).output().unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned();
    assert!(ldd.contains(&p(&f.wheel_cudart12)), "ldd: {ldd}");
    assert_eq!(run.loads(pid).iter().filter(|p| looks_cuda(p)).count(), 1);
}

#[test]
fn a_cudnn_style_dispatcher_loading_its_sub_library_from_origin_is_seen() {
    let f = fixtures();
    let a = actions(&[&format!("via:{}:libcudnn_ops.so.9", p(&f.cudnn))]);
    let bare = plain(&loader(&a), &[]);
    let run = traced(&[], &loader(&a), &[]);
    assert_eq!(run.stdout(), bare.stdout());
    assert!(run.stdout().contains("which=cudnn-ops-9"));
    let e = run.load_event(&f.cudnn_ops);
    assert_eq!((s(&e["how"]), s(&e["caller"])), ("dlopen".to_owned(), canonical(&f.cudnn)));
    assert_trace_matches_maps(&run);
}

#[test]
fn dlmopen_into_a_new_namespace_is_reported_as_dlmopen() {
    let f = fixtures();
    let a = actions(&[&format!("dlmopen:{}", p(&f.wheel_cudart12))]);
    let run = traced(&[], &loader(&a), &[]);
    assert!(run.stdout().contains("ok which=wheel-12"), "{}", run.stdout());
    let e = run.load_event(&f.wheel_cudart12);
    assert_eq!(e["how"], "dlmopen");
    assert_ne!(e["lmid"], 0);
    assert_trace_matches_maps(&run);
}

#[test]
fn reopening_noload_and_dlopen_null_add_no_load_events_and_behave_as_without_culaunch() {
    let f = fixtures();
    let cudart = p(&f.wheel_cudart12);
    let a = actions(&[
        &format!("dlopen:{cudart}"),
        &format!("dlopen:{cudart}"),
        "dlopen:libcudart.so.12",
        "noload:libcudart.so.12",
        &format!("noload:{}", p(&f.conda_cublas)),
        "null",
    ]);
    let bare = plain(&loader(&a), &[]);
    let run = traced(&[], &loader(&a), &[]);
    assert_eq!(run.stdout(), bare.stdout());
    assert!(run.stdout().contains("noload:libcudart.so.12: ok"));
    let cuda_loads: Vec<_> = run.events_of("load").into_iter().filter(|e| e["cuda"] == true).collect();
    assert_eq!(cuda_loads.len(), 1, "{cuda_loads:#?}");
    assert_trace_matches_maps(&run);
}

#[test]
fn without_pins_every_process_maps_the_same_files_as_without_culaunch() {
    let f = fixtures();
    let a = actions(&[
        &format!("dlopen:{}", p(&f.torchish)),
        &format!("via:{}:libnvrtc-builtins.so.12", p(&f.nvrtc_rpath)),
        &format!("via:{}:libcudnn_ops.so.9", p(&f.cudnn)),
        &format!("dlmopen:{}", p(&f.conda_cublas)),
        "dlopen:libm.so.6",
    ]);
    let env = [("LD_LIBRARY_PATH", f.decoy_dir.as_os_str())];
    let bare = plain(&loader(&a), &env);
    let run = traced(&["--all-libs"], &loader(&a), &env);
    assert_eq!(run.stdout(), bare.stdout());
    let only = |r: &Run| r.maps.values().next().cloned().unwrap_or_default();
    // The audit module and what it needs (its own copy of libc) are
    // culaunch's, in their own namespace; ldd names them.
    let ours: std::collections::BTreeSet<String> = only(&run)
        .into_iter()
        .filter(|p| p.contains("libculaunch_audit") || p.contains("libculaunch_preload"))
        .collect();
    assert_eq!(ours.len(), 1, "the audit module is mapped once: {ours:?}");
    let module_deps = ldd_paths(Path::new(ours.iter().next().unwrap()));
    let strip = |set: std::collections::BTreeSet<String>| -> std::collections::BTreeSet<String> {
        set.into_iter().filter(|p| !ours.contains(p) && !module_deps.contains(p)).collect()
    };
    assert_eq!(strip(only(&run)), strip(only(&bare)));
    // Beyond the bare run's files, the process maps the module alone: the
    // libc it needs is the program's file, mapped again in the module's
    // namespace, and Rust's unwinder is linked in (from the C compiler's
    // libgcc_eh.a, where there is one), not libgcc_s.so.1 mapped beside it.
    let libgcc_eh = Command::new("cc").arg("-print-file-name=libgcc_eh.a").output().unwrap().stdout;
    if Path::new(String::from_utf8_lossy(&libgcc_eh).trim()).is_absolute() {
        let extra: std::collections::BTreeSet<String> = only(&run).difference(&only(&bare)).cloned().collect();
        assert_eq!(extra, ours, "files mapped only under culaunch");
    }
    // With --all-libs, every object in the program's maps is reported too.
    let pid = *run.maps.keys().next().unwrap();
    let reported = run.loads(pid);
    for path in strip(only(&run)) {
        assert!(reported.contains(&path), "{path} is mapped but not reported");
    }
}

fn ldd_paths(file: &Path) -> std::collections::BTreeSet<String> {
    let out = Command::new("ldd").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(|w| canonical(Path::new(w)))
        .collect()
}

#[test]
fn two_runtimes_in_one_process_are_reported_as_a_conflict() {
    let f = fixtures();
    let a = actions(&[&format!("dlopen:{}", p(&f.wheel_cudart11)), &format!("dlopen:{}", p(&f.wheel_cudart12))]);
    let run = traced(&[], &loader(&a), &[]);
    let conflicts = run.events_of("conflict");
    assert_eq!(conflicts.len(), 1, "{:#?}", run.events);
    assert_eq!(conflicts[0]["family"], "cudart");
    let paths: Vec<String> = conflicts[0]["paths"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(paths, vec![canonical(&f.wheel_cudart11), canonical(&f.wheel_cudart12)]);
    assert_trace_matches_maps(&run);
    assert!(run.stderr().contains("conflict"), "{}", run.stderr());
}

#[test]
fn the_same_file_through_a_symlink_is_not_a_conflict() {
    let f = fixtures();
    let tk = f.toolkit_cudart.parent().unwrap();
    let a = actions(&[&format!("dlopen:{}", p(&tk.join("libcudart.so"))), &format!("dlopen:{}", p(&f.toolkit_cudart))]);
    let run = traced(&[], &loader(&a), &[]);
    assert!(run.events_of("conflict").is_empty(), "{:#?}", run.events);
    assert_trace_matches_maps(&run);
}

#[test]
fn fork_posix_spawn_and_exec_descendants_are_all_traced() {
    let f = fixtures();
    let a = actions(&[
        &format!("dlopen:{}", p(&f.wheel_cudart12)),
        "fork",
        &format!("dlopen:{}", p(&f.conda_cublas)),
        "spawn",
        &format!("dlopen:{}", p(&f.cudnn)),
        "exec",
        &format!("dlopen:{}", p(&f.toolkit_cudart)),
    ]);
    let bare = plain(&loader(&a), &[]);
    let run = traced(&[], &loader(&a), &[]);
    assert_eq!(run.stdout(), bare.stdout());
    // loader, its fork child, and the spawned loader that then exec'd.
    assert_eq!(run.maps.len(), 3, "{:?}", run.maps.keys());
    assert_trace_matches_maps(&run);
    let starts = run.events_of("process_start");
    let forked: Vec<_> = starts.iter().filter(|e| e["forked"] == true).collect();
    assert_eq!(forked.len(), 1);
    let child = forked[0]["pid"].as_i64().unwrap();
    let inherited = run.events_of("load").into_iter().filter(|e| e["pid"] == child && e["how"] == "inherited").count();
    assert_eq!(inherited, 1, "the fork child inherits libcudart");
    // The spawned process started twice under one pid: before and after exec.
    let twice: Vec<i64> =
        run.maps.keys().copied().filter(|&pid| starts.iter().filter(|e| e["pid"] == pid).count() == 2).collect();
    assert_eq!(twice.len(), 1, "{starts:#?}");
    assert_eq!(run.mapped_cuda(twice[0]), [canonical(&f.toolkit_cudart)].into());
    assert_eq!(run.summary.as_ref().unwrap()["processes"].as_array().unwrap().len(), 3);
}

#[test]
fn python_subprocess_and_multiprocessing_children_are_traced() {
    let Some(python) = python() else { panic!("python3 is needed for this test") };
    let f = fixtures();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/py_tree.py");
    let argv = [
        python.as_os_str(),
        script.as_os_str(),
        f.wheel_cudart12.as_os_str(),
        f.wheel_cudart11.as_os_str(),
        f.conda_cublas.as_os_str(),
    ];
    let run = traced(&[], &argv, &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    // parent, subprocess, multiprocessing spawn child (plus its resource
    // tracker, which loads nothing CUDA), multiprocessing fork child.
    assert!(run.maps.len() >= 4, "{:?}", run.maps.keys());
    assert_trace_matches_maps(&run);
}

#[test]
fn summary_names_pip_toolkit_and_conda_origins_from_their_records() {
    let f = fixtures();
    let a = actions(&[
        &format!("dlopen:{}", p(&f.wheel_cudart13)),
        &format!("dlopen:{}", p(&f.toolkit_cudart.parent().unwrap().join("libcudart.so"))),
        &format!("dlopen:{}", p(&f.conda_cublas.parent().unwrap().join("libcublas.so.12"))),
    ]);
    let run = traced(&[], &loader(&a), &[]);
    let libs = run.summary.as_ref().unwrap()["libraries"].as_array().unwrap().clone();
    let find = |path: &Path| libs.iter().find(|l| l["path"] == canonical(path).as_str()).cloned().unwrap();
    let wheel = find(&f.wheel_cudart13);
    assert_eq!(
        (s(&wheel["origin"]["kind"]), s(&wheel["origin"]["package"])),
        ("pip".into(), "nvidia-cuda-runtime".into())
    );
    assert_eq!(wheel["version"], "13.0.96");
    let tk = find(&f.toolkit_cudart);
    assert_eq!(tk["origin"]["kind"], "toolkit");
    assert_eq!(tk["version"], "12.4.1");
    let conda = find(&f.conda_cublas);
    assert_eq!((s(&conda["origin"]["kind"]), s(&conda["version"])), ("conda".into(), "12.4.5.8".into()));
    assert!(run.stderr().contains("pip nvidia-cuda-runtime"), "{}", run.stderr());
}

#[test]
fn report_summarises_traces_written_earlier() {
    let f = fixtures();
    let a = actions(&[&format!("dlopen:{}", p(&f.wheel_cudart12))]);
    let b = actions(&[&format!("dlopen:{}", p(&f.conda_cublas))]);
    let dir = f.root.join("report-test");
    std::fs::create_dir_all(&dir).unwrap();
    let (ta, tb) = (dir.join("rank0.jsonl"), dir.join("rank1.jsonl"));
    for (t, acts) in [(&ta, &a), (&tb, &b)] {
        let _ = std::fs::remove_file(t);
        let st = Command::new(CULAUNCH).arg("-q").arg("-t").arg(t).arg("--").args(loader(acts)).status().unwrap();
        assert!(st.success());
    }
    let out = Command::new(CULAUNCH).args(["report", "--json"]).arg(&ta).arg(&tb).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<String> = v["libraries"].as_array().unwrap().iter().map(|l| s(&l["path"])).collect();
    assert_eq!(paths.len(), 2);
    assert!(paths.contains(&canonical(&f.wheel_cudart12)) && paths.contains(&canonical(&f.conda_cublas)));
    let text = Command::new(CULAUNCH).arg("report").arg(&ta).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("libcudart.so.12"));
}

#[test]
fn quiet_prints_nothing_and_an_unwritable_trace_fails_before_starting() {
    let f = fixtures();
    let marker = f.root.join("must-not-exist");
    let out = Command::new(CULAUNCH)
        .args(["-t", "/nonexistent-dir/trace.jsonl", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(!marker.exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-dir/trace.jsonl"));
    let quiet = Command::new(CULAUNCH).args(["-q", "--", "true"]).output().unwrap();
    assert_eq!((quiet.stdout.len(), quiet.stderr.len()), (0, 0));
}

#[test]
fn a_process_that_loses_its_trace_file_keeps_running() {
    let f = fixtures();
    let dir = f.root.join("lost-trace");
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("t.jsonl");
    // The child removes the directory holding the trace, then starts a new
    // process that cannot open it.
    let script = format!("rm -rf {0}; {1} dlopen:{2}", p(&dir), p(&f.loader), p(&f.wheel_cudart12));
    let out = Command::new(CULAUNCH).arg("-t").arg(&trace).args(["--", "sh", "-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok which=wheel-12"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("culaunch: warning: cannot open the trace file"));
}

#[test]
fn a_static_program_runs_with_a_warning() {
    let f = fixtures();
    let prog = f.static_prog.as_ref().expect("cc -static works (libc6-dev)");
    let out = Command::new(CULAUNCH).arg("--").arg(prog).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "version=12040\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("statically linked"));
}

mod exit_status {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn run_sh(script: &str) -> std::process::ExitStatus {
        Command::new(CULAUNCH).args(["-q", "--", "sh", "-c", script]).status().unwrap()
    }

    #[test]
    fn exit_codes_pass_through() {
        for code in [0, 1, 42, 125, 255] {
            assert_eq!(run_sh(&format!("exit {code}")).code(), Some(code));
        }
    }

    #[test]
    fn death_by_signal_is_reproduced_on_culaunch_itself() {
        for sig in [libc::SIGTERM, libc::SIGKILL, libc::SIGSEGV, libc::SIGINT] {
            let st = run_sh(&format!("kill -{sig} $$"));
            assert_eq!(st.signal(), Some(sig), "signal {sig}: {st:?}");
            assert!(!st.core_dumped());
        }
    }

    #[test]
    fn missing_and_unexecutable_commands_exit_127_and_126() {
        let out = Command::new(CULAUNCH).args(["--", "no-such-command-culaunch"]).output().unwrap();
        assert_eq!(out.status.code(), Some(127));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command-culaunch: command not found"));
        let out = Command::new(CULAUNCH).args(["--", "/etc/passwd"]).output().unwrap();
        assert_eq!(out.status.code(), Some(126));
    }

    #[test]
    fn the_command_gets_the_signal_mask_culaunch_was_started_with_as_under_env() {
        use std::os::unix::process::CommandExt;
        let blocked = |program: &str, args: &[&str]| {
            let mut cmd = Command::new(program);
            cmd.args(args);
            // SAFETY: only sigprocmask between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGUSR2);
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    Ok(())
                });
            }
            String::from_utf8(cmd.output().unwrap().stdout).unwrap()
        };
        let probe = ["grep", "SigBlk", "/proc/self/status"];
        let under_env = blocked("env", &probe);
        let mut args = vec!["-q", "--"];
        args.extend(probe);
        let under_culaunch = blocked(CULAUNCH, &args);
        assert_eq!(under_culaunch, under_env);
        assert_ne!(under_env.trim(), "SigBlk:\t0000000000000000", "the probe saw the blocked signal");
    }

    #[test]
    fn a_bad_option_exits_125() {
        let out = Command::new(CULAUNCH).args(["--no-such-option", "--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125));
    }

    #[test]
    fn signals_sent_to_culaunch_reach_the_command() {
        for (sig, name) in [(libc::SIGTERM, "TERM"), (libc::SIGUSR1, "USR1"), (libc::SIGHUP, "HUP")] {
            let dir = fixtures().root.join(format!("sig-{name}"));
            std::fs::create_dir_all(&dir).unwrap();
            let ready = dir.join("ready");
            let _ = std::fs::remove_file(&ready);
            let script = format!("trap 'exit 7' {name}; touch {}; while :; do sleep 0.05; done", p(&ready));
            let mut child = Command::new(CULAUNCH).args(["-q", "--", "sh", "-c", &script]).spawn().unwrap();
            while !ready.exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, sig) };
            assert_eq!(child.wait().unwrap().code(), Some(7), "{name}");
        }
    }
}

#[test]
fn verbose_prints_each_cuda_load_on_stderr_as_it_happens() {
    let f = fixtures();
    let a = actions(&[&format!("dlopen:{}", p(&f.torchish))]);
    let out = Command::new(CULAUNCH).args(["-q", "-v", "--"]).args(loader(&a)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("libcudart.so.12")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.starts_with("culaunch: pid ") && line.contains(&canonical(&f.wheel_cudart12)), "{line}");
    assert!(line.ends_with("(needed by libtorch_cuda.so)"), "{line}");
    // Nothing of culaunch's on the command's stdout: it is the bare run's,
    // byte for byte (the fixture prints its own paths, which may contain
    // any word, "culaunch" included, from the checkout's folder name).
    let bare = Command::new(loader(&a)[0]).args(&loader(&a)[1..]).env_remove("LD_LIBRARY_PATH").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&bare.stdout));
}

#[test]
fn a_users_own_ld_audit_module_keeps_working_beside_culaunchs() {
    let f = fixtures();
    let probe = &f.audit_probe;
    let seen = f.root.join("audit-probe/seen.txt");
    let _ = std::fs::remove_file(&seen);
    let a = actions(&[&format!("dlopen:{}", p(&f.wheel_cudart12))]);
    let run = traced(&[], &loader(&a), &[("LD_AUDIT", probe.as_os_str()), ("AUDIT_PROBE_OUT", seen.as_os_str())]);
    assert!(run.stdout().contains("ok which=wheel-12"));
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(seen.lines().any(|l| l == p(&f.wheel_cudart12)), "the user's module saw the load: {seen}");
    assert_trace_matches_maps(&run);
}

#[test]
fn setuid_and_foreign_machine_commands_are_named_in_one_warning_line() {
    let f = fixtures();
    let dir = f.root.join("preflight-warnings");
    std::fs::create_dir_all(&dir).unwrap();
    let suid = dir.join("suid-true");
    std::fs::copy("/bin/true", &suid).unwrap();
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let out = Command::new(CULAUNCH).args(["-q", "--"]).arg(&suid).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is setuid") && err.contains(&p(&suid)), "{err}");

    // A program for another machine (e_machine patched to AArch64): not
    // injected, and named; it then fails as it fails under `env`.
    let foreign = dir.join("foreign");
    let mut bytes = std::fs::read(&f.loader).unwrap();
    bytes[0x12..0x14].copy_from_slice(&183u16.to_le_bytes());
    std::fs::write(&foreign, bytes).unwrap();
    std::fs::set_permissions(&foreign, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new(CULAUNCH).args(["-q", "--"]).arg(&foreign).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("64-bit ARM_AARCH64 program") || err.contains("64-bit AARCH64"), "{err}");
    assert!(err.contains("runs untraced"), "{err}");
    let env = Command::new("env").arg(&foreign).output().unwrap();
    assert_eq!(out.status.code(), env.status.code(), "{err}");
}

#[test]
fn a_failed_dlopen_is_reported_with_the_loaders_own_error_text() {
    let f = fixtures();
    let a = actions(&[
        "dlopen:libcudnn.so.7",
        "dlopen:/nonexistent/dir/libcublas.so.11",
        &format!("via:{}:libnvrtc-builtins.so.99", p(&f.nvrtc_runpath)),
        "dlopen:libnot-cuda-at-all.so",
        &format!("dlopen:{}", p(&f.wheel_cudart12)),
    ]);
    let run = traced(&[], &loader(&a), &[]);
    let failed: Vec<&serde_json::Value> = run.events_of("load").into_iter().filter(|e| e["ok"] == false).collect();
    assert_eq!(failed.len(), 3, "CUDA-family failures only: {failed:#?}");
    // Ground truth: what dlerror() told the program.
    for e in &failed {
        let request = s(&e["request"]);
        let line = run.stdout().lines().find(|l| l.contains(&format!("{request}: fail: "))).map(str::to_owned).unwrap();
        let dlerror = line.split(": fail: ").nth(1).unwrap();
        assert_eq!(e["error"], dlerror, "{request}");
        assert!(e["path"].is_null());
    }
    let via = failed.iter().find(|e| e["request"] == "libnvrtc-builtins.so.99").unwrap();
    assert_eq!(via["caller"], canonical(&f.nvrtc_runpath).as_str());
    assert!(run.stderr().contains("not found (probes"), "{}", run.stderr());
    assert_eq!(run.summary.as_ref().unwrap()["probes"].as_array().unwrap().len(), 3);
    assert_trace_matches_maps(&run);
}

/// An LD_PRELOAD entry found nowhere: the loader says so on stderr and
/// goes on. The trace has the failed load in the loader's own words (the
/// bare run's stderr line, byte for byte), and the summary lists the probe.
#[test]
fn a_preload_entry_found_nowhere_is_a_failed_load_in_the_loaders_words() {
    let f = fixtures();
    let preload = format!("{}:libcublas.so.99", p(&f.wheel_cudart12));
    let env = [("LD_PRELOAD", std::ffi::OsStr::new(&preload))];
    let a = actions(&["call:libcudart.so.12"]);
    let bare = plain(&loader(&a), &env);
    let said = bare.stderr().lines().find(|l| l.contains("libcublas.so.99")).map(str::to_owned);
    let said = said.unwrap_or_else(|| panic!("bare: {}", bare.stderr()));
    assert!(bare.stdout().contains("call:libcudart.so.12: ok which=wheel-12"), "{}", bare.stdout());
    let run = traced(&[], &loader(&a), &env);
    assert_eq!(run.stdout(), bare.stdout());
    let failed: Vec<&serde_json::Value> = run.events_of("load").into_iter().filter(|e| e["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{:#?}", run.events);
    assert_eq!((s(&failed[0]["request"]), s(&failed[0]["how"])), ("libcublas.so.99".into(), "initial".into()));
    assert_eq!(s(&failed[0]["error"]), said);
    let probes = run.summary.as_ref().unwrap()["probes"].as_array().unwrap().clone();
    assert_eq!(probes.len(), 1, "{probes:#?}");
    assert_trace_matches_maps(&run);
}

#[test]
fn the_old_dlopen_symbol_version_nvidia_binds_is_seen_too() {
    let f = fixtures();
    let nm = Command::new("nm").args(["-D"]).arg(&f.loader).output().unwrap();
    assert!(String::from_utf8_lossy(&nm.stdout).contains("dlopen@GLIBC_2.2.5"), "the fixture binds the old symbol");
    let a = actions(&[&format!("olddlopen:{}", p(&f.torchish))]);
    let run = traced(&[], &loader(&a), &[]);
    assert!(run.stdout().contains(": ok"), "{}", run.stdout());
    assert_eq!(run.load_event(&f.wheel_cudart12)["how"], "needed");
    assert_trace_matches_maps(&run);
}

#[test]
fn process_start_carries_the_rank_the_innermost_launcher_gave() {
    let f = fixtures();
    let a = actions(&[&format!("dlopen:{}", p(&f.wheel_cudart12))]);
    // torchrun's worker inside a Slurm task: torchrun's numbers win.
    let env = [
        ("SLURM_PROCID", os("1")),
        ("SLURM_NTASKS", os("2")),
        ("SLURM_NODEID", os("1")),
        ("RANK", os("5")),
        ("LOCAL_RANK", os("1")),
        ("WORLD_SIZE", os("8")),
    ];
    let run = traced(&[], &loader(&a), &env);
    assert!(run.out.status.success(), "{}", run.stderr());
    let start = run.events_of("process_start")[0];
    assert_eq!((start["rank"].as_u64(), start["local_rank"].as_u64()), (Some(5), Some(1)), "{start}");
    assert_eq!((start["world_size"].as_u64(), start["node"].as_u64()), (Some(8), Some(1)), "{start}");
    assert_eq!(start["env"]["SLURM_NODEID"], "1");
    // An invalid number is ignored, and nothing is claimed.
    let run = traced(&[], &loader(&a), &[("RANK", os("three"))]);
    assert!(run.out.status.success(), "{}", run.stderr());
    let start = run.events_of("process_start")[0];
    assert!(start.get("rank").is_none(), "{start}");
    assert_eq!(start["env"]["RANK"], "three");
}
