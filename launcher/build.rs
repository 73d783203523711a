//! Builds the audit module (the `preload` crate) and hands its bytes to the
//! launcher, which embeds them: `cargo install --path launcher` then yields a
//! complete culaunch, with no second file to place. The launcher never links
//! the module; it only carries it.
//!
//! Set CULAUNCH_AUDIT_MODULE to a prebuilt `libculaunch_preload.so` to skip
//! the nested build (packagers).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CULAUNCH_AUDIT_MODULE");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let module = match env::var_os("CULAUNCH_AUDIT_MODULE") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => build_module(&out),
    };
    let dest = out.join("libculaunch_preload.so");
    std::fs::copy(&module, &dest).unwrap_or_else(|e| panic!("cannot copy the audit module {}: {e}", module.display()));
    // The installed module's file name carries this hash; computing it here
    // keeps it off every run's start-up.
    let bytes = std::fs::read(&dest).expect("the module was just copied");
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    println!("cargo:rustc-env=CULAUNCH_MODULE_HASH={hash:016x}");
}

fn build_module(out: &Path) -> PathBuf {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("launcher/ sits in the workspace root");
    for watched in ["preload/src", "preload/Cargo.toml", "protocol/src", "protocol/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out; build beside
    // <target>, in a directory of its own so the outer build's lock is not ours.
    let target_dir = out.ancestors().nth(4).map(|t| t.join("audit-module")).unwrap_or_else(|| out.join("audit-module"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--offline", "--lib", "--manifest-path"])
        .arg(root.join("preload/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--config", "profile.release.strip=true"])
        // The outer build's wrappers and flags (clippy, coverage) are not for
        // the module that rides in users' processes.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the audit module");
    assert!(status.success(), "building the audit module failed");
    target_dir.join("release/libculaunch_preload.so")
}
