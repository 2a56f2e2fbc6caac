//! The interactive shell. A line is either a command as typed in a terminal
//! (`stack -s demo status`, `swarm …`, `run FILE`, `help`, `exit`) or Rhai, evaluated
//! incrementally: variables stay in one scope, functions and imports stay defined.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{
    Array, Dynamic, EvalAltResult, LexError, ParseError, ParseErrorType, Position, Scope, AST,
};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper, Highlighter, Hinter};

use crate::engine::{self, CliError, Shell};
use crate::host::Host;

const PROMPT: &str = "wsm> ";

/// First words that make a line a command rather than Rhai.
const COMMAND_WORDS: &[&str] = &[
    "stack",
    "swarm",
    "manage-stack",
    "manage-swarm",
    "build-all-nodes",
    "run",
    "help",
    "exit",
    "quit",
];

/// First words offered by completion (the long family names stay out of the way).
const COMPLETED_COMMAND_WORDS: &[&str] =
    &["stack", "swarm", "build-all-nodes", "run", "help", "exit"];

/// Stack commands whose arguments are node ids.
const NODE_ID_COMMANDS: &[&str] = &["attach", "shell", "logs", "debug-wavelet", "dump-db", "cp"];

/// Node ids offered when the running stack cannot be asked.
const STATIC_NODE_IDS: &[&str] = &["1", "2", "3", "sync", "loadbalancer", "benchmark"];

/// How long node ids of a stack are reused before the swarm is asked again.
const NODE_ID_CACHE_TTL: Duration = Duration::from_secs(5);

/// How long completion may wait for the swarm before falling back to the static ids.
const NODE_ID_DEADLINE: Duration = Duration::from_secs(3);

/// Asks the stack's swarm for the ids of its running nodes.
const NODE_IDS_SCRIPT: &str = r#"
import "config" as cfg; import "stack" as st; import "nodes" as n;
let ctx = cfg::context(STACK);
n::ids(st::engine(ctx), ctx.stack)
"#;

const RHAI_KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "while", "loop", "for", "in", "do", "until", "return",
    "break", "continue", "throw", "try", "catch", "switch", "import", "export", "as", "true",
    "false", "private", "global", "this",
];

const HELP: &str = "\
Type a command as in the shell, or Rhai:
  stack [-s NAME] <command> [args…]   run a stack command (Tab completes commands and node ids)
  swarm <command> [args…]              run a swarm command
  build-all-nodes [stack]              build the node images and push them
  run FILE [args…]                     run a Rhai batch file with ARGS
  help                                 this text
  exit, quit or Ctrl-D                 leave
Rhai lines keep their variables and functions, e.g.
  let s = stack(\"demo\"); s.status()
  wsm(\"stack -s demo status\")
Ctrl-C interrupts a running command, or cancels the line being typed.";

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
    rl.set_helper(Some(ReplHelper::new(shell)));
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
        if let Some(helper) = rl.helper_mut() {
            helper.session_names = session.names();
        }
        let line = match rl.readline(PROMPT) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
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
        let outcome = if is_command_line(&line) {
            run_command_line(shell, &line)
        } else {
            session.eval(shell, &line)
        };
        match outcome {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(e) => print_error(&e),
        }
    }
    Ok(())
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

fn print_error(e: &CliError) {
    if !e.message.is_empty() {
        eprintln!("error: {}", e.message);
    }
    if let Some(u) = &e.usage {
        eprintln!("usage: {u}");
    }
}

/// `$XDG_STATE_HOME/wsm/history`, else `~/.local/state/wsm/history`.
fn history_file() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))?;
    Some(state.join("wsm").join("history"))
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
fn is_command_line(line: &str) -> bool {
    let line = line.trim_start();
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let (word, rest) = line.split_at(end);
    if !COMMAND_WORDS.contains(&word) {
        return false;
    }
    // `stack = …`, `run (x)`, `help.len()` read as Rhai.
    let rest = rest.trim_start();
    !(rest.starts_with('=')
        || rest.starts_with('(')
        || rest.starts_with('.')
        || rest.starts_with('['))
}

