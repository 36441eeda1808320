//! Network benchmarks, printed as plain figures (run with `cargo bench -p murmur-node --bench
//! net`):
//!
//! 1. Moving a 25 MB model (a signed update of 6.25 M parameters) between two libp2p nodes over
//!    loopback TCP (request-response over murmur's link, the default TCP stack, and over libp2p's
//!    noise + yamux for comparison), beside a plain TCP copy of the same bytes measured in the
//!    same run. Target: at least 50% of plain TCP.
//! 2. A trainer's samples per second on its own thread alone, while the same process sends 4
//!    updates after each round of local steps (a node's own traffic), and while it moves updates
//!    between two nodes without pause (every update the size of the trained model). Target: at
//!    least 90% of the trainer alone while gossiping.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, request_response};
use murmur_learn::data::Shard;
use murmur_learn::train::{self, Command, Reply, Trainer, Worker, bench};
use murmur_link as link;
use murmur_node::net::codec::{Request, Response};
use murmur_node::net::{self, Behaviour, BehaviourEvent};
use murmur_protocol::sign::{Identity, RunId};
use murmur_protocol::wire::{self, Codec};

const BIG_DIM: usize = 25_000_000 / 4;

// The allocator of the `murmur-node` binary, so that the figures are the node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A signed update as the engine hands it to the driver.
fn signed(id: &Identity, run: RunId, dim: usize) -> Arc<[u8]> {
    let params: Vec<f32> = (0..dim).map(|i| (i % 1000) as f32 * 1e-3).collect();
    wire::encode_update(id, run, 1, 1, Codec::F32Le, &wire::encode_params(&params))
        .0
        .into()
}

/// The sending node; the receiving node runs on its own thread with its own runtime, as a
/// second process would.
struct Pair {
    a: Swarm<Behaviour>,
    b_id: PeerId,
}

/// Starts a receiving node on its own thread (it acknowledges every update and runs until the
/// process ends) and connects a sending node to it over TCP with `stack`.
async fn pair(run: RunId, dim: usize, stack: link::Stack) -> Pair {
    let cfg = net::Config {
        mdns: false,
        tcp_stack: stack,
        ..net::Config::default()
    };
    let limit = murmur_protocol::wire::max_update_len(dim);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<(Multiaddr, PeerId)>();
    let b_cfg = cfg.clone();
    let name = format!("receiver-{stack:?}");
    let receiver = std::thread::Builder::new().name(name).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut b =
                net::build(&Identity::from_secret([2; 32]), &run, None, &b_cfg, limit).unwrap();
            b.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
                .unwrap();
            loop {
                match b.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        addr_tx.send((address, *b.local_peer_id())).unwrap();
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
                        assert!(matches!(request, Request::Update(_)));
                        let _ = b
                            .behaviour_mut()
                            .models
                            .send_response(channel, Response::Ack);
                    }
                    _ => {}
                }
            }
        });
    });
    receiver.expect("the receiving node's thread starts");
    let (addr, b_id) = addr_rx.recv().unwrap();
    let mut a = net::build(&Identity::from_secret([1; 32]), &run, None, &cfg, limit).unwrap();
    a.dial(addr).unwrap();
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = a.select_next_some().await {
            break;
        }
    }
    Pair { a, b_id }
}

/// Sends `bytes` from a to b `count` times, one request at a time, as the node's driver does;
/// returns the seconds taken.
async fn transfer(p: &mut Pair, bytes: &Arc<[u8]>, count: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..count {
        p.a.behaviour_mut()
            .models
            .send_request(&p.b_id, Request::Update(bytes.clone()));
        loop {
            match p.a.select_next_some().await {
                SwarmEvent::Behaviour(BehaviourEvent::Models(
                    request_response::Event::Message {
                        message: request_response::Message::Response { .. },
                        ..
                    },
                )) => break,
                SwarmEvent::Behaviour(BehaviourEvent::Models(
                    request_response::Event::OutboundFailure { error, .. },
                )) => panic!("{error}"),
                _ => {}
            }
        }
    }
    start.elapsed().as_secs_f64()
}

