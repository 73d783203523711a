//! The rtld-audit entry points (`man 7 rtld-audit`). Each one is thin: it
//! catches panics, and hands the loader's report to the tracker, the pin
//! decision and the event writer.
//!
//! Only the hooks culaunch needs are defined: `la_symbind64` sees each
//! symbol bound to the program's libc once (to watch `exec*` and
//! `posix_spawn*`, see `exec.rs`); no `la_plt*`, which would put this module
//! on every PLT call of the program.
//!
//! Stack: these functions run on whatever thread called the loader, which
//! may have a small stack. Large buffers live in the state (`Scratch`), and
//! the rare paths are kept out of line.

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::sync::atomic::{AtomicBool, Ordering};
use std::panic::{catch_unwind, AssertUnwindSafe};

use culaunch_protocol::catalogue;
use culaunch_protocol::event::How;

use crate::config::{self, Config, Pin};
use crate::decide::{decide, Decision, Refusal};
use crate::events::{self, Load, Scratch};
use crate::linkmap::{self, LinkMap};
use crate::lock::TryLock;
use crate::objects::{stem_hash, Entry, Objects};
use crate::paths::{self, PATH_MAX};
use crate::tracker::{Tracker, Unanswered, LA_SER_ORIG};
use crate::{clock, sink};
use crate::{exec, libc_hooks};

/// The highest rtld-audit interface version this module implements; the
/// hooks it uses have the same signatures in versions 1 and 2.
const LAV_SUPPORTED: c_uint = 2;

/// Everything that changes. Taken only by the loader's callbacks (which the
/// loader runs one at a time, under its own lock) and by the fork-child
/// handler (alone in the child, after reclaiming it): the try-lock never
/// fails in practice, and where it would, an event is lost, never a pin.
struct State {
    tracker: Tracker,
    objects: Objects,
    scratch: Scratch,
}

static STATE: TryLock<State> =
    TryLock::new(State { tracker: Tracker::new(), objects: Objects::new(), scratch: Scratch::new() });

/// The refusal handed to the loader, which makes it dlerror()'s text; used
/// only inside `la_objsearch`, which the loader serializes.
const REFUSAL_CAP: usize = 2 * PATH_MAX;
static REFUSAL: TryLock<[u8; REFUSAL_CAP]> = TryLock::new([0; REFUSAL_CAP]);
/// The current request was refused: its candidate paths are refused too.
static REFUSING: AtomicBool = AtomicBool::new(false);
/// `la_preinit` has run: a refusal no longer ends the process.
static STARTED: AtomicBool = AtomicBool::new(false);
/// Set after an internal error: the module then only passes through.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// The version to answer the loader's offer with: ours, or the loader's if it
/// is older. 0 turns auditing off.
pub fn negotiate(offered: c_uint) -> c_uint {
    offered.min(LAV_SUPPORTED)
}