/// Runs a command line exactly as the CLI would.
fn run_command_line(shell: &Shell, line: &str) -> Result<Flow, CliError> {
    let words = shell_words::split(line)
        .map_err(|e| CliError::usage(format!("cannot split the line: {e}"), None))?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(Flow::Continue);
    };
    match first.as_str() {
        "exit" | "quit" => return Ok(Flow::Exit),
        "help" => {
            println!("{HELP}\n");
            println!(
                "Stack commands (stack …):\n{}\n",
                engine::family_usage(&shell.search, "manage-stack")
            );
            println!(
                "Swarm commands (swarm …):\n{}",
                engine::family_usage(&shell.search, "manage-swarm")
            );
        }
        "stack" | "manage-stack" => {
            let (stack, rest) = engine::split_stack_flag(rest);
            let rest = without_global_flags(shell, &rest)?;
            crate::run_family(shell, "manage-stack", stack.as_deref(), &rest)?;
        }
        "swarm" | "manage-swarm" => {
            let rest = without_global_flags(shell, rest)?;
            crate::run_family(shell, "manage-swarm", None, &rest)?;
        }
        "build-all-nodes" => {
            if rest.len() > 1 {
                return Err(CliError::usage(
                    "too many arguments",
                    Some("build-all-nodes [stack]".into()),
                ));
            }
            if shell.search.find("scripts/build-all-nodes.rhai").is_none() {
                return Err(CliError {
                    code: 1,
                    message: "build-all-nodes.rhai is missing".into(),
                    usage: None,
                });
            }
            shell.run_command("", None, "build-all-nodes", rest)?;
        }
        "run" => {
            let Some((file, args)) = rest.split_first() else {
                return Err(CliError::usage(
                    "no file given",
                    Some("run FILE [args…]".into()),
                ));
            };
            shell.run_file(Path::new(file), &without_global_flags(shell, args)?)?;
        }
        other => return Err(CliError::usage(format!("unknown command {other:?}"), None)),
    }
    Ok(Flow::Continue)
}

/// Drops `--json`, `--yes` and `--verbose` as the CLI does after a command or batch file. They are fixed for
/// the session, so asking for one that is off is an error that says how to get it.
fn without_global_flags(shell: &Shell, args: &[String]) -> Result<Vec<String>, CliError> {
    let opts = &shell.host.opts;
    let mut kept = Vec::new();
    for arg in args {
        let on = match arg.as_str() {
            "--json" => opts.json,
            "--yes" => opts.yes,
            "--verbose" => opts.verbose,
            _ => {
                kept.push(arg.clone());
                continue;
            }
        };
        if !on {
            return Err(CliError::usage(
                format!("{arg} is set for the whole session: start it with `wsm {arg} repl`"),
                None,
            ));
        }
    }
    Ok(kept)
}

/// Rhai evaluated line by line, the way rhai's own REPL does: one scope for the variables, an
/// AST that keeps only function definitions, and the top-level imports kept as text (clearing
/// an AST's statements drops them, rhai issue #934).
struct RhaiSession {
    scope: Scope<'static>,
    functions: AST,
    imports: Vec<String>,
}

impl RhaiSession {
    fn new() -> Self {
        RhaiSession {
            scope: Scope::new(),
            functions: AST::empty(),
            imports: Vec::new(),
        }
    }

    /// Evaluates one input and prints its value when it has one.
    fn eval(&mut self, shell: &Shell, input: &str) -> Result<Flow, CliError> {
        match self.eval_value(shell, input) {
            Ok(value) if value.is_unit() => Ok(Flow::Continue),
            Ok(value) => {
                println!("=> {value:?}");
                Ok(Flow::Continue)
            }
            Err(e) => Err(engine::to_cli_error(&e, "input", None)),
        }
    }

    fn eval_value(&mut self, shell: &Shell, input: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let engine = &shell.engine;
        let line_ast = engine.compile_with_scope(&self.scope, input)?;
        let imports_ast = if self.imports.is_empty() {
            AST::empty()
        } else {
            engine.compile(self.imports.join("\n"))?
        };
        let mut program = self.functions.merge(&imports_ast).merge(&line_ast);
        let result = engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &program);
        // Functions defined by the line stay, even when its statements failed.
        program.clear_statements();
        self.functions = program;
        for import in top_level_imports(input) {
            if self.imports.contains(&import) {
                continue;
            }
            // An import that cannot be resolved would fail every later line.
            if result.is_ok() || engine.run(&import).is_ok() {
                self.imports.push(import);
            }
        }
        result
    }

    /// Variable, function and module alias names, for completion.
    fn names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self
            .scope
            .iter_raw()
            .map(|(name, ..)| name.to_string())
            .collect();
        names.extend(self.functions.iter_functions().map(|f| f.name.to_string()));
        for import in &self.imports {
            if let Some(alias) = import
                .trim_end_matches(';')
                .rsplit_once(" as ")
                .map(|(_, a)| a.trim())
            {
                names.insert(alias.to_string());
            }
        }
        names.into_iter().collect()
    }
}

