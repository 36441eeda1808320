//! Evaluation points: the honest models' accuracy, their consensus distance, and the network's
//! counters, as one [`Row`].

use super::Simulation;
use crate::links::{self, stream};
use crate::pool::{self, EvalSet};
use crate::progress::Progress;
use crate::report::Row;
use murmur_learn::data::Dataset;
use murmur_learn::train::{Eval, Setup as Learning};
use murmur_protocol::engine::{ModelView, Rejection, Stats};
use rand::seq::SliceRandom;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Simulation {
    /// Evaluates the online honest nodes now and appends a row. With worker threads the
    /// accuracies are computed in the background: the row waits in `pending` until
    /// [`Simulation::settle`] fills it in (the models are copied now, so the figures are the
    /// point's whatever happens meanwhile).
    pub(super) fn evaluate(&mut self) {
        let start = Instant::now();
        let n = self.cluster.len();
        let honest: Vec<usize> = (0..n)
            .filter(|&i| self.cluster.is_online(i) && !self.byzantine[i])
            .collect();
        let models: Vec<ModelView> = honest
            .iter()
            .map(|&i| self.cluster.engine(i).model())
            .collect();
        let point = self.rows.len();
        let sampling = Sampling {
            size: self.scenario.eval.sample,
            seed: self.scenario.seed,
            point,
        };
        let (a, tags) = if self.cluster.world().in_background() {
            let p = prepare(&models, &sampling, self.learning.arch.num_params());
            let slots = p.slots;
            let owned: Vec<Vec<f32>> = p.models.into_iter().map(Cow::into_owned).collect();
            let consensus = p.consensus;
            drop(models);
            let on = Arc::clone(self.eval_set.get_or_insert_with(|| {
                Arc::new(EvalSet {
                    arch: self.learning.arch.clone(),
                    data: self.test.clone(),
                    device: self
                        .learning
                        .backend
                        .device()
                        .expect("the backend was checked at load"),
                })
            }));
            let tags = self.cluster.world_mut().evaluate(owned, &on);
            (
                Assessed::waiting(consensus),
                Some(InBackground { tags, slots }),
            )
        } else {
            let a = assess(&models, &sampling, &self.learning, &self.test, 1);
            (a, None)
        };
        let mut stats = Stats::default();
        for i in (0..n).filter(|&i| !self.byzantine[i]) {
            stats.add(self.cluster.earlier_lives(i));
            stats.add(self.cluster.engine(i).stats());
        }
        let (mut bans_of_byzantine, mut bans_of_honest) = (0, 0);
        for &i in &honest {
            for (peer, _) in self.cluster.engine(i).banned() {
                match self.cluster.node_of(&peer).map(|j| self.byzantine[j]) {
                    Some(true) => bans_of_byzantine += 1,
                    _ => bans_of_honest += 1,
                }
            }
        }
        let rounds: Vec<u64> = honest.iter().map(|&i| self.completed[i]).collect();
        let window = std::mem::take(&mut self.window);
        self.eval_wall += start.elapsed();
        self.events_at_eval = self.cluster.counters().events;
        self.rows.push(Row {
            point,
            virtual_s: self.now().as_secs_f64(),
            wall_s: self.started.elapsed().as_secs_f64(),
            round_min: rounds.iter().copied().min().unwrap_or(0),
            round_mean: mean(&rounds.iter().map(|&r| r as f64).collect::<Vec<_>>()),
            round_max: rounds.iter().copied().max().unwrap_or(0),
            online: honest.len(),
            evaluated: a.evaluated,
            acc_mean: a.acc_mean,
            acc_worst: a.acc_worst,
            acc_best: a.acc_best,
            acc_average: a.acc_average,
            loss_mean: a.loss_mean,
            consensus: a.consensus,
            bytes_sent: stats.bytes_sent,
            dropped: self.cluster.counters().dropped,
            rejected: Rejection::ALL
                .iter()
                .map(|r| stats.rejected.get(r).copied().unwrap_or(0))
                .collect(),
            clipped_fraction: window.clipped as f64 / window.received.max(1) as f64,
            byzantine_share: window.byzantine as f64 / window.received.max(1) as f64,
            bans_of_byzantine,
            bans_of_honest,
            samples: self.cluster.world().work.samples,
            screen_pulled_in: stats.pulled_in,
            refused_busy: stats.refused_busy,
            redrawn: stats.redrawn,
            retried: stats.retried,
        });
        self.pending.push_back((point, tags));
    }

    /// Reports the rows not yet reported, in order, filling in those whose evaluations ran in
    /// the background once they are done; with `wait`, waits for all of them.
    pub(super) fn settle(&mut self, progress: &mut Progress, wait: bool) {
        let start = Instant::now();
        while let Some((point, tags)) = self.pending.front() {
            let point = *point;
            if let Some(InBackground { tags, slots }) = tags {
                let Some(evals) = self.cluster.world_mut().evaluations(tags, wait) else {
                    break;
                };
                let consensus = self.rows[point].consensus;
                finish(&evals, slots, consensus).fill(&mut self.rows[point]);
            }
            self.pending.pop_front();
            let row = &self.rows[point];
            progress.point(&self.scenario, Duration::from_secs_f64(row.virtual_s), row);
        }
        self.eval_wall += start.elapsed();
    }
}

