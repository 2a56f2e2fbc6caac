//! The Rhai engine: limits, host primitive families, and the script search path. A script's
//! relative path (`scripts/manage-stack/start.rhai`, `stdlib/stack.rhai`) is looked up in
//! `$WSM_SCRIPT_PATH` entries, then `./`, then `$XDG_CONFIG_HOME/wsm/`, then the copy bundled
//! into the binary; the first found wins, so users override or add scripts by dropping files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use include_dir::{include_dir, Dir};
use rhai::module_resolvers::ModuleResolver;
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, Map, Module, NativeCallContext, Position, Scope, Shared,
    AST,
};

use crate::host::{self, Host, ScriptResult};

static STDLIB: Dir = include_dir!("$CARGO_MANIFEST_DIR/stdlib");
static SCRIPTS: Dir = include_dir!("$CARGO_MANIFEST_DIR/scripts");
static NODES: Dir = include_dir!("$CARGO_MANIFEST_DIR/nodes");

/// Where scripts come from, in order of precedence.
#[derive(Debug, Clone)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

/// A script found on the search path: its text and where it came from.
#[derive(Debug, Clone)]
pub struct Found {
    pub origin: String,
    pub text: String,
}

impl SearchPath {
    /// The standard search path for this process.
    pub fn from_env() -> Self {
        let mut dirs: Vec<PathBuf> = std::env::var_os("WSM_SCRIPT_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.push(PathBuf::from("."));
        if let Some(cfg) = dirs::config_dir() {
            dirs.push(cfg.join("wsm"));
        }
        SearchPath { dirs }
    }

    fn bundled(rel: &str) -> Option<&'static include_dir::File<'static>> {
        let (top, rest) = rel.split_once('/')?;
        match top {
            "stdlib" => STDLIB.get_file(rest),
            "scripts" => SCRIPTS.get_file(rest),
            "nodes" => NODES.get_file(rest),
            _ => None,
        }
    }

    /// Finds a file by its path relative to a search root.
    pub fn find(&self, rel: &str) -> Option<Found> {
        for dir in &self.dirs {
            let p = dir.join(rel);
            if let Ok(text) = std::fs::read_to_string(&p) {
                return Some(Found {
                    origin: p.display().to_string(),
                    text,
                });
            }
        }
        Self::bundled(rel).map(|f| Found {
            origin: format!("embedded:{rel}"),
            text: f.contents_utf8().unwrap_or_default().to_string(),
        })
    }

    /// Names of the `*.rhai` files in a folder relative to the roots (e.g. `scripts/manage-stack`).
    pub fn list(&self, rel_dir: &str) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        for dir in &self.dirs {
            if let Ok(rd) = std::fs::read_dir(dir.join(rel_dir)) {
                for e in rd.flatten() {
                    if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".rhai")) {
                        names.insert(n.to_string());
                    }
                }
            }
        }
        let (top, rest) = rel_dir.split_once('/').unwrap_or((rel_dir, ""));
        let bundled = match top {
            "stdlib" => STDLIB.get_dir(rest),
            "scripts" => SCRIPTS.get_dir(rest),
            _ => None,
        };
        if let Some(d) = bundled {
            for f in d.files() {
                if let Some(n) = f
                    .path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".rhai"))
                {
                    names.insert(n.to_string());
                }
            }
        }
        names.into_iter().collect()
    }

    /// Writes a bundled folder (e.g. `nodes/wavelet-stack-lb`) out, preferring files on disk.
    pub fn materialize(&self, rel_dir: &str, dest: &Path) -> std::io::Result<bool> {
        for dir in &self.dirs {
            let p = dir.join(rel_dir);
            if p.is_dir() {
                copy_dir(&p, dest)?;
                return Ok(true);
            }
        }
        let rest = rel_dir.strip_prefix("nodes/").unwrap_or(rel_dir);
        match NODES.get_dir(rest) {
            Some(d) => {
                std::fs::create_dir_all(dest)?;
                for f in all_files(d) {
                    let rel = f.path().strip_prefix(rest).unwrap_or(f.path());
                    let out = dest.join(rel);
                    std::fs::create_dir_all(out.parent().unwrap_or(dest))?;
                    std::fs::write(&out, f.contents())?;
                    if rel.starts_with("bin") {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755))?;
                    }
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn all_files<'a>(d: &'a Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut out: Vec<_> = d.files().collect();
    for sub in d.dirs() {
        out.extend(all_files(sub));
    }
    out
}

fn copy_dir(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dest.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Resolves `import "name"` to `stdlib/name.rhai` on the search path, compiled once.
struct StdlibResolver {
    search: SearchPath,
    cache: Mutex<HashMap<String, Shared<Module>>>,
    /// `<config dir>/providers/`: provider scripts dropped into the configuration directory.
    providers: PathBuf,
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self.cache.lock().expect("module cache").get(path) {
            return Ok(m.clone());
        }
        let rel = format!("stdlib/{path}.rhai");
        let dropped = path
            .strip_prefix("providers/")
            .map(|name| self.providers.join(format!("{name}.rhai")))
            .and_then(|p| Some((std::fs::read_to_string(&p).ok()?, p)))
            .map(|(text, p)| Found {
                origin: p.display().to_string(),
                text,
            });
        let found = dropped
            .or_else(|| self.search.find(&rel))
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos)))?;
        let in_module = |e: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(found.origin.clone(), e, pos))
        };
        let mut ast = engine
            .compile(&found.text)
            .map_err(|e| in_module(e.into()))?;
        ast.set_source(found.origin.as_str());
        let module: Shared<Module> = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(in_module)?
            .into();
        self.cache
            .lock()
            .expect("module cache")
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}

