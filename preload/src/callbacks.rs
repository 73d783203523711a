//! What each loader callback does, once `exports.rs` has caught panics and
//! decoded the loader's arguments: feed the tracker, apply the pin
//! decision, write the events.

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::sync::atomic::Ordering;

use culaunch_protocol::catalogue;
use culaunch_protocol::event::{FailReason, How};

use crate::config::{Config, Pin};
use crate::decide::{decide, Decision, Refusal};
use crate::dlerror::{self, Said};
use crate::events::{self, Load, Scratch};
use crate::events::{Error, Failed};
use crate::failure::{Failure, Teardown, Words};
use crate::global::{State, PINNED_SLOTS, PROCESS, REFUSAL_CAP};
use crate::linkmap::{self, LinkMap, Object};
use crate::objects::{stem_hash, Entry, Objects};
use crate::paths::{self, PATH_MAX};
use crate::tracker::{Close, Tracker, Unanswered, LA_ACT_ADD, LA_SER_ORIG};
use crate::{clock, exec, libc_hooks, relro, sink};
use crate::{dlclose, dlmopen};

/// What `la_objsearch` hands back to the loader.
pub enum SearchAnswer {
    /// The name it was given: search as without culaunch.
    AsAsked,
    /// NULL: this candidate of a refused request is not to be tried.
    Skip,
    /// Another name: a pinned path, or a refusal text no file has.
    Instead(*const c_char),
}

/// `la_version`: the process's first event.
pub fn process_started(config: &Config) {
    if let Some(mut st) = state() {
        events::process_start(config, &mut st.scratch, false);
    }
}

/// `la_objsearch`: a request (`LA_SER_ORIG`) or one of its candidates.
pub fn search(config: &Config, request_c: &CStr, flag: c_uint, loader: usize) -> SearchAnswer {
    let request = request_c.to_bytes();
    track_search(config, request, flag, loader);
    if flag != LA_SER_ORIG {
        let refusing = PROCESS.refusing.load(Ordering::Relaxed);
        return if refusing { SearchAnswer::Skip } else { SearchAnswer::AsAsked };
    }
    PROCESS.refusing.store(false, Ordering::Relaxed);
    match answer(config, request_c, loader, true) {
        Answer::AsAsked => SearchAnswer::AsAsked,
        Answer::Redirect(pinned) => SearchAnswer::Instead(pinned),
        Answer::Refuse(why) => {
            // Its candidates are refused too.
            PROCESS.refusing.store(true, Ordering::Relaxed);
            let Some(mut text) = PROCESS.refusal.try_lock() else { return SearchAnswer::Skip };
            let answer = refusal_text(config, request, loader, why, true, &mut text);
            SearchAnswer::Instead(answer)
        }
    }
}

/// What the pins and `--strict` make of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Search for it as without culaunch.
    AsAsked,
    /// Open this pinned path instead.
    Redirect(*const c_char),
    /// Refuse it; [`refusal_text`] says why.
    Refuse(Refusal),
}

/// The answer to request `request_c` of `loader` (0: none), from the pins
/// and `--strict`. `by_search`: asked in `la_objsearch`, under the loader's
/// lock, whose tracker follows the request (the `dlmopen` wrapper asks
/// before that lock is taken, and leaves the tracker, whose request another
/// thread may be searching, alone).
pub fn answer(config: &Config, request_c: &CStr, loader: usize, by_search: bool) -> Answer {
    let request = request_c.to_bytes();
    if config.pins.is_empty() && !config.strict {
        return Answer::AsAsked;
    }
    // Decided from the configuration alone, which never changes: a pin
    // holds whatever the state's lock is doing.
    let pins = config.pins.iter().map(|p| p.soname.as_slice());
    let pin_mapped = |n: usize| pin_is_mapped(n, loader);
    match decide(request, pins, config.strict, |n| is_pinned_file(request_c, &config.pins[n]), pin_mapped) {
        Decision::Pass => Answer::AsAsked,
        Decision::Redirect(n) => {
            // A lock vouches for the file it hashed, not for its path.
            let pin = &config.pins[n];
            if pin.locked.is_some_and(|f| paths::locked_file(&pin.path) != Some(f)) {
                return Answer::Refuse(Refusal::Replaced(n));
            }
            if by_search {
                if let Some(mut st) = state() {
                    st.tracker.mark_redirected();
                }
            }
            Answer::Redirect(config.pins[n].path.as_ptr())
        }
        Decision::OtherMajor(n) => {
            other_major(config, &config.pins[n], request, loader);
            Answer::AsAsked
        }
        Decision::Refuse(why) => Answer::Refuse(why),
    }
}

