//! What a failed deploy made, taken away again. The stack's networks, secrets and configs are
//! read before the deploy (`Found`); when it fails, a first deploy (no service before) has
//! everything it made removed, services included, so a refused file leaves nothing on the
//! swarm; a redeploy, once its services are back at the previous revision (`rollback`), has
//! the networks it made removed (its config and secret versions go with the old-version
//! pruning).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bollard::Docker;

use super::objects::{self, Kind};
use super::{absent_on_404, docker_message, list_networks, stack_filter, str_at};
use crate::host::{script_err, Host, ScriptResult};

/// The ids of the stack's networks, secrets and configs as a deploy found them.
pub(super) struct Found {
    ids: HashSet<String>,
    networks: HashSet<String>,
}

impl Found {
    /// Reads the stack's objects now.
    pub(super) async fn read(d: &Docker, stack: &str) -> ScriptResult<Found> {
        let networks: HashSet<String> = list_networks(d, stack_filter(stack))
            .await?
            .iter()
            .map(|n| str_at(n, &["Id"]).to_string())
            .collect();
        let mut ids = networks.clone();
        for kind in [Kind::Secret, Kind::Config] {
            for o in objects::list(d, kind, stack_filter(stack)).await? {
                ids.insert(str_at(&o, &["ID"]).to_string());
            }
        }
        Ok(Found { ids, networks })
    }
}

/// After a failed first deploy: removes the stack's services and every network, secret and
/// config it did not have before, waiting for the tasks to go as `stack rm` does.
pub(super) async fn remove_first_deploy(
    host: &Host,
    d: &Docker,
    stack: &str,
    found: &Found,
    timeout: Duration,
) -> ScriptResult<()> {
    super::stack::remove_stack(host, d, stack, timeout, &found.ids)
        .await
        .map(|_| ())
}

/// After a failed redeploy was rolled back: removes the stack's networks it did not have
/// before, once the tasks of the services the rollback removed have left them.
pub(super) async fn remove_new_networks(
    host: &Host,
    d: &Docker,
    stack: &str,
    found: &Found,
    timeout: Duration,
) -> ScriptResult<()> {
    let deadline = Instant::now() + timeout;
    let networks = list_networks(d, stack_filter(stack)).await?;
    for net in networks
        .iter()
        .filter(|n| !found.networks.contains(str_at(n, &["Id"])))
    {
        let name = str_at(net, &["Name"]);
        host.say(&format!("Removing network {name}"));
        loop {
            match absent_on_404(d.remove_network(str_at(net, &["Id"]))).await {
                Ok(_) => break,
                // The network frees only once the last container has left it.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(script_err(format!(
                        "removing network {name}: {}",
                        docker_message(&e)
                    )))
                }
            }
        }
    }
    Ok(())
}
