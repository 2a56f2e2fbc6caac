//! Bad input, config handling and extension through dropped-in scripts. Where the swarm is
//! involved, the Docker CLI checks that nothing changed.

mod common;

use common::*;

#[test]
fn unknown_and_missing_commands_exit_2_with_usage() {
    let s = TestStack::bare("wsmc");
    let r = s.stack(&["frobnicate"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("error: unknown command \"frobnicate\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("usage: wsm stack -s {} <command>", s.name)),
        "{}",
        r.stderr
    );

    let r = s.wsm(&["stack"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no command given"), "{}", r.stderr);

    let r = s.stack(&["status", "--bogus"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains(&format!("usage: wsm stack -s {} status [watch]", s.name)),
        "{}",
        r.stderr
    );

    let r = s.wsm(&["nonsense"]);
    assert_eq!(r.code, 2);
    assert!(s.services().is_empty());
}

#[test]
fn a_non_numeric_node_count_is_rejected_naming_key_and_file() {
    let s = TestStack::new("wsmn");
    s.set("WAVELET_NODES", "three");
    let r = s.stack(&["start"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let file = s.config_file().display().to_string();
    assert!(
        r.stderr.contains("WAVELET_NODES") && r.stderr.contains(&file),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr
            .lines()
            .next()
            .unwrap_or("")
            .matches("error:")
            .count(),
        1
    );
    assert!(
        s.services().is_empty(),
        "a rejected config must not touch the swarm"
    );
    let net = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={}_", s.name),
    ]);
    assert_eq!(net.trim(), "");
}

#[test]
fn config_values_are_never_executed() {
    let s = TestStack::bare("wsmp");
    let marker = std::env::temp_dir().join(format!("wsm-pwned-{}", s.name));
    let payload = format!("$(touch {})", marker.display());
    s.set("WAVELET_GENESIS", &payload);
    s.set("WAVELET_SNOWBALL_K", "`touch /tmp/wsm-pwned-backtick`");
    let r = s.stack(&["config"]);
    // A backtick value is not a number: exit 2, and still nothing runs.
    assert_eq!(r.code, 2, "{}", r.stderr);
    s.set("WAVELET_SNOWBALL_K", "4");
    let r = s.stack(&["config"]);
    assert!(
        r.ok().contains(&format!("WAVELET_GENESIS={payload}\n")),
        "{}",
        r.stdout
    );
    let compose = s.stack(&["compose"]);
    assert!(
        compose.ok().contains(&format!("WAVELET_GENESIS={payload}")),
        "{}",
        compose.stdout
    );
    assert!(!marker.exists(), "a config value was executed");
    assert!(!std::path::Path::new("/tmp/wsm-pwned-backtick").exists());
}

#[test]
fn config_layers_and_masks_secrets() {
    let s = TestStack::bare("wsmk");
    std::fs::write(
        s.config_dir().join("default"),
        "WAVELET_NODES=9\nREGISTRY=reg.example:5000\n",
    )
    .unwrap();
    s.set("WAVELET_NODES", "4");
    s.set("WAVELET_KEYS", "secretkey1,secretpub1");
    let out = s.stack(&["config"]);
    let text = out.ok();
    assert!(text.contains("REGISTRY=reg.example:5000\n"), "{text}");
    assert!(
        text.contains("WAVELET_NODES=4\n"),
        "stack file must win over default: {text}"
    );
    assert!(
        text.contains("WAVELET_KEYS=********\n") && !text.contains("secretkey1"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "config output must be sorted");
    let shown = s.stack(&["config", "--show-secrets"]);
    assert!(shown.ok().contains("WAVELET_KEYS=secretkey1,secretpub1\n"));
}

#[test]
fn edit_config_validates_and_writes_atomically_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestStack::bare("wsme");
    s.set("WAVELET_NODES", "3");
    // An "editor" that appends to the file it is given.
    let editor = s.dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\necho \"$WSM_TEST_APPEND\" >> \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |append: &str| -> Run {
        s.command(&["stack", "-s", &s.name, "edit-config"])
            .env("VISUAL", &editor)
            .env("WSM_TEST_APPEND", append)
            .output()
            .unwrap()
            .into()
    };
    let before = std::fs::read(s.config_file()).unwrap();
    let bad = run("WAVELET_SNOWBALL_K=lots");
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("WAVELET_SNOWBALL_K"), "{}", bad.stderr);
    assert_eq!(
        std::fs::read(s.config_file()).unwrap(),
        before,
        "a rejected edit changed the file"
    );

    run("WAVELET_KEYS=k1,p1").ok();
    let text = std::fs::read_to_string(s.config_file()).unwrap();
    assert!(
        text.contains("WAVELET_KEYS=k1,p1") && text.contains("WAVELET_NODES=3"),
        "{text}"
    );
    let mode = std::fs::metadata(s.config_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "a file holding secrets must be 0600");
    let leftovers: Vec<_> = std::fs::read_dir(s.config_dir().join("stacks"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_dropped_in_script_becomes_a_command() {
    let s = TestStack::bare("wsmd");
    let dir = s.script_folder().join("scripts/manage-stack");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hello-there.rhai"),
        "//! Say hello to the stack.\n//! usage: hello-there <who>\nimport \"config\" as cfg;\nif ARGS.len() != 1 { usage_error(\"hello-there needs a name\"); }\nlet ctx = cfg::context(STACK);\nprint(`hello ${ARGS[0]} from ${ctx.stack}`);\n",
    )
    .unwrap();
    let r = s.stack(&["hello-there", "world"]);
    assert_eq!(r.ok(), format!("hello world from {}\n", s.name));
    let help = s.wsm(&["stack", "help"]);
    assert!(
        help.ok().contains("hello-there <who>") && help.stdout.contains("Say hello to the stack.")
    );
    let bad = s.stack(&["hello-there"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains(&format!("usage: wsm stack -s {} hello-there <who>", s.name)),
        "{}",
        bad.stderr
    );

    // A dropped-in stdlib module overrides the bundled one of the same name.
    std::fs::create_dir_all(s.script_folder().join("stdlib")).unwrap();
    std::fs::write(
        s.script_folder().join("stdlib/greeting.rhai"),
        "fn word() { \"hi\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("greet.rhai"),
        "//! Greet.\n//! usage: greet\nimport \"greeting\" as g;\nprint(g::word());\n",
    )
    .unwrap();
    assert_eq!(s.stack(&["greet"]).ok(), "hi\n");
}

#[test]
fn a_script_error_names_the_file_and_line() {
    let s = TestStack::bare("wsms");
    let dir = s.script_folder().join("scripts/manage-stack");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("broken.rhai"),
        "//! Broken.\n//! usage: broken\nlet x = ;\n",
    )
    .unwrap();
    let r = s.stack(&["broken"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("broken.rhai:3"), "{}", r.stderr);

    // A misspelt primitive in a command (not only in the REPL) names the closest ones; the
    // names are gathered only when such an error is worded.
    std::fs::write(
        dir.join("misspelt.rhai"),
        "//! Misspelt.\n//! usage: misspelt\ndocker::conect(\"\");\n",
    )
    .unwrap();
    let r = s.stack(&["misspelt"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("misspelt.rhai:3") && r.stderr.contains("did you mean docker::connect"),
        "{}",
        r.stderr
    );
}

#[test]
fn multi_call_links_behave_as_subcommands() {
    let s = TestStack::bare("wsml");
    s.set("WAVELET_NODES", "6");
    let link = s.dir.path().join("manage-stack");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_wsm"), &link).unwrap();
    let out = std::process::Command::new(&link)
        .args(["-C"])
        .arg(s.config_dir())
        .args(["-s", &s.name, "config"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let r: Run = out.into();
    assert!(r.ok().contains("WAVELET_NODES=6"), "{}", r.stderr);
}

/// Usage lines name the command as it was called (issue 27 item 8): `wsm stack deploy` says
/// `usage: wsm stack deploy …`, the link `manage-stack deploy …`; nothing is deployed.
#[test]
fn usage_lines_name_the_command_as_typed() {
    let s = TestStack::bare("wsmu");
    let r = s.wsm(&["stack", "deploy", "--bogus"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("usage: wsm stack deploy ["),
        "{}",
        r.stderr
    );
    let r = s.wsm(&["manage-stack", "deploy", "--bogus"]);
    assert!(
        r.stderr.contains("usage: wsm manage-stack deploy ["),
        "{}",
        r.stderr
    );
    let link = s.dir.path().join("manage-stack");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_wsm"), &link).unwrap();
    let out = std::process::Command::new(&link)
        .arg("-C")
        .arg(s.config_dir())
        .args(["deploy", "--bogus"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let r: Run = out.into();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("usage: manage-stack deploy [")),
        "{}",
        r.stderr
    );
    assert!(s.services().is_empty());
}

/// `stack help` and `--help` in a pipe wrap to 80 columns (textwrap; clap for its own part),
/// and to `COLUMNS` when that names a width (as a terminal's would).
#[test]
fn help_wraps_to_80_columns_in_a_pipe() {
    let s = TestStack::bare("wsmw");
    for args in [
        &["stack", "help"][..],
        &["stack", "--help"],
        &["--help"],
        &["stack", "deploy", "--help"],
    ] {
        let out = s.command(args).env_remove("COLUMNS").output().unwrap();
        let r: Run = out.into();
        let text = r.ok();
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(
            widest <= 80 && widest > 60,
            "{args:?}: {widest} columns:\n{text}"
        );
    }
    let out = s
        .command(&["stack", "help"])
        .env("COLUMNS", "60")
        .output()
        .unwrap();
    let r: Run = out.into();
    let text = r.ok();
    assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
    // The usage lines stay whole words: a long one goes on across lines, indented.
    assert!(text.contains("\n      [--env-file <file>]..."), "{text}");
    // A command's --help is its usage, as typed, and its help.
    let r = s.wsm(&["stack", "deploy", "--help"]);
    assert!(
        r.ok().starts_with("usage: wsm stack deploy ["),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Deploy a stack from compose files"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_batch_file_starts_checks_and_stops_a_stack() {
    require_images();
    let s = TestStack::new("wsmb");
    s.set("WAVELET_NODES", "1");
    let batch = s.dir.path().join("cycle.rhai");
    std::fs::write(
        &batch,
        r#"
let name = ARGS[0];
wsm(`stack -s ${name} start`);
let st = stack(name);
let e = docker::connect("");
let running = e.tasks(#{ service: `${name}_wavelet`, "desired-state": "running" });
if running.len() != 1 { throw `expected 1 wavelet task, found ${running.len()}`; }
print(`checked ${name}: ${running.len()} wavelet task`);
st.stop();
"#,
    )
    .unwrap();
    let r = s.wsm(&["run", batch.to_str().unwrap(), &s.name]);
    assert!(
        r.ok()
            .contains(&format!("checked {}: 1 wavelet task", s.name)),
        "{}",
        r.stdout
    );
    assert!(
        s.services().is_empty(),
        "the batch file's stop left services"
    );
}

/// The test bed's own bound: a command that does not end fails its test, naming it and what it
/// printed, instead of holding up the whole run (a `sleep` stands for a hung `wsm`).
#[test]
fn a_command_past_its_deadline_fails_the_test_naming_it() {
    let hung = std::panic::catch_unwind(|| {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "echo waiting; exec sleep 60"]);
        output_within(&mut cmd, b"", std::time::Duration::from_secs(1))
    });
    let message = hung.expect_err("a command past its deadline must fail the test");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("sh -c echo waiting; exec sleep 60 did not end within 1 s")
            && message.contains("stdout: waiting"),
        "{message}"
    );
    let ended = output_within(
        std::process::Command::new("sh").args(["-c", "cat; echo done >&2"]),
        b"input",
        std::time::Duration::from_secs(60),
    );
    assert_eq!(
        (ended.stdout.as_slice(), ended.stderr.as_slice()),
        (&b"input"[..], &b"done\n"[..])
    );
}
