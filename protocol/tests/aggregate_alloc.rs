//! Steady-state aggregation does not allocate: once an aggregator has handled a call with a
//! given number of inputs, further calls with that number allocate nothing.
//!
//! A counting global allocator counts the allocations made by the current thread while counting
//! is switched on.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use murmur_protocol::aggregate::{Aggregator, Config, Pre, Rule, Tau};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with` because the allocator may run while thread-locals are being torn down.
    let _ = ON.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Number of allocations made by this thread while running `f`.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ON.with(|on| on.set(true));
    f();
    ON.with(|on| on.set(false));
    COUNT.with(|c| c.get())
}

fn configs() -> Vec<Config> {
    let rule = |rule| Config {
        rule,
        pre: Vec::new(),
    };
    vec![
        Config::mean(),
        rule(Rule::Median),
        rule(Rule::TrimmedMean { f: 2 }),
        rule(Rule::Krum { f: 2 }),
        rule(Rule::MultiKrum { f: 2, m: None }),
        rule(Rule::MultiKrum { f: 2, m: Some(3) }),
        rule(Rule::GeometricMedian {
            nu: 0.1,
            iterations: 3,
        }),
        rule(Rule::CenteredClipping {
            tau: 1.0,
            iterations: 3,
        }),
        rule(Rule::ClippedGossip {
            tau: Tau::Fixed(1.0),
        }),
        rule(Rule::ClippedGossip {
            tau: Tau::Adaptive { f: 2 },
        }),
        Config {
            rule: Rule::TrimmedMean { f: 1 },
            pre: vec![Pre::Nnm { f: 2 }],
        },
        Config {
            rule: Rule::Median,
            pre: vec![Pre::Bucketing { s: 2 }],
        },
        Config {
            rule: Rule::Mean,
            pre: vec![Pre::Clipping { c: 1.0 }, Pre::Arc { f: 2 }],
        },
        Config {
            rule: Rule::CsPlus { f: 2 },
            pre: vec![],
        },
        Config {
            rule: Rule::Krum { f: 0 },
            pre: vec![
                Pre::Nnm { f: 1 },
                Pre::Bucketing { s: 2 },
                Pre::Clipping { c: 3.0 },
            ],
        },
    ]
}

#[test]
fn second_and_later_calls_do_not_allocate() {
    let (n, dim) = (9, 1000);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-2.0..2.0)).collect())
        .collect();
    let inputs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
    let weights: Vec<f32> = (0..n).map(|i| 1.0 + i as f32).collect();
    let own = rows[0].clone();
    let mut out = vec![0.0f32; dim];
    for config in configs() {
        let mut agg = Aggregator::new(&config, dim).unwrap();
        for weights in [&[][..], &weights[..]] {
            agg.aggregate(&own, &inputs, weights, &mut rng, &mut out)
                .unwrap();
            for call in 2..5 {
                let count = allocations(|| {
                    agg.aggregate(&own, &inputs, weights, &mut rng, &mut out)
                        .unwrap();
                });
                assert_eq!(count, 0, "{} allocated on call {call}", config.name());
            }
        }
    }
}

#[test]
fn the_counter_sees_allocations() {
    let count = allocations(|| {
        let v: Vec<u64> = std::hint::black_box(vec![1, 2, 3]);
        drop(v);
    });
    assert_eq!(count, 1);
}
