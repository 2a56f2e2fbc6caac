//! The command catalog: every family (`scripts/<family>/`, described by an optional
//! `_family.rhai`) and every command on the search path, with what each script declares in its
//! leading `//!` lines (help, usage, aliases, application, completers). It is read once per
//! process and kept; the command line, the REPL, help, completion and `wsm(…)` look commands up
//! here, and every usage line is rendered by [`usage_line`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::search::SearchPath;

/// What a script declares about itself in its leading `//!` lines.
#[derive(Debug, Clone, Default)]
pub struct CommandDoc {
    /// `usage: …` — the command's arguments, as its usage line shows them.
    pub usage: String,
    /// The other lines, joined: one sentence of help.
    pub help: String,
    /// `alias: …` — other names of the command (or of the family).
    pub aliases: Vec<String>,
    /// `option: -s <stackName> …` (families only) — the family's commands act on a stack.
    pub stack_option: Option<String>,
    /// `complete <placeholder>: <module>::<function>` — where the REPL gets candidates for an
    /// argument the usage line writes as `<placeholder>`.
    pub completers: BTreeMap<String, String>,
    /// `application: <name>` — the command works on stacks of that application only; the
    /// script gets it as `APPLICATION` (and refuses other stacks), help groups it under it.
    pub application: Option<String>,
}

/// Reads a script's leading `//!` lines.
pub fn command_doc(text: &str) -> CommandDoc {
    let mut doc = CommandDoc::default();
    let mut help = Vec::new();
    for line in text.lines() {
        let Some(l) = line.strip_prefix("//!") else {
            break;
        };
        let l = l.trim();
        if let Some(u) = l.strip_prefix("usage:") {
            doc.usage = u.trim().to_string();
        } else if let Some(a) = l.strip_prefix("application:") {
            doc.application = Some(a.trim().to_string()).filter(|a| !a.is_empty());
        } else if let Some(a) = l.strip_prefix("alias:") {
            doc.aliases.extend(a.split_whitespace().map(str::to_string));
        } else if let Some(o) = l.strip_prefix("option: -s") {
            doc.stack_option = Some(o.trim().to_string());
        } else if let Some((placeholder, f)) = l
            .strip_prefix("complete ")
            .and_then(|c| c.split_once(':').filter(|(p, _)| p.starts_with('<')))
        {
            doc.completers
                .insert(placeholder.trim().to_string(), f.trim().to_string());
        } else if !l.is_empty() {
            help.push(l.to_string());
        }
    }
    doc.help = help.join(" ");
    doc
}

impl CommandDoc {
    /// What the command's usage line shows after the family's prefix: its usage, else its name.
    pub fn usage_or<'a>(&'a self, name: &'a str) -> &'a str {
        if self.usage.is_empty() {
            name
        } else {
            &self.usage
        }
    }

    /// " (also: a, b)" for a command with aliases, else "".
    pub fn also(&self) -> String {
        if self.aliases.is_empty() {
            String::new()
        } else {
            format!(" (also: {})", self.aliases.join(", "))
        }
    }
}

/// A family of commands: `scripts/<name>/`.
#[derive(Debug, Clone)]
pub struct Family {
    /// The folder's name (`manage-stack`), which is also a name it answers to.
    pub name: String,
    /// What `_family.rhai` says of it.
    pub doc: CommandDoc,
}

impl Family {
    /// The name users type: the first alias (`stack`), else the folder's name.
    pub fn short_name(&self) -> &str {
        self.doc.aliases.first().unwrap_or(&self.name)
    }

    /// Whether `word` names this family.
    pub fn answers_to(&self, word: &str) -> bool {
        self.name == word || self.doc.aliases.iter().any(|a| a == word)
    }

    /// How the family's usage lines begin: `manage-stack [-s <stackName>]`.
    pub fn prefix(&self) -> String {
        self.prefix_as(&self.name)
    }

    /// How the family's usage lines begin when it was called as `typed` (`wsm stack`,
    /// `manage-stack`, `stack` in the REPL): `wsm stack [-s <stackName>]`.
    pub fn prefix_as(&self, typed: &str) -> String {
        match &self.doc.stack_option {
            Some(_) => format!("{typed} [-s <stackName>]"),
            None => typed.to_string(),
        }
    }

