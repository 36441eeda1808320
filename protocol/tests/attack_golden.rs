//! The attacks against tests/fixtures/aggregators.json: the section `attacks_on_honest_rows_0to4`
//! was produced by ByzFL's numpy code (LPD-EPFL/byzfl), `hand_computed` by numpy following the
//! decentralised reference code of He, Karimireddy and Jaggi. Rows 0 to 4 of the input are the
//! honest models; the attack sees only those.
//!
//! The `Opt_IPM` and `Opt_ALIE` entries tune the attack's scale against a particular aggregator;
//! they are not attacks of this crate and are deliberately not checked here.

use murmur_protocol::attack::{self, Attack, Plan, Victim, View};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/aggregators.json"
);
const TOL: f64 = 1e-4;
const SECTION: &str = "attacks_on_honest_rows_0to4";
/// Entries of [`SECTION`] checked below, and those that need an aggregator in the loop.
const CHECKED: [&str; 5] = [
    "SignFlipping",
    "IPM_tau0.1",
    "IPM_tau2.0",
    "ALIE_tau1.5",
    "Mimic_eps0",
];
const NEED_AN_AGGREGATOR: &str = "Opt_";

fn golden() -> Value {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| panic!("reading {GOLDEN}: {e}"));
    serde_json::from_str(&text).expect("golden file is JSON")
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a vector")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// Rows 0 to 4 (honest) of the shared input.
fn honest_rows(g: &Value) -> Vec<Vec<f32>> {
    let rows: Vec<Vec<f32>> = g["input_X_rows_0to4_honest_5to6_byz"]
        .as_array()
        .expect("rows")
        .iter()
        .map(vector)
        .collect();
    assert_eq!(rows.len(), 7);
    rows[..5].to_vec()
}

fn expected(g: &Value, section: &str, key: &str) -> Vec<f32> {
    vector(
        g[section]
            .get(key)
            .unwrap_or_else(|| panic!("golden has no {section}/{key}")),
    )
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (c, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - f64::from(*w)).abs() <= TOL,
            "{what}: coordinate {c}: got {g}, want {w}"
        );
    }
}

/// Runs `attack` through [`Attack::plan`] as an attacker with own model row 5 would.
fn planned(attack: &Attack, honest: &[&[f32]], own: &[f32]) -> Vec<f32> {
    let view = View {
        own,
        honest,
        reference: None,
        n: 7,
        f: 2,
        victim: None,
        defence: None,
    };
    match attack.plan(&view, &mut ChaCha8Rng::seed_from_u64(0)) {
        Plan::Send(v) => v,
        other => panic!("{} planned {other:?}", attack.name()),
    }
}

#[test]
fn every_golden_attack_is_checked_or_needs_an_aggregator() {
    let g = golden();
    let section = g[SECTION].as_object().expect("section");
    for key in section.keys() {
        assert!(
            CHECKED.contains(&key.as_str()) || key.starts_with(NEED_AN_AGGREGATOR),
            "golden attack {key} is not checked"
        );
    }
    for key in CHECKED {
        assert!(
            section.contains_key(key),
            "{key} missing from the golden file"
        );
    }
}

#[test]
fn byzfl_attacks_match() {
    let g = golden();
    let rows = honest_rows(&g);
    let honest: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let own = [9.0f32, -6.0, 4.0, -7.0];
    let mut out = vec![0.0f32; 4];

    let want = expected(&g, SECTION, "SignFlipping");
    attack::sign_flip(&honest, &mut out);
    assert_close(&out, &want, "sign_flip");
    assert_close(
        &planned(&Attack::SignFlip, &honest, &own),
        &want,
        "plan sign-flip",
    );

    for (key, epsilon) in [("IPM_tau0.1", 0.1f32), ("IPM_tau2.0", 2.0)] {
        let want = expected(&g, SECTION, key);
        attack::ipm(&honest, epsilon, &mut out);
        assert_close(&out, &want, key);
        assert_close(
            &planned(
                &Attack::Ipm {
                    epsilon,
                    space: attack::Space::Model,
                },
                &honest,
                &own,
            ),
            &want,
            key,
        );
    }

    let want = expected(&g, SECTION, "ALIE_tau1.5");
    attack::alie(&honest, 1.5, &mut out);
    assert_close(&out, &want, "alie");
    assert_close(
        &planned(&Attack::Alie { z: Some(1.5) }, &honest, &own),
        &want,
        "plan alie",
    );

    let want = expected(&g, SECTION, "Mimic_eps0");
    assert_close(
        &planned(&Attack::Mimic { target: 0 }, &honest, &own),
        &want,
        "plan mimic",
    );
}

/// Node 0 is the victim; rows 1 to 4 are its good neighbours at weight 1/7 each; two Byzantine
/// neighbours hold 2/7 in total; its self-weight is 1/7.
fn victim_setup(g: &Value) -> (Vec<Vec<f32>>, [f64; 4]) {
    (honest_rows(g), [1.0 / 7.0; 4])
}

#[test]
fn dissensus_matches_hand_computed() {
    let g = golden();
    let (rows, weights) = victim_setup(&g);
    let good: Vec<&[f32]> = rows[1..].iter().map(Vec::as_slice).collect();
    let victim = Victim {
        model: &rows[0],
        good: &good,
        good_weights: &weights,
        byzantine_weight: 2.0 / 7.0,
    };
    let want = expected(
        &g,
        "hand_computed",
        "Dissensus_eps1.5_vector_sent_to_node0(good nbrs rows1-4 W=1/7, byz weight 2/7)",
    );

    let mut out = vec![0.0f32; 4];
    attack::dissensus(&victim, 1.5, &mut out);
    assert_close(&out, &want, "dissensus");

    let own = [9.0f32, -6.0, 4.0, -7.0];
    let view = View {
        own: &own,
        honest: &good,
        reference: None,
        n: 7,
        f: 2,
        victim: Some(victim),
        defence: None,
    };
    let plan = Attack::Dissensus { epsilon: 1.5 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(0));
    let Plan::Send(sent) = plan else {
        panic!("dissensus planned {plan:?}")
    };
    assert_close(&sent, &want, "plan dissensus");
}

#[test]
fn dissensus_at_epsilon_one_freezes_plain_gossip() {
    let g = golden();
    assert!(
        g["hand_computed"]["Dissensus_eps1_property"]
            .as_str()
            .is_some_and(|s| s.contains("exactly x0"))
    );
    let (rows, weights) = victim_setup(&g);
    let good: Vec<&[f32]> = rows[1..].iter().map(Vec::as_slice).collect();
    let victim = Victim {
        model: &rows[0],
        good: &good,
        good_weights: &weights,
        byzantine_weight: 2.0 / 7.0,
    };
    let mut forged = vec![0.0f32; 4];
    attack::dissensus(&victim, 1.0, &mut forged);
    // Plain gossip at node 0: (x0 + x1 + x2 + x3 + x4 + 2 * forged) / 7.
    let next: Vec<f32> = (0..4)
        .map(|c| {
            let sum: f64 =
                rows.iter().map(|r| f64::from(r[c])).sum::<f64>() + 2.0 * f64::from(forged[c]);
            (sum / 7.0) as f32
        })
        .collect();
    assert_close(&next, &rows[0], "node 0 after gossip");
    for (a, b) in next.iter().zip(&rows[0]) {
        assert!((a - b).abs() < 1e-6, "not frozen: {a} vs {b}");
    }
}
