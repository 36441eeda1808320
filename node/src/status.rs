//! The node's HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /status` (JSON), and a
//! small blocking client for `murmur-node status` and tests.
//!
//! The server answers one request per connection (HTTP/1.0 style, `Connection: close`), reads
//! at most [`MAX_REQUEST`] bytes of request head, and never blocks the driver: it renders a
//! snapshot of the shared [`Metrics`] under a short lock.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Largest request head read.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Why the status could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Connecting, sending or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The endpoint.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The answer is not a 200 response.
    #[error("{addr}: unexpected answer: {line}")]
    Http {
        /// The endpoint.
        addr: String,
        /// Its status line.
        line: String,
    },
}

/// Binds the endpoint; serve it with [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` and `/status` from `metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Mutex<Metrics>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_REQUEST];
            let mut used = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while used < buf.len() {
                    let n = stream.read(&mut buf[used..]).await?;
                    if n == 0 {
                        break;
                    }
                    used += n;
                    if buf[..used].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..used]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (code, kind, body) = {
                let m = metrics.lock().expect("metrics lock");
                match path {
                    "/metrics" => ("200 OK", "text/plain; version=0.0.4", m.prometheus()),
                    "/status" => ("200 OK", "application/json", m.status()),
                    _ => (
                        "404 Not Found",
                        "text/plain",
                        "try /metrics or /status\n".into(),
                    ),
                }
            };
            let response = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Fetches `path` from the endpoint at `addr` (blocking, 10 s timeout) and returns the body.
pub fn fetch(addr: &str, path: &str) -> Result<String, StatusError> {
    let io = |source| StatusError::Io {
        addr: addr.to_owned(),
        source,
    };
    let sock: SocketAddr = addr.parse().map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not an address: {e}"),
        ))
    })?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(10)).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut text = String::new();
    s.take(64 << 20).read_to_string(&mut text).map_err(io)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let line = head.lines().next().unwrap_or("").to_owned();
    if !line.contains(" 200 ") {
        return Err(StatusError::Http {
            addr: addr.to_owned(),
            line,
        });
    }
    Ok(body.to_owned())
}
