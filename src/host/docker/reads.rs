//! Several listings read at once: across a WAN each request a script makes in turn is a round
//! trip, so what a view needs together is asked together. `e.stack_state` is a stack's whole
//! picture; `e.lists` any few listings, each with the filters its single lister takes.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::{try_join_all, BoxFuture, FutureExt};
use rhai::{Dynamic, Engine, Map};
use serde_json::Value;

use super::objects::{self, Kind};
use super::{
    engine_error, filters, list_networks, list_nodes, list_services, list_tasks, list_volumes,
    stack_filter, to_array, EngineHandle,
};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::{to_dynamic, usage_err, Host, ScriptResult};

/// A stack's services, tasks, nodes and volumes, and the engine's info when `with_info`, fetched
/// at once.
async fn stack_state(e: &EngineHandle, stack: &str, with_info: bool) -> ScriptResult<Map> {
    let d = &e.docker;
    let (services, tasks, nodes, volumes, info) = tokio::try_join!(
        list_services(d, stack_filter(stack)),
        list_tasks(d, stack_filter(stack)),
        list_nodes(d),
        list_volumes(
            d,
            HashMap::from([("name".to_string(), vec![format!("{stack}_")])])
        ),
        async {
            if with_info {
                d.info().await.map(Some).map_err(engine_error)
            } else {
                Ok(None)
            }
        },
    )?;
    let mut m = Map::new();
    m.insert("services".into(), to_array(services)?.into());
    m.insert("tasks".into(), to_array(tasks)?.into());
    m.insert("nodes".into(), to_array(nodes)?.into());
    m.insert("volumes".into(), to_array(volumes)?.into());
    let info = match info {
        Some(info) => to_dynamic(&info)?,
        None => Dynamic::UNIT,
    };
    m.insert("info".into(), info);
    Ok(m)
}

/// `e.stack_state`'s options.
const STACK_STATE_OPTS: &[Opt] = &[(
    "info",
    "true; false leaves `info` `()`: it is the dearest request, the engine runs programs to \
     answer it",
)];

/// What `e.lists` can read, each as its single lister does.
const LISTS: &[&str] = &[
    "services", "tasks", "nodes", "volumes", "networks", "secrets", "configs",
];

/// The listings `what` names (`#{services: filters, tasks: filters, …}`), sent together.
async fn lists(e: &EngineHandle, what: &Map) -> ScriptResult<Map> {
    let d = &e.docker;
    let mut reads: Vec<BoxFuture<'_, ScriptResult<Vec<Value>>>> = Vec::new();
    let mut names = Vec::new();
    for (name, f) in what {
        let f = match f.clone().try_cast::<Map>() {
            Some(m) => filters(&m),
            None if f.is_unit() => HashMap::new(),
            None => {
                return Err(usage_err(format!(
                    "e.lists: the value of {name} is a map of filters (#{{}} for none), not {}",
                    f.type_name()
                )))
            }
        };
        reads.push(match name.as_str() {
            "services" => list_services(d, f).boxed(),
            "tasks" => list_tasks(d, f).boxed(),
            "nodes" if f.is_empty() => list_nodes(d).boxed(),
            "nodes" => {
                return Err(usage_err(
                    "e.lists: nodes takes no filters (#{}), as e.nodes()",
                ))
            }
            "volumes" => list_volumes(d, f).boxed(),
            "networks" => list_networks(d, f).boxed(),
            // Names, labels and dates: the engine never gives a secret's value.
            "secrets" => objects::list(d, Kind::Secret, f).boxed(),
            "configs" => objects::list(d, Kind::Config, f).boxed(),
            other => {
                return Err(usage_err(format!(
                    "e.lists: cannot list {other:?}; one of {}",
                    LISTS.join(", ")
                )))
            }
        });
        names.push(name.clone());
    }
    let mut m = Map::new();
    for (name, values) in names.into_iter().zip(try_join_all(reads).await?) {
        m.insert(name, to_array(values)?.into());
    }
    Ok(m)
}

pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.stack_state(stack: string) -> map").doc(
        "A stack's `services`, `tasks`, `nodes`, `volumes` (named `<stack>_…`) and the engine's \
         `info`, fetched at once.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<Map> {
            h.block(stack_state(e, stack, true))
        },
    );
    let h = host.clone();
    let prim = Prim::new("e.stack_state(stack: string, opts: map) -> map").opts(STACK_STATE_OPTS);
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str, opts: Map| -> ScriptResult<Map> {
            check_opts("e.stack_state", &opts, STACK_STATE_OPTS)?;
            let info = crate::host::opts::opt_bool(&opts, "info", true);
            h.block(stack_state(e, stack, info))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.lists(what: map) -> map").doc(
        "Several listings sent together, one round trip instead of one each: `what` maps \
         `services`, `tasks`, `volumes`, `networks`, `secrets` or `configs` to the filters \
         `e.services(filters)` and its kin take (`#{}` for none; a secret's value is never \
         listed), and `nodes` to `#{}`; the answer maps each to its array. \
         `e.lists(#{services: #{label: l}, tasks: #{label: l}})`.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, what: Map| -> ScriptResult<Map> { h.block(lists(e, &what)) },
    );
}
