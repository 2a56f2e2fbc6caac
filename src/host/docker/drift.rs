//! Drift: how the stack running now differs from its last recorded revision (`revisions`),
//! the changes someone made outside wsm (`docker service update --env-add …`, a service
//! removed by hand), shown field by field as `plan` shows a deploy's (`diff`).
//!
//! Both sides are specs as the engine stores them (a revision keeps the raw spec, its image
//! pinned to the digest the deploy chose), so what the engine changes by itself is not drift:
//! versions, timestamps, `UpdateStatus` and `PreviousSpec` sit outside the spec. Also left
//! out: the force-update counter (`docker service update --force` changes no setting), and
//! the ids behind names (a network, config or secret made again under its name has a new id;
//! references are compared by name). Secret values are masked unless asked for; a revision
//! sealed with another key is compared with every secret value blinded.
//!
//! What wsm changes without recording a revision shows as drift too, until the next recorded
//! deploy: `stack scale` (the replicas) and a one-service `stack rollback <service>`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bollard::Docker;
use rhai::{Dynamic, Engine, Map};
use serde_json::{json, Value};

use super::diff::{fields, short};
use super::history::open_state;
use super::objects::{self, Kind};
use super::revisions::{snapshot, History};
use super::{list_networks, str_at, EngineHandle};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::opt_bool;
use crate::host::secrets;
use crate::host::{to_dynamic, Host, ScriptResult};

/// A service spec ready to compare: the force-update counter dropped, network targets
/// replaced by the names `networks` (id → name) gives them, config and secret ids dropped.
fn comparable(spec: &Value, networks: &Value) -> Value {
    let mut s = spec.clone();
    if let Some(t) = s["TaskTemplate"].as_object_mut() {
        t.remove("ForceUpdate");
    }
    for n in s["TaskTemplate"]["Networks"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let id = str_at(n, &["Target"]).to_string();
        if let Some(name) = networks[id.as_str()].as_str() {
            n["Target"] = json!(name);
        }
    }
    let container = &mut s["TaskTemplate"]["ContainerSpec"];
    for (list, id) in [("Configs", "ConfigID"), ("Secrets", "SecretID")] {
        for r in container[list].as_array_mut().into_iter().flatten() {
            if let Some(o) = r.as_object_mut() {
                o.remove(id);
            }
        }
    }
    s
}

