//! Container I/O on an engine handle: run a command (collecting its output, in many containers
//! at once, or interactively with our terminal), signal many containers at once, stream logs,
//! attach to a console.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptions, ContainerArchiveInfoOptions, KillContainerOptions, LogsOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use rhai::{Array, Engine, Map, Module};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{docker_message, engine_error, status_of, EngineHandle};
use crate::host::bounded::{self, Capped};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::{opt_bool, opt_int, opt_secs, opt_str};
use crate::host::{script_err, term, Host, ScriptResult};

/// Which of a container's output streams a chunk came from.
#[derive(Clone, Copy)]
enum Channel {
    Stdout,
    Stderr,
}

/// What a command run in a container left behind.
struct ExecOutput {
    exit_code: i64,
    stdout: String,
    stderr: String,
}

impl ExecOutput {
    /// The script's view: `#{exit_code, stdout, stderr}`.
    fn into_map(self) -> Map {
        let mut m = Map::new();
        m.insert("exit_code".into(), self.exit_code.into());
        m.insert("stdout".into(), self.stdout.into());
        m.insert("stderr".into(), self.stderr.into());
        m
    }
}

/// Hands each chunk of a container's output to `write`, until the stream ends.
async fn drain(
    output: impl Stream<Item = Result<LogOutput, bollard::errors::Error>>,
    mut write: impl FnMut(Channel, &[u8]) -> std::io::Result<()>,
) -> ScriptResult<()> {
    let mut output = std::pin::pin!(output);
    while let Some(chunk) = output.next().await {
        match chunk.map_err(engine_error)? {
            LogOutput::StdErr { message } => write(Channel::Stderr, &message),
            other => write(Channel::Stdout, &other.into_bytes()),
        }
        .map_err(script_err)?;
    }
    Ok(())
}

/// Writes a chunk of container output to our own stdout or stderr, at once.
/// A closed stdout is an error here (the stream is abandoned) and stops the command.
fn to_terminal(channel: Channel, bytes: &[u8]) -> std::io::Result<()> {
    match channel {
        Channel::Stdout if !crate::host::stdio::write_stdout(bytes) => Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stdout is closed",
        )),
        Channel::Stdout => Ok(()),
        Channel::Stderr => {
            crate::host::stdio::write_stderr(bytes);
            Ok(())
        }
    }
}

/// Copies this process's stdin into a container stream. Reading a terminal blocks, so a plain
/// thread reads; the runtime does not wait for it at exit. At end of input the returned
/// receiver fires; the stream is then shut down (an exec's stdin closes), or, with `keep_open`,
/// left open, because closing an attach stream would close the container's own stdin.
fn pump_stdin(
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    keep_open: bool,
) -> tokio::sync::oneshot::Receiver<()> {
    use std::io::Read;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if input.write_all(&data).await.is_err() {
                break;
            }
            let _ = input.flush().await;
        }
        let _ = eof_tx.send(());
        if keep_open {
            std::future::pending::<()>().await;
        }
        let _ = input.shutdown().await;
    });
    eof_rx
}

/// Creates an exec of `cmd` in a container, with its output (and stdin, when asked) attached.
pub(super) async fn create_exec(
    d: &Docker,
    container: &str,
    cmd: Vec<String>,
    stdin: bool,
    tty: bool,
) -> ScriptResult<String> {
    let created = d
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(stdin),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                cmd: Some(cmd),
                ..Default::default()
            },
        )
        .await
        .map_err(engine_error)?;
    Ok(created.id)
}

/// An exec's exit code once it has ended, -1 when the engine does not know one.
pub(super) async fn exit_code(d: &Docker, exec_id: &str) -> ScriptResult<i64> {
    let inspect = d.inspect_exec(exec_id).await.map_err(engine_error)?;
    Ok(inspect.exit_code.unwrap_or(-1))
}

