//! Build-script helper, shared by `preload/build.rs` and `launcher/build.rs`:
//! link Rust's unwinder from the C compiler's `libgcc_eh.a` into the
//! artifact, so that it needs no `libgcc_s.so.1`.
//!
//! Why: the audit module is mapped into every process of a job, in a
//! namespace of its own, and each library it needs is one more file that
//! the loader opens, maps and relocates there, and whose constructor runs
//! (libgcc_s's probes the CPU with `cpuid`, which traps to the hypervisor on
//! a VM). The launcher pays the same before each `main`. std asks for the
//! unwinder as `-lgcc_s`; a linker script of that name, found first, hands
//! the linker the static archive instead (what `-static-libgcc` does for C).
//!
//! Only where it can be done for certain: a `linux-gnu` target not already
//! static, a linker (the target's, else `cc`) that is not zig's, and one
//! that names an existing `libgcc_eh.a` whose path a linker script can
//! quote. zig (the 2.17 wheel) brings its own unwinder and answers the
//! question with the host gcc's archive, built for the host's glibc: its
//! builds stay as they were.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn link_statically() {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("CARGO_CFG_TARGET_FEATURE").split(',').any(|f| f == "crt-static")
    {
        return;
    }
    let linker = env::var_os("RUSTC_LINKER").filter(|l| !l.is_empty()).unwrap_or_else(|| "cc".into());
    // cargo-zigbuild's and maturin's wrappers are named `zigcc-<target>-….sh`.
    if Path::new(&linker).file_name().is_some_and(|n| n.to_string_lossy().contains("zig")) {
        return;
    }
    let Ok(out) = Command::new(&linker).arg("-print-file-name=libgcc_eh.a").output() else { return };
    let printed = String::from_utf8_lossy(&out.stdout);
    let archive = PathBuf::from(printed.trim());
    // A compiler that has no such file prints the bare name back. The
    // script quotes the path; one with a quote or a newline in it cannot be.
    let quotable = !printed.trim().contains(['"', '\n']);
    if !out.status.success() || !quotable || !archive.is_absolute() || !archive.is_file() {
        return;
    }
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("static-unwinder");
    let script = format!("INPUT(\"{}\")\n", archive.display());
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("libgcc_s.so"), script))
        .unwrap_or_else(|e| panic!("cannot write the unwinder's linker script in {}: {e}", dir.display()));
    println!("cargo:rerun-if-changed={}", Path::new(&archive).display());
    println!("cargo:rustc-link-search=native={}", dir.display());
}