fn track_search(config: &Config, request: &[u8], flag: c_uint, loader: usize) {
    let now = clock::now_monotonic_ns();
    let Some(mut st) = state() else { return };
    let State { tracker, scratch, failure, .. } = &mut *st;
    if flag == LA_SER_ORIG {
        // A new request: whatever failed before was not asked about.
        flush_failure(config, scratch, failure);
        if let Some(u) = tracker.take_unanswered() {
            report_unanswered(config, scratch, &u);
        }
    }
    tracker.on_search(request, flag, loader, now);
    note_pending(tracker, failure);
}

/// Tells the `dlerror` wrapper whether there is anything for it to look at.
fn note_pending(tracker: &Tracker, failure: &Failure) {
    let pending = failure.held || tracker.unanswered_now().is_some();
    PROCESS.failure_pending.store(pending, Ordering::Relaxed);
}

/// Whether pin `n`'s file is mapped in the namespace of `loader` (the
/// requester's link map): one of the loader's own list for that namespace
/// (which `la_objsearch` runs under the loader's lock) that `la_objopen`
/// found to be pin `n`'s file. Asked only for a wheel's hashed copy.
fn pin_is_mapped(n: usize, loader: usize) -> bool {
    let is_pin_n = |map: usize| {
        (0..PINNED_SLOTS).any(|i| {
            PROCESS.pinned_maps[i].load(Ordering::Relaxed) == map
                && PROCESS.pinned_which[i].load(Ordering::Relaxed) == n + 1
        })
    };
    // SAFETY: the cookie is a live link map (set in la_objopen), and the
    // loader holds its lock while it calls la_objsearch.
    unsafe { linkmap::any_in_namespace(loader as *const LinkMap, |map| is_pin_n(map as usize)) }
}

/// `la_objopen` of `object`, whose file is `id` when already known: remember
/// it if it is a pinned file.
fn note_if_pinned(config: &Config, object: &Object<'_>, id: Option<(u64, u64)>) {
    if config.pins.is_empty() || !object.is_file() {
        return;
    }
    let Some(id) = id.or_else(|| paths::file_id(object.name)) else { return };
    let Some(n) = config.pins.iter().position(|p| p.dev != 0 && (p.dev, p.ino) == id) else { return };
    if let Some(i) = (0..PINNED_SLOTS).find(|&i| PROCESS.pinned_which[i].load(Ordering::Relaxed) == 0) {
        PROCESS.pinned_maps[i].store(object.map, Ordering::Relaxed);
        PROCESS.pinned_which[i].store(n + 1, Ordering::Relaxed);
    }
}

/// `la_objclose` of `map`: no longer a mapped pinned file.
fn forget_if_pinned(map: usize) {
    for i in 0..PINNED_SLOTS {
        if PROCESS.pinned_maps[i].load(Ordering::Relaxed) == map {
            PROCESS.pinned_which[i].store(0, Ordering::Relaxed);
            PROCESS.pinned_maps[i].store(0, Ordering::Relaxed);
        }
    }
}

/// `request`, a path, names the pinned file itself (for a lock's pin: the
/// very file the lock's check read, unchanged).
fn is_pinned_file(request: &CStr, pin: &Pin) -> bool {
    match pin.locked {
        Some(f) => paths::locked_file(request) == Some(f),
        None => paths::file_id(request).is_some_and(|id| id == (pin.dev, pin.ino)),
    }
}

#[inline(never)]
fn other_major(config: &Config, pin: &Pin, request: &[u8], loader: usize) {
    let Some(mut st) = state() else { return };
    let Scratch { line, caller, .. } = &mut st.scratch;
    let caller = path_of_loader(loader, caller);
    let family = catalogue::family(request).unwrap_or("");
    events::conflict_with_pin(config, line, family, pin.path.as_bytes(), request, caller);
}

