//! Issue 14, safe deploys, on the real engine with the Docker CLI as witness: `stack plan`
//! against the `docker service inspect` difference a deploy then makes; a deploy that fails to
//! converge returning all three services to the previous revision field by field; `rollback
//! --to` two deploys back; two deploys at once never interleaving, `--no-wait` refusing; a
//! SIGKILLed holder's lock expiring. `locks.rs`: the lock under clock skew and a shared machine
//! id, fencing, and the commands that take it. The state store they stand on is tested in
//! `tests/store.rs`.

#[path = "../common/mod.rs"]
mod common;
mod locks;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use support::*;

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
            .contains("TaskTemplate.ContainerSpec.Env.X: 1 → 2"),
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
    // web also reads a config file, which the failed deploy changes: its old version must
    // still be there for the rollback, and the new one gone after it.
    st.file("app-1.txt", "one\n");
    st.file("app-2.txt", "two\n");
    let uses_app = "    configs: [{source: app, target: /app.txt}]\n";
    let app = |v: &str| format!("configs:\n  app:\n    file: ./app-{v}.txt\n");
    let v1 = st.file(
        "v1.yml",
        &(compose(&[
            ("web", IMAGE, "V=1", 1, uses_app),
            ("api", IMAGE, "V=1", 1, ""),
            ("worker", IMAGE, "V=1", 1, ""),
        ]) + &app("1")),
    );
    let bad = st.file(
        "bad.yml",
        &(compose(&[
            ("web", IMAGE, "V=2", 1, uses_app),
            ("api", "localhost:5000/wsm-no-such-image:none", "V=1", 1, ""),
            ("worker", IMAGE, "V=1", 1, ""),
        ]) + &app("2")),
    );
    st.deploy(&v1, &[]).ok();
    let previous = st.specs();
    assert_eq!(previous.len(), 3);
    let configs = || {
        docker(&[
            "config",
            "ls",
            "--filter",
            &format!("label=com.docker.stack.namespace={n}"),
            "--format",
            "{{.Name}}",
        ])
    };
    let configs_before = configs();
    assert_eq!(configs_before.lines().count(), 1, "{configs_before}");

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

    assert_eq!(
        configs(),
        configs_before,
        "the old config version stays, the new one is gone"
    );

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

#[test]
fn lock_release_force_takes_the_lock_from_its_holder() {
    let st = SafeStack::new("wsmfree");
    let n = st.name().to_string();
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
    let mut holder = st.deploy_command(&stuck, &["--no-rollback"]);
    holder.env("WSM_LOCK_TTL", "4");
    let mut holder = holder.spawn().unwrap();
    wait_for("the holder to take the lock", 30, || st.lock_object());

    let unforced = st.stack(&["lock", "release"]);
    assert_eq!(unforced.code, 2, "{}", unforced.stderr);
    assert!(st.lock_object(), "no --force, no release");
    let released = st.stack(&["lock", "release", "--force"]);
    assert!(
        released.ok().contains(&format!(
            "Released the lock of stack {n}, held for deploy by "
        )),
        "{}",
        released.stdout
    );
    assert!(!st.lock_object());

    // The next deploy goes ahead at once; the old holder is told at its next renewal.
    st.deploy(&good, &["--no-wait"]).ok();
    assert_eq!(st.s.running_tasks("web").len(), 1);
    std::thread::sleep(Duration::from_secs(2));
    holder.kill().unwrap();
    let out = finish(holder);
    assert!(
        out.stderr
            .contains(&format!("the lock of stack {n} was taken away")),
        "{}",
        out.stderr
    );
}

#[test]
fn scale_restart_and_rollback_keep_a_services_health_check() {
    // bollard's model reads a service's `Healthcheck` as nothing; what writes a spec back
    // reads it as the engine wrote it (src/host/docker/raw.rs).
    let st = SafeStack::new("wsmhc");
    let n = st.name().to_string();
    let checked = "    healthcheck: {test: [\"CMD\", \"true\"], interval: 2s}\n";
    let v1 = st.file("v1.yml", &compose(&[("web", IMAGE, "V=1", 1, checked)]));
    let v2 = st.file("v2.yml", &compose(&[("web", IMAGE, "V=2", 1, checked)]));
    st.deploy(&v1, &[]).ok();
    let web = format!("{n}_web");
    let check = || {
        docker(&[
            "service",
            "inspect",
            &web,
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck}}",
        ])
    };
    let want = check();
    assert!(want.contains("\"Test\":[\"CMD\",\"true\"]"), "{want}");
    st.s.stack(&["scale", "web=2"]).ok();
    assert_eq!(check(), want, "after scale");
    st.s.wsm(&["stack", "restart", &n, "web"]).ok();
    assert_eq!(check(), want, "after restart");
    st.deploy(&v2, &[]).ok();
    st.stack(&["rollback"]).ok();
    assert_eq!(check(), want, "after a stack rollback");
}

#[test]
fn a_plan_of_every_corpus_file_just_deployed_reports_no_changes() {
    // The real stack files of tests/corpus/ (see tests/corpus.rs), deployed without images
    // or waiting; the plan of the same file must find nothing to change in what the engine
    // stored: no spurious difference from defaults or spelling.
    let _outside = common::corpus::Outside::new();
    let env = common::corpus::ENV;
    let dirs = common::corpus::dirs();
    assert!(dirs.len() >= 30, "the corpus has {} files", dirs.len());
    for dir in dirs {
        let file = common::corpus::stack_file(&dir);
        let file = file.to_str().unwrap();
        // Files run one after another: several publish the same ports.
        let st = SafeStack::new("wsmcorp");
        let run = |args: &[&str]| -> Run {
            let mut all = vec!["stack"];
            all.extend_from_slice(args);
            all.extend(["--resolve-image", "never", "-c", file, st.name()]);
            st.s.command(&all)
                .envs(env.iter().copied())
                .output()
                .unwrap()
                .into()
        };
        run(&["deploy", "-d"]).ok();
        let services = st.s.services();
        assert!(!services.is_empty(), "{}: nothing deployed", dir.display());
        let plan = run(&["plan", "--json"]);
        assert_eq!(
            plan.code,
            0,
            "{}: the plan of what was just deployed:\n{}{}",
            dir.display(),
            plan.stdout,
            plan.stderr
        );
        let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
        assert_eq!(plan["changes"], 0, "{plan:#}");
        assert_eq!(plan["unchanged"].as_array().unwrap().len(), services.len());
        eprintln!("{}: {} services, no changes", dir.display(), services.len());
    }
}
