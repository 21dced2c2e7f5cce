use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).expect("tz")
}

fn sched(s: &str) -> Schedule {
    Schedule::parse(s).expect("schedule")
}

/// Every fire time in [from, to), by repeated `next_after`.
fn fires(s: &Schedule, tz: &TimeZone, from: &str, to: &str) -> Vec<Timestamp> {
    let (mut t, end) = (ts(from), ts(to));
    // next_after is strict: start one second early so a fire exactly at `from` counts.
    t = t
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .expect("sub");
    let mut out = Vec::new();
    while let Some(n) = s.next_after(t, tz) {
        if n >= end {
            break;
        }
        out.push(n);
        t = n;
    }
    out
}

fn local(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%F %T %Z").to_string()
}

#[test]
fn first_sunday_of_each_month() {
    let s = sched("first_sunday");
    let got: Vec<String> = fires(
        &s,
        &TimeZone::UTC,
        "2026-01-01T00:00:00Z",
        "2028-01-01T00:00:00Z",
    )
    .into_iter()
    .map(|t| t.to_string())
    .collect();
    assert_eq!(got.len(), 24);
    assert_eq!(
        &got[..12],
        [
            "2026-01-04T04:00:00Z",
            "2026-02-01T04:00:00Z",
            "2026-03-01T04:00:00Z",
            "2026-04-05T04:00:00Z",
            "2026-05-03T04:00:00Z",
            "2026-06-07T04:00:00Z",
            "2026-07-05T04:00:00Z",
            "2026-08-02T04:00:00Z",
            "2026-09-06T04:00:00Z",
            "2026-10-04T04:00:00Z",
            "2026-11-01T04:00:00Z",
            "2026-12-06T04:00:00Z",
        ]
    );
    // Brute force: each is a Sunday within the first seven days.
    for t in fires(
        &s,
        &tz("Europe/Berlin"),
        "2026-01-01T00:00:00Z",
        "2031-01-01T00:00:00Z",
    ) {
        let z = t.to_zoned(tz("Europe/Berlin"));
        assert_eq!(z.weekday(), jiff::civil::Weekday::Sunday, "{z}");
        assert!(z.day() <= 7 && z.hour() == 4 && z.minute() == 0, "{z}");
    }
}

#[test]
fn sun_1_and_first_sunday_are_the_same_schedule() {
    let a = sched("first_sunday");
    let b = sched("0 4 * * SUN#1");
    let c = sched("0 4 * * 0#1");
    for zone in [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
    ] {
        let z = tz(zone);
        let fa = fires(&a, &z, "2025-06-15T00:00:00Z", "2030-06-15T00:00:00Z");
        assert_eq!(fa.len(), 60, "{zone}");
        assert_eq!(
            fa,
            fires(&b, &z, "2025-06-15T00:00:00Z", "2030-06-15T00:00:00Z")
        );
        assert_eq!(
            fa,
            fires(&c, &z, "2025-06-15T00:00:00Z", "2030-06-15T00:00:00Z")
        );
    }
}

#[test]
fn spring_forward_runs_once_at_the_shifted_time() {
    // 2026-03-08, New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
    let ny = tz("America/New_York");
    let s = sched("30 2 * * *");
    let day = fires(&s, &ny, "2026-03-08T05:00:00Z", "2026-03-09T05:00:00Z");
    assert_eq!(day, [ts("2026-03-08T07:30:00Z")]);
    assert_eq!(local(day[0], &ny), "2026-03-08 03:30:00 EDT");
    // The days around it are normal.
    assert_eq!(
        fires(&s, &ny, "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z"),
        [
            ts("2026-03-07T07:30:00Z"),
            ts("2026-03-08T07:30:00Z"),
            ts("2026-03-09T06:30:00Z")
        ]
    );
    // A moment inside the gap's shift still finds it (fire instant after, civil time before).
    assert_eq!(
        s.next_after(ts("2026-03-08T07:10:00Z"), &ny),
        Some(ts("2026-03-08T07:30:00Z"))
    );
    assert_eq!(
        s.prev_at_or_before(ts("2026-03-08T08:00:00Z"), &ny),
        Some(ts("2026-03-08T07:30:00Z"))
    );
    // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    let berlin = tz("Europe/Berlin");
    let day = fires(&s, &berlin, "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z");
    assert_eq!(day, [ts("2026-03-29T01:30:00Z")]);
    assert_eq!(local(day[0], &berlin), "2026-03-29 03:30:00 CEST");
}

