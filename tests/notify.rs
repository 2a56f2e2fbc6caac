//! Issue 24, notifications, on the real engine: a webhook server of the test's own on
//! 127.0.0.1 (a `TcpListener` that records every request's bytes) hears what `WSM_NOTIFY`
//! names: one `deploy` event per converged deploy, `deploy_failed` and `rollback` when an update
//! fails and the stack goes back, in the generic, `slack+` and `ntfy+` shapes; a webhook that
//! accepts the connection and never answers is tried three times, the deploy still succeeds and
//! says so in one warning line without the URL's token; a secret config value reaches no
//! payload; a WSM_NOTIFY that is not a URL is refused before anything changes.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "safedeploy/support.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::webhook::Webhook;
use common::*;
use serde_json::Value;
use support::*;

/// One service `app` of the base image running `command` (a YAML list) with `V=<v>`.
fn app(command: &str, v: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {command}\n    environment: [\"V={v}\"]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 1\n"
    )
}

const SLEEP: &str = r#"["sleep", "3600"]"#;

/// A secret config value every test's stack holds, which no payload may carry.
const SECRET: &str = "s3cret-notify-value-7731";

/// A stack of the safe-deploy tests with WSM_NOTIFY (and a secret key) in its config.
fn stack_notifying(prefix: &str, notify: &str) -> SafeStack {
    let st = SafeStack::new(prefix);
    st.s.set("WSM_NOTIFY", notify);
    st.s.set("API_TOKEN", SECRET);
    st
}

/// No received body holds the secret.
fn assert_no_secret(hook: &Webhook) {
    for r in hook.received() {
        assert!(
            !r.body.contains(SECRET),
            "{} received a secret: {}",
            r.path,
            r.body
        );
    }
}

#[test]
fn a_deploy_tells_each_url_in_its_shape() {
    let hook = Webhook::start(false);
    let notify = format!(
        "{}, slack+{} ntfy+{}",
        hook.url("/hook"),
        hook.url("/services/T1/B1/tok"),
        hook.url("/base/wsm-topic")
    );
    let st = stack_notifying("wsmnotify1", &notify);
    let file = st.file("good.yml", &app(SLEEP, "1"));
    st.deploy(&file, &[]).ok();
    // Delivered before the command ended: nothing to wait for.
    let generic = hook.json_at("/hook");
    assert_eq!(generic.len(), 1, "{:#?}", hook.received());
    let ev = &generic[0];
    assert_eq!(ev["event"], "deploy", "{ev}");
    assert_eq!(ev["stack"], st.name(), "{ev}");
    assert!(ev["message"].as_str().unwrap().contains(st.name()), "{ev}");
    assert!(ev["time"].as_str().unwrap().ends_with('Z'), "{ev}");
    assert!(!ev["host"].as_str().unwrap().is_empty(), "{ev}");

    let slack = hook.json_at("/services/T1/B1/tok");
    assert_eq!(slack.len(), 1, "{:#?}", hook.received());
    let obj = slack[0].as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["text"], "{obj:?}");
    let text = obj["text"].as_str().unwrap();
    assert!(
        text.contains("deploy") && text.contains(st.name()),
        "{text}"
    );

    // ntfy's JSON publish goes to the server's root (here below its base path).
    let ntfy = hook.json_at("/base/");
    assert_eq!(ntfy.len(), 1, "{:#?}", hook.received());
    let n = &ntfy[0];
    assert_eq!(n["topic"], "wsm-topic", "{n}");
    assert!(n["title"].as_str().unwrap().contains(st.name()), "{n}");
    assert!(n["message"].as_str().unwrap().contains(st.name()), "{n}");
    assert_eq!(n["tags"], serde_json::json!(["deploy"]), "{n}");
    assert_eq!(hook.received().len(), 3, "{:#?}", hook.received());
    assert_no_secret(&hook);

    // A detached deploy did not converge yet: no `deploy` event.
    let file2 = st.file("good2.yml", &app(SLEEP, "2"));
    st.deploy(&file2, &["--detach"]).ok();
    assert_eq!(hook.received().len(), 3, "{:#?}", hook.received());
}

