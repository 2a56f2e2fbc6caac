//! Issue 24, drift: `stack drift` on the real engine, the Docker CLI both making the changes
//! outside wsm (`docker service update`, `docker service rm`, `docker service create`) and
//! witnessing what `--revert` puts back (`docker service inspect`, `docker service ls`).

#[path = "common/mod.rs"]
mod common;
#[path = "safedeploy/support.rs"]
#[allow(dead_code)]
mod support;

use common::*;
use serde_json::Value;
use support::*;

/// A two-service stack (web, api), deployed through wsm; its first revision recorded.
fn deployed(prefix: &str) -> SafeStack {
    let st = SafeStack::new(prefix);
    let file = st.file(
        "v1.yml",
        &compose(&[
            ("web", IMAGE, "DB_PASSWORD=first-secret-value", 1, ""),
            ("api", IMAGE, "V=1", 1, ""),
        ]),
    );
    st.deploy(&file, &[]).ok();
    st
}

/// `docker service update -q <args…> <service>`, waited for (the CLI's own wait).
fn update(service: &str, args: &[&str]) {
    let mut all = vec!["service", "update", "-q"];
    all.extend_from_slice(args);
    all.push(service);
    docker(&all);
}

/// A service's environment as `docker service inspect` shows it.
fn env_of(service: &str) -> Vec<String> {
    let out = docker(&[
        "service",
        "inspect",
        service,
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
    ]);
    serde_json::from_str(&out).unwrap()
}

