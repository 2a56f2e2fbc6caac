//! `compose::` — compose files: `${VAR-default}` interpolation and translation of services into
//! swarm service specs the way `docker stack deploy` does it (docker/cli's `compose/convert`).
//! Nothing here knows about Wavelet; any stack's compose file goes through the same code.

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Module};
use serde_json::{json, Map as JsonMap, Value};

use super::{script_err, to_dynamic, to_json, Host, ScriptResult};

/// The label `docker stack` uses to group a stack's objects.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// Substitutes `$VAR`, `${VAR}`, `${VAR-default}`, `${VAR:-default}`, `${VAR?err}`,
/// `${VAR:?err}` and `$$` in one string. Unset variables without a default become "".
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            out.push_str(&expand(&body_start[..end], env)?);
            rest = &body_start[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(env.get(&after[..len]).map(String::as_str).unwrap_or(""));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(body: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(format!("invalid interpolation ${{{body}}}"));
    }
    let value = env.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    Ok(match op {
        "" => value.cloned().unwrap_or_default(),
        _ if op.starts_with(":-") => {
            if set_nonempty {
                value.unwrap().clone()
            } else {
                interpolate(&op[2..], env)?
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => v.clone(),
            None => interpolate(&op[1..], env)?,
        },
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let strict = op.starts_with(':');
            let msg = &op[if strict { 2 } else { 1 }..];
            if (strict && !set_nonempty) || value.is_none() {
                return Err(format!(
                    "required variable {name} is missing a value: {msg}"
                ));
            }
            value.unwrap().clone()
        }
        _ => return Err(format!("invalid interpolation ${{{body}}}")),
    })
}

/// Interpolates every string scalar of a parsed compose document.
fn interpolate_value(v: &mut Value, env: &BTreeMap<String, String>) -> Result<(), String> {
    match v {
        Value::String(s) => *s = interpolate(s, env)?,
        Value::Array(a) => a.iter_mut().try_for_each(|x| interpolate_value(x, env))?,
        Value::Object(o) => o.values_mut().try_for_each(|x| interpolate_value(x, env))?,
        _ => {}
    }
    Ok(())
}

/// Parses compose YAML and interpolates it with `env`.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Value, String> {
    let mut doc: Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid compose file: {e}"))?;
    interpolate_value(&mut doc, env)?;
    if !doc.get("services").is_some_and(Value::is_object) {
        return Err("invalid compose file: no `services` map".into());
    }
    cast_typed_fields(&mut doc);
    Ok(doc)
}

