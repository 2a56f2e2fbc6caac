//! A config text (`KEY=VALUE` lines) with the values of its secret keys sealed with the
//! operator's key (`secrets::Key`), for config text kept where others can read it (a remote
//! stack's shared config in the swarm store): `config::seal_secrets`, `config::open_secrets`.

use crate::host::secrets::{is_secret_name, key, key_source, Key, SEALED};

/// A config line's parts: the text before the value (`export KEY=`), the key, the value's text
/// as written (quotes and a trailing comment included) and the value as the config parser reads
/// it; None for a blank line, a comment or a line that does not parse.
fn config_line(line: &str) -> Option<(&str, &str, &str, String)> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let body = t.strip_prefix("export ").map_or(t, str::trim_start);
    let (key, _) = body.split_once('=')?;
    let eq = line.len() - body.len() + key.len();
    let key = key.trim();
    let value = super::parse(body, "").ok()?.remove(key)?;
    Some((&line[..=eq], key, &line[eq + 1..], value))
}

/// Rejoins lines, ending as the text did.
fn rejoin(lines: Vec<String>, text: &str) -> String {
    lines.join("\n") + if text.ends_with('\n') { "\n" } else { "" }
}

/// A config text (`KEY=VALUE` lines) with the value of every secret key sealed with `key` (as
/// written, quotes and comment included, so opening gives the line back exactly); other lines
/// stay as they are.
pub fn seal_config_text(text: &str, key: &Key) -> Result<String, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        match config_line(line) {
            Some((head, name, raw, value))
                if is_secret_name(name) && !value.is_empty() && !value.starts_with(SEALED) =>
            {
                out.push(format!("{head}{}", key.seal(raw)?));
            }
            _ => out.push(line.to_string()),
        }
    }
    Ok(rejoin(out, text))
}

/// [`seal_config_text`] with this machine's key, which is read (or made) only when the text
/// has a secret value to seal.
pub fn seal_config(text: &str) -> Result<String, String> {
    let any = text.lines().any(|l| {
        config_line(l).is_some_and(|(_, name, _, v)| {
            is_secret_name(name) && !v.is_empty() && !v.starts_with(SEALED)
        })
    });
    if !any {
        return Ok(text.to_string());
    }
    seal_config_text(text, &key()?)
}

/// [`open_config_text`] with this machine's key; the error names `origin` and the keys.
pub fn open_config(text: &str, origin: &str) -> Result<String, String> {
    if !text.contains(SEALED) {
        return Ok(text.to_string());
    }
    open_config_text(text, &key()?).map_err(|keys| {
        format!(
            "{origin} holds {} sealed with another key than this machine's ({}); set WSM_SECRETS_KEY to the key it was saved with",
            keys.join(", "),
            key_source()
        )
    })
}

/// A config text with its sealed values opened; the error names the keys `key` cannot open.
pub fn open_config_text(text: &str, key: &Key) -> Result<String, Vec<String>> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for line in text.lines() {
        match config_line(line) {
            Some((head, name, _, value)) if value.starts_with(SEALED) => match key.open(&value) {
                Some(raw) => out.push(format!("{head}{raw}")),
                None => missing.push(name.to_string()),
            },
            _ => out.push(line.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(rejoin(out, text))
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::secrets::key_from_text;

    #[test]
    fn a_config_text_keeps_its_secret_values_sealed_and_its_other_lines() {
        let k = key_from_text("test");
        let text = "# keys\nNODE_KEYS=k1,p1\nexport API_TOKEN='a b'\nNODE_COUNT=3\nEMPTY_SECRET=\n";
        let sealed = seal_config_text(text, &k).unwrap();
        assert!(
            !sealed.contains("k1,p1") && !sealed.contains("a b"),
            "{sealed}"
        );
        assert!(
            sealed.starts_with("# keys\nNODE_KEYS=wsm-sealed:v1:"),
            "{sealed}"
        );
        assert!(
            sealed.contains("\nNODE_COUNT=3\nEMPTY_SECRET=\n"),
            "{sealed}"
        );
        let parsed = crate::host::config::parse(&sealed, "t").unwrap();
        assert!(parsed["API_TOKEN"].starts_with(SEALED));
        assert_eq!(open_config_text(&sealed, &k).unwrap(), text);
        assert_eq!(
            open_config_text(&sealed, &key_from_text("other")).unwrap_err(),
            ["NODE_KEYS", "API_TOKEN"]
        );
        assert_eq!(open_config_text(text, &k).unwrap(), text);
    }
}
