//! The Rhai engine wsm runs every script in: limits, the host primitive families, the module
//! resolver over the search path (`search`), the command families (`commands`), and how errors
//! reach the user (`errors`).

pub mod catalog;
pub mod commands;
pub mod docs;
pub mod errors;
pub mod limits;
pub mod search;
pub mod trust;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rhai::{Array, Dynamic, Engine};

pub use catalog::{family_usage, Catalog, Family};
pub use commands::{split_global_flags, Invocation};
pub use errors::{to_cli_error, CliError};
pub use search::SearchPath;

use crate::host::doc::Prim;
use crate::host::{self, Host, ScriptResult};

/// An engine with wsm's limits and nothing registered: deep enough for real scripts, bounded
/// so that a runaway script fails instead of overflowing the stack or taking all memory, and
/// ends when no terminal is there to interrupt it (`limits`).
fn limited_engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_max_call_levels(96);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_modules(256);
    // Rhai keeps at most 1024 interned strings by default and, once past that, scans the whole
    // cache for every new string to evict one: compiling the stdlib modules a command imports
    // spent a seventh of its instructions there, and a script making many short strings (the
    // keys of a growing map) paid that scan on each, 16 384 entries at the 1 << 14 tried
    // next (100 000 keys: 100 s). Without interning no string costs more than its own copy,
    // and `stack plan` takes no longer (tests/bounds.rs).
    engine.set_max_strings_interned(0);
    // Every process compiles the stdlib modules its command imports, and Rhai's optimizer
    // pass over them cost about a tenth of a `stack status`'s instructions for nothing a
    // script notices: it does not carry a module's constants into its functions (the stdlib
    // reads them as `global::NAME`), and wsm's scripts spend their time waiting on the engine,
    // not in folded arithmetic (issue 28).
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    limits::current().apply(&mut engine);
    engine.disable_symbol("eval");
    engine
}

/// The scripting shell: one engine with every primitive family, the search path and the
/// command catalog read from it.
pub struct Shell {
    pub engine: Engine,
    pub host: Arc<Host>,
    pub search: SearchPath,
    pub catalog: Catalog,
}

impl Shell {
    /// A shell to run commands and batch files in: its primitives keep no docs
    /// (`host::doc`), which only help, `wsm doc`, the REPL and completion read.
    pub fn new(host: Arc<Host>, catalog: Catalog) -> Self {
        Self::build(host, catalog)
    }

    /// A shell whose primitives keep their docs (`engine::docs` reads them): for help,
    /// `wsm doc`, the REPL and completion.
    pub fn documented(host: Arc<Host>, catalog: Catalog) -> Self {
        crate::host::doc::documented(|| Self::build(host, catalog))
    }

    fn build(host: Arc<Host>, catalog: Catalog) -> Self {
        let search = catalog.search().clone();
        let mut engine = limited_engine();
        engine.set_module_resolver(search::StdlibResolver {
            search: search.clone(),
            cache: Mutex::new(HashMap::new()),
        });
        // A closed pipe (`wsm stack status | head`) stops the command (`host::stdio`).
        engine.on_print(|s| println!("{s}"));
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
        let limits = limits::current();
        engine.on_progress(move |_| {
            if h.is_interrupted() {
                return Some(Dynamic::from("interrupted"));
            }
            limits.check_memory()
        });
        host::args::register(&mut engine);
        host::node_id::register(&mut engine);
        host::schedule::register(&mut engine);
        host::digest::register(&mut engine);
        host::listing::register(&mut engine);
        host::process::register(&mut engine, &host);
        host::config::register(&mut engine, &host);
        host::compose::register(&mut engine, &host);
        host::fs::register(&mut engine);
        host::yaml::register(&mut engine);
        host::docker::register(&mut engine, &host);
        host::term::register(&mut engine, &host);
        host::http::register(&mut engine, &host);
        host::git::register(&mut engine, &host);
        host::archive::register(&mut engine, &host);
        host::serve::register(&mut engine, &host);
        let mut cleanup = host::cleanup::module(&host);
        host::docker::register_cleanup(&mut cleanup, &host);
        host::docker::register_store_cleanup(&mut cleanup, &host);
        host::process::register_cleanup(&mut cleanup, &host);
        engine.register_static_module("cleanup", cleanup.into());
        host::ssh::register(&mut engine, &host);
        host::lock::register(&mut engine, &host);
        register_resources(&mut engine, &search, &host);
        register_temp_dir(&mut engine, &host);
        commands::register(&mut engine, &catalog, &host);
        Shell {
            engine,
            host,
            search,
            catalog,
        }
    }

