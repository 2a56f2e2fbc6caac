//! Tab completion at the prompt: command words, a family's commands, arguments through the
//! completers a family declares (`//! complete <nodeId>: module::function`), file names, and Rhai
//! names. And the validator that asks for more input when a Rhai block is unfinished.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Array, Scope};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};

use super::{is_command_line, types, CommandWords};
use crate::engine::{self, docs, Shell};
use crate::host::Host;

/// How long a completer's candidates for a stack are reused before it is asked again.
const CANDIDATE_CACHE_TTL: Duration = Duration::from_secs(5);

/// How long a completer may take (it may ask the swarm) before completion gives up on it.
const COMPLETER_DEADLINE: Duration = Duration::from_secs(3);

const RHAI_KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "while", "loop", "for", "in", "do", "until", "return",
    "break", "continue", "throw", "try", "catch", "switch", "import", "export", "as", "true",
    "false", "private", "global", "this",
];

/// Interrupts the host's blocking operations when a deadline passes, unless dropped before.
struct Deadline {
    host: Arc<Host>,
    cancel: Option<mpsc::Sender<()>>,
    timer: Option<std::thread::JoinHandle<()>>,
}

impl Deadline {
    fn start(host: &Arc<Host>, after: Duration) -> Self {
        let (cancel, cancelled) = mpsc::channel::<()>();
        let h = host.clone();
        let timer = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(after) {
                h.interrupt();
            }
        });
        Deadline {
            host: host.clone(),
            cancel: Some(cancel),
            timer: Some(timer),
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        drop(self.cancel.take());
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
        self.host.clear_interrupt();
    }
}

/// A completer's candidates and when it was asked.
type Asked = (Instant, Vec<String>);

/// Completion: command lines, Rhai names, and the methods of a value's type after `.`.
#[derive(Helper, Highlighter, Hinter, Validator)]
pub struct ReplHelper<'a> {
    shell: &'a Shell,
    /// The first words of command lines.
    words: CommandWords,
    /// Registered function names and keywords, computed once.
    rhai_names: Vec<String>,
    /// Variables, functions and module aliases of the session, refreshed before each prompt.
    pub session_names: Vec<String>,
    /// The type of each variable of the session, refreshed before each prompt.
    pub session_types: HashMap<String, String>,
    /// The methods of every type the engine knows.
    catalog: docs::Catalog,
    /// A completer's candidates by (completer, stack), with when they were asked.
    candidates: RefCell<HashMap<(String, String), Asked>>,
    files: FilenameCompleter,
}

