//! Issue 23, items 1 and 15c, on the real engine with the Docker CLI as witness: a deploy is
//! done only when the engine says so. New tasks that fail right after starting (a fresh
//! service, an update, a start-first update the engine rolls back itself) fail the deploy with
//! the task's error and the stack goes back to its previous revision; a healthy update waits
//! for the engine's verdict, an unchanged stack does not; `stack rm` of a stack whose job
//! completed returns at once and removes the network.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "safedeploy/support.rs"]
mod support;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use support::*;

/// One service `app` of the base image running `command` (a YAML list) with `V=<v>`, and
/// `deploy` lines (indented by six spaces).
fn app(command: &str, v: &str, deploy: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {command}\n    environment: [\"V={v}\"]\n    stop_grace_period: 1s\n    deploy:\n{deploy}"
    )
}

const SLEEP: &str = r#"["sleep", "3600"]"#;

/// `docker service inspect <stack>_app` as JSON.
fn inspect_app(st: &SafeStack) -> Value {
    let text = docker(&["service", "inspect", &format!("{}_app", st.name())]);
    serde_json::from_str::<Vec<Value>>(&text).unwrap().remove(0)
}

/// `docker service ps` of the app: `CurrentState Error` per task, newest first.
fn app_tasks(st: &SafeStack) -> String {
    docker(&[
        "service",
        "ps",
        "--no-trunc",
        &format!("{}_app", st.name()),
        "--format",
        "{{.CurrentState}} {{.Error}}",
    ])
}

fn env_of(svc: &Value) -> Value {
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"].clone()
}

/// The deploy failed in one error line naming the service and the task's error.
fn assert_failed_naming_the_task(st: &SafeStack, r: &Run) {
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let error = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", r.stderr));
    assert!(
        error.contains(&format!("service {}_app", st.name()))
            && error.contains("non-zero exit (1)"),
        "{error}"
    );
}

/// The stack's last revision is the failed deploy, rolled back to revision `to`.
fn assert_history_rolled_back(st: &SafeStack, to: i64) {
    let h = st.history();
    let last = h.last().unwrap();
    let status = last["status"].as_str().unwrap();
    assert!(
        status.starts_with("failed: ")
            && status.contains("non-zero exit (1)")
            && status.ends_with(&format!("rolled back to revision {to}")),
        "{h:#?}"
    );
    assert!(
        h.iter()
            .all(|r| r["status"] != "deployed" || r["rev"] == to),
        "only revision {to} was deployed: {h:#?}"
    );
}

#[test]
fn a_new_service_whose_task_fails_right_after_starting_fails_the_deploy() {
    let st = SafeStack::new("wsmsays1");
    let file = st.file(
        "fail.yml",
        &app(
            r#"["sh", "-c", "sleep 1; exit 1"]"#,
            "1",
            "      restart_policy: {condition: none}\n",
        ),
    );
    let started = Instant::now();
    let r = st.deploy(&file, &[]);
    let took = started.elapsed();
    assert_failed_naming_the_task(&st, &r);
    assert!(
        r.stderr.contains("no previous revision"),
        "nothing to roll back to: {}",
        r.stderr
    );
    // Seen when the task fails (a second after it started), not at the deadline (60 s).
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let tasks = app_tasks(&st);
    assert!(
        tasks.starts_with("Failed") && tasks.contains("non-zero exit (1)"),
        "{tasks}"
    );
    let h = st.history();
    assert_eq!(h.len(), 1, "{h:#?}");
    assert!(
        h[0]["status"].as_str().unwrap().starts_with("failed: "),
        "{h:#?}"
    );
}

