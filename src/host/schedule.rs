//! Schedules of jobs: an interval (`every 10s`) or a cron line (`*/5 * * * *`, five fields,
//! UTC). A schedule fires at *slots*: whole seconds since the epoch. An interval's slots are
//! its multiples (so every runner, on any manager, agrees on them); a cron line's are the
//! minutes it matches. [`due`] tells a runner which slot to run now and which it missed.

use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::Prim;
use super::{usage_err, ScriptResult};

/// The most missed slots [`due`] lists one by one (the count is always exact).
const MISSED_LISTED: usize = 50;
/// How far back a cron line is searched: a year of minutes.
const CRON_HORIZON: i64 = 366 * 24 * 3600;

/// One cron field: which values match.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    allowed: Vec<bool>,
    any: bool,
}

/// A parsed cron line.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minute: Field,
    hour: Field,
    day: Field,
    month: Field,
    weekday: Field,
}

/// A schedule: an interval in seconds, or a cron line.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Every(i64),
    Cron(Box<Cron>),
}

fn field(text: &str, name: &str, min: u32, max: u32) -> Result<Field, String> {
    let mut allowed = vec![false; max as usize + 1];
    let bad = || {
        format!("cron {name} field \"{text}\" is not valid: use *, N, N-M, */S, N-M/S or lists of them ({min}-{max})")
    };
    let number = |s: &str| -> Result<u32, String> {
        s.parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(bad)
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>().ok().filter(|s| *s >= 1).ok_or_else(bad)?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a)?, number(b)?)
        } else {
            let n = number(range)?;
            (n, if part.contains('/') { max } else { n })
        };
        if lo > hi {
            return Err(bad());
        }
        for v in (lo..=hi).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok(Field {
        allowed,
        any: text == "*",
    })
}

impl Cron {
    pub fn parse(line: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = parts[..] else {
            return Err(format!(
                "cron line \"{line}\" must have five fields: minute hour day-of-month month day-of-week"
            ));
        };
        let mut weekday = field(weekday, "day-of-week", 0, 7)?;
        if weekday.allowed[7] {
            weekday.allowed[0] = true; // 7 is Sunday too
        }
        Ok(Cron {
            minute: field(minute, "minute", 0, 59)?,
            hour: field(hour, "hour", 0, 23)?,
            day: field(day, "day-of-month", 1, 31)?,
            month: field(month, "month", 1, 12)?,
            weekday,
        })
    }

    /// Whether some day matches: every minute and hour field allows something, and any
    /// weekday comes round, so only a day of the month that none of the months has (the 30th
    /// of February) can make a line that never fires. February counts its leap day.
    fn can_fire(&self) -> bool {
        const DAYS_IN: [usize; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if !self.day.any && !self.weekday.any {
            return true; // either matches, and every weekday comes
        }
        (1..=12).any(|m| self.month.allowed[m] && (1..=DAYS_IN[m]).any(|d| self.day.allowed[d]))
    }

    /// Whether the minute starting at `t` (seconds since the epoch, UTC) matches.
    fn matches(&self, t: i64) -> bool {
        let days = t.div_euclid(86400);
        let secs = t.rem_euclid(86400);
        let (_, month, day) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
        let day_ok = match (self.day.any, self.weekday.any) {
            // Both restricted: either matches (as cron has always done).
            (false, false) => self.day.allowed[day] || self.weekday.allowed[weekday],
            _ => self.day.allowed[day] && self.weekday.allowed[weekday],
        };
        self.minute.allowed[(secs / 60 % 60) as usize]
            && self.hour.allowed[(secs / 3600) as usize]
            && self.month.allowed[month]
            && day_ok
    }
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, usize, usize) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as usize;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Schedule {
    /// `every <duration>` (Go or humantime syntax: 10s, 5m, 1h30m) or a five-field cron line.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if let Some(d) = text.strip_prefix("every ") {
            let d = d.trim();
            let secs = humantime::parse_duration(d)
                .map_err(|_| format!("\"{d}\" is not a duration: use 10s, 5m, 1h30m"))?
                .as_secs();
            if secs < 1 {
                return Err(format!("the interval \"{d}\" is shorter than a second"));
            }
            return Ok(Schedule::Every(secs.min(i64::MAX as u64) as i64));
        }
        Cron::parse(text).map(|c| Schedule::Cron(Box::new(c)))
    }

    /// A schedule given for a new job: [`Schedule::parse`], and a cron line that never fires
    /// (`0 0 30 2 *`) refused. A stored one is only parsed: its job is listed and never due.
    pub fn parse_new(text: &str) -> Result<Schedule, String> {
        let schedule = Schedule::parse(text)?;
        if let Schedule::Cron(c) = &schedule {
            if !c.can_fire() {
                return Err(format!(
                    "cron line \"{}\" never fires: none of its months has one of its days of the month",
                    text.trim()
                ));
            }
        }
        Ok(schedule)
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Schedule::Every(n) => Some((t.div_euclid(*n) + 1) * n),
            Schedule::Cron(c) => {
                let mut m = (t.div_euclid(60) + 1) * 60;
                let end = t + CRON_HORIZON;
                while m <= end {
                    if c.matches(m) {
                        return Some(m);
                    }
                    m += 60;
                }
                None
            }
        }
    }
}

/// What a runner should do at `now`, given the last slot claimed (or the time the job was
/// added, when it never ran).
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The latest slot in (last, now], to run now; None when no slot has come.
    pub slot: Option<i64>,
    /// The slots in (last, now] before it, which were not run: at most [`MISSED_LISTED`].
    pub missed: Vec<i64>,
    pub missed_count: i64,
    /// The first slot after now.
    pub next: Option<i64>,
}

