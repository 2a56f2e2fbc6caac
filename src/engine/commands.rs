//! Command families and the one reader of a command line. A family is a folder
//! `scripts/<family>/` on the search path, one script per command; an optional `_family.rhai`
//! in it describes the family (help, aliases, `-s`, completers). Scripts directly in `scripts/`
//! are commands of their own (`wsm build-all-nodes`). The host knows no family by name: the
//! command line, the REPL and a script's `wsm(…)` all go through [`dispatch`].

use std::collections::BTreeMap;

use rhai::{Array, Dynamic, Engine, EvalAltResult, NativeCallContext, Scope, AST};

use super::errors::{to_cli_error, CliError};
use super::search::{Found, SearchPath};
use crate::host::ScriptResult;

/// What a script declares about itself in its leading `//!` lines.
#[derive(Debug, Clone, Default)]
pub struct CommandDoc {
    /// `usage: …` — the command's arguments, as its usage line shows them.
    pub usage: String,
    /// The other lines, joined: one sentence of help.
    pub help: String,
    /// `alias: …` — other names of the command (or of the family).
    pub aliases: Vec<String>,
    /// `option: -s <stackName> …` (families only) — the family's commands act on a stack.
    pub stack_option: Option<String>,
    /// `complete <placeholder>: <module>::<function>` — where the REPL gets candidates for an
    /// argument the usage line writes as `<placeholder>`.
    pub completers: BTreeMap<String, String>,
    /// `application: <name>` — the command works on stacks of that application only; the
    /// script gets it as `APPLICATION` (and refuses other stacks), help groups it under it.
    pub application: Option<String>,
}

/// Reads a script's leading `//!` lines.
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
        } else if let Some(a) = l.strip_prefix("application:") {
            doc.application = Some(a.trim().to_string()).filter(|a| !a.is_empty());
        } else if let Some(a) = l.strip_prefix("alias:") {
            doc.aliases.extend(a.split_whitespace().map(str::to_string));
        } else if let Some(o) = l.strip_prefix("option: -s") {
            doc.stack_option = Some(o.trim().to_string());
        } else if let Some((placeholder, f)) = l
            .strip_prefix("complete ")
            .and_then(|c| c.split_once(':').filter(|(p, _)| p.starts_with('<')))
        {
            doc.completers
                .insert(placeholder.trim().to_string(), f.trim().to_string());
        } else if !l.is_empty() {
            help.push(l.to_string());
        }
    }
    doc.help = help.join(" ");
    doc
}

/// A family of commands: `scripts/<name>/`.
#[derive(Debug, Clone)]
pub struct Family {
    /// The folder's name (`manage-stack`), which is also a name it answers to.
    pub name: String,
    /// What `_family.rhai` says of it.
    pub doc: CommandDoc,
}

impl Family {
    /// The name users type: the first alias (`stack`), else the folder's name.
    pub fn short_name(&self) -> &str {
        self.doc.aliases.first().unwrap_or(&self.name)
    }

    /// Whether `word` names this family.
    pub fn answers_to(&self, word: &str) -> bool {
        self.name == word || self.doc.aliases.iter().any(|a| a == word)
    }

