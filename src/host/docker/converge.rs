//! Waiting for a stack to converge after a deploy, until the engine says it is done, as
//! `docker stack deploy --detach=false` waits (docker/cli's `service/progress`): what done and
//! failed mean for one service is `verdict`'s; here are the reads, the events and the deadline.
//! A failure ends the wait at once; the wait has a deadline and never hangs.
//!
//! The wait reads the stack's state when the engine says something happened (`GET /events`):
//! one of the stack's containers started, changed health, died, or one of its services changed
//! (the update states). Swarm has no task events, and a task's state follows its container's.
//! Quick reads follow each event (the manager learns of a task's new state a moment after its
//! container's event), and a poll every 0.5 s is the safety net: for an event stream that breaks
//! or says nothing, and for a manager that lags behind its containers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::verdict::{current_iteration, judge, progress_line, runs, Phase, ServiceState};
pub(super) use super::verdict::{Baseline, Goal};
use super::{list_nodes, list_services, raw, stack_filter, str_at, EngineHandle};
use crate::host::progress::ProgressDisplay;
use crate::host::{interrupted, script_err, Host, ScriptResult};

/// The engine's clock against this machine's, from the `Date` header of its answers (whole
/// seconds): the engine's time minus ours is at least `low` (an answer dated D, received at
/// our t, was written at or after D while we were at t or before). The bound only rises as
/// answers come, and a time mapped with it is never earlier than the truth.
#[derive(Default)]
struct EngineClock {
    low: Option<f64>,
}

impl EngineClock {
    fn note(&mut self, engine: SystemTime, received: SystemTime) {
        let diff = secs_since_epoch(engine) - secs_since_epoch(received);
        self.low = Some(self.low.map_or(diff, |l| l.max(diff)));
    }

    /// When, on our monotonic clock, the engine's time `at` was at the latest; None before
    /// any dated answer, or for a time not in the past.
    fn local(&self, at: SystemTime, now_sys: SystemTime, now: Instant) -> Option<Instant> {
        let ours = secs_since_epoch(at) - self.low?;
        let ago = secs_since_epoch(now_sys) - ours;
        (ago > 0.0).then(|| now.checked_sub(Duration::from_secs_f64(ago)))?
    }
}

fn secs_since_epoch(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A task's running timestamp (`Status.Timestamp`, the engine's clock).
fn running_since(task: &Value) -> Option<SystemTime> {
    let at = chrono::DateTime::parse_from_rfc3339(str_at(task, &["Status", "Timestamp"])).ok()?;
    Some(SystemTime::from(at))
}

/// Reads where every service of `stack` stands, noting when each new task began to run. That
/// is the engine's own timestamp of the task (on our clock through `clock`), not the moment
/// this read saw it, bounded by the read before (`previous`, when it began), so that a clock
/// that differs (a worker's, which writes the timestamp) moves it by at most one read's gap,
/// and by this read, so that it is never later than seen.
async fn service_states(
    e: &EngineHandle,
    stack: &str,
    baseline: &Baseline,
    goal: Goal,
    seen_running: &mut HashMap<String, Instant>,
    clock: &mut EngineClock,
    previous: Option<Instant>,
) -> ScriptResult<BTreeMap<String, ServiceState>> {
    let d = &e.docker;
    let mut current = stack_filter(stack);
    current.insert("_up-to-date".into(), vec!["true".into()]);
    let query = serde_json::to_string(&current).map_err(script_err)?;
    let tasks = async {
        raw::get_json_dated(e, &format!("/tasks?filters={}", raw::url_escape(&query)))
            .await
            .map_err(script_err)
    };
    let (services, (tasks, date), nodes) =
        tokio::try_join!(list_services(d, stack_filter(stack)), tasks, list_nodes(d))?;
    let tasks = match tasks {
        Value::Array(list) => list,
        other => return Err(script_err(format!("the engine listed tasks as {other}"))),
    };
    if let Some((engine, received)) = date {
        clock.note(engine, received);
    }
    let (now, now_sys) = (Instant::now(), SystemTime::now());
    for t in tasks.iter().filter(|t| runs(t)) {
        let id = str_at(t, &["ID"]);
        if !baseline.had(id) && !seen_running.contains_key(id) {
            let engine_says = running_since(t).and_then(|at| clock.local(at, now_sys, now));
            let since = match (engine_says, previous) {
                (Some(at), Some(before)) => at.max(before).min(now),
                _ => now,
            };
            seen_running.insert(id.to_string(), since);
        }
    }
    let ready = nodes
        .iter()
        .filter(|n| str_at(n, &["Status", "State"]) == "ready")
        .count();
    let mut out = BTreeMap::new();
    for svc in &services {
        let id = str_at(svc, &["ID"]);
        let mine: Vec<&Value> = tasks
            .iter()
            .filter(|t| str_at(t, &["ServiceID"]) == id && current_iteration(svc, t))
            .collect();
        let state = judge(svc, &mine, ready, baseline, goal, seen_running, now);
        out.insert(str_at(svc, &["Spec", "Name"]).to_string(), state);
    }
    Ok(out)
}

