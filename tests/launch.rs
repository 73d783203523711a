//! The command runs as it would bare: signals, descriptors, PATH lookup,
//! hostile input files, closed pipes, help, and trace path templates. Each
//! test's oracle is the same command run without culaunch (or under `env`).

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn dir(tag: &str) -> PathBuf {
    let d = fixtures().root.join("launch").join(tag);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `output()` that fails the test instead of hanging.
fn output_within(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("no answer after {secs} s (a hang); stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn culaunch_q() -> Command {
    let mut c = Command::new(CULAUNCH);
    c.env_remove("CULAUNCH_TRACE").arg("-q").arg("--");
    c
}

fn has_python() -> bool {
    Command::new("python3").arg("-c").arg("pass").status().is_ok_and(|s| s.success())
}

mod signals {
    use super::*;

    /// `yes | head -1` under a shell that ignores SIGPIPE: yes gets EPIPE and
    /// exits 1 instead of dying by SIGPIPE (141).
    #[test]
    fn an_ignored_sigpipe_stays_ignored_so_yes_into_head_exits_like_bare() {
        let status_of = |prefix: &str| {
            let script = format!("trap '' PIPE; {prefix} yes | head -n 1 >/dev/null; echo ${{PIPESTATUS[0]}}");
            let out = Command::new("bash").arg("-c").arg(script).stderr(Stdio::null()).output().unwrap();
            text(&out.stdout).trim().to_owned()
        };
        let bare = status_of("");
        assert_eq!(bare, "1", "bare yes under an ignored SIGPIPE");
        assert_eq!(status_of(&format!("{CULAUNCH} -q --")), bare);
    }

    /// Every ignored signal and the blocked mask, as /proc shows them to the
    /// command, are what `env` passes on.
    #[test]
    fn the_command_inherits_every_ignored_signal_and_the_mask_as_under_env() {
        let probe = |prefix: &[&str]| {
            let mut cmd = Command::new("bash");
            let script = format!(
                "trap '' PIPE HUP USR1 TERM; exec {} grep -E '^Sig(Ign|Blk)' /proc/self/status",
                prefix.join(" ")
            );
            cmd.arg("-c").arg(script);
            // SAFETY: only sigprocmask between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGUSR2);
                    libc::sigaddset(&mut set, libc::SIGWINCH);
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    Ok(())
                });
            }
            text(&cmd.output().unwrap().stdout)
        };
        let under_env = probe(&["env"]);
        let ignored = under_env
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let want =
            [libc::SIGHUP, libc::SIGPIPE, libc::SIGUSR1, libc::SIGTERM].iter().fold(0u64, |m, s| m | 1 << (s - 1));
        assert_eq!(ignored & want, want, "the oracle ignores HUP PIPE TERM USR1: {under_env}");
        assert_eq!(probe(&[CULAUNCH, "-q", "--"]), under_env);
    }

    /// `kill -9` of culaunch takes the command with it (PR_SET_PDEATHSIG):
    /// a supervisor that kills the wrapper must not leave the job running.
    #[test]
    fn kill_9_of_culaunch_ends_the_command_too() {
        let d = dir("kill9");
        let pidfile = d.join("pid");
        let script = format!("echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 60", pidfile.display());
        let mut child = culaunch_q().args(["sh", "-c", &script]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pidfile.exists() {
            assert!(Instant::now() < deadline, "the command never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() {
            if Instant::now() > deadline {
                // SAFETY: cleaning up the orphan this test made.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the command (pid {pid}) outlived culaunch's kill -9");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A run killed before its end (mpirun's SIGTERM then SIGKILL to every
    /// rank, the OOM killer) leaves its private directory (the temporary
    /// trace, the loss tokens) in $TMPDIR; the next run removes it, and never
    /// a live run's, nor a trace of the user's, whatever its name.
    #[test]
    fn files_a_killed_run_left_in_tmpdir_are_removed_by_the_next_and_a_live_runs_and_the_users_kept() {
        let d = dir("leftovers");
        let tmp = d.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let run_dir = |pid: u32| -> Option<std::path::PathBuf> {
            std::fs::read_dir(&tmp)
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(&format!("culaunch-run-{pid}-")))
                .map(|e| e.path())
        };
        // What a run keeps there: its trace, once the job is running.
        let files = |pid: u32| -> Vec<String> {
            let Some(d) = run_dir(pid) else { return Vec::new() };
            let mut names: Vec<String> = std::fs::read_dir(d)
                .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            names.sort();
            names
        };
        let start = || {
            let child = culaunch_q().args(["sleep", "60"]).env("TMPDIR", &tmp).spawn().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !files(child.id()).contains(&"trace.jsonl".to_string()) {
                assert!(Instant::now() < deadline, "no private trace in {}", tmp.display());
                std::thread::sleep(Duration::from_millis(20));
            }
            child
        };
        let mut live = start();
        let mut killed = start();
        let killed_pid = killed.id();
        killed.kill().unwrap();
        killed.wait().unwrap();
        // The ground truth: what the killed run left.
        assert!(run_dir(killed_pid).is_some());
        assert!(files(killed_pid).contains(&"trace.jsonl".to_string()), "{:?}", files(killed_pid));
        // Traces of the user's, named as culaunch once named its own.
        let users = [tmp.join("culaunch-trace-rank0.jsonl"), tmp.join(format!("culaunch-trace-{killed_pid}-1.jsonl"))];
        let mine = Command::new(CULAUNCH)
            .env_remove("CULAUNCH_TRACE")
            .arg("-q")
            .arg("-t")
            .arg(&users[0])
            .args(["--", "true"])
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        assert!(mine.status.success(), "{}", String::from_utf8_lossy(&mine.stderr));
        std::fs::copy(&users[0], &users[1]).unwrap();
        let traced = std::fs::read(&users[0]).unwrap();
        assert!(!traced.is_empty());
        // Everything looks a few minutes old.
        let status = Command::new("find").arg(&tmp).args(["-exec", "touch", "-h", "-d", "-5 min", "{}", "+"]).status();
        assert!(status.unwrap().success());
        let next = culaunch_q().arg("true").env("TMPDIR", &tmp).output().unwrap();
        assert!(next.status.success(), "{}", String::from_utf8_lossy(&next.stderr));
        assert_eq!(run_dir(killed_pid), None, "the killed run's directory is gone");
        assert!(files(live.id()).contains(&"trace.jsonl".to_string()), "the live run's files stay");
        for u in &users {
            assert_eq!(std::fs::read(u).ok().as_ref(), Some(&traced), "the user's trace {} stays", u.display());
        }
        // SAFETY: the live run ends as a supervisor would end it.
        unsafe { libc::kill(live.id() as i32, libc::SIGTERM) };
        live.wait().unwrap();
        for u in &users {
            std::fs::remove_file(u).unwrap();
        }
        let rest: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(rest.is_empty(), "{rest:?}");
    }

    /// No writable temporary place and no `-t`: culaunch's error (125)
    /// names the run directory it could not make, not a "trace file", and
    /// the command does not run.
    #[test]
    fn a_run_with_nowhere_to_keep_its_files_says_so_and_runs_nothing() {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !root || Command::new("unshare").arg("--version").output().is_err() {
            eprintln!("skipped: a read-only /tmp in a mount namespace needs root and unshare");
            return;
        }
        let d = dir("nowhere");
        let ran = d.join("ran");
        let script = format!(
            // /tmp itself, read-only: the checkout (and culaunch) may be in it.
            "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp && TMPDIR=/tmp XDG_CACHE_HOME=/tmp HOME=/tmp {} -q -- touch {}",
            CULAUNCH,
            ran.display()
        );
        let out = Command::new("unshare").args(["-m", "sh", "-c", &script]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert!(err.contains("cannot make the run's private directory /tmp/culaunch-run-"), "{err}");
        assert!(err.contains("Read-only file system"), "{err}");
        assert!(!ran.exists(), "the command must not run");
    }

    const COUNTER: &str = "import signal, time\n\
        n = 0\n\
        def h(s, f):\n    global n\n    n += 1\n\
        signal.signal(signal.SIGINT, h)\n\
        end = time.time() + 5\n\
        while time.time() < end:\n    time.sleep(0.01)\n\
        print(n)\n";

    /// Prints the pid of every process that sent it SIGINT in 5 s. The
    /// signal is blocked and taken with sigtimedwait, so each send is seen
    /// with its sender, not counted by a handler.
    const SENDERS: &str = "import signal, time\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n\
        senders = []\n\
        end = time.time() + 5\n\
        while time.time() < end:\n    \
        info = signal.sigtimedwait({signal.SIGINT}, 0.05)\n    \
        if info is not None:\n        senders.append(info.si_pid)\n\
        print(*senders)\n";

    /// coreutils `timeout` signals its child and then its whole process
    /// group. Bare, the command gets SIGINT from `timeout` only: once or
    /// twice, as the two sends may merge while pending. Under culaunch it
    /// must get it from `timeout` only too, through the group, and once:
    /// culaunch must not also pass on the copy that was sent to it.
    #[test]
    fn timeout_signalling_child_then_group_delivers_sigint_once() {
        if !has_python() {
            eprintln!("SKIPPED: no python3");
            return;
        }
        let d = dir("timeout");
        let script = d.join("h.py");
        std::fs::write(&script, SENDERS).unwrap();
        // Python itself, not a shim, and a generous delay: the mask must be
        // in place before the signal, even on a loaded machine.
        let py =
            text(&Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap().stdout)
                .trim()
                .to_owned();
        let start = |pre: &[&str]| {
            Command::new("timeout")
                .args(["-s", "INT", "3"])
                .args(pre)
                .arg(&py)
                .arg(&script)
                .env_remove("CULAUNCH_TRACE")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let senders = |child: std::process::Child| {
            let timeout = child.id().to_string();
            let said = text(&child.wait_with_output().unwrap().stdout).trim().to_owned();
            (timeout, said.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        };
        // All at once, to keep the test short.
        let bare = start(&[]);
        let under: Vec<_> = (0..3).map(|_| start(&[CULAUNCH, "-q", "--"])).collect();
        let (timeout, got) = senders(bare);
        assert!(matches!(got.len(), 1 | 2) && got.iter().all(|p| *p == timeout), "bare: {got:?}, timeout {timeout}");
        for child in under {
            let (timeout, got) = senders(child);
            assert_eq!(got, [timeout], "under culaunch: the senders, then timeout's pid");
        }
    }

    /// The other half: a signal sent to culaunch alone (its pid) or to a
    /// process group that culaunch leads reaches the command exactly once.
    #[test]
    fn sigint_to_culaunch_alone_or_to_its_group_arrives_once() {
        if !has_python() {
            eprintln!("SKIPPED: no python3");
            return;
        }
        let d = dir("sigint-once");
        let script = d.join("h.py");
        std::fs::write(
            &script,
            COUNTER.replace(
                "signal.signal(signal.SIGINT, h)\n",
                "signal.signal(signal.SIGINT, h)\nopen(__file__ + '.ready', 'w').close()\n",
            ),
        )
        .unwrap();
        let ready = d.join("h.py.ready");
        for to_group in [false, true] {
            let _ = std::fs::remove_file(&ready);
            let child =
                culaunch_q().arg("python3").arg(&script).process_group(0).stdout(Stdio::piped()).spawn().unwrap();
            while !ready.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let target = if to_group { -(child.id() as i32) } else { child.id() as i32 };
            // SAFETY: signalling our own child or its process group.
            unsafe { libc::kill(target, libc::SIGINT) };
            let out = child.wait_with_output().unwrap();
            assert_eq!(text(&out.stdout).trim(), "1", "sent to the group: {to_group}");
        }
    }
}

mod descriptors {
    use super::*;

    /// With fds 0 and 2 closed, the command's first open() returns 0, bare.
    #[test]
    fn closed_stdin_and_stderr_stay_closed_for_the_command() {
        if !has_python() {
            eprintln!("SKIPPED: no python3");
            return;
        }
        let first_open = |cmd: &mut Command| {
            cmd.args(["python3", "-c", "import os; print(os.open('/dev/null', os.O_RDONLY))"]);
            // SAFETY: only close between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(0);
                    libc::close(2);
                    Ok(())
                });
            }
            text(&cmd.stdout(Stdio::piped()).output().unwrap().stdout).trim().to_owned()
        };
        let bare = first_open(&mut Command::new("env"));
        assert_eq!(bare, "0");
        assert_eq!(first_open(&mut culaunch_q()), bare);
    }
}

mod path_lookup {
    use super::*;

    /// PATH has first a `mycmd` this user may not execute (x bits, but not
    /// for them), then one they may. execvp (`env mycmd`) skips the first
    /// and runs the second; so must culaunch. As root, both runs drop to
    /// uid 65534 and the first file is root's, mode 0700; otherwise it is
    /// our own with only the group's x bit.
    #[test]
    fn a_file_this_user_may_not_execute_is_skipped_like_execvp() {
        let d = dir("path-eacces");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (a, b) = (d.join("a"), d.join("b"));
        for (bin, word) in [(&a, "first"), (&b, "second")] {
            std::fs::create_dir_all(bin).unwrap();
            std::fs::set_permissions(bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(bin.join("mycmd"), format!("#!/bin/sh\necho {word}\n")).unwrap();
        }
        // SAFETY: getuid cannot fail.
        let root = unsafe { libc::getuid() } == 0;
        let denied_mode = if root { 0o700 } else { 0o070 };
        std::fs::set_permissions(a.join("mycmd"), std::fs::Permissions::from_mode(denied_mode)).unwrap();
        std::fs::set_permissions(b.join("mycmd"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = d.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = format!("{}:{}:/usr/bin:/bin", a.display(), b.display());
        let run = |cmd: &mut Command| {
            cmd.arg("mycmd").env("PATH", &path).env("XDG_CACHE_HOME", &cache).env("TMPDIR", &d).current_dir(&d);
            if root {
                cmd.uid(65534).gid(65534);
            }
            let out = cmd.output().unwrap();
            (out.status.code(), text(&out.stdout), text(&out.stderr))
        };
        let bare = run(&mut Command::new("env"));
        assert_eq!((bare.0, bare.1.as_str()), (Some(0), "second\n"), "the oracle: {bare:?}");
        let under = run(&mut culaunch_q());
        assert_eq!((under.0, under.1.as_str()), (bare.0, bare.1.as_str()), "culaunch: {under:?}");
        // Only the denied file on PATH: 126, as env says.
        std::fs::remove_file(b.join("mycmd")).unwrap();
        let bare = run(&mut Command::new("env"));
        let under = run(&mut culaunch_q());
        assert_eq!(bare.0, Some(126), "{bare:?}");
        assert_eq!(under.0, bare.0, "{under:?}");
    }
}

mod hostile_input {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o755) }, 0);
    }

    /// A device or a FIFO as trace, config, lock or report input is refused
    /// at once (125, naming the file) and the job does not start.
    #[test]
    fn devices_and_fifos_as_input_files_are_refused_at_once_naming_them() {
        let d = dir("devices");
        let fifo = d.join("fifo");
        mkfifo(&fifo);
        let marker = d.join("started");
        let job = format!("touch {}", marker.display());
        let f = fifo.to_str().unwrap();
        for args in [
            vec!["-t", "/dev/full"],
            vec!["-t", "/dev/zero"],
            vec!["-t", f],
            vec!["-c", "/dev/zero"],
            vec!["-c", f],
            vec!["--locked", "/dev/zero"],
        ] {
            let out = output_within(
                Command::new(CULAUNCH).env_remove("CULAUNCH_TRACE").args(&args).args(["--", "sh", "-c", &job]),
                10,
            );
            assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out.stderr));
            assert!(text(&out.stderr).contains(args[1]), "{args:?} names the file: {}", text(&out.stderr));
            assert!(!marker.exists(), "{args:?}: the job started");
        }
        for input in ["/dev/zero", f] {
            let out = output_within(Command::new(CULAUNCH).args(["report", input]), 10);
            assert_eq!(out.status.code(), Some(125), "report {input}");
            assert!(text(&out.stderr).contains(input), "{}", text(&out.stderr));
        }
    }

    /// A config or lock file larger than any real one (a sparse 17 MiB
    /// file: reading it whole would be the bug) is refused at once, naming
    /// the file, and the job does not start.
    #[test]
    fn a_config_or_lock_file_past_the_size_bound_is_refused_naming_it() {
        let d = dir("huge-inputs");
        let huge = d.join("huge.toml");
        std::fs::File::create(&huge).unwrap().set_len(17 << 20).unwrap();
        let marker = d.join("started");
        let job = format!("touch {}", marker.display());
        for opt in ["-c", "--locked"] {
            let out = output_within(
                Command::new(CULAUNCH).env_remove("CULAUNCH_TRACE").arg(opt).arg(&huge).args(["--", "sh", "-c", &job]),
                10,
            );
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(125), "{opt}: {err}");
            assert!(err.contains(huge.to_str().unwrap()) && err.contains("larger than 16 MiB"), "{opt}: {err}");
            assert!(!marker.exists(), "{opt}: the job started");
        }
    }

    /// `--summary-json` and `lock -o` to a FIFO nobody reads end at once
    /// with an error naming it (the job's own status kept for the summary;
    /// no lock, 125); read by a process (`>(jq .)`), the FIFO gets the same
    /// JSON a file gets. A directory or a block device is refused before
    /// the job starts.
    #[test]
    fn output_files_never_block_on_a_fifo_and_refuse_what_is_no_file() {
        let d = dir("outputs");
        let fifo = d.join("out.fifo");
        mkfifo(&fifo);
        let f = fifo.to_str().unwrap();
        let out = output_within(
            Command::new(CULAUNCH).env_remove("CULAUNCH_TRACE").args([
                "-q",
                "--summary-json",
                f,
                "--",
                "sh",
                "-c",
                "exit 3",
            ]),
            20,
        );
        assert_eq!(out.status.code(), Some(3), "the job's status: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(&format!("cannot write the summary {f}: a FIFO that no process reads")));
        let out = output_within(Command::new(CULAUNCH).args(["lock", "-o", f, "--", "true"]), 20);
        assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(&format!("lock file {f}: a FIFO that no process reads")));
        // With a reader (open before culaunch writes, as `>(jq .)` is):
        // the whole summary arrives.
        let (ready, wait) = std::sync::mpsc::channel();
        let reader = std::thread::spawn({
            let fifo = fifo.clone();
            move || {
                use std::io::Read;
                use std::os::unix::fs::OpenOptionsExt;
                let mut end = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(fifo).unwrap();
                ready.send(()).unwrap();
                let (mut got, mut chunk) = (Vec::new(), [0u8; 65536]);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                // 0 before any writer came is not the end; 0 after data is.
                while std::time::Instant::now() < deadline {
                    match end.read(&mut chunk) {
                        Ok(0) if !got.is_empty() => break,
                        Ok(n) if n > 0 => got.extend_from_slice(&chunk[..n]),
                        _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                    }
                }
                got
            }
        });
        wait.recv().unwrap();
        let out = output_within(
            Command::new(CULAUNCH).env_remove("CULAUNCH_TRACE").args(["-q", "--summary-json", f, "--", "true"]),
            20,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let got = reader.join().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&got).unwrap_or_else(|e| panic!("{e}: {}", text(&got)));
        assert_eq!(json["processes"].as_array().map(Vec::len), Some(1), "{json:#}");
        for (args, what) in [(vec!["--summary-json", "/tmp"], "a directory"), (vec!["-o", "/tmp"], "a directory")] {
            let mut cmd = Command::new(CULAUNCH);
            cmd.env_remove("CULAUNCH_TRACE");
            if args[0] == "-o" {
                cmd.arg("lock");
            }
            let marker = d.join("started");
            let job = format!("touch {}", marker.display());
            let out = output_within(cmd.args(&args).args(["--", "sh", "-c", &job]), 20);
            assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out.stderr));
            assert!(text(&out.stderr).contains(&format!("/tmp: {what}, not a file to write")), "{}", text(&out.stderr));
            assert!(!marker.exists(), "{args:?}: the job started");
        }
    }

    /// An executable FIFO as COMMAND: env fails at once with 126; so does
    /// culaunch, instead of blocking to read a `#!` line.
    #[test]
    fn an_executable_fifo_as_command_fails_with_126_like_env() {
        let d = dir("fifo-cmd");
        let fifo = d.join("job");
        mkfifo(&fifo);
        let bare = output_within(Command::new("env").arg(&fifo), 10);
        assert_eq!(bare.status.code(), Some(126));
        let under = output_within(culaunch_q().arg(&fifo), 10);
        assert_eq!(under.status.code(), bare.status.code(), "{}", text(&under.stderr));
        // The same through PATH.
        let under = output_within(culaunch_q().arg("job").env("PATH", &d), 10);
        assert_eq!(under.status.code(), Some(126), "{}", text(&under.stderr));
    }

    /// A `-t` file deleted and created anew mid-run: the summary covers the
    /// file the run started with (kept here through a hard link), not the new
    /// file read from the old one's offset.
    #[test]
    fn a_trace_deleted_mid_run_is_summarised_from_the_file_the_run_started_with() {
        let f = fixtures();
        let d = dir("deleted-trace");
        let trace = d.join("t.jsonl");
        let keep = d.join("kept.jsonl");
        // Earlier runs' events: this run starts at a large offset.
        let earlier = Command::new(CULAUNCH)
            .args(["-q", "-t"])
            .arg(&trace)
            .args([
                "--",
                "sh",
                "-c",
                &format!("for i in 1 2 3; do {} dlopen:{}; done", p(&f.loader), p(&f.wheel_cudart11)),
            ])
            .output()
            .unwrap();
        assert!(earlier.status.success());
        let start = std::fs::metadata(&trace).unwrap().len();
        std::fs::hard_link(&trace, &keep).unwrap();
        let summary = d.join("summary.json");
        let script = format!(
            "{0} dlopen:{1}; rm -f {2}; printf 'garbage\\n' > {2}; {0} dlopen:{1}; exit 0",
            p(&f.loader),
            p(&f.wheel_cudart12),
            p(&trace)
        );
        let out = Command::new(CULAUNCH)
            .arg("-t")
            .arg(&trace)
            .arg("--summary-json")
            .arg(&summary)
            .args(["--", "sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(!err.contains("not valid"), "{err}");
        assert!(err.contains("deleted or replaced"), "{err}");
        // Ground truth: the pids with a process_start in the kept file, from
        // this run's offset.
        let kept = std::fs::read(&keep).unwrap();
        let pids: std::collections::BTreeSet<i64> = kept[start as usize..]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == "process_start")
            .map(|e| e["pid"].as_i64().unwrap())
            .collect();
        assert!(!pids.is_empty());
        let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        let reported: std::collections::BTreeSet<i64> =
            s["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_i64().unwrap()).collect();
        assert!(pids.is_subset(&reported), "every process of the kept file: {pids:?} in {reported:?}");
        assert_eq!(s["malformed_lines"], 0);
        let libs = s["libraries"].to_string();
        assert!(libs.contains("libcudart.so.12") && !libs.contains("libcudart.so.11.0"), "{libs}");
    }

    /// No trace asked for, TMPDIR empty or missing: the job still runs and is
    /// summarised (the temporary trace goes to /tmp or the cache), even from
    /// a working directory where no file can be created (/proc, even for
    /// root).
    #[test]
    fn an_empty_or_missing_tmpdir_does_not_refuse_the_job() {
        let f = fixtures();
        for tmpdir in ["", "/nonexistent-culaunch-tmpdir"] {
            let out = Command::new(CULAUNCH)
                .env_remove("CULAUNCH_TRACE")
                .env("TMPDIR", tmpdir)
                .current_dir("/proc")
                .arg("--")
                .arg(&f.loader)
                .arg(format!("dlopen:{}", p(&f.wheel_cudart12)))
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "TMPDIR={tmpdir:?}: {}", text(&out.stderr));
            assert!(text(&out.stderr).contains("libcudart.so.12"), "TMPDIR={tmpdir:?}: {}", text(&out.stderr));
            assert!(tmpdir.is_empty() || !Path::new(tmpdir).exists(), "a missing TMPDIR is not created");
        }
    }
}

