//! A service's `volumes:` into Engine API mounts: binds, anonymous volumes, and the stack's
//! named volumes with the options of their top-level declaration.

use serde_json::{json, Map as JsonMap, Value};

use super::objects::{declarations, explicit_name, is_external};
use super::values::{boolean, bytes, stack_labels, text};

/// Bind propagation modes of the short syntax.
const PROPAGATION: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// Translates one volume entry of a service in stack `stack` into an Engine API mount.
pub(super) fn mount(v: &Value, doc: &Value, stack: &str) -> Result<Value, String> {
    let mut m = JsonMap::new();
    let (kind, source, nocopy) = match v {
        Value::Object(o) => {
            let kind = o.get("type").map(text).unwrap_or_else(|| "volume".into());
            m.insert("Type".into(), json!(kind));
            m.insert(
                "Target".into(),
                json!(o.get("target").map(text).unwrap_or_default()),
            );
            if o.get("read_only").is_some_and(boolean) {
                m.insert("ReadOnly".into(), json!(true));
            }
            if let Some(c) = o.get("consistency").map(text).filter(|c| !c.is_empty()) {
                m.insert("Consistency".into(), json!(c));
            }
            if let Some(p) = o.get("bind").and_then(|b| b.get("propagation")) {
                m.insert("BindOptions".into(), json!({"Propagation": text(p)}));
            }
            if let Some(t) = o.get("tmpfs") {
                let mut opts = JsonMap::new();
                if let Some(size) = t.get("size") {
                    opts.insert("SizeBytes".into(), json!(bytes(size)?));
                }
                m.insert("TmpfsOptions".into(), Value::Object(opts));
            }
            let nocopy = o
                .get("volume")
                .and_then(|x| x.get("nocopy"))
                .is_some_and(boolean);
            (kind, o.get("source").map(text).unwrap_or_default(), nocopy)
        }
        _ => {
            let s = text(v);
            let parts: Vec<&str> = s.split(':').collect();
            let (src, tgt, mode) = match parts.as_slice() {
                [t] => ("", *t, ""),
                [s, t] => (*s, *t, ""),
                [s, t, m] => (*s, *t, *m),
                _ => return Err(format!("invalid volume {s:?}")),
            };
            let bind = src.starts_with('/') || src.starts_with('.') || src.starts_with('~');
            let kind = if bind { "bind" } else { "volume" };
            let modes: Vec<&str> = mode.split(',').collect();
            m.insert("Type".into(), json!(kind));
            m.insert("Target".into(), json!(tgt));
            if modes.contains(&"ro") {
                m.insert("ReadOnly".into(), json!(true));
            }
            if let Some(p) = modes.iter().find(|x| PROPAGATION.contains(*x)) {
                m.insert("BindOptions".into(), json!({"Propagation": p}));
            }
            (kind.to_string(), src.to_string(), modes.contains(&"nocopy"))
        }
    };
    if kind != "volume" {
        if !source.is_empty() {
            m.insert("Source".into(), json!(source));
        } else if kind == "bind" {
            return Err("invalid bind source, source cannot be empty".into());
        }
        return Ok(Value::Object(m));
    }
    if source.is_empty() {
        return Ok(Value::Object(m));
    }
    let decl = declarations(doc, "volumes")
        .and_then(|d| d.get(&source))
        .ok_or_else(|| format!("undefined volume {source:?}"))?;
    let external_name = decl
        .get("external")
        .and_then(|e| e.get("name"))
        .map(text)
        .filter(|n| !n.is_empty());
    let full_name = match (
        explicit_name(Some(decl)).or(external_name),
        is_external(Some(decl)),
    ) {
        (Some(n), _) => n,
        (None, true) => source.clone(),
        (None, false) => format!("{stack}_{source}"),
    };
    m.insert("Source".into(), json!(full_name));
    let mut opts = JsonMap::new();
    if nocopy {
        opts.insert("NoCopy".into(), json!(true));
    }
    if !is_external(Some(decl)) {
        opts.insert("Labels".into(), stack_labels(stack, decl.get("labels")));
        let driver = decl.get("driver").map(text).unwrap_or_default();
        let driver_opts = decl.get("driver_opts").filter(|o| o.is_object());
        if !driver.is_empty() || driver_opts.is_some() {
            let mut dc = JsonMap::new();
            dc.insert("Name".into(), json!(driver));
            if let Some(Value::Object(o)) = driver_opts {
                let o: JsonMap<String, Value> =
                    o.iter().map(|(k, v)| (k.clone(), json!(text(v)))).collect();
                dc.insert("Options".into(), Value::Object(o));
            }
            opts.insert("DriverConfig".into(), Value::Object(dc));
        }
    }
    m.insert("VolumeOptions".into(), Value::Object(opts));
    Ok(Value::Object(m))
}
