//! Read commands where the probe of issue 23 broke them: `stack ps` of a task the scheduler
//! never gave a node (item 16: a pending task is exactly what needs diagnosing), and output into
//! a pipe whose reader has gone (item 3: `wsm … | head -n 2` must never panic; the command stops
//! as Ctrl-C would stop it and exits 141). The Docker CLI is the witness.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// A stack file whose one service no node can take: its task stays pending, with no node.
const PENDING: &str = "services:
  stuck:
    image: localhost:5000/wavelet-stack-base:latest
    command: [\"sleep\", \"3600\"]
    deploy:
      placement:
        constraints: [\"node.labels.nope==1\"]
";

#[test]
fn stack_ps_shows_a_task_that_no_node_was_given() {
    let s = TestStack::bare("pend");
    let file = s.dir.path().join("stack.yml");
    std::fs::write(&file, PENDING).unwrap();
    docker(&["stack", "deploy", "-c", file.to_str().unwrap(), &s.name]);
    let service = format!("{}_stuck", s.name);
    wait_for("the pending task", 60, || {
        docker(&["service", "ps", &service, "--format", "{{.CurrentState}}"]).contains("Pending")
    });
    let witness = docker(&["service", "ps", &service, "--format", "{{.ID}} [{{.Node}}]"]);
    assert!(witness.contains(" []"), "docker: {witness}");

    let r = s.wsm(&["stack", "ps", &s.name]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let mut lines = r.stdout.lines();
    let header = lines.next().unwrap();
    let row = lines
        .find(|l| l.contains(&format!("{service}.1")))
        .unwrap_or_else(|| panic!("no row of {service}.1:\n{}", r.stdout));
    // The NODE column, from where its header starts to where DESIRED STATE's does, is blank.
    let (from, to) = (
        header.find("NODE").unwrap(),
        header.find("DESIRED STATE").unwrap(),
    );
    assert_eq!(row.get(from..to).map(str::trim), Some(""), "{}", r.stdout);
    assert!(row.contains("Pending"), "{row}");

    let r = s.wsm(&["stack", "ps", &s.name, "--json"]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let rows: Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    let task = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == format!("{service}.1"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert_eq!(task["node"], "", "{task}");
    assert!(
        task["current_state"]
            .as_str()
            .unwrap()
            .starts_with("Pending"),
        "{task}"
    );
    assert!(
        task["error"].as_str().unwrap().contains("no suitable node"),
        "{task}"
    );
}

/// A pipe whose reading end is already closed: the first write to the other end fails.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe fills both descriptors on success; each is owned exactly once below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

/// What stderr said and how wsm ended, its stdout a pipe closed before it wrote.
fn into_closed_pipe(mut cmd: Command) -> Run {
    cmd.stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .output()
        .expect("run wsm")
        .into()
}

#[test]
fn output_into_a_closed_pipe_stops_the_command_quietly_with_141() {
    let s = TestStack::bare("pipe");
    let marker = s.dir.path().join("went-on");
    // A batch file that writes, then asks the engine, then leaves a marker: the closed pipe
    // must stop it before the marker, as Ctrl-C would.
    let batch = s.dir.path().join("after.rhai");
    std::fs::write(
        &batch,
        format!(
            "print(\"first\");\nlet e = docker::connect(\"\");\ne.services(#{{}});\nfs::write({:?}, \"x\");\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    let runs: Vec<Vec<&str>> = vec![
        vec!["stack", "ls"],
        vec!["stack", "help"],
        vec!["stack", "ps", "--running", "nosuchstack", "--json"],
        vec!["__complete", "stack", ""],
        vec!["doc"],
        vec!["run", batch.to_str().unwrap()],
    ];
    for args in runs {
        let r = into_closed_pipe(s.command(&args));
        assert!(
            !r.stderr.contains("panicked"),
            "{args:?} panicked: {}",
            r.stderr
        );
        // `ps` of a stack that does not exist fails before it writes anything.
        if args.get(1) == Some(&"ps") {
            assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
            continue;
        }
        assert_eq!(r.code, 141, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?}");
    }
    assert!(
        !marker.exists(),
        "the batch file went on after its reader left"
    );

    // `| head -n 2`: the reader takes two lines of many, then goes.
    let lines = s.dir.path().join("lines.rhai");
    std::fs::write(
        &lines,
        format!(
            "for i in 0..1000000 {{ print(`line ${{i}}`); }}\nfs::write({:?}, \"x\");\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    let mut child = s
        .command(&["run", lines.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for want in ["line 0", "line 1"] {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), want);
    }
    drop(reader);
    let out = finish_within(child, "wsm run", WSM_DEADLINE);
    let r: Run = out.into();
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(r.code, 141, "{}", r.stderr);
    assert!(!marker.exists(), "the loop went on after its reader left");
}
