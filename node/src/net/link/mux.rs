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
//! streams. What a node queues to send is bounded too: writers wait above
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

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

use super::record::{self, HEADER, MAX_PLAINTEXT, MAX_WIRE, Opener, Sealer};

const DATA: u8 = 0;
const OPEN: u8 = 1;
const CLOSE: u8 = 2;
const RESET: u8 = 3;
const CREDIT: u8 = 4;
const GOAWAY: u8 = 5;

/// Bytes of a frame header: type, stream id, length.
pub const FRAME_HEADER: usize = 9;
/// A write smaller than this goes into a fresh record rather than the tail of a full one.
const MIN_DATA: usize = 4096;
/// Records opened per poll of the connection before it yields to its other work.
const READ_BUDGET: usize = 64;
/// Sealed records written with one system call.
const WRITE_BATCH: usize = 8;
/// Record buffers kept for reuse.
const SPARE_RECORDS: usize = 4;
/// Receive buffer of a connection that has only seen small records.
const SMALL_INBUF: usize = 64 * 1024;
/// Receive buffer once a large record arrives.
const LARGE_INBUF: usize = 2 * MAX_WIRE;
/// Streams this side dropped after closing its half, remembered so that data the peer still
/// sends on them is answered with a reset.
const MAX_LINGERING: usize = 256;

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
}

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

