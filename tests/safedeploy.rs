//! Issue 14, safe deploys, on the real engine with the Docker CLI as witness: `stack plan`
//! against the `docker service inspect` difference a deploy then makes; a deploy that fails to
//! converge returning all three services to the previous revision field by field; `rollback
//! --to` two deploys back; two deploys at once never interleaving, `--no-wait` refusing; a
//! SIGKILLed holder's lock expiring. And the swarm state store they stand on: a document
//! round-trips (read back through `docker config inspect`), of two concurrent writers the
//! second is told, an oversize document is refused with the stored one unchanged.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// A test's stack plus what `docker stack rm` leaves: its revisions document and its lock.
struct SafeStack {
    s: TestStack,
}

impl SafeStack {
    fn new(prefix: &str) -> Self {
        SafeStack {
            s: TestStack::bare(prefix),
        }
    }

    fn name(&self) -> &str {
        &self.s.name
    }

    /// Writes a compose file into the stack's folder; returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.s.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `wsm stack <args…>` with the stack's name last.
    fn stack(&self, args: &[&str]) -> Run {
        let mut all = vec!["stack"];
        all.extend_from_slice(args);
        all.push(self.name());
        self.s.wsm(&all)
    }

    /// A `wsm stack deploy -c FILE --timeout 60 <extra…> NAME` ready to spawn.
    fn deploy_command(&self, file: &str, extra: &[&str]) -> std::process::Command {
        let mut args = vec!["stack", "deploy", "-c", file, "--timeout", "60"];
        args.extend_from_slice(extra);
        args.push(self.name());
        let mut c = self.s.command(&args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    fn deploy(&self, file: &str, extra: &[&str]) -> Run {
        self.deploy_command(file, extra).output().unwrap().into()
    }

    /// Every service's `Spec` as `docker service inspect` shows it, by name.
    fn specs(&self) -> BTreeMap<String, Value> {
        self.inspect()
            .into_iter()
            .map(|(n, s)| (n, s["Spec"].clone()))
            .collect()
    }

    fn inspect(&self) -> BTreeMap<String, Value> {
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

    fn history(&self) -> Vec<Value> {
        let r = self.stack(&["history", "--json"]);
        serde_json::from_str(r.ok()).unwrap()
    }

    fn lock_object(&self) -> bool {
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
fn compose(services: &[(&str, &str, &str, u32, &str)]) -> String {
    let mut out = String::from("services:\n");
    for (name, image, env, replicas, extra) in services {
        out += &format!(
            "  {name}:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    environment: [\"{env}\"]\n    deploy:\n      replicas: {replicas}\n{extra}"
        );
    }
    out
}

/// Three services whose environment is `V=<v>`.
fn three(v: &str, extra: &str) -> String {
    let env = format!("V={v}");
    compose(&[
        ("web", IMAGE, &env, 1, extra),
        ("api", IMAGE, &env, 1, extra),
        ("worker", IMAGE, &env, 1, extra),
    ])
}

/// Whether a value counts as absent, as the engine's `omitempty` drops it.
fn absent(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Bool(true) => false,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(absent),
    }
}

/// The fields in which two specs differ: dotted paths, a list one field, absent = empty.
fn spec_diff(path: &str, a: &Value, b: &Value, out: &mut BTreeMap<String, (Value, Value)>) {
    if absent(a) && absent(b) {
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

#[test]
fn a_plan_shows_exactly_what_the_deploy_then_changes_and_nothing_on_an_unchanged_stack() {
    let st = SafeStack::new("wsmplan");
    let n = st.name().to_string();
    let v1 = st.file(
        "v1.yml",
        &compose(&[
            ("web", IMAGE, "X=1", 1, ""),
            ("api", IMAGE, "X=1", 1, ""),
            ("old", IMAGE, "X=1", 1, ""),
        ]),
    );
    let v2 = st.file(
        "v2.yml",
        &compose(&[
            ("web", IMAGE, "X=2", 2, "      labels: {tier: front}\n"),
            ("api", IMAGE, "X=1", 1, ""),
            ("extra", IMAGE, "X=1", 1, ""),
        ]),
    );
    st.deploy(&v1, &["--prune"]).ok();

    // Unchanged: exit 0 and no changes, in words and in JSON.
    let same = st.stack(&["plan", "-c", &v1, "--prune"]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("no changes"), "{}", same.stdout);
    let same: Value =
        serde_json::from_str(&st.stack(&["plan", "--json", "-c", &v1, "--prune"]).stdout).unwrap();
    assert_eq!(same["changes"], 0, "{same:#}");

    // The plan of v2 changes nothing on the swarm (versions as the Docker CLI shows them).
    let versions = |st: &SafeStack| -> BTreeMap<String, Value> {
        st.inspect()
            .into_iter()
            .map(|(n, s)| (n, s["Version"]["Index"].clone()))
            .collect()
    };
    let before_versions = versions(&st);
    let planned = st.stack(&["plan", "--json", "-c", &v2, "--prune"]);
    assert_eq!(planned.code, 3, "changes exit 3: {}", planned.stderr);
    let plan: Value = serde_json::from_str(&planned.stdout).unwrap();
    let dry = st.stack(&["deploy", "--dry-run", "--prune", "-c", &v2]);
    assert_eq!(dry.code, 3, "{}{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains(&format!("~ service {n}_web")),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("TaskTemplate.ContainerSpec.Env: [\"X=1\"] → [\"X=2\"]"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        versions(&st),
        before_versions,
        "plan and --dry-run changed nothing"
    );

    let before = st.specs();
    st.deploy(&v2, &["--prune"]).ok();
    let after = st.specs();

    // What the deploy did, by the Docker CLI, against what the plan printed.
    let rows = plan["services"].as_array().unwrap();
    let named = |action: &str| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r["action"] == action)
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let created: BTreeSet<String> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    let removed: BTreeSet<String> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    assert_eq!(named("create"), created);
    assert_eq!(named("remove"), removed);
    assert_eq!(created, BTreeSet::from([format!("{n}_extra")]));
    assert_eq!(removed, BTreeSet::from([format!("{n}_old")]));
    let mut updated = BTreeSet::new();
    for (name, old) in &before {
        let Some(new) = after.get(name) else { continue };
        let mut seen = BTreeMap::new();
        spec_diff("", old, new, &mut seen);
        let row = rows.iter().find(|r| r["name"] == name.as_str());
        if seen.is_empty() {
            assert!(
                row.is_none(),
                "{name} did not change, but the plan says {row:?}"
            );
            assert!(plan["unchanged"].as_array().unwrap().contains(&json!(name)));
            continue;
        }
        updated.insert(name.clone());
        let row = row.unwrap_or_else(|| panic!("{name} changed ({seen:?}) but is not in the plan"));
        let printed: BTreeMap<String, (Value, Value)> = row["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field"].as_str().unwrap().to_string(),
                    (f["before"].clone(), f["after"].clone()),
                )
            })
            .collect();
        assert_eq!(
            printed, seen,
            "{name}: the plan's fields against docker service inspect"
        );
    }
    assert_eq!(named("update"), updated);
    assert_eq!(updated, BTreeSet::from([format!("{n}_web")]));
    assert_eq!(plan["changes"], 3);

    // And once deployed, the same plan has nothing left to do.
    let again = st.stack(&["plan", "-c", &v2, "--prune"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
}

#[test]
fn a_deploy_that_fails_to_converge_returns_every_service_to_the_previous_revision() {
    let st = SafeStack::new("wsmauto");
    let n = st.name().to_string();
    let v1 = st.file("v1.yml", &three("1", ""));
    let bad = st.file(
        "bad.yml",
        &compose(&[
            ("web", IMAGE, "V=2", 1, ""),
            ("api", "localhost:5000/wsm-no-such-image:none", "V=1", 1, ""),
            ("worker", IMAGE, "V=1", 1, ""),
        ]),
    );
    st.deploy(&v1, &[]).ok();
    let previous = st.specs();
    assert_eq!(previous.len(), 3);

    let started = Instant::now();
    let r = st.deploy(&bad, &[]);
    let took = started.elapsed();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let error = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.contains(&format!("service {n}_api")),
        "names the failed service: {}",
        r.stderr
    );
    assert!(
        error.contains("the stack was rolled back to revision 1"),
        "{}",
        r.stderr
    );
    // The deadline is 60 s; the rejected image is seen long before, the rollback follows.
    assert!(took < Duration::from_secs(60 + 60), "took {took:?}");

    let now = st.specs();
    for (name, spec) in &previous {
        let mut d = BTreeMap::new();
        spec_diff("", spec, &now[name], &mut d);
        assert!(
            d.is_empty(),
            "{name} differs from the previous revision: {d:?}"
        );
        assert_eq!(spec, &now[name], "{name}: the Spec field by field");
    }
    for svc in ["web", "api", "worker"] {
        wait_for(&format!("{n}_{svc} running again"), 60, || {
            !st.s.running_tasks(svc).is_empty()
        });
    }

    let h = st.history();
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["rev"], 1);
    assert_eq!(h[0]["status"], "deployed");
    assert_eq!(h[1]["rev"], 2);
    let status = h[1]["status"].as_str().unwrap();
    assert!(
        status.starts_with("failed: ") && status.ends_with("rolled back to revision 1"),
        "{status}"
    );
    let changes: Vec<&str> = h[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with(&format!("update {n}_api: "))),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with(&format!("update {n}_web: "))),
        "{changes:?}"
    );
    let shown = st.stack(&["history"]);
    assert!(shown.ok().contains("deploy: failed: "), "{}", shown.stdout);
}

#[test]
fn rollback_to_a_revision_two_deploys_back_restores_it() {
    let st = SafeStack::new("wsmback");
    let (v1, v2, v3) = (
        st.file("v1.yml", &three("1", "")),
        st.file("v2.yml", &three("2", "      labels: {rev: two}\n")),
        st.file("v3.yml", &three("3", "")),
    );
    st.deploy(&v1, &[]).ok();
    let first = st.specs();
    st.deploy(&v2, &[]).ok();
    st.deploy(&v3, &[]).ok();
    let h = st.history();
    assert_eq!(
        h.iter()
            .map(|r| r["rev"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );

    let bad = st.stack(&["rollback", "--to", "9"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("has no revision 9; revisions to return to: 1, 2, 3"),
        "{}",
        bad.stderr
    );

    st.stack(&["rollback", "--to", "1"]).ok();
    assert_eq!(st.specs(), first, "every spec as revision 1 left it");
    let h = st.history();
    assert_eq!(h.len(), 4);
    assert_eq!(h[3]["operation"], "rollback");
    assert_eq!(h[3]["status"], "rolled back to revision 1");
}

/// Waits for a spawned wsm and returns what it printed.
fn finish(child: Child) -> Run {
    child.wait_with_output().unwrap().into()
}

/// The `V=` value every service runs, by service.
fn values_of(st: &SafeStack) -> BTreeMap<String, String> {
    st.specs()
        .into_iter()
        .map(|(n, s)| {
            (
                n,
                s["TaskTemplate"]["ContainerSpec"]["Env"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn two_deploys_at_once_never_interleave_and_no_wait_refuses() {
    let st = SafeStack::new("wsmlock");
    let n = st.name().to_string();
    st.deploy(&st.file("v0.yml", &three("0", "")), &[]).ok();
    let (a, b) = (
        st.file("a.yml", &three("a", "")),
        st.file("b.yml", &three("b", "")),
    );

    let first = st.deploy_command(&a, &[]).spawn().unwrap();
    let second = st.deploy_command(&b, &[]).spawn().unwrap();
    let (ra, rb) = (finish(first), finish(second));
    ra.ok();
    rb.ok();
    let waited_a = ra.stderr.contains("is locked: deploy by");
    let waited_b = rb.stderr.contains("is locked: deploy by");
    assert!(
        waited_a != waited_b,
        "exactly one waits:\nA: {}\nB: {}",
        ra.stderr,
        rb.stderr
    );
    let last = if waited_a { "V=a" } else { "V=b" };
    let values = values_of(&st);
    assert_eq!(values.len(), 3);
    assert!(
        values.values().all(|v| v == last),
        "specs interleaved or the waiter did not apply on top: {values:?}"
    );
    let h = st.history();
    assert_eq!(h.len(), 3, "{h:#?}");
    for rev in &h[1..] {
        assert_eq!(
            rev["changes"].as_array().unwrap().len(),
            3,
            "each deploy applied whole: {rev:#}"
        );
    }

    // --no-wait while a deploy holds the lock: refused at once, in one line, nothing applied.
    let slow = three(
        "c",
        "    healthcheck: {test: [\"CMD\", \"true\"], interval: 3s}\n",
    );
    let holder = st
        .deploy_command(&st.file("c.yml", &slow), &[])
        .spawn()
        .unwrap();
    wait_for("the first deploy to hold the lock", 30, || st.lock_object());
    let started = Instant::now();
    let refused = st.deploy(&st.file("d.yml", &three("d", "")), &["--no-wait"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    let error: Vec<&str> = refused
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(error.len(), 1, "{}", refused.stderr);
    assert!(
        error[0].contains(&format!("stack {n} is locked: deploy by ")),
        "{}",
        error[0]
    );
    finish(holder).ok();
    assert!(
        values_of(&st).values().all(|v| v == "V=c"),
        "{:?}",
        values_of(&st)
    );
    assert!(!st.lock_object(), "the lock is released");
}

#[test]
fn a_lock_whose_holder_was_killed_expires_and_the_next_deploy_goes_ahead() {
    let st = SafeStack::new("wsmkill");
    let stuck = st.file(
        "stuck.yml",
        &compose(&[(
            "web",
            IMAGE,
            "V=1",
            1,
            "      placement: {constraints: [\"node.labels.wsm-never == yes\"]}\n",
        )]),
    );
    let good = st.file("good.yml", &compose(&[("web", IMAGE, "V=2", 1, "")]));
    // The holder plays a wsm on another machine, so only the TTL can free its lock.
    let mut holder = st.deploy_command(&stuck, &["--no-rollback"]);
    holder
        .env("WSM_LOCK_TTL", "6")
        .env("WSM_MACHINE_ID", "another-machine");
    let mut holder = holder.spawn().unwrap();
    wait_for("the holder to take the lock", 30, || st.lock_object());
    std::thread::sleep(Duration::from_secs(2));
    holder.kill().unwrap(); // SIGKILL
    let _ = holder.wait();
    let status = st.stack(&["lock", "status"]);
    assert!(
        status.ok().contains("is locked: deploy by "),
        "{}",
        status.stdout
    );

    let started = Instant::now();
    let mut next = st.deploy_command(&good, &[]);
    next.env("WSM_LOCK_TTL", "6");
    let r: Run = next.output().unwrap().into();
    r.ok();
    assert!(
        r.stderr.contains("breaking a stale lock (deploy by "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("it was not renewed after"),
        "{}",
        r.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(st.s.running_tasks("web").len(), 1);
    assert!(st.stack(&["lock", "status"]).ok().contains("is not locked"));
}

/// Runs a Rhai batch file through `wsm run` with ARGS.
fn run_script(dir: &std::path::Path, text: &str, args: &[&str]) -> std::process::Command {
    let path = dir.join(format!("s{}.rhai", unique("")));
    std::fs::write(&path, text).unwrap();
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut all = vec!["run", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut c = wsm_command(dir, &config, &all);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Removes a store document's object when the test ends.
struct DocGuard(String);

impl Drop for DocGuard {
    fn drop(&mut self) {
        docker_quiet(&["config", "rm", &format!("wsm-state-{}", self.0)]);
    }
}

/// The document as the Docker CLI shows it: its labels decoded by hand.
fn doc_by_docker(name: &str) -> Value {
    let labels: Value = serde_json::from_str(&docker(&[
        "config",
        "inspect",
        &format!("wsm-state-{name}"),
        "--format",
        "{{json .Spec.Labels}}",
    ]))
    .unwrap();
    let packed = base64::engine::general_purpose::STANDARD
        .decode(labels["wsm.state.data"].as_str().unwrap())
        .unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_string(&mut json)
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn a_document_round_trips_a_concurrent_writer_is_told_and_an_oversize_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let doc = format!("test.{}", unique("doc"));
    let _guard = DocGuard(doc.clone());

    let write = r#"
        let e = docker::connect("");
        let v = e.store_write(ARGS[0], #{ list: [1, 2, #{ b: "c" }], text: "ü", writers: [] }, ());
        let r = e.store_read(ARGS[0]);
        print(term::json(#{ written: v, read: r }));
    "#;
    let out: Run = run_script(dir.path(), write, &[&doc])
        .output()
        .unwrap()
        .into();
    let seen: Value = serde_json::from_str(out.ok()).unwrap();
    let want = json!({"list": [1, 2, {"b": "c"}], "text": "ü", "writers": []});
    assert_eq!(seen["read"]["value"], want);
    assert_eq!(seen["read"]["version"], seen["written"]);
    assert!(seen["written"].as_i64().unwrap() > 0);
    assert_eq!(
        doc_by_docker(&doc),
        want,
        "the labels hold the document, gzip + base64"
    );

    // Two writers read the same version, then both write: one wins, the other is told.
    let race = r#"
        let e = docker::connect("");
        let d = e.store_read(ARGS[0]);
        let at = parse_float(ARGS[2]);
        while term::now() < at { term::sleep(20); }
        let value = d.value;
        value.writers.push(ARGS[1]);
        try {
            e.store_write(ARGS[0], value, d.version);
            print("written");
        } catch (err) {
            print(`conflict: ${err.conflict}`);
        }
    "#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let at = format!("{:.3}", now + 4.0);
    let one = run_script(dir.path(), race, &[&doc, "one", &at])
        .spawn()
        .unwrap();
    let two = run_script(dir.path(), race, &[&doc, "two", &at])
        .spawn()
        .unwrap();
    let (one, two) = (finish(one), finish(two));
    let outcomes = [
        ("one", one.ok().trim().to_string()),
        ("two", two.ok().trim().to_string()),
    ];
    let winners: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o == "written")
        .map(|(w, _)| *w)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let loser = outcomes.iter().find(|(_, o)| o != "written").unwrap();
    assert!(
        loser.1.starts_with(&format!(
            "conflict: document {doc} was changed by another writer since version "
        )) && loser.1.ends_with("; read it again and reapply the change"),
        "{}",
        loser.1
    );
    assert_eq!(
        doc_by_docker(&doc)["writers"],
        json!(winners),
        "the winner's write stands alone"
    );

    // A document over the limit: refused in one line, the stored one unchanged.
    let mut bytes = vec![0u8; 1_200_000];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    let big = base64::engine::general_purpose::STANDARD.encode(bytes);
    let big_path = dir.path().join("big.txt");
    std::fs::write(&big_path, big).unwrap();
    let before = doc_by_docker(&doc);
    let oversize = r#"
        let e = docker::connect("");
        let d = e.store_read(ARGS[0]);
        e.store_write(ARGS[0], #{ big: fs::read(ARGS[1]) }, d.version);
    "#;
    let r: Run = run_script(dir.path(), oversize, &[&doc, big_path.to_str().unwrap()])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].contains(&format!("document {doc} takes "))
            && lines[0].contains("over the store's limit of 1024 KiB"),
        "{}",
        lines[0]
    );
    assert_eq!(
        doc_by_docker(&doc),
        before,
        "the stored document is unchanged"
    );
}
