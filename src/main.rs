//! `wsm` — a scriptable shell for Docker Swarm stacks. Every command is a Rhai script; this
//! file only parses the command line and hands over to the engine (or the REPL). The command
//! families come from the search path (`scripts/<family>/`), so clap learns them at start-up.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Arg, ArgAction, ArgMatches, Command};

use wsm::engine::{self, Catalog, CliError, Invocation, SearchPath, Shell};
use wsm::host::{stdio, GlobalOpts, Host};
use wsm::repl;

/// The system allocator, counting what the process holds: the script memory limit reads it.
#[global_allocator]
static ALLOC: engine::limits::CountingAlloc = engine::limits::CountingAlloc;

/// `wsm --version`: the version and the commit it was built from (build.rs; `unknown` when
/// built outside git).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WSM_GIT_COMMIT"),
    ")"
);

/// The command line: global options, the built-in subcommands, and one subcommand per family
/// and per command directly in `scripts/`. `listings`: each family's help ends with its
/// commands (`family_usage`), which only help, an error and the manual pages show; wrapping
/// them cost a quarter of a `stack status`'s instructions (issue 28), so reading a command
/// line that clap accepts leaves them out (`parse`).
fn cli(catalog: &Catalog, listings: bool) -> Command {
    let trailing = || {
        Arg::new("args")
            .num_args(0..)
            .trailing_var_arg(true)
            .allow_hyphen_values(true)
            .help("The command, then its arguments")
    };
    // Help wraps to the terminal, and to 80 columns in a pipe.
    let width = engine::docs::terminal_width();
    let mut cmd = Command::new("wsm")
        .term_width(width)
        .version(VERSION)
        .about(
            "Run application stacks on Docker Swarm from scripts (Wavelet Stack and Swarm Manager)",
        )
        .after_help(
            "Invoked through a link named after a family or command (manage-stack, manage-swarm, \
             build-all-nodes), wsm behaves as that subcommand.\nExit codes: 0 success, 1 the \
             operation failed, 2 bad usage or input.",
        )
        .arg(
            Arg::new("config-dir")
                .short('C')
                .long("config-dir")
                .global(true)
                .env("WSM_CONFIG_DIR")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Configuration directory (default: $WSM_CONFIG_DIR, else ./config)"),
        )
        .arg(
            Arg::new("context")
                .long("context")
                .global(true)
                .value_name("NAME")
                .help("The Docker context to use, as docker --context (overrides DOCKER_HOST, DOCKER_CONTEXT and `docker context use`)"),
        )
        .arg(flag(
            "json",
            None,
            "Print read commands' results as one JSON document",
        ))
        .arg(flag("yes", Some('y'), "Answer yes to confirmations"))
        .arg(flag(
            "verbose",
            Some('v'),
            "Say more: the Docker engine and context in use, API version, script positions in errors",
        ));
    for family in catalog.families() {
        let mut sub = Command::new(family.short_name().to_string())
            .about(family.doc.help.clone())
            .arg(trailing());
        if listings {
            sub = sub.after_help(engine::family_usage(
                catalog,
                &family.name,
                &family.prefix_as(&format!("wsm {}", family.short_name())),
                width,
            ));
        }
        for alias in std::iter::once(&family.name).chain(&family.doc.aliases) {
            if alias != family.short_name() {
                sub = sub.visible_alias(alias.clone());
            }
        }
        if let Some(help) = &family.doc.stack_option {
            let help = help.trim_start_matches("<stackName>").trim().to_string();
            sub = sub.arg(
                Arg::new("stack")
                    .short('s')
                    .long("stack")
                    .value_name("stackName")
                    .help(help),
            );
        }
        cmd = cmd.subcommand(sub);
    }
    for (name, doc) in catalog.commands("") {
        cmd = cmd.subcommand(
            Command::new(name.clone())
                .about(doc.help.clone())
                .arg(trailing()),
        );
    }
    cmd.subcommand(
        Command::new("repl").about("Interactive shell: commands as typed in the shell, or Rhai"),
    )
    .subcommand(
        Command::new("run")
            .about("Run a Rhai batch file; its arguments are ARGS")
            .arg(
                Arg::new("file")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf)),
            )
            .arg(trailing()),
    )
    .subcommand(
        Command::new("__complete")
            .hide(true)
            .about("The candidates for the last word of a command line (for the completion scripts)")
            .arg(trailing()),
    )
    .subcommand(
        Command::new("__man")
            .hide(true)
            .about("Write the manual pages (wsm.1, one per family) into DIR (for packaging/build-deb)")
            .arg(
                Arg::new("dir")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf)),
            ),
    )
    .subcommand(Command::new("doc").about(
        "Print the reference of every command, module, function and method as Markdown",
    ))
    .subcommand(
        Command::new("completions")
            .about("Print a shell completion script (bash, zsh and fish complete stack names and node ids too)")
            .arg(
                Arg::new("shell")
                    .required(true)
                    .value_parser(clap::value_parser!(clap_complete::Shell)),
            ),
    )
}

