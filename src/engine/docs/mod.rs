//! What the primitives are, read back from the engine: each primitive's doc is written where
//! it is registered (`host::doc::Prim`) into Rhai's own function metadata, and `Docs::of`
//! collects it (`Engine::gen_fn_metadata_to_json`) for `help` (here), the REPL's completion by
//! type, the suggestions for a misspelt function (`suggest`) and the generated reference
//! (`reference`). The sections (what each module and type is for) are `sections.rs`. Tests
//! walk the engine's registered functions: each has a doc, each documented signature has the
//! registered function's parameters, each option a primitive reads is declared.

pub mod help;
pub mod reference;
mod sections;

use std::collections::{BTreeMap, BTreeSet};

use rhai::Engine;
use serde_json::Value;

use crate::host::doc::{parse_sig, OPTION, SIG};
pub use sections::SECTIONS;

/// The doc of one registered name: `docker::connect`, `Engine.deploy`, `stack`.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// The key: `module::name`, `Type.name` (getters too), or a global function's name.
    pub name: String,
    /// One signature per overload, as a script writes the call.
    pub sigs: Vec<String>,
    /// What it does, its arguments, what it returns, its errors.
    pub text: String,
    /// The keys of its options map, each with what it does.
    pub options: Vec<(String, String)>,
    /// Each overload as registered: its documented signature, then the registered
    /// parameters (name and Rust type, the receiver first) and return type.
    pub registered: Vec<Registered>,
}

/// One registered overload, as the engine's metadata holds it.
#[derive(Debug, Clone, Default)]
pub struct Registered {
    pub sig: String,
    pub params: Vec<(String, String)>,
    pub returns: String,
}

impl Doc {
    /// The type a call returns, from the first signature's `-> Type`.
    pub fn returns(&self) -> Option<&str> {
        self.sigs.first()?.rsplit_once("->").map(|(_, t)| t.trim())
    }

    /// The module (`docker`) or type (`Engine`) it belongs to, "global" for neither.
    pub fn section(&self) -> &str {
        if let Some((module, _)) = self.name.split_once("::") {
            module
        } else if let Some((ty, _)) = self.name.split_once('.') {
            ty
        } else {
            "global"
        }
    }

    /// The name within its module or type: `connect`, `deploy`.
    pub fn short(&self) -> &str {
        self.name.rsplit(['.', ':']).next().unwrap_or(&self.name)
    }

    /// The first sentence of its text.
    pub fn summary(&self) -> &str {
        first_sentence(&self.text)
    }
}

fn first_sentence(text: &str) -> &str {
    let mut from = 0;
    while let Some(i) = text[from..].find(". ") {
        let end = from + i + 1;
        // `e.g.` and `…` do not end a sentence.
        if !text[..end].ends_with("e.g.") && !text[..end].ends_with("i.e.") {
            return &text[..end];
        }
        from = end;
    }
    text
}

/// The docs of every primitive an engine has, read from its function metadata.
#[derive(Debug, Default)]
pub struct Docs {
    docs: BTreeMap<String, Doc>,
    /// Registered functions that carry no doc (`Type.name` or `module::name`).
    pub undocumented: BTreeSet<String>,
}

impl Docs {
    /// Reads the doc of every function registered in `engine` (Rhai's packages left out).
    pub fn of(engine: &Engine) -> Self {
        let mut docs = Docs::default();
        let json = engine.gen_fn_metadata_to_json(false).unwrap_or_default();
        let Ok(meta) = serde_json::from_str::<Value>(&json) else {
            return docs;
        };
        for f in functions(&meta) {
            docs.add(engine, None, f);
        }
        if let Some(modules) = meta.get("modules").and_then(Value::as_object) {
            for (name, m) in modules {
                for f in functions(m) {
                    docs.add(engine, Some(name), f);
                }
            }
        }
        docs
    }

