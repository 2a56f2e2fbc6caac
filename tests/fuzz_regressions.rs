//! Every input a fuzz target crashed on (`fuzz/regressions/<target>/`, copied from
//! `fuzz/artifacts/`), replayed through the same calls as the target: none may panic, and
//! each must now give an answer or a one-line error.

use std::collections::BTreeMap;
use std::path::Path;

use wsm::host::docker::store;
use wsm::host::{args, compose, config, node_id};

fn inputs(target: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            let text = String::from_utf8(bytes).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), text))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn args_parse_crashes_are_errors_now() {
    let found = inputs("args_parse");
    assert!(!found.is_empty(), "the args_parse crash is kept");
    for (name, text) in found {
        let mut lines = text.split('\n');
        let usage = lines.next().unwrap_or_default();
        let given: Vec<String> = lines.map(str::to_string).collect();
        if let Err(e) = args::parse(usage, &given) {
            assert!(!e.is_empty() && !e.contains('\n'), "{name}: {e:?}");
        }
    }
}

#[test]
fn compose_plan_crashes_are_errors_now() {
    let found = inputs("compose_plan");
    assert!(!found.is_empty(), "the compose_plan crash is kept");
    for (name, text) in found {
        let (env_text, yaml) = text.split_once("\n---\n").unwrap_or(("", &text));
        let env: BTreeMap<String, String> = env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let _ = compose::interpolate(yaml, &env);
        if let Ok(doc) = compose::parse(yaml, &env) {
            let r = compose::plan(&doc, "fuzz");
            assert!(r.is_err(), "{name}: the crash input now plans");
        }
    }
}

#[test]
fn config_and_node_id_crashes_are_answers_now() {
    for (name, text) in inputs("config_parse") {
        if let Err(e) = config::parse(&text, "fuzz") {
            assert!(!e.to_string().is_empty(), "{name}");
        }
    }
    for (name, text) in inputs("node_id") {
        if let Err(e) = node_id::parse(&text, &node_id::Kind::default()) {
            assert!(e.starts_with('"'), "{name}: {e}");
        }
    }
}

#[test]
fn a_document_the_store_wrote_reads_back_the_same() {
    let found = inputs("store_decode");
    assert!(!found.is_empty(), "the store_decode finding is kept");
    for (name, text) in found {
        // The target's third mode: the rest of the input is a document's JSON.
        let (mode, rest) = text.split_at(1);
        assert_eq!(mode.as_bytes()[0] % 3, 2, "{name}");
        let value: serde_json::Value = serde_json::from_str(rest).unwrap();
        let labels = store::encode_labels("fuzz", &value).unwrap();
        assert_eq!(
            store::decode_labels("fuzz", &labels).unwrap(),
            value,
            "{name}"
        );
    }
}
