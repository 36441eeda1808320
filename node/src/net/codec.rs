//! The request-response protocol that carries model payloads.
//!
//! Frames: one tag byte, a 4-byte big-endian length, then that many bytes. A request is a fetch
//! of the peer's latest signed update ([`Request::Fetch`], with the round wanted at least as 8
//! big-endian bytes, or none; with the `top-k` codec, 16 bytes: that round (all ones for none)
//! and the round of the copy of the peer's estimate the asker holds; answered by
//! [`Response::Model`]) or an update pushed unasked
//! ([`Request::Update`], answered by [`Response::Ack`]: models move by pull, so only an attacker
//! pushes, and the engine penalises it). Frames that carry nothing must have length 0, a fetch 0,
//! 8 or 16, and every length is checked against its tag and `max_bytes` before anything is read.
//!
//! Payloads are `Arc<[u8]>`, as the engine takes and gives them: one signed update goes to
//! several peers without a copy. A received body is read in 64 KiB steps (memory follows the
//! bytes a peer really sends, not the length it announces), under node-wide budgets of bytes
//! being read at once: one for the answers to this node's own fetches, one for pushed updates.
//! Anyone may push, so pushes stalled half-read hold only their own budget: they cannot make the
//! node's fetches fail. Fetch requests (at most 16 bytes) take from neither.
//!
//! A frame refused on its tag or length is a [`FrameError`]: in an answer to a fetch, the driver
//! hands it to the engine ([`Input::Unframed`](murmur_protocol::engine::Input::Unframed)), which
//! charges the peer as for an oversize or malformed update (an acknowledgement answering a fetch
//! is charged as malformed too). A refused *request* cannot be
//! charged: libp2p's request-response behaviour drops a request whose reading fails without
//! reporting it. It costs this node the five bytes of its header (and a stream, within the
//! link's stream limits).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::prelude::*;
use libp2p::StreamProtocol;
use libp2p::request_response;

const TAG_UPDATE: u8 = 1;
const TAG_FETCH: u8 = 2;
const TAG_ACK: u8 = 3;
const TAG_MODEL: u8 = 4;
const TAG_NONE: u8 = 5;
const TAG_BUSY: u8 = 6;

/// A request to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A signed update pushed unasked (unchecked bytes).
    Update(Arc<[u8]>),
    /// Ask for the peer's latest signed update, of `round` or later if given; with the `top-k`
    /// codec, the increments since the copy of round `have` the asker holds.
    Fetch {
        /// The round wanted at least.
        round: Option<u64>,
        /// The round of the asker's copy of the peer's estimate (`top-k` only).
        have: Option<u64>,
    },
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The update was received (not necessarily accepted).
    Ack,
    /// The peer's latest signed update, or `None` before it has trained a round.
    Model(Option<Arc<[u8]>>),
    /// The fetch is refused: the peer's uplink would not carry the answer in time (its
    /// `engine.uplink-mbps`); the asker draws another peer.
    Busy,
}

/// Frames requests and responses, refusing any frame over `max_bytes`, and bounding the bytes
/// being read at once across the whole node.
#[derive(Debug, Clone)]
pub struct Codec {
    max_bytes: usize,
    /// For answers to this node's fetches.
    answers: Budget,
    /// For updates pushed to this node.
    pushes: Budget,
}

/// Bytes of frames being read now, by every connection of the node (shared by the clones the
/// swarm makes per connection), and the most allowed.
#[derive(Debug, Clone)]
struct Budget {
    inflight: Arc<AtomicUsize>,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            inflight: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }
}

/// Frames of at most this many bytes (fetch requests, empty answers) are read without a budget:
/// the link's stream limits bound them.
const SMALL: usize = 16;

/// A frame's body is read in steps of this many bytes: memory grows with what a peer actually
/// sends, not with the length it announces.
const STEP: usize = 64 * 1024;

impl Codec {
    /// A codec accepting frames of at most `max_bytes` payload bytes, with room for eight such
    /// frames (at least 64 MiB) of answers being read at once across the node, and as much again
    /// of pushes.
    pub fn new(max_bytes: usize) -> Self {
        Self::with_budget(max_bytes, max_bytes.saturating_mul(8).max(64 << 20))
    }