/// What a command script declares about itself in its leading `//!` lines.
#[derive(Debug, Clone, Default)]
pub struct CommandDoc {
    pub usage: String,
    pub help: String,
    pub aliases: Vec<String>,
}

/// Reads a script's leading `//!` lines: `usage: …`, `alias: …`, and help text.
pub fn command_doc(text: &str) -> CommandDoc {
    let mut doc = CommandDoc::default();
    let mut help = Vec::new();
    for line in text.lines() {
        let Some(l) = line.strip_prefix("//!") else {
            break;
        };
        let l = l.trim();
        if let Some(u) = l.strip_prefix("usage:") {
            doc.usage = u.trim().to_string();
        } else if let Some(a) = l.strip_prefix("alias:") {
            doc.aliases.extend(a.split_whitespace().map(str::to_string));
        } else if !l.is_empty() {
            help.push(l.to_string());
        }
    }
    doc.help = help.join(" ");
    doc
}

/// The command families and how their usage lines begin.
pub fn family_prefix(family: &str) -> &'static str {
    match family {
        "manage-stack" => "manage-stack [-s <stackName>]",
        "manage-swarm" => "manage-swarm",
        _ => "wsm",
    }
}

/// A failure to report: exit code and one-line message (plus the usage line for code 2).
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    pub usage: Option<String>,
}

impl CliError {
    pub fn usage(message: impl Into<String>, usage: Option<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
            usage,
        }
    }
}

/// The innermost error of a chain of function-call and module wrappers.
fn root_cause(err: &EvalAltResult) -> (&EvalAltResult, Option<String>) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, src, inner, pos) => {
            let (e, loc) = root_cause(inner);
            (
                e,
                loc.or_else(|| Some(format!("{src}:{}", pos.line().unwrap_or(0)))),
            )
        }
        EvalAltResult::ErrorInModule(origin, inner, pos) => {
            let (e, loc) = root_cause(inner);
            let line = e.position().line().or(pos.line()).unwrap_or(0);
            (e, loc.or_else(|| Some(format!("{origin}:{line}"))))
        }
        e => (e, None),
    }
}