#[test]
fn fall_back_runs_once_not_twice() {
    // 2026-11-01, New York: 01:00-01:59 happens twice (EDT, then EST).
    let ny = tz("America/New_York");
    let s = sched("30 1 * * *");
    let day = fires(&s, &ny, "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z");
    assert_eq!(day, [ts("2026-11-01T05:30:00Z")]);
    assert_eq!(local(day[0], &ny), "2026-11-01 01:30:00 EDT");
    // After the first pass, the next run is the next day.
    assert_eq!(
        s.next_after(ts("2026-11-01T05:30:00Z"), &ny),
        Some(ts("2026-11-02T06:30:00Z"))
    );
    // Berlin, 2026-10-25: 02:30 happens twice.
    let berlin = tz("Europe/Berlin");
    let s = sched("30 2 * * *");
    let day = fires(&s, &berlin, "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z");
    assert_eq!(day, [ts("2026-10-25T00:30:00Z")]);
    // A job that runs every hour keeps running hourly through the repeated hour.
    let hourly = sched("15 * * * *");
    let n = fires(&hourly, &ny, "2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z");
    assert_eq!(
        n,
        [
            ts("2026-11-01T04:15:00Z"),
            ts("2026-11-01T05:15:00Z"),
            ts("2026-11-01T06:15:00Z"),
            ts("2026-11-01T07:15:00Z")
        ]
    );
}

#[test]
fn missed_runs_are_caught_up_once() {
    let s = sched("every 360m");
    let z = TimeZone::UTC;
    let now = ts("2026-05-10T13:00:00Z");
    // Last backup three days ago: 12 fire times were missed, but it is "missed", once.
    assert!(s.missed(Some(ts("2026-05-07T13:00:00Z")), now, &z));
    assert!(s.missed(None, now, &z));
    // A backup after the previous fire (12:00) is on time.
    assert!(!s.missed(Some(ts("2026-05-10T12:00:05Z")), now, &z));
    assert!(!sched("off").missed(None, now, &z));
    // The monthly drill: the last one was in April, the May fire (3rd) has passed.
    let d = sched("first_sunday");
    assert!(d.missed(Some(ts("2026-04-05T04:10:00Z")), now, &z));
    assert!(!d.missed(Some(ts("2026-05-03T04:20:00Z")), now, &z));
}

#[test]
fn month_and_year_rollover() {
    let z = TimeZone::UTC;
    let s = sched("0 0 1 * *");
    assert_eq!(
        s.next_after(ts("2026-12-15T10:00:00Z"), &z),
        Some(ts("2027-01-01T00:00:00Z"))
    );
    let s = sched("59 23 31 * *");
    assert_eq!(
        s.next_after(ts("2026-04-01T00:00:00Z"), &z),
        Some(ts("2026-05-31T23:59:00Z")),
        "April has no 31st"
    );
    assert_eq!(
        s.next_after(ts("2026-12-31T23:59:00Z"), &z),
        Some(ts("2027-01-31T23:59:00Z"))
    );
    let leap = sched("0 12 29 FEB *");
    assert_eq!(
        leap.next_after(ts("2026-03-01T00:00:00Z"), &z),
        Some(ts("2028-02-29T12:00:00Z"))
    );
    assert_eq!(
        leap.prev_at_or_before(ts("2031-01-01T00:00:00Z"), &z),
        Some(ts("2028-02-29T12:00:00Z"))
    );
    assert_eq!(
        sched("0 4 * * SUN#1").prev_at_or_before(ts("2026-01-03T00:00:00Z"), &z),
        Some(ts("2025-12-07T04:00:00Z"))
    );
    let e = Schedule::parse("0 0 30 2 *").expect_err("February 30th");
    assert!(e.contains("never fires"), "{e}");
}

#[test]
fn every_n_is_aligned_to_the_epoch() {
    let z = tz("Asia/Kolkata"); // +05:30: alignment does not depend on the zone
    let s = sched("every 360m");
    assert_eq!(s, s.clone());
    assert_eq!(
        s.next_after(ts("2026-01-01T05:59:59Z"), &z),
        Some(ts("2026-01-01T06:00:00Z"))
    );
    assert_eq!(
        s.next_after(ts("2026-01-01T06:00:00Z"), &z),
        Some(ts("2026-01-01T12:00:00Z"))
    );
    assert_eq!(
        s.prev_at_or_before(ts("2026-01-01T06:00:00Z"), &z),
        Some(ts("2026-01-01T06:00:00Z"))
    );
    assert_eq!(
        sched("every 6h"),
        Schedule {
            text: "every 6h".into(),
            ..s
        }
    );
    let two = sched("every 2s");
    assert_eq!(
        two.next_after(ts("2026-01-01T00:00:01.5Z"), &z),
        Some(ts("2026-01-01T00:00:02Z"))
    );
    assert_eq!(
        fires(
            &sched("*/20 * * * *"),
            &TimeZone::UTC,
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00Z"
        )
        .len(),
        3
    );
    for bad in ["every 0m", "every 5 weeks", "every m", "every 400d"] {
        assert!(Schedule::parse(bad).is_err(), "{bad}");
    }
    assert!(sched("OFF").is_off());
    assert_eq!(
        sched("off").next_after(ts("2026-01-01T00:00:00Z"), &z),
        None
    );
}
