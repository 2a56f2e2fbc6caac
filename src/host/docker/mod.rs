//! `docker::` — the Docker Engine API through bollard. A script connects once
//! (`let e = docker::connect(host)`) and calls methods on the engine handle; results are plain
//! maps in the Engine API's own shape (`Spec`, `Status`, `DesiredState`, …).
//!
//! This file holds the connection, the listers and what every family shares (error messages,
//! "404 means absent", filters); the methods live by job in `stack` (with `converge`, the wait,
//! `verdict`, when it is done, and `objects`, secrets and configs), `container`, `image` and
//! `swarm`, each with its own `register`.

mod apply;
mod container;
pub mod context;
mod converge;
mod deploying;
pub(crate) mod diff;
mod drift;
mod failover;
pub mod fence;
mod freeze;
mod history;
mod hold;
mod image;
mod interrupted;
mod keys;
mod leftovers;
mod logs;
mod nodes;
mod objects;
mod order;
mod plan;
mod precheck;
mod raw;
mod reads;
mod record;
mod revisions;
mod rollback;
mod rotate;
mod service;
mod ssh_transport;
mod stack;
pub mod state_object;
pub mod store;
mod store_cleanup;
mod swarm;
pub mod tls;
mod updates;
mod verdict;

pub use container::exec_collect;
pub use store_cleanup::register_store_cleanup;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    ListNetworksOptions, ListNodesOptions, ListServicesOptions, ListTasksOptions,
    ListVolumesOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Module};
use serde_json::Value;

use super::{script_err, to_dynamic, Host, ScriptResult, NAMESPACE_LABEL};
use crate::host::doc::Prim;

/// A connection to one Docker engine, with the API version negotiated on connect.
#[derive(Clone)]
pub struct EngineHandle {
    pub docker: Docker,
    pub host: String,
    pub api_version: String,
    /// The TLS client of a `tcp://` engine reached with TLS (`tls`), for requests made past
    /// bollard (`raw`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The engine's own message for an API error, without bollard's wrapping; any other error as
/// bollard words it.
fn docker_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            message.trim().to_string()
        }
        other => other.to_string(),
    }
}

/// The HTTP status of an API error, None for any other error.
fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A script error carrying the engine's message.
fn engine_error(e: bollard::errors::Error) -> Box<EvalAltResult> {
    script_err(docker_message(&e))
}

/// A script error saying what was being done, then the engine's message.
fn failed(what: &str, e: bollard::errors::Error) -> Box<EvalAltResult> {
    script_err(format!("{what}: {}", docker_message(&e)))
}

