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

fn shell() -> (tokio::runtime::Runtime, crate::engine::Shell) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let host = crate::host::Host::new(rt.handle().clone(), Default::default());
    let catalog = crate::engine::Catalog::scan(crate::engine::SearchPath::bundled_only());
    let shell = crate::engine::Shell::documented(host, catalog);
    (rt, shell)
}

/// The stack handle's methods come from the commands; every other registered function
/// carries its doc (`host::doc::Prim`).
#[test]
fn every_registered_function_has_a_doc_in_a_section() {
    let (_rt, shell) = shell();
    let catalog = &shell.catalog;
    let command_methods: BTreeSet<String> = catalog
        .families()
        .iter()
        .filter(|f| f.takes_stack())
        .flat_map(|f| catalog.commands(&f.name).clone())
        .flat_map(|(name, doc)| std::iter::once(name).chain(doc.aliases))
        .map(|m| format!("Stack.{}", m.replace('-', "_")))
        .collect();
    let docs = Docs::of(&shell.engine);
    let undocumented: Vec<&String> = docs.undocumented.difference(&command_methods).collect();
    assert!(
        undocumented.is_empty(),
        "registered without a doc (register it with host::doc::Prim): {undocumented:?}"
    );
    assert!(docs.iter().count() > 100, "the docs were not read");
    for doc in docs.iter() {
        assert!(
            section_text(doc.section()).is_some(),
            "{} is in no section of SECTIONS",
            doc.name
        );
        assert!(!doc.text.is_empty(), "{} has no text", doc.name);
        // The signature names what is registered.
        for sig in &doc.sigs {
            let call = parse_sig(sig);
            assert_eq!(call.name, doc.short(), "{}: {sig}", doc.name);
            if let Some(r) = call.receiver {
                assert_eq!(r, receiver(doc.section()), "{}: {sig}", doc.name);
            }
        }
    }
}

/// The documented signature of every overload has the registered function's parameters:
/// as many, in the same order, of the same types, and the same return type.
#[test]
fn documented_signatures_have_the_registered_parameters() {
    let (_rt, shell) = shell();
    let engine = &shell.engine;
    // A Rust type as a script knows it: `Result<Map, …>` is a map, `Vec<…>` an array.
    fn script_type(engine: &Engine, rust: &str) -> String {
        let rust = rust.trim().trim_start_matches("&mut ").trim();
        let Some((outer, inner)) = rust.split_once('<') else {
            return simple_type(engine.map_type_name(rust)).to_string();
        };
        match outer.rsplit("::").next().unwrap_or(outer) {
            "Result" => {
                let mut depth = 0;
                let end = inner
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '<' => 1,
                            '>' => -1,
                            _ => 0,
                        };
                        c == ',' && depth == 0
                    })
                    .map_or(inner.len(), |(i, _)| i);
                script_type(engine, &inner[..end])
            }
            "Vec" => "array".to_string(),
            "BTreeMap" => "map".to_string(),
            other => other.to_string(),
        }
    }
    let script_type = |rust: &str| script_type(engine, rust);
    let mut wrong = Vec::new();
    for doc in Docs::of(engine).iter() {
        for reg in &doc.registered {
            let call = parse_sig(&reg.sig);
            let params = &reg.params[usize::from(call.receiver.is_some())..];
            if call.receiver.is_some() && reg.params.is_empty() {
                wrong.push(format!("{}: documented as a method", reg.sig));
                continue;
            }
            if params.len() != call.params.len() {
                wrong.push(format!(
                    "{}: documents {} parameters, {} registered",
                    reg.sig,
                    call.params.len(),
                    params.len()
                ));
                continue;
            }
            for ((name, ty), (_, rust)) in call.params.iter().zip(params) {
                let rust = script_type(rust);
                if !ty.is_empty() && rust != "Dynamic" && *ty != rust {
                    wrong.push(format!("{}: {name} is a {rust}", reg.sig));
                }
            }
            let returns = script_type(&reg.returns);
            match call.returns {
                None if !matches!(returns.as_str(), "" | "()" | "Dynamic") => {
                    wrong.push(format!("{}: returns a {returns}", reg.sig))
                }
                Some(t) if returns != "Dynamic" && t != returns => {
                    wrong.push(format!("{}: returns a {returns}", reg.sig))
                }
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// An option a primitive reads (`opt_bool(&opts, "record", …)`, `opts.get("key")`) is one
/// it declares: within a registration, its own declaration; in a helper of the file, one
/// of that file's declarations.
#[test]
fn every_option_read_is_declared() {
    let (_rt, shell) = shell();
    let docs = Docs::of(&shell.engine);
    let by_sig: BTreeMap<&str, &Doc> = docs
        .iter()
        .flat_map(|d| d.sigs.iter().map(move |s| (s.as_str(), d)))
        .collect();
    let mut wrong = Vec::new();
    for (path, text) in host_sources(std::path::Path::new("src/host")) {
        // A signature too long for one line starts on the next (rustfmt's way).
        let text = text
            .split("Prim::new(")
            .map(str::to_string)
            .reduce(|a, b| format!("{a}Prim::new({}", b.trim_start()))
            .unwrap_or_default();
        let declared_in_file: BTreeSet<String> = text
            .split("Prim::new(\"")
            .skip(1)
            .filter_map(|chunk| by_sig.get(chunk.split('"').next()?))
            .flat_map(|d| d.options.iter().map(|(k, _)| k.clone()))
            .collect();
        let mut chunks = text.split("Prim::new(\"");
        let helpers = chunks.next().unwrap_or("");
        for key in option_reads(helpers) {
            if !declared_in_file.contains(&key) {
                wrong.push(format!(
                    "{path}: option {key:?} is read but no primitive here declares it"
                ));
            }
        }
        for chunk in chunks {
            let sig = chunk.split('"').next().unwrap_or("");
            let declared: BTreeSet<&str> = by_sig
                .get(sig)
                .map(|d| d.options.iter().map(|(k, _)| k.as_str()).collect())
                .unwrap_or_default();
            for key in option_reads(chunk) {
                if !declared.contains(key.as_str()) && !declared_in_file.contains(&key) {
                    wrong.push(format!(
                        "{path}: {sig} reads option {key:?}, which it does not declare"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The keys read from a map named `opts` in this source text.
fn option_reads(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for pattern in ["(&opts, \"", "(opts, \"", "opts.get(\""] {
        for (i, _) in text.match_indices(pattern) {
            let rest = &text[i + pattern.len()..];
            let is_reader = pattern.starts_with("opts.")
                || text[..i]
                    .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .is_some_and(|f| f.starts_with("opt_"));
            if let (true, Some(key)) = (is_reader, rest.split('"').next()) {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

fn host_sources(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("src/host").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(host_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("opts.rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            out.push((path.display().to_string(), text));
        }
    }
    out
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
