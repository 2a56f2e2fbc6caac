//! Image updates (`scripts/updates/`): what a tag points at in its registry now, and one
//! service moved to a new image as a recorded change of its stack.
//!
//! The registry is asked through the engine's distribution endpoint (`GET
//! /distribution/<image>/json`) with the credentials `docker login` stored, as `docker stack
//! deploy` asks when it pins digests (`apply::pin_image_digests`), so the digest compared is the
//! one a deploy would pin. The update itself is one service's spec sent again with the new image
//! (its update policy, `UpdateConfig`, is the engine's to follow), inside `rollback::recorded`:
//! the state found and the state left are revisions of the stack, and an update that does not
//! converge puts the service back on its old spec and records the failure.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ServiceSpec;
use rhai::{Dynamic, Engine, Map};
use serde_json::Value;

use super::image::{registry_credentials, registry_of, NoDigest};
use super::rollback::{recorded, Safety};
use super::{failed, raw, str_at, EngineHandle};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::{opt_bool, opt_secs, opt_str};
use crate::host::{script_err, usage_err, Host, ScriptResult, NAMESPACE_LABEL};

/// The digest the registry holds for `image` now (`sha256:…`), as a deploy asks for it; an
/// error naming the image when the registry cannot tell or does not answer within `timeout`.
async fn registry_digest(e: &EngineHandle, image: &str, timeout: Duration) -> ScriptResult<String> {
    super::image::registry_digest(&e.docker, image, timeout)
        .await
        .map_err(|why| {
            script_err(match why {
                NoDigest::Timeout => format!(
                    "{image}: the registry did not answer within {} s",
                    timeout.as_secs()
                ),
                NoDigest::Refused(msg) => {
                    format!("{image}: the registry cannot tell its digest: {msg}")
                }
                NoDigest::Empty => format!("{image}: the registry gave no digest"),
            })
        })
}

/// Sends the service's spec again with `image` (the force-update counter and everything else
/// as the engine stores it), with the registry's credentials when `auth`. Returns its name.
async fn set_image(
    host: &Host,
    e: &EngineHandle,
    service: &str,
    image: &str,
    auth: bool,
) -> ScriptResult<Vec<String>> {
    let svc = raw::service(e, service).await?;
    let name = str_at(&svc, &["Spec", "Name"]).to_string();
    let mut spec = raw::spec_for_bollard(&svc["Spec"]);
    spec["TaskTemplate"]["ContainerSpec"]["Image"] = Value::String(image.to_string());
    let typed: ServiceSpec = serde_json::from_value(spec).map_err(script_err)?;
    let creds = if auth {
        registry_credentials(&registry_of(image))
    } else {
        None
    };
    host.say(&format!("Updating service {name} to {image}"));
    super::update_service_at(&e.docker, &svc, typed, None, creds)
        .await
        .map_err(|err| failed(&format!("updating {name}"), err))?;
    Ok(vec![name])
}

/// Moves one service of a stack to `image`, recorded as a revision, waiting until the stack
/// has converged, the service put back on its old spec when it does not. Returns `#{stack,
/// service, from, to}`.
async fn update_image(
    host: &Host,
    e: &EngineHandle,
    service: &str,
    image: &str,
    auth: bool,
    safety: &Safety,
) -> ScriptResult<Map> {
    let svc = raw::service(e, service).await?;
    let stack = str_at(&svc, &["Spec", "Labels", NAMESPACE_LABEL]).to_string();
    if stack.is_empty() {
        return Err(usage_err(format!(
            "service {service} is not part of a stack (it has no {NAMESPACE_LABEL} label)"
        )));
    }
    let name = str_at(&svc, &["Spec", "Name"]).to_string();
    let from = str_at(&svc, &["Spec", "TaskTemplate", "ContainerSpec", "Image"]).to_string();
    let kept = (HashSet::new(), HashSet::new());
    let change = set_image(host, e, &name, image, auth);
    recorded(host, e, &stack, safety, kept, change).await?;
    let mut m = Map::new();
    m.insert("stack".into(), Dynamic::from(stack));
    m.insert("service".into(), Dynamic::from(name));
    m.insert("from".into(), Dynamic::from(from));
    m.insert("to".into(), Dynamic::from(image.to_string()));
    Ok(m)
}

/// `e.registry_digest`'s options.
const DIGEST_OPTS: &[Opt] = &[("timeout", "seconds, 15: how long the registry may take")];

/// `e.update_image`'s options.
const UPDATE_OPTS: &[Opt] = &[
    (
        "timeout",
        "seconds, 300: how long it waits for the stack to converge",
    ),
    (
        "operation",
        "\"updates apply <service>\": the command, as the stack's history records it",
    ),
    (
        "with_registry_auth",
        "false: sends the credentials `docker login` stored to the nodes",
    ),
];

/// Registers `e.registry_digest` and `e.update_image`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.registry_digest(image: string) -> string").doc(
        "The digest (`sha256:…`) the image's registry holds for its tag now, asked through the \
         engine with the credentials `docker login` stored, as a deploy asks when it pins \
         digests. Fails naming the image when the registry does not know it, refuses, or does \
         not answer within the deadline.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, image: &str| -> ScriptResult<String> {
            h.block(registry_digest(e, image, Duration::from_secs(15)))
        },
    );
    let h = host.clone();
    let prim = Prim::new("e.registry_digest(image: string, opts: map) -> string").opts(DIGEST_OPTS);
    prim.register(
        engine,
        move |e: &mut EngineHandle, image: &str, opts: Map| -> ScriptResult<String> {
            check_opts("e.registry_digest", &opts, DIGEST_OPTS)?;
            let timeout = opt_secs(&opts, "timeout", 15);
            h.block(registry_digest(e, image, timeout))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.update_image(service: string, image: string, opts: map) -> map")
        .opts(UPDATE_OPTS)
        .doc(
            "Moves one service of a stack (the stack its `com.docker.stack.namespace` label \
             names) to `image` (e.g. `repo:tag@sha256:…`) by its update policy, and waits until \
             the stack has converged as `e.deploy` waits; recorded in the stack's history (the \
             state found, then the state left). An update that fails to converge puts the stack \
             back on the revision before it, waits for that, records the failure and fails \
             naming the service. Returns `#{stack, service, from, to}` (the images). Hold the \
             stack's lock around it.",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle, service: &str, image: &str, opts: Map| -> ScriptResult<Map> {
            check_opts("e.update_image", &opts, UPDATE_OPTS)?;
            if image.trim().is_empty() {
                return Err(usage_err("e.update_image: the image is empty"));
            }
            let safety = Safety {
                operation: opt_str(&opts, "operation", &format!("updates apply {service}")),
                wait: true,
                timeout: opt_secs(&opts, "timeout", 300),
                rollback: true,
                reporter: None,
            };
            let auth = opt_bool(&opts, "with_registry_auth", false);
            h.block(update_image(&h, e, service, image, auth, &safety))
        },
    );
}
