//! `config::` — stack and swarm configuration files: `KEY=VALUE` lines, parsed and never
//! executed, written atomically (temp file, fsync, rename) and 0600 when they hold secrets.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Module};

use super::{script_err, usage_err, Host, ScriptResult};

/// The most a config file may hold. Real ones are a few KiB; the largest values (key material,
/// a genesis document) are 64 KiB each. Anything larger is refused before it is read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Keys the scripts declared secret (`config::declare_secrets`), beside the ones named so.
static DECLARED_SECRETS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether a key holds a secret, to be masked in output and written 0600: a key a script
/// declared secret, and anything named like a token, password or key material.
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    DECLARED_SECRETS
        .lock()
        .expect("declared secrets")
        .contains(&upper)
        || ["TOKEN", "PASSWORD", "SECRET", "PRIVATE_KEY"]
            .iter()
            .any(|w| upper.contains(w))
}

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
/// `$(cmd)` and `${VAR}` stay literal text.
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
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| err(format!("expected KEY=VALUE, found {line:?}")))?;
        let key = key.trim();
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(err(format!("{key:?} is not a valid key name")));
        }
        out.insert(key.to_string(), unquote(value.trim()).map_err(err)?);
    }
    Ok(out)
}

/// Strips one level of matching quotes; a trailing ` # comment` after an unquoted value is dropped.
fn unquote(value: &str) -> Result<String, String> {
    for q in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(q) {
            let end = rest
                .rfind(q)
                .ok_or_else(|| format!("unterminated {q} quote in value"))?;
            let tail = rest[end + 1..].trim();
            if !tail.is_empty() && !tail.starts_with('#') {
                return Err(format!("unexpected text after quoted value: {tail:?}"));
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

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync of the
/// directory. `private` makes the file 0600 from its creation on.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("wsm")
        ))
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    let mode = if private { 0o600 } else { 0o644 };
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

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

/// Why a config file could not be had: it is too large (bad input, exit 2), or it could not be
/// read or parsed.
#[derive(Debug)]
pub enum ReadError {
    TooLarge(String),
    Other(String),
}

impl ReadError {
    fn into_script_error(self) -> Box<rhai::EvalAltResult> {
        match self {
            ReadError::TooLarge(m) => usage_err(m),
            ReadError::Other(m) => script_err(m),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(m) | ReadError::Other(m) => f.write_str(m),
        }
    }
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

/// Reads and parses a config file; a missing file is an empty map. Its size is checked before
/// it is read, and no more than the limit is ever read (a file growing meanwhile, a device).
pub fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ReadError> {
    use std::io::Read;
    let origin = path.display().to_string();
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(ReadError::Other(format!("cannot read {origin}: {e}"))),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    check_size(len, &origin).map_err(ReadError::TooLarge)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Other(format!("cannot read {origin}: {e}")))?;
    check_size(bytes.len() as u64, &origin).map_err(ReadError::TooLarge)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ReadError::Other(format!("cannot read {origin}: it is not UTF-8 text")))?;
    parse(&text, &origin).map_err(|e| ReadError::Other(e.to_string()))
}

/// Registers the `config::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();

    // config::dir() — the configuration directory (-C, WSM_CONFIG_DIR, or ./config).
    let h = host.clone();
    m.set_native_fn("dir", move || Ok(h.opts.config_dir.display().to_string()));

    // config::read(path) — parse a KEY=VALUE file into a map; a missing file gives #{}.
    m.set_native_fn("read", |path: &str| -> ScriptResult<Map> {
        read_file(Path::new(path))
            .map(to_map)
            .map_err(ReadError::into_script_error)
    });

    // config::exists(path)
    m.set_native_fn("exists", |path: &str| Ok(Path::new(path).exists()));

    // config::parse(text, origin) — parse KEY=VALUE text; errors name `origin` and the line.
    m.set_native_fn("parse", |text: &str, origin: &str| -> ScriptResult<Map> {
        check_size(text.len() as u64, origin).map_err(usage_err)?;
        parse(text, origin).map(to_map).map_err(script_err)
    });

    // config::render(map) — sorted KEY=VALUE lines, quoted where needed.
    m.set_native_fn("render", |map: Map| Ok(render(&from_map(&map))));

    // config::write(path, map) — atomic write; 0600 when any key holds a secret.
    m.set_native_fn("write", |path: &str, map: Map| -> ScriptResult<()> {
        let values = from_map(&map);
        let private = values.keys().any(|k| is_secret_key(k));
        write_atomic(Path::new(path), render(&values).as_bytes(), private)
            .map_err(|e| script_err(format!("cannot write {path}: {e}")))
    });

    // config::list(dir) — the names of the files in a folder, sorted; [] when it does not exist.
    m.set_native_fn("list", |dir: &str| -> ScriptResult<rhai::Array> {
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

    // config::remove(path) — delete a file; false when there was none.
    m.set_native_fn("remove", |path: &str| -> ScriptResult<bool> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(script_err(format!("cannot remove {path}: {e}"))),
        }
    });

    // config::rename(from, to) — rename a file (e.g. to keep a replaced one as `.old`).
    m.set_native_fn("rename", |from: &str, to: &str| -> ScriptResult<()> {
        fs::rename(from, to).map_err(|e| script_err(format!("cannot rename {from} to {to}: {e}")))
    });

    // config::declare_secrets(keys) — these keys hold secrets from now on (an application's
    // schema declares them when its config is loaded).
    m.set_native_fn("declare_secrets", |keys: rhai::Array| -> ScriptResult<()> {
        let mut declared = DECLARED_SECRETS.lock().expect("declared secrets");
        declared.extend(keys.iter().map(|k| k.to_string().to_ascii_uppercase()));
        Ok(())
    });
    // config::is_secret(key) — whether the key's value must be masked.
    m.set_native_fn("is_secret", |key: &str| Ok(is_secret_key(key)));

    // config::env() — the process environment as a map.
    m.set_native_fn("env", || -> ScriptResult<Map> {
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
        match read_file(&p) {
            Err(ReadError::TooLarge(m)) => assert!(m.contains("at most 1048576"), "{m}"),
            other => panic!("expected TooLarge, got {other:?}"),
        }
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
