//! Issue 23 item 2: wsm runs code only from its trusted search path. A current folder holding
//! `stdlib/config.rhai` or `scripts/manage-stack/ls.rhai` runs nothing, neither for a command
//! nor for shell completion; a `WSM_SCRIPT_PATH` or `$XDG_CONFIG_HOME/wsm` folder that another
//! user can change (group- or other-writable, owned by someone else) is refused with one line
//! naming it, and nothing runs; the config directory's `providers/` counts only when the
//! directory was named. Each script here would write a marker file: the marker is the witness.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{wsm_command, Run};

/// Script text that writes `marker` when it runs (at import, for a module).
fn writes_marker(marker: &Path) -> String {
    format!("fs::write({:?}, \"ran\");\n", marker.display().to_string())
}

/// A command script that writes `marker`.
fn command_writing(marker: &Path) -> String {
    format!(
        "//! Writes a marker.\n//! usage: ls\n{}",
        writes_marker(marker)
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A private place for one test: `cwd`, `config`, the XDG homes and markers under one temp dir.
struct Place {
    root: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("cwd/config/stacks")).unwrap();
        Place { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `wsm -C cwd/config <args…>` in `cwd`, with no WSM_SCRIPT_PATH.
    fn wsm(&self, args: &[&str]) -> Command {
        let mut cmd = wsm_command(&self.path("cwd"), &self.path("cwd/config"), args);
        cmd.env_remove("WSM_SCRIPT_PATH");
        cmd
    }

    fn run(&self, cmd: &mut Command) -> Run {
        cmd.output().expect("run wsm").into()
    }
}

/// The one `error:` line of a refused run.
fn one_error_line(r: &Run) -> String {
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {}", r.stderr);
    assert!(lines[0].starts_with("error: "), "stderr: {}", r.stderr);
    lines[0].to_string()
}

#[test]
fn code_in_the_current_folder_never_runs_for_a_command_or_completion() {
    let p = Place::new();
    let module_marker = p.path("module-ran");
    let command_marker = p.path("command-ran");
    write(
        &p.path("cwd/stdlib/config.rhai"),
        &writes_marker(&module_marker),
    );
    write(
        &p.path("cwd/stdlib/stack_view.rhai"),
        &writes_marker(&module_marker),
    );
    write(
        &p.path("cwd/scripts/manage-stack/ls.rhai"),
        &command_writing(&command_marker),
    );

    let r = p.run(&mut p.wsm(&["stack", "ls"]));
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(r.stdout.starts_with("NAME"), "{}", r.stdout);
    for args in [
        &["__complete", "stack", "-s", ""][..],
        &["__complete", "stack", ""],
        &["__complete", "manage-stack", "status", ""],
    ] {
        let r = p.run(&mut p.wsm(args));
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    assert!(!module_marker.exists(), "a module in ./stdlib ran");
    assert!(!command_marker.exists(), "a command in ./scripts ran");

    // The default config directory (./config) is the current folder's too: its providers/ is
    // not looked at; named with -C, it is.
    let provider_marker = p.path("provider-ran");
    write(
        &p.path("cwd/config/providers/echo.rhai"),
        &format!(
            "{}fn create(name, args, settings) {{ throw \"echo made nothing\"; }}\n",
            writes_marker(&provider_marker)
        ),
    );
    let mut plain = Command::new(env!("CARGO_BIN_EXE_wsm"));
    plain
        .args(["swarm", "create", "echo", "sw1"])
        .current_dir(p.path("cwd"))
        .env_remove("WSM_CONFIG_DIR")
        .env_remove("WSM_SCRIPT_PATH")
        .env("XDG_CONFIG_HOME", p.path("xdg-config"))
        .env("XDG_STATE_HOME", p.path("xdg-state"));
    let r = p.run(&mut plain);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("no provider named \"echo\""),
        "{}",
        r.stderr
    );
    assert!(!provider_marker.exists(), "a provider in ./config ran");
    let r = p.run(&mut p.wsm(&["swarm", "create", "echo", "sw1"]));
    assert!(r.stderr.contains("echo made nothing"), "{}", r.stderr);
    assert!(provider_marker.exists(), "the named config dir's provider");
}

#[test]
fn a_script_folder_another_user_can_change_is_refused_naming_it() {
    let p = Place::new();
    let folder = p.path("scripts-ok");
    let marker = p.path("ran");
    let script = folder.join("scripts/manage-stack/hi.rhai");
    write(
        &script,
        &command_writing(&marker).replace("usage: ls", "usage: hi"),
    );
    let with_path = |args: &[&str]| {
        let mut cmd = p.wsm(args);
        cmd.env("WSM_SCRIPT_PATH", &folder);
        p.run(&mut cmd)
    };

    // Group-writable: refused, one line naming the folder, nothing runs (not even a bundled
    // command), and completion leaves the folder out silently.
    chmod(&folder, 0o775);
    for args in [&["stack", "hi"][..], &["stack", "ls"], &["--help"]] {
        let r = with_path(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        let line = one_error_line(&r);
        assert!(
            line.contains(&folder.display().to_string())
                && line.contains("writable by group or others"),
            "{line}"
        );
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let r = with_path(&["__complete", "stack", ""]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.lines().any(|l| l == "status") && !r.stdout.lines().any(|l| l == "hi"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(!marker.exists());

    // A file under a good folder that others can write is refused, naming the file.
    chmod(&folder, 0o755);
    chmod(&script, 0o666);
    let r = with_path(&["stack", "hi"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        one_error_line(&r).contains(&script.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(!marker.exists());
    chmod(&script, 0o644);

    // Owned by another user: refused (needs root to give the folder away).
    if std::os::unix::fs::chown(&folder, Some(65534), None).is_ok() {
        let r = with_path(&["stack", "hi"]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        let line = one_error_line(&r);
        assert!(
            line.contains(&folder.display().to_string()) && line.contains("owned by uid 65534"),
            "{line}"
        );
        assert!(!marker.exists());
        std::os::unix::fs::chown(&folder, Some(0), None).unwrap();
    } else {
        eprintln!("not root: the other-owner case is not tried");
    }

    // A folder only its owner can change works.
    let r = with_path(&["stack", "hi"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(marker.exists(), "the trusted folder's command ran");
}

#[test]
fn the_users_own_script_folder_is_checked_too() {
    let p = Place::new();
    // wsm_command sets XDG_CONFIG_HOME to cwd/.xdg-config.
    let folder = p.path("cwd/.xdg-config/wsm");
    let marker = p.path("ran");
    write(
        &folder.join("scripts/manage-stack/hi.rhai"),
        &command_writing(&marker).replace("usage: ls", "usage: hi"),
    );
    chmod(&folder, 0o777);
    let r = p.run(&mut p.wsm(&["stack", "hi"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = one_error_line(&r);
    assert!(
        line.contains(&folder.display().to_string()) && line.contains("your script folder"),
        "{line}"
    );
    assert!(!marker.exists());
    chmod(&folder, 0o700);
    p.run(&mut p.wsm(&["stack", "hi"]));
    assert!(marker.exists(), "the user's own folder's command ran");
}
