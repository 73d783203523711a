//! Pairs the loader's searches with the objects it then maps, and tells how
//! each object arrived. Pure: the exports feed it what the loader reports.
//!
//! The loader reports, in order, for every object it maps:
//! `la_objsearch(name, LA_SER_ORIG)` with the requested name and the requester
//! (the object whose DT_NEEDED or `dlopen` call it is), then one
//! `la_objsearch` per candidate path tagged with the search step, then
//! `la_objopen` for the file it mapped. A batch started by `dlopen` or
//! `dlmopen` is announced by `la_activity(LA_ACT_ADD)`; its first object is the
//! one asked for, the rest are that object's DT_NEEDED closure.

use culaunch_protocol::event::{How, SearchStep};

// rtld-audit constants from <link.h>.
pub const LA_SER_ORIG: u32 = 0x01;
pub const LA_SER_LIBPATH: u32 = 0x02;
pub const LA_SER_RUNPATH: u32 = 0x04;
pub const LA_SER_CONFIG: u32 = 0x08;
pub const LA_SER_DEFAULT: u32 = 0x40;
pub const LA_ACT_CONSISTENT: u32 = 0;
pub const LA_ACT_ADD: u32 = 1;

/// Long enough for PATH_MAX.
const NAME_CAP: usize = 4096;

pub struct Tracker {
    /// `la_preinit` has run: later loads are not `initial`.
    started: bool,
    /// The current batch began with LA_ACT_ADD and its first object is still
    /// to come.
    root_pending: bool,
    /// Between LA_ACT_ADD and LA_ACT_CONSISTENT: a search now is for a
    /// DT_NEEDED of the object being loaded.
    in_batch: bool,
    request: Request,
}

struct Request {
    live: bool,
    /// A pin replaced the name: what was asked for is `redirected_from`.
    redirected: bool,
    /// `--strict` refused it: the refusal was reported, not a failure.
    refused: bool,
    name: [u8; NAME_CAP],
    len: usize,
    /// The last candidate path the loader tried for it.
    candidate: [u8; NAME_CAP],
    candidate_len: usize,
    loader: usize,
    step: Option<SearchStep>,
    t0_ns: u64,
}

/// A request the loader searched for but mapped nothing for: either it was
/// found nowhere, or it named (under another name) an object already mapped.
#[derive(Debug, PartialEq)]
pub struct Unanswered<'a> {
    pub request: &'a [u8],
    pub loader: usize,
    /// The last path tried; `None` when the request was a path itself.
    pub last_candidate: Option<&'a [u8]>,
    pub how: How,
}

/// What the tracker knows about an object the loader has just mapped.
#[derive(Debug, PartialEq)]
pub struct Arrival<'a> {
    pub how: How,
    /// The string asked for, or `None` when the loader mapped it unasked (the
    /// program itself, the loader, the vDSO).
    pub request: Option<&'a [u8]>,
    /// The requester's link map (an address), 0 when unknown.
    pub loader: usize,
    pub step: Option<SearchStep>,
    pub dur_ns: u64,
    /// The request a pin redirected to this object.
    pub redirected_from: Option<&'a [u8]>,
}

impl Tracker {
    pub const fn new() -> Tracker {
        Tracker {
            started: false,
            root_pending: false,
            in_batch: false,
            request: Request {
                live: false,
                redirected: false,
                refused: false,
                name: [0; NAME_CAP],
                len: 0,
                candidate: [0; NAME_CAP],
                candidate_len: 0,
                loader: 0,
                step: None,
                t0_ns: 0,
            },
        }
    }

    pub fn on_search(&mut self, name: &[u8], flag: u32, loader: usize, now_ns: u64) {
        if flag == LA_SER_ORIG {
            let r = &mut self.request;
            r.len = name.len().min(NAME_CAP);
            r.name[..r.len].copy_from_slice(&name[..r.len]);
            r.live = true;
            r.redirected = false;
            r.refused = false;
            r.candidate_len = 0;
            r.loader = loader;
            r.step = name.contains(&b'/').then_some(SearchStep::Direct);
            r.t0_ns = now_ns;
        } else if self.request.live {
            let r = &mut self.request;
            r.step = step_of(flag).or(r.step);
            r.candidate_len = name.len().min(NAME_CAP);
            r.candidate[..r.candidate_len].copy_from_slice(&name[..r.candidate_len]);
        }
    }

