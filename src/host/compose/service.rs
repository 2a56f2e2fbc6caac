//! One compose service into an Engine API service spec, the way docker/cli's
//! `compose/convert` does it. `KEYS` pairs every service key wsm accepts with the function
//! that applies it, so the accepted keys are the table's and each key's handling is beside it.

use serde_json::{json, Map as JsonMap, Value};

use super::draft::Draft;
use super::objects::{attached_networks, network_name};
use super::values::{
    boolean, command_list, duration_ns, insert_durations, int, key_values, stack_labels, text,
};
use super::{deploy, mounts, ports};

/// Applies one compose key's value to the spec being built.
type Apply = fn(&mut Draft, &Value) -> Result<(), String>;

/// Every service key wsm accepts, with what applies it. They run in this order whatever the
/// order in the file, so a service with several errors always reports the same one first.
const KEYS: &[(&str, Apply)] = &[
    ("image", |d, v| d.contain("Image", json!(text(v)))),
    ("labels", |d, v| {
        d.contain("Labels", stack_labels(d.stack, Some(v)))
    }),
    ("entrypoint", |d, v| {
        d.contain("Command", json!(command_list(v)?))
    }),
    ("command", |d, v| d.contain("Args", json!(command_list(v)?))),
    ("environment", environment),
    ("hostname", |d, v| d.contain("Hostname", json!(text(v)))),
    ("working_dir", |d, v| d.contain("Dir", json!(text(v)))),
    ("user", |d, v| d.contain("User", json!(text(v)))),
    ("stop_signal", |d, v| {
        d.contain("StopSignal", json!(text(v)))
    }),
    ("tty", |d, v| d.contain("TTY", json!(boolean(v)))),
    ("stdin_open", |d, v| {
        d.contain("OpenStdin", json!(boolean(v)))
    }),
    ("read_only", |d, v| d.contain("ReadOnly", json!(boolean(v)))),
    ("init", |d, v| d.contain("Init", json!(boolean(v)))),
    ("stop_grace_period", |d, v| {
        d.contain("StopGracePeriod", json!(duration_ns(v)?))
    }),
    ("extra_hosts", extra_hosts),
    ("healthcheck", healthcheck),
    ("volumes", volumes),
    ("networks", networks),
    ("logging", logging),
    ("deploy", deploy::apply),
    ("ports", ports::apply),
];

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
pub(super) fn service_spec(
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
    if !svc.contains_key("image") {
        return Err(ctx("no image".into()));
    }
    let mut draft = Draft::new(doc, stack, name);
    for (key, apply) in KEYS {
        if let Some(v) = svc.get(*key) {
            apply(&mut draft, v).map_err(ctx)?;
        }
    }
    for key in svc.keys() {
        if IGNORED_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "service {name}: ignoring {key:?} (not used on a swarm)"
            ));
        } else if !KEYS.iter().any(|(known, _)| known == key) {
            return Err(ctx(format!("the key {key:?} is not supported by wsm")));
        }
    }
    Ok(draft.finish())
}

/// `environment`: KEY=VALUE list or map into `Env`, sorted by key; a key without a value
/// passes the variable through.
fn environment(d: &mut Draft, v: &Value) -> Result<(), String> {
    let env: Vec<String> = key_values(Some(v))
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect();
    if !env.is_empty() {
        d.contain("Env", json!(env))?;
    }
    Ok(())
}

/// `extra_hosts`: the Engine's format is "IP host", compose's "host:IP".
fn extra_hosts(d: &mut Draft, v: &Value) -> Result<(), String> {
    let Value::Array(hosts) = v else {
        return Ok(());
    };
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| match text(h).split_once(':') {
            Some((host, ip)) => format!("{ip} {host}"),
            None => text(h),
        })
        .collect();
    d.contain("Hosts", json!(hosts))
}

/// `healthcheck`: a shell string or exec list test, its timings and retries, or `disable`.
fn healthcheck(d: &mut Draft, v: &Value) -> Result<(), String> {
    let Value::Object(hc) = v else {
        return Ok(());
    };
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
        insert_durations(
            &mut h,
            hc,
            &[
                ("interval", "Interval"),
                ("timeout", "Timeout"),
                ("start_period", "StartPeriod"),
            ],
        )?;
        if let Some(v) = hc.get("retries") {
            h.insert("Retries".into(), json!(int(v, "retries")?));
        }
    }
    d.contain("HealthCheck", Value::Object(h))
}

/// `volumes`: each entry a mount, in the order given.
fn volumes(d: &mut Draft, v: &Value) -> Result<(), String> {
    let Value::Array(vols) = v else {
        return Ok(());
    };
    let mounts: Vec<Value> = vols
        .iter()
        .map(|v| mounts::mount(v, d.doc, d.stack))
        .collect::<Result<_, _>>()?;
    d.contain("Mounts", json!(mounts))
}

/// `networks`: the named networks (list or map), each with the service's name as an alias.
fn networks(d: &mut Draft, v: &Value) -> Result<(), String> {
    let Some(attached) = attached_networks(v) else {
        return Ok(());
    };
    let nets = attached
        .into_iter()
        .map(|(short, extra)| {
            let mut aliases = vec![d.name.to_string()];
            aliases.extend(extra);
            (network_name(d.doc, d.stack, &short), aliases)
        })
        .collect();
    d.attach(nets);
    Ok(())
}

/// `logging`: the log driver and its options.
fn logging(d: &mut Draft, v: &Value) -> Result<(), String> {
    if let Value::Object(lg) = v {
        d.task.insert(
            "LogDriver".into(),
            json!({"Name": lg.get("driver").map(text).unwrap_or_default(),
                   "Options": lg.get("options").cloned().unwrap_or(json!({}))}),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::compose::parse;
    use crate::host::compose::tests::env;
    use crate::host::NAMESPACE_LABEL;

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
