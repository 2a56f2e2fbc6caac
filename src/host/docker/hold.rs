//! Holding a service at 0 replicas so that its record survives wsm: `e.hold` scales a
//! replicated service to 0 and writes the replica count it had, and why, as labels on the
//! service itself (one update), `e.release` scales it back to that count and removes them.
//!
//! A volume backup or restore stops a stack's writers this way. Were wsm killed meanwhile
//! (SIGKILL, a job's timeout, the machine gone), nothing on this machine would remember the
//! count; the swarm does. The next command that takes the stack's lock releases what is still
//! held (`e.held`, called by `st::lock`): while a command holds the lock no other can take it,
//! so a hold found by the next holder belongs to a command that is over.

use std::sync::Arc;

use bollard::models::ServiceSpec;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;

use super::{engine_error, fence, list_services, stack_filter, str_at, EngineHandle};
use crate::host::doc::Prim;
use crate::host::{script_err, Host, ScriptResult};

/// The label holding the replica count a held service had.
const HELD: &str = "wsm.held.replicas";
/// The label saying which command holds it.
const HELD_BY: &str = "wsm.held.by";

/// Reads `service` as the engine stores it, lets `edit` change its spec (as stored, with its
/// labels), and writes it back at the version read, fenced by the stack's lock. The spec goes
/// through bollard's model with the health check's spelling kept (`raw::spec_for_bollard`).
pub(super) async fn edit_spec(
    e: &EngineHandle,
    service: &str,
    what: &str,
    edit: impl FnOnce(&mut Value) -> ScriptResult<()>,
) -> ScriptResult<()> {
    let svc = super::raw::service(e, service).await?;
    fence::check_service(e, &svc, what).await?;
    let mut spec = super::raw::spec_for_bollard(&svc["Spec"]);
    edit(&mut spec)?;
    let spec: ServiceSpec = serde_json::from_value(spec).map_err(script_err)?;
    super::update_service_at(&e.docker, &svc, spec, None, None)
        .await
        .map_err(engine_error)
}

/// The replica count recorded on a held service's spec, if it is held.
fn held_replicas(spec: &Value) -> Option<i64> {
    spec["Labels"][HELD].as_str()?.parse().ok()
}

async fn hold(e: &EngineHandle, service: &str, by: &str) -> ScriptResult<i64> {
    let mut had = 0;
    edit_spec(e, service, &format!("stopping {service}"), |spec| {
        let Some(replicas) = held_replicas(spec).or_else(|| {
            spec.pointer("/Mode/Replicated")
                .map(|r| r["Replicas"].as_i64().unwrap_or(1))
        }) else {
            return Err(script_err(format!(
                "{service} is a global service: only a replicated one can be stopped and \
                 started again"
            )));
        };
        had = replicas;
        spec["Mode"] = serde_json::json!({"Replicated": {"Replicas": 0}});
        let labels = &mut spec["Labels"];
        if !labels.is_object() {
            *labels = serde_json::json!({});
        }
        labels[HELD] = replicas.to_string().into();
        labels[HELD_BY] = by.into();
        Ok(())
    })
    .await?;
    Ok(had)
}

async fn release(e: &EngineHandle, service: &str) -> ScriptResult<bool> {
    let mut released = false;
    edit_spec(e, service, &format!("starting {service} again"), |spec| {
        let Some(replicas) = held_replicas(spec) else {
            return Ok(());
        };
        spec["Mode"] = serde_json::json!({"Replicated": {"Replicas": replicas}});
        if let Some(labels) = spec["Labels"].as_object_mut() {
            labels.remove(HELD);
            labels.remove(HELD_BY);
        }
        released = true;
        Ok(())
    })
    .await?;
    Ok(released)
}

async fn held(e: &EngineHandle, stack: &str) -> ScriptResult<Array> {
    let mut filters = stack_filter(stack);
    filters.entry("label".into()).or_default().push(HELD.into());
    let mut out = Array::new();
    for svc in list_services(&e.docker, filters).await? {
        let Some(replicas) = held_replicas(&svc["Spec"]) else {
            continue;
        };
        let mut m = Map::new();
        m.insert("service".into(), str_at(&svc, &["Spec", "Name"]).into());
        m.insert("replicas".into(), Dynamic::from(replicas));
        m.insert(
            "by".into(),
            svc["Spec"]["Labels"][HELD_BY].as_str().unwrap_or("").into(),
        );
        out.push(m.into());
    }
    Ok(out)
}

pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.hold(service: string, by: string) -> int").doc(
        "Stops a replicated service by scaling it to 0, recording on the service itself (labels \
         `wsm.held.replicas`, `wsm.held.by`) the replica count it had and `by`, the command \
         holding it; returns that count. Holding a held service keeps its first count. No wait.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, service: &str, by: &str| -> ScriptResult<i64> {
            h.block(hold(e, service, by))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.release(service: string) -> bool").doc(
        "Scales a held service (`e.hold`) back to its recorded replica count and removes the \
         record. False when it was not held. No wait.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, service: &str| -> ScriptResult<bool> {
            h.block(release(e, service))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.held(stack: string) -> array")
        .doc("The stack's held services (`e.hold`): `[#{service, replicas, by}]`, one request.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<Array> { h.block(held(e, stack)) },
    );
}

/// Adds `cleanup::release` to the `cleanup::` module.
pub(super) fn register_cleanup(m: &mut rhai::Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("cleanup::release(engine: Engine, service: string, what: string) -> int")
        .doc(
            "Registers an undo action: `e.release(service)` when the command ends by error, \
         Ctrl-C or SIGTERM, unless run or cancelled first (`cleanup::run` on the normal path). \
         Register it before `e.hold`. Returns its id. Were wsm killed outright, the next \
         command taking the stack's lock releases it.",
        );
    prim.set_in(
        m,
        move |e: EngineHandle, service: &str, what: &str| -> ScriptResult<i64> {
            let service = service.to_string();
            let action = crate::host::cleanup::Action::new(move || async move {
                release(&e, &service)
                    .await
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            });
            Ok(h.cleanups.add(what, action))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_held_count_is_read_only_from_a_whole_number_label() {
        assert_eq!(held_replicas(&json!({"Labels": {HELD: "3"}})), Some(3));
        assert_eq!(held_replicas(&json!({"Labels": {HELD: "x"}})), None);
        assert_eq!(held_replicas(&json!({"Labels": {}})), None);
        assert_eq!(held_replicas(&json!({})), None);
    }
}
