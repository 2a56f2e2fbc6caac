//! A service's `volumes:` into Engine API mounts: binds, anonymous volumes, and the stack's
//! named volumes with the options of their top-level declaration.

use serde_json::{json, Map as JsonMap, Value};

use super::objects::{declarations, explicit_name, is_external};
use super::values::{boolean, stack_labels, text};

/// Translates one volume entry of a service in stack `stack` into an Engine API mount.
pub(super) fn mount(v: &Value, doc: &Value, stack: &str) -> Result<Value, String> {
    let (kind, source, target, read_only, nocopy) = match v {
        Value::Object(o) => (
            o.get("type").map(text).unwrap_or_else(|| "volume".into()),
            o.get("source").map(text).unwrap_or_default(),
            o.get("target").map(text).unwrap_or_default(),
            o.get("read_only").is_some_and(boolean),
            o.get("volume")
                .and_then(|x| x.get("nocopy"))
                .is_some_and(boolean),
        ),
        _ => {
            let s = text(v);
            let parts: Vec<&str> = s.split(':').collect();
            let (src, tgt, mode) = match parts.as_slice() {
                [t] => ("", *t, ""),
                [s, t] => (*s, *t, ""),
                [s, t, m] => (*s, *t, *m),
                _ => return Err(format!("invalid volume {s:?}")),
            };
            let kind = if src.starts_with('/') || src.starts_with('.') {
                "bind"
            } else {
                "volume"
            };
            (
                kind.to_string(),
                src.to_string(),
                tgt.to_string(),
                mode.split(',').any(|m| m == "ro"),
                mode.split(',').any(|m| m == "nocopy"),
            )
        }
    };
    let mut m = JsonMap::new();
    m.insert("Type".into(), json!(kind));
    m.insert("Target".into(), json!(target));
    if read_only {
        m.insert("ReadOnly".into(), json!(true));
    }
    if kind != "volume" {
        m.insert("Source".into(), json!(source));
        return Ok(Value::Object(m));
    }
    if source.is_empty() {
        return Ok(Value::Object(m));
    }
    let decl = declarations(doc, "volumes")
        .and_then(|d| d.get(&source))
        .ok_or_else(|| format!("undefined volume {source:?}"))?;
    let full_name = explicit_name(Some(decl)).unwrap_or_else(|| format!("{stack}_{source}"));
    m.insert("Source".into(), json!(full_name));
    if !is_external(Some(decl)) {
        m.insert("VolumeOptions".into(), volume_options(decl, stack, nocopy));
    }
    Ok(Value::Object(m))
}

/// The options a stack's own volume is created with on first use: its labels and driver.
fn volume_options(decl: &Value, stack: &str, nocopy: bool) -> Value {
    let mut opts = JsonMap::new();
    if nocopy {
        opts.insert("NoCopy".into(), json!(true));
    }
    opts.insert("Labels".into(), stack_labels(stack, decl.get("labels")));
    if let Some(driver) = decl.get("driver") {
        let mut dc = JsonMap::new();
        dc.insert("Name".into(), json!(text(driver)));
        if let Some(o) = decl.get("driver_opts") {
            dc.insert("Options".into(), o.clone());
        }
        opts.insert("DriverConfig".into(), Value::Object(dc));
    }
    Value::Object(opts)
}
