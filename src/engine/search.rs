//! The script search path. A file's relative path (`scripts/manage-stack/start.rhai`,
//! `stdlib/stack.rhai`, `nodes/<image>/Dockerfile`) is looked up in `$WSM_SCRIPT_PATH` entries,
//! then the user's own folder `$XDG_CONFIG_HOME/wsm/`, then the copy bundled into the binary; the
//! first found wins, so users override or add files by dropping them in. The current folder is
//! never on it, and a folder another user could change is refused (`trust`). Also the module
//! resolver that turns `import "name"` into `stdlib/name.rhai`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use include_dir::{include_dir, Dir};
use rhai::module_resolvers::ModuleResolver;
use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared};

use super::trust;

static STDLIB: Dir = include_dir!("$CARGO_MANIFEST_DIR/stdlib");
static SCRIPTS: Dir = include_dir!("$CARGO_MANIFEST_DIR/scripts");
static NODES: Dir = include_dir!("$CARGO_MANIFEST_DIR/nodes");

/// The bundled trees, by the top folder they stand for.
const BUNDLED: &[(&str, &Dir)] = &[
    ("stdlib", &STDLIB),
    ("scripts", &SCRIPTS),
    ("nodes", &NODES),
];

/// Where scripts come from, in order of precedence.
#[derive(Debug, Clone)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
    /// `<config dir>/providers/`, when the configuration directory was named (`-C`,
    /// `WSM_CONFIG_DIR`): provider scripts dropped in beside a project's config.
    providers: Option<PathBuf>,
    /// The folders left off the path because another user could change them: one line each.
    refused: Vec<String>,
}

/// A file found on the search path: its text and where it came from.
#[derive(Debug, Clone)]
pub struct Found {
    pub origin: String,
    /// The bundled copy's text is borrowed, not copied: every process reads the `//!` lines of
    /// every command (the catalog).
    pub text: Cow<'static, str>,
}

/// The bundled folder at a relative path (`scripts/manage-stack`), if any.
fn bundled_dir(rel_dir: &str) -> Option<&'static Dir<'static>> {
    let (top, rest) = rel_dir.split_once('/').unwrap_or((rel_dir, ""));
    let (_, root) = BUNDLED.iter().find(|(name, _)| *name == top)?;
    if rest.is_empty() {
        Some(root)
    } else {
        root.get_dir(rest)
    }
}

impl SearchPath {
    /// The standard search path for this process: `$WSM_SCRIPT_PATH`'s folders, then
    /// `$XDG_CONFIG_HOME/wsm/`, each only if it exists and passes [`trust::check_root`]; the
    /// refused ones are in [`SearchPath::refused`].
    pub fn from_env() -> Self {
        let mut path = Self::bundled_only();
        let named: Vec<PathBuf> = std::env::var_os("WSM_SCRIPT_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        for dir in named {
            // An empty entry is not the current folder here, as it would be in $PATH.
            path.add(dir, "on WSM_SCRIPT_PATH");
        }
        if let Some(cfg) = crate::host::xdg::config_dir() {
            path.add(cfg.join("wsm"), "your script folder");
        }
        path
    }

    /// Only the copy bundled with the binary (tests that must not see dropped-in scripts).
    pub fn bundled_only() -> Self {
        SearchPath {
            dirs: Vec::new(),
            providers: None,
            refused: Vec::new(),
        }
    }

    /// Adds a folder that exists, if it passes the trust check.
    fn add(&mut self, dir: PathBuf, whence: &str) {
        if dir.as_os_str().is_empty() || !dir.is_dir() {
            return;
        }
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        match trust::check_root(&dir, whence) {
            Ok(()) => self.dirs.push(dir),
            Err(line) => self.refused.push(line),
        }
    }

    /// Adds `dir` (`<config dir>/providers/`) as the first place providers are looked up, if it
    /// exists and passes the trust check.
    pub fn with_providers(mut self, dir: PathBuf) -> Self {
        if dir.is_dir() {
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            match trust::check_tree(&dir, "the configuration directory's providers", 0) {
                Ok(()) => self.providers = Some(dir),
                Err(line) => self.refused.push(line),
            }
        }
        self
    }

    /// The folders refused as sources of code, one line each saying why; wsm runs no command
    /// while there is one (completion leaves them out silently).
    pub fn refused(&self) -> &[String] {
        &self.refused
    }

    /// The folders on disk to look for `rel` in: none unless `rel` lies under one of the
    /// checked [`trust::TOPS`] with no `..`, so nothing unchecked is ever read.
    fn roots_for(&self, rel: &str) -> &[PathBuf] {
        let mut parts = Path::new(rel).components();
        let under_top = matches!(parts.next(), Some(Component::Normal(top)) if trust::TOPS.iter().any(|t| top == *t));
        if under_top && parts.all(|c| matches!(c, Component::Normal(_))) {
            &self.dirs
        } else {
            &[]
        }
    }

    /// A bundled file by its relative path, from an index built once per process: every
    /// process looks up each command's script for the catalog, and `include_dir`'s lookup
    /// compares paths entry by entry (8 % of a `stack status`'s instructions, issue 28).
    fn bundled(rel: &str) -> Option<&'static include_dir::File<'static>> {
        static INDEX: OnceLock<HashMap<String, &'static include_dir::File<'static>>> =
            OnceLock::new();
        INDEX
            .get_or_init(|| {
                BUNDLED
                    .iter()
                    .flat_map(|(top, root)| {
                        all_files(root)
                            .into_iter()
                            .map(move |f| (format!("{top}/{}", f.path().display()), f))
                    })
                    .collect()
            })
            .get(rel)
            .copied()
    }

