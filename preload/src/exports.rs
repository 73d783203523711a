//! The rtld-audit entry points (`man 7 rtld-audit`). Each one is thin: it
//! catches panics, takes the state without waiting, and hands the loader's
//! report to the tracker and the event writer.
//!
//! Only the hooks culaunch needs are defined: no `la_symbind*` or
//! `la_plt*`, which would put this module on every PLT call of the program.

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::sync::atomic::{AtomicBool, Ordering};
use std::panic::{catch_unwind, AssertUnwindSafe};

use culaunch_protocol::catalogue;
use culaunch_protocol::event::How;

use crate::config::{self, Config, Pin};
use crate::decide::{decide, Decision, Refusal};
use crate::events::{self, Load};
use crate::libc_hooks;
use crate::linkmap::{self, LinkMap};
use crate::lock::TryLock;
use crate::objects::{stem_hash, Entry, Objects};
use crate::tracker::{Tracker, Unanswered, LA_SER_ORIG};
use crate::{clock, sink};

/// The highest rtld-audit interface version this module implements; the
/// hooks it uses have the same signatures in versions 1 and 2.
const LAV_SUPPORTED: c_uint = 2;
const PATH_MAX: usize = libc::PATH_MAX as usize;

struct State {
    tracker: Tracker,
    objects: Objects,
    /// The current request was refused: its candidate paths are refused too.
    refusing: bool,
    /// The refusal text handed to the loader, which makes it dlerror()'s.
    refusal: [u8; REFUSAL_CAP],
}

const REFUSAL_CAP: usize = 2 * PATH_MAX;

static STATE: TryLock<State> = TryLock::new(State {
    tracker: Tracker::new(),
    objects: Objects::new(),
    refusing: false,
    refusal: [0; REFUSAL_CAP],
});

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
        let Some(config) = config::init() else {
            return 0;
        };
        // Panics are caught and reported by `guarded`; the default hook would
        // print a backtrace banner on the program's stderr.
        std::panic::set_hook(Box::new(|_| {}));
        events::process_start(config, false);
        negotiate(version)
    })
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_objsearch(name: *const c_char, cookie: *mut usize, flag: c_uint) -> *mut c_char {
    // On any internal error the loader searches exactly as without culaunch.
    guarded(name.cast_mut(), || {
        let now = clock::now_monotonic_ns();
        let (Some(mut st), false) = (STATE.try_lock(), name.is_null()) else { return name.cast_mut() };
        // SAFETY: the loader passes a NUL-terminated name and a valid cookie.
        let (request, loader) = unsafe { (CStr::from_ptr(name).to_bytes(), cookie.as_ref().copied().unwrap_or(0)) };
        let Some(config) = config::get() else { return name.cast_mut() };
        if flag == LA_SER_ORIG {
            if let Some(u) = st.tracker.take_unanswered() {
                report_unanswered(config, &u);
            }
        }
        st.tracker.on_search(request, flag, loader, now);
        if flag != LA_SER_ORIG {
            return if st.refusing { core::ptr::null_mut() } else { name.cast_mut() };
        }
        st.refusing = false;
        if config.pins.is_empty() && !config.strict {
            return name.cast_mut();
        }
        let pins = config.pins.iter().map(|p| p.soname.as_slice());
        let decision = match decide(request, pins, config.strict, false) {
            Decision::Redirect(n) if is_pin_path(request, &config.pins[n]) => Decision::Pass,
            d => d,
        };
        match decision {
            Decision::Pass => name.cast_mut(),
            Decision::Redirect(n) => {
                st.tracker.mark_redirected();
                config.pins[n].path.as_ptr().cast_mut()
            }
            Decision::OtherMajor(n) => {
                let mut caller_buf = [0u8; PATH_MAX];
                let caller = path_of_loader(loader, &mut caller_buf);
                let family = catalogue::family(request).unwrap_or("");
                events::conflict_with_pin(config, family, config.pins[n].path.as_bytes(), request, caller);
                name.cast_mut()
            }
            Decision::Refuse(why) => refuse(config, &mut st, request, loader, why),
        }
    })
}

