//! Asking the kernel whether the program's pointers can be read, before
//! reading them: a wrapper that dereferences what the real function would
//! have rejected with EFAULT turns an error into a crash.
//!
//! `process_vm_readv` on our own pid copies memory and reports EFAULT for an
//! unmapped or unreadable address instead of raising SIGSEGV. Where it is
//! not allowed (seccomp, an old kernel), the answer is "no", and the
//! caller then stays away from the pointer.

/// Longest string the kernel takes in an argument or environment string
/// (MAX_ARG_STRLEN, 32 pages); past it, in doubt, the answer is "no".
const MAX_STRING: usize = 32 * 4096;
/// More entries than any environment the kernel accepts (ARG_MAX).
const MAX_ENTRIES: usize = 1 << 16;
const PAGE: usize = 4096;

/// Copies `out.len()` bytes from `addr` in this process, or says it cannot.
pub fn copy_from(addr: usize, out: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: out.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: out.len() };
    // SAFETY: the kernel writes at most `out.len()` bytes into `out` and
    // only reads `addr`, reporting an error instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == out.len() as isize
}

/// `copy_from`, or where `process_vm_readv` is refused (a seccomp filter,
/// an old kernel) a read of /proc/self/mem, which also answers an error
/// for an unmapped address instead of faulting. It holds a descriptor for
/// the moment of the read: for the loader's callbacks, not for the `exec*`
/// wrappers (which may run in a `vfork` child).
pub fn read_own(addr: usize, out: &mut [u8]) -> bool {
    if copy_from(addr, out) {
        return true;
    }
    // SAFETY: errno is this thread's.
    if unsafe { *libc::__errno_location() } == libc::EFAULT {
        return false;
    }
    let Ok(offset) = libc::off_t::try_from(addr) else { return false };
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { crate::sys::open(c"/proc/self/mem".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the kernel writes at most `out.len()` bytes into `out`.
    let n = unsafe { crate::sys::pread(fd, out.as_mut_ptr().cast(), out.len(), offset) };
    // SAFETY: closing what we opened.
    unsafe { crate::sys::close(fd) };
    n == out.len() as isize
}

/// `addr` points at a readable NUL-terminated string.
pub fn is_c_string(addr: usize) -> bool {
    if addr == 0 {
        return false;
    }
    let mut chunk = [0u8; 256];
    let mut at = addr;
    while at - addr < MAX_STRING {
        // Never let one read cross into a page that may be unmapped.
        let len = chunk.len().min(PAGE - at % PAGE);
        if !copy_from(at, &mut chunk[..len]) {
            return false;
        }
        if chunk[..len].contains(&0) {
            return true;
        }
        at += len;
    }
    false
}

/// `addr` points at a readable NULL-terminated array of readable strings
/// (an `envp`). A null `addr` is fine: nothing will be read through it.
pub fn is_string_array(addr: usize) -> bool {
    if addr == 0 {
        return true;
    }
    let size = core::mem::size_of::<usize>();
    for i in 0..MAX_ENTRIES {
        let mut entry = [0u8; core::mem::size_of::<usize>()];
        if !copy_from(addr.wrapping_add(i * size), &mut entry) {
            return false;
        }
        let entry = usize::from_ne_bytes(entry);
        if entry == 0 {
            return true;
        }
        if !is_c_string(entry) {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pointers_are_told_from_good_ones_without_a_crash() {
        assert!(is_c_string(c"/bin/true".as_ptr() as usize));
        assert!(!is_c_string(0));
        assert!(!is_c_string(1));
        let env = [c"A=1".as_ptr(), c"PATH=/bin".as_ptr(), core::ptr::null()];
        assert!(is_string_array(env.as_ptr() as usize));
        assert!(is_string_array(0));
        assert!(!is_string_array(1));
        let bad_entry = [c"A=1".as_ptr(), 8 as *const core::ffi::c_char, core::ptr::null()];
        assert!(!is_string_array(bad_entry.as_ptr() as usize));
        // A string that runs to the end of its page and beyond, into a page
        // that is not mapped.
        // SAFETY: an anonymous mapping of two pages, the second then unmapped.
        unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                2 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert!(!p.is_null());
            core::ptr::write_bytes(p, b'x', PAGE);
            libc::munmap(p.add(PAGE).cast(), PAGE);
            assert!(!is_c_string(p as usize));
            *p.add(PAGE - 1) = 0;
            assert!(is_c_string(p as usize));
            libc::munmap(p.cast(), PAGE);
        }
    }
}
