//! The test bed of tests/faults.rs: one swarm of a manager and a worker for the whole binary,
//! a test's own stack on it (`Case`), and the faults: an engine killed and revived, an SSH link
//! cut, a registry that fails pushes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::common::hosts::*;
use crate::common::*;

/// The shared swarm: a manager and a worker, both reached over SSH.
pub struct Swarm {
    pub bed: Bed,
    pub name: String,
    pub manager: Host,
    pub worker: Host,
}

pub static SWARM: OnceLock<Swarm> = OnceLock::new();

/// Killing an engine disturbs every stack on the bed: those tests take this exclusively.
pub static ENGINES: RwLock<()> = RwLock::new(());

pub fn swarm() -> &'static Swarm {
    SWARM.get_or_init(|| {
        let s = Swarm::new();
        // Statics are never dropped: bring the hosts down when the test binary exits.
        unsafe { libc::atexit(tear_down) };
        s
    })
}

extern "C" fn tear_down() {
    if let Some(s) = SWARM.get() {
        for h in [&s.manager, &s.worker] {
            Command::new(NETNS_HOST)
                .args(["down", &h.name])
                .output()
                .ok();
        }
        std::fs::remove_dir_all(s.bed.dir.path()).ok();
    }
}

impl Swarm {
    pub fn new() -> Swarm {
        let t0 = Instant::now();
        let bed = Bed::new();
        // On a panic below, the hosts made so far go down with their `Drop`.
        let manager = Host::up("wfm", &bed.public_key());
        let worker = Host::up("wfw", &bed.public_key());
        trust(&bed, &[&manager, &worker]);
        load_images(&[&manager, &worker], IMAGES);
        form_swarm(&manager, &[&worker], "worker");
        eprintln!("faults: test bed ready in {:?}", t0.elapsed());
        Swarm {
            bed,
            name: unique("wfs"),
            manager,
            worker,
        }
    }

    /// The swarm's record, as `swarm create` would write it.
    pub fn record(&self) -> String {
        format!(
            "SWARM_NAME={}\nDOCKER_HOST=ssh://root@{}\nSWARM_HOSTS={}/{}/,{}/{}/\n",
            self.name,
            self.manager.ip(),
            self.manager.name,
            self.manager.ip(),
            self.worker.name,
            self.worker.ip()
        )
    }
}

/// A test's own stack on the shared swarm, with its own config and state folders; `Drop`
/// removes its services, network and volumes on both hosts.
pub struct Case {
    pub dir: tempfile::TempDir,
    pub stack: String,
}

impl Case {
    pub fn new(prefix: &str) -> Case {
        let sw = swarm();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir_all(config.join("swarms")).unwrap();
        std::fs::create_dir_all(config.join("stacks")).unwrap();
        std::fs::write(config.join("default"), "").unwrap();
        std::fs::write(config.join("swarms").join(&sw.name), sw.record()).unwrap();
        let stack = format!("{}-{}", sw.name, unique(prefix));
        let case = Case { dir, stack };
        std::fs::write(
            case.config_file(),
            "WAVELET_NODES=2\nWAVELET_NO_RPC=true\nWSM_ENDPOINT_MODE=dnsrr\nWSM_PUBLISH_MODE=host\nWSM_DEPLOY_TIMEOUT=120\n",
        )
        .unwrap();
        case
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_file(&self) -> PathBuf {
        self.path(&format!("config/stacks/{}", self.stack))
    }

    /// `wsm stack -s <stack> <args…>` with the bed's SSH identity and this case's folders.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["stack", "-s", self.stack.as_str()];
        all.extend_from_slice(args);
        let mut c = swarm().bed.command(&self.path("config"), &all);
        c.current_dir(self.dir.path())
            .env("XDG_STATE_HOME", self.path(".xdg-state"))
            .env("XDG_CONFIG_HOME", self.path(".xdg-config"));
        c
    }

    pub fn stack(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }

    /// Starts `wsm stack …` in the background, its output collected by `finish`.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `docker service ls` of the stack on the manager: "name replicas" lines, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut v: Vec<String> = docker_on(
            &swarm().manager.name,
            &[
                "service",
                "ls",
                "--filter",
                &format!("label=com.docker.stack.namespace={}", self.stack),
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
        )
        .lines()
        .map(str::to_string)
        .collect();
        v.sort();
        v
    }

    /// Whether every service of the stack exists and runs all its replicas.
    pub fn converged(&self) -> bool {
        let s = self.services();
        s.len() == 4
            && s.iter().all(|l| {
                let r = l.split(' ').nth(1).unwrap_or("");
                r.split_once('/').is_some_and(|(a, b)| a == b)
            })
    }

    /// The running container and slot of a wavelet node on `host`.
    pub fn node_on(&self, host: &Host) -> (String, String) {
        let out = docker_on(
            &host.name,
            &[
                "ps",
                "--filter",
                &format!("label=com.docker.swarm.service.name={}_wavelet", self.stack),
                "--format",
                "{{.ID}} {{.Names}}",
            ],
        );
        let line = out
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no wavelet node on {}", host.name));
        let (id, name) = line.split_once(' ').unwrap();
        let slot = name.split('.').nth(1).unwrap().to_string();
        (id.to_string(), slot)
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let sw = swarm();
        let label = format!("label=com.docker.stack.namespace={}", self.stack);
        let on = |h: &Host, args: &[&str]| docker_on_quiet(&h.name, args);
        on(&sw.manager, &["stack", "rm", &self.stack]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let left = on(&sw.manager, &["service", "ls", "-q", "--filter", &label])
                + &on(&sw.manager, &["ps", "-aq", "--filter", &label])
                + &on(&sw.worker, &["ps", "-aq", "--filter", &label]);
            if left.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        on(
            &sw.manager,
            &["network", "rm", &format!("{}_default", self.stack)],
        );
        for h in [&sw.manager, &sw.worker] {
            let filter = format!("name={}_", self.stack);
            for v in on(h, &["volume", "ls", "-q", "--filter", &filter]).lines() {
                on(h, &["volume", "rm", "-f", v]);
            }
        }
        std::fs::remove_file(format!("/etc/wavelet-stack/{}", self.stack)).ok();
    }
}

/// Kills a host's dockerd at once (SIGKILL), as a crash would.
pub fn kill_dockerd(host: &Host) {
    let pid = std::fs::read_to_string(format!("/run/wsm-hosts/{}/docker.pid", host.name))
        .expect("dockerd pid file");
    let pid: i32 = pid.trim().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Restarts a host's dockerd (`netns-host up` repairs a host) and waits until the swarm has
/// both nodes ready again: in `Drop`, so the next test gets a whole bed even after a failure.
pub struct Revive<'a>(pub &'a Host);

