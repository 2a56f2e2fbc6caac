//! `depends_on` as the compose spec gives it, mapped onto swarm: the order in which `deploy`
//! writes the services (`docker/order.rs` waits), never a field of a service's spec, so a file
//! deploys the same specs as `docker stack deploy` makes of it.
//!
//! - The long form (`depends_on: {db: {condition: service_healthy, required: true, restart:
//!   true}}`) is ordered: a service is created or updated only once each service it depends on
//!   has reached its condition (`service_started`, the default; `service_healthy`;
//!   `service_completed_successfully`). `required: false` lets a dependency the file does not
//!   define go with a warning (docker compose's rule); `restart: true` restarts the service when
//!   the deploy restarted the dependency.
//! - The short list form (`depends_on: [db]`) keeps docker's behaviour, no order, unless
//!   `WSM_DEPENDS_ON_ORDER=1` (the process environment) asks for `service_started` order.
//! - A cycle among ordered dependencies is refused, naming it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::values::{boolean, text};

/// The conditions of the compose spec.
const CONDITIONS: &[&str] = &[
    "service_started",
    "service_healthy",
    "service_completed_successfully",
];

/// One ordered dependency: the service (short name) waits for `on` to reach `condition`.
#[derive(Debug, Clone, PartialEq)]
struct Edge {
    service: String,
    on: String,
    condition: String,
    restart: bool,
}

