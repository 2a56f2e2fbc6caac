//! Waiting for a stack to converge after a deploy: every service runs its desired tasks, a job
//! (`replicated-job`, `global-job`) has completed, a one-shot task (restart `none` or
//! `on-failure`) that completed is done. Tasks that keep failing end the wait with their
//! error, a job's first failure at once; the wait has a deadline and never hangs.
//!
//! The wait reads the stack's state when the engine says something happened to one of its
//! containers (`GET /events`, filtered on the stack's namespace label and on start, health
//! status, die, oom): swarm has no task events, and a task's state follows its container's. Quick
//! reads follow each event (the manager learns of a task's new state a moment after its
//! container's event), and a poll every 0.5 s, as before the events, is the safety net: for an
//! event stream that breaks or says nothing, and for a manager that lags behind its containers.

use std::collections::{BTreeMap, HashSet};
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

/// How far one service has got, for the progress display and the verdict.
struct ServiceState {
    done: usize,
    desired: usize,
    job: bool,
    failure: Option<String>,
}

/// Whether a task belongs to the service's current job run (any task of a service that is
/// not a job).
fn current_iteration(svc: &Value, task: &Value) -> bool {
    match svc.pointer("/JobStatus/JobIteration/Index") {
        Some(index) => task.pointer("/JobIteration/Index") == Some(index),
        None => true,
    }
}

/// Reads where every service of `stack` stands. `known` holds task ids that existed before
/// the operation began, whose failures are history, not news.
async fn service_states(
    d: &Docker,
    stack: &str,
    known: &HashSet<String>,
) -> ScriptResult<BTreeMap<String, ServiceState>> {
    let (services, tasks, nodes) = tokio::try_join!(
        list_services(d, stack_filter(stack)),
        list_tasks(d, stack_filter(stack)),
        list_nodes(d)
    )?;
    let ready = nodes
        .iter()
        .filter(|n| str_at(n, &["Status", "State"]) == "ready")
        .count();
    let mut out = BTreeMap::new();
    for svc in &services {
        let id = str_at(svc, &["ID"]);
        let name = str_at(svc, &["Spec", "Name"]).to_string();
        let mine: Vec<&Value> = tasks
            .iter()
            .filter(|t| str_at(t, &["ServiceID"]) == id && current_iteration(svc, t))
            .collect();
        let (one_shot, job) = (is_one_shot(svc), is_job(svc));
        let done = mine
            .iter()
            .filter(|t| {
                let state = str_at(t, &["Status", "State"]);
                (!job && str_at(t, &["DesiredState"]) == "running" && state == "running")
                    || one_shot && state == "complete"
            })
            .count();
        let failures: Vec<&&Value> = mine
            .iter()
            .filter(|t| !known.contains(str_at(t, &["ID"])))
            .filter(|t| matches!(str_at(t, &["Status", "State"]), "rejected" | "failed"))
            .collect();
        let failure = if failures.len() >= 3 || (one_shot && !failures.is_empty()) {
            let t = failures[0];
            let err = str_at(t, &["Status", "Err"]);
            Some(format!(
                "service {name}: {} task(s) {}: {}",
                failures.len(),
                str_at(t, &["Status", "State"]),
                if err.is_empty() {
                    str_at(t, &["Status", "Message"])
                } else {
                    err
                }
            ))
        } else {
            None
        };
        out.insert(
            name,
            ServiceState {
                done,
                desired: desired_count(svc, ready),
                job,
                failure,
            },
        );
    }
    Ok(out)
}

/// The ids of the stack's tasks now: their later failures are history, not news.
pub(super) async fn task_ids(d: &Docker, stack: &str) -> ScriptResult<HashSet<String>> {
    Ok(list_tasks(d, stack_filter(stack))
        .await?
        .iter()
        .map(|t| str_at(t, &["ID"]).to_string())
        .collect())
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

/// Watches the engine's events for the stack's containers and wakes the waiter on each; ends
/// (and aborts its stream) when dropped. A broken stream is opened again after a second.
struct EventWatch {
    task: tokio::task::JoinHandle<()>,
    notify: Arc<Notify>,
}

impl EventWatch {
    fn start(d: &Docker, stack: &str) -> Self {
        let notify = Arc::new(Notify::new());
        let (d, n) = (d.clone(), notify.clone());
        let filters = std::collections::HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}={stack}", crate::host::NAMESPACE_LABEL)],
            ),
            // What moves a task: its container started, became healthy or not, stopped. (Not
            // the exec events every health check makes.)
            (
                "event".to_string(),
                ["start", "health_status", "die", "oom"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let task = tokio::spawn(async move {
            loop {
                let mut events = d.events(Some(EventsOptions {
                    filters: Some(filters.clone()),
                    ..Default::default()
                }));
                while let Some(Ok(_)) = events.next().await {
                    n.notify_one();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        EventWatch { task, notify }
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
        self.task.abort();
    }
}

/// Waits until every service of `stack` runs its desired tasks (a job: has completed them),
/// failing with a task's error when tasks keep being rejected or failing, and giving up at
/// the deadline.
pub(super) async fn converge(
    host: &Host,
    d: &Docker,
    stack: &str,
    known: &HashSet<String>,
    timeout: Duration,
) -> ScriptResult<()> {
    let deadline = Instant::now() + timeout;
    let mut display = ProgressDisplay::new();
    let watch = EventWatch::start(d, stack);
    // The first read comes at once; quick reads go on while containers are being started.
    let mut last_event = Instant::now();
    let mut confirming = false;
    loop {
        let last_read = Instant::now();
        let states = match service_states(d, stack, known).await {
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
        for (name, s) in &states {
            // A job may complete more tasks than asked; a service is converged at its count.
            let reached = if s.job {
                s.done >= s.desired
            } else {
                s.done == s.desired
            };
            all_done &= reached;
            let (verb, state) = match (s.job, reached) {
                (true, true) => ("completed", "done"),
                (true, false) => ("completed", "running"),
                (false, true) => ("running", "converged"),
                (false, false) => ("running", "waiting"),
            };
            display.update(name, format!("{}/{} {verb} ({state})", s.done, s.desired));
            if let Some(f) = &s.failure {
                display.finish();
                return Err(script_err(f));
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
                .filter(|(_, s)| s.done != s.desired && !(s.job && s.done > s.desired))
                .map(|(n, s)| format!("{n} {}/{}", s.done, s.desired))
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
        let quiet = quiet.min(deadline.saturating_duration_since(Instant::now()));
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
