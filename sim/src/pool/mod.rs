//! The heavy work of a simulation, spread over worker threads: local training jobs and model
//! evaluations.
//!
//! Each job depends only on its own input (a trainer's state, or a parameter vector), so results
//! are the same bits whatever the number of threads. [`map`] runs a batch on threads scoped to
//! it and returns the results in input order (the synchronous reference's rounds, and
//! evaluations without worker threads). [`Workers`] keeps threads for the whole run that train and evaluate in the
//! background: the event loop hands a job over as soon as the cluster queues it, and an
//! evaluation point's models as soon as it is due, and goes on with other nodes' events until it
//! needs a result.

use murmur_learn::data::Dataset;
use murmur_learn::model::Arch;
use murmur_learn::train::{self, Eval, Evaluation, Trainer};
use murmur_protocol::assist;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

mod queue;
use queue::Queue;

/// What one local training job produced. The trained parameters stay in the trainer until the
/// job's result is delivered (nothing else touches them in between), so a batch of N jobs does
/// not hold N extra copies of the model.
#[derive(Debug)]
pub(crate) struct Trained {
    /// Samples processed.
    pub samples: u64,
    /// Wall time of the job.
    pub elapsed: Duration,
}

/// Runs `f` over `items` on up to `threads` threads, results in input order.
fn map<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<Mutex<(Option<T>, Option<R>)>> = items
        .into_iter()
        .map(|t| Mutex::new((Some(t), None)))
        .collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            let item = slot
                .lock()
                .expect("no panics")
                .0
                .take()
                .expect("taken once");
            let r = f(item);
            slot.lock().expect("no panics").1 = Some(r);
        }
    };
    // The calling thread is one of the workers: it would only wait otherwise, and its caches
    // are warm.
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().expect("no panics").1.expect("every job ran"))
        .collect()
}

/// Takes `steps` local steps on each trainer, in parallel.
pub(crate) fn train(trainers: Vec<&mut Trainer>, steps: usize, threads: usize) -> Vec<Trained> {
    map(trainers, threads, |t| trained(t.train_steps(steps)))
}

/// How long a thread with nothing to do looks for work (an idle worker for a task, the event
/// loop for a result) before it sleeps until some comes: a thread put to sleep is woken late (on
/// a virtual machine, a halted virtual core is slow to wake), and most results come within a
/// job's few hundred microseconds.
const SPIN: Duration = Duration::from_micros(500);

/// Test samples a worker evaluates before it looks for a training job again: with 128, a part
/// of the MNIST MLP takes about 0.1 ms. A training job that comes while a worker evaluates
/// waits at most that long, rather than for the whole test set (about 8 ms for 10,000
/// samples): in a dense-gossip run of one step per job, the event loop otherwise ran the job
/// itself and did nothing else meanwhile.
const EVAL_PART: usize = 128;

/// Calls `poll` until it gives something or `limit` has passed.
fn spin_for<T>(limit: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(t) = poll() {
            return Some(t);
        }
        if start.elapsed() >= limit {
            return None;
        }
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }
}

/// Work handed to [`Workers`]. A trainer goes with its job and comes back with the result.
enum Task {
    Train {
        node: usize,
        trainer: Box<Trainer>,
        steps: usize,
        /// The model to start from, if the trainer does not hold it: read by the first step
        /// where it lies ([`Trainer::train_steps_from`]).
        start: Option<Arc<Vec<f32>>>,
    },
    /// An evaluation, taken [`EVAL_PART`] samples at a time on a worker.
    Evaluate {
        tag: u64,
        model: Vec<f32>,
        on: Arc<EvalSet>,
        so_far: Box<Evaluation>,
    },
    /// Part of a computation of the event loop's (see [`Assistant`]).
    Assist {
        id: u64,
        job: assist::Job,
        done: Arc<AtomicU8>,
    },
}

/// What evaluations in the background run on.
#[derive(Debug)]
pub(crate) struct EvalSet {
    pub arch: Arch,
    pub data: Dataset,
    pub device: burn::tensor::Device,
}

/// Work done by [`Workers`].
pub(crate) enum Done {
    /// `node`'s trainer, back from its job.
    Trained {
        node: usize,
        trainer: Box<Trainer>,
        trained: Trained,
    },
    /// The evaluation handed over with `tag`.
    Evaluated { tag: u64, eval: Eval },
}

