//! `docker::` — the Docker Engine API through bollard. A script connects once
//! (`let e = docker::connect(host)`) and calls methods on the engine handle; results are plain
//! maps in the Engine API's own shape (`Spec`, `Status`, `DesiredState`, …).
//!
//! This file holds the connection, the listers and what every family shares (error messages,
//! "404 means absent", filters); the methods live by job in `stack` (with `converge`, the wait,
//! and `objects`, secrets and configs), `container`, `image` and `swarm`, each with its own
//! `register`.

mod container;
pub mod context;
mod converge;
mod diff;
mod freeze;
mod image;
mod objects;
mod plan;
mod raw;
mod revisions;
mod rollback;
mod service;
mod ssh_transport;
mod stack;
pub mod store;
mod swarm;

pub use container::{exec_collect, register_cleanup};

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

/// A connection to one Docker engine, with the API version negotiated on connect.
#[derive(Clone)]
pub struct EngineHandle {
    pub docker: Docker,
    pub host: String,
    pub api_version: String,
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

/// The address wsm talks to when no host is given, chosen as the Docker CLI chooses it
/// (`context`); the local socket when that cannot be told (connect then says why).
pub fn default_host() -> String {
    context::default_endpoint()
        .map(|e| e.host)
        .unwrap_or_else(|_| context::LOCAL_SOCKET.into())
}

/// A client of the engine at `host` speaking API `version`; nothing is sent yet.
async fn client(host: &str, version: &bollard::ClientVersion) -> Result<Docker, String> {
    let timeout = 120;
    if let Some(path) = host.strip_prefix("unix://") {
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

/// Connects to `host` ("" for the default), negotiating the API version (`HEAD /_ping`).
pub async fn connect(host: &str) -> Result<EngineHandle, String> {
    let host = if host.is_empty() {
        context::default_endpoint()?.host
    } else {
        host.to_string()
    };
    // Said before the engine is asked: an unsupported address, a socket that is not there.
    let docker = client(&host, bollard::API_DEFAULT_VERSION).await?;
    let server = tokio::time::timeout(Duration::from_secs(30), raw::ping_api_version(&host))
        .await
        .map_err(|_| format!("the Docker engine at {host} did not answer within 30 s"))?
        .map_err(|e| format!("cannot reach the Docker engine at {host}: {e} (is it running?)"))?;
    // As bollard's negotiation: the engine's version when it is older than bollard's own.
    let docker = match parse_api_version(&server) {
        Some(v) if v < *bollard::API_DEFAULT_VERSION => client(&host, &v).await?,
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
    })
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

/// A stack's services, tasks, nodes and volumes, and the engine's info when `with_info`, fetched
/// at once.
async fn stack_state(e: &EngineHandle, stack: &str, with_info: bool) -> ScriptResult<Map> {
    let d = &e.docker;
    let (services, tasks, nodes, volumes, info) = tokio::try_join!(
        list_services(d, stack_filter(stack)),
        list_tasks(d, stack_filter(stack)),
        list_nodes(d),
        list_volumes(
            d,
            HashMap::from([("name".to_string(), vec![format!("{stack}_")])])
        ),
        async {
            if with_info {
                d.info().await.map(Some).map_err(engine_error)
            } else {
                Ok(None)
            }
        },
    )?;
    let mut m = Map::new();
    m.insert("services".into(), to_array(services)?.into());
    m.insert("tasks".into(), to_array(tasks)?.into());
    m.insert("nodes".into(), to_array(nodes)?.into());
    m.insert("volumes".into(), to_array(volumes)?.into());
    let info = match info {
        Some(info) => to_dynamic(&info)?,
        None => Dynamic::UNIT,
    };
    m.insert("info".into(), info);
    Ok(m)
}

/// Registers the `docker::` module and the methods of the `Engine` type, every family's.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<EngineHandle>("Engine");
    engine.register_get("host", |e: &mut EngineHandle| e.host.clone());
    engine.register_get("api_version", |e: &mut EngineHandle| e.api_version.clone());

    let mut m = Module::new();
    // docker::connect(host) — connect ("" = the Docker CLI's choice: --context, DOCKER_HOST,
    // DOCKER_CONTEXT, the current context); cached per host.
    let h = host.clone();
    m.set_native_fn("connect", move |addr: &str| -> ScriptResult<EngineHandle> {
        let chosen = if addr.is_empty() {
            Some(context::default_endpoint().map_err(super::usage_err)?)
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
        let e = h.block(async {
            connect(&key).await.map_err(|e| match &chosen {
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
    });
    // docker::default_host() — where `connect("")` goes.
    m.set_native_fn("default_host", || -> ScriptResult<String> {
        Ok(context::default_endpoint().map_err(super::usage_err)?.host)
    });
    container::register_static(&mut m, host);
    engine.register_static_module("docker", m.into());

    // e.info() — the engine's system info (ServerVersion, Swarm.NodeAddr, …).
    let h = host.clone();
    engine.register_fn(
        "info",
        move |e: &mut EngineHandle| -> ScriptResult<Dynamic> {
            let info = h.block(async { e.docker.info().await.map_err(engine_error) })?;
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
            h.block(stack_state(e, stack, true))
        },
    );
    // e.stack_state(stack, opts) — the same; opts.info (true): false leaves `info` out (`()`),
    // the dearest of the requests to the engine (it runs programs to learn their versions).
    let h = host.clone();
    engine.register_fn(
        "stack_state",
        move |e: &mut EngineHandle, stack: &str, opts: Map| -> ScriptResult<Map> {
            let info = super::opts::opt_bool(&opts, "info", true);
            h.block(stack_state(e, stack, info))
        },
    );

    // e.remove_volume(name) — remove a volume; true if it existed.
    let h = host.clone();
    engine.register_fn(
        "remove_volume",
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
    container::register(engine, host);
    image::register(engine, host);
    swarm::register(engine, host);
    service::register(engine, host);
    store::register(engine, host);
    rollback::register(engine, host);
    plan::register(engine, host);
}
