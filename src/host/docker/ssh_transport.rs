//! The Docker API over SSH, over ONE master connection per host, shared with `ssh::connect`
//! and with later wsm processes (`ssh::mux`): each HTTP connection is a new channel of that
//! master, not a new SSH handshake. The remote engine's unix socket is forwarded to a local one
//! (`ssh::engine_socket`), so a connection starts no process on either side; where that cannot
//! be done, each connection runs `docker system dial-stdio` on the remote host, as the Docker
//! CLI does. The port of `ssh://user@host:port` is honoured and ssh's own error reaches the user.
//!
//! **Round trips are the bill across a WAN**, and a new channel costs one before its request
//! can go. So one HTTP client per host serves the whole process (bollard's requests and the
//! `raw` reads alike), hyper's pool keeps its connections alive between requests, and a few
//! channels are opened ahead ([`WARM`]): the requests of a wave sent together find a channel
//! already open instead of each opening its own. The engine's API version is kept beside the
//! shared master's forwarded socket, so that a later process skips `HEAD /_ping` while the same
//! master lives ([`known_api_version`]).

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bollard::{BollardRequest, ClientVersion, Docker};
use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{Either, Full, StreamBody};
use hyper::body::Frame;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssh::{ChildStdin, ChildStdout, Session, Stdio};

use crate::host::{error_chain, ssh};

/// Channels opened ahead when a process first speaks to a host: the widest wave of requests a
/// read command sends at once (`e.stack_state` sends four together after the stack's record
/// was read on one of them). Later connections are opened when needed; the pool keeps them all
/// alive for the process's next requests.
const WARM: usize = 4;

/// The body of a request as bollard builds it (its `BodyType`, which it does not name publicly).
type Body = Either<
    Full<Bytes>,
    StreamBody<Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send>>>,
>;

/// Open channels to an engine, not yet used by any connection of the pool.
type Stash = Arc<Mutex<Vec<tokio::net::UnixStream>>>;

/// The HTTP client of one `ssh://` engine and its stash of channels opened ahead.
struct Pooled {
    target: String,
    client: Client<Dial, Body>,
    warm: Stash,
}

/// The client of each `ssh://` engine this process speaks to.
static CLIENTS: Mutex<Vec<Pooled>> = Mutex::new(Vec::new());

/// The one client of `target` in this process (made on first use), and its stash.
fn pooled(target: &str) -> (Client<Dial, Body>, Stash) {
    let mut clients = CLIENTS.lock().expect("ssh clients");
    if let Some(p) = clients.iter().find(|p| p.target == target) {
        return (p.client.clone(), p.warm.clone());
    }
    let warm = Stash::default();
    let client = Client::builder(TokioExecutor::new()).build(Dial {
        target: target.to_string(),
        warm: warm.clone(),
    });
    clients.push(Pooled {
        target: target.to_string(),
        client: client.clone(),
        warm: warm.clone(),
    });
    (client, warm)
}