/// The names in a state's list or map of `kind` (networks: the map's values).
fn names_of(state: &Value, kind: &str) -> BTreeSet<String> {
    let v = &state[kind];
    let items: Vec<&Value> = match v {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Rows `#{name, action}` of one kind of object: `added`, one the live services use that the
/// revision's did not; `removed`, one the revision's used that is gone from the swarm (`exists`:
/// the names on the swarm now). One still there but no longer used is a service's change.
fn object_rows(
    recorded: &Value,
    live: &Value,
    kind: &str,
    exists: &BTreeSet<String>,
) -> Vec<Value> {
    let (r, l) = (names_of(recorded, kind), names_of(live, kind));
    let mut out: Vec<Value> = l
        .difference(&r)
        .map(|n| json!({"name": n, "action": "added"}))
        .collect();
    out.extend(
        r.iter()
            .filter(|n| !exists.contains(*n))
            .map(|n| json!({"name": n, "action": "removed"})),
    );
    out
}

/// The names of the networks, configs or secrets (`kind`) on the swarm now.
async fn existing(d: &Docker, kind: &str) -> ScriptResult<BTreeSet<String>> {
    let (list, path): (Vec<Value>, &[&str]) = match kind {
        "networks" => (list_networks(d, HashMap::new()).await?, &["Name"]),
        "configs" => (
            objects::list(d, Kind::Config, HashMap::new()).await?,
            &["Spec", "Name"],
        ),
        _ => (
            objects::list(d, Kind::Secret, HashMap::new()).await?,
            &["Spec", "Name"],
        ),
    };
    Ok(list.iter().map(|o| str_at(o, path).to_string()).collect())
}

/// The service rows of the drift from `recorded` to `live`: `#{name, action (added, changed,
/// removed), fields: [#{field, before (recorded), after (live)}], lines}`.
fn service_rows(recorded: &Value, live: &Value, show_secrets: bool) -> Vec<Value> {
    let none = serde_json::Map::new();
    let r = recorded["services"].as_object().unwrap_or(&none);
    let l = live["services"].as_object().unwrap_or(&none);
    let names: BTreeSet<&String> = r.keys().chain(l.keys()).collect();
    let mut rows = Vec::new();
    for name in names {
        match (r.get(name), l.get(name)) {
            (Some(_), None) => rows.push(json!({"name": name, "action": "removed"})),
            (None, Some(_)) => rows.push(json!({"name": name, "action": "added"})),
            (Some(a), Some(b)) => {
                let mut changed = fields(
                    &comparable(a, &recorded["networks"]),
                    &comparable(b, &live["networks"]),
                );
                if changed.is_empty() {
                    continue;
                }
                if !show_secrets {
                    changed.iter_mut().for_each(secrets::mask_change);
                }
                let lines: Vec<String> = changed
                    .iter()
                    .map(|c| format!("{}: {} → {}", c.field, short(&c.before), short(&c.after)))
                    .collect();
                rows.push(
                    json!({"name": name, "action": "changed", "fields": changed, "lines": lines}),
                );
            }
            (None, None) => {}
        }
    }
    rows
}

/// The stack's drift from its last recorded revision (see `e.stack_drift`'s doc).
async fn stack_drift(e: &EngineHandle, stack: &str, show_secrets: bool) -> ScriptResult<Value> {
    let history = History::load(&e.docker, stack).await?;
    let live = snapshot(e, stack).await?;
    let running = live["services"].as_object().is_some_and(|s| !s.is_empty());
    let Some(current) = history.current() else {
        return Ok(
            json!({"stack": stack, "rev": null, "running": running, "changes": 0,
            "services": [], "networks": [], "configs": [], "secrets": []}),
        );
    };
    let (recorded, live) = match open_state(&current["state"]) {
        Ok(state) => (state, live),
        // Sealed with another key: every secret value blinded on both sides.
        Err(_) => (secrets::blind(&current["state"]), secrets::blind(&live)),
    };
    let services = service_rows(&recorded, &live, show_secrets);
    let mut objects = serde_json::Map::new();
    for kind in ["networks", "configs", "secrets"] {
        let rows = if running {
            object_rows(&recorded, &live, kind, &existing(&e.docker, kind).await?)
        } else {
            Vec::new()
        };
        objects.insert(kind.to_string(), Value::Array(rows));
    }
    let count = if running {
        services.len()
            + objects
                .values()
                .filter_map(Value::as_array)
                .map(Vec::len)
                .sum::<usize>()
    } else {
        0
    };
    let mut out = json!({
        "stack": stack,
        "rev": current["rev"],
        "recorded": {"time": current["time"], "by": current["by"],
            "operation": current["operation"], "status": current["status"]},
        "running": running,
        "changes": count,
        "services": if running { Value::Array(services) } else { json!([]) },
    });
    if let Some(o) = out.as_object_mut() {
        o.extend(objects);
    }
    if !show_secrets {
        secrets::mask_json(&mut out);
    }
    Ok(out)
}

/// `e.stack_drift`'s options.
const DRIFT_OPTS: &[Opt] = &[(
    "show_secrets",
    "false: secret values (`secrets`) are `********` in the fields and lines",
)];

/// Registers `e.stack_drift`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.stack_drift(stack: string, opts: map) -> map")
        .opts(DRIFT_OPTS)
        .doc(
            "How the running stack differs from its last recorded revision, changing nothing: \
             `#{stack, rev (the revision compared with; () when the stack has no history), \
             recorded: #{time, by, operation, status}, running, changes (the count), services: \
             [#{name, action (added, changed, removed), fields: [#{field, before (recorded), \
             after (live)}], lines}], networks, configs, secrets: [#{name, action}]}`. What the \
             engine changes by itself (versions, timestamps, update status, the force-update \
             counter, ids behind names) is not drift; a stack not running has none.",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str, opts: Map| -> ScriptResult<Dynamic> {
            check_opts("e.stack_drift", &opts, DRIFT_OPTS)?;
            let show = opt_bool(&opts, "show_secrets", false);
            let out = h.block(stack_drift(e, stack, show))?;
            to_dynamic(&out)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_the_force_counter_are_not_drift_but_an_environment_key_is() {
        let rec = json!({"services": {"s_web": {"Name": "s_web", "TaskTemplate": {"ForceUpdate": 1,
            "Networks": [{"Target": "id1"}],
            "ContainerSpec": {"Env": ["A=1"], "Configs": [{"ConfigName": "c", "ConfigID": "x1"}]}}}},
            "networks": {"id1": "s_default"}, "configs": ["c"], "secrets": []});
        let mut live = json!({"services": {"s_web": {"Name": "s_web", "TaskTemplate": {"ForceUpdate": 2,
            "Networks": [{"Target": "id2"}],
            "ContainerSpec": {"Env": ["A=1"], "Configs": [{"ConfigName": "c", "ConfigID": "x2"}]}}}},
            "networks": {"id2": "s_default"}, "configs": ["c"], "secrets": []});
        assert!(service_rows(&rec, &live, false).is_empty());
        live["services"]["s_web"]["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["A=1", "X=1"]);
        let rows = service_rows(&rec, &live, false);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["action"], "changed");
        assert_eq!(
            rows[0]["lines"],
            json!(["TaskTemplate.ContainerSpec.Env.X: (none) → 1"])
        );
        live["services"]
            .as_object_mut()
            .unwrap()
            .remove("s_web")
            .unwrap();
        assert_eq!(
            service_rows(&rec, &live, false),
            vec![json!({"name": "s_web", "action": "removed"})]
        );
        let none = BTreeSet::new();
        assert_eq!(
            object_rows(&rec, &live, "configs", &none),
            vec![json!({"name": "c", "action": "removed"})],
            "a config gone from the swarm"
        );
        let made = BTreeSet::from(["c".to_string()]);
        assert!(object_rows(&rec, &live, "configs", &made).is_empty());
    }
}
