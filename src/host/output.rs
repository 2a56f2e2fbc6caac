//! Where wsm may write a file the user named: the one check every local writer makes (dumps,
//! copies out of a node, downloads, config files) before it copies anything, and the atomic
//! replace (temp file beside the target, fsync, rename) that follows it. Only a regular file,
//! or a new file in an existing directory, is ever replaced: a rename over `/dev/null`, a FIFO,
//! a socket or a directory would destroy what was there. A symbolic link is followed only when
//! it is the caller's (or root's): one another user planted in a shared folder would send the
//! write wherever they chose. A replaced file keeps its mode (a 0600 config stays 0600) and,
//! where the caller may give it, its owner.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A checked output file: the file to replace (a symbolic link's target, so the link stays)
/// and the existing directory it lives in.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub dir: PathBuf,
    name: String,
}

/// What kind of thing is at a path, in words for an error message; `None` for a regular file.
fn not_a_file(t: fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

impl OutputFile {
    /// Checks that `path` may be written as a file; the error is one sentence for the user
    /// (bad input: the caller reports it with exit code 2 and has changed nothing).
    pub fn check(path: &Path) -> Result<OutputFile, String> {
        let shown = path.display();
        if path.as_os_str().is_empty() {
            return Err("the output file name is empty".into());
        }
        let mut target = path.to_path_buf();
        match fs::symlink_metadata(path) {
            Ok(link) if link.file_type().is_symlink() => {
                if let Some(why) = super::owner::foreign_writer(&link, "or name another file") {
                    return Err(format!(
                        "{shown} is a symbolic link that is not yours, so it is not followed: {why}"
                    ));
                }
                match fs::metadata(path) {
                    Ok(meta) => {
                        if let Some(what) = not_a_file(meta.file_type()) {
                            return Err(format!("{shown} links to {what}; name a regular file"));
                        }
                        target = fs::canonicalize(path).map_err(|e| format!("{shown}: {e}"))?;
                    }
                    Err(_) => return Err(format!("{shown} is a dangling symbolic link")),
                }
            }
            Ok(meta) => {
                if let Some(what) = not_a_file(meta.file_type()) {
                    return Err(format!(
                        "{shown} is {what}; name a regular file (a new one, or one to replace)"
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot write {shown}: {e}")),
        }
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "..")
            .ok_or_else(|| format!("{shown} does not name a file"))?
            .to_string();
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", dir.display())),
            Err(_) => return Err(format!("the directory {} does not exist", dir.display())),
        }
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{shown} is not a valid path"))?;
        // SAFETY: access() only reads the NUL-terminated path it is given.
        if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK) } != 0 {
            return Err(format!(
                "cannot write in {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(OutputFile {
            path: target,
            dir,
            name,
        })
    }

    /// A new temporary file beside the target (hidden, `.partial`): a new file is 0600 when
    /// `private`, else 0644; one that replaces a file gets that file's mode (never more than
    /// 0600 when `private`) and, where the caller may give it (root), its owner.
    pub fn temp_file(&self, private: bool) -> std::io::Result<NamedTempFile> {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", self.name))
            .suffix(".partial")
            .tempfile_in(&self.dir)?;
        let existing = fs::metadata(&self.path).ok().filter(|m| m.is_file());
        let mode = match &existing {
            Some(m) if private => m.mode() & 0o600,
            Some(m) => m.mode() & 0o7777,
            None if private => 0o600,
            None => 0o644,
        };
        if let Some(m) = &existing {
            // Only root may give a file away; for anyone else the file stays theirs.
            let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()));
        }
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
        Ok(tmp)
    }

    /// Moves a finished temporary file (or directory) onto the target and makes the rename
    /// durable. The target is checked again first: it may have changed while the copy ran.
    pub fn replace_with(&self, finished: &Path) -> std::io::Result<()> {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if let Some(what) = not_a_file(meta.file_type()) {
                return Err(std::io::Error::other(format!(
                    "{} became {what} while it was being written; it was left alone",
                    self.path.display()
                )));
            }
        }
        fs::rename(finished, &self.path)?;
        fs::File::open(&self.dir)?.sync_all()
    }

    /// Moves a finished temporary file onto the target (see [`OutputFile::replace_with`]).
    pub fn commit(&self, tmp: NamedTempFile) -> std::io::Result<()> {
        tmp.as_file().sync_all()?;
        let (_, path) = tmp.keep().map_err(|e| e.error)?;
        self.replace_with(&path).inspect_err(|_| {
            let _ = fs::remove_file(&path);
        })
    }
}

/// Checks a path an archive is unpacked onto: nothing there, a regular file, a directory (its
/// contents are merged) or a symbolic link (replaced, never followed) — not a device, FIFO or
/// socket.
pub fn check_unpack_target(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            let t = meta.file_type();
            if t.is_file() || t.is_dir() || t.is_symlink() {
                return Ok(());
            }
            let what = not_a_file(t).unwrap_or("not a regular file");
            Err(format!("{} is {what}; it is not replaced", path.display()))
        }
        Err(_) => Ok(()),
    }
}

/// Writes `bytes` to `path` atomically after [`OutputFile::check`] (missing parent
/// directories are created first). `private` makes the file 0600 from its creation on.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let out = OutputFile::check(path).map_err(std::io::Error::other)?;
    let mut tmp = out.temp_file(private)?;
    tmp.write_all(bytes)?;
    out.commit(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_sockets_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let link = dir.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for (path, says) in [
            (PathBuf::from("/dev/null"), "a device"),
            (fifo, "FIFO"),
            (sock, "a socket"),
            (dir.path().to_path_buf(), "a directory"),
            (link, "links to a device"),
            (dir.path().join("no/such/dir/f"), "does not exist"),
        ] {
            let err = OutputFile::check(&path).unwrap_err();
            assert!(err.contains(says), "{}: {err}", path.display());
        }
    }

    #[test]
    fn a_new_file_or_a_regular_one_may_be_replaced_and_a_link_keeps_pointing_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new");
        assert_eq!(OutputFile::check(&new).unwrap().path, new);
        let real = dir.path().join("real");
        fs::write(&real, "old").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new", false).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn a_replaced_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack.env");
        for (mode, private, kept) in [
            (0o600, false, 0o600),
            (0o640, false, 0o640),
            (0o644, true, 0o600),
        ] {
            fs::write(&path, "A=1\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            write_atomic(&path, b"A=2\n", private).unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"A=2\n");
            let now = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(now, kept, "{mode:o} private={private}");
        }
    }

    #[test]
    fn a_link_another_user_planted_is_not_followed() {
        if crate::host::owner::caller_uid() != 0 {
            return; // only root can make a link that is someone else's
        }
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("dump.tar.gz");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let err = OutputFile::check(&link).unwrap_err();
        assert!(
            err.contains("not yours") && err.contains("uid 65534"),
            "{err}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn a_target_that_turns_into_a_fifo_during_the_copy_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let out = OutputFile::check(&path).unwrap();
        let tmp = out.temp_file(true).unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(out.commit(tmp).is_err());
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
