//! Issue 25, first slice: `stack backup` of a compose stack's named volume on the local engine,
//! with the Docker CLI, GNU tar, gzip and sha256sum as witnesses: a volume filled through
//! `docker exec`, backed up three times (two generations kept, each passing `gzip -t`, its files
//! byte-identical to the volume's as `docker run … sha256sum` reads them, one `backups.log` line
//! per archive whose sha256 is the file's), a leftover temporary removed by the next run, the
//! `wsm.backup.stop` service back at its replicas after each run with its old task shut down
//! (`docker service inspect`, `docker service ps`), the `wsm.backup.pre` hook's file in the
//! archive, `verify` passing then naming a truncated archive (exit 1), `status` stale after the
//! period (exit 1), `restore` into a fresh stack byte-identical, and bad input exiting 2 with
//! nothing made. The exec policy with a real database: PostgreSQL (Debian's, built by
//! `tests/fixtures/build-images`) dumped by `wsm.backup.pre`, its dump's volume restored into a
//! fresh stack whose `wsm.restore.post` loads it, `docker exec … psql` the witness.

#[path = "common/mod.rs"]
mod common;
#[path = "safedeploy/support.rs"]
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use support::*;

/// A compose stack of two sleeping services mounting the named volume `data` at /data: `db`
/// stopped during backups and restores, writing `/data/pre.txt` before each backup, and `reader`,
/// left running.
fn stack_file(st: &SafeStack) -> String {
    st.file(
        "stack.yml",
        &format!(
            "services:\n  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    \
             stop_grace_period: 1s\n    volumes: [\"data:/data\"]\n    deploy:\n      \
             replicas: 1\n      labels:\n        wsm.backup.stop: \"true\"\n        \
             wsm.backup.pre: \"date > /data/pre.txt\"\n  reader:\n    image: {IMAGE}\n    \
             command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n    \
             volumes: [\"data:/data\"]\nvolumes:\n  data: {{}}\n"
        ),
    )
}

/// `sha256sum` of every file of a volume, read by a container of its own.
fn volume_sums(volume: &str) -> String {
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/v:ro"),
        IMAGE,
        "sh",
        "-c",
        "cd /v && find . -type f | LC_ALL=C sort | xargs -r sha256sum",
    ])
}

/// `sha256sum` of every file of an archive, unpacked by GNU tar.
fn archive_sums(archive: &Path, scratch: &Path) -> String {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(scratch)
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar -xzf {}", archive.display());
    let out = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\"/wsm-volume && find . -type f | LC_ALL=C sort | xargs -r sha256sum")
        .arg("sums")
        .arg(scratch)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn gzip_ok(path: &Path) -> bool {
    Command::new("gzip")
        .arg("-t")
        .arg(path)
        .status()
        .unwrap()
        .success()
}

fn replicas(service: &str) -> String {
    docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        service,
    ])
    .trim()
    .to_string()
}

/// The service's tasks as `docker service ps` shows them: (id, desired state).
fn tasks(service: &str) -> Vec<(String, String)> {
    docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.DesiredState}}",
        service,
    ])
    .lines()
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        Some((w.next()?.to_string(), w.next()?.to_string()))
    })
    .collect()
}

fn running_task(service: &str) -> String {
    let t = tasks(service);
    t.iter()
        .find(|(_, d)| d == "Running")
        .unwrap_or_else(|| panic!("no running task of {service}: {t:?}"))
        .0
        .clone()
}

