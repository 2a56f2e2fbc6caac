//! Keys of the compose spec (what `docker compose` reads) that docker stack deploy's v3 schema
//! lacks, and what wsm does with each on a swarm. Those with a meaning here are applied by
//! their own module (`include`, `profiles`, the top-level `name`); those with no meaning on a
//! swarm get docker's warning ("ignoring unsupported options: …"), never an error; those
//! whose meaning a swarm has under another key are refused naming it, as docker refuses
//! `mem_limit`.

use serde_json::Value;

/// Top-level keys: `name` (the stack's name when none is given), `include` (`include.rs`).
pub const TOP: &[&str] = &["name", "include"];

/// Service keys applied by wsm: `profiles` (`profiles.rs`).
pub const SERVICE: &[&str] = &["profiles"];

/// Service keys with no meaning on a swarm: a service has no such field, or it is about
/// building, pulling, or `docker compose up`'s own work. Ignored with a warning.
pub const IGNORED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "develop",
    "device_cgroup_rules",
    "gpus",
    "mem_swappiness",
    "models",
    "oom_kill_disable",
    "platform",
    "post_start",
    "pre_stop",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "runtime",
    "storage_opt",
    "use_api_socket",
    "uts",
];

/// Service keys whose meaning a swarm service has under another key.
pub const INSTEAD: &[(&str, &str)] = &[
    ("cpus", "set deploy.resources.limits.cpus instead"),
    (
        "mem_reservation",
        "set deploy.resources.reservations.memory instead",
    ),
    ("pids_limit", "set deploy.resources.limits.pids instead"),
    ("scale", "set deploy.replicas instead"),
];

/// Every service key the loader lets through from the compose spec.
pub fn service_keys() -> impl Iterator<Item = &'static str> {
    SERVICE
        .iter()
        .chain(IGNORED)
        .chain(INSTEAD.iter().map(|(k, _)| k))
        .copied()
}

/// The top-level `name`, checked as compose checks a project name; None when absent.
pub fn stack_name(doc: &Value) -> Result<Option<String>, String> {
    let Some(name) = doc.get("name").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::String(name) = name else {
        return Err("name must be a string".into());
    };
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(format!(
            "name: invalid project name {name:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number"
        ));
    }
    Ok(Some(name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_is_a_compose_project_name() {
        assert_eq!(stack_name(&json!({})).unwrap(), None);
        assert_eq!(
            stack_name(&json!({"name": "shop_2-a"})).unwrap().as_deref(),
            Some("shop_2-a")
        );
        assert!(stack_name(&json!({"name": "Shop"}))
            .unwrap_err()
            .starts_with("name: invalid project name \"Shop\""));
        assert!(stack_name(&json!({"name": "-x"})).is_err());
    }

    #[test]
    fn keys_with_no_meaning_on_a_swarm_are_warned_about_and_others_refused() {
        let yaml = "services:\n  a:\n    image: i\n    develop: {watch: []}\n    pull_policy: always\n    build: .\n    profiles: [p]\n";
        let doc = super::super::parse(yaml, &Default::default()).unwrap();
        let (_, warnings) = super::super::translate(&doc, "st").unwrap();
        assert_eq!(
            warnings,
            ["service a: ignoring unsupported options: build, develop, pull_policy"]
        );
        let e = super::super::parse(
            "services:\n  a:\n    image: i\n    scale: 2\n",
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "compose file: services.a: \"scale\" is not supported: set deploy.replicas instead"
        );
    }
}
