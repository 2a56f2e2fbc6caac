//! Who holds a stack's lock, as its labels say, and what a waiter sees of it: how long the
//! lock has stayed unrenewed by the waiter's own clock ([`Watch`]) and the progress of the wait
//! ([`Waiting`]). The policy that uses them is in `mod.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::ttl;
use crate::host::docker::state_object::StateObject;
use crate::host::identity::{machine_id, process_gone, process_identity, user_at_host};
use crate::host::progress::ProgressDisplay;

/// The label every wsm lock carries, with the kind of lock as its value.
const KIND_LABEL: &str = "wsm.lock";

/// Who holds a lock, read from (or written to) its labels. `since` and `until` are the
/// holder's clock, shown to people and never used to decide anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub operation: String,
    pub user_host: String,
    pub pid: u32,
    pub machine: String,
    /// `identity::process_identity` of the holder ("" when unknown).
    pub process: String,
    pub since: SystemTime,
    pub until: SystemTime,
    /// The holder's lease: a waiter breaks the lock once it saw no renewal for that long.
    pub lease: Option<Duration>,
    /// How often the holder renewed the lock so far.
    pub renewals: u64,
}

impl Holder {
    /// This process, doing `operation`, from now until now + ttl().
    pub(super) fn this_process(operation: &str) -> Self {
        let now = SystemTime::now();
        Holder {
            operation: operation.to_string(),
            user_host: user_at_host(),
            pid: std::process::id(),
            machine: machine_id(),
            process: process_identity(),
            since: now,
            until: now + ttl(),
            lease: Some(ttl()),
            renewals: 0,
        }
    }

    pub(super) fn labels(&self, stack: &str) -> HashMap<String, String> {
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let lease = self.lease.unwrap_or_else(ttl).as_secs();
        HashMap::from([
            (KIND_LABEL.into(), "stack".into()),
            ("wsm.lock.stack".into(), stack.into()),
            ("wsm.lock.operation".into(), self.operation.clone()),
            ("wsm.lock.holder".into(), self.user_host.clone()),
            ("wsm.lock.pid".into(), self.pid.to_string()),
            ("wsm.lock.machine".into(), self.machine.clone()),
            ("wsm.lock.process".into(), self.process.clone()),
            ("wsm.lock.since".into(), time(self.since)),
            ("wsm.lock.until".into(), time(self.until)),
            ("wsm.lock.lease".into(), lease.to_string()),
            ("wsm.lock.renewals".into(), self.renewals.to_string()),
        ])
    }

    /// Reads a holder from a lock's labels; what does not parse is left out.
    pub(super) fn from_labels(labels: &HashMap<String, String>) -> Self {
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let time = |k: &str| humantime::parse_rfc3339(&get(k)).unwrap_or(SystemTime::UNIX_EPOCH);
        Holder {
            operation: get("wsm.lock.operation"),
            user_host: get("wsm.lock.holder"),
            pid: get("wsm.lock.pid").parse().unwrap_or(0),
            machine: get("wsm.lock.machine"),
            process: get("wsm.lock.process"),
            since: time("wsm.lock.since"),
            until: time("wsm.lock.until"),
            lease: get("wsm.lock.lease")
                .parse::<u64>()
                .ok()
                .filter(|s| *s >= 2)
                .map(Duration::from_secs),
            renewals: get("wsm.lock.renewals").parse().unwrap_or(0),
        }
    }

    /// "start by root@vm (pid 1234) since 2026-11-21T13:40:01Z".
    pub fn describe(&self) -> String {
        format!(
            "{} by {} (pid {}) since {}",
            self.operation,
            self.user_host,
            self.pid,
            humantime::format_rfc3339_seconds(self.since)
        )
    }

    /// How long a waiter must see the lock unrenewed before breaking it: the holder's own
    /// lease, else (a lock that does not say) this process's.
    pub(super) fn lease(&self) -> Duration {
        self.lease.unwrap_or_else(ttl)
    }

    /// Why the holder is provably gone, without waiting out its lease: its process ran here
    /// (this machine id, boot and pid namespace) and is no more.
    pub(super) fn gone_because(&self) -> Option<String> {
        (self.machine == machine_id() && process_gone(&self.process))
            .then(|| "its process is gone".to_string())
    }
}

/// What a waiter has seen of a lock: its object and version, and since when (by this
/// process's monotonic clock) it has seen them unchanged.
pub(super) struct Watch {
    id: String,
    version: u64,
    since: Instant,
}

