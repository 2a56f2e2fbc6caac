//! What a recorded deploy does once the stack has converged (`rollback::recorded`), in few
//! round trips, since each one is time the user waits after the engine is done (issue 28,
//! BENCHMARKS.md's fourteenth run; a remote manager makes each one tens of milliseconds):
//! 1. one round of reads at once: the state the deploy left (`snapshot`), the lock still held
//!    (`fence`), every service of the swarm (which config and secret ids are in use; which stacks
//!    live), the stack's secrets and configs, and the store's stack documents (stale histories);
//! 2. the revision written (when something changed);
//! 3. every removal at once: the config and secret versions that neither a service nor a kept
//!    revision uses, and the stale histories of removed stacks (`history`).
//!
//! What is removed, and when, is as before this module: after the revision is written, by the
//! same rules (`objects::prune_versions`, `history::prune_stale`); a failure to prune is a
//! warning, never the deploy's failure.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use futures_util::future::join_all;
use serde_json::Value;

use super::history::{document, keep_days, stale};
use super::objects::{self, unused_versions, used_ids, Kind};
use super::revisions::{changes, message_of, snapshot, state_names, History};
use super::{docker_message, fence, list_services, stack_filter, store, EngineHandle};
use crate::host::{script_err, Host, ScriptResult, NAMESPACE_LABEL};

/// Records the state a converged deploy left as a revision (`status`) after the state found
/// (`before`, revision `base`), then prunes. `kept`: the secret and config names the deploy
/// uses, kept whatever the revisions say.
pub(super) async fn record_converged(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    history: &mut History,
    (operation, status): (&str, &str),
    (before, base): (&Value, Option<i64>),
    kept: &(HashSet<String>, HashSet<String>),
) -> ScriptResult<()> {
    let d = &e.docker;
    let prune_reads = async {
        tokio::try_join!(
            list_services(d, HashMap::new()),
            objects::list(d, Kind::Secret, stack_filter(stack)),
            objects::list(d, Kind::Config, stack_filter(stack)),
        )
    };
    // A store that cannot be listed costs nothing but stale histories kept.
    let documents = async { store::list_written(d, "stack.").await.ok() };
    let (after, fenced, prune, documents) = tokio::join!(
        snapshot(e, stack),
        fence::check(e, stack, "recording the deploy"),
        prune_reads,
        documents
    );
    let after = after?;
    fenced?;
    let changed = changes(before, &after);
    if changed.is_empty() {
        if let Some(rev) = base {
            host.say(&format!(
                "Stack {stack}: no changes; still at revision {rev}"
            ));
        }
    } else {
        let rev = history
            .write_revision(d, operation, status, changed, Some(after))
            .await?;
        host.say(&format!("Stack {stack}: revision {rev} recorded"));
    }
    // After the write: the versions of revisions it rotated out go now, with stale histories.
    let (services, secrets, configs) = match prune {
        Ok(lists) => lists,
        Err(e) => {
            host.warn(&format!(
                "keeping old config and secret versions: {}",
                message_of(&e)
            ));
            return Ok(());
        }
    };
    let kept_by = |kind: &str, plan: &HashSet<String>| -> HashSet<String> {
        let mut names = plan.clone();
        for r in &history.revisions {
            names.extend(state_names(&r["state"], kind));
        }
        names
    };
    let mut removals = Vec::new();
    for (kind, listed, keep) in [
        (Kind::Secret, &secrets, kept_by("secrets", &kept.0)),
        (Kind::Config, &configs, kept_by("configs", &kept.1)),
    ] {
        for (name, id) in unused_versions(listed, &keep, &used_ids(&services, kind)) {
            host.say(&format!("Removing old {} {name}", kind.word()));
            removals.push(async move {
                if let Err(e) = objects::delete(d, kind, id).await {
                    host.warn(&format!(
                        "keeping {} {name}: {}",
                        kind.word(),
                        docker_message(&e)
                    ));
                }
            });
        }
    }
    let live: HashSet<String> = services
        .iter()
        .filter_map(|s| {
            s.pointer("/Spec/Labels")
                .and_then(|l| l.get(NAMESPACE_LABEL))
        })
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let stale_docs = stale(
        &documents.unwrap_or_default(),
        &live,
        SystemTime::now(),
        keep_days(),
    );
    // Housekeeping: a failure here costs nothing but a stale document kept.
    let stale_removals = stale_docs
        .into_iter()
        .filter(|(other, _)| other != stack)
        .map(|(other, _)| async move {
            let _ = store::remove(d, &document(&other))
                .await
                .map_err(script_err);
        });
    tokio::join!(join_all(removals), join_all(stale_removals));
    Ok(())
}
