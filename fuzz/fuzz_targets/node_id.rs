//! Node-id parsing: `wsm::host::node_id::parse`, which `nodes::parse_id` of `stdlib/nodes.rhai`
//! (and so Wavelet's `wavelet/nodes::parse_id`) calls, for the general kind (any service) and
//! for a kind with a service list and a default service, as Wavelet's. Any id gives a service
//! and a slot from 1, or a message that names the id; a panic is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsm::host::node_id::{parse, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(id) = std::str::from_utf8(data) else {
        return;
    };
    let kinds = [
        Kind::default(),
        Kind {
            services: ["sync", "loadbalancer", "benchmark", "wavelet"].map(String::from).to_vec(),
            default_service: "wavelet".into(),
        },
    ];
    for kind in &kinds {
        match parse(id, kind) {
            Ok(n) => {
                assert!(n.slot >= 1, "{id:?} gave slot {}", n.slot);
                assert!(
                    n.service == kind.default_service || id.starts_with(&n.service),
                    "{id:?} gave service {:?}",
                    n.service
                );
                if !kind.services.is_empty() && !n.service.is_empty() {
                    assert!(
                        kind.services.contains(&n.service) || n.service == kind.default_service,
                        "{id:?} gave a service outside the kind: {:?}",
                        n.service
                    );
                }
            }
            Err(message) => {
                assert!(
                    message.starts_with(&format!("\"{id}\" is not a node id: ")),
                    "{id:?}: {message}"
                );
            }
        }
    }
});
