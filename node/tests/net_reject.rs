//! A live node rejects answers to its fetches with a forged signature, another run's id, a wrong
//! dimension and non-finite values, and updates pushed at it unasked; it counts each by reason in
//! its metrics, and keeps training.

mod net_support;

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, identify, request_response};
use murmur_node::config::Config;
use murmur_node::metrics::sample;
use murmur_node::net::codec::{Request, Response};
use murmur_node::net::{self, BehaviourEvent};
use murmur_protocol::sign::{Identity, RunId};
use murmur_protocol::wire::{self, Codec};
use net_support::{spawn, write_config};

/// Parameters of the test config's model: MLP 64-32-10.
const DIM: usize = 64 * 32 + 32 + 32 * 10 + 10;

/// What the hostile peer answers to one of the node's fetches, given the round asked for.
type Answer = Box<dyn Fn(u64) -> Response>;

/// An answer with the update `f` builds for the round asked.
fn model(f: impl Fn(u64) -> Vec<u8> + 'static) -> Answer {
    Box::new(move |r| Response::Model(Some(f(r).into())))
}

fn update(id: &Identity, run: RunId, round: u64, params: &[f32]) -> Vec<u8> {
    wire::encode_update(
        id,
        run,
        round,
        1,
        Codec::F32Le,
        &wire::encode_params(params),
    )
    .0
}

#[test]
fn forged_foreign_misshapen_and_non_finite_updates_are_rejected_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        1,
        "fanout = 2\nwait-for = 1\nround-timeout-ms = 300",
        "[metrics]\neval-every = 1\n",
    );
    let mut node = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let run = Config::read(&config).unwrap().run_id(None);
    let before = node.wait(Duration::from_secs(120), |e| e["event"] == "eval");
    let before = before["round"].as_u64().unwrap();

    let me = Identity::from_secret([42; 32]);
    let second = Identity::from_secret([43; 32]);
    // Answers signed for the round the node asks for, so none is stale, lagging or ahead.
    let forged = {
        let me = me.clone();
        move |r| {
            let mut b = update(&me, run, r, &vec![0.1; DIM]);
            b[40] ^= 0xff; // inside the signature
            b
        }
    };
    let foreign = {
        let me = me.clone();
        move |r| update(&me, RunId::derive(b"another run"), r, &vec![0.1; DIM])
    };
    let misshapen = {
        let me = me.clone();
        move |r| update(&me, run, r, &vec![0.1; DIM - 1])
    };
    let poisoned = {
        let second = second.clone();
        move |r| update(&second, run, r, &vec![f32::NAN; DIM])
    };
    // Forgery and poison cost half the ban threshold each: two peers answer, so that neither is
    // banned (which would cut the connection before the last answer). `me` also pushes one
    // update unasked.
    let target: Multiaddr = node.addr.parse().unwrap();
    let answers: Vec<Answer> = vec![model(forged), model(foreign), model(misshapen)];
    let push = update(&me, run, 1, &vec![0.1; DIM]);
    assert_eq!(
        exchange(&me, run, &target, answers, vec![push]),
        Outcome::Answered
    );
    let answers: Vec<Answer> = vec![model(poisoned)];
    assert_eq!(
        exchange(&second, run, &target, answers, vec![]),
        Outcome::Answered
    );
    // A fetch answered with an acknowledgement (a well-framed answer of the wrong kind) is the
    // peer's doing, as a frame the codec refuses is: it costs as a malformed update, and the
    // engine hears the fetch ended.
    let acker = Identity::from_secret([46; 32]);
    let answers: Vec<Answer> = vec![Box::new(|_| Response::Ack)];
    assert_eq!(
        exchange(&acker, run, &target, answers, vec![]),
        Outcome::Answered
    );
    let text = node.prometheus();
    for reason in [
        "bad_signature",
        "wrong_run",
        "wrong_dimension",
        "non_finite",
        "unsolicited",
        "malformed",
    ] {
        let name = format!("murmur_updates_rejected_total{{reason=\"{reason}\"}}");
        let count = sample(&text, &name).unwrap_or(0.0);
        println!("{name} {count}");
        assert_eq!(count, 1.0, "{reason} counted once");
    }
    assert_eq!(sample(&text, "murmur_updates_accepted_total"), Some(0.0));
    // It keeps training: two more evaluated rounds after the attack.
    let after = node.wait(Duration::from_secs(120), |e| {
        e["event"] == "eval" && e["round"].as_u64().unwrap() >= before + 2
    });
    println!(
        "rounds evaluated: {before} before, {} after",
        after["round"]
    );
    assert!(node.status().round > before);

    // Two forgeries ban a peer; it is then refused at connection time.
    let third = Identity::from_secret([44; 32]);
    let forgeries: Vec<Answer> = (0..2)
        .map(|_| {
            let third = third.clone();
            model(move |r| {
                let mut b = update(&third, run, r, &vec![0.2; DIM]);
                b[40] ^= 0xff;
                b
            })
        })
        .collect();
    // The second answer bans it: the connection closes, perhaps before the node asks again.
    let outcome = exchange(&third, run, &target, forgeries, vec![]);
    assert_ne!(outcome, Outcome::Refused);
    assert_eq!(node.status().bans, 1);
    assert_eq!(
        exchange(&third, run, &target, vec![], vec![]),
        Outcome::Refused
    );
    let text = node.prometheus();
    assert_eq!(
        sample(
            &text,
            "murmur_updates_rejected_total{reason=\"bad_signature\"}"
        ),
        Some(3.0)
    );

    // A peer of another run is disconnected as soon as it has identified itself.
    let stranger = Identity::from_secret([45; 32]);
    assert!(disconnected(
        &stranger,
        RunId::derive(b"another run"),
        &target
    ));
}

