//! The payload codecs' own tests: rounding, bounds on hostile payloads, configs.

use super::*;

#[test]
fn bf16_payloads_round_to_nearest_even_and_decode_bounded() {
    // Exact for values with 8 significant bits; otherwise within half a unit in the last
    // place (at most 2^-8 relative).
    for v in [0.0f32, -0.0, 1.0, -2.5, 0.15625, 2.0f32.powi(100)] {
        assert_eq!(bf16_to_f32(f32_to_bf16(v)), v, "{v}");
    }
    for v in [0.1f32, -1.2345, 123.456, 1e-20, -7.7e10] {
        let back = bf16_to_f32(f32_to_bf16(v));
        assert!(((back - v) / v).abs() <= 1.0 / 256.0, "{v} -> {back}");
    }
    // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
    assert_eq!(bf16_to_f32(f32_to_bf16(1.0 + 1.0 / 256.0)), 1.0);
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    let params = [0.5f32, -1.25, 3.0];
    let payload = encode(Codec::Bf16Le, &params, 0);
    assert_eq!(payload.len(), Codec::Bf16Le.payload_len(3));
    let mut out = Vec::new();
    decode(Codec::Bf16Le, &payload, 3, &mut out).unwrap();
    assert_eq!(out, params);
    // The wrong length, and a value that is not finite, are named.
    assert_eq!(
        decode(Codec::Bf16Le, &payload[..5], 3, &mut out),
        Err(Error::Dimension {
            expected: 3,
            got: 2
        })
    );
    let inf = encode(Codec::Bf16Le, &[1.0, f32::INFINITY], 0);
    assert_eq!(
        decode(Codec::Bf16Le, &inf, 2, &mut out),
        Err(Error::NonFinite { index: 1 })
    );
}

#[test]
fn f16_payloads_keep_eleven_bits_and_saturate_instead_of_overflowing() {
    for v in [0.1f32, -1.2345, 123.456, 6.1e-5, -3000.5] {
        let back = half::f16::from_bits(f32_to_f16(v)).to_f32();
        assert!(((back - v) / v).abs() <= 1.0 / 2048.0, "{v} -> {back}");
    }
    // Beyond the range: the largest half, not infinity; NaN stays NaN (and is refused).
    assert_eq!(half::f16::from_bits(f32_to_f16(1e6)).to_f32(), 65504.0);
    assert_eq!(half::f16::from_bits(f32_to_f16(-1e30)).to_f32(), -65504.0);
    let payload = encode(Codec::F16Le, &[0.5, 1e6, f32::NAN], 0);
    assert_eq!(payload.len(), Codec::F16Le.payload_len(3));
    let mut out = Vec::new();
    assert_eq!(
        decode(Codec::F16Le, &payload, 3, &mut out),
        Err(Error::NonFinite { index: 2 })
    );
    decode(Codec::F16Le, &payload[..4], 2, &mut out).unwrap();
    assert_eq!(out, vec![0.5, 65504.0]);
}

/// Pseudo-random parameters of mixed magnitudes, for round trips.
fn params(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as f32 * 0.618_034).fract() - 0.5;
            x * if i % 97 == 0 { 3.0 } else { 0.2 }
        })
        .collect()
}

#[test]
fn blockwise_payloads_stay_within_one_level_and_are_unbiased() {
    for (codec, top) in [
        (Codec::Int8 { block: 64 }, 127.0f32),
        (Codec::Int4 { block: 32 }, 7.0),
    ] {
        // An odd count and a short last block.
        let p = params(1001);
        let payload = encode(codec, &p, 9);
        assert_eq!(payload.len(), codec.payload_len(p.len()), "{codec}");
        let mut out = Vec::new();
        decode(codec, &payload, p.len(), &mut out).unwrap();
        let block = match codec {
            Codec::Int8 { block } | Codec::Int4 { block } => block as usize,
            _ => unreachable!(),
        };
        for (b, (chunk, back)) in p.chunks(block).zip(out.chunks(block)).enumerate() {
            let step = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs())) / top;
            for (i, (v, w)) in chunk.iter().zip(back).enumerate() {
                assert!(
                    (v - w).abs() <= step * 1.0001,
                    "{codec}: block {b} value {i}: {v} -> {w}, step {step}"
                );
            }
            // The largest magnitude is exact: it is the top level.
            let largest = chunk.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            let back_largest = back.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            assert!((largest - back_largest).abs() <= largest * 1e-6, "{codec}");
        }
        // Stochastic rounding is unbiased: averaged over many seeds, a value between two
        // levels decodes to itself, not to the nearer level.
        let v = [1.0f32, 0.3];
        let mut sum = 0.0f64;
        let draws = 20_000;
        for seed in 0..draws {
            let payload = encode(codec, &v, seed);
            decode(codec, &payload, 2, &mut out).unwrap();
            sum += f64::from(out[1]);
        }
        let mean = sum / draws as f64;
        assert!((mean - 0.3).abs() < 0.002, "{codec}: mean {mean}");
        // The same seed, the same bytes; another seed, other bytes.
        assert_eq!(encode(codec, &p, 9), payload);
        assert_ne!(encode(codec, &p, 10), payload);
    }
}

