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
#[cfg(test)]
pub const LA_ACT_DELETE: u32 = 2;

/// Long enough for PATH_MAX.
const NAME_CAP: usize = 4096;

pub struct Tracker {
    /// The loader has mapped the program's initial objects (its first
    /// `LA_ACT_CONSISTENT` of the program's namespace; another audit
    /// module's namespace has its own before): later loads are not
    /// `initial`. Constructors, which run before `la_preinit`, `dlopen` as
    /// the program does.
    started: bool,
    /// The current batch began with LA_ACT_ADD and its first object is still
    /// to come.
    root_pending: bool,
    /// Between LA_ACT_ADD and LA_ACT_CONSISTENT: a search now is for a
    /// DT_NEEDED of the object being loaded.
    in_batch: bool,
    request: Request,
    batch: Batch,
}

/// Where the latest `dlopen` batch stands, to tell a load that mapped and
/// then failed. glibc (2.31 and 2.36 alike) tears a failed batch down with
/// `la_objclose` for each of its objects, the first one asked for first,
/// then `LA_ACT_DELETE` and `LA_ACT_CONSISTENT`:
/// * a missing version node or a missing dependency fails before the
///   batch's `LA_ACT_CONSISTENT`: a close then is a certain failure;
/// * an undefined symbol under `-z now` or `RTLD_NOW` fails in relocation,
///   after `LA_ACT_CONSISTENT`, with nothing in between. A `dlopen`
///   followed at once by `dlclose` looks exactly the same, so such a close
///   is only suspect: a close from inside the program's `dlclose`
///   (`dlclose`) is one, otherwise the object's RELRO (`relro`) tells the
///   two apart, and where it cannot, `dlerror`'s text decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Between LA_ACT_ADD and LA_ACT_CONSISTENT.
    Adding,
    /// LA_ACT_CONSISTENT ended the batch, and nothing happened since.
    Settled,
    /// The batch's first object was closed: its teardown.
    Closing,
}

struct Batch {
    phase: Phase,
    /// The link map of the batch's first object (the one asked for).
    root: usize,
    /// Its request, kept from the searches of its dependencies.
    name: [u8; NAME_CAP],
    len: usize,
    asked: bool,
    loader: usize,
    how: How,
    lmid: i64,
    t0_ns: u64,
}

/// The object a batch was opened for, as it arrived.
#[derive(Debug, PartialEq)]
pub struct Root<'a> {
    pub request: Option<&'a [u8]>,
    pub loader: usize,
    pub how: How,
    pub lmid: i64,
    pub dur_ns: u64,
}

