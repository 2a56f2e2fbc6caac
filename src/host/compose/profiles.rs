//! The compose spec's `profiles`: a service that lists profiles is deployed only when one of
//! them is active (`*` activates all); a service without is always deployed. The active
//! profiles are `--profile NAME` (repeatable), else `COMPOSE_PROFILES` (comma-separated) from
//! the interpolation values, as docker compose takes them. As in compose, other top-level
//! elements are not affected, and an active service that `depends_on` an inactive one is
//! refused, unless the dependency says `required: false` (then it is dropped).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::values::text;

/// The active profiles: those given, else `COMPOSE_PROFILES`.
pub fn active(given: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let list: Vec<String> = if given.is_empty() {
        env.get("COMPOSE_PROFILES")
            .map(|p| p.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    } else {
        given.to_vec()
    };
    list.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Whether a service is deployed under the active profiles.
fn enabled(svc: &Value, active: &[String]) -> bool {
    let listed: Vec<String> = match svc.get("profiles") {
        Some(Value::Array(a)) => a.iter().map(text).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![text(other)],
    };
    listed.is_empty()
        || active
            .iter()
            .any(|p| p == "*" || listed.iter().any(|l| l == p))
}

/// Removes the services of inactive profiles from a loaded document.
pub fn apply(doc: &mut Value, active: &[String]) -> Result<(), String> {
    let Some(services) = doc.get_mut("services").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let disabled: BTreeSet<String> = services
        .iter()
        .filter(|(_, svc)| !enabled(svc, active))
        .map(|(name, _)| name.clone())
        .collect();
    for name in &disabled {
        services.remove(name);
    }
    for (name, svc) in services.iter_mut() {
        let Some(deps) = svc.get_mut("depends_on") else {
            continue;
        };
        match deps {
            Value::Array(list) => {
                if let Some(dep) = list.iter().map(text).find(|d| disabled.contains(d)) {
                    return Err(inactive(name, &dep));
                }
            }
            Value::Object(map) => {
                for (dep, cfg) in map.iter() {
                    let required = !matches!(cfg.get("required"), Some(Value::Bool(false)));
                    if disabled.contains(dep) && required {
                        return Err(inactive(name, dep));
                    }
                }
                map.retain(|dep, _| !disabled.contains(dep));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error of an active service that depends on an inactive one, as compose words it.
fn inactive(service: &str, dep: &str) -> String {
    format!(
        "service {service:?} depends on undefined service {dep:?}: it is in no active profile (--profile or COMPOSE_PROFILES)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"services": {
            "web": {"image": "w"},
            "debug": {"image": "d", "profiles": ["debug"]},
            "seed": {"image": "s", "profiles": ["test", "ci"]},
        }})
    }

    fn names(d: &Value) -> Vec<&str> {
        d["services"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn only_services_of_active_profiles_stay() {
        let mut d = doc();
        apply(&mut d, &[]).unwrap();
        assert_eq!(names(&d), ["web"]);
        let mut d = doc();
        apply(&mut d, &["ci".into()]).unwrap();
        assert_eq!(names(&d), ["seed", "web"]);
        let mut d = doc();
        apply(&mut d, &["*".into()]).unwrap();
        assert_eq!(names(&d), ["debug", "seed", "web"]);
    }

    #[test]
    fn the_flag_beats_compose_profiles() {
        let env = BTreeMap::from([("COMPOSE_PROFILES".to_string(), "a, b,".to_string())]);
        assert_eq!(active(&[], &env), ["a", "b"]);
        assert_eq!(active(&["c".into()], &env), ["c"]);
    }

    #[test]
    fn depending_on_an_inactive_service_is_refused_unless_not_required() {
        let mut d = doc();
        d["services"]["web"]["depends_on"] = json!(["debug"]);
        assert_eq!(
            apply(&mut d, &[]).unwrap_err(),
            "service \"web\" depends on undefined service \"debug\": it is in no active profile (--profile or COMPOSE_PROFILES)"
        );
        let mut d = doc();
        d["services"]["web"]["depends_on"] =
            json!({"debug": {"condition": "service_started", "required": false}});
        apply(&mut d, &[]).unwrap();
        assert_eq!(d["services"]["web"]["depends_on"], json!({}));
    }
}
