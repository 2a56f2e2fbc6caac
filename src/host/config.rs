//! `config::` — stack and swarm configuration files: `KEY=VALUE` lines, parsed and never
//! executed, written atomically (temp file, fsync, rename) and 0600 when they hold secrets.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Module};

mod sealed;

use super::doc::Prim;
pub use super::secrets::is_secret_key;
use super::{script_err, usage_err, Host, ScriptResult};

/// The most a config file may hold. Real ones are a few KiB; the largest values (key material,
/// a genesis document) are 64 KiB each. Anything larger is refused before it is read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A parse failure, naming the file and line.
#[derive(Debug)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Parses `KEY=VALUE` text. Comments (`#`) and blank lines are skipped, an optional `export `
/// prefix is accepted, and values may be quoted with `'…'` or `"…"`. Nothing is expanded:
/// `$(cmd)` and `${VAR}` stay literal text. An error names the file, the line and the key,
/// never any of the line's other text: it may be a secret.
pub fn parse(text: &str, file: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut out = BTreeMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let err = |message: String| ParseError {
            file: file.to_string(),
            line: idx + 1,
            message,
        };
        // The key the line seems to set, named in errors; nothing after it is ever shown.
        let lead: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let about = if lead.is_empty() {
            String::new()
        } else {
            format!("{lead}: ")
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!(
                "{about}expected KEY=VALUE, but the line has no '=' (the line is not shown: it may hold a secret)"
            )));
        };
        let key = key.trim();
        if !is_key_name(key) {
            return Err(err(format!(
                "{about}the text before '=' is not a key name (letters, digits and '_', not starting with a digit)"
            )));
        }
        let value = unquote(value.trim()).map_err(|m| err(format!("{key}: {m}")))?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// Whether `key` may name a config key.
fn is_key_name(key: &str) -> bool {
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

/// Strips one level of matching quotes; a trailing ` # comment` after an unquoted value is dropped.
/// Errors describe the value without showing it.
fn unquote(value: &str) -> Result<String, String> {
    for q in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(q) {
            let end = rest
                .rfind(q)
                .ok_or_else(|| format!("the value's {q} quote is not closed"))?;
            let tail = rest[end + 1..].trim();
            if !tail.is_empty() && !tail.starts_with('#') {
                return Err(format!("unexpected text after the {q}-quoted value"));
            }
            return Ok(rest[..end].to_string());
        }
    }
    match value.find(" #") {
        Some(pos) => Ok(value[..pos].trim_end().to_string()),
        None => Ok(value.to_string()),
    }
}

/// Renders a value so that `parse` reads it back unchanged.
fn render_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/@+=%".contains(c));
    if plain || value.is_empty() {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!("\"{value}\"")
    }
}

/// Renders a config map as sorted `KEY=VALUE` lines.
pub fn render(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}\n", render_value(v)))
        .collect()
}

pub use super::output::write_atomic;

fn to_map(values: BTreeMap<String, String>) -> Map {
    values
        .into_iter()
        .map(|(k, v)| (k.into(), Dynamic::from(v)))
        .collect()
}

