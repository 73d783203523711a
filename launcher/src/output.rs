//! What culaunch's own commands (`deps`, `report`, `doctor`) print on
//! stdout. A reader that goes away (`culaunch deps … | head -1`) is a normal
//! end, as for ripgrep: culaunch stops quietly with status 0, never panics.

use std::io::{self, Write};

use crate::error::EXIT_CULAUNCH;

/// `print!` for command output: see the module comment.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for command output: see the module comment.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub fn write_stdout(args: std::fmt::Arguments) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        end_on(e);
    }
}

/// Command output that is bytes (paths as the file system has them).
pub fn write_bytes(bytes: &[u8]) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        end_on(e);
    }
}

fn end_on(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("culaunch: cannot write to stdout: {e}");
    std::process::exit(i32::from(EXIT_CULAUNCH));
}
