//! The serving step of a Byzantine engine. What goes out is planned by [`crate::attack`]; the
//! protocol's own signing and framing carry it, so only what a real attacker could send is sent.
//!
//! Models move by pull, so an attacker's influence is what it answers when an honest node draws
//! it: each round it plans what to serve ([`Engine::plan_round`]), and answers each fetch with
//! that, or with a model forged for the asker (dissensus, and the two sides of an equivocation).
//! With [`Adversary::push`] it also pushes its forgery at every connected peer, unasked.

use super::{Adversary, Engine};
use crate::attack::{self, Attack, Plan};
use crate::sign::PeerKey;
use std::sync::Arc;

/// What an attacker serves this round.
#[derive(Debug, Clone, Default)]
pub(super) enum Menu {
    /// Nothing planned yet: serve the last update.
    #[default]
    Nothing,
    /// The same bytes to everyone.
    One(Arc<[u8]>),
    /// Two conflicting updates for one round, each to half of the askers.
    Two(Arc<[u8]>, Arc<[u8]>),
    /// A model forged for each asker (dissensus), signed with this sample count.
    PerAsker { samples: u64 },
}

impl Engine {
    /// The run's size and Byzantine count as the attacker believes them: the configured values,
    /// or the peers it is connected to plus itself, and 1.
    pub(super) fn believed_size(&self, adv: &Adversary) -> (usize, usize) {
        let n = adv.n.unwrap_or_else(|| self.peers.connected().len() + 1);
        (n, adv.f.unwrap_or(1))
    }

    /// A Byzantine node's plan for the round just trained. It sees what a real attacker sees:
    /// the models it mixed last round (those its drawn peers served it).
    pub(super) fn plan_round(&mut self, adv: &Adversary, samples: u64) {
        self.menu = if let Attack::Dissensus { .. } = adv.attack {
            // Each asker gets its own forgery for the round: nothing is announced, since any
            // announcement would prove the equivocation to every asker.
            let (bytes, _) = self.sign(&self.model, samples);
            self.remember(bytes);
            Menu::PerAsker { samples }
        } else {
            let (n, f) = self.believed_size(adv);
            let honest: Vec<&[f32]> = self.last_received.values().map(Vec::as_slice).collect();
            let view = attack::View {
                own: &self.model,
                honest: &honest,
                reference: Some(&self.reference)
                    .filter(|r| !r.is_empty())
                    .map(Vec::as_slice),
                n,
                f,
                victim: None,
            };
            match adv.attack.plan(&view, &mut self.rng) {
                Plan::Send(v) => {
                    let (bytes, signed) = self.sign(&v, samples);
                    self.announce(&signed);
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
                Plan::Honest => {
                    let (bytes, signed) = self.sign(&self.model, samples);
                    self.announce(&signed);
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
                Plan::Replay { lag } => {
                    let old = usize::try_from(lag)
                        .ok()
                        .and_then(|lag| self.sent.len().checked_sub(lag))
                        .and_then(|i| self.sent.get(i).cloned());
                    let (fresh, _) = self.sign(&self.model, samples);
                    self.remember(fresh.clone());
                    Menu::One(old.unwrap_or(fresh))
                }
                Plan::Equivocate(a, b) => {
                    let (a, signed_a) = self.sign(&a, samples);
                    let (b, _) = self.sign(&b, samples);
                    self.announce(&signed_a);
                    self.remember(a.clone());
                    Menu::Two(a, b)
                }
                Plan::Stale => {
                    let copy = self.last_received.values().next().cloned();
                    let (bytes, _) = self.sign(copy.as_deref().unwrap_or(&self.model), samples);
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
            }
        };
        if adv.push {
            for to in self.peers.connected() {
                if let Some(bytes) = self.forged_for(adv, to) {
                    self.push(to, bytes);
                }
            }
        }
    }

    /// What the attacker serves `to` this round.
    pub(super) fn forged_for(&mut self, adv: &Adversary, to: PeerKey) -> Option<Arc<[u8]>> {
        match self.menu.clone() {
            Menu::Nothing => self.last_update.clone(),
            Menu::One(bytes) => Some(bytes),
            // The two halves go to the askers by the parity of their key, so both are seen.
            Menu::Two(a, b) => Some(if to.0[0].is_multiple_of(2) { a } else { b }),
            Menu::PerAsker { samples } => Some(self.dissensus_for(adv, to, samples)),
        }
    }

    /// Dissensus (He, Karimireddy and Jaggi, 2022) aimed at the asker: the victim's model is the
    /// last one it served this attacker, its good neighbours are the other models the attacker
    /// mixed, and the weights are those of a node that mixes `wait_for + 1` models uniformly.
    fn dissensus_for(&mut self, adv: &Adversary, to: PeerKey, samples: u64) -> Arc<[u8]> {
        let (n, f) = self.believed_size(adv);
        let w = 1.0 / (self.config.wait_for as f64 + 1.0);
        let victim_model = self.last_received.get(&to).cloned();
        let good: Vec<&[f32]> = self
            .last_received
            .iter()
            .filter(|(k, _)| **k != to)
            .map(|(_, v)| v.as_slice())
            .collect();
        let weights = vec![w; good.len()];
        let victim = victim_model.as_deref().map(|model| attack::Victim {
            model,
            good: &good,
            good_weights: &weights,
            byzantine_weight: w,
        });
        let view = attack::View {
            own: &self.model,
            honest: &good,
            reference: Some(&self.reference)
                .filter(|r| !r.is_empty())
                .map(Vec::as_slice),
            n,
            f,
            victim,
        };
        let forged = match adv.attack.plan(&view, &mut self.rng) {
            Plan::Send(v) => v,
            _ => self.model.clone(),
        };
        self.sign(&forged, samples).0
    }
}
