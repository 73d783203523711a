//! What std's `fn main` start-up does that culaunch needs, and only that.
//!
//! culaunch defines the C `main` itself (`#![no_main]`): std's start-up
//! also places a guard page below the main thread's stack, and to find the
//! stack it has glibc read and `sscanf` /proc/self/maps, about 0.1 M
//! instructions, a tenth of a whole `culaunch deps` of a small library. A
//! stack overflow is then a plain SIGSEGV, without std's message.

use std::ffi::c_int;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};

/// std's status for a panic in `main`.
const EXIT_PANIC: c_int = 101;

/// Runs `body` as std's start-up would, and returns its status.
pub fn enter(body: fn() -> u8) -> c_int {
    open_standard_descriptors();
    // SAFETY: setting a disposition, as std's start-up does: a write to a
    // closed pipe is then an EPIPE error (which `output` ends on quietly),
    // not death by SIGPIPE. What the command inherits is restored from
    // `spawn::inherited`, recorded before this.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let status = panic::catch_unwind(AssertUnwindSafe(body)).map_or(EXIT_PANIC, c_int::from);
    let _ = std::io::stdout().flush();
    status
}

/// A closed descriptor 0, 1 or 2 is opened on /dev/null, as std does, so
/// that no file culaunch opens (a trace, a lock) becomes its stdout or
/// stderr. The command still gets them closed (`spawn::inherited`).
fn open_standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: three valid pollfd structs; a zero timeout.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } == -1 {
        return;
    }
    for fd in fds {
        if fd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated path; open takes the lowest free
            // descriptor, which is this one (the lower ones are open).
            if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != fd.fd {
                std::process::abort();
            }
        }
    }
}
