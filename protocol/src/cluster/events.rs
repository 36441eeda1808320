//! The cluster's event queue and the messages on its links: events in virtual time (deliveries,
//! training results, timers, failed fetches, the caller's scheduled tags), ordered by time and
//! then by the order they were scheduled; how a message reaches an engine, and how gossip is
//! relayed.

use super::{Cluster, JOBS_PER_BATCH, Relay, Step, World};
use crate::engine::{Input, ModelView};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

/// Bytes a fetch request and an empty answer take on the wire (framing and the protocol name).
pub(super) const FETCH_OVERHEAD: usize = 64;

#[derive(Debug)]
pub(super) enum Message {
    Update(Arc<[u8]>),
    Gossip {
        author: usize,
        id: u64,
        hops: Option<u32>,
        bytes: Arc<[u8]>,
    },
    FetchRequest {
        request: u64,
        round: Option<u64>,
        have: Option<u64>,
    },
    FetchAnswer {
        update: Option<Arc<[u8]>>,
    },
    /// A fetch refused: the server's uplink is full.
    Busy,
}

impl Message {
    pub(super) fn len(&self) -> usize {
        match self {
            Message::Update(b) | Message::Gossip { bytes: b, .. } => b.len(),
            Message::FetchRequest { .. } | Message::Busy => FETCH_OVERHEAD,
            Message::FetchAnswer { update } => {
                FETCH_OVERHEAD + update.as_ref().map_or(0, |u| u.len())
            }
        }
    }
}

#[derive(Debug)]
pub(super) enum Event {
    Deliver {
        to: usize,
        from: usize,
        /// The receiver's incarnation when sent: a restart closes its connections.
        epoch: u64,
        /// The cluster's count of connection changes when sent ([`Cluster::downs`]): if it is
        /// the same at delivery, the connection the message went on is still up.
        downs: u64,
        message: Message,
    },
    TrainDone {
        node: usize,
        round: u64,
        epoch: u64,
    },
    /// Node `node`'s timer, armed for `deadline`; dropped if the node armed another since.
    Tick {
        node: usize,
        epoch: u64,
        deadline: Duration,
    },
    /// A fetch of `node` from `peer` failed (the request or the answer could not go).
    FetchFailed {
        node: usize,
        peer: usize,
        epoch: u64,
    },
    Scheduled(u64),
}

/// The events waiting for their time, taken in order of time and then of scheduling. The heap
/// holds small keys (time, order, slot) and the events wait in slots beside it, so that each
/// push and pop moves 32 bytes a level rather than the event: with tens of thousands of nodes
/// the heap holds hundreds of thousands of events and its sifts miss the cache at every level.
#[derive(Debug, Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Reverse<Key>>,
    slots: Vec<Option<Event>>,
    /// Slots whose event was taken, to be used again.
    free: Vec<u32>,
    /// Events scheduled so far: the order of those due at the same time.
    seq: u64,
}

/// An event's place in the queue. `seq` is unique, so `slot` never decides the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: Duration,
    seq: u64,
    slot: u32,
}

impl Queue {
    /// Schedules `event` at `at`, after the events already scheduled at that time.
    pub(super) fn push(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 events queued")
            }
        };
        self.heap.push(Reverse(Key {
            at,
            seq: self.seq,
            slot,
        }));
    }

    /// When the next event is due.
    pub(super) fn next_at(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(key)| key.at)
    }

    /// Takes the next event, with its time.
    pub(super) fn pop(&mut self) -> Option<(Duration, Event)> {
        let Reverse(key) = self.heap.pop()?;
        let event = self.slots[key.slot as usize]
            .take()
            .expect("a queued key's slot holds its event");
        self.free.push(key.slot);
        Some((key.at, event))
    }

    /// Events queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The events queued, in no particular order.
    #[cfg(test)]
    pub(super) fn events(&self) -> impl Iterator<Item = &Event> {
        self.slots.iter().flatten()
    }
}

impl<W: World> Cluster<W> {
    pub(super) fn push(&mut self, at: Duration, event: Event) {
        self.queue.push(at, event);
    }

    pub(super) fn live(&self, node: usize, epoch: u64) -> bool {
        self.status[node].online && self.status[node].epoch == epoch
    }

