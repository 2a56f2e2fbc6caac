//! Schedules of jobs: an interval (`every 10s`) or a cron line (`*/5 * * * *`, `0 9 * * MON-FRI`,
//! `@daily`, read by the croner crate), in UTC unless it starts with `CRON_TZ=<zone>`
//! (`CRON_TZ=Europe/Paris 0 9 * * *`). A schedule fires at *slots*: whole seconds since the epoch. An interval's slots are
//! its multiples (so every runner, on any manager, agrees on them); a cron line's are the
//! minutes it matches. [`due`] tells a runner which slot to run now and which it missed.

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use rhai::{Array, Dynamic, Engine, Map, Module};

use super::doc::Prim;
use super::{usage_err, ScriptResult};

/// The most missed slots [`due`] lists one by one (the count is always exact).
const MISSED_LISTED: usize = 50;
/// How far back a cron line's missed slots are searched: a year.
const CRON_HORIZON: i64 = 366 * 24 * 3600;

/// A parsed cron line and the zone its times are read in.
#[derive(Debug, Clone)]
pub struct Cron {
    line: croner::Cron,
    zone: Tz,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.line.pattern.to_string() == other.line.pattern.to_string() && self.zone == other.zone
    }
}

/// Which of five fields croner refuses, as a phrase naming it (croner's own errors do not).
fn bad_field(fields: &str) -> Option<String> {
    const NAMES: [(&str, &str); 5] = [
        ("minute", "0-59"),
        ("hour", "0-23"),
        ("day-of-month", "1-31"),
        ("month", "1-12 or JAN-DEC"),
        ("day-of-week", "0-7 or SUN-SAT"),
    ];
    let parts: Vec<&str> = fields.split_whitespace().collect();
    if parts.len() != 5 {
        return None;
    }
    let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
    (0..5).find_map(|i| {
        let mut alone = ["*"; 5];
        alone[i] = parts[i];
        let e = parser.parse(&alone.join(" ")).err()?;
        let (name, range) = NAMES[i];
        Some(format!(
            "the {name} field \"{}\" ({e}): use *, N, N-M, */S, N-M/S or lists of them ({range})",
            parts[i]
        ))
    })
}

/// A schedule: an interval in seconds, or a cron line.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Every(i64),
    Cron(Box<Cron>),
}

impl Cron {
    /// `[CRON_TZ=<zone>] <five fields | @macro>`: croner reads the fields (numbers, ranges,
    /// steps, lists, names such as `MON` and `JAN`, `L`, `#`, `W`) and the macros (`@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`); the zone is an IANA name (chrono-tz's
    /// bundled database, so a runner image needs no zoneinfo), UTC when not given. `TZ=` is
    /// read as `CRON_TZ=`, as cronie does.
    pub fn parse(line: &str) -> Result<Cron, String> {
        let line = line.trim();
        let (zone, fields) = match line
            .strip_prefix("CRON_TZ=")
            .or_else(|| line.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (name, fields) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let zone = name.parse::<Tz>().map_err(|_| {
                    format!("\"{name}\" is not a time zone: use an IANA name such as Europe/Paris or UTC")
                })?;
                (zone, fields.trim())
            }
            None => (Tz::UTC, line),
        };
        if !fields.starts_with('@') && fields.split_whitespace().count() != 5 {
            return Err(format!(
                "cron line \"{line}\" must have five fields: minute hour day-of-month month day-of-week (or @hourly, @daily, @weekly, @monthly, @yearly)"
            ));
        }
        let parsed = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(fields)
            .map_err(|e| match bad_field(fields) {
                Some(field) => format!("cron line \"{line}\" is not valid: {field}"),
                None => format!("cron line \"{line}\" is not valid: {e}"),
            })?;
        Ok(Cron { line: parsed, zone })
    }

    /// The first minute matching strictly after `t`, None when none ever comes.
    fn next_after(&self, t: i64) -> Option<i64> {
        let at = self.zone.timestamp_opt(t, 0).single()?;
        let next = self.line.find_next_occurrence(&at, false).ok()?;
        Some(next.timestamp())
    }
}