/// The module's state. Audit callbacks run one at a time under the
/// loader's lock; the holders outside it (a `dlmopen` of a path refused
/// before that lock is taken, the `dlerror`, exit and fork handlers) hold
/// it for one event's write, so everyone waits for them: a callback that
/// gave up would miss a load, or leave in the table an object the loader
/// then frees. A quarter second at most, and not at all when the holder is
/// this very thread, interrupted by a signal whose handler loads a library:
/// that load's events are then lost.
fn state() -> Option<crate::lock::TryGuard<'static, State>> {
    PROCESS.state.lock_within(STATE_WAIT_NS)
}

const STATE_WAIT_NS: u64 = 250_000_000;

/// The refusal of `request` (asked by the object whose link map is
/// `loader`, 0 when not known) for `why`, written into `text`: a name that
/// starts with "culaunch:" and cannot be opened, so that dlerror() reads
/// "culaunch: … : cannot open shared object file". The `deny` event is
/// written too. While the loader maps the program's initial objects there
/// is no caller to tell: the process ends with status 125 and the same
/// words. `by_search`: asked in `la_objsearch` (see [`answer`]).
pub fn refusal_text(
    config: &Config,
    request: &[u8],
    loader: usize,
    why: Refusal,
    by_search: bool,
    text: &mut [u8; REFUSAL_CAP],
) -> *const c_char {
    let mut st = state();
    let mut no_room = [0u8; 0];
    let (caller, rule_buf, line) = match st.as_deref_mut() {
        Some(State { tracker, scratch, .. }) => {
            if by_search {
                tracker.mark_refused();
            }
            let Scratch { line, other, caller, .. } = scratch;
            (path_of_loader(loader, caller), &mut other[..], &mut line[..])
        }
        None => (None, &mut no_room[..], &mut [][..]),
    };
    let rule = match why {
        Refusal::NotPinned => &b"--strict: no pin or lock entry allows it"[..],
        Refusal::OtherMajor(n) => concat_into(
            rule_buf,
            &[
                b"--strict: another major of pinned ",
                &config.pins[n].soname,
                b" (",
                config.pins[n].path.as_bytes(),
                b")",
            ],
        ),
        Refusal::VendoredAfterPin(n) => concat_into(
            rule_buf,
            &[
                b"--strict: a wheel's hashed copy of pinned ",
                &config.pins[n].soname,
                b" (",
                config.pins[n].path.as_bytes(),
                b"), asked for once that file is loaded: the loader cannot give it the copy's name, which the requester's symbol versions name",
            ],
        ),
        Refusal::Replaced(n) => concat_into(
            rule_buf,
            &[
                b"--locked: ",
                config.pins[n].path.as_bytes(),
                b" is not the file whose sha256 the lock holds (it was replaced or changed after the check)",
            ],
        ),
    };
    let parts: [&[u8]; 6] = [b"culaunch: refused ", request, b", requested by ", caller.unwrap_or(b"?"), b": ", rule];
    // Keep the last byte for the NUL.
    let n = concat_into(&mut text[..REFUSAL_CAP - 1], &parts).len();
    text[n] = 0;
    if !line.is_empty() {
        events::deny(config, line, request, caller, rule);
    }
    if !PROCESS.started.load(Ordering::Relaxed) {
        // SAFETY: writing a valid buffer to stderr, then ending the process
        // as the contract says for a refusal before main.
        unsafe {
            crate::sys::write(2, text.as_ptr().cast(), n);
            crate::sys::write(2, b"\n".as_ptr().cast(), 1);
            libc::_exit(125);
        }
    }
    text.as_ptr().cast()
}

/// Copies `parts` one after another into `buf`, cutting what does not fit.
fn concat_into<'b>(buf: &'b mut [u8], parts: &[&[u8]]) -> &'b [u8] {
    let mut len = 0;
    for part in parts {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    &buf[..len]
}

