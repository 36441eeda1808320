//! A [`Trainer`] on its own thread, driven through bounded channels.
//!
//! The node's async runtime never runs a training step: it sends a [`Command`] with a request id
//! of its choosing and later receives the [`Reply`] with the same id. Commands are carried out in
//! order. Both channels are bounded, so a slow trainer applies back-pressure instead of queueing
//! without limit.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use murmur_protocol::sign::RunId;

use super::{Eval, StepReport, Trainer};
use crate::checkpoint;
use crate::data::Dataset;

/// A request to the training thread.
#[derive(Debug)]
pub enum Command {
    /// Replace the parameters (the model a node starts from).
    Set {
        /// The new parameters, in flat order.
        params: Vec<f32>,
    },
    /// Continue from a round's mix (see [`Trainer::apply_mix`]: with an outer optimiser, its
    /// step towards the mix). Answered with [`Reply::Set`].
    Mix {
        /// The mixed model, in flat order.
        params: Vec<f32>,
    },
    /// Optionally replace the parameters, then take `steps` local steps.
    Train {
        /// Round this work belongs to (echoed in the reply).
        round: u64,
        /// New parameters (e.g. the mixed model), or `None` to continue from the current ones.
        params: Option<Vec<f32>>,
        /// Local steps to take.
        steps: usize,
    },
    /// Evaluate the current parameters on a dataset.
    Evaluate {
        /// Round (echoed).
        round: u64,
        /// The dataset (cheap to clone and send: it is shared).
        data: Dataset,
    },
    /// Write a checkpoint of parameters and optimiser state.
    Checkpoint {
        /// Round recorded in the checkpoint (and echoed).
        round: u64,
        /// The run the checkpoint belongs to.
        run: RunId,
        /// Destination file.
        path: PathBuf,
    },
}

/// The training thread's answer to one [`Command`].
#[derive(Debug)]
pub enum Reply {
    /// The parameters were replaced.
    Set,
    /// Local steps done.
    Trained {
        /// The command's round.
        round: u64,
        /// Parameters after the steps, in flat order.
        params: Vec<f32>,
        /// Steps, samples, loss and samples/s.
        report: StepReport,
    },
    /// Evaluation done.
    Evaluated {
        /// The command's round.
        round: u64,
        /// Accuracy and loss.
        eval: Eval,
    },
    /// Checkpoint written.
    Checkpointed {
        /// The command's round.
        round: u64,
        /// Where.
        path: PathBuf,
    },
    /// The command could not be carried out (wrong parameter length, I/O error).
    Failed {
        /// The command's round.
        round: u64,
        /// What went wrong.
        error: String,
    },
}

/// The training thread has stopped (it panicked, or the worker was shut down).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the training thread has stopped")]
pub struct WorkerGone;

/// Handle to a trainer running on a dedicated thread.
#[derive(Debug)]
pub struct Worker {
    commands: Option<SyncSender<(u64, Command)>>,
    replies: Receiver<(u64, Reply)>,
    thread: Option<JoinHandle<Trainer>>,
}

impl Worker {
    /// Starts `trainer` on a new thread named `murmur-train`, with channels holding at most
    /// `capacity` commands and `capacity` replies.
    pub fn spawn(trainer: Trainer, capacity: usize) -> std::io::Result<Self> {
        let (commands, inbox) = mpsc::sync_channel(capacity);
        let (outbox, replies) = mpsc::sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name("murmur-train".into())
            .spawn(move || run(trainer, inbox, outbox))?;
        Ok(Self {
            commands: Some(commands),
            replies,
            thread: Some(thread),
        })
    }

    /// Queues command `id`, blocking while the queue is full.
    pub fn send(&self, id: u64, command: Command) -> Result<(), WorkerGone> {
        let tx = self.commands.as_ref().ok_or(WorkerGone)?;
        tx.send((id, command)).map_err(|_| WorkerGone)
    }

    /// Queues command `id` if there is room; gives it back if the queue is full.
    pub fn try_send(&self, id: u64, command: Command) -> Result<(), TrySendError<(u64, Command)>> {
        match &self.commands {
            Some(tx) => tx.try_send((id, command)),
            None => Err(TrySendError::Disconnected((id, command))),
        }
    }

    /// Waits for the next reply, with the id of its command.
    pub fn recv(&self) -> Result<(u64, Reply), WorkerGone> {
        self.replies.recv().map_err(|_| WorkerGone)
    }

    /// The next reply if one is ready.
    pub fn try_recv(&self) -> Option<(u64, Reply)> {
        self.replies.try_recv().ok()
    }

    /// Stops the thread after the queued commands and returns the trainer.
    pub fn shutdown(mut self) -> Result<Trainer, WorkerGone> {
        self.commands = None;
        // Drain replies so the thread never blocks on a full reply queue while stopping.
        while self.replies.recv().is_ok() {}
        self.thread
            .take()
            .ok_or(WorkerGone)?
            .join()
            .map_err(|_| WorkerGone)
    }
}

fn run(
    mut trainer: Trainer,
    inbox: Receiver<(u64, Command)>,
    outbox: SyncSender<(u64, Reply)>,
) -> Trainer {
    while let Ok((id, command)) = inbox.recv() {
        let reply = match command {
            Command::Set { params } => match trainer.set_params(&params) {
                Ok(()) => Reply::Set,
                Err(e) => Reply::Failed {
                    round: 0,
                    error: e.to_string(),
                },
            },
            Command::Mix { params } => match trainer.apply_mix(&params) {
                Ok(()) => Reply::Set,
                Err(e) => Reply::Failed {
                    round: 0,
                    error: e.to_string(),
                },
            },
            Command::Train {
                round,
                params,
                steps,
            } => match params.map(|p| trainer.set_params(&p)).transpose() {
                Err(e) => Reply::Failed {
                    round,
                    error: e.to_string(),
                },
                Ok(_) => {
                    let report = trainer.train_steps(steps);
                    Reply::Trained {
                        round,
                        params: trainer.params().to_vec(),
                        report,
                    }
                }
            },
            Command::Evaluate { round, data } => Reply::Evaluated {
                round,
                eval: trainer.evaluate(&data),
            },
            Command::Checkpoint { round, run, path } => {
                let ckpt = checkpoint::Checkpoint::of(&trainer, run, round);
                match ckpt.save(&path) {
                    Ok(()) => Reply::Checkpointed { round, path },
                    Err(e) => Reply::Failed {
                        round,
                        error: e.to_string(),
                    },
                }
            }
        };
        if outbox.send((id, reply)).is_err() {
            break;
        }
    }
    trainer
}
