//! The Docker API over SSH, over ONE master connection per host, shared with `ssh::connect`
//! and with later wsm processes (`ssh::mux`): each HTTP connection is a new channel of that
//! master, not a new SSH handshake. The remote engine's unix socket is forwarded to a local one
//! (`ssh::engine_socket`), so a connection starts no process on either side; where that cannot
//! be done, each connection runs `docker system dial-stdio` on the remote host, as the Docker
//! CLI does. hyper's pool keeps the connections alive between requests, and the client is cached
//! per host for the whole process (`docker::connect`). The port of `ssh://user@host:port` is
//! honoured and ssh's own error reaches the user.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::{BollardRequest, ClientVersion, Docker};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssh::{ChildStdin, ChildStdout, Session, Stdio};

use crate::host::{error_chain, ssh};

/// Opens (or reuses) the master connection to the host of `ssh://…` and returns a client that
/// speaks the Engine API through it.
pub async fn connect(host: &str, timeout: u64, version: &ClientVersion) -> Result<Docker, String> {
    let target = host.trim_end_matches('/');
    ssh::engine_socket(target).await?;
    let client = Client::builder(TokioExecutor::new()).build(Dial {
        target: target.to_string(),
    });
    let name = target.to_string();
    let transport = move |req: BollardRequest| {
        let client = client.clone();
        let name = name.clone();
        async move {
            // Which engine and what happened, in one line: the engine restarting, or the link
            // to its host cut, reads "lost the connection to the Docker engine at ssh://…".
            client
                .request(req)
                .await
                .map_err(|e| bollard::errors::Error::IOError {
                    err: std::io::Error::other(format!(
                        "lost the connection to the Docker engine at {name}: {}",
                        error_chain(&e)
                    )),
                })
        }
    };
    Docker::connect_with_custom_transport(transport, Some(target), timeout, version)
        .map_err(|e| e.to_string())
}

/// One raw connection to the engine of `ssh://…` (for `raw`), over the shared master.
pub(super) async fn dial(
    host: &str,
) -> Result<impl hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static, String> {
    let target = host.trim_end_matches('/');
    tower_service::Service::call(
        &mut Dial {
            target: target.to_string(),
        },
        Uri::from_static("http://docker"),
    )
    .await
    .map_err(|e| format!("cannot reach the Docker engine at {target}: {e}"))
}

/// Connects hyper to the engine: through the forwarded socket when there is one, else each
/// connection runs `docker system dial-stdio` on the host. The master is looked up for each
/// new connection, so that one that ended (idle past its persist time) is replaced.
#[derive(Clone)]
struct Dial {
    target: String,
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
        Box::pin(async move {
            if let Some(path) = ssh::engine_socket(&target)
                .await
                .map_err(std::io::Error::other)?
            {
                // The master ended (its link cut, killed): the forward is gone with it.
                let stream = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
                    std::io::Error::other(format!("the SSH master's forwarded socket: {e}"))
                })?;
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
