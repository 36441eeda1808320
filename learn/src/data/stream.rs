//! Named random streams derived from a run seed.
//!
//! Every random choice in learning comes from `ChaCha8Rng::seed_from_u64(seed)` switched to a
//! stream identifying its purpose (and, where it applies, the node index), so that one choice
//! never shifts another: changing the batch size does not change the test split, and node 3's
//! batches do not depend on how many nodes there are.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Initial model parameters.
pub const INIT: u64 = 1;
/// Train/test split.
pub const SPLIT: u64 = 2;
/// Partition of the training set across nodes.
pub const PARTITION: u64 = 3;
/// A node's batch order (the index is the node's).
pub const BATCHES: u64 = 4;
/// Synthetic data generation.
pub const SYNTHETIC: u64 = 5;

/// The generator for `purpose` (one of the constants above) and `index` under `seed`.
pub fn rng(seed: u64, purpose: u64, index: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((purpose << 32) | u64::from(index));
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_are_distinct_and_reproducible() {
        let a = rng(1, BATCHES, 0).next_u64();
        assert_eq!(a, rng(1, BATCHES, 0).next_u64());
        assert_ne!(a, rng(1, BATCHES, 1).next_u64());
        assert_ne!(a, rng(1, SPLIT, 0).next_u64());
        assert_ne!(a, rng(2, BATCHES, 0).next_u64());
    }
}
