use super::*;

/// Rows of every kind of value: of every sign and scale, subnormals, -0, and (when `bad`) a
/// NaN and infinities in some rows.
fn awkward_rows(n: usize, len: usize, bad: bool) -> Vec<Vec<f32>> {
    (0..n)
        .map(|r| {
            (0..len)
                .map(|i| {
                    let k = (i * 7919 + r * 104_729) % 1009;
                    let v = match k % 11 {
                        0 => -0.0,
                        1 => f32::MIN_POSITIVE / (k as f32 + 2.0),
                        2 => 3.0e37 / (k as f32 + 1.0),
                        _ => (k as f32 - 504.0) * 1.3e-3 * (r as f32 + 1.0),
                    };
                    (i, v)
                })
                .map(|(i, v)| match (bad, r, i) {
                    (true, 1, 5) => f32::NAN,
                    (true, 3, i) if i + 1 == len => f32::INFINITY,
                    (true, 4, 0) => f32::NEG_INFINITY,
                    _ => v,
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_wide_kernels_give_the_bits_of_the_baseline_ones() {
    // Each public kernel runs compiled for AVX2 where the processor has it; its `_in`/
    // `_blocks` body, called here directly, runs as built for the baseline. On a processor
    // without AVX2 both are the baseline and the test holds trivially.
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for len in [0, 1, 17, 1000, BLOCK + 10, 2 * BLOCK + 37] {
        for n in [1, 2, 3, 4, 5, 8, 9, 12] {
            for bad in [false, true] {
                let data = awkward_rows(n + 1, len, bad);
                let rows: Vec<&[f32]> = data[..n].iter().map(|r| &r[..]).collect();
                let rows = &rows[..];
                let center = &data[n];
                let at = format!("len {len}, n {n}, bad {bad}");
                let coefs: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.5)).collect();
                for extra in [None, Some((&center[..], 0.25f32))] {
                    let (mut a, mut b) = (vec![7.0; len], vec![7.0; len]);
                    let fa = combine(rows, &coefs, extra, &mut a);
                    let fb = combine_blocks(rows, &coefs, extra, &mut b);
                    assert_eq!((fa, bits(&a)), (fb, bits(&b)), "combine, {at}");
                }
                let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                sq_dists_to(rows, center, &mut a);
                sq_dists_in(rows, center, &mut b);
                assert_eq!(bits64(&a), bits64(&b), "sq_dists_to, {at}");
                let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n * n]);
                pairwise_sq_dists(rows, len, &mut a);
                pairwise_in(rows, len, &mut b);
                assert_eq!(bits64(&a), bits64(&b), "pairwise, {at}");
                assert_eq!(
                    first_non_finite(rows, len),
                    first_non_finite_in(rows, len),
                    "{at}"
                );
                for r in rows {
                    let (mut a, mut b) = (vec![7.0; len], vec![7.0; len]);
                    scale_into(&mut a, 0.3, r);
                    scale_lanes(&mut b, 0.3, r);
                    assert_eq!(bits(&a), bits(&b), "scale_into, {at}");
                    assert_eq!(all_finite(r), finite_lanes(r), "{at}");
                    assert_eq!(
                        sq_norm_f64(r).to_bits(),
                        sq_norm_blocks(r).to_bits(),
                        "{at}"
                    );
                    let (x, y) = (super::super::norm(r), super::super::norm_blocks(r));
                    assert_eq!(x.to_bits(), y.to_bits(), "norm, {at}");
                    let x = super::super::distance(r, center);
                    let y = super::super::distance_blocks(r, center);
                    assert_eq!(x.to_bits(), y.to_bits(), "distance, {at}");
                }
            }
        }
    }
}

#[test]
fn the_distance_from_zero_needs_no_zero_row_and_gives_the_same_bits() {
    // Lengths around a block and a lane, values of every sign and scale, -0 and NaN.
    for len in [0, 1, 15, 17, 1000, BLOCK - 1, BLOCK + 10, 3 * BLOCK + 7] {
        let mut x: Vec<f32> = (0..len)
            .map(|i| ((i * 7919) % 1009) as f32 * if i % 3 == 0 { -1e-3 } else { 37.5 })
            .collect();
        if len > 2 {
            x[1] = -0.0;
        }
        let zero = vec![0.0f32; len];
        let (a, b) = (sq_dist_from_zero(&x), sq_dist(&x, &zero));
        assert_eq!(a.to_bits(), b.to_bits(), "{len}");
        let (a, b) = (super::super::norm(&x), super::super::distance(&x, &zero));
        assert_eq!(a.to_bits(), b.to_bits(), "{len}");
        if len > 0 {
            x[len - 1] = f32::NAN;
            assert!(sq_dist_from_zero(&x).is_nan() && sq_dist(&x, &zero).is_nan());
        }
    }
}

#[test]
fn finiteness_is_detected_anywhere() {
    let mut v = vec![1.0f32; 37];
    assert!(all_finite(&v));
    for (i, bad) in [(3, f32::NAN), (20, f32::INFINITY), (36, f32::NEG_INFINITY)] {
        let keep = v[i];
        v[i] = bad;
        assert!(!all_finite(&v), "missed {bad} at {i}");
        v[i] = keep;
    }
    assert!(all_finite(&[f32::MAX, -f32::MAX, 0.0, -0.0]));
}

#[test]
fn first_non_finite_row_is_found_across_blocks() {
    let good = vec![1.0f32; 2 * BLOCK + 5];
    let mut late = good.clone();
    late[2 * BLOCK + 3] = f32::NAN;
    let mut early = good.clone();
    early[7] = f32::INFINITY;
    let dim = good.len();
    let rows: [&[f32]; 4] = [&good, &late, &early, &good];
    assert_eq!(first_non_finite(&rows[..], dim), Some(1));
    assert_eq!(first_non_finite(&rows[2..], dim), Some(0));
    assert_eq!(first_non_finite(&[&good[..], &good[..]][..], dim), None);
}

#[test]
fn distances_match_naive_sums() {
    let a: Vec<f32> = (0..2500).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..2500).map(|i| (i as f32 * 0.11).cos()).collect();
    let naive: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum();
    let rows: [&[f32]; 2] = [&a, &b];
    let mut d = [0.0; 4];
    pairwise_sq_dists(&rows[..], 2500, &mut d);
    assert!((d[1] - naive).abs() < 1e-3 * naive);
    assert_eq!(d[1], d[2]);
    assert_eq!(d[0], 0.0);
    let many: [&[f32]; 6] = [&a, &b, &a, &a, &b, &a];
    let mut to = [0.0; 6];
    sq_dists_to(&many[..], &b, &mut to);
    for (i, d) in to.iter().enumerate() {
        let want = if i % 3 == 1 { 0.0 } else { naive };
        assert!((d - want).abs() <= 1e-3 * naive, "{i}: {d} vs {want}");
    }
}

