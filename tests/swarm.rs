//! Swarms on several real hosts of this machine: network namespaces with their own dockerd and
//! sshd (tests/fixtures/netns-host), created through the unchanged digitalocean provider against
//! a local server speaking the DigitalOcean API (tests/fixtures/fake-digitalocean), reached over
//! real SSH with host key checking on. The Docker CLI on each host's socket is the witness.
//!
//! SSH isolation: `ssh` (run by wsm's ssh:: primitives and by bollard) reads the passwd home's
//! ~/.ssh, not $HOME, so each test puts a wrapper `ssh` first on PATH that adds `-F <its config>`
//! (its own key and known_hosts); nothing under /root/.ssh is touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::hosts::*;
use common::store::*;
use common::*;
use serde_json::Value;

/// A droplet's /etc as its own sshd sessions see it (the overlay's upper layer).
fn droplet_etc(host: &str, rel: &str) -> PathBuf {
    PathBuf::from(format!("/run/wsm-hosts/{host}/droplet/etc-upper/{rel}"))
}

/// A short swarm name (host names are `<swarm>-<n>`, at most 40 characters).
fn swarm_name(prefix: &str) -> String {
    unique(prefix)
}

#[test]
fn ssh_primitives_on_a_real_host_with_host_key_checking() {
    let bed = Bed::new();
    let host = Host::up("wsmssh", &bed.public_key());
    std::fs::copy(&host.env["SSH_KNOWN_HOSTS"], bed.path("known_hosts")).unwrap();
    let ip = host.ip().to_string();
    let remote = bed.path("remote");
    let script = bed.path("ssh.rhai");
    std::fs::write(
        &script,
        format!(
            r#"
let s = ssh::connect("root@{ip}");
let r = s.run("hostname; echo oops >&2; exit 3");
print(`hostname=${{r.stdout}}`);
print(`stderr=${{r.stderr}}`);
print(`code=${{r.exit_code}}`);
print(`words=${{s.run(["echo", "a  b", "$(nope)"]).stdout}}`);
print(`stdin=${{s.run("tr a-z A-Z", "piped text").stdout}}`);
s.write("{remote}/etc/conf", "A=1\n", 0o600);
print(`read=${{s.read("{remote}/etc/conf")}}`);
print(`missing=${{type_of(s.read("{remote}/none"))}}`);
s.download("{remote}/etc/conf", "{local}/down/conf");
s.upload("{local}/down/conf", "{remote}/up/deep/conf.copy");
let e = docker::connect("ssh://root@{ip}");
print(`engine=${{e.info().Name}}`);
"#,
            remote = remote.display(),
            local = bed.path("local").display(),
        ),
    )
    .unwrap();
    let r = bed.wsm_patient(&["run", script.to_str().unwrap()]);
    let out = r.ok();
    assert!(out.contains(&format!("hostname={}", host.name)), "{out}");
    assert!(out.contains("stderr=oops"), "{out}");
    assert!(out.contains("code=3"), "{out}");
    assert!(out.contains("words=a  b $(nope)"), "{out}");
    assert!(out.contains("stdin=PIPED TEXT"), "{out}");
    assert!(out.contains("read=A=1"), "{out}");
    assert!(out.contains("missing=()"), "{out}");
    // The engine answered through bollard's ssh transport, i.e. `docker system dial-stdio` on
    // the host, which reaches that host's own dockerd.
    assert!(out.contains(&format!("engine={}", host.name)), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(remote.join("etc/conf")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(bed.path("local/down/conf")).unwrap(),
        "A=1\n"
    );
    assert_eq!(
        std::fs::read_to_string(remote.join("up/deep/conf.copy")).unwrap(),
        "A=1\n"
    );
    // No temp file is left beside the written files.
    assert_eq!(std::fs::read_dir(remote.join("etc")).unwrap().count(), 1);

    // Host key checking is on: a known_hosts entry with another key for this address is refused.
    // The key is checked when a master is opened; a master already open (shared by later wsm
    // processes for WSM_SSH_PERSIST seconds, as ssh's own ControlPersist) is ended first.
    assert_eq!(bed.end_masters(), 1, "one shared master to {ip}");
    let other = bed.path("other_host_key");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    let other_pub = std::fs::read_to_string(bed.path("other_host_key.pub")).unwrap();
    let fields: Vec<&str> = other_pub.split_whitespace().collect();
    std::fs::write(
        bed.path("known_hosts"),
        format!("{ip} {} {}\n", fields[0], fields[1]),
    )
    .unwrap();
    std::fs::write(
        &script,
        format!("ssh::connect(\"root@{ip}\").run(\"true\");"),
    )
    .unwrap();
    let r = bed.wsm_patient(&["run", script.to_str().unwrap()]);
    assert_eq!(
        r.code, 1,
        "a changed host key must be refused: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("cannot reach root@{ip} over SSH"))
            && r.stderr.to_lowercase().contains("host key"),
        "{}",
        r.stderr
    );

    // An address on the bridge where no host answers fails within the connect timeout (5 s).
    let t0 = Instant::now();
    let r = bed.wsm(&["swarm", "import", "10.231.0.5"]);
    let took = t0.elapsed();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot reach root@10.231.0.5 over SSH"),
        "{}",
        r.stderr
    );
    assert!(took < Duration::from_secs(12), "took {took:?}");
}

