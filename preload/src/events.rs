//! Formats the trace events (docs/trace-schema.md) into a caller's buffer
//! (the state's scratch space: nothing large on the stack of whatever thread
//! the loader runs on) and hands each to the sink as one line.

use culaunch_protocol::event::{self, FailReason, How, SearchStep};
use culaunch_protocol::json::Writer;

use crate::config::Config;
use crate::paths::{self, PATH_MAX};
use crate::sink;
use crate::{clock, dlerror};

/// Room for a load event with three full-length paths.
pub const LINE: usize = 16 * 1024;
/// What `process_start` leaves free for the fields after `argv`.
const AFTER_ARGV: usize = 2048;

/// Buffers for formatting events and resolving paths; lives in the module's
/// state, used under its lock.
pub struct Scratch {
    /// The event being formatted.
    pub line: [u8; LINE],
    /// The path of the object an event is about (also: the executable).
    pub object: [u8; PATH_MAX],
    /// The path of the object that asked for it.
    pub caller: [u8; PATH_MAX],
    /// A second object's path (the other copy in a conflict), or the rule
    /// text of a refusal.
    pub other: [u8; PATH_MAX],
    /// /proc/self/cmdline, for `argv`.
    pub cmdline: [u8; 8192],
}

impl Scratch {
    pub const fn new() -> Scratch {
        Scratch {
            line: [0; LINE],
            object: [0; PATH_MAX],
            caller: [0; PATH_MAX],
            other: [0; PATH_MAX],
            cmdline: [0; 8192],
        }
    }
}

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
    /// The mapped file's (st_dev, st_ino): a file put in its place later
    /// is another file, whatever its path.
    pub file: Option<(u64, u64)>,
}

pub fn process_start(config: &Config, s: &mut Scratch, forked: bool) {
    let mut w = header(&mut s.line, config, event::PROCESS_START);
    w.opt_str("exe", paths::self_exe(&mut s.object));
    let (args, whole) = paths::read_small_file(c"/proc/self/cmdline", &mut s.cmdline);
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
    let id = &config.identity;
    for (key, value) in
        [("rank", id.rank), ("local_rank", id.local_rank), ("world_size", id.world_size), ("node", id.node)]
    {
        if let Some(v) = value {
            w.u64(key, u64::from(v));
        }
    }
    if forked {
        w.bool("forked", true);
    }
    emit(config, w);
}

pub fn load(config: &Config, line: &mut [u8], l: &Load<'_>) {
    let mut w = header(line, config, event::LOAD);
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
    if let Some((dev, ino)) = l.file {
        w.begin_object("file").u64("dev", dev).u64("ino", ino).end_object();
    }
    emit(config, w);
}

/// Where a failed load's `error` comes from.
pub enum Error<'a> {
    /// The text `dlerror` returned to the program.
    Said(&'a [u8]),
    /// glibc's words when no file answers this name.
    NotFound(&'a [u8]),
    /// The loader's words for a preload entry found nowhere, from
    /// `LD_PRELOAD` or `/etc/ld.so.preload`.
    PreloadNotFound {
        request: &'a [u8],
        from: &'a [u8],
    },
    Unknown,
}

/// A `load` event with `ok:false`: a request that mapped nothing, or a load
/// whose objects were mapped and then unmapped (`path` and `unmapped`).
pub struct Failed<'a, U> {
    pub request: &'a [u8],
    pub how: How,
    pub caller: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub soname: Option<&'a [u8]>,
    pub family: Option<&'static str>,
    pub error: Error<'a>,
    pub reason: FailReason,
    pub symbol: Option<&'a [u8]>,
    pub version: Option<&'a [u8]>,
    pub required_by: Option<&'a [u8]>,
    pub dur_ns: u64,
    pub lmid: i64,
    /// The batch's other reported objects, unmapped with it.
    pub unmapped: U,
}

impl<'a> Failed<'a, core::iter::Empty<&'a [u8]>> {
    /// A request that mapped nothing: no file, no symbol, no time spent.
    pub fn nothing_mapped(
        request: &'a [u8],
        how: How,
        caller: Option<&'a [u8]>,
        family: Option<&'static str>,
        error: Error<'a>,
        reason: FailReason,
    ) -> Self {
        Failed {
            request,
            how,
            caller,
            path: None,
            soname: None,
            family,
            error,
            reason,
            symbol: None,
            version: None,
            required_by: None,
            dur_ns: 0,
            lmid: 0,
            unmapped: core::iter::empty(),
        }
    }
}

pub fn load_failed<'u>(config: &Config, line: &mut [u8], f: Failed<'_, impl Iterator<Item = &'u [u8]>>) {
    let mut w = header(line, config, event::LOAD);
    w.str("request", f.request)
        .str("how", f.how.as_str().as_bytes())
        .opt_str("caller", f.caller)
        .opt_str("path", f.path)
        .opt_str("soname", f.soname)
        .bool("cuda", f.family.is_some())
        .opt_str("family", f.family.map(str::as_bytes))
        .bool("pinned", false)
        .null("redirected_from")
        .bool("ok", false);
    match f.error {
        Error::Said(text) => w.str("error", text),
        Error::NotFound(name) => w.str_concat("error", &dlerror::not_found_parts(name)),
        Error::PreloadNotFound { request, from } => {
            w.str_concat("error", &dlerror::preload_not_found_parts(request, from))
        }
        Error::Unknown => w.null("error"),
    };
    w.str("reason", f.reason.as_str().as_bytes())
        .opt_str("symbol", f.symbol)
        .opt_str("version", f.version)
        .opt_str("required_by", f.required_by)
        .u64("dur_us", f.dur_ns / 1000)
        .null("search")
        .i64("lmid", f.lmid);
    // What does not fit is left out: the line stays valid.
    w.str_array("unmapped", f.unmapped, 64);
    emit(config, w);
}

pub fn conflict(config: &Config, line: &mut [u8], family: &str, first: &[u8], second: &[u8]) {
    let mut w = header(line, config, event::CONFLICT);
    w.str("family", family.as_bytes());
    w.str_array("paths", [first, second].into_iter(), 0);
    emit(config, w);
}

/// A request for another major of a pinned library (not redirected).
pub fn conflict_with_pin(
    config: &Config,
    line: &mut [u8],
    family: &str,
    pin_path: &[u8],
    request: &[u8],
    caller: Option<&[u8]>,
) {
    let mut w = header(line, config, event::CONFLICT);
    w.str("family", family.as_bytes());
    w.str_array("paths", [pin_path, request].into_iter(), 0);
    w.str("request", request).opt_str("caller", caller);
    w.str("reason", b"another major of a pinned library");
    emit(config, w);
}

pub fn deny(config: &Config, line: &mut [u8], request: &[u8], caller: Option<&[u8]>, reason: &[u8]) {
    let mut w = header(line, config, event::DENY);
    w.str("request", request).opt_str("caller", caller).str("reason", reason);
    emit(config, w);
}

/// Runs at exit, outside the module's lock: a small buffer of its own.
pub fn process_loaded(config: &Config) {
    let mut buf = [0u8; 512];
    let w = header(&mut buf, config, event::PROCESS_LOADED);
    emit(config, w);
}

pub fn process_exit(config: &Config, status: i32) {
    let mut buf = [0u8; 512];
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
        None => sink::warn_lost(config, b"an event did not fit in its buffer and was dropped"),
    }
}
