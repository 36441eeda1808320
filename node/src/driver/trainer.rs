//! The bridge between the async driver and the training thread.
//!
//! The trainer runs on its own thread ([`Worker`]); a second plain thread, the bridge, owns the
//! worker, takes one [`Command`] at a time from a bounded channel, waits for its [`Reply`] and
//! forwards it into a bounded tokio channel the driver awaits. Every command carries a request
//! id that its reply echoes. Training therefore never runs on the async runtime, and the driver
//! never blocks: it queues with `try_send` and knows how many commands are outstanding.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc as tmpsc;

use murmur_learn::train::{Command, Reply, Trainer, Worker};

/// Commands the driver may have outstanding at once.
pub const CAPACITY: usize = 16;

/// The CPU the training threads of one process take turns on: a bridge holds it from handing
/// a command to its worker until the reply, so the Sybil identities of a red-team process
/// (`node.attack-identities`) train one at a time, as on one core. A lone node never waits.
#[derive(Debug, Clone, Default)]
pub struct Cpu(Arc<Mutex<()>>);

/// Handle to the trainer thread, from the driver's side.
#[derive(Debug)]
pub struct Bridge {
    commands: Option<SyncSender<(u64, Command)>>,
    /// Replies with their command's id, in command order.
    pub replies: tmpsc::Receiver<(u64, Reply)>,
    thread: Option<JoinHandle<()>>,
}

/// The training thread has stopped or its queue is full.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The trainer or bridge thread has stopped.
    #[error("the training thread has stopped")]
    Gone,
    /// More than `CAPACITY` commands outstanding (a driver bug).
    #[error("the training queue is full")]
    Full,
    /// The threads could not be started.
    #[error("starting the training thread: {0}")]
    Spawn(std::io::Error),
}

impl Bridge {
    /// Starts the worker and the bridge threads; the worker runs a command while it holds
    /// `cpu`.
    pub fn spawn(trainer: Trainer, cpu: Cpu) -> Result<Self, BridgeError> {
        let worker = Worker::spawn(trainer, 1).map_err(BridgeError::Spawn)?;
        let (commands, inbox) = mpsc::sync_channel::<(u64, Command)>(CAPACITY);
        let (outbox, replies) = tmpsc::channel(CAPACITY);
        let thread = std::thread::Builder::new()
            .name("murmur-bridge".into())
            .spawn(move || {
                while let Ok((id, command)) = inbox.recv() {
                    // A poisoned lock only means another identity's bridge panicked; the turn
                    // is still this one's.
                    let turn = cpu.0.lock().unwrap_or_else(|e| e.into_inner());
                    if worker.send(id, command).is_err() {
                        break;
                    }
                    let Ok(reply) = worker.recv() else { break };
                    drop(turn);
                    if outbox.blocking_send(reply).is_err() {
                        break;
                    }
                }
                let _ = worker.shutdown();
            })
            .map_err(BridgeError::Spawn)?;
        Ok(Self {
            commands: Some(commands),
            replies,
            thread: Some(thread),
        })
    }

    /// Queues command `id` without blocking.
    pub fn send(&self, id: u64, command: Command) -> Result<(), BridgeError> {
        let tx = self.commands.as_ref().ok_or(BridgeError::Gone)?;
        tx.try_send((id, command)).map_err(|e| match e {
            TrySendError::Full(_) => BridgeError::Full,
            TrySendError::Disconnected(_) => BridgeError::Gone,
        })
    }

    /// Stops taking commands; the threads finish the queued ones and exit. Blocks until they
    /// have (call from a blocking context or after the last reply was received).
    pub fn close(mut self) {
        self.commands = None;
        self.replies.close();
        while self.replies.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