/// A runtime for an in-process peer.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An in-process peer of `run` as `id`, speaking what a node speaks (mDNS off); build it inside
/// the runtime.
fn peer(id: &Identity, run: RunId) -> libp2p::Swarm<net::Behaviour> {
    let cfg = net::Config {
        mdns: false,
        ..net::Config::default()
    };
    net::build(id, &run, None, &cfg, wire::max_update_len(DIM)).unwrap()
}

/// Connects to `target` as a node of `run` and waits (at most 60 s) for the node to close the
/// connection; false if it stays open that long.
fn disconnected(id: &Identity, run: RunId, target: &Multiaddr) -> bool {
    let rt = runtime();
    rt.block_on(async {
        let mut swarm = peer(id, run);
        swarm.dial(target.clone()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
                Err(_) => return false,
                Ok(SwarmEvent::ConnectionClosed { .. }) => return true,
                Ok(_) => {}
            }
        }
    })
}

/// How an exchange with the node ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The node identified itself, took every answer and push, and asked again after the last
    /// answer (so it has handled it).
    Answered,
    /// The node identified itself, then the connection closed before that.
    Cut,
    /// The connection closed (or failed) before the node identified itself.
    Refused,
}

/// Connects to `target` as `id`, answers the node's fetches with `answers` in order (each built
/// for the round asked; `None` once they are used up), pushes `pushes` unasked once the node has
/// identified itself, and waits (at most 60 s) until every push is acknowledged and the node has
/// fetched once more after the last answer, or the connection ends. With nothing to send, the
/// exchange is answered once the node has identified itself.
fn exchange(
    id: &Identity,
    run: RunId,
    target: &Multiaddr,
    answers: Vec<Answer>,
    pushes: Vec<Vec<u8>>,
) -> Outcome {
    let rt = runtime();
    rt.block_on(async {
        let mut swarm = peer(id, run);
        swarm.dial(target.clone()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let (mut acked, mut served) = (0, 0);
        let mut identified = false;
        let mut node = None;
        // With answers to give, the node must ask once more after the last one.
        let asks_needed = if answers.is_empty() {
            0
        } else {
            answers.len() + 1
        };
        let mut asked = 0;
        loop {
            if identified && acked == pushes.len() && asked >= asks_needed {
                return Outcome::Answered;
            }
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .expect("the node answers within 60 s");
            match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                    peer_id,
                    ..
                })) if !identified => {
                    identified = true;
                    node = Some(peer_id);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Models(
                    request_response::Event::Message {
                        message:
                            request_response::Message::Request {
                                request, channel, ..
                            },
                        ..
                    },
                )) => {
                    let Request::Fetch { round, .. } = request else {
                        panic!("the node pushed an update: {request:?}");
                    };
                    // It asks only peers it has identified: now a push reaches its engine.
                    if let Some(peer_id) = node.take() {
                        for bytes in &pushes {
                            swarm
                                .behaviour_mut()
                                .models
                                .send_request(&peer_id, Request::Update(bytes.as_slice().into()));
                        }
                    }
                    let answer = match round {
                        Some(r) if served < answers.len() => {
                            served += 1;
                            asked += 1;
                            answers[served - 1](r)
                        }
                        Some(_) => {
                            asked += 1;
                            Response::Model(None)
                        }
                        None => Response::Model(None),
                    };
                    let _ = swarm.behaviour_mut().models.send_response(channel, answer);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Models(
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    },
                )) => {
                    assert_eq!(response, Response::Ack);
                    acked += 1;
                }
                SwarmEvent::ConnectionClosed { .. }
                | SwarmEvent::OutgoingConnectionError { .. } => {
                    return if identified {
                        Outcome::Cut
                    } else {
                        Outcome::Refused
                    };
                }
                _ => {}
            }
        }
    })
}