/// An RFC 3339 time in seconds since the epoch (`date -d`).
fn epoch(rfc3339: &str) -> f64 {
    let out = Command::new("date")
        .args(["-d", rfc3339, "+%s.%N"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn names(folder: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A stack of `stack_file` deployed, its `db` task running and `fill` run in it (`sh -c`);
/// returns the stack and its compose file.
fn deployed_and_filled(prefix: &str, fill: &str) -> (SafeStack, String) {
    let st = SafeStack::new(prefix);
    let file = stack_file(&st);
    st.deploy(&file, &[]).ok();
    wait_for("the db task", 60, || !st.s.running_tasks("db").is_empty());
    docker(&["exec", &st.s.container("db", 1), "sh", "-c", fill]);
    (st, file)
}

#[test]
fn a_compose_stacks_volume_is_backed_up_in_generations_verified_and_restored() {
    let (st, file) = deployed_and_filled(
        "wsmvol",
        "mkdir -p /data/sub && echo hello > /data/a.txt && head -c 300000 /dev/urandom > /data/sub/random.bin \
         && seq 1 20000 > /data/sub/numbers.txt",
    );
    let name = st.name().to_string();
    let service = format!("{name}_db");
    let volume = format!("{name}_data");

    // Bad input: one line, exit 2, nothing made.
    let bad = st.stack(&["backup", "--volume", "nope"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("nope"), "{}", bad.stderr);
    let bad = st.stack(&["backup", "--period", "5"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let state = st.s.dir.path().join(".xdg-state");
    let folder: PathBuf = state.join(format!("wsm/backups/default/{name}"));
    assert!(
        !folder.exists(),
        "a refused backup made {}",
        folder.display()
    );

    // First backup: the service stopped meanwhile, back at 1 replica after.
    let first_task = running_task(&service);
    let run = st.stack(&["backup", "--json"]);
    run.ok();
    assert_eq!(replicas(&service), "1");
    // Scaling to 0 removes the task: a new one runs, made after the archive was written.
    let after = tasks(&service);
    assert!(
        !after.iter().any(|(id, _)| *id == first_task),
        "the task before the backup is gone: {after:?}"
    );
    let vdir = folder.join(&volume);
    let new_task = running_task(&service);
    let created = docker(&["inspect", "--format", "{{json .CreatedAt}}", &new_task]);
    let created = epoch(created.trim().trim_matches('"'));
    let archived = std::fs::metadata(vdir.join("1.tar.gz"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        created > archived,
        "the new task ({created}) was made after the archive ({archived})"
    );
    let vdir = folder.join(&volume);
    assert_eq!(names(&vdir), vec!["1.tar.gz"]);

    // A leftover of a killed run, then the second backup removes it.
    std::fs::write(vdir.join(".2.tar.gz.XXXX.partial"), b"half").unwrap();
    let run = st.stack(&["backup"]);
    run.ok();
    assert!(
        run.stderr.contains(".2.tar.gz.XXXX.partial"),
        "{}",
        run.stderr
    );
    assert_eq!(names(&vdir), vec!["1.tar.gz", "2.tar.gz"]);
    assert_eq!(replicas(&service), "1");

    // Each generation: gzip -t, and (the latest) the volume's files byte for byte.
    let scratch = st.s.dir.path().join("scratch");
    for g in ["1.tar.gz", "2.tar.gz"] {
        assert!(gzip_ok(&vdir.join(g)), "gzip -t {g}");
    }
    let live = volume_sums(&volume);
    assert!(
        live.contains("./sub/random.bin") && live.contains("./pre.txt"),
        "{live}"
    );
    assert_eq!(archive_sums(&vdir.join("2.tar.gz"), &scratch), live);
    let log = std::fs::read_to_string(folder.join("backups.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (line, g) in lines.iter().zip(["1.tar.gz", "2.tar.gz"]) {
        let path = vdir.join(g);
        assert!(line.contains(&format!("file={}", path.display())), "{line}");
        assert!(
            line.contains(&format!("sha256={}", sha256_file(&path))),
            "{line}"
        );
        assert!(
            line.contains(&format!("volume={volume}")) && line.contains("files=4"),
            "{line}"
        );
    }

    // A third: two generations kept, the oldest gone, and the two left whole.
    st.stack(&["backup"]).ok();
    assert_eq!(names(&vdir), vec!["2.tar.gz", "3.tar.gz"]);
    assert!(gzip_ok(&vdir.join("2.tar.gz")) && gzip_ok(&vdir.join("3.tar.gz")));

    // verify: whole, then the latest truncated.
    let v = st.stack(&["backup", "verify"]);
    v.ok();
    let latest = vdir.join("3.tar.gz");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).unwrap();
    let v = st.stack(&["backup", "verify"]);
    assert_eq!(v.code, 1, "{}\n{}", v.stdout, v.stderr);
    assert!(
        v.stderr.contains(&latest.display().to_string()),
        "{}",
        v.stderr
    );
    std::fs::write(&latest, &bytes).unwrap();

    // status: fresh, then stale after the period.
    st.stack(&["backup", "status"]).ok();
    st.s.set("WSM_BACKUP_PERIOD", "1");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let s = st.stack(&["backup", "status"]);
    assert_eq!(s.code, 1, "{}\n{}", s.stdout, s.stderr);
    assert!(s.stderr.contains(&volume), "{}", s.stderr);
    // --notify tells it: the keeper's backup_stale event, heard by a real HTTP server.
    let hook = common::webhook::Webhook::start(false);
    let told: Run =
        st.s.command(&["stack", "backup", "status", "--notify", st.name()])
            .env("WSM_NOTIFY", hook.url("/hook"))
            .output()
            .unwrap()
            .into();
    assert_eq!(told.code, 1, "{}\n{}", told.stdout, told.stderr);
    let stale = hook.events("backup_stale");
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(
        stale[0]["volumes"].to_string().contains(&volume),
        "{}",
        stale[0]
    );

    // The volume moved: restored into a fresh stack's volume from the latest archive.
    let fresh = SafeStack::new("wsmvolto");
    fresh
        .deploy(
            &fresh.file("stack.yml", &std::fs::read_to_string(&file).unwrap()),
            &[],
        )
        .ok();
    let to = format!("{}_data", fresh.name());
    let to_service = format!("{}_db", fresh.name());
    let latest = latest.display().to_string();
    let args = ["restore", "--volume", "data", "--from", latest.as_str()];
    let refused = fresh.stack(&args);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("{}_reader", fresh.name())),
        "{}",
        refused.stderr
    );
    assert_eq!(volume_sums(&to), "", "a refused restore wrote nothing");
    let mut forced = args.to_vec();
    forced.push("--force");
    fresh.stack(&forced).ok();
    assert_eq!(volume_sums(&to), archive_sums(Path::new(&latest), &scratch));
    assert_eq!(replicas(&to_service), "1");
    wait_for("the restored db task", 30, || {
        !fresh.s.running_tasks("db").is_empty()
    });
}

/// The labels `e.hold` writes on a stopped writer, as `docker service inspect` shows them.
fn held_label(service: &str) -> String {
    docker(&[
        "service",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"wsm.held.replicas\"}}",
        service,
    ])
    .trim()
    .to_string()
}

#[test]
fn a_backup_killed_mid_stream_leaves_whole_generations_and_its_writer_is_started_again() {
    // Enough incompressible data that the stream lasts a while.
    let (st, _) = deployed_and_filled(
        "wsmvolkill",
        "head -c 33554432 /dev/urandom > /data/big.bin && echo a > /data/a.txt",
    );
    let name = st.name().to_string();
    let service = format!("{name}_db");
    let volume = format!("{name}_data");
    st.stack(&["backup"]).ok();
    let vdir =
        st.s.dir
            .path()
            .join(format!(".xdg-state/wsm/backups/default/{name}/{volume}"));
    assert_eq!(names(&vdir), vec!["1.tar.gz"]);

    // A second backup, killed outright once its archive is being written.
    let mut child =
        st.s.command(&["stack", "backup", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !names(&vdir).iter().any(|n| n.starts_with('.')) {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary archive appeared in {}",
            vdir.display()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What it left: the previous generation whole, a temporary, the writer held at 0 with its
    // count recorded on the service.
    let left = names(&vdir);
    assert!(gzip_ok(&vdir.join("1.tar.gz")), "gzip -t 1.tar.gz");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left[0].starts_with('.'), "{left:?}");
    assert_eq!(replicas(&service), "0");
    assert_eq!(held_label(&service), "1");

    // The next command that takes the stack's lock starts the writer again; this one is the
    // next backup, which also removes the temporary and the helper container.
    let run = st.stack(&["backup"]);
    run.ok();
    assert!(
        run.stderr.contains(&service) && run.stderr.contains("scaled back to 1"),
        "{}",
        run.stderr
    );
    assert_eq!(names(&vdir), vec!["1.tar.gz", "2.tar.gz"]);
    assert!(gzip_ok(&vdir.join("2.tar.gz")), "gzip -t 2.tar.gz");
    assert_eq!(replicas(&service), "1");
    assert_eq!(held_label(&service), "");
    let helpers = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=wsm.volume-helper={volume}"),
    ]);
    assert_eq!(helpers.trim(), "", "helper containers left");

    // verify --against-live: the latest archive is the live volume, until a file is added.
    wait_for("the db task", 60, || !st.s.running_tasks("db").is_empty());
    st.stack(&["backup", "verify", "--against-live"]).ok();
    let c = st.s.container("reader", 1);
    docker(&["exec", &c, "sh", "-c", "echo later > /data/later.txt"]);
    let v = st.stack(&["backup", "verify", "--against-live"]);
    assert_eq!(v.code, 1, "{}\n{}", v.stdout, v.stderr);
    assert!(
        v.stdout.contains("new in the live volume: later.txt"),
        "{}",
        v.stdout
    );
    let bad = st.stack(&["backup", "--against-live"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// Debian's PostgreSQL 15 on the test bed's base (`tests/fixtures/postgres`).
const POSTGRES: &str = "localhost:5000/wsm-test/postgres:15";

/// A compose stack of one PostgreSQL service: its cluster in `pgdata`, its dumps in `dumps`,
/// dumped by `wsm.backup.pre` and loaded by `wsm.restore.post` (stopped during both, so restore
/// may write `dumps`).
fn postgres_file(st: &SafeStack) -> String {
    st.file(
        "stack.yml",
        &format!(
            "services:\n  db:\n    image: {POSTGRES}\n    stop_grace_period: 20s\n    \
             volumes: [\"pgdata:/var/lib/postgresql/data\", \"dumps:/backup\"]\n    deploy:\n      \
             labels:\n        wsm.backup.stop: \"true\"\n        \
             wsm.backup.pre: \"pg_dump --clean --if-exists -d postgres -f /backup/dump.sql\"\n        \
             wsm.restore.post: \"psql -v ON_ERROR_STOP=1 -q -d postgres -f /backup/dump.sql\"\n\
             volumes:\n  pgdata: {{}}\n  dumps: {{}}\n"
        ),
    )
}

/// `psql -At -c SQL` in the stack's running database container (the witness).
fn psql(st: &SafeStack, sql: &str) -> String {
    docker(&[
        "exec",
        &st.s.container("db", 1),
        "psql",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ])
}

#[test]
fn a_postgres_dump_taken_by_a_label_is_loaded_into_a_fresh_stack_after_restore() {
    let built = docker_quiet(&["image", "inspect", "--format", "{{.Id}}", POSTGRES]);
    assert!(
        !built.trim().is_empty(),
        "image {POSTGRES} is missing: run tests/fixtures/build-images"
    );
    let st = SafeStack::new("wsmpg");
    let fresh = SafeStack::new("wsmpgto");
    let file = postgres_file(&st);
    // The fresh stack initialises its empty cluster meanwhile.
    let fresh_deploy = fresh
        .deploy_command(
            &fresh.file("stack.yml", &std::fs::read_to_string(&file).unwrap()),
            &[],
        )
        .spawn()
        .unwrap();
    st.deploy(&file, &[]).ok();
    psql(
        &st,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); \
         INSERT INTO items SELECT n, md5(n::text) FROM generate_series(1, 500) n; \
         INSERT INTO items VALUES (501, 'it''s ünïcode; a \\ backslash')",
    );
    let query = "SELECT id, name FROM items ORDER BY id";
    let rows = psql(&st, query);
    assert_eq!(rows.lines().count(), 501, "{rows}");

    // The dump is taken while the database runs, then its volume archived.
    st.stack(&["backup", "--volume", "dumps"]).ok();
    psql(&st, "INSERT INTO items VALUES (502, 'after the backup')");
    let archive = st.s.dir.path().join(format!(
        ".xdg-state/wsm/backups/default/{0}/{0}_dumps/1.tar.gz",
        st.name()
    ));
    assert!(gzip_ok(&archive), "gzip -t {}", archive.display());

    let done: Run = finish_within(fresh_deploy, "the fresh deploy", WSM_DEADLINE).into();
    done.ok();
    assert_eq!(
        psql(&fresh, "SELECT to_regclass('items')").trim(),
        "",
        "a fresh database"
    );
    let from = archive.display().to_string();
    fresh
        .stack(&["restore", "--volume", "dumps", "--from", from.as_str()])
        .ok();
    assert_eq!(
        psql(&fresh, query),
        rows,
        "the fresh database answers with the backed-up rows"
    );
    assert_eq!(replicas(&format!("{}_db", fresh.name())), "1");
}