    /// [`Codec::new`] with an explicit node-wide budget of bytes being read at once, for
    /// answers and for pushes each.
    pub fn with_budget(max_bytes: usize, budget: usize) -> Self {
        Self {
            max_bytes,
            answers: Budget::new(budget),
            pushes: Budget::new(budget),
        }
    }
}

/// Bytes taken from the node-wide budget, given back when the read ends either way.
struct Reserved<'a> {
    inflight: &'a AtomicUsize,
    bytes: usize,
}

impl Reserved<'_> {
    fn take(&mut self, n: usize, limit: usize, what: &str) -> io::Result<()> {
        let before = self.inflight.fetch_add(n, Ordering::Relaxed);
        self.bytes += n;
        if before.saturating_add(n) > limit {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("over the node's {limit} bytes of {what} being read at once"),
            ));
        }
        Ok(())
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.inflight.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A frame the peer got wrong. Unlike a closed stream, a timeout or the node's own budget, it is
/// the peer's doing: the driver charges it to the peer (see [`FrameError::of`]).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A length over the largest valid message.
    #[error("frame of {len} bytes over the limit of {max}")]
    Oversize {
        /// The length the frame announced.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A length its tag cannot carry (a fetch of 3 bytes, an acknowledgement with a body).
    #[error("frame tag {tag} cannot carry {len} bytes")]
    Length {
        /// The tag.
        tag: u8,
        /// The length.
        len: usize,
    },
    /// A tag that is no frame's.
    #[error("unknown frame tag {0}")]
    Tag(u8),
}

impl FrameError {
    /// The frame error inside an I/O error this codec returned, if it is one.
    pub fn of(e: &io::Error) -> Option<&FrameError> {
        e.get_ref()?.downcast_ref()
    }
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The longest body a frame of this tag may carry: frames that carry nothing must say 0, a
/// fetch 0, 8 or 16, models and updates at most `max`.
fn allowed(tag: u8, len: usize, max: usize) -> io::Result<()> {
    let ok = match tag {
        TAG_UPDATE | TAG_MODEL => len <= max,
        TAG_FETCH => matches!(len, 0 | 8 | 16),
        TAG_ACK | TAG_NONE | TAG_BUSY => len == 0,
        _ => return Err(bad_tag(tag)),
    };
    if ok {
        Ok(())
    } else if len > max {
        Err(FrameError::Oversize { len, max }.into())
    } else {
        Err(bad_length(tag, len))
    }
}

/// Reads one frame, its body (unless [`SMALL`]) within `budget`, called `what` in its error.
async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max_bytes: usize,
    budget: &Budget,
    what: &str,
) -> io::Result<(u8, Arc<[u8]>)> {
    let mut head = [0u8; 5];
    io.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    allowed(head[0], len, max_bytes)?;
    let mut reserved = Reserved {
        inflight: &budget.inflight,
        bytes: 0,
    };
    let mut body = Vec::with_capacity(len.min(STEP));
    while body.len() < len {
        let n = STEP.min(len - body.len());
        if len > SMALL {
            reserved.take(n, budget.limit, what)?;
        }
        let start = body.len();
        body.resize(start + n, 0);
        io.read_exact(&mut body[start..]).await?;
    }
    Ok((head[0], body.into()))
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    tag: u8,
    body: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&len.to_be_bytes());
    io.write_all(&head).await?;
    io.write_all(body).await?;
    io.flush().await?;
    io.close().await
}

fn bad_length(tag: u8, len: usize) -> io::Error {
    FrameError::Length { tag, len }.into()
}