/// Turns a script error into what the user sees.
pub fn to_cli_error(err: &EvalAltResult, origin: &str, usage: Option<String>) -> CliError {
    let (cause, inner_loc) = root_cause(err);
    match cause {
        // `exit(n)` in a script: the exit code of a command it ran, say.
        EvalAltResult::Exit(value, _) => CliError {
            code: value.as_int().map(|c| c as i32).unwrap_or(0),
            message: String::new(),
            usage: None,
        },
        EvalAltResult::ErrorRuntime(value, _) => {
            if let Some(map) = value.read_lock::<Map>() {
                if let Some(msg) = map.get("usage") {
                    return CliError::usage(msg.to_string(), usage);
                }
                if let Some(code) = map.get("exit_code").and_then(|c| c.as_int().ok()) {
                    return CliError {
                        code: code as i32,
                        message: String::new(),
                        usage: None,
                    };
                }
            }
            CliError {
                code: 1,
                message: value.to_string(),
                usage: None,
            }
        }
        EvalAltResult::ErrorTerminated(..) => CliError {
            code: 130,
            message: "interrupted".into(),
            usage: None,
        },
        EvalAltResult::ErrorParsing(..) | EvalAltResult::ErrorModuleNotFound(..) => {
            let loc = inner_loc
                .unwrap_or_else(|| format!("{origin}:{}", cause.position().line().unwrap_or(0)));
            CliError {
                code: 1,
                message: format!("{loc}: {cause}"),
                usage: None,
            }
        }
        other => {
            let pos = other.position();
            let loc = inner_loc.unwrap_or_else(|| format!("{origin}:{}", pos.line().unwrap_or(0)));
            CliError {
                code: 1,
                message: format!("{other} ({loc})"),
                usage: None,
            }
        }
    }
}

/// An engine with wsm's limits and nothing registered: deep enough for real scripts, bounded
/// so that a runaway script fails instead of overflowing the stack.
fn limited_engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_max_call_levels(96);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_modules(256);
    engine.set_max_string_size(256 << 20);
    engine.disable_symbol("eval");
    engine
}

/// The scripting shell: one engine with every primitive family, and the search path.
pub struct Shell {
    pub engine: Engine,
    pub host: Arc<Host>,
    pub search: SearchPath,
}

impl Shell {
    pub fn new(host: Arc<Host>, search: SearchPath) -> Self {
        let mut engine = limited_engine();
        engine.set_module_resolver(StdlibResolver {
            search: search.clone(),
            cache: Mutex::new(HashMap::new()),
            providers: host.opts.config_dir.join("providers"),
        });
        engine.on_print(|s| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`wsm stack status | head`) ends the command quietly.
            if writeln!(out, "{s}").and_then(|_| out.flush()).is_err() {
                std::process::exit(0);
            }
        });
        let verbose = host.opts.verbose;
        engine.on_debug(move |s, src, pos| {
            if verbose {
                eprintln!(
                    "debug: {s} ({}:{})",
                    src.unwrap_or("?"),
                    pos.line().unwrap_or(0)
                );
            }
        });
        let h = host.clone();
        engine.on_progress(move |_| h.is_interrupted().then(|| Dynamic::from("interrupted")));
        host::config::register(&mut engine, &host);
        host::compose::register(&mut engine, &host);
        host::docker::register(&mut engine, &host);
        host::term::register(&mut engine, &host);
        host::http::register(&mut engine, &host);
        host::archive::register(&mut engine, &host);
        host::ssh::register(&mut engine, &host);
        register_resources(&mut engine, &search);
        register_temp_dir(&mut engine);
        register_commands(&mut engine, &search);
        Shell {
            engine,
            host,
            search,
        }
    }

    /// Runs one command script with its arguments.
    pub fn run_command(
        &self,
        family: &str,
        stack: Option<&str>,
        cmd: &str,
        args: &[String],
    ) -> Result<(), CliError> {
        run_command(&self.engine, &self.search, family, stack, cmd, args).map(|_| ())
    }

    /// Runs a batch file with its arguments as `ARGS`.
    pub fn run_file(&self, path: &Path, args: &[String]) -> Result<(), CliError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {origin}: {e}"), None))?;
        self.run_text(&origin, &text, args)
    }

    /// Runs script text as a batch file named `origin`.
    pub fn run_text(&self, origin: &str, text: &str, args: &[String]) -> Result<(), CliError> {
        let mut scope = Scope::new();
        scope.push(
            "ARGS",
            args.iter().cloned().map(Dynamic::from).collect::<Array>(),
        );
        scope.push("STACK", String::new());
        let mut ast = self
            .engine
            .compile(text)
            .map_err(|e| to_cli_error(&EvalAltResult::from(e), origin, None))?;
        ast.set_source(origin);
        match self.engine.run_ast_with_scope(&mut scope, &ast) {
            Ok(()) => Ok(()),
            Err(e) => match to_cli_error(&e, origin, None) {
                CliError { code: 0, .. } => Ok(()),
                err => Err(err),
            },
        }
    }
}

