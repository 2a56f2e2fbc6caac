//! `e.merged_logs`: the logs of services and tasks merged in time order, as one stream
//! (moby#31458: `docker service logs` takes one service). Every task's logs are read at once
//! through the Engine API (`GET /tasks/{id}/logs`, which reaches a task on any node through
//! the manager), each with the engine's timestamps, and merged by them (`merge`); each line is
//! prefixed by `service.slot`, in colour on a terminal (console's rule: not with `NO_COLOR`,
//! nor in a pipe). Following: the history is merged exactly first, then the live streams
//! from the second it began (what the history wrote is skipped by timestamp), tasks started
//! since are looked for every two seconds, and Ctrl-C or a closed stdout ends it all (the
//! readers are aborted with their `JoinSet`). `since` and `until` take docker's forms (`when`).

mod merge;
mod when;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use rhai::{Array, Engine, Map};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use self::merge::{merge, source, Item, Line, Live, Printer, Source};
use self::when::Nanos;
use super::{docker_message, list_services, list_tasks, str_at, EngineHandle};
use crate::host::doc::{check_opts, Opt, Prim};
use crate::host::opts::{opt_bool, opt_str};
use crate::host::{usage_err, Host, ScriptResult};

/// `e.merged_logs`'s options.
const OPTS: &[Opt] = &[
    (
        "follow",
        "false; true: goes on with the live streams until Ctrl-C",
    ),
    ("tail", "\"all\", or how many of each task's last lines"),
    (
        "since",
        "\"\", or from when, as docker takes it: 10m, 2h30m, RFC 3339, Unix time",
    ),
    ("until", "\"\", or until when, in the same forms"),
    (
        "timestamps",
        "false; true: each line shows the engine's timestamp",
    ),
];

/// How often a follow looks for tasks started since.
const LOOK_EVERY: Duration = Duration::from_secs(2);

const NS: i64 = 1_000_000_000;

/// What to read: every task of a service, or one task.
#[derive(Debug, Clone)]
enum Target {
    Service(String),
    Task(String),
}

/// The options, read and checked.
struct Options {
    follow: bool,
    tail: String,
    since: Option<Nanos>,
    until: Option<Nanos>,
    timestamps: bool,
}

/// A task whose logs are read, and the prefix of its lines.
struct TaskInfo {
    id: String,
    prefix: String,
}

