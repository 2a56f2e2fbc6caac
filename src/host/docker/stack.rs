//! Stacks on an engine handle: deploy a plan (`compose::plan`), wait until the stack converges,
//! scale a service, remove the stack — the way `docker stack deploy / rm` do, with the same
//! namespace label, so the Docker CLI and wsm see each other's stacks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{NetworkCreateRequest, ServiceSpec};
use bollard::query_parameters::{ListContainersOptions, UpdateServiceOptions};
use bollard::Docker;
use rhai::{Array, Dynamic, Engine, Map};
use serde::Deserialize;
use serde_json::Value;

use super::image::{registry_credentials, registry_of};
use super::{
    absent_on_404, docker_message, engine_error, failed, list_networks, list_nodes, list_services,
    list_tasks, stack_filter, str_at, EngineHandle,
};
use crate::host::opts::{opt_bool, opt_secs, secs};
use crate::host::progress::ProgressDisplay;
use crate::host::{interrupted, script_err, Host, ScriptResult};

/// What `e.deploy` creates, as `compose::plan` describes it.
#[derive(Deserialize)]
struct Plan {
    services: Vec<Named>,
    #[serde(default)]
    networks: Vec<Named>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// A service or network of a plan: its full name and its Engine API spec.
#[derive(Deserialize)]
struct Named {
    name: String,
    spec: Value,
}

/// The number of tasks a service wants: its replicas, or one per ready node when global.
fn desired_count(svc: &Value, ready_nodes: usize) -> usize {
    let mode = &svc["Spec"]["Mode"];
    if mode.get("Global").is_some() {
        ready_nodes
    } else {
        mode["Replicated"]["Replicas"].as_u64().unwrap_or(1) as usize
    }
}

/// Whether a service's tasks are one-shot: a completed task is then done, not missing.
fn is_one_shot(svc: &Value) -> bool {
    matches!(
        str_at(svc, &["Spec", "TaskTemplate", "RestartPolicy", "Condition"]),
        "none" | "on-failure"
    )
}

/// How far one service has got, for the progress display and the verdict.
struct ServiceState {
    running: usize,
    desired: usize,
    failure: Option<String>,
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
            .filter(|t| str_at(t, &["ServiceID"]) == id)
            .collect();
        let one_shot = is_one_shot(svc);
        let running = mine
            .iter()
            .filter(|t| {
                let state = str_at(t, &["Status", "State"]);
                str_at(t, &["DesiredState"]) == "running" && state == "running"
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
                running,
                desired: desired_count(svc, ready),
                failure,
            },
        );
    }
    Ok(out)
}

/// The ids of the stack's tasks now: their later failures are history, not news.
async fn task_ids(d: &Docker, stack: &str) -> ScriptResult<HashSet<String>> {
    Ok(list_tasks(d, stack_filter(stack))
        .await?
        .iter()
        .map(|t| str_at(t, &["ID"]).to_string())
        .collect())
}

