//! How much a script may take: the memory the process holds while it runs, and, when no one
//! is at a terminal to press Ctrl-C, how many operations it may run. Each limit has a default
//! generous enough for real work (the status of hundreds of tasks is some 100 000 values, a
//! few MiB) and an environment variable that changes it; hitting one is a one-line error
//! naming that variable.
//!
//! Why memory and not Rhai's array, map and string sizes: Rhai enforces those by measuring the
//! whole value again after every change to it (`calc_data_sizes` walks every element of the
//! root array or map), so with them set, 100 000 `push` calls took 2.5 s against 0.02 s
//! without (quadratic). Here every allocation adds to or takes from one counter
//! ([`CountingAlloc`], this program's allocator), and each script operation compares that
//! counter with the limit (Rhai's progress callback, which the Ctrl-C check already uses): O(1)
//! per operation, whatever the script holds. A single allocation over four times the limit is
//! refused at once (`[].pad(1e12, 0)`); the process then stops as Rust does when memory runs
//! out, rather than taking the machine's. Growth by doubling stays under that (the value is
//! within the limit before the operation that doubles it), so it ends with the one-line error.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rhai::{Dynamic, Engine, EvalAltResult};

/// One limit: what it bounds, the variable that sets it, its default.
struct Limit {
    what: &'static str,
    var: &'static str,
    default: u64,
}

/// In MiB: what a runaway script may take before it is stopped (a doubling array stops
/// there, having taken up to four times that for a moment).
const MEMORY: Limit = Limit {
    what: "MiB of memory",
    var: "WSM_MAX_MEMORY",
    default: 512,
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

/// The size limits of earlier versions, which Rhai enforced at a cost that grew with the data.
/// 0 (no limit) is still accepted: there is none.
const RETIRED: &[&str] = &["WSM_MAX_ARRAY", "WSM_MAX_MAP", "WSM_MAX_STRING"];

/// What a script's progress callback stops it with when memory runs over.
const OVER_MEMORY: &str = "wsm: over the memory limit";

/// The heap this process holds, in bytes: every allocation adds to it, every free takes off.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The memory limit in bytes (0: none), once a script engine is made.
static MAX_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting what is held (relaxed atomics: one add per allocation).
pub struct CountingAlloc;

// SAFETY: every call goes to the system allocator with the caller's arguments; the counter
// is bookkeeping only. A refused allocation returns null, as an allocator may.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if too_large(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if too_large(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && too_large(new_size) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// The unit tests count too (the binary installs it in `main.rs`; the fuzz targets keep theirs).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: CountingAlloc = CountingAlloc;

/// Whether one allocation alone is over four times the memory limit.
fn too_large(size: usize) -> bool {
    let max = MAX_BYTES.load(Ordering::Relaxed);
    max != 0 && size as u64 > max.saturating_mul(4)
}

/// The heap this process holds now, in bytes.
pub fn heap_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed) as u64
}

/// The limits of one process, read once from the environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// MiB; 0: no limit.
    pub memory: u64,
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
        if let Some(old) = RETIRED
            .iter()
            .find(|v| get(v).is_some_and(|x| !x.trim().is_empty() && x.trim() != "0"))
        {
            return Err(format!(
                "{old} is no longer read: a script's memory is limited as a whole, with {}=<MiB> (0 for no limit)",
                MEMORY.var
            ));
        }
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
            memory: read(&MEMORY, MEMORY.default)?,
            operations: read(
                &OPERATIONS,
                if interactive { 0 } else { OPERATIONS.default },
            )?,
        })
    }

    /// The memory limit in bytes, 0 for none.
    fn memory_bytes(&self) -> u64 {
        self.memory.saturating_mul(1 << 20)
    }

    /// Sets the limits on an engine. Rhai's own size limits stay off: they cost a walk of the
    /// whole value on every change (see the module doc).
    pub fn apply(&self, engine: &mut Engine) {
        MAX_BYTES.store(self.memory_bytes(), Ordering::Relaxed);
        engine.set_max_operations(self.operations);
    }

    /// What the progress callback stops a script with: Some once the process holds more than
    /// the memory limit. One load and one compare.
    pub fn check_memory(&self) -> Option<Dynamic> {
        let max = self.memory_bytes();
        (max != 0 && heap_bytes() > max).then(|| Dynamic::from(OVER_MEMORY))
    }

    /// The user's message for an error that is a limit being hit, or None.
    pub fn message(&self, err: &EvalAltResult) -> Option<String> {
        let (limit, value, context) = match err {
            EvalAltResult::ErrorTooManyOperations(..) => {
                (&OPERATIONS, self.operations, " (a run without a terminal)")
            }
            EvalAltResult::ErrorTerminated(token, ..)
                if token.clone().into_string().ok().as_deref() == Some(OVER_MEMORY) =>
            {
                (&MEMORY, self.memory, "")
            }
            _ => return None,
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
        let err = limits(&[("WSM_MAX_MEMORY", "lots")], false).unwrap_err();
        assert!(
            err.contains("WSM_MAX_MEMORY must be a whole number of MiB"),
            "{err}"
        );
    }

    #[test]
    fn the_retired_size_limits_are_refused_naming_the_one_that_replaces_them() {
        let err = limits(&[("WSM_MAX_ARRAY", "1000")], false).unwrap_err();
        assert!(
            err.contains("WSM_MAX_ARRAY is no longer read") && err.contains("WSM_MAX_MEMORY="),
            "{err}"
        );
        assert_eq!(limits(&[("WSM_MAX_MAP", "")], false).unwrap().memory, 512);
        assert_eq!(
            limits(&[("WSM_MAX_STRING", "0")], false).unwrap().memory,
            512
        );
    }

    #[test]
    fn the_heap_counter_follows_what_is_held() {
        // Other tests allocate and free on other threads meanwhile (tens of MiB at once): a
        // counter that follows sees 64 MiB come and go in at least one of a few tries, one that
        // does not never does.
        let mut seen = Vec::new();
        let follows = (0..5).any(|_| {
            let before = heap_bytes();
            let held = std::hint::black_box(vec![1u8; 64 << 20]);
            let during = heap_bytes();
            drop(held);
            let after = heap_bytes();
            seen.push(format!("{before} → {during} → {after}"));
            during >= before + (60 << 20) && after + (60 << 20) <= during
        });
        assert!(follows, "{seen:?}");
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