/// Runs an engine call for which 404 means "not there": `None` then, where removing something
/// already gone is no failure.
async fn absent_on_404<T>(
    call: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<Option<T>, bollard::errors::Error> {
    match call.await {
        Ok(v) => Ok(Some(v)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A client of the engine at `host` speaking API `version`; nothing is sent yet.
async fn client(
    host: &str,
    version: &bollard::ClientVersion,
    tls: Option<&tls::Material>,
) -> Result<Docker, String> {
    let timeout = 120;
    if let (Some(m), true) = (tls, host.starts_with("tcp://")) {
        Docker::connect_with_ssl(host, &m.key, &m.cert, &m.ca, timeout, version)
    } else if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, timeout, version)
    } else if host.starts_with("ssh://") {
        return ssh_transport::connect(host, timeout, version)
            .await
            .map_err(|e| format!("cannot connect to the Docker engine at {host}: {e}"));
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, timeout, version)
    } else {
        return Err(format!(
            "unsupported DOCKER_HOST {host:?}: use unix://, ssh:// or tcp://"
        ));
    }
    .map_err(|e| format!("cannot connect to the Docker engine at {host}: {e}"))
}

/// Connects to `host` ("" for the default without `--context`), negotiating the API version
/// (`HEAD /_ping`); a `tcp://` host with TLS `material` (the context's, or the environment's).
/// Over SSH the version a process before this one learnt through the same master is taken
/// without asking, unless the engine `must_answer` now.
pub async fn connect(
    host: &str,
    material: Option<&tls::Material>,
    must_answer: bool,
) -> Result<EngineHandle, String> {
    let host = if host.is_empty() {
        context::default_endpoint(None)?.host
    } else {
        host.to_string()
    };
    let material = material.filter(|_| host.starts_with("tcp://"));
    let tls = material.map(tls::Material::client_config).transpose()?;
    // Said before the engine is asked: an unsupported address, a socket that is not there.
    let docker = client(&host, bollard::API_DEFAULT_VERSION, material).await?;
    // Over SSH, a later process through the same master knows the version without asking.
    let known = match host.starts_with("ssh://") && !must_answer {
        true => ssh_transport::known_api_version(&host).await,
        false => None,
    };
    let server = match known {
        Some(v) => v,
        None => {
            let ping = raw::ping_api_version(&host, tls.as_ref());
            let v = tokio::time::timeout(Duration::from_secs(30), ping)
                .await
                .map_err(|_| format!("the Docker engine at {host} did not answer within 30 s"))?
                .map_err(|e| {
                    format!("cannot reach the Docker engine at {host}: {e} (is it running?)")
                })?;
            if host.starts_with("ssh://") {
                ssh_transport::remember_api_version(&host, &v).await;
            }
            v
        }
    };
    // As bollard's negotiation: the engine's version when it is older than bollard's own.
    let docker = match parse_api_version(&server) {
        Some(v) if v < *bollard::API_DEFAULT_VERSION => client(&host, &v, material).await?,
        Some(_) => docker,
        None => {
            return Err(format!(
                "the Docker engine at {host} reports an API version wsm cannot read: {server:?}"
            ))
        }
    };
    let v = docker.client_version();
    Ok(EngineHandle {
        docker,
        host,
        api_version: format!("{}.{}", v.major_version, v.minor_version),
        tls,
    })
}

/// `docker::connect(addr)`: the cached engine at `addr` ("" for the default), else a new
/// connection, kept in the cache.
pub(super) fn connect_cached(h: &Host, addr: &str) -> ScriptResult<EngineHandle> {
    connect_checked(h, addr, false)
}

/// `connect_cached`; with `must_answer`, a new connection asks the engine `HEAD /_ping` even
/// when its API version is known (a failover must see a dead engine before choosing it).
pub(super) fn connect_checked(
    h: &Host,
    addr: &str,
    must_answer: bool,
) -> ScriptResult<EngineHandle> {
    let chosen = if addr.is_empty() {
        Some(context::default_endpoint(h.opts.context.as_deref()).map_err(super::usage_err)?)
    } else {
        None
    };
    let key = chosen
        .as_ref()
        .map_or(addr, |c| c.host.as_str())
        .to_string();
    if let Some(e) = h.engines.lock().expect("engine cache").get(&key) {
        return Ok(e.clone());
    }
    // The context's TLS material, else the environment's (DOCKER_TLS_VERIFY).
    let material = match &chosen {
        Some(c) => c.tls.clone(),
        None => tls::Material::from_env().map_err(super::usage_err)?,
    };
    if key.starts_with("tcp://") && material.is_none() && !tls::is_loopback(&key) {
        let text = format!("the Docker engine at {key} is reached without TLS: anyone on that network can read the traffic and act as root on the engine; set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or use ssh://");
        if h.first_time(&text) {
            h.warn(&text);
        }
    }
    let e = h.block(async {
        connect(&key, material.as_ref(), must_answer)
            .await
            .map_err(|e| match &chosen {
                Some(c) if c.context.is_some() => script_err(format!("{e} ({})", c.describe())),
                _ => script_err(e),
            })
    })?;
    if h.opts.verbose {
        let how = chosen
            .map(|c| format!(", {}", c.describe()))
            .unwrap_or_default();
        eprintln!(
            "docker: connected to {} (API version {}{how})",
            e.host, e.api_version
        );
    }
    h.engines
        .lock()
        .expect("engine cache")
        .insert(key, e.clone());
    Ok(e)
}

/// `1.41` as a bollard client version.
fn parse_api_version(v: &str) -> Option<bollard::ClientVersion> {
    let (major, minor) = v.trim().split_once('.')?;
    Some(bollard::ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
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

/// Sends `spec` as the new spec of the service `svc`, as it was read (its `ID`, and its
/// `Version.Index`, so a change made meanwhile is refused rather than overwritten); `rollback`
/// ("previous") and registry `creds` as `docker service update` sends them.
async fn update_service_at(
    d: &Docker,
    svc: &Value,
    spec: bollard::models::ServiceSpec,
    rollback: Option<&str>,
    creds: Option<bollard::auth::DockerCredentials>,
) -> Result<(), bollard::errors::Error> {
    let options = bollard::query_parameters::UpdateServiceOptions {
        version: svc["Version"]["Index"].as_i64().unwrap_or(0) as i32,
        rollback: rollback.map(str::to_string),
        ..Default::default()
    };
    d.update_service(str_at(svc, &["ID"]), spec, options, creds)
        .await
        .map(|_| ())
}

/// The filter that selects a stack's objects by their namespace label.
fn stack_filter(stack: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{NAMESPACE_LABEL}={stack}")],
    )])
}