/// `la_activity` of the namespace whose first object's link map is `head`.
pub fn activity(flag: c_uint, head: usize) {
    // The program's own namespace is consistent: its initial objects are
    // mapped, and a refusal from now on has a caller to answer (a
    // constructor's `dlopen` included). Another audit module's namespace
    // is consistent before, when that module is loaded.
    let initial_done = flag == crate::tracker::LA_ACT_CONSISTENT
        && head != 0
        && head == PROCESS.main_map.load(Ordering::Relaxed)
        && !PROCESS.started.swap(true, Ordering::Relaxed);
    let Some(mut st) = state() else { return };
    let State { tracker, scratch, failure, objects } = &mut *st;
    if initial_done {
        tracker.on_started();
    }
    if flag == LA_ACT_ADD {
        if let Some(config) = crate::config::get() {
            flush_failure(config, scratch, failure);
        }
    }
    if flag == crate::tracker::LA_ACT_CONSISTENT {
        objects.forget_closed();
    }
    tracker.on_activity(flag);
    note_pending(tracker, failure);
}

/// `la_objopen`'s answer: symbol-binding callbacks (`la_symbind64`) for
/// bindings from the program's objects to its libc, and nothing else.
pub fn bind_flags(object: &Object<'_>, lmid: libc::c_long) -> c_uint {
    const LA_FLG_BINDTO: c_uint = 0x01;
    const LA_FLG_BINDFROM: c_uint = 0x02;
    if lmid != 0 {
        return 0;
    }
    // Before glibc 2.34, `dlerror` lives in libdl.
    match object.soname {
        Some(b"libc.so.6" | b"libdl.so.2") => LA_FLG_BINDTO,
        _ => LA_FLG_BINDFROM,
    }
}

/// `la_objopen`: the loader mapped `object` in namespace `lmid`.
pub fn opened(config: &Config, object: &Object<'_>, lmid: libc::c_long) {
    let now = clock::now_monotonic_ns();
    // The vDSO answers no request: the loader announces it after
    // LD_PRELOAD's entries, the last of which may have just failed.
    if !object.is_file() && !object.name.to_bytes().is_empty() {
        return;
    }
    let Some(mut st) = state() else {
        // Whether it is a pinned file must be known whatever the lock does.
        note_if_pinned(config, object, None);
        return;
    };
    let State { tracker, objects, scratch, failure } = &mut *st;
    let arrival = tracker.on_open(object.map, lmid, now);
    // A pin the dlmopen trampoline applied: the loader was asked nothing.
    let unasked_redirect = match (arrival.request, arrival.how) {
        (None, How::Dlopen | How::Dlmopen) => dlmopen::take_redirect(),
        _ => None,
    };
    // The request is answered.
    PROCESS.failure_pending.store(failure.held, Ordering::Relaxed);
    // The program itself (""), and the vDSO (no file), are not loads.
    if !object.is_file() {
        return;
    }
    let name = object.name;
    let family = object.soname.and_then(catalogue::family).or_else(|| catalogue::family(name.to_bytes()));
    // A library that needs CUDA libraries is reported too: the diagnoses
    // compare what it was shipped with and what it got.
    let untold = family.is_none() && !config.all_libs && !object.any_needed(|n| catalogue::family(n).is_some());
    // A pin may name a library outside CUDA: with pins, such a load is
    // kept until it is known whether it is a pinned file.
    if untold && config.pins.is_empty() {
        return;
    }
    let Scratch { line, object: object_buf, caller, other, .. } = scratch;
    let resolved = paths::resolve(name, object_buf);
    let (path, id) = match &resolved {
        Some(r) => (r.path, r.id),
        None => (name.to_bytes(), (0, object.map as u64)),
    };
    note_if_pinned(config, object, resolved.as_ref().map(|r| r.id));
    let caller = path_of_loader(arrival.loader, caller);
    let cuda_stem = family.map(|_| stem_hash(catalogue::stem(object.soname.unwrap_or(name.to_bytes()))));
    let entry = Entry { map: object.map, dev: id.0, ino: id.1, cuda_stem, dynamic: object.l_ld(), closing: false };
    if untold && !is_pinned(config, &entry) {
        return;
    }
    let earlier = family.and(objects.conflicting(&entry).copied());
    // In the table before its event is written: a child that another
    // thread forks meanwhile has it mapped, and inherits it.
    let tracked = objects.add(entry);
    // SAFETY: the program's name for its dlmopen, which is still running.
    let unasked =
        unasked_redirect.filter(|_| is_pinned(config, &entry)).map(|r| unsafe { CStr::from_ptr(r.request) }.to_bytes());
    let load = Load {
        request: arrival.request.or(unasked),
        how: arrival.how,
        caller,
        path,
        soname: object.soname,
        family,
        step: arrival.step,
        lmid,
        dur_ns: arrival.dur_ns,
        pinned: is_pinned(config, &entry),
        redirected_from: arrival.redirected_from.or(unasked),
        file: resolved.as_ref().map(|r| r.id),
    };
    events::load(config, line, &load);
    if let (Some(family), Some(earlier)) = (family, earlier) {
        // SAFETY: tracked objects are live: la_objclose removes them.
        let earlier_name = unsafe { linkmap::name(earlier.map as *const LinkMap) };
        let earlier_path = paths::resolve(earlier_name, other).map(|r| r.path).unwrap_or(earlier_name.to_bytes());
        events::conflict(config, line, family, earlier_path, path);
    }
    if !tracked {
        sink::warn_once(config, b"too many objects to track; conflicts may be missed");
    }
}