    /// Hands the world the jobs due first while fewer than [`JOBS_PER_BATCH`] of its results
    /// wait for their virtual time, so a world with worker threads trains them while the event
    /// loop goes on. Called after every event: which jobs are handed over when depends on the
    /// events alone.
    pub(super) fn run_ahead(&mut self) {
        let free = JOBS_PER_BATCH.saturating_sub(self.ready.len());
        if free > 0 && !self.jobs.is_empty() {
            self.run_jobs(free);
        }
    }

    pub(super) fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                to,
                from,
                epoch,
                downs,
                message,
            } => self.deliver(to, from, epoch, downs, message),
            Event::TrainDone { node, round, epoch } => {
                if !self.live(node, epoch) {
                    return;
                }
                // Jobs are handed over in batches of those due first, this one among them: it
                // is due now.
                while !self.ready.contains(&(node, epoch)) && !self.jobs.is_empty() {
                    self.run_jobs(JOBS_PER_BATCH);
                }
                if self.ready.remove(&(node, epoch)) {
                    let (params, samples) = self.world.trained(node);
                    self.feed(
                        node,
                        Input::Trained {
                            round,
                            params,
                            samples,
                        },
                    );
                }
            }
            Event::Tick {
                node,
                epoch,
                deadline,
            } => {
                // A tick of a deadline the engine has moved since is spurious: the engine's
                // timers are all at or after the deadline armed now, whose own tick is queued.
                if self.live(node, epoch) && self.members[node].armed == Some(deadline) {
                    self.members[node].armed = None;
                    self.feed(node, Input::Tick);
                }
            }
            Event::FetchFailed { node, peer, epoch } => {
                if self.live(node, epoch) {
                    let peer = self.members[peer].engine.id();
                    self.feed(node, Input::Fetched { peer, update: None });
                }
            }
            Event::Scheduled(tag) => self.steps.push_back(Step::Scheduled(tag)),
        }
    }

    pub(super) fn deliver(
        &mut self,
        to: usize,
        from: usize,
        epoch: u64,
        downs: u64,
        message: Message,
    ) {
        // The connection was up when the message was sent; it can only have gone down since if
        // a connection went down anywhere.
        if !self.live(to, epoch) || (downs != self.downs && !self.connected(from, to)) {
            self.counters.dropped += 1;
            if let Message::FetchRequest { .. } = message {
                // The asker learns that its request failed.
                let epoch = self.status[from].epoch;
                self.push(
                    self.now,
                    Event::FetchFailed {
                        node: from,
                        peer: to,
                        epoch,
                    },
                );
            }
            return;
        }
        let key = self.members[from].engine.id();
        if self.members[to].engine.is_banned(&key) {
            self.counters.from_banned += 1;
        }
        let input = match message {
            Message::Update(bytes) => Input::UpdateReceived { from: key, bytes },
            Message::Gossip {
                author,
                id,
                hops,
                bytes,
            } => {
                if self.gossip.relays()
                    && !self.members[to]
                        .seen
                        .insert(self.now, id, self.gossip.seen_for)
                {
                    self.counters.duplicates += 1;
                    return;
                }
                // As gossipsub with validation: forwarded only once the engine accepts it.
                self.checking = Some(Relay {
                    at: to,
                    author,
                    from,
                    id,
                    hops,
                    bytes: bytes.clone(),
                });
                self.counters.gossip_delivered += 1;
                Input::GossipReceived {
                    author: self.members[author].engine.id(),
                    relayer: key,
                    message: id,
                    bytes,
                }
            }
            Message::FetchRequest {
                request,
                round,
                have,
            } => Input::FetchRequested {
                from: key,
                request,
                round,
                have,
            },
            Message::FetchAnswer { update } => Input::Fetched { peer: key, update },
            Message::Busy => Input::Busy { peer: key },
        };
        self.counters.delivered += 1;
        self.feed(to, input);
    }

    /// Puts a message on the link from `from` to `to`; false if it cannot go or is lost.
    pub(super) fn transmit(&mut self, from: usize, to: usize, message: Message) -> bool {
        if !self.connected(from, to) || self.faults.loses(&mut self.rng) {
            self.counters.dropped += 1;
            return false;
        }
        let at = self.world.arrival(self.now, from, to, message.len());
        // A gossip copy its receiver has seen, and will still remember when the copy arrives,
        // would be refused there as a duplicate and change nothing else: it takes its link's
        // bandwidth (above) but is not queued. With relaying, most copies are such (each node
        // forwards each message to its whole mesh).
        #[cfg(test)]
        let skip = !self.queue_seen_copies;
        #[cfg(not(test))]
        let skip = true;
        if let Message::Gossip { id, .. } = &message
            && skip
            && self.gossip.relays()
            && self.members[to]
                .seen
                .holds_at(*id, at, self.gossip.seen_for)
        {
            self.counters.duplicates += 1;
            return true;
        }
        let epoch = self.status[to].epoch;
        self.push(
            at,
            Event::Deliver {
                to,
                from,
                epoch,
                downs: self.downs,
                message,
            },
        );
        true
    }

    /// Sends a gossip message on from `at` to its mesh, except `except` and the author.
    pub(super) fn forward(
        &mut self,
        at: usize,
        author: usize,
        except: Option<usize>,
        id: u64,
        hops: Option<u32>,
        bytes: Arc<[u8]>,
    ) {
        let peers: Vec<usize> = self
            .peers_of(at)
            .into_iter()
            .filter(|&j| Some(j) != except && j != author)
            .collect();
        for j in self.gossip.mesh_of(&peers, &mut self.rng) {
            let message = Message::Gossip {
                author,
                id,
                hops,
                bytes: bytes.clone(),
            };
            self.transmit(at, j, message);
        }
    }

    /// Hands the world the queued training jobs due first (at most `limit`, ties in node
    /// order) of nodes still in the same life, as one batch. Each job depends only on its own
    /// node, so how jobs are batched changes no result.
    pub(super) fn run_jobs(&mut self, limit: usize) {
        let mut jobs: Vec<(Duration, usize, u64)> = Vec::new();
        while jobs.len() < limit {
            let Some(Reverse(job)) = self.jobs.pop() else {
                break;
            };
            #[cfg(test)]
            {
                self.jobs_looked_at += 1;
            }
            if self.live(job.1, job.2) && jobs.last() != Some(&job) {
                jobs.push(job);
            }
        }
        // A copy of the last job taken would come up first next time.
        while let Some(&Reverse(next)) = self.jobs.peek()
            && jobs.last() == Some(&next)
        {
            self.jobs.pop();
        }
        let mut nodes: Vec<(usize, u64)> = jobs.into_iter().map(|(_, n, e)| (n, e)).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let batch: Vec<(usize, ModelView)> = nodes
            .iter()
            .map(|&(n, _)| (n, self.members[n].engine.model()))
            .collect();
        if batch.is_empty() {
            return;
        }
        self.world.train(&batch);
        self.counters.train_batches += 1;
        self.counters.train_jobs += batch.len() as u64;
        self.ready.extend(nodes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_in_the_order_they_were_scheduled() {
        let ms = Duration::from_millis;
        let mut queue = Queue::default();
        let pop = |queue: &mut Queue| {
            queue.pop().map(|(at, event)| match event {
                Event::Scheduled(tag) => (at, tag),
                other => panic!("only tags were scheduled, not {other:?}"),
            })
        };
        queue.push(ms(5), Event::Scheduled(1));
        queue.push(ms(3), Event::Scheduled(2));
        queue.push(ms(5), Event::Scheduled(3));
        assert_eq!(queue.next_at(), Some(ms(3)));
        assert_eq!(pop(&mut queue), Some((ms(3), 2)));
        // Tag 4 takes the slot tag 2 left, below tag 3's: the slot must not put it first.
        queue.push(ms(5), Event::Scheduled(4));
        queue.push(ms(4), Event::Scheduled(5));
        assert_eq!((queue.len(), queue.events().count()), (4, 4));
        let rest: Vec<_> = std::iter::from_fn(|| pop(&mut queue)).collect();
        assert_eq!(rest, [(ms(4), 5), (ms(5), 1), (ms(5), 3), (ms(5), 4)]);
        assert_eq!((queue.len(), queue.next_at()), (0, None));
        assert_eq!(
            queue.slots.len(),
            4,
            "as many slots as events were queued at once (five were scheduled)"
        );
    }
}
