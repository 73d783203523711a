//! ELF files, seen through the project's own types. goblin stays inside
//! `object.rs`.

mod object;

pub use object::read_header;
