//! The one reader of a command line and the one runner of scripts. A command line is read
//! once into an [`Invocation`] (family, stack, command, arguments): clap's matches, the REPL's
//! lines and a script's `wsm(…)` all end there, and commands and batch files both run through
//! [`run_script`]. The host knows no family by name (the [`Catalog`] does).

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, NativeCallContext, Scope, AST};

use super::catalog::{family_usage, folder, usage_line, Catalog};
use super::errors::{to_cli_error, CliError};
use crate::host::doc::Prim;
use crate::host::ScriptResult;

/// Runs a script: a command's or a batch file's. `vars` are the scope it starts with (`ARGS`,
/// `STACK`, …); `usage` is shown with a usage error. An `exit_with(0)` is success.
pub fn run_script(
    engine: &Engine,
    origin: &str,
    text: &str,
    vars: Vec<(&'static str, Dynamic)>,
    usage: Option<String>,
) -> Result<Dynamic, CliError> {
    let mut ast: AST = engine
        .compile(text)
        .map_err(|e| to_cli_error(&EvalAltResult::from(e), origin, None, None))?;
    ast.set_source(origin);
    let mut scope = Scope::new();
    for (name, value) in vars {
        scope.push_dynamic(name, value);
    }
    match engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast) {
        Ok(v) => Ok(v),
        Err(e) => match to_cli_error(&e, origin, usage, Some(engine)) {
            CliError { code: 0, .. } => Ok(Dynamic::UNIT),
            err => Err(err),
        },
    }
}

/// Runs one command script of a family ("" for a command directly in `scripts/`); `typed` is
/// how the user called the family (`wsm stack -s demo`, `manage-stack`, `stack` in the REPL;
/// `wsm` or "" for a command directly in `scripts/`), which its usage line and errors repeat.
/// None (a script's `run_command`): the family's own name.
pub fn run_command(
    engine: &Engine,
    catalog: &Catalog,
    family: &str,
    stack: Option<&str>,
    cmd: &str,
    args: &[String],
    typed: Option<&str>,
) -> Result<Dynamic, CliError> {
    let prefix = match typed {
        Some(t) => t.to_string(),
        None => catalog.prefix(family),
    };
    let list_prefix = match (typed, catalog.family(family)) {
        (Some(t), Some(f)) if !family.is_empty() && stack.is_none() => f.prefix_as(t),
        _ => prefix.clone(),
    };
    let unknown = || {
        let names: Vec<&String> = catalog.commands(family).keys().collect();
        CliError::usage(
            format!(
                "unknown command {cmd:?}; commands are: {}",
                names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(
                format!("{list_prefix} <command> [args…]")
                    .trim_start()
                    .to_string(),
            ),
        )
    };
    if cmd.is_empty() || cmd.contains('/') || cmd.starts_with(['.', '_']) {
        return Err(unknown());
    }
    let Some((name, doc)) = catalog.command(family, cmd) else {
        return Err(unknown());
    };
    let Some(found) = catalog
        .search()
        .find(&format!("{}/{name}.rhai", folder(family)))
    else {
        return Err(unknown());
    };
    let usage = usage_line(&prefix, &name, &doc);
    // `<command> --help` (first): the command's help, wrapped, as `help <family> <command>`.
    if matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        let width = super::docs::terminal_width();
        println!(
            "{}",
            super::docs::help::command_help(&prefix, &name, &doc, width)
        );
        return Ok(Dynamic::UNIT);
    }
    let args: Array = args.iter().cloned().map(Dynamic::from).collect();
    let vars = vec![
        ("ARGS", Dynamic::from(args)),
        ("STACK", Dynamic::from(stack.unwrap_or("").to_string())),
        ("COMMAND", Dynamic::from(name)),
        ("USAGE", Dynamic::from(usage.clone())),
        ("USAGE_ARGS", Dynamic::from(doc.usage.clone())),
        (
            "APPLICATION",
            Dynamic::from(doc.application.clone().unwrap_or_default()),
        ),
    ];
    run_script(engine, &found.origin, &found.text, vars, Some(usage))
}

/// The global flags that may also follow a command (`wsm stack status --json`).
pub const GLOBAL_FLAGS: &[&str] = &["--json", "--yes", "--verbose"];

