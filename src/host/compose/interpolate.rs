//! `${VAR…}` interpolation of compose files, as docker/cli's `compose/template` does it:
//! values are substituted, never executed, and a `$` that starts no substitution (`$(…)`) is
//! refused, as docker refuses it, rather than passed through.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::host::bounded;

/// Substitutes `$VAR`, `${VAR}`, `${VAR-default}`, `${VAR:-default}`, `${VAR?err}`,
/// `${VAR:?err}` and `$$` in one string. Unset variables without a default become "".
/// The result is at most [`bounded::INTERPOLATED`] bytes.
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    interpolate_within(s, env, &mut Budget(bounded::INTERPOLATED))
}

/// How many bytes of interpolated text are left: a file of a million `$BIG` references to a
/// 1 MiB variable would otherwise make a terabyte.
struct Budget(u64);

impl Budget {
    /// Appends `text` to `out`, or fails when the budget is spent.
    fn push(&mut self, out: &mut String, text: &str) -> Result<(), String> {
        self.0 = self
            .0
            .checked_sub(text.len() as u64)
            .ok_or_else(|| bounded::too_big("the interpolated text", bounded::INTERPOLATED))?;
        out.push_str(text);
        Ok(())
    }
}

fn interpolate_within(
    s: &str,
    env: &BTreeMap<String, String>,
    budget: &mut Budget,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        budget.push(&mut out, &rest[..pos])?;
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            budget.push(&mut out, "$")?;
            rest = tail;
            continue;
        }
        let (substitution, tail) = if let Some(len) = substitution_len(after) {
            (&after[..len], &after[len..])
        } else {
            let braced = after.strip_prefix('{').and_then(|body| {
                let len = substitution_len(body)?;
                let tail = body[len..].strip_prefix('}')?;
                Some((&body[..len], tail))
            });
            braced.ok_or_else(|| invalid(s))?
        };
        budget.push(&mut out, &substitute(substitution, env)?)?;
        rest = tail;
    }
    budget.push(&mut out, rest)?;
    Ok(out)
}

/// docker's refusal of a `$` that starts no substitution (`$(hostname)`, `$1`, a `$` at the
/// end, `${}`), naming the whole string as docker does.
fn invalid(template: &str) -> String {
    format!(
        "invalid interpolation format {template:?}; you may need to escape any $ with another $"
    )
}

/// How long the substitution at the start of `s` is, as docker/cli's template pattern
/// `[_a-z][_a-z0-9]*(?::?[-?][^}]*)?` (case-insensitive) matches it; None when `s` starts no
/// name. The operator's text runs to the first `}` or the end, unbraced too: docker reads
/// `$VAR-x y` as `${VAR-x y}`.
fn substitution_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let first = *b.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let name = 1 + b[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    let op = if b.get(name) == Some(&b':') {
        name + 1
    } else {
        name
    };
    if !matches!(b.get(op), Some(b'-' | b'?')) {
        return Some(name);
    }
    let text = &s[op + 1..];
    Some(op + 1 + text.find('}').unwrap_or(text.len()))
}

/// The value of one substitution, tried as docker/cli does, in this order: `:-` (a default
/// when unset or empty), `-` (when unset), `:?` (an error when unset or empty), `?` (when
/// unset), else the plain value ("" when unset). Each splits at its operator's first
/// occurrence, and a default is taken as it is, not interpolated again.
fn substitute(sub: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let value = |name: &str| env.get(name).cloned();
    let required =
        |name: &str, msg: &str| format!("required variable {name} is missing a value: {msg}");
    if let Some((name, default)) = sub.split_once(":-") {
        return Ok(value(name)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string()));
    }
    if let Some((name, default)) = sub.split_once('-') {
        return Ok(value(name).unwrap_or_else(|| default.to_string()));
    }
    if let Some((name, msg)) = sub.split_once(":?") {
        return value(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| required(name, msg));
    }
    if let Some((name, msg)) = sub.split_once('?') {
        return value(name).ok_or_else(|| required(name, msg));
    }
    Ok(value(sub).unwrap_or_default())
}

/// Interpolates every string scalar of a parsed compose document; an error names the key
/// path (`services.web.image`) below `path`.
pub(super) fn interpolate_value(
    v: &mut Value,
    env: &BTreeMap<String, String>,
    path: &str,
) -> Result<(), String> {
    walk(v, env, path, &mut Budget(bounded::INTERPOLATED))
}

