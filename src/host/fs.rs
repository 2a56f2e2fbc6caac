//! `fs::` — the user's own files (a compose file, an env file) as text, and the few writes a
//! script needs to assemble a folder (e.g. an image build context). Config files have
//! `config::`; this is for files whose format another primitive parses.

use std::io::Read;
use std::path::{Path, PathBuf};

use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::Prim;
use super::{script_err, ScriptResult};

/// The text of a file; `-` is standard input. The error names the file and says why.
pub fn read(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::InvalidData => "not UTF-8 text".to_string(),
            _ => e.to_string(),
        };
        format!("cannot read {path}: {why}")
    })
}

/// Copies a file, or a folder with everything under it, to `dest` (which must not exist; its
/// parent folders are created).
/// Links are copied as the files they point to. Anything else (a FIFO, socket or device) is
/// refused as bad input (exit 2): opening a FIFO would wait for a writer forever, and a device
/// has no content to copy.
pub fn copy(from: &Path, dest: &Path) -> ScriptResult<()> {
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
    if from.is_dir() {
        std::fs::create_dir_all(dest).map_err(fail)?;
        for entry in std::fs::read_dir(from).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            copy(&entry.path(), &dest.join(entry.file_name()))?;
        }
        return Ok(());
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Opened without waiting (a FIFO opens at once), then its kind checked on what was opened.
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(from)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                script_err(format!("cannot copy {}: no such file", from.display()))
            }
            _ => fail(e),
        })?;
    let meta = source.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(super::usage_err(format!(
            "cannot copy {}: it is {}, not a regular file or folder",
            from.display(),
            special_kind(&meta.file_type())
        )));
    }
    let mut out = std::fs::File::create(dest).map_err(fail)?;
    std::io::copy(&mut source, &mut out).map_err(fail)?;
    out.set_permissions(meta.permissions()).map_err(fail)
}

/// What a file that is neither a regular file nor a folder is, in words.
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a special file"
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
    let prim = Prim::new("fs::read(path: string) -> string")
        .doc("A file's text (`\"-\"` reads standard input); an error names the file.");
    prim.set_in(&mut m, |path: &str| -> ScriptResult<String> {
        read(path).map_err(script_err)
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
         (its parent folders are made). Links are copied as what they point to; a FIFO, socket \
         or device is refused (exit 2), never waited on.",
    );
    prim.set_in(&mut m, |from: &str, dest: &str| -> ScriptResult<()> {
        copy(Path::new(from), Path::new(dest))
    });
    let prim = Prim::new("fs::state_dir() -> string").doc(
        "Where wsm keeps its state: `$XDG_STATE_HOME/wsm` (`~/.local/state/wsm`); fails when \
         there is no state folder to use.",
    );
    prim.set_in(&mut m, || -> ScriptResult<String> {
        dirs::state_dir()
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
            read("/nonexistent/compose.yml").unwrap_err(),
            "cannot read /nonexistent/compose.yml: no such file"
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
    fn a_fifo_is_refused_without_waiting_and_a_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("conf");
        std::fs::create_dir_all(&src).unwrap();
        let script = src.join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
        let copied = dir.path().join("run.sh");
        copy(&script, &copied).unwrap();
        let mode = std::fs::metadata(&copied).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);
        let fifo = std::ffi::CString::new(src.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path and mode.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = copy(&src, &dir.path().join("out")).unwrap_err().to_string();
        assert!(err.contains("pipe: it is a FIFO"), "{err}");
    }

    #[test]
    fn a_file_reads_as_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yml");
        std::fs::write(&path, "services: {}\n").unwrap();
        assert_eq!(read(path.to_str().unwrap()).unwrap(), "services: {}\n");
    }
}