fn from_map(map: &Map) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(_, v)| !v.is_unit())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reads a config file's text; a missing file is `None`. Text that is not UTF-8 is bad input
/// (a usage error, exit code 2); other failures to read are errors.
pub fn read_text(path: &Path) -> ScriptResult<Option<String>> {
    match read_bounded(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
            usage_err(format!(
                "{}:{line}: the file is not UTF-8 text; save it as UTF-8",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => Err(usage_err(e.to_string())),
        Err(e) => Err(script_err(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Parses config text, a malformed line being bad input (exit code 2).
fn parse_input(text: &str, origin: &str) -> ScriptResult<BTreeMap<String, String>> {
    parse(text, origin).map_err(|e| usage_err(e.to_string()))
}

/// Reads and parses a config file; a missing file is an empty map.
pub fn read_file(path: &Path) -> ScriptResult<BTreeMap<String, String>> {
    match read_text(path)? {
        Some(text) => parse_input(&text, &path.display().to_string()),
        None => Ok(BTreeMap::new()),
    }
}

/// Writes config text as it is (comments and blank lines kept) after checking that it parses;
/// 0600 when any key holds a secret.
fn write_text(path: &Path, text: &str) -> ScriptResult<()> {
    let values = parse_input(text, &path.display().to_string())?;
    let private = values.keys().any(|k| is_secret_key(k));
    write_atomic(path, text.as_bytes(), private)
        .map_err(|e| script_err(format!("cannot write {}: {e}", path.display())))
}

/// Refuses config text over [`MAX_CONFIG_BYTES`], naming where it came from.
fn check_size(len: u64, origin: &str) -> Result<(), String> {
    if len > MAX_CONFIG_BYTES {
        return Err(format!(
            "{origin} is {len} bytes; a config file may hold at most {MAX_CONFIG_BYTES} (1 MiB)"
        ));
    }
    Ok(())
}

/// A file's bytes, its size checked before it is read and no more than the limit ever read (a
/// file growing meanwhile, a device). Too large is bad input.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let origin = path.display().to_string();
    let file = fs::File::open(path)?;
    let too_large = |m: String| std::io::Error::new(std::io::ErrorKind::FileTooLarge, m);
    check_size(file.metadata().map(|m| m.len()).unwrap_or(0), &origin).map_err(too_large)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    check_size(bytes.len() as u64, &origin).map_err(too_large)?;
    Ok(bytes)
}

/// Registers the `config::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();

    let h = host.clone();
    let prim = Prim::new("config::dir() -> string")
        .doc("The configuration directory (`-C`, `WSM_CONFIG_DIR`, or `./config`).");
    prim.set_in(&mut m, move || Ok(h.opts.config_dir.display().to_string()));

    let prim = Prim::new("config::read(path: string) -> map").doc(
        "Parses a KEY=VALUE file into a map; a missing file gives `#{}`. Errors name the file and \
         line, never a value.",
    );
    prim.set_in(&mut m, |path: &str| -> ScriptResult<Map> {
        read_file(Path::new(path)).map(to_map)
    });

    let prim = Prim::new("config::read_text(path: string) -> string").doc(
        "A config file's text as it is; \"\" when it does not exist. Files over the size limit \
         are a usage error.",
    );
    prim.set_in(&mut m, |path: &str| -> ScriptResult<String> {
        Ok(read_text(Path::new(path))?.unwrap_or_default())
    });

    let prim = Prim::new("config::write_text(path: string, text: string)").doc(
        "Writes text that parses as KEY=VALUE (comments kept) atomically; 0600 when any key holds \
         a secret.",
    );
    prim.set_in(&mut m, |path: &str, text: &str| {
        write_text(Path::new(path), text)
    });

    let prim = Prim::new("config::exists(path: string) -> bool").doc("Whether the file exists.");
    prim.set_in(&mut m, |path: &str| Ok(Path::new(path).exists()));

    let prim = Prim::new("config::parse(text: string, origin: string) -> map")
        .doc("Parses KEY=VALUE text; errors name `origin` and the line.");
    prim.set_in(&mut m, |text: &str, origin: &str| -> ScriptResult<Map> {
        check_size(text.len() as u64, origin).map_err(usage_err)?;
        parse_input(text, origin).map(to_map)
    });

    let prim = Prim::new("config::render(values: map) -> string")
        .doc("Sorted KEY=VALUE lines, quoted where needed.");
    prim.set_in(&mut m, |map: Map| Ok(render(&from_map(&map))));

    let prim = Prim::new("config::write(path: string, values: map)")
        .doc("Writes a map as KEY=VALUE lines atomically; 0600 when any key holds a secret.");
    prim.set_in(&mut m, |path: &str, map: Map| -> ScriptResult<()> {
        let values = from_map(&map);
        let private = values.keys().any(|k| is_secret_key(k));
        write_atomic(Path::new(path), render(&values).as_bytes(), private)
            .map_err(|e| script_err(format!("cannot write {path}: {e}")))
    });

    let prim = Prim::new("config::list(dir: string) -> array")
        .doc("The names of the files in a folder, sorted; [] when it does not exist.");
    prim.set_in(&mut m, |dir: &str| -> ScriptResult<rhai::Array> {
        let mut names: Vec<String> = match fs::read_dir(dir) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(script_err(format!("cannot list {dir}: {e}"))),
        };
        names.sort();
        Ok(names.into_iter().map(Dynamic::from).collect())
    });

    let prim = Prim::new("config::remove(path: string) -> bool")
        .doc("Deletes a file; false when there was none.");
    prim.set_in(&mut m, |path: &str| -> ScriptResult<bool> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(script_err(format!("cannot remove {path}: {e}"))),
        }
    });

    let prim = Prim::new("config::rename(from: string, to: string)")
        .doc("Renames a file (e.g. to keep a replaced one as `.old`).");
    prim.set_in(&mut m, |from: &str, to: &str| -> ScriptResult<()> {
        fs::rename(from, to).map_err(|e| script_err(format!("cannot rename {from} to {to}: {e}")))
    });

    let prim = Prim::new("config::declare_secrets(keys: array)").doc(
        "These keys hold secrets from now on: masked in output and errors, files holding them \
         written 0600 (an application's schema declares them when its config is loaded).",
    );
    prim.set_in(&mut m, |keys: rhai::Array| -> ScriptResult<()> {
        super::secrets::declare(keys.iter().map(|k| k.to_string()));
        Ok(())
    });
    let prim = Prim::new("config::is_secret(key: string) -> bool").doc(
        "Whether the key's value must be masked: a declared key, or one named like a password, \
         secret, token or key.",
    );
    prim.set_in(&mut m, |key: &str| Ok(is_secret_key(key)));
    let prim = Prim::new("config::seal_secrets(text: string) -> string").doc(
        "Config text with the value of every secret key sealed (ChaCha20-Poly1305) with the \
         operator's key (`WSM_SECRETS_KEY`, else `$XDG_CONFIG_HOME/wsm/secrets.key`, made on \
         first use); other lines unchanged. For text kept where others can read it (the swarm \
         store).",
    );
    prim.set_in(&mut m, |text: &str| -> ScriptResult<String> {
        sealed::seal_config(text).map_err(script_err)
    });
    let prim = Prim::new("config::open_secrets(text: string, origin: string) -> string").doc(
        "Config text with its sealed values opened, exactly as written; a value sealed with \
         another key is an error naming `origin` and the keys.",
    );
    prim.set_in(&mut m, |text: &str, origin: &str| -> ScriptResult<String> {
        sealed::open_config(text, origin).map_err(script_err)
    });

    let prim = Prim::new("config::env() -> map").doc("The process environment as a map.");
    prim.set_in(&mut m, || -> ScriptResult<Map> {
        Ok(std::env::vars()
            .map(|(k, v)| (k.into(), Dynamic::from(v)))
            .collect())
    });

    engine.register_static_module("config", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_never_expands() {
        let text =
            "# c\n\nA=1\nexport B = 'x y'\nC=\"$(rm -rf ~)\"\nD=$(touch /tmp/x)\nE=v # note\n";
        let m = parse(text, "f").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "x y");
        assert_eq!(m["C"], "$(rm -rf ~)");
        assert_eq!(m["D"], "$(touch /tmp/x)");
        assert_eq!(m["E"], "v");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("A=1\nnot a pair\n", "config/stacks/x").unwrap_err();
        assert_eq!(
            e.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["config/stacks/x", "2"]
        );
        assert!(parse("1A=2", "f").is_err());
        assert!(parse("A='open", "f").is_err());
    }

    #[test]
    fn errors_name_the_key_and_never_show_the_value() {
        for line in [
            "API_KEYS secretvalue123",
            "API_KEYS secretvalue=123",
            "API_KEYS='secretvalue123",
            "API_KEYS=\"secretvalue123\" secretvalue123",
        ] {
            let e = parse(&format!("A=1\n{line}\n"), "f")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("f:2: API_KEYS: "), "{e}");
            assert!(!e.contains("secretvalue"), "{e}");
        }
    }

    #[test]
    fn render_round_trips() {
        let mut m = BTreeMap::new();
        for (k, v) in [
            ("A", "plain"),
            ("B", "has space"),
            ("C", "it's"),
            ("D", ""),
            ("E", "$(x)"),
        ] {
            m.insert(k.to_string(), v.to_string());
        }
        assert_eq!(parse(&render(&m), "r").unwrap(), m);
    }

    #[test]
    fn a_config_file_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let f = fs::File::create(&p).unwrap();
        // Sparse: 50 MB that reading would take seconds to go through.
        f.set_len(50 << 20).unwrap();
        let started = std::time::Instant::now();
        let err = read_file(&p).expect_err("a 50 MB config file is refused");
        let m = err.to_string();
        assert!(m.contains("at most 1048576"), "{m}");
        assert!(
            matches!(*err, rhai::EvalAltResult::ErrorRuntime(ref v, _) if v.is_map()),
            "bad input: {m}"
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
        let err = check_size(MAX_CONFIG_BYTES + 1, "remote").unwrap_err();
        assert!(err.starts_with("remote is"), "{err}");
    }

    #[test]
    fn atomic_write_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f");
        write_atomic(&p, b"A=1\n", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"A=1\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
