//! The stack's top-level objects: the networks it creates and the names its services know
//! them by. Each kind is declared under its own top-level key (`networks:` here; `volumes:`,
//! `configs:` and `secrets:` follow the same shape) with `name:`, `external:` and `labels:`.

use std::collections::BTreeSet;

use serde_json::{json, Map as JsonMap, Value};

use super::values::{boolean, stack_labels, text};

/// The declarations under one top-level key (`networks`, `volumes`, …) of a compose document.
pub(super) fn declarations<'a>(doc: &'a Value, kind: &str) -> Option<&'a JsonMap<String, Value>> {
    doc.get(kind).and_then(Value::as_object)
}

/// Whether a declaration says `external: true`: the object exists outside the stack.
pub(super) fn is_external(decl: Option<&Value>) -> bool {
    decl.and_then(|d| d.get("external")).is_some_and(boolean)
}

/// The `name:` a declaration gives its object, when it gives a non-empty one.
pub(super) fn explicit_name(decl: Option<&Value>) -> Option<String> {
    decl.and_then(|d| d.get("name"))
        .map(text)
        .filter(|n| !n.is_empty())
}

/// The networks a service's `networks:` names, each with its extra aliases (list or map
/// syntax); None when it names none, and the service is on the stack's `default`.
pub(super) fn attached_networks(v: &Value) -> Option<Vec<(String, Vec<String>)>> {
    match v {
        Value::Array(a) => Some(a.iter().map(|n| (text(n), Vec::new())).collect()),
        Value::Object(o) => Some(
            o.iter()
                .map(|(n, cfg)| {
                    let aliases = match cfg.get("aliases") {
                        Some(Value::Array(extra)) => extra.iter().map(text).collect(),
                        _ => Vec::new(),
                    };
                    (n.clone(), aliases)
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The full name of the network a service names `short`: its explicit name, the short name of
/// an external network, else `<stack>_<short>`.
pub(super) fn network_name(doc: &Value, stack: &str, short: &str) -> String {
    let decl = declarations(doc, "networks").and_then(|d| d.get(short));
    match explicit_name(decl) {
        Some(explicit) => explicit,
        None if is_external(decl) => short.to_string(),
        None => format!("{stack}_{short}"),
    }
}

/// The networks a stack's services use that the stack itself must create, with their specs
/// (Engine API `NetworkCreateRequest`), ordered by short name.
pub fn stack_networks(doc: &Value, stack: &str) -> Result<Vec<(String, Value)>, String> {
    let mut used = BTreeSet::new();
    for (_, svc) in doc["services"].as_object().into_iter().flatten() {
        match svc.get("networks").and_then(attached_networks) {
            Some(attached) => used.extend(attached.into_iter().map(|(short, _)| short)),
            None => {
                used.insert("default".to_string());
            }
        }
    }
    let declared = declarations(doc, "networks");
    let mut out = Vec::new();
    for n in used {
        let decl = declared.and_then(|d| d.get(&n));
        if is_external(decl) {
            continue;
        }
        if n != "default" && decl.is_none() {
            return Err(format!("a service uses the undefined network {n:?}"));
        }
        let name = explicit_name(decl).unwrap_or_else(|| format!("{stack}_{n}"));
        let driver = decl
            .and_then(|d| d.get("driver"))
            .map(text)
            .unwrap_or_else(|| "overlay".into());
        let attachable = decl.and_then(|d| d.get("attachable")).is_some_and(boolean);
        out.push((
            name.clone(),
            json!({"Name": name, "Driver": driver, "Attachable": attachable,
                   "Labels": stack_labels(stack, decl.and_then(|d| d.get("labels")))}),
        ));
    }
    Ok(out)
}
