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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use super::verdict::{current_iteration, judge, progress_line, runs, Phase, ServiceState};
pub(super) use super::verdict::{Baseline, Goal};
use super::{list_nodes, list_services, list_tasks, stack_filter, str_at};
use crate::host::progress::ProgressDisplay;
use crate::host::{interrupted, script_err, Host, ScriptResult};

/// Reads where every service of `stack` stands, noting when each new task was first seen
/// running.
async fn service_states(
    d: &Docker,
    stack: &str,
    baseline: &Baseline,
    goal: Goal,
    seen_running: &mut HashMap<String, Instant>,
) -> ScriptResult<BTreeMap<String, ServiceState>> {
    let mut current = stack_filter(stack);
    current.insert("_up-to-date".into(), vec!["true".into()]);
    let (services, tasks, nodes) = tokio::try_join!(
        list_services(d, stack_filter(stack)),
        list_tasks(d, current),
        list_nodes(d)
    )?;
    let now = Instant::now();
    for t in tasks.iter().filter(|t| runs(t)) {
        let id = str_at(t, &["ID"]);
        if !baseline.had(id) && !seen_running.contains_key(id) {
            seen_running.insert(id.to_string(), now);
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

/// Waits until every service of `stack` runs its desired tasks of its current spec, each new
/// one stable for the monitor window, and its update completed (a job: has completed them);
/// fails at once when a new task fails or the engine pauses or rolls back an update (see the
/// module's doc and `Goal`), and gives up at the deadline.
pub(super) async fn converge(
    host: &Host,
    d: &Docker,
    stack: &str,
    baseline: &Baseline,
    goal: Goal,
    timeout: Duration,
) -> ScriptResult<()> {
    let deadline = Instant::now() + timeout;
    let mut display = ProgressDisplay::new();
    let watch = EventWatch::start(d, stack);
    let mut seen_running = HashMap::new();
    // The first read comes at once; quick reads go on while containers are being started.
    let mut last_event = Instant::now();
    let mut confirming = false;
    loop {
        let last_read = Instant::now();
        let states = match service_states(d, stack, baseline, goal, &mut seen_running).await {
            Ok(states) => states,
            Err(e) => {
                if let Err(gone) = engine_gone(&mut display, stack, &e, deadline, timeout).await {
                    display.finish();
                    return Err(gone);
                }
                continue;
            }
        };
        let mut all_done = true;
        let mut next_check = POLL;
        for (name, s) in &states {
            all_done &= s.phase == Phase::Done;
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
        // in that moment likely, so a verdict of done is read twice, CONFIRM apart.
        if all_done && confirming {
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
