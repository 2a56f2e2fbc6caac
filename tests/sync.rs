//! Issue 24, git-backed stacks, on the real engine with a real git repository (a bare one,
//! served over `file://`) and the Docker CLI as witness: a first sync deploys the branch's
//! commit with `.env` and `env_file` read inside the checkout, a second commit updates it and
//! `stack history` names both commits, a sync with nothing new changes no service version, a
//! commit whose service cannot start is rolled back to the last good commit, is not tried again
//! until a newer one comes, and reaches the webhook (a real HTTP server this test runs); bad
//! input changes nothing.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use common::synced::{Repo, Synced};
use common::webhook::Webhook;
use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// A compose file of one sleeping service `web` (or one that exits 1 when `broken`) whose `V`
/// comes from `.env` and `W` from `web.env`.
fn compose(broken: bool) -> String {
    let command = if broken {
        r#"["sh", "-c", "sleep 1; exit 1"]"#
    } else {
        r#"["sleep", "3600"]"#
    };
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {command}\n    env_file: web.env\n    environment: [\"V=${{V}}\"]\n    stop_grace_period: 1s\n"
    )
}

fn env_of(svc: &Value) -> Vec<String> {
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_branch_is_deployed_commit_by_commit_and_a_bad_commit_is_rolled_back() {
    require_images();
    let repo = Repo::new();
    let hook = Webhook::start(false);
    let st = Synced::new("sy");
    st.s.set("WSM_NOTIFY", &hook.url("/hook"));
    st.s.set("WSM_DEPLOY_TIMEOUT", "60");
    let first = repo.commit(
        &[
            ("compose.yaml", &compose(false)),
            (".env", "V=one\n"),
            ("web.env", "W=from-the-env-file\n"),
        ],
        "First web",
    );
    st.wsm(&["sync", "add", st.name(), "--repo", &repo.url()])
        .ok();
    // Nothing is deployed by `add`.
    let label = format!("label=com.docker.stack.namespace={}", st.name());
    assert!(docker(&["service", "ls", "-q", "--filter", &label])
        .trim()
        .is_empty());

    let r = st.wsm(&["sync", "now", st.name()]);
    r.ok();
    assert!(
        r.stdout.contains(&format!("{first} First web deployed")),
        "{}",
        r.stdout
    );
    let web = st.web();
    let env = env_of(&web);
    assert!(env.contains(&"V=one".to_string()), "{env:?}");
    assert!(env.contains(&"W=from-the-env-file".to_string()), "{env:?}");

    // Nothing new: no service version moves.
    let version = web["Version"]["Index"].clone();
    let r = st.wsm(&["sync", "now", st.name()]);
    r.ok();
    assert!(r.stdout.contains("nothing new"), "{}", r.stdout);
    assert_eq!(st.web()["Version"]["Index"], version);

    let second = repo.commit(&[(".env", "V=two\n")], "Second: V is two");
    st.wsm(&["sync", "now", st.name()]).ok();
    assert!(env_of(&st.web()).contains(&"V=two".to_string()));
    let history = st.wsm(&["stack", "history", st.name()]);
    let history = history.ok();
    assert!(
        history.contains(&format!("sync {first} First web: deployed")),
        "{history}"
    );
    assert!(
        history.contains(&format!("sync {second} Second: V is two: deployed")),
        "{history}"
    );

    // A commit whose service cannot start: rolled back to the last good commit.
    let third = repo.commit(
        &[("compose.yaml", &compose(true)), (".env", "V=three\n")],
        "Third: broken",
    );
    let r = st.wsm(&["sync", "now", st.name()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("{third} Third: broken failed")),
        "{}",
        r.stdout
    );
    let web = st.web();
    assert!(
        env_of(&web).contains(&"V=two".to_string()),
        "{:?}",
        env_of(&web)
    );
    assert_eq!(
        web["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        serde_json::json!(["sleep", "3600"])
    );
    let row = st.ls();
    assert_eq!(row["deployed"]["commit"].as_str().unwrap()[..7], second);
    assert_eq!(row["last"]["commit"].as_str().unwrap()[..7], third);
    assert_eq!(row["last"]["ok"], false);
    assert!(
        row["last"]["result"]
            .as_str()
            .unwrap()
            .starts_with("failed:"),
        "{row}"
    );
    // The webhook heard both outcomes, the failure naming the commit.
    let syncs = hook.events("sync");
    assert!(
        syncs
            .iter()
            .any(|e| e["ok"] == false && e["commit"].as_str().unwrap_or("").starts_with(&third)),
        "{syncs:?}"
    );
    assert!(syncs.iter().any(|e| e["ok"] == true), "{syncs:?}");
    let rollbacks = hook.events("rollback");
    assert!(
        rollbacks
            .iter()
            .any(|e| e["ok"] == true && e["stack"] == st.name()),
        "{rollbacks:?}"
    );

    // The failed commit is not tried again: nothing changes until a newer commit.
    let version = web["Version"]["Index"].clone();
    let r = st.wsm(&["sync", "now", st.name()]);
    r.ok();
    assert!(r.stdout.contains("failed before"), "{}", r.stdout);
    assert_eq!(st.web()["Version"]["Index"], version);
}

#[test]
fn bad_input_is_refused_in_one_line_and_stores_nothing() {
    let repo = Repo::new();
    repo.commit(&[("compose.yaml", &compose(false))], "Only commit");
    let st = Synced::new("syb");
    for (args, says) in [
        (vec!["sync", "add", st.name()], "--repo"),
        (
            vec![
                "sync",
                "add",
                st.name(),
                "--repo",
                "file:///nonexistent/repo.git",
            ],
            "nonexistent",
        ),
        (
            vec![
                "sync",
                "add",
                st.name(),
                "--repo",
                &repo.url(),
                "--branch",
                "nope",
            ],
            "no branch nope",
        ),
        (
            vec![
                "sync",
                "add",
                st.name(),
                "--repo",
                &repo.url(),
                "--path",
                "../up",
            ],
            "inside the repository",
        ),
        (vec!["sync", "now", st.name()], "follows no repository"),
        (vec!["sync", "rm", st.name()], "follows no repository"),
    ] {
        let r = st.wsm(&args);
        assert_eq!(r.code, 2, "{args:?}: {}\n{}", r.stdout, r.stderr);
        let error: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(error.len(), 1, "{}", r.stderr);
        assert!(error[0].contains(says), "{args:?}: {}", r.stderr);
    }
    assert_eq!(st.ls(), Value::Null);
    let stored = docker_quiet(&[
        "config",
        "ls",
        "-q",
        "--filter",
        &format!("name=wsm-state-sync.{}", st.name()),
    ]);
    assert!(stored.trim().is_empty(), "{stored}");
}

#[test]
fn a_scheduled_sync_is_a_runner_job_and_rm_takes_it_away() {
    let repo = Repo::new();
    repo.commit(&[("compose.yaml", &compose(false))], "Only commit");
    let st = Synced::new("sys");
    let r = st.wsm(&[
        "sync",
        "add",
        st.name(),
        "--repo",
        &repo.url(),
        "--every",
        "5m",
    ]);
    r.ok();
    let job = format!("sync-{}", st.name());
    assert!(r.stdout.contains(&job), "{}", r.stdout);
    let jobs: Vec<Value> = serde_json::from_str(st.wsm(&["jobs", "ls", "--json"]).ok()).unwrap();
    let row = jobs
        .iter()
        .find(|j| j["name"] == job.as_str())
        .expect("the sync's job");
    assert_eq!(row["command"], format!("wsm sync now {}", st.name()));
    assert_eq!(st.ls()["every"], "5m");
    // Added twice without --replace: refused, the first definition kept.
    let again = st.wsm(&["sync", "add", st.name(), "--repo", &repo.url()]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    st.wsm(&["sync", "rm", st.name()]).ok();
    assert_eq!(st.ls(), Value::Null);
    let jobs: Vec<Value> = serde_json::from_str(st.wsm(&["jobs", "ls", "--json"]).ok()).unwrap();
    assert!(jobs.iter().all(|j| j["name"] != job.as_str()));
}

#[test]
fn a_commit_that_reads_files_outside_its_repository_is_refused_and_recorded() {
    let repo = Repo::new();
    let st = Synced::new("syo");
    // `..` out of the checkout, then a link out of it: neither file is read into a service.
    let escape = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    env_file: ../../../../../../../../etc/hostname\n"
    );
    repo.commit(
        &[("compose.yaml", &escape)],
        "Reads a file of the syncing machine",
    );
    st.wsm(&["sync", "add", st.name(), "--repo", &repo.url()])
        .ok();
    let label = format!("label=com.docker.stack.namespace={}", st.name());
    for round in 0..2 {
        let r = st.wsm(&["sync", "now", st.name()]);
        assert_eq!(r.code, 1, "round {round}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("is outside the repository's checkout"),
            "round {round}: {}",
            r.stdout
        );
        assert!(docker(&["service", "ls", "-q", "--filter", &label])
            .trim()
            .is_empty());
        let row = st.ls();
        assert_eq!(row["last"]["ok"], false, "{row}");
        assert!(row["deployed"].is_null(), "{row}");
        if round == 0 {
            let work = repo.dir.path().join("work");
            std::os::unix::fs::symlink("/etc/hostname", work.join("web.env")).unwrap();
            let linked = format!(
                "services:\n  web:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    env_file: web.env\n"
            );
            repo.commit(&[("compose.yaml", &linked)], "Reads it through a link");
        }
    }
}

/// `tests/fixtures/git-http/serve.py`: git's `http-backend` behind a token check; killed on drop.
struct GitHttp {
    child: std::process::Child,
    port: u16,
}

impl GitHttp {
    fn start(root: &Path, token: &str) -> Self {
        let mut child = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/git-http/serve.py"
        ))
        .arg(root)
        .arg(token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server's port");
        GitHttp { child, port }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_token_reaches_the_server_as_a_header_and_never_shows() {
    require_images();
    let repo = Repo::new();
    repo.commit(
        &[
            ("compose.yaml", &compose(false)),
            (".env", "V=http\n"),
            ("web.env", "W=1\n"),
        ],
        "Over HTTP",
    );
    let token = "tok-5ecr3t-value-0451";
    let server = GitHttp::start(repo.dir.path(), token);
    let url = format!("http://127.0.0.1:{}/repo.git", server.port);
    let st = Synced::new("syt");
    st.s.set("WSM_DEPLOY_TIMEOUT", "60");
    // Without the token the server refuses: add says so in one line and stores nothing.
    let refused = st.wsm(&["sync", "add", st.name(), "--repo", &url]);
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert_eq!(st.ls(), Value::Null);
    let file = st.s.dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let file = file.to_str().unwrap();
    let add = st.wsm(&[
        "sync",
        "add",
        st.name(),
        "--repo",
        &url,
        "--token-file",
        file,
    ]);
    add.ok();
    let now = st.wsm(&["sync", "now", st.name()]);
    now.ok();
    assert!(env_of(&st.web()).contains(&"V=http".to_string()));
    let ls = st.wsm(&["sync", "ls", "--json"]);
    for out in [
        &add.stdout,
        &add.stderr,
        &now.stdout,
        &now.stderr,
        &ls.stdout,
    ] {
        assert!(!out.contains(token), "the token shows: {out}");
    }
}
