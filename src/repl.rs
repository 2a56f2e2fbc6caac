//! The interactive shell (rustyline). Placeholder until the REPL lands.

use crate::engine::{CliError, Shell};

/// Runs the REPL until Ctrl-D.
pub fn run(_shell: &Shell) -> Result<(), CliError> {
    Err(CliError {
        code: 1,
        message: "the REPL is not built yet".into(),
        usage: None,
    })
}
