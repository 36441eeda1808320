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
    })
    .unwrap();
    let start = Input::Start {
        resume: Default::default(),
        join: false,
    };
    e.handle(Duration::ZERO, start).unwrap();
    e
}

#[test]
fn a_key_file_signs_updates_another_engine_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let sender = identity::create(&dir.path().join("a.key")).unwrap();
    let receiver = identity::create(&dir.path().join("b.key")).unwrap();
    let run = RunId::derive(b"cross-crate");
    let mut e = engine(run, receiver);
    while e.poll().is_some() {}

    let payload = wire::encode_params(&[0.5; 8]);
    let (bytes, _) = wire::encode_update(&sender, run, 1, 10, Codec::F32Le, &payload);
    e.handle(
        Duration::ZERO,
        Input::UpdateReceived {
            from: sender.public(),
            bytes: bytes.into(),
        },
    )
    .unwrap();
    assert_eq!(e.stats().accepted, 1);

    let (bytes, _) = wire::encode_update(
        &sender,
        RunId::derive(b"other"),
        2,
        10,
        Codec::F32Le,
        &payload,
    );
    e.handle(
        Duration::ZERO,
        Input::UpdateReceived {
            from: sender.public(),
            bytes: bytes.into(),
        },
    )
    .unwrap();
    assert_eq!(e.stats().rejected.get(&Rejection::WrongRun), Some(&1));
    assert!(matches!(
        e.poll(),
        Some(Output::Penalize {
            reason: Rejection::WrongRun,
            ..
        })
    ));
}
