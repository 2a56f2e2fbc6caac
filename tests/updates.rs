//! Issue 24, image updates (`scripts/updates/`), against the real engine and the test bed's
//! registry at localhost:5000: two tiny images built locally on the test bed's base image are
//! pushed behind one tag each, a stack deployed with them, then a new image pushed behind the
//! SAME tags. The Docker CLI and the registry's own API are the witnesses: `docker service
//! inspect` for the digest each service runs, `stack history --json` for the revisions.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const BASE: &str = "localhost:5000/wavelet-stack-base:latest";
const REGISTRY: &str = "localhost:5000";

/// The images and registry tags a test made, removed in `Drop` even when it fails.
struct Images {
    repos: Vec<String>,
    local: Vec<String>,
}

impl Images {
    fn new() -> Self {
        Images {
            repos: Vec::new(),
            local: Vec::new(),
        }
    }

    /// Builds `FROM BASE` with a file `/version` holding `version` and the command `cmd`,
    /// tags it `repo:tag`, and pushes it. Returns the digest the registry now holds for the tag.
    fn push(&mut self, dir: &Path, repo: &str, tag: &str, version: &str, cmd: &str) -> String {
        let ctx = dir.join(format!("ctx-{}-{version}", repo.replace(['/', ':'], "_")));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("version"), version).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {BASE}\nCOPY version /version\nCMD {cmd}\n"),
        )
        .unwrap();
        let image = format!("{repo}:{tag}");
        let out = Command::new("docker")
            .args(["build", "-q", "-t", &image])
            .arg(&ctx)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !self.repos.contains(&repo.to_string()) {
            self.repos.push(repo.to_string());
        }
        let keep = format!("{repo}:{tag}-{version}");
        docker(&["tag", &image, &keep]);
        self.local.push(keep);
        self.local.push(image.clone());
        docker(&["push", "-q", &image]);
        registry_digest(repo, tag)
    }

    /// Pushes the image kept as `repo:tag-version` behind `repo:tag` again.
    fn push_again(&self, repo: &str, tag: &str, version: &str) -> String {
        let image = format!("{repo}:{tag}");
        docker(&["tag", &format!("{repo}:{tag}-{version}"), &image]);
        docker(&["push", "-q", &image]);
        registry_digest(repo, tag)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for repo in &self.repos {
            let Some((registry, name)) = repo.split_once('/') else {
                continue;
            };
            if let Some(d) = registry_digest_quiet(&format!("{repo}:v1")) {
                let _ = Command::new("curl")
                    .args(["-s", "-m", "5", "-o", "/dev/null", "-X", "DELETE"])
                    .arg(format!("http://{registry}/v2/{name}/manifests/{d}"))
                    .status();
            }
        }
        for image in &self.local {
            docker_quiet(&["image", "rm", image]);
        }
    }
}

/// The digest the registry serves for `repo:tag` (its own API, through curl).
fn registry_digest(repo: &str, tag: &str) -> String {
    registry_digest_quiet(&format!("{repo}:{tag}"))
        .unwrap_or_else(|| panic!("the registry has no digest for {repo}:{tag}"))
}

fn registry_digest_quiet(repo_tag: &str) -> Option<String> {
    let (repo, tag) = repo_tag.rsplit_once(':')?;
    let (registry, name) = repo.split_once('/')?;
    let out = Command::new("curl")
        .args(["-sI", "-m", "5", "-H"])
        .arg(
            "Accept: application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .arg(format!("http://{registry}/v2/{name}/manifests/{tag}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("docker-content-digest")
            .then(|| v.trim().to_string())
    })
}

/// The image a service's spec names, as `docker service inspect` shows it.
fn spec_image(service: &str) -> String {
    docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        service,
    ])
    .trim()
    .to_string()
}

/// What the revisions document and the lock leave after `docker stack rm`.
struct StackObjects(String);

impl Drop for StackObjects {
    fn drop(&mut self) {
        docker_quiet(&["config", "rm", &format!("wsm-lock-{}", self.0)]);
        docker_quiet(&[
            "config",
            "rm",
            &format!("wsm-state-updates.notified.{}", self.0),
        ]);
    }
}

fn history(s: &TestStack) -> Vec<Value> {
    let r = s.wsm(&["stack", "history", "--json", &s.name]);
    serde_json::from_str(r.ok()).unwrap()
}

