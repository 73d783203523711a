//! Noticing, at the moment a traced process starts another program, that the
//! loader will not run culaunch in it — a static or setuid program, one of
//! another class or machine, an environment without LD_AUDIT — and saying
//! why (an `untraced` event), since no trace will ever come from it.
//!
//! The program's calls to `execve`, `execv`, `execvp`, `execvpe`,
//! `posix_spawn` and `posix_spawnp` reach a wrapper here through
//! `la_symbind64`, which the loader calls when it binds a symbol to the
//! program's libc. The wrapper only looks at the target and its environment,
//! then calls the real function with the same arguments. Calls libc makes to
//! itself (`system`, `popen`, `execl`) are not bound through the PLT and are
//! not seen.
//!
//! Before an `exec*` replaces the program, a failed load it never asked
//! `dlerror` about is written (`callbacks::before_program_ends`): the new
//! program runs no exit handler of the old one.
//!
//! The wrapper may run in a `vfork` child: there it takes no lock,
//! allocates nothing, and writes at most one line.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

use culaunch_protocol::elf;
use culaunch_protocol::env;
use culaunch_protocol::event;
use culaunch_protocol::json::Writer;

use crate::config::{self, Config};
use crate::global::{EXEC_WRAPPED, PROCESS};
use crate::{memory, sink};

/// The wrapped functions; `PROCESS.exec_real` holds the real ones, by the
/// index of their name here.
const WATCHED: [&[u8]; EXEC_WRAPPED] = [b"execve", b"execv", b"execvp", b"execvpe", b"posix_spawn", b"posix_spawnp"];

type Argv = *const *const c_char;

/// For `la_symbind64`: the address to bind `name` to.
pub fn bind(name: &CStr, real: usize) -> usize {
    let name = name.to_bytes();
    if !matches!(name.first(), Some(b'e' | b'p')) {
        return real;
    }
    let Some(i) = WATCHED.iter().position(|w| *w == name) else { return real };
    PROCESS.exec_real[i].store(real, Ordering::Relaxed);
    match i {
        0 => execve as *const () as usize,
        1 => execv as *const () as usize,
        2 => execvp as *const () as usize,
        3 => execvpe as *const () as usize,
        4 => posix_spawn as *const () as usize,
        _ => posix_spawnp as *const () as usize,
    }
}

/// Remembers where the program's `environ` lives (found at `la_preinit`).
pub fn set_environ(address: usize) {
    PROCESS.environ.store(address, Ordering::Relaxed);
}

fn program_environ() -> Argv {
    let at = PROCESS.environ.load(Ordering::Relaxed) as *const Argv;
    if at.is_null() {
        return core::ptr::null();
    }
    // SAFETY: the address of the program's `environ` variable, read now.
    unsafe { *at }
}

type ExecveFn = extern "C" fn(*const c_char, Argv, Argv) -> c_int;
type ExecvFn = extern "C" fn(*const c_char, Argv) -> c_int;

/// The real function `i`; `bind` stored it before handing out the wrapper.
fn real<F: Copy>(i: usize) -> Option<F> {
    real_in(&PROCESS.exec_real[i])
}

/// The real function whose address `slot` holds. Should it ever be missing,
/// the wrapper fails the call (ENOSYS, see [`missing`]) rather than jump to
/// address 0.
pub fn real_in<F: Copy>(slot: &AtomicUsize) -> Option<F> {
    let address = slot.load(Ordering::Relaxed);
    // SAFETY: a function pointer of type F (pointer-sized, checked), stored
    // by a `bind` from the loader's own binding of that very symbol.
    (address != 0 && core::mem::size_of::<F>() == core::mem::size_of::<usize>())
        .then(|| unsafe { core::mem::transmute_copy::<usize, F>(&address) })
}

pub fn missing() -> c_int {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    crate::callbacks::before_program_ends();
    check(path, envp, false);
    match real::<ExecveFn>(0) {
        Some(f) => f(path, argv, envp),
        None => missing(),
    }
}

extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    crate::callbacks::before_program_ends();
    check(path, program_environ(), false);
    match real::<ExecvFn>(1) {
        Some(f) => f(path, argv),
        None => missing(),
    }
}

extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    crate::callbacks::before_program_ends();
    check(file, program_environ(), true);
    match real::<ExecvFn>(2) {
        Some(f) => f(file, argv),
        None => missing(),
    }
}

extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    crate::callbacks::before_program_ends();
    check(file, envp, true);
    match real::<ExecveFn>(3) {
        Some(f) => f(file, argv, envp),
        None => missing(),
    }
}

type SpawnFn = extern "C" fn(*mut c_int, *const c_char, *const c_void, *const c_void, Argv, Argv) -> c_int;

extern "C" fn posix_spawn(
    pid: *mut c_int,
    path: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: Argv,
    envp: Argv,
) -> c_int {
    check(path, envp, false);
    match real::<SpawnFn>(4) {
        Some(f) => f(pid, path, actions, attr, argv, envp),
        None => libc::ENOSYS,
    }
}

extern "C" fn posix_spawnp(
    pid: *mut c_int,
    file: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: Argv,
    envp: Argv,
) -> c_int {
    check(file, envp, true);
    match real::<SpawnFn>(5) {
        Some(f) => f(pid, file, actions, attr, argv, envp),
        None => libc::ENOSYS,
    }
}

/// Says why the program about to start will not be traced, if it will not.
/// Never fails the call: any trouble here is ignored.
fn check(file: *const c_char, envp: Argv, search_path: bool) {
    let _ = std::panic::catch_unwind(|| {
        let Some(config) = config::get() else { return };
        // What the kernel would reject with EFAULT is not read here: the
        // real function gets it and fails as it would without culaunch.
        if !memory::is_c_string(file as usize) || !memory::is_string_array(envp as usize) {
            return;
        }
        // SAFETY: checked just above: a readable NUL-terminated path.
        let file = unsafe { CStr::from_ptr(file) };
        let mut path_buf = [0u8; 1024];
        let Some(path) = locate(file, envp, search_path, &mut path_buf) else { return };
        if let Some(reason) = reason_untraced(path, envp) {
            report(config, path.to_bytes(), reason);
        }
    });
}

/// The file `exec*p` would run: `file` itself when it has a slash, else the
/// first executable match on the environment's PATH.
fn locate<'b>(file: &'b CStr, envp: Argv, search_path: bool, buf: &'b mut [u8; 1024]) -> Option<&'b CStr> {
    let name = file.to_bytes();
    if !search_path || name.contains(&b'/') {
        return Some(file);
    }
    let path_var = env_value(envp, b"PATH").unwrap_or(b"/bin:/usr/bin");
    for dir in path_var.split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let len = dir.len() + 1 + name.len();
        if len >= buf.len() {
            continue;
        }
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..len].copy_from_slice(name);
        buf[len] = 0;
        // SAFETY: NUL-terminated just above.
        if unsafe { libc::access(buf.as_ptr().cast(), libc::X_OK) } == 0 {
            return CStr::from_bytes_with_nul(&buf[..=len]).ok();
        }
    }
    None
}

fn env_value<'a>(envp: Argv, key: &[u8]) -> Option<&'a [u8]> {
    if envp.is_null() {
        return None;
    }
    for i in 0..65536 {
        // SAFETY: envp is a NULL-terminated array of NUL-terminated strings.
        let entry = unsafe { *envp.add(i) };
        if entry.is_null() {
            break;
        }
        // SAFETY: as above.
        let entry = unsafe { CStr::from_ptr(entry) }.to_bytes();
        if entry.len() > key.len() && entry.starts_with(key) && entry[key.len()] == b'=' {
            return Some(&entry[key.len() + 1..]);
        }
    }
    None
}

