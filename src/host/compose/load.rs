//! Compose files into one document, the way docker/cli's `compose/loader` reads them: YAML,
//! refused properties, `${VAR}` interpolation, the schema's keys, paths made absolute against
//! the first file's directory, `env_file`s read into `environment`, then the files merged in
//! order (`merge.rs`).
//!
//! YAML is read with serde-saphyr, not serde_yaml: serde_yaml 0.9 is unmaintained (archived,
//! "+deprecated"), while serde-saphyr is maintained, pure Rust on the saphyr parser, refuses
//! duplicate mapping keys by default (as docker's yaml.v3 does), applies `<<` merge keys, and
//! reports line and column. `strict_booleans` keeps `yes`/`on` strings, as yaml.v3 does.
//!
//! Interpolation values, lowest to highest (docker compose's rule): the `.env` file beside the
//! first compose file — read only when no env files are given, as `--env-file` replaces it —
//! or the env files in order; then the process environment; then the script's `opts.env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map as JsonMap, Value};

use super::interpolate::interpolate_value;
use super::values::{key_values, text};
use super::{merge, schema, values};
use crate::host::bounded;

/// One compose file before merging: its name for messages and its parsed document.
struct Source {
    name: String,
    doc: Value,
}

/// Parses YAML text named `name` into a JSON value: duplicate keys refused, merge keys
/// applied. The error is one line naming the file, the position and the key.
pub fn parse_yaml(text: &str, name: &str) -> Result<Value, String> {
    crate::host::yaml::parse(text, name)
}

/// A compose file's text from its bytes, as docker's YAML library reads them: UTF-8, or UTF-16
/// (little- or big-endian) when a byte-order mark says so; a UTF-8 mark is dropped. `label`
/// names the file in the error.
pub fn decode(bytes: Vec<u8>, label: &str) -> Result<String, String> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        if !rest.len().is_multiple_of(2) {
            return Err(format!(
                "cannot read {label}: not UTF-16 text (an odd number of bytes)"
            ));
        }
        let units = rest.chunks_exact(2).map(|c| unit([c[0], c[1]]));
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| format!("cannot read {label}: not UTF-16 text"))
    };
    match bytes.as_slice() {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec())
            .map_err(|_| format!("cannot read {label}: not UTF-8 text")),
        _ => String::from_utf8(bytes).map_err(|_| format!("cannot read {label}: not UTF-8 text")),
    }
}

/// Reads a `.env` / `--env-file` file by docker compose's rules (`dotenv.rs`) over `earlier`
/// (the files read before), its `${VAR}`s taken from `environment` first, then from those.
pub fn read_env_file(
    path: &Path,
    environment: &BTreeMap<String, String>,
    earlier: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let text = bounded::read_text(path, "env file", bounded::ENV_FILE)?;
    let mut values = earlier.clone();
    super::dotenv::parse(&text, &path.display().to_string(), environment, &mut values)?;
    Ok(values)
}

/// The interpolation values of `compose::load` (see the file's comment for the order).
pub fn environment(
    first_dir: &Path,
    env_files: &[PathBuf],
    explicit: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let process: BTreeMap<String, String> = std::env::vars().collect();
    let mut env = BTreeMap::new();
    if env_files.is_empty() {
        let dot_env = first_dir.join(".env");
        if dot_env.is_file() {
            env = read_env_file(&dot_env, &process, &env)?;
        }
    }
    for f in env_files {
        env = read_env_file(f, &process, &env)?;
    }
    env.extend(process);
    env.extend(explicit.clone());
    Ok(env)
}