    /// Finds a file by its path relative to a search root.
    pub fn find(&self, rel: &str) -> Option<Found> {
        for dir in self.roots_for(rel) {
            let p = dir.join(rel);
            if let Ok(text) = std::fs::read_to_string(&p) {
                return Some(Found {
                    origin: p.display().to_string(),
                    text: Cow::Owned(text),
                });
            }
        }
        Self::bundled(rel).map(|f| Found {
            origin: format!("embedded:{rel}"),
            text: Cow::Borrowed(f.contents_utf8().unwrap_or_default()),
        })
    }

    /// Names of the `*.rhai` files in a folder relative to the roots (e.g. `scripts/manage-stack`).
    pub fn list(&self, rel_dir: &str) -> Vec<String> {
        let mut names = BTreeSet::new();
        for dir in self.roots_for(rel_dir) {
            if let Ok(rd) = std::fs::read_dir(dir.join(rel_dir)) {
                for e in rd.flatten() {
                    if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".rhai")) {
                        names.insert(n.to_string());
                    }
                }
            }
        }
        if let Some(d) = bundled_dir(rel_dir) {
            names.extend(d.files().filter_map(|f| {
                let name = f.path().file_name()?.to_str()?;
                Some(name.strip_suffix(".rhai")?.to_string())
            }));
        }
        names.into_iter().collect()
    }

    /// Names of the folders in a folder relative to the roots (e.g. the families in `scripts`).
    pub fn list_dirs(&self, rel_dir: &str) -> Vec<String> {
        let mut names = BTreeSet::new();
        for dir in self.roots_for(rel_dir) {
            if let Ok(rd) = std::fs::read_dir(dir.join(rel_dir)) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        names.extend(e.file_name().to_str().map(str::to_string));
                    }
                }
            }
        }
        if let Some(d) = bundled_dir(rel_dir) {
            names.extend(
                d.dirs()
                    .filter_map(|sub| Some(sub.path().file_name()?.to_str()?.to_string())),
            );
        }
        names.into_iter().collect()
    }

    /// Writes a folder of the search path (e.g. an image build context) to `dest`, preferring
    /// files on disk. Bundled files that start with `#!` are made executable.
    pub fn materialize(&self, rel_dir: &str, dest: &Path) -> std::io::Result<bool> {
        for dir in self.roots_for(rel_dir) {
            let p = dir.join(rel_dir);
            if p.is_dir() {
                copy_dir(&p, dest)?;
                return Ok(true);
            }
        }
        let Some(d) = bundled_dir(rel_dir) else {
            return Ok(false);
        };
        std::fs::create_dir_all(dest)?;
        for f in all_files(d) {
            let rel = f.path().strip_prefix(d.path()).unwrap_or(f.path());
            let out = dest.join(rel);
            std::fs::create_dir_all(out.parent().unwrap_or(dest))?;
            std::fs::write(&out, f.contents())?;
            if f.contents().starts_with(b"#!") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        Ok(true)
    }
}

/// Every file under a bundled folder.
pub(crate) fn all_files<'a>(d: &'a Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut out: Vec<_> = d.files().collect();
    for sub in d.dirs() {
        out.extend(all_files(sub));
    }
    out
}

/// Every bundled `.rhai` file, with its path relative to the bundled roots.
#[cfg(test)]
pub(crate) fn bundled_scripts() -> Vec<(String, &'static str)> {
    BUNDLED
        .iter()
        .flat_map(|(top, root)| {
            all_files(root)
                .into_iter()
                .filter(|f| f.path().extension().is_some_and(|e| e == "rhai"))
                .map(move |f| {
                    (
                        format!("{top}/{}", f.path().display()),
                        f.contents_utf8().unwrap_or_default(),
                    )
                })
        })
        .collect()
}

fn copy_dir(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dest.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Resolves `import "name"` to `stdlib/name.rhai` on the search path, compiled once.
pub struct StdlibResolver {
    pub search: SearchPath,
    pub cache: Mutex<HashMap<String, Shared<Module>>>,
}

/// The compiled modules are left to the end of the process rather than freed one node at a
/// time: a process has one shell, and freeing them cost 6 % of a `stack status`'s instructions
/// (issue 28).
impl Drop for StdlibResolver {
    fn drop(&mut self) {
        let cache = self.cache.get_mut().map(std::mem::take).unwrap_or_default();
        std::mem::forget(cache);
    }
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self.cache.lock().expect("module cache").get(path) {
            return Ok(m.clone());
        }
        let rel = format!("stdlib/{path}.rhai");
        let dropped = path
            .strip_prefix("providers/")
            .filter(|name| !name.contains('/') && !name.starts_with('.'))
            .and_then(|name| Some(self.search.providers.as_ref()?.join(format!("{name}.rhai"))))
            .and_then(|p| Some((std::fs::read_to_string(&p).ok()?, p)))
            .map(|(text, p)| Found {
                origin: p.display().to_string(),
                text: Cow::Owned(text),
            });
        let found = dropped
            .or_else(|| self.search.find(&rel))
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos)))?;
        let in_module = |e: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(found.origin.clone(), e, pos))
        };
        let mut ast = engine
            .compile(&found.text)
            .map_err(|e| in_module(e.into()))?;
        ast.set_source(found.origin.as_str());
        let module: Shared<Module> = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(in_module)?
            .into();
        self.cache
            .lock()
            .expect("module cache")
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}
