//! `http::post_all`: POSTs that must not hold up what sent them (notifications). Each one is
//! tried a few times with a short deadline per try and a growing pause between tries, all of
//! them at once (so several URLs cost the bound of one), and never fails the caller: a result
//! per POST says whether it arrived. Bodies are masked on the way out (`secrets::mask_json`,
//! plus the exact values the caller names in `hide`), and URLs come back masked
//! ([`mask_url`]), so a token in a webhook's address reaches neither a warning nor a log.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rhai::{Array, Dynamic, Map, Module};
use serde_json::Value;

use super::super::doc::{check_opts, Opt, Prim};
use super::super::opts::opt_int;
use super::super::secrets::{self, MASK};
use super::super::{script_err, to_json, Host, ScriptResult};

/// `http::post_all`'s options.
pub const POST_ALL_OPTS: &[Opt] = &[
    ("tries", "3: attempts per POST"),
    (
        "timeout_ms",
        "3000: the deadline of each attempt (connect, send, the answer's status)",
    ),
    (
        "backoff_ms",
        "500: the pause after the first failed attempt, doubled after each next one",
    ),
    (
        "hide",
        "[]: values (secrets) replaced by ******** wherever they appear in a body",
    ),
];

/// One POST to make: where, what (JSON, or text with its headers).
struct Post {
    url: String,
    body: Body,
    headers: Vec<(String, String)>,
}

enum Body {
    Json(Value),
    Text(String),
}

/// How one POST ended.
struct Outcome {
    url: String,
    ok: bool,
    attempts: i64,
    status: i64,
    error: String,
}

/// A URL as wsm may print it: user info, query values and the fragment masked, and each path
/// segment that looks like a token (8 characters or more with a digit in them, or 20 or more).
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, _)) => (r, format!("#{MASK}")),
        None => (rest, String::new()),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => {
            let parts: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) => format!("{k}={MASK}"),
                    None if kv.is_empty() => String::new(),
                    None => MASK.to_string(),
                })
                .collect();
            (r, format!("?{}", parts.join("&")))
        }
        None => (rest, String::new()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{MASK}@{host}"),
        None => authority.to_string(),
    };
    let path: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let tokenish =
                (seg.len() >= 8 && seg.chars().any(|c| c.is_ascii_digit())) || seg.len() >= 20;
            if tokenish {
                MASK
            } else {
                seg
            }
        })
        .collect();
    format!("{scheme}{authority}{}{query}{fragment}", path.join("/"))
}

/// Replaces each of `hide` (non-empty) in every string of a JSON value.
fn hide_values(v: &mut Value, hide: &[String]) {
    match v {
        Value::String(s) => *s = hide_in(s, hide),
        Value::Array(items) => items.iter_mut().for_each(|x| hide_values(x, hide)),
        Value::Object(map) => map.values_mut().for_each(|x| hide_values(x, hide)),
        _ => {}
    }
}

/// A text with each of `hide` (non-empty) replaced by the mask, then its `NAME=secret` entries
/// and URL passwords masked.
fn hide_in(s: &str, hide: &[String]) -> String {
    let mut out = s.to_string();
    for h in hide.iter().filter(|h| !h.is_empty()) {
        out = out.replace(h.as_str(), MASK);
    }
    secrets::mask_text(&out)
}

/// Reads the script's list of POSTs, masking each body.
fn read_posts(posts: &Array, hide: &[String]) -> ScriptResult<Vec<Post>> {
    let mut out = Vec::new();
    for p in posts {
        let m = p.read_lock::<Map>().ok_or_else(|| {
            script_err("http::post_all: each POST is a map #{url, json} or #{url, body}")
        })?;
        let url = m
            .get("url")
            .map(|u| u.to_string())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| script_err("http::post_all: a POST has no url"))?;
        let body = if let Some(j) = m.get("json") {
            let mut v = to_json(j)?;
            secrets::mask_json(&mut v);
            hide_values(&mut v, hide);
            Body::Json(v)
        } else {
            Body::Text(hide_in(
                &m.get("body").map(|b| b.to_string()).unwrap_or_default(),
                hide,
            ))
        };
        let headers = m
            .get("headers")
            .and_then(|h| h.read_lock::<Map>().map(|h| h.clone()))
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push(Post { url, body, headers });
    }
    Ok(out)
}

