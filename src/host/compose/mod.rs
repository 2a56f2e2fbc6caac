//! `compose::` — compose files: `${VAR-default}` interpolation and translation of services into
//! swarm service specs and networks the way `docker stack deploy` does it (docker/cli's
//! `compose/convert`), so that `e.deploy` creates what `docker stack deploy` would. Nothing
//! here knows about Wavelet; any stack's compose file goes through the same code.
//!
//! By job: `load` reads, checks (`schema`), interpolates (`interpolate`) and merges (`merge`)
//! compose files, with the compose spec's `include` (`include`), `profiles` (`profiles`) and
//! keys that docker's v3 schema lacks (`spec_keys`); `values` converts compose values;
//! `service` translates a service key by key (with `deploy`, `container`, `ports` and
//! `mounts`); `objects` handles the stack's top-level networks and `files` its secrets and
//! configs.

mod container;
mod depends;
mod deploy;
mod dotenv;
mod draft;
pub(super) mod files;
mod include;
mod interpolate;
mod load;
mod merge;
mod mounts;
mod objects;
mod ports;
mod profiles;
mod reference;
mod schema;
mod service;
mod spec_keys;
mod values;

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Module};
use serde_json::{json, Value};

use super::{input_err, script_err, to_dynamic, to_json, Host, ScriptResult};
use crate::host::doc::{check_opts, Opt, Prim};

// `docker.rs` imports the label from here.
pub use super::NAMESPACE_LABEL;
pub use files::versioned;
pub use interpolate::interpolate;
pub use load::{load, parse_yaml};
pub use objects::stack_networks;
pub use service::{tagged_image, IMAGE_LABEL};

/// Parses one compose file's text and interpolates it with `env` alone, paths resolving
/// against `dir`: `compose::load` for text a script holds.
pub fn parse_in(
    text: &str,
    env: &BTreeMap<String, String>,
    dir: &std::path::Path,
) -> Result<Value, String> {
    load(&[("compose file".into(), text.into())], dir, env)
}

/// [`parse_in`] against the current directory.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Value, String> {
    let dir = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    parse_in(text, env, &dir)
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
/// networks: [{name, spec}], volumes: [{name, spec}], configs: [{name, key, external, spec?,
/// file?}], secrets: [..], warnings: [..], depends: [{service, on, condition, restart}]}`.
/// Services by short name, networks as [`stack_networks`] orders them, names in full; configs
/// and secrets as `files` names them; `depends` the order `depends.rs` reads.
pub fn plan(doc: &Value, stack: &str) -> Result<Value, String> {
    let (specs, mut warnings) = translate(doc, stack)?;
    let depends = depends::plan_depends(doc, stack, &mut warnings)?;
    let services: Vec<Value> = specs
        .into_iter()
        .map(|(short, spec)| json!({"name": format!("{stack}_{short}"), "spec": spec}))
        .collect();
    let networks: Vec<Value> = stack_networks(doc, stack)?
        .into_iter()
        .map(|(name, spec)| json!({"name": name, "spec": spec}))
        .collect();
    Ok(json!({
        "services": services,
        "networks": networks,
        "volumes": objects::stack_volumes(doc, stack),
        "configs": files::plan_objects(doc, stack, "configs")?,
        "secrets": files::plan_objects(doc, stack, "secrets")?,
        "warnings": warnings,
        "depends": depends,
    }))
}

