//! The container-level service keys beyond the basics, as docker/cli's `convert/service.go`
//! translates them: ulimits, sysctls, capabilities, DNS, extra hosts, credential specs, the
//! legacy `restart`, and the references to the stack's secrets and configs.

use serde_json::{json, Map as JsonMap, Value};

use super::draft::Draft;
use super::files::object_name;
use super::values::{int, key_values, text};

/// `ulimits`: a number (soft = hard) or `{soft, hard}` per name, sorted by name.
pub(super) fn ulimits(d: &mut Draft, v: &Value) -> Result<(), String> {
    let Value::Object(limits) = v else {
        return Ok(());
    };
    let mut out: Vec<Value> = Vec::new();
    for (name, l) in limits {
        let (soft, hard) = match l {
            Value::Object(o) => (
                int(o.get("soft").unwrap_or(&json!(0)), "ulimit soft")?,
                int(o.get("hard").unwrap_or(&json!(0)), "ulimit hard")?,
            ),
            single => {
                let n = int(single, "ulimit")?;
                (n, n)
            }
        };
        out.push(json!({"Name": name, "Soft": soft, "Hard": hard}));
    }
    d.contain("Ulimits", Value::Array(out))
}

/// `sysctls`: a KEY=VALUE list or a map.
pub(super) fn sysctls(d: &mut Draft, v: &Value) -> Result<(), String> {
    let map: JsonMap<String, Value> = key_values(Some(v))
        .into_iter()
        .map(|(k, v)| (k, json!(v.unwrap_or_default())))
        .collect();
    d.contain("Sysctls", Value::Object(map))
}

/// A capability as docker normalises it: upper case with a `CAP_` prefix, except `ALL`.
fn capability(c: &Value) -> String {
    let c = text(c).trim().to_uppercase();
    if c == "ALL" || c == "RESET" || c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

/// `cap_add` and `cap_drop` together, as docker's `EffectiveCapAddCapDrop`: `ALL` trumps the
/// rest, an added capability is not dropped, both sorted.
pub(super) fn capabilities(d: &mut Draft, svc: &JsonMap<String, Value>) -> Result<(), String> {
    let set = |key: &str| -> std::collections::BTreeSet<String> {
        let all: std::collections::BTreeSet<String> = svc
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(capability)
            .filter(|c| c != "RESET")
            .collect();
        if all.contains("ALL") {
            ["ALL".to_string()].into()
        } else {
            all
        }
    };
    let add = set("cap_add");
    let drop: Vec<String> = set("cap_drop")
        .into_iter()
        .filter(|c| !add.contains(c))
        .collect();
    if !add.is_empty() {
        d.contain("CapabilityAdd", json!(add))?;
    }
    if !drop.is_empty() {
        d.contain("CapabilityDrop", json!(drop))?;
    }
    Ok(())
}

/// A string or a list of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(text).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![text(other)],
    }
}

/// `dns` and `dns_search` into the DNS config (nameservers that are not IPs are dropped, as
/// docker drops them).
pub(super) fn dns(d: &mut Draft, svc: &JsonMap<String, Value>) -> Result<(), String> {
    let servers: Vec<String> = strings(svc.get("dns"))
        .into_iter()
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
        .collect();
    let search = strings(svc.get("dns_search"));
    if svc.contains_key("dns") || svc.contains_key("dns_search") {
        let mut c = JsonMap::new();
        if !servers.is_empty() {
            c.insert("Nameservers".into(), json!(servers));
        }
        if !search.is_empty() {
            c.insert("Search".into(), json!(search));
        }
        d.contain("DNSConfig", Value::Object(c))?;
    }
    Ok(())
}

/// `extra_hosts`: compose's "host:IP" (or "host=IP", or a map) into the Engine's "IP host";
/// entries without an IP are dropped, as docker drops them.
pub(super) fn extra_hosts(d: &mut Draft, v: &Value) -> Result<(), String> {
    let pairs: Vec<(String, String)> = match v {
        Value::Object(o) => o.iter().map(|(h, ip)| (h.clone(), text(ip))).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|h| {
                let h = text(h);
                let (host, ip) = h.split_once('=').or_else(|| h.split_once(':'))?;
                Some((host.to_string(), ip.to_string()))
            })
            .collect(),
        _ => Vec::new(),
    };
    let hosts: Vec<String> = pairs
        .into_iter()
        .map(|(host, ip)| {
            let ip = ip
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(&ip)
                .to_string();
            format!("{ip} {host}")
        })
        .collect();
    d.contain("Hosts", json!(hosts))
}

