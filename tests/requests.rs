//! What reading a stack costs the engine, counted through a pass-through proxy on the engine's
//! socket (tests/common/apiproxy.rs), never timed (issue 28): each read command makes a fixed
//! handful of Engine API requests, every listing of services or tasks is filtered by the
//! stack's label on the engine's side (so none grows with the other stacks of the swarm), and
//! `stack ls` lists every stack in one request. At 150 ms round trips to a remote manager these
//! counts are the whole bill, so a change that adds a request shows here.

mod common;

use std::path::Path;

use common::apiproxy::{counting_proxy, Seen};
use common::*;

/// An image that exists here (nothing can be pulled), running a sleep.
const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// Runs `wsm -C … <args>` with the engine reached through the proxy at `socket`; returns the
/// run and the request lines it made.
fn counted(s: &TestStack, socket: &Path, seen: &Seen, args: &[&str]) -> (Run, Vec<String>) {
    let before = seen.lock().unwrap().len();
    let run: Run = s
        .command(args)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .output()
        .expect("run wsm")
        .into();
    let made = seen.lock().unwrap()[before..].to_vec();
    (run, made)
}

#[test]
fn reading_a_stack_makes_a_fixed_handful_of_label_filtered_requests() {
    let s = TestStack::new("wsmreq");
    let file = s.dir.path().join("two.yml");
    std::fs::write(
        &file,
        format!(
            "services:\n  a:\n    image: {IMAGE}\n    entrypoint: [sleep, infinity]\n    stop_grace_period: 1s\n    deploy: {{replicas: 2}}\n  b:\n    image: {IMAGE}\n    entrypoint: [sleep, infinity]\n    stop_grace_period: 1s\n"
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    s.stack(&[
        "deploy",
        "-c",
        &file,
        "--resolve-image",
        "never",
        "--timeout",
        "120",
    ])
    .ok();

    let socket = s.dir.path().join("engine.sock");
    let seen = counting_proxy(&socket);
    let label = format!("com.docker.stack.namespace%3D{}", s.name);
    // The most requests each command may make (issue 28's count at the time, engine ping
    // included): status = one snapshot (services, tasks, nodes, volumes), which the
    // application's record is read from too (7 before: the record was a request of its own,
    // and a compose stack's status listed services, tasks and nodes one after the other); ps
    // its services, nodes and tasks in one wave (`e.lists`), services its services and tasks;
    // logs as said below;
    // plan = the stack's services and networks and the
    // swarm's networks, secrets and configs in one round trip, and the image's digest (the
    // whole swarm's services only when the plan publishes an ingress port).
    for (cmd, budget, shows) in [
        (vec!["status"], 5, format!("{}_a.2", s.name)),
        (vec!["ps"], 5, format!("{}_a.2", s.name)),
        (vec!["services"], 4, format!("{}_b", s.name)),
        (vec!["plan", "-c", &file], 10, "no changes".to_string()),
        (vec!["history"], 3, "deploy".to_string()),
        // The services listed by the context (which the application is read from) and by the
        // log merge with the tasks, then each task's logs (3); 8 before, the script listing them
        // once more. The services print nothing.
        (vec!["logs", "--tail", "1"], 7, String::new()),
    ] {
        let args = [&["stack", "-s", s.name.as_str()][..], &cmd].concat();
        let cmd = cmd[0];
        let (run, made) = counted(&s, &socket, &seen, &args);
        assert!(run.ok().contains(&shows), "{cmd}: {}", run.stdout);
        eprintln!("stack {cmd}: {} requests", made.len());
        assert!(
            made.len() <= budget,
            "{cmd} made {} requests (at most {budget}): {made:#?}",
            made.len()
        );
        for line in &made {
            let lists = line.contains("/services?")
                || line.contains("/tasks?")
                || line.ends_with("/services HTTP/1.1")
                || line.ends_with("/tasks HTTP/1.1");
            // The log merge asks for its services, and their tasks, by the services' names
            // (`e.merged_logs` takes any).
            let by_name = line.contains(&format!("%22name%22%3A%5B%22{}_", s.name))
                || line.contains(&format!("%22service%22%3A%5B%22{}_", s.name));
            assert!(
                !lists || line.contains(&label) || by_name,
                "{cmd}: a listing not filtered by the stack's label: {line}"
            );
        }
    }

    let (run, made) = counted(&s, &socket, &seen, &["stack", "ls"]);
    assert!(run.ok().contains(&s.name), "{}", run.stdout);
    let listings: Vec<&String> = made.iter().filter(|l| !l.starts_with("HEAD /")).collect();
    assert_eq!(listings.len(), 1, "stack ls: {made:#?}");
    assert!(
        listings[0].contains("/services?") && listings[0].contains("com.docker.stack.namespace"),
        "stack ls lists services filtered by the stack label: {made:#?}"
    );
}

#[test]
fn a_deploy_records_its_revision_after_the_wait_with_one_listing_of_each_kind() {
    let s = TestStack::new("wsmreqdep");
    let write = |value: &str| {
        let file = s.dir.path().join("one.yml");
        std::fs::write(
            &file,
            format!(
                "services:\n  a:\n    image: {IMAGE}\n    entrypoint: [sleep, infinity]\n    stop_grace_period: 1s\n    environment: {{V: \"{value}\"}}\n    deploy: {{update_config: {{monitor: 2s}}}}\n"
            ),
        )
        .unwrap();
        file.display().to_string()
    };
    let deploy = [
        "deploy",
        "-c",
        "",
        "--resolve-image",
        "never",
        "--timeout",
        "120",
    ];
    let with = |file: &str| {
        let mut d = deploy.map(String::from);
        d[2] = file.to_string();
        [
            vec!["stack".to_string(), "-s".to_string(), s.name.clone()],
            d.to_vec(),
        ]
        .concat()
    };
    let first = with(&write("one"));
    s.command(&first.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .map(Run::from)
        .unwrap()
        .ok();

    let socket = s.dir.path().join("engine.sock");
    let seen = counting_proxy(&socket);
    let second = with(&write("two"));
    let args: Vec<&str> = second.iter().map(String::as_str).collect();
    let (run, made) = counted(&s, &socket, &seen, &args);
    run.ok();
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("revision 2 recorded"), "{said}");
    // What follows the wait's last read of the stack's tasks: the record and the pruning.
    let last_read = made
        .iter()
        .rposition(|l| l.contains("/tasks?") && l.contains("_up-to-date"))
        .expect("the wait read the tasks");
    let after: Vec<&String> = made[last_read + 1..]
        .iter()
        .filter(|l| !l.contains("/update?")) // the lock's renewal, on its own clock
        .collect();
    eprintln!("after the wait: {after:#?}");
    let count = |what: &dyn Fn(&str) -> bool| after.iter().filter(|l| what(l)).count();
    // Before issue 28 item 4: the services listed four times (the state left, the versions in use
    // for secrets and again for configs, the live stacks for stale histories), the history read
    // back once more for the versions its revisions keep, the store listed: 13 requests, one after
    // the other (counted so at `649a15e`).
    assert_eq!(
        count(&|l| l.contains("/services?") && !l.contains(&format!("%3D{}", s.name))),
        1,
        "the swarm's services listed once: {after:#?}"
    );
    assert_eq!(
        count(&|l| l.starts_with("GET") && l.contains("wsm-state-stack.")),
        1,
        "the history read once (after its write): {after:#?}"
    );
    assert!(
        after.len() <= 11,
        "{} requests after the wait: {after:#?}",
        after.len()
    );
}

#[test]
fn a_deploy_lists_secrets_and_configs_once_whatever_the_plan_names() {
    let s = TestStack::new("wsmreqobj");
    let mut file = String::from("services:\n  a:\n    image: ");
    file += &format!("{IMAGE}\n    entrypoint: [sleep, infinity]\n    stop_grace_period: 1s\n");
    file += "    secrets: [s1, s2, s3]\n    configs: [c1, c2, c3]\nsecrets:\n";
    for i in 1..=3 {
        let path = s.dir.path().join(format!("s{i}.txt"));
        std::fs::write(&path, format!("secret {i} of {}", s.name)).unwrap();
        file += &format!("  s{i}: {{file: {}}}\n", path.display());
    }
    file += "configs:\n";
    for i in 1..=3 {
        let path = s.dir.path().join(format!("c{i}.txt"));
        std::fs::write(&path, format!("config {i} of {}", s.name)).unwrap();
        file += &format!("  c{i}: {{file: {}}}\n", path.display());
    }
    let path = s.dir.path().join("objects.yml");
    std::fs::write(&path, file).unwrap();
    let socket = s.dir.path().join("engine.sock");
    let seen = counting_proxy(&socket);
    let args = [
        "stack",
        "-s",
        &s.name,
        "deploy",
        "-c",
        path.to_str().unwrap(),
        "--resolve-image",
        "never",
        "--timeout",
        "120",
    ];
    let (run, made) = counted(&s, &socket, &seen, &args);
    run.ok();
    // Witness: the service runs with its six objects.
    let mounted = docker(&[
        "service",
        "inspect",
        "--format",
        "{{len .Spec.TaskTemplate.ContainerSpec.Secrets}} {{len .Spec.TaskTemplate.ContainerSpec.Configs}}",
        &format!("{}_a", s.name),
    ]);
    assert_eq!(mounted.trim(), "3 3");
    // The plan's snapshot lists the stack's objects, the writes the swarm's (the names a plan
    // may take, or be rotated to), the pruning of unused versions after the wait the stack's
    // again: before, each object was also looked up by name and by the versions rotated from
    // it, two requests more per object, one after the other.
    for kind in ["secrets", "configs"] {
        let listings: Vec<&String> = made
            .iter()
            .filter(|l| l.starts_with("GET") && l.contains(&format!("/{kind}?")))
            // wsm's own store documents are configs too (`wsm.state`), listed for themselves.
            .filter(|l| !l.contains("wsm.state"))
            .collect();
        assert!(
            listings.len() <= 3,
            "{kind} listed {} times: {listings:#?}",
            listings.len()
        );
        assert!(
            !listings
                .iter()
                .any(|l| l.contains("%22name%22") || l.contains("wsm.rotated.from")),
            "a {kind} looked up by name or rotation: {listings:#?}"
        );
    }
}
