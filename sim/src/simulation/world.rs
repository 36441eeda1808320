//! What the cluster of engines leaves to the simulator: the burn trainers (run in the
//! background on worker threads), the compute model, and the link model.

use crate::links::Links;
use crate::pool::{self, Done, EvalSet, Trained, Workers};
use murmur_learn::train::{Eval, Trainer};
use murmur_protocol::cluster;
use murmur_protocol::engine::ModelView;
use std::collections::BTreeMap;
use std::sync::Arc;
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
    /// Wall time the event loop spent training or waiting for training: with one thread, the
    /// jobs themselves; with worker threads, the waits for a result not ready yet.
    pub train_wall: Duration,
}

/// The simulator's [`cluster::World`].
#[derive(Debug)]
pub(crate) struct World {
    /// Each node's trainer; `None` while a worker trains it.
    trainers: Vec<Option<Trainer>>,
    /// Virtual time of one node's training job.
    compute: Vec<Duration>,
    pub links: Links,
    local_steps: usize,
    /// The worker threads (none with one thread: the event loop's thread trains).
    workers: Option<Workers>,
    /// Whether a trainer has an outer optimiser, and so takes each mix.
    outer: bool,
    /// Samples of the jobs run and not yet delivered.
    done: BTreeMap<usize, u64>,
    /// Evaluations done in the background, by tag, and the next tag.
    evaluated: BTreeMap<u64, Eval>,
    next_tag: u64,
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
            outer: trainers.iter().any(Trainer::has_outer),
            trainers: trainers.into_iter().map(Some).collect(),
            compute,
            links,
            local_steps,
            workers: (threads > 1).then(|| Workers::new(threads)),
            done: BTreeMap::new(),
            evaluated: BTreeMap::new(),
            next_tag: 0,
            work: Work::default(),
        }
    }

    /// Puts what a worker did in its place: a trainer back in its slot, an evaluation with the
    /// finished ones. Returns the node whose job it was, if it was one.
    fn put_back(&mut self, done: Done) -> Option<usize> {
        match done {
            Done::Trained {
                node,
                trainer,
                trained,
            } => {
                self.trainers[node] = Some(*trainer);
                self.record(node, trained);
                Some(node)
            }
            Done::Evaluated { tag, eval } => {
                self.evaluated.insert(tag, eval);
                None
            }
        }
    }

    /// Whether the world has worker threads, which train and evaluate in the background.
    pub(crate) fn in_background(&self) -> bool {
        self.workers.is_some()
    }

    /// Runs `f` with the worker threads holding still (each ended its task, and none starts
    /// another until `f` returns): nothing of the run uses a core while `f` runs.
    pub(crate) fn holding_workers<R>(&self, f: impl FnOnce() -> R) -> R {
        let Some(workers) = &self.workers else {
            return f();
        };
        workers.hold();
        let r = f();
        workers.release();
        r
    }

    /// The run is over: no training job will be queued again, so the evaluations still to run
    /// may take every worker.
    pub(crate) fn no_more_training(&self) {
        if let Some(workers) = &self.workers {
            workers.no_more_training();
        }
    }

    /// Hands `models` to the worker threads to evaluate on `on` in the background, and returns
    /// their tags for [`World::evaluations`]. Only with worker threads
    /// ([`World::in_background`]).
    pub(crate) fn evaluate(&mut self, models: Vec<Vec<f32>>, on: &Arc<EvalSet>) -> Vec<u64> {
        let workers = self
            .workers
            .as_ref()
            .expect("evaluations in the background need worker threads");
        let mut tags = Vec::with_capacity(models.len());
        for model in models {
            let tag = self.next_tag;
            self.next_tag += 1;
            workers.evaluate(tag, model, Arc::clone(on));
            tags.push(tag);
        }
        tags
    }

    /// The evaluations of `tags`, in that order, once all are done (waiting for them if
    /// `wait`, else `None` while one is not).
    pub(crate) fn evaluations(&mut self, tags: &[u64], wait: bool) -> Option<Vec<Eval>> {
        while !tags.iter().all(|t| self.evaluated.contains_key(t)) {
            let workers = self.workers.as_ref()?;
            let done = match workers.try_next() {
                Some(done) => done,
                None if wait => workers.help(None, true).unwrap_or_else(|| workers.next()),
                None => return None,
            };
            self.put_back(done);
        }
        Some(
            tags.iter()
                .map(|t| self.evaluated.remove(t).expect("all done"))
                .collect(),
        )
    }

    fn record(&mut self, node: usize, t: Trained) {
        self.work.samples_run += t.samples;
        self.work.train_cpu += t.elapsed;
        self.done.insert(node, t.samples);
    }

    /// `node`'s trainer, waiting for its job if a worker has it (the jobs that come back
    /// meanwhile go back to their places).
    fn trainer(&mut self, node: usize) -> &mut Trainer {
        if self.trainers[node].is_none() {
            let start = Instant::now();
            loop {
                let workers = self
                    .workers
                    .as_ref()
                    .expect("a trainer is away only with workers");
                let done = workers
                    .try_next()
                    .or_else(|| workers.help(Some(node), false))
                    .unwrap_or_else(|| workers.next_soon());
                if self.put_back(done) == Some(node) {
                    break;
                }
            }
            self.work.train_wall += start.elapsed();
        }
        self.trainers[node].as_mut().expect("back from its worker")
    }
}