/// A point whose models are evaluated in the background: the tags of their evaluations, and the
/// model each figure is of ([`Prepared::slots`]).
#[derive(Debug)]
pub(super) struct InBackground {
    tags: Vec<u64>,
    slots: Vec<usize>,
}

/// Which of the models an evaluation point evaluates one by one: all when there are at most
/// `size`, else a sample drawn by the run's `seed` and the `point`'s index.
pub(crate) struct Sampling {
    pub size: usize,
    pub seed: u64,
    pub point: usize,
}

/// The accuracy figures of one evaluation point.
pub(crate) struct Assessed {
    pub evaluated: usize,
    pub acc_mean: f64,
    pub acc_worst: f64,
    pub acc_best: f64,
    pub acc_average: f64,
    pub loss_mean: f64,
    pub consensus: f64,
}

impl Assessed {
    /// A point whose accuracies are still being computed (NaN until filled in).
    fn waiting(consensus: f64) -> Assessed {
        Assessed {
            evaluated: 0,
            acc_mean: f64::NAN,
            acc_worst: f64::NAN,
            acc_best: f64::NAN,
            acc_average: f64::NAN,
            loss_mean: f64::NAN,
            consensus,
        }
    }

    /// Writes the accuracy figures into `row`.
    fn fill(&self, row: &mut Row) {
        row.evaluated = self.evaluated;
        row.acc_mean = self.acc_mean;
        row.acc_worst = self.acc_worst;
        row.acc_best = self.acc_best;
        row.acc_average = self.acc_average;
        row.loss_mean = self.loss_mean;
        row.consensus = self.consensus;
    }
}

/// An evaluation point before its accuracies: the models to evaluate, each once, and the
/// consensus distance. The point's figures are of the sampled nodes' models, in node order, then
/// their average: `slots[i]` is the index in `models` of the `i`-th of them. Models that are
/// the same bits are evaluated once (every node's at the first point, when all start from one
/// model, and the average when they agree).
pub(crate) struct Prepared<'a> {
    pub models: Vec<Cow<'a, [f32]>>,
    pub slots: Vec<usize>,
    pub consensus: f64,
}

