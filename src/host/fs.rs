//! `fs::` — reading the user's own files (a compose file, an env file) as text. Config files
//! have `config::`; this is for files whose format another primitive parses.

use std::io::Read;

use rhai::{Engine, Module};

use super::{script_err, ScriptResult};

/// The text of a file; `-` is standard input. The error names the file and says why.
pub fn read(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::InvalidData => "not UTF-8 text".to_string(),
            _ => e.to_string(),
        };
        format!("cannot read {path}: {why}")
    })
}

/// Registers the `fs::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    // fs::read(path) — a file's text ("-" reads standard input); an error names the file.
    m.set_native_fn("read", |path: &str| -> ScriptResult<String> {
        read(path).map_err(script_err)
    });
    // fs::is_file(path) — whether a regular file (or a link to one) is there.
    m.set_native_fn("is_file", |path: &str| {
        Ok(std::path::Path::new(path).is_file())
    });
    engine.register_static_module("fs", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_in_one_sentence() {
        assert_eq!(
            read("/nonexistent/compose.yml").unwrap_err(),
            "cannot read /nonexistent/compose.yml: no such file"
        );
    }

    #[test]
    fn a_file_reads_as_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yml");
        std::fs::write(&path, "services: {}\n").unwrap();
        assert_eq!(read(path.to_str().unwrap()).unwrap(), "services: {}\n");
    }
}