    /// The previous request, if the loader mapped nothing for it. Call before
    /// the next `on_search(…, LA_SER_ORIG, …)` (and at exit); a request is
    /// handed out once. Redirected requests are the pins' business.
    pub fn take_unanswered(&mut self) -> Option<Unanswered<'_>> {
        let r = &mut self.request;
        if !core::mem::take(&mut r.live) || r.redirected || r.refused {
            return None;
        }
        Some(Unanswered {
            request: &r.name[..r.len],
            loader: r.loader,
            last_candidate: (r.candidate_len > 0).then_some(&r.candidate[..r.candidate_len]),
            how: match (self.started, self.in_batch) {
                (false, _) => How::Initial,
                (true, true) => How::Needed,
                (true, false) => How::Dlopen,
            },
        })
    }

    pub fn on_activity(&mut self, flag: u32) {
        match flag {
            LA_ACT_ADD if self.started => {
                self.root_pending = true;
                self.in_batch = true;
            }
            LA_ACT_CONSISTENT => {
                self.root_pending = false;
                self.in_batch = false;
            }
            _ => {}
        }
    }

    pub fn on_preinit(&mut self) {
        self.started = true;
    }

    /// `--strict` refused the current request.
    pub fn mark_refused(&mut self) {
        self.request.refused = true;
    }

    /// A pin replaced the current request with the pinned path, which the
    /// loader opens directly.
    pub fn mark_redirected(&mut self) {
        self.request.redirected = true;
        self.request.step = Some(SearchStep::Direct);
    }

    /// The loader mapped an object in namespace `lmid`.
    pub fn on_open(&mut self, lmid: i64, now_ns: u64) -> Arrival<'_> {
        let how = if !self.started {
            How::Initial
        } else if core::mem::take(&mut self.root_pending) {
            if lmid == 0 {
                How::Dlopen
            } else {
                How::Dlmopen
            }
        } else {
            How::Needed
        };
        let r = &mut self.request;
        let live = core::mem::take(&mut r.live);
        Arrival {
            how,
            request: live.then_some(&r.name[..r.len]),
            loader: if live { r.loader } else { 0 },
            step: if live { r.step } else { None },
            dur_ns: if live { now_ns.saturating_sub(r.t0_ns) } else { 0 },
            redirected_from: (live && r.redirected).then_some(&r.name[..r.len]),
        }
    }

    /// In a forked child: whatever the parent's other threads were loading
    /// will never finish here.
    pub fn reset_after_fork(&mut self) {
        self.root_pending = false;
        self.in_batch = false;
        self.request.live = false;
    }
}

