//! Starts the command, passes on the signals a supervisor sends, waits, and
//! ends culaunch the way the command ended (docs/trace-schema.md, "Exit status").

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use nix::errno::Errno;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, EXIT_CULAUNCH};

/// Signals that reach the command when sent to culaunch (docs/trace-schema.md).
pub const FORWARDED: &[Signal] =
    &[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// `si_code` of a signal the kernel itself sent, e.g. the terminal's ^C.
const SI_KERNEL: i32 = 0x80;

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(Signal),
}

pub struct Running {
    pid: Pid,
    waited: SigSet,
    /// culaunch's mask before it blocked the forwarded signals.
    original: SigSet,
}

/// Starts `program` with `argv` (argv[0] kept as given) and extra variables.
///
/// The forwarded signals and SIGCHLD are blocked in culaunch until the
/// command has ended, and taken synchronously in [`Running::wait`]; the child
/// starts with the mask culaunch was started with, as it would without
/// culaunch.
pub fn start(program: &Path, argv: &[OsString], env: &[(&str, OsString)]) -> Result<Running, Error> {
    let mut waited = SigSet::empty();
    for &s in FORWARDED.iter().chain(&[Signal::SIGCHLD]) {
        waited.add(s);
    }
    let mut original = SigSet::empty();
    signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&waited), Some(&mut original)).map_err(Error::Signals)?;
    let mut cmd = Command::new(program);
    if let Some(argv0) = argv.first() {
        cmd.arg0(argv0);
    }
    cmd.args(argv.iter().skip(1));
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The standard library's spawn passes on the current mask, which would
    // leave the command deaf to SIGTERM.
    // SAFETY: the closure runs between fork and exec and only calls
    // pthread_sigmask, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&original), None).map_err(io::Error::from)
        });
    }
    let spawned = cmd.spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(source) => {
            let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&original), None);
            return Err(spawn_error(program, source));
        }
    };
    Ok(Running { pid: Pid::from_raw(child.id() as i32), waited, original })
}

fn spawn_error(program: &Path, source: io::Error) -> Error {
    match source.kind() {
        io::ErrorKind::NotFound => Error::CommandNotFound(program.as_os_str().to_owned()),
        io::ErrorKind::PermissionDenied => Error::CannotExecute { path: program.to_path_buf(), source },
        _ if source.raw_os_error() == Some(libc::ENOEXEC) => {
            Error::CannotExecute { path: program.to_path_buf(), source }
        }
        _ => Error::Spawn { path: program.to_path_buf(), source },
    }
}

impl Running {
    /// Waits for the command, forwarding signals to it meanwhile; `tick`,
    /// when given, runs about every `TICK` while it waits (to follow the
    /// trace). culaunch's own mask is back when this returns: ^C then stops
    /// a long summary.
    /// The command's pid: the root of the process tree this run summarises.
    pub fn pid(&self) -> i64 {
        i64::from(self.pid.as_raw())
    }

    pub fn wait(self, tick: Option<&mut dyn FnMut()>) -> Result<Outcome, Error> {
        let outcome = self.wait_blocked(tick);
        let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.original), None);
        outcome
    }

    fn wait_blocked(&self, mut tick: Option<&mut dyn FnMut()>) -> Result<Outcome, Error> {
        const TICK: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 250_000_000 };
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(Outcome::Exited(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Outcome::Signaled(sig)),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::Wait(e)),
            }
            // SAFETY: plain-data out-pointer.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: the set, out-pointer and timeout are valid.
            let sig = unsafe {
                match tick {
                    Some(_) => libc::sigtimedwait(self.waited.as_ref(), &mut info, &TICK),
                    None => libc::sigwaitinfo(self.waited.as_ref(), &mut info),
                }
            };
            let Ok(sig) = Signal::try_from(sig) else {
                if let Some(t) = tick.as_mut() {
                    t();
                }
                continue;
            };
            if sig == Signal::SIGCHLD || !self.should_forward(info.si_code) {
                continue;
            }
            tracing::debug!(signal = ?sig, "forwarding to the command");
            let _ = signal::kill(self.pid, sig);
        }
    }

    /// A ^C from the terminal already went to the whole foreground process
    /// group, the command included; sending it again would deliver it twice.
    /// (A supervisor that signals the whole process group with kill(2),
    /// `kill -TERM -PGID`, does deliver it twice: kill(2) looks like a signal
    /// meant for culaunch alone.)
    fn should_forward(&self, si_code: i32) -> bool {
        si_code != SI_KERNEL || nix::unistd::getpgid(Some(self.pid)).ok() != Some(nix::unistd::getpgrp())
    }
}

/// culaunch's own exit, mirroring the command's: the same status, or death by
/// the same signal (no core file), else 128+N.
pub fn finish_like(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Exited(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_CULAUNCH)),
        Outcome::Signaled(sig) => {
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: setrlimit and signal are async-signal-safe calls with valid arguments.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::signal(sig as libc::c_int, libc::SIG_DFL);
            }
            let mut only = SigSet::empty();
            only.add(sig);
            let _ = signal::raise(sig);
            let _ = signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
            // Still here: the signal does not kill by default (SIGCHLD, …).
            ExitCode::from(128u8.saturating_add(sig as u8))
        }
    }
}
