//! The heavy work of a simulation, spread over worker threads: local training jobs and model
//! evaluations.
//!
//! Each job depends only on its own input (a trainer's state, or a parameter vector), so results
//! are the same bits whatever the number of threads; they come back in input order. Threads are
//! scoped to one batch: a batch is the pending training jobs due first (at most
//! [`murmur_protocol::cluster::JOBS_PER_BATCH`]) when the event loop needs the earliest result
//! (see [`crate::simulation`]), which at scale is many jobs.

use murmur_learn::data::Dataset;
use murmur_learn::model::Arch;
use murmur_learn::train::{self, Eval, Trainer};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    map(trainers, threads, |t| {
        let report = t.train_steps(steps);
        Trained {
            samples: report.samples as u64,
            elapsed: report.elapsed,
        }
    })
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
}
