//! Which keys a compose file may hold, as docker/cli's compose schema (v3.13, the newest)
//! allows them: an unknown key is refused, `x-` keys are allowed where the schema allows
//! them. Also the properties `docker stack deploy` refuses outright, and those it ignores
//! with a warning.

use serde_json::{Map as JsonMap, Value};

/// Service keys docker refuses (its loader's forbidden properties), with what to do instead.
const FORBIDDEN: &[(&str, &str)] = &[
    ("extends", "it is not implemented by docker stack deploy"),
    (
        "volume_driver",
        "declare a top-level volume with a driver instead",
    ),
    (
        "volumes_from",
        "share a top-level volume between the services instead",
    ),
    ("cpu_quota", "set deploy.resources instead"),
    ("cpu_shares", "set deploy.resources instead"),
    ("cpuset", "set deploy.resources instead"),
    ("mem_limit", "set deploy.resources instead"),
    ("memswap_limit", "set deploy.resources instead"),
];

/// Service keys docker ignores with the warning "Ignoring unsupported options" (its loader's
/// unsupported properties) and those it ignores as deprecated.
pub const IGNORED: &[&str] = &[
    "build",
    "cgroupns_mode",
    "cgroup_parent",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
    "container_name",
    "expose",
];

const TOP: &[&str] = &[
    "version", "services", "networks", "volumes", "secrets", "configs",
];
const SERVICE: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "cgroupns_mode",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "depends_on",
    "deploy",
    "devices",
    "dns",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "external_links",
    "extra_hosts",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "links",
    "logging",
    "mac_address",
    "network_mode",
    "networks",
    "oom_score_adj",
    "pid",
    "ports",
    "privileged",
    "read_only",
    "restart",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "userns_mode",
    "volumes",
    "working_dir",
];
const DEPLOY: &[&str] = &[
    "endpoint_mode",
    "labels",
    "mode",
    "placement",
    "replicas",
    "resources",
    "restart_policy",
    "rollback_config",
    "update_config",
];
const UPDATE: &[&str] = &[
    "delay",
    "failure_action",
    "max_failure_ratio",
    "monitor",
    "order",
    "parallelism",
];
const HEALTHCHECK: &[&str] = &[
    "disable",
    "interval",
    "retries",
    "start_interval",
    "start_period",
    "test",
    "timeout",
];
const NETWORK: &[&str] = &[
    "attachable",
    "driver",
    "driver_opts",
    "external",
    "internal",
    "ipam",
    "labels",
    "name",
];
const VOLUME: &[&str] = &[
    "driver",
    "driver_opts",
    "external",
    "labels",
    "name",
    "x-cluster-spec",
];
const SECRET: &[&str] = &[
    "driver",
    "driver_opts",
    "environment",
    "external",
    "file",
    "labels",
    "name",
    "template_driver",
];
const CONFIG: &[&str] = &[
    "content",
    "environment",
    "external",
    "file",
    "labels",
    "name",
    "template_driver",
];
const FILE_REF: &[&str] = &["gid", "mode", "source", "target", "uid"];

/// Refuses the service keys docker refuses, naming the first one found.
pub fn check_forbidden(doc: &Value) -> Result<(), String> {
    for (name, svc) in doc
        .get("services")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        for (key, instead) in FORBIDDEN.iter().chain(super::spec_keys::INSTEAD) {
            if svc.get(*key).is_some() {
                return Err(format!(
                    "services.{name}: {key:?} is not supported: {instead}"
                ));
            }
        }
    }
    Ok(())
}

/// Refuses the first key the schema does not allow, naming where it is.
pub fn check_keys(doc: &Value) -> Result<(), String> {
    let root = doc
        .as_object()
        .ok_or("top-level object must be a mapping")?;
    let top: Vec<&str> = TOP.iter().chain(super::spec_keys::TOP).copied().collect();
    keys(root, &top, true, "")?;
    for (name, svc) in entries(doc, "services") {
        service(svc, &format!("services.{name}"))?;
    }
    for (kind, allowed) in [
        ("networks", NETWORK),
        ("volumes", VOLUME),
        ("secrets", SECRET),
        ("configs", CONFIG),
    ] {
        for (name, decl) in entries(doc, kind) {
            let path = format!("{kind}.{name}");
            let Some(d) = decl.as_object() else { continue };
            keys(d, allowed, true, &path)?;
            sub(d, "external", &["name"], &path)?;
            if kind == "networks" {
                sub(d, "ipam", &["config", "driver"], &path)?;
                items(
                    d.get("ipam"),
                    "config",
                    &["subnet"],
                    &format!("{path}.ipam"),
                )?;
            }
        }
    }
    Ok(())
}