/// Lists a family's commands from the search path, with aliases resolved to their scripts.
pub fn list_commands(search: &SearchPath, family: &str) -> BTreeMap<String, CommandDoc> {
    search
        .list(&format!("scripts/{family}"))
        .into_iter()
        .filter_map(|name| {
            let found = search.find(&format!("scripts/{family}/{name}.rhai"))?;
            Some((name, command_doc(&found.text)))
        })
        .collect()
}

/// Finds the script of a command, following aliases.
fn find_command(
    search: &SearchPath,
    family: &str,
    cmd: &str,
) -> Option<(String, Found, CommandDoc)> {
    if cmd.is_empty() || cmd.contains('/') || cmd.starts_with('.') {
        return None;
    }
    let rel = if family.is_empty() {
        format!("scripts/{cmd}.rhai")
    } else {
        format!("scripts/{family}/{cmd}.rhai")
    };
    if let Some(found) = search.find(&rel) {
        let doc = command_doc(&found.text);
        return Some((cmd.to_string(), found, doc));
    }
    list_commands(search, family)
        .into_iter()
        .find(|(_, d)| d.aliases.iter().any(|a| a == cmd))
        .and_then(|(name, doc)| {
            Some((
                name.clone(),
                search.find(&format!("scripts/{family}/{name}.rhai"))?,
                doc,
            ))
        })
}

/// The usage summary of a family: one line per command.
pub fn family_usage(search: &SearchPath, family: &str) -> String {
    let prefix = family_prefix(family);
    let cmds = list_commands(search, family);
    let width = cmds.values().map(|d| d.usage.len()).max().unwrap_or(0);
    let mut out = String::from("Commands:\n");
    for (name, doc) in &cmds {
        let usage = if doc.usage.is_empty() {
            name.clone()
        } else {
            doc.usage.clone()
        };
        out.push_str(&format!("  {usage:width$}  {}\n", doc.help));
    }
    out.push_str(&format!("\nUsage: {prefix} <command> [args…]"));
    out
}

fn run_command(
    engine: &Engine,
    search: &SearchPath,
    family: &str,
    stack: Option<&str>,
    cmd: &str,
    args: &[String],
) -> Result<Dynamic, CliError> {
    let prefix = family_prefix(family);
    let Some((name, found, doc)) = find_command(search, family, cmd) else {
        let names: Vec<String> = list_commands(search, family).into_keys().collect();
        return Err(CliError::usage(
            format!(
                "unknown command {cmd:?}; commands are: {}",
                names.join(", ")
            ),
            Some(format!("{prefix} <command> [args…]")),
        ));
    };
    let usage = Some(format!(
        "{prefix} {}",
        if doc.usage.is_empty() {
            &name
        } else {
            &doc.usage
        }
    ));
    let mut ast: AST = engine
        .compile(&found.text)
        .map_err(|e| to_cli_error(&EvalAltResult::from(e), &found.origin, None))?;
    ast.set_source(found.origin.as_str());
    let mut scope = Scope::new();
    scope.push(
        "ARGS",
        args.iter().cloned().map(Dynamic::from).collect::<Array>(),
    );
    scope.push("STACK", stack.unwrap_or("").to_string());
    scope.push("COMMAND", name.clone());
    scope.push("USAGE", usage.clone().unwrap_or_default());
    match engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast) {
        Ok(v) => Ok(v),
        Err(e) => match to_cli_error(&e, &found.origin, usage) {
            CliError { code: 0, .. } => Ok(Dynamic::UNIT),
            err => Err(err),
        },
    }
}

