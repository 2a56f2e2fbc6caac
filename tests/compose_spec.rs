//! Issue 26, the compose spec past docker, on the real engine: `depends_on` in the long form
//! orders the deploy (container start times and health times from `docker inspect`), a cycle is
//! refused with nothing created, a dependency that never gets healthy fails the deploy at the
//! deadline and the stack is rolled back; config `content:`/`environment:` and secret
//! `environment:` sources reach the task and a changed value rolls a new version; `secret
//! rotate` moves two stacks, removes the old version, and rolls back the stack whose service
//! fails with the next one while the other keeps it.

mod common;

use std::time::SystemTime;

use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// Writes a file into the stack's folder; returns its path.
fn write(s: &TestStack, name: &str, text: &str) -> String {
    let p = s.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn deploy(s: &TestStack, file: &str, timeout: &str, env: &[(&str, &str)]) -> Run {
    let mut c = s.command(&["stack", "deploy", "-c", file, "--timeout", timeout, &s.name]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap().into()
}

/// `docker inspect` of the newest container of a service.
fn container_of(service: &str) -> Value {
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ]);
    let id = ids.split_whitespace().next().expect("a container");
    let v: Value = serde_json::from_str(&docker(&["inspect", id])).unwrap();
    v[0].clone()
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339")
}

/// The service's spec as `docker service inspect` shows it.
fn spec(service: &str) -> Value {
    let v: Value = serde_json::from_str(&docker(&["service", "inspect", service])).unwrap();
    v[0]["Spec"].clone()
}

fn stack_objects(stack: &str) -> String {
    let label = format!("label=com.docker.stack.namespace={stack}");
    ["service", "network", "secret", "config"]
        .iter()
        .map(|k| docker(&[k, "ls", "-q", "--filter", &label]))
        .collect()
}

