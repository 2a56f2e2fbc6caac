//! Who besides the caller could change a file or folder. One check, used wherever wsm trusts
//! what is on disk: the folders it takes code from (`engine::trust`), the folders it keeps
//! private things in (backups, ssh control sockets, the editor's copies), and a symbolic link
//! an output path goes through (`output`). As git's `safe.directory` does, the caller and root
//! may own it; and no group or other may write it. Private folders allow one exception: a
//! group-writable folder whose group is the caller's own primary group (the user-private
//! groups of a umask 002 system, where `~/.local/state/wsm` comes out 0775).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Why another user could change what is at `meta` (None when no one but the caller or root
/// can): owned by someone else, or writable by group or others. `fix` ends the sentence
/// ("or take it off the search path"). The one ownership check of wsm: code folders (`engine::trust`),
/// private folders ([`check_private_dir`]) and planted links (`output`) use it.
pub fn foreign_writer(meta: &std::fs::Metadata, fix: &str) -> Option<String> {
    foreign_writer_but(meta, fix, None)
}

/// [`foreign_writer`], a group-writable path allowed when its group is `own_group`.
fn foreign_writer_but(
    meta: &std::fs::Metadata,
    fix: &str,
    own_group: Option<u32>,
) -> Option<String> {
    let me = caller_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "it is owned by uid {}, not by you (uid {me}) or root; chown it, {fix}",
            meta.uid()
        ));
    }
    let group_ok = own_group.is_some_and(|g| g == meta.gid());
    let writable = if group_ok { 0o002 } else { 0o022 };
    if meta.mode() & writable != 0 && !meta.file_type().is_symlink() {
        return Some(format!(
            "it is writable by group or others (mode {:04o}); chmod go-w it, {fix}",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Checks a folder wsm keeps private things in (backups, ssh control sockets, the editor's
/// copies) and its parent: Err is one line naming it when another user owns either or can
/// write to either, who could then read, replace or redirect what wsm puts there. `what`
/// names it ("the backup folder").
pub fn check_private_dir(dir: &Path, what: &str) -> Result<(), String> {
    check_parent(dir, what)?;
    check_one(dir, dir, what, "it")
}

/// Checks the folder `dir` is in, when it has one.
fn check_parent(dir: &Path, what: &str) -> Result<(), String> {
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => check_one(
            dir,
            parent,
            what,
            &format!("its folder {}", parent.display()),
        ),
        None => Ok(()),
    }
}

/// Checks `path` (`dir` itself, or its parent) on behalf of `dir`.
fn check_one(dir: &Path, path: &Path, what: &str, subject: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{what} {}: {}: {e}", dir.display(), path.display()))?;
    // SAFETY: getegid has no preconditions and cannot fail.
    let own_group = unsafe { libc::getegid() };
    match foreign_writer_but(&meta, "or choose another folder", Some(own_group)) {
        Some(why) => Err(format!(
            "refusing {what} {}: {}",
            dir.display(),
            why.replacen("it is", &format!("{subject} is"), 1)
                .replacen("chown it", &format!("chown {}", path.display()), 1)
                .replacen(
                    "chmod go-w it",
                    &format!("chmod go-w {}", path.display()),
                    1
                )
        )),
        None => Ok(()),
    }
}

/// Creates a private folder (0700, parents too) or, when it is the caller's already, makes it
/// 0700; then checks it as [`check_private_dir`] does. A parent that fails is refused before
/// anything is created. Err is one line for the user.
pub fn make_private_dir(dir: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.parent().is_some_and(Path::exists) {
        check_parent(dir, what)?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {what} {}: {e}", dir.display()))?;
    if std::fs::metadata(dir).is_ok_and(|m| m.uid() == caller_uid()) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {what} {} private: {e}", dir.display()))?;
    }
    check_private_dir(dir, what)
}

/// The user wsm runs as (the effective uid, as git's ownership check uses).
pub fn caller_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_folder_is_made_0700_and_one_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        chmod(root.path(), 0o755);
        let dir = root.path().join("a/b");
        make_private_dir(&dir, "the backup folder").unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        chmod(dir.parent().unwrap(), 0o777);
        let err = make_private_dir(&dir, "the backup folder").unwrap_err();
        assert!(
            err.starts_with(&format!(
                "refusing the backup folder {}: its folder",
                dir.display()
            )) && err.contains("mode 0777"),
            "{err}"
        );
        // Group-writable with the caller's own group (umask 002): allowed.
        chmod(dir.parent().unwrap(), 0o775);
        make_private_dir(&dir, "the backup folder").unwrap();
        chmod(dir.parent().unwrap(), 0o755);
        if caller_uid() == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let err = make_private_dir(&dir, "the backup folder").unwrap_err();
            assert!(err.contains("owned by uid 65534"), "{err}");
        }
    }
}
