//! The sending step of a Byzantine engine. What goes out is planned by [`crate::attack`]; the
//! protocol's own signing and framing carry it, so only what a real attacker could send is sent.

use super::{Adversary, Engine};
use crate::attack::{self, Attack, Plan};
use crate::sign::PeerKey;
use crate::wire;
use std::sync::Arc;

impl Engine {
    /// The run's size and Byzantine count as the attacker believes them: the configured values,
    /// or the peers it is connected to plus itself, and 1.
    pub(super) fn believed_size(&self, adv: &Adversary) -> (usize, usize) {
        let n = adv.n.unwrap_or_else(|| self.peers.connected().len() + 1);
        (n, adv.f.unwrap_or(1))
    }

    /// A Byzantine node's sending step: the attack decides what goes out; the protocol's own
    /// signing and framing are used, so only what a real attacker could send is sent. It sees
    /// what a real attacker sees: the models its peers sent it last round.
    pub(super) fn send_forged(&mut self, adv: &Adversary, targets: &[PeerKey], samples: u64) {
        if let Attack::Dissensus { .. } = adv.attack {
            return self.send_dissensus(adv, targets, samples);
        }
        let (n, f) = self.believed_size(adv);
        let honest: Vec<&[f32]> = self.last_received.values().map(Vec::as_slice).collect();
        let view = attack::View {
            own: &self.model,
            honest: &honest,
            n,
            f,
            victim: None,
        };
        let plan = adv.attack.plan(&view, &mut self.rng);
        let bytes = match plan {
            Plan::Send(v) => self.sign(&v, samples).0,
            Plan::Honest => {
                let (bytes, signed) = self.sign(&self.model, samples);
                self.send_all(targets, &bytes, &signed);
                return self.remember(bytes);
            }
            Plan::Replay { lag } => {
                let old = usize::try_from(lag)
                    .ok()
                    .and_then(|lag| self.sent.len().checked_sub(lag))
                    .and_then(|i| self.sent.get(i).cloned());
                let (fresh, _) = self.sign(&self.model, samples);
                self.remember(fresh.clone());
                let bytes = old.unwrap_or(fresh);
                for &to in targets {
                    self.send(to, bytes.clone());
                }
                return;
            }
            Plan::Equivocate(a, b) => {
                let (a, signed_a) = self.sign(&a, samples);
                let (b, _) = self.sign(&b, samples);
                for (i, &to) in targets.iter().enumerate() {
                    self.send(to, if i % 2 == 0 { a.clone() } else { b.clone() });
                }
                let ann: Arc<[u8]> = wire::encode_announcement(&signed_a).into();
                self.broadcast(ann);
                return self.remember(a);
            }
            Plan::Stale => {
                let copy = self.last_received.values().next().cloned();
                self.sign(copy.as_deref().unwrap_or(&self.model), samples).0
            }
        };
        for &to in targets {
            self.send(to, bytes.clone());
        }
        self.remember(bytes);
    }

    /// Dissensus (He, Karimireddy and Jaggi, 2022) is aimed at each target separately: the
    /// victim's model is its last update, its good neighbours are the other models received, and
    /// the weights are those of a node that mixes `wait_for + 1` models uniformly.
    fn send_dissensus(&mut self, adv: &Adversary, targets: &[PeerKey], samples: u64) {
        let (n, f) = self.believed_size(adv);
        let w = 1.0 / (self.config.wait_for as f64 + 1.0);
        for &to in targets {
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
                n,
                f,
                victim,
            };
            let forged = match adv.attack.plan(&view, &mut self.rng) {
                Plan::Send(v) => v,
                _ => self.model.clone(),
            };
            let (bytes, _) = self.sign(&forged, samples);
            self.send(to, bytes);
        }
    }
}
