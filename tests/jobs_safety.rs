//! The jobs runner against what goes wrong, on the local swarm (issue 23, items 7, 8, 15, 18):
//! - a job document made with one `docker config create` (its checksum right, its signature
//!   not) never runs, and `jobs ls`/`jobs status` say why; a damaged document beside it stops
//!   no other job;
//! - a runner SIGKILLed mid-job takes its job with it (the job's processes are gone at once),
//!   the run is shown lost, not running, and the next runner's runs never overlap the old one;
//! - a runner ten minutes ahead of the others, then one ten minutes behind (`faketime`), and a
//!   client ten minutes ahead adding the job, cost at most one slot at each change.
//!
//! Runners beside the installed one run on this machine with a copy of the signing key
//! (`WSM_JOBS_KEY_FILE`), read out of the runner's container. The runner is the singleton
//! stack `wsm-jobs`: the tests take `RUNNER` in turn.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::apiproxy::counting_proxy;
use common::store::*;
use common::*;
use serde_json::{json, Value};

const IMAGE: &str = "localhost:5000/wsm-runner:test";

static RUNNER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn wsm(args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_wsm"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
        .into()
}

/// The runner installed for one test, the jobs and documents it made, and the runners it
/// started on this machine: all removed in `Drop`, even when the test fails.
struct Bed {
    _runner: std::sync::MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    jobs: Vec<String>,
    objects: Vec<String>,
    local: Vec<Child>,
}

