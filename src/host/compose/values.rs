//! Compose values into the Engine API's: durations, byte sizes, integers, booleans, text,
//! command lists, KEY=VALUE lists and stack labels, and the typing of interpolated strings.

use std::collections::BTreeMap;

use serde_json::{json, Map as JsonMap, Value};

use crate::host::NAMESPACE_LABEL;

/// The words compose reads as `true` (docker/cli's loader); the same list types fields.
const TRUE_WORDS: [&str; 5] = ["true", "yes", "y", "1", "True"];

/// After interpolation `replicas: ${N-3}` is the string "3"; like docker/cli's loader, turn
/// such values back into the numbers and booleans the compose schema wants.
pub(super) fn cast_typed_fields(doc: &mut Value) {
    fn cast(v: Option<&mut Value>, boolean_field: bool) {
        let Some(v) = v else { return };
        let Some(s) = v.as_str().map(str::trim) else {
            return;
        };
        if boolean_field {
            if TRUE_WORDS.contains(&s) {
                *v = Value::Bool(true);
            } else if matches!(s, "false" | "no" | "n" | "0" | "False" | "") {
                *v = Value::Bool(false);
            }
        } else if let Ok(n) = s.parse::<i64>() {
            *v = json!(n);
        }
    }
    let Some(services) = doc.get_mut("services").and_then(Value::as_object_mut) else {
        return;
    };
    for svc in services.values_mut() {
        for key in ["stdin_open", "tty", "read_only", "init"] {
            cast(svc.get_mut(key), true);
        }
        cast(svc.pointer_mut("/healthcheck/retries"), false);
        if let Some(deploy) = svc.get_mut("deploy") {
            for ptr in [
                "/replicas",
                "/update_config/parallelism",
                "/rollback_config/parallelism",
                "/restart_policy/max_attempts",
                "/placement/max_replicas_per_node",
            ] {
                cast(deploy.pointer_mut(ptr), false);
            }
        }
        if let Some(Value::Array(ports)) = svc.get_mut("ports") {
            for p in ports.iter_mut().filter(|p| p.is_object()) {
                cast(p.get_mut("target"), false);
                cast(p.get_mut("published"), false);
            }
        }
    }
}

/// Parses a Go duration ("30s", "1m30s", "500ms", "1h") into nanoseconds.
pub fn duration_ns(v: &Value) -> Result<i64, String> {
    if let Some(n) = v.as_i64() {
        return Ok(n);
    }
    let s = v
        .as_str()
        .ok_or_else(|| format!("invalid duration {v}"))?
        .trim();
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {s:?} has no unit"))?;
        let num: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += num * scale;
        rest = &rest[unit_len..];
    }
    Ok(total as i64)
}

/// Parses a memory size ("512M", "1g", "1024") into bytes, 1024-based as Docker does.
pub fn bytes(v: &Value) -> Result<i64, String> {
    if let Some(n) = v.as_i64() {
        return Ok(n);
    }
    let s = v
        .as_str()
        .ok_or_else(|| format!("invalid size {v}"))?
        .trim();
    let lower = s.to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    Ok((n * mult as f64) as i64)
}

/// Copies the durations among `keys` (compose key, Engine API field) from `from` into `to`,
/// in nanoseconds.
pub(super) fn insert_durations(
    to: &mut JsonMap<String, Value>,
    from: &JsonMap<String, Value>,
    keys: &[(&str, &str)],
) -> Result<(), String> {
    for (key, field) in keys {
        if let Some(v) = from.get(*key) {
            to.insert(field.to_string(), json!(duration_ns(v)?));
        }
    }
    Ok(())
}

/// An integer given as a number or a numeric string; `what` names it in the error.
pub(super) fn int(v: &Value, what: &str) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{what}: {n} is not an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{what}: {s:?} is not a number")),
        _ => Err(format!("{what}: {v} is not a number")),
    }
}

/// A compose boolean: `true`, or one of the words compose reads as true; anything else is false.
pub(super) fn boolean(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => TRUE_WORDS.contains(&s.as_str()),
        _ => false,
    }
}

/// A scalar as text: strings as they are, null as "", numbers and booleans as JSON writes them.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A command as compose allows it: a list, or a string split like a shell would.
pub(super) fn command_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(a) => Ok(a.iter().map(text).collect()),
        Value::String(s) => shell_words::split(s).map_err(|e| format!("command {s:?}: {e}")),
        _ => Err(format!("invalid command {v}")),
    }
}

/// KEY=VALUE lists or maps, as for environment and labels; a key without a value maps to None.
pub(super) fn key_values(v: Option<&Value>) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    match v {
        Some(Value::Array(a)) => {
            for item in a {
                let s = text(item);
                match s.split_once('=') {
                    Some((k, val)) => out.insert(k.to_string(), Some(val.to_string())),
                    None => out.insert(s, None),
                };
            }
        }
        Some(Value::Object(o)) => {
            for (k, val) in o {
                out.insert(
                    k.clone(),
                    if val.is_null() { None } else { Some(text(val)) },
                );
            }
        }
        _ => {}
    }
    out
}

/// The labels of a stack's object: the compose labels `v` plus the stack's namespace label.
pub(super) fn stack_labels(stack: &str, v: Option<&Value>) -> Value {
    let mut labels: JsonMap<String, Value> = key_values(v)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.unwrap_or_default())))
        .collect();
    labels.insert(NAMESPACE_LABEL.into(), Value::String(stack.into()));
    Value::Object(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration_ns(&json!("30s")).unwrap(), 30_000_000_000);
        assert_eq!(duration_ns(&json!("1m30s")).unwrap(), 90_000_000_000);
        assert_eq!(duration_ns(&json!("500ms")).unwrap(), 500_000_000);
        assert!(duration_ns(&json!("5x")).is_err());
        assert_eq!(bytes(&json!("512M")).unwrap(), 512 << 20);
        assert_eq!(bytes(&json!("1gb")).unwrap(), 1 << 30);
    }
}
