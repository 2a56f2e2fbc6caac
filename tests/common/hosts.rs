//! Hosts of this machine for the multi-host suites (tests/swarm.rs, tests/faults.rs,
//! tests/generic.rs, tests/spawn_hosts.rs): a test's SSH identity and wsm environment (`Bed`), a
//! netns host with sshd (`Host`), and the fake DigitalOcean API (`FakeDo`), each cleaned up in
//! `Drop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{output_within, unique, wait_for, Run, IMAGES, WSM_DEADLINE};

pub const NETNS_HOST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/netns-host");
pub const FAKE_DO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fake-digitalocean/server.py"
);

/// A first netns-host index for this process: spread so parallel test binaries rarely collide
/// (netns-host refuses a used index under its lock; callers move on to the next one).
pub fn index_base() -> u32 {
    100 + (std::process::id() % 7) * 20
}

/// A test's SSH identity and wsm environment: key, ssh config, known_hosts, wrapper, config dir.
pub struct Bed {
    pub dir: tempfile::TempDir,
}

impl Bed {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("bin")).unwrap();
        std::fs::create_dir_all(p.join("config")).unwrap();
        std::fs::write(p.join("config/default"), "").unwrap();
        let key = p.join("id_ed25519");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "wsm-test", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen");
        std::fs::write(p.join("known_hosts"), "").unwrap();
        std::fs::write(
            p.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
                key.display(),
                p.join("known_hosts").display()
            ),
        )
        .unwrap();
        let wrapper = p.join("bin/ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                p.join("ssh_config").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Bed { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn public_key(&self) -> PathBuf {
        self.path("id_ed25519.pub")
    }

    /// `wsm -C <config> …` with this bed's ssh, XDG dirs and short timeouts.
    pub fn command(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wsm"));
        c.arg("-C")
            .arg(config)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("WSM_CONFIG_DIR")
            .env_remove("DOCKER_HOST")
            .env_remove("SSH_AUTH_SOCK")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.path("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("XDG_CONFIG_HOME", self.path(".xdg-config"))
            .env("XDG_STATE_HOME", self.path(".xdg-state"))
            .env("WSM_SSH_TIMEOUT", "5");
        c
    }

    /// Ends the SSH masters wsm shares between its processes in this bed (`src/host/ssh/mux.rs`:
    /// they otherwise end WSM_SSH_PERSIST seconds after their last use), as its doc says:
    /// `ssh -S <socket> -O exit none`. Returns how many answered.
    pub fn end_masters(&self) -> usize {
        let dir = self.path(".xdg-state/wsm/ssh");
        let mut n = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("m-") || name.contains('.') {
                continue;
            }
            let ok = Command::new(self.path("bin/ssh"))
                .arg("-S")
                .arg(e.path())
                .args(["-O", "exit", "none"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            n += usize::from(ok);
        }
        n
    }

    pub fn wsm(&self, args: &[&str]) -> Run {
        self.wsm_in(&self.path("config"), args, "")
    }

    /// `wsm` with a 30 s SSH timeout instead of the bed's 5 s, for a check that does not time
    /// the connect: with two lanes of tests on 2 CPUs, sshd's handshake (which ssh's
    /// ConnectTimeout covers) has taken longer than 5 s.
    pub fn wsm_patient(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(&self.path("config"), args);
        output_within(cmd.env("WSM_SSH_TIMEOUT", "30"), b"", WSM_DEADLINE).into()
    }

    pub fn wsm_in(&self, config: &Path, args: &[&str], stdin: &str) -> Run {
        let mut cmd = self.command(config, args);
        output_within(&mut cmd, stdin.as_bytes(), WSM_DEADLINE).into()
    }
}

/// The port a fixture server prints first on stdout as `PORT=<n>`.
pub fn port_line(child: &mut Child, what: &str) -> u16 {
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("PORT=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{what} did not start: {line:?}"))
}

/// One netns host with sshd, brought down in Drop.
pub struct Host {
    pub name: String,
    pub env: std::collections::HashMap<String, String>,
}

