//! The queue of [`super::Workers`]: training jobs first, evaluations on the workers left.

use super::{SPIN, spin_for};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// The tasks waiting for a worker: urgent ones first (training: the event loop waits for its
/// results), then the others (evaluations) on at most `background` workers at once, so that with
/// more workers than that one is always free for the urgent ones.
pub(super) struct Queue<T> {
    tasks: Mutex<Waiting<T>>,
    ready: Condvar,
    /// Tasks pushed so far, for a worker that looks for one without the lock.
    pushes: AtomicUsize,
}

struct Waiting<T> {
    urgent: VecDeque<T>,
    later: VecDeque<T>,
    /// Tasks of `later` running.
    running_later: usize,
    /// Workers `later` may take at once.
    background: usize,
    /// Workers waiting for a task.
    idle: usize,
    /// Workers in all.
    workers: usize,
    /// No task starts while held (see [`Queue::hold`]).
    held: bool,
    closed: bool,
}

impl<T> Queue<T> {
    pub(super) fn new(background: usize, workers: usize) -> Queue<T> {
        Queue {
            tasks: Mutex::new(Waiting {
                urgent: VecDeque::new(),
                later: VecDeque::new(),
                running_later: 0,
                background,
                idle: 0,
                workers,
                held: false,
                closed: false,
            }),
            ready: Condvar::new(),
            pushes: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting<T>> {
        // Every change is one statement: a panic elsewhere leaves the queue consistent.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, task: T, urgent: bool) {
        let mut w = self.lock();
        if urgent {
            w.urgent.push_back(task);
        } else {
            w.later.push_back(task);
        }
        drop(w);
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.ready.notify_one();
    }

    /// The next task and whether it is urgent, waiting for one; `None` once closed. A task
    /// that is not urgent must be followed by [`Queue::finished_later`] when it ends.
    pub(super) fn pop(&self) -> Option<(T, bool)> {
        let mut w = self.lock();
        let mut spun = false;
        w.idle += 1;
        if w.held {
            // `Queue::hold` waits for every worker to be here.
            self.ready.notify_all();
        }
        loop {
            if !w.held
                && let Some(t) = w.urgent.pop_front()
            {
                w.idle -= 1;
                return Some((t, true));
            }
            if !w.held
                && w.running_later < w.background
                && let Some(t) = w.later.pop_front()
            {
                w.idle -= 1;
                w.running_later += 1;
                return Some((t, false));
            }
            if w.closed {
                w.idle -= 1;
                return None;
            }
            if !spun {
                // Looks for a task for a while before it sleeps (see `SPIN`).
                spun = true;
                let seen = self.pushes.load(Ordering::Relaxed);
                drop(w);
                spin_for(SPIN, || {
                    (self.pushes.load(Ordering::Relaxed) != seen).then_some(())
                });
                w = self.lock();
                continue;
            }
            w = self.ready.wait(w).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Takes a waiting urgent task off the queue for the caller to run itself: the first that
    /// `prefer` picks, else the first.
    pub(super) fn take_urgent(&self, prefer: impl Fn(&T) -> bool) -> Option<T> {
        let mut w = self.lock();
        let i = w.urgent.iter().position(prefer).unwrap_or(0);
        w.urgent.remove(i)
    }

    /// Takes the waiting urgent task `pick` picks, if one waits.
    pub(super) fn take(&self, pick: impl Fn(&T) -> bool) -> Option<T> {
        let mut w = self.lock();
        let i = w.urgent.iter().position(pick)?;
        w.urgent.remove(i)
    }

    /// Puts `task` first in the queue if a worker is waiting that no other urgent task will
    /// take; gives it back otherwise.
    pub(super) fn push_to_idle(&self, task: T) -> Result<(), T> {
        let mut w = self.lock();
        if w.idle <= w.urgent.len() {
            return Err(task);
        }
        w.urgent.push_front(task);
        drop(w);
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.ready.notify_one();
        Ok(())
    }

    /// Puts a task that is not urgent first among those (an evaluation part-way through).
    pub(super) fn push_later_first(&self, task: T) {
        self.lock().later.push_front(task);
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.ready.notify_one();
    }

    /// Takes a waiting task that is not urgent off the queue for the caller to run itself (it
    /// does not count against the workers' share).
    pub(super) fn take_later(&self) -> Option<T> {
        self.lock().later.pop_front()
    }

    /// A task that was not urgent ended: another may start.
    pub(super) fn finished_later(&self) {
        self.lock().running_later -= 1;
        self.ready.notify_all();
    }

    /// No urgent task will come: the others may take every worker.
    pub(super) fn unreserve(&self) {
        self.lock().background = usize::MAX;
        self.ready.notify_all();
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Starts no more tasks, and returns once every worker has ended the one it was running:
    /// nothing runs on the workers until [`Queue::release`]. The tasks waiting keep their places.
    pub(super) fn hold(&self) {
        let mut w = self.lock();
        w.held = true;
        while w.idle < w.workers {
            w = self.ready.wait(w).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lets the workers start tasks again after [`Queue::hold`].
    pub(super) fn release(&self) {
        self.lock().held = false;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn urgent_tasks_go_first_and_the_others_leave_a_worker_free() {
        let q = Queue::new(1, 1);
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
    fn the_caller_takes_the_task_it_waits_for_else_the_first() {
        let q = Queue::new(1, 1);
        for t in [1, 2, 3] {
            q.push(t, true);
        }
        q.push(10, false);
        assert_eq!(q.take_urgent(|&t| t == 2), Some(2), "the one waited for");
        assert_eq!(q.take_urgent(|&t| t == 7), Some(1), "else the first");
        assert_eq!(q.take_later(), Some(10));
        assert_eq!(q.take_later(), None);
        // Taken by the caller, not a worker: the background's share is untouched.
        assert_eq!(q.lock().running_later, 0);
        assert_eq!(q.pop(), Some((3, true)));
        assert_eq!(q.take_urgent(|_| true), None, "nothing waits");
    }

    #[test]
    fn a_task_goes_to_an_idle_worker_only() {
        let q = Queue::new(1, 1);
        assert_eq!(q.push_to_idle(1), Err(1), "no worker waits");
        q.lock().idle = 1;
        q.push(2, true);
        assert_eq!(
            q.push_to_idle(3),
            Err(3),
            "the one waiting will take the job"
        );
        q.lock().idle = 2;
        assert_eq!(q.push_to_idle(4), Ok(()));
        assert_eq!(
            q.take(|&t| t == 4),
            Some(4),
            "first in the queue, taken back"
        );
        assert_eq!(q.take(|&t| t == 4), None);
    }

    #[test]
    fn held_workers_start_no_task_until_released() {
        let q = Arc::new(Queue::new(1, 1));
        // `hold` returns once the worker waits for a task.
        let worker = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.pop())
        };
        q.hold();
        assert_eq!(q.lock().idle, 1, "held while the worker was away");
        // The worker, woken by a task, leaves it waiting while held.
        q.push(1, true);
        q.push(2, false);
        q.release();
        assert_eq!(
            worker.join().unwrap(),
            Some((1, true)),
            "released: it starts"
        );
        // This thread as the worker now, waiting for a task.
        q.lock().idle = 1;
        q.hold();
        q.lock().idle = 0;
        q.close();
        assert_eq!(q.pop(), None, "held: the waiting task does not start");
        q.release();
        assert_eq!(q.pop(), Some((2, false)));
    }

    #[test]
    fn an_evaluation_part_way_through_goes_on_after_the_urgent_tasks_before_the_others() {
        let q = Queue::new(1, 1);
        q.push(1, false);
        q.push(2, false);
        assert_eq!(q.pop(), Some((1, false)));
        // Its first part done, a training job came meanwhile.
        q.finished_later();
        q.push(10, true);
        q.push_later_first(1);
        assert_eq!(q.pop(), Some((10, true)), "the job first");
        assert_eq!(q.pop(), Some((1, false)), "then the rest of the evaluation");
        q.finished_later();
        assert_eq!(q.pop(), Some((2, false)));
    }

    #[test]
    fn once_unreserved_the_background_takes_every_worker() {
        let q = Queue::new(1, 1);
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