/// After interpolation `replicas: ${N-3}` is the string "3"; like docker/cli's loader, turn
/// such values back into the numbers and booleans the compose schema wants.
fn cast_typed_fields(doc: &mut Value) {
    fn cast(v: Option<&mut Value>, boolean_field: bool) {
        let Some(v) = v else { return };
        let Some(s) = v.as_str().map(str::trim) else {
            return;
        };
        if boolean_field {
            match s {
                "true" | "yes" | "y" | "1" | "True" => *v = Value::Bool(true),
                "false" | "no" | "n" | "0" | "False" | "" => *v = Value::Bool(false),
                _ => {}
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

fn int(v: &Value, what: &str) -> Result<i64, String> {
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

fn boolean(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.as_str(), "true" | "yes" | "y" | "1" | "True"),
        _ => false,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A command as compose allows it: a list, or a string split like a shell would.
fn command_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(a) => Ok(a.iter().map(text).collect()),
        Value::String(s) => shell_words::split(s).map_err(|e| format!("command {s:?}: {e}")),
        _ => Err(format!("invalid command {v}")),
    }
}

/// KEY=VALUE lists or maps, as for environment and labels.
fn key_values(v: Option<&Value>) -> BTreeMap<String, Option<String>> {
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

fn stack_labels(stack: &str, v: Option<&Value>) -> Value {
    let mut labels: JsonMap<String, Value> = key_values(v)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.unwrap_or_default())))
        .collect();
    labels.insert(NAMESPACE_LABEL.into(), Value::String(stack.into()));
    Value::Object(labels)
}

/// Expands one compose port entry (short or long syntax) into Engine API port configs.
fn port_configs(p: &Value) -> Result<Vec<Value>, String> {
    let one = |target: i64, published: i64, proto: &str, mode: &str| {
        let mut m = JsonMap::new();
        m.insert("Protocol".into(), json!(proto));
        m.insert("TargetPort".into(), json!(target));
        if published != 0 {
            m.insert("PublishedPort".into(), json!(published));
        }
        m.insert("PublishMode".into(), json!(mode));
        Value::Object(m)
    };
    if let Value::Object(o) = p {
        let target = int(o.get("target").ok_or("port without target")?, "port target")?;
        let published = match o.get("published") {
            Some(v) if !v.is_null() && !text(v).is_empty() => int(v, "published port")?,
            _ => 0,
        };
        let proto = o.get("protocol").map(text).unwrap_or_else(|| "tcp".into());
        let mode = o.get("mode").map(text).unwrap_or_else(|| "ingress".into());
        return Ok(vec![one(target, published, &proto, &mode)]);
    }
    let spec = text(p);
    let (spec, proto) = match spec.rsplit_once('/') {
        Some((s, pr)) => (s.to_string(), pr.to_string()),
        None => (spec.clone(), "tcp".to_string()),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (published, target) = match parts.as_slice() {
        [t] => ("", *t),
        [p, t] => (*p, *t),
        [_ip, p, t] => (*p, *t),
        _ => return Err(format!("invalid port {spec:?}")),
    };
    let range = |s: &str| -> Result<(i64, i64), String> {
        let bad = || format!("invalid port {spec:?}");
        match s.split_once('-') {
            Some((a, b)) => Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)),
            None => {
                let n = s.parse().map_err(|_| bad())?;
                Ok((n, n))
            }
        }
    };
    let (t0, t1) = range(target)?;
    let (p0, p1) = if published.is_empty() {
        (0, 0)
    } else {
        range(published)?
    };
    if p0 != 0 && p1 - p0 != t1 - t0 {
        return Err(format!("port ranges of {spec:?} differ in size"));
    }
    Ok((0..=t1 - t0)
        .map(|i| one(t0 + i, if p0 == 0 { 0 } else { p0 + i }, &proto, "ingress"))
        .collect())
}

/// Translates one volume entry into an Engine API mount.
fn mount(v: &Value, volumes: &JsonMap<String, Value>, stack: &str) -> Result<Value, String> {
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
    let decl = volumes
        .get(&source)
        .ok_or_else(|| format!("undefined volume {source:?}"))?;
    let external = decl.get("external").is_some_and(boolean);
    let name = decl.get("name").map(text).filter(|n| !n.is_empty());
    let source = name.unwrap_or_else(|| format!("{stack}_{source}"));
    m.insert("Source".into(), json!(source));
    if !external {
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
        m.insert("VolumeOptions".into(), Value::Object(opts));
    }
    Ok(Value::Object(m))
}

/// Service keys that `docker stack deploy` ignores; they are accepted and reported.
const IGNORED_KEYS: &[&str] = &[
    "build",
    "container_name",
    "depends_on",
    "restart",
    "links",
    "network_mode",
    "cgroup_parent",
    "devices",
    "security_opt",
    "userns_mode",
];

