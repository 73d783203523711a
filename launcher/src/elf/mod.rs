//! ELF files, seen through the project's own types. goblin stays inside
//! `object.rs`.

pub(crate) mod cache;
mod machine;
pub(crate) mod object;
pub(crate) mod places;
mod platform;
mod root;
mod search;
pub mod symbols;
mod tree;

pub use object::{read_header, ElfHeader};
pub use places::{places, resolves_to, Place, Seen};
pub use platform::Platform;
pub use search::Reason;
pub use tree::{closure, closure_in, Closure, Context, ShippedWith, Target, INTERP, ROOT};
