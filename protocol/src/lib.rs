//! What the launcher and the injected audit module must agree on.
//!
//! This crate has no dependencies and never allocates, so the audit module can
//! use all of it from inside the dynamic loader.

#![no_std]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod catalogue;
pub mod clock;
pub mod elf;
pub mod env;
pub mod event;
pub mod json;
pub mod rank;
