//! A stack history's secrets at rest, how a revision is shown (`summary`), and its lifetime
//! (the history itself: `revisions`).
//!
//! Secret values: a revision keeps every secret value of a spec (an environment entry, option
//! or label with a secret name, URL credentials) sealed with the operator's key (`secrets`),
//! never in clear, since anyone who may read the API may read the store. A rollback opens them;
//! a revision sealed with a key this machine does not hold is refused, naming the values,
//! before anything changes.
//!
//! Lifetime: `stack history --forget` removes a stack's document. A stack with no service left
//! whose document has not been written for `WSM_HISTORY_KEEP_DAYS` (30) days is a removed
//! stack's stale history: every recorded deploy or rollback, of any stack, prunes those.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use bollard::Docker;
use rhai::Engine;
use serde_json::Value;

use super::{store, str_at, EngineHandle};
use crate::host::doc::Prim;
use crate::host::secrets;
use crate::host::{script_err, usage_err, Host, ScriptResult};

/// The store document of a stack's revisions.
pub fn document(stack: &str) -> String {
    format!("stack.{stack}.revisions")
}

/// A state as the store keeps it: every secret value sealed with this machine's key.
pub(super) fn sealed_state(state: &Value) -> Result<Value, String> {
    let mut out = state.clone();
    if secrets::has_secret(&out) {
        secrets::seal_json(&mut out, &secrets::key()?)?;
    }
    Ok(out)
}

/// A kept state with its secret values opened with this machine's key; the error names the
/// values it cannot open (sealed with another key), or says why there is no key.
pub(super) fn open_state(state: &Value) -> Result<Value, String> {
    if !secrets::has_sealed(state) {
        return Ok(state.clone());
    }
    let key = secrets::key()?;
    let mut out = state.clone();
    let mut missing = Vec::new();
    for (name, spec) in out["services"].as_object_mut().into_iter().flatten() {
        for k in secrets::open_json(spec, &key) {
            missing.push(format!("{k} of {name}"));
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "its secret values were sealed with another key than this machine's ({}): {}",
            secrets::key_source(),
            missing.join(", ")
        ))
    }
}

/// A revision as `stack history` shows it: without the state, with the image digests, any
/// secret value in its text masked.
pub(super) fn summary(rev: &Value) -> Value {
    let mut r = rev.clone();
    if let Some(o) = r.as_object_mut() {
        let images = rev["state"]["images"].clone();
        o.remove("state");
        o.insert("images".into(), images);
    }
    secrets::mask_json(&mut r);
    for text in ["status", "operation"] {
        if let Some(Value::String(s)) = r.get_mut(text) {
            *s = secrets::mask_text(s);
        }
    }
    for c in r["changes"].as_array_mut().into_iter().flatten() {
        if let Value::String(s) = c {
            *s = secrets::mask_text(s);
        }
    }
    r
}

/// How long the history of a removed stack is kept, in days: `WSM_HISTORY_KEEP_DAYS` (a
/// fraction is allowed), else 30.
pub(super) fn keep_days() -> f64 {
    std::env::var("WSM_HISTORY_KEEP_DAYS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
        .unwrap_or(30.0)
}

/// Which of the store's documents (name, last written) are stale histories at `now`: the
/// revisions of a stack not in `live` (no service left), last written more than `days` ago.
/// A time that cannot be read is never taken for an old one.
pub(super) fn stale(
    docs: &[(String, String)],
    live: &HashSet<String>,
    now: SystemTime,
    days: f64,
) -> Vec<(String, String)> {
    let limit = std::time::Duration::from_secs_f64(days * 86400.0);
    docs.iter()
        .filter_map(|(name, written)| {
            let stack = name.strip_prefix("stack.")?.strip_suffix(".revisions")?;
            let at = humantime::parse_rfc3339_weak(written.trim_end_matches('Z')).ok()?;
            let old = now.duration_since(at).is_ok_and(|age| age > limit);
            (old && !live.contains(stack)).then(|| (stack.to_string(), written.clone()))
        })
        .collect()
}

/// The stacks whose history is stale (see [`stale`]), with when it was last written.
pub(super) async fn stale_histories(d: &Docker, days: f64) -> ScriptResult<Vec<(String, String)>> {
    let docs = store::list_written(d, "stack.").await.map_err(script_err)?;
    let filter = HashMap::from([(
        "label".to_string(),
        vec![crate::host::NAMESPACE_LABEL.to_string()],
    )]);
    let live: HashSet<String> = super::list_services(d, filter)
        .await?
        .iter()
        .map(|s| str_at(s, &["Spec", "Labels", crate::host::NAMESPACE_LABEL]).to_string())
        .collect();
    Ok(stale(&docs, &live, SystemTime::now(), days))
}

/// Removes the stale histories (see [`stale_histories`]) but `except`'s; returns the stacks
/// whose history went.
pub(super) async fn prune_stale(d: &Docker, except: &str) -> ScriptResult<Vec<String>> {
    let mut gone = Vec::new();
    for (stack, _) in stale_histories(d, keep_days()).await? {
        if stack != except
            && store::remove(d, &document(&stack))
                .await
                .map_err(script_err)?
        {
            gone.push(stack);
        }
    }
    Ok(gone)
}

/// Registers `e.forget_history` and `e.stale_histories`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.stale_histories() -> array").doc(
        "The histories of removed stacks that a deploy would prune: stacks with no service \
         left whose revisions were last written more than `WSM_HISTORY_KEEP_DAYS` (30) days \
         ago, as `[#{stack, written}]` (`swarm doctor` lists them).",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle| -> ScriptResult<rhai::Array> {
            let stale = h.block(stale_histories(&e.docker, keep_days()))?;
            Ok(stale
                .into_iter()
                .map(|(stack, written)| {
                    let mut m = rhai::Map::new();
                    m.insert("stack".into(), stack.into());
                    m.insert("written".into(), written.into());
                    m.into()
                })
                .collect())
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.forget_history(stack: string) -> bool")
        .doc("Removes the stack's revisions from the swarm store; false when it had none.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<bool> {
            if stack.is_empty() {
                return Err(usage_err("forget_history needs a stack name"));
            }
            h.block(async {
                store::remove(&e.docker, &document(stack))
                    .await
                    .map_err(script_err)
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_is_stale_when_its_stack_has_no_service_and_it_was_not_written_for_the_days_kept() {
        let now = humantime::parse_rfc3339("2026-12-31T00:00:00Z").unwrap();
        let docs: Vec<(String, String)> = [
            ("stack.gone.revisions", "2026-11-01T10:00:00.123456789Z"),
            ("stack.recent.revisions", "2026-12-20T00:00:00Z"),
            ("stack.live.revisions", "2026-01-01T00:00:00Z"),
            ("stack-config.gone", "2026-01-01T00:00:00Z"),
            ("stack.odd.revisions", "yesterday"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let live = HashSet::from(["live".to_string()]);
        let found: Vec<String> = stale(&docs, &live, now, 30.0)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(found, ["gone"]);
        assert_eq!(stale(&docs, &live, now, 5.0).len(), 2);
    }
}
