//! Jobs across a leader change, on a swarm of three managers in netns hosts (each its own
//! dockerd): the runner image built from this wsm binary and loaded on every host, the runner
//! on every manager, a job every 3 s. Leadership as wsm reports it matches `docker node ls`.
//! The leader's dockerd is killed; through another manager, the job's definition is still
//! there, the next slots run on the new leader, and the runs kept in the swarm show every slot
//! once: run, or reported missed.
//!
//! On the same swarm, a remote stack's shared config: the file host 1 kept before
//! (`/etc/wavelet-stack/<stack>`) moves into the swarm's store on first read; of two
//! `edit-config` sessions racing, the second is told and its text kept locally; after the
//! leader's loss the config reads through another manager. A Wavelet stack on it, backed up
//! twice over SSH: its dump equals a quiesced copy of the node's /db, the first kept as `.backup`.
//!
//! The keeper on the same swarm (issue 24): a stack synced in the foreground from a bare
//! repository served over SSH by a netns host; and a stack the runner syncs every few seconds
//! from a repository in its volume, whose next commit, pushed after the leader's dockerd is
//! killed, is deployed by the new leader's runner, each commit exactly once in `stack history`.
//!
//! The page beside the runner (`jobs install --serve`, issue 29), on a single-node swarm of its
//! own netns host: curl on the host's address gets 401 without the token and, with the token
//! read inside the container, a page listing a stack deployed there; the token is in neither
//! the service's args nor its env; a webhook whose secret (`wsm-hook-sync-…`) existed at the
//! install is queued (202) with it, refused (403) without it, and a hook with no secret is not
//! there (404); a re-install keeps the token; `jobs status` shows the page; a re-install
//! without `--serve` removes it, as `jobs uninstall` does the rest.

mod common;

use std::process::{Command, Stdio};
use std::time::SystemTime;

use common::hosts::*;
use common::store::*;
use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost:5000/wsm-runner:hosts";

fn socket(h: &Host) -> String {
    format!("unix:///run/wsm-hosts/{}/docker.sock", h.name)
}

/// wsm against one host's engine.
fn wsm_on(h: &Host, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_wsm"))
        .args(args)
        .env("DOCKER_HOST", socket(h))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
        .into()
}

/// The leader's hostname as `docker node ls` on `h` shows it.
fn docker_leader(h: &Host) -> String {
    docker_on(
        &h.name,
        &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
    )
    .lines()
    .find(|l| l.ends_with(" Leader"))
    .map(|l| l.split(' ').next().unwrap().to_string())
    .unwrap_or_default()
}

fn runs_on(h: &Host, job: &str) -> Option<Value> {
    store_doc(&["-H", &socket(h)], &format!("job-runs.{job}"))
}

