//! `ssh::` — hosts reached over SSH with the system OpenSSH client (the openssh crate). A script
//! connects once (`let s = ssh::connect("root@10.0.0.5")`) and runs commands, uploads and
//! downloads files over that multiplexed session. Keys come from the agent or `~/.ssh` (as `ssh`
//! finds them, including `~/.ssh/config`); host keys are checked: an unknown host is recorded
//! on first contact, a changed key is refused (`StrictHostKeyChecking=accept-new`), or with
//! `strict: true` an unknown host is refused too.
//!
//! One master per host serves every `ssh::` call and every engine request of the process, and
//! by default later wsm processes too: it stays `WSM_SSH_PERSIST` seconds (60) after its last
//! use at a private path under the state folder (`mux`, which says what persists and how to end
//! it); `WSM_SSH_PERSIST=0` keeps a master private to the process, ended by `close_all`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssh::{Session, Stdio};
use rhai::{Array, Dynamic, Engine, Map, Module};
use tokio::io::AsyncWriteExt;

mod files;
mod identity;
mod master;
mod mux;

use super::opts::{opt_bool, opt_str};
use super::{bounded, error_chain, script_err, Host, ScriptResult};
use crate::host::doc::{check_opts, Opt, Prim};
#[cfg(test)]
use files::atomic_write_script;
use files::{download, upload, write_remote};
use identity::public_keys;
pub use master::{engine_socket, engine_socket_with};
use master::{open, ENGINE_SOCKETS};

/// Seconds to wait for a host to answer when no `timeout` is given (`WSM_SSH_TIMEOUT`).
const DEFAULT_CONNECT_TIMEOUT: u64 = 10;

/// A connection to one host: a multiplexed OpenSSH master session.
#[derive(Clone)]
pub struct SshSession {
    /// `user@host[:port]` as given to `connect`.
    pub target: String,
    session: Arc<Session>,
    /// Where the shared master lives (`mux`); None for a master private to this process.
    shared: Option<Arc<mux::Paths>>,
}

/// Open sessions, by target and options, so that a script's many calls share one master.
static SESSIONS: Mutex<Vec<(String, SshSession)>> = Mutex::new(Vec::new());

/// How to connect: from the script's options and the environment.
#[derive(Debug, Clone, PartialEq)]
struct ConnectOptions {
    timeout: Duration,
    key: Option<PathBuf>,
    strict: bool,
}

impl ConnectOptions {
    fn from_map(opts: &Map) -> Self {
        let timeout = opts
            .get("timeout")
            .and_then(|v| v.as_int().ok())
            .map(|v| v.max(1) as u64)
            .or_else(|| {
                std::env::var("WSM_SSH_TIMEOUT")
                    .ok()
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let key = Some(opt_str(opts, "key", ""))
            .filter(|k| !k.is_empty())
            .map(PathBuf::from);
        let strict = opt_bool(opts, "strict", false);
        ConnectOptions {
            timeout: Duration::from_secs(timeout),
            key,
            strict,
        }
    }

    /// One session per user, host and port (`ssh://root@h` and `root@h:22` share one).
    fn cache_key(&self, target: &str) -> String {
        let who = match parse_target(target) {
            Ok((user, host, port)) => format!("{user}@{host}:{}", port.unwrap_or(22)),
            Err(_) => target.to_string(),
        };
        format!("{who}|{:?}|{}", self.key, self.strict)
    }
}

/// Splits `ssh://user@host:port`, `user@host:port` or `user@host` into what `ssh` takes.
/// The user defaults to root: swarm hosts are administered as root, as in the original tools.
fn parse_target(target: &str) -> Result<(String, String, Option<u16>), String> {
    let rest = target.strip_prefix("ssh://").unwrap_or(target);
    let rest = rest.trim_end_matches('/');
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (u.to_string(), h),
        None => ("root".to_string(), rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (
            h.to_string(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("{target:?}: {p:?} is not a port number"))?,
            ),
        ),
        _ => (hostport.to_string(), None),
    };
    if host.is_empty() || user.is_empty() || host.starts_with('-') || user.starts_with('-') {
        return Err(format!(
            "{target:?} is not an SSH target: use user@host or ssh://user@host[:port]"
        ));
    }
    Ok((user, host, port))
}

/// The open session to `target` with the default options, opened if there is none: what the
/// Docker client's SSH transport shares with `ssh::connect(target)`.
pub async fn shared_session(target: &str) -> Result<Arc<Session>, String> {
    let opts = ConnectOptions::from_map(&Map::new());
    Ok(shared_ssh(target, &opts).await?.session)
}

async fn shared_ssh(target: &str, opts: &ConnectOptions) -> Result<SshSession, String> {
    let key = opts.cache_key(target);
    if let Some(s) = cached(&key) {
        // A master ends after its persist time without use (a REPL left idle): open a new one.
        if mux::connects(s.session.control_socket()) {
            return Ok(s);
        }
        SESSIONS
            .lock()
            .expect("ssh sessions")
            .retain(|(k, _)| *k != key);
        ENGINE_SOCKETS
            .lock()
            .expect("engine sockets")
            .retain(|(k, _)| *k != key);
    }
    let (session, shared) = open(target, opts).await?;
    let s = SshSession {
        target: target.to_string(),
        session: Arc::new(session),
        shared,
    };
    SESSIONS
        .lock()
        .expect("ssh sessions")
        .push((key, s.clone()));
    Ok(s)
}

fn cached(key: &str) -> Option<SshSession> {
    SESSIONS
        .lock()
        .expect("ssh sessions")
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s.clone())
}

