//! Across crates: a key file written by the node signs updates that another node's engine
//! accepts, and a key of another run is rejected by reason.

use murmur_node::identity;
use murmur_protocol::RunId;
use murmur_protocol::engine::{Config, Engine, Input, Output, Rejection, Setup};
use murmur_protocol::wire::{self, Codec};
use std::time::Duration;

fn engine(run: RunId, key: murmur_protocol::Identity) -> Engine {
    let mut e = Engine::new(Setup {
        identity: key,
        run,
        config: Config::default(),
        model: vec![0.0; 8],
        seed: 7,
        adversary: None,
        weights: Default::default(),
        members: None,
    })
    .unwrap();
    let start = Input::Start {
        resume: Default::default(),
        join: false,
    };
    e.handle(Duration::ZERO, start).unwrap();
    e
}

/// Trains the engine's current round and answers the fetch it sends with `answer`.
fn fetch_answered(e: &mut Engine, round: u64, answer: Vec<u8>) {
    e.handle(
        Duration::ZERO,
        Input::Trained {
            round,
            params: vec![0.0; 8],
            samples: 1,
        },
    )
    .unwrap();
    let peer = std::iter::from_fn(|| e.poll())
        .find_map(|o| match o {
            Output::Fetch { peer, .. } => Some(peer),
            _ => None,
        })
        .expect("a fetch of the connected peer");
    e.handle(
        Duration::ZERO,
        Input::Fetched {
            peer,
            update: Some(answer.into()),
        },
    )
    .unwrap();
}

#[test]
fn a_key_file_signs_updates_another_engine_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let sender = identity::create(&dir.path().join("a.key")).unwrap();
    let receiver = identity::create(&dir.path().join("b.key")).unwrap();
    let run = RunId::derive(b"cross-crate");
    let mut e = engine(run, receiver);
    e.handle(
        Duration::ZERO,
        Input::PeerUp {
            peer: sender.public(),
        },
    )
    .unwrap();
    while e.poll().is_some() {}

    let payload = wire::encode_params(&[0.5; 8]);
    let (bytes, _) = wire::encode_update(&sender, run, 1, 10, Codec::F32Le, &payload);
    fetch_answered(&mut e, 1, bytes.to_vec());
    assert_eq!(e.stats().accepted, 1);
    while e.poll().is_some() {}

    let (bytes, _) = wire::encode_update(
        &sender,
        RunId::derive(b"other"),
        2,
        10,
        Codec::F32Le,
        &payload,
    );
    fetch_answered(&mut e, 2, bytes.to_vec());
    assert_eq!(e.stats().rejected.get(&Rejection::WrongRun), Some(&1));
    assert!(std::iter::from_fn(|| e.poll()).any(|o| matches!(
        o,
        Output::Penalize {
            reason: Rejection::WrongRun,
            ..
        }
    )));
}
