//! A murmur node: local training, networking, and the driver loop around the protocol engine.
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod driver;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod net;
pub mod status;
pub mod train;
