//! Per-stream state, and what a stream's reads, writes, close and drop do to its connection.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::task::{Context, Poll, Waker};

use super::frames::{CLOSE, CREDIT, DATA, RESET};
use super::{Conn, Error, nudge, store, wake};

/// Streams this side dropped after closing its half, remembered so that data the peer still
/// sends on them is answered with a reset.
const MAX_LINGERING: usize = 256;

/// Per-stream state.
pub(super) struct State {
    /// Received bytes; `recv[recv_pos..]` are not yet read.
    pub(super) recv: Vec<u8>,
    pub(super) recv_pos: usize,
    /// Bytes the peer may still send before it is granted more.
    pub(super) recv_allowed: u64,
    /// Bytes read since credit was last granted.
    pub(super) unacked: u64,
    /// The current window.
    pub(super) window: u32,
    /// Bytes of the window drawn from the node's shared budget.
    pub(super) shared: usize,
    /// Bytes received in all.
    pub(super) received: u64,
    pub(super) remote_closed: bool,
    pub(super) reset: bool,
    pub(super) read_waker: Option<Waker>,
    /// Bytes this side may still send.
    pub(super) send_credit: u64,
    pub(super) local_closed: bool,
    pub(super) write_waker: Option<Waker>,
}

impl State {
    pub(super) fn new(window: u32) -> Self {
        Self {
            recv: Vec::new(),
            recv_pos: 0,
            recv_allowed: u64::from(window),
            unacked: 0,
            window,
            shared: 0,
            received: 0,
            remote_closed: false,
            reset: false,
            read_waker: None,
            send_credit: u64::from(window),
            local_closed: false,
            write_waker: None,
        }
    }

    pub(super) fn buffered(&self) -> usize {
        self.recv.len() - self.recv_pos
    }
}

/// The streams of a connection.
pub(super) struct Streams {
    pub(super) map: HashMap<u32, State>,
    /// The id of the next stream this side opens.
    pub(super) next_local: u32,
    /// The highest id the peer has opened (0 before any).
    pub(super) last_remote: u32,
    /// Parity of the peer's ids (1: odd, the peer dialed).
    pub(super) remote_parity: u32,
    pub(super) inbound: VecDeque<u32>,
    pub(super) inbound_waker: Option<Waker>,
    pub(super) outbound_waker: Option<Waker>,
    /// Streams waiting for room in the send queue.
    pub(super) blocked: Vec<u32>,
    /// What the windows together exceed their initial size by.
    pub(super) window_extra: usize,
    /// Open streams by who opened them.
    pub(super) inbound_open: usize,
    pub(super) outbound_open: usize,
    /// Streams dropped after closing their own half, oldest first.
    pub(super) lingering: VecDeque<u32>,
}

impl Streams {
    /// No streams yet; `dialer` is whether this side opened the connection.
    pub(super) fn new(dialer: bool) -> Self {
        Self {
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
        }
    }

    /// Streams open now, whoever opened them.
    pub(super) fn open(&self) -> usize {
        self.inbound_open + self.outbound_open
    }

    pub(super) fn is_remote(&self, id: u32) -> bool {
        id % 2 == self.remote_parity
    }

    /// Whether `id` names a stream that existed (and is gone now).
    pub(super) fn existed(&self, id: u32) -> bool {
        if self.is_remote(id) {
            id != 0 && id <= self.last_remote
        } else {
            id < self.next_local
        }
    }

    /// Forgets a lingering stream; returns whether it was one.
    pub(super) fn unlinger(&mut self, id: u32) -> bool {
        match self.lingering.iter().position(|&l| l == id) {
            Some(i) => {
                self.lingering.remove(i);
                true
            }
            None => false,
        }
    }

    pub(super) fn get(&mut self, id: u32, what: &str) -> Result<Option<&mut State>, Error> {
        if self.map.contains_key(&id) {
            Ok(self.map.get_mut(&id))
        } else if self.existed(id) {
            Ok(None)
        } else {
            Err(Error::Protocol(format!(
                "{what} on stream {id}, which was never opened"
            )))
        }
    }
}

impl<S> Conn<S> {
    /// A read on stream `id`: buffered bytes, granting credit back as they are consumed.
    pub(super) fn read(
        &mut self,
        id: u32,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
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
                    && config.shared.take(extra)
                {
                    *window_extra += extra;
                    st.shared += extra;
                    grant += extra as u64;
                    st.window = grown;
                }
                st.recv_allowed += grant;
                let grant = u32::try_from(grant).expect("grants are below a window");
                if let Err(e) = out.frame(sealer, CREDIT, id, grant, &[]) {
                    return Poll::Ready(Err(e.into()));
                }
                nudge(conn_waker);
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

    /// A write on stream `id`: as much as its credit and the send queue allow, as one frame.
    pub(super) fn write(
        &mut self,
        id: u32,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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
            nudge(conn_waker);
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
        nudge(conn_waker);
        Poll::Ready(Ok(n))
    }

    /// Closes this side's half of stream `id`.
    pub(super) fn close_stream(&mut self, id: u32) -> io::Result<()> {
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

    /// Forgets stream `id` once its handle is dropped, telling the peer as yamux does (see the
    /// multiplexer's module documentation).
    pub(super) fn drop_stream(&mut self, id: u32) {
        let Some(st) = self.streams.map.remove(&id) else {
            return;
        };
        let streams = &mut self.streams;
        streams.window_extra -= (st.window - self.config.initial_window) as usize;
        self.config.shared.give(st.shared);
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
}
