//! Carrying out an engine's outputs as a driver does: training jobs, messages, gossip, fetches,
//! bans and unbans, checkpoints kept for restarts, timers; and telling both ends of a link when
//! it comes up or goes down.

use super::{Cluster, Event, Message, Step, World, gossip, pair};
use crate::attack::Knowledge;
use crate::engine::{GossipVerdict, Input, Output};
use crate::sign::PeerKey;
use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::Arc;

impl<W: World> Cluster<W> {
    pub(super) fn feed(&mut self, i: usize, input: Input) {
        let now = self.now;
        if let Err(e) = self.members[i].engine.handle(now, input) {
            panic!("node {i}: the cluster fed its engine a wrong input: {e}");
        }
        self.drain(i);
    }

    /// Carries out node `i`'s outputs, and arms its timer.
    pub(super) fn drain(&mut self, i: usize) {
        while let Some(out) = self.members[i].engine.poll() {
            self.carry_out(i, out);
        }
        self.tell_omniscient(i);
        let status = self.status[i];
        let m = &mut self.members[i];
        if let Some(deadline) = m.engine.poll_timeout()
            && status.online
            && m.armed != Some(deadline)
        {
            m.armed = Some(deadline);
            let (epoch, at) = (status.epoch, deadline.max(self.now));
            self.push(
                at,
                Event::Tick {
                    node: i,
                    epoch,
                    deadline,
                },
            );
        }
    }

    /// Hands honest node `i`'s newly signed update to the omniscient attackers.
    fn tell_omniscient(&mut self, i: usize) {
        if self
            .insiders
            .iter()
            .all(|(_, k)| *k != Knowledge::Omniscient)
        {
            return;
        }
        let m = &mut self.members[i];
        if m.engine.knowledge().is_some() {
            return;
        }
        let Some(update) = m.engine.latest_update() else {
            return;
        };
        if m.told.as_ref().is_some_and(|t| Arc::ptr_eq(t, update)) {
            return;
        }
        let update = update.clone();
        m.told = Some(update.clone());
        self.tell(i, &update, Knowledge::Omniscient);
    }

    /// Hands `update` to every online attacker other than `i` that knows at least `least`.
    fn tell(&mut self, i: usize, update: &Arc<[u8]>, least: Knowledge) {
        let to: Vec<usize> = self
            .insiders
            .iter()
            .filter(|(j, k)| *j != i && *k >= least && self.status[*j].online)
            .map(|(j, _)| *j)
            .collect();
        for j in to {
            self.feed(
                j,
                Input::Intel {
                    update: update.clone(),
                },
            );
        }
    }