fn bad_tag(tag: u8) -> io::Error {
    FrameError::Tag(tag).into()
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, self.max_bytes, &self.pushes, "pushed updates").await? {
            (TAG_UPDATE, body) => Ok(Request::Update(body)),
            (TAG_FETCH, body) => {
                let at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
                match body.len() {
                    0 => Ok(Request::Fetch {
                        round: None,
                        have: None,
                    }),
                    8 => Ok(Request::Fetch {
                        round: Some(at(0)),
                        have: None,
                    }),
                    16 => Ok(Request::Fetch {
                        round: Some(at(0)).filter(|&r| r != u64::MAX),
                        have: Some(at(8)),
                    }),
                    len => Err(bad_length(TAG_FETCH, len)),
                }
            }
            (tag, _) => Err(bad_tag(tag)),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, self.max_bytes, &self.answers, "answers").await? {
            (TAG_ACK, body) if body.is_empty() => Ok(Response::Ack),
            (TAG_MODEL, body) => Ok(Response::Model(Some(body))),
            (TAG_NONE, body) if body.is_empty() => Ok(Response::Model(None)),
            (TAG_BUSY, body) if body.is_empty() => Ok(Response::Busy),
            (tag @ (TAG_ACK | TAG_NONE | TAG_BUSY), body) => Err(bad_length(tag, body.len())),
            (tag, _) => Err(bad_tag(tag)),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Request::Update(bytes) => write_frame(io, TAG_UPDATE, &bytes).await,
            Request::Fetch {
                round: None,
                have: None,
            } => write_frame(io, TAG_FETCH, &[]).await,
            Request::Fetch {
                round: Some(round),
                have: None,
            } => write_frame(io, TAG_FETCH, &round.to_be_bytes()).await,
            Request::Fetch {
                round,
                have: Some(have),
            } => {
                let mut body = [0u8; 16];
                body[..8].copy_from_slice(&round.unwrap_or(u64::MAX).to_be_bytes());
                body[8..].copy_from_slice(&have.to_be_bytes());
                write_frame(io, TAG_FETCH, &body).await
            }
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match res {
            Response::Ack => write_frame(io, TAG_ACK, &[]).await,
            Response::Model(Some(bytes)) => write_frame(io, TAG_MODEL, &bytes).await,
            Response::Model(None) => write_frame(io, TAG_NONE, &[]).await,
            Response::Busy => write_frame(io, TAG_BUSY, &[]).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use request_response::Codec as _;

    fn proto() -> StreamProtocol {
        StreamProtocol::new("/test")
    }

    #[test]
    fn frames_round_trip_and_oversize_is_refused_before_allocating() {
        block_on(async {
            let mut c = Codec::new(16);
            let mut buf = Vec::new();
            c.write_request(&proto(), &mut buf, Request::Update(vec![7; 10].into()))
                .await
                .unwrap();
            let got = c.read_request(&proto(), &mut &buf[..]).await.unwrap();
            assert_eq!(got, Request::Update(vec![7; 10].into()));

            for answer in [Response::Model(None), Response::Busy] {
                let mut buf = Vec::new();
                c.write_response(&proto(), &mut buf, answer.clone())
                    .await
                    .unwrap();
                let got = c.read_response(&proto(), &mut &buf[..]).await.unwrap();
                assert_eq!(got, answer);
            }

            // Fetches: any round, and the round of the asker's copy (the `top-k` codec).
            for (round, have) in [
                (None, None),
                (Some(7), None),
                (Some(7), Some(5)),
                (None, Some(0)),
            ] {
                let mut buf = Vec::new();
                let fetch = Request::Fetch { round, have };
                c.write_request(&proto(), &mut buf, fetch.clone())
                    .await
                    .unwrap();
                let got = c.read_request(&proto(), &mut &buf[..]).await.unwrap();
                assert_eq!(got, fetch);
            }

            let mut buf = Vec::new();
            Codec::new(1 << 20)
                .write_request(&proto(), &mut buf, Request::Update(vec![0; 17].into()))
                .await
                .unwrap();
            let err = c.read_request(&proto(), &mut &buf[..]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(
                matches!(
                    FrameError::of(&err),
                    Some(FrameError::Oversize { len: 17, max: 16 })
                ),
                "{err}"
            );

            let err = c
                .read_request(&proto(), &mut &[9u8, 0, 0, 0, 0][..])
                .await
                .unwrap_err();
            assert!(
                matches!(FrameError::of(&err), Some(FrameError::Tag(9))),
                "{err}"
            );
        });
    }

    /// A header announcing a large frame costs nothing until its bytes come; frames that carry
    /// nothing must say so; and the node-wide budget refuses a read that would pass it, then
    /// recovers once reads end.
    #[test]
    fn lengths_are_checked_by_tag_and_reads_stay_within_the_budget() {
        block_on(async {
            let c = Codec::with_budget(1 << 30, 200 * 1024);
            // Announces 1 GiB, sends 3 bytes: an early end, not a 1 GiB buffer.
            let mut lying = vec![TAG_UPDATE];
            lying.extend_from_slice(&(1u32 << 30).to_be_bytes());
            lying.extend_from_slice(&[1, 2, 3]);
            let err = read_frame(&mut &lying[..], c.max_bytes, &c.answers, "answers")
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            assert!(
                FrameError::of(&err).is_none(),
                "an early end is not the peer's frame error"
            );
            assert_eq!(c.answers.inflight.load(Ordering::Relaxed), 0, "given back");
            // An ack or a fetch that claims a body.
            for (tag, len) in [
                (TAG_ACK, 1u32),
                (TAG_NONE, 4),
                (TAG_BUSY, 2),
                (TAG_FETCH, 5),
            ] {
                let mut f = vec![tag];
                f.extend_from_slice(&len.to_be_bytes());
                f.resize(5 + len as usize, 0);
                let err = read_frame(&mut &f[..], c.max_bytes, &c.answers, "answers")
                    .await
                    .unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "tag {tag}");
                assert!(
                    matches!(FrameError::of(&err), Some(FrameError::Length { .. })),
                    "{err}"
                );
            }
            // 300 KiB is over the 200 KiB budget: refused once the budget is spent.
            let mut big = vec![TAG_MODEL];
            big.extend_from_slice(&(300u32 * 1024).to_be_bytes());
            big.resize(5 + 300 * 1024, 7);
            let err = read_frame(&mut &big[..], c.max_bytes, &c.answers, "answers")
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
            assert!(
                FrameError::of(&err).is_none(),
                "the node's own budget, not the peer's"
            );
            assert_eq!(c.answers.inflight.load(Ordering::Relaxed), 0);
            let mut fits = vec![TAG_MODEL];
            fits.extend_from_slice(&(100u32 * 1024).to_be_bytes());
            fits.resize(5 + 100 * 1024, 7);
            let (_, body) = read_frame(&mut &fits[..], c.max_bytes, &c.answers, "answers")
                .await
                .unwrap();
            assert_eq!(body.len(), 100 * 1024);
        });
    }

    /// Bytes that come, then nothing more (a peer that stalls its stream).
    struct Stalling(Vec<u8>);

    impl AsyncRead for Stalling {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            if self.0.is_empty() {
                return std::task::Poll::Pending;
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            std::task::Poll::Ready(Ok(n))
        }
    }

    /// Anyone may push (unidentified peers too, and every push is junk: models move by pull).
    /// Pushes that stall half-read must not hold the budget the node's own fetches are read
    /// with, nor keep a fetch request from being read: before, a stranger with a few stalled
    /// streams made every model the node fetched fail, uncharged.
    #[test]
    fn stalled_pushes_starve_neither_fetch_answers_nor_fetch_requests() {
        let mut c = Codec::with_budget(1 << 20, 200 * 1024);
        let mut push = vec![TAG_UPDATE];
        push.extend_from_slice(&(190u32 * 1024).to_be_bytes());
        push.resize(5 + 150 * 1024, 7);
        let mut stalled = c.clone();
        let mut stream = Stalling(push);
        let protocol = proto();
        let mut reading = Box::pin(stalled.read_request(&protocol, &mut stream));
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        assert!(reading.as_mut().poll(&mut cx).is_pending(), "stalled");

        block_on(async {
            let mut model = vec![TAG_MODEL];
            model.extend_from_slice(&(100u32 * 1024).to_be_bytes());
            model.resize(5 + 100 * 1024, 7);
            let got = c.read_response(&proto(), &mut &model[..]).await;
            assert!(
                matches!(&got, Ok(Response::Model(Some(b))) if b.len() == 100 * 1024),
                "{got:?}"
            );
            let mut fetch = Vec::new();
            let asked = Request::Fetch {
                round: Some(3),
                have: None,
            };
            c.write_request(&proto(), &mut fetch, asked.clone())
                .await
                .unwrap();
            let got = c.read_request(&proto(), &mut &fetch[..]).await.unwrap();
            assert_eq!(got, asked);
        });
        assert!(
            c.pushes.inflight.load(Ordering::Relaxed) > 100 * 1024,
            "the push holds its own"
        );
        drop(reading);
        for b in [&c.answers, &c.pushes] {
            assert_eq!(b.inflight.load(Ordering::Relaxed), 0, "given back");
        }
    }
}
