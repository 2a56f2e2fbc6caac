//! `wsm spawn` on a swarm of two hosts (netns hosts with sshd, tests/fixtures/netns-host): the
//! service file's image built on the manager, pushed to REGISTRY (a registry of this binary's
//! own on the machine's loopback, forwarded onto each host's loopback with `netns-host forward`)
//! and pulled by the node `--on` names; the task runs there, and `spawn scan` shows that node's
//! free memory and CPU shares reduced by the reservation and the other node's unchanged. wsm
//! reaches the manager over real SSH; the Docker CLI on each host's own socket is the witness.
//!
//! One test bed for the whole file, made by the first test that needs it and brought down when
//! the test binary exits (`atexit`), also after a failure. The base image is loaded into the
//! manager only: the worker can run the service only by pulling what the manager pushed.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::hosts::*;
use common::*;
use serde_json::Value;

/// The base image of the services; only the manager has it.
const BASE: &str = "localhost:5000/wavelet-stack-base:latest";

/// What each spawned service reserves: memAlloc 64M, cpuShares 256.
const MEMORY: i64 = 64 * 1024 * 1024;
const SHARES: i64 = 256;

/// The shared swarm: a manager and a worker, and the registry both reach as 127.0.0.1:<port>.
struct Swarm {
    bed: Bed,
    registry: Registry,
    manager: Host,
    worker: Host,
}

static SWARM: OnceLock<Swarm> = OnceLock::new();

fn swarm() -> &'static Swarm {
    SWARM.get_or_init(|| {
        let s = Swarm::new();
        // Statics are never dropped: bring the hosts and the registry down when the binary exits.
        unsafe { libc::atexit(tear_down) };
        s
    })
}

extern "C" fn tear_down() {
    if let Some(s) = SWARM.get() {
        Command::new(NETNS_HOST)
            .args(["down", &s.manager.name, &s.worker.name])
            .output()
            .ok();
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/registry"
        ))
        .args(["down", &s.registry.port.to_string()])
        .output()
        .ok();
        std::fs::remove_dir_all(s.bed.dir.path()).ok();
    }
}

impl Swarm {
    fn new() -> Swarm {
        let t0 = Instant::now();
        let bed = Bed::new();
        // On a panic below, what was made so far goes with its `Drop`.
        let registry = Registry::start(None);
        let manager = Host::up("wspm", &bed.public_key());
        let worker = Host::up("wspw", &bed.public_key());
        for h in [&manager, &worker] {
            h.forward(registry.port);
        }
        trust(&bed, &[&manager, &worker]);
        load_images(&[&manager], &[BASE]);
        form_swarm(&manager, &[&worker], "worker");
        eprintln!("spawn_hosts: test bed ready in {:?}", t0.elapsed());
        Swarm {
            bed,
            registry,
            manager,
            worker,
        }
    }

    /// `docker` on the manager's own socket.
    fn docker(&self, args: &[&str]) -> String {
        docker_on(&self.manager.name, args)
    }

    /// `wsm spawn …` against the manager over SSH, with REGISTRY set when `registry`.
    fn spawn(&self, args: &[&str], registry: bool) -> Run {
        let mut all = vec!["spawn"];
        all.extend_from_slice(args);
        let mut c = self.bed.command(&self.bed.path("config"), &all);
        c.env("DOCKER_HOST", format!("ssh://root@{}", self.manager.ip()))
            .env_remove("REGISTRY")
            .stdin(Stdio::null());
        if registry {
            c.env("REGISTRY", self.registry.addr());
        }
        c.output().expect("run wsm").into()
    }

