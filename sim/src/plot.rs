//! A two-panel SVG of a run: honest test accuracy (mean, worst, average model) and consensus
//! distance (log scale) against virtual time. Each evaluation point is marked, network splits
//! are shaded, the legend sits above the curves, and the accuracy axis is fitted to the data.
//! Plain SVG text, no plotting dependency.

use crate::report::Row;
use std::fmt::Write as _;

const W: f64 = 720.0;
const PANEL: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
/// Top of the first panel: the title and the legend are above it.
const TOP: f64 = 60.0;
const GAP: f64 = 70.0;

/// Maps data to one panel's pixels.
struct Panel {
    top: f64,
    x_max: f64,
    y: (f64, f64),
}

impl Panel {
    fn x(&self, x: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * x / self.x_max.max(1e-9)
    }

    fn y(&self, y: f64) -> f64 {
        let (y0, y1) = self.y;
        let t = ((y - y0) / (y1 - y0).max(1e-12)).clamp(0.0, 1.0);
        self.top + PANEL * (1.0 - t)
    }

    /// The frame, the y ticks (`(value, label)`), the x ticks and the axis labels.
    fn axes(&self, s: &mut String, label: &str, ticks: &[(f64, String)]) {
        let (top, width) = (self.top, W - LEFT - RIGHT);
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{width}" height="{PANEL}" fill="none" stroke="#888"/>"##
        );
        let mid = top + PANEL / 2.0;
        let _ = writeln!(
            s,
            r##"<text x="16" y="{mid}" transform="rotate(-90 16 {mid})" font-size="12" text-anchor="middle">{label}</text>"##
        );
        for (v, text) in ticks {
            let y = self.y(*v);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{text}</text>"##,
                W - RIGHT,
                LEFT - 4.0,
                y + 3.0
            );
        }
        for k in 0..=4 {
            let v = self.x_max * k as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{v:.1}</text>"##,
                self.x(v),
                top + PANEL + 14.0
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="11" text-anchor="middle">virtual time (s)</text>"##,
            LEFT + width / 2.0,
            top + PANEL + 30.0
        );
    }

    /// A curve through the finite points, with a mark at each.
    fn curve(&self, s: &mut String, xs: &[f64], ys: &[f64], colour: &str, name: &str) {
        let points: Vec<(f64, f64)> = xs
            .iter()
            .zip(ys)
            .filter(|(_, y)| y.is_finite())
            .map(|(&x, &y)| (self.x(x), self.y(y)))
            .collect();
        let line: String = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1} "))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{line}"><title>{name}</title></polyline>"##
        );
        for (x, y) in points {
            let _ = writeln!(
                s,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="2.2" fill="{colour}"/>"##
            );
        }
    }

    /// Shades each split `(from, to)`, in seconds.
    fn shade(&self, s: &mut String, splits: &[(f64, f64)]) {
        for &(from, to) in splits {
            let (a, b) = (self.x(from.min(self.x_max)), self.x(to.min(self.x_max)));
            let _ = writeln!(
                s,
                r##"<rect x="{a:.1}" y="{}" width="{:.1}" height="{PANEL}" fill="#f2e6d9"><title>network split</title></rect>"##,
                self.top,
                (b - a).max(0.0)
            );
        }
    }
}

/// The accuracy axis: from below the lowest value to above the highest, on a 5-point grid.
fn accuracy_range(values: &[f64]) -> (f64, f64) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let lo = ((lo - 0.01) * 20.0).floor() / 20.0;
    let hi = ((hi + 0.01) * 20.0).ceil() / 20.0;
    (lo.max(0.0), hi.min(1.0).max(lo + 0.05))
}

