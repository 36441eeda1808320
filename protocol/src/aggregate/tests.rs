//! Tests of the public surface: configuration parsing and validation, input checks, edge cases.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    aggregation: Config,
}

fn parse(s: &str) -> Result<Config, String> {
    toml::from_str::<File>(s)
        .map(|f| f.aggregation)
        .map_err(|e| e.to_string())
}

fn all_rules() -> Vec<Config> {
    [
        "{ rule = \"mean\" }",
        "{ rule = \"median\" }",
        "{ rule = \"trimmed-mean\", f = 1 }",
        "{ rule = \"krum\", f = 1 }",
        "{ rule = \"multi-krum\", f = 1, m = 3 }",
        "{ rule = \"geometric-median\", nu = 0.1, iterations = 5 }",
        "{ rule = \"centered-clipping\", tau = 1.0, iterations = 2 }",
        "{ rule = \"clipped-gossip\", tau = 1.0 }",
        "{ rule = \"clipped-gossip\", adaptive-f = 1 }",
        "{ rule = \"monna\", f = 1 }",
        "{ rule = \"cs-plus\", f = 1 }",
        "{ rule = \"meamed\", f = 1 }",
        "{ rule = \"trimmed-mean\", f = 1, pre = [{ kind = \"nnm\", f = 1 }] }",
        "{ rule = \"mean\", pre = [{ kind = \"bucketing\", s = 2 }, \
         { kind = \"clipping\", c = 1000.0 }, { kind = \"arc\", f = 1 }] }",
    ]
    .iter()
    .map(|s| parse(&format!("aggregation = {s}")).unwrap())
    .collect()
}

#[test]
fn toml_examples_parse_to_typed_rules() {
    let c = parse(
        "aggregation = { rule = \"trimmed-mean\", f = 2, \
         pre = [{ kind = \"nnm\", f = 2 }, { kind = \"bucketing\", s = 2 }] }",
    )
    .unwrap();
    assert_eq!(c.rule, Rule::TrimmedMean { f: 2 });
    assert_eq!(c.pre, vec![Pre::Nnm { f: 2 }, Pre::Bucketing { s: 2 }]);
    assert_eq!(c.name(), "nnm(f=2)+bucketing(s=2)+trimmed-mean(f=2)");
    let c = parse("aggregation = { rule = \"clipped-gossip\", tau = 1 }").unwrap();
    assert_eq!(
        c.rule,
        Rule::ClippedGossip {
            tau: Tau::Fixed(1.0)
        }
    );
    let c = parse("aggregation = { rule = \"geometric-median\" }").unwrap();
    assert_eq!(
        c.rule,
        Rule::GeometricMedian {
            nu: 0.1,
            iterations: 3
        }
    );
    assert_eq!(
        parse("aggregation = { rule = \"mean\" }").unwrap(),
        Config::mean()
    );
    assert_eq!(Config::mean().name(), "mean");
    assert_eq!(Config::default().name(), "clipped-gossip(adaptive-f=2)");
}

#[test]
fn configs_round_trip_through_toml_and_json() {
    for c in all_rules().into_iter().chain([Config::default()]) {
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c, "{text}");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c, "{json}");
    }
}