    /// Runs a command line given as words (see [`Invocation::parse`]).
    pub fn dispatch(&self, words: &[String]) -> Result<(), CliError> {
        self.run(&Invocation::parse(&self.catalog, words)?)
    }

    /// Runs a command line already read.
    pub fn run(&self, invocation: &Invocation) -> Result<(), CliError> {
        invocation.run(&self.engine, &self.catalog).map(|_| ())
    }

    /// Runs a batch file with its arguments as `ARGS`.
    pub fn run_file(&self, path: &Path, args: &[String]) -> Result<(), CliError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {origin}: {e}"), None))?;
        self.run_text(&origin, &text, args)
    }

    /// Runs a batch file: a path, or the name of a bundled example (`backup-and-rebuild`).
    pub fn run_batch(&self, file: &Path, args: &[String]) -> Result<(), CliError> {
        if !file.exists() {
            let name = file.display().to_string();
            let rel = format!("scripts/examples/{}.rhai", name.trim_end_matches(".rhai"));
            if let Some(found) = self.search.find(&rel) {
                return self.run_text(&found.origin, &found.text, args);
            }
        }
        self.run_file(file, args)
    }

    /// Runs script text as a batch file named `origin`.
    pub fn run_text(&self, origin: &str, text: &str, args: &[String]) -> Result<(), CliError> {
        let args: Array = args.iter().cloned().map(Dynamic::from).collect();
        let vars = vec![
            ("ARGS", Dynamic::from(args)),
            ("STACK", Dynamic::from(String::new())),
        ];
        commands::run_script(&self.engine, origin, text, vars, None).map(|_| ())
    }
}

/// Registers `resource(rel)` and `materialize(rel_dir)`: the text of a file on the search path (e.g. a compose file).
fn register_resources(engine: &mut Engine, search: &SearchPath, host: &Arc<Host>) {
    let s = search.clone();
    let prim = Prim::new("resource(rel: string) -> string").doc(
        "The text of a file on the script search path (e.g. a bundled compose file); fails when \
         it is not there.",
    );
    prim.register(engine, move |rel: &str| -> ScriptResult<String> {
        s.find(rel)
            .map(|f| f.text.into_owned())
            .ok_or_else(|| host::script_err(format!("{rel} is not on the script search path")))
    });
    let (s, h) = (search.clone(), host.clone());
    let prim = Prim::new("materialize(rel_dir: string) -> string").doc(
        "Writes a folder of the search path (e.g. a node build context) into a fresh temporary \
         folder and returns its path; removed when the process ends.",
    );
    prim.register(engine, move |rel: &str| -> ScriptResult<String> {
        let dest = h
            .temp_dir()
            .map_err(host::script_err)?
            .join(rel.rsplit('/').next().unwrap_or(rel));
        if !s.materialize(rel, &dest).map_err(host::script_err)? {
            return Err(host::script_err(format!(
                "{rel} is not on the script search path"
            )));
        }
        Ok(dest.display().to_string())
    });
}

fn register_temp_dir(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("temp_dir() -> string")
        .doc("A fresh private temporary folder, removed when the process ends.");
    prim.register(engine, move || -> ScriptResult<String> {
        Ok(h.temp_dir()
            .map_err(host::script_err)?
            .display()
            .to_string())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_script_compiles_and_every_command_has_a_usage_line() {
        let engine = limited_engine();
        for (path, text) in search::bundled_scripts() {
            engine
                .compile(text)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let is_command = path.starts_with("scripts/") && !path.contains("/_");
            assert!(
                !is_command || !catalog::command_doc(text).usage.is_empty(),
                "{path} has no usage line"
            );
        }
    }
}
