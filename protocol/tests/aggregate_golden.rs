//! Reproduces the reference values of `tests/fixtures/aggregators.json` (ByzFL's numpy code path,
//! and hand-computed ClippedGossip values) within 1e-4.
//!
//! Inputs: 7 rows of dimension 4; rows 0-4 honest, rows 5-6 Byzantine.

use murmur_protocol::aggregate::{Aggregator, Config, Pre, Rule, Tau};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/aggregators.json"
);
const TOL: f32 = 1e-4;

struct Golden {
    json: Value,
    rows: Vec<Vec<f32>>,
}

impl Golden {
    fn load() -> Self {
        let text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| panic!("{GOLDEN}: {e}"));
        let json: Value = serde_json::from_str(&text).unwrap();
        let rows = matrix(&json["input_X_rows_0to4_honest_5to6_byz"]);
        assert_eq!((rows.len(), rows[0].len()), (7, 4));
        Self { json, rows }
    }

    fn inputs(&self) -> Vec<&[f32]> {
        self.rows.iter().map(|r| &r[..]).collect()
    }

    fn vector(&self, section: &str, key: &str) -> Vec<f32> {
        let v = &self.json[section][key];
        assert!(!v.is_null(), "missing golden {section}/{key}");
        vector(v)
    }

    /// Aggregates the golden inputs (uniform weights, own = row 0) with `config` `calls` times and
    /// checks the last result against `section/key`.
    fn check(&self, section: &str, key: &str, config: Config, calls: usize) {
        let want = self.vector(section, key);
        let mut agg = Aggregator::new(&config, 4).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut out = vec![0.0; 4];
        for _ in 0..calls {
            agg.aggregate(&self.rows[0], &self.inputs(), &[], &mut rng, &mut out)
                .unwrap();
        }
        assert_close(&out, &want, key);
    }
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(vector).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL,
            "{what}[{k}]: got {g}, want {w} (all: {got:?})"
        );
    }
}

fn rule(rule: Rule) -> Config {
    Config {
        rule,
        pre: Vec::new(),
    }
}

#[test]
fn average() {
    Golden::load().check("aggregators", "Average", Config::mean(), 1);
}

#[test]
fn median() {
    Golden::load().check("aggregators", "Median", rule(Rule::Median), 1);
}

#[test]
fn trimmed_mean() {
    Golden::load().check(
        "aggregators",
        "TrMean_f2",
        rule(Rule::TrimmedMean { f: 2 }),
        1,
    );
}

#[test]
fn geometric_median_3_and_100_iterations() {
    let g = Golden::load();
    let gm = |iterations| {
        rule(Rule::GeometricMedian {
            nu: 0.1,
            iterations,
        })
    };
    g.check("aggregators", "GeometricMedian_nu0.1_T3", gm(3), 1);
    g.check("aggregators", "GeometricMedian_nu0.1_T100", gm(100), 1);
}

#[test]
fn krum_and_multi_krum() {
    let g = Golden::load();
    g.check("aggregators", "Krum_f2", rule(Rule::Krum { f: 2 }), 1);
    g.check(
        "aggregators",
        "MultiKrum_f2",
        rule(Rule::MultiKrum { f: 2, m: None }),
        1,
    );
}

#[test]
fn meamed() {
    Golden::load().check("aggregators", "Meamed_f2", rule(Rule::Meamed { f: 2 }), 1);
}

#[test]
fn monna_around_row_0() {
    // ByzFL's MoNNA(f=2, idx=0); here the reference point is the node's own model, row 0.
    Golden::load().check(
        "aggregators",
        "MoNNA_f2_idx0",
        rule(Rule::Monna { f: 2 }),
        1,
    );
}

#[test]
fn centered_clipping_from_zero() {
    let g = Golden::load();
    let cc = |tau, iterations| rule(Rule::CenteredClipping { tau, iterations });
    g.check(
        "aggregators",
        "CenteredClipping_m0_L1_tau100",
        cc(100.0, 1),
        1,
    );
    g.check("aggregators", "CenteredClipping_m0_L3_tau1", cc(1.0, 3), 1);
}

#[test]
fn centered_clipping_keeps_its_result_as_the_next_centre() {
    // ByzFL's CenteredClipping stores its output as the next starting point: a second call with
    // the same inputs continues from the first result, i.e. equals one call with 2L steps.
    let g = Golden::load();
    let once = rule(Rule::CenteredClipping {
        tau: 1.0,
        iterations: 6,
    });
    let mut agg = Aggregator::new(&once, 4).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut want = vec![0.0; 4];
    agg.aggregate(&[], &g.inputs(), &[], &mut rng, &mut want)
        .unwrap();
    let twice = rule(Rule::CenteredClipping {
        tau: 1.0,
        iterations: 3,
    });
    let mut agg = Aggregator::new(&twice, 4).unwrap();
    let mut first = vec![0.0; 4];
    let mut out = vec![0.0; 4];
    agg.aggregate(&[], &g.inputs(), &[], &mut rng, &mut first)
        .unwrap();
    agg.aggregate(&[], &g.inputs(), &[], &mut rng, &mut out)
        .unwrap();
    assert_close(
        &first,
        &g.vector("aggregators", "CenteredClipping_m0_L3_tau1"),
        "first call",
    );
    assert_close(&out, &want, "second call continues from the first");
    assert!((out[0] - first[0]).abs() > 0.1, "the state was not kept");
}

#[test]
fn nnm_static_clipping_and_arc_rows() {
    let g = Golden::load();
    let cases = [
        ("NNM_f2", Pre::Nnm { f: 2 }),
        ("Clipping_c2", Pre::Clipping { c: 2.0 }),
        ("ARC_f2", Pre::Arc { f: 2 }),
    ];
    for (key, pre) in cases {
        let want = matrix(&g.json["preaggregators"][key]);
        let config = Config {
            rule: Rule::Mean,
            pre: vec![pre],
        };
        let mut agg = Aggregator::new(&config, 4).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let got = agg.pre_aggregate(&g.inputs(), &[], &mut rng).unwrap();
        assert_eq!(got.len(), 7 * 4, "{key}");
        for (i, w) in want.iter().enumerate() {
            assert_close(&got[i * 4..(i + 1) * 4], w, &format!("{key} row {i}"));
        }
    }
}

#[test]
fn trimmed_mean_after_nnm() {
    let config = Config {
        rule: Rule::TrimmedMean { f: 2 },
        pre: vec![Pre::Nnm { f: 2 }],
    };
    Golden::load().check("preaggregators", "TrMean_f2_after_NNM_f2", config, 1);
}

#[test]
fn clipped_gossip_fixed_tau_around_node_0() {
    // x0 + sum_j w_j clip(x_j - x0, 1) over all 7 rows with w_j = 1/7 (uniform weights).
    let config = rule(Rule::ClippedGossip {
        tau: Tau::Fixed(1.0),
    });
    Golden::load().check(
        "hand_computed",
        "ClippedGossip_fixed_tau1_node0_uniformW_1over7",
        config,
        1,
    );
}

#[test]
fn clipped_gossip_adaptive_tau_of_the_reference_code() {
    // tau = second-largest distance from x0 to the others (14.490687): only row 5 is clipped.
    let config = rule(Rule::ClippedGossip {
        tau: Tau::Adaptive { f: 1 },
    });
    Golden::load().check(
        "hand_computed",
        "ClippedGossip_epfml_adaptive_tau(2nd-largest dist=14.490687)",
        config,
        1,
    );
}
