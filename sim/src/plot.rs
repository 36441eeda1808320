//! A two-panel SVG of a run: honest test accuracy (mean, worst, average model) and consensus
//! distance (log scale) against virtual time. Plain SVG text, no plotting dependency.

use crate::report::Row;
use std::fmt::Write as _;

const W: f64 = 720.0;
const PANEL: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// One panel's polyline points for `ys` against `xs` scaled into the panel at `top`.
fn polyline(xs: &[f64], ys: &[f64], (y0, y1): (f64, f64), top: f64, x_max: f64) -> String {
    let mut s = String::new();
    for (x, y) in xs.iter().zip(ys) {
        if !y.is_finite() {
            continue;
        }
        let px = LEFT + (W - LEFT - RIGHT) * x / x_max.max(1e-9);
        let t = ((y - y0) / (y1 - y0).max(1e-12)).clamp(0.0, 1.0);
        let py = top + PANEL * (1.0 - t);
        let _ = write!(s, "{px:.1},{py:.1} ");
    }
    s
}

fn axes(s: &mut String, top: f64, label: &str, ticks: &[(f64, String)], x_max: f64) {
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#888"/>"##,
        W - LEFT - RIGHT
    );
    let _ = writeln!(
        s,
        r##"<text x="14" y="{}" transform="rotate(-90 14 {})" font-size="12">{label}</text>"##,
        top + PANEL / 2.0,
        top + PANEL / 2.0
    );
    for (t, text) in ticks {
        let y = top + PANEL * (1.0 - t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{text}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            y + 3.0
        );
    }
    for k in 0..=4 {
        let x = LEFT + (W - LEFT - RIGHT) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{:.1}s</text>"##,
            top + PANEL + 14.0,
            x_max * k as f64 / 4.0
        );
    }
}

/// The SVG document for `rows`.
pub fn svg(rows: &[Row], title: &str) -> String {
    let h = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif">"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="24" font-size="14">{} — honest accuracy and consensus distance over virtual time</text>"##,
        escape(title)
    );
    let xs: Vec<f64> = rows.iter().map(|r| r.virtual_s).collect();
    let x_max = xs.iter().copied().fold(0.0, f64::max);
    let ticks: Vec<(f64, String)> = (0..=5)
        .map(|k| (k as f64 / 5.0, format!("{}%", k * 20)))
        .collect();
    axes(&mut s, TOP, "test accuracy", &ticks, x_max);
    for (ys, colour, name) in [
        (
            rows.iter().map(|r| r.acc_mean).collect::<Vec<_>>(),
            "#1f77b4",
            "mean",
        ),
        (
            rows.iter().map(|r| r.acc_worst).collect(),
            "#d62728",
            "worst",
        ),
        (
            rows.iter().map(|r| r.acc_average).collect(),
            "#2ca02c",
            "average model",
        ),
    ] {
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"><title>{name}</title></polyline>"##,
            polyline(&xs, &ys, (0.0, 1.0), TOP, x_max)
        );
    }
    for (k, (colour, name)) in [
        ("#1f77b4", "mean"),
        ("#d62728", "worst"),
        ("#2ca02c", "average model"),
    ]
    .iter()
    .enumerate()
    {
        let x = LEFT + 10.0 + 120.0 * k as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}" font-size="11">{name}</text>"##,
            TOP + 8.0,
            x + 14.0,
            TOP + 17.0
        );
    }
    let top2 = TOP + PANEL + GAP;
    let logs: Vec<f64> = rows
        .iter()
        .map(|r| {
            if r.consensus > 0.0 {
                r.consensus.log10()
            } else {
                f64::NAN
            }
        })
        .collect();
    let finite: Vec<f64> = logs.iter().copied().filter(|v| v.is_finite()).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min).floor();
    let hi = finite
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil();
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (-1.0, 1.0)
    };
    let decades = (hi - lo) as usize;
    let ticks: Vec<(f64, String)> = (0..=decades)
        .map(|k| {
            (
                k as f64 / decades as f64,
                format!("1e{}", lo as i64 + k as i64),
            )
        })
        .collect();
    axes(&mut s, top2, "consensus distance", &ticks, x_max);
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#9467bd" stroke-width="1.5" points="{}"/>"##,
        polyline(&xs, &logs, (lo, hi), top2, x_max)
    );
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