/// `stack drift --json` read as JSON (its exit status checked).
fn drift_json(st: &SafeStack, code: i32) -> Value {
    let r = st.s.wsm(&["--json", "stack", "drift", st.name()]);
    assert_eq!(r.code, code, "{}{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// The changed fields of one service in a `--json` drift.
fn fields_of(d: &Value, service: &str) -> Vec<(String, Value, Value)> {
    d["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == service)
        .flat_map(|r| r["fields"].as_array().cloned().unwrap_or_default())
        .map(|f| {
            (
                f["field"].as_str().unwrap().to_string(),
                f["before"].clone(),
                f["after"].clone(),
            )
        })
        .collect()
}

#[test]
fn an_env_key_added_by_hand_is_drift_and_revert_puts_the_recorded_revision_back() {
    let st = deployed("wsmdrift");
    let n = st.name().to_string();
    let web = format!("{n}_web");
    let clean = st.stack(&["drift"]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("no drift"), "{}", clean.stdout);
    let before = env_of(&web);

    update(
        &web,
        &[
            "--env-add",
            "X=1",
            "--env-add",
            "DB_PASSWORD=changed-by-hand",
        ],
    );
    let r = st.stack(&["drift"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("~ service {web}\n")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("TaskTemplate.ContainerSpec.Env.X: (none) → 1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("TaskTemplate.ContainerSpec.Env.DB_PASSWORD: ******** → ********"),
        "{}",
        r.stdout
    );
    let d = drift_json(&st, 3);
    assert_eq!(d["rev"], 1, "{d}");
    assert_eq!(d["changes"], 1, "only web drifted: {d}");
    let fields = fields_of(&d, &web);
    assert!(
        fields.contains(&(
            "TaskTemplate.ContainerSpec.Env.X".into(),
            Value::Null,
            "1".into()
        )),
        "{fields:?}"
    );
    for (out, what) in [(&r.stdout, "text"), (&d.to_string(), "json")] {
        for secret in ["first-secret-value", "changed-by-hand"] {
            assert!(!out.contains(secret), "{what} shows a secret value: {out}");
        }
    }
    // --notify tells the drift to WSM_NOTIFY (a real HTTP server here) and exits 0: for a
    // scheduled check the event is the report, not a failed job.
    let hook = common::webhook::Webhook::start(false);
    let notified: Run =
        st.s.command(&["stack", "drift", "--notify", st.name()])
            .env("WSM_NOTIFY", hook.url("/hook"))
            .output()
            .unwrap()
            .into();
    assert_eq!(notified.code, 0, "{}{}", notified.stdout, notified.stderr);
    let events = hook.events("drift");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["event"], "drift", "{event}");
    assert_eq!(event["stack"], st.name(), "{event}");
    assert!(event.to_string().contains("Env.X"), "{event}");
    for secret in ["first-secret-value", "changed-by-hand"] {
        assert!(
            !event.to_string().contains(secret),
            "the event shows a secret value: {event}"
        );
    }

    let revs_before = st.history().len();
    let back = st.stack(&["drift", "--revert", "--timeout", "60"]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert!(
        back.stdout.contains("put back to revision 1"),
        "{}",
        back.stdout
    );
    let env = env_of(&web);
    assert!(!env.contains(&"X=1".to_string()), "{env:?}");
    assert_eq!(env, before, "the recorded environment, secret included");
    let history = st.history();
    assert!(history.len() > revs_before, "{history:?}");
    let last = history.last().unwrap();
    assert_eq!(last["operation"], "drift --revert", "{last}");
    assert_eq!(last["status"], "rolled back to revision 1", "{last}");
    assert!(!last.to_string().contains("changed-by-hand"), "{last}");
    let again = st.stack(&["drift"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
}

#[test]
fn replicas_labels_and_a_removed_service_are_drift_and_a_forced_update_is_not() {
    let st = deployed("wsmdriftb");
    let n = st.name().to_string();
    let (web, api) = (format!("{n}_web"), format!("{n}_api"));

    // The force-update counter moves, the settings do not: the engine's own.
    update(&web, &["--force"]);
    let r = st.stack(&["drift"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    update(&web, &["--replicas", "2", "--label-add", "drifted=yes"]);
    docker(&["service", "rm", &api]);
    let r = st.stack(&["drift"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Mode.Replicated.Replicas: 1 → 2"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Labels.drifted: (none) → yes"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("- service {api} (removed)")),
        "{}",
        r.stdout
    );
    let d = drift_json(&st, 3);
    let removed: Vec<&Value> = d["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "removed")
        .collect();
    assert_eq!(removed.len(), 1, "{d}");
    assert_eq!(removed[0]["name"], api.as_str());

    let back = st.stack(&["drift", "--revert", "--timeout", "60"]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert_eq!(st.s.services(), vec![api.clone(), web.clone()]);
    let spec = &st.specs()[&web];
    assert_eq!(spec["Mode"]["Replicated"]["Replicas"], 1, "{spec}");
    assert!(spec["Labels"].get("drifted").is_none(), "{spec}");
    wait_for("api running again", 60, || {
        !st.s.running_tasks("api").is_empty()
    });
    let again = st.stack(&["drift"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
}

#[test]
fn no_history_or_no_service_is_one_line_and_exit_2_with_nothing_changed() {
    // A stack made outside wsm: services, no revision.
    let st = SafeStack::new("wsmdriftc");
    let n = st.name().to_string();
    let web = format!("{n}_web");
    let label = format!("com.docker.stack.namespace={n}");
    docker(&[
        "service", "create", "-q", "--detach", "--name", &web, "--label", &label, IMAGE, "sleep",
        "3600",
    ]);
    for args in [vec!["drift"], vec!["drift", "--revert"]] {
        let r = st.stack(&args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
        assert!(r.stderr.contains("no recorded revision"), "{}", r.stderr);
    }
    assert!(st.history().is_empty(), "nothing recorded");

    // Deployed through wsm, then every service removed by hand: not running.
    let file = st.file("v1.yml", &compose(&[("web", IMAGE, "V=1", 1, "")]));
    docker(&["service", "rm", &web]);
    st.deploy(&file, &[]).ok();
    docker(&["service", "rm", &web]);
    let revs = st.history().len();
    for args in [vec!["drift"], vec!["drift", "--revert"]] {
        let r = st.stack(&args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
        assert!(r.stderr.contains("is not running"), "{}", r.stderr);
    }
    assert!(st.s.services().is_empty(), "nothing started");
    assert_eq!(st.history().len(), revs, "nothing recorded");

    let bad = st.stack(&["drift", "--revert", "--timeout", "soon"]);
    assert_eq!(bad.code, 2, "{}{}", bad.stdout, bad.stderr);
    assert!(bad.stderr.contains("timeout"), "{}", bad.stderr);
}
