//! Applying a plan (`compose::plan`) to a stack on an engine: its networks, secrets, configs
//! and services created or updated as `docker stack deploy` does (image digests pinned, the
//! force-update counter kept, a few writes at once), the services it no longer has removed,
//! and the file versions nobody uses any more pruned. `stack` waits and records around it
//! (`rollback::deploy_recorded`); `plan` reads the same `Plan`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use bollard::models::{NetworkCreateRequest, ServiceSpec};
use bollard::Docker;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::image::{registry_credentials, registry_digest, registry_of, NoDigest};
use super::objects::{self, FileObject, Kind};
use super::order::{self, Dependency};
use super::rotate;
use super::{engine_error, failed, list_networks, list_services, stack_filter, str_at};
use crate::host::compose::IMAGE_LABEL;
use crate::host::{script_err, Host, ScriptResult};

/// How many service creations and updates a deploy sends at once.
const CONCURRENT_WRITES: usize = 8;

/// What `e.deploy` creates, as `compose::plan` describes it.
#[derive(Deserialize)]
pub(super) struct Plan {
    pub services: Vec<Named>,
    #[serde(default)]
    pub networks: Vec<Named>,
    #[serde(default)]
    pub secrets: Vec<FileObject>,
    #[serde(default)]
    pub configs: Vec<FileObject>,
    #[serde(default)]
    warnings: Vec<String>,
    /// The order of the writes (`order.rs`).
    #[serde(default)]
    pub depends: Vec<Dependency>,
}

/// How `e.deploy` goes about it: `opts` of the script.
pub(super) struct DeployOptions {
    /// Remove the stack's services the plan no longer has.
    pub prune: bool,
    /// Remove the stack's config and secret versions the plan no longer has at the end (a
    /// recorded deploy does it itself once the stack has converged: a rollback needs them).
    pub prune_versions: bool,
    /// "always" (query the registry for every image's digest), "changed" (only for images
    /// that changed since the last deploy) or "never", as `docker stack deploy --resolve-image`.
    pub resolve_image: String,
    /// Send the registry credentials of `~/.docker/config.json` to the swarm's nodes.
    pub with_registry_auth: bool,
    /// How long a service waits for what it depends on (`order.rs`): the deploy's timeout.
    pub order_timeout: Duration,
}

/// A service or network of a plan: its full name and its Engine API spec.
#[derive(Deserialize)]
pub(super) struct Named {
    pub name: String,
    pub spec: Value,
}

/// Pins each service's image to the digest its registry holds now (`name:tag@sha256:…`), as
/// `docker stack deploy` does, so every node runs the same image and `update` notices a new
/// push. An image the registry cannot tell about keeps its tag (shown with `-v`).
pub(super) async fn pin_image_digests(
    host: &Host,
    d: &Docker,
    services: &mut [Named],
    only: &HashSet<String>,
) {
    let images: BTreeSet<String> = services
        .iter()
        .filter(|s| only.contains(&s.name))
        .filter_map(|s| {
            s.spec
                .pointer("/TaskTemplate/ContainerSpec/Image")
                .and_then(Value::as_str)
        })
        .filter(|i| !i.contains('@'))
        .map(str::to_string)
        .collect();
    let lookups = images.iter().map(|image| async move {
        let digest = match registry_digest(d, image, Duration::from_secs(10)).await {
            Ok(digest) => Some(digest),
            Err(NoDigest::Refused(why)) => {
                if host.opts.verbose {
                    host.warn(&format!(
                        "{image}: no digest from its registry ({why}); deploying the tag"
                    ));
                }
                None
            }
            Err(NoDigest::Timeout | NoDigest::Empty) => None,
        };
        (image.clone(), digest)
    });
    let digests: HashMap<String, Option<String>> = futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .collect();
    for service in services.iter_mut().filter(|s| only.contains(&s.name)) {
        if let Some(Value::String(image)) = service
            .spec
            .pointer_mut("/TaskTemplate/ContainerSpec/Image")
        {
            if let Some(Some(digest)) = digests.get(image.as_str()) {
                *image = format!("{image}@{digest}");
            }
        }
    }
}

