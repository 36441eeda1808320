//! A hostile process at a running 4-node network on 127.0.0.1: it publishes junk gossip, answers
//! fetches with validly signed updates of inflated rounds, and sends frames whose headers announce
//! more than a model's size. No honest node bans an honest peer, the honest nodes reach the
//! accuracy they reach without it (within 3 points: the digits test set has 359 images), and
//! each node's peak memory stays within 2x of the same network's without it.

mod net_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, identify, request_response};
use murmur_node::config::Config;
use murmur_node::net::codec::{Request, Response};
use murmur_node::net::{self, BehaviourEvent, Names};
use murmur_protocol::sign::{Identity, RunId};
use murmur_protocol::wire::{self, Codec};
use net_support::{spawn, write_config};

/// Parameters of the test config's model: MLP 64-32-10.
const DIM: usize = 64 * 32 + 32 + 32 * 10 + 10;
const ROUNDS: u64 = 30;

struct Outcome {
    accuracy: f64,
    peak_rss_kib: Vec<u64>,
    banned: Vec<Vec<String>>,
    keys: Vec<String>,
}

fn network(dir: &std::path::Path, hostile: bool) -> Outcome {
    let config = write_config(
        dir,
        4,
        &format!(
            "fanout = 3\nwait-for = 3\nround-timeout-ms = 2000\nrounds = {ROUNDS}\n\
             join-timeout-ms = 3000"
        ),
        "",
    );
    let run = Config::read(&config).unwrap().run_id(None);
    let mut nodes = vec![spawn(&config, &dir.join("n0"), 0, &[])];
    let boot = nodes[0].addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = hostile.then(|| {
        let (stop, target) = (stop.clone(), boot.parse::<Multiaddr>().unwrap());
        std::thread::spawn(move || attack(run, target, stop))
    });
    for i in 1..4 {
        nodes.push(spawn(
            &config,
            &dir.join(format!("n{i}")),
            i,
            &["--bootstrap", &boot],
        ));
    }
    let mut accuracies = Vec::new();
    for node in &mut nodes {
        let done = node.wait(Duration::from_secs(600), |e| e["event"] == "finished");
        accuracies.push(done["accuracy"].as_f64().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let sent = attacker.map(|a| a.join().unwrap());
    if let Some(sent) = sent {
        println!("hostile: {sent:?}");
    }
    let keys = nodes
        .iter()
        .map(|n| n.status().peer_id.clone())
        .collect::<Vec<_>>();
    Outcome {
        accuracy: accuracies.iter().sum::<f64>() / accuracies.len() as f64,
        peak_rss_kib: nodes.iter().map(|n| n.peak_rss_kib()).collect(),
        banned: nodes.iter().map(|n| n.banned_keys()).collect(),
        keys,
    }
}

/// What the hostile process managed to send.
#[derive(Debug, Default)]
struct Sent {
    junk_gossip: u32,
    inflated_answers: u32,
    oversize_frames: u32,
}

/// Connects to `target` and misbehaves until `stop`.
fn attack(run: RunId, target: Multiaddr, stop: Arc<AtomicBool>) -> Sent {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let me = Identity::from_secret([77; 32]);
        let cfg = net::Config {
            mdns: false,
            ..net::Config::default()
        };
        // Its own codec lets it write frames far over the honest nodes' limit.
        let mut swarm = net::build(&me, &run, None, &cfg, 64 << 20).unwrap();
        swarm.dial(target).unwrap();
        let topic = Names::of(&run).topic;
        let mut sent = Sent::default();
        let mut peer = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let oversize: Arc<[u8]> = vec![0u8; wire::max_update_len(DIM) + 1].into();
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                _ = tick.tick() => {
                    let Some(p) = peer else { continue };
                    let junk = vec![0xEE; 64 + (sent.junk_gossip % 7) as usize];
                    if swarm.behaviour_mut().gossip.publish(topic.clone(), junk).is_ok() {
                        sent.junk_gossip += 1;
                    }
                    swarm
                        .behaviour_mut()
                        .models
                        .send_request(&p, Request::Update(oversize.clone()));
                    sent.oversize_frames += 1;
                }
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(
                        identify::Event::Received { peer_id, .. },
                    )) => {
                        peer.get_or_insert(peer_id);
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Models(
                        request_response::Event::Message {
                            message: request_response::Message::Request { request, channel, .. },
                            ..
                        },
                    )) => {
                        let round: u64 = match request {
                            Request::Fetch {
                                round: Some(r), ..
                            } => r,
                            _ => 1,
                        };
                        let inflated = wire::encode_update(
                            &me,
                            run,
                            round.saturating_add(1_000_000),
                            1,
                            Codec::F32Le,
                            &wire::encode_params(&vec![0.5; DIM]),
                        )
                        .0;
                        let answer = Response::Model(Some(inflated.into()));
                        if swarm.behaviour_mut().models.send_response(channel, answer).is_ok() {
                            sent.inflated_answers += 1;
                        }
                    }
                    SwarmEvent::ConnectionClosed { .. } => peer = None,
                    _ => {}
                },
            }
        }
        sent
    })
}

#[test]
fn a_hostile_process_neither_frames_honest_peers_nor_costs_accuracy_or_memory() {
    let calm_dir = tempfile::tempdir().unwrap();
    let calm = network(calm_dir.path(), false);
    let dir = tempfile::tempdir().unwrap();
    let attacked = network(dir.path(), true);
    println!(
        "accuracy {:.4} without the hostile process, {:.4} with it; peak RSS KiB {:?} vs {:?}; \
         bans {:?}",
        calm.accuracy, attacked.accuracy, calm.peak_rss_kib, attacked.peak_rss_kib, attacked.banned
    );
    for (i, banned) in attacked.banned.iter().enumerate() {
        for b in banned {
            let key: Vec<u8> = hex::decode(b).unwrap();
            let honest = attacked.keys.iter().any(|k| {
                net::peer_id(&murmur_protocol::sign::PeerKey(
                    key.clone().try_into().unwrap(),
                ))
                .is_some_and(|id| id.to_string() == *k)
            });
            assert!(!honest, "node {i} banned an honest peer {b}");
        }
    }
    assert!(calm.banned.iter().all(Vec::is_empty), "{:?}", calm.banned);
    assert!(
        attacked.accuracy >= calm.accuracy - 0.03,
        "accuracy {:.4} with the hostile process, {:.4} without",
        attacked.accuracy,
        calm.accuracy
    );
    for (i, (a, c)) in attacked
        .peak_rss_kib
        .iter()
        .zip(&calm.peak_rss_kib)
        .enumerate()
    {
        assert!(
            a <= &(2 * c),
            "node {i}: peak RSS {a} KiB against {c} KiB without"
        );
    }
}