    /// Whether its commands act on a stack named with `-s`.
    pub fn takes_stack(&self) -> bool {
        self.doc.stack_option.is_some()
    }
}

/// The usage line of a command: `<prefix> <usage>` (the prefix is "wsm" for the commands
/// directly in `scripts/`). Every place that shows a usage line renders it here.
/// An empty prefix is a command called by its own name (a multi-call link `build-all-nodes`).
pub fn usage_line(prefix: &str, name: &str, doc: &CommandDoc) -> String {
    if prefix.is_empty() {
        doc.usage_or(name).to_string()
    } else {
        format!("{prefix} {}", doc.usage_or(name))
    }
}

/// textwrap's options for help text: `width` columns by display width, words split only at
/// spaces (a usage line's `--compose-file` stays whole).
fn wrapping<'a>(width: usize, first: &'a str, rest: &'a str) -> textwrap::Options<'a> {
    textwrap::Options::new(width.max(1))
        .initial_indent(first)
        .subsequent_indent(rest)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
}

/// Every family and command on the search path, read once per process and kept: the command
/// line, the REPL, help, completion and `wsm(…)` all look commands up here. Scripts are still
/// read from the search path when they run.
#[derive(Debug, Clone)]
pub struct Catalog {
    inner: Arc<CatalogData>,
}

#[derive(Debug)]
struct CatalogData {
    search: SearchPath,
    families: Vec<Family>,
    /// Each family's commands by name ("" for the commands directly in `scripts/`).
    commands: BTreeMap<String, BTreeMap<String, CommandDoc>>,
}

impl Catalog {
    /// Reads every family's `_family.rhai` and every command's `//!` lines from the search path.
    pub fn scan(search: SearchPath) -> Self {
        let families: Vec<Family> = search
            .list_dirs("scripts")
            .into_iter()
            .map(|name| {
                let doc = search
                    .find(&format!("scripts/{name}/_family.rhai"))
                    .map(|f| command_doc(&f.text))
                    .unwrap_or_default();
                Family { name, doc }
            })
            .collect();
        let commands = std::iter::once(String::new())
            .chain(families.iter().map(|f| f.name.clone()))
            .map(|family| {
                let dir = folder(&family);
                let cmds = search
                    .list(&dir)
                    .into_iter()
                    .filter(|name| !name.starts_with('_'))
                    .filter_map(|name| {
                        let found = search.find(&format!("{dir}/{name}.rhai"))?;
                        Some((name, command_doc(&found.text)))
                    })
                    .collect();
                (family, cmds)
            })
            .collect();
        Catalog {
            inner: Arc::new(CatalogData {
                search,
                families,
                commands,
            }),
        }
    }

    /// The same families and commands, their scripts read from `search` (the search path once
    /// the configuration directory's providers are added).
    pub fn with_search(&self, search: SearchPath) -> Self {
        Catalog {
            inner: Arc::new(CatalogData {
                search,
                families: self.inner.families.clone(),
                commands: self.inner.commands.clone(),
            }),
        }
    }

    /// The search path the scripts are read from.
    pub fn search(&self) -> &SearchPath {
        &self.inner.search
    }

    /// Every family, by folder name.
    pub fn families(&self) -> &[Family] {
        &self.inner.families
    }

    /// The family a word names (folder name or alias).
    pub fn family(&self, word: &str) -> Option<&Family> {
        self.inner.families.iter().find(|f| f.answers_to(word))
    }

    /// A family's commands by name ("" for the commands directly in `scripts/`).
    pub fn commands(&self, family: &str) -> &BTreeMap<String, CommandDoc> {
        static NONE: BTreeMap<String, CommandDoc> = BTreeMap::new();
        self.inner.commands.get(family).unwrap_or(&NONE)
    }

    /// The name and doc of a family's command, following aliases.
    pub fn command(&self, family: &str, cmd: &str) -> Option<(String, CommandDoc)> {
        let commands = self.commands(family);
        if let Some(doc) = commands.get(cmd) {
            return Some((cmd.to_string(), doc.clone()));
        }
        commands
            .iter()
            .find(|(_, d)| d.aliases.iter().any(|a| a == cmd))
            .map(|(name, doc)| (name.clone(), doc.clone()))
    }

