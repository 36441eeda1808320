//! The round schedule: train, sign and send, collect, screen and mix, checkpoint, next round.

use super::{Engine, InputError, Output, Pending, Phase, REPLAY_HISTORY, Rejection, screen};
use crate::sign::PeerKey;
use crate::topology::sample_peers;
use crate::wire::{self, Codec, SignedHeader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Engine {
    /// Starts the round after `self.round`, or finishes when the configured rounds are done.
    pub(super) fn start_round(&mut self) {
        if self.config.rounds.is_some_and(|r| self.round >= r) {
            self.phase = Phase::Finished;
            if self.config.checkpoint_every > 0 && self.checkpointed < self.round {
                self.checkpoint(self.round);
            }
            self.outputs.push_back(Output::Finished);
            return;
        }
        self.round += 1;
        self.phase = Phase::Training;
        self.outputs.push_back(Output::Train { round: self.round });
    }

    fn checkpoint(&mut self, round: u64) {
        self.checkpointed = round;
        self.outputs.push_back(Output::Checkpoint { round });
    }

    pub(super) fn on_trained(
        &mut self,
        now: Duration,
        round: u64,
        params: Vec<f32>,
        samples: u64,
    ) -> Result<(), InputError> {
        if !matches!(self.phase, Phase::Training) || round != self.round {
            let expected = match self.phase {
                Phase::Training => format!("round {} is being trained", self.round),
                _ => "no training was asked for".to_owned(),
            };
            return Err(InputError::UnexpectedTraining { round, expected });
        }
        if params.len() != self.dim {
            return Err(InputError::Dimension {
                expected: self.dim,
                got: params.len(),
            });
        }
        self.model = params;
        // Whatever goes out now is signed for this round.
        self.signed = self.signed.max(self.round);
        let targets = sample_peers(&self.peers.connected(), self.config.fanout, &mut self.rng);
        match self.adversary.clone() {
            None => {
                let (bytes, signed) = self.sign(&self.model, samples);
                self.send_all(&targets, &bytes, &signed);
            }
            Some(adv) => self.send_forged(&adv, &targets, samples),
        }
        let timeout = Duration::from_millis(self.config.round_timeout_ms);
        self.phase = Phase::Collecting {
            deadline: now + timeout,
        };
        Ok(())
    }

    /// Signs `params` as this node's update of the current round (see [`Engine::on_trained`],
    /// which records the round as signed first).
    pub(super) fn sign(&self, params: &[f32], samples: u64) -> (Arc<[u8]>, SignedHeader) {
        let payload = wire::encode_params(params);
        let (bytes, signed) = wire::encode_update(
            &self.identity,
            self.run,
            self.round,
            samples,
            Codec::F32Le,
            &payload,
        );
        (bytes.into(), signed)
    }

    pub(super) fn send_all(
        &mut self,
        targets: &[PeerKey],
        bytes: &Arc<[u8]>,
        signed: &SignedHeader,
    ) {
        self.last_update = Some(bytes.clone());
        for &to in targets {
            self.send(to, bytes.clone());
        }
        let ann: Arc<[u8]> = wire::encode_announcement(signed).into();
        self.broadcast(ann);
    }

    pub(super) fn send(&mut self, to: PeerKey, bytes: Arc<[u8]>) {
        self.stats.updates_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Send { to, bytes });
    }

    pub(super) fn broadcast(&mut self, bytes: Arc<[u8]>) {
        self.stats.bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Broadcast { bytes });
    }

    pub(super) fn remember(&mut self, bytes: Arc<[u8]>) {
        self.last_update = Some(bytes.clone());
        if self.sent.len() == REPLAY_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back(bytes);
    }

    pub(super) fn fresh_count(&self) -> usize {
        let floor = self.round.saturating_sub(self.config.max_staleness);
        self.pending.values().filter(|p| p.round >= floor).count()
    }

    /// Drops the received models the outlier screen flags, penalises their senders, and returns
    /// how many were dropped.
    fn screen(&mut self, received: &mut BTreeMap<PeerKey, Vec<f32>>) -> usize {
        let inputs: Vec<&[f32]> = received.values().map(Vec::as_slice).collect();
        let flagged = screen::outliers(&self.model, &inputs, self.config.outlier_factor);
        drop(inputs);
        let keys: Vec<PeerKey> = received.keys().copied().collect();
        for &i in &flagged {
            received.remove(&keys[i]);
            self.reject(keys[i], Rejection::Outlier);
        }
        flagged.len()
    }

    pub(super) fn mix(&mut self) {
        let floor = self.round.saturating_sub(self.config.max_staleness);
        let pending = std::mem::take(&mut self.pending);
        let fresh: Vec<(PeerKey, Pending)> = pending
            .into_iter()
            .filter(|(_, p)| p.round >= floor)
            .collect();
        let mut rounds: Vec<u64> = fresh.iter().map(|(_, p)| p.round).collect();
        rounds.push(self.round);
        rounds.sort_unstable();
        let median_round = rounds[rounds.len() / 2];
        let mut received: BTreeMap<PeerKey, Vec<f32>> =
            fresh.into_iter().map(|(k, p)| (k, p.params)).collect();
        let screened = self.screen(&mut received);
        let mut inputs: Vec<&[f32]> = Vec::with_capacity(received.len() + 1);
        inputs.push(&self.model);
        inputs.extend(received.values().map(Vec::as_slice));
        let n = inputs.len();
        let (clipped, skipped) = if n >= self.aggregator.min_inputs() {
            match self.aggregator.aggregate_screened(
                &self.model,
                &inputs,
                &[],
                screened,
                &mut self.rng,
                &mut self.scratch,
            ) {
                Ok(report) => (report.clipped, false),
                Err(_) => (0, true), // inputs are checked on receipt; keep the own model
            }
        } else {
            (0, true)
        };
        drop(inputs);
        if skipped {
            self.stats.skipped_mixes += 1;
        } else {
            std::mem::swap(&mut self.model, &mut self.scratch);
            self.stats.mixes += 1;
            self.stats.inputs_mixed += n as u64;
            self.stats.clipped += clipped as u64;
        }
        if self.adversary.is_some() {
            self.last_received = received;
        }
        self.outputs.push_back(Output::Mixed {
            round: self.round,
            params: self.model.clone(),
            inputs: n,
            clipped,
            skipped,
        });
        let every = self.config.checkpoint_every;
        if every > 0 && self.round >= self.checkpointed.saturating_add(every) {
            self.checkpoint(self.round);
        }
        // Catch up: a node that fell behind the peers it mixes with continues from the median
        // of their rounds (its own included), so slow nodes are not left lagging for ever; the
        // median keeps a Byzantine minority from pushing the round counter.
        self.round = self.round.max(median_round);
        self.start_round();
    }
}
