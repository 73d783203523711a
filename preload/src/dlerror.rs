//! glibc's own words for a failed load: the program's calls to `dlerror`
//! reach a wrapper here (bound through `la_symbind64`, as the `exec*`
//! wrappers are), which calls the real `dlerror`, hands its text to the
//! callbacks while a failed load is pending, and returns the very same
//! pointer. `dlerror` does not depend on who calls it, so wrapping it
//! changes nothing for the program.
//!
//! The parser is pure: it reads the texts glibc's loader writes
//! (`elf/dl-open.c`, `dl-lookup.c`, `dl-version.c`, `dl-load.c`), which
//! have the form `OBJECT: MESSAGE`.

use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

use culaunch_protocol::event::FailReason;

use crate::global::PROCESS;

/// The real `dlerror` (the program's libc's, or libdl's before glibc
/// 2.34), stored by `bind` before the wrapper is handed out.
static REAL: AtomicUsize = AtomicUsize::new(0);

type DlerrorFn = extern "C" fn() -> *mut c_char;

/// For `la_symbind64`: the address to bind `name` to, when it is `dlerror`.
pub fn bind(name: &[u8], real: usize) -> Option<usize> {
    if name != b"dlerror" || real == 0 {
        return None;
    }
    REAL.store(real, Ordering::Relaxed);
    Some(dlerror as *const () as usize)
}

extern "C" fn dlerror() -> *mut c_char {
    let address = REAL.load(Ordering::Relaxed);
    if address == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: the address the loader bound `dlerror` to, stored by `bind`.
    let real = unsafe { core::mem::transmute::<usize, DlerrorFn>(address) };
    let text = real();
    if !text.is_null() && PROCESS.failure_pending.load(Ordering::Relaxed) {
        // SAFETY: dlerror returns a NUL-terminated string or NULL.
        let words = unsafe { CStr::from_ptr(text) };
        crate::exports::guarded((), || crate::callbacks::dlerror_said(words.to_bytes()));
    }
    text
}

/// What one of glibc's texts says.
#[derive(Debug, PartialEq, Eq)]
pub struct Said<'a> {
    /// The object the text is about, as glibc names it (before the first
    /// `": "` of the message).
    pub object: &'a [u8],
    pub reason: FailReason,
    pub symbol: Option<&'a [u8]>,
    pub version: Option<&'a [u8]>,
    /// The object that needed the symbol or version.
    pub required_by: Option<&'a [u8]>,
}

pub const NOT_FOUND: &[u8] = b": cannot open shared object file: No such file or directory";
const UNDEFINED: &[u8] = b": undefined symbol: ";
const WITH_VERSION: &[u8] = b", version ";
const VERSION: &[u8] = b": version `";
const VERSION_END: &[u8] = b"' not found (required by ";
const WRONG_CLASS: &[u8] = b": wrong ELF class: ";
/// The name `la_objsearch` gives the loader for a refused request.
pub const REFUSED: &[u8] = b"culaunch: refused ";

/// Reads one of glibc's texts.
pub fn parse(text: &[u8]) -> Said<'_> {
    let said = |object, reason| Said { object, reason, symbol: None, version: None, required_by: None };
    if let Some(rest) = text.strip_prefix(REFUSED) {
        let object = rest.split(|&b| b == b',').next().unwrap_or(rest);
        return said(object, FailReason::Refused);
    }
    if let Some(object) = text.strip_suffix(NOT_FOUND) {
        return said(object, FailReason::NotFound);
    }
    if let Some(at) = find(text, UNDEFINED) {
        let object = &text[..at];
        let rest = &text[at + UNDEFINED.len()..];
        let (symbol, version) = match find(rest, WITH_VERSION) {
            Some(v) => (&rest[..v], Some(&rest[v + WITH_VERSION.len()..])),
            None => (rest, None),
        };
        return Said {
            object,
            reason: FailReason::UndefinedSymbol,
            symbol: Some(symbol),
            version,
            required_by: Some(object),
        };
    }
    if let Some(at) = find(text, VERSION) {
        let rest = &text[at + VERSION.len()..];
        if let (Some(end), Some(b')')) = (find(rest, VERSION_END), rest.last()) {
            return Said {
                object: &text[..at],
                reason: FailReason::MissingVersion,
                symbol: None,
                version: Some(&rest[..end]),
                required_by: Some(&rest[end + VERSION_END.len()..rest.len() - 1]),
            };
        }
    }
    if let Some(at) = find(text, WRONG_CLASS) {
        return said(&text[..at], FailReason::WrongClass);
    }
    let object = find(text, b": ").map_or(&text[..0], |at| &text[..at]);
    said(object, FailReason::Failed)
}

