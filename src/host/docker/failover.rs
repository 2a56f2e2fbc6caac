//! Manager failover: `docker::connect(hosts)` reaches the first engine of a list that answers
//! (docker/cli#3352). A swarm's record lists its managers (`stdlib/swarm.rhai`,
//! `sw::engine_hosts`); every command that reaches a swarm through its record connects through
//! here, so a manager whose engine is gone (connection refused, no answer to `_ping`, its host
//! unreachable over SSH) is passed over in this one place, said with `-v`.

use std::sync::Arc;

use rhai::{Array, EvalAltResult, Module};

use super::{connect_checked, EngineHandle};
use crate::host::doc::Prim;
use crate::host::{script_err, usage_err, Host, ScriptResult};

/// Whether a connect error is the address's fault (a usage error: an unsupported address, a
/// missing context), which another manager would not mend.
fn is_usage(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorRuntime(v, _) => v.is_map(),
        _ => false,
    }
}

/// The first of `hosts` whose engine answers; each passed over is said with `-v`, and when
/// none answers the error names each with its reason.
fn connect_first(h: &Host, hosts: &[String]) -> ScriptResult<EngineHandle> {
    // The list's own entry in the cache: the engine a failover chose, so that later calls with
    // the same list do not wait for the managers passed over again, while a connection to one
    // of those alone (a node's own engine) still fails as it should.
    let key = format!("failover:{}", hosts.join(","));
    if let Some(e) = h.engines.lock().expect("engine cache").get(&key) {
        return Ok(e.clone());
    }
    let mut failures = Vec::new();
    for (i, addr) in hosts.iter().enumerate() {
        // With another manager to try, this one must answer now, not from a version known.
        match connect_checked(h, addr, hosts.len() > 1) {
            Ok(e) => {
                if i > 0 {
                    h.engines
                        .lock()
                        .expect("engine cache")
                        .insert(key, e.clone());
                }
                return Ok(e);
            }
            Err(err) if h.is_interrupted() || is_usage(&err) => return Err(err),
            Err(err) => {
                let reason = match *err {
                    EvalAltResult::ErrorRuntime(ref v, _) => v.to_string(),
                    ref other => other.to_string(),
                };
                if h.opts.verbose {
                    match hosts.get(i + 1) {
                        Some(next) => {
                            eprintln!("docker: the manager at {addr} does not answer ({reason}); trying {next}")
                        }
                        None => {
                            eprintln!("docker: the manager at {addr} does not answer ({reason})")
                        }
                    }
                }
                failures.push(format!("{addr}: {reason}"));
            }
        }
    }
    if failures.len() == 1 {
        return Err(script_err(failures.remove(0)));
    }
    Err(script_err(format!(
        "no manager of the swarm answers: {}",
        failures.join("; ")
    )))
}

/// Registers `docker::connect(hosts: array)` beside `docker::connect(host: string)`.
pub(super) fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    // Its text is on `docker::connect(host: string)`, one doc for the name (host/doc.rs).
    let prim = Prim::new("docker::connect(hosts: array) -> Engine");
    prim.set_in(m, move |hosts: Array| -> ScriptResult<EngineHandle> {
        let hosts: Vec<String> = hosts.iter().map(|v| v.to_string()).collect();
        if hosts.is_empty() {
            return Err(usage_err("docker::connect: no engine address given"));
        }
        connect_first(&h, &hosts)
    });
}