#[test]
fn depends_on_orders_the_deploy_and_a_dependency_never_healthy_rolls_it_back() {
    let s = TestStack::bare("dep");
    let file = |db_check: &str, web_env: &str| {
        format!(
            r#"services:
  db:
    image: {IMAGE}
    command: sh -c 'sleep 3; touch /tmp/ok; exec sleep 1000'
    healthcheck: {{test: "{db_check}", interval: 1s, timeout: 2s, retries: 30, start_period: 0s}}
  migrate:
    image: {IMAGE}
    command: sh -c 'sleep 2'
    deploy: {{restart_policy: {{condition: none}}}}
    depends_on: {{db: {{condition: service_healthy}}}}
  web:
    image: {IMAGE}
    command: sleep 1000
    environment: [{web_env}]
    depends_on:
      db: {{condition: service_healthy}}
      migrate: {{condition: service_completed_successfully}}
"#
        )
    };
    let f = write(&s, "stack.yml", &file("test -f /tmp/ok", "V=1"));
    deploy(&s, &f, "90", &[]).ok();
    let (db, migrate, web) = (
        container_of(&format!("{}_db", s.name)),
        container_of(&format!("{}_migrate", s.name)),
        container_of(&format!("{}_web", s.name)),
    );
    // When the dependency's container became healthy: the engine's `health_status: healthy`
    // event (the container keeps only its last 5 checks).
    let since = db["Created"].as_str().unwrap().to_string();
    let until = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    let events = docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={}", db["Id"].as_str().unwrap()),
        "--filter",
        "event=health_status",
        "--format",
        "{{.TimeNano}} {{.Action}}",
    ]);
    let nanos: u64 = events
        .lines()
        .find(|l| l.ends_with("health_status: healthy"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("db became healthy: {events}"));
    let healthy = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
    let migrate_started = time(&migrate["State"]["StartedAt"]);
    let migrate_ended = time(&migrate["State"]["FinishedAt"]);
    let web_started = time(&web["State"]["StartedAt"]);
    assert!(
        migrate_started > healthy,
        "migrate started before db was healthy"
    );
    assert!(web_started > healthy, "web started before db was healthy");
    assert!(
        web_started > migrate_ended,
        "web started before migrate completed"
    );
    assert_eq!(migrate["State"]["ExitCode"], 0);

    // A dependency that never gets healthy: the deploy fails at its deadline, web is never
    // written, and the stack returns to revision 1.
    let f = write(&s, "stack.yml", &file("test -f /tmp/never", "V=2"));
    let r = deploy(&s, &f, "40", &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("was not there within 40 s"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("rolled back to revision 1"),
        "{}",
        r.stderr
    );
    let web = spec(&format!("{}_web", s.name));
    assert_eq!(web["TaskTemplate"]["ContainerSpec"]["Env"][0], "V=1");
    let db = spec(&format!("{}_db", s.name));
    assert_eq!(
        db["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"][1],
        "test -f /tmp/ok"
    );
}

#[test]
fn a_cycle_is_refused_with_nothing_created() {
    let s = TestStack::bare("cyc");
    let f = write(
        &s,
        "stack.yml",
        &format!(
            "services:\n  a:\n    image: {IMAGE}\n    depends_on: {{b: {{condition: service_started}}}}\n  b:\n    image: {IMAGE}\n    depends_on: {{a: {{condition: service_healthy}}}}\n  c:\n    image: {IMAGE}\n"
        ),
    );
    let r = deploy(&s, &f, "40", &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.starts_with("error: ") && r.stderr.contains("dependency cycle: a -> b -> a"),
        "{}",
        r.stderr
    );
    assert_eq!(stack_objects(&s.name), "");
}

#[test]
fn content_and_environment_sources_reach_the_task_and_roll_new_versions() {
    let s = TestStack::bare("src");
    let f = write(
        &s,
        "stack.yml",
        &format!(
            r#"services:
  app:
    image: {IMAGE}
    command: sleep 1000
    configs: [{{source: greeting, target: /greeting}}, {{source: mode, target: /mode}}]
    secrets: [token]
configs:
  greeting: {{content: "hello ${{WHO}}"}}
  mode: {{environment: APP_MODE}}
secrets:
  token: {{environment: APP_TOKEN}}
"#
        ),
    );
    let read = |path: &str| {
        let c = container_of(&format!("{}_app", s.name));
        docker(&["exec", c["Id"].as_str().unwrap(), "cat", path])
    };
    let env1 = [
        ("WHO", "world"),
        ("APP_MODE", "fast"),
        ("APP_TOKEN", "s3cret-1"),
    ];
    let out = deploy(&s, &f, "60", &env1);
    out.ok();
    assert!(!out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"));
    assert_eq!(read("/greeting"), "hello world");
    assert_eq!(read("/mode"), "fast");
    assert_eq!(read("/run/secrets/token"), "s3cret-1");
    let names = |kind: &str| {
        let mut v: Vec<String> = docker(&[
            kind,
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            &format!("label=com.docker.stack.namespace={}", s.name),
        ])
        .lines()
        .map(String::from)
        .collect();
        v.sort();
        v
    };
    let (configs1, secrets1) = (names("config"), names("secret"));
    assert_eq!(configs1.len(), 2, "{configs1:?}");
    assert!(secrets1[0].starts_with(&format!("{}_token-", s.name)));

    // Changed values: new versions, the task on them, the old versions gone.
    let env2 = [
        ("WHO", "there"),
        ("APP_MODE", "fast"),
        ("APP_TOKEN", "s3cret-2"),
    ];
    deploy(&s, &f, "60", &env2).ok();
    assert_eq!(read("/greeting"), "hello there");
    assert_eq!(read("/run/secrets/token"), "s3cret-2");
    // The old versions stay while revision 1 may be returned to (as a file's do).
    let (configs2, secrets2) = (names("config"), names("secret"));
    let app = spec(&format!("{}_app", s.name));
    let used = |kind: &str, field: &str| -> Vec<String> {
        app["TaskTemplate"]["ContainerSpec"][kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_str().unwrap().to_string())
            .collect()
    };
    let mode = configs1.iter().find(|n| n.contains("_mode-")).unwrap();
    let greeting1 = configs1.iter().find(|n| n.contains("_greeting-")).unwrap();
    let configs_used = used("Configs", "ConfigName");
    assert!(
        configs_used.contains(mode),
        "the unchanged mode kept its version"
    );
    assert!(!configs_used.contains(greeting1), "{configs_used:?}");
    assert_eq!(configs2.len(), 3, "{configs2:?}");
    let secret_used = used("Secrets", "SecretName");
    assert_ne!(secret_used, secrets1);
    assert!(
        secrets2.contains(&secret_used[0]) && secrets2.len() == 2,
        "{secrets2:?}"
    );
}

/// Removes the secrets of a rotation test, however it ends.
struct Secrets(String);

impl Drop for Secrets {
    fn drop(&mut self) {
        let ids = docker_quiet(&[
            "secret",
            "ls",
            "-q",
            "--filter",
            &format!("label=wsm.version.of={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            docker_quiet(&["secret", "rm", id]);
        }
        docker_quiet(&["secret", "rm", &self.0]);
    }
}

#[test]
fn secret_rotate_moves_every_stack_and_rolls_back_the_one_that_fails() {
    // Dropped last: the stacks go first, then the secrets they used.
    let shared = unique("shared");
    let _cleanup = Secrets(shared.clone());
    let a = TestStack::bare("rota");
    let b = TestStack::bare("rotb");
    let v1 = write(&a, "v1", "first");
    docker(&["secret", "create", &shared, &v1]);
    let file = |cmd: &str| {
        format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: sh -c '{cmd}'\n    secrets: [{{source: pw, target: pw}}]\nsecrets:\n  pw: {{external: true, name: {shared}}}\n"
        )
    };
    let fa = write(&a, "stack.yml", &file("exec sleep 1000"));
    // Stack b's service refuses a secret that says "bad".
    let fb = write(
        &b,
        "stack.yml",
        &file("if grep -q bad /run/secrets/pw; then exit 1; fi; exec sleep 1000"),
    );
    deploy(&a, &fa, "60", &[]).ok();
    deploy(&b, &fb, "60", &[]).ok();
    let secret_of = |stack: &str| {
        spec(&format!("{stack}_app"))["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let secret_names = || docker(&["secret", "ls", "--format", "{{.Name}}"]);

    // Both stacks move; the old version is gone.
    let v2 = write(&a, "v2", "second");
    let r = a.wsm(&[
        "secret",
        "rotate",
        &shared,
        "--from-file",
        &v2,
        "--timeout",
        "60",
    ]);
    r.ok();
    let second = secret_of(&a.name);
    assert!(second.starts_with(&format!("{shared}-")), "{second}");
    assert_eq!(secret_of(&b.name), second);
    assert!(
        !secret_names().lines().any(|n| n == shared),
        "the old version is gone"
    );
    let c = container_of(&format!("{}_app", b.name));
    assert_eq!(
        docker(&["exec", c["Id"].as_str().unwrap(), "cat", "/run/secrets/pw"]),
        "second"
    );

    // The next version fails in stack b: b is rolled back to the second, a keeps the third,
    // and the second stays, as b uses it.
    let v3 = write(&a, "v3", "bad");
    let r = a.wsm(&[
        "secret",
        "rotate",
        &shared,
        "--from-file",
        &v3,
        "--timeout",
        "60",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("failed: stack {}", b.name)) && r.stdout.contains("rolled back"),
        "{}",
        r.stdout
    );
    let third = secret_of(&a.name);
    assert_ne!(third, second);
    assert_eq!(secret_of(&b.name), second);
    assert!(secret_names().lines().any(|n| n == second));
    let history = b.wsm(&["stack", "history", &b.name]).ok().to_string();
    assert!(history.contains("secret rotate"), "{history}");

    // A later deploy of a's unchanged file follows the rotation.
    let r = deploy(&a, &fa, "60", &[]);
    r.ok();
    assert_eq!(secret_of(&a.name), third);
}
