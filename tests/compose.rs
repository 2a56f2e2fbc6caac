//! Compose files through wsm's primitives (`compose::load`, `compose::plan`, `e.deploy`,
//! `e.remove_stack`) on the real engine, the Docker CLI as witness: a secret and a config whose
//! files change between two deploys, jobs that complete or fail, and bad files refused before
//! anything reaches the swarm. Issue 26's compose-spec keys through `stack deploy` and
//! `stack plan`: `profiles`, the top-level `name`, `include`, keys with no meaning on a swarm.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// An image that exists here (nothing can be pulled) and has a shell.
const IMAGE: &str = "localhost:5000/wavelet-stack-base:latest";

/// The batch file: load `ARGS[0]`, deploy it as `ARGS[1]` and wait (`ARGS[2]` seconds).
const DEPLOY: &str = r#"
let doc = compose::load([ARGS[0]], #{});
let e = docker::connect("");
e.deploy(ARGS[1], compose::plan(doc, ARGS[1]), #{ resolve_image: "never", timeout: parse_int(ARGS[2]) });
"#;

/// A test's stack: its name, a directory for its files, removed with everything in `Drop`.
struct Stack {
    name: String,
    dir: tempfile::TempDir,
}

impl Stack {
    fn new(prefix: &str) -> Self {
        let s = Stack {
            name: unique(prefix),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(s.dir.path().join("deploy.rhai"), DEPLOY).unwrap();
        std::fs::create_dir_all(s.dir.path().join("config")).unwrap();
        s
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    /// Deploys `stack.yml` of the directory through `wsm run`, waiting up to `timeout` s.
    fn deploy(&self, timeout: u64) -> Run {
        let dir = self.dir.path();
        wsm_command(dir, &dir.join("config"), &["run"])
            .arg(dir.join("deploy.rhai"))
            .arg(dir.join("stack.yml"))
            .arg(&self.name)
            .arg(timeout.to_string())
            .output()
            .unwrap()
            .into()
    }

    /// `wsm stack <args…>` in the stack's directory, with `env` set.
    fn stack(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let dir = self.dir.path();
        let mut all = vec!["stack"];
        all.extend_from_slice(args);
        let mut c = wsm_command(dir, &dir.join("config"), &all);
        c.env_remove("COMPOSE_PROFILES");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap().into()
    }

    /// Names of the stack's objects of a kind (`secret`, `config`, `service`, `network`).
    fn objects(&self, kind: &str) -> Vec<String> {
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let mut v: Vec<String> = docker(&[kind, "ls", "--filter", &label, "--format", "{{.Name}}"])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// Runs a command in the running task of service `service`.
    fn exec(&self, service: &str, cmd: &[&str]) -> String {
        let filter = format!(
            "label=com.docker.swarm.service.name={}_{service}",
            self.name
        );
        let id = docker(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            "status=running",
        ]);
        let id = id.lines().next().expect("a running task").to_string();
        let mut args = vec!["exec", id.as_str()];
        args.extend_from_slice(cmd);
        docker(&args)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        remove_stack(&self.name);
        for kind in ["secret", "config"] {
            for name in self.objects(kind) {
                docker_quiet(&[kind, "rm", &name]);
            }
        }
    }
}

/// A stack of one service reading a secret and a config from files of the stack's directory.
fn files_stack() -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    deploy: {{endpoint_mode: dnsrr}}\n    secrets: [token]\n    configs:\n      - source: settings\n        target: /etc/settings\nsecrets:\n  token: {{file: ./token.txt}}\nconfigs:\n  settings: {{file: ./settings.conf}}\n"
    )
}

#[test]
fn a_changed_secret_or_config_file_rolls_the_service_to_a_new_version() {
    let s = Stack::new("wsmfiles");
    s.write("stack.yml", &files_stack());
    s.write("token.txt", "first-token");
    s.write("settings.conf", "level=1");
    s.deploy(120).ok();
    assert_eq!(s.exec("app", &["cat", "/run/secrets/token"]), "first-token");
    let first = (s.objects("secret"), s.objects("config"));

    s.write("token.txt", "second-token");
    s.write("settings.conf", "level=2");
    s.deploy(120).ok();
    wait_for("the task to read the new secret", 60, || {
        docker_quiet(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={}_app", s.name),
            "--filter",
            "status=running",
        ])
        .lines()
        .count()
            == 1
            && s.exec("app", &["cat", "/run/secrets/token"]) == "second-token"
    });
    assert_eq!(s.exec("app", &["cat", "/etc/settings"]), "level=2");
    let (secrets, configs) = (s.objects("secret"), s.objects("config"));
    // One version each, named by the content, the first ones gone.
    let token = format!("{}_token-", s.name);
    assert!(
        secrets.len() == 1 && secrets[0].starts_with(&token),
        "{secrets:?}"
    );
    assert!(configs.len() == 1 && configs[0].starts_with(&format!("{}_settings-", s.name)));
    assert_ne!(secrets, first.0);
    assert_ne!(configs, first.1);
    let listed = docker(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(
        listed.lines().any(|l| l == secrets[0]),
        "docker secret ls:\n{listed}"
    );
}

#[test]
fn a_replicated_job_completes_and_deploy_returns() {
    let s = Stack::new("wsmjob");
    s.write(
        "stack.yml",
        &format!("services:\n  once:\n    image: {IMAGE}\n    command: [sh, -c, 'echo done']\n    deploy: {{mode: replicated-job, replicas: 2}}\n"),
    );
    let started = Instant::now();
    let run = s.deploy(120);
    run.ok();
    assert!(started.elapsed() < Duration::from_secs(120));
    let done = docker(&[
        "service",
        "ps",
        &format!("{}_once", s.name),
        "--format",
        "{{.CurrentState}}",
    ]);
    assert_eq!(
        done.lines().filter(|l| l.starts_with("Complete")).count(),
        2,
        "{done}"
    );
}

#[test]
fn a_failing_job_fails_deploy_with_its_error_within_the_deadline() {
    let s = Stack::new("wsmjobfail");
    s.write(
        "stack.yml",
        &format!("services:\n  broken:\n    image: {IMAGE}\n    command: [sh, -c, 'exit 3']\n    deploy: {{mode: replicated-job}}\n"),
    );
    let started = Instant::now();
    let run = s.deploy(60);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        run.stderr
            .contains(&format!("service {}_broken: 1 task(s) failed", s.name))
            && run.stderr.contains("non-zero exit (3)"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_files_exit_2_naming_the_file_and_key_and_create_nothing() {
    let cases = [
        ("services:\n  a:\n    image: i\n    image: j\n", "duplicate mapping key: image"),
        ("services:\n  a:\n    image: i\n    colour: red\n", "services.a: unknown key \"colour\""),
        ("services:\n  a:\n    image: i\n    env_file: missing.env\n", "services.a.env_file:"),
        ("services:\n  a:\n    image: i\n    secrets: [s]\nsecrets:\n  s: {file: ./nope.txt}\n", "secrets.s.file:"),
        ("services:\n  a:\n    image: ${WSM_TEST_UNSET_IMAGE?set an image}\n", "services.a.image: required variable WSM_TEST_UNSET_IMAGE is missing a value: set an image"),
    ];
    for (yaml, want) in cases {
        let s = Stack::new("wsmbad");
        s.write("stack.yml", yaml);
        let run = s.deploy(30);
        let file = s.dir.path().join("stack.yml");
        assert_eq!(run.code, 2, "{yaml}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(&format!("{}: ", file.display())),
            "{yaml}: no file in {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(want),
            "{yaml}: {want:?} not in {}",
            run.stderr
        );
        for kind in ["service", "network", "secret", "config"] {
            assert!(s.objects(kind).is_empty(), "{yaml}: a {kind} was created");
        }
    }
}

/// Issue 26: a file written for `docker compose`, deployed with `stack deploy -c` and no NAME:
/// its top-level `name:` names the stack; `--profile tools` deploys `tools` and not `debug`;
/// `include` (the long form, with its own env file and a config file beside it) brings `db`,
/// interpolated with the included file's values and its config read from its own folder;
/// `build`, `develop` and `pull_policy` are no error. Then `stack plan --prune` with
/// `COMPOSE_PROFILES=debug` (no --profile) would create `debug` and remove `tools`.
#[test]
fn profiles_name_and_include_deploy_as_the_compose_spec_says() {
    let s = Stack::new("wsmspec");
    std::fs::create_dir_all(s.dir.path().join("db")).unwrap();
    let name = &s.name;
    s.write(
        "main.yml",
        &format!(
            "name: {name}\ninclude:\n  - path: db/compose.yml\n    env_file: db/db.env\nservices:\n  web:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    build: .\n    develop: {{watch: [{{path: ., action: rebuild}}]}}\n    pull_policy: always\n    depends_on: [db]\n  debug:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    profiles: [debug]\n  tools:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    profiles: [tools, ops]\n"
        ),
    );
    s.write(
        "db/compose.yml",
        &format!("services:\n  db:\n    image: {IMAGE}\n    command: [sleep, '${{DB_SLEEP}}']\n    configs: [{{source: dbconf, target: /etc/db.conf}}]\nconfigs:\n  dbconf: {{file: ./db.conf}}\n"),
    );
    s.write("db/db.env", "DB_SLEEP=3601\n");
    s.write("db/db.conf", "from the included folder\n");
    let r = s.stack(
        &[
            "deploy",
            "-c",
            "main.yml",
            "--profile",
            "tools",
            "--resolve-image",
            "never",
            "--timeout",
            "90",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let services = s.objects("service");
    assert_eq!(
        services,
        [
            format!("{name}_db"),
            format!("{name}_tools"),
            format!("{name}_web")
        ]
    );
    let args = docker(&[
        "service",
        "inspect",
        &format!("{name}_db"),
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Args}}",
    ]);
    assert_eq!(args.trim(), r#"["sleep","3601"]"#);
    assert_eq!(
        s.exec("db", &["cat", "/etc/db.conf"]),
        "from the included folder\n"
    );

    let r = s.stack(
        &[
            "plan",
            "-c",
            "main.yml",
            "--prune",
            "--resolve-image",
            "never",
        ],
        &[("COMPOSE_PROFILES", "debug")],
    );
    assert_eq!(r.code, 3, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("+ service {name}_debug (create)")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("- service {name}_tools (remove)")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1 to create, 0 to update, 1 to remove"),
        "{}",
        r.stdout
    );
}

/// Issue 27 item 5: an `--env-file` written with docker compose's rules (inline comments,
/// both quotes, escapes, a value over two lines, `export`, `${VAR}` of an earlier line and
/// of the environment, `${VAR:-default}`) reaches the service's environment as compose reads
/// it: `docker service inspect` shows each value.
#[test]
fn an_env_file_is_read_by_compose_rules_up_to_the_service() {
    let s = Stack::new("wsmdotenv");
    let keys = [
        "PLAIN",
        "COMMENTED",
        "HASH",
        "SINGLE",
        "DOUBLE",
        "TWO_LINES",
        "EXPORTED",
        "EARLIER",
        "FROM_ENV",
        "DEFAULTED",
    ];
    let environment: String = keys
        .iter()
        .map(|k| format!("      {k}: \"${{{k}}}\"\n"))
        .collect();
    s.write(
        "stack.yml",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    environment:\n{environment}"
        ),
    );
    s.write(
        "values.env",
        "# a comment line\n\
         PLAIN=two words\n\
         COMMENTED=value # an inline comment\n\
         HASH=value#kept\n\
         SINGLE='$PLAIN stays \\t'\n\
         DOUBLE=\"tab\\there \\\"quoted\\\" # kept\" # gone\n\
         TWO_LINES=\"first\nsecond\"\n\
         export EXPORTED=yes\n\
         EARLIER=${PLAIN}!\n\
         FROM_ENV=\"${WSM_TEST_DOTENV}\"\n\
         DEFAULTED=${WSM_TEST_UNSET:-fallback}\n",
    );
    let r = s.stack(
        &[
            "deploy",
            "-c",
            "stack.yml",
            "--env-file",
            "values.env",
            "--resolve-image",
            "never",
            "--timeout",
            "90",
            &s.name,
        ],
        &[("WSM_TEST_DOTENV", "from the process")],
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let env: Vec<String> = serde_json::from_str(&docker(&[
        "service",
        "inspect",
        &format!("{}_app", s.name),
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
    ]))
    .unwrap();
    let mut got: Vec<&str> = env.iter().map(String::as_str).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "COMMENTED=value",
            "DEFAULTED=fallback",
            "DOUBLE=tab\there \"quoted\" # kept",
            "EARLIER=two words!",
            "EXPORTED=yes",
            "FROM_ENV=from the process",
            "HASH=value#kept",
            "PLAIN=two words",
            "SINGLE=$PLAIN stays \\t",
            "TWO_LINES=first\nsecond",
        ]
    );
}
