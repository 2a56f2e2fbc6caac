//! `fs::` — the user's own files (a compose file, an env file) as text, and the few writes a
//! script needs to assemble a folder (e.g. an image build context). Config files have
//! `config::`; this is for files whose format another primitive parses.

use std::path::{Path, PathBuf};

use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::Prim;
use super::{bounded, script_err, ScriptResult};

/// The text of a file; `-` is standard input. The error names the file and says why.
/// At most [`bounded::USER_FILE`] bytes are read: `/dev/zero` is refused, not read for ever.
pub fn read(path: &str) -> Result<String, bounded::ReadError> {
    bounded::read_text(Path::new(path), "", bounded::USER_FILE)
}

/// Copies a file, or a folder with everything under it, to `dest` (which must not exist; its
/// parent folders are created). `from` itself may be a link; the links under it are copied as
/// links, as docker puts them in a build context, so a link to `~/.ssh` never copies the keys.
/// A FIFO, socket or device under it is refused as bad input (exit 2: reading a FIFO would wait
/// for ever), rather than skipped: the copy would silently differ from what the user named.
pub fn copy(from: &Path, dest: &Path) -> ScriptResult<()> {
    copy_entry(from, dest, true)
}

fn copy_entry(from: &Path, dest: &Path, top: bool) -> ScriptResult<()> {
    let fail = |e: std::io::Error| {
        script_err(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            dest.display()
        ))
    };
    if dest.exists() {
        return Err(script_err(format!(
            "cannot copy {} to {}: it exists",
            from.display(),
            dest.display()
        )));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let meta = if top {
        std::fs::metadata(from)
    } else {
        std::fs::symlink_metadata(from)
    };
    let meta = match meta {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(script_err(format!(
                "cannot copy {}: no such file",
                from.display()
            )))
        }
        other => other.map_err(fail)?,
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(fail)?;
        std::os::unix::fs::symlink(target, dest).map_err(fail)
    } else if meta.is_dir() {
        std::fs::create_dir_all(dest).map_err(fail)?;
        for entry in std::fs::read_dir(from).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            copy_entry(&entry.path(), &dest.join(entry.file_name()), false)?;
        }
        Ok(())
    } else if let Some(kind) = super::bounded::not_a_file(&meta) {
        Err(super::usage_err(format!(
            "cannot copy {}: it is {kind}; only files, folders and links are copied",
            from.display()
        )))
    } else {
        std::fs::copy(from, dest)
            .map(|_| ())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    script_err(format!("cannot copy {}: no such file", from.display()))
                }
                _ => fail(e),
            })
    }
}

/// Puts the finished file `staged` in place at `path`, keeping what was at `path` as `backup`.
/// `path` is first hard-linked to a temporary name beside `backup` and that link renamed over
/// `backup`; then `staged` is renamed over `path`. So at every moment `path` and `backup` each
/// hold a whole file (the old or the new one), and a crash loses neither. The three paths must
/// be on one file system.
pub fn rotate_in(staged: &Path, path: &Path, backup: &Path) -> Result<(), String> {
    let fail =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    if !staged.is_file() {
        return Err(format!(
            "cannot rotate in {}: no such file",
            staged.display()
        ));
    }
    if path.is_file() {
        let mut link = backup.as_os_str().to_owned();
        link.push(".link");
        let link = PathBuf::from(link);
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(path, &link).map_err(|e| fail("link", path, e))?;
        std::fs::rename(&link, backup).map_err(|e| fail("replace", backup, e))?;
    }
    std::fs::rename(staged, path).map_err(|e| fail("replace", path, e))
}

