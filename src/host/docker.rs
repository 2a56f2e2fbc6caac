//! `docker::` — the Docker Engine API through bollard. A script connects once
//! (`let e = docker::connect(host)`) and calls methods on the engine handle; results are plain
//! maps in the Engine API's own shape (`Spec`, `Status`, `DesiredState`, …).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{NetworkCreateRequest, ServiceSpec};
use bollard::query_parameters::{
    ListNetworksOptions, ListNodesOptions, ListServicesOptions, ListTasksOptions,
    ListVolumesOptions, RemoveVolumeOptions, UpdateServiceOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use rhai::{Array, Dynamic, Engine, Map, Module};
use serde_json::Value;

use super::compose::{self, NAMESPACE_LABEL};
use super::{script_err, to_dynamic, to_json, Host, ScriptResult};

/// A connection to one Docker engine, with the API version negotiated on connect.
#[derive(Clone)]
pub struct EngineHandle {
    pub docker: Docker,
    pub host: String,
    pub api_version: String,
}

fn derr(e: bollard::errors::Error) -> Box<rhai::EvalAltResult> {
    script_err(docker_message(&e))
}

/// The engine's own message for an API error, without bollard's wrapping.
fn docker_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The address wsm talks to when no host is given: `DOCKER_HOST`, else the local socket.
pub fn default_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Connects to `host` ("" for the default), negotiating the API version.
pub async fn connect(host: &str) -> Result<EngineHandle, String> {
    let host = if host.is_empty() {
        default_host()
    } else {
        host.to_string()
    };
    let timeout = 120;
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, timeout, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with("ssh://") {
        Docker::connect_with_ssh(&host, timeout, bollard::API_DEFAULT_VERSION, None)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(&host, timeout, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(format!(
            "unsupported DOCKER_HOST {host:?}: use unix://, ssh:// or tcp://"
        ));
    }
    .map_err(|e| format!("cannot connect to the Docker engine at {host}: {e}"))?;
    let docker = tokio::time::timeout(Duration::from_secs(30), docker.negotiate_version())
        .await
        .map_err(|_| format!("the Docker engine at {host} did not answer within 30 s"))?
        .map_err(|e| {
            format!(
                "cannot reach the Docker engine at {host}: {} (is it running?)",
                docker_message(&e)
            )
        })?;
    let v = docker.client_version();
    Ok(EngineHandle {
        docker,
        host,
        api_version: format!("{}.{}", v.major_version, v.minor_version),
    })
}

/// Builds an Engine API filter from a script map: values are a string or an array of strings.
fn filters(map: &Map) -> HashMap<String, Vec<String>> {
    map.iter()
        .map(|(k, v)| {
            let vals = if v.is_array() {
                v.clone()
                    .into_array()
                    .unwrap_or_default()
                    .iter()
                    .map(|x| x.to_string())
                    .collect()
            } else {
                vec![v.to_string()]
            };
            (k.to_string(), vals)
        })
        .collect()
}

fn stack_filter(stack: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{NAMESPACE_LABEL}={stack}")],
    )])
}

async fn list_services(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    let list = d
        .list_services(Some(ListServicesOptions {
            filters: Some(f),
            ..Default::default()
        }))
        .await
        .map_err(derr)?;
    list.iter()
        .map(|s| serde_json::to_value(s).map_err(script_err))
        .collect()
}

async fn list_tasks(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    let list = d
        .list_tasks(Some(ListTasksOptions { filters: Some(f) }))
        .await
        .map_err(derr)?;
    list.iter()
        .map(|s| serde_json::to_value(s).map_err(script_err))
        .collect()
}

async fn list_nodes(d: &Docker) -> ScriptResult<Vec<Value>> {
    let list = d.list_nodes(None::<ListNodesOptions>).await.map_err(derr)?;
    list.iter()
        .map(|s| serde_json::to_value(s).map_err(script_err))
        .collect()
}

async fn list_volumes(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    let list = d
        .list_volumes(Some(ListVolumesOptions { filters: Some(f) }))
        .await
        .map_err(derr)?;
    list.volumes
        .unwrap_or_default()
        .iter()
        .map(|s| serde_json::to_value(s).map_err(script_err))
        .collect()
}