/// Translates service `name` of an interpolated compose document into an Engine API service
/// spec for stack `stack`. Unsupported keys are errors, ignored ones are returned as warnings.
pub fn service_spec(
    doc: &Value,
    stack: &str,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    let svc = doc["services"]
        .get(name)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("no service {name:?} in the compose file"))?;
    let ctx = |e: String| format!("service {name}: {e}");
    let empty = JsonMap::new();
    let volumes = doc
        .get("volumes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let deploy = svc
        .get("deploy")
        .and_then(Value::as_object)
        .unwrap_or(&empty);

    let mut cs = JsonMap::new();
    let image = svc
        .get("image")
        .map(text)
        .ok_or_else(|| ctx("no image".into()))?;
    cs.insert("Image".into(), json!(image.clone()));
    cs.insert("Labels".into(), stack_labels(stack, svc.get("labels")));
    if let Some(v) = svc.get("entrypoint") {
        cs.insert("Command".into(), json!(command_list(v).map_err(ctx)?));
    }
    if let Some(v) = svc.get("command") {
        cs.insert("Args".into(), json!(command_list(v).map_err(ctx)?));
    }
    let env: Vec<String> = key_values(svc.get("environment"))
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect();
    if !env.is_empty() {
        cs.insert("Env".into(), json!(env));
    }
    for (key, field) in [
        ("hostname", "Hostname"),
        ("working_dir", "Dir"),
        ("user", "User"),
        ("stop_signal", "StopSignal"),
    ] {
        if let Some(v) = svc.get(key) {
            cs.insert(field.into(), json!(text(v)));
        }
    }
    for (key, field) in [
        ("tty", "TTY"),
        ("stdin_open", "OpenStdin"),
        ("read_only", "ReadOnly"),
        ("init", "Init"),
    ] {
        if let Some(v) = svc.get(key) {
            cs.insert(field.into(), json!(boolean(v)));
        }
    }
    if let Some(v) = svc.get("stop_grace_period") {
        cs.insert(
            "StopGracePeriod".into(),
            json!(duration_ns(v).map_err(ctx)?),
        );
    }
    if let Some(Value::Array(hosts)) = svc.get("extra_hosts") {
        // The Engine's format is "IP host", compose's "host:IP".
        let hosts: Vec<String> = hosts
            .iter()
            .map(|h| match text(h).split_once(':') {
                Some((host, ip)) => format!("{ip} {host}"),
                None => text(h),
            })
            .collect();
        cs.insert("Hosts".into(), json!(hosts));
    }
    if let Some(Value::Object(hc)) = svc.get("healthcheck") {
        let mut h = JsonMap::new();
        if hc.get("disable").is_some_and(boolean) {
            h.insert("Test".into(), json!(["NONE"]));
        } else {
            match hc.get("test") {
                Some(Value::String(s)) => {
                    h.insert("Test".into(), json!(["CMD-SHELL", s]));
                }
                Some(Value::Array(a)) => {
                    h.insert("Test".into(), Value::Array(a.clone()));
                }
                _ => {}
            }
            for (key, field) in [
                ("interval", "Interval"),
                ("timeout", "Timeout"),
                ("start_period", "StartPeriod"),
            ] {
                if let Some(v) = hc.get(key) {
                    h.insert(field.into(), json!(duration_ns(v).map_err(ctx)?));
                }
            }
            if let Some(v) = hc.get("retries") {
                h.insert("Retries".into(), json!(int(v, "retries").map_err(ctx)?));
            }
        }
        cs.insert("HealthCheck".into(), Value::Object(h));
    }
    if let Some(Value::Array(vols)) = svc.get("volumes") {
        let mounts: Result<Vec<Value>, String> =
            vols.iter().map(|v| mount(v, volumes, stack)).collect();
        cs.insert("Mounts".into(), json!(mounts.map_err(ctx)?));
    }

    // docker/cli always sends an empty Privileges block; sending the same keeps specs equal.
    cs.insert("Privileges".into(), json!({"NoNewPrivileges": false}));

    let mut task = JsonMap::new();
    task.insert("ContainerSpec".into(), Value::Object(cs));

    // Networks: the stack's `default` unless the service names its own.
    let mut nets: Vec<(String, Vec<String>)> = Vec::new();
    let declared = doc.get("networks").and_then(Value::as_object);
    let net_name = |n: &str| -> String {
        let decl = declared.and_then(|d| d.get(n));
        let external = decl.and_then(|d| d.get("external")).is_some_and(boolean);
        match decl.and_then(|d| d.get("name")).map(text) {
            Some(explicit) if !explicit.is_empty() => explicit,
            _ if external => n.to_string(),
            _ => format!("{stack}_{n}"),
        }
    };
    match svc.get("networks") {
        Some(Value::Array(a)) => {
            for n in a {
                nets.push((net_name(&text(n)), vec![name.to_string()]));
            }
        }
        Some(Value::Object(o)) => {
            for (n, cfg) in o {
                let mut aliases = vec![name.to_string()];
                if let Some(Value::Array(extra)) = cfg.get("aliases") {
                    aliases.extend(extra.iter().map(text));
                }
                nets.push((net_name(n), aliases));
            }
        }
        _ => nets.push((format!("{stack}_default"), vec![name.to_string()])),
    }
    nets.sort();
    task.insert(
        "Networks".into(),
        Value::Array(
            nets.into_iter()
                .map(|(target, aliases)| json!({"Target": target, "Aliases": aliases}))
                .collect(),
        ),
    );

    if let Some(Value::Object(rp)) = deploy.get("restart_policy") {
        let mut r = JsonMap::new();
        if let Some(v) = rp.get("condition") {
            r.insert("Condition".into(), json!(text(v)));
        }
        for (key, field) in [("delay", "Delay"), ("window", "Window")] {
            if let Some(v) = rp.get(key) {
                r.insert(field.into(), json!(duration_ns(v).map_err(ctx)?));
            }
        }
        if let Some(v) = rp.get("max_attempts") {
            r.insert(
                "MaxAttempts".into(),
                json!(int(v, "max_attempts").map_err(ctx)?),
            );
        }
        task.insert("RestartPolicy".into(), Value::Object(r));
    }
    if let Some(Value::Object(pl)) = deploy.get("placement") {
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
                json!(int(v, "max_replicas_per_node").map_err(ctx)?),
            );
        }
        task.insert("Placement".into(), Value::Object(p));
    }
    if let Some(Value::Object(res)) = deploy.get("resources") {
        let mut r = JsonMap::new();
        for (key, field) in [("limits", "Limits"), ("reservations", "Reservations")] {
            if let Some(Value::Object(x)) = res.get(key) {
                let mut y = JsonMap::new();
                if let Some(c) = x.get("cpus") {
                    let cpus: f64 = text(c)
                        .parse()
                        .map_err(|_| ctx(format!("invalid cpus {c}")))?;
                    y.insert("NanoCPUs".into(), json!((cpus * 1e9) as i64));
                }
                if let Some(m) = x.get("memory") {
                    y.insert("MemoryBytes".into(), json!(bytes(m).map_err(ctx)?));
                }
                r.insert(field.into(), Value::Object(y));
            }
        }
        task.insert("Resources".into(), Value::Object(r));
    }
    if let Some(Value::Object(lg)) = svc.get("logging") {
        task.insert(
            "LogDriver".into(),
            json!({"Name": lg.get("driver").map(text).unwrap_or_default(),
                   "Options": lg.get("options").cloned().unwrap_or(json!({}))}),
        );
    }

    let mut spec = JsonMap::new();
    spec.insert("Name".into(), json!(format!("{stack}_{name}")));
    spec.insert("Labels".into(), stack_labels(stack, deploy.get("labels")));
    spec.insert("TaskTemplate".into(), Value::Object(task));

    let mode = deploy.get("mode").map(text).unwrap_or_default();
    let replicas = match deploy.get("replicas") {
        Some(v) if !v.is_null() => int(v, "replicas").map_err(ctx)?,
        _ => 1,
    };
    spec.insert(
        "Mode".into(),
        match mode.as_str() {
            "global" => json!({"Global": {}}),
            "" | "replicated" => json!({"Replicated": {"Replicas": replicas}}),
            m => return Err(ctx(format!("unknown deploy mode {m:?}"))),
        },
    );
    for (key, field) in [
        ("update_config", "UpdateConfig"),
        ("rollback_config", "RollbackConfig"),
    ] {
        if let Some(Value::Object(u)) = deploy.get(key) {
            let mut c = JsonMap::new();
            let par = match u.get("parallelism") {
                Some(v) => int(v, "parallelism").map_err(ctx)?,
                None => 1,
            };
            c.insert("Parallelism".into(), json!(par));
            for (k, f) in [("delay", "Delay"), ("monitor", "Monitor")] {
                if let Some(v) = u.get(k) {
                    c.insert(f.into(), json!(duration_ns(v).map_err(ctx)?));
                }
            }
            if let Some(v) = u.get("failure_action") {
                c.insert("FailureAction".into(), json!(text(v)));
            }
            if let Some(v) = u.get("max_failure_ratio") {
                let r: f64 = text(v)
                    .parse()
                    .map_err(|_| ctx("invalid max_failure_ratio".into()))?;
                c.insert("MaxFailureRatio".into(), json!(r));
            }
            if let Some(v) = u.get("order") {
                c.insert("Order".into(), json!(text(v)));
            }
            spec.insert(field.into(), Value::Object(c));
        }
    }
    let mut ports = Vec::new();
    if let Some(Value::Array(ps)) = svc.get("ports") {
        for p in ps {
            ports.extend(port_configs(p).map_err(ctx)?);
        }
    }
    ports.sort_by_key(|p| p.get("PublishedPort").and_then(Value::as_i64).unwrap_or(0));
    let mut endpoint = JsonMap::new();
    let endpoint_mode = deploy.get("endpoint_mode").map(text).unwrap_or_default();
    if !endpoint_mode.is_empty() {
        if endpoint_mode != "vip" && endpoint_mode != "dnsrr" {
            return Err(ctx(format!("unknown endpoint_mode {endpoint_mode:?}")));
        }
        endpoint.insert("Mode".into(), json!(endpoint_mode.to_lowercase()));
    }
    if !ports.is_empty() {
        endpoint.insert("Ports".into(), Value::Array(ports));
    }
    spec.insert("EndpointSpec".into(), Value::Object(endpoint));

    let known = [
        "image",
        "command",
        "entrypoint",
        "environment",
        "labels",
        "hostname",
        "working_dir",
        "user",
        "stop_signal",
        "tty",
        "stdin_open",
        "read_only",
        "init",
        "stop_grace_period",
        "extra_hosts",
        "healthcheck",
        "volumes",
        "deploy",
        "networks",
        "ports",
        "logging",
    ];
    for key in svc.keys() {
        if IGNORED_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "service {name}: ignoring {key:?} (not used on a swarm)"
            ));
        } else if !known.contains(&key.as_str()) {
            return Err(ctx(format!("the key {key:?} is not supported by wsm")));
        }
    }
    Ok(Value::Object(spec))
}