#[test]
fn digitalocean_swarm_create_import_run_a_stack_expand_and_destroy() {
    require_images();
    let bed = Bed::new();
    let fake = FakeDo::start(&bed, true);
    let sw = swarm_name("wsw");
    // Hosts 1 and 2 are managers, host 3 a worker.
    let mut default = std::fs::read_to_string(bed.path("config/default")).unwrap();
    default.push_str("SWARM_MANAGERS=2\n");
    std::fs::write(bed.path("config/default"), default).unwrap();
    // The first droplet request is rate limited; the provider waits Retry-After and goes on.
    fake.fault(serde_json::json!({"method": "POST", "path": "/v2/droplets", "status": 429, "times": 1, "retry_after": 1}));

    let r = bed.wsm(&[
        "swarm",
        "create",
        "digitalocean",
        &sw,
        "test-token",
        "--count",
        "3",
        "--size",
        "s-1vcpu-1gb",
        "--region",
        "nyc1",
    ]);
    let out = r.ok();
    assert!(out.contains("Complete !"), "{out}");
    assert!(r.stderr.contains("HTTP 429"), "{}", r.stderr);
    let h1 = format!("{sw}-1");
    let mut nodes = ready_nodes(&h1);
    nodes.sort();
    assert_eq!(nodes, [1, 2, 3].map(|n| format!("{sw}-{n}")));
    let reqs = fake.requests();
    let creates: Vec<i64> = reqs
        .iter()
        .filter(|q| q["method"] == "POST" && q["path"] == "/v2/droplets")
        .map(|q| q["status"].as_i64().unwrap())
        .collect();
    assert_eq!(creates, [429, 202, 202, 202]);
    for d in fake.droplets() {
        assert!(
            d["user_data"].as_str().unwrap().contains("docker.io"),
            "{d}"
        );
        assert!(d["tags"].to_string().contains(&format!("wsm-swarm-{sw}")));
    }
    let record = bed.path(&format!("config/swarms/{sw}"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600,
        "the record holds the API token"
    );
    for n in 1..=3 {
        let d = std::fs::read_to_string(droplet_etc(&format!("{sw}-{n}"), "wsm/swarm"))
            .unwrap_or_else(|e| panic!("descriptor on {sw}-{n}: {e}"));
        assert!(d.contains(&format!("SWARM_NAME={sw}")), "{d}");
    }
    assert!(bed.wsm(&["swarm", "list"]).ok().lines().any(|l| l == sw));
    let status = bed.wsm(&["swarm", "status", &sw]);
    let text = status.ok();
    assert!(text.starts_with("ID "), "{text}");
    assert!(text.contains("Leader"), "{text}");

    // Import from a second config directory through the address of manager 2: the record
    // is host 1's, except that it reaches the swarm through manager 2.
    let manager2_ip = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("SWARM_HOSTS="))
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    let c2 = bed.path("config2");
    std::fs::create_dir_all(c2.join("stacks")).unwrap();
    std::fs::write(c2.join("default"), "").unwrap();
    let r = bed.wsm_in(&c2, &["swarm", "import", &manager2_ip], "");
    r.ok();
    assert!(
        r.stderr.contains(&format!("is a manager of swarm {sw}")),
        "{}",
        r.stderr
    );
    let original = std::fs::read_to_string(&record).unwrap();
    let host1_ip = original
        .lines()
        .find_map(|l| l.strip_prefix("DOCKER_HOST=ssh://root@"))
        .unwrap()
        .to_string();
    // The token create was given stays in the local record: no host holds it.
    let without_token: String = original
        .lines()
        .filter(|l| !l.starts_with("DIGITALOCEAN_TOKEN="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        std::fs::read_to_string(c2.join(format!("swarms/{sw}"))).unwrap(),
        without_token.replace(
            &format!("DOCKER_HOST=ssh://root@{host1_ip}"),
            &format!("DOCKER_HOST=ssh://root@{manager2_ip}")
        )
    );

    // A stack on that swarm, configured through edit-config into the swarm's shared config.
    let stack = format!("{sw}-demo");
    std::fs::write(c2.join(format!("stacks/{stack}")), "WAVELET_NODES=1\n").unwrap();
    let wanted = bed.path("wanted-config");
    std::fs::write(
        &wanted,
        "WAVELET_NODES=3\nWSM_ENDPOINT_MODE=dnsrr\nWSM_PUBLISH_MODE=host\nWSM_DEPLOY_TIMEOUT=180\nWAVELET_NO_RPC=true\n",
    )
    .unwrap();
    let r: Run = bed
        .command(&c2, &["stack", "-s", &stack, "edit-config"])
        .env("VISUAL", format!("cp {}", wanted.display()))
        .output()
        .unwrap()
        .into();
    r.ok();
    // The shared config is in the swarm's store, as the Docker CLI on host 1 shows it.
    let socket = format!("unix:///run/wsm-hosts/{h1}/docker.sock");
    let shared = store_doc(&["-H", &socket], &format!("stack-config.{stack}"))
        .expect("the stack's shared config in the swarm");
    assert!(
        shared["text"].as_str().unwrap().contains("WAVELET_NODES=3"),
        "{shared}"
    );
    assert!(c2.join(format!("stacks/{stack}.old")).exists());
    let cfg = bed.wsm_in(&c2, &["stack", "-s", &stack, "config"], "");
    assert!(cfg.ok().contains("WAVELET_NODES=3"), "{}", cfg.stdout);

    let r = bed.wsm_in(&c2, &["stack", "-s", &stack, "start"], "");
    r.ok();
    let st = bed.wsm_in(&c2, &["--json", "stack", "-s", &stack, "status"], "");
    let js: Value = serde_json::from_str(st.ok()).expect("status --json");
    assert_eq!(js["running"], true, "{js}");
    let tasks = js["tasks"].as_array().unwrap();
    let mut hosts_used: Vec<&str> = tasks.iter().map(|t| t["node"].as_str().unwrap()).collect();
    hosts_used.sort();
    hosts_used.dedup();
    assert!(hosts_used.len() >= 2, "tasks on one host only: {js}");
    // A wavelet task on a host that is not the manager.
    let remote_task = tasks
        .iter()
        .find(|t| {
            t["name"].as_str().unwrap().contains("_wavelet.") && t["node"].as_str() != Some(&h1)
        })
        .unwrap_or_else(|| panic!("no wavelet task off the manager: {js}"));
    let slot = remote_task["name"]
        .as_str()
        .unwrap()
        .rsplit('.')
        .next()
        .unwrap()
        .to_string();
    let node = remote_task["node"].as_str().unwrap().to_string();
    let sh = bed.wsm_in(
        &c2,
        &[
            "stack",
            "-s",
            &stack,
            "shell",
            &slot,
            "cat",
            "/etc/hostname",
        ],
        "",
    );
    let container_host = sh.ok().trim().to_string();
    assert!(!container_host.is_empty());
    // The container that answered runs on that host's own engine.
    assert!(
        docker_on(&node, &["ps", "-q", "--no-trunc"])
            .lines()
            .any(|id| id.starts_with(&container_host)),
        "container {container_host} is not on {node}"
    );
    let logs = bed.wsm_in(
        &c2,
        &["stack", "-s", &stack, "logs", &slot, "--tail", "20"],
        "",
    );
    logs.ok();
    let dump = bed.path("node.tar.gz");
    let r = bed.wsm_in(
        &c2,
        &[
            "stack",
            "-s",
            &stack,
            "dump-db",
            &slot,
            dump.to_str().unwrap(),
        ],
        "",
    );
    r.ok();
    let listing = Command::new("tar").arg("tzf").arg(&dump).output().unwrap();
    assert!(listing.status.success(), "dump is a tar.gz");
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("db"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
    );
    bed.wsm_in(&c2, &["stack", "-s", &stack, "stop"], "").ok();
    assert_eq!(
        docker_on(
            &h1,
            &[
                "service",
                "ls",
                "-q",
                "--filter",
                &format!("label=com.docker.stack.namespace={stack}")
            ]
        )
        .trim(),
        ""
    );

    // expand, answering the size and region menus on a pseudo-terminal.
    let mut cmd = bed.command(
        &bed.path("config"),
        &[
            "swarm", "expand", &sw, "1", "--size", "ask", "--region", "ask",
        ],
    );
    cmd.env("TERM", "dumb");
    let mut p = rexpect::session::spawn_command(cmd, Some(120_000)).expect("spawn on a pty");
    p.exp_string("Please select one of the following for the size:")
        .unwrap();
    let menu = p.exp_string("#? ").unwrap();
    let size_no = menu
        .lines()
        .flat_map(|l| l.split("  "))
        .map(str::trim)
        .find_map(|cell| {
            cell.strip_suffix(") s-2vcpu-4gb")
                .or_else(|| cell.split_once(") s-2vcpu-4gb").map(|x| x.0))
        })
        .unwrap_or_else(|| panic!("s-2vcpu-4gb not in the menu:\n{menu}"))
        .trim()
        .to_string();
    p.send_line(&size_no).unwrap();
    p.exp_string("Please select one of the following for the region:")
        .unwrap();
    p.exp_string("#? ").unwrap();
    // Regions sorted: ams3 blr1 fra1 lon1 nyc1 nyc3 sfo2 sgp1 tor1 -> 7 is sfo2.
    p.send_line("7").unwrap();
    p.exp_string("now has 4 host(s)").unwrap();
    p.exp_eof().ok();
    let mut nodes = ready_nodes(&h1);
    nodes.sort();
    assert_eq!(nodes, [1, 2, 3, 4].map(|n| format!("{sw}-{n}")));
    let fourth = fake
        .droplets()
        .into_iter()
        .find(|d| d["name"] == format!("{sw}-4").as_str())
        .expect("droplet 4");
    assert_eq!(fourth["size_slug"], "s-2vcpu-4gb");
    assert_eq!(fourth["region"]["slug"], "sfo2");
    for n in 1..=4 {
        let d = std::fs::read_to_string(droplet_etc(&format!("{sw}-{n}"), "wsm/swarm")).unwrap();
        assert!(
            d.contains(&format!("{sw}-4/")),
            "descriptor on {sw}-{n} lacks host 4: {d}"
        );
    }

    // destroy asks for the name: a wrong answer deletes nothing; then --yes.
    let r = bed.wsm_in(&bed.path("config"), &["swarm", "destroy", &sw], "nope\n");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(fake.droplets().len(), 4);
    bed.wsm(&["swarm", "destroy", &sw, "--yes"]).ok();
    assert!(fake.droplets().is_empty());
    assert!(!record.exists());
    for n in 1..=4 {
        assert!(
            !Path::new(&format!("/run/netns/{sw}-{n}")).exists(),
            "host {sw}-{n} still exists"
        );
    }
}

#[test]
fn a_failure_half_way_leaves_no_droplet_behind() {
    let bed = Bed::new();
    let fake = FakeDo::start(&bed, false);
    let sw = swarm_name("wsf");
    let mut default = std::fs::read_to_string(bed.path("config/default")).unwrap();
    default.push_str("DIGITALOCEAN_RETRIES=2\n");
    std::fs::write(bed.path("config/default"), default).unwrap();
    // The third droplet cannot be made: 500 on every try.
    fake.fault(serde_json::json!({"method": "POST", "path": "/v2/droplets", "status": 500, "after": 2, "times": -1}));
    let r = bed.wsm(&[
        "swarm",
        "create",
        "digitalocean",
        &sw,
        "test-token",
        "--count",
        "3",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("failed 3 times, last with HTTP 500"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("deleted the droplets made so far")
            && r.stderr.contains(&format!("{sw}-1"))
            && r.stderr.contains(&format!("{sw}-2")),
        "{}",
        r.stderr
    );
    assert!(fake.droplets().is_empty(), "{:?}", fake.droplets());
    assert!(!bed.path(&format!("config/swarms/{sw}")).exists());
    for n in 1..=3 {
        assert!(!Path::new(&format!("/run/netns/{sw}-{n}")).exists());
    }
}

#[test]
fn providers_are_dropped_in_scripts_and_their_errors_name_file_and_line() {
    let bed = Bed::new();
    // In the config directory's providers/ …
    let providers = bed.path("config/providers");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(
        providers.join("echo.rhai"),
        "fn create(name, args, settings) { throw #{ message: `echo provider made no ${name} from ${args}`, hosts: [] }; }\n",
    )
    .unwrap();
    let r = bed.wsm(&["swarm", "create", "echo", "sw1", "a", "b"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(r#"echo provider made no sw1 from ["a", "b"]"#),
        "{}",
        r.stderr
    );
    // … and in $XDG_CONFIG_HOME/wsm/stdlib/providers/.
    let xdg = bed.path(".xdg-config/wsm/stdlib/providers");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(
        xdg.join("broken.rhai"),
        "// a provider with a syntax error\nfn create(name, args, settings) {\n    let x = ;\n}\n",
    )
    .unwrap();
    let r = bed.wsm(&["swarm", "create", "broken", "sw2"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{}", xdg.join("broken.rhai").display()))
            && r.stderr.contains("line 3"),
        "{}",
        r.stderr
    );
    let r = bed.wsm(&["swarm", "create", "nosuch", "sw3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(r#"no provider named "nosuch""#),
        "{}",
        r.stderr
    );
    assert!(!bed.path("config/swarms").exists());
}

/// The engine over SSH: the port of `ssh://user@host:port` is used, ssh's own error reaches the
/// user, and after the command no ssh process or control folder of wsm's is left.
#[test]
fn remote_engine_over_ssh_uses_the_port_shares_one_master_and_leaves_nothing_behind() {
    let bed = Bed::new();
    let host = Host::up("wsmport", &bed.public_key());
    let ip = host.ip().to_string();
    let sshd_config = format!("/run/wsm-hosts/{}/ssh/sshd_config", host.name);
    let second = Command::new(NETNS_HOST)
        .args(["exec", &host.name, "/usr/sbin/sshd", "-f", &sshd_config])
        .arg("-o")
        .arg(format!("ListenAddress={ip}:2222"))
        .arg("-o")
        .arg(format!("PidFile={}", bed.path("sshd2222.pid").display()))
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "a second sshd on port 2222: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    wait_for("the second sshd", 10, || {
        std::net::TcpStream::connect((ip.as_str(), 2222)).is_ok()
    });
    // Only port 2222 answers from here on: a client that dropped the port would reach port 22.
    Command::new(NETNS_HOST)
        .args([
            "exec", &host.name, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "22", "-j",
            "REJECT",
        ])
        .output()
        .unwrap();
    let script = bed.path("port.rhai");
    std::fs::write(
        &script,
        format!(
            "let e = docker::connect(\"ssh://root@{ip}:2222\");\nfor i in 0..5 {{ e.info(); e.volumes(#{{}}).len(); }}\nprint(`engine=${{e.info().Name}}`);\nprint(`connections=${{ssh::connect(\"root@{ip}:2222\").run(\"ss -Htn state established '( sport = :2222 )' | wc -l\").stdout}}`);\n"
        ),
    )
    .unwrap();
    let r = bed.wsm(&["run", script.to_str().unwrap()]);
    let out = r.ok();
    assert!(out.contains(&format!("engine={}", host.name)), "{out}");
    // Ten API calls and the ssh:: session went over one SSH connection.
    assert!(out.contains("connections=1\n"), "{out}");

    let closed = bed.path("closed.rhai");
    std::fs::write(
        &closed,
        format!("docker::connect(\"ssh://root@{ip}:2299\").info();\n"),
    )
    .unwrap();
    let r = bed.wsm(&["run", closed.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("2299") && !r.stderr.contains("hyper legacy client"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.to_lowercase().contains("refused") || r.stderr.contains("ssh"),
        "{}",
        r.stderr
    );

    // What stays is the one master later commands share, until its persist time or its end.
    let masters = Command::new("pgrep")
        .args(["-f", &format!(r"^(\S*/)?ssh .*{ip}")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&masters.stdout).lines().count() <= 1,
        "{}",
        String::from_utf8_lossy(&masters.stdout)
    );
    bed.end_masters();
    wait_for("the master to exit", 10, || {
        Command::new("pgrep")
            .args(["-f", &format!(r"^(\S*/)?ssh .*{ip}")])
            .output()
            .unwrap()
            .stdout
            .is_empty()
    });
    let leftover_ssh = Command::new("pgrep")
        .args(["-f", &format!(r"^(\S*/)?ssh .*{ip}")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&leftover_ssh.stdout)
            .trim()
            .is_empty(),
        "ssh processes outlived wsm: {}",
        String::from_utf8_lossy(&leftover_ssh.stdout)
    );
    let dirs: Vec<_> = [bed.path(".xdg-state"), bed.path("")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".ssh-connection")
        })
        .map(|e| e.path())
        .collect();
    assert!(dirs.is_empty(), "control folders left behind: {dirs:?}");
}

/// docker-machine#592: machines left behind cost money. `swarm doctor` finds droplets with
/// wsm's tag that no recorded swarm holds, and recorded hosts the provider no longer has; with
/// `--fix` (after typing "fix") it deletes the first and forgets the second, and nothing else.
#[test]
fn swarm_doctor_finds_and_fixes_orphans_and_gone_hosts() {
    let bed = Bed::new();
    let fake = FakeDo::start(&bed, false);
    let kept = swarm_name("wdk");
    let lost = swarm_name("wdl");
    let gone = swarm_name("wdg");
    // A swarm whose droplet exists and is recorded, a droplet whose create never got recorded,
    // and a recorded swarm whose droplet was deleted elsewhere.
    let kept_id = fake.create_droplet(&format!("{kept}-1"), &["wsm", &format!("wsm-swarm-{kept}")]);
    let lost_id = fake.create_droplet(&format!("{lost}-1"), &["wsm", &format!("wsm-swarm-{lost}")]);
    let other_id = fake.create_droplet(&format!("{lost}-x"), &["not-wsm"]);
    wait_for("the droplets to boot", 60, || {
        fake.droplets().iter().all(|d| d["status"] == "active")
    });
    let swarms = bed.path("config/swarms");
    std::fs::create_dir_all(&swarms).unwrap();
    let record = |name: &str, hosts: &str| {
        let text = format!(
            "SWARM_NAME={name}\nSWARM_PROVIDER=digitalocean\nDIGITALOCEAN_TOKEN=test-token\nDOCKER_HOST=ssh://root@10.231.0.250\nSWARM_HOSTS={hosts}\n"
        );
        std::fs::write(swarms.join(name), text).unwrap();
    };
    record(&kept, &format!("{kept}-1/10.231.0.249/{kept_id}"));
    record(&gone, &format!("{gone}-1/10.231.0.250/9999999"));
    let kept_record = std::fs::read(swarms.join(&kept)).unwrap();

    let r = bed.wsm(&["--json", "swarm", "doctor"]);
    let report: Value = serde_json::from_str(r.ok()).expect("one JSON document");
    let orphans = report["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{report}");
    assert_eq!(orphans[0]["id"], lost_id.as_str(), "{report}");
    assert_eq!(orphans[0]["swarm"], lost.as_str(), "{report}");
    assert!(!report.to_string().contains("test-token"), "{report}");
    let gone_hosts = report["gone"].as_array().unwrap();
    assert_eq!(gone_hosts.len(), 1, "{report}");
    assert_eq!(gone_hosts[0]["swarm"], gone.as_str(), "{report}");

    let text = bed.wsm(&["swarm", "doctor", "digitalocean"]);
    assert!(text.ok().contains(&format!("{lost}-1")), "{}", text.stdout);
    assert!(text.stderr.contains("--fix"), "{}", text.stderr);

    // Bad input changes nothing; a wrong confirmation changes nothing.
    let r = bed.wsm(&["swarm", "doctor", "--fix", "--bogus"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = bed.wsm(&["swarm", "doctor", "no/such"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = bed.wsm_in(&bed.path("config"), &["swarm", "doctor", "--fix"], "nope\n");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(fake.droplets().len(), 3);
    assert!(swarms.join(&gone).exists());

    let r = bed.wsm_in(&bed.path("config"), &["swarm", "doctor", "--fix"], "fix\n");
    r.ok();
    let mut left: Vec<String> = fake
        .droplets()
        .iter()
        .map(|d| d["id"].to_string())
        .collect();
    left.sort();
    let mut want = vec![kept_id.clone(), other_id];
    want.sort();
    assert_eq!(left, want, "only the orphan is deleted");
    assert!(!Path::new(&format!("/run/netns/{lost}-1")).exists());
    assert!(
        !swarms.join(&gone).exists(),
        "the gone swarm's record stays"
    );
    assert_eq!(std::fs::read(swarms.join(&kept)).unwrap(), kept_record);

    let r = bed.wsm(&["swarm", "doctor", "--fix", "--yes"]);
    assert!(r.ok().starts_with("Nothing to fix"), "{}", r.stdout);
}
