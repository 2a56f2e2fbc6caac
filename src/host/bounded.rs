//! Reads with a ceiling. Whatever wsm reads whole — a user's file, a command's output in a
//! container or over ssh, a compressed document — is read through here, so `/dev/zero` given
//! as a compose file, a container printing without end or a gzip bomb ends in one line naming
//! what was too big and the ceiling, never in wsm eating the machine's memory. Each caller
//! picks its ceiling and says whether too big is bad input (a file the user named: exit 2) or
//! a failure (what an engine or a remote host sent: exit 1).

use std::io::Read;
use std::path::Path;

/// What one caller reads at most, in bytes.
pub const MIB: u64 = 1 << 20;

/// A file a script reads as text (`fs::read`).
pub const USER_FILE: u64 = 64 * MIB;
/// A compose file (docker's own loader has no limit; no real one comes near this).
pub const COMPOSE_FILE: u64 = 16 * MIB;
/// An env file (`--env-file`, `.env`, a service's `env_file`).
pub const ENV_FILE: u64 = 16 * MIB;
/// A secret or config file: the swarm refuses objects over 500 KB.
pub const OBJECT_FILE: u64 = MIB;
/// What a command run in a container or over ssh may print, per stream, when wsm collects it.
pub const COMMAND_OUTPUT: u64 = 64 * MIB;
/// An HTTP response body (`http::request`).
pub const RESPONSE: u64 = 64 * MIB;
/// The interpolated text of one compose document, all its strings together.
pub const INTERPOLATED: u64 = 64 * MIB;

/// What a capped read gives when there was more than its ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverCap;

/// "1 MiB", "512 KiB", "100 bytes".
pub fn size(n: u64) -> String {
    match n {
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n >= 1024 && n % 1024 == 0 => format!("{} KiB", n / 1024),
        n => format!("{n} bytes"),
    }
}

/// `text` cut to `n` characters with an ellipsis, for naming a long command in one line.
pub fn shorten(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// What a path is when it is not a regular file, in words ("a folder", "a FIFO"); None for a
/// regular file. Symlinks are followed.
pub fn not_a_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Checks that `path` is a regular file: Err is "`<what> <path> does not exist`" or "… is a
/// FIFO, not a file".
pub fn check_regular_file(path: &Path, what: &str) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{what} {} does not exist", path.display()))
        }
        Err(e) => Err(format!("{what} {}: {e}", path.display())),
        Ok(meta) => match not_a_file(&meta) {
            None => Ok(()),
            Some(kind) => Err(format!("{what} {} is {kind}, not a file", path.display())),
        },
    }
}

/// Reads at most `cap` bytes from `r`; Err(OverCap) when there was more.
pub fn read_capped(r: impl Read, cap: u64) -> std::io::Result<Result<Vec<u8>, OverCap>> {
    let mut bytes = Vec::new();
    r.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(if bytes.len() as u64 > cap {
        Err(OverCap)
    } else {
        Ok(bytes)
    })
}

/// The one-line error for something over its ceiling: "`<what>` is over 16 MiB …".
pub fn too_big(what: &str, cap: u64) -> String {
    format!("{what} is over {}, the most wsm reads", size(cap))
}

/// Why a file could not be read: one line for the user, and whether it was over its ceiling
/// (the file is there but wsm will not read it all) rather than missing or unreadable.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadError {
    pub message: String,
    pub too_big: bool,
}

