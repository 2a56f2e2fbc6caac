//! The stack lock: one per stack, held in the swarm itself so that it works across users and
//! hosts. It is a swarm config object named after the stack (`wsm-lock-<stack>`), which the
//! swarm creates atomically: creation fails when it exists (`docker::state_object`, the layer
//! the state store stands on too). Its labels say who holds it (`user@host`, pid, machine),
//! for what (`start`, `stop`, …), since when, and its lease. This file is the lock's policy:
//! the lease and its renewal, waiting, and breaking a stale lock.
//!
//! **Lease.** The holder renews the lock every quarter of its lease ([`ttl`], `WSM_LOCK_TTL`
//! seconds, 60): each renewal rewrites its labels, which raises the object's version. A waiter
//! never compares anyone's timestamps with its own clock: it breaks the lock only when the
//! object's id and version have stayed the same for a whole lease of the holder's, measured by
//! the waiter's own monotonic clock, so no clock skew and no shared machine id can break a live
//! lock. One shortcut: a holder that ran in this boot and pid namespace (and on this machine
//! id), whose process is provably gone, is broken at once (`identity::process_gone`).
//!
//! **Fencing.** A lock can still be taken from a live holder (`stack lock release --force`, a
//! holder whose engine was out of reach for a lease). The holder registers a
//! `docker::fence::Lease`, and every step that changes the stack first checks it still holds
//! the lock; the renewal that finds it gone says so. A holder that lost it stops.
//!
//! The lock goes when the value a script holds is dropped: when the command ends, by success,
//! error or Ctrl-C. (A second Ctrl-C or SIGKILL ends the process at once: the next command
//! breaks that lock as stale.) A second command waits for the lock, saying who holds it, up to
//! its deadline: start, stop, update and reset are requests for a state, so running them one
//! after the other is what both users asked for. Waiting 0 s (`--no-wait`) makes the second
//! command fail at once instead.
//!
//! `e.lock_status(stack)` shows the lock; `e.lock_release(stack)` removes it whoever holds it
//! (`stack lock release --force`): the holder's next renewal or fencing check finds it gone.

mod holder;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use rhai::Engine;

use super::doc::Prim;
use super::{script_err, to_dynamic, Host, ScriptResult};
use crate::host::docker::fence::Lease;
use crate::host::docker::state_object::{self, object_name, ObjectError, StateObject};
use crate::host::docker::EngineHandle;
pub use holder::Holder;
use holder::{Waiting, Watch};

/// How long a lock stays valid without being renewed: `WSM_LOCK_TTL` seconds, else 60.
pub fn ttl() -> Duration {
    let secs = std::env::var("WSM_LOCK_TTL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s >= 2)
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// How often the holder renews it: a quarter of the TTL.
pub fn renew_every() -> Duration {
    ttl() / 4
}

/// The swarm config name of a stack's lock: `wsm-lock-<stack>`, or a hash of the stack name
/// when that would not be a valid config name (over 64 characters, not ending alphanumeric).
pub fn lock_name(stack: &str) -> String {
    object_name("wsm-lock-", stack)
}

/// A lock this process holds; released when the last handle to it goes.
struct Held {
    docker: Docker,
    rt: tokio::runtime::Handle,
    stack: String,
    lease: Arc<Lease>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
        let (docker, id, rt) = (
            self.docker.clone(),
            self.lease.id().to_string(),
            self.rt.clone(),
        );
        // Not through Host::block: after Ctrl-C the release must still run. A thread of its own,
        // so that dropping inside the runtime cannot block it. The id is this lock's own: a lock
        // someone else took meanwhile is another object and stays.
        let released = std::thread::spawn(move || {
            rt.block_on(async { state_object::remove(&docker, &id).await })
        })
        .join();
        let failed = match released {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the release failed".into()),
        };
        if let Some(why) = failed {
            eprintln!(
                "warning: could not release the lock of stack {} ({why}); a waiter breaks it once it has seen it unrenewed for {} s",
                self.stack,
                ttl().as_secs()
            );
        }
    }
}

/// The locks this process holds, by engine and name: taking one again (reset's stop, then
/// start) shares it.
static HELD: Mutex<Vec<(String, String, Weak<Held>)>> = Mutex::new(Vec::new());

/// A stack's lock as a script holds it (`StackLock`): released when the script drops it.
#[derive(Clone)]
pub struct StackLock(Arc<Held>);

/// Keeps the lock renewed while the holder lives: each round rewrites its labels (a new
/// version for the waiters to see). A lock found gone is lost: said once, and fenced.
fn spawn_renewer(
    rt: &tokio::runtime::Handle,
    docker: Docker,
    lease: Arc<Lease>,
    stack: String,
    mut holder: Holder,
) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        loop {
            tokio::time::sleep(renew_every()).await;
            holder.until = SystemTime::now() + ttl();
            holder.renewals += 1;
            // A failed read or renewal is tried again at the next round, well before the lease ends.
            let found = match state_object::read(&docker, lease.id()).await {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(_) => continue,
            };
            let labels = holder.labels(&stack);
            let renewed =
                state_object::update(&docker, &found.id, &found.name, found.version, labels).await;
            if renewed == Err(ObjectError::Gone) {
                break;
            }
        }
        lease.lose();
        eprintln!(
            "warning: the lock of stack {stack} was taken away (released with --force, or broken as stale); this command stops before its next change to the stack"
        );
    })
}