async fn list_networks(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    let list = d
        .list_networks(Some(ListNetworksOptions { filters: Some(f) }))
        .await
        .map_err(derr)?;
    list.iter()
        .map(|s| serde_json::to_value(s).map_err(script_err))
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// The number of tasks a service wants: its replicas, or one per ready node when global.
fn desired_count(svc: &Value, ready_nodes: usize) -> usize {
    let mode = &svc["Spec"]["Mode"];
    if mode.get("Global").is_some() {
        ready_nodes
    } else {
        mode["Replicated"]["Replicas"].as_u64().unwrap_or(1) as usize
    }
}

/// Whether a service's tasks are one-shot: a completed task is then done, not missing.
fn is_one_shot(svc: &Value) -> bool {
    matches!(
        str_at(svc, &["Spec", "TaskTemplate", "RestartPolicy", "Condition"]),
        "none" | "on-failure"
    )
}

/// How far one service has got, for the progress display and the verdict.
struct Progress {
    running: usize,
    desired: usize,
    failure: Option<String>,
}

/// Reads where every service of `stack` stands. `known` holds task ids that existed before
/// the operation began, whose failures are history, not news.
async fn stack_progress(
    d: &Docker,
    stack: &str,
    known: &HashSet<String>,
) -> ScriptResult<BTreeMap<String, Progress>> {
    let (services, tasks, nodes) = tokio::try_join!(
        list_services(d, stack_filter(stack)),
        list_tasks(d, stack_filter(stack)),
        list_nodes(d)
    )?;
    let ready = nodes
        .iter()
        .filter(|n| str_at(n, &["Status", "State"]) == "ready")
        .count();
    let mut out = BTreeMap::new();
    for svc in &services {
        let id = str_at(svc, &["ID"]);
        let name = str_at(svc, &["Spec", "Name"]).to_string();
        let mine: Vec<&Value> = tasks
            .iter()
            .filter(|t| str_at(t, &["ServiceID"]) == id)
            .collect();
        let one_shot = is_one_shot(svc);
        let running = mine
            .iter()
            .filter(|t| {
                let state = str_at(t, &["Status", "State"]);
                str_at(t, &["DesiredState"]) == "running" && state == "running"
                    || one_shot && state == "complete"
            })
            .count();
        let failed: Vec<&&Value> = mine
            .iter()
            .filter(|t| !known.contains(str_at(t, &["ID"])))
            .filter(|t| matches!(str_at(t, &["Status", "State"]), "rejected" | "failed"))
            .collect();
        let failure = if failed.len() >= 3 || (one_shot && !failed.is_empty()) {
            let t = failed[0];
            let err = str_at(t, &["Status", "Err"]);
            Some(format!(
                "service {name}: {} task(s) {}: {}",
                failed.len(),
                str_at(t, &["Status", "State"]),
                if err.is_empty() {
                    str_at(t, &["Status", "Message"])
                } else {
                    err
                }
            ))
        } else {
            None
        };
        out.insert(
            name,
            Progress {
                running,
                desired: desired_count(svc, ready),
                failure,
            },
        );
    }
    Ok(out)
}

/// Shows one progress line per service: redrawn in place on a terminal, printed on change
/// otherwise.
struct ProgressDisplay {
    bars: BTreeMap<String, indicatif::ProgressBar>,
    multi: indicatif::MultiProgress,
    last: BTreeMap<String, String>,
    tty: bool,
}

impl ProgressDisplay {
    fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = indicatif::MultiProgress::with_draw_target(if tty {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        });
        ProgressDisplay {
            bars: BTreeMap::new(),
            multi,
            last: BTreeMap::new(),
            tty,
        }
    }

    fn update(&mut self, name: &str, line: String) {
        if self.last.get(name) == Some(&line) {
            return;
        }
        self.last.insert(name.to_string(), line.clone());
        if self.tty {
            let bar = self.bars.entry(name.to_string()).or_insert_with(|| {
                let b = self.multi.add(indicatif::ProgressBar::new_spinner());
                b.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {prefix:30} {msg}")
                        .expect("static template"),
                );
                b.set_prefix(name.to_string());
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            bar.set_message(line);
        } else {
            eprintln!("{name}: {line}");
        }
    }

    fn finish(self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}

/// The ids of the stack's tasks now: their later failures are history, not news.
async fn task_ids(d: &Docker, stack: &str) -> ScriptResult<HashSet<String>> {
    Ok(list_tasks(d, stack_filter(stack))
        .await?
        .iter()
        .map(|t| str_at(t, &["ID"]).to_string())
        .collect())
}

/// Waits until every service of `stack` runs its desired tasks, failing with a task's error
/// when tasks keep being rejected or failing, and giving up at the deadline.
async fn converge(
    host: &Host,
    d: &Docker,
    stack: &str,
    known: &HashSet<String>,
    timeout: Duration,
) -> ScriptResult<()> {
    let deadline = Instant::now() + timeout;
    let mut display = ProgressDisplay::new();
    loop {
        let progress = stack_progress(d, stack, known).await?;
        let mut done = true;
        for (name, p) in &progress {
            let state = if p.running >= p.desired && p.running == p.desired {
                "converged"
            } else {
                done = false;
                "waiting"
            };
            display.update(
                name,
                format!("{}/{} running ({state})", p.running, p.desired),
            );
            if let Some(f) = &p.failure {
                display.finish();
                return Err(script_err(f));
            }
        }
        if done {
            display.finish();
            return Ok(());
        }
        if Instant::now() >= deadline {
            display.finish();
            let pending: Vec<String> = progress
                .iter()
                .filter(|(_, p)| p.running != p.desired)
                .map(|(n, p)| format!("{n} {}/{}", p.running, p.desired))
                .collect();
            return Err(script_err(format!(
                "stack {stack} did not converge within {} s: {}",
                timeout.as_secs(),
                pending.join(", ")
            )));
        }
        if host.is_interrupted() {
            display.finish();
            return Err(super::interrupted());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Pins each service's image to the digest its registry holds now (`name:tag@sha256:…`), as
/// `docker stack deploy` does, so every node runs the same image and `update` notices a new
/// push. An image the registry cannot tell about keeps its tag (shown with `-v`).
async fn pin_image_digests(
    host: &Host,
    d: &Docker,
    mut specs: BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let images: std::collections::BTreeSet<String> = specs
        .values()
        .filter_map(|s| {
            s.pointer("/TaskTemplate/ContainerSpec/Image")
                .and_then(Value::as_str)
        })
        .filter(|i| !i.contains('@'))
        .map(str::to_string)
        .collect();
    let lookups = images.iter().map(|image| async move {
        let creds = registry_credentials(&registry_of(image));
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            d.inspect_registry_image(image, creds),
        )
        .await;
        let digest = match found {
            Ok(Ok(info)) => info.descriptor.digest,
            Ok(Err(e)) => {
                if host.opts.verbose {
                    host.warn(&format!(
                        "{image}: no digest from its registry ({}); deploying the tag",
                        docker_message(&e)
                    ));
                }
                None
            }
            Err(_) => None,
        };
        (image.clone(), digest)
    });
    let digests: HashMap<String, Option<String>> = futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .collect();
    for spec in specs.values_mut() {
        if let Some(Value::String(image)) = spec.pointer_mut("/TaskTemplate/ContainerSpec/Image") {
            if let Some(Some(digest)) = digests.get(image.as_str()) {
                *image = format!("{image}@{digest}");
            }
        }
    }
    specs
}

/// Creates the stack's networks and services from a compose document, updates the ones that
/// exist, removes services the document no longer has when `prune`.
async fn deploy(
    host: &Host,
    d: &Docker,
    stack: &str,
    doc: &Value,
    prune: bool,
) -> ScriptResult<Vec<String>> {
    let (specs, warnings) = compose::translate(doc, stack).map_err(script_err)?;
    if host.opts.verbose {
        for w in warnings {
            host.warn(&w);
        }
    }
    let networks = compose::stack_networks(doc, stack).map_err(script_err)?;
    let existing_nets = list_networks(d, stack_filter(stack)).await?;
    for (name, spec) in networks {
        if existing_nets.iter().any(|n| str_at(n, &["Name"]) == name) {
            continue;
        }
        host.say(&format!("Creating network {name}"));
        let req: NetworkCreateRequest = serde_json::from_value(spec).map_err(script_err)?;
        d.create_network(req).await.map_err(derr)?;
    }
    let specs = pin_image_digests(host, d, specs).await;
    let existing = list_services(d, stack_filter(stack)).await?;
    let mut names = Vec::new();
    for (short, spec) in specs {
        let full = format!("{stack}_{short}");
        let typed: ServiceSpec = serde_json::from_value(spec).map_err(script_err)?;
        match existing
            .iter()
            .find(|s| str_at(s, &["Spec", "Name"]) == full)
        {
            Some(svc) => {
                let id = str_at(svc, &["ID"]);
                host.say(&format!("Updating service {full} (id: {id})"));
                let version = svc["Version"]["Index"].as_i64().unwrap_or(0) as i32;
                d.update_service(
                    id,
                    typed,
                    UpdateServiceOptions {
                        version,
                        ..Default::default()
                    },
                    None,
                )
                .await
                .map_err(|e| script_err(format!("updating {full}: {}", docker_message(&e))))?;
            }
            None => {
                host.say(&format!("Creating service {full}"));
                d.create_service(typed, None)
                    .await
                    .map_err(|e| script_err(format!("creating {full}: {}", docker_message(&e))))?;
            }
        }
        names.push(full);
    }
    if prune {
        for svc in &existing {
            let name = str_at(svc, &["Spec", "Name"]);
            if !names.iter().any(|n| n == name) {
                host.say(&format!("Removing service {name}"));
                d.delete_service(str_at(svc, &["ID"])).await.map_err(derr)?;
            }
        }
    }
    Ok(names)
}

/// Removes a stack's services, waits until their tasks are gone, then removes its networks.
async fn remove_stack(
    host: &Host,
    d: &Docker,
    stack: &str,
    timeout: Duration,
) -> ScriptResult<bool> {
    let deadline = Instant::now() + timeout;
    let services = list_services(d, stack_filter(stack)).await?;
    let networks = list_networks(d, stack_filter(stack)).await?;
    if services.is_empty() && networks.is_empty() {
        host.say(&format!("Nothing found in stack: {stack}"));
        return Ok(false);
    }
    for svc in &services {
        host.say(&format!(
            "Removing service {}",
            str_at(svc, &["Spec", "Name"])
        ));
        match d.delete_service(str_at(svc, &["ID"])).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(derr(e)),
        }
    }
    let mut display = ProgressDisplay::new();
    loop {
        // Tasks leave the swarm's store first; their containers (which hold the volumes) go
        // a moment later. Wait for both, on this engine.
        let tasks = list_tasks(d, stack_filter(stack)).await?;
        let containers = d
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                filters: Some(stack_filter(stack)),
                ..Default::default()
            }))
            .await
            .map_err(derr)?;
        display.update(
            stack,
            format!(
                "{} task(s), {} container(s) shutting down",
                tasks.len(),
                containers.len()
            ),
        );
        if tasks.is_empty() && containers.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            display.finish();
            return Err(script_err(format!(
                "{} task(s) and {} container(s) of stack {stack} were still shutting down after {} s",
                tasks.len(),
                containers.len(),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for net in &networks {
        let name = str_at(net, &["Name"]);
        host.say(&format!("Removing network {name}"));
        // The network frees only once the last container has left it.
        loop {
            match d.remove_network(str_at(net, &["Id"])).await {
                Ok(()) => break,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => break,
                Err(e) if Instant::now() < deadline => {
                    display.update(
                        stack,
                        format!("waiting for network {name}: {}", docker_message(&e)),
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    display.finish();
                    return Err(script_err(format!(
                        "removing network {name}: {}",
                        docker_message(&e)
                    )));
                }
            }
        }
    }
    display.finish();
    Ok(true)
}

/// Runs a command in a container: (exit code, stdout, stderr).
pub async fn exec_collect(
    d: &Docker,
    container: &str,
    cmd: Vec<String>,
) -> ScriptResult<(i64, String, String)> {
    let m = exec(d, container, cmd, None).await?;
    let get = |k: &str| m.get(k).map(|v| v.to_string()).unwrap_or_default();
    Ok((
        m.get("exit_code")
            .and_then(|v| v.as_int().ok())
            .unwrap_or(-1),
        get("stdout"),
        get("stderr"),
    ))
}

/// Runs a command in a container and collects its output and exit code.
async fn exec(
    d: &Docker,
    container: &str,
    cmd: Vec<String>,
    stdin: Option<String>,
) -> ScriptResult<Map> {
    use tokio::io::AsyncWriteExt;
    let created = d
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd),
                ..Default::default()
            },
        )
        .await
        .map_err(derr)?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let StartExecResults::Attached {
        mut output,
        mut input,
    } = d.start_exec(&created.id, None).await.map_err(derr)?
    {
        if let Some(data) = stdin {
            input.write_all(data.as_bytes()).await.map_err(script_err)?;
            input.shutdown().await.map_err(script_err)?;
        }
        while let Some(chunk) = output.next().await {
            match chunk.map_err(derr)? {
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.extend_from_slice(&message)
                }
                other => stdout.extend_from_slice(&other.into_bytes()),
            }
        }
    }
    let inspect = d.inspect_exec(&created.id).await.map_err(derr)?;
    let mut m = Map::new();
    m.insert(
        "exit_code".into(),
        Dynamic::from(inspect.exit_code.unwrap_or(-1)),
    );
    m.insert(
        "stdout".into(),
        String::from_utf8_lossy(&stdout).into_owned().into(),
    );
    m.insert(
        "stderr".into(),
        String::from_utf8_lossy(&stderr).into_owned().into(),
    );
    Ok(m)
}

/// Streams a container's logs to stdout and stderr until they end (or Ctrl-C with follow).
async fn logs(
    d: &Docker,
    container: &str,
    follow: bool,
    tail: String,
    since: i32,
) -> ScriptResult<()> {
    use bollard::query_parameters::LogsOptions;
    use std::io::Write;
    let mut stream = d.logs(
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
    while let Some(chunk) = stream.next().await {
        match chunk.map_err(derr)? {
            bollard::container::LogOutput::StdErr { message } => {
                std::io::stderr().write_all(&message).map_err(script_err)?;
            }
            other => {
                let mut out = std::io::stdout();
                out.write_all(&other.into_bytes()).map_err(script_err)?;
                out.flush().map_err(script_err)?;
            }
        }
    }
    Ok(())
}

/// Copies this process's stdin into a container stream. Reading a terminal blocks, so a plain
/// thread reads; the runtime does not wait for it at exit. At end of input the returned
/// receiver fires; the stream is then shut down (an exec's stdin closes), or, with `keep_open`,
/// left open, because closing an attach stream would close the container's own stdin.
fn pump_stdin(
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    keep_open: bool,
) -> tokio::sync::oneshot::Receiver<()> {
    use std::io::Read;
    use tokio::io::AsyncWriteExt;
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

/// Writes a container stream's output to stdout/stderr until it ends.
async fn drain_output(
    mut output: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
) -> ScriptResult<()> {
    use std::io::Write;
    while let Some(chunk) = output.next().await {
        match chunk.map_err(derr)? {
            bollard::container::LogOutput::StdErr { message } => {
                let mut err = std::io::stderr();
                err.write_all(&message).map_err(script_err)?;
                err.flush().ok();
            }
            other => {
                let mut out = std::io::stdout();
                out.write_all(&other.into_bytes()).map_err(script_err)?;
                out.flush().ok();
            }
        }
    }
    Ok(())
}

/// Runs a command in a container with this process's stdin, stdout and stderr (and a TTY
/// when asked, sized like ours); returns its exit code.
async fn exec_interactive(
    d: &Docker,
    container: &str,
    cmd: Vec<String>,
    tty: bool,
) -> ScriptResult<i64> {
    let created = d
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                cmd: Some(cmd),
                ..Default::default()
            },
        )
        .await
        .map_err(derr)?;
    let started = d
        .start_exec(
            &created.id,
            Some(bollard::exec::StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(derr)?;
    if let StartExecResults::Attached { output, input } = started {
        let _raw = if tty {
            Some(super::term::RawMode::enable())
        } else {
            None
        };
        if tty {
            if let Some((w, h)) = super::term::size() {
                let _ = d
                    .resize_exec(
                        &created.id,
                        bollard::exec::ResizeExecOptions {
                            width: w,
                            height: h,
                        },
                    )
                    .await;
            }
            let (d2, id) = (d.clone(), created.id.clone());
            tokio::spawn(async move {
                let Ok(mut winch) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                else {
                    return;
                };
                while winch.recv().await.is_some() {
                    if let Some((w, h)) = super::term::size() {
                        let _ = d2
                            .resize_exec(
                                &id,
                                bollard::exec::ResizeExecOptions {
                                    width: w,
                                    height: h,
                                },
                            )
                            .await;
                    }
                }
            });
        }
        let _eof = pump_stdin(input, false);
        drain_output(output).await?;
    }
    let inspect = d.inspect_exec(&created.id).await.map_err(derr)?;
    Ok(inspect.exit_code.unwrap_or(-1))
}

/// Attaches to a container's console: our stdin to its stdin, its output to ours. Ctrl-P
/// Ctrl-Q detaches; so does the end of our input. Detaching never stops the container.
async fn attach(d: &Docker, container: &str) -> ScriptResult<()> {
    use bollard::query_parameters::AttachContainerOptions;
    let inspect = d.inspect_container(container, None).await.map_err(derr)?;
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
        .map_err(derr)?;
    let _raw = if tty {
        Some(super::term::RawMode::enable())
    } else {
        None
    };
    // End of our input detaches, after a moment for the answer to what was sent.
    let eof = pump_stdin(res.input, true);
    let output = drain_output(res.output);
    tokio::pin!(output);
    tokio::select! {
        r = &mut output => r?,
        _ = eof => {
            let _ = tokio::time::timeout(Duration::from_millis(1500), &mut output).await;
        }
    }
    Ok(())
}

/// The credentials `docker login` stored for a registry in `~/.docker/config.json`, if any.
fn registry_credentials(registry: &str) -> Option<bollard::auth::DockerCredentials> {
    let path = dirs::home_dir()?.join(".docker/config.json");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let auths = cfg.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k == registry || k.split('/').next() == Some(registry)
    })?;
    // `auth` is base64 of "user:password"; the engine wants them apart.
    use base64::Engine as _;
    let auth = entry.1.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(bollard::auth::DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    })
}

