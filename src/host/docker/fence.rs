//! Fencing: before a step that changes a stack (a deploy's writes, a rollback, a removal, a
//! scale or restart), a command that took the stack's lock checks that it still holds it.
//!
//! A lock can be taken away from a live holder: `stack lock release --force`, or a waiter that
//! saw it unrenewed for a whole lease (the holder's engine unreachable, its process stopped).
//! Another command may then be changing the stack, and a holder that carried on would undo
//! that command's work (a rollback putting back the revision it replaced). So the lock
//! (`crate::host::lock`) registers a [`Lease`] for each lock it takes, and each destructive step
//! asks [`check`]: the lock object, read by its id, must still be there (an id is never
//! reused, so a lock taken again by someone else is another object). When it is not, the step
//! is not taken and the command stops with an error saying why. A command that holds no lock
//! of the stack (a script calling `e.deploy` by itself) is not fenced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

use super::{state_object, str_at, EngineHandle};
use crate::host::{script_err, ScriptResult, NAMESPACE_LABEL};

/// A stack lock this process took: on which engine, for which stack, the object's id, and
/// whether it is known to be lost.
pub struct Lease {
    engine: String,
    stack: String,
    id: String,
    lost: AtomicBool,
}

/// The leases of this process; a lease is gone when the lock that held it is released.
static LEASES: Mutex<Vec<Weak<Lease>>> = Mutex::new(Vec::new());

impl Lease {
    /// Registers the lock object `id` of `stack` on engine `engine` as held by this process,
    /// until the returned value is dropped.
    pub fn hold(engine: &str, stack: &str, id: &str) -> Arc<Lease> {
        let lease = Arc::new(Lease {
            engine: engine.to_string(),
            stack: stack.to_string(),
            id: id.to_string(),
            lost: AtomicBool::new(false),
        });
        let mut leases = LEASES.lock().expect("leases");
        leases.retain(|w| w.strong_count() > 0);
        leases.push(Arc::downgrade(&lease));
        lease
    }

    /// Marks the lock as lost (its renewal found it gone): every later check fails at once.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// The lock object's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The lease this process holds on `stack` of engine `engine`, if any.
fn lease_of(engine: &str, stack: &str) -> Option<Arc<Lease>> {
    let leases = LEASES.lock().expect("leases");
    leases
        .iter()
        .filter_map(Weak::upgrade)
        .find(|l| l.engine == engine && l.stack == stack)
}

/// The error of a holder that lost its lock, before `step`.
fn lost(stack: &str, step: &str) -> Box<rhai::EvalAltResult> {
    script_err(format!(
        "stack {stack}: stopped before {step}: this command no longer holds the stack's lock (it was released with `stack lock release --force`, or broken as stale), so another command may be changing the stack; nothing more was changed"
    ))
}

/// Fails when this process took the lock of `stack` and no longer holds it; `step` says what
/// was about to happen ("updating the services"). Ok when it holds it, or never took it.
pub async fn check(e: &EngineHandle, stack: &str, step: &str) -> ScriptResult<()> {
    let Some(lease) = lease_of(&e.host, stack) else {
        return Ok(());
    };
    if lease.lost.load(Ordering::SeqCst) {
        return Err(lost(stack, step));
    }
    match state_object::read(&e.docker, &lease.id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            lease.lose();
            Err(lost(stack, step))
        }
        Err(why) => Err(script_err(format!(
            "stack {stack}: stopped before {step}: cannot tell whether this command still holds the stack's lock ({why})"
        ))),
    }
}

/// [`check`] for the stack of service `svc` (as the engine shows it), when it is in one.
pub async fn check_service(e: &EngineHandle, svc: &Value, step: &str) -> ScriptResult<()> {
    let stack = str_at(svc, &["Spec", "Labels", NAMESPACE_LABEL]);
    if stack.is_empty() {
        return Ok(());
    }
    check(e, stack, step).await
}
