//! Files moved over a session: a local file or text written to the host atomically (a
//! temporary beside it, checked whole, synced, renamed) and a remote file fetched atomically.

use std::path::Path;

use super::{quote, run, run_to, SshSession};
use crate::host::{script_err, ScriptResult};

/// The remote shell text that writes its stdin to `path` atomically: a temp file in the same
/// folder (made with `mkdir -p`), checked to hold exactly `size` bytes, synced, given `mode`,
/// then renamed over `path`. The size check matters: were wsm killed mid-way, the remote `cat`
/// would see the end of its input as if it were the file's end.
pub(super) fn atomic_write_script(path: &str, mode: i64, size: u64) -> String {
    let p = quote(path);
    format!(
        "umask 077; d=$(dirname -- {p}) && mkdir -p -- \"$d\" && t=$(mktemp \"$d/.wsm-tmp.XXXXXX\") || exit 1; \
         if cat > \"$t\" && [ $(($(wc -c < \"$t\"))) -eq {size} ] && {{ sync \"$t\" 2>/dev/null || true; }} && chmod {mode:o} \"$t\" && mv -f -- \"$t\" {p}; then exit 0; fi; \
         rm -f -- \"$t\"; echo \"not written whole\" >&2; exit 1"
    )
}

/// Sends a local file to `remote` atomically.
pub(super) async fn upload(
    s: &SshSession,
    local: &Path,
    remote: &str,
    mode: i64,
) -> ScriptResult<()> {
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| script_err(format!("cannot read {}: {e}", local.display())))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| script_err(format!("cannot read {}: {e}", local.display())))?
        .len();
    write_remote(s, remote, mode, size, &mut file).await
}

/// Writes what `input` yields to `remote` atomically, with `mode`.
pub(super) async fn write_remote(
    s: &SshSession,
    remote: &str,
    mode: i64,
    size: u64,
    input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
) -> ScriptResult<()> {
    let ran = run(s, &atomic_write_script(remote, mode, size), Some(input)).await?;
    if ran.code != 0 {
        return Err(script_err(format!(
            "cannot write {remote} on {}: {}",
            s.target,
            ran.stderr_text()
        )));
    }
    Ok(())
}

/// Fetches `remote` into `local` atomically (a temp file beside it, renamed when complete).
pub(super) async fn download(s: &SshSession, remote: &str, local: &Path) -> ScriptResult<()> {
    if let Some(dir) = local.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| script_err(format!("cannot create {}: {e}", dir.display())))?;
    }
    let out = crate::host::output::OutputFile::check(local).map_err(crate::host::usage_err)?;
    let tmp = out
        .temp_file(true)
        .map_err(|e| script_err(format!("cannot write in {}: {e}", out.dir.display())))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(script_err)?);
    let ran = run_to(s, &format!("cat -- {}", quote(remote)), &mut file).await?;
    if ran.code != 0 {
        return Err(script_err(format!(
            "cannot read {remote} on {}: {}",
            s.target,
            ran.stderr_text()
        )));
    }
    file.sync_all().await.map_err(script_err)?;
    out.commit(tmp)
        .map_err(|e| script_err(format!("cannot write {}: {e}", local.display())))
}
