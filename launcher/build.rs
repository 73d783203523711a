//! Builds the audit module (the `preload` crate) and hands its bytes to the
//! launcher, which embeds them: `cargo install --path launcher` then yields a
//! complete culaunch, with no second file to place. The launcher never links
//! the module; it only carries it.
//!
//! The module is built for the launcher's own target (`TARGET`, with the
//! outer build's linker settings, so `cargo zigbuild --target
//! x86_64-unknown-linux-gnu.2.17` links both against glibc 2.17), and is
//! checked before it is embedded: another class or machine than the target's,
//! or a glibc newer than `CULAUNCH_GLIBC_FLOOR` (when set) or than the
//! `.2.NN` suffix of a zig linker, fails the build.
//!
//! Set CULAUNCH_AUDIT_MODULE to a prebuilt `libculaunch_preload.so` to skip
//! the nested build (packagers); it is checked the same way.

#[path = "src/preflight/elfver.rs"]
#[allow(dead_code)]
mod elfver;
#[path = "../preload/static_unwinder.rs"]
mod static_unwinder;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    static_unwinder::link_statically();
    println!("cargo:rerun-if-env-changed=CULAUNCH_AUDIT_MODULE");
    println!("cargo:rerun-if-env-changed=CULAUNCH_GLIBC_FLOOR");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    // How zigbuild and maturin choose the linker (cargo's own config is watched by cargo).
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_{}_LINKER", target.to_uppercase().replace(['-', '.'], "_"));
    let module = match env::var_os("CULAUNCH_AUDIT_MODULE") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => build_module(&out, &target),
    };
    let dest = out.join("libculaunch_preload.so");
    std::fs::copy(&module, &dest).unwrap_or_else(|e| panic!("cannot copy the audit module {}: {e}", module.display()));
    let bytes = std::fs::read(&dest).expect("the module was just copied");
    let glibc = check(&module, &bytes, &target);
    // The installed module's file name carries this hash; computing it here
    // keeps it off every run's start-up.
    let hash = fnv1a(&bytes);
    println!("cargo:rustc-env=CULAUNCH_MODULE_HASH={hash:016x}");
    // For the preflight's hint when a module cannot be used: what this build needs.
    println!("cargo:rustc-env=CULAUNCH_MODULE_GLIBC={}", glibc.as_deref().unwrap_or(""));
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn build_module(out: &Path, target: &str) -> PathBuf {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("launcher/ sits in the workspace root");
    for watched in [
        "preload/src",
        "preload/build.rs",
        "preload/static_unwinder.rs",
        "preload/Cargo.toml",
        "protocol/src",
        "protocol/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // OUT_DIR is <target-dir>[/<triple>]/<profile>/build/<pkg>-<hash>/out;
    // build beside <profile>, in a directory of its own so the outer build's
    // lock is not ours.
    // One per linker too: a module linked by the host's cc (glibc 2.35+ on bookworm) must
    // never be reused by a zig build of the same triple (glibc 2.17).
    let linker = env::var("RUSTC_LINKER").unwrap_or_default();
    let name = if linker.is_empty() {
        "audit-module".to_owned()
    } else {
        format!("audit-module-{:08x}", fnv1a(linker.as_bytes()) as u32)
    };
    let target_dir = out.ancestors().nth(4).map(|t| t.join(&name)).unwrap_or_else(|| out.join(&name));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // `--target` always, even when it is the host: the module must be built
    // for what the launcher runs on, and an explicit target makes cargo take
    // that target's linker (`CARGO_TARGET_<TRIPLE>_LINKER`, which zigbuild
    // and maturin set) rather than the host's.
    let status = Command::new(cargo)
        .args(["build", "--release", "--offline", "--lib", "--manifest-path"])
        .arg(root.join("preload/Cargo.toml"))
        .args(["--target", target])
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
    assert!(status.success(), "building the audit module for {target} failed");
    target_dir.join(target).join("release/libculaunch_preload.so")
}

/// Fails the build when the module cannot serve a launcher built for
/// `target`; returns the newest glibc version it needs.
fn check(module: &Path, bytes: &[u8], target: &str) -> Option<String> {
    let shown = module.display();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let bits = env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    let want_machine: Option<u16> = match arch.as_str() {
        "x86_64" => Some(62),
        "aarch64" => Some(183),
        "powerpc64" => Some(21),
        "x86" => Some(3),
        "arm" => Some(40),
        "riscv64" => Some(243),
        "s390x" => Some(22),
        _ => None,
    };
    assert!(bytes.len() > 20 && &bytes[..4] == b"\x7fELF", "the audit module {shown} is not an ELF file");
    let class_bits = if bytes[4] == 2 { "64" } else { "32" };
    let machine = if bytes[5] == 2 {
        u16::from_be_bytes([bytes[18], bytes[19]])
    } else {
        u16::from_le_bytes([bytes[18], bytes[19]])
    };
    assert!(
        class_bits == bits && !matches!(want_machine, Some(m) if m != machine),
        "the audit module {shown} is a {class_bits}-bit object for ELF machine {machine}, \
         but the launcher is built for {target}: it would be injected into no process"
    );
    let versions = elfver::read(bytes).unwrap_or_else(|e| panic!("the audit module {shown}: {e}"));
    let newest = elfver::newest_glibc(versions.needed.iter().map(|n| n.version.as_str()));
    let floor = env::var("CULAUNCH_GLIBC_FLOOR").ok().filter(|f| !f.is_empty()).or_else(zig_glibc_suffix);
    if let (Some(floor), Some(newest)) = (&floor, &newest) {
        let (f, n) =
            (elfver::glibc_version(&format!("GLIBC_{floor}")), elfver::glibc_version(&format!("GLIBC_{newest}")));
        assert!(f.is_some(), "CULAUNCH_GLIBC_FLOOR={floor} is not a glibc version such as 2.17");
        assert!(
            n <= f,
            "the audit module {shown} needs GLIBC_{newest}, newer than the launcher's floor {floor}: \
             on a glibc between the two the loader would skip it and the job would run untraced \
             (was it linked by another linker than the launcher?)"
        );
    }
    newest
}

/// The glibc version in the name of zig's linker wrapper (cargo-zigbuild and
/// maturin name it after the target, `zigcc-x86_64-unknown-linux-gnu.2.17-….sh`):
/// the floor the launcher itself is linked against.
fn zig_glibc_suffix() -> Option<String> {
    let linker = env::var("RUSTC_LINKER").ok()?;
    let name = Path::new(&linker).file_name()?.to_str()?;
    let after = &name[name.find("-linux-gnu.")? + "-linux-gnu.".len()..];
    let version: String = after.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let version = version.trim_end_matches('.');
    elfver::glibc_version(&format!("GLIBC_{version}")).map(|_| version.to_owned())
}