/// One attempt: create the lock, else read who holds it. Not interruptible, so a lock created
/// is never lost between the engine's answer and the handle that releases it.
enum Attempt {
    Got(String),
    HeldBy(StateObject),
    Vanished,
}

async fn attempt(d: &Docker, name: &str, holder: &Holder, stack: &str) -> ScriptResult<Attempt> {
    let data = format!("{}\n", holder.describe());
    match state_object::create(d, name, holder.labels(stack), &data).await {
        Ok(id) => return Ok(Attempt::Got(id)),
        Err(ObjectError::Exists) => {}
        Err(e) => return Err(script_err(format!("the lock of stack {stack}: {e}"))),
    }
    match state_object::read(d, name).await {
        Ok(Some(found)) => Ok(Attempt::HeldBy(found)),
        Ok(None) => Ok(Attempt::Vanished),
        Err(e) => Err(script_err(format!("the lock of stack {stack}: {e}"))),
    }
}

/// Breaks the stale lock `found`, unless it changed since it was read (its holder renewed it
/// after all, or someone else took it): then it stays, and the wait goes on.
fn break_stale(
    host: &Host,
    d: &Docker,
    stack: &str,
    found: &StateObject,
    holder: &Holder,
    why: &str,
) -> ScriptResult<()> {
    host.rt.block_on(async {
        let now = state_object::read(d, &found.name).await;
        let unchanged =
            matches!(&now, Ok(Some(n)) if n.id == found.id && n.version == found.version);
        if unchanged {
            eprintln!(
                "stack {stack}: breaking a stale lock ({}): {why}",
                holder.describe()
            );
            state_object::remove(d, &found.id)
                .await
                .map_err(|e| script_err(format!("the lock of stack {stack}: {e}")))?;
        }
        Ok(())
    })
}

