//! A stack's secrets and configs on the swarm: created before the services (as
//! `docker stack deploy` does), the services' references pointed at their ids, the versions
//! that neither a service nor a kept revision uses removed after a deploy (`compose::plan` names
//! file-made objects by their content, so a changed file is a new object; `revisions` says which
//! versions its revisions keep), and all of them removed with the stack.

use std::collections::{HashMap, HashSet};

use bollard::models::{ConfigSpec, SecretSpec};
use bollard::query_parameters::{ListConfigsOptions, ListSecretsOptions};
use bollard::Docker;
use serde::Deserialize;
use serde_json::Value;

use super::{absent_on_404, failed, list_services, stack_filter, str_at, values};
use crate::host::{script_err, Host, ScriptResult};

/// A secret or config of a plan: its full name, whether it exists outside the stack, and the
/// Engine API spec of one the stack creates.
#[derive(Deserialize, Clone)]
pub(super) struct FileObject {
    pub name: String,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub spec: Option<Value>,
}

/// Which of the two kinds: they differ only in names and endpoints.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Secret,
    Config,
}

impl Kind {
    pub(super) fn word(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    /// The reference list in a `ContainerSpec` and the name and id fields of its entries.
    pub(super) fn fields(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Secret => ("Secrets", "SecretName", "SecretID"),
            Kind::Config => ("Configs", "ConfigName", "ConfigID"),
        }
    }
}

/// The objects of a kind, filtered.
pub(super) async fn list(
    d: &Docker,
    kind: Kind,
    f: HashMap<String, Vec<String>>,
) -> ScriptResult<Vec<Value>> {
    match kind {
        Kind::Secret => {
            let o = ListSecretsOptions { filters: Some(f) };
            values(d.list_secrets(Some(o))).await
        }
        Kind::Config => {
            let o = ListConfigsOptions { filters: Some(f) };
            values(d.list_configs(Some(o))).await
        }
    }
}

/// Creates one object from its spec; returns its id.
pub(super) async fn create(d: &Docker, kind: Kind, spec: Value) -> ScriptResult<String> {
    let name = str_at(&spec, &["Name"]).to_string();
    let what = format!("creating {} {name}", kind.word());
    let id = match kind {
        Kind::Secret => {
            let s: SecretSpec = serde_json::from_value(spec).map_err(script_err)?;
            d.create_secret(s).await.map_err(|e| failed(&what, e))?.id
        }
        Kind::Config => {
            let s: ConfigSpec = serde_json::from_value(spec).map_err(script_err)?;
            d.create_config(s).await.map_err(|e| failed(&what, e))?.id
        }
    };
    Ok(id)
}

/// Removes one object; an object already gone is no failure.
pub(super) async fn delete(d: &Docker, kind: Kind, id: &str) -> Result<(), bollard::errors::Error> {
    match kind {
        Kind::Secret => absent_on_404(d.delete_secret(id)).await.map(|_| ()),
        Kind::Config => absent_on_404(d.delete_config(id)).await.map(|_| ()),
    }
}

/// Creates the plan's objects of `kind` that do not exist yet; `all` is the swarm's listing of
/// that kind, which the deploy reads once. Returns the id of every object of the swarm by name,
/// the new ones included, for [`point_references`].
pub(super) async fn ensure(
    host: &Host,
    d: &Docker,
    kind: Kind,
    objects: &[FileObject],
    all: &[Value],
) -> ScriptResult<HashMap<String, String>> {
    let mut ids: HashMap<String, String> = all
        .iter()
        .map(|o| {
            (
                str_at(o, &["Spec", "Name"]).to_string(),
                str_at(o, &["ID"]).to_string(),
            )
        })
        .collect();
    for obj in objects {
        if obj.external || ids.contains_key(&obj.name) {
            continue;
        }
        let Some(spec) = obj.spec.clone() else {
            continue;
        };
        host.say(&format!("Creating {} {}", kind.word(), obj.name));
        let id = create(d, kind, spec).await?;
        ids.insert(obj.name.clone(), id);
    }
    Ok(ids)
}

/// Fills in the ids of the secrets or configs a service spec refers to by name (and of a
/// credential spec's config), failing as docker does when one does not exist.
pub(super) fn point_references(
    spec: &mut Value,
    kind: Kind,
    ids: &HashMap<String, String>,
) -> ScriptResult<()> {
    let (list, name_field, id_field) = kind.fields();
    let service = str_at(spec, &["Name"]).to_string();
    let container = &mut spec["TaskTemplate"]["ContainerSpec"];
    let missing = |name: &str| {
        script_err(format!(
            "service {service}: {} not found: {name}",
            kind.word()
        ))
    };
    if let Some(refs) = container.get_mut(list).and_then(Value::as_array_mut) {
        for r in refs {
            let name = str_at(r, &[name_field]).to_string();
            let id = ids.get(&name).ok_or_else(|| missing(&name))?;
            r[id_field] = Value::String(id.clone());
        }
    }
    if let (Kind::Config, Some(Value::String(name))) = (
        kind,
        container.pointer_mut("/Privileges/CredentialSpec/Config"),
    ) {
        let id = ids.get(name.as_str()).ok_or_else(|| missing(name))?.clone();
        *name = id;
    }
    Ok(())
}

