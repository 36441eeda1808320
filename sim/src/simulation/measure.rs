//! Evaluation points: the honest models' accuracy, their consensus distance, and the network's
//! counters, as one [`Row`].

use super::Simulation;
use crate::links::{self, stream};
use crate::pool;
use crate::report::Row;
use murmur_learn::data::Dataset;
use murmur_learn::train::Setup as Learning;
use murmur_protocol::engine::{ModelView, Rejection, Stats};
use rand::seq::SliceRandom;
use std::borrow::Cow;
use std::time::Instant;

impl Simulation {
    /// Evaluates the online honest nodes now and appends a row.
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
        let a = assess(
            &models,
            &Sampling {
                size: self.scenario.eval.sample,
                seed: self.scenario.seed,
                point,
            },
            &self.learning,
            &self.test,
            self.threads,
        );
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
        });
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

/// Evaluates honest `models` on `test`: a sample of them one by one, and their average; and
/// their consensus distance (mean squared distance to the average, in f64, in input order).
/// Only the sample is decoded (the engines may hold their models as signed updates).
pub(crate) fn assess(
    models: &[ModelView],
    sampling: &Sampling,
    learning: &Learning,
    test: &Dataset,
    threads: usize,
) -> Assessed {
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
    let decoded: Vec<Cow<[f32]>> = sample.iter().map(|&i| models[i].to_cow()).collect();
    let mut evaluated: Vec<&[f32]> = decoded.iter().map(|m| &**m).collect();
    evaluated.push(&average);
    let device = learning
        .backend
        .device()
        .expect("the backend was checked at load");
    let evals = pool::evaluate(&learning.arch, evaluated, test, &device, threads);
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

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}
