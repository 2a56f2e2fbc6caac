//! Stacks that are not Wavelet: the GoChariots stack file of seed 001 deployed, scaled, listed
//! and removed through `wsm stack`; a stack whose config names its compose files started,
//! shown, updated, rolled back, restarted and stopped; jobs; bad files refused before anything
//! is created. The Docker CLI is the witness.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The seed's stack file, unchanged (tests/fixtures/gochariots/SOURCE.md).
fn gochariots_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gochariots/docker-stack.yaml")
}

/// Builds the stand-in under the image names the GoChariots file uses, once per run, and makes
/// the host folders its bind mounts name (the seed's instructions ask for them on every node).
fn gochariots_standins() {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let context =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gochariots/standin");
        docker(&[
            "build",
            "-q",
            "-t",
            "fasthall/gochariots:latest",
            "-t",
            "dockercloud/haproxy:latest",
            context.to_str().unwrap(),
        ]);
        for dir in ["logs", "config", "flstore"] {
            std::fs::create_dir_all(format!("/home/ubuntu/deploy/{dir}")).unwrap();
        }
    });
}

/// `docker service ls`'s REPLICAS of the stack's services, by name.
fn replicas(stack: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = docker(&[
        "service",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={stack}"),
        "--format",
        "{{.Name}} {{.Replicas}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, r)| (n.to_string(), r.to_string()))
    .collect();
    v.sort();
    v
}

/// What the Docker CLI still lists of a stack: services, networks, secrets, configs.
fn leftovers(stack: &str) -> String {
    let label = format!("label=com.docker.stack.namespace={stack}");
    ["service", "network", "secret", "config"]
        .iter()
        .map(|kind| docker(&[kind, "ls", "-q", "--filter", &label]))
        .collect::<Vec<_>>()
        .concat()
}

#[test]
fn the_gochariots_stack_deploys_scales_lists_and_is_removed_without_a_trace() {
    gochariots_standins();
    let s = TestStack::bare("wsmgc");
    let file = gochariots_file();
    let file = file.to_str().unwrap();
    let name = s.name.as_str();

    let started = Instant::now();
    let r = s.wsm(&["stack", "deploy", "-c", file, "--timeout", "120", name]);
    r.ok();
    assert!(
        r.stdout
            .contains(&format!("Creating network {name}_cluster")),
        "{}",
        r.stdout
    );
    let services = [
        "app",
        "batcher",
        "batcher_lb",
        "controller",
        "filter",
        "indexer",
        "maintainer",
        "queue",
        "queue-leader",
    ];
    let want: Vec<(String, String)> = services
        .iter()
        .map(|svc| {
            let n = if *svc == "batcher" { 3 } else { 1 };
            (format!("{name}_{svc}"), format!("{n}/{n}"))
        })
        .collect();
    assert_eq!(
        replicas(name),
        want,
        "deploy returned before every service ran"
    );
    eprintln!("deploy converged in {:?}", started.elapsed());

    // The seed scales a stage with `docker service scale`; here through wsm, down and back.
    s.wsm(&["stack", "-s", name, "scale", "batcher=1"]).ok();
    let batcher = format!("{name}_batcher");
    let of_batcher =
        |r: &[(String, String)]| r.iter().find(|(n, _)| *n == batcher).unwrap().1.clone();
    assert_eq!(of_batcher(&replicas(name)), "1/1");
    s.wsm(&["stack", "-s", name, "scale", "batcher=3"]).ok();
    assert_eq!(of_batcher(&replicas(name)), "3/3");

    // `docker stack ps` lists the stack; wsm's own lists agree with the Docker CLI's columns.
    let ps = docker(&[
        "stack",
        "ps",
        name,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Name}}",
    ]);
    for slot in 1..=3 {
        assert!(
            ps.contains(&format!("{name}_batcher.{slot}")),
            "docker stack ps:\n{ps}"
        );
    }
    let ours = s.wsm(&["stack", "ps", "--running", name]);
    assert!(ours.ok().starts_with("ID "), "{}", ours.stdout);
    for header in [
        "NAME",
        "IMAGE",
        "NODE",
        "DESIRED STATE",
        "CURRENT STATE",
        "ERROR",
        "PORTS",
    ] {
        assert!(
            ours.stdout.lines().next().unwrap().contains(header),
            "{}",
            ours.stdout
        );
    }
    assert_eq!(
        ours.stdout.matches(&format!("{name}_batcher.")).count(),
        3,
        "{}",
        ours.stdout
    );
    let ls = s.wsm(&["stack", "ls"]);
    assert!(
        ls.ok()
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [name, "9"]),
        "{}",
        ls.stdout
    );
    let listed: Value =
        serde_json::from_str(s.wsm(&["stack", "services", name, "--json"]).ok()).unwrap();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == batcher.as_str())
        .unwrap();
    assert_eq!(row["replicas"], "3/3");
    assert_eq!(row["mode"], "replicated");
    let app = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == format!("{name}_app"))
        .unwrap();
    assert_eq!(app["ports"][0], "*:8080->8080/tcp");

    // Node ids of any stack are service[.slot].
    let logs = s.wsm(&["stack", "-s", name, "logs", "batcher.2"]);
    assert!(
        logs.ok().contains("gochariots stand-in: batcher -p 9000"),
        "{}",
        logs.stdout
    );

    s.wsm(&["stack", "rm", name]).ok();
    assert_eq!(leftovers(name), "", "rm left objects of {name} behind");
}

