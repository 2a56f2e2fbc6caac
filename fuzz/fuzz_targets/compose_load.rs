//! The compose loader on any input: lines of `KEY=VALUE` (the environment), a line `---`, then
//! one to four compose files separated by lines `===`. `compose::load` parses each file (YAML
//! with duplicate keys refused and merge keys applied), checks and interpolates its keys,
//! resolves its paths and merges the files in order; it returns a document or an error naming
//! the file, never panics. A document it returns is planned too.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wsm::host::compose;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (env_text, rest) = text.split_once("\n---\n").unwrap_or(("", text));
    let env: BTreeMap<String, String> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let files: Vec<(String, String)> = rest
        .split("\n===\n")
        .take(4)
        .enumerate()
        .map(|(i, f)| (format!("file{i}.yml"), f.to_string()))
        .collect();
    if let Ok(doc) = compose::load(&files, Path::new("/fuzz"), &env) {
        let _ = compose::plan(&doc, "fuzz");
    }
});