/// The engine's message for a failed update, with the error of the task it names.
async fn with_task_error(d: &Docker, why: String, task: Option<String>) -> String {
    let Some(id) = task else { return why };
    match d.inspect_task(&id).await {
        Ok(t) => {
            let status = t.status.unwrap_or_default();
            match status.err.or(status.message).filter(|e| !e.is_empty()) {
                Some(err) => format!("{why}: {err}"),
                None => why,
            }
        }
        Err(_) => why,
    }
}

/// How often the state is read when no event came: the safety net, and the pace when the
/// manager learns a task's new state long after its container's event (a loaded engine).
const POLL: Duration = Duration::from_millis(500);
/// After an event, the state is read again this often while it is recent; reads are never
/// closer together than this (events in between make one read): each read is three requests
/// to an engine that is busy starting the stack's containers.
const QUICK: Duration = Duration::from_millis(100);
/// How long a verdict of done must hold (see `converge`).
const CONFIRM: Duration = Duration::from_millis(100);
/// How long after an event the quick reads go on.
const QUICK_FOR: Duration = Duration::from_millis(1000);

/// Watches the engine's events for the stack's containers and services and wakes the waiter
/// on each; ends (and aborts its streams) when dropped. A broken stream is opened again after a
/// second.
pub(super) struct EventWatch {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    notify: Arc<Notify>,
}