fn flag(name: &'static str, short: Option<char>, help: &'static str) -> Arg {
    let arg = Arg::new(name)
        .long(name)
        .global(true)
        .action(ArgAction::SetTrue)
        .help(help);
    match short {
        Some(c) => arg.short(c),
        None => arg,
    }
}

/// Rewrites argv so that a link named after a family or command (manage-stack) works; the
/// link's name is returned too, as the name the user called the command by.
fn multi_call_args(catalog: &Catalog) -> (Vec<String>, Option<String>) {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let is_command = catalog.family(&argv0).is_some() || catalog.commands("").contains_key(&argv0);
    if argv0 != "wsm" && is_command {
        args[0] = "wsm".into();
        args.insert(1, argv0.clone());
        return (args, Some(argv0));
    }
    (args, None)
}

/// How the user called the subcommand: the link's name (`manage-stack`), else `wsm` and the
/// word typed for it (`wsm stack`, `wsm manage-stack`), for usage lines and errors.
fn typed_name(args: &[String], link: Option<&str>, subcommand: &str) -> String {
    if let Some(link) = link {
        return link.to_string();
    }
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        match w.as_str() {
            "-C" | "--config-dir" | "--context" => {
                words.next();
            }
            w if w.starts_with('-') => {}
            w => return format!("wsm {w}"),
        }
    }
    format!("wsm {subcommand}")
}

/// A subcommand's trailing arguments, with the global flags that followed the command taken
/// out and applied to `opts` (`wsm stack status --json`).
fn trailing_args(m: &ArgMatches, opts: &mut GlobalOpts) -> Vec<String> {
    let (rest, flags) = engine::split_global_flags(&words_of(m));
    for f in flags {
        match f.as_str() {
            "--json" => opts.json = true,
            "--yes" => opts.yes = true,
            _ => opts.verbose = true,
        }
    }
    rest
}