/// Failures a user must see: a listen port already in use is an error with its reason (libp2p
/// would share the port silently), an unreachable bootstrap address is reported as an event, and
/// a malformed `--bootstrap` flag is blamed on the flag, not on the config file.
#[test]
fn a_port_in_use_an_unreachable_bootstrap_and_a_bad_flag_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "round-timeout-ms = 300", "");
    let node = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let taken: Multiaddr = node.addr.parse().unwrap();
    let taken: Multiaddr = taken
        .iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_murmur-node"))
            .arg("run")
            .arg(&config)
            .args(["--metrics", "127.0.0.1:0", "--no-mdns"])
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run murmur-node")
    };
    let state = dir.path().join("n1");
    let state = state.to_str().unwrap();
    let out = run(&["--state-dir", state, "--listen", &taken.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("listen on {taken}: ")) && err.contains("in use"),
        "{err}"
    );
    let out = run(&["--state-dir", state, "--bootstrap", "not an address"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--bootstrap \"not an address\"") && !err.contains("node.toml"),
        "{err}"
    );
    drop(node);

    let mut lonely = spawn(
        &config,
        &dir.path().join("n2"),
        0,
        &["--bootstrap", "/ip4/127.0.0.1/tcp/1"],
    );
    let failed = lonely.wait(Duration::from_secs(60), |e| {
        e["event"] == "bootstrap_failed"
    });
    assert_eq!(failed["addr"], "/ip4/127.0.0.1/tcp/1");
    assert!(
        failed["reason"].as_str().unwrap().contains("refused"),
        "{failed}"
    );
}

