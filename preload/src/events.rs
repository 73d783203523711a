//! Formats the trace events (SPEC.md, "Trace events") into stack buffers and
//! hands each to the sink as one line.

use culaunch_protocol::event::{self, How, SearchStep};
use culaunch_protocol::json::Writer;

use crate::clock;
use crate::config::Config;
use crate::sink;

/// Room for a load event with two full-length paths and a request.
const LINE: usize = 12 * 1024;
/// What `process_start` leaves free for the fields after `argv`.
const AFTER_ARGV: usize = 2048;
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// A `load` event, before formatting.
pub struct Load<'a> {
    pub request: Option<&'a [u8]>,
    pub how: How,
    pub caller: Option<&'a [u8]>,
    pub path: &'a [u8],
    pub soname: Option<&'a [u8]>,
    pub family: Option<&'static str>,
    pub step: Option<SearchStep>,
    pub lmid: i64,
    pub dur_ns: u64,
    pub pinned: bool,
    pub redirected_from: Option<&'a [u8]>,
}

pub fn process_start(config: &Config, forked: bool) {
    let mut buf = [0u8; LINE];
    let mut w = header(&mut buf, config, event::PROCESS_START);
    let mut exe = [0u8; PATH_MAX];
    w.opt_str("exe", self_exe(&mut exe));
    let mut cmdline = [0u8; 8192];
    let (args, whole) = read_file(c"/proc/self/cmdline", &mut cmdline);
    let args = args.strip_suffix(b"\0").unwrap_or(args);
    let complete = w.str_array("argv", args.split(|&b| b == 0), AFTER_ARGV);
    if !(complete && whole) {
        w.bool("argv_truncated", true);
    }
    w.begin_object("env");
    for (k, v) in &config.env {
        w.str(k, v);
    }
    w.end_object();
    if forked {
        w.bool("forked", true);
    }
    emit(config, w);
}

pub fn load(config: &Config, l: &Load<'_>) {
    let mut buf = [0u8; LINE];
    let mut w = header(&mut buf, config, event::LOAD);
    w.opt_str("request", l.request.or(Some(l.path)))
        .str("how", l.how.as_str().as_bytes())
        .opt_str("caller", l.caller)
        .str("path", l.path)
        .opt_str("soname", l.soname)
        .bool("cuda", l.family.is_some())
        .opt_str("family", l.family.map(str::as_bytes))
        .bool("pinned", l.pinned)
        .opt_str("redirected_from", l.redirected_from)
        .bool("ok", true)
        .null("error")
        .u64("dur_us", l.dur_ns / 1000)
        .opt_str("search", l.step.map(|s| s.as_str().as_bytes()))
        .i64("lmid", l.lmid);
    emit(config, w);
}

pub fn conflict(config: &Config, family: &str, first: &[u8], second: &[u8]) {
    let mut buf = [0u8; LINE];
    let mut w = header(&mut buf, config, event::CONFLICT);
    w.str("family", family.as_bytes());
    w.str_array("paths", [first, second].into_iter(), 0);
    emit(config, w);
}

/// A request that mapped nothing because no candidate existed: what
/// `dlerror()` said, in glibc's words for that case.
pub fn load_failed(config: &Config, request: &[u8], how: How, caller: Option<&[u8]>, family: Option<&'static str>) {
    let mut buf = [0u8; LINE];
    let mut w = header(&mut buf, config, event::LOAD);
    let mut error = [0u8; PATH_MAX + 64];
    let error = join(&mut error, &[request, b": cannot open shared object file: No such file or directory"]);
    w.str("request", request)
        .str("how", how.as_str().as_bytes())
        .opt_str("caller", caller)
        .null("path")
        .null("soname")
        .bool("cuda", family.is_some())
        .opt_str("family", family.map(str::as_bytes))
        .bool("pinned", false)
        .null("redirected_from")
        .bool("ok", false)
        .str("error", error)
        .null("search");
    emit(config, w);
}

fn join<'b>(buf: &'b mut [u8], parts: &[&[u8]]) -> &'b [u8] {
    let mut len = 0;
    for part in parts {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    &buf[..len]
}

/// A request for another major of a pinned library (not redirected).
pub fn conflict_with_pin(config: &Config, family: &str, pin_path: &[u8], request: &[u8], caller: Option<&[u8]>) {
    let mut buf = [0u8; LINE];
    let mut w = header(&mut buf, config, event::CONFLICT);
    w.str("family", family.as_bytes());
    w.str_array("paths", [pin_path, request].into_iter(), 0);
    w.str("request", request).opt_str("caller", caller);
    w.str("reason", b"another major of a pinned library");
    emit(config, w);
}

pub fn deny(config: &Config, request: &[u8], caller: Option<&[u8]>, reason: &[u8]) {
    let mut buf = [0u8; LINE];
    let mut w = header(&mut buf, config, event::DENY);
    w.str("request", request).opt_str("caller", caller).str("reason", reason);
    emit(config, w);
}

pub fn process_exit(config: &Config, status: i32) {
    let mut buf = [0u8; 1024];
    let mut w = header(&mut buf, config, event::PROCESS_EXIT);
    w.i64("status", i64::from(status));
    emit(config, w);
}

fn header<'b>(buf: &'b mut [u8], config: &Config, name: &str) -> Writer<'b> {
    let mut w = Writer::new(buf);
    // SAFETY: getpid and getppid cannot fail.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
    w.u64("v", u64::from(event::VERSION))
        .str("ts", &clock::rfc3339_micros(clock::now_realtime_ns()))
        .i64("pid", i64::from(pid))
        .i64("ppid", i64::from(ppid))
        .str("host", &config.host)
        .str("event", name.as_bytes());
    w
}

fn emit(config: &Config, w: Writer<'_>) {
    match w.finish() {
        Some(line) => sink::write_line(config, line),
        None => sink::warn_once(config, b"an event did not fit in its buffer and was dropped"),
    }
}

/// The running executable, from the kernel.
pub fn self_exe(buf: &mut [u8]) -> Option<&[u8]> {
    // SAFETY: `buf` is writable for its length; readlink does not terminate it.
    let n = unsafe { libc::readlink(c"/proc/self/exe".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n > 0).then(|| &buf[..n as usize])
}

/// Canonical path of `path` (symlinks resolved), or `path` itself when that
/// fails (a file deleted since it was mapped).
pub fn canonical<'b>(path: &'b [u8], buf: &'b mut [u8; PATH_MAX]) -> &'b [u8] {
    let mut c_path = [0u8; PATH_MAX];
    if path.len() >= c_path.len() {
        return path;
    }
    c_path[..path.len()].copy_from_slice(path);
    // SAFETY: `c_path` is NUL-terminated; `buf` holds PATH_MAX bytes as realpath requires.
    let ok = unsafe { !libc::realpath(c_path.as_ptr().cast(), buf.as_mut_ptr().cast()).is_null() };
    if !ok {
        return path;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
    &buf[..len]
}

/// Reads a small file whole, or as much as fits; the flag says whether it all fit.
fn read_file<'b>(path: &core::ffi::CStr, buf: &'b mut [u8]) -> (&'b [u8], bool) {
    // SAFETY: NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return (&buf[..0], false);
    }
    let mut len = 0;
    let mut whole = false;
    while len < buf.len() {
        // SAFETY: the destination lies inside `buf`.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            whole = n == 0;
            break;
        }
        len += n as usize;
    }
    // SAFETY: closing what we opened.
    unsafe { libc::close(fd) };
    (&buf[..len], whole)
}
