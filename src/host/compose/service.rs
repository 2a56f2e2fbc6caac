//! One compose service into an Engine API service spec, the way docker/cli's
//! `compose/convert` does it. `KEYS` pairs every service key wsm accepts with the function
//! that applies it, so the accepted keys are the table's and each key's handling is beside it.

use serde_json::{json, Map as JsonMap, Value};

use super::draft::Draft;
use super::objects::{attached_networks, network_decl, network_name};
use super::values::{
    boolean, command_list, duration_ns, insert_durations, int, key_values, stack_labels, text,
};
use super::{container, deploy, mounts, ports, reference, schema};

/// Applies one compose key's value to the spec being built.
type Apply = fn(&mut Draft, &Value) -> Result<(), String>;

/// Every service key wsm translates on its own, with what applies it. They run in this order
/// whatever the order in the file, so a service with several errors always reports the same
/// one first. Keys that act together (`cap_add`/`cap_drop`, `dns`/`dns_search`, `secrets`,
/// `configs` and `credential_spec`, `restart` under `deploy.restart_policy`) are in
/// `TOGETHER` and applied by `service_spec`.
const KEYS: &[(&str, Apply)] = &[
    ("image", |d, v| {
        d.contain("Image", json!(tagged_image(&text(v))))
    }),
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
    ("isolation", |d, v| d.contain("Isolation", json!(text(v)))),
    ("oom_score_adj", |d, v| {
        d.contain("OomScoreAdj", json!(int(v, "oom_score_adj")?))
    }),
    ("stop_grace_period", |d, v| {
        d.contain("StopGracePeriod", json!(duration_ns(v)?))
    }),
    ("extra_hosts", container::extra_hosts),
    ("ulimits", container::ulimits),
    ("sysctls", container::sysctls),
    ("healthcheck", healthcheck),
    ("volumes", volumes),
    ("networks", networks),
    ("logging", logging),
    ("deploy", deploy::apply),
    ("ports", ports::apply),
    // Read into `environment` by `compose::load`; nothing is left to translate.
    ("env_file", |_, _| Ok(())),
    // Not used by `docker stack deploy` either.
    ("depends_on", |_, _| Ok(())),
    // Applied by `compose::load` (`profiles.rs`): a service left in the document is active.
    ("profiles", |_, _| Ok(())),
];

/// Keys applied together by `service_spec`, after `KEYS`.
const TOGETHER: &[&str] = &[
    "cap_add",
    "cap_drop",
    "dns",
    "dns_search",
    "secrets",
    "configs",
    "credential_spec",
];

/// The image as docker's client stores it: the familiar name, with the `:latest` tag it adds
/// when there is neither tag nor digest (`reference.rs`), so switching between wsm and
/// `docker stack deploy` rolls nothing.
pub fn tagged_image(image: &str) -> String {
    reference::familiar_tagged(image)
}

/// The label `docker stack deploy` records the file's image under, which
/// `resolve_image: "changed"` compares with.
pub const IMAGE_LABEL: &str = "com.docker.stack.image";

/// Translates service `name` of an interpolated compose document into an Engine API service
/// spec for stack `stack`. Keys docker ignores are returned as warnings; keys outside the
/// schema were refused by `compose::load`, and are refused here too.
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
    let image = svc.get("image").map(text).unwrap_or_default();
    // docker's loader refuses these before anything is deployed, in its own words.
    if image.is_empty() {
        return Err(format!(
            "invalid image reference for service {name}: no image specified"
        ));
    }
    reference::check(&image)
        .map_err(|e| format!("invalid image reference for service {name}: {e}"))?;
    let mut draft = Draft::new(doc, stack, name);
    for (key, apply) in KEYS {
        if let Some(v) = svc.get(*key) {
            apply(&mut draft, v).map_err(ctx)?;
        }
    }
    together(&mut draft, svc).map_err(ctx)?;
    let mut ignored = Vec::new();
    for key in svc.keys() {
        if schema::IGNORED.contains(&key.as_str())
            || super::spec_keys::IGNORED.contains(&key.as_str())
        {
            ignored.push(key.as_str());
        } else if key == "tmpfs" {
            warnings.push(format!(
                "service {name}: \"tmpfs\" is ignored on a swarm, as docker stack deploy ignores it; use a volume of type tmpfs"
            ));
        } else if !KEYS.iter().any(|(known, _)| known == key)
            && !TOGETHER.contains(&key.as_str())
            && !key.starts_with("x-")
        {
            return Err(ctx(format!("unknown key {key:?}")));
        }
    }
    if !ignored.is_empty() {
        warnings.push(format!(
            "service {name}: ignoring unsupported options: {}",
            ignored.join(", ")
        ));
    }
    if let Some(Value::Object(labels)) = draft.service.get_mut("Labels") {
        labels.insert(IMAGE_LABEL.into(), json!(image));
    }
    Ok(draft.finish())
}

