//! The order of a deploy's service writes, from the plan's `depends` (compose's `depends_on`
//! in the long form, `compose/depends.rs`): the services go in waves, and a wave is written only
//! once every service it depends on has reached its condition on the engine:
//! - `service_started`: a task of the service's current spec is running (a service of 0
//!   replicas has nothing to start);
//! - `service_healthy`: the same, since swarm reports a task whose container has a health check
//!   as running only once the check has passed (the task stays `starting` until then); a
//!   dependency with no health check, in the file or its image, is refused before anything is
//!   written, as docker compose refuses it;
//! - `service_completed_successfully`: every task of its current spec has completed (exit 0),
//!   as many as the service runs (its replicas, a job's completions); a task of it that fails
//!   fails the deploy at once.
//!
//! A dependency that does not get there by the deploy's deadline fails the deploy (which the
//! recorded deploy rolls back, `rollback.rs`). `restart: true` restarts the dependent (its
//! force-update counter raised) when the deploy started new tasks of the dependency.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::Docker;
use serde::Deserialize;
use serde_json::Value;

use super::apply::Named;
use super::{list_services, list_tasks, str_at};
use crate::host::progress::ProgressDisplay;
use crate::host::{input_err, interrupted, script_err, Host, ScriptResult};

/// One ordered dependency of a plan: `service` waits for `on` to reach `condition`.
#[derive(Deserialize, Clone)]
pub(super) struct Dependency {
    pub service: String,
    pub on: String,
    pub condition: String,
    #[serde(default)]
    pub restart: bool,
}

/// How often a dependency's state is read while no event comes (the safety net).
const POLL: Duration = Duration::from_millis(500);
/// After one of the stack's containers started or changed health, the state is read again this
/// often while the event is recent: the manager marks the task running a moment after its
/// container's event, and each level of the order waits for that (issue 28: ≤ 100 ms per level).
/// Each read is one listing of the stack's services and one of each dependency's tasks.
const QUICK: Duration = Duration::from_millis(50);
/// How long after an event the quick reads go on.
const QUICK_FOR: Duration = Duration::from_millis(1000);

/// The plan's services in waves, by index: each service comes after every service of the plan
/// it depends on. Without dependencies, one wave of all. A cycle (a hand-made plan's: the
/// compose plan refuses them) is an error.
pub(super) fn waves(names: &[String], deps: &[Dependency]) -> ScriptResult<Vec<Vec<usize>>> {
    let in_plan: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut left: Vec<usize> = (0..names.len()).collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, waiting): (Vec<usize>, Vec<usize>) = left.iter().partition(|&&i| {
            deps.iter()
                .filter(|d| d.service == names[i] && in_plan.contains(d.on.as_str()))
                .all(|d| placed.contains(d.on.as_str()))
        });
        if ready.is_empty() {
            let stuck: Vec<&str> = waiting.iter().map(|&i| names[i].as_str()).collect();
            return Err(input_err(format!(
                "depends_on: dependency cycle among {}",
                stuck.join(", ")
            )));
        }
        placed.extend(ready.iter().map(|&i| names[i].as_str()));
        out.push(ready);
        left = waiting;
    }
    Ok(out)
}

/// Whether a spec's health check is there and not switched off.
fn has_healthcheck(hc: Option<&Value>) -> bool {
    hc.and_then(|h| h.get("Test"))
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(Value::as_str)
        .is_some_and(|first| first != "NONE")
}