/// The registry part of an image name ("localhost:5000/x:y" → "localhost:5000"), or Docker Hub.
fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "https://index.docker.io/v1/".to_string(),
    }
}

/// Builds an image from a local context directory, streaming the build's output; a failed step
/// stops the build with its message.
async fn build(
    d: &Docker,
    context: &Path,
    tag: &str,
    args: HashMap<String, String>,
) -> ScriptResult<()> {
    use std::io::Write;
    let context = context.to_path_buf();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all(".", &context)?;
        b.into_inner()
    })
    .await
    .map_err(script_err)?
    .map_err(|e| script_err(format!("packing the build context: {e}")))?;
    let options = bollard::query_parameters::BuildImageOptions {
        t: Some(tag.to_string()),
        buildargs: Some(args),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = d.build_image(options, None, Some(bollard::body_full(tar.into())));
    while let Some(item) = stream.next().await {
        let info =
            item.map_err(|e| script_err(format!("building {tag}: {}", docker_message(&e))))?;
        if let Some(detail) = info.error_detail {
            return Err(script_err(format!(
                "building {tag}: {}",
                detail.message.unwrap_or_default().trim()
            )));
        }
        if let Some(text) = info.stream {
            let mut out = std::io::stderr();
            out.write_all(text.as_bytes()).ok();
            out.flush().ok();
        }
    }
    Ok(())
}