/// The objects an engine call lists, as JSON values the Rust side reads with `str_at`.
async fn values<T: serde::Serialize>(
    call: impl Future<Output = Result<Vec<T>, bollard::errors::Error>>,
) -> ScriptResult<Vec<Value>> {
    let list = call.await.map_err(engine_error)?;
    list.iter()
        .map(|s| serde_json::to_value(s).map_err(script_err))
        .collect()
}

async fn list_services(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    let options = ListServicesOptions {
        filters: Some(f),
        ..Default::default()
    };
    values(d.list_services(Some(options))).await
}

async fn list_tasks(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    values(d.list_tasks(Some(ListTasksOptions { filters: Some(f) }))).await
}

async fn list_nodes(d: &Docker) -> ScriptResult<Vec<Value>> {
    values(d.list_nodes(None::<ListNodesOptions>)).await
}

async fn list_volumes(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    let options = ListVolumesOptions { filters: Some(f) };
    values(async {
        Ok(d.list_volumes(Some(options))
            .await?
            .volumes
            .unwrap_or_default())
    })
    .await
}

async fn list_networks(d: &Docker, f: HashMap<String, Vec<String>>) -> ScriptResult<Vec<Value>> {
    values(d.list_networks(Some(ListNetworksOptions { filters: Some(f) }))).await
}

/// The string at a path of keys in an Engine API object, "" when absent.
fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

fn to_array(values: Vec<Value>) -> ScriptResult<Array> {
    values.iter().map(to_dynamic).collect()
}

/// Adds the Docker family's undo actions to the `cleanup::` module: `cleanup::exec` and
/// `cleanup::freeze` (src/host/cleanup.rs knows no family).
pub fn register_cleanup(m: &mut Module, host: &Arc<Host>) {
    container::register_cleanup(m, host);
    freeze::register_cleanup(m, host);
    stack::register_cleanup(m, host);
    hold::register_cleanup(m, host);
}

