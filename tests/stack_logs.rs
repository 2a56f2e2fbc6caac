//! Issue 27 item 2: `stack logs` merges every service's tasks in time order, follows them, and
//! cuts at `--since`/`--until` where docker does. The stacks run services of the local
//! `wavelet-stack-base` image writing numbered lines; the Docker CLI (`docker service logs`,
//! `docker logs`, `docker exec`) is the witness. Both tests run at once, about 90 s (the
//! `--since 1m` cut needs a minute of history).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// Deploys a compose file of services, each running `sh -c <script>` (its `$` escaped from
/// interpolation), as the stack `s`.
fn deploy(s: &TestStack, services: &[(&str, &str)]) {
    let mut text = String::from("services:\n");
    for (name, script) in services {
        text.push_str(&format!(
            "  {name}:\n    image: localhost:5000/wavelet-stack-base:latest\n    \
             command: [\"sh\", \"-c\", {script:?}]\n    \
             deploy: {{endpoint_mode: dnsrr, restart_policy: {{condition: none}}}}\n",
            script = script.replace('$', "$$")
        ));
    }
    let path = s.dir.path().join("logs.yml");
    std::fs::write(&path, text).unwrap();
    s.wsm(&["stack", "deploy", "-c", path.to_str().unwrap(), &s.name])
        .ok();
}

/// `docker service logs --raw` of one of the stack's services, with more options.
fn docker_lines(s: &TestStack, service: &str, more: &[&str]) -> Vec<String> {
    let full = format!("{}_{service}", s.name);
    let mut args = vec!["service", "logs", "--raw"];
    args.extend_from_slice(more);
    args.push(&full);
    docker(&args).lines().map(str::to_string).collect()
}

/// A line of wsm's merged output: (prefix, timestamp, text); the timestamp when `-t` was given.
fn split(line: &str, stamped: bool) -> (String, String, String) {
    let (prefix, rest) = line
        .split_once(" | ")
        .unwrap_or_else(|| panic!("no prefix in {line:?}"));
    let (stamp, text) = if stamped {
        let (s, t) = rest.split_once(' ').unwrap_or((rest, ""));
        (s.to_string(), t.to_string())
    } else {
        (String::new(), rest.to_string())
    };
    (prefix.trim_end().to_string(), stamp, text)
}

/// An RFC 3339 timestamp as the engine writes it (its fraction's trailing zeros dropped) as a
/// key that sorts in time order: the seconds, then the fraction to nine digits.
fn order_key(stamp: &str) -> (String, String) {
    let body = stamp.trim_end_matches('Z');
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    (secs.to_string(), format!("{frac:0<9}"))
}

/// A running `wsm … logs -f` whose stdout lines arrive on a channel; killed when dropped.
struct Following {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Following {
    fn start(s: &TestStack, args: &[&str]) -> Self {
        let mut all = vec!["stack", "-s", s.name.as_str(), "logs"];
        all.extend_from_slice(args);
        let mut child = s
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Following { child, lines }
    }

