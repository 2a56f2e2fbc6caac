//! Waiting for a stack to converge after a deploy, until the engine says it is done, as
//! `docker stack deploy --detach=false` waits (docker/cli's `service/progress`):
//! - only the tasks of each service's current spec count (the engine's own `_up-to-date`
//!   task filter), so the old tasks still running during an update do not;
//! - an updated service is done when its update has completed (`UpdateStatus`); an update the
//!   engine paused or rolled back is a failure, with its message;
//! - every task the operation started must have stayed running for the service's monitor
//!   window (`UpdateConfig.Monitor`, 5 s by default) unless the engine already verified it
//!   (its update completed, which the engine says only after that window); a new task that
//!   fails ends the wait at once with its error. Nothing new to watch, nothing to wait for: an
//!   unchanged stack is done at once;
//! - a job (`replicated-job`, `global-job`) is done when its tasks have completed, a one-shot
//!   task (restart `none` or `on-failure`) that completed is done.
//!
//! What counts as new is decided against a [`Baseline`] read before the operation: the tasks
//! that existed then, and each service's update (its `StartedAt`) then, so an update the engine
//! began earlier is not taken for this operation's. The wait has a deadline and never hangs.
//!
//! The wait reads the stack's state when the engine says something happened (`GET /events`):
//! one of the stack's containers started, changed health, died, or one of its services changed
//! (the update states). Swarm has no task events, and a task's state follows its container's.
//! Quick reads follow each event (the manager learns of a task's new state a moment after its
//! container's event), and a poll every 0.5 s is the safety net: for an event stream that breaks
//! or says nothing, and for a manager that lags behind its containers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use super::{list_nodes, list_services, list_tasks, stack_filter, str_at};
use crate::host::progress::ProgressDisplay;
use crate::host::{interrupted, script_err, Host, ScriptResult};

/// What a stack was before an operation: the tasks that existed (their failures are history,
/// and they need no watching), and when each service's last update began (service id →
/// `UpdateStatus.StartedAt`): a status that began before is not this operation's word.
#[derive(Default)]
pub(super) struct Baseline {
    tasks: HashSet<String>,
    updates: HashMap<String, String>,
}

impl Baseline {
    /// Reads the stack's tasks and services now.
    pub(super) async fn read(d: &Docker, stack: &str) -> ScriptResult<Baseline> {
        let (services, tasks) = tokio::try_join!(
            list_services(d, stack_filter(stack)),
            list_tasks(d, stack_filter(stack))
        )?;
        Ok(Baseline {
            tasks: tasks
                .iter()
                .map(|t| str_at(t, &["ID"]).to_string())
                .collect(),
            updates: services
                .iter()
                .filter(|s| s.get("UpdateStatus").is_some_and(|u| !u.is_null()))
                .map(|s| {
                    (
                        str_at(s, &["ID"]).to_string(),
                        str_at(s, &["UpdateStatus", "StartedAt"]).to_string(),
                    )
                })
                .collect(),
        })
    }

    /// The service's update status when it is this operation's: absent before, or begun since.
    fn news<'a>(&self, svc: &'a Value) -> Option<&'a Value> {
        let status = svc.get("UpdateStatus").filter(|u| !u.is_null())?;
        let started = str_at(status, &["StartedAt"]);
        match self.updates.get(str_at(svc, &["ID"])) {
            Some(before) if before == started => None,
            _ => Some(status),
        }
    }
}

/// What the operation drives the stack towards, which decides how the engine's own rollback
/// of a service reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Goal {
    /// A deploy: an update the engine paused or rolled back has failed.
    Deploy,
    /// Back to an earlier revision: the engine rolling a service back (the failed deploy's
    /// update, undone by the engine itself) goes the same way; a paused one still fails.
    Rollback,
}

/// Whether a service is a job: its tasks run to completion once.
fn is_job(svc: &Value) -> bool {
    let mode = &svc["Spec"]["Mode"];
    mode.get("ReplicatedJob").is_some() || mode.get("GlobalJob").is_some()
}

/// The number of tasks a service wants running (or, for a job, completed): its replicas or
/// total completions, or one per ready node when global.
fn desired_count(svc: &Value, ready_nodes: usize) -> usize {
    let mode = &svc["Spec"]["Mode"];
    if mode.get("Global").is_some() || mode.get("GlobalJob").is_some() {
        ready_nodes
    } else if let Some(job) = mode.get("ReplicatedJob") {
        job["TotalCompletions"].as_u64().unwrap_or(1) as usize
    } else {
        mode["Replicated"]["Replicas"].as_u64().unwrap_or(1) as usize
    }
}

/// Whether a service's tasks are one-shot: a completed task is then done, not missing.
fn is_one_shot(svc: &Value) -> bool {
    is_job(svc)
        || matches!(
            str_at(svc, &["Spec", "TaskTemplate", "RestartPolicy", "Condition"]),
            "none" | "on-failure"
        )
}

/// How long a new task must stay running: the service's `UpdateConfig.Monitor`, 5 s when it
/// sets none (as the engine and the Docker CLI read it).
fn monitor_window(svc: &Value) -> Duration {
    match svc.pointer("/Spec/UpdateConfig/Monitor").and_then(Value::as_u64) {
        Some(ns) if ns > 0 => Duration::from_nanos(ns),
        _ => Duration::from_secs(5),
    }
}

/// Whether a task belongs to the service's current job run (any task of a service that is
/// not a job).
fn current_iteration(svc: &Value, task: &Value) -> bool {
    match svc.pointer("/JobStatus/JobIteration/Index") {
        Some(index) => task.pointer("/JobIteration/Index") == Some(index),
        None => true,
    }
}

