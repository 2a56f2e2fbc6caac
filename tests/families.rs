//! A family of commands is a folder of scripts: dropped into the search path, it is a command
//! of the CLI, listed by `wsm --help`, run from a batch file's `wsm(…)`, and (tests/repl.rs)
//! completed in the REPL, with no change to the host. None of it needs Docker.

mod common;

use common::wsm_command;

/// A search root with `scripts/greetings/hello.rhai` and a family description.
fn search_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let family = root.path().join("scripts/greetings");
    std::fs::create_dir_all(&family).unwrap();
    std::fs::write(
        family.join("hello.rhai"),
        "//! Say hello.\n//! usage: hello <who> [--loud]\nlet a = args::parse(USAGE_ARGS, ARGS);\nlet text = `hello ${a.who}`;\nprint(if a.loud { text.to_upper() } else { text });\n",
    )
    .unwrap();
    std::fs::write(
        family.join("_family.rhai"),
        "//! Greet people\n//! alias: greet\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    root
}

fn run(root: &std::path::Path, args: &[&str]) -> common::Run {
    let cwd = tempfile::tempdir().expect("cwd");
    wsm_command(cwd.path(), &root.join("config"), args)
        .env("WSM_SCRIPT_PATH", root)
        .output()
        .expect("run wsm")
        .into()
}

#[test]
fn a_dropped_in_family_runs_is_listed_and_parses_its_usage_line() {
    let root = search_root();
    let p = root.path();
    assert_eq!(
        run(p, &["greetings", "hello", "world"]).ok(),
        "hello world\n"
    );
    assert_eq!(
        run(p, &["greet", "hello", "you", "--loud"]).ok(),
        "HELLO YOU\n"
    );

    let help = run(p, &["--help"]);
    assert!(
        help.ok().contains("greetings") && help.stdout.contains("Greet people"),
        "{}",
        help.stdout
    );
    let family_help = run(p, &["greetings", "help"]);
    assert!(
        family_help.ok().contains("hello <who> [--loud]"),
        "{}",
        family_help.stdout
    );

    // Bad input: exit 2, the usage line of the command.
    let bad = run(p, &["greetings", "hello"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("usage: wsm greetings hello <who> [--loud]"),
        "{}",
        bad.stderr
    );
    let unknown = run(p, &["greetings", "bye"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("commands are: hello"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_batch_file_runs_a_dropped_in_family_through_wsm() {
    let root = search_root();
    let batch = root.path().join("batch.rhai");
    std::fs::write(
        &batch,
        "wsm(\"greetings hello batch\");\nwsm(`greet hello ${ARGS[0]} --loud`);\n",
    )
    .unwrap();
    let r = run(root.path(), &["run", batch.to_str().unwrap(), "args"]);
    assert_eq!(r.ok(), "hello batch\nHELLO ARGS\n");
}

#[test]
fn an_empty_stack_name_is_bad_input_and_touches_nothing() {
    let root = search_root();
    for args in [
        &["stack", "-s", "", "status"][..],
        &["stack", "--stack", "", "stop"][..],
    ] {
        let r = run(root.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("needs a stack name"), "{}", r.stderr);
        assert!(!r.stdout.contains("default-local"), "{}", r.stdout);
    }
}
