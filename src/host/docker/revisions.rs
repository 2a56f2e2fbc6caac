//! A stack's revisions, kept in the swarm store (`store`, document `stack.<name>.revisions`):
//! what a deploy leaves behind, so that a failed deploy returns the whole stack to where it
//! was, and `stack rollback` returns it to any kept revision. Swarm has no stack object
//! (docker/cli#595); a revision is what one would hold: every service's spec as the engine
//! stores it (the image pinned to its digest), the networks the services join, and the config
//! and secret versions they use.
//!
//! Every deploy reads the stack's state first. When it is not the last revision's (a first
//! deploy through wsm, or a change made outside it), that state is recorded as a revision
//! ("found") before anything changes, so every deploy has its previous state in the store. A
//! deploy that changed something records the state it left; one that failed to converge
//! restores the previous state and records the failure (with what it changed, without a state
//! to return to). The document keeps the last `WSM_KEEP_REVISIONS` (10) revisions, fewer when
//! they outgrow the store's limit.
//!
//! Config and secret versions: a version goes only when neither a service nor a kept revision
//! uses it (`kept_versions`), so `rollback --to` any kept revision restores its files' content
//! exactly, and a version goes once the last revision using it has rotated out. A recorded
//! deploy prunes only once the stack has converged, so the automatic rollback finds the
//! previous ones. A revision whose versions are gone anyway (removed by hand, or by a wsm
//! before this rule) cannot be restored from the swarm (a secret cannot be read back):
//! `restore` says so, naming the object, before it changes anything.
//!
//! A document of another shape than a history is damaged (`revisions_of`): every reader
//! refuses it, naming it, and nothing is written over it.
//!
//! Secret values are kept sealed, and a removed stack's history does not stay for ever: see
//! `history`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use bollard::models::ServiceSpec;
use bollard::Docker;
use serde_json::{json, Value};

use super::diff::{fields, short};
use super::history::{document, open_state, prune_stale, sealed_state};
use super::objects::{self, Kind};
use super::store::{self, StoreError};
use super::{failed, list_networks, raw, str_at, EngineHandle};
use crate::host::identity::user_at_host;
use crate::host::secrets;
use crate::host::{script_err, usage_err, Host, ScriptResult};

