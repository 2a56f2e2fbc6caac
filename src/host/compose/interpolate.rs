//! `${VAR…}` interpolation of compose files, as docker/cli's `compose/interpolation` does it:
//! values are substituted, never executed (`$(…)` stays text).

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
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let value = expand(&body_start[..end], env, budget)?;
            budget.push(&mut out, &value)?;
            rest = &body_start[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                budget.push(&mut out, "$")?;
            } else {
                let value = env.get(&after[..len]).map(String::as_str).unwrap_or("");
                budget.push(&mut out, value)?;
            }
            rest = &after[len..];
        }
    }
    budget.push(&mut out, rest)?;
    Ok(out)
}

/// The value of one `${…}` body: a name, then an optional `-`, `:-`, `?` or `:?` operator.
fn expand(
    body: &str,
    env: &BTreeMap<String, String>,
    budget: &mut Budget,
) -> Result<String, String> {
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(format!("invalid interpolation ${{{body}}}"));
    }
    let value = env.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    Ok(match op {
        "" => value.cloned().unwrap_or_default(),
        _ if op.starts_with(":-") => {
            if set_nonempty {
                value.unwrap().clone()
            } else {
                interpolate_within(&op[2..], env, budget)?
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => v.clone(),
            None => interpolate_within(&op[1..], env, budget)?,
        },
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let strict = op.starts_with(':');
            let msg = &op[if strict { 2 } else { 1 }..];
            if (strict && !set_nonempty) || value.is_none() {
                return Err(format!(
                    "required variable {name} is missing a value: {msg}"
                ));
            }
            value.unwrap().clone()
        }
        _ => return Err(format!("invalid interpolation ${{{body}}}")),
    })
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
        assert!(interpolate("${B?needed}", &e).is_err());
        assert!(interpolate("${A", &e).is_err());
        assert_eq!(
            interpolate("$(touch /tmp/x)", &e).unwrap(),
            "$(touch /tmp/x)"
        );
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