/// Loads compose files (`-` = `stdin`'s text) into the merged, interpolated document, with
/// paths resolved against `dir` (the first file's directory). Errors name the file and key.
pub fn load(
    files: &[(String, String)],
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Value, String> {
    if files.is_empty() {
        return Err("no compose file given".into());
    }
    let mut sources = Vec::new();
    for (name, text) in files {
        let mut doc = parse_yaml(text, name)?;
        if !doc.is_object() {
            return Err(format!("{name}: top-level object must be a mapping"));
        }
        schema::check_forbidden(&doc).map_err(|e| format!("{name}: {e}"))?;
        interpolate_value(&mut doc, env, "").map_err(|e| format!("{name}: {e}"))?;
        schema::check_keys(&doc).map_err(|e| format!("{name}: {e}"))?;
        resolve(&mut doc, dir, env).map_err(|e| format!("{name}: {e}"))?;
        values::cast_typed_fields(&mut doc);
        super::include::apply(&mut doc, dir, env).map_err(|e| format!("{name}: {e}"))?;
        sources.push(Source {
            name: name.clone(),
            doc,
        });
    }
    same_version(&sources)?;
    let mut sources = sources.into_iter();
    let first = sources.next().expect("one file at least");
    let mut doc = first.doc;
    for s in sources {
        merge::merge(&mut doc, s.doc).map_err(|e| format!("{}: {e}", s.name))?;
    }
    if !doc.get("services").is_some_and(Value::is_object) {
        return Err(format!("{}: no `services` map", first.name));
    }
    Ok(doc)
}

/// Refuses files that state different `version`s, as docker does ("3" is docker's latest 3.x,
/// 3.13). A file without `version` is a compose-spec file, where the key is obsolete, and is
/// not compared: docker would count it as 3.13 and refuse it beside a "3.7" file.
fn same_version(sources: &[Source]) -> Result<(), String> {
    let version = |s: &Source| {
        s.doc.get("version").map(|v| match text(v).as_str() {
            "3" => "3.13".to_string(),
            other => other.to_string(),
        })
    };
    let mut first: Option<(String, &str)> = None;
    for s in sources {
        let Some(v) = version(s) else { continue };
        match &first {
            None => first = Some((v, &s.name)),
            Some((seen, _)) if *seen != v => {
                return Err(format!(
                    "{}: version mismatched between two composefiles : {seen} and {v}",
                    s.name
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The absolute form of `p` against `dir`, with a leading `~` as `$HOME`.
fn absolute(p: &str, dir: &Path, env: &BTreeMap<String, String>) -> String {
    let expanded = match p.strip_prefix('~') {
        Some(rest) => match env
            .get("HOME")
            .cloned()
            .or_else(|| std::env::var("HOME").ok())
        {
            Some(home) => format!("{home}{rest}"),
            None => p.to_string(),
        },
        None => p.to_string(),
    };
    let path = Path::new(&expanded);
    if path.is_absolute() {
        return expanded;
    }
    let joined = dir.join(path);
    // Lexically, as Go's filepath.Join does: `./a` and `a/../b` lose their dots.
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.to_string_lossy().into_owned()
}

/// Resolves what depends on where the file is: `env_file`s read into `environment` (empty or
/// bare entries take the interpolation value, as docker's loader does), bind sources and
/// config/secret files made absolute, config/secret files checked to exist.
fn resolve(doc: &mut Value, dir: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(services) = doc.get_mut("services").and_then(Value::as_object_mut) {
        for (name, svc) in services.iter_mut() {
            let Some(svc) = svc.as_object_mut() else {
                continue;
            };
            resolve_environment(svc, dir, env).map_err(|e| format!("services.{name}.{e}"))?;
            if let Some(Value::Array(vols)) = svc.get_mut("volumes") {
                for v in vols.iter_mut() {
                    resolve_bind(v, dir, env);
                }
            }
        }
    }
    for kind in ["configs", "secrets"] {
        let Some(decls) = doc.get_mut(kind).and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, decl) in decls.iter_mut() {
            let Some(d) = decl.as_object_mut() else {
                continue;
            };
            let external = d
                .get("external")
                .is_some_and(|e| !matches!(e, Value::Bool(false)));
            if external || d.contains_key("driver") {
                continue;
            }
            // The compose spec's other sources (`files::source_of`), read here, where the
            // interpolation values are.
            if crate::host::compose::files::resolve_source(kind, name, d, env)? {
                continue;
            }
            let Some(file) = d.get("file").map(text) else {
                return Err(format!(
                    "{kind}.{name}: no file{}, and not external",
                    if kind == "configs" {
                        ", content or environment"
                    } else {
                        " or environment"
                    }
                ));
            };
            let file = absolute(&file, dir, env);
            bounded::check_regular_file(Path::new(&file), &format!("{kind}.{name}.file:"))?;
            d.insert("file".into(), json!(file));
        }
    }
    Ok(())
}

/// A service's `env_file` (made absolute, checked) and `environment` into one map.
fn resolve_environment(
    svc: &mut JsonMap<String, Value>,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut merged: BTreeMap<String, Option<String>> = BTreeMap::new();
    let lookup = |k: &str, v: Option<String>| match v {
        Some(v) if !v.is_empty() => Some(v),
        v => env.get(k).cloned().or(v),
    };
    if let Some(files) = svc.get("env_file") {
        let files: Vec<String> = match files {
            Value::Array(a) => a.iter().map(text).collect(),
            other => vec![text(other)],
        };
        let mut absolute_files = Vec::new();
        for f in files {
            let path = absolute(&f, dir, env);
            bounded::check_regular_file(Path::new(&path), "env_file:")?;
            for (k, v) in service_env_file(Path::new(&path))? {
                // A bare name takes the environment's value, and is dropped when it has none
                // (docker's `opts.ParseEnvFile`).
                let Some(v) = v.or_else(|| env.get(&k).cloned()) else {
                    continue;
                };
                merged.insert(k.clone(), lookup(&k, Some(v)));
            }
            absolute_files.push(json!(path));
        }
        svc.insert("env_file".into(), Value::Array(absolute_files));
    }
    let has_environment = svc.contains_key("environment");
    for (k, v) in key_values(svc.get("environment")) {
        merged.insert(k.clone(), lookup(&k, v));
    }
    if has_environment || !merged.is_empty() {
        let map: JsonMap<String, Value> = merged
            .into_iter()
            .map(|(k, v)| (k, v.map(Value::String).unwrap_or(Value::Null)))
            .collect();
        svc.insert("environment".into(), Value::Object(map));
    }
    Ok(())
}

/// A service's env_file as docker's `opts.ParseEnvFile` reads it: KEY=VALUE taken literally,
/// a bare KEY as None (the caller looks it up), comments and blank lines skipped.
fn service_env_file(path: &Path) -> Result<Vec<(String, Option<String>)>, String> {
    let text = bounded::read_text(path, "env_file:", bounded::ENV_FILE)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (line.trim_end(), None),
        };
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(format!(
                "env_file: {}: variable {k:?} contains whitespace",
                path.display()
            ));
        }
        out.push((k.to_string(), v));
    }
    Ok(out)
}

/// A bind mount's source made absolute, in the short (`./db:/db:ro`) or long syntax.
fn resolve_bind(v: &mut Value, dir: &Path, env: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            let Some((src, rest)) = s.split_once(':') else {
                return;
            };
            if src.starts_with('.') || src.starts_with('~') {
                *s = format!("{}:{rest}", absolute(src, dir, env));
            }
        }
        Value::Object(o) if o.get("type").map(text).as_deref() == Some("bind") => {
            if let Some(src) = o.get("source").map(text).filter(|s| !s.is_empty()) {
                o.insert("source".into(), json!(absolute(&src, dir, env)));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_one(yaml: &str, dir: &Path) -> Result<Value, String> {
        load(
            &[("stack.yml".into(), yaml.into())],
            dir,
            &BTreeMap::from([("HOME".into(), "/home/u".into()), ("X".into(), "x".into())]),
        )
    }

    #[test]
    fn duplicate_keys_are_refused_and_merge_keys_applied() {
        let d = Path::new("/srv");
        let e = load_one("services:\n  a:\n    image: i\n    image: j\n", d).unwrap_err();
        assert_eq!(
            e,
            "stack.yml: line 4 column 5: duplicate mapping key: image"
        );
        let doc = load_one(
            "x-base: &base\n  image: i\n  environment: {A: \"1\"}\nservices:\n  a:\n    <<: *base\n    user: u\n",
            d,
        )
        .unwrap();
        assert_eq!(doc["services"]["a"]["image"], "i");
        assert_eq!(doc["services"]["a"]["environment"]["A"], "1");
    }

    #[test]
    fn paths_resolve_against_the_file_and_home() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "x").unwrap();
        std::fs::write(dir.path().join("web.env"), "# c\nA=1\nB\nX=\nHOME\n").unwrap();
        let doc = load_one(
            "services:\n  a:\n    image: i\n    env_file: web.env\n    environment: [C=3]\n    volumes: [\"./db:/db:ro\", \"~/h:/h\", \"v:/v\"]\nsecrets:\n  s: {file: ./s.txt}\n",
            dir.path(),
        )
        .unwrap();
        let a = &doc["services"]["a"];
        let root = dir.path().display();
        assert_eq!(a["volumes"][0], format!("{root}/db:/db:ro"));
        assert_eq!(a["volumes"][1], "/home/u/h:/h");
        assert_eq!(a["volumes"][2], "v:/v");
        assert_eq!(
            a["environment"],
            json!({"A": "1", "C": "3", "HOME": "/home/u", "X": "x"})
        );
        assert_eq!(doc["secrets"]["s"]["file"], format!("{root}/s.txt"));
    }

    #[test]
    fn files_of_different_versions_are_refused_as_docker_refuses_them() {
        let d = Path::new("/srv");
        let file = |v: &str| format!("{v}services:\n  a:\n    image: i\n");
        let two = |a: &str, b: &str| {
            load(
                &[("a.yml".into(), file(a)), ("b.yml".into(), file(b))],
                d,
                &BTreeMap::new(),
            )
        };
        assert_eq!(
            two("version: '3.7'\n", "version: '3.3'\n").unwrap_err(),
            "b.yml: version mismatched between two composefiles : 3.7 and 3.3"
        );
        assert_eq!(
            two("version: '3'\n", "version: '3.0'\n").unwrap_err(),
            "b.yml: version mismatched between two composefiles : 3.13 and 3.0"
        );
        two("version: '3.7'\n", "version: '3.7'\n").unwrap();
        two("version: '3'\n", "version: '3.13'\n").unwrap();
        two("version: '3.7'\n", "").unwrap();
        two("", "version: '3.3'\n").unwrap();
    }

    #[test]
    fn bad_files_name_the_file_and_key() {
        let d = Path::new("/nonexistent-dir");
        let e = |y: &str| load_one(y, d).unwrap_err();
        assert_eq!(
            e("services:\n  a:\n    image: i\n    zz: 1\n"),
            "stack.yml: services.a: unknown key \"zz\""
        );
        assert_eq!(
            e("services:\n  a:\n    image: i\n    env_file: nope.env\n"),
            "stack.yml: services.a.env_file: /nonexistent-dir/nope.env does not exist"
        );
        assert_eq!(
            e("services:\n  a:\n    image: i\nsecrets:\n  s: {file: s.txt}\n"),
            "stack.yml: secrets.s.file: /nonexistent-dir/s.txt does not exist"
        );
        assert_eq!(
            e("services:\n  a:\n    image: ${NOPE?set NOPE}\n"),
            "stack.yml: services.a.image: required variable NOPE is missing a value: set NOPE"
        );
        assert_eq!(
            e("services:\n  a:\n    image: i\n    volumes_from: [b]\n"),
            "stack.yml: services.a: \"volumes_from\" is not supported: share a top-level volume between the services instead"
        );
    }
}
