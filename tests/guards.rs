//! Guards against hostile or careless input (issue 13): scripts that grow without end or never
//! stop, config values out of range or too large, and commands on one stack run at once.
//! The witnesses: exit codes and messages, the process's peak memory (`wait4`), and the Docker
//! CLI (`docker service ls`, `docker config ls`).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::measure::run_measured;
use common::*;

/// The one `error:` line of a failed run (and nothing else on stderr).
fn one_error_line(run: &Run) -> &str {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {}", run.stderr);
    assert!(lines[0].starts_with("error: "), "stderr: {}", run.stderr);
    lines[0]
}

#[test]
fn a_dropped_in_command_doubling_an_array_ends_with_the_limit_error_in_little_memory() {
    let s = TestStack::bare("grow");
    let dir = s.script_folder().join("scripts/manage-stack");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("grow.rhai"),
        "//! Grows an array without end.\n//! usage: grow\nlet a = [1, 2, 3];\nloop { a += a; }\n",
    )
    .unwrap();
    let mut cmd = s.command(&["stack", "-s", &s.name, "grow"]);
    cmd.env("WSM_MAX_MEMORY", "64");
    let f = run_measured(cmd);
    assert_eq!(f.run.code, 1, "stderr: {}", f.run.stderr);
    let line = one_error_line(&f.run);
    assert!(
        line.contains("limit of 64 MiB of memory") && line.contains("WSM_MAX_MEMORY="),
        "{line}"
    );
    assert!(f.took < Duration::from_secs(20), "took {:?}", f.took);
    assert!(
        f.max_rss_kib < 400 * 1024,
        "peak memory {} MiB",
        f.max_rss_kib / 1024
    );
}

#[test]
fn a_doubling_string_ends_with_the_limit_error_naming_how_to_raise_it() {
    let s = TestStack::bare("grows");
    let file = s.dir.path().join("grow.rhai");
    std::fs::write(&file, "let t = \"x\";\nloop { t += t; }\n").unwrap();
    let f = run_measured(s.command(&["run", file.to_str().unwrap()]));
    assert_eq!(f.run.code, 1, "stderr: {}", f.run.stderr);
    let line = one_error_line(&f.run);
    assert!(
        line.contains("limit of 512 MiB of memory") && line.contains("WSM_MAX_MEMORY="),
        "{line}"
    );
    // The size limits of earlier versions are refused rather than silently ignored.
    let mut cmd = s.command(&["run", file.to_str().unwrap()]);
    cmd.env("WSM_MAX_STRING", "1000000");
    let f = run_measured(cmd);
    assert_eq!(f.run.code, 2, "stderr: {}", f.run.stderr);
    assert!(one_error_line(&f.run).contains("WSM_MAX_STRING is no longer read"));
}

#[test]
fn an_endless_loop_in_a_batch_file_without_a_terminal_ends() {
    let s = TestStack::bare("loop");
    let file = s.dir.path().join("forever.rhai");
    std::fs::write(&file, "let n = 0;\nloop { n += 1; }\n").unwrap();
    // The default limit, as a batch file run from cron would have it.
    let f = run_measured(s.command(&["run", file.to_str().unwrap()]));
    assert_eq!(f.run.code, 1, "stderr: {}", f.run.stderr);
    let line = one_error_line(&f.run);
    assert!(
        line.contains("operations") && line.contains("WSM_MAX_OPERATIONS="),
        "{line}"
    );
    assert!(f.took < Duration::from_secs(180), "took {:?}", f.took);

    // Raised (or lowered) through the environment; a limit that is not a number is bad input.
    let mut cmd = s.command(&["run", file.to_str().unwrap()]);
    cmd.env("WSM_MAX_OPERATIONS", "100000");
    let f = run_measured(cmd);
    assert!(one_error_line(&f.run).contains("limit of 100000 operations"));
    assert!(f.took < Duration::from_secs(10), "took {:?}", f.took);
    let mut cmd = s.command(&["run", file.to_str().unwrap()]);
    cmd.env("WSM_MAX_OPERATIONS", "lots");
    let f = run_measured(cmd);
    assert_eq!(f.run.code, 2, "stderr: {}", f.run.stderr);
    assert!(f
        .run
        .stderr
        .contains("WSM_MAX_OPERATIONS must be a whole number"));
}

/// Asserts that `stack start` refused the config as bad input before creating anything.
fn refused_before_anything_is_created(s: &TestStack, run: &Run) -> String {
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        s.services().is_empty(),
        "services were created: {:?}",
        s.services()
    );
    let first = run.stderr.lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("error: "), "{}", run.stderr);
    first
}

