//! Issue 23, items 5 and 6, on the real engine with the Docker CLI as witness: secret values
//! never appear in `plan`, `deploy --dry-run` or `history` (words or JSON) unless
//! `--show-secrets`, never in any `wsm-state-*` config object wsm writes, and never as a
//! guessable hash in a secret's name; a rollback still restores them; a rollback with another
//! key is refused naming them; `history --forget` removes the stack's history.

mod common;

use std::io::Read;

use base64::Engine as _;
use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// A compose file of one sleeping service with secret-looking environment values (`tag` makes
/// them unique) and a plain one, and a file-made secret holding `password`.
fn compose(tag: &str, mode: &str) -> String {
    format!(
        r#"services:
  db:
    image: {IMAGE}
    command: ["sleep", "3600"]
    environment:
      DB_PASSWORD: hunter2-{tag}
      API_TOKEN: tok-{tag}
      DATABASE_URL: postgres://app:urlpw-{tag}@db:5432/x
      MODE: {mode}
    secrets: [dbpw]
secrets:
  dbpw:
    file: ./pw.txt
"#
    )
}

/// Every label and the data of every `wsm-state-*` config object on the swarm, the store's
/// documents decoded (base64 of gzip), as one text.
fn every_state_object() -> String {
    let mut all = String::new();
    let names = docker(&[
        "config",
        "ls",
        "--filter",
        "name=wsm-state-",
        "--format",
        "{{.Name}}",
    ]);
    for name in names.lines() {
        // Another test may remove its documents meanwhile.
        let out = docker_quiet(&["config", "inspect", name]);
        let Ok(v) = serde_json::from_str::<Value>(&out) else {
            continue;
        };
        let Some(spec) = v.get(0).map(|c| &c["Spec"]) else {
            continue;
        };
        all += &spec.to_string();
        // Other tests leave damaged documents (bad base64, a gzip bomb): what cannot be decoded
        // is checked as it is, and at most 16 MiB of one is read.
        let decoded = |data: &str| base64::engine::general_purpose::STANDARD.decode(data).ok();
        if let Some(raw) = spec["Data"].as_str().and_then(decoded) {
            all += &String::from_utf8_lossy(&raw);
        }
        if let Some(gz) = spec["Labels"]["wsm.state.data"].as_str().and_then(decoded) {
            let mut json = Vec::new();
            let _ = flate2::read::GzDecoder::new(&gz[..])
                .take(16 << 20)
                .read_to_end(&mut json);
            all += &String::from_utf8_lossy(&json);
        }
    }
    all
}

/// The environment of the stack's service as `docker service inspect` shows it.
fn env_of(s: &TestStack) -> Vec<String> {
    let out = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        &format!("{}_db", s.name),
    ]);
    serde_json::from_str(&out).unwrap()
}

fn assert_hidden(what: &str, text: &str, values: &[String]) {
    for v in values {
        assert!(!text.contains(v.as_str()), "{what} shows {v}:\n{text}");
    }
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        docker_quiet(&["config", "rm", &format!("wsm-lock-{}", self.0)]);
    }
}

