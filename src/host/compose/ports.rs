//! A service's `ports:` into the Engine API's endpoint ports, short syntax
//! (`[ip:]published:target[/proto]`, ranges included) and long syntax alike.

use serde_json::{json, Map as JsonMap, Value};

use super::draft::Draft;
use super::values::{int, text};

/// Applies a service's `ports:` list to the endpoint of the spec being built, ordered by
/// published port (those the swarm chooses first).
pub(super) fn apply(d: &mut Draft, v: &Value) -> Result<(), String> {
    let mut ports = Vec::new();
    if let Value::Array(ps) = v {
        for p in ps {
            ports.extend(port_configs(p)?);
        }
    }
    ports.sort_by_key(|p| p.get("PublishedPort").and_then(Value::as_i64).unwrap_or(0));
    if !ports.is_empty() {
        d.endpoint.insert("Ports".into(), Value::Array(ports));
    }
    Ok(())
}

/// Expands one compose port entry (short or long syntax) into Engine API port configs.
fn port_configs(p: &Value) -> Result<Vec<Value>, String> {
    let one = |target: i64, published: i64, proto: &str, mode: &str| {
        let mut m = JsonMap::new();
        m.insert("Protocol".into(), json!(proto));
        m.insert("TargetPort".into(), json!(target));
        if published != 0 {
            m.insert("PublishedPort".into(), json!(published));
        }
        m.insert("PublishMode".into(), json!(mode));
        Value::Object(m)
    };
    if let Value::Object(o) = p {
        let target = int(o.get("target").ok_or("port without target")?, "port target")?;
        let published = match o.get("published") {
            Some(v) if !v.is_null() && !text(v).is_empty() => int(v, "published port")?,
            _ => 0,
        };
        let proto = o.get("protocol").map(text).unwrap_or_else(|| "tcp".into());
        let mode = o.get("mode").map(text).unwrap_or_else(|| "ingress".into());
        return Ok(vec![one(target, published, &proto, &mode)]);
    }
    let spec = text(p);
    let (spec, proto) = match spec.rsplit_once('/') {
        Some((s, pr)) => (s.to_string(), pr.to_string()),
        None => (spec.clone(), "tcp".to_string()),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (published, target) = match parts.as_slice() {
        [t] => ("", *t),
        [p, t] => (*p, *t),
        [_ip, p, t] => (*p, *t),
        _ => return Err(format!("invalid port {spec:?}")),
    };
    // A port or a range of ports, each 0-65535, the range's start not after its end.
    let range = |s: &str| -> Result<(i64, i64), String> {
        let bad = || format!("invalid port {spec:?}");
        let port = |t: &str| -> Result<i64, String> {
            t.parse::<i64>()
                .ok()
                .filter(|n| (0..=65535).contains(n))
                .ok_or_else(bad)
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let n = port(s)?;
                (n, n)
            }
        };
        if a > b {
            return Err(bad());
        }
        Ok((a, b))
    };
    let (t0, t1) = range(target)?;
    let (p0, p1) = if published.is_empty() {
        (0, 0)
    } else {
        range(published)?
    };
    if p0 != 0 && p1 - p0 != t1 - t0 {
        return Err(format!("port ranges of {spec:?} differ in size"));
    }
    Ok((0..=t1 - t0)
        .map(|i| one(t0 + i, if p0 == 0 { 0 } else { p0 + i }, &proto, "ingress"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_expand_ranges() {
        let p = port_configs(&json!("3000-3002")).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2]["TargetPort"], 3002);
        assert!(p[0].get("PublishedPort").is_none());
        let p = port_configs(&json!("8080:80/udp")).unwrap();
        assert_eq!(
            p[0],
            json!({"Protocol":"udp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"})
        );
        let p = port_configs(&json!({"target": 80, "mode": "host"})).unwrap();
        assert_eq!(p[0]["PublishMode"], "host");
        assert!(port_configs(&json!("1-3:1-2")).is_err());
        // Found by fuzzing (compose_plan): a huge range once tried to allocate every port.
        for bad in [
            "0-9223372036854775807",
            "80-70",
            "65536",
            "-1:80",
            "1:99999",
        ] {
            assert!(port_configs(&json!(bad)).is_err(), "{bad}");
        }
    }
}