pub fn due(schedule: &Schedule, last: i64, now: i64) -> Due {
    let mut slots = Vec::new();
    let mut count = 0i64;
    let mut latest = None;
    match schedule {
        Schedule::Every(n) => {
            let first = (last.div_euclid(*n) + 1) * n;
            if first <= now {
                let last_due = now.div_euclid(*n) * n;
                latest = Some(last_due);
                count = (last_due - first) / n;
                let mut t = first;
                while t < last_due && slots.len() < MISSED_LISTED {
                    slots.push(t);
                    t += n;
                }
            }
        }
        Schedule::Cron(_) => {
            let mut t = last.max(now - CRON_HORIZON);
            while let Some(s) = schedule.next_after(t).filter(|s| *s <= now) {
                if let Some(prev) = latest.replace(s) {
                    count += 1;
                    if slots.len() < MISSED_LISTED {
                        slots.push(prev);
                    }
                }
                t = s;
            }
        }
    }
    Due {
        slot: latest,
        missed: slots,
        missed_count: count,
        next: schedule.next_after(now),
    }
}

/// Registers the `schedule::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    let prim = Prim::new("schedule::check(text: string) -> string").doc(
        "The schedule as given (`every 10s`, `every 1h30m`, or a cron line `*/15 9-17 * * 1-5`), \
         or a usage error saying what is wrong (a cron line that never fires, `0 0 30 2 *`, \
         too). Use it on a schedule given for a new job; a stored one is only read.",
    );
    prim.set_in(&mut m, |text: &str| -> ScriptResult<String> {
        Schedule::parse_new(text).map_err(usage_err)?;
        Ok(text.trim().to_string())
    });
    let prim = Prim::new("schedule::due(text: string, last: int, now: int) -> map").doc(
        "What to run at `now` (seconds since the epoch) when `last` was the last slot claimed: \
         `#{slot, missed, missed_count, next}`: the latest slot in (last, now] (() if none), the \
         earlier ones in that span (at most 50 listed, all counted), and the first slot after \
         now. An interval's slots are its multiples, so every runner agrees on them.",
    );
    prim.set_in(
        &mut m,
        |text: &str, last: i64, now: i64| -> ScriptResult<Map> {
            let s = Schedule::parse(text).map_err(usage_err)?;
            let d = due(&s, last, now);
            let opt = |v: Option<i64>| v.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT);
            let mut out = Map::new();
            out.insert("slot".into(), opt(d.slot));
            let missed: Array = d.missed.into_iter().map(Dynamic::from_int).collect();
            out.insert("missed".into(), missed.into());
            out.insert("missed_count".into(), Dynamic::from_int(d.missed_count));
            out.insert("next".into(), opt(d.next));
            Ok(out)
        },
    );
    engine.register_static_module("schedule", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T00:00:00Z, a Tuesday.
    const DEC1: i64 = 1_796_083_200;

    #[test]
    fn intervals_are_multiples_and_report_missed_slots() {
        let s = Schedule::parse("every 10s").unwrap();
        assert_eq!(s, Schedule::Every(10));
        let d = due(&s, 100, 105);
        assert_eq!((d.slot, d.missed_count, d.next), (None, 0, Some(110)));
        let d = due(&s, 100, 110);
        assert_eq!((d.slot, d.missed_count), (Some(110), 0));
        let d = due(&s, 100, 145);
        assert_eq!(
            (d.slot, d.missed.clone(), d.missed_count),
            (Some(140), vec![110, 120, 130], 3)
        );
        let d = due(&s, 0, 10_000_000);
        assert_eq!((d.missed.len(), d.missed_count), (50, 999_999));
    }

    #[test]
    fn cron_lines_match_minutes_in_utc() {
        assert_eq!(civil_from_days(DEC1 / 86400), (2026, 12, 1));
        let s = Schedule::parse("*/15 9-17 * * 1-5").unwrap();
        // Tuesday 00:00 → the first slot is 09:00 that day.
        assert_eq!(s.next_after(DEC1), Some(DEC1 + 9 * 3600));
        assert_eq!(s.next_after(DEC1 + 9 * 3600), Some(DEC1 + 9 * 3600 + 900));
        // Saturday 2026-12-05 → Monday 2026-12-07 09:00.
        assert_eq!(
            s.next_after(DEC1 + 4 * 86400),
            Some(DEC1 + 6 * 86400 + 9 * 3600)
        );
        let d = due(&s, DEC1 + 9 * 3600, DEC1 + 10 * 3600 + 1);
        assert_eq!(d.slot, Some(DEC1 + 10 * 3600));
        assert_eq!(d.missed_count, 3, "09:15, 09:30, 09:45");
        // Day of month or day of week when both are given; 7 is Sunday.
        // The 29th of February comes in leap years; with a weekday, either matches.
        assert!(Schedule::parse_new("0 0 29 2 *").is_ok());
        assert!(Schedule::parse_new("0 0 30 2 1").is_ok());
        // One stored before the check is read, and never due.
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(never.next_after(DEC1), None);
        let s = Schedule::parse("0 0 13 * 7").unwrap();
        assert_eq!(s.next_after(DEC1), Some(DEC1 + 5 * 86400), "Sunday the 6th");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, says) in [
            ("every 0s", "shorter than a second"),
            ("every soon", "is not a duration"),
            ("* * *", "five fields"),
            ("60 * * * *", "minute field"),
            ("* * 0 * *", "day-of-month"),
            ("*/0 * * * *", "minute field"),
            ("5-1 * * * *", "minute field"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
        ] {
            let e = Schedule::parse_new(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
