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
}

/// `request` is what the program asked for (a name or a path); `pins` are
/// the pinned SONAMEs in order; `is_pinned_file(n)` says whether the path
/// `request` names pin `n`'s own file (through any link). It is asked only
/// for a path that matches pin `n` by name, so a bare name never costs a
/// `stat`.
pub fn decide<'a>(
    request: &[u8],
    pins: impl Iterator<Item = &'a [u8]>,
    strict: bool,
    is_pinned_file: impl FnOnce(usize) -> bool,
) -> Decision {
    let mut other_major = None;
    for (n, soname) in pins.enumerate() {
        match catalogue::pin_match(request, soname) {
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
        super::decide(request, pins.iter().copied(), strict, |_| is_pin_path)
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
        let d = super::decide(b"libcudart.so.12", PIN_NAMES.iter().copied(), false, |_| {
            asked.set(true);
            true
        });
        assert_eq!(d, Decision::Redirect(0));
        assert!(!asked.get());
        // Only the matching pin's file is asked about.
        let d = super::decide(b"/x/libcublas.so.12", PIN_NAMES.iter().copied(), false, |n| n == 1);
        assert_eq!(d, Decision::Pass);
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
