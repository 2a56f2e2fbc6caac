//! Swarm membership on an engine handle (`docker::connect(…)`): init, join, leave, join tokens
//! and node removal — what `manage-swarm` needs beyond the stack primitives of `stack.rs`.

use std::future::Future;
use std::sync::Arc;

use bollard::models::{SwarmInitRequest, SwarmJoinRequest};
use bollard::query_parameters::{DeleteNodeOptions, LeaveSwarmOptions, ListNodesOptions};
use rhai::{Array, Dynamic, Engine, Map};

use super::{absent_on_404, failed, EngineHandle};
use crate::host::doc::Prim;
use crate::host::{to_dynamic, Host, ScriptResult};

/// Where a manager listens for the other nodes of its swarm: every address, the swarm port.
const LISTEN_ADDR: &str = "0.0.0.0:2377";

/// Runs one call on an engine; its error says what was being done, on which engine.
fn call_on<T>(
    h: &Host,
    e: &EngineHandle,
    what: &str,
    call: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> ScriptResult<T> {
    h.block(async {
        call.await
            .map_err(|err| failed(&format!("{what} on {}", e.host), err))
    })
}

/// Registers the swarm methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.swarm_init(advertise_addr: string) -> string").doc(
        "Makes this engine the first manager of a new swarm advertised on that address; returns \
         the node id.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, advertise_addr: &str| -> ScriptResult<String> {
            let req = SwarmInitRequest {
                listen_addr: Some(LISTEN_ADDR.into()),
                advertise_addr: Some(advertise_addr.to_string()),
                ..Default::default()
            };
            call_on(&h, e, "swarm init", e.docker.init_swarm(req))
        },
    );
    let h = host.clone();
    let prim = Prim::new("e.swarm_inspect() -> map").doc(
        "The swarm as its manager sees it (`ID`, `JoinTokens.Worker`, `JoinTokens.Manager`, …).",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle| -> ScriptResult<Dynamic> {
            to_dynamic(&call_on(&h, e, "swarm inspect", e.docker.inspect_swarm())?)
        },
    );
    // e.swarm_join(manager_addr, token, advertise_addr) — join the swarm managed at
    // `manager_addr` (host:2377) with a join token.
    let h = host.clone();
    let prim =
        Prim::new("e.swarm_join(manager_addr: string, token: string, advertise_addr: string)")
            .doc("Joins the swarm managed at `manager_addr` (host:2377) with a join token.");
    prim.register(
        engine,
        move |e: &mut EngineHandle,
              manager: &str,
              token: &str,
              advertise_addr: &str|
              -> ScriptResult<()> {
            let req = SwarmJoinRequest {
                listen_addr: Some(LISTEN_ADDR.into()),
                advertise_addr: Some(advertise_addr.to_string()),
                remote_addrs: Some(vec![manager.to_string()]),
                join_token: Some(token.to_string()),
                ..Default::default()
            };
            call_on(&h, e, "swarm join", e.docker.join_swarm(req))
        },
    );
    let h = host.clone();
    let prim = Prim::new("e.swarm_leave(force: bool)")
        .doc("Leaves the swarm (`force`: even as the last manager).");
    prim.register(
        engine,
        move |e: &mut EngineHandle, force: bool| -> ScriptResult<()> {
            let options = LeaveSwarmOptions { force };
            call_on(&h, e, "swarm leave", e.docker.leave_swarm(Some(options)))
        },
    );
    let h = host.clone();
    let prim = Prim::new("e.node_remove(id: string, force: bool) -> bool")
        .doc("Removes a node from the swarm; false when it was not there.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, id: &str, force: bool| -> ScriptResult<bool> {
            let removal = e.docker.delete_node(id, Some(DeleteNodeOptions { force }));
            let removed = call_on(&h, e, &format!("node rm {id}"), absent_on_404(removal))?;
            Ok(removed.is_some())
        },
    );
    let h = host.clone();
    let prim = Prim::new("e.swarm_state() -> map")
        .doc("This engine's place in a swarm: `#{local_state, node_id, node_addr, is_manager}`.");
    prim.register(engine, move |e: &mut EngineHandle| -> ScriptResult<Map> {
        let info = call_on(&h, e, "info", e.docker.info())?;
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
    });
    let h = host.clone();
    let prim = Prim::new("e.leadership() -> map").doc(
        "Who leads the swarm, as this engine sees it: `#{node_id, is_manager, is_leader, \
         leader_id, leader_hostname, leader_addr, managers: [#{id, hostname, addr, leader, \
         reachability}], error}`. A worker, or a manager without a quorum, is not the leader; \
         `error` then says why the managers could not be listed.",
    );
    prim.register(engine, move |e: &mut EngineHandle| -> ScriptResult<Map> {
        let info = call_on(&h, e, "info", e.docker.info())?;
        let sw = info.swarm.unwrap_or_default();
        let node_id = sw.node_id.unwrap_or_default();
        let is_manager = sw.control_available.unwrap_or(false);
        let mut m = Map::new();
        m.insert("node_id".into(), node_id.clone().into());
        m.insert("is_manager".into(), is_manager.into());
        let mut managers = Array::new();
        let (mut leader_id, mut leader_host, mut leader_addr) = Default::default();
        let mut error = String::new();
        if is_manager {
            match call_on(
                &h,
                e,
                "node ls",
                e.docker.list_nodes(None::<ListNodesOptions>),
            ) {
                Ok(nodes) => {
                    for n in nodes {
                        let Some(ms) = n.manager_status else { continue };
                        let id = n.id.unwrap_or_default();
                        let hostname = n.description.and_then(|d| d.hostname).unwrap_or_default();
                        let addr = ms.addr.unwrap_or_default();
                        let leader = ms.leader.unwrap_or(false);
                        if leader {
                            (leader_id, leader_host, leader_addr) =
                                (id.clone(), hostname.clone(), addr.clone());
                        }
                        let mut x = Map::new();
                        x.insert("id".into(), id.into());
                        x.insert("hostname".into(), hostname.into());
                        x.insert("addr".into(), addr.into());
                        x.insert("leader".into(), leader.into());
                        let reach = ms.reachability.map(|r| r.to_string()).unwrap_or_default();
                        x.insert("reachability".into(), reach.into());
                        managers.push(x.into());
                    }
                }
                Err(err) => error = err.to_string(),
            }
        } else {
            error = "this engine's node is not a swarm manager".into();
        }
        m.insert(
            "is_leader".into(),
            (!node_id.is_empty() && leader_id == node_id).into(),
        );
        m.insert("leader_id".into(), Dynamic::from(leader_id));
        m.insert("leader_hostname".into(), Dynamic::from(leader_host));
        m.insert("leader_addr".into(), Dynamic::from(leader_addr));
        m.insert("managers".into(), managers.into());
        m.insert("error".into(), error.into());
        Ok(m)
    });
}
