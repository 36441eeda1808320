//! murmur-sim: many murmur nodes in one process, in virtual time.