/// Slots held by idle sockets: a process keeps 40 TCP connections to a node open from one
/// address, never finishing a handshake and reopening each one the node closes. A newcomer
/// bootstrapping from that node still joins: one address holds at most a few handshake slots.
#[test]
fn idle_sockets_from_one_address_do_not_keep_a_newcomer_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        2,
        "fanout = 2\nwait-for = 1\nround-timeout-ms = 300\njoin-peers = 1\njoin-timeout-ms = 8000",
        "",
    );
    let n0 = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let target: Multiaddr = n0.addr.parse().unwrap();
    let port = tcp_port(&target);
    let stop = Arc::new(AtomicBool::new(false));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let hostile = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for _ in 0..40 {
                    let (stop, held_tx) = (stop.clone(), held_tx.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut first = true;
                        while !stop.load(Ordering::Relaxed) {
                            let socket = tokio::net::TcpSocket::new_v4().unwrap();
                            socket.bind("127.0.0.9:0".parse().unwrap()).unwrap();
                            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                            let Ok(mut conn) = socket.connect(addr).await else {
                                continue;
                            };
                            if std::mem::take(&mut first) {
                                let _ = held_tx.send(());
                            }
                            // Idle until the node closes it (or the test ends).
                            let mut buf = [0u8; 256];
                            loop {
                                use tokio::io::AsyncReadExt;
                                let read = tokio::time::timeout(
                                    Duration::from_millis(200),
                                    conn.read(&mut buf),
                                );
                                match read.await {
                                    Ok(Ok(0)) | Ok(Err(_)) => break,
                                    _ if stop.load(Ordering::Relaxed) => return,
                                    _ => {}
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };
    // Every one of the 40 holds a connection before the newcomer comes.
    for _ in 0..40 {
        held_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    }
    let boot = n0.addr.clone();
    let mut n1 = spawn(&config, &dir.path().join("n1"), 1, &["--bootstrap", &boot]);
    let started = n1.wait(Duration::from_secs(60), |e| e["event"] == "started");
    stop.store(true, Ordering::Relaxed);
    hostile.join().unwrap();
    println!("newcomer: {started}");
    assert_eq!(started["start"], "joined", "{started}");
    assert!(started["joined_from"].as_u64().unwrap() >= 1, "{started}");
}

/// Identities are free: one address (127.0.0.9) connects under as many names as the node has
/// incoming slots (6 of `max-connections` 8), and reconnects each one the node closes. A
/// newcomer from another address (127.0.0.1) still gets in, taking the slot of that address's
/// newest connection, and is served the node's model.
#[test]
fn one_address_under_many_names_does_not_fill_the_incoming_slots() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        2,
        "fanout = 2\nwait-for = 1\nround-timeout-ms = 300\njoin-peers = 1\njoin-timeout-ms = 8000",
        "",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "random-walk-ms = 1000",
        "random-walk-ms = 1000\nmax-connections = 8",
    );
    std::fs::write(&config, text).unwrap();
    let n0 = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let target: Multiaddr = n0.addr.parse().unwrap();
    let port = tcp_port(&target);
    let run = Config::read(&config).unwrap().run_id(None);
    let stop = Arc::new(AtomicBool::new(false));
    let hostile = {
        let (stop, target) = (stop.clone(), target.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                // Dials from 127.0.0.9: libp2p picks no source address, so the names connect
                // through a relay that does.
                let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let through = relay.local_addr().unwrap().port();
                tokio::spawn(async move {
                    while let Ok((mut inbound, _)) = relay.accept().await {
                        tokio::spawn(async move {
                            let socket = tokio::net::TcpSocket::new_v4().unwrap();
                            socket.bind("127.0.0.9:0".parse().unwrap()).unwrap();
                            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                            if let Ok(mut outbound) = socket.connect(to).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                });
                let target: Multiaddr = target
                    .iter()
                    .map(|p| match p {
                        libp2p::multiaddr::Protocol::Tcp(_) => {
                            libp2p::multiaddr::Protocol::Tcp(through)
                        }
                        p => p,
                    })
                    .collect();
                let mut tasks = Vec::new();
                for i in 0..8u8 {
                    let (stop, target) = (stop.clone(), target.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut swarm = peer(&Identity::from_secret([100 + i; 32]), run);
                        let _ = swarm.dial(target.clone());
                        while !stop.load(Ordering::Relaxed) {
                            let next = tokio::time::timeout(
                                Duration::from_millis(200),
                                swarm.select_next_some(),
                            );
                            if let Ok(
                                SwarmEvent::ConnectionClosed { .. }
                                | SwarmEvent::OutgoingConnectionError { .. },
                            ) = next.await
                            {
                                // Back at once, paced only so as not to spin.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                let _ = swarm.dial(target.clone());
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };
    let held = n0.wait_status(Duration::from_secs(60), |s| s.peers >= 6);
    println!("names connected from one address: {}", held.peers);
    assert_eq!(held.updates_sent, 0, "those names ask for nothing");
    // The newcomer gets in and fetches the node's model (to join, then to mix). The names reach
    // it too (through the node's Kademlia), so whether it joins or starts fresh is the draw's.
    let boot = n0.addr.clone();
    let _n1 = spawn(&config, &dir.path().join("n1"), 1, &["--bootstrap", &boot]);
    let served = n0.wait_status(Duration::from_secs(30), |s| s.updates_sent > 0);
    stop.store(true, Ordering::Relaxed);
    hostile.join().unwrap();
    println!("models served to the newcomer: {}", served.updates_sent);
}

/// The TCP port of a node's address.
fn tcp_port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap()
}

/// murmur keeps nothing in Kademlia: a record a peer puts at a node is not stored, so the DHT
/// cannot be used to fill a node's memory. The peer puts a record, then asks for it back: the
/// node has none (with libp2p's default store it answered with the record).
#[test]
fn records_a_peer_puts_into_the_dht_are_not_kept() {
    use libp2p::kad;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "round-timeout-ms = 300", "");
    let node = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let run = Config::read(&config).unwrap().run_id(None);
    let target: Multiaddr = node.addr.parse().unwrap();
    let Some(libp2p::multiaddr::Protocol::P2p(node_id)) = target.iter().last() else {
        panic!("{target} ends with /p2p/ID");
    };
    let rt = runtime();
    let found = rt.block_on(async {
        let mut swarm = peer(&Identity::from_secret([46; 32]), run);
        swarm
            .behaviour_mut()
            .kad
            .add_address(&node_id, target.clone());
        let key = kad::RecordKey::new(&b"filler");
        let record = kad::Record::new(key.clone(), vec![7; 1000]);
        swarm
            .behaviour_mut()
            .kad
            .put_record_to(record, std::iter::once(node_id), kad::Quorum::One);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut found = false;
        loop {
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .expect("the node answers within 60 s");
            let SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result,
                step,
                ..
            })) = ev
            else {
                continue;
            };
            match result {
                kad::QueryResult::PutRecord(r) => {
                    println!("put: {r:?}");
                    swarm.behaviour_mut().kad.get_record(key.clone());
                }
                kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(r))) => {
                    println!("found at {:?}", r.peer);
                    found = true;
                }
                kad::QueryResult::GetRecord(r) if step.last => {
                    println!("get: {r:?}");
                    return found;
                }
                _ => {}
            }
        }
    });
    assert!(!found, "the node kept a record a peer put there");
}

/// A node that has reached its dial target with the help of a stranger's identity (A: target 2,
/// it dialed B, the stranger connected to it) still meets a newcomer that joins through B (C:
/// target 1): only peers a node dialed count towards its target, and Kademlia's own lookups
/// connect the two. `peer_up` says which side dialed.
#[test]
fn a_newcomer_is_met_while_a_stranger_holds_a_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, target: usize| {
        let at = dir.path().join(name);
        std::fs::create_dir_all(&at).unwrap();
        write_config(
            &at,
            3,
            "round-timeout-ms = 300",
            &format!("target-peers = {target}\n"),
        )
    };
    let id_of = |addr: &str| addr.rsplit('/').next().unwrap().to_owned();
    let up = |e: &serde_json::Value, id: &str| e["event"] == "peer_up" && e["peer"] == id;
    let wait = Duration::from_secs(60);
    let b = spawn(&config("cb", 16), &dir.path().join("b"), 0, &[]);
    let ca = config("ca", 2);
    let mut a = spawn(&ca, &dir.path().join("a"), 1, &["--bootstrap", &b.addr]);
    a.wait(wait, |e| up(e, &id_of(&b.addr)));

    let run = Config::read(&ca).unwrap().run_id(None);
    let target: Multiaddr = a.addr.parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stranger = Identity::from_secret([47; 32]);
    let stranger_id = net::peer_id(&stranger.public()).unwrap().to_string();
    let holder = {
        let stop = stop.clone();
        std::thread::spawn(move || hold(&stranger, run, &target, &stop))
    };
    a.wait(wait, |e| up(e, &stranger_id));

    let c = spawn(
        &config("cc", 1),
        &dir.path().join("c"),
        2,
        &["--bootstrap", &b.addr],
    );
    let found = a.wait(wait, |e| up(e, &id_of(&c.addr)));
    println!("A meets C: {found}");
    assert!(found["outbound"].is_boolean(), "{found}");
    stop.store(true, Ordering::Relaxed);
    holder.join().unwrap();
}

/// Stays connected to `target` as `id` of `run` until `stop`.
fn hold(id: &Identity, run: RunId, target: &Multiaddr, stop: &std::sync::atomic::AtomicBool) {
    let rt = runtime();
    rt.block_on(async {
        let mut swarm = peer(id, run);
        swarm.dial(target.clone()).unwrap();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ =
                tokio::time::timeout(Duration::from_millis(100), swarm.select_next_some()).await;
        }
    });
}

