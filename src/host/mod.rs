//! Host primitives registered into the Rhai engine, one family per file, each with one
//! `register` that fills one static module (`docker::`, `config::`, `compose::`, `term::`).
//! Async work stays here: a primitive blocks on the shared tokio runtime, racing Ctrl-C.

pub mod archive;
pub mod args;
pub mod bounded;
pub mod cleanup;
pub mod compose;
pub mod config;
pub mod digest;
pub mod doc;
pub mod docker;
pub mod fs;
pub mod git;
pub mod http;
pub mod identity;
pub mod listing;
pub mod lock;
pub mod node_id;
pub mod opts;
pub mod output;
pub mod owner;
pub mod process;
pub mod progress;
pub mod schedule;
pub mod secrets;
pub mod serve;
pub mod ssh;
pub mod stdio;
pub mod term;
pub mod xdg;
pub mod yaml;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Map, Position};
use tokio::sync::Notify;

/// The result type of every primitive.
pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// The label `docker stack` uses to group a stack's objects.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// Options given on the command line that every script sees as `OPTS`.
#[derive(Debug, Clone, Default)]
pub struct GlobalOpts {
    pub config_dir: PathBuf,
    /// `--context NAME`: the Docker context `docker::connect("")` uses.
    pub context: Option<String>,
    pub json: bool,
    pub yes: bool,
    pub verbose: bool,
}

/// State shared by all primitives: the runtime, the options, the Ctrl-C flag, connections.
pub struct Host {
    pub rt: tokio::runtime::Handle,
    pub opts: GlobalOpts,
    interrupted: AtomicBool,
    terminated: AtomicBool,
    interrupt: Notify,
    /// A child (the editor) has the terminal: Ctrl-C is its to handle, not wsm's.
    child_has_terminal: AtomicBool,
    /// What must be put back however the running command ends.
    pub cleanups: cleanup::Cleanups,
    engines: std::sync::Mutex<std::collections::HashMap<String, docker::EngineHandle>>,
    /// Private temporary folders handed to scripts, removed when the process ends.
    temp_dirs: std::sync::Mutex<Vec<tempfile::TempDir>>,
    /// The warnings said once per process (`term::warn_once`).
    warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Host {
    pub fn new(rt: tokio::runtime::Handle, opts: GlobalOpts) -> Arc<Self> {
        Arc::new(Host {
            rt,
            opts,
            interrupted: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            interrupt: Notify::new(),
            child_has_terminal: AtomicBool::new(false),
            cleanups: Default::default(),
            engines: Default::default(),
            temp_dirs: Default::default(),
            warned: Default::default(),
        })
    }

    /// A fresh private temporary folder, kept until [`Host::remove_temp_dirs`].
    pub fn temp_dir(&self) -> std::io::Result<PathBuf> {
        let dir = tempfile::Builder::new().prefix("wsm-").tempdir()?;
        let path = dir.path().to_path_buf();
        self.temp_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir);
        Ok(path)
    }

    /// Removes the temporary folders scripts were given (the end of the process).
    pub fn remove_temp_dirs(&self) {
        self.temp_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether `text` is said for the first time in this process (true once per text).
    pub fn first_time(&self, text: &str) -> bool {
        self.warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(text.to_string())
    }

    /// Marks the current operation interrupted (Ctrl-C) and wakes whatever is blocked.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.interrupt.notify_waiters();
    }

    /// Marks the process terminated (SIGTERM): the operation is interrupted and the command
    /// ends with exit code 143.
    pub fn terminate(&self) {
        self.terminated.store(true, Ordering::SeqCst);
        self.interrupt();
    }

    /// Whether SIGTERM arrived.
    pub fn is_terminated(&self) -> bool {
        self.terminated.load(Ordering::SeqCst)
    }

    /// Clears the interrupt flag before the next command (the REPL goes on after Ctrl-C).
    pub fn clear_interrupt(&self) {
        self.interrupted.store(false, Ordering::SeqCst);
    }

