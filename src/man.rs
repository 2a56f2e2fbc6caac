//! Manual pages, made from the command table (`wsm __man DIR`, which `packaging/build-deb`
//! calls): `wsm.1` from clap's command line (clap_mangen), one `wsm-<family>.1` per family
//! (the family's options from clap, then each of its commands with its usage line and help
//! from the catalog, grouped by application as `<family> help` groups them), one
//! `wsm-<command>.1` per command directly in `scripts/`, and for a family or command reached
//! through a link of its own (`manage-stack`), a `<link>.1` that sources its page; and one
//! `wsm-<builtin>.1` per built-in subcommand (`repl`, `run`, …), so every name `wsm.1` lists
//! has its page.

use std::collections::BTreeMap;
use std::path::Path;

use clap_mangen::Man;
use roff::{bold, italic, roman, Roff};

use crate::engine::catalog::{by_application, CommandDoc};
use crate::engine::Catalog;

/// The pages: (file name, roff text).
pub fn pages(top: &clap::Command, catalog: &Catalog) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let version = top.get_version().unwrap_or_default().to_string();
    let mut out = Vec::new();
    let mut page = Vec::new();
    Man::new(top.clone()).render(&mut page)?;
    out.push(("wsm.1".to_string(), page));
    for family in catalog.families() {
        let short = family.short_name();
        let page_name = format!("wsm-{short}");
        let Some(sub) = top.find_subcommand(short) else {
            continue;
        };
        let cmd = sub
            .clone()
            .name(page_name.clone())
            .bin_name(format!("wsm {short}"))
            .version(version.clone());
        let man = Man::new(cmd);
        let mut page = Vec::new();
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        commands_section(&format!("wsm {short}"), catalog.commands(&family.name))
            .to_writer(&mut page)?;
        let link = (family.name != short).then_some(family.name.as_str());
        see_also(link, short).to_writer(&mut page)?;
        out.push((format!("{page_name}.1"), page));
        if family.name != short {
            out.push((link_page(&family.name), so(&page_name)));
        }
    }
    for (name, doc) in catalog.commands("") {
        let page_name = format!("wsm-{name}");
        let mut roff = Roff::new();
        roff.control("TH", [page_name.as_str(), "1", "", &version, ""]);
        roff.control("SH", ["NAME"]);
        roff.text([roman(format!(
            "{page_name} - {}",
            first_sentence(&doc.help)
        ))]);
        roff.control("SH", ["SYNOPSIS"]);
        roff.text([bold(format!("wsm {}", doc.usage_or(name)))]);
        roff.control("SH", ["DESCRIPTION"]);
        roff.text([roman(format!("{}{}", doc.help, doc.also()))]);
        let mut page = roff.render().into_bytes();
        see_also(Some(name), name).to_writer(&mut page)?;
        out.push((format!("{page_name}.1"), page));
        out.push((link_page(name), so(&page_name)));
    }
    // The built-in subcommands (repl, run, doc, completions): clap knows all there is.
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        if catalog.family(name).is_some() || catalog.commands("").contains_key(name) {
            continue;
        }
        let page_name = format!("wsm-{name}");
        let cmd = sub
            .clone()
            .name(page_name.clone())
            .bin_name(format!("wsm {name}"))
            .version(version.clone());
        let mut page = Vec::new();
        Man::new(cmd).render(&mut page)?;
        out.push((format!("{page_name}.1"), page));
    }
    Ok(out)
}

/// Writes every page into `dir` (made if missing), each atomically.
pub fn write_pages(top: &clap::Command, catalog: &Catalog, dir: &Path) -> std::io::Result<usize> {
    let pages = pages(top, catalog)?;
    for (name, text) in &pages {
        crate::host::output::write_atomic(&dir.join(name), text, false)?;
    }
    Ok(pages.len())
}

/// The COMMANDS section of a family's page: each command's usage line and help, those of one
/// application under a subsection named after it.
fn commands_section(prefix: &str, commands: &BTreeMap<String, CommandDoc>) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    // Left-adjusted: justified, a long usage line would gain runs of spaces between its words.
    roff.control("ad", ["l"]);
    for (application, commands) in by_application(commands) {
        if let Some(app) = application {
            roff.control("SS", [format!("Commands of {app} stacks only").as_str()]);
        }
        for (name, doc) in commands {
            roff.control("TP", []);
            roff.text([bold(format!("{prefix} {}", doc.usage_or(name)))]);
            roff.text([roman(format!("{}{}", doc.help, doc.also()))]);
        }
    }
    roff
}

/// SEE ALSO: wsm(1), and the link the page's commands are also run through, if any.
fn see_also(link: Option<&str>, what: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("wsm"), roman("(1), "), bold("docker"), roman("(1)")]);
    if let Some(link) = link {
        roff.control("PP", []);
        roff.text([
            roman("Also run as "),
            italic(link.to_string()),
            roman(format!(", the same as wsm {what}.")),
        ]);
    }
    roff
}

fn link_page(name: &str) -> String {
    format!("{name}.1")
}

/// A page that is another's: man reads `.so` as "show this file instead".
fn so(page_name: &str) -> Vec<u8> {
    format!(".so man1/{page_name}.1\n").into_bytes()
}

/// The first sentence of a help text, for the NAME line.
fn first_sentence(help: &str) -> &str {
    match help.find(". ") {
        Some(i) => &help[..i],
        None => help.trim_end_matches('.'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::search::SearchPath;

    #[test]
    fn every_family_has_a_page_listing_its_commands() {
        let catalog = Catalog::scan(SearchPath::bundled_only());
        let mut top = clap::Command::new("wsm").version("1.2.3 (commit abc)");
        for family in catalog.families() {
            top = top.subcommand(clap::Command::new(family.short_name().to_string()));
        }
        top = top.subcommand(clap::Command::new("repl").about("The shell"));
        let pages: BTreeMap<String, String> = pages(&top, &catalog)
            .unwrap()
            .into_iter()
            .map(|(name, text)| (name, String::from_utf8(text).unwrap()))
            .collect();
        assert!(
            pages["wsm.1"].contains("\n.TH wsm 1 "),
            "{}",
            pages["wsm.1"]
        );
        assert!(pages.contains_key("wsm-repl.1"));
        for family in catalog.families() {
            let page = &pages[&format!("wsm-{}.1", family.short_name())];
            assert!(page.contains(".SH COMMANDS"), "{page}");
            for (name, doc) in catalog.commands(&family.name) {
                let usage = format!("wsm {} {}", family.short_name(), doc.usage_or(name));
                // roff escapes a leading-dash word and hyphens as \-.
                let shown = usage.replace('-', "\\-");
                assert!(
                    page.contains(&shown) || page.contains(&usage),
                    "{usage} in {page}"
                );
            }
            if family.name != family.short_name() {
                assert_eq!(
                    pages[&format!("{}.1", family.name)],
                    format!(".so man1/wsm-{}.1\n", family.short_name())
                );
            }
        }
    }
}
