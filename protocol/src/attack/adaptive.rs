//! The adaptive attacks' machinery: the honest nodes' mix as an attacker simulates it
//! ([`Defence`]), the strength line search of `opt-alie` and `opt-ipm`, and the perturbation of
//! `min-max` and `min-sum`.

use super::{Perturbation, Space, View, forge, mean};

/// `(own, received, out)`: writes into `out` what a node holding `own` mixes from `received`.
pub type MixFn = dyn Fn(&[f32], &[&[f32]], &mut [f32]);

/// The honest nodes' mix as an attacker can simulate it: the protocol and the run's
/// configuration are public, so it knows the rule and the screen, though not each node's
/// history.
#[derive(Clone, Copy)]
pub struct Defence<'a> {
    /// Writes into `out` what a node holding `own` mixes from the received models `received`.
    pub mix: &'a MixFn,
    /// How many models a node receives per mix.
    pub fan_in: usize,
}

impl std::fmt::Debug for Defence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defence")
            .field("fan_in", &self.fan_in)
            .finish_non_exhaustive()
    }
}

/// Upper end of the strength line search of
/// [`Attack::OptAlie`](super::Attack::OptAlie) and [`Attack::OptIpm`](super::Attack::OptIpm).
pub const SEARCH_MAX: f64 = 64.0;

/// The perturbation of a min-max or min-sum forgery: of the honest models' steps from
/// `reference` in update space (of the models when no reference of the right length is known).
pub(super) fn deviation(
    honest: &[&[f32]],
    reference: Option<&[f32]>,
    kind: Perturbation,
    space: Space,
) -> Vec<f32> {
    let d = honest[0].len();
    let mut dev = vec![0.0f32; d];
    match reference.filter(|r| r.len() == d && space == Space::Update) {
        Some(r) => {
            let steps: Vec<Vec<f32>> = honest
                .iter()
                .map(|h| h.iter().zip(r).map(|(x, y)| x - y).collect())
                .collect();
            let steps: Vec<&[f32]> = steps.iter().map(Vec::as_slice).collect();
            forge::perturbation(&steps, kind, &mut dev);
        }
        None => forge::perturbation(honest, kind, &mut dev),
    }
    dev
}

/// The strength whose forgery, received by a simulated victim, moves the victim's mix farthest
/// from the mean of the honest models it mixes (ByzFL's objective for its optimised attacks).
///
/// The victim is [`View::victim`](super::View::victim)'s model, or the attacker's own; it
/// receives `fan_in` models:
/// as many copies of the forgery as a node draws attackers on average (`f` of the other `n - 1`
/// nodes, at least one), and known honest models (other than the victim's) for the rest. The
/// strength is searched on a halving grid from [`SEARCH_MAX`] down to `SEARCH_MAX / 4096`, and 0,
/// then refined by a golden-section search between the best point's neighbours; ties go to the
/// smaller strength. Deterministic: no randomness.
pub(super) fn search(
    view: &View<'_>,
    honest: &[&[f32]],
    defence: &Defence<'_>,
    forge: &dyn Fn(f64, &mut [f32]),
) -> f64 {
    let d = view.own.len();
    let victim: &[f32] = view
        .victim
        .map(|v| v.model)
        .filter(|m| m.len() == d)
        .unwrap_or(view.own);
    let fan_in = defence.fan_in.max(1);
    let others_n = view.n.saturating_sub(1).max(1);
    let copies = (view.f * fan_in).div_ceil(others_n).clamp(1, fan_in);
    let mut others: Vec<&[f32]> = honest
        .iter()
        .copied()
        .filter(|m| !std::ptr::eq(m.as_ptr(), victim.as_ptr()))
        .take(fan_in - copies)
        .collect();
    if others.is_empty() {
        others.push(view.own);
    }
    let mut mixed: Vec<&[f32]> = others.clone();
    mixed.push(victim);
    let mut centre = vec![0.0f32; d];
    mean(&mixed, &mut centre);
    let mut forged = vec![0.0f32; d];
    let mut out = vec![0.0f32; d];
    let mut harm = |s: f64| -> f64 {
        forge(s, &mut forged);
        let mut received = others.clone();
        received.extend(std::iter::repeat_n(forged.as_slice(), copies));
        (defence.mix)(victim, &received, &mut out);
        let h = crate::aggregate::distance(&out, &centre);
        if h.is_nan() { f64::NEG_INFINITY } else { h }
    };
    let grid: Vec<f64> = std::iter::once(0.0)
        .chain((0..=12).rev().map(|k| SEARCH_MAX / f64::from(1u32 << k)))
        .collect();
    let scores: Vec<f64> = grid.iter().map(|&s| harm(s)).collect();
    let mut best = 0;
    for (i, &h) in scores.iter().enumerate() {
        if h > scores[best] {
            best = i;
        }
    }
    let (mut lo, mut hi) = (
        grid[best.saturating_sub(1)],
        grid[(best + 1).min(grid.len() - 1)],
    );
    let (mut top, mut top_h) = (grid[best], scores[best]);
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..14 {
        let a = hi - phi * (hi - lo);
        let b = lo + phi * (hi - lo);
        let (ha, hb) = (harm(a), harm(b));
        for (s, h) in [(a, ha), (b, hb)] {
            if h > top_h {
                (top, top_h) = (s, h);
            }
        }
        if ha >= hb {
            hi = b;
        } else {
            lo = a;
        }
    }
    top
}
