//! Pins and `--strict` for `dlmopen` of a path. glibc asks the audit
//! interface nothing about such a request: `dlmopen` names its namespace,
//! so for a name with a `/` and no `$` glibc needs no caller, passes the
//! loader none, and `la_objsearch` is never called for it (dl-open.c,
//! `dl_open_worker`: the caller's map is looked up only for a `$`, a bare
//! name or `dlopen`'s "the caller's namespace"; `_dl_audit_objsearch`
//! returns early without one). The program's `dlmopen` calls therefore
//! reach a trampoline here, bound through `la_symbind64` as `dlclose`'s
//! are, when there are pins or `--strict`, on x86-64.
//!
//! Every other name goes on by a *jump* to the real `dlmopen`: the return
//! address glibc reads to find the caller is still the program's, so a bare
//! or `$ORIGIN` name is searched from the caller's DT_RPATH, DT_RUNPATH and
//! namespace exactly as without culaunch, and `la_objsearch` sees it. A
//! path, for which glibc looks at no caller, goes to [`dlmopen_path`]
//! instead, which answers it as `la_objsearch` would, calls the real
//! `dlmopen` with the pinned path or a refusal text (in a slot of its own
//! while the call lasts: another thread's refusal cannot overwrite it), and
//! returns to the program. The redirect it notes for the trace lives only
//! during that call.
//!
//! Not seen: `dlmopen` through a `dlsym` pointer (which gets the real
//! function), a GOT call under `-fno-plt`, a call from an object in another
//! namespace (the module asks for bindings of the program's namespace
//! only), or from a `-z now` object before glibc 2.35.

use core::ffi::{c_char, c_int, c_long, c_void, CStr};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::callbacks::{self, Answer};
use crate::config;
use crate::decide::Refusal;
use crate::dlclose::thread_id;
use crate::exports::guarded;
use crate::global::REFUSAL_CAP;
use crate::lock::TryLock;

/// The real `dlmopen` (the program's libc's, or libdl's before glibc
/// 2.34), stored by `bind` before the trampoline is handed out. Read by the
/// trampoline.
static REAL: AtomicUsize = AtomicUsize::new(0);

type DlmopenFn = extern "C" fn(c_long, *const c_char, c_int) -> *mut c_void;

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

// dlmopen(lmid: rdi, file: rsi, mode: rdx). The arguments are kept on the
// stack (with the return address, 32 bytes: the call is 16-byte aligned)
// while `unasked(file)` is asked; then, with the stack as the program left
// it, a jump: to `dlmopen_path(lmid, file, mode, return address)`, which
// returns to the program, or to the real function.
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
    "call {unasked}",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "test eax, eax",
    "jz 2f",
    "mov rcx, qword ptr [rsp]",
    "jmp {path}",
    "2:",
    "jmp qword ptr [rip + {real}]",
    ".size culaunch_dlmopen_trampoline, .-culaunch_dlmopen_trampoline",
    ".popsection",
    unasked = sym unasked_c,
    path = sym dlmopen_path,
    real = sym REAL,
);

/// For the trampoline: 1 when `file` is a name glibc will not show
/// `la_objsearch`.
extern "C" fn unasked_c(file: *const c_char) -> c_int {
    guarded(0, || {
        if file.is_null() {
            return 0;
        }
        // SAFETY: dlmopen's contract: a NUL-terminated name.
        c_int::from(unasked(unsafe { CStr::from_ptr(file) }.to_bytes()))
    })
}

/// `dlmopen(lmid, file, mode)` of a path, called from `caller_pc`: the
/// pins and `--strict` applied, then the real call.
extern "C" fn dlmopen_path(lmid: c_long, file: *const c_char, mode: c_int, caller_pc: usize) -> *mut c_void {
    let address = REAL.load(Ordering::Relaxed);
    if address == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: the address the loader bound `dlmopen` to, stored by `bind`.
    let real = unsafe { core::mem::transmute::<usize, DlmopenFn>(address) };
    let answer = guarded(Answer::AsAsked, || {
        let Some(config) = config::get() else { return Answer::AsAsked };
        // SAFETY: the trampoline passes only a non-null `file`.
        let request = unsafe { CStr::from_ptr(file) };
        // No requester for the decision: glibc passes none either.
        callbacks::answer(config, request, 0, false)
    });
    match answer {
        Answer::AsAsked => real(lmid, file, mode),
        Answer::Redirect(pinned) => {
            note_redirect(file);
            let handle = real(lmid, pinned, mode);
            forget_redirect();
            handle
        }
        // Nothing would be loaded (a probe, or a mode glibc rejects): the
        // call goes on as asked, and fails or answers as without culaunch.
        Answer::Refuse(_) if mode & libc::RTLD_NOLOAD != 0 || mode & RTLD_BINDING_MASK == 0 => real(lmid, file, mode),
        Answer::Refuse(why) => Call { real, lmid, file, mode, caller_pc, why }.refused(),
    }
}

/// `<dlfcn.h>`: the bits of a mode that say when to bind (one must be set).
const RTLD_BINDING_MASK: c_int = 0x3;

/// Where refusals' texts live while their calls last (a text must outlive
/// the real call, and no other thread's may overwrite it): off the
/// caller's stack, which may be a small thread's. A refusal finds a free
/// one by trying each; with more at once than these, its text goes on the
/// stack after all.
static TEXTS: [TryLock<[u8; REFUSAL_CAP]>; 8] = [const { TryLock::new([0; REFUSAL_CAP]) }; 8];

