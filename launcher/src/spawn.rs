//! Starts the command, passes on the signals a supervisor sends, waits, and
//! ends culaunch the way the command ended (docs/trace-schema.md, "Exit status").

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

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
/// `si_code` of tkill/tgkill: a signal to one thread.
const SI_TKILL: i32 = -6;

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(Signal),
}

pub struct Running {
    pid: Pid,
    /// Tells a signal sent to the whole process group from one sent to
    /// culaunch alone; None if it could not be started.
    sentinel: Option<sentinel::Sentinel>,
    waited: SigSet,
    /// culaunch's mask before it blocked the forwarded signals.
    original: SigSet,
}

/// Starts `program` with `argv` (argv[0] kept as given) and extra variables.
///
/// The forwarded signals and SIGCHLD are blocked in culaunch until the
/// command has ended, and taken synchronously in [`Running::wait`]. The child
/// starts as it would have without culaunch ([`inherited`]): the signal mask,
/// the ignored signals and the closed standard descriptors culaunch itself was
/// started with. It also dies with culaunch (`PR_SET_PDEATHSIG`), so a
/// `kill -9` of culaunch does not leave the job running, orphaned.
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
    let received = inherited::received();
    let parent = nix::unistd::getpid();
    let sentinel = sentinel::Sentinel::start();
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (sigaction, sigprocmask, close, prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            received.restore_in_child(&original);
            inherited::die_with_parent(parent);
            Ok(())
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
    Ok(Running { pid: Pid::from_raw(child.id() as i32), sentinel, waited, original })
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
        let mut this = self;
        let outcome = this.wait_blocked(tick);
        this.sentinel = None;
        let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&this.original), None);
        outcome
    }

    fn wait_blocked(&mut self, mut tick: Option<&mut dyn FnMut()>) -> Result<Outcome, Error> {
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
            if sig == Signal::SIGCHLD || !self.should_forward(sig, &info) {
                continue;
            }
            tracing::debug!(signal = ?sig, "forwarding to the command");
            let _ = signal::kill(self.pid, sig);
        }
    }

    /// The command stays in culaunch's process group, so a signal sent to
    /// that group (a ^C from the terminal, `kill -INT -PGID`, `timeout`,
    /// which signals its child and then its group, a cgroup-wide kill)
    /// already reached it; passing it on would deliver it twice. kill(2)
    /// does not say whether it meant culaunch or its group, so the sentinel,
    /// a process of the group that blocks these signals, is asked: if it has
    /// the signal pending too, the group was signalled. A signal sent to the
    /// group reaches every newer member first (the kernel's list is newest
    /// first), so the sentinel has it by the time culaunch wakes; a sender
    /// that signals culaunch and then the group (`timeout`) or each process
    /// in turn (systemd) gets 20 ms' grace.
    fn should_forward(&mut self, sig: Signal, info: &libc::siginfo_t) -> bool {
        if info.si_code == SI_TKILL {
            // tgkill(2) names a thread of culaunch: meant for culaunch alone.
            return true;
        }
        let Some(sentinel) = self.sentinel.as_mut() else {
            // Without a sentinel, only the terminal's signals are known to
            // have gone to the group.
            return info.si_code != SI_KERNEL
                || nix::unistd::getpgid(Some(self.pid)).ok() != Some(nix::unistd::getpgrp());
        };
        let seen = sentinel.saw(sig) || {
            std::thread::sleep(GROUP_GRACE);
            sentinel.saw(sig)
        };
        if seen {
            // The same group signal also reached culaunch, queued apart if
            // culaunch took the first one before it came: take it now, or it
            // would look meant for culaunch alone. Then a fresh sentinel
            // (a pending signal stays pending) for the next one.
            drain(sig);
            sentinel.renew();
        }
        !seen
    }
}

/// Takes every pending instance of `sig` (blocked in culaunch) without waiting.
fn drain(sig: Signal) {
    let mut only = SigSet::empty();
    only.add(sig);
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid set and timeout; a null siginfo is allowed.
    while unsafe { libc::sigtimedwait(only.as_ref(), std::ptr::null_mut(), &zero) } == sig as i32 {}
}

/// How long after a signal to culaunch a signal to its group still counts
/// as the same signal (see [`Running::should_forward`]).
const GROUP_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

/// culaunch's own exit, mirroring the command's: the same status, or death by
/// the same signal (no core file), else 128+N.
pub fn finish_like(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Exited(code) => u8::try_from(code).unwrap_or(EXIT_CULAUNCH),
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
            128u8.saturating_add(sig as u8)
        }
    }
}

/// What culaunch was started with, recorded before the Rust runtime changes
/// it: the runtime sets SIGPIPE to "ignore" and opens /dev/null on closed
/// descriptors 0, 1 and 2, and std's spawn resets the child's mask and
/// SIGPIPE. A command run bare would have inherited all of it, so the child
/// gets it back just before exec.
pub mod inherited {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use nix::sys::signal::SigSet;
    use nix::unistd::Pid;

    /// Bit N-1 set: signal N was ignored (SIG_IGN) when culaunch started.
    static IGNORED: AtomicU64 = AtomicU64::new(0);
    /// Bit fd set: standard descriptor fd was closed when culaunch started.
    static CLOSED: AtomicU64 = AtomicU64::new(0);
    static RECORDED: AtomicBool = AtomicBool::new(false);

