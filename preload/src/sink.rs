//! The trace file: one `write(2)` per event on an O_APPEND descriptor, so lines
//! from many processes never interleave.
//!
//! The descriptor is checked against the file we opened before each write: a
//! program that closes every descriptor and opens another file on the same
//! number must not get our lines in its file.

use core::sync::atomic::Ordering;

use crate::config::Config;
use crate::global::PROCESS;

/// Descriptors below this are left to the program (0, 1, 2 and the first few
/// it will open), so that ours is never mistaken for one of them.
const MIN_FD: i32 = 100;

pub fn write_line(config: &Config, line: &[u8]) {
    let fd = match current_fd().or_else(|| open(config)) {
        Some(fd) => fd,
        None => return,
    };
    if would_exceed_file_size_limit(fd, line.len()) {
        warn_once(config, b"the trace file reached the file-size limit (ulimit -f); later events are dropped");
        return;
    }
    // SAFETY: `line` is a valid buffer; a short or failed write loses this one
    // event and is never retried (a retry could tear the line).
    let n = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    if n != line.len() as isize {
        if n > 0 {
            // End the torn line, so that the next process's line stays whole.
            // SAFETY: a one-byte buffer.
            unsafe { libc::write(fd, b"\n".as_ptr().cast(), 1) };
        }
        warn_once(config, b"cannot append to the trace file; some events are lost");
    }
}

/// A write past RLIMIT_FSIZE raises SIGXFSZ, which kills the program: the
/// job must never die for its trace. (The size check and the write are not
/// atomic across processes; the margin covers a few concurrent lines.)
fn would_exceed_file_size_limit(fd: i32, len: usize) -> bool {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return false;
    }
    // SAFETY: plain-data out-pointer; `fd` is open.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return true;
    }
    const MARGIN: u64 = 64 * 1024;
    (st.st_size.max(0) as u64).saturating_add(len as u64).saturating_add(MARGIN) > lim.rlim_cur
}

fn current_fd() -> Option<i32> {
    let fd = PROCESS.trace_fd.load(Ordering::Acquire);
    if fd < 0 {
        return None;
    }
    // SAFETY: plain-data out-pointer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat on any integer is safe; it fails on a closed descriptor.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    (ok && st.st_dev == PROCESS.trace_dev.load(Ordering::Relaxed)
        && st.st_ino == PROCESS.trace_ino.load(Ordering::Relaxed))
    .then_some(fd)
}

fn open(config: &Config) -> Option<i32> {
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC;
    // SAFETY: `trace` is NUL-terminated.
    let raw = unsafe { libc::open(config.trace.as_ptr(), flags, 0o644) };
    if raw < 0 {
        warn_once(config, b"cannot open the trace file; this process is not traced");
        return None;
    }
    // SAFETY: `raw` is ours; the duplicate keeps CLOEXEC.
    let fd = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, MIN_FD) };
    // SAFETY: closing the descriptor we just opened.
    unsafe { libc::close(raw) };
    if fd < 0 {
        // A low descriptor could be taken for one of the program's own.
        warn_once(config, b"no free file descriptor at 100 or above; this process is not traced");
        return None;
    }
    // SAFETY: plain-data out-pointer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open.
    unsafe { libc::fstat(fd, &mut st) };
    PROCESS.trace_dev.store(st.st_dev, Ordering::Relaxed);
    PROCESS.trace_ino.store(st.st_ino, Ordering::Relaxed);
    PROCESS.trace_fd.store(fd, Ordering::Release);
    Some(fd)
}

/// Says once per process, on stderr, that tracing is impaired; the job goes on.
pub fn warn_once(config: &Config, what: &[u8]) {
    if PROCESS.warned.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut buf = [0u8; 1024];
    let mut len = 0;
    for part in [&b"culaunch: warning: "[..], what, b" (", config.trace.as_bytes(), b")\n"] {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    // SAFETY: valid buffer; stderr may be closed, which is fine.
    unsafe { libc::write(2, buf.as_ptr().cast(), len) };
}
