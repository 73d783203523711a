//! Files, seen from inside the loader: canonical paths and file identities
//! without allocation (glibc's `realpath` mallocs for long paths, and this
//! module's copy of malloc is not protected across the program's `fork`).

use core::ffi::CStr;

pub const PATH_MAX: usize = libc::PATH_MAX as usize;

/// A file as the kernel sees it.
pub struct Resolved<'b> {
    /// Canonical path (symbolic links resolved).
    pub path: &'b [u8],
    /// (st_dev, st_ino).
    pub id: (u64, u64),
}

/// Canonical path and identity of `path`, written into `out`: open with
/// O_PATH (no access needed, nothing read), then ask the kernel for the
/// descriptor's path.
pub fn resolve<'b>(path: &CStr, out: &'b mut [u8; PATH_MAX]) -> Option<Resolved<'b>> {
    // SAFETY: NUL-terminated path; O_PATH opens without reading.
    let fd = unsafe { crate::sys::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut n = 14;
    for d in fd_digits(fd).iter().skip_while(|&&d| d == 0).copied() {
        link[n] = d;
        n += 1;
    }
    if n == 14 {
        link[n] = b'0';
    }
    // SAFETY: plain-data out-pointer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open; `link` is NUL-terminated; `out` is writable.
    let (stat_ok, len) = unsafe {
        let ok = libc::fstat(fd, &mut st) == 0;
        let len = libc::readlink(link.as_ptr().cast(), out.as_mut_ptr().cast(), out.len());
        crate::sys::close(fd);
        (ok, len)
    };
    if !stat_ok || len <= 0 {
        return None;
    }
    Some(Resolved { path: &out[..len as usize], id: (st.st_dev, st.st_ino) })
}

/// The decimal digits of `fd` as ASCII, most significant first, with
/// leading zeros as 0 bytes.
fn fd_digits(fd: i32) -> [u8; 10] {
    let mut digits = [0u8; 10];
    let mut v = fd.max(0) as u32;
    for slot in digits.iter_mut().rev() {
        if v == 0 {
            break;
        }
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    digits
}

/// (st_dev, st_ino) of `path`.
pub fn file_id(path: &CStr) -> Option<(u64, u64)> {
    // SAFETY: plain-data out-pointer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: NUL-terminated path and a valid out-pointer.
    (unsafe { libc::stat(path.as_ptr(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// `path`'s identity, size and modification time, as a lock's check
/// recorded them.
pub fn locked_file(path: &CStr) -> Option<culaunch_protocol::env::LockedFile> {
    // SAFETY: plain-data out-pointer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: NUL-terminated path and a valid out-pointer.
    (unsafe { libc::stat(path.as_ptr(), &mut st) } == 0).then_some(culaunch_protocol::env::LockedFile {
        dev: st.st_dev,
        ino: st.st_ino,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
    })
}

/// `bytes` as a NUL-terminated string in `buf`, if it fits and holds no NUL.
pub fn c_str<'b>(bytes: &[u8], buf: &'b mut [u8; PATH_MAX]) -> Option<&'b CStr> {
    if bytes.len() >= buf.len() || bytes.contains(&0) {
        return None;
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()] = 0;
    CStr::from_bytes_with_nul(&buf[..=bytes.len()]).ok()
}

/// The running executable, from the kernel.
pub fn self_exe(buf: &mut [u8]) -> Option<&[u8]> {
    // SAFETY: `buf` is writable for its length; readlink does not terminate it.
    let n = unsafe { libc::readlink(c"/proc/self/exe".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n > 0).then(|| &buf[..n as usize])
}

/// Reads a small file whole, or as much as fits; the flag says whether it all fit.
pub fn read_small_file<'b>(path: &CStr, buf: &'b mut [u8]) -> (&'b [u8], bool) {
    // SAFETY: NUL-terminated path.
    let fd = unsafe { crate::sys::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return (&buf[..0], false);
    }
    let mut len = 0;
    let mut whole = false;
    while len < buf.len() {
        // SAFETY: the destination lies inside `buf`.
        let n = unsafe { crate::sys::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            whole = n == 0;
            break;
        }
        len += n as usize;
    }
    // SAFETY: closing what we opened.
    unsafe { crate::sys::close(fd) };
    (&buf[..len], whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_links_and_identity_like_the_standard_library() {
        let dir = std::env::temp_dir().join(format!("culaunch-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let file = dir.join("real.so");
        std::fs::write(&file, b"x").unwrap_or_default();
        let link = dir.join("link.so");
        let _ = std::os::unix::fs::symlink(&file, &link);
        let mut out = [0u8; PATH_MAX];
        let mut c = [0u8; PATH_MAX];
        use std::os::unix::ffi::OsStrExt;
        let link_c = c_str(link.as_os_str().as_bytes(), &mut c).map(CStr::to_owned);
        let r = link_c.as_deref().and_then(|l| resolve(l, &mut out)).map(|r| (r.path.to_vec(), r.id));
        let want = std::fs::canonicalize(&file).ok().map(|p| p.as_os_str().as_bytes().to_vec());
        assert_eq!(r.as_ref().map(|r| r.0.clone()), want);
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&file).ok().map(|m| (m.dev(), m.ino()));
        assert_eq!(r.map(|r| r.1), m);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fd_numbers_spell_out() {
        assert_eq!(&fd_digits(107)[7..], b"107");
        assert_eq!(fd_digits(0), [0; 10]);
    }
}