/// Which services get their image resolved to a digest, as `docker stack deploy` decides:
/// all with "always", new ones and those whose file image changed with "changed", none with
/// "never". A service whose file image did not change otherwise keeps the image it runs, so
/// an unchanged deploy rolls nothing.
pub(super) fn resolve_images(
    services: &mut [Named],
    existing: &[Value],
    mode: &str,
) -> HashSet<String> {
    let mut query = HashSet::new();
    for svc in services.iter_mut() {
        let old = existing
            .iter()
            .find(|s| str_at(s, &["Spec", "Name"]) == svc.name);
        let file_image = str_at(&svc.spec, &["Labels", IMAGE_LABEL]).to_string();
        let unchanged =
            old.is_some_and(|o| str_at(o, &["Spec", "Labels", IMAGE_LABEL]) == file_image);
        let resolve = match mode {
            "always" => true,
            "changed" => !unchanged,
            _ => false,
        };
        if resolve {
            query.insert(svc.name.clone());
        } else if let (true, Some(o)) = (unchanged, old) {
            let running = o["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].clone();
            svc.spec["TaskTemplate"]["ContainerSpec"]["Image"] = running;
        }
    }
    query
}

/// Creates the plan's missing networks, secrets and configs and its services, updates the
/// services that exist, removes services the plan no longer has when `prune`, and the content
/// versions of secrets and configs no service uses any more. Returns the plan's service names.
pub(super) async fn deploy(
    host: &Host,
    d: &Docker,
    stack: &str,
    plan: Plan,
    opts: &DeployOptions,
) -> ScriptResult<Vec<String>> {
    let Plan {
        mut services,
        networks,
        secrets,
        configs,
        warnings,
        depends,
    } = plan;
    let deadline = std::time::Instant::now() + opts.order_timeout;
    if host.opts.verbose {
        for w in warnings {
            host.warn(&w);
        }
    }
    // Every read the writes need, sent together (one round trip across a WAN, not one each):
    // the stack's networks and services, and the swarm's secrets and configs, whose names the
    // plan's may be, or be rotated to.
    let (existing_nets, all_secrets, all_configs, existing) = tokio::try_join!(
        list_networks(d, stack_filter(stack)),
        objects::list(d, Kind::Secret, HashMap::new()),
        objects::list(d, Kind::Config, HashMap::new()),
        list_services(d, stack_filter(stack)),
    )?;
    for net in networks {
        if existing_nets
            .iter()
            .any(|n| str_at(n, &["Name"]) == net.name)
        {
            continue;
        }
        host.say(&format!("Creating network {}", net.name));
        let req: NetworkCreateRequest = serde_json::from_value(net.spec).map_err(script_err)?;
        d.create_network(req).await.map_err(engine_error)?;
    }
    // A version rotated since (`rotate.rs`) is followed, not made again.
    let secrets_renamed = rotate::follow(host, Kind::Secret, &secrets, &all_secrets);
    let configs_renamed = rotate::follow(host, Kind::Config, &configs, &all_configs);
    let unrotated = |objs: &[FileObject], renamed: &HashMap<String, String>| -> Vec<FileObject> {
        objs.iter()
            .filter(|o| !renamed.contains_key(&o.name))
            .map(FileObject::clone)
            .collect()
    };
    let secret_ids = objects::ensure(
        host,
        d,
        Kind::Secret,
        &unrotated(&secrets, &secrets_renamed),
        &all_secrets,
    )
    .await?;
    let config_ids = objects::ensure(
        host,
        d,
        Kind::Config,
        &unrotated(&configs, &configs_renamed),
        &all_configs,
    )
    .await?;
    for svc in services.iter_mut() {
        rotate::rename_references(&mut svc.spec, Kind::Secret, &secrets_renamed);
        rotate::rename_references(&mut svc.spec, Kind::Config, &configs_renamed);
        objects::point_references(&mut svc.spec, Kind::Secret, &secret_ids)?;
        objects::point_references(&mut svc.spec, Kind::Config, &config_ids)?;
    }
    let query = resolve_images(&mut services, &existing, &opts.resolve_image);
    pin_image_digests(host, d, &mut services, &query).await;
    // In waves of `depends` (one wave without): a wave waits for the conditions of what it
    // depends on, then its services, independent of each other, are sent at once (a few at a
    // time), said in the plan's order.
    let all: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    let waves = order::waves(&all, &depends)?;
    let before_tasks: HashSet<String> = if depends.iter().any(|d| d.restart) {
        super::list_tasks(d, stack_filter(stack))
            .await?
            .iter()
            .map(|t| str_at(t, &["ID"]).to_string())
            .collect()
    } else {
        HashSet::new()
    };
    let mut slots: Vec<Option<Named>> = services.into_iter().map(Some).collect();
    let mut names = Vec::new();
    for wave in waves {
        let wanted: Vec<&Dependency> = depends
            .iter()
            .filter(|dep| wave.iter().any(|&i| all[i] == dep.service))
            .filter(|dep| all.contains(&dep.on))
            .collect();
        order::reach(host, d, stack, &wanted, deadline, opts.order_timeout).await?;
        let restart = order::restarted(d, stack, &wanted, &before_tasks).await?;
        let batch: Vec<Named> = wave.iter().filter_map(|&i| slots[i].take()).collect();
        names.extend(write_services(host, d, batch, &existing, opts, &restart).await?);
    }
    if opts.prune {
        for svc in &existing {
            let name = str_at(svc, &["Spec", "Name"]);
            if !names.iter().any(|n| n == name) {
                host.say(&format!("Removing service {name}"));
                d.delete_service(str_at(svc, &["ID"]))
                    .await
                    .map_err(engine_error)?;
            }
        }
    }
    if opts.prune_versions {
        let names = |objs: &[FileObject]| objs.iter().map(|o| o.name.clone()).collect();
        prune_old_versions(host, d, stack, &names(&secrets), &names(&configs)).await?;
    }
    Ok(names)
}

/// Creates or updates one wave of services at once (a few at a time), said in order; the ones
/// in `restart` (a dependency of `restart: true` was restarted) get their force-update counter
/// raised. Returns their names.
async fn write_services(
    host: &Host,
    d: &Docker,
    services: Vec<Named>,
    existing: &[Value],
    opts: &DeployOptions,
    restart: &HashSet<String>,
) -> ScriptResult<Vec<String>> {
    let mut writes = Vec::new();
    for Named { name, mut spec } in services {
        let creds = if opts.with_registry_auth {
            registry_credentials(&registry_of(str_at(
                &spec,
                &["TaskTemplate", "ContainerSpec", "Image"],
            )))
        } else {
            None
        };
        let old = existing
            .iter()
            .find(|s| str_at(s, &["Spec", "Name"]) == name);
        match old {
            Some(svc) => {
                host.say(&format!(
                    "Updating service {name} (id: {})",
                    str_at(svc, &["ID"])
                ));
                // As docker: keep the force-update counter, so a deploy rolls nothing by itself.
                if let Some(force) = svc.pointer("/Spec/TaskTemplate/ForceUpdate") {
                    spec["TaskTemplate"]["ForceUpdate"] = force.clone();
                }
                if restart.contains(&name) {
                    host.say(&format!(
                        "Restarting service {name}: a dependency was restarted"
                    ));
                    let n = svc
                        .pointer("/Spec/TaskTemplate/ForceUpdate")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    spec["TaskTemplate"]["ForceUpdate"] = serde_json::json!(n + 1);
                }
            }
            None => host.say(&format!("Creating service {name}")),
        }
        let typed: ServiceSpec = serde_json::from_value(spec).map_err(script_err)?;
        writes.push(async move {
            match old {
                Some(svc) => {
                    super::update_service_at(d, svc, typed, None, creds)
                        .await
                        .map_err(|e| failed(&format!("updating {name}"), e))?;
                }
                None => {
                    d.create_service(typed, creds)
                        .await
                        .map_err(|e| failed(&format!("creating {name}"), e))?;
                }
            }
            Ok::<_, Box<rhai::EvalAltResult>>(name)
        });
    }
    let done: Vec<ScriptResult<String>> = futures_util::stream::iter(writes)
        .buffered(CONCURRENT_WRITES)
        .collect()
        .await;
    done.into_iter().collect()
}

/// Removes the stack's secret and config versions that are not named here and that neither a
/// service nor a kept revision uses: the old versions of a changed file, once no `rollback
/// --to` can return to them.
pub(super) async fn prune_old_versions(
    host: &Host,
    d: &Docker,
    stack: &str,
    secrets: &HashSet<String>,
    configs: &HashSet<String>,
) -> ScriptResult<()> {
    let (kept_secrets, kept_configs) = super::revisions::kept_versions(d, stack).await?;
    let secrets = secrets | &kept_secrets;
    let configs = configs | &kept_configs;
    objects::prune_versions(host, d, stack, Kind::Secret, &secrets).await?;
    objects::prune_versions(host, d, stack, Kind::Config, &configs).await
}
