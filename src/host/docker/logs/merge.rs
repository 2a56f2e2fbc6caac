//! Log lines of many tasks merged in time order. Each task's lines come in order on a bounded
//! channel of their own (a reader that gets ahead waits), and the merger holds at most one line
//! per task, its head: the earliest head is written once every open source has one (exact, as
//! a task's later lines cannot be earlier), or, following live streams, once it has waited
//! [`HOLD`] (a silent task does not hold the others back).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::when::Nanos;
use crate::host::ScriptResult;

/// How long a live line waits for the other tasks' lines before it is written anyway.
pub const HOLD: Duration = Duration::from_millis(100);

/// How many lines a task's reader may be ahead of the merger.
pub const AHEAD: usize = 64;

/// One log line of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The engine's timestamp, in nanoseconds.
    pub ts: Nanos,
    /// The same as the engine wrote it (RFC 3339).
    pub stamp: String,
    /// The line, its newline included.
    pub text: Vec<u8>,
    /// Written on the task's stderr.
    pub stderr: bool,
}

/// What a task's reader sends.
#[derive(Debug)]
pub enum Item {
    Line(Line),
    /// The reader failed: the engine's message.
    Failed(String),
}

/// The reading end of one task's lines.
pub struct Source {
    pub task: String,
    /// What its lines are prefixed with (`web.1`).
    pub name: String,
    /// Index of its prefix in the [`Printer`], given when the merge takes it.
    prefix: usize,
    rx: mpsc::Receiver<Item>,
    head: Option<(Line, Instant)>,
    ended: bool,
}

/// A new source and the sender its reader writes to (telling the merge's `wake` after each).
pub fn source(task: &str, name: &str) -> (Source, mpsc::Sender<Item>) {
    let (tx, rx) = mpsc::channel(AHEAD);
    let s = Source {
        task: task.to_string(),
        name: name.to_string(),
        prefix: 0,
        rx,
        head: None,
        ended: false,
    };
    (s, tx)
}

/// Where merged lines go: prefixed, padded, coloured when asked, and written in batches.
pub struct Printer {
    prefixes: Vec<String>,
    width: usize,
    colours: bool,
    timestamps: bool,
    out: Vec<u8>,
    err: Vec<u8>,
    /// Tests: what would have been written (stdout and stderr alike), instead of writing it.
    captured: Option<Vec<u8>>,
}

/// The colours prefixes take in turn, as docker compose gives its containers.
const PALETTE: [console::Color; 6] = [
    console::Color::Cyan,
    console::Color::Yellow,
    console::Color::Green,
    console::Color::Magenta,
    console::Color::Blue,
    console::Color::Red,
];

impl Printer {
    pub fn new(colours: bool, timestamps: bool) -> Self {
        Printer {
            prefixes: Vec::new(),
            width: 0,
            colours,
            timestamps,
            out: Vec::new(),
            err: Vec::new(),
            captured: None,
        }
    }

    /// The index of a prefix, added if new (the column widens for a longer one).
    pub fn prefix(&mut self, p: &str) -> usize {
        if let Some(i) = self.prefixes.iter().position(|x| x == p) {
            return i;
        }
        self.width = self.width.max(p.chars().count());
        self.prefixes.push(p.to_string());
        self.prefixes.len() - 1
    }