impl<'a> ReplHelper<'a> {
    pub fn new(shell: &'a Shell, words: CommandWords) -> Self {
        let mut names: BTreeSet<String> = shell
            .engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|sig| {
                let sig = sig.strip_prefix("fn ").unwrap_or(sig);
                let name = &sig[..sig.find('(')?];
                let is_name = name.starts_with(|c: char| c.is_alphabetic() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == ':');
                is_name.then(|| name.to_string())
            })
            .collect();
        names.extend(RHAI_KEYWORDS.iter().map(|k| k.to_string()));
        ReplHelper {
            shell,
            words,
            rhai_names: names.into_iter().collect(),
            session_names: Vec::new(),
            session_types: HashMap::new(),
            catalog: docs::Catalog::of(&shell.engine),
            candidates: RefCell::new(HashMap::new()),
            files: FilenameCompleter::new(),
        }
    }

    /// Command names of a family, with their aliases and `help`.
    fn command_names(&self, family: &str) -> Vec<String> {
        let mut names = BTreeSet::from(["help".to_string()]);
        for (name, doc) in engine::list_commands(&self.shell.search, family) {
            names.insert(name);
            names.extend(doc.aliases);
        }
        names.into_iter().collect()
    }

    /// Stack names that have a config file.
    fn stack_names(&self) -> Vec<String> {
        let dir = self.shell.host.opts.config_dir.join("stacks");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// What a completer (`module::function`, called with the stack's name) offers, cached for a
    /// few seconds; nothing when it fails or takes too long.
    fn completer_candidates(&self, completer: &str, stack: &str) -> Vec<String> {
        let key = (completer.to_string(), stack.to_string());
        if let Some((at, found)) = self.candidates.borrow().get(&key) {
            if at.elapsed() < CANDIDATE_CACHE_TTL {
                return found.clone();
            }
        }
        let found = self.run_completer(completer, stack).unwrap_or_default();
        self.candidates
            .borrow_mut()
            .insert(key, (Instant::now(), found.clone()));
        found
    }

    fn run_completer(&self, completer: &str, stack: &str) -> Option<Vec<String>> {
        let (module, function) = completer.rsplit_once("::")?;
        let host = &self.shell.host;
        host.clear_interrupt();
        let _deadline = Deadline::start(host, COMPLETER_DEADLINE);
        let mut scope = Scope::new();
        scope.push("STACK", stack.to_string());
        let script = format!("import {module:?} as m; m::{function}(STACK)");
        let found: Array = self
            .shell
            .engine
            .eval_with_scope(&mut scope, &script)
            .ok()?;
        Some(found.iter().map(|c| c.to_string()).collect())
    }

    /// Candidates for the word at the cursor of a command line.
    fn complete_command(&self, line: &str, pos: usize, ctx: &Context<'_>) -> (usize, Vec<Pair>) {
        let start = line[..pos].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        let words: Vec<&str> = line[..start].split_whitespace().collect();
        let words_after = |pairs: Vec<String>| matching(prefix, pairs, " ");
        let files = || {
            self.files
                .complete(line, pos, ctx)
                .unwrap_or((pos, Vec::new()))
        };
        let Some((first, rest)) = words.split_first() else {
            return (start, Vec::new());
        };
        if *first == "run" {
            return files();
        }
        let Some(family) = engine::commands::find_family(&self.shell.search, first) else {
            // A command directly in scripts/ (build-all-nodes) takes a stack name first.
            return match rest {
                [] if self.words.contains(first) => (start, words_after(self.stack_names())),
                _ => (start, Vec::new()),
            };
        };
        let (stack, rest) = match rest {
            ["-s" | "--stack"] if family.takes_stack() => {
                return (start, words_after(self.stack_names()))
            }
            ["-s" | "--stack", name, rest @ ..] if family.takes_stack() => (*name, rest),
            _ => ("", rest),
        };
        let candidates = match rest {
            [] => words_after(self.command_names(&family.name)),
            [cmd, args @ ..] => match self.argument_completer(&family, cmd, args, prefix) {
                Some((completer, suffix)) => {
                    matching(prefix, self.completer_candidates(&completer, stack), suffix)
                }
                None => return files(),
            },
        };
        (start, candidates)
    }

    /// The completer for the word being typed after a command, and what follows a candidate.
    /// A placeholder the family has a completer for (`<nodeId>`) completes the first argument
    /// of a command whose usage line has it; `<nodeId>:<path>` completes every argument, with
    /// `:` after the id.
    fn argument_completer(
        &self,
        family: &engine::Family,
        cmd: &str,
        args: &[&str],
        prefix: &str,
    ) -> Option<(String, &'static str)> {
        let commands = engine::list_commands(&self.shell.search, &family.name);
        let usage = commands
            .iter()
            .find(|(name, doc)| *name == cmd || doc.aliases.iter().any(|a| a == cmd))
            .map(|(_, doc)| doc.usage.as_str())?;
        for (placeholder, completer) in &family.doc.completers {
            if usage.contains(&format!("{placeholder}:")) {
                return (!prefix.contains([':', '/', '.'])).then(|| (completer.clone(), ":"));
            }
            let first_argument = args.iter().all(|a| a.starts_with('-'));
            if usage.contains(placeholder.as_str()) && first_argument && !prefix.starts_with('-') {
                return Some((completer.clone(), " "));
            }
        }
        None
    }

    /// Candidates for the Rhai name at the cursor (`docker::con`, `my_var`).
    fn complete_rhai(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        if line[..start].ends_with('.') {
            return (start, self.complete_member(&line[..start - 1], prefix));
        }
        if prefix.is_empty() {
            return (start, Vec::new());
        }
        let names = self
            .rhai_names
            .iter()
            .chain(&self.session_names)
            .cloned()
            .collect();
        (start, matching(prefix, names, ""))
    }
}

impl ReplHelper<'_> {
    /// The methods of the type of the expression before the `.` (`e` → the engine's methods).
    fn complete_member(&self, receiver: &str, prefix: &str) -> Vec<Pair> {
        let Some(ty) = types::expression_type(receiver, &self.session_types) else {
            return Vec::new();
        };
        let Some(methods) = self.catalog.methods.get(&ty) else {
            return Vec::new();
        };
        matching(prefix, methods.iter().cloned().collect(), "")
    }
}

/// The names that start with `prefix`, sorted and unique, to be inserted followed by `suffix`.
fn matching(prefix: &str, names: Vec<String>, suffix: &str) -> Vec<Pair> {
    let names: BTreeSet<String> = names
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    names
        .into_iter()
        .map(|n| Pair {
            replacement: format!("{n}{suffix}"),
            display: n,
        })
        .collect()
}

impl Completer for ReplHelper<'_> {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        let first_word = !trimmed.is_empty()
            && trimmed
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == ':');
        if first_word {
            let start = pos - trimmed.len();
            let mut names: Vec<String> =
                self.words.offered.iter().map(|w| format!("{w} ")).collect();
            names.extend(self.rhai_names.iter().chain(&self.session_names).cloned());
            let mut candidates: Vec<Pair> = names
                .into_iter()
                .filter(|n| n.starts_with(trimmed))
                .map(|n| Pair {
                    display: n.trim_end().to_string(),
                    replacement: n,
                })
                .collect();
            candidates.sort_by(|a, b| a.display.cmp(&b.display));
            candidates.dedup_by(|a, b| a.display == b.display);
            return Ok((start, candidates));
        }
        Ok(if is_command_line(before, &self.words) {
            self.complete_command(line, pos, ctx)
        } else {
            self.complete_rhai(line, pos)
        })
    }
}
