//! Help from another thread with one long computation.
//!
//! The simulator drives many engines from one event loop, and most of what the loop does waits
//! on the step before it: a node signs the model its training job just returned, and the next
//! job of the run often waits for that update. While the loop signs, the worker threads that
//! train are often idle. An engine given an [`Assist`] ([`crate::engine::Engine::assist_with`])
//! hands such a thread part of two computations and does the rest itself:
//! - the digest of an update it signs ([`digest`]): BLAKE3 is a tree hash, so the parts are
//!   subtrees whose chaining values merge into the same digest, bit for bit;
//! - a plain mean whose inputs are all signed updates read in place (the aggregator's
//!   `combine_assisted`): the thread sums the upper blocks, each block computed alone as
//!   before, so the same bits.
//!
//! Where a part is computed changes nothing but the time it takes. The real node has no use for
//! one: it signs and mixes once a round.

use blake3::hazmat::{ChainingValue, HasherExt, Mode};
use std::sync::{Arc, Mutex};

/// Work handed to another thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// Threads that can take part of a computation the caller is in the middle of.
pub trait Assist: Send + Sync + std::fmt::Debug {
    /// Runs `job` on another thread if one is idle now, while this thread runs `here`, and
    /// returns once both have run. A job no other thread has started by the time `here` ends
    /// runs on this thread then, so the caller never waits for a thread to become free. `job`
    /// is dropped before this returns.
    fn join(&self, job: Job, here: &mut dyn FnMut());
}

/// The subtrees a payload is hashed in: 64 chunks of 1 KiB, the unit BLAKE3's own code hashes
/// widest, so each part runs at full speed.
const LEAF: usize = 64 * blake3::CHUNK_LEN;

/// Payloads shorter than this are hashed in one piece: handing over half of them would cost
/// more than it saves.
pub const MIN_SPLIT: usize = 4 * LEAF;

/// The BLAKE3 digest of `bytes[start..]`, with part of it hashed by `assist` if it has a thread
/// free and the payload is long enough. Always equal to `blake3::hash(&bytes[start..])`.
pub fn digest(bytes: &Arc<[u8]>, start: usize, assist: Option<&dyn Assist>) -> blake3::Hash {
    let len = bytes.len() - start;
    let Some(assist) = assist.filter(|_| len >= MIN_SPLIT) else {
        return blake3::hash(&bytes[start..]);
    };
    let leaves = leaves(len);
    // Every other leaf goes to the helper: the two shares differ by at most one leaf.
    let theirs: Vec<(usize, usize)> = leaves.iter().copied().skip(1).step_by(2).collect();
    let done: Arc<Mutex<Vec<ChainingValue>>> = Arc::default();
    let job: Job = {
        let (bytes, done) = (Arc::clone(bytes), Arc::clone(&done));
        Box::new(move || {
            let cvs = theirs
                .iter()
                .map(|&(a, b)| leaf(&bytes[start..], a, b))
                .collect();
            *done.lock().unwrap_or_else(|e| e.into_inner()) = cvs;
        })
    };
    let mut ours = Vec::new();
    assist.join(job, &mut || {
        ours = leaves
            .iter()
            .step_by(2)
            .map(|&(a, b)| leaf(&bytes[start..], a, b))
            .collect();
    });
    let theirs = std::mem::take(&mut *done.lock().unwrap_or_else(|e| e.into_inner()));
    assert_eq!(
        ours.len() + theirs.len(),
        leaves.len(),
        "an assist runs its job before it returns"
    );
    // Back in the leaves' order.
    let mut cvs = Vec::with_capacity(leaves.len());
    let (mut a, mut b) = (ours.into_iter(), theirs.into_iter());
    for k in 0..leaves.len() {
        cvs.push(if k % 2 == 0 { a.next() } else { b.next() }.expect("one per leaf"));
    }
    let mut cvs = cvs.as_slice();
    let mid = blake3::hazmat::left_subtree_len(len as u64) as usize;
    let left = cv(0, mid, &mut cvs);
    let right = cv(mid, len, &mut cvs);
    blake3::hazmat::merge_subtrees_root(&left, &right, Mode::Hash)
}

/// The chaining value of the subtree `payload[a..b]`.
fn leaf(payload: &[u8], a: usize, b: usize) -> ChainingValue {
    blake3::Hasher::new()
        .set_input_offset(a as u64)
        .update(&payload[a..b])
        .finalize_non_root()
}