    /// How a family's usage lines begin ("wsm" for the commands directly in `scripts/`).
    pub fn prefix(&self, family: &str) -> String {
        match self.family(family) {
            Some(f) if !family.is_empty() => f.prefix(),
            _ => "wsm".into(),
        }
    }
}

/// The folder of a family's scripts, relative to the search roots ("" is `scripts/` itself).
pub(super) fn folder(family: &str) -> String {
    if family.is_empty() {
        "scripts".into()
    } else {
        format!("scripts/{family}")
    }
}

/// A family's commands grouped by the application they are for (None: every stack's first).
pub fn by_application(
    commands: &BTreeMap<String, CommandDoc>,
) -> BTreeMap<Option<&str>, Vec<(&String, &CommandDoc)>> {
    let mut groups: BTreeMap<Option<&str>, Vec<(&String, &CommandDoc)>> = BTreeMap::new();
    for (name, doc) in commands {
        groups
            .entry(doc.application.as_deref())
            .or_default()
            .push((name, doc));
    }
    groups
}

/// A usage line wrapped to `width`, broken only between its elements: the spaces inside a
/// bracket (`[--env-file <file>]...`) are held together while textwrap fills the lines.
pub fn wrap_usage(line: &str, width: usize, first: &str, rest: &str) -> String {
    let mut depth = 0i32;
    let glued: String = line
        .chars()
        .map(|c| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            if c == ' ' && depth > 0 {
                '\u{a0}'
            } else {
                c
            }
        })
        .collect();
    textwrap::fill(&glued, wrapping(width, first, rest)).replace('\u{a0}', " ")
}

/// The usage summary of a family: one line per command, the commands of every stack first,
/// then those of each application under its name; `prefix` is how the family was called
/// (`wsm stack [-s <stackName>]`), and every line fits in `width` columns (textwrap): a usage
/// short enough stands in a column beside its help, a longer one on lines of its own above it.
pub fn family_usage(catalog: &Catalog, family: &str, prefix: &str, width: usize) -> String {
    use textwrap::core::display_width;
    let cmds = catalog.commands(family);
    let col = cmds
        .iter()
        .map(|(name, doc)| display_width(doc.usage_or(name)))
        .filter(|w| *w <= width / 3)
        .max()
        .unwrap_or(0);
    let hang = " ".repeat(col + 4);
    let mut out = String::new();
    for (application, commands) in by_application(cmds) {
        match application {
            None => out.push_str("Commands:\n"),
            Some(app) => out.push_str(&format!("\nCommands of {app} stacks only:\n")),
        }
        for (name, doc) in commands {
            let usage = doc.usage_or(name);
            let help = format!("{}{}", doc.help, doc.also());
            let w = display_width(usage);
            if w <= col {
                let first = format!("  {usage}{}", " ".repeat(col - w + 2));
                out.push_str(&textwrap::fill(&help, wrapping(width, &first, &hang)));
            } else {
                out.push_str(&wrap_usage(usage, width, "  ", "      "));
                out.push('\n');
                out.push_str(&textwrap::fill(&help, wrapping(width, &hang, &hang)));
            }
            out.push('\n');
        }
    }
    out.push_str(&textwrap::fill(
        &format!("Usage: {prefix} <command> [args…]"),
        wrapping(width, "", "  "),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_command_docs() {
        let d = command_doc(
            "//! Starts the stack.\n//! usage: start\n//! alias: up\n//! application: demo\n//! complete <nodeId>: m::ids\nlet x = 1;\n//! not doc",
        );
        assert_eq!(d.usage, "start");
        assert_eq!(d.help, "Starts the stack.");
        assert_eq!(d.aliases, ["up"]);
        assert_eq!(d.application.as_deref(), Some("demo"));
        assert_eq!(d.completers["<nodeId>"], "m::ids");
        assert!(d.stack_option.is_none());
        let f = command_doc("//! A family.\n//! option: -s <stackName>  The stack\n");
        assert_eq!(f.stack_option.as_deref(), Some("<stackName>  The stack"));
    }
}
