//! dump-db's gzip writer (issue 16: blocks deflated on every CPU, stored when they do not
//! compress) against the real engine. A container's folder gets a text file (which deflates),
//! random bytes (which are stored) and a file of both; `archive::dump`, what dump-db calls, writes
//! it at level 1 (dump-db's default) and at level 0. Witnesses: `gzip -t` and GNU `tar` read the
//! archive, the files tar extracts are byte for byte what `docker exec cat` reads in the
//! container, and the checksum the dump returns is the one `archive::checksum` and `sha256sum`
//! over the extracted files give. (Nothing writes into the folder, so no copy has to be repeated
//! and no process frozen: tests/nodes.rs and tests/hardening.rs cover those through dump-db.)

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

/// A container of the node image that only sleeps, removed on drop.
struct Sleeper(String);

impl Drop for Sleeper {
    fn drop(&mut self) {
        docker_quiet(&["rm", "-f", &self.0]);
    }
}

#[test]
fn text_and_random_data_round_trip_at_level_1_and_0() {
    require_images();
    let s = TestStack::bare("wsmgz");
    let c = Sleeper(s.name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &c.0,
        "--entrypoint",
        "sleep",
        "localhost:5000/wavelet-stack-node:latest",
        "600",
    ]);
    let c = &c.0;
    docker(&[
        "exec", c, "sh", "-c",
        "mkdir -p /data/gz && seq 1 2000000 > /data/gz/text && head -c 24M /dev/urandom > /data/gz/random \
         && { head -c 3M /dev/urandom; seq 1 400000; head -c 100000 /dev/urandom; } > /data/gz/mixed",
    ]);
    let names = ["text", "random", "mixed"];
    let original: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let out = Command::new("docker")
                .args(["exec", c, "cat", &format!("/data/gz/{n}")])
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
        let out = s.dir.path().join(format!("level{level}.tar.gz"));
        let out_s = out.to_str().unwrap();
        let script = s.dir.path().join(format!("dump{level}.rhai"));
        std::fs::write(
            &script,
            format!(
                "let r = archive::dump(docker::connect(\"\"), {c:?}, \"/data\", {out_s:?}, \
                 #{{ level: {level}, attempts: 1 }});\nprint(`${{r.consistent}} ${{r.files}} ${{r.checksum}}`);\n"
            ),
        )
        .unwrap();
        let result = s
            .wsm(&["run", script.to_str().unwrap()])
            .ok()
            .trim()
            .to_string();
        sh(&format!("gzip -t '{out_s}'"));
        let listing = sh(&format!("tar -tzf '{out_s}'"));
        for n in names {
            assert!(
                listing.lines().any(|l| l == format!("data/gz/{n}")),
                "level {level}: tar -tzf does not list data/gz/{n}:\n{listing}"
            );
        }
        let x = s.dir.path().join(format!("x{level}"));
        std::fs::create_dir(&x).unwrap();
        sh(&format!("tar -xzf '{out_s}' -C '{}'", x.display()));
        for (n, bytes) in names.iter().zip(&original) {
            let got = std::fs::read(x.join("data/gz").join(n)).unwrap();
            assert!(
                got == *bytes,
                "level {level}: {n} differs from the container's"
            );
        }
        // The checksum the dump returned, archive::checksum and sha256sum over the extracted
        // files agree.
        let local = sh(&format!(
            "cd '{}/data' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum",
            x.display()
        ));
        let local = local.split_whitespace().next().unwrap().to_string();
        assert_eq!(
            result,
            format!("true 3 {local}"),
            "level {level}: the dump's result"
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
