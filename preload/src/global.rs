//! Everything the module keeps for the life of the process, in one place,
//! with the rule for each: who writes it, and under what.
//!
//! Nothing here is waited on without bound. The loader's callbacks run one
//! at a time (under the loader's own lock), so the locks below only guard
//! against the few callers outside it: the fork-child handler; a refused
//! `dlmopen` of a path, for its `deny` event; the `dlerror` wrapper, the
//! exit handler and the `exec*`/`_exit` wrappers, which take the state only
//! while `failure_pending` says a failed load awaits its words. They hold
//! it for one event and wait for nothing meanwhile, so the others wait for
//! them, a quarter second at most (`TryLock::lock_within`), and not at all
//! for a holder that is the waiting thread itself (a signal handler's
//! load): a lock still busy then costs one event, never a pin.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize};
use std::sync::OnceLock;

use crate::config::Config;
use crate::events::Scratch;
use crate::failure::Failure;
use crate::lock::TryLock;
use crate::objects::Objects;
use crate::paths::PATH_MAX;
use crate::tracker::Tracker;

/// Room for a refusal: the request, the requester's path and the rule.
pub const REFUSAL_CAP: usize = 2 * PATH_MAX;

/// How many functions `exec.rs` wraps (its `WATCHED` list).
pub const EXEC_WRAPPED: usize = 6;

/// How many functions `identity.rs` wraps (its `WATCHED` list).
pub const IDENTITY_WRAPPED: usize = 4;

/// What changes while the loader runs. Taken by the loader's callbacks, by
/// the callers named above, and by the fork-child handler (alone in the
/// child, after reclaiming it).
pub struct State {
    pub tracker: Tracker,
    pub objects: Objects,
    pub scratch: Scratch,
    /// A load that mapped and then failed, until it is written.
    pub failure: Failure,
}

/// Mapped pinned files tracked at once (one per namespace each).
pub const PINNED_SLOTS: usize = 64;

pub struct Process {
    /// What the launcher asked for: read once in `la_version`, immutable.
    /// `None` inside means culaunch did not ask for tracing.
    pub config: OnceLock<Option<Config>>,
    pub state: TryLock<State>,
    /// The refusal handed to the loader, which makes it dlerror()'s text;
    /// written only inside `la_objsearch`.
    pub refusal: TryLock<[u8; REFUSAL_CAP]>,
    /// A failed load (or a request that mapped nothing) may be waiting
    /// for `dlerror`'s text: the wrapper looks at the state only then.
    pub failure_pending: AtomicBool,
    /// The current request was refused: its candidate paths are refused too.
    pub refusing: AtomicBool,
    /// The initial objects are mapped (the first `LA_ACT_CONSISTENT`, before
    /// any constructor): a refusal no longer ends the process.
    pub started: AtomicBool,
    /// The program's own link map, the first `la_objopen` of namespace 0:
    /// its cookie names the program's namespace in `la_activity`.
    pub main_map: AtomicUsize,
    /// Set after an internal error: the module then only passes through.
    pub disabled: AtomicBool,
    /// A warning about tracing has been given in this process.
    pub warned: AtomicBool,
    /// This process has lost an event (and taken the job's token, or
    /// found it taken).
    pub lost: AtomicBool,
    /// Link maps of mapped pinned files, and which pin each is (+1; 0: a
    /// free slot): whether a pin is mapped, asked in `la_objsearch`, must
    /// not wait on the state's lock nor trust a name. Written and read
    /// under the loader's lock (`la_objopen`, `la_objclose`,
    /// `la_objsearch`).
    pub pinned_maps: [AtomicUsize; PINNED_SLOTS],
    pub pinned_which: [AtomicUsize; PINNED_SLOTS],
    /// The real `exec*`/`posix_spawn*` functions, by their index in
    /// `exec.rs`'s list; stored by `la_symbind64` before the wrapper is
    /// handed out. Lock-free: read in vfork children.
    pub exec_real: [AtomicUsize; EXEC_WRAPPED],
    /// The real `setuid` family, by their index in `identity.rs`'s list;
    /// as `exec_real`.
    pub identity_real: [AtomicUsize; IDENTITY_WRAPPED],
    /// The address of the program's `environ` (its libc's, not this
    /// namespace's), found at `la_preinit`.
    pub environ: AtomicUsize,
    /// This process's id, set at `la_preinit` and in a fork child: a
    /// `vfork` child (which shares the state and runs no fork handler) has
    /// another, and leaves the parent's pending failure to the parent.
    pub pid: AtomicI32,
}

pub static PROCESS: Process = Process {
    config: OnceLock::new(),
    state: TryLock::new(State {
        tracker: Tracker::new(),
        objects: Objects::new(),
        scratch: Scratch::new(),
        failure: Failure::new(),
    }),
    refusal: TryLock::new([0; REFUSAL_CAP]),
    failure_pending: AtomicBool::new(false),
    refusing: AtomicBool::new(false),
    started: AtomicBool::new(false),
    main_map: AtomicUsize::new(0),
    disabled: AtomicBool::new(false),
    warned: AtomicBool::new(false),
    lost: AtomicBool::new(false),
    pinned_maps: [const { AtomicUsize::new(0) }; PINNED_SLOTS],
    pinned_which: [const { AtomicUsize::new(0) }; PINNED_SLOTS],
    exec_real: [const { AtomicUsize::new(0) }; EXEC_WRAPPED],
    identity_real: [const { AtomicUsize::new(0) }; IDENTITY_WRAPPED],
    environ: AtomicUsize::new(0),
    pid: AtomicI32::new(0),
};
