use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;

use futures::executor::block_on;
use futures::{AsyncReadExt, AsyncWriteExt};

use super::frames::{CLOSE, DATA, OPEN};
use super::*;
use crate::record::MAX_PLAINTEXT;
use crate::testing::{End, pipe, pipe2};

const K1: [u8; 32] = [1; 32];
const K2: [u8; 32] = [2; 32];

type Inbound = Rc<RefCell<VecDeque<Stream<End>>>>;

/// Two links over an in-memory pipe, driven on the test's task like libp2p's connection task.
struct Net {
    a: Link<End>,
    b: Link<End>,
    a_in: Inbound,
    b_in: Inbound,
    a_err: Option<Error>,
    b_err: Option<Error>,
}

fn net(config: Config) -> Net {
    net2(config.clone(), config)
}

/// Two links, the dialer `a` with config `ca` and the listener `b` with `cb`.
fn net2(ca: Config, cb: Config) -> Net {
    let (x, y) = pipe(1 << 20);
    Net {
        a: Link::new(x, &K1, &K2, true, ca),
        b: Link::new(y, &K2, &K1, false, cb),
        a_in: Rc::default(),
        b_in: Rc::default(),
        a_err: None,
        b_err: None,
    }
}

fn drive(link: &mut Link<End>, inbound: &Inbound, err: &mut Option<Error>, cx: &mut Context<'_>) {
    if err.is_some() {
        return;
    }
    if let Poll::Ready(Err(e)) = Pin::new(&mut *link).poll(cx) {
        *err = Some(e);
    }
    while let Poll::Ready(Ok(s)) = Pin::new(&mut *link).poll_inbound(cx) {
        inbound.borrow_mut().push_back(s);
    }
}

impl Net {
    /// Runs `body` while polling both links whenever the task wakes.
    fn run<T>(&mut self, body: impl Future<Output = T>) -> T {
        let mut body = pin!(body);
        block_on(poll_fn(|cx| {
            drive(&mut self.a, &self.a_in, &mut self.a_err, cx);
            drive(&mut self.b, &self.b_in, &mut self.b_err, cx);
            body.as_mut().poll(cx)
        }))
    }
}

fn open(link: &mut Link<End>) -> Stream<End> {
    block_on(poll_fn(|cx| Pin::new(&mut *link).poll_outbound(cx))).unwrap()
}