#[test]
fn unknown_keys_and_bad_values_are_rejected_with_the_key_named() {
    let cases = [
        ("{ rule = \"mean\", f = 2 }", "`f`"),
        ("{ rule = \"trimmed-mean\" }", "`f`"),
        ("{ rule = \"trimmed-mean\", f = 2, typo = 1 }", "typo"),
        (
            "{ rule = \"median\", pre = [{ kind = \"nnm\", f = 2, s = 1 }] }",
            "s",
        ),
        ("{ rule = \"no-such-rule\" }", "no-such-rule"),
        ("{ rule = \"clipped-gossip\" }", "`tau`"),
        (
            "{ rule = \"clipped-gossip\", tau = 1.0, adaptive-f = 1 }",
            "adaptive-f",
        ),
        ("{ rule = \"clipped-gossip\", tau = -1.0 }", "`tau` = -1"),
        (
            "{ rule = \"centered-clipping\", tau = 1.0, iterations = 0 }",
            "`iterations` = 0",
        ),
        ("{ rule = \"geometric-median\", nu = 0.0 }", "`nu` = 0"),
        (
            "{ rule = \"median\", pre = [{ kind = \"bucketing\", s = 0 }] }",
            "`s` = 0",
        ),
        (
            "{ rule = \"median\", pre = [{ kind = \"clipping\", c = 0.0 }] }",
            "`c` = 0",
        ),
        ("{ rule = \"krum\", f = -1 }", "f"),
    ];
    for (text, needle) in cases {
        let err = parse(&format!("aggregation = {text}")).unwrap_err();
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn new_validates_configs_built_in_code() {
    let bad = Config {
        rule: Rule::ClippedGossip {
            tau: Tau::Fixed(f32::NAN),
        },
        pre: vec![],
    };
    assert!(matches!(
        Aggregator::new(&bad, 4),
        Err(ConfigError::Invalid { key: "tau", .. })
    ));
    assert_eq!(
        Aggregator::new(&Config::mean(), 0).unwrap_err(),
        ConfigError::ZeroDimension
    );
    assert!(Aggregator::new(&Config::default(), 4).is_ok());
}

#[test]
fn min_inputs_accounts_for_pre_aggregation() {
    let mut c = parse("aggregation = { rule = \"trimmed-mean\", f = 2 }").unwrap();
    assert_eq!(Aggregator::new(&c, 1).unwrap().min_inputs(), 5);
    c.pre = vec![Pre::Bucketing { s: 2 }];
    assert_eq!(Aggregator::new(&c, 1).unwrap().min_inputs(), 9);
    c.rule = Rule::Krum { f: 1 };
    c.pre = vec![];
    assert_eq!(Aggregator::new(&c, 1).unwrap().min_inputs(), 5);
    c.pre = vec![Pre::Nnm { f: 7 }];
    assert_eq!(Aggregator::new(&c, 1).unwrap().min_inputs(), 8);
}

#[test]
fn bad_inputs_are_refused_before_any_rule_runs() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let c = Config {
        rule: Rule::CenteredClipping {
            tau: 1.0,
            iterations: 1,
        },
        pre: vec![],
    };
    let mut agg = Aggregator::new(&c, 3).unwrap();
    let good = [1.0f32, 2.0, 3.0];
    let nan = [1.0f32, f32::NAN, 3.0];
    let short = [1.0f32, 2.0];
    let mut out = [7.0f32; 3];
    let mut call = |inputs: &[&[f32]], w: &[f32], out: &mut [f32]| {
        agg.aggregate(&[], inputs, w, &mut rng, out)
    };
    assert_eq!(
        call(&[&good, &nan], &[], &mut out),
        Err(Error::NonFinite { index: 1 })
    );
    assert_eq!(
        call(&[&good, &short], &[], &mut out),
        Err(Error::Dimension {
            index: 1,
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        call(&[], &[], &mut out),
        Err(Error::TooFew {
            rule: "centered-clipping",
            need: 1,
            got: 0
        })
    );
    assert_eq!(
        call(&[&good], &[1.0, 1.0], &mut out),
        Err(Error::WeightCount {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        call(&[&good, &good], &[1.0, 0.0], &mut out),
        Err(Error::Weight {
            index: 1,
            value: 0.0
        })
    );
    assert!(matches!(
        call(&[&good], &[f32::INFINITY], &mut out),
        Err(Error::Weight { index: 0, .. })
    ));
    assert_eq!(
        call(&[&good], &[], &mut out[..2]),
        Err(Error::OutputDimension {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(out, [7.0; 3], "output written on error");
    // The state was not touched: the first successful call starts from zero.
    let r = call(&[&[0.6, 0.0, 0.8]], &[], &mut out).unwrap();
    assert_eq!(
        r,
        Report {
            inputs: 1,
            clipped: 0
        }
    );
    assert_eq!(out, [0.6, 0.0, 0.8]);
}

#[test]
fn every_rule_names_the_first_non_finite_input_and_leaves_out_untouched() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let good: Vec<f32> = (0..40).map(|i| i as f32).collect();
    let mut nan = good.clone();
    nan[39] = f32::NAN;
    let mut inf = good.clone();
    inf[0] = f32::INFINITY;
    for c in all_rules() {
        let mut agg = Aggregator::new(&c, 40).unwrap();
        let mut inputs = vec![&good[..]; agg.min_inputs().max(4)];
        inputs[2] = &nan;
        inputs[3] = &inf;
        let mut out = vec![-1.0f32; 40];
        let r = agg.aggregate(&good, &inputs, &[], &mut rng, &mut out);
        assert_eq!(r, Err(Error::NonFinite { index: 2 }), "{}", c.name());
        assert!(
            out.iter().all(|&v| v == -1.0),
            "{} wrote its output",
            c.name()
        );
    }
}

#[test]
fn into_scratch_every_rule_gives_the_same_result_and_the_same_error() {
    let good: Vec<Vec<f32>> = (0..5)
        .map(|k| (0..40).map(|i| (i * (k + 1)) as f32 * 0.1 - 2.0).collect())
        .collect();
    let mut nan = good[1].clone();
    nan[7] = f32::NAN;
    for c in all_rules() {
        let (mut kept, mut scratch) = (
            Aggregator::new(&c, 40).unwrap(),
            Aggregator::new(&c, 40).unwrap(),
        );
        let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(3), ChaCha8Rng::seed_from_u64(3));
        let inputs: Vec<&[f32]> = good.iter().map(|g| &g[..]).collect();
        let (mut a, mut b) = (vec![0.0f32; 40], vec![0.0f32; 40]);
        let x = kept.aggregate_screened(&good[0], &inputs, &[], 0, &mut r1, &mut a);
        let y = scratch.aggregate_into(&good[0], &inputs, &[], 0, &mut r2, &mut b, false);
        assert_eq!(x, y, "{}", c.name());
        assert_eq!(a, b, "{}", c.name());
        let mut bad = inputs.clone();
        bad[2] = &nan;
        let x = kept.aggregate_screened(&good[0], &bad, &[], 0, &mut r1, &mut a);
        let y = scratch.aggregate_into(&good[0], &bad, &[], 0, &mut r2, &mut b, false);
        assert_eq!(x, Err(Error::NonFinite { index: 2 }), "{}", c.name());
        assert_eq!(x, y, "{}", c.name());
    }
}

#[test]
fn clipped_gossip_checks_the_own_model() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut agg = Aggregator::new(&Config::default(), 2).unwrap();
    let x = [1.0f32, 1.0];
    let mut out = [0.0; 2];
    assert_eq!(
        agg.aggregate(&[0.0], &[&x], &[], &mut rng, &mut out),
        Err(Error::OwnDimension {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        agg.aggregate(&[0.0, f32::NEG_INFINITY], &[&x], &[], &mut rng, &mut out),
        Err(Error::OwnNonFinite)
    );
    // The distance pass finds a NaN or an infinity in any input and names the first bad one.
    let nan = [0.0f32, f32::NAN];
    let inf = [f32::INFINITY, 0.0];
    assert_eq!(
        agg.aggregate(&x, &[&x, &x, &inf, &nan], &[], &mut rng, &mut out),
        Err(Error::NonFinite { index: 2 })
    );
}

#[test]
fn every_rule_returns_a_single_input_unchanged_and_equal_inputs_unchanged() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
    for c in all_rules() {
        let mut agg = Aggregator::new(&c, 37).unwrap();
        let n = agg.min_inputs().max(4);
        let inputs = vec![&x[..]; n];
        let mut out = vec![0.0; 37];
        agg.aggregate(&x, &inputs, &[], &mut rng, &mut out).unwrap();
        for (a, b) in out.iter().zip(&x) {
            // Centered clipping starts from zero and moves by at most tau per step.
            if !matches!(c.rule, Rule::CenteredClipping { .. }) {
                assert!((a - b).abs() < 1e-5, "{}: {a} vs {b}", c.name());
            }
        }
        if agg.min_inputs() == 1 && !matches!(c.rule, Rule::CenteredClipping { .. }) {
            agg.aggregate(&x, &[&x], &[], &mut rng, &mut out).unwrap();
            assert!(
                out.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5),
                "{}",
                c.name()
            );
        }
    }
}

#[test]
fn centered_clipping_converges_to_equal_inputs_over_calls() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let c = Config {
        rule: Rule::CenteredClipping {
            tau: 1.0,
            iterations: 1,
        },
        pre: vec![],
    };
    let mut agg = Aggregator::new(&c, 2).unwrap();
    let x = [3.0f32, 4.0];
    let mut out = [0.0; 2];
    let r = agg
        .aggregate(&[], &[&x, &x], &[], &mut rng, &mut out)
        .unwrap();
    assert_eq!(r.clipped, 2);
    assert!((out[0] - 0.6).abs() < 1e-6 && (out[1] - 0.8).abs() < 1e-6);
    for _ in 0..5 {
        agg.aggregate(&[], &[&x, &x], &[], &mut rng, &mut out)
            .unwrap();
    }
    assert!(
        (out[0] - 3.0).abs() < 1e-5 && (out[1] - 4.0).abs() < 1e-5,
        "{out:?}"
    );
    agg.reset();
    agg.aggregate(&[], &[&x, &x], &[], &mut rng, &mut out)
        .unwrap();
    assert!((out[0] - 0.6).abs() < 1e-6 && (out[1] - 0.8).abs() < 1e-6);
}

#[test]
fn weights_change_the_weighted_rules_only() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a = [0.0f32, 0.0];
    let b = [1.0f32, 2.0];
    let c = [2.0f32, 4.0];
    let inputs = [&a[..], &b[..], &c[..]];
    let w = [1.0, 1.0, 2.0];
    let mut out = [0.0; 2];
    let mut mean = Aggregator::new(&Config::mean(), 2).unwrap();
    mean.aggregate(&[], &inputs, &w, &mut rng, &mut out)
        .unwrap();
    assert_eq!(out, [1.25, 2.5]);
    let median = Config {
        rule: Rule::Median,
        pre: vec![],
    };
    let mut median = Aggregator::new(&median, 2).unwrap();
    median
        .aggregate(&[], &inputs, &w, &mut rng, &mut out)
        .unwrap();
    assert_eq!(out, [1.0, 2.0]);
    let cg = Config {
        rule: Rule::ClippedGossip {
            tau: Tau::Fixed(100.0),
        },
        pre: vec![],
    };
    let mut cg = Aggregator::new(&cg, 2).unwrap();
    cg.aggregate(&a, &inputs, &w, &mut rng, &mut out).unwrap();
    assert_eq!(out, [1.25, 2.5]);
}

#[test]
fn bucketing_is_deterministic_for_a_seed_and_preserves_the_mean() {
    let c = parse("aggregation = { rule = \"mean\", pre = [{ kind = \"bucketing\", s = 3 }] }")
        .unwrap();
    let rows: Vec<Vec<f32>> = (0..7).map(|i| vec![i as f32, (i * i) as f32]).collect();
    let inputs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
    let mut agg = Aggregator::new(&c, 2).unwrap();
    let buckets = |agg: &mut Aggregator, seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        agg.pre_aggregate(&inputs, &[], &mut rng).unwrap().to_vec()
    };
    let one = buckets(&mut agg, 9);
    assert_eq!(one.len(), 3 * 2);
    assert_eq!(one, buckets(&mut agg, 9));
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut out = [0.0; 2];
    agg.aggregate(&[], &inputs, &[], &mut rng, &mut out)
        .unwrap();
    assert!(
        (out[0] - 3.0).abs() < 1e-5 && (out[1] - 13.0).abs() < 1e-4,
        "{out:?}"
    );
}

#[test]
fn reports_count_clipped_and_discarded_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let rows: Vec<Vec<f32>> = (0..7).map(|i| vec![i as f32; 3]).collect();
    let inputs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
    let mut out = [0.0; 3];
    let expect = [
        ("{ rule = \"mean\" }", 0),
        ("{ rule = \"median\" }", 6),
        ("{ rule = \"trimmed-mean\", f = 2 }", 4),
        ("{ rule = \"krum\", f = 2 }", 6),
        ("{ rule = \"multi-krum\", f = 2 }", 2),
        ("{ rule = \"clipped-gossip\", adaptive-f = 2 }", 2),
        ("{ rule = \"monna\", f = 2 }", 2),
        ("{ rule = \"cs-plus\", f = 2 }", 4),
        ("{ rule = \"meamed\", f = 2 }", 2),
        (
            "{ rule = \"mean\", pre = [{ kind = \"clipping\", c = 4.0 }] }",
            4,
        ),
    ];
    for (text, clipped) in expect {
        let c = parse(&format!("aggregation = {text}")).unwrap();
        let mut agg = Aggregator::new(&c, 3).unwrap();
        let r = agg
            .aggregate(&rows[0], &inputs, &[], &mut rng, &mut out)
            .unwrap();
        assert_eq!(r, Report { inputs: 7, clipped }, "{text}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// n rows of dimension d with values in [-100, 100], n in 1..12, d in 1..40.
    fn rows() -> impl Strategy<Value = Vec<Vec<f32>>> {
        (1usize..12, 1usize..40).prop_flat_map(|(n, d)| {
            proptest::collection::vec(proptest::collection::vec(-100.0f32..100.0, d), n)
        })
    }

    fn run(config: &Config, rows: &[Vec<f32>], own: &[f32]) -> Option<Vec<f32>> {
        let d = rows[0].len();
        let mut agg = Aggregator::new(config, d).unwrap();
        if rows.len() < agg.min_inputs() {
            return None;
        }
        let inputs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let mut out = vec![f32::NAN; d];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        agg.aggregate(own, &inputs, &[], &mut rng, &mut out)
            .unwrap();
        Some(out)
    }

    proptest! {
        #[test]
        fn coordinate_wise_rules_stay_within_each_coordinates_range(rows in rows()) {
            let rules = [Rule::Median, Rule::TrimmedMean { f: 1 }, Rule::Meamed { f: 1 }];
            for rule in rules {
                let Some(out) = run(&Config { rule, pre: vec![] }, &rows, &rows[0]) else {
                    continue;
                };
                for (k, o) in out.iter().enumerate() {
                    let lo = rows.iter().map(|r| r[k]).fold(f32::INFINITY, f32::min);
                    let hi = rows.iter().map(|r| r[k]).fold(f32::NEG_INFINITY, f32::max);
                    let inside = *o >= lo - 1e-3 && *o <= hi + 1e-3;
                    prop_assert!(inside, "{}: {o} outside [{lo}, {hi}]", rule.name());
                }
            }
        }

        #[test]
        fn clipped_gossip_moves_own_by_at_most_tau(rows in rows(), tau in 0.01f32..50.0) {
            let own = rows[0].iter().map(|x| x * 0.5).collect::<Vec<f32>>();
            let config = Config { rule: Rule::ClippedGossip { tau: Tau::Fixed(tau) }, pre: vec![] };
            let out = run(&config, &rows, &own).unwrap();
            let moved = out.iter().zip(&own).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
            let moved = moved.sqrt();
            prop_assert!(moved <= tau * 1.001 + 1e-4, "moved {moved} > tau {tau}");
        }

        #[test]
        fn krum_returns_one_of_its_inputs(rows in rows()) {
            if let Some(out) = run(&Config { rule: Rule::Krum { f: 1 }, pre: vec![] }, &rows, &[]) {
                prop_assert!(rows.contains(&out));
            }
        }

        #[test]
        fn every_rule_gives_a_finite_result(rows in rows()) {
            for config in all_rules() {
                if let Some(out) = run(&config, &rows, &rows[0]) {
                    prop_assert!(out.iter().all(|x| x.is_finite()), "{}", config.name());
                }
            }
        }
    }
}

#[test]
fn screened_inputs_use_up_the_adaptive_clipping_budget() {
    // Own model and two neighbours, adaptive-f = 2: no more received models than f, so (with no
    // radius remembered) the nearer neighbour's distance is the radius. Once the caller has
    // screened one input out of this round, one clip is left: the radius is the second-largest
    // received distance, the same here. With two screened, nothing is clipped (the radius is
    // the largest distance, under the cap of twice the remembered nearest distance, 2).
    let own = [0.0f32];
    let inputs: Vec<&[f32]> = vec![&own, &[1.0], &[-1.5]];
    let mut agg = Aggregator::new(&Config::default(), 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut out = [9.0f32];
    let r = agg
        .aggregate(&own, &inputs, &[], &mut rng, &mut out)
        .unwrap();
    assert_eq!(r.clipped, 1);
    assert!(out[0].abs() < 1e-6, "{out:?}");
    let r = agg
        .aggregate_screened(&own, &inputs, &[], 1, &mut rng, &mut out)
        .unwrap();
    // 1 stays, -1.5 is clipped to -1: (0 + 1 - 1) / 3.
    assert_eq!(r.clipped, 1);
    assert!(out[0].abs() < 1e-6, "{out:?}");
    let r = agg
        .aggregate_screened(&own, &inputs, &[], 2, &mut rng, &mut out)
        .unwrap();
    assert_eq!(r.clipped, 0);
    assert!((out[0] - (1.0 - 1.5) / 3.0).abs() < 1e-6, "{out:?}");
}

#[test]
fn distances_handed_over_give_the_same_bits_and_serve_one_aggregation_only() {
    let dim = 40_000; // more than two blocks
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let model = |rng: &mut ChaCha8Rng, spread: f32| -> Vec<f32> {
        (0..dim)
            .map(|_| spread * (rng.random::<f32>() - 0.5))
            .collect()
    };
    let own = model(&mut rng, 1.0);
    let others: Vec<Vec<f32>> = [1.0, 1.1, 0.9, 5.0, 1.2, 0.8]
        .iter()
        .map(|&s| model(&mut rng, s))
        .collect();
    let mut rows: Vec<&[f32]> = vec![&own];
    rows.extend(others.iter().map(|o| o.as_slice()));
    for config in [
        "{ rule = \"clipped-gossip\", adaptive-f = 1 }",
        "{ rule = \"cs-plus\", f = 1 }",
    ] {
        let config = parse(&format!("aggregation = {config}")).unwrap();
        let mut told = Aggregator::new(&config, dim).unwrap();
        let mut alone = Aggregator::new(&config, dim).unwrap();
        assert!(told.measures_distances_to_own());
        let mix = |agg: &mut Aggregator, rows: &[&[f32]]| -> Vec<f32> {
            let mut out = vec![0.0; dim];
            let mut r = ChaCha8Rng::seed_from_u64(1);
            agg.aggregate(&own, rows, &[], &mut r, &mut out).unwrap();
            out
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // Taken: the same bits as measured by the rule itself.
        told.distances_known(sq_dists_to(&rows, &own));
        assert_eq!(bits(&mix(&mut told, &rows)), bits(&mix(&mut alone, &rows)));
        // They are the rule's: wrong ones handed over change the result.
        told.distances_known(vec![0.0; rows.len()]);
        assert_ne!(bits(&mix(&mut told, &rows)), bits(&mix(&mut alone, &rows)));
        // For one aggregation only, even one that fails its checks, and only for as many
        // inputs.
        told.distances_known(vec![0.0; rows.len()]);
        let mut out = vec![0.0; dim];
        let short = [&own[..10]];
        let mut r = ChaCha8Rng::seed_from_u64(1);
        assert!(told.aggregate(&own, &short, &[], &mut r, &mut out).is_err());
        assert_eq!(bits(&mix(&mut told, &rows)), bits(&mix(&mut alone, &rows)));
        told.distances_known(vec![0.0; rows.len() - 1]);
        assert_eq!(bits(&mix(&mut told, &rows)), bits(&mix(&mut alone, &rows)));
    }
    for config in [
        "{ rule = \"mean\" }",
        "{ rule = \"clipped-gossip\", adaptive-f = 1, pre = [{ kind = \"nnm\", f = 1 }] }",
    ] {
        let config = parse(&format!("aggregation = {config}")).unwrap();
        let agg = Aggregator::new(&config, dim).unwrap();
        assert!(!agg.measures_distances_to_own(), "{config:?}");
    }
}

#[test]
fn rows_handed_over_as_handles_serve_the_next_aggregation_only() {
    let dim = 3 * kernels::BLOCK + 5;
    let config = parse("aggregation = { rule = \"mean\" }").unwrap();
    let mut a = Aggregator::new(&config, dim).unwrap();
    assert!(a.takes_shared_rows());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<Vec<f32>> = vec![vec![1.0; dim], vec![3.0; dim]];
    let xs: Vec<&[f32]> = x.iter().map(Vec::as_slice).collect();
    let help = || -> std::sync::Arc<dyn crate::assist::Assist> {
        std::sync::Arc::new(crate::assist::testing::Inline { first: true })
    };
    let mut out = vec![0.0f32; dim];
    // Handed over and used: the same mean as without help.
    a.rows_shared(SharedRows::copied(&x), help());
    a.aggregate(&x[0], &xs, &[], &mut rng, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 2.0));
    // Handed over to an aggregation that fails its checks: not kept for the next one, which
    // would otherwise read `x`'s upper blocks as its own.
    let short = vec![0.0f32; dim - 1];
    let z: Vec<Vec<f32>> = vec![vec![0.0; dim], vec![8.0; dim]];
    let zs: Vec<&[f32]> = z.iter().map(Vec::as_slice).collect();
    a.rows_shared(SharedRows::copied(&x), help());
    assert!(
        a.aggregate(&z[0], &[&short[..], &z[1]], &[], &mut rng, &mut out)
            .is_err()
    );
    a.aggregate(&z[0], &zs, &[], &mut rng, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 4.0), "z's own mean, not x's");
    // Rules other than the plain mean do not take them.
    let median = parse("aggregation = { rule = \"median\" }").unwrap();
    assert!(!Aggregator::new(&median, dim).unwrap().takes_shared_rows());
}

#[test]
fn every_rule_writes_every_value_of_its_output_whatever_it_held() {
    // The engine may mix into a buffer that held an earlier model, not zeros. Several blocks
    // and a tail, own model among the inputs and not, inputs from one to more than a sweep.
    let dim = 2 * kernels::BLOCK + 37;
    let mut data = ChaCha8Rng::seed_from_u64(11);
    let rows: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..dim).map(|_| data.random_range(-1.0f32..1.0)).collect())
        .collect();
    for c in all_rules() {
        for n in [1, 2, 3, 5, 9, 12] {
            let inputs: Vec<&[f32]> = rows[..n].iter().map(Vec::as_slice).collect();
            let weights: Vec<f32> = (0..n).map(|i| 1.0 + i as f32).collect();
            let run = |held: f32| {
                let mut agg = Aggregator::new(&c, dim).unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(5);
                let mut out = vec![held; dim];
                // Twice: rules with a state (centered clipping) start the second from it.
                let reports = [0, 1].map(|_| {
                    agg.aggregate(inputs[0], &inputs, &weights, &mut rng, &mut out)
                        .map(|r| r.clipped)
                });
                (reports, out)
            };
            let (zeros, garbage) = (run(0.0), run(f32::NAN));
            assert_eq!(zeros.0, garbage.0, "{} with {n} inputs", c.name());
            if zeros.0[0].is_ok() {
                let same = zeros
                    .1
                    .iter()
                    .zip(&garbage.1)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} with {n} inputs left values unwritten", c.name());
            }
        }
    }
}