impl Bed {
    fn new() -> Bed {
        require_images();
        let guard = RUNNER.lock().unwrap_or_else(|e| e.into_inner());
        let bed = Bed {
            _runner: guard,
            dir: tempfile::tempdir().unwrap(),
            jobs: vec![],
            objects: vec![],
            local: vec![],
        };
        // A lease left by an earlier run's runner would hold the new one back for a lease.
        docker_quiet(&["config", "rm", "wsm-state-job-runner"]);
        let r = wsm(&[
            "jobs",
            "install",
            "--image",
            IMAGE,
            "--base",
            "localhost:5000/wavelet-stack-base:latest",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        bed
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Adds a job running `script` (a Rhai script's text) every `every`, as `wsm jobs add`.
    fn add(&mut self, name: &str, every: &str, script: &str, wrap: &[&str]) -> Run {
        let file = self.path(&format!("{name}.rhai"));
        std::fs::write(&file, script).unwrap();
        let mut cmd = Command::new(wrap.first().copied().unwrap_or(env!("CARGO_BIN_EXE_wsm")));
        if !wrap.is_empty() {
            cmd.args(&wrap[1..]).arg(env!("CARGO_BIN_EXE_wsm"));
        }
        let r: Run = cmd
            .args(["jobs", "add", "--every", every, "--script"])
            .arg(&file)
            .arg(name)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
            .into();
        self.jobs.push(name.to_string());
        r
    }

    /// A copy of the signing key, read out of the installed runner.
    fn key(&self) -> PathBuf {
        let path = self.path("key");
        if !path.exists() {
            let c = docker(&[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=wsm-jobs_runner",
            ]);
            let out = Command::new("docker")
                .args(["exec", c.trim(), "cat", "/run/secrets/wsm-jobs-key"])
                .output()
                .unwrap();
            assert!(out.status.success() && out.stdout.len() == 32);
            std::fs::write(&path, out.stdout).unwrap();
        }
        path
    }

    /// A runner on this machine (under `wrap`, e.g. faketime), its stderr in `<name>.log`.
    fn local_runner(&mut self, name: &str, wrap: &[&str]) -> usize {
        let key = self.key();
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let mut cmd = match wrap.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(env!("CARGO_BIN_EXE_wsm"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_wsm")),
        };
        use std::os::unix::process::CommandExt;
        let child = cmd
            .args(["jobs", "runner"])
            .process_group(0)
            .env("WSM_JOBS_KEY_FILE", &key)
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.local.push(child);
        self.local.len() - 1
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// The id a local runner gave itself (its first line: `runner <id>: …`).
    fn runner_id(&self, name: &str) -> String {
        let log = self.log(name);
        let line = log
            .lines()
            .find(|l| l.starts_with("runner "))
            .unwrap_or_default();
        line["runner ".len()..]
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Removes the installed runner and waits until its container is gone.
    fn uninstall(&self) {
        let r = wsm(&["jobs", "uninstall"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        wait_for("the runner's container to go", 60, || {
            docker(&[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=wsm-jobs_runner",
            ])
            .trim()
            .is_empty()
        });
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in &mut self.local {
            // SAFETY: SIGKILL to the process group of a runner this test started (a wrapper
            // such as faketime and the wsm under it).
            unsafe { libc::killpg(c.id() as i32, libc::SIGKILL) };
            c.wait().ok();
        }
        for j in &self.jobs {
            wsm(&["jobs", "rm", j]);
        }
        for o in &self.objects {
            docker_quiet(&["config", "rm", o]);
        }
        wsm(&["jobs", "uninstall"]);
        docker_quiet(&["volume", "rm", "wsm-jobs_data"]);
        docker_quiet(&["config", "rm", "wsm-state-job-runner"]);
    }
}

fn runs(job: &str) -> Value {
    store_doc(&[], &format!("job-runs.{job}")).unwrap_or(json!({"runs": [], "missed": []}))
}

fn with_status(runs: &Value, status: &str) -> Vec<Value> {
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == status)
        .cloned()
        .collect()
}

fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {rows}"))
}

#[test]
fn forged_and_damaged_job_documents_never_run_are_reported_and_stop_no_other_job() {
    let mut bed = Bed::new();
    let good = unique("wsmjobok");
    let r = bed.add(&good, "2s", "print(\"the good job ran\");", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let signed = store_doc(&[], &format!("job.{good}")).unwrap();
    assert_eq!(signed["mac"].as_str().unwrap().len(), 64, "{signed}");

    // Both sort before the good job, so a runner that stops at the first bad one never gets
    // to it.
    let forged = unique("a-forged");
    let damaged = unique("a-damaged");
    let mut doc = signed.clone();
    doc["name"] = json!(forged);
    doc["script"] = json!("print(\"the forged job ran\");");
    bed.objects
        .push(forge_store_doc(&format!("job.{forged}"), &doc));
    bed.objects.push(format!("wsm-state-job-runs.{forged}"));
    bed.objects.push(raw_store_doc(
        &format!("job.{damaged}"),
        "not base64 at all",
        "0",
    ));
    bed.objects.push(format!("wsm-state-job-runs.{damaged}"));
    let since = Instant::now();
    wait_for("three runs of the good job", 90, || {
        with_status(&runs(&good), "ok").len() >= 3
    });
    assert!(since.elapsed() < Duration::from_secs(90));
    let ok = with_status(&runs(&good), "ok");
    assert!(
        ok.iter()
            .all(|r| r["output"].as_str().unwrap().contains("the good job ran")),
        "{ok:?}"
    );

    wait_for("the runner to report the forged job", 30, || {
        runs(&forged)["refused"].is_string()
    });
    let f = runs(&forged);
    assert!(f["runs"].as_array().unwrap().is_empty(), "it ran: {f}");
    assert!(
        f["refused"]
            .as_str()
            .unwrap()
            .contains("signature does not match"),
        "{f}"
    );

    // What users read says so.
    let ls = wsm(&["jobs", "ls", "--json"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    let rows: Value = serde_json::from_str(&ls.stdout).unwrap();
    assert!(row(&rows, &forged)["problem"]
        .as_str()
        .unwrap()
        .contains("signature does not match"));
    assert!(
        row(&rows, &damaged)["problem"]
            .as_str()
            .unwrap()
            .contains("damaged"),
        "{rows}"
    );
    assert!(row(&rows, &good)["problem"].is_null(), "{rows}");
    let status = wsm(&["jobs", "status"]);
    assert_eq!(status.code, 1, "{}", status.stderr);
    assert!(
        status.stderr.contains(&format!("job {forged}: refused"))
            && status.stderr.contains(&format!("job {damaged}: damaged")),
        "{}",
        status.stderr
    );
}

#[test]
fn a_job_env_that_sets_the_loader_or_a_search_path_is_refused_at_add() {
    let name = unique("wsmjobenv");
    for var in [
        "LD_PRELOAD=/tmp/x.so",
        "PATH=/tmp",
        "WSM_SCRIPT_PATH=/tmp",
        "ld_library_path=/x",
    ] {
        let r = wsm(&[
            "jobs", "add", "--every", "5s", "--env", var, &name, "stack", "ls",
        ]);
        assert_eq!(r.code, 2, "{var}: {}", r.stderr);
        assert!(r.stderr.contains("chooses what code runs"), "{}", r.stderr);
    }
    assert!(store_doc(&[], &format!("job.{name}")).is_none());
}

/// The script of a job that holds a lock for `secs` seconds in `dir`, writing `start <pid>` and
/// `end <pid>` to `dir/log`, and `OVERLAP` when another run still holds the lock.
fn locking_job(dir: &Path, secs: u32) -> String {
    let d = dir.display();
    format!(
        "process::run([\"sh\", \"-c\", \"exec 9>>{d}/lock; flock -n 9 || echo OVERLAP >> {d}/log; echo start $$ >> {d}/log; sleep {secs}; echo end $$ >> {d}/log\"], #{{ timeout: 120 }});"
    )
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_runner_killed_mid_job_takes_its_job_with_it_and_runs_never_overlap() {
    let mut bed = Bed::new();
    let job = unique("wsmjobkill");
    let script = locking_job(bed.dir.path(), 8);
    let r = bed.add(&job, "2s", &script, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    bed.key();
    // From here on the runners are on this machine: the first takes the lease.
    bed.uninstall();
    let first = bed.local_runner("first", &[]);
    let log = bed.path("log");
    wait_for("a run by the first local runner", 60, || {
        bed.log("first").contains("running slot")
            && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("start"))
    });
    bed.local_runner("second", &[]);
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap();
    let pid: i32 = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("start "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(pid), "the job is not running: {text}");
    let killed_at = Instant::now();
    bed.local[first].kill().unwrap(); // SIGKILL
    bed.local[first].wait().unwrap();

    // The job's processes go with their runner.
    wait_for("the job's shell to end with its runner", 10, || !alive(pid));
    assert!(killed_at.elapsed() < Duration::from_secs(8));

    // The second runner takes over once the lease has run out, marks the run lost and runs
    // the next slots, never beside the old one.
    let (first_id, second_id) = (bed.runner_id("first"), bed.runner_id("second"));
    assert!(!first_id.is_empty() && !second_id.is_empty());
    let by = |doc: &Value, id: &str, status: &str| -> usize {
        doc["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["runner"] == id && r["status"].as_str().unwrap().starts_with(status))
            .count()
    };
    wait_for("two runs by the second runner", 90, || {
        by(&runs(&job), &second_id, "ok") >= 2
    });
    let doc = runs(&job);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("OVERLAP"), "runs overlapped: {text}");
    assert_eq!(by(&doc, &first_id, "lost"), 1, "{doc}");
    assert_eq!(by(&doc, &first_id, "running"), 0, "{doc}");
    let ls = wsm(&["jobs", "ls", "--json"]);
    let rows: Value = serde_json::from_str(&ls.stdout).unwrap();
    let last = &row(&rows, &job)["last"];
    assert!(
        last["status"] != "running" || last["runner"] == second_id.as_str(),
        "{rows}"
    );
}

#[test]
fn clocks_ten_minutes_apart_cost_at_most_one_slot() {
    if Command::new("faketime").arg("--version").output().is_err() {
        panic!("faketime is missing: tests/fixtures/setup-testbed installs it");
    }
    let mut bed = Bed::new();
    let job = unique("wsmjobskew");
    // Slots 5 s apart: a handover on a loaded machine (the lease given up, seen, taken, the
    // jobs listed) may cost one slot, never two; ten minutes of skew would be 120.
    let every = 5u64;
    // A client ten minutes ahead adds the job: it runs at once all the same.
    let r = bed.add(
        &job,
        &format!("{every}s"),
        "print(\"tick\");",
        &["faketime", "-f", "+10m"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let added = Instant::now();
    wait_for("the first run", 40, || {
        !with_status(&runs(&job), "ok").is_empty()
    });
    assert!(added.elapsed() < Duration::from_secs(30));

    // A runner ten minutes ahead follows the installed one, then takes over when it stops
    // (SIGTERM gives the lease up); then one ten minutes behind takes over from it.
    let ahead = bed.local_runner("ahead", &["faketime", "-f", "+10m"]);
    std::thread::sleep(Duration::from_secs(6));
    bed.uninstall();
    let handover = Instant::now();
    wait_for("runs by the runner ahead", 90, || {
        bed.log("ahead").matches("running slot").count() >= 3
    });
    let first_handover = handover.elapsed();
    let behind = bed.local_runner("behind", &["faketime", "-f", "-10m"]);
    std::thread::sleep(Duration::from_secs(6));
    // SAFETY: SIGTERM to the process group of a runner this test started.
    unsafe { libc::killpg(bed.local[ahead].id() as i32, libc::SIGTERM) };
    bed.local[ahead].wait().unwrap();
    let handover = Instant::now();
    wait_for("runs by the runner behind", 90, || {
        bed.log("behind").matches("running slot").count() >= 3
    });
    let second_handover = handover.elapsed();
    // SAFETY: as above.
    unsafe { libc::killpg(bed.local[behind].id() as i32, libc::SIGKILL) };

    // Every gap between consecutive runs, as this test saw them, is at most two slots (one
    // lost), and the runners report at most one missed slot per change, not ten minutes' worth.
    let doc = runs(&job);
    let missed = doc["missed_count"].as_i64().unwrap();
    assert!(missed <= 2, "{missed} slots missed: {doc}");
    let starts: Vec<i64> = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["started"].as_i64().unwrap())
        .collect();
    eprintln!(
        "handovers took {first_handover:?} and {second_handover:?}; runs started at {starts:?}"
    );
    assert!(
        first_handover < Duration::from_secs(every * 2 + 15)
            && second_handover < Duration::from_secs(every * 2 + 15),
        "{first_handover:?} {second_handover:?}"
    );
    let logs = bed.log("ahead") + &bed.log("behind");
    assert!(!logs.contains("missed 2"), "{logs}");
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("missed") && !l.contains("missed 1 slot")),
        "{logs}"
    );
}

#[test]
fn an_idle_runner_does_not_list_the_store_every_second() {
    let mut bed = Bed::new();
    let job = unique("wsmjobidle");
    let r = bed.add(&job, "1h", "print(\"hourly\");", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    bed.key();
    bed.uninstall();
    let socket = bed.path("docker.sock");
    let seen = counting_proxy(&socket);
    let key = bed.key();
    let log = std::fs::File::create(bed.path("idle.log")).unwrap();
    use std::os::unix::process::CommandExt;
    let child = Command::new(env!("CARGO_BIN_EXE_wsm"))
        .args(["jobs", "runner"])
        .env("WSM_JOBS_KEY_FILE", &key)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    bed.local.push(child);
    wait_for("the runner to take the lease", 30, || {
        bed.log("idle").contains("holds the lease")
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = seen.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(20));
    let window: Vec<String> = seen.lock().unwrap()[before..].to_vec();
    let lists = window
        .iter()
        .filter(|l| l.contains("/configs?") || l.ends_with("/configs HTTP/1.1"))
        .count();
    eprintln!(
        "in 20 s idle the acting runner made {} requests, {lists} of them listing the store",
        window.len()
    );
    assert!(lists <= 3, "{lists} listings in 20 s: {window:#?}");
}

#[test]
fn slots_missed_while_the_runner_runs_another_job_say_so() {
    let mut bed = Bed::new();
    let slow = unique("wsmjobslow");
    let fast = unique("wsmjobfast");
    let r = bed.add(&slow, "10s", "term::sleep(6000);", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = bed.add(&fast, "2s", "print(\"fast\");", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    wait_for(
        "a slot of the fast job missed while the slow one ran",
        90,
        || {
            runs(&fast)["missed"].as_array().is_some_and(|m| {
                m.iter().any(|m| {
                    m["why"]
                        .as_str()
                        .is_some_and(|w| w.contains(&format!("busy with job {slow}")))
                })
            })
        },
    );
    let doc = runs(&fast);
    let wrong: Vec<&Value> = doc["missed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["why"] == "no runner could act")
        .collect();
    assert!(wrong.is_empty(), "the runner was there all along: {doc}");
}
