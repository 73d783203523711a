//! culaunch's own messages on stderr, in one voice: `culaunch: warning: …`
//! for what the user should know but that does not stop anything, and
//! `culaunch: …` for notes and for errors that do not end the run (the
//! command's status wins once it has run). Fatal errors are printed once, in
//! `main`.

use std::fmt;

/// `warning!("{file} is …")`: one line on stderr.
macro_rules! warning {
    ($($arg:tt)*) => { $crate::messages::warn(format_args!($($arg)*)) };
}
pub(crate) use warning;

/// `note!("locked {n} …")`: one line on stderr.
macro_rules! note {
    ($($arg:tt)*) => { $crate::messages::say(format_args!($($arg)*)) };
}
pub(crate) use note;

pub fn warn(args: fmt::Arguments<'_>) {
    eprintln!("culaunch: warning: {args}");
}

pub fn say(args: fmt::Arguments<'_>) {
    eprintln!("culaunch: {args}");
}

/// An error after the command has run: reported, never the exit status.
pub fn error(e: &dyn fmt::Display) {
    eprintln!("culaunch: {e}");
}

/// What the user can do about a fatal error, under it.
pub fn hint(h: &str) {
    eprintln!("hint: {h}");
}