    /// `spawn scan --json`: hostname → (free memory, free CPU shares).
    fn scan(&self) -> BTreeMap<String, (i64, i64)> {
        let scan: Value = serde_json::from_str(self.spawn(&["scan", "--json"], true).ok()).unwrap();
        scan.as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["hostname"].as_str().unwrap().to_string(),
                    (
                        n["free_memory"].as_i64().unwrap(),
                        n["free_cpu_shares"].as_i64().unwrap(),
                    ),
                )
            })
            .collect()
    }

    /// What `docker node inspect` and the reservations of the running tasks (`docker node ps`,
    /// `docker inspect`) say each node has free: hostname → (memory, CPU shares).
    fn witnessed_free(&self) -> BTreeMap<String, (i64, i64)> {
        let docker = |args: &[&str]| self.docker(args);
        common::witnessed_free(&docker, &docker)
            .into_iter()
            .map(|(_, host, mem, cpu)| (host, (mem, cpu)))
            .collect()
    }

    /// The scan, once it equals the witness for every node (a task just placed or removed may
    /// take a moment to show in both alike).
    fn scan_witnessed(&self) -> BTreeMap<String, (i64, i64)> {
        let mut last = (BTreeMap::new(), BTreeMap::new());
        for _ in 0..20 {
            let (seen, docker) = (self.scan(), self.witnessed_free());
            if seen == docker && docker.len() == 2 {
                return seen;
            }
            last = (seen, docker);
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("scan {:?} differs from docker's {:?}", last.0, last.1);
    }
}

/// A spawned service of one test, removed with its containers in `Drop`, even on failure.
struct Spawned {
    name: String,
    dir: tempfile::TempDir,
}

