//! The module needs libc only: see `static_unwinder`.

#[path = "static_unwinder.rs"]
mod static_unwinder;

fn main() {
    println!("cargo:rerun-if-changed=static_unwinder.rs");
    static_unwinder::link_statically();
}
