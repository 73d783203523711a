//! Every file culaunch reads (config, lock, trace, the `#!` line of the
//! command) is opened here: only a regular file, never blocking on a FIFO,
//! and never read past a bound. `/dev/zero` as a config or a FIFO as a trace
//! is then a clear error instead of a hang or an out-of-memory abort.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Config and lock files are a few KB; anything this large is not one.
pub const SMALL_FILE_LIMIT: u64 = 16 << 20;

/// Opens `path` for reading if it is a regular file. O_NONBLOCK makes the
/// open of a FIFO return at once (then refused by type); it is cleared again
/// so reads of the file behave as usual.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    check_regular(&file)?;
    clear_nonblock(&file)?;
    Ok(file)
}

/// The same refusal for a file opened otherwise (the trace, for append).
pub fn check_regular(file: &File) -> io::Result<()> {
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}, not a regular file", kind_name(kind))))
}

/// What a file that is not a regular one is, in an error message.
fn kind_name(kind: std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

pub fn clear_nonblock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Refuses, before the run, an output path that names something no summary
/// or lock can go to (a directory, a block device, a socket). A missing
/// file is fine (it is created); a FIFO or a character device is checked
/// when written ([`write_output`]).
pub fn check_output(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) => output_kind_ok(&m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn output_kind_ok(m: &std::fs::Metadata) -> io::Result<()> {
    let kind = m.file_type();
    if kind.is_file() || kind.is_fifo() || kind.is_char_device() {
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}, not a file to write", kind_name(kind))))
}

/// Writes `bytes` to `path`, never blocking to open it: a regular file is
/// created or replaced whole, a FIFO is written only when a process reads
/// it (`>(jq .)`; none is an error, not a wait), a character device
/// (`/dev/null`, a terminal) as is.
pub fn write_output(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "a FIFO that no process reads"))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    output_kind_ok(&meta)?;
    if meta.file_type().is_file() {
        // Truncated only once known to be a regular file.
        file.set_len(0)?;
    }
    clear_nonblock(&file)?;
    file.write_all(bytes)
}

/// The whole of a small regular file as text, refused above `limit` bytes.
pub fn read_to_string(path: &Path, limit: u64) -> io::Result<String> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(limit));
    }
    let mut text = String::new();
    // take: the file may grow while it is read.
    file.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(text)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("larger than {} MiB, so not one", limit >> 20))
}

/// A trace file read from `start` up to its size now: processes still
/// appending cannot make the read endless. Returns the reader, positioned.
pub fn trace_reader(file: File, start: u64) -> io::Result<io::Take<File>> {
    use std::io::{Seek, SeekFrom};
    check_regular(&file)?;
    let len = file.metadata()?.len();
    let mut file = file;
    file.seek(SeekFrom::Start(start))?;
    Ok(file.take(len.saturating_sub(start)))
}

/// Opens a trace by name for [`trace_reader`].
pub fn open_trace(path: &Path, start: u64) -> io::Result<io::Take<File>> {
    trace_reader(open_regular(path)?, start)
}

/// The file, mapped read-only and private. Executable too when asked, as the
/// loader maps a module's code: a `noexec` mount refuses that with EPERM.
pub struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    /// Only a regular file (a FIFO or device is refused without blocking).
    pub fn open(path: &Path, exec: bool) -> io::Result<Mapped> {
        // O_NONBLOCK stays: a mapping never reads through the descriptor.
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            let kind = kind_name(meta.file_type());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{kind}, not a regular file")));
        }
        let len = usize::try_from(meta.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
        }
        let prot = libc::PROT_READ | if exec { libc::PROT_EXEC } else { 0 };
        // SAFETY: a fresh private mapping of an open file, unmapped in Drop;
        // its bytes are only read through `bytes`, within `len`.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as self lives.
        // (A file truncated meanwhile would fault; these are the module, the
        // system's libraries and ld.so.cache, which are replaced by rename,
        // not rewritten.)
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_refused_without_blocking() {
        for dev in ["/dev/zero", "/dev/full", "/dev/null"] {
            let e = open_regular(Path::new(dev)).unwrap_err();
            assert!(e.to_string().contains("character device"), "{dev}: {e}");
        }
        assert!(open_regular(Path::new("/")).unwrap_err().to_string().contains("directory"));
        let dir = std::env::temp_dir().join(format!("culaunch-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = read_to_string(&fifo, SMALL_FILE_LIMIT).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'#'; 2048]).unwrap();
        assert!(read_to_string(&big, 1024).is_err());
        assert_eq!(read_to_string(&big, 4096).unwrap().len(), 2048);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
