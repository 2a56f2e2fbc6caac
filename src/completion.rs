//! Shell completion that asks wsm itself, as docker's does: the scripts `wsm completions
//! <shell>` prints for bash, zsh and fish call the hidden `wsm __complete <words…>`, which
//! answers with the candidates for the last word, one a line: options, families, commands,
//! stack names (config files and the stacks running on the swarm) and node ids, from the same
//! source as the REPL's Tab (`repl::candidates`).

use crate::engine::{self, Shell};
use crate::repl::candidates::{Candidates, Next};

/// The options that take a value, and so are skipped with it.
const OPTIONS_WITH_VALUE: &[&str] = &["-C", "--config-dir", "--context"];

/// The options before a command.
const OPTIONS: &[&str] = &[
    "--config-dir",
    "--context",
    "--json",
    "--yes",
    "--verbose",
    "--help",
    "--version",
];

/// The built-in subcommands.
const BUILTINS: &[&str] = &["repl", "run", "doc", "completions", "help"];

/// The candidates for the last of `words` (the words after `wsm`; the last may be "").
pub fn candidates(shell: &Shell, words: &[String]) -> Vec<String> {
    let Some((current, before)) = words.split_last() else {
        return Vec::new();
    };
    let previous = before.last().map(String::as_str);
    if previous == Some("--context") {
        return starting_with(current, context_names());
    }
    if previous.is_some_and(|p| OPTIONS_WITH_VALUE.contains(&p)) {
        return Vec::new(); // a folder: the shell's own file completion
    }
    // The words of the command, without wsm's own options and their values.
    let mut command: Vec<&str> = Vec::new();
    let mut skip = false;
    for w in before {
        if skip {
            skip = false;
        } else if OPTIONS_WITH_VALUE.contains(&w.as_str()) {
            skip = true;
        } else if command.is_empty() && w.starts_with('-') {
        } else if !engine::commands::GLOBAL_FLAGS.contains(&w.as_str()) {
            command.push(w);
        }
    }
    if command.is_empty() {
        if current.starts_with('-') {
            return starting_with(current, OPTIONS.iter().map(|o| o.to_string()).collect());
        }
        let mut names: Vec<String> = BUILTINS.iter().map(|b| b.to_string()).collect();
        for family in shell.catalog.families() {
            names.push(family.short_name().to_string());
            names.push(family.name.clone());
        }
        names.extend(shell.catalog.commands("").keys().cloned());
        return starting_with(current, names);
    }
    match command[0] {
        "completions" if command.len() == 1 => {
            return starting_with(current, SHELLS.iter().map(|s| s.to_string()).collect())
        }
        "repl" | "doc" | "completions" | "run" | "help" => return Vec::new(),
        _ => {}
    }
    match Candidates::new(shell).after(&command, current) {
        Some(Next::Words(names, suffix)) => {
            let suffix = if suffix == ":" { ":" } else { "" };
            starting_with(current, names)
                .into_iter()
                .map(|n| format!("{n}{suffix}"))
                .collect()
        }
        _ => Vec::new(),
    }
}

fn starting_with(prefix: &str, mut names: Vec<String>) -> Vec<String> {
    names.retain(|n| n.starts_with(prefix));
    names.sort();
    names.dedup();
    names
}

/// The Docker contexts there are: `default` and those under `~/.docker/contexts/meta`.
fn context_names() -> Vec<String> {
    let mut names = vec!["default".to_string()];
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")));
    if let Some(dir) = dir {
        for entry in std::fs::read_dir(dir.join("contexts/meta"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let meta = std::fs::read_to_string(entry.path().join("meta.json")).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&meta) {
                if let Some(name) = v["Name"].as_str() {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// The shells `wsm completions` writes a script of its own for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// The completion script for a shell, for the names wsm answers to (`wsm` and its multi-call
/// names: `manage-stack`, …); None for a shell it has none for.
pub fn script(shell: &str, names: &[String]) -> Option<String> {
    let all = names.join(" ");
    Some(match shell {
        "bash" => format!(
            r#"# wsm completion for bash: source it, or put it in ~/.local/share/bash-completion/completions/wsm
_wsm() {{
    local first="${{COMP_WORDS[0]##*/}}"
    local -a words=("${{COMP_WORDS[@]:1:COMP_CWORD}}")
    [[ $first != wsm ]] && words=("$first" "${{words[@]}}")
    local IFS=$'\n'
    COMPREPLY=($(command wsm __complete -- "${{words[@]}}" 2>/dev/null))
    if [[ ${{#COMPREPLY[@]}} -eq 1 && ${{COMPREPLY[0]}} == *: ]]; then
        compopt -o nospace 2>/dev/null
    fi
}}
complete -o default -F _wsm {all}
"#
        ),
        "zsh" => format!(
            r#"#compdef {all}
# wsm completion for zsh: put it in a folder of $fpath as _wsm, or source it after compinit
_wsm() {{
    local -a words_=("${{(@)words[2,CURRENT]}}")
    [[ ${{words[1]:t}} != wsm ]] && words_=("${{words[1]:t}}" "${{words_[@]}}")
    local -a cands=("${{(@f)$(command wsm __complete -- "${{words_[@]}}" 2>/dev/null)}}")
    cands=(${{cands:#}})
    if (( ${{#cands}} )); then
        compadd -Q -- "${{cands[@]}}"
    else
        _files
    fi
}}
if [[ $funcstack[1] == _wsm ]]; then _wsm "$@"; else compdef _wsm {all}; fi
"#
        ),
        "fish" => {
            let mut out = String::from(
                "# wsm completion for fish: put it in ~/.config/fish/completions/wsm.fish\n\
                 function __wsm_complete\n\
                 \x20   set -l words (commandline -opc) (commandline -ct)\n\
                 \x20   set -l first (basename $words[1])\n\
                 \x20   set -e words[1]\n\
                 \x20   test $first != wsm; and set words $first $words\n\
                 \x20   command wsm __complete -- $words 2>/dev/null\n\
                 end\n",
            );
            for name in names {
                out.push_str(&format!("complete -c {name} -f -a '(__wsm_complete)'\n"));
            }
            out
        }
        _ => return None,
    })
}
