//! Frames: the send queue of records they are packed into, and the handling of received ones.

use std::collections::VecDeque;

use super::streams::{State, Streams};
use super::{Config, Error, wake};
use crate::record::{self, HEADER, MAX_PLAINTEXT, MAX_WIRE, Sealer};

pub(super) const DATA: u8 = 0;
pub(super) const OPEN: u8 = 1;
pub(super) const CLOSE: u8 = 2;
pub(super) const RESET: u8 = 3;
pub(super) const CREDIT: u8 = 4;
pub(super) const GOAWAY: u8 = 5;

/// Bytes of a frame header: type, stream id, length.
pub const FRAME_HEADER: usize = 9;
/// A write smaller than this goes into a fresh record rather than the tail of a full one.
const MIN_DATA: usize = 4096;
/// Record buffers kept for reuse.
const SPARE_RECORDS: usize = 4;

/// Outgoing records: the one being filled and the sealed ones waiting for the socket.
#[derive(Default)]
pub(super) struct Outgoing {
    /// A length placeholder and frames, or empty.
    pub(super) open: Vec<u8>,
    pub(super) sealed: VecDeque<Vec<u8>>,
    /// Bytes of the first sealed record already written.
    pub(super) pos: usize,
    /// Sealed bytes not yet written.
    pub(super) unsent: usize,
    spare: Vec<Vec<u8>>,
}

impl Outgoing {
    /// Appends a frame to the open record, sealing the record first if the frame does not fit.
    pub(super) fn frame(
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
    pub(super) fn data_room(&mut self, sealer: &mut Sealer) -> Result<usize, Error> {
        let used = self.open.len().saturating_sub(HEADER);
        let room = MAX_PLAINTEXT - used;
        if room < FRAME_HEADER + MIN_DATA {
            self.seal(sealer)?;
            return Ok(MAX_PLAINTEXT - FRAME_HEADER);
        }
        Ok(room - FRAME_HEADER)
    }

    pub(super) fn seal(&mut self, sealer: &mut Sealer) -> Result<(), Error> {
        if self.open.is_empty() {
            return Ok(());
        }
        sealer.seal(&mut self.open)?;
        self.unsent += self.open.len();
        self.sealed.push_back(std::mem::take(&mut self.open));
        Ok(())
    }

    /// Bytes queued to send, sealed or not.
    pub(super) fn backlog(&self) -> usize {
        self.unsent + self.open.len()
    }

    /// Marks `n` more bytes as written, recycling finished records.
    pub(super) fn advance(&mut self, mut n: usize) {
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

/// Handles the frames of one record's plaintext.
pub(super) fn handle_frames(
    plain: &[u8],
    streams: &mut Streams,
    out: &mut Outgoing,
    sealer: &mut Sealer,
    config: &Config,
    goaway: &mut bool,
) -> Result<(), Error> {
    let mut p = 0;
    while p < plain.len() {
        let Some(h) = plain.get(p..p + FRAME_HEADER) else {
            return Err(Error::Protocol(
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
                    return Err(Error::Protocol(format!(
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
                    return Err(Error::Protocol(format!(
                        "data on stream {id} after its close"
                    )));
                }
                if u64::from(n) > st.recv_allowed {
                    return Err(Error::Protocol(format!(
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
                    return Err(Error::Protocol(format!(
                        "stream {id} opened out of order (last {})",
                        streams.last_remote
                    )));
                }
                streams.last_remote = id;
                let window = config.initial_window as usize;
                let own = streams.open() < config.own_streams;
                if streams.inbound_open >= config.max_inbound_streams
                    || streams.inbound.len() >= config.max_pending_inbound
                {
                    tracing::debug!(stream = id, "refusing a stream over the limit");
                    out.frame(sealer, RESET, id, 0, &[])?;
                } else if !own && !config.shared.take(window) {
                    tracing::debug!(stream = id, "refusing a stream: the node's budget is spent");
                    out.frame(sealer, RESET, id, 0, &[])?;
                } else {
                    let mut st = State::new(config.initial_window);
                    if !own {
                        st.shared = window;
                    }
                    streams.map.insert(id, st);
                    streams.inbound_open += 1;
                    streams.inbound.push_back(id);
                    wake(&mut streams.inbound_waker);
                }
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
            other => return Err(Error::Protocol(format!("unknown frame type {other}"))),
        }
    }
    Ok(())
}
