//! `listing::` — a read command's rows printed the way the Docker CLI prints its lists, so
//! `--format`, `-q`, `--filter` and `--no-trunc` habits carry over. A command builds rows
//! whose keys are docker's template field names (`ID`, `Name`, `Replicas`, …, every value a
//! string as docker's formatters return them) and a view: its default table template, the
//! header of each field and the template `-q` prints. `listing::show` then does what docker's
//! `formatter.Context` does: `table …` templates aligned by a tab writer with docker's settings
//! (minimum width 10, padding 3, by display width), `json` as one object a line with its keys
//! sorted, any other text as a Go template run once per row.
//! The tab writer is the `tabwriter` crate's (a port of Go's).
//!
//! Go templates are read and run by the `gtmpl` crate (a port of Go's `text/template`), with
//! the functions docker/cli's `templates` package adds (`json`, `split`, `join`, `title`,
//! `lower`, `upper`, `pad`, `truncate`) and, for a table's header line, docker's header
//! variants of them, which return the header unchanged.

use std::collections::{BTreeMap, HashMap};

use gtmpl::{Context, Func, FuncError, Template, Value};
use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::{check_opts, Opt, Prim};
use super::{input_err, ScriptResult};

/// docker/cli's tab writer: `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`.
const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// A view's format after docker's `preFormat`: whether it is a table, and the template text.
fn final_format(format: &str, quiet: bool, view: &View) -> (bool, String) {
    let format = if format.is_empty() { "table" } else { format };
    let (table, text) = if format == "table" {
        if quiet {
            (false, view.quiet.clone())
        } else {
            // A view whose default is no table (a bare list of names) stays one.
            (
                view.table.starts_with("table"),
                strip_table(&view.table).to_string(),
            )
        }
    } else if format == "json" {
        (false, "{{json .}}".to_string())
    } else if let Some(rest) = format.strip_prefix("table") {
        (true, rest.to_string())
    } else {
        (false, format.to_string())
    };
    let text = text
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    (table, text)
}

fn strip_table(t: &str) -> &str {
    t.strip_prefix("table").unwrap_or(t)
}

/// What a command tells `show` about its rows.
struct View {
    /// The default format, `table {{.ID}}\t{{.Name}}…`.
    table: String,
    /// What `-q` prints, `{{.ID}}`.
    quiet: String,
    /// Each field's header (`CurrentState` → `CURRENT STATE`).
    headers: Map,
}

impl View {
    fn of(map: &Map) -> ScriptResult<View> {
        let text = |k: &str| -> ScriptResult<String> {
            map.get(k)
                .and_then(|v| v.clone().into_string().ok())
                .ok_or_else(|| super::script_err(format!("listing: the view has no {k}")))
        };
        Ok(View {
            table: text("table")?,
            quiet: text("quiet")?,
            headers: map
                .get("headers")
                .and_then(|h| h.clone().try_cast::<Map>())
                .unwrap_or_default(),
        })
    }
}

/// A script value as a template value: maps become objects, so `.Missing` is an error as in
/// docker's templates (a field its formatter lacks).
fn value_of(d: &Dynamic) -> Value {
    if let Ok(s) = d.clone().into_string() {
        Value::String(s)
    } else if let Ok(i) = d.as_int() {
        Value::from(i)
    } else if let Ok(f) = d.as_float() {
        Value::from(f)
    } else if let Ok(b) = d.as_bool() {
        Value::Bool(b)
    } else if d.is_unit() {
        Value::Nil
    } else if let Some(a) = d.clone().try_cast::<Array>() {
        Value::Array(a.iter().map(value_of).collect())
    } else if let Some(m) = d.clone().try_cast::<Map>() {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_string(), value_of(v)))
                .collect(),
        )
    } else {
        Value::String(d.to_string())
    }
}