/// The successful runs: (slot, hostname).
fn ok_runs(runs: &Value) -> Vec<(i64, String)> {
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| {
            (
                r["slot"].as_i64().unwrap(),
                r["hostname"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Builds the runner image from this wsm binary once for the binary's tests.
fn build_runner_image() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let r = Command::new(env!("CARGO_BIN_EXE_wsm"))
            .args(["jobs", "install", "--no-deploy", "--image", IMAGE])
            .args(["--base", "localhost:5000/wavelet-stack-base:latest"])
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    });
}

/// `jobs install` of the loaded runner image through `h`'s engine, with `more` arguments.
fn install_runner(h: &Host, more: &[&str]) -> Run {
    let mut args = vec!["jobs", "install", "--no-build", "--image", IMAGE];
    args.extend_from_slice(&["--socket", "/run/wsm-hosts/{{.Node.Hostname}}/docker.sock"]);
    args.extend_from_slice(more);
    wsm_on(h, &args)
}

/// `curl` of `url`: (HTTP status, body).
fn curl(url: &str, headers: &[&str]) -> (u16, String) {
    curl_with(url, headers, &[])
}

/// `curl` with more of its arguments (`-d BODY` for a POST).
fn curl_with(url: &str, headers: &[&str], more: &[&str]) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}"]);
    c.args(more);
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn the_page_beside_the_runner_needs_its_token_and_lists_the_stacks() {
    require_images();
    let bed = Bed::new();
    build_runner_image();
    let host = Host::up("wjs", &bed.public_key());
    load_images(
        &[&host],
        &[IMAGE, "localhost:5000/wavelet-stack-node:latest"],
    );
    form_swarm(&host, &[], "manager");
    // A stack deployed there, for the page to list.
    let stack = unique("wjpage");
    let compose = bed.path("compose.yaml");
    std::fs::write(&compose, kept_compose("page")).unwrap();
    docker_on(
        &host.name,
        &["stack", "deploy", "-c", compose.to_str().unwrap(), &stack],
    );
    let _stack_gone = StackGone(host.name.clone(), stack.clone());

    let port = "18080";
    let install = || {
        let r = install_runner(&host, &["--serve", "--serve-port", port]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    // Bad input: one line, exit 2, nothing made.
    let bad = install_runner(&host, &["--serve", "--serve-port", "70000"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.starts_with("error: --serve-port"),
        "{}",
        bad.stderr
    );
    let bad = install_runner(&host, &["--serve-token-secret", "t"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad = install_runner(
        &host,
        &["--serve", "--serve-token-secret", "wsm-hook-sync-t"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let services = || docker_on(&host.name, &["service", "ls", "--format", "{{.Name}}"]);
    assert!(!services().contains("wsm-jobs_"), "{}", services());

    // A webhook's secret made before the install: the page gets it mounted.
    let hook_file = bed.path("hook-secret");
    std::fs::write(&hook_file, "hook-secret-value\n").unwrap();
    docker_on(
        &host.name,
        &[
            "secret",
            "create",
            "wsm-hook-sync-wjhook",
            hook_file.to_str().unwrap(),
        ],
    );
    let first = install();
    let container = || {
        docker_on_quiet(
            &host.name,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=wsm-jobs_serve",
            ],
        )
        .trim()
        .to_string()
    };
    let token = || {
        let c = container();
        assert!(!c.is_empty(), "no container of wsm-jobs_serve");
        docker_on(
            &host.name,
            &["exec", &c, "cat", "/run/secrets/wsm-serve-token"],
        )
        .trim()
        .to_string()
    };
    let secret = token();
    assert_eq!(secret.len(), 64, "a token of 64 hex digits");
    let url = format!("http://{}:{port}/", host.ip());
    wait_for("the page answers", 120, || curl(&url, &[]).0 == 401);
    let bearer = format!("Authorization: Bearer {secret}");
    assert_eq!(
        curl(&url, &["Authorization: Bearer not-the-token-at-all"]).0,
        401
    );
    let mut page = (0, String::new());
    wait_for("the page lists the stack", 120, || {
        page = curl(&url, &[&bearer]);
        page.0 == 200 && page.1.contains(&stack)
    });
    // The token is in no argument, no variable, no output.
    let spec = docker_on(
        &host.name,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec}}",
            "wsm-jobs_serve",
        ],
    );
    assert!(spec.contains("--token-file"), "{spec}");
    assert!(
        !spec.contains(&secret),
        "the token shows in the service: {spec}"
    );
    assert!(!first.stdout.contains(&secret) && !first.stderr.contains(&secret));
    // Its webhook answers: queued with the secret (GitLab's form), refused without it; a hook
    // with no secret mounted is not there (what every hook was before the secrets were mounted).
    let hook = |name: &str, header: &str| {
        let url = format!("http://{}:{port}/hooks/sync/{name}", host.ip());
        curl_with(&url, &[header], &["-X", "POST", "-d", "{}"]).0
    };
    assert_eq!(hook("wjhook", "X-Gitlab-Token: hook-secret-value"), 202);
    assert_eq!(hook("wjhook", "X-Gitlab-Token: not-the-secret"), 403);
    assert_eq!(hook("nohook", "X-Gitlab-Token: hook-secret-value"), 404);
    assert!(
        !first.stderr.contains("hook-secret-value"),
        "{}",
        first.stderr
    );
    let status = wsm_on(&host, &["jobs", "status", "--json"]);
    let doc: Value = serde_json::from_str(&status.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", status.stdout, status.stderr));
    assert_eq!(doc["serve"]["port"], 18080, "{doc}");
    assert_eq!(doc["serve"]["token_secret"], "wsm-serve-token", "{doc}");
    assert!(!status.stdout.contains(&secret));

    // A re-install keeps the token.
    install();
    assert_eq!(token(), secret);
    wait_for("the page after the re-install", 120, || {
        curl(&url, &[&bearer]).0 == 200
    });

    // A re-install without --serve removes the page and keeps the runner.
    let r = install_runner(&host, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names = services();
    assert!(
        names.contains("wsm-jobs_runner") && !names.contains("wsm-jobs_serve"),
        "{names}"
    );

    // Uninstalled, the runner is gone; the token's secret stays for the next install.
    let r = wsm_on(&host, &["jobs", "uninstall"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!services().contains("wsm-jobs_"), "{}", services());
    let secrets = docker_on(&host.name, &["secret", "ls", "--format", "{{.Name}}"]);
    assert!(secrets.lines().any(|l| l == "wsm-serve-token"), "{secrets}");
}

#[test]
fn a_job_follows_the_leader_and_every_slot_runs_once_or_is_reported_missed() {
    require_images();
    let bed = Bed::new();
    build_runner_image();
    let hosts: Vec<Host> = ["wjm1", "wjm2", "wjm3"]
        .iter()
        .map(|p| Host::up(p, &bed.public_key()))
        .collect();
    let all: Vec<&Host> = hosts.iter().collect();
    let mut images = vec![IMAGE];
    images.extend_from_slice(IMAGES);
    load_images(&all, &images);
    form_swarm(&hosts[0], &all[1..], "manager");

    let r = install_runner(&hosts[0], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        "print(`ran on ${docker::connect(\"\").leadership().leader_hostname}`);",
    )
    .unwrap();
    let job = unique("wjob");
    let r = wsm_on(
        &hosts[0],
        &[
            "jobs",
            "add",
            "--every",
            "3s",
            "--script",
            script.path().to_str().unwrap(),
            &job,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    // A stack the runner keeps in step with a repository kept in every manager's runner volume.
    let kept = KeptRepo::new(&hosts);
    let kept_stack = unique("wjkept");
    kept.commit("1", "First: V is 1");
    let r = wsm_on(
        &hosts[0],
        &[
            "sync",
            "add",
            &kept_stack,
            "--repo",
            "file:///var/lib/wsm/kept.git",
            "--every",
            "4s",
            "--no-check",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("the runner syncs it"), "{}", r.stdout);
    let _kept_gone = StackGone(hosts[1].name.clone(), kept_stack.clone());

    // A remote stack on this swarm, as wsm's records describe it, reached over SSH.
    trust(&bed, &all);
    let swarm = unique("wjsw");
    let stack = format!("{swarm}-app");
    let record = |via: &Host| {
        let list: Vec<String> = hosts
            .iter()
            .map(|h| format!("{}/{}/", h.name, h.ip()))
            .collect();
        format!(
            "SWARM_NAME={swarm}\nDOCKER_HOST=ssh://root@{}\nSWARM_HOSTS={}\nSWARM_MANAGERS=3\n",
            via.ip(),
            list.join(",")
        )
    };
    let config = bed.path("config");
    for dir in ["stacks", "swarms"] {
        std::fs::create_dir_all(config.join(dir)).unwrap();
    }
    std::fs::write(config.join("default"), "").unwrap();
    std::fs::write(config.join(format!("swarms/{swarm}")), record(&hosts[0])).unwrap();
    let legacy = LegacyFile(format!("/etc/wavelet-stack/{stack}").into());
    std::fs::create_dir_all("/etc/wavelet-stack").unwrap();
    std::fs::write(&legacy.0, "# the app\nWAVELET_NODES=2\n").unwrap();
    let shown = bed.wsm_in(&config, &["stack", "-s", &stack, "config"], "");
    assert!(shown.ok().contains("WAVELET_NODES=2"), "{}", shown.stdout);
    assert!(
        shown
            .stderr
            .contains("into the swarm (the file is removed)"),
        "{}",
        shown.stderr
    );
    // The file held the config (secrets included) in clear: it goes once the store has it.
    assert!(!legacy.0.exists(), "{} is still there", legacy.0.display());
    let doc = store_doc(
        &["-H", &socket(&hosts[0])],
        &format!("stack-config.{stack}"),
    )
    .unwrap();
    assert_eq!(doc["text"], "# the app\nWAVELET_NODES=2\n", "{doc}");

    // Two edit-config sessions at once: A opens its editor first and saves last.
    let editor = |name: &str, body: &str| {
        let path = bed.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    };
    let (started, go) = (bed.path("a-started"), bed.path("a-go"));
    let slow = editor(
        "editor-a",
        &format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.1; done; printf '# the app\\nWAVELET_NODES=4\\n' > \"$1\"",
            started.display(),
            go.display()
        ),
    );
    let fast = editor(
        "editor-b",
        "printf '# the app\\nWAVELET_NODES=5\\n' > \"$1\"",
    );
    let a = bed
        .command(&config, &["stack", "-s", &stack, "edit-config"])
        .env("VISUAL", &slow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("editor A", 60, || started.exists());
    let b: Run = bed
        .command(&config, &["stack", "-s", &stack, "edit-config"])
        .env("VISUAL", &fast)
        .output()
        .unwrap()
        .into();
    assert_eq!(b.code, 0, "{}", b.stderr);
    std::fs::write(&go, "").unwrap();
    let a: Run = finish_within(a, "the first wsm edit", WSM_DEADLINE).into();
    assert_eq!(a.code, 1, "the second save must be refused: {}", a.stderr);
    assert!(
        a.stderr.contains("changed while you edited it"),
        "{}",
        a.stderr
    );
    let rescue = a
        .stderr
        .split("Your version is in ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .expect("the message names the file holding A's version");
    assert!(std::fs::read_to_string(rescue)
        .unwrap()
        .contains("WAVELET_NODES=4"));
    let doc = store_doc(
        &["-H", &socket(&hosts[1])],
        &format!("stack-config.{stack}"),
    )
    .unwrap();
    assert!(
        doc["text"].as_str().unwrap().contains("WAVELET_NODES=5"),
        "{doc}"
    );

    // A stack synced in the foreground from a bare repository a netns host serves over SSH.
    let served = bed.path("served");
    std::fs::create_dir_all(&served).unwrap();
    git(&["init", "-q", "--bare", "app.git"], &served);
    git(&["init", "-q", "-b", "main", "work"], &served);
    let work = served.join("work");
    std::fs::write(work.join("compose.yaml"), kept_compose("ssh")).unwrap();
    git(&["add", "-A"], &work);
    git(&["commit", "-qm", "Served over SSH"], &work);
    git(&["push", "-q", "../app.git", "main"], &work);
    let git_stack = format!("{swarm}-git");
    let url = format!("ssh://root@{}{}/app.git", hosts[2].ip(), served.display());
    let key = bed.path("id_ed25519");
    bed.wsm_in(
        &config,
        &[
            "sync",
            "add",
            &git_stack,
            "--repo",
            &url,
            "--ssh-key",
            key.to_str().unwrap(),
        ],
        "",
    )
    .ok();
    let synced = bed.wsm_in(&config, &["sync", "now", &git_stack], "");
    assert!(
        synced.ok().contains("Served over SSH deployed"),
        "{}",
        synced.stdout
    );
    let _git_gone = StackGone(hosts[1].name.clone(), git_stack.clone());
    let env = docker_on(
        &hosts[0].name,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
            &format!("{git_stack}_web"),
        ],
    );
    assert!(env.contains("V=ssh"), "{env}");
    // The key's path is an option of ssh, never its content, and no output shows either.
    assert!(!synced.stdout.contains("PRIVATE KEY") && !synced.stderr.contains("PRIVATE KEY"));

    // Backups of a Wavelet stack on this swarm, driven over SSH: two cycles leave the node a
    // dump equal to a quiesced copy of its /db and, as `.backup`, the first dump.
    let db_stack = format!("{swarm}-db");
    let backups = bed.path("backups");
    std::fs::write(
        config.join(format!("stacks/{db_stack}")),
        format!(
            "WAVELET_NODES=1\nWAVELET_NO_RPC=true\nWAVELET_RESTART_ON_PEER_CHANGE=false\nWSM_ENDPOINT_MODE=dnsrr\nWSM_PUBLISH_MODE=host\nWSM_DEPLOY_TIMEOUT=180\nWSM_BACKUP_DIR={}\n",
            backups.display()
        ),
    )
    .unwrap();
    let on_db = |args: &[&str]| {
        let mut all = vec!["stack", "-s", db_stack.as_str()];
        all.extend_from_slice(args);
        bed.wsm_in(&config, &all, "")
    };
    on_db(&["start"]).ok();
    on_db(&["backup"]).ok();
    let folder = backups.join(&db_stack);
    let first = std::fs::read(folder.join("1.tar.gz")).unwrap();
    let task = docker_on(
        &hosts[0].name,
        &[
            "service",
            "ps",
            &format!("{db_stack}_wavelet"),
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}}",
        ],
    );
    let node = hosts
        .iter()
        .find(|h| h.name == task.trim())
        .expect("the node of wavelet 1");
    let container = docker_on(
        &node.name,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={db_stack}_wavelet"),
        ],
    );
    let container = container.trim();
    docker_on(
        &node.name,
        &["exec", container, "pkill", "-STOP", "-x", "wavelet"],
    );
    let copy = Command::new("docker")
        .args([
            "-H",
            &socket(node),
            "exec",
            container,
            "tar",
            "-C",
            "/",
            "-cf",
            "-",
            "db",
        ])
        .output()
        .unwrap();
    let second = on_db(&["backup"]);
    docker_on(
        &node.name,
        &["exec", container, "pkill", "-CONT", "-x", "wavelet"],
    );
    second.ok();
    assert_eq!(
        archive_files(&folder.join("1.tar.gz")),
        tar_files(&copy.stdout[..], false),
        "the dump differs from the quiesced /db"
    );
    assert_eq!(
        std::fs::read(folder.join("1.tar.gz.backup")).unwrap(),
        first
    );
    on_db(&["stop"]).ok();

    // Leadership as wsm reports it is what `docker node ls` says, seen from every manager.
    let leader = docker_leader(&hosts[0]);
    assert!(!leader.is_empty());
    for h in &hosts {
        let status = wsm_on(h, &["jobs", "status", "--json"]);
        let doc: Value = serde_json::from_str(&status.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", status.stdout, status.stderr));
        assert_eq!(doc["leader"], leader.as_str(), "{doc}");
    }
    wait_for("two runs on the leader", 120, || {
        runs_on(&hosts[0], &job)
            .map(|r| ok_runs(&r).iter().filter(|(_, h)| *h == leader).count() >= 2)
            .unwrap_or(false)
    });

    // The leader's engine dies as in a crash.
    let old = hosts.iter().find(|h| h.name == leader).unwrap();
    let other = hosts.iter().find(|h| h.name != leader).unwrap();
    let pid = std::fs::read_to_string(format!("/run/wsm-hosts/{}/docker.pid", old.name)).unwrap();
    let killed_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    unsafe { libc::kill(pid.trim().parse().unwrap(), libc::SIGKILL) };

    // The next slots run on the new leader, read through another manager.
    let mut new_leader = String::new();
    wait_for("two runs on a new leader", 180, || {
        let Some(r) = runs_on(other, &job) else {
            return false;
        };
        let after: Vec<_> = ok_runs(&r)
            .into_iter()
            .filter(|(s, h)| *s > killed_at && *h != leader)
            .collect();
        if let Some((_, h)) = after.first() {
            new_leader = h.clone();
        }
        after.len() >= 2
    });
    assert_eq!(
        docker_leader(other),
        new_leader,
        "wsm's runs name the leader docker names"
    );
    let runs = runs_on(other, &job).unwrap();
    let (run, missed) = check_slots(&runs, 3);
    eprintln!(
        "slots run: {}, missed while leadership moved: {}",
        run.len(),
        missed.len()
    );
    // The job's definition survived the leader's loss and reads through another manager.
    let ls = wsm_on(other, &["jobs", "ls", "--json"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(
        ls.stdout.contains(&format!("\"name\": \"{job}\"")),
        "{}",
        ls.stdout
    );
    // The newest run may still be running (it shares the runner with the sync job): a
    // finished one among the last three says where it ran.
    wait_for("a finished run's output", 60, || {
        wsm_on(other, &["jobs", "logs", &job, "--runs", "3"])
            .stdout
            .contains(&format!("ran on {new_leader}"))
    });

    // The kept stack: the first commit ran before the loss; the next is deployed by the new
    // leader's runner, and each commit is deployed exactly once.
    let kept_env = || {
        docker_on_quiet(
            &other.name,
            &[
                "service",
                "inspect",
                "--format",
                "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
                &format!("{kept_stack}_web"),
            ],
        )
    };
    assert!(kept_env().contains("V=1"), "{}", kept_env());
    kept.commit("2", "Second: V is 2");
    wait_for("the second commit deployed by the new leader", 180, || {
        kept_env().contains("V=2")
    });
    let sync_runs = runs_on(other, &format!("sync-{kept_stack}")).unwrap();
    assert!(
        ok_runs(&sync_runs)
            .iter()
            .any(|(s, h)| *s > killed_at && *h == new_leader),
        "{sync_runs}"
    );
    // The service changes before the deploy has converged; its revision is recorded after.
    let mut ops: Vec<String> = Vec::new();
    wait_for("the second commit's revision", 120, || {
        let history = wsm_on(other, &["stack", "history", "--json", &kept_stack]);
        let revs: Vec<Value> = serde_json::from_str(&history.stdout).unwrap_or_default();
        ops = revs
            .iter()
            .map(|r| r["operation"].as_str().unwrap_or("").to_string())
            .collect();
        ops.iter().any(|o| o.ends_with("Second: V is 2"))
    });
    for subject in ["First: V is 1", "Second: V is 2"] {
        assert_eq!(
            ops.iter().filter(|o| o.ends_with(subject)).count(),
            1,
            "each commit is deployed once: {ops:?}"
        );
    }
}

/// One service `web` sleeping, with `V=<v>`.
fn kept_compose(v: &str) -> String {
    format!(
        "services:\n  web:\n    image: localhost:5000/wavelet-stack-node:latest\n    entrypoint: [\"sleep\", \"3600\"]\n    environment: [\"V={v}\"]\n    stop_grace_period: 1s\n"
    )
}

/// The repository a runner-synced stack follows: `/var/lib/wsm/kept.git` inside the runner,
/// that is one bare repository in each manager's runner volume, every commit pushed to all.
struct KeptRepo {
    work: tempfile::TempDir,
    remotes: Vec<std::path::PathBuf>,
}

impl KeptRepo {
    fn new(hosts: &[Host]) -> Self {
        let remotes: Vec<std::path::PathBuf> = hosts
            .iter()
            .map(|h| {
                std::path::PathBuf::from(&h.env["DATA_DIR"]).join("volumes/wsm-jobs_data/_data")
            })
            .collect();
        for r in &remotes {
            wait_for("the runner's volume", 120, || r.is_dir());
            git(&["init", "-q", "--bare", "kept.git"], r);
        }
        let work = tempfile::tempdir().unwrap();
        git(&["init", "-q", "-b", "main", "."], work.path());
        KeptRepo { work, remotes }
    }

    fn commit(&self, v: &str, subject: &str) {
        std::fs::write(self.work.path().join("compose.yaml"), kept_compose(v)).unwrap();
        git(&["add", "-A"], self.work.path());
        git(&["commit", "-qm", subject], self.work.path());
        for r in &self.remotes {
            let url = format!("file://{}/kept.git", r.display());
            git(&["push", "-q", &url, "main"], self.work.path());
        }
    }
}

/// Removes a stack of the swarm through a host's engine in `Drop` (the hosts go with the
/// test bed; this keeps the order clean when the test fails half-way).
struct StackGone(String, String);

impl Drop for StackGone {
    fn drop(&mut self) {
        docker_on_quiet(&self.0, &["stack", "rm", &self.1]);
    }
}

/// A file in the machine's own /etc (which the netns hosts' sshd sessions share), removed in
/// `Drop`.
struct LegacyFile(std::path::PathBuf);

impl Drop for LegacyFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}
