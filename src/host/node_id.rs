//! Node ids: `service[.slot]` names the task of a stack's service in that slot (slot 1 when
//! omitted). An application may give a `kind`: `#{services, default_service}` lists the services
//! its ids may name, and lets a bare number `N` mean slot N of the default service.
//!
//! The parser is here, not in `stdlib/nodes.rhai`, so that it is fast enough to fuzz
//! (`fuzz/fuzz_targets/node_id.rs`); the stdlib's `nodes::parse_id` calls it.

use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::Prim;
use super::{usage_err, ScriptResult};

/// An application's kind of node ids; the default is any service name and no default service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kind {
    pub services: Vec<String>,
    pub default_service: String,
}

impl Kind {
    /// Reads `#{services, default_service}`; missing keys are empty.
    pub fn from_map(kind: &Map) -> Self {
        let services = kind
            .get("services")
            .and_then(|s| s.clone().try_cast::<Array>())
            .map(|a| a.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let default_service = kind
            .get("default_service")
            .filter(|d| !d.is_unit())
            .map(|d| d.to_string())
            .unwrap_or_default();
        Kind {
            services,
            default_service,
        }
    }

    /// How node ids are written, for error messages.
    pub fn forms(&self) -> String {
        if self.services.is_empty() {
            return "use <service> or <service>.<slot>".into();
        }
        let mut names: Vec<&str> = Vec::new();
        if !self.default_service.is_empty() {
            names.push("N");
        }
        names.extend(self.services.iter().map(String::as_str));
        let last = names.pop().unwrap_or_default();
        if names.is_empty() {
            return format!("use {last}, with .N for a slot");
        }
        format!("use {} or {last}, with .N for a slot", names.join(", "))
    }
}

/// A parsed node id. `service` is the default service (possibly "") for a bare number.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeId {
    pub service: String,
    pub slot: i64,
}

fn all_digits(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit())
}

/// Splits a node id into service and slot, or says why it is not one.
pub fn parse(id: &str, kind: &Kind) -> Result<NodeId, String> {
    let not_an_id = |why: &str| format!("\"{id}\" is not a node id: {why}");
    let (name, slot_text) = id.split_once('.').unwrap_or((id, "1"));
    let is_number = !name.is_empty() && all_digits(name);
    let slot_of = |text: &str| -> Result<i64, String> {
        if text.is_empty() {
            return Err(not_an_id("the slot is missing"));
        }
        if !all_digits(text) {
            return Err(not_an_id(&kind.forms()));
        }
        if text.len() > 9 {
            return Err(not_an_id("the slot is too large"));
        }
        match text.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(not_an_id("slots start at 1")),
        }
    };
    // A bare number is a slot of the default service ("" when there is none).
    if is_number && !id.contains('.') {
        return Ok(NodeId {
            service: kind.default_service.clone(),
            slot: slot_of(id)?,
        });
    }
    if name.is_empty()
        || is_number
        || !(kind.services.is_empty() || kind.services.iter().any(|s| s == name))
    {
        return Err(not_an_id(&kind.forms()));
    }
    Ok(NodeId {
        service: name.to_string(),
        slot: slot_of(slot_text)?,
    })
}

/// Registers the `node_id::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    let prim = Prim::new("node_id::parse(id: string, kind: map) -> map").doc(
        "Parses a node id (`service[.slot]`, or an application's own forms described by `kind`: \
         `services`, `default_service`) into `#{service, slot}`; bad input is a usage error (exit \
         2) that lists the forms.",
    );
    prim.set_in(&mut m, |id: &str, kind: Map| -> ScriptResult<Map> {
        let parsed = parse(id, &Kind::from_map(&kind)).map_err(usage_err)?;
        let mut out = Map::new();
        out.insert("service".into(), parsed.service.into());
        out.insert("slot".into(), Dynamic::from_int(parsed.slot));
        Ok(out)
    });
    let prim = Prim::new("node_id::forms(kind: map) -> string")
        .doc("How node ids of that kind are written, for messages.");
    prim.set_in(&mut m, |kind: Map| -> ScriptResult<String> {
        Ok(Kind::from_map(&kind).forms())
    });
    engine.register_static_module("node_id", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wavelet_like() -> Kind {
        Kind {
            services: vec!["sync".into(), "web".into()],
            default_service: "app".into(),
        }
    }

    fn ok(id: &str, kind: &Kind) -> (String, i64) {
        let n = parse(id, kind).unwrap_or_else(|e| panic!("{id}: {e}"));
        (n.service, n.slot)
    }

    #[test]
    fn general_ids() {
        let k = Kind::default();
        assert_eq!(ok("web", &k), ("web".into(), 1));
        assert_eq!(ok("web.3", &k), ("web".into(), 3));
        assert_eq!(ok("2", &k), ("".into(), 2));
    }

    #[test]
    fn kinds_limit_services_and_give_a_default() {
        let k = wavelet_like();
        assert_eq!(ok("4", &k), ("app".into(), 4));
        assert_eq!(ok("sync.2", &k), ("sync".into(), 2));
        let e = parse("db", &k).unwrap_err();
        assert_eq!(
            e,
            "\"db\" is not a node id: use N, sync or web, with .N for a slot"
        );
    }

    #[test]
    fn bad_slots_say_why() {
        let k = Kind::default();
        for (id, why) in [
            ("web.", "the slot is missing"),
            ("web.0", "slots start at 1"),
            ("0", "slots start at 1"),
            ("999999999999999999999", "the slot is too large"),
            ("web.x", "use <service> or <service>.<slot>"),
            ("1.2", "use <service> or <service>.<slot>"),
            ("", "use <service> or <service>.<slot>"),
            (".1", "use <service> or <service>.<slot>"),
            ("a.b.1", "use <service> or <service>.<slot>"),
        ] {
            assert_eq!(
                parse(id, &k).unwrap_err(),
                format!("\"{id}\" is not a node id: {why}")
            );
        }
    }
}