    fn add(&mut self, engine: &Engine, module: Option<&str>, f: &Value) {
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let params: Vec<(String, String)> = f
            .get("params")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let field = |k| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        (field("name"), field("type"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let key = match module {
            Some(m) => format!("{m}::{name}"),
            None => {
                let short = name.strip_prefix("get$").unwrap_or(name);
                match params.first().and_then(|(_, t)| t.strip_prefix("&mut ")) {
                    Some(ty) => format!("{}.{short}", simple_type(engine.map_type_name(ty.trim()))),
                    None => short.to_string(),
                }
            }
        };
        let comments: Vec<&str> = f
            .get("docComments")
            .and_then(Value::as_array)
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(sig) = comments.first().and_then(|c| c.strip_prefix(SIG)) else {
            self.undocumented.insert(key);
            return;
        };
        let doc = self.docs.entry(key.clone()).or_insert_with(|| Doc {
            name: key,
            ..Doc::default()
        });
        doc.sigs.push(sig.to_string());
        for c in &comments[1..] {
            if let Some((k, t)) = c.strip_prefix(OPTION).and_then(|o| o.split_once(": ")) {
                doc.options.push((k.to_string(), t.to_string()));
            } else if let Some(text) = c.strip_prefix("/// ") {
                doc.text = text.to_string();
            }
        }
        doc.registered.push(Registered {
            sig: sig.to_string(),
            params,
            returns: f
                .get("returnType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
        // Overloads in the order of their arity, as help lists them.
        doc.sigs
            .sort_by_key(|s| (parse_sig(s).params.len(), s.clone()));
    }

    /// The doc of a name (`Engine.deploy`, `docker::connect`).
    pub fn lookup(&self, name: &str) -> Option<&Doc> {
        self.docs.get(name)
    }

    /// The docs of a module or type, by name.
    pub fn section(&self, name: &str) -> Vec<&Doc> {
        self.docs.values().filter(|d| d.section() == name).collect()
    }

    /// Every doc, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Doc> {
        self.docs.values()
    }
}

/// The functions of a module's metadata.
fn functions(meta: &Value) -> impl Iterator<Item = &Value> {
    meta.get("functions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// What a module or type is for.
pub fn section_text(name: &str) -> Option<&'static str> {
    SECTIONS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// How a script names the receiver of a type's methods in signatures.
pub fn receiver(ty: &str) -> &'static str {
    match ty {
        "Engine" => "e",
        "SshSession" => "s",
        "StackLock" => "lock",
        "Child" => "child",
        "Deploying" => "deploying",
        "Stack" => "st",
        "Server" => "srv",
        _ => "x",
    }
}

/// The name a registered signature (`gen_fn_signatures`) is documented under: `docker::connect`,
/// `Engine.deploy`, `Engine.host` for a getter, `stack`; None for operators and indexers.
pub fn key_of_signature(sig: &str) -> Option<String> {
    let sig = sig.strip_prefix("fn ").unwrap_or(sig);
    let open = sig.find('(')?;
    let name = &sig[..open];
    let params = &sig[open + 1..];
    if name.contains("::") {
        return Some(name.to_string());
    }
    let name = name.strip_prefix("get$").unwrap_or(name);
    if !name.starts_with(|c: char| c.is_alphabetic() || c == '_')
        || name.contains('$')
        || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return None;
    }
    match first_param_type(params) {
        Some(ty) => Some(format!("{ty}.{name}")),
        None => Some(name.to_string()),
    }
}

/// The type of a `&mut` first parameter (a method's receiver), as registered (`Engine`).
fn first_param_type(params: &str) -> Option<String> {
    let first = params.split([',', ')']).next()?;
    let ty = first.rsplit_once(':').map_or(first, |(_, t)| t).trim();
    let ty = ty.strip_prefix("&mut ")?.trim();
    Some(simple_type(ty).to_string())
}

/// Rhai's names for the standard types in signatures, shortened as scripts know them.
pub fn simple_type(ty: &str) -> &str {
    let last = ty.rsplit("::").next().unwrap_or(ty);
    match last {
        "ImmutableString" | "String" | "&str" | "str" => "string",
        "Array" | "Vec<Dynamic>" => "array",
        "Map" => "map",
        "Blob" | "Vec<u8>" => "blob",
        "INT" | "i64" => "int",
        "FLOAT" | "f64" => "float",
        _ => last,
    }
}

/// The methods of every type the engine knows (registered and Rhai's own), by type name, and
/// every other function name (`docker::connect`, `print`).
#[derive(Debug, Default)]
pub struct Catalog {
    pub methods: BTreeMap<String, BTreeSet<String>>,
    pub functions: BTreeSet<String>,
}

impl Catalog {
    /// Reads the engine's registered signatures, Rhai's packages included.
    pub fn of(engine: &Engine) -> Self {
        let mut catalog = Catalog::default();
        let registered: BTreeSet<String> = engine.gen_fn_signatures(false).into_iter().collect();
        for sig in engine.gen_fn_signatures(true) {
            let Some(mut key) = key_of_signature(&sig) else {
                continue;
            };
            // Rhai's own functions are methods of their first argument's type whether or not
            // they take it `&mut` (`"abc".to_upper()`).
            if !registered.contains(&sig) && !key.contains(['.', ':']) {
                if let Some(ty) = sig
                    .split_once('(')
                    .and_then(|(_, params)| params.split([',', ')']).next())
                    .and_then(|first| first.split_once(':'))
                    .map(|(_, ty)| simple_type(ty.trim()))
                {
                    key = format!("{ty}.{key}");
                }
            }
            match key.split_once('.') {
                Some((ty, method)) => {
                    catalog
                        .methods
                        .entry(ty.to_string())
                        .or_default()
                        .insert(method.to_string());
                }
                None => {
                    catalog.functions.insert(key);
                }
            }
        }
        catalog
    }

    /// Every registered name as documented: `Engine.deploy`, `docker::connect`.
    pub fn keys(&self) -> BTreeSet<String> {
        let methods = self
            .methods
            .iter()
            .flat_map(|(ty, ms)| ms.iter().map(move |m| format!("{ty}.{m}")));
        self.functions.iter().cloned().chain(methods).collect()
    }
}

/// What to add to "Function not found: servics (Engine)": the signatures of the function
/// when only its arguments were wrong, else the closest names that exist. The engine's names
/// are listed only here, once an error is worded: listing every signature costs about a fifth
/// of a short command's CPU time, which a command that succeeds should not pay.
pub fn suggest(engine: &Engine, not_found: &str) -> Option<String> {
    let docs = Docs::of(engine);
    if docs.iter().next().is_none() {
        // A command's engine keeps no docs (`Shell::new`): the same functions are registered
        // again with theirs, once, to word the error.
        return documented_engine(|documented| {
            suggest_in(documented, &Docs::of(documented), not_found)
        });
    }
    suggest_in(engine, &docs, not_found)
}

/// `suggest` with the engine's docs read.
fn suggest_in(engine: &Engine, docs: &Docs, not_found: &str) -> Option<String> {
    let catalog = &Catalog::of(engine);
    let (name, args) = not_found.split_once(" (").unwrap_or((not_found, ""));
    let name = name.trim();
    let first_arg = args
        .trim_end_matches(')')
        .split(',')
        .next()
        .map(|t| simple_type(t.trim().trim_start_matches("&mut ")).to_string())
        .filter(|t| !t.is_empty());
    // Methods of the first argument's type, then functions of the same module, then globals.
    let mut candidates: Vec<String> = Vec::new();
    if let Some(ty) = &first_arg {
        if let Some(methods) = catalog.methods.get(ty) {
            candidates.extend(methods.iter().map(|m| format!("{ty}.{m}")));
        }
    }
    let module = name.rsplit_once("::").map(|(m, _)| m);
    candidates.extend(
        catalog
            .functions
            .iter()
            .filter(|f| f.rsplit_once("::").map(|(m, _)| m) == module)
            .cloned(),
    );
    let short = |c: &str| c.rsplit(['.', ':']).next().unwrap_or(c).to_string();
    let wanted = short(name);
    let exact: Vec<&String> = candidates.iter().filter(|c| short(c) == wanted).collect();
    if let Some(doc) = exact.iter().find_map(|c| docs.lookup(c)) {
        return Some(format!("it is called as {}", doc.sigs.join(" or ")));
    }
    let mut close: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| (distance(&short(c), &wanted), c))
        .filter(|(d, c)| *d <= 2.max(wanted.len() / 3) || short(c).contains(&wanted))
        .collect();
    close.sort();
    close.dedup_by(|a, b| a.1 == b.1);
    // The nearest ones only: one edit away does not come with three edits away.
    let best = close.first()?.0;
    close.retain(|(d, _)| *d <= best + 1);
    let named: Vec<String> = close.iter().take(3).map(|(_, c)| display_name(c)).collect();
    Some(format!("did you mean {}?", named.join(", ")))
}

/// Calls `f` with an engine of this process's primitives that keeps their docs: a shell of
/// its own (a host that is never asked to run anything, the families on the search path).
fn documented_engine<T>(f: impl FnOnce(&Engine) -> Option<T>) -> Option<T> {
    // A runtime only to build the host with: no primitive of this engine is called.
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(_) => None,
        Err(_) => Some(tokio::runtime::Builder::new_current_thread().build().ok()?),
    };
    let handle = match &runtime {
        Some(rt) => rt.handle().clone(),
        None => tokio::runtime::Handle::current(),
    };
    let host = crate::host::Host::new(handle, Default::default());
    let catalog = super::Catalog::scan(super::SearchPath::from_env());
    let shell = super::Shell::documented(host, catalog);
    f(&shell.engine)
}

/// `Engine.services` as a script writes it: `e.services`.
pub fn display_name(key: &str) -> String {
    match key.split_once('.') {
        Some((ty, m)) if !key.contains("::") => format!("{}.{m}", receiver(ty)),
        _ => key.to_string(),
    }
}

/// Levenshtein distance between two names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Wraps text to `width` columns (by display width, with textwrap), each line after the first
/// indented by `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let opts = textwrap::Options::new(width.max(1))
        .subsequent_indent(indent)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(text, opts)
}

/// The width help wraps to: the terminal's (as console, which indicatif uses, reads it), else
/// `COLUMNS`, else 80 (a pipe).
pub fn terminal_width() -> usize {
    crate::host::term::size()
        .map(|(c, _)| c as usize)
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .filter(|w| *w >= 20)
        .unwrap_or(80)
}

/// The help of one documented function: its signatures, then its text wrapped.
pub fn render(doc: &Doc, width: usize) -> String {
    let mut out = String::new();
    for sig in &doc.sigs {
        out.push_str(sig);
        out.push('\n');
    }
    out.push_str("  ");
    out.push_str(&wrap(&doc.text, width.saturating_sub(2), "  "));
    for (key, text) in &doc.options {
        out.push_str("\n    ");
        out.push_str(&wrap(
            &format!("{key}: {text}"),
            width.saturating_sub(4),
            "      ",
        ));
    }
    out
}

/// The help of a module or type: what it is for, then each function with its first sentence.
pub fn render_section(docs: &Docs, name: &str, width: usize) -> Option<String> {
    let text = section_text(name)?;
    let mut out = wrap(text, width, "");
    out.push('\n');
    for doc in docs.section(name) {
        out.push('\n');
        out.push_str(&doc.sigs[0]);
        out.push_str("\n    ");
        out.push_str(&wrap(doc.summary(), width.saturating_sub(4), "    "));
    }
    Some(out)
}

#[cfg(test)]
mod tests;
