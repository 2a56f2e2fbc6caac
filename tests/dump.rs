//! dump-db's gzip writer (issue 16: blocks deflated on every CPU, stored when they do not
//! compress) against the real engine. A node's `/db` gets a text file (which deflates), random
//! bytes (which are stored) and a file of both; it is dumped at the default level and at level 0.
//! Witnesses: `gzip -t` and GNU `tar` read the archive, the files tar extracts are byte for byte
//! what `docker exec cat` reads in the container, and the checksum dump-db prints is the one
//! `archive::checksum` and `sha256sum` over the extracted files give.

mod common;

use std::process::Command;

use common::*;

/// Runs a shell command line on this machine; its stdout.
fn sh(line: &str) -> String {
    let out = Command::new("sh").args(["-c", line]).output().unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn text_and_random_databases_round_trip_at_level_1_and_0() {
    require_images();
    let s = TestStack::new("wsmgz");
    s.set("WAVELET_NODES", "1");
    s.set("WAVELET_RESTART_ON_PEER_CHANGE", "false");
    s.stack(&["start"]).ok();
    let c = s.container("wavelet", 1);
    docker(&[
        "exec", &c, "sh", "-c",
        "mkdir -p /db/gz && seq 1 2000000 > /db/gz/text && head -c 24M /dev/urandom > /db/gz/random \
         && { head -c 3M /dev/urandom; seq 1 400000; head -c 100000 /dev/urandom; } > /db/gz/mixed",
    ]);
    let names = ["text", "random", "mixed"];
    let original: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let out = Command::new("docker")
                .args(["exec", &c, "cat", &format!("/db/gz/{n}")])
                .output()
                .unwrap();
            assert!(out.status.success());
            out.stdout
        })
        .collect();
    let text_len = original[0].len() as u64;
    let raw_len: u64 = original.iter().map(|b| b.len() as u64).sum();

    let mut sizes = Vec::new();
    for level in ["1", "0"] {
        s.set("WSM_DUMP_LEVEL", level);
        let out = s.dir.path().join(format!("level{level}.tar.gz"));
        let out_s = out.to_str().unwrap();
        let r = s.stack(&["dump-db", "1", out_s]);
        assert_eq!(r.code, 0, "level {level}: {}", r.stderr);
        sh(&format!("gzip -t '{out_s}'"));
        let listing = sh(&format!("tar -tzf '{out_s}'"));
        for n in names {
            assert!(
                listing.lines().any(|l| l == format!("db/gz/{n}")),
                "level {level}: tar -tzf does not list db/gz/{n}:\n{listing}"
            );
        }
        let x = s.dir.path().join(format!("x{level}"));
        std::fs::create_dir(&x).unwrap();
        sh(&format!("tar -xzf '{out_s}' -C '{}'", x.display()));
        for (n, bytes) in names.iter().zip(&original) {
            let got = std::fs::read(x.join("db/gz").join(n)).unwrap();
            assert!(
                got == *bytes,
                "level {level}: {n} differs from the container's"
            );
        }
        // The checksum dump-db printed (its first 12 digits), archive::checksum and sha256sum
        // over the extracted files agree.
        let local = sh(&format!(
            "cd '{}/db' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum",
            x.display()
        ));
        let local = local.split_whitespace().next().unwrap().to_string();
        assert!(
            r.stderr.contains(&format!("checksum {}", &local[..12])),
            "level {level}: dump-db printed another checksum than {local}: {}",
            r.stderr
        );
        let script = s.dir.path().join("sum.rhai");
        std::fs::write(&script, format!("print(archive::checksum({out_s:?}));\n")).unwrap();
        let sum = s.wsm(&["run", script.to_str().unwrap()]);
        assert_eq!(sum.ok().trim(), local, "level {level}: archive::checksum");
        sizes.push(std::fs::metadata(&out).unwrap().len());
    }
    // Level 1 deflates the text (at least half of it saved); level 0 stores every byte.
    let (gz1, gz0) = (sizes[0], sizes[1]);
    assert!(gz0 > raw_len, "level 0: {gz0} bytes for {raw_len} of files");
    assert!(
        gz1 + text_len / 2 < gz0,
        "level 1 ({gz1} bytes) did not deflate the text ({text_len} bytes; level 0 {gz0})"
    );
    // The random file is stored, not inflated by a failed deflate: level 1 is at most the random
    // bytes plus the deflated rest, with a few bytes of headers per 64 KiB.
    assert!(
        gz1 < raw_len - text_len / 2,
        "level 1: {gz1} bytes for {raw_len} of files"
    );
}
