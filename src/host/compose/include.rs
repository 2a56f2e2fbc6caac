//! The compose spec's top-level `include:` (docker stack deploy has none): each entry is loaded
//! as a compose application of its own — its files merged in order, paths in them resolved
//! against its project directory, interpolated with the including file's values, which win
//! over its own `env_file`s (by default the `.env` of its project directory) — and its
//! services, networks, volumes, configs and secrets copied into the including file. A
//! resource defined on both sides differently is refused (`services.web conflicts with
//! imported resource`), as compose-go has done since `include` came (v2.20); an identical one
//! is taken once. Includes nest; a cycle is refused naming the chain. As in compose-go, an
//! `include` is applied to each file before the files given with `-c` are merged, and
//! relative paths of a top-level file's entries are the project directory's (the first
//! file's), of a nested one's its own project directory's.
//!
//! Entries: `- path/to/compose.yml`, or `- {path: a.yml | [a.yml, b.yml], project_directory:
//! dir, env_file: f | [f, …]}`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::load::{load, read_env_file};
use super::values::text;
use crate::host::bounded;

/// The kinds of resources an included application brings.
const RESOURCES: &[&str] = &["services", "networks", "volumes", "secrets", "configs"];

thread_local! {
    /// The files being included, outermost first (for cycles), and the folder every file read
    /// must be in (`compose::load`'s `inside`), while a load runs on this thread.
    static SCOPE: RefCell<(Vec<PathBuf>, Option<PathBuf>)> = const { RefCell::new((Vec::new(), None)) };
}

/// Keeps every file an `include` reads inside `root` until dropped (a synced repository's
/// checkout).
pub struct Inside(());

impl Inside {
    pub fn enter(root: Option<PathBuf>) -> Inside {
        SCOPE.with(|s| s.borrow_mut().1 = root);
        Inside(())
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        SCOPE.with(|s| s.borrow_mut().1 = None);
    }
}

/// One entry of `include`, its paths still as written.
struct Entry {
    paths: Vec<String>,
    project_directory: Option<String>,
    env_files: Vec<String>,
}

/// Strings of a string-or-list value.
fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("{what} must be a string or a list of strings")),
            })
            .collect(),
        Some(_) => Err(format!("{what} must be a string or a list of strings")),
    }
}

/// The entries of an `include` value, checked.
fn entries(v: &Value) -> Result<Vec<Entry>, String> {
    let Value::Array(list) = v else {
        return Err("include must be a list".into());
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("include[{i}]");
        let entry = match item {
            Value::String(p) => Entry {
                paths: vec![p.clone()],
                project_directory: None,
                env_files: Vec::new(),
            },
            Value::Object(m) => {
                if let Some(k) = m
                    .keys()
                    .find(|k| !["path", "project_directory", "env_file"].contains(&k.as_str()))
                {
                    return Err(format!("{at}: unknown key {k:?}"));
                }
                Entry {
                    paths: strings(m.get("path"), &format!("{at}.path"))?,
                    project_directory: m
                        .get("project_directory")
                        .filter(|v| !v.is_null())
                        .map(text),
                    env_files: strings(m.get("env_file"), &format!("{at}.env_file"))?,
                }
            }
            _ => return Err(format!("{at} must be a path or a mapping")),
        };
        if entry.paths.is_empty() {
            return Err(format!("{at}: no path"));
        }
        out.push(entry);
    }
    Ok(out)
}