/// The subtrees of at most [`LEAF`] bytes that a payload of `len` bytes splits into, in order,
/// as BLAKE3's tree splits it (each left child a power of two of chunks, at least half).
fn leaves(len: usize) -> Vec<(usize, usize)> {
    fn split(a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
        if b - a <= LEAF {
            out.push((a, b));
        } else {
            let mid = a + blake3::hazmat::left_subtree_len((b - a) as u64) as usize;
            split(a, mid, out);
            split(mid, b, out);
        }
    }
    let mut out = Vec::new();
    split(0, len, &mut out);
    out
}

/// The chaining value of the subtree `[a, b)`, from its leaves' (consumed from `cvs`).
fn cv(a: usize, b: usize, cvs: &mut &[ChainingValue]) -> ChainingValue {
    if b - a <= LEAF {
        let (first, rest) = cvs.split_first().expect("one value per leaf");
        *cvs = rest;
        return *first;
    }
    let mid = a + blake3::hazmat::left_subtree_len((b - a) as u64) as usize;
    let left = cv(a, mid, cvs);
    let right = cv(mid, b, cvs);
    blake3::hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash)
}

/// An [`Assist`] for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Assist, Job};

    /// Runs the job in this thread, before `here` (as a helper that finishes first would) or
    /// after it (as one taken back: no helper free). The crate uses no threads; the simulator's
    /// tests run jobs on its worker threads.
    #[derive(Debug)]
    pub(crate) struct Inline {
        pub first: bool,
    }

    impl Assist for Inline {
        fn join(&self, job: Job, here: &mut dyn FnMut()) {
            if self.first {
                job();
                here();
            } else {
                here();
                job();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Inline;
    use super::*;

    fn payload(len: usize) -> Arc<[u8]> {
        (0..len).map(|i| (i * 31 + i / 1024) as u8).collect()
    }

    #[test]
    fn the_digest_is_blake3s_wherever_its_parts_are_hashed() {
        // Around every boundary the split depends on: the least split, whole leaves, a partial
        // last leaf, a partial last chunk, and a payload starting after a header.
        let lens = [
            MIN_SPLIT,
            MIN_SPLIT + 1,
            5 * LEAF - 1,
            5 * LEAF,
            7 * LEAF + 1000,
            8 * LEAF,
            101_770 * 4,
            3_000_000,
        ];
        for len in lens {
            for start in [0, 1, 157] {
                let bytes = payload(start + len);
                let want = blake3::hash(&bytes[start..]);
                assert_eq!(digest(&bytes, start, None), want, "{len} alone");
                for first in [true, false] {
                    let got = digest(&bytes, start, Some(&Inline { first }));
                    assert_eq!(got, want, "{len} bytes after {start}, job first: {first}");
                }
            }
        }
    }

    #[test]
    fn an_update_signed_with_help_is_the_same_bytes() {
        let identity = crate::Identity::from_secret([7; 32]);
        let run = crate::RunId::derive(b"assist");
        let params: Vec<f32> = (0..101_770).map(|i| i as f32 * 1e-3).collect();
        let payload = crate::wire::encode_params(&params);
        let sign = |assist: Option<&dyn Assist>| {
            crate::wire::encode_update_shared_with(
                &identity,
                run,
                3,
                32,
                crate::codec::Codec::F32Le,
                payload.len(),
                |out| out.copy_from_slice(&payload),
                assist,
            )
        };
        let (alone, _) = sign(None);
        for first in [true, false] {
            let (helped, _) = sign(Some(&Inline { first }));
            assert_eq!(helped, alone, "job first: {first}");
        }
        let update = crate::wire::decode_update(&alone, crate::wire::max_update_len(params.len()))
            .expect("a valid update");
        assert_eq!(update.params(params.len()).unwrap(), params);
    }

    #[test]
    fn leaves_follow_blake3s_tree() {
        // 398 chunks: 256 on the left (four leaves), 142 on the right (two, then 14 chunks).
        let l = leaves(398 * 1024);
        let starts: Vec<usize> = l.iter().map(|&(a, _)| a / 1024).collect();
        assert_eq!(starts, [0, 64, 128, 192, 256, 320, 384]);
        assert_eq!(l.last(), Some(&(384 * 1024, 398 * 1024)));
    }

    #[test]
    fn a_short_payload_is_hashed_here_in_one_piece() {
        #[derive(Debug)]
        struct Refuses;
        impl Assist for Refuses {
            fn join(&self, _: Job, _: &mut dyn FnMut()) {
                panic!("asked to help with a short payload");
            }
        }
        let bytes = payload(MIN_SPLIT - 1);
        assert_eq!(digest(&bytes, 0, Some(&Refuses)), blake3::hash(&bytes));
    }
}