/// Tries one POST up to `tries` times; a 2xx answer is delivered, another 4xx than 408 and
/// 429 is final (trying again would get the same answer).
async fn deliver(client: &reqwest::Client, post: Post, tries: i64, backoff: Duration) -> Outcome {
    let mut out = Outcome {
        url: mask_url(&post.url),
        ok: false,
        attempts: 0,
        status: 0,
        error: String::new(),
    };
    let mut pause = backoff;
    for attempt in 1..=tries.max(1) {
        if attempt > 1 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        out.attempts = attempt;
        let mut req = client.post(&post.url);
        for (k, v) in &post.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req = match &post.body {
            Body::Json(v) => req.json(v),
            Body::Text(t) => req.body(t.clone()),
        };
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                out.status = status.as_u16() as i64;
                if status.is_success() {
                    out.ok = true;
                    out.error.clear();
                    return out;
                }
                out.error = format!("HTTP {}", status.as_u16());
                let final_refusal = status.is_client_error()
                    && status != reqwest::StatusCode::REQUEST_TIMEOUT
                    && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
                if final_refusal {
                    return out;
                }
            }
            Err(e) => {
                out.error = if e.is_timeout() {
                    "no answer within the deadline".to_string()
                } else if e.is_connect() {
                    "could not connect".to_string()
                } else {
                    // reqwest names the URL in its message: keep only what went wrong.
                    secrets::mask_text(&e.without_url().to_string())
                };
            }
        }
    }
    out
}

/// Makes every POST at once and returns one result map per POST, in order.
pub async fn post_all(posts: Array, opts: Map) -> ScriptResult<Array> {
    let tries = opt_int(&opts, "tries", 3).clamp(1, 10);
    let timeout =
        Duration::from_millis(opt_int(&opts, "timeout_ms", 3000).clamp(1, 600_000) as u64);
    let backoff = Duration::from_millis(opt_int(&opts, "backoff_ms", 500).clamp(0, 60_000) as u64);
    let hide: Vec<String> = opts
        .get("hide")
        .and_then(|h| h.read_lock::<Array>().map(|a| a.clone()))
        .unwrap_or_default()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let posts = read_posts(&posts, &hide)?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(script_err)?;
    let outcomes = join_all(
        posts
            .into_iter()
            .map(|p| deliver(&client, p, tries, backoff)),
    )
    .await;
    Ok(outcomes
        .into_iter()
        .map(|o| {
            let mut m = Map::new();
            m.insert("url".into(), o.url.into());
            m.insert("ok".into(), Dynamic::from(o.ok));
            m.insert("attempts".into(), Dynamic::from(o.attempts));
            m.insert("status".into(), Dynamic::from(o.status));
            m.insert("error".into(), o.error.into());
            Dynamic::from(m)
        })
        .collect())
}

/// Registers `http::post_all` and `http::mask_url` into the `http::` module.
pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("http::post_all(posts: array, opts: map) -> array")
        .opts(POST_ALL_OPTS)
        .doc(
            "POSTs that never fail the caller (notifications): each of `posts` (`#{url, json}`, \
             or `#{url, body, headers}`) tried up to `tries` times, each try within \
             `timeout_ms`, pausing `backoff_ms` then twice that between tries; all at once, so \
             several cost the bound of one. Bodies are masked (secret entries, URL passwords, \
             the values in `hide`). Returns one `#{url, ok, attempts, status, error}` per POST, \
             in order, `url` with its user info, query, fragment and token-like path segments \
             masked.",
        );
    prim.set_in(
        m,
        move |posts: rhai::Array, opts: Map| -> ScriptResult<rhai::Array> {
            check_opts("http::post_all", &opts, POST_ALL_OPTS)?;
            h.block(post_all(posts, opts))
        },
    );
    let prim = Prim::new("http::mask_url(url: string) -> string").doc(
        "A URL as wsm may print it: user info, query values, the fragment and path segments \
         that look like tokens (8+ characters with a digit, or 20+) masked.",
    );
    prim.set_in(m, |url: &str| Ok(mask_url(url)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secret_parts() {
        assert_eq!(
            mask_url("http://127.0.0.1:8080/hook"),
            "http://127.0.0.1:8080/hook"
        );
        assert_eq!(
            mask_url("https://user:pw@example.com/a?token=abc&x=1#frag"),
            "https://********@example.com/a?token=********&x=********#********"
        );
        assert_eq!(
            mask_url("https://hooks.slack.com/services/T0001/B0000001/XXXXXXXXXXXXXXXXXXXXXXXX"),
            "https://hooks.slack.com/services/T0001/********/********"
        );
    }

    #[test]
    fn hidden_values_and_named_secrets_are_masked() {
        let mut v = serde_json::json!({"message": "failed: API_TOKEN=abc s3cr3t", "n": ["s3cr3t"]});
        secrets::mask_json(&mut v);
        hide_values(&mut v, &["s3cr3t".to_string()]);
        assert_eq!(v["message"], "failed: API_TOKEN=******** ********");
        assert_eq!(v["n"][0], "********");
    }
}