    pub(super) fn carry_out(&mut self, i: usize, out: Output) {
        match out {
            Output::Started {
                origin,
                round,
                model,
                peers,
            } => {
                if let Some(model) = &model {
                    self.world.set_model(i, model);
                }
                let resume = self.members[i].resume.clone();
                self.steps.push_back(Step::Started {
                    node: i,
                    origin,
                    round,
                    peers,
                    resume,
                });
            }
            Output::Train { round } => {
                let epoch = self.status[i].epoch;
                let at = self.now + self.world.train_time(i);
                self.jobs.push(Reverse((at, i, epoch)));
                self.push(
                    at,
                    Event::TrainDone {
                        node: i,
                        round,
                        epoch,
                    },
                );
            }
            Output::Mixed {
                round,
                params,
                peers,
                inputs,
                clipped,
                skipped,
            } => {
                self.world.mixed(i, params);
                let peers = peers.iter().filter_map(|k| self.node_of(k)).collect();
                self.steps.push_back(Step::Mixed {
                    node: i,
                    round,
                    completed: self.members[i].engine.completed_round(),
                    peers,
                    inputs,
                    clipped,
                    skipped,
                });
            }
            Output::Checkpoint { round } => {
                let m = &mut self.members[i];
                if m.keeps_checkpoints {
                    m.checkpoint = Some((round, m.engine.model().to_vec()));
                }
            }
            Output::Send { to, bytes } => {
                if let Some(j) = self.node_of(&to) {
                    self.transmit(i, j, Message::Update(bytes));
                }
            }
            Output::Broadcast { bytes } => {
                let id = gossip::id(&bytes);
                if self.gossip.relays() {
                    let seen_for = self.gossip.seen_for;
                    self.members[i].seen.insert(self.now, id, seen_for);
                }
                self.forward(i, i, None, id, self.gossip.hops, bytes);
            }
            Output::Fetch { peer, round, have } => {
                // Engines only name peers they were told are connected: members.
                let Some(j) = self.node_of(&peer) else { return };
                self.next_request += 1;
                let request = self.next_request;
                let message = Message::FetchRequest {
                    request,
                    round,
                    have,
                };
                if !self.transmit(i, j, message) {
                    let epoch = self.status[i].epoch;
                    self.push(
                        self.now,
                        Event::FetchFailed {
                            node: i,
                            peer: j,
                            epoch,
                        },
                    );
                }
            }
            Output::Serve { to, update, .. } => self.answer(i, to, Message::FetchAnswer { update }),
            Output::Busy { to, .. } => self.answer(i, to, Message::Busy),
            // Nothing is kept per request: the asker is gone or banned.
            Output::Unanswered { .. } => {}
            Output::Ban { peer, reason } => {
                let Some(j) = self.node_of(&peer) else { return };
                // As the node's driver: the link is cut and kept down for a peer the engine
                // keeps out (`Engine::keeps_out`); any other is refused if it ever comes up.
                if self.members[i].engine.keeps_out(&peer) {
                    let was = self.connected(i, j);
                    self.banned.insert(pair(i, j));
                    self.downs += 1;
                    if was {
                        let me = self.members[i].engine.id();
                        self.feed(j, Input::PeerDown { peer: me });
                    }
                }
                self.steps.push_back(Step::Banned {
                    node: i,
                    peer: j,
                    reason,
                });
            }
            Output::Unban { peer } => {
                let Some(j) = self.node_of(&peer) else { return };
                let me = self.members[i].engine.id();
                if !self.members[j].engine.is_banned(&me) {
                    self.rewire(Some(&[i]), |c| {
                        c.banned.remove(&pair(i, j));
                    });
                }
                self.steps.push_back(Step::Unbanned { node: i, peer: j });
            }
            Output::Penalize { .. } => {}
            Output::GossipChecked { message, verdict } => {
                let relay = self.checking.take();
                match relay {
                    Some(r) if r.at == i && r.id == message && verdict == GossipVerdict::Accept => {
                        if let Some(next) = self.gossip.next_hop(r.hops) {
                            self.forward(i, r.author, Some(r.from), r.id, next, r.bytes);
                        }
                    }
                    _ => self.counters.gossip_refused += 1,
                }
            }
            Output::Finished => {
                self.world.finished(i);
                self.steps.push_back(Step::Finished { node: i });
            }
            Output::Share { update } => self.tell(i, &update, Knowledge::Colluding),
        }
    }

    /// Sends node `i`'s answer to a fetch of `to`; if it cannot go, the asker learns that its
    /// fetch failed.
    fn answer(&mut self, i: usize, to: PeerKey, message: Message) {
        if let Some(j) = self.node_of(&to)
            && !self.transmit(i, j, message)
        {
            let epoch = self.status[j].epoch;
            self.push(
                self.now,
                Event::FetchFailed {
                    node: j,
                    peer: i,
                    epoch,
                },
            );
        }
    }

    /// Applies `change` and tells both ends of every link (of `nodes`, or all) whose state it
    /// changed, in link order.
    pub(super) fn rewire(&mut self, nodes: Option<&[usize]>, change: impl FnOnce(&mut Self)) {
        let edges: Vec<(usize, usize)> = match nodes {
            None => (0..self.members.len())
                .flat_map(|a| {
                    self.links[a]
                        .iter()
                        .filter(move |&&b| b > a)
                        .map(move |&b| (a, b))
                })
                .collect(),
            Some(nodes) => {
                let set: BTreeSet<(usize, usize)> = nodes
                    .iter()
                    .flat_map(|&a| self.links[a].iter().map(move |&b| pair(a, b)))
                    .collect();
                set.into_iter().collect()
            }
        };
        let before: Vec<bool> = edges.iter().map(|&(a, b)| self.connected(a, b)).collect();
        change(self);
        self.downs += 1;
        let mut touched = BTreeSet::new();
        for (&(a, b), was) in edges.iter().zip(before) {
            let up = self.connected(a, b);
            if up == was {
                continue;
            }
            for (x, y) in [(a, b), (b, a)] {
                if !self.status[x].online {
                    continue;
                }
                let peer = self.members[y].engine.id();
                let input = if up {
                    Input::PeerUp { peer }
                } else {
                    Input::PeerDown { peer }
                };
                let now = self.now;
                if let Err(e) = self.members[x].engine.handle(now, input) {
                    panic!("node {x}: {e}");
                }
                touched.insert(x);
            }
        }
        for x in touched {
            self.drain(x);
        }
    }
}