/// `p` against `dir` when relative, `.` and `..` folded (as Go's filepath.Join).
fn join(dir: &Path, p: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(p).components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Refuses a file outside the scope's folder, once links are followed (as `compose::load`
/// checks its other files).
fn check_inside(path: &Path) -> Result<(), String> {
    match SCOPE.with(|s| s.borrow().1.clone()) {
        Some(root) => super::check_inside(
            &root.to_string_lossy(),
            std::iter::once(&path.to_path_buf()),
        ),
        None => Ok(()),
    }
}

/// Applies the `include` of one loaded file (`doc`, whose relative entries resolve against
/// `dir`, interpolated with `env`): the key removed, the included resources copied in.
pub fn apply(doc: &mut Value, dir: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(include) = doc.as_object_mut().and_then(|d| d.remove("include")) else {
        return Ok(());
    };
    for entry in entries(&include)? {
        let files: Vec<PathBuf> = entry.paths.iter().map(|p| join(dir, p)).collect();
        let project = match &entry.project_directory {
            Some(p) => join(dir, p),
            None => files[0].parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        // The including side's values win over the included application's env files.
        let mut values = BTreeMap::new();
        let env_files: Vec<PathBuf> = if entry.env_files.is_empty() {
            let dot_env = project.join(".env");
            if dot_env.is_file() {
                vec![dot_env]
            } else {
                Vec::new()
            }
        } else {
            entry
                .env_files
                .iter()
                .filter(|f| f.as_str() != "/dev/null")
                .map(|f| join(dir, f))
                .collect()
        };
        let mut read = BTreeMap::new();
        for f in &env_files {
            check_inside(f)?;
            read = read_env_file(f, env, &read).map_err(|e| format!("include: {e}"))?;
        }
        values.extend(read);
        values.extend(env.clone());
        let mut texts = Vec::new();
        for f in &files {
            check_inside(f)?;
            let shown = f.display().to_string();
            let text = bounded::read_text_as(f, &shown, "compose file", bounded::COMPOSE_FILE)
                .map_err(|e| format!("include: {e}"))?;
            texts.push((shown, text));
        }
        let key = std::fs::canonicalize(&files[0]).unwrap_or_else(|_| files[0].clone());
        let cycle = SCOPE.with(|s| {
            let chain = &mut s.borrow_mut().0;
            if chain.contains(&key) {
                let mut names: Vec<String> =
                    chain.iter().map(|p| p.display().to_string()).collect();
                names.push(key.display().to_string());
                return Some(names.join(" includes "));
            }
            chain.push(key.clone());
            None
        });
        if let Some(chain) = cycle {
            return Err(format!("include cycle detected: {chain}"));
        }
        let loaded = load(&texts, &project, &values);
        SCOPE.with(|s| s.borrow_mut().0.pop());
        import(doc, loaded?)?;
    }
    Ok(())
}

/// Copies an included application's resources into `doc`, refusing a name defined on both
/// sides differently.
fn import(doc: &mut Value, included: Value) -> Result<(), String> {
    let Value::Object(mut from) = included else {
        return Ok(());
    };
    let Some(target) = doc.as_object_mut() else {
        return Err("top-level object must be a mapping".into());
    };
    for kind in RESOURCES {
        let Some(Value::Object(items)) = from.remove(*kind) else {
            continue;
        };
        let into = target
            .entry(kind.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        let Some(into) = into.as_object_mut() else {
            return Err(format!("{kind} must be a mapping"));
        };
        for (name, item) in items {
            match into.get(&name) {
                Some(existing) if *existing == item => {}
                Some(_) => return Err(format!("{kind}.{name} conflicts with imported resource")),
                None => {
                    into.insert(name, item);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `main.yml` of `dir` as `compose::load` would, with `env`.
    fn load_main(dir: &Path, env: &[(&str, &str)]) -> Result<Value, String> {
        let text = std::fs::read_to_string(dir.join("main.yml")).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&[("main.yml".into(), text)], dir, &env)
    }

    #[test]
    fn included_files_bring_their_resources_with_their_own_paths_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(
            d.join("main.yml"),
            "include:\n  - sub/a.yml\n  - path: [sub/b.yml, sub/b2.yml]\n    env_file: sub/b.env\nservices:\n  web: {image: w}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("sub/a.yml"),
            "services:\n  a: {image: \"a:${TAG}\", volumes: [\"./data:/data\"]}\n",
        )
        .unwrap();
        std::fs::write(d.join("sub/.env"), "TAG=fromdotenv\n").unwrap();
        std::fs::write(
            d.join("sub/b.yml"),
            "services:\n  b: {image: \"b:${TAG}\"}\n",
        )
        .unwrap();
        std::fs::write(d.join("sub/b2.yml"), "services:\n  b: {user: u}\n").unwrap();
        std::fs::write(d.join("sub/b.env"), "TAG=fromenvfile\n").unwrap();
        let doc = load_main(d, &[]).unwrap();
        let s = &doc["services"];
        assert_eq!(s["a"]["image"], "a:fromdotenv");
        assert_eq!(
            s["a"]["volumes"][0],
            format!("{}/sub/data:/data", d.display())
        );
        assert_eq!(s["b"]["image"], "b:fromenvfile");
        assert_eq!(s["b"]["user"], "u");
        assert_eq!(s["web"]["image"], "w");
        assert!(doc.get("include").is_none());
        // The including side's values win over the included application's own.
        let doc = load_main(d, &[("TAG", "mine")]).unwrap();
        assert_eq!(doc["services"]["a"]["image"], "a:mine");
    }

    #[test]
    fn a_conflict_or_a_cycle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.yml"), "services:\n  db: {image: pg}\n").unwrap();
        std::fs::write(
            d.join("main.yml"),
            "include: [a.yml]\nservices:\n  db: {image: pg}\n",
        )
        .unwrap();
        assert!(load_main(d, &[]).is_ok(), "the same definition twice");
        std::fs::write(
            d.join("main.yml"),
            "include: [a.yml]\nservices:\n  db: {image: mysql}\n",
        )
        .unwrap();
        assert_eq!(
            load_main(d, &[]).unwrap_err(),
            "main.yml: services.db conflicts with imported resource"
        );
        std::fs::write(d.join("main.yml"), "include: [main.yml]\nservices: {}\n").unwrap();
        let e = load_main(d, &[]).unwrap_err();
        assert!(e.contains("include cycle detected"), "{e}");
        std::fs::write(
            d.join("main.yml"),
            "include: [{paths: a.yml}]\nservices: {}\n",
        )
        .unwrap();
        assert_eq!(
            load_main(d, &[]).unwrap_err(),
            "main.yml: include[0]: unknown key \"paths\""
        );
    }

    #[test]
    fn a_synced_checkout_includes_nothing_from_outside_it() {
        let (root, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let outside = other.path().join("x.yml");
        std::fs::write(&outside, "services:\n  x: {image: x}\n").unwrap();
        let main = format!("include: [{}]\nservices: {{}}\n", outside.display());
        std::fs::write(root.path().join("main.yml"), main).unwrap();
        assert!(load_main(root.path(), &[]).is_ok());
        let _inside = Inside::enter(Some(root.path().to_path_buf()));
        let e = load_main(root.path(), &[]).unwrap_err();
        assert!(e.contains("is outside the repository's checkout"), "{e}");
    }
}