/// Why the loader will not run culaunch in `path` started with `envp`.
fn reason_untraced(path: &CStr, envp: Argv) -> Option<&'static [u8]> {
    if env_value(envp, env::LD_AUDIT.as_bytes()).is_none_or(<[u8]>::is_empty)
        || env_value(envp, env::TRACE.as_bytes()).is_none()
    {
        return Some(
            b"its environment lacks LD_AUDIT or CULAUNCH_AUDIT_TRACE (cleared), so culaunch is not loaded in it",
        );
    }
    // SAFETY: NUL-terminated path.
    let fd = unsafe { crate::sys::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK, 0) };
    if fd < 0 {
        return None;
    }
    let mut head = [0u8; 4096];
    // SAFETY: plain-data out-pointer; `fd` is open.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: valid buffers; closing what we opened.
    let n = unsafe {
        let stat_ok = libc::fstat(fd, &mut st) == 0;
        let n = if stat_ok { crate::sys::read(fd, head.as_mut_ptr().cast(), head.len()) } else { -1 };
        crate::sys::close(fd);
        n
    };
    if n < 0 {
        return None;
    }
    let head = &head[..n as usize];
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if (st.st_mode & libc::S_ISUID != 0 && st.st_uid != uid) || (st.st_mode & libc::S_ISGID != 0 && st.st_gid != gid) {
        return Some(b"it is setuid or setgid: the loader ignores LD_AUDIT in it");
    }
    elf_reason(head)
}

/// From the first bytes of a file: another class or machine, or no PT_INTERP.
fn elf_reason(head: &[u8]) -> Option<&'static [u8]> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return None;
    }
    if head[4] != elf::NATIVE_CLASS {
        return Some(b"it is a 32-bit program; culaunch's audit module is 64-bit");
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if machine != elf::NATIVE_MACHINE {
        return Some(b"it is a program for another machine than culaunch's audit module");
    }
    let phoff = u64::from_le_bytes(head[32..40].try_into().ok()?) as usize;
    let (phentsize, phnum) =
        (u16::from_le_bytes([head[54], head[55]]) as usize, u16::from_le_bytes([head[56], head[57]]) as usize);
    if phentsize != core::mem::size_of::<libc::Elf64_Phdr>() {
        return None;
    }
    let mut has_interp = false;
    for i in 0..phnum {
        let at = phoff.checked_add(i * phentsize)?;
        let p_type = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
        has_interp |= p_type == elf::PT_INTERP;
    }
    (!has_interp).then_some(&b"it is statically linked: no loader runs in it"[..])
}

fn report(config: &Config, exe: &[u8], reason: &[u8]) {
    let mut buf = [0u8; 2048];
    if let Some(line) = untraced_line(config, exe, &[reason], &mut buf) {
        sink::write_line(config, line);
    }
}

/// The `untraced` event about `exe`, its reason made of `reason`'s parts.
pub fn untraced_line<'b>(config: &Config, exe: &[u8], reason: &[&[u8]], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut w = Writer::new(buf);
    // SAFETY: getpid and getppid cannot fail.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
    w.u64("v", u64::from(event::VERSION))
        .str("ts", &crate::clock::rfc3339_micros(crate::clock::now_realtime_ns()))
        .i64("pid", i64::from(pid))
        .i64("ppid", i64::from(ppid))
        .str("host", &config.host)
        .str("event", event::UNTRACED.as_bytes())
        .str("exe", exe)
        .str_concat("reason", reason);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, machine: u16, interp: bool) -> [u8; 4096] {
        let mut h = [0u8; 4096];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&2u16.to_le_bytes());
        h[64..68].copy_from_slice(&1u32.to_le_bytes());
        h[120..124].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
        h
    }

    #[test]
    fn static_foreign_and_32_bit_programs_are_named() {
        let native = elf::NATIVE_MACHINE;
        let foreign = elf::EM_AARCH64 + elf::EM_X86_64 - native;
        assert_eq!(elf_reason(&header(elf::ELFCLASS64, native, true)), None);
        assert!(elf_reason(&header(elf::ELFCLASS64, native, false)).is_some_and(|r| r.starts_with(b"it is statically")));
        assert!(elf_reason(&header(elf::ELFCLASS32, 3, true)).is_some_and(|r| r.starts_with(b"it is a 32-bit")));
        assert!(
            elf_reason(&header(elf::ELFCLASS64, foreign, true)).is_some_and(|r| r.starts_with(b"it is a program for"))
        );
        assert_eq!(elf_reason(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn environment_lookup_needs_the_whole_key() {
        let entries = [c"LD_AUDITX=1".as_ptr(), c"LD_AUDIT=/m.so".as_ptr(), core::ptr::null()];
        assert_eq!(env_value(entries.as_ptr(), b"LD_AUDIT"), Some(&b"/m.so"[..]));
        assert_eq!(env_value(entries.as_ptr(), b"PATH"), None);
    }
}
