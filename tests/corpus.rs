//! Real stack files of public projects (`tests/corpus/`, sources in `tests/corpus/SOURCES.md`)
//! deployed by wsm (`compose::load` + `compose::plan` + `e.deploy`, through `wsm run`) and by
//! `docker stack deploy --resolve-image never`, under two stack names, and compared field by
//! field on what the engine stored: services, networks, secrets and configs. No image exists
//! here and no task is awaited; the volumes a task would create are compared through the
//! services' mount specs (their `VolumeOptions`). Files run one after another: several publish
//! the same ports. Each stack is removed (`docker stack rm`, which frees its ports at once)
//! right after it is read, and waited for at the end.
//!
//! Beside them, small files of our own, one per construct where wsm once differed from docker
//! (octal modes, image names, UTF-16, `env_file` bare names), compared the same way, and the
//! files docker refuses, refused by both with the same reason.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::corpus::{self, stack_file, Outside, ENV};
use common::*;
use serde_json::Value;

/// The batch file wsm runs: load, plan, deploy without waiting and without the registry.
const DEPLOY: &str = r#"
let doc = compose::load([ARGS[0]], #{});
let e = docker::connect("");
e.deploy(ARGS[1], compose::plan(doc, ARGS[1]), #{ wait: false, resolve_image: "never" });
"#;

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

/// The batch file wsm runs, written once for a test.
struct Batch {
    dir: tempfile::TempDir,
}

impl Batch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deploy.rhai"), DEPLOY).unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        Batch { dir }
    }

    /// Deploys `file` with wsm and with docker under two new stack names (recorded in
    /// `outside` for removal), with `env` added to [`ENV`]: "agree" and the objects counted,
    /// or every difference.
    fn compare(
        &self,
        file: &Path,
        env: &[(&str, &str)],
        outside: &mut Outside,
    ) -> Result<String, Vec<String>> {
        let id = file.display();
        let (ours, theirs) = (unique("wsmca"), unique("wsmcb"));
        outside.stacks.extend([ours.clone(), theirs.clone()]);
        let dir = self.dir.path();
        let mut wsm = wsm_command(dir, &dir.join("config"), &["run"]);
        wsm.arg(dir.join("deploy.rhai"))
            .arg(file)
            .arg(&ours)
            .envs(ENV.iter().chain(env).copied());
        let run: Run = wsm.output().unwrap().into();
        assert_eq!(
            run.code, 0,
            "{id}: wsm failed: {}{}",
            run.stdout, run.stderr
        );
        let a = snapshot(&ours);
        docker_quiet(&["stack", "rm", &ours]);

        let out = Command::new("docker")
            .args([
                "stack",
                "deploy",
                "--resolve-image",
                "never",
                "--detach=true",
                "-c",
            ])
            .arg(file)
            .arg(&theirs)
            .envs(ENV.iter().chain(env).copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{id}: docker stack deploy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let b = snapshot(&theirs);
        docker_quiet(&["stack", "rm", &theirs]);

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
        if diffs.is_empty() {
            Ok(format!("agree ({})", counts.join(", ")))
        } else {
            Err(diffs)
        }
    }
}

#[test]
fn corpus_stacks_match_docker_stack_deploy() {
    let mut outside = Outside::new();
    let batch = Batch::new();
    let dirs = corpus::dirs();
    assert!(dirs.len() >= 30, "the corpus has {} files", dirs.len());
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for dir in &dirs {
        let id = dir.file_name().unwrap().to_string_lossy().to_string();
        match batch.compare(&stack_file(dir), &[], &mut outside) {
            Ok(line) => report.push(format!("{id}: {line}")),
            Err(diffs) => {
                report.push(format!("{id}: differ"));
                failed.push(format!("{id}:\n  {}", diffs.join("\n  ")));
            }
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

/// A file of our own in a folder of its own: its name, its bytes, and files beside it.
fn own_file(dir: &Path, name: &str, bytes: &[u8], beside: &[(&str, &str)]) -> PathBuf {
    for (n, text) in beside {
        std::fs::write(dir.join(n), text).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// UTF-16 text with its byte-order mark, little- or big-endian.
fn utf16(text: &str, little: bool) -> Vec<u8> {
    let mut out = if little {
        vec![0xFF, 0xFE]
    } else {
        vec![0xFE, 0xFF]
    };
    for unit in text.encode_utf16() {
        out.extend(if little {
            unit.to_le_bytes()
        } else {
            unit.to_be_bytes()
        });
    }
    out
}

/// The constructs wsm once read differently from docker (issue 26), each in a small file of
/// our own, deployed by both and compared field by field.
#[test]
fn constructs_docker_reads_its_own_way_come_out_as_docker_stores_them() {
    let mut outside = Outside::stacks_only();
    let batch = Batch::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // YAML 1.1 octal file modes: 0555, 0400, 0440 and a 0o-spelled one.
    let modes = own_file(
        d,
        "modes.yml",
        b"version: '3.8'\nservices:\n  app:\n    image: busybox\n    secrets:\n      - source: token\n        mode: 0400\n      - source: other\n        target: /run/other\n        mode: 0440\n    configs:\n      - source: script\n        target: /bin/run.sh\n        mode: 0555\n      - source: plain\n        mode: 0o644\nsecrets:\n  token: {file: ./token.txt}\n  other: {file: ./token.txt}\nconfigs:\n  script: {file: ./run.sh}\n  plain: {file: ./run.sh}\n",
        &[("token.txt", "t0ken"), ("run.sh", "#!/bin/sh\n")],
    );
    // Image names in every form docker turns into its familiar one.
    let images = own_file(
        d,
        "images.yml",
        b"version: '3.8'\nservices:\n  a: {image: docker.io/frappe/erpnext:v15}\n  b: {image: docker.io/library/nginx}\n  c: {image: 'index.docker.io/library/redis:7'}\n  d: {image: 'localhost:5000/foo'}\n  e: {image: library/alpine}\n  f: {image: 'docker.io/library/busybox:1.36@sha256:0123456789012345678901234567890123456789012345678901234567890123'}\n",
        &[],
    );
    // UTF-16 with a byte-order mark and CRLF line ends, both byte orders, non-ASCII text.
    let text = "version: '3.8'\r\nservices:\r\n  app:\r\n    image: busybox\r\n    labels:\r\n      caf\u{e9}: cr\u{e8}me \u{1F600}\r\n    command:\r\n      - sh\r\n      - -c\r\n      - |\r\n        echo one\r\n        echo two\r\n";
    let le = own_file(d, "utf16le.yml", &utf16(text, true), &[]);
    let be = own_file(d, "utf16be.yml", &utf16(text, false), &[]);
    // env_file bare names: one set in the environment, one not.
    let env_file = own_file(
        d,
        "env_file.yml",
        b"version: '3.8'\nservices:\n  app:\n    image: busybox\n    env_file: [app.env]\n    environment: [LISTED]\n",
        &[(
            "app.env",
            "# bare names\nWSM_CORPUS_SET\nWSM_CORPUS_UNSET_NAME\nKEY=value\nEMPTY=\n",
        )],
    );
    let env = [("WSM_CORPUS_SET", "from the environment")];
    let mut failed = Vec::new();
    for file in [&modes, &images, &le, &be, &env_file] {
        match batch.compare(file, &env, &mut outside) {
            Ok(line) => println!("{}: {line}", file.display()),
            Err(diffs) => failed.push(format!("{}:\n  {}", file.display(), diffs.join("\n  "))),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Files docker refuses are refused by wsm with the same reason, in one line naming the file
/// and without the usage line, exit 2, and nothing is created.
#[test]
fn files_docker_refuses_are_refused_with_docker_s_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let file = |name: &str, text: &str| own_file(d, name, text.as_bytes(), &[]);
    let cases: Vec<(Vec<PathBuf>, &str)> = vec![
        (
            vec![file(
                "hostname.yml",
                "version: '3.8'\nservices:\n  app:\n    image: busybox\n    command: [sh, -c, 'echo $(hostname)']\n",
            )],
            "you may need to escape any $ with another $",
        ),
        (
            vec![
                file("v37.yml", "version: '3.7'\nservices:\n  app:\n    image: busybox\n"),
                file("v33.yml", "version: '3.3'\nservices:\n  app:\n    user: nobody\n"),
            ],
            "version mismatched between two composefiles : 3.7 and 3.3",
        ),
        (
            vec![file(
                "upper.yml",
                "version: '3.8'\nservices:\n  app:\n    image: Busybox\n",
            )],
            "invalid image reference for service app: invalid reference format: repository name (library/Busybox) must be lowercase",
        ),
    ];
    for (files, reason) in cases {
        let stack = unique("wsmcbad");
        let mut wsm_args = vec!["stack".to_string(), "deploy".to_string()];
        let mut docker_args = vec!["stack", "deploy", "--resolve-image", "never"];
        for f in &files {
            wsm_args.extend(["-c".to_string(), f.display().to_string()]);
            docker_args.extend(["-c", f.to_str().unwrap()]);
        }
        wsm_args.push(stack.clone());
        docker_args.push(&stack);
        let args: Vec<&str> = wsm_args.iter().map(String::as_str).collect();
        let run: Run = wsm_command(d, &config, &args).output().unwrap().into();
        let out = Command::new("docker").args(&docker_args).output().unwrap();
        let theirs = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && theirs.contains(reason),
            "docker: {theirs}"
        );
        assert_eq!(run.code, 2, "{reason}: {}{}", run.stdout, run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        let last = files.last().unwrap().display().to_string();
        assert!(
            lines.len() == 1 && lines[0].contains(reason) && lines[0].contains(&last),
            "{reason}: wsm said {:?}",
            run.stderr
        );
        let label = format!("label=com.docker.stack.namespace={stack}");
        for kind in ["service", "network"] {
            let left = docker(&[kind, "ls", "-q", "--filter", &label]);
            assert!(left.trim().is_empty(), "{reason}: a {kind} was created");
        }
    }
}