impl Schedule {
    /// `every <duration>` (Go or humantime syntax: 10s, 5m, 1h30m) or a cron line ([`Cron::parse`]).
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
            if c.next_after(0).is_none() {
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
            Schedule::Cron(c) => c.next_after(t),
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
        "The schedule as given (`every 10s`, `every 1h30m`, or a cron line `*/15 9-17 * * 1-5`, \
         `0 9 * * MON-FRI`, `@daily`, in UTC unless it starts with `CRON_TZ=<zone>`), \
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
    /// 2026-07-01T00:00:00Z.
    const JUL1: i64 = 1_782_864_000;

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
        assert_eq!(due(&never, DEC1, DEC1 + 86400).slot, None);
        let s = Schedule::parse("0 0 13 * 7").unwrap();
        assert_eq!(s.next_after(DEC1), Some(DEC1 + 5 * 86400), "Sunday the 6th");
    }

    #[test]
    fn cron_lines_know_names_macros_and_zones() {
        let next = |line: &str, t: i64| Schedule::parse_new(line).unwrap().next_after(t);
        // Names of days and months, any case.
        assert_eq!(
            next("0 12 * JAN,DEC MON", DEC1),
            Some(DEC1 + 6 * 86400 + 12 * 3600)
        );
        assert_eq!(next("0 12 * jan,dec mon-fri", DEC1), Some(DEC1 + 12 * 3600));
        assert_eq!(
            next("30 6 * * SUN", DEC1),
            Some(DEC1 + 5 * 86400 + 6 * 3600 + 1800)
        );
        // Macros.
        assert_eq!(next("@daily", DEC1), Some(DEC1 + 86400));
        assert_eq!(next("@hourly", DEC1 + 1), Some(DEC1 + 3600));
        assert_eq!(
            next("@weekly", DEC1),
            Some(DEC1 + 5 * 86400),
            "Sunday 00:00"
        );
        assert_eq!(next("@monthly", DEC1), Some(1_798_761_600), "2027-01-01");
        assert_eq!(next("@yearly", DEC1), Some(1_798_761_600));
        // A zone: 09:00 in Paris is 08:00 UTC in winter (CET) and 07:00 in summer (CEST).
        assert_eq!(
            next("CRON_TZ=Europe/Paris 0 9 * * *", DEC1),
            Some(DEC1 + 8 * 3600)
        );
        assert_eq!(
            next("TZ=Europe/Paris 0 9 * * *", JUL1),
            Some(JUL1 + 7 * 3600)
        );
        assert_eq!(next("CRON_TZ=UTC @daily", DEC1), Some(DEC1 + 86400));
        // Tuesday 2026-12-01 00:00 UTC is Monday 19:00 in New York: its Tuesday 09:00 is 14:00 UTC.
        assert_eq!(
            next("CRON_TZ=America/New_York 0 9 * * TUE", DEC1),
            Some(DEC1 + 14 * 3600)
        );
        // Clock changes in Paris: 02:30 does not exist on 2026-03-29 and runs at 03:00 CEST
        // (01:00 UTC); it comes twice on 2026-10-25 and runs once, at the first (00:30 UTC).
        let s = Schedule::parse("CRON_TZ=Europe/Paris 30 2 * * *").unwrap();
        let (mar29, oct25) = (1_774_742_400, 1_792_886_400);
        assert_eq!(s.next_after(mar29 - 3600), Some(mar29 + 3600));
        assert_eq!(s.next_after(mar29 + 3600), Some(mar29 + 86400 + 1800));
        assert_eq!(s.next_after(oct25 - 3600), Some(oct25 + 1800));
        assert_eq!(s.next_after(oct25 + 1800), Some(oct25 + 86400 + 5400));
        let d = due(
            &Schedule::parse("CRON_TZ=Asia/Tokyo 0 * * * *").unwrap(),
            DEC1,
            DEC1 + 3 * 3600 + 5,
        );
        assert_eq!((d.slot, d.missed_count), (Some(DEC1 + 3 * 3600), 2));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, says) in [
            ("every 0s", "shorter than a second"),
            ("every soon", "is not a duration"),
            ("* * *", "five fields"),
            ("0 * * * * *", "five fields"),
            ("60 * * * *", "minute field \"60\""),
            ("* * 0 * *", "day-of-month field"),
            ("*/0 * * * *", "minute field"),
            ("5-1 * * * *", "minute field"),
            ("* * * 13 *", "month field"),
            ("0 0 * * FOO", "day-of-week field"),
            ("@fortnightly", "is not valid"),
            ("CRON_TZ=Mars/Olympus 0 * * * *", "not a time zone"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
        ] {
            let e = Schedule::parse_new(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
