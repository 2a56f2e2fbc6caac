//! Tab completion at the prompt: command lines (`candidates`), file names, Rhai names, and
//! after a value's `.` the methods of its type (`types`).

use std::collections::{BTreeSet, HashMap};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};

use super::candidates::{Candidates, Next};
use super::{is_command_line, types, CommandWords};
use crate::engine::{docs, Shell};

const RHAI_KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "while", "loop", "for", "in", "do", "until", "return",
    "break", "continue", "throw", "try", "catch", "switch", "import", "export", "as", "true",
    "false", "private", "global", "this",
];

/// Completion: command lines, Rhai names, and the methods of a value's type after `.`.
#[derive(Helper, Highlighter, Hinter, Validator)]
pub struct ReplHelper<'a> {
    /// The first words of command lines.
    words: CommandWords,
    /// Registered function names and keywords, computed once.
    rhai_names: Vec<String>,
    /// Variables, functions and module aliases of the session, refreshed before each prompt.
    pub session_names: Vec<String>,
    /// The type of each variable of the session, refreshed before each prompt.
    pub session_types: HashMap<String, String>,
    /// The keys of the session's variables that hold maps, refreshed before each prompt.
    pub session_map_keys: HashMap<String, Vec<String>>,
    /// The methods of every type the engine knows.
    catalog: docs::Catalog,
    /// The primitives' docs: what a call returns.
    docs: docs::Docs,
    /// What command lines' words can be.
    candidates: Candidates<'a>,
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
            words,
            rhai_names: names.into_iter().collect(),
            session_names: Vec::new(),
            session_types: HashMap::new(),
            session_map_keys: HashMap::new(),
            catalog: docs::Catalog::of(&shell.engine),
            docs: docs::Docs::of(&shell.engine),
            candidates: Candidates::new(shell),
            files: FilenameCompleter::new(),
        }
    }

    /// Candidates for the word at the cursor of a command line.
    fn complete_command(&self, line: &str, pos: usize, ctx: &Context<'_>) -> (usize, Vec<Pair>) {
        let start = line[..pos].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        let words: Vec<&str> = line[..start].split_whitespace().collect();
        match self.candidates.after(&words, prefix) {
            Some(Next::Words(names, suffix)) => (start, matching(prefix, names, suffix)),
            Some(Next::Files) => self
                .files
                .complete(line, pos, ctx)
                .unwrap_or((pos, Vec::new())),
            None => (start, Vec::new()),
        }
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
        let Some(ty) = types::expression_type(&self.docs, receiver, &self.session_types) else {
            return Vec::new();
        };
        let mut names: Vec<String> = self
            .catalog
            .methods
            .get(&ty)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        // A map variable's keys are properties of it.
        let variable = types::trailing_variable(receiver);
        if let Some(keys) = variable.and_then(|v| self.session_map_keys.get(v)) {
            names.extend(keys.iter().filter(|k| types::is_identifier(k)).cloned());
        }
        matching(prefix, names, "")
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