/// The `import …;` statements at the top level of a script, in order.
fn top_level_imports(script: &str) -> Vec<String> {
    let mut imports = Vec::new();
    let mut depth = 0i32;
    let mut at_statement_start = true;
    let mut chars = script.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '`' | '\'' => {
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                at_statement_start = false;
            }
            '/' if chars.peek().map(|&(_, d)| d) == Some('/') => {
                for (_, d) in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().map(|&(_, d)| d) == Some('*') => {
                chars.next();
                let mut prev = ' ';
                for (_, d) in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            '{' | '(' | '[' => {
                depth += 1;
                at_statement_start = c == '{';
            }
            '}' | ')' | ']' => {
                depth -= 1;
                at_statement_start = c == '}';
            }
            ';' => at_statement_start = true,
            c if c.is_whitespace() => {}
            _ if at_statement_start && depth == 0 && is_keyword_at(script, i, "import") => {
                let end = statement_end(script, i);
                imports.push(format!(
                    "{};",
                    script[i..end].trim().trim_end_matches(';').trim()
                ));
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
                at_statement_start = true;
            }
            _ => at_statement_start = false,
        }
    }
    imports
}

fn is_keyword_at(text: &str, at: usize, keyword: &str) -> bool {
    text[at..].starts_with(keyword)
        && !text[at + keyword.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
}

/// Where the statement starting at `from` ends: after its `;` (outside strings), or at the end.
fn statement_end(text: &str, from: usize) -> usize {
    let mut quote = None;
    for (i, c) in text[from..].char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None if c == ';' || c == '\n' => return from + i + 1,
            None => {}
        }
    }
    text.len()
}

/// Whether a parse error only says that the input has not ended yet (`fn f(x) {`, `1 +`).
fn is_incomplete(input: &str, err: &ParseError) -> bool {
    let (line, column) = end_position(input);
    let at_end = |pos: Position| match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => (l, c) >= (line, column),
        _ => pos.is_none(),
    };
    match err.err_type() {
        ParseErrorType::UnexpectedEOF => true,
        ParseErrorType::MissingToken(..) | ParseErrorType::MissingSymbol(..) => {
            at_end(err.position())
        }
        // A back-tick string may span lines.
        ParseErrorType::BadInput(LexError::UnterminatedString) => {
            char_at(input, err.position()) == Some('`')
        }
        _ => false,
    }
}

/// The (line, column) just past the last character that is not white space, 1-based as rhai counts.
fn end_position(input: &str) -> (usize, usize) {
    let trimmed = input.trim_end();
    let line = trimmed.split('\n').count().max(1);
    let column = trimmed.rsplit('\n').next().map_or(0, |l| l.chars().count());
    (line, column + 1)
}

fn char_at(input: &str, pos: Position) -> Option<char> {
    let (line, column) = (pos.line()?, pos.position()?);
    input.split('\n').nth(line - 1)?.chars().nth(column - 1)
}

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

/// Completion, and the validator that lets a Rhai block continue on the next line.
#[derive(Helper, Highlighter, Hinter)]
struct ReplHelper<'a> {
    shell: &'a Shell,
    /// Registered function names and keywords, computed once.
    rhai_names: Vec<String>,
    /// Variables, functions and module aliases of the session, refreshed before each prompt.
    session_names: Vec<String>,
    node_ids: RefCell<HashMap<String, (Instant, Vec<String>)>>,
    files: FilenameCompleter,
}

