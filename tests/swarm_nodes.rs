//! `swarm node …` and manager failover on one bed of three netns hosts, each its own dockerd
//! and sshd: hosts 0 and 1 managers, host 2 a worker, reached by wsm through a swarm record
//! over SSH. The witness is the Docker CLI on a manager's own socket.
//!
//! `node ls` (table and `--json`) equals `docker node ls`; `inspect` names the node docker
//! names; `label add` is seen by a placement constraint and `label rm` takes it away; a drain
//! moves a service's task off its host and `activate` lets it come back; `pause` and `promote`
//! are what `docker node ls` shows; bad input (an unknown node, a label without a key) exits 2
//! with one line and changes nothing. Last, host 0's dockerd is killed (SIGKILL): `stack ls`
//! through the record answers from the next manager it lists (as `promote` recorded them), and
//! `-v` says so; the dead manager is demoted and removed with --force.

mod common;

use std::collections::BTreeSet;

use common::hosts::*;
use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost:5000/wavelet-stack-node:latest";

/// A docker table's rows in order, each cell trimmed (cells are separated by two spaces or
/// more; column widths are not compared).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The nodes running a service's tasks (desired state running, current state running).
fn running_on(manager: &Host, service: &str) -> Vec<String> {
    docker_on(
        &manager.name,
        &[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ],
    )
    .lines()
    .filter(|l| l.contains(" Running"))
    .map(|l| l.split(' ').next().unwrap().to_string())
    .collect()
}

/// A node's field as `docker node inspect --format` prints it.
fn node_field(manager: &Host, node: &str, format: &str) -> String {
    docker_on(
        &manager.name,
        &["node", "inspect", node, "--format", format],
    )
    .trim()
    .to_string()
}

/// A service of the test's stack (`label`), sleeping, created with docker on `manager`.
fn service_create(manager: &Host, name: &str, label: &str, options: &[&str]) {
    let mut args = vec!["service", "create", "-d", "--name", name, "--label", label];
    args.extend_from_slice(options);
    args.extend_from_slice(&[IMAGE, "sleep", "100000"]);
    docker_on(&manager.name, &args);
}