/// `la_objclose`. Under the loader's lock: this misses only while the
/// `dlerror` wrapper or the exit handler holds the state for an instant
/// (a freed link map then stays in the table, as an object not unmapped).
pub fn closed(map: usize) {
    forget_if_pinned(map);
    let Some(mut st) = state() else { return };
    let State { tracker, objects, scratch, failure } = &mut *st;
    let reported = objects.closing(map);
    let close = tracker.on_close(map);
    let Some(config) = crate::config::get() else { return };
    match close {
        Close::Other => return,
        Close::FailedRoot | Close::SuspectRoot => {
            flush_failure(config, scratch, failure);
            // SAFETY: in la_objclose the object is still mapped.
            let object = unsafe { Object::decode(map as *const LinkMap) };
            // Right after the batch became consistent, a failed relocation
            // or a `dlopen` the program closed at once. Outside a `dlclose`
            // of the program's, a RELRO the loader never write-protected
            // says the first. Otherwise `dlerror`'s text decides, as a
            // failure after relocation (out of memory) leaves it protected.
            let teardown = if close == Close::FailedRoot {
                Teardown::BeforeConsistent
            } else if !dlclose::inside() && relro::relocation_finished(object.l_addr, object.l_ld()) == Some(false) {
                Teardown::Unrelocated
            } else {
                Teardown::Suspect
            };
            begin_failure(config, tracker, scratch, failure, &object, teardown, reported);
        }
        Close::Member if failure.held => {
            // SAFETY: as above.
            let object = unsafe { Object::decode(map as *const LinkMap) };
            failure.add_name(object.name.to_bytes());
            if reported {
                failure.reported = true;
                let path = paths::resolve(object.name, &mut scratch.object).map(|r| r.path);
                failure.add_unmapped(path.unwrap_or(object.name.to_bytes()));
            }
        }
        Close::Member => {}
    }
    note_pending(tracker, failure);
}

/// The first object of a batch is being unmapped: hold what the event
/// will say until the program asks `dlerror`, or the next load, or exit.
#[inline(never)]
fn begin_failure(
    config: &Config,
    tracker: &mut Tracker,
    s: &mut Scratch,
    failure: &mut Failure,
    object: &Object<'_>,
    teardown: Teardown,
    reported: bool,
) {
    let root = tracker.batch_root(clock::now_monotonic_ns());
    failure.begin(teardown);
    failure.reported = reported || config.all_libs;
    failure.how = root.how;
    failure.lmid = root.lmid;
    failure.dur_ns = root.dur_ns;
    let path = paths::resolve(object.name, &mut s.object).map(|r| r.path).unwrap_or(object.name.to_bytes());
    failure.path.set(Some(path));
    failure.request.set(Some(root.request.unwrap_or(path)));
    failure.caller.set(path_of_loader(root.loader, &mut s.caller));
    failure.soname.set(object.soname);
    failure.family = object.soname.and_then(catalogue::family).or_else(|| catalogue::family(object.name.to_bytes()));
    failure.add_name(object.name.to_bytes());
    if teardown == Teardown::BeforeConsistent {
        // A DT_NEEDED the loader mapped nothing for: the likely cause (a
        // relocation that failed later answered every request).
        if let Some(u) = tracker.unanswered_now() {
            let probe = u.last_candidate.unwrap_or(u.request);
            failure.dependency_absent = paths::c_str(probe, &mut s.other).and_then(paths::file_id).is_none();
            failure.reported |= catalogue::family(u.request).is_some();
            failure.dependency.set(Some(u.request));
            failure.add_name(u.request);
        }
        tracker.forget_request();
    }
}

