//! The swarm state store's decoder on any input, as a `wsm-state-*` config's labels could hold
//! it (anyone with API access can write one). The first byte chooses what the rest is: the
//! data label's text as given; bytes taken for the gzip stream (base64-encoded here); or a
//! document's JSON, encoded as the store encodes it, so the digest matches and the JSON is
//! parsed. Decoding returns a document or an error, never panics; a well-formed document
//! decodes to itself.
#![no_main]

use std::collections::HashMap;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use wsm::host::docker::store;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut labels = HashMap::from([
        ("wsm.state".to_string(), "1".to_string()),
        ("wsm.state.name".to_string(), "fuzz".to_string()),
        ("wsm.state.sha256".to_string(), "0".repeat(64)),
    ]);
    match mode % 3 {
        0 => {
            let text = String::from_utf8_lossy(rest).into_owned();
            labels.insert("wsm.state.data".into(), text);
            let _ = store::decode_labels("fuzz", &labels);
        }
        1 => {
            let text = base64::engine::general_purpose::STANDARD.encode(rest);
            labels.insert("wsm.state.data".into(), text);
            let _ = store::decode_labels("fuzz", &labels);
        }
        _ => {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            if let Ok(labels) = store::encode_labels("fuzz", &value) {
                let back = store::decode_labels("fuzz", &labels).expect("a document the store wrote");
                assert_eq!(back, value);
            }
        }
    }
});