/// Refuses `request` under `--strict`: the loader gets a name that starts
/// with "culaunch:" and cannot be opened, so dlerror() reads
/// "culaunch: … : cannot open shared object file". Before `main` there is
/// no caller to tell: the process ends with status 125 and the same words.
fn refuse(config: &Config, st: &mut State, request: &[u8], loader: usize, why: Refusal) -> *mut c_char {
    let mut caller_buf = [0u8; PATH_MAX];
    let caller = path_of_loader(loader, &mut caller_buf);
    let mut rule = [0u8; PATH_MAX];
    let rule = match why {
        Refusal::NotPinned => concat_into(&mut rule, &[b"--strict: no pin or lock entry allows it"]),
        Refusal::OtherMajor(n) => concat_into(
            &mut rule,
            &[
                b"--strict: another major of pinned ",
                &config.pins[n].soname,
                b" (",
                config.pins[n].path.as_bytes(),
                b")",
            ],
        ),
    };
    events::deny(config, request, caller, rule);
    let n = {
        let parts: [&[u8]; 6] =
            [b"culaunch: refused ", request, b", requested by ", caller.unwrap_or(b"?"), b": ", rule];
        // Keep the last byte for the NUL.
        let cap = st.refusal.len() - 1;
        concat_into(&mut st.refusal[..cap], &parts).len()
    };
    st.refusal[n] = 0;
    if !st.tracker.started() {
        let mut line = [0u8; REFUSAL_CAP + 1];
        let text = concat_into(&mut line, &[&st.refusal[..n], b"\n"]);
        // SAFETY: writing a valid buffer to stderr, then ending the process
        // as SPEC.md says for a refusal before main.
        unsafe {
            libc::write(2, text.as_ptr().cast(), text.len());
            libc::_exit(125);
        }
    }
    st.refusing = true;
    st.refusal.as_mut_ptr().cast()
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
fn is_pin_path(request: &[u8], pin: &Pin) -> bool {
    request.contains(&b'/') && file_id(request).is_some_and(|id| id == (pin.dev, pin.ino))
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
    guarded((), || {
        let now = clock::now_monotonic_ns();
        let (Some(config), Some(mut st)) = (config::get(), STATE.try_lock()) else {
            return;
        };
        let st = &mut *st;
        let arrival = st.tracker.on_open(lmid, now);
        // SAFETY: the loader just mapped `map`.
        let (name, soname) = unsafe { (linkmap::name(map), linkmap::soname(map)) };
        // The program itself (""), and the vDSO (no file), are not loads.
        if !name.contains(&b'/') {
            return;
        }
        let family = soname.and_then(catalogue::family).or_else(|| catalogue::family(name));
        // A library that needs CUDA libraries is reported too: the
        // diagnoses compare what it was shipped with and what it got.
        // SAFETY: the loader just mapped `map`.
        let requester_of_cuda = || unsafe { linkmap::any_needed(map, |n| catalogue::family(n).is_some()) };
        if family.is_none() && !config.all_libs && !requester_of_cuda() {
            return;
        }
        let mut path_buf = [0u8; PATH_MAX];
        let path = events::canonical(name, &mut path_buf);
        let mut caller_buf = [0u8; PATH_MAX];
        let caller = path_of_loader(arrival.loader, &mut caller_buf);
        let entry = entry_for(map as usize, path, soname.unwrap_or(name), family.is_some());
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
        events::load(config, &load);
        if let (Some(family), Some(other)) = (family, st.objects.conflicting(&entry)) {
            let mut other_buf = [0u8; PATH_MAX];
            // SAFETY: tracked objects are live: la_objclose removes them.
            let other_path = events::canonical(unsafe { linkmap::name(other.map as *const LinkMap) }, &mut other_buf);
            events::conflict(config, family, other_path, path);
        }
        if !st.objects.add(entry) {
            sink::warn_once(config, b"too many objects to track; conflicts may be missed");
        }
    });
    // No LA_FLG_BINDTO/BINDFROM: culaunch needs no symbol-binding callbacks.
    0
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_objclose(cookie: *mut usize) -> c_uint {
    guarded((), || {
        // SAFETY: the cookie slot is the one la_objopen filled.
        let map = unsafe { cookie.as_ref().copied().unwrap_or(0) };
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
        if let Some(mut st) = STATE.try_lock() {
            st.tracker.on_preinit();
        }
        // SAFETY: la_preinit's cookie is the main program's, set in la_objopen.
        let main_map = unsafe { cookie.as_ref().copied().unwrap_or(0) } as *mut LinkMap;
        // SAFETY: `main_map` is the live main program.
        unsafe { libc_hooks::install(main_map, on_exit, after_fork_in_child) };
    })
}

/// Registered with the program's libc: runs at `exit`, with its status.
extern "C" fn on_exit(status: c_int, _arg: *mut c_void) {
    guarded((), || {
        let Some(config) = config::get() else { return };
        if let Some(mut st) = STATE.try_lock() {
            if let Some(u) = st.tracker.take_unanswered() {
                report_unanswered(config, &u);
            }
        }
        events::process_exit(config, status);
    })
}

/// Reports a request that mapped nothing, when it plainly failed: the last
/// place the loader tried (or the path asked for) does not exist. Anything
/// else (an object already mapped under another name, a candidate of another
/// class) is not claimed as a failure.
fn report_unanswered(config: &Config, u: &Unanswered<'_>) {
    let family = catalogue::family(u.request);
    if family.is_none() && !config.all_libs {
        return;
    }
    if file_id(u.last_candidate.unwrap_or(u.request)).is_some() {
        return;
    }
    let mut caller_buf = [0u8; PATH_MAX];
    let caller = path_of_loader(u.loader, &mut caller_buf);
    events::load_failed(config, u.request, u.how, caller, family);
}

/// Registered with the program's libc: runs in the child after `fork`.
extern "C" fn after_fork_in_child() {
    guarded((), || {
        let Some(config) = config::get() else { return };
        // A parent thread that held the state is gone in the child.
        STATE.force_unlock_after_fork();
        let Some(mut st) = STATE.try_lock() else {
            return;
        };
        st.tracker.reset_after_fork();
        events::process_start(config, true);
        for e in st.objects.iter() {
            inherited(config, e);
        }
    })
}

/// The child of a fork starts with its parent's objects mapped: report them as
/// this process's too.
fn inherited(config: &Config, e: &Entry) {
    // SAFETY: tracked objects are live.
    let (name, soname) = unsafe {
        let map = e.map as *const LinkMap;
        (linkmap::name(map), linkmap::soname(map))
    };
    let mut path_buf = [0u8; PATH_MAX];
    let path = events::canonical(name, &mut path_buf);
    let family = soname.and_then(catalogue::family).or_else(|| catalogue::family(name));
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
    events::load(config, &load);
}

fn is_pinned(config: &Config, e: &Entry) -> bool {
    config.pins.iter().any(|p| (p.dev, p.ino) == (e.dev, e.ino) && p.dev != 0)
}

fn entry_for(map: usize, path: &[u8], name: &[u8], cuda: bool) -> Entry {
    let (dev, ino) = file_id(path).unwrap_or((0, map as u64));
    Entry { map, dev, ino, cuda_stem: cuda.then(|| stem_hash(catalogue::stem(name))) }
}

fn file_id(path: &[u8]) -> Option<(u64, u64)> {
    let mut c_path = [0u8; PATH_MAX];
    c_path.get_mut(..path.len())?.copy_from_slice(path);
    if path.len() >= PATH_MAX {
        return None;
    }
    // SAFETY: plain-data out-pointer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: NUL-terminated path.
    (unsafe { libc::stat(c_path.as_ptr().cast(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
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
        return events::self_exe(buf);
    }
    let mut canon = [0u8; PATH_MAX];
    let path = events::canonical(name, &mut canon);
    let n = path.len().min(buf.len());
    buf[..n].copy_from_slice(&path[..n]);
    Some(&buf[..n])
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