impl Watch {
    /// Notes the lock as read now; returns how long it has stayed unchanged.
    pub(super) fn see(watch: &mut Option<Watch>, found: &StateObject) -> Duration {
        match watch {
            Some(w) if w.id == found.id && w.version == found.version => w.since.elapsed(),
            _ => {
                *watch = Some(Watch {
                    id: found.id.clone(),
                    version: found.version,
                    since: Instant::now(),
                });
                Duration::ZERO
            }
        }
    }
}

/// The progress of a wait for the lock: a line saying who holds it, then the time waited in
/// steps of 5 s (`progress`); the last line says how it ended.
pub(super) struct Waiting {
    stack: String,
    wait: Duration,
    holder: Option<Holder>,
    display: Option<ProgressDisplay>,
}

impl Waiting {
    pub(super) fn new(stack: &str, wait: Duration) -> Self {
        Waiting {
            stack: stack.into(),
            wait,
            holder: None,
            display: None,
        }
    }

    pub(super) fn update(&mut self, holder: &Holder, waited: Duration) {
        // A renewal is the same holder; another command that took the lock meanwhile is not.
        let same = |h: &Holder| h.describe() == holder.describe() && h.process == holder.process;
        if !self.holder.as_ref().is_some_and(same) {
            eprintln!(
                "stack {} is locked: {}; waiting up to {} s for it to finish (WSM_LOCK_WAIT)",
                self.stack,
                holder.describe(),
                self.wait.as_secs()
            );
            self.holder = Some(holder.clone());
        }
        let step = waited.as_secs() / 5 * 5;
        self.display
            .get_or_insert_with(ProgressDisplay::new)
            .update(
                &format!("lock of stack {}", self.stack),
                format!("waited {step} s of {} s", self.wait.as_secs()),
            );
    }

    pub(super) fn finish(&mut self) {
        if let Some(display) = self.display.take() {
            display.finish();
        }
    }

    pub(super) fn acquired(&mut self, waited: Duration) {
        self.finish();
        if let Some(h) = &self.holder {
            eprintln!(
                "stack {}: {} by {} (pid {}) has finished; went on after waiting {:.1} s",
                self.stack,
                h.operation,
                h.user_host,
                h.pid,
                waited.as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_survives_its_labels() {
        let mut me = Holder::this_process("start");
        // Labels keep whole seconds.
        me.since = humantime::parse_rfc3339("2026-11-21T13:40:01Z").unwrap();
        me.until = me.since + ttl();
        assert_eq!(Holder::from_labels(&me.labels("demo")), me);
        assert!(me.describe().starts_with("start by "), "{}", me.describe());
    }

    #[test]
    fn only_a_holder_provably_gone_here_is_stale_without_waiting_and_no_clock_decides() {
        let mut h = Holder::this_process("stop");
        assert!(!h.process.is_empty(), "/proc tells this process");
        assert_eq!(h.gone_because(), None);
        // Its timestamps long past: no matter, only the waiter's own watch counts.
        h.until = SystemTime::UNIX_EPOCH;
        assert_eq!(h.gone_because(), None);
        // The same pid space, a pid that is no more: gone.
        let dead = i32::MAX as u32;
        let place = h.process.rsplitn(3, '/').nth(2).unwrap().to_string();
        h.process = format!("{place}/{dead}/1");
        assert_eq!(h.gone_because().as_deref(), Some("its process is gone"));
        // This very pid with another start time: a new process on an old pid, the holder gone.
        h.process = format!("{place}/{}/1", std::process::id());
        assert_eq!(h.gone_because().as_deref(), Some("its process is gone"));
        // Another pid namespace, or boot, with the same machine id: it cannot be told from here.
        h.process = format!("{}-other/{dead}/1", place);
        assert_eq!(h.gone_because(), None);
        h.process = String::new();
        assert_eq!(h.gone_because(), None);
        // Another machine.
        h.process = format!("{place}/{dead}/1");
        h.machine = "another machine".into();
        assert_eq!(h.gone_because(), None);
        assert_eq!(Holder::from_labels(&HashMap::new()).gone_because(), None);
    }

    #[test]
    fn a_watch_counts_from_the_last_change_it_saw() {
        let object = |id: &str, version| StateObject {
            id: id.into(),
            name: "wsm-lock-demo".into(),
            version,
            labels: HashMap::new(),
            updated_at: String::new(),
        };
        let mut watch = None;
        assert_eq!(Watch::see(&mut watch, &object("a", 1)), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        assert!(Watch::see(&mut watch, &object("a", 1)) >= Duration::from_millis(20));
        // Renewed: a new version starts the count again; so does another lock of that name.
        assert_eq!(Watch::see(&mut watch, &object("a", 2)), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(Watch::see(&mut watch, &object("b", 2)), Duration::ZERO);
    }
}
