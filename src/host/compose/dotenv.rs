//! `.env` and `--env-file` files as docker compose reads them (compose-go's `dotenv` package,
//! whose rules docs.docker.com's "env-file" page documents):
//!
//! - `KEY=VALUE` (or `KEY: VALUE`), an `export ` prefix dropped, blank lines and `#` lines
//!   skipped, a bare `KEY` taking the environment's value (left out when it has none);
//! - unquoted values end at the line's end or at ` #` (an inline comment), trailing spaces
//!   trimmed, `#` without a space before it kept;
//! - `'single'` quotes: literal (only `\'` is read as `'`), no interpolation;
//! - `"double"` quotes: the escapes `\n \r \t \a \b \f \v \\ \" \$` and `\0NNN`, others kept
//!   as written;
//! - quoted values may span lines;
//! - `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR?error}`… (compose's interpolation, the same
//!   port compose files use) in unquoted and double-quoted values, from the process
//!   environment first, then the lines and files read before.
//!
//! Hand-written rather than dotenvy (the maintained Rust crate), because dotenvy's rules are
//! not compose's: it refuses an unquoted value with a space in it (`A=two words`), prefers
//! the process environment *and* knows no `${VAR:-default}` forms, refuses `\t` in double
//! quotes, and has no `KEY: VALUE` lines. A `.env` that docker compose reads must read the same
//! here, so the rules are compose-go's, written again (not copied) and checked line by line
//! against `docker-compose` in tests/compose_dotenv.rs.

use std::collections::BTreeMap;

use super::interpolate::interpolate;

/// Reads `text` (one file) into `values`, which holds what earlier files set; `environment`
/// (the process's) is looked up first when a value names a variable. `label` names the file.
pub fn parse(
    text: &str,
    label: &str,
    environment: &BTreeMap<String, String>,
    values: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rest = text;
    let mut line = 1;
    let err = |line: usize, what: String| format!("{label}: line {line}: {what}");
    loop {
        // Skip blanks and comment lines.
        let start = rest.trim_start_matches(|c: char| c.is_whitespace());
        line += rest[..rest.len() - start.len()].matches('\n').count();
        rest = start;
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('#') {
            match rest.find('\n') {
                Some(i) => {
                    rest = &rest[i..];
                    continue;
                }
                None => break,
            }
        }
        if let Some(after) = rest.strip_prefix("export") {
            if after.starts_with(is_space) {
                rest = after.trim_start_matches(is_space);
            }
        }
        // The key, up to `=`, `:` or the end of the line (a bare key).
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                '=' | ':' | '\n' => {
                    end = Some((i, c));
                    break;
                }
                c if is_space(c) || is_key_char(c) => {}
                c => {
                    let first = rest.lines().next().unwrap_or("");
                    return Err(err(
                        line,
                        format!("unexpected character {c:?} in variable name {first:?}"),
                    ));
                }
            }
        }
        let (key, value_start, bare) = match end {
            Some((i, c)) => (&rest[..i], i + 1, c == '\n'),
            None => (rest, rest.len(), true),
        };
        let key = key.trim_end_matches(|c: char| c.is_whitespace());
        if key.contains(is_space) {
            return Err(err(line, format!("the name {key:?} contains a space")));
        }
        rest = rest[value_start..].trim_start_matches(is_space);
        if bare {
            line += 1;
            let found = environment.get(key).or_else(|| values.get(key)).cloned();
            if let Some(v) = found {
                values.insert(key.to_string(), v);
            }
            continue;
        }
        let (value, after, lines) = value(rest).map_err(|e| err(line, e))?;
        let value = match value {
            Value::Literal(v) => v,
            Value::Expand(v) => expand(&v, environment, values).map_err(|e| err(line, e))?,
        };
        values.insert(key.to_string(), value);
        line += lines;
        rest = after;
    }
    Ok(())
}

/// A value as read, before interpolation.
enum Value {
    Literal(String),
    Expand(String),
}

