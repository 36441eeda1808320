//! Evaluation points: the honest models' accuracy, their consensus distance, and the network's
//! counters, as one [`Row`].

use super::Simulation;
use crate::links::{self, stream};
use crate::pool;
use crate::report::Row;
use murmur_protocol::engine::{Rejection, Stats};
use rand::seq::SliceRandom;
use std::time::Instant;

impl Simulation {
    /// Evaluates the online honest nodes now and appends a row.
    pub(super) fn evaluate(&mut self) {
        let start = Instant::now();
        let n = self.cluster.len();
        let honest: Vec<usize> = (0..n)
            .filter(|&i| self.cluster.is_online(i) && !self.byzantine[i])
            .collect();
        let dim = self.learning.arch.num_params();
        // The honest average model and the mean squared distance to it, in f64, in node order.
        let mut sum = vec![0f64; dim];
        for &i in &honest {
            for (s, &x) in sum.iter_mut().zip(self.cluster.engine(i).model()) {
                *s += f64::from(x);
            }
        }
        let k = honest.len().max(1) as f64;
        let average: Vec<f32> = sum.iter().map(|s| (s / k) as f32).collect();
        let consensus = honest
            .iter()
            .map(|&i| {
                self.cluster
                    .engine(i)
                    .model()
                    .iter()
                    .zip(&sum)
                    .map(|(&x, s)| {
                        let d = f64::from(x) - s / k;
                        d * d
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
            / k;
        let point = self.rows.len();
        let mut sample = honest.clone();
        if sample.len() > self.scenario.eval.sample {
            let mut rng = links::rng(self.scenario.seed, stream::EVAL, point as u64);
            sample.shuffle(&mut rng);
            sample.truncate(self.scenario.eval.sample);
            sample.sort_unstable();
        }
        let mut models: Vec<&[f32]> = sample
            .iter()
            .map(|&i| self.cluster.engine(i).model())
            .collect();
        models.push(&average);
        let device = self
            .learning
            .backend
            .device()
            .expect("the backend was checked at load");
        let evals = pool::evaluate(
            &self.learning.arch,
            models,
            &self.test,
            &device,
            self.threads,
        );
        let (avg, nodes) = evals.split_last().expect("the average is evaluated");
        let accs: Vec<f64> = nodes.iter().map(|e| e.accuracy).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
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
            evaluated: nodes.len(),
            acc_mean: mean(&accs),
            acc_worst: accs.iter().copied().fold(f64::INFINITY, f64::min),
            acc_best: accs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            acc_average: avg.accuracy,
            loss_mean: mean(&nodes.iter().map(|e| e.loss).collect::<Vec<_>>()),
            consensus,
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