/// Writes a held failure with what the module knows (a suspect teardown
/// that `dlerror` never confirmed was a `dlclose`: nothing is written).
/// Called at the next request, the next batch, exit, exec, `_exit`;
/// `dlerror_said` first when the program asks.
fn flush_failure(config: &Config, s: &mut Scratch, failure: &mut Failure) {
    if let Some(j) = failure.judge(None) {
        write_failure(config, s, failure, &j, None);
    }
    failure.clear();
}

fn write_failure(config: &Config, s: &mut Scratch, f: &Failure, j: &crate::failure::Judged<'_>, said: Option<&[u8]>) {
    if !f.reported {
        return;
    }
    let error = match (&j.error, said, f.dependency.get()) {
        (Words::Said, Some(text), _) => Error::Said(text),
        (Words::NotFound, _, Some(dep)) => Error::NotFound(dep),
        _ => Error::Unknown,
    };
    let event = Failed {
        request: f.request.get().unwrap_or(b""),
        how: f.how,
        caller: f.caller.get(),
        path: f.path.get(),
        soname: f.soname.get(),
        family: f.family,
        error,
        reason: j.reason,
        symbol: j.symbol,
        version: j.version,
        required_by: j.required_by,
        dur_ns: f.dur_ns,
        lmid: f.lmid,
        unmapped: f.unmapped(),
    };
    events::load_failed(config, &mut s.line, event);
}

/// The program asked `dlerror` and got `text` while a failed load was
/// pending: glibc's own words for it. A text about anything else (a
/// `dlsym` error) changes nothing.
pub fn dlerror_said(text: &[u8]) {
    let Some(config) = crate::config::get() else { return };
    let Some(mut st) = state() else { return };
    let State { tracker, scratch, failure, .. } = &mut *st;
    let said = dlerror::parse(text);
    if failure.held {
        if let Some(j) = failure.judge(Some(&said)) {
            write_failure(config, scratch, failure, &j, Some(text));
            failure.clear();
        }
    } else if let Some(u) = tracker.unanswered_now() {
        if unanswered_failed(&u, &said) {
            let family = catalogue::family(u.request);
            if family.is_some() || config.all_libs {
                let Scratch { line, caller, .. } = scratch;
                let caller = path_of_loader(u.loader, caller);
                let event = Failed::nothing_mapped(u.request, u.how, caller, family, Error::Said(text), said.reason);
                events::load_failed(config, line, event);
            }
            tracker.forget_request();
        }
    }
    note_pending(tracker, failure);
}

/// `said` is the loader's answer to a request that mapped nothing: it names
/// the request, and says why no file could be opened (a symbol or version
/// text is about an object already mapped).
fn unanswered_failed(u: &Unanswered<'_>, said: &Said<'_>) -> bool {
    said.object == u.request
        && matches!(said.reason, FailReason::NotFound | FailReason::WrongClass | FailReason::Failed)
}

/// `la_preinit`: the program is loaded and about to run. Said in the
/// trace: a start-up the loader gives up on (a DT_NEEDED found nowhere, a
/// missing version) ends the process with no callback at all, and the
/// reader knows it by this event's absence.
///
/// # Safety
/// `main_map` must be the main program's live link map.
pub unsafe fn preinit(config: &Config, main_map: *mut LinkMap) {
    PROCESS.started.store(true, Ordering::Relaxed);
    // SAFETY: getpid cannot fail.
    PROCESS.pid.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    if let Some(mut st) = state() {
        st.tracker.on_started();
    }
    events::process_loaded(config);
    // SAFETY: the caller's contract.
    unsafe {
        libc_hooks::install(main_map, on_exit, after_fork_in_child);
        exec::set_environ(libc_hooks::environ_address(main_map));
    }
}