#[test]
fn a_port_out_of_range_is_refused_before_any_service_is_created() {
    let s = TestStack::new("port");
    s.set("WAVELET_API_PORT", "99999");
    let r = s.stack(&["start"]);
    let line = refused_before_anything_is_created(&s, &r);
    assert!(
        line.contains("WAVELET_API_PORT")
            && line.contains("from 1 to 65535")
            && line.contains("99999"),
        "{line}"
    );
    // The environment is a layer like the files, checked the same way.
    s.set("WAVELET_API_PORT", "");
    let mut cmd = s.command(&["stack", "-s", &s.name, "start"]);
    cmd.env("WAVELET_NODES", "0");
    let r: Run = cmd.output().unwrap().into();
    let line = refused_before_anything_is_created(&s, &r);
    assert!(
        line.contains("WAVELET_NODES in the environment") && line.contains("from 1 to 48"),
        "{line}"
    );
}

#[test]
fn a_long_run_of_digits_is_not_a_number_and_is_shown_only_in_part() {
    let s = TestStack::new("digits");
    s.set("WAVELET_NODES", &"7".repeat(4000));
    let started = Instant::now();
    let r = s.stack(&["start"]);
    let line = refused_before_anything_is_created(&s, &r);
    assert!(
        line.contains("WAVELET_NODES") && line.contains("(4000 characters)"),
        "{line}"
    );
    assert!(
        line.len() < 300,
        "the error shows the whole value: {} bytes",
        line.len()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_value_over_its_length_is_refused_and_a_secret_is_never_shown() {
    let s = TestStack::new("long");
    s.set("REGISTRY", &"r".repeat(5000));
    let line = refused_before_anything_is_created(&s, &s.stack(&["start"]));
    assert!(
        line.contains("REGISTRY") && line.contains("at most 4096"),
        "{line}"
    );
    assert!(line.len() < 300, "{line}");

    s.set("REGISTRY", "");
    let secret = format!("topsecret{}", "k".repeat(70000));
    s.set("WAVELET_KEYS", &secret);
    let line = refused_before_anything_is_created(&s, &s.stack(&["start"]));
    assert!(
        line.contains("WAVELET_KEYS") && line.contains("at most 65536"),
        "{line}"
    );
    assert!(
        !line.contains("topsecret") && !line.contains("kkkk"),
        "{line}"
    );
}

#[test]
fn a_config_file_of_fifty_megabytes_is_refused_at_once_and_not_printed() {
    let s = TestStack::new("huge");
    let value = "9".repeat(50_000_000);
    std::fs::write(s.config_file(), format!("WAVELET_NODES={value}\n")).unwrap();
    let started = Instant::now();
    let r = s.stack(&["start"]);
    let line = refused_before_anything_is_created(&s, &r);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(line.contains("at most 1048576"), "{line}");
    assert!(r.stderr.len() < 1000, "stderr is {} bytes", r.stderr.len());
}

/// The stack lock's swarm config object, as `docker config ls` lists it ("" when there is none).
fn lock_object(stack: &str) -> String {
    let name = format!("wsm-lock-{stack}");
    docker(&[
        "config",
        "ls",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Name}}",
    ])
    .lines()
    .find(|l| *l == name)
    .unwrap_or_default()
    .to_string()
}

/// Removes a stack's lock object when the test ends, however it ends.
struct LockCleanup(String);

impl Drop for LockCleanup {
    fn drop(&mut self) {
        docker_quiet(&["config", "rm", &format!("wsm-lock-{}", self.0)]);
    }
}

