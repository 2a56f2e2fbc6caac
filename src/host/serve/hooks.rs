//! `POST /hooks/KIND/NAME`: a forge's webhook, verified as the forge signs it, queued for the
//! script once (however many arrive before the script takes it). The secret is the file
//! `wsm-hook-KIND-NAME` in the hooks folder (`/run/secrets` for a service: a docker secret).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ring::hmac;

use super::web::same;
use super::State;

/// A kind or name that is safe as part of a file name.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Whether the request is signed with `secret`: GitHub's `X-Hub-Signature-256: sha256=HEX`,
/// Gitea's `X-Gitea-Signature: HEX` (both HMAC-SHA256 of the body), or GitLab's
/// `X-Gitlab-Token: SECRET`. None when it carries none of them.
fn signed(headers: &HeaderMap, body: &[u8], secret: &str) -> Option<bool> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mac = |hex_sig: &str| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        hex::decode(hex_sig.trim()).is_ok_and(|sig| hmac::verify(&key, body, &sig).is_ok())
    };
    if let Some(v) = header("x-hub-signature-256") {
        return Some(v.strip_prefix("sha256=").is_some_and(mac));
    }
    if let Some(v) = header("x-gitea-signature") {
        return Some(mac(v));
    }
    header("x-gitlab-token").map(|t| same(t.trim(), secret))
}

pub(super) async fn receive(
    AxState(state): AxState<Arc<State>>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !plain(&kind) || !plain(&name) {
        return (StatusCode::NOT_FOUND, "404 no such hook\n").into_response();
    }
    let file = state.hooks_dir.join(format!("wsm-hook-{kind}-{name}"));
    let Ok(secret) = tokio::fs::read_to_string(&file).await else {
        return (StatusCode::NOT_FOUND, "404 no such hook\n").into_response();
    };
    match signed(&headers, &body, secret.trim()) {
        None => (StatusCode::UNAUTHORIZED, "401 unsigned\n").into_response(),
        Some(false) => (StatusCode::FORBIDDEN, "403 bad signature\n").into_response(),
        Some(true) => {
            state
                .hooks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((kind, name));
            state.woken.notify_one();
            (StatusCode::ACCEPTED, "202 queued\n").into_response()
        }
    }
}
