//! Issue 22: a stack knows its application, and no command guesses. A compose stack deployed
//! with `deploy -c` and no config is shown, planned, started and reset as what it is (never
//! replaced by Wavelet); Wavelet-only commands refuse it; a config that contradicts the running
//! stack is refused with the stack untouched; a stack deployed by `docker stack deploy` (no
//! record) is recognised and recorded at its next deploy; and an application dropped onto the
//! search path is deployed, shown and stopped by the same `start`/`status`/`stop`. The Docker
//! CLI is the witness: labels, service ids and `Version.Index` from `docker service inspect`.

mod common;

use std::path::Path;

use common::*;

/// A one-service compose file of the locally built base image.
fn write_compose(dir: &Path, name: &str, service: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "services:\n  {service}:\n    image: localhost:5000/wavelet-stack-base:latest\n    command: [\"sleep\", \"infinity\"]\n    deploy:\n      endpoint_mode: dnsrr\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// Deploys a file with the Docker CLI, as someone without wsm would.
fn docker_stack_deploy(file: &str, stack: &str) {
    docker(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        file,
        stack,
    ]);
}

/// `docker service inspect`'s view of one field of a service.
fn inspect(service: &str, format: &str) -> String {
    docker(&["service", "inspect", service, "--format", format])
        .trim()
        .to_string()
}

/// The application a service records (`docker service inspect`); "" when none.
fn recorded(service: &str) -> String {
    inspect(service, "{{index .Spec.Labels \"wsm.application\"}}")
}

/// Every service of a stack with its id and version: what must not move when a command
/// refuses.
fn identities(stack: &str) -> Vec<String> {
    let mut v: Vec<String> = docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.stack.namespace={stack}"),
    ])
    .lines()
    .map(|id| inspect(id, "{{.Spec.Name}} {{.ID}} {{.Version.Index}}"))
    .collect();
    v.sort();
    v
}

/// Asserts a refusal: exit 2, one `error:` line naming `words`, and the stack as it was.
fn assert_refused(run: &Run, words: &[&str], stack: &str, before: &[String]) {
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
    for w in words {
        assert!(errors[0].contains(w), "{w:?} in {}", errors[0]);
    }
    assert_eq!(identities(stack), before, "the stack changed");
}