/// The legacy `restart` as the restart policy, when `deploy.restart_policy` is absent.
pub(super) fn restart(d: &mut Draft, v: &Value) -> Result<(), String> {
    let r = text(v);
    let (name, count) = match r.split_once(':') {
        Some((n, c)) => (
            n.to_string(),
            c.parse::<i64>()
                .map_err(|_| format!("invalid restart policy {r:?}"))?,
        ),
        None => (r.clone(), 0),
    };
    let condition = match name.as_str() {
        "" | "no" => return Ok(()),
        "always" | "unless-stopped" => "any",
        "on-failure" => "on-failure",
        other => return Err(format!("invalid restart policy: unknown policy {other:?}")),
    };
    let mut p = JsonMap::new();
    p.insert("Condition".into(), json!(condition));
    if count > 0 {
        p.insert("MaxAttempts".into(), json!(count));
    }
    d.task.insert("RestartPolicy".into(), Value::Object(p));
    Ok(())
}

/// `secrets` or `configs` of a service (`kind`): references to the stack's objects by the
/// name `deploy` gives them, sorted by that name; `deploy` fills in their ids.
pub(super) fn file_refs(d: &mut Draft, kind: &str, v: &Value) -> Result<Vec<Value>, String> {
    let Value::Array(list) = v else {
        return Ok(Vec::new());
    };
    let (name_field, what) = match kind {
        "secrets" => ("SecretName", "secret"),
        _ => ("ConfigName", "config"),
    };
    let mut refs = Vec::new();
    for r in list {
        let (source, o) = match r {
            Value::Object(o) => (o.get("source").map(text).unwrap_or_default(), Some(o)),
            other => (text(other), None),
        };
        let name = object_name(d.doc, d.stack, kind, &source)
            .ok_or_else(|| format!("undefined {what} {source:?}"))??;
        let field = |k: &str| o.and_then(|o| o.get(k)).map(text).filter(|s| !s.is_empty());
        let mode = match o.and_then(|o| o.get("mode")) {
            Some(m) => int(m, "mode")?,
            None => 0o444,
        };
        refs.push(json!({
            "File": {"Name": field("target").unwrap_or_else(|| source.clone()),
                     "UID": field("uid").unwrap_or_else(|| "0".into()),
                     "GID": field("gid").unwrap_or_else(|| "0".into()),
                     "Mode": mode},
            name_field: name,
        }));
    }
    refs.sort_by(|a, b| text(&a[name_field]).cmp(&text(&b[name_field])));
    Ok(refs)
}

/// `credential_spec`: one of config, file or registry; a config is also referenced as a
/// runtime config, which `deploy` turns into its id.
pub(super) fn credential_spec(d: &mut Draft, v: &Value) -> Result<Option<Value>, String> {
    let Value::Object(c) = v else {
        return Ok(None);
    };
    let set: Vec<&str> = ["config", "file", "registry"]
        .into_iter()
        .filter(|k| c.get(*k).is_some_and(|x| !text(x).is_empty()))
        .collect();
    match set.len() {
        0 => return Ok(None),
        1 => {}
        _ => {
            return Err(format!(
                "invalid credential spec: cannot specify both {}",
                set.join(" and ")
            ))
        }
    }
    let key = set[0];
    let value = text(&c[key]);
    let mut spec = JsonMap::new();
    let mut runtime_ref = None;
    if key == "config" {
        let name = object_name(d.doc, d.stack, "configs", &value)
            .ok_or_else(|| format!("undefined config {value:?}"))??;
        runtime_ref = Some(json!({"ConfigName": name, "Runtime": {}}));
        spec.insert("Config".into(), json!(name));
    } else {
        let field = if key == "file" { "File" } else { "Registry" };
        spec.insert(field.into(), json!(value));
    }
    d.contain(
        "Privileges",
        json!({"NoNewPrivileges": false, "CredentialSpec": spec}),
    )?;
    Ok(runtime_ref)
}
