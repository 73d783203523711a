//! File digests, in one place: the sha256 that locks and pip's RECORD use.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The file's sha256, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    Ok(sha256_bytes_of(path)?.iter().map(|b| format!("{b:02x}")).collect())
}

/// The file's sha256, as bytes.
pub fn sha256_bytes_of(path: &Path) -> io::Result<[u8; 32]> {
    // Through the one reader of outside files: never a FIFO or a device.
    let mut f = crate::input::open_regular(path)?;
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
}
