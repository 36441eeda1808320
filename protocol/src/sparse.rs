//! Sparse increments (top-k with error feedback) and the bundle that carries several of them:
//! the building blocks of compressed differences against a reference both sides hold.
//!
//! A node keeps a public estimate `x̂` of its model. Each round it sends the `k` largest
//! coordinates (by magnitude) of `x - x̂` and adds them to `x̂` exactly as every receiver will,
//! so the receivers' copies of `x̂` stay bit-identical to the sender's; what was not sent stays in
//! `x - x̂` and is sent in a later round (error feedback). The increment names the round of the
//! estimate it applies to (its base), so a receiver applies increments in order, each once.
//!
//! Payload of an increment of a model of `dim` parameters with `k` coordinates:
//!
//! ```text
//! offset   size   field
//! 0        8      base: the round of the estimate it applies to (u64, little endian)
//! 8        4k     indices, strictly increasing, each below dim (u32, little endian)
//! 8 + 4k   4k     values, finite (f32, little endian)
//! ```
//!
//! `k` is not sent: both sides derive it from the model's dimension and the configured fraction
//! ([`count`]), so the payload's length is fixed and checked before anything is read.
//!
//! A bundle is several signed messages in one answer:
//!
//! ```text
//! 0        1      kind (4 = bundle)
//! 1        2      count n (u16, little endian), at most the caller's limit
//! then n times:   length l (u32, little endian), then l bytes (one signed update)
//! ```
//!
//! The engine's `top-k` codec builds its chains of increments from these (see
//! `engine::chain`): peers pull the increments since the round of the copy they hold, and get a
//! whole model when the sender no longer keeps them.

use crate::wire::Error;

/// First byte of a bundle.
pub const KIND_BUNDLE: u8 = 4;

/// Coordinates an increment of a `dim`-parameter model carries at a fraction of `ppm` parts per
/// million: `ceil(dim · ppm / 10⁶)`, at least 1 and at most `dim` (0 for an empty model).
pub fn count(dim: usize, ppm: u32) -> usize {
    let k = (dim as u64 * u64::from(ppm)).div_ceil(1_000_000) as usize;
    k.clamp(dim.min(1), dim)
}

/// Payload bytes of an increment of `k` coordinates.
pub fn payload_len(k: usize) -> usize {
    8 + 8 * k
}

/// Encodes the increment of `model` against `estimate` with `base` as its base: the `k` largest
/// coordinates of `model - estimate` by magnitude (ties to the lower index), which are then added
/// to `estimate`. `scratch` is reused between calls. Panics if the lengths differ or `k` exceeds
/// them (a caller's mistake, not a peer's).
pub fn encode_increment(
    base: u64,
    model: &[f32],
    estimate: &mut [f32],
    k: usize,
    scratch: &mut Vec<(f32, u32)>,
) -> Vec<u8> {
    assert_eq!(
        model.len(),
        estimate.len(),
        "model and estimate differ in length"
    );
    assert!(
        k <= model.len(),
        "k = {k} above the dimension {}",
        model.len()
    );
    scratch.clear();
    scratch.extend(
        model
            .iter()
            .zip(estimate.iter())
            .enumerate()
            .map(|(i, (&x, &e))| (x - e, i as u32)),
    );
    // Largest magnitude first, ties by index: the same selection on every machine.
    let order =
        |a: &(f32, u32), b: &(f32, u32)| b.0.abs().total_cmp(&a.0.abs()).then(a.1.cmp(&b.1));
    if k > 0 && k < scratch.len() {
        scratch.select_nth_unstable_by(k - 1, order);
    }
    scratch.truncate(k);
    scratch.sort_unstable_by_key(|&(_, i)| i);
    let mut out = Vec::with_capacity(payload_len(k));
    out.extend_from_slice(&base.to_le_bytes());
    for &(_, i) in scratch.iter() {
        out.extend_from_slice(&i.to_le_bytes());
    }
    for &(d, i) in scratch.iter() {
        out.extend_from_slice(&d.to_le_bytes());
        estimate[i as usize] += d;
    }
    out
}

/// The base round of an increment payload of `k` coordinates, after checking its length.
pub fn base_of(payload: &[u8], dim: usize, k: usize) -> Result<u64, Error> {
    let expected = payload_len(k);
    if payload.len() != expected {
        return Err(Error::PayloadSize {
            dim,
            expected,
            got: payload.len(),
        });
    }
    Ok(u64::from_le_bytes(
        payload[..8].try_into().expect("8 bytes"),
    ))
}