/// The keys of one service and of the maps inside it.
fn service(svc: &Value, path: &str) -> Result<(), String> {
    let Some(s) = svc.as_object() else {
        return Err(format!("{path}: must be a mapping"));
    };
    let allowed: Vec<&str> = SERVICE
        .iter()
        .copied()
        .chain(super::spec_keys::service_keys())
        .collect();
    keys(s, &allowed, true, path)?;
    sub(s, "healthcheck", HEALTHCHECK, path)?;
    sub(s, "logging", &["driver", "options"], path)?;
    sub(s, "credential_spec", &["config", "file", "registry"], path)?;
    items(
        Some(svc),
        "ports",
        &["mode", "protocol", "published", "target"],
        path,
    )?;
    items(Some(svc), "secrets", FILE_REF, path)?;
    items(Some(svc), "configs", FILE_REF, path)?;
    let volume_keys = [
        "bind",
        "consistency",
        "read_only",
        "source",
        "target",
        "tmpfs",
        "type",
        "volume",
    ];
    items(Some(svc), "volumes", &volume_keys, path)?;
    if let Some(Value::Array(vols)) = s.get("volumes") {
        for (i, v) in vols.iter().enumerate() {
            if let Some(v) = v.as_object() {
                let p = format!("{path}.volumes[{i}]");
                sub(v, "bind", &["propagation"], &p)?;
                sub(v, "volume", &["nocopy"], &p)?;
                sub(v, "tmpfs", &["size"], &p)?;
            }
        }
    }
    if let Some(Value::Object(nets)) = s.get("networks") {
        let allowed = ["aliases", "driver_opts", "ipv4_address", "ipv6_address"];
        for (n, cfg) in nets {
            if let Some(c) = cfg.as_object() {
                keys(c, &allowed, false, &format!("{path}.networks.{n}"))?;
            }
        }
    }
    if let Some(Value::Object(limits)) = s.get("ulimits") {
        for (n, l) in limits {
            if let Some(l) = l.as_object() {
                keys(l, &["hard", "soft"], false, &format!("{path}.ulimits.{n}"))?;
            }
        }
    }
    let Some(Value::Object(d)) = s.get("deploy") else {
        return Ok(());
    };
    let path = format!("{path}.deploy");
    keys(d, DEPLOY, false, &path)?;
    sub(d, "update_config", UPDATE, &path)?;
    sub(d, "rollback_config", UPDATE, &path)?;
    sub(d, "resources", &["limits", "reservations"], &path)?;
    sub(
        d,
        "restart_policy",
        &["condition", "delay", "max_attempts", "window"],
        &path,
    )?;
    sub(
        d,
        "placement",
        &["constraints", "max_replicas_per_node", "preferences"],
        &path,
    )?;
    items(
        d.get("placement"),
        "preferences",
        &["spread"],
        &format!("{path}.placement"),
    )?;
    if let Some(Value::Object(r)) = d.get("resources") {
        let rp = format!("{path}.resources");
        sub(r, "limits", &["cpus", "memory", "pids"], &rp)?;
        sub(
            r,
            "reservations",
            &["cpus", "generic_resources", "memory"],
            &rp,
        )?;
        let gp = format!("{rp}.reservations");
        items(
            r.get("reservations"),
            "generic_resources",
            &["discrete_resource_spec"],
            &gp,
        )?;
        if let Some(Value::Array(g)) = r
            .get("reservations")
            .and_then(|x| x.get("generic_resources"))
        {
            for (i, x) in g.iter().enumerate() {
                if let Some(x) = x.as_object() {
                    let p = format!("{gp}.generic_resources[{i}]");
                    sub(x, "discrete_resource_spec", &["kind", "value"], &p)?;
                }
            }
        }
    }
    Ok(())
}

/// The named entries under a top-level key.
fn entries<'a>(doc: &'a Value, kind: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    doc.get(kind)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// Refuses a key of `map` that is not in `allowed` (nor an `x-` key when `x_ok`).
fn keys(
    map: &JsonMap<String, Value>,
    allowed: &[&str],
    x_ok: bool,
    path: &str,
) -> Result<(), String> {
    for k in map.keys() {
        if !(allowed.contains(&k.as_str()) || x_ok && k.starts_with("x-")) {
            return Err(if path.is_empty() {
                format!("unknown top-level key {k:?}")
            } else {
                format!("{path}: unknown key {k:?}")
            });
        }
    }
    Ok(())
}

/// Checks the keys of the map under `key`, when there is one.
fn sub(
    map: &JsonMap<String, Value>,
    key: &str,
    allowed: &[&str],
    path: &str,
) -> Result<(), String> {
    match map.get(key) {
        Some(Value::Object(m)) => keys(m, allowed, false, &format!("{path}.{key}")),
        _ => Ok(()),
    }
}

/// Checks the keys of each map in the list under `key` of `parent`.
fn items(parent: Option<&Value>, key: &str, allowed: &[&str], path: &str) -> Result<(), String> {
    let Some(Value::Array(list)) = parent.and_then(|p| p.get(key)) else {
        return Ok(());
    };
    for (i, item) in list.iter().enumerate() {
        if let Some(m) = item.as_object() {
            keys(m, allowed, false, &format!("{path}.{key}[{i}]"))?;
        }
    }
    Ok(())
}
