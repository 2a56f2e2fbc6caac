//! What the engine is certain to refuse, found before a deploy creates anything: a deploy the
//! engine refuses half-way has already made networks, secrets and other services. Each check
//! reads the swarm once and says what `docker stack deploy` or the engine would say, as bad
//! input (exit 2, nothing changed):
//!
//! - an external network that does not exist, or is not swarm-scoped (docker/cli's
//!   `validateExternalNetworks`; `bridge` and `host` are the swarm's own and always there);
//! - a secret or config a service uses that neither the plan creates nor the swarm has, under
//!   its name or as one it was rotated from (the engine: "secret not found");
//! - an ingress port published twice, by two services of the plan or by a service of another
//!   stack (the engine: "port '8080' is already in use by service …");
//! - a placement constraint without its operator (the engine: "constraint expected one
//!   operator from ==, !=").

use std::collections::{BTreeMap, HashMap, HashSet};

use bollard::Docker;
use serde_json::Value;

use super::apply::Plan;
use super::objects::{self, Kind};
use super::{list_networks, list_services, str_at, NAMESPACE_LABEL};
use crate::host::{input_err, ScriptResult};

/// Networks every swarm has, which no external declaration needs to find (docker/cli skips
/// the names that are not user-defined).
const PREDEFINED: &[&str] = &["bridge", "host", "default"];

/// Refuses, in one line, a plan the engine is certain to refuse part of. Each list of the whole
/// swarm is read only when the plan needs it (an external network, an ingress port, a secret
/// or config it does not create): on a swarm of hundreds of services, listing them all for a
/// plan that publishes no ingress port was most of a `plan`'s bytes (issue 28).
pub(super) async fn check(d: &Docker, stack: &str, plan: &Plan) -> ScriptResult<()> {
    let external = external_network_names(plan)
        .iter()
        .any(|(_, name)| !PREDEFINED.contains(&name.as_str()));
    let ingress = plan.services.iter().any(|s| !published(&s.spec).is_empty());
    let (networks, services) = tokio::try_join!(
        async {
            match external {
                true => list_networks(d, HashMap::new()).await,
                false => Ok(Vec::new()),
            }
        },
        async {
            match ingress {
                true => list_services(d, HashMap::new()).await,
                false => Ok(Vec::new()),
            }
        }
    )?;
    external_networks(plan, &networks).map_err(input_err)?;
    for kind in [Kind::Secret, Kind::Config] {
        if file_objects(plan, kind, &HashSet::new()).is_ok() {
            continue; // every one the services use is the plan's own
        }
        // An object is had by its name, and by the names it was rotated from, which a deploy
        // follows to it (`rotate::follow`).
        let have: HashSet<String> = objects::list(d, kind, HashMap::new())
            .await?
            .iter()
            .flat_map(|o| {
                let labels = &o["Spec"]["Labels"];
                [
                    Some(str_at(o, &["Spec", "Name"])),
                    labels[super::rotate::ROTATED_FROM].as_str(),
                    labels[super::rotate::VERSION_OF].as_str(),
                ]
            })
            .flatten()
            .map(str::to_string)
            .collect();
        file_objects(plan, kind, &have).map_err(input_err)?;
    }
    constraints(plan).map_err(input_err)?;
    ingress_ports(plan, stack, &services).map_err(input_err)
}

/// Every placement constraint compares with `==` or `!=`, as swarmkit parses it.
fn constraints(plan: &Plan) -> Result<(), String> {
    for svc in &plan.services {
        for c in svc.spec["TaskTemplate"]["Placement"]["Constraints"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let c = c.as_str().unwrap_or("");
            if !c.contains("==") && !c.contains("!=") {
                return Err(format!(
                    "service {}: placement constraint {c:?} expected one operator from ==, !=",
                    svc.name
                ));
            }
        }
    }
    Ok(())
}

/// The network names the plan's services join that the plan does not create: the external ones.
fn external_network_names(plan: &Plan) -> Vec<(String, String)> {
    let created: HashSet<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
    let mut out = Vec::new();
    for svc in &plan.services {
        for n in svc.spec["TaskTemplate"]["Networks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let target = str_at(n, &["Target"]);
            if !target.is_empty() && !created.contains(target) {
                out.push((svc.name.clone(), target.to_string()));
            }
        }
    }
    out
}

