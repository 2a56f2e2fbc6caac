//! How much a script may take: the sizes of its arrays, maps and strings, and, when no one is
//! at a terminal to press Ctrl-C, how many operations it may run. Each limit has a default
//! generous enough for real work (the status of hundreds of tasks is some 100 000 values) and an
//! environment variable that raises it; hitting one is a one-line error naming that variable.

use std::io::IsTerminal;

use rhai::{Engine, EvalAltResult};

/// One limit: what it bounds, the variable that sets it, its default.
struct Limit {
    what: &'static str,
    var: &'static str,
    default: u64,
}

const ARRAY: Limit = Limit {
    what: "array elements",
    var: "WSM_MAX_ARRAY",
    default: 1_000_000,
};
const MAP: Limit = Limit {
    what: "map entries",
    var: "WSM_MAX_MAP",
    default: 1_000_000,
};
const STRING: Limit = Limit {
    what: "bytes of string",
    var: "WSM_MAX_STRING",
    default: 64 << 20,
};
/// A second or two of pure script work in a release build, 15-40 s in a debug build on this
/// machine's two busy cores. Real commands spend their time waiting in the host, which counts
/// for nothing here, and each command a batch file runs counts on its own; a script's own
/// work is far less (see tests/README.md, "Guards"). A watch loop that
/// polls every second runs for days; one meant to run for ever sets WSM_MAX_OPERATIONS=0.
const OPERATIONS: Limit = Limit {
    what: "operations",
    var: "WSM_MAX_OPERATIONS",
    default: 20_000_000,
};

/// The limits of one process, read once from the environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub array: u64,
    pub map: u64,
    pub string: u64,
    /// 0: no limit (someone at a terminal can press Ctrl-C).
    pub operations: u64,
}

impl Limits {
    /// The limits from `WSM_MAX_*` (0 switches one off); the operations limit holds only when
    /// stdin is not a terminal, unless `WSM_MAX_OPERATIONS` is set.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|v| std::env::var(v).ok(), std::io::stdin().is_terminal())
    }

    fn from_vars(get: impl Fn(&str) -> Option<String>, interactive: bool) -> Result<Self, String> {
        let read = |l: &Limit, default: u64| -> Result<u64, String> {
            match get(l.var).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.trim().parse::<u64>().map_err(|_| {
                    let shown: String = v.chars().take(20).collect();
                    format!(
                        "{} must be a whole number of {} (0 for no limit), not {shown:?}",
                        l.var, l.what
                    )
                }),
            }
        };
        Ok(Limits {
            array: read(&ARRAY, ARRAY.default)?,
            map: read(&MAP, MAP.default)?,
            string: read(&STRING, STRING.default)?,
            operations: read(
                &OPERATIONS,
                if interactive { 0 } else { OPERATIONS.default },
            )?,
        })
    }

    /// Sets the limits on an engine.
    pub fn apply(&self, engine: &mut Engine) {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        engine.set_max_array_size(size(self.array));
        engine.set_max_map_size(size(self.map));
        engine.set_max_string_size(size(self.string));
        engine.set_max_operations(self.operations);
    }

    /// The user's message for an error that is a limit being hit, or None.
    pub fn message(&self, err: &EvalAltResult) -> Option<String> {
        let (limit, value) = match err {
            EvalAltResult::ErrorTooManyOperations(..) => (&OPERATIONS, self.operations),
            EvalAltResult::ErrorDataTooLarge(what, ..) if what.contains("string") => {
                (&STRING, self.string)
            }
            EvalAltResult::ErrorDataTooLarge(what, ..) if what.contains("array") => {
                (&ARRAY, self.array)
            }
            EvalAltResult::ErrorDataTooLarge(..) => (&MAP, self.map),
            _ => return None,
        };
        let context = if std::ptr::eq(limit, &OPERATIONS) {
            " (a run without a terminal)"
        } else {
            ""
        };
        Some(format!(
            "the script went over its limit of {value} {}{context}; raise it with {}=<n> (0 for no limit)",
            limit.what, limit.var
        ))
    }
}

static CURRENT: std::sync::OnceLock<Result<Limits, String>> = std::sync::OnceLock::new();

/// This process's limits (the defaults where the environment's are not numbers: [`check_env`]
/// reports those).
pub fn current() -> Limits {
    CURRENT
        .get_or_init(Limits::from_env)
        .clone()
        .unwrap_or_default()
}

/// Whether the `WSM_MAX_*` variables are numbers: the one-line error when one is not.
pub fn check_env() -> Result<(), String> {
    CURRENT.get_or_init(Limits::from_env).clone().map(|_| ())
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_vars(|_| None, false).expect("defaults are numbers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(vars: &[(&str, &str)], interactive: bool) -> Result<Limits, String> {
        Limits::from_vars(
            |v| {
                vars.iter()
                    .find(|(k, _)| *k == v)
                    .map(|(_, x)| x.to_string())
            },
            interactive,
        )
    }

    #[test]
    fn operations_are_limited_only_without_a_terminal_unless_set() {
        assert_eq!(limits(&[], true).unwrap().operations, 0);
        assert_eq!(limits(&[], false).unwrap().operations, OPERATIONS.default);
        let set = limits(&[("WSM_MAX_OPERATIONS", "5")], true).unwrap();
        assert_eq!(set.operations, 5);
    }

    #[test]
    fn a_limit_that_is_not_a_number_is_refused_naming_its_variable() {
        let err = limits(&[("WSM_MAX_ARRAY", "lots")], false).unwrap_err();
        assert!(err.contains("WSM_MAX_ARRAY"), "{err}");
    }

    #[test]
    fn a_growing_array_stops_at_the_limit_with_a_message_naming_it() {
        let mut engine = Engine::new();
        let l = limits(&[("WSM_MAX_ARRAY", "1000")], false).unwrap();
        l.apply(&mut engine);
        let err = engine
            .run("let a = [1]; loop { a += a; }")
            .expect_err("the limit stops it");
        let msg = l.message(&err).expect("a limit error");
        assert!(
            msg.contains("1000 array elements") && msg.contains("WSM_MAX_ARRAY"),
            "{msg}"
        );
    }

    #[test]
    fn an_endless_loop_stops_at_the_operations_limit() {
        let mut engine = Engine::new();
        let l = limits(&[("WSM_MAX_OPERATIONS", "10000")], false).unwrap();
        l.apply(&mut engine);
        let err = engine.run("loop { }").expect_err("the limit stops it");
        assert!(l.message(&err).unwrap().contains("WSM_MAX_OPERATIONS"));
    }
}
