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
            let p = prepare(&models, &sampling, &self.learning);
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
            (Assessed::waiting(consensus), Some(tags))
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
            if let Some(tags) = tags {
                let Some(evals) = self.cluster.world_mut().evaluations(tags, wait) else {
                    break;
                };
                let consensus = self.rows[point].consensus;
                finish(&evals, consensus).fill(&mut self.rows[point]);
            }
            self.pending.pop_front();
            let row = &self.rows[point];
            progress.point(&self.scenario, Duration::from_secs_f64(row.virtual_s), row);
        }
        self.eval_wall += start.elapsed();
    }
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

/// An evaluation point before its accuracies: the models to evaluate (the sampled nodes', in
/// node order, then their average) and the consensus distance.
pub(crate) struct Prepared<'a> {
    pub models: Vec<Cow<'a, [f32]>>,
    pub consensus: f64,
}

/// Prepares the evaluation of honest `models`: a sample of them one by one, and their average;
/// and their consensus distance (mean squared distance to the average, in f64, in input order).
/// Only the sample is decoded, if at all (the engines may hold their models as signed updates).
pub(crate) fn prepare<'a>(
    models: &[ModelView<'a>],
    sampling: &Sampling,
    learning: &Learning,
) -> Prepared<'a> {
    let dim = learning.arch.num_params();
    let mut sum = vec![0f64; dim];
    for m in models {
        let mut s = sum.iter_mut();
        m.for_each(|x| {
            if let Some(s) = s.next() {
                *s += f64::from(x);
            }
        });
    }
    let k = models.len().max(1) as f64;
    let average: Vec<f32> = sum.iter().map(|s| (s / k) as f32).collect();
    let consensus = models
        .iter()
        .map(|m| {
            let (mut s, mut total) = (sum.iter(), 0f64);
            m.for_each(|x| {
                if let Some(s) = s.next() {
                    let d = f64::from(x) - s / k;
                    total += d * d;
                }
            });
            total
        })
        .sum::<f64>()
        / k;
    let mut sample: Vec<usize> = (0..models.len()).collect();
    if sample.len() > sampling.size {
        let mut rng = links::rng(sampling.seed, stream::EVAL, sampling.point as u64);
        sample.shuffle(&mut rng);
        sample.truncate(sampling.size);
        sample.sort_unstable();
    }
    let mut evaluated: Vec<Cow<[f32]>> = sample.iter().map(|&i| models[i].to_cow()).collect();
    evaluated.push(Cow::Owned(average));
    Prepared {
        models: evaluated,
        consensus,
    }
}

/// The figures of a prepared point from the evaluations of its models (in the same order).
pub(crate) fn finish(evals: &[Eval], consensus: f64) -> Assessed {
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
    let p = prepare(models, sampling, learning);
    let device = learning
        .backend
        .device()
        .expect("the backend was checked at load");
    let evaluated: Vec<&[f32]> = p.models.iter().map(|m| &**m).collect();
    let evals = pool::evaluate(&learning.arch, evaluated, test, &device, threads);
    finish(&evals, p.consensus)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}
