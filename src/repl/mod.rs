//! The interactive shell. A line is either a command as typed in a terminal
//! (`stack -s demo status`, `swarm …`, `run FILE`, `help`, `exit`) or Rhai, evaluated
//! incrementally: variables stay in one scope, functions and imports stay defined.

pub mod candidates;
mod complete;
mod session;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::engine::{self, CliError, Shell};
use complete::ReplHelper;
use session::RhaiSession;

const PROMPT: &str = "wsm> ";

/// The prompt of the lines that continue an unfinished Rhai block.
const CONTINUATION_PROMPT: &str = "...> ";

const HELP: &str = "\
Type a command as in the shell, or Rhai:
  <family> [-s NAME] <command> [args…]  run a command of a family (Tab completes commands and ids)
  run FILE [args…]                      run a Rhai batch file with ARGS
  help [<topic>]                        this text; a module (help docker), a function or
                                        method (help docker::connect, help e.deploy), a
                                        family or command (help stack status); also :help
  exit, quit or Ctrl-D                  leave
Rhai lines keep their variables and functions, e.g.
  let s = stack(\"demo\"); s.status()
  wsm(\"stack -s demo status\")
Ctrl-C interrupts a running command, or cancels the line being typed.";

/// The words that start a command line rather than Rhai: every family's names, the commands
/// directly in `scripts/`, and the REPL's own.
#[derive(Debug, Clone, Default)]
pub struct CommandWords {
    /// Every first word of a command line.
    pub all: Vec<String>,
    /// The ones Tab offers (a family's short name, not the long ones).
    pub offered: Vec<String>,
}

impl CommandWords {
    fn from_catalog(catalog: &engine::Catalog) -> Self {
        let mut words = CommandWords::default();
        for family in catalog.families() {
            words.offered.push(family.short_name().to_string());
            words.all.push(family.name.clone());
            words.all.extend(family.doc.aliases.iter().cloned());
        }
        for name in catalog.commands("").keys() {
            words.offered.push(name.clone());
            words.all.push(name.clone());
        }
        for builtin in ["run", "help", ":help", "exit", "quit"] {
            words.all.push(builtin.into());
        }
        words
            .offered
            .extend(["run", "help", "exit"].map(String::from));
        words
    }

    fn contains(&self, word: &str) -> bool {
        self.all.iter().any(|w| w == word)
    }
}

/// Runs the REPL until Ctrl-D or `exit`.
pub fn run(shell: &Shell) -> Result<(), CliError> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_dups(true)
        .and_then(|b| b.max_history_size(10_000))
        .map(|b| b.build())
        .map_err(|e| terminal_error(&e))?;
    let mut rl = editor_keeping_sigint(shell, config).map_err(|e| terminal_error(&e))?;
    let words = CommandWords::from_catalog(&shell.catalog);
    rl.set_helper(Some(ReplHelper::new(shell, words.clone())));
    let history = history_file().filter(|path| match prepare_history(&mut rl, path) {
        Ok(()) => true,
        Err(e) => {
            shell
                .host
                .warn(&format!("the history {} is not kept: {e}", path.display()));
            false
        }
    });
    let mut history_warned = false;
    let mut session = RhaiSession::new();
    loop {
        let types = session.types(&shell.engine);
        if let Some(helper) = rl.helper_mut() {
            helper.session_names = session.names(&shell.engine);
            helper.session_types = types.clone();
            helper.session_map_keys = session.map_keys();
        }
        let line = match read_input(&mut rl, shell, &words) {
            Ok(Some(line)) => line,
            Ok(None) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(terminal_error(&e)),
        };
        if line.trim().is_empty() {
            continue;
        }
        // Saved at once, so that a killed session keeps what was typed.
        let _ = rl.add_history_entry(line.as_str());
        if let Some(path) = &history {
            if let Err(e) = save_history(&mut rl, path) {
                if !history_warned {
                    shell.host.warn(&format!(
                        "cannot save the history to {}: {e}",
                        path.display()
                    ));
                    history_warned = true;
                }
            }
        }
        shell.host.clear_interrupt();
        let outcome = if is_command_line(&line, &words) {
            run_command_line(shell, &line, &types)
        } else {
            session.eval(shell, &line)
        };
        shell.host.run_cleanups();
        match outcome {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(e) => e.print(),
        }
    }
    Ok(())
}

/// Reads one input: a line, and while it is an unfinished Rhai block (`fn f(x) {`) more lines
/// under the continuation prompt. None when Ctrl-C cancelled it.
fn read_input(
    rl: &mut Editor<ReplHelper, FileHistory>,
    shell: &Shell,
    words: &CommandWords,
) -> Result<Option<String>, ReadlineError> {
    let mut input = match rl.readline(PROMPT) {
        Ok(line) => line,
        Err(ReadlineError::Interrupted) => return Ok(None),
        Err(e) => return Err(e),
    };
    while !is_command_line(&input, words) && is_unfinished(shell, &input) {
        match rl.readline(CONTINUATION_PROMPT) {
            Ok(more) => {
                input.push('\n');
                input.push_str(&more);
            }
            Err(ReadlineError::Interrupted) => return Ok(None),
            // Ctrl-D ends the block: it runs, and its error says what is missing.
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(input))
}

/// Whether Rhai input only lacks its end, so the next line continues it.
fn is_unfinished(shell: &Shell, input: &str) -> bool {
    !input.trim().is_empty()
        && shell
            .engine
            .compile(input)
            .is_err_and(|e| session::is_incomplete(input, &e))
}

/// What the loop does after a line.
enum Flow {
    Continue,
    Exit,
}

/// Creates the line editor without letting it take Ctrl-C away from the host. rustyline
/// installs its own SIGINT handler for the editor's lifetime (at the prompt it reads Ctrl-C
/// as a key anyway), which would keep Ctrl-C from interrupting a running command.
fn editor_keeping_sigint<'a>(
    shell: &'a Shell,
    config: Config,
) -> rustyline::Result<Editor<ReplHelper<'a>, FileHistory>> {
    // The host's handler is installed lazily; make sure it is in place before it is saved.
    {
        let _runtime = shell.host.rt.enter();
        let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    }
    // SAFETY: sigaction only reads and writes the two structs given; a null pointer is allowed
    // for either.
    unsafe {
        let mut host_action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGINT, std::ptr::null(), &mut host_action);
        let editor = Editor::with_config(config);
        libc::sigaction(libc::SIGINT, &host_action, std::ptr::null_mut());
        editor
    }
}