/// A script's env map as interpolation values; `()` entries count as unset.
fn env_map(env: &Map) -> BTreeMap<String, String> {
    env.iter()
        .filter(|(_, v)| !v.is_unit())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `compose::load`'s work: read the files (stdin for `-`), build the interpolation values,
/// load. Paths resolve against the first file's directory (the current one for stdin).
fn load_files(files: &rhai::Array, opts: &Map) -> Result<Value, String> {
    let names: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    let dir = match names.first() {
        Some(first) if first != "-" => {
            let p = cwd.join(first);
            p.parent().map(|d| d.to_path_buf()).unwrap_or(cwd.clone())
        }
        _ => cwd.clone(),
    };
    let mut texts = Vec::new();
    for name in &names {
        let path = if name == "-" {
            std::path::PathBuf::from("-")
        } else {
            cwd.join(name)
        };
        let bytes = crate::host::bounded::read_bytes_as(
            &path,
            name,
            "compose file",
            crate::host::bounded::COMPOSE_FILE,
        )?;
        let label = crate::host::bounded::label_of(&path, name, "compose file");
        texts.push((name.clone(), load::decode(bytes, &label)?));
    }
    let env_files: Vec<std::path::PathBuf> = opts
        .get("env_files")
        .and_then(|f| f.clone().into_array().ok())
        .unwrap_or_default()
        .iter()
        .map(|f| cwd.join(f.to_string()))
        .collect();
    let explicit = opts
        .get("env")
        .and_then(|e| e.clone().try_cast::<Map>())
        .map(|e| env_map(&e))
        .unwrap_or_default();
    let inside = opts
        .get("inside")
        .map(|d| d.to_string())
        .filter(|d| !d.is_empty());
    if let Some(root) = &inside {
        let mut read: Vec<std::path::PathBuf> = names.iter().map(|n| cwd.join(n)).collect();
        read.extend(env_files.iter().cloned());
        read.push(dir.join(".env"));
        check_inside(root, read.iter().filter(|p| p.exists()))?;
    }
    let env = load::environment(&dir, &env_files, &explicit)?;
    let _inside = include::Inside::enter(inside.as_ref().map(std::path::PathBuf::from));
    let mut doc = load(&texts, &dir, &env)?;
    let first = names.first().map(String::as_str).unwrap_or("-");
    let given: Vec<String> = opts
        .get("profiles")
        .and_then(|p| p.clone().into_array().ok())
        .unwrap_or_default()
        .iter()
        .map(|p| p.to_string())
        .collect();
    profiles::apply(&mut doc, &profiles::active(&given, &env))
        .map_err(|e| format!("{first}: {e}"))?;
    spec_keys::stack_name(&doc).map_err(|e| format!("{first}: {e}"))?;
    if let Some(root) = &inside {
        check_inside(root, files_read(&doc).iter())?;
    }
    Ok(doc)
}

/// The files a loaded document names that wsm reads: each service's `env_file`, and the
/// `file` of every config and secret (made absolute by the loader).
fn files_read(doc: &Value) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str())
                .map(String::from)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    if let Some(services) = doc.get("services").and_then(Value::as_object) {
        for svc in services.values() {
            out.extend(strings(svc.get("env_file")).into_iter().map(Into::into));
        }
    }
    for kind in ["configs", "secrets"] {
        if let Some(decls) = doc.get(kind).and_then(Value::as_object) {
            for d in decls.values() {
                out.extend(strings(d.get("file")).into_iter().map(Into::into));
            }
        }
    }
    out
}

/// Refuses a file that is not inside `root` once links are followed: a synced repository may
/// hold a link to the runner's keys, or name `../../etc/shadow`, and its files must stay its own.
fn check_inside<'a>(
    root: &str,
    paths: impl Iterator<Item = &'a std::path::PathBuf>,
) -> Result<(), String> {
    let root = std::fs::canonicalize(root).map_err(|e| format!("{root}: {e}"))?;
    for p in paths {
        let real = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if !real.starts_with(&root) {
            return Err(format!(
                "{} is outside the repository's checkout ({}): a synced stack reads files only from its repository",
                p.display(),
                real.display()
            ));
        }
    }
    Ok(())
}

/// `compose::load`'s options.
const LOAD_OPTS: &[Opt] = &[
    (
        "env_files",
        "paths of env files, read as `--env-file` reads them",
    ),
    ("env", "a map of variables for the interpolation"),
    (
        "profiles",
        "the active profiles (`--profile`): services of other profiles are left out; when \
         empty, `COMPOSE_PROFILES` of the interpolation values",
    ),
    (
        "inside",
        "a folder: every file read (compose, env and config/secret files, followed through \
         links) must be in it",
    ),
];

