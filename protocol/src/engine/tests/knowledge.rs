//! What an attacker knows ([`Knowledge`]): intel it is given, what it shares, one forgery per
//! asker a round, and dissensus aimed with the victim's real neighbours and weights.

use super::exchange::{answer, train};
use super::setup::started;
use super::*;
use crate::attack::Knowledge;

fn attacker(i: u64, attack: Attack, knowledge: Knowledge, c: &Config) -> Setup {
    Setup {
        adversary: Some(Adversary {
            n: Some(4),
            f: Some(1),
            knowledge,
            allies: [toy::identity(2).public()].into_iter().collect(),
            ..Adversary::new(attack)
        }),
        ..toy::setup(i as usize, c, DIM, 0)
    }
}

fn tell(e: &mut Engine, update: Arc<[u8]>) {
    e.handle(Duration::ZERO, Input::Intel { update }).unwrap();
}

/// What `e` serves `asker` now.
pub(super) fn served(e: &mut Engine, asker: &Identity, request: u64) -> Arc<[u8]> {
    served_at(e, Duration::ZERO, asker, request, None)
}

/// What `e` serves `asker` at `now` for its fetch `request`, the asker holding a copy of `e`'s
/// estimate of round `have` (the `top-k` codec).
pub(super) fn served_at(
    e: &mut Engine,
    now: Duration,
    asker: &Identity,
    request: u64,
    have: Option<u64>,
) -> Arc<[u8]> {
    let ask = Input::FetchRequested {
        from: asker.public(),
        request,
        round: None,
        have,
    };
    e.handle(now, ask).unwrap();
    drain(e)
        .into_iter()
        .find_map(|o| match o {
            Output::Serve {
                update: Some(bytes),
                ..
            } => Some(bytes),
            _ => None,
        })
        .expect("an answer")
}

pub(super) fn params(e: &Engine, bytes: &[u8]) -> Vec<f32> {
    wire::decode_update(bytes, e.max_update_bytes())
        .unwrap()
        .params(DIM)
        .unwrap()
}

/// An omniscient sign-flipper forges from the honest models it is told of (2 and 4: it sends
/// -3), not an ally's (100) nor an author's older model; it forges each asker's model when that
/// asker first asks, and serves it that one for the round. A lone attacker ignores the intel
/// and, having mixed nothing yet, flips its own model (5).
#[test]
fn an_omniscient_attacker_forges_from_what_it_is_told_and_a_lone_one_ignores_it() {
    let c = config(Rule::Mean, 100);
    let ids: Vec<Identity> = (1..=3).map(toy::identity).collect();
    let run = toy::run_id();
    let forged_for_first_asker = |knowledge| {
        let mut e = started(attacker(0, Attack::SignFlip, knowledge, &c), &ids);
        tell(&mut e, update(&ids[0], run, 1, &[2.0; DIM]));
        tell(&mut e, update(&ids[2], run, 1, &[4.0; DIM]));
        tell(&mut e, update(&ids[1], run, 1, &[100.0; DIM])); // an ally
        tell(&mut e, update(&ids[0], run, 0, &[50.0; DIM])); // older than what is known
        train(&mut e, Duration::ZERO, 1, 5.0);
        let first = served(&mut e, &ids[0], 1);
        (e, first)
    };
    let (mut e, first) = forged_for_first_asker(Knowledge::Omniscient);
    assert_eq!(params(&e, &first), vec![-3.0; DIM]);
    // New intel during the round: the first asker is served the same bytes again (two would
    // prove equivocation), a new asker a forgery from what is known now: -(2 + 10) / 2.
    tell(&mut e, update(&ids[2], run, 2, &[10.0; DIM]));
    assert_eq!(served(&mut e, &ids[0], 2), first);
    let second = served(&mut e, &ids[2], 3);
    assert_eq!(params(&e, &second), vec![-6.0; DIM]);

    let (e, first) = forged_for_first_asker(Knowledge::Own);
    assert_eq!(params(&e, &first), vec![-5.0; DIM]);
}