/// A value as Go's `encoding/json` writes it: object keys sorted; `escape_html` as
/// `json.Marshal` (which docker's row objects go through) escapes `<`, `>`, `&`.
fn go_json(v: &Value, escape_html: bool, out: &mut String) {
    match v {
        Value::Nil | Value::NoValue | Value::Function(_) => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => go_string(s, escape_html, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(x, escape_html, out);
            }
            out.push(']');
        }
        Value::Object(m) | Value::Map(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            out.push('{');
            for (i, (k, x)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(k, escape_html, out);
                out.push(':');
                go_json(x, escape_html, out);
            }
            out.push('}');
        }
    }
}

fn go_string(s: &str, escape_html: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if escape_html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn arg_str(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::NoValue) | Some(Value::Nil) => Ok(String::new()),
        Some(v) => Ok(v.to_string()),
        None => Err(FuncError::AtLeastXArgs(name.to_string(), i + 1)),
    }
}

fn arg_int(args: &[Value], i: usize, name: &str) -> Result<usize, FuncError> {
    match args.get(i) {
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::ExactlyXArgs(name.to_string(), 3)),
    }
}

// docker/cli's `templates` functions.
fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args
        .first()
        .ok_or_else(|| FuncError::ExactlyXArgs("json".into(), 1))?;
    let mut out = String::new();
    // A row stands for docker's formatter context, whose MarshalJSON goes through json.Marshal.
    go_json(v, matches!(v, Value::Object(_)), &mut out);
    Ok(Value::String(out))
}
fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    let (s, sep) = (arg_str(args, 0, "split")?, arg_str(args, 1, "split")?);
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}
fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = arg_str(args, 1, "join")?;
    match args.first() {
        Some(Value::Array(a)) => Ok(Value::String(
            a.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}
fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "title")?;
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    Ok(Value::String(out))
}
fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "lower")?.to_lowercase()))
}
fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "upper")?.to_uppercase()))
}
fn f_pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "pad")?;
    let (before, after) = (arg_int(args, 1, "pad")?, arg_int(args, 2, "pad")?);
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}
fn f_truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "truncate")?;
    let n = arg_int(args, 1, "truncate")?;
    if s.len() < n {
        return Ok(Value::String(s));
    }
    // docker cuts bytes; a cut inside a character keeps the characters before it.
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(Value::String(s[..end].to_string()))
}
/// The header variants: the header stays as it is (docker's `HeaderFunctions`; `pad` is not
/// among them, so a padded column's header is padded too).
fn h_same(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "header")?))
}

