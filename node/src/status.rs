//! The node's HTTP endpoint: `GET /metrics` (OpenMetrics text to scrapers that accept it, as
//! Prometheus does, else Prometheus's text format 0.0.4) and `GET /status` (JSON), served
//! by `tiny_http` on a thread of its own, and a small blocking client for `murmur-node status`
//! and tests. Each request renders a snapshot of the shared [`Metrics`] under a short lock, so
//! the endpoint never blocks the driver.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::Metrics;

/// Content type of `/metrics` for scrapers that accept OpenMetrics.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of `/metrics` otherwise.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Binds `addr` and serves `/metrics` and `/status` from `metrics` on a background thread for
/// the rest of the process; returns the bound address (port 0 picks a free port).
pub fn serve(addr: SocketAddr, metrics: Arc<Mutex<Metrics>>) -> std::io::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("not an IP address"))?;
    std::thread::Builder::new()
        .name("murmur-http".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (code, kind, body) = {
                    let m = metrics.lock().expect("metrics lock");
                    match (request.method(), request.url()) {
                        (tiny_http::Method::Get, "/metrics") => {
                            let open = request.headers().iter().any(|h| {
                                h.field.equiv("Accept")
                                    && h.value.as_str().contains("application/openmetrics-text")
                            });
                            if open {
                                (200, OPENMETRICS, m.prometheus())
                            } else {
                                (200, TEXT_004, m.prometheus_text())
                            }
                        }
                        (tiny_http::Method::Get, "/status") => {
                            (200, "application/json", m.status())
                        }
                        _ => (404, "text/plain", "try GET /metrics or /status\n".into()),
                    }
                };
                let header =
                    tiny_http::Header::from_bytes("Content-Type", kind).expect("a valid header");
                let response = tiny_http::Response::from_string(body)
                    .with_status_code(code)
                    .with_header(header);
                let _ = request.respond(response);
            }
        })?;
    Ok(bound)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_metrics_and_status_and_404_elsewhere() {
        let metrics = Arc::new(Mutex::new(Metrics {
            round: 3,
            ..Metrics::default()
        }));
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
        let a = addr.to_string();
        let status: Metrics = serde_json::from_str(&fetch(&a, "/status").unwrap()).unwrap();
        assert_eq!(status.round, 3);
        metrics.lock().unwrap().round = 4;
        let text = fetch(&a, "/metrics").unwrap();
        assert_eq!(crate::metrics::sample(&text, "murmur_round"), Some(4.0));
        let e = fetch(&a, "/nothing").unwrap_err().to_string();
        assert!(e.contains("404"), "{e}");
    }
}
