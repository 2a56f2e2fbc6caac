//! Compose interpolation and translation on any input: lines of `KEY=VALUE` (the environment),
//! a line `---`, then the compose YAML. `compose::parse` and `compose::plan` return a result or
//! an error, never panic; `interpolate` likewise on the YAML text as one string.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use wsm::host::compose;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (env_text, yaml) = text.split_once("\n---\n").unwrap_or(("", text));
    let env: BTreeMap<String, String> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = compose::interpolate(yaml, &env);
    if let Ok(doc) = compose::parse(yaml, &env) {
        let _ = compose::plan(&doc, "fuzz");
    }
});