/// The SVG document for `rows`; `splits` are the network splits, `(start, heal)` in seconds.
pub fn svg(rows: &[Row], title: &str, splits: &[(f64, f64)]) -> String {
    let h = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif">"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="22" font-size="14">{} — honest accuracy and consensus distance over virtual time</text>"##,
        escape(title)
    );
    let xs: Vec<f64> = rows.iter().map(|r| r.virtual_s).collect();
    let x_max = xs.iter().copied().fold(0.0, f64::max);
    let series: [(Vec<f64>, &str, &str); 3] = [
        (rows.iter().map(|r| r.acc_mean).collect(), "#1f77b4", "mean"),
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
    ];
    // The legend, above the first panel.
    for (k, (_, colour, name)) in series.iter().enumerate() {
        let x = LEFT + 120.0 * k as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="34" width="10" height="10" fill="{colour}"/><text x="{}" y="43" font-size="11">{name}</text>"##,
            x + 14.0
        );
    }
    if !splits.is_empty() {
        let x = LEFT + 360.0;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="34" width="10" height="10" fill="#f2e6d9"/><text x="{}" y="43" font-size="11">network split</text>"##,
            x + 14.0
        );
    }
    let all: Vec<f64> = series.iter().flat_map(|(ys, _, _)| ys.clone()).collect();
    let (lo, hi) = accuracy_range(&all);
    let accuracy = Panel {
        top: TOP,
        x_max,
        y: (lo, hi),
    };
    let step = if hi - lo > 0.3 { 0.1 } else { 0.05 };
    let ticks: Vec<(f64, String)> = (0..)
        .map(|k| lo + step * k as f64)
        .take_while(|v| *v <= hi + 1e-9)
        .map(|v| (v, format!("{:.0}%", 100.0 * v)))
        .collect();
    accuracy.shade(&mut s, splits);
    accuracy.axes(&mut s, "test accuracy", &ticks);
    for (ys, colour, name) in &series {
        accuracy.curve(&mut s, &xs, ys, colour, name);
    }
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
    let consensus = Panel {
        top: TOP + PANEL + GAP,
        x_max,
        y: (lo, hi),
    };
    let ticks: Vec<(f64, String)> = (0..=(hi - lo) as i64)
        .map(|k| (lo + k as f64, format!("1e{}", lo as i64 + k)))
        .collect();
    consensus.shade(&mut s, splits);
    consensus.axes(&mut s, "consensus distance", &ticks);
    consensus.curve(&mut s, &xs, &logs, "#9467bd", "consensus distance");
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accuracy_axis_fits_the_data() {
        assert_eq!(accuracy_range(&[0.91, 0.96]), (0.9, 1.0));
        assert_eq!(accuracy_range(&[0.08, 0.5]), (0.05, 0.55));
        assert_eq!(accuracy_range(&[f64::NAN]), (0.0, 1.0));
    }

    #[test]
    fn marks_points_shades_splits_and_labels_the_time_axis() {
        let row = |point: usize, t: f64, acc: f64| Row {
            point,
            virtual_s: t,
            wall_s: 0.0,
            round_min: 0,
            round_mean: 0.0,
            round_max: 0,
            online: 1,
            evaluated: 1,
            acc_mean: acc,
            acc_worst: acc,
            acc_best: acc,
            acc_average: acc,
            loss_mean: 0.0,
            consensus: 0.1,
            bytes_sent: 0,
            dropped: 0,
            rejected: Vec::new(),
            clipped_fraction: 0.0,
            byzantine_share: 0.0,
            bans_of_byzantine: 0,
            bans_of_honest: 0,
            samples: 0,
            screen_pulled_in: 0,
            refused_busy: 0,
            redrawn: 0,
            retried: 0,
        };
        let rows = [row(0, 0.0, 0.8), row(1, 1.0, 0.85), row(2, 2.0, 0.9)];
        let svg = svg(&rows, "t", &[(0.5, 1.5)]);
        assert_eq!(
            svg.matches("<circle").count(),
            4 * 3,
            "three series and consensus"
        );
        assert!(svg.contains("network split"));
        assert!(svg.contains("virtual time (s)"));
        assert!(
            svg.contains(">75%<") && svg.contains(">95%<"),
            "fitted: {svg}"
        );
        assert!(!svg.contains(">0%<"));
    }
}
