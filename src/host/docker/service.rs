//! One service on an engine handle: inspect it, roll it back to its previous spec, force a
//! rolling update of its tasks (as `docker service update --force` does, moby#24413), and wait
//! until an update has reached every task — the Docker CLI's `service rollback/update` wait.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::InspectServiceOptions;
use bollard::Docker;
use rhai::{Array, Dynamic, Engine};
use serde_json::Value;

use super::{absent_on_404, engine_error, failed, list_nodes, list_tasks, str_at, EngineHandle};
use crate::host::doc::Prim;
use crate::host::opts::secs;
use crate::host::progress::ProgressDisplay;
use crate::host::{interrupted, script_err, to_dynamic, usage_err, Host, ScriptResult};

/// The service as the engine shows it, `None` when there is none by that name or id.
async fn inspect(d: &Docker, service: &str) -> ScriptResult<Option<Value>> {
    let found = absent_on_404(d.inspect_service(service, None::<InspectServiceOptions>))
        .await
        .map_err(engine_error)?;
    found
        .map(|s| serde_json::to_value(s).map_err(script_err))
        .transpose()
}

/// The service, or an error naming it when it does not exist.
async fn existing(d: &Docker, service: &str) -> ScriptResult<Value> {
    inspect(d, service)
        .await?
        .ok_or_else(|| script_err(format!("service {service} not found")))
}

/// Sends `spec` as the service's new spec (at the version read), with `rollback` when set.
async fn update(d: &Docker, svc: &Value, spec: Value, rollback: Option<&str>) -> ScriptResult<()> {
    let name = str_at(svc, &["Spec", "Name"]).to_string();
    let typed = serde_json::from_value(spec).map_err(script_err)?;
    super::update_service_at(d, svc, typed, rollback, None)
        .await
        .map_err(|e| failed(&format!("updating service {name}"), e))
}

/// Asks the swarm to put a service back to the spec it had before its last update. A service
/// that was never updated has none: bad input, said in one sentence.
async fn rollback(e: &EngineHandle, service: &str) -> ScriptResult<()> {
    let d = &e.docker;
    let svc = existing(d, service).await?;
    super::fence::check_service(e, &svc, &format!("rolling back {service}")).await?;
    // bollard's model has no PreviousSpec: the engine's refusal tells instead.
    match update(d, &svc, svc["Spec"].clone(), Some("previous")).await {
        Err(e) if e.to_string().contains("does not have a previous spec") => Err(usage_err(
            format!("service {service} has no previous spec to roll back to: it was never updated"),
        )),
        other => other,
    }
}

/// Bumps a service's `TaskTemplate.ForceUpdate`, which replaces every task by the service's
/// update policy even though nothing else changed. Returns the new counter.
async fn force_update(e: &EngineHandle, service: &str) -> ScriptResult<i64> {
    // Read as the engine stores it: through bollard's model the health check would be lost.
    let svc = super::raw::service(e, service).await?;
    super::fence::check_service(e, &svc, &format!("restarting {service}")).await?;
    let mut spec = super::raw::spec_for_bollard(&svc["Spec"]);
    let next = spec["TaskTemplate"]["ForceUpdate"].as_i64().unwrap_or(0) + 1;
    spec["TaskTemplate"]["ForceUpdate"] = next.into();
    update(&e.docker, &svc, spec, None).await?;
    Ok(next)
}

/// Where one service's update stands.
enum Progress {
    Waiting(String),
    Done(String),
    Failed(String),
}