/// A stack config naming its compose file and env file, relative to config/stacks/.
fn compose_stack(prefix: &str, greeting: &str) -> TestStack {
    let s = TestStack::bare(prefix);
    let dir = s.config_dir().join("compose");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("app.yml"),
        "services:\n  web:\n    image: localhost:5000/wavelet-stack-base:${TAG}\n    \
         command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo $$GREETING; sleep infinity & wait\"]\n    \
         environment:\n      - GREETING=${GREETING}\n    deploy: {replicas: 2, endpoint_mode: dnsrr}\n  \
         worker:\n    image: localhost:5000/wavelet-stack-base:${TAG}\n    \
         command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep infinity & wait\"]\n    \
         deploy: {endpoint_mode: dnsrr}\n",
    )
    .unwrap();
    set_greeting(&s, greeting);
    s.set("WSM_COMPOSE_FILES", "../compose/app.yml");
    s.set("WSM_ENV_FILES", "../compose/app.env");
    s.set("WSM_DEPLOY_TIMEOUT", "120");
    s
}

fn set_greeting(s: &TestStack, greeting: &str) {
    let env = format!("TAG=latest\nGREETING={greeting}\n");
    std::fs::write(s.config_dir().join("compose/app.env"), env).unwrap();
}

/// The stack's running task ids of a service, sorted.
fn task_ids(s: &TestStack, service: &str) -> Vec<String> {
    let mut v: Vec<String> = docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &format!("{}_{service}", s.name),
    ])
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

fn inspect(s: &TestStack, service: &str, format: &str) -> String {
    docker(&[
        "service",
        "inspect",
        &format!("{}_{service}", s.name),
        "--format",
        format,
    ])
    .trim()
    .to_string()
}