/// How many revisions a stack keeps: `WSM_KEEP_REVISIONS`, else 10 (at least 2).
fn keep() -> usize {
    std::env::var("WSM_KEEP_REVISIONS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10usize)
        .max(2)
}

/// The stack's state now: `{services: {name: spec}, images: {name: digest}, networks: {id:
/// name}, configs: [names], secrets: [names]}`.
pub(super) async fn snapshot(e: &EngineHandle, stack: &str) -> ScriptResult<Value> {
    let (services, networks) = tokio::try_join!(
        raw::stack_services(e, stack),
        list_networks(&e.docker, HashMap::new())
    )?;
    let mut specs = BTreeMap::new();
    let mut images = BTreeMap::new();
    let mut used_nets = BTreeMap::new();
    let (mut configs, mut secrets) = (Vec::new(), Vec::new());
    for svc in &services {
        let name = str_at(svc, &["Spec", "Name"]).to_string();
        let spec = &svc["Spec"];
        let image = str_at(spec, &["TaskTemplate", "ContainerSpec", "Image"]);
        let digest = image.split_once('@').map(|(_, d)| d).unwrap_or("");
        images.insert(name.clone(), json!(digest));
        for n in spec["TaskTemplate"]["Networks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = str_at(n, &["Target"]);
            if let Some(net) = networks.iter().find(|x| str_at(x, &["Id"]) == id) {
                used_nets.insert(id.to_string(), json!(str_at(net, &["Name"])));
            }
        }
        let container = &spec["TaskTemplate"]["ContainerSpec"];
        for c in container["Configs"].as_array().into_iter().flatten() {
            configs.push(str_at(c, &["ConfigName"]).to_string());
        }
        for s in container["Secrets"].as_array().into_iter().flatten() {
            secrets.push(str_at(s, &["SecretName"]).to_string());
        }
        specs.insert(name, spec.clone());
    }
    for list in [&mut configs, &mut secrets] {
        list.sort();
        list.dedup();
    }
    Ok(
        json!({"services": specs, "images": images, "networks": used_nets,
        "configs": configs, "secrets": secrets}),
    )
}

/// The config or secret names (`kind`: "configs" or "secrets") a state's services use.
pub(super) fn state_names(state: &Value, kind: &str) -> HashSet<String> {
    state[kind]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The secret and config names the kept revisions of a stack use: versions that a `rollback
/// --to` needs, so pruning keeps them (they go once their last revision has rotated out).
pub(super) async fn kept_versions(
    d: &Docker,
    stack: &str,
) -> ScriptResult<(HashSet<String>, HashSet<String>)> {
    let history = History::load(d, stack).await?;
    let used = |kind| {
        history
            .revisions
            .iter()
            .flat_map(|r| state_names(&r["state"], kind))
            .collect()
    };
    Ok((used("secrets"), used("configs")))
}

/// Points a spec's config and secret references at the objects of those names now on the
/// swarm (a name made again has a new id); an object that is gone is an error naming it.
fn point_at_objects(
    name: &str,
    spec: &mut Value,
    objects: &[(Kind, HashMap<String, String>, HashSet<String>)],
) -> ScriptResult<()> {
    for (kind, by_name, ids) in objects {
        let (list, name_field, id_field) = kind.fields();
        let refs = spec["TaskTemplate"]["ContainerSpec"][list].as_array_mut();
        for r in refs.into_iter().flatten() {
            if ids.contains(str_at(r, &[id_field])) {
                continue;
            }
            let object = str_at(r, &[name_field]).to_string();
            let id = by_name.get(&object).ok_or_else(|| {
                script_err(format!(
                    "service {name} of that revision uses {} {object}, which is no longer on the swarm (a later deploy replaced it); deploy that revision's files again instead",
                    kind.word()
                ))
            })?;
            r[id_field] = json!(id);
        }
    }
    Ok(())
}

/// Whether a state has no service.
fn is_empty(state: &Value) -> bool {
    state["services"].as_object().is_none_or(|s| s.is_empty())
}

/// What changed from one state to the next, one line per service: `create x`, `remove x`,
/// `update x: Field, Field`.
pub(super) fn changes(before: &Value, after: &Value) -> Vec<String> {
    let none = serde_json::Map::new();
    let b = before["services"].as_object().unwrap_or(&none);
    let a = after["services"].as_object().unwrap_or(&none);
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        match (b.get(name), a.get(name)) {
            (None, Some(_)) => out.push(format!("create {name}")),
            (Some(_), None) => out.push(format!("remove {name}")),
            (Some(x), Some(y)) => {
                let changed = fields(x, y);
                if !changed.is_empty() {
                    let list: Vec<String> = changed
                        .iter()
                        .map(|c| {
                            if c.field.ends_with("ContainerSpec.Image") {
                                format!("{} {} → {}", c.field, short(&c.before), short(&c.after))
                            } else {
                                c.field.clone()
                            }
                        })
                        .collect();
                    out.push(format!("update {name}: {}", list.join(", ")));
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// A stack's revisions as stored, and the version to write back.
pub(super) struct History {
    stack: String,
    pub revisions: Vec<Value>,
    version: Option<u64>,
}

pub(super) fn store_err(e: StoreError) -> Box<rhai::EvalAltResult> {
    script_err(e)
}

/// The revisions a stored document holds. A document of another shape is damaged: it is
/// reported, naming it and how to remove it, never read as "no revisions yet" (the next write
/// would replace it with a history that has lost every revision to return to).
fn revisions_of(stack: &str, value: Value) -> ScriptResult<Vec<Value>> {
    let name = document(stack);
    let damaged = |why: &str| {
        script_err(format!(
            "document {name} in the swarm store is damaged ({why}); nothing was changed; remove it with `docker config rm {}` (the stack's history goes with it)",
            store::config_name(&name)
        ))
    };
    let Value::Object(mut doc) = value else {
        return Err(damaged("not a JSON object"));
    };
    let Some(Value::Array(revisions)) = doc.remove("revisions") else {
        return Err(damaged("its `revisions` is not a list"));
    };
    for (i, r) in revisions.iter().enumerate() {
        let shaped = r.is_object()
            && r["rev"].as_i64().is_some_and(|n| n > 0)
            && (r["state"].is_null() || r["state"]["services"].is_object())
            && ["time", "by", "operation", "status"]
                .iter()
                .all(|k| r[*k].is_null() || r[*k].is_string())
            && (r["changes"].is_null() || r["changes"].is_array());
        if !shaped {
            return Err(damaged(&format!(
                "its revision #{} is not a revision",
                i + 1
            )));
        }
    }
    Ok(revisions)
}

impl History {
    pub(super) async fn load(d: &Docker, stack: &str) -> ScriptResult<Self> {
        let doc = store::read(d, &document(stack)).await.map_err(store_err)?;
        let (revisions, version) = match doc {
            Some(doc) => (revisions_of(stack, doc.value)?, Some(doc.version)),
            None => (Vec::new(), None),
        };
        Ok(History {
            stack: stack.into(),
            revisions,
            version,
        })
    }

    /// The revision with this number.
    pub(super) fn get(&self, rev: i64) -> Option<&Value> {
        self.revisions
            .iter()
            .find(|r| r["rev"].as_i64() == Some(rev))
    }

    /// The newest revision that holds a state: where the stack should be.
    pub(super) fn current(&self) -> Option<&Value> {
        self.revisions.iter().rev().find(|r| !r["state"].is_null())
    }

    /// [`History::write_revision`], then the stale histories of removed stacks pruned.
    pub(super) async fn append(
        &mut self,
        d: &Docker,
        operation: &str,
        status: &str,
        changes: Vec<String>,
        state: Option<Value>,
    ) -> ScriptResult<i64> {
        let rev = self
            .write_revision(d, operation, status, changes, state)
            .await?;
        // Housekeeping: a failure here costs nothing but a stale document kept.
        let _ = prune_stale(d, &self.stack).await;
        Ok(rev)
    }

    /// Appends a revision (numbered after the last) and writes the document back, dropping
    /// the oldest revisions beyond the number kept or the store's size. A concurrent writer
    /// (none should write without the stack's lock) makes it read again and append once more.
    /// Returns the new revision's number.
    pub(super) async fn write_revision(
        &mut self,
        d: &Docker,
        operation: &str,
        status: &str,
        changes: Vec<String>,
        state: Option<Value>,
    ) -> ScriptResult<i64> {
        let state = match state {
            Some(s) => Some(sealed_state(&s).map_err(|e| {
                script_err(format!(
                    "cannot record a revision of stack {}: {e}",
                    self.stack
                ))
            })?),
            None => None,
        };
        for _ in 0..3 {
            let rev = self
                .revisions
                .last()
                .and_then(|r| r["rev"].as_i64())
                .unwrap_or(0)
                + 1;
            let mut revisions = self.revisions.clone();
            revisions.push(json!({
                "rev": rev,
                "time": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                "by": user_at_host(),
                "operation": operation,
                "status": status,
                "changes": changes,
                "state": state.clone().unwrap_or(Value::Null),
            }));
            let keep = keep();
            if revisions.len() > keep {
                revisions.drain(..revisions.len() - keep);
            }
            let result = loop {
                let doc = json!({"stack": self.stack, "revisions": revisions});
                match store::write(d, &document(&self.stack), &doc, self.version).await {
                    Err(StoreError::TooLarge(m)) if revisions.len() <= 1 => {
                        break Err(StoreError::TooLarge(m));
                    }
                    Err(StoreError::TooLarge(_)) => {
                        revisions.remove(0);
                    }
                    other => break other,
                }
            };
            match result {
                Ok(version) => {
                    self.version = Some(version);
                    self.revisions = revisions;
                    return Ok(rev);
                }
                Err(StoreError::Conflict(_)) => {
                    *self = History::load(d, &self.stack).await?;
                }
                Err(e) => {
                    return Err(script_err(format!(
                        "cannot record revision {rev} of stack {}: {e}",
                        self.stack
                    )))
                }
            }
        }
        Err(script_err(format!(
            "cannot record a revision of stack {}: its history kept changing under concurrent writers",
            self.stack
        )))
    }

    /// Makes sure the state found is recorded: when it is not the current revision's (a first
    /// deploy, a change made outside wsm), it becomes a revision ("found"). Returns the number
    /// of the revision holding that state, None for a stack with no service.
    pub(super) async fn record_found(
        &mut self,
        d: &Docker,
        found: &Value,
    ) -> ScriptResult<Option<i64>> {
        if is_empty(found) {
            return Ok(None);
        }
        let current = self
            .current()
            .map(|cur| (cur["rev"].as_i64(), open_state(&cur["state"]), cur));
        match &current {
            Some((rev, Ok(state), _)) if state == found => return Ok(*rev),
            // Sealed with another key: the secret values cannot be compared, the rest can.
            Some((rev, Err(_), cur)) if secrets::blind(&cur["state"]) == secrets::blind(found) => {
                return Ok(*rev)
            }
            _ => {}
        }
        let changes = match current {
            Some((_, Ok(state), _)) => changes(&state, found),
            Some((_, Err(_), cur)) => changes(&cur["state"], found),
            None => vec!["the stack as first found".to_string()],
        };
        let rev = self
            .append(
                d,
                "found",
                "found on the swarm",
                changes,
                Some(found.clone()),
            )
            .await?;
        Ok(Some(rev))
    }
}

/// Puts the stack back to `state`: removes the services it did not have, recreates those it
/// had, and updates each service whose spec differs (its networks found again by name).
pub(super) async fn restore(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    state: &Value,
) -> ScriptResult<()> {
    let d = &e.docker;
    let existing = raw::stack_services(e, stack).await?;
    let networks = list_networks(d, HashMap::new()).await?;
    let mut objects = Vec::new();
    for kind in [Kind::Secret, Kind::Config] {
        let all = objects::list(d, kind, HashMap::new()).await?;
        let by_name = all
            .iter()
            .map(|o| {
                (
                    str_at(o, &["Spec", "Name"]).to_string(),
                    str_at(o, &["ID"]).to_string(),
                )
            })
            .collect();
        let ids = all.iter().map(|o| str_at(o, &["ID"]).to_string()).collect();
        objects.push((kind, by_name, ids));
    }
    let none = serde_json::Map::new();
    // Every spec made ready before anything changes, so a revision that cannot be restored
    // leaves the stack as it is.
    let mut wanted = serde_json::Map::new();
    for (name, spec) in state["services"].as_object().unwrap_or(&none) {
        let mut spec = spec.clone();
        point_at_objects(name, &mut spec, &objects)?;
        // A network recreated since (a stop and start) has a new id: find it by name.
        for n in spec["TaskTemplate"]["Networks"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let id = str_at(n, &["Target"]).to_string();
            if networks.iter().any(|x| str_at(x, &["Id"]) == id) {
                continue;
            }
            let net_name = str_at(&state["networks"], &[id.as_str()]).to_string();
            let now = networks
                .iter()
                .find(|x| str_at(x, &["Name"]) == net_name)
                .ok_or_else(|| {
                    script_err(format!(
                        "service {name} joins network {net_name}, which is gone; start the stack first"
                    ))
                })?;
            n["Target"] = json!(str_at(now, &["Id"]));
        }
        wanted.insert(name.clone(), spec);
    }
    for svc in &existing {
        let name = str_at(svc, &["Spec", "Name"]);
        if !wanted.contains_key(name) {
            host.say(&format!("Removing service {name}"));
            d.delete_service(str_at(svc, &["ID"]))
                .await
                .map_err(|e| failed(&format!("removing {name}"), e))?;
        }
    }
    for (name, spec) in &wanted {
        let typed: ServiceSpec =
            serde_json::from_value(raw::spec_for_bollard(spec)).map_err(script_err)?;
        match existing
            .iter()
            .find(|s| str_at(s, &["Spec", "Name"]) == name)
        {
            // The same spec but for fields the engine stores empty: nothing to roll back.
            Some(svc) if fields(&svc["Spec"], spec).is_empty() => {}
            Some(svc) => {
                host.say(&format!("Rolling back service {name}"));
                roll_back_service(e, stack, svc, name, typed).await?;
            }
            None => {
                host.say(&format!("Recreating service {name}"));
                d.create_service(typed, None)
                    .await
                    .map_err(|e| failed(&format!("recreating {name}"), e))?;
            }
        }
    }
    Ok(())
}

/// Sends a service its spec of the revision. The engine's updater moves a service's version
/// by itself while an update it was sent runs (its `UpdateStatus`): a write refused as out of
/// sequence is made again on the service read afresh, a few times.
async fn roll_back_service(
    e: &EngineHandle,
    stack: &str,
    svc: &Value,
    name: &str,
    spec: ServiceSpec,
) -> ScriptResult<()> {
    let mut current = svc.clone();
    for tries in 0.. {
        let err =
            match super::update_service_at(&e.docker, &current, spec.clone(), None, None).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
        let again = if tries < 5 && super::docker_message(&err).contains("out of sequence") {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let now = raw::stack_services(e, stack).await?;
            now.into_iter()
                .find(|s| str_at(s, &["Spec", "Name"]) == name)
        } else {
            None
        };
        current = again.ok_or_else(|| failed(&format!("rolling back {name}"), err))?;
    }
    unreachable!("the loop returns")
}

/// The revision a stack rollback returns to, its secret values opened: `to`, else the one
/// before the current. Refuses a revision that is not kept, holds no state, or holds secret
/// values this machine's key cannot open, in one sentence.
pub(super) fn target(history: &History, stack: &str, to: i64) -> ScriptResult<Value> {
    let mut rev = choose(history, stack, to)?;
    match open_state(&rev["state"]) {
        Ok(state) => rev["state"] = state,
        Err(why) => {
            return Err(script_err(format!(
                "cannot roll stack {stack} back to revision {} (recorded by {}): {why}; use the key that recorded it (WSM_SECRETS_KEY), or deploy that revision's files again",
                rev["rev"],
                str_at(&rev, &["by"])
            )))
        }
    }
    Ok(rev)
}

/// The revision a rollback returns to, as stored.
fn choose(history: &History, stack: &str, to: i64) -> ScriptResult<Value> {
    let with_state: Vec<&Value> = history
        .revisions
        .iter()
        .filter(|r| !r["state"].is_null())
        .collect();
    let kept = || {
        let numbers: Vec<String> = with_state
            .iter()
            .filter_map(|r| r["rev"].as_i64())
            .map(|n| n.to_string())
            .collect();
        if numbers.is_empty() {
            "none".to_string()
        } else {
            numbers.join(", ")
        }
    };
    if to > 0 {
        let Some(rev) = history.get(to) else {
            return Err(usage_err(format!(
                "stack {stack} has no revision {to}; revisions to return to: {}",
                kept()
            )));
        };
        if rev["state"].is_null() {
            return Err(usage_err(format!(
                "revision {to} of stack {stack} holds no state to return to ({}); choose one of {}",
                str_at(rev, &["status"]),
                kept()
            )));
        }
        return Ok(rev.clone());
    }
    match with_state.len() {
        0 | 1 => Err(usage_err(format!(
            "stack {stack} has no earlier revision to roll back to (revisions: {}); `stack history {stack}` lists them",
            kept()
        ))),
        n => Ok(with_state[n - 2].clone()),
    }
}

/// The engine's message for a failure, unwrapped.
pub(super) fn message_of(e: &rhai::EvalAltResult) -> String {
    match e {
        rhai::EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
