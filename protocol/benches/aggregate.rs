//! Throughput of every aggregation rule at n = 16 inputs of d = 1,000,000 parameters, reported
//! as input bytes per second (16 · d · 4 bytes per call), next to a plain copy of the same bytes
//! into a preallocated buffer measured in the same run.
//!
//! Run: `cargo bench -p murmur-protocol --bench aggregate`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use murmur_protocol::aggregate::{Aggregator, Config, Pre, Rule, Tau};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 16;
const D: usize = 1_000_000;

fn configs() -> Vec<Config> {
    let rule = |rule| Config {
        rule,
        pre: Vec::new(),
    };
    vec![
        Config::mean(),
        rule(Rule::ClippedGossip {
            tau: Tau::Fixed(1.0),
        }),
        rule(Rule::ClippedGossip {
            tau: Tau::Adaptive { f: 1 },
        }),
        rule(Rule::Median),
        rule(Rule::TrimmedMean { f: 2 }),
        rule(Rule::TrimmedMean { f: 5 }),
        rule(Rule::Krum { f: 2 }),
        rule(Rule::MultiKrum { f: 2, m: None }),
        rule(Rule::GeometricMedian {
            nu: 0.1,
            iterations: 3,
        }),
        rule(Rule::Monna { f: 2 }),
        rule(Rule::Meamed { f: 2 }),
        rule(Rule::CenteredClipping {
            tau: 1.0,
            iterations: 1,
        }),
        Config {
            rule: Rule::TrimmedMean { f: 2 },
            pre: vec![Pre::Nnm { f: 2 }],
        },
        Config {
            rule: Rule::Median,
            pre: vec![Pre::Bucketing { s: 2 }],
        },
    ]
}

fn aggregate(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let rows: Vec<Vec<f32>> = (0..N)
        .map(|_| (0..D).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let inputs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
    let own = rows[0].clone();
    let mut out = vec![0.0f32; D];

    let mut group = c.benchmark_group("aggregate");
    group
        .throughput(Throughput::Bytes((N * D * 4) as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    let mut copy = vec![0.0f32; N * D];
    group.bench_function("copy", |b| {
        b.iter(|| {
            for (dst, src) in copy.chunks_exact_mut(D).zip(&inputs) {
                dst.copy_from_slice(black_box(src));
            }
            black_box(&mut copy);
        })
    });
    drop(copy);

    for config in configs() {
        let mut agg = Aggregator::new(&config, D).unwrap();
        group.bench_function(config.name(), |b| {
            b.iter(|| {
                let r = agg.aggregate(&own, black_box(&inputs), &[], &mut rng, &mut out);
                black_box(r.unwrap());
                black_box(&mut out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
