//! Hostile bytes never panic the decoders or the engine, and never make them allocate beyond
//! the message limit.
//!
//! A deterministic fuzz loop: 1,000,000 inputs (set `MURMUR_FUZZ_CASES` for more), half random
//! byte strings of random lengths and half mutations of valid updates, announcements and evidence
//! (bit flips, byte overwrites, truncations, extensions, splices, and length fields set to
//! extreme values). Every input goes through `wire::decode_update`, `wire::decode_announcement`,
//! `Equivocation::decode` and a live engine. A counting global allocator records the largest
//! single allocation made while decoding.
//!
//! A second loop signs hostile payloads in every codec (so they pass the signature and reach the
//! payload decoder): random bytes of the right and wrong sizes, and valid encodings whose scales
//! or values were overwritten with extremes, each fed to a live engine in that codec as the
//! answer to its own fetch.
#![allow(unsafe_code)] // the counting allocator

use murmur_protocol::engine::{Config, Engine, Input, Output, Setup};
use murmur_protocol::evidence::Equivocation;
use murmur_protocol::sparse;
use murmur_protocol::wire::{self, Codec};
use murmur_protocol::{Identity, RunId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

struct Counting;

// Per thread: the tests of this file run in parallel and each measures only its own decoding.
thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TRACKING: Cell<bool> = const { Cell::new(false) };
}

fn track(size: usize) {
    if TRACKING.get() {
        LARGEST.set(LARGEST.get().max(size));
    }
}

/// Runs `f` with this thread's allocations tracked.
fn tracked<R>(f: impl FnOnce() -> R) -> R {
    TRACKING.set(true);
    let r = f();
    TRACKING.set(false);
    r
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DIM: usize = 64;

fn identity(seed: u8) -> Identity {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = seed.wrapping_add((i as u8).wrapping_mul(29));
    }
    Identity::from_secret(s)
}

fn seeds(run: RunId) -> Vec<Vec<u8>> {
    let a = identity(1);
    let params: Vec<f32> = (0..DIM).map(|i| i as f32 * 0.5).collect();
    let (update, h1) =
        wire::encode_update(&a, run, 7, 32, Codec::F32Le, &wire::encode_params(&params));
    let (_, h2) = wire::encode_update(
        &a,
        run,
        7,
        32,
        Codec::F32Le,
        &wire::encode_params(&[1.0; DIM]),
    );
    let ann = wire::encode_announcement(&h1);
    let evidence = Equivocation::new(h1, h2).unwrap().encode();
    vec![update, ann, evidence]
}

fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..7) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            2 => b.truncate(rng.random_range(0..=b.len())),
            3 => {
                let extra = rng.random_range(1..64);
                b.extend((0..extra).map(|_| rng.random::<u8>()));
            }
            4 if b.len() > 99 => {
                // Header length field: extreme values.
                let v: u16 = [0, 1, 255, 256, 257, u16::MAX][rng.random_range(0..6)];
                b[97..99].copy_from_slice(&v.to_le_bytes());
            }
            5 if b.len() > 8 => {
                // Splice: copy a run of bytes to another place.
                let len = rng.random_range(1..8);
                let from = rng.random_range(0..b.len() - len);
                let to = rng.random_range(0..b.len() - len);
                let run: Vec<u8> = b[from..from + len].to_vec();
                b[to..to + len].copy_from_slice(&run);
            }
            _ => {
                // Any 8-byte window set to all ones (large varints and lengths).
                if b.len() > 8 {
                    let i = rng.random_range(0..b.len() - 8);
                    b[i..i + 8].fill(0xff);
                }
            }
        }
    }
    b
}

/// What keeps an engine with no fetch outstanding going: the training it asked for, or time
/// passing (10 s) until its round times out.
fn wake_up(train: &mut Option<u64>, now: &mut Duration) -> Input {
    match train.take() {
        Some(round) => Input::Trained {
            round,
            params: vec![0.0; DIM],
            samples: 1,
        },
        None => {
            *now += Duration::from_secs(10);
            Input::Tick
        }
    }
}