/// Registered with the program's libc: runs at `exit`, with its status.
extern "C" fn on_exit(status: c_int, _arg: *mut c_void) {
    crate::exports::guarded((), || {
        let Some(config) = crate::config::get() else { return };
        flush_pending(config);
        events::process_exit(config, status);
    })
}

/// The program is about to end without exit handlers (`_exit`) or to
/// become another program (`exec*`): what awaits `dlerror`'s words is
/// written now, or never. Not in a `vfork` child, which shares the
/// parent's state: the parent, which goes on, reports its own.
pub fn before_program_ends() {
    crate::exports::guarded((), || {
        let Some(config) = crate::config::get() else { return };
        // SAFETY: getpid cannot fail.
        if PROCESS.pid.load(Ordering::Relaxed) == unsafe { libc::getpid() } {
            flush_pending(config);
        }
    })
}

/// Writes a failed load (or a request that mapped nothing) that was never
/// asked about, with what the module knows. It takes the state only when
/// one is pending.
fn flush_pending(config: &Config) {
    if !PROCESS.failure_pending.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut st) = state() else { return };
    let State { tracker, scratch, failure, .. } = &mut *st;
    flush_failure(config, scratch, failure);
    if let Some(u) = tracker.take_unanswered() {
        report_unanswered(config, scratch, &u);
    }
    note_pending(tracker, failure);
}

/// Registered with the program's libc: runs in the child after `fork`.
extern "C" fn after_fork_in_child() {
    crate::exports::guarded((), || {
        let Some(config) = crate::config::get() else { return };
        // SAFETY: getpid cannot fail.
        PROCESS.pid.store(unsafe { libc::getpid() }, Ordering::Relaxed);
        // A parent thread that held the state is gone in the child.
        PROCESS.state.force_unlock_after_fork();
        PROCESS.refusal.force_unlock_after_fork();
        dlmopen::after_fork();
        let Some(mut st) = state() else { return };
        let State { tracker, objects, scratch, failure } = &mut *st;
        let loading = tracker.loading();
        tracker.reset_after_fork();
        // The parent reports its own failed load.
        failure.clear();
        PROCESS.failure_pending.store(false, Ordering::Relaxed);
        events::process_start(config, scratch, true);
        // Forked in the middle of another thread's dlclose: what it had not
        // unmapped yet is this child's for good.
        objects.settle_after_fork(|e| relro::file_mapped_at(e.dynamic, e.ino));
        for e in objects.iter() {
            inherited(config, scratch, e);
        }
        if loading {
            mapped_unannounced(config, scratch, objects);
        }
    })
}

/// Reports a request that mapped nothing, when it plainly failed: the last
/// place the loader tried (or the path asked for) does not exist. Anything
/// else (an object already mapped under another name, a candidate of another
/// class) is not claimed as a failure.
#[inline(never)]
fn report_unanswered(config: &Config, s: &mut Scratch, u: &Unanswered<'_>) {
    let family = catalogue::family(u.request);
    if family.is_none() && !config.all_libs {
        return;
    }
    let probe = u.last_candidate.unwrap_or(u.request);
    if paths::c_str(probe, &mut s.object).and_then(paths::file_id).is_some() {
        return;
    }
    let caller = path_of_loader(u.loader, &mut s.caller);
    // Before `main`, only a preload's failure lets the process go on: the
    // loader said so on stderr, in its own words.
    let error = if u.how == How::Initial {
        let from = if listed_in(config.recorded("LD_PRELOAD"), u.request) {
            &b"LD_PRELOAD"[..]
        } else {
            b"/etc/ld.so.preload"
        };
        Error::PreloadNotFound { request: u.request, from }
    } else {
        Error::NotFound(u.request)
    };
    let event = Failed::nothing_mapped(u.request, u.how, caller, family, error, FailReason::NotFound);
    events::load_failed(config, &mut s.line, event);
}

/// Whether `name` is an entry of a preload list (`:` or space separated).
fn listed_in(list: Option<&[u8]>, name: &[u8]) -> bool {
    list.is_some_and(|l| l.split(|&b| b == b':' || b == b' ').any(|e| e == name))
}