#[test]
fn secret_values_stay_out_of_plans_history_and_the_store_and_a_rollback_restores_them() {
    let s = TestStack::bare("wsmsecret");
    let _lock = Cleanup(s.name.clone());
    let n = s.name.clone();
    let dir = s.dir.path();
    std::fs::write(dir.join("pw.txt"), "password").unwrap();
    let (old, new) = (format!("o{n}"), format!("n{n}"));
    std::fs::write(dir.join("v1.yml"), compose(&old, "slow")).unwrap();
    std::fs::write(dir.join("v2.yml"), compose(&new, "fast")).unwrap();
    let secrets: Vec<String> = [&old, &new]
        .iter()
        .flat_map(|t| {
            [
                format!("hunter2-{t}"),
                format!("tok-{t}"),
                format!("urlpw-{t}"),
            ]
        })
        .collect();
    let stack = |args: &[&str]| {
        let mut all = vec!["stack"];
        all.extend_from_slice(args);
        all.push(n.as_str());
        s.wsm(&all)
    };
    stack(&["deploy", "-c", "v1.yml", "--timeout", "90"]).ok();
    assert!(env_of(&s).contains(&format!("DB_PASSWORD=hunter2-{old}")));

    // A secret's name carries no plain hash of its content (sha256("password") = 5e884898…).
    let names = docker(&[
        "secret",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={n}"),
        "--format",
        "{{.Name}}",
    ]);
    assert!(names.contains(&format!("{n}_dbpw-")), "{names}");
    assert!(
        !names.contains("5e884898"),
        "guessable secret name: {names}"
    );

    // The plan names each changed key; values only for the key that is not secret.
    for args in [
        vec!["plan", "-c", "v2.yml"],
        vec!["deploy", "--dry-run", "-c", "v2.yml"],
    ] {
        let r = stack(&args);
        assert_eq!(r.code, 3, "{args:?}: {}{}", r.stdout, r.stderr);
        let text = r.stdout.clone() + &r.stderr;
        assert_hidden(&format!("{args:?}"), &text, &secrets);
        for key in [
            "DB_PASSWORD: ********",
            "API_TOKEN: ********",
            "DATABASE_URL: postgres://app:********@",
        ] {
            assert!(
                text.contains(&format!("TaskTemplate.ContainerSpec.Env.{key}")),
                "{args:?} names {key}:\n{text}"
            );
        }
        assert!(
            text.contains("TaskTemplate.ContainerSpec.Env.MODE: slow → fast"),
            "{text}"
        );
    }
    let json = stack(&["plan", "--json", "-c", "v2.yml"]);
    assert_eq!(json.code, 3, "{}", json.stderr);
    assert_hidden("plan --json", &json.stdout, &secrets);
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    let fields: Vec<&str> = plan["services"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"TaskTemplate.ContainerSpec.Env.API_TOKEN"),
        "{fields:?}"
    );
    // With --show-secrets, they are shown.
    let shown = stack(&["plan", "--show-secrets", "-c", "v2.yml"]);
    assert_eq!(shown.code, 3, "{}", shown.stderr);
    assert!(
        shown.stdout.contains(&format!(
            "TaskTemplate.ContainerSpec.Env.DB_PASSWORD: hunter2-{old} → hunter2-{new}"
        )),
        "{}",
        shown.stdout
    );

    stack(&["deploy", "-c", "v2.yml", "--timeout", "90"]).ok();
    assert!(env_of(&s).contains(&format!("DB_PASSWORD=hunter2-{new}")));

    // History, in words and JSON, and every state object of the swarm hold no secret value.
    let h = stack(&["history"]);
    assert_hidden("history", h.ok(), &secrets);
    assert!(h.stdout.contains("Env.DB_PASSWORD"), "{}", h.stdout);
    let hj = stack(&["history", "--json"]);
    assert_hidden("history --json", hj.ok(), &secrets);
    assert_hidden(
        "the wsm-state-* config objects",
        &every_state_object(),
        &secrets,
    );
    assert!(
        docker(&["config", "ls", "--format", "{{.Name}}"])
            .contains(&format!("wsm-state-stack.{n}.revisions")),
        "the history is in the store"
    );

    // A rollback with another key cannot open the old values: refused, naming them, and
    // nothing changes.
    let other = s
        .command(&["stack", "rollback", "--timeout", "90", &n])
        .env("WSM_SECRETS_KEY", "not the key that sealed them")
        .output()
        .unwrap();
    let other: Run = other.into();
    assert_eq!(other.code, 1, "{}{}", other.stdout, other.stderr);
    for key in ["DB_PASSWORD", "API_TOKEN", "DATABASE_URL"] {
        assert!(other.stderr.contains(key), "{}", other.stderr);
    }
    assert_hidden("a refused rollback", &other.stderr, &secrets);
    assert!(env_of(&s).contains(&format!("DB_PASSWORD=hunter2-{new}")));

    // With the key that sealed them, the rollback restores the old values.
    stack(&["rollback", "--timeout", "90"]).ok();
    let env = env_of(&s);
    for want in [
        format!("DB_PASSWORD=hunter2-{old}"),
        format!("API_TOKEN=tok-{old}"),
        format!("DATABASE_URL=postgres://app:urlpw-{old}@db:5432/x"),
        "MODE=slow".to_string(),
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    assert_hidden(
        "the wsm-state-* config objects",
        &every_state_object(),
        &secrets,
    );

    // --forget removes the stack's history from the swarm.
    let f = stack(&["history", "--forget"]);
    assert!(f.ok().contains("history removed"), "{}", f.stdout);
    assert!(
        !docker(&["config", "ls", "--format", "{{.Name}}"])
            .contains(&format!("wsm-state-stack.{n}.revisions")),
        "docker config ls still lists the history"
    );
    assert!(stack(&["history"]).ok().contains("has no revisions yet"));
}

