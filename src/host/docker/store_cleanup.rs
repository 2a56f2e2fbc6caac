//! `cleanup::store_write` — a store document written however the command ends: the jobs
//! runner gives its lease up this way when it is stopped (SIGTERM), so the next runner takes
//! over at once instead of waiting the lease out.
//!
//! The signal may come while the command's own write of that document is in flight (a lease
//! renewal): the engine applies it, the version moves, and a write at the version armed
//! before would be refused. With the option `same`, a document that moved is written over at
//! its new version while the field `same` still names the same writer: its own later write
//! does not stop the cleanup, another writer's does.

use std::sync::Arc;

use rhai::{Dynamic, Map, Module};
use serde_json::Value;

use super::store::{self, StoreError};
use super::EngineHandle;
use crate::host::cleanup::Action;
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::{to_json, usage_err, Host, ScriptResult};

const STORE_WRITE_OPTS: &[Opt] = &[(
    "same",
    "(): a document that moved since `version` is left as it is. A key of `value`: a document \
     that moved is written over at its new version while its own value of that key equals \
     `value`'s (the writer's own later write, in flight when the signal came, does not stop \
     the cleanup; another writer's does)",
)];

/// How many times a write whose document moved under it is tried again (`same`).
const TRIES: usize = 3;

/// Adds `cleanup::store_write` to the `cleanup::` module.
pub fn register_store_cleanup(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new(
        "cleanup::store_write(engine: Engine, name: string, value, version: int, what: string, opts: map) -> int",
    )
    .opts(STORE_WRITE_OPTS)
    .doc(
        "Writes the store document `name` (as `e.store_write` does, at `version`) when the \
         command ends by an error, Ctrl-C or SIGTERM, unless `cleanup::run` or `cleanup::cancel` \
         came first; returns its id. The jobs runner gives its lease up this way.",
    );
    prim.set_in(
        m,
        move |e: EngineHandle,
              name: &str,
              value: Dynamic,
              version: i64,
              what: &str,
              opts: Map|
              -> ScriptResult<i64> {
            check_opts("cleanup::store_write", &opts, STORE_WRITE_OPTS)?;
            let same = match opts.get("same") {
                None => None,
                Some(v) if v.is_unit() => None,
                Some(v) => Some(v.clone().into_string().map_err(|_| {
                    usage_err("cleanup::store_write: `same` is the name of a key of the value")
                })?),
            };
            if let Some(key) = &same {
                let has = value
                    .read_lock::<Map>()
                    .is_some_and(|v| v.contains_key(key.as_str()));
                if !has {
                    return Err(usage_err(format!(
                        "cleanup::store_write: `same` names {key}, which the value has not"
                    )));
                }
            }
            add(&h, e, name, value, version, what, same)
        },
    );
    let h = host.clone();
    Prim::new(
        "cleanup::store_write(engine: Engine, name: string, value, version: int, what: string) -> int",
    )
    .set_in(
        m,
        move |e: EngineHandle,
              name: &str,
              value: Dynamic,
              version: i64,
              what: &str|
              -> ScriptResult<i64> { add(&h, e, name, value, version, what, None) },
    );
}

/// Registers the cleanup action.
fn add(
    h: &Arc<Host>,
    e: EngineHandle,
    name: &str,
    value: Dynamic,
    version: i64,
    what: &str,
    same: Option<String>,
) -> ScriptResult<i64> {
    let value = to_json(&value)?;
    let name = name.to_string();
    let expected = (version > 0).then_some(version as u64);
    let action = Action::new(move || async move {
        write_over_own(&e, &name, &value, expected, same.as_deref())
            .await
            .map_err(|e| e.to_string())
    });
    Ok(h.cleanups.add(what, action))
}

/// Writes `value` at `expected`; with `same`, a document that moved is written at its new
/// version while its value of that key is still `value`'s.
async fn write_over_own(
    e: &EngineHandle,
    name: &str,
    value: &Value,
    mut expected: Option<u64>,
    same: Option<&str>,
) -> Result<(), StoreError> {
    for _ in 0..TRIES {
        match store::write(&e.docker, name, value, expected).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(m)) => {
                let Some(key) = same else {
                    return Err(StoreError::Conflict(m));
                };
                match store::read(&e.docker, name).await? {
                    Some(now) if now.value.get(key) == value.get(key) => {
                        expected = Some(now.version)
                    }
                    _ => return Err(StoreError::Conflict(m)),
                }
            }
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Conflict(format!(
        "document {name} kept moving under its cleanup ({TRIES} tries)"
    )))
}
