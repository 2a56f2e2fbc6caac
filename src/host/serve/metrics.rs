//! `/metrics`: the rows the script publishes plus the server's own counts, encoded by
//! prometheus-client in the OpenMetrics text format Prometheus scrapes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rhai::{Array, Map};

use super::State;
use crate::host::{script_err, ScriptResult};

type Labels = Vec<(String, String)>;

/// One sample: a metric's name, help and kind, its labels and value.
#[derive(Clone)]
pub(crate) struct Row {
    name: String,
    help: String,
    counter: bool,
    labels: Labels,
    value: f64,
}

/// The script's rows, checked: a name of `[a-z_:][a-z0-9_:]*`, a kind gauge or counter.
pub(crate) fn parse(rows: &Array) -> ScriptResult<Vec<Row>> {
    let mut out = Vec::new();
    for r in rows {
        let m = r
            .read_lock::<Map>()
            .map(|m| m.clone())
            .ok_or_else(|| script_err("srv.metrics: each row is a map"))?;
        let text = |k: &str| m.get(k).map(|v| v.to_string()).unwrap_or_default();
        let name = text("name");
        let ok = !name.is_empty()
            && name.chars().enumerate().all(|(i, c)| {
                c.is_ascii_lowercase() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            });
        if !ok {
            return Err(script_err(format!("srv.metrics: bad metric name {name:?}")));
        }
        let counter = match text("kind").as_str() {
            "counter" => true,
            "gauge" | "" => false,
            k => {
                return Err(script_err(format!(
                    "srv.metrics: {name}: unknown kind {k:?}"
                )))
            }
        };
        let value = m
            .get("value")
            .and_then(|v| {
                v.as_float()
                    .ok()
                    .or_else(|| v.as_int().ok().map(|i| i as f64))
            })
            .ok_or_else(|| script_err(format!("srv.metrics: {name}: value is not a number")))?;
        let mut labels: Labels = m
            .get("labels")
            .and_then(|l| l.read_lock::<Map>().map(|l| l.clone()))
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        out.push(Row {
            name,
            help: text("help"),
            counter,
            labels,
            value,
        });
    }
    Ok(out)
}

/// The text `/metrics` answers: the rows, then `wsm_serve_engine_event_streams` and
/// `wsm_serve_clients`.
pub(crate) fn render(rows: &[Row], state: &State) -> String {
    let mut registry = Registry::default();
    let mut gauges: BTreeMap<&str, Family<Labels, Gauge<f64, AtomicU64>>> = BTreeMap::new();
    let mut counters: BTreeMap<&str, Family<Labels, Counter<f64, AtomicU64>>> = BTreeMap::new();
    let mut help: BTreeMap<&str, &str> = BTreeMap::new();
    for r in rows {
        help.entry(&r.name).or_insert(&r.help);
        if r.counter {
            counters
                .entry(&r.name)
                .or_default()
                .get_or_create(&r.labels)
                .inc_by(r.value.max(0.0));
        } else {
            gauges
                .entry(&r.name)
                .or_default()
                .get_or_create(&r.labels)
                .set(r.value);
        }
    }
    for (name, family) in gauges {
        registry.register(name, help[name], family);
    }
    for (name, family) in counters {
        registry.register(name, help[name], family);
    }
    let streams: Gauge<i64, std::sync::atomic::AtomicI64> = Gauge::default();
    streams.set(state.engine_streams.load(Ordering::SeqCst) as i64);
    registry.register(
        "wsm_serve_engine_event_streams",
        "Event streams this server opened to the engine (one, unless it was cut)",
        streams,
    );
    let clients: Gauge<i64, std::sync::atomic::AtomicI64> = Gauge::default();
    clients.set(state.clients.load(Ordering::SeqCst) as i64);
    registry.register(
        "wsm_serve_clients",
        "Browsers holding a page's live updates open",
        clients,
    );
    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    out
}
