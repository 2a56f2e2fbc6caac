//! The verdict of a convergence wait (`converge`) on one service, from what the engine shows:
//! - only the tasks of the service's current spec count (the engine's own `_up-to-date` task
//!   filter), so the old tasks still running during an update do not;
//! - an updated service is done when its update has completed (`UpdateStatus`); an update the
//!   engine paused or rolled back is a failure, with its message (towards an earlier revision,
//!   the engine's own rollback goes the same way: see `Goal`);
//! - every task the operation started must have stayed running for the service's monitor
//!   window (`UpdateConfig.Monitor`, 5 s by default, as `docker stack deploy --detach=false`
//!   verifies) unless the engine already verified it (its update completed, which the engine
//!   says only after that window); a new task that fails is a failure at once, with its error,
//!   unless `UpdateConfig.MaxFailureRatio` tolerates it; one that ended cleanly is replaced by
//!   the engine and waited for (the engine stops tasks it moves, and they may exit 0). Nothing new to watch, nothing to wait
//!   for: an unchanged stack is done at once;
//! - a job (`replicated-job`, `global-job`) is done when its tasks have completed, a one-shot
//!   task (restart `none` or `on-failure`) that completed is done.
//!
//! What counts as new is decided against a [`Baseline`] read before the operation: the tasks
//! that existed then, and each service's update (its `StartedAt`) then, so an update the engine
//! began earlier is not taken for this operation's.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::Docker;
use serde_json::Value;

use super::{list_services, list_tasks, stack_filter, str_at};
use crate::host::ScriptResult;

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

    /// Whether the task existed before the operation.
    pub(super) fn had(&self, task: &str) -> bool {
        self.tasks.contains(task)
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
    match svc
        .pointer("/Spec/UpdateConfig/Monitor")
        .and_then(Value::as_u64)
    {
        Some(ns) if ns > 0 => Duration::from_nanos(ns),
        _ => Duration::from_secs(5),
    }
}

/// Whether a task belongs to the service's current job run (any task of a service that is
/// not a job).
pub(super) fn current_iteration(svc: &Value, task: &Value) -> bool {
    match svc.pointer("/JobStatus/JobIteration/Index") {
        Some(index) => task.pointer("/JobIteration/Index") == Some(index),
        None => true,
    }
}

/// Whether a task runs and is meant to.
pub(super) fn runs(task: &Value) -> bool {
    str_at(task, &["Status", "State"]) == "running"
        && matches!(str_at(task, &["DesiredState"]), "running" | "")
}

/// Where one service stands.
#[derive(Debug, PartialEq)]
pub(super) enum Phase {
    /// Fewer of its current tasks run (or, for one-shot tasks, completed) than it wants.
    Starting,
    /// The engine is still updating it (or, towards an earlier revision, rolling it back).
    Updating,
    /// Its tasks run; the newest has not yet run for the whole window (this long).
    Verifying(Duration),
    Done,
}

/// The shortest window after which a task seen running through all of it is taken as settled
/// without a second read: a manager may still show "running" for a moment after the task's
/// process ended, far less than this.
const SETTLES_AFTER: Duration = Duration::from_secs(1);

/// How far one service has got, for the progress display and the verdict.
#[derive(Debug)]
pub(super) struct ServiceState {
    pub(super) done: usize,
    pub(super) desired: usize,
    pub(super) job: bool,
    pub(super) phase: Phase,
    pub(super) window: Duration,
    /// Whether a verdict of done rests on more than this one read, so that a second read would
    /// guard nothing: every new task was seen running through its whole window (of at least
    /// [`SETTLES_AFTER`]), or the engine verified the update itself, or a job completed, or
    /// there is no new task.
    pub(super) settled: bool,
    /// Why the service failed, with the id of a task whose error the engine's message names.
    pub(super) failure: Option<(String, Option<String>)>,
}

/// Judges one service from its current tasks (`tasks`: the engine's up-to-date ones of its
/// current job run), the baseline, and when each new task was first seen running.
pub(super) fn judge(
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
    // A new task that failed; as many as `MaxFailureRatio` allows are tolerated. A task meant
    // to run that ended cleanly (`complete`) is not counted: the engine stops a task it moves
    // (a node lost, a rebalance) with SIGTERM, a service that traps it exits 0, and the engine
    // starts its replacement; only the window decides, as for any task that has not run long
    // enough. During an update the engine's own updater counts such a stop, and says so in
    // `UpdateStatus` (below).
    let failures: Vec<&&&Value> = new
        .iter()
        .filter(|t| matches!(str_at(t, &["Status", "State"]), "failed" | "rejected"))
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
            ("paused", _) => Some(format!(
                "service {name}: the engine paused the update: {message}"
            )),
            ("rollback_paused", _) => Some(format!(
                "service {name}: the engine paused its rollback: {message}"
            )),
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
    let reached = if job {
        done >= desired
    } else {
        done == desired
    };
    let mut settled = false;
    let phase = if !reached {
        Phase::Starting
    } else if updating {
        Phase::Updating
    } else if job || verified {
        settled = true;
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
            // Done with no new task running (none made, or one-shot ones completed), or each
            // seen running through a window long enough to outlast the manager's lag.
            settled = window >= SETTLES_AFTER || !new.iter().any(|t| runs(t));
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
        settled,
        failure,
    }
}

