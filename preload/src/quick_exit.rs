//! A process that ends through `_exit` or `_Exit` (Python's `os._exit`,
//! which multiprocessing and DataLoader workers use; a forked child after
//! its work) runs no exit handler, so a failed load it never asked
//! `dlerror` about would leave the trace without its `ok:false` event:
//! the trace would say the library is loaded. The program's calls to these
//! two reach a wrapper here through `la_symbind64`, as the `exec*` calls do
//! (`exec.rs`); the wrapper writes what is pending, then calls the real
//! function.
//!
//! `exit` needs no wrapper: the handler registered at `la_preinit` runs
//! then. Not seen: a process killed by a signal, or ending by the raw
//! system call.

use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The real `_exit` and `_Exit`, stored by `bind` before the wrapper is
/// handed out.
static REAL: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

type ExitFn = extern "C" fn(c_int) -> !;

/// For `la_symbind64`: the address to bind `name` to, when it is `_exit`
/// or `_Exit`.
pub fn bind(name: &[u8], real: usize) -> Option<usize> {
    let i = match name {
        b"_exit" => 0,
        b"_Exit" => 1,
        _ => return None,
    };
    if real == 0 {
        return None;
    }
    REAL[i].store(real, Ordering::Relaxed);
    Some(if i == 0 { exit_now as *const () as usize } else { exit_now_c99 as *const () as usize })
}

extern "C" fn exit_now(status: c_int) -> ! {
    end(0, status)
}

extern "C" fn exit_now_c99(status: c_int) -> ! {
    end(1, status)
}

fn end(i: usize, status: c_int) -> ! {
    crate::callbacks::before_program_ends();
    let address = REAL[i].load(Ordering::Relaxed);
    if address != 0 {
        // SAFETY: the address the loader bound this very symbol to.
        let real = unsafe { core::mem::transmute::<usize, ExitFn>(address) };
        real(status);
    }
    // SAFETY: ends the process, as the real function would have (this
    // namespace's `_exit` is the same system call).
    unsafe { libc::_exit(status) }
}