#[no_mangle]
pub extern "C" fn la_version(version: c_uint) -> c_uint {
    guarded(0, || {
        // Without culaunch's configuration (LD_AUDIT inherited by a process
        // whose environment lost the rest) the module unloads itself.
        let Some(config) = config::init() else { return 0 };
        // Panics are caught and reported by `guarded`; the default hook would
        // print a backtrace banner on the program's stderr.
        std::panic::set_hook(Box::new(|_| {}));
        if let Some(mut st) = STATE.try_lock() {
            events::process_start(config, &mut st.scratch, false);
        }
        negotiate(version)
    })
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_objsearch(name: *const c_char, cookie: *mut usize, flag: c_uint) -> *mut c_char {
    // On any internal error the loader searches exactly as without culaunch.
    guarded(name.cast_mut(), || {
        if name.is_null() {
            return name.cast_mut();
        }
        // SAFETY: the loader passes a NUL-terminated name and a valid cookie.
        let (request, loader) = unsafe { (CStr::from_ptr(name), cookie.as_ref().copied().unwrap_or(0)) };
        let Some(config) = config::get() else { return name.cast_mut() };
        track_search(config, request.to_bytes(), flag, loader);
        if flag != LA_SER_ORIG {
            return if REFUSING.load(Ordering::Relaxed) { core::ptr::null_mut() } else { name.cast_mut() };
        }
        REFUSING.store(false, Ordering::Relaxed);
        if config.pins.is_empty() && !config.strict {
            return name.cast_mut();
        }
        // Decided from the configuration alone, which never changes: a pin
        // holds whatever the state's lock is doing.
        let pins = config.pins.iter().map(|p| p.soname.as_slice());
        let decision = match decide(request.to_bytes(), pins, config.strict, false) {
            Decision::Redirect(n) if is_pin_path(request, &config.pins[n]) => Decision::Pass,
            d => d,
        };
        match decision {
            Decision::Pass => name.cast_mut(),
            Decision::Redirect(n) => {
                if let Some(mut st) = STATE.try_lock() {
                    st.tracker.mark_redirected();
                }
                config.pins[n].path.as_ptr().cast_mut()
            }
            Decision::OtherMajor(n) => {
                other_major(config, &config.pins[n], request.to_bytes(), loader);
                name.cast_mut()
            }
            Decision::Refuse(why) => refuse(config, request.to_bytes(), loader, why),
        }
    })
}

fn track_search(config: &Config, request: &[u8], flag: c_uint, loader: usize) {
    let now = clock::now_monotonic_ns();
    let Some(mut st) = STATE.try_lock() else { return };
    let State { tracker, scratch, .. } = &mut *st;
    if flag == LA_SER_ORIG {
        if let Some(u) = tracker.take_unanswered() {
            report_unanswered(config, scratch, &u);
        }
    }
    tracker.on_search(request, flag, loader, now);
}

#[inline(never)]
fn other_major(config: &Config, pin: &Pin, request: &[u8], loader: usize) {
    let Some(mut st) = STATE.try_lock() else { return };
    let Scratch { line, b, .. } = &mut st.scratch;
    let caller = path_of_loader(loader, b);
    let family = catalogue::family(request).unwrap_or("");
    events::conflict_with_pin(config, line, family, pin.path.as_bytes(), request, caller);
}

/// Refuses `request` under `--strict`: the loader gets a name that starts
/// with "culaunch:" and cannot be opened, so dlerror() reads
/// "culaunch: … : cannot open shared object file". Before `main` there is
/// no caller to tell: the process ends with status 125 and the same words.
#[inline(never)]
fn refuse(config: &Config, request: &[u8], loader: usize, why: Refusal) -> *mut c_char {
    REFUSING.store(true, Ordering::Relaxed);
    let Some(mut text) = REFUSAL.try_lock() else { return core::ptr::null_mut() };
    let mut st = STATE.try_lock();
    let mut caller_buf = [0u8; 0];
    let (caller, rule_buf, line) = match st.as_deref_mut() {
        Some(State { tracker, scratch, .. }) => {
            tracker.mark_refused();
            let Scratch { line, a, b, .. } = scratch;
            (path_of_loader(loader, b), &mut a[..], &mut line[..])
        }
        None => (None, &mut caller_buf[..], &mut [][..]),
    };
    let rule = match why {
        Refusal::NotPinned => &b"--strict: no pin or lock entry allows it"[..],
        Refusal::OtherMajor(n) => concat_into(
            rule_buf,
            &[
                b"--strict: another major of pinned ",
                &config.pins[n].soname,
                b" (",
                config.pins[n].path.as_bytes(),
                b")",
            ],
        ),
    };
    let parts: [&[u8]; 6] = [b"culaunch: refused ", request, b", requested by ", caller.unwrap_or(b"?"), b": ", rule];
    // Keep the last byte for the NUL.
    let n = concat_into(&mut text[..REFUSAL_CAP - 1], &parts).len();
    text[n] = 0;
    if !line.is_empty() {
        events::deny(config, line, request, caller, rule);
    }
    if !STARTED.load(Ordering::Relaxed) {
        // SAFETY: writing a valid buffer to stderr, then ending the process
        // as SPEC.md says for a refusal before main.
        unsafe {
            libc::write(2, text.as_ptr().cast(), n);
            libc::write(2, b"\n".as_ptr().cast(), 1);
            libc::_exit(125);
        }
    }
    text.as_mut_ptr().cast()
}

/// Copies `parts` one after another into `buf`, cutting what does not fit.
fn concat_into<'b>(buf: &'b mut [u8], parts: &[&[u8]]) -> &'b [u8] {
    let mut len = 0;
    for part in parts {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    &buf[..len]
}

/// A request by path that names the pinned file itself (through any link).
fn is_pin_path(request: &CStr, pin: &Pin) -> bool {
    request.to_bytes().contains(&b'/') && paths::file_id(request).is_some_and(|id| id == (pin.dev, pin.ino))
}