/// Whether a task runs and is meant to.
fn runs(task: &Value) -> bool {
    str_at(task, &["Status", "State"]) == "running"
        && matches!(str_at(task, &["DesiredState"]), "running" | "")
}

/// Where one service stands.
#[derive(Debug, PartialEq)]
enum Phase {
    /// Fewer of its current tasks run (or, for one-shot tasks, completed) than it wants.
    Starting,
    /// The engine is still updating it (or, towards an earlier revision, rolling it back).
    Updating,
    /// Its tasks run; the newest has not yet run for the whole window (this long).
    Verifying(Duration),
    Done,
}

/// How far one service has got, for the progress display and the verdict.
#[derive(Debug)]
struct ServiceState {
    done: usize,
    desired: usize,
    job: bool,
    phase: Phase,
    window: Duration,
    /// Why the service failed, with the id of a task whose error the engine's message names.
    failure: Option<(String, Option<String>)>,
}

/// Judges one service from its current tasks (`tasks`: the engine's up-to-date ones of its
/// current job run), the baseline, and when each new task was first seen running.
fn judge(
    svc: &Value,
    tasks: &[&Value],
    ready_nodes: usize,
    baseline: &Baseline,
    goal: Goal,
    seen_running: &HashMap<String, Instant>,
    now: Instant,
) -> ServiceState {
    let name = str_at(svc, &["Spec", "Name"]);
    let (one_shot, job) = (is_one_shot(svc), is_job(svc));
    let desired = desired_count(svc, ready_nodes);
    let window = monitor_window(svc);
    let done = tasks
        .iter()
        .filter(|t| (!job && runs(t)) || one_shot && str_at(t, &["Status", "State"]) == "complete")
        .count();
    let new: Vec<&&Value> = tasks
        .iter()
        .filter(|t| !baseline.tasks.contains(str_at(t, &["ID"])))
        .collect();
    // A new task that stopped (a task meant to run that completed stopped too), as the engine's
    // updater counts failures; as many as `MaxFailureRatio` allows are tolerated.
    let failures: Vec<&&&Value> = new
        .iter()
        .filter(|t| match str_at(t, &["Status", "State"]) {
            "failed" | "rejected" => true,
            "complete" => !one_shot,
            _ => false,
        })
        .collect();
    let ratio = svc
        .pointer("/Spec/UpdateConfig/MaxFailureRatio")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let tolerated = if one_shot {
        0
    } else {
        (ratio * desired as f64).floor() as usize
    };
    let mut failure = (failures.len() > tolerated).then(|| {
        let t = failures[0];
        let err = str_at(t, &["Status", "Err"]);
        let why = if err.is_empty() {
            str_at(t, &["Status", "Message"])
        } else {
            err
        };
        let state = str_at(t, &["Status", "State"]);
        (
            format!("service {name}: {} task(s) {state}: {why}", failures.len()),
            None,
        )
    });
    // The engine's word on this operation's update.
    let (mut updating, mut verified) = (false, false);
    if let Some(status) = baseline.news(svc) {
        let state = str_at(status, &["State"]);
        let message = str_at(status, &["Message"]);
        // "update paused due to failure or early termination of task <id>"
        let task = message
            .rsplit_once("task ")
            .map(|(_, id)| id.trim().to_string());
        let failed = match (state, goal) {
            ("paused" | "rollback_paused", _) => Some(format!("service {name}: {state}: {message}")),
            ("rollback_started" | "rollback_completed", Goal::Deploy) => Some(format!(
                "service {name}: the engine rolled the update back: {message}"
            )),
            ("updating" | "rollback_started", _) => {
                updating = true;
                None
            }
            ("completed" | "rollback_completed", _) => {
                verified = true;
                None
            }
            _ => None,
        };
        if failure.is_none() {
            failure = failed.map(|f| (f, task));
        }
    }
    let reached = if job { done >= desired } else { done == desired };
    let phase = if !reached {
        Phase::Starting
    } else if updating {
        Phase::Updating
    } else if job || verified {
        Phase::Done
    } else {
        let left = new
            .iter()
            .filter(|t| runs(t))
            .map(|t| {
                let since = seen_running.get(str_at(t, &["ID"])).copied().unwrap_or(now);
                window.saturating_sub(now.saturating_duration_since(since))
            })
            .max()
            .unwrap_or_default();
        if left.is_zero() {
            Phase::Done
        } else {
            Phase::Verifying(left)
        }
    };
    ServiceState {
        done,
        desired,
        job,
        phase,
        window,
        failure,
    }
}

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
        if !baseline.tasks.contains(id) && !seen_running.contains_key(id) {
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
struct EventWatch {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    notify: Arc<Notify>,
}

impl EventWatch {
    fn start(d: &Docker, stack: &str) -> Self {
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
    async fn next(&self, quiet: Duration) -> bool {
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

/// The progress line of one service.
fn progress_line(s: &ServiceState) -> String {
    let verb = if s.job { "completed" } else { "running" };
    let state = match (&s.phase, s.job) {
        (Phase::Done, true) => "done".to_string(),
        (Phase::Done, false) => "converged".to_string(),
        (Phase::Starting, true) => "running".to_string(),
        (Phase::Starting, false) => "waiting".to_string(),
        (Phase::Updating, _) => "updating".to_string(),
        // The window, not the time left: a line that changes every second floods a log.
        (Phase::Verifying(_), _) => format!("verifying for {} s", s.window.as_secs_f64().ceil()),
    };
    format!("{}/{} {verb} ({state})", s.done, s.desired)
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
