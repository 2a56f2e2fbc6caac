//! The stacks of the safe-deploy tests: compose files of sleeping services, the Docker CLI's
//! view of their specs, and the field-by-field difference a plan is checked against.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

pub const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// A test's stack plus what `docker stack rm` leaves: its revisions document and its lock.
pub struct SafeStack {
    pub s: TestStack,
}

impl SafeStack {
    pub fn new(prefix: &str) -> Self {
        SafeStack {
            s: TestStack::bare(prefix),
        }
    }

    pub fn name(&self) -> &str {
        &self.s.name
    }

    /// Writes a compose file into the stack's folder; returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.s.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `wsm stack <args…>` with the stack's name last.
    pub fn stack(&self, args: &[&str]) -> Run {
        let mut all = vec!["stack"];
        all.extend_from_slice(args);
        all.push(self.name());
        self.s.wsm(&all)
    }

    /// A `wsm stack deploy -c FILE --timeout 60 <extra…> NAME` ready to spawn.
    pub fn deploy_command(&self, file: &str, extra: &[&str]) -> std::process::Command {
        let mut args = vec!["stack", "deploy", "-c", file, "--timeout", "60"];
        args.extend_from_slice(extra);
        args.push(self.name());
        let mut c = self.s.command(&args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    pub fn deploy(&self, file: &str, extra: &[&str]) -> Run {
        self.deploy_command(file, extra).output().unwrap().into()
    }

    /// Every service's `Spec` as `docker service inspect` shows it, by name.
    pub fn specs(&self) -> BTreeMap<String, Value> {
        self.inspect()
            .into_iter()
            .map(|(n, s)| (n, s["Spec"].clone()))
            .collect()
    }

    pub fn inspect(&self) -> BTreeMap<String, Value> {
        let names = self.s.services();
        if names.is_empty() {
            return BTreeMap::new();
        }
        let mut args = vec!["service", "inspect"];
        args.extend(names.iter().map(String::as_str));
        let all: Vec<Value> = serde_json::from_str(&docker(&args)).unwrap();
        all.into_iter()
            .map(|s| (s["Spec"]["Name"].as_str().unwrap().to_string(), s))
            .collect()
    }

    pub fn history(&self) -> Vec<Value> {
        let r = self.stack(&["history", "--json"]);
        serde_json::from_str(r.ok()).unwrap()
    }

    pub fn lock_object(&self) -> bool {
        !docker_quiet(&[
            "config",
            "ls",
            "-q",
            "--filter",
            &format!("name=wsm-lock-{}", self.name()),
        ])
        .trim()
        .is_empty()
    }
}

impl Drop for SafeStack {
    fn drop(&mut self) {
        for object in [
            format!("wsm-state-stack.{}.revisions", self.name()),
            format!("wsm-lock-{}", self.name()),
        ] {
            docker_quiet(&["config", "rm", &object]);
        }
    }
}

/// A compose file of services `(name, image, env, replicas, extra lines)`, each sleeping.
pub fn compose(services: &[(&str, &str, &str, u32, &str)]) -> String {
    let mut out = String::from("services:\n");
    for (name, image, env, replicas, extra) in services {
        out += &format!(
            "  {name}:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    environment: [\"{env}\"]\n    deploy:\n      replicas: {replicas}\n{extra}"
        );
    }
    out
}

/// Three services whose environment is `V=<v>`.
pub fn three(v: &str, extra: &str) -> String {
    let env = format!("V={v}");
    compose(&[
        ("web", IMAGE, &env, 1, extra),
        ("api", IMAGE, &env, 1, extra),
        ("worker", IMAGE, &env, 1, extra),
    ])
}

/// Whether a value counts as absent, as the engine's `omitempty` drops it.
pub fn absent(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Bool(true) => false,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(absent),
    }
}

/// An environment list as a map from each key to its value.
fn env_map(v: &Value) -> Value {
    let mut map = serde_json::Map::new();
    for e in v.as_array().into_iter().flatten() {
        let e = e.as_str().unwrap();
        match e.split_once('=') {
            Some((k, x)) => map.insert(k.to_string(), Value::String(x.into())),
            None => map.insert(e.to_string(), Value::Null),
        };
    }
    Value::Object(map)
}

/// The fields in which two specs differ: dotted paths, a list one field (an environment one
/// field per key), absent = empty.
pub fn spec_diff(path: &str, a: &Value, b: &Value, out: &mut BTreeMap<String, (Value, Value)>) {
    if absent(a) && absent(b) {
        return;
    }
    if path.ends_with(".Env") {
        let (x, y) = (env_map(a), env_map(b));
        for k in x
            .as_object()
            .unwrap()
            .keys()
            .chain(y.as_object().unwrap().keys())
        {
            if x.get(k) != y.get(k) {
                let side = |m: &Value| m.get(k).cloned().unwrap_or(Value::Null);
                out.insert(format!("{path}.{k}"), (side(&x), side(&y)));
            }
        }
        return;
    }
    let empty = Value::Object(Default::default());
    let a = if b.is_object() && absent(a) {
        &empty
    } else {
        a
    };
    let b = if a.is_object() && absent(b) {
        &empty
    } else {
        b
    };
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        for k in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            spec_diff(
                &p,
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
                out,
            );
        }
    } else if a != b {
        let shown = |v: &Value| match v {
            Value::Array(_) | Value::Object(_) if absent(v) => Value::Null,
            o => o.clone(),
        };
        out.insert(path.to_string(), (shown(a), shown(b)));
    }
}
