//! Stacks on an engine handle: `e.deploy` (a plan applied by `apply`, then the wait until the
//! stack converges, recorded by `rollback`), scale a service, remove the stack — the way `docker stack deploy / rm` do, with the same
//! namespace label, so the Docker CLI and wsm see each other's stacks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;

use super::apply::{deploy, DeployOptions, Plan};
use super::converge::{converge, converge_reporting, engine_gone, Baseline, Goal};
use super::fence;
use super::objects::{self, Kind};
use super::rollback::{deploy_recorded, Safety};
use super::{
    absent_on_404, docker_message, engine_error, failed, list_networks, list_services, list_tasks,
    stack_filter, str_at, EngineHandle,
};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::{opt_bool, opt_secs, opt_str, secs};
use crate::host::progress::ProgressDisplay;
use crate::host::{script_err, usage_err, Host, ScriptResult};

/// The label on a swarm task's container naming its task.
const TASK_ID_LABEL: &str = "com.docker.swarm.task.id";

/// Whether a task of a removed service still holds up `rm`: the engine is still to stop or
/// remove it. A task that ended on its own (a completed job's, which the engine keeps in its
/// store after its service is gone) and is not marked for removal is finished with.
fn still_going(task: &Value) -> bool {
    let ended = matches!(
        str_at(task, &["Status", "State"]),
        "complete" | "shutdown" | "failed" | "rejected" | "orphaned" | "remove"
    );
    !ended || str_at(task, &["DesiredState"]) == "remove"
}

