//! What a shell user meets around the commands, on the real local engine with the Docker CLI
//! as witness: `--json` outputs against `docker … --format json`, the shells' completion that
//! asks wsm (`wsm __complete`, and bash itself in a pseudo-terminal), and Docker contexts
//! made and chosen with `docker context create/use`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{docker, remove_stack, unique, wait_for, Run};
use serde_json::Value;

const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// A stack deployed by the Docker CLI (services `web` ×1 and `api` ×2), removed in `Drop`.
struct CliStack {
    name: String,
    dir: tempfile::TempDir,
}

impl CliStack {
    fn deploy(prefix: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
        let stack = CliStack {
            name: unique(prefix),
            dir,
        };
        let file = stack.dir.path().join("stack.yml");
        let service = |replicas: u32| {
            format!("    image: {IMAGE}\n    command: [sleep, '3600']\n    deploy: {{endpoint_mode: dnsrr, replicas: {replicas}}}\n")
        };
        std::fs::write(
            &file,
            format!("services:\n  web:\n{}  api:\n{}", service(1), service(2)),
        )
        .expect("write stack file");
        docker(&[
            "stack",
            "deploy",
            "--detach=true",
            "--resolve-image",
            "never",
            "-c",
            file.to_str().expect("path"),
            &stack.name,
        ]);
        wait_for("the stack's three tasks to run", 120, || {
            docker(&[
                "stack",
                "ps",
                &stack.name,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.CurrentState}}",
            ])
            .lines()
            .filter(|l| l.starts_with("Running"))
            .count()
                == 3
        });
        stack
    }

    /// `wsm -C <empty config> <args…>` with the given environment.
    fn wsm(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let cwd = self.dir.path();
        let mut cmd = common::wsm_command(cwd, &cwd.join("config"), args);
        cmd.env_remove("DOCKER_CONTEXT");
        cmd.envs(env.iter().copied());
        cmd.output().expect("run wsm").into()
    }
}

impl Drop for CliStack {
    fn drop(&mut self) {
        remove_stack(&self.name);
    }
}

/// The Docker CLI's `--format json` lines as values.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The whole of stdout as one JSON document.
fn document(run: &Run) -> Value {
    serde_json::from_str(run.ok())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", run.stdout))
}

