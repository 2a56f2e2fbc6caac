//! `cleanup::store_write` — a store document written however the command ends: the jobs
//! runner gives its lease up this way when it is stopped (SIGTERM), so the next runner takes
//! over at once instead of waiting the lease out.

use std::sync::Arc;

use rhai::{Dynamic, Module};

use super::{store, EngineHandle};
use crate::host::cleanup::Action;
use crate::host::doc::Prim;
use crate::host::{to_json, Host, ScriptResult};

/// Adds `cleanup::store_write` to the `cleanup::` module.
pub fn register_store_cleanup(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new(
        "cleanup::store_write(engine: Engine, name: string, value, version: int, what: string) -> int",
    )
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
              what: &str|
              -> ScriptResult<i64> {
            let value = to_json(&value)?;
            let name = name.to_string();
            let expected = (version > 0).then_some(version as u64);
            let action = Action::new(move || async move {
                store::write(&e.docker, &name, &value, expected)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            Ok(h.cleanups.add(what, action))
        },
    );
}
