//! The `generic` provider on machines that already exist: three netns hosts
//! (tests/fixtures/netns-host) with their own dockerd, and an sshd each whose /etc is an overlay
//! (so `/etc/wsm/swarm` stays on that host, as on a real machine). wsm reaches them over real
//! SSH with host key checking on; the Docker CLI on each host's socket is the witness.
//! See tests/swarm.rs for why the ssh wrapper and config exist.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hosts::{index_base, Bed, NETNS_HOST};
use common::*;

const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// A machine that exists before wsm: a netns host with the test image loaded and an sshd in a
/// mount namespace of its own over an /etc overlay. Stopped and removed in Drop.
struct Machine {
    name: String,
    ip: String,
    dir: PathBuf,
}

impl Machine {
    fn up(prefix: &str, public_key: &Path) -> Machine {
        let name = unique(prefix);
        let base = index_base() + 7;
        let mut env = None;
        for index in base..245 {
            let out = Command::new(NETNS_HOST)
                .args(["up", &name, &index.to_string()])
                .output()
                .unwrap();
            if out.status.success() {
                env = Some(String::from_utf8_lossy(&out.stdout).into_owned());
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("already used"), "netns-host up {name}: {err}");
        }
        let env = env.expect("a free netns-host index");
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        let (ip, state, docker_host) = (get("IP"), get("STATE_DIR"), get("DOCKER_HOST"));
        let dir = PathBuf::from(&state).join("generic");
        let machine = Machine {
            name: name.clone(),
            ip: ip.clone(),
            dir: dir.clone(),
        };
        for sub in ["etc-upper", "etc-work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::copy(public_key, dir.join("authorized_keys")).unwrap();
        let key = dir.join("ssh_host_key");
        assert!(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success());
        let d = dir.display();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress {ip}:22\nHostKey {d}/ssh_host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nMaxSessions 64\nMaxStartups 64:30:128\nSetEnv DOCKER_HOST={docker_host}\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let script = format!(
            "mount -t overlay generic-etc -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc && exec /usr/sbin/sshd -f {d}/sshd_config -E {d}/sshd.log"
        );
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{name}"))
            .arg(format!("--uts={state}/uts"))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sshd of {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(&format!("sshd of {name}"), 10, || {
            std::net::TcpStream::connect((ip.as_str(), 22)).is_ok()
        });
        let out = Command::new(NETNS_HOST)
            .args(["load-image", &name, IMAGE])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "load-image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        machine
    }

    fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix:///run/wsm-hosts/{}/docker.sock", self.name))
            .args(args)
            .output()
            .expect("docker CLI");
        assert!(
            out.status.success(),
            "docker on {} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn swarm_state(&self) -> String {
        self.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
    }

    /// A file under this machine's /etc as its own sshd sessions see it.
    fn etc(&self, rel: &str) -> PathBuf {
        self.dir.join("etc-upper").join(rel)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("sshd.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        Command::new(NETNS_HOST)
            .args(["down", &self.name])
            .output()
            .ok();
    }
}

#[test]
fn generic_swarm_on_existing_machines_create_run_a_stack_expand_and_destroy_leaving_them_running() {
    require_images();
    let bed = Bed::new();
    let key = bed.public_key();
    let machines: Vec<Machine> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Machine::up("wgh", &key)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sw = unique("wgs");
    let record = bed.path(&format!("config/swarms/{sw}"));
    let host_args: Vec<String> = machines[..3]
        .iter()
        .flat_map(|m| ["--host".to_string(), m.ip.clone()])
        .collect();
    let create = |extra: &[&str]| {
        let mut args = vec!["swarm", "create", "generic", &sw];
        args.extend(host_args.iter().map(String::as_str));
        args.extend(extra);
        bed.wsm(&args)
    };

    // A host already in another swarm is refused before anything changes.
    machines[2].docker(&["swarm", "init", "--advertise-addr", &machines[2].ip]);
    let r = create(&["--managers", "3"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("{} (", machines[2].ip))
            && r.stderr.contains("already in a swarm"),
        "{}",
        r.stderr
    );
    assert!(!record.exists());
    assert_eq!(machines[0].swarm_state(), "inactive");
    assert_eq!(machines[1].swarm_state(), "inactive");
    assert_eq!(machines[2].swarm_state(), "active");
    machines[2].docker(&["swarm", "leave", "--force"]);

    // An unreachable address fails within the connect timeout, with nothing changed.
    let t0 = Instant::now();
    let r = bed.wsm(&[
        "swarm",
        "create",
        "generic",
        &sw,
        "--host",
        &machines[0].ip,
        "--host",
        "10.231.0.5",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot reach root@10.231.0.5 over SSH")
            && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(!record.exists());
    assert_eq!(machines[0].swarm_state(), "inactive");

    // Bad input: one line, exit 2.
    let r = create(&["--managers", "4"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--managers must be between 1 and"));

    // Three managers, all Ready.
    let r = create(&["--managers", "3"]);
    assert!(r.ok().contains("Complete !"), "{}", r.stdout);
    let nodes = machines[0].docker(&[
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
    ]);
    let mut lines: Vec<&str> = nodes.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{nodes}");
    for l in &lines {
        assert!(
            l.contains(" Ready ") && (l.ends_with("Leader") || l.ends_with("Reachable")),
            "{nodes}"
        );
    }
    for m in &machines[..3] {
        let d = std::fs::read_to_string(m.etc("wsm/swarm"))
            .unwrap_or_else(|e| panic!("descriptor on {}: {e}", m.name));
        assert!(d.contains(&format!("SWARM_NAME={sw}")), "{d}");
        assert!(d.contains("SWARM_PROVIDER=generic"), "{d}");
    }
    // Import from another config directory through the third host, a manager: the record is
    // the creator's, reaching the swarm through that manager.
    let c2 = bed.path("config2");
    std::fs::create_dir_all(&c2).unwrap();
    std::fs::write(c2.join("default"), "").unwrap();
    let r = bed.wsm_in(&c2, &["swarm", "import", &machines[2].ip], "");
    r.ok();
    assert!(r.stderr.contains("is a manager of swarm"), "{}", r.stderr);
    let original = std::fs::read_to_string(&record).unwrap();
    let first = format!("DOCKER_HOST=ssh://root@{}\n", machines[0].ip);
    assert!(original.contains(&first), "{original}");
    assert_eq!(
        std::fs::read_to_string(c2.join(format!("swarms/{sw}"))).unwrap(),
        original.replace(
            &first,
            &format!("DOCKER_HOST=ssh://root@{}\n", machines[2].ip)
        )
    );

    // A stack of 3 replicas spreads over the three hosts.
    let stack = format!("{sw}-demo");
    let compose = bed.path("demo.yml");
    std::fs::write(
        &compose,
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep infinity & wait\"]\n    deploy:\n      replicas: 3\n      endpoint_mode: dnsrr\n      placement: {{max_replicas_per_node: 1}}\n"
        ),
    )
    .unwrap();
    let r = bed.wsm(&[
        "stack",
        "deploy",
        "-c",
        compose.to_str().unwrap(),
        "--timeout",
        "120",
        &stack,
    ]);
    r.ok();
    let tasks = machines[0].docker(&[
        "service",
        "ps",
        &format!("{stack}_web"),
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ]);
    let mut on: Vec<&str> = tasks
        .lines()
        .filter(|l| l.contains("Running"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    on.sort();
    let mut names: Vec<&str> = machines[..3].iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(on, names, "{tasks}");

    // expand adds the fourth machine as a worker.
    let r = bed.wsm(&["swarm", "expand", &sw, "--host", &machines[3].ip]);
    assert!(r.ok().contains("now has 4 host(s)"), "{}", r.stdout);
    let workers = machines[0].docker(&[
        "node",
        "ls",
        "--filter",
        "role=worker",
        "--format",
        "{{.Hostname}} {{.Status}}",
    ]);
    assert_eq!(workers, format!("{} Ready", machines[3].name));
    assert!(std::fs::read_to_string(machines[3].etc("wsm/swarm"))
        .unwrap()
        .contains(&format!("{sw}-4/")));

    // destroy says the machines stay, asks, and a wrong answer changes nothing.
    let r = bed.wsm_in(&bed.path("config"), &["swarm", "destroy", &sw], "nope\n");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("does not delete them"), "{}", r.stderr);
    assert!(record.exists());
    assert_eq!(machines[0].swarm_state(), "active");
    let r = bed.wsm_in(
        &bed.path("config"),
        &["swarm", "destroy", &sw],
        &format!("{sw}\n"),
    );
    r.ok();
    assert!(!record.exists());
    for m in &machines {
        assert_eq!(m.swarm_state(), "inactive", "{} left the swarm", m.name);
        assert!(
            !m.etc("wsm/swarm").exists(),
            "descriptor left on {}",
            m.name
        );
        assert!(
            Path::new(&format!("/run/netns/{}", m.name)).exists(),
            "{} still runs",
            m.name
        );
    }
}