/// A subcommand's trailing words, as given.
fn words_of(m: &ArgMatches) -> Vec<String> {
    m.get_many::<String>("args")
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// What the command line asks for, read once.
enum Action {
    /// A family's command (or `<family> help`), or a command directly in `scripts/`.
    Command(Invocation),
    /// `run <file> [args…]`.
    Batch(PathBuf, Vec<String>),
    /// `repl`, or no subcommand (the REPL on a terminal).
    Repl { asked: bool },
    /// `__complete <words…>`: candidates for the shells.
    Complete(Vec<String>),
    /// `doc`: the reference.
    Doc,
    /// `completions <shell>`.
    Completions(clap_complete::Shell),
    /// `__man <dir>`: the manual pages.
    Man(PathBuf),
}

/// The command line read: the options, what to do, and the catalog of commands.
struct Parsed {
    opts: GlobalOpts,
    action: Action,
    catalog: Catalog,
}

/// Reads the command line. An error is bad input, said before anything runs.
fn parse() -> Result<Parsed, CliError> {
    // Completion (`wsm __complete`, as the shell scripts call it) prints nothing but candidates:
    // a refused script folder is left out silently there, and stops every other command.
    let completing = is_completion(std::env::args().skip(1));
    let search = SearchPath::from_env();
    if let (Some(line), false) = (search.refused().first(), completing) {
        return Err(CliError::usage(line.clone(), None));
    }
    let catalog = Catalog::scan(search);
    let (argv, link) = multi_call_args(&catalog);
    // Without the listings first: only help, `--version` and a refused command line print
    // anything, and they are printed by the full command line, read again.
    let matches = match cli(&catalog, false).try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(_) => cli(&catalog, true).get_matches_from(&argv),
    };
    let mut opts = GlobalOpts {
        config_dir: matches
            .get_one::<PathBuf>("config-dir")
            .cloned()
            .unwrap_or_else(|| PathBuf::from("config")),
        context: matches.get_one::<String>("context").cloned(),
        json: matches.get_flag("json"),
        yes: matches.get_flag("yes"),
        verbose: matches.get_flag("verbose"),
    };
    let action = match matches.subcommand() {
        None => Action::Repl { asked: false },
        Some(("repl", _)) => Action::Repl { asked: true },
        Some(("doc", _)) => Action::Doc,
        Some(("completions", m)) => Action::Completions(
            *m.get_one::<clap_complete::Shell>("shell")
                .expect("required"),
        ),
        Some(("__man", m)) => Action::Man(m.get_one::<PathBuf>("dir").expect("required").clone()),
        Some(("run", m)) => {
            let file = m.get_one::<PathBuf>("file").expect("required").clone();
            Action::Batch(file, trailing_args(m, &mut opts))
        }
        Some(("__complete", m)) => {
            let words = words_of(m);
            // The line's own -C and --context count, not the ones wsm was started with.
            for pair in words.windows(2) {
                match pair[0].as_str() {
                    "-C" | "--config-dir" => opts.config_dir = PathBuf::from(&pair[1]),
                    "--context" => opts.context = Some(pair[1].clone()),
                    _ => {}
                }
            }
            Action::Complete(words)
        }
        Some((name, m)) => {
            let stack = m.try_get_one::<String>("stack").ok().flatten().cloned();
            if stack.as_deref() == Some("") {
                return Err(CliError::usage(
                    "-s needs a stack name, and it is empty",
                    None,
                ));
            }
            let args = trailing_args(m, &mut opts);
            let typed = typed_name(&argv, link.as_deref(), name);
            Action::Command(match catalog.family(name) {
                Some(family) => {
                    Invocation::of_family(&catalog, &family.name, &typed, stack, &args)?
                }
                None => Invocation::Command {
                    family: String::new(),
                    stack: None,
                    command: name.to_string(),
                    args,
                    // `wsm build-all-nodes`'s usage line begins with the command's own name.
                    typed: if link.is_some() {
                        String::new()
                    } else {
                        "wsm".into()
                    },
                },
            })
        }
    };
    let config_named = config_dir_named(&matches);
    let completing = matches!(action, Action::Complete(_));
    let catalog = if completing {
        // Completion must print nothing but candidates, and runs no provider.
        catalog
    } else {
        check_config_dir(config_named, &opts.config_dir)?;
        if config_named {
            // Providers beside the config are taken only from a folder the user named: the
            // default `./config` is the current folder's, and wsm runs no code from there.
            let search = catalog
                .search()
                .clone()
                .with_providers(opts.config_dir.join("providers"));
            if let Some(line) = search.refused().first() {
                return Err(CliError::usage(line.clone(), None));
            }
            catalog.with_search(search)
        } else {
            catalog
        }
    };
    engine::limits::check_env().map_err(|e| CliError::usage(e, None))?;
    wsm::host::ssh::check_env().map_err(|e| CliError::usage(e, None))?;
    Ok(Parsed {
        opts,
        action,
        catalog,
    })
}

/// Prints what needs no engine and no runtime: a shell's completion script, the manual pages.
/// Returns None for every other action.
fn print_only(parsed: &Parsed) -> Option<ExitCode> {
    let catalog = &parsed.catalog;
    match &parsed.action {
        Action::Completions(shell) => {
            let mut names = vec!["wsm".to_string()];
            names.extend(catalog.families().iter().map(|f| f.name.clone()));
            names.extend(catalog.commands("").keys().cloned());
            let script = match wsm::completion::script(&shell.to_string(), &names) {
                Some(text) => text.into_bytes(),
                None => {
                    let mut script = Vec::new();
                    clap_complete::generate(*shell, &mut cli(catalog, true), "wsm", &mut script);
                    script
                }
            };
            Some(written(stdio::write_stdout(&script)))
        }
        Action::Man(dir) => Some(
            match wsm::man::write_pages(&cli(catalog, true), catalog, dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => report(CliError::failed(format!(
                    "cannot write the manual pages in {}: {e}",
                    dir.display()
                ))),
            },
        ),
        _ => None,
    }
}

/// Ctrl-C and SIGTERM: the first Ctrl-C interrupts the running operation, a second ends the
/// process after putting back what the command changed (while the editor has the terminal,
/// Ctrl-C is the editor's); SIGTERM puts back what the command changed at once, then gives it a
/// moment to unwind before the process ends regardless. A closed stdout stops the command as
/// Ctrl-C does.
fn watch_signals(runtime: &tokio::runtime::Runtime, host: &Arc<Host>) {
    let h = host.clone();
    stdio::on_stdout_closed(move || h.interrupt());
    let h = host.clone();
    runtime.spawn(async move {
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            if h.child_has_terminal() {
                continue;
            }
            if h.is_interrupted() {
                h.cleanups.run_all().await;
                std::process::exit(130);
            }
            h.interrupt();
        }
    });
    let sigterm = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    };
    if let Ok(mut sigterm) = sigterm {
        let h = host.clone();
        runtime.spawn(async move {
            if sigterm.recv().await.is_some() {
                h.terminate();
                h.cleanups.run_all().await;
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                stdio::write_stderr(b"error: terminated\n");
                std::process::exit(143);
            }
        });
    }
}

