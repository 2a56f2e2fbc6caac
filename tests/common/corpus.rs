//! The corpus of real stack files (`tests/corpus/`, sources in its `SOURCES.md`) as the tests
//! that deploy it share it: the folders, each one's stack file, the interpolation values the
//! files require, and the objects they expect to exist outside their stacks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{docker, docker_quiet, remove_stack};

/// Interpolation values the files require (`${DOMAIN?…}` and the like).
pub const ENV: &[(&str, &str)] = &[
    ("DOMAIN", "corpus.example"),
    ("EMAIL", "admin@corpus.example"),
    ("USERNAME", "admin"),
    ("HASHED_PASSWORD", "$apr1$x$y"),
    ("ADMIN_USER", "admin"),
    ("NODE_ID", "corpus-node"),
];

/// Networks the files name as external.
const NETWORKS: &[&str] = &[
    "traefik-public",
    "proxy",
    "agent_network",
    "monitor",
    "logging_default",
    "traefik_traefik-net",
];

/// Secrets the files name as external.
const SECRETS: &[&str] = &[
    "postgres_password",
    "staging_token",
    "revprox_key",
    "revprox_cert",
    "secret_key",
    "access_key",
    "jenkins-user",
    "jenkins-pass",
    "alert_manager_config",
    "dfp_stats_user",
    "dfp_stats_pass",
];

/// The corpus folders, sorted.
pub fn dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The stack file of a corpus folder: its one `.yml` or `.yaml` at the top.
pub fn stack_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .unwrap_or_else(|| panic!("no stack file in {}", dir.display()))
}

/// What a test deploying the corpus leaves behind, removed in `Drop` even when it fails: the
/// outside objects it made (only those), and the stacks it names in `stacks`. Every test of
/// the machine that makes them uses the same names, so such tests take turns (`_turn`), in
/// this checkout or another.
pub struct Outside {
    networks: Vec<String>,
    secrets: Vec<String>,
    pub stacks: Vec<String>,
    _turn: Option<std::fs::File>,
}

impl Outside {
    /// Stacks to remove at the end, and nothing else.
    pub fn stacks_only() -> Self {
        Outside {
            networks: Vec::new(),
            secrets: Vec::new(),
            stacks: Vec::new(),
            _turn: None,
        }
    }

    /// Waits for its turn, then makes the outside objects that are missing.
    pub fn new() -> Self {
        let mut o = Outside::stacks_only();
        o._turn = Some(machine_turn());
        for n in NETWORKS {
            if !exists("network", n) {
                docker(&["network", "create", "-d", "overlay", "--attachable", n]);
                o.networks.push(n.to_string());
            }
        }
        for s in SECRETS {
            if !exists("secret", s) {
                let mut child = Command::new("docker")
                    .args(["secret", "create", s, "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"corpus").unwrap();
                assert!(child.wait().unwrap().success(), "docker secret create {s}");
                o.secrets.push(s.to_string());
            }
        }
        o
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for s in &self.stacks {
            remove_stack(s);
        }
        for s in &self.secrets {
            docker_quiet(&["secret", "rm", s]);
        }
        for n in &self.networks {
            docker_quiet(&["network", "rm", n]);
        }
    }
}

/// Waits for this machine's other corpus runs to finish: a lock on a file every run opens.
fn machine_turn() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::create(std::env::temp_dir().join("wsm-corpus-test.lock")).unwrap();
    // SAFETY: flock on a descriptor this function owns; released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    file
}

/// Whether `docker <kind> inspect <name>` finds it.
fn exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([kind, "inspect", name])
        .output()
        .is_ok_and(|o| o.status.success())
}
