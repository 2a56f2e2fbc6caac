//! Swarm nodes as `docker node` changes them (`swarm node …`, scripts/manage-swarm/node.rhai):
//! one node read by id, hostname or id prefix, and its spec changed (availability, role,
//! labels) at the version it was read at, read again and retried when another writer came
//! between. Listing is `e.nodes()` (mod.rs); removal `e.node_remove` (swarm.rs).

use std::sync::Arc;

use bollard::models::{Node, NodeSpec};
use bollard::query_parameters::UpdateNodeOptions;
use rhai::{Dynamic, Engine, Map};

use super::{absent_on_404, failed, status_of, EngineHandle};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::{to_dynamic, usage_err, Host, ScriptResult};

const NODE_UPDATE_OPTS: &[Opt] = &[
    ("availability", "\"\" (unchanged): active, pause or drain"),
    ("role", "\"\" (unchanged): worker or manager"),
    ("labels_add", "#{}: labels set on the node, key to value"),
    ("labels_rm", "[]: label keys removed from the node"),
];

/// How many times an update is read again and retried when the node changed meanwhile.
const TRIES: usize = 5;

/// The node named `id` (an id, a hostname or an id prefix, as the engine resolves it), or None.
async fn inspect(e: &EngineHandle, id: &str) -> ScriptResult<Option<Node>> {
    absent_on_404(e.docker.inspect_node(id))
        .await
        .map_err(|err| failed(&format!("node inspect {id} on {}", e.host), err))
}

/// A string option of `opts`, "" when absent; a usage error when it is not one of `allowed`.
fn choice(opts: &Map, key: &str, allowed: &[&str]) -> ScriptResult<String> {
    let v = opts.get(key).map(|v| v.to_string()).unwrap_or_default();
    if v.is_empty() || allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(usage_err(format!(
            "e.node_update: {key} {v:?} is not one of {}",
            allowed.join(", ")
        )))
    }
}

/// The spec `node` gets from `opts` (see NODE_UPDATE_OPTS).
fn changed(node: &Node, opts: &Map) -> ScriptResult<NodeSpec> {
    let mut spec = serde_json::to_value(node.spec.clone().unwrap_or_default())
        .map_err(crate::host::script_err)?;
    let availability = choice(opts, "availability", &["active", "pause", "drain"])?;
    if !availability.is_empty() {
        spec["Availability"] = availability.into();
    }
    let role = choice(opts, "role", &["worker", "manager"])?;
    if !role.is_empty() {
        spec["Role"] = role.into();
    }
    if !spec["Labels"].is_object() {
        spec["Labels"] = serde_json::json!({});
    }
    if let Some(add) = opts.get("labels_add") {
        let add = add.clone().try_cast::<Map>().ok_or_else(|| {
            usage_err("e.node_update: labels_add is a map of label keys to values")
        })?;
        for (k, v) in add {
            spec["Labels"][k.as_str()] = v.to_string().into();
        }
    }
    if let Some(rm) = opts.get("labels_rm") {
        let rm = rm
            .clone()
            .try_cast::<rhai::Array>()
            .ok_or_else(|| usage_err("e.node_update: labels_rm is an array of label keys"))?;
        if let Some(labels) = spec["Labels"].as_object_mut() {
            for k in rm {
                labels.remove(&k.to_string());
            }
        }
    }
    serde_json::from_value(spec).map_err(crate::host::script_err)
}

/// Registers the node methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.node_inspect(id: string) -> map").doc(
        "One swarm node as `docker node inspect` shows it (`ID`, `Version`, `Spec`, \
         `Description`, `Status`, `ManagerStatus`), named by its id, hostname or an unambiguous \
         id prefix; () when there is none. Fails on an engine that is not a manager.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, id: &str| -> ScriptResult<Dynamic> {
            match h.block(inspect(e, id))? {
                Some(node) => to_dynamic(&node),
                None => Ok(Dynamic::UNIT),
            }
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.node_update(id: string, opts: map) -> map")
        .doc(
            "Changes a swarm node's spec as `docker node update` does: its availability, role \
             and labels, at the version it was read at (read again and retried when another \
             writer came between). Returns the node as it is after. A usage error for a node \
             that does not exist or a value not listed below.",
        )
        .opts(NODE_UPDATE_OPTS);
    prim.register(
        engine,
        move |e: &mut EngineHandle, id: &str, opts: Map| -> ScriptResult<Dynamic> {
            check_opts("e.node_update", &opts, NODE_UPDATE_OPTS)?;
            h.block(async {
                for attempt in 1..=TRIES {
                    let Some(node) = inspect(e, id).await? else {
                        return Err(usage_err(format!("no such node: {id}")));
                    };
                    let spec = changed(&node, &opts)?;
                    let version = node.version.and_then(|v| v.index).unwrap_or(0) as i64;
                    let node_id = node.id.unwrap_or_default();
                    let update = e
                        .docker
                        .update_node(&node_id, spec, UpdateNodeOptions { version })
                        .await;
                    match update {
                        Ok(()) => {
                            let after = inspect(e, &node_id).await?;
                            return to_dynamic(&after);
                        }
                        // "update out of sequence": the node changed since it was read.
                        Err(err) if attempt < TRIES && status_of(&err) == Some(500) => {
                            let text = super::docker_message(&err);
                            if !text.contains("out of sequence") {
                                return Err(failed(&format!("node update {id}"), err));
                            }
                        }
                        Err(err) => return Err(failed(&format!("node update {id}"), err)),
                    }
                }
                unreachable!("the last try returns")
            })
        },
    );
}
