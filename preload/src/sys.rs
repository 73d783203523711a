//! The system calls libc makes cancellation points (`open`, `read`,
//! `pread`, `write`, `close`), made directly instead.
//!
//! The module runs inside the job's `dlopen`, `dlmopen`, `fork` and exit
//! paths. A thread with a cancel pending must not be cancelled from there:
//! the forced unwind would meet the exports' `catch_unwind`, and glibc
//! aborts the process ("exception not rethrown"). glibc's own loader uses
//! its `_nocancel` variants for the same reason. Each returns what the libc
//! function would, with `errno` set the same way.

use core::ffi::{c_char, c_int, c_long, c_void};

/// `open(path, flags, mode)`.
///
/// # Safety
/// `path` must be a NUL-terminated string.
pub unsafe fn open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: the caller's contract; openat relative to the working
    // directory is what open is.
    unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, mode) as c_int }
}

/// `read(fd, buf, len)`.
///
/// # Safety
/// `buf` must be valid for `len` bytes of writing.
pub unsafe fn read(fd: c_int, buf: *mut c_void, len: usize) -> isize {
    // SAFETY: the caller's contract.
    unsafe { libc::syscall(libc::SYS_read, fd, buf, len) as isize }
}

/// `pread(fd, buf, len, offset)`.
///
/// # Safety
/// `buf` must be valid for `len` bytes of writing.
pub unsafe fn pread(fd: c_int, buf: *mut c_void, len: usize, offset: libc::off_t) -> isize {
    // SAFETY: the caller's contract; on x86-64 and aarch64 the offset is
    // one register.
    unsafe { libc::syscall(libc::SYS_pread64, fd, buf, len, offset as c_long) as isize }
}

/// `write(fd, buf, len)`.
///
/// # Safety
/// `buf` must be valid for `len` bytes of reading.
pub unsafe fn write(fd: c_int, buf: *const c_void, len: usize) -> isize {
    // SAFETY: the caller's contract.
    unsafe { libc::syscall(libc::SYS_write, fd, buf, len) as isize }
}

/// `close(fd)`.
///
/// # Safety
/// `fd` must be a descriptor the module opened, or a bad one.
pub unsafe fn close(fd: c_int) -> c_int {
    // SAFETY: the caller's contract: no one else's descriptor is closed.
    unsafe { libc::syscall(libc::SYS_close, fd) as c_int }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_does_what_libcs_does() {
        let dir = std::env::temp_dir().join(format!("culaunch-sys-{}", std::process::id()));
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: a NUL-terminated path, and buffers of the lengths given.
        unsafe {
            let fd = open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o600);
            assert!(fd >= 0);
            assert_eq!(write(fd, b"hello".as_ptr().cast(), 5), 5);
            let mut buf = [0u8; 8];
            assert_eq!(pread(fd, buf.as_mut_ptr().cast(), 8, 1), 4);
            assert_eq!(&buf[..4], b"ello");
            assert_eq!(read(fd, buf.as_mut_ptr().cast(), 8), 0, "at the end after the write");
            assert_eq!(close(fd), 0);
            assert_eq!(close(fd), -1);
            assert_eq!(*libc::__errno_location(), libc::EBADF);
            assert_eq!(open(path.as_ptr(), libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL, 0), -1);
            assert_eq!(*libc::__errno_location(), libc::EEXIST);
        }
        let _ = std::fs::remove_file(&dir);
    }
}
