//! Rotating a secret or config (moby#35048: one in use cannot be updated): the next version is
//! a new object, `<base>-<version of its content>` (a secret's version a keyed hash, as a
//! file-made one's), labelled `wsm.rotated.from=<the version it replaces>` and
//! `wsm.version.of=<base>`; every service of a stack that uses the old version moves to the new
//! one as a recorded change (`rollback::recorded`: the stack returns to its revision when a
//! service fails to converge); the old version goes once no service uses it.
//!
//! A deploy follows a rotation (`follow`): a plan that names a version that is gone, or an
//! external object that is gone, uses the newest version rotated from it, so the next deploy of
//! the same files does not undo the rotation.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bollard::models::ServiceSpec;
use bollard::Docker;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::{json, Value};

use super::objects::{is_versioned, list, FileObject, Kind};
use super::rollback::{recorded, Safety};
use super::{failed, list_services, raw, str_at, EngineHandle};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::{opt_secs, opt_str};
use crate::host::{bounded, script_err, usage_err, Host, ScriptResult, NAMESPACE_LABEL};

/// The label naming the version a rotated object replaces.
pub(super) const ROTATED_FROM: &str = "wsm.rotated.from";
/// The label naming the family of versions (the name without its version).
pub(super) const VERSION_OF: &str = "wsm.version.of";

/// "secret" or "config".
fn kind_of(word: &str) -> ScriptResult<Kind> {
    match word {
        "secret" => Ok(Kind::Secret),
        "config" => Ok(Kind::Config),
        other => Err(usage_err(format!(
            "the kind must be secret or config, not {other:?}"
        ))),
    }
}

/// The object of that exact name (the engine's name filter also matches longer names).
async fn named(d: &Docker, kind: Kind, name: &str) -> ScriptResult<Option<Value>> {
    let f = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    Ok(by_name(&list(d, kind, f).await?, name).cloned())
}

/// Of `all` (a listing of one kind), the object of that exact name.
fn by_name<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    all.iter().find(|o| str_at(o, &["Spec", "Name"]) == name)
}

/// Of `all` (a listing of one kind), the newest object carrying `label=value`.
fn newest_labelled<'a>(all: &'a [Value], label: &str, value: &str) -> Option<&'a Value> {
    all.iter()
        .filter(|o| str_at(o, &["Spec", "Labels", label]) == value)
        .max_by(|a, b| str_at(a, &["CreatedAt"]).cmp(str_at(b, &["CreatedAt"])))
}

/// Of `all` (a listing of one kind), the newest object rotated from `name`, following the chain
/// of rotations.
fn newest_rotation<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    let mut found = None;
    let mut at = name;
    for _ in 0..64 {
        let Some(next) = newest_labelled(all, ROTATED_FROM, at) else {
            break;
        };
        at = str_at(next, &["Spec", "Name"]);
        found = Some(next);
    }
    found
}

/// The object `name` means now: the object of that name, else the newest version rotated from
/// it, else the newest of the family `name` (`wsm.version.of`).
async fn current(d: &Docker, kind: Kind, name: &str) -> ScriptResult<Option<Value>> {
    let all = list(d, kind, HashMap::new()).await?;
    Ok(by_name(&all, name)
        .or_else(|| newest_rotation(&all, name))
        .or_else(|| newest_labelled(&all, VERSION_OF, name))
        .cloned())
}

