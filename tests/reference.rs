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
