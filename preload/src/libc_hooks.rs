//! Exit and fork notifications from the program's own C library.
//!
//! An audit module lives in a link namespace of its own, with its own copy of
//! libc, so `atexit` or `pthread_atfork` called from here would register with
//! that copy and never fire. Once the program is loaded (`la_preinit`) we look
//! up `on_exit` and `__register_atfork` in the program's namespace, through
//! the main program's link map, and register there.

use core::ffi::{c_int, c_void};

use crate::linkmap::LinkMap;

type OnExitFn = unsafe extern "C" fn(extern "C" fn(c_int, *mut c_void), *mut c_void) -> c_int;
type RegisterAtforkFn = unsafe extern "C" fn(
    Option<extern "C" fn()>,
    Option<extern "C" fn()>,
    Option<extern "C" fn()>,
    *mut c_void,
) -> c_int;

/// # Safety
/// `main_map` must be the main program's link map, as given to `la_preinit`.
pub unsafe fn install(main_map: *mut LinkMap, on_exit: extern "C" fn(c_int, *mut c_void), child: extern "C" fn()) {
    if main_map.is_null() {
        return;
    }
    // dlsym's handle is a link map; the main program's searches its global
    // scope, which holds the program's libc. A dependency's own map would not
    // do: it has no search list until it is dlopened.
    // SAFETY: the handle is the live main map; the names are NUL-terminated.
    let (exit_sym, fork_sym) = unsafe {
        (libc::dlsym(main_map.cast(), c"on_exit".as_ptr()), libc::dlsym(main_map.cast(), c"__register_atfork".as_ptr()))
    };
    if !exit_sym.is_null() {
        // SAFETY: glibc's on_exit has exactly this signature.
        let f: OnExitFn = unsafe { core::mem::transmute::<*mut c_void, OnExitFn>(exit_sym) };
        // SAFETY: the handler is 'static code.
        unsafe { f(on_exit, core::ptr::null_mut()) };
    }
    if !fork_sym.is_null() {
        // SAFETY: glibc's __register_atfork has exactly this signature.
        let f: RegisterAtforkFn = unsafe { core::mem::transmute::<*mut c_void, RegisterAtforkFn>(fork_sym) };
        // SAFETY: a null DSO handle means "never unregister", which fits a
        // module that is never unloaded.
        unsafe { f(None, None, Some(child), core::ptr::null_mut()) };
    }
}

/// The address of the program's `environ` variable (0 if not found).
///
/// # Safety
/// `main_map` must be the main program's link map, as given to `la_preinit`.
pub unsafe fn environ_address(main_map: *mut LinkMap) -> usize {
    if main_map.is_null() {
        return 0;
    }
    // SAFETY: as in `install`.
    unsafe { libc::dlsym(main_map.cast(), c"environ".as_ptr()) as usize }
}
