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
use murmur_learn::train::{self, Eval, Trainer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// Work handed to [`Workers`]. A trainer goes with its job and comes back with the result.
enum Task {
    Train {
        node: usize,
        trainer: Box<Trainer>,
        steps: usize,
    },
    Evaluate {
        tag: u64,
        model: Vec<f32>,
        on: Arc<EvalSet>,
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
    done: mpsc::Receiver<Result<Done, String>>,
    handles: Vec<JoinHandle<()>>,
}

/// The tasks waiting for a worker: urgent ones first (training: the event loop waits for its
/// results), then the others (evaluations) on at most `background` workers at once, so that with
/// more workers than that one is always free for the urgent ones.
struct Queue<T> {
    tasks: Mutex<Waiting<T>>,
    ready: Condvar,
}

struct Waiting<T> {
    urgent: VecDeque<T>,
    later: VecDeque<T>,
    /// Tasks of `later` running.
    running_later: usize,
    /// Workers `later` may take at once.
    background: usize,
    closed: bool,
}

impl<T> Queue<T> {
    fn new(background: usize) -> Queue<T> {
        Queue {
            tasks: Mutex::new(Waiting {
                urgent: VecDeque::new(),
                later: VecDeque::new(),
                running_later: 0,
                background,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting<T>> {
        // Every change is one statement: a panic elsewhere leaves the queue consistent.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, task: T, urgent: bool) {
        let mut w = self.lock();
        if urgent {
            w.urgent.push_back(task);
        } else {
            w.later.push_back(task);
        }
        drop(w);
        self.ready.notify_one();
    }

    /// The next task and whether it is urgent, waiting for one; `None` once closed. A task
    /// that is not urgent must be followed by [`Queue::finished_later`] when it ends.
    fn pop(&self) -> Option<(T, bool)> {
        let mut w = self.lock();
        loop {
            if let Some(t) = w.urgent.pop_front() {
                return Some((t, true));
            }
            if w.running_later < w.background
                && let Some(t) = w.later.pop_front()
            {
                w.running_later += 1;
                return Some((t, false));
            }
            if w.closed {
                return None;
            }
            w = self.ready.wait(w).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A task that was not urgent ended: another may start.
    fn finished_later(&self) {
        self.lock().running_later -= 1;
        self.ready.notify_all();
    }

    /// No urgent task will come: the others may take every worker.
    fn unreserve(&self) {
        self.lock().background = usize::MAX;
        self.ready.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.handles.len())
            .finish()
    }
}

/// Runs one task; a panic in it becomes the message of what panicked.
fn work(task: Task) -> Result<Done, String> {
    let what = match &task {
        Task::Train { node, .. } => format!("training job of node {node}"),
        Task::Evaluate { .. } => "evaluation".to_owned(),
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || match task {
        Task::Train {
            node,
            mut trainer,
            steps,
        } => {
            let trained = trained(trainer.train_steps(steps));
            Done::Trained {
                node,
                trainer,
                trained,
            }
        }
        Task::Evaluate { tag, model, on } => Done::Evaluated {
            tag,
            eval: train::evaluate(&on.arch, &model, &on.data, &on.device),
        },
    }))
    .map_err(|e| format!("{what} panicked: {}", panic_message(&*e)))
}

impl Workers {
    /// `threads` workers, waiting for tasks.
    pub(crate) fn new(threads: usize) -> Workers {
        // Evaluations on all workers but one.
        let queue = Arc::new(Queue::new(threads.saturating_sub(1).max(1)));
        let (report, done) = mpsc::channel();
        let handles = (0..threads)
            .map(|k| {
                let queue = Arc::clone(&queue);
                let report = report.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{k}"))
                    .spawn(move || {
                        // Until the run closes the queue.
                        while let Some((task, urgent)) = queue.pop() {
                            let done = work(task);
                            if !urgent {
                                queue.finished_later();
                            }
                            if report.send(done).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("a worker thread starts")
            })
            .collect();
        Workers {
            queue,
            done,
            handles,
        }
    }

    fn send(&self, task: Task) {
        let urgent = matches!(task, Task::Train { .. });
        self.queue.push(task, urgent);
    }

    /// Hands `trainer` to a worker to take `steps` steps; it comes back through
    /// [`Workers::next`].
    pub(crate) fn submit(&self, node: usize, trainer: Box<Trainer>, steps: usize) {
        self.send(Task::Train {
            node,
            trainer,
            steps,
        });
    }

    /// No more training jobs will come (the run is over): evaluations may take every worker
    /// rather than all but one, so the last evaluation point is not left to one core.
    pub(crate) fn no_more_training(&self) {
        self.queue.unreserve();
    }

    /// Hands `model` to a worker to evaluate on `on`; the result comes back with `tag`.
    pub(crate) fn evaluate(&self, tag: u64, model: Vec<f32>, on: Arc<EvalSet>) {
        self.send(Task::Evaluate { tag, model, on });
    }

    /// The next task done, waiting for one; a panic in the task is raised here.
    pub(crate) fn next(&self) -> Done {
        let done = self.done.recv().expect("the workers run until dropped");
        done.unwrap_or_else(|message| panic!("{message}"))
    }

    /// A task done, if one is.
    pub(crate) fn try_next(&self) -> Option<Done> {
        let done = self.done.try_recv().ok()?;
        Some(done.unwrap_or_else(|message| panic!("{message}")))
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
    fn urgent_tasks_go_first_and_the_others_leave_a_worker_free() {
        let q = Queue::new(1);
        q.push(1, false);
        q.push(2, false);
        q.push(10, true);
        assert_eq!(q.pop(), Some((10, true)), "urgent first");
        assert_eq!(q.pop(), Some((1, false)));
        // One task of the background runs: the next waits for it, an urgent one does not.
        q.push(11, true);
        assert_eq!(q.pop(), Some((11, true)));
        let waiting = q.lock().later.len();
        assert_eq!(waiting, 1, "the second waits while the first runs");
        q.finished_later();
        assert_eq!(q.pop(), Some((2, false)));
        q.finished_later();
        q.close();
        assert_eq!(q.pop(), None, "closed and empty");
    }

    #[test]
    fn once_unreserved_the_background_takes_every_worker() {
        let q = Queue::new(1);
        for t in 1..=3 {
            q.push(t, false);
        }
        assert_eq!(q.pop(), Some((1, false)));
        assert_eq!(q.lock().later.len(), 2, "one at a time while reserved");
        q.unreserve();
        assert_eq!(q.pop(), Some((2, false)), "a second one beside the first");
        assert_eq!(q.pop(), Some((3, false)));
        assert_eq!(q.lock().running_later, 3);
    }
}
