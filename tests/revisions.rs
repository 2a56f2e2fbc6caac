//! Issue 23, items 14, 15b and 20: a stack's revisions on the real engine, the Docker CLI as
//! witness. A history document of the wrong shape (forged with `docker config create` and the
//! store's labels) is reported as damaged and nothing is written over it; `rollback --to`
//! crosses config changes, the task reading the old file's bytes again, and the versions go
//! once their revisions rotate out; a deploy stopped by SIGTERM or SIGINT after its services
//! changed is recorded as interrupted, with the command that returns the stack.

#[path = "common/mod.rs"]
mod common;
#[path = "safedeploy/support.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use sha2::Digest;
use support::*;

/// Writes store document `name` by hand, as the store would (gzip, base64, digest), holding
/// `value`: the forger needs nothing but the Docker CLI.
fn forge(name: &str, value: &Value) {
    let json = serde_json::to_vec(value).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let sum = hex::encode(sha2::Sha256::digest(&json));
    let object = format!("wsm-state-{name}");
    let mut child = Command::new("docker")
        .args(["config", "create", "--label", "wsm.state=1", "--label"])
        .arg(format!("wsm.state.name={name}"))
        .arg("--label")
        .arg(format!("wsm.state.data={data}"))
        .arg("--label")
        .arg(format!("wsm.state.sha256={sum}"))
        .args([&object, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"forged\n").unwrap();
    assert!(child.wait().unwrap().success(), "docker config create");
}

/// The config object as `docker config inspect` shows it (id, version, labels).
fn object(name: &str) -> String {
    docker(&["config", "inspect", &format!("wsm-state-{name}")])
}

#[test]
fn a_history_of_the_wrong_shape_is_reported_as_damaged_and_nothing_is_written_over_it() {
    let st = SafeStack::new("wsmshape");
    let n = st.name().to_string();
    let doc = format!("stack.{n}.revisions");
    st.deploy(&st.file("v1.yml", &three("1", "")), &[]).ok();
    let v2 = st.file("v2.yml", &three("2", ""));
    for forged in [
        json!({"stack": n, "revisions": "none yet"}),
        json!({"stack": n, "revisions": [{"rev": "one", "state": {}}]}),
        json!(["not", "a", "history"]),
    ] {
        docker(&["config", "rm", &format!("wsm-state-{doc}")]);
        forge(&doc, &forged);
        let (specs, kept) = (st.specs(), object(&doc));
        let removal = format!("docker config rm wsm-state-{doc}");

        let h = st.stack(&["history"]);
        assert_eq!(h.code, 1, "{forged}: {}{}", h.stdout, h.stderr);
        assert_eq!(h.stderr.lines().count(), 1, "one line: {}", h.stderr);
        assert!(
            h.stderr.contains(&format!("document {doc}")) && h.stderr.contains("damaged"),
            "{}",
            h.stderr
        );
        assert!(h.stderr.contains(&removal), "{}", h.stderr);

        let d = st.deploy(&v2, &[]);
        assert_eq!(d.code, 1, "{forged}: {}{}", d.stdout, d.stderr);
        assert!(d.stderr.contains(&removal), "{}", d.stderr);
        assert_eq!(st.specs(), specs, "no service changed");
        assert_eq!(object(&doc), kept, "the document is as forged");

        let r = st.stack(&["rollback"]);
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(&removal), "{}", r.stderr);
        assert_eq!(st.specs(), specs);
        assert_eq!(object(&doc), kept);
    }
}

/// The stack's config objects, by name.
fn configs(n: &str) -> BTreeSet<String> {
    docker(&[
        "config",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={n}"),
        "--format",
        "{{.Name}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// What the running task of web reads at /app.txt, if one runs.
fn web_reads(n: &str) -> Option<Vec<u8>> {
    let ids = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={n}_web"),
        "--filter",
        "status=running",
    ]);
    let id = ids.lines().next()?;
    let out = Command::new("docker")
        .args(["exec", id, "cat", "/app.txt"])
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

#[test]
fn rollback_to_crosses_config_changes_and_old_versions_go_when_their_revisions_rotate_out() {
    let st = SafeStack::new("wsmcfg");
    let n = st.name().to_string();
    let content = |v: u32| format!("version {v}\n\ttabbed, and no newline at the end: {v}");
    let file = |v: u32| {
        st.file(&format!("app-{v}.txt"), &content(v));
        st.file(
            &format!("v{v}.yml"),
            &(compose(&[(
                "web",
                IMAGE,
                "V=1",
                1,
                "    configs: [{source: app, target: /app.txt}]\n",
            )]) + &format!("configs:\n  app:\n    file: ./app-{v}.txt\n")),
        )
    };
    let mut made = Vec::new();
    for v in 1..=3 {
        st.deploy(&file(v), &[]).ok();
        let now = configs(&n);
        let new: Vec<String> = now.iter().filter(|c| !made.contains(*c)).cloned().collect();
        assert_eq!(new.len(), 1, "one new version per deploy: {now:?}");
        made.push(new[0].clone());
        assert_eq!(
            now,
            made.iter().cloned().collect(),
            "every kept revision's version stays"
        );
    }
    wait_for("web reading version 3", 60, || {
        web_reads(&n) == Some(content(3).into_bytes())
    });

    let r = st.stack(&["rollback", "--to", "1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    wait_for("web reading version 1 again, byte for byte", 60, || {
        web_reads(&n) == Some(content(1).into_bytes())
    });
    assert_eq!(configs(&n), made.iter().cloned().collect());

    // Two revisions kept: the rollback's (version 1) and this deploy's (version 4).
    let mut c = st.deploy_command(&file(4), &[]);
    let d: Run = c.env("WSM_KEEP_REVISIONS", "2").output().unwrap().into();
    d.ok();
    let now = configs(&n);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&made[0]), "revision 4 uses version 1: {now:?}");
    assert!(
        !now.contains(&made[1]) && !now.contains(&made[2]),
        "{now:?}"
    );
    let h = st.history();
    let revs: Vec<i64> = h.iter().map(|r| r["rev"].as_i64().unwrap()).collect();
    assert_eq!(revs, [4, 5], "{h:#?}");
}