/// What a `la_objclose` means for the latest batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Nothing to do with a failure.
    Other,
    /// The batch's first object, unmapped before the batch was consistent:
    /// the load failed.
    FailedRoot,
    /// The batch's first object, unmapped right after the batch became
    /// consistent: a failed relocation or a `dlclose`.
    SuspectRoot,
    /// Another object unmapped in the same teardown.
    Member,
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
            batch: Batch {
                phase: Phase::Idle,
                root: 0,
                name: [0; NAME_CAP],
                len: 0,
                asked: false,
                loader: 0,
                how: How::Dlopen,
                lmid: 0,
                t0_ns: 0,
            },
        }
    }

    pub fn on_search(&mut self, name: &[u8], flag: u32, loader: usize, now_ns: u64) {
        if flag == LA_SER_ORIG {
            self.settle();
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
        if !core::mem::take(&mut self.request.live) {
            return None;
        }
        self.unanswered_of()
    }

    /// The current request, if the loader has mapped nothing for it (so
    /// far); it stays the current one.
    pub fn unanswered_now(&self) -> Option<Unanswered<'_>> {
        if !self.request.live {
            return None;
        }
        self.unanswered_of()
    }

    /// Drops the current request (answered by other means).
    pub fn forget_request(&mut self) {
        self.request.live = false;
    }

    fn unanswered_of(&self) -> Option<Unanswered<'_>> {
        let r = &self.request;
        if r.redirected || r.refused {
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
                self.batch.phase = Phase::Adding;
                self.batch.root = 0;
            }
            LA_ACT_CONSISTENT => {
                self.root_pending = false;
                self.in_batch = false;
                self.batch.phase = match self.batch.phase {
                    Phase::Adding if self.batch.root != 0 => Phase::Settled,
                    _ => Phase::Idle,
                };
            }
            _ => {}
        }
    }

    /// Something happened after the batch settled: it is done.
    fn settle(&mut self) {
        if self.batch.phase == Phase::Settled {
            self.batch.phase = Phase::Idle;
        }
    }

    /// The loader unmaps the object whose link map is `map`.
    pub fn on_close(&mut self, map: usize) -> Close {
        let b = &mut self.batch;
        if map != 0 && map == b.root {
            let close = match b.phase {
                Phase::Adding => Close::FailedRoot,
                Phase::Settled => Close::SuspectRoot,
                _ => return Close::Other,
            };
            b.phase = Phase::Closing;
            b.root = 0;
            return close;
        }
        if b.phase == Phase::Closing {
            return Close::Member;
        }
        self.settle();
        Close::Other
    }

    /// The object the latest batch was opened for.
    pub fn batch_root(&self, now_ns: u64) -> Root<'_> {
        let b = &self.batch;
        Root {
            request: b.asked.then_some(&b.name[..b.len]),
            loader: b.loader,
            how: b.how,
            lmid: b.lmid,
            dur_ns: now_ns.saturating_sub(b.t0_ns),
        }
    }

    /// The initial objects are mapped: the loader's first
    /// `LA_ACT_CONSISTENT` of the program's own namespace, or `la_preinit`
    /// at the latest.
    pub fn on_started(&mut self) {
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
    pub fn on_open(&mut self, map: usize, lmid: i64, now_ns: u64) -> Arrival<'_> {
        self.settle();
        let root = self.started && core::mem::take(&mut self.root_pending);
        let how = if !self.started {
            How::Initial
        } else if root {
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
        if root {
            let b = &mut self.batch;
            b.root = map;
            b.asked = live;
            b.len = if live { r.len } else { 0 };
            b.name[..b.len].copy_from_slice(&r.name[..b.len]);
            b.loader = if live { r.loader } else { 0 };
            b.how = how;
            b.lmid = lmid;
            b.t0_ns = if live { r.t0_ns } else { now_ns };
        }
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
    /// A load or a close is under way: a request searched for and not yet
    /// answered, or a batch not yet consistent. A child forked now may have
    /// objects mapped that `la_objopen` has not announced yet.
    pub fn loading(&self) -> bool {
        self.request.live || self.in_batch
    }

    pub fn reset_after_fork(&mut self) {
        self.root_pending = false;
        self.in_batch = false;
        self.request.live = false;
        self.batch.phase = Phase::Idle;
        self.batch.root = 0;
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
        let a = t.on_open(0x100, 0, 0);
        assert_eq!((a.how, a.request), (How::Initial, None));
        t.on_search(b"libcudart.so.12", LA_SER_ORIG, 0x10, 100);
        t.on_search(b"/lib/libcudart.so.12", LA_SER_CONFIG, 0x10, 150);
        let a = t.on_open(0x100, 0, 400);
        assert_eq!(a.how, How::Initial);
        assert_eq!(a.request, Some(&b"libcudart.so.12"[..]));
        assert_eq!((a.loader, a.step, a.dur_ns), (0x10, Some(SearchStep::LdSoCache), 300));
    }

    #[test]
    fn first_object_of_a_batch_is_the_dlopen_target_the_rest_are_needed() {
        let mut t = Tracker::new();
        t.on_started();
        t.on_search(b"libtorch_cuda.so", LA_SER_ORIG, 0x1, 0);
        t.on_search(b"/w/torch/lib/libtorch_cuda.so", LA_SER_RUNPATH, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        assert_eq!(t.on_open(0x100, 0, 0).how, How::Dlopen);
        t.on_search(b"libcudart.so.12", LA_SER_ORIG, 0x2, 0);
        t.on_search(b"/w/nvidia/cuda_runtime/lib/libcudart.so.12", LA_SER_RUNPATH, 0x2, 0);
        let a = t.on_open(0x100, 0, 0);
        assert_eq!((a.how, a.loader, a.step), (How::Needed, 0x2, Some(SearchStep::RpathRunpath)));
        t.on_activity(LA_ACT_CONSISTENT);
    }

    #[test]
    fn once_the_initial_objects_are_consistent_a_constructors_dlopen_is_a_dlopen() {
        let mut t = Tracker::new();
        t.on_activity(LA_ACT_ADD);
        t.on_search(b"libcudart.so.12", LA_SER_ORIG, 0x1, 0);
        assert_eq!(t.on_open(0x100, 0, 0).how, How::Initial);
        t.on_activity(LA_ACT_CONSISTENT);
        t.on_started();
        // A constructor runs, before la_preinit.
        t.on_search(b"/w/libcublas.so.12", LA_SER_ORIG, 0x100, 0);
        t.on_activity(LA_ACT_ADD);
        let a = t.on_open(0x200, 0, 0);
        assert_eq!((a.how, a.request), (How::Dlopen, Some(&b"/w/libcublas.so.12"[..])));
        t.on_activity(LA_ACT_CONSISTENT);
    }

    #[test]
    fn a_batch_in_another_namespace_is_dlmopen() {
        let mut t = Tracker::new();
        t.on_started();
        t.on_search(b"/abs/libfoo.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        let a = t.on_open(0x100, 2, 0);
        assert_eq!((a.how, a.step), (How::Dlmopen, Some(SearchStep::Direct)));
    }

    #[test]
    fn a_redirected_request_remembers_what_was_asked() {
        let mut t = Tracker::new();
        t.on_started();
        t.on_search(b"libcudart.so.12", LA_SER_ORIG, 0x1, 0);
        t.mark_redirected();
        t.on_activity(LA_ACT_ADD);
        let a = t.on_open(0x100, 0, 0);
        assert_eq!(a.redirected_from, Some(&b"libcudart.so.12"[..]));
        assert_eq!(a.step, Some(SearchStep::Direct));
        t.on_search(b"libx.so", LA_SER_ORIG, 0x1, 0);
        assert_eq!(t.on_open(0x100, 0, 0).redirected_from, None);
    }

    #[test]
    fn a_request_that_mapped_nothing_is_handed_out_once_with_its_last_candidate() {
        let mut t = Tracker::new();
        t.on_started();
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
        t.on_open(0x100, 0, 0);
        assert_eq!(t.take_unanswered(), None);
    }

    #[test]
    fn a_request_is_used_once() {
        let mut t = Tracker::new();
        t.on_started();
        t.on_search(b"libx.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        assert!(t.on_open(0x100, 0, 0).request.is_some());
        assert_eq!(t.on_open(0x100, 0, 0).request, None);
    }

    #[test]
    fn a_fork_drops_a_half_done_load() {
        let mut t = Tracker::new();
        t.on_started();
        t.on_search(b"libx.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        t.reset_after_fork();
        let a = t.on_open(0x100, 0, 0);
        assert_eq!((a.how, a.request), (How::Needed, None));
    }

    #[test]
    fn overlong_names_are_truncated_not_overflowed() {
        let mut t = Tracker::new();
        let long = [b'a'; NAME_CAP + 10];
        t.on_search(&long, LA_SER_ORIG, 0, 0);
        assert_eq!(t.on_open(0x100, 0, 0).request.map(<[u8]>::len), Some(NAME_CAP));
    }

    /// A dlopen batch as glibc 2.31 and 2.36 report it, up to its first
    /// object's `la_objclose`.
    fn batch(t: &mut Tracker, consistent_first: bool) -> Close {
        t.on_search(b"/w/libcudnn_cnn_infer.so.8", LA_SER_ORIG, 0x1, 10);
        t.on_activity(LA_ACT_ADD);
        t.on_open(0xa, 0, 30);
        t.on_search(b"libcudnn_ops_infer.so.8", LA_SER_ORIG, 0xa, 40);
        t.on_open(0xb, 0, 50);
        if consistent_first {
            t.on_activity(LA_ACT_CONSISTENT);
        }
        t.on_close(0xa)
    }

    #[test]
    fn a_close_before_the_batch_is_consistent_is_a_failure_after_it_only_suspect() {
        let mut t = Tracker::new();
        t.on_started();
        assert_eq!(batch(&mut t, false), Close::FailedRoot);
        let root = t.batch_root(70);
        assert_eq!(root.request, Some(&b"/w/libcudnn_cnn_infer.so.8"[..]));
        assert_eq!((root.loader, root.how, root.dur_ns), (0x1, How::Dlopen, 60));
        assert_eq!(t.on_close(0xb), Close::Member);
        t.on_activity(LA_ACT_DELETE);
        t.on_activity(LA_ACT_CONSISTENT);
        assert_eq!(t.on_close(0xb), Close::Other);

        let mut t = Tracker::new();
        t.on_started();
        assert_eq!(batch(&mut t, true), Close::SuspectRoot);
    }

    #[test]
    fn a_close_after_anything_else_happened_is_no_failure() {
        let mut t = Tracker::new();
        t.on_started();
        t.on_search(b"/w/liba.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        t.on_open(0xa, 0, 0);
        t.on_activity(LA_ACT_CONSISTENT);
        // The program went on loading: the batch is done.
        t.on_search(b"libz.so", LA_SER_ORIG, 0x1, 0);
        assert_eq!(t.on_close(0xa), Close::Other);
        // A close of another object right after a batch settles it too.
        t.on_search(b"/w/libb.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        t.on_open(0xc, 0, 0);
        t.on_activity(LA_ACT_CONSISTENT);
        assert_eq!(t.on_close(0x99), Close::Other);
        assert_eq!(t.on_close(0xc), Close::Other);
    }

    #[test]
    fn a_dependency_not_found_is_the_current_request_when_the_batch_fails() {
        let mut t = Tracker::new();
        t.on_started();
        t.on_search(b"/w/libneedy.so", LA_SER_ORIG, 0x1, 0);
        t.on_activity(LA_ACT_ADD);
        t.on_open(0xa, 0, 0);
        t.on_search(b"libabsent.so", LA_SER_ORIG, 0xa, 0);
        t.on_search(b"/usr/lib/libabsent.so", LA_SER_DEFAULT, 0xa, 0);
        assert_eq!(t.on_close(0xa), Close::FailedRoot);
        let u = t.unanswered_now().map(|u| (u.request.to_vec(), u.how));
        assert_eq!(u, Some((b"libabsent.so".to_vec(), How::Needed)));
        t.forget_request();
        assert_eq!(t.take_unanswered(), None);
    }
}