fn protocol(what: String) -> Error {
    Error::Protocol(what)
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

/// Outgoing records: the one being filled and the sealed ones waiting for the socket.
#[derive(Default)]
struct Outgoing {
    /// A length placeholder and frames, or empty.
    open: Vec<u8>,
    sealed: VecDeque<Vec<u8>>,
    /// Bytes of the first sealed record already written.
    pos: usize,
    /// Sealed bytes not yet written.
    unsent: usize,
    spare: Vec<Vec<u8>>,
}

impl Outgoing {
    /// Appends a frame to the open record, sealing the record first if the frame does not fit.
    fn frame(
        &mut self,
        sealer: &mut Sealer,
        kind: u8,
        id: u32,
        n: u32,
        data: &[u8],
    ) -> Result<(), Error> {
        let size = FRAME_HEADER + data.len();
        debug_assert!(size <= MAX_PLAINTEXT);
        if !self.open.is_empty() && self.open.len() - HEADER + size > MAX_PLAINTEXT {
            self.seal(sealer)?;
        }
        if self.open.is_empty() {
            self.open = self.spare.pop().unwrap_or_default();
            self.open.extend_from_slice(&[0; HEADER]);
        }
        self.open.reserve(size + record::TAG);
        self.open.push(kind);
        self.open.extend_from_slice(&id.to_be_bytes());
        self.open.extend_from_slice(&n.to_be_bytes());
        self.open.extend_from_slice(data);
        Ok(())
    }

    /// The most data bytes one `DATA` frame can carry now: what is left of the open record, or
    /// a whole record when too little is left (the open record is then sealed).
    fn data_room(&mut self, sealer: &mut Sealer) -> Result<usize, Error> {
        let used = self.open.len().saturating_sub(HEADER);
        let room = MAX_PLAINTEXT - used;
        if room < FRAME_HEADER + MIN_DATA {
            self.seal(sealer)?;
            return Ok(MAX_PLAINTEXT - FRAME_HEADER);
        }
        Ok(room - FRAME_HEADER)
    }

    fn seal(&mut self, sealer: &mut Sealer) -> Result<(), Error> {
        if self.open.is_empty() {
            return Ok(());
        }
        sealer.seal(&mut self.open)?;
        self.unsent += self.open.len();
        self.sealed.push_back(std::mem::take(&mut self.open));
        Ok(())
    }

    fn pending(&self) -> bool {
        self.unsent > 0 || !self.open.is_empty()
    }

    /// Marks `n` more bytes as written, recycling finished records.
    fn advance(&mut self, mut n: usize) {
        self.unsent -= n;
        while n > 0 {
            let front = self.sealed.front().expect("written bytes were queued");
            let left = front.len() - self.pos;
            if n < left {
                self.pos += n;
                return;
            }
            n -= left;
            self.pos = 0;
            let mut done = self.sealed.pop_front().expect("checked above");
            if self.spare.len() < SPARE_RECORDS && done.capacity() <= MAX_WIRE * 2 {
                done.clear();
                self.spare.push(done);
            }
        }
    }
}

/// Received bytes: `buf[start..end]` are read and not yet opened.
struct Incoming {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Per-stream state.
struct State {
    /// Received bytes; `recv[recv_pos..]` are not yet read.
    recv: Vec<u8>,
    recv_pos: usize,
    /// Bytes the peer may still send before it is granted more.
    recv_allowed: u64,
    /// Bytes read since credit was last granted.
    unacked: u64,
    /// The current window.
    window: u32,
    /// Bytes received in all.
    received: u64,
    remote_closed: bool,
    reset: bool,
    read_waker: Option<Waker>,
    /// Bytes this side may still send.
    send_credit: u64,
    local_closed: bool,
    write_waker: Option<Waker>,
}

impl State {
    fn new(window: u32) -> Self {
        Self {
            recv: Vec::new(),
            recv_pos: 0,
            recv_allowed: u64::from(window),
            unacked: 0,
            window,
            received: 0,
            remote_closed: false,
            reset: false,
            read_waker: None,
            send_credit: u64::from(window),
            local_closed: false,
            write_waker: None,
        }
    }

    fn buffered(&self) -> usize {
        self.recv.len() - self.recv_pos
    }
}

struct Streams {
    map: HashMap<u32, State>,
    /// The id of the next stream this side opens.
    next_local: u32,
    /// The highest id the peer has opened (0 before any).
    last_remote: u32,
    /// Parity of the peer's ids (1: odd, the peer dialed).
    remote_parity: u32,
    inbound: VecDeque<u32>,
    inbound_waker: Option<Waker>,
    outbound_waker: Option<Waker>,
    /// Streams waiting for room in the send queue.
    blocked: Vec<u32>,
    /// What the windows together exceed their initial size by.
    window_extra: usize,
    /// Open streams by who opened them.
    inbound_open: usize,
    outbound_open: usize,
    /// Streams dropped after closing their own half, oldest first.
    lingering: VecDeque<u32>,
}

impl Streams {
    fn is_remote(&self, id: u32) -> bool {
        id % 2 == self.remote_parity
    }

    /// Whether `id` names a stream that existed (and is gone now).
    fn existed(&self, id: u32) -> bool {
        if self.is_remote(id) {
            id != 0 && id <= self.last_remote
        } else {
            id < self.next_local
        }
    }

    /// Forgets a lingering stream; returns whether it was one.
    fn unlinger(&mut self, id: u32) -> bool {
        match self.lingering.iter().position(|&l| l == id) {
            Some(i) => {
                self.lingering.remove(i);
                true
            }
            None => false,
        }
    }

    fn get(&mut self, id: u32, what: &str) -> Result<Option<&mut State>, Error> {
        if self.map.contains_key(&id) {
            Ok(self.map.get_mut(&id))
        } else if self.existed(id) {
            Ok(None)
        } else {
            Err(protocol(format!(
                "{what} on stream {id}, which was never opened"
            )))
        }
    }
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
            streams: Streams {
                map: HashMap::new(),
                next_local: if dialer { 1 } else { 2 },
                last_remote: 0,
                remote_parity: if dialer { 0 } else { 1 },
                inbound: VecDeque::new(),
                inbound_waker: None,
                outbound_waker: None,
                blocked: Vec::new(),
                window_extra: 0,
                inbound_open: 0,
                outbound_open: 0,
                lingering: VecDeque::new(),
            },
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
        if let Some(w) = &self.conn_waker {
            w.wake_by_ref();
        }
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

    fn drop_stream(&mut self, id: u32) {
        let Some(st) = self.streams.map.remove(&id) else {
            return;
        };
        let streams = &mut self.streams;
        streams.window_extra -= (st.window - self.config.initial_window) as usize;
        if streams.is_remote(id) {
            streams.inbound_open -= 1;
        } else {
            streams.outbound_open -= 1;
            wake(&mut streams.outbound_waker);
        }
        if self.dead.is_some() || st.reset {
            return;
        }
        let reply = match (st.local_closed, st.remote_closed) {
            (false, false) => RESET,
            (false, true) => CLOSE,
            (true, false) => {
                if streams.lingering.len() == MAX_LINGERING {
                    streams.lingering.pop_front();
                }
                streams.lingering.push_back(id);
                return;
            }
            (true, true) => return,
        };
        if let Err(e) = self.out.frame(&mut self.sealer, reply, id, 0, &[]) {
            self.fail(e);
        }
        self.wake_conn();
    }

    /// Bytes queued to send, sealed or not.
    fn backlog(&self) -> usize {
        self.out.unsent + self.out.open.len()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads and opens records until the socket has no more, the budget is spent or too much
    /// waits to be sent; returns whether it stopped before the socket had no more.
    fn drive_read(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        for _ in 0..READ_BUDGET {
            self.open_records()?;
            if self.backlog() > 2 * self.config.high_water {
                return Ok(true);
            }
            let Some(io) = self.io.as_mut() else {
                return Err(Error::Closed);
            };
            let inc = &mut self.inc;
            if inc.end == inc.buf.len() {
                // open_records leaves room for the rest of the next record.
                return Err(protocol("a record larger than the receive buffer".into()));
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
            let woke = handle_frames(plain, streams, out, sealer, config, goaway_received)?;
            inc.start += HEADER + body;
            if woke {
                // Inbound streams or replies (a refused stream's reset) to send.
                if let Some(w) = &streams.inbound_waker {
                    w.wake_by_ref();
                }
            }
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
        if more && self.backlog() <= 2 * self.config.high_water {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn read(&mut self, id: u32, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let Conn {
            streams,
            out,
            sealer,
            config,
            dead,
            conn_waker,
            ..
        } = self;
        let window_extra = &mut streams.window_extra;
        let st = streams
            .map
            .get_mut(&id)
            .expect("a stream's state outlives its handle");
        let avail = st.buffered();
        if avail > 0 && !buf.is_empty() {
            let n = avail.min(buf.len());
            buf[..n].copy_from_slice(&st.recv[st.recv_pos..st.recv_pos + n]);
            st.recv_pos += n;
            if st.recv_pos == st.recv.len() {
                st.recv.clear();
                st.recv_pos = 0;
            }
            st.unacked += n as u64;
            if st.unacked >= u64::from(st.window / 2) && !st.remote_closed && !st.reset {
                let mut grant = st.unacked;
                st.unacked = 0;
                let grown = st.window.saturating_mul(2).min(config.max_window);
                let extra = (grown - st.window) as usize;
                if extra > 0
                    && st.received >= 2 * u64::from(st.window)
                    && *window_extra + extra <= config.window_budget
                {
                    *window_extra += extra;
                    grant += extra as u64;
                    st.window = grown;
                }
                st.recv_allowed += grant;
                let grant = u32::try_from(grant).expect("grants are below a window");
                if let Err(e) = out.frame(sealer, CREDIT, id, grant, &[]) {
                    return Poll::Ready(Err(e.into()));
                }
                if let Some(w) = conn_waker {
                    w.wake_by_ref();
                }
            }
            return Poll::Ready(Ok(n));
        }
        if buf.is_empty() || st.remote_closed {
            return Poll::Ready(Ok(0));
        }
        if st.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "stream reset by the peer",
            )));
        }
        if let Some(e) = dead {
            return Poll::Ready(Err(e.clone().into()));
        }
        store(&mut st.read_waker, cx);
        Poll::Pending
    }

    fn write(&mut self, id: u32, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = &self.dead {
            return Poll::Ready(Err(e.clone().into()));
        }
        let Conn {
            streams,
            out,
            sealer,
            config,
            conn_waker,
            ..
        } = self;
        let wake_conn = |w: &Option<Waker>| {
            if let Some(w) = w {
                w.wake_by_ref();
            }
        };
        let st = streams
            .map
            .get_mut(&id)
            .expect("a stream's state outlives its handle");
        if st.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "stream reset by the peer",
            )));
        }
        if st.local_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the stream was closed",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if st.send_credit == 0 {
            store(&mut st.write_waker, cx);
            return Poll::Pending;
        }
        if out.unsent >= config.high_water {
            store(&mut st.write_waker, cx);
            if !streams.blocked.contains(&id) {
                streams.blocked.push(id);
            }
            wake_conn(conn_waker);
            return Poll::Pending;
        }
        let room = match out.data_room(sealer) {
            Ok(room) => room,
            Err(e) => return Poll::Ready(Err(e.into())),
        };
        let n = buf.len().min(room).min(st.send_credit as usize);
        let len = u32::try_from(n).expect("below a record");
        if let Err(e) = out.frame(sealer, DATA, id, len, &buf[..n]) {
            return Poll::Ready(Err(e.into()));
        }
        st.send_credit -= n as u64;
        wake_conn(conn_waker);
        Poll::Ready(Ok(n))
    }

    fn close_stream(&mut self, id: u32) -> io::Result<()> {
        self.check()?;
        let st = self
            .streams
            .map
            .get_mut(&id)
            .expect("a stream's state outlives its handle");
        if !st.local_closed && !st.reset {
            st.local_closed = true;
            self.out.frame(&mut self.sealer, CLOSE, id, 0, &[])?;
            self.wake_conn();
        }
        Ok(())
    }
}

