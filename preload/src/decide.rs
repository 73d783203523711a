//! What to do with a request, given the pins and `--strict`: the whole
//! decision. Pure: the caller feeds it the requested name and a way to ask
//! whether a path names a pinned file, and acts on the answer.

use culaunch_protocol::catalogue::{self, PinMatch};

/// What the loader should do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Search as the loader would.
    Pass,
    /// Map pin number `n` instead of searching.
    Redirect(usize),
    /// Search as usual, but this is another major of pin `n`: say so.
    OtherMajor(usize),
    /// Refuse the request (strict mode), for this reason.
    Refuse(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A CUDA-family library that no pin allows.
    NotPinned,
    /// Another major of pin `n`.
    OtherMajor(usize),
    /// Lock pin `n`'s path holds another file than the one whose sha256
    /// was checked.
    Replaced(usize),
    /// A wheel's hashed copy of pin `n`, asked for once pin `n`'s file is
    /// mapped: see [`decide`].
    VendoredAfterPin(usize),
}

/// `request` is what the program asked for (a name or a path); `pins` are
/// the pinned SONAMEs in order; `is_pinned_file(n)` says whether the path
/// `request` names pin `n`'s own file (through any link). It is asked only
/// for a path that matches pin `n` by name, so a bare name never costs a
/// `stat`. `pin_mapped(n)`: pin `n`'s file is mapped already.
///
/// A wheel's hashed copy (`libcudart-d0da41ae.so.12`) is redirected only
/// while the pinned file is not mapped: mapped, the loader would hand back
/// that object under the pinned path and never under the copy's name, which
/// the requester's symbol versions (`vn_file`) name, and glibc stops on an
/// assertion. It then loads as asked (and is a conflict), or under
/// `--strict` is refused.
pub fn decide<'a>(
    request: &[u8],
    pins: impl Iterator<Item = &'a [u8]>,
    strict: bool,
    is_pinned_file: impl FnOnce(usize) -> bool,
    pin_mapped: impl Fn(usize) -> bool,
) -> Decision {
    let mut other_major = None;
    let mut vendored_after = None;
    for (n, soname) in pins.enumerate() {
        match catalogue::pin_match(request, soname) {
            PinMatch::Vendored if pin_mapped(n) => vendored_after = vendored_after.or(Some(n)),
            PinMatch::Soname | PinMatch::DevName | PinMatch::FullVersion | PinMatch::Vendored => {
                // The pinned file asked for by its own path: already what
                // the pin wants, and redirecting it would change nothing
                // but the trace's `redirected_from`.
                let names_pin = request.contains(&b'/') && is_pinned_file(n);
                return if names_pin { Decision::Pass } else { Decision::Redirect(n) };
            }
            PinMatch::OtherMajor => other_major = other_major.or(Some(n)),
            PinMatch::Unrelated => {}
        }
    }
    if let Some(n) = vendored_after {
        return if strict { Decision::Refuse(Refusal::VendoredAfterPin(n)) } else { Decision::Pass };
    }
    match (other_major, strict) {
        (Some(n), true) => Decision::Refuse(Refusal::OtherMajor(n)),
        (Some(n), false) => Decision::OtherMajor(n),
        (None, true) if strict_applies(request) => Decision::Refuse(Refusal::NotPinned),
        (None, _) => Decision::Pass,
    }
}

fn strict_applies(request: &[u8]) -> bool {
    catalogue::family(request).is_some_and(|f| !catalogue::STRICT_EXEMPT.contains(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN_NAMES: &[&[u8]] = &[b"libcudart.so.12", b"libcublas.so.12"];

    /// The decision when the file system says `request` is (or is not) the
    /// pinned file itself.
    fn decide(request: &[u8], pins: &[&[u8]], strict: bool, is_pin_path: bool) -> Decision {
        super::decide(request, pins.iter().copied(), strict, |_| is_pin_path, |_| false)
    }

    #[test]
    fn every_name_of_a_pinned_library_is_redirected() {
        for req in [&b"libcudart.so.12"[..], b"libcudart.so", b"libcudart.so.12.4.127", b"/other/copy/libcudart.so.12"]
        {
            assert_eq!(decide(req, PIN_NAMES, false, false), Decision::Redirect(0));
        }
        assert_eq!(decide(b"libcublas.so", PIN_NAMES, true, false), Decision::Redirect(1));
    }

    #[test]
    fn the_pinned_file_itself_passes() {
        assert_eq!(decide(b"/pinned/libcudart.so.12", PIN_NAMES, true, true), Decision::Pass);
    }

    #[test]
    fn a_bare_name_never_asks_the_file_system_and_is_redirected() {
        let asked = core::cell::Cell::new(false);
        let d = super::decide(
            b"libcudart.so.12",
            PIN_NAMES.iter().copied(),
            false,
            |_| {
                asked.set(true);
                true
            },
            |_| false,
        );
        assert_eq!(d, Decision::Redirect(0));
        assert!(!asked.get());
        // Only the matching pin's file is asked about.
        let d = super::decide(b"/x/libcublas.so.12", PIN_NAMES.iter().copied(), false, |n| n == 1, |_| false);
        assert_eq!(d, Decision::Pass);
    }

    #[test]
    fn a_vendored_copy_is_redirected_until_the_pinned_file_is_mapped() {
        let hashed = b"libcudart-d0da41ae.so.12";
        assert_eq!(decide(hashed, PIN_NAMES, false, false), Decision::Redirect(0));
        let mapped = |strict| super::decide(hashed, PIN_NAMES.iter().copied(), strict, |_| false, |n| n == 0);
        assert_eq!(mapped(false), Decision::Pass);
        assert_eq!(mapped(true), Decision::Refuse(Refusal::VendoredAfterPin(0)));
        // Other names of the library are redirected as before.
        let plain = super::decide(b"libcudart.so", PIN_NAMES.iter().copied(), true, |_| false, |_| true);
        assert_eq!(plain, Decision::Redirect(0));
    }

    #[test]
    fn another_major_is_never_redirected_and_refused_only_when_strict() {
        assert_eq!(decide(b"libcudart.so.11.0", PIN_NAMES, false, false), Decision::OtherMajor(0));
        assert_eq!(decide(b"libcudart.so.11.0", PIN_NAMES, true, false), Decision::Refuse(Refusal::OtherMajor(0)));
    }

    #[test]
    fn strict_refuses_unpinned_cuda_but_not_other_libraries_or_the_driver() {
        assert_eq!(decide(b"libcudnn.so.9", PIN_NAMES, true, false), Decision::Refuse(Refusal::NotPinned));
        assert_eq!(decide(b"libcudnn.so.9", PIN_NAMES, false, false), Decision::Pass);
        assert_eq!(decide(b"libm.so.6", PIN_NAMES, true, false), Decision::Pass);
        assert_eq!(decide(b"libcuda.so.1", PIN_NAMES, true, false), Decision::Pass);
        assert_eq!(decide(b"libnvidia-ml.so.1", &[], true, false), Decision::Pass);
    }
}
