//! The rtld-audit entry points (`man 7 rtld-audit`), and nothing else. Each
//! one is thin: it catches panics, decodes the loader's arguments (a link
//! map into an [`Object`] view, once), calls `callbacks.rs`, and hands the
//! answer back in the loader's terms.
//!
//! Only the hooks culaunch needs are defined: `la_symbind64` sees each
//! symbol bound to the program's libc (and libdl) once (to watch `exec*`
//! and `posix_spawn*`, see `exec.rs`; the uid setters, `identity.rs`;
//! `_exit`, `quick_exit.rs`; and to read `dlerror`'s text, `dlerror.rs`);
//! no `la_plt*`, which would put this module
//! on every PLT call of the program.
//!
//! Stack: these functions run on whatever thread called the loader, which
//! may have a small stack. Large buffers live in the state (`Scratch`), and
//! the rare paths are kept out of line.

use core::ffi::{c_char, c_uint, CStr};
use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::callbacks::{self, SearchAnswer};
use crate::global::PROCESS;
use crate::linkmap::{self, LinkMap, Object};
use crate::{config, dlclose, dlerror, dlmopen, exec, identity, quick_exit, sink};

/// The highest rtld-audit interface version this module implements; the
/// hooks it uses have the same signatures in versions 1 and 2.
const LAV_SUPPORTED: c_uint = 2;

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
        callbacks::process_started(config);
        negotiate(version)
    })
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_objsearch(name: *const c_char, cookie: *mut usize, flag: c_uint) -> *mut c_char {
    // On any internal error the loader searches exactly as without culaunch.
    guarded(name.cast_mut(), || {
        let Some(config) = config::get() else { return name.cast_mut() };
        if name.is_null() {
            return name.cast_mut();
        }
        // SAFETY: the loader passes a NUL-terminated name and a valid cookie.
        let (request, loader) = unsafe { (CStr::from_ptr(name), cookie.as_ref().copied().unwrap_or(0)) };
        match callbacks::search(config, request, flag, loader) {
            SearchAnswer::AsAsked => name.cast_mut(),
            SearchAnswer::Skip => core::ptr::null_mut(),
            SearchAnswer::Instead(other) => other.cast_mut(),
        }
    })
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_activity(cookie: *mut usize, flag: c_uint) {
    // SAFETY: the loader passes the cookie slot of the namespace's first
    // object (set in la_objopen to its link map, when it was opened here).
    let head = unsafe { cookie.as_ref().copied().unwrap_or(0) };
    guarded((), || callbacks::activity(flag, head))
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
    // The loader opens the program itself first, before anything of its
    // namespace (rtld.c: main map, then ld.so, then the vDSO).
    if lmid == 0 {
        let _ = PROCESS.main_map.compare_exchange(0, map as usize, Ordering::Relaxed, Ordering::Relaxed);
    }
    guarded(0, || {
        let Some(config) = config::get() else { return 0 };
        // SAFETY: the loader just mapped `map`; the view lives for this call.
        let object = unsafe { Object::decode(map) };
        callbacks::opened(config, &object, lmid);
        callbacks::bind_flags(&object, lmid)
    })
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_symbind64(
    sym: *mut linkmap::Elf64Sym,
    _ndx: c_uint,
    _refcook: *mut usize,
    _defcook: *mut usize,
    flags: *mut c_uint,
    symname: *const c_char,
) -> usize {
    /// <link.h>: the binding answers a `dlsym` call.
    const LA_SYMB_DLSYM: c_uint = 0x08;
    // SAFETY: the loader passes the symbol it is binding, and its flags.
    let (real, dlsym) = unsafe {
        (sym.as_ref().map_or(0, |s| s.st_value as usize), flags.as_ref().is_some_and(|f| f & LA_SYMB_DLSYM != 0))
    };
    if symname.is_null() {
        return real;
    }
    // SAFETY: a NUL-terminated symbol name.
    let name = unsafe { CStr::from_ptr(symname) };
    let real = guarded(real, || {
        let bytes = name.to_bytes();
        dlerror::bind(bytes, real)
            .or_else(|| dlclose::bind(bytes, real, dlsym))
            .or_else(|| dlmopen::bind(bytes, real, dlsym))
            .or_else(|| quick_exit::bind(bytes, real))
            .unwrap_or_else(|| exec::bind(name, real))
    });
    // The uid setters (each bind answers only for its own names).
    guarded(real, || identity::bind(name, real))
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_objclose(cookie: *mut usize) -> c_uint {
    guarded((), || {
        // SAFETY: the cookie slot is the one la_objopen filled.
        callbacks::closed(unsafe { cookie.as_ref().copied().unwrap_or(0) });
    });
    0
}

/// # Safety
/// Called by the dynamic loader only, with the pointers rtld-audit defines.
#[no_mangle]
pub unsafe extern "C" fn la_preinit(cookie: *mut usize) {
    guarded((), || {
        let Some(config) = config::get() else { return };
        // SAFETY: la_preinit's cookie is the main program's, set in
        // la_objopen to its live link map.
        unsafe { callbacks::preinit(config, cookie.as_ref().copied().unwrap_or(0) as *mut LinkMap) }
    })
}

/// Runs `f`; a panic disables the module for this process, says so once, and
/// yields `default`. Nothing unwinds into the loader (or into the program's
/// libc, for the exit and fork handlers).
pub fn guarded<T>(default: T, f: impl FnOnce() -> T) -> T {
    if PROCESS.disabled.load(Ordering::Relaxed) {
        return default;
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            PROCESS.disabled.store(true, Ordering::Relaxed);
            if let Some(config) = config::get() {
                sink::warn_lost(config, b"internal error in the audit module; tracing is off in this process");
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
