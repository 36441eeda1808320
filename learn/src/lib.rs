//! murmur-learn: local training for murmur nodes and the simulator.
//!
//! - [`data`]: datasets (the embedded 8x8 digits, MNIST-format IDX files, CSV, synthetic tasks),
//!   their loading from config, and their partition across nodes;
//! - [`model`]: model configs, the flat parameter layout every other crate exchanges, and seeded
//!   initialisation;
//! - [`train`]: the [`train::Trainer`] (local steps with burn and a flat-vector optimiser) and
//!   the [`train::Worker`] that runs one on its own thread;
//! - [`checkpoint`]: parameters and optimiser state in a safetensors file.
//!
//! What it does not do: networking or protocol decisions. It depends on `murmur-protocol` only
//! for the run id and the label-flip hook of the attacks.

pub mod checkpoint;
pub mod data;
pub mod model;
pub mod train;
