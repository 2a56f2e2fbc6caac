//! A deploy whose wait goes on while the script does something else (`e.deploy_begin`): the
//! same deploy as `e.deploy` (the plan applied, the wait until the engine says it is done, the
//! revision recorded or the stack rolled back), run on the runtime beside the script. The script
//! may wait until some services run (`wait_running`) and act on them while the other services'
//! tasks still start, wait for their health checks or run through their monitor windows; then
//! `finish` returns what `e.deploy` would have returned, or fails as it would have failed.
//!
//! Why not a callback: a primitive never calls back into a script (ARCHITECTURE.md). Why not a
//! second deploy call: the wait, the record and the rollback are one piece (`rollback::recorded`)
//! whose state must not be split across calls.
//!
//! However the script ends, the deploy ends as it would have: a value dropped without `finish`
//! (the script failed meanwhile) waits for the deploy's own end, so it is recorded (or rolled
//! back) before the command's lock goes; Ctrl-C stops the deploy where it stands, as it stops a
//! blocked `e.deploy`, and its interrupted state is recorded (`interrupted`).

use std::sync::{Arc, Mutex};

use rhai::{Array, Dynamic, Engine, Map};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::converge::Progress;
use super::stack::{DeployJob, DEPLOY_OPTS};
use super::EngineHandle;
use crate::host::doc::Prim;
use crate::host::{script_err, Host, ScriptResult};

/// A deploy going on in the background (`e.deploy_begin`).
#[derive(Clone)]
pub struct Deploying(Arc<Mutex<Running>>);

struct Running {
    host: Arc<Host>,
    /// The deploy; taken by `finish`.
    task: Option<JoinHandle<ScriptResult<Vec<String>>>>,
    progress: watch::Receiver<Progress>,
}

impl Running {
    /// Waits for the deploy's end on a thread of its own: this may run where a runtime is
    /// already blocked on (as `interrupted::Pending`'s drop does).
    fn join(&mut self) -> Option<ScriptResult<Vec<String>>> {
        let task = self.task.take()?;
        let rt = self.host.rt.clone();
        let joined = std::thread::scope(|s| s.spawn(|| rt.block_on(task)).join());
        Some(match joined {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(script_err(format!("the deploy stopped: {e}"))),
            Err(_) => Err(script_err("the deploy stopped: its thread panicked")),
        })
    }
}

impl Drop for Running {
    /// Not finished: the deploy still ends as it would have (recorded, or rolled back) before
    /// the script goes on ending; its error, if any, is said.
    fn drop(&mut self) {
        if let Some(Err(e)) = self.join() {
            if !self.host.is_interrupted() {
                self.host.warn(&super::revisions::message_of(&e));
            }
        }
    }
}

/// Registers `e.deploy_begin` and the methods of `Deploying`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<Deploying>("Deploying");
    let h = host.clone();
    let prim = Prim::new("e.deploy_begin(stack: string, plan: map, opts: map) -> Deploying")
        .opts(DEPLOY_OPTS)
        .doc(
            "Begins `e.deploy` (the same plan and opts, checked before anything is made) and \
             returns while it goes on: `deploying.wait_running(services)` waits until some \
             services run, so the script can act on them while the rest is waited for, and \
             `deploying.finish()` returns what `e.deploy` returns, or fails as it fails. A value dropped without `finish` \
             still waits for the deploy's end (recorded or rolled back); Ctrl-C stops it as it \
             stops `e.deploy`.",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle,
              stack: &str,
              plan: Dynamic,
              opts: Map|
              -> ScriptResult<Deploying> {
            let mut job = DeployJob::read(&h, e, stack, plan, &opts, "e.deploy_begin")?;
            let (tx, rx) = watch::channel(Progress::default());
            job.safety.reporter = Some(tx);
            let (host, engine, stack) = (h.clone(), e.clone(), stack.to_string());
            let task = h.rt.spawn(async move {
                let run = job.run(&host, &engine, &stack);
                host.interruptible(run).await
            });
            Ok(Deploying(Arc::new(Mutex::new(Running {
                host: h.clone(),
                task: Some(task),
                progress: rx,
            }))))
        },
    );

    let h = host.clone();
    let prim = Prim::new("deploying.wait_running(services: array) -> bool").doc(
        "Waits until every service named (in full: `<stack>_<name>`) runs all its tasks of the \
         new spec (a job: has completed them): true. False when the deploy's wait ended first \
         (done, failed, or at its deadline: `finish` says which), or when it does not wait.",
    );
    prim.register(
        engine,
        move |d: &mut Deploying, services: Array| -> ScriptResult<bool> {
            let names: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            let mut rx = d.0.lock().expect("deploying").progress.clone();
            h.block(async move {
                loop {
                    {
                        let p = rx.borrow_and_update();
                        if names.iter().all(|n| p.reached.contains(n)) {
                            return Ok(true);
                        }
                        if p.ended {
                            return Ok(false);
                        }
                    }
                    if rx.changed().await.is_err() {
                        return Ok(false);
                    }
                }
            })
        },
    );

    let prim = Prim::new("deploying.finish() -> array").doc(
        "Waits for the deploy's end: the service names, as `e.deploy` returns them, or its \
         error (after the stack was rolled back when it fails). Once only.",
    );
    prim.register(engine, |d: &mut Deploying| -> ScriptResult<Array> {
        let mut running = d.0.lock().expect("deploying");
        let names = running
            .join()
            .ok_or_else(|| script_err("this deploy was finished already"))??;
        Ok(names.into_iter().map(Dynamic::from).collect())
    });
}
