//! The swarm state store (`src/host/docker/store.rs`) on the real engine, through `wsm run`
//! scripts, with the Docker CLI as witness: a document round-trips (its labels decoded by
//! hand from `docker config inspect`), of two concurrent writers of one version the second is
//! told and nothing is overwritten, an oversize document is refused with the stored one
//! unchanged; `store_versions` lists each document at the version the swarm shows; a
//! `cleanup::store_write` armed with `same` is written at SIGTERM over the writer's own later
//! write, never over another writer's.

mod common;

use std::io::Read;
use std::process::{Child, Stdio};

use base64::Engine as _;
use common::store::store_doc;
use common::*;
use serde_json::{json, Value};

/// Waits for a spawned wsm and returns what it printed.
fn finish(child: Child) -> Run {
    finish_within(child, "wsm", WSM_DEADLINE).into()
}

/// Runs a Rhai batch file through `wsm run` with ARGS.
fn run_script(dir: &std::path::Path, text: &str, args: &[&str]) -> std::process::Command {
    let path = dir.join(format!("s{}.rhai", unique("")));
    std::fs::write(&path, text).unwrap();
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut all = vec!["run", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut c = wsm_command(dir, &config, &all);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Removes a store document's object when the test ends.
struct DocGuard(String);

impl Drop for DocGuard {
    fn drop(&mut self) {
        docker_quiet(&["config", "rm", &format!("wsm-state-{}", self.0)]);
    }
}

/// The document as the Docker CLI shows it: its labels decoded by hand.
fn doc_by_docker(name: &str) -> Value {
    store_doc(&[], name).unwrap_or_else(|| panic!("no store document {name}"))
}

#[test]
fn a_document_round_trips_a_concurrent_writer_is_told_and_an_oversize_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let doc = format!("test.{}", unique("doc"));
    let _guard = DocGuard(doc.clone());

    let write = r#"
        let e = docker::connect("");
        let v = e.store_write(ARGS[0], #{ list: [1, 2, #{ b: "c" }], text: "ü", writers: [] }, ());
        let r = e.store_read(ARGS[0]);
        print(term::json(#{ written: v, read: r }));
    "#;
    let out: Run = run_script(dir.path(), write, &[&doc])
        .output()
        .unwrap()
        .into();
    let seen: Value = serde_json::from_str(out.ok()).unwrap();
    let want = json!({"list": [1, 2, {"b": "c"}], "text": "ü", "writers": []});
    assert_eq!(seen["read"]["value"], want);
    assert_eq!(seen["read"]["version"], seen["written"]);
    assert!(seen["written"].as_i64().unwrap() > 0);
    assert_eq!(
        doc_by_docker(&doc),
        want,
        "the labels hold the document, gzip + base64"
    );

    // Two writers read the same version, then both write: one wins, the other is told.
    let race = r#"
        let e = docker::connect("");
        let d = e.store_read(ARGS[0]);
        let at = parse_float(ARGS[2]);
        while term::now() < at { term::sleep(20); }
        let value = d.value;
        value.writers.push(ARGS[1]);
        try {
            e.store_write(ARGS[0], value, d.version);
            print("written");
        } catch (err) {
            print(`conflict: ${err.conflict}`);
        }
    "#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let at = format!("{:.3}", now + 4.0);
    let one = run_script(dir.path(), race, &[&doc, "one", &at])
        .spawn()
        .unwrap();
    let two = run_script(dir.path(), race, &[&doc, "two", &at])
        .spawn()
        .unwrap();
    let (one, two) = (finish(one), finish(two));
    let outcomes = [
        ("one", one.ok().trim().to_string()),
        ("two", two.ok().trim().to_string()),
    ];
    let winners: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o == "written")
        .map(|(w, _)| *w)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let loser = outcomes.iter().find(|(_, o)| o != "written").unwrap();
    assert!(
        loser.1.starts_with(&format!(
            "conflict: document {doc} was changed by another writer since version "
        )) && loser.1.ends_with("; read it again and reapply the change"),
        "{}",
        loser.1
    );
    assert_eq!(
        doc_by_docker(&doc)["writers"],
        json!(winners),
        "the winner's write stands alone"
    );

    // A document over the limit: refused in one line, the stored one unchanged.
    let mut bytes = vec![0u8; 1_200_000];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    let big = base64::engine::general_purpose::STANDARD.encode(bytes);
    let big_path = dir.path().join("big.txt");
    std::fs::write(&big_path, big).unwrap();
    let before = doc_by_docker(&doc);
    let oversize = r#"
        let e = docker::connect("");
        let d = e.store_read(ARGS[0]);
        e.store_write(ARGS[0], #{ big: fs::read(ARGS[1]) }, d.version);
    "#;
    let r: Run = run_script(dir.path(), oversize, &[&doc, big_path.to_str().unwrap()])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].contains(&format!("document {doc} takes "))
            && lines[0].contains("over the store's limit of 1024 KiB"),
        "{}",
        lines[0]
    );
    assert_eq!(
        doc_by_docker(&doc),
        before,
        "the stored document is unchanged"
    );
}

#[test]
fn store_versions_lists_each_document_at_the_version_docker_shows_and_a_rewritten_one_moves() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("test.{}.", unique("vers"));
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let _guards = (DocGuard(a.clone()), DocGuard(b.clone()));
    let version_by_docker = |name: &str| -> i64 {
        docker(&[
            "config",
            "inspect",
            "--format",
            "{{.Version.Index}}",
            &format!("wsm-state-{name}"),
        ])
        .trim()
        .parse()
        .unwrap()
    };
    let script = r#"
        let e = docker::connect("");
        if ARGS[1] == "rewrite" { e.store_remove(ARGS[0] + "a"); }
        if ARGS[1] != "list" { e.store_write(ARGS[0] + "a", #{ n: 1 }, ()); }
        if ARGS[1] == "write" { e.store_write(ARGS[0] + "b", #{ n: 2 }, ()); }
        print(term::json(e.store_versions(ARGS[0])));
    "#;
    let listed = |how: &str| -> Value {
        let r = finish(
            run_script(dir.path(), script, &[&prefix, how])
                .spawn()
                .unwrap(),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(r.stdout.trim()).unwrap()
    };
    let first = listed("write");
    assert_eq!(first.as_object().unwrap().len(), 2, "{first}");
    assert_eq!(first[&a], json!(version_by_docker(&a)), "{first}");
    assert_eq!(first[&b], json!(version_by_docker(&b)), "{first}");
    // Removed and written again, a document has a higher version; the other's stands.
    let second = listed("rewrite");
    assert!(
        second[&a].as_i64().unwrap() > first[&a].as_i64().unwrap(),
        "{first} {second}"
    );
    assert_eq!(second[&a], json!(version_by_docker(&a)), "{second}");
    assert_eq!(second[&b], first[&b], "{second}");
}

#[test]
fn a_cleanup_write_with_same_follows_its_own_writer_and_yields_to_another() {
    let dir = tempfile::tempdir().unwrap();
    // Armed at the version created, the writer then writes the document again itself (a lease
    // renewal), or another writer does; then the command is stopped by SIGTERM.
    let script = r#"
        let e = docker::connect("");
        let v = e.store_write(ARGS[0], #{ holder: "me", released: false, n: 0 }, ());
        let release = #{ holder: "me", released: true, n: 0 };
        if ARGS[2] == "same" {
            cleanup::store_write(e, ARGS[0], release, v, "giving the test lease up", #{ same: "holder" });
        } else {
            cleanup::store_write(e, ARGS[0], release, v, "giving the test lease up");
        }
        e.store_write(ARGS[0], #{ holder: ARGS[1], released: false, n: 1 }, v);
        print("written");
        term::sleep(60000);
    "#;
    let stopped = |writer: &str, how: &str| -> (Value, Run) {
        let doc = format!("test.{}", unique("lease"));
        let guard = DocGuard(doc.clone());
        let child = run_script(dir.path(), script, &[&doc, writer, how])
            .spawn()
            .unwrap();
        wait_for("the script's own write", 60, || {
            store_doc(&[], &doc).is_some_and(|d| d["n"] == 1)
        });
        // SAFETY: SIGTERM to a child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let run = finish(child);
        let seen = doc_by_docker(&doc);
        drop(guard);
        (seen, run)
    };

    let (seen, run) = stopped("me", "same");
    assert_eq!(run.code, 143, "{}", run.stderr);
    assert_eq!(
        seen,
        json!({"holder": "me", "released": true, "n": 0}),
        "its own write moved the version, not the holder: {}",
        run.stderr
    );

    let (seen, run) = stopped("other", "same");
    assert_eq!(
        seen,
        json!({"holder": "other", "released": false, "n": 1}),
        "another writer's document stands: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("cleanup failed (giving the test lease up)"),
        "{}",
        run.stderr
    );

    // Without `same`, the writer's own later write is a conflict like any other.
    let (seen, _) = stopped("me", "plain");
    assert_eq!(seen, json!({"holder": "me", "released": false, "n": 1}));

    // `same` naming a key the value has not is a usage error.
    let bad = r#"
        let e = docker::connect("");
        cleanup::store_write(e, "test.never", #{ a: 1 }, 1, "x", #{ same: "holder" });
    "#;
    let r = finish(run_script(dir.path(), bad, &[]).spawn().unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`same` names holder"), "{}", r.stderr);
}