    /// Runs the cleanup actions still pending (the end of a command, however it ended).
    pub fn run_cleanups(&self) {
        self.rt.block_on(self.cleanups.run_all());
    }

    /// Runs `f` while a child process owns the terminal: Ctrl-C reaches the child (it shares
    /// our process group) and does not interrupt wsm.
    pub fn with_child_on_terminal<T>(&self, f: impl FnOnce() -> T) -> T {
        self.child_has_terminal.store(true, Ordering::SeqCst);
        let out = f();
        self.child_has_terminal.store(false, Ordering::SeqCst);
        out
    }

    /// Whether a child process owns the terminal (see [`Host::with_child_on_terminal`]).
    pub fn child_has_terminal(&self) -> bool {
        self.child_has_terminal.load(Ordering::SeqCst)
    }

    /// Prints a progress line of an operation: stdout, or stderr under `--json` so that
    /// stdout holds only the JSON document.
    pub fn say(&self, line: &str) {
        if self.opts.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// Prints a warning to stderr.
    pub fn warn(&self, line: &str) {
        eprintln!("warning: {line}");
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Runs a future to completion on the runtime, giving up with "interrupted" on Ctrl-C.
    pub fn block<T>(&self, fut: impl Future<Output = ScriptResult<T>>) -> ScriptResult<T> {
        if self.is_interrupted() {
            return Err(interrupted());
        }
        self.rt.block_on(self.interruptible(fut))
    }

    /// A future that gives up with "interrupted" on Ctrl-C: what `block` runs, and what work
    /// spawned to go on beside the script runs (`docker/deploying.rs`), so that Ctrl-C drops it
    /// where it stands as it would a blocked primitive's.
    pub async fn interruptible<T>(
        &self,
        fut: impl Future<Output = ScriptResult<T>>,
    ) -> ScriptResult<T> {
        if self.is_interrupted() {
            return Err(interrupted());
        }
        tokio::select! {
            r = fut => r,
            _ = self.interrupt.notified() => Err(interrupted()),
        }
    }
}

/// The error raised when the user presses Ctrl-C during an operation.
/// Scripts cannot catch it, and the command ends with exit code 130.
pub fn interrupted() -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(Dynamic::from("interrupted"), Position::NONE).into()
}

/// An error's message followed by those of its sources, each once: openssh and hyper put what
/// `ssh` or the connection said in the source, which a plain `to_string` would lose.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !msg.is_empty() && !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// Turns any error into a script runtime error carrying its message intact.
pub fn script_err(e: impl std::fmt::Display) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(e.to_string()), Position::NONE).into()
}

/// A usage error: the command line or input was wrong. Exit code 2 with the usage line.
pub fn usage_err(message: impl Into<String>) -> Box<EvalAltResult> {
    let mut m = Map::new();
    m.insert("usage".into(), Dynamic::from(message.into()));
    EvalAltResult::ErrorRuntime(Dynamic::from_map(m), Position::NONE).into()
}

/// Bad input that is not the command line's fault (a compose file's error): exit code 2, the
/// one line alone, since the usage line would not help. A usage error otherwise, so scripts
/// that test `err.usage` treat both alike.
pub fn input_err(message: impl Into<String>) -> Box<EvalAltResult> {
    let mut m = Map::new();
    m.insert("usage".into(), Dynamic::from(message.into()));
    m.insert("input".into(), Dynamic::TRUE);
    EvalAltResult::ErrorRuntime(Dynamic::from_map(m), Position::NONE).into()
}

/// Converts any serializable value into a Rhai value (maps, arrays, strings, numbers).
pub fn to_dynamic<T: serde::Serialize>(value: &T) -> ScriptResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

/// Converts a Rhai value into JSON.
pub fn to_json(value: &Dynamic) -> ScriptResult<serde_json::Value> {
    rhai::serde::from_dynamic(value)
}
