//! Server-rendered SVG line charts (no script, no external assets). Every text that goes
//! into the SVG is escaped here.
//!
//! Each chart chooses its own y scale: linear from zero when its values (and its target)
//! lie within a factor of [`LOG_RATIO`] of each other, else logarithmic with round ticks
//! (1 s, 10 s, 1 min, …; 1 KiB, 32 KiB, 1 MiB, …), so a 1 s RTO under a 30 min target is not
//! a flat line at zero. The time axis labels carry the date (and the time of day) in the
//! configured zone; every point and failure mark has an SVG `<title>` (a hover value that
//! works without script under the strict CSP).

use jiff::tz::TimeZone;
use jiff::Timestamp;

const W: f64 = 420.0;
const H: f64 = 220.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// Above this ratio between the largest and the smallest positive value (the target
/// included), the y axis is logarithmic.
pub const LOG_RATIO: f64 = 25.0;

const FAIL: &str = "#cf222e";

pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// (Unix seconds, value), any order; each point may carry its own color (drill verdicts).
    pub points: Vec<(i64, f64, Option<&'static str>)>,
}

/// What the y values are, for round tick steps (1 MiB, 15 min) and their labels.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Scale {
    Plain,
    Bytes,
    Seconds,
}

pub struct Chart<'a> {
    pub label: &'a str,
    pub series: Vec<Series>,
    pub scale: Scale,
    pub fmt_y: fn(f64) -> String,
    /// A horizontal target line: (value, label).
    pub target: Option<(f64, String)>,
    /// Failed runs, marked on the time axis: (Unix seconds, what failed).
    pub marks: Vec<(i64, String)>,
    /// A time the x axis reaches at least (now, for a freshness chart).
    pub until: Option<i64>,
}

/// A y axis: where a value goes (0 at the bottom, 1 at the top) and its ticks.
#[derive(Clone, Debug, PartialEq)]
pub enum Axis {
    /// From 0 to `top` in steps of `step`.
    Linear { top: f64, step: f64 },
    /// From `lo` to `hi` (both > 0), ticks at `ticks`.
    Log { lo: f64, hi: f64, ticks: Vec<f64> },
}

impl Axis {
    /// Picks the axis for `values` (and the target) on `scale`.
    pub fn fit(scale: Scale, values: &[f64], target: Option<f64>) -> Axis {
        let all: Vec<f64> = values
            .iter()
            .copied()
            .chain(target)
            .filter(|v| v.is_finite())
            .collect();
        let max = all.iter().copied().fold(0.0, f64::max);
        let min_pos = all
            .iter()
            .copied()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        if max > 0.0 && min_pos.is_finite() && max / min_pos > LOG_RATIO {
            let cands = log_candidates(scale);
            let lo = cands
                .iter()
                .copied()
                .rev()
                // A step below the smallest value, so it sits clear of the time axis.
                .find(|c| *c <= min_pos / 3.0)
                .unwrap_or(cands[0]);
            let hi = cands
                .iter()
                .copied()
                .find(|c| *c >= max)
                .unwrap_or(cands[cands.len() - 1]);
            let mut ticks: Vec<f64> = cands
                .iter()
                .copied()
                .filter(|c| *c >= lo && *c <= hi)
                .collect();
            while ticks.len() > 6 {
                let last = ticks[ticks.len() - 1];
                ticks = ticks.into_iter().step_by(2).collect();
                if ticks.last() != Some(&last) {
                    ticks.push(last);
                }
            }
            return Axis::Log {
                lo,
                hi: hi.max(lo * 10.0),
                ticks,
            };
        }
        let max = if max > 0.0 { max } else { 1.0 };
        // The round step (4 to 6 of them) whose top is closest above the largest value.
        let (top, step) = [4.0, 5.0, 6.0]
            .into_iter()
            .map(|n| {
                let step = step_for(scale, max, n);
                ((max / step).ceil().max(1.0) * step, step)
            })
            .fold((f64::INFINITY, 1.0), |a, b| if b.0 < a.0 { b } else { a });
        Axis::Linear { top, step }
    }

