//! What a deploy would change, without changing anything (`stack plan`, `deploy --dry-run`):
//! the services, networks, configs and secrets it would create, update or remove, and for each
//! update the fields that change, before and after, with the image digests that would move.
//!
//! The desired specs are made as `deploy` makes them (references pointed at the objects' ids,
//! images resolved to the digest their registry holds now, the force-update counter kept),
//! and both sides go through the Engine API's own model (bollard's `ServiceSpec`), so that
//! fields the engine stores empty or drops do not show as changes. What cannot be known
//! before the deploy (the id of a config or secret that does not exist yet) shows as "(new)".
//!
//! An environment change names each key that changes; secret values (`secrets`) are masked,
//! in the lines and in the fields alike, unless `show_secrets`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bollard::models::ServiceSpec;
use rhai::{Dynamic, Engine, Map};
use serde_json::{json, Value};

use super::apply::{pin_image_digests, resolve_images, Plan};
use super::diff::{fields, short};
use super::objects::{self, is_versioned, Kind};
use super::{list_networks, raw, stack_filter, str_at, EngineHandle};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::{opt_bool, opt_str};
use crate::host::secrets;
use crate::host::{script_err, to_dynamic, usage_err, Host, ScriptResult};

/// A spec as the engine's model carries it: what the engine would store of it.
fn normalised(spec: &Value) -> ScriptResult<Value> {
    let typed: ServiceSpec = serde_json::from_value(spec.clone()).map_err(script_err)?;
    serde_json::to_value(typed).map_err(script_err)
}

/// Fills in what the engine sets in a spec it is sent: the defaults it stores (endpoint mode
/// `vip`, isolation `default`, runtime `container`; in an update or rollback policy given,
/// failure action `pause` and order `stop-first`; in a restart policy given, condition `any`)
/// and network ids for network names ("(new)"
/// for a network the deploy would create).
fn as_stored(spec: &mut Value, networks: &[Value]) {
    let mut defaults = vec![
        ("/EndpointSpec/Mode", "vip"),
        ("/TaskTemplate/ContainerSpec/Isolation", "default"),
        ("/TaskTemplate/Runtime", "container"),
    ];
    if spec["UpdateConfig"].is_object() {
        defaults.extend([
            ("/UpdateConfig/FailureAction", "pause"),
            ("/UpdateConfig/Order", "stop-first"),
        ]);
    }
    if spec["RollbackConfig"].is_object() {
        defaults.extend([
            ("/RollbackConfig/FailureAction", "pause"),
            ("/RollbackConfig/Order", "stop-first"),
        ]);
    }
    // A restart policy of delay, attempts or window alone: the engine stores condition `any`.
    if spec["TaskTemplate"]["RestartPolicy"].is_object() {
        defaults.push(("/TaskTemplate/RestartPolicy/Condition", "any"));
    }
    for (path, value) in defaults {
        if spec.pointer(path).is_none_or(|v| v.is_null() || v == "") {
            let mut cur = &mut *spec;
            for key in path.trim_start_matches('/').split('/') {
                if !cur.is_object() {
                    *cur = json!({});
                }
                cur = &mut cur[key];
            }
            *cur = json!(value);
        }
    }
    for n in spec["TaskTemplate"]["Networks"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let target = str_at(n, &["Target"]).to_string();
        let id = networks
            .iter()
            .find(|x| str_at(x, &["Name"]) == target || str_at(x, &["Id"]) == target)
            .map(|x| str_at(x, &["Id"]).to_string())
            .unwrap_or_else(|| "(new)".into());
        n["Target"] = json!(id);
    }
}

/// Points a service's config and secret references at their ids, "(new)" for those the deploy
/// would create.
fn point(spec: &mut Value, kind: Kind, ids: &HashMap<String, String>) {
    let (list, name_field, id_field) = kind.fields();
    let container = &mut spec["TaskTemplate"]["ContainerSpec"];
    for r in container
        .get_mut(list)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let name = str_at(r, &[name_field]).to_string();
        r[id_field] = json!(ids.get(&name).cloned().unwrap_or_else(|| "(new)".into()));
    }
}

