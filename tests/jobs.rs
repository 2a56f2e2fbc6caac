//! The `jobs` family on the local swarm: the runner service built from this wsm binary and
//! deployed on the manager, a job every 2 s, and two more runners started beside it on this
//! machine (all three think they lead, as two may while leadership moves): the runs recorded
//! in the swarm store, read back with the Docker CLI, show every slot once, each one run or
//! reported missed. Bad input exits 2 and stores nothing.
//!
//! A Wavelet stack started with WAVELET_BACKUP_DB has its backup job, whose dumps land in
//! the runner's volume, and stopping the stack removes the job. A compose stack deployed with
//! WSM_BACKUP_EVERY has the same job, whose archives of its named volume land there too;
//! `backup --schedule off` removes it, `--schedule DUR` makes it again and `rm` removes it.
//!
//! The runner is the singleton stack `wsm-jobs`: the tests that use it take `RUNNER` in turn.

mod common;
#[path = "safedeploy/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::Read;
use std::process::{Child, Command, Stdio};

use common::store::*;
use common::*;
use serde_json::Value;

/// The runner image this test builds and deploys.
const IMAGE: &str = "localhost:5000/wsm-runner:test";

fn wsm(args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_wsm"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
        .into()
}

static RUNNER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Removes the runner stack, its volume and the test's job, even when the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        wsm(&["jobs", "rm", &self.0]);
        wsm(&["jobs", "uninstall"]);
        docker_quiet(&["volume", "rm", "wsm-jobs_data"]);
    }
}