mod output {
    use super::*;

    /// stdout is a pipe whose reader is gone before culaunch writes.
    fn with_closed_stdout(args: &[&OsStr]) -> Output {
        let mut fds = [0; 2];
        // SAFETY: a valid out-array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: closing the read end we own; the write end becomes stdout.
        unsafe { libc::close(fds[0]) };
        // SAFETY: the write end is ours and is handed over once.
        let stdout = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        Command::new(CULAUNCH).args(args).stdout(stdout).stderr(Stdio::piped()).output().unwrap()
    }

    #[test]
    fn a_closed_stdout_ends_deps_and_report_quietly() {
        let f = fixtures();
        let run = Command::new(CULAUNCH)
            .args(["-q", "-t"])
            .arg(f.root.join("launch-epipe.jsonl"))
            .arg("--")
            .arg(&f.needs_cudart)
            .output()
            .unwrap();
        assert!(run.status.success());
        let trace = f.root.join("launch-epipe.jsonl");
        for args in [
            vec![OsStr::new("deps"), f.needs_cudart.as_os_str()],
            vec![OsStr::new("report"), OsStr::new("--json"), trace.as_os_str()],
            vec![OsStr::new("report"), trace.as_os_str()],
        ] {
            let out = with_closed_stdout(&args);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
            assert_eq!(text(&out.stderr), "", "{args:?}");
        }
    }