/// A stack seen from a script or the REPL: `stack("demo").status()`.
#[derive(Debug, Clone)]
pub struct StackRef {
    pub name: String,
}

fn cli_to_script(e: CliError) -> Box<EvalAltResult> {
    if e.code == 2 {
        host::usage_err(e.message)
    } else {
        host::script_err(e.message)
    }
}

/// Registers `run_command`, `wsm(line)`, `stack(name)` and one method per stack command.
fn register_commands(engine: &mut Engine, search: &SearchPath) {
    let s = search.clone();
    // run_command(family, command, args) — run another command script (stack from -s in args).
    engine.register_fn(
        "run_command",
        move |ctx: NativeCallContext,
              family: &str,
              cmd: &str,
              args: Array|
              -> ScriptResult<Dynamic> {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let (stack, rest) = split_stack_flag(&args);
            run_command(ctx.engine(), &s, family, stack.as_deref(), cmd, &rest)
                .map_err(cli_to_script)
        },
    );
    let s = search.clone();
    // wsm(line) — run a command line as typed in the shell: wsm("stack -s demo status").
    engine.register_fn(
        "wsm",
        move |ctx: NativeCallContext, line: &str| -> ScriptResult<Dynamic> {
            let words =
                shell_words::split(line).map_err(|e| host::usage_err(format!("{line:?}: {e}")))?;
            let Some((first, rest)) = words.split_first() else {
                return Ok(Dynamic::UNIT);
            };
            let family = match first.as_str() {
                "stack" | "manage-stack" => "manage-stack",
                "swarm" | "manage-swarm" => "manage-swarm",
                other => {
                    return Err(host::usage_err(format!(
                        "unknown command {other:?}: use stack or swarm"
                    )))
                }
            };
            let (stack, rest) = split_stack_flag(rest);
            let Some((cmd, args)) = rest.split_first() else {
                return Err(host::usage_err(format!("{line:?}: no command given")));
            };
            run_command(ctx.engine(), &s, family, stack.as_deref(), cmd, args)
                .map_err(cli_to_script)
        },
    );

    engine.register_type_with_name::<StackRef>("Stack");
    engine.register_fn("stack", |name: &str| StackRef {
        name: name.to_string(),
    });
    engine.register_get("name", |s: &mut StackRef| s.name.clone());
    let s = search.clone();
    // s.run(command, args) — run a stack command on this stack.
    engine.register_fn(
        "run",
        move |ctx: NativeCallContext,
              st: &mut StackRef,
              cmd: &str,
              args: Array|
              -> ScriptResult<Dynamic> {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            run_command(ctx.engine(), &s, "manage-stack", Some(&st.name), cmd, &args)
                .map_err(cli_to_script)
        },
    );
    // One method per command: s.status(), s.logs("1", "--tail", "5"), s.restart_wavelet().
    for name in search.list("scripts/manage-stack") {
        let method = name.replace('-', "_");
        macro_rules! method {
            ($($a:ident),*) => {{
                let (s, cmd) = (search.clone(), name.clone());
                engine.register_fn(method.as_str(), move |ctx: NativeCallContext, st: &mut StackRef $(, $a: Dynamic)*| -> ScriptResult<Dynamic> {
                    let args: Vec<String> = vec![$($a.to_string()),*];
                    run_command(ctx.engine(), &s, "manage-stack", Some(&st.name), &cmd, &args).map_err(cli_to_script)
                });
            }};
        }
        method!();
        method!(a);
        method!(a, b);
        method!(a, b, c);
        method!(a, b, c, d);
    }
}

