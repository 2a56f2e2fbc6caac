//! The swarm store as the Docker CLI shows it, for tests that check what wsm keeps there.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

/// A document of the swarm store, read with the Docker CLI: the label is base64 of gzip of
/// the JSON.
pub fn store_doc(docker_args: &[&str], name: &str) -> Option<Value> {
    let mut args = docker_args.to_vec();
    let object = format!("wsm-state-{name}");
    args.extend([
        "config",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &object,
    ]);
    let out = Command::new("docker").args(&args).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let labels: Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = labels["wsm.state.data"]
        .as_str()
        .expect("wsm.state.data label");
    let gz = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut json)
        .unwrap();
    Some(serde_json::from_str(&json).unwrap())
}

/// Checks the runs document of a job every `every` seconds: no slot twice, no slot both run
/// and missed, and every slot from the first run to the last either run or reported missed.
/// Returns the slots run and missed.
pub fn check_slots(runs: &Value, every: i64) -> (Vec<i64>, BTreeSet<i64>) {
    let run: Vec<i64> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slot"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = run.iter().copied().collect();
    assert_eq!(unique.len(), run.len(), "a slot ran twice: {run:?}");
    let missed: BTreeSet<i64> = runs["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["slot"].as_i64().unwrap())
        .collect();
    assert!(unique.is_disjoint(&missed), "run and missed: {runs}");
    let (first, last) = (run[0], *run.last().unwrap());
    let mut t = first;
    while t <= last {
        assert!(
            unique.contains(&t) || missed.contains(&t),
            "slot {t} was neither run nor reported missed: {runs}"
        );
        t += every;
    }
    for s in &run {
        assert_eq!(s % every, 0, "slot {s} is not a multiple of {every}");
    }
    (run, missed)
}

/// Creates the config object of store document `name` holding `value`, as anyone with the
/// right to create configs could: one `docker config create`, the checksum computed as wsm
/// computes it. Returns the object's name.
#[allow(dead_code)]
pub fn forge_store_doc(name: &str, value: &Value) -> String {
    use sha2::Digest;
    use std::io::Write;
    let json = serde_json::to_vec(value).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let sum = hex::encode(sha2::Sha256::digest(&json));
    raw_store_doc(name, &data, &sum)
}

/// Creates the config object of store document `name` with these labels as they are.
#[allow(dead_code)]
pub fn raw_store_doc(name: &str, data: &str, sum: &str) -> String {
    let object = format!("wsm-state-{name}");
    let out = Command::new("docker")
        .args(["config", "create", "--label", "wsm.state=1"])
        .args(["--label", &format!("wsm.state.name={name}")])
        .args(["--label", &format!("wsm.state.data={data}")])
        .args(["--label", &format!("wsm.state.sha256={sum}")])
        .args([&object, "/etc/hostname"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    object
}
