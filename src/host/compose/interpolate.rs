//! `${VAR…}` interpolation of compose files, as docker/cli's `compose/interpolation` does it:
//! values are substituted, never executed (`$(…)` stays text).

use std::collections::BTreeMap;

use serde_json::Value;

/// Substitutes `$VAR`, `${VAR}`, `${VAR-default}`, `${VAR:-default}`, `${VAR?err}`,
/// `${VAR:?err}` and `$$` in one string. Unset variables without a default become "".
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            out.push_str(&expand(&body_start[..end], env)?);
            rest = &body_start[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(env.get(&after[..len]).map(String::as_str).unwrap_or(""));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${…}` body: a name, then an optional `-`, `:-`, `?` or `:?` operator.
fn expand(body: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
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
                interpolate(&op[2..], env)?
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => v.clone(),
            None => interpolate(&op[1..], env)?,
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
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::String(s) => {
            *s = interpolate(s, env).map_err(|e| {
                if path.is_empty() {
                    e
                } else {
                    format!("{path}: {e}")
                }
            })?
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                interpolate_value(x, env, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                interpolate_value(x, env, &child(k))?;
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
}