/// Sends `req` to the engine of `target` over the process's pooled connections.
async fn send(
    target: &str,
    mut req: BollardRequest,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    // hyper pools connections by scheme and authority: bollard writes `ssh://user@host/…`, the
    // raw reads `http://docker/…`. One form for both, so that they share the connections.
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = format!("http://docker{path}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    pooled(target)
        .0
        .request(req)
        .await
        .map_err(|e| error_chain(&e))
}

/// Opens (or reuses) the master connection to the host of `ssh://…` and returns a client that
/// speaks the Engine API through it; channels start opening ahead at once.
pub async fn connect(host: &str, timeout: u64, version: &ClientVersion) -> Result<Docker, String> {
    let target = host.trim_end_matches('/').to_string();
    // `connect` runs again when the engine is older than bollard (a client for its version):
    // the channels are opened once per process.
    let first = !CLIENTS
        .lock()
        .expect("ssh clients")
        .iter()
        .any(|p| p.target == target);
    let warm = pooled(&target).1;
    // A master started now asks its host where the engine listens; meanwhile the channels are
    // opened and the engine's version asked on the place it most likely is, and kept when the
    // host confirms it (else the channels, opened to another socket, are dropped).
    let early = warm.clone();
    let (socket, learnt) = ssh::engine_socket_with(&target, |local| async move {
        warm_up(&early, &local);
        ping_version(&local).await
    })
    .await?;
    match (&socket, learnt.flatten()) {
        (Some(socket), Some(v)) => remember_version_at(socket, &v),
        (Some(socket), None) if first => {
            warm.lock().expect("warm channels").clear();
            warm_up(&warm, socket);
        }
        _ => {}
    }
    let name = target.clone();
    let transport = move |req: BollardRequest| {
        let target = name.clone();
        async move {
            // Which engine and what happened, in one line: the engine restarting, or the link
            // to its host cut, reads "lost the connection to the Docker engine at ssh://…".
            send(&target, req)
                .await
                .map_err(|e| bollard::errors::Error::IOError {
                    err: std::io::Error::other(format!(
                        "lost the connection to the Docker engine at {target}: {e}"
                    )),
                })
        }
    };
    Docker::connect_with_custom_transport(transport, Some(target.as_str()), timeout, version)
        .map_err(|e| e.to_string())
}

/// One bodiless request to the engine of `ssh://…` (for `raw`), over the pooled connections.
pub(super) async fn request(
    host: &str,
    method: hyper::Method,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let target = host.trim_end_matches('/');
    // `send` gives it the pool's one form of address.
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .body(bollard::body_full(Bytes::new()))
        .map_err(|e| e.to_string())?;
    send(target, req)
        .await
        .map_err(|e| format!("cannot reach the Docker engine at {target}: {e}"))
}

/// Fills a stash with [`WARM`] open channels: connecting to the forwarded socket makes the
/// master open a channel to the engine, which is ready by the time a request takes it. A unix
/// connect completes in the listener's backlog, so this does not wait for the far side.
fn warm_up(warm: &Stash, socket: &Path) {
    let mut warm = warm.lock().expect("warm channels");
    for _ in 0..WARM {
        let opened = std::os::unix::net::UnixStream::connect(socket)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UnixStream::from_std);
        match opened {
            Ok(s) => warm.push(s),
            Err(_) => return,
        }
    }
}

/// A channel from the stash that is still open (one whose engine or master went away reads
/// end-of-file, and is dropped).
fn take_warm(warm: &Stash) -> Option<tokio::net::UnixStream> {
    let mut warm = warm.lock().expect("warm channels");
    while let Some(s) = warm.pop() {
        match s.try_read(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(s),
            _ => continue,
        }
    }
    None
}

/// Connects hyper to the engine: through the forwarded socket when there is one, else each
/// connection runs `docker system dial-stdio` on the host. The master is looked up for each
/// new connection, so that one that ended (idle past its persist time) is replaced.
#[derive(Clone)]
struct Dial {
    target: String,
    warm: Stash,
}