/// Makes the lock object of `stack` by hand, as a holder on another machine would leave it.
fn plant_lock(s: &TestStack, until: &str) {
    let data = s.dir.path().join("lock-data");
    std::fs::write(&data, "planted\n").unwrap();
    let mut args = vec!["config".to_string(), "create".to_string()];
    for (k, v) in [
        ("wsm.lock", "stack"),
        ("wsm.lock.stack", s.name.as_str()),
        ("wsm.lock.operation", "start"),
        ("wsm.lock.holder", "ghost@elsewhere"),
        ("wsm.lock.pid", "4242"),
        ("wsm.lock.machine", "another-machine"),
        ("wsm.lock.since", "2026-01-01T00:00:00Z"),
        ("wsm.lock.until", until),
    ] {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.push(format!("wsm-lock-{}", s.name));
    args.push(data.display().to_string());
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_held_lock_is_waited_for_until_the_deadline_and_a_stale_one_is_broken() {
    let s = TestStack::new("held");
    let _cleanup = LockCleanup(s.name.clone());
    plant_lock(&s, "2099-01-01T00:00:00Z");

    // WSM_LOCK_WAIT=0: fail at once, saying who holds the lock.
    let mut cmd = s.command(&["stack", "-s", &s.name, "stop"]);
    cmd.env("WSM_LOCK_WAIT", "0");
    let started = Instant::now();
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    let line = one_error_line(&r);
    assert!(
        line.contains("is locked: start by ghost@elsewhere (pid 4242) since 2026-01-01T00:00:00Z"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A deadline: the wait is shown, then the failure.
    s.set("WSM_LOCK_WAIT", "2");
    let started = Instant::now();
    let r = s.stack(&["stop"]);
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("waiting up to 2 s"), "{}", r.stderr);
    assert!(r.stderr.contains("still locked after 2 s"), "{}", r.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        lock_object(&s.name),
        format!("wsm-lock-{}", s.name),
        "someone else's lock stays"
    );

    // Its `until` long past by our clock: no matter, the holder's clock is not ours. Only a
    // waiter that watched it unrenewed for a whole lease (WSM_LOCK_TTL, by its own clock) breaks
    // it, and the command goes on.
    docker(&["config", "rm", &format!("wsm-lock-{}", s.name)]);
    plant_lock(&s, "2026-01-01T00:01:00Z");
    s.set("WSM_LOCK_WAIT", "0");
    let r = s.stack(&["stop"]);
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    assert!(one_error_line(&r).contains("is locked: start by ghost@elsewhere"));
    s.set("WSM_LOCK_WAIT", "30");
    let mut cmd = s.command(&["stack", "-s", &s.name, "stop"]);
    cmd.env("WSM_LOCK_TTL", "3");
    let started = Instant::now();
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        r.stderr
            .contains("breaking a stale lock (start by ghost@elsewhere"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("not renewed after 3 s of watching"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(lock_object(&s.name), "", "the lock is released");
}

#[test]
fn ctrl_c_during_start_releases_the_lock() {
    require_images();
    let s = TestStack::new("intr");
    let _cleanup = LockCleanup(s.name.clone());
    s.set("WAVELET_NODES", "1");
    let mut child = s
        .command(&["stack", "-s", &s.name, "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the lock to be taken", 60, || {
        !lock_object(&s.name).is_empty()
    });
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        lock_object(&s.name),
        "",
        "the lock outlived the interrupted start"
    );
}

/// Whether the stack is fully up: its network and four services; with `running`, each service
/// running what it should (a detached start leaves that to the swarm).
fn fully_up(s: &TestStack, running: bool) -> bool {
    let names: Vec<String> = ["benchmark", "loadbalancer", "sync", "wavelet"]
        .iter()
        .map(|n| format!("{}_{n}", s.name))
        .collect();
    let network = format!("{}_default", s.name);
    s.services() == names
        && docker(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == network)
        && (!running
            || ["loadbalancer", "sync", "wavelet"]
                .iter()
                .all(|svc| s.running_tasks(svc).len() == 1))
}

/// `start & sleep 0.01; stop`, twenty times on one stack: each round ends fully up (stop went
/// first) or fully down (start went first and stop waited for it), never in between, and the
/// command that waited says for what. The first round's start waits for the stack to run; the
/// others are detached, which keeps the twenty rounds to a couple of minutes.
#[test]
fn start_racing_stop_ends_fully_up_or_fully_down_twenty_times_and_says_what_happened() {
    require_images();
    let s = TestStack::new("race");
    let _cleanup = LockCleanup(s.name.clone());
    s.set("WAVELET_NODES", "1");
    let started = Instant::now();
    let (mut ups, mut downs, mut contended) = (0, 0, 0);
    for round in 1..=20 {
        let start_args: &[&str] = if round == 1 { &[] } else { &["--detach"] };
        let start = s
            .command(&[&["stack", "-s", &s.name, "start"][..], start_args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let stop = s.stack(&["stop"]);
        let start: Run = finish_within(start, "wsm stack start", WSM_DEADLINE).into();
        let ctx = format!(
            "round {round}\nstart: {}{}\nstop: {}{}",
            start.stdout, start.stderr, stop.stdout, stop.stderr
        );
        assert_eq!((start.code, stop.code), (0, 0), "{ctx}");
        let waited = |r: &Run, other: &str| {
            r.stderr.contains(&format!("is locked: {other} by"))
                && r.stderr.contains("has finished")
        };
        if waited(&stop, "start") || waited(&start, "stop") {
            contended += 1;
        }
        if s.services().is_empty() {
            // start went first, then stop: it waited for start, or start was done before.
            downs += 1;
            let removed = stop.stdout.matches("Removing service").count();
            assert!(
                waited(&stop, "start") || removed == 4,
                "stop neither waited for start nor removed a whole stack: {ctx}"
            );
        } else {
            // stop went first (nothing to stop, or the last round's stack), then start.
            ups += 1;
            assert!(
                fully_up(&s, round == 1),
                "a partial stack: {:?}\n{ctx}",
                s.services()
            );
            assert!(
                waited(&start, "stop") || !stop.stdout.contains("Removing"),
                "start ran while stop was removing the stack: {ctx}"
            );
        }
        assert_eq!(
            lock_object(&s.name),
            "",
            "the lock outlived round {round}: {ctx}"
        );
    }
    eprintln!(
        "20 races: {downs} ended down, {ups} up, {contended} with one command waiting, in {:?}",
        started.elapsed()
    );
    // Most rounds overlap; a start that finished before stop asked is a round without a race.
    assert!(contended >= 5, "only {contended} of 20 rounds raced");
}