/// The tasks of the targets that ran a container (a task never started has no logs), each
/// once, sorted by prefix (`web.1`, `web.2`, …; a global service's tasks by node).
async fn tasks_of(d: &Docker, targets: &[Target]) -> ScriptResult<Vec<TaskInfo>> {
    // One listing for every service target and one for the task targets (a filter's values are
    // alternatives), and the services' names beside them: one round trip, whatever the count.
    let mut services = Vec::new();
    let mut ids = Vec::new();
    for t in targets {
        match t {
            Target::Service(name) => services.push(name.clone()),
            Target::Task(id) => ids.push(id.clone()),
        }
    }
    let listing = |key: &str, values: &[String]| {
        let f = HashMap::from([(key.to_string(), values.to_vec())]);
        async move {
            match f.values().all(|v| v.is_empty()) {
                true => Ok(Vec::new()),
                false => list_tasks(d, f).await,
            }
        }
    };
    let named = HashMap::from([("name".to_string(), services.clone())]);
    let (mut tasks, by_id, mut known) =
        tokio::try_join!(listing("service", &services), listing("id", &ids), async {
            match services.is_empty() {
                true => Ok(Vec::new()),
                false => list_services(d, named).await,
            }
        })?;
    tasks.extend(by_id);
    let mut seen = HashSet::new();
    tasks.retain(|t| {
        !str_at(t, &["Status", "ContainerStatus", "ContainerID"]).is_empty()
            && seen.insert(str_at(t, &["ID"]).to_string())
    });
    // The services of task targets, when the listing by name did not bring them.
    let missing: Vec<String> = tasks
        .iter()
        .map(|t| str_at(t, &["ServiceID"]).to_string())
        .filter(|id| !known.iter().any(|s| str_at(s, &["ID"]) == id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        known.extend(list_services(d, HashMap::from([("id".to_string(), missing)])).await?);
    }
    let mut names = HashMap::new();
    for s in &known {
        let name = str_at(s, &["Spec", "Name"]);
        let stack = str_at(s, &["Spec", "Labels", "com.docker.stack.namespace"]);
        let short = name
            .strip_prefix(&format!("{stack}_"))
            .filter(|_| !stack.is_empty())
            .unwrap_or(name);
        names.insert(str_at(s, &["ID"]).to_string(), short.to_string());
    }
    let mut out: Vec<(String, String, String)> = tasks
        .iter()
        .map(|t| {
            let service = names
                .get(str_at(t, &["ServiceID"]))
                .cloned()
                .unwrap_or_else(|| str_at(t, &["ServiceID"]).chars().take(12).collect());
            let slot = match t["Slot"].as_i64() {
                Some(n) if n > 0 => n.to_string(),
                _ => str_at(t, &["NodeID"]).chars().take(8).collect(),
            };
            let created = str_at(t, &["CreatedAt"]).to_string();
            (
                format!("{service}.{slot}"),
                created,
                str_at(t, &["ID"]).to_string(),
            )
        })
        .collect();
    out.sort();
    Ok(out
        .into_iter()
        .map(|(prefix, _, id)| TaskInfo { id, prefix })
        .collect())
}

/// One task's log lines, read from `since` (whole seconds to the engine, to the nanosecond
/// here) and, without `until`, until the stream ends; each sent to its source, `wake` told.
#[allow(clippy::too_many_arguments)]
async fn read_task(
    d: Docker,
    task: String,
    follow: bool,
    tail: String,
    since: Option<Nanos>,
    until: Option<Nanos>,
    tx: mpsc::Sender<Item>,
    wake: Arc<Notify>,
) {
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        timestamps: true,
        since: since.map(|s| s.div_euclid(NS) as i32).unwrap_or(0),
        tail,
        ..Default::default()
    };
    let mut stream = std::pin::pin!(d.task_logs(&task, Some(options)));
    let mut last = 0;
    'read: while let Some(chunk) = stream.next().await {
        let (bytes, stderr) = match chunk {
            Ok(LogOutput::StdErr { message }) => (message, true),
            Ok(other) => (other.into_bytes(), false),
            Err(e) => {
                let _ = tx.send(Item::Failed(docker_message(&e))).await;
                break;
            }
        };
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let line = parse_line(piece, stderr, last);
            last = line.ts;
            if since.is_some_and(|s| line.ts < s) {
                continue;
            }
            if until.is_some_and(|u| line.ts > u) {
                break 'read;
            }
            if tx.send(Item::Line(line)).await.is_err() {
                return;
            }
            wake.notify_one();
        }
    }
    drop(tx);
    wake.notify_one();
}

/// `<RFC 3339 timestamp> <text>` as the engine writes a line; one without a timestamp (the
/// rest of a long line) takes the previous line's time.
fn parse_line(piece: &[u8], stderr: bool, previous: Nanos) -> Line {
    let space = piece.iter().position(|b| *b == b' ');
    let stamped = space.and_then(|at| {
        let stamp = std::str::from_utf8(&piece[..at]).ok()?;
        Some((when::stamp(stamp)?, stamp.to_string(), at))
    });
    match stamped {
        Some((ts, stamp, at)) => Line {
            ts,
            stamp,
            text: piece[at + 1..].to_vec(),
            stderr,
        },
        None => Line {
            ts: previous,
            stamp: String::new(),
            text: piece.to_vec(),
            stderr,
        },
    }
}

/// Starts a reader for every task, each into a new source.
#[allow(clippy::too_many_arguments)]
fn start_readers(
    set: &mut JoinSet<()>,
    d: &Docker,
    tasks: &[TaskInfo],
    follow: bool,
    tail: &str,
    since: Option<Nanos>,
    until: Option<Nanos>,
    wake: &Arc<Notify>,
) -> Vec<Source> {
    let mut sources = Vec::new();
    for t in tasks {
        let (s, tx) = source(&t.id, &t.prefix);
        set.spawn(read_task(
            d.clone(),
            t.id.clone(),
            follow,
            tail.to_string(),
            since,
            until,
            tx,
            wake.clone(),
        ));
        sources.push(s);
    }
    sources
}

