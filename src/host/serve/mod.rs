//! `serve::` — the HTTP server of `wsm serve`: a read-only page, its JSON and `/metrics`.
//!
//! The host knows no stack: the script computes every document with the same stdlib functions
//! the read commands call and hands them over with `srv.publish` (pages: a template and its
//! data; `/api/…`: the data alone) and `srv.metrics`; the server only serves what it was last
//! given. The script's loop sleeps in `srv.wait`, woken by the ONE engine event stream this
//! server holds; a publish that changes a page tells that page's open browsers over
//! server-sent events (`/events?page=PATH`), which fetch it again. Requests never call into
//! Rhai, so the arrows still point down only.

mod hooks;
mod metrics;
mod web;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use rhai::{Array, Dynamic, Engine, Map, Module};
use serde_json::Value;
use tokio::sync::{broadcast, Notify};

use super::doc::{check_opts, Opt, Prim};
use super::docker::EngineHandle;
use super::{script_err, to_json, usage_err, Host, ScriptResult, NAMESPACE_LABEL};

/// One published document: its data and, for a page, its rendered HTML.
struct Doc {
    data: Value,
    html: Option<String>,
}

/// What the server serves and what it counts; shared by the script's handle and the requests.
pub(crate) struct State {
    docs: RwLock<HashMap<String, Arc<Doc>>>,
    metric_rows: RwLock<Vec<metrics::Row>>,
    templates: RwLock<minijinja::Environment<'static>>,
    /// The paths a publish changed, to the event streams of the browsers showing them.
    changed: broadcast::Sender<Arc<Vec<String>>>,
    /// The token a request must carry; None on loopback without one.
    token: Option<String>,
    /// Stacks named by engine events since the script last woke ("" for events of no stack).
    pending: Mutex<BTreeSet<String>>,
    /// Verified webhooks not yet handed to the script: (kind, name), each once however many
    /// arrived meanwhile.
    hooks: Mutex<BTreeSet<(String, String)>>,
    /// The folder of the webhooks' secrets, `wsm-hook-<kind>-<name>` each.
    hooks_dir: std::path::PathBuf,
    woken: Notify,
    /// How many event streams this server opened to the engine (1 unless it was cut).
    engine_streams: AtomicU64,
    /// Event streams of browsers open now.
    clients: AtomicU64,
}

/// The handle `serve::start` returns to the script.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
    addr: SocketAddr,
}

const START_OPTS: &[Opt] = &[
    (
        "listen",
        "\"127.0.0.1:8080\": the address; port 0 picks a free one",
    ),
    (
        "hooks_dir",
        "\"/run/secrets\": the folder of the webhooks' secrets (`wsm-hook-<kind>-<name>`)",
    ),
    (
        "token_file",
        "(): a file holding the token; else $WSM_SERVE_TOKEN; required off loopback",
    ),
];

/// The token from `token_file` or `$WSM_SERVE_TOKEN`, read here so it never passes through
/// a script, an argument or a log.
fn read_token(opts: &Map) -> ScriptResult<Option<String>> {
    let from_file = match opts.get("token_file") {
        Some(f) if !f.is_unit() => {
            let path = f.to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| usage_err(format!("cannot read the token file {path}: {e}")))?;
            Some(text)
        }
        _ => std::env::var("WSM_SERVE_TOKEN").ok(),
    };
    match from_file.map(|t| t.trim().to_string()) {
        Some(t) if t.len() < 16 => Err(usage_err("the serve token must be at least 16 characters")),
        other => Ok(other),
    }
}

