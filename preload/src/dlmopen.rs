//! Pins and `--strict` for `dlmopen` of a path. glibc asks the audit
//! interface nothing about such a request: `dlmopen` names its namespace,
//! so for a name with a `/` and no `$` glibc needs no caller and passes the
//! loader none, and `la_objsearch` is never called for it (dl-open.c,
//! `dl_open_worker`; `_dl_audit_objsearch` returns early without one). The
//! program's `dlmopen` calls therefore reach a trampoline here (bound
//! through `la_symbind64`, as `dlclose`'s are), which puts that one case
//! through the same decision as `la_objsearch` and hands the real
//! `dlmopen` the pinned path or a refusal text in place of the name.
//!
//! The trampoline jumps to the real function; it never calls it. The return
//! address glibc reads to find the caller is still the program's, so a bare
//! name or a `$ORIGIN` name (whose search depends on the caller's DT_RPATH,
//! DT_RUNPATH and namespace) is searched exactly as without culaunch, and
//! `la_objsearch` then sees it. It is bound only when there are pins or
//! `--strict`, and only on x86-64. `dlsym` gets the real `dlmopen`, and
//! calls that bind to no wrapper (through a `dlsym` pointer, a `-z now`
//! object before glibc 2.35) are not seen.

use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::callbacks::{self, Asked, SearchAnswer};
use crate::config;
use crate::exports::guarded;

/// The real `dlmopen` (the program's libc's, or libdl's before glibc
/// 2.34), stored by `bind` before the trampoline is handed out. Read by the
/// trampoline.
static REAL: AtomicUsize = AtomicUsize::new(0);

/// Given to the real `dlmopen` when a refusal's text could not be written:
/// no file has this name, so the call fails.
const BUSY_REFUSAL: &CStr = c"culaunch: refused by --strict or a lock (the refusal's text was busy)";

/// For `la_symbind64`: the address to bind `name` to, when it is `dlmopen`,
/// not a `dlsym` lookup, and there is a pin or `--strict` to apply.
pub fn bind(name: &[u8], real: usize, dlsym: bool) -> Option<usize> {
    if name != b"dlmopen" || real == 0 || dlsym || !cfg!(target_arch = "x86_64") {
        return None;
    }
    let config = config::get()?;
    if config.pins.is_empty() && !config.strict {
        return None;
    }
    REAL.store(real, Ordering::Relaxed);
    trampoline()
}

#[cfg(target_arch = "x86_64")]
fn trampoline() -> Option<usize> {
    extern "C" {
        fn culaunch_dlmopen_trampoline();
    }
    Some(culaunch_dlmopen_trampoline as *const () as usize)
}

#[cfg(not(target_arch = "x86_64"))]
fn trampoline() -> Option<usize> {
    None
}

// dlmopen(lmid: rdi, file: rsi, mode: rdx). The three arguments are kept
// on the stack (with the return address, 32 bytes: the call below is
// 16-byte aligned); `culaunch_dlmopen_file(file)` returns the name to use;
// then a jump, so that the real function returns to the program.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.culaunch_dlmopen_trampoline,\"ax\",@progbits",
    ".globl culaunch_dlmopen_trampoline",
    ".hidden culaunch_dlmopen_trampoline",
    ".type culaunch_dlmopen_trampoline,@function",
    "culaunch_dlmopen_trampoline:",
    "endbr64",
    "push rdi",
    "push rsi",
    "push rdx",
    "mov rdi, rsi",
    "call {file}",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "mov rsi, rax",
    "jmp qword ptr [rip + {real}]",
    ".size culaunch_dlmopen_trampoline, .-culaunch_dlmopen_trampoline",
    ".popsection",
    file = sym culaunch_dlmopen_file,
    real = sym REAL,
);

/// The name the real `dlmopen` is to get for `file`: `file` itself, unless
/// it is a path glibc will not show `la_objsearch` and a pin or `--strict`
/// has another answer for it.
extern "C" fn culaunch_dlmopen_file(file: *const c_char) -> *const c_char {
    guarded(file, || {
        let Some(config) = config::get() else { return file };
        if file.is_null() {
            return file;
        }
        // SAFETY: dlmopen's contract: a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(file) };
        if !unasked(name.to_bytes()) {
            return file;
        }
        forget_redirect();
        // No requester: glibc passes none for this request either.
        match callbacks::answer(config, name, 0, Asked::ByDlmopen) {
            SearchAnswer::AsAsked => file,
            SearchAnswer::Instead(other) => other,
            SearchAnswer::Skip => BUSY_REFUSAL.as_ptr(),
        }
    })
}