/// The networks a stack's services use that the stack itself must create, with their specs.
pub fn stack_networks(doc: &Value, stack: &str) -> Result<Vec<(String, Value)>, String> {
    let mut used = std::collections::BTreeSet::new();
    for (_, svc) in doc["services"].as_object().into_iter().flatten() {
        match svc.get("networks") {
            Some(Value::Array(a)) => used.extend(a.iter().map(text)),
            Some(Value::Object(o)) => used.extend(o.keys().cloned()),
            _ => {
                used.insert("default".to_string());
            }
        }
    }
    let declared = doc.get("networks").and_then(Value::as_object);
    let mut out = Vec::new();
    for n in used {
        let decl = declared.and_then(|d| d.get(&n));
        if decl.and_then(|d| d.get("external")).is_some_and(boolean) {
            continue;
        }
        if n != "default" && decl.is_none() {
            return Err(format!("a service uses the undefined network {n:?}"));
        }
        let name = decl
            .and_then(|d| d.get("name"))
            .map(text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{stack}_{n}"));
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

/// Translates every service of the document: (service specs by short name, warnings).
pub fn translate(
    doc: &Value,
    stack: &str,
) -> Result<(BTreeMap<String, Value>, Vec<String>), String> {
    let mut warnings = Vec::new();
    let mut specs = BTreeMap::new();
    for name in doc["services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        specs.insert(name.clone(), service_spec(doc, stack, name, &mut warnings)?);
    }
    Ok((specs, warnings))
}

fn env_map(env: &Map) -> BTreeMap<String, String> {
    env.iter()
        .filter(|(_, v)| !v.is_unit())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Registers the `compose::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();
    let _ = host;

    // compose::parse(yaml_text, env) — parse and interpolate a compose file into a map.
    m.set_native_fn("parse", |text: &str, env: Map| -> ScriptResult<Dynamic> {
        let doc = parse(text, &env_map(&env)).map_err(script_err)?;
        to_dynamic(&doc)
    });

    // compose::interpolate(text, env) — `${VAR-default}` substitution on one string.
    m.set_native_fn(
        "interpolate",
        |text: &str, env: Map| -> ScriptResult<String> {
            interpolate(text, &env_map(&env)).map_err(script_err)
        },
    );

    // compose::to_yaml(doc) — render a (modified) compose document as YAML.
    m.set_native_fn("to_yaml", |doc: Dynamic| -> ScriptResult<String> {
        serde_yaml::to_string(&to_json(&doc)?).map_err(script_err)
    });

    // compose::specs(doc, stack) — the Engine API service specs `deploy` would send.
    m.set_native_fn(
        "specs",
        |doc: Dynamic, stack: &str| -> ScriptResult<Dynamic> {
            let (specs, _) = translate(&to_json(&doc)?, stack).map_err(script_err)?;
            to_dynamic(&specs)
        },
    );

    // compose::plan(doc, stack) — what `e.deploy` creates: #{services: [#{name, spec}],
    // networks: [#{name, spec}], warnings: [..]}, services in deploy order.
    m.set_native_fn(
        "plan",
        |doc: Dynamic, stack: &str| -> ScriptResult<Dynamic> {
            let doc = to_json(&doc)?;
            let (specs, warnings) = translate(&doc, stack).map_err(script_err)?;
            let networks = stack_networks(&doc, stack).map_err(script_err)?;
            let services: Vec<Value> = specs
                .into_iter()
                .map(|(short, spec)| json!({"name": format!("{stack}_{short}"), "spec": spec}))
                .collect();
            let networks: Vec<Value> = networks
                .into_iter()
                .map(|(name, spec)| json!({"name": name, "spec": spec}))
                .collect();
            to_dynamic(&json!({"services": services, "networks": networks, "warnings": warnings}))
        },
    );

    engine.register_static_module("compose", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn interpolation_forms() {
        let e = env(&[("A", "1"), ("E", "")]);
        assert_eq!(
            interpolate("${A-x}/${B-x}/${E-x}/${E:-y}/$A/$$A", &e).unwrap(),
            "1/x//y/1/$A"
        );
        assert_eq!(interpolate("{{.Task.Slot}}", &e).unwrap(), "{{.Task.Slot}}");
        assert!(interpolate("${B?needed}", &e).is_err());
        assert!(interpolate("${A", &e).is_err());
        assert_eq!(
            interpolate("$(touch /tmp/x)", &e).unwrap(),
            "$(touch /tmp/x)"
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration_ns(&json!("30s")).unwrap(), 30_000_000_000);
        assert_eq!(duration_ns(&json!("1m30s")).unwrap(), 90_000_000_000);
        assert_eq!(duration_ns(&json!("500ms")).unwrap(), 500_000_000);
        assert!(duration_ns(&json!("5x")).is_err());
        assert_eq!(bytes(&json!("512M")).unwrap(), 512 << 20);
        assert_eq!(bytes(&json!("1gb")).unwrap(), 1 << 30);
    }

    #[test]
    fn ports_expand_ranges() {
        let p = port_configs(&json!("3000-3002")).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2]["TargetPort"], 3002);
        assert!(p[0].get("PublishedPort").is_none());
        let p = port_configs(&json!("8080:80/udp")).unwrap();
        assert_eq!(
            p[0],
            json!({"Protocol":"udp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"})
        );
        let p = port_configs(&json!({"target": 80, "mode": "host"})).unwrap();
        assert_eq!(p[0]["PublishMode"], "host");
        assert!(port_configs(&json!("1-3:1-2")).is_err());
    }

    #[test]
    fn translates_a_service_like_stack_deploy() {
        let doc = parse(
            "services:\n  web:\n    image: \"${IMG-nginx}\"\n    command: \"run --x 'a b'\"\n    environment:\n      - B=2\n      - A=1\n    volumes: [\"data:/d\"]\n    deploy:\n      replicas: ${N-3}\n      update_config: {delay: 30s}\n    healthcheck: {test: \"check\", interval: 5s}\nvolumes:\n  data:\n    name: \"{{.Service.Name}}_{{.Task.Slot}}\"\n",
            &env(&[]),
        )
        .unwrap();
        let mut w = Vec::new();
        let s = service_spec(&doc, "st", "web", &mut w).unwrap();
        assert_eq!(s["Name"], "st_web");
        assert_eq!(s["Labels"][NAMESPACE_LABEL], "st");
        let cs = &s["TaskTemplate"]["ContainerSpec"];
        assert_eq!(cs["Image"], "nginx");
        assert_eq!(cs["Args"], json!(["run", "--x", "a b"]));
        assert_eq!(cs["Env"], json!(["A=1", "B=2"]));
        assert_eq!(cs["HealthCheck"]["Test"], json!(["CMD-SHELL", "check"]));
        assert_eq!(
            cs["Mounts"][0]["Source"],
            "{{.Service.Name}}_{{.Task.Slot}}"
        );
        assert_eq!(s["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(s["UpdateConfig"]["Parallelism"], 1);
        assert_eq!(s["TaskTemplate"]["Networks"][0]["Target"], "st_default");
        let bad = parse(
            "services:\n  x:\n    image: i\n    privileged: true\n",
            &env(&[]),
        )
        .unwrap();
        assert!(service_spec(&bad, "st", "x", &mut w).is_err());
    }
}