#[test]
fn a_million_hostile_inputs_neither_panic_nor_over_allocate() {
    let cases: usize = std::env::var("MURMUR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let run = RunId::derive(b"fuzz");
    let seeds = seeds(run);
    let mut engine = Engine::new(Setup {
        identity: identity(9),
        run,
        config: Config::default(),
        model: vec![0.0; DIM],
        seed: 1,
        adversary: None,
        weights: Default::default(),
        members: None,
    })
    .unwrap();
    let start = Input::Start {
        resume: Default::default(),
        join: false,
    };
    engine.handle(Duration::ZERO, start).unwrap();
    let limit = engine.max_update_bytes();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut accepted = 0usize;
    let mut peers: Vec<Identity> = (10..20).map(identity).collect();
    peers.push(identity(1));
    // Half the inputs answer the engine's own fetches (the path models take), so the engine
    // must be kept training and asking: `asked` holds the peers it is waiting on.
    let mut now = Duration::ZERO;
    let (mut asked, mut train) = (Vec::new(), None);
    let record = |engine: &mut Engine, asked: &mut Vec<_>, train: &mut Option<u64>| {
        while let Some(out) = engine.poll() {
            match out {
                Output::Train { round } => *train = Some(round),
                Output::Fetch {
                    peer,
                    round: Some(_),
                    ..
                } => asked.push(peer),
                _ => {}
            }
        }
    };
    for p in &peers {
        engine
            .handle(now, Input::PeerUp { peer: p.public() })
            .unwrap();
    }
    record(&mut engine, &mut asked, &mut train);
    for case in 0..cases {
        let bytes = if case % 2 == 0 {
            let len = match rng.random_range(0..4) {
                0 => rng.random_range(0..16),
                1 => rng.random_range(0..wire::PREFIX + 8),
                2 => rng.random_range(0..limit + 64),
                _ => rng.random_range(0..1024),
            };
            let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if !b.is_empty() {
                b[0] = rng.random_range(0..5); // mostly valid kinds, so decoding goes deeper
            }
            b
        } else {
            let which = rng.random_range(0..seeds.len());
            mutate(&mut rng, &seeds[which])
        };
        let u = tracked(|| {
            let u = wire::decode_update(&bytes, limit);
            let _ = wire::decode_announcement(&bytes);
            let _ = Equivocation::decode(&bytes);
            u
        });
        if let Ok(u) = &u {
            let _ = u.params(DIM);
            accepted += 1;
        }
        let from = peers[rng.random_range(0..peers.len())].public();
        let bytes: Arc<[u8]> = bytes.into();
        let input = match case % 4 {
            1 => Input::GossipReceived {
                author: from,
                relayer: from,
                message: case as u64,
                bytes,
            },
            3 => Input::UpdateReceived { from, bytes },
            _ => {
                if asked.is_empty() {
                    let wake = wake_up(&mut train, &mut now);
                    engine.handle(now, wake).unwrap();
                    record(&mut engine, &mut asked, &mut train);
                }
                match asked.pop() {
                    Some(peer) => Input::Fetched {
                        peer,
                        update: Some(bytes),
                    },
                    // Every peer banned: what is left to try is pushing.
                    None => Input::UpdateReceived { from, bytes },
                }
            }
        };
        engine
            .handle(now, input)
            .expect("peers' input is never the caller's error");
        record(&mut engine, &mut asked, &mut train);
    }
    let largest = LARGEST.get();
    println!(
        "{cases} hostile inputs: {accepted} decoded as valid updates, largest allocation {largest} bytes (limit {limit})"
    );
    assert!(
        largest <= limit,
        "a decode allocated {largest} bytes, limit {limit}"
    );
    assert!(
        cases < 1000 || accepted < cases / 100,
        "mutations should almost never stay valid"
    );
    assert!(engine.stats().rejected.values().sum::<u64>() > 0);
}

/// What the engine of the signed-payload test asked for and did.
#[derive(Default)]
struct Seen {
    asked: Vec<(murmur_protocol::PeerKey, u64)>,
    train: Option<u64>,
    mixed: usize,
    banned: Vec<murmur_protocol::PeerKey>,
}

impl Seen {
    fn record(&mut self, engine: &mut Engine, codec: Codec) {
        while let Some(out) = engine.poll() {
            match out {
                Output::Train { round } => self.train = Some(round),
                Output::Fetch {
                    peer,
                    round: Some(r),
                    ..
                } => self.asked.push((peer, r)),
                Output::Mixed { params, .. } => {
                    let finite = params.as_ref().map(|p| p.iter().all(|v| v.is_finite()));
                    assert_eq!(finite, Some(true), "{codec}: {params:?}");
                    self.mixed += 1;
                }
                Output::Ban { peer, .. } => self.banned.push(peer),
                _ => {}
            }
        }
    }
}

/// A hostile `top-k` increment of `k` coordinates for round `round`: a base that follows on or
/// not, indices in order or not and in range or not, values that are extreme or not; or random
/// bytes of about its size.
fn hostile_increment(rng: &mut ChaCha8Rng, k: usize, round: u64) -> Vec<u8> {
    let size = sparse::payload_len(k);
    if rng.random_bool(0.2) {
        let len = [size, size - 1, size + 1, 0][rng.random_range(0..4)];
        return (0..len).map(|_| rng.random()).collect();
    }
    let base = [
        round.saturating_sub(1),
        0,
        rng.random_range(0..round + 2),
        u64::MAX,
    ][rng.random_range(0..4)];
    let mut indices: Vec<u32> = (0..k)
        .map(|_| match rng.random_range(0..8) {
            0 => u32::MAX,
            1 => DIM as u32,
            _ => rng.random_range(0..DIM as u32),
        })
        .collect();
    if rng.random_bool(0.8) {
        indices.sort_unstable();
        indices.dedup();
        while indices.len() < k {
            indices.push(indices.last().map_or(0, |i| i.saturating_add(1)));
        }
    }
    let mut p = base.to_le_bytes().to_vec();
    indices
        .iter()
        .for_each(|i| p.extend_from_slice(&i.to_le_bytes()));
    for _ in 0..k {
        let v: f32 = match rng.random_range(0..10) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::MAX,
            3 => -1e30,
            _ => rng.random_range(-2.0..2.0),
        };
        p.extend_from_slice(&v.to_le_bytes());
    }
    p
}

