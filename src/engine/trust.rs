//! Which folders wsm takes code from. A script found on the search path runs as the caller, so
//! a folder that another user can change is a way to run their code as you (root running wsm in
//! a folder someone else can write to). As git's `safe.directory` does, a folder of the search
//! path must be owned by the caller or by root and writable by neither its group nor others;
//! the same holds for every folder and file under the part of it wsm reads (`scripts/`,
//! `stdlib/`, `nodes/`). A folder that fails is refused as a whole, with one line naming what
//! failed. The current folder is never on the path: a cloned repository or a shared project
//! folder passes these checks and is still someone else's code.

use std::path::Path;

use crate::host::owner::foreign_writer;

/// The top folders of a search root that wsm reads; nothing else in a root is looked at.
pub const TOPS: &[&str] = &["scripts", "stdlib", "nodes"];

/// How deep a search root's folders may nest (a symlink loop ends here).
const MAX_DEPTH: usize = 24;

/// Checks a search root and everything under its [`TOPS`]: Err is the one line that says what
/// is refused and why. `whence` says where the root came from (`on WSM_SCRIPT_PATH`).
pub fn check_root(root: &Path, whence: &str) -> Result<(), String> {
    check_entry(root, whence)?;
    for top in TOPS {
        let dir = root.join(top);
        if dir.exists() {
            check_tree(&dir, whence, 0)?;
        }
    }
    Ok(())
}

/// Checks a folder and everything under it.
pub fn check_tree(dir: &Path, whence: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(refusal(
            dir,
            whence,
            &format!("it nests more than {MAX_DEPTH} folders deep (a symlink loop?)"),
        ));
    }
    if !check_entry(dir, whence)? {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| refusal(dir, whence, &format!("it cannot be read: {e}")))?;
    for entry in entries.flatten() {
        check_tree(&entry.path(), whence, depth + 1)?;
    }
    Ok(())
}

/// Checks one file or folder (following symlinks); Ok(true) for a folder, Ok(false) for a file.
fn check_entry(path: &Path, whence: &str) -> Result<bool, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| refusal(path, whence, &format!("it cannot be read: {e}")))?;
    if let Some(why) = foreign_writer(&meta, "or take it off the search path") {
        return Err(refusal(path, whence, &why));
    }
    if !meta.is_dir() && !meta.is_file() {
        return Err(refusal(path, whence, "it is neither a file nor a folder"));
    }
    Ok(meta.is_dir())
}

fn refusal(path: &Path, whence: &str, why: &str) -> String {
    format!(
        "refusing to run code from {} ({whence}): {why}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_root_passes_and_a_writable_folder_or_file_under_it_is_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("scripts/fam");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cmd.rhai");
        std::fs::write(&file, "print(1);").unwrap();
        chmod(&dir, 0o755);
        chmod(&file, 0o644);
        assert_eq!(check_root(root.path(), "test"), Ok(()));

        chmod(&file, 0o664);
        let err = check_root(root.path(), "test").unwrap_err();
        assert!(
            err.contains(&file.display().to_string()) && err.contains("mode 0664"),
            "{err}"
        );
        chmod(&file, 0o644);
        chmod(&dir, 0o777);
        let err = check_root(root.path(), "test").unwrap_err();
        assert!(err.contains(&format!("{} (test)", dir.display())), "{err}");
        chmod(&dir, 0o755);

        // Folders other than scripts/, stdlib/ and nodes/ are not read, so not checked.
        let other = root.path().join("target");
        std::fs::create_dir_all(&other).unwrap();
        chmod(&other, 0o777);
        assert_eq!(check_root(root.path(), "test"), Ok(()));
    }
}
