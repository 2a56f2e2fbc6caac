//! The stack lock: one per stack, held in the swarm itself so that it works across users and
//! hosts. It is a swarm config object named after the stack (`wsm-lock-<stack>`), which the
//! swarm creates atomically: creation fails when it exists. Its labels say who holds it
//! (`user@host`, pid, machine), for what (`start`, `stop`, …), since when and until when.
//!
//! The holder renews `until` every quarter of the TTL ([`ttl`], `WSM_LOCK_TTL` seconds, 60)
//! while it lives, so a holder that crashed, was killed or lost its host blocks others for at
//! most the TTL; a holder on this machine whose
//! process is gone is broken at once. The lock goes when the value a script holds is dropped:
//! when the command ends, by success, error or Ctrl-C. (A second Ctrl-C or SIGKILL ends the
//! process at once: the next command breaks that lock as stale.)
//!
//! A second command waits for the lock, saying who holds it, up to its deadline: start, stop,
//! update and reset are requests for a state, so running them one after the other is what both
//! users asked for. Waiting 0 s (`--no-wait`) makes the second command fail at once instead.
//!
//! `e.lock_status(stack)` shows the lock; `e.lock_release(stack)` removes it whoever holds it
//! (`stack lock release --force`): the holder's next renewal finds it gone and says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use bollard::models::ConfigSpec;
use bollard::Docker;
use rhai::Engine;

use super::doc::Prim;
use super::identity::{machine_id, process_alive, user_at_host};
use super::{script_err, to_dynamic, Host, ScriptResult};
use crate::host::docker::EngineHandle;
use crate::host::progress::ProgressDisplay;

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

/// The label every wsm lock carries, with the kind of lock as its value.
const KIND_LABEL: &str = "wsm.lock";

/// Who holds a lock, read from (or written to) its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub operation: String,
    pub user_host: String,
    pub pid: u32,
    pub machine: String,
    pub since: SystemTime,
    pub until: SystemTime,
}

impl Holder {
    /// This process, doing `operation`, from now until now + ttl().
    fn this_process(operation: &str) -> Self {
        let now = SystemTime::now();
        Holder {
            operation: operation.to_string(),
            user_host: user_at_host(),
            pid: std::process::id(),
            machine: machine_id(),
            since: now,
            until: now + ttl(),
        }
    }

    fn labels(&self, stack: &str) -> HashMap<String, String> {
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        HashMap::from([
            (KIND_LABEL.into(), "stack".into()),
            ("wsm.lock.stack".into(), stack.into()),
            ("wsm.lock.operation".into(), self.operation.clone()),
            ("wsm.lock.holder".into(), self.user_host.clone()),
            ("wsm.lock.pid".into(), self.pid.to_string()),
            ("wsm.lock.machine".into(), self.machine.clone()),
            ("wsm.lock.since".into(), time(self.since)),
            ("wsm.lock.until".into(), time(self.until)),
        ])
    }

    /// Reads a holder from a lock's labels; labels that do not parse count as expired.
    fn from_labels(labels: &HashMap<String, String>) -> Self {
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let time = |k: &str| humantime::parse_rfc3339(&get(k)).unwrap_or(SystemTime::UNIX_EPOCH);
        Holder {
            operation: get("wsm.lock.operation"),
            user_host: get("wsm.lock.holder"),
            pid: get("wsm.lock.pid").parse().unwrap_or(0),
            machine: get("wsm.lock.machine"),
            since: time("wsm.lock.since"),
            until: time("wsm.lock.until"),
        }
    }

    /// "start by root@vm (pid 1234) since 2026-11-21T13:40:01Z".
    pub fn describe(&self) -> String {
        format!(
            "{} by {} (pid {}) since {}",
            self.operation,
            self.user_host,
            self.pid,
            humantime::format_rfc3339_seconds(self.since)
        )
    }

    /// Why the lock is stale and may be broken, or None while its holder may still be at work.
    fn stale_because(&self, now: SystemTime) -> Option<String> {
        if self.until < now {
            return Some(format!(
                "it was not renewed after {}",
                humantime::format_rfc3339_seconds(self.until)
            ));
        }
        if self.machine == machine_id() && !process_alive(self.pid) {
            return Some("its process is gone".into());
        }
        None
    }
}

/// The swarm config name of a stack's lock: `wsm-lock-<stack>`, or a hash of the stack name
/// when that would not be a valid config name (over 64 characters, not ending alphanumeric).
pub fn lock_name(stack: &str) -> String {
    crate::host::docker::store::object_name("wsm-lock-", stack)
}

fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A lock this process holds; released when the last handle to it goes.
struct Held {
    docker: Docker,
    rt: tokio::runtime::Handle,
    stack: String,
    id: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
        let (docker, id, rt) = (self.docker.clone(), self.id.clone(), self.rt.clone());
        // Not through Host::block: after Ctrl-C the release must still run. A thread of its own,
        // so that dropping inside the runtime cannot block it.
        let released = std::thread::spawn(move || {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(15), docker.delete_config(&id)).await
            })
        })
        .join();
        let failed = match released {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) if status_of(&e) == Some(404) => None,
            Ok(Ok(Err(e))) => Some(message(&e)),
            Ok(Err(_)) => Some("the engine did not answer within 15 s".into()),
            Err(_) => Some("the release failed".into()),
        };
        if let Some(why) = failed {
            eprintln!(
                "warning: could not release the lock of stack {} ({why}); it expires within {} s",
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

/// Keeps the lock's `until` ahead while the holder lives.
fn spawn_renewer(
    rt: &tokio::runtime::Handle,
    docker: Docker,
    id: String,
    stack: String,
    mut holder: Holder,
) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        loop {
            tokio::time::sleep(renew_every()).await;
            holder.until = SystemTime::now() + ttl();
            let Ok(cfg) = docker.inspect_config(&id).await else {
                eprintln!("warning: the lock of stack {stack} was taken away (broken as stale?)");
                return;
            };
            let Some(mut spec) = cfg.spec else { return };
            spec.labels = Some(holder.labels(&stack));
            let version = cfg.version.and_then(|v| v.index).unwrap_or(0) as i64;
            let options = bollard::query_parameters::UpdateConfigOptions { version };
            // A failed renewal is tried again at the next round, well before the TTL ends.
            let _ = docker.update_config(&id, spec, options).await;
        }
    })
}

/// One attempt: create the lock, else read who holds it. Not interruptible, so a lock created
/// is never lost between the engine's answer and the handle that releases it.
enum Attempt {
    Got(String),
    HeldBy(String, Holder),
    Vanished,
}

