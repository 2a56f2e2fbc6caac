//! The stack's secrets and configs: the objects `deploy` creates before the services, and the
//! names services refer to them by.
//!
//! Beyond docker (moby#33808, moby#35048: a secret or config in use cannot be updated): an
//! object made from a file is named by its content, `<name>-<first 8 hex of sha256(data)>`,
//! where `<name>` is the declared `name:` or `<stack>_<key>`; a secret by a keyed hash of its
//! content instead (`secrets::Key::version`, the operator's key), so that its name does not
//! let anyone test a guess (`password` would be `…-5e884898` for all to see). A changed file is a new object,
//! the services roll to it, and `deploy` removes the versions no service uses any more.
//! External objects keep their name; driver-made secrets (no data) keep docker's name.
//!
//! Past docker, the compose spec's sources: a config's `content:` and a config's or secret's
//! `environment:` (the variable's value at load time) are versioned by their content as a file
//! is.

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::objects::{declarations, explicit_name, is_external};
use super::values::{stack_labels, text};
use crate::host::bounded;

/// The name services refer to a declared secret or config by; None when `short` is not
/// declared under `kind`, an error when its file cannot be read.
pub(super) fn object_name(
    doc: &Value,
    stack: &str,
    kind: &str,
    short: &str,
) -> Option<Result<String, String>> {
    let decl = declarations(doc, kind)?.get(short)?;
    Some(name_and_data(decl, stack, kind, short).map(|(name, _)| name))
}

/// The base name of a declaration (its `name:`, the key of an external one, else
/// `<stack>_<key>`).
fn base_name(decl: &Value, stack: &str, short: &str) -> String {
    let external_name = decl
        .get("external")
        .and_then(|e| e.get("name"))
        .map(text)
        .filter(|n| !n.is_empty());
    match (
        explicit_name(Some(decl)).or(external_name),
        is_external(Some(decl)),
    ) {
        (Some(n), _) => n,
        (None, true) => short.to_string(),
        (None, false) => format!("{stack}_{short}"),
    }
}

/// The object's name and, for one made from a file, its data.
fn name_and_data(
    decl: &Value,
    stack: &str,
    kind: &str,
    short: &str,
) -> Result<(String, Option<Vec<u8>>), String> {
    let base = base_name(decl, stack, short);
    if is_external(Some(decl)) || decl.get("driver").is_some() {
        return Ok((base, None));
    }
    let data = match (decl.get("content"), decl.get(FROM_ENVIRONMENT)) {
        (Some(content), _) => text(content).into_bytes(),
        (None, Some(value)) => text(value).into_bytes(),
        (None, None) => {
            let file = decl.get("file").map(text).unwrap_or_default();
            bounded::read_file(Path::new(&file), short, bounded::OBJECT_FILE)?
        }
    };
    if kind == "secrets" {
        let key = crate::host::secrets::key()?;
        return Ok((format!("{base}-{}", key.version(&data)), Some(data)));
    }
    Ok((versioned(&base, &data), Some(data)))
}

/// Where the loader keeps the value of a declaration's `environment:` source until the plan
/// turns it into the object's data, as a file-made secret's data is (no output path prints a
/// loaded document's declarations or a plan's data).
const FROM_ENVIRONMENT: &str = "x-wsm-value";

