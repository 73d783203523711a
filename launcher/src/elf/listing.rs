//! A directory's names, read with getdents64(2) itself: the search lists of
//! a torch library are listed once each, and std's `read_dir` costs an
//! fstat per directory and three allocations per name.

use std::ffi::CString;
use std::io;

/// Room for the kernel's records of one call; a wheel's `lib/` fits.
const BUFFER: usize = 32 << 10;

/// Calls `each` with every name in `dir` but `.` and `..`, and whether it
/// may be a directory (its `d_type` says so, or says a link or nothing),
/// until it returns false. Ok(false): stopped by `each`. An error of kind
/// `Unsupported`: `dir` is a directory, but its listing may lack names a
/// lookup finds (see `lists_every_name`).
pub fn each_name(dir: &[u8], mut each: impl FnMut(&[u8], bool) -> bool) -> io::Result<bool> {
    let path = CString::new(dir).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let result =
        if lists_every_name(fd) { names_of(fd, &mut each) } else { Err(io::Error::from(io::ErrorKind::Unsupported)) };
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}

/// Whether a listing of the directory open at `fd` holds every name that a
/// lookup in it finds. Not where lookups fold case, nor where a lookup may
/// answer for a name never listed: there a name the listing lacks may
/// still open, and each candidate must be asked for.
fn lists_every_name(fd: libc::c_int) -> bool {
    // SAFETY: an all-zero statfs is a valid out-parameter.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open; `fs` is writable.
    if unsafe { libc::fstatfs(fd, &mut fs) } != 0 {
        return false;
    }
    let casefolded = || {
        // The kernel reads and writes an int, whatever the request's name says.
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one int to the pointer given.
        let ok = unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags as *mut libc::c_int) } == 0;
        ok && flags & FS_CASEFOLD_FL != 0
    };
    // The magic is a 32-bit value in a word whose type and sign vary by
    // architecture.
    fs_lists_every_name(fs.f_type as u64 as u32, casefolded)
}

/// `FS_CASEFOLD_FL` of <linux/fs.h>: a directory whose lookups fold case
/// (ext4, f2fs and tmpfs, per directory, `chattr +F`).
const FS_CASEFOLD_FL: libc::c_int = 0x4000_0000;

/// The decision of `lists_every_name`, from the filesystem's magic
/// (<linux/magic.h>) and, where directories may fold case one by one,
/// whether this one does.
fn fs_lists_every_name(magic: u32, casefolded: impl FnOnce() -> bool) -> bool {
    match magic {
        // Lookups fold case: vfat/msdos, exFAT, NTFS (ntfs, ntfs3), CIFS
        // and SMB, HFS and HFS+, ISO 9660, UDF, JFS, and ZFS (a dataset
        // property this cannot read).
        0x4d44 | 0x2011_bab0 | 0x5346_544e | 0x7366_746e | 0xff53_4d42 | 0xfe53_4d42 | 0x517b | 0x4244 | 0x482b
        | 0x9660 | 0x1501_3346 | 0x3153_464a | 0x2fc1_2fc1 => false,
        // Lookups answer for what no listing shows: autofs mounts on
        // demand, and a FUSE daemon answers as it likes.
        0x0187 | 0x6573_5546 => false,
        // Case folding is a directory's attribute: ext2/3/4, f2fs, tmpfs,
        // bcachefs.
        0xef53 | 0xf2f5_2010 | 0x0102_1994 | 0xca45_1a4e => !casefolded(),
        _ => true,
    }
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
    fn listings_are_trusted_only_where_lookups_find_nothing_more() {
        // ext4 and tmpfs, unless the directory folds case.
        assert!(fs_lists_every_name(0xef53, || false));
        assert!(!fs_lists_every_name(0xef53, || true));
        assert!(!fs_lists_every_name(0x0102_1994, || true));
        // xfs, btrfs, overlayfs, NFS: the question is not asked.
        for magic in [0x5846_5342, 0x9123_683e, 0x794c_7630, 0x6969] {
            assert!(fs_lists_every_name(magic, || panic!("asked about {magic:x}")));
        }
        // vfat, CIFS, FUSE, autofs.
        for magic in [0x4d44, 0xff53_4d42, 0x6573_5546, 0x0187] {
            assert!(!fs_lists_every_name(magic, || false));
        }
        // This machine's temporary directory is listed.
        let dir = std::env::temp_dir();
        assert!(each_name(dir.as_os_str().as_bytes(), |_, _| false).is_ok(), "{} is not listed", dir.display());
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