fn terminal_error(e: &dyn std::fmt::Display) -> CliError {
    CliError {
        code: 1,
        message: format!("the terminal failed: {e}"),
        usage: None,
    }
}

/// `$XDG_STATE_HOME/wsm/history`, else `~/.local/state/wsm/history` (macOS too).
fn history_file() -> Option<PathBuf> {
    Some(crate::host::xdg::state_dir()?.join("wsm").join("history"))
}

/// Creates the history's folder and loads what earlier sessions saved.
fn prepare_history(rl: &mut Editor<ReplHelper, FileHistory>, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    if path.exists() {
        rl.load_history(path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Appends the lines typed since the last save (other sessions' lines stay in the file).
fn save_history(rl: &mut Editor<ReplHelper, FileHistory>, path: &Path) -> Result<(), String> {
    rl.append_history(path).map_err(|e| e.to_string())
}

/// Whether a line is a command (`stack -s demo status`) rather than Rhai (`stack("demo")`).
fn is_command_line(line: &str, words: &CommandWords) -> bool {
    let line = line.trim_start();
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let (word, rest) = line.split_at(end);
    if !words.contains(word) {
        return false;
    }
    // `stack = …`, `run (x)`, `help.len()` read as Rhai.
    let rest = rest.trim_start();
    !(rest.starts_with('=')
        || rest.starts_with('(')
        || rest.starts_with('.')
        || rest.starts_with('['))
}

/// Runs a command line exactly as the CLI would; `types` are the session's variables' types
/// (for `help e.deploy`).
fn run_command_line(
    shell: &Shell,
    line: &str,
    types: &HashMap<String, String>,
) -> Result<Flow, CliError> {
    let words = shell_words::split(line)
        .map_err(|e| CliError::usage(format!("cannot split the line: {e}"), None))?;
    let words = engine::commands::session_flags(&shell.host, &words)?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(Flow::Continue);
    };
    match first.as_str() {
        "exit" | "quit" => return Ok(Flow::Exit),
        "help" | ":help" if !rest.is_empty() => {
            let width = engine::docs::terminal_width();
            println!(
                "{}",
                engine::docs::help::help(
                    &shell.catalog,
                    &engine::docs::Docs::of(&shell.engine),
                    rest,
                    types,
                    width
                )?
            );
        }
        "help" | ":help" => {
            println!("{HELP}");
            let modules: Vec<&str> = engine::docs::SECTIONS.iter().map(|(n, _)| *n).collect();
            println!(
                "\n{}",
                engine::docs::wrap(
                    &format!("Modules and types (help <name>): {}.", modules.join(", ")),
                    engine::docs::terminal_width(),
                    "  "
                )
            );
            for family in shell.catalog.families() {
                let short = family.short_name();
                let mut title = short.to_string();
                title[..1].make_ascii_uppercase();
                println!(
                    "\n{title} commands ({short} …):\n{}",
                    engine::docs::help::family_listing(
                        &shell.catalog,
                        family,
                        short,
                        engine::docs::terminal_width()
                    )
                );
            }
        }
        "run" => {
            let Some((file, args)) = rest.split_first() else {
                return Err(CliError::usage(
                    "no file given",
                    Some("run FILE [args…]".into()),
                ));
            };
            shell.run_file(Path::new(file), args)?;
        }
        _ => shell.dispatch(&words)?,
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_told_from_rhai() {
        let words = CommandWords {
            all: ["stack", "swarm", "exit", "run"].map(String::from).to_vec(),
            offered: Vec::new(),
        };
        let is_command_line = |line| is_command_line(line, &words);
        assert!(is_command_line("stack -s demo status"));
        assert!(is_command_line("  swarm ls"));
        assert!(is_command_line("exit"));
        assert!(!is_command_line("stack(\"demo\").status()"));
        assert!(!is_command_line("stack (\"demo\")"));
        assert!(!is_command_line("let s = stack(\"demo\")"));
        assert!(!is_command_line("run = 1"));
        assert!(!is_command_line("stacks"));
    }
}
