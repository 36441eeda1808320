//! A murmur node: local training, networking, and the driver loop around the protocol engine.
