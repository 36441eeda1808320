//! Encoding plus decoding a model of d = 1,000,000 parameters in every payload codec, reported
//! as `f32` input bytes per second (d · 4 bytes per call), next to a plain copy of the same
//! 4 MB into a preallocated buffer measured in the same run; and each codec's check of a payload
//! without decoding it (`validate`). The blockwise codecs' random
//! numbers for stochastic rounding are drawn inside the measured call.
//!
//! Run: `cargo bench -p murmur-protocol --bench codec`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use murmur_protocol::codec::{self, Codec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D: usize = 1_000_000;

fn round_trip(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let params: Vec<f32> = (0..D).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut out = Vec::with_capacity(D);

    let mut group = c.benchmark_group("codec");
    group
        .throughput(Throughput::Bytes((D * 4) as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    let mut copy = vec![0.0f32; D];
    group.bench_function("copy", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&params));
            black_box(&mut copy);
        })
    });
    drop(copy);

    let codecs = [
        Codec::F32Le,
        Codec::Bf16Le,
        Codec::F16Le,
        Codec::Int8 { block: 256 },
        Codec::Int4 { block: 256 },
    ];
    for codec in codecs {
        let mut seed = 0u64;
        group.bench_function(codec.name(), |b| {
            b.iter(|| {
                seed += 1;
                let payload = codec::encode(codec, black_box(&params), seed);
                codec::decode(codec, &payload, D, &mut out).unwrap();
                black_box(&mut out);
            })
        });
    }
    for codec in codecs {
        group.bench_function(format!("{}-encode", codec.name()), |b| {
            b.iter(|| black_box(codec::encode(codec, black_box(&params), 3)))
        });
        let payload = codec::encode(codec, &params, 1);
        group.bench_function(format!("{}-decode", codec.name()), |b| {
            b.iter(|| {
                codec::decode(codec, black_box(&payload), D, &mut out).unwrap();
                black_box(&mut out);
            })
        });
        group.bench_function(format!("{}-validate", codec.name()), |b| {
            b.iter(|| codec::validate(codec, black_box(&payload), D).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