/// Whether a name is a content version wsm made: `<base>-<8 hex>`.
pub(super) fn is_versioned(name: &str) -> bool {
    name.rsplit_once('-').is_some_and(|(_, h)| {
        h.len() == 8
            && h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

/// The ids of the objects of `kind` that `services` refer to.
pub(super) fn used_ids(services: &[Value], kind: Kind) -> HashSet<String> {
    let (list_field, _, id_field) = kind.fields();
    services
        .iter()
        .flat_map(|s| {
            s.pointer(&format!("/Spec/TaskTemplate/ContainerSpec/{list_field}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|r| str_at(&r, &[id_field]).to_string())
        .collect()
}

/// The content versions among a stack's objects (`listed`) that may go, as (name, id): not in
/// `keep`, and referred to by no service (`used`: [`used_ids`]).
pub(super) fn unused_versions<'a>(
    listed: &'a [Value],
    keep: &HashSet<String>,
    used: &HashSet<String>,
) -> Vec<(&'a str, &'a str)> {
    listed
        .iter()
        .map(|obj| (str_at(obj, &["Spec", "Name"]), str_at(obj, &["ID"])))
        .filter(|(name, id)| !keep.contains(*name) && is_versioned(name) && !used.contains(*id))
        .collect()
}

/// Removes the stack's content versions of `kind` not in `keep` (the plan's and the kept
/// revisions') that no service of the swarm refers to: the old versions of a changed file.
pub(super) async fn prune_versions(
    host: &Host,
    d: &Docker,
    stack: &str,
    kind: Kind,
    keep: &HashSet<String>,
) -> ScriptResult<()> {
    let used = used_ids(&list_services(d, HashMap::new()).await?, kind);
    let listed = list(d, kind, stack_filter(stack)).await?;
    for (name, id) in unused_versions(&listed, keep, &used) {
        host.say(&format!("Removing old {} {name}", kind.word()));
        if let Err(e) = delete(d, kind, id).await {
            host.warn(&format!(
                "keeping {} {name}: {}",
                kind.word(),
                super::docker_message(&e)
            ));
        }
    }
    Ok(())
}

/// Removes every secret or config of the stack (external ones never carry its label) but
/// those whose id is in `keep`.
pub(super) async fn remove_all(
    host: &Host,
    d: &Docker,
    stack: &str,
    kind: Kind,
    keep: &HashSet<String>,
) -> ScriptResult<()> {
    for obj in list(d, kind, stack_filter(stack)).await? {
        if keep.contains(str_at(&obj, &["ID"])) {
            continue;
        }
        let name = str_at(&obj, &["Spec", "Name"]);
        host.say(&format!("Removing {} {name}", kind.word()));
        delete(d, kind, str_at(&obj, &["ID"]))
            .await
            .map_err(|e| failed(&format!("removing {} {name}", kind.word()), e))?;
    }
    Ok(())
}

/// Whether the stack has secrets or configs left.
pub(super) async fn any(d: &Docker, stack: &str) -> ScriptResult<bool> {
    Ok(
        !list(d, Kind::Secret, stack_filter(stack)).await?.is_empty()
            || !list(d, Kind::Config, stack_filter(stack)).await?.is_empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_are_recognised_and_references_get_ids() {
        assert!(is_versioned("st_app-0123abcd"));
        assert!(!is_versioned("st_app"));
        assert!(!is_versioned("st_my-secret"));
        let mut spec = json!({"Name": "st_a", "TaskTemplate": {"ContainerSpec": {
            "Secrets": [{"SecretName": "st_s-0123abcd", "File": {"Name": "s"}}]}}});
        let ids = HashMap::from([("st_s-0123abcd".to_string(), "id1".to_string())]);
        point_references(&mut spec, Kind::Secret, &ids).unwrap();
        assert_eq!(
            spec["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"],
            "id1"
        );
        let mut missing = json!({"Name": "st_b", "TaskTemplate": {"ContainerSpec": {
            "Secrets": [{"SecretName": "nope"}]}}});
        let e = point_references(&mut missing, Kind::Secret, &ids).unwrap_err();
        assert!(e
            .to_string()
            .contains("service st_b: secret not found: nope"));
    }
}