/// Copies `bytes` over a plain loopback TCP connection `count` times; returns the seconds.
fn plain_tcp(bytes: &[u8], count: usize) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let total = bytes.len() * count;
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < total {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "early end of stream");
            got += n;
        }
        s.write_all(&[1]).unwrap();
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let start = Instant::now();
    for _ in 0..count {
        s.write_all(bytes).unwrap();
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).unwrap();
    let t = start.elapsed().as_secs_f64();
    reader.join().unwrap();
    t
}

/// The median of `xs`.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn model_transfer(rt: &tokio::runtime::Runtime) {
    let run = RunId::derive(b"bench");
    let bytes = signed(&Identity::from_secret([1; 32]), run, BIG_DIM);
    let mb = bytes.len() as f64 / 1e6;
    // The three are measured in turn, round after round, so that the shared machine's swings
    // reach all of them alike; each figure is the median over the rounds.
    let (rounds, per_round) = (7, 4);
    let mut link = rt.block_on(pair(run, BIG_DIM, link::Stack::MurmurLink));
    let mut noise_yamux = rt.block_on(pair(run, BIG_DIM, link::Stack::NoiseYamux));
    rt.block_on(transfer(&mut link, &bytes, 1)); // warm-up
    rt.block_on(transfer(&mut noise_yamux, &bytes, 1));
    plain_tcp(&bytes, 1);
    let rate = |secs: f64| mb * per_round as f64 / secs;
    let mut rows = Vec::new();
    for _ in 0..rounds {
        let l = rate(rt.block_on(transfer(&mut link, &bytes, per_round)));
        let n = rate(rt.block_on(transfer(&mut noise_yamux, &bytes, per_round)));
        let t = rate(plain_tcp(&bytes, per_round));
        rows.push((l, n, t));
    }
    let col = |f: fn(&(f64, f64, f64)) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    let link_ratios = col(|r| r.0 / r.2);
    let (lo, hi) = link_ratios
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    println!(
        "model transfer, {mb:.1} MB on loopback (request-response), {rounds} rounds of {per_round}, medians:"
    );
    println!(
        "  libp2p, tcp + murmur link (default): {:8.1} MB/s",
        median(col(|r| r.0))
    );
    println!(
        "  libp2p, tcp + noise + yamux:         {:8.1} MB/s",
        median(col(|r| r.1))
    );
    println!(
        "  plain TCP copy of the same bytes:    {:8.1} MB/s",
        median(col(|r| r.2))
    );
    println!(
        "  murmur link / plain TCP: {:.1}% (rounds {:.1}% to {:.1}%; target >= 50%)",
        100.0 * median(link_ratios),
        100.0 * lo,
        100.0 * hi
    );
    println!(
        "  noise + yamux / plain TCP: {:.1}%",
        100.0 * median(col(|r| r.1 / r.2))
    );
}

/// Trains `rounds` rounds of `steps` steps on a worker thread; after each round sends on `tick`
/// (if given). Returns samples per second over all rounds but the first.
fn worker_throughput(
    trainer: Trainer,
    rounds: usize,
    steps: usize,
    tick: Option<std::sync::mpsc::Sender<()>>,
) -> f64 {
    let worker = Worker::spawn(trainer, 2).unwrap();
    let (mut samples, mut secs) = (0usize, 0f64);
    for round in 0..rounds as u64 {
        let command = Command::Train {
            round,
            params: None,
            steps,
        };
        worker.send(round, command).unwrap();
        match worker.recv().unwrap() {
            (_, Reply::Trained { report, .. }) if round > 0 => {
                samples += report.samples;
                secs += report.elapsed.as_secs_f64();
            }
            (_, Reply::Trained { .. }) => {}
            other => panic!("{other:?}"),
        }
        if let Some(t) = &tick {
            let _ = t.send(());
        }
    }
    worker.shutdown().unwrap();
    samples as f64 / secs
}