/// Refuses, before anything is written, a `service_healthy` dependency on a service with no
/// health check in the file nor in its image (when the engine has the image to tell).
pub(super) async fn check(d: &Docker, services: &[Named], deps: &[Dependency]) -> ScriptResult<()> {
    for dep in deps.iter().filter(|d| d.condition == "service_healthy") {
        let Some(on) = services.iter().find(|s| s.name == dep.on) else {
            continue;
        };
        // A plan spells it as bollard does; the engine stores `Healthcheck`.
        let hc = ["HealthCheck", "Healthcheck"]
            .iter()
            .find_map(|k| on.spec["TaskTemplate"]["ContainerSpec"].get(*k))
            .filter(|h| !h.is_null());
        if has_healthcheck(hc) {
            continue;
        }
        let switched_off = hc.is_some();
        let image = str_at(&on.spec, &["TaskTemplate", "ContainerSpec", "Image"]);
        let in_image = match d.inspect_image(image).await {
            Ok(i) => {
                let hc = i.config.and_then(|c| c.healthcheck);
                hc.and_then(|h| h.test)
                    .and_then(|t| t.first().cloned())
                    .is_some_and(|first| first != "NONE")
            }
            // An image only the nodes have: the engine will tell.
            Err(_) => true,
        };
        if switched_off || !in_image {
            return Err(input_err(format!(
                "service {} depends on {} being healthy (service_healthy), but {} has no healthcheck",
                dep.service, dep.on, dep.on
            )));
        }
    }
    Ok(())
}

/// Where a dependency stands: reached, still waiting (with a progress line), or failed.
enum Standing {
    Reached,
    Waiting(String),
    Failed(String),
}

/// Reads where `dep.on` stands against its condition.
async fn standing(
    d: &Docker,
    stack_services: &[Value],
    dep: &Dependency,
) -> ScriptResult<Standing> {
    let Some(svc) = stack_services
        .iter()
        .find(|s| str_at(s, &["Spec", "Name"]) == dep.on)
    else {
        return Ok(Standing::Waiting("not created yet".into()));
    };
    let id = str_at(svc, &["ID"]);
    let filters = HashMap::from([
        ("service".to_string(), vec![id.to_string()]),
        ("_up-to-date".to_string(), vec!["true".to_string()]),
    ]);
    let tasks: Vec<Value> = list_tasks(d, filters)
        .await?
        .into_iter()
        .filter(|t| str_at(t, &["ServiceID"]) == id)
        .collect();
    let state = |t: &Value| str_at(t, &["Status", "State"]).to_string();
    let last_error = || {
        tasks
            .iter()
            .filter_map(|t| t.pointer("/Status/Err").and_then(Value::as_str))
            .find(|e| !e.is_empty())
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    };
    let mode = &svc["Spec"]["Mode"];
    let replicas = mode.pointer("/Replicated/Replicas").and_then(Value::as_i64);
    if dep.condition == "service_completed_successfully" {
        if let Some(t) = tasks
            .iter()
            .find(|t| matches!(state(t).as_str(), "failed" | "rejected"))
        {
            let err = t
                .pointer("/Status/Err")
                .and_then(Value::as_str)
                .unwrap_or("failed");
            return Ok(Standing::Failed(format!(
                "{} did not complete successfully: {err}",
                dep.on
            )));
        }
        let wanted = mode
            .pointer("/ReplicatedJob/TotalCompletions")
            .or_else(|| mode.pointer("/ReplicatedJob/MaxConcurrent"))
            .and_then(Value::as_i64)
            .or(replicas)
            .unwrap_or(1)
            .max(1) as usize;
        let complete = tasks.iter().filter(|t| state(t) == "complete").count();
        let going = tasks
            .iter()
            .filter(|t| !matches!(state(t).as_str(), "complete" | "shutdown" | "orphaned"))
            .count();
        if complete >= wanted && going == 0 {
            return Ok(Standing::Reached);
        }
        return Ok(Standing::Waiting(format!(
            "{complete}/{wanted} completed{}",
            last_error()
        )));
    }
    if replicas == Some(0) {
        return Ok(Standing::Reached);
    }
    if tasks.iter().any(|t| state(t) == "running") {
        return Ok(Standing::Reached);
    }
    let states: Vec<String> = tasks.iter().map(state).collect();
    let word = if dep.condition == "service_healthy" {
        "healthy"
    } else {
        "started"
    };
    Ok(Standing::Waiting(format!(
        "not {word} yet: {}{}",
        if states.is_empty() {
            "no task".to_string()
        } else {
            states.join(", ")
        },
        last_error()
    )))
}