impl cluster::World for World {
    fn train_time(&mut self, node: usize) -> Duration {
        self.compute[node]
    }

    /// Hands each job to a worker (or, with one thread, runs it now). Each job depends only on
    /// its own trainer, so the results are the same bits for any number of threads and
    /// whenever they run. A trainer without parameters starts from the engine's model: one
    /// awaiting its first (`Trainer::awaiting_model`), or one that dropped its copy of the mix
    /// ([`World::mixed`]): its job reads that model where it lies
    /// ([`Trainer::train_steps_from`]) rather than a copy of it (with worker threads, a mix the
    /// engine shares, [`ModelView::Shared`]; any other is copied in). The trained parameters
    /// stay in the trainers until they are read back.
    fn train(&mut self, jobs: &[(usize, ModelView<'_>)]) {
        let steps = self.local_steps;
        if self.workers.is_none() {
            // On the event loop's thread, a job reads the engine's model where it lies.
            let begin = Instant::now();
            let mut out = Vec::with_capacity(jobs.len());
            for (node, model) in jobs {
                let t = self.trainers[*node]
                    .as_mut()
                    .expect("with one thread, trainers stay home");
                let start = t.params().is_empty().then(|| model.to_cow());
                out.push((*node, pool::train_job(t, start.as_deref(), steps)));
            }
            self.work.train_wall += begin.elapsed();
            for (node, t) in out {
                self.record(node, t);
            }
            return;
        }
        let mut ready = Vec::with_capacity(jobs.len());
        for (node, model) in jobs {
            let t = self.trainer(*node);
            // A mix the engine shares is read where it lies by the job; any other model the
            // trainer does not hold is copied in now.
            let start = match model {
                _ if !t.params().is_empty() => None,
                ModelView::Shared(mix) => Some(Arc::clone(mix)),
                _ => {
                    t.set_params(&model.to_cow())
                        .expect("the engine keeps the model's dimension");
                    None
                }
            };
            let trainer = self.trainers[*node].take().expect("fetched above");
            ready.push((*node, trainer, start));
        }
        let workers = self.workers.as_ref().expect("checked above");
        for (node, trainer, start) in ready {
            workers.submit(node, Box::new(trainer), steps, start);
        }
    }

    fn trained(&mut self, node: usize) -> (Vec<f32>, u64) {
        let params = self.trainer(node).take_params();
        let samples = self.done.remove(&node).unwrap_or(0);
        // Counted when the job's virtual time comes, however far ahead it ran.
        self.work.samples += samples;
        // The trainer's own buffer: the engine holds the model until the mix gives it back.
        (params, samples)
    }

    fn set_model(&mut self, node: usize, params: &[f32]) {
        self.trainer(node)
            .set_params(params)
            .expect("the engine keeps the model's dimension");
    }

    /// Mixes are handed over only to trainers with an outer optimiser: any other starts its
    /// job from the engine's model ([`World::train`]), so the engines need not copy the mix.
    fn takes_mixes(&self) -> bool {
        self.outer
    }

    /// A trainer with an outer optimiser steps towards the mix now; any other drops what it
    /// holds, and its job starts from the engine's copy ([`World::train`]): between a mix and
    /// its job a node holds one copy of the mix, not two.
    fn mixed(&mut self, node: usize, params: Option<Vec<f32>>) {
        let t = self.trainer(node);
        match params {
            Some(params) if t.has_outer() => t
                .adopt_mix(params)
                .expect("the engine keeps the model's dimension"),
            _ => drop(t.take_params()),
        }
    }

    /// Frees the trainer's model and optimiser state: the engine holds the finished node's
    /// model (what evaluation reads), and a restart resumes past the last round the node signed,
    /// so it finishes at once. (A node that finished by catching up past rounds it never signed
    /// trains those after a restart, with its optimiser state from zero.)
    fn finished(&mut self, node: usize) {
        self.trainer(node).release();
    }

    /// An idle worker hashes part of each update an engine signs and sums part of its plain means.
    fn assist(&self) -> Option<Arc<dyn murmur_protocol::assist::Assist>> {
        let workers = self.workers.as_ref()?;
        Some(workers.assistant())
    }

    fn arrival(&mut self, now: Duration, from: usize, to: usize, bytes: usize) -> Duration {
        self.links.arrival(now, from, to, bytes)
    }
}