fn template(text: &str, header: bool) -> ScriptResult<Template> {
    let mut t = Template::default();
    let funcs: [(&str, Func); 8] = if header {
        [
            ("json", h_same),
            ("split", h_same),
            ("join", h_same),
            ("title", h_same),
            ("lower", h_same),
            ("upper", h_same),
            ("pad", f_pad),
            ("truncate", h_same),
        ]
    } else {
        [
            ("json", f_json),
            ("split", f_split),
            ("join", f_join),
            ("title", f_title),
            ("lower", f_lower),
            ("upper", f_upper),
            ("pad", f_pad),
            ("truncate", f_truncate),
        ]
    };
    t.add_funcs(&funcs);
    t.parse(text).map_err(|e| {
        input_err(format!(
            "template parsing error: {}",
            one_line(&e.to_string())
        ))
    })?;
    Ok(t)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Go's tab writer as docker/cli configures it (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`),
/// through the `tabwriter` crate (a port of Go's), by display width: Go's column is its widest
/// cell plus the padding, at least the minimum width, which is the crate's widest cell at least
/// (minimum − padding), plus the padding.
pub fn tabwrite(text: &str) -> String {
    use std::io::Write;
    let mut tw = tabwriter::TabWriter::new(Vec::new())
        .minwidth(MIN_WIDTH - PADDING)
        .padding(PADDING);
    // Writing into memory cannot fail.
    let _ = tw.write_all(text.as_bytes());
    let _ = tw.flush();
    String::from_utf8_lossy(&tw.into_inner().unwrap_or_default()).into_owned()
}

fn run(t: &Template, ctx: &Value) -> ScriptResult<String> {
    t.render(&Context::from(ctx.clone())).map_err(|e| {
        let why = match e {
            // Not the row itself, which the crate's message prints whole.
            gtmpl::error::ExecError::NoFiledFor(field, _) => {
                format!("can't evaluate field {field}")
            }
            e => one_line(&e.to_string()),
        };
        input_err(format!("template parsing error: {why}"))
    })
}

/// The rows as docker prints them (see the top of the file); every line ends in a newline.
pub fn render(rows: &Array, view: &Map, format: &str, quiet: bool) -> ScriptResult<String> {
    let view = View::of(view)?;
    let (table, text) = final_format(format, quiet, &view);
    let t = template(&text, false)?;
    let names: HashMap<String, Value> = view
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let names = Value::Object(names);
    if rows.is_empty() {
        // Run once on the headers, so that a field the rows lack is refused even with no row.
        run(&t, &names)?;
    }
    let mut body = String::new();
    for row in rows {
        body.push_str(&run(&t, &value_of(row))?);
        body.push('\n');
    }
    if !table {
        return Ok(body);
    }
    let header = template(&text, true)?;
    let head = run(&header, &names)?;
    Ok(tabwrite(&format!("{head}\n{body}")))
}

/// The filters given with `-f KEY=VALUE`, checked against the keys a command knows: a map
/// from each key to its values, in the order given.
pub fn filters(given: &Array, keys: &Array) -> ScriptResult<Map> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut out = Map::new();
    for f in given {
        let f = f.to_string();
        let Some((k, v)) = f.split_once('=') else {
            return Err(input_err(format!(
                "bad format of filter (expected name=value): {f}"
            )));
        };
        let k = k.trim().to_lowercase();
        if !keys.contains(&k) {
            return Err(input_err(format!(
                "invalid filter '{k}': this command filters on {}",
                keys.join(", ")
            )));
        }
        let entry = out
            .entry(k.into())
            .or_insert_with(|| Dynamic::from_array(Array::new()));
        if let Some(mut a) = entry.write_lock::<Array>() {
            a.push(Dynamic::from(v.to_string()));
        }
    }
    Ok(out)
}

/// Whether a row passes the filters: each key's values are alternatives, every key must
/// match. `how` maps a key to the row field it looks at and the rule, `"prefix:Name"`,
/// `"exact:ID"`, `"label:Labels"` (a `key` or `key=value` among the row's labels map).
pub fn passes(row: &Map, filters: &Map, how: &Map) -> bool {
    filters.iter().all(|(key, values)| {
        let values = values.clone().try_cast::<Array>().unwrap_or_default();
        let rule = how
            .get(key.as_str())
            .map(|r| r.to_string())
            .unwrap_or_default();
        let (kind, field) = rule.split_once(':').unwrap_or(("exact", rule.as_str()));
        let cell = row.get(field).cloned().unwrap_or(Dynamic::UNIT);
        values.iter().any(|v| {
            let v = v.to_string();
            match kind {
                "prefix" => cell.to_string().starts_with(&v),
                "substring" => cell.to_string().contains(&v),
                "label" => {
                    let labels = cell.clone().try_cast::<Map>().unwrap_or_default();
                    match v.split_once('=') {
                        Some((k, want)) => labels.get(k).is_some_and(|x| x.to_string() == want),
                        None => labels.contains_key(v.as_str()),
                    }
                }
                _ => cell.to_string() == v,
            }
        })
    })
}