/// Waits until every dependency in `deps` has reached its condition; fails when one fails, or
/// at `deadline` naming what it waited for.
pub(super) async fn reach(
    host: &Host,
    d: &Docker,
    stack: &str,
    deps: &[&Dependency],
    deadline: Instant,
    timeout: Duration,
) -> ScriptResult<()> {
    if deps.is_empty() {
        return Ok(());
    }
    let mut display = ProgressDisplay::new();
    // Woken by the stack's container events (as `converge` is), with the poll as safety net.
    let watch = super::converge::EventWatch::start(d, stack);
    let mut last_event: Option<Instant> = None;
    loop {
        let last_read = Instant::now();
        let services = list_services(d, super::stack_filter(stack)).await?;
        let mut pending = Vec::new();
        for dep in deps {
            match standing(d, &services, dep).await? {
                Standing::Reached => {}
                Standing::Failed(why) => {
                    display.finish();
                    return Err(script_err(format!(
                        "service {} waits for {} ({}): {why}",
                        dep.service, dep.on, dep.condition
                    )));
                }
                Standing::Waiting(line) => {
                    display.update(&dep.service, format!("waits for {}: {line}", dep.on));
                    pending.push(format!(
                        "service {} waited for {} ({}): {line}",
                        dep.service, dep.on, dep.condition
                    ));
                }
            }
        }
        if pending.is_empty() {
            display.finish();
            return Ok(());
        }
        if Instant::now() >= deadline {
            display.finish();
            return Err(script_err(format!(
                "stack {stack}: a dependency was not there within {} s: {}",
                timeout.as_secs(),
                pending.join("; ")
            )));
        }
        if host.is_interrupted() {
            display.finish();
            return Err(interrupted());
        }
        let quiet = if last_event.is_some_and(|t| t.elapsed() < QUICK_FOR) {
            QUICK
        } else {
            POLL
        };
        if watch
            .next(quiet.min(deadline.saturating_duration_since(Instant::now())))
            .await
        {
            last_event = Some(Instant::now());
            let since = last_read.elapsed();
            if since < QUICK {
                tokio::time::sleep(QUICK - since).await;
            }
        }
    }
}

/// The dependencies of `restart: true` whose service the deploy started new tasks of (tasks of
/// its current spec that were not there before): their dependents are restarted.
pub(super) async fn restarted(
    d: &Docker,
    stack: &str,
    deps: &[&Dependency],
    before: &HashSet<String>,
) -> ScriptResult<HashSet<String>> {
    let mut out = HashSet::new();
    if deps.iter().all(|d| !d.restart) {
        return Ok(out);
    }
    let services = list_services(d, super::stack_filter(stack)).await?;
    for dep in deps.iter().filter(|d| d.restart) {
        let Some(svc) = services
            .iter()
            .find(|s| str_at(s, &["Spec", "Name"]) == dep.on)
        else {
            continue;
        };
        let id = str_at(svc, &["ID"]);
        let filters = HashMap::from([
            ("service".to_string(), vec![id.to_string()]),
            ("_up-to-date".to_string(), vec!["true".to_string()]),
        ]);
        let fresh = list_tasks(d, filters)
            .await?
            .iter()
            .any(|t| str_at(t, &["ServiceID"]) == id && !before.contains(str_at(t, &["ID"])));
        if fresh {
            out.insert(dep.service.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(service: &str, on: &str) -> Dependency {
        Dependency {
            service: service.into(),
            on: on.into(),
            condition: "service_started".into(),
            restart: false,
        }
    }

    #[test]
    fn waves_follow_the_dependencies() {
        let names: Vec<String> = ["st_web", "st_db", "st_migrate", "st_cache"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let deps = vec![
            dep("st_web", "st_migrate"),
            dep("st_migrate", "st_db"),
            dep("st_web", "st_gone"),
        ];
        assert_eq!(
            waves(&names, &deps).unwrap(),
            vec![vec![1, 3], vec![2], vec![0]]
        );
        assert_eq!(waves(&names, &[]).unwrap(), vec![vec![0, 1, 2, 3]]);
        let cyclic = vec![dep("st_web", "st_db"), dep("st_db", "st_web")];
        assert!(waves(&names, &cyclic).is_err());
    }
}