    /// How the family's usage lines begin: `manage-stack [-s <stackName>]`.
    pub fn prefix(&self) -> String {
        match &self.doc.stack_option {
            Some(_) => format!("{} [-s <stackName>]", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether its commands act on a stack named with `-s`.
    pub fn takes_stack(&self) -> bool {
        self.doc.stack_option.is_some()
    }
}

/// Every family on the search path, by folder name.
pub fn families(search: &SearchPath) -> Vec<Family> {
    search
        .list_dirs("scripts")
        .into_iter()
        .map(|name| {
            let doc = search
                .find(&format!("scripts/{name}/_family.rhai"))
                .map(|f| command_doc(&f.text))
                .unwrap_or_default();
            Family { name, doc }
        })
        .collect()
}

/// The family a word names (folder name or alias).
pub fn find_family(search: &SearchPath, word: &str) -> Option<Family> {
    families(search).into_iter().find(|f| f.answers_to(word))
}

/// The folder of a family's scripts, relative to the search roots ("" is `scripts/` itself).
fn folder(family: &str) -> String {
    if family.is_empty() {
        "scripts".into()
    } else {
        format!("scripts/{family}")
    }
}

/// Lists a family's commands from the search path ("" for the commands directly in `scripts/`).
pub fn list_commands(search: &SearchPath, family: &str) -> BTreeMap<String, CommandDoc> {
    let dir = folder(family);
    search
        .list(&dir)
        .into_iter()
        .filter(|name| !name.starts_with('_'))
        .filter_map(|name| {
            let found = search.find(&format!("{dir}/{name}.rhai"))?;
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
    if cmd.is_empty() || cmd.contains('/') || cmd.starts_with(['.', '_']) {
        return None;
    }
    let dir = folder(family);
    if let Some(found) = search.find(&format!("{dir}/{cmd}.rhai")) {
        let doc = command_doc(&found.text);
        return Some((cmd.to_string(), found, doc));
    }
    list_commands(search, family)
        .into_iter()
        .find(|(_, d)| d.aliases.iter().any(|a| a == cmd))
        .and_then(|(name, doc)| {
            Some((
                name.clone(),
                search.find(&format!("{dir}/{name}.rhai"))?,
                doc,
            ))
        })
}

/// The name and doc of a family's command (or alias); "" for the commands directly in `scripts/`.
pub fn find_family_command(
    search: &SearchPath,
    family: &str,
    cmd: &str,
) -> Option<(String, CommandDoc)> {
    find_command(search, family, cmd).map(|(name, _, doc)| (name, doc))
}

/// How a family's usage lines begin ("wsm" for the commands directly in `scripts/`).
fn prefix_of(search: &SearchPath, family: &str) -> String {
    match find_family(search, family) {
        Some(f) if !family.is_empty() => f.prefix(),
        _ => "wsm".into(),
    }
}

/// The usage summary of a family: one line per command, the commands of every stack first,
/// then those of each application under its name.
pub fn family_usage(search: &SearchPath, family: &str) -> String {
    let prefix = prefix_of(search, family);
    let cmds = list_commands(search, family);
    let width = cmds.values().map(|d| d.usage.len()).max().unwrap_or(0);
    let mut groups: BTreeMap<Option<&str>, Vec<(&String, &CommandDoc)>> = BTreeMap::new();
    for (name, doc) in &cmds {
        groups
            .entry(doc.application.as_deref())
            .or_default()
            .push((name, doc));
    }
    let mut out = String::new();
    for (application, commands) in groups {
        match application {
            None => out.push_str("Commands:\n"),
            Some(app) => out.push_str(&format!("\nCommands of {app} stacks only:\n")),
        }
        for (name, doc) in commands {
            let usage = if doc.usage.is_empty() {
                name
            } else {
                &doc.usage
            };
            let also = if doc.aliases.is_empty() {
                String::new()
            } else {
                format!(" (also: {})", doc.aliases.join(", "))
            };
            out.push_str(&format!("  {usage:width$}  {}{also}\n", doc.help));
        }
    }
    out.push_str(&format!("\nUsage: {prefix} <command> [args…]"));
    out
}

/// Runs one command script of a family ("" for a command directly in `scripts/`).
pub fn run_command(
    engine: &Engine,
    search: &SearchPath,
    family: &str,
    stack: Option<&str>,
    cmd: &str,
    args: &[String],
) -> Result<Dynamic, CliError> {
    let prefix = prefix_of(search, family);
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
    scope.push("USAGE_ARGS", doc.usage.clone());
    scope.push("APPLICATION", doc.application.clone().unwrap_or_default());
    match engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast) {
        Ok(v) => Ok(v),
        Err(e) => {
            super::docs::remember(engine);
            match to_cli_error(&e, &found.origin, usage) {
                CliError { code: 0, .. } => Ok(Dynamic::UNIT),
                err => Err(err),
            }
        }
    }
}

/// The global flags that may also follow a command (`wsm stack status --json`).
pub const GLOBAL_FLAGS: &[&str] = &["--json", "--yes", "--verbose"];

/// Takes the global flags out of a command's arguments; returns the rest and the flags seen.
/// Words after a `--` are the command's as written (`jobs add … -- stack ls --json`), and the
/// `--` stays for the command's own parser to end its options with.
pub fn split_global_flags(args: &[String]) -> (Vec<String>, Vec<String>) {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (mut kept, flags): (Vec<String>, Vec<String>) = args[..end]
        .iter()
        .cloned()
        .partition(|a| !GLOBAL_FLAGS.contains(&a.as_str()));
    kept.extend(args[end..].iter().cloned());
    (kept, flags)
}

/// Pulls a leading `-s NAME` / `--stack NAME` out of an argument list. An empty or missing name
/// is bad input: `-s "$UNSET"` must never mean the default stack.
pub fn split_stack_flag(args: &[String]) -> Result<(Option<String>, Vec<String>), CliError> {
    let mut stack = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if (a == "-s" || a == "--stack") && stack.is_none() && rest.is_empty() {
            match it.next() {
                Some(name) if !name.is_empty() => stack = Some(name.clone()),
                _ => {
                    return Err(CliError::usage(
                        format!("{a} needs a stack name, and it is empty"),
                        None,
                    ))
                }
            }
        } else {
            rest.push(a.clone());
        }
    }
    Ok((stack, rest))
}

/// Runs a command line given as words: `<family> [-s NAME] <command> [args…]`, `<family> help`,
/// or `<command> [args…]` for a command directly in `scripts/`. Global flags must have been
/// taken out before.
pub fn dispatch(
    engine: &Engine,
    search: &SearchPath,
    words: &[String],
) -> Result<Dynamic, CliError> {
    let Some((first, rest)) = words.split_first() else {
        return Err(CliError::usage("no command given; see wsm --help", None));
    };
    if let Some(family) = find_family(search, first) {
        let (stack, rest) = if family.takes_stack() {
            split_stack_flag(rest)?
        } else {
            (None, rest.to_vec())
        };
        return match rest.split_first() {
            None => Err(CliError::usage(
                format!("no command given\n{}", family_usage(search, &family.name)),
                Some(format!("{} <command> [args…]", family.prefix())),
            )),
            Some((cmd, _)) if cmd == "help" || cmd == "--help" || cmd == "-h" => {
                println!("{}", family_usage(search, &family.name));
                Ok(Dynamic::UNIT)
            }
            Some((cmd, args)) => {
                run_command(engine, search, &family.name, stack.as_deref(), cmd, args)
            }
        };
    }
    if find_command(search, "", first).is_some() {
        return run_command(engine, search, "", None, first, rest);
    }
    let known: Vec<String> = families(search)
        .iter()
        .map(|f| f.short_name().to_string())
        .chain(list_commands(search, "").into_keys())
        .collect();
    Err(CliError::usage(
        format!("unknown command {first:?}: use {}", known.join(", ")),
        None,
    ))
}

/// A stack seen from a script or the REPL: `stack("demo").status()`.
#[derive(Debug, Clone)]
pub struct StackRef {
    pub name: String,
}

/// Registers `run_command`, `wsm(line)`, `stack(name)`, and on a stack handle one method per
/// command of every family that acts on a stack.
pub fn register(
    engine: &mut Engine,
    search: &SearchPath,
    host: &std::sync::Arc<crate::host::Host>,
) {
    let s = search.clone();
    // run_command(family, command, args) — run another command script ("" for a command
    // directly in scripts/; a leading -s NAME in args names the stack).
    engine.register_fn(
        "run_command",
        move |ctx: NativeCallContext,
              family: &str,
              cmd: &str,
              args: Array|
              -> ScriptResult<Dynamic> {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let (stack, rest) = split_stack_flag(&args).map_err(CliError::into_script_error)?;
            let family = find_family(&s, family).map(|f| f.name).unwrap_or_default();
            run_command(ctx.engine(), &s, &family, stack.as_deref(), cmd, &rest)
                .map_err(CliError::into_script_error)
        },
    );
    let (s, h) = (search.clone(), host.clone());
    // wsm(line) — run a command line as typed in the shell: wsm("stack -s demo status").
    engine.register_fn(
        "wsm",
        move |ctx: NativeCallContext, line: &str| -> ScriptResult<Dynamic> {
            let words = shell_words::split(line)
                .map_err(|e| crate::host::usage_err(format!("{line:?}: {e}")))?;
            if words.is_empty() {
                return Ok(Dynamic::UNIT);
            }
            let words = session_flags(&h, &words).map_err(CliError::into_script_error)?;
            dispatch(ctx.engine(), &s, &words).map_err(CliError::into_script_error)
        },
    );

    engine.register_type_with_name::<StackRef>("Stack");
    engine.register_fn("stack", |name: &str| StackRef {
        name: name.to_string(),
    });
    engine.register_get("name", |s: &mut StackRef| s.name.clone());
    for family in families(search).into_iter().filter(Family::takes_stack) {
        let (s, fam) = (search.clone(), family.name.clone());
        // s.run(command, args) — run a command of the family on this stack.
        engine.register_fn(
            "run",
            move |ctx: NativeCallContext,
                  st: &mut StackRef,
                  cmd: &str,
                  args: Array|
                  -> ScriptResult<Dynamic> {
                let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                run_command(ctx.engine(), &s, &fam, Some(&st.name), cmd, &args)
                    .map_err(CliError::into_script_error)
            },
        );
        // One method per command and alias: s.status(), s.logs("1", "--tail", "5").
        let commands = list_commands(search, &family.name);
        let names = commands.iter().flat_map(|(name, doc)| {
            std::iter::once((name.clone(), name.clone()))
                .chain(doc.aliases.iter().map(move |a| (a.clone(), name.clone())))
        });
        for (method, name) in names {
            let method = method.replace('-', "_");
            macro_rules! method {
                ($($a:ident),*) => {{
                    let (s, fam, cmd) = (search.clone(), family.name.clone(), name.clone());
                    engine.register_fn(method.as_str(), move |ctx: NativeCallContext, st: &mut StackRef $(, $a: Dynamic)*| -> ScriptResult<Dynamic> {
                        let args: Vec<String> = vec![$($a.to_string()),*];
                        run_command(ctx.engine(), &s, &fam, Some(&st.name), &cmd, &args).map_err(CliError::into_script_error)
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
}

/// Drops `--json`, `--yes` and `--verbose` from a line run inside a session (REPL, batch file):
/// they are fixed for the session, so asking for one that is off says how to get it.
pub fn session_flags(host: &crate::host::Host, words: &[String]) -> Result<Vec<String>, CliError> {
    let (kept, flags) = split_global_flags(words);
    for flag in flags {
        let on = match flag.as_str() {
            "--json" => host.opts.json,
            "--yes" => host.opts.yes,
            _ => host.opts.verbose,
        };
        if !on {
            return Err(CliError::usage(
                format!("{flag} is set for the whole session: start it with `wsm {flag} repl`"),
                None,
            ));
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_command_docs() {
        let d = command_doc(
            "//! Starts the stack.\n//! usage: start\n//! alias: up\n//! application: demo\n//! complete <nodeId>: m::ids\nlet x = 1;\n//! not doc",
        );
        assert_eq!(d.usage, "start");
        assert_eq!(d.help, "Starts the stack.");
        assert_eq!(d.aliases, ["up"]);
        assert_eq!(d.application.as_deref(), Some("demo"));
        assert_eq!(d.completers["<nodeId>"], "m::ids");
        assert!(d.stack_option.is_none());
        let f = command_doc("//! A family.\n//! option: -s <stackName>  The stack\n");
        assert_eq!(f.stack_option.as_deref(), Some("<stackName>  The stack"));
    }

    #[test]
    fn stack_flag_is_split_off() {
        let (s, rest) = split_stack_flag(&strings(&["-s", "demo", "logs", "-s"])).unwrap();
        assert_eq!(s.as_deref(), Some("demo"));
        assert_eq!(rest, ["logs", "-s"]);
    }

    #[test]
    fn an_empty_stack_name_is_bad_input() {
        for args in [&["-s", "", "stop"][..], &["--stack"][..]] {
            let err = split_stack_flag(&strings(args)).unwrap_err();
            assert_eq!(err.code, 2, "{args:?}");
        }
    }

    #[test]
    fn global_flags_are_taken_out_wherever_they_are() {
        let (rest, flags) = split_global_flags(&strings(&["status", "--json", "x", "--yes"]));
        assert_eq!(rest, ["status", "x"]);
        assert_eq!(flags, ["--json", "--yes"]);
        // After `--` the words are the command's own.
        let (rest, flags) = split_global_flags(&strings(&["add", "--yes", "--", "ls", "--json"]));
        assert_eq!(rest, ["add", "--", "ls", "--json"]);
        assert_eq!(flags, ["--yes"]);
    }
}