impl tower_service::Service<Uri> for Dial {
    type Response = DialStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<DialStream, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let target = self.target.clone();
        let warm = self.warm.clone();
        Box::pin(async move {
            if let Some(path) = ssh::engine_socket(&target)
                .await
                .map_err(std::io::Error::other)?
            {
                let stream = match take_warm(&warm) {
                    Some(s) => s,
                    // The master ended (its link cut, killed): the forward is gone with it.
                    None => tokio::net::UnixStream::connect(&path).await.map_err(|e| {
                        std::io::Error::other(format!("the SSH master's forwarded socket: {e}"))
                    })?,
                };
                return Ok(DialStream::Forwarded(TokioIo::new(stream)));
            }
            let session = ssh::shared_session(&target)
                .await
                .map_err(std::io::Error::other)?;
            let mut child = session
                .arc_command("docker")
                .args(["system", "dial-stdio"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .await
                .map_err(|e| {
                    std::io::Error::other(format!("docker system dial-stdio: {}", error_chain(&e)))
                })?;
            let missing = || std::io::Error::other("dial-stdio gave no pipes");
            let stdin = child.stdin().take().ok_or_else(missing)?;
            let stdout = child.stdout().take().ok_or_else(missing)?;
            Ok(DialStream::Stdio {
                _child: Box::new(child),
                stdin: TokioIo::new(stdin),
                stdout: TokioIo::new(stdout),
            })
        })
    }
}

/// One HTTP connection: the forwarded socket, or the remote `dial-stdio`'s stdout to read and
/// its stdin to write.
enum DialStream {
    Forwarded(TokioIo<tokio::net::UnixStream>),
    Stdio {
        _child: Box<openssh::Child<Arc<Session>>>,
        stdin: TokioIo<ChildStdin>,
        stdout: TokioIo<ChildStdout>,
    },
}

impl Connection for DialStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for DialStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DialStream::Forwarded(s) => Pin::new(s).poll_read(cx, buf),
            DialStream::Stdio { stdout, .. } => Pin::new(stdout).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for DialStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            DialStream::Forwarded(s) => Pin::new(s).poll_write(cx, buf),
            DialStream::Stdio { stdin, .. } => Pin::new(stdin).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DialStream::Forwarded(s) => Pin::new(s).poll_flush(cx),
            DialStream::Stdio { stdin, .. } => Pin::new(stdin).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            DialStream::Forwarded(s) => Pin::new(s).poll_shutdown(cx),
            DialStream::Stdio { stdin, .. } => Pin::new(stdin).poll_shutdown(cx),
        }
    }
}

/// The API version the engine of `host` answered through the same shared master, as a process
/// before this one recorded it beside the master's forwarded socket; None when none did, or
/// the socket was made again since (a new master: the engine may have changed meanwhile).
pub(super) async fn known_api_version(host: &str) -> Option<String> {
    let socket = ssh::engine_socket(host.trim_end_matches('/'))
        .await
        .ok()??;
    let text = std::fs::read_to_string(version_file(&socket)).ok()?;
    let (version, made) = text.trim().split_once(' ')?;
    (made == identity(&socket)?).then(|| version.to_string())
}

/// Records the API version the engine of `host` answered, for the next process over the same
/// master. Best effort: a process that cannot write it asks the engine again.
pub(super) async fn remember_api_version(host: &str, version: &str) {
    if let Ok(Some(socket)) = ssh::engine_socket(host.trim_end_matches('/')).await {
        remember_version_at(&socket, version);
    }
}

/// `remember_api_version` for the forwarded socket `socket`.
fn remember_version_at(socket: &Path, version: &str) {
    if let Some(made) = identity(socket) {
        let line = format!("{version} {made}\n");
        let _ = crate::host::output::write_atomic(&version_file(socket), line.as_bytes(), true);
    }
}

/// The `Api-Version` the engine at the forwarded socket `local` answers to `HEAD /_ping`, on a
/// connection of its own (the pool is not used before the forward is confirmed).
async fn ping_version(local: &Path) -> Option<String> {
    let stream = tokio::net::UnixStream::connect(local).await.ok()?;
    let ping = super::raw::ping_api_version_over(TokioIo::new(stream));
    tokio::time::timeout(std::time::Duration::from_secs(30), ping)
        .await
        .ok()?
        .ok()
}

/// Where the version is kept: beside the forwarded socket, in the master's private folder.
fn version_file(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_os_string();
    name.push(".api");
    PathBuf::from(name)
}

/// Which forwarded socket this is: a master started again makes a new one.
fn identity(socket: &Path) -> Option<String> {
    let m = std::fs::metadata(socket).ok()?;
    Some(format!("{}.{}.{}", m.ino(), m.ctime(), m.ctime_nsec()))
}