async fn accept(inbound: &Inbound) -> Stream<End> {
    poll_fn(|_| match inbound.borrow_mut().pop_front() {
        Some(s) => Poll::Ready(s),
        None => Poll::Pending,
    })
    .await
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn a_stream_carries_a_request_and_a_response_with_half_close() {
    let mut n = net(Config::default());
    let mut s = open(&mut n.a);
    let request = pattern(3_000_000, 1);
    let response = pattern(700_000, 2);
    let b_in = n.b_in.clone();
    let (got_request, got_response) = n.run(async {
        let send = async {
            s.write_all(&request).await.unwrap();
            s.close().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            back
        };
        let serve = async {
            let mut r = accept(&b_in).await;
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            r.write_all(&response).await.unwrap();
            r.close().await.unwrap();
            got
        };
        let (back, got) = futures::join!(send, serve);
        (got, back)
    });
    assert!(got_request == request, "request arrived intact");
    assert!(got_response == response, "response arrived intact");
    assert!(n.a_err.is_none() && n.b_err.is_none());
}

#[test]
fn concurrent_streams_in_both_directions_interleave() {
    let mut n = net(Config::default());
    let sizes = [1usize, 100, 65_536, 300_000, 1_500_000];
    let mut from_a: Vec<_> = sizes.iter().map(|_| open(&mut n.a)).collect();
    let mut from_b: Vec<_> = sizes.iter().map(|_| open(&mut n.b)).collect();
    let (a_in, b_in) = (n.a_in.clone(), n.b_in.clone());
    n.run(async {
        let writers = from_a
            .iter_mut()
            .chain(from_b.iter_mut())
            .zip(sizes.iter().chain(&sizes))
            .enumerate()
            .map(|(i, (s, &len))| async move {
                s.write_all(&pattern(len, i as u8)).await.unwrap();
                s.close().await.unwrap();
            });
        let readers = (0..2 * sizes.len()).map(|k| {
            let (a_in, b_in) = (a_in.clone(), b_in.clone());
            async move {
                // Streams are accepted in the order they were opened.
                let (queue, i) = if k < sizes.len() {
                    (b_in, k)
                } else {
                    (a_in, k - sizes.len())
                };
                let mut r = accept(&queue).await;
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                assert!(got == pattern(sizes[i], k as u8), "stream {k} intact");
            }
        });
        futures::join!(
            futures::future::join_all(writers),
            futures::future::join_all(readers)
        );
    });
    assert!(n.a_err.is_none() && n.b_err.is_none());
}

#[test]
fn a_reader_that_stops_holds_up_only_its_own_stream() {
    let config = Config::default();
    let window = config.initial_window as usize;
    let mut n = net(config);
    let mut stuck = open(&mut n.a);
    let mut free = open(&mut n.a);
    let b_in = n.b_in.clone();
    let b_conn = n.b.conn.clone();
    let (written, got, buffered) = n.run(async {
        let _stuck_reader = accept(&b_in).await;
        let mut free_reader = accept(&b_in).await;
        // The stuck stream takes exactly its window, then its writer waits.
        let big = vec![7u8; 4 * window];
        let mut written = 0;
        let stall = async {
            loop {
                written += stuck.write(&big[written..]).await.unwrap();
            }
        };
        let other = async {
            let send = async {
                free.write_all(&pattern(2 * window, 3)).await.unwrap();
                free.close().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = free_reader.read_to_end(&mut got);
            let ((), n) = futures::join!(send, recv);
            n.unwrap();
            got
        };
        let got = match futures::future::select(pin!(stall), pin!(other)).await {
            futures::future::Either::Right((got, _)) => got,
            futures::future::Either::Left(_) => unreachable!("the stalled writer never ends"),
        };
        let buffered = lock(&b_conn)
            .streams
            .map
            .values()
            .map(State::buffered)
            .max();
        (written, got, buffered)
    });
    assert_eq!(written, window, "a stream is sent exactly its window");
    assert!(got == pattern(2 * window, 3));
    assert_eq!(
        buffered,
        Some(window),
        "the stuck stream's reader holds one window"
    );
}

/// Sends `len` bytes over one stream of a link with `config` on both sides; returns the link
/// and the receiver's largest window at the end.
fn transfer(config: Config, len: usize) -> (Net, u32) {
    let mut n = net(config);
    let mut s = open(&mut n.a);
    let b_in = n.b_in.clone();
    let b_conn = n.b.conn.clone();
    let window = n.run(async {
        let mut r = accept(&b_in).await;
        let data = pattern(len, 5);
        let send = async {
            s.write_all(&data).await.unwrap();
            s.close().await.unwrap();
        };
        let recv = async {
            let mut got = vec![0u8; data.len()];
            r.read_exact(&mut got).await.unwrap();
            assert!(got == data);
        };
        futures::join!(send, recv);
        let c = lock(&b_conn);
        c.streams.map.values().map(|st| st.window).max().unwrap()
    });
    (n, window)
}

#[test]
fn a_busy_stream_grows_its_window_within_the_budget() {
    let (n, window) = transfer(Config::default(), 20_000_000);
    assert_eq!(
        window,
        Config::default().max_window,
        "grown to the largest window"
    );
    let c = lock(&n.b.conn);
    assert!(c.streams.window_extra <= c.config.window_budget);
}

#[test]
fn windows_grow_only_out_of_the_nodes_budget() {
    let config = Config {
        shared: Budget::new(0),
        ..Config::default()
    };
    let (_, window) = transfer(config, 4_000_000);
    assert_eq!(window, Config::default().initial_window, "no room to grow");
}

#[test]
fn streams_over_the_pending_limit_are_reset() {
    let config = Config {
        max_pending_inbound: 2,
        ..Config::default()
    };
    let mut n = net(config);
    let mut streams: Vec<_> = (0..3).map(|_| open(&mut n.a)).collect();
    let mut third = streams.pop().unwrap();
    // b's task never accepts: queue the streams on the link itself, not in the test's queue.
    let err = block_on(async {
        third.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 8];
        poll_fn(|cx| {
            let _ = Pin::new(&mut n.a).poll(cx);
            let _ = Pin::new(&mut n.b).poll(cx);
            Pin::new(&mut third).poll_read(cx, &mut buf)
        })
        .await
        .unwrap_err()
    });
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(lock(&n.b.conn).streams.inbound.len(), 2);
}

/// Whether the stream `s` of `n.a` is accepted by `n.b`: it writes, and either `n.b` accepts it
/// or `n.a` reads the reset.
fn accepted(n: &mut Net, s: &mut Stream<End>) -> Option<Stream<End>> {
    let b_in = n.b_in.clone();
    n.run(async {
        if let Err(e) = s.write_all(b"hello").await {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
            return None;
        }
        let mut buf = [0u8; 8];
        let reset = async {
            let err = s.read(&mut buf).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
            None
        };
        let accept = async { Some(accept(&b_in).await) };
        futures::pin_mut!(reset, accept);
        futures::future::select(reset, accept)
            .await
            .factor_first()
            .0
    })
}

#[test]
fn streams_beyond_a_links_own_share_the_nodes_budget_and_are_refused_once_it_is_spent() {
    let window = Config::default().initial_window as usize;
    let node = Config {
        own_streams: 1,
        shared: Budget::new(window),
        ..Config::default()
    };
    let budget = node.shared.clone();
    // Two peers connect to one node: the node's sides share its budget.
    let mut p1 = net2(Config::default(), node.clone());
    let mut p2 = net2(Config::default(), node);
    let mut s1 = open(&mut p1.a);
    let mut s2 = open(&mut p1.a);
    let _r1 = accepted(&mut p1, &mut s1).expect("the link's own stream");
    let r2 = accepted(&mut p1, &mut s2).expect("a stream on the shared budget");
    assert_eq!(budget.used(), window);
    let mut t1 = open(&mut p2.a);
    let mut t2 = open(&mut p2.a);
    let _q1 = accepted(&mut p2, &mut t1).expect("the other link's own stream");
    assert!(
        accepted(&mut p2, &mut t2).is_none(),
        "the node's budget is spent: the stream is reset"
    );
    assert_eq!(budget.used(), window);
    // The first peer's second stream ends: its window goes back to the node.
    drop(r2);
    assert_eq!(budget.used(), 0);
    let mut t3 = open(&mut p2.a);
    let _q3 = accepted(&mut p2, &mut t3).expect("the budget is free again");
    assert_eq!(budget.used(), window);
    drop(s2);
    // A link that ends gives back the windows of streams it still held.
    drop(_q3);
    drop(p2);
    assert_eq!(budget.used(), 0);
}

#[test]
fn dropping_a_stream_resets_it_at_the_peer() {
    let mut n = net(Config::default());
    let mut s = open(&mut n.a);
    let b_in = n.b_in.clone();
    let err = n.run(async {
        s.write_all(b"partial").await.unwrap();
        let mut r = accept(&b_in).await;
        let mut buf = [0u8; 7];
        r.read_exact(&mut buf).await.unwrap();
        drop(s);
        r.read(&mut buf).await.unwrap_err()
    });
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(n.a_err.is_none() && n.b_err.is_none(), "the link lives on");
}

#[test]
fn closing_a_link_ends_the_peer_cleanly_and_fails_its_streams() {
    let mut n = net(Config::default());
    let _s = open(&mut n.a);
    let b_in = n.b_in.clone();
    let mut r = n.run(accept(&b_in));
    block_on(poll_fn(|cx| Pin::new(&mut n.a).poll_close(cx))).unwrap();
    assert_eq!(end_of(&mut n.b), Error::PeerClosed);
    let mut buf = [0u8; 1];
    let e = block_on(r.read(&mut buf)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
}

#[test]
fn a_connection_cut_without_goaway_is_an_error() {
    let (x, y) = pipe(1 << 16);
    let mut link = Link::new(x, &K1, &K2, true, Config::default());
    drop(y);
    assert_cut(end_of(&mut link));
}

/// Polls `link` until it ends; returns why.
fn end_of(link: &mut Link<End>) -> Error {
    block_on(poll_fn(|cx| Pin::new(&mut *link).poll(cx))).unwrap_err()
}

fn assert_cut(err: Error) {
    let eof = matches!(
        err,
        Error::Io {
            kind: io::ErrorKind::UnexpectedEof,
            ..
        }
    );
    assert!(eof, "{err}");
}

/// Sends hand-made records from a raw peer (the dialer, sealing with K1) to a listening link and
/// returns the error the link ends with.
fn violation(frames: &[&[u8]], tamper: bool) -> Error {
    let (mut raw, y) = pipe(1 << 22);
    let mut link = Link::new(y, &K2, &K1, false, Config::default());
    let mut sealer = Sealer::new(&K1);
    let mut bytes = Vec::new();
    for plain in frames {
        let mut rec = vec![0u8; HEADER];
        rec.extend_from_slice(plain);
        sealer.seal(&mut rec).unwrap();
        bytes.extend_from_slice(&rec);
    }
    if tamper {
        bytes[HEADER] ^= 0x80;
    }
    block_on(async {
        raw.write_all(&bytes).await.unwrap();
        poll_fn(|cx| {
            while let Poll::Ready(Ok(_)) = Pin::new(&mut link).poll_inbound(cx) {}
            Pin::new(&mut link).poll(cx)
        })
        .await
        .unwrap_err()
    })
}

fn frame(kind: u8, id: u32, n: u32, data: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&n.to_be_bytes());
    f.extend_from_slice(data);
    f
}

#[test]
fn protocol_violations_end_the_link_and_say_what_they_were() {
    let window = Config::default().initial_window as usize;
    let most = vec![0u8; window - 2 * FRAME_HEADER];
    let rest = vec![0u8; 2 * FRAME_HEADER + 1];
    let len = |v: &Vec<u8>| v.len() as u32;
    let cases: Vec<(Vec<Vec<u8>>, bool, &str)> = vec![
        (vec![frame(OPEN, 2, 0, &[])], false, "opened out of order"),
        (
            vec![frame(OPEN, 3, 0, &[]), frame(OPEN, 1, 0, &[])],
            false,
            "opened out of order",
        ),
        (vec![frame(DATA, 5, 3, b"abc")], false, "never opened"),
        (vec![frame(9, 1, 0, &[])], false, "unknown frame type 9"),
        (vec![vec![OPEN, 0, 0]], false, "frame header cut"),
        (
            vec![frame(OPEN, 1, 0, &[]), frame(DATA, 1, 10, b"short")],
            false,
            "cut by the end of its record",
        ),
        (
            vec![
                [frame(OPEN, 1, 0, &[]), frame(DATA, 1, len(&most), &most)].concat(),
                frame(DATA, 1, len(&rest), &rest),
            ],
            false,
            "left in its window",
        ),
        (
            vec![
                frame(OPEN, 1, 0, &[]),
                frame(CLOSE, 1, 0, &[]),
                frame(DATA, 1, 1, b"x"),
            ],
            false,
            "after its close",
        ),
        (vec![frame(OPEN, 1, 0, &[])], true, "failed authentication"),
    ];
    for (frames, tamper, expect) in cases {
        let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let err = violation(&frames, tamper);
        assert!(
            err.to_string().contains(expect),
            "{err} (expected {expect:?})"
        );
    }
}

#[test]
fn an_oversized_record_is_refused_before_it_is_buffered() {
    let (mut raw, y) = pipe(1 << 16);
    let mut link = Link::new(y, &K2, &K1, false, Config::default());
    let err = block_on(async {
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        poll_fn(|cx| Pin::new(&mut link).poll(cx))
            .await
            .unwrap_err()
    });
    assert!(
        matches!(err, Error::Record(record::Error::Length(_))),
        "{err}"
    );
    assert!(lock(&link.conn).inc.buf.len() <= LARGE_INBUF);
}

#[test]
fn data_written_before_a_close_and_a_drop_stays_readable() {
    let mut n = net(Config::default());
    let mut s = open(&mut n.a);
    let b_in = n.b_in.clone();
    let data = pattern(200_000, 9); // within the window: written before the peer reads
    let got = n.run(async {
        s.write_all(&data).await.unwrap();
        s.close().await.unwrap();
        drop(s);
        let mut r = accept(&b_in).await;
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    });
    assert!(got == data, "all {} bytes, then the end", data.len());
}

#[test]
fn a_stream_dropped_after_the_peer_closed_is_closed_not_reset() {
    let mut n = net(Config::default());
    let mut s = open(&mut n.a);
    let b_in = n.b_in.clone();
    let back = n.run(async {
        s.write_all(b"request").await.unwrap();
        s.close().await.unwrap();
        let serve = async {
            let mut r = accept(&b_in).await;
            let mut req = Vec::new();
            r.read_to_end(&mut req).await.unwrap();
            r.write_all(b"response").await.unwrap();
            // Dropped without closing, after the peer closed its half.
        };
        let mut back = Vec::new();
        let (_, n) = futures::join!(serve, s.read_to_end(&mut back));
        n.unwrap();
        back
    });
    assert_eq!(back, b"response");
}

#[test]
fn data_sent_to_a_stream_dropped_after_closing_is_answered_with_a_reset() {
    let mut n = net(Config::default());
    let mut s = open(&mut n.a);
    let b_in = n.b_in.clone();
    let err = n.run(async {
        s.close().await.unwrap();
        let mut r = accept(&b_in).await;
        drop(s);
        let big = vec![1u8; 4 << 20];
        r.write_all(&big).await.unwrap_err()
    });
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(lock(&n.a.conn).streams.lingering.is_empty());
}

#[test]
fn a_peer_that_does_not_read_cannot_grow_the_send_queue() {
    // The raw peer sends a flood of streams over the limit (each answered with a reset) and
    // never reads; the link may buffer only a little over twice its high-water mark.
    let (mut raw, y) = pipe2(64 << 20, 64 << 10);
    let config = Config::default();
    let cap = 2 * config.high_water + 2 * MAX_PLAINTEXT;
    let mut link = Link::new(y, &K2, &K1, false, config);
    let mut sealer = Sealer::new(&K1);
    let per_record = MAX_PLAINTEXT / FRAME_HEADER;
    let mut bytes = Vec::new();
    let mut id = 1u32;
    for _ in 0..40 {
        let mut rec = vec![0u8; HEADER];
        for _ in 0..per_record {
            rec.extend_from_slice(&frame(OPEN, id, 0, &[]));
            id += 2;
        }
        sealer.seal(&mut rec).unwrap();
        bytes.extend_from_slice(&rec);
    }
    block_on(raw.write_all(&bytes)).unwrap();
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    for _ in 0..1000 {
        assert!(Pin::new(&mut link).poll(&mut cx).is_pending());
    }
    let c = lock(&link.conn);
    assert!(c.out.backlog() <= cap, "{} queued", c.out.backlog());
    assert!(
        c.inc.end > c.inc.start || c.streams.last_remote < id - 2,
        "reading stopped"
    );
}

#[test]
fn dropping_a_link_closes_its_socket_even_while_streams_are_held() {
    let (x, y) = pipe(1 << 16);
    let mut a = Link::new(x, &K1, &K2, true, Config::default());
    let mut b = Link::new(y, &K2, &K1, false, Config::default());
    let mut s = open(&mut a);
    drop(a);
    assert_cut(end_of(&mut b));
    let e = block_on(s.write(b"late")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
}

#[test]
fn random_frames_from_a_peer_never_panic_and_stay_bounded() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let config = Config::default();
    let mut ended = 0;
    for case in 0..300 {
        let (mut raw, y) = pipe2(8 << 20, 8 << 20);
        let mut link = Link::new(y, &K2, &K1, false, config.clone());
        let mut sealer = Sealer::new(&K1);
        let mut bytes = Vec::new();
        for _ in 0..rng.random_range(1..20) {
            let mut rec = vec![0u8; HEADER];
            for _ in 0..rng.random_range(0..40) {
                // Mostly plausible frames on a few streams, now and then garbage.
                let kind = rng.random_range(0..7u8);
                let id = rng.random_range(0..8u32);
                let len = if rng.random_bool(0.1) {
                    rng.random()
                } else {
                    rng.random_range(0..3000u32)
                };
                let data_len = if kind == DATA {
                    let room = MAX_PLAINTEXT.saturating_sub(rec.len() - HEADER + FRAME_HEADER);
                    (len as usize).min(room)
                } else {
                    0
                };
                if rec.len() - HEADER + FRAME_HEADER + data_len > MAX_PLAINTEXT {
                    break;
                }
                let data = vec![rng.random::<u8>(); data_len];
                rec.extend_from_slice(&frame(kind, id, len, &data));
            }
            if rng.random_bool(0.05) {
                let cut = rng.random_range(HEADER..=rec.len());
                rec.truncate(cut);
            }
            sealer.seal(&mut rec).unwrap();
            if rng.random_bool(0.03) {
                let i = rng.random_range(0..rec.len());
                rec[i] ^= 1 << rng.random_range(0..8);
            }
            bytes.extend_from_slice(&rec);
        }
        block_on(raw.write_all(&bytes)).unwrap();
        drop(raw);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut accepted = Vec::new();
        for _ in 0..200 {
            while let Poll::Ready(Ok(s)) = Pin::new(&mut link).poll_inbound(&mut cx) {
                accepted.push(s);
            }
            if Pin::new(&mut link).poll(&mut cx).is_ready() {
                ended += 1;
                break;
            }
        }
        // Read what the accepted streams hold, as an application would.
        for s in &mut accepted {
            let mut buf = [0u8; 4096];
            while let Poll::Ready(Ok(n)) = Pin::new(&mut *s).poll_read(&mut cx, &mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
        let c = lock(&link.conn);
        assert!(c.inc.buf.len() <= LARGE_INBUF, "case {case}");
        assert!(
            c.out.backlog() <= 2 * config.high_water + 2 * MAX_PLAINTEXT,
            "case {case}"
        );
        assert!(
            c.streams.map.len() <= config.max_inbound_streams,
            "case {case}"
        );
        for st in c.streams.map.values() {
            assert!(st.buffered() <= st.window as usize, "case {case}");
        }
    }
    assert!(ended > 0, "some cases end the link");
}
