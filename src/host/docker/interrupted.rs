//! A recorded deploy that Ctrl-C, SIGTERM or a closed stdout stops half-way: it records the
//! state it left as a revision marked interrupted, and says the command that returns the stack
//! to the previous revision. It does not roll back by itself: ARCHITECTURE.md ("Invariants")
//! says why.
//!
//! The record is a cleanup action (`cleanup`), registered before the deploy changes anything,
//! since an interrupt drops the deploy's future where it stands: the dropped guard runs it at
//! once (the stack's lock still held), and were that cut short, the host runs it however the
//! command ends, on SIGTERM before the process exits. A deploy that ends without an interrupt,
//! well or not, records itself and cancels the action.

use serde_json::Value;

use super::history::open_state;
use super::revisions::{changes, message_of, snapshot, History};
use super::EngineHandle;
use crate::host::cleanup::Action;
use crate::host::Host;

/// The pending record of a deploy's interruption: cancelled when dropped without an interrupt.
pub(super) struct Pending<'a> {
    host: &'a Host,
    id: i64,
}

impl<'a> Pending<'a> {
    /// Registers the record of an interrupted deploy of `stack` whose state before was
    /// `before` (revision `base`), for the history under `operation`.
    pub(super) fn register(
        host: &'a Host,
        e: &EngineHandle,
        stack: &str,
        before: &Value,
        base: Option<i64>,
        operation: &str,
    ) -> Self {
        let (e, stack, before, operation) = (
            e.clone(),
            stack.to_string(),
            before.clone(),
            operation.to_string(),
        );
        let what = format!("record the interrupted deploy of stack {stack}");
        let action =
            Action::new(move || async move { record(&e, &stack, &before, base, &operation).await });
        Pending {
            host,
            id: host.cleanups.add(what, action),
        }
    }
}

impl Drop for Pending<'_> {
    /// Without an interrupt the deploy recorded itself: the action goes. With one (the deploy's
    /// future dropped where it stood), the record is made now, while the script still holds
    /// the stack's lock; it runs once, whether here or from the signal's cleanups.
    fn drop(&mut self) {
        if !self.host.is_interrupted() {
            self.host.cleanups.cancel(self.id);
            return;
        }
        // A thread of its own: this runs inside the runtime's block_on (as the lock's release).
        let (cleanups, rt, id) = (&self.host.cleanups, self.host.rt.clone(), self.id);
        let done = std::thread::scope(|s| s.spawn(|| rt.block_on(cleanups.run(id))).join());
        if let Ok(Err(e)) = done {
            eprintln!("warning: {e}");
        }
    }
}

/// The command that returns `stack` to revision `base`, or what to do with no revision.
fn way_back(stack: &str, base: Option<i64>) -> String {
    match base {
        Some(rev) => {
            format!("`wsm stack rollback --to {rev} {stack}` returns it to revision {rev}")
        }
        None => format!("it had no previous revision (`wsm stack rm {stack}` removes it)"),
    }
}

/// Records the state the interrupted deploy left, unless it changed nothing or recorded it
/// already, and says how to return.
async fn record(
    e: &EngineHandle,
    stack: &str,
    before: &Value,
    base: Option<i64>,
    operation: &str,
) -> Result<(), String> {
    let back = way_back(stack, base);
    let failed = |err: Box<rhai::EvalAltResult>| {
        format!(
            "the deploy of stack {stack} was interrupted and is not in its history ({}); {back}",
            message_of(&err)
        )
    };
    let after = snapshot(e, stack).await.map_err(failed)?;
    let changed = changes(before, &after);
    if changed.is_empty() {
        eprintln!("Stack {stack}: the deploy was interrupted before it changed anything");
        return Ok(());
    }
    let mut history = History::load(&e.docker, stack).await.map_err(failed)?;
    let recorded = history
        .current()
        .is_some_and(|cur| open_state(&cur["state"]).is_ok_and(|s| s == after));
    if recorded {
        return Ok(());
    }
    let services = changed.len();
    let status = format!("interrupted before it was done; {back}");
    let rev = history
        .append(&e.docker, operation, &status, changed, Some(after))
        .await
        .map_err(failed)?;
    eprintln!(
        "warning: the deploy of stack {stack} was interrupted after it changed {services} service(s); the stack as it stands is recorded as revision {rev} (interrupted); {back}"
    );
    Ok(())
}
