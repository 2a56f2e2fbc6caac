//! Several compose files into one, in order, as docker/cli's `compose/loader/merge.go` merges
//! them: a service named in both is merged key by key (maps deep, lists appended, scalars
//! overridden), with docker's special cases — ports keyed by published port, volumes by
//! target, secrets and configs by source, `command`/`entrypoint` replaced, logging options
//! merged for the same driver; top-level networks, volumes, secrets and configs are replaced
//! whole by name.

use std::collections::BTreeMap;

use serde_json::{json, Map as JsonMap, Value};

use super::values::{key_values, text};

/// Merges `over` (a later file) into `base`.
pub fn merge(base: &mut Value, over: Value) -> Result<(), String> {
    let (Some(b), Value::Object(o)) = (base.as_object_mut(), over) else {
        return Err("top-level object must be a mapping".into());
    };
    for (key, value) in o {
        match key.as_str() {
            "services" => {
                let Value::Object(services) = value else {
                    continue;
                };
                let into = b
                    .entry("services")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .ok_or("services must be a mapping")?;
                for (name, svc) in services {
                    match into.get_mut(&name) {
                        Some(existing) => merge_service(existing, svc)
                            .map_err(|e| format!("cannot merge service {name}: {e}"))?,
                        None => {
                            into.insert(name, svc);
                        }
                    }
                }
            }
            "networks" | "volumes" | "secrets" | "configs" => {
                let Value::Object(decls) = value else {
                    continue;
                };
                let into = b.entry(key).or_insert_with(|| json!({}));
                if let Some(into) = into.as_object_mut() {
                    into.extend(decls);
                }
            }
            _ => {
                b.insert(key, value);
            }
        }
    }
    Ok(())
}

/// Keys whose list or map form is a KEY=VALUE mapping: merged as maps.
const MAPPINGS: &[&str] = &["environment", "labels", "sysctls"];

/// Merges one service of a later file into the same service of the earlier ones.
fn merge_service(base: &mut Value, over: Value) -> Result<(), String> {
    let (Some(b), Value::Object(o)) = (base.as_object_mut(), over) else {
        return Err("a service must be a mapping".into());
    };
    for (key, value) in o {
        let Some(old) = b.get_mut(&key) else {
            b.insert(key, value);
            continue;
        };
        match key.as_str() {
            "command" | "entrypoint" => {
                if !is_empty(&value) {
                    *old = value;
                }
            }
            _ if MAPPINGS.contains(&key.as_str()) => {
                *old = as_map(old);
                if let (Some(m), Value::Object(n)) = (old.as_object_mut(), as_map(&value)) {
                    m.extend(n);
                }
            }
            "ports" => keyed(old, value, published_port)?,
            "volumes" => keyed(old, value, volume_target)?,
            "secrets" | "configs" => keyed(old, value, |v| match v {
                Value::Object(o) => o.get("source").map(text).unwrap_or_default(),
                other => text(other),
            })?,
            "logging" => merge_logging(old, value),
            "networks" => merge_networks(old, value),
            "deploy" => deep(old, value, &["labels"]),
            _ => deep(old, value, &[]),
        }
    }
    Ok(())
}

/// Recursive merge: maps key by key, lists appended, scalars replaced unless empty.
/// `mappings` names sub-keys that are KEY=VALUE mappings.
fn deep(old: &mut Value, new: Value, mappings: &[&str]) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(x) if mappings.contains(&k.as_str()) => {
                        *x = as_map(x);
                        if let (Some(m), Value::Object(n)) = (x.as_object_mut(), as_map(&v)) {
                            m.extend(n);
                        }
                    }
                    Some(x) => deep(x, v, &[]),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b),
        (_, v) if is_empty(&v) => {}
        (o, v) => *o = v,
    }
}

/// Whether a value is Go's zero value, which mergo does not let override.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// A KEY=VALUE list or map as a map (bare keys map to null).
fn as_map(v: &Value) -> Value {
    Value::Object(
        key_values(Some(v))
            .into_iter()
            .map(|(k, v)| (k, v.map(Value::String).unwrap_or(Value::Null)))
            .collect(),
    )
}

