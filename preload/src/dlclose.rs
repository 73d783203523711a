//! Which threads are inside a `dlclose` of the program's: its calls reach
//! a wrapper here through `la_symbind64` (as `dlerror`'s do), which notes
//! the calling thread while the real `dlclose` runs. A teardown the loader
//! reports from inside one is a close, never a failed `dlopen`, whatever
//! the program did to the library's pages in between. `dlclose` does not
//! depend on who calls it, so wrapping it changes nothing for the program.
//!
//! `dlsym` gets the real `dlclose`, so that the address a program looks
//! up is the one `&dlclose` gives it. Calls that bind to no wrapper (a
//! pointer from `dlsym`, a GOT call under `-fno-plt`, a caller in another
//! namespace, a `-z now` object before glibc 2.35) are not seen; the RELRO
//! test (`relro`) is then all there is.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The real `dlclose` (the program's libc's, or libdl's before glibc
/// 2.34), stored by `bind` before the wrapper is handed out.
static REAL: AtomicUsize = AtomicUsize::new(0);

/// Thread ids of the callers inside the real `dlclose`; 0 is a free slot.
/// More callers at once than slots are not noted (the RELRO test decides
/// for them).
static INSIDE: [AtomicI32; 16] = [const { AtomicI32::new(0) }; 16];

type DlcloseFn = extern "C" fn(*mut c_void) -> c_int;

/// For `la_symbind64`: the address to bind `name` to, when it is `dlclose`
/// and not a `dlsym` lookup.
pub fn bind(name: &[u8], real: usize, dlsym: bool) -> Option<usize> {
    if name != b"dlclose" || real == 0 || dlsym {
        return None;
    }
    REAL.store(real, Ordering::Relaxed);
    Some(dlclose as *const () as usize)
}

extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let address = REAL.load(Ordering::Relaxed);
    if address == 0 {
        return -1;
    }
    // SAFETY: the address the loader bound `dlclose` to, stored by `bind`.
    let real = unsafe { core::mem::transmute::<usize, DlcloseFn>(address) };
    let tid = thread_id();
    let slot = INSIDE.iter().find(|s| s.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed).is_ok());
    let status = real(handle);
    if let Some(s) = slot {
        s.store(0, Ordering::Release);
    }
    status
}

/// The calling thread is inside a `dlclose` the program called.
pub fn inside() -> bool {
    let tid = thread_id();
    INSIDE.iter().any(|s| s.load(Ordering::Acquire) == tid)
}

/// The calling thread's id (also the `dlmopen` trampoline's key).
pub fn thread_id() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail (glibc before
    // 2.30 has no wrapper for it); it keeps errno.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn fake_close(handle: *mut c_void) -> c_int {
        // What the loader's teardown would ask, from inside the call.
        if inside() {
            handle as usize as c_int
        } else {
            -2
        }
    }

    #[test]
    fn a_thread_is_inside_only_during_its_own_call() {
        assert_eq!(bind(b"dlopen", 1, false), None);
        assert_eq!(bind(b"dlclose", 1, true), None, "dlsym gets the real one");
        let wrapper = bind(b"dlclose", fake_close as *const () as usize, false);
        assert_eq!(wrapper, Some(dlclose as *const () as usize));
        assert!(!inside());
        assert_eq!(dlclose(7 as *mut c_void), 7);
        assert!(!inside());
        // Another thread's call says nothing about this one.
        let other = std::thread::spawn(|| dlclose(9 as *mut c_void));
        assert_eq!(other.join().ok(), Some(9));
        assert!(!inside());
    }
}
