//! The module culaunch injects into every process of a job, as an rtld-audit
//! library (`LD_AUDIT`).
//!
//! The dynamic loader calls it for every search ([`exports::la_objsearch`]),
//! every object it maps ([`exports::la_objopen`]) and every batch of loads
//! ([`exports::la_activity`]). It never loads anything itself, so every search
//! happens in the requester's own context (its DT_RPATH, DT_RUNPATH, `$ORIGIN`
//! and namespace): tracing cannot change which file is mapped. See
//! ARCHITECTURE.md for why this is an audit module and not a dlopen hook.
//!
//! Rules for everything in this crate: nothing unwinds into C (every export
//! catches panics and then disables itself), nothing is unwrapped, nothing is
//! printed on stdout, and the code that runs while the loader lock is held
//! does not allocate.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod callbacks;
mod clock;
mod config;
mod decide;
mod dlclose;
mod dlerror;
mod dlmopen;
mod events;
mod exec;
mod exports;
mod failure;
mod global;
mod identity;
mod libc_hooks;
mod linkmap;
mod lock;
mod memory;
mod objects;
mod paths;
mod quick_exit;
mod relro;
mod sink;
mod sys;
mod tracker;

pub use exports::{la_activity, la_objclose, la_objopen, la_objsearch, la_preinit, la_symbind64, la_version};
