//! File digests, in one place: the sha256 that locks and pip's RECORD use.

use std::io::{self, Read};
use std::path::Path;

use culaunch_protocol::env::LockedFile;
use sha2::{Digest, Sha256};

/// The file's sha256, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    Ok(hex(&sha256_bytes_of(path)?))
}

/// The file's sha256, lowercase hex, and the very file that was read: what
/// a lock's check vouches for.
pub fn sha256_and_identity(path: &Path) -> io::Result<(String, LockedFile)> {
    use std::os::unix::fs::MetadataExt;
    let f = crate::input::open_regular(path)?;
    let m = f.metadata()?;
    let file =
        LockedFile { dev: m.dev(), ino: m.ino(), size: m.size(), mtime_sec: m.mtime(), mtime_nsec: m.mtime_nsec() };
    Ok((hex(&sha256_of(f)?), file))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file's sha256, as bytes.
pub fn sha256_bytes_of(path: &Path) -> io::Result<[u8; 32]> {
    // Through the one reader of outside files: never a FIFO or a device.
    sha256_of(crate::input::open_regular(path)?)
}

fn sha256_of(mut f: std::fs::File) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// The file's sha256 as pip's RECORD writes it: `sha256=` and unpadded
/// URL-safe base64.
pub fn record_sha256(path: &Path) -> io::Result<String> {
    Ok(format!("sha256={}", base64_url(&sha256_bytes_of(path)?)))
}

pub fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        let p = std::env::temp_dir().join(format!("culaunch-sha-{}", std::process::id()));
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn base64_url_matches_python() {
        // base64.urlsafe_b64encode(bytes(range(7))).rstrip(b"=")
        assert_eq!(base64_url(&[0, 1, 2, 3, 4, 5, 6]), "AAECAwQFBg");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }
}