    /// Runs from `.init_array`, before `main` and so before the Rust runtime
    /// initialises itself (std does that in `main`, called after the ELF
    /// constructors).
    extern "C" fn record(argc: libc::c_int, argv: *const *const libc::c_char, _envp: *const *const libc::c_char) {
        if !may_start_a_job(argc, argv) {
            return;
        }
        let mut ignored = 0u64;
        for sig in 1..=64 {
            // SAFETY: a query only (null new action), into a zeroed out-struct.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0 && old.sa_sigaction == libc::SIG_IGN {
                ignored |= 1 << (sig - 1);
            }
        }
        let mut closed = 0u64;
        for fd in 0..3 {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
                closed |= 1 << fd;
            }
        }
        IGNORED.store(ignored, Ordering::Relaxed);
        CLOSED.store(closed, Ordering::Relaxed);
        RECORDED.store(true, Ordering::Relaxed);
    }

    /// Whether the command line can start the job (run, lock): the other
    /// subcommands need nothing recorded, and `deps` is timed against
    /// libtree, where 67 system calls at start are a tenth of the run.
    fn may_start_a_job(argc: libc::c_int, argv: *const *const libc::c_char) -> bool {
        if argc < 2 || argv.is_null() {
            return true;
        }
        // SAFETY: glibc passes `.init_array` functions main's argc and argv:
        // argv[1] exists (argc >= 2) and is a NUL-terminated string.
        let first = unsafe { *argv.add(1) };
        if first.is_null() {
            return true;
        }
        // SAFETY: as above.
        let first = unsafe { std::ffi::CStr::from_ptr(first) }.to_bytes();
        !matches!(first, b"deps" | b"report" | b"doctor" | b"diff" | b"--version" | b"-V")
    }

    #[used]
    #[link_section = ".init_array"]
    static RECORD: extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char) = record;

    /// A copy of what was recorded, taken before fork.
    #[derive(Clone, Copy, Debug)]
    pub struct Received {
        ignored: u64,
        closed: u64,
        recorded: bool,
    }

    pub fn received() -> Received {
        Received {
            ignored: IGNORED.load(Ordering::Relaxed),
            closed: CLOSED.load(Ordering::Relaxed),
            recorded: RECORDED.load(Ordering::Relaxed),
        }
    }

    impl Received {
        /// In the child, between fork and exec: `mask` is the mask culaunch
        /// had before it blocked the forwarded signals (std's spawn has just
        /// emptied it). Handlers need nothing: exec resets them to default.
        pub fn restore_in_child(&self, mask: &SigSet) {
            // SAFETY: sigprocmask and sigaction are async-signal-safe; the
            // set is valid.
            unsafe {
                libc::sigprocmask(libc::SIG_SETMASK, mask.as_ref(), std::ptr::null_mut());
                if !self.recorded {
                    return;
                }
                for sig in 1..=64 {
                    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                        continue;
                    }
                    let want = if self.ignored & (1 << (sig - 1)) != 0 { libc::SIG_IGN } else { libc::SIG_DFL };
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 || old.sa_sigaction == want {
                        continue;
                    }
                    // Only a signal ignored now and not then, or the reverse,
                    // needs a change; handlers are reset by exec.
                    if want == libc::SIG_IGN || old.sa_sigaction == libc::SIG_IGN {
                        libc::signal(sig, want);
                    }
                }
                for fd in 0..3 {
                    if self.closed & (1 << fd) != 0 {
                        libc::close(fd);
                    }
                }
            }
        }
    }

    /// The command dies (SIGKILL) when culaunch does, whatever killed it. If
    /// culaunch died before the request took effect, the parent is already
    /// another process: die now, as the request would have.
    pub fn die_with_parent(parent: Pid) {
        // SAFETY: prctl, getppid and raise are async-signal-safe.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != parent.as_raw() {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}

/// A process in culaunch's process group that blocks the forwarded signals
/// and does nothing else, so that its pending set shows which of them were
/// sent to the group (see [`Running::should_forward`]).
mod sentinel {
    use nix::sys::signal::Signal;
    use nix::sys::wait::waitpid;
    use nix::unistd::Pid;

    pub struct Sentinel {
        pid: Pid,
    }

    impl Sentinel {
        /// Forks it; culaunch has the forwarded signals blocked already, and
        /// the child keeps that mask. None if fork fails.
        pub fn start() -> Option<Sentinel> {
            let parent = nix::unistd::getpid();
            // SAFETY: the child only makes async-signal-safe calls and never
            // returns into Rust code.
            match unsafe { libc::fork() } {
                -1 => None,
                0 => unsafe { idle(parent) },
                pid => Some(Sentinel { pid: Pid::from_raw(pid) }),
            }
        }

        /// Whether `sig` is pending in the sentinel.
        pub fn saw(&self, sig: Signal) -> bool {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
                return false;
            };
            let bit = 1u64 << (sig as i32 - 1);
            status
                .lines()
                .filter_map(|l| l.strip_prefix("ShdPnd:").or_else(|| l.strip_prefix("SigPnd:")))
                .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
                .any(|pending| pending & bit != 0)
        }

        pub fn renew(&mut self) {
            if let Some(fresh) = Sentinel::start() {
                *self = fresh;
            }
        }
    }

    impl Drop for Sentinel {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }

    /// The sentinel's whole life: no descriptors (it must not keep the job's
    /// pipes open), dies with culaunch, waits to be killed.
    unsafe fn idle(parent: Pid) -> ! {
        // SAFETY (whole body): async-signal-safe calls with valid arguments.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != parent.as_raw() {
                libc::_exit(0);
            }
            libc::prctl(libc::PR_SET_NAME, c"culaunch-sig".as_ptr() as libc::c_ulong, 0, 0, 0);
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                for fd in 0..4096 {
                    libc::close(fd);
                }
            }
            loop {
                libc::pause();
            }
        }
    }
}