#[test]
fn blockwise_payloads_decode_bounded_and_refuse_what_is_not_finite() {
    let codec = Codec::Int8 { block: 16 };
    let p = params(40);
    let payload = encode(codec, &p, 1);
    let mut out = Vec::new();
    // A payload for another dimension is refused by size, whatever the sender claims.
    for dim in [39, 41, 0, usize::MAX / 8] {
        assert!(
            matches!(
                decode(codec, &payload, dim, &mut out),
                Err(Error::PayloadSize { .. })
            ),
            "dim {dim}"
        );
    }
    assert!(decode(codec, &payload[..payload.len() - 1], 40, &mut out).is_err());
    // Zeros decode as zeros; a zero scale is fine.
    let zeros = encode(codec, &[0.0; 20], 3);
    decode(codec, &zeros, 20, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));
    // A hostile scale: infinite, NaN, or so large that a level overflows.
    for (scale, index) in [(f32::INFINITY, 0), (f32::NAN, 0), (f32::MAX, 0)] {
        let mut bad = payload.clone();
        bad[4..8].copy_from_slice(&scale.to_le_bytes());
        // Block 1 starts at parameter 16; make its first level non-zero.
        bad[3 * 4 + 16] = 5;
        assert_eq!(
            decode(codec, &bad, 40, &mut out),
            Err(Error::NonFinite { index: 16 + index }),
            "scale {scale}"
        );
    }
    // Every byte pattern of the levels is a valid model (-128 and -8 included).
    let mut extreme = payload.clone();
    extreme[3 * 4] = 0x80;
    decode(codec, &extreme, 40, &mut out).unwrap();
    let s0 = f32::from_le_bytes(payload[0..4].try_into().unwrap());
    assert_eq!(out[0], -128.0 * s0);
    let c4 = Codec::Int4 { block: 16 };
    let mut four = encode(c4, &p, 1);
    four[3 * 4] = 0x8F; // levels -1 (lower nibble) and -8 (upper)
    decode(c4, &four, 40, &mut out).unwrap();
    let s0 = f32::from_le_bytes(four[0..4].try_into().unwrap());
    assert_eq!((out[0], out[1]), (-s0, -8.0 * s0));
    // A model that holds NaN encodes to a payload receivers refuse, as f32 does.
    let mut nan = p.clone();
    nan[20] = f32::NAN;
    assert!(matches!(
        decode(codec, &encode(codec, &nan, 1), 40, &mut out),
        Err(Error::NonFinite { index: 16 })
    ));
}

/// `validate` gives the verdict `decode` gives, for every codec and for payloads that are
/// valid, of the wrong size, or hold a non-finite value.
#[test]
fn validating_agrees_with_decoding() {
    let p = params(40);
    let codecs = [
        Codec::F32Le,
        Codec::Bf16Le,
        Codec::F16Le,
        Codec::Int8 { block: 16 },
        Codec::Int4 { block: 16 },
    ];
    for codec in codecs {
        let good = encode(codec, &p, 1);
        let mut nan = p.clone();
        nan[23] = f32::NAN;
        let mut inf = p.clone();
        inf[39] = f32::NEG_INFINITY;
        let payloads = [
            good.clone(),
            good[..good.len() - 1].to_vec(),
            encode(codec, &nan, 1),
            encode(codec, &inf, 1),
        ];
        for (i, payload) in payloads.iter().enumerate() {
            for dim in [40, 39] {
                let decoded = decode(codec, payload, dim, &mut Vec::new());
                assert_eq!(
                    validate(codec, payload, dim),
                    decoded,
                    "{codec:?}, case {i}"
                );
            }
        }
        assert_eq!(validate(codec, &good, 40), Ok(()));
    }
    let mut nan = encode(Codec::F32Le, &p, 1);
    nan[4 * 7..4 * 8].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(
        validate(Codec::F32Le, &nan, 40),
        Err(Error::NonFinite { index: 7 })
    );
}

#[test]
fn configs_name_codecs_and_their_blocks() {
    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    struct C {
        #[serde(with = "spec")]
        codec: Codec,
    }
    let parse = |t: &str| toml::from_str::<C>(t).map(|c| c.codec);
    assert_eq!(parse("codec = \"f32\"").unwrap(), Codec::F32Le);
    assert_eq!(parse("codec = \"bf16\"").unwrap(), Codec::Bf16Le);
    assert_eq!(
        parse("codec = \"int8\"").unwrap(),
        Codec::Int8 {
            block: DEFAULT_BLOCK
        }
    );
    assert_eq!(
        parse("codec = { kind = \"int4\", block = 64 }").unwrap(),
        Codec::Int4 { block: 64 }
    );
    for (bad, says) in [
        ("codec = \"int3\"", "unknown codec \"int3\""),
        (
            "codec = { kind = \"int8\", block = 4 }",
            "block 4 is outside",
        ),
        ("codec = { kind = \"f16\", block = 64 }", "takes no block"),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    for codec in [Codec::F16Le, Codec::Int8 { block: 128 }] {
        let text = toml::to_string(&C { codec }).unwrap();
        assert_eq!(parse(&text).unwrap(), codec, "{text}");
    }
    assert_eq!(spec::parse("int8:64"), Ok(Codec::Int8 { block: 64 }));
    assert_eq!(spec::parse("f32"), Ok(Codec::F32Le));
    assert!(spec::parse("int8:x").unwrap_err().contains("not a number"));
    // The wire form is the variant index and the block: another block is another codec.
    let wire = |c: Codec| bincode::serde::encode_to_vec(c, bincode::config::standard()).unwrap();
    assert_ne!(
        wire(Codec::Int8 { block: 64 }),
        wire(Codec::Int8 { block: 128 })
    );
    assert_eq!(wire(Codec::F32Le), vec![0]);
}
