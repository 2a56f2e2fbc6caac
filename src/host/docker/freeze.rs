//! `cleanup::freeze`: processes in a container stopped (SIGSTOP) under a lease, so that they are
//! thawed however wsm ends, even when it cannot act (SIGKILL, SIGHUP, a job's timeout, a lost
//! connection, a runner restart).
//!
//! One exec freezes them and stays attached. Its shell renews a lease folder with each line wsm
//! writes to its stdin (a write on a connection already open, not a new exec, so a busy engine
//! does not delay it), and thaws them when its stdin ends: the engine closes an exec's stdin
//! with its connection, so wsm's end, whatever ends it, thaws them at once. A watcher the exec
//! leaves beside them thaws them too once the folder is gone or has not been renewed for
//! [`LEASE_SECS`] seconds, so a connection that hangs without closing (a host cut off) cannot
//! keep them frozen either. The watcher counts `sleep 1` rounds, not the clock, so a clock that
//! jumps neither ends a lease early nor keeps it alive. The cleanup action (the normal path, an
//! error, Ctrl-C, SIGTERM) drops the connection and thaws at once with an exec of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use futures_util::{Stream, StreamExt};
use rhai::Module;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::container::{create_exec, exit_code};
use super::{engine_error, exec_collect, EngineHandle};
use crate::host::cleanup::Action;
use crate::host::doc::Prim;
use crate::host::{script_err, Host, ScriptResult};

/// How long the processes stay frozen without a renewal (seconds of the watcher's `sleep 1`).
/// Short, because a frozen process fails its container's health check: one every 5 s with 3
/// retries has the task replaced after about 16 s frozen.
pub const LEASE_SECS: u32 = 10;
/// How often wsm renews the lease.
const RENEW_EVERY: Duration = Duration::from_secs(1);

/// Freezes the processes named `$3` and starts the watcher of lease folder `$1` (lease `$2`
/// rounds); then renews the lease for each line on stdin until it ends, and thaws. The pids go
/// into the folder before they are frozen, so a thaw that finds the folder finds them; the
/// watcher holds none of the exec's streams.
const FREEZE_SH: &str = r#"d=$1 lease=$2 name=$3
mkdir -m 700 "$d" || exit 1
pids=$(pgrep -x -- "$name" | tr '\n' ' ')
printf '%s\n' "$pids" > "$d/pids" || exit 1
[ -z "$pids" ] || kill -STOP $pids || exit 1
(
    left=$lease
    while [ -d "$d" ] && [ "$left" -gt 0 ]; do
        sleep 1
        if rm "$d/renew" 2>/dev/null; then left=$lease; else left=$((left - 1)); fi
    done
    [ -z "$pids" ] || kill -CONT $pids
    rm -rf "$d"
) </dev/null >/dev/null 2>&1 &
printf 'frozen %s\n' "$pids"
while read -r line && [ -d "$d" ]; do : > "$d/renew"; done 2>/dev/null
[ -z "$pids" ] || kill -CONT $pids 2>/dev/null
rm -rf "$d""#;

/// Thaws what the freeze of folder `$1` stopped and ends its lease (nothing when it has ended).
const THAW_SH: &str = r#"d=$1
[ -d "$d" ] || exit 0
pids=$(cat "$d/pids" 2>/dev/null)
rm -rf "$d"
[ -z "$pids" ] || kill -CONT $pids 2>/dev/null
exit 0"#;

/// The renewals of one freeze. Its cleanup action owns it, so they end with the action whether
/// it runs (it sets `Ended`) or is cancelled (dropped).
enum Renewals {
    NotStarted,
    Running(tokio::task::JoinHandle<()>),
    Ended,
}

impl Drop for Renewals {
    fn drop(&mut self) {
        if let Renewals::Running(task) = self {
            task.abort();
        }
    }
}

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec!["sh".into(), "-c".into(), script.into(), "wsm-freeze".into()];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// A lease folder name no other freeze uses.
fn lease_dir() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("/tmp/.wsm-freeze-{:x}-{nanos:x}", std::process::id())
}