/// The value at the start of `src`: it, the text after it, and how many line ends it took.
fn value(src: &str) -> Result<(Value, &str, usize), String> {
    let Some(quote) = src.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        let (line, rest) = src.split_once('\n').unwrap_or((src, ""));
        let line = line.split_once(" #").map_or(line, |(v, _)| v);
        let line = line.trim_end_matches(|c: char| c.is_whitespace());
        return Ok((Value::Expand(line.to_string()), rest, 1));
    };
    // Up to the quote not after a backslash; a backslash before the quote is dropped, any
    // other is kept with what follows (the escapes are read next, in double quotes only).
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in src.char_indices().skip(1) {
        if c == quote && !escaped {
            let lines = src[..i].matches('\n').count();
            let value = if quote == '"' {
                Value::Expand(unescape(&out))
            } else {
                Value::Literal(out)
            };
            return Ok((value, &src[i + 1..], lines));
        }
        if escaped && c != quote {
            out.push('\\');
        }
        escaped = !escaped && c == '\\';
        if !escaped {
            out.push(c);
        }
    }
    let first = src.lines().next().unwrap_or(src);
    Err(format!("unterminated quoted value {first}"))
}

/// The escapes of a double-quoted value, as Go's `strconv.UnquoteChar` reads them; `\$` is a
/// literal dollar (`$$` for the interpolation that follows); an unknown escape is kept.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&next) = chars.peek() else {
            out.push('\\');
            break;
        };
        let plain = match next {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(p) = plain {
            chars.next();
            out.push(p);
        } else if next == '$' {
            chars.next();
            out.push_str("$$");
        } else if next == '0' {
            // \0 then up to three octal digits, read as Go reads `\NNN`.
            chars.next();
            let digits: String = std::iter::from_fn(|| chars.next_if(|d| d.is_ascii_digit()))
                .take(3)
                .collect();
            match u8::from_str_radix(&digits, 8)
                .ok()
                .filter(|_| digits.len() == 3)
            {
                Some(b) => out.push(char::from(b)),
                None => {
                    out.push_str("\\0");
                    out.push_str(&digits);
                }
            }
        } else {
            out.push('\\');
        }
    }
    out
}

