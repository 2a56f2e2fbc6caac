//! Issue 29, `wsm serve`, against the real engine: the page in headless Chromium (each stack
//! and service in the DOM, a `docker service scale` arriving live without a reload, a
//! screenshot kept under target/serve-artifacts/, no console errors); over HTTP the token off
//! loopback, `/api/…` equal to the commands' `--json`, and `/metrics` parsed by the Python
//! `prometheus_client` OpenMetrics parser (Debian's python3-prometheus-client) with numbers
//! equal to `docker service ls`.

#[path = "serve/cdp.rs"]
mod cdp;
#[path = "common/mod.rs"]
mod common;
#[path = "safedeploy/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::synced::{Repo, Synced};
use common::*;
use support::*;

/// A `wsm serve` of the test's own, killed in `Drop`; its stderr kept.
struct Serve {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `wsm serve <args…>` and waits until it says where it listens.
    fn start(s: &TestStack, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut cmd = s.command(&all);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                panic!("wsm serve ended: {}", stderr.lock().unwrap());
            };
            stderr.lock().unwrap().push_str(&(line.clone() + "\n"));
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim_end_matches('/').to_string();
            }
        };
        let kept = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Serve {
            child,
            addr,
            stderr,
        }
    }

    /// GET with extra header lines; (status, headers, body).
    fn get(&self, path: &str, headers: &str) -> (u16, String, String) {
        self.request("GET", path, headers, "")
    }

    /// A request with extra header lines and a body; (status, headers, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (u16, String, String) {
        let mut c = TcpStream::connect(&self.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_string(), body.to_string())
    }

    /// The JSON at `path`, once it is published.
    fn json(&self, path: &str) -> Value {
        self.json_with(path, "")
    }

    /// The JSON at `path` asked with extra header lines, once it is published.
    fn json_with(&self, path: &str, headers: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _, body) = self.get(path, headers);
            if status == 200 {
                return serde_json::from_str(&body).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{path} never published ({status})"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stack of two sleeping services, `web` with `web` replicas and `api` with 1 mounting the
/// named volume `data`, deployed; its backups go to its own folder.
fn deployed(prefix: &str, web: u32) -> SafeStack {
    require_images();
    let s = SafeStack::new(prefix);
    let backups = s.s.dir.path().join("backups");
    s.s.set("WSM_BACKUP_DIR", backups.to_str().unwrap());
    let mount = "    volumes: [\"data:/data\"]\n";
    let text = compose(&[
        ("web", IMAGE, "V=1", web, ""),
        ("api", IMAGE, "V=1", 1, mount),
    ]);
    let file = s.file("stack.yml", &(text + "volumes:\n  data: {}\n"));
    s.deploy(&file, &[]).ok();
    s
}

/// The command's `--json` document.
fn command_json(s: &SafeStack, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(s.s.wsm(&all).ok()).unwrap()
}

/// `/metrics` parsed by prometheus_client's OpenMetrics parser: [name, labels, value] rows.
fn parsed_metrics(text: &str) -> Vec<(String, Value, f64)> {
    let mut py = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, json\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             out = []\n\
             for f in text_string_to_metric_families(sys.stdin.read()):\n\
             \x20   for s in f.samples: out.append([s.name, s.labels, s.value])\n\
             print(json.dumps(out))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (python3-prometheus-client)");
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    rows
}

#[test]
fn api_equals_json_and_metrics_match_docker() {
    let s = deployed("srvapi", 2);
    let name = s.name().to_string();
    s.stack(&["backup"]).ok();
    let srv = Serve::start(&s.s, &["--listen", "127.0.0.1:0"], &[]);
    // The documents are those the commands print with --json.
    for (path, args) in [
        (
            format!("/api/stacks/{name}/services"),
            vec!["stack", "services", name.as_str()],
        ),
        (
            format!("/api/stacks/{name}/history"),
            vec!["stack", "history", name.as_str()],
        ),
        ("/api/swarms".to_string(), vec!["swarm", "list"]),
    ] {
        let want = command_json(&s, &args);
        // A document published before the stack settled is replaced at the next event.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = srv.json(&path);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} differs from `wsm --json {}`:\n{got:#}\n{want:#}",
                args.join(" ")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let stacks = srv.json("/api/stacks");
    assert!(
        stacks
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == name && r["services"] == 2),
        "{stacks}"
    );

    // /metrics parses, and its replicas are `docker service ls`'s.
    let (status, head, text) = srv.get("/metrics", "");
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let rows = parsed_metrics(&text);
    let label = format!("label=com.docker.stack.namespace={name}");
    let listed = docker(&[
        "service",
        "ls",
        "--filter",
        &label,
        "--format",
        "{{.Name}} {{.Replicas}}",
    ]);
    let mut seen = 0;
    for line in listed.lines() {
        let (service, replicas) = line.split_once(' ').unwrap();
        let (running, wanted) = replicas.split_once('/').unwrap();
        for (metric, want) in [
            ("wsm_service_replicas_running", running),
            ("wsm_service_replicas_wanted", wanted),
        ] {
            let got = rows
                .iter()
                .find(|(n, l, _)| n == metric && l["stack"] == name && l["service"] == service)
                .unwrap_or_else(|| panic!("no {metric} for {service}:\n{text}"));
            assert_eq!(got.2, want.parse::<f64>().unwrap(), "{metric} {service}");
            seen += 1;
        }
    }
    assert_eq!(seen, 4, "{listed}");
    let streams = rows
        .iter()
        .find(|(n, _, _)| n == "wsm_serve_engine_event_streams")
        .unwrap();
    assert_eq!(streams.2, 1.0);
    assert!(rows
        .iter()
        .any(|(n, l, _)| n == "wsm_deploys_total" && l["stack"] == name));
}

/// A non-loopback address of this machine.
fn outside_ip() -> String {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("a non-loopback IPv4 address")
        .to_string()
}

#[test]
fn token_required_off_loopback() {
    let s = SafeStack::new("srvtok");
    let ip = outside_ip();
    // Without a token: refused in one line, exit 2, nothing listens.
    let port = free_port();
    let r = s.s.wsm(&["serve", "--listen", &format!("{ip}:{port}")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error: ") && r.stderr.contains("needs a token"),
        "{}",
        r.stderr
    );
    assert!(TcpStream::connect((ip.as_str(), port)).is_err());

    let token = "s3cret-token-of-the-serve-test";
    let file = s.file("token", &format!("{token}\n"));
    let srv = Serve::start(
        &s.s,
        &["--listen", &format!("{ip}:0"), "--token-file", &file],
        &[],
    );
    assert!(srv.addr.starts_with(&ip), "{}", srv.addr);
    for path in ["/", "/api/stacks", "/metrics", "/events?page=/"] {
        let (status, _, _) = srv.get(path, "");
        assert_eq!(status, 401, "{path} without a token");
        let (status, _, _) = srv.get(path, "Authorization: Bearer wrong-token-0123456789\r\n");
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let swarms = srv.json_with("/api/swarms", &bearer);
    assert_eq!(swarms, command_json(&s, &["swarm", "list"]));
    let (status, _, _) = srv.get("/metrics", &bearer);
    assert_eq!(status, 200);
    // `?token=` once: a cookie, and the same address without the token.
    let (status, head, _) = srv.get(&format!("/api/swarms?token={token}"), "");
    assert_eq!(status, 303, "{head}");
    let lower = head.to_lowercase();
    assert!(lower.contains("\r\nlocation: /api/swarms\r\n"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    let (status, _, body) = srv.get("/api/swarms", &format!("Cookie: {cookie}\r\n"));
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), swarms);
    let (status, _, _) = srv.get(
        "/api/swarms",
        "Cookie: wsm_token=wrong-token-0123456789\r\n",
    );
    assert_eq!(status, 401);
    // The token is in no output, and not in wsm's argv (`ps`).
    let said = srv.stderr.lock().unwrap().clone();
    assert!(!said.contains(token), "{said}");
    let argv = std::fs::read(format!("/proc/{}/cmdline", srv.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&argv).contains(token));

    // From the environment, and asked on loopback too once a token is given.
    let env_token = "another-token-from-the-environment";
    let srv = Serve::start(
        &s.s,
        &["--listen", "127.0.0.1:0"],
        &[("WSM_SERVE_TOKEN", env_token)],
    );
    let (status, _, _) = srv.get("/api/swarms", "");
    assert_eq!(status, 401);
    srv.json_with(
        "/api/swarms",
        &format!("Authorization: Bearer {env_token}\r\n"),
    );
}

/// Where the browser test leaves its screenshot and what it measured.
fn artifacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/serve-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn browser_sees_stacks_and_a_scale_live() {
    let s = deployed("srvweb", 1);
    let name = s.name().to_string();
    let srv = Serve::start(&s.s, &["--listen", "127.0.0.1:0"], &[]);
    // The pages are there once the first documents are published.
    srv.json(&format!("/api/stacks/{name}/services"));
    let mut b = cdp::Browser::start();
    b.open(&format!("http://{}/", srv.addr));
    let sel = format!("section.stack[data-stack=\"{name}\"]");
    assert_eq!(b.eval(&format!("!!document.querySelector('{sel}')")), true);
    let services = b.eval(&format!(
        "[...document.querySelectorAll('{sel} tr.service')].map(e => e.dataset.service)"
    ));
    let mut want: Vec<String> = s.s.services();
    want.sort();
    assert_eq!(services, serde_json::json!(want), "the overview's services");
    assert_eq!(want.len(), 2);

    // The stack's page, live: a scale arrives without a reload.
    let page = format!("http://{}/stacks/{name}", srv.addr);
    b.open(&page);
    b.eval("window.__kept = 'this page was not reloaded'");
    let web = format!("{name}_web");
    let running = format!(
        "document.querySelectorAll('.task[data-service=\"{web}\"][data-state=\"running\"][data-desired=\"running\"]').length"
    );
    assert_eq!(b.eval(&running), 1);
    docker(&["service", "scale", "--detach", &format!("{web}=2")]);
    // The engine's word (the Docker CLI) and the page's, each noted when first seen.
    let (mut engine_at, mut page_at) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(90);
    while engine_at.is_none() || page_at.is_none() {
        assert!(
            Instant::now() < deadline,
            "the page never showed 2 running tasks of {web}"
        );
        if page_at.is_none() && b.eval(&running) == 2 {
            page_at = Some(Instant::now());
        }
        if engine_at.is_none() {
            let ps = docker(&[
                "service",
                "ps",
                &web,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.CurrentState}}",
            ]);
            if ps.lines().filter(|l| l.starts_with("Running")).count() == 2 {
                engine_at = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.eval("window.__kept"), "this page was not reloaded");
    let (e, p) = (engine_at.unwrap(), page_at.unwrap());
    let lag = if p > e {
        (p - e).as_secs_f64()
    } else {
        -(e - p).as_secs_f64()
    };
    let note = format!(
        "the page showed the second running task {lag:.2} s after `docker service ps` did\n"
    );
    eprint!("{note}");
    std::fs::write(artifacts().join("live-lag.txt"), &note).unwrap();
    let badge = b.eval("document.querySelector('.stack .badge').textContent");
    assert_eq!(badge, "running");

    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(artifacts().join("stack-page.png"), &png).unwrap();
    b.call("Runtime.evaluate", serde_json::json!({ "expression": "1" }));
    assert!(b.errors.is_empty(), "console errors: {:?}", b.errors);
}

/// A compose file of one sleeping service `web` whose `V` is `v`.
fn synced_compose(v: &str) -> String {
    format!("services:\n  web:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    environment: [\"V={v}\"]\n    stop_grace_period: 1s\n")
}

/// HMAC-SHA256 of `body` under `secret`, in hex, as GitHub and Gitea sign.
fn signature(secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, body.as_bytes()).as_ref())
}

/// The synced stack's revisions made by syncs: their operations.
fn sync_revisions(st: &Synced) -> Vec<String> {
    let revs: Vec<Value> =
        serde_json::from_str(st.wsm(&["--json", "stack", "history", st.name()]).ok()).unwrap();
    revs.iter()
        .filter_map(|r| r["operation"].as_str())
        .filter(|o| o.starts_with("sync "))
        .map(String::from)
        .collect()
}

#[test]
fn webhooks_are_verified_and_pushes_collapse() {
    require_images();
    let repo = Repo::new();
    let st = Synced::new("srvhook");
    st.s.set("WSM_DEPLOY_TIMEOUT", "60");
    let name = st.name().to_string();
    repo.commit(&[("compose.yaml", &synced_compose("one"))], "one");
    st.wsm(&["sync", "add", &name, "--repo", &repo.url()]).ok();
    st.wsm(&["sync", "now", &name]).ok();
    let secret = "hook-secret-of-the-serve-test";
    let hooks = tempfile::tempdir().unwrap();
    std::fs::write(hooks.path().join(format!("wsm-hook-sync-{name}")), secret).unwrap();
    let dir = hooks.path().to_str().unwrap();
    let srv = Serve::start(
        &st.s,
        &["--listen", "127.0.0.1:0"],
        &[("WSM_HOOKS_DIR", dir)],
    );
    let web = format!("{name}_web");
    let version = || docker(&["service", "inspect", "--format", "{{.Version.Index}}", &web]);

    // Bad or missing signatures: refused, and nothing runs.
    repo.commit(&[("compose.yaml", &synced_compose("two"))], "two");
    let before = version();
    let body = r#"{"ref":"refs/heads/main"}"#;
    let path = format!("/hooks/sync/{name}");
    let bad = signature("another-secret", body);
    for (headers, want) in [
        (String::new(), 401),
        (format!("X-Hub-Signature-256: sha256={bad}\r\n"), 403),
        ("X-Hub-Signature-256: sha256=zz\r\n".to_string(), 403),
        (format!("X-Gitea-Signature: {bad}\r\n"), 403),
        ("X-Gitlab-Token: another-secret\r\n".to_string(), 403),
    ] {
        let (status, _, _) = srv.request("POST", &path, &headers, body);
        assert_eq!(status, want, "{headers}");
    }
    let good = format!(
        "X-Hub-Signature-256: sha256={}\r\n",
        signature(secret, body)
    );
    let (status, _, _) = srv.request("POST", "/hooks/sync/nosuchstack", &good, body);
    assert_eq!(status, 404);
    // Signed for another body: the signature covers the bytes.
    let (status, _, _) = srv.request("POST", &path, &good, r#"{"ref":"refs/heads/other"}"#);
    assert_eq!(status, 403);
    // What a queued sync would have done takes well over this; nothing may have started.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(version(), before, "a refused webhook changed the service");
    assert_eq!(sync_revisions(&st).len(), 1);

    // A good one: one sync, of the new commit.
    let (status, _, _) = srv.request("POST", &path, &good, body);
    assert_eq!(status, 202);
    wait_for("the webhook's sync", 90, || sync_revisions(&st).len() == 2);
    let env = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        &web,
    ]);
    assert!(env.contains("V=two"), "{env}");

    // Three quick pushes, each told by another forge's way: at most two syncs.
    for (v, headers) in [
        (
            "three",
            format!("X-Gitea-Signature: {}\r\n", signature(secret, body)),
        ),
        ("four", format!("X-Gitlab-Token: {secret}\r\n")),
        ("five", good.clone()),
    ] {
        repo.commit(&[("compose.yaml", &synced_compose(v))], v);
        let (status, _, _) = srv.request("POST", &path, &headers, body);
        assert_eq!(status, 202, "{headers}");
    }
    wait_for("the last push deployed", 120, || {
        srv.stderr.lock().unwrap().contains(" five deployed.")
    });
    // Let a third sync show itself if the collapse failed (it would find nothing new to deploy,
    // so count the syncs wsm serve ran, not only the revisions).
    std::thread::sleep(Duration::from_secs(5));
    let said = srv.stderr.lock().unwrap().clone();
    let runs = said
        .lines()
        .filter(|l| l.starts_with("wsm serve: webhook:"))
        .count();
    assert!(
        (2..=3).contains(&runs),
        "one sync for the first push, then one or two:\n{said}"
    );
    let revs = sync_revisions(&st);
    assert!((3..=4).contains(&revs.len()), "{revs:?}");
    assert!(!said.contains(secret), "{said}");
}