    /// The first line containing `needle`, waiting at most `secs`.
    fn wait_for(&self, needle: &str, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Following {
    /// Stops reading its stdout: the reader thread ends at the next line, closing the pipe.
    fn close_stdout(&mut self) {
        self.lines = mpsc::channel().1;
    }

    /// The exit code once it ended, waiting at most `secs`.
    fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WRITER: &str = "trap 'exit 0' TERM; while :; do echo NAME-$(date +%s%N); sleep 0.3; done";

#[test]
fn services_merge_in_time_order_and_follow_brings_new_lines() {
    let s = TestStack::bare("wsmlogs");
    deploy(
        &s,
        &[
            ("a", &WRITER.replace("NAME", "a")),
            ("b", &WRITER.replace("NAME", "b")),
        ],
    );
    wait_for("ten lines of each service", 60, || {
        docker_lines(&s, "a", &[]).len() >= 10 && docker_lines(&s, "b", &[]).len() >= 10
    });
    let seen_by_docker: Vec<String> = docker_lines(&s, "a", &[])
        .into_iter()
        .chain(docker_lines(&s, "b", &[]))
        .collect();

    // Merged in time order: the engine's timestamps never go back, both services appear, and
    // every line docker showed before is there under its service's prefix.
    let r = s.stack(&["logs", "--timestamps"]);
    let out = r.ok();
    assert!(!out.contains('\u{1b}'), "colour in a pipe:\n{out}");
    let lines: Vec<(String, String, String)> = out.lines().map(|l| split(l, true)).collect();
    let keys: Vec<(String, String)> = lines.iter().map(|(_, st, _)| order_key(st)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go back:\n{out}"
    );
    let prefixes: BTreeSet<&str> = lines.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(prefixes, BTreeSet::from(["a.1", "b.1"]), "{out}");
    for (p, _, text) in &lines {
        assert!(text.starts_with(&format!("{}-", &p[..1])), "{p} | {text}");
    }
    let ours: BTreeSet<&str> = lines.iter().map(|(_, _, t)| t.as_str()).collect();
    for l in &seen_by_docker {
        assert!(ours.contains(l.as_str()), "{l} missing from:\n{out}");
    }
    // Both services' lines interleave (each writes every 0.3 s): not one block after the other.
    let changes = lines.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(changes >= 4, "not interleaved:\n{out}");

    // One service by name; `--tail`; a node id (`b.1`) naming one task.
    let only_b = s.stack(&["logs", "b", "--tail", "3"]);
    let b_lines: Vec<&str> = only_b.ok().lines().collect();
    assert_eq!(b_lines.len(), 3, "{}", only_b.stdout);
    assert!(
        b_lines.iter().all(|l| l.starts_with("b.1 | b-")),
        "{b_lines:?}"
    );
    let by_id = s.stack(&["logs", "b.1", "-n", "1"]);
    assert!(by_id.ok().starts_with("b.1 | b-"), "{}", by_id.stdout);

    // Colour when asked for as on a terminal, none with NO_COLOR.
    let coloured = s
        .command(&["stack", "-s", &s.name, "logs", "--tail", "1"])
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&coloured.stdout).contains("\u{1b}["));

    // Bad input: exit 2, one line and the usage, as typed.
    for bad in [
        &["logs", "--since", "yesterday"][..],
        &["logs", "--tail", "x"],
        &["logs", "nope"],
    ] {
        let r = s.stack(bad);
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{bad:?}: {}", r.stdout);
    }

    // Following: a line written after the start arrives (measured; 10 s is the bound).
    let follow = Following::start(&s, &["-f", "--tail", "2"]);
    assert!(follow.wait_for("a.1 | a-", 30).is_some(), "no history");
    let container = s.container("a", 1);
    let marker = format!("marker-{}", std::process::id());
    let written = Instant::now();
    docker(&[
        "exec",
        &container,
        "sh",
        "-c",
        &format!("echo {marker} > /proc/1/fd/1"),
    ]);
    let got = follow.wait_for(&marker, 10);
    let took = written.elapsed();
    assert_eq!(got.as_deref(), Some(format!("a.1 | {marker}").as_str()));
    // For comparison (reported, not asserted): docker's own `service logs -f` for one line.
    let mut theirs = std::process::Command::new("docker")
        .args([
            "service",
            "logs",
            "-f",
            "--raw",
            "--tail",
            "0",
            &format!("{}_a", s.name),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = theirs.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("docker-marker") && tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let written_again = Instant::now();
    docker(&[
        "exec",
        &container,
        "sh",
        "-c",
        "echo docker-marker > /proc/1/fd/1",
    ]);
    let docker_took = rx
        .recv_timeout(Duration::from_secs(10))
        .map(|at| at.duration_since(written_again).as_millis().to_string())
        .unwrap_or_else(|_| "(not within 10 s)".into());
    let _ = theirs.kill();
    let _ = theirs.wait();
    eprintln!(
        "follow: the marker arrived {} ms after docker exec was started \
         (docker service logs -f: {docker_took} ms)",
        took.as_millis()
    );
    // Lines of both services go on arriving.
    assert!(follow.wait_for("b.1 | b-", 10).is_some());

    // Ctrl-C ends it (exit 130, as every interrupted command); so does a closed stdout (141).
    let mut follow = follow;
    signal(follow.child.id(), "INT");
    assert_eq!(follow.exit_code(10), Some(130));
    let mut piped = Following::start(&s, &["-f", "--tail", "1"]);
    assert!(piped.wait_for(" | ", 30).is_some());
    piped.close_stdout();
    assert_eq!(piped.exit_code(10), Some(141));
}

/// Sends a signal to a process of this test's own.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

#[test]
fn since_and_until_cut_where_docker_cuts() {
    let s = TestStack::bare("wsmlogcut");
    // Ten lines, 15 s of silence, ten more, then nothing: the cuts fall in the silence.
    let script = |n: &str| {
        format!(
            "trap 'exit 0' TERM; for i in 1 2 3 4 5 6 7 8 9 10; do echo {n}-early-$i; sleep 0.2; done; \
             sleep 15; for i in 1 2 3 4 5 6 7 8 9 10; do echo {n}-late-$i; sleep 0.2; done; \
             sleep 1000 & wait"
        )
    };
    deploy(&s, &[("p", &script("p")), ("q", &script("q"))]);
    let mut early_end = String::new();
    wait_for("both services' early lines", 60, || {
        let p = docker_lines(&s, "p", &["--timestamps"]);
        let q = docker_lines(&s, "q", &["--timestamps"]);
        let last = |v: &Vec<String>| v.iter().find(|l| l.ends_with("-early-10")).cloned();
        match (last(&p), last(&q)) {
            (Some(a), Some(b)) => {
                early_end = a
                    .split(' ')
                    .next()
                    .unwrap()
                    .max(b.split(' ').next().unwrap())
                    .to_string();
                true
            }
            _ => false,
        }
    });

    // --until: a time in the silence, RFC 3339; docker's own cut is `docker logs --until` of
    // each task's container.
    let until = plus_seconds(&early_end, 5);
    let ours = texts(&s.stack(&["logs", "--until", &until]));
    let mut theirs = BTreeSet::new();
    for service in ["p", "q"] {
        let c = s.container(service, 1);
        for l in docker(&["logs", "--until", &until, &c]).lines() {
            theirs.insert(l.to_string());
        }
    }
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 20, "{ours:?}");
    assert!(ours.iter().all(|l| l.contains("-early-")), "{ours:?}");

    // --since 1m once the silence began more than a minute ago, and before its end is: docker
    // (`docker service logs --since 1m`) and wsm both keep exactly the late lines.
    wait_for("a minute past the early lines", 90, || {
        seconds_since(&early_end) >= 62
    });
    let ours = texts(&s.stack(&["logs", "--since", "1m"]));
    let theirs: BTreeSet<String> = docker_lines(&s, "p", &["--since", "1m"])
        .into_iter()
        .chain(docker_lines(&s, "q", &["--since", "1m"]))
        .collect();
    assert!(
        seconds_since(&early_end) < 75,
        "too late for the cut to be in the silence"
    );
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 20, "{ours:?}");
    assert!(ours.iter().all(|l| l.contains("-late-")), "{ours:?}");
}

/// An engine timestamp `secs` later, in RFC 3339.
fn plus_seconds(stamp: &str, secs: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    (t + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Seconds from an engine timestamp to now (the engine runs on this machine: one clock).
fn seconds_since(stamp: &str) -> i64 {
    let t = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    (chrono::Utc::now() - t.to_utc()).num_seconds()
}

/// The texts of a run's merged lines, without their prefixes.
fn texts(r: &Run) -> BTreeSet<String> {
    r.ok().lines().map(|l| split(l, false).2).collect()
}
