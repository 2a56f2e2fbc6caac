//! Faults on the multi-host test bed, with nothing lost: an engine killed during `start`,
//! `dump-db` and `stop`, the SSH link cut during `dump-db`, and a registry answering 500 during
//! `build-all-nodes`. Each command either finishes correctly after the fault or fails with one
//! clear line within its deadline, and the state before it (the old dump's bytes, the config,
//! the running stack) is still there. The Docker CLI on each host's own socket is the witness.
//!
//! One test bed for the whole file: a swarm of a manager and a worker (netns hosts with sshd,
//! tests/fixtures/netns-host), made by the first test that needs it and brought down when the
//! test binary exits (`atexit`), also after a failure. Each test owns a uniquely named stack on
//! it. Tests that kill an engine hold `ENGINES` exclusively and revive the engine in `Drop`;
//! the others share it and run in parallel.

#[path = "faults/bed.rs"]
mod bed;
mod common;

use std::time::{Duration, Instant};

use bed::*;
use common::*;

#[test]
fn a_workers_engine_killed_during_start() {
    let sw = swarm();
    let _only = ENGINES.write().unwrap_or_else(|e| e.into_inner());
    let case = Case::new("wfa");
    let config = std::fs::read(case.config_file()).unwrap();
    let child = case.spawn(&["start"]);
    // Once the services exist wsm waits for their tasks: the worker's engine dies then.
    wait_for("the stack's services", 60, || case.services().len() == 4);
    let _revive = Revive(&sw.worker);
    kill_dockerd(&sw.worker);
    let t0 = Instant::now();
    let (r, took) = finish(child, t0, 150);
    eprintln!(
        "start after the fault: {} in {took:?}\n{}{}",
        r.code, r.stdout, r.stderr
    );
    assert_eq!(std::fs::read(case.config_file()).unwrap(), config);
    r.ok();
    // The swarm moved the worker's tasks to the manager: every service runs its replicas.
    assert!(case.converged(), "{:?}", case.services());
}

#[test]
fn the_managers_engine_killed_during_stop() {
    let sw = swarm();
    let _only = ENGINES.write().unwrap_or_else(|e| e.into_inner());
    let case = Case::new("wfo");
    case.stack(&["start"]).ok();
    let config = std::fs::read(case.config_file()).unwrap();
    let child = case.spawn(&["stop"]);
    // The services are gone and wsm waits for their containers: the manager's engine dies.
    wait_for("the services removed", 60, || case.services().is_empty());
    let t0 = Instant::now();
    {
        let _revive = Revive(&sw.manager);
        kill_dockerd(&sw.manager);
        std::thread::sleep(Duration::from_secs(2));
    }
    let (r, took) = finish(child, t0, 150);
    eprintln!(
        "stop after the fault: {} in {took:?}\n{}{}",
        r.code, r.stdout, r.stderr
    );
    assert_eq!(std::fs::read(case.config_file()).unwrap(), config);
    r.ok();
    assert!(case.services().is_empty());
}

/// Starts a stack, fills the /db of its node on the worker, and dumps that node over an old
/// dump; `fault` strikes once the copy is half-way and returns what undoes it. The dump must
/// fail within `within` with one line naming the worker, and nothing may be lost: the old
/// dump's bytes, no temp file beside it, no freeze, the config, the stack's services.
fn dump_db_with_fault<G>(prefix: &str, within: Duration, fault: impl FnOnce(&Case) -> G) {
    let sw = swarm();
    let case = Case::new(prefix);
    case.stack(&["start"]).ok();
    let (container, slot) = case.node_on(&sw.worker);
    grow_db(&sw.worker, &container, 300);
    let out = case.path("node.tar.gz");
    std::fs::write(&out, b"the previous dump").unwrap();
    let config = std::fs::read(case.config_file()).unwrap();
    let child = case.spawn(&["dump-db", &slot, out.to_str().unwrap()]);
    wait_for_partial(&out);
    let _undo = fault(&case);
    let (r, took) = finish(child, Instant::now(), 60);
    eprintln!(
        "dump-db after the fault: {} in {took:?}\n{}",
        r.code, r.stderr
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = error_line(&r);
    assert!(line.contains(sw.worker.ip()), "which host? {line}");
    assert!(
        !r.stderr.contains("freezing"),
        "a lost engine is no changing /db: {}",
        r.stderr
    );
    assert!(took < within, "took {took:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous dump");
    let temps = files_starting(out.parent().unwrap(), ".node.tar.gz");
    assert!(temps.is_empty(), "{temps:?}");
    assert_eq!(std::fs::read(case.config_file()).unwrap(), config);
    assert_eq!(case.services().len(), 4, "the stack was touched");
}

#[test]
fn a_nodes_engine_killed_during_dump_db_from_that_host() {
    let _only = ENGINES.write().unwrap_or_else(|e| e.into_inner());
    let worker = &swarm().worker;
    dump_db_with_fault("wfd", Duration::from_secs(10), |_| {
        let revive = Revive(worker);
        kill_dockerd(worker);
        revive
    });
}

#[test]
fn the_ssh_link_cut_during_dump_db() {
    let _shared = ENGINES.read().unwrap_or_else(|e| e.into_inner());
    // WSM_SSH_TIMEOUT=5: three unanswered keep-alives, 15 s, end the link.
    dump_db_with_fault("wfc", Duration::from_secs(35), |case| {
        Cut::link(&swarm().worker, &case.path(".xdg-state"))
    });
}

#[test]
fn the_registry_answering_500_during_build_all_nodes() {
    // On the local engine, not the bed: it needs no lock.
    let registry = FailingRegistry::start();
    let s = TestStack::new("wfr");
    s.set("REGISTRY", &registry.addr);
    s.set("WSM_BASE_IMAGE", &registry.base);
    let config = std::fs::read(s.config_file()).unwrap();
    let t0 = Instant::now();
    let r = s.wsm(&["build-all-nodes", &s.name]);
    let took = t0.elapsed();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let line = error_line(&r);
    assert!(
        line.contains("500") && line.contains(&registry.addr),
        "{line}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(std::fs::read(s.config_file()).unwrap(), config);

    // start rebuilding first stops at the failed push: nothing of the stack is deployed.
    s.set("WAVELET_REBUILD_ON_START", "true");
    let r = s.stack(&["start"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(error_line(&r).contains("500"), "{}", r.stderr);
    assert!(s.services().is_empty(), "{:?}", s.services());
}