/// Removes a stack's services, waits until their tasks are gone (or ended on their own),
/// removes the containers such tasks leave behind, then removes its networks. Networks,
/// secrets and configs whose id is in `keep` stay (a failed first deploy removes only what it
/// made: `leftovers`).
pub(super) async fn remove_stack(
    host: &Host,
    d: &Docker,
    stack: &str,
    timeout: Duration,
    keep: &HashSet<String>,
) -> ScriptResult<bool> {
    let deadline = Instant::now() + timeout;
    let services = list_services(d, stack_filter(stack)).await?;
    let mut networks = list_networks(d, stack_filter(stack)).await?;
    networks.retain(|n| !keep.contains(str_at(n, &["Id"])));
    if services.is_empty() && networks.is_empty() && !objects::any(d, stack).await? {
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
    // As `docker stack rm`: the secrets and configs once no service refers to them.
    objects::remove_all(host, d, stack, Kind::Secret, keep).await?;
    objects::remove_all(host, d, stack, Kind::Config, keep).await?;
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
        let tasks: Vec<&Value> = tasks.iter().filter(|t| still_going(t)).collect();
        let going: HashSet<&str> = tasks.iter().map(|t| str_at(t, &["ID"])).collect();
        let mut left = 0;
        for c in &containers {
            let task = c
                .labels
                .as_ref()
                .and_then(|l| l.get(TASK_ID_LABEL))
                .map_or("", String::as_str);
            let stopped = matches!(
                c.state,
                Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD)
            );
            // Left behind by a task the engine has finished with (a completed job's): the
            // engine never removes it, and it would hold its volumes and network.
            if stopped && !going.contains(task) {
                let removed = absent_on_404(d.remove_container(
                    c.id.as_deref().unwrap_or_default(),
                    None::<RemoveContainerOptions>,
                ))
                .await;
                if removed.is_ok() {
                    continue;
                }
            }
            left += 1;
        }
        display.update(
            stack,
            format!("{} task(s), {left} container(s) shutting down", tasks.len()),
        );
        if tasks.is_empty() && left == 0 {
            break;
        }
        if Instant::now() >= deadline {
            display.finish();
            return Err(script_err(format!(
                "{} task(s) and {left} container(s) of stack {stack} were still shutting down after {} s",
                tasks.len(),
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
async fn scale(e: &EngineHandle, service: &str, replicas: i64) -> ScriptResult<()> {
    super::hold::edit_spec(e, service, &format!("scaling {service}"), |spec| {
        spec["Mode"] = serde_json::json!({"Replicated": {"Replicas": replicas}});
        Ok(())
    })
    .await
}

/// `e.deploy`'s options (`e.deploy_begin`'s too).
pub(super) const DEPLOY_OPTS: &[Opt] = &[
    ("prune", "true: removes the services the plan no longer has"),
    (
        "wait",
        "true: waits until the services run and jobs complete",
    ),
    ("timeout", "seconds, 300: how long it waits"),
    (
        "resolve_image",
        "\"always\", \"changed\" or \"never\": when to ask the registry for an image's digest",
    ),
    (
        "with_registry_auth",
        "false: sends the credentials `docker login` stored to the nodes",
    ),
    (
        "record",
        "false; true: keeps the stack's revisions (`e.stack_history`), as the stack commands do",
    ),
    (
        "rollback",
        "true: a recorded deploy that fails to converge returns the stack to its previous revision",
    ),
    (
        "operation",
        "\"deploy\": the command, as the stack's history records it",
    ),
];

/// A deploy as `e.deploy`'s arguments ask for it, checked: what the engine would refuse
/// half-way, and bad input in the order, are refused before anything is made.
pub(super) struct DeployJob {
    plan: Plan,
    options: DeployOptions,
    pub(super) safety: Safety,
    record: bool,
}

impl DeployJob {
    /// Reads and checks `plan` and `opts` (`DEPLOY_OPTS`) for primitive `prim`.
    pub(super) fn read(
        h: &Host,
        e: &EngineHandle,
        stack: &str,
        plan: Dynamic,
        opts: &Map,
        prim: &str,
    ) -> ScriptResult<Self> {
        let plan: Plan = rhai::serde::from_dynamic(&plan).map_err(|err| {
            script_err(format!(
                "deploy: the plan must be a map as compose::plan(doc, stack) returns it ({err})"
            ))
        })?;
        check_opts(prim, opts, DEPLOY_OPTS)?;
        let resolve_image = opt_str(opts, "resolve_image", "always");
        if !matches!(resolve_image.as_str(), "always" | "changed" | "never") {
            return Err(usage_err(format!(
                "resolve_image must be always, changed or never, not {resolve_image:?}"
            )));
        }
        let safety = Safety {
            operation: opt_str(opts, "operation", "deploy"),
            wait: opt_bool(opts, "wait", true),
            timeout: opt_secs(opts, "timeout", 300),
            rollback: opt_bool(opts, "rollback", true),
            reporter: None,
        };
        let options = DeployOptions {
            prune: opt_bool(opts, "prune", true),
            prune_versions: true,
            resolve_image,
            with_registry_auth: opt_bool(opts, "with_registry_auth", false),
            order_timeout: safety.timeout,
        };
        let d = &e.docker;
        // What the engine would refuse half-way is refused before anything is made.
        h.block(super::precheck::check(d, stack, &plan))?;
        // Bad input in the order changes nothing: refused before the deploy begins.
        h.block(super::order::check(d, &plan.services, &plan.depends))?;
        Ok(DeployJob {
            plan,
            options,
            safety,
            record: opt_bool(opts, "record", false),
        })
    }

    /// Deploys, waits unless told not to, and records when asked: returns the service names.
    pub(super) async fn run(
        self,
        h: &Host,
        e: &EngineHandle,
        stack: &str,
    ) -> ScriptResult<Vec<String>> {
        let DeployJob {
            plan,
            options,
            safety,
            record,
        } = self;
        if record {
            return deploy_recorded(h, e, stack, plan, options, &safety).await;
        }
        let d = &e.docker;
        fence::check(e, stack, "deploying").await?;
        let baseline = Baseline::read(d, stack).await?;
        let names = deploy(h, d, stack, plan, &options).await?;
        if safety.wait {
            let report = safety.reporter.as_ref();
            converge_reporting(h, e, stack, &baseline, Goal::Deploy, safety.timeout, report)
                .await?;
        }
        Ok(names)
    }
}

/// Registers the stack methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.deploy(stack: string, plan: map, opts: map) -> array")
        .opts(DEPLOY_OPTS)
        .doc(
            "Creates or updates a stack's networks, secrets, configs and services from a \
             `compose::plan`, as `docker stack deploy` does. Unless `wait` is false it waits \
             until the engine says it is done, as `docker stack deploy --detach=false`: the \
             tasks of each service's current spec run (jobs: have completed), an update has \
             completed, and every task the deploy started has stayed running for the \
             service's monitor window (`update_config.monitor`, 5 s); an unchanged stack waits \
             for nothing. A new task that fails, an update the engine pauses or rolls back, or \
             the deadline fails it at once, naming the service and the task's error. Returns \
             the service names.",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str, plan: Dynamic, opts: Map| -> ScriptResult<Array> {
            let job = DeployJob::read(&h, e, stack, plan, &opts, "e.deploy")?;
            let names = h.block(job.run(&h, e, stack))?;
            Ok(names.into_iter().map(Dynamic::from).collect())
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.wait_converged(stack: string, timeout_secs: int)").doc(
        "Waits, with progress, until every service of the stack runs its desired tasks of its \
         current spec, as `e.deploy` waits (tasks started after the call watched for the monitor \
         window); fails when a new task fails or an update is paused, and at the deadline naming \
         what it waited for.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str, timeout: i64| -> ScriptResult<()> {
            let d = &e.docker;
            h.block(async {
                let baseline = Baseline::read(d, stack).await?;
                converge(&h, e, stack, &baseline, Goal::Deploy, secs(timeout)).await
            })
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.scale(service: string, replicas: int)")
        .doc("Sets a replicated service's replica count (no wait). Fails for a global service.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, service: &str, replicas: i64| -> ScriptResult<()> {
            h.block(scale(e, service, replicas))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.remove_stack(stack: string, timeout_secs: int) -> bool").doc(
        "Removes a stack's services, secrets and configs (not external ones), waits until its \
         tasks are gone (a task that ended on its own, a completed job's, is not waited for, and \
         its exited container is removed), then removes its networks, as `docker stack rm` \
         does. Returns false when the stack had nothing.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str, timeout: i64| -> ScriptResult<bool> {
            h.block(async {
                fence::check(e, stack, "removing the stack").await?;
                remove_stack(&h, &e.docker, stack, secs(timeout), &HashSet::new()).await
            })
        },
    );
}

/// Adds `cleanup::scale` to the `cleanup::` module.
pub(super) fn register_cleanup(m: &mut rhai::Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new(
        "cleanup::scale(engine: Engine, service: string, replicas: int, what: string) -> int",
    )
    .doc(
        "Registers an undo action: set the service's replica count back to `replicas` when the \
         command ends by error, Ctrl-C or SIGTERM, unless run or cancelled first (`cleanup::run` \
         on the normal path). Register it before scaling down. Returns its id.",
    );
    prim.set_in(
        m,
        move |e: EngineHandle, service: &str, replicas: i64, what: &str| -> ScriptResult<i64> {
            let service = service.to_string();
            let action = crate::host::cleanup::Action::new(move || async move {
                scale(&e, &service, replicas)
                    .await
                    .map_err(|err| err.to_string())
            });
            Ok(h.cleanups.add(what, action))
        },
    );
}