/// Whether the short list form is ordered too (`WSM_DEPENDS_ON_ORDER=1`).
fn short_form_ordered() -> bool {
    std::env::var("WSM_DEPENDS_ON_ORDER").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// The ordered dependencies of one service, with warnings for the ones dropped.
fn edges_of(
    name: &str,
    svc: &Value,
    defined: &BTreeSet<&str>,
    short_ordered: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Edge>, String> {
    let path = format!("services.{name}.depends_on");
    let mut out = Vec::new();
    let mut add = |on: &str, condition: String, required: bool, restart: bool| {
        if !defined.contains(on) {
            if required {
                return Err(format!("{path}: depends on undefined service {on:?}"));
            }
            warnings.push(format!(
                "service {name}: optional dependency {on:?} is not defined; ignored"
            ));
            return Ok(());
        }
        out.push(Edge {
            service: name.to_string(),
            on: on.to_string(),
            condition,
            restart,
        });
        Ok(())
    };
    match svc.get("depends_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            // docker stack deploy reads the short form and does nothing with it.
            for on in list.iter().filter(|_| short_ordered) {
                add(&text(on), "service_started".into(), true, false)?;
            }
        }
        Some(Value::Object(map)) => {
            for (on, cfg) in map {
                let cfg = match cfg {
                    Value::Null => json!({}),
                    Value::Object(_) => cfg.clone(),
                    _ => return Err(format!("{path}.{on}: must be a mapping")),
                };
                for k in cfg.as_object().into_iter().flatten().map(|(k, _)| k) {
                    if !matches!(k.as_str(), "condition" | "required" | "restart") {
                        return Err(format!("{path}.{on}: unknown key {k:?}"));
                    }
                }
                let condition = cfg
                    .get("condition")
                    .map(text)
                    .unwrap_or_else(|| "service_started".into());
                if !CONDITIONS.contains(&condition.as_str()) {
                    return Err(format!(
                        "{path}.{on}.condition: {condition:?} is not one of {}",
                        CONDITIONS.join(", ")
                    ));
                }
                let required = cfg.get("required").is_none_or(boolean);
                let restart = cfg.get("restart").is_some_and(boolean);
                add(on, condition, required, restart)?;
            }
        }
        Some(other) => {
            return Err(format!(
                "{path}: must be a list or a mapping, not {}",
                text(other)
            ))
        }
    }
    Ok(out)
}

/// A cycle among the edges, as `a -> b -> a`, when there is one.
fn cycle(edges: &[Edge]) -> Option<String> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(e.service.as_str()).or_default().push(&e.on);
    }
    // 0: not seen, 1: on the current path, 2: done.
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        mark: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<String> {
        match mark.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut names: Vec<&str> = path[from..].to_vec();
                names.push(n);
                return Some(names.join(" -> "));
            }
            _ => {}
        }
        mark.insert(n, 1);
        path.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, next, mark, path) {
                return Some(c);
            }
        }
        path.pop();
        mark.insert(n, 2);
        None
    }
    let starts: Vec<&str> = next.keys().copied().collect();
    for n in starts {
        if let Some(c) = visit(n, &next, &mut mark, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// The ordered dependencies of the document's services as a plan carries them: `[{service,
/// on, condition, restart}]`, full service names; warnings for optional dependencies dropped.
/// A cycle, an undefined required dependency, or a bad condition is an error.
pub(super) fn plan_depends(
    doc: &Value,
    stack: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    let services = doc["services"].as_object().into_iter().flatten();
    let defined: BTreeSet<&str> = services.clone().map(|(k, _)| k.as_str()).collect();
    let short_ordered = short_form_ordered();
    let mut edges = Vec::new();
    for (name, svc) in services {
        edges.extend(edges_of(name, svc, &defined, short_ordered, warnings)?);
    }
    if let Some(c) = cycle(&edges) {
        return Err(format!("depends_on: dependency cycle: {c}"));
    }
    Ok(edges
        .into_iter()
        .map(|e| {
            json!({"service": format!("{stack}_{}", e.service), "on": format!("{stack}_{}", e.on),
                "condition": e.condition, "restart": e.restart})
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depends(yaml_services: &str) -> Result<Vec<Value>, String> {
        let doc = crate::host::compose::parse(
            &format!("services:\n{yaml_services}"),
            &Default::default(),
        )?;
        plan_depends(&doc, "st", &mut Vec::new())
    }

    #[test]
    fn the_long_form_is_ordered_and_the_short_one_is_not() {
        let d = depends(
            "  a: {image: i}\n  b: {image: i, depends_on: {a: {condition: service_healthy, restart: true}}}\n  c: {image: i, depends_on: [a]}\n",
        )
        .unwrap();
        assert_eq!(
            d,
            vec![
                json!({"service": "st_b", "on": "st_a", "condition": "service_healthy", "restart": true})
            ]
        );
        let d = depends("  a: {image: i}\n  b: {image: i, depends_on: {a: }}\n").unwrap();
        assert_eq!(d[0]["condition"], "service_started");
    }

    #[test]
    fn cycles_undefined_services_and_bad_conditions_are_refused() {
        let e = depends(
            "  a: {image: i, depends_on: {c: {condition: service_started}}}\n  b: {image: i, depends_on: {a: {}}}\n  c: {image: i, depends_on: {b: {}}}\n",
        )
        .unwrap_err();
        assert_eq!(e, "depends_on: dependency cycle: a -> c -> b -> a");
        assert_eq!(
            depends("  a: {image: i, depends_on: {a: {}}}\n").unwrap_err(),
            "depends_on: dependency cycle: a -> a"
        );
        assert_eq!(
            depends("  a: {image: i, depends_on: {x: {}}}\n").unwrap_err(),
            "services.a.depends_on: depends on undefined service \"x\""
        );
        // As docker: the short form is not read.
        assert!(depends("  a: {image: i, depends_on: [x]}\n")
            .unwrap()
            .is_empty());
        assert!(
            depends("  a: {image: i, depends_on: {x: {required: false}}}\n")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            depends("  a: {image: i}\n  b: {image: i, depends_on: {a: {condition: up}}}\n")
                .unwrap_err(),
            "services.b.depends_on.a.condition: \"up\" is not one of service_started, service_healthy, service_completed_successfully"
        );
        assert_eq!(
            depends("  a: {image: i}\n  b: {image: i, depends_on: {a: {when: x}}}\n").unwrap_err(),
            "services.b.depends_on.a: unknown key \"when\""
        );
    }
}