/// Computes the plan of changes: #{stack, changes (the count), services: [#{name, action,
/// fields: [#{field, before, after}], lines: ["field: before → after"], image: #{before,
/// after}}], networks, configs, secrets:
/// [#{name, action}], unchanged: [names]}.
async fn plan_changes(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    plan: Plan,
    prune: bool,
    resolve: &str,
    show_secrets: bool,
) -> ScriptResult<Value> {
    let Plan {
        mut services,
        networks,
        secrets,
        configs,
        ..
    } = plan;
    let d = &e.docker;
    // Everything the plan compares with, read at once: one round trip to a remote manager,
    // not seven in a row (issue 28).
    let (existing, existing_nets, all_nets, all_secrets, our_secrets, all_configs, our_configs) = tokio::try_join!(
        raw::stack_services(e, stack),
        list_networks(d, stack_filter(stack)),
        list_networks(d, HashMap::new()),
        objects::list(d, Kind::Secret, HashMap::new()),
        objects::list(d, Kind::Secret, stack_filter(stack)),
        objects::list(d, Kind::Config, HashMap::new()),
        objects::list(d, Kind::Config, stack_filter(stack)),
    )?;
    let mut object_changes = HashMap::new();
    for (kind, objs, all, ours) in [
        (Kind::Secret, &secrets, all_secrets, our_secrets),
        (Kind::Config, &configs, all_configs, our_configs),
    ] {
        let ids: HashMap<String, String> = all
            .iter()
            .map(|o| {
                (
                    str_at(o, &["Spec", "Name"]).to_string(),
                    str_at(o, &["ID"]).to_string(),
                )
            })
            .collect();
        let mut rows = Vec::new();
        for o in objs
            .iter()
            .filter(|o| !o.external && !ids.contains_key(&o.name))
        {
            rows.push(json!({"name": o.name, "action": "create"}));
        }
        let keep: HashSet<&String> = objs.iter().map(|o| &o.name).collect();
        for o in ours {
            let name = str_at(&o, &["Spec", "Name"]).to_string();
            if is_versioned(&name) && !keep.contains(&name) {
                rows.push(json!({"name": name, "action": "remove"}));
            }
        }
        for svc in services.iter_mut() {
            point(&mut svc.spec, kind, &ids);
        }
        object_changes.insert(kind.word(), rows);
    }
    let query = resolve_images(&mut services, &existing, resolve);
    pin_image_digests(host, d, &mut services, &query).await;
    let mut rows = Vec::new();
    let mut unchanged = Vec::new();
    for svc in &services {
        let mut want = svc.spec.clone();
        match existing
            .iter()
            .find(|s| str_at(s, &["Spec", "Name"]) == svc.name)
        {
            None => rows.push(json!({"name": svc.name, "action": "create",
                "image": {"before": null, "after": str_at(&want, &["TaskTemplate", "ContainerSpec", "Image"])}})),
            Some(old) => {
                if let Some(force) = old.pointer("/Spec/TaskTemplate/ForceUpdate") {
                    want["TaskTemplate"]["ForceUpdate"] = force.clone();
                }
                as_stored(&mut want, &all_nets);
                let stored = raw::spec_for_bollard(&old["Spec"]);
                let mut changed = fields(&normalised(&stored)?, &normalised(&want)?);
                if !show_secrets {
                    changed.iter_mut().for_each(secrets::mask_change);
                }
                if changed.is_empty() {
                    unchanged.push(svc.name.clone());
                    continue;
                }
                let image = |s: &Value| {
                    str_at(s, &["TaskTemplate", "ContainerSpec", "Image"]).to_string()
                };
                let (before, after) = (image(&old["Spec"]), image(&want));
                let moved = if before != after {
                    json!({"before": before, "after": after})
                } else {
                    Value::Null
                };
                let lines: Vec<String> = changed
                    .iter()
                    .map(|c| format!("{}: {} → {}", c.field, short(&c.before), short(&c.after)))
                    .collect();
                rows.push(json!({"name": svc.name, "action": "update", "fields": changed,
                    "lines": lines, "image": moved}));
            }
        }
    }
    if prune {
        for old in &existing {
            let name = str_at(old, &["Spec", "Name"]);
            if !services.iter().any(|s| s.name == name) {
                rows.push(json!({"name": name, "action": "remove"}));
            }
        }
    }
    let nets: Vec<Value> = networks
        .iter()
        .filter(|n| !existing_nets.iter().any(|x| str_at(x, &["Name"]) == n.name))
        .map(|n| json!({"name": n.name, "action": "create"}))
        .collect();
    let count = rows.len() + nets.len() + object_changes.values().map(Vec::len).sum::<usize>();
    let mut out = json!({
        "stack": stack,
        "changes": count,
        "services": rows,
        "networks": nets,
        "configs": object_changes.remove("config").unwrap_or_default(),
        "secrets": object_changes.remove("secret").unwrap_or_default(),
        "unchanged": unchanged,
    });
    if !show_secrets {
        secrets::mask_json(&mut out);
    }
    Ok(out)
}

/// `e.plan_changes`'s options, as `e.deploy` reads them.
const PLAN_OPTS: &[Opt] = &[
    (
        "prune",
        "true: the services the plan no longer has are removed",
    ),
    (
        "resolve_image",
        "\"always\", \"changed\" or \"never\": when to ask the registry for an image's digest",
    ),
    (
        "show_secrets",
        "false: secret values (`secrets`) are `********` in the fields and lines",
    ),
];

/// Registers `e.plan_changes`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.plan_changes(stack: string, plan: map, opts: map) -> map")
        .opts(PLAN_OPTS)
        .doc(
            "What `e.deploy(stack, plan, opts)` would change, changing nothing: `#{stack, \
             changes, services: [#{name, action, fields: [#{field, before, after}], image}], \
             networks, configs, secrets, unchanged}`; an environment change is one field per \
             key (`…Env.KEY`).",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str, plan: Dynamic, opts: Map| -> ScriptResult<Dynamic> {
            let plan: Plan = rhai::serde::from_dynamic(&plan).map_err(|err| {
                script_err(format!(
                    "plan_changes: the plan must be a map as compose::plan(doc, stack) returns it ({err})"
                ))
            })?;
            check_opts("e.plan_changes", &opts, PLAN_OPTS)?;
            let resolve = opt_str(&opts, "resolve_image", "always");
            if !matches!(resolve.as_str(), "always" | "changed" | "never") {
                return Err(usage_err(format!(
                    "resolve_image must be always, changed or never, not {resolve:?}"
                )));
            }
            let prune = opt_bool(&opts, "prune", true);
            let show = opt_bool(&opts, "show_secrets", false);
            h.block(super::precheck::check(&e.docker, stack, &plan))?;
            let out = h.block(plan_changes(&h, e, stack, plan, prune, &resolve, show))?;
            to_dynamic(&out)
        },
    );
}
