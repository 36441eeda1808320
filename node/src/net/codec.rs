//! The request-response protocol that carries model payloads.
//!
//! Frames: one tag byte, a 4-byte big-endian length, then that many bytes. A request is a fetch
//! of the peer's latest signed update ([`Request::Fetch`], with the round wanted at least as 8
//! big-endian bytes, or none; answered by [`Response::Model`]) or an update pushed unasked
//! ([`Request::Update`], answered by [`Response::Ack`]: models move by pull, so only an attacker
//! pushes, and the engine penalises it). Frames that carry nothing must have length 0, a fetch 0
//! or 8, and every read is bounded by the codec's `max_bytes` before anything is allocated.
//!
//! Payloads are `Arc<[u8]>`, as the engine takes and gives them: one signed update goes to
//! several peers without a copy, and a received one is read straight into the buffer the engine
//! keeps.

use std::io;
use std::sync::Arc;

use futures::prelude::*;
use libp2p::StreamProtocol;
use libp2p::request_response;

const TAG_UPDATE: u8 = 1;
const TAG_FETCH: u8 = 2;
const TAG_ACK: u8 = 3;
const TAG_MODEL: u8 = 4;
const TAG_NONE: u8 = 5;

/// A request to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A signed update pushed unasked (unchecked bytes).
    Update(Arc<[u8]>),
    /// Ask for the peer's latest signed update, of this round or later if given.
    Fetch(Option<u64>),
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The update was received (not necessarily accepted).
    Ack,
    /// The peer's latest signed update, or `None` before it has trained a round.
    Model(Option<Arc<[u8]>>),
}

/// Frames requests and responses, refusing any frame over `max_bytes`.
#[derive(Debug, Clone)]
pub struct Codec {
    max_bytes: usize,
}

impl Codec {
    /// A codec accepting frames of at most `max_bytes` payload bytes.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<(u8, Arc<[u8]>)> {
    let mut head = [0u8; 5];
    io.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes over the limit of {max}"),
        ));
    }
    // Allocated once, zeroed in place, and read into: no copy on the way to the engine.
    let mut body: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
    io.read_exact(Arc::get_mut(&mut body).expect("not shared yet"))
        .await?;
    Ok((head[0], body))
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
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame tag {tag} cannot carry {len} bytes"),
    )
}

fn bad_tag(tag: u8) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unknown frame tag {tag}"),
    )
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, self.max_bytes).await? {
            (TAG_UPDATE, body) => Ok(Request::Update(body)),
            (TAG_FETCH, body) => match *body {
                [] => Ok(Request::Fetch(None)),
                [a, b, c, d, e, f, g, h] => Ok(Request::Fetch(Some(u64::from_be_bytes([
                    a, b, c, d, e, f, g, h,
                ])))),
                _ => Err(bad_length(TAG_FETCH, body.len())),
            },
            (tag, _) => Err(bad_tag(tag)),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, self.max_bytes).await? {
            (TAG_ACK, body) if body.is_empty() => Ok(Response::Ack),
            (TAG_MODEL, body) => Ok(Response::Model(Some(body))),
            (TAG_NONE, body) if body.is_empty() => Ok(Response::Model(None)),
            (tag @ (TAG_ACK | TAG_NONE), body) => Err(bad_length(tag, body.len())),
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
            Request::Fetch(None) => write_frame(io, TAG_FETCH, &[]).await,
            Request::Fetch(Some(round)) => write_frame(io, TAG_FETCH, &round.to_be_bytes()).await,
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

            let mut buf = Vec::new();
            c.write_response(&proto(), &mut buf, Response::Model(None))
                .await
                .unwrap();
            let got = c.read_response(&proto(), &mut &buf[..]).await.unwrap();
            assert_eq!(got, Response::Model(None));

            let mut buf = Vec::new();
            Codec::new(1 << 20)
                .write_request(&proto(), &mut buf, Request::Update(vec![0; 17].into()))
                .await
                .unwrap();
            let err = c.read_request(&proto(), &mut &buf[..]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            let err = c.read_request(&proto(), &mut &[9u8, 0, 0, 0, 0][..]).await;
            assert!(err.is_err(), "unknown tag");
        });
    }
}
