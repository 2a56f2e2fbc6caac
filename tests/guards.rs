//! Guards against hostile or careless input (issue 13): scripts that grow without end or never
//! stop, and config values out of range or too large.
//! The witnesses: exit codes and messages, the process's peak memory (`wait4`), and the Docker
//! CLI (`docker service ls`, `docker config ls`).

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A finished child: exit code, output, and its peak resident memory in KiB.
struct Finished {
    run: Run,
    max_rss_kib: i64,
    took: Duration,
}

/// Runs `cmd` with stdin closed (no terminal) and reads its peak memory from `wait4`.
// The child is reaped by `wait4`, which `Child::wait` cannot replace: it gives the rusage.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command) -> Finished {
    let started = Instant::now();
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsm");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let stderr = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: plain libc call on our own child; rusage is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Finished {
        run: Run {
            code,
            stdout,
            stderr,
        },
        max_rss_kib: usage.ru_maxrss,
        took: started.elapsed(),
    }
}

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
    let dir = s.dir.path().join("scripts/manage-stack");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("grow.rhai"),
        "//! Grows an array without end.\n//! usage: grow\nlet a = [1, 2, 3];\nloop { a += a; }\n",
    )
    .unwrap();
    let f = run_measured(s.command(&["stack", "-s", &s.name, "grow"]));
    assert_eq!(f.run.code, 1, "stderr: {}", f.run.stderr);
    let line = one_error_line(&f.run);
    assert!(
        line.contains("limit of 1000000 array elements") && line.contains("WSM_MAX_ARRAY="),
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
    let mut cmd = s.command(&["run", file.to_str().unwrap()]);
    cmd.env("WSM_MAX_STRING", "1000000");
    let f = run_measured(cmd);
    assert_eq!(f.run.code, 1, "stderr: {}", f.run.stderr);
    let line = one_error_line(&f.run);
    assert!(
        line.contains("1000000 bytes of string") && line.contains("WSM_MAX_STRING="),
        "{line}"
    );
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
