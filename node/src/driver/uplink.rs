//! Whether this node's uplink carries the models its peers fetch from it: how long each served
//! model took to leave (from the answer being queued to the transport reporting it sent), and
//! whether the slowest of a round took longer than the round itself. A node whose peers ask it for
//! more models a round than its uplink carries in a round falls behind them: its answers arrive
//! after their round timeout and its data drop out of their mixes. It says so (a warning and the
//! `uplink_saturated_rounds` metric) so that its operator can lower its peers' load on it (fewer
//! connections, `max-connections`) or give it a faster link.

use std::collections::BTreeMap;
use std::time::Duration;

/// A round in which serving took longer than the round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Saturated {
    /// The slowest served model's time on the uplink.
    pub slowest: Duration,
    /// The round's duration (from the end of the previous round).
    pub round: Duration,
    /// Models served in the round.
    pub served: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The serving bookkeeping, keyed by the transport's request id `K`.
#[derive(Debug)]
pub(crate) struct Uplink<K> {
    in_flight: BTreeMap<K, (Duration, u64)>,
    /// End of the previous round.
    round_start: Option<Duration>,
    slowest: Duration,
    served: u64,
    bytes: u64,
    /// Over the node's life: models served, seconds they spent on the uplink, saturated rounds.
    pub total_served: u64,
    pub total_seconds: f64,
    pub saturated_rounds: u64,
}

/// Answers tracked at most: a bound on the bookkeeping whatever peers ask (the engine serves
/// each peer at most a few times a round, so this is never reached by honest use).
const MAX_IN_FLIGHT: usize = 4096;

impl<K: Ord> Uplink<K> {
    pub(crate) fn new() -> Self {
        Uplink {
            in_flight: BTreeMap::new(),
            round_start: None,
            slowest: Duration::ZERO,
            served: 0,
            bytes: 0,
            total_served: 0,
            total_seconds: 0.0,
            saturated_rounds: 0,
        }
    }

    /// An answer of `bytes` bytes was handed to the transport at `now`.
    pub(crate) fn queued(&mut self, id: K, now: Duration, bytes: u64) {
        if self.in_flight.len() < MAX_IN_FLIGHT {
            self.in_flight.insert(id, (now, bytes));
        }
    }

    /// The transport reports the answer sent at `now`.
    pub(crate) fn sent(&mut self, id: &K, now: Duration) {
        if let Some((at, bytes)) = self.in_flight.remove(id) {
            let took = now.saturating_sub(at);
            self.slowest = self.slowest.max(took);
            self.served += 1;
            self.bytes += bytes;
            self.total_served += 1;
            self.total_seconds += took.as_secs_f64();
        }
    }

    /// The answer failed or its connection closed: no longer tracked.
    pub(crate) fn failed(&mut self, id: &K) {
        self.in_flight.remove(id);
    }

    /// The node's round ended at `now`: whether its uplink was saturated in it (its slowest
    /// served model, or one still on the uplink, took longer than the round).
    pub(crate) fn round_end(&mut self, now: Duration) -> Option<Saturated> {
        let start = self.round_start.replace(now)?;
        let round = now.saturating_sub(start);
        let waiting = self
            .in_flight
            .values()
            .map(|(at, _)| now.saturating_sub(*at))
            .max()
            .unwrap_or_default();
        let slowest = self.slowest.max(waiting);
        let out = (slowest > round && round > Duration::ZERO).then_some(Saturated {
            slowest,
            round,
            served: self.served,
            bytes: self.bytes,
        });
        self.slowest = Duration::ZERO;
        self.served = 0;
        self.bytes = 0;
        if out.is_some() {
            self.saturated_rounds += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_round_whose_answers_take_longer_than_the_round_is_saturated() {
        let mut u: Uplink<u32> = Uplink::new();
        assert_eq!(u.round_end(ms(0)), None, "the first round has no start");
        // Rounds of 1 s. Round 1: two answers of 100 ms each. Fine.
        u.queued(1, ms(100), 400);
        u.queued(2, ms(100), 400);
        u.sent(&1, ms(200));
        u.sent(&2, ms(200));
        assert_eq!(u.round_end(ms(1000)), None);
        // An answer queued in round 2 leaves in round 3, 1.5 s later: round 3 is saturated.
        u.queued(3, ms(1100), 400);
        assert_eq!(u.round_end(ms(2000)), None, "900 ms on the uplink so far");
        u.sent(&3, ms(2600));
        u.queued(4, ms(2900), 400);
        let s = u.round_end(ms(3000)).expect("saturated");
        assert_eq!(
            (s.slowest, s.round, s.served, s.bytes),
            (ms(1500), ms(1000), 1, 400)
        );
        // An answer still on the uplink at a round's end counts with its time so far.
        let s = u.round_end(ms(4000)).expect("still sending");
        assert_eq!((s.slowest, s.served), (ms(1100), 0));
        u.failed(&4);
        assert_eq!(u.round_end(ms(5000)), None);
        assert_eq!((u.total_served, u.saturated_rounds), (3, 2));
        assert!((u.total_seconds - 1.7).abs() < 1e-9);
    }

    #[test]
    fn the_bookkeeping_is_bounded() {
        let mut u: Uplink<usize> = Uplink::new();
        for i in 0..2 * MAX_IN_FLIGHT {
            u.queued(i, ms(0), 1);
        }
        assert_eq!(u.in_flight.len(), MAX_IN_FLIGHT);
    }
}