/// The compose spec's sources besides `file:`, read by the loader (which has the interpolation
/// values): a config's `content:` (kept as it is), and a config's or secret's `environment:`,
/// the value of that variable. Returns whether the declaration has one of them; more than one
/// source, or a variable that is not set, is an error naming the key.
pub(super) fn resolve_source(
    kind: &str,
    name: &str,
    decl: &mut serde_json::Map<String, Value>,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<bool, String> {
    decl.remove(FROM_ENVIRONMENT);
    let given: Vec<&str> = ["file", "content", "environment"]
        .into_iter()
        .filter(|k| decl.contains_key(*k))
        .collect();
    if given.len() > 1 {
        return Err(format!(
            "{kind}.{name}: {} are exclusive: give one source",
            given.join(" and ")
        ));
    }
    match given.first() {
        Some(&"content") => Ok(true),
        Some(&"environment") => {
            let var = decl.get("environment").map(text).unwrap_or_default();
            let value = env.get(&var).ok_or_else(|| {
                format!("{kind}.{name}.environment: the variable {var:?} is not set")
            })?;
            decl.insert(FROM_ENVIRONMENT.into(), Value::String(value.clone()));
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `<base>-<first 8 hex of sha256(data)>`.
pub fn versioned(base: &str, data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    format!("{base}-{}", &hex::encode(digest)[..8])
}

/// The stack's secrets or configs (`kind`), ordered by key: `{name, key, external, file?,
/// spec?}`, with the Engine API spec (`Data` in base64) of the ones `deploy` creates.
pub(super) fn plan_objects(doc: &Value, stack: &str, kind: &str) -> Result<Vec<Value>, String> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for (short, decl) in declarations(doc, kind).into_iter().flatten() {
        let ctx = |e: String| format!("{kind}.{e}");
        let (name, data) = name_and_data(decl, stack, kind, short).map_err(ctx)?;
        if is_external(Some(decl)) {
            out.push(json!({"name": name, "key": short, "external": true}));
            continue;
        }
        let mut spec = json!({
            "Name": name,
            "Labels": stack_labels(stack, decl.get("labels")),
            "Data": base64::engine::general_purpose::STANDARD.encode(data.unwrap_or_default()),
        });
        if let Some(driver) = decl.get("driver") {
            spec["Driver"] = json!({"Name": text(driver),
                "Options": decl.get("driver_opts").cloned().unwrap_or(json!({}))});
        }
        if let Some(t) = decl.get("template_driver") {
            spec["Templating"] = json!({"Name": text(t)});
        }
        let mut entry = json!({"name": name, "key": short, "external": false, "spec": spec});
        if let Some(f) = decl.get("file") {
            entry["file"] = f.clone();
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_by_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.conf");
        std::fs::write(&f, "one").unwrap();
        let doc = json!({"configs": {
            "a": {"file": f.to_str().unwrap(), "template_driver": "golang"},
            "b": {"external": true, "name": "shared"},
            "c": {"external": true}}});
        let objs = plan_objects(&doc, "st", "configs").unwrap();
        assert_eq!(objs[0]["name"], versioned("st_a", b"one"));
        assert_eq!(objs[0]["name"], "st_a-7692c3ad");
        assert_eq!(objs[0]["spec"]["Data"], "b25l");
        assert_eq!(objs[0]["spec"]["Templating"]["Name"], "golang");
        assert_eq!(objs[1]["name"], "shared");
        assert_eq!(objs[2]["name"], "c");
        std::fs::write(&f, "two").unwrap();
        let again = plan_objects(&doc, "st", "configs").unwrap();
        assert_ne!(again[0]["name"], objs[0]["name"]);
    }

    #[test]
    fn content_and_environment_sources_are_versioned_by_their_value() {
        let env = std::collections::BTreeMap::from([("GREETING".to_string(), "one".to_string())]);
        let load = |yaml: &str| {
            crate::host::compose::load(&[("f.yml".into(), yaml.into())], Path::new("/"), &env)
        };
        let doc = load(
            "services: {a: {image: i}}\nconfigs:\n  c: {content: one}\n  e: {environment: GREETING}\n",
        )
        .unwrap();
        let objs = plan_objects(&doc, "st", "configs").unwrap();
        assert_eq!(objs[0]["name"], "st_c-7692c3ad");
        assert_eq!(objs[1]["name"], "st_e-7692c3ad");
        assert_eq!(objs[1]["spec"]["Data"], "b25l");
        assert_eq!(
            load("services: {a: {image: i}}\nsecrets:\n  s: {environment: NOPE_NOT_SET}\n")
                .unwrap_err(),
            "f.yml: secrets.s.environment: the variable \"NOPE_NOT_SET\" is not set"
        );
        assert_eq!(
            load("services: {a: {image: i}}\nconfigs:\n  c: {content: x, environment: GREETING}\n")
                .unwrap_err(),
            "f.yml: configs.c: content and environment are exclusive: give one source"
        );
        assert!(
            load("services: {a: {image: i}}\nsecrets:\n  s: {content: x}\n")
                .unwrap_err()
                .contains("unknown key \"content\"")
        );
    }
}
