//! Joining a run in progress: start from a robust aggregate of models fetched from peers.
//!
//! A node that joins late asks several peers for their latest signed update
//! ([`Engine::last_update`](super::Engine::last_update)) and passes what came back to [`join`].
//! Every answer is checked exactly as an incoming update is (size, signature, sender, run,
//! dimension, finiteness); the survivors are mixed by the coordinate-wise median (Yin et al.
//! 2018), whose breakdown point is 1/2: fewer than half of the answering peers lying cannot move
//! any coordinate outside the range of the honest answers. The starting round is the lower median
//! of the answers' rounds, so a lying minority cannot push the joiner far ahead or behind either.
//! Cost: O(k d log² k) for k answers of d parameters.

use super::Rejection;
use crate::aggregate::{self, Aggregator};
use crate::sign::{PeerKey, RunId};
use crate::wire::{self, Codec};
use rand::SeedableRng;

/// Where a late joiner starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The median of the accepted models, or `None` when no answer passed the checks.
    pub model: Option<Vec<f32>>,
    /// The lower median of the accepted answers' rounds (0 when none passed).
    pub round: u64,
    /// The peers whose answers were mixed, in key order.
    pub accepted: Vec<PeerKey>,
    /// The peers whose answers failed a check, with the reason, in key order.
    pub rejected: Vec<(PeerKey, Rejection)>,
}

/// Checks the answers (`(transport-authenticated sender, bytes)`) against `run` and a model of
/// `dim` parameters and mixes those that pass. One answer per peer counts: later duplicates of a
/// peer are ignored.
pub fn join<'a>(
    run: RunId,
    dim: usize,
    answers: impl IntoIterator<Item = (PeerKey, &'a [u8])>,
) -> Start {
    let limit = wire::PREFIX + wire::MAX_HEADER + Codec::F32Le.payload_len(dim);
    let mut models = std::collections::BTreeMap::new();
    let mut rejected = Vec::new();
    for (from, bytes) in answers {
        if models.contains_key(&from) || rejected.iter().any(|(p, _)| *p == from) {
            continue;
        }
        match check(run, dim, limit, from, bytes) {
            Ok(m) => {
                models.insert(from, m);
            }
            Err(reason) => rejected.push((from, reason)),
        }
    }
    rejected.sort_by_key(|(p, _)| *p);
    if models.is_empty() {
        return Start {
            model: None,
            round: 0,
            accepted: Vec::new(),
            rejected,
        };
    }
    let mut rounds: Vec<u64> = models.values().map(|(r, _)| *r).collect();
    rounds.sort_unstable();
    let round = rounds[(rounds.len() - 1) / 2];
    let inputs: Vec<&[f32]> = models.values().map(|(_, m)| m.as_slice()).collect();
    let config = aggregate::Config {
        rule: aggregate::Rule::Median,
        pre: Vec::new(),
    };
    let mut out = vec![0.0; dim];
    let mut agg = Aggregator::new(&config, dim).expect("the median takes any dimension");
    // The median draws no randomness; the generator only satisfies the signature.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let model = agg
        .aggregate(inputs[0], &inputs, &[], &mut rng, &mut out)
        .ok()
        .map(|_| out);
    Start {
        model,
        round,
        accepted: models.keys().copied().collect(),
        rejected,
    }
}

fn check(
    run: RunId,
    dim: usize,
    limit: usize,
    from: PeerKey,
    bytes: &[u8],
) -> Result<(u64, Vec<f32>), Rejection> {
    let update = wire::decode_update(bytes, limit).map_err(|e| Rejection::of(&e))?;
    let h = update.header();
    if h.sender != from {
        return Err(Rejection::Impersonation);
    }
    if h.run != run {
        return Err(Rejection::WrongRun);
    }
    let params = update.params(dim).map_err(|e| Rejection::of(&e))?;
    Ok((h.round, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::Identity;

    fn signed(id: &Identity, run: RunId, round: u64, params: &[f32]) -> Vec<u8> {
        let payload = wire::encode_params(params);
        wire::encode_update(id, run, round, 1, Codec::F32Le, &payload).0
    }

    #[test]
    fn mixes_checked_answers_by_median_and_names_the_bad_ones() {
        let run = RunId::derive(b"run");
        let ids: Vec<Identity> = (1..=6u8).map(|i| Identity::from_secret([i; 32])).collect();
        let honest = [
            (0, 10, [1.0, 2.0]),
            (1, 12, [1.2, 2.2]),
            (2, 11, [0.8, 1.8]),
        ];
        let mut answers: Vec<(PeerKey, Vec<u8>)> = honest
            .iter()
            .map(|(i, r, m)| (ids[*i].public(), signed(&ids[*i], run, *r, m)))
            .collect();
        // A liar with a huge model and round: outvoted by the median.
        answers.push((ids[3].public(), signed(&ids[3], run, 1000, &[1e6, -1e6])));
        // Another run, a wrong dimension, a forged sender.
        answers.push((
            ids[4].public(),
            signed(&ids[4], RunId::derive(b"x"), 10, &[1.0, 2.0]),
        ));
        answers.push((ids[5].public(), signed(&ids[5], run, 10, &[1.0])));
        let forged = signed(&ids[0], run, 10, &[5.0, 5.0]);
        let liar = Identity::from_secret([9; 32]).public();
        answers.push((liar, forged));
        let start = join(run, 2, answers.iter().map(|(k, b)| (*k, b.as_slice())));
        let model = start.model.unwrap();
        assert!((0.8..=1.2).contains(&model[0]) && (1.8..=2.2).contains(&model[1]));
        assert_eq!(start.round, 11);
        assert_eq!(start.accepted.len(), 4);
        let mut reasons: Vec<Rejection> = start.rejected.iter().map(|(_, r)| *r).collect();
        reasons.sort();
        let mut expected = vec![
            Rejection::WrongRun,
            Rejection::WrongDimension,
            Rejection::Impersonation,
        ];
        expected.sort();
        assert_eq!(reasons, expected);
    }

    #[test]
    fn no_valid_answer_gives_no_model() {
        let run = RunId::derive(b"run");
        let id = Identity::from_secret([1; 32]);
        let mut bytes = signed(&id, run, 3, &[1.0, 2.0]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let start = join(run, 2, [(id.public(), bytes.as_slice())]);
        assert_eq!(start.model, None);
        assert_eq!(start.round, 0);
        assert_eq!(start.rejected, vec![(id.public(), Rejection::Malformed)]);
    }
}