/// Every external network exists and is swarm-scoped, as docker/cli checks it.
fn external_networks(plan: &Plan, networks: &[Value]) -> Result<(), String> {
    for (_, name) in external_network_names(plan) {
        if PREDEFINED.contains(&name.as_str()) {
            continue;
        }
        let found = networks
            .iter()
            .find(|n| str_at(n, &["Name"]) == name || str_at(n, &["Id"]) == name);
        match found.map(|n| str_at(n, &["Scope"])) {
            None => {
                return Err(format!(
                    "network {name:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed"
                ))
            }
            Some(scope) if scope != "swarm" => {
                return Err(format!(
                    "network {name:?} is declared as external, but it is not in the right scope: {scope:?} instead of \"swarm\""
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Every secret or config a service refers to is created by the plan or is on the swarm.
fn file_objects(plan: &Plan, kind: Kind, have: &HashSet<String>) -> Result<(), String> {
    let (list, name_field, _) = kind.fields();
    let planned = match kind {
        Kind::Secret => &plan.secrets,
        Kind::Config => &plan.configs,
    };
    let created: HashSet<&str> = planned
        .iter()
        .filter(|o| !o.external && o.spec.is_some())
        .map(|o| o.name.as_str())
        .collect();
    for svc in &plan.services {
        let container = &svc.spec["TaskTemplate"]["ContainerSpec"];
        let mut names: Vec<&str> = container[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| str_at(r, &[name_field]))
            .collect();
        if let (Kind::Config, Some(name)) = (
            kind,
            container
                .pointer("/Privileges/CredentialSpec/Config")
                .and_then(Value::as_str),
        ) {
            names.push(name);
        }
        if let Some(missing) = names
            .into_iter()
            .find(|n| !created.contains(n) && !have.contains(*n))
        {
            return Err(format!(
                "service {}: {} not found: {missing} (an external {} must exist before the stack is deployed)",
                svc.name,
                kind.word(),
                kind.word()
            ));
        }
    }
    Ok(())
}

/// The ingress ports (`8080/tcp`) a service spec publishes.
fn published(spec: &Value) -> Vec<String> {
    spec["EndpointSpec"]["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| matches!(str_at(p, &["PublishMode"]), "" | "ingress"))
        .filter_map(|p| {
            let port = p["PublishedPort"].as_u64().filter(|n| *n > 0)?;
            let proto = match str_at(p, &["Protocol"]) {
                "" => "tcp",
                other => other,
            };
            Some(format!("{port}/{proto}"))
        })
        .collect()
}

/// No ingress port is published twice: by two of the plan's services, or by one of them and
/// a service outside the stack (the stack's own services are being replaced).
fn ingress_ports(plan: &Plan, stack: &str, services: &[Value]) -> Result<(), String> {
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for svc in services {
        if str_at(svc, &["Spec", "Labels", NAMESPACE_LABEL]) == stack {
            continue;
        }
        for port in published(&svc["Spec"]) {
            taken.insert(port, str_at(svc, &["Spec", "Name"]).to_string());
        }
    }
    let mut ours: BTreeMap<String, &str> = BTreeMap::new();
    for svc in &plan.services {
        for port in published(&svc.spec) {
            if let Some(other) = taken.get(&port) {
                return Err(format!(
                    "service {}: port {port} is already in use by service {other} as an ingress port",
                    svc.name
                ));
            }
            if let Some(other) = ours.insert(port.clone(), &svc.name) {
                return Err(format!(
                    "services {other} and {} both publish port {port} on the ingress network",
                    svc.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(v: Value) -> Plan {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn external_networks_must_exist_in_the_swarm_scope() {
        let p = plan(json!({"services": [
            {"name": "s_a", "spec": {"TaskTemplate": {"Networks": [{"Target": "s_default"}, {"Target": "bridge"}]}}},
            {"name": "s_b", "spec": {"TaskTemplate": {"Networks": [{"Target": "lan"}]}}}],
            "networks": [{"name": "s_default", "spec": {}}]}));
        let local = [json!({"Name": "lan", "Scope": "local", "Id": "1"})];
        assert_eq!(
            external_networks(&p, &local).unwrap_err(),
            "network \"lan\" is declared as external, but it is not in the right scope: \"local\" instead of \"swarm\""
        );
        assert!(external_networks(&p, &[])
            .unwrap_err()
            .contains("could not be found"));
        let swarm = [json!({"Name": "lan", "Scope": "swarm", "Id": "1"})];
        assert!(external_networks(&p, &swarm).is_ok());
    }

    #[test]
    fn secrets_must_be_made_or_found() {
        let p = plan(
            json!({"services": [{"name": "s_a", "spec": {"TaskTemplate": {"ContainerSpec":
            {"Secrets": [{"SecretName": "s_made-0123abcd"}, {"SecretName": "outside"}]}}}}],
            "secrets": [{"name": "s_made-0123abcd", "spec": {}}, {"name": "outside", "external": true}]}),
        );
        let e = file_objects(&p, Kind::Secret, &HashSet::new()).unwrap_err();
        assert!(
            e.starts_with("service s_a: secret not found: outside"),
            "{e}"
        );
        let have = HashSet::from(["outside".to_string()]);
        assert!(file_objects(&p, Kind::Secret, &have).is_ok());
    }

    #[test]
    fn a_constraint_needs_its_operator() {
        let p = plan(
            json!({"services": [{"name": "s_a", "spec": {"TaskTemplate": {"Placement":
            {"Constraints": ["node.role==manager", "nonsense"]}}}}]}),
        );
        assert_eq!(
            constraints(&p).unwrap_err(),
            "service s_a: placement constraint \"nonsense\" expected one operator from ==, !="
        );
    }

    #[test]
    fn an_ingress_port_is_published_once() {
        let svc = |name: &str, port: u64, mode: &str| {
            json!({"name": name, "spec": {"EndpointSpec": {"Ports": [
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": port, "PublishMode": mode}]}}})
        };
        let p =
            plan(json!({"services": [svc("s_a", 8080, "ingress"), svc("s_b", 8080, "ingress")]}));
        assert_eq!(
            ingress_ports(&p, "s", &[]).unwrap_err(),
            "services s_a and s_b both publish port 8080/tcp on the ingress network"
        );
        let p = plan(json!({"services": [svc("s_a", 8080, "host"), svc("s_b", 8080, "host")]}));
        assert!(ingress_ports(&p, "s", &[]).is_ok());
        let p = plan(json!({"services": [svc("s_a", 8080, "ingress")]}));
        let other = json!({"Spec": {"Name": "web", "Labels": {},
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "PublishedPort": 8080}]}}});
        assert_eq!(
            ingress_ports(&p, "s", std::slice::from_ref(&other)).unwrap_err(),
            "service s_a: port 8080/tcp is already in use by service web as an ingress port"
        );
        let own = json!({"Spec": {"Name": "s_a", "Labels": {NAMESPACE_LABEL: "s"},
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "PublishedPort": 8080}]}}});
        assert!(ingress_ports(&p, "s", &[own]).is_ok());
    }
}