/// Compares a service's tasks with its current spec: the update has reached the service when
/// as many up-to-date tasks as it wants run (or completed, for one-shot tasks), no task of an
/// older spec is meant to run, and no task told to stop still runs. `current` holds the ids of the tasks the engine calls up to
/// date (the Docker CLI's `_up-to-date` filter: same spec version as the service). A paused
/// update, or one the swarm rolled back on its own, is a failure with the swarm's message;
/// `asked_rollback`: the caller asked for the rollback (`e.rollback`), whose progress it is.
fn progress_of(
    svc: &Value,
    tasks: &[Value],
    current: &HashSet<String>,
    ready_nodes: usize,
    asked_rollback: bool,
) -> Progress {
    let name = str_at(svc, &["Spec", "Name"]);
    let status = &svc["UpdateStatus"];
    let state = str_at(status, &["State"]);
    let message = str_at(status, &["Message"]);
    match state {
        "paused" | "rollback_paused" => {
            return Progress::Failed(format!("service {name}: update {state}: {message}"))
        }
        // A rollback the caller asked for says "manually requested rollback" while it runs and
        // only "rollback completed" once done, like one the swarm started on its own.
        "rollback_started" | "rollback_completed"
            if !asked_rollback && !message.contains("manually requested") =>
        {
            return Progress::Failed(format!(
                "service {name}: the update failed and the swarm rolled it back: {message}"
            ))
        }
        _ => {}
    }
    let mode = &svc["Spec"]["Mode"];
    if mode.get("ReplicatedJob").is_some() || mode.get("GlobalJob").is_some() {
        return Progress::Done("job".into());
    }
    let desired = if mode.get("Global").is_some() {
        ready_nodes
    } else {
        mode["Replicated"]["Replicas"].as_u64().unwrap_or(1) as usize
    };
    let one_shot = matches!(
        str_at(svc, &["Spec", "TaskTemplate", "RestartPolicy", "Condition"]),
        "none" | "on-failure"
    );
    let (mut updated, mut old, mut stopping) = (0, 0, 0);
    for t in tasks {
        let task_state = str_at(t, &["Status", "State"]);
        let up_to_date = current.contains(str_at(t, &["ID"]));
        let wanted = str_at(t, &["DesiredState"]) == "running";
        if up_to_date && (wanted && task_state == "running" || one_shot && task_state == "complete")
        {
            updated += 1;
        } else if !up_to_date && wanted {
            old += 1;
        } else if !wanted && task_state == "running" {
            // Told to stop (scaled away, replaced), it counts until it has stopped.
            stopping += 1;
        }
    }
    let line = format!("{updated}/{desired} updated, {old} to replace, {stopping} stopping");
    if updated >= desired && old == 0 && stopping == 0 {
        Progress::Done(line)
    } else {
        Progress::Waiting(line)
    }
}

