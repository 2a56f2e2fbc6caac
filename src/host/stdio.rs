//! wsm's own stdout and stderr. Every line wsm writes goes through here (the crate root
//! redefines `println!`, `print!`, `eprintln!` and `eprint!` to call it, so a plain `println!`
//! in a primitive is covered too), and a reader that went away never panics wsm half-way.
//!
//! A closed stdout (`wsm stack ls | head -n 1`) ends the command as Ctrl-C does: the hook set
//! with [`on_stdout_closed`] (the host's interrupt) stops the running operation, the command's
//! clean-ups run, nothing more is written, and the process exits [`CLOSED_EXIT`] (141, that is
//! 128 + SIGPIPE: what a shell reports for a program a closed pipe ended, as it does for the
//! Docker CLI or `cat`), with no message. It does not carry on writing into nothing: a command
//! that streams (`logs -f`) would never end. A closed stderr only drops what would have gone
//! there.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static ON_CLOSED: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// The exit code of a command whose stdout was closed under it.
pub const CLOSED_EXIT: u8 = 141;

/// Sets what happens when stdout is found closed (once per process; the first call wins).
pub fn on_stdout_closed(f: impl Fn() + Send + Sync + 'static) {
    let _ = ON_CLOSED.set(Box::new(f));
}

/// Whether a write to stdout failed: its reader has gone.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// Writes `bytes` to stdout at once; false when stdout is closed (the first time, the
/// command is stopped through the [`on_stdout_closed`] hook).
pub fn write_stdout(bytes: &[u8]) -> bool {
    if stdout_closed() {
        return false;
    }
    let written = {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|_| out.flush()).is_ok()
    };
    if !written && !STDOUT_CLOSED.swap(true, Ordering::SeqCst) {
        if let Some(stop) = ON_CLOSED.get() {
            stop();
        }
    }
    written
}

/// Writes `bytes` to stderr at once; a closed stderr drops them.
pub fn write_stderr(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes).and_then(|_| err.flush());
}

/// `print!`/`println!`: formats and writes to stdout.
pub fn print_fmt(args: std::fmt::Arguments, newline: bool) -> bool {
    write_stdout(formatted(args, newline).as_bytes())
}

/// `eprint!`/`eprintln!`: formats and writes to stderr.
pub fn eprint_fmt(args: std::fmt::Arguments, newline: bool) {
    write_stderr(formatted(args, newline).as_bytes())
}

fn formatted(args: std::fmt::Arguments, newline: bool) -> String {
    let mut text = std::fmt::format(args);
    if newline {
        text.push('\n');
    }
    text
}