/// Forked while another thread of the parent was inside the loader: CUDA
/// libraries it had mapped and not yet announced (`la_objopen` comes after
/// the mapping) are this child's too, for good. Found in /proc/self/maps
/// as the loader lays an object out, not in the table: a file of a CUDA
/// library's name mapped executable from its start (NVIDIA's layout), or
/// mapped from its start and executable further on (the linker's default),
/// or (forked between the loader's first two mmaps) mapped from its start
/// over exactly its segments' span, read through the kernel. A program's
/// own read-only mapping of such a file is no load. Other
/// libraries (`--all-libs`) are not looked for: the audit module's own
/// namespace maps some the program never loaded.
#[inline(never)]
fn mapped_unannounced(config: &Config, s: &mut Scratch, objects: &Objects) {
    const MAX: usize = 64;
    let (mut starts, mut n) = ([0u64; MAX], 0);
    let (mut told, mut t) = ([0u64; MAX], 0);
    let Scratch { line, .. } = s;
    relro::each_file_mapping(|m| {
        let path = m.path.strip_suffix(b" (deleted)").unwrap_or(m.path);
        let Some(family) = catalogue::family(path) else { return };
        if objects.iter().any(|e| e.ino == m.inode) {
            return;
        }
        let laid_out = if m.offset == 0 {
            if n < MAX && !starts[..n].contains(&m.inode) {
                starts[n] = m.inode;
                n += 1;
            }
            // NVIDIA's libraries start with their text segment.
            (m.executable && relro::is_first_segment(m.lo, m.hi))
                || (m.readable && relro::is_loader_reservation(m.lo, m.hi))
        } else {
            m.executable && starts[..n].contains(&m.inode)
        };
        if !laid_out || told[..t].contains(&m.inode) || t == MAX {
            return;
        }
        told[t] = m.inode;
        t += 1;
        let entry = Entry { map: 0, dev: m.dev, ino: m.inode, cuda_stem: None, dynamic: 0, closing: false };
        let load = Load {
            request: None,
            how: How::Inherited,
            caller: None,
            path,
            soname: None,
            family: Some(family),
            step: None,
            lmid: 0,
            dur_ns: 0,
            pinned: is_pinned(config, &entry),
            redirected_from: None,
            file: Some((m.dev, m.inode)),
        };
        events::load(config, line, &load);
    });
}

/// The child of a fork starts with its parent's objects mapped: report them as
/// this process's too.
#[inline(never)]
fn inherited(config: &Config, s: &mut Scratch, e: &Entry) {
    // SAFETY: tracked objects are live.
    let object = unsafe { Object::decode(e.map as *const LinkMap) };
    let path = paths::resolve(object.name, &mut s.object).map(|r| r.path).unwrap_or(object.name.to_bytes());
    let family = object.soname.and_then(catalogue::family).or_else(|| catalogue::family(object.name.to_bytes()));
    let load = Load {
        request: None,
        how: How::Inherited,
        caller: None,
        path,
        soname: object.soname,
        family,
        step: None,
        lmid: 0,
        dur_ns: 0,
        pinned: is_pinned(config, e),
        redirected_from: None,
        file: (e.dev != 0).then_some((e.dev, e.ino)),
    };
    events::load(config, &mut s.line, &load);
}

fn is_pinned(config: &Config, e: &Entry) -> bool {
    config.pins.iter().any(|p| (p.dev, p.ino) == (e.dev, e.ino) && p.dev != 0)
}

/// The path of the requesting object; the main program's link map has an
/// empty name, so it is named by /proc/self/exe.
fn path_of_loader(loader: usize, buf: &mut [u8; PATH_MAX]) -> Option<&[u8]> {
    if loader == 0 {
        return None;
    }
    // SAFETY: cookies are set to live link maps in la_objopen.
    let name = unsafe { linkmap::name(loader as *const LinkMap) };
    if name.is_empty() {
        return paths::self_exe(buf);
    }
    // The canonical path when it resolves, else the name as loaded.
    match paths::resolve(name, buf) {
        Some(r) => Some(r.path),
        None => Some(name.to_bytes()),
    }
}
