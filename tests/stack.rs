//! A Wavelet stack on the real local swarm, started, inspected, scaled and stopped through
//! `wsm`, with the Docker CLI, etcd and HAProxy as witnesses.

mod common;

use common::*;
use serde_json::Value;

fn status_json(s: &TestStack) -> Value {
    let r = s.stack(&["status", "--json"]);
    serde_json::from_str(r.ok())
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", r.stdout))
}

fn port_of(url: &str) -> u16 {
    url.trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Peers registered in the stack's etcd, read with curl inside the sync container.
fn etcd_peers(s: &TestStack) -> usize {
    let sync = s.container("sync", 1);
    let out = docker_quiet(&[
        "exec",
        &sync,
        "curl",
        "-fsS",
        "http://127.0.0.1:2379/v2/keys/peers",
    ]);
    serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v["node"]["nodes"].as_array().map(|a| a.len()))
        .unwrap_or(0)
}

#[test]
fn start_status_scale_and_stop_a_three_node_stack() {
    require_images();
    let s = TestStack::new("wsmt");
    s.set("WAVELET_NODES", "3");

    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    s.stack(&["start"]).ok();
    let prefix = &s.name;
    assert_eq!(
        s.services(),
        ["benchmark", "loadbalancer", "sync", "wavelet"].map(|x| format!("{prefix}_{x}"))
    );
    assert_eq!(s.running_tasks("wavelet").len(), 3, "wavelet tasks");
    wait_for("3 peers in etcd", 60, || etcd_peers(&s) == 3);

    let status = s.stack(&["status"]);
    let text = status.ok();
    assert!(
        text.starts_with(&format!(
            "{prefix} (on default):\n  - RUNNING\n  - VOLUMES\n"
        )),
        "{text}"
    );
    assert!(text.contains("  - API (main): http://"), "{text}");
    assert!(text.contains("  - API (all): http://"), "{text}");
    assert!(text.contains("  - RPC: "), "{text}");
    assert!(!text.contains("RPC: disabled"), "{text}");
    for slot in 1..=3 {
        assert!(
            text.contains(&format!("{prefix}_wavelet.{slot} ")),
            "task table lacks wavelet.{slot}:\n{text}"
        );
    }
    assert!(
        text.contains("ID") && text.contains("CURRENT STATE"),
        "{text}"
    );

    // The API line's URL answers through the real HAProxy with a wavelet node's ledger.
    let js = status_json(&s);
    let api = js["api_main"].as_str().expect("api_main").to_string();
    let port = port_of(&api);
    let lb = s.container("loadbalancer", 1);
    let bound = docker(&["port", &lb, "80/tcp"]);
    assert!(
        bound.contains(&format!(":{port}")),
        "status says {port}, docker port says {bound}"
    );
    let mut ledger = None;
    wait_for("the API through HAProxy", 60, || {
        ledger = http_get("127.0.0.1", port, "/ledger").filter(|(code, _)| *code == 200);
        ledger.is_some()
    });
    let body: Value = serde_json::from_str(&ledger.unwrap().1).expect("ledger JSON");
    assert_eq!(
        body["node_id"].as_i64(),
        Some(1),
        "the main API goes to node 1: {body}"
    );

    // The RPC mapping written into etcd names the published port of target 3000.
    let rpc_port = port_of(js["rpc"].as_str().expect("rpc"));
    let sync = s.container("sync", 1);
    let m = docker(&[
        "exec",
        &sync,
        "curl",
        "-fsS",
        "http://127.0.0.1:2379/v2/keys/mapping/1",
    ]);
    assert!(m.contains(&format!("/{rpc_port}/3000")), "mapping/1 = {m}");
    // Written while the wavelet tasks still waited for their health check and window (issue 28
    // item 4): the engine saw the mapping's exec before the deploy's revision was recorded.
    let events = docker(&[
        "events",
        "--since",
        &started.to_string(),
        "--until",
        "0s",
        "--filter",
        &format!("container={sync}"),
        "--filter",
        "event=exec_create",
        "--format",
        "{{.TimeNano}} {{.Action}}",
    ]);
    let exec_ns: i128 = events
        .lines()
        .find(|l| l.contains("mapping"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no mapping exec among the sync task's events:\n{events}"));
    let recorded = docker(&[
        "config",
        "inspect",
        "--format",
        "{{json .CreatedAt}}",
        &format!("wsm-state-stack.{prefix}.revisions"),
    ]);
    let recorded_ns = chrono::DateTime::parse_from_rfc3339(recorded.trim().trim_matches('"'))
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap() as i128;
    assert!(
        exec_ns < recorded_ns,
        "the mapping ({exec_ns}) was written after the revision was recorded ({recorded_ns})"
    );

    s.set("WAVELET_NODES", "5");
    s.stack(&["update"]).ok();
    assert_eq!(s.running_tasks("wavelet").len(), 5);
    s.set("WAVELET_NODES", "3");
    s.stack(&["update"]).ok();
    wait_for("3 wavelet tasks after scaling down", 60, || {
        s.running_tasks("wavelet").len() == 3
    });

    let volumes = s.volumes();
    s.stack(&["stop"]).ok();
    assert!(s.services().is_empty(), "services left after stop");
    let label = format!("label=com.docker.stack.namespace={prefix}");
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &label]).trim(),
        ""
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &label]).trim(),
        "",
        "containers left after stop"
    );
    assert!(!volumes.is_empty());
    assert_eq!(
        s.volumes(),
        volumes,
        "volumes must stay without WAVELET_CLEAN_VOLUMES"
    );
    let after = s.stack(&["status"]);
    assert!(
        after.ok().contains("  - NOT RUNNING\n  - VOLUMES\n"),
        "{}",
        after.stdout
    );

    s.set("WAVELET_CLEAN_VOLUMES", "yes");
    let again = s.stack(&["stop"]);
    assert!(again
        .ok()
        .contains(&format!("Nothing found in stack: {prefix}")));
    assert!(
        s.volumes().is_empty(),
        "WAVELET_CLEAN_VOLUMES=yes must remove {:?}",
        s.volumes()
    );
}

