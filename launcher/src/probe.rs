//! Asks a CUDA library for its own version, in a separate helper process
//! (`culaunch __probe-version PATH`), never inside the traced job: loading a
//! library runs its constructors, and calling into it can fail or crash.
//!
//! Each library encodes its version its own way; the decoding is here,
//! unit-tested, and the result says which call answered.

use std::ffi::{c_int, c_uint, c_void, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::vocab::Family;

/// The helper's subcommand name; hidden from `--help`.
pub const SUBCOMMAND: &str = "__probe-version";

/// Runs the helper for `path` (with a time limit) and returns (version, the
/// call that answered), or `None`.
pub fn version_of(path: &Path) -> Option<(String, String)> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ok()?;
    // Its own process group: a library constructor may fork, and the
    // children, holding the stdout pipe, must die with the helper.
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(path)
        .env_remove("LD_AUDIT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    let group = i32::try_from(child.id()).ok()?;
    // SAFETY: signals to the group created above, whose leader is our child
    // (not yet reaped, so the id cannot be reused).
    let kill_group = || unsafe {
        libc::killpg(group, libc::SIGKILL);
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok()?.is_none() {
        if std::time::Instant::now() > deadline {
            kill_group();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The helper has exited, so its answer is in the pipe already: read
    // what is there without waiting for EOF, which a descendant that left
    // the group (setsid) could hold back forever.
    kill_group();
    let mut stdout = child.stdout.take()?;
    // SAFETY: a valid descriptor we own; only its status flags change.
    unsafe {
        let fd = stdout.as_raw_fd();
        libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK);
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stdout.read(&mut buf) {
        if n == 0 || bytes.len() > 1 << 16 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(bytes).ok()?;
    let (version, source) = text.trim().split_once(' ')?;
    Some((version.to_owned(), source.to_owned()))
}

/// The helper side: load `path`, call its version function, print
/// "VERSION CALL" on stdout. Exit status 1 when it has no answer.
pub fn helper(path: &OsStr) -> u8 {
    match ask(Path::new(path)) {
        Some((v, call)) => {
            println!("{v} {call}");
            0
        }
        None => 1,
    }
}

fn ask(path: &Path) -> Option<(String, &'static str)> {
    let family = Family::of(path.as_os_str().as_bytes())?;
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; the helper process exists for this.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return None;
    }
    let sym = |name: &std::ffi::CStr| -> *mut c_void {
        // SAFETY: valid handle and NUL-terminated name.
        unsafe { libc::dlsym(handle, name.as_ptr()) }
    };
    // SAFETY (all calls below): each symbol has the signature NVIDIA documents
    // for it; outputs are plain integers on our stack.
    unsafe {
        match family {
            Family::Cudart => {
                let f = sym(c"cudaRuntimeGetVersion");
                let f: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(f.as_ref()?);
                let mut v = 0;
                (f(&mut v) == 0 && v > 0).then(|| (decode_cudart(v), "cudaRuntimeGetVersion"))
            }
            Family::Cudnn => {
                let f = sym(c"cudnnGetVersion");
                let f: extern "C" fn() -> usize = std::mem::transmute(f.as_ref()?);
                Some((decode_cudnn(f()), "cudnnGetVersion"))
            }
            Family::Cublas => {
                let f = sym(c"cublasGetProperty");
                let f: extern "C" fn(c_int, *mut c_int) -> c_int = std::mem::transmute(f.as_ref()?);
                let mut parts = [0; 3];
                for (i, p) in parts.iter_mut().enumerate() {
                    if f(i as c_int, p) != 0 {
                        return None;
                    }
                }
                Some((format!("{}.{}.{}", parts[0], parts[1], parts[2]), "cublasGetProperty"))
            }
            Family::Nccl => {
                let f = sym(c"ncclGetVersion");
                let f: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(f.as_ref()?);
                let mut v = 0;
                (f(&mut v) == 0).then(|| (decode_nccl(v), "ncclGetVersion"))
            }
            Family::Nvrtc => {
                let f = sym(c"nvrtcVersion");
                let f: extern "C" fn(*mut c_int, *mut c_int) -> c_int = std::mem::transmute(f.as_ref()?);
                let (mut a, mut b) = (0, 0);
                (f(&mut a, &mut b) == 0).then(|| (format!("{a}.{b}"), "nvrtcVersion"))
            }
            Family::Nvjitlink => {
                let f = sym(c"nvJitLinkVersion");
                let f: extern "C" fn(*mut c_uint, *mut c_uint) -> c_int = std::mem::transmute(f.as_ref()?);
                let (mut a, mut b) = (0, 0);
                (f(&mut a, &mut b) == 0).then(|| (format!("{a}.{b}"), "nvJitLinkVersion"))
            }
            _ => None,
        }
    }
}

/// cudaRuntimeGetVersion: 1000 * major + 10 * minor (12090 → 12.9).
fn decode_cudart(v: c_int) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// cudnnGetVersion: 9.x and later are major * 10000 + minor * 100 + patch
/// (90100 → 9.1.0); 8.x and before major * 1000 + minor * 100 + patch
/// (8907 → 8.9.7).
fn decode_cudnn(v: usize) -> String {
    if v >= 90000 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}

/// ncclGetVersion: from 2.9, major * 10000 + minor * 100 + patch; before,
/// major * 1000 + minor * 100 + patch.
fn decode_nccl(v: c_int) -> String {
    if v >= 20900 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_library_decodes_its_own_way() {
        assert_eq!(decode_cudart(12090), "12.9");
        assert_eq!(decode_cudart(11080), "11.8");
        assert_eq!(decode_cudnn(90100), "9.1.0");
        assert_eq!(decode_cudnn(8907), "8.9.7");
        assert_eq!(decode_nccl(22105), "2.21.5");
        assert_eq!(decode_nccl(2804), "2.8.4");
    }
}
