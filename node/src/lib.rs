//! A murmur node: libp2p networking, the driver loop around the protocol engine, the CLI and
//! the HTTP endpoint. Local training is `murmur-learn`'s; the TCP link is `murmur-link`.
pub mod cli;
pub mod config;
pub mod driver;
pub mod event;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod status;