/// Checks an increment of `k` coordinates for a `dim`-parameter model and adds it to `estimate`.
/// Nothing is changed unless every check passes: the length, every index in range and above the
/// previous one, every value finite, and every sum finite. Returns the increment's base.
pub fn apply_increment(payload: &[u8], k: usize, estimate: &mut [f32]) -> Result<u64, Error> {
    let dim = estimate.len();
    let base = base_of(payload, dim, k)?;
    let (indices, values) = payload[8..].split_at(4 * k);
    let index = |j: usize| u32::from_le_bytes(indices[4 * j..4 * j + 4].try_into().expect("4"));
    let value = |j: usize| f32::from_le_bytes(values[4 * j..4 * j + 4].try_into().expect("4"));
    let mut previous: Option<u32> = None;
    for j in 0..k {
        let i = index(j);
        if i as usize >= dim || previous.is_some_and(|p| i <= p) {
            return Err(Error::SparseIndex {
                position: j,
                index: i,
            });
        }
        previous = Some(i);
        let sum = estimate[i as usize] + value(j);
        if !sum.is_finite() {
            return Err(Error::NonFinite { index: i as usize });
        }
    }
    for j in 0..k {
        estimate[index(j) as usize] += value(j);
    }
    Ok(base)
}

/// A bundle of `parts` (each a signed message).
pub fn encode_bundle(parts: &[&[u8]]) -> Vec<u8> {
    let count = u16::try_from(parts.len()).expect("at most 65535 parts");
    let len = 3 + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(KIND_BUNDLE);
    out.extend_from_slice(&count.to_le_bytes());
    for p in parts {
        let l = u32::try_from(p.len()).expect("a part below 4 GiB");
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The parts of a bundle, unchecked (each is a signed message to check as such). Refuses more
/// than `limit` bytes, more than `max_parts` parts, and any length that runs past the end or
/// leaves bytes over. Allocates only the list of slices, bounded by `max_parts`.
pub fn decode_bundle(bytes: &[u8], limit: usize, max_parts: usize) -> Result<Vec<&[u8]>, Error> {
    if bytes.len() > limit {
        return Err(Error::Oversize {
            got: bytes.len(),
            limit,
        });
    }
    if bytes.len() < 3 {
        return Err(Error::Truncated {
            need: 3,
            got: bytes.len(),
        });
    }
    if bytes[0] != KIND_BUNDLE {
        return Err(Error::WrongKind {
            expected: KIND_BUNDLE,
            got: bytes[0],
        });
    }
    let n = usize::from(u16::from_le_bytes([bytes[1], bytes[2]]));
    if n > max_parts {
        return Err(Error::Bundle("more parts than allowed"));
    }
    let mut parts = Vec::with_capacity(n);
    let mut rest = &bytes[3..];
    for _ in 0..n {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(Error::Bundle("a part's length is cut off"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > tail.len() {
            return Err(Error::Bundle("a part runs past the end"));
        }
        let (part, tail) = tail.split_at(len);
        parts.push(part);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(Error::Bundle("bytes after the last part"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn count_rounds_up_and_stays_within_the_dimension() {
        assert_eq!(count(101_770, 10_000), 1018); // 1%
        assert_eq!(count(10, 1), 1);
        assert_eq!(count(10, 1_000_000), 10);
        assert_eq!(count(0, 10_000), 0);
    }

    /// Sender and receiver end with bit-identical estimates; the estimate converges to a fixed
    /// model as increments are applied (error feedback: what was not sent is sent later), and
    /// the first increment carries the largest differences.
    #[test]
    fn increments_keep_the_copies_identical_and_feed_back_the_rest() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let dim = 1000;
        let model: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut sender = vec![0.0f32; dim];
        let mut receiver = vec![0.0f32; dim];
        let k = count(dim, 50_000); // 5%: 50 coordinates
        let mut scratch = Vec::new();
        let first = encode_increment(0, &model, &mut sender, k, &mut scratch);
        assert_eq!(first.len(), payload_len(k));
        let smallest_sent = (0..dim)
            .filter(|&i| sender[i] != 0.0)
            .map(|i| model[i].abs())
            .fold(f32::INFINITY, f32::min);
        let largest_unsent = (0..dim)
            .filter(|&i| sender[i] == 0.0)
            .map(|i| model[i].abs())
            .fold(0.0, f32::max);
        assert!(smallest_sent >= largest_unsent);
        assert_eq!(apply_increment(&first, k, &mut receiver), Ok(0));
        for round in 1..20u64 {
            let inc = encode_increment(round, &model, &mut sender, k, &mut scratch);
            assert_eq!(apply_increment(&inc, k, &mut receiver), Ok(round));
        }
        assert_eq!(sender, receiver, "bit-identical copies");
        // 20 rounds of 50 coordinates cover all 1000: the estimate is the model.
        assert_eq!(sender, model);
    }

    /// Every hostile payload is refused with its reason and leaves the estimate untouched.
    #[test]
    fn bad_increments_are_refused_whole() {
        let dim = 8;
        let k = 2;
        let build = |base: u64, idx: [u32; 2], val: [f32; 2]| {
            let mut p = base.to_le_bytes().to_vec();
            idx.iter()
                .for_each(|i| p.extend_from_slice(&i.to_le_bytes()));
            val.iter()
                .for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
            p
        };
        let mut estimate = vec![1.0f32; dim];
        let cases: Vec<(Vec<u8>, Error)> = vec![
            (
                build(3, [1, 8], [0.5, 0.5]),
                Error::SparseIndex {
                    position: 1,
                    index: 8,
                },
            ),
            (
                build(3, [4, 4], [0.5, 0.5]),
                Error::SparseIndex {
                    position: 1,
                    index: 4,
                },
            ),
            (
                build(3, [5, 2], [0.5, 0.5]),
                Error::SparseIndex {
                    position: 1,
                    index: 2,
                },
            ),
            (
                build(3, [1, 2], [0.5, f32::NAN]),
                Error::NonFinite { index: 2 },
            ),
            (
                build(3, [1, 2], [0.5, 0.5])[..20].to_vec(),
                Error::PayloadSize {
                    dim,
                    expected: 24,
                    got: 20,
                },
            ),
        ];
        for (payload, error) in cases {
            assert_eq!(apply_increment(&payload, k, &mut estimate), Err(error));
            assert_eq!(estimate, vec![1.0; dim], "untouched");
        }
        // Finite values whose sum with the estimate is not.
        let mut big = vec![f32::MAX; dim];
        assert_eq!(
            apply_increment(&build(3, [1, 2], [0.0, f32::MAX]), k, &mut big),
            Err(Error::NonFinite { index: 2 })
        );
        assert_eq!(big, vec![f32::MAX; dim], "untouched");
        let good = build(3, [0, 7], [0.5, -1.0]);
        assert_eq!(apply_increment(&good, k, &mut estimate), Ok(3));
        assert_eq!(estimate[0], 1.5);
        assert_eq!(estimate[7], 0.0);
    }

    /// Random bytes never panic either decoder, and a refused increment changes nothing.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut estimate = vec![0.5f32; 64];
        for _ in 0..20_000 {
            let len = rng.random_range(0..80);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let before = estimate.clone();
            if apply_increment(&bytes, 4, &mut estimate).is_err() {
                assert_eq!(estimate, before);
            }
            let mut bundle = bytes.clone();
            if let Some(b) = bundle.first_mut() {
                *b = KIND_BUNDLE;
            }
            let _ = decode_bundle(&bundle, 64, 8);
        }
    }

    #[test]
    fn bundles_round_trip_and_refuse_what_does_not_add_up() {
        let parts: [&[u8]; 3] = [b"one", b"", b"three!"];
        let bytes = encode_bundle(&parts);
        assert_eq!(decode_bundle(&bytes, 1000, 3).unwrap(), parts.to_vec());
        assert_eq!(
            decode_bundle(&bytes, 10, 3),
            Err(Error::Oversize {
                got: bytes.len(),
                limit: 10
            })
        );
        assert_eq!(
            decode_bundle(&bytes, 1000, 2),
            Err(Error::Bundle("more parts than allowed"))
        );
        assert_eq!(
            decode_bundle(&bytes[..bytes.len() - 1], 1000, 3),
            Err(Error::Bundle("a part runs past the end"))
        );
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            decode_bundle(&extra, 1000, 3),
            Err(Error::Bundle("bytes after the last part"))
        );
        let mut huge = encode_bundle(&[b"x"]);
        huge[3..7].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_bundle(&huge, 1000, 3),
            Err(Error::Bundle("a part runs past the end"))
        );
        assert!(matches!(
            decode_bundle(&[1, 0, 0], 1000, 3),
            Err(Error::WrongKind { .. })
        ));
        // Every truncation of a valid bundle is refused, never a panic.
        for cut in 0..bytes.len() {
            assert!(decode_bundle(&bytes[..cut], 1000, 3).is_err(), "cut {cut}");
        }
    }
}
