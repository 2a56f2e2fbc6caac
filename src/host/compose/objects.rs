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
    match decl.and_then(|d| d.get("external")) {
        // `external: {name: …}` (deprecated) is external too.
        Some(Value::Object(_)) => true,
        Some(v) => boolean(v),
        None => false,
    }
}

/// The `name:` a declaration gives its object, when it gives a non-empty one.
pub(super) fn explicit_name(decl: Option<&Value>) -> Option<String> {
    decl.and_then(|d| d.get("name"))
        .map(text)
        .filter(|n| !n.is_empty())
}

/// A service's network: its short name, extra aliases and driver options.
pub(super) type Attachment = (String, Vec<String>, Option<Value>);

/// The networks a service's `networks:` names, each with its extra aliases and driver options
/// (list or map syntax); None when it names none, and the service is on the stack's `default`.
pub(super) fn attached_networks(v: &Value) -> Option<Vec<Attachment>> {
    match v {
        Value::Array(a) => Some(a.iter().map(|n| (text(n), Vec::new(), None)).collect()),
        Value::Object(o) if !o.is_empty() => Some(
            o.iter()
                .map(|(n, cfg)| {
                    let aliases = match cfg.get("aliases") {
                        Some(Value::Array(extra)) => extra.iter().map(text).collect(),
                        _ => Vec::new(),
                    };
                    let driver_opts = cfg.get("driver_opts").filter(|o| o.is_object()).map(|o| {
                        let m: JsonMap<String, Value> = o
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), json!(text(v))))
                            .collect();
                        Value::Object(m)
                    });
                    (n.clone(), aliases, driver_opts)
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The declaration of network `short`, when the file declares it.
pub(super) fn network_decl<'a>(doc: &'a Value, short: &str) -> Option<&'a Value> {
    declarations(doc, "networks").and_then(|d| d.get(short))
}

/// The full name of the network a service names `short`: its explicit name (or the deprecated
/// `external.name`), the short name of an external network, else `<stack>_<short>`.
pub(super) fn network_name(doc: &Value, stack: &str, short: &str) -> String {
    let decl = network_decl(doc, short);
    let external_name = decl
        .and_then(|d| d.get("external"))
        .and_then(|e| e.get("name"))
        .map(text)
        .filter(|n| !n.is_empty());
    match explicit_name(decl).or(external_name) {
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
            Some(attached) => used.extend(attached.into_iter().map(|(short, _, _)| short)),
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
        out.push((name.clone(), network_spec(&name, decl, stack)));
    }
    Ok(out)
}

/// The Engine API `NetworkCreateRequest` of a stack's network, as docker's `convert.Networks`
/// makes it: driver (overlay unless told), options, internal, attachable, IPAM, labels.
fn network_spec(name: &str, decl: Option<&Value>, stack: &str) -> Value {
    let get = |k: &str| decl.and_then(|d| d.get(k));
    let driver = get("driver")
        .map(text)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "overlay".into());
    let mut spec = json!({"Name": name, "Driver": driver,
        "Attachable": get("attachable").is_some_and(boolean),
        "Labels": stack_labels(stack, get("labels"))});
    if get("internal").is_some_and(boolean) {
        spec["Internal"] = json!(true);
    }
    if let Some(Value::Object(o)) = get("driver_opts") {
        let opts: JsonMap<String, Value> =
            o.iter().map(|(k, v)| (k.clone(), json!(text(v)))).collect();
        spec["Options"] = Value::Object(opts);
    }
    if let Some(Value::Object(ipam)) = get("ipam") {
        let driver = ipam.get("driver").map(text).unwrap_or_default();
        let configs: Vec<Value> = ipam
            .get("config")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| json!({"Subnet": c.get("subnet").map(text).unwrap_or_default()}))
            .collect();
        if !driver.is_empty() || !configs.is_empty() {
            spec["IPAM"] = json!({"Driver": driver, "Config": configs});
        }
    }
    spec
}

/// The volumes the stack's own declarations make (not external ones), as the engine creates
/// them on first use: `[{name, spec: {Name, Driver, DriverOpts, Labels}}]`, ordered by key.
pub(super) fn stack_volumes(doc: &Value, stack: &str) -> Vec<Value> {
    declarations(doc, "volumes")
        .into_iter()
        .flatten()
        .filter(|(_, decl)| !is_external(Some(decl)))
        .map(|(short, decl)| {
            let name = explicit_name(Some(decl)).unwrap_or_else(|| format!("{stack}_{short}"));
            let driver = decl
                .get("driver")
                .map(text)
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "local".into());
            json!({"name": name, "spec": {"Name": name, "Driver": driver,
                "DriverOpts": decl.get("driver_opts").cloned().unwrap_or(json!({})),
                "Labels": stack_labels(stack, decl.get("labels"))}})
        })
        .collect()
}
