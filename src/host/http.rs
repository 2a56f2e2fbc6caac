//! `http::` — HTTP for provider APIs and probes (reqwest). Every request has a timeout.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Engine, Map, Module};

use super::doc::{check_opts, Opt, Prim};
use super::opts::opt_int;
use super::{script_err, to_dynamic, to_json, Host, ScriptResult};

mod post;

/// Sends one request; returns #{status, body, json, headers}. Network failures are errors,
/// HTTP error statuses are not (the script decides).
async fn request(method: &str, url: &str, opts: &Map) -> ScriptResult<Map> {
    let timeout = opt_int(opts, "timeout_ms", 10_000).max(1) as u64;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout))
        .build()
        .map_err(script_err)?;
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| script_err(format!("invalid HTTP method {method:?}")))?;
    let mut req = client.request(method, url);
    if let Some(h) = opts
        .get("headers")
        .and_then(|h| h.read_lock::<Map>().map(|m| m.clone()))
    {
        for (k, v) in h {
            req = req.header(k.as_str(), v.to_string());
        }
    }
    if let Some(body) = opts.get("json") {
        req = req.json(&to_json(body)?);
    } else if let Some(body) = opts.get("body") {
        req = req.body(body.to_string());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| script_err(format!("{url}: {e}")))?;
    let status = resp.status().as_u16() as i64;
    let mut headers = Map::new();
    for (k, v) in resp.headers() {
        headers.insert(
            k.as_str().into(),
            v.to_str().unwrap_or("").to_string().into(),
        );
    }
    let mut body = super::bounded::Capped::new(super::bounded::RESPONSE);
    let mut resp = resp;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| script_err(format!("{url}: {e}")))?
    {
        body.push(&chunk).map_err(|_| {
            script_err(super::bounded::too_big(
                &format!("the response of {url}"),
                super::bounded::RESPONSE,
            ))
        })?;
    }
    let text = String::from_utf8_lossy(&body.into_bytes()).into_owned();
    let mut m = Map::new();
    m.insert("status".into(), Dynamic::from(status));
    m.insert(
        "json".into(),
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .map(|v| to_dynamic(&v))
            .transpose()?
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("body".into(), text.into());
    m.insert("headers".into(), headers.into());
    Ok(m)
}

/// `http::request`'s options.
const REQUEST_OPTS: &[Opt] = &[
    ("headers", "a map"),
    ("json", "a value sent as JSON"),
    ("body", "text sent when there is no `json`"),
    ("timeout_ms", "10000"),
];

/// Registers the `http::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();
    let h = host.clone();
    let prim = Prim::new("http::request(method: string, url: string, opts: map) -> map")
        .opts(REQUEST_OPTS)
        .doc(
            "An HTTP request. Returns `#{status, headers, body, json}`; fails on a network error \
             or the deadline, not on an error status; a body over 64 MiB is an error.",
        );
    prim.set_in(
        &mut m,
        move |method: &str, url: &str, opts: Map| -> ScriptResult<Map> {
            check_opts("http::request", &opts, REQUEST_OPTS)?;
            h.block(request(method, url, &opts))
        },
    );
    let h = host.clone();
    let prim = Prim::new("http::get(url: string, timeout_ms: int) -> map")
        .doc("A GET with a deadline; the same result as `http::request`.");
    prim.set_in(
        &mut m,
        move |url: &str, timeout_ms: i64| -> ScriptResult<Map> {
            let mut opts = Map::new();
            opts.insert("timeout_ms".into(), Dynamic::from(timeout_ms));
            h.block(request("GET", url, &opts))
        },
    );
    post::register(&mut m, host);
    engine.register_static_module("http", m.into());
}