/// Takes the lock of `stack` for `operation`, waiting up to `wait` for another holder.
fn take(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    operation: &str,
    wait: Duration,
) -> ScriptResult<StackLock> {
    let name = lock_name(stack);
    {
        let mut held = HELD.lock().expect("held locks");
        held.retain(|(_, _, w)| w.strong_count() > 0);
        if let Some(lock) = held
            .iter()
            .find(|(h, n, _)| *h == e.host && *n == name)
            .and_then(|(_, _, w)| w.upgrade())
        {
            return Ok(StackLock(lock));
        }
    }
    let me = Holder::this_process(operation);
    let started = Instant::now();
    let mut waiting = Waiting::new(stack, wait);
    let mut watch = None;
    loop {
        if host.is_interrupted() {
            waiting.finish();
            return Err(super::interrupted());
        }
        match host.rt.block_on(attempt(&e.docker, &name, &me, stack))? {
            Attempt::Got(id) => {
                waiting.acquired(started.elapsed());
                let lease = Lease::hold(&e.host, stack, &id);
                let renewer =
                    spawn_renewer(&host.rt, e.docker.clone(), lease.clone(), stack.into(), me);
                let lock = Arc::new(Held {
                    docker: e.docker.clone(),
                    rt: host.rt.clone(),
                    stack: stack.into(),
                    lease,
                    renewer,
                });
                let mut held = HELD.lock().expect("held locks");
                held.push((e.host.clone(), name, Arc::downgrade(&lock)));
                return Ok(StackLock(lock));
            }
            Attempt::Vanished => continue,
            Attempt::HeldBy(found) => {
                let holder = Holder::from_labels(&found.labels);
                let unchanged = Watch::see(&mut watch, &found);
                let lease = holder.lease();
                let why = holder.gone_because().or_else(|| {
                    (unchanged >= lease).then(|| {
                        format!(
                            "it was not renewed after {} s of watching, its whole lease",
                            lease.as_secs()
                        )
                    })
                });
                if let Some(why) = why {
                    break_stale(host, &e.docker, stack, &found, &holder, &why)?;
                    continue;
                }
                if started.elapsed() >= wait {
                    waiting.finish();
                    return Err(script_err(if wait.is_zero() {
                        format!(
                            "stack {stack} is locked: {}; try again when it has finished",
                            holder.describe()
                        )
                    } else {
                        let unrenewed = if unchanged >= wait {
                            format!(
                                " (it was not renewed meanwhile: once a command has seen it so for its whole lease of {} s it breaks it)",
                                lease.as_secs()
                            )
                        } else {
                            String::new()
                        };
                        format!(
                            "stack {stack} is still locked after {} s: {}{unrenewed}; try again later, or raise WSM_LOCK_WAIT",
                            wait.as_secs(),
                            holder.describe()
                        )
                    }));
                }
                waiting.update(&holder, started.elapsed());
            }
        }
        // Half a second between attempts, awake to Ctrl-C.
        for _ in 0..5 {
            if host.is_interrupted() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The lock of `stack` as it stands: its object and who holds it; `None` when nobody does.
async fn status(d: &Docker, stack: &str) -> ScriptResult<Option<(String, Holder)>> {
    match state_object::read(d, &lock_name(stack)).await {
        Ok(found) => Ok(found.map(|f| (f.id, Holder::from_labels(&f.labels)))),
        Err(e) => Err(script_err(format!("the lock of stack {stack}: {e}"))),
    }
}

/// A holder as a script sees it.
fn holder_map(h: &Holder) -> ScriptResult<rhai::Dynamic> {
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    to_dynamic(&serde_json::json!({
        "operation": h.operation,
        "holder": h.user_host,
        "pid": h.pid,
        "machine": h.machine,
        "since": time(h.since),
        "until": time(h.until),
        "stale": h.gone_because().unwrap_or_default(),
        "description": h.describe(),
    }))
}

/// Registers `e.lock_stack(stack, operation, wait_secs)`, `e.lock_status(stack)`,
/// `e.lock_release(stack)` and the `StackLock` type.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<StackLock>("StackLock");
    let prim = Prim::new("lock.name -> string")
        .doc("The name of the swarm config object that holds the lock.");
    prim.register(engine, |l: &mut StackLock| lock_name(&l.0.stack));

    let h = host.clone();
    let prim =
        Prim::new("e.lock_stack(stack: string, operation: string, wait_secs: int) -> StackLock")
            .doc(
            "Takes the stack's lock for `operation`, waiting up to `wait_secs` (0: fail at once) \
             while another command holds it; the error names the holder. The lock is released \
             when the returned value is dropped (the command ends).",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle,
              stack: &str,
              operation: &str,
              wait: i64|
              -> ScriptResult<StackLock> {
            take(
                &h,
                e,
                stack,
                operation,
                Duration::from_secs(wait.max(0) as u64),
            )
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.lock_status(stack: string) -> map").doc(
        "Who holds the stack's lock: `#{operation, holder (user@host), pid, machine, since, \
         until, stale, description}`, where `until` is by the holder's clock and `stale` says \
         why it may be broken at once (its holder's process on this machine is gone; \"\" \
         otherwise: a waiter breaks it only after seeing it unrenewed for a whole lease); () \
         when the stack is not locked.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<rhai::Dynamic> {
            match h.block(status(&e.docker, stack))? {
                Some((_, holder)) => holder_map(&holder),
                None => Ok(rhai::Dynamic::UNIT),
            }
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.lock_release(stack: string) -> map").doc(
        "Removes the stack's lock whoever holds it (a forced take-over; the holder stops before \
         its next change to the stack); returns the holder removed, as `lock_status` shows it, \
         or () when there was none.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<rhai::Dynamic> {
            let d = &e.docker;
            let Some((id, holder)) = h.block(status(d, stack))? else {
                return Ok(rhai::Dynamic::UNIT);
            };
            h.block(async {
                state_object::remove(d, &id)
                    .await
                    .map_err(|e| script_err(format!("the lock of stack {stack}: {e}")))
            })?;
            holder_map(&holder)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_are_valid_config_names_for_every_stack_name() {
        assert_eq!(lock_name("demo"), "wsm-lock-demo");
        for stack in ["a-", "x".repeat(63).as_str(), "ab_.-", "é\u{0}/"] {
            let n = lock_name(stack);
            assert!(n.len() <= 64, "{n}");
            assert!(n.ends_with(|c: char| c.is_ascii_alphanumeric()), "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{n}"
            );
        }
        assert_ne!(lock_name(&"x".repeat(63)), lock_name(&"x".repeat(62)));
    }
}
