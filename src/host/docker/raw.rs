//! Reading the Engine API's JSON as the engine writes it, past bollard's models. bollard's
//! `TaskSpecContainerSpec` names a service's health check `HealthCheck`, while the engine
//! writes `Healthcheck`: read through bollard, every service's health check is silently lost,
//! and a spec written back from such a read drops it. What must keep a service's spec whole
//! (revisions, rollbacks, plans) reads services here, and turns the spec back into bollard's
//! spelling with [`spec_for_bollard`] before sending it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::{ssh_transport, EngineHandle, NAMESPACE_LABEL};
use crate::host::{script_err, ScriptResult};

/// How long a read may wait for the engine's whole answer, as long as bollard gives its own
/// requests (`docker::connect`): past it the engine is taken not to answer, and the caller
/// decides (a wait retries until its deadline, a command fails naming the read).
const ANSWER_DEADLINE: Duration = Duration::from_secs(120);

/// Sends one bodiless request to the engine at `host` and returns the answer: over a fresh
/// connection of its own to `unix://` or `tcp://` (with TLS when `tls`), over the process's
/// pooled connections through the shared master to `ssh://`.
async fn send(
    host: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: hyper::Method,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    if host.starts_with("ssh://") {
        // The process's pooled connections: across a WAN a fresh one costs a round trip.
        return ssh_transport::request(host, method, path).await;
    }
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "docker")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    if let Some(socket) = host.strip_prefix("unix://") {
        let s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|err| err.to_string())?;
        over(TokioIo::new(s), req).await
    } else if let Some(config) = tls {
        over(TokioIo::new(super::tls::dial(host, config).await?), req).await
    } else {
        let addr = host
            .trim_start_matches("tcp://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|err| err.to_string())?;
        over(TokioIo::new(s), req).await
    }
}

/// Sends `req` over `io`, a connection of its own.
async fn over<S>(
    io: S,
    req: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// The API version the engine at `host` speaks, from the `Api-Version` header of `HEAD /_ping`
/// on a connection of its own, as the Docker CLI learns it: `GET /version`, which bollard's
/// negotiation asks, makes the engine run `runc --version` and `docker-init --version` and ask
/// containerd, tens of milliseconds of the engine's CPU on each call.
pub(super) async fn ping_api_version(
    host: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<String, String> {
    api_version_of(send(host, tls, hyper::Method::HEAD, "/_ping").await?)
}

/// [`ping_api_version`] over `io`, a connection already made to the engine (an SSH master's
/// forwarded socket before the pool may use it).
pub(super) async fn ping_api_version_over<S>(io: S) -> Result<String, String>
where
    S: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let req = hyper::Request::builder()
        .method(hyper::Method::HEAD)
        .uri("/_ping")
        .header("Host", "docker")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    api_version_of(over(io, req).await?)
}

/// The `Api-Version` of an answer to `HEAD /_ping`.
fn api_version_of(resp: hyper::Response<hyper::body::Incoming>) -> Result<String, String> {
    let version = resp
        .headers()
        .get("Api-Version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match version {
        Some(v) if resp.status().is_success() => Ok(v),
        _ => Err(format!(
            "{} from /_ping, without an API version",
            resp.status()
        )),
    }
}

/// GET `path` (`/services?…`, without the version) from the engine of `e`, as JSON.
pub(super) async fn get_json(e: &EngineHandle, path: &str) -> Result<Value, String> {
    Ok(get_json_dated(e, path).await?.0)
}

/// [`get_json`], with the engine's clock as it answered (its `Date` header, whole seconds;
/// None without one) and this machine's when the answer came.
pub(super) async fn get_json_dated(
    e: &EngineHandle,
    path: &str,
) -> Result<(Value, Option<(SystemTime, SystemTime)>), String> {
    let path = format!("/v{}{path}", e.api_version);
    let host = e.host.as_str();
    let answer = async {
        let resp = send(host, e.tls.as_ref(), hyper::Method::GET, &path).await?;
        let received = SystemTime::now();
        let date = resp
            .headers()
            .get(hyper::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(httpdate)
            .map(|engine| (engine, received));
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let value = serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())?;
        Ok((value, date))
    };
    let answer = tokio::time::timeout(ANSWER_DEADLINE, answer)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", ANSWER_DEADLINE.as_secs())));
    answer.map_err(|err| format!("reading {path} from the Docker engine at {host}: {err}"))
}

/// An HTTP date (`Mon, 07 Dec 2026 09:49:43 GMT`, RFC 9110's preferred form, which Go's
/// `net/http` writes).
fn httpdate(text: &str) -> Option<SystemTime> {
    let t = chrono::NaiveDateTime::parse_from_str(text, "%a, %d %b %Y %H:%M:%S GMT").ok()?;
    Some(SystemTime::from(t.and_utc()))
}

/// The services of a stack exactly as the engine stores them.
pub(super) async fn stack_services(e: &EngineHandle, stack: &str) -> ScriptResult<Vec<Value>> {
    let filters = HashMap::from([("label", vec![format!("{NAMESPACE_LABEL}={stack}")])]);
    let query = serde_json::to_string(&filters).map_err(script_err)?;
    let query: String = url_escape(&query);
    match get_json(e, &format!("/services?filters={query}")).await {
        Ok(Value::Array(list)) => Ok(list),
        Ok(other) => Err(script_err(format!("the engine listed services as {other}"))),
        Err(err) => Err(script_err(err)),
    }
}

/// One service (by name or id) exactly as the engine stores it.
pub(super) async fn service(e: &EngineHandle, service: &str) -> ScriptResult<Value> {
    get_json(e, &format!("/services/{}", url_escape(service)))
        .await
        .map_err(|err| {
            if err.contains("404 Not Found") {
                script_err(format!("service {service} not found"))
            } else {
                script_err(err)
            }
        })
}

/// Percent-encodes a query value.
pub(super) fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A service spec as the engine stores it, in bollard's spelling (`HealthCheck`), so that a
/// `ServiceSpec` made from it keeps the health check.
pub(super) fn spec_for_bollard(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(cs) = spec
        .pointer_mut("/TaskTemplate/ContainerSpec")
        .and_then(Value::as_object_mut)
    {
        if let Some(h) = cs.remove("Healthcheck") {
            cs.insert("HealthCheck".into(), h);
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_health_check_survives_the_way_into_bollards_model() {
        let stored = json!({"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "i",
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5000000000u64}}}});
        let lost: bollard::models::ServiceSpec = serde_json::from_value(stored.clone()).unwrap();
        assert!(lost
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .health_check
            .is_none());
        let kept: bollard::models::ServiceSpec =
            serde_json::from_value(spec_for_bollard(&stored)).unwrap();
        let check = kept
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .health_check
            .unwrap();
        assert_eq!(check.test.unwrap(), ["CMD", "true"]);
        assert_eq!(url_escape("{\"a\":[1]}"), "%7B%22a%22%3A%5B1%5D%7D");
    }

    #[test]
    fn an_http_date_is_read_as_the_engine_writes_it() {
        let t = httpdate("Mon, 07 Dec 2026 09:49:43 GMT").unwrap();
        let want = humantime::parse_rfc3339("2026-12-07T09:49:43Z").unwrap();
        assert_eq!(t, want);
        assert!(httpdate("yesterday").is_none());
    }
}