/// Opens the one engine event stream and keeps it open (again after a cut), noting which
/// stacks each event concerns and waking the script's `wait`.
fn watch_engine(state: Arc<State>, engine: EngineHandle) {
    tokio::spawn(async move {
        loop {
            state.engine_streams.fetch_add(1, Ordering::SeqCst);
            let mut filters = HashMap::new();
            filters.insert(
                "type".to_string(),
                vec!["service".into(), "container".into(), "node".into()],
            );
            // What changes a page; not the exec events each health check makes.
            let moves = [
                "create", "update", "remove", "start", "die", "oom", "destroy",
            ];
            let mut events: Vec<String> = moves.iter().map(|e| e.to_string()).collect();
            events.push("health_status".into());
            filters.insert("event".to_string(), events);
            let mut events = engine.docker.events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }));
            while let Some(Ok(event)) = events.next().await {
                let attrs = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                let stack = attrs.get(NAMESPACE_LABEL).cloned().unwrap_or_default();
                state
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(stack);
                state.woken.notify_one();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

impl Server {
    /// Replaces the published documents; tells the browsers of each changed page.
    fn publish(&self, docs: Map) -> ScriptResult<()> {
        let mut next = HashMap::new();
        let env = self
            .state
            .templates
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for (path, doc) in docs {
            let doc = doc
                .read_lock::<Map>()
                .map(|m| m.clone())
                .ok_or_else(|| script_err(format!("srv.publish: {path}: not a map")))?;
            let mut data = to_json(doc.get("data").unwrap_or(&Dynamic::UNIT))?;
            super::secrets::mask_json(&mut data);
            let html = match doc.get("template") {
                Some(t) if !t.is_unit() => {
                    let name = t.to_string();
                    let tmpl = env.get_template(&name).map_err(|e| {
                        script_err(format!("srv.publish: {path}: {}", e.display_debug_info()))
                    })?;
                    let ctx = minijinja::context! { path => path.as_str(), data => data };
                    Some(
                        tmpl.render(ctx)
                            .map_err(|e| script_err(format!("srv.publish: {path}: {e:#}")))?,
                    )
                }
                _ => None,
            };
            next.insert(path.to_string(), Arc::new(Doc { data, html }));
        }
        drop(env);
        let mut docs = self.state.docs.write().unwrap_or_else(|e| e.into_inner());
        let changed: Vec<String> = next
            .iter()
            .filter(|(p, d)| docs.get(*p).is_none_or(|old| old.data != d.data))
            .map(|(p, _)| p.clone())
            .collect();
        *docs = next;
        drop(docs);
        if !changed.is_empty() {
            let _ = self.state.changed.send(Arc::new(changed));
        }
        Ok(())
    }

    /// Waits for engine events or webhooks (or `ms`); returns `#{stacks, hooks}`.
    fn wait(&self, host: &Host, ms: i64) -> ScriptResult<Map> {
        let state = self.state.clone();
        host.block(async move {
            let idle = || {
                state
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
                    && state
                        .hooks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_empty()
            };
            let deadline = tokio::time::sleep(Duration::from_millis(ms.max(0) as u64));
            tokio::pin!(deadline);
            loop {
                if !idle() {
                    // A burst of events (a scale starts several tasks) wakes the loop once.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
                tokio::select! {
                    _ = state.woken.notified() => {}
                    _ = &mut deadline => break,
                }
            }
            let stacks: Array =
                std::mem::take(&mut *state.pending.lock().unwrap_or_else(|e| e.into_inner()))
                    .into_iter()
                    .map(Dynamic::from)
                    .collect();
            let hooks: Array =
                std::mem::take(&mut *state.hooks.lock().unwrap_or_else(|e| e.into_inner()))
                    .into_iter()
                    .map(|(kind, name)| {
                        let mut m = Map::new();
                        m.insert("kind".into(), kind.into());
                        m.insert("name".into(), name.into());
                        Dynamic::from(m)
                    })
                    .collect();
            let mut out = Map::new();
            out.insert("stacks".into(), stacks.into());
            out.insert("hooks".into(), hooks.into());
            Ok(out)
        })
    }
}

/// Registers the `serve::` module and the `Server` type.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<Server>("Server");
    let mut m = Module::new();
    let h = host.clone();
    let prim = Prim::new("serve::start(e: Engine, opts: map) -> Server")
        .opts(START_OPTS)
        .doc(
            "Starts the HTTP server in the background and returns its handle. It serves only \
             what the script publishes (`srv.publish`, `srv.metrics`), with `/events` for the \
             browsers' live updates, and watches the engine's events with one stream. Off \
             loopback a token is required (a file, or `$WSM_SERVE_TOKEN`): requests carry it as \
             `Authorization: Bearer`, or once as `?token=`, which sets a cookie; others get 401.",
        );
    prim.set_in(
        &mut m,
        move |e: EngineHandle, opts: Map| -> ScriptResult<Server> {
            check_opts("serve::start", &opts, START_OPTS)?;
            let listen = opts
                .get("listen")
                .map(|l| l.to_string())
                .unwrap_or_else(|| "127.0.0.1:8080".into());
            let addr: SocketAddr = listen.parse().map_err(|_| {
                usage_err(format!(
                    "bad --listen address {listen:?}: an IP address and a port, e.g. 127.0.0.1:8080"
                ))
            })?;
            let token = read_token(&opts)?;
            if token.is_none() && !addr.ip().is_loopback() {
                return Err(usage_err(format!(
                    "listening on {addr}, off loopback, needs a token: --token-file FILE or WSM_SERVE_TOKEN"
                )));
            }
            let state = Arc::new(State {
                docs: Default::default(),
                metric_rows: Default::default(),
                templates: RwLock::new(minijinja::Environment::new()),
                changed: broadcast::channel(64).0,
                token,
                pending: Default::default(),
                hooks: Default::default(),
                hooks_dir: opts
                    .get("hooks_dir")
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "/run/secrets".into())
                    .into(),
                woken: Notify::new(),
                engine_streams: AtomicU64::new(0),
                clients: AtomicU64::new(0),
            });
            let listener = h.rt.block_on(tokio::net::TcpListener::bind(addr)).map_err(|err| {
                script_err(format!("cannot listen on {addr}: {err}"))
            })?;
            let addr = listener.local_addr().map_err(script_err)?;
            let _guard = h.rt.enter();
            watch_engine(state.clone(), e);
            web::spawn(listener, state.clone());
            Ok(Server { state, addr })
        },
    );
    engine.register_static_module("serve", m.into());

    let prim = Prim::new("srv.address -> string")
        .doc("The address the server listens on (the port chosen when 0 was asked).");
    prim.register(engine, |s: &mut Server| -> String { s.addr.to_string() });

    let prim = Prim::new("srv.template(name: string, text: string)").doc(
        "Adds a minijinja template the pages name (`{% extends \"layout.html\" %}` works); a \
         page's template sees `data` and `path`.",
    );
    prim.register(
        engine,
        |s: &mut Server, name: &str, text: &str| -> ScriptResult<()> {
            let mut env = s.state.templates.write().unwrap_or_else(|e| e.into_inner());
            env.add_template_owned(name.to_string(), text.to_string())
                .map_err(|e| script_err(format!("template {name}: {e}")))
        },
    );

    let prim = Prim::new("srv.publish(docs: map)").doc(
        "Replaces what the server serves: a map of URL path → `#{data, template}`; with a \
         template the path is an HTML page rendered from it, without one `data` is served as \
         JSON. Secret values are masked. The browsers showing a page whose data changed are \
         told to fetch it again.",
    );
    prim.register(engine, |s: &mut Server, docs: Map| -> ScriptResult<()> {
        s.publish(docs)
    });

    let prim = Prim::new("srv.metrics(rows: array)").doc(
        "Replaces `/metrics`: rows `#{name, help, kind, labels, value}` (kind \"gauge\" or \
         \"counter\"; a counter's name gets `_total`), in Prometheus' text format.",
    );
    prim.register(engine, |s: &mut Server, rows: Array| -> ScriptResult<()> {
        let rows = metrics::parse(&rows)?;
        *s.state
            .metric_rows
            .write()
            .unwrap_or_else(|e| e.into_inner()) = rows;
        Ok(())
    });

    let h = host.clone();
    let prim = Prim::new("srv.wait(ms: int) -> map").doc(
        "Waits until the engine reports events or a verified webhook arrives (then a short \
         while more, so a burst counts once), or `ms` pass; returns `#{stacks, hooks}`: the \
         stacks the events named (\"\" for events of none) and the webhooks `#{kind, name}` \
         received since the last call, each once however many came (`POST /hooks/KIND/NAME`, \
         signed with the secret in the file `wsm-hook-KIND-NAME` of `hooks_dir` as GitHub \
         (`X-Hub-Signature-256`), Gitea (`X-Gitea-Signature`) or GitLab (`X-Gitlab-Token`) \
         sign it; 404 without that file, 401 unsigned, 403 a bad signature). Ctrl-C ends it.",
    );
    prim.register(
        engine,
        move |s: &mut Server, ms: i64| -> ScriptResult<Map> { s.wait(&h, ms) },
    );
}