/// A hostile payload for `codec`: random bytes of about the right size, or a valid encoding
/// with some scales or values overwritten by extremes.
fn hostile_payload(rng: &mut ChaCha8Rng, codec: Codec) -> Vec<u8> {
    let size = codec.payload_len(DIM);
    match rng.random_range(0..4) {
        0 => {
            let len = [size, size - 1, size + 1, 0, rng.random_range(0..2 * size)]
                [rng.random_range(0..5)];
            (0..len).map(|_| rng.random()).collect()
        }
        _ => {
            let params: Vec<f32> = (0..DIM).map(|_| rng.random_range(-2.0..2.0)).collect();
            let mut p = murmur_protocol::codec::encode(codec, &params, rng.random());
            for _ in 0..rng.random_range(1..=3) {
                let extreme: f32 = [
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::NAN,
                    f32::MAX,
                    -f32::MAX,
                    f32::MIN_POSITIVE / 2.0,
                    0.0,
                    -1e30,
                ][rng.random_range(0..8)];
                // Anywhere four bytes fit: a scale of a blockwise codec, or a value.
                let at = rng.random_range(0..=p.len() - 4);
                let at = at - at % 4;
                match codec {
                    Codec::F32Le
                    | Codec::Int8 { .. }
                    | Codec::Int4 { .. }
                    | Codec::TopK { .. }
                    | Codec::TopKWhole { .. } => {
                        p[at..at + 4].copy_from_slice(&extreme.to_le_bytes())
                    }
                    _ => {
                        let half = wire::f32_to_bf16(extreme).to_le_bytes();
                        p[at..at + 2].copy_from_slice(&half);
                    }
                }
                if rng.random_bool(0.3) {
                    let i = rng.random_range(0..p.len());
                    p[i] = [0x80, 0x7f, 0xff, 0x88][rng.random_range(0..4)];
                }
            }
            p
        }
    }
}