/// Handles the frames of one record's plaintext. Returns whether the link's task must look at
/// its inbound queue.
fn handle_frames(
    plain: &[u8],
    streams: &mut Streams,
    out: &mut Outgoing,
    sealer: &mut Sealer,
    config: &Config,
    goaway: &mut bool,
) -> Result<bool, Error> {
    let mut woke = false;
    let mut p = 0;
    while p < plain.len() {
        let Some(h) = plain.get(p..p + FRAME_HEADER) else {
            return Err(protocol(
                "a frame header cut by the end of its record".into(),
            ));
        };
        let kind = h[0];
        let id = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        let n = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        p += FRAME_HEADER;
        match kind {
            DATA => {
                let Some(data) = plain.get(p..p + n as usize) else {
                    return Err(protocol(format!(
                        "a data frame of {n} bytes on stream {id} cut by the end of its record"
                    )));
                };
                p += n as usize;
                let Some(st) = streams.get(id, "data")? else {
                    if streams.unlinger(id) {
                        out.frame(sealer, RESET, id, 0, &[])?;
                    }
                    continue;
                };
                if st.remote_closed {
                    return Err(protocol(format!("data on stream {id} after its close")));
                }
                if u64::from(n) > st.recv_allowed {
                    return Err(protocol(format!(
                        "{n} bytes on stream {id} with {} left in its window",
                        st.recv_allowed
                    )));
                }
                st.recv_allowed -= u64::from(n);
                st.received += u64::from(n);
                if st.reset {
                    continue;
                }
                if st.recv_pos == st.recv.len() {
                    st.recv.clear();
                    st.recv_pos = 0;
                } else if st.recv_pos > 0 && st.recv.capacity() - st.recv.len() < data.len() {
                    st.recv.drain(..st.recv_pos);
                    st.recv_pos = 0;
                }
                st.recv.extend_from_slice(data);
                wake(&mut st.read_waker);
            }
            OPEN => {
                if !streams.is_remote(id) || id <= streams.last_remote {
                    return Err(protocol(format!(
                        "stream {id} opened out of order (last {})",
                        streams.last_remote
                    )));
                }
                streams.last_remote = id;
                if streams.inbound_open >= config.max_inbound_streams
                    || streams.inbound.len() >= config.max_pending_inbound
                {
                    tracing::debug!(stream = id, "refusing a stream over the limit");
                    out.frame(sealer, RESET, id, 0, &[])?;
                } else {
                    streams.map.insert(id, State::new(config.initial_window));
                    streams.inbound_open += 1;
                    streams.inbound.push_back(id);
                }
                woke = true;
            }
            CLOSE => match streams.get(id, "close")? {
                Some(st) => {
                    st.remote_closed = true;
                    wake(&mut st.read_waker);
                }
                None => {
                    streams.unlinger(id);
                }
            },
            RESET => match streams.get(id, "reset")? {
                // Received data stays readable; after it, a read fails unless the peer had
                // closed its half.
                Some(st) => {
                    st.reset = true;
                    wake(&mut st.read_waker);
                    wake(&mut st.write_waker);
                }
                None => {
                    streams.unlinger(id);
                }
            },
            CREDIT => {
                if let Some(st) = streams.get(id, "credit")? {
                    st.send_credit = st.send_credit.saturating_add(u64::from(n));
                    wake(&mut st.write_waker);
                }
            }
            GOAWAY => *goaway = true,
            other => return Err(protocol(format!("unknown frame type {other}"))),
        }
    }
    Ok(woke)
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
        c.streams.map.insert(id, State::new(window));
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
        if c.out.pending() {
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
        if c.out.pending() {
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
#[path = "mux_tests.rs"]
mod tests;