#[test]
fn a_failed_update_tells_deploy_failed_and_rollback() {
    let hook = Webhook::start(false);
    let st = stack_notifying("wsmnotify2", &hook.url("/hook"));
    let good = st.file("good.yml", &app(SLEEP, "1"));
    let bad = st.file("bad.yml", &app(r#"["sh", "-c", "sleep 1; exit 1"]"#, "2"));
    st.deploy(&good, &[]).ok();
    let r = st.deploy(&bad, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("the stack was rolled back to revision 1"),
        "{}",
        r.stderr
    );
    let events = hook.json_at("/hook");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "{events:#?}");
    assert_eq!(kinds[0], "deploy", "{events:#?}");
    let failed = events
        .iter()
        .find(|e| e["event"] == "deploy_failed")
        .unwrap();
    assert_eq!(failed["stack"], st.name(), "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("non-zero exit (1)"),
        "{failed}"
    );
    let back = events.iter().find(|e| e["event"] == "rollback").unwrap();
    assert_eq!(back["stack"], st.name(), "{back}");
    assert_eq!(back["revision"], 1, "{back}");
    assert_eq!(back["ok"], true, "{back}");
    assert_no_secret(&hook);
}

#[test]
fn a_webhook_that_never_answers_costs_three_tries_and_one_warning() {
    let hook = Webhook::start(true);
    let token = "tok-9f8e7d6c5b4a";
    let url = hook.url(&format!("/hook?token={token}"));
    // From the environment this time, with one-second tries.
    let st = SafeStack::new("wsmnotify3");
    let file = st.file("good.yml", &app(SLEEP, "1"));
    let started = Instant::now();
    let out = st
        .deploy_command(&file, &[])
        .env("WSM_NOTIFY", &url)
        .env("WSM_NOTIFY_TIMEOUT", "1")
        .output()
        .unwrap();
    let took = started.elapsed();
    let r: Run = out.into();
    r.ok();
    assert_eq!(hook.connections.load(Ordering::SeqCst), 3, "{}", r.stderr);
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: notify"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    let expected = format!(
        "warning: notify: the deploy event was not delivered to http://127.0.0.1:{}/hook?token=******** (no answer within the deadline, after 3 tries)",
        hook.port
    );
    assert_eq!(warnings[0], expected);
    assert!(!r.stderr.contains(token) && !r.stdout.contains(token));
    // The bound is 3 × 1 s + 1.5 s; a deploy of one service takes seconds. Very generous.
    assert!(took < Duration::from_secs(120), "took {took:?}");
}

