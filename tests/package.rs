//! The Debian package (issue 27 item 6): `packaging/build-deb` builds it, dpkg installs it in a
//! scratch root (`dpkg --root`, no root-owned side effect on the machine), and the installed
//! files are used as a user would: `wsm --version` names the commit, `man -w` finds the pages
//! where man looks under that root, and bash completion, sourced from its standard place,
//! completes `wsm st` to `stack` (and a link's command names).
//!
//! The package is built from the debug binary this test run built (`--binary`; a release build
//! takes many minutes on two cores) and compressed with gzip -1 (`--fast`); what goes into it is
//! otherwise the same. dpkg-deb, dpkg, strip, man and bash come from tests/fixtures/setup-testbed;
//! a machine without one of them fails the test naming it (a skip would report a success).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The commit this tree is at, as git says it (the witness for `--version`).
fn head_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Completes `words` (the last one being completed) with the installed bash completion of
/// `command`, loaded from where bash-completion looks for it, with the root's /usr/bin first on
/// PATH. The candidates, one a line.
fn bash_complete(root: &Path, command: &str, words: &[&str]) -> Vec<String> {
    let file = root
        .join("usr/share/bash-completion/completions")
        .join(command);
    let words: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source '{}'\nfn=$(complete -p {command} | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         COMP_WORDS=({})\nCOMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         \"$fn\" {command} \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        words.join(" ")
    );
    let path = format!(
        "{}:{}",
        root.join("usr/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .env("PATH", path)
        .env("WSM_SCRIPT_PATH", "")
        .output()
        .expect("bash runs");
    ok("bash completion", out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_installs_the_binary_pages_links_and_completions() {
    let missing: Vec<&str> = ["dpkg-deb", "dpkg", "strip", "man", "bash"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    assert!(
        missing.is_empty(),
        "the package cannot be built or read here: {missing:?} missing (tests/fixtures/setup-testbed installs them)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/build-deb");
    // Bad usage: exit 2, one line and the usage, nothing written.
    for args in [
        &[][..],
        &["--bogus", "x"][..],
        &["a", "b"][..],
        &["--binary"][..],
    ] {
        let bad = Command::new(&script)
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            err.lines()
                .last()
                .unwrap_or("")
                .starts_with("usage: packaging/build-deb"),
            "{args:?}: {err}"
        );
        assert!(err.lines().count() <= 2, "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written"
    );
    let built = Command::new(&script)
        .args(["--binary", env!("CARGO_BIN_EXE_wsm"), "--fast"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let deb = PathBuf::from(ok("build-deb", built).trim());
    assert!(deb.is_file(), "{} was written", deb.display());
    let name = deb.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with(&format!("wsm_{}_", env!("CARGO_PKG_VERSION"))) && name.ends_with(".deb"),
        "{name}"
    );
    // Only the package is left in OUTDIR (its staging folder is gone).
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // dpkg reads it: its fields, and every path the issue names.
    let fields = ok(
        "dpkg-deb -f",
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .args(["Package", "Depends"])
            .output()
            .unwrap(),
    );
    assert!(fields.contains("Package: wsm"), "{fields}");

    // Installed into a scratch root: dpkg's own database there, nothing of the machine's.
    let root = tmp.path().join("root");
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // Depends (libc6, libgcc-s1) are the machine's, not the empty root's.
    ok(
        "dpkg -i",
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            // A slim image's dpkg.cfg.d may leave manual pages out: these are under test.
            .args([
                "--force-depends",
                "--force-not-root",
                "--path-include=/usr/share/man/*",
                "-i",
            ])
            .arg(&deb)
            .output()
            .unwrap(),
    );
    let status = ok(
        "dpkg -s",
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["-s", "wsm"])
            .output()
            .unwrap(),
    );
    assert!(status.contains("Status: install ok installed"), "{status}");
    // What Depends names is installed on this machine, so `apt install ./wsm_….deb` needs
    // nothing else here.
    let depends = fields
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .expect("a Depends field");
    for dep in depends.split(',').map(str::trim) {
        let q = ok(
            "dpkg-query",
            Command::new("dpkg-query")
                .args(["-W", "-f", "${Status}", dep])
                .output()
                .unwrap(),
        );
        assert_eq!(q, "install ok installed", "{dep}");
    }

    // The binary and its links.
    let version = ok(
        "wsm --version",
        Command::new(root.join("usr/bin/wsm"))
            .arg("--version")
            .output()
            .unwrap(),
    );
    let commit = head_commit().unwrap_or_else(|| "unknown".into());
    assert_eq!(
        version.trim(),
        format!("wsm {} (commit {commit})", env!("CARGO_PKG_VERSION")),
        "the version and the commit HEAD is at"
    );
    for link in ["manage-stack", "manage-swarm", "build-all-nodes"] {
        let target = std::fs::read_link(root.join("usr/bin").join(link)).unwrap();
        assert_eq!(target, Path::new("wsm"), "{link}");
    }
    let help = ok(
        "manage-stack --help",
        Command::new(root.join("usr/bin/manage-stack"))
            .arg("--help")
            .env("WSM_SCRIPT_PATH", "")
            .output()
            .unwrap(),
    );
    assert!(
        help.contains("deploy"),
        "the link runs the stack family: {help}"
    );

    // man finds the pages where it looks (the root's /usr/share/man).
    let man_dir = root.join("usr/share/man");
    let man_w = |page: &str| {
        ok(
            &format!("man -w {page}"),
            Command::new("man")
                .args(["-w", page])
                .env("MANPATH", &man_dir)
                .output()
                .unwrap(),
        )
        .trim()
        .to_string()
    };
    let man1 = man_dir.join("man1");
    assert_eq!(man_w("wsm"), man1.join("wsm.1.gz").display().to_string());
    assert_eq!(
        man_w("manage-stack"),
        man1.join("wsm-stack.1.gz").display().to_string(),
        "the link's page is the family's"
    );
    // The family's page lists its commands with their usage lines (from the command table).
    let page = ok(
        "man wsm-stack",
        Command::new("man")
            .args(["-P", "cat", "wsm-stack"])
            .env("MANPATH", &man_dir)
            .env("MANWIDTH", "200")
            .output()
            .unwrap(),
    );
    for want in ["COMMANDS", "wsm stack deploy", "wsm stack rollback"] {
        assert!(page.contains(want), "{want} in:\n{page}");
    }

    // The completions are where the shells look for them.
    for file in [
        "usr/share/bash-completion/completions/wsm",
        "usr/share/zsh/vendor-completions/_wsm",
        "usr/share/fish/vendor_completions.d/wsm.fish",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(text.contains("__complete"), "{file}: {text}");
    }
    assert_eq!(bash_complete(&root, "wsm", &["wsm", "st"]), ["stack"]);
    // Through a link, bash-completion loads the link's own name, which is wsm's file.
    let deploy = bash_complete(&root, "manage-stack", &["manage-stack", "dep"]);
    assert!(deploy.iter().any(|c| c == "deploy"), "{deploy:?}");
}
