//! A service's `deploy:` into the swarm parts of its spec: mode and replicas, labels, update
//! and rollback, restart policy, placement, resources and endpoint mode.

use serde_json::{json, Map as JsonMap, Value};

use super::draft::Draft;
use super::values::{bytes, insert_durations, int, stack_labels, text};

/// Applies a service's `deploy:` map (anything else counts as empty) to the spec being built.
/// The parts go in a fixed order, so a service with several errors reports the same one first.
pub(super) fn apply(d: &mut Draft, v: &Value) -> Result<(), String> {
    let empty = JsonMap::new();
    let deploy = v.as_object().unwrap_or(&empty);
    if let Some(Value::Object(rp)) = deploy.get("restart_policy") {
        d.task.insert("RestartPolicy".into(), restart_policy(rp)?);
    }
    if let Some(Value::Object(pl)) = deploy.get("placement") {
        d.task.insert("Placement".into(), placement(pl)?);
    }
    if let Some(Value::Object(res)) = deploy.get("resources") {
        d.task.insert("Resources".into(), resources(res)?);
    }
    d.service
        .insert("Labels".into(), stack_labels(d.stack, deploy.get("labels")));
    d.service.insert("Mode".into(), mode(deploy)?);
    for (key, field) in [
        ("update_config", "UpdateConfig"),
        ("rollback_config", "RollbackConfig"),
    ] {
        if let Some(Value::Object(u)) = deploy.get(key) {
            d.service.insert(field.into(), update_config(u)?);
        }
    }
    let endpoint_mode = deploy.get("endpoint_mode").map(text).unwrap_or_default();
    if !endpoint_mode.is_empty() {
        if endpoint_mode != "vip" && endpoint_mode != "dnsrr" {
            return Err(format!("unknown endpoint_mode {endpoint_mode:?}"));
        }
        d.endpoint
            .insert("Mode".into(), json!(endpoint_mode.to_lowercase()));
    }
    Ok(())
}

/// `mode` and `replicas`: replicated (one replica unless told), global, or a job.
fn mode(deploy: &JsonMap<String, Value>) -> Result<Value, String> {
    let mode = deploy.get("mode").map(text).unwrap_or_default();
    let replicas = match deploy.get("replicas") {
        Some(v) if !v.is_null() => Some(int(v, "replicas")?),
        _ => None,
    };
    let no_replicas = || match replicas {
        Some(_) => {
            Err("replicas can only be used with replicated or replicated-job mode".to_string())
        }
        None => Ok(()),
    };
    match mode.as_str() {
        "global" => no_replicas().map(|_| json!({"Global": {}})),
        "global-job" => no_replicas().map(|_| json!({"GlobalJob": {}})),
        "replicated-job" => Ok(match replicas {
            Some(n) => json!({"ReplicatedJob": {"MaxConcurrent": n, "TotalCompletions": n}}),
            None => json!({"ReplicatedJob": {}}),
        }),
        "" | "replicated" => Ok(json!({"Replicated": {"Replicas": replicas.unwrap_or(1)}})),
        m => Err(format!("unknown deploy mode {m:?}")),
    }
}

/// `restart_policy`: condition, delay, window and max_attempts.
fn restart_policy(rp: &JsonMap<String, Value>) -> Result<Value, String> {
    let mut r = JsonMap::new();
    if let Some(v) = rp.get("condition") {
        r.insert("Condition".into(), json!(text(v)));
    }
    insert_durations(&mut r, rp, &[("delay", "Delay"), ("window", "Window")])?;
    if let Some(v) = rp.get("max_attempts") {
        r.insert("MaxAttempts".into(), json!(int(v, "max_attempts")?));
    }
    Ok(Value::Object(r))
}

/// `placement`: constraints, spread preferences and max_replicas_per_node.
fn placement(pl: &JsonMap<String, Value>) -> Result<Value, String> {
    let mut p = JsonMap::new();
    if let Some(Value::Array(c)) = pl.get("constraints") {
        p.insert(
            "Constraints".into(),
            json!(c.iter().map(text).collect::<Vec<_>>()),
        );
    }
    if let Some(Value::Array(prefs)) = pl.get("preferences") {
        let prefs: Vec<Value> = prefs
            .iter()
            .filter_map(|x| x.get("spread"))
            .map(|s| json!({"Spread": {"SpreadDescriptor": text(s)}}))
            .collect();
        p.insert("Preferences".into(), json!(prefs));
    }
    if let Some(v) = pl.get("max_replicas_per_node") {
        p.insert(
            "MaxReplicas".into(),
            json!(int(v, "max_replicas_per_node")?),
        );
    }
    Ok(Value::Object(p))
}

/// `resources`: cpus, memory and pids of the limits; cpus, memory and generic resources of
/// the reservations.
fn resources(res: &JsonMap<String, Value>) -> Result<Value, String> {
    let mut r = JsonMap::new();
    for (key, field) in [("limits", "Limits"), ("reservations", "Reservations")] {
        if let Some(Value::Object(x)) = res.get(key) {
            let mut y = JsonMap::new();
            if let Some(c) = x.get("cpus") {
                let cpus: f64 = text(c).parse().map_err(|_| format!("invalid cpus {c}"))?;
                y.insert("NanoCPUs".into(), json!((cpus * 1e9).round() as i64));
            }
            if let Some(m) = x.get("memory") {
                y.insert("MemoryBytes".into(), json!(bytes(m)?));
            }
            if let Some(p) = x.get("pids") {
                y.insert("Pids".into(), json!(int(p, "pids")?));
            }
            if let Some(Value::Array(g)) = x.get("generic_resources") {
                let generic = g
                    .iter()
                    .filter_map(|g| g.get("discrete_resource_spec"))
                    .map(|d| {
                        Ok(json!({"DiscreteResourceSpec": {
                            "Kind": d.get("kind").map(text).unwrap_or_default(),
                            "Value": int(d.get("value").unwrap_or(&json!(0)), "generic resource value")?,
                        }}))
                    })
                    .collect::<Result<Vec<Value>, String>>()?;
                y.insert("GenericResources".into(), json!(generic));
            }
            r.insert(field.into(), Value::Object(y));
        }
    }
    Ok(Value::Object(r))
}

/// `update_config` or `rollback_config`: parallelism (1 unless told), delay, monitor,
/// failure_action, max_failure_ratio and order.
fn update_config(u: &JsonMap<String, Value>) -> Result<Value, String> {
    let mut c = JsonMap::new();
    let par = match u.get("parallelism") {
        Some(v) => int(v, "parallelism")?,
        None => 1,
    };
    c.insert("Parallelism".into(), json!(par));
    insert_durations(&mut c, u, &[("delay", "Delay"), ("monitor", "Monitor")])?;
    if let Some(v) = u.get("failure_action") {
        c.insert("FailureAction".into(), json!(text(v)));
    }
    if let Some(v) = u.get("max_failure_ratio") {
        let r: f64 = text(v)
            .parse()
            .map_err(|_| "invalid max_failure_ratio".to_string())?;
        c.insert("MaxFailureRatio".into(), json!(r));
    }
    if let Some(v) = u.get("order") {
        c.insert("Order".into(), json!(text(v)));
    }
    Ok(Value::Object(c))
}