/// A colluding attacker passes every honest update it fetches to its allies, bytes unchanged;
/// a lone one passes nothing.
#[test]
fn a_colluding_attacker_shares_what_it_fetches() {
    let mut c = config(Rule::Mean, 100);
    c.fanout = 1;
    c.wait_for = 1;
    let peer = toy::identity(1);
    for (knowledge, shares) in [(Knowledge::Colluding, true), (Knowledge::Own, false)] {
        let setup = attacker(0, Attack::Alie { z: None }, knowledge, &c);
        let mut e = started(setup, std::slice::from_ref(&peer));
        train(&mut e, Duration::ZERO, 1, 5.0);
        let bytes = update(&peer, toy::run_id(), 1, &[2.0; DIM]);
        let out = answer(&mut e, Duration::from_millis(10), &peer, bytes.clone());
        let shared: Vec<&Arc<[u8]>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Share { update } => Some(update),
                _ => None,
            })
            .collect();
        if shares {
            assert_eq!(shared, vec![&bytes], "{knowledge:?}");
        } else {
            assert!(shared.is_empty(), "{knowledge:?}: {out:?}");
        }
    }
}

/// Dissensus as its paper defines it (He, Karimireddy and Jaggi, 2022): aimed at the victim's
/// current model with the victim's real neighbours and weights, epsilon 1 cancels the victim's
/// gossip step. The victim (1) keeps 0.5 and gives 0.25 to an honest neighbour (5) and 0.25 to
/// the attacker, which serves 1 - (0.25 x 4) / 0.25 = -3; the victim mixes 0.5 + 1.25 - 0.75:
/// its model does not move.
#[test]
fn dissensus_with_epsilon_one_freezes_the_victim() {
    let (victim_id, good_id, attacker_id) = (toy::identity(0), toy::identity(1), toy::identity(3));
    let mut c = config(Rule::Mean, 100);
    c.fanout = 2;
    c.wait_for = 2;
    let table: BTreeMap<PeerKey, f64> = [(good_id.public(), 0.25), (attacker_id.public(), 0.25)]
        .into_iter()
        .collect();
    let victim_setup = Setup {
        weights: table.clone(),
        ..toy::setup(0, &c, DIM, 0)
    };
    let mut victim = started(victim_setup, &[good_id.clone(), attacker_id.clone()]);
    train(&mut victim, Duration::ZERO, 1, 1.0);
    let mut setup = attacker(
        3,
        Attack::Dissensus { epsilon: 1.0 },
        Knowledge::Omniscient,
        &c,
    );
    if let Some(a) = &mut setup.adversary {
        a.graph = [(victim_id.public(), table)].into_iter().collect();
    }
    let mut adversary = started(setup, std::slice::from_ref(&victim_id));
    let good = update(&good_id, toy::run_id(), 1, &[5.0; DIM]);
    tell(&mut adversary, victim.latest_update().unwrap().clone());
    tell(&mut adversary, good.clone());
    train(&mut adversary, Duration::ZERO, 1, 7.0);
    let forged = served(&mut adversary, &victim_id, 1);
    assert_eq!(params(&adversary, &forged), vec![-3.0; DIM]);
    let t = Duration::from_millis(10);
    answer(&mut victim, t, &good_id, good);
    let out = answer(&mut victim, t, &attacker_id, forged);
    let mixed = out
        .iter()
        .find_map(|o| match o {
            Output::Mixed { params, .. } => params.clone(),
            _ => None,
        })
        .expect("the victim mixes");
    assert!(mixed.iter().all(|x| (x - 1.0).abs() < 1e-5), "{mixed:?}");
}