#[test]
fn an_update_to_a_command_that_fails_is_a_failed_deploy_and_the_stack_rolls_back() {
    let st = SafeStack::new("wsmsays2");
    let good = st.file("good.yml", &app(SLEEP, "1", "      replicas: 1\n"));
    let bad = st.file(
        "bad.yml",
        &app(
            r#"["sh", "-c", "sleep 1; exit 1"]"#,
            "2",
            "      replicas: 1\n",
        ),
    );
    st.deploy(&good, &[]).ok();
    let before = inspect_app(&st);

    let r = st.deploy(&bad, &[]);
    assert_failed_naming_the_task(&st, &r);
    assert!(
        r.stderr.contains("the stack was rolled back to revision 1"),
        "{}",
        r.stderr
    );
    let now = inspect_app(&st);
    assert_eq!(env_of(&now), env_of(&before), "the previous env again");
    assert_eq!(
        now["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        before["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"]
    );
    assert_ne!(
        now["UpdateStatus"]["State"], "paused",
        "the engine's paused update was replaced by the rollback: {}",
        now["UpdateStatus"]
    );
    assert!(app_tasks(&st).starts_with("Running"), "{}", app_tasks(&st));
    assert_history_rolled_back(&st, 1);
}

#[test]
fn a_start_first_update_the_engine_rolls_back_itself_is_a_failed_deploy() {
    // The old tasks keep running while the new ones start: counting them, a deploy looked done
    // in 0.14 s, and ten seconds later the engine had rolled the service back on its own.
    let st = SafeStack::new("wsmsays3");
    let deploy =
        "      replicas: 2\n      update_config: {order: start-first, failure_action: rollback}\n";
    let good = st.file("good.yml", &app(SLEEP, "1", deploy));
    let bad = st.file(
        "bad.yml",
        &app(r#"["sh", "-c", "sleep 2; exit 1"]"#, "2", deploy),
    );
    st.deploy(&good, &[]).ok();
    let before = inspect_app(&st);

    let started = Instant::now();
    let r = st.deploy(&bad, &[]);
    let took = started.elapsed();
    assert_failed_naming_the_task(&st, &r);
    assert!(
        r.stderr.contains("the stack was rolled back to revision 1"),
        "{}",
        r.stderr
    );
    assert!(took > Duration::from_secs(2), "took {took:?}");
    let now = inspect_app(&st);
    assert_eq!(env_of(&now), env_of(&before), "the previous env again");
    assert_history_rolled_back(&st, 1);
    wait_for("two tasks running", 30, || {
        st.s.running_tasks("app").len() == 2
    });
}

#[test]
fn a_healthy_update_waits_for_the_engine_and_an_unchanged_stack_does_not() {
    let st = SafeStack::new("wsmsays4");
    // A window long enough to tell waiting for it from not.
    let deploy = "      replicas: 1\n      update_config: {monitor: 10s}\n";
    let v1 = st.file("v1.yml", &app(SLEEP, "1", deploy));
    let v2 = st.file("v2.yml", &app(SLEEP, "2", deploy));

    let started = Instant::now();
    let r = st.deploy(&v1, &[]);
    r.ok();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10),
        "a new task is watched for the monitor window: took {took:?}"
    );

    let started = Instant::now();
    let r = st.deploy(&v2, &[]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("(converged)"), "{}", r.stderr);
    assert!(took >= Duration::from_secs(10), "took {took:?}");
    let svc = inspect_app(&st);
    assert_eq!(
        svc["UpdateStatus"]["State"], "completed",
        "done when the engine says so: {}",
        svc["UpdateStatus"]
    );
    assert_eq!(env_of(&svc), serde_json::json!(["V=2"]));
    let h = st.history();
    assert_eq!(h.last().unwrap()["status"], "deployed", "{h:#?}");

    // Nothing changed, nothing to watch: no window.
    let started = Instant::now();
    let r = st.deploy(&v2, &[]);
    let took = started.elapsed();
    assert!(r.ok().contains("no changes"), "{}", r.stdout);
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn rm_of_a_stack_whose_job_completed_returns_at_once_and_removes_the_network() {
    let st = SafeStack::new("wsmsaysrm");
    let file = st.file(
        "job.yml",
        &format!(
            "services:\n  job:\n    image: {IMAGE}\n    command: [\"true\"]\n    deploy:\n      mode: replicated-job\n  app:\n    image: {IMAGE}\n    command: {SLEEP}\n    stop_grace_period: 1s\n"
        ),
    );
    st.deploy(&file, &[]).ok();
    let label = format!("label=com.docker.stack.namespace={}", st.name());
    let exited = docker(&["ps", "-aq", "--filter", &label, "--filter", "status=exited"]);
    assert!(!exited.trim().is_empty(), "the job's container is left");

    let started = Instant::now();
    let r = st.stack(&["rm", "--timeout", "60"]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &label]).trim(),
        ""
    );
    assert_eq!(docker(&["ps", "-aq", "--filter", &label]).trim(), "");
    assert_eq!(
        docker(&["service", "ls", "-q", "--filter", &label]).trim(),
        ""
    );
}