/// Interpolates a value: the process environment first, then what was read before.
fn expand(
    v: &str,
    environment: &BTreeMap<String, String>,
    values: &BTreeMap<String, String>,
) -> Result<String, String> {
    if !v.contains('$') {
        return Ok(v.to_string());
    }
    let mut lookup = values.clone();
    lookup.extend(environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    interpolate(v, &lookup)
}

/// Spaces within a line (not its end), as compose-go counts them.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, environment: &[(&str, &str)]) -> Result<BTreeMap<String, String>, String> {
        let environment = environment
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut values = BTreeMap::new();
        parse(text, ".env", &environment, &mut values).map(|()| values)
    }

    /// Each rule of docs.docker.com's "Syntax for environment files" (and compose-go's
    /// fixtures): the file, the variable, and the value docker compose gives it.
    #[test]
    fn each_rule_of_compose_env_files() {
        let env = [("OTHER", "from-env"), ("SHADOWED", "env-wins")];
        for (text, key, want) in [
            // Values, quoted or not.
            ("VAR=VAL", "VAR", "VAL"),
            ("VAR=\"VAL\"", "VAR", "VAL"),
            ("VAR='VAL'", "VAR", "VAL"),
            ("VAR=", "VAR", ""),
            ("VAR=''", "VAR", ""),
            ("VAR=\"\"", "VAR", ""),
            ("  VAR  =   spaced value  ", "VAR", "spaced value"),
            ("VAR=two words", "VAR", "two words"),
            ("VAR: yaml style", "VAR", "yaml style"),
            ("export VAR=exported", "VAR", "exported"),
            ("exported_name=x", "exported_name", "x"),
            ("\u{feff}VAR=after a BOM", "VAR", "after a BOM"),
            // Comments.
            ("# VAR=commented\nVAR=set", "VAR", "set"),
            ("VAR=VAL # comment", "VAR", "VAL"),
            ("VAR=VAL# not a comment", "VAR", "VAL# not a comment"),
            ("VAR=\"VAL # not a comment\"", "VAR", "VAL # not a comment"),
            ("VAR=\"VAL\" # comment", "VAR", "VAL"),
            ("VAR='VAL' # comment\nNEXT=1", "NEXT", "1"),
            // Single quotes: literal.
            ("VAR='$OTHER'", "VAR", "$OTHER"),
            ("VAR='${OTHER}'", "VAR", "${OTHER}"),
            ("VAR='Let\\'s go!'", "VAR", "Let's go!"),
            ("VAR='some\\tvalue'", "VAR", "some\\tvalue"),
            ("VAR='\\n'", "VAR", "\\n"),
            // Double quotes: escapes.
            (
                "VAR=\"{\\\"hello\\\": \\\"json\\\"}\"",
                "VAR",
                "{\"hello\": \"json\"}",
            ),
            ("VAR=\"some\\tvalue\"", "VAR", "some\tvalue"),
            ("VAR=\"a\\nb\\rc\"", "VAR", "a\nb\rc"),
            ("VAR=\"back\\\\slash\"", "VAR", "back\\slash"),
            ("VAR=\"cost \\$5\"", "VAR", "cost $5"),
            ("VAR=\"\\0101\"", "VAR", "A"),
            ("VAR=\"kept \\q\"", "VAR", "kept \\q"),
            // Unquoted: no escapes.
            ("VAR=some\\tvalue", "VAR", "some\\tvalue"),
            // Values over several lines, in quotes.
            ("VAR=\"first\nsecond\"\nNEXT=n", "VAR", "first\nsecond"),
            ("VAR='first line\nsecond line'\nNEXT=n", "NEXT", "n"),
            // Interpolation: unquoted and double-quoted, from the environment, then the
            // lines before; defaults and the rest of compose's forms.
            ("A=1\nVAR=${A}2", "VAR", "12"),
            ("A=1\nVAR=\"$A and ${A}\"", "VAR", "1 and 1"),
            ("A=1\nVAR='${A}'", "VAR", "${A}"),
            ("VAR=${OTHER}", "VAR", "from-env"),
            ("SHADOWED=file\nVAR=$SHADOWED", "VAR", "env-wins"),
            ("VAR=${UNSET:-default}", "VAR", "default"),
            ("VAR=\"${UNSET-dflt} x\"", "VAR", "dflt x"),
            ("VAR=${UNSET}", "VAR", ""),
            ("VAR=$$", "VAR", "$"),
            // A bare name takes the environment's value.
            ("OTHER", "OTHER", "from-env"),
            ("export OTHER\nVAR=1", "OTHER", "from-env"),
            // The last of two lines wins.
            ("VAR=1\nVAR=2", "VAR", "2"),
        ] {
            let got = read(text, &env).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(got.get(key).map(String::as_str), Some(want), "{text:?}");
        }
        // A bare name the environment lacks is left out.
        assert_eq!(read("MISSING\nVAR=1", &env).unwrap().len(), 1);
    }

    #[test]
    fn a_later_file_sees_what_earlier_ones_set() {
        let mut values = BTreeMap::new();
        parse("A=first", "a.env", &BTreeMap::new(), &mut values).unwrap();
        parse("B=${A}-second", "b.env", &BTreeMap::new(), &mut values).unwrap();
        assert_eq!(values["B"], "first-second");
    }

    #[test]
    fn bad_files_say_which_line() {
        for (text, says) in [
            (
                "A=1\nVAR=\"never closed\nB=2",
                ".env: line 2: unterminated quoted value",
            ),
            ("A B=1", ".env: line 1: the name \"A B\" contains a space"),
            ("\n\nA$=1", ".env: line 3: unexpected character '$'"),
            ("VAR=${UNSET:?must be set}", "must be set"),
        ] {
            let e = read(text, &[]).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
