//! A directory's names, read with getdents64(2) itself: the search lists of
//! a torch library are listed once each, and std's `read_dir` costs an
//! fstat per directory and three allocations per name.

use std::ffi::CString;
use std::io;

/// Room for the kernel's records of one call; a wheel's `lib/` fits.
const BUFFER: usize = 32 << 10;

/// Calls `each` with every name in `dir` but `.` and `..`, and whether it
/// may be a directory (its `d_type` says so, or says a link or nothing),
/// until it returns false. Ok(false): stopped by `each`.
pub fn each_name(dir: &[u8], mut each: impl FnMut(&[u8], bool) -> bool) -> io::Result<bool> {
    let path = CString::new(dir).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = names_of(fd, &mut each);
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}

fn names_of(fd: libc::c_int, each: &mut impl FnMut(&[u8], bool) -> bool) -> io::Result<bool> {
    let mut buffer: Vec<u8> = Vec::with_capacity(BUFFER);
    loop {
        // SAFETY: the kernel writes at most BUFFER bytes into the buffer's
        // capacity and says how many.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buffer.as_mut_ptr(), BUFFER) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(true);
        }
        // SAFETY: the first `n` bytes were just written by the kernel.
        let records = unsafe { std::slice::from_raw_parts(buffer.as_ptr(), n as usize) };
        if !each_record(records, each)? {
            return Ok(false);
        }
    }
}

/// Walks `struct linux_dirent64` records: d_ino (8), d_off (8), d_reclen
/// (2), d_type (1), then the NUL-terminated name.
fn each_record(mut records: &[u8], each: &mut impl FnMut(&[u8], bool) -> bool) -> io::Result<bool> {
    const NAME: usize = 19;
    while !records.is_empty() {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed directory record");
        let len = records.get(16..18).map(|b| usize::from(u16::from_ne_bytes([b[0], b[1]]))).ok_or_else(bad)?;
        let record = records.get(..len).filter(|_| len > NAME).ok_or_else(bad)?;
        let name = &record[NAME..];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let may_be_dir = matches!(record[18], libc::DT_DIR | libc::DT_LNK | libc::DT_UNKNOWN);
        if name != b"." && name != b".." && !each(name, may_be_dir) {
            return Ok(false);
        }
        records = &records[len..];
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn names_are_those_read_dir_gives() {
        let dir = std::env::temp_dir().join(format!("culaunch-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Enough names for several getdents64 calls.
        for i in 0..2000 {
            std::fs::write(dir.join(format!("lib{i:04}-{}.so", "x".repeat(i % 40))), b"").unwrap();
        }
        std::fs::create_dir(dir.join("sub")).unwrap();
        let mut ours = Vec::new();
        let mut dirs = Vec::new();
        assert!(each_name(dir.as_os_str().as_bytes(), |n, may_be_dir| {
            ours.push(n.to_vec());
            if may_be_dir {
                dirs.push(n.to_vec());
            }
            true
        })
        .unwrap());
        // ext4, tmpfs, overlayfs and btrfs all fill in d_type.
        assert_eq!(dirs, vec![b"sub".to_vec()]);
        let mut std_names: Vec<Vec<u8>> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
        ours.sort();
        std_names.sort();
        assert_eq!(ours, std_names);
        let mut seen = 0;
        assert!(!each_name(dir.as_os_str().as_bytes(), |_, _| {
            seen += 1;
            seen < 10
        })
        .unwrap());
        assert_eq!(seen, 10);
        assert!(each_name(dir.join("nothere").as_os_str().as_bytes(), |_, _| true).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_records_are_an_error_not_a_panic() {
        let mut rec = vec![0u8; 24];
        rec[16..18].copy_from_slice(&5u16.to_ne_bytes());
        assert!(each_record(&rec, &mut |_, _| true).is_err());
        rec[16..18].copy_from_slice(&200u16.to_ne_bytes());
        assert!(each_record(&rec, &mut |_, _| true).is_err());
        rec[16..18].copy_from_slice(&24u16.to_ne_bytes());
        rec[19..21].copy_from_slice(b"ab");
        let mut got = Vec::new();
        rec[18] = libc::DT_REG;
        assert!(each_record(&rec, &mut |n, may_be_dir| {
            assert!(!may_be_dir);
            got.push(n.to_vec());
            true
        })
        .unwrap());
        assert_eq!(got, vec![b"ab".to_vec()]);
    }
}