fn step_of(flag: u32) -> Option<SearchStep> {
    match flag {
        LA_SER_LIBPATH => Some(SearchStep::LdLibraryPath),
        LA_SER_RUNPATH => Some(SearchStep::RpathRunpath),
        LA_SER_CONFIG => Some(SearchStep::LdSoCache),
        LA_SER_DEFAULT => Some(SearchStep::Default),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_before_preinit_are_initial_and_keep_their_request() {
        let mut t = Tracker::new();
        let a = t.on_open(0, 0);
        assert_eq!((a.how, a.request), (How::Initial, None));
        t.on_search(b"libcudart.so.12", LA_SER_ORIG, 0x10, 100);
        t.on_search(b"/lib/libcudart.so.12", LA_SER_CONFIG, 0x10, 150);
        let a = t.on_open(0, 400);
        assert_eq!(a.how, How::Initial);
        assert_eq!(a.request, Some(&b"libcudart.so.12"[..]));
        assert_eq!((a.loader, a.step, a.dur_ns), (0x10, Some(SearchStep::LdSoCache), 300));
    }

    #[test]
    fn first_object_of_a_batch_is_the_dlopen_target_the_rest_are_needed() {
        let mut t = Tracker::new();
        t.on_preinit();
        t.on_search(b"libtorch_cuda.so", LA_SER_ORIG, 0x1, 0);
        t.on_search(b"/w/torch/lib/libtorch_cuda.so", LA_SER_RUNPATH, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        assert_eq!(t.on_open(0, 0).how, How::Dlopen);
        t.on_search(b"libcudart.so.12", LA_SER_ORIG, 0x2, 0);
        t.on_search(b"/w/nvidia/cuda_runtime/lib/libcudart.so.12", LA_SER_RUNPATH, 0x2, 0);
        let a = t.on_open(0, 0);
        assert_eq!((a.how, a.loader, a.step), (How::Needed, 0x2, Some(SearchStep::RpathRunpath)));
        t.on_activity(LA_ACT_CONSISTENT);
    }

    #[test]
    fn a_batch_in_another_namespace_is_dlmopen() {
        let mut t = Tracker::new();
        t.on_preinit();
        t.on_search(b"/abs/libfoo.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        let a = t.on_open(2, 0);
        assert_eq!((a.how, a.step), (How::Dlmopen, Some(SearchStep::Direct)));
    }

    #[test]
    fn a_redirected_request_remembers_what_was_asked() {
        let mut t = Tracker::new();
        t.on_preinit();
        t.on_search(b"libcudart.so.12", LA_SER_ORIG, 0x1, 0);
        t.mark_redirected();
        t.on_activity(LA_ACT_ADD);
        let a = t.on_open(0, 0);
        assert_eq!(a.redirected_from, Some(&b"libcudart.so.12"[..]));
        assert_eq!(a.step, Some(SearchStep::Direct));
        t.on_search(b"libx.so", LA_SER_ORIG, 0x1, 0);
        assert_eq!(t.on_open(0, 0).redirected_from, None);
    }

    #[test]
    fn a_request_that_mapped_nothing_is_handed_out_once_with_its_last_candidate() {
        let mut t = Tracker::new();
        t.on_preinit();
        t.on_search(b"libcudnn.so.9", LA_SER_ORIG, 0x7, 0);
        t.on_search(b"/a/libcudnn.so.9", LA_SER_RUNPATH, 0x7, 0);
        t.on_search(b"/usr/lib/libcudnn.so.9", LA_SER_DEFAULT, 0x7, 0);
        let u = t.take_unanswered();
        assert_eq!(
            u,
            Some(Unanswered {
                request: b"libcudnn.so.9",
                loader: 0x7,
                last_candidate: Some(b"/usr/lib/libcudnn.so.9"),
                how: How::Dlopen
            })
        );
        assert_eq!(t.take_unanswered(), None);
        // A refused request was reported as a denial, not as a failure.
        t.on_search(b"libcudnn.so.9", LA_SER_ORIG, 0x7, 0);
        t.mark_refused();
        assert_eq!(t.take_unanswered(), None);
        // A request that mapped an object is not unanswered.
        t.on_search(b"/x/libcublas.so.12", LA_SER_ORIG, 0x7, 0);
        t.on_activity(LA_ACT_ADD);
        t.on_open(0, 0);
        assert_eq!(t.take_unanswered(), None);
    }

    #[test]
    fn a_request_is_used_once() {
        let mut t = Tracker::new();
        t.on_preinit();
        t.on_search(b"libx.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        assert!(t.on_open(0, 0).request.is_some());
        assert_eq!(t.on_open(0, 0).request, None);
    }

    #[test]
    fn a_fork_drops_a_half_done_load() {
        let mut t = Tracker::new();
        t.on_preinit();
        t.on_search(b"libx.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        t.reset_after_fork();
        let a = t.on_open(0, 0);
        assert_eq!((a.how, a.request), (How::Needed, None));
    }

    #[test]
    fn overlong_names_are_truncated_not_overflowed() {
        let mut t = Tracker::new();
        let long = [b'a'; NAME_CAP + 10];
        t.on_search(&long, LA_SER_ORIG, 0, 0);
        assert_eq!(t.on_open(0, 0).request.map(<[u8]>::len), Some(NAME_CAP));
    }
}