    /// Where `v` goes: 0 at the bottom of the plot, 1 at the top (clamped).
    pub fn frac(&self, v: f64) -> f64 {
        let f = match self {
            Axis::Linear { top, .. } => v / top,
            Axis::Log { lo, hi, .. } => (v.max(*lo).ln() - lo.ln()) / (hi.ln() - lo.ln()),
        };
        f.clamp(0.0, 1.0)
    }

    pub fn ticks(&self) -> Vec<f64> {
        match self {
            Axis::Linear { top, step } => {
                let mut out = Vec::new();
                let mut v = 0.0;
                while v <= top + step / 2.0 {
                    out.push(v);
                    v += step;
                }
                out
            }
            Axis::Log { ticks, .. } => ticks.clone(),
        }
    }
}

/// Round values a logarithmic axis puts its ticks at.
fn log_candidates(scale: Scale) -> Vec<f64> {
    match scale {
        Scale::Seconds => vec![
            0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 21_600.0, 86_400.0, 604_800.0,
        ],
        Scale::Bytes => (0..10).map(|k| 32f64.powi(k)).collect(),
        Scale::Plain => (-3..13).map(|k| 10f64.powi(k)).collect(),
    }
}

/// A round step for the scale: powers of 1024 for bytes, clock steps for durations.
fn step_for(scale: Scale, max: f64, n: f64) -> f64 {
    match scale {
        Scale::Plain => nice_step(max, n),
        Scale::Bytes => {
            let k = (max.max(1.0).log2() / 10.0).floor().max(0.0);
            let unit = 1024f64.powf(k);
            nice_step(max / unit, n) * unit
        }
        Scale::Seconds => {
            const STEPS: [f64; 14] = [
                1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
                7200.0,
            ];
            let raw = max / n;
            if raw < 1.0 {
                nice_step(max, n)
            } else {
                STEPS
                    .iter()
                    .copied()
                    .find(|s| *s >= raw)
                    .unwrap_or_else(|| (raw / 3600.0).ceil() * 3600.0)
            }
        }
    }
}

/// A round step giving about `n` intervals up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// The time axis labels: the date always, the time of day when the span is under a week.
fn x_labels(t0: i64, t1: i64, tz: &TimeZone) -> Vec<(i64, String, String)> {
    let span = t1 - t0;
    [t0, t0 + span / 2, t1]
        .into_iter()
        .map(|t| {
            let z = Timestamp::from_second(t).map(|ts| ts.to_zoned(tz.clone()));
            let (date, second) = match z {
                Ok(z) => (
                    z.strftime("%b %d").to_string(),
                    if span < 7 * 86_400 {
                        z.strftime("%H:%M").to_string()
                    } else {
                        z.strftime("%Y").to_string()
                    },
                ),
                Err(_) => (String::new(), String::new()),
            };
            (t, date, second)
        })
        .collect()
}

fn when(t: i64, tz: &TimeZone) -> String {
    Timestamp::from_second(t)
        .map(|ts| ts.to_zoned(tz.clone()).strftime("%F %T %Z").to_string())
        .unwrap_or_default()
}

