//! A progress display for long waits: one line per named item, on stderr so that stdout keeps
//! only results (and, under `--json`, only the JSON document). On a terminal the lines are
//! redrawn in place with a spinner; otherwise a line is printed as `name: line` when it changes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One line per named item, each updated as its item moves on.
pub struct ProgressDisplay {
    bars: BTreeMap<String, ProgressBar>,
    multi: MultiProgress,
    last: BTreeMap<String, String>,
    tty: bool,
}

impl Default for ProgressDisplay {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressDisplay {
    /// An empty display, drawn in place when stderr is a terminal.
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        ProgressDisplay {
            bars: BTreeMap::new(),
            multi,
            last: BTreeMap::new(),
            tty,
        }
    }

    /// Sets the line shown for `name`, adding the item on first use; an unchanged line is not
    /// printed again.
    pub fn update(&mut self, name: &str, line: String) {
        if self.last.get(name) == Some(&line) {
            return;
        }
        self.last.insert(name.to_string(), line.clone());
        if self.tty {
            let bar = self.bars.entry(name.to_string()).or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:30} {msg}")
                        .expect("static template"),
                );
                b.set_prefix(name.to_string());
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            bar.set_message(line);
        } else {
            eprintln!("{name}: {line}");
        }
    }

    /// Stops the spinners, leaving each item's last line on the screen.
    pub fn finish(self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}
