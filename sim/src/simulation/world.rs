//! What the cluster of engines leaves to the simulator: the burn trainers (run in batches on
//! worker threads), the compute model, and the link model.

use crate::links::Links;
use crate::pool;
use murmur_learn::train::Trainer;
use murmur_protocol::cluster;
use murmur_protocol::engine::ModelView;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Counts of the training work, for the report.
#[derive(Debug, Default, Clone)]
pub(crate) struct Work {
    /// Training samples of the jobs whose virtual time came.
    pub samples: u64,
    /// Training samples of the jobs run (some ahead of their virtual time): what the training
    /// time was spent on.
    pub samples_run: u64,
    /// Wall time inside training jobs, summed over jobs.
    pub train_cpu: Duration,
    /// Wall time of the training batches (what the event loop waited for).
    pub train_wall: Duration,
}

/// The simulator's [`cluster::World`].
#[derive(Debug)]
pub(crate) struct World {
    pub trainers: Vec<Trainer>,
    /// Virtual time of one node's training job.
    compute: Vec<Duration>,
    pub links: Links,
    local_steps: usize,
    threads: usize,
    /// Samples of the jobs run and not yet delivered.
    done: BTreeMap<usize, u64>,
    pub work: Work,
}

impl World {
    pub(crate) fn new(
        trainers: Vec<Trainer>,
        compute: Vec<Duration>,
        links: Links,
        local_steps: usize,
        threads: usize,
    ) -> World {
        World {
            trainers,
            compute,
            links,
            local_steps,
            threads: threads.max(1),
            done: BTreeMap::new(),
            work: Work::default(),
        }
    }
}

impl cluster::World for World {
    fn train_time(&mut self, node: usize) -> Duration {
        self.compute[node]
    }

    /// Runs the batch on the worker threads. Each job depends only on its own trainer, so the
    /// results are the same bits for any number of threads. A trainer that dropped its copy of
    /// the mix ([`World::mixed`]) starts from the engine's; the trained parameters stay in the
    /// trainers until they are read back.
    fn train(&mut self, jobs: &[(usize, ModelView<'_>)]) {
        for (node, model) in jobs {
            let t = &mut self.trainers[*node];
            if t.params().is_empty() {
                t.set_params(&model.to_cow())
                    .expect("the engine keeps the model's dimension");
            }
        }
        let nodes: Vec<usize> = jobs.iter().map(|(n, _)| *n).collect();
        let mut wanted = nodes.iter().copied().peekable();
        let trainers: Vec<&mut Trainer> = self
            .trainers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, t)| wanted.next_if_eq(&i).map(|_| t))
            .collect();
        let start = Instant::now();
        let out = pool::train(trainers, self.local_steps, self.threads);
        self.work.train_wall += start.elapsed();
        for (&node, t) in nodes.iter().zip(out) {
            self.work.samples_run += t.samples;
            self.work.train_cpu += t.elapsed;
            self.done.insert(node, t.samples);
        }
    }

    fn trained(&mut self, node: usize) -> (Vec<f32>, u64) {
        let samples = self.done.remove(&node).unwrap_or(0);
        // Counted when the job's virtual time comes, however far ahead its batch ran.
        self.work.samples += samples;
        // The trainer's own buffer: the engine holds the model until the mix gives it back.
        (self.trainers[node].take_params(), samples)
    }

    fn set_model(&mut self, node: usize, params: &[f32]) {
        self.trainers[node]
            .set_params(params)
            .expect("the engine keeps the model's dimension");
    }

    /// A trainer with an outer optimiser steps towards the mix now; any other drops it, and
    /// its job starts from the engine's copy ([`World::train`]): between a mix and its job a
    /// node holds one copy of the mix, not two.
    fn mixed(&mut self, node: usize, params: Vec<f32>) {
        let t = &mut self.trainers[node];
        if t.has_outer() {
            t.adopt_mix(params)
                .expect("the engine keeps the model's dimension");
        } else {
            drop(params);
            drop(t.take_params());
        }
    }

    /// Frees the trainer's model and optimiser state: the engine holds the finished node's
    /// model (what evaluation reads), and a restart resumes past the last round the node signed,
    /// so it finishes at once. (A node that finished by catching up past rounds it never signed
    /// trains those after a restart, with its optimiser state from zero.)
    fn finished(&mut self, node: usize) {
        self.trainers[node].release();
    }

    fn arrival(&mut self, now: Duration, from: usize, to: usize, bytes: usize) -> Duration {
        self.links.arrival(now, from, to, bytes)
    }
}