/// A run that lists its members (`--members`): the node refuses a key outside the list at the
/// connection, before it identifies itself (the engine, which would ban the key, never hears of
/// it), and talks with a member; a node whose own key is not on the list does not start, and
/// names its key and the file.
#[test]
fn a_listed_run_refuses_other_keys_at_the_connection_and_an_unlisted_node_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1, "round-timeout-ms = 300", "");
    let state = dir.path().join("n0");
    std::fs::create_dir_all(&state).unwrap();
    let own = murmur_node::identity::create(&state.join("node.key")).unwrap();
    let member = Identity::from_secret([51; 32]);
    let outsider = Identity::from_secret([52; 32]);
    let members = dir.path().join("members.txt");
    // The node's line as `peer-id` prints it, the member's as its public key in hex.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_murmur-node"))
        .arg("peer-id")
        .arg(state.join("node.key"))
        .output()
        .expect("run murmur-node peer-id");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line.trim(),
        net::keypair(&own).public().to_peer_id().to_string()
    );
    let member_hex = hex::encode(member.public().0);
    std::fs::write(&members, format!("# the run\n{line}{member_hex}\n")).unwrap();
    let list = members.to_str().unwrap();
    let node = spawn(&config, &state, 0, &["--members", list]);
    let read = murmur_node::config::read_members(&members).unwrap();
    let run = Config::read(&config).unwrap().run_id(Some(&read));
    let target: Multiaddr = node.addr.parse().unwrap();
    let to = |who: &Identity| exchange(who, run, &target, Vec::new(), Vec::new());
    assert_eq!(to(&outsider), Outcome::Refused);
    assert_eq!(to(&member), Outcome::Answered);
    drop(node);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_murmur-node"))
        .arg("run")
        .arg(&config)
        .args(["--state-dir", dir.path().join("n1").to_str().unwrap()])
        .args(["--members", list, "--no-mdns", "--metrics", ""])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run murmur-node");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("is not in the run's members file") && err.contains(list),
        "{err}"
    );
}