/// Runs a command in a container and collects its output and exit code; `stdin` is written
/// to the command's standard input, which is then closed.
async fn exec(
    d: &Docker,
    container: &str,
    cmd: Vec<String>,
    stdin: Option<String>,
) -> ScriptResult<ExecOutput> {
    let shown = bounded::shorten(&cmd.join(" "), 60);
    let id = create_exec(d, container, cmd, stdin.is_some(), false).await?;
    let mut stdout = Capped::new(bounded::COMMAND_OUTPUT);
    let mut stderr = Capped::new(bounded::COMMAND_OUTPUT);
    if let StartExecResults::Attached { output, mut input } =
        d.start_exec(&id, None).await.map_err(engine_error)?
    {
        if let Some(data) = stdin {
            input.write_all(data.as_bytes()).await.map_err(script_err)?;
            input.shutdown().await.map_err(script_err)?;
        }
        // Over the ceiling, the stream is dropped: the engine closes the command's output.
        drain(output, |channel, bytes| {
            let (buf, name) = match channel {
                Channel::Stdout => (&mut stdout, "output"),
                Channel::Stderr => (&mut stderr, "error output"),
            };
            buf.push(bytes).map_err(|_| {
                let what = format!("the {name} of `{shown}` in container {container}");
                std::io::Error::other(bounded::too_big(&what, bounded::COMMAND_OUTPUT))
            })
        })
        .await?;
    }
    Ok(ExecOutput {
        exit_code: exit_code(d, &id).await?,
        stdout: String::from_utf8_lossy(&stdout.into_bytes()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.into_bytes()).into_owned(),
    })
}

/// Runs a command in a container: (exit code, stdout, stderr).
pub async fn exec_collect(
    d: &Docker,
    container: &str,
    cmd: Vec<String>,
) -> ScriptResult<(i64, String, String)> {
    let out = exec(d, container, cmd, None).await?;
    Ok((out.exit_code, out.stdout, out.stderr))
}

/// Sizes an exec's TTY like our terminal, now and whenever ours is resized.
async fn follow_terminal_size(d: &Docker, exec_id: &str) {
    async fn resize(d: &Docker, exec_id: &str) {
        if let Some((width, height)) = term::size() {
            let _ = d
                .resize_exec(exec_id, ResizeExecOptions { width, height })
                .await;
        }
    }
    resize(d, exec_id).await;
    let (d, id) = (d.clone(), exec_id.to_string());
    tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            resize(&d, &id).await;
        }
    });
}

