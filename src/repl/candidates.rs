//! What a command line's next word can be, for the REPL's Tab and for the shells' completion
//! (`wsm __complete`): command words, a family's commands, stack names (config files and the
//! stacks running on the swarm), and arguments through the completers a family declares
//! (`//! complete <nodeId>: module::function`), each asked with a deadline and cached briefly.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Array, Scope};

use crate::engine::{self, Shell};
use crate::host::Host;

/// How long a completer's candidates for a stack are reused before it is asked again.
const CANDIDATE_CACHE_TTL: Duration = Duration::from_secs(5);

/// How long a completer may take (it may ask the swarm) before completion gives up on it.
const COMPLETER_DEADLINE: Duration = Duration::from_secs(3);

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

/// The stacks on the swarm the default stack config points at.
const RUNNING_STACKS: &str = "import \"config\" as cfg; import \"stack\" as st; \
    import \"stack_view\" as view; view::stacks(st::engine(cfg::context(STACK))).map(|r| r.name)";

/// A completer's candidates and when it was asked.
type Asked = (Instant, Vec<String>);

/// What the next word of a command line can be.
pub enum Next {
    /// These words, each to be followed by the suffix.
    Words(Vec<String>, &'static str),
    /// A file name.
    Files,
}

/// Candidates for command lines, with the completers' answers cached per stack.
pub struct Candidates<'a> {
    shell: &'a Shell,
    /// A completer's candidates by (completer, stack), with when they were asked.
    cache: RefCell<HashMap<(String, String), Asked>>,
}

impl<'a> Candidates<'a> {
    pub fn new(shell: &'a Shell) -> Self {
        Candidates {
            shell,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// What may follow `words` (the line's words before the one being typed, `prefix`), or
    /// None when the first word starts no command line.
    pub fn after(&self, words: &[&str], prefix: &str) -> Option<Next> {
        let (first, rest) = words.split_first()?;
        if *first == "run" {
            return Some(Next::Files);
        }
        if matches!(*first, "help" | ":help") && rest.is_empty() {
            return Some(Next::Words(self.help_topics(), " "));
        }
        let Some(family) = self.shell.catalog.family(first) else {
            // A command directly in scripts/ (build-all-nodes) takes a stack name first.
            let single = self.shell.catalog.commands("").contains_key(*first);
            return Some(match rest {
                [] if single => Next::Words(self.stack_names(), " "),
                _ => Next::Words(Vec::new(), " "),
            });
        };
        let (stack, rest) = match rest {
            ["-s" | "--stack"] if family.takes_stack() => {
                return Some(Next::Words(self.stack_names(), " "))
            }
            ["-s" | "--stack", name, rest @ ..] if family.takes_stack() => (*name, rest),
            _ => ("", rest),
        };
        Some(match rest {
            [] => Next::Words(self.command_names(&family.name), " "),
            [cmd, args @ ..] => match self.argument_completer(family, cmd, args, prefix) {
                Some((completer, suffix)) => {
                    Next::Words(self.completer_candidates(&completer, stack), suffix)
                }
                None => Next::Files,
            },
        })
    }

    /// Command names of a family, with their aliases and `help`.
    pub fn command_names(&self, family: &str) -> Vec<String> {
        let mut names = BTreeSet::from(["help".to_string()]);
        for (name, doc) in self.shell.catalog.commands(family) {
            names.insert(name.clone());
            names.extend(doc.aliases.iter().cloned());
        }
        names.into_iter().collect()
    }

    /// Stack names that have a config file.
    pub fn stack_names(&self) -> Vec<String> {
        let dir = self.shell.host.opts.config_dir.join("stacks");
        let mut names: BTreeSet<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        let key = ("running stacks".to_string(), String::new());
        names.extend(self.cached(key, || self.eval_names(RUNNING_STACKS, "")));
        names.into_iter().collect()
    }

    /// What `help` knows: modules, types, functions, methods, families.
    fn help_topics(&self) -> Vec<String> {
        let mut topics: BTreeSet<String> = engine::docs::SECTIONS
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        topics.extend(
            engine::docs::Docs::of(&self.shell.engine)
                .iter()
                .map(|d| engine::docs::display_name(&d.name)),
        );
        topics.extend(
            self.shell
                .catalog
                .families()
                .iter()
                .map(|f| f.short_name().to_string()),
        );
        topics.into_iter().collect()
    }

    /// Asks `ask` unless its answer for `key` is a few seconds old.
    fn cached(
        &self,
        key: (String, String),
        ask: impl FnOnce() -> Option<Vec<String>>,
    ) -> Vec<String> {
        if let Some((at, found)) = self.cache.borrow().get(&key) {
            if at.elapsed() < CANDIDATE_CACHE_TTL {
                return found.clone();
            }
        }
        let found = ask().unwrap_or_default();
        self.cache
            .borrow_mut()
            .insert(key, (Instant::now(), found.clone()));
        found
    }

    /// What a completer (`module::function`, called with the stack's name) offers, cached for a
    /// few seconds; nothing when it fails or takes too long.
    fn completer_candidates(&self, completer: &str, stack: &str) -> Vec<String> {
        let key = (completer.to_string(), stack.to_string());
        self.cached(key, || {
            let (module, function) = completer.rsplit_once("::")?;
            self.eval_names(
                &format!("import {module:?} as m; m::{function}(STACK)"),
                stack,
            )
        })
    }

    /// The strings a script returns with `STACK` set, within the deadline; None when it fails.
    fn eval_names(&self, script: &str, stack: &str) -> Option<Vec<String>> {
        let host = &self.shell.host;
        host.clear_interrupt();
        let _deadline = Deadline::start(host, COMPLETER_DEADLINE);
        let mut scope = Scope::new();
        scope.push("STACK", stack.to_string());
        let found: Array = self.shell.engine.eval_with_scope(&mut scope, script).ok()?;
        Some(found.iter().map(|c| c.to_string()).collect())
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
        let commands = self.shell.catalog.commands(&family.name);
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
}
