//! Reading the options map a primitive takes last (`#{ prune: true, timeout: 300 }`): one
//! helper per kind of value. A missing key, or a value of another type, gives the default.

use std::time::Duration;

use rhai::Map;

/// The boolean at `key`, else `default`.
pub fn opt_bool(map: &Map, key: &str, default: bool) -> bool {
    map.get(key)
        .and_then(|v| v.as_bool().ok())
        .unwrap_or(default)
}

/// The integer at `key`, else `default`.
pub fn opt_int(map: &Map, key: &str, default: i64) -> i64 {
    map.get(key)
        .and_then(|v| v.as_int().ok())
        .unwrap_or(default)
}

/// The text of the value at `key` (a number is taken as its digits), else `default`.
pub fn opt_str(map: &Map, key: &str, default: &str) -> String {
    map.get(key)
        .map(|v| v.to_string())
        .unwrap_or_else(|| default.to_string())
}

/// The whole seconds at `key`, at least one, else `default` seconds.
pub fn opt_secs(map: &Map, key: &str, default: u64) -> Duration {
    map.get(key)
        .and_then(|v| v.as_int().ok())
        .map(secs)
        .unwrap_or(Duration::from_secs(default))
}

/// A script's count of seconds as a duration, at least one second (a deadline of zero or less
/// would give up before the first look).
pub fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Dynamic;

    fn map(pairs: &[(&str, Dynamic)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    #[test]
    fn a_missing_key_gives_the_default() {
        let m = Map::new();
        assert!(opt_bool(&m, "prune", true));
        assert_eq!(opt_int(&m, "since", 7), 7);
        assert_eq!(opt_str(&m, "tail", "all"), "all");
        assert_eq!(opt_secs(&m, "timeout", 300), Duration::from_secs(300));
    }

    #[test]
    fn a_value_is_taken_when_of_the_helpers_type_and_any_value_as_text() {
        let m = map(&[
            ("prune", Dynamic::from(false)),
            ("since", Dynamic::from(12_i64)),
            ("tail", Dynamic::from(100_i64)),
            ("timeout", Dynamic::from(5_i64)),
            ("follow", Dynamic::from("no")),
            ("wait", Dynamic::from("5")),
        ]);
        assert!(!opt_bool(&m, "prune", true));
        assert_eq!(opt_int(&m, "since", 0), 12);
        assert_eq!(opt_str(&m, "tail", "all"), "100");
        assert_eq!(opt_secs(&m, "timeout", 300), Duration::from_secs(5));
        assert!(opt_bool(&m, "follow", true));
        assert_eq!(opt_int(&m, "follow", 3), 3);
        assert_eq!(opt_secs(&m, "wait", 300), Duration::from_secs(300));
        assert_eq!(opt_str(&m, "wait", ""), "5");
    }

    #[test]
    fn seconds_are_at_least_one() {
        assert_eq!(secs(0), Duration::from_secs(1));
        assert_eq!(secs(-5), Duration::from_secs(1));
        let m = map(&[("timeout", Dynamic::from(0_i64))]);
        assert_eq!(opt_secs(&m, "timeout", 300), Duration::from_secs(1));
    }
}
