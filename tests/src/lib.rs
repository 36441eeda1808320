//! End-to-end tests across the murmur crates live in `tests/`.