#[test]
fn nodes_are_managed_as_docker_does_and_a_dead_manager_is_passed_over() {
    require_images();
    let bed = Bed::new();
    let hosts: Vec<Host> = ["wnd0", "wnd1", "wnd2"]
        .iter()
        .map(|p| Host::up(p, &bed.public_key()))
        .collect();
    let all: Vec<&Host> = hosts.iter().collect();
    load_images(&all, &[IMAGE]);
    form_swarm(&hosts[0], &all[1..2], "manager");
    let token = docker_on(&hosts[0].name, &["swarm", "join-token", "-q", "worker"]);
    let manager_addr = format!("{}:2377", hosts[0].ip());
    docker_on(
        &hosts[2].name,
        &[
            "swarm",
            "join",
            "--advertise-addr",
            hosts[2].ip(),
            "--token",
            token.trim(),
            &manager_addr,
        ],
    );
    wait_for("three nodes ready", 90, || {
        ready_nodes(&hosts[0].name).len() == 3
    });
    trust(&bed, &all);

    // The record: host 0 in use, hosts 0 and 1 the managers (SWARM_MANAGERS, as an older wsm
    // wrote it); `promote` below records the list of managers as `import` and `create` do.
    let sw = unique("wnd");
    let list: Vec<String> = hosts
        .iter()
        .map(|h| format!("{}/{}/", h.name, h.ip()))
        .collect();
    std::fs::create_dir_all(bed.path("config/swarms")).unwrap();
    std::fs::write(
        bed.path(&format!("config/swarms/{sw}")),
        format!(
            "SWARM_NAME={sw}\nDOCKER_HOST=ssh://root@{ip0}\nSWARM_HOSTS={}\nSWARM_MANAGERS=2\n",
            list.join(","),
            ip0 = hosts[0].ip(),
        ),
    )
    .unwrap();
    let node = |args: &[&str]| -> Run {
        let mut all = vec!["swarm", "node"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--swarm", &sw]);
        bed.wsm_patient(&all)
    };
    let m = &hosts[0];
    let (n0, n1, n2) = (&hosts[0].name, &hosts[1].name, &hosts[2].name);

    // ls: the table's rows (in docker's order) and the JSON rows are docker's.
    let ls = node(&["ls"]);
    assert_eq!(
        table_rows(ls.ok()),
        table_rows(&docker_on(&m.name, &["node", "ls"])),
        "{}",
        ls.stdout
    );
    let json = bed.wsm_patient(&["--json", "swarm", "node", "ls", "--swarm", &sw]);
    let ours: BTreeSet<String> = serde_json::from_str::<Value>(json.ok())
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    let theirs: BTreeSet<String> = docker_on(&m.name, &["node", "ls", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
        .collect();
    assert_eq!(ours, theirs);
    let quiet = node(&["ls", "-q"]);
    let ids: BTreeSet<String> = quiet.ok().lines().map(String::from).collect();
    let docker_ids: BTreeSet<String> = docker_on(&m.name, &["node", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ids, docker_ids);

    // inspect: by hostname, the node docker names.
    let inspected = node(&["inspect", n2]);
    let v: Value = serde_json::from_str(inspected.ok()).unwrap();
    assert_eq!(v[0]["ID"], node_field(m, n2, "{{.ID}}").as_str());

    // label add is seen by a placement constraint; label rm takes it away.
    let key = format!("wsm.{sw}");
    node(&["label", "add", n2, &format!("{key}=here"), "wsm.flag"]).ok();
    assert_eq!(
        node_field(m, n2, &format!("{{{{index .Spec.Labels \"{key}\"}}}}")),
        "here"
    );
    let pinned = format!("{sw}-app_pinned");
    let stack_label = format!("com.docker.stack.namespace={sw}-app");
    service_create(
        m,
        &pinned,
        &stack_label,
        &["--constraint", &format!("node.labels.{key}==here")],
    );
    wait_for("the pinned task running on the labelled node", 120, || {
        running_on(m, &pinned) == vec![n2.clone()]
    });
    node(&["label", "rm", n2, &key]).ok();
    // Gone, so that a drain below has no task it cannot move.
    docker_on(&m.name, &["service", "rm", &pinned]);
    assert_eq!(
        node_field(m, n2, "{{json .Spec.Labels}}"),
        r#"{"wsm.flag":""}"#
    );

    // Bad input: one line, exit 2, nothing changed.
    for args in [
        vec!["inspect", "nosuchnode"],
        vec!["drain", n1, "nosuchnode"],
        vec!["label", "add", n2, "=x"],
        vec!["label", "rm", n2, "wsm.absent"],
    ] {
        let r = node(&args);
        assert_eq!(r.code, 2, "{args:?}: {} {}", r.stdout, r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
    }
    assert_eq!(node_field(m, n1, "{{.Spec.Availability}}"), "active");
    assert_eq!(
        node_field(m, n2, "{{json .Spec.Labels}}"),
        r#"{"wsm.flag":""}"#
    );

    // drain moves a task off its host; activate lets it come back.
    let spread = format!("{sw}-app_spread");
    service_create(
        m,
        &spread,
        &stack_label,
        &["--replicas", "2", "--replicas-max-per-node", "1"],
    );
    wait_for("two spread tasks running", 120, || {
        running_on(m, &spread).len() == 2
    });
    let before = running_on(m, &spread);
    let drained = before[0].clone();
    let r = node(&["drain", "--timeout", "120", &drained]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("{drained}: drained")),
        "{}",
        r.stderr
    );
    // Done when wsm says so: nothing left running on the node, both replicas elsewhere.
    let after = running_on(m, &spread);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!after.contains(&drained), "{after:?}");
    let on_node = docker_on(
        &m.name,
        &[
            "node",
            "ps",
            &drained,
            "--filter",
            "desired-state=running",
            "-q",
        ],
    );
    assert_eq!(on_node.trim(), "", "tasks still on {drained}");
    assert_eq!(node_field(m, &drained, "{{.Spec.Availability}}"), "drain");
    node(&["activate", &drained]).ok();
    assert_eq!(node_field(m, &drained, "{{.Spec.Availability}}"), "active");
    // The only node free for a task moved off another is the one activated again.
    let other = after.iter().find(|n| **n != before[1]).unwrap().clone();
    let r = node(&["drain", "--timeout", "120", &other]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(running_on(m, &spread).contains(&drained));
    node(&["activate", &other]).ok();

    // pause, then active again.
    node(&["pause", n1]).ok();
    assert_eq!(node_field(m, n1, "{{.Spec.Availability}}"), "pause");
    node(&["activate", n1]).ok();
    assert_eq!(node_field(m, n1, "{{.Spec.Availability}}"), "active");

    // promote makes the worker a manager.
    node(&["promote", n2]).ok();
    wait_for("host 2 a reachable manager", 90, || {
        docker_on(
            &m.name,
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
        )
        .lines()
        .any(|l| l == format!("{n2} Reachable"))
    });

    // The record lists the three managers now, in host order.
    let record = std::fs::read_to_string(bed.path(&format!("config/swarms/{sw}"))).unwrap();
    let listed = format!(
        "SWARM_MANAGER_HOSTS=ssh://root@{},ssh://root@{},ssh://root@{}",
        hosts[0].ip(),
        hosts[1].ip(),
        hosts[2].ip()
    );
    assert!(record.lines().any(|l| l == listed), "{record}");

    // rm refuses a node that is up.
    let r = node(&["rm", n1]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert!(ready_nodes(&m.name).contains(n1));

    // Failover: host 0's engine dies; the record's next manager answers.
    let pid = std::fs::read_to_string(format!("/run/wsm-hosts/{n0}/docker.pid")).unwrap();
    unsafe { libc::kill(pid.trim().parse().unwrap(), libc::SIGKILL) };
    let stack = format!("{sw}-app");
    let mut last = None;
    wait_for("stack ls answered through another manager", 120, || {
        let r = bed.wsm_patient(&["-v", "stack", "-s", &stack, "ls"]);
        let done = r.code == 0;
        last = Some(r);
        done
    });
    let r = last.unwrap();
    assert!(
        r.stdout
            .lines()
            .any(|l| l.split_whitespace().eq([stack.as_str(), "1"])),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!(
            "the manager at ssh://root@{} does not answer",
            hosts[0].ip()
        )) && r
            .stderr
            .contains(&format!("trying ssh://root@{}", hosts[1].ip())),
        "{}",
        r.stderr
    );

    // The dead manager is demoted and removed, not waiting for the swarm to call it down:
    // --force (through the next manager as well).
    let m1 = &hosts[1];
    node(&["demote", n0]).ok();
    assert_eq!(node_field(m1, n0, "{{.Spec.Role}}"), "worker");
    node(&["rm", "--force", n0]).ok();
    let left = docker_on(&m1.name, &["node", "ls", "--format", "{{.Hostname}}"]);
    assert!(!left.lines().any(|l| l == n0.as_str()), "{left}");
}