#[test]
fn no_rpc_and_a_fixed_api_port() {
    require_images();
    let s = TestStack::new("wsmr");
    let api_port = free_port();
    s.set("WAVELET_NODES", "1");
    s.set("WAVELET_NO_RPC", "true");
    s.set("WAVELET_API_PORT", &api_port.to_string());
    s.stack(&["start"]).ok();

    let ports = docker(&[
        "service",
        "inspect",
        &format!("{}_loadbalancer", s.name),
        "--format",
        "{{json .Spec.EndpointSpec.Ports}}",
    ]);
    let ports: Value = serde_json::from_str(&ports).unwrap();
    let ports = ports.as_array().unwrap();
    assert!(
        ports
            .iter()
            .all(|p| !(3000..3048).contains(&p["TargetPort"].as_i64().unwrap())),
        "an RPC port is published: {ports:?}"
    );
    let api: Vec<&Value> = ports.iter().filter(|p| p["TargetPort"] == 80).collect();
    assert_eq!(api.len(), 1);
    assert_eq!(api[0]["PublishedPort"].as_u64(), Some(api_port as u64));
    assert_eq!(api[0]["PublishMode"], "host");

    let text = s.stack(&["status"]);
    assert!(text.ok().contains("  - RPC: disabled\n"), "{}", text.stdout);
    assert!(
        text.stdout.contains(&format!(":{api_port}/")),
        "{}",
        text.stdout
    );
    wait_for("the fixed API port to answer", 60, || {
        http_get("127.0.0.1", api_port, "/ledger").is_some_and(|(c, _)| c == 200)
    });

    // -v names the API version negotiated with the engine.
    let verbose = s.wsm(&["-v", "stack", "-s", &s.name, "status"]);
    assert!(
        verbose.stderr.contains("API version 1."),
        "{}",
        verbose.stderr
    );

    // `status watch` redraws until it is interrupted.
    let watch = s
        .command(&["stack", "-s", &s.name, "status", "watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    send_interrupt(watch.id());
    let out = finish_within(watch, "wsm stack status watch", WSM_DEADLINE);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.matches(&format!("{} (on default):", s.name)).count() >= 2,
        "watch drew once or never:\n{text}"
    );
    assert_eq!(out.status.code(), Some(130), "Ctrl-C ends watch with 130");
}

/// Sends SIGINT, as Ctrl-C would.
fn send_interrupt(pid: u32) {
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn a_missing_image_fails_start_with_the_image_name() {
    let s = TestStack::new("wsmi");
    s.set("REGISTRY", "localhost:5000/wsm-no-such-registry-path");
    s.set("WSM_DEPLOY_TIMEOUT", "60");
    let started = std::time::Instant::now();
    let r = s.stack(&["start"]);
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(
        started.elapsed().as_secs() < 60,
        "start took {:?}",
        started.elapsed()
    );
    assert!(
        r.stderr
            .contains("localhost:5000/wsm-no-such-registry-path/wavelet-stack"),
        "error does not name the image: {}",
        r.stderr
    );
    assert!(
        r.stderr.lines().any(|l| l.starts_with("error: ")),
        "{}",
        r.stderr
    );
}
