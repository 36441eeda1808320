//! A murmur node: local training, networking, and the driver loop around the protocol engine.
pub mod checkpoint;
pub mod data;
pub mod identity;
pub mod model;
pub mod train;
