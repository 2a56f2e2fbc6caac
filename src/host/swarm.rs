//! Swarm membership on an engine handle (`docker::connect(…)`): init, join, leave, join tokens
//! and node removal — what `manage-swarm` needs beyond the stack primitives of `docker.rs`.

use std::sync::Arc;

use bollard::models::{SwarmInitRequest, SwarmJoinRequest};
use bollard::query_parameters::{DeleteNodeOptions, LeaveSwarmOptions};
use rhai::{Dynamic, Engine, Map};

use super::docker::EngineHandle;
use super::{script_err, to_dynamic, Host, ScriptResult};

/// The engine's own message for an API error, prefixed with what was being done.
fn failed(what: &str, host: &str, e: bollard::errors::Error) -> Box<rhai::EvalAltResult> {
    let msg = match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    };
    script_err(format!("{what} on {host}: {}", msg.trim()))
}

/// Registers the swarm methods of the `Engine` type.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    // e.swarm_init(advertise_addr) — make this engine the first manager of a new swarm,
    // advertised on that address; returns the node id.
    let h = host.clone();
    engine.register_fn(
        "swarm_init",
        move |e: &mut EngineHandle, advertise_addr: &str| -> ScriptResult<String> {
            let req = SwarmInitRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(advertise_addr.to_string()),
                ..Default::default()
            };
            h.block(async {
                e.docker
                    .init_swarm(req)
                    .await
                    .map_err(|err| failed("swarm init", &e.host, err))
            })
        },
    );
    // e.swarm_inspect() — the swarm as its manager sees it (ID, JoinTokens.Worker/Manager, …).
    let h = host.clone();
    engine.register_fn(
        "swarm_inspect",
        move |e: &mut EngineHandle| -> ScriptResult<Dynamic> {
            let swarm = h.block(async {
                e.docker
                    .inspect_swarm()
                    .await
                    .map_err(|err| failed("swarm inspect", &e.host, err))
            })?;
            to_dynamic(&swarm)
        },
    );
    // e.swarm_join(manager_addr, token, advertise_addr) — join the swarm managed at
    // `manager_addr` (host:2377) with a join token.
    let h = host.clone();
    engine.register_fn(
        "swarm_join",
        move |e: &mut EngineHandle,
              manager: &str,
              token: &str,
              advertise_addr: &str|
              -> ScriptResult<()> {
            let req = SwarmJoinRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(advertise_addr.to_string()),
                remote_addrs: Some(vec![manager.to_string()]),
                join_token: Some(token.to_string()),
                ..Default::default()
            };
            h.block(async {
                e.docker
                    .join_swarm(req)
                    .await
                    .map_err(|err| failed("swarm join", &e.host, err))
            })
        },
    );
    // e.swarm_leave(force) — leave the swarm (force: even as the last manager).
    let h = host.clone();
    engine.register_fn(
        "swarm_leave",
        move |e: &mut EngineHandle, force: bool| -> ScriptResult<()> {
            h.block(async {
                e.docker
                    .leave_swarm(Some(LeaveSwarmOptions { force }))
                    .await
                    .map_err(|err| failed("swarm leave", &e.host, err))
            })
        },
    );
    // e.node_remove(id, force) — remove a node from the swarm; false when it was not there.
    let h = host.clone();
    engine.register_fn(
        "node_remove",
        move |e: &mut EngineHandle, id: &str, force: bool| -> ScriptResult<bool> {
            h.block(async {
                match e
                    .docker
                    .delete_node(id, Some(DeleteNodeOptions { force }))
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(false),
                    Err(err) => Err(failed(&format!("node rm {id}"), &e.host, err)),
                }
            })
        },
    );
    // e.swarm_state() — #{local_state, node_id, node_addr, is_manager} of this engine.
    let h = host.clone();
    engine.register_fn(
        "swarm_state",
        move |e: &mut EngineHandle| -> ScriptResult<Map> {
            let info = h.block(async {
                e.docker
                    .info()
                    .await
                    .map_err(|err| failed("info", &e.host, err))
            })?;
            let sw = info.swarm.unwrap_or_default();
            let mut m = Map::new();
            m.insert(
                "local_state".into(),
                sw.local_node_state
                    .map(|s| s.to_string())
                    .unwrap_or_default()
                    .into(),
            );
            m.insert("node_id".into(), sw.node_id.unwrap_or_default().into());
            m.insert("node_addr".into(), sw.node_addr.unwrap_or_default().into());
            m.insert(
                "is_manager".into(),
                sw.control_available.unwrap_or(false).into(),
            );
            Ok(m)
        },
    );
}
