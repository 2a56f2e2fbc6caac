//! The one test-builder of the integration tests: a uniquely named stack on the real local
//! swarm, with its own config directory, run through the real `wsm` binary, and removed in
//! `Drop` (services, network, volumes) even when the test fails. The Docker CLI is the witness.
#![allow(dead_code)]

pub mod apiproxy;
pub mod corpus;
pub mod hosts;
pub mod measure;
pub mod store;
pub mod synced;
pub mod webhook;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Images the stack tests need; `tests/fixtures/build-images` makes them.
pub const IMAGES: &[&str] = &[
    "localhost:5000/wavelet-stack-lb:latest",
    "localhost:5000/wavelet-stack-node:latest",
];

/// Fails the test (never skips it) when the test bed has not been built.
pub fn require_images() {
    for image in IMAGES {
        let ok = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "image {image} is missing: run tests/fixtures/build-images (the README's test command does)");
    }
}

/// How long one `wsm` run of a test may take: no command of the suite comes near it, so one
/// that has not ended by then hangs, and the test fails naming it and showing what it printed
/// (instead of the whole run waiting for CI's limit with nothing to show).
pub const WSM_DEADLINE: Duration = Duration::from_secs(600);

/// How long one Docker CLI call of a test may take (an engine that stopped answering).
pub const DOCKER_DEADLINE: Duration = Duration::from_secs(300);

/// Runs `cmd` to its end with `stdin` as its input and its output collected, as
/// `Command::output` does, but within `limit` (see [`finish_within`]).
pub fn output_within(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", command_line(cmd)));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    std::thread::spawn(move || input.write_all(&stdin));
    finish_within(child, &command_line(cmd), limit)
}

