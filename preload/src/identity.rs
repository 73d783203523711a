//! Noticing that a traced process switches to a uid that cannot write the
//! trace (`subprocess.run(..., user=65534)` as root, `setpriv --reuid`), and
//! saying so in the trace (an `untraced` event) while it still can: nothing
//! it loads from then on, nor anything the programs it starts load, can be
//! recorded, and their own attempts stay silent (`sink.rs`).
//!
//! The program's calls to `setuid`, `seteuid`, `setreuid` and `setresuid`
//! reach a wrapper here through `la_symbind64`, as the exec functions do
//! (`exec.rs`). The wrapper opens the trace while the process is still
//! privileged, calls the real function, asks whether the new identity can
//! write the trace (faccessat with AT_EACCESS: the effective ids the next
//! open would use), writes the event through the descriptor if not, and
//! closes it before returning: the program never sees it.
//!
//! Not seen: calls libc makes to itself (`seteuid` inside libc, the
//! setxid calls of `posix_spawn`'s child, `initgroups`-style helpers),
//! objects bound with BIND_NOW on glibc before 2.35 (la_symbind is then not
//! called for them), and statically linked programs. Such a process is
//! simply missing from the trace, and says nothing on its stderr.
//! CPython's `_posixsubprocess` calls `setreuid` through its PLT, lazily
//! bound, so `subprocess`'s `user=` is seen.
//!
//! The gid family needs no wrapper: a process keeps writing what its uid
//! could (root stays root after `setregid`), so only a uid change can end
//! its tracing.

use core::ffi::{c_int, CStr};
use core::sync::atomic::Ordering;

use crate::config::{self, Config};
use crate::global::{IDENTITY_WRAPPED, PROCESS};
use crate::{exec, exports, paths, sink};

/// The wrapped functions; `PROCESS.identity_real` holds the real ones, by
/// the index of their name here.
const WATCHED: [&[u8]; IDENTITY_WRAPPED] = [b"setuid", b"seteuid", b"setreuid", b"setresuid"];

type Uid = libc::uid_t;

/// For `la_symbind64`: the address to bind `name` to.
pub fn bind(name: &CStr, real: usize) -> usize {
    let name = name.to_bytes();
    if !name.starts_with(b"set") {
        return real;
    }
    let Some(i) = WATCHED.iter().position(|w| *w == name) else { return real };
    PROCESS.identity_real[i].store(real, Ordering::Relaxed);
    match i {
        0 => setuid as *const () as usize,
        1 => seteuid as *const () as usize,
        2 => setreuid as *const () as usize,
        _ => setresuid as *const () as usize,
    }
}

type OneFn = extern "C" fn(Uid) -> c_int;
type TwoFn = extern "C" fn(Uid, Uid) -> c_int;
type ThreeFn = extern "C" fn(Uid, Uid, Uid) -> c_int;

fn real<F: Copy>(i: usize) -> Option<F> {
    exec::real_in::<F>(&PROCESS.identity_real[i])
}

extern "C" fn setuid(uid: Uid) -> c_int {
    let switch = Switch::begin();
    let rc = real::<OneFn>(0).map_or_else(exec::missing, |f| f(uid));
    switch.end(rc);
    rc
}

extern "C" fn seteuid(euid: Uid) -> c_int {
    let switch = Switch::begin();
    let rc = real::<OneFn>(1).map_or_else(exec::missing, |f| f(euid));
    switch.end(rc);
    rc
}

extern "C" fn setreuid(ruid: Uid, euid: Uid) -> c_int {
    let switch = Switch::begin();
    let rc = real::<TwoFn>(2).map_or_else(exec::missing, |f| f(ruid, euid));
    switch.end(rc);
    rc
}

extern "C" fn setresuid(ruid: Uid, euid: Uid, suid: Uid) -> c_int {
    let switch = Switch::begin();
    let rc = real::<ThreeFn>(3).map_or_else(exec::missing, |f| f(ruid, euid, suid));
    switch.end(rc);
    rc
}

/// The trace, opened before an identity change; -1 when not traced or not
/// openable (the process's own events have said so already).
struct Switch {
    fd: c_int,
}

impl Switch {
    fn begin() -> Switch {
        let saved = errno();
        let fd = exports::guarded(-1, || config::get().map_or(-1, sink::open));
        set_errno(saved);
        Switch { fd }
    }

    /// After the real call returned `rc`: the event if the new identity
    /// cannot write the trace, then the descriptor closed. errno stays the
    /// real call's.
    fn end(self, rc: c_int) {
        if self.fd < 0 {
            return;
        }
        let saved = errno();
        let appended = exports::guarded(Ok(()), || match config::get() {
            Some(config) if rc == 0 && !can_write(config) => say_untraced(config, self.fd),
            _ => Ok(()),
        });
        // SAFETY: closing the descriptor `begin` opened.
        unsafe { crate::sys::close(self.fd) };
        // Once it is closed: it may have been fd 2 (sink::write_line).
        if let (Err(what), Some(config)) = (appended, config::get()) {
            exports::guarded((), || sink::warn_lost(config, what));
        }
        set_errno(saved);
    }
}

/// Whether this process, as it is now, may open the trace for writing.
fn can_write(config: &Config) -> bool {
    // SAFETY: NUL-terminated path.
    unsafe { libc::faccessat(libc::AT_FDCWD, config.trace.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

fn say_untraced(config: &Config, fd: c_int) -> Result<(), &'static [u8]> {
    let mut exe = [0u8; paths::PATH_MAX];
    let exe = paths::self_exe(&mut exe).unwrap_or(b"?");
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut digits = [0u8; 10];
    let reason: [&[u8]; 3] = [b"it switched to uid ", decimal(uid, &mut digits), REASON_TAIL];
    let mut buf = [0u8; paths::PATH_MAX + 512];
    match exec::untraced_line(config, exe, &reason, &mut buf) {
        Some(line) => sink::append(fd, line),
        None => Ok(()),
    }
}

const REASON_TAIL: &[u8] =
    b", which cannot write the trace: from then on nothing it or the programs it starts load is recorded";

fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

fn errno() -> c_int {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = value };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_written_in_decimal() {
        let mut b = [0u8; 10];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(65534, &mut b), b"65534");
        assert_eq!(decimal(u32::MAX, &mut b), b"4294967295");
    }

    #[test]
    fn only_the_uid_setters_are_wrapped() {
        for (name, wrapped) in
            [(c"setuid", true), (c"setresuid", true), (c"setregid", false), (c"setsid", false), (c"set", false)]
        {
            assert_eq!(bind(name, 1) != 1, wrapped, "{name:?}");
        }
    }
}
