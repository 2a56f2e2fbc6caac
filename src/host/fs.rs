//! `fs::` — the user's own files (a compose file, an env file) as text, and the few writes a
//! script needs to assemble a folder (e.g. an image build context). Config files have
//! `config::`; this is for files whose format another primitive parses.

use std::io::Read;
use std::path::Path;

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

/// Copies a file, or a folder with everything under it, to `dest` (which must not exist; its
/// parent folders are created).
/// Links are copied as the files they point to.
pub fn copy(from: &Path, dest: &Path) -> Result<(), String> {
    let fail =
        |e: std::io::Error| format!("cannot copy {} to {}: {e}", from.display(), dest.display());
    if dest.exists() {
        return Err(format!(
            "cannot copy {} to {}: it exists",
            from.display(),
            dest.display()
        ));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    if from.is_dir() {
        std::fs::create_dir_all(dest).map_err(fail)?;
        for entry in std::fs::read_dir(from).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            copy(&entry.path(), &dest.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, dest)
            .map(|_| ())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("cannot copy {}: no such file", from.display())
                }
                _ => fail(e),
            })
    }
}

/// Registers the `fs::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    // fs::read(path) — a file's text ("-" reads standard input); an error names the file.
    m.set_native_fn("read", |path: &str| -> ScriptResult<String> {
        read(path).map_err(script_err)
    });
    // fs::is_file(path) — whether a regular file (or a link to one) is there.
    m.set_native_fn("is_file", |path: &str| Ok(Path::new(path).is_file()));
    // fs::is_dir(path) — whether a folder (or a link to one) is there.
    m.set_native_fn("is_dir", |path: &str| Ok(Path::new(path).is_dir()));
    // fs::write(path, text) — create or replace a file with this text (e.g. a Dockerfile in a
    // temp_dir()); user files that must be replaced atomically go through `config::`.
    m.set_native_fn("write", |path: &str, text: &str| -> ScriptResult<()> {
        std::fs::write(path, text).map_err(|e| script_err(format!("cannot write {path}: {e}")))
    });
    // fs::copy(from, dest) — copy a file, or a folder and everything under it, to `dest`,
    // which must not exist yet (its parent folders are created).
    m.set_native_fn("copy", |from: &str, dest: &str| -> ScriptResult<()> {
        copy(Path::new(from), Path::new(dest)).map_err(script_err)
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
    fn a_folder_copies_with_everything_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("conf");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/a.txt"), "a").unwrap();
        let dest = dir.path().join("out/conf");
        copy(&src, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/a.txt")).unwrap(),
            "a"
        );
        assert!(copy(&src, &dest).unwrap_err().ends_with("it exists"));
    }

    #[test]
    fn a_file_reads_as_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yml");
        std::fs::write(&path, "services: {}\n").unwrap();
        assert_eq!(read(path.to_str().unwrap()).unwrap(), "services: {}\n");
    }
}
