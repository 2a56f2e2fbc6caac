//! The requests: the token check, the published documents, `/metrics`, and `/events`, the
//! server-sent events telling a page's browsers that its data changed.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State as AxState};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::{self, Stream};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::State;

const COOKIE: &str = "wsm_token";

/// Serves on `listener` until the process ends.
pub(super) fn spawn(listener: tokio::net::TcpListener, state: Arc<State>) {
    let app = Router::new()
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/hooks/{kind}/{name}", post(super::hooks::receive))
        .fallback(get(document))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// Whether two secrets are equal, in a time that does not tell where they differ.
pub(super) fn same(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The token a request carries: its bearer header, else its cookie.
fn carried(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(String::from)
        })
}

/// `?token=T` among a query's parameters, and the query without it.
fn token_in_query(uri: &Uri) -> Option<(String, String)> {
    let query = uri.query()?;
    let mut token = None;
    let mut rest = Vec::new();
    for kv in query.split('&') {
        match kv.strip_prefix("token=") {
            Some(t) => token = Some(t.to_string()),
            None => rest.push(kv),
        }
    }
    Some((token?, rest.join("&")))
}

/// Lets through requests carrying the token (or all when there is none); `?token=` sets the
/// cookie and sends the browser to the same address without it, so it is not kept in the
/// address bar or history.
async fn auth(AxState(state): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    // A webhook is signed by its forge, which knows no token.
    let Some(token) = state
        .token
        .as_ref()
        .filter(|_| !req.uri().path().starts_with("/hooks/"))
    else {
        return next.run(req).await;
    };
    if carried(req.headers()).is_some_and(|t| same(&t, token)) {
        return next.run(req).await;
    }
    if let Some((given, rest)) = token_in_query(req.uri()) {
        if same(&given, token) {
            let to = if rest.is_empty() {
                req.uri().path().to_string()
            } else {
                format!("{}?{rest}", req.uri().path())
            };
            return Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, to)
                .header(
                    header::SET_COOKIE,
                    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
                )
                .body(Body::empty())
                .unwrap_or_default();
        }
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "401 Unauthorized: this server needs its token (Authorization: Bearer, or ?token= once)\n",
    )
        .into_response()
}

/// A published document: its page as HTML, or its data as JSON.
async fn document(AxState(state): AxState<Arc<State>>, uri: Uri) -> Response {
    let doc = state
        .docs
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(uri.path())
        .cloned();
    match doc {
        Some(d) => match &d.html {
            Some(html) => (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                html.clone(),
            )
                .into_response(),
            None => (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_string_pretty(&d.data).unwrap_or_default() + "\n",
            )
                .into_response(),
        },
        None => (StatusCode::NOT_FOUND, "404 Not Found\n").into_response(),
    }
}

async fn metrics(AxState(state): AxState<Arc<State>>) -> Response {
    let rows = state
        .metric_rows
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        super::metrics::render(&rows, &state),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct Page {
    page: String,
}

/// Counts a browser's event stream while it is open.
struct Client(Arc<State>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `event: change` each time the page's data changes; nothing else reaches the browser.
async fn events(
    AxState(state): AxState<Arc<State>>,
    Query(q): Query<Page>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    state.clients.fetch_add(1, Ordering::SeqCst);
    let rx = state.changed.subscribe();
    let client = Client(state);
    let first = Event::default().event("hello").data(&q.page);
    let changes = stream::unfold((rx, q.page, client), |(mut rx, page, client)| async move {
        loop {
            match rx.recv().await {
                Ok(paths) if paths.contains(&page) => {
                    let ev = Event::default().event("change").data(&page);
                    return Some((Ok(ev), (rx, page, client)));
                }
                Ok(_) => {}
                // Fell behind: fetching again is always right.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let ev = Event::default().event("change").data(&page);
                    return Some((Ok(ev), (rx, page, client)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let all = futures_util::StreamExt::chain(stream::once(async move { Ok(first) }), changes);
    Sse::new(all).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
