//! `murmur-sim`: runs many murmur nodes in one process, in virtual time.

fn main() {
    eprintln!(
        "murmur-sim {}: the scenario runner is not available in this version; \
         the protocol engine's multi-node tests run with `cargo test -p murmur-protocol engine`",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