/// Checks `WSM_SSH_PERSIST` before anything runs: a bad value is bad input.
pub fn check_env() -> Result<(), String> {
    mux::persist_secs().map(|_| ())
}

/// Ends every master connection this process opened and removes its control folder, so that
/// no ssh process and no `.ssh-connection*` folder outlives wsm.
pub fn close_all() {
    let sessions: Vec<(String, SshSession)> =
        std::mem::take(&mut *SESSIONS.lock().expect("ssh sessions"));
    ENGINE_SOCKETS.lock().expect("engine sockets").clear();
    // A shared master stays for later commands and ends itself (`mux`).
    for (_, s) in sessions.into_iter().filter(|(_, s)| s.shared.is_none()) {
        let socket = s.session.control_socket().to_path_buf();
        let _ = std::process::Command::new("ssh")
            .arg("-S")
            .arg(&socket)
            .args(["-O", "exit", "wsm-master"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(dir) = socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Connects to `target`, reusing an open session to it.
fn connect(host: &Host, target: &str, opts: &ConnectOptions) -> ScriptResult<SshSession> {
    let key = opts.cache_key(target);
    if let Some(s) = cached(&key) {
        return Ok(s);
    }
    let s = host.block(async { shared_ssh(target, opts).await.map_err(script_err) })?;
    if host.opts.verbose {
        eprintln!("ssh: connected to {target}");
    }
    Ok(s)
}

/// A command for the remote shell: a string as written, an array as quoted words.
fn command_line(cmd: &Dynamic) -> ScriptResult<String> {
    if cmd.is_array() {
        let words: Vec<String> = cmd
            .clone()
            .into_array()
            .unwrap_or_default()
            .iter()
            .map(|w| w.to_string())
            .collect();
        if words.is_empty() {
            return Err(script_err("ssh: an empty command"));
        }
        Ok(shell_words::join(words))
    } else {
        Ok(cmd.to_string())
    }
}

/// Quotes one word for the remote POSIX shell.
fn quote(word: &str) -> String {
    shell_words::quote(word).into_owned()
}

/// What a remote command did.
struct Ran {
    code: i64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Ran {
    fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("exit_code".into(), Dynamic::from(self.code));
        m.insert(
            "stdout".into(),
            String::from_utf8_lossy(&self.stdout).into_owned().into(),
        );
        m.insert(
            "stderr".into(),
            String::from_utf8_lossy(&self.stderr).into_owned().into(),
        );
        m
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Runs `line` in the remote shell, feeding `stdin` from a reader when given.
async fn run(
    s: &SshSession,
    line: &str,
    stdin: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)>,
) -> ScriptResult<Ran> {
    let fail = |e: openssh::Error| script_err(format!("ssh {}: {}", s.target, error_chain(&e)));
    let mut cmd = s.session.shell(line);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().await.map_err(fail)?;
    let in_pipe = child.stdin().take();
    let feed = async {
        if let (Some(input), Some(mut pipe)) = (stdin, in_pipe) {
            tokio::io::copy(input, &mut pipe)
                .await
                .map_err(|e| script_err(format!("ssh {}: sending input: {e}", s.target)))?;
            pipe.shutdown().await.ok();
        }
        Ok::<(), Box<rhai::EvalAltResult>>(())
    };
    let mut out_pipe = child.stdout().take();
    let mut err_pipe = child.stderr().take();
    // Over the ceiling, the first error ends the join: the pipes and the child are dropped, and
    // ssh closes the remote command's output rather than wsm waiting for it to end.
    let (_, out, err) = tokio::try_join!(
        feed,
        read_pipe(s, line, "output", out_pipe.as_mut()),
        read_pipe(s, line, "error output", err_pipe.as_mut())
    )?;
    let status = child.wait().await.map_err(fail)?;
    Ok(Ran {
        code: status.code().map(i64::from).unwrap_or(-1),
        stdout: out,
        stderr: err,
    })
}

/// A remote command's output stream (`name`) read to its end, at most
/// [`bounded::COMMAND_OUTPUT`] bytes; more is an error naming the command. A read error ends
/// it with nothing.
async fn read_pipe(
    s: &SshSession,
    line: &str,
    name: &str,
    pipe: Option<&mut (impl tokio::io::AsyncRead + Unpin)>,
) -> ScriptResult<Vec<u8>> {
    let Some(p) = pipe else {
        return Ok(Vec::new());
    };
    match bounded::read_capped_async(p, bounded::COMMAND_OUTPUT).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => {
            let what = format!(
                "the {name} of `{}` on {}",
                bounded::shorten(line, 60),
                s.target
            );
            Err(script_err(bounded::too_big(&what, bounded::COMMAND_OUTPUT)))
        }
        Err(_) => Ok(Vec::new()),
    }
}

/// Runs `line`, streaming the remote command's stdout into a local writer.
async fn run_to(
    s: &SshSession,
    line: &str,
    sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
) -> ScriptResult<Ran> {
    let fail = |e: openssh::Error| script_err(format!("ssh {}: {}", s.target, error_chain(&e)));
    let mut cmd = s.session.shell(line);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().await.map_err(fail)?;
    let mut out_pipe = child.stdout().take();
    let mut err_pipe = child.stderr().take();
    let copy = async {
        match out_pipe.as_mut() {
            Some(p) => tokio::io::copy(p, sink).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let copy = async {
        copy.await
            .map_err(|e| script_err(format!("ssh {}: receiving: {e}", s.target)))
    };
    let (_, err) = tokio::try_join!(copy, read_pipe(s, line, "error output", err_pipe.as_mut()))?;
    let status = child.wait().await.map_err(fail)?;
    Ok(Ran {
        code: status.code().map(i64::from).unwrap_or(-1),
        stdout: Vec::new(),
        stderr: err,
    })
}

fn to_session(s: &mut SshSession) -> SshSession {
    s.clone()
}

/// `ssh::connect`'s options.
const CONNECT_OPTS: &[Opt] = &[
    ("timeout", "seconds; 10 or `WSM_SSH_TIMEOUT`"),
    ("key", "a private key file: only that one is offered"),
    ("strict", "false; true: refuses hosts not in known_hosts"),
];

/// Registers the `ssh::` module and the methods of the `SshSession` type.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<SshSession>("SshSession");
    let prim = Prim::new("s.target -> string").doc("The `user@host[:port]` this session reaches.");
    prim.register(engine, |s: &mut SshSession| s.target.clone());

    let mut m = Module::new();
    let h = host.clone();
    let prim = Prim::new("ssh::connect(target: string) -> SshSession").doc(
        "Connects to `user@host[:port]` (user root when omitted) over one OpenSSH master per \
         host, shared with the Docker client and with later wsm processes until it has been \
         unused for `WSM_SSH_PERSIST` seconds (default 60; 0: this process's own, closed on \
         exit). Fails naming the host and ssh's reason.",
    );
    prim.set_in(&mut m, move |target: &str| -> ScriptResult<SshSession> {
        connect(&h, target, &ConnectOptions::from_map(&Map::new()))
    });
    let h = host.clone();
    let prim =
        Prim::new("ssh::connect(target: string, opts: map) -> SshSession").opts(CONNECT_OPTS);
    prim.set_in(
        &mut m,
        move |target: &str, opts: Map| -> ScriptResult<SshSession> {
            check_opts("ssh::connect", &opts, CONNECT_OPTS)?;
            connect(&h, target, &ConnectOptions::from_map(&opts))
        },
    );
    let prim = Prim::new("ssh::public_keys() -> array")
        .doc("The user's public keys (ssh-agent and identity files), one line each.");
    prim.set_in(&mut m, || -> ScriptResult<Array> {
        Ok(public_keys().into_iter().map(Dynamic::from).collect())
    });
    let prim = Prim::new("ssh::parse_target(target: string) -> map").doc(
        "`#{user, host, port}` of `user@host[:port]` or `ssh://…`; port is () when not given. Bad \
         input is a usage error.",
    );
    prim.set_in(&mut m, |target: &str| -> ScriptResult<Map> {
        let (user, host, port) = parse_target(target).map_err(script_err)?;
        let mut m = Map::new();
        m.insert("user".into(), user.into());
        m.insert("host".into(), host.into());
        m.insert(
            "port".into(),
            port.map(|p| Dynamic::from(p as i64))
                .unwrap_or(Dynamic::UNIT),
        );
        Ok(m)
    });
    engine.register_static_module("ssh", m.into());

    let h = host.clone();
    let prim = Prim::new("s.run(cmd) -> map").doc(
        "Runs a command (a shell line, or an array of words quoted for the remote shell) on the \
         host, optionally with text on its stdin; returns `#{exit_code, stdout, stderr}`. Fails \
         only when the connection does, or when either output stream goes over 64 MiB (the \
         error names the command).",
    );
    prim.register(
        engine,
        move |s: &mut SshSession, cmd: Dynamic| -> ScriptResult<Map> {
            let line = command_line(&cmd)?;
            let s = to_session(s);
            h.block(async move { run(&s, &line, None).await.map(|r| r.to_map()) })
        },
    );
    let h = host.clone();
    let prim = Prim::new("s.run(cmd, stdin: string) -> map");
    prim.register(
        engine,
        move |s: &mut SshSession, cmd: Dynamic, input: &str| -> ScriptResult<Map> {
            let line = command_line(&cmd)?;
            let s = to_session(s);
            let mut bytes = std::io::Cursor::new(input.as_bytes().to_vec());
            h.block(async move { run(&s, &line, Some(&mut bytes)).await.map(|r| r.to_map()) })
        },
    );
    let h = host.clone();
    let prim = Prim::new("s.upload(local: string, remote: string)").doc(
        "Copies a local file to the host: parent folders made, written atomically, mode 0644 \
         unless given (e.g. `0o600`).",
    );
    prim.register(
        engine,
        move |s: &mut SshSession, local: &str, remote: &str| -> ScriptResult<()> {
            let s = to_session(s);
            h.block(async move { upload(&s, Path::new(local), remote, 0o644).await })
        },
    );
    let h = host.clone();
    let prim = Prim::new("s.upload(local: string, remote: string, mode: int)");
    prim.register(
        engine,
        move |s: &mut SshSession, local: &str, remote: &str, mode: i64| -> ScriptResult<()> {
            let s = to_session(s);
            h.block(async move { upload(&s, Path::new(local), remote, mode).await })
        },
    );
    let h = host.clone();
    let prim = Prim::new("s.download(remote: string, local: string)")
        .doc("Copies a file from the host, atomically on this side.");
    prim.register(
        engine,
        move |s: &mut SshSession, remote: &str, local: &str| -> ScriptResult<()> {
            let s = to_session(s);
            h.block(async move { download(&s, remote, Path::new(local)).await })
        },
    );
    let h = host.clone();
    let prim = Prim::new("s.read(remote: string) -> string")
        .doc("A remote text file's contents, or () when it does not exist.");
    prim.register(
        engine,
        move |s: &mut SshSession, remote: &str| -> ScriptResult<Dynamic> {
            let s = to_session(s);
            let p = quote(remote);
            let line = format!("if [ -e {p} ]; then cat -- {p}; else exit 44; fi");
            let ran = h.block(async { run(&s, &line, None).await })?;
            match ran.code {
                0 => Ok(String::from_utf8_lossy(&ran.stdout).into_owned().into()),
                44 => Ok(Dynamic::UNIT),
                _ => Err(script_err(format!(
                    "cannot read {remote} on {}: {}",
                    s.target,
                    ran.stderr_text()
                ))),
            }
        },
    );
    let h = host.clone();
    let prim = Prim::new("s.write(remote: string, text: string, mode: int)").doc(
        "Writes text to a remote file atomically (parent folders made, temporary file, rename) \
         with the given mode.",
    );
    prim.register(
        engine,
        move |s: &mut SshSession, remote: &str, text: &str, mode: i64| -> ScriptResult<()> {
            let s = to_session(s);
            let size = text.len() as u64;
            let mut bytes = std::io::Cursor::new(text.as_bytes().to_vec());
            h.block(write_remote(&s, remote, mode, size, &mut bytes))
        },
    );
    let h = host.clone();
    let prim = Prim::new("s.rename(from: string, to: string)")
        .doc("Renames a remote file (`mv -f`), e.g. to keep a replaced file as `.old`.");
    prim.register(
        engine,
        move |s: &mut SshSession, from: &str, to: &str| -> ScriptResult<()> {
            let s = to_session(s);
            let line = format!("mv -f -- {} {}", quote(from), quote(to));
            let ran = h.block(async { run(&s, &line, None).await })?;
            if ran.code != 0 {
                return Err(script_err(format!(
                    "cannot rename {from} on {}: {}",
                    s.target,
                    ran.stderr_text()
                )));
            }
            Ok(())
        },
    );
    let prim = Prim::new("s.close()").doc(
        "Forgets the session: its master ends when the last handle is dropped (or a minute after \
         its last use), and the next connect opens a fresh one.",
    );
    prim.register(engine, move |s: &mut SshSession| {
        SESSIONS
            .lock()
            .expect("ssh sessions")
            .retain(|(_, x)| !Arc::ptr_eq(&x.session, &s.session));
    });
}

#[cfg(test)]
mod tests;
