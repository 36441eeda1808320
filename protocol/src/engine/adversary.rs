//! The serving step of a Byzantine engine. What goes out is planned by [`crate::attack`]; the
//! protocol's own signing and framing carry it, so only what a real attacker could send is sent.
//!
//! Models move by pull, so an attacker's influence is what it answers when an honest node draws
//! it: each round it plans what to serve ([`Engine::plan_round`]), and answers each fetch with
//! that, or with a model forged for the asker (dissensus, and the two sides of an equivocation).
//! With [`Adversary::push`] it also pushes its forgery at every connected peer, unasked.
//!
//! An attacker that knows more than its own mixes ([`Colluding`](crate::attack::Knowledge::Colluding),
//! [`Omniscient`](crate::attack::Knowledge::Omniscient)) keeps the newest model of each honest author it has learned of
//! (`intel`: what it fetched, and what it is given as [`Input::Intel`](super::Input::Intel)), passes on what it fetches
//! ([`Output::Share`]), and forges each asker's model when that asker first asks in the round,
//! from what it knows then. An asker gets one forgery a round: two would prove equivocation.

use super::{Engine, Output, screen};
use crate::aggregate::Aggregator;
use crate::attack::{self, Attack, Plan};
use crate::attack::{Aim, Knowledge};
use crate::evidence::Equivocation;
use crate::sign::PeerKey;
use crate::wire;
use rand::{RngCore, SeedableRng};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Most honest authors an attacker keeps models of; past it, the oldest round is forgotten.
const INTEL_AUTHORS: usize = 4096;

/// Valid proofs of equivocation against keys made for the purpose that a gossip abuser publishes
/// each round ([`Attack::GossipAbuse`]).
const FRESH_PROOFS: usize = 8;

/// A Byzantine behaviour for this engine (the simulator's attackers and a red-team node).
#[derive(Debug, Clone, PartialEq)]
pub struct Adversary {
    /// What to do.
    pub attack: Attack,
    /// Nodes in the run, as the attacker believes (for ALIE's z); unset: the peers it is
    /// connected to, plus itself.
    pub n: Option<usize>,
    /// Byzantine nodes in the run, as the attacker believes; unset: 1.
    pub f: Option<usize>,
    /// Also push the forged update to every connected peer every round, unasked (the honest
    /// nodes refuse pushes and penalise them, but the attacker spends their CPU and tries).
    pub push: bool,
    /// Free timing: it never trains. Each round it signs (and forges from) its current model
    /// the moment the round starts, so its answers are ready before any honest node has
    /// trained, it serves the newest round it may, and its round advances as fast as its own
    /// mixes complete (about one fetch round trip). Refused with `label-flip`, which is
    /// training on flipped labels.
    pub free_timing: bool,
    /// Hogs the honest uplinks: each time it has trained (or, with free timing, signed) a
    /// round, it also asks every connected peer it did not draw (allies aside) for that peer's
    /// next round, the one after the newest it has heard of (its own round if it heard of
    /// none), so that the peer holds the request and answers it when it signs, ahead of the
    /// askers that come later (a held request expires after half a round timeout and is then
    /// answered with what the peer has). Every answer is charged to the peer's uplink, and with
    /// `uplink-mbps` set the honest askers behind them hear "busy" and draw other peers. It
    /// mixes only its drawn peers' answers (a peer it draws in place of a busy one may answer
    /// the hog's request first, which it then takes for its answer).
    pub hog: bool,
    /// With [`Adversary::hog`]: `Some((turn, of))` hogs only in the rounds `r` with
    /// `r % of == turn`, so that the `of` identities of one Sybil process take turns, one
    /// hogging each round: each then asks a given peer in one round of `of`, and its count of
    /// the rounds it asked (the share rule, module `share`) stays as low as an honest asker's.
    /// `None`: every round.
    pub hog_turn: Option<(u64, u64)>,
    /// What it knows of the honest models ([`Knowledge`](crate::attack::Knowledge)). Beyond `Knowledge::Own` it forges
    /// for each asker when asked, shares every honest update it fetches ([`Output::Share`]),
    /// and takes in what it is given ([`Input::Intel`](super::Input::Intel)).
    pub knowledge: Knowledge,
    /// Which honest models a forgery for an asker is computed from ([`Aim`]): all it knows, or
    /// the asker's and its honest neighbours'.
    pub aim: Aim,
    /// The other attackers' keys: their models are never taken for honest ones.
    pub allies: BTreeSet<PeerKey>,
    /// The honest nodes' mixing weights on a fixed graph, by node and in-neighbour (public on a
    /// fixed graph): dissensus aims with the victim's real neighbours and weights. Empty: the
    /// attacker assumes a victim that mixes `wait-for + 1` models uniformly.
    pub graph: BTreeMap<PeerKey, BTreeMap<PeerKey, f64>>,
}

