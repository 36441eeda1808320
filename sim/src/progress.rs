//! Progress while a simulation runs: an `indicatif` bar with an ETA on a terminal, one line per
//! evaluation point otherwise.

use crate::report::Row;
use crate::scenario::Scenario;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// One line per evaluation point.
    Lines,
    /// A bar with an ETA, and a line per evaluation point above it.
    Bar,
}

impl Mode {
    /// A bar when standard error is a terminal, lines otherwise.
    pub fn auto() -> Mode {
        if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Steps of the bar: the fraction done, in thousandths.
const STEPS: u64 = 1000;

/// The progress reporter of one run.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    /// A reporter in `mode`.
    pub fn new(mode: Mode) -> Progress {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(STEPS), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "[{bar:30}] {percent:>3}% {elapsed_precise} eta {eta_precise} {msg}",
                )
                .expect("a valid template")
                .progress_chars("#>-"),
            );
            bar
        });
        Progress {
            mode,
            bar,
            start: Instant::now(),
        }
    }

    /// Fraction done, from rounds or from virtual time, whichever is further.
    fn fraction(s: &Scenario, now: Duration, round: u64) -> f64 {
        let by_rounds = s.rounds.map_or(0.0, |r| round as f64 / r as f64);
        let by_time = s.duration_ms.map_or(0.0, |d| now.as_secs_f64() * 1e3 / d);
        by_rounds.max(by_time).clamp(0.0, 1.0)
    }

    /// Reports an evaluation point of a run of `scenario` at virtual time `now`.
    pub(crate) fn point(&mut self, scenario: &Scenario, now: Duration, row: &Row) {
        let f = Self::fraction(scenario, now, row.round_min);
        let line = format!(
            "[{:>5.1}%] t={:.1}s round {} acc {:.2}% (worst {:.2}%) consensus {:.3e} wall {:.1}s",
            100.0 * f,
            row.virtual_s,
            row.round_min,
            100.0 * row.acc_mean,
            100.0 * row.acc_worst,
            row.consensus,
            self.start.elapsed().as_secs_f64(),
        );
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.println(line);
                bar.set_position((f * STEPS as f64) as u64);
                bar.set_message(format!(
                    "round {} acc {:.1}%",
                    row.round_min,
                    100.0 * row.acc_mean
                ));
            }
            (None, Mode::Lines) => eprintln!("{line}"),
            (None, _) => {}
        }
    }

    /// Moves the bar on between evaluation points (`round`: the last point's).
    pub(crate) fn tick(&mut self, scenario: &Scenario, now: Duration, round: u64) {
        if let Some(bar) = &self.bar {
            let f = Self::fraction(scenario, now, round);
            bar.set_position((f * STEPS as f64) as u64);
        }
    }

    /// Ends the bar.
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(format!(
                "done in {:.1}s",
                self.start.elapsed().as_secs_f64()
            ));
        }
    }
}