#[no_mangle]
pub extern "C" fn la_activity(_cookie: *mut usize, flag: c_uint) {
    guarded((), || {
        if let Some(mut st) = STATE.try_lock() {
            st.tracker.on_activity(flag);
        }
    })
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_objopen(map: *mut LinkMap, lmid: libc::c_long, cookie: *mut usize) -> c_uint {
    // The cookie identifies the object in later callbacks (it comes back as
    // the requester in la_objsearch). Set it even when disabled.
    // SAFETY: the loader passes a valid cookie slot.
    if let Some(c) = unsafe { cookie.as_mut() } {
        *c = map as usize;
    }
    guarded(0, || {
        record_open(map, lmid);
        bind_flags(map, lmid)
    })
}

/// Symbol-binding callbacks (`la_symbind64`) for bindings from the
/// program's objects to its libc, and nothing else.
fn bind_flags(map: *mut LinkMap, lmid: libc::c_long) -> c_uint {
    const LA_FLG_BINDTO: c_uint = 0x01;
    const LA_FLG_BINDFROM: c_uint = 0x02;
    if lmid != 0 || config::get().is_none() {
        return 0;
    }
    // SAFETY: the loader just mapped `map`.
    match unsafe { linkmap::soname(map) } {
        Some(b"libc.so.6") => LA_FLG_BINDTO,
        _ => LA_FLG_BINDFROM,
    }
}

fn record_open(map: *mut LinkMap, lmid: libc::c_long) {
    {
        let now = clock::now_monotonic_ns();
        let (Some(config), Some(mut st)) = (config::get(), STATE.try_lock()) else { return };
        let State { tracker, objects, scratch } = &mut *st;
        let arrival = tracker.on_open(lmid, now);
        // SAFETY: the loader just mapped `map`.
        let name = unsafe { linkmap::name(map) };
        // The program itself (""), and the vDSO (no file), are not loads.
        if !name.to_bytes().contains(&b'/') {
            return;
        }
        // SAFETY: as above.
        let soname = unsafe { linkmap::soname(map) };
        let family = soname.and_then(catalogue::family).or_else(|| catalogue::family(name.to_bytes()));
        // A library that needs CUDA libraries is reported too: the
        // diagnoses compare what it was shipped with and what it got.
        // SAFETY: as above.
        let requester_of_cuda = || unsafe { linkmap::any_needed(map, |n| catalogue::family(n).is_some()) };
        let untold = family.is_none() && !config.all_libs && !requester_of_cuda();
        // A pin may name a library outside CUDA: with pins, such a load is
        // kept until it is known whether it is a pinned file.
        if untold && config.pins.is_empty() {
            return;
        }
        let Scratch { line, a, b, c, .. } = scratch;
        let resolved = paths::resolve(name, a);
        let (path, id) = match &resolved {
            Some(r) => (r.path, r.id),
            None => (name.to_bytes(), (0, map as u64)),
        };
        let caller = path_of_loader(arrival.loader, b);
        let cuda_stem = family.map(|_| stem_hash(catalogue::stem(soname.unwrap_or(name.to_bytes()))));
        let entry = Entry { map: map as usize, dev: id.0, ino: id.1, cuda_stem };
        if untold && !is_pinned(config, &entry) {
            return;
        }
        let load = Load {
            request: arrival.request,
            how: arrival.how,
            caller,
            path,
            soname,
            family,
            step: arrival.step,
            lmid,
            dur_ns: arrival.dur_ns,
            pinned: is_pinned(config, &entry),
            redirected_from: arrival.redirected_from,
        };
        events::load(config, line, &load);
        if let (Some(family), Some(other)) = (family, objects.conflicting(&entry)) {
            // SAFETY: tracked objects are live: la_objclose removes them.
            let other_name = unsafe { linkmap::name(other.map as *const LinkMap) };
            let other_path = paths::resolve(other_name, c).map(|r| r.path).unwrap_or(other_name.to_bytes());
            events::conflict(config, line, family, other_path, path);
        }
        if !objects.add(entry) {
            sink::warn_once(config, b"too many objects to track; conflicts may be missed");
        }
    }
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_symbind64(
    sym: *mut linkmap::Elf64Sym,
    _ndx: c_uint,
    _refcook: *mut usize,
    _defcook: *mut usize,
    _flags: *mut c_uint,
    symname: *const c_char,
) -> usize {
    // SAFETY: the loader passes the symbol it is binding.
    let real = unsafe { sym.as_ref().map_or(0, |s| s.st_value as usize) };
    if symname.is_null() {
        return real;
    }
    // SAFETY: a NUL-terminated symbol name.
    guarded(real, || exec::bind(unsafe { CStr::from_ptr(symname) }, real))
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_objclose(cookie: *mut usize) -> c_uint {
    guarded((), || {
        // SAFETY: the cookie slot is the one la_objopen filled.
        let map = unsafe { cookie.as_ref().copied().unwrap_or(0) };
        // Under the loader's lock, as every other holder of the state but
        // the fork child: this never misses, so no freed link map stays
        // in the table.
        if let Some(mut st) = STATE.try_lock() {
            st.objects.remove(map);
        }
    });
    0
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_preinit(cookie: *mut usize) {
    guarded((), || {
        if config::get().is_none() {
            return;
        }
        STARTED.store(true, Ordering::Relaxed);
        if let Some(mut st) = STATE.try_lock() {
            st.tracker.on_preinit();
        }
        // SAFETY: la_preinit's cookie is the main program's, set in la_objopen.
        let main_map = unsafe { cookie.as_ref().copied().unwrap_or(0) } as *mut LinkMap;
        // SAFETY: `main_map` is the live main program.
        unsafe {
            libc_hooks::install(main_map, on_exit, after_fork_in_child);
            exec::set_environ(libc_hooks::environ_address(main_map));
        }
    })
}

/// Registered with the program's libc: runs at `exit`, with its status. It
/// stays away from the state: another thread may be inside the loader.
extern "C" fn on_exit(status: c_int, _arg: *mut c_void) {
    guarded((), || {
        if let Some(config) = config::get() {
            events::process_exit(config, status);
        }
    })
}

/// Registered with the program's libc: runs in the child after `fork`.
extern "C" fn after_fork_in_child() {
    guarded((), || {
        let Some(config) = config::get() else { return };
        // A parent thread that held the state is gone in the child.
        STATE.force_unlock_after_fork();
        REFUSAL.force_unlock_after_fork();
        let Some(mut st) = STATE.try_lock() else { return };
        let State { tracker, objects, scratch } = &mut *st;
        tracker.reset_after_fork();
        events::process_start(config, scratch, true);
        for e in objects.iter() {
            inherited(config, scratch, e);
        }
    })
}

/// Reports a request that mapped nothing, when it plainly failed: the last
/// place the loader tried (or the path asked for) does not exist. Anything
/// else (an object already mapped under another name, a candidate of another
/// class) is not claimed as a failure.
#[inline(never)]
fn report_unanswered(config: &Config, s: &mut Scratch, u: &Unanswered<'_>) {
    let family = catalogue::family(u.request);
    if family.is_none() && !config.all_libs {
        return;
    }
    let probe = u.last_candidate.unwrap_or(u.request);
    if paths::c_str(probe, &mut s.a).and_then(paths::file_id).is_some() {
        return;
    }
    let caller = path_of_loader(u.loader, &mut s.b);
    events::load_failed(config, &mut s.line, u.request, u.how, caller, family);
}

/// The child of a fork starts with its parent's objects mapped: report them as
/// this process's too.
#[inline(never)]
fn inherited(config: &Config, s: &mut Scratch, e: &Entry) {
    // SAFETY: tracked objects are live.
    let (name, soname) = unsafe {
        let map = e.map as *const LinkMap;
        (linkmap::name(map), linkmap::soname(map))
    };
    let path = paths::resolve(name, &mut s.a).map(|r| r.path).unwrap_or(name.to_bytes());
    let family = soname.and_then(catalogue::family).or_else(|| catalogue::family(name.to_bytes()));
    let load = Load {
        request: None,
        how: How::Inherited,
        caller: None,
        path,
        soname,
        family,
        step: None,
        lmid: 0,
        dur_ns: 0,
        pinned: is_pinned(config, e),
        redirected_from: None,
    };
    events::load(config, &mut s.line, &load);
}

fn is_pinned(config: &Config, e: &Entry) -> bool {
    config.pins.iter().any(|p| (p.dev, p.ino) == (e.dev, e.ino) && p.dev != 0)
}

/// The path of the requesting object; the main program's link map has an
/// empty name, so it is named by /proc/self/exe.
fn path_of_loader(loader: usize, buf: &mut [u8; PATH_MAX]) -> Option<&[u8]> {
    if loader == 0 {
        return None;
    }
    // SAFETY: cookies are set to live link maps in la_objopen.
    let name = unsafe { linkmap::name(loader as *const LinkMap) };
    if name.is_empty() {
        return paths::self_exe(buf);
    }
    // The canonical path when it resolves, else the name as loaded.
    match paths::resolve(name, buf) {
        Some(r) => Some(r.path),
        None => Some(name.to_bytes()),
    }
}

/// Runs `f`; a panic disables the module for this process, says so once, and
/// yields `default`. Nothing unwinds into the loader.
fn guarded<T>(default: T, f: impl FnOnce() -> T) -> T {
    if DISABLED.load(Ordering::Relaxed) {
        return default;
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            DISABLED.store(true, Ordering::Relaxed);
            if let Some(config) = config::get() {
                sink::warn_once(config, b"internal error in the audit module; tracing is off in this process");
            }
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_never_claims_more_than_either_side() {
        assert_eq!(negotiate(0), 0);
        assert_eq!(negotiate(1), 1);
        assert_eq!(negotiate(2), 2);
        assert_eq!(negotiate(7), LAV_SUPPORTED);
    }
}