/// Registers the `docker::` module and the methods of the `Engine` type, every family's.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<EngineHandle>("Engine");
    let prim = Prim::new("e.host -> string").doc("The address this engine was reached at.");
    prim.register(engine, |e: &mut EngineHandle| e.host.clone());
    let prim = Prim::new("e.api_version -> string")
        .doc("The Engine API version negotiated on connect, e.g. `1.47`.");
    prim.register(engine, |e: &mut EngineHandle| e.api_version.clone());

    let mut m = Module::new();
    let h = host.clone();
    let prim = Prim::new("docker::connect(host: string) -> Engine").doc(
        "Connects to the Docker engine at `host` (`unix://…`, `ssh://user@host`, `tcp://…`) and \
         negotiates the API version. \"\" means the default: the Docker context in use \
         (`--context`, `DOCKER_HOST`, `DOCKER_CONTEXT`, the current context of \
         `~/.docker/config.json`), else the local socket. Connections are cached per address; an \
         `ssh://` engine is reached through its host's shared SSH master (`ssh::connect`), over \
         the engine's socket forwarded through it, with one pool of connections per process; the \
         API version a process before learnt through the same master is kept beside it and not \
         asked again. Fails when the engine does not answer within 30 s or the address is not \
         supported. `docker::connect(hosts)` (an array: a swarm's \
         managers in the order to try) connects to the first that answers: one whose connection \
         is refused, whose host does not answer over SSH or whose `_ping` times out is passed \
         over (said with `-v`; with more than one address each is asked `_ping`), and later \
         calls with the same list in this process get the one that answered; it fails naming \
         each address and why when none answers.",
    );
    prim.set_in(&mut m, move |addr: &str| connect_cached(&h, addr));
    failover::register(&mut m, host);
    let h = host.clone();
    let prim = Prim::new("docker::default_host() -> string").doc(
        "The address `docker::connect(\"\")` goes to, resolved as the Docker CLI resolves it: \
         `--context`, then `DOCKER_HOST`, then `DOCKER_CONTEXT`, then the current context in \
         `~/.docker/config.json` (endpoint from `~/.docker/contexts/meta/<sha256 of \
         name>/meta.json`), else `unix:///var/run/docker.sock`. Fails when the named context does \
         not exist.",
    );
    prim.set_in(&mut m, move || -> ScriptResult<String> {
        let chosen = context::default_endpoint(h.opts.context.as_deref());
        Ok(chosen.map_err(super::usage_err)?.host)
    });
    container::register_static(&mut m, host);
    engine.register_static_module("docker", m.into());

    let h = host.clone();
    let prim = Prim::new("e.info() -> map").doc(
        "The engine's system info as `docker info` reads it (`ServerVersion`, `Swarm.NodeAddr`, \
         …).",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle| -> ScriptResult<Dynamic> {
            let info = h.block(async { e.docker.info().await.map_err(engine_error) })?;
            to_dynamic(&info)
        },
    );

    macro_rules! lister {
        ($sig:literal, $text:literal, $f:ident) => {
            let h = host.clone();
            let prim = Prim::new($sig).doc($text);
            prim.register(
                engine,
                move |e: &mut EngineHandle, f: Map| -> ScriptResult<Array> {
                    to_array(h.block($f(&e.docker, filters(&f)))?)
                },
            );
        };
    }
    lister!(
        "e.services(filters: map) -> array",
        "The swarm's services matching Engine API filters, e.g. \
         `#{label: \"com.docker.stack.namespace=demo\"}`; a filter's value is a string or an \
         array of strings.",
        list_services
    );
    lister!(
        "e.tasks(filters: map) -> array",
        "The swarm's tasks matching Engine API filters (`service`, `node`, `desired-state`, \
         `label`).",
        list_tasks
    );
    lister!(
        "e.volumes(filters: map) -> array",
        "The engine's volumes matching Engine API filters (`name`, `label`).",
        list_volumes
    );
    lister!(
        "e.networks(filters: map) -> array",
        "The engine's networks matching Engine API filters (`name`, `label`).",
        list_networks
    );

    let h = host.clone();
    let prim = Prim::new("e.nodes() -> array").doc(
        "The swarm's nodes, as `docker node inspect` shows them. Fails on an engine that is not a \
         swarm manager.",
    );
    prim.register(engine, move |e: &mut EngineHandle| -> ScriptResult<Array> {
        to_array(h.block(list_nodes(&e.docker))?)
    });

    reads::register(engine, host);

    let h = host.clone();
    let prim = Prim::new("e.remove_volume(name: string) -> bool")
        .doc("Removes a volume; false when there was none. Fails when a container uses it.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, name: &str| -> ScriptResult<bool> {
            h.block(async {
                absent_on_404(e.docker.remove_volume(name, None::<RemoveVolumeOptions>))
                    .await
                    .map(|removed| removed.is_some())
                    .map_err(|err| failed(&format!("removing volume {name}"), err))
            })
        },
    );

    stack::register(engine, host);
    deploying::register(engine, host);
    hold::register(engine, host);
    container::register(engine, host);
    logs::register(engine, host);
    image::register(engine, host);
    swarm::register(engine, host);
    nodes::register(engine, host);
    service::register(engine, host);
    store::register(engine, host);
    keys::register(engine, host);
    rollback::register(engine, host);
    history::register(engine, host);
    plan::register(engine, host);
    drift::register(engine, host);
    updates::register(engine, host);
    rotate::register(engine, host);
}