impl Host {
    pub fn up(prefix: &str, authorized_keys: &Path) -> Host {
        Self::up_with(prefix, authorized_keys, &[])
    }

    /// `up` with more environment for netns-host (`WSM_HOSTS_DOCKERD_ARGS`: its dockerd's
    /// arguments).
    pub fn up_with(prefix: &str, authorized_keys: &Path, env: &[(&str, &str)]) -> Host {
        let name = unique(prefix);
        for index in index_base()..245 {
            let out = Command::new(NETNS_HOST)
                .args(["up", &name, &index.to_string(), "--sshd"])
                .arg(authorized_keys)
                .envs(env.iter().copied())
                .output()
                .unwrap();
            if out.status.success() {
                let env = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let host = Host { name, env };
                host.wait_for_sshd();
                return host;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("already used"), "netns-host up {name}: {err}");
        }
        panic!("no free netns-host index");
    }

    pub fn ip(&self) -> &str {
        &self.env["IP"]
    }

    /// Waits until the host's sshd accepts a TCP connection from this machine: a test's first
    /// ssh has seen its SYNs go unanswered for 30 s right after `netns-host up` on a loaded
    /// machine. Panics after 60 s with what the network looked like.
    fn wait_for_sshd(&self) {
        let addr: std::net::SocketAddr = format!("{}:22", self.ip()).parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
            .is_err()
        {
            if std::time::Instant::now() > deadline {
                let show = |args: &[&str]| {
                    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
                    String::from_utf8_lossy(&o.stdout).into_owned()
                };
                panic!(
                    "sshd of {} at {addr} accepted no connection for 60 s; neighbours: {}; bridge ports: {}; addresses inside: {}",
                    self.name,
                    show(&["ip", "neigh", "show", "to", self.ip()]),
                    show(&["bridge", "link"]),
                    show(&["ip", "-n", &self.name, "addr"]),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Makes the machine's `127.0.0.1:<port>` (a test's registry) answer on this host's loopback
    /// too (`netns-host forward`), so one image name pushes and pulls on every host.
    pub fn forward(&self, port: u16) {
        let out = Command::new(NETNS_HOST)
            .args(["forward", &self.name, &port.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "netns-host forward {} {port}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        Command::new(NETNS_HOST)
            .args(["down", &self.name])
            .output()
            .ok();
    }
}

/// The fake DigitalOcean API, stopped in Drop: it deletes the droplets (hosts) it made, and
/// every host its state still lists is brought down here as well.
pub struct FakeDo {
    child: Child,
    pub port: u16,
    pub state: PathBuf,
}

impl FakeDo {
    pub fn start(bed: &Bed, images: bool) -> FakeDo {
        Self::start_with_token(bed, images, "test-token")
    }

    /// The fake accepting `token`, which it is given in its environment (not on its command
    /// line, where a test may look for it).
    pub fn start_with_token(bed: &Bed, images: bool, token: &str) -> FakeDo {
        let state = bed.path("fake-do");
        let mut c = Command::new("python3");
        c.arg(FAKE_DO)
            .arg("--state-dir")
            .arg(&state)
            .env("FAKE_DO_TOKEN", token)
            .arg("--index-base")
            .arg(index_base().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if images {
            for image in IMAGES {
                c.args(["--load-image", image]);
            }
        }
        let mut child = c.spawn().expect("start the fake DigitalOcean API");
        let port = port_line(&mut child, "the fake DigitalOcean API");
        let fake = FakeDo { child, port, state };
        std::fs::write(
            bed.path("config/default"),
            format!(
                "DIGITALOCEAN_API_URL=http://127.0.0.1:{port}\nDIGITALOCEAN_POLL_MS=300\nDIGITALOCEAN_BACKOFF_MS=100\nSWARM_READY_TIMEOUT=120\n"
            ),
        )
        .unwrap();
        fake
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Makes matching requests fail: see server.py's /_fault.
    pub fn fault(&self, fault: Value) {
        let body = fault.to_string();
        let out = Command::new("curl")
            .args(["-fsS", "-X", "POST", "--data", &body, &self.url("/_fault")])
            .output()
            .unwrap();
        assert!(out.status.success(), "set fault");
    }

    /// Makes a droplet through the API as wsm would, without wsm: returns its id.
    pub fn create_droplet(&self, name: &str, tags: &[&str]) -> String {
        let body = serde_json::json!({"name": name, "region": "nyc1", "size": "s-1vcpu-1gb", "image": "debian-12-x64", "tags": tags});
        let out = Command::new("curl")
            .args(["-fsS", "-H", "Authorization: Bearer test-token", "--data"])
            .arg(body.to_string())
            .arg(self.url("/v2/droplets"))
            .output()
            .unwrap();
        assert!(out.status.success(), "create droplet {name}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["droplet"]["id"].to_string()
    }

    pub fn droplets(&self) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-fsS", &self.url("/_state")])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).expect("fake state");
        v["droplets"].as_array().cloned().unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for FakeDo {
    fn drop(&mut self) {
        // SIGTERM: the server deletes its droplets (hosts down), then exits.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.child.kill().ok();
        self.child.wait().ok();
        let text = std::fs::read_to_string(self.state.join("droplets.json")).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            for d in v["droplets"].as_array().cloned().unwrap_or_default() {
                if let Some(h) = d["_host"].as_str() {
                    Command::new(NETNS_HOST).args(["down", h]).output().ok();
                }
            }
        }
    }
}

/// `docker` against one netns host's own socket.
pub fn docker_on_output(host: &str, args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .arg("-H")
        .arg(format!("unix:///run/wsm-hosts/{host}/docker.sock"))
        .args(args)
        .output()
        .expect("docker CLI")
}

/// `docker_on` for clean-up: its output, "" when it failed.
pub fn docker_on_quiet(host: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&docker_on_output(host, args).stdout).into_owned()
}

/// `docker` against one netns host's own socket; fails the test when docker fails.
pub fn docker_on(host: &str, args: &[&str]) -> String {
    let out = docker_on_output(host, args);
    assert!(
        out.status.success(),
        "docker on {host} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ready_nodes(host: &str) -> Vec<String> {
    docker_on(
        host,
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
    )
    .lines()
    .filter(|l| l.ends_with(" Ready"))
    .map(|l| l.split(' ').next().unwrap().to_string())
    .collect()
}

/// Writes the hosts' SSH host keys into the bed's known_hosts, so wsm's ssh trusts them.
pub fn trust(bed: &Bed, hosts: &[&Host]) {
    let mut known = String::new();
    for h in hosts {
        known += &std::fs::read_to_string(&h.env["SSH_KNOWN_HOSTS"]).unwrap();
    }
    std::fs::write(bed.path("known_hosts"), known).unwrap();
}

/// Loads images of this machine's engine into every host's engine, the hosts at once.
pub fn load_images(hosts: &[&Host], images: &[&str]) {
    let loads: Vec<_> = hosts
        .iter()
        .map(|h| {
            Command::new(NETNS_HOST)
                .args(["load-image", &h.name])
                .args(images)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for l in loads {
        let out = l.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "netns-host load-image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Makes a swarm: `first` initialises it, `others` join it as `role` ("manager" or
/// "worker"); waits until every node is ready.
pub fn form_swarm(first: &Host, others: &[&Host], role: &str) {
    docker_on(
        &first.name,
        &["swarm", "init", "--advertise-addr", first.ip()],
    );
    let token = docker_on(&first.name, &["swarm", "join-token", "-q", role]);
    for h in others {
        docker_on(
            &h.name,
            &[
                "swarm",
                "join",
                "--advertise-addr",
                h.ip(),
                "--token",
                token.trim(),
                &format!("{}:2377", first.ip()),
            ],
        );
    }
    wait_for("every node ready", 90, || {
        ready_nodes(&first.name).len() == others.len() + 1
    });
}