/// Takes the runner for this test and installs it.
fn install_runner() -> std::sync::MutexGuard<'static, ()> {
    let guard = RUNNER.lock().unwrap_or_else(|e| e.into_inner());
    let r = wsm(&[
        "jobs",
        "install",
        "--image",
        IMAGE,
        "--base",
        "localhost:5000/wavelet-stack-base:latest",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    guard
}

fn runner_on_this_machine() -> Child {
    Command::new(env!("CARGO_BIN_EXE_wsm"))
        .args(["jobs", "runner"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_job_runs_each_slot_once_with_three_runners_claiming() {
    require_images();
    let name = unique("wsmjob");
    let _runner = install_runner();
    let _cleanup = Cleanup(name.clone());
    let service = docker(&["service", "inspect", "wsm-jobs_runner"]);
    let spec: Value = serde_json::from_str(&service).unwrap();
    let spec = &spec[0]["Spec"];
    assert!(spec["Mode"]["Global"].is_object(), "{spec}");
    assert_eq!(
        spec["TaskTemplate"]["Placement"]["Constraints"],
        serde_json::json!(["node.role == manager"])
    );

    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        "print(`job ran on ${docker::connect(\"\").leadership().node_id}`);",
    )
    .unwrap();
    let r = wsm(&[
        "jobs",
        "add",
        "--every",
        "2s",
        "--script",
        script.path().to_str().unwrap(),
        &name,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Two more runners on this machine, against the same engine: three claim every slot.
    let extra = [runner_on_this_machine(), runner_on_this_machine()];
    wait_for("six runs of the job", 90, || {
        store_doc(&[], &format!("job-runs.{name}"))
            .map(|d| {
                d["runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["status"] == "ok")
                    .count()
                    >= 6
            })
            .unwrap_or(false)
    });
    let mut claimed_elsewhere = 0;
    for mut c in extra {
        c.kill().ok();
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).ok();
        c.wait().ok();
        claimed_elsewhere += err.matches("was claimed by another runner").count();
    }
    let runs = store_doc(&[], &format!("job-runs.{name}")).unwrap();
    let (run, _) = check_slots(&runs, 2);
    assert!(run.len() >= 6, "{runs}");
    // Who won each slot varies; a runner that lost a claim says so (seen: {claimed_elsewhere}).
    eprintln!("claims lost by the runners on this machine: {claimed_elsewhere}");
    let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
    for r in runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "ok")
    {
        assert_eq!(r["node"].as_str().unwrap(), node.trim());
        assert!(
            r["output"]
                .as_str()
                .unwrap()
                .contains(&format!("job ran on {}", node.trim())),
            "{r}"
        );
    }

    // What users read agrees with the store.
    let ls = wsm(&["jobs", "ls", "--json"]);
    let rows: Value = serde_json::from_str(&ls.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap();
    assert_eq!(row["schedule"], "every 2s");
    let logs = wsm(&["jobs", "logs", &name, "--runs", "2"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert_eq!(
        logs.stdout.matches("==> slot ").count(),
        2,
        "{}",
        logs.stdout
    );
    let status = wsm(&["jobs", "status", &name, "--json"]);
    let doc: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        doc["runners"].as_array().unwrap().len(),
        1,
        "{doc}\n{}",
        docker_quiet(&["service", "ps", "--no-trunc", "wsm-jobs_runner"])
    );
    let hostname = docker(&["info", "--format", "{{.Name}}"]);
    assert_eq!(doc["leader"], hostname.trim());

    // rm removes both documents from the swarm.
    let r = wsm(&["jobs", "rm", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(store_doc(&[], &format!("job.{name}")).is_none());
    assert!(store_doc(&[], &format!("job-runs.{name}")).is_none());
    let r = wsm(&["jobs", "uninstall"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        docker_quiet(&["service", "ls", "-q", "--filter", "name=wsm-jobs_runner"])
            .trim()
            .is_empty()
    );
}

#[test]
fn bad_jobs_are_refused_and_nothing_is_stored() {
    let name = unique("wsmjobbad");
    for (args, says) in [
        (
            vec!["--every", "0s", &name, "stack", "ls"],
            "shorter than a second",
        ),
        (
            vec!["--every", "soon", &name, "stack", "ls"],
            "is not a duration",
        ),
        (
            vec!["--cron", "61 * * * *", &name, "stack", "ls"],
            "minute field",
        ),
        (
            vec!["--every", "5s", "--cron", "* * * * *", &name, "ls"],
            "one schedule",
        ),
        (vec![&name, "stack", "ls"], "one schedule"),
        (vec!["--every", "5s", &name], "what the job runs"),
        (
            vec!["--every", "5s", "--timeout", "0", &name, "ls"],
            "--timeout",
        ),
        (vec!["--every", "5s", "bad/name", "ls"], "is not a job name"),
        (
            vec!["--every", "5s", "-e", "LD_PRELOAD=/tmp/x.so", &name, "ls"],
            "chooses what code runs",
        ),
    ] {
        let mut all = vec!["jobs", "add"];
        all.extend(args.iter().copied());
        let r = wsm(&all);
        assert_eq!(r.code, 2, "{all:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{all:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.lines().count(),
            2,
            "one line and the usage: {}",
            r.stderr
        );
    }
    assert!(store_doc(&[], &format!("job.{name}")).is_none());
    let r = wsm(&["jobs", "logs", &name]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("no job {name}")), "{}", r.stderr);
}

#[test]
fn bad_backup_schedules_are_refused_and_nothing_is_made() {
    let st = support::SafeStack::new("wsmbkbad");
    let job = format!("job.backup.{}", st.name());
    for (args, says) in [
        (vec!["backup", "--schedule", "soon"], "\"soon\""),
        (vec!["backup", "--schedule", "500ms"], "at least a second"),
        (
            vec!["backup", "--schedule", "5m", "--volume", "data"],
            "--schedule",
        ),
    ] {
        let r = st.stack(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 2, "{}", r.stderr);
    }
    // A bad WSM_BACKUP_EVERY stops the deploy before anything is made.
    st.s.set("WSM_BACKUP_EVERY", "every hour");
    let file = st.file(
        "stack.yml",
        &support::compose(&[("app", support::IMAGE, "V=1", 1, "")]),
    );
    let r = st.deploy(&file, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("WSM_BACKUP_EVERY"), "{}", r.stderr);
    assert!(st.s.services().is_empty());
    assert!(store_doc(&[], &job).is_none());
}

#[test]
fn backup_db_schedules_a_job_whose_dumps_land_in_the_runners_volume() {
    require_images();
    let _runner = install_runner();
    let s = TestStack::new("wsmbkjob");
    let job = format!("backup.{}", s.name);
    let _cleanup = Cleanup(job.clone());
    s.set("WAVELET_NODES", "1");
    s.set("WAVELET_BACKUP_DB", "true");
    s.set("WSM_BACKUP_PERIOD", "4");
    let r = s.stack(&["start"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("(job {job})")), "{}", r.stderr);
    let def = store_doc(&[], &format!("job.{job}")).expect("the backup job is in the swarm");
    assert_eq!(def["schedule"], "every 4s");
    assert_eq!(
        def["command"],
        serde_json::json!(["stack", "-s", s.name, "backup"])
    );

    // The runner's volume on this manager receives the dumps, rotated.
    let folder = runner_volume().join("backups").join(&s.name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(folder.join("1.tar.gz.backup").exists() && folder.join("1.tar.gz").exists()) {
        if std::time::Instant::now() > deadline {
            let logs = wsm(&["jobs", "logs", &job]);
            let ps = docker_quiet(&["service", "ps", "--no-trunc", "wsm-jobs_runner"])
                + &docker_quiet(&["service", "logs", "--tail", "40", "wsm-jobs_runner"]);
            panic!(
                "no two backups in {}: {}{}\n{ps}",
                folder.display(),
                logs.stdout,
                logs.stderr
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let files = archive_files(&folder.join("1.tar.gz"));
    assert!(files.contains_key("CURRENT"), "{:?}", files.keys());
    let runs = store_doc(&[], &format!("job-runs.{job}")).unwrap();
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "ok"),
        "{runs}"
    );

    // Stopping the stack removes the job.
    let r = s.stack(&["stop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        store_doc(&[], &format!("job.{job}")).is_none(),
        "the job outlived the stack"
    );
    std::fs::remove_dir_all(&folder).ok();
}

/// The folder of the runner's volume on this manager (tests run as root beside the engine).
fn runner_volume() -> std::path::PathBuf {
    let volume = docker(&[
        "volume",
        "inspect",
        "wsm-jobs_data",
        "--format",
        "{{.Mountpoint}}",
    ]);
    std::path::PathBuf::from(volume.trim())
}

#[test]
fn backup_every_schedules_a_compose_stacks_volume_backups_on_the_runner() {
    require_images();
    let _runner = install_runner();
    let st = support::SafeStack::new("wsmbkevery");
    let name = st.name().to_string();
    let job = format!("backup.{name}");
    let _cleanup = Cleanup(job.clone());
    let file = st.file(
        "stack.yml",
        &format!(
            "services:\n  app:\n    image: {}\n    command: [\"sleep\", \"3600\"]\n    \
             stop_grace_period: 1s\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {{}}\n",
            support::IMAGE
        ),
    );
    st.s.set("WSM_BACKUP_EVERY", "3s");
    st.s.set("WSM_BACKUP_KEEP", "1");
    let r = st.deploy(&file, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("(job {job})")), "{}", r.stderr);
    let def = store_doc(&[], &format!("job.{job}")).expect("the backup job is in the swarm");
    assert_eq!(def["schedule"], "every 3s");
    assert_eq!(def["timeout"], 3600);
    assert_eq!(
        def["command"],
        serde_json::json!(["stack", "-s", name, "backup"])
    );
    assert_eq!(
        def["env"],
        serde_json::json!({
            "WSM_SWARM": "default",
            "WSM_BACKUP_DIR": "/var/lib/wsm/backups",
            "WSM_BACKUP_KEEP": "1",
        })
    );
    let c = st.s.container("app", 1);
    docker(&["exec", &c, "sh", "-c", "echo scheduled > /data/a.txt"]);

    // The runner backs the volume up into its own volume.
    let archive = runner_volume()
        .join("backups/default")
        .join(&name)
        .join(format!("{name}_data"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let found = std::fs::read_dir(&archive)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "gz"))
                    .find(|p| {
                        archive_files(p).get("a.txt").map(Vec::as_slice) == Some(b"scheduled\n")
                    })
            })
            .ok()
            .flatten();
        if found.is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let logs = wsm(&["jobs", "logs", &job]);
            let ps = docker_quiet(&["service", "logs", "--tail", "40", "wsm-jobs_runner"]);
            panic!(
                "no archive holding a.txt in {}: {}{}\n{ps}",
                archive.display(),
                logs.stdout,
                logs.stderr
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // --schedule off removes the job; --schedule DUR makes it again; rm takes it with the stack.
    let off = st.stack(&["backup", "--schedule", "off", "--json"]);
    assert_eq!(off.code, 0, "{}", off.stderr);
    let said: Value = serde_json::from_str(&off.stdout).unwrap();
    assert_eq!(said["done"], "removed", "{said}");
    assert!(store_doc(&[], &format!("job.{job}")).is_none());
    assert!(store_doc(&[], &format!("job-runs.{job}")).is_none());
    let on = st.stack(&["backup", "--schedule", "1h30m"]);
    assert_eq!(on.code, 0, "{}", on.stderr);
    assert!(
        on.stdout.contains(&format!("job {job} added")),
        "{}",
        on.stdout
    );
    let def = store_doc(&[], &format!("job.{job}")).unwrap();
    assert_eq!(def["schedule"], "every 5400s");
    let rm = st.stack(&["rm"]);
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert!(
        store_doc(&[], &format!("job.{job}")).is_none(),
        "the job outlived the stack"
    );
}