/// The progress line of one service.
pub(super) fn progress_line(s: &ServiceState) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(status: Value, update_config: Value) -> Value {
        json!({
            "ID": "s1",
            "Spec": {"Name": "st_app", "Mode": {"Replicated": {"Replicas": 1}},
                     "UpdateConfig": update_config},
            "UpdateStatus": status,
        })
    }

    fn task(id: &str, state: &str, err: &str) -> Value {
        let desired = if state == "running" {
            "running"
        } else {
            "shutdown"
        };
        json!({"ID": id, "ServiceID": "s1", "DesiredState": desired,
               "Status": {"State": state, "Err": err}})
    }

    fn baseline(tasks: &[&str], started: Option<&str>) -> Baseline {
        Baseline {
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            updates: started
                .map(|s| HashMap::from([("s1".to_string(), s.to_string())]))
                .unwrap_or_default(),
        }
    }

    fn judged(svc: &Value, tasks: &[Value], base: &Baseline, goal: Goal, ran: u64) -> ServiceState {
        let now = Instant::now() + Duration::from_secs(60);
        let seen = tasks
            .iter()
            .map(|t| {
                (
                    str_at(t, &["ID"]).to_string(),
                    now - Duration::from_secs(ran),
                )
            })
            .collect();
        let refs: Vec<&Value> = tasks.iter().collect();
        judge(svc, &refs, 1, base, goal, &seen, now)
    }

    #[test]
    fn an_unchanged_service_is_done_at_once_and_a_new_task_after_its_window() {
        let svc = service(Value::Null, Value::Null);
        let running = [task("t1", "running", "")];
        let old = judged(&svc, &running, &baseline(&["t1"], None), Goal::Deploy, 0);
        assert_eq!(old.phase, Phase::Done);
        let new = judged(&svc, &running, &baseline(&[], None), Goal::Deploy, 1);
        assert_eq!(new.phase, Phase::Verifying(Duration::from_secs(4)));
        assert!(old.settled, "nothing new: no second read needed");
        let stable = judged(&svc, &running, &baseline(&[], None), Goal::Deploy, 5);
        assert_eq!(stable.phase, Phase::Done);
        assert!(stable.settled, "seen running through its whole window");
        // A window shorter than the manager's lag: the verdict is read twice.
        let short = service(Value::Null, json!({"Monitor": 200_000_000u64}));
        let quick = judged(&short, &running, &baseline(&[], None), Goal::Deploy, 1);
        assert_eq!(quick.phase, Phase::Done);
        assert!(!quick.settled);
        let window = service(Value::Null, json!({"Monitor": 10_000_000_000u64}));
        let longer = judged(&window, &running, &baseline(&[], None), Goal::Deploy, 5);
        assert_eq!(longer.phase, Phase::Verifying(Duration::from_secs(5)));
    }

    #[test]
    fn a_new_task_that_fails_fails_at_once_and_an_old_failure_is_history() {
        let svc = service(Value::Null, Value::Null);
        let tasks = [
            task("t2", "running", ""),
            task("t1", "failed", "task: non-zero exit (1)"),
        ];
        let failed = judged(&svc, &tasks, &baseline(&[], None), Goal::Deploy, 1);
        let (why, _) = failed.failure.unwrap();
        assert_eq!(
            why,
            "service st_app: 1 task(s) failed: task: non-zero exit (1)"
        );
        let history = judged(&svc, &tasks, &baseline(&["t1"], None), Goal::Deploy, 9);
        assert!(history.failure.is_none());
        assert_eq!(history.phase, Phase::Done);
        // A task meant to run that ended cleanly is the engine's to replace: the service waits.
        let complete = judged(
            &svc,
            &[task("t3", "complete", "")],
            &baseline(&[], None),
            Goal::Deploy,
            0,
        );
        assert!(complete.failure.is_none());
        assert_eq!(complete.phase, Phase::Starting);
        // As many failures as MaxFailureRatio allows are the engine's to tolerate.
        let tolerant = service(Value::Null, json!({"MaxFailureRatio": 1.0}));
        assert!(
            judged(&tolerant, &tasks, &baseline(&[], None), Goal::Deploy, 9)
                .failure
                .is_none()
        );
    }

    #[test]
    fn the_engines_word_on_an_update_decides_when_it_is_this_operations() {
        let status = |state: &str| {
            json!({"State": state, "StartedAt": "T2",
                   "Message": "update paused due to failure or early termination of task abc"})
        };
        let running = [task("t1", "running", "")];
        let fresh = baseline(&[], Some("T1"));
        let paused = judged(
            &service(status("paused"), Value::Null),
            &running,
            &fresh,
            Goal::Deploy,
            9,
        );
        let (why, task) = paused.failure.unwrap();
        assert!(
            why.starts_with("service st_app: the engine paused the update: update paused"),
            "{why}"
        );
        assert_eq!(task.as_deref(), Some("abc"));
        // Begun before the operation: not its word.
        let stale = baseline(&["t1"], Some("T2"));
        let old = judged(
            &service(status("paused"), Value::Null),
            &running,
            &stale,
            Goal::Deploy,
            0,
        );
        assert!(old.failure.is_none());
        assert_eq!(old.phase, Phase::Done);
        let updating = judged(
            &service(status("updating"), Value::Null),
            &running,
            &fresh,
            Goal::Deploy,
            9,
        );
        assert_eq!(updating.phase, Phase::Updating);
        // Completed: the engine watched the new task for the window already.
        let completed = judged(
            &service(status("completed"), Value::Null),
            &running,
            &fresh,
            Goal::Deploy,
            0,
        );
        assert_eq!(completed.phase, Phase::Done);
        let undone = service(status("rollback_completed"), Value::Null);
        assert!(judged(&undone, &running, &fresh, Goal::Deploy, 0)
            .failure
            .is_some());
        let back = judged(&undone, &running, &fresh, Goal::Rollback, 0);
        assert!(back.failure.is_none());
        assert_eq!(back.phase, Phase::Done);
    }
}