/// A refused `dlmopen` call.
#[derive(Clone, Copy)]
struct Call {
    real: DlmopenFn,
    lmid: c_long,
    file: *const c_char,
    mode: c_int,
    caller_pc: usize,
    why: Refusal,
}

impl Call {
    /// The real call, given the refusal's text for a name.
    fn refused(self) -> *mut c_void {
        match TEXTS.iter().find_map(TryLock::try_lock) {
            Some(mut text) => self.refused_with(&mut text),
            None => self.refused_on_stack(),
        }
    }

    #[inline(never)]
    fn refused_on_stack(self) -> *mut c_void {
        let mut text = [0u8; REFUSAL_CAP];
        self.refused_with(&mut text)
    }

    fn refused_with(self, text: &mut [u8; REFUSAL_CAP]) -> *mut c_void {
        let name = guarded(self.file, || {
            let Some(config) = config::get() else { return self.file };
            // SAFETY: as in `dlmopen_path`.
            let request = unsafe { CStr::from_ptr(self.file) }.to_bytes();
            callbacks::refusal_text(config, request, caller_map(self.caller_pc), self.why, false, text)
        });
        (self.real)(self.lmid, name, self.mode)
    }
}

/// In a forked child: the texts other threads of the parent held are free
/// (those threads were not copied).
pub fn after_fork() {
    for t in &TEXTS {
        t.force_unlock_after_fork();
    }
}

/// `<dlfcn.h>`: `dladdr1` stores the object's link map.
const RTLD_DL_LINKMAP: c_int = 2;

/// The link map of the object whose code is at `pc` (0: none found).
fn caller_map(pc: usize) -> usize {
    let mut info = core::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let mut map: *mut c_void = core::ptr::null_mut();
    // SAFETY: valid out-pointers; RTLD_DL_LINKMAP stores a link map there.
    let found =
        unsafe { libc::dladdr1(pc as *const c_void, info.as_mut_ptr(), (&raw mut map).cast(), RTLD_DL_LINKMAP) };
    if found == 0 {
        0
    } else {
        map as usize
    }
}

/// A `dlmopen` name glibc searches for without asking the audit interface:
/// a path (a `/`) with no dynamic string token (`$`, which needs the
/// caller).
fn unasked(name: &[u8]) -> bool {
    name.contains(&b'/') && !name.contains(&b'$')
}

/// A redirect [`dlmopen_path`] made, for the trace: `la_objopen` of the
/// pinned file, in the same thread and during the same call, takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The program's name for the file (its string, alive during the call).
    pub request: *const c_char,
}

/// One per thread inside a redirected `dlmopen`: its thread id (0: free)
/// and the request. Lock-free: [`dlmopen_path`] runs outside the loader's
/// lock, `la_objopen` inside it. More threads at once than slots lose only
/// the trace's `redirected_from`.
struct Slot {
    tid: AtomicI32,
    request: AtomicUsize,
}

static SLOTS: [Slot; 16] = [const { Slot { tid: AtomicI32::new(0), request: AtomicUsize::new(0) } }; 16];

/// Slots in use: `la_objopen` asks for its thread id only when one is.
static USED: AtomicUsize = AtomicUsize::new(0);

/// Notes that this thread's `dlmopen` of `request` is redirected.
fn note_redirect(request: *const c_char) {
    let tid = thread_id();
    let Some(slot) = SLOTS.iter().find(|s| s.tid.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed).is_ok())
    else {
        return;
    };
    slot.request.store(request as usize, Ordering::Release);
    USED.fetch_add(1, Ordering::AcqRel);
}

/// Takes this thread's redirect, if its `dlmopen` made one.
pub fn take_redirect() -> Option<Redirect> {
    if USED.load(Ordering::Acquire) == 0 {
        return None;
    }
    let tid = thread_id();
    let slot = SLOTS.iter().find(|s| s.tid.load(Ordering::Acquire) == tid)?;
    let request = slot.request.swap(0, Ordering::AcqRel) as *const c_char;
    slot.tid.store(0, Ordering::Release);
    USED.fetch_sub(1, Ordering::AcqRel);
    (!request.is_null()).then_some(Redirect { request })
}

/// Drops this thread's redirect once its call is over (the pinned file may
/// have been mapped already, and no `la_objopen` took it).
fn forget_redirect() {
    let _ = take_redirect();
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
        note_redirect(name.as_ptr());
        let other = std::thread::spawn(|| take_redirect().is_some()).join().ok();
        assert_eq!(other, Some(false), "another thread's la_objopen");
        assert_eq!(take_redirect(), Some(Redirect { request: name.as_ptr() }));
        assert_eq!(take_redirect(), None);
        note_redirect(name.as_ptr());
        forget_redirect();
        assert_eq!(take_redirect(), None);
        assert_eq!(USED.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bind_answers_only_for_dlmopen_itself() {
        assert_eq!(bind(b"dlopen", 1, false), None);
        assert_eq!(bind(b"dlmopen", 0, false), None, "no real function to jump to");
        assert_eq!(bind(b"dlmopen", 1, true), None, "dlsym gets the real dlmopen");
    }
}