/// A forgery is signed for the round its plan was made in. Between its mix and its next
/// training an attacker still serves the finished round: a forgery signed for the next round
/// then, and another once that round is planned, would be two updates of one round to the same
/// asker, a proof of equivocation against the attacker.
#[test]
fn a_forgery_between_rounds_is_signed_for_the_planned_round() {
    let mut c = config(Rule::Mean, 100);
    c.fanout = 2;
    c.wait_for = 1;
    let (peer, asker) = (toy::identity(1), toy::identity(3));
    for knowledge in [Knowledge::Own, Knowledge::Omniscient] {
        let setup = attacker(0, Attack::Dissensus { epsilon: 1.0 }, knowledge, &c);
        let mut e = started(setup, &[peer.clone(), asker.clone()]);
        train(&mut e, Duration::ZERO, 1, 5.0);
        let bytes = update(&peer, toy::run_id(), 1, &[2.0; DIM]);
        answer(&mut e, Duration::from_millis(10), &peer, bytes);
        assert_eq!(e.round(), 2, "mixed round 1, training round 2");
        let between = served(&mut e, &asker, 1);
        let round = wire::decode_update(&between, e.max_update_bytes())
            .unwrap()
            .header()
            .round;
        assert_eq!(round, 1, "{knowledge:?}");
    }
}

/// An ally learned while running (a red-team node's side channel) is forgotten as an honest
/// author and never learned again; honest nodes and the own key are no allies.
#[test]
fn an_ally_learned_late_is_forgotten_as_an_honest_author() {
    let c = config(Rule::Mean, 100);
    let ids: Vec<Identity> = (1..=3).map(toy::identity).collect();
    let run = toy::run_id();
    let mut e = started(
        attacker(0, Attack::SignFlip, Knowledge::Colluding, &c),
        &ids,
    );
    tell(&mut e, update(&ids[0], run, 1, &[2.0; DIM]));
    tell(&mut e, update(&ids[2], run, 1, &[4.0; DIM]));
    let known = |e: &Engine| e.known_authors().into_keys().collect::<Vec<_>>();
    assert_eq!(known(&e).len(), 2);
    e.add_ally(ids[2].public());
    e.add_ally(e.id());
    assert_eq!(known(&e), vec![ids[0].public()]);
    tell(&mut e, update(&ids[2], run, 2, &[6.0; DIM]));
    assert_eq!(known(&e), vec![ids[0].public()]);
    let mut honest = started(toy::setup(5, &c, DIM, 0), &ids);
    honest.add_ally(ids[0].public());
    assert!(honest.knowledge().is_none());
}

/// An omniscient IPM attacker aimed at its victim (`Aim::Victim`, the ClippedGossip paper's
/// decentralized IPM) forges from the asker's model and its honest neighbours' on the graph:
/// the asker (0, model 2) has neighbours 1 (model 4) and the attacker; node 5 (model 30) is
/// known but not a neighbour, so the forgery is -0.5 x (2 + 4) / 2 = -1.5. Aimed at all it
/// knows, it is -0.5 x (2 + 4 + 30) / 3 = -6.
#[test]
fn an_attacker_aimed_at_its_victim_forges_from_the_victims_neighbourhood() {
    use crate::attack::{Aim, Space};
    let c = config(Rule::Mean, 100);
    let (asker, neighbour, far, me) = (
        toy::identity(0),
        toy::identity(1),
        toy::identity(5),
        toy::identity(3),
    );
    let run = toy::run_id();
    let table: BTreeMap<PeerKey, f64> = [(neighbour.public(), 0.25), (me.public(), 0.25)]
        .into_iter()
        .collect();
    let forged = |aim: Aim| {
        let attack = Attack::Ipm {
            epsilon: 0.5,
            space: Space::Model,
        };
        let mut setup = attacker(3, attack, Knowledge::Omniscient, &c);
        if let Some(a) = &mut setup.adversary {
            a.aim = aim;
            a.graph = [(asker.public(), table.clone())].into_iter().collect();
        }
        let mut e = started(setup, &[asker.clone(), neighbour.clone(), far.clone()]);
        tell(&mut e, update(&asker, run, 1, &[2.0; DIM]));
        tell(&mut e, update(&neighbour, run, 1, &[4.0; DIM]));
        tell(&mut e, update(&far, run, 1, &[30.0; DIM]));
        train(&mut e, Duration::ZERO, 1, 7.0);
        let bytes = served(&mut e, &asker, 1);
        params(&e, &bytes)
    };
    assert_eq!(forged(Aim::Victim), vec![-1.5; DIM]);
    assert_eq!(forged(Aim::All), vec![-6.0; DIM]);
}
