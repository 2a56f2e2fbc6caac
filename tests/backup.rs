//! `stack backup` and `stack backup status` on a running two-node stack: two cycles leave each
//! node a dump and a `.backup`, the dump equal file for file to a quiesced copy of the node's
//! /db taken by the Docker CLI; a backup killed mid-way leaves both intact and only a temporary
//! file, which the next backup removes; status flags a stale node and exits 1.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn started(prefix: &str) -> (TestStack, PathBuf) {
    require_images();
    let s = TestStack::new(prefix);
    s.set("WAVELET_NODES", "2");
    s.set("WAVELET_RESTART_ON_PEER_CHANGE", "false");
    let dir = s.dir.path().join("backups");
    s.set("WSM_BACKUP_DIR", dir.to_str().unwrap());
    s.stack(&["start"]).ok();
    let folder = dir.join(&s.name);
    (s, folder)
}

/// A node's /db as the Docker CLI copies it (a tar through `docker exec`).
fn db_copy(container: &str) -> BTreeMap<String, Vec<u8>> {
    let out = Command::new("docker")
        .args(["exec", container, "tar", "-C", "/", "-cf", "-", "db"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar_files(&out.stdout[..], false)
}

fn signal_wavelet(container: &str, signal: &str) {
    docker(&["exec", container, "pkill", signal, "-x", "wavelet"]);
}

fn status(s: &TestStack, period: &str) -> (Run, serde_json::Value) {
    let r = s.stack(&["backup", "status", "--period", period, "--json"]);
    let doc = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    (r, doc)
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn two_cycles_keep_a_dump_and_a_backup_that_match_the_database() {
    let (s, folder) = started("wsmbk");
    let containers = [s.container("wavelet", 1), s.container("wavelet", 2)];

    // No dump yet: both nodes are stale, exit 1.
    let (r, doc) = status(&s, "3600");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(doc["stale"], serde_json::json!(["1", "2"]), "{doc}");

    let r = s.stack(&["backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first: Vec<Vec<u8>> = ["1", "2"]
        .iter()
        .map(|n| bytes(&folder.join(format!("{n}.tar.gz"))))
        .collect();
    assert!(!folder.join("1.tar.gz.backup").exists());

    // The second cycle with the wavelet processes stopped: the dump must equal a quiesced copy.
    for c in &containers {
        signal_wavelet(c, "-STOP");
    }
    let quiesced: Vec<_> = containers.iter().map(|c| db_copy(c)).collect();
    let r = s.stack(&["backup"]);
    for c in &containers {
        signal_wavelet(c, "-CONT");
    }
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (i, node) in ["1", "2"].iter().enumerate() {
        let dump = folder.join(format!("{node}.tar.gz"));
        let files = archive_files(&dump);
        assert!(files.contains_key("CURRENT"), "{:?}", files.keys());
        assert_eq!(
            files, quiesced[i],
            "node {node}'s dump differs from its /db"
        );
        assert_eq!(
            bytes(&folder.join(format!("{node}.tar.gz.backup"))),
            first[i],
            "node {node}'s .backup is not the first dump"
        );
    }
    assert_eq!(
        names(&folder),
        [
            "1.tar.gz",
            "1.tar.gz.backup",
            "2.tar.gz",
            "2.tar.gz.backup",
            "backups.log"
        ]
    );
    let log = String::from_utf8(bytes(&folder.join("backups.log"))).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    for line in log.lines() {
        for field in [" node=", " files=", " bytes=", " seconds="] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }

    // Fresh dumps: nothing stale. A dump made to look two hours old: that node is named.
    let (r, doc) = status(&s, "3600");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(doc["stale"], serde_json::json!([]));
    let old = folder.join("2.tar.gz");
    assert!(Command::new("touch")
        .args(["-d", "2 hours ago", old.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let (r, doc) = status(&s, "3600");
    assert_eq!(r.code, 1, "{doc} {}", r.stderr);
    assert_eq!(doc["stale"], serde_json::json!(["2"]), "{doc}");
    assert!(r.stderr.contains("stale: node(s) 2 of"), "{}", r.stderr);

    // A backup killed while it copies node 1 (a large file makes the copy last): the last dump
    // and its .backup stay as they were, only a temporary file is left, status ignores it.
    docker(&[
        "exec",
        &containers[0],
        "sh",
        "-c",
        "head -c 200000000 /dev/urandom > /db/zz-large",
    ]);
    let before = (
        bytes(&folder.join("1.tar.gz")),
        bytes(&folder.join("1.tar.gz.backup")),
    );
    let mut child = s
        .command(&["stack", "-s", &s.name, "backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a temporary dump file", 60, || {
        names(&folder).iter().any(|n| n.contains(".new"))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let after = (
        bytes(&folder.join("1.tar.gz")),
        bytes(&folder.join("1.tar.gz.backup")),
    );
    assert!(
        before == after,
        "the killed backup changed node 1's dump or .backup"
    );
    let leftovers: Vec<String> = names(&folder)
        .into_iter()
        .filter(|n| n.contains(".new"))
        .collect();
    assert!(!leftovers.is_empty());
    let (r, doc) = status(&s, "36000");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 2, "{doc}");

    // The next backup removes the leftover and rotates as usual.
    docker(&["exec", &containers[0], "rm", "/db/zz-large"]);
    let r = s.stack(&["backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("left by a backup that did not finish"),
        "{}",
        r.stderr
    );
    assert_eq!(
        names(&folder),
        [
            "1.tar.gz",
            "1.tar.gz.backup",
            "2.tar.gz",
            "2.tar.gz.backup",
            "backups.log"
        ]
    );
    assert_eq!(bytes(&folder.join("1.tar.gz.backup")), after.0);
}

#[test]
fn backup_refuses_bad_input_and_non_wavelet_stacks() {
    let s = TestStack::bare("wsmbkbad");
    for period in ["0", "x", "", "99999999999"] {
        let r = s.stack(&["backup", "status", "--period", period]);
        assert_eq!(r.code, 2, "--period {period:?}: {}", r.stderr);
        assert!(r.stderr.contains("--period"), "{}", r.stderr);
    }
    let r = s.stack(&["backup", "--period", "5"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    s.set("WSM_BACKUP_PERIOD", "-5");
    let r = s.stack(&["backup", "status"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("WSM_BACKUP_PERIOD"), "{}", r.stderr);
}
