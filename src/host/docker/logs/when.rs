//! The points in time `--since` and `--until` take, read as the Docker CLI reads them (its
//! `GetTimestamp`): a Go duration before now (`10m`, `2h30m`, `1.5h`; cut to the whole second,
//! as docker does), an RFC 3339 time or a shorter form of it (`2026-12-07`, `2026-12-07T10`,
//! `2026-12-07T10:30`, with or without a fraction, in the local zone when it names none), or
//! Unix time (`1765100000`, `1765100000.5`). Chrono parses the dates; the Go duration grammar
//! is read here because no crate reads exactly it (humantime takes `1 day` and `5min`, which
//! docker refuses, and refuses `1.5h`, which docker takes).

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

const NS: i64 = 1_000_000_000;

/// `value` as nanoseconds since the epoch, durations counted back from `now`; the error is one
/// sentence for the user.
pub fn parse(value: &str, now: DateTime<Utc>) -> Result<Nanos, String> {
    if value != "0" {
        if let Some(d) = go_duration(value) {
            // Docker sends `reference.Add(-d).Unix()`: whole seconds.
            let secs = (now.timestamp_nanos_opt().unwrap_or(0) - d).div_euclid(NS);
            return Ok(secs * NS);
        }
    }
    match time_of(value) {
        Some(t) => Ok(t),
        None if value.contains('-') => Err(format!("{value:?} is not a time docker reads")),
        None => unix(value).ok_or_else(|| format!("{value:?} is neither a time nor a duration")),
    }
}

/// A Go duration (`time.ParseDuration`) in nanoseconds: an optional sign, then one or more
/// numbers (with an optional fraction) each followed by a unit: ns, us, µs, ms, s, m, h.
fn go_duration(s: &str) -> Option<i64> {
    let (sign, mut rest) = match s.as_bytes().first()? {
        b'-' => (-1.0, &s[1..]),
        b'+' => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[unit_end..];
    }
    Some((sign * total) as i64)
}

/// An RFC 3339 time or one of its shorter forms, as docker picks the layout: a fraction means
/// RFC 3339 with nanoseconds, a `T` a time of day to the hour, minute or second, else a date;
/// no zone (no `Z`, `+`, nor a third `-`) means the local zone.
fn time_of(value: &str) -> Option<Nanos> {
    let zoned = value.contains(['z', 'Z', '+']) || value.matches('-').count() == 3;
    let (date, time) = match value.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    // The zone: after the time of day, else after the ten characters of the date.
    let (date, time, zone) = match time {
        Some(t) => {
            let at = if zoned {
                t.find(['Z', 'z', '+', '-']).unwrap_or(t.len())
            } else {
                t.len()
            };
            (date, Some(&t[..at]), &t[at..])
        }
        None if zoned && date.len() > 10 => (&date[..10], None, &date[10..]),
        None => (date, None, ""),
    };
    if zoned && zone.is_empty() {
        return None;
    }
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let naive = match time {
        None => day.and_hms_opt(0, 0, 0)?,
        Some(t) => {
            let (hms, frac) = match t.split_once('.') {
                Some((hms, f)) if !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()) => {
                    (hms, Some(f))
                }
                Some(_) => return None,
                None => (t, None),
            };
            let full = match hms.matches(':').count() {
                0 => format!("{hms}:00:00"),
                1 => format!("{hms}:00"),
                2 => hms.to_string(),
                _ => return None,
            };
            // Docker's layouts with a fraction have seconds.
            if frac.is_some() && hms.matches(':').count() != 2 {
                return None;
            }
            let t = NaiveDateTime::parse_from_str(&format!("{date}T{full}"), "%Y-%m-%dT%H:%M:%S")
                .ok()?;
            let nanos = match frac {
                Some(f) => {
                    let digits = &f[..f.len().min(9)];
                    digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
                }
                None => 0,
            };
            t.with_nanosecond(nanos)?
        }
    };
    let at = if !zoned {
        Local.from_local_datetime(&naive).earliest()?.to_utc()
    } else {
        offset(zone)?.from_local_datetime(&naive).single()?.to_utc()
    };
    at.timestamp_nanos_opt()
}

use chrono::Timelike;

/// `Z` or `±hh:mm`.
fn offset(zone: &str) -> Option<FixedOffset> {
    if zone.eq_ignore_ascii_case("z") {
        return FixedOffset::east_opt(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = zone[1..].split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

/// Unix time: seconds, with an optional fraction (`1765100000.5`).
fn unix(value: &str) -> Option<Nanos> {
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits = &frac[..frac.len().min(9)];
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    secs.checked_mul(NS)?.checked_add(nanos)
}

/// An RFC 3339 timestamp as the engine writes it before a log line, in nanoseconds.
pub fn stamp(text: &str) -> Option<Nanos> {
    DateTime::parse_from_rfc3339(text)
        .ok()?
        .timestamp_nanos_opt()
}

/// Now, in nanoseconds since the epoch.
pub fn now() -> Nanos {
    Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Nanos {
        stamp(s).unwrap()
    }

    #[test]
    fn durations_count_back_from_now_in_whole_seconds() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.700Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse("10m", now), Ok(at("2026-12-07T09:50:00Z")));
        assert_eq!(parse("2h30m", now), Ok(at("2026-12-07T07:30:00Z")));
        assert_eq!(parse("1.5h", now), Ok(at("2026-12-07T08:30:00Z")));
        assert_eq!(parse("90s", now), Ok(at("2026-12-07T09:58:30Z")));
        assert_eq!(parse("-1m", now), Ok(at("2026-12-07T10:01:00Z")));
        assert_eq!(parse("300ms", now), Ok(at("2026-12-07T10:00:00Z")));
        // "0" is Unix time 0, not a duration.
        assert_eq!(parse("0", now), Ok(0));
    }

    #[test]
    fn times_in_docker_forms() {
        let now = Utc::now();
        assert_eq!(
            parse("2026-12-07T10:30:00Z", now),
            Ok(at("2026-12-07T10:30:00Z"))
        );
        assert_eq!(
            parse("2026-12-07T10:30:00.25+02:00", now),
            Ok(at("2026-12-07T08:30:00.25Z"))
        );
        assert_eq!(
            parse("2026-12-07T10:30Z", now),
            Ok(at("2026-12-07T10:30:00Z"))
        );
        assert_eq!(
            parse("2026-12-07T10-01:00", now),
            Ok(at("2026-12-07T11:00:00Z"))
        );
        assert_eq!(parse("2026-12-07Z", now), Ok(at("2026-12-07T00:00:00Z")));
        assert_eq!(
            parse("2026-12-07+01:00", now),
            Ok(at("2026-12-06T23:00:00Z"))
        );
        assert_eq!(parse("1765100000", now), Ok(1_765_100_000 * NS));
        assert_eq!(parse("1765100000.5", now), Ok(1_765_100_000 * NS + NS / 2));
        // No zone: the local one.
        let local = Local
            .with_ymd_and_hms(2026, 12, 7, 10, 30, 0)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        assert_eq!(parse("2026-12-07T10:30", now), Ok(local));
        assert_eq!(parse("2026-12-07T10:30:00.000", now), Ok(local));
    }

    #[test]
    fn bad_times_are_refused() {
        let now = Utc::now();
        for bad in [
            "",
            "soon",
            "10 minutes",
            "1day",
            "2026-13-01",
            "2026-12-07T25",
            "12:30",
        ] {
            assert!(parse(bad, now).is_err(), "{bad:?}");
        }
    }
}