#[test]
fn a_compose_stack_deployed_with_deploy_c_stays_what_it_is() {
    let s = TestStack::bare("wsmappc");
    let file = write_compose(s.dir.path(), "app.yml", "web");
    s.stack(&["deploy", "-c", &file]).ok();
    let web = format!("{}_web", s.name);
    assert_eq!(recorded(&web), "compose");
    let before = identities(&s.name);
    assert_eq!(before.len(), 1);

    // status: its service, no Wavelet block.
    let status = s.stack(&["status"]);
    let out = status.ok();
    assert!(out.contains(&web), "{out}");
    for wavelet_word in ["VOLUMES", "RPC", "API (", "_wavelet", "_sync"] {
        assert!(!out.contains(wavelet_word), "{wavelet_word} in\n{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(s.stack(&["status", "--json"]).ok()).unwrap();
    assert_eq!(json["application"], "compose");
    assert_eq!(json["services"][0]["name"], web.as_str());

    // plan, start and reset: nothing Wavelet is proposed or deployed; the stack's files are
    // not known without a config, so they refuse in one sentence.
    for cmd in [&["plan"][..], &["start"], &["reset"], &["reset", "--hard"]] {
        let run = s.stack(cmd);
        assert!(!run.stdout.contains("wavelet"), "{cmd:?}: {}", run.stdout);
        assert_refused(&run, &[&s.name], &s.name, &before);
    }
    // plan of the same file: no change, and certainly no Wavelet service.
    let plan = s.stack(&["plan", "-c", &file]);
    assert_eq!(plan.code, 0, "{} {}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("no changes"), "{}", plan.stdout);

    // shell and logs by service.slot.
    assert_eq!(
        s.stack(&["shell", "web.1", "echo", "from-web"]).ok().trim(),
        "from-web"
    );
    s.stack(&["logs", "web"]).ok();

    // Commands of Wavelet stacks only refuse, changing nothing.
    let dump = s.dir.path().join("db.tar.gz");
    for cmd in [
        &["restart-wavelet"][..],
        &["dump-db", "1", dump.to_str().unwrap()],
        &["benchmark"],
        &["cleanVolumes", "--force"],
    ] {
        let run = s.stack(cmd);
        assert_refused(
            &run,
            &["Wavelet stacks only", "compose stack"],
            &s.name,
            &before,
        );
    }
    assert!(!dump.exists());

    // stop removes it like any stack.
    s.stack(&["stop"]).ok();
    assert!(s.services().is_empty());
}

#[test]
fn a_config_that_contradicts_the_running_stack_is_refused() {
    let s = TestStack::bare("wsmappx");
    let file = write_compose(s.dir.path(), "app.yml", "web");
    s.stack(&["deploy", "-c", &file]).ok();
    let before = identities(&s.name);

    // The config now says Wavelet: start must not replace the user's service.
    s.set("WSM_APPLICATION", "wavelet");
    let run = s.stack(&["start"]);
    assert_refused(
        &run,
        &["runs the compose application", "never replaces"],
        &s.name,
        &before,
    );
    let run = s.stack(&["reset"]);
    assert_refused(&run, &["runs the compose application"], &s.name, &before);
    // A read command still shows what runs.
    assert!(s.stack(&["ps"]).ok().contains(&format!("{}_web", s.name)));

    // An application that is not installed is bad input before anything is asked.
    s.set("WSM_APPLICATION", "nosuchapp");
    let run = s.stack(&["start"]);
    assert_refused(&run, &["nosuchapp", "not installed"], &s.name, &before);
}

#[test]
fn a_wavelet_stack_is_not_replaced_by_deploy_c() {
    // A stack recorded as Wavelet, made cheaply: the recorded label is what counts.
    let s = TestStack::bare("wsmappw");
    let file = write_compose(s.dir.path(), "app.yml", "wavelet");
    docker_stack_deploy(&file, &s.name);
    let wavelet = format!("{}_wavelet", s.name);
    docker(&[
        "service",
        "update",
        "-q",
        "--detach",
        "--label-add",
        "wsm.application=wavelet",
        &wavelet,
    ]);
    let before = identities(&s.name);
    let other = write_compose(s.dir.path(), "other.yml", "web");
    let run = s.stack(&["deploy", "-c", &other]);
    assert_refused(
        &run,
        &[
            "runs the wavelet application",
            "this command deploys compose",
        ],
        &s.name,
        &before,
    );
    // A stack whose services record different applications is not guessed at either.
    docker(&[
        "service",
        "update",
        "-q",
        "--detach",
        "--label-add",
        "wsm.application=compose",
        &wavelet,
    ]);
    docker(&[
        "service",
        "create",
        "-q",
        "--detach",
        "--name",
        &format!("{}_extra", s.name),
        "--label",
        &format!("com.docker.stack.namespace={}", s.name),
        "--label",
        "wsm.application=wavelet",
        "--endpoint-mode",
        "dnsrr",
        "localhost:5000/wavelet-stack-base:latest",
        "sleep",
        "infinity",
    ]);
    let run = s.stack(&["status"]);
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("record different applications"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_stack_without_a_record_is_recognised_and_recorded_at_its_next_deploy() {
    let s = TestStack::bare("wsmappl");
    let file = write_compose(s.dir.path(), "app.yml", "web");
    docker_stack_deploy(&file, &s.name);
    let web = format!("{}_web", s.name);
    assert_eq!(recorded(&web), "");
    let before = identities(&s.name);
    // Recognised as a compose stack (it has no `_wavelet` service), as before the record.
    let json: serde_json::Value =
        serde_json::from_str(s.stack(&["status", "--json"]).ok()).unwrap();
    assert_eq!(json["application"], "compose");
    let run = s.stack(&["start"]);
    assert_refused(&run, &["deploy it again with"], &s.name, &before);
    // The next deploy records it.
    s.set("WSM_COMPOSE_FILES", &file);
    s.stack(&["start"]).ok();
    assert_eq!(recorded(&web), "compose");
}

/// A tiny application of its own, dropped onto the search path: one `sleep` service with as
/// many replicas as TINY_REPLICAS, deployed through the one compose path.
const TINY_APP: &str = r#"// A test application: one sleep service, TINY_REPLICAS of it.
import "compose_stack" as cst;
import "nodes" as nodes;
import "stack" as st;

fn schema() { #{ ranges: #{ TINY_REPLICAS: [1, 5] }, prefixes: ["TINY_"] } }
fn recognises(stack, names) { false }
fn tiny_doc(ctx) {
    let n = ctx.values.TINY_REPLICAS ?? "1";
    compose::parse(`services:
  pebble:
    image: localhost:5000/wavelet-stack-base:latest
    command: ["sleep", "infinity"]
    deploy:
      replicas: ${n}
      endpoint_mode: dnsrr
`, #{})
}
fn tiny_plan(ctx) { compose::plan(tiny_doc(ctx), ctx.stack) }
fn plan(ctx) { tiny_plan(ctx) }
fn deploy(ctx, opts) { cst::deploy_plan(ctx, tiny_plan(ctx), #{ prune: true, detach: opts.detach ?? false }) }
fn stop(ctx) { st::remove(ctx) }
fn reset(ctx, opts) { st::remove(ctx); cst::deploy_plan(ctx, tiny_plan(ctx), #{ prune: true }) }
// Written as applications were before `status` took the stack's snapshot: still called.
fn status(ctx, e) {
    let running = e.tasks(#{ service: `${ctx.stack}_pebble`, "desired-state": "running" }).filter(|t| t.Status.State == "running").len();
    #{ stack: ctx.stack, application: ctx.application, pebbles: running }
}
fn render(s) { `${s.stack}: ${s.pebbles} pebble(s) rolling` }
fn resolve_node(ctx, e, id) { nodes::resolve(e, ctx.stack, id) }
fn default_shell(ctx, e, id) { "sh" }
fn completions(ctx) { nodes::ids(st::engine(ctx), ctx.stack) }
"#;

#[test]
fn a_dropped_in_application_runs_through_the_same_commands() {
    let s = TestStack::bare("wsmappt");
    let scripts = tempfile::tempdir().unwrap();
    let app_dir = scripts.path().join("stdlib/tiny");
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::write(app_dir.join("app.rhai"), TINY_APP).unwrap();
    s.set("WSM_APPLICATION", "tiny");
    s.set("TINY_REPLICAS", "2");
    let run = |args: &[&str]| -> Run {
        let mut all = vec!["stack", "-s", s.name.as_str()];
        all.extend_from_slice(args);
        s.command(&all)
            .env("WSM_SCRIPT_PATH", scripts.path())
            .output()
            .unwrap()
            .into()
    };
    run(&["start"]).ok();
    let pebble = format!("{}_pebble", s.name);
    assert_eq!(recorded(&pebble), "tiny");
    assert_eq!(inspect(&pebble, "{{.Spec.Mode.Replicated.Replicas}}"), "2");
    let status = run(&["status"]);
    assert_eq!(
        status.ok().trim(),
        format!("{}: 2 pebble(s) rolling", s.name)
    );
    // Its keys are checked like any application's: out of range is bad input.
    s.set("TINY_REPLICAS", "9");
    let bad = run(&["start"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("TINY_REPLICAS"), "{}", bad.stderr);
    assert_eq!(inspect(&pebble, "{{.Spec.Mode.Replicated.Replicas}}"), "2");
    s.set("TINY_REPLICAS", "2");
    // Wavelet's commands refuse it; the general ones serve it.
    let refused = run(&["restart-wavelet"]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("tiny stack"), "{}", refused.stderr);
    assert_eq!(
        run(&["shell", "pebble.2", "echo", "two"]).ok().trim(),
        "two"
    );
    run(&["stop"]).ok();
    assert!(s.services().is_empty());
}

#[test]
fn the_general_stack_commands_name_no_application() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/manage-stack");
    for cmd in ["start", "stop", "status", "reset", "plan"] {
        let text = std::fs::read_to_string(dir.join(format!("{cmd}.rhai"))).unwrap();
        for word in ["wavelet", "ctx.wavelet"] {
            assert!(
                !text.to_lowercase().contains(word),
                "scripts/manage-stack/{cmd}.rhai names {word}"
            );
        }
    }
}