impl Drop for Revive<'_> {
    fn drop(&mut self) {
        let sw = swarm();
        // On a loaded machine containerd may not start in time: try again.
        let mut last = String::new();
        for _ in 0..3 {
            let out = Command::new(NETNS_HOST)
                .args(["up", &self.0.name, &self.0.env["INDEX"], "--sshd"])
                .arg(sw.bed.public_key())
                .output()
                .unwrap();
            if out.status.success() {
                last.clear();
                break;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        let ready = || {
            Command::new("docker")
                .arg("-H")
                .arg(format!(
                    "unix:///run/wsm-hosts/{}/docker.sock",
                    sw.manager.name
                ))
                .args(["node", "ls", "--format", "{{.Status}}"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).matches("Ready").count() == 2)
                .unwrap_or(false)
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while last.is_empty() && !ready() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        // No second panic while a failed test unwinds: that would abort the whole binary.
        if !std::thread::panicking() {
            assert!(last.is_empty(), "netns-host up {}: {last}", self.0.name);
            assert!(
                ready(),
                "the swarm lacks a ready node after reviving {}",
                self.0.name
            );
        }
    }
}

/// Waits for a background wsm, killing it after `secs`; returns its run and how long it took
/// from `since`.
pub fn finish(mut child: Child, since: Instant, secs: u64) -> (Run, Duration) {
    let deadline = since + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "wsm still ran {secs} s after the fault:\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = since.elapsed();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .ok();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .ok();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (
        Run {
            code,
            stdout,
            stderr,
        },
        took,
    )
}

/// The `error:` line of a failed run: exactly one, and no raw engine or transport dump.
pub fn error_line(r: &Run) -> String {
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{}", r.stderr);
    let line = errors[0].to_string();
    assert!(
        !line.contains("hyper") && !line.contains("Error {") && line.len() < 400,
        "not a clear message: {line}"
    );
    line
}

/// The files of a folder whose names start with `prefix`.
pub fn files_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Fills a node's /db with `mb` MB of random data so that copying it takes a few seconds.
pub fn grow_db(host: &Host, container: &str, mb: u32) {
    docker_on(
        &host.name,
        &[
            "exec",
            container,
            "sh",
            "-c",
            &format!("head -c {mb}000000 /dev/urandom > /db/ballast"),
        ],
    );
}

/// Waits until a dump is being written: its temp file beside `out` has passed 1 MB.
pub fn wait_for_partial(out: &Path) {
    let dir = out.parent().unwrap();
    let name = format!(".{}.", out.file_name().unwrap().to_string_lossy());
    wait_for("the dump to be half-way", 60, || {
        files_starting(dir, &name)
            .iter()
            .any(|f| std::fs::metadata(dir.join(f)).is_ok_and(|m| m.len() > 1_000_000))
    });
}

/// Drops, in a host's namespace, the packets of the one SSH connection a wsm run holds to it
/// (its master, found by the control folder under that run's state folder); removed in `Drop`.
pub struct Cut {
    host: String,
    rules: Vec<Vec<String>>,
}

impl Cut {
    pub fn link(host: &Host, state_dir: &Path) -> Cut {
        let state = state_dir.to_string_lossy().into_owned();
        let pids = Command::new("pgrep")
            .args(["-f", &format!("^(\\S*/)?ssh .*{state}")])
            .output()
            .unwrap();
        let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let ss = Command::new("ss").args(["-Htnp"]).output().unwrap();
        let ss = String::from_utf8_lossy(&ss.stdout);
        let port = ss
            .lines()
            .filter(|l| l.contains(&format!("{}:22 ", host.ip())))
            .filter(|l| pids.iter().any(|p| l.contains(&format!("pid={p},"))))
            .find_map(|l| {
                l.split_whitespace()
                    .nth(3)?
                    .rsplit(':')
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                panic!("no ssh connection of pids {pids:?} to {}:\n{ss}", host.ip())
            });
        let rules = vec![
            vec![
                "INPUT".into(),
                "-p".into(),
                "tcp".into(),
                "--sport".into(),
                port.clone(),
                "-j".into(),
                "DROP".into(),
            ],
            vec![
                "OUTPUT".into(),
                "-p".into(),
                "tcp".into(),
                "--dport".into(),
                port,
                "-j".into(),
                "DROP".into(),
            ],
        ];
        for r in &rules {
            let out = Command::new(NETNS_HOST)
                .args(["exec", &host.name, "iptables", "-I"])
                .args(r)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "iptables: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Cut {
            host: host.name.clone(),
            rules,
        }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for r in &self.rules {
            Command::new(NETNS_HOST)
                .args(["exec", &self.host, "iptables", "-D"])
                .args(r)
                .output()
                .ok();
        }
    }
}

pub const FAILING_REGISTRY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/failing-registry/server.py"
);

/// tests/fixtures/failing-registry on loopback, with a tiny base image tagged for it so that
/// the builds are quick; `Drop` stops it and removes the images made for and by the test.
pub struct FailingRegistry {
    child: Child,
    pub addr: String,
    pub base: String,
}

impl FailingRegistry {
    pub fn start() -> FailingRegistry {
        let mut child = Command::new("python3")
            .arg(FAILING_REGISTRY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port = port_line(&mut child, "tests/fixtures/failing-registry");
        let addr = format!("127.0.0.1:{port}");
        let base = format!("{addr}/wavelet:latest");
        let out = Command::new("sh")
            .args([
                "-c",
                "tar -cf - --files-from /dev/null | docker import - \"$1\"",
                "import",
            ])
            .arg(&base)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        FailingRegistry { child, addr, base }
    }
}

impl Drop for FailingRegistry {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        for image in ["wavelet-stack-lb", "wavelet-stack-node", "wavelet"] {
            docker_quiet(&["rmi", "-f", &format!("{}/{image}:latest", self.addr)]);
        }
    }
}