/// glibc's words when no file answers `request`.
pub fn not_found_parts(request: &[u8]) -> [&[u8]; 2] {
    [request, NOT_FOUND]
}

/// What the loader prints on stderr for an LD_PRELOAD (or
/// /etc/ld.so.preload) entry found nowhere, and goes on (rtld.c,
/// `do_preload`).
pub fn preload_not_found_parts<'a>(request: &'a [u8], from: &'a [u8]) -> [&'a [u8]; 5] {
    [
        b"ERROR: ld.so: object '",
        request,
        b"' from ",
        from,
        b" cannot be preloaded (cannot open shared object file): ignored.",
    ]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// 64-bit FNV-1a: names kept for matching without keeping their bytes.
pub fn name_hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cudnn_8_text_names_symbol_version_and_requirer() {
        let t = b"/w/nvidia/cudnn/lib/libcudnn_cnn_infer.so.8: undefined symbol: _ZN11nvrtcHelper4loadEb, version libcudnn_ops_infer.so.8";
        let s = parse(t);
        assert_eq!(s.reason, FailReason::UndefinedSymbol);
        assert_eq!(s.object, b"/w/nvidia/cudnn/lib/libcudnn_cnn_infer.so.8");
        assert_eq!(s.symbol, Some(&b"_ZN11nvrtcHelper4loadEb"[..]));
        assert_eq!(s.version, Some(&b"libcudnn_ops_infer.so.8"[..]));
        assert_eq!(s.required_by, Some(s.object));
    }

    #[test]
    fn an_unversioned_undefined_symbol() {
        let s = parse(b"/tmp/libundef.so: undefined symbol: missing_fn");
        assert_eq!((s.reason, s.symbol, s.version), (FailReason::UndefinedSymbol, Some(&b"missing_fn"[..]), None));
    }

    #[test]
    fn a_missing_version_names_provider_node_and_requirer() {
        let s = parse(b"old/libv.so.1: version `V_2' not found (required by /w/new/libvuser.so)");
        assert_eq!(s.reason, FailReason::MissingVersion);
        assert_eq!(s.object, b"old/libv.so.1");
        assert_eq!(s.version, Some(&b"V_2"[..]));
        assert_eq!(s.required_by, Some(&b"/w/new/libvuser.so"[..]));
        assert_eq!(s.symbol, None);
    }

    #[test]
    fn not_found_wrong_class_and_refusals() {
        let s = parse(b"libabsent.so: cannot open shared object file: No such file or directory");
        assert_eq!((s.object, s.reason), (&b"libabsent.so"[..], FailReason::NotFound));
        let s = parse(b"/w/lib32.so: wrong ELF class: ELFCLASS32");
        assert_eq!((s.object, s.reason), (&b"/w/lib32.so"[..], FailReason::WrongClass));
        let s = parse(b"culaunch: refused libcudart.so.12, requested by /w/x: --strict: no pin: cannot open shared object file: No such file or directory");
        assert_eq!((s.object, s.reason), (&b"libcudart.so.12"[..], FailReason::Refused));
    }

    #[test]
    fn anything_else_is_a_failure_of_the_object_named_first() {
        let s = parse(b"/w/libx.so: file too short");
        assert_eq!((s.object, s.reason), (&b"/w/libx.so"[..], FailReason::Failed));
        let s = parse(b"/w/libx.so: cannot open shared object file: Permission denied");
        assert_eq!((s.object, s.reason), (&b"/w/libx.so"[..], FailReason::Failed));
        assert_eq!(parse(b"no colon").object, b"");
        // A truncated version text is not misread.
        assert_eq!(parse(b"a: version `V").reason, FailReason::Failed);
    }

    #[test]
    fn the_not_found_words_are_glibcs() {
        assert_eq!(
            not_found_parts(b"libz.so").concat(),
            b"libz.so: cannot open shared object file: No such file or directory"
        );
    }
}