/// Waits until every service of `stack` runs its desired tasks, failing with a task's error
/// when tasks keep being rejected or failing, and giving up at the deadline.
async fn converge(
    host: &Host,
    d: &Docker,
    stack: &str,
    known: &HashSet<String>,
    timeout: Duration,
) -> ScriptResult<()> {
    let deadline = Instant::now() + timeout;
    let mut display = ProgressDisplay::new();
    loop {
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
        let mut done = true;
        for (name, s) in &states {
            let state = if s.running == s.desired {
                "converged"
            } else {
                done = false;
                "waiting"
            };
            display.update(
                name,
                format!("{}/{} running ({state})", s.running, s.desired),
            );
            if let Some(f) = &s.failure {
                display.finish();
                return Err(script_err(f));
            }
        }
        if done {
            display.finish();
            return Ok(());
        }
        if Instant::now() >= deadline {
            display.finish();
            let pending: Vec<String> = states
                .iter()
                .filter(|(_, s)| s.running != s.desired)
                .map(|(n, s)| format!("{n} {}/{}", s.running, s.desired))
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
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// During a wait, an engine that does not answer (restarting, or its SSH link down for a while)
/// is waited for until the deadline, with the reason on the progress line; then it fails with
/// one line saying so.
async fn engine_gone(
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

/// Pins each service's image to the digest its registry holds now (`name:tag@sha256:…`), as
/// `docker stack deploy` does, so every node runs the same image and `update` notices a new
/// push. An image the registry cannot tell about keeps its tag (shown with `-v`).
async fn pin_image_digests(host: &Host, d: &Docker, services: &mut [Named]) {
    let images: BTreeSet<String> = services
        .iter()
        .filter_map(|s| {
            s.spec
                .pointer("/TaskTemplate/ContainerSpec/Image")
                .and_then(Value::as_str)
        })
        .filter(|i| !i.contains('@'))
        .map(str::to_string)
        .collect();
    let lookups = images.iter().map(|image| async move {
        let creds = registry_credentials(&registry_of(image));
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            d.inspect_registry_image(image, creds),
        )
        .await;
        let digest = match found {
            Ok(Ok(info)) => info.descriptor.digest,
            Ok(Err(e)) => {
                if host.opts.verbose {
                    host.warn(&format!(
                        "{image}: no digest from its registry ({}); deploying the tag",
                        docker_message(&e)
                    ));
                }
                None
            }
            Err(_) => None,
        };
        (image.clone(), digest)
    });
    let digests: HashMap<String, Option<String>> = futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .collect();
    for service in services {
        if let Some(Value::String(image)) = service
            .spec
            .pointer_mut("/TaskTemplate/ContainerSpec/Image")
        {
            if let Some(Some(digest)) = digests.get(image.as_str()) {
                *image = format!("{image}@{digest}");
            }
        }
    }
}

/// Creates the plan's missing networks and its services, updates the services that exist,
/// removes services the plan no longer has when `prune`. Returns the plan's service names.
async fn deploy(
    host: &Host,
    d: &Docker,
    stack: &str,
    plan: Plan,
    prune: bool,
) -> ScriptResult<Vec<String>> {
    let Plan {
        mut services,
        networks,
        warnings,
    } = plan;
    if host.opts.verbose {
        for w in warnings {
            host.warn(&w);
        }
    }
    let existing_nets = list_networks(d, stack_filter(stack)).await?;
    for net in networks {
        if existing_nets
            .iter()
            .any(|n| str_at(n, &["Name"]) == net.name)
        {
            continue;
        }
        host.say(&format!("Creating network {}", net.name));
        let req: NetworkCreateRequest = serde_json::from_value(net.spec).map_err(script_err)?;
        d.create_network(req).await.map_err(engine_error)?;
    }
    pin_image_digests(host, d, &mut services).await;
    let existing = list_services(d, stack_filter(stack)).await?;
    let mut names = Vec::new();
    for Named { name, spec } in services {
        let typed: ServiceSpec = serde_json::from_value(spec).map_err(script_err)?;
        match existing
            .iter()
            .find(|s| str_at(s, &["Spec", "Name"]) == name)
        {
            Some(svc) => {
                let id = str_at(svc, &["ID"]);
                host.say(&format!("Updating service {name} (id: {id})"));
                let version = svc["Version"]["Index"].as_i64().unwrap_or(0) as i32;
                d.update_service(
                    id,
                    typed,
                    UpdateServiceOptions {
                        version,
                        ..Default::default()
                    },
                    None,
                )
                .await
                .map_err(|e| failed(&format!("updating {name}"), e))?;
            }
            None => {
                host.say(&format!("Creating service {name}"));
                d.create_service(typed, None)
                    .await
                    .map_err(|e| failed(&format!("creating {name}"), e))?;
            }
        }
        names.push(name);
    }
    if prune {
        for svc in &existing {
            let name = str_at(svc, &["Spec", "Name"]);
            if !names.iter().any(|n| n == name) {
                host.say(&format!("Removing service {name}"));
                d.delete_service(str_at(svc, &["ID"]))
                    .await
                    .map_err(engine_error)?;
            }
        }
    }
    Ok(names)
}

/// Removes a stack's services, waits until their tasks are gone, then removes its networks.
async fn remove_stack(
    host: &Host,
    d: &Docker,
    stack: &str,
    timeout: Duration,
) -> ScriptResult<bool> {
    let deadline = Instant::now() + timeout;
    let services = list_services(d, stack_filter(stack)).await?;
    let networks = list_networks(d, stack_filter(stack)).await?;
    if services.is_empty() && networks.is_empty() {
        host.say(&format!("Nothing found in stack: {stack}"));
        return Ok(false);
    }
    for svc in &services {
        host.say(&format!(
            "Removing service {}",
            str_at(svc, &["Spec", "Name"])
        ));
        absent_on_404(d.delete_service(str_at(svc, &["ID"])))
            .await
            .map_err(engine_error)?;
    }
    let mut display = ProgressDisplay::new();
    loop {
        // Tasks leave the swarm's store first; their containers (which hold the volumes) go
        // a moment later. Wait for both, on this engine.
        let listed = async {
            let tasks = list_tasks(d, stack_filter(stack)).await?;
            let containers = d
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(stack_filter(stack)),
                    ..Default::default()
                }))
                .await
                .map_err(engine_error)?;
            Ok::<_, Box<rhai::EvalAltResult>>((tasks, containers))
        };
        let (tasks, containers) = match listed.await {
            Ok(both) => both,
            Err(e) => {
                if let Err(gone) = engine_gone(&mut display, stack, &e, deadline, timeout).await {
                    display.finish();
                    return Err(gone);
                }
                continue;
            }
        };
        display.update(
            stack,
            format!(
                "{} task(s), {} container(s) shutting down",
                tasks.len(),
                containers.len()
            ),
        );
        if tasks.is_empty() && containers.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            display.finish();
            return Err(script_err(format!(
                "{} task(s) and {} container(s) of stack {stack} were still shutting down after {} s",
                tasks.len(),
                containers.len(),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for net in &networks {
        let name = str_at(net, &["Name"]);
        host.say(&format!("Removing network {name}"));
        // The network frees only once the last container has left it.
        loop {
            match absent_on_404(d.remove_network(str_at(net, &["Id"]))).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    display.update(
                        stack,
                        format!("waiting for network {name}: {}", docker_message(&e)),
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    display.finish();
                    return Err(failed(&format!("removing network {name}"), e));
                }
            }
        }
    }
    display.finish();
    Ok(true)
}

/// Sets a service's replica count, making it a replicated service.
async fn scale(d: &Docker, service: &str, replicas: i64) -> ScriptResult<()> {
    let svc = d
        .inspect_service(service, None)
        .await
        .map_err(engine_error)?;
    let mut spec = svc.spec.ok_or_else(|| script_err("service without spec"))?;
    spec.mode = Some(bollard::models::ServiceSpecMode {
        replicated: Some(bollard::models::ServiceSpecModeReplicated {
            replicas: Some(replicas),
        }),
        ..Default::default()
    });
    let version = svc.version.and_then(|v| v.index).unwrap_or(0) as i32;
    d.update_service(
        service,
        spec,
        UpdateServiceOptions {
            version,
            ..Default::default()
        },
        None,
    )
    .await
    .map_err(engine_error)?;
    Ok(())
}

/// Registers the stack methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    // e.deploy(stack, plan, opts) — create/update the stack's networks and services from a
    // `compose::plan`; opts: prune (true), wait (true), timeout (seconds, 300). Returns the
    // service names.
    let h = host.clone();
    engine.register_fn(
        "deploy",
        move |e: &mut EngineHandle, stack: &str, plan: Dynamic, opts: Map| -> ScriptResult<Array> {
            let plan: Plan = rhai::serde::from_dynamic(&plan)
                .map_err(|err| {
                    script_err(format!(
                        "deploy: the plan must be a map as compose::plan(doc, stack) returns it ({err})"
                    ))
                })?;
            let prune = opt_bool(&opts, "prune", true);
            let wait = opt_bool(&opts, "wait", true);
            let timeout = opt_secs(&opts, "timeout", 300);
            let d = &e.docker;
            let names = h.block(async {
                let known = task_ids(d, stack).await?;
                let names = deploy(&h, d, stack, plan, prune).await?;
                if wait {
                    converge(&h, d, stack, &known, timeout).await?;
                }
                Ok(names)
            })?;
            Ok(names.into_iter().map(Dynamic::from).collect())
        },
    );

    // e.wait_converged(stack, timeout_secs) — wait until every service runs its desired tasks.
    let h = host.clone();
    engine.register_fn(
        "wait_converged",
        move |e: &mut EngineHandle, stack: &str, timeout: i64| -> ScriptResult<()> {
            let d = &e.docker;
            h.block(async {
                let known = task_ids(d, stack).await?;
                converge(&h, d, stack, &known, secs(timeout)).await
            })
        },
    );

    // e.scale(service, replicas) — set a replicated service's replica count.
    let h = host.clone();
    engine.register_fn(
        "scale",
        move |e: &mut EngineHandle, service: &str, replicas: i64| -> ScriptResult<()> {
            h.block(scale(&e.docker, service, replicas))
        },
    );

    // e.remove_stack(stack, timeout_secs) — remove services, wait for their tasks, remove
    // networks. Returns false when the stack had nothing.
    let h = host.clone();
    engine.register_fn(
        "remove_stack",
        move |e: &mut EngineHandle, stack: &str, timeout: i64| -> ScriptResult<bool> {
            h.block(remove_stack(&h, &e.docker, stack, secs(timeout)))
        },
    );
}