impl Adversary {
    /// An attacker with this attack and nothing else set: it believes the run is its connected
    /// peers plus itself with one Byzantine node, does not push, and knows what it mixes.
    pub fn new(attack: Attack) -> Adversary {
        Adversary {
            attack,
            n: None,
            f: None,
            push: false,
            free_timing: false,
            hog: false,
            hog_turn: None,
            knowledge: Knowledge::Own,
            aim: Aim::All,
            allies: BTreeSet::new(),
            graph: BTreeMap::new(),
        }
    }
}

/// A simulated honest mix: `(own, received, out)`.
type SimulatedMix = Box<attack::MixFn>;

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
    /// A model forged for each asker, signed for the planned round with this sample count.
    PerAsker { round: u64, samples: u64 },
}

impl Engine {
    /// The honest authors an attacker beyond `own` knowledge knows a model of, and the round.
    pub fn known_authors(&self) -> BTreeMap<PeerKey, u64> {
        self.intel.iter().map(|(k, (r, _))| (*k, *r)).collect()
    }

    /// What this node knows as an attacker; `None` for an honest node.
    pub fn knowledge(&self) -> Option<Knowledge> {
        self.adversary.as_ref().map(|a| a.knowledge)
    }

    /// An ally learned while running (a red-team node's side channel): from now on its models
    /// are never taken for honest ones, and what was known of it as an honest author is
    /// forgotten. Nothing for an honest node, or for the node's own key.
    pub fn add_ally(&mut self, key: PeerKey) {
        if key == self.me {
            return;
        }
        if let Some(adv) = &mut self.adversary
            && adv.allies.insert(key)
        {
            self.intel.remove(&key);
        }
    }

    /// The run's size and Byzantine count as the attacker believes them: the configured values,
    /// or the peers it is connected to plus itself, and 1.
    pub(super) fn believed_size(&self, adv: &Adversary) -> (usize, usize) {
        let n = adv.n.unwrap_or_else(|| self.peers.connected().len() + 1);
        (n, adv.f.unwrap_or(1))
    }

    /// With [`Adversary::hog`], asks every connected peer not drawn this round (allies aside)
    /// for its next round (see there), in its turns only if it has [`Adversary::hog_turn`].
    pub(super) fn hog(&mut self) {
        let Some(adv) = &self.adversary else { return };
        if !adv.hog
            || adv
                .hog_turn
                .is_some_and(|(turn, of)| self.round % of != turn)
        {
            return;
        }
        self.stats.hog_rounds += 1;
        let targets: Vec<PeerKey> = self
            .peers
            .connected()
            .into_iter()
            .filter(|p| !self.asked.contains_key(p) && !adv.allies.contains(p))
            .collect();
        for peer in targets {
            let next = self
                .window
                .latest(&peer)
                .map_or(self.round, |r| r.saturating_add(1));
            self.outputs.push_back(Output::Fetch {
                peer,
                round: Some(next),
                have: None,
            });
        }
    }