/// Worker threads that train and evaluate for the whole run (see the module documentation).
pub(crate) struct Workers {
    queue: Arc<Queue<Task>>,
    assistant: Arc<Assistant>,
    done: mpsc::Receiver<Result<Done, String>>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.handles.len())
            .finish()
    }
}

/// What running a task gave.
enum Ran {
    Done(Done),
    /// An evaluation with samples still to take.
    Again(Task),
}

/// Runs one task, an evaluation up to `part` samples of it; a panic in it becomes the message
/// of what panicked.
fn work(task: Task, part: usize) -> Result<Ran, String> {
    let what = match &task {
        Task::Train { node, .. } => format!("training job of node {node}"),
        Task::Evaluate { .. } => "evaluation".to_owned(),
        Task::Assist { .. } => unreachable!("run by `assisted`"),
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || match task {
        Task::Train {
            node,
            mut trainer,
            steps,
            start,
        } => {
            let trained = train_job(&mut trainer, start.as_deref().map(Vec::as_slice), steps);
            // Let go before the trainer goes back: the engine then takes its mix back whole.
            drop(start);
            Ran::Done(Done::Trained {
                node,
                trainer,
                trained,
            })
        }
        Task::Evaluate {
            tag,
            model,
            on,
            mut so_far,
        } => match so_far.part(&on.arch, &model, &on.data, &on.device, part) {
            Some(eval) => Ran::Done(Done::Evaluated { tag, eval }),
            None => Ran::Again(Task::Evaluate {
                tag,
                model,
                on,
                so_far,
            }),
        },
        Task::Assist { .. } => unreachable!("run by `assisted`"),
    }))
    .map_err(|e| format!("{what} panicked: {}", panic_message(&*e)))
}