#[test]
fn a_config_named_compose_stack_starts_updates_rolls_back_restarts_and_stops() {
    let s = compose_stack("wsmcs", "hello");
    s.stack(&["start"]).ok();
    assert_eq!(
        s.services(),
        [format!("{}_web", s.name), format!("{}_worker", s.name)]
    );
    assert_eq!(task_ids(&s, "web").len(), 2);

    let status = s.stack(&["status"]);
    assert!(status.ok().contains("  - RUNNING"), "{}", status.stdout);
    assert!(
        status.stdout.contains(&format!("{}_web", s.name)),
        "{}",
        status.stdout
    );
    let env = inspect(&s, "web", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}");
    assert_eq!(env, r#"["GREETING=hello"]"#);

    // A Wavelet-only command refuses it in one sentence, and changes nothing.
    for cmd in [
        &["dump-db", "1", "/tmp/never.tgz"][..],
        &["compose"],
        &["restart-wavelet"],
    ] {
        let r = s.stack(cmd);
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
        let first = r.stderr.lines().next().unwrap_or("");
        assert!(
            first.contains("works on Wavelet stacks only") && first.contains(&s.name),
            "{cmd:?}: {}",
            r.stderr
        );
    }

    // update applies a changed env file; rollback returns web to its previous spec.
    set_greeting(&s, "changed");
    s.stack(&["update"]).ok();
    assert_eq!(
        inspect(&s, "web", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"),
        r#"["GREETING=changed"]"#
    );
    s.stack(&["rollback", "web"]).ok();
    assert_eq!(
        inspect(&s, "web", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"),
        r#"["GREETING=hello"]"#
    );
    assert_eq!(
        inspect(
            &s,
            "web",
            "{{json .PreviousSpec.TaskTemplate.ContainerSpec.Env}}"
        ),
        r#"["GREETING=changed"]"#
    );
    let logs = s.stack(&["logs", "web.1"]);
    assert!(logs.ok().contains("hello"), "{}", logs.stdout);

    // restart replaces every task of every service: new ids, ForceUpdate bumped.
    let before = [task_ids(&s, "web"), task_ids(&s, "worker")];
    let forced = [
        inspect(&s, "web", "{{.Spec.TaskTemplate.ForceUpdate}}"),
        inspect(&s, "worker", "{{.Spec.TaskTemplate.ForceUpdate}}"),
    ];
    s.stack(&["restart", &s.name]).ok();
    let after = [task_ids(&s, "web"), task_ids(&s, "worker")];
    for (i, svc) in ["web", "worker"].iter().enumerate() {
        assert_eq!(after[i].len(), before[i].len(), "{svc}: {:?}", after[i]);
        assert!(
            after[i].iter().all(|t| !before[i].contains(t)),
            "{svc} kept a task: {:?} {:?}",
            before[i],
            after[i]
        );
        let bumped: u64 = inspect(&s, svc, "{{.Spec.TaskTemplate.ForceUpdate}}")
            .parse()
            .unwrap();
        assert_eq!(bumped, forced[i].parse::<u64>().unwrap() + 1, "{svc}");
    }

    s.stack(&["stop"]).ok();
    assert!(s.services().is_empty());
    assert_eq!(leftovers(&s.name), "");
}

/// Writes a compose file into the stack's folder and returns its path.
fn file_in(s: &TestStack, name: &str, text: &str) -> String {
    let path = s.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_job_completes_and_deploy_returns_and_a_failing_job_fails_deploy_in_time() {
    let s = TestStack::bare("wsmjob");
    let job = |cmd: &str| {
        format!(
            "services:\n  once:\n    image: localhost:5000/wavelet-stack-base:latest\n    \
             command: [\"sh\", \"-c\", \"{cmd}\"]\n    deploy: {{mode: replicated-job, replicas: 2}}\n"
        )
    };
    let ok = file_in(&s, "ok.yml", &job("echo done"));
    let started = Instant::now();
    s.wsm(&["stack", "deploy", "-c", &ok, "--timeout", "60", &s.name])
        .ok();
    assert!(started.elapsed() < Duration::from_secs(60));
    let done = docker(&[
        "service",
        "ps",
        &format!("{}_once", s.name),
        "--format",
        "{{.CurrentState}}",
    ]);
    assert_eq!(
        done.lines().filter(|l| l.starts_with("Complete")).count(),
        2,
        "{done}"
    );

    let bad = file_in(&s, "bad.yml", &job("echo boom >&2; exit 3"));
    let started = Instant::now();
    let r = s.wsm(&["stack", "deploy", "-c", &bad, "--timeout", "60", &s.name]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("non-zero exit (3)"), "{}", r.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_files_exit_2_naming_the_file_and_key_and_create_nothing() {
    let s = TestStack::bare("wsmbad");
    let cases = [
        ("unknown.yml", "services:\n  web:\n    image: i\n    zz_unknown: 1\n", "zz_unknown"),
        ("envfile.yml", "services:\n  web:\n    image: i\n    env_file: missing.env\n", "env_file"),
        (
            "secret.yml",
            "services:\n  web:\n    image: i\n    secrets: [s]\nsecrets:\n  s:\n    file: ./no-such-secret\n",
            "secret",
        ),
        ("unset.yml", "services:\n  web:\n    image: ${WSM_TEST_UNSET_IMAGE?an image is needed}\n", "WSM_TEST_UNSET_IMAGE"),
    ];
    for (name, text, key) in cases {
        let path = file_in(&s, name, text);
        let r = s.wsm(&["stack", "deploy", "-c", &path, &s.name]);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        let first = r.stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(name) && first.contains(key),
            "{name}: {}",
            r.stderr
        );
        // A file's error is one line: the usage line would not help (issue 26 item 8).
        assert!(!r.stderr.contains("usage:"), "{name}: {}", r.stderr);
    }
    let r = s.wsm(&["stack", "deploy", "-c", "no-such.yml", &s.name]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no-such.yml") && r.stderr.contains("No such file"),
        "{}",
        r.stderr
    );
    let r = s.wsm(&["stack", "-s", "other", "deploy", "-c", "x.yml", &s.name]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("name different stacks"), "{}", r.stderr);
    let r = s.wsm(&[
        "stack",
        "deploy",
        "-c",
        "x.yml",
        "--resolve-image",
        "sometimes",
        &s.name,
    ]);
    assert_eq!(r.code, 2);
    // The witnesses: nothing of the stack exists on the swarm.
    assert_eq!(leftovers(&s.name), "");
}

#[test]
fn a_file_with_duplicate_keys_is_refused() {
    let s = TestStack::bare("wsmdup");
    let path = file_in(
        &s,
        "dup.yml",
        "services:\n  web:\n    image: a\n    image: b\n",
    );
    let r = s.wsm(&["stack", "deploy", "-c", &path, &s.name]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("dup.yml") && r.stderr.contains("image"),
        "{}",
        r.stderr
    );
    assert_eq!(leftovers(&s.name), "");
}

#[test]
fn a_deploy_of_many_services_returns_when_every_task_runs_and_one_that_never_starts_fails_it() {
    // Eight services are created at once and the wait (on the engine's events) returns only
    // when every one runs; the Docker CLI, asked right after, sees every task running.
    let s = TestStack::bare("wsmmany");
    let mut text = String::from("services:\n");
    for i in 1..=8 {
        text += &format!(
            "  s{i}:\n    image: localhost:5000/wavelet-stack-base:latest\n    \
             entrypoint: [\"sleep\", \"infinity\"]\n    stop_grace_period: 1s\n"
        );
    }
    let many = file_in(&s, "many.yml", &text);
    let r = s.wsm(&["stack", "deploy", "-c", &many, "--timeout", "120", &s.name]);
    let said = r.ok();
    let created: Vec<&str> = said
        .lines()
        .filter_map(|l| l.strip_prefix("Creating service "))
        .collect();
    let want: Vec<String> = (1..=8).map(|i| format!("{}_s{i}", s.name)).collect();
    assert_eq!(created, want, "said in the plan's order:\n{said}");
    let all: Vec<(String, String)> = want.iter().map(|n| (n.clone(), "1/1".into())).collect();
    assert_eq!(replicas(&s.name), all);
    for name in &want {
        let states = docker(&["service", "ps", name, "--format", "{{.CurrentState}}"]);
        assert!(states.starts_with("Running"), "{name}: {states}");
    }

    // A service whose tasks fail to start ends the wait with their error at the first failure,
    // long before the deadline, and without a rollback the Docker CLI shows the failed task.
    let crash = file_in(
        &s,
        "crash.yml",
        &format!(
            "{text}  crash:\n    image: localhost:5000/wavelet-stack-base:latest\n    \
             entrypoint: [\"/no/such/program\"]\n"
        ),
    );
    let started = Instant::now();
    let r = s.wsm(&[
        "stack",
        "deploy",
        "-c",
        &crash,
        "--timeout",
        "120",
        "--no-rollback",
        &s.name,
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("service {}_crash: ", s.name)) && r.stderr.contains("task(s) "),
        "{}",
        r.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "took {:?}",
        started.elapsed()
    );
    let failed = docker(&[
        "service",
        "ps",
        "--no-trunc",
        &format!("{}_crash", s.name),
        "--format",
        "{{.CurrentState}} {{.Error}}",
    ]);
    assert!(
        failed
            .lines()
            .filter(|l| l.starts_with("Failed") || l.starts_with("Rejected"))
            .count()
            >= 1,
        "{failed}"
    );
    assert!(failed.contains("/no/such/program"), "{failed}");
}
