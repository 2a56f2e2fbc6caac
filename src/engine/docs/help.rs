//! `help <topic>`: a module or type (`help docker`, `help Engine`), a function or method
//! (`help docker::connect`, `help e.deploy` with `e` a variable of the session,
//! `help Engine.deploy`), a family or command (`help stack`, `help stack status`), wrapped to
//! the terminal's width.

use std::collections::HashMap;

use super::{display_name, distance, render, render_section, wrap, Docs, SECTIONS};
use crate::engine::catalog::{usage_line, wrap_usage, CommandDoc};
use crate::engine::{Catalog, CliError, Family};

/// The help of a topic; `types` maps the session's variables to their types (`e` → `Engine`).
pub fn help(
    catalog: &Catalog,
    docs: &Docs,
    topic: &[String],
    types: &HashMap<String, String>,
    width: usize,
) -> Result<String, CliError> {
    let first = topic.first().map(String::as_str).unwrap_or("");
    let mut parts: Vec<String> = Vec::new();
    // A family, and with a second word one of its commands.
    if let Some(family) = catalog.family(first) {
        match topic.get(1) {
            None => parts.push(format!(
                "{} ({}): {}\n\n{}",
                family.short_name(),
                family.name,
                wrap(&family.doc.help, width, ""),
                family_listing(catalog, family, first, width)
            )),
            Some(cmd) => match catalog.command(&family.name, cmd) {
                Some((name, doc)) => {
                    parts.push(command_help(&family.prefix_as(first), &name, &doc, width))
                }
                None => {
                    return Err(CliError::usage(
                        format!(
                            "{} has no command {cmd:?}; see help {first}",
                            family.short_name()
                        ),
                        None,
                    ))
                }
            },
        }
    } else if let Some((name, doc)) = catalog.command("", first) {
        parts.push(command_help("wsm", &name, &doc, width));
    }
    if topic.len() == 1 {
        // A variable of the session: its type's methods (`help e`).
        let section_name = types.get(first).map(String::as_str).unwrap_or(first);
        if let Some(section) = render_section(docs, section_name, width) {
            parts.push(section);
        }
        let key = key_for(first, types);
        if let Some(doc) = docs.lookup(&key) {
            parts.push(render(doc, width));
        } else if let Some(method) = key.strip_prefix("Stack.") {
            // A stack handle's methods are its families' commands.
            let cmd = method.replace('_', "-");
            for family in catalog.families().iter().filter(|f| f.takes_stack()) {
                let found = catalog
                    .command(&family.name, &cmd)
                    .or_else(|| catalog.command(&family.name, method));
                if let Some((name, doc)) = found {
                    parts.push(command_help(&family.prefix(), &name, &doc, width));
                }
            }
        }
    }
    if parts.is_empty() {
        return Err(CliError::usage(
            no_help(catalog, docs, first),
            Some("help [<topic>]".into()),
        ));
    }
    Ok(parts.join("\n\n"))
}

/// A family's commands, each usage line followed by its help wrapped to `width`; `typed` is
/// the name the family was asked for by (`stack`).
pub fn family_listing(catalog: &Catalog, family: &Family, typed: &str, width: usize) -> String {
    let mut out = String::from("Commands:");
    for (name, doc) in catalog.commands(&family.name) {
        out.push_str(&format!(
            "\n  {}\n      {}",
            wrap(doc.usage_or(name), width.saturating_sub(2), "      "),
            wrap(
                &format!("{}{}", doc.help, doc.also()),
                width.saturating_sub(6),
                "      "
            )
        ));
    }
    out.push_str(&format!(
        "\n\nUsage: {} <command> [args…]",
        family.prefix_as(typed)
    ));
    out
}

/// The doc key a topic names: `e.deploy` with `e` an `Engine` → `Engine.deploy`.
fn key_for(topic: &str, types: &HashMap<String, String>) -> String {
    match topic.split_once('.') {
        Some((var, method)) if !topic.contains("::") => {
            let ty = types.get(var).map(String::as_str).unwrap_or(var);
            format!("{ty}.{}", method.trim_end_matches("()"))
        }
        _ => topic.trim_end_matches("()").to_string(),
    }
}

/// A command's help: its usage line (wrapped, later lines indented) and its text, to `width`.
pub fn command_help(prefix: &str, name: &str, doc: &CommandDoc, width: usize) -> String {
    let mut out = format!(
        "{}\n  {}",
        wrap_usage(
            &format!("usage: {}", usage_line(prefix, name, doc)),
            width,
            "",
            "      "
        ),
        wrap(&doc.help, width.saturating_sub(2), "  ")
    );
    if !doc.aliases.is_empty() {
        out.push_str(&format!("\n  also: {}", doc.aliases.join(", ")));
    }
    out
}

/// "no help for X", with the closest topics.
fn no_help(catalog: &Catalog, docs: &Docs, topic: &str) -> String {
    let short = topic.rsplit(['.', ':']).next().unwrap_or(topic);
    let mut topics: Vec<String> = docs.iter().map(|d| display_name(&d.name)).collect();
    topics.extend(SECTIONS.iter().map(|(n, _)| n.to_string()));
    topics.extend(
        catalog
            .families()
            .iter()
            .map(|f| f.short_name().to_string()),
    );
    topics.extend(catalog.commands("").keys().cloned());
    let mut close: Vec<(usize, String)> = topics
        .into_iter()
        .map(|t| {
            let d = distance(t.rsplit(['.', ':']).next().unwrap_or(&t), short);
            (d, t)
        })
        .filter(|(d, _)| *d <= 2.max(short.len() / 3))
        .collect();
    close.sort();
    close.dedup();
    if close.is_empty() {
        return format!("no help for {topic:?}; `help` lists the modules and families");
    }
    let names: Vec<String> = close.into_iter().take(4).map(|(_, t)| t).collect();
    format!("no help for {topic:?}; did you mean {}?", names.join(", "))
}