/// Removes a store document's config object when the test ends.
struct Doc(String);

impl Drop for Doc {
    fn drop(&mut self) {
        docker_quiet(&["config", "rm", &format!("wsm-state-{}", self.0)]);
    }
}

#[test]
fn a_shared_stack_config_keeps_its_secret_values_sealed_in_the_swarm() {
    let s = TestStack::bare("wsmshared");
    let n = s.name.clone();
    let doc = Doc(format!("stack-config.{n}"));
    let remote = format!(
        r#"let remote = #{{ docker_host: "", docker_hosts: [""], target: "", path: "", file: "", origin: "the shared config of {n}" }};"#
    );
    let write = format!(
        "import \"config\" as cfg;\n{remote}\nlet ctx = #{{ stack: \"{n}\", remote: remote, remote_version: 0 }};\ncfg::write_shared(ctx, \"# keys\\nWAVELET_KEYS='k-{n},p-{n}' # both\\nWAVELET_NODES=3\\n\");\n"
    );
    let read = format!(
        "import \"config\" as cfg;\n{remote}\nprint(cfg::read_shared(remote, \"{n}\").text);\n"
    );
    std::fs::write(s.dir.path().join("write.rhai"), write).unwrap();
    std::fs::write(s.dir.path().join("read.rhai"), read).unwrap();
    s.wsm(&["run", "write.rhai"]).ok();

    // The store holds the key's name, not its value, as the Docker CLI shows it.
    let stored = common::store::store_doc(&[], &doc.0).expect("the shared config in the store");
    let text = stored["text"].as_str().unwrap();
    assert!(!text.contains(&format!("k-{n}")), "{text}");
    assert!(
        text.starts_with("# keys\nWAVELET_KEYS=wsm-sealed:")
            && text.ends_with("\nWAVELET_NODES=3\n"),
        "{text}"
    );
    assert_hidden(
        "the wsm-state-* config objects",
        &every_state_object(),
        &[format!("k-{n}")],
    );

    // Read back with the key: the text as it was written.
    let back = s.wsm(&["run", "read.rhai"]);
    assert_eq!(
        back.ok(),
        format!("# keys\nWAVELET_KEYS='k-{n},p-{n}' # both\nWAVELET_NODES=3\n\n")
    );
    // With another key: refused, naming the key and not its value.
    let other: Run = s
        .command(&["run", "read.rhai"])
        .env("WSM_SECRETS_KEY", "another key")
        .output()
        .unwrap()
        .into();
    assert_eq!(other.code, 1, "{}{}", other.stdout, other.stderr);
    assert!(
        other.stderr.contains(&format!(
            "the shared config of {n} holds WAVELET_KEYS sealed with another key"
        )),
        "{}",
        other.stderr
    );
    assert!(
        !other.stderr.contains(&format!("k-{n}")),
        "{}",
        other.stderr
    );
}