/// Pushes an image with the credentials of `~/.docker/config.json`, one line per layer event.
async fn push(d: &Docker, image: &str) -> ScriptResult<()> {
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    };
    let creds = registry_credentials(&registry_of(image));
    let mut stream = d.push_image(
        &name,
        Some(bollard::query_parameters::PushImageOptions {
            tag: Some(tag),
            ..Default::default()
        }),
        creds,
    );
    let mut last = String::new();
    while let Some(item) = stream.next().await {
        let info =
            item.map_err(|e| script_err(format!("pushing {image}: {}", docker_message(&e))))?;
        if let Some(detail) = info.error_detail {
            return Err(script_err(format!(
                "pushing {image}: {}",
                detail.message.unwrap_or_default()
            )));
        }
        if let Some(status) = info.status {
            if status != last && !status.starts_with("Pushing") {
                eprintln!("{image}: {status}");
                last = status;
            }
        }
    }
    Ok(())
}

fn to_array(values: Vec<Value>) -> ScriptResult<Array> {
    values.iter().map(to_dynamic).collect()
}

fn secs(map: &Map, key: &str, default: u64) -> Duration {
    Duration::from_secs(
        map.get(key)
            .and_then(|v| v.as_int().ok())
            .map(|v| v.max(1) as u64)
            .unwrap_or(default),
    )
}