#[test]
fn combine_weights_rows_and_skips_zero_coefficients() {
    let a = vec![1.0f32; 3000];
    let b = vec![2.0f32; 3000];
    let rows: [&[f32]; 2] = [&a, &b];
    let mut out = vec![0.0f32; 3000];
    combine(&rows[..], &[0.25, 0.75], None, &mut out);
    assert!(out.iter().all(|&v| v == 1.75));
    combine(&rows[..], &[0.0, 0.5], None, &mut out);
    assert!(out.iter().all(|&v| v == 1.0));
    let c = vec![4.0f32; 3000];
    let seven: Vec<&[f32]> = (0..7)
        .map(|i| if i % 2 == 0 { &a[..] } else { &b[..] })
        .collect();
    for n in 0..=7 {
        let coefs = [0.0625; 7];
        combine(&seven[..n], &coefs[..n], Some((&c, 0.5)), &mut out);
        let want = 2.0 + 0.0625 * seven[..n].iter().map(|r| r[0]).sum::<f32>();
        assert!(out.iter().all(|&v| v == want), "n={n}");
    }
    let many: Vec<&[f32]> = (0..9)
        .map(|i| if i % 2 == 0 { &a[..] } else { &b[..] })
        .collect();
    combine(&many[..], &[0.1; 9], Some((&c, 0.1)), &mut out);
    assert!(out.iter().all(|&v| (v - 1.7).abs() < 1e-6));
}

#[test]
fn a_combine_with_help_is_the_same_bits() {
    use crate::assist::testing::Inline;
    for dim in [
        1000,
        BLOCK,
        BLOCK + 1,
        2 * BLOCK,
        3 * BLOCK + LANES + 3,
        101_770,
    ] {
        for n in [1, 3, 10, 11] {
            let rows: Vec<Vec<f32>> = (0..n)
                .map(|i| {
                    (0..dim)
                        .map(|j| ((i * 7 + j) % 13) as f32 * 0.37 - 2.0)
                        .collect()
                })
                .collect();
            let coefs: Vec<f32> = (0..n).map(|i| 1.0 / (i + 2) as f32).collect();
            let slices: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let held = SharedRows::copied(&rows);
            let mut want = vec![0.0f32; dim];
            assert!(combine(&slices[..], &coefs, None, &mut want));
            for first in [true, false] {
                let mut got = vec![f32::NAN; dim];
                let finite =
                    combine_assisted(&slices[..], &held, &coefs, &mut got, &Inline { first });
                assert!(finite, "dim {dim}, {n} rows, job first {first}");
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "dim {dim}, {n} rows, job first {first}");
            }
        }
    }
    // A non-finite value in either thread's share is reported.
    let dim = 4 * BLOCK;
    for at in [1, dim - 1] {
        let mut rows = vec![vec![1.0f32; dim]; 2];
        rows[1][at] = f32::NAN;
        let slices: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let mut out = vec![0.0f32; dim];
        let finite = combine_assisted(
            &slices[..],
            &SharedRows::copied(&rows),
            &[0.5, 0.5],
            &mut out,
            &Inline { first: true },
        );
        assert!(!finite, "NaN at {at}");
    }
}

#[test]
fn combine_reports_a_non_finite_output_in_any_block() {
    // Two blocks and a tail that is not a whole chunk of lanes.
    let dim = 2 * BLOCK + LANES + 3;
    let big = vec![f32::MAX; dim];
    let one = vec![1.0f32; dim];
    let mut out = vec![0.0f32; dim];
    let rows: [&[f32]; 2] = [&one, &big];
    assert!(combine(&rows[..], &[0.5, 0.5], None, &mut out));
    assert!(all_finite(&out));
    for at in [0, BLOCK - 1, BLOCK, 2 * BLOCK + 1, dim - 1] {
        // Finite rows whose sum overflows at one coordinate, and a NaN in a row.
        let mut over = one.clone();
        over[at] = f32::MAX;
        let rows: [&[f32]; 2] = [&over, &big];
        assert!(!combine(&rows[..], &[1.0, 1.0], None, &mut out), "{at}");
        assert!(!all_finite(&out));
        let mut nan = one.clone();
        nan[at] = f32::NAN;
        let rows: [&[f32]; 2] = [&one, &nan];
        assert!(!combine(&rows[..], &[0.5, 0.5], None, &mut out), "{at}");
        assert!(
            combine(&rows[..], &[1.0, 0.0], None, &mut out),
            "{at}: a row not read"
        );
    }
}