/// The services that refer to the object `id`: (stack, service name), the stack "" for a
/// service outside any stack.
async fn users(d: &Docker, kind: Kind, id: &str) -> ScriptResult<Vec<(String, String)>> {
    let (list_field, _, id_field) = kind.fields();
    let mut out = Vec::new();
    for s in list_services(d, HashMap::new()).await? {
        let refs = s
            .pointer(&format!("/Spec/TaskTemplate/ContainerSpec/{list_field}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if refs.iter().any(|r| str_at(r, &[id_field]) == id) {
            out.push((
                str_at(&s, &["Spec", "Labels", NAMESPACE_LABEL]).to_string(),
                str_at(&s, &["Spec", "Name"]).to_string(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// `#{stack, service}` rows.
fn user_rows(users: &[(String, String)]) -> Array {
    users
        .iter()
        .map(|(stack, service)| {
            let mut m = Map::new();
            m.insert("stack".into(), Dynamic::from(stack.clone()));
            m.insert("service".into(), Dynamic::from(service.clone()));
            Dynamic::from_map(m)
        })
        .collect()
}

/// Creates the next version of the object `name` means now from `file`'s bytes (or finds it,
/// made by an earlier try). Returns `#{kind, from, to, created, users}`.
async fn next_version(
    host: &Host,
    d: &Docker,
    kind: Kind,
    name: &str,
    file: &str,
) -> ScriptResult<Map> {
    let word = kind.word();
    let Some(old) = current(d, kind, name).await? else {
        return Err(usage_err(format!("no {word} {name} on this swarm")));
    };
    let from = str_at(&old, &["Spec", "Name"]).to_string();
    if old.pointer("/Spec/Driver").is_some_and(|v| !v.is_null()) {
        return Err(usage_err(format!(
            "{word} {from} is made by a driver: its driver rotates it"
        )));
    }
    let data =
        bounded::read_file(Path::new(file), file, bounded::OBJECT_FILE).map_err(usage_err)?;
    let labels = old["Spec"]["Labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let base = match labels.get(VERSION_OF).and_then(Value::as_str) {
        Some(b) => b.to_string(),
        None if is_versioned(&from) => from
            .rsplit_once('-')
            .map_or(from.clone(), |(b, _)| b.into()),
        None => from.clone(),
    };
    let to = match kind {
        Kind::Secret => {
            let key = crate::host::secrets::key().map_err(usage_err)?;
            format!("{base}-{}", key.version(&data))
        }
        Kind::Config => crate::host::compose::versioned(&base, &data),
    };
    if to == from {
        return Err(usage_err(format!(
            "{file} holds what {word} {from} holds already: nothing to rotate"
        )));
    }
    let mut new_labels = labels.clone();
    new_labels.insert(ROTATED_FROM.into(), json!(from));
    new_labels.insert(VERSION_OF.into(), json!(base));
    let created = if named(d, kind, &to).await?.is_none() {
        use base64::Engine as _;
        let mut spec = json!({"Name": to, "Labels": new_labels,
            "Data": base64::engine::general_purpose::STANDARD.encode(&data)});
        if let Some(t) = old.pointer("/Spec/Templating").filter(|t| !t.is_null()) {
            spec["Templating"] = t.clone();
        }
        host.say(&format!("Creating {word} {to}"));
        super::objects::create(d, kind, spec).await?;
        true
    } else {
        false
    };
    let using = users(d, kind, str_at(&old, &["ID"])).await?;
    let mut m = Map::new();
    m.insert("kind".into(), Dynamic::from(word.to_string()));
    m.insert("from".into(), Dynamic::from(from));
    m.insert("to".into(), Dynamic::from(to));
    m.insert("created".into(), Dynamic::from(created));
    m.insert("users".into(), Dynamic::from_array(user_rows(&using)));
    Ok(m)
}

/// Points every service of `stack` that uses `from` at `to` (names and ids). Returns the
/// services it wrote.
async fn repoint(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    kind: Kind,
    from: &Value,
    to: &Value,
) -> ScriptResult<Vec<String>> {
    let (list_field, name_field, id_field) = kind.fields();
    let (from_id, to_id) = (str_at(from, &["ID"]), str_at(to, &["ID"]));
    let to_name = str_at(to, &["Spec", "Name"]);
    let mut moved = Vec::new();
    for svc in raw::stack_services(e, stack).await? {
        let mut spec = raw::spec_for_bollard(&svc["Spec"]);
        let Some(refs) = spec
            .pointer_mut(&format!("/TaskTemplate/ContainerSpec/{list_field}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        let mut touched = false;
        for r in refs
            .iter_mut()
            .filter(|r| str_at(r, &[id_field]) == from_id)
        {
            r[name_field] = json!(to_name);
            r[id_field] = json!(to_id);
            touched = true;
        }
        if !touched {
            continue;
        }
        let name = str_at(&svc, &["Spec", "Name"]).to_string();
        host.say(&format!(
            "Updating service {name} to {} {to_name}",
            kind.word()
        ));
        let typed: ServiceSpec = serde_json::from_value(spec).map_err(script_err)?;
        super::update_service_at(&e.docker, &svc, typed, None, None)
            .await
            .map_err(|err| failed(&format!("updating {name}"), err))?;
        moved.push(name);
    }
    Ok(moved)
}

/// Moves the services of `stack` from version `from` to `to` as a recorded change, waiting until
/// the stack has converged; the stack returns to its revision when it does not.
async fn move_stack(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    kind: Kind,
    from: &str,
    to: &str,
    safety: &Safety,
) -> ScriptResult<Vec<String>> {
    let d = &e.docker;
    let word = kind.word();
    let old = named(d, kind, from)
        .await?
        .ok_or_else(|| usage_err(format!("no {word} {from} on this swarm")))?;
    let new = named(d, kind, to)
        .await?
        .ok_or_else(|| usage_err(format!("no {word} {to} on this swarm")))?;
    let kept = match kind {
        Kind::Secret => (HashSet::from([to.to_string()]), HashSet::new()),
        Kind::Config => (HashSet::new(), HashSet::from([to.to_string()])),
    };
    let change = repoint(host, e, stack, kind, &old, &new);
    recorded(host, e, stack, safety, kept, change).await
}

/// Removes the object `name` when no service uses it. Returns whether it did.
async fn remove_unused(host: &Host, d: &Docker, kind: Kind, name: &str) -> ScriptResult<bool> {
    let Some(obj) = named(d, kind, name).await? else {
        return Ok(false);
    };
    if !users(d, kind, str_at(&obj, &["ID"])).await?.is_empty() {
        return Ok(false);
    }
    host.say(&format!("Removing {} {name}", kind.word()));
    super::objects::delete(d, kind, str_at(&obj, &["ID"]))
        .await
        .map_err(|err| failed(&format!("removing {} {name}", kind.word()), err))?;
    Ok(true)
}

/// What a plan names, followed through rotations: for each object of the plan that is not on
/// the swarm, the newest version rotated from it (old name → new name). `all` is the swarm's
/// listing of that kind, which the deploy reads once.
pub(super) fn follow(
    host: &Host,
    kind: Kind,
    objects: &[FileObject],
    all: &[Value],
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for obj in objects {
        if by_name(all, &obj.name).is_some() {
            continue;
        }
        if let Some(newest) = newest_rotation(all, &obj.name) {
            let to = str_at(newest, &["Spec", "Name"]).to_string();
            host.say(&format!(
                "{} {} was rotated: using {to}",
                kind.word(),
                obj.name
            ));
            out.insert(obj.name.clone(), to);
        }
    }
    out
}

/// Renames a service spec's references as `follow` found them.
pub(super) fn rename_references(spec: &mut Value, kind: Kind, renamed: &HashMap<String, String>) {
    let (list_field, name_field, _) = kind.fields();
    for r in spec["TaskTemplate"]["ContainerSpec"][list_field]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if let Some(to) = renamed.get(str_at(r, &[name_field])) {
            r[name_field] = json!(to);
        }
    }
}

/// `e.object_move`'s options.
const MOVE_OPTS: &[Opt] = &[
    (
        "timeout",
        "seconds, 300: how long it waits for the stack to converge",
    ),
    (
        "operation",
        "\"<kind> rotate\": the command, as the stack's history records it",
    ),
];

/// Registers `e.object_next_version`, `e.object_users`, `e.object_move` and
/// `e.object_remove_unused`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.object_next_version(kind: string, name: string, file: string) -> map")
        .doc(
            "Creates the next version of a secret or config (`kind`) from a file: \
         `<base>-<version of the content>` (a secret's version a keyed hash, as a file-made \
         one's), with the labels of the version it replaces plus `wsm.rotated.from` and \
         `wsm.version.of`. `name` is the object's name, or one it was rotated from. Returns \
         `#{kind, from, to, created, users: [#{stack, service}]}`; the same content as now, \
         an unknown name or a driver-made secret is bad input.",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle, kind: &str, name: &str, file: &str| -> ScriptResult<Map> {
            let kind = kind_of(kind)?;
            h.block(next_version(&h, &e.docker, kind, name, file))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.object_users(kind: string, name: string) -> array").doc(
        "The services that use the secret or config of that name: `[#{stack, service}]` (stack \
         \"\" outside any stack); empty when there is no such object.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, kind: &str, name: &str| -> ScriptResult<Array> {
            let kind = kind_of(kind)?;
            h.block(async {
                match named(&e.docker, kind, name).await? {
                    Some(o) => Ok(user_rows(
                        &users(&e.docker, kind, str_at(&o, &["ID"])).await?,
                    )),
                    None => Ok(Array::new()),
                }
            })
        },
    );

    let h = host.clone();
    let prim = Prim::new(
        "e.object_move(stack: string, kind: string, from: string, to: string, opts: map) -> array",
    )
    .opts(MOVE_OPTS)
    .doc(
        "Moves every service of the stack that uses the secret or config `from` to `to`, and \
         waits until the stack has converged as `e.deploy` waits; recorded in the stack's \
         history. A service that fails to converge puts the stack back on its revision before \
         (the error says so). Returns the services moved. Hold the stack's lock around it.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle,
              stack: &str,
              kind: &str,
              from: &str,
              to: &str,
              opts: Map|
              -> ScriptResult<Array> {
            check_opts("e.object_move", &opts, MOVE_OPTS)?;
            let k = kind_of(kind)?;
            let safety = Safety {
                operation: opt_str(&opts, "operation", &format!("{kind} rotate")),
                wait: true,
                timeout: opt_secs(&opts, "timeout", 300),
                rollback: true,
                reporter: None,
            };
            let moved = h.block(move_stack(&h, e, stack, k, from, to, &safety))?;
            Ok(moved.into_iter().map(Dynamic::from).collect())
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.object_remove_unused(kind: string, name: string) -> bool").doc(
        "Removes the secret or config of that name when no service uses it. Returns whether it \
         removed it (false: in use, or not there).",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, kind: &str, name: &str| -> ScriptResult<bool> {
            let kind = kind_of(kind)?;
            h.block(remove_unused(&h, &e.docker, kind, name))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, created: &str, labels: Value) -> Value {
        json!({"Spec": {"Name": name, "Labels": labels}, "CreatedAt": created})
    }

    #[test]
    fn a_rotation_is_followed_to_its_newest_version_and_the_family_is_the_last_resort() {
        let all = vec![
            object("db-1", "2026-01-01T00:00:00Z", json!({})),
            object(
                "db-2",
                "2026-01-02T00:00:00Z",
                json!({ROTATED_FROM: "db-1", VERSION_OF: "db"}),
            ),
            // Two rotated from db-2: the newer one counts.
            object(
                "db-4",
                "2026-01-04T00:00:00Z",
                json!({ROTATED_FROM: "db-2", VERSION_OF: "db"}),
            ),
            object(
                "db-3",
                "2026-01-03T00:00:00Z",
                json!({ROTATED_FROM: "db-2", VERSION_OF: "db"}),
            ),
            object("other", "2026-01-05T00:00:00Z", json!({})),
        ];
        let name = |o: Option<&Value>| o.map(|o| str_at(o, &["Spec", "Name"]).to_string());
        assert_eq!(name(newest_rotation(&all, "db-1")), Some("db-4".into()));
        assert_eq!(name(newest_rotation(&all, "db-4")), None);
        assert_eq!(name(newest_rotation(&all, "other")), None);
        assert_eq!(
            name(newest_labelled(&all, VERSION_OF, "db")),
            Some("db-4".into())
        );
        assert_eq!(name(newest_labelled(&all, VERSION_OF, "nothing")), None);
    }
}