/// Registers the `docker::` module and the methods of the `Engine` type.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<EngineHandle>("Engine");
    engine.register_get("host", |e: &mut EngineHandle| e.host.clone());
    engine.register_get("api_version", |e: &mut EngineHandle| e.api_version.clone());

    let mut m = Module::new();
    // docker::connect(host) — connect ("" = DOCKER_HOST or the local socket); cached per host.
    let h = host.clone();
    m.set_native_fn("connect", move |addr: &str| -> ScriptResult<EngineHandle> {
        let key = if addr.is_empty() {
            default_host()
        } else {
            addr.to_string()
        };
        if let Some(e) = h.engines.lock().expect("engine cache").get(&key) {
            return Ok(e.clone());
        }
        let e = h.block(async { connect(&key).await.map_err(script_err) })?;
        if h.opts.verbose {
            eprintln!(
                "docker: connected to {} (API version {})",
                e.host, e.api_version
            );
        }
        h.engines
            .lock()
            .expect("engine cache")
            .insert(key, e.clone());
        Ok(e)
    });
    // docker::exec_all(targets, cmd) — run one command in many containers at once; targets are
    // maps with `engine` and `container` (other keys are copied into each result).
    let h = host.clone();
    m.set_native_fn(
        "exec_all",
        move |targets: Array, cmd: Array| -> ScriptResult<Array> {
            let cmd: Vec<String> = cmd.iter().map(|c| c.to_string()).collect();
            let mut jobs = Vec::new();
            for t in targets {
                let t: Map = t
                    .try_cast()
                    .ok_or_else(|| script_err("exec_all takes maps with engine and container"))?;
                let engine = t
                    .get("engine")
                    .and_then(|e| e.clone().try_cast::<EngineHandle>())
                    .ok_or_else(|| script_err("exec_all: a target has no engine"))?;
                let container = t
                    .get("container")
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                jobs.push((t, engine, container));
            }
            let results = h.block(async {
                let futs = jobs
                    .iter()
                    .map(|(_, e, c)| exec(&e.docker, c, cmd.clone(), None));
                Ok(futures_util::future::join_all(futs).await)
            })?;
            let mut out = Array::new();
            for ((t, _, _), r) in jobs.into_iter().zip(results) {
                let mut m = r?;
                for (k, v) in t {
                    if k != "engine" {
                        m.entry(k).or_insert(v);
                    }
                }
                out.push(m.into());
            }
            Ok(out)
        },
    );
    // docker::default_host() — where `connect("")` goes.
    m.set_native_fn("default_host", || Ok(default_host()));
    engine.register_static_module("docker", m.into());

    // e.info() — the engine's system info (ServerVersion, Swarm.NodeAddr, …).
    let h = host.clone();
    engine.register_fn(
        "info",
        move |e: &mut EngineHandle| -> ScriptResult<Dynamic> {
            let info = h.block(async { e.docker.info().await.map_err(derr) })?;
            to_dynamic(&info)
        },
    );

    macro_rules! lister {
        ($name:literal, $f:ident) => {
            let h = host.clone();
            engine.register_fn(
                $name,
                move |e: &mut EngineHandle, f: Map| -> ScriptResult<Array> {
                    to_array(h.block($f(&e.docker, filters(&f)))?)
                },
            );
        };
    }
    // e.services(filters), e.tasks(filters), e.volumes(filters), e.networks(filters)
    lister!("services", list_services);
    lister!("tasks", list_tasks);
    lister!("volumes", list_volumes);
    lister!("networks", list_networks);

    // e.nodes() — the swarm's nodes.
    let h = host.clone();
    engine.register_fn(
        "nodes",
        move |e: &mut EngineHandle| -> ScriptResult<Array> {
            to_array(h.block(list_nodes(&e.docker))?)
        },
    );

    // e.stack_state(stack) — services, tasks, nodes, volumes and info of a stack, fetched at once.
    let h = host.clone();
    engine.register_fn(
        "stack_state",
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<Map> {
            let d = &e.docker;
            let (services, tasks, nodes, volumes, info) = h.block(async {
                tokio::try_join!(
                    list_services(d, stack_filter(stack)),
                    list_tasks(d, stack_filter(stack)),
                    list_nodes(d),
                    list_volumes(
                        d,
                        HashMap::from([("name".to_string(), vec![format!("{stack}_")])])
                    ),
                    async { d.info().await.map_err(derr) },
                )
            })?;
            let mut m = Map::new();
            m.insert("services".into(), to_array(services)?.into());
            m.insert("tasks".into(), to_array(tasks)?.into());
            m.insert("nodes".into(), to_array(nodes)?.into());
            m.insert("volumes".into(), to_array(volumes)?.into());
            m.insert("info".into(), to_dynamic(&info)?);
            Ok(m)
        },
    );

    // e.deploy(stack, compose_doc, opts) — create/update the stack's services; opts: prune (true),
    // wait (true), timeout (seconds, 300). Returns the service names.
    let h = host.clone();
    engine.register_fn(
        "deploy",
        move |e: &mut EngineHandle, stack: &str, doc: Dynamic, opts: Map| -> ScriptResult<Array> {
            let doc = to_json(&doc)?;
            let prune = opts
                .get("prune")
                .and_then(|v| v.as_bool().ok())
                .unwrap_or(true);
            let wait = opts
                .get("wait")
                .and_then(|v| v.as_bool().ok())
                .unwrap_or(true);
            let timeout = secs(&opts, "timeout", 300);
            let d = &e.docker;
            let names = h.block(async {
                let known = task_ids(d, stack).await?;
                let names = deploy(&h, d, stack, &doc, prune).await?;
                if wait {
                    converge(&h, d, stack, &known, timeout).await?;
                }
                Ok(names)
            })?;
            Ok(names.into_iter().map(Dynamic::from).collect())
        },
    );

    // e.wait_converged(stack, timeout_secs) — wait until every service runs its desired tasks.
    let h = host.clone();
    engine.register_fn(
        "wait_converged",
        move |e: &mut EngineHandle, stack: &str, timeout: i64| -> ScriptResult<()> {
            let d = &e.docker;
            h.block(async {
                let known = task_ids(d, stack).await?;
                converge(
                    &h,
                    d,
                    stack,
                    &known,
                    Duration::from_secs(timeout.max(1) as u64),
                )
                .await
            })
        },
    );

    // e.scale(service, replicas) — set a replicated service's replica count.
    let h = host.clone();
    engine.register_fn(
        "scale",
        move |e: &mut EngineHandle, service: &str, replicas: i64| -> ScriptResult<()> {
            let d = &e.docker;
            h.block(async {
                let svc = d.inspect_service(service, None).await.map_err(derr)?;
                let mut spec = svc.spec.ok_or_else(|| script_err("service without spec"))?;
                spec.mode = Some(bollard::models::ServiceSpecMode {
                    replicated: Some(bollard::models::ServiceSpecModeReplicated {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                });
                let version = svc.version.and_then(|v| v.index).unwrap_or(0) as i32;
                d.update_service(
                    service,
                    spec,
                    UpdateServiceOptions {
                        version,
                        ..Default::default()
                    },
                    None,
                )
                .await
                .map_err(derr)?;
                Ok(())
            })
        },
    );

    // e.remove_stack(stack, timeout_secs) — remove services, wait for their tasks, remove
    // networks. Returns false when the stack had nothing.
    let h = host.clone();
    engine.register_fn(
        "remove_stack",
        move |e: &mut EngineHandle, stack: &str, timeout: i64| -> ScriptResult<bool> {
            h.block(remove_stack(
                &h,
                &e.docker,
                stack,
                Duration::from_secs(timeout.max(1) as u64),
            ))
        },
    );

    // e.exec(container, cmd_array) / e.exec(container, cmd_array, stdin_text) — run a command,
    // returning #{exit_code, stdout, stderr}.
    let h = host.clone();
    engine.register_fn(
        "exec",
        move |e: &mut EngineHandle, container: &str, cmd: Array| -> ScriptResult<Map> {
            let cmd = cmd.iter().map(|c| c.to_string()).collect();
            h.block(exec(&e.docker, container, cmd, None))
        },
    );
    let h = host.clone();
    engine.register_fn(
        "exec",
        move |e: &mut EngineHandle,
              container: &str,
              cmd: Array,
              stdin: &str|
              -> ScriptResult<Map> {
            let cmd = cmd.iter().map(|c| c.to_string()).collect();
            h.block(exec(&e.docker, container, cmd, Some(stdin.to_string())))
        },
    );

    // e.logs(container, opts) — stream logs; opts: follow (false), tail ("all"), since (unix secs).
    let h = host.clone();
    engine.register_fn(
        "logs",
        move |e: &mut EngineHandle, container: &str, opts: Map| -> ScriptResult<()> {
            let follow = opts
                .get("follow")
                .and_then(|v| v.as_bool().ok())
                .unwrap_or(false);
            let tail = opts
                .get("tail")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "all".into());
            let since = opts.get("since").and_then(|v| v.as_int().ok()).unwrap_or(0) as i32;
            h.block(logs(&e.docker, container, follow, tail, since))
        },
    );

    // e.exec_interactive(container, cmd_array, tty) — run with our stdin/stdout; exit code.
    let h = host.clone();
    engine.register_fn(
        "exec_interactive",
        move |e: &mut EngineHandle, container: &str, cmd: Array, tty: bool| -> ScriptResult<i64> {
            let cmd = cmd.iter().map(|c| c.to_string()).collect();
            h.block(exec_interactive(&e.docker, container, cmd, tty))
        },
    );

    // e.attach(container) — the container's console until Ctrl-P Ctrl-Q or end of input.
    let h = host.clone();
    engine.register_fn(
        "attach",
        move |e: &mut EngineHandle, container: &str| -> ScriptResult<()> {
            h.block(attach(&e.docker, container))
        },
    );

    // e.build(context_dir, tag, build_args) — build an image from a local folder.
    let h = host.clone();
    engine.register_fn(
        "build",
        move |e: &mut EngineHandle, dir: &str, tag: &str, args: Map| -> ScriptResult<()> {
            let args = args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            h.block(build(&e.docker, Path::new(dir), tag, args))
        },
    );

    // e.push(image) — push to its registry with the credentials `docker login` stored.
    let h = host.clone();
    engine.register_fn(
        "push",
        move |e: &mut EngineHandle, image: &str| -> ScriptResult<()> {
            h.block(push(&e.docker, image))
        },
    );

    // e.image_digests(image) — the repo digests an image has (after a push or pull).
    let h = host.clone();
    engine.register_fn(
        "image_digests",
        move |e: &mut EngineHandle, image: &str| -> ScriptResult<Array> {
            let inspect = h.block(async { e.docker.inspect_image(image).await.map_err(derr) })?;
            Ok(inspect
                .repo_digests
                .unwrap_or_default()
                .into_iter()
                .map(Dynamic::from)
                .collect())
        },
    );

    // e.remove_volume(name) — remove a volume; true if it existed.
    let h = host.clone();
    engine.register_fn(
        "remove_volume",
        move |e: &mut EngineHandle, name: &str| -> ScriptResult<bool> {
            h.block(async {
                match e
                    .docker
                    .remove_volume(name, None::<RemoveVolumeOptions>)
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(false),
                    Err(err) => Err(script_err(format!(
                        "removing volume {name}: {}",
                        docker_message(&err)
                    ))),
                }
            })
        },
    );
}
