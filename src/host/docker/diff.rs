//! Differences between two Engine API objects, field by field, in the words a user reads:
//! `TaskTemplate.ContainerSpec.Image: a → b`. A list is one field (a list of ports), so a
//! change shows the whole list before and after; an environment is the exception, compared
//! key by key (`…ContainerSpec.Env.DB_PASSWORD`), so that a change names the keys that changed
//! and a secret's value can be masked on its own (`secrets::mask_change`). `null`, `false`,
//! `0`, `""`, an empty list and an empty map count as absent: the engine (Go's `omitempty`)
//! drops them.

use serde_json::Value;

/// One field that differs: its dotted path, and its value before and after (`Null` = absent).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// Whether a value counts as absent.
fn empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(empty),
        _ => false,
    }
}

/// The fields in which `after` differs from `before`, in path order.
pub fn fields(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out
}

/// An environment list (`["K=V", "K"]`) as a map from each key to its value (a bare `K`, which
/// passes the variable through, is `null`); None when it is not one.
fn env_map(v: &Value) -> Option<Value> {
    let mut map = serde_json::Map::new();
    for entry in v.as_array()? {
        let entry = entry.as_str()?;
        let (k, value) = match entry.split_once('=') {
            Some((k, value)) => (k, Value::String(value.into())),
            None => (entry, Value::Null),
        };
        map.insert(k.to_string(), value);
    }
    Some(Value::Object(map))
}

fn walk(path: &str, before: &Value, after: &Value, out: &mut Vec<Change>) {
    if empty(before) && empty(after) {
        return;
    }
    if path == "Env" || path.ends_with(".Env") {
        let as_map = |v: &Value| {
            if empty(v) {
                Some(Value::Object(Default::default()))
            } else {
                env_map(v)
            }
        };
        if let (Some(b), Some(a)) = (as_map(before), as_map(after)) {
            if let (Value::Object(bm), Value::Object(am)) = (&b, &a) {
                let mut keys: Vec<&String> = bm.keys().chain(am.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let (x, y) = (bm.get(k), am.get(k));
                    if x != y {
                        out.push(Change {
                            field: format!("{path}.{k}"),
                            before: x.cloned().unwrap_or(Value::Null),
                            after: y.cloned().unwrap_or(Value::Null),
                        });
                    }
                }
            }
            return;
        }
    }
    let none = Value::Object(Default::default());
    // An absent map on one side is an empty map: its fields are compared one by one.
    let (b, a) = match (before, after) {
        (Value::Object(_), x) if empty(x) => (before, &none),
        (x, Value::Object(_)) if empty(x) => (&none, after),
        _ => (before, after),
    };
    if let (Value::Object(b), Value::Object(a)) = (b, a) {
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            walk(
                &p,
                b.get(k).unwrap_or(&Value::Null),
                a.get(k).unwrap_or(&Value::Null),
                out,
            );
        }
    } else if before != after {
        out.push(Change {
            field: path.to_string(),
            before: shown(before),
            after: shown(after),
        });
    }
}

/// A side of a change as shown: absent when null or an empty list or map, else as it is
/// (a replica count going to 0 shows 0).
fn shown(v: &Value) -> Value {
    match v {
        Value::Array(_) | Value::Object(_) if empty(v) => Value::Null,
        other => other.clone(),
    }
}

/// A value as one short line: strings bare, the rest as JSON, long ones cut.
pub fn short(v: &Value) -> String {
    let text = match v {
        Value::Null => "(none)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(119).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_added_and_removed_fields_are_named_by_path_and_empties_are_absent() {
        let before = json!({"Name": "a", "TaskTemplate": {"ContainerSpec": {"Image": "x", "Env": ["A=1"], "Args": []}},
            "Labels": {"k": "1"}, "Mode": {"Replicated": {"Replicas": 1}}});
        let after = json!({"Name": "a", "TaskTemplate": {"ContainerSpec": {"Image": "y", "Env": ["A=1", "B=2"]}},
            "Labels": {}, "Mode": {"Replicated": {"Replicas": 1}}, "EndpointSpec": {"Ports": []}});
        let got: Vec<(String, String, String)> = fields(&before, &after)
            .iter()
            .map(|c| (c.field.clone(), short(&c.before), short(&c.after)))
            .collect();
        assert_eq!(
            got,
            [
                ("Labels.k".into(), "1".into(), "(none)".into()),
                (
                    "TaskTemplate.ContainerSpec.Env.B".into(),
                    "(none)".into(),
                    "2".into()
                ),
                (
                    "TaskTemplate.ContainerSpec.Image".into(),
                    "x".into(),
                    "y".into()
                ),
            ]
        );
        assert!(fields(&before, &before).is_empty());
    }
}