#[test]
fn signed_hostile_payloads_in_every_codec_neither_panic_nor_over_allocate() {
    let cases: usize = std::env::var("MURMUR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(20_000, |n| n / 50);
    let run = RunId::derive(b"fuzz payloads");
    // A banned peer is replaced by a new one, so the payloads keep reaching the decoder.
    let fresh = |n: u64| {
        let mut secret = [7u8; 32];
        secret[..8].copy_from_slice(&n.to_le_bytes());
        Identity::from_secret(secret)
    };
    for codec in [
        Codec::F32Le,
        Codec::Bf16Le,
        Codec::F16Le,
        Codec::Int8 { block: 16 },
        Codec::Int4 { block: 16 },
        Codec::TopK { ppm: 62_500 },
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(0xc0dec);
        let mut peers: Vec<Identity> = (0..4).map(fresh).collect();
        let config = Config {
            codec,
            fanout: peers.len(),
            wait_for: peers.len(),
            outlier_factor: 0.0,
            ..Config::default()
        };
        let mut engine = Engine::new(Setup {
            identity: identity(9),
            run,
            config,
            model: vec![0.0; DIM],
            seed: 1,
            adversary: None,
            weights: Default::default(),
            members: None,
        })
        .unwrap();
        let limit = engine.max_update_bytes();
        let mut now = Duration::ZERO;
        let start = Input::Start {
            resume: Default::default(),
            join: false,
        };
        engine.handle(now, start).unwrap();
        for p in &peers {
            engine
                .handle(now, Input::PeerUp { peer: p.public() })
                .unwrap();
        }
        let mut seen = Seen::default();
        seen.record(&mut engine, codec);
        let mut valid = 0usize;
        for _ in 0..cases {
            for peer in std::mem::take(&mut seen.banned) {
                let next = fresh(peers.len() as u64);
                engine.handle(now, Input::PeerDown { peer }).unwrap();
                engine
                    .handle(
                        now,
                        Input::PeerUp {
                            peer: next.public(),
                        },
                    )
                    .unwrap();
                peers.push(next);
            }
            let Some((peer, round)) = seen.asked.pop() else {
                let wake = wake_up(&mut seen.train, &mut now);
                engine.handle(now, wake).unwrap();
                seen.record(&mut engine, codec);
                continue;
            };
            let author = peers.iter().find(|p| p.public() == peer).unwrap();
            let top_k = codec.top_k(DIM).filter(|_| rng.random_bool(0.5));
            // With `top-k`, increments in its codec and whole models in its whole-model form.
            let (payload, signed_as) = match top_k {
                Some(k) => (hostile_increment(&mut rng, k, round), codec),
                None => (hostile_payload(&mut rng, codec.whole()), codec.whole()),
            };
            let (mut bytes, _) = wire::encode_update(author, run, round, 1, signed_as, &payload);
            if top_k.is_some() && rng.random_bool(0.3) {
                // A bundle: this increment after another, or after a bundle, or alone.
                let (other, _) =
                    wire::encode_update(author, run, round.saturating_sub(1), 1, codec, &payload);
                let nested = sparse::encode_bundle(&[&other]);
                let first: &[u8] = [&other[..], &nested[..], &[]][rng.random_range(0..3)];
                bytes = match first.is_empty() {
                    true => sparse::encode_bundle(&[&bytes]),
                    false => sparse::encode_bundle(&[first, &bytes]),
                };
            }
            let decoded =
                tracked(|| wire::decode_update(&bytes, limit).and_then(|u| u.params(DIM)));
            if let Ok(params) = decoded {
                assert!(params.iter().all(|v| v.is_finite()), "{codec}");
                valid += 1;
            }
            let input = Input::Fetched {
                peer,
                update: Some(bytes.into()),
            };
            engine
                .handle(now, input)
                .expect("peers' input is never the caller's error");
            seen.record(&mut engine, codec);
        }
        let mixed = seen.mixed;
        let largest = LARGEST.get();
        let rejected = &engine.stats().rejected;
        println!(
            "{codec}: {cases} signed hostile payloads, {valid} valid, {mixed} mixes, largest \
             allocation {largest} bytes (limit {limit}), rejected {rejected:?}"
        );
        assert!(
            largest <= limit,
            "{codec}: allocated {largest}, limit {limit}"
        );
        assert!(
            valid > cases / 20,
            "{codec}: the valid encodings should mostly pass"
        );
        assert!(mixed > cases / 20, "{codec}: the engine should keep mixing");
        for reason in ["non_finite", "wrong_dimension"] {
            let r = murmur_protocol::engine::Rejection::from_name(reason).unwrap();
            assert!(
                rejected.get(&r).copied().unwrap_or(0) > 0,
                "{codec}: no {reason}"
            );
        }
    }
}
