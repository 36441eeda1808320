//! The multiplexer of a link: many streams over one connection of sealed records.
//!
//! The plaintext of a record is a sequence of frames, none cut by the record's end. A frame is a
//! type byte, a stream id (u32, big-endian) and a length or credit (u32, big-endian); a `DATA`
//! frame carries that many bytes after its header:
//!
//! | type | meaning |
//! |---|---|
//! | `DATA` | bytes of a stream |
//! | `OPEN` | the sender opened the stream (ids odd for the dialer, even for the listener, rising) |
//! | `CLOSE` | the sender will write no more on the stream (half close) |
//! | `RESET` | the sender abandoned the stream (dropped it before closing its half) |
//! | `CREDIT` | the sender may be sent this many more bytes on the stream |
//! | `GOAWAY` | the sender is closing the connection |
//!
//! Flow control is per stream: a stream may be sent [`Config::initial_window`] bytes, and its
//! receiver grants credit back as its reader consumes them. A stream that keeps its window busy
//! has the window doubled, up to [`Config::max_window`], while the connection's windows together
//! stay within [`Config::window_budget`]; so what a peer can make a node buffer is bounded by the
//! windows of at most [`Config::max_inbound_streams`] and [`Config::max_outbound_streams`]
//! streams. Across the links of a node, only the first [`Config::own_streams`] open streams of
//! each link have their initial windows of right; every further window, and every window's
//! growth, is drawn from the node-wide [`Budget`] ([`Config::shared`]), and a stream the peer
//! opens when that is spent is reset. So a node buffers at most `own_streams` initial windows per
//! connection plus the shared budget, however many peers connect. What a node queues to send is
//! bounded too: writers wait above
//! [`Config::high_water`], and above twice that (a peer that sends frames which need an answer
//! but does not read the answers) the connection stops reading until the queue drains.
//!
//! Sending a stream more than its window, data on a stream never opened or after its close, a
//! stream opened out of order, a frame cut by its record or of an unknown type, and a record
//! that fails authentication are protocol violations that end the connection with an error
//! naming them.
//!
//! Dropping a stream follows yamux: a stream whose writing half is unfinished is reset, one the
//! peer already closed is closed, and one whose own half is closed is left to the peer (data it
//! still sends is answered with a reset). A reset after a close leaves the data readable.
//!
//! All socket I/O happens in [`Link`]'s `StreamMuxer` methods, which libp2p polls on the
//! connection's task; a stream only moves bytes between its buffers and the link's, and wakes
//! the connection's task when there is something to send.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

mod frames;
mod streams;

use frames::{GOAWAY, OPEN, Outgoing, handle_frames};
use streams::{State, Streams};

use super::record::{self, HEADER, MAX_WIRE, Opener, Sealer};

pub use frames::FRAME_HEADER;

/// Records opened per poll of the connection before it yields to its other work.
const READ_BUDGET: usize = 64;
/// Sealed records written with one system call.
const WRITE_BATCH: usize = 8;
/// Receive buffer of a connection that has only seen small records.
const SMALL_INBUF: usize = 64 * 1024;
/// Receive buffer once a large record arrives.
const LARGE_INBUF: usize = 2 * MAX_WIRE;

/// Limits of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bytes a stream may be sent before its reader grants more. Default 256 KiB.
    pub initial_window: u32,
    /// Largest window a busy stream grows to. Default 8 MiB.
    pub max_window: u32,
    /// Most bytes the connection's windows may together exceed their initial size by.
    /// Default 32 MiB.
    pub window_budget: usize,
    /// Most open streams the peer opened; a stream it opens beyond them is reset. Default 128.
    pub max_inbound_streams: usize,
    /// Most open streams this side opened; opening another waits for one to end. Default 128.
    pub max_outbound_streams: usize,
    /// Most inbound streams waiting to be accepted; further ones are reset. Default 64.
    pub max_pending_inbound: usize,
    /// Sealed bytes waiting for the socket above which writers wait. Default 1 MiB.
    pub high_water: usize,
    /// Open streams (opened by either side) whose initial windows a link promises on its own;
    /// further streams' windows come out of [`Config::shared`]. Default 16.
    pub own_streams: usize,
    /// Receive-window bytes the links of a node promise together beyond their own streams:
    /// clones of a config share it. Default 256 MiB.
    pub shared: Budget,
}