/// A redirect the trampoline made, for the trace: `la_objopen` of the
/// pinned file, in the same thread and during the same call, takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The program's name for the file (its string, alive during the call).
    pub request: *const c_char,
    pub pin: usize,
}

/// One per thread inside a redirected `dlmopen`: its thread id (0: free),
/// the request, and the pin + 1. Lock-free: the trampoline runs outside
/// the loader's lock, `la_objopen` inside it. More threads at once than
/// slots lose only the trace's `redirected_from`.
struct Slot {
    tid: AtomicI32,
    request: AtomicUsize,
    pin: AtomicUsize,
}

static SLOTS: [Slot; 16] =
    [const { Slot { tid: AtomicI32::new(0), request: AtomicUsize::new(0), pin: AtomicUsize::new(0) } }; 16];

/// Slots in use: `la_objopen` asks for its thread id only when one is.
static USED: AtomicUsize = AtomicUsize::new(0);

/// Notes that this thread's `dlmopen` of `request` goes to pin `pin`.
pub fn note_redirect(request: &CStr, pin: usize) {
    let tid = thread_id();
    let Some(slot) = SLOTS.iter().find(|s| s.tid.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed).is_ok())
    else {
        return;
    };
    USED.fetch_add(1, Ordering::AcqRel);
    slot.request.store(request.as_ptr() as usize, Ordering::Relaxed);
    slot.pin.store(pin + 1, Ordering::Release);
}

/// Takes this thread's redirect, if its `dlmopen` made one.
pub fn take_redirect() -> Option<Redirect> {
    if USED.load(Ordering::Acquire) == 0 {
        return None;
    }
    let tid = thread_id();
    let slot = SLOTS.iter().find(|s| s.tid.load(Ordering::Acquire) == tid)?;
    let pin = slot.pin.swap(0, Ordering::Acquire);
    let request = slot.request.swap(0, Ordering::Relaxed) as *const c_char;
    slot.tid.store(0, Ordering::Release);
    USED.fetch_sub(1, Ordering::AcqRel);
    (pin != 0 && !request.is_null()).then_some(Redirect { request, pin: pin - 1 })
}

/// Drops this thread's redirect: a later request is under way (the pinned
/// file was mapped already, so no `la_objopen` took it).
pub fn forget_redirect() {
    let _ = take_redirect();
}

fn thread_id() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// A `dlmopen` name glibc searches for without asking the audit interface:
/// a path (a `/`) with no dynamic string token (`$`, which needs the
/// caller).
fn unasked(name: &[u8]) -> bool {
    name.contains(&b'/') && !name.contains(&b'$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_path_without_a_token_goes_unasked() {
        assert!(unasked(b"/opt/cuda/lib64/libcudart.so.12"));
        assert!(unasked(b"./libcudart.so.12"));
        assert!(!unasked(b"libcudart.so.12"), "a bare name is searched with la_objsearch");
        assert!(!unasked(b"$ORIGIN/libcudart.so.12"), "a token needs the caller: la_objsearch sees it");
        assert!(!unasked(b"/opt/$LIB/libcudart.so.12"));
    }

    #[test]
    fn a_redirect_is_taken_once_by_its_own_thread() {
        let name = c"/w/libcudart.so.12";
        note_redirect(name, 3);
        let other = std::thread::spawn(|| take_redirect().map(|r| r.pin)).join().ok().flatten();
        assert_eq!(other, None, "another thread's la_objopen");
        assert_eq!(take_redirect(), Some(Redirect { request: name.as_ptr(), pin: 3 }));
        assert_eq!(take_redirect(), None);
        note_redirect(name, 0);
        forget_redirect();
        assert_eq!(take_redirect(), None);
    }

    #[test]
    fn bind_answers_only_for_dlmopen_itself() {
        assert_eq!(bind(b"dlopen", 1, false), None);
        assert_eq!(bind(b"dlmopen", 0, false), None, "no real function to jump to");
        assert_eq!(bind(b"dlmopen", 1, true), None, "dlsym gets the real dlmopen");
    }
}