impl<'a> ReplHelper<'a> {
    fn new(shell: &'a Shell) -> Self {
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
            rhai_names: names.into_iter().collect(),
            session_names: Vec::new(),
            node_ids: RefCell::new(HashMap::new()),
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

    /// The node ids of the stack's running tasks, cached for a few seconds; the static ids when
    /// the swarm cannot be asked or runs nothing.
    fn node_ids(&self, stack: &str) -> Vec<String> {
        if let Some((at, ids)) = self.node_ids.borrow().get(stack) {
            if at.elapsed() < NODE_ID_CACHE_TTL {
                return ids.clone();
            }
        }
        let ids = self
            .running_node_ids(stack)
            .filter(|ids| !ids.is_empty())
            .unwrap_or_else(|| STATIC_NODE_IDS.iter().map(|s| s.to_string()).collect());
        self.node_ids
            .borrow_mut()
            .insert(stack.to_string(), (Instant::now(), ids.clone()));
        ids
    }

    fn running_node_ids(&self, stack: &str) -> Option<Vec<String>> {
        let host = &self.shell.host;
        host.clear_interrupt();
        let _deadline = Deadline::start(host, NODE_ID_DEADLINE);
        let mut scope = Scope::new();
        scope.push("STACK", stack.to_string());
        let ids: Array = self
            .shell
            .engine
            .eval_with_scope(&mut scope, NODE_IDS_SCRIPT)
            .ok()?;
        Some(ids.iter().map(|id| id.to_string()).collect())
    }

    /// Candidates for the word at the cursor of a command line.
    fn complete_command(&self, line: &str, pos: usize, ctx: &Context<'_>) -> (usize, Vec<Pair>) {
        let start = line[..pos].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        let words: Vec<&str> = line[..start].split_whitespace().collect();
        let words_after = |pairs: Vec<String>| matching(prefix, pairs, " ");
        let candidates = match words.as_slice() {
            ["stack" | "manage-stack", rest @ ..] => {
                let (stack, rest) = match rest {
                    ["-s" | "--stack"] => return (start, words_after(self.stack_names())),
                    ["-s" | "--stack", name, rest @ ..] => (*name, rest),
                    _ => ("", rest),
                };
                match rest {
                    [] => words_after(self.command_names("manage-stack")),
                    [cmd, args @ ..] => match self.node_id_slot(cmd, args, prefix) {
                        Some(suffix) => matching(prefix, self.node_ids(stack), suffix),
                        None => {
                            return self
                                .files
                                .complete(line, pos, ctx)
                                .unwrap_or((pos, Vec::new()))
                        }
                    },
                }
            }
            ["swarm" | "manage-swarm"] => words_after(self.command_names("manage-swarm")),
            ["build-all-nodes"] => words_after(self.stack_names()),
            ["run", ..] => {
                return self
                    .files
                    .complete(line, pos, ctx)
                    .unwrap_or((pos, Vec::new()))
            }
            _ => Vec::new(),
        };
        (start, candidates)
    }

    /// Whether the word being typed after a stack command is a node id, and what follows the id:
    /// `cp` takes `<nodeId>:<path>`; the others take a node id as their first argument (their
    /// usage line says `<nodeId>`, or they are known to).
    fn node_id_slot(&self, cmd: &str, args: &[&str], prefix: &str) -> Option<&'static str> {
        let commands = engine::list_commands(&self.shell.search, "manage-stack");
        let usage = commands
            .iter()
            .find(|(name, doc)| *name == cmd || doc.aliases.iter().any(|a| a == cmd))
            .map(|(_, doc)| doc.usage.as_str())
            .unwrap_or_default();
        if cmd == "cp" || usage.contains("<nodeId>:") {
            return (!prefix.contains([':', '/', '.'])).then_some(":");
        }
        let takes_id = NODE_ID_COMMANDS.contains(&cmd) || usage.contains("<nodeId>");
        let first_argument = args.iter().all(|a| a.starts_with('-'));
        (takes_id && first_argument && !prefix.starts_with('-')).then_some(" ")
    }

    /// Candidates for the Rhai name at the cursor (`docker::con`, `my_var`).
    fn complete_rhai(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
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
            let mut names: Vec<String> = COMPLETED_COMMAND_WORDS
                .iter()
                .map(|w| format!("{w} "))
                .collect();
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
        Ok(if is_command_line(before) {
            self.complete_command(line, pos, ctx)
        } else {
            self.complete_rhai(line, pos)
        })
    }
}

impl Validator for ReplHelper<'_> {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim().is_empty() || is_command_line(input) {
            return Ok(ValidationResult::Valid(None));
        }
        Ok(match self.shell.engine.compile(input) {
            Err(e) if is_incomplete(input, &e) => ValidationResult::Incomplete,
            _ => ValidationResult::Valid(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incomplete(input: &str) -> bool {
        let engine = rhai::Engine::new();
        engine
            .compile(input)
            .is_err_and(|e| is_incomplete(input, &e))
    }

    #[test]
    fn unfinished_input_asks_for_more() {
        for input in [
            "fn f(x) {",
            "1 +",
            "let a = [1, 2,",
            "foo(1,",
            "if x {\n  1",
            "let s = `abc",
            "#{ a: 1,",
        ] {
            assert!(incomplete(input), "{input:?} should be incomplete");
        }
    }

    #[test]
    fn wrong_input_is_not_incomplete() {
        for input in [
            "let = ;",
            "1 2",
            "foo(1 2)",
            "let x = ;",
            "\"abc",
            "}",
            "x.",
            "1 +;",
        ] {
            assert!(
                !incomplete(input),
                "{input:?} should be an error, not incomplete"
            );
        }
    }

    #[test]
    fn commands_are_told_from_rhai() {
        assert!(is_command_line("stack -s demo status"));
        assert!(is_command_line("  swarm ls"));
        assert!(is_command_line("exit"));
        assert!(!is_command_line("stack(\"demo\").status()"));
        assert!(!is_command_line("stack (\"demo\")"));
        assert!(!is_command_line("let s = stack(\"demo\")"));
        assert!(!is_command_line("run = 1"));
        assert!(!is_command_line("stacks"));
    }

    #[test]
    fn top_level_imports_are_found() {
        assert_eq!(
            top_level_imports(
                "import \"config\" as cfg; let x = cfg::context(\"\"); import \"nodes\" as n"
            ),
            ["import \"config\" as cfg;", "import \"nodes\" as n;"]
        );
        assert!(top_level_imports("fn f() { import \"x\" as y; }").is_empty());
        assert!(top_level_imports("let s = \"import x\"; important()").is_empty());
    }
}