async fn attempt(docker: &Docker, name: &str, spec: &ConfigSpec) -> ScriptResult<Attempt> {
    let timeout = Duration::from_secs(30);
    let lost = || script_err("the Docker engine did not answer the lock request within 30 s");
    let created = tokio::time::timeout(timeout, docker.create_config(spec.clone()))
        .await
        .map_err(|_| lost())?;
    match created {
        Ok(r) => return Ok(Attempt::Got(r.id)),
        Err(e) if status_of(&e) == Some(409) => {}
        Err(e) => {
            return Err(script_err(format!(
                "cannot take the lock {name}: {}",
                message(&e)
            )))
        }
    }
    let found = tokio::time::timeout(timeout, docker.inspect_config(name))
        .await
        .map_err(|_| lost())?;
    match found {
        Ok(cfg) => {
            let labels = cfg.spec.and_then(|s| s.labels).unwrap_or_default();
            Ok(Attempt::HeldBy(
                cfg.id.unwrap_or_default(),
                Holder::from_labels(&labels),
            ))
        }
        Err(e) if status_of(&e) == Some(404) => Ok(Attempt::Vanished),
        Err(e) => Err(script_err(format!(
            "cannot read the lock {name}: {}",
            message(&e)
        ))),
    }
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
    let spec = ConfigSpec {
        name: Some(name.clone()),
        labels: Some(me.labels(stack)),
        data: Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}\n", me.describe()),
        )),
        templating: None,
    };
    let started = Instant::now();
    let mut waiting = Waiting::new(stack, wait);
    loop {
        if host.is_interrupted() {
            waiting.finish();
            return Err(super::interrupted());
        }
        match host.rt.block_on(attempt(&e.docker, &name, &spec))? {
            Attempt::Got(id) => {
                waiting.acquired(started.elapsed());
                let renewer =
                    spawn_renewer(&host.rt, e.docker.clone(), id.clone(), stack.into(), me);
                let lock = Arc::new(Held {
                    docker: e.docker.clone(),
                    rt: host.rt.clone(),
                    stack: stack.into(),
                    id,
                    renewer,
                });
                let mut held = HELD.lock().expect("held locks");
                held.push((e.host.clone(), name, Arc::downgrade(&lock)));
                return Ok(StackLock(lock));
            }
            Attempt::Vanished => continue,
            Attempt::HeldBy(id, holder) => {
                if let Some(why) = holder.stale_because(SystemTime::now()) {
                    eprintln!(
                        "stack {stack}: breaking a stale lock ({}): {why}",
                        holder.describe()
                    );
                    let _ = host.rt.block_on(async {
                        tokio::time::timeout(Duration::from_secs(30), e.docker.delete_config(&id))
                            .await
                    });
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
                        format!(
                            "stack {stack} is still locked after {} s: {}; try again later, or raise WSM_LOCK_WAIT",
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

/// The progress of a wait for the lock: a line saying who holds it, then the time waited in
/// steps of 5 s (`progress`); the last line says how it ended.
struct Waiting {
    stack: String,
    wait: Duration,
    holder: Option<Holder>,
    display: Option<ProgressDisplay>,
}

impl Waiting {
    fn new(stack: &str, wait: Duration) -> Self {
        Waiting {
            stack: stack.into(),
            wait,
            holder: None,
            display: None,
        }
    }

    fn update(&mut self, holder: &Holder, waited: Duration) {
        if self.holder.as_ref() != Some(holder) {
            eprintln!(
                "stack {} is locked: {}; waiting up to {} s for it to finish (WSM_LOCK_WAIT)",
                self.stack,
                holder.describe(),
                self.wait.as_secs()
            );
            self.holder = Some(holder.clone());
        }
        let step = waited.as_secs() / 5 * 5;
        self.display
            .get_or_insert_with(ProgressDisplay::new)
            .update(
                &format!("lock of stack {}", self.stack),
                format!("waited {step} s of {} s", self.wait.as_secs()),
            );
    }

    fn finish(&mut self) {
        if let Some(display) = self.display.take() {
            display.finish();
        }
    }

    fn acquired(&mut self, waited: Duration) {
        self.finish();
        if let Some(h) = &self.holder {
            eprintln!(
                "stack {}: {} by {} (pid {}) has finished; went on after waiting {:.1} s",
                self.stack,
                h.operation,
                h.user_host,
                h.pid,
                waited.as_secs_f64()
            );
        }
    }
}

/// The lock of `stack` as it stands: who holds it for what, since and until when, and why it
/// is stale ("" while its holder may be at work); `None` when nobody holds it.
async fn status(d: &Docker, stack: &str) -> ScriptResult<Option<(String, Holder)>> {
    let name = lock_name(stack);
    match tokio::time::timeout(Duration::from_secs(30), d.inspect_config(&name)).await {
        Err(_) => Err(script_err("the Docker engine did not answer within 30 s")),
        Ok(Err(e)) if status_of(&e) == Some(404) => Ok(None),
        Ok(Err(e)) => Err(script_err(format!(
            "cannot read the lock {name}: {}",
            message(&e)
        ))),
        Ok(Ok(cfg)) => {
            let labels = cfg.spec.and_then(|s| s.labels).unwrap_or_default();
            Ok(Some((
                cfg.id.unwrap_or_default(),
                Holder::from_labels(&labels),
            )))
        }
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
        "stale": h.stale_because(SystemTime::now()).unwrap_or_default(),
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

    // e.lock_stack(stack, operation, wait_secs) — take the stack's lock for `operation`,
    // waiting up to wait_secs (0: fail at once) while another command holds it. The lock is
    // released when the returned value is dropped (the command ends).
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
         until, stale, description}`, where `stale` says why it may be broken (\"\" while its \
         holder may be at work); () when the stack is not locked.",
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
        "Removes the stack's lock whoever holds it (a forced take-over; the holder is told when \
         it next renews); returns the holder removed, as `lock_status` shows it, or () when there \
         was none.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<rhai::Dynamic> {
            let d = &e.docker;
            let Some((id, holder)) = h.block(status(d, stack))? else {
                return Ok(rhai::Dynamic::UNIT);
            };
            h.block(async {
                match d.delete_config(&id).await {
                    Ok(()) => Ok(()),
                    Err(e) if status_of(&e) == Some(404) => Ok(()),
                    Err(e) => Err(script_err(format!(
                        "cannot remove the lock of stack {stack}: {}",
                        message(&e)
                    ))),
                }
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

    #[test]
    fn a_holder_survives_its_labels() {
        let mut me = Holder::this_process("start");
        // Labels keep whole seconds.
        me.since = humantime::parse_rfc3339("2026-11-21T13:40:01Z").unwrap();
        me.until = me.since + ttl();
        assert_eq!(Holder::from_labels(&me.labels("demo")), me);
        assert!(me.describe().starts_with("start by "), "{}", me.describe());
    }

    #[test]
    fn a_lock_is_stale_when_not_renewed_or_when_its_process_here_is_gone() {
        let mut h = Holder::this_process("stop");
        assert_eq!(h.stale_because(SystemTime::now()), None);
        let later = SystemTime::now() + ttl() + Duration::from_secs(1);
        assert!(h.stale_because(later).unwrap().contains("not renewed"));
        h.pid = i32::MAX as u32;
        assert_eq!(
            h.stale_because(SystemTime::now()).as_deref(),
            Some("its process is gone")
        );
        h.machine = "another machine".into();
        assert_eq!(h.stale_because(SystemTime::now()), None);
        assert!(Holder::from_labels(&HashMap::new())
            .stale_because(SystemTime::now())
            .is_some());
    }
}