#[test]
fn a_moved_tag_is_found_applied_and_a_failing_one_rolled_back() {
    require_images();
    // Declared first, dropped last: the stack goes before its images.
    let mut images = Images::new();
    let s = TestStack::bare("upd");
    let _objects = StackObjects(s.name.clone());
    let web_repo = format!("{REGISTRY}/wsm-upd-{}-web", s.name);
    let bad_repo = format!("{REGISTRY}/wsm-upd-{}-bad", s.name);
    let sleep = r#"["sleep", "100000"]"#;
    let web1 = images.push(s.dir.path(), &web_repo, "v1", "1", sleep);
    let bad1 = images.push(s.dir.path(), &bad_repo, "v1", "1", sleep);
    let compose = format!(
        "services:
  web:
    image: {web_repo}:v1
    stop_grace_period: 1s
    deploy:
      labels: {{wsm.updates: apply}}
      update_config: {{monitor: 2s}}
  bad:
    image: {bad_repo}:v1
    stop_grace_period: 1s
    deploy:
      labels: {{wsm.updates: \"off\"}}
      update_config: {{monitor: 2s}}
"
    );
    let file = s.dir.path().join("compose.yml");
    std::fs::write(&file, compose).unwrap();
    let file = file.to_str().unwrap();
    s.wsm(&["stack", "deploy", "-c", file, "--timeout", "120", &s.name])
        .ok();
    let (web, bad) = (format!("{}_web", s.name), format!("{}_bad", s.name));
    assert_eq!(spec_image(&web), format!("{web_repo}:v1@{web1}"));
    assert_eq!(spec_image(&bad), format!("{bad_repo}:v1@{bad1}"));

    // Nothing moved yet.
    let r = s.wsm(&["updates", "check", &s.name]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("no updates"), "{}", r.stdout);

    // Bad input: one line, exit 2, nothing changed.
    let r = s.wsm(&["updates", "check", "nosuchstack1x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no stack nosuchstack1x"), "{}", r.stderr);
    let r = s.wsm(&["updates", "apply", &s.name, "nosuchservice"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = s.wsm(&["updates", "check", "--timeout"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // New images behind the same tags: web's starts, bad's exits 1 at once.
    let web2 = images.push(s.dir.path(), &web_repo, "v1", "2", sleep);
    let bad2 = images.push(
        s.dir.path(),
        &bad_repo,
        "v1",
        "2",
        r#"["sh", "-c", "exit 1"]"#,
    );
    assert_ne!(web1, web2);
    assert_ne!(bad1, bad2);

    let r = s.wsm(&["updates", "check", &s.name]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&web) && r.stdout.contains(&bad),
        "{}",
        r.stdout
    );
    let r = s.wsm(&["--json", "updates", "check", &s.name]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let found: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = found["updates"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{found}");
    let row = rows.iter().find(|r| r["service"] == web.as_str()).unwrap();
    assert_eq!(row["from"], web1.as_str());
    assert_eq!(row["to"], web2.as_str());
    assert_eq!(row["image"], format!("{web_repo}:v1").as_str());
    // `check` changes nothing.
    assert_eq!(spec_image(&web), format!("{web_repo}:v1@{web1}"));
    let revisions_before = history(&s).len();

    let r = s.wsm(&["updates", "apply", "--timeout", "90", &s.name]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("updated: {web}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("failed, rolled back") && r.stdout.contains(&bad),
        "{}",
        r.stdout
    );
    // The witnesses: web on the new digest, bad back on its old one, running.
    assert_eq!(spec_image(&web), format!("{web_repo}:v1@{web2}"));
    assert_eq!(spec_image(&bad), format!("{bad_repo}:v1@{bad1}"));
    assert_eq!(s.running_tasks("bad").len(), 1);
    assert_eq!(s.running_tasks("web").len(), 1);
    let exec = docker(&["exec", &s.container("web", 1), "cat", "/version"]);
    assert_eq!(exec, "2");

    let revs = history(&s);
    let new: Vec<&Value> = revs.iter().skip(revisions_before).collect();
    let applied = new
        .iter()
        .find(|r| r["operation"] == "updates apply web")
        .unwrap_or_else(|| panic!("no revision of the update: {revs:?}"));
    assert_eq!(applied["status"], "deployed");
    assert_eq!(applied["images"][&web], web2.as_str());
    let failed = new
        .iter()
        .find(|r| r["operation"] == "updates apply bad")
        .unwrap_or_else(|| panic!("no revision of the failed update: {revs:?}"));
    assert!(
        failed["status"]
            .as_str()
            .unwrap()
            .contains("rolled back to revision"),
        "{failed}"
    );

    // Bad's tag put back on its old image: nothing moved any more.
    assert_eq!(images.push_again(&bad_repo, "v1", "1"), bad1);
    let r = s.wsm(&["updates", "check", &s.name]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // The scheduled check: web (wsm.updates=apply) is moved, bad (off) is left alone even
    // though its tag moved again.
    let web3 = images.push(s.dir.path(), &web_repo, "v1", "3", sleep);
    images.push_again(&bad_repo, "v1", "2");
    let r = s.wsm(&["--json", "updates", "check", "--scheduled", &s.name]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(out["applied"][0]["service"], web.as_str(), "{out}");
    assert_eq!(out["skipped"][0]["service"], bad.as_str(), "{out}");
    assert_eq!(spec_image(&web), format!("{web_repo}:v1@{web3}"));
    assert_eq!(spec_image(&bad), format!("{bad_repo}:v1@{bad1}"));
    let revs = history(&s);
    assert_eq!(revs.last().unwrap()["operation"], "updates apply web");
    assert_eq!(revs.last().unwrap()["images"][&web], web3.as_str());
}

/// The job `updates add` defines, removed in `Drop`.
struct Job;

impl Drop for Job {
    fn drop(&mut self) {
        for doc in ["job.updates", "job-runs.updates"] {
            docker_quiet(&["config", "rm", &format!("wsm-state-{doc}")]);
        }
    }
}

#[test]
fn the_scheduled_check_is_added_and_removed_as_a_job() {
    let s = TestStack::bare("updjob");
    let _job = Job;
    let r = s.wsm(&["updates", "add", "--every", "soon"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        docker_quiet(&["config", "inspect", "wsm-state-job.updates"])
            .trim()
            .starts_with("[]")
    );
    let r = s.wsm(&["updates", "add", "--every", "6h"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let runner = !docker_quiet(&["service", "ls", "-q", "--filter", "name=wsm-jobs_runner"])
        .trim()
        .is_empty();
    if runner {
        assert!(r.stdout.contains("job updates added"), "{}", r.stdout);
    } else {
        assert!(r.stdout.contains("UNSIGNED"), "{}", r.stdout);
    }
    let listed = s.wsm(&["jobs", "ls"]);
    assert!(
        listed.stdout.contains("wsm updates check --scheduled"),
        "{}",
        listed.stdout
    );
    let again = s.wsm(&["updates", "add"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    let r = s.wsm(&["updates", "rm"]);
    r.ok();
    assert!(docker_quiet(&[
        "config",
        "ls",
        "-q",
        "--filter",
        "name=wsm-state-job.updates"
    ])
    .trim()
    .is_empty());
    let r = s.wsm(&["updates", "rm"]);
    assert!(r.ok().contains("no scheduled update check"));
}

#[test]
fn an_unreachable_registry_fails_its_service_only() {
    require_images();
    let mut images = Images::new();
    let s = TestStack::bare("updfar");
    let _objects = StackObjects(s.name.clone());
    let far = Registry::start(None);
    let near_repo = format!("{REGISTRY}/wsm-upd-{}-near", s.name);
    let far_repo = format!("{}/wsm-upd-{}-far", far.addr(), s.name);
    let sleep = r#"["sleep", "100000"]"#;
    let near1 = images.push(s.dir.path(), &near_repo, "v1", "1", sleep);
    let far1 = images.push(s.dir.path(), &far_repo, "v1", "1", sleep);
    let compose = format!(
        "services:
  near:
    image: {near_repo}:v1
    stop_grace_period: 1s
    deploy: {{update_config: {{monitor: 1s}}}}
  far:
    image: {far_repo}:v1
    stop_grace_period: 1s
"
    );
    let file = s.dir.path().join("compose.yml");
    std::fs::write(&file, compose).unwrap();
    let file = file.to_str().unwrap();
    s.wsm(&["stack", "deploy", "-c", file, "--timeout", "120", &s.name])
        .ok();
    let (near, far_service) = (format!("{}_near", s.name), format!("{}_far", s.name));
    assert_eq!(spec_image(&far_service), format!("{far_repo}:v1@{far1}"));
    let near2 = images.push(s.dir.path(), &near_repo, "v1", "2", sleep);
    // The far registry goes away: its service cannot be asked about, the other still can.
    drop(far);

    let r = s.wsm(&["--json", "updates", "check", &s.name]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(out["updates"][0]["service"], near.as_str(), "{out}");
    assert_eq!(out["errors"][0]["service"], far_service.as_str(), "{out}");
    assert!(r.stderr.contains(&far_service), "{}", r.stderr);

    // The scheduled check tells about near (no label: notify) once, and remembers it told.
    let told = format!("updates.notified.{}", s.name);
    let r = s.wsm(&["updates", "check", "--scheduled", &s.name]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("available (notified)"), "{}", r.stdout);
    let doc = common::store::store_doc(&[], &told).expect("the told document");
    assert_eq!(doc[&near], near2.as_str(), "{doc}");
    assert_eq!(spec_image(&near), format!("{near_repo}:v1@{near1}"));

    let r = s.wsm(&["updates", "apply", &s.name]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("not asked: {far_service}")),
        "{}",
        r.stdout
    );
    assert_eq!(spec_image(&near), format!("{near_repo}:v1@{near2}"));
    assert_eq!(spec_image(&far_service), format!("{far_repo}:v1@{far1}"));
    assert_ne!(near1, near2);
    // Applied: nothing left to tell, the document goes.
    let r = s.wsm(&["updates", "check", "--scheduled", &s.name]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(common::store::store_doc(&[], &told).is_none());
}