/// The attached freeze: its output (to see it end) and its stdin (the renewals).
struct Attached {
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Runs the freeze and waits for it to say the processes are frozen; its error otherwise.
async fn freeze(
    e: &EngineHandle,
    container: &str,
    name: &str,
    dir: &str,
) -> ScriptResult<Attached> {
    let lease = LEASE_SECS.to_string();
    let cmd = sh(FREEZE_SH, &[dir, &lease, name]);
    let id = create_exec(&e.docker, container, cmd, true, false).await?;
    let started = e.docker.start_exec(&id, None).await.map_err(engine_error)?;
    let StartExecResults::Attached { mut output, input } = started else {
        return Err(script_err("the engine started the freeze detached"));
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(chunk) = output.next().await {
        match chunk.map_err(engine_error)? {
            LogOutput::StdErr { message } => err.extend_from_slice(&message),
            other => out.extend_from_slice(&other.into_bytes()),
        }
        if out.contains(&b'\n') {
            return Ok(Attached { output, input });
        }
    }
    let code = exit_code(&e.docker, &id).await?;
    Err(script_err(format!(
        "freezing {name} in container {container} failed (exit {code}): {}",
        String::from_utf8_lossy(&err).trim()
    )))
}

/// Renews the lease until aborted (which closes the connection: the freeze thaws); says so
/// once when the freeze ended by itself (its lease lapsed, or the connection broke).
async fn renew(mut frozen: Attached, what: String) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let sent = async {
                    frozen.input.write_all(b"renew\n").await?;
                    frozen.input.flush().await
                };
                if let Err(err) = sent.await {
                    eprintln!("warning: the freeze could not be renewed ({what}): {err}");
                    return;
                }
            }
            chunk = frozen.output.next() => {
                if !matches!(chunk, Some(Ok(_))) {
                    eprintln!("warning: the freeze ended before it was meant to ({what})");
                    return;
                }
            }
        }
    }
}

/// Adds `cleanup::freeze` to the `cleanup::` module.
pub fn register_cleanup(m: &mut Module, host: &Arc<Host>) {
    // cleanup::freeze(engine, container, process_name, what) — stop (SIGSTOP) the processes of
    // that name in the container under a lease wsm renews; returns the id of the action that
    // thaws them: `cleanup::run(id)` on the normal path, the host on error, Ctrl-C or SIGTERM,
    // and the container itself when wsm ends any other way (at once when its connection
    // closes, within LEASE_SECS when it hangs).
    let h = host.clone();
    let prim = Prim::new(
        "cleanup::freeze(engine: Engine, container: string, process: string, what: string) -> int",
    )
    .doc(
        "Freezes (SIGSTOP) the processes of that name in the container under a lease wsm renews, \
         and registers the undo action that thaws them: `cleanup::run(id)` on the normal path, \
         the host on an error, Ctrl-C or SIGTERM, and the container itself when wsm ends any \
         other way (at once when its connection closes, within 10 s when it hangs). `what` says \
         what the thaw is for. Returns the action's id; fails when the freeze cannot run.",
    );
    prim.set_in(
        m,
        move |e: EngineHandle, container: &str, name: &str, what: &str| -> ScriptResult<i64> {
            if name.is_empty() {
                return Err(script_err("cleanup::freeze needs a process name"));
            }
            let dir = lease_dir();
            // The thaw is pending before anything is frozen: an interrupt during the freeze
            // still runs it.
            let (thaw_e, thaw_c, thaw_d) = (e.clone(), container.to_string(), dir.clone());
            let renewals = Arc::new(std::sync::Mutex::new(Renewals::NotStarted));
            let renewing = renewals.clone();
            let action = Action::new(move || async move {
                *renewing.lock().unwrap_or_else(|e| e.into_inner()) = Renewals::Ended;
                let (code, _, err) = exec_collect(&thaw_e.docker, &thaw_c, sh(THAW_SH, &[&thaw_d]))
                    .await
                    .map_err(|e| e.to_string())?;
                if code != 0 {
                    return Err(format!("the thaw exited {code}: {}", err.trim()));
                }
                Ok(())
            });
            let id = h.cleanups.add(what, action);
            let frozen = h.block(freeze(&e, container, name, &dir))?;
            // Unless the thaw ran meanwhile (a signal), the lease is renewed from now on.
            let mut state = renewals.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(*state, Renewals::NotStarted) {
                *state = Renewals::Running(h.rt.spawn(renew(frozen, what.to_string())));
            }
            Ok(id)
        },
    );
}
