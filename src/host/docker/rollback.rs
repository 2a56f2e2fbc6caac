//! Whole-stack safety around a deploy: the deploy that records revisions and returns the stack
//! to its previous revision when it fails (the engine refusing a service half-way, a rejected
//! image, a task that keeps failing, the deadline), or removes what it made when it was the
//! stack's first (`leftovers`), the same for any other change (`recorded`: `updates`' image update),
//! and `e.rollback_stack`, which returns it to any kept revision.
//! `revisions` says what a revision holds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;

use super::apply::{deploy, prune_old_versions, DeployOptions, Plan};
use super::converge::{converge, converge_reporting, Baseline, Goal, Reporter};
use super::fence;
use super::history::summary;
use super::interrupted;
use super::leftovers::{self, Found};
use super::objects::FileObject;
use super::record::record_converged;
use super::revisions::{changes, message_of, restore, snapshot, state_names, target, History};
use super::EngineHandle;
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::{opt_bool, opt_int, opt_secs, opt_str};
use crate::host::{script_err, to_dynamic, Host, ScriptResult};

/// How a recorded deploy goes: the command it serves (for the history), whether it waits,
/// for how long, and whether a failure rolls the stack back.
pub(super) struct Safety {
    pub operation: String,
    pub wait: bool,
    pub timeout: Duration,
    pub rollback: bool,
    /// Told which services run while the wait goes on (`deploying`).
    pub reporter: Option<Reporter>,
}

/// Deploys `plan` as `deploy` does, with revisions: see `recorded`.
pub(super) async fn deploy_recorded(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    plan: Plan,
    mut opts: DeployOptions,
    safety: &Safety,
) -> ScriptResult<Vec<String>> {
    // Old config and secret versions go once the stack has converged: a rollback needs them.
    opts.prune_versions = false;
    let names =
        |objs: &[FileObject]| -> HashSet<String> { objs.iter().map(|o| o.name.clone()).collect() };
    let kept = (names(&plan.secrets), names(&plan.configs));
    let change = deploy(host, &e.docker, stack, plan, &opts);
    recorded(host, e, stack, safety, kept, change).await
}

/// Makes `change` to the stack (a deploy, an image update: a future that returns the names of
/// the services it wrote, not polled before the state found is recorded) with revisions: the
/// state found is recorded first; a change that changed something records the state it left;
/// one that failed (and did not meet Ctrl-C) puts every service back as it was, waits for
/// that, records the failure, and fails with the first error and the revision it returned to.
/// `kept`: the secret and config names the change uses, kept when old versions are pruned.
pub(super) async fn recorded(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    safety: &Safety,
    kept: (HashSet<String>, HashSet<String>),
    change: impl std::future::Future<Output = ScriptResult<Vec<String>>>,
) -> ScriptResult<Vec<String>> {
    let d = &e.docker;
    fence::check(e, stack, "deploying").await?;
    let before = snapshot(e, stack).await?;
    let mut history = History::load(d, stack).await?;
    let base = history.record_found(d, &before).await?;
    // An interrupt from here on records the state it left (`interrupted`).
    let _interrupted =
        interrupted::Pending::register(host, e, stack, &before, base, &safety.operation);
    let (new_secrets, new_configs) = kept;
    let found = Found::read(d, stack).await?;
    let had_history = !history.revisions.is_empty();
    let baseline = Baseline::read(d, stack).await?;
    let applied = async {
        let names = change.await?;
        if safety.wait {
            let report = safety.reporter.as_ref();
            converge_reporting(
                host,
                e,
                stack,
                &baseline,
                Goal::Deploy,
                safety.timeout,
                report,
            )
            .await?;
        }
        Ok::<_, Box<rhai::EvalAltResult>>(names)
    }
    .await;
    let error = match applied {
        Ok(names) => {
            let status = if safety.wait {
                "deployed"
            } else {
                "applied, not waited for"
            };
            let kept = (new_secrets, new_configs);
            let operation = (safety.operation.as_str(), status);
            record_converged(
                host,
                e,
                stack,
                &mut history,
                operation,
                (&before, base),
                &kept,
            )
            .await?;
            return Ok(names);
        }
        Err(e) if host.is_interrupted() => return Err(e),
        Err(e) => message_of(&e),
    };
    let after = snapshot(e, stack).await;
    if let Err(lost) = fence::check(e, stack, "rolling back or recording the failed deploy").await {
        return Err(script_err(format!(
            "{}; the deploy had failed: {error}",
            message_of(&lost)
        )));
    }
    // What the failed deploy changed, for the history (nothing known if the engine is gone).
    let changed = after.map(|a| changes(&before, &a)).unwrap_or_default();
    let (status, verdict) = match base {
        Some(rev) if safety.rollback => {
            host.warn(&format!(
                "the deploy of stack {stack} failed ({error}); rolling the stack back to revision {rev}"
            ));
            let back = async {
                let baseline = Baseline::read(d, stack).await?;
                restore(host, e, stack, &before).await?;
                converge(host, e, stack, &baseline, Goal::Rollback, safety.timeout).await?;
                arrived(stack, &before, &snapshot(e, stack).await?)?;
                // The versions the failed deploy made, which no service uses now.
                let (secrets, configs) =
                    (state_names(&before, "secrets"), state_names(&before, "configs"));
                prune_old_versions(host, d, stack, &secrets, &configs).await?;
                leftovers::remove_new_networks(host, d, stack, &found, safety.timeout).await
            }
            .await;
            match back {
                Ok(()) => (
                    format!("failed: {error}; rolled back to revision {rev}"),
                    format!("{error}; the stack was rolled back to revision {rev}"),
                ),
                Err(e) => (
                    format!("failed: {error}; the rollback to revision {rev} failed too"),
                    format!(
                        "{error}; rolling the stack back to revision {rev} failed too: {}",
                        message_of(&e)
                    ),
                ),
            }
        }
        Some(rev) => (
            format!("failed: {error}; left as it is (no rollback)"),
            format!("{error}; the stack was left as it is (`stack rollback --to {rev}` returns it to the previous revision)"),
        ),
        None if safety.rollback => {
            host.warn(&format!(
                "the first deploy of stack {stack} failed ({error}); removing what it made"
            ));
            match leftovers::remove_first_deploy(host, d, stack, &found, safety.timeout).await {
                // Nothing is left of the stack: nor is a history of it, unless it had one.
                Ok(()) if !had_history => {
                    return Err(script_err(format!(
                        "{error}; the stack had no previous revision, and what the deploy made was removed"
                    )))
                }
                Ok(()) => (
                    format!("failed: {error}; no previous revision, what it made removed"),
                    format!("{error}; the stack had no previous revision, and what the deploy made was removed"),
                ),
                Err(e) => (
                    format!("failed: {error}; no previous revision, and removing what it made failed"),
                    format!(
                        "{error}; the stack had no previous revision, and removing what the deploy made failed too: {}",
                        message_of(&e)
                    ),
                ),
            }
        }
        None => (
            format!("failed: {error}; no previous revision"),
            format!("{error}; the stack had no previous revision to roll back to (left as it is)"),
        ),
    };
    // Recorded even when nothing differs any more: the engine may have undone a failed update
    // itself (`failure_action: rollback`) before the stack's rollback looked.
    let recorded = history
        .append(d, &safety.operation, &status, changed, None)
        .await;
    if let Err(e) = recorded {
        host.warn(&format!(
            "the failed deploy is not in the history: {}",
            message_of(&e)
        ));
    }
    Err(script_err(verdict))
}