#[test]
fn json_outputs_are_one_document_that_agrees_with_the_docker_cli() {
    let s = CliStack::deploy("wsmjson");
    // stack ls
    let ours = document(&s.wsm(&["stack", "ls", "--json"], &[]));
    let row = ours
        .as_array()
        .expect("an array")
        .iter()
        .find(|r| r["name"] == s.name.as_str())
        .unwrap_or_else(|| panic!("{} is not in {ours}", s.name));
    let theirs = json_lines(&docker(&["stack", "ls", "--format", "json"]));
    let witness = theirs
        .iter()
        .find(|r| r["Name"] == s.name.as_str())
        .expect("docker stack ls lists the stack");
    assert_eq!(
        row["services"].to_string(),
        witness["Services"].as_str().unwrap()
    );

    // stack services
    let ours = document(&s.wsm(&["stack", "-s", &s.name, "services", "--json"], &[]));
    let ours: BTreeSet<(String, String, String, String)> = ours
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (f("name"), f("mode"), f("replicas"), f("image"))
        })
        .collect();
    let theirs: BTreeSet<(String, String, String, String)> =
        json_lines(&docker(&["stack", "services", &s.name, "--format", "json"]))
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (f("Name"), f("Mode"), f("Replicas"), f("Image"))
            })
            .collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 2);

    // stack ps: the same tasks, by id and name, on the same nodes
    let ours = document(&s.wsm(&["stack", "-s", &s.name, "ps", "--json"], &[]));
    let ours: BTreeSet<(String, String)> = ours
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap_or_default();
            (
                id[..12.min(id.len())].to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let theirs: BTreeSet<(String, String)> =
        json_lines(&docker(&["stack", "ps", &s.name, "--format", "json"]))
            .iter()
            .map(|r| {
                (
                    r["ID"].as_str().unwrap().to_string(),
                    r["Name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    assert_eq!(ours, theirs);

    // swarm list (no swarm recorded) and spawn scan (one entry per node)
    assert_eq!(
        document(&s.wsm(&["swarm", "list", "--json"], &[])),
        serde_json::json!([])
    );
    let nodes = document(&s.wsm(&["spawn", "scan", "--json"], &[]));
    let node_count = docker(&["node", "ls", "-q"]).lines().count();
    assert_eq!(nodes.as_array().expect("an array").len(), node_count);
}

#[test]
fn shell_completion_asks_wsm_for_stacks_and_node_ids() {
    let s = CliStack::deploy("wsmcomp");
    let bash = s.wsm(&["completions", "bash"], &[]);
    let registered = bash
        .ok()
        .lines()
        .find(|l| l.starts_with("complete -o default -F _wsm wsm "))
        .unwrap_or_else(|| panic!("no complete line:\n{}", bash.stdout));
    assert!(registered.contains(" manage-stack"), "{registered}");
    let bin = Path::new(env!("CARGO_BIN_EXE_wsm"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let prefix = &s.name[..s.name.len() - 2];
    for shell in ["zsh", "fish"] {
        let text = s.wsm(&["completions", shell], &[]);
        assert!(text.ok().contains("wsm __complete --"));
        let file = s.dir.path().join(format!("wsm.{shell}"));
        std::fs::write(&file, &text.stdout).unwrap();
        let check = Command::new(shell)
            .arg("-n")
            .arg(&file)
            .output()
            .expect(shell);
        assert!(
            check.status.success(),
            "{shell} -n: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // fish itself, with the script loaded, completes the stack's name and its node ids.
    let fish = s.dir.path().join("wsm.fish");
    let ask = |line: &str| -> String {
        let out = Command::new("fish")
            .args(["--no-config", "-c"])
            .arg(format!("source {}; complete -C '{line}'", fish.display()))
            .current_dir(s.dir.path())
            .env("PATH", &path)
            .env("WSM_CONFIG_DIR", s.dir.path().join("config"))
            .env("XDG_CONFIG_HOME", s.dir.path().join(".xdg-config"))
            .env("XDG_STATE_HOME", s.dir.path().join(".xdg-state"))
            .output()
            .expect("fish");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let got = ask(&format!("wsm stack -s {prefix}"));
    assert!(got.lines().any(|l| l == s.name), "fish offered: {got}");
    let got = ask(&format!("wsm stack -s {} shell ", s.name));
    assert!(got.lines().any(|l| l == "web"), "fish offered: {got}");
    let script = s.dir.path().join("wsm.bash");
    std::fs::write(&script, &bash.stdout).expect("write script");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let stacks = s.wsm(&["__complete", "--", "stack", "-s", prefix], &[]);
    assert!(
        stacks.ok().lines().any(|l| l == s.name),
        "{}",
        stacks.stdout
    );
    let ids = s.wsm(
        &["__complete", "--", "stack", "-s", &s.name, "shell", ""],
        &[],
    );
    let ids: Vec<&str> = ids.ok().lines().collect();
    assert!(
        ids.contains(&"web") && ids.iter().any(|i| i.starts_with("api")),
        "{ids:?}"
    );

    // Bash itself, with the script loaded, in a pseudo-terminal.
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-i"])
        .current_dir(s.dir.path())
        .env("PATH", &path)
        .env("WSM_CONFIG_DIR", s.dir.path().join("config"))
        .env("XDG_CONFIG_HOME", s.dir.path().join(".xdg-config"))
        .env("XDG_STATE_HOME", s.dir.path().join(".xdg-state"))
        .env("TERM", "dumb");
    let mut sh = rexpect::session::spawn_command(cmd, Some(20_000)).expect("bash");
    // rexpect turns the terminal's echo off, and readline then shows nothing of the line;
    // bash -i sets its own prompt, and the quotes keep this line's echo from matching it.
    sh.send_line("stty echo; PS1='bash''$ '")
        .expect("set the prompt");
    sh.exp_string("bash$ ").expect("a bash prompt");
    sh.send_line(&format!("source {}", script.display()))
        .expect("source");
    sh.exp_string("bash$ ").expect("a bash prompt");
    sh.send(&format!("wsm stack -s {prefix}\t")).expect("type");
    sh.flush().expect("flush");
    sh.exp_string(&s.name)
        .expect("bash completes the stack's name");
    sh.send_control('c').expect("Ctrl-C");
    sh.exp_string("bash$ ").expect("a bash prompt");
    sh.send(&format!("wsm stack -s {} shell \t\t", s.name))
        .expect("type");
    sh.flush().expect("flush");
    sh.exp_string("web")
        .expect("bash offers the stack's node ids");
    sh.send_control('c').expect("Ctrl-C");
    sh.exp_string("bash$ ").expect("a bash prompt");
    sh.send_line("exit").expect("exit");
}

/// A HOME of the test's own, where the Docker CLI keeps its contexts.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The Docker CLI with this HOME and no DOCKER_HOST or DOCKER_CONTEXT.
    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("HOME", self.path())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_CONFIG")
            .output()
            .expect("docker CLI")
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn the_docker_context_in_use_is_the_one_the_docker_cli_would_use() {
    let s = CliStack::deploy("wsmctx");
    let home = Home::new();
    let good = unique("good");
    let bad = unique("bad");
    let missing_socket = home.path().join("no-engine.sock");
    // The good context reaches the local engine by a path of its own, so that wsm's use of it
    // shows in the address it connects to.
    let own_socket = home.path().join("engine.sock");
    std::os::unix::fs::symlink("/var/run/docker.sock", &own_socket).expect("symlink");
    let own_host = format!("unix://{}", own_socket.display());
    let good_endpoint = format!("host={own_host}");
    home.docker_ok(&["context", "create", &good, "--docker", &good_endpoint]);
    home.docker_ok(&[
        "context",
        "create",
        &bad,
        "--docker",
        &format!("host=unix://{}", missing_socket.display()),
    ]);
    home.docker_ok(&["context", "use", &good]);
    let home_env = home.path().display().to_string();
    let env = |extra: &[(&'static str, &str)]| {
        let mut e: Vec<(&str, String)> = vec![("HOME", home_env.clone())];
        e.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        e
    };
    let run = |args: &[&str], extra: &[(&'static str, &str)]| -> Run {
        let vars = env(extra);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let cwd = s.dir.path();
        let mut cmd = common::wsm_command(cwd, &cwd.join("config"), args);
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_CONFIG");
        cmd.envs(vars);
        cmd.output().expect("run wsm").into()
    };

    // The current context (docker context use): wsm answers as the CLI does, -v names it.
    let ls = run(&["-v", "stack", "ls", "--json"], &[]);
    let names: BTreeSet<String> = document(&ls)
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    // Other tests' stacks come and go meanwhile: the test's own stack is the one compared.
    let witness: BTreeSet<String> = home_ls(&home);
    assert!(names.contains(&s.name), "{names:?}");
    assert!(witness.contains(&s.name), "{witness:?}");
    assert!(
        ls.stderr.contains(&format!("connected to {own_host}"))
            && ls.stderr.contains(&format!("Docker context \"{good}\""))
            && ls.stderr.contains("config.json"),
        "-v names the context and its endpoint: {}",
        ls.stderr
    );

    // DOCKER_CONTEXT names a context whose engine is not there: wsm fails naming it, as the CLI does.
    let failed = run(&["stack", "ls"], &[("DOCKER_CONTEXT", &bad)]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains(&format!("\"{bad}\"")) && failed.stderr.contains("no-engine.sock"),
        "{}",
        failed.stderr
    );
    assert_eq!(failed.stderr.lines().count(), 1, "{}", failed.stderr);
    let cli = home.docker(&["--context", &bad, "stack", "ls"]);
    assert!(!cli.status.success());

    // DOCKER_HOST comes before DOCKER_CONTEXT and the current context; --context before all.
    let by_host = run(
        &["-v", "stack", "ls"],
        &[
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
            ("DOCKER_CONTEXT", &bad),
        ],
    );
    assert!(by_host.ok().contains(&s.name));
    assert!(by_host.stderr.contains("DOCKER_HOST"), "{}", by_host.stderr);
    let by_flag = run(
        &["--context", &bad, "stack", "ls"],
        &[("DOCKER_HOST", "unix:///var/run/docker.sock")],
    );
    assert_eq!(by_flag.code, 1, "{}", by_flag.stderr);
    assert!(by_flag.stderr.contains(&bad), "{}", by_flag.stderr);

    // A context that does not exist is bad input.
    let unknown = run(&["--context", "wsm-no-such-context", "stack", "ls"], &[]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("wsm-no-such-context"),
        "{}",
        unknown.stderr
    );
}

/// The stacks the Docker CLI lists with the test's HOME (its current context).
fn home_ls(home: &Home) -> BTreeSet<String> {
    json_lines(&home.docker_ok(&["stack", "ls", "--format", "json"]))
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_string())
        .collect()
}
