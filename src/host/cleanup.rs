//! `cleanup::` — undo actions that must run however a command ends. A script registers one
//! before it changes something that must be put back (a frozen process to thaw); on the normal
//! path it runs or cancels it itself; on an error, Ctrl-C or SIGTERM the host runs whatever is
//! still pending. A script cannot catch an interrupt, so only the host can promise this.
//!
//! An action is a closure that returns the future doing the work, so this module knows no
//! primitive family: the Docker family adds `cleanup::exec` to the module (`docker::
//! register_cleanup`), the terminal registers its own actions.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rhai::Module;

use super::doc::Prim;
use super::{script_err, Host};

/// How long one cleanup action may take before it is given up (and said so).
const ACTION_DEADLINE: Duration = Duration::from_secs(15);

/// The work of an action, started when it runs.
type Work = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One thing to put back: a closure that starts the work.
pub struct Action(Box<dyn FnOnce() -> Work + Send>);

impl Action {
    /// An action of any kind: `start` returns the future that does it.
    pub fn new<F, Fut>(start: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Action(Box::new(move || Box::pin(start())))
    }

    /// Remove a local file or directory tree (e.g. a private copy holding secrets).
    pub fn remove_path(path: PathBuf) -> Self {
        Action::new(move || async move {
            let removed = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(_) => Ok(()),
            };
            removed.map_err(|e| format!("{}: {e}", path.display()))
        })
    }

    /// Send SIGTERM to a child process wsm started (e.g. the editor).
    pub fn terminate(pid: u32) -> Self {
        Action::new(move || async move {
            // SAFETY: kill() with a pid of our own child and a valid signal number.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            Ok(())
        })
    }
}

struct Pending {
    what: String,
    action: Action,
}

/// The pending cleanup actions of the running command.
#[derive(Default)]
pub struct Cleanups {
    next: std::sync::atomic::AtomicI64,
    pending: std::sync::Mutex<BTreeMap<i64, Pending>>,
    /// Held while actions run, so that a signal arriving meanwhile waits for them before the
    /// process exits.
    running: tokio::sync::Mutex<()>,
}

impl Cleanups {
    /// Registers an action; `what` says what it does, for a message if it fails. Returns its id.
    pub fn add(&self, what: impl Into<String>, action: Action) -> i64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let pending = Pending {
            what: what.into(),
            action,
        };
        self.lock().insert(id, pending);
        id
    }

    /// Forgets an action without running it; false when it was not pending.
    pub fn cancel(&self, id: i64) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Runs one action now (if still pending) and forgets it.
    pub async fn run(&self, id: i64) -> Result<(), String> {
        let _running = self.running.lock().await;
        let Some(p) = self.lock().remove(&id) else {
            return Ok(());
        };
        perform(p).await
    }

    /// Runs every pending action, newest first; failures are reported on stderr. Each action
    /// runs once, even when a signal and the end of the command both ask for it.
    pub async fn run_all(&self) {
        let _running = self.running.lock().await;
        let pending = std::mem::take(&mut *self.lock());
        for (_, p) in pending.into_iter().rev() {
            if let Err(e) = perform(p).await {
                eprintln!("warning: {e}");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Performs one action within [`ACTION_DEADLINE`]; the error names what it was for.
async fn perform(p: Pending) -> Result<(), String> {
    let what = p.what;
    let work = (p.action.0)();
    match tokio::time::timeout(ACTION_DEADLINE, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("cleanup failed ({what}): {e}")),
        Err(_) => Err(format!(
            "cleanup gave up after {} s ({what})",
            ACTION_DEADLINE.as_secs()
        )),
    }
}

/// The `cleanup::` module: `run` and `cancel`; the families whose actions scripts register
/// add their own functions (`cleanup::exec` by `docker::register_cleanup`) before it is
/// registered.
pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    let prim = Prim::new("cleanup::run(id: int)")
        .doc("Runs a pending undo action now (the normal path); Ctrl-C does not cut it short.");
    prim.set_in(&mut m, move |id: i64| -> super::ScriptResult<()> {
        h.rt.block_on(h.cleanups.run(id)).map_err(script_err)
    });

    let h = host.clone();
    let prim = Prim::new("cleanup::cancel(id: int) -> bool")
        .doc("Forgets a pending undo action; false when it was not pending.");
    prim.set_in(&mut m, move |id: i64| Ok(h.cleanups.cancel(id)));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn pending_actions_run_once_newest_first_and_cancelled_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        for p in [&a, &b, &c] {
            std::fs::write(p, "x").unwrap();
        }
        let cleanups = Cleanups::default();
        let ia = cleanups.add("remove a", Action::remove_path(a.clone()));
        let ib = cleanups.add("remove b", Action::remove_path(b.clone()));
        cleanups.add("remove c", Action::remove_path(c.clone()));
        assert!(cleanups.cancel(ib));
        let rt = rt();
        rt.block_on(cleanups.run(ia)).unwrap();
        assert!(!a.exists());
        rt.block_on(cleanups.run_all());
        assert!(!c.exists() && b.exists(), "b was cancelled, c was pending");
        assert!(!cleanups.cancel(ia), "a ran already");
        rt.block_on(cleanups.run_all());
    }
}