async fn merged_logs(d: &Docker, targets: Vec<Target>, o: Options) -> ScriptResult<()> {
    let started = when::now();
    let tasks = tasks_of(d, &targets).await?;
    let mut printer = Printer::new(console::colors_enabled(), o.timestamps);
    let wake = Arc::new(Notify::new());
    let mut readers = JoinSet::new();
    let sources = start_readers(
        &mut readers,
        d,
        &tasks,
        false,
        &o.tail,
        o.since,
        o.until,
        &wake,
    );
    let mut last = HashMap::new();
    merge(
        sources,
        wake.clone(),
        &mut printer,
        &mut last,
        None,
        Vec::new,
    )
    .await?;
    if !o.follow || o.until.is_some_and(|u| u < started) {
        return Ok(());
    }
    // Live: every task's stream from the second the history began, and tasks started since.
    let since = Some(o.since.unwrap_or(0).max(started.div_euclid(NS) * NS));
    let (new_tx, mut new_rx) = mpsc::unbounded_channel();
    let (d2, w2, until) = (d.clone(), wake.clone(), o.until);
    readers.spawn(async move {
        let mut known = HashSet::new();
        let mut mine = JoinSet::new();
        loop {
            if let Ok(tasks) = tasks_of(&d2, &targets).await {
                let fresh: Vec<TaskInfo> = tasks
                    .into_iter()
                    .filter(|t| known.insert(t.id.clone()))
                    .collect();
                for s in start_readers(&mut mine, &d2, &fresh, true, "all", since, until, &w2) {
                    if new_tx.send(s).is_err() {
                        return;
                    }
                }
                w2.notify_one();
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
    let live = Live {
        until: o.until,
        every: Duration::from_millis(250),
    };
    let more = move || {
        let mut v = Vec::new();
        while let Ok(s) = new_rx.try_recv() {
            v.push(s);
        }
        v
    };
    merge(Vec::new(), wake, &mut printer, &mut last, Some(live), more).await
}

/// Reads `since`/`until`: "" is none.
fn time_opt(opts: &Map, key: &str) -> ScriptResult<Option<Nanos>> {
    let value = opt_str(opts, key, "");
    if value.is_empty() {
        return Ok(None);
    }
    when::parse(&value, chrono::Utc::now())
        .map(Some)
        .map_err(|e| usage_err(format!("--{key}: {e}")))
}

pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.merged_logs(targets: array, opts: map)")
        .opts(OPTS)
        .doc(
            "Prints the logs of services and tasks merged in time order, each line prefixed by \
             `service.slot` (in colour on a terminal, not with NO_COLOR or in a pipe). A target \
             is `#{service: name}` (every task of it; following, tasks started later too) or \
             `#{task: id}`. Ends at the end of the logs, or following at Ctrl-C or `until`.",
        );
    prim.register(
        engine,
        move |e: &mut EngineHandle, targets: Array, opts: Map| -> ScriptResult<()> {
            check_opts("e.merged_logs", &opts, OPTS)?;
            let mut list = Vec::new();
            for t in targets {
                let m = t
                    .try_cast::<Map>()
                    .ok_or_else(|| usage_err("a target is a map: #{service: …} or #{task: …}"))?;
                let get = |k: &str| m.get(k).map(|v| v.to_string());
                match (get("service"), get("task")) {
                    (Some(s), None) => list.push(Target::Service(s)),
                    (None, Some(t)) => list.push(Target::Task(t)),
                    _ => return Err(usage_err("a target is #{service: name} or #{task: id}")),
                }
            }
            let tail = opt_str(&opts, "tail", "all");
            if tail != "all" && tail.parse::<u32>().is_err() {
                return Err(usage_err(format!(
                    "--tail takes a number of lines or \"all\", not {tail:?}"
                )));
            }
            let o = Options {
                follow: opt_bool(&opts, "follow", false),
                tail,
                since: time_opt(&opts, "since")?,
                until: time_opt(&opts, "until")?,
                timestamps: opt_bool(&opts, "timestamps", false),
            };
            h.block(merged_logs(&e.docker, list, o))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_from_their_timestamp() {
        let l = parse_line(b"2026-12-07T06:17:59.95253597Z a b\n", false, 0);
        assert_eq!(l.stamp, "2026-12-07T06:17:59.95253597Z");
        assert_eq!(l.text, b"a b\n");
        assert_eq!(l.ts % NS, 952_535_970);
        let rest = parse_line(b"no stamp here\n", true, 42);
        assert_eq!(
            (rest.ts, rest.text.as_slice()),
            (42, &b"no stamp here\n"[..])
        );
    }
}