pub fn render(c: &Chart, tz: &TimeZone) -> String {
    let values: Vec<f64> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    let mut times: Vec<i64> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(c.marks.iter().map(|m| m.0))
        .collect();
    let aria = esc(c.label);
    if times.is_empty() {
        return format!(
            "<svg class=chart viewBox=\"0 0 {W} {H}\" role=img aria-label=\"{aria}\" font-family=\"system-ui, sans-serif\">\
             <rect x=0 y=0 width={W} height={H} fill=\"#fafbfc\" rx=\"6\" />\
             <text x={} y={} text-anchor=middle class=empty>no data yet</text></svg>",
            W / 2.0,
            H / 2.0
        );
    }
    times.extend(c.until);
    times.sort_unstable();
    let (t0, t1) = (times[0], times[times.len() - 1]);
    let (t0, t1) = if t0 == t1 {
        (t0 - 1800, t1 + 1800)
    } else {
        // A little room so the first and last points are not cut by the plot's edge.
        let pad = ((t1 - t0) / 40).max(1);
        (t0 - pad, t1 + pad)
    };
    let axis = Axis::fit(c.scale, &values, c.target.as_ref().map(|t| t.0));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let bottom = TOP + ph;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * pw;
    let y = |v: f64| bottom - axis.frac(v) * ph;
    let mut s = format!(
        "<svg class=chart viewBox=\"0 0 {W} {H}\" role=img aria-label=\"{aria}\" \
         data-top=\"{TOP}\" data-bottom=\"{bottom}\" data-axis=\"{}\" \
         font-family=\"system-ui, sans-serif\" font-size=11>",
        match axis {
            Axis::Linear { .. } => "linear",
            Axis::Log { .. } => "log",
        }
    );
    // Grid and y labels.
    for v in axis.ticks() {
        let yy = y(v);
        s.push_str(&format!(
            "<line x1={LEFT} x2={} y1={yy:.1} y2={yy:.1} stroke=\"#e6e8eb\" />\
             <text class=yt x={} y={:.1} text-anchor=end fill=\"#57606a\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            esc(&(c.fmt_y)(v))
        ));
    }
    if matches!(axis, Axis::Log { .. }) {
        s.push_str(&format!(
            "<text x={} y={} text-anchor=end fill=\"#8c959f\" font-size=10>log scale</text>",
            W - RIGHT,
            TOP - 16.0
        ));
    }
    // x labels (date, then time of day or year) at the start, middle and end.
    for (i, (t, date, second)) in x_labels(t0, t1, tz).into_iter().enumerate() {
        let anchor = ["start", "middle", "end"][i];
        s.push_str(&format!(
            "<text class=xt x={:.1} y={} text-anchor={anchor} fill=\"#57606a\">{}\
             <tspan x={:.1} dy=13>{}</tspan></text>",
            x(t),
            bottom + 15.0,
            esc(&date),
            x(t),
            esc(&second)
        ));
    }
    s.push_str(&format!(
        "<line x1={LEFT} x2={} y1={bottom} y2={bottom} stroke=\"#8c959f\" />",
        W - RIGHT,
    ));
    if let Some((t, label)) = &c.target {
        let yy = y(*t);
        s.push_str(&format!(
            "<g class=target><title>{}</title>\
             <line x1={LEFT} x2={} y1={yy:.1} y2={yy:.1} stroke=\"{FAIL}\" stroke-width=1.5 stroke-dasharray=\"5 4\" />\
             <text x={} y={:.1} text-anchor=end fill=\"{FAIL}\">{}</text></g>",
            esc(label),
            W - RIGHT,
            W - RIGHT - 4.0,
            (yy - 5.0).max(TOP - 2.0),
            esc(label)
        ));
    }
    // Failed runs: a red tick across the plot and a triangle on the time axis.
    for (t, what) in &c.marks {
        let xx = x(*t);
        s.push_str(&format!(
            "<g class=fail><title>{} at {}</title>\
             <line x1={xx:.1} x2={xx:.1} y1={TOP} y2={bottom} stroke=\"{FAIL}\" stroke-opacity=\"0.35\" />\
             <path d=\"M{xx:.1},{:.1} l-5,-8 h10 z\" fill=\"{FAIL}\" /></g>",
            esc(what),
            esc(&when(*t, tz)),
            bottom,
        ));
    }
    // Legend.
    let mut lx = LEFT;
    for se in &c.series {
        s.push_str(&format!(
            "<rect x={lx} y=8 width=10 height=10 rx=2 fill=\"{}\" />\
             <text x={} y=17 fill=\"#24292f\">{}</text>",
            se.color,
            lx + 14.0,
            esc(&se.name)
        ));
        lx += 26.0 + 6.2 * se.name.chars().count() as f64;
    }
    if !c.marks.is_empty() {
        s.push_str(&format!(
            "<path d=\"M{},18 l-5,-8 h10 z\" fill=\"{FAIL}\" />\
             <text x={} y=17 fill=\"#24292f\">failed</text>",
            lx + 5.0,
            lx + 14.0
        ));
    }
    for (i, se) in c.series.iter().enumerate() {
        let mut p = se.points.clone();
        p.sort_by_key(|q| q.0);
        if p.len() > 1 {
            let line: Vec<String> = p
                .iter()
                .map(|q| format!("{:.1},{:.1}", x(q.0), y(q.1)))
                .collect();
            s.push_str(&format!(
                "<polyline fill=none stroke=\"{}\" stroke-width=2 stroke-linejoin=round points=\"{}\" />",
                se.color,
                line.join(" ")
            ));
        }
        let r = if p.len() > 60 { 2.5 } else { 3.5 };
        for q in &p {
            s.push_str(&format!(
                "<circle class=pt data-series=\"{i}\" cx={:.1} cy={:.1} r={r} fill=\"{}\" stroke=white stroke-width=1>\
                 <title>{}: {} at {}</title></circle>",
                x(q.0),
                y(q.1),
                q.2.unwrap_or(se.color),
                esc(&se.name),
                esc(&(c.fmt_y)(q.1)),
                esc(&when(q.0, tz))
            ));
        }
    }
    s.push_str("</svg>");
    s
}