impl EventWatch {
    pub(super) fn start(d: &Docker, stack: &str) -> Self {
        let notify = Arc::new(Notify::new());
        let filter = |pairs: &[(&str, Vec<String>)]| -> HashMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // What moves a task: its container started, became healthy or not, stopped. (Not the
        // exec events every health check makes.)
        let containers = filter(&[
            ("type", strings(&["container"])),
            (
                "label",
                vec![format!("{}={stack}", crate::host::NAMESPACE_LABEL)],
            ),
            ("event", strings(&["start", "health_status", "die", "oom"])),
        ]);
        // What moves an update: the service's update state. Service events carry only the
        // service's name, so they are filtered here on the stack's prefix.
        let services = filter(&[
            ("type", strings(&["service"])),
            ("event", strings(&["update"])),
        ]);
        let prefix = format!("{stack}_");
        let watch = |filters: HashMap<String, Vec<String>>, prefix: Option<String>| {
            let (d, n) = (d.clone(), notify.clone());
            tokio::spawn(async move {
                loop {
                    let mut events = d.events(Some(EventsOptions {
                        filters: Some(filters.clone()),
                        ..Default::default()
                    }));
                    while let Some(Ok(event)) = events.next().await {
                        let name = event
                            .actor
                            .and_then(|a| a.attributes)
                            .and_then(|a| a.get("name").cloned())
                            .unwrap_or_default();
                        if prefix.as_ref().is_none_or(|p| name.starts_with(p)) {
                            n.notify_one();
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        let tasks = vec![watch(containers, None), watch(services, Some(prefix))];
        EventWatch { tasks, notify }
    }

    /// Waits for the next event, or `quiet` when none comes.
    pub(super) async fn next(&self, quiet: Duration) -> bool {
        tokio::select! {
            _ = self.notify.notified() => true,
            _ = tokio::time::sleep(quiet) => false,
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What a wait tells while it goes on: the services (by name) whose tasks of the current spec
/// all run (or completed), and whether the wait has ended, so that a caller can act on a
/// service that runs while the others are still waited for (`deploying`).
#[derive(Clone, Debug, Default)]
pub(super) struct Progress {
    pub reached: BTreeSet<String>,
    pub ended: bool,
}

/// The sending side of a wait's [`Progress`].
pub(super) type Reporter = watch::Sender<Progress>;

/// Marks the wait ended however it ends (done, failed, interrupted, dropped).
struct EndOnDrop<'a>(Option<&'a Reporter>);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.0 {
            r.send_modify(|p| p.ended = true);
        }
    }
}

/// Waits until every service of `stack` runs its desired tasks of its current spec, each new
/// one stable for the monitor window, and its update completed (a job: has completed them);
/// fails at once when a new task fails or the engine pauses or rolls back an update (see the
/// module's doc and `Goal`), and gives up at the deadline.
pub(super) async fn converge(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    baseline: &Baseline,
    goal: Goal,
    timeout: Duration,
) -> ScriptResult<()> {
    converge_reporting(host, e, stack, baseline, goal, timeout, None).await
}

/// [`converge`], telling `report` after each read which services run (see [`Progress`]).
pub(super) async fn converge_reporting(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    baseline: &Baseline,
    goal: Goal,
    timeout: Duration,
    report: Option<&Reporter>,
) -> ScriptResult<()> {
    let _ended = EndOnDrop(report);
    let deadline = Instant::now() + timeout;
    let d = &e.docker;
    let mut display = ProgressDisplay::new();
    let watch = EventWatch::start(d, stack);
    let mut seen_running = HashMap::new();
    let mut clock = EngineClock::default();
    // When the last read that answered began.
    let mut previous = None;
    // The first read comes at once; quick reads go on while containers are being started.
    let mut last_event = Instant::now();
    let mut confirming = false;
    loop {
        let last_read = Instant::now();
        let read = service_states(
            e,
            stack,
            baseline,
            goal,
            &mut seen_running,
            &mut clock,
            previous,
        );
        let states = match read.await {
            Ok(states) => states,
            Err(err) => {
                if let Err(gone) = engine_gone(&mut display, stack, &err, deadline, timeout).await {
                    display.finish();
                    return Err(gone);
                }
                continue;
            }
        };
        previous = Some(last_read);
        if let Some(r) = report {
            let reached: BTreeSet<String> = states
                .iter()
                .filter(|(_, s)| s.phase != Phase::Starting && s.failure.is_none())
                .map(|(n, _)| n.clone())
                .collect();
            r.send_if_modified(|p| {
                let changed = p.reached != reached;
                p.reached = reached;
                changed
            });
        }
        let mut all_done = true;
        let mut settled = true;
        let mut next_check = POLL;
        for (name, s) in &states {
            all_done &= s.phase == Phase::Done;
            settled &= s.settled;
            if let Phase::Verifying(left) = s.phase {
                next_check = next_check.min(left);
            }
            display.update(name, progress_line(s));
            if let Some((why, task)) = &s.failure {
                display.finish();
                return Err(script_err(
                    with_task_error(d, why.clone(), task.clone()).await,
                ));
            }
        }
        // A task whose process exits at once is "running" for a moment: the events make a read
        // in that moment likely, so a verdict of done is read twice, CONFIRM apart, unless every
        // service's verdict already rests on more than one moment (`ServiceState::settled`:
        // each new task seen running for its whole window, the engine's own verdict, or a job's
        // completion).
        if all_done && (confirming || settled) {
            display.finish();
            return Ok(());
        }
        if all_done {
            confirming = true;
            tokio::time::sleep(CONFIRM).await;
            continue;
        }
        confirming = false;
        if Instant::now() >= deadline {
            display.finish();
            let pending: Vec<String> = states
                .iter()
                .filter(|(_, s)| s.phase != Phase::Done)
                .map(|(n, s)| format!("{n} {}", progress_line(s)))
                .collect();
            return Err(script_err(format!(
                "stack {stack} did not converge within {} s: {}",
                timeout.as_secs(),
                pending.join(", ")
            )));
        }
        if host.is_interrupted() {
            display.finish();
            return Err(interrupted());
        }
        let quiet = if last_event.elapsed() < QUICK_FOR {
            QUICK
        } else {
            POLL
        };
        // A window that ends is read at once, with a little slack for the clock's resolution.
        let quiet = quiet
            .min(next_check + Duration::from_millis(10))
            .min(deadline.saturating_duration_since(Instant::now()));
        if watch.next(quiet).await {
            last_event = Instant::now();
            let since = last_read.elapsed();
            if since < QUICK {
                tokio::time::sleep(QUICK - since).await;
            }
        }
    }
}

/// During a wait, an engine that does not answer (restarting, or its SSH link down for a while)
/// is waited for until the deadline, with the reason on the progress line; then it fails with
/// one line saying so.
pub(super) async fn engine_gone(
    display: &mut ProgressDisplay,
    stack: &str,
    e: &rhai::EvalAltResult,
    deadline: Instant,
    timeout: Duration,
) -> ScriptResult<()> {
    let why = match e {
        rhai::EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => other.to_string(),
    };
    if Instant::now() >= deadline {
        return Err(script_err(format!(
            "stack {stack}: the Docker engine did not answer again within {} s: {why}",
            timeout.as_secs()
        )));
    }
    display.update(
        stack,
        format!("the engine does not answer, retrying: {why}"),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    #[test]
    fn the_engine_clock_maps_a_timestamp_never_earlier_than_it_was() {
        let mut clock = EngineClock::default();
        let now = Instant::now();
        assert!(clock.local(at(100.0), at(101.0), now).is_none());
        // Dated 100 (written between 100 and 101 on the engine), received at our 99.5.
        clock.note(at(100.0), at(99.5));
        clock.note(at(100.0), at(100.2)); // a later answer of the same second bounds less
        assert_eq!(clock.low, Some(0.5));
        let mapped = clock.local(at(102.3), at(103.0), now).unwrap();
        let ago = now.duration_since(mapped).as_secs_f64();
        assert!((ago - 1.2).abs() < 1e-6, "{ago}");
        // Not in the past by our clock: no mapping.
        assert!(clock.local(at(104.0), at(103.0), now).is_none());
    }
}