    /// A Byzantine node's plan for the round just trained. It sees what it knows (see
    /// [`Knowledge`](crate::attack::Knowledge)): by default the models it mixed last round (those its drawn peers served
    /// it). Dissensus, and any forging attack of an attacker that learns more during the round,
    /// is forged for each asker when it asks.
    pub(super) fn plan_round(&mut self, adv: &Adversary, samples: u64) {
        self.forged.clear();
        let per_asker = matches!(adv.attack, Attack::Dissensus { .. })
            || (!adv.knowledge.is_own() && adv.attack.forges());
        self.menu = if per_asker {
            // Each asker gets its own forgery for the round: nothing is announced, since any
            // announcement would prove the equivocation to every asker.
            let (bytes, _) = self.sign(&self.model.params(), samples);
            self.remember(bytes);
            Menu::PerAsker {
                round: self.round,
                samples,
            }
        } else {
            let (n, f) = self.believed_size(adv);
            let honest: Vec<&[f32]> =
                honest_models(adv, &self.intel, &self.last_received, self.floor())
                    .into_values()
                    .collect();
            let mix = self.simulated_mix(&adv.attack);
            let own = self.model.params();
            let view = attack::View {
                own: &own,
                honest: &honest,
                reference: reference(&self.reference),
                n,
                f,
                victim: None,
                defence: mix.as_ref().map(|mix| attack::Defence {
                    mix: &**mix,
                    fan_in: self.config.wait_for,
                }),
            };
            match adv.attack.plan(&view, &mut self.rng) {
                Plan::Send(v) => {
                    let (bytes, signed) = self.sign(&v, samples);
                    self.announce(&signed);
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
                Plan::Honest => {
                    let (bytes, signed) = self.sign(&self.model.params(), samples);
                    self.announce(&signed);
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
                Plan::Replay { lag } => {
                    let old = usize::try_from(lag)
                        .ok()
                        .and_then(|lag| self.sent.len().checked_sub(lag))
                        .and_then(|i| self.sent.get(i).cloned());
                    let (fresh, _) = self.sign(&self.model.params(), samples);
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
                    let own = self.model.params();
                    let (bytes, _) = self.sign(copy.as_deref().unwrap_or(&own), samples);
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
                Plan::Ahead { ahead } => {
                    let round = self.round.saturating_add(ahead);
                    let (bytes, signed) = self.sign_for(round, &self.model.params(), samples);
                    self.announce(&signed);
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
                Plan::Junk(form) => {
                    let bytes: Arc<[u8]> = self.junk(form, samples).into();
                    self.remember(bytes.clone());
                    Menu::One(bytes)
                }
                Plan::GossipAbuse => {
                    let (bytes, signed) = self.sign(&self.model.params(), samples);
                    self.announce(&signed);
                    self.remember(bytes.clone());
                    self.abuse_gossip(adv, &signed);
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
            Menu::PerAsker { round, samples } => {
                if let Some(bytes) = self.forged.get(&to) {
                    return Some(bytes.clone());
                }
                let bytes = self.forge_for(adv, to, round, samples);
                self.forged.insert(to, bytes.clone());
                Some(bytes)
            }
        }
    }

    /// The round's gossip of [`Attack::GossipAbuse`]: junk bytes as long as an announcement,
    /// an announcement and a piece of evidence in the name of the first connected honest peer
    /// (the attacker's own header with that peer as sender: the signatures do not verify), the
    /// oldest of its own announcements it still holds, and [`FRESH_PROOFS`] valid proofs against
    /// keys made for the purpose.
    fn abuse_gossip(&mut self, adv: &Adversary, signed: &wire::SignedHeader) {
        let mut junk = vec![0u8; wire::encode_announcement(signed).len()];
        self.rng.fill_bytes(&mut junk);
        self.broadcast(junk.into());
        let victim = self
            .peers
            .connected()
            .into_iter()
            .find(|p| !adv.allies.contains(p));
        if let Some(victim) = victim {
            let in_its_name = |flip: u8| {
                let mut h = signed.clone();
                h.header.sender = victim;
                h.header.digest[0] ^= flip;
                h
            };
            self.broadcast(wire::encode_announcement(&in_its_name(0)).into());
            let framed = Equivocation {
                a: in_its_name(0),
                b: in_its_name(1),
            };
            self.broadcast(framed.encode().into());
        }
        let oldest = self
            .sent
            .front()
            .and_then(|b| wire::decode_update(b, self.limit).ok());
        if let Some(old) = oldest {
            self.broadcast(wire::encode_announcement(&old.signed).into());
        }
        for _ in 0..FRESH_PROOFS {
            let proof = self.proof_against_a_fresh_key(signed.header.round);
            self.broadcast(proof.encode().into());
        }
    }

    /// A valid proof that a key made for the purpose equivocated in `round`: two headers it
    /// signed over different digests. Anyone can make as many as it likes.
    fn proof_against_a_fresh_key(&mut self, round: u64) -> Equivocation {
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let fresh = crate::sign::Identity::from_secret(secret);
        let header = |v: u8| {
            let (_, signed) = wire::encode_update_shared(
                &fresh,
                self.run,
                round,
                1,
                self.config.codec.whole(),
                &[v; 4],
            );
            signed
        };
        Equivocation {
            a: header(0),
            b: header(1),
        }
    }

    /// Junk of `form` ([`attack::Junk`]): the own update with its last payload byte changed,
    /// or random bytes as long as it, or one longer than the largest valid update.
    fn junk(&mut self, form: attack::Junk, samples: u64) -> Vec<u8> {
        let mut bytes = match form {
            attack::Junk::Digest => {
                let mut bytes = self.sign(&self.model.params(), samples).0.to_vec();
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0x5A;
                }
                return bytes;
            }
            attack::Junk::Random => vec![0; self.sign(&self.model.params(), samples).0.len()],
            attack::Junk::Oversize => vec![0; wire::max_update_len(self.dim) + 1],
        };
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    /// The honest nodes' mix as the attacker simulates it, for attacks that search their
    /// strength against the defence ([`attack::Defence`]): the run's outlier screen (gross
    /// outliers dropped, others pulled in) then its rule, from a fresh aggregator each time (a
    /// node's clipping history is not public) with equal weights; where the rule would skip the
    /// mix, the node keeps its model. `None` for attacks that do not search.
    fn simulated_mix(&self, attack: &Attack) -> Option<SimulatedMix> {
        if !matches!(attack, Attack::OptAlie | Attack::OptIpm { .. }) {
            return None;
        }
        let aggregator = Aggregator::new(&self.config.aggregation, self.dim).ok()?;
        let aggregator = RefCell::new(aggregator);
        let factor = self.config.outlier_factor;
        Some(Box::new(
            move |own: &[f32], received: &[&[f32]], out: &mut [f32]| {
                let mut kept: Vec<Option<Cow<'_, [f32]>>> =
                    received.iter().map(|r| Some(Cow::Borrowed(*r))).collect();
                let mut screened = 0;
                for o in screen::outliers(own, received, factor) {
                    if o.gross {
                        kept[o.index] = None;
                        screened += 1;
                    } else {
                        let mut pulled = received[o.index].to_vec();
                        screen::pull_in(own, &mut pulled, o.scale);
                        kept[o.index] = Some(Cow::Owned(pulled));
                    }
                }
                let mut inputs: Vec<&[f32]> = vec![own];
                inputs.extend(kept.iter().flatten().map(|c| c.as_ref()));
                let mut aggregator = aggregator.borrow_mut();
                aggregator.reset_to(own);
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
                let mixed = inputs.len() > 1
                    && inputs.len() >= aggregator.min_inputs()
                    && aggregator
                        .aggregate_screened(own, &inputs, &[], screened, &mut rng, out)
                        .is_ok();
                if !mixed {
                    out.copy_from_slice(own);
                }
            },
        ))
    }

    /// A forgery for the asker `to`, from what the attacker knows now: from every honest model
    /// it knows, or with [`Aim::Victim`] from the asker's and its honest neighbours'. For dissensus (He,
    /// Karimireddy and Jaggi, 2022) the asker is the victim: its model is the newest the
    /// attacker knows of it, and its good neighbours and weights are its real ones when the
    /// graph is known ([`Adversary::graph`]: every Byzantine neighbour's weight is counted as
    /// Byzantine, a neighbour whose model is unknown is left out), otherwise the other known
    /// honest models, weighed as by a node that mixes `wait-for + 1` models uniformly.
    fn forge_for(&mut self, adv: &Adversary, to: PeerKey, round: u64, samples: u64) -> Arc<[u8]> {
        let (n, f) = self.believed_size(adv);
        let honest = honest_models(adv, &self.intel, &self.last_received, self.floor());
        let mut good: Vec<&[f32]> = Vec::new();
        let mut weights: Vec<f64> = Vec::new();
        let mut byzantine_weight = 0.0;
        match adv.graph.get(&to) {
            Some(neighbours) => {
                for (j, w) in neighbours {
                    if *j == self.me || adv.allies.contains(j) {
                        byzantine_weight += w;
                    } else if let Some(m) = honest.get(j) {
                        good.push(m);
                        weights.push(*w);
                    }
                }
            }
            None => {
                let w = 1.0 / (self.config.wait_for as f64 + 1.0);
                good = honest
                    .iter()
                    .filter(|(k, _)| **k != to)
                    .map(|(_, m)| *m)
                    .collect();
                weights = vec![w; good.len()];
                byzantine_weight = w;
            }
        }
        let victim = honest.get(&to).map(|model| attack::Victim {
            model,
            good: &good,
            good_weights: &weights,
            byzantine_weight,
        });
        let aimed: Vec<&[f32]> = match adv.aim {
            Aim::All => honest.values().copied().collect(),
            Aim::Victim => victim
                .iter()
                .map(|v| v.model)
                .chain(good.iter().copied())
                .collect(),
        };
        let mix = self.simulated_mix(&adv.attack);
        let own = self.model.params();
        let view = attack::View {
            own: &own,
            honest: if matches!(adv.attack, Attack::Dissensus { .. }) {
                &good
            } else {
                &aimed
            },
            reference: reference(&self.reference),
            n,
            f,
            victim,
            defence: mix.as_ref().map(|mix| attack::Defence {
                mix: &**mix,
                fan_in: self.config.wait_for,
            }),
        };
        let forged = match adv.attack.plan(&view, &mut self.rng) {
            Plan::Send(v) => v,
            _ => self.model.params().into_owned(),
        };
        self.sign_for(round, &forged, samples).0
    }

    /// Takes in a signed update learned out of band ([`super::Input::Intel`]): kept as its
    /// author's newest model when it checks out and is newer than what is known. Ignored by
    /// honest nodes and by attackers that know only their own mixes.
    pub(super) fn on_intel(&mut self, bytes: &[u8]) {
        let Some(adv) = &self.adversary else { return };
        if adv.knowledge.is_own() {
            return;
        }
        let Ok(update) = wire::decode_update_ref(bytes, self.limit) else {
            return;
        };
        let h = update.header();
        let (author, round) = (h.sender, h.round);
        if author == self.me
            || adv.allies.contains(&author)
            || h.run != self.run
            || !self.config.codec.admits(h.codec)
            || self.intel.get(&author).is_some_and(|(r, _)| *r >= round)
        {
            return;
        }
        if update.verify_payload().is_err() {
            return;
        }
        let increment = self.chain.is_some() && h.codec == self.config.codec;
        if increment {
            // The `top-k` chain: applied to this attacker's copy of the author's estimate when
            // it follows on from it (the intel of every round, in order), ignored otherwise.
            if let Ok(params) = self.chain_apply(&author, round, update.payload()) {
                self.learn(author, round, params);
            }
            return;
        }
        let mut params = Vec::new();
        if update.params_into(self.dim, &mut params).is_ok() {
            if let Some(c) = self.chain.as_mut() {
                c.replace(author, round, params.clone());
            }
            self.learn(author, round, params);
        }
    }

    /// An honest update this attacker fetched and accepted: kept, and passed to the allies.
    pub(super) fn learn_fetched(
        &mut self,
        from: PeerKey,
        round: u64,
        params: &[f32],
        bytes: &[u8],
    ) {
        let Some(adv) = &self.adversary else { return };
        if adv.knowledge.is_own() || adv.allies.contains(&from) {
            return;
        }
        if self.intel.get(&from).is_none_or(|(r, _)| *r < round) {
            self.learn(from, round, params.to_vec());
        }
        self.outputs.push_back(Output::Share {
            update: Arc::from(bytes),
        });
    }

    fn learn(&mut self, author: PeerKey, round: u64, params: Vec<f32>) {
        if !self.intel.contains_key(&author) && self.intel.len() >= INTEL_AUTHORS {
            let oldest = self.intel.iter().min_by_key(|(_, (r, _))| *r);
            match oldest {
                Some((k, (r, _))) if *r < round => {
                    let k = *k;
                    self.intel.remove(&k);
                }
                _ => return,
            }
        }
        self.intel.insert(author, (round, params));
    }
}

/// The honest models the attacker knows, by author: with `Knowledge::Own` those it mixed last
/// round; beyond, the newest of each author it learned of (`intel`), no older than `floor` (or,
/// knowing none, those it mixed). Allies' models are never counted.
fn honest_models<'a>(
    adv: &Adversary,
    intel: &'a BTreeMap<PeerKey, (u64, Vec<f32>)>,
    last_received: &'a BTreeMap<PeerKey, Vec<f32>>,
    floor: u64,
) -> BTreeMap<PeerKey, &'a [f32]> {
    if !adv.knowledge.is_own() {
        let known: BTreeMap<PeerKey, &[f32]> = intel
            .iter()
            .filter(|(_, (round, _))| *round >= floor)
            .map(|(k, (_, m))| (*k, m.as_slice()))
            .collect();
        if !known.is_empty() {
            return known;
        }
    }
    last_received
        .iter()
        .filter(|(k, _)| !adv.allies.contains(k))
        .map(|(k, m)| (*k, m.as_slice()))
        .collect()
}

/// The attacker's model before this round's training, once it has trained.
fn reference(reference: &[f32]) -> Option<&[f32]> {
    Some(reference).filter(|r| !r.is_empty())
}