/// Escapes text for HTML (element content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(i64, f64, Option<&'static str>)>, scale: Scale) -> Chart<'static> {
        Chart {
            label: "x",
            series: vec![Series {
                name: "s".into(),
                color: "#0969da",
                points,
            }],
            scale,
            fmt_y: |v| format!("{v}"),
            target: None,
            marks: vec![],
            until: None,
        }
    }

    /// The `cy` of every point, in order.
    fn cys(svg: &str) -> Vec<f64> {
        svg.split("<circle class=pt")
            .skip(1)
            .filter_map(|c| c.split(" cy=").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(100.0, 4.0), 25.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        assert_eq!(nice_step(0.3, 4.0), 0.1);
        assert_eq!(step_for(Scale::Bytes, 1_000_000.0, 4.0), 250.0 * 1024.0);
        assert_eq!(step_for(Scale::Seconds, 1800.0, 4.0), 600.0);
        assert_eq!(step_for(Scale::Seconds, 0.3, 4.0), 0.1);
    }

    #[test]
    fn each_chart_fits_its_own_values() {
        // Sizes within a small factor: linear from zero, the largest near the top.
        let a = Axis::fit(Scale::Bytes, &[19.0e6, 20.3e6, 21.0e6], None);
        assert!(matches!(a, Axis::Linear { .. }), "{a:?}");
        assert!(a.frac(21.0e6) > 0.7 && a.frac(21.0e6) <= 1.0);
        assert_eq!(a.ticks()[0], 0.0);
        // An RTO of 1 s under a 30 min target: logarithmic, 1 s well above the bottom and
        // the target inside the plot.
        let a = Axis::fit(Scale::Seconds, &[1.1, 1.4], Some(1800.0));
        let Axis::Log { lo, hi, ref ticks } = a else {
            panic!("{a:?}")
        };
        assert_eq!((lo, hi), (0.1, 3600.0));
        assert!(ticks.contains(&60.0) && ticks.len() <= 6, "{ticks:?}");
        assert!(a.frac(1.1) > 0.2 && a.frac(1800.0) < 1.0 && a.frac(1800.0) > 0.8);
        // Bytes on a log axis tick at powers of 32 (1 KiB, 32 KiB, 1 MiB, …).
        let a = Axis::fit(Scale::Bytes, &[2048.0, 80.0e6], None);
        assert!(a.ticks().contains(&1024.0) && a.ticks().contains(&1_048_576.0));
        // Nothing but zeros: a linear axis up to one step.
        assert!(matches!(
            Axis::fit(Scale::Seconds, &[0.0], None),
            Axis::Linear { .. }
        ));
    }

    #[test]
    fn points_are_not_flat_target_lines_dates_and_failures_are_drawn() {
        let t = 1_764_979_200; // 2025-12-06T00:00:00Z
        let mut c = chart(
            vec![(t, 1.1, Some("#1a7f37")), (t + 86_400, 1.3, Some(FAIL))],
            Scale::Seconds,
        );
        c.target = Some((1800.0, "target 30 min".into()));
        c.marks = vec![(t + 3600, "backup failed: <boom>".into())];
        let svg = render(&c, &TimeZone::get("Europe/Berlin").expect("tz"));
        let ys = cys(&svg);
        assert_eq!(ys.len(), 2);
        // 1.1 s is not drawn on the time axis (bottom 180) on a 30 min scale.
        assert!(ys.iter().all(|y| *y < 180.0 - 10.0), "{ys:?}");
        assert!(svg.contains("data-axis=\"log\"") && svg.contains("log scale"));
        assert!(svg.contains("<g class=target><title>target 30 min</title>"));
        assert!(svg.contains("<g class=fail><title>backup failed: &lt;boom&gt; at 2025-12-06 02:00:00 CET</title>"), "{svg}");
        // Dates in the zone: midnight UTC is 01:00 in Berlin.
        assert!(svg.contains(">Dec 06<tspan"), "{svg}");
        assert!(svg.contains(">00:") || svg.contains(">01:"), "{svg}");
        assert!(
            svg.contains("<title>s: 1.1 at 2025-12-06 01:00:00 CET</title>"),
            "{svg}"
        );

        // Sizes alone on their chart: the largest point is in the upper part of the plot.
        let c = chart(
            vec![
                (t, 19.0e6, None),
                (t + 3600, 19.4e6, None),
                (t + 7200, 20.3e6, None),
            ],
            Scale::Bytes,
        );
        let svg = render(&c, &TimeZone::UTC);
        let ys = cys(&svg);
        let (top, bottom) = (TOP, H - BOTTOM);
        let highest = ys.iter().copied().fold(f64::INFINITY, f64::min);
        assert!((bottom - highest) / (bottom - top) > 0.6, "{ys:?}");
        // A span over a week shows the year under the date.
        let c = chart(
            vec![(t, 1.0, None), (t + 30 * 86_400, 2.0, None)],
            Scale::Plain,
        );
        assert!(render(&c, &TimeZone::UTC).contains("<tspan x=62.0 dy=13>2025</tspan>"));
    }

    #[test]
    fn labels_are_escaped_and_empty_charts_say_so() {
        let c = Chart {
            label: "<b>",
            series: vec![Series {
                name: "a&b".into(),
                color: "#0969da",
                points: vec![(1_700_000_000, 5.0, None), (1_700_003_600, 7.0, None)],
            }],
            scale: Scale::Plain,
            fmt_y: |v| format!("{v}"),
            target: Some((10.0, "target <10>".into())),
            marks: vec![],
            until: None,
        };
        let svg = render(&c, &TimeZone::UTC);
        assert!(svg.contains("aria-label=\"&lt;b&gt;\""));
        assert!(svg.contains("a&amp;b") && svg.contains("target &lt;10&gt;"));
        assert!(svg.contains("<polyline") && !svg.contains("<b>"));
        let empty = Chart {
            series: vec![],
            ..c
        };
        let svg = render(&empty, &TimeZone::UTC);
        assert!(svg.contains("no data yet"));
        // HTML parses an unquoted `a=1/>` as the value "1/": every self-closing tag must end
        // in a quoted value or a space, or what follows becomes its child and is not drawn.
        let mut full = chart(
            vec![
                (1_700_000_000, 1.0, None),
                (1_700_000_060, 2.0, Some("#cf222e")),
            ],
            Scale::Seconds,
        );
        full.target = Some((3.0, "t".into()));
        full.marks = vec![(1_700_000_030, "failed".into())];
        let full = render(&full, &TimeZone::UTC);
        for page in [svg, full] {
            for (at, _) in page.match_indices("/>") {
                let before = page[..at].chars().last();
                assert!(
                    matches!(before, Some('"' | ' ')),
                    "unsafe `/>` at {at}: {page}"
                );
            }
        }
    }
}