/// Waits until every named service's update has reached all its tasks, showing each
/// service's progress, failing with the swarm's message, giving up at the deadline.
async fn wait_updated(
    host: &Host,
    d: &Docker,
    services: &[String],
    timeout: Duration,
    asked_rollback: bool,
) -> ScriptResult<()> {
    let deadline = Instant::now() + timeout;
    let mut display = ProgressDisplay::new();
    loop {
        let nodes = list_nodes(d).await?;
        let ready = nodes
            .iter()
            .filter(|n| str_at(n, &["Status", "State"]) == "ready")
            .count();
        let mut pending = BTreeMap::new();
        for name in services {
            let svc = existing(d, name).await?;
            let service = |extra: &[(&str, &str)]| {
                let mut f: HashMap<String, Vec<String>> =
                    [("service".to_string(), vec![name.clone()])].into();
                for (k, v) in extra {
                    f.insert(k.to_string(), vec![v.to_string()]);
                }
                f
            };
            let (tasks, current) = tokio::try_join!(
                list_tasks(d, service(&[])),
                list_tasks(d, service(&[("_up-to-date", "true")]))
            )?;
            let current: HashSet<String> = current
                .iter()
                .map(|t| str_at(t, &["ID"]).to_string())
                .collect();
            match progress_of(&svc, &tasks, &current, ready, asked_rollback) {
                Progress::Done(line) => display.update(name, line),
                Progress::Waiting(line) => {
                    display.update(name, line.clone());
                    pending.insert(name.clone(), line);
                }
                Progress::Failed(why) => {
                    display.finish();
                    return Err(script_err(why));
                }
            }
        }
        if pending.is_empty() {
            display.finish();
            return Ok(());
        }
        if Instant::now() >= deadline {
            display.finish();
            let left: Vec<String> = pending.iter().map(|(n, l)| format!("{n} {l}")).collect();
            return Err(script_err(format!(
                "the update did not reach every task within {} s: {}",
                timeout.as_secs(),
                left.join("; ")
            )));
        }
        if host.is_interrupted() {
            display.finish();
            return Err(interrupted());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Registers the service methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.service(name: string) -> map").doc(
        "The service as `docker service inspect` shows it (without `PreviousSpec`), or () when \
         there is none.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, name: &str| -> ScriptResult<Dynamic> {
            match h.block(inspect(&e.docker, name))? {
                Some(v) => to_dynamic(&v),
                None => Ok(Dynamic::UNIT),
            }
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.rollback(service: string)").doc(
        "Puts the service back to its previous spec, as `docker service rollback` does; a usage \
         error when it has none.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, service: &str| -> ScriptResult<()> {
            h.block(rollback(e, service))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.force_update(service: string) -> int").doc(
        "Replaces every task of the service by its update policy, as `docker service update \
         --force` does; returns the new `TaskTemplate.ForceUpdate`.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, service: &str| -> ScriptResult<i64> {
            h.block(force_update(e, service))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.wait_updated(services: array, timeout_secs: int)").doc(
        "Waits, with progress, until each service runs its current spec on every task it wants; a \
         paused or automatically rolled-back update fails it.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, services: Array, timeout: i64| -> ScriptResult<()> {
            let names: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            h.block(wait_updated(&h, &e.docker, &names, secs(timeout), false))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.wait_rolled_back(services: array, timeout_secs: int)").doc(
        "`e.wait_updated` after `e.rollback`: the rollback asked for is the progress awaited, \
         not a failure, until each service runs its previous spec on every task it wants.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, services: Array, timeout: i64| -> ScriptResult<()> {
            let names: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            h.block(wait_updated(&h, &e.docker, &names, secs(timeout), true))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(replicas: u64, force: u64, status: Value) -> Value {
        json!({"ID": "s1", "Spec": {"Name": "st_web", "Mode": {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"ForceUpdate": force}}, "UpdateStatus": status})
    }

    fn task(id: &str, desired: &str, state: &str) -> Value {
        json!({"ID": id, "ServiceID": "s1", "DesiredState": desired, "Status": {"State": state}})
    }

    fn ids(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_update_is_done_when_every_wanted_task_runs_the_current_spec() {
        let svc = service(2, 1, Value::Null);
        let half = [
            task("new", "running", "running"),
            task("old", "running", "running"),
        ];
        let current = ids(&["new", "new2"]);
        assert!(matches!(
            progress_of(&svc, &half, &current, 1, false),
            Progress::Waiting(_)
        ));
        let done = [
            task("new", "running", "running"),
            task("new2", "running", "running"),
            task("old", "shutdown", "shutdown"),
        ];
        assert!(matches!(
            progress_of(&svc, &done, &current, 1, false),
            Progress::Done(_)
        ));
        let scaled_away = [
            task("new", "running", "running"),
            task("new2", "running", "running"),
            task("new3", "shutdown", "running"),
        ];
        let current = ids(&["new", "new2", "new3"]);
        assert!(matches!(
            progress_of(&svc, &scaled_away, &current, 1, false),
            Progress::Waiting(_)
        ));
    }

    #[test]
    fn a_paused_or_self_rolled_back_update_fails_with_the_swarms_message() {
        let paused = service(
            1,
            1,
            json!({"State": "paused", "Message": "update paused due to failure"}),
        );
        let Progress::Failed(why) = progress_of(&paused, &[], &ids(&[]), 1, false) else {
            panic!("a paused update must fail")
        };
        assert_eq!(
            why,
            "service st_web: update paused: update paused due to failure"
        );
        let auto = service(
            1,
            1,
            json!({"State": "rollback_completed", "Message": "rollback completed"}),
        );
        assert!(matches!(
            progress_of(&auto, &[], &ids(&[]), 1, false),
            Progress::Failed(_)
        ));
        let asked = service(
            1,
            1,
            json!({"State": "rollback_completed", "Message": "manually requested rollback"}),
        );
        let tasks = [task("t", "running", "running")];
        assert!(matches!(
            progress_of(&asked, &tasks, &ids(&["t"]), 1, false),
            Progress::Done(_)
        ));
        // The rollback the caller asked for, done: the engine no longer says it was asked.
        assert!(matches!(
            progress_of(&auto, &tasks, &ids(&["t"]), 1, true),
            Progress::Done(_)
        ));
    }
}
