//! Real stack files of public projects (`tests/corpus/`, sources in `tests/corpus/SOURCES.md`)
//! deployed by wsm (`compose::load` + `compose::plan` + `e.deploy`, through `wsm run`) and by
//! `docker stack deploy --resolve-image never`, under two stack names, and compared field by
//! field on what the engine stored: services, networks, secrets and configs. No image exists
//! here and no task is awaited; the volumes a task would create are compared through the
//! services' mount specs (their `VolumeOptions`). Files run one after another: several publish
//! the same ports.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// Interpolation values the files require (`${DOMAIN?…}` and the like), for both tools.
const ENV: &[(&str, &str)] = &[
    ("DOMAIN", "corpus.example"),
    ("EMAIL", "admin@corpus.example"),
    ("USERNAME", "admin"),
    ("HASHED_PASSWORD", "$apr1$x$y"),
    ("ADMIN_USER", "admin"),
    ("NODE_ID", "corpus-node"),
];

/// The batch file wsm runs: load, plan, deploy without waiting and without the registry.
const DEPLOY: &str = r#"
let doc = compose::load([ARGS[0]], #{});
let e = docker::connect("");
e.deploy(ARGS[1], compose::plan(doc, ARGS[1]), #{ wait: false, resolve_image: "never" });
"#;

/// Objects the files expect to exist outside their stacks; made for the test when missing
/// and removed afterwards, with the stacks, even when the test fails.
struct Outside {
    networks: Vec<String>,
    secrets: Vec<String>,
    stacks: Vec<String>,
}

impl Outside {
    fn new() -> Self {
        let mut o = Outside {
            networks: Vec::new(),
            secrets: Vec::new(),
            stacks: Vec::new(),
        };
        for n in ["traefik-public", "proxy", "agent_network"] {
            if !exists("network", n) {
                docker(&["network", "create", "-d", "overlay", "--attachable", n]);
                o.networks.push(n.into());
            }
        }
        for s in [
            "postgres_password",
            "staging_token",
            "revprox_key",
            "revprox_cert",
        ] {
            if !exists("secret", s) {
                let mut child = Command::new("docker")
                    .args(["secret", "create", s, "-"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"corpus").unwrap();
                assert!(child.wait().unwrap().success(), "docker secret create {s}");
                o.secrets.push(s.into());
            }
        }
        o
    }
}

/// Whether `docker <kind> inspect <name>` finds it.
fn exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([kind, "inspect", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Drop for Outside {
    fn drop(&mut self) {
        for s in &self.stacks {
            remove_stack(s);
        }
        for s in &self.secrets {
            docker_quiet(&["secret", "rm", s]);
        }
        for n in &self.networks {
            docker_quiet(&["network", "rm", n]);
        }
    }
}

/// The stack file of a corpus directory.
fn stack_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .unwrap_or_else(|| panic!("no stack file in {}", dir.display()))
}

/// `docker <kind> inspect` of every object of a stack, by name with the stack's name as STACK,
/// ids and timestamps dropped, network ids turned into names, version suffixes
/// (`-<8 hex>`, wsm's content-named secrets and configs) cut.
fn stored(kind: &str, stack: &str) -> BTreeMap<String, Value> {
    let label = format!("label=com.docker.stack.namespace={stack}");
    let ids = docker(&[kind, "ls", "-q", "--filter", &label]);
    let mut out = BTreeMap::new();
    for id in ids.lines().filter(|l| !l.is_empty()) {
        let text = docker(&[kind, "inspect", id]);
        let mut v: Value = serde_json::from_str::<Vec<Value>>(&text).unwrap().remove(0);
        for key in [
            "ID",
            "Id",
            "CreatedAt",
            "UpdatedAt",
            "Created",
            "Version",
            "Endpoint",
        ] {
            v.as_object_mut().unwrap().remove(key);
        }
        if kind == "service" {
            v.as_object_mut().unwrap().remove("PreviousSpec");
            if let Some(nets) = v
                .pointer_mut("/Spec/TaskTemplate/Networks")
                .and_then(Value::as_array_mut)
            {
                for n in nets {
                    let id = n["Target"].as_str().unwrap().to_string();
                    let name = docker(&["network", "inspect", &id, "--format", "{{.Name}}"]);
                    n["Target"] = Value::String(name.trim().to_string());
                }
            }
            let cs = v.pointer_mut("/Spec/TaskTemplate/ContainerSpec").unwrap();
            for (list, id) in [("Secrets", "SecretID"), ("Configs", "ConfigID")] {
                for r in cs
                    .get_mut(list)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    r.as_object_mut().unwrap().remove(id);
                }
            }
        }
        if kind == "network" {
            // What the engine picks and what runs on the network, not what was asked for:
            // subnets (none of the files sets one), VXLAN ids, endpoints and peers.
            let n = v.as_object_mut().unwrap();
            n.remove("Containers");
            n.remove("Peers");
            if let Some(Value::Object(ipam)) = n.get_mut("IPAM") {
                ipam.remove("Config");
            }
            if let Some(Value::Object(opts)) = n.get_mut("Options") {
                opts.remove("com.docker.network.driver.overlay.vxlanid_list");
            }
        }
        let text = unversioned(&serde_json::to_string(&v).unwrap()).replace(stack, "STACK");
        let v: Value = serde_json::from_str(&text).unwrap();
        let name = v
            .pointer("/Spec/Name")
            .or_else(|| v.get("Name"))
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        out.insert(name, v);
    }
    out
}

/// Cuts the `-<8 hex>` suffix wsm gives the secrets and configs it names by their content.
fn unversioned(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let is_suffix = b[i] == b'-'
            && i + 9 < b.len()
            && b[i + 1..i + 9]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            && b[i + 9] == b'"';
        if is_suffix {
            i += 9;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// What a stack left on the swarm, by kind.
fn snapshot(stack: &str) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    ["service", "network", "secret", "config"]
        .into_iter()
        .map(|k| (k, stored(k, stack)))
        .collect()
}

#[test]
fn corpus_stacks_match_docker_stack_deploy() {
    let mut outside = Outside::new();
    let batch = tempfile::tempdir().unwrap();
    let batch_file = batch.path().join("deploy.rhai");
    std::fs::write(&batch_file, DEPLOY).unwrap();
    let config = batch.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 15, "the corpus has {} files", dirs.len());
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for dir in &dirs {
        let id = dir.file_name().unwrap().to_string_lossy().to_string();
        let file = stack_file(dir);
        let (ours, theirs) = (unique("wsmca"), unique("wsmcb"));
        outside.stacks.extend([ours.clone(), theirs.clone()]);

        let mut wsm = wsm_command(batch.path(), &config, &["run"]);
        wsm.arg(&batch_file)
            .arg(&file)
            .arg(&ours)
            .envs(ENV.iter().copied());
        let run: Run = wsm.output().unwrap().into();
        assert_eq!(
            run.code, 0,
            "{id}: wsm failed: {}{}",
            run.stdout, run.stderr
        );
        let a = snapshot(&ours);
        remove_stack(&ours);

        let out = Command::new("docker")
            .args([
                "stack",
                "deploy",
                "--resolve-image",
                "never",
                "--detach=true",
                "-c",
            ])
            .arg(&file)
            .arg(&theirs)
            .envs(ENV.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{id}: docker stack deploy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let b = snapshot(&theirs);
        remove_stack(&theirs);

        let mut diffs = Vec::new();
        for (kind, objs) in &a {
            let theirs = &b[kind];
            let names_a: Vec<&String> = objs.keys().collect();
            let names_b: Vec<&String> = theirs.keys().collect();
            if names_a != names_b {
                diffs.push(format!(
                    "{kind} names: wsm {names_a:?} / docker {names_b:?}"
                ));
                continue;
            }
            for (name, x) in objs {
                differences(&format!("{kind} {name}"), x, &theirs[name], &mut diffs);
            }
        }
        let counts: Vec<String> = a.iter().map(|(k, v)| format!("{} {k}s", v.len())).collect();
        let verdict = if diffs.is_empty() { "agree" } else { "differ" };
        report.push(format!("{id}: {verdict} ({})", counts.join(", ")));
        if !diffs.is_empty() {
            failed.push(format!("{id}:\n  {}", diffs.join("\n  ")));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        failed.is_empty(),
        "{}\n\n{}",
        report.join("\n"),
        failed.join("\n")
    );
}
