//! build-all-nodes through the Docker API: the make step, builds from the bundled contexts,
//! pushes to a real registry (Debian's docker-registry) with `docker login` credentials, and a
//! stack started afterwards running the pushed digest.

mod common;

use std::process::Command;

use common::*;

/// The digest a registry serves for repo:tag, read with curl (the registry's own answer).
fn registry_digest(registry: &str, repo: &str, tag: &str, auth: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-fsSI",
        "-H",
        "Accept: application/vnd.docker.distribution.manifest.v2+json",
    ]);
    if let Some(a) = auth {
        cmd.args(["-u", a]);
    }
    let out = cmd
        .arg(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no manifest for {repo}:{tag} in {registry}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("Docker-Content-Digest: ")
                .or_else(|| l.strip_prefix("docker-content-digest: "))
        })
        .map(|d| d.trim().to_string())
        .expect("digest header")
}

/// Runs wsm with its own HOME (for ~/.docker/config.json).
fn wsm_home(s: &TestStack, home: &std::path::Path, args: &[&str]) -> Run {
    s.command(args).env("HOME", home).output().unwrap().into()
}

#[test]
fn build_all_nodes_runs_make_builds_pushes_and_start_runs_the_pushed_digest() {
    require_images();
    let registry = Registry::start(None);
    let reg = registry.addr();
    let s = TestStack::new("wsmbuild");
    let tag = s.name.clone();
    // The node image builds FROM <REGISTRY>/wavelet:<TAG>; the stand-in plays that image.
    docker(&[
        "tag",
        "localhost:5000/wavelet:latest",
        &format!("{reg}/wavelet:{tag}"),
    ]);
    let build_dir = s.dir.path().join("wavelet-src");
    std::fs::create_dir(&build_dir).unwrap();
    std::fs::write(
        build_dir.join("Makefile"),
        "docker:\n\techo \"R=$(R) T=$(T)\" > made\n",
    )
    .unwrap();
    s.set("REGISTRY", &reg);
    s.set("WAVELET_TAG", &tag);
    s.set("WAVELET_NODES", "1");
    s.set("WAVELET_BUILD_DIR", build_dir.to_str().unwrap());

    let r = s.wsm(&["build-all-nodes", &s.name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(build_dir.join("made")).unwrap(),
        format!("R={reg} T={tag}\n")
    );
    assert!(
        r.stderr.contains("Step") || r.stderr.contains("COPY"),
        "build output must stream: {}",
        r.stderr
    );
    let lb_digest = registry_digest(&reg, "wavelet-stack-lb", "latest", None);
    let node_digest = registry_digest(&reg, "wavelet-stack-node", &tag, None);

    s.stack(&["start"]).ok();
    let image = docker(&[
        "service",
        "inspect",
        &format!("{}_wavelet", s.name),
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    assert_eq!(
        image.trim(),
        format!("{reg}/wavelet-stack-node:{tag}@{node_digest}")
    );
    let lb = docker(&[
        "service",
        "inspect",
        &format!("{}_loadbalancer", s.name),
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    assert_eq!(
        lb.trim(),
        format!("{reg}/wavelet-stack-lb:latest@{lb_digest}")
    );
    assert_eq!(s.running_tasks("wavelet").len(), 1);

    // WAVELET_REBUILD_ON_START: update runs build-all-nodes (make included) before deploying.
    std::fs::remove_file(build_dir.join("made")).unwrap();
    s.set("WAVELET_REBUILD_ON_START", "yes");
    let rebuilt = s.stack(&["update"]);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    assert!(
        build_dir.join("made").exists(),
        "update with WAVELET_REBUILD_ON_START did not run make"
    );
    assert!(
        rebuilt
            .stderr
            .contains(&format!("Pushing {reg}/wavelet-stack-node:{tag}")),
        "{}",
        rebuilt.stderr
    );
    assert_eq!(s.running_tasks("wavelet").len(), 1);

    // A failing make stops the build before anything is built.
    std::fs::write(build_dir.join("Makefile"), "docker:\n\texit 3\n").unwrap();
    let failed = s.wsm(&["build-all-nodes", &s.name]);
    assert_eq!(failed.code, 1);
    assert!(
        failed.stderr.contains("make in") && failed.stderr.contains("exit code 2"),
        "{}",
        failed.stderr
    );
    for i in [
        format!("{reg}/wavelet:{tag}"),
        format!("{reg}/wavelet-stack-node:{tag}"),
        format!("{reg}/wavelet-stack-lb:latest"),
    ] {
        docker_quiet(&["image", "rm", &i]);
    }
}

#[test]
fn push_uses_the_credentials_of_docker_login() {
    require_images();
    let s = TestStack::bare("wsmauth");
    let htpasswd = s.dir.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "wsmuser", "wsmpass"])
        .output()
        .unwrap();
    assert!(out.status.success(), "htpasswd (apache2-utils) is needed");
    std::fs::write(&htpasswd, out.stdout).unwrap();
    let registry = Registry::start(Some(&htpasswd));
    let reg = registry.addr();
    let tag = s.name.clone();
    docker(&[
        "tag",
        "localhost:5000/wavelet:latest",
        &format!("{reg}/wavelet:{tag}"),
    ]);
    s.set("REGISTRY", &reg);
    s.set("WAVELET_TAG", &tag);

    let anonymous = s.dir.path().join("home-anon");
    std::fs::create_dir_all(&anonymous).unwrap();
    let denied = wsm_home(&s, &anonymous, &["build-all-nodes", &s.name]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(denied.stderr.contains("pushing"), "{}", denied.stderr);

    let home = s.dir.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let auth = std::process::Command::new("sh")
        .args(["-c", "printf wsmuser:wsmpass | base64"])
        .output()
        .unwrap();
    let auth = String::from_utf8_lossy(&auth.stdout).trim().to_string();
    std::fs::write(
        home.join(".docker/config.json"),
        format!("{{\"auths\":{{\"{reg}\":{{\"auth\":\"{auth}\"}}}}}}"),
    )
    .unwrap();
    let pushed = wsm_home(&s, &home, &["build-all-nodes", &s.name]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    registry_digest(&reg, "wavelet-stack-node", &tag, Some("wsmuser:wsmpass"));
    registry_digest(&reg, "wavelet-stack-lb", "latest", Some("wsmuser:wsmpass"));
    for i in [
        format!("{reg}/wavelet:{tag}"),
        format!("{reg}/wavelet-stack-node:{tag}"),
        format!("{reg}/wavelet-stack-lb:latest"),
    ] {
        docker_quiet(&["image", "rm", &i]);
    }
}