/// Trains while `p` moves updates: `FANOUT` after each round (`paced`) or back to back. Returns
/// the trainer's samples per second and the updates moved.
fn train_while_sending(
    rt: &tokio::runtime::Runtime,
    p: &mut Pair,
    bytes: &Arc<[u8]>,
    trainer: Trainer,
    (rounds, steps): (usize, usize),
    paced: bool,
) -> (f64, usize) {
    let (tick_tx, tick_rx) = std::sync::mpsc::channel::<()>();
    let measuring =
        std::thread::spawn(move || worker_throughput(trainer, rounds, steps, Some(tick_tx)));
    let mut moved = 0usize;
    loop {
        let next = if paced {
            tick_rx.recv().map(|()| FANOUT)
        } else {
            match tick_rx.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(std::sync::mpsc::RecvError),
                _ => Ok(1),
            }
        };
        let Ok(count) = next else { break };
        rt.block_on(transfer(p, bytes, count));
        moved += count;
    }
    (measuring.join().unwrap(), moved)
}

fn training_while_gossiping(rt: &tokio::runtime::Runtime) {
    let data = bench::mnist_shaped(4096, 1);
    let spec = murmur_learn::model::Spec::Mlp { hidden: vec![128] };
    let setup = bench::setup(train::Backend::Flex, spec, &data, 32).unwrap();
    let trainer = || Trainer::new(&setup, Shard::all(data.clone()), 0, 1).unwrap();
    let dim = trainer().params().len();
    let shape = (100, 20);
    let run = RunId::derive(b"bench");
    let bytes = signed(&Identity::from_secret([1; 32]), run, dim);
    let mut p = rt.block_on(pair(run, dim, link::Stack::default()));
    // Alone, paced and back to back in turn, round after round, so that the shared machine's
    // swings reach all three alike; ratios are taken within a round, figures are medians.
    let reps = 5;
    let (mut alone, mut paced, mut flat, mut moved) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let a = worker_throughput(trainer(), shape.0, shape.1, None);
        let (b, _) = train_while_sending(rt, &mut p, &bytes, trainer(), shape, true);
        let (c, n) = train_while_sending(rt, &mut p, &bytes, trainer(), shape, false);
        alone.push(a);
        paced.push(b / a);
        flat.push(c / a);
        moved.push(n as f64);
    }
    let range = |v: &[f64]| {
        v.iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)))
    };
    println!(
        "training (MLP 784-128-10, {dim} params, batch 32, {} steps a round) on its own thread, {reps} rounds, medians:",
        shape.1
    );
    println!("  alone: {:8.0} samples/s", median(alone));
    let (lo, hi) = range(&paced);
    println!(
        "  while sending 4 updates a round:    {:.1}% of alone (rounds {:.1}% to {:.1}%; target >= 90%)",
        100.0 * median(paced),
        100.0 * lo,
        100.0 * hi
    );
    let (lo, hi) = range(&flat);
    println!(
        "  while sending updates back to back: {:.1}% of alone (rounds {:.1}% to {:.1}%), {:.0} updates of {:.2} MB moved while training {} rounds",
        100.0 * median(flat),
        100.0 * lo,
        100.0 * hi,
        median(moved),
        bytes.len() as f64 / 1e6,
        shape.0
    );
}

/// Updates a node sends per round (the engine's default fanout).
const FANOUT: usize = 4;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects a quick
    // smoke run, which this is not: skip unless benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // `cargo bench -p murmur-node --bench net -- transfer` runs only the sections whose names
    // contain one of the given words.
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| words.is_empty() || words.iter().any(|w| name.contains(w.as_str()));
    if wanted("transfer") {
        model_transfer(&rt);
    }
    if wanted("training") {
        training_while_gossiping(&rt);
    }
}
