//! One SSH master per host that later wsm processes find, and the Docker engine's socket
//! forwarded through it.
//!
//! **What persists, how long, how to end it.** A master is started at a well-known private
//! path, `$XDG_STATE_HOME/wsm/ssh/m-<hash>` (folder mode 0700; `<hash>` of user@host:port and
//! the connect options), with `ControlPersist=<WSM_SSH_PERSIST>s` (default 60): it exits on its
//! own once it has carried nothing for that long after the last wsm process stopped using it. A
//! later wsm process (a command, a batch file, the REPL) that finds it alive (its socket accepts)
//! skips the SSH handshake. A socket whose master is gone (killed, host rebooted) is removed and
//! a new master started; a file lock beside it (`m-<hash>.lock`) makes two processes that start
//! at once share one master. `WSM_SSH_PERSIST=0` gives every process its own master, ended when
//! it exits (`ssh::close_all`). To end a master now: `ssh -S <socket> -O exit none`. What stays
//! in the folder after a master ended: its small `.lock` and `.log` files, `.where` (the path
//! the host's engine listened on when last asked, which the next master forwards while it asks
//! again), and the forwarded socket's file with its `.api` (the engine's API version, valid for
//! that socket only) until the next master for that host replaces them; no ssh process, and
//! never a `.ssh-connection*` folder (those are the private masters', removed on exit).
//!
//! **The engine over the master.** The remote engine's unix socket is forwarded to a local one
//! beside the master's (`f-<hash>.sock`, or `docker.sock` in a private master's folder; ssh's
//! direct-streamlocal), so an HTTP connection to the engine is one SSH channel and no process
//! on either side. Where the remote engine is not on a unix socket, or the server refuses the
//! forward, the caller falls back to `docker system dial-stdio` per connection.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use openssh::{Session, Stdio as SshStdio};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// Seconds an idle shared master lives on when `WSM_SSH_PERSIST` is not set.
pub const DEFAULT_PERSIST: u64 = 60;

/// The seconds a master outlives its last use (`WSM_SSH_PERSIST`); 0 = a private master per
/// process, closed on exit.
pub fn persist_secs() -> Result<u64, String> {
    match std::env::var("WSM_SSH_PERSIST") {
        Err(_) => Ok(DEFAULT_PERSIST),
        Ok(v) if v.trim().is_empty() => Ok(DEFAULT_PERSIST),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= 86_400)
            .ok_or_else(|| {
                format!("WSM_SSH_PERSIST={v:?} is not a number of seconds (0 to 86400)")
            }),
    }
}

/// The folder of the shared masters, made private (0700) if needed; None when there is no
/// state folder (then masters are private to a process). A folder another user owns or can
/// write is refused: whoever can put a socket there gets wsm's ssh connections.
pub fn shared_dir() -> Result<Option<PathBuf>, String> {
    let Some(state) = crate::host::xdg::state_dir() else {
        return Ok(None);
    };
    let dir = state.join("wsm").join("ssh");
    crate::host::owner::make_private_dir(&dir, "the ssh control folder")?;
    Ok(Some(dir))
}

/// Where the master for `key` lives in `dir`: its socket, log, lock and forwarded engine
/// socket. Short names: a unix socket path holds at most 107 bytes.
pub struct Paths {
    pub socket: PathBuf,
    log: PathBuf,
    pub lock: PathBuf,
    pub engine: PathBuf,
    /// Where the host's engine listened when last asked (a path on the host), kept after the
    /// master ends: the next master forwards it while it asks again.
    pub remembered: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path, key: &str) -> Paths {
        let hash = Sha256::digest(key.as_bytes());
        let h: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Paths {
            socket: dir.join(format!("m-{h}")),
            log: dir.join(format!("m-{h}.log")),
            lock: dir.join(format!("m-{h}.lock")),
            engine: dir.join(format!("f-{h}.sock")),
            remembered: dir.join(format!("f-{h}.where")),
        }
    }
}

/// How to start a master: the words `ssh` gets besides the control options.
pub struct Launch {
    pub args: Vec<String>,
    pub destination: String,
    pub deadline: Duration,
}

/// An exclusive lock on a file, released on drop; waits for it up to a deadline.
pub struct Lock(std::fs::File);

