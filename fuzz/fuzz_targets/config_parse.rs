//! The config parser (`wsm::host::config::parse`) on any text: it never panics, and what it
//! accepts, `render` writes back so that parsing it again gives the same map.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsm::host::config::{parse, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(map) = parse(text, "fuzz") {
        let again = parse(&render(&map), "rendered")
            .unwrap_or_else(|e| panic!("render wrote what parse refuses: {e}"));
        assert_eq!(again, map, "render did not round-trip");
    }
});
