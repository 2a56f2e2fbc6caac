//! `term::` — the user's terminal: tables, relative times, JSON, prompts, the editor, and
//! interruptible sleeps. Plain `print` goes through the engine's print hook.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::Prim;
use super::{script_err, to_json, usage_err, Host, ScriptResult};

/// Formats rows under headers in columns separated by three spaces, as `docker` does.
pub fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate().take(cols) {
            if i + 1 == cols {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = width[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers);
    for row in rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// Docker's human duration ("40 seconds", "About a minute", "3 hours").
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let h = s / 3600;
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        _ if s < 3600 => format!("{} minutes", s / 60),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 3 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// "40 seconds ago", "about a minute ago" for an RFC 3339 timestamp; the text itself when it does not parse.
pub fn ago(timestamp: &str) -> String {
    match humantime::parse_rfc3339_weak(
        timestamp
            .trim_end_matches('Z')
            .split('+')
            .next()
            .unwrap_or(""),
    )
    .or_else(|_| humantime::parse_rfc3339(timestamp))
    {
        // Lower case, as `docker service ps` prints it: "Running about a minute ago".
        Ok(t) => format!(
            "{} ago",
            human_duration(SystemTime::now().duration_since(t).unwrap_or_default()).to_lowercase()
        ),
        Err(_) => timestamp.to_string(),
    }
}

/// Where editor sessions keep their private copy: `$XDG_RUNTIME_DIR/wsm/edit` (a per-user
/// tmpfs, gone at logout or reboot) when there is one, else `$XDG_STATE_HOME/wsm/edit`. Never
/// a shared /tmp: a copy that a SIGKILL leaves behind stays where only the user can read it,
/// and the next edit removes it. A folder another user owns or can write is refused.
fn edit_sessions_dir() -> ScriptResult<std::path::PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .or_else(super::xdg::state_dir)
        .ok_or_else(|| script_err("no directory for the editor's copy: set XDG_STATE_HOME"))?;
    let dir = base.join("wsm").join("edit");
    super::owner::make_private_dir(&dir, "the editor's folder").map_err(super::usage_err)?;
    Ok(dir)
}

/// Removes the copies of editor sessions whose wsm process is gone (killed with SIGKILL, say).
fn remove_stale_sessions(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('.').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let gone = pid.is_some_and(|p| {
            let status = unsafe { libc::kill(p, 0) };
            status != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        });
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs the user's editor (`$VISUAL`, `$EDITOR`, else `vi`) on `text`; returns the new text.
/// The copy is private (0600 in a 0700 directory) and removed however wsm ends; while the
/// editor runs, Ctrl-C is the editor's.
fn edit(host: &Host, text: &str, name: &str) -> ScriptResult<String> {
    use super::cleanup::Action;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let mut words = shell_words::split(&editor)
        .map_err(|e| script_err(format!("cannot parse the editor command {editor:?}: {e}")))?;
    if words.is_empty() {
        return Err(script_err(format!(
            "the editor command {editor:?} is empty"
        )));
    }
    let sessions = edit_sessions_dir()?;
    remove_stale_sessions(&sessions);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}.", std::process::id()))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&sessions)
        .map_err(script_err)?;
    let remove = host.cleanups.add(
        "removing the editor's copy",
        Action::remove_path(dir.path().to_path_buf()),
    );
    let path = dir.path().join(name);
    let edited = super::output::write_atomic(&path, text.as_bytes(), true)
        .map_err(script_err)
        .and_then(|()| run_editor(host, &words.remove(0), &words, &path));
    let result = edited.and_then(|()| std::fs::read_to_string(&path).map_err(script_err));
    drop(dir);
    host.cleanups.cancel(remove);
    if host.is_interrupted() {
        return Err(super::interrupted());
    }
    result
}

/// Runs the editor on `path` with the terminal; SIGTERM to wsm stops it too.
/// SIGINT ignored by this process until dropped, then its earlier handler put back.
struct SigintIgnored(libc::sigaction);

impl SigintIgnored {
    fn new() -> Self {
        // SAFETY: sigaction only reads and writes the structs given.
        unsafe {
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGINT, &ignore, &mut old);
            SigintIgnored(old)
        }
    }
}

impl Drop for SigintIgnored {
    fn drop(&mut self) {
        // SAFETY: as in `new`; restores the handler saved there.
        unsafe {
            libc::sigaction(libc::SIGINT, &self.0, std::ptr::null_mut());
        }
    }
}

