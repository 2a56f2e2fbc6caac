//! Remote swarms (issue 16): a netns host with its own dockerd and sshd (tests/fixtures/netns-host),
//! a swarm of one, a stack deployed on it with the Docker CLI, reached by wsm over real SSH
//! (`DOCKER_HOST=ssh://root@<ip>` in the stack's config). The witnesses are `pgrep` (the ssh
//! processes alive, by the bed's private paths and the host's address), the file system (no
//! `.ssh-connection*` folder anywhere wsm could write one) and the Docker CLI on the host's own
//! socket. See `src/host/ssh/mux.rs` for the design: one shared master per host, found by later
//! wsm processes, ending `WSM_SSH_PERSIST` seconds after its last use.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::hosts::*;
use common::*;
use rexpect::session::spawn_command;

/// The persist time the test sets (the default is 60 s; the test does not wait that long).
const PERSIST: u64 = 4;

/// A host with a swarm of one and a stack `<name>` of one service with no task (replicas: 0,
/// so no image has to be loaded), configured in the bed as a remote stack.
struct RemoteStack {
    bed: Bed,
    host: Host,
    stack: String,
}

impl RemoteStack {
    fn up(prefix: &str) -> RemoteStack {
        let bed = Bed::new();
        let host = Host::up(prefix, &bed.public_key());
        trust(&bed, &[&host]);
        form_swarm(&host, &[], "manager");
        let stack = unique("rs");
        let compose = bed.path("stack.yml");
        std::fs::write(
            &compose,
            "services:\n  app:\n    image: localhost:5000/wavelet:latest\n    deploy:\n      replicas: 0\n",
        )
        .unwrap();
        docker_on(
            &host.name,
            &[
                "stack",
                "deploy",
                "--resolve-image",
                "never",
                "-c",
                compose.to_str().unwrap(),
                &stack,
            ],
        );
        for d in ["home", "tmp", "config/stacks"] {
            std::fs::create_dir_all(bed.path(d)).unwrap();
        }
        std::fs::write(
            bed.path(&format!("config/stacks/{stack}")),
            format!(
                "DOCKER_HOST=ssh://root@{}\nWSM_COMPOSE_FILES={}\n",
                host.ip(),
                compose.display()
            ),
        )
        .unwrap();
        RemoteStack { bed, host, stack }
    }

    /// `wsm …` in the bed, with its own HOME, TMPDIR and persist time.
    fn command(&self, persist: u64, args: &[&str]) -> Command {
        let mut c = self.bed.command(&self.bed.path("config"), args);
        c.env("HOME", self.bed.path("home"))
            .env("TMPDIR", self.bed.path("tmp"))
            .env("WSM_SSH_PERSIST", persist.to_string());
        c
    }