/// Prepares the evaluation of honest `models`: a sample of them one by one, and their average;
/// and their consensus distance (mean squared distance to the average, in f64, in input order).
/// Models are read where they lie (the engines may hold them as signed updates); one that cannot
/// be (a big-endian machine, or a payload not at a multiple of 4 in memory) is decoded into a
/// copy for each pass, at most four at a time.
pub(crate) fn prepare<'a>(
    models: &[ModelView<'a>],
    sampling: &Sampling,
    dim: usize,
) -> Prepared<'a> {
    let k = models.len().max(1) as f64;
    // Each coordinate's sum runs over the models in input order, and each model's squared
    // distance over the coordinates in order, as a plain loop would add them; only independent
    // sums run side by side (coordinates in the first pass, four models in the second).
    let mut sum = vec![0f64; dim];
    for m in models {
        for (s, &x) in sum.iter_mut().zip(m.to_cow().iter()) {
            *s += f64::from(x);
        }
    }
    let centre: Vec<f64> = sum.iter().map(|s| s / k).collect();
    drop(sum);
    let average: Vec<f32> = centre.iter().map(|&a| a as f32).collect();
    let mut totals = Vec::with_capacity(models.len());
    for group in models.chunks(4) {
        let views: Vec<Cow<[f32]>> = group.iter().map(ModelView::to_cow).collect();
        totals.extend(squared_distances(&views, &centre));
    }
    let consensus = totals.iter().sum::<f64>() / k;
    let mut sample: Vec<usize> = (0..models.len()).collect();
    if sample.len() > sampling.size {
        let mut rng = links::rng(sampling.seed, stream::EVAL, sampling.point as u64);
        sample.shuffle(&mut rng);
        sample.truncate(sampling.size);
        sample.sort_unstable();
    }
    let figures = sample
        .iter()
        .map(|&i| models[i].to_cow())
        .chain([Cow::Owned(average)]);
    let mut distinct: Vec<Cow<[f32]>> = Vec::new();
    let mut slots = Vec::with_capacity(sample.len() + 1);
    for m in figures {
        // Models that differ mostly differ in their first values: a comparison stops there.
        let same = |d: &Cow<[f32]>| {
            d.iter()
                .map(|x| x.to_bits())
                .eq(m.iter().map(|x| x.to_bits()))
        };
        match distinct.iter().position(same) {
            Some(i) => slots.push(i),
            None => {
                slots.push(distinct.len());
                distinct.push(m);
            }
        }
    }
    Prepared {
        models: distinct,
        slots,
        consensus,
    }
}

/// Each model's squared distance to `centre` (summed in `f64`, coordinates in order), four
/// models in one pass when there are four.
fn squared_distances(models: &[Cow<[f32]>], centre: &[f64]) -> Vec<f64> {
    let distance = |m: &[f32]| {
        let mut t = 0f64;
        for (&c, &x) in centre.iter().zip(m) {
            let e = f64::from(x) - c;
            t += e * e;
        }
        t
    };
    let [m0, m1, m2, m3] = models else {
        return models.iter().map(|m| distance(m)).collect();
    };
    let mut t = [0f64; 4];
    let rows = centre
        .iter()
        .zip(m0.iter())
        .zip(m1.iter())
        .zip(m2.iter())
        .zip(m3.iter());
    for ((((&c, &x0), &x1), &x2), &x3) in rows {
        for (t, x) in t.iter_mut().zip([x0, x1, x2, x3]) {
            let e = f64::from(x) - c;
            *t += e * e;
        }
    }
    t.to_vec()
}

/// The figures of a prepared point from the evaluations of its models (in the same order), the
/// `i`-th figure being of the model `slots[i]` (see [`Prepared`]).
pub(crate) fn finish(evals: &[Eval], slots: &[usize], consensus: f64) -> Assessed {
    let evals: Vec<Eval> = slots.iter().map(|&i| evals[i]).collect();
    let (avg, nodes) = evals.split_last().expect("the average is evaluated");
    let accs: Vec<f64> = nodes.iter().map(|e| e.accuracy).collect();
    Assessed {
        evaluated: nodes.len(),
        acc_mean: mean(&accs),
        acc_worst: accs.iter().copied().fold(f64::INFINITY, f64::min),
        acc_best: accs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        acc_average: avg.accuracy,
        loss_mean: mean(&nodes.iter().map(|e| e.loss).collect::<Vec<_>>()),
        consensus,
    }
}

