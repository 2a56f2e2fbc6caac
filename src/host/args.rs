//! `args::` — a command's arguments parsed from its usage line, so that a script declares its
//! arguments once (`//! usage: logs <nodeId> [-f|--follow] [-n|--tail <n>]`) and help, completion
//! and parsing agree. The grammar, one token at a time:
//! - `<name>` a required argument, `[<name>]` an optional one, `<name>...` / `[<name>...]` the
//!   rest (at least one / any number), taken as written once it began (a command line:
//!   `shell <nodeId> [<cmd>...]`); `[<name>]...` any number of values among the options
//!   (`logs [<nodeId>]... [-f]`: `logs web -f api` is two ids and a flag); text around the
//!   brackets (`[<nodeId>:]<src>...`) is ignored, the last `<…>` names it;
//! - `[-f]`, `[--hard]`, `[-f|--follow]` a flag (false unless given), `--force` a flag that
//!   must be given;
//! - `[--tail <n>]`, `[-n|--tail <n>]` an option with a value (() unless given);
//!   `[-c|--compose-file <file>]...` one that may be repeated (an array, [] unless given);
//!   `--tail=5` is the same as `--tail 5`;
//! - `[watch]`, `watch` a literal word: a flag that is given by writing the word.
//!
//! A `--` ends the options, as getopt's does: every later word is an argument as written
//! (`jobs add --every 1h nightly -- stack ls --json`), and the `--` itself is dropped.
//!
//! The result is a map from each name (`nodeId`, `follow`, `tail`, `show_secrets`) to its value.

use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::Prim;
use super::{usage_err, ScriptResult};

/// One element of a usage line.
#[derive(Debug, Clone, PartialEq)]
enum Spec {
    Positional {
        name: String,
        required: bool,
        rest: bool,
        /// A rest that takes every later word as written (`[<cmd>...]`), options included;
        /// `[<id>]...` takes values only, options still read anywhere.
        swallows: bool,
    },
    Flag {
        names: Vec<String>,
        key: String,
        required: bool,
    },
    Option {
        names: Vec<String>,
        key: String,
        repeat: bool,
    },
    Word {
        word: String,
        required: bool,
    },
}

/// The key a set of option names is stored under: the longest name without dashes.
fn key_of(names: &[String]) -> String {
    let longest = names
        .iter()
        .max_by_key(|n| n.len())
        .cloned()
        .unwrap_or_default();
    longest.trim_start_matches('-').replace('-', "_")
}

/// The last `<name>` in a token.
fn placeholder(token: &str) -> Option<String> {
    let end = token.rfind('>')?;
    let start = token[..end].rfind('<')?;
    Some(token[start + 1..end].to_string())
}

/// Reads a usage line (its first word, the command's name, is skipped).
fn specs(usage: &str) -> Vec<Spec> {
    let mut out = Vec::new();
    let mut tokens = usage.split_whitespace().skip(1).peekable();
    while let Some(tok) = tokens.next() {
        // `[--tail <n>]` spans two tokens.
        let mut tok = tok.to_string();
        if tok.starts_with('[') && !tok.contains(']') {
            for next in tokens.by_ref() {
                tok.push(' ');
                tok.push_str(next);
                if next.contains(']') {
                    break;
                }
            }
        }
        let optional = tok.starts_with('[') && (tok.ends_with(']') || tok.ends_with("]..."));
        let inner = if optional {
            tok.trim_start_matches('[')
                .trim_end_matches("...")
                .trim_end_matches(']')
        } else {
            tok.as_str()
        };
        let rest = tok.contains("...");
        let mut words = inner.split_whitespace();
        let head = words.next().unwrap_or_default();
        if head.starts_with('-') {
            let names: Vec<String> = head.split('|').map(str::to_string).collect();
            let key = key_of(&names);
            if words.next().is_some() {
                out.push(Spec::Option {
                    names,
                    key,
                    repeat: tok.ends_with("]..."),
                });
            } else {
                out.push(Spec::Flag {
                    names,
                    key,
                    required: !optional,
                });
            }
        } else if let Some(name) = placeholder(&tok) {
            // A placeholder inside an optional prefix (`[<nodeId>:]<src>`) is not optional.
            let required = !(optional && tok.starts_with("[<") && !tok.contains("]<"));
            let swallows = rest && !(optional && tok.ends_with("]...") && !inner.contains("..."));
            out.push(Spec::Positional {
                name,
                required,
                rest,
                swallows,
            });
        } else if !inner.is_empty() && !inner.contains('|') {
            out.push(Spec::Word {
                word: inner.to_string(),
                required: !optional,
            });
        }
    }
    out
}

