//! `wsm` — a scriptable shell for Docker Swarm stacks. Every command is a Rhai script; this
//! file only parses the command line and hands over to the engine (or the REPL).

mod engine;
mod host;
mod repl;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use engine::{CliError, SearchPath, Shell};
use host::{GlobalOpts, Host};

#[derive(Parser, Debug)]
#[command(
    name = "wsm",
    version,
    about = "Run application stacks on Docker Swarm from scripts (Wavelet Stack and Swarm Manager)",
    after_help = "Invoked as manage-stack, manage-swarm or build-all-nodes (through a link), wsm \
                  behaves as that subcommand.\nExit codes: 0 success, 1 the operation failed, 2 bad usage or input."
)]
struct Cli {
    /// Configuration directory (default: $WSM_CONFIG_DIR, else ./config)
    #[arg(
        short = 'C',
        long = "config-dir",
        global = true,
        env = "WSM_CONFIG_DIR"
    )]
    config_dir: Option<PathBuf>,
    /// Print read commands' results as one JSON document
    #[arg(long, global = true)]
    json: bool,
    /// Answer yes to confirmations
    #[arg(short = 'y', long, global = true)]
    yes: bool,
    /// Say more: API version in use, script positions in errors
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage a stack (same as manage-stack)
    Stack {
        /// The stack to act on (default: stackName in config/default, else default-local)
        #[arg(short = 's', long = "stack")]
        stack: Option<String>,
        /// The command, then its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Manage swarms (same as manage-swarm)
    Swarm {
        /// The command, then its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the node images and push them to the stack's registry
    #[command(name = "build-all-nodes")]
    BuildAllNodes {
        /// Use this stack's REGISTRY and WAVELET_TAG
        stack: Option<String>,
    },
    /// Interactive shell: commands as typed in the shell, or Rhai
    Repl,
    /// Run a Rhai batch file; its arguments are ARGS
    Run {
        file: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
}

/// Rewrites argv so that a link named manage-stack / manage-swarm / build-all-nodes works.
fn multi_call_args() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let sub = match argv0.as_str() {
        "manage-stack" => Some("stack"),
        "manage-swarm" => Some("swarm"),
        "build-all-nodes" => Some("build-all-nodes"),
        _ => None,
    };
    if let Some(sub) = sub {
        args[0] = "wsm".into();
        args.insert(1, sub.into());
    }
    args
}

/// Global flags also count when they come after the command (`wsm stack status --json`).
fn take_global_flags(args: &mut Vec<String>, cli: &mut Cli) {
    args.retain(|a| match a.as_str() {
        "--json" => {
            cli.json = true;
            false
        }
        "--yes" => {
            cli.yes = true;
            false
        }
        "--verbose" => {
            cli.verbose = true;
            false
        }
        _ => true,
    });
}

fn report(err: CliError) -> ExitCode {
    if !err.message.is_empty() {
        eprintln!("error: {}", err.message);
    }
    if let Some(u) = err.usage {
        eprintln!("usage: {u}");
    }
    ExitCode::from(err.code.clamp(0, 255) as u8)
}

fn main() -> ExitCode {
    let search = SearchPath::from_env();
    let stack_help = engine::family_usage(&search, "manage-stack");
    let swarm_help = engine::family_usage(&search, "manage-swarm");
    let command = Cli::command()
        .mut_subcommand("stack", |c| c.after_help(stack_help.clone()))
        .mut_subcommand("swarm", |c| c.after_help(swarm_help.clone()));
    let matches = command.get_matches_from(multi_call_args());
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let mut cmd = cli.command.take();
    match &mut cmd {
        Some(Cmd::Stack { args, .. }) | Some(Cmd::Swarm { args }) | Some(Cmd::Run { args, .. }) => {
            take_global_flags(args, &mut cli)
        }
        _ => {}
    }

    let opts = GlobalOpts {
        config_dir: cli
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("config")),
        json: cli.json,
        yes: cli.yes,
        verbose: cli.verbose,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(CliError {
                code: 1,
                message: format!("cannot start the runtime: {e}"),
                usage: None,
            })
        }
    };
    let host = Host::new(runtime.handle().clone(), opts);
    // Ctrl-C interrupts the running operation; a second one ends the process.
    let h = host.clone();
    runtime.spawn(async move {
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            if h.is_interrupted() {
                std::process::exit(130);
            }
            h.interrupt();
        }
    });

    let shell = Shell::new(host.clone(), search);
    let result = match cmd {
        None if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => {
            repl::run(&shell)
        }
        None => Err(CliError::usage(
            "no command given; see wsm --help",
            Some("wsm [OPTIONS] <COMMAND>".into()),
        )),
        Some(Cmd::Repl) => repl::run(&shell),
        Some(Cmd::Stack { stack, args }) => {
            run_family(&shell, "manage-stack", stack.as_deref(), &args)
        }
        Some(Cmd::Swarm { args }) => run_family(&shell, "manage-swarm", None, &args),
        Some(Cmd::BuildAllNodes { stack }) => {
            let args: Vec<String> = stack.into_iter().collect();
            match shell.search.find("scripts/build-all-nodes.rhai") {
                Some(_) => shell.run_command("", None, "build-all-nodes", &args),
                None => Err(CliError {
                    code: 1,
                    message: "build-all-nodes.rhai is missing".into(),
                    usage: None,
                }),
            }
        }
        Some(Cmd::Run { file, args }) => run_batch(&shell, &file, &args),
        Some(Cmd::Completions { shell: sh }) => {
            let mut script = Vec::new();
            clap_complete::generate(sh, &mut Cli::command(), "wsm", &mut script);
            // A reader that stops early (`| head`) is not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
    };
    // Blocking reads (an attach's stdin) must not keep the process alive.
    runtime.shutdown_background();
    engine::cleanup_temp_dirs();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

/// Runs a batch file: a path, or the name of a bundled example (`backup-and-rebuild`).
fn run_batch(shell: &Shell, file: &std::path::Path, args: &[String]) -> Result<(), CliError> {
    if !file.exists() {
        let name = file.display().to_string();
        let rel = format!("scripts/examples/{}.rhai", name.trim_end_matches(".rhai"));
        if let Some(found) = shell.search.find(&rel) {
            return shell.run_text(&found.origin, &found.text, args);
        }
    }
    shell.run_file(file, args)
}

/// Runs `<family> <command> [args…]`, or prints the family's commands for `help`.
fn run_family(
    shell: &Shell,
    family: &str,
    stack: Option<&str>,
    args: &[String],
) -> Result<(), CliError> {
    let prefix = engine::family_prefix(family);
    match args.split_first() {
        None => Err(CliError::usage(
            format!(
                "no command given\n{}",
                engine::family_usage(&shell.search, family)
            ),
            Some(format!("{prefix} <command> [args…]")),
        )),
        Some((cmd, _)) if cmd == "help" || cmd == "--help" || cmd == "-h" => {
            println!("{}", engine::family_usage(&shell.search, family));
            Ok(())
        }
        Some((cmd, rest)) => shell.run_command(family, stack, cmd, rest),
    }
}