    /// Adds a line to what is written next.
    pub fn line(&mut self, prefix: usize, line: &Line) {
        let name = format!("{:<w$}", self.prefixes[prefix], w = self.width);
        let name = if self.colours {
            let style = console::Style::new()
                .fg(PALETTE[prefix % PALETTE.len()])
                .force_styling(true);
            style.apply_to(name).to_string()
        } else {
            name
        };
        let buf = if line.stderr {
            &mut self.err
        } else {
            &mut self.out
        };
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b" | ");
        if self.timestamps {
            buf.extend_from_slice(line.stamp.as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(&line.text);
        if !line.text.ends_with(b"\n") {
            buf.push(b'\n');
        }
    }

    /// A message of wsm's own about a source, on stderr.
    pub fn note(&mut self, prefix: usize, message: &str) {
        let text = format!("{} | wsm: {message}\n", self.prefixes[prefix]);
        self.err.extend_from_slice(text.as_bytes());
    }

    /// Writes what is pending; an error once stdout is closed (the command stops, exit 141).
    pub fn flush(&mut self) -> ScriptResult<()> {
        if let Some(c) = &mut self.captured {
            c.append(&mut self.err);
            c.append(&mut self.out);
            return Ok(());
        }
        if !self.err.is_empty() {
            crate::host::stdio::write_stderr(&self.err);
            self.err.clear();
        }
        if !self.out.is_empty() {
            let ok = crate::host::stdio::write_stdout(&self.out);
            self.out.clear();
            if !ok {
                return Err(crate::host::script_err("stdout is closed"));
            }
        }
        Ok(())
    }

    fn pending(&self) -> usize {
        self.out.len() + self.err.len()
    }
}

/// How a merge goes on: exact until every source ends, or live.
pub struct Live {
    /// Past this instant (nanoseconds), lines are dropped and the merge ends.
    pub until: Option<Nanos>,
    /// Called every [`Live::every`] to add sources (tasks that started since).
    pub every: Duration,
}

/// Merges the sources' lines into `printer` until every source has ended (or, live, until
/// `until` passes); `last` keeps each task's last written timestamp, and a line not after it is
/// skipped (a live stream repeats what the history already wrote). `more` is asked for new
/// sources when live.
pub async fn merge(
    mut sources: Vec<Source>,
    wake: Arc<Notify>,
    printer: &mut Printer,
    last: &mut HashMap<String, Nanos>,
    live: Option<Live>,
    mut more: impl FnMut() -> Vec<Source>,
) -> ScriptResult<()> {
    let mut next_look = Instant::now();
    for s in &mut sources {
        s.prefix = printer.prefix(&s.name);
    }
    loop {
        for s in sources.iter_mut().filter(|s| s.head.is_none() && !s.ended) {
            loop {
                match s.rx.try_recv() {
                    Ok(Item::Line(line)) => {
                        if last.get(&s.task).is_some_and(|t| line.ts <= *t) {
                            continue;
                        }
                        s.head = Some((line, Instant::now()));
                    }
                    Ok(Item::Failed(message)) => printer.note(s.prefix, &message),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => s.ended = true,
                }
                break;
            }
        }
        let waiting = sources.iter().any(|s| s.head.is_none() && !s.ended);
        let earliest = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.as_ref().map(|(l, at)| (l.ts, *at, i)))
            .min_by_key(|(ts, _, i)| (*ts, *i));
        let now = Instant::now();
        if let Some((_, arrived, i)) = earliest {
            let held_enough = live.is_some() && now.duration_since(arrived) >= HOLD;
            if !waiting || held_enough {
                let (line, _) = sources[i].head.take().expect("a head");
                let past = live
                    .as_ref()
                    .and_then(|l| l.until)
                    .is_some_and(|u| line.ts > u);
                if !past {
                    last.insert(sources[i].task.clone(), line.ts);
                    printer.line(sources[i].prefix, &line);
                    if printer.pending() > 64 * 1024 {
                        printer.flush()?;
                    }
                }
                continue;
            }
        } else if !waiting && live.is_none() {
            return printer.flush();
        }
        printer.flush()?;
        // Wait for a line, the end of a source, a held line's time, or a look for new tasks.
        let mut wait = Duration::from_secs(3600);
        if let Some(l) = &live {
            if let Some((_, arrived, _)) = earliest {
                wait = wait.min((arrived + HOLD).saturating_duration_since(now));
            }
            if now >= next_look {
                for mut s in more() {
                    s.prefix = printer.prefix(&s.name);
                    sources.push(s);
                }
                next_look = now + l.every;
            }
            wait = wait.min(next_look.saturating_duration_since(now));
            if let Some(u) = l.until {
                let left = u - super::when::now();
                if left < 0 && earliest.is_none() {
                    return printer.flush();
                }
                wait = wait.min(Duration::from_nanos(left.max(0) as u64));
            }
            sources.retain(|s| !(s.ended && s.head.is_none()));
        }
        let _ = tokio::time::timeout(wait, wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: Nanos, text: &str) -> Item {
        Item::Line(Line {
            ts,
            stamp: format!("T{ts}"),
            text: format!("{text}\n").into_bytes(),
            stderr: false,
        })
    }

    #[tokio::test]
    async fn lines_of_several_sources_come_out_in_time_order() {
        let wake = Arc::new(Notify::new());
        let mut printer = Printer::new(false, true);
        printer.captured = Some(Vec::new());
        let (a, ta) = source("ta", "a.1");
        let (b, tb) = source("tb", "long.2");
        // Each source has a reader of its own, as each task has; a sends all its lines (more
        // than its channel holds) at once, b slowly.
        let w = wake.clone();
        let feed_a = tokio::spawn(async move {
            for ts in (1..200).step_by(2) {
                ta.send(line(ts, &format!("a{ts}"))).await.unwrap();
                w.notify_one();
            }
            drop(ta);
            w.notify_one();
        });
        let w = wake.clone();
        let feed_b = tokio::spawn(async move {
            for ts in (0..200).step_by(2) {
                tb.send(line(ts, &format!("b{ts}"))).await.unwrap();
                w.notify_one();
                tokio::task::yield_now().await;
            }
            drop(tb);
            w.notify_one();
        });
        // b's line 0 was written before (a live stream repeating the history).
        let mut last = HashMap::from([("tb".to_string(), 0)]);
        merge(vec![a, b], wake, &mut printer, &mut last, None, Vec::new)
            .await
            .unwrap();
        feed_a.await.unwrap();
        feed_b.await.unwrap();
        let text = String::from_utf8(printer.captured.take().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 199, "{text}");
        assert_eq!(lines[0], "a.1    | T1 a1");
        assert_eq!(lines[1], "long.2 | T2 b2");
        let stamps: Vec<i64> = lines
            .iter()
            .map(|l| {
                l.split(" | T")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!((last["ta"], last["tb"]), (199, 198));
    }
}