/// Runs a command in a container with this process's stdin, stdout and stderr (and a TTY
/// when asked, sized like ours); returns its exit code.
async fn exec_interactive(
    d: &Docker,
    container: &str,
    cmd: Vec<String>,
    tty: bool,
) -> ScriptResult<i64> {
    let id = create_exec(d, container, cmd, true, tty).await?;
    let started = d
        .start_exec(
            &id,
            Some(StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(engine_error)?;
    if let StartExecResults::Attached { output, input } = started {
        let _raw = tty.then(term::RawMode::enable);
        if tty {
            follow_terminal_size(d, &id).await;
        }
        let _eof = pump_stdin(input, false);
        drain(output, to_terminal).await?;
    }
    exit_code(d, &id).await
}

/// Attaches to a container's console: our stdin to its stdin, its output to ours. Ctrl-P
/// Ctrl-Q detaches; so does the end of our input. Detaching never stops the container.
async fn attach(d: &Docker, container: &str) -> ScriptResult<()> {
    let inspect = d
        .inspect_container(container, None)
        .await
        .map_err(engine_error)?;
    let tty = inspect.config.and_then(|c| c.tty).unwrap_or(false);
    let res = d
        .attach_container(
            container,
            Some(AttachContainerOptions {
                detach_keys: Some("ctrl-p,ctrl-q".into()),
                logs: false,
                stream: true,
                stdin: true,
                stdout: true,
                stderr: true,
            }),
        )
        .await
        .map_err(engine_error)?;
    let _raw = tty.then(term::RawMode::enable);
    // End of our input detaches, after a moment for the answer to what was sent.
    let eof = pump_stdin(res.input, true);
    let output = drain(res.output, to_terminal);
    tokio::pin!(output);
    tokio::select! {
        r = &mut output => r?,
        _ = eof => {
            let _ = tokio::time::timeout(Duration::from_millis(1500), &mut output).await;
        }
    }
    Ok(())
}

/// Streams a container's logs to stdout and stderr until they end (or Ctrl-C with follow).
async fn logs(
    d: &Docker,
    container: &str,
    follow: bool,
    tail: String,
    since: i32,
) -> ScriptResult<()> {
    let stream = d.logs(
        container,
        Some(LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            since,
            tail,
            ..Default::default()
        }),
    );
    drain(stream, to_terminal).await
}

/// What sending a signal to one container came to.
enum Signalled {
    /// The engine delivered the signal to the container's main process.
    Sent,
    /// The path the signal depended on does not exist there (or the container is gone).
    Missing,
    /// The engine refused, or did not answer in time: its message.
    Failed(String),
}

/// Sends `signal` to a container's main process through the engine (`POST
/// /containers/{id}/kill`), which starts no process in the container; with `if_exists`, only
/// after one stat (`HEAD /containers/{id}/archive`) found that path in the container.
async fn signal(d: &Docker, container: &str, signal: &str, if_exists: Option<&str>) -> Signalled {
    if let Some(path) = if_exists {
        let stat = ContainerArchiveInfoOptions {
            path: path.to_string(),
        };
        match d.get_container_archive_info(container, Some(stat)).await {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(404) => return Signalled::Missing,
            Err(e) => return Signalled::Failed(format!("stat {path}: {}", docker_message(&e))),
        }
    }
    let kill = KillContainerOptions {
        signal: signal.to_string(),
    };
    match d.kill_container(container, Some(kill)).await {
        Ok(()) => Signalled::Sent,
        Err(e) => Signalled::Failed(docker_message(&e)),
    }
}

/// A target of `exec_all` or `signal_all`: the script's map, its engine, its container.
type Target = (Map, EngineHandle, String);

/// Reads the targets a fan-out primitive was given: maps with `engine` and `container`.
fn targets(list: Array, primitive: &str) -> ScriptResult<Vec<Target>> {
    let mut out = Vec::new();
    for t in list {
        let t: Map = t.try_cast().ok_or_else(|| {
            script_err(format!("{primitive} takes maps with engine and container"))
        })?;
        let engine = t
            .get("engine")
            .and_then(|e| e.clone().try_cast::<EngineHandle>())
            .ok_or_else(|| script_err(format!("{primitive}: a target has no engine")))?;
        let container = t
            .get("container")
            .map(|c| c.to_string())
            .unwrap_or_default();
        out.push((t, engine, container));
    }
    Ok(out)
}

/// A fan-out result: `fields`, plus the target's own keys except its engine.
fn with_target_keys(mut fields: Map, target: Map) -> Map {
    for (k, v) in target {
        if k != "engine" {
            fields.entry(k).or_insert(v);
        }
    }
    fields
}

/// The command of a script's array, each element as its text.
fn command(cmd: &Array) -> Vec<String> {
    cmd.iter().map(|c| c.to_string()).collect()
}

/// `docker::signal_all`: signals every target at once, each with the same deadline.
fn signal_all(host: &Host, list: Array, sig: &str, opts: &Map) -> ScriptResult<Array> {
    let jobs = targets(list, "signal_all")?;
    let if_exists = opts.get("if_exists").map(|p| p.to_string());
    let timeout = opt_secs(opts, "timeout", 10);
    let results = host.block(async {
        let deadline = tokio::time::Instant::now() + timeout;
        let futs = jobs.iter().map(|(_, e, c)| async {
            let sent = signal(&e.docker, c, sig, if_exists.as_deref());
            tokio::time::timeout_at(deadline, sent)
                .await
                .unwrap_or_else(|_| {
                    Signalled::Failed(format!("no answer from the engine within {timeout:?}"))
                })
        });
        Ok(futures_util::future::join_all(futs).await)
    })?;
    let mut out = Array::new();
    for ((t, _, _), r) in jobs.into_iter().zip(results) {
        let (sent, missing, error) = match r {
            Signalled::Sent => (true, false, String::new()),
            Signalled::Missing => (false, true, String::new()),
            Signalled::Failed(message) => (false, false, message),
        };
        let mut m = Map::new();
        m.insert("sent".into(), sent.into());
        m.insert("missing".into(), missing.into());
        m.insert("error".into(), error.into());
        out.push(with_target_keys(m, t).into());
    }
    Ok(out)
}

/// `docker::signal_all`'s options.
const SIGNAL_ALL_OPTS: &[Opt] = &[
    (
        "if_exists",
        "a path in the container: the signal is sent only where that path exists, checked with \
         one stat first",
    ),
    ("timeout", "seconds for all of them, 10"),
];

/// `e.logs`'s options.
const LOGS_OPTS: &[Opt] = &[
    ("follow", "false; true: goes on until Ctrl-C"),
    ("tail", "\"all\", or how many of the last lines"),
    ("since", "unix seconds, 0"),
];

/// Registers the container functions of the `docker::` module.
pub(super) fn register_static(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("docker::exec_all(targets: array, cmd: array) -> array").doc(
        "Runs one command in many containers at once. Each target is a map with `engine` and \
         `container`; its other keys are copied into its result, which adds `exit_code`, `stdout` \
         and `stderr` (or `error`).",
    );
    prim.set_in(m, move |list: Array, cmd: Array| -> ScriptResult<Array> {
        let cmd = command(&cmd);
        let jobs = targets(list, "exec_all")?;
        let results = h.block(async {
            let futs = jobs
                .iter()
                .map(|(_, e, c)| exec(&e.docker, c, cmd.clone(), None));
            Ok(futures_util::future::join_all(futs).await)
        })?;
        let mut out = Array::new();
        for ((t, _, _), r) in jobs.into_iter().zip(results) {
            out.push(with_target_keys(r?.into_map(), t).into());
        }
        Ok(out)
    });

    let h = host.clone();
    let prim = Prim::new("docker::signal_all(targets: array, signal: string) -> array").doc(
        "Sends a signal (`\"HUP\"`, `\"SIGUSR1\"`, `\"15\"`) to the main process of many \
         containers at once, through the engine's kill endpoint: no process is started in them, \
         so it costs one request per container (two with `if_exists`). Each target is a map with \
         `engine` and `container`. Each result holds the target's other keys plus `sent` (true \
         when delivered), `missing` (true when `if_exists` was not there, or the container is \
         gone) and `error` (the engine's message, or the deadline; \"\" otherwise).",
    );
    prim.set_in(m, move |list: Array, sig: &str| -> ScriptResult<Array> {
        signal_all(&h, list, sig, &Map::new())
    });
    let h = host.clone();
    let prim = Prim::new("docker::signal_all(targets: array, signal: string, opts: map) -> array")
        .opts(SIGNAL_ALL_OPTS);
    prim.set_in(
        m,
        move |list: Array, sig: &str, opts: Map| -> ScriptResult<Array> {
            check_opts("docker::signal_all", &opts, SIGNAL_ALL_OPTS)?;
            signal_all(&h, list, sig, &opts)
        },
    );
}

/// Registers the container methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.exec(container: string, cmd: array) -> map").doc(
        "Runs a command in a container (optionally with text on its stdin) and returns \
         `#{exit_code, stdout, stderr}`. Fails when the container does not exist or is not \
         running, or when either output stream goes over 64 MiB (the error names the command).",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, container: &str, cmd: Array| -> ScriptResult<Map> {
            let out = h.block(exec(&e.docker, container, command(&cmd), None))?;
            Ok(out.into_map())
        },
    );
    let h = host.clone();
    let prim = Prim::new("e.exec(container: string, cmd: array, stdin: string) -> map");
    prim.register(
        engine,
        move |e: &mut EngineHandle,
              container: &str,
              cmd: Array,
              stdin: &str|
              -> ScriptResult<Map> {
            let stdin = Some(stdin.to_string());
            let out = h.block(exec(&e.docker, container, command(&cmd), stdin))?;
            Ok(out.into_map())
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.exec_interactive(container: string, cmd: array, tty: bool) -> int")
        .doc(
        "Runs a command in a container with this process's stdin and stdout (a TTY when `tty`); \
         returns its exit code.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, container: &str, cmd: Array, tty: bool| -> ScriptResult<i64> {
            h.block(exec_interactive(&e.docker, container, command(&cmd), tty))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.logs(container: string, opts: map)")
        .opts(LOGS_OPTS)
        .doc("Prints a container's logs.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, container: &str, opts: Map| -> ScriptResult<()> {
            check_opts("e.logs", &opts, LOGS_OPTS)?;
            let follow = opt_bool(&opts, "follow", false);
            let tail = opt_str(&opts, "tail", "all");
            let since = opt_int(&opts, "since", 0) as i32;
            h.block(logs(&e.docker, container, follow, tail, since))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.attach(container: string)")
        .doc("Attaches to the container's console until Ctrl-P Ctrl-Q or the end of piped input.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, container: &str| -> ScriptResult<()> {
            h.block(attach(&e.docker, container))
        },
    );
}

/// Adds `cleanup::exec` to the `cleanup::` module (src/host/cleanup.rs knows no family).
pub(super) fn register_cleanup(m: &mut Module, host: &Arc<Host>) {
    // cleanup::exec(engine, container, argv, what) — run argv in the container when the command
    // ends by error, Ctrl-C or SIGTERM (unless run or cancelled first); returns its id.
    let h = host.clone();
    let prim = Prim::new(
        "cleanup::exec(engine: Engine, container: string, argv: array, what: string) -> int",
    )
    .doc(
        "Registers an undo action: run `argv` in the container when the command ends by error, \
         Ctrl-C or SIGTERM, unless run or cancelled first. Returns its id.",
    );
    prim.set_in(
        m,
        move |e: EngineHandle, container: &str, argv: Array, what: &str| -> ScriptResult<i64> {
            let cmd: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            if cmd.is_empty() {
                return Err(script_err("cleanup::exec needs a command"));
            }
            let container = container.to_string();
            let action = crate::host::cleanup::Action::new(move || async move {
                exec_collect(&e.docker, &container, cmd)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            Ok(h.cleanups.add(what, action))
        },
    );
}
