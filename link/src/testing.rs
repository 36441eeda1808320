//! An in-memory duplex byte pipe with a bounded buffer per direction, for the link's tests.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures::{AsyncRead, AsyncWrite};

#[derive(Default)]
struct Half {
    buf: VecDeque<u8>,
    cap: usize,
    closed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

/// One end of a [`pipe`].
pub struct End {
    tx: Arc<Mutex<Half>>,
    rx: Arc<Mutex<Half>>,
}

/// Two connected ends; each direction buffers at most `cap` bytes.
pub fn pipe(cap: usize) -> (End, End) {
    pipe2(cap, cap)
}

/// Two connected ends; the first's writes buffer at most `ab` bytes, the second's `ba`.
pub fn pipe2(ab: usize, ba: usize) -> (End, End) {
    let half = |cap| {
        Arc::new(Mutex::new(Half {
            cap,
            ..Half::default()
        }))
    };
    let (ab, ba) = (half(ab), half(ba));
    (
        End {
            tx: ab.clone(),
            rx: ba.clone(),
        },
        End { tx: ba, rx: ab },
    )
}

impl AsyncRead for End {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut h = self.rx.lock().unwrap();
        if h.buf.is_empty() {
            if h.closed {
                return Poll::Ready(Ok(0));
            }
            h.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(h.buf.len());
        for (d, s) in buf.iter_mut().zip(h.buf.drain(..n)) {
            *d = s;
        }
        if let Some(w) = h.write_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for End {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut h = self.tx.lock().unwrap();
        if h.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = h.cap - h.buf.len();
        if room == 0 {
            h.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        h.buf.extend(&buf[..n]);
        if let Some(w) = h.read_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut h = self.tx.lock().unwrap();
        h.closed = true;
        if let Some(w) = h.read_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for End {
    fn drop(&mut self) {
        for half in [&self.tx, &self.rx] {
            let mut h = half.lock().unwrap();
            h.closed = true;
            for w in [h.read_waker.take(), h.write_waker.take()]
                .into_iter()
                .flatten()
            {
                w.wake();
            }
        }
    }
}