/// Splits a command line's global flags from its other words. Words after a `--` are the
/// command's as written (`jobs add … -- stack ls --json`), and the `--` stays for the
/// command's own parser to end its options with.
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

/// A command line read once: which family's command to run, on which stack, with which
/// arguments, or a family's help. The command line (clap), the REPL and `wsm(…)` all end here.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// A command of a family ("" for a command directly in `scripts/`).
    Command {
        family: String,
        stack: Option<String>,
        command: String,
        args: Vec<String>,
        /// How the user called the family, `-s NAME` included (`wsm stack -s demo`,
        /// `manage-stack`, `stack`): usage lines and errors say it so.
        typed: String,
    },
    /// `<family> help`: the family's commands; `typed` as above, without the stack.
    FamilyHelp { family: String, typed: String },
}

impl Invocation {
    /// Reads words as typed: `<family> [-s NAME] <command> [args…]`, `<family> help`, or
    /// `<command> [args…]` for a command directly in `scripts/`. Global flags must have been
    /// taken out before.
    pub fn parse(catalog: &Catalog, words: &[String]) -> Result<Self, CliError> {
        let Some((first, rest)) = words.split_first() else {
            return Err(CliError::usage("no command given; see wsm --help", None));
        };
        if let Some(family) = catalog.family(first) {
            let (stack, rest) = if family.takes_stack() {
                split_stack_flag(rest)?
            } else {
                (None, rest.to_vec())
            };
            return Self::of_family(catalog, &family.name, first, stack, &rest);
        }
        if catalog.command("", first).is_some() {
            return Ok(Invocation::Command {
                family: String::new(),
                stack: None,
                command: first.clone(),
                args: rest.to_vec(),
                typed: String::new(),
            });
        }
        let known: Vec<String> = catalog
            .families()
            .iter()
            .map(|f| f.short_name().to_string())
            .chain(catalog.commands("").keys().cloned())
            .collect();
        Err(CliError::usage(
            format!("unknown command {first:?}: use {}", known.join(", ")),
            None,
        ))
    }

    /// A family's command line once its stack is known: `<command> [args…]` or `help`.
    /// `typed` is how the user called the family (`wsm stack`, `manage-stack`, `stack`).
    pub fn of_family(
        catalog: &Catalog,
        family: &str,
        typed: &str,
        stack: Option<String>,
        words: &[String],
    ) -> Result<Self, CliError> {
        let listing = || match catalog.family(family) {
            Some(f) => f.prefix_as(typed),
            None => typed.to_string(),
        };
        match words.split_first() {
            None => Err(CliError::usage(
                format!(
                    "no command given\n{}",
                    family_usage(catalog, family, &listing(), super::docs::terminal_width())
                ),
                Some(format!("{} <command> [args…]", listing())),
            )),
            Some((cmd, _)) if cmd == "help" || cmd == "--help" || cmd == "-h" => {
                Ok(Invocation::FamilyHelp {
                    family: family.to_string(),
                    typed: typed.to_string(),
                })
            }
            Some((cmd, args)) => Ok(Invocation::Command {
                family: family.to_string(),
                typed: match &stack {
                    Some(name) => format!("{typed} -s {}", shell_words::quote(name)),
                    None => typed.to_string(),
                },
                stack,
                command: cmd.clone(),
                args: args.to_vec(),
            }),
        }
    }

    /// Runs it.
    pub fn run(&self, engine: &Engine, catalog: &Catalog) -> Result<Dynamic, CliError> {
        match self {
            Invocation::FamilyHelp { family, typed } => {
                let prefix = match catalog.family(family) {
                    Some(f) => f.prefix_as(typed),
                    None => typed.clone(),
                };
                let width = super::docs::terminal_width();
                println!("{}", family_usage(catalog, family, &prefix, width));
                Ok(Dynamic::UNIT)
            }
            Invocation::Command {
                family,
                stack,
                command,
                args,
                typed,
            } => run_command(
                engine,
                catalog,
                family,
                stack.as_deref(),
                command,
                args,
                Some(typed),
            ),
        }
    }
}

/// Runs a command line given as words (see [`Invocation::parse`]).
pub fn dispatch(engine: &Engine, catalog: &Catalog, words: &[String]) -> Result<Dynamic, CliError> {
    Invocation::parse(catalog, words)?.run(engine, catalog)
}

