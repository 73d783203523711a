//! The trace file: one `write(2)` per event, on an O_APPEND descriptor, so
//! lines from many processes never interleave.
//!
//! The descriptor lives only for that one write: opened, written, closed.
//! While the program's own code runs it holds no descriptor of culaunch's
//! (a program that lists or closes its descriptors, `pass_fds`, or a tight
//! `ulimit -n` sees what it would see without culaunch), and a program that
//! closes every descriptor and reuses the numbers can never receive a trace
//! line in one of its own files. The cost is an open and a close per event
//! (BENCHMARKS.md).

use core::sync::atomic::Ordering;

use crate::config::Config;
use crate::global::PROCESS;

/// Write-only, appending; O_NONBLOCK so that a FIFO with no reader fails at
/// once (ENXIO) instead of blocking the loader, O_NOCTTY so that a terminal
/// never becomes the controlling one, O_CLOEXEC for the instant between
/// the open and the close.
const FLAGS: libc::c_int =
    libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

pub fn write_line(config: &Config, line: &[u8]) {
    let fd = open(config);
    if fd < 0 {
        // A process switched to another uid that cannot write the trace:
        // the process that switched said so in the trace (`identity.rs`),
        // and the loader's programs after it must not print into the job's
        // stderr.
        if !denied_to_another_uid(config) {
            warn_lost(config, b"cannot open the trace file; this process is not traced");
        }
        return;
    }
    let appended = append(fd, line);
    // SAFETY: closing the descriptor opened above.
    unsafe { crate::sys::close(fd) };
    // Only now: with stderr closed, the trace's descriptor may have been
    // fd 2, and a warning written through it would land in the trace.
    if let Err(what) = appended {
        warn_lost(config, what);
    }
}

/// Opens the trace for one append: a descriptor, or -1 with errno set.
pub fn open(config: &Config) -> libc::c_int {
    // SAFETY: `trace` is NUL-terminated.
    unsafe { crate::sys::open(config.trace.as_ptr(), FLAGS, 0o644) }
}

/// The last open failed for want of permission, and the trace belongs to
/// another uid than ours: we are not who the launcher started. (The trace
/// is created by the launcher; its owner stands for the job's identity.)
fn denied_to_another_uid(config: &Config) -> bool {
    // SAFETY: errno is this thread's.
    let errno = unsafe { *libc::__errno_location() };
    if errno != libc::EACCES && errno != libc::EPERM {
        return false;
    }
    // SAFETY: plain-data out-pointer; NUL-terminated path.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::stat(config.trace.as_ptr(), &mut st) } != 0 {
        // Not even allowed to look: a temporary trace lies in the run's 0700
        // directory, which only the launcher's uid (or root) may search.
        // SAFETY: errno is this thread's.
        let errno = unsafe { *libc::__errno_location() };
        return errno == libc::EACCES || errno == libc::EPERM;
    }
    // SAFETY: geteuid cannot fail.
    st.st_uid != unsafe { libc::geteuid() }
}

/// Appends one line through `fd`, if it is a regular file with room; or
/// says why the line is lost. The caller warns once `fd` is closed.
pub fn append(fd: i32, line: &[u8]) -> Result<(), &'static [u8]> {
    // SAFETY: plain-data out-pointer; `fd` is open.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(b"cannot append to the trace file; some events are lost");
    }
    // A FIFO, a device or a socket could block, eat events or never end:
    // the trace is a regular file or nothing.
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(b"the trace is not a regular file; this process is not traced");
    }
    if would_exceed_file_size_limit(&st, line.len()) {
        return Err(b"the trace file reached the file-size limit (ulimit -f); later events are dropped");
    }
    // SAFETY: `line` is a valid buffer; a short or failed write loses this one
    // event and is never retried (a retry could tear the line).
    let n = unsafe { crate::sys::write(fd, line.as_ptr().cast(), line.len()) };
    if n != line.len() as isize {
        if n > 0 {
            // End the torn line, so that the next process's line stays whole.
            // SAFETY: a one-byte buffer.
            unsafe { crate::sys::write(fd, b"\n".as_ptr().cast(), 1) };
        }
        return Err(b"cannot append to the trace file; some events are lost");
    }
    Ok(())
}

/// A write past RLIMIT_FSIZE raises SIGXFSZ, which kills the program: the
/// job must never die for its trace. (The size check and the write are not
/// atomic across processes; the margin covers a few concurrent lines.)
fn would_exceed_file_size_limit(st: &libc::stat, len: usize) -> bool {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return false;
    }
    const MARGIN: u64 = 64 * 1024;
    (st.st_size.max(0) as u64).saturating_add(len as u64).saturating_add(MARGIN) > lim.rlim_cur
}

/// Says that events are lost, once per job. Every losing process removes
/// the launcher's `intact` token (the launcher, finding it gone, says the
/// trace is incomplete); the one that removes `unwarned` (an unlink
/// succeeds in one process only) warns, the others stay silent. A process
/// that cannot remove it for another reason than its absence (another uid,
/// a read-only mount) warns for itself.
pub fn warn_lost(config: &Config, what: &[u8]) {
    if PROCESS.lost.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(tokens) = &config.tokens {
        // SAFETY: NUL-terminated path; gone already is fine.
        unsafe { libc::unlink(tokens.intact.as_ptr()) };
        // A process whose stderr is closed (coreutils close it at exit,
        // where `process_exit` is written) could not say it: it leaves the
        // warning to one that can.
        if !stderr_writable() || stderr_is_the_trace(config) {
            return;
        }
        // SAFETY: NUL-terminated path.
        let first = unsafe { libc::unlink(tokens.unwarned.as_ptr()) } == 0;
        // SAFETY: errno is this thread's.
        if !first && unsafe { *libc::__errno_location() } == libc::ENOENT {
            return;
        }
    }
    say(config, what);
}

fn stderr_writable() -> bool {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(2, libc::F_GETFL) };
    flags != -1 && flags & libc::O_ACCMODE != libc::O_RDONLY
}

/// Says once per process, on stderr, that tracing is impaired; the job goes on.
pub fn warn_once(config: &Config, what: &[u8]) {
    if PROCESS.warned.swap(true, Ordering::Relaxed) {
        return;
    }
    say(config, what);
}

fn say(config: &Config, what: &[u8]) {
    let mut buf = [0u8; 1024];
    let mut len = 0;
    for part in [&b"culaunch: warning: "[..], what, b" (", config.trace.as_bytes(), b")\n"] {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    if stderr_is_the_trace(config) {
        return;
    }
    // SAFETY: valid buffer; stderr may be closed, which is fine.
    unsafe { crate::sys::write(2, buf.as_ptr().cast(), len) };
}

/// With the program's stderr closed, another thread's open of the trace
/// may hold fd 2 right now: a warning through it would land in the trace.
fn stderr_is_the_trace(config: &Config) -> bool {
    // SAFETY: zeroed stat buffers are valid for fstat/stat to fill; the
    // path is NUL-terminated.
    unsafe {
        let (mut ours, mut err): (libc::stat, libc::stat) = (core::mem::zeroed(), core::mem::zeroed());
        libc::fstat(2, &mut err) == 0
            && libc::stat(config.trace.as_ptr(), &mut ours) == 0
            && (err.st_dev, err.st_ino) == (ours.st_dev, ours.st_ino)
    }
}