/// The keys that act together: capabilities, DNS, the legacy restart policy, and the
/// secret and config references (a credential spec's config among them).
fn together(d: &mut Draft, svc: &JsonMap<String, Value>) -> Result<(), String> {
    container::capabilities(d, svc)?;
    container::dns(d, svc)?;
    let has_policy = svc
        .get("deploy")
        .and_then(|x| x.get("restart_policy"))
        .is_some_and(|p| !p.is_null());
    if let (Some(r), false) = (svc.get("restart"), has_policy) {
        container::restart(d, r)?;
    }
    if let Some(v) = svc.get("secrets") {
        let refs = container::file_refs(d, "secrets", v)?;
        d.contain("Secrets", json!(refs))?;
    }
    let mut configs = match svc.get("configs") {
        Some(v) => container::file_refs(d, "configs", v)?,
        None => Vec::new(),
    };
    if let Some(runtime) = svc
        .get("credential_spec")
        .map(|c| container::credential_spec(d, c))
        .transpose()?
        .flatten()
    {
        configs.push(runtime);
    }
    if svc.contains_key("configs") || !configs.is_empty() {
        configs.sort_by(|a, b| text(&a["ConfigName"]).cmp(&text(&b["ConfigName"])));
        d.contain("Configs", json!(configs))?;
    }
    Ok(())
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

/// `healthcheck`: a shell string or exec list test, its timings and retries, or `disable`.
fn healthcheck(d: &mut Draft, v: &Value) -> Result<(), String> {
    let Value::Object(hc) = v else {
        return Ok(());
    };
    let mut h = JsonMap::new();
    if hc.get("disable").is_some_and(boolean) {
        if hc.get("test").is_some_and(|t| !t.is_null()) {
            return Err("healthcheck: test and disable can't be set at the same time".into());
        }
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
                ("start_interval", "StartInterval"),
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
    let mut nets = Vec::new();
    for (short, mut aliases, driver_opts) in attached {
        if short != "default" && network_decl(d.doc, &short).is_none() {
            return Err(format!("undefined network {short:?}"));
        }
        let target = network_name(d.doc, d.stack, &short);
        // Docker adds the service's name only on user-defined networks.
        if !matches!(target.as_str(), "host" | "bridge" | "none" | "default") {
            aliases.push(d.name.to_string());
        }
        nets.push((target, aliases, driver_opts));
    }
    d.attach(nets);
    Ok(())
}

/// `logging`: the log driver and its options.
fn logging(d: &mut Draft, v: &Value) -> Result<(), String> {
    if let Value::Object(lg) = v {
        let mut driver = json!({"Name": lg.get("driver").map(text).unwrap_or_default()});
        if let Some(Value::Object(o)) = lg.get("options") {
            let options: JsonMap<String, Value> =
                o.iter().map(|(k, v)| (k.clone(), json!(text(v)))).collect();
            driver["Options"] = Value::Object(options);
        }
        d.task.insert("LogDriver".into(), driver);
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
        assert_eq!(cs["Image"], "nginx:latest");
        assert_eq!(s["Labels"][IMAGE_LABEL], "nginx");
        let ignored = parse(
            "services:\n  x:\n    image: i\n    privileged: true\n    restart: on-failure:3\n",
            &env(&[]),
        )
        .unwrap();
        let s = service_spec(&ignored, "st", "x", &mut w).unwrap();
        assert_eq!(
            s["TaskTemplate"]["RestartPolicy"],
            json!({"Condition": "on-failure", "MaxAttempts": 3})
        );
        assert_eq!(
            w,
            ["service x: ignoring unsupported options: privileged, restart"]
        );
    }
}