/// Checks that a rollback left the stack at the state it went for. The wait accepts the
/// engine's own rollback of a service as the way back (`Goal::Rollback`); were it the engine
/// undoing the rollback itself (the earlier spec failing too), the stack would be elsewhere.
fn arrived(stack: &str, goal: &Value, now: &Value) -> ScriptResult<()> {
    let left = changes(goal, now);
    if left.is_empty() {
        return Ok(());
    }
    Err(script_err(format!(
        "stack {stack} is not as the revision it went back to left it (the engine undid part of it): {}",
        left.join("; ")
    )))
}

/// Returns the stack to revision `to` (0: the one before the current), waits unless told
/// not to, and records the rollback as a revision. Returns #{from, to, rev}.
async fn rollback_stack(
    host: &Host,
    e: &EngineHandle,
    stack: &str,
    to: i64,
    wait: bool,
    timeout: Duration,
    operation: &str,
) -> ScriptResult<Map> {
    let d = &e.docker;
    fence::check(e, stack, "rolling the stack back").await?;
    let before = snapshot(e, stack).await?;
    let mut history = History::load(d, stack).await?;
    let from = history.record_found(d, &before).await?;
    let goal = target(&history, stack, to)?;
    let goal_rev = goal["rev"].as_i64().unwrap_or(0);
    let state = &goal["state"];
    let baseline = Baseline::read(d, stack).await?;
    restore(host, e, stack, state).await?;
    if wait {
        converge(host, e, stack, &baseline, Goal::Rollback, timeout).await?;
    }
    let after = snapshot(e, stack).await?;
    if wait {
        arrived(stack, state, &after)?;
    }
    fence::check(e, stack, "recording the rollback").await?;
    let rev = history
        .append(
            d,
            operation,
            &format!("rolled back to revision {goal_rev}"),
            changes(&before, &after),
            Some(after),
        )
        .await?;
    let mut m = Map::new();
    m.insert(
        "from".into(),
        from.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert("to".into(), Dynamic::from(goal_rev));
    m.insert("rev".into(), Dynamic::from(rev));
    Ok(m)
}

/// `e.rollback_stack`'s options.
const ROLLBACK_OPTS: &[Opt] = &[
    ("to", "a revision; the one before the current when absent"),
    ("wait", "true: waits until the services run again"),
    ("timeout", "seconds, 300: how long it waits"),
    (
        "operation",
        "\"rollback\": the command the history names (`drift --revert`)",
    ),
];

/// Registers `e.stack_history` and `e.rollback_stack`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.stack_history(stack: string) -> array").doc(
        "The stack's kept revisions, oldest first: `#{rev, time, by (user@host), operation, \
         status, changes, images}`; a status says how a deploy ended (`deployed`, `failed: …`, \
         `interrupted …` with the command that returns the stack). A stored document that is not \
         a history is an error naming it, never an empty list.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str| -> ScriptResult<Array> {
            let history = h.block(History::load(&e.docker, stack))?;
            history
                .revisions
                .iter()
                .map(|r| to_dynamic(&summary(r)))
                .collect()
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.rollback_stack(stack: string, opts: map) -> map")
        .opts(ROLLBACK_OPTS)
        .doc(
            "Returns every service of the stack to a kept revision and records that as a new \
             revision. Returns `#{from, to, rev}`; a revision whose config or secret versions are \
             gone is refused before anything changes.",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle, stack: &str, opts: Map| -> ScriptResult<Map> {
            check_opts("e.rollback_stack", &opts, ROLLBACK_OPTS)?;
            let to = opt_int(&opts, "to", 0);
            let wait = opt_bool(&opts, "wait", true);
            let timeout = opt_secs(&opts, "timeout", 300);
            let operation = opt_str(&opts, "operation", "rollback");
            h.block(rollback_stack(&h, e, stack, to, wait, timeout, &operation))
        },
    );
}
