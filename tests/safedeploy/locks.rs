//! Issue 23, items 4 and 9: the stack lock trusts no wall clock and no machine id, a holder
//! that lost its lock stops before its next change, and every command that changes a stack
//! takes the lock. A holder's clock is skewed with Debian's `faketime`, another machine with
//! the same machine id is a pid namespace of its own (`unshare`); the Docker CLI is the witness.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// `cmd` run under `prefix` (`faketime -f -2m`, `unshare …`), with its environment and folder.
fn wrapped(cmd: &Command, prefix: &[&str]) -> Command {
    let mut out = Command::new(prefix[0]);
    out.args(&prefix[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    out.stdout(Stdio::piped()).stderr(Stdio::piped());
    out
}

fn finish(child: Child) -> Run {
    child.wait_with_output().unwrap().into()
}

/// A web service whose task stays `starting` until its first health check, `secs` after it
/// starts: a deploy of it holds the lock that long.
fn slow(v: &str, secs: u32) -> String {
    compose(&[(
        "web",
        IMAGE,
        &format!("V={v}"),
        1,
        &format!("    healthcheck: {{test: [\"CMD\", \"true\"], interval: {secs}s}}\n"),
    )])
}

/// The `V=` value and the replicas of the stack's web service, as `docker service inspect` says.
fn web(st: &SafeStack) -> (String, u64) {
    let specs = st.specs();
    let spec = &specs[&format!("{}_web", st.name())];
    (
        spec["TaskTemplate"]["ContainerSpec"]["Env"][0]
            .as_str()
            .unwrap_or("")
            .to_string(),
        spec["Mode"]["Replicated"]["Replicas"].as_u64().unwrap_or(0),
    )
}

fn require_faketime() {
    let found = Command::new("faketime")
        .arg("-f")
        .arg("+0")
        .arg("true")
        .status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "faketime is missing: tests/fixtures/setup-testbed installs it (Debian's faketime)"
    );
}

#[test]
fn a_holder_whose_clock_is_two_minutes_off_keeps_its_lock() {
    require_faketime();
    let st = SafeStack::new("wsmskew");
    st.deploy(&st.file("v0.yml", &slow("0", 1)), &[]).ok();

    // The holder's clock runs two minutes behind: by the waiter's clock its lock expired long
    // ago. It renews every second (a lease of 4 s) while its deploy waits out the health check.
    let mut holder = st.deploy_command(&st.file("a.yml", &slow("a", 12)), &[]);
    holder.env("WSM_LOCK_TTL", "4");
    let holder = wrapped(&holder, &["faketime", "-f", "-2m"])
        .spawn()
        .unwrap();
    wait_for("the skewed holder to take the lock", 30, || {
        st.lock_object()
    });

    // A waiter whose clock runs two minutes ahead, with --no-wait: refused, nothing broken.
    let mut ahead = st.deploy_command(&st.file("c.yml", &slow("c", 1)), &["--no-wait"]);
    ahead.env("WSM_LOCK_TTL", "4");
    let refused: Run = wrapped(&ahead, &["faketime", "-f", "+2m"])
        .output()
        .unwrap()
        .into();
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("is locked: deploy by "),
        "{}",
        refused.stderr
    );
    assert!(st.lock_object(), "the live lock stays");

    // A waiter on true time: it waits for the holder, over several of its leases.
    let mut waiter = st.deploy_command(&st.file("b.yml", &slow("b", 1)), &[]);
    waiter.env("WSM_LOCK_TTL", "4");
    let started = Instant::now();
    let waited: Run = waiter.output().unwrap().into();
    let held = finish(holder);
    held.ok();
    waited.ok();
    let both = format!("holder: {}\nwaiter: {}", held.stderr, waited.stderr);
    assert!(!waited.stderr.contains("breaking a stale lock"), "{both}");
    assert!(
        waited.stderr.contains("is locked: deploy by ") && waited.stderr.contains("has finished"),
        "{both}"
    );
    assert!(!held.stderr.contains("taken away"), "{both}");
    assert!(started.elapsed() > Duration::from_secs(8), "{both}");
    // One after the other: the waiter's deploy came last, on top of the holder's.
    assert_eq!(web(&st).0, "V=b");
    // Three deploys, each whole; the holder's revision is stamped with its own (skewed) clock.
    let h = st.history();
    assert_eq!(h.len(), 3, "{h:#?}");
    assert!(h.iter().all(|r| r["status"] == "deployed"), "{h:#?}");
    assert!(!st.lock_object(), "the lock is released");
}

