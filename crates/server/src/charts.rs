//! Server-rendered SVG line charts (no script, no external assets). Every text that goes
//! into the SVG is escaped by the caller's `esc`.

use jiff::tz::TimeZone;
use jiff::Timestamp;

const W: f64 = 420.0;
const H: f64 = 210.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;

pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// (Unix seconds, value), any order; each point may carry its own color (drill verdicts).
    pub points: Vec<(i64, f64, Option<&'static str>)>,
}

/// What the y values are, for round tick steps (1 MiB, 15 min) and their labels.
#[derive(Clone, Copy, PartialEq)]
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

pub fn render(c: &Chart, tz: &TimeZone) -> String {
    let mut pts: Vec<(i64, f64)> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| (p.0, p.1)))
        .collect();
    let aria = esc(c.label);
    if pts.is_empty() {
        return format!(
            "<svg class=chart viewBox=\"0 0 {W} {H}\" role=img aria-label=\"{aria}\" font-family=\"system-ui, sans-serif\">\
             <rect x=0 y=0 width={W} height={H} fill=\"#fafbfc\" rx=\"6\" />\
             <text x={} y={} text-anchor=middle class=empty>no data yet</text></svg>",
            W / 2.0,
            H / 2.0
        );
    }
    pts.sort_by_key(|p| p.0);
    let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
    let (t0, t1) = if t0 == t1 {
        (t0 - 1800, t1 + 1800)
    } else {
        (t0, t1)
    };
    let mut ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    if let Some((t, _)) = &c.target {
        ymax = ymax.max(*t);
    }
    let step = step_for(c.scale, if ymax > 0.0 { ymax } else { 1.0 }, 4.0);
    let ytop = (ymax / step).ceil().max(1.0) * step;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * pw;
    let y = |v: f64| TOP + ph - v / ytop * ph;
    let mut s = format!(
        "<svg class=chart viewBox=\"0 0 {W} {H}\" role=img aria-label=\"{aria}\" \
         font-family=\"system-ui, sans-serif\" font-size=11>"
    );
    // Grid and y labels.
    let mut v = 0.0;
    while v <= ytop + step / 2.0 {
        let yy = y(v);
        s.push_str(&format!(
            "<line x1={LEFT} x2={} y1={yy:.1} y2={yy:.1} stroke=\"#e6e8eb\"/>\
             <text x={} y={:.1} text-anchor=end fill=\"#57606a\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            esc(&(c.fmt_y)(v))
        ));
        v += step;
    }
    // x labels: start, middle, end.
    let span = t1 - t0;
    let fmt = if span < 2 * 86_400 { "%H:%M" } else { "%b %d" };
    let fmt = if span < 600 { "%H:%M:%S" } else { fmt };
    for (i, t) in [t0, t0 + span / 2, t1].into_iter().enumerate() {
        let anchor = ["start", "middle", "end"][i];
        let label = Timestamp::from_second(t)
            .map(|ts| ts.to_zoned(tz.clone()).strftime(fmt).to_string())
            .unwrap_or_default();
        s.push_str(&format!(
            "<text x={:.1} y={} text-anchor={anchor} fill=\"#57606a\">{}</text>",
            x(t),
            H - 10.0,
            esc(&label)
        ));
    }
    s.push_str(&format!(
        "<line x1={LEFT} x2={} y1={} y2={} stroke=\"#8c959f\"/>",
        W - RIGHT,
        TOP + ph,
        TOP + ph
    ));
    if let Some((t, label)) = &c.target {
        let yy = y(*t);
        s.push_str(&format!(
            "<line x1={LEFT} x2={} y1={yy:.1} y2={yy:.1} stroke=\"#cf222e\" stroke-dasharray=\"5 4\"/>\
             <text x={} y={:.1} text-anchor=end fill=\"#cf222e\">{}</text>",
            W - RIGHT,
            W - RIGHT - 4.0,
            yy - 5.0,
            esc(label)
        ));
    }
    // Legend.
    let mut lx = LEFT;
    for se in &c.series {
        s.push_str(&format!(
            "<rect x={lx} y=8 width=10 height=10 rx=2 fill=\"{}\"/>\
             <text x={} y=17 fill=\"#24292f\">{}</text>",
            se.color,
            lx + 14.0,
            esc(&se.name)
        ));
        lx += 26.0 + 6.2 * se.name.len() as f64;
    }
    for se in &c.series {
        let mut p = se.points.clone();
        p.sort_by_key(|q| q.0);
        if p.len() > 1 {
            let line: Vec<String> = p
                .iter()
                .map(|q| format!("{:.1},{:.1}", x(q.0), y(q.1)))
                .collect();
            s.push_str(&format!(
                "<polyline fill=none stroke=\"{}\" stroke-width=2 stroke-linejoin=round points=\"{}\"/>",
                se.color,
                line.join(" ")
            ));
        }
        let r = if p.len() > 60 { 2.0 } else { 3.5 };
        for q in &p {
            let when = Timestamp::from_second(q.0)
                .map(|ts| ts.to_zoned(tz.clone()).strftime("%F %T %Z").to_string())
                .unwrap_or_default();
            s.push_str(&format!(
                "<circle cx={:.1} cy={:.1} r={r} fill=\"{}\" stroke=white stroke-width=1>\
                 <title>{}: {} at {}</title></circle>",
                x(q.0),
                y(q.1),
                q.2.unwrap_or(se.color),
                esc(&se.name),
                esc(&(c.fmt_y)(q.1)),
                esc(&when)
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
        let full = render(
            &Chart {
                label: "x",
                series: vec![Series {
                    name: "s".into(),
                    color: "#0969da",
                    points: vec![
                        (1_700_000_000, 1.0, None),
                        (1_700_000_060, 2.0, Some("#cf222e")),
                    ],
                }],
                scale: Scale::Seconds,
                fmt_y: |v| format!("{v}"),
                target: Some((3.0, "t".into())),
            },
            &TimeZone::UTC,
        );
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