/// Receive-window bytes shared by the links of a node. Clones share one budget.
#[derive(Clone)]
pub struct Budget(Arc<BudgetState>);

struct BudgetState {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(BudgetState {
            limit,
            used: AtomicUsize::new(0),
        }))
    }

    /// The budget's size.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes promised now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they are left.
    fn take(&self, n: usize) -> bool {
        let limit = self.0.limit;
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= limit)
            })
            .is_ok()
    }

    /// Takes `n` bytes whether or not they are left (for streams this side opens, whose number
    /// its own behaviours bound).
    fn force(&self, n: usize) {
        self.0.used.fetch_add(n, Ordering::AcqRel);
    }

    /// Gives `n` taken bytes back.
    fn give(&self, n: usize) {
        if n > 0 {
            self.0.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.limit())
            .field("used", &self.used())
            .finish()
    }
}

/// Two budgets are equal when they are the same budget.
impl PartialEq for Budget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Budget {}

impl Default for Config {
    fn default() -> Self {
        Self {
            initial_window: 256 * 1024,
            max_window: 8 * 1024 * 1024,
            window_budget: 32 * 1024 * 1024,
            max_inbound_streams: 128,
            max_outbound_streams: 128,
            max_pending_inbound: 64,
            high_water: 1024 * 1024,
            own_streams: 16,
            shared: Budget::new(256 * 1024 * 1024),
        }
    }
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The socket failed.
    #[error("link i/o: {message}")]
    Io {
        /// The socket error's kind.
        kind: io::ErrorKind,
        /// The socket error.
        message: String,
    },
    /// A record failed to open.
    #[error("link record: {0}")]
    Record(#[from] record::Error),
    /// The peer broke the framing or flow-control rules.
    #[error("peer broke the link protocol: {0}")]
    Protocol(String),
    /// This side closed the link.
    #[error("link closed")]
    Closed,
    /// The peer closed the link (after a `GOAWAY`).
    #[error("peer closed the link")]
    PeerClosed,
    /// Stream ids ran out (2^31 streams opened on one connection).
    #[error("stream ids exhausted")]
    Exhausted,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io { kind, .. } => *kind,
            Error::Record(_) | Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Closed | Error::PeerClosed => io::ErrorKind::ConnectionAborted,
            Error::Exhausted => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// A link: the multiplexed, encrypted connection to one peer.
pub struct Link<S> {
    conn: Arc<Mutex<Conn<S>>>,
}

impl<S> std::fmt::Debug for Link<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// One stream of a link.
pub struct Stream<S> {
    id: u32,
    conn: Arc<Mutex<Conn<S>>>,
}

impl<S> std::fmt::Debug for Stream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

fn lock<S>(conn: &Mutex<Conn<S>>) -> MutexGuard<'_, Conn<S>> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes a waiting task, keeping the waker (for a task that is polled again and again).
fn nudge(waker: &Option<Waker>) {
    if let Some(w) = waker {
        w.wake_by_ref();
    }
}

/// Wakes a waiting task once.
fn wake(waker: &mut Option<Waker>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The state of a connection, shared by the link and its streams.
struct Conn<S> {
    /// The socket, until the link is dropped.
    io: Option<S>,
    sealer: Sealer,
    opener: Opener,
    out: Outgoing,
    inc: Incoming,
    streams: Streams,
    config: Config,
    /// Why the connection ended, once it has.
    dead: Option<Error>,
    /// The task that polls the link, woken when there is something to send.
    conn_waker: Option<Waker>,
    goaway_sent: bool,
    goaway_received: bool,
}

/// Received bytes: `buf[start..end]` are read and not yet opened.
struct Incoming {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    /// A link over `io`, after a handshake that gave `send` and `recv` keys. `dialer` is
    /// whether this side opened the connection (its stream ids are odd).
    pub fn new(io: S, send: &[u8; 32], recv: &[u8; 32], dialer: bool, config: Config) -> Self {
        let conn = Conn {
            io: Some(io),
            sealer: Sealer::new(send),
            opener: Opener::new(recv),
            out: Outgoing::default(),
            inc: Incoming {
                buf: vec![0; SMALL_INBUF],
                start: 0,
                end: 0,
            },
            streams: Streams::new(dialer),
            config,
            dead: None,
            conn_waker: None,
            goaway_sent: false,
            goaway_received: false,
        };
        Self {
            conn: Arc::new(Mutex::new(conn)),
        }
    }
}

impl<S> Conn<S> {
    fn wake_conn(&self) {
        nudge(&self.conn_waker);
    }

    /// Ends the connection (once) and wakes everything waiting on it.
    fn fail(&mut self, why: Error) {
        if self.dead.is_some() {
            return;
        }
        tracing::debug!(error = %why, "link ended");
        self.dead = Some(why);
        for st in self.streams.map.values_mut() {
            wake(&mut st.read_waker);
            wake(&mut st.write_waker);
        }
        wake(&mut self.streams.inbound_waker);
        wake(&mut self.streams.outbound_waker);
        self.wake_conn();
    }

    fn check(&self) -> Result<(), Error> {
        self.dead.clone().map_or(Ok(()), Err)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads and opens records until the socket has no more, the budget is spent or too much
    /// waits to be sent; returns whether it stopped before the socket had no more.
    fn drive_read(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        for _ in 0..READ_BUDGET {
            self.open_records()?;
            if self.out.backlog() > 2 * self.config.high_water {
                return Ok(true);
            }
            let Some(io) = self.io.as_mut() else {
                return Err(Error::Closed);
            };
            let inc = &mut self.inc;
            if inc.end == inc.buf.len() {
                // open_records leaves room for the rest of the next record.
                return Err(Error::Protocol(
                    "a record larger than the receive buffer".into(),
                ));
            }
            match Pin::new(io).poll_read(cx, &mut inc.buf[inc.end..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(if self.goaway_received {
                        Error::PeerClosed
                    } else {
                        io::Error::new(io::ErrorKind::UnexpectedEof, "connection ended").into()
                    });
                }
                Poll::Ready(Ok(n)) => inc.end += n,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Opens and handles every complete record in the receive buffer, then makes room for the
    /// next one.
    fn open_records(&mut self) -> Result<(), Error> {
        let Conn {
            opener,
            sealer,
            out,
            inc,
            streams,
            config,
            goaway_received,
            ..
        } = self;
        let mut need = HEADER;
        loop {
            let avail = inc.end - inc.start;
            if avail < HEADER {
                break;
            }
            let prefix = inc.buf[inc.start..inc.start + HEADER]
                .try_into()
                .expect("4 bytes");
            let body = record::body_len(prefix)?;
            if avail < HEADER + body {
                need = HEADER + body;
                break;
            }
            let at = inc.start + HEADER;
            let plain = opener.open(&mut inc.buf[at..at + body])?;
            handle_frames(plain, streams, out, sealer, config, goaway_received)?;
            inc.start += HEADER + body;
        }
        if inc.start == inc.end {
            inc.start = 0;
            inc.end = 0;
        }
        if need > SMALL_INBUF && inc.buf.len() < LARGE_INBUF {
            inc.buf.resize(LARGE_INBUF, 0);
        }
        let short = inc.buf.len() - inc.start < need || inc.buf.len() - inc.end < inc.buf.len() / 4;
        if inc.start > 0 && short {
            inc.buf.copy_within(inc.start..inc.end, 0);
            inc.end -= inc.start;
            inc.start = 0;
        }
        Ok(())
    }

    /// Writes sealed records (sealing the open one once the queue is empty) until the socket
    /// takes no more.
    fn drive_write(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        let mut wrote = false;
        loop {
            if self.out.sealed.is_empty() {
                if self.out.open.is_empty() {
                    break;
                }
                self.out.seal(&mut self.sealer)?;
            }
            let out = &self.out;
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            for (i, (slot, rec)) in slices.iter_mut().zip(&out.sealed).enumerate() {
                *slot = IoSlice::new(if i == 0 { &rec[out.pos..] } else { rec });
            }
            let k = out.sealed.len().min(WRITE_BATCH);
            let Some(io) = self.io.as_mut() else {
                return Err(Error::Closed);
            };
            match Pin::new(io).poll_write_vectored(cx, &slices[..k]) {
                Poll::Ready(Ok(0)) => {
                    return Err(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                Poll::Ready(Ok(n)) => {
                    self.out.advance(n);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => break,
            }
        }
        if wrote
            && let Some(io) = self.io.as_mut()
            && let Poll::Ready(Err(e)) = Pin::new(io).poll_flush(cx)
        {
            return Err(e.into());
        }
        if self.out.unsent <= self.config.high_water / 2 {
            for id in std::mem::take(&mut self.streams.blocked) {
                if let Some(st) = self.streams.map.get_mut(&id) {
                    wake(&mut st.write_waker);
                }
            }
        }
        Ok(())
    }

    fn poll_link(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        store(&mut self.conn_waker, cx);
        if let Some(e) = &self.dead {
            return Poll::Ready(e.clone());
        }
        let more = match self.drive_read(cx) {
            Ok(more) => more,
            Err(e) => {
                // Send what is queued (a goaway, resets) on a best-effort basis.
                let _ = self.drive_write(cx);
                self.fail(e.clone());
                return Poll::Ready(e);
            }
        };
        if let Err(e) = self.drive_write(cx) {
            self.fail(e.clone());
            return Poll::Ready(e);
        }
        // Reading stopped early: go on at once, unless the send queue is still too long, in
        // which case the socket wakes the task when it takes more.
        if more && self.out.backlog() <= 2 * self.config.high_water {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamMuxer for Link<S> {
    type Substream = Stream<S>;
    type Error = Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let mut c = lock(&self.conn);
        if let Some(id) = c.streams.inbound.pop_front() {
            return Poll::Ready(Ok(Stream {
                id,
                conn: self.conn.clone(),
            }));
        }
        c.check()?;
        store(&mut c.streams.inbound_waker, cx);
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let mut c = lock(&self.conn);
        c.check()?;
        if c.streams.outbound_open >= c.config.max_outbound_streams {
            store(&mut c.streams.outbound_waker, cx);
            return Poll::Pending;
        }
        let id = c.streams.next_local;
        let Some(next) = id.checked_add(2) else {
            c.fail(Error::Exhausted);
            return Poll::Ready(Err(Error::Exhausted));
        };
        c.streams.next_local = next;
        let window = c.config.initial_window;
        let mut st = State::new(window);
        if c.streams.open() >= c.config.own_streams {
            c.config.shared.force(window as usize);
            st.shared = window as usize;
        }
        c.streams.map.insert(id, st);
        c.streams.outbound_open += 1;
        let Conn { out, sealer, .. } = &mut *c;
        if let Err(e) = out.frame(sealer, OPEN, id, 0, &[]) {
            c.fail(e.clone());
            return Poll::Ready(Err(e));
        }
        c.wake_conn();
        Poll::Ready(Ok(Stream {
            id,
            conn: self.conn.clone(),
        }))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut c = lock(&self.conn);
        match &c.dead {
            None => {}
            Some(Error::Closed | Error::PeerClosed) => return Poll::Ready(Ok(())),
            Some(e) => return Poll::Ready(Err(e.clone())),
        }
        if !c.goaway_sent {
            c.goaway_sent = true;
            let Conn { out, sealer, .. } = &mut *c;
            out.frame(sealer, GOAWAY, 0, 0, &[])?;
        }
        if let Err(e) = c.drive_write(cx) {
            c.fail(e.clone());
            return Poll::Ready(Err(e));
        }
        if c.out.backlog() > 0 {
            return Poll::Pending;
        }
        let r = match c.io.as_mut() {
            Some(io) => futures::ready!(Pin::new(io).poll_close(cx)),
            None => Ok(()),
        };
        c.fail(Error::Closed);
        Poll::Ready(r.map_err(Error::from))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        lock(&self.conn).poll_link(cx).map(Err)
    }
}

/// The windows of streams still held (accepted or not) go back to the node's budget.
impl<S> Drop for Conn<S> {
    fn drop(&mut self) {
        let shared = self.streams.map.values().map(|st| st.shared).sum();
        self.config.shared.give(shared);
    }
}

/// Dropping the link (libp2p does so without closing it when a connection idles out or fails)
/// closes the socket at once, whatever streams are still held.
impl<S> Drop for Link<S> {
    fn drop(&mut self) {
        let io = {
            let mut c = lock(&self.conn);
            c.fail(Error::Closed);
            c.io.take()
        };
        drop(io);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.conn).read(self.id, cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.conn).write(self.id, cx, buf)
    }

    /// Queued bytes go out as the link's task is polled; flushing waits for nothing more.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let c = lock(&self.conn);
        c.check()?;
        if c.out.backlog() > 0 {
            c.wake_conn();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(lock(&self.conn).close_stream(self.id))
    }
}

impl<S> Drop for Stream<S> {
    fn drop(&mut self) {
        let mut c = lock(&self.conn);
        c.drop_stream(self.id);
    }
}

#[cfg(test)]
mod tests;
