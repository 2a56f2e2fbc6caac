//! `wsm` as a library: the script engine and its command families (`engine`), the host
//! primitives registered into it (`host`), the interactive shell (`repl`) and the shells'
//! completion that asks wsm (`completion`), the manual pages (`man`). The binary
//! (`main.rs`) parses the command line and hands over; the fuzz targets call the parsers here.

// A closed stdout or stderr must never panic wsm half-way (std's macros panic when the write
// fails): in this crate these four write through `host::stdio`, which stops the command
// cleanly when its reader has gone. They come before the modules so that those see them.
macro_rules! println {
    () => {{ $crate::host::stdio::print_fmt(format_args!(""), true); }};
    ($($arg:tt)*) => {{ $crate::host::stdio::print_fmt(format_args!($($arg)*), true); }};
}
macro_rules! print {
    ($($arg:tt)*) => {{ $crate::host::stdio::print_fmt(format_args!($($arg)*), false); }};
}
macro_rules! eprintln {
    () => {{ $crate::host::stdio::eprint_fmt(format_args!(""), true); }};
    ($($arg:tt)*) => {{ $crate::host::stdio::eprint_fmt(format_args!($($arg)*), true); }};
}
macro_rules! eprint {
    ($($arg:tt)*) => {{ $crate::host::stdio::eprint_fmt(format_args!($($arg)*), false); }};
}

pub mod completion;
pub mod engine;
pub mod host;
pub mod man;
pub mod repl;
