//! Progress while a simulation runs: a bar with an ETA on a terminal, plain lines otherwise.

use crate::report::Row;
use crate::simulation::Simulation;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// One line per evaluation point.
    Lines,
    /// A redrawn bar with an ETA.
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

/// The progress reporter of one run.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    start: Instant,
    last_draw: Instant,
}

impl Progress {
    /// A reporter in `mode`.
    pub fn new(mode: Mode) -> Progress {
        let now = Instant::now();
        Progress {
            mode,
            start: now,
            last_draw: now,
        }
    }

    /// Fraction done, from rounds or from virtual time, whichever is further.
    fn fraction(sim: &Simulation, round: u64) -> f64 {
        let s = &sim.scenario;
        let by_rounds = s.rounds.map_or(0.0, |r| round as f64 / r as f64);
        let by_time = s
            .duration_ms
            .map_or(0.0, |d| sim.now().as_secs_f64() * 1e3 / d);
        by_rounds.max(by_time).clamp(0.0, 1.0)
    }

    fn eta(&self, fraction: f64) -> String {
        let spent = self.start.elapsed().as_secs_f64();
        if fraction <= 0.0 {
            return "?".into();
        }
        format!("{:.0}s", spent * (1.0 - fraction) / fraction)
    }

    /// Reports an evaluation point.
    pub(crate) fn point(&mut self, sim: &Simulation, row: &Row) {
        let f = Self::fraction(sim, row.round_min);
        let line = format!(
            "[{:>5.1}%] t={:.1}s round {} acc {:.2}% (worst {:.2}%) consensus {:.3e} wall {:.1}s eta {}",
            100.0 * f,
            row.virtual_s,
            row.round_min,
            100.0 * row.acc_mean,
            100.0 * row.acc_worst,
            row.consensus,
            self.start.elapsed().as_secs_f64(),
            self.eta(f)
        );
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{line}"),
            Mode::Bar => {
                eprint!("\r\x1b[2K");
                eprintln!("{line}");
                self.draw(f);
            }
        }
    }

    /// Redraws the bar (at most ten times a second).
    pub(crate) fn tick(&mut self, sim: &Simulation) {
        if self.mode != Mode::Bar || self.last_draw.elapsed() < Duration::from_millis(100) {
            return;
        }
        let f = Self::fraction(sim, sim.rows.last().map_or(0, |r| r.round_min));
        let f = f.max(Self::fraction(sim, 0));
        self.draw(f);
    }

    fn draw(&mut self, f: f64) {
        self.last_draw = Instant::now();
        let width = 30;
        let full = (f * width as f64).round() as usize;
        eprint!(
            "\r\x1b[2K[{}{}] {:>5.1}% eta {}",
            "#".repeat(full),
            "-".repeat(width - full),
            100.0 * f,
            self.eta(f)
        );
        let _ = std::io::stderr().flush();
    }

    /// Ends the bar.
    pub(crate) fn finish(&mut self, _sim: &Simulation) {
        if self.mode == Mode::Bar {
            eprintln!(
                "\r\x1b[2K[{}] done in {:.1}s",
                "#".repeat(30),
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}