impl Lock {
    pub async fn take(path: &Path, deadline: Duration) -> Result<Lock, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let until = Instant::now() + deadline;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(Lock(file));
            }
            if Instant::now() >= until {
                return Err(format!(
                    "another wsm process held {} for {} s",
                    path.display(),
                    deadline.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor this value owns.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The shared master at `p`, started if none answers there; Err carries ssh's own words.
pub async fn shared(p: &Paths, persist: u64, launch: &Launch) -> Result<Session, String> {
    let _lock = Lock::take(&p.lock, launch.deadline).await?;
    if p.socket.exists() {
        // A live master accepts a connection on its socket (cheaper than `ssh -O check`).
        if connects(&p.socket) {
            return Ok(resume(p));
        }
        // A master that is gone (killed, its link cut, the machine suspended): start afresh.
        let _ = std::fs::remove_file(&p.socket);
    }
    // A forward is its master's: one left by a master that ended is no way to the engine.
    let _ = std::fs::remove_file(&p.engine);
    std::fs::File::create(&p.log).map_err(|e| format!("cannot write {}: {e}", p.log.display()))?;
    let mut ssh = tokio::process::Command::new("ssh");
    ssh.arg("-E")
        .arg(&p.log)
        .arg("-S")
        .arg(&p.socket)
        .args(["-M", "-f", "-N", "-o"])
        .arg(format!("ControlPersist={persist}s"))
        .args(["-o", "BatchMode=yes", "-o", "StreamLocalBindUnlink=yes"])
        .args(&launch.args)
        .arg("--")
        .arg(&launch.destination)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let status = tokio::time::timeout(launch.deadline, ssh.status())
        .await
        .map_err(|_| format!("no answer within {} s", launch.deadline.as_secs()))?
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if !status.success() {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        let _ = std::fs::remove_file(&p.log);
        let line = log
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
            .unwrap_or("ssh failed without a message")
            .trim_start_matches("ssh: ")
            .to_string();
        return Err(line);
    }
    Ok(resume(p))
}

fn resume(p: &Paths) -> Session {
    Session::resume(
        p.socket.clone().into_boxed_path(),
        Some(p.log.clone().into_boxed_path()),
    )
}

/// Where the remote engine listens, as `docker system dial-stdio` would find it there:
/// `DOCKER_HOST`, else the current context when one is set, else the default socket.
const ENGINE_PROBE: &str = r#"if [ -n "$DOCKER_HOST" ]; then printf '%s' "$DOCKER_HOST"; elif [ -n "$DOCKER_CONTEXT" ] || grep -qs '"currentContext"' "${DOCKER_CONFIG:-$HOME/.docker}/config.json"; then docker context inspect --format '{{.Endpoints.docker.Host}}'; else printf 'unix:///var/run/docker.sock'; fi"#;

/// Where an engine listens when nothing on its host says otherwise.
const DEFAULT_ENGINE: &str = "/var/run/docker.sock";

/// Forwards the remote engine's unix socket to `local` through the master at `socket` (false
/// when the engine is not on a unix socket or the forward is refused), with `meanwhile` run on
/// `local` while the host is asked where its engine listens: the place it answered last time (kept in the file `remembered`), else the usual
/// one, is forwarded at once, so that the probe's round trips and the caller's first ones (a
/// channel opened, the engine's version asked) overlap. Its result is returned only when the
/// probe confirms that place; otherwise the right one is forwarded and the result, which came
/// from another socket, is dropped. Nothing but `meanwhile` uses the socket before that.
pub async fn forward_engine_with<T, F, Fut>(
    session: &Session,
    socket: &Path,
    local: &Path,
    remembered: Option<&Path>,
    meanwhile: F,
) -> (bool, Option<T>)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let _ = std::fs::remove_file(local);
    let guess = remembered
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|g| g.trim().to_string())
        .filter(|g| g.starts_with('/') && !g.contains(':'))
        .unwrap_or_else(|| DEFAULT_ENGINE.to_string());
    let early = forward(socket, local, &guess, "forward").await && connects(local);
    let (remote, done) = if early {
        let (remote, done) = tokio::join!(
            remote_engine_socket(session),
            meanwhile(local.to_path_buf())
        );
        (remote, Some(done))
    } else {
        (remote_engine_socket(session).await, None)
    };
    if early && remote.as_deref() == Some(guess.as_str()) {
        return (true, done);
    }
    if early {
        forward(socket, local, &guess, "cancel").await;
        let _ = std::fs::remove_file(local);
    }
    let Some(remote) = remote else {
        return (false, None);
    };
    if let Some(f) = remembered {
        let _ = crate::host::output::write_atomic(f, format!("{remote}\n").as_bytes(), true);
    }
    (
        forward(socket, local, &remote, "forward").await && connects(local),
        None,
    )
}

/// `ssh -O forward` (or `cancel`) of `local` to the remote unix socket `remote` through the
/// master at `socket`; whether ssh did it.
async fn forward(socket: &Path, local: &Path, remote: &str, op: &str) -> bool {
    let spec = format!("{}:{}", local.display(), remote);
    tokio::process::Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-o", "BatchMode=yes", "-O", op, "-L"])
        .arg(&spec)
        .arg("none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The path of the remote engine's unix socket, None when it is not on one.
async fn remote_engine_socket(session: &Session) -> Option<String> {
    let mut child = session
        .shell(ENGINE_PROBE)
        .stdin(SshStdio::null())
        .stdout(SshStdio::piped())
        .stderr(SshStdio::null())
        .spawn()
        .await
        .ok()?;
    let mut out = String::new();
    // A socket path; more than a page is not one (and is not read whole).
    (&mut child.stdout().take()?)
        .take(4096)
        .read_to_string(&mut out)
        .await
        .ok()?;
    let status = child.wait().await.ok()?;
    let path = out.trim().strip_prefix("unix://")?.to_string();
    // A path with ':' cannot be written in -L's local:remote form.
    (status.success() && path.starts_with('/') && !path.contains(':')).then_some(path)
}

/// Whether a unix socket accepts a connection (a forward whose master is gone does not).
pub fn connects(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}