/// Registers `resource(rel)` and `materialize(rel_dir)`: the text of a file on the search path (e.g. a compose file).
fn register_resources(engine: &mut Engine, search: &SearchPath) {
    let s = search.clone();
    engine.register_fn("resource", move |rel: &str| -> ScriptResult<String> {
        s.find(rel)
            .map(|f| f.text)
            .ok_or_else(|| host::script_err(format!("{rel} is not on the script search path")))
    });
    let s = search.clone();
    // materialize(rel_dir) — write a folder of the search path (e.g. a node build context) into
    // a fresh temporary directory and return its path; removed when the process ends.
    engine.register_fn("materialize", move |rel: &str| -> ScriptResult<String> {
        let dest = scratch_dir()?.join(rel.rsplit('/').next().unwrap_or(rel));
        if !s.materialize(rel, &dest).map_err(host::script_err)? {
            return Err(host::script_err(format!(
                "{rel} is not on the script search path"
            )));
        }
        Ok(dest.display().to_string())
    });
}

/// A fresh private temporary directory, kept until the process ends (`cleanup_temp_dirs`).
fn scratch_dir() -> ScriptResult<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("wsm-")
        .tempdir()
        .map_err(host::script_err)?;
    let path = dir.path().to_path_buf();
    TEMP_DIRS.lock().expect("temp dirs").push(dir);
    Ok(path)
}

fn register_temp_dir(engine: &mut Engine) {
    // temp_dir() — a fresh private temporary directory, removed when the process ends.
    engine.register_fn("temp_dir", || -> ScriptResult<String> {
        Ok(scratch_dir()?.display().to_string())
    });
}

/// Temporary folders handed to scripts, removed at exit.
static TEMP_DIRS: Mutex<Vec<tempfile::TempDir>> = Mutex::new(Vec::new());

/// Removes the temporary folders scripts were given.
pub fn cleanup_temp_dirs() {
    TEMP_DIRS.lock().expect("temp dirs").clear();
}

/// Pulls `-s NAME` / `--stack NAME` out of an argument list.
pub fn split_stack_flag(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut stack = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if (a == "-s" || a == "--stack") && stack.is_none() && rest.is_empty() {
            stack = it.next().cloned();
        } else {
            rest.push(a.clone());
        }
    }
    (stack, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_command_docs() {
        let d = command_doc(
            "//! Starts the stack.\n//! usage: start\n//! alias: up\nlet x = 1;\n//! not doc",
        );
        assert_eq!(d.usage, "start");
        assert_eq!(d.help, "Starts the stack.");
        assert_eq!(d.aliases, ["up"]);
    }

    #[test]
    fn stack_flag_is_split_off() {
        let args: Vec<String> = ["-s", "demo", "logs", "-s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (s, rest) = split_stack_flag(&args);
        assert_eq!(s.as_deref(), Some("demo"));
        assert_eq!(rest, ["logs", "-s"]);
    }

    #[test]
    fn every_bundled_command_compiles_and_has_a_usage_line() {
        let engine = limited_engine();
        for family in ["manage-stack", "manage-swarm"] {
            for f in SCRIPTS
                .get_dir(family)
                .map(|d| d.files().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                let text = f.contents_utf8().unwrap();
                assert!(
                    !command_doc(text).usage.is_empty(),
                    "{:?} has no usage line",
                    f.path()
                );
                engine
                    .compile(text)
                    .unwrap_or_else(|e| panic!("{:?}: {e}", f.path()));
            }
        }
        for f in all_files(&STDLIB)
            .into_iter()
            .filter(|f| f.path().extension().is_some_and(|e| e == "rhai"))
        {
            engine
                .compile(f.contents_utf8().unwrap())
                .unwrap_or_else(|e| panic!("{:?}: {e}", f.path()));
        }
    }
}
