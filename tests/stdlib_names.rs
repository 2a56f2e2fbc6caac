//! Rhai can bind an unqualified call inside a module to a same-named function of another loaded
//! module (same name, same number of arguments); which one wins varied from run to run (a
//! compose stack's `start` once reached `config::load` instead of `compose_stack::load`). So in
//! the bundled stdlib, a function called unqualified must be the only one of its name and arity.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rhai_files(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rhai_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rhai") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
}

/// The number of arguments of a call or definition whose `(` ends `before`; None when the
/// parentheses do not close.
fn arity(text: &str) -> Option<usize> {
    let (mut depth, mut commas, mut any) = (0i32, 0, false);
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return Some(if any { commas + 1 } else { 0 }),
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => commas += 1,
            c if !c.is_whitespace() => any = true,
            _ => {}
        }
    }
    None
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[test]
fn a_function_called_unqualified_has_one_definition_of_its_arity() {
    let mut files = Vec::new();
    rhai_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib"),
        &mut files,
    );
    // (name, arity) → the files that define it.
    let mut defs: BTreeMap<(String, usize), BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &files {
        for line in text.lines() {
            let l = line.trim_start().trim_start_matches("private ");
            if let Some(rest) = l.strip_prefix("fn ") {
                if let Some((name, args)) = rest.split_once('(') {
                    if let Some(n) = arity(args) {
                        defs.entry((name.trim().to_string(), n))
                            .or_default()
                            .insert(file.clone());
                    }
                }
            }
        }
    }
    let mut clashes = Vec::new();
    for (file, text) in &files {
        for (no, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.trim_start().starts_with("fn ") || code.trim_start().starts_with("private fn ")
            {
                continue;
            }
            let chars: Vec<char> = code.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                if is_ident(chars[i])
                    && (i == 0
                        || !(is_ident(chars[i - 1]) || chars[i - 1] == ':' || chars[i - 1] == '.'))
                {
                    let start = i;
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                    if i < chars.len() && chars[i] == '(' {
                        let name: String = chars[start..i].iter().collect();
                        let rest: String = chars[i + 1..].iter().collect();
                        if let Some(n) = arity(&rest) {
                            if let Some(files) = defs.get(&(name.clone(), n)) {
                                if files.len() > 1 {
                                    clashes.push(format!(
                                        "{file}:{}: {name}/{n} is defined in {files:?}",
                                        no + 1
                                    ));
                                }
                            }
                        }
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
    assert!(
        clashes.is_empty(),
        "unqualified calls of a name defined twice:\n{}",
        clashes.join("\n")
    );
}