fn run_editor(
    host: &Host,
    program: &str,
    args: &[String],
    path: &std::path::Path,
) -> ScriptResult<()> {
    let status = host.with_child_on_terminal(|| {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(program);
        command.args(args).arg(path);
        // Ctrl-C is the editor's while it runs: wsm ignores SIGINT (as system(3) does while it
        // waits), so a signal handled late cannot abandon a saved edit; the editor gets the
        // default disposition back before it starts.
        // SAFETY: signal() is async-signal-safe, the only call made between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let _ignored = SigintIgnored::new();
        let mut child = command.spawn()?;
        let stop = host.cleanups.add(
            "stopping the editor",
            super::cleanup::Action::terminate(child.id()),
        );
        let status = child.wait();
        host.cleanups.cancel(stop);
        status
    });
    let status =
        status.map_err(|e| script_err(format!("cannot start the editor {program:?}: {e}")))?;
    if !status.success() {
        return Err(script_err(format!(
            "the editor {program:?} exited with {status}; nothing was saved"
        )));
    }
    Ok(())
}

fn read_line(prompt: &str) -> ScriptResult<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(script_err)?;
    if n == 0 {
        return Err(script_err("no answer: standard input is closed"));
    }
    Ok(line.trim().to_string())
}

/// Registers the `term::` module and the global `usage_error`.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();

    let prim = Prim::new("term::table(headers: array, rows: array) -> string")
        .doc("Aligned columns under the headers, as `docker … ls` prints them.");
    prim.set_in(
        &mut m,
        |headers: Array, rows: Array| -> ScriptResult<String> {
            let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|r| {
                    r.into_array()
                        .unwrap_or_default()
                        .iter()
                        .map(|c| c.to_string())
                        .collect()
                })
                .collect();
            Ok(table(&headers, &rows))
        },
    );
    let prim = Prim::new("term::ago(rfc3339: string) -> string")
        .doc("How long ago a time was, e.g. \"40 seconds ago\".");
    prim.set_in(&mut m, |ts: &str| Ok(ago(ts)));
    let prim = Prim::new("term::json(value) -> string")
        .doc("Pretty JSON text of a value (what `--json` prints).");
    prim.set_in(&mut m, |v: Dynamic| -> ScriptResult<String> {
        serde_json::to_string_pretty(&to_json(&v)?).map_err(script_err)
    });
    let prim = Prim::new("term::eprint(text: string)").doc("A line on stderr.");
    prim.set_in(&mut m, |s: &str| {
        eprintln!("{s}");
        Ok(())
    });
    let prim = Prim::new("term::warn(text: string)").doc("`warning: text` on stderr.");
    prim.set_in(&mut m, |s: &str| {
        eprintln!("warning: {s}");
        Ok(())
    });
    let h = host.clone();
    let prim = Prim::new("term::warn_once(text: string)").doc(
        "`warning: text` on stderr, once per process (a config read again by the REPL's \
         completion does not repeat it).",
    );
    prim.set_in(&mut m, move |s: &str| {
        if h.first_time(s) {
            eprintln!("warning: {s}");
        }
        Ok(())
    });
    let prim = Prim::new("term::is_tty() -> bool").doc("Whether stdout is a terminal.");
    prim.set_in(&mut m, || Ok(std::io::stdout().is_terminal()));
    let prim = Prim::new("term::clear()").doc("Clears the screen (for `status watch`).");
    prim.set_in(&mut m, || {
        print!("\x1b[H\x1b[2J");
        Ok(())
    });
    let h = host.clone();
    let prim = Prim::new("term::edit(text: string, file_name: string) -> string").doc(
        "Opens text in `$VISUAL`, `$EDITOR` or vi (Ctrl-C goes to the editor) and returns the \
         edited text.",
    );
    prim.set_in(&mut m, move |text: &str, name: &str| edit(&h, text, name));
    let prim = Prim::new("term::prompt(question: string) -> string")
        .doc("Asks a question and returns the line the user types.");
    prim.set_in(&mut m, |q: &str| read_line(q));
    let h = host.clone();
    let prim = Prim::new("term::confirm(question: string) -> bool").doc(
        "True when the user types y or yes; `--yes` answers for them, and without a terminal it \
         is a usage error.",
    );
    prim.set_in(&mut m, move |q: &str| -> ScriptResult<bool> {
        if h.opts.yes {
            return Ok(true);
        }
        let a = read_line(&format!("{q} [y/N] "))?;
        Ok(matches!(a.to_ascii_lowercase().as_str(), "y" | "yes"))
    });
    // term::sleep(ms) — sleep, cut short by Ctrl-C.
    let h = host.clone();
    let prim =
        Prim::new("term::sleep(ms: int)").doc("Sleeps, cut short by Ctrl-C (an error then).");
    prim.set_in(&mut m, move |ms: i64| -> ScriptResult<()> {
        h.block(async {
            tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
            Ok(())
        })
    });
    let prim = Prim::new("term::run(argv: array) -> int")
        .doc("Runs a local program with this terminal; returns its exit code.");
    prim.set_in(&mut m, |argv: Array| -> ScriptResult<i64> {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| script_err("term::run needs a program"))?;
        let status = std::process::Command::new(prog)
            .args(args)
            .status()
            .map_err(|e| script_err(format!("cannot run {prog}: {e}")))?;
        Ok(status.code().unwrap_or(-1) as i64)
    });
    // term::now() — seconds since the epoch.
    let prim =
        Prim::new("term::now() -> float").doc("Seconds since the epoch, with their fraction.");
    prim.set_in(&mut m, || {
        Ok(SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0))
    });
    let prim = Prim::new("term::timestamp() -> string").doc(
        "Now (or a time in seconds since the epoch), as RFC 3339 UTC to the second \
         (`2026-12-01T17:03:04Z`).",
    );
    prim.set_in(&mut m, || {
        Ok(humantime::format_rfc3339_seconds(SystemTime::now()).to_string())
    });
    let prim = Prim::new("term::user_at_host() -> string")
        .doc("Who runs wsm, as `user@host` (as locks and revisions record it).");
    prim.set_in(&mut m, || Ok(super::identity::user_at_host()));
    let prim = Prim::new("term::timestamp(secs: int) -> string");
    prim.set_in(&mut m, |secs: i64| {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        Ok(humantime::format_rfc3339_seconds(t).to_string())
    });
    engine.register_static_module("term", m.into());

    let prim = Prim::new("trimmed(text: string) -> string")
        .doc("Text without surrounding white space (Rhai's own `trim()` works in place).");
    prim.register(engine, |s: &str| s.trim().to_string());
    let prim = Prim::new("exit_with(code: int)")
        .doc("Ends the command with this exit code (e.g. the code of a program it ran).");
    prim.register(engine, |code: i64| -> ScriptResult<Dynamic> {
        let mut m = Map::new();
        m.insert("exit_code".into(), Dynamic::from(code));
        Err(rhai::EvalAltResult::ErrorRuntime(Dynamic::from_map(m), rhai::Position::NONE).into())
    });
    let prim = Prim::new("usage_error(message: string)")
        .doc("Fails with exit code 2, the message and the command's usage line.");
    prim.register(engine, |msg: &str| -> ScriptResult<Dynamic> {
        Err(usage_err(msg))
    });
    let prim = Prim::new("input_error(message: string)").doc(
        "Fails with exit code 2 and the message alone, without the usage line: bad input the \
         command line is not to blame for (a file's error naming the file and the key).",
    );
    prim.register(engine, |msg: &str| -> ScriptResult<Dynamic> {
        Err(crate::host::input_err(msg))
    });
    let h = host.clone();
    let prim = Prim::new("opts() -> map")
        .doc("The global options as a map: `json`, `yes`, `verbose`, `config_dir`.");
    prim.register(engine, move || -> Map {
        let mut m = Map::new();
        m.insert("json".into(), h.opts.json.into());
        m.insert("yes".into(), h.opts.yes.into());
        m.insert("verbose".into(), h.opts.verbose.into());
        m.insert(
            "config_dir".into(),
            h.opts.config_dir.display().to_string().into(),
        );
        m
    });
}

/// Puts the terminal on stdin into raw mode while alive (for TTY sessions); restores it on drop.
pub struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    /// Raw mode when stdin is a terminal; a no-op guard otherwise.
    pub fn enable() -> Self {
        use std::os::fd::AsRawFd;
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it and we check the result.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::isatty(fd) != 1 || libc::tcgetattr(fd, &mut t) != 0 {
                return RawMode { saved: None };
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            RawMode { saved: Some(saved) }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(saved) = self.saved {
            // SAFETY: restores the attributes read in `enable` on the same descriptor.
            unsafe {
                libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &saved);
            }
        }
    }
}

/// The terminal's size as (columns, rows), if stdout is a terminal (console's reading, the
/// crate indicatif already uses).
pub fn size() -> Option<(u16, u16)> {
    console::Term::stdout()
        .size_checked()
        .map(|(rows, cols)| (cols, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(
            &["ID".into(), "NAME".into(), "X".into()],
            &[vec!["a".into(), "long-name".into(), "".into()]],
        );
        assert_eq!(t, "ID   NAME        X\na    long-name");
    }

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(Duration::from_secs(40)), "40 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2 hours");
    }
}