/// Parses `args` against a usage line; the error is one sentence for the user.
pub fn parse(usage: &str, args: &[String]) -> Result<Map, String> {
    let specs = specs(usage);
    // Each element of the usage line is stored under its own key: a line naming one twice
    // (`[--x <a>]... [--x <b>]`, or `<x>` beside `--x`) is the script's mistake, said as such.
    let mut keys = std::collections::HashSet::new();
    for spec in &specs {
        let key = match spec {
            Spec::Flag { key, .. } | Spec::Option { key, .. } => key.clone(),
            Spec::Word { word, .. } => word.replace('-', "_"),
            Spec::Positional { name, .. } => name.clone(),
        };
        if !keys.insert(key.clone()) {
            return Err(format!("the usage line \"{usage}\" names \"{key}\" twice"));
        }
    }
    let mut out = Map::new();
    let mut positionals = Vec::new();
    for spec in &specs {
        match spec {
            Spec::Flag { key, .. } => {
                out.insert(key.into(), false.into());
            }
            Spec::Option { key, repeat, .. } => {
                let empty = if *repeat {
                    Array::new().into()
                } else {
                    Dynamic::UNIT
                };
                out.insert(key.into(), empty);
            }
            Spec::Word { word, .. } => {
                out.insert(word.replace('-', "_").into(), false.into());
            }
            Spec::Positional { .. } => positionals.push(spec.clone()),
        }
    }
    // Once a `<cmd>...` rest has its first value, every later word is one of its values.
    let rest_index = positionals
        .iter()
        .position(|p| matches!(p, Spec::Positional { swallows: true, .. }));
    let mut given = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--" {
            given.extend(args[i + 1..].iter().cloned());
            break;
        }
        // `--name=value` is `--name value`.
        let (name, inline) = match args[i].split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (args[i].clone(), None),
        };
        let a = &name;
        let named = specs.iter().find(|s| match s {
            Spec::Flag { names, .. } | Spec::Option { names, .. } => names.contains(a),
            Spec::Word { word, .. } => word == a && given.is_empty(),
            Spec::Positional { .. } => false,
        });
        // A rest that comes first starts with its first value, so options may precede it.
        let in_rest = rest_index.is_some_and(|r| given.len() >= r.max(1));
        if inline.is_some() && !in_rest && !matches!(named, Some(Spec::Option { .. })) {
            return Err(format!("unknown argument \"{}\"", args[i]));
        }
        match named {
            Some(Spec::Flag { key, .. }) if !in_rest => {
                out.insert(key.into(), true.into());
            }
            Some(Spec::Word { word, .. }) if !in_rest => {
                out.insert(word.replace('-', "_").into(), true.into());
            }
            Some(Spec::Option { key, repeat, .. }) if !in_rest => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("{a} needs a value"))?
                    }
                };
                if *repeat {
                    if let Some(list) = out.get_mut(key.as_str()) {
                        list.write_lock::<Array>()
                            .expect("a repeated option holds an array")
                            .push(value.into());
                    }
                } else {
                    out.insert(key.into(), value.into());
                }
            }
            _ if a.starts_with('-') && a.len() > 1 && !in_rest => {
                return Err(format!("unknown argument \"{a}\""));
            }
            _ => given.push(args[i].clone()),
        }
        i += 1;
    }
    assign(&positionals, given, &mut out)?;
    for spec in &specs {
        match spec {
            Spec::Flag {
                names,
                key,
                required: true,
            } if out
                .get(key.as_str())
                .is_some_and(|v| !v.as_bool().unwrap_or(false)) =>
            {
                return Err(format!("{} must be given", names.join(" or ")));
            }
            Spec::Word {
                word,
                required: true,
            } if out
                .get(word.as_str())
                .is_some_and(|v| !v.as_bool().unwrap_or(false)) =>
            {
                return Err(format!("{word} must be given"));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Gives the positional arguments their values, a rest argument taking what the others leave.
fn assign(positionals: &[Spec], given: Vec<String>, out: &mut Map) -> Result<(), String> {
    let fixed_after = |from: usize| {
        positionals[from..]
            .iter()
            .filter(|p| {
                matches!(
                    p,
                    Spec::Positional {
                        required: true,
                        rest: false,
                        ..
                    }
                )
            })
            .count()
    };
    let mut given = given.into_iter().peekable();
    let mut left = given.len();
    for (i, p) in positionals.iter().enumerate() {
        let Spec::Positional {
            name,
            required,
            rest,
            ..
        } = p
        else {
            continue;
        };
        if *rest {
            let take = left.saturating_sub(fixed_after(i + 1));
            if *required && take == 0 {
                return Err(format!("<{name}> is missing"));
            }
            let values: Array = given.by_ref().take(take).map(Dynamic::from).collect();
            left -= values.len();
            out.insert(name.into(), values.into());
        } else if left > fixed_after(i + 1) || (*required && left > 0) {
            out.insert(
                name.into(),
                given.next().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
            );
            left -= 1;
        } else if *required {
            return Err(format!("<{name}> is missing"));
        } else {
            out.insert(name.into(), Dynamic::UNIT);
        }
    }
    if let Some(extra) = given.next() {
        return Err(format!("unexpected argument \"{extra}\""));
    }
    Ok(())
}

/// Registers the `args::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    let prim = Prim::new("args::parse(usage: string, args: array) -> map").doc(
        "Reads a command's arguments against its usage line (`<name>`, `[<opt>]`, `[-f]`, \
         `[--tail <n>]`, `<files>...`) into a map by name; bad input is a usage error (exit 2) \
         with the usage line.",
    );
    prim.set_in(&mut m, |usage: &str, args: Array| -> ScriptResult<Map> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse(usage, &args).map_err(usage_err)
    });
    engine.register_static_module("args", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(usage: &str, args: &[&str]) -> Result<Map, String> {
        parse(
            usage,
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    fn get(m: &Map, k: &str) -> String {
        m.get(k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "missing".into())
    }

    #[test]
    fn a_double_dash_ends_the_options_and_is_dropped() {
        let u = "add [--every <duration>] <name> [<command>...]";
        let m = p(
            u,
            &["--every", "1h", "n", "--", "stack", "--every", "--", "x"],
        )
        .unwrap();
        assert_eq!(get(&m, "command"), r#"["stack", "--every", "--", "x"]"#);
        let m = p(u, &["--", "--every"]).unwrap();
        assert_eq!(get(&m, "name"), "--every");
    }

    #[test]
    fn repeated_values_among_options_leave_the_options_read() {
        let u = "logs [<nodeId>]... [-f|--follow] [-n|--tail <n>]";
        let m = p(u, &["web", "-f", "api", "--tail", "3"]).unwrap();
        assert_eq!(get(&m, "nodeId"), r#"["web", "api"]"#);
        assert_eq!(
            (get(&m, "follow"), get(&m, "tail")),
            ("true".into(), "3".into())
        );
        assert_eq!(get(&p(u, &[]).unwrap(), "nodeId"), "[]");
        assert!(p(u, &["web", "--bogus"]).is_err());
        // A rest inside the brackets is still taken as written.
        let m = p("shell <nodeId> [<cmd>...]", &["1", "ls", "-l"]).unwrap();
        assert_eq!(get(&m, "cmd"), r#"["ls", "-l"]"#);
    }

    #[test]
    fn options_flags_and_positionals() {
        let u = "logs <nodeId> [-f|--follow] [-n|--tail <n>] [--since <seconds>]";
        let m = p(u, &["1", "-f", "--tail", "5"]).unwrap();
        assert_eq!(get(&m, "nodeId"), "1");
        assert_eq!(get(&m, "follow"), "true");
        assert_eq!(get(&m, "tail"), "5");
        assert_eq!(get(&m, "since"), "");
        assert!(p(u, &[]).unwrap_err().contains("<nodeId> is missing"));
        assert!(p(u, &["1", "--tail"])
            .unwrap_err()
            .contains("--tail needs a value"));
        assert!(p(u, &["1", "--bogus"])
            .unwrap_err()
            .contains("unknown argument \"--bogus\""));
        assert!(p(u, &["1", "2"])
            .unwrap_err()
            .contains("unexpected argument \"2\""));
    }

    #[test]
    fn words_and_required_flags() {
        assert_eq!(
            get(&p("status [watch]", &["watch"]).unwrap(), "watch"),
            "true"
        );
        assert_eq!(get(&p("status [watch]", &[]).unwrap(), "watch"), "false");
        assert!(p("status [watch]", &["wat"]).is_err());
        assert!(p("cleanVolumes --force", &[])
            .unwrap_err()
            .contains("--force must be given"));
        assert_eq!(
            get(
                &p("config [--show-secrets]", &["--show-secrets"]).unwrap(),
                "show_secrets"
            ),
            "true"
        );
    }

    #[test]
    fn rest_arguments() {
        let u = "cp [<nodeId>:]<src>... [<nodeId>:]<dest>";
        let m = p(u, &["a", "b", "1:/x"]).unwrap();
        assert_eq!(get(&m, "src"), "[\"a\", \"b\"]");
        assert_eq!(get(&m, "dest"), "1:/x");
        assert!(p(u, &["a"]).is_err());
        let shell = "shell <nodeId> [<cmd>...]";
        let m = p(shell, &["1", "ls", "-la", "--tail"]).unwrap();
        assert_eq!(get(&m, "cmd"), "[\"ls\", \"-la\", \"--tail\"]");
        assert_eq!(get(&p(shell, &["1"]).unwrap(), "cmd"), "[]");
        let scale = "scale [-d|--detach] [--timeout <seconds>] [--no-wait] <service>=<n>...";
        let m = p(scale, &["--no-wait", "-d", "--timeout", "5", "web=2", "-x"]).unwrap();
        assert_eq!(get(&m, "n"), "[\"web=2\", \"-x\"]");
        assert_eq!(
            (get(&m, "no_wait"), get(&m, "detach")),
            ("true".into(), "true".into())
        );
        let m = p("benchmark [<count>]", &[]).unwrap();
        assert_eq!(get(&m, "count"), "");
    }

    #[test]
    fn a_usage_line_naming_a_key_twice_is_an_error_not_a_panic() {
        // Found by fuzzing (args_parse): the second element overwrote the first's array.
        let e = p("x [--a <v>]... [--a <w>]", &["--a", "1"]).unwrap_err();
        assert_eq!(
            e,
            "the usage line \"x [--a <v>]... [--a <w>]\" names \"a\" twice"
        );
        assert!(p("x <a> [--a <v>]", &["1"]).is_err());
    }

    #[test]
    fn repeated_options_and_inline_values() {
        let u = "deploy [-c|--compose-file <file>]... [--resolve-image <mode>] [--prune] [<name>]";
        let m = p(
            u,
            &[
                "-c",
                "a.yml",
                "--compose-file=b.yml",
                "--resolve-image=never",
                "st",
            ],
        )
        .unwrap();
        assert_eq!(get(&m, "compose_file"), "[\"a.yml\", \"b.yml\"]");
        assert_eq!(get(&m, "resolve_image"), "never");
        assert_eq!(get(&m, "name"), "st");
        let m = p(u, &[]).unwrap();
        assert_eq!(get(&m, "compose_file"), "[]");
        assert_eq!(get(&m, "name"), "");
        assert!(p(u, &["--prune=yes"])
            .unwrap_err()
            .contains("unknown argument \"--prune=yes\""));
        assert!(p(u, &["-c"]).unwrap_err().contains("-c needs a value"));
    }
}