/// Evaluates honest `models` on `test` now (see [`prepare`]).
pub(crate) fn assess(
    models: &[ModelView],
    sampling: &Sampling,
    learning: &Learning,
    test: &Dataset,
    threads: usize,
) -> Assessed {
    let p = prepare(models, sampling, learning.arch.num_params());
    let device = learning
        .backend
        .device()
        .expect("the backend was checked at load");
    let evaluated: Vec<&[f32]> = p.models.iter().map(|m| &**m).collect();
    let evals = pool::evaluate(&learning.arch, evaluated, test, &device, threads);
    finish(&evals, &p.slots, p.consensus)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures as a plain loop computes them: the average and the consensus distance, in
    /// `f64`, models and coordinates in order.
    fn plain(models: &[Vec<f32>]) -> (Vec<f32>, f64) {
        let (k, dim) = (models.len() as f64, models[0].len());
        let sum: Vec<f64> = (0..dim)
            .map(|j| models.iter().fold(0.0, |s, m| s + f64::from(m[j])))
            .collect();
        let consensus = models
            .iter()
            .map(|m| {
                (0..dim).fold(0.0, |t, j| {
                    let d = f64::from(m[j]) - sum[j] / k;
                    t + d * d
                })
            })
            .sum::<f64>()
            / k;
        (sum.iter().map(|s| (s / k) as f32).collect(), consensus)
    }

    #[test]
    fn the_average_and_consensus_are_a_plain_loops_bit_for_bit() {
        let dim = 1001;
        let mut rng = links::rng(7, stream::EVAL, 0);
        for n in [1, 3, 4, 9] {
            let models: Vec<Vec<f32>> = (0..n)
                .map(|_| {
                    (0..dim)
                        .map(|_| rand::Rng::random_range(&mut rng, -3.0f32..3.0) * 1e3)
                        .collect()
                })
                .collect();
            // Half the models held as signed payloads, as engines hold them.
            let bytes: Vec<Vec<u8>> = models
                .iter()
                .map(|m| m.iter().flat_map(|x| x.to_le_bytes()).collect())
                .collect();
            let views: Vec<ModelView> = (0..n)
                .map(|i| match i % 2 {
                    0 => ModelView::Params(&models[i]),
                    _ => ModelView::Le(&bytes[i]),
                })
                .collect();
            let sampling = Sampling {
                size: 2,
                seed: 1,
                point: 0,
            };
            let p = prepare(&views, &sampling, dim);
            let (average, consensus) = plain(&models);
            assert_eq!(p.consensus.to_bits(), consensus.to_bits(), "{n} models");
            let got = &p.models[*p.slots.last().expect("the average")];
            assert!(
                got.iter()
                    .zip(&average)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{n} models"
            );
            assert_eq!(p.slots.len(), n.min(2) + 1);
        }
    }

    #[test]
    fn models_of_the_same_bits_are_evaluated_once() {
        let a = vec![0.5f32; 64];
        let mut b = a.clone();
        b[63] = -0.5; // differs in its last value only
        let mut c = a.clone();
        c[0] = -0.0; // 0.5 against -0.0: another model
        let sampling = |size| Sampling {
            size,
            seed: 3,
            point: 0,
        };
        // Every node on one model, as at the first point: one evaluation for all the figures.
        let same: Vec<ModelView> = (0..5).map(|_| ModelView::Params(&a)).collect();
        let p = prepare(&same, &sampling(16), 64);
        assert_eq!(p.models.len(), 1);
        assert_eq!(p.slots, [0; 6]);
        assert_eq!(p.consensus, 0.0);
        // Figures keep their order; each distinct model once, the average after the sample's.
        let mixed = [&a, &b, &a, &c, &b].map(|m| ModelView::Params(m));
        let p = prepare(&mixed, &sampling(16), 64);
        assert_eq!(p.slots, [0, 1, 0, 2, 1, 3]);
        assert_eq!(p.models.len(), 4);
        let evals: Vec<Eval> = (0..4)
            .map(|i| Eval {
                accuracy: i as f64 / 10.0,
                loss: i as f64,
                samples: 1,
            })
            .collect();
        let f = finish(&evals, &p.slots, p.consensus);
        assert_eq!(f.evaluated, 5);
        assert_eq!(f.acc_average, 0.3);
        assert_eq!(f.acc_worst, 0.0);
        assert_eq!(f.acc_best, 0.2);
        assert!((f.acc_mean - 0.08).abs() < 1e-12, "{}", f.acc_mean);
    }
}