/// A stack seen from a script or the REPL: `stack("demo").status()`.
#[derive(Debug, Clone)]
pub struct StackRef {
    pub name: String,
}

/// Registers `run_command`, `wsm(line)`, `stack(name)`, and on a stack handle one method per
/// command of every family that acts on a stack.
pub fn register(engine: &mut Engine, catalog: &Catalog, host: &Arc<crate::host::Host>) {
    let c = catalog.clone();
    let prim = Prim::new("run_command(family: string, command: string, args: array)").doc(
        "Runs another command script (`\"\"` for a command directly in `scripts/`); a leading `-s \
         NAME` in args names the stack.",
    );
    prim.register(
        engine,
        move |ctx: NativeCallContext,
              family: &str,
              cmd: &str,
              args: Array|
              -> ScriptResult<Dynamic> {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let (stack, rest) = split_stack_flag(&args).map_err(CliError::into_script_error)?;
            let family = c.family(family).map(|f| f.name.clone()).unwrap_or_default();
            run_command(
                ctx.engine(),
                &c,
                &family,
                stack.as_deref(),
                cmd,
                &rest,
                None,
            )
            .map_err(CliError::into_script_error)
        },
    );
    let (c, h) = (catalog.clone(), host.clone());
    let prim = Prim::new("wsm(line: string)").doc(
        "Runs a command line as typed in the shell: `wsm(\"stack -s demo status\")`. `--json`, \
         `--yes` and `--verbose` are fixed for the session. Returns the command's value; fails as \
         the command fails.",
    );
    prim.register(
        engine,
        move |ctx: NativeCallContext, line: &str| -> ScriptResult<Dynamic> {
            let words = shell_words::split(line)
                .map_err(|e| crate::host::usage_err(format!("{line:?}: {e}")))?;
            if words.is_empty() {
                return Ok(Dynamic::UNIT);
            }
            let words = session_flags(&h, &words).map_err(CliError::into_script_error)?;
            dispatch(ctx.engine(), &c, &words).map_err(CliError::into_script_error)
        },
    );

    engine.register_type_with_name::<StackRef>("Stack");
    let prim = Prim::new("stack(name: string) -> Stack").doc(
        "A handle on the stack `name`; its methods run the commands of the families that act on a \
         stack, e.g. `stack(\"demo\").status()`.",
    );
    prim.register(engine, |name: &str| StackRef {
        name: name.to_string(),
    });
    let prim = Prim::new("st.name -> string").doc("The stack's name.");
    prim.register(engine, |s: &mut StackRef| s.name.clone());
    for family in catalog.families().iter().filter(|f| f.takes_stack()) {
        let (c, fam) = (catalog.clone(), family.name.clone());
        let prim = Prim::new("st.run(command: string, args: array)").doc(
            "Runs a command of the family on this stack with these arguments, e.g. \
             `st.run(\"logs\", [\"1\", \"--tail\", \"5\"])`.",
        );
        prim.register(
            engine,
            move |ctx: NativeCallContext,
                  st: &mut StackRef,
                  cmd: &str,
                  args: Array|
                  -> ScriptResult<Dynamic> {
                let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                run_command(ctx.engine(), &c, &fam, Some(&st.name), cmd, &args, None)
                    .map_err(CliError::into_script_error)
            },
        );
        // One method per command and alias: s.status(), s.logs("1", "--tail", "5").
        let commands = catalog.commands(&family.name);
        let names = commands.iter().flat_map(|(name, doc)| {
            std::iter::once((name.clone(), name.clone()))
                .chain(doc.aliases.iter().map(move |a| (a.clone(), name.clone())))
        });
        for (method, name) in names {
            let method = method.replace('-', "_");
            macro_rules! method {
                ($($a:ident),*) => {{
                    let (c, fam, cmd) = (catalog.clone(), family.name.clone(), name.clone());
                    crate::host::doc::register_plain(engine, &method, move |ctx: NativeCallContext, st: &mut StackRef $(, $a: Dynamic)*| -> ScriptResult<Dynamic> {
                        let args: Vec<String> = vec![$($a.to_string()),*];
                        run_command(ctx.engine(), &c, &fam, Some(&st.name), &cmd, &args, None).map_err(CliError::into_script_error)
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