/// Deploys v1, then v2, whose tasks stay `starting` for 30 s (their first health check), and
/// sends `signal` once `docker service inspect` shows web's new spec. Returns the stack and
/// what the interrupted deploy printed.
fn interrupted_deploy(prefix: &str, signal: i32) -> (SafeStack, Run) {
    let st = SafeStack::new(prefix);
    let n = st.name().to_string();
    st.deploy(&st.file("v1.yml", &three("1", "")), &[]).ok();
    let slow = "    healthcheck: {test: [\"CMD\", \"true\"], interval: 30s}\n";
    let v2 = st.file("v2.yml", &three("2", slow));
    let child = st.deploy_command(&v2, &[]).spawn().unwrap();
    let started = Instant::now();
    let web = format!("{n}_web");
    wait_for("web's new spec", 30, || {
        docker_quiet(&[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
            &web,
        ])
        .contains("V=2")
    });
    // SAFETY: kill() with the pid of our own child and a valid signal number.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let run: Run = finish_within(child, "the interrupted wsm", WSM_DEADLINE).into();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "it stopped on the signal, not at the health check"
    );
    (st, run)
}

/// The interrupted deploy is revision 2, holding the state it left, and the command it printed
/// returns every service to revision 1.
fn check_recorded_and_returned(st: &SafeStack, run: &Run) {
    let n = st.name();
    let back = format!("wsm stack rollback --to 1 {n}");
    assert!(
        run.stderr.contains(&back),
        "says how to return: {}",
        run.stderr
    );
    let h = st.history();
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[1]["rev"], 2);
    assert_eq!(h[1]["operation"], "deploy");
    let status = h[1]["status"].as_str().unwrap();
    assert!(status.starts_with("interrupted"), "{status}");
    assert!(status.contains(&back), "{status}");
    assert!(
        h[1]["changes"].as_array().unwrap().iter().any(|c| c
            .as_str()
            .unwrap()
            .starts_with(&format!("update {n}_web: "))),
        "{h:#?}"
    );
    let shown = st.stack(&["history"]);
    assert!(
        shown.ok().contains("deploy: interrupted"),
        "{}",
        shown.stdout
    );

    st.stack(&["rollback", "--to", "1"]).ok();
    for (name, spec) in st.specs() {
        assert_eq!(
            spec["TaskTemplate"]["ContainerSpec"]["Env"],
            json!(["V=1"]),
            "{name}"
        );
        assert!(
            spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"].is_null(),
            "{name}: {spec}"
        );
    }
}

#[test]
fn a_deploy_stopped_by_sigterm_is_recorded_as_interrupted_with_the_way_back() {
    let (st, run) = interrupted_deploy("wsmterm", libc::SIGTERM);
    assert_eq!(run.code, 143, "{}{}", run.stdout, run.stderr);
    check_recorded_and_returned(&st, &run);
}

#[test]
fn a_deploy_stopped_by_ctrl_c_is_recorded_as_interrupted_with_the_way_back() {
    let (st, run) = interrupted_deploy("wsmint", libc::SIGINT);
    assert_eq!(run.code, 130, "{}{}", run.stdout, run.stderr);
    check_recorded_and_returned(&st, &run);
}

/// Issue 23 item 6: `swarm doctor` lists the histories of removed stacks kept past
/// `WSM_HISTORY_KEEP_DAYS` and, with `--fix`, forgets them (`docker config ls` the witness).
#[test]
fn swarm_doctor_lists_and_forgets_the_histories_of_removed_stacks() {
    let st = SafeStack::new("wsmstale");
    let n = st.name().to_string();
    let doc = format!("stack.{n}.revisions");
    forge(&doc, &json!({"revisions": []}));
    std::thread::sleep(Duration::from_millis(1500));
    let doctor = |args: &[&str]| -> Run {
        let mut all = vec!["swarm", "doctor"];
        all.extend_from_slice(args);
        st.s.command(&all)
            .env("WSM_HISTORY_KEEP_DAYS", "0.00001")
            .output()
            .unwrap()
            .into()
    };
    let listed = doctor(&["--json"]);
    let report: Value = serde_json::from_str(listed.ok()).unwrap();
    let stacks: Vec<&str> = report["stale_histories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["stack"].as_str())
        .collect();
    assert!(stacks.contains(&n.as_str()), "{report}");
    // Kept for its time: the default 30 days lists nothing of it.
    let kept = st.s.wsm(&["--json", "swarm", "doctor"]);
    assert!(!kept.ok().contains(&n), "{}", kept.stdout);
    doctor(&["--fix", "--yes"]).ok();
    let left = docker(&["config", "ls", "--format", "{{.Name}}"]);
    assert!(!left.contains(&format!("wsm-state-{doc}")), "{left}");
}
