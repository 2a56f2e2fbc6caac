//! What type the expression before a `.` has, as far as the prompt can tell without running it:
//! a variable of the session (its value's type), a literal, or a call whose documented
//! signature says what it returns (`docker::connect("") -> Engine`, `e.lock_stack(…) ->
//! StackLock`), followed by methods and getters the same way.

use std::collections::HashMap;

use crate::engine::docs::Docs;

/// The type of the expression that ends `text` (the text before the `.` being completed).
pub fn expression_type(docs: &Docs, text: &str, vars: &HashMap<String, String>) -> Option<String> {
    let expr = trailing_expression(text)?;
    let segments = split_top_level(expr, '.');
    let (head, rest) = segments.split_first()?;
    let mut ty = head_type(docs, head.trim(), vars)?;
    for segment in rest {
        let name = segment.split('(').next()?.trim();
        let doc = docs.lookup(&format!("{ty}.{name}"))?;
        ty = doc.returns()?.to_string();
    }
    Some(ty)
}

/// The type of the first part of a chain: a literal, a variable, or a documented call.
fn head_type(docs: &Docs, head: &str, vars: &HashMap<String, String>) -> Option<String> {
    let literal = match head.chars().next()? {
        '"' | '`' => Some("string"),
        '[' => Some("array"),
        '#' => Some("map"),
        c if c.is_ascii_digit() => Some(if head.contains('.') { "float" } else { "int" }),
        _ => None,
    };
    if let Some(t) = literal {
        return Some(t.to_string());
    }
    match head.split_once('(') {
        Some((name, _)) => docs.lookup(name.trim())?.returns().map(str::to_string),
        None => vars.get(head).cloned(),
    }
}

/// The postfix expression at the end of `text`: `docker::connect("x")` of `let e = docker::connect("x")`.
fn trailing_expression(text: &str) -> Option<&str> {
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = text.len();
    for &(i, c) in bytes.iter().rev() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            start = i;
            continue;
        }
        match c {
            '"' | '`' => quote = Some(c),
            ')' | ']' | '}' => depth += 1,
            '(' | '[' | '{' if depth > 0 => depth -= 1,
            '(' | '[' | '{' => break,
            c if depth > 0 => {
                let _ = c;
            }
            c if c.is_alphanumeric() || c == '_' || c == ':' || c == '.' || c == '#' => {}
            _ => break,
        }
        start = i;
    }
    let expr = text[start..].trim();
    (!expr.is_empty() && depth == 0 && quote.is_none()).then_some(expr)
}

/// The variable the text ends with, when the expression before the `.` is just a variable.
pub fn trailing_variable(text: &str) -> Option<&str> {
    trailing_expression(text).filter(|e| is_identifier(e))
}

/// Whether a map key can follow a `.` (`ServerVersion`, not `desired-state`).
pub fn is_identifier(key: &str) -> bool {
    key.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Splits at `sep` outside brackets and strings.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut from = 0;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '`') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, c) if c == sep && depth == 0 => {
                parts.push(&text[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[from..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_variables_literals_and_documented_returns() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let host = crate::host::Host::new(rt.handle().clone(), Default::default());
        let catalog = crate::engine::Catalog::scan(crate::engine::SearchPath::bundled_only());
        let shell = crate::engine::Shell::documented(host, catalog);
        let docs = Docs::of(&shell.engine);
        let vars = HashMap::from([("e".to_string(), "Engine".to_string())]);
        let ty = |t: &str| expression_type(&docs, t, &vars);
        assert_eq!(ty("e").as_deref(), Some("Engine"));
        assert_eq!(ty("let x = e").as_deref(), Some("Engine"));
        assert_eq!(
            ty("docker::connect(docker::default_host())").as_deref(),
            Some("Engine")
        );
        assert_eq!(ty("print(docker::connect(\"\")").as_deref(), Some("Engine"));
        assert_eq!(
            ty("e.lock_stack(\"a\", \"b\", 0)").as_deref(),
            Some("StackLock")
        );
        assert_eq!(
            ty("ssh::connect(\"root@h\")").as_deref(),
            Some("SshSession")
        );
        assert_eq!(ty("stack(\"demo\")").as_deref(), Some("Stack"));
        assert_eq!(ty("\"a.b\"").as_deref(), Some("string"));
        assert_eq!(ty("unknown"), None);
        assert_eq!(ty("1 + unknown_fn()"), None);
    }

    #[test]
    fn only_a_bare_variable_is_a_variable() {
        assert_eq!(trailing_variable("print(info"), Some("info"));
        assert_eq!(trailing_variable("x.info"), None);
        assert_eq!(trailing_variable("e.info()"), None);
    }
}
