//! The checked-in reference (`docs/REFERENCE.md`) is what `wsm doc` prints, so it cannot fall
//! behind the commands and primitives it documents.

use std::path::Path;
use std::process::Command;

#[test]
fn the_checked_in_reference_is_what_wsm_doc_prints() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_wsm"))
        .arg("doc")
        .current_dir(dir.path())
        .env_remove("WSM_SCRIPT_PATH")
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("run wsm doc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/REFERENCE.md");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    for needle in [
        "#### `docker::connect`",
        "#### `e.deploy`",
        "| `manage-stack [-s <stackName>] status",
    ] {
        assert!(generated.contains(needle), "wsm doc lacks {needle:?}");
    }
    assert!(
        generated == checked_in,
        "{} differs from `wsm doc`; run `wsm doc > docs/REFERENCE.md` and commit it",
        path.display()
    );
}

/// Every option a primitive declares where it is registered is listed under it: `e.deploy`'s
/// `record`, `rollback` and `operation` were once missing from help.
#[test]
fn the_reference_lists_the_options_of_a_primitive() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsm"))
        .arg("doc")
        .env_remove("WSM_SCRIPT_PATH")
        .output()
        .expect("run wsm doc");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let deploy = text
        .split("#### `e.deploy`")
        .nth(1)
        .and_then(|rest| rest.split("\n#### ").next())
        .expect("an e.deploy section");
    for key in [
        "prune",
        "wait",
        "timeout",
        "resolve_image",
        "with_registry_auth",
        "record",
        "rollback",
        "operation",
    ] {
        assert!(
            deploy.contains(&format!("- `{key}`: ")),
            "e.deploy's reference lacks the option {key}:\n{deploy}"
        );
    }
}