#[test]
fn secret_values_reach_no_payload() {
    let hook = Webhook::start(false);
    let st = stack_notifying("wsmnotify4", &hook.url("/hook"));
    let script = st.file(
        "send.rhai",
        &format!(
            r#"import "config" as cfg;
import "notify" as notify;
let ctx = cfg::context("{}");
notify::send(ctx.values, #{{ event: "drift", stack: ctx.stack, message: `value ${{ctx.values.API_TOKEN}} and DB_PASSWORD=hunter2hunter`, detail: [ctx.values.API_TOKEN] }});
"#,
            st.name()
        ),
    );
    st.s.wsm(&["run", &script]).ok();
    let events = hook.json_at("/hook");
    assert_eq!(events.len(), 1, "{:#?}", hook.received());
    let body = &hook.received()[0].body;
    assert!(
        !body.contains(SECRET) && !body.contains("hunter2hunter"),
        "{body}"
    );
    assert_eq!(
        events[0]["message"], "value ******** and DB_PASSWORD=********",
        "{body}"
    );
    assert_eq!(events[0]["detail"][0], "********", "{body}");
    // `config` shows WSM_NOTIFY masked: a webhook URL carries its token.
    let shown = st.s.stack(&["config"]);
    let line = shown
        .ok()
        .lines()
        .find(|l| l.starts_with("WSM_NOTIFY="))
        .unwrap()
        .to_string();
    assert_eq!(line, "WSM_NOTIFY=********");
}

#[test]
fn a_notify_value_that_is_not_a_url_is_refused_before_anything_changes() {
    let st = SafeStack::new("wsmnotify5");
    st.s.set("WSM_NOTIFY", "ftp://example.com/x");
    let file = st.file("good.yml", &app(SLEEP, "1"));
    let r = st.deploy(&file, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("WSM_NOTIFY") && errors[0].contains("not an http"),
        "{}",
        r.stderr
    );
    assert!(st.s.services().is_empty());
    st.s.set("WSM_NOTIFY", "ntfy+https://ntfy.example.com/");
    let r = st.deploy(&file, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("names no ntfy topic"), "{}", r.stderr);
    assert!(st.s.services().is_empty());
}

#[test]
fn a_failed_job_run_is_told_from_a_process_of_its_own() {
    let hook = Webhook::start(false);
    // The runner's own end of a run (`finish`), on a job with no runs document (nothing is
    // written to the store), with WSM_NOTIFY in the runner's environment; the job is a
    // scheduled backup's command line.
    let st = SafeStack::new("wsmnotify6");
    let job = unique("wsmnotifyjob");
    let script = st.file(
        "job.rhai",
        &format!(
            r#"import "jobs_runner" as runner;
fn ended(code) {{
    let jobs = #{{ "{job}": #{{ job: #{{ name: "{job}", command: ["stack", "-s", "demo", "backup"], script: () }} }} }};
    let st = #{{ me: #{{ id: "test/1", hostname: "testhost" }}, busy: [], runs: #{{}}, jobs: jobs, notifying: [],
        current: #{{ name: "{job}", slot: 1700000000, file: (), started: 1700000000 }} }};
    st = runner::finish(docker::connect(""), st, #{{ code: code, timed_out: false, output: "", seconds: 0.5 }});
    for n in st.notifying {{ n.wait(30000); }}
    st.notifying.len()
}}
print(`${{ended(0)}} ${{ended(3)}}`);
"#
        ),
    );
    let out =
        st.s.command(&["run", &script])
            .env("WSM_NOTIFY", hook.url("/jobs"))
            .output()
            .unwrap();
    let r: Run = out.into();
    // The child's own line ("delivered to …") goes to the runner's log, before the count.
    assert_eq!(r.ok().lines().last(), Some("0 1"), "{}", r.stderr);
    let events = hook.json_at("/jobs");
    assert_eq!(events.len(), 1, "{:#?}", hook.received());
    let ev = &events[0];
    assert_eq!(ev["event"], "job_failed", "{ev}");
    assert_eq!(ev["job"], job.as_str(), "{ev}");
    assert_eq!(ev["code"], "3", "{ev}");
    // What ran: a scheduled backup's event names its stack.
    assert_eq!(ev["command"], "wsm stack -s demo backup", "{ev}");
    assert!(
        ev["message"].as_str().unwrap().contains("failed (exit 3)"),
        "{ev}"
    );
}

#[test]
fn notify_send_reports_each_url() {
    let hook = Webhook::start(false);
    let st = SafeStack::new("wsmnotify7");
    let dead = format!("http://127.0.0.1:{}/gone", free_port());
    let out =
        st.s.command(&[
            "notify", "send", "--json", "--field", "k=v", "test", "hello",
        ])
        .env("WSM_NOTIFY", format!("{} {dead}", hook.url("/t")))
        .env("WSM_NOTIFY_TIMEOUT", "1")
        .output()
        .unwrap();
    let r: Run = out.into();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let results: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(results[0]["ok"], true, "{results}");
    assert_eq!(results[1]["ok"], false, "{results}");
    assert_eq!(results[1]["attempts"], 3, "{results}");
    let events = hook.json_at("/t");
    assert_eq!(events.len(), 1, "{:#?}", hook.received());
    assert_eq!(events[0]["k"], "v");
    assert_eq!(events[0]["message"], "hello");
    // Nothing to send to: bad usage.
    let r = st.s.wsm(&["notify", "send", "test", "hello"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