/// Merges two lists by a key of each entry: a later entry replaces an earlier one with the
/// same key; the result is ordered by key, as docker sorts it.
fn keyed(old: &mut Value, new: Value, key: impl Fn(&Value) -> String) -> Result<(), String> {
    let mut by_key: BTreeMap<String, Value> = BTreeMap::new();
    for v in old.as_array().into_iter().flatten().cloned() {
        by_key.insert(key(&v), v);
    }
    for v in new.as_array().into_iter().flatten().cloned() {
        by_key.insert(key(&v), v);
    }
    *old = Value::Array(by_key.into_values().collect());
    Ok(())
}

/// The published port of a port entry, zero-padded so keys sort numerically.
fn published_port(v: &Value) -> String {
    let published = match v {
        Value::Object(o) => o.get("published").map(text).unwrap_or_default(),
        other => {
            let s = text(other);
            let s = s.rsplit_once('/').map(|(a, _)| a.to_string()).unwrap_or(s);
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() >= 2 {
                parts[parts.len() - 2].to_string()
            } else {
                String::new()
            }
        }
    };
    format!("{:>12}", published)
}

/// The target of a volume entry (short or long syntax).
fn volume_target(v: &Value) -> String {
    match v {
        Value::Object(o) => o.get("target").map(text).unwrap_or_default(),
        other => {
            let s = text(other);
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            }
        }
    }
}

/// `logging`: the same (or an unset) driver merges options; another driver replaces it.
fn merge_logging(old: &mut Value, new: Value) {
    let driver = |v: &Value| v.get("driver").map(text).unwrap_or_default();
    let (a, b) = (driver(old), driver(&new));
    if a == b || a.is_empty() || b.is_empty() {
        if let Some(o) = old.as_object_mut() {
            if a.is_empty() && !b.is_empty() {
                o.insert("driver".into(), json!(b));
            }
            let options = o.entry("options").or_insert_with(|| json!({}));
            if let (Some(m), Some(Value::Object(n))) = (options.as_object_mut(), new.get("options"))
            {
                m.extend(n.clone());
            }
        }
    } else {
        *old = new;
    }
}

/// `networks`: list or map forms as maps; a later entry's aliases replace the earlier ones.
fn merge_networks(old: &mut Value, new: Value) {
    let as_net_map = |v: &Value| -> JsonMap<String, Value> {
        match v {
            Value::Array(a) => a.iter().map(|n| (text(n), Value::Null)).collect(),
            Value::Object(o) => o.clone(),
            _ => JsonMap::new(),
        }
    };
    let mut merged = as_net_map(old);
    for (name, cfg) in as_net_map(&new) {
        match merged.get_mut(&name) {
            Some(Value::Object(existing)) if cfg.is_object() => {
                for (k, v) in cfg.as_object().into_iter().flatten() {
                    if !is_empty(v) || k == "aliases" {
                        existing.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(existing) if cfg.is_null() => {
                let _ = existing;
            }
            _ => {
                merged.insert(name, cfg);
            }
        }
    }
    *old = Value::Object(merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_merge_into_earlier_ones_as_docker_does() {
        let mut base = json!({"services": {
            "a": {"image": "i", "command": ["x"], "environment": {"A": "1"},
                  "ports": ["8080:80", "9090:90"], "volumes": ["/a:/t", "v:/u"],
                  "deploy": {"replicas": 2, "labels": ["k=1"]}, "dns": ["1.1.1.1"]}},
            "networks": {"n": {"driver": "overlay", "attachable": true}}});
        let over = json!({"services": {
            "a": {"image": "j", "command": ["y"], "environment": ["B=2"],
                  "ports": ["8080:81"], "volumes": ["/b:/t"],
                  "deploy": {"labels": {"l": "2"}}, "dns": ["8.8.8.8"]},
            "b": {"image": "k"}},
            "networks": {"n": {"internal": true}}});
        merge(&mut base, over).unwrap();
        let a = &base["services"]["a"];
        assert_eq!(a["image"], "j");
        assert_eq!(a["command"], json!(["y"]));
        assert_eq!(a["environment"], json!({"A": "1", "B": "2"}));
        assert_eq!(a["ports"], json!(["8080:81", "9090:90"]));
        assert_eq!(a["volumes"], json!(["/b:/t", "v:/u"]));
        assert_eq!(
            a["deploy"],
            json!({"replicas": 2, "labels": {"k": "1", "l": "2"}})
        );
        assert_eq!(a["dns"], json!(["1.1.1.1", "8.8.8.8"]));
        assert_eq!(base["services"]["b"]["image"], "k");
        assert_eq!(base["networks"]["n"], json!({"internal": true}));
    }
}
