//! One source for what the primitives are: the table beside the registrations (`table`), read
//! by `help` (here), the REPL's completion by type, the suggestions for a misspelt function
//! (`suggest`) and the generated reference (`reference`). A test walks the engine's registered
//! functions (Rhai's `metadata`) against the table, so help cannot drift from the code.

pub mod help;
pub mod reference;
mod table;

use std::collections::{BTreeMap, BTreeSet};

use rhai::Engine;

pub use table::{DOCS, SECTIONS};

/// The doc of one registered name: `docker::connect`, `Engine.deploy`, `stack`.
#[derive(Debug)]
pub struct Doc {
    pub name: &'static str,
    /// One signature per overload, as a script writes the call.
    pub sigs: &'static [&'static str],
    /// What it does, its arguments and options, what it returns, its errors.
    pub text: &'static str,
}

impl Doc {
    /// The type a call returns, from the first signature's `-> Type`.
    pub fn returns(&self) -> Option<&'static str> {
        self.sigs.first()?.rsplit_once("->").map(|(_, t)| t.trim())
    }

    /// The module (`docker`) or type (`Engine`) it belongs to, "global" for neither.
    pub fn section(&self) -> &'static str {
        if let Some((module, _)) = self.name.split_once("::") {
            module
        } else if let Some((ty, _)) = self.name.split_once('.') {
            ty
        } else {
            "global"
        }
    }

    /// The name within its module or type: `connect`, `deploy`.
    pub fn short(&self) -> &'static str {
        self.name.rsplit(['.', ':']).next().unwrap_or(self.name)
    }

    /// The first sentence of its text.
    pub fn summary(&self) -> &'static str {
        first_sentence(self.text)
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

/// The doc of a name (`Engine.deploy`, `docker::connect`).
pub fn lookup(name: &str) -> Option<&'static Doc> {
    DOCS.iter().find(|d| d.name == name)
}

/// The docs of a module or type, in table order.
pub fn section(name: &str) -> Vec<&'static Doc> {
    DOCS.iter().filter(|d| d.section() == name).collect()
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
        "Stack" => "st",
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
    if let Some(doc) = exact.iter().find_map(|c| lookup(c)) {
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

/// Wraps text to `width` columns, each line after the first indented by `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        } else if !line.is_empty() && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// The width help wraps to: the terminal's, else `COLUMNS`, else 80.
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
    for sig in doc.sigs {
        out.push_str(sig);
        out.push('\n');
    }
    out.push_str("  ");
    out.push_str(&wrap(doc.text, width.saturating_sub(2), "  "));
    out
}

/// The help of a module or type: what it is for, then each function with its first sentence.
pub fn render_section(name: &str, width: usize) -> Option<String> {
    let text = section_text(name)?;
    let mut out = wrap(text, width, "");
    out.push('\n');
    for doc in section(name) {
        out.push('\n');
        out.push_str(doc.sigs[0]);
        out.push_str("\n    ");
        out.push_str(&wrap(doc.summary(), width.saturating_sub(4), "    "));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_signatures_are_keyed_as_documented() {
        let key = |s| key_of_signature(s);
        assert_eq!(
            key("docker::connect(_)").as_deref(),
            Some("docker::connect")
        );
        assert_eq!(
            key("deploy(_: &mut Engine, _: string, _: map) -> array").as_deref(),
            Some("Engine.deploy")
        );
        assert_eq!(
            key("get$host(_: &mut Engine) -> string").as_deref(),
            Some("Engine.host")
        );
        assert_eq!(key("stack(_: string) -> Stack").as_deref(), Some("stack"));
        assert_eq!(key("+(_: i64, _: i64) -> i64"), None);
    }

    /// The stack handle's methods come from the commands; the rest must be in the table.
    #[test]
    fn every_registered_function_has_a_doc_and_every_doc_names_a_registered_function() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let host = crate::host::Host::new(rt.handle().clone(), Default::default());
        let catalog = crate::engine::Catalog::scan(crate::engine::SearchPath::bundled_only());
        let shell = crate::engine::Shell::new(host, catalog.clone());
        let command_methods: BTreeSet<String> = catalog
            .families()
            .iter()
            .filter(|f| f.takes_stack())
            .flat_map(|f| catalog.commands(&f.name).clone())
            .flat_map(|(name, doc)| std::iter::once(name).chain(doc.aliases))
            .map(|m| format!("Stack.{}", m.replace('-', "_")))
            .collect();
        let registered: BTreeSet<String> = shell
            .engine
            .gen_fn_signatures(false)
            .iter()
            .filter_map(|s| key_of_signature(s))
            .filter(|k| !command_methods.contains(k))
            .collect();
        let documented: BTreeSet<String> = DOCS.iter().map(|d| d.name.to_string()).collect();
        let undocumented: Vec<&String> = registered.difference(&documented).collect();
        let stale: Vec<&String> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "registered without a doc in src/engine/docs/table.rs: {undocumented:?}"
        );
        assert!(stale.is_empty(), "documented but not registered: {stale:?}");
        for doc in DOCS {
            assert!(
                section_text(doc.section()).is_some(),
                "{} is in no section of SECTIONS",
                doc.name
            );
        }
    }

    #[test]
    fn text_wraps_within_the_width() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let wrapped = wrap(text, 20, "  ");
        assert!(
            wrapped.lines().all(|l| l.chars().count() <= 20),
            "{wrapped}"
        );
        assert_eq!(wrapped.split_whitespace().count(), 12);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("servics", "services"), 1);
        assert_eq!(distance("conect", "connect"), 1);
        assert_eq!(distance("abc", "abc"), 0);
    }

    #[test]
    fn summaries_end_at_the_first_sentence() {
        assert_eq!(
            first_sentence("A thing, e.g. this. More."),
            "A thing, e.g. this."
        );
    }
}
