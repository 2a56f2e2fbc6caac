//! Issue 27 items 1 and 7 on the local engine: `stack ls`, `stack services` and `stack ps`
//! print what `docker stack ls/services/ps` print with the same `--format`, `-q`, `--filter`
//! and `--no-trunc`, line for line (the Docker CLI is the witness), on two stacks of sleeping
//! services deployed with `wsm stack deploy -c`; a full service name (`<stack>_<service>`)
//! names its stack without `-s` (`docker service inspect`); a bad filter or template exits 2
//! in one line.

mod common;

use common::*;

const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// Two stacks `<base>a` and `<base>b` of one test, removed in `Drop` (their `TestStack`s).
struct Pair {
    base: String,
    a: TestStack,
    b: TestStack,
}

fn compose(port: u16) -> String {
    format!(
        "services:
  app:
    image: {IMAGE}
    command: [\"sleep\", \"3600\"]
    deploy:
      replicas: 2
  web:
    image: {IMAGE}
    command: [\"sleep\", \"3600\"]
    ports: [\"{port}:80\"]
"
    )
}

impl Pair {
    fn deploy() -> Pair {
        let base = unique("dh");
        let mut a = TestStack::bare("x");
        a.name = format!("{base}a");
        let mut b = TestStack::bare("x");
        b.name = format!("{base}b");
        for s in [&a, &b] {
            let file = s.dir.path().join("stack.yml");
            std::fs::write(&file, compose(free_port())).unwrap();
            s.wsm(&[
                "stack",
                "deploy",
                "-c",
                file.to_str().unwrap(),
                "--timeout",
                "120",
                &s.name,
            ])
            .ok();
        }
        Pair { base, a, b }
    }
}

/// `wsm stack <args> <stack>` and `docker stack <args> <stack>` print the same lines.
fn same_stack_command(s: &TestStack, args: &[&str], stack: &str, keep: &dyn Fn(&str) -> bool) {
    let mut argv = vec!["stack"];
    argv.extend_from_slice(args);
    argv.push(stack);
    same_as_docker(s, &argv, &argv, keep);
}

/// wsm's output and the Docker CLI's for the same arguments, compared when two docker calls
/// around the wsm call agree (another test's stack, or a "5 seconds ago" turning into "6",
/// may change the output in between); `keep` picks the lines that are ours.
fn same_as_docker(s: &TestStack, wsm: &[&str], docker_args: &[&str], keep: &dyn Fn(&str) -> bool) {
    let pick = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| keep(l))
            .map(str::to_string)
            .collect()
    };
    for _ in 0..20 {
        let before = pick(&docker(docker_args));
        let r = s.wsm(wsm);
        assert_eq!(r.code, 0, "wsm {wsm:?}: {}", r.stderr);
        let after = pick(&docker(docker_args));
        if before == after {
            let ours = pick(&r.stdout);
            assert!(!ours.is_empty(), "wsm {wsm:?} printed nothing of ours");
            assert_eq!(
                ours, before,
                "wsm {wsm:?} differs from docker {docker_args:?}"
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    panic!("docker {docker_args:?} never printed the same twice in a row");
}

fn all(_: &str) -> bool {
    true
}

#[test]
fn read_commands_print_what_docker_prints() {
    let p = Pair::deploy();
    let (a, b) = (&p.a, &p.b);
    let ours = |l: &str| l.starts_with(&p.base) || l.starts_with("NAME ");
    let ours_json = |l: &str| l.contains(&format!("\"Name\":\"{}", p.base));

    // stack ls: only our stacks' lines (other tests deploy theirs meanwhile); the default table
    // whole, since its widths depend on every stack's name.
    same_as_docker(a, &["stack", "ls"], &["stack", "ls"], &all);
    same_as_docker(
        a,
        &["stack", "ls", "--format", "{{.Name}}"],
        &["stack", "ls", "--format", "{{.Name}}"],
        &ours,
    );
    same_as_docker(
        a,
        &["stack", "ls", "--format", "json"],
        &["stack", "ls", "--format", "json"],
        &ours_json,
    );
    let table = "table {{.Name}}\t{{.Services}}";
    same_as_docker(
        a,
        &["stack", "ls", "--format", table],
        &["stack", "ls", "--format", table],
        &all,
    );
    // wsm's own name filter keeps exactly our two stacks, as docker's lines of them.
    let filter = format!("name={}", p.base);
    same_as_docker(
        a,
        &[
            "stack",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}} {{.Services}}",
        ],
        &["stack", "ls", "--format", "{{.Name}} {{.Services}}"],
        &|l: &str| l.starts_with(&p.base),
    );

    // Every form on one stack; the other checks that stacks are told apart.
    for (s, every) in [(a, true), (b, false)] {
        let n = s.name.as_str();
        let app = format!("name={n}_app");
        for args in [
            vec!["services"],
            vec!["services", "-q"],
            vec!["services", "--format", "{{.Name}}"],
            vec!["services", "--format", "json"],
            vec![
                "services",
                "--format",
                "table {{.Name}}\t{{.Replicas}}\t{{.Ports}}",
            ],
            vec!["services", "--filter", &app],
            vec!["services", "--filter", "mode=replicated", "-q"],
            vec![
                "services",
                "--format",
                "{{upper .Name}} {{json .Ports}} {{truncate .ID 4}}",
            ],
            // `stack ps` below, once "N seconds ago" has turned into minutes.
        ]
        .into_iter()
        .filter(|args| every || args.len() <= 1)
        {
            same_stack_command(s, &args, n, &all);
        }
    }
    // CURRENT STATE says "Running 5 seconds ago": it changes every second, too often for two
    // docker calls around wsm's to agree on a loaded machine; minutes change rarely.
    for s in [a, b] {
        wait_for("the tasks to be a minute old", 120, || {
            !docker(&["stack", "ps", &s.name, "--format", "{{.CurrentState}}"]).contains("second")
        });
    }
    for (s, every) in [(a, true), (b, false)] {
        let n = s.name.as_str();
        let app = format!("name={n}_app");
        for args in [
            vec!["ps"],
            vec!["ps", "-q"],
            vec!["ps", "--no-trunc"],
            vec!["ps", "--filter", "desired-state=running"],
            vec![
                "ps",
                "--filter",
                &app,
                "--format",
                "{{.Name}} {{.DesiredState}}",
            ],
            vec!["ps", "--format", "{{.Name}}"],
            vec!["ps", "--format", "json"],
            vec![
                "ps",
                "--format",
                "table {{.Name}}\t{{.Node}}\t{{.CurrentState}}",
            ],
        ]
        .into_iter()
        .filter(|args| every || args.len() <= 1)
        {
            same_stack_command(s, &args, n, &all);
        }
    }

    // A slot's older task, indented in a table only, as docker does.
    docker(&[
        "service",
        "update",
        "--force",
        "--detach",
        &format!("{}_app", a.name),
    ]);
    wait_for("a replaced task", 60, || {
        docker(&["stack", "ps", &a.name, "-f", "desired-state=shutdown", "-q"])
            .lines()
            .count()
            >= 1
    });
    // Settled first: the update's tasks stop changing state (CURRENT STATE, which still
    // says seconds, is left out).
    wait_for("the forced update to complete", 90, || {
        docker(&[
            "service",
            "inspect",
            &format!("{}_app", a.name),
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ])
        .trim()
            == "completed"
    });
    for args in [
        vec![
            "ps",
            "--format",
            "table {{.ID}}\t{{.Name}}\t{{.DesiredState}}",
        ],
        vec!["ps", "--format", "{{.Name}} {{.DesiredState}}"],
    ] {
        same_stack_command(a, &args, &a.name, &all);
    }
    let table = a.wsm(&["stack", "ps", &a.name, "--format", "table {{.Name}}"]);
    assert!(table.ok().contains(" \\_ "), "{}", table.stdout);
}

#[test]
fn a_full_service_name_names_its_stack() {
    let p = Pair::deploy();
    let app = format!("{}_app", p.b.name);
    // No -s: the configured stack is another one (default-local); the full name says which.
    let r = p.a.wsm(&["stack", "scale", &format!("{app}=3")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let replicas = docker(&[
        "service",
        "inspect",
        &app,
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
    ]);
    assert_eq!(replicas.trim(), "3");
    // The other stack's service is untouched.
    let other = docker(&[
        "service",
        "inspect",
        &format!("{}_app", p.a.name),
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
    ]);
    assert_eq!(other.trim(), "2");

    // A node id in full (`<stack>_<service>.<slot>`) reaches that stack's task too.
    let container = docker(&["ps", "-q", "--filter", &format!("name={app}.1.")]);
    let r =
        p.a.wsm(&["stack", "shell", &format!("{app}.1"), "hostname"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), container.trim(), "the task's container");

    // Services of two stacks in one command: refused, nothing scaled.
    let r = p.a.wsm(&[
        "stack",
        "scale",
        &format!("{}_app=1", p.a.name),
        &format!("{app}=1"),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("different stacks"), "{}", r.stderr);
    let replicas = docker(&[
        "service",
        "inspect",
        &app,
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
    ]);
    assert_eq!(replicas.trim(), "3");

    // `rollback <stack>_app` without -s: that stack's service back to its spec before the
    // scale (2 replicas), and the command says so (exit 0).
    let r = p.a.wsm(&["stack", "rollback", &app]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let replicas = docker(&[
        "service",
        "inspect",
        &app,
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
    ]);
    assert_eq!(replicas.trim(), "2");
}

#[test]
fn a_bad_filter_or_template_is_one_line_and_exit_2() {
    // Refused before any engine is asked: no stack needed.
    let s = TestStack::bare("dhbad");
    let n = s.name.as_str();
    for args in [
        vec!["stack", "ps", "--filter", "colour=red", n],
        vec!["stack", "services", "-f", "name", n],
        vec!["stack", "ls", "--filter", "mode=global"],
        vec!["stack", "services", "--format", "{{.Name", n],
        vec!["stack", "ps", "--format", "{{.Nope}}", n],
    ] {
        let r = s.wsm(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
    }
}