impl Workers {
    /// Workers for `threads` threads in all: the event loop's own thread is one of them (it
    /// runs waiting tasks itself rather than wait for their results, see [`Workers::help`]), so
    /// `threads - 1` are spawned (at least one). With as many threads as cores, no thread waits
    /// for a core: on a machine of two virtual cores, a third thread, woken for each job, took
    /// the event loop's core from it.
    pub(crate) fn new(threads: usize) -> Workers {
        let spawned = threads.saturating_sub(1).max(1);
        // Evaluations on all workers but one.
        let queue = Arc::new(Queue::new(spawned.saturating_sub(1).max(1), spawned));
        let (report, done) = mpsc::channel();
        let handles = (0..spawned)
            .map(|k| {
                let queue = Arc::clone(&queue);
                let report = report.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{k}"))
                    .spawn(move || {
                        // Until the run closes the queue.
                        while let Some((task, urgent)) = queue.pop() {
                            let task = match task {
                                Task::Assist { job, done, .. } => {
                                    assisted(job, &done);
                                    continue;
                                }
                                task => task,
                            };
                            let done = work(task, EVAL_PART);
                            if !urgent {
                                queue.finished_later();
                            }
                            let done = match done {
                                Ok(Ran::Again(task)) => {
                                    // The rest of the evaluation goes on next, after any
                                    // training job that came meanwhile.
                                    queue.push_later_first(task);
                                    continue;
                                }
                                Ok(Ran::Done(done)) => Ok(done),
                                Err(message) => Err(message),
                            };
                            if report.send(done).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("a worker thread starts")
            })
            .collect();
        Workers {
            assistant: Arc::new(Assistant {
                queue: Arc::clone(&queue),
                next: AtomicU64::new(0),
            }),
            queue,
            done,
            handles,
        }
    }

    fn send(&self, task: Task) {
        let urgent = matches!(task, Task::Train { .. });
        self.queue.push(task, urgent);
    }

    /// Hands `trainer` to a worker to take `steps` steps, from `start` if given (a model the
    /// trainer does not hold, read where it lies); it comes back through [`Workers::next`].
    pub(crate) fn submit(
        &self,
        node: usize,
        trainer: Box<Trainer>,
        steps: usize,
        start: Option<Arc<Vec<f32>>>,
    ) {
        self.send(Task::Train {
            node,
            trainer,
            steps,
            start,
        });
    }

    /// What lends the workers to the event loop's own computations.
    pub(crate) fn assistant(&self) -> Arc<Assistant> {
        Arc::clone(&self.assistant)
    }

    /// Lets every worker end the task it runs, then starts none until [`Workers::release`]:
    /// while held, the workers use no core (the bench times its baselines then).
    pub(crate) fn hold(&self) {
        self.queue.hold();
    }

    /// Ends [`Workers::hold`].
    pub(crate) fn release(&self) {
        self.queue.release();
    }

    /// No more training jobs will come (the run is over): evaluations may take every worker
    /// rather than all but one, so the last evaluation point is not left to one core.
    pub(crate) fn no_more_training(&self) {
        self.queue.unreserve();
    }

    /// Hands `model` to a worker to evaluate on `on`; the result comes back with `tag`.
    pub(crate) fn evaluate(&self, tag: u64, model: Vec<f32>, on: Arc<EvalSet>) {
        self.send(Task::Evaluate {
            tag,
            model,
            on,
            so_far: Box::default(),
        });
    }

    /// The next task done, waiting for one; a panic in the task is raised here.
    pub(crate) fn next(&self) -> Done {
        let done = self.done.recv().expect("the workers run until dropped");
        done.unwrap_or_else(|message| panic!("{message}"))
    }

    /// The next task done, looking for one for a while (see [`SPIN`]) before it sleeps until one
    /// is.
    pub(crate) fn next_soon(&self) -> Done {
        spin_for(SPIN, || self.try_next()).unwrap_or_else(|| self.next())
    }

    /// A task done, if one is.
    pub(crate) fn try_next(&self) -> Option<Done> {
        let done = self.done.try_recv().ok()?;
        Some(done.unwrap_or_else(|message| panic!("{message}")))
    }

    /// Runs a task no worker has started on the calling thread, which would otherwise wait for
    /// one: a training job (`node`'s own if it waits, else the first), or, with `evaluations`,
    /// an evaluation when no job waits. `None` if no such task waits. Every task depends only
    /// on its own input, so where it runs changes no result.
    pub(crate) fn help(&self, node: Option<usize>, evaluations: bool) -> Option<Done> {
        let task = self
            .queue
            .take_urgent(|t| matches!(t, Task::Train { node: n, .. } if Some(*n) == node))
            .or_else(|| evaluations.then(|| self.queue.take_later()).flatten())?;
        if let Task::Assist { job, done, .. } = task {
            // Not left waiting by `Assistant::join`, which takes back its own.
            assisted(job, &done);
            return self.help(node, evaluations);
        }
        // An evaluation is taken whole here: the caller waits for evaluations.
        match work(task, usize::MAX).unwrap_or_else(|message| panic!("{message}")) {
            Ran::Done(done) => Some(done),
            Ran::Again(_) => unreachable!("every sample in one part"),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.queue.close();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Lends an idle worker to the event loop for part of a computation it is in the middle of
/// (hashing an update it signs, summing a plain mean: see [`murmur_protocol::assist`]).
pub(crate) struct Assistant {
    queue: Arc<Queue<Task>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assistant").finish_non_exhaustive()
    }
}

/// States of an assisted job's flag.
const RUNNING: u8 = 0;
const RAN: u8 = 1;
const PANICKED: u8 = 2;

/// Runs an assisted job on a worker, then says so in `done` (the job, and what it holds, are
/// dropped first).
fn assisted(job: assist::Job, done: &AtomicU8) {
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_ok();
    done.store(if ran { RAN } else { PANICKED }, Ordering::Release);
}

impl assist::Assist for Assistant {
    fn join(&self, job: assist::Job, here: &mut dyn FnMut()) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let done = Arc::new(AtomicU8::new(RUNNING));
        let task = Task::Assist {
            id,
            job,
            done: Arc::clone(&done),
        };
        if let Err(task) = self.queue.push_to_idle(task) {
            // Every worker is busy: all of it here.
            here();
            if let Task::Assist { job, .. } = task {
                job();
            }
            return;
        }
        here();
        // Not started yet (a worker that slept is slow to wake): taken back and run here.
        if let Some(Task::Assist { job, .. }) = self
            .queue
            .take(|t| matches!(t, Task::Assist { id: i, .. } if *i == id))
        {
            job();
            return;
        }
        // Started: no longer than `here` took, as the parts are even.
        loop {
            match done.load(Ordering::Acquire) {
                RUNNING => std::hint::spin_loop(),
                RAN => return,
                _ => panic!("a worker's part of the event loop's computation panicked"),
            }
        }
    }
}

/// One training job of `steps` steps, from `start` if the trainer does not hold its model
/// (read where it lies: [`Trainer::train_steps_from`]).
pub(crate) fn train_job(trainer: &mut Trainer, start: Option<&[f32]>, steps: usize) -> Trained {
    trained(match start {
        Some(start) => trainer
            .train_steps_from(start, steps)
            .expect("the engine keeps the model's dimension"),
        None => trainer.train_steps(steps),
    })
}

fn trained(report: murmur_learn::train::StepReport) -> Trained {
    Trained {
        samples: report.samples as u64,
        elapsed: report.elapsed,
    }
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Evaluates each parameter vector on `data`, in parallel (forward only, on the CPU backend).
pub(crate) fn evaluate(
    arch: &Arch,
    models: Vec<&[f32]>,
    data: &Dataset,
    device: &burn::tensor::Device,
    threads: usize,
) -> Vec<Eval> {
    map(models, threads, |m| train::evaluate(arch, m, data, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_input_order_for_any_thread_count() {
        let items: Vec<u64> = (0..37).collect();
        let one = map(items.clone(), 1, |x| x * x);
        for threads in [2, 3, 8, 64] {
            assert_eq!(map(items.clone(), threads, |x| x * x), one);
        }
        assert!(map(Vec::<u64>::new(), 4, |x| x).is_empty());
    }

    #[test]
    fn a_digest_hashed_with_a_worker_is_blake3s() {
        let w = Workers::new(2);
        let assistant = w.assistant();
        let bytes: Arc<[u8]> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
        // Whether the worker takes its part, is busy, or is taken back from: the same digest.
        for _ in 0..200 {
            let got = assist::digest(&bytes, 3, Some(&*assistant));
            assert_eq!(got, blake3::hash(&bytes[3..]));
            assert_eq!(
                Arc::strong_count(&bytes),
                1,
                "the worker's share is dropped"
            );
        }
    }

    #[test]
    fn spinning_stops_at_what_comes_or_at_the_limit() {
        let mut calls = 0;
        let got = spin_for(Duration::from_secs(60), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(
            got,
            Some(3),
            "stops at the third call, well before the limit"
        );
        assert_eq!(
            spin_for(Duration::ZERO, || None::<()>),
            None,
            "gives up at the limit"
        );
    }

    #[test]
    fn the_event_loop_is_one_of_the_threads() {
        for (threads, spawned) in [(2, 1), (3, 2), (8, 7)] {
            let w = Workers::new(threads);
            assert_eq!(w.handles.len(), spawned, "{threads} threads");
        }
    }

    #[test]
    fn an_evaluation_on_a_worker_in_parts_gives_the_figures_of_one_taken_whole() {
        use murmur_learn::data::InputShape;
        use murmur_learn::model::Spec;
        let (width, classes, n) = (50, 4, 3 * EVAL_PART + 17);
        let features: Vec<f32> = (0..n * width)
            .map(|i| {
                if i % 5 == 0 {
                    (i % 97) as f32 / 97.0
                } else {
                    0.0
                }
            })
            .collect();
        let labels = (0..n).map(|i| (i % classes) as u32).collect();
        let data = Dataset::new(features, labels, InputShape::tabular(width), classes);
        let arch = Arch::new(&Spec::Mlp { hidden: vec![16] }, data.shape(), classes).unwrap();
        let device = burn::tensor::Device::flex();
        let bits = |e: &Eval| (e.samples, e.accuracy.to_bits(), e.loss.to_bits());
        let on = Arc::new(EvalSet { arch, data, device });
        let w = Workers::new(2);
        for seed in 0..4 {
            let model = on.arch.init(seed);
            let whole = train::evaluate(&on.arch, &model, &on.data, &on.device);
            w.evaluate(seed, model, Arc::clone(&on));
            // On the worker a part at a time, or here whole if the worker has not started it.
            let done = if seed % 2 == 0 {
                w.next()
            } else {
                w.help(None, true).unwrap_or_else(|| w.next())
            };
            let Done::Evaluated { tag, eval } = done else {
                panic!("an evaluation was handed over")
            };
            assert_eq!(tag, seed);
            assert_eq!(bits(&eval), bits(&whole), "model {seed}");
        }
    }
}