    #[test]
    fn top_level_help_shows_run_options_and_examples_and_bare_culaunch_is_a_short_usage_error() {
        let out = Command::new(CULAUNCH).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = text(&out.stdout);
        for want in ["--trace <FILE>", "--pin <SONAME=PATH>", "--strict", "culaunch run --help", "Examples:", "lock -o"]
        {
            assert!(help.contains(want), "{want}:\n{help}");
        }
        let out = Command::new(CULAUNCH).output().unwrap();
        assert_eq!(out.status.code(), Some(125));
        let err = text(&out.stderr);
        assert!(err.contains("Usage: culaunch [RUN-OPTIONS] [--] COMMAND"), "{err}");
        assert!(!err.contains("culaunch run <COMMAND>"), "{err}");
        assert!(err.lines().count() < 10, "short: {err}");
    }
}

mod templates {
    use super::*;

    #[test]
    fn an_unset_or_empty_template_variable_fails_before_the_job_naming_it() {
        let d = dir("template-unset");
        let marker = d.join("started");
        for (value, word) in [(None, "is not set"), (Some(""), "is empty")] {
            let mut cmd = Command::new(CULAUNCH);
            cmd.current_dir(&d).env_remove("CULAUNCH_TRACE").env_remove("CULAUNCH_TEST_RANK");
            if let Some(v) = value {
                cmd.env("CULAUNCH_TEST_RANK", v);
            }
            let out = cmd.args(["-t", "t.%q{CULAUNCH_TEST_RANK}.jsonl", "--", "touch"]).arg(&marker).output().unwrap();
            assert_eq!(out.status.code(), Some(125));
            let err = text(&out.stderr);
            assert!(err.contains("CULAUNCH_TEST_RANK") && err.contains(word), "{err}");
            assert!(!marker.exists());
        }
        let out = Command::new(CULAUNCH).current_dir(&d).args(["-t", "t.%x", "--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(text(&out.stderr).contains("%x"));
    }

    #[test]
    fn host_pid_and_variables_expand_in_the_trace_option_env_and_config() {
        let f = fixtures();
        let d = dir("template-expand");
        let host = text(&Command::new("hostname").output().unwrap().stdout).trim().to_owned();
        std::fs::write(d.join("c.toml"), "trace = \"cfg.%q{CULAUNCH_TEST_RANK}.jsonl\"\n").unwrap();
        for (how, file) in
            [("-t", "opt.%h.%q{CULAUNCH_TEST_RANK}.100%%.jsonl"), ("env", "env.%p.jsonl"), ("-c", "c.toml")]
        {
            let mut cmd = Command::new(CULAUNCH);
            cmd.current_dir(&d).env_remove("CULAUNCH_TRACE").env("CULAUNCH_TEST_RANK", "7").arg("-q");
            match how {
                "env" => cmd.env("CULAUNCH_TRACE", file),
                _ => cmd.args([how, file]),
            };
            let mut child =
                cmd.arg("--").arg(&f.loader).arg(format!("dlopen:{}", p(&f.wheel_cudart12))).spawn().unwrap();
            let pid = child.id();
            assert!(child.wait().unwrap().success());
            let want = match how {
                "-t" => format!("opt.{host}.7.100%.jsonl"),
                "env" => format!("env.{pid}.jsonl"),
                _ => "cfg.7.jsonl".to_owned(),
            };
            let written = std::fs::read_to_string(d.join(&want)).unwrap_or_else(|e| panic!("{how}: {want}: {e}"));
            assert!(written.contains("\"process_start\""), "{how}");
        }
    }

    /// Real Open MPI, 4 ranks, one trace per rank from one command line.
    #[test]
    fn mpirun_with_a_rank_template_writes_one_trace_per_rank() {
        if Command::new("mpirun").arg("--version").output().is_err() {
            eprintln!("SKIPPED: mpirun not found (install openmpi-bin)");
            return;
        }
        let f = fixtures();
        let d = dir("mpirun");
        let out = output_within(
            Command::new("mpirun")
                .args(["--allow-run-as-root", "--oversubscribe", "-np", "4"])
                .current_dir(&d)
                .env_remove("CULAUNCH_TRACE")
                .arg(CULAUNCH)
                .args(["-q", "-t", "trace.%q{OMPI_COMM_WORLD_RANK}.jsonl", "--"])
                .arg(&f.loader)
                .arg(format!("dlopen:{}", p(&f.wheel_cudart12))),
            120,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).matches("ok which=wheel-12").count(), 4);
        let mut names: Vec<String> =
            std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["trace.0.jsonl", "trace.1.jsonl", "trace.2.jsonl", "trace.3.jsonl"]);
        for rank in 0..4 {
            let events: Vec<serde_json::Value> = std::fs::read_to_string(d.join(format!("trace.{rank}.jsonl")))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let starts: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "process_start").collect();
            assert_eq!(starts.len(), 1, "rank {rank}: {starts:?}");
            assert_eq!(starts[0]["env"]["OMPI_COMM_WORLD_RANK"], rank.to_string(), "rank {rank}");
            assert!(events.iter().any(|e| e["event"] == "load" && s(&e["path"]) == canonical(&f.wheel_cudart12)));
        }
    }
}

/// The demo's one long step on a fresh machine, the venv of real wheels:
/// it says what it downloads and lets pip show its own progress on stderr
/// (it used to run `pip -q`, silent for minutes), and still prints only the
/// venv's path on stdout.
#[test]
fn the_demo_venv_step_says_what_it_downloads_and_shows_pips_progress() {
    let venv = fixtures().root.join("launch-demo-venv");
    let _ = std::fs::remove_dir_all(&venv);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/wheels-venv");
    let out = output_within(Command::new(script).env("CULAUNCH_WHEELS_VENV", &venv), 600);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), venv.to_str().unwrap());
    let err = text(&out.stderr);
    assert!(err.contains("downloading nvidia-cuda-runtime-cu11==11.8.89 nvidia-cuda-runtime-cu12==12.9.79"), "{err}");
    assert!(err.contains("Successfully installed"), "pip's own output: {err}");
    let _ = std::fs::remove_dir_all(&venv);
}
