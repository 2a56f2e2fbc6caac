//! The service specs wsm creates for the bundled compose file against the ones
//! `docker stack deploy` creates from the same interpolated file (vip endpoints, ingress ports:
//! the world of a kernel with IPVS). Compared field by field on what the engine stored.

mod common;

use common::*;
use serde_json::Value;

/// A service's stored spec with the stack name replaced and network ids turned into names.
fn stored_spec(stack: &str, service: &str) -> Value {
    let out = docker(&[
        "service",
        "inspect",
        &format!("{stack}_{service}"),
        "--format",
        "{{json .Spec}}",
    ]);
    let mut spec: Value = serde_json::from_str(&out).unwrap();
    if let Some(nets) = spec["TaskTemplate"]["Networks"].as_array_mut() {
        for n in nets {
            let id = n["Target"].as_str().unwrap().to_string();
            let name = docker(&["network", "inspect", &id, "--format", "{{.Name}}"]);
            n["Target"] = Value::String(name.trim().to_string());
        }
    }
    if let Some(ports) = spec["EndpointSpec"]["Ports"].as_array_mut() {
        ports.sort_by_key(|p| (p["TargetPort"].as_i64(), p["PublishedPort"].as_i64()));
    }
    let text = serde_json::to_string(&spec)
        .unwrap()
        .replace(stack, "STACK");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn specs_match_docker_stack_deploy_field_by_field() {
    // No images are needed: specs are compared, tasks are not awaited. Both stacks publish
    // the same fixed ports, so they run one after the other.
    let ours = TestStack::bare("wsmspeca");
    let theirs = TestStack::bare("wsmspecb");
    let rpc_port = free_port().to_string();
    for s in [&ours, &theirs] {
        s.set("REGISTRY", "localhost:5000/wsm-spec-only");
        s.set("WAVELET_NODES", "2");
        s.set("WAVELET_RPC_PORT", &rpc_port);
        s.set("WAVELET_API_HOST", "api.example");
        s.set("WAVELET_API_ACME_ACCOUNT_KEY", "acme-key");
    }
    let services = ["sync", "loadbalancer", "wavelet", "benchmark"];
    ours.stack(&["start", "--detach"]).ok();
    // wsm records the stack's application on every service (issue 22); docker does not.
    let wsm_specs: Vec<Value> = services
        .iter()
        .map(|s| {
            let mut spec = stored_spec(&ours.name, s);
            let labels = spec["Labels"].as_object_mut().unwrap();
            assert_eq!(labels.remove("wsm.application").unwrap(), "wavelet");
            spec
        })
        .collect();
    remove_stack(&ours.name);

    let compose = theirs.stack(&["compose"]);
    let file = theirs.dir.path().join("docker-compose.yml");
    std::fs::write(&file, compose.ok()).unwrap();
    docker(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        file.to_str().unwrap(),
        &theirs.name,
    ]);

    let mut diffs = Vec::new();
    for (service, a) in services.iter().zip(&wsm_specs) {
        let b = stored_spec(&theirs.name, service);
        // docker stack deploy records the file's image in a label; wsm records the same.
        assert_eq!(
            b["Labels"]["com.docker.stack.image"],
            a["TaskTemplate"]["ContainerSpec"]["Image"]
        );
        differences(service, a, &b, &mut diffs);
    }
    assert!(diffs.is_empty(), "specs differ:\n{}", diffs.join("\n"));

    // The fields the comparison covers are really there.
    let wavelet = &wsm_specs[2];
    let cs = &wavelet["TaskTemplate"]["ContainerSpec"];
    assert_eq!(
        cs["Mounts"][0]["Source"],
        "{{.Service.Name}}_wavelet_db_instance_{{.Task.Slot}}"
    );
    assert_eq!(cs["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert!(cs["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "WAVELET_NODE_ID={{.Task.Slot}}"));
    assert_eq!(wavelet["Mode"]["Replicated"]["Replicas"], 2);
    assert_eq!(wavelet["UpdateConfig"]["Delay"], 30_000_000_000i64);
    let lb = &wsm_specs[1];
    let ports = lb["EndpointSpec"]["Ports"].as_array().unwrap();
    assert_eq!(
        ports.len(),
        48 + 1 + 48 + 1,
        "3000-3047, 80, 9000-9047, 443"
    );
    assert!(ports.iter().all(|p| p["PublishMode"] == "ingress"));
}