/// Registers the `compose::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();
    let _ = host;

    let prim = Prim::new("compose::parse(yaml_text: string, env: map) -> map").doc(
        "Parses and interpolates one compose file's text with `env` alone (paths against the \
         current directory). Bad input is an error of exit code 2 (`input_error`).",
    );
    prim.set_in(&mut m, |text: &str, env: Map| -> ScriptResult<Dynamic> {
        let doc = parse(text, &env_map(&env)).map_err(input_err)?;
        to_dynamic(&doc)
    });

    let prim = Prim::new("compose::load(files: array, opts: map) -> map")
        .opts(LOAD_OPTS)
        .doc(
            "The merged, interpolated document of compose files (`\"-\"` is stdin), as `docker \
             stack deploy -c … -c …` reads them. Bad input is one line naming the file, the key \
             and the reason, exit code 2 (`input_error`).",
        );
    prim.set_in(
        &mut m,
        |files: rhai::Array, opts: Map| -> ScriptResult<Dynamic> {
            check_opts("compose::load", &opts, LOAD_OPTS)?;
            to_dynamic(&load_files(&files, &opts).map_err(input_err)?)
        },
    );

    let prim = Prim::new("compose::interpolate(text: string, env: map) -> string").doc(
        "`${VAR}`, `${VAR-default}`, `${VAR:?message}` substitution on one string; an unset \
         required variable is a usage error.",
    );
    prim.set_in(&mut m, |text: &str, env: Map| -> ScriptResult<String> {
        interpolate(text, &env_map(&env)).map_err(script_err)
    });

    let prim = Prim::new("compose::to_yaml(doc: map) -> string")
        .doc("Renders a (modified) compose document as YAML.");
    prim.set_in(&mut m, |doc: Dynamic| -> ScriptResult<String> {
        serde_saphyr::to_string(&to_json(&doc)?).map_err(script_err)
    });

    let prim = Prim::new("compose::specs(doc: map, stack: string) -> array")
        .doc("The Engine API service specs `e.deploy` would send for this document and stack.");
    prim.set_in(
        &mut m,
        |doc: Dynamic, stack: &str| -> ScriptResult<Dynamic> {
            let (specs, _) = translate(&to_json(&doc)?, stack).map_err(script_err)?;
            to_dynamic(&specs)
        },
    );

    let prim = Prim::new("compose::plan(doc: map, stack: string) -> map").doc(
        "What deploying `doc` as `stack` creates: `#{services: [#{name, spec}], networks: \
         [#{name, spec}], warnings: […]}`, plus secrets and configs; the argument of `e.deploy`.",
    );
    prim.set_in(
        &mut m,
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
        let dir = std::path::Path::new("/compose");
        plan(&parse_in(compose, &e, dir).unwrap(), stack).unwrap()
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
            r#"["configs", "depends", "networks", "secrets", "services", "volumes", "warnings"] st_a st_b j:latest st_default overlay ["service b: ignoring unsupported options: restart"]"#
        );
    }

    #[test]
    fn refused_keys_and_bad_values_keep_their_messages() {
        let error = |service: &str| {
            let doc = parse(&format!("services:\n  x:\n{service}"), &env(&[])).unwrap();
            translate(&doc, "st").unwrap_err()
        };
        assert_eq!(
            error("    command: c\n"),
            "invalid image reference for service x: no image specified"
        );
        assert_eq!(
            error("    image: i\n    deploy: {mode: global, replicas: 2}\n"),
            "service x: replicas can only be used with replicated or replicated-job mode"
        );
        assert_eq!(
            error("    image: i\n    secrets: [s]\n"),
            "service x: undefined secret \"s\""
        );
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