/// A pid that no process of this pid namespace has.
fn unused_pid() -> u32 {
    (20000..32000)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

#[test]
fn a_live_holder_on_another_machine_with_the_same_machine_id_is_not_broken() {
    let st = SafeStack::new("wsmtwin");
    st.deploy(&st.file("v0.yml", &slow("0", 1)), &[]).ok();

    // The holder runs in a pid namespace of its own, as on a cloned VM or in another container
    // with the same machine id; its pid there is not a live pid here.
    let pid = unused_pid();
    let mut holder = st.deploy_command(&st.file("a.yml", &slow("a", 12)), &[]);
    holder
        .env("WSM_LOCK_TTL", "4")
        .env("WSM_MACHINE_ID", "cloned-machine");
    let inner = format!(
        "echo {} > /proc/sys/kernel/ns_last_pid && \"$0\" \"$@\"",
        pid - 1
    );
    let holder = wrapped(
        &holder,
        &[
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            &inner,
        ],
    )
    .spawn()
    .unwrap();
    wait_for("the holder to take the lock", 30, || st.lock_object());
    let status = st.stack(&["lock", "status"]);
    assert!(
        status.ok().contains(&format!("(pid {pid})")),
        "the holder runs as pid {pid} in its namespace: {}",
        status.stdout
    );

    let mut waiter = st.deploy_command(&st.file("b.yml", &slow("b", 1)), &[]);
    waiter
        .env("WSM_LOCK_TTL", "4")
        .env("WSM_MACHINE_ID", "cloned-machine");
    let waited: Run = waiter.output().unwrap().into();
    let held = finish(holder);
    let both = format!("holder: {}\nwaiter: {}", held.stderr, waited.stderr);
    held.ok();
    waited.ok();
    assert!(!waited.stderr.contains("breaking a stale lock"), "{both}");
    assert!(waited.stderr.contains("has finished"), "{both}");
    assert_eq!(web(&st).0, "V=b");
}

#[test]
fn a_holder_whose_lock_was_released_by_force_stops_before_its_next_change() {
    let st = SafeStack::new("wsmfence");
    let n = st.name().to_string();
    st.deploy(
        &st.file("v0.yml", &compose(&[("web", IMAGE, "V=0", 1, "")])),
        &[],
    )
    .ok();
    // The holder's deploy cannot converge (a service no node may run): at its deadline it
    // would roll the whole stack back to revision 1.
    let never = "      placement: {constraints: [\"node.labels.wsm-never == yes\"]}\n";
    let with_web = |v: &str| {
        let env = format!("V={v}");
        compose(&[
            ("web", IMAGE, &env, 1, ""),
            ("extra", IMAGE, "V=1", 1, never),
        ])
    };
    let stuck = st.file("stuck.yml", &with_web("1"));
    let holder =
        st.s.command(&["stack", "deploy", "-c", &stuck, "--timeout", "20", &n])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    wait_for("the holder to update web", 60, || {
        st.lock_object() && web(&st).0 == "V=1"
    });

    // Taken away; the next deploy goes ahead at once (detached: `extra` cannot run) with V=2.
    st.stack(&["lock", "release", "--force"]).ok();
    let good = st.file("good.yml", &with_web("2"));
    st.deploy(&good, &["--no-wait", "--detach"]).ok();
    assert_eq!(web(&st).0, "V=2");

    // The old holder stops before it rolls back or records anything: one clear error.
    let held = finish(holder);
    assert_eq!(held.code, 1, "{}", held.stderr);
    let errors: Vec<&str> = held
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", held.stderr);
    assert!(
        errors[0].contains(&format!("stack {n}: stopped before "))
            && errors[0].contains("no longer holds the stack's lock"),
        "{}",
        errors[0]
    );
    assert!(
        !held.stdout.contains("Rolling back") && !held.stdout.contains("Removing"),
        "{}",
        held.stdout
    );
    // The stack is as the new holder left it, and its history ends with that deploy.
    assert_eq!(web(&st).0, "V=2", "the old holder rolled the stack back");
    assert_eq!(st.s.services().len(), 2, "{:?}", st.s.services());
    let h = st.history();
    let last = h.last().unwrap();
    assert_eq!(last["status"], "applied, not waited for", "{h:#?}");
    assert!(!st.lock_object(), "the lock is released");
}

#[test]
fn rm_scale_and_restart_take_the_lock_while_a_deploy_holds_it() {
    let st = SafeStack::new("wsmrm");
    let n = st.name().to_string();
    st.deploy(&st.file("v0.yml", &slow("0", 1)), &[]).ok();
    let before = st.s.services();
    assert_eq!(before.len(), 1);

    let holder = st
        .deploy_command(&st.file("a.yml", &slow("a", 15)), &[])
        .spawn()
        .unwrap();
    wait_for("the deploy to hold the lock", 30, || st.lock_object());

    // --no-wait: refused at once in one line, the stack untouched.
    for args in [
        &["rm", "--no-wait"][..],
        &["scale", "--no-wait", "web=3"][..],
        &["restart", "--no-wait", n.as_str()][..],
    ] {
        let r = st.s.stack(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {}", r.stderr);
        assert!(
            errors[0].contains(&format!("stack {n} is locked: deploy by ")),
            "{args:?}: {}",
            errors[0]
        );
        assert_eq!(st.s.services(), before, "{args:?} changed the stack");
    }
    assert_eq!(web(&st).1, 1, "scale changed the replicas");

    // Without --no-wait, scale waits for the deploy, then applies on top of it.
    let scaler =
        st.s.command(&["stack", "-s", &n, "scale", "--timeout", "60", "web=2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        web(&st).1,
        1,
        "scale went ahead while the deploy held the lock"
    );
    let deployed = finish(holder);
    deployed.ok();
    let scaled = finish(scaler);
    scaled.ok();
    assert!(
        scaled
            .stderr
            .contains(&format!("stack {n} is locked: deploy by "))
            && scaled.stderr.contains("has finished"),
        "{}",
        scaled.stderr
    );
    assert_eq!(web(&st), ("V=a".to_string(), 2));

    // rm, the lock free: the stack goes.
    st.s.stack(&["rm"]).ok();
    assert!(st.s.services().is_empty());
    assert!(!st.lock_object());
}