/// A command as it would be typed (for a test's failure message).
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for a spawned process and collects the output of its piped streams, as
/// `Child::wait_with_output` does, but within `limit`: past it the process is killed and the
/// test fails naming `what` and showing what it had printed. A process it left behind holding
/// its output open (which `wait_with_output` would wait for) fails the test the same way.
pub fn finish_within(mut child: std::process::Child, what: &str, limit: Duration) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let pipes: [(usize, Option<Box<dyn Read + Send>>); 2] = [
        (0, child.stdout.take().map(|p| Box::new(p) as _)),
        (1, child.stderr.take().map(|p| Box::new(p) as _)),
    ];
    let mut pending = 0;
    for (i, pipe) in pipes {
        let Some(mut pipe) = pipe else { continue };
        pending += 1;
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    let until = Instant::now() + limit;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait().expect("wait for a test's process") {
            Some(status) => break Some(status),
            None if Instant::now() < until => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // Once the process has ended its output ends with it, unless something it started holds
    // the pipes: they are waited for until the deadline, and at least a few seconds.
    let mut out = [Vec::new(), Vec::new()];
    let grace = until.max(Instant::now() + Duration::from_secs(10));
    while pending > 0 {
        match rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
            Ok((i, buf)) => {
                out[i] = buf;
                pending -= 1;
            }
            Err(_) => break,
        }
    }
    let [stdout, stderr] = out;
    let shown = || {
        format!(
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )
    };
    let Some(status) = status else {
        panic!(
            "{what} did not end within {} s; killed\n{}",
            limit.as_secs(),
            shown()
        );
    };
    assert!(
        pending == 0,
        "{what} ended ({status}) but a process it left behind holds its output open\n{}",
        shown()
    );
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs the Docker CLI and returns its stdout; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = output_within(Command::new("docker").args(args), b"", DOCKER_DEADLINE);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the Docker CLI, ignoring failure.
pub fn docker_quiet(args: &[&str]) -> String {
    let out = output_within(Command::new("docker").args(args), b"", DOCKER_DEADLINE);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique name for this test run: lower-case, no dashes (so the stack's swarm is `default`).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{:x}{:x}{}",
        std::process::id() & 0xffff,
        nanos & 0xfff,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// What a `wsm` run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "wsm failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// A test's own stack: unique name, own config dir and working directory.
pub struct TestStack {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl TestStack {
    /// A stack in the network world this machine supports (dnsrr + host-mode ports).
    pub fn new(prefix: &str) -> Self {
        let s = Self::bare(prefix);
        s.set("WSM_ENDPOINT_MODE", "dnsrr");
        s.set("WSM_PUBLISH_MODE", "host");
        s.set("WSM_DEPLOY_TIMEOUT", "180");
        s
    }

    /// A stack with an empty config file.
    pub fn bare(prefix: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config/stacks")).unwrap();
        std::fs::write(dir.path().join("config/default"), "").unwrap();
        let s = TestStack {
            name: unique(prefix),
            dir,
        };
        std::fs::write(s.config_file(), "").unwrap();
        s
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("stacks").join(&self.name)
    }

    /// The user's own script folder (`$XDG_CONFIG_HOME/wsm/`) of the stack's runs: scripts
    /// dropped in here are on the search path (the working directory never is).
    pub fn script_folder(&self) -> PathBuf {
        self.dir.path().join(".xdg-config/wsm")
    }

    /// Sets KEY=VALUE in the stack's config file (replacing an earlier value).
    pub fn set(&self, key: &str, value: &str) {
        let path = self.config_file();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}=")))
            .map(str::to_string)
            .collect();
        lines.push(format!("{key}={value}"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }

    /// Runs `wsm -C <config> <args…>` in the stack's directory.
    pub fn wsm(&self, args: &[&str]) -> Run {
        wsm_in(self.dir.path(), &self.config_dir(), args)
    }

    /// `wsm -C <config> <args…>` to be customised before it runs.
    pub fn command(&self, args: &[&str]) -> Command {
        wsm_command(self.dir.path(), &self.config_dir(), args)
    }

    /// Runs `wsm stack -s <name> <args…>`.
    pub fn stack(&self, args: &[&str]) -> Run {
        let mut all = vec!["stack", "-s", self.name.as_str()];
        all.extend_from_slice(args);
        self.wsm(&all)
    }

    /// The stack's service names, as the Docker CLI sees them.
    pub fn services(&self) -> Vec<String> {
        let out = docker(&[
            "service",
            "ls",
            "--filter",
            &format!("label=com.docker.stack.namespace={}", self.name),
            "--format",
            "{{.Name}}",
        ]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// Running tasks of one of the stack's services (`docker service ps`).
    pub fn running_tasks(&self, service: &str) -> Vec<String> {
        docker(&[
            "service",
            "ps",
            &format!("{}_{service}", self.name),
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.CurrentState}}",
        ])
        .lines()
        .filter(|l| l.contains("Running"))
        .map(str::to_string)
        .collect()
    }

    /// The container id of a service's running task in slot `slot`.
    pub fn container(&self, service: &str, slot: u32) -> String {
        let out = docker(&[
            "ps",
            "--filter",
            &format!(
                "label=com.docker.swarm.service.name={}_{service}",
                self.name
            ),
            "--filter",
            "status=running",
            "--format",
            "{{.ID}} {{.Names}}",
        ]);
        out.lines()
            .find(|l| l.contains(&format!("_{service}.{slot}.")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no running container for {service}.{slot}:\n{out}"))
            .to_string()
    }

    /// Names of the stack's volumes.
    pub fn volumes(&self) -> Vec<String> {
        let mut v: Vec<String> = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}_", self.name),
        ])
        .lines()
        .map(str::to_string)
        .collect();
        v.sort();
        v
    }
}

/// `wsm -C <config> <args…>` ready to run in `cwd`, with the user's own config and state out
/// of the way; tests add stdin, env or pipes before running it.
pub fn wsm_command(cwd: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsm"));
    cmd.arg("-C")
        .arg(config)
        .args(args)
        .current_dir(cwd)
        .env_remove("WSM_CONFIG_DIR")
        .env("XDG_CONFIG_HOME", cwd.join(".xdg-config"))
        .env("XDG_STATE_HOME", cwd.join(".xdg-state"));
    cmd
}

/// Runs wsm in `cwd` with config dir `config`.
pub fn wsm_in(cwd: &Path, config: &Path, args: &[&str]) -> Run {
    output_within(&mut wsm_command(cwd, config, args), b"", WSM_DEADLINE).into()
}

/// Removes a stack and its volumes with the Docker CLI and waits until it is gone.
pub fn remove_stack(name: &str) {
    docker_quiet(&["stack", "rm", name]);
    let label = format!("label=com.docker.stack.namespace={name}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let left = docker_quiet(&["service", "ls", "-q", "--filter", &label])
            + &docker_quiet(&["network", "ls", "-q", "--filter", &label])
            + &docker_quiet(&["ps", "-aq", "--filter", &label]);
        if left.trim().is_empty() {
            break;
        }
        docker_quiet(&["network", "rm", &format!("{name}_default")]);
        // A completed job's container, which the engine keeps after `docker stack rm`.
        let exited = docker_quiet(&["ps", "-aq", "--filter", &label, "--filter", "status=exited"]);
        for id in exited.split_whitespace() {
            docker_quiet(&["rm", id]);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for v in docker_quiet(&["volume", "ls", "-q", "--filter", &format!("name={name}_")]).lines() {
        docker_quiet(&["volume", "rm", "-f", v]);
    }
    // The stack's revisions (src/host/docker/revisions.rs) outlive `docker stack rm`.
    docker_quiet(&["config", "rm", &format!("wsm-state-stack.{name}.revisions")]);
}

impl Drop for TestStack {
    fn drop(&mut self) {
        remove_stack(&self.name);
    }
}

/// Waits until `check` holds, or panics after `secs` naming what was awaited.
pub fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A TCP port that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real image registry of a test's own (tests/fixtures/registry, Debian's docker-registry) on
/// a free loopback port, stopped and its storage removed in `Drop`.
pub struct Registry {
    pub port: u16,
}

impl Registry {
    /// Starts one, with `htpasswd` logins when given.
    pub fn start(htpasswd: Option<&Path>) -> Self {
        let port = free_port();
        let mut cmd = Command::new(REGISTRY_FIXTURE);
        cmd.args(["up", &port.to_string()]);
        if let Some(h) = htpasswd {
            cmd.arg("--htpasswd").arg(h);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "registry: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Registry { port }
    }

    /// `127.0.0.1:<port>`, as images and REGISTRY name it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(REGISTRY_FIXTURE)
            .args(["down", &self.port.to_string()])
            .status();
    }
}

const REGISTRY_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/registry");

/// GET over plain HTTP/1.0 on loopback with a timeout; returns (status, body).
pub fn http_get(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let addr = format!("{host}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Every leaf path where the two values differ.
pub fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (p, q) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{k}"), p, q, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(format!("{path}: wsm {a} / docker stack deploy {b}")),
        _ => {}
    }
}

/// The files of a tar stream (gzip-compressed when `gzip`), such as a dump-db archive: path
/// below the top folder → bytes.
pub fn tar_files(
    reader: impl std::io::Read,
    gzip: bool,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut out = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(reader).entries().unwrap() {
        let mut e = entry.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let p = e.path().unwrap().into_owned();
        let rel: PathBuf = p.components().skip(1).collect();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        out.insert(rel.display().to_string(), bytes);
    }
    out
}

/// The files of a tar.gz made by dump-db: path below the top folder → bytes.
pub fn archive_files(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    tar_files(std::fs::File::open(path).unwrap(), true)
}

/// What `docker node inspect` and the reservations of the running tasks (`docker node ps`,
/// `docker inspect`) say each node has free, through the Docker CLI: `docker` runs a command
/// for the node queries, `task` for a task's inspect (a quiet one gives "" for a task gone
/// meanwhile). Returns (node ID, hostname, free memory in bytes, free CPU shares).
pub fn witnessed_free(
    docker: &dyn Fn(&[&str]) -> String,
    task: &dyn Fn(&[&str]) -> String,
) -> Vec<(String, String, i64, i64)> {
    let mut out = Vec::new();
    for id in docker(&["node", "ls", "-q"]).lines() {
        let node: Value = serde_json::from_str(&docker(&[
            "node",
            "inspect",
            id,
            "--format",
            "{{json .Description}}",
        ]))
        .unwrap();
        let mut mem = node["Resources"]["MemoryBytes"].as_i64().unwrap();
        let mut cpu = node["Resources"]["NanoCPUs"].as_i64().unwrap();
        let tasks = docker(&[
            "node",
            "ps",
            id,
            "-q",
            "--no-trunc",
            "--filter",
            "desired-state=running",
        ]);
        for t in tasks.lines().filter(|t| !t.is_empty()) {
            let r: Value =
                serde_json::from_str(&task(&["inspect", t, "--format", "{{json .Spec}}"]))
                    .unwrap_or(Value::Null);
            // A task that reserves nothing has no Resources at all.
            let r = &r["Resources"]["Reservations"];
            mem -= r["MemoryBytes"].as_i64().unwrap_or(0);
            cpu -= r["NanoCPUs"].as_i64().unwrap_or(0);
        }
        let host = node["Hostname"].as_str().unwrap().to_string();
        out.push((id.to_string(), host, mem, cpu * 1024 / 1_000_000_000));
    }
    out
}

/// Runs git in `cwd` as a test user.
pub fn git(args: &[&str], cwd: &Path) {
    let out = Command::new("git")
        .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