/// What is at a path: #{kind: "file" | "dir" | "other", size, modified (seconds since the
/// epoch), modified_at (RFC 3339)}, or () when nothing is there. Links are followed.
fn stat(path: &str) -> Dynamic {
    let Ok(md) = std::fs::metadata(path) else {
        return Dynamic::UNIT;
    };
    let kind = if md.is_file() {
        "file"
    } else if md.is_dir() {
        "dir"
    } else {
        "other"
    };
    let modified = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut m = Map::new();
    m.insert("kind".into(), kind.into());
    m.insert("size".into(), Dynamic::from_int(md.len() as i64));
    m.insert("modified".into(), Dynamic::from_float(modified));
    if let Ok(t) = md.modified() {
        let at = humantime::format_rfc3339_seconds(t).to_string();
        m.insert("modified_at".into(), at.into());
    }
    Dynamic::from_map(m)
}

/// The names in a folder, sorted.
fn list(dir: &str) -> Result<Array, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names.into_iter().map(Dynamic::from).collect())
}

/// Registers the `fs::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    let prim = Prim::new("fs::read(path: string) -> string").doc(
        "A file's text (`\"-\"` reads standard input); an error names the file. At most 64 MiB \
         is read: more (`/dev/zero`) is a usage error naming the ceiling.",
    );
    prim.set_in(&mut m, |path: &str| -> ScriptResult<String> {
        // A file the user named that is over the ceiling is bad input; one that cannot be read
        // stays a failure, as it always was.
        read(path).map_err(|e| {
            if e.too_big {
                super::usage_err(e.message)
            } else {
                script_err(e.message)
            }
        })
    });
    let prim = Prim::new("fs::is_file(path: string) -> bool")
        .doc("Whether a regular file (or a link to one) is there.");
    prim.set_in(&mut m, |path: &str| Ok(Path::new(path).is_file()));
    let prim = Prim::new("fs::is_dir(path: string) -> bool")
        .doc("Whether a folder (or a link to one) is there.");
    prim.set_in(&mut m, |path: &str| Ok(Path::new(path).is_dir()));
    let prim = Prim::new("fs::write(path: string, text: string)").doc(
        "Creates or replaces a file with this text (e.g. a Dockerfile in a `temp_dir()`); user \
         files that must be replaced atomically go through `config::`.",
    );
    prim.set_in(&mut m, |path: &str, text: &str| -> ScriptResult<()> {
        std::fs::write(path, text).map_err(|e| script_err(format!("cannot write {path}: {e}")))
    });
    let prim = Prim::new("fs::copy(from: string, dest: string)").doc(
        "Copies a file, or a folder and everything under it, to `dest`, which must not exist yet \
         (its parent folders are made). Links under the folder are copied as links, as docker \
         sends a build context; a FIFO, socket or device under it is refused (exit 2).",
    );
    prim.set_in(&mut m, |from: &str, dest: &str| -> ScriptResult<()> {
        copy(Path::new(from), Path::new(dest))
    });
    let prim = Prim::new("fs::state_dir() -> string").doc(
        "Where wsm keeps its state: `$XDG_STATE_HOME/wsm` (`~/.local/state/wsm`, on macOS \
         too); fails when there is no home folder.",
    );
    prim.set_in(&mut m, || -> ScriptResult<String> {
        crate::host::xdg::state_dir()
            .map(|d| d.join("wsm").display().to_string())
            .ok_or_else(|| script_err("no state directory: set XDG_STATE_HOME"))
    });
    let prim = Prim::new("fs::stat(path: string) -> map").doc(
        "`#{kind: \"file\" | \"dir\" | \"other\", size, modified, modified_at}` of a path \
         (modified in seconds since the epoch, modified_at as RFC 3339), or () when nothing is \
         there.",
    );
    prim.set_in(&mut m, |path: &str| Ok(stat(path)));
    let prim = Prim::new("fs::list(dir: string) -> array")
        .doc("The names in a folder, sorted; fails naming the folder when it cannot be read.");
    prim.set_in(&mut m, |dir: &str| -> ScriptResult<Array> {
        list(dir).map_err(script_err)
    });
    let prim = Prim::new("fs::mkdir(path: string)")
        .doc("Creates a folder and its parents (mode 0700 for the new ones).");
    prim.set_in(&mut m, |path: &str| -> ScriptResult<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| script_err(format!("cannot create {path}: {e}")))
    });
    let prim = Prim::new("fs::private_dir(path: string, what: string)").doc(
        "Creates a folder for private files (0700, and its parents), or makes one of yours 0700. \
         A usage error naming `what` (\"the backup folder\") when another user owns it or its \
         parent folder, or others (or a group not your own) can write to either: they could read \
         or replace what is put there.",
    );
    prim.set_in(&mut m, |path: &str, what: &str| -> ScriptResult<()> {
        super::owner::make_private_dir(Path::new(path), what).map_err(super::usage_err)
    });
    let prim = Prim::new("fs::append(path: string, text: string)")
        .doc("Adds text at the end of a file, creating it (mode 0600).");
    prim.set_in(&mut m, |path: &str, text: &str| -> ScriptResult<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| script_err(format!("cannot append to {path}: {e}")))
    });
    let prim = Prim::new("fs::remove(path: string) -> bool")
        .doc("Removes a file; false when there was none.");
    prim.set_in(&mut m, |path: &str| -> ScriptResult<bool> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(script_err(format!("cannot remove {path}: {e}"))),
        }
    });
    let prim = Prim::new("fs::rotate_in(staged: string, path: string, backup: string)").doc(
        "Puts the finished file `staged` at `path`, keeping the file that was there as `backup`; \
         both stay whole at every moment.",
    );
    prim.set_in(
        &mut m,
        |staged: &str, path: &str, backup: &str| -> ScriptResult<()> {
            rotate_in(Path::new(staged), Path::new(path), Path::new(backup)).map_err(script_err)
        },
    );
    engine.register_static_module("fs", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_in_keeps_the_previous_file_as_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let (staged, path, backup) = (
            dir.path().join("n.new"),
            dir.path().join("n"),
            dir.path().join("n.backup"),
        );
        for (round, text) in ["one", "two", "three"].iter().enumerate() {
            std::fs::write(&staged, text).unwrap();
            rotate_in(&staged, &path, &backup).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), *text);
            assert!(!staged.exists());
            if round > 0 {
                let previous = ["one", "two", "three"][round - 1];
                assert_eq!(std::fs::read_to_string(&backup).unwrap(), previous);
            } else {
                assert!(!backup.exists());
            }
        }
        assert_eq!(list(dir.path().to_str().unwrap()).unwrap().len(), 2);
        assert!(
            rotate_in(&staged, &path, &backup).is_err(),
            "nothing staged"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three");
    }

    #[test]
    fn a_missing_file_is_named_in_one_sentence() {
        assert_eq!(
            read("/nonexistent/compose.yml").unwrap_err().message,
            "cannot read /nonexistent/compose.yml: No such file or directory"
        );
    }

    #[test]
    fn a_folder_copies_with_everything_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("conf");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/a.txt"), "a").unwrap();
        let dest = dir.path().join("out/conf");
        copy(&src, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/a.txt")).unwrap(),
            "a"
        );
        assert!(copy(&src, &dest)
            .unwrap_err()
            .to_string()
            .contains("it exists"));
    }

    #[test]
    fn links_under_a_folder_are_copied_as_links_and_a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("keys");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("id"), "private").unwrap();
        let src = dir.path().join("ctx");
        std::fs::create_dir_all(&src).unwrap();
        std::os::unix::fs::symlink(&secret, src.join("ssh")).unwrap();
        let dest = dir.path().join("out");
        copy(&src, &dest).unwrap();
        let copied = std::fs::symlink_metadata(dest.join("ssh")).unwrap();
        assert!(copied.file_type().is_symlink());
        assert_eq!(std::fs::read_link(dest.join("ssh")).unwrap(), secret);

        let fifo = src.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = copy(&src, &dir.path().join("out2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("it is a FIFO"), "{err}");
    }

    #[test]
    fn a_file_reads_as_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yml");
        std::fs::write(&path, "services: {}\n").unwrap();
        assert_eq!(read(path.to_str().unwrap()).unwrap(), "services: {}\n");
    }
}
