//! The usage-line argument parser (`wsm::host::args::parse`): the first line is a usage line,
//! every further line one argument. It returns a map or a one-line error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsm::host::args::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let usage = lines.next().unwrap_or_default();
    let args: Vec<String> = lines.map(str::to_string).collect();
    if let Err(e) = parse(usage, &args) {
        assert!(!e.is_empty());
    }
});
