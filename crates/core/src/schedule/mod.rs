//! When jobs run: a pure function of (schedule, instant, time zone), no clock inside.
//!
//! A schedule is one of
//! - `every <N>s|m|h|d`: fixed intervals aligned to the Unix epoch (so `every 6h` fires at
//!   00:00, 06:00, 12:00 and 18:00 UTC in any time zone, and `every 2s` on even seconds);
//! - a cron expression ([`cron::Cron`]) read in the configured IANA time zone;
//! - `first_sunday`: the same as `0 4 * * SUN#1` (04:00 on the first Sunday of the month);
//! - `off`.
//!
//! Daylight saving time: a local time the clocks skip (02:30 when they jump from 02:00 to
//! 03:00) fires once, shifted forward by the gap (03:30); a local time that happens twice when
//! the clocks go back fires once, at its first occurrence, except for jobs whose hour field is
//! `*`, which fire in both passes (they run every hour anyway).

pub mod cron;
#[cfg(test)]
mod tests;

use cron::Cron;
use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// How far ahead (and back) a cron expression is searched: 8 years covers the rarest
/// calendar date (29 February across a skipped leap year like 2100).
const HORIZON_DAYS: i32 = 8 * 366 + 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Off,
    Every(i64),
    Cron(Box<Cron>),
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Schedule {
    pub const FIRST_SUNDAY: &'static str = "0 4 * * SUN#1";

    pub fn off() -> Schedule {
        Schedule {
            kind: Kind::Off,
            text: "off".into(),
        }
    }

    pub fn every_seconds(n: u64) -> Schedule {
        Schedule {
            kind: Kind::Every(n.max(1) as i64),
            text: format!("every {n}s"),
        }
    }

    /// Parses a schedule; a cron expression that never fires (`0 0 30 2 *`) is refused.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        let kind = match t.to_ascii_lowercase().as_str() {
            "off" | "never" | "none" => Kind::Off,
            "first_sunday" => Kind::Cron(Box::new(Cron::parse(Self::FIRST_SUNDAY)?)),
            lower => match lower.strip_prefix("every") {
                Some(rest) if rest.starts_with(char::is_whitespace) => {
                    Kind::Every(parse_interval(rest.trim())?)
                }
                _ => Kind::Cron(Box::new(Cron::parse(t)?)),
            },
        };
        let s = Schedule {
            kind,
            text: t.to_string(),
        };
        if matches!(s.kind, Kind::Cron(_))
            && s.next_after(Timestamp::UNIX_EPOCH, &TimeZone::UTC)
                .is_none()
            && s.next_after(Timestamp::now(), &TimeZone::UTC).is_none()
        {
            return Err(format!("{t:?} never fires (no such date)"));
        }
        Ok(s)
    }

    pub fn is_off(&self) -> bool {
        self.kind == Kind::Off
    }

    /// The first fire time strictly after `after`; `None` for `off`.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Off => None,
            Kind::Every(n) => {
                let s = after.as_second();
                Timestamp::from_second((s.div_euclid(*n) + 1) * n).ok()
            }
            Kind::Cron(c) => search(c, tz, after, Direction::Forward),
        }
    }

    /// The last fire time at or before `at`; `None` for `off`.
    pub fn prev_at_or_before(&self, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Off => None,
            Kind::Every(n) => Timestamp::from_second(at.as_second().div_euclid(*n) * n).ok(),
            Kind::Cron(c) => search(c, tz, at, Direction::Backward),
        }
    }

    /// Whether a job last run at `last` (`None`: never) missed a fire time before `now`, so
    /// it is caught up once at start however many fire times it missed.
    pub fn missed(&self, last: Option<Timestamp>, now: Timestamp, tz: &TimeZone) -> bool {
        match self.prev_at_or_before(now, tz) {
            None => false,
            Some(prev) => last.is_none_or(|l| l < prev),
        }
    }
}

fn parse_interval(s: &str) -> Result<i64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("\"every {s}\": expected a positive number like every 360m"))?;
    let mult = match unit.trim() {
        "s" | "sec" | "second" | "seconds" => 1,
        "m" | "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        other => {
            return Err(format!(
                "\"every {s}\": unknown unit {other:?} (use s, m, h or d)"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|n| *n <= 366 * 86_400)
        .ok_or_else(|| format!("\"every {s}\" is longer than a year"))
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Forward,
    Backward,
}

/// Fire instants of `c` on the civil date `d` in `tz` (DST rules in the module docs).
fn fires_on(c: &Cron, tz: &TimeZone, d: Date) -> Vec<Timestamp> {
    if !c.day_matches(d) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (h, m) in c.times() {
        let amb = tz.to_ambiguous_timestamp(d.at(h, m, 0, 0));
        let both = matches!(amb.offset(), AmbiguousOffset::Fold { .. }) && c.every_hour();
        if both {
            out.extend(amb.earlier().ok());
            out.extend(amb.later().ok());
        } else {
            out.extend(amb.compatible().ok());
        }
    }
    out
}

/// Walks civil dates from the one `t` falls on (starting a day early / late: a shifted fire
/// time can land on another civil day than its nominal one); once a day yields a match, one
/// more day is looked at, because DST shifts can reorder fire times across midnight.
fn search(c: &Cron, tz: &TimeZone, t: Timestamp, dir: Direction) -> Option<Timestamp> {
    let today = t.to_zoned(tz.clone()).date();
    let (mut day, step) = match dir {
        Direction::Forward => (today.yesterday().ok()?, 1),
        Direction::Backward => (today.tomorrow().ok()?, -1),
    };
    let mut best: Option<Timestamp> = None;
    let mut extra = 1;
    for _ in 0..HORIZON_DAYS {
        for f in fires_on(c, tz, day) {
            let better = match dir {
                Direction::Forward => f > t && best.is_none_or(|b| f < b),
                Direction::Backward => f <= t && best.is_none_or(|b| f > b),
            };
            if better {
                best = Some(f);
            }
        }
        if best.is_some() {
            if extra == 0 {
                break;
            }
            extra -= 1;
        }
        day = day.checked_add(jiff::Span::new().days(step)).ok()?;
    }
    best
}