    fn wsm(&self, persist: u64, args: &[&str]) -> Run {
        self.command(persist, args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run wsm")
            .into()
    }

    /// The ssh processes of this bed (every one wsm starts names a path in it or the host).
    fn ssh_processes(&self) -> Vec<String> {
        let ip = self.host.ip().replace('.', r"\.");
        let bed = self.bed.dir.path().display().to_string();
        let out = Command::new("pgrep")
            .arg("-af")
            .arg(format!(r"^(\S*/)?ssh .*({bed}|{ip}( |$))"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every `.ssh-connection*` entry under the places wsm or ssh could have made one.
    fn control_folders(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for d in [
            self.bed.path(""),
            self.bed.path(".xdg-state"),
            self.bed.path("home"),
            self.bed.path("tmp"),
        ] {
            walk(&d, &mut found);
        }
        found
    }

    fn status_ok(&self, persist: u64) {
        let r = self.wsm(persist, &["stack", "-s", &self.stack, "status"]);
        let out = r.ok();
        assert!(out.contains(&format!("{}_app", self.stack)), "{out}");
    }
}

/// Channels opened to the host's sshd so far, as its log (LogLevel DEBUG1) names them:
/// (forwarded engine socket, sessions: a command run there such as the engine probe).
fn channels(host: &Host) -> (usize, usize) {
    let log = std::fs::read_to_string(format!("{}/ssh/sshd.log", host.env["STATE_DIR"]))
        .expect("the host's sshd log");
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    (
        count("server_request_direct_streamlocal"),
        count("server_request_session"),
    )
}

/// Across a WAN a new channel is a round trip before its request can go (issue 28): a warm
/// `status` (the master and its forwarded socket already there) sends its requests over a few
/// channels opened together, not one per request, runs nothing on the host, and does not ask
/// the engine its API version again: the first command kept it beside the forwarded socket.
fn warm_commands_reuse_the_masters_channels(r: &RemoteStack) {
    let api = docker_on(
        &r.host.name,
        &["version", "--format", "{{.Server.APIVersion}}"],
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(r.bed.path(".xdg-state/wsm/ssh"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".sock.api"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let line = std::fs::read_to_string(&kept[0]).unwrap();
    assert_eq!(line.split(' ').next(), Some(api.trim()), "{line}");

    // status sends 4 requests (the stack's record, then three together), on the 4 channels
    // opened ahead.
    let before = channels(&r.host);
    r.status_ok(PERSIST);
    let after = cost_at_most(&r.host, before, 4, "a warm status");

    // Ten statuses in one process (a batch file): 40 requests over the same few channels, where
    // a connection per request would open 40.
    let batch = r.bed.path("ten-statuses.rhai");
    std::fs::write(
        &batch,
        format!(
            "for i in 0..10 {{ wsm(\"stack -s {} status\"); }}\n",
            r.stack
        ),
    )
    .unwrap();
    let run = r.wsm(PERSIST, &["run", batch.to_str().unwrap()]);
    assert_eq!(run.ok().matches(&format!("{}_app", r.stack)).count(), 10);
    cost_at_most(&r.host, after, 6, "ten statuses in one process");
}

/// Asserts what `what` cost the host since `before` (a `channels` reading): between 1 and
/// `most` channels opened to the engine, and no command run there. Returns the reading after.
fn cost_at_most(host: &Host, before: (usize, usize), most: usize, what: &str) -> (usize, usize) {
    let after = channels(host);
    let opened = after.0 - before.0;
    assert!(
        (1..=most).contains(&opened),
        "{what} opened {opened} channels to the engine"
    );
    assert_eq!(after.1, before.1, "{what} ran a command on the host");
    after
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(".ssh-connection")
        {
            found.push(e.path());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&e.path(), found);
        }
    }
}

/// Issue 16: after 20 remote commands (separate wsm processes) and a REPL session, at most one
/// ssh process per host remains, none after WSM_SSH_PERSIST seconds, and no `.ssh-connection*`
/// folder is left anywhere.
#[test]
fn remote_commands_and_a_repl_share_one_master_that_ends_after_its_persist_time() {
    let r = RemoteStack::up("wsmrem");
    for i in 0..20 {
        if i % 2 == 0 {
            r.status_ok(PERSIST);
        } else {
            let out = r.wsm(PERSIST, &["stack", "-s", &r.stack, "services"]);
            assert!(
                out.ok().contains(&format!("{}_app", r.stack)),
                "{}",
                out.stdout
            );
        }
        let ssh = r.ssh_processes();
        assert!(ssh.len() <= 1, "after command {i}: {ssh:#?}");
    }
    warm_commands_reuse_the_masters_channels(&r);

    // The master the commands shared is the one left, and it answers.
    let ssh = r.ssh_processes();
    assert_eq!(ssh.len(), 1, "{ssh:#?}");
    let master = ssh[0].clone();
    assert!(master.contains(" -M "), "{master}");
    assert!(
        master.contains(&format!("ControlPersist={PERSIST}s")),
        "{master}"
    );

    // A REPL session on a pseudo-terminal: a command line, an engine handle and an ssh::
    // session, all over the same master.
    let mut cmd = r.command(PERSIST, &["repl"]);
    cmd.env("TERM", "xterm").env_remove("WSM_SCRIPT_PATH");
    let mut repl = spawn_command(cmd, Some(20_000)).expect("spawn wsm repl");
    let prompt = "wsm> ";
    repl.exp_string(prompt).expect("a prompt");
    repl.send_line(&format!("stack -s {} status", r.stack))
        .unwrap();
    repl.exp_string(&format!("{}_app", r.stack))
        .expect("the stack's service");
    repl.exp_string(prompt).expect("a prompt");
    let ip = r.host.ip().to_string();
    repl.send_line(&format!("docker::connect(\"ssh://root@{ip}\").info().Name"))
        .unwrap();
    repl.exp_string(&r.host.name).expect("the host's engine");
    repl.exp_string(prompt).expect("a prompt");
    repl.send_line(&format!(
        "ssh::connect(\"root@{ip}\").run(\"echo remote-$((40+2))\").stdout"
    ))
    .unwrap();
    repl.exp_string("remote-42").expect("an ssh:: command");
    repl.exp_string(prompt).expect("a prompt");
    let during = r.ssh_processes();
    assert_eq!(during, vec![master.clone()], "during the REPL session");
    // The master ends under a running session (here killed; it also ends after its persist
    // time once idle): the session's next command opens a new one.
    let pid: i32 = master.split(' ').next().unwrap().parse().unwrap();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_for("the master to die", 10, || r.ssh_processes().is_empty());
    repl.send_line(&format!("stack -s {} status", r.stack))
        .unwrap();
    repl.exp_string(&format!("{}_app", r.stack))
        .expect("the stack's service, over a new master");
    repl.exp_string(prompt).expect("a prompt");
    let during = r.ssh_processes();
    assert_eq!(during.len(), 1, "a new master: {during:#?}");
    repl.send_control('d').expect("Ctrl-D");
    repl.exp_eof().expect("the REPL ends on Ctrl-D");

    let ssh = r.ssh_processes();
    assert!(ssh.len() <= 1, "after the REPL: {ssh:#?}");
    let folders = r.control_folders();
    assert!(folders.is_empty(), "control folders left: {folders:?}");

    // Nothing is left once the persist time has passed without use.
    let quiet_since = Instant::now();
    wait_for("the shared master to end", PERSIST + 15, || {
        r.ssh_processes().is_empty()
    });
    assert!(
        quiet_since.elapsed() >= Duration::from_secs(PERSIST - 1),
        "the master ended before its persist time"
    );
    let folders = r.control_folders();
    assert!(folders.is_empty(), "control folders left: {folders:?}");

    // WSM_SSH_PERSIST=0: each process has its own master and ends it on exit.
    for _ in 0..2 {
        r.status_ok(0);
        let ssh = r.ssh_processes();
        assert!(ssh.is_empty(), "with WSM_SSH_PERSIST=0: {ssh:#?}");
    }
    let folders = r.control_folders();
    assert!(folders.is_empty(), "control folders left: {folders:?}");
}

/// A master that died (killed) is noticed and replaced by the next command; a bad
/// WSM_SSH_PERSIST is bad input.
#[test]
fn a_dead_shared_master_is_replaced_and_a_bad_persist_time_is_refused() {
    let r = RemoteStack::up("wsmred");
    r.status_ok(30);
    let ssh = r.ssh_processes();
    assert_eq!(ssh.len(), 1, "{ssh:#?}");
    let pid: i32 = ssh[0].split(' ').next().unwrap().parse().unwrap();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_for("the master to die", 10, || r.ssh_processes().is_empty());
    // Its socket is still there: the next command finds it dead and starts a new master.
    r.status_ok(30);
    let ssh = r.ssh_processes();
    assert_eq!(ssh.len(), 1, "{ssh:#?}");
    // End it now, as the module doc says, so that the test leaves nothing behind.
    let socket = ssh[0]
        .split(" -S ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .to_string();
    let out = Command::new(r.bed.path("bin/ssh"))
        .args(["-S", &socket, "-O", "exit", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for("the master to exit", 10, || r.ssh_processes().is_empty());

    let bad = r
        .command(0, &["stack", "-s", &r.stack, "status"])
        .env("WSM_SSH_PERSIST", "soon")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("WSM_SSH_PERSIST"), "{err}");
    assert!(r.ssh_processes().is_empty());
}
