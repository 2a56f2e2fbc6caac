//! `compose::` — compose files: `${VAR-default}` interpolation and translation of services into
//! swarm service specs and networks the way `docker stack deploy` does it (docker/cli's
//! `compose/convert`), so that `e.deploy` creates what `docker stack deploy` would. Nothing
//! here knows about Wavelet; any stack's compose file goes through the same code.
//!
//! By job: `interpolate` substitutes variables, `values` converts compose values, `service`
//! translates a service key by key (with `deploy`, `ports` and `mounts`), `objects` handles
//! the stack's top-level networks.

mod deploy;
mod draft;
mod interpolate;
mod mounts;
mod objects;
mod ports;
mod service;
mod values;

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Module};
use serde_json::{json, Value};

use super::{script_err, to_dynamic, to_json, Host, ScriptResult};

// `docker.rs` imports the label from here.
pub use super::NAMESPACE_LABEL;
pub use interpolate::interpolate;
pub use objects::stack_networks;

/// Parses compose YAML and interpolates it with `env`.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Value, String> {
    let mut doc: Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid compose file: {e}"))?;
    interpolate::interpolate_value(&mut doc, env)?;
    if !doc.get("services").is_some_and(Value::is_object) {
        return Err("invalid compose file: no `services` map".into());
    }
    values::cast_typed_fields(&mut doc);
    Ok(doc)
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
        specs.insert(
            name.clone(),
            service::service_spec(doc, stack, name, &mut warnings)?,
        );
    }
    Ok((specs, warnings))
}

/// What deploying the document as stack `stack` creates: `{services: [{name, spec}],
/// networks: [{name, spec}], warnings: [..]}`, services by short name, networks as
/// [`stack_networks`] orders them, names in full.
pub fn plan(doc: &Value, stack: &str) -> Result<Value, String> {
    let (specs, warnings) = translate(doc, stack)?;
    let services: Vec<Value> = specs
        .into_iter()
        .map(|(short, spec)| json!({"name": format!("{stack}_{short}"), "spec": spec}))
        .collect();
    let networks: Vec<Value> = stack_networks(doc, stack)?
        .into_iter()
        .map(|(name, spec)| json!({"name": name, "spec": spec}))
        .collect();
    Ok(json!({"services": services, "networks": networks, "warnings": warnings}))
}

/// A script's env map as interpolation values; `()` entries count as unset.
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

    // compose::plan(doc, stack) — what deploying `doc` as `stack` creates:
    // #{services: [#{name, spec}], networks: [#{name, spec}], warnings: [..]}.
    m.set_native_fn(
        "plan",
        |doc: Dynamic, stack: &str| -> ScriptResult<Dynamic> {
            to_dynamic(&plan(&to_json(&doc)?, stack).map_err(script_err)?)
        },
    );

    engine.register_static_module("compose", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interpolation environment from (name, value) pairs.
    pub(super) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The plan of a compose file interpolated with the fixed env of
    /// `tests/fixtures/compose/pinned.env` (KEY=VALUE lines).
    fn plan_of(compose: &str, stack: &str) -> Value {
        let e: BTreeMap<String, String> =
            include_str!("../../../tests/fixtures/compose/pinned.env")
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        plan(&parse(compose, &e).unwrap(), stack).unwrap()
    }

    /// Compares a plan with its fixture under `tests/fixtures/compose/`. With `WSM_WRITE_FIXTURES` set it
    /// rewrites the fixture first, for a deliberate change whose diff is then reviewed.
    fn assert_plan_matches(plan: Value, fixture: &str) {
        let path = format!(
            "{}/tests/fixtures/compose/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        if std::env::var_os("WSM_WRITE_FIXTURES").is_some() {
            std::fs::write(&path, serde_json::to_string_pretty(&plan).unwrap() + "\n").unwrap();
        }
        let want: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(plan, want, "the plan differs from {path}");
    }

    #[test]
    fn the_bundled_compose_file_translates_as_pinned() {
        let plan = plan_of(
            include_str!("../../../tests/fixtures/compose/bundled-stack.compose.yml"),
            "pin",
        );
        assert_plan_matches(plan, "bundled-stack.plan.json");
    }

    #[test]
    fn every_accepted_key_translates_as_pinned() {
        let plan = plan_of(
            include_str!("../../../tests/fixtures/compose/every-key.compose.yml"),
            "pin",
        );
        assert_plan_matches(plan, "every-key.plan.json");
    }

    #[test]
    fn plan_gives_scripts_services_networks_and_warnings() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let host = Host::new(rt.handle().clone(), Default::default());
        let mut engine = Engine::new();
        register(&mut engine, &host);
        let seen: String = engine
            .eval(
                r#"
                let doc = compose::parse("services:\n  b:\n    image: i\n    restart: always\n  a:\n    image: ${IMG}\n", #{ IMG: "j" });
                let p = compose::plan(doc, "st");
                let s = p.services;
                `${p.keys()} ${s[0].name} ${s[1].name} ${s[0].spec.TaskTemplate.ContainerSpec.Image} ${p.networks[0].name} ${p.networks[0].spec.Driver} ${p.warnings}`
                "#,
            )
            .unwrap();
        assert_eq!(
            seen,
            r#"["networks", "services", "warnings"] st_a st_b j st_default overlay ["service b: ignoring \"restart\" (not used on a swarm)"]"#
        );
    }

    #[test]
    fn refused_keys_and_bad_values_keep_their_messages() {
        let error = |service: &str| {
            let doc = parse(&format!("services:\n  x:\n{service}"), &env(&[])).unwrap();
            translate(&doc, "st").unwrap_err()
        };
        assert_eq!(
            error("    image: i\n    privileged: true\n    zz_unknown: 1\n"),
            "service x: the key \"privileged\" is not supported by wsm"
        );
        assert_eq!(error("    command: c\n"), "service x: no image");
        assert_eq!(
            error("    image: i\n    deploy: {mode: daemon}\n"),
            "service x: unknown deploy mode \"daemon\""
        );
        assert_eq!(
            error("    image: i\n    deploy: {endpoint_mode: x}\n"),
            "service x: unknown endpoint_mode \"x\""
        );
        assert_eq!(
            error("    image: i\n    volumes: [\"v:/v\"]\n"),
            "service x: undefined volume \"v\""
        );
        assert_eq!(
            error("    image: i\n    stop_grace_period: 5x\n"),
            "service x: unknown unit \"x\" in duration \"5x\""
        );
        assert_eq!(
            error("    image: i\n    ports: [\"1:2:3:4\"]\n"),
            "service x: invalid port \"1:2:3:4\""
        );
        let doc = parse(
            "services:\n  x:\n    image: i\n    networks: [n]\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(
            stack_networks(&doc, "st").unwrap_err(),
            "a service uses the undefined network \"n\""
        );
    }
}
