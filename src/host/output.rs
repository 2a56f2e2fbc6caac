//! Where wsm may write a file the user named: the one check every local writer makes (dumps,
//! copies out of a node, downloads, config files) before it copies anything, and the atomic
//! replace (temp file beside the target, fsync, rename) that follows it. Only a regular file,
//! or a new file in an existing directory, is ever replaced: a rename over `/dev/null`, a FIFO,
//! a socket or a directory would destroy what was there.

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
            Ok(link) if link.file_type().is_symlink() => match fs::metadata(path) {
                Ok(meta) => {
                    if let Some(what) = not_a_file(meta.file_type()) {
                        return Err(format!("{shown} links to {what}; name a regular file"));
                    }
                    target = fs::canonicalize(path).map_err(|e| format!("{shown}: {e}"))?;
                }
                Err(_) => return Err(format!("{shown} is a dangling symbolic link")),
            },
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

    /// A new temporary file beside the target (hidden, `.partial`), 0600 when `private`.
    pub fn temp_file(&self, private: bool) -> std::io::Result<NamedTempFile> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", self.name))
            .suffix(".partial")
            .tempfile_in(&self.dir)?;
        let mode = if private { 0o600 } else { 0o644 };
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
