//! Tests of the attacks' configuration forms and plans.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Config {
    attack: Attack,
}

fn parse(s: &str) -> Result<Attack, toml::de::Error> {
    toml::from_str::<Config>(s).map(|c| c.attack)
}

/// What an attacker with its own model and these honest ones sees, in a run of `n` nodes with
/// `f` Byzantine: no reference, victim or defence.
fn view<'a>(own: &'a [f32], honest: &'a [&'a [f32]], n: usize, f: usize) -> View<'a> {
    View {
        own,
        honest,
        reference: None,
        n,
        f,
        victim: None,
        defence: None,
    }
}

#[test]
fn ipm_in_update_space_turns_the_honest_step_back_from_the_reference() {
    let (a, b) = ([1.0f32, 2.0], [3.0f32, 4.0]);
    let honest: [&[f32]; 2] = [&a, &b];
    let own = [0.0f32, 0.0];
    let reference = [1.0f32, 1.0];
    let attack = parse(r#"attack = { kind = "ipm", epsilon = 0.5, space = "update" }"#).unwrap();
    let plan = |reference| {
        let view = View {
            reference,
            ..view(&own, &honest, 4, 1)
        };
        attack.plan(&view, &mut ChaCha8Rng::seed_from_u64(0))
    };
    // Mean [2, 3]: the step from the reference is [1, 2]; turned back and halved.
    assert_eq!(plan(Some(&reference)), Plan::Send(vec![0.5, 0.0]));
    // Without a reference, on the models: -0.5 x [2, 3].
    assert_eq!(plan(None), Plan::Send(vec![-1.0, -1.5]));
    let text = serde_json::to_string(&attack).unwrap();
    assert!(text.contains(r#""space":"update""#), "{text}");
    let default = serde_json::to_string(&"ipm".parse::<Attack>().unwrap()).unwrap();
    assert!(!default.contains("space"), "{default}");
}

#[test]
fn toml_forms() {
    assert_eq!(
        parse(r#"attack = { kind = "alie" }"#).unwrap(),
        Attack::Alie { z: None }
    );
    assert_eq!(
        parse(r#"attack = { kind = "alie", z = 1.5 }"#).unwrap(),
        Attack::Alie { z: Some(1.5) }
    );
    assert_eq!(
        parse(r#"attack = { kind = "ipm", epsilon = 0.5 }"#).unwrap(),
        Attack::Ipm {
            epsilon: 0.5,
            space: Space::Model,
        }
    );
    assert_eq!(
        parse(r#"attack = { kind = "ipm" }"#).unwrap(),
        Attack::Ipm {
            epsilon: 0.1,
            space: Space::Model,
        }
    );
    assert_eq!(
        parse(r#"attack = { kind = "non-finite", value = "-inf" }"#).unwrap(),
        Attack::NonFinite {
            value: NonFinite::NegInf
        }
    );
    assert_eq!(
        parse(r#"attack = { kind = "replay", lag = 3 }"#).unwrap(),
        Attack::Replay { lag: 3 }
    );
    assert_eq!(
        parse(r#"attack = { kind = "free-rider" }"#).unwrap(),
        Attack::FreeRider
    );
    assert!(parse(r#"attack = { kind = "ipm", epsilon = 0.5, eps = 1.0 }"#).is_err());
    assert!(parse(r#"attack = { kind = "sign-flip", z = 1.0 }"#).is_err());
    assert!(parse(r#"attack = { kind = "teleport" }"#).is_err());
    assert_eq!(
        parse(r#"attack = { kind = "min-sum", perturbation = "sign", space = "model" }"#).unwrap(),
        Attack::MinSum {
            perturbation: Perturbation::Sign,
            space: Space::Model,
        }
    );
    assert_eq!(
        parse(r#"attack = { kind = "opt-ipm" }"#).unwrap(),
        Attack::OptIpm {
            space: Space::Update
        }
    );
    assert!(parse(r#"attack = { kind = "opt-alie", z = 1.0 }"#).is_err());
}

#[test]
fn names_round_trip_through_from_str_and_serde() {
    for name in NAMES {
        let a: Attack = name.parse().unwrap();
        assert_eq!(a.name(), name);
        assert_eq!(a.validate(), Ok(()));
        let text = toml::to_string(&Config { attack: a.clone() }).unwrap();
        assert_eq!(parse(&text).unwrap(), a, "{text}");
    }
    assert_eq!(
        "bogus".parse::<Attack>(),
        Err(Error::Unknown("bogus".into()))
    );
}

#[test]
fn validate_rejects_bad_parameters() {
    assert!(Attack::Gaussian { sigma: -1.0 }.validate().is_err());
    assert!(Attack::Gaussian { sigma: f32::NAN }.validate().is_err());
    assert!(
        Attack::Alie {
            z: Some(f64::INFINITY)
        }
        .validate()
        .is_err()
    );
    assert!(Attack::Dissensus { epsilon: f32::NAN }.validate().is_err());
    assert!(Attack::Replay { lag: 0 }.validate().is_err());
    assert_eq!(Attack::Gaussian { sigma: 0.0 }.validate(), Ok(()));
}

#[test]
fn plans() {
    let own = [1.0f32, 1.0];
    let a = [2.0f32, 4.0];
    let b = [4.0f32, 0.0];
    let short = [9.0f32];
    let honest: [&[f32]; 3] = [&a, &short, &b];
    let view = view(&own, &honest, 10, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let plan = |a: Attack, rng: &mut ChaCha8Rng| a.plan(&view, rng);
    // The short model is ignored.
    assert_eq!(
        plan(Attack::SignFlip, &mut rng),
        Plan::Send(vec![-3.0, -2.0])
    );
    assert_eq!(
        plan(Attack::Mimic { target: 3 }, &mut rng),
        Plan::Send(vec![4.0, 0.0])
    );
    assert_eq!(plan(Attack::LabelFlip, &mut rng), Plan::Honest);
    assert_eq!(plan(Attack::FreeRider, &mut rng), Plan::Stale);
    assert_eq!(
        plan(Attack::Replay { lag: 4 }, &mut rng),
        Plan::Replay { lag: 4 }
    );
    assert_eq!(
        plan(Attack::Equivocate, &mut rng),
        Plan::Equivocate(vec![1.0, 1.0], vec![-3.0, -2.0])
    );
    // ALIE without z: z = alie_z(10, 2); sample std of (2, 4) and (4, 0) is sqrt 2 and sqrt 8.
    let z = alie_z(10, 2);
    let Plan::Send(v) = plan(Attack::Alie { z: None }, &mut rng) else {
        panic!()
    };
    assert!((f64::from(v[0]) - (3.0 + z * 2f64.sqrt())).abs() < 1e-6);
    assert!((f64::from(v[1]) - (2.0 + z * 8f64.sqrt())).abs() < 1e-6);
    let Plan::Send(v) = plan(
        Attack::NonFinite {
            value: NonFinite::Inf,
        },
        &mut rng,
    ) else {
        panic!()
    };
    assert_eq!(v, vec![f32::INFINITY; 2]);
    let g1 = Attack::Gaussian { sigma: 1.0 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(3));
    let g2 = Attack::Gaussian { sigma: 1.0 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(3));
    assert_eq!(g1, g2);
    assert_ne!(g1, Plan::Send(own.to_vec()));
}

#[test]
fn plans_fall_back_to_own_without_honest_models() {
    let own = [1.0f32, -2.0];
    let view = view(&own, &[], 4, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(
        Attack::SignFlip.plan(&view, &mut rng),
        Plan::Send(vec![-1.0, 2.0])
    );
    assert_eq!(
        Attack::Mimic { target: 5 }.plan(&view, &mut rng),
        Plan::Send(own.to_vec())
    );
    assert_eq!(
        Attack::Alie { z: Some(2.0) }.plan(&view, &mut rng),
        Plan::Send(own.to_vec())
    );
    // Dissensus aimed at itself with nobody to pull against: stays put.
    assert_eq!(
        Attack::Dissensus { epsilon: 1.5 }.plan(&view, &mut rng),
        Plan::Send(own.to_vec())
    );
}

#[test]
fn dissensus_without_victim_pushes_away_from_neighbours() {
    let own = [0.0f32];
    let a = [1.0f32];
    let honest: [&[f32]; 1] = [&a];
    let view = view(&own, &honest, 3, 1);
    let plan = Attack::Dissensus { epsilon: 2.0 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(0));
    // Weights 1/3 each: 0 - 2 * (1/3 * 1) / (1/3) = -2.
    assert_eq!(plan, Plan::Send(vec![-2.0]));
}

#[test]
fn searched_strength_is_the_largest_the_defence_lets_through() {
    // Honest models around 0 in one coordinate; the defence drops any received model
    // farther than 1 from the node's own and averages the rest with it. The most harmful
    // ALIE forgery is the one just inside that radius; past it, it is dropped and does
    // nothing.
    let own = [0.0f32, 0.0];
    let (a, b, c) = ([0.1f32, 0.0], [-0.1f32, 0.0], [0.0f32, 0.1]);
    let honest: [&[f32]; 3] = [&a, &b, &c];
    let mix = |own: &[f32], received: &[&[f32]], out: &mut [f32]| {
        let kept: Vec<&[f32]> = std::iter::once(own)
            .chain(
                received
                    .iter()
                    .copied()
                    .filter(|r| crate::aggregate::distance(own, r) <= 1.0),
            )
            .collect();
        mean(&kept, out);
    };
    let view = View {
        defence: Some(Defence {
            mix: &mix,
            fan_in: 4,
        }),
        ..view(&own, &honest, 16, 3)
    };
    let Plan::Send(forged) = Attack::OptAlie.plan(&view, &mut ChaCha8Rng::seed_from_u64(0)) else {
        panic!()
    };
    let d = crate::aggregate::distance(&own, &forged);
    assert!((0.97..=1.0).contains(&d), "forged at distance {d}");
    // Against the plain mean, more is always worse: the top of the search range.
    let plain = |own: &[f32], received: &[&[f32]], out: &mut [f32]| {
        let all: Vec<&[f32]> = std::iter::once(own)
            .chain(received.iter().copied())
            .collect();
        mean(&all, out);
    };
    let view = View {
        defence: Some(Defence {
            mix: &plain,
            fan_in: 4,
        }),
        ..view
    };
    let Plan::Send(far) = Attack::OptIpm {
        space: Space::Model,
    }
    .plan(&view, &mut ChaCha8Rng::seed_from_u64(0)) else {
        panic!()
    };
    let mut want = [0.0f32; 2];
    ipm(&honest, SEARCH_MAX as f32, &mut want);
    assert_eq!(far, want);
    // Without a defence to search against: the papers' strengths.
    let view = View {
        defence: None,
        ..view
    };
    let mut want = [0.0f32; 2];
    alie(&honest, alie_z(16, 3), &mut want);
    assert_eq!(
        Attack::OptAlie.plan(&view, &mut ChaCha8Rng::seed_from_u64(0)),
        Plan::Send(want.to_vec())
    );
}

#[test]
fn min_max_counts_the_attackers_own_model_as_honest() {
    let own = [1.0f32, 0.0];
    let a = [0.0f32, 1.0];
    let honest: [&[f32]; 1] = [&a];
    let view = view(&own, &honest, 4, 1);
    let attack = parse(r#"attack = { kind = "min-max" }"#).unwrap();
    let Plan::Send(v) = attack.plan(&view, &mut ChaCha8Rng::seed_from_u64(0)) else {
        panic!()
    };
    // Two honest vectors at distance sqrt 2: the forgery is sqrt 2 from the farther one.
    let far = crate::aggregate::distance(&v, &own).max(crate::aggregate::distance(&v, &a));
    assert!((far - 2f64.sqrt()).abs() < 1e-5, "{v:?}");
}

#[test]
fn label_flip_map() {
    assert_eq!(flip_label(0, 10), 9);
    assert_eq!(flip_label(9, 10), 0);
    assert_eq!(flip_label(3, 4), 0);
    assert_eq!(flip_label(12, 10), 12);
    assert!(Attack::LabelFlip.flips_labels());
    assert!(!Attack::SignFlip.flips_labels());
}