impl Spawned {
    fn new(prefix: &str) -> Self {
        Spawned {
            name: unique(prefix),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `spawn deploy -c <file> -n NAME --detach` and `more`, of the service file `yml`.
    fn deploy(&self, yml: &str, more: &[&str], registry: bool) -> Run {
        let file = self.dir.path().join("svc.yml");
        std::fs::write(&file, yml).unwrap();
        let file = file.to_str().unwrap().to_string();
        let mut args = vec!["deploy", "-c", &file, "-n", &self.name, "--detach"];
        args.extend_from_slice(more);
        swarm().spawn(&args, registry)
    }

    /// `docker service ps` of the tasks, newest first: "node state error" lines.
    fn tasks(&self) -> String {
        swarm()
            .docker(&[
                "service",
                "ps",
                &self.name,
                "--no-trunc",
                "--format",
                "{{.Node}} {{.CurrentState}} {{.Error}}",
            ])
            .trim()
            .to_string()
    }

    /// Waits until the newest task runs on `host`; panics with what `service ps` said.
    fn wait_running_on(&self, host: &Host) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let want = format!("{} Running", host.name);
        loop {
            let tasks = self.tasks();
            if tasks.starts_with(&want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not running on {} after 120 s; docker service ps:\n{tasks}",
                self.name,
                host.name
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The containers of the service on `host`'s engine.
    fn containers_on(&self, host: &Host) -> String {
        let filter = format!("label=com.docker.swarm.service.name={}", self.name);
        docker_on(&host.name, &["ps", "-q", "--filter", &filter])
            .trim()
            .to_string()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let sw = swarm();
        let on = |h: &Host, args: &[&str]| docker_on_quiet(&h.name, args);
        let filter = format!("label=com.docker.swarm.service.name={}", self.name);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            on(&sw.manager, &["service", "rm", &self.name]);
            let left = on(&sw.manager, &["service", "ls", "-q", "--filter", &filter])
                + &on(&sw.manager, &["ps", "-aq", "--filter", &filter])
                + &on(&sw.worker, &["ps", "-aq", "--filter", &filter]);
            if left.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A service file of MEMORY and SHARES running a shell that waits.
fn service_file() -> String {
    format!("image: {BASE}\nmemAlloc: 64M\ncpuShares: {SHARES}\nautoRestart: true\nrun:\n  - echo up\n  - sleep 100000\n")
}

#[test]
fn on_places_the_service_on_that_host_and_scan_changes_for_that_host_only() {
    let sw = swarm();
    let has_base = Command::new("docker")
        .args([
            "-H",
            &sw.worker.env["DOCKER_HOST"],
            "image",
            "inspect",
            BASE,
        ])
        .output()
        .unwrap();
    assert!(!has_base.status.success(), "the worker has the base image");
    let mut kept = Vec::new();
    // The worker first: it has no base image, so its task runs only from the registry.
    for (host, other) in [(&sw.worker, &sw.manager), (&sw.manager, &sw.worker)] {
        let before = sw.scan_witnessed();
        let s = Spawned::new("sph");
        s.deploy(&service_file(), &["--on", &host.name], true).ok();

        // The task runs on the chosen node, its container on that host's engine only.
        s.wait_running_on(host);
        assert!(!s.containers_on(host).is_empty());
        assert!(
            s.containers_on(other).is_empty(),
            "a container on {}",
            other.name
        );
        let node_id = sw.docker(&["node", "inspect", &host.name, "--format", "{{.ID}}"]);
        let constraints = sw.docker(&[
            "service",
            "inspect",
            &s.name,
            "--format",
            "{{json .Spec.TaskTemplate.Placement.Constraints}}",
        ]);
        assert_eq!(
            constraints.trim(),
            format!("[\"node.id == {}\"]", node_id.trim())
        );

        // The image went through REGISTRY: pinned to the digest the registry serves.
        let image = sw.docker(&[
            "service",
            "inspect",
            &s.name,
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ]);
        let repo = format!("wsm-spawn-{}", s.name);
        let prefix = format!("{}/{repo}:", sw.registry.addr());
        assert!(image.starts_with(&prefix), "{image}");
        let (reference, digest) = image.trim().split_once('@').expect("a pinned digest");
        let (repository, tag) = reference.rsplit_once(':').unwrap();
        let served = registry_digest(&sw.registry.addr(), &repo, tag);
        assert_eq!(digest, served);
        // The chosen host's engine holds the image under the registry's name.
        let images = docker_on(&host.name, &["images", "--format", "{{.Repository}}"]);
        assert!(images.lines().any(|r| r == repository), "{images}");

        // spawn ls names the node.
        let rows: Value = serde_json::from_str(sw.spawn(&["ls", "--json"], true).ok()).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == s.name.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(row["node"], host.name.as_str(), "{rows}");
        assert_eq!(row["state"], "running", "{rows}");

        // scan of one node lists the service with its reservation on the chosen node only.
        for (h, listed) in [(host, true), (other, false)] {
            let one: Value =
                serde_json::from_str(sw.spawn(&["scan", &h.name, "--json"], true).ok()).unwrap();
            let found = one["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == s.name.as_str())
                .map(|x| (x["memory"].as_i64(), x["cpu_shares"].as_i64()));
            let want = listed.then_some((Some(MEMORY), Some(SHARES)));
            assert_eq!(found, want, "spawn scan {}: {one}", h.name);
        }

        // scan: the chosen node lost exactly the reservation, the other kept its numbers.
        let after = sw.scan_witnessed();
        let (mem, cpu) = before[&host.name];
        assert_eq!(after[&host.name], (mem - MEMORY, cpu - SHARES), "{after:?}");
        assert_eq!(after[&other.name], before[&other.name], "{after:?}");
        kept.push(s);
    }
}

#[test]
fn without_registry_a_multi_host_deploy_is_refused_before_anything_is_built() {
    let sw = swarm();
    let s = Spawned::new("spn");
    let run = s.deploy(&service_file(), &[], false);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("2 nodes") && run.stderr.contains("set REGISTRY"),
        "{}",
        run.stderr
    );
    assert!(sw
        .docker(&[
            "service",
            "ls",
            "-q",
            "--filter",
            &format!("name={}", s.name)
        ])
        .trim()
        .is_empty());
    let images = sw.docker(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains(&s.name), "{images}");
}

/// The digest the registry serves for repo:tag (curl, the registry's own answer).
fn registry_digest(registry: &str, repo: &str, tag: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-fsSI",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "no manifest for {repo}:{tag}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("docker-content-digest:")
                .map(|d| d.trim().to_string())
        })
        .expect("Docker-Content-Digest")
}

/// A compose stack of this binary's swarm, removed with its volumes on both hosts in `Drop`.
struct VolumeStack {
    name: String,
}

impl VolumeStack {
    fn new(prefix: &str) -> Self {
        VolumeStack {
            name: unique(prefix),
        }
    }

    /// `wsm …` against the manager over SSH, backups under the bed's `backups` folder.
    fn wsm(&self, args: &[&str]) -> Run {
        self.wsm_with(args, &[])
    }

    /// `wsm`, with more environment.
    fn wsm_with(&self, args: &[&str], env: &[(&str, String)]) -> Run {
        let sw = swarm();
        let mut c = sw.bed.command(&sw.bed.path("config"), args);
        c.env("DOCKER_HOST", format!("ssh://root@{}", sw.manager.ip()))
            .env("WSM_BACKUP_DIR", sw.bed.path("backups"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c.output().expect("run wsm").into()
    }

    /// `sha256sum` of every file of the stack's volume `data` on `host`, read by a container.
    fn sums_on(&self, host: &Host, image: &str) -> String {
        docker_on(
            &host.name,
            &[
                "run",
                "--rm",
                "--entrypoint",
                "sh",
                "-v",
                &format!("{}_data:/v:ro", self.name),
                image,
                "-c",
                "cd /v && find . -type f | LC_ALL=C sort | xargs -r sha256sum",
            ],
        )
    }
}

impl Drop for VolumeStack {
    fn drop(&mut self) {
        let sw = swarm();
        docker_on_quiet(&sw.manager.name, &["stack", "rm", &self.name]);
        let volume = format!("{}_data", self.name);
        let deadline = Instant::now() + Duration::from_secs(60);
        for h in [&sw.manager, &sw.worker] {
            while Instant::now() < deadline {
                let gone = docker_on_output(&h.name, &["volume", "rm", "-f", &volume])
                    .status
                    .success()
                    && docker_on_quiet(
                        &h.name,
                        &["volume", "ls", "-q", "--filter", &format!("name={volume}")],
                    )
                    .trim()
                    .is_empty();
                if gone {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[test]
fn a_volume_on_the_worker_is_backed_up_from_here_and_restored_into_a_fresh_stack_on_the_manager() {
    let sw = swarm();
    // The image both hosts run, through the registry (the worker pulls it).
    let image = format!("{}/wsm-volume-test:1", sw.registry.addr());
    sw.docker(&["tag", BASE, &image]);
    sw.docker(&["push", "-q", &image]);
    let file = |host: &Host| {
        format!(
            "services:\n  db:\n    image: {image}\n    command: [\"sleep\", \"100000\"]\n    \
             stop_grace_period: 1s\n    volumes: [\"data:/data\"]\n    deploy:\n      \
             labels:\n        wsm.backup.stop: \"true\"\n      placement:\n        \
             constraints: [\"node.hostname == {}\"]\nvolumes:\n  data:\n    labels:\n      \
             purpose: wsm-volume-test\n",
            host.name
        )
    };
    let write = |name: &str, text: String| {
        let path = sw.bed.path(&format!("{name}.yml"));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    // On the worker: a stack whose volume the manager's engine does not have.
    let from = VolumeStack::new("wsmvolw");
    let f = write(&from.name, file(&sw.worker));
    from.wsm(&["stack", "deploy", "-c", &f, "--timeout", "120", &from.name])
        .ok();
    let filter = format!("label=com.docker.swarm.service.name={}_db", from.name);
    let container = docker_on(&sw.worker.name, &["ps", "-q", "--filter", &filter]);
    let container = container.trim();
    assert!(!container.is_empty(), "no db container on the worker");
    docker_on(
        &sw.worker.name,
        &[
            "exec",
            container,
            "sh",
            "-c",
            "mkdir -p /data/sub && head -c 2000000 /dev/urandom > /data/sub/random.bin \
             && seq 1 5000 > /data/numbers.txt",
        ],
    );
    let volume = format!("{}_data", from.name);
    let on_manager = docker_on_quiet(&sw.manager.name, &["volume", "ls", "-q"]);
    assert!(!on_manager.contains(&volume), "{on_manager}");

    // Backed up from here: the worker's engine reached over SSH, the writer stopped and back.
    let run = from.wsm(&["stack", "backup", "--json", &from.name]);
    run.ok();
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    let archive = rows[0]["file"].as_str().unwrap().to_string();
    assert!(
        archive.ends_with(&format!("/{volume}/1.tar.gz")),
        "{archive}"
    );
    let replicas = sw.docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        &format!("{}_db", from.name),
    ]);
    assert_eq!(replicas.trim(), "1");
    from.wsm(&["stack", "backup", "verify", "--against-live", &from.name])
        .ok();
    let original = from.sums_on(&sw.worker, &image);
    assert!(original.contains("./sub/random.bin"), "{original}");

    // Archives kept on another host over SSH (the worker; its files are this machine's, so
    // they are read here): one generation kept of two, whole, private, its stats line true.
    let remote_dir = sw.bed.path("remote-backups");
    let remote = [
        (
            "WSM_BACKUP_DIR",
            format!("ssh://root@{}{}", sw.worker.ip(), remote_dir.display()),
        ),
        ("WSM_BACKUP_KEEP", "1".to_string()),
    ];
    for _ in 0..2 {
        from.wsm_with(&["stack", "backup", &from.name], &remote)
            .ok();
    }
    let stack_dir = remote_dir.join(format!("default/{}", from.name));
    let vdir = stack_dir.join(&volume);
    let names: Vec<String> = std::fs::read_dir(&vdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["2.tar.gz"]);
    let kept = vdir.join("2.tar.gz");
    assert!(Command::new("gzip")
        .arg("-t")
        .arg(&kept)
        .status()
        .unwrap()
        .success());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&kept), mode(&vdir)), (0o600, 0o700));
    let sha = Command::new("sha256sum").arg(&kept).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout)[..64].to_string();
    let log = std::fs::read_to_string(stack_dir.join("backups.log")).unwrap();
    assert!(
        log.lines()
            .last()
            .unwrap()
            .contains(&format!("sha256={sha}")),
        "{log}"
    );
    from.wsm_with(&["stack", "backup", "status", &from.name], &remote)
        .ok();
    from.wsm_with(
        &["stack", "backup", "verify", "--against-live", &from.name],
        &remote,
    )
    .ok();
    // Restored from there, after the volume was emptied: the same files.
    docker_on(
        &sw.worker.name,
        &[
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            "-v",
            &format!("{volume}:/v"),
            &image,
            "-c",
            "rm -rf /v/*",
        ],
    );
    from.wsm_with(&["stack", "restore", &from.name], &remote)
        .ok();
    assert_eq!(from.sums_on(&sw.worker, &image), original);

    // A fresh stack on the manager, scaled to 0 and its volume removed: restore creates it
    // with the compose file's labels, and the files are the worker's, byte for byte.
    let to = VolumeStack::new("wsmvolm");
    let f = write(&to.name, file(&sw.manager));
    to.wsm(&["stack", "deploy", "-c", &f, "--timeout", "120", &to.name])
        .ok();
    to.wsm(&["stack", "-s", &to.name, "scale", "db=0"]).ok();
    let to_volume = format!("{}_data", to.name);
    wait_for("the fresh volume free", 60, || {
        docker_on_output(&sw.manager.name, &["volume", "rm", &to_volume])
            .status
            .success()
    });
    to.wsm(&[
        "stack", "restore", "--volume", "data", "--from", &archive, &to.name,
    ])
    .ok();
    let labels = docker_on(
        &sw.manager.name,
        &[
            "volume",
            "inspect",
            "--format",
            "{{json .Labels}}",
            &to_volume,
        ],
    );
    assert!(
        labels.contains("\"purpose\":\"wsm-volume-test\""),
        "{labels}"
    );
    assert_eq!(to.sums_on(&sw.manager, &image), original);
}