impl From<ReadError> for String {
    fn from(e: ReadError) -> String {
        e.message
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A file's text, at most `cap` bytes of it (whatever it is: a FIFO from `<(…)`, a device);
/// `-` is standard input. `what` names it in errors ("compose file"; "" for the path alone).
pub fn read_text(path: &Path, what: &str, cap: u64) -> Result<String, ReadError> {
    read_text_as(path, &path.display().to_string(), what, cap)
}

/// [`read_text`], the path shown as `shown` (the name the user gave, not the one joined to a
/// folder).
pub fn read_text_as(path: &Path, shown: &str, what: &str, cap: u64) -> Result<String, ReadError> {
    let bytes = read_bytes_as(path, shown, what, cap)?;
    String::from_utf8(bytes).map_err(|_| ReadError {
        message: format!(
            "cannot read {}: not UTF-8 text",
            label_of(path, shown, what)
        ),
        too_big: false,
    })
}

/// How a read names what it reads: "standard input", or "`<what>` `<shown>`".
pub fn label_of(path: &Path, shown: &str, what: &str) -> String {
    if path == Path::new("-") {
        "standard input".to_string()
    } else {
        format!("{what} {shown}").trim_start().to_string()
    }
}

/// [`read_text_as`]'s bytes, whatever their encoding (a compose file may be UTF-16).
pub fn read_bytes_as(path: &Path, shown: &str, what: &str, cap: u64) -> Result<Vec<u8>, ReadError> {
    let failed = |message: String| ReadError {
        message,
        too_big: false,
    };
    let label = label_of(path, shown, what);
    let read = if path == Path::new("-") {
        read_capped(std::io::stdin().lock(), cap)
    } else {
        match std::fs::File::open(path) {
            Ok(f) => {
                if f.metadata().is_ok_and(|m| m.is_dir()) {
                    return Err(failed(format!("cannot read {label}: it is a folder")));
                }
                read_capped(f, cap)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(failed(format!(
                    "cannot read {label}: No such file or directory"
                )))
            }
            Err(e) => Err(e),
        }
    };
    read.map_err(|e| failed(format!("cannot read {label}: {e}")))?
        .map_err(|OverCap| ReadError {
            message: too_big(&label, cap),
            too_big: true,
        })
}

/// A regular file's bytes, at most `cap` of them; `what` names it in errors ("`<what>`: cannot
/// read …").
pub fn read_file(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    check_regular_file(path, &format!("{what}:"))?;
    let f = std::fs::File::open(path).map_err(|e| format!("{what}: cannot read {shown}: {e}"))?;
    read_capped(f, cap)
        .map_err(|e| format!("{what}: cannot read {shown}: {e}"))?
        .map_err(|OverCap| too_big(&format!("{what}: {shown}"), cap))
}

/// A buffer that takes chunks up to a ceiling: what collects a stream's output.
pub struct Capped {
    bytes: Vec<u8>,
    cap: usize,
}

impl Capped {
    pub fn new(cap: u64) -> Self {
        Capped {
            bytes: Vec::new(),
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
        }
    }

    /// Appends a chunk; Err(OverCap) (and nothing appended) when it would go over the ceiling.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), OverCap> {
        if self.bytes.len().saturating_add(chunk.len()) > self.cap {
            return Err(OverCap);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads an async stream to its end, at most `cap` bytes; Err(OverCap) as soon as there is more
/// (the rest is left unread: the caller drops the stream, which stops the writer).
pub async fn read_capped_async(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    cap: u64,
) -> std::io::Result<Result<Vec<u8>, OverCap>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    r.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    Ok(if bytes.len() as u64 > cap {
        Err(OverCap)
    } else {
        Ok(bytes)
    })
}

/// Decompresses gzip data, at most `cap` bytes of output (a small input can expand a
/// thousandfold: a gzip bomb). Err is one line naming `what`.
pub fn gunzip(data: &[u8], what: &str, cap: u64) -> Result<Vec<u8>, String> {
    read_capped(flate2::read::GzDecoder::new(data), cap)
        .map_err(|e| format!("{what}: cannot decompress: {e}"))?
        .map_err(|OverCap| too_big(&format!("{what}, decompressed,"), cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_device_is_read_only_up_to_the_ceiling() {
        let err = read_text(Path::new("/dev/zero"), "compose file", MIB).unwrap_err();
        assert_eq!(
            err.message,
            "compose file /dev/zero is over 1 MiB, the most wsm reads"
        );
        assert!(err.too_big);
        let dir = tempfile::tempdir().unwrap();
        let err = read_text(dir.path(), "env file", MIB).unwrap_err();
        assert!(
            err.message.ends_with("it is a folder") && !err.too_big,
            "{err}"
        );
    }

    #[test]
    fn what_a_path_is_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_regular_file(dir.path(), "env_file:").unwrap_err();
        assert!(err.ends_with("is a folder, not a file"), "{err}");
        let err = check_regular_file(Path::new("/dev/null"), "env_file:").unwrap_err();
        assert!(err.ends_with("is a character device, not a file"), "{err}");
        let err = check_regular_file(&dir.path().join("nope"), "env_file:").unwrap_err();
        assert!(err.ends_with("does not exist"), "{err}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_ceiling() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 8 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        let err = gunzip(&bomb, "document wsm-state-x", MIB).unwrap_err();
        assert!(err.contains("over 1 MiB"), "{err}");
        assert_eq!(gunzip(&bomb, "d", 8 * MIB).unwrap().len(), 8 << 20);
    }

    #[test]
    fn a_capped_buffer_refuses_the_chunk_that_goes_over() {
        let mut c = Capped::new(4);
        assert!(c.push(b"ab").is_ok() && c.push(b"cd").is_ok());
        assert!(c.push(b"e").is_err());
        assert_eq!(c.into_bytes(), b"abcd");
    }

    #[test]
    fn a_stream_without_end_stops_at_the_ceiling_and_is_left_unread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = tokio::process::Command::new("yes")
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut out = child.stdout.take().unwrap();
            let read = read_capped_async(&mut out, MIB).await.unwrap();
            assert_eq!(read, Err(OverCap));
            let (mut small, _) = tokio::io::duplex(64);
            assert_eq!(
                read_capped_async(&mut small, MIB).await.unwrap(),
                Ok(Vec::new())
            );
        });
    }
}
