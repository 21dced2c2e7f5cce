//! A 5-field cron expression: `minute hour day-of-month month day-of-week`.
//!
//! Each field is `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a
//! comma-separated list of those. Months take `JAN`..`DEC`, weekdays `SUN`..`SAT` (0 or 7 is
//! Sunday), case-insensitively. A weekday may carry `#n` (1..5): the n-th such weekday of the
//! month (`SUN#1` = the first Sunday). As in Vixie cron, when both day fields are restricted
//! (neither starts with `*`) a day matches when either does. `@hourly`, `@daily`,
//! `@midnight`, `@weekly`, `@monthly`, `@yearly` and `@annually` are accepted.

use jiff::civil::Date;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    /// Bit d set: weekday d (Sunday = 0) matches on every week.
    weekdays: u8,
    /// `(weekday, n)`: the n-th such weekday of the month matches.
    nth: Vec<(u8, u8)>,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value names[0] stands for.
    names_base: u32,
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_base: 0,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_base: 0,
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        names_base: 0,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_base: 1,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        names_base: 0,
    },
];

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let expanded = match text.trim().to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            other if other.starts_with('@') => {
                return Err(format!("unknown cron shortcut {other:?}"))
            }
            _ => text.to_string(),
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week), {text:?} has {}",
                parts.len()
            ));
        }
        let mut sets = [0u64; 5];
        let mut nth = Vec::new();
        for (i, (part, field)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            for item in part.split(',') {
                if i == 4 {
                    if let Some((day, n)) = item.split_once('#') {
                        let d = value(day, field)? % 7;
                        let n: u8 = n
                            .parse()
                            .ok()
                            .filter(|n| (1..=5).contains(n))
                            .ok_or_else(|| format!("{item:?}: the n in DOW#n is 1 to 5"))?;
                        nth.push((d as u8, n));
                        continue;
                    }
                }
                sets[i] |= item_bits(item, field)?;
            }
        }
        // Sunday is 0 and 7.
        let weekdays = ((sets[4] | (sets[4] >> 7)) & 0x7f) as u8;
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays,
            nth,
            dom_star: parts[2].starts_with('*'),
            dow_star: parts[4].starts_with('*'),
        })
    }

    /// Whether the schedule fires on `date` at all.
    pub fn day_matches(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let wd = date.weekday().to_sunday_zero_offset() as u8;
        let week_of_month = ((date.day() - 1) / 7 + 1) as u8;
        let dow = self.weekdays & (1 << wd) != 0
            || self.nth.iter().any(|&(d, n)| d == wd && n == week_of_month);
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// `(hour, minute)` pairs of a matching day, in order.
    pub fn times(&self) -> impl Iterator<Item = (i8, i8)> + '_ {
        (0..24i8)
            .filter(move |h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i8)
                    .filter(move |m| self.minutes & (1 << m) != 0)
                    .map(move |m| (h, m))
            })
    }

    /// Whether the hour field matches every hour (such jobs run in both passes of a repeated
    /// hour when the clocks go back, like cronie's wildcard jobs).
    pub fn every_hour(&self) -> bool {
        self.hours == (1 << 24) - 1
    }
}

fn value(s: &str, f: &Field) -> Result<u32, String> {
    let v = if let Ok(n) = s.parse::<u32>() {
        n
    } else if let Some(i) = f.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        i as u32 + f.names_base
    } else {
        return Err(format!("{s:?} is not a valid {}", f.name));
    };
    if v < f.min || v > f.max {
        return Err(format!(
            "{} {v} is out of range {}-{}",
            f.name, f.min, f.max
        ));
    }
    Ok(v)
}

fn item_bits(item: &str, f: &Field) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("{item:?}: the step must be a positive number"))?;
            (r, Some(step))
        }
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (f.min, f.max)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a, f)?, value(b, f)?)
    } else {
        let v = value(range, f)?;
        // `a/n` runs from a to the end of the field.
        (v, if step.is_some() { f.max } else { v })
    };
    if lo > hi {
        return Err(format!("{item:?}: the range {lo}-{hi} is reversed"));
    }
    let step = step.unwrap_or(1);
    Ok((lo..=hi)
        .step_by(step as usize)
        .fold(0u64, |acc, v| acc | (1 << v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn fields_ranges_steps_lists_and_names() {
        let c = Cron::parse("*/15 9-17/4 1,15 JAN-mar mon-FRI").expect("parse");
        let times: Vec<_> = c.times().collect();
        assert_eq!(times.first(), Some(&(9, 0)));
        assert_eq!(times.len(), 3 * 4); // hours 9, 13, 17 x minutes 0, 15, 30, 45
        assert!(times.contains(&(17, 45)));
        // Both day fields restricted: either matches (2026-01-02 is a Friday).
        assert!(c.day_matches(date(2026, 1, 2)));
        assert!(c.day_matches(date(2026, 1, 15)));
        assert!(!c.day_matches(date(2026, 1, 3))); // Saturday the 3rd
        assert!(!c.day_matches(date(2026, 4, 1))); // April
        let c = Cron::parse("5/20 * * * 7").expect("parse");
        assert_eq!(
            c.times().take(3).collect::<Vec<_>>(),
            [(0, 5), (0, 25), (0, 45)]
        );
        assert!(c.day_matches(date(2026, 1, 4))); // 7 is Sunday
        assert!(!Cron::parse("@daily").expect("daily").every_hour());
        assert!(Cron::parse("15 * * * *").expect("hourly").every_hour());
    }

    #[test]
    fn nth_weekday_matches_only_that_week() {
        let c = Cron::parse("0 4 * * SUN#1").expect("parse");
        assert!(c.day_matches(date(2026, 3, 1)));
        assert!(!c.day_matches(date(2026, 3, 8)));
        assert!(c.day_matches(date(2026, 11, 1)));
        let c = Cron::parse("0 4 * * 5#3,MON#2").expect("parse");
        assert!(c.day_matches(date(2026, 1, 16))); // third Friday
        assert!(c.day_matches(date(2026, 1, 12))); // second Monday
        assert!(!c.day_matches(date(2026, 1, 9)));
    }

    #[test]
    fn bad_expressions_name_the_problem() {
        for (text, needle) in [
            ("* * * *", "5 fields"),
            ("60 * * * *", "minute 60 is out of range"),
            ("* 24 * * *", "hour 24"),
            ("* * 0 * *", "day of month 0"),
            ("* * * FOO *", "not a valid month"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "reversed"),
            ("0 4 * * SUN#6", "1 to 5"),
            ("@fortnightly", "unknown cron shortcut"),
        ] {
            let e = Cron::parse(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