/// [`interpolate_value`] with the budget the whole document shares.
fn walk(
    v: &mut Value,
    env: &BTreeMap<String, String>,
    path: &str,
    budget: &mut Budget,
) -> Result<(), String> {
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::String(s) => {
            *s = interpolate_within(s, env, budget).map_err(|e| {
                if path.is_empty() {
                    e
                } else {
                    format!("{path}: {e}")
                }
            })?
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                walk(x, env, &format!("{path}[{i}]"), budget)?;
            }
        }
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                walk(x, env, &child(k), budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::compose::tests::env;

    #[test]
    fn interpolation_forms() {
        let e = env(&[("A", "1"), ("E", "")]);
        assert_eq!(
            interpolate("${A-x}/${B-x}/${E-x}/${E:-y}/$A/$$A", &e).unwrap(),
            "1/x//y/1/$A"
        );
        assert_eq!(interpolate("{{.Task.Slot}}", &e).unwrap(), "{{.Task.Slot}}");
        assert_eq!(
            interpolate("$$(touch /tmp/x)", &e).unwrap(),
            "$(touch /tmp/x)"
        );
        assert_eq!(interpolate("${A}}$_b${a}", &e).unwrap(), "1}");
    }

    /// What `docker stack config` (docker/cli 28) printed for each string, with A=1, E="" and
    /// B unset: defaults are not interpolated again, an unbraced name takes an operator too,
    /// and `-` is tried before `?`.
    #[test]
    fn docker_quirks_are_kept() {
        let e = env(&[("A", "1"), ("E", "")]);
        for (text, docker) in [
            ("${B:-$A}", "$A"),
            ("${B:-${A}}", "${A}"),
            ("${B?x-y}", "y"),
            ("${A?x-y}", "y"),
            ("${B-a:-b}", "b"),
            ("$A-x y", "1"),
            ("$B-a}b", "a}b"),
            ("$A:?zz", "1"),
            ("$B:-a", "a"),
            ("${B:?oops a-b}", "b"),
            ("${E?m}", ""),
            ("${B-}z", "z"),
            ("$A:x", "1:x"),
        ] {
            assert_eq!(interpolate(text, &e).unwrap(), docker, "{text}");
        }
    }

    #[test]
    fn a_dollar_that_starts_no_substitution_is_refused_as_docker_refuses_it() {
        let e = env(&[("A", "1")]);
        for text in [
            "echo $(hostname)",
            "a $1 b",
            "x $ y",
            "end$",
            "${A:x}",
            "${A",
            "${}",
            "${1}",
            "${A B}",
        ] {
            assert_eq!(
                interpolate(text, &e).unwrap_err(),
                format!(
                    "invalid interpolation format {text:?}; you may need to escape any $ with \
                     another $"
                ),
                "{text}"
            );
        }
    }

    /// The `?` and `:?` operators: an error with the message only when the value is missing
    /// (unset for `?`; unset or empty for `:?`), the value itself otherwise.
    #[test]
    fn required_variables_fail_only_when_missing() {
        let e = env(&[("A", "1"), ("E", "")]);
        let missing =
            |name: &str, msg: &str| format!("required variable {name} is missing a value: {msg}");
        assert_eq!(
            interpolate("${B?set B}", &e).unwrap_err(),
            missing("B", "set B")
        );
        assert_eq!(
            interpolate("${B:?set B}", &e).unwrap_err(),
            missing("B", "set B")
        );
        assert_eq!(
            interpolate("${E:?no E}", &e).unwrap_err(),
            missing("E", "no E")
        );
        assert_eq!(interpolate("${B?}", &e).unwrap_err(), missing("B", ""));
        assert_eq!(interpolate("<${A?m}>", &e).unwrap(), "<1>");
        assert_eq!(interpolate("<${A:?m}>", &e).unwrap(), "<1>");
        assert_eq!(interpolate("<${E?m}>", &e).unwrap(), "<>");
        assert_eq!(interpolate("$B:?m", &e).unwrap_err(), missing("B", "m"));
    }

    #[test]
    fn a_document_whose_interpolation_would_grow_without_end_is_refused() {
        let big = "x".repeat(1 << 20);
        let e = env(&[("BIG", big.as_str())]);
        let mut doc = Value::Array(vec![Value::String("$BIG${BIG}".into()); 40]);
        let err = interpolate_value(&mut doc, &e, "").unwrap_err();
        assert!(err.contains("interpolated text is over 64 MiB"), "{err}");
        let mut small = Value::Array(vec![Value::String("$BIG".into()); 3]);
        interpolate_value(&mut small, &e, "").unwrap();
    }
}
