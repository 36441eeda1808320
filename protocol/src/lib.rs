//! The sans-IO core of murmur.
//!
//! Everything a node decides lives here: how updates are signed, encoded and checked, how received
//! models are mixed by a Byzantine-robust rule, which peers to talk to, and whom to penalise. The
//! crate never touches a socket, a clock or the operating system's randomness: time and a seeded
//! random number generator are arguments. The real node (`murmur-node`) and the simulator
//! (`murmur-sim`) both drive the same [`engine::Engine`]; only what "send" and "now" mean differs.
//!
//! What this crate does not do: train models (see `murmur-node`'s trainer), move bytes, or read
//! files. Key files are parsed and written here as bytes; reading them from disk is the node's job.

pub mod aggregate;
pub mod assist;
pub mod attack;
#[cfg(any(test, feature = "cluster"))]
pub mod cluster;
pub mod codec;
pub mod engine;
pub mod evidence;
pub mod keyfile;
pub mod members;
pub mod memo;
pub mod replay;
pub mod sign;
pub mod spares;
pub mod sparse;
pub mod topology;
pub mod wire;

pub use sign::{Identity, PeerKey, RunId};