/// Runs what was asked, with the engine, the runtime and the signal handlers.
fn run(parsed: Parsed) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(CliError::failed(format!("cannot start the runtime: {e}"))),
    };
    let Parsed {
        opts,
        action,
        catalog,
    } = parsed;
    let host = Host::new(runtime.handle().clone(), opts);
    watch_signals(&runtime, &host);
    // Only a command or a batch file runs without the primitives' docs.
    let shell = match &action {
        Action::Command(_) | Action::Batch(..) => Shell::new(host.clone(), catalog),
        _ => Shell::documented(host.clone(), catalog),
    };
    let result = match &action {
        Action::Complete(words) => {
            let text: String = wsm::completion::candidates(&shell, words)
                .into_iter()
                .map(|c| c + "\n")
                .collect();
            runtime.shutdown_background();
            return written(stdio::write_stdout(text.as_bytes()));
        }
        Action::Doc => {
            let docs = engine::docs::Docs::of(&shell.engine);
            let text = engine::docs::reference::markdown(&shell.catalog, &docs);
            runtime.shutdown_background();
            return written(stdio::write_stdout(text.as_bytes()));
        }
        Action::Command(invocation) => shell.run(invocation),
        Action::Batch(file, args) => shell.run_batch(file, args),
        Action::Repl { asked } if *asked || is_interactive() => repl::run(&shell),
        _ => Err(CliError::usage(
            "no command given; see wsm --help",
            Some("wsm [OPTIONS] <COMMAND>".into()),
        )),
    };
    // The shell (every primitive, the compiled modules) goes with the process: freeing it piece
    // by piece cost 2 % of a `stack status`'s instructions (issue 28), and nothing in it has
    // anything left to do (`finish` runs the cleanups and removes the temporary folders).
    std::mem::forget(shell);
    finish(runtime, &host, result)
}

/// Whether wsm talks to a person: the REPL is the default then.
fn is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Ends the process: what the command left pending is put back, the runtime and connections
/// close, and the outcome becomes the exit code.
fn finish(runtime: tokio::runtime::Runtime, host: &Host, result: Result<(), CliError>) -> ExitCode {
    host.run_cleanups();
    let result = match result {
        _ if host.is_terminated() => Err(CliError {
            code: 143,
            message: "terminated".into(),
            usage: None,
        }),
        r => r,
    };
    // Blocking reads (an attach's stdin) must not keep the process alive.
    runtime.shutdown_background();
    host.remove_temp_dirs();
    wsm::host::ssh::close_all();
    match result {
        // Its reader went away and it was stopped as by Ctrl-C: there is no one to tell.
        _ if stdio::stdout_closed() => ExitCode::from(stdio::CLOSED_EXIT),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

fn main() -> ExitCode {
    let parsed = match parse() {
        Ok(parsed) => parsed,
        Err(e) => return report(e),
    };
    if let Some(code) = print_only(&parsed) {
        return code;
    }
    run(parsed)
}

/// An explicit configuration directory (`-C`, `WSM_CONFIG_DIR`) must exist: silently using the
/// defaults instead would act on the wrong stacks. The default `./config` may be absent.
fn check_config_dir(named: bool, dir: &std::path::Path) -> Result<(), CliError> {
    if named && !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(CliError::usage(
            format!(
                "the configuration directory {} {what} (given with -C or WSM_CONFIG_DIR); create it or name another",
                dir.display()
            ),
            None,
        ));
    }
    Ok(())
}

/// Whether a command line (after `wsm`) is `__complete`'s: its first word that is not one of
/// wsm's options.
fn is_completion(mut args: impl Iterator<Item = String>) -> bool {
    while let Some(word) = args.next() {
        match word.as_str() {
            "-C" | "--config-dir" | "--context" => {
                args.next();
            }
            w if w.starts_with('-') => {}
            w => return w == "__complete",
        }
    }
    false
}

/// Whether the configuration directory was named (`-C`, `WSM_CONFIG_DIR`) rather than the
/// default `./config`.
fn config_dir_named(matches: &ArgMatches) -> bool {
    matches!(
        matches.value_source("config-dir"),
        Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
    )
}

/// The exit code of a command whose whole output was one write: 0, or 141 when stdout was
/// closed (`host::stdio`).
fn written(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(stdio::CLOSED_EXIT)
    }
}

fn report(err: CliError) -> ExitCode {
    err.print();
    ExitCode::from(err.code.clamp(0, 255) as u8)
}