/// Natural order as docker sorts its lists (`sortorder.NaturalLess`): runs of digits compare
/// as numbers, the rest byte by byte; -1, 0 or 1.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < a.len() && a[i] == b'0' {
                i += 1;
            }
            while j < b.len() && b[j] == b'0' {
                j += 1;
            }
            let (ni, nj) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let order = (i - ni)
                .cmp(&(j - nj))
                .then_with(|| a[ni..i].cmp(&b[nj..j]))
                .then_with(|| (ni - si).cmp(&(nj - sj)));
            if order != Ordering::Equal {
                return order;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

const SHOW_OPTS: &[Opt] = &[
    (
        "format",
        "`--format`: `table`, `table TEMPLATE`, `json` or a Go template; () or empty: the view's table",
    ),
    ("quiet", "true: `-q`, the view's quiet template instead of its table"),
];

/// Registers the `listing::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    let prim = Prim::new("listing::render(rows: array, view: map, opts: map) -> string")
        .doc(
            "Rows (maps keyed by docker's template field names) as the Docker CLI prints a list: \
             `view` is #{table: \"table {{.ID}}\\t{{.Name}}\", quiet: \"{{.ID}}\", headers: \
             #{ID: \"ID\", Name: \"NAME\"}}; `opts.format` a `--format` value (`table …`, `json`, \
             a Go template with docker's functions), `opts.quiet` `-q`. Every line ends in a \
             newline. A bad template is a one-line error (exit 2).",
        )
        .opts(SHOW_OPTS);
    prim.set_in(
        &mut m,
        |rows: Array, view: Map, opts: Map| -> ScriptResult<String> {
            check_opts("listing::render", &opts, SHOW_OPTS)?;
            let format = opts
                .get("format")
                .filter(|f| !f.is_unit())
                .map(|f| f.to_string())
                .unwrap_or_default();
            let quiet = opts
                .get("quiet")
                .and_then(|q| q.as_bool().ok())
                .unwrap_or(false);
            render(&rows, &view, &format, quiet)
        },
    );
    let prim = Prim::new("listing::filters(given: array, keys: array) -> map").doc(
        "`-f KEY=VALUE` arguments checked against the keys a command filters on: #{key: \
         [values…]}. A filter without `=` or with another key is a one-line error (exit 2).",
    );
    prim.set_in(&mut m, |given: Array, keys: Array| filters(&given, &keys));
    let prim = Prim::new("listing::keep(rows: array, filters: map, how: map) -> array").doc(
        "The rows passing `filters` (from `listing::filters`), for lists filtered here rather \
         than by the engine: `how` maps each key to `\"prefix:Field\"`, `\"exact:Field\"`, \
         `\"substring:Field\"` or `\"label:Field\"` (a `key` or `key=value` of the row's map \
         `Field`). A key's values are alternatives; every key must match.",
    );
    prim.set_in(
        &mut m,
        |rows: Array, filters: Map, how: Map| -> ScriptResult<Array> {
            Ok(rows
                .into_iter()
                .filter(|r| {
                    r.clone()
                        .try_cast::<Map>()
                        .is_some_and(|r| passes(&r, &filters, &how))
                })
                .collect())
        },
    );
    let prim = Prim::new("listing::natural_cmp(a: string, b: string) -> int").doc(
        "-1, 0 or 1: the order docker sorts names in (digits as numbers: `web.2` before \
         `web.10`).",
    );
    prim.set_in(&mut m, |a: &str, b: &str| -> ScriptResult<i64> {
        Ok(natural_cmp(a, b) as i64)
    });
    engine.register_static_module("listing", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_writer_pads_as_docker() {
        assert_eq!(
            tabwrite("NAME\tSERVICES\nhabx\t2\n"),
            "NAME      SERVICES\nhabx      2\n"
        );
        assert_eq!(
            tabwrite("ID\tPORTS\nabcdefghijkl\t\n"),
            "ID             PORTS\nabcdefghijkl   \n"
        );
        // Two columns wide each: aligned by display width, not by characters.
        assert_eq!(
            tabwrite("日本語のスタック\tx\nab\ty\n"),
            "日本語のスタック   x\nab                 y\n"
        );
    }

    #[test]
    fn json_is_gos() {
        let mut m = HashMap::new();
        m.insert("Ports".to_string(), Value::from("*:1->2/tcp"));
        m.insert("ID".to_string(), Value::from("x"));
        let mut out = String::new();
        go_json(&Value::Object(m), true, &mut out);
        assert_eq!(out, r#"{"ID":"x","Ports":"*:1-\u003e2/tcp"}"#);
    }
}
